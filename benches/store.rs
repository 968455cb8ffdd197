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
//! Opening the file store (issue 11, S7): a store of 1 M events of about 200
//! bytes each (Durability::None, batches of 1 000, 100 streams, default 128 MiB
//! segments: one sealed, one active), opened with the page cache warm —
//! through the sealed segments' index files (the default), with
//! `verify_on_open` (every segment read and checked), and with a torn tail to
//! repair (half a frame after the last one, put back before each sample).
//!
//! `cargo bench --bench store`; criterion reports elements per second
//! (`store/<workload>`, `file_store/<workload>`, `file_store_open/<workload>`).
//! Payload: a small typed struct (`Tick`, 16 bytes); for the open, a string
//! sized so that an event takes about 200 bytes in its batch frame.

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

/// The 1 M-event store for `file_open`: built once, in a directory removed
/// when the bench ends.
struct OpenFixture {
    dir: std::path::PathBuf,
}

impl Drop for OpenFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const OPEN_EVENTS: u64 = 1_000_000;

fn open_fixture() -> OpenFixture {
    let dir = std::env::temp_dir().join(format!("ringbus-bench-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions::default().durability(Durability::None);
    let store = FileStore::<String>::open(&dir, options).unwrap();
    let ids = streams(100);
    // About 200 bytes per event in a batch frame: id, timestamp, indexes of
    // the shared type and source, subject, and this payload.
    let text = "x".repeat(150);
    for b in 0..OPEN_EVENTS / 1000 {
        let batch: Vec<Event<String>> = (0..1000)
            .map(|_| Event::new(event_type!("bench.sized"), source!("bench"), text.clone()))
            .collect();
        store
            .append(&ids[b as usize % ids.len()], ExpectedVersion::Any, batch)
            .unwrap();
    }
    store.close().unwrap();
    let (mut bytes, mut segments) = (0, 0);
    for e in std::fs::read_dir(dir.join("log")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.ends_with(".seg") {
            segments += 1;
            bytes += frames_end(&e.path()) - 32;
        }
        eprintln!("open fixture: {name} {} bytes", e.metadata().unwrap().len());
    }
    eprintln!(
        "open fixture: {OPEN_EVENTS} events, {bytes} bytes of frames ({} per event) in {segments} segments",
        bytes / OPEN_EVENTS
    );
    OpenFixture { dir }
}

/// Where a cleanly closed segment's frames end (they start at byte 32): its
/// sync mark (bytes 20..28), which a clean close sets to the end of the frames.
fn frames_end(path: &std::path::Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    let mut mark = [0u8; 8];
    f.seek(SeekFrom::Start(20)).unwrap();
    f.read_exact(&mut mark).unwrap();
    u64::from_le_bytes(mark)
}

fn file_open(c: &mut Criterion) {
    let fixture = open_fixture();
    let dir = &fixture.dir;
    let mut g = c.benchmark_group("file_store_open");
    g.throughput(Throughput::Elements(OPEN_EVENTS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let open = |options: StoreOptions| {
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let store = FileStore::<String>::open(dir, options.clone()).unwrap();
                    total += start.elapsed();
                    assert_eq!(store.head(), Some(Position(OPEN_EVENTS - 1)));
                    store.close().unwrap();
                }
                total
            })
        }
    };
    g.bench_function("open/1M/index", open(StoreOptions::default()));
    g.bench_function(
        "open/1M/verify_on_open",
        open(StoreOptions::default().verify_on_open(true)),
    );
    // Half a frame after the last one in the last segment: open truncates it.
    let last = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .unwrap();
    let mut frame = Vec::new();
    encode(&events(1)[0], &mut frame).unwrap();
    let half = &frame[..frame.len() / 2];
    g.bench_function("open/1M/torn_tail", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                use std::io::{Seek, SeekFrom, Write};
                let end = frames_end(&last);
                let mut f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
                f.seek(SeekFrom::Start(end)).unwrap();
                f.write_all(half).unwrap();
                drop(f);
                let start = Instant::now();
                let store = FileStore::<String>::open(dir, StoreOptions::default()).unwrap();
                total += start.elapsed();
                assert_eq!(store.torn_tail(), Some(end));
                store.close().unwrap();
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = appends, reads, file_appends, file_open
}
criterion_main!(benches);
