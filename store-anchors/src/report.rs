//! The report: each group's rows with medians, spreads and ratios, the S9
//! latencies, and the S1–S9 targets marked met or MISSED.

use std::time::Instant;

use crate::support::{self, fmt_rate, fmt_secs, Layout, Spread};
use crate::{Latency, Options, Row, Sizes, Unit, GROUPS};

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
        "S1",
        "C2: CQRS execute ≥ 0.8× S1 (overhead ≤ 20 %)",
        ratio("S1", "CQRS", "ringbus"),
        times,
        &min(0.8),
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

pub(crate) fn report(
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
