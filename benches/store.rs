//! The in-memory event store (issue 11, A6 targets): single-event appends on one
//! thread and on four threads with a stream each, `read_all`, `scan_all` and
//! `read_stream` — plus, for the frame decision in `src/store/memory/mod.rs`,
//! what a scan would cost if the store kept no frames and encoded on scan.
//!
//! The file store (issue 11, A8 S3/S4 and a single-appender S2): appends of 1
//! and of 100 events from one thread, under `Durability::Immediate` (one
//! fdatasync per append: the disk's sync latency) and `Durability::None`, in a
//! fresh store under the system's temporary directory per sample.
//!
//! `cargo bench --bench store`; criterion reports elements per second
//! (`store/<workload>`, `file_store/<workload>`). Payload: a small typed struct
//! (`Tick`, 16 bytes).

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringbus::codec::{encode, EventRef};
use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, InMemoryStore, Position, StoreOptions,
    StreamId,
};
use ringbus::{event_type, source, Event};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Tick {
    seq: u64,
    value: i32,
}

fn events(n: u64) -> Vec<Event<Tick>> {
    (0..n)
        .map(|seq| {
            Event::new(
                event_type!("bench.tick"),
                source!("bench"),
                Tick { seq, value: 7 },
            )
        })
        .collect()
}

fn streams(n: usize) -> Vec<StreamId> {
    (0..n)
        .map(|i| StreamId::new(format!("s-{i}")).unwrap())
        .collect()
}

/// A store of `n` events spread over `k` streams, appended one by one.
fn filled(n: u64, k: usize) -> (InMemoryStore<Tick>, Vec<StreamId>) {
    let store = InMemoryStore::new();
    let ids = streams(k);
    for (i, e) in events(n).into_iter().enumerate() {
        store
            .append(&ids[i % k], ExpectedVersion::Any, vec![e])
            .unwrap();
    }
    (store, ids)
}

fn appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    // One thread, single-event appends with Exact over 1 000 streams (events
    // made beforehand; a fresh store per sample so it does not grow without end).
    g.bench_function("append/1_thread", |b| {
        let ids = streams(1000);
        b.iter_custom(|iters| {
            let store = InMemoryStore::new();
            let batch = events(iters);
            let mut versions = vec![0_u64; ids.len()];
            let start = Instant::now();
            for (i, e) in batch.into_iter().enumerate() {
                let s = i % ids.len();
                let o = store.append(&ids[s], ExpectedVersion::Exact(versions[s]), vec![e]);
                versions[s] = o.unwrap().version;
            }
            start.elapsed()
        })
    });
    // The part of an append spent making its frame (encode into a reused buffer,
    // copy into a box): what keeping frames for `scan_all` costs an append.
    g.bench_function("append_part/encode_frame", |b| {
        let e = &events(1)[0];
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            buf.clear();
            encode(black_box(e), &mut buf).unwrap();
            black_box(Box::<[u8]>::from(&buf[..]))
        })
    });
    // Four threads, each appending to its own stream; time from a common start
    // to the last thread's end.
    g.bench_function("append/4_threads_distinct_streams", |b| {
        let ids = streams(4);
        b.iter_custom(|iters| {
            let store = InMemoryStore::new();
            let per = iters.div_ceil(4);
            let barrier = Barrier::new(5);
            let elapsed = std::thread::scope(|s| {
                for id in &ids {
                    let (store, barrier) = (&store, &barrier);
                    s.spawn(move || {
                        let batch = events(per);
                        barrier.wait();
                        for e in batch {
                            store.append(id, ExpectedVersion::Any, vec![e]).unwrap();
                        }
                        barrier.wait();
                    });
                }
                barrier.wait();
                let start = Instant::now();
                barrier.wait();
                start.elapsed()
            });
            // Per event of the `iters` asked for.
            elapsed.mul_f64(iters as f64 / (per * 4) as f64)
        })
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    const N: u64 = 1 << 20;
    const PAGE: usize = 4096;
    let (store, ids) = filled(N, 1000);
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("read_all/1M_in_pages_of_4096", |b| {
        b.iter(|| {
            let mut from = Position(0);
            let mut n = 0;
            loop {
                let page = store.read_all(from, PAGE).unwrap();
                let Some(last) = page.last() else { break };
                from = last.position.next();
                n += page.len();
                black_box(page);
            }
            assert_eq!(n as u64, N);
        })
    });
    g.bench_function("scan_all/1M_event_ref", |b| {
        b.iter(|| {
            let mut n = 0_u64;
            store
                .scan_all(Position(0), &mut |_, e| {
                    n += black_box(e.timestamp().as_nanos()) & 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            black_box(n)
        })
    });
    g.bench_function("scan_all/1M_event_ref_and_payload", |b| {
        b.iter(|| {
            let mut n = 0_u64;
            store
                .scan_all(Position(0), &mut |_, e| {
                    n += e.data::<Tick>().unwrap().seq;
                    ControlFlow::Continue(())
                })
                .unwrap();
            black_box(n)
        })
    });
    // The alternative to keeping frames: encode each event on scan (what a store
    // without frames would do), then view it.
    g.bench_function("scan_alternative/1M_encode_on_scan", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            let mut from = Position(0);
            let mut n = 0_u64;
            loop {
                let page = store.read_all(from, PAGE).unwrap();
                let Some(last) = page.last() else { break };
                from = last.position.next();
                for r in &page {
                    buf.clear();
                    encode(&r.event, &mut buf).unwrap();
                    let (e, _) = EventRef::decode(&buf).unwrap();
                    n += black_box(e.timestamp().as_nanos()) & 1;
                }
            }
            black_box(n)
        })
    });
    g.bench_function("read_stream/1000_streams_x_1049", |b| {
        b.iter(|| {
            let mut n = 0;
            for id in &ids {
                n += store.read_stream(id, 1, usize::MAX).unwrap().len();
            }
            assert_eq!(n as u64, N);
        })
    });
    g.finish();
}

fn file_appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("file_store");
    let modes = [
        ("immediate", Durability::Immediate),
        ("none", Durability::None),
    ];
    for (k, label) in [(1_u64, "1_event"), (100, "100_events")] {
        g.throughput(Throughput::Elements(k));
        for (mode, durability) in modes {
            g.bench_function(format!("append/{label}/{mode}"), |b| {
                let ids = streams(100);
                b.iter_custom(|iters| {
                    let dir = std::env::temp_dir()
                        .join(format!("ringbus-bench-store-{}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let options = StoreOptions::default()
                        .durability(durability)
                        .segment_bytes(64 << 20);
                    let store = FileStore::open(&dir, options).unwrap();
                    let batches: Vec<Vec<Event<Tick>>> = (0..iters).map(|_| events(k)).collect();
                    let start = Instant::now();
                    for (i, batch) in batches.into_iter().enumerate() {
                        let s = &ids[i % ids.len()];
                        black_box(store.append(s, ExpectedVersion::Any, batch).unwrap());
                    }
                    let elapsed = start.elapsed();
                    store.close().unwrap();
                    std::fs::remove_dir_all(&dir).unwrap();
                    elapsed
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = appends, reads, file_appends
}
criterion_main!(benches);
