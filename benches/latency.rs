//! One-way publish→handler latency at fixed offered rates, recorded in an HDR
//! histogram against each event's *intended* send time (so a stalled producer's
//! backlog is counted: no coordinated omission), in interleaved rounds — the
//! throughput report's latency section, same systems and labels.
//! `cargo bench --bench latency`.
//!
//! Systems: ringbus `BusySpin` and the disruptor `BusySpin` (busy-spin both),
//! ringbus `Blocking`, the disruptor `Sleep` (its nearest to blocking) and
//! crossbeam-channel (blocking). Each figure is the median over the rounds of that
//! round's percentile. `LATENCY_ROUNDS` (default 5) and `LATENCY_SECS` (per round,
//! default 0.3) change the run length.

use std::time::Duration;

mod support;
use support::{median, LATENCY_RATES, LATENCY_SYSTEMS};

fn main() {
    // `cargo bench` passes `--bench`; `cargo bench -- --test` and `cargo test
    // --benches` run this as a smoke test.
    let quick =
        !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--test");
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<f64>().ok());
    let rounds = env("LATENCY_ROUNDS").map_or(if quick { 1 } else { 5 }, |r| r as usize);
    let secs = env("LATENCY_SECS").unwrap_or(if quick { 0.02 } else { 0.3 });
    println!(
        "{:<22} {:<10} {:>9} {:>9} {:>9} {:>9} {:>9}   (median of {rounds} rounds of {secs} s)",
        "system", "wait", "rate", "p50 ns", "p99 ns", "p99.9 ns", "max ns"
    );
    for rate in LATENCY_RATES {
        let r = support::latency_rounds(
            &LATENCY_SYSTEMS,
            rate,
            rounds.max(1),
            Duration::from_secs_f64(secs),
        );
        for (sys, l) in LATENCY_SYSTEMS.iter().zip(r) {
            println!(
                "{:<22} {:<10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                sys.name(),
                sys.waiting().name(),
                rate,
                median(&l.p50),
                median(&l.p99),
                median(&l.p999),
                median(&l.max)
            );
        }
    }
}
