//! The event store's workloads (issue 11, A8), shared by
//! `examples/throughput.rs --scenario store` (ringbus alone, a quick subset) and
//! the side-by-side comparison in `store-anchors/` (ringbus and its anchors in
//! one process), so both print figures of the same code. Included by path:
//! it depends on ringbus, serde_json and hdrhistogram only.
//!
//! Every event is an `Event<serde_json::Value>` made with `Event::new` in the
//! measured loop, its payload padded so that the encoded event is
//! [`EVENT_BYTES`] long (the anchors store those same encoded bytes).

#![allow(dead_code)]

use std::fmt::Display;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringbus::store::checkpoint::FileCheckpoints;
use ringbus::store::{
    subscribe_all, Durability, EventStore, ExpectedVersion, FileStore, InMemoryStore, Notification,
    Position, Recorded, StoreOptions, StreamId,
};
use ringbus::{event_type, source, Bus, BusBuilder, Event};
use serde_json::Value;

/// The encoded size of every event, bytes.
pub const EVENT_BYTES: usize = 200;

/// What the workloads return on failure: the failing system's message.
pub type Res<T> = Result<T, String>;

/// `e` as a [`Res`] error, with what was being done.
pub fn err<E: Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------- the host

/// The 1-minute load average (Linux `/proc/loadavg`), if readable.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// `git rev-parse --short HEAD`, or "unknown".
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// A load average as text.
pub fn show_load(l: Option<f64>) -> String {
    l.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
}

// ---------------------------------------------------------------- figures

/// The median and the range of a set of runs.
#[derive(Copy, Clone, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The median (mean of the two middle ones for an even count), min and max.
pub fn spread(v: &[f64]) -> Spread {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let median = if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Spread {
        median,
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
    }
}

/// One system of a workload: its label and one run, returning its figure.
pub struct Run<'a> {
    pub label: String,
    pub run: Box<dyn FnMut() -> Res<f64> + 'a>,
}

/// A [`Run`].
pub fn run<'a>(label: impl Into<String>, f: impl FnMut() -> Res<f64> + 'a) -> Run<'a> {
    Run {
        label: label.into(),
        run: Box::new(f),
    }
}

/// Runs `runs` in `rounds` interleaved rounds, one run each per round, the
/// order rotated by one each round (so no system always runs first, or after
/// the same neighbour); each one's figures, in `runs`' order. Says on stderr
/// what runs, prefixed with `tag`.
pub fn interleave(tag: &str, rounds: usize, runs: &mut [Run<'_>]) -> Res<Vec<Vec<f64>>> {
    let n = runs.len();
    let mut values = vec![Vec::with_capacity(rounds); n];
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            let s = &mut runs[i];
            eprintln!("[{tag}] round {}/{rounds}: {}", r + 1, s.label);
            let v = (s.run)().map_err(|e| format!("{}: {e}", s.label))?;
            values[i].push(v);
        }
    }
    Ok(values)
}

/// A rate in events/s as text.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

/// A duration in seconds as text.
pub fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

// ---------------------------------------------------------------- events

/// Makes the benchmark's events: `Event::new` with a `{"n": i, "pad": …}`
/// payload whose padding makes the encoded event [`EVENT_BYTES`] long.
#[derive(Clone, Debug)]
pub struct Maker {
    pad: String,
}

impl Maker {
    /// Calibrates the padding against the codec.
    pub fn new() -> Maker {
        let mut m = Maker { pad: String::new() };
        while m.encoded(u64::MAX / 2).len() < EVENT_BYTES {
            m.pad.push('x');
        }
        m
    }

    /// Event number `i`.
    pub fn event(&self, i: u64) -> Event<Value> {
        let mut payload = serde_json::Map::with_capacity(2);
        payload.insert("n".into(), Value::from(i));
        payload.insert("pad".into(), Value::String(self.pad.clone()));
        Event::new(
            event_type!("bench.appended"),
            source!("bench"),
            Value::Object(payload),
        )
    }

