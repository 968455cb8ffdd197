//! The event store side by side (issue 11, A8): ringbus's `FileStore` and
//! `InMemoryStore` against SQLite (WAL, `synchronous=FULL`), fjall 3.1, okaywal
//! 0.3 and redb 4.6, in one process, in interleaved rounds (the order of the
//! systems rotated each round), medians with min–max, ratios and the S1–S9
//! targets marked met or MISSED. What each system does per workload:
//! BENCHMARKS.md, "Event store: side by side".
//!
//! ```text
//! cargo run --release --manifest-path store-anchors/Cargo.toml              # ≥ 5 rounds, 1 M-event stores
//! cargo run --release --manifest-path store-anchors/Cargo.toml -- --quick   # CI: 3 rounds, 100 k events
//! cargo run --release --manifest-path store-anchors/Cargo.toml -- --dir /mnt/disk --only S1,S3
//! ```
//!
//! Targets are reported, not asserted: the exit status is non-zero only when a
//! system fails (an error, a wrong count).

#[path = "../../benches/support/store.rs"]
mod support;

mod anchors;
mod cqrs;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbus::store::{Durability, InMemoryStore};
use ringbus::{Bus, BusBuilder};
use serde_json::Value;

use anchors::{fjall_appends, okaywal_appends, redb_appends, sqlite_appends, Sqlite};
use support::{err, fmt_rate, fmt_secs, spread, Layout, Maker, Res, Spread, TempDir};

/// The groups, in the order they run.
const GROUPS: [&str; 10] = ["S1", "S2", "S3", "S4", "MEM", "S5", "S6", "S8", "S7", "S9"];

struct Options {
    quick: bool,
    dir: PathBuf,
    only: Option<Vec<String>>,
}

impl Options {
    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|g| g.eq_ignore_ascii_case(group)))
    }
}

const USAGE: &str = "usage: ringbus-store-anchors [--quick] [--dir DIR] [--only S1,S2,…,S9,MEM]

  --quick   3 rounds, short windows, 100 k-event read stores (CI)
  --dir     where the stores go (default: the system's temp dir); same disk for all
  --only    run these workload groups only
";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        dir: std::env::temp_dir(),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--dir" => o.dir = PathBuf::from(args.next().ok_or("--dir needs a DIR")?),
            "--only" => {
                let list = args.next().ok_or("--only needs a list")?;
                let groups: Vec<String> = list.split(',').map(|g| g.trim().to_owned()).collect();
                if let Some(bad) = groups
                    .iter()
                    .find(|g| !GROUPS.iter().any(|k| k.eq_ignore_ascii_case(g)))
                {
                    return Err(format!("unknown group {bad:?}"));
                }
                o.only = Some(groups);
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// How much each run does.
struct Sizes {
    rounds: usize,
    /// An append run's length.
    window: Duration,
    /// The read stores (S5, S6, S7, S8, `InMemoryStore` read_all).
    layout: Layout,
    /// A live-latency run's length.
    latency_window: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                rounds: 3,
                window: Duration::from_millis(250),
                layout: Layout {
                    streams: 1000,
                    per_stream: 100,
                },
                latency_window: Duration::from_millis(300),
            }
        } else {
            Sizes {
                rounds: 5,
                window: Duration::from_secs(1),
                layout: Layout {
                    streams: 1000,
                    per_stream: 1000,
                },
                latency_window: Duration::from_secs(1),
            }
        }
    }
}

/// What a figure measures.
#[derive(Copy, Clone, PartialEq)]
enum Unit {
    /// Events per second: more is better.
    Rate,
    /// Seconds: less is better.
    Secs,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Rate => fmt_rate(v),
            Unit::Secs => fmt_secs(v),
        }
    }
}

/// A system under test in a group.
struct System<'a> {
    group: &'static str,
    run: support::Run<'a>,
}

