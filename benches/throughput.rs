//! Throughput, side by side: ringbus vs the disruptor crate, crossbeam-channel,
//! flume and std's sync_channel — the throughput report's scenarios, systems and
//! labels (`support::scenarios()`), each run measured by Criterion.
//! `cargo bench --bench throughput`; what each system does per event:
//! BENCHMARKS.md, "How we measure".

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;

fn scenarios(c: &mut Criterion) {
    // Calibrated before any system runs, as in the report.
    support::work_iters();
    for sc in support::scenarios() {
        let mut g = c.benchmark_group(sc.name);
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        for &(system, shape) in &sc.entries {
            g.bench_function(system.label(shape), |b| {
                b.iter_custom(|n| sc.run(system, shape, n.max(1000)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, scenarios);
criterion_main!(benches);
