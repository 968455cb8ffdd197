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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ringbus::store::{Durability, InMemoryStore};
use ringbus::{Bus, BusBuilder};
use serde_json::Value;

use anchors::{Fjall, OkayWal, Redb, Sqlite};
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

// ---------------------------------------------------------------- the anchors' append loops

/// The anchors' twin of [`support::appends`]: `threads` threads, `batch`
/// events per append (encoded in the loop), until `window` passes; events/s.
fn timed_appends(
    threads: usize,
    batch: usize,
    window: Duration,
    maker: &Maker,
    append: impl Fn(usize, Vec<Vec<u8>>) -> Res<()> + Sync,
) -> Res<f64> {
    let barrier = Barrier::new(threads + 1);
    let total = AtomicU64::new(0);
    let append = &append;
    let (start, end) = std::thread::scope(|s| -> Res<(Instant, Instant)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, total) = (&barrier, &total);
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    let deadline = Instant::now() + window;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let events = (0..batch as u64).map(|k| maker.encoded(n + k)).collect();
                        append(t, events)?;
                        n += batch as u64;
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().map_err(|_| "an appender panicked".to_owned())??;
        }
        Ok((start, Instant::now()))
    })?;
    Ok(total.load(Ordering::Relaxed) as f64 / (end - start).as_secs_f64())
}

fn sqlite_appends(
    base: &Path,
    maker: &Maker,
    threads: usize,
    batch: usize,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "sqlite")?;
    let db = Sqlite::open(dir.path())?;
    let names: Vec<String> = (0..threads).map(|t| format!("s-{t}")).collect();
    timed_appends(threads, batch, window, maker, |t, ev| {
        db.append(&names[t], &ev)
    })
}

fn fjall_appends(
    base: &Path,
    maker: &Maker,
    batch: usize,
    sync: bool,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "fjall")?;
    let db = Fjall::open(dir.path())?;
    let rate = timed_appends(1, batch, window, maker, |_, ev| db.append(ev, sync))?;
    drop(db);
    Ok(rate)
}

fn okaywal_appends(base: &Path, maker: &Maker, threads: usize, window: Duration) -> Res<f64> {
    let dir = TempDir::new(base, "okaywal")?;
    let wal = OkayWal::open(dir.path())?;
    let rate = timed_appends(threads, 1, window, maker, |_, ev| wal.append(&ev))?;
    wal.close()?;
    Ok(rate)
}

fn redb_appends(
    base: &Path,
    maker: &Maker,
    batch: usize,
    immediate: bool,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "redb")?;
    let db = Redb::open(dir.path())?;
    let rate = timed_appends(1, batch, window, maker, |_, ev| db.append(&ev, immediate))?;
    drop(db);
    Ok(rate)
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

// ---------------------------------------------------------------- targets

/// One target line.
struct Check {
    group: &'static str,
    what: String,
    measured: String,
    met: bool,
}

fn median_of(rows: &[Row], group: &str, label_start: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.group == group && r.label.starts_with(label_start))
        .map(|r| r.spread.median)
}

