//! The throughput and latency report: ringbus side by side with the disruptor
//! crate, crossbeam-channel, flume and std's sync_channel, on the same workload,
//! in one run on this machine.
//!
//! ```text
//! cargo run --release --example throughput              # the full report (about 2 minutes)
//! cargo run --release --example throughput -- --quick   # a seconds-long smoke run
//! cargo run --release --example throughput -- --json    # machine-readable
//! cargo run --release --example throughput -- --scenario spsc_single
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ringbus::WaitStrategy;
use support::{Channel, LatencySystem, Publish};

const SCENARIOS: &[(&str, &str)] = &[
    (
        "spsc_single",
        "1 producer, single publish, 8 handlers routed by type",
    ),
    ("spsc_batch10", "1 producer, batches of 10"),
    ("spsc_batch100", "1 producer, batches of 100"),
    ("mpsc_2p", "2 producers, single publish"),
    ("mpsc_4p", "4 producers, single publish"),
    ("fanout_4", "1 producer, every event to 4 handlers"),
    (
        "partitioned",
        "1 producer, 4 lanes / single consumer, ~200 ns of work per event",
    ),
    (
        "metrics",
        "ringbus spsc_single with metrics histograms on vs off (counters always on)",
    ),
    (
        "latency",
        "one-way publish->handler latency at fixed rates (HDR, intended-time based)",
    ),
    (
        "idle",
        "CPU used by an idle bus with the default wait strategy",
    ),
    (
        "event",
        "cost of Event::new (one clock read, one UUID v7 id)",
    ),
];

struct Options {
    quick: bool,
    json: bool,
    scenario: Option<String>,
}

fn usage() -> String {
    let mut s =
        String::from("usage: throughput [--quick] [--json] [--scenario NAME]\n\nscenarios:\n");
    for (name, what) in SCENARIOS {
        s.push_str(&format!("  {name:<14} {what}\n"));
    }
    s
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: false,
        scenario: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--scenario" => {
                let name = args.next().ok_or("--scenario needs a NAME")?;
                if !SCENARIOS.iter().any(|(n, _)| *n == name) {
                    return Err(format!("unknown scenario {name:?}"));
                }
                o.scenario = Some(name);
            }
            "-h" | "--help" => {
                print!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// One measured figure.
struct Row {
    scenario: &'static str,
    system: String,
    events_per_sec: f64,
}

struct LatencyRow {
    system: String,
    rate: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    p9999: u64,
    max: u64,
    count: u64,
}

/// A system under test in one scenario: its name and a run of `n` events.
type Runner<'a> = (String, Box<dyn FnMut(u64) -> Duration + 'a>);

/// Runs every system of a scenario in interleaved rounds — one run each per round —
/// for about `budget` per system (at least 3 rounds), and returns each system's
/// median events/s. Interleaving spreads a noisy machine's drift over all systems
/// instead of penalising whichever ran during a bad second.
fn measure_all(budget: Duration, n: u64, runners: Vec<Runner<'_>>) -> Vec<(String, f64)> {
    let mut runners = runners;
    let start = Instant::now();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
    let total = budget * runners.len() as u32;
    loop {
        for (i, (_, run)) in runners.iter_mut().enumerate() {
            let d = run(n);
            rates[i].push(n as f64 / d.as_secs_f64());
        }
        let rounds = rates[0].len();
        if (start.elapsed() >= total && rounds >= 3) || rounds >= 25 {
            break;
        }
    }
    runners
        .into_iter()
        .zip(rates)
        .map(|((name, _), mut r)| {
            r.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (name, r[r.len() / 2])
        })
        .collect()
}

