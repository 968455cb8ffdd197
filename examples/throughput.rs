//! The throughput report: ringbus side by side with the disruptor crate,
//! crossbeam-channel, flume and std's sync_channel, like for like — the same
//! `Event<u64>` made with `Event::new` per event, the same capacity, the same
//! consumer threads, matched wait strategies — in one run on this machine. What
//! each system does per event: BENCHMARKS.md, "How we measure".
//!
//! ```text
//! cargo run --release --example throughput              # the full report (about 4 minutes)
//! cargo run --release --example throughput -- --quick   # a seconds-long smoke run
//! cargo run --release --example throughput -- --json    # machine-readable
//! cargo run --release --example throughput -- --scenario spsc_single
//! cargo run --release --example throughput -- --scenario store   # the event store alone
//! cargo run --release --features nats --example throughput -- --scenario nats  # NATS JetStream
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

/// The event store's workloads (`--scenario store`), shared with `store-anchors/`.
#[path = "../benches/support/store.rs"]
mod store;

/// The NATS JetStream section (`--scenario nats`), on a nats-server it starts.
#[cfg(feature = "nats")]
#[path = "../benches/support/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use ringbus::WaitStrategy;
use support::{median, Make, Scenario, Shape, System, Waiting, LATENCY_RATES, LATENCY_SYSTEMS};

/// The report's parts besides the throughput scenarios.
const EXTRAS: &[(&str, &str)] = &[
    (
        "metrics",
        "ringbus spsc_single (Blocking) with metrics histograms on vs off",
    ),
    (
        "latency",
        "one-way publish->handler latency at fixed rates, interleaved rounds",
    ),
    (
        "cpu",
        "process CPU time per event with a producer paced at 100 k and 1 M events/s",
    ),
    (
        "idle",
        "CPU used by an idle bus with the default wait strategy",
    ),
    (
        "event",
        "cost of Event::new (its id and timestamp included)",
    ),
    (
        "store",
        "the event store alone, a quick subset (only when named; the side by side: store-anchors/)",
    ),
    (
        "nats",
        "NATS JetStream on a nats-server it starts (only when named; needs --features nats)",
    ),
];

/// The offered rates of the CPU-cost runs, events/s.
const CPU_RATES: [u64; 2] = [100_000, 1_000_000];

struct Options {
    quick: bool,
    json: bool,
    scenario: Option<String>,
}

fn usage(scenarios: &[Scenario]) -> String {
    let mut s =
        String::from("usage: throughput [--quick] [--json] [--scenario NAME]\n\nscenarios:\n");
    for sc in scenarios {
        s.push_str(&format!("  {:<22} {}\n", sc.name, sc.what));
    }
    for (name, what) in EXTRAS {
        s.push_str(&format!("  {name:<22} {what}\n"));
    }
    s
}

