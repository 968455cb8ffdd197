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

/// Runs `f(n)` repeatedly for about `budget`, returns the median events/s.
fn measure(budget: Duration, n: u64, mut f: impl FnMut(u64) -> Duration) -> f64 {
    let start = Instant::now();
    let mut rates = Vec::new();
    loop {
        let d = f(n);
        rates.push(n as f64 / d.as_secs_f64());
        if start.elapsed() >= budget && rates.len() >= 3 {
            break;
        }
        if rates.len() >= 50 {
            break;
        }
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rates[rates.len() / 2]
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
    for (name, producers, publish, fanout) in plain {
        if !wanted(name) {
            continue;
        }
        progress(name);
        for wait in ringbus_waits {
            let r = measure(budget, n, |n| {
                support::ringbus_run(n, producers, publish, wait, fanout)
            });
            push(name, format!("ringbus ({wait:?})"), r);
        }
        let r = measure(budget, n, |n| {
            support::disruptor_run(n, producers, publish, fanout, 0)
        });
        push(name, "disruptor (BusySpin)".into(), r);
        // Channels have no batch publish: they appear in the single-publish scenarios.
        if publish == Publish::Single {
            for ch in channels {
                let r = measure(budget, n, |n| {
                    support::channel_run(ch, n, producers, fanout, 0)
                });
                push(name, ch.name().into(), r);
            }
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
        for wait in ringbus_waits {
            let r = measure(budget, pn, |n| {
                support::ringbus_partitioned(n, 4, 2, spin, wait)
            });
            push("partitioned", format!("ringbus 4 lanes ({wait:?})"), r);
        }
        let r = measure(budget, pn, |n| {
            support::disruptor_run(n, 1, Publish::Batch(100), 0, spin)
        });
        push("partitioned", "disruptor (BusySpin)".into(), r);
        for ch in channels {
            let r = measure(budget, pn, |n| support::channel_run(ch, n, 1, 0, spin));
            push("partitioned", ch.name().into(), r);
        }
    }

    if wanted("metrics") {
        progress("metrics on vs off");
        // Alternate on/off runs so drift on a noisy machine hits both alike.
        let (mut on, mut off) = (Vec::new(), Vec::new());
        let rounds = if opts.quick { 2 } else { 6 };
        for _ in 0..rounds {
            off.push(measure(budget / 2, n, |n| {
                support::ringbus_run_metrics(n, 1, Publish::Single, WaitStrategy::Blocking, 0, false)
            }));
            on.push(measure(budget / 2, n, |n| {
                support::ringbus_run_metrics(n, 1, Publish::Single, WaitStrategy::Blocking, 0, true)
            }));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        push("metrics", "ringbus (Blocking, metrics off)".into(), median(off));
        push("metrics", "ringbus (Blocking, metrics on)".into(), median(on));
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
            let systems = [
                LatencySystem::Ringbus(WaitStrategy::Blocking),
                LatencySystem::Ringbus(WaitStrategy::Yielding),
                LatencySystem::Ringbus(WaitStrategy::BusySpin),
                LatencySystem::Disruptor,
                LatencySystem::Crossbeam,
            ];
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
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return;
    }

    println!("ringbus throughput report — commit {commit}, {cores} cores, {model}");
    println!("workload: 112-byte envelope per event, routed by type through 8 handlers (see benches/support/mod.rs)");
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
    let rate_of = |sys: &str| rows.iter().find(|r| r.scenario == "metrics" && r.system == sys);
    if let (Some(off), Some(on)) = (
        rate_of("ringbus (Blocking, metrics off)"),
        rate_of("ringbus (Blocking, metrics on)"),
    ) {
        println!(
            "metrics cost: {:+.1} % throughput with histograms on (median of alternating runs)",
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