fn machine() -> (usize, String) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    (cores, model)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 10_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage());
            std::process::exit(2);
        }
    };
    let load_before = load_average();
    let wanted = |name: &str| opts.scenario.as_deref().is_none_or(|s| s == name);
    let (budget, n) = if opts.quick {
        (Duration::from_millis(100), 200_000u64)
    } else {
        (Duration::from_millis(1500), 2_000_000u64)
    };
    let progress = |what: &str| eprintln!("[throughput] {what} ...");
    let channels = [Channel::Crossbeam, Channel::Flume, Channel::Std];
    let ringbus_waits = [WaitStrategy::Blocking, WaitStrategy::BusySpin];
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |scenario: &'static str, system: String, r: f64| {
        rows.push(Row {
            scenario,
            system,
            events_per_sec: r,
        })
    };

    // Throughput scenarios: (name, producers, publish, fanout).
    let plain: [(&'static str, usize, Publish, usize); 6] = [
        ("spsc_single", 1, Publish::Single, 0),
        ("spsc_batch10", 1, Publish::Batch(10), 0),
        ("spsc_batch100", 1, Publish::Batch(100), 0),
        ("mpsc_2p", 2, Publish::Single, 0),
        ("mpsc_4p", 4, Publish::Single, 0),
        ("fanout_4", 1, Publish::Single, 4),
    ];
    // Warm-up: page in the code and the rings, let the CPU settle.
    let _ = support::ringbus_run(n / 4, 1, Publish::Single, WaitStrategy::Blocking, 0);
    let _ = support::disruptor_run(n / 4, 1, Publish::Single, 0, 0);
    for (name, producers, publish, fanout) in plain {
        if !wanted(name) {
            continue;
        }
        progress(name);
        let mut runners: Vec<Runner<'_>> = Vec::new();
        for wait in ringbus_waits {
            runners.push((
                format!("ringbus ({wait:?})"),
                Box::new(move |n| support::ringbus_run(n, producers, publish, wait, fanout)),
            ));
        }
        runners.push((
            "disruptor (BusySpin)".into(),
            Box::new(move |n| support::disruptor_run(n, producers, publish, fanout, 0)),
        ));
        // Channels have no batch publish: they appear in the single-publish scenarios.
        if publish == Publish::Single {
            for ch in channels {
                runners.push((
                    ch.name().into(),
                    Box::new(move |n| support::channel_run(ch, n, producers, fanout, 0)),
                ));
            }
        }
        for (system, r) in measure_all(budget, n, runners) {
            push(name, system, r);
        }
    }
    let mut work_ns_measured = None;
    if wanted("partitioned") {
        progress("partitioned");
        let spin = support::calibrate_work(200);
        let t = Instant::now();
        std::hint::black_box(support::spin_work(spin * 10_000, 3));
        work_ns_measured = Some(t.elapsed().as_nanos() as u64 / 10_000);
        let pn = n / 10;
        let mut runners: Vec<Runner<'_>> = Vec::new();
        for wait in ringbus_waits {
            runners.push((
                format!("ringbus 4 lanes ({wait:?})"),
                Box::new(move |n| support::ringbus_partitioned(n, 4, 2, spin, wait)),
            ));
        }
        runners.push((
            "disruptor (BusySpin)".into(),
            Box::new(move |n| support::disruptor_run(n, 1, Publish::Batch(100), 0, spin)),
        ));
        for ch in channels {
            runners.push((
                ch.name().into(),
                Box::new(move |n| support::channel_run(ch, n, 1, 0, spin)),
            ));
        }
        for (system, r) in measure_all(budget, pn, runners) {
            push("partitioned", system, r);
        }
    }

    if wanted("metrics") {
        progress("metrics on vs off");
        let runners: Vec<Runner<'_>> = vec![
            (
                "ringbus (Blocking, metrics off)".into(),
                Box::new(|n| {
                    support::ringbus_run_metrics(
                        n,
                        1,
                        Publish::Single,
                        WaitStrategy::Blocking,
                        0,
                        false,
                    )
                }),
            ),
            (
                "ringbus (Blocking, metrics on)".into(),
                Box::new(|n| {
                    support::ringbus_run_metrics(
                        n,
                        1,
                        Publish::Single,
                        WaitStrategy::Blocking,
                        0,
                        true,
                    )
                }),
            ),
        ];
        for (system, r) in measure_all(budget * 2, n, runners) {
            push("metrics", system, r);
        }
    }

    let mut latency = Vec::new();
    if wanted("latency") {
        let dur = if opts.quick {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(2)
        };
        for rate in [100_000u64, 500_000, 1_000_000] {
            progress(&format!("latency at {} events/s", rate));
            let systems = LatencySystem::ALL;
            for sys in systems {
                let h = support::latency_run(sys, rate, dur);
                latency.push(LatencyRow {
                    system: sys.name(),
                    rate,
                    p50: h.value_at_quantile(0.50),
                    p99: h.value_at_quantile(0.99),
                    p999: h.value_at_quantile(0.999),
                    p9999: h.value_at_quantile(0.9999),
                    max: h.max(),
                    count: h.len(),
                });
            }
        }
    }

    let idle = if wanted("idle") {
        progress("idle CPU for 1 s");
        support::idle_cpu(Duration::from_secs(1))
    } else {
        None
    };

    let event_ns = if wanted("event") {
        progress("Event::new");
        let ty = ringbus::EventType::new("bench.type0");
        let src = ringbus::Source::new("bench");
        let n = if opts.quick { 200_000 } else { 5_000_000 };
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(ringbus::Event::new(ty, src, i));
        }
        Some(t.elapsed().as_nanos() as f64 / n as f64)
    } else {
        None
    };

    let (cores, model) = machine();
    let commit = commit();
    // ringbus's ratio to each competitor in the same scenario (its best wait strategy
    // against each, and the shipped default — Blocking — against each).
    let ratio = |scenario: &str, system: &str, ours: &str| -> Option<f64> {
        let ours = rows
            .iter()
            .find(|r| r.scenario == scenario && r.system == ours)?;
        let theirs = rows
            .iter()
            .find(|r| r.scenario == scenario && r.system == system)?;
        Some(ours.events_per_sec / theirs.events_per_sec)
    };

    if opts.json {
        let mut out = serde_json::json!({
            "machine": { "cores": cores, "cpu": model },
            "commit": commit,
            "quick": opts.quick,
            "throughput": rows.iter().map(|r| serde_json::json!({
                "scenario": r.scenario, "system": r.system, "events_per_sec": r.events_per_sec,
            })).collect::<Vec<_>>(),
            "latency_ns": latency.iter().map(|l| serde_json::json!({
                "system": l.system, "rate": l.rate, "p50": l.p50, "p99": l.p99,
                "p99.9": l.p999, "p99.99": l.p9999, "max": l.max, "samples": l.count,
            })).collect::<Vec<_>>(),
        });
        if let Some(idle) = idle {
            out["idle_cpu_fraction_of_one_core"] = serde_json::json!(idle);
        }
        if let Some(w) = work_ns_measured {
            out["partitioned_work_ns_per_event"] = serde_json::json!(w);
        }
        if let Some(ns) = event_ns {
            out["event_new_ns"] = serde_json::json!(ns);
        }
        out["load_average_before"] = serde_json::json!(load_before);
        out["load_average_after"] = serde_json::json!(load_average());
        out["event_size_bytes"] = serde_json::json!(std::mem::size_of::<ringbus::Event<u64>>());
        out["envelope_size_bytes"] = serde_json::json!(std::mem::size_of::<support::Envelope>());
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return;
    }

    let load_after = load_average();
    println!("ringbus throughput report — commit {commit}, {cores} cores, {model}");
    println!(
        "workload: routed by type through {} handlers (see benches/support/mod.rs); slot payload: \
         ringbus Event<u64> {} bytes, the competitors' Envelope {} bytes",
        support::HANDLERS,
        std::mem::size_of::<ringbus::Event<u64>>(),
        std::mem::size_of::<support::Envelope>()
    );
    print_load(load_before, load_after, cores);
    if opts.quick {
        println!("(--quick: short runs, figures are rough)");
    }
    println!();
    println!(
        "{:<14} {:<28} {:>12} {:>14} {:>14}",
        "scenario", "system", "events/s", "Blocking ×", "BusySpin ×"
    );
    let mut last = "";
    for r in &rows {
        if r.scenario != last && !last.is_empty() {
            println!();
        }
        last = r.scenario;
        let (b, s) = if r.system.starts_with("ringbus") {
            (String::new(), String::new())
        } else {
            let lane = if r.scenario == "partitioned" {
                "ringbus 4 lanes"
            } else {
                "ringbus"
            };
            let f = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.2}"));
            (
                f(ratio(r.scenario, &r.system, &format!("{lane} (Blocking)"))),
                f(ratio(r.scenario, &r.system, &format!("{lane} (BusySpin)"))),
            )
        };
        println!(
            "{:<14} {:<28} {:>12} {:>14} {:>14}",
            r.scenario,
            r.system,
            fmt_rate(r.events_per_sec),
            b,
            s
        );
    }
    if !rows.is_empty() {
        println!("\n(× = ringbus events/s ÷ that system's, ringbus with the Blocking default and with BusySpin)");
    }
    let rate_of = |sys: &str| {
        rows.iter()
            .find(|r| r.scenario == "metrics" && r.system == sys)
    };
    if let (Some(off), Some(on)) = (
        rate_of("ringbus (Blocking, metrics off)"),
        rate_of("ringbus (Blocking, metrics on)"),
    ) {
        println!(
            "metrics cost: {:+.1} % throughput with histograms on (medians of interleaved runs)",
            (on.events_per_sec / off.events_per_sec - 1.0) * 100.0
        );
    }
    if let Some(w) = work_ns_measured {
        println!("partitioned: handler work measured at {w} ns/event; ringbus uses a 2-thread pool + dispatcher");
    }
    if !latency.is_empty() {
        println!(
            "\n{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (one-way)", "rate", "p50", "p99", "p99.9", "p99.99", "max", "samples"
        );
        for l in &latency {
            println!(
                "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                l.system,
                format!("{}k/s", l.rate / 1000),
                fmt_ns(l.p50),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.p9999),
                fmt_ns(l.max),
                l.count
            );
        }
    }
    if let Some(ns) = event_ns {
        println!("\nEvent::new (clock read + UUID v7 id, no syscall): {ns:.1} ns/event");
    }
    if let Some(idle) = idle {
        println!(
            "\nidle: a default bus (Blocking, internal pool) used {:.2} % of one core over 1 s",
            idle * 100.0
        );
    }
}

/// The 1-minute load average (Linux `/proc/loadavg`), if readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Says what the host's load was, and what that means for the spinning rows.
fn print_load(before: Option<f64>, after: Option<f64>, cores: usize) {
    let show = |l: Option<f64>| l.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"));
    println!(
        "host load (1-min average): {} before, {} after",
        show(before),
        show(after)
    );
    // Busy: more than half the cores' worth of other work.
    let busy = [before, after]
        .into_iter()
        .flatten()
        .any(|l| l >= cores as f64 / 2.0);
    if busy {
        println!(
            "WARNING: the host was busy: busy-spin rows (ringbus BusySpin, the disruptor) and \
             ratios against them measure the scheduler, not the rings"
        );
    }
}