fn parse_args(scenarios: &[Scenario]) -> Result<Options, String> {
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
                let known = scenarios.iter().any(|s| s.name == name)
                    || EXTRAS.iter().any(|(n, _)| *n == name);
                if !known {
                    return Err(format!("unknown scenario {name:?}"));
                }
                o.scenario = Some(name);
            }
            "-h" | "--help" => {
                print!("{}", usage(scenarios));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// One measured throughput figure.
struct Row {
    scenario: &'static str,
    system: System,
    label: String,
    threads: usize,
    producers: usize,
    make: Make,
    events_per_sec: f64,
    rounds: usize,
    /// ringbus (same wait class, same consumer threads) ÷ this; `None` for ringbus
    /// rows and unmatched ones.
    ratio: Option<f64>,
}

struct LatencyRow {
    system: System,
    rate: u64,
    rounds: support::LatencyRounds,
}

struct CpuRow {
    /// `None`: the producer alone (baseline).
    system: Option<System>,
    rate: u64,
    ns_per_event: f64,
}

/// A system under test in one scenario: its index in the scenario and a run of
/// `n` events.
type Runner<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// Runs every system of a scenario in interleaved rounds — one run each per round —
/// for about `budget` per system (at least 3 rounds, at most 25), and returns each
/// system's median events/s and the rounds. Interleaving spreads a noisy machine's
/// drift over all systems instead of penalising whichever ran during a bad second.
fn measure_all(budget: Duration, n: u64, runners: Vec<Runner<'_>>) -> (Vec<f64>, usize) {
    let mut runners = runners;
    let start = Instant::now();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
    let total = budget * runners.len() as u32;
    loop {
        for (i, run) in runners.iter_mut().enumerate() {
            let d = run(n);
            rates[i].push(n as f64 / d.as_secs_f64());
        }
        let rounds = rates[0].len();
        if (start.elapsed() >= total && rounds >= 3) || rounds >= 25 {
            return (rates.iter().map(|r| median(r)).collect(), rounds);
        }
    }
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

/// The 1-minute load average (Linux `/proc/loadavg`), if readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy: a load of at least half the cores (≥ 1 on 2 cores) before the run — the
/// other work on the host. The load after includes this run's own threads (two
/// busy-spinning threads alone make it ~2 on a minute-long run), so it is shown,
/// not judged.
fn host_busy(before: Option<f64>, _after: Option<f64>, cores: usize) -> bool {
    before.is_some_and(|l| l >= cores as f64 / 2.0)
}

/// Runs one throughput scenario and returns its rows, ratios filled in.
fn run_scenario(sc: &Scenario, budget: Duration, n: u64) -> Vec<Row> {
    let runners: Vec<Runner<'_>> = sc
        .entries
        .iter()
        .map(|&(system, shape)| Box::new(move |n| sc.run(system, shape, n)) as Runner<'_>)
        .collect();
    let (rates, rounds) = measure_all(budget, n / sc.divisor, runners);
    let mut rows: Vec<Row> = sc
        .entries
        .iter()
        .zip(rates)
        .map(|(&(system, shape), r)| Row {
            scenario: sc.name,
            system,
            label: system.label(shape),
            threads: system.consumer_threads(shape),
            producers: sc.producers,
            make: sc.make,
            events_per_sec: r,
            rounds,
            ratio: None,
        })
        .collect();
    // Matched: the same wait class and the same consumer threads.
    let ringbus: Vec<(Waiting, usize, f64)> = rows
        .iter()
        .filter(|r| r.system.is_ringbus())
        .map(|r| (r.system.waiting(), r.threads, r.events_per_sec))
        .collect();
    for r in rows.iter_mut().filter(|r| !r.system.is_ringbus()) {
        r.ratio = ringbus
            .iter()
            .find(|(w, t, _)| *w == r.system.waiting() && *t == r.threads)
            .map(|(_, _, ours)| ours / r.events_per_sec);
    }
    rows
}

/// One line of the targets block.
struct Target {
    what: &'static str,
    measured: Option<f64>,
    unit: &'static str,
    goal: f64,
    /// `true`: met when measured ≥ goal; `false`: when ≤.
    at_least: bool,
}

impl Target {
    fn met(&self) -> Option<bool> {
        self.measured.map(|m| {
            if self.at_least {
                m >= self.goal
            } else {
                m <= self.goal
            }
        })
    }
}

fn targets(rows: &[Row], cpu: &[CpuRow], event_ns: Option<f64>) -> Vec<Target> {
    let ratio = |scenario: &str, label: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.label == label)
            .and_then(|r| r.ratio)
    };
    let cpu_of = |system: System| {
        cpu.iter()
            .find(|c| c.rate == 1_000_000 && c.system == Some(system))
            .map(|c| c.ns_per_event)
    };
    let cpu_ratio = match (
        cpu_of(System::Ringbus(WaitStrategy::Blocking)),
        cpu_of(System::Channel(support::Channel::Crossbeam)),
    ) {
        (Some(ours), Some(theirs)) => Some(ours / theirs),
        _ => None,
    };
    let t = |what, measured, goal| Target {
        what,
        measured,
        unit: "×",
        goal,
        at_least: true,
    };
    vec![
        t(
            "single publish, Event::new: ringbus ÷ crossbeam-channel (blocking both)",
            ratio("spsc_single", "crossbeam-channel"),
            1.5,
        ),
        t(
            "single publish, Event::new: ringbus ÷ disruptor (busy-spin both)",
            ratio("spsc_single", "disruptor (BusySpin)"),
            1.0,
        ),
        t(
            "batch of 100: ringbus ÷ disruptor (busy-spin both)",
            ratio("spsc_batch100", "disruptor (BusySpin)"),
            1.2,
        ),
        t(
            "2 producers: ringbus ÷ crossbeam-channel (blocking both)",
            ratio("mpsc_2p", "crossbeam-channel"),
            1.5,
        ),
        t(
            "2 producers: ringbus ÷ disruptor (busy-spin both)",
            ratio("mpsc_2p", "disruptor (BusySpin)"),
            1.0,
        ),
        t(
            "fan-out to 4: ringbus ÷ disruptor 1 consumer × 4 handlers (busy-spin both)",
            ratio("fanout_4", "disruptor (BusySpin)"),
            1.0,
        ),
        Target {
            what: "CPU per event at 1 M/s: ringbus (Blocking) ÷ crossbeam-channel",
            measured: cpu_ratio,
            unit: "×",
            goal: 1.0,
            at_least: false,
        },
        Target {
            what: "Event::new",
            measured: event_ns,
            unit: " ns",
            goal: 12.0,
            at_least: false,
        },
    ]
}

fn main() {
    let scenarios = support::scenarios();
    let opts = match parse_args(&scenarios) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage(&scenarios));
            std::process::exit(2);
        }
    };
    if opts.scenario.as_deref() == Some("store") {
        if opts.json {
            eprintln!("error: --json is not supported with --scenario store");
            std::process::exit(2);
        }
        if let Err(e) = store::own_report(opts.quick) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    if opts.scenario.as_deref() == Some("nats") {
        if opts.json {
            eprintln!("error: --json is not supported with --scenario nats");
            std::process::exit(2);
        }
        nats_report(opts.quick);
        return;
    }
    let load_before = load_average();
    let wanted = |name: &str| opts.scenario.as_deref().is_none_or(|s| s == name);
    let (budget, n) = if opts.quick {
        (Duration::from_millis(60), 200_000u64)
    } else {
        (Duration::from_millis(1000), 2_000_000u64)
    };
    let progress = |what: &str| eprintln!("[throughput] {what} ...");

    // Calibrate the partitioned handlers' work before anything else runs.
    if wanted("partitioned") {
        support::work_iters();
    }
    // Warm-up: page in the code and the rings, let the CPU settle.
    if scenarios.iter().any(|s| wanted(s.name)) || wanted("metrics") {
        let warm = &scenarios[0];
        for &(system, shape) in warm.entries.iter().take(2) {
            let _ = warm.run(system, shape, n / 4);
        }
    }

    let mut rows: Vec<Row> = Vec::new();
    for sc in &scenarios {
        if wanted(sc.name) {
            progress(sc.name);
            rows.extend(run_scenario(sc, budget, n));
        }
    }
    let work_ns = wanted("partitioned").then(support::work_ns_measured);

    let mut metrics = None;
    if wanted("metrics") {
        progress("metrics on vs off");
        let run = |on: bool| -> Runner<'static> {
            Box::new(move |n| {
                support::throughput_metrics(
                    System::Ringbus(WaitStrategy::Blocking),
                    Shape::Routed,
                    1,
                    support::Publish::Single,
                    Make::New,
                    n,
                    on,
                )
            })
        };
        let (r, _) = measure_all(budget * 2, n, vec![run(false), run(true)]);
        metrics = Some((r[0], r[1]));
    }

    let mut latency = Vec::new();
    let (lat_rounds, lat_round) = if opts.quick {
        (3, Duration::from_millis(50))
    } else {
        (5, Duration::from_millis(300))
    };
    if wanted("latency") {
        for rate in LATENCY_RATES {
            progress(&format!("latency at {rate} events/s"));
            let r = support::latency_rounds(&LATENCY_SYSTEMS, rate, lat_rounds, lat_round);
            for (system, rounds) in LATENCY_SYSTEMS.into_iter().zip(r) {
                latency.push(LatencyRow {
                    system,
                    rate,
                    rounds,
                });
            }
        }
    }

    let mut cpu = Vec::new();
    let (cpu_rounds, cpu_round) = if opts.quick {
        (1, Duration::from_millis(100))
    } else {
        (3, Duration::from_millis(500))
    };
    if wanted("cpu") {
        let systems: Vec<Option<System>> = std::iter::once(None)
            .chain(support::ALL_SYSTEMS.into_iter().map(Some))
            .collect();
        for rate in CPU_RATES {
            progress(&format!("CPU per event at {rate} events/s"));
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
            for _ in 0..cpu_rounds {
                for (s, v) in systems.iter().zip(per.iter_mut()) {
                    if let Some(ns) = support::cpu_per_event(*s, rate, cpu_round) {
                        v.push(ns);
                    }
                }
            }
            for (system, v) in systems.iter().zip(per) {
                if !v.is_empty() {
                    cpu.push(CpuRow {
                        system: *system,
                        rate,
                        ns_per_event: median(&v),
                    });
                }
            }
        }
    }

    let idle = if wanted("idle") {
        progress("idle CPU for 1 s");
        support::idle_cpu(Duration::from_secs(1))
    } else {
        None
    };

    let event_ns = wanted("event").then(|| {
        progress("Event::new");
        support::event_new_ns(if opts.quick { 200_000 } else { 5_000_000 })
    });

    let load_after = load_average();
    let (cores, model) = machine();
    let busy = host_busy(load_before, load_after, cores);
    let commit = commit();
    let goals = targets(&rows, &cpu, event_ns);

    if opts.json {
        print_json(&JsonInput {
            cores,
            model: &model,
            commit: &commit,
            quick: opts.quick,
            load: (load_before, load_after),
            busy,
            rows: &rows,
            metrics,
            latency: &latency,
            cpu: &cpu,
            idle,
            work_ns,
            event_ns,
            goals: &goals,
        });
        return;
    }

    println!("ringbus throughput report — commit {commit}, {cores} cores, {model}");
    let show = |l: Option<f64>| l.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"));
    println!(
        "host load (1-min average): {} before, {} after (after includes this run's own threads)",
        show(load_before),
        show(load_after)
    );
    if busy {
        println!(
            "WARNING: the host was busy (load ≥ {:.0} on {cores} cores): busy-spin rows \
             (ringbus BusySpin, disruptor BusySpin) and ratios against them measure the \
             scheduler, not the rings",
            cores as f64 / 2.0
        );
    }
    if opts.quick {
        println!("(--quick: short runs, figures are rough)");
    }
    let sizes: Vec<String> = support::slot_sizes()
        .iter()
        .map(|(what, b)| format!("{what} {b} B"))
        .collect();
    println!(
        "every system carries ringbus::Event<u64>: {}; capacity {} slots for every system \
         (partitioned: the {} channels share it, {} each)",
        sizes.join(", "),
        support::CAPACITY,
        support::LANES,
        support::CAPACITY / support::LANES
    );
    println!(
        "ringbus runs Execution::Inline (its dispatcher thread runs every handler) in every \
         scenario but partitioned ({} pool threads + the dispatcher)",
        support::RINGBUS_POOL_THREADS
    );
    println!(
        "ratios: busy-spin × = ringbus (BusySpin) ÷ that system, both busy-spinning; \
         blocking × = ringbus (Blocking) ÷ that system, both blocking — the disruptor has no \
         parking strategy, its Sleep ({} µs) is the nearest; — = not matched (other wait \
         class or other number of consumer threads)",
        support::DISRUPTOR_SLEEP.as_micros()
    );

    let mut last = "";
    for r in &rows {
        if r.scenario != last {
            let sc = scenarios
                .iter()
                .find(|s| s.name == r.scenario)
                .expect("known");
            println!("\n{} — {} ({} rounds, medians)", sc.name, sc.what, r.rounds);
            println!(
                "  {:<34} {:<10} {:>7} {:>12} {:>12} {:>11}",
                "system", "wait", "threads", "events/s", "busy-spin ×", "blocking ×"
            );
            last = r.scenario;
        }
        let (busy_col, block_col) = match (r.system.is_ringbus(), r.ratio) {
            (true, _) => (String::new(), String::new()),
            (false, None) => ("—".into(), "—".into()),
            (false, Some(x)) if r.system.waiting() == Waiting::BusySpin => {
                (format!("{x:.2}"), "—".into())
            }
            (false, Some(x)) => ("—".into(), format!("{x:.2}")),
        };
        println!(
            "  {:<34} {:<10} {:>7} {:>12} {:>12} {:>11}",
            r.label,
            r.system.waiting().name(),
            r.threads,
            fmt_rate(r.events_per_sec),
            busy_col,
            block_col
        );
    }
    if let Some(w) = work_ns {
        println!(
            "\npartitioned: handler work measured at {w} ns/event; the disruptor's {} consumers \
             each see every event and handle their lane's; the channels: one per lane, picked by \
             the producer",
            support::LANES
        );
    }
    if let Some((off, on)) = metrics {
        println!(
            "metrics: ringbus (Blocking) spsc_single {} with histograms off, {} on: {:+.1} % \
             (medians of interleaved runs)",
            fmt_rate(off),
            fmt_rate(on),
            (on / off - 1.0) * 100.0
        );
    }

    if !latency.is_empty() {
        println!(
            "\nlatency (one-way, publish → handler, from the intended send time; 1 producer, \
             Event::new, 1 handler; median of {lat_rounds} interleaved rounds of {} ms each)",
            lat_round.as_millis()
        );
        println!(
            "  {:<24} {:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "system", "wait", "rate", "p50", "p99", "p99.9", "max"
        );
        for l in &latency {
            println!(
                "  {:<24} {:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
                l.system.name(),
                l.system.waiting().name(),
                format!("{}k/s", l.rate / 1000),
                fmt_ns(median(&l.rounds.p50)),
                fmt_ns(median(&l.rounds.p99)),
                fmt_ns(median(&l.rounds.p999)),
                fmt_ns(median(&l.rounds.max)),
            );
        }
    }

    if !cpu.is_empty() {
        println!(
            "\nCPU cost (whole process, all threads ÷ events; 1 producer paced by sleeping \
             between bursts of due events, Event::new, 8 handlers by type; median of \
             {cpu_rounds} rounds of {} ms)",
            cpu_round.as_millis()
        );
        println!(
            "  {:<34} {:<10} {:>8} {:>13} {:>12}",
            "system", "wait", "rate", "CPU/event", "cores busy"
        );
        for c in &cpu {
            let (name, wait) = match c.system {
                Some(s) => (s.name(), s.waiting().name()),
                None => ("baseline: the producer alone".to_owned(), ""),
            };
            println!(
                "  {:<34} {:<10} {:>8} {:>13} {:>12.2}",
                name,
                wait,
                format!("{}k/s", c.rate / 1000),
                format!("{:.0} ns", c.ns_per_event),
                c.ns_per_event * c.rate as f64 / 1e9
            );
        }
    }

    if let Some(ns) = event_ns {
        println!("\nEvent::new: {ns:.1} ns/event");
    }
    if let Some(idle) = idle {
        println!(
            "idle: a default bus (Blocking, internal pool) used {:.2} % of one core over 1 s",
            idle * 100.0
        );
    }

    println!("\ntargets (issue 14), from this run's figures:");
    for g in &goals {
        let goal = format!(
            "{} {}{}",
            if g.at_least { "≥" } else { "≤" },
            g.goal,
            g.unit
        );
        let (measured, verdict) = match (g.measured, g.met()) {
            (Some(m), Some(true)) => (format!("{m:.2}{}", g.unit), "met"),
            (Some(m), _) => (format!("{m:.2}{}", g.unit), "MISSED"),
            (None, _) => ("—".to_owned(), "not measured"),
        };
        println!("  {:<76} {:>9} {:>8}  {verdict}", g.what, measured, goal);
    }
    if busy {
        println!(
            "  (host busy: the busy-spin targets are not meaningful in this run; rerun on a \
             quiet host)"
        );
    }
}