fn checks(rows: &[Row], latency: &[Latency]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |group,
                     what: &str,
                     measured: Option<f64>,
                     show: fn(f64) -> String,
                     met: &dyn Fn(f64) -> bool| {
        if let Some(v) = measured {
            out.push(Check {
                group,
                what: what.to_owned(),
                measured: show(v),
                met: met(v),
            });
        }
    };
    let at = |group: &str, label: &str| median_of(rows, group, label);
    let ratio = |group: &str, ours: &str, theirs: &str| Some(at(group, ours)? / at(group, theirs)?);
    let times = |v: f64| format!("{v:.2}×");
    let rate = fmt_rate as fn(f64) -> String;
    let secs = fmt_secs as fn(f64) -> String;
    let min = |goal: f64| move |v: f64| v >= goal;
    let max = |goal: f64| move |v: f64| v <= goal;

    check(
        "S1",
        "≥ 50 000 appends/s",
        at("S1", "ringbus"),
        rate,
        &min(50e3),
    );
    check(
        "S1",
        "≥ 1.0× okaywal (64 threads)",
        ratio("S1", "ringbus", "okaywal"),
        times,
        &min(1.0),
    );
    check(
        "S1",
        "≥ 5× SQLite (one txn per append)",
        ratio("S1", "ringbus", "SQLite"),
        times,
        &min(5.0),
    );
    check(
        "S2",
        "≥ 1.0× SQLite WAL FULL",
        ratio("S2", "ringbus", "SQLite"),
        times,
        &min(1.0),
    );
    check(
        "S3",
        "≥ 100 000 events/s",
        at("S3", "ringbus"),
        rate,
        &min(100e3),
    );
    check(
        "S3",
        "≥ 1.0× fjall (batch of 100 + persist)",
        ratio("S3", "ringbus", "fjall"),
        times,
        &min(1.0),
    );
    check(
        "S4",
        "≥ 1 000 000 events/s",
        at("S4", "ringbus"),
        rate,
        &min(1e6),
    );
    check(
        "S5",
        "read_all owned ≥ 1 000 000 events/s",
        at("S5", "ringbus read_all"),
        rate,
        &min(1e6),
    );
    check(
        "S5",
        "scan_all ≥ 2 000 000 events/s",
        at("S5", "ringbus scan_all"),
        rate,
        &min(2e6),
    );
    check(
        "S5",
        "scan_all ≥ 1.0× SQLite read-all",
        ratio("S5", "ringbus scan_all", "SQLite"),
        times,
        &min(1.0),
    );
    check(
        "S6",
        "≥ 2× SQLite's indexed read",
        ratio("S6", "ringbus", "SQLite"),
        times,
        &min(2.0),
    );
    let clean = at("S7", "ringbus FileStore::open, clean");
    let torn = at("S7", "ringbus FileStore::open, torn");
    check("S7", "open ≤ 1 s", clean, secs, &max(1.0));
    let repair = clean.zip(torn).map(|(c, t)| (t - c).max(0.0));
    check(
        "S7",
        "a torn-tail repair adds ≤ 50 ms",
        repair,
        secs,
        &max(0.050),
    );
    check(
        "S8",
        "catch-up ≥ 1 000 000 events/s",
        at("S8", "ringbus subscribe_all"),
        rate,
        &min(1e6),
    );
    check(
        "S8",
        "with FileCheckpoints every 10 000 ≥ 500 000 events/s",
        at("S8", "ringbus catch-up + FileCheckpoints"),
        rate,
        &min(500e3),
    );
    if let Some(none) = latency.iter().find(|l| l.label == "Durability::None") {
        check(
            "S9",
            "None: p50 ≤ 100 µs",
            Some(none.p50.median),
            secs,
            &max(100e-6),
        );
        check(
            "S9",
            "None: p99 ≤ 2 ms",
            Some(none.p99.median),
            secs,
            &max(2e-3),
        );
    }
    check(
        "MEM",
        "InMemoryStore 1 thread ≥ 2 000 000 appends/s",
        at("MEM", "InMemoryStore, 1 thread"),
        rate,
        &min(2e6),
    );
    check(
        "MEM",
        "InMemoryStore 4 threads ≥ 2 000 000 appends/s in total",
        at("MEM", "InMemoryStore, 4 threads"),
        rate,
        &min(2e6),
    );
    check(
        "MEM",
        "InMemoryStore read_all ≥ 10 000 000 events/s",
        at("MEM", "InMemoryStore read_all"),
        rate,
        &min(10e6),
    );
    out
}

// ---------------------------------------------------------------- the report

/// The start of the label of the ringbus row a row's ratio divides: the
/// group's first ringbus row, but in S5 `scan_all` (the target compares it
/// with SQLite's read-all) — and `read_all` for a SQLite row that decodes too.
fn reference(group: &str, label: &str) -> &'static str {
    match group {
        "S5" if label.contains("decode") => "ringbus read_all",
        "S5" => "ringbus scan_all",
        _ => "ringbus",
    }
}

/// A ringbus row's label, short, for the ratio column.
fn short(label: &str) -> &str {
    label.split([',', '(']).next().unwrap_or(label).trim()
}