    /// Event number `i`, encoded by ringbus's codec: what the anchors store.
    pub fn encoded(&self, i: u64) -> Vec<u8> {
        let mut buf = Vec::with_capacity(EVENT_BYTES + 16);
        ringbus::codec::encode(&self.event(i), &mut buf).expect("the bench event encodes");
        buf
    }
}

impl Default for Maker {
    fn default() -> Self {
        Self::new()
    }
}

/// Events made per second by [`Maker::event`] alone, for `window` (the share of
/// an append loop that is making its events).
pub fn make_rate(maker: &Maker, window: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        for _ in 0..64 {
            std::hint::black_box(maker.event(n));
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Stream `i`'s id.
pub fn stream(i: usize) -> StreamId {
    StreamId::new(format!("s-{i}")).expect("a valid stream id")
}

/// Nanoseconds since the first call (a process-wide monotonic clock).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------- temp dirs

/// A fresh directory under a base directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `base/ringbus-store-bench-<pid>-<n>-<name>`, created.
    pub fn new(base: &Path, name: &str) -> Res<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "ringbus-store-bench-{}-{n}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(err("creating a temp dir"))?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- appends

/// Opens a fresh file store with `durability` in `dir`.
pub fn open_file(dir: &Path, durability: Durability) -> Res<FileStore<Value>> {
    FileStore::open(dir, StoreOptions::new().durability(durability)).map_err(err("FileStore::open"))
}

/// Time-boxed appends: `threads` threads, each appending to a stream of its
/// own (`ExpectedVersion::Any`), `batch` events per append made with
/// `Event::new` in the loop, until `window` has passed. Events/s, from the
/// common start to the last thread's end.
pub fn appends<S: EventStore<Value>>(
    store: &S,
    maker: &Maker,
    threads: usize,
    batch: usize,
    window: Duration,
) -> Res<f64> {
    let barrier = Barrier::new(threads + 1);
    let total = AtomicU64::new(0);
    let (start, end) = std::thread::scope(|s| -> Res<(Instant, Instant)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, total) = (&barrier, &total);
                s.spawn(move || -> Res<()> {
                    let id = stream(t);
                    barrier.wait();
                    let deadline = Instant::now() + window;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let events = (0..batch as u64).map(|k| maker.event(n + k)).collect();
                        store
                            .append(&id, ExpectedVersion::Any, events)
                            .map_err(err("append"))?;
                        n += batch as u64;
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().map_err(|_| "an appender panicked".to_owned())??;
        }
        Ok((start, Instant::now()))
    })?;
    Ok(total.load(Ordering::Relaxed) as f64 / (end - start).as_secs_f64())
}

/// [`appends`] into a fresh [`FileStore`] in a temp dir under `base`; the
/// store is closed (synced) and removed afterwards, outside the measurement.
pub fn file_appends(
    base: &Path,
    maker: &Maker,
    durability: Durability,
    threads: usize,
    batch: usize,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "appends")?;
    let store = open_file(dir.path(), durability)?;
    let rate = appends(&store, maker, threads, batch, window)?;
    store.close().map_err(err("FileStore::close"))?;
    Ok(rate)
}

/// [`appends`] of single events into a fresh [`InMemoryStore`].
pub fn memory_appends(maker: &Maker, threads: usize, window: Duration) -> Res<f64> {
    appends(&InMemoryStore::new(), maker, threads, 1, window)
}

// ---------------------------------------------------------------- a filled store

/// How a read store is laid out: `streams` streams of `per_stream` events,
/// appended in chunks of [`FILL_CHUNK`] events per stream, round robin (so a
/// stream's events are spread over the whole log).
#[derive(Copy, Clone, Debug)]
pub struct Layout {
    pub streams: usize,
    pub per_stream: usize,
}

/// Events per append when filling a read store.
pub const FILL_CHUNK: usize = 10;

impl Layout {
    /// The number of events.
    pub fn events(&self) -> u64 {
        (self.streams * self.per_stream) as u64
    }

    /// Calls `f(stream, first event number, chunk length)` for each append of
    /// the fill, in order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(usize, u64, usize) -> Res<()>) -> Res<()> {
        let mut n = 0u64;
        let mut done = 0;
        while done < self.per_stream {
            let len = FILL_CHUNK.min(self.per_stream - done);
            for s in 0..self.streams {
                f(s, n, len)?;
                n += len as u64;
            }
            done += len;
        }
        Ok(())
    }
}