fn system<'a>(
    group: &'static str,
    label: impl Into<String>,
    run: impl FnMut() -> Res<f64> + 'a,
) -> System<'a> {
    System {
        group,
        run: support::run(label, run),
    }
}

/// One measured row.
struct Row {
    group: &'static str,
    label: String,
    spread: Spread,
}

/// Runs `systems` in `rounds` interleaved rounds ([`support::interleave`]).
fn interleave(rounds: usize, systems: Vec<System<'_>>) -> Res<Vec<Row>> {
    let groups: Vec<&'static str> = systems.iter().map(|s| s.group).collect();
    let mut runs: Vec<support::Run<'_>> = systems
        .into_iter()
        .map(|s| support::Run {
            label: format!("{} {}", s.group, s.run.label),
            run: s.run.run,
        })
        .collect();
    let values = support::interleave("store-anchors", rounds, &mut runs)?;
    Ok(runs
        .into_iter()
        .zip(groups)
        .zip(values)
        .map(|((r, group), v)| Row {
            group,
            label: r.label[group.len() + 1..].to_owned(),
            spread: spread(&v),
        })
        .collect())
}

// ---------------------------------------------------------------- the workloads

fn append_groups(o: &Options, z: &Sizes, maker: &Maker) -> Res<Vec<Row>> {
    let base = o.dir.as_path();
    let w = z.window;
    let imm = Durability::Immediate;
    let mut rows = Vec::new();
    let mut run = |systems: Vec<System<'_>>| -> Res<()> {
        rows.extend(interleave(z.rounds, systems)?);
        Ok(())
    };
    if o.wants("S1") {
        run(vec![
            system("S1", "ringbus FileStore, 64 threads", || {
                support::file_appends(base, maker, imm, 64, 1, w)
            }),
            system("S1", "okaywal 0.3, 64 threads", || {
                okaywal_appends(base, maker, 64, w)
            }),
            system("S1", "SQLite, 64 threads, 1 txn per append", || {
                sqlite_appends(base, maker, 64, 1, w)
            }),
            // C2 (issue 12): the same load through the CQRS repository.
            system("S1", "CQRS Repository::execute (C2), 64 threads", || {
                cqrs::repository_executes(base, 64, w)
            }),
        ])?;
    }
    if o.wants("S2") {
        run(vec![
            system("S2", "ringbus FileStore", || {
                support::file_appends(base, maker, imm, 1, 1, w)
            }),
            system("S2", "SQLite, 1 txn per append", || {
                sqlite_appends(base, maker, 1, 1, w)
            }),
            system("S2", "fjall 3.1, batch of 1 + persist(SyncData)", || {
                fjall_appends(base, maker, 1, true, w)
            }),
            system("S2", "okaywal 0.3, 1 thread", || {
                okaywal_appends(base, maker, 1, w)
            }),
            system("S2", "redb 4.6, Immediate", || {
                redb_appends(base, maker, 1, true, w)
            }),
        ])?;
    }
    if o.wants("S3") {
        run(vec![
            system("S3", "ringbus FileStore, appends of 100", || {
                support::file_appends(base, maker, imm, 1, 100, w)
            }),
            system("S3", "fjall 3.1, batch of 100 + persist(SyncData)", || {
                fjall_appends(base, maker, 100, true, w)
            }),
            system("S3", "redb 4.6, 100 per txn, Immediate", || {
                redb_appends(base, maker, 100, true, w)
            }),
            system("S3", "SQLite, 100 per txn", || {
                sqlite_appends(base, maker, 1, 100, w)
            }),
        ])?;
    }
    if o.wants("S4") {
        run(vec![
            system("S4", "ringbus FileStore, appends of 100, None", || {
                support::file_appends(base, maker, Durability::None, 1, 100, w)
            }),
            system("S4", "fjall 3.1, batch of 100, no persist", || {
                fjall_appends(base, maker, 100, false, w)
            }),
            system("S4", "redb 4.6, 100 per txn, Durability::None", || {
                redb_appends(base, maker, 100, false, w)
            }),
        ])?;
    }
    if o.wants("MEM") {
        run(vec![
            system("MEM", "InMemoryStore, 1 thread", || {
                support::memory_appends(maker, 1, w)
            }),
            system("MEM", "InMemoryStore, 4 threads, distinct streams", || {
                support::memory_appends(maker, 4, w)
            }),
            system("MEM", "(info) making the events alone, 1 thread", || {
                Ok(support::make_rate(maker, w))
            }),
        ])?;
    }
    Ok(rows)
}

