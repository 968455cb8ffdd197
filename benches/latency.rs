//! One-way publish→handler latency at fixed offered rates, recorded in an HDR
//! histogram against each event's *intended* send time (so a stalled producer's
//! backlog is counted: no coordinated omission). `cargo bench --bench latency`.
//!
//! Systems: ringbus with each wait strategy, the disruptor crate (busy-spin),
//! crossbeam-channel. Set `LATENCY_SECS` to change the run length per point
//! (default 2).

use std::time::Duration;

mod support;
use support::LatencySystem;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("LATENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.05 } else { 2.0 });
    let systems = LatencySystem::ALL;
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "system", "rate", "p50 ns", "p99 ns", "p99.9 ns", "p99.99 ns", "max ns"
    );
    for rate in [100_000u64, 500_000, 1_000_000] {
        for sys in systems {
            let h = support::latency_run(sys, rate, Duration::from_secs_f64(secs));
            println!(
                "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                sys.name(),
                rate,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.value_at_quantile(0.9999),
                h.max()
            );
        }
    }
}