fn title(group: &str, layout: Layout) -> String {
    let n = layout.events();
    match group {
        "S1" => "S1  single-event appends, 64 concurrent appenders, durable (Immediate)".into(),
        "S2" => "S2  single-event appends, 1 appender, durable (Immediate)".into(),
        "S3" => "S3  appends of 100 events, 1 appender, durable (Immediate)".into(),
        "S4" => "S4  appends of 100 events, 1 appender, not synced (Durability::None)".into(),
        "MEM" => format!("InMemoryStore  single-event appends; read_all over {n} events"),
        "S5" => format!("S5  read everything, page cache warm, {n} events"),
        "S6" => format!(
            "S6  read each stream whole, {} streams × {} events",
            layout.streams, layout.per_stream
        ),
        "S7" => format!("S7  open a closed {n}-event store, warm cache"),
        "S8" => format!("S8  catch-up of a no-op subscription over {n} stored events"),
        _ => group.into(),
    }
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
    report(&o, &z, &rows, &latency, (load_before, load_after), started);
}

fn report(
    o: &Options,
    z: &Sizes,
    rows: &[Row],
    latency: &[Latency],
    load: (Option<f64>, Option<f64>),
    started: Instant,
) {
    println!(
        "ringbus event store side by side — commit {}, {} cores; stores under {}",
        support::commit(),
        support::cores(),
        o.dir.display()
    );
    println!(
        "host load (1-min average): {} before, {} after",
        support::show_load(load.0),
        support::show_load(load.1)
    );
    println!(
        "{}-byte events (ringbus's encoding of the same Event<serde_json::Value>, made in the \
         loop, for every system); {} interleaved rounds, system order rotated per round; \
         median [min – max]{}; ran {:.0} s",
        support::EVENT_BYTES,
        z.rounds,
        if o.quick {
            "; --quick: short runs, 100 k-event read stores"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    let mut groups: Vec<&str> = Vec::new();
    for r in rows {
        if !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups.sort_by_key(|g| GROUPS.iter().position(|k| k == g));
    for g in groups {
        println!("\n{}", title(g, z.layout));
        let unit = if g == "S7" { Unit::Secs } else { Unit::Rate };
        let reference_row = |label: &str| {
            rows.iter()
                .find(|r| r.group == g && r.label.starts_with(reference(g, label)))
        };
        println!(
            "  {:<50} {:>11}  {:>25}  {}",
            "system",
            "median",
            "[min – max]",
            if unit == Unit::Rate && g != "MEM" {
                "ringbus ÷ this"
            } else {
                ""
            }
        );
        for r in rows.iter().filter(|r| r.group == g) {
            let ratio = match reference_row(&r.label) {
                Some(ours)
                    if unit == Unit::Rate && !r.label.starts_with("ringbus") && g != "MEM" =>
                {
                    format!(
                        "{:.2}× ({})",
                        ours.spread.median / r.spread.median,
                        short(&ours.label)
                    )
                }
                _ => String::new(),
            };
            println!(
                "  {:<50} {:>11}  {:>25}  {}",
                r.label,
                unit.show(r.spread.median),
                format!(
                    "[{} – {}]",
                    unit.show(r.spread.min),
                    unit.show(r.spread.max)
                ),
                ratio
            );
        }
    }
    if !latency.is_empty() {
        println!(
            "\nS9  append → live handler latency via store.publish_to(&bus), one appender paced \
             at 10 000 appends/s, {} ms per round (from the append call to the handler call)",
            z.latency_window.as_millis()
        );
        println!(
            "  {:<24} {:>24}  {:>24}  {:>22}",
            "durability", "p50 median [min – max]", "p99 median [min – max]", "achieved appends/s"
        );
        for l in latency {
            let s = |x: Spread| {
                format!(
                    "{} [{}–{}]",
                    fmt_secs(x.median),
                    fmt_secs(x.min),
                    fmt_secs(x.max)
                )
            };
            println!(
                "  {:<24} {:>24}  {:>24}  {:>22}",
                l.label,
                s(l.p50),
                s(l.p99),
                fmt_rate(l.achieved.median)
            );
        }
    }
    let checks = checks(rows, latency);
    println!("\nTargets (issue 11, A8; reported, not asserted):");
    for c in &checks {
        println!(
            "  {:<4} {:<56} {:>11}  {}",
            c.group,
            c.what,
            c.measured,
            if c.met { "met" } else { "MISSED" }
        );
    }
    let missed = checks.iter().filter(|c| !c.met).count();
    println!(
        "{} of {} targets met{}",
        checks.len() - missed,
        checks.len(),
        if o.quick {
            " (--quick: rough figures, smaller stores than the targets name)"
        } else {
            ""
        }
    );
}