/// S5, S6, S8 and `InMemoryStore::read_all` over filled stores, then S7
/// (opening the file store, clean and torn).
fn read_groups(o: &Options, z: &Sizes, maker: &Maker) -> Res<Vec<Row>> {
    let reads = ["S5", "S6", "S8", "MEM"].iter().any(|g| o.wants(g));
    if !reads && !o.wants("S7") {
        return Ok(Vec::new());
    }
    let layout = z.layout;
    let n = layout.events();
    let base = o.dir.as_path();
    let file_dir = TempDir::new(base, "read-file")?;
    eprintln!("[store-anchors] filling a FileStore with {n} events");
    let file = support::filled_file(file_dir.path(), maker, layout)?;
    let mut rows = Vec::new();
    if reads {
        let sqlite_dir = TempDir::new(base, "read-sqlite")?;
        let sqlite = if o.wants("S5") || o.wants("S6") {
            eprintln!("[store-anchors] filling SQLite with {n} rows");
            let db = Sqlite::open(sqlite_dir.path())?;
            db.fill(maker, layout)?;
            Some(db)
        } else {
            None
        };
        let memory = if o.wants("MEM") {
            eprintln!("[store-anchors] filling an InMemoryStore with {n} events");
            let m = InMemoryStore::new();
            support::fill(&m, maker, layout)?;
            Some(m)
        } else {
            None
        };
        let bus: Bus<Value> = BusBuilder::new().build().map_err(err("building the bus"))?;
        let mut systems = Vec::new();
        if o.wants("S5") {
            systems.push(system(
                "S5",
                "ringbus read_all (owned Event<Value>)",
                || support::read_all(&*file, n),
            ));
            systems.push(system("S5", "ringbus scan_all (EventRef)", || {
                support::scan_all(&*file, n)
            }));
        }
        if let (true, Some(db)) = (o.wants("S5"), &sqlite) {
            systems.push(system("S5", "SQLite, SELECT all ORDER BY pos", || {
                db.read_all(n, false)
            }));
            systems.push(system(
                "S5",
                "(info) SQLite as above + decode to Event<Value>",
                || db.read_all(n, true),
            ));
        }
        if o.wants("S6") {
            systems.push(system(
                "S6",
                "ringbus read_stream (owned Event<Value>)",
                || support::read_streams(&*file, layout),
            ));
        }
        if let (true, Some(db)) = (o.wants("S6"), &sqlite) {
            systems.push(system("S6", "SQLite, by (stream, ver) index", || {
                db.read_streams(layout, false)
            }));
            systems.push(system(
                "S6",
                "(info) SQLite as above + decode to Event<Value>",
                || db.read_streams(layout, true),
            ));
        }
        if o.wants("S8") {
            systems.push(system("S8", "ringbus subscribe_all catch-up", || {
                support::catch_up(&file, &bus, None)
            }));
            systems.push(system(
                "S8",
                "ringbus catch-up + FileCheckpoints every 10 000",
                || support::catch_up(&file, &bus, Some((base, 10_000))),
            ));
        }
        if let Some(m) = &memory {
            systems.push(system("MEM", "InMemoryStore read_all", || {
                support::read_all(m, n)
            }));
        }
        rows.extend(interleave(z.rounds, systems)?);
    }
    let file = Arc::try_unwrap(file).map_err(|_| "the read store is still shared")?;
    file.close().map_err(err("FileStore::close"))?;
    if o.wants("S7") {
        rows.extend(open_rounds(z.rounds, file_dir.path(), maker, n)?);
    }
    Ok(rows)
}