/// `--scenario nats`, with the feature.
#[cfg(feature = "nats")]
fn nats_report(quick: bool) {
    if let Err(e) = nats::own_report(quick) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// `--scenario nats`, without the feature: says how to get it.
#[cfg(not(feature = "nats"))]
fn nats_report(_quick: bool) {
    eprintln!(
        "error: --scenario nats needs the `nats` feature:\n  \
         cargo run --release --features nats --example throughput -- --scenario nats"
    );
    std::process::exit(2);
}

struct JsonInput<'a> {
    cores: usize,
    model: &'a str,
    commit: &'a str,
    quick: bool,
    load: (Option<f64>, Option<f64>),
    busy: bool,
    rows: &'a [Row],
    metrics: Option<(f64, f64)>,
    latency: &'a [LatencyRow],
    cpu: &'a [CpuRow],
    idle: Option<f64>,
    work_ns: Option<u64>,
    event_ns: Option<f64>,
    goals: &'a [Target],
}

fn print_json(j: &JsonInput<'_>) {
    use serde_json::json;
    let sizes: serde_json::Map<String, serde_json::Value> = support::slot_sizes()
        .iter()
        .map(|(what, b)| ((*what).to_owned(), json!(b)))
        .collect();
    let mut out = json!({
        "machine": { "cores": j.cores, "cpu": j.model },
        "commit": j.commit,
        "quick": j.quick,
        "load_average_before": j.load.0,
        "load_average_after": j.load.1,
        "host_busy": j.busy,
        "slot_size_bytes": sizes,
        "capacity": support::CAPACITY,
        "ringbus_partitioned_pool_threads": support::RINGBUS_POOL_THREADS,
        "disruptor_sleep_us": support::DISRUPTOR_SLEEP.as_micros() as u64,
        "throughput": j.rows.iter().map(|r| json!({
            "scenario": r.scenario,
            "system": r.label,
            "wait": r.system.waiting().name(),
            "consumer_threads": r.threads,
            "producers": r.producers,
            "creates_events": r.make == Make::New,
            "events_per_sec": r.events_per_sec,
            "rounds": r.rounds,
            "ringbus_ratio_matched": r.ratio,
        })).collect::<Vec<_>>(),
        "latency_ns": j.latency.iter().map(|l| json!({
            "system": l.system.name(),
            "wait": l.system.waiting().name(),
            "rate": l.rate,
            "rounds": l.rounds.p50.len(),
            "samples_per_round": l.rounds.samples,
            "p50": median(&l.rounds.p50),
            "p99": median(&l.rounds.p99),
            "p99.9": median(&l.rounds.p999),
            "max": median(&l.rounds.max),
        })).collect::<Vec<_>>(),
        "cpu_ns_per_event": j.cpu.iter().map(|c| json!({
            "system": c.system.map_or_else(|| "baseline (producer alone)".to_owned(), System::name),
            "wait": c.system.map(|s| s.waiting().name()),
            "rate": c.rate,
            "ns_per_event": c.ns_per_event,
        })).collect::<Vec<_>>(),
        "targets": j.goals.iter().map(|g| json!({
            "target": g.what,
            "goal": g.goal,
            "at_least": g.at_least,
            "measured": g.measured,
            "met": g.met(),
        })).collect::<Vec<_>>(),
    });
    if let Some((off, on)) = j.metrics {
        out["metrics_events_per_sec"] = json!({ "off": off, "on": on });
    }
    if let Some(idle) = j.idle {
        out["idle_cpu_fraction_of_one_core"] = json!(idle);
    }
    if let Some(w) = j.work_ns {
        out["partitioned_work_ns_per_event"] = json!(w);
    }
    if let Some(ns) = j.event_ns {
        out["event_new_ns"] = json!(ns);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("serializable")
    );
}