/// Fills `store` per `layout`.
pub fn fill<S: EventStore<Value>>(store: &S, maker: &Maker, layout: Layout) -> Res<()> {
    let ids: Vec<StreamId> = (0..layout.streams).map(stream).collect();
    layout.for_each_chunk(|s, first, len| {
        let events = (0..len as u64).map(|k| maker.event(first + k)).collect();
        store
            .append(&ids[s], ExpectedVersion::Any, events)
            .map_err(err("fill append"))?;
        Ok(())
    })
}

/// A [`FileStore`] filled per `layout` (appended with `Durability::None`,
/// closed — so synced — and reopened with the default options) in `dir`.
pub fn filled_file(dir: &Path, maker: &Maker, layout: Layout) -> Res<Arc<FileStore<Value>>> {
    let store = open_file(dir, Durability::None)?;
    fill(&store, maker, layout)?;
    store.close().map_err(err("FileStore::close"))?;
    Ok(Arc::new(open_file(dir, Durability::Immediate)?))
}

// ---------------------------------------------------------------- reads

/// `read_all` from the start in pages of 4 096, owned decode into
/// `Event<serde_json::Value>`; events/s. Fails unless it reads `expect` events.
pub fn read_all<S: EventStore<Value>>(store: &S, expect: u64) -> Res<f64> {
    let start = Instant::now();
    let mut from = Position(0);
    let mut n = 0u64;
    loop {
        let page = store.read_all(from, 4096).map_err(err("read_all"))?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        n += page.len() as u64;
        std::hint::black_box(page);
    }
    let secs = start.elapsed().as_secs_f64();
    check_count("read_all", n, expect)?;
    Ok(n as f64 / secs)
}

/// `scan_all` from the start, touching each borrowed frame's type and
/// payload length (no decode); events/s.
pub fn scan_all<S: EventStore<Value>>(store: &S, expect: u64) -> Res<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    store
        .scan_all(Position(0), &mut |_, e| {
            n += 1;
            bytes += e.payload().len() + e.event_type().len();
            ControlFlow::Continue(())
        })
        .map_err(err("scan_all"))?;
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    check_count("scan_all", n, expect)?;
    Ok(n as f64 / secs)
}

/// `read_stream` of every stream of `layout`, whole, owned decode; events/s.
pub fn read_streams<S: EventStore<Value>>(store: &S, layout: Layout) -> Res<f64> {
    let ids: Vec<StreamId> = (0..layout.streams).map(stream).collect();
    let start = Instant::now();
    let mut n = 0u64;
    for id in &ids {
        let events = store
            .read_stream(id, 1, layout.per_stream)
            .map_err(err("read_stream"))?;
        n += events.len() as u64;
        std::hint::black_box(events);
    }
    let secs = start.elapsed().as_secs_f64();
    check_count("read_stream", n, layout.events())?;
    Ok(n as f64 / secs)
}

fn check_count(what: &str, got: u64, expect: u64) -> Res<()> {
    if got == expect {
        Ok(())
    } else {
        Err(format!("{what} read {got} events, {expect} expected"))
    }
}

// ---------------------------------------------------------------- catch-up