/// S7: open the closed store, clean and with a torn tail, in alternating
/// order. The store's last append is a single event (appended first), the
/// one the tear cuts; it is appended again after each torn open.
fn open_rounds(rounds: usize, dir: &Path, maker: &Maker, n: u64) -> Res<Vec<Row>> {
    let (mut clean, mut torn) = (Vec::new(), Vec::new());
    support::append_one(dir, maker)?;
    for r in 0..rounds {
        eprintln!("[store-anchors] round {}/{rounds}: S7 open", r + 1);
        let mut open_clean = || -> Res<()> {
            let (secs, cut) = support::open_time(dir, n + 1)?;
            if cut.is_some() {
                return Err("S7: a clean open cut a torn tail".into());
            }
            clean.push(secs);
            Ok(())
        };
        if r % 2 == 0 {
            open_clean()?;
        }
        support::tear_tail(dir)?;
        let (secs, cut) = support::open_time(dir, n)?;
        if cut.is_none() {
            return Err("S7: the torn tail was not found".into());
        }
        torn.push(secs);
        support::append_one(dir, maker)?;
        if r % 2 == 1 {
            open_clean()?;
        }
    }
    let row = |label: &str, v: &[f64]| Row {
        group: "S7",
        label: label.to_owned(),
        spread: spread(v),
    };
    Ok(vec![
        row("ringbus FileStore::open, clean", &clean),
        row("ringbus FileStore::open, torn tail (cut + sync)", &torn),
    ])
}

/// S9's figures: per durability, the medians over rounds of each round's p50
/// and p99, and the achieved rate.
struct Latency {
    label: &'static str,
    p50: Spread,
    p99: Spread,
    achieved: Spread,
}

fn latency_rounds(o: &Options, z: &Sizes, maker: &Maker) -> Res<Vec<Latency>> {
    if !o.wants("S9") {
        return Ok(Vec::new());
    }
    let modes = [
        ("Durability::None", Durability::None),
        ("Durability::Immediate", Durability::Immediate),
    ];
    let mut figures = vec![(Vec::new(), Vec::new(), Vec::new()); modes.len()];
    for r in 0..z.rounds {
        for k in 0..modes.len() {
            let i = (r + k) % modes.len();
            eprintln!(
                "[store-anchors] round {}/{}: S9 {}",
                r + 1,
                z.rounds,
                modes[i].0
            );
            let (h, achieved) =
                support::live_latency(&o.dir, maker, modes[i].1, 10_000, z.latency_window)
                    .map_err(|e| format!("S9 / {}: {e}", modes[i].0))?;
            figures[i].0.push(h.value_at_quantile(0.5) as f64 / 1e9);
            figures[i].1.push(h.value_at_quantile(0.99) as f64 / 1e9);
            figures[i].2.push(achieved);
        }
    }
    Ok(modes
        .iter()
        .zip(figures)
        .map(|((label, _), (p50, p99, a))| Latency {
            label,
            p50: spread(&p50),
            p99: spread(&p99),
            achieved: spread(&a),
        })
        .collect())
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let load_before = support::load_average();
    let z = Sizes::new(o.quick);
    let maker = Maker::new();
    let started = Instant::now();
    let result = (|| -> Res<(Vec<Row>, Vec<Latency>)> {
        let mut rows = append_groups(&o, &z, &maker)?;
        rows.extend(read_groups(&o, &z, &maker)?);
        let latency = latency_rounds(&o, &z, &maker)?;
        Ok((rows, latency))
    })();
    let (rows, latency) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let load_after = support::load_average();
    report::report(&o, &z, &rows, &latency, (load_before, load_after), started);
}
