//! Throughput, side by side: ringbus vs the disruptor crate, crossbeam-channel,
//! flume and std's sync_channel, on the same workload (see `support/mod.rs`).
//! `cargo bench --bench throughput`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringbus::WaitStrategy;

mod support;
use support::{Channel, Publish};

const CHANNELS: [Channel; 3] = [Channel::Crossbeam, Channel::Flume, Channel::Std];

fn group(
    c: &mut Criterion,
    name: &str,
    f: impl Fn(&mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>),
) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    f(&mut g);
    g.finish();
}

fn spsc(c: &mut Criterion) {
    group(c, "spsc_single", |g| {
        for wait in [WaitStrategy::Blocking, WaitStrategy::BusySpin] {
            g.bench_function(BenchmarkId::new("ringbus", format!("{wait:?}")), |b| {
                b.iter_custom(|n| support::ringbus_run(n.max(1000), 1, Publish::Single, wait, 0))
            });
        }
        g.bench_function("disruptor", |b| {
            b.iter_custom(|n| support::disruptor_run(n.max(1000), 1, Publish::Single, 0, 0))
        });
        for ch in CHANNELS {
            g.bench_function(ch.name(), |b| {
                b.iter_custom(|n| support::channel_run(ch, n.max(1000), 1, 0, 0))
            });
        }
    });
    for batch in [10, 100] {
        group(c, &format!("spsc_batch{batch}"), |g| {
            for wait in [WaitStrategy::Blocking, WaitStrategy::BusySpin] {
                g.bench_function(BenchmarkId::new("ringbus", format!("{wait:?}")), |b| {
                    b.iter_custom(|n| {
                        support::ringbus_run(n.max(1000), 1, Publish::Batch(batch), wait, 0)
                    })
                });
            }
            g.bench_function("disruptor", |b| {
                b.iter_custom(|n| {
                    support::disruptor_run(n.max(1000), 1, Publish::Batch(batch), 0, 0)
                })
            });
        });
    }
}

fn mpsc(c: &mut Criterion) {
    for producers in [2, 4] {
        group(c, &format!("mpsc_{producers}p"), |g| {
            for wait in [WaitStrategy::Blocking, WaitStrategy::BusySpin] {
                g.bench_function(BenchmarkId::new("ringbus", format!("{wait:?}")), |b| {
                    b.iter_custom(|n| {
                        support::ringbus_run(n.max(1000), producers, Publish::Single, wait, 0)
                    })
                });
            }
            g.bench_function("disruptor", |b| {
                b.iter_custom(|n| {
                    support::disruptor_run(n.max(1000), producers, Publish::Single, 0, 0)
                })
            });
            for ch in CHANNELS {
                g.bench_function(ch.name(), |b| {
                    b.iter_custom(|n| support::channel_run(ch, n.max(1000), producers, 0, 0))
                });
            }
        });
    }
}

fn fanout(c: &mut Criterion) {
    group(c, "fanout_4_handlers", |g| {
        g.bench_function("ringbus", |b| {
            b.iter_custom(|n| {
                support::ringbus_run(n.max(1000), 1, Publish::Single, WaitStrategy::Blocking, 4)
            })
        });
        g.bench_function("disruptor", |b| {
            b.iter_custom(|n| support::disruptor_run(n.max(1000), 1, Publish::Single, 4, 0))
        });
        for ch in CHANNELS {
            g.bench_function(ch.name(), |b| {
                b.iter_custom(|n| support::channel_run(ch, n.max(1000), 1, 4, 0))
            });
        }
    });
}

fn partitioned(c: &mut Criterion) {
    let spin = support::calibrate_work(200);
    group(c, "partitioned_4_lanes_200ns", |g| {
        g.bench_function("ringbus", |b| {
            b.iter_custom(|n| {
                support::ringbus_partitioned(n.max(1000), 4, 2, spin, WaitStrategy::Blocking)
            })
        });
        g.bench_function("disruptor", |b| {
            b.iter_custom(|n| support::disruptor_run(n.max(1000), 1, Publish::Batch(100), 0, spin))
        });
        for ch in CHANNELS {
            g.bench_function(ch.name(), |b| {
                b.iter_custom(|n| support::channel_run(ch, n.max(1000), 1, 0, spin))
            });
        }
    });
}

criterion_group!(benches, spsc, mpsc, fanout, partitioned);
criterion_main!(benches);