/// A no-op `subscribe_all` catch-up from the start of `store` (whose head is
/// fixed) until its `CaughtUp` notification; events/s. With `checkpoints`,
/// a fresh `FileCheckpoints` in a temp dir under it saves every `save_every`
/// events.
pub fn catch_up(
    store: &Arc<FileStore<Value>>,
    bus: &Bus<Value>,
    checkpoints: Option<(&Path, u64)>,
) -> Res<f64> {
    let expect = store.head().map_or(0, |p| p.0 + 1);
    let cp_dir = match checkpoints {
        Some((base, _)) => Some(TempDir::new(base, "checkpoints")?),
        None => None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    let mut sub = subscribe_all(store.clone(), bus)
        .page_size(4096)
        .on_notification(move |n| {
            if let Notification::CaughtUp { last } = n {
                let _ = tx.send((Instant::now(), last));
            }
        });
    if let (Some(dir), Some((_, every))) = (&cp_dir, checkpoints) {
        let cp = FileCheckpoints::open(dir.path()).map_err(err("FileCheckpoints::open"))?;
        sub = sub.checkpoints(cp, "bench").save_every(every);
    }
    let handle = sub
        .start(|r: &Recorded<Value>| {
            std::hint::black_box(r.position);
        })
        .map_err(err("subscribe_all"))?;
    let got = rx.recv_timeout(Duration::from_secs(600));
    handle.stop();
    let (end, last) = got.map_err(|_| "the catch-up never caught up".to_owned())?;
    let seen = last.map_or(0, |p| p.0 + 1);
    check_count("catch-up", seen, expect)?;
    Ok(expect as f64 / (end - start).as_secs_f64())
}

// ---------------------------------------------------------------- open

/// Opens the (closed) store in `dir` with the default options; seconds, and
/// where open cut a torn tail. Closes it again.
pub fn open_time(dir: &Path, expect: u64) -> Res<(f64, Option<u64>)> {
    let start = Instant::now();
    let store: FileStore<Value> = open_file(dir, Durability::Immediate)?;
    let secs = start.elapsed().as_secs_f64();
    let torn = store.torn_tail();
    let n = store.head().map_or(0, |p| p.0 + 1);
    store.close().map_err(err("FileStore::close"))?;
    check_count("open", n, expect)?;
    Ok((secs, torn))
}

/// Tears the last event of the closed store in `dir`: zeroes the last 16
/// non-zero bytes of its last segment (the end of its last frame, as a write
/// that did not reach the disk whole). The next open finds a torn tail and
/// cuts that event.
pub fn tear_tail(dir: &Path) -> Res<()> {
    let log = dir.join("log");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log)
        .map_err(err("reading the log dir"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let last = segments.pop().ok_or("no segment to tear")?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .map_err(err("opening the last segment"))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(err("reading the segment"))?;
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .ok_or("an empty segment")?;
    let from = end.saturating_sub(15).max(64);
    f.seek(SeekFrom::Start(from as u64))
        .map_err(err("seeking in the segment"))?;
    f.write_all(&vec![0u8; end + 1 - from])
        .map_err(err("tearing the segment"))?;
    f.sync_all().map_err(err("syncing the torn segment"))?;
    Ok(())
}

/// Opens the store in `dir`, appends one event (to replace the one a torn
/// open cut), closes it.
pub fn append_one(dir: &Path, maker: &Maker) -> Res<()> {
    let store = open_file(dir, Durability::Immediate)?;
    store
        .append(&stream(0), ExpectedVersion::Any, vec![maker.event(0)])
        .map_err(err("append"))?;
    store.close().map_err(err("FileStore::close"))
}

// ---------------------------------------------------------------- live latency

/// One live-latency run: a fresh file store with `durability`, `publish_to` a
/// bus with one handler; one appender paced at `rate` single-event appends/s
/// for `window` (it sleeps, then spins, until each append is due). The handler
/// records the time from the append call to the handler call. Returns the
/// histogram (ns) and the achieved appends/s (an `Immediate` appender waits for
/// each fsync, so it may not reach `rate`).
pub fn live_latency(
    base: &Path,
    maker: &Maker,
    durability: Durability,
    rate: u64,
    window: Duration,
) -> Res<(Histogram<u64>, f64)> {
    let dir = TempDir::new(base, "latency")?;
    let store = Arc::new(open_file(dir.path(), durability)?);
    let bus: Bus<Value> = BusBuilder::new().build().map_err(err("building the bus"))?;
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(err("histogram"))?,
    ));
    let seen = Arc::new(AtomicU64::new(0));
    {
        let (hist, seen) = (hist.clone(), seen.clone());
        bus.subscribe("bench.>", move |e: &Event<Value>| {
            let sent = e.data.get("t").and_then(Value::as_u64).unwrap_or(0);
            let _ = hist
                .lock()
                .expect("the histogram lock")
                .record(now_ns().saturating_sub(sent).max(1));
            seen.fetch_add(1, Ordering::Release);
        })
        .map_err(err("subscribe"))?;
    }
    let feed = store.publish_to(&bus);
    let id = stream(0);
    let period_ns = 1_000_000_000 / rate.max(1);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        let due = start + Duration::from_nanos(period_ns * n);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            if due - now > Duration::from_micros(200) {
                std::thread::sleep(due - now - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let mut e = maker.event(n);
        if let Value::Object(m) = &mut e.data {
            m.insert("t".into(), Value::from(now_ns()));
        }
        store
            .append(&id, ExpectedVersion::Any, vec![e])
            .map_err(err("append"))?;
        n += 1;
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "live feed: {} of {n} events reached the handler",
                seen.load(Ordering::Acquire)
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    feed.stop();
    drop(bus);
    let hist = hist.lock().expect("the histogram lock").clone();
    Ok((hist, achieved))
}

// ---------------------------------------------------------------- ringbus alone

/// `examples/throughput.rs --scenario store`: ringbus's own store figures, a
/// quick subset of the side-by-side comparison (S2, S3, S4 and S5 for a
/// `FileStore` in the system's temp dir, `InMemoryStore` appends), in 3
/// interleaved rounds; then the command for the comparison.
pub fn own_report(quick: bool) -> Res<()> {
    let base = std::env::temp_dir();
    let maker = Maker::new();
    let window = Duration::from_millis(if quick { 100 } else { 300 });
    let layout = Layout {
        streams: 1000,
        per_stream: if quick { 20 } else { 100 },
    };
    let rounds = 3;
    let load_before = load_average();
    let dir = TempDir::new(&base, "own-read")?;
    eprintln!(
        "[store] filling a FileStore with {} events",
        layout.events()
    );
    let file = filled_file(dir.path(), &maker, layout)?;
    let n = layout.events();
    let (b, m, w) = (base.as_path(), &maker, window);
    let imm = Durability::Immediate;
    let mut runs = vec![
        run(
            "S2  FileStore, single-event appends, 1 appender, Immediate",
            || file_appends(b, m, imm, 1, 1, w),
        ),
        run(
            "S3  FileStore, appends of 100, 1 appender, Immediate",
            || file_appends(b, m, imm, 1, 100, w),
        ),
        run("S4  FileStore, appends of 100, 1 appender, None", || {
            file_appends(b, m, Durability::None, 1, 100, w)
        }),
        run(
            format!("S5  FileStore read_all, owned Event<Value>, {n} events"),
            || read_all(&*file, n),
        ),
        run(
            format!("S5  FileStore scan_all, EventRef, {n} events"),
            || scan_all(&*file, n),
        ),
        run("    InMemoryStore, single-event appends, 1 thread", || {
            memory_appends(m, 1, w)
        }),
        run("    InMemoryStore, single-event appends, 4 threads", || {
            memory_appends(m, 4, w)
        }),
    ];
    let values = interleave("store", rounds, &mut runs)?;
    let load_after = load_average();
    println!(
        "ringbus event store, alone — commit {}, {} cores; load (1-min average) {} before, {} after",
        commit(),
        cores(),
        show_load(load_before),
        show_load(load_after)
    );
    println!(
        "{EVENT_BYTES}-byte events (Event<serde_json::Value>, Event::new in the loop); stores in {}; \
         {rounds} interleaved rounds of {} ms per append run; median [min – max]",
        base.display(),
        window.as_millis()
    );
    for (r, v) in runs.iter().zip(values) {
        let s = spread(&v);
        println!(
            "  {:<58} {:>11}  [{} – {}]",
            r.label,
            fmt_rate(s.median),
            fmt_rate(s.min),
            fmt_rate(s.max)
        );
    }
    println!(
        "\nSide by side with SQLite, fjall, okaywal and redb, every S-target (needs Rust ≥ 1.90):\n  \
         cargo run --release --manifest-path store-anchors/Cargo.toml            # ≥ 5 rounds, 1 M-event stores\n  \
         cargo run --release --manifest-path store-anchors/Cargo.toml -- --quick # 3 rounds, as CI runs it"
    );
    Ok(())
}
