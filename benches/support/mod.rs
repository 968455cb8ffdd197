//! The workloads every benchmark and the throughput report run, one implementation
//! per system, so that every system does exactly the same work.
//!
//! The event: ringbus carries its full envelope (`Event<u64>`: id, type, source,
//! timestamp, version, subject, correlation, causation, payload — 104 bytes); the
//! competitors carry [`Envelope`], a struct with the same fields but not the same
//! size (144 bytes: its ids are `u128`s, its subject an `Arc<str>` and a hash — the
//! report prints both sizes; evening them out is issue 14's work). Each event
//! is a copy of a template with the sequence number as payload and one of eight
//! event types, so envelope construction costs the same everywhere. The consumer
//! routes by event type through a table of eight handlers (ringbus: its own routing
//! table, eight subscriptions; the others: an array indexed by the type), and the
//! handler work is a wrapping add into a per-handler sum.
//!
//! ringbus runs with `Execution::Inline` (handlers on the dispatcher thread) except
//! in the partitioned scenario, which uses its rayon pool; the wait strategy is a
//! parameter, reported next to each figure.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbus::{
    BusBuilder, Event, EventId, EventType, Execution, HandlerError, Source, Timestamp, WaitStrategy,
};

/// Handlers in the routing table.
pub const HANDLERS: usize = 8;
/// Ring / channel capacity used by every system.
pub const CAPACITY: usize = 8192;

/// The competitors' event: the same fields as `ringbus::Event<u64>` (a different
/// size: the report prints both).
#[derive(Clone)]
pub struct Envelope {
    pub id: u128,
    pub event_type: u32,
    pub source: u32,
    pub timestamp: u64,
    pub version: u32,
    pub subject: Option<(Arc<str>, u64)>,
    pub correlation_id: Option<u128>,
    pub causation_id: Option<u128>,
    pub data: u64,
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope {
            id: 0,
            event_type: 0,
            source: 0,
            timestamp: 0,
            version: 1,
            subject: None,
            correlation_id: None,
            causation_id: None,
            data: 0,
        }
    }
}

/// The eight event types, interned once.
pub fn types() -> [EventType; HANDLERS] {
    std::array::from_fn(|i| EventType::new(&format!("bench.type{i}")))
}

/// Templates: one ringbus event and one envelope with the same contents.
pub struct Templates {
    pub types: [EventType; HANDLERS],
    pub event: Event<u64>,
    pub envelope: Envelope,
}

impl Templates {
    pub fn new() -> Self {
        let types = types();
        let ts = Timestamp::now();
        let event = Event::new(types[0], Source::new("bench"), 0u64);
        let envelope = Envelope {
            id: u128::from_be_bytes(EventId::at(ts).to_bytes()),
            event_type: 0,
            source: event.source.id(),
            timestamp: ts.as_nanos(),
            ..Envelope::default()
        };
        Templates {
            types,
            event,
            envelope,
        }
    }

    /// Event `i`: type `i % 8`, payload `i`.
    #[inline(always)]
    pub fn event(&self, i: u64) -> Event<u64> {
        let mut e = self.event.clone();
        e.event_type = self.types[(i % HANDLERS as u64) as usize];
        e.data = i;
        e
    }

    #[inline(always)]
    pub fn envelope(&self, i: u64) -> Envelope {
        let mut e = self.envelope.clone();
        e.event_type = (i % HANDLERS as u64) as u32;
        e.data = i;
        e
    }

    /// Event `i` of subject `i % subjects` (for the partitioned scenario).
    pub fn subject_event(&self, i: u64, subjects: &[ringbus::Subject]) -> Event<u64> {
        let mut e = self.event(i);
        e.event_type = self.types[0];
        e.subject = Some(subjects[(i % subjects.len() as u64) as usize].clone());
        e
    }
}

/// Burns about `ns` nanoseconds of CPU (calibrated once), standing in for real
/// handler work.
pub fn spin_work(iters: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Iterations of [`spin_work`] that take about `ns` nanoseconds here.
pub fn calibrate_work(ns: u64) -> u64 {
    let probe = 1_000_000;
    let t = Instant::now();
    black_box(spin_work(probe, 7));
    let per_iter = t.elapsed().as_nanos() as f64 / probe as f64;
    ((ns as f64 / per_iter).round() as u64).max(1)
}

/// A handler's work: fold the payload into its sum (plus optional spinning).
#[inline(always)]
fn work(sum: &mut u64, data: u64, spin: u64) {
    *sum = sum.wrapping_add(data);
    if spin > 0 {
        *sum ^= spin_work(spin, data);
    }
}

/// Counts handled events; the measuring thread waits for the total.
#[derive(Default)]
pub struct Done(AtomicU64);

impl Done {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Release);
    }
    pub fn wait_for(&self, n: u64) {
        let mut spins = 0u32;
        while self.0.load(Ordering::Acquire) < n {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// How events are published.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    Single,
    Batch(usize),
}

/// A ringbus handler: sums, counts locally, reports once per batch.
struct SumHandler {
    sum: u64,
    pending: u64,
    spin: u64,
    done: Arc<Done>,
}

impl ringbus::Handler<u64> for SumHandler {
    #[inline]
    fn handle(&mut self, e: &Event<u64>) -> Result<(), HandlerError> {
        work(&mut self.sum, e.data, self.spin);
        self.pending += 1;
        Ok(())
    }
    fn on_batch_end(&mut self) {
        self.done.add(std::mem::take(&mut self.pending));
        black_box(self.sum);
    }
}

fn sum_handler(done: &Arc<Done>, spin: u64) -> SumHandler {
    SumHandler {
        sum: 0,
        pending: 0,
        spin,
        done: done.clone(),
    }
}

// ---- ringbus -----------------------------------------------------------------------

/// ringbus, `producers` threads (1 = single-producer mode), eight handlers routed by
/// type (or `fanout` handlers all subscribed to every type). Returns the time from
/// the first publish to the last event handled.
pub fn ringbus_run(
    n: u64,
    producers: usize,
    publish: Publish,
    wait: WaitStrategy,
    fanout: usize,
) -> Duration {
    ringbus_run_metrics(n, producers, publish, wait, fanout, true)
}

/// [`ringbus_run`] with the metrics histograms on or off (counters are always kept).
pub fn ringbus_run_metrics(
    n: u64,
    producers: usize,
    publish: Publish,
    wait: WaitStrategy,
    fanout: usize,
    metrics: bool,
) -> Duration {
    let t = Templates::new();
    let done = Arc::new(Done::default());
    let builder = BusBuilder::<u64>::new()
        .capacity(CAPACITY)
        .wait_strategy(wait)
        .metrics(metrics)
        .execution(Execution::Inline);
    let subscribe = |bus: &dyn Fn(&str, SumHandler)| {
        if fanout > 0 {
            for _ in 0..fanout {
                bus("bench.>", sum_handler(&done, 0));
            }
        } else {
            for i in 0..HANDLERS {
                bus(&format!("bench.type{i}"), sum_handler(&done, 0));
            }
        }
    };
    let expected = if fanout > 0 { n * fanout as u64 } else { n };
    let per = n / producers as u64;
    if producers == 1 {
        let (bus, mut p) = builder.single_producer().build().unwrap();
        subscribe(&|pat, h| {
            bus.subscribe_handler(pat, h).unwrap();
        });
        let start = Instant::now();
        publish_loop(&t, 0, n, publish, &mut p);
        done.wait_for(expected);
        let elapsed = start.elapsed();
        bus.shutdown().unwrap();
        elapsed
    } else {
        let bus = builder.build().unwrap();
        subscribe(&|pat, h| {
            bus.subscribe_handler(pat, h).unwrap();
        });
        let start = Instant::now();
        std::thread::scope(|s| {
            for k in 0..producers as u64 {
                let mut p = bus.publisher();
                let t = &t;
                s.spawn(move || publish_loop(t, k * per, per, publish, &mut p));
            }
        });
        done.wait_for(per * producers as u64 * if fanout > 0 { fanout as u64 } else { 1 });
        let elapsed = start.elapsed();
        bus.shutdown().unwrap();
        elapsed
    }
}

fn publish_loop<M: ringbus::ProducerMode>(
    t: &Templates,
    from: u64,
    n: u64,
    publish: Publish,
    p: &mut ringbus::Publisher<u64, M>,
) {
    match publish {
        Publish::Single => {
            for i in from..from + n {
                p.publish(t.event(i)).unwrap();
            }
        }
        Publish::Batch(b) => {
            let mut i = from;
            while i < from + n {
                let k = (b as u64).min(from + n - i);
                p.publish_batch((i..i + k).map(|j| t.event(j))).unwrap();
                i += k;
            }
        }
    }
}

/// ringbus partitioned: one subscription with `lanes` lanes on a pool of
/// `threads`, each event costing about `work_ns`.
pub fn ringbus_partitioned(
    n: u64,
    lanes: usize,
    threads: usize,
    spin: u64,
    wait: WaitStrategy,
) -> Duration {
    let t = Templates::new();
    let subjects: Vec<ringbus::Subject> = (0..64).map(|i| format!("acct-{i}").into()).collect();
    let done = Arc::new(Done::default());
    let (bus, mut p) = BusBuilder::<u64>::new()
        .capacity(CAPACITY)
        .wait_strategy(wait)
        .execution(Execution::Pool { threads })
        .max_batch(1024)
        .single_producer()
        .build()
        .unwrap();
    let d = done.clone();
    bus.subscribe_partitioned("bench.>", lanes, move |_| sum_handler(&d, spin))
        .unwrap();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let k = 100.min(n - i);
        p.publish_batch((i..i + k).map(|j| t.subject_event(j, &subjects)))
            .unwrap();
        i += k;
    }
    done.wait_for(n);
    let elapsed = start.elapsed();
    bus.shutdown().unwrap();
    elapsed
}

// ---- disruptor -------------------------------------------------------------------

/// The disruptor crate with busy-spin consumers (its fastest configuration).
/// `fanout` > 0: that many processors each see every event; else one processor
/// routes by type through eight handlers. `spin` adds per-event work.
pub fn disruptor_run(
    n: u64,
    producers: usize,
    publish: Publish,
    fanout: usize,
    spin: u64,
) -> Duration {
    use disruptor::BusySpin;
    let t = Templates::new();
    let done = Arc::new(Done::default());
    let router = |done: Arc<Done>| {
        let mut sums = [0u64; HANDLERS];
        let mut pending = 0u64;
        move |e: &Envelope, _seq: i64, end_of_batch: bool| {
            work(&mut sums[e.event_type as usize], e.data, spin);
            pending += 1;
            if end_of_batch {
                done.add(std::mem::take(&mut pending));
                black_box(&sums);
            }
        }
    };
    let all = |done: Arc<Done>| {
        let mut sum = 0u64;
        let mut pending = 0u64;
        move |e: &Envelope, _seq: i64, end_of_batch: bool| {
            work(&mut sum, e.data, spin);
            pending += 1;
            if end_of_batch {
                done.add(std::mem::take(&mut pending));
                black_box(sum);
            }
        }
    };
    assert!(
        fanout == 0 || fanout == 4,
        "disruptor fan-out is wired for 4 processors"
    );
    let per = n / producers as u64;
    let total = per * producers as u64;
    let expected = total * fanout.max(1) as u64;
    macro_rules! single {
        ($p:expr) => {
            drive_single($p, &t, &done, per, publish, expected)
        };
    }
    macro_rules! multi {
        ($p:expr) => {
            drive_multi($p, &t, &done, producers, per, publish, expected)
        };
    }
    if producers == 1 {
        let b = disruptor::build_single_producer(CAPACITY, Envelope::default, BusySpin);
        if fanout == 4 {
            single!(b
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .build())
        } else {
            single!(b.handle_events_with(router(done.clone())).build())
        }
    } else {
        let b = disruptor::build_multi_producer(CAPACITY, Envelope::default, BusySpin);
        if fanout == 4 {
            multi!(b
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .handle_events_with(all(done.clone()))
                .build())
        } else {
            multi!(b.handle_events_with(router(done.clone())).build())
        }
    }
}

fn drive_single<P: disruptor::Producer<Envelope>>(
    mut p: P,
    t: &Templates,
    done: &Done,
    n: u64,
    publish: Publish,
    expected: u64,
) -> Duration {
    let start = Instant::now();
    disruptor_publish(&mut p, t, 0, n, publish);
    done.wait_for(expected);
    let elapsed = start.elapsed();
    drop(p);
    elapsed
}

fn drive_multi<P: disruptor::Producer<Envelope> + Clone + Send>(
    p: P,
    t: &Templates,
    done: &Done,
    producers: usize,
    per: u64,
    publish: Publish,
    expected: u64,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for k in 0..producers as u64 {
            let mut p = p.clone();
            s.spawn(move || disruptor_publish(&mut p, t, k * per, per, publish));
        }
    });
    done.wait_for(expected);
    let elapsed = start.elapsed();
    drop(p);
    elapsed
}

fn disruptor_publish<P: disruptor::Producer<Envelope>>(
    p: &mut P,
    t: &Templates,
    from: u64,
    n: u64,
    publish: Publish,
) {
    let fill = |e: &mut Envelope, src: &Envelope| e.clone_from(src);
    match publish {
        Publish::Single => {
            for i in from..from + n {
                let src = t.envelope(i);
                p.publish(|e| fill(e, &src));
            }
        }
        Publish::Batch(b) => {
            let mut i = from;
            while i < from + n {
                let k = (b as u64).min(from + n - i);
                let mut j = i;
                p.batch_publish(k as usize, |iter| {
                    for e in iter {
                        fill(e, &t.envelope(j));
                        j += 1;
                    }
                });
                i += k;
            }
        }
    }
}

// ---- channels ----------------------------------------------------------------------

/// A bounded channel flavour.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    Crossbeam,
    Flume,
    Std,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Crossbeam => "crossbeam-channel",
            Channel::Flume => "flume",
            Channel::Std => "std mpsc",
        }
    }
}

/// A bounded channel of capacity [`CAPACITY`]; one consumer thread routes by type
/// through eight handlers (or `fanout` handlers each see every event, called one
/// after the other on the consumer thread). Channels have no batch send, so a
/// batch is `b` sends.
pub fn channel_run(kind: Channel, n: u64, producers: usize, fanout: usize, spin: u64) -> Duration {
    let t = Templates::new();
    let per = n / producers as u64;
    let total = per * producers as u64;
    macro_rules! go {
        ($tx:expr, $rx:expr, $send:ident, $recv:ident) => {{
            let (tx, rx) = ($tx, $rx);
            let consumer = std::thread::spawn(move || {
                let mut sums = [0u64; HANDLERS];
                for _ in 0..total {
                    let e: Envelope = rx.$recv().unwrap();
                    if fanout > 0 {
                        for s in sums.iter_mut().take(fanout) {
                            work(s, e.data, spin);
                        }
                    } else {
                        work(&mut sums[e.event_type as usize], e.data, spin);
                    }
                }
                black_box(sums);
            });
            let start = Instant::now();
            std::thread::scope(|s| {
                for k in 0..producers as u64 {
                    let tx = tx.clone();
                    let t = &t;
                    s.spawn(move || {
                        for i in k * per..(k + 1) * per {
                            tx.$send(t.envelope(i)).unwrap();
                        }
                    });
                }
            });
            consumer.join().unwrap();
            start.elapsed()
        }};
    }
    match kind {
        Channel::Crossbeam => {
            let (tx, rx) = crossbeam_channel::bounded::<Envelope>(CAPACITY);
            go!(tx, rx, send, recv)
        }
        Channel::Flume => {
            let (tx, rx) = flume::bounded::<Envelope>(CAPACITY);
            go!(tx, rx, send, recv)
        }
        Channel::Std => {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Envelope>(CAPACITY);
            go!(tx, rx, send, recv)
        }
    }
}

// ---- latency -----------------------------------------------------------------------

/// Nanoseconds since the first call (a process-wide monotonic base).
#[inline]
pub fn now_ns() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Records one-way latencies on the consuming thread; hands its histogram back when
/// dropped (the system under test drops it when it shuts down).
pub struct Recorder {
    hist: hdrhistogram::Histogram<u64>,
    out: std::sync::mpsc::Sender<hdrhistogram::Histogram<u64>>,
}

impl Recorder {
    fn new(out: std::sync::mpsc::Sender<hdrhistogram::Histogram<u64>>) -> Self {
        Recorder {
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
            out,
        }
    }
    /// `intended`: when the event was due to be sent (not when it was sent), so a
    /// stalled producer's backlog counts against the system: no coordinated omission.
    #[inline]
    fn record(&mut self, intended: u64) {
        let _ = self.hist.record(now_ns().saturating_sub(intended).max(1));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.out.send(std::mem::replace(
            &mut self.hist,
            hdrhistogram::Histogram::new(1).unwrap(),
        ));
    }
}

/// A system whose one-way latency is measured.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LatencySystem {
    Ringbus(WaitStrategy),
    Disruptor,
    Crossbeam,
}

impl LatencySystem {
    /// Every system the latency runs compare, in report order.
    pub const ALL: [LatencySystem; 5] = [
        LatencySystem::Ringbus(WaitStrategy::Blocking),
        LatencySystem::Ringbus(WaitStrategy::Yielding),
        LatencySystem::Ringbus(WaitStrategy::BusySpin),
        LatencySystem::Disruptor,
        LatencySystem::Crossbeam,
    ];

    pub fn name(self) -> String {
        match self {
            LatencySystem::Ringbus(w) => format!("ringbus ({w:?})"),
            LatencySystem::Disruptor => "disruptor (BusySpin)".into(),
            LatencySystem::Crossbeam => "crossbeam-channel".into(),
        }
    }
}

/// Publishes at `rate` events/s for `duration` from one producer, each event
/// carrying its intended send time; returns the histogram of (handled − intended)
/// in nanoseconds.
pub fn latency_run(
    system: LatencySystem,
    rate: u64,
    duration: Duration,
) -> hdrhistogram::Histogram<u64> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = Templates::new();
    let n = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = 1_000_000_000 / rate;
    let paced = |mut send: Box<dyn FnMut(u64, u64) + '_>| {
        let start = now_ns() + 1_000_000;
        for i in 0..n {
            let due = start + i * interval;
            while now_ns() < due {
                std::hint::spin_loop();
            }
            send(i, due);
        }
    };
    match system {
        LatencySystem::Ringbus(wait) => {
            let (bus, mut p) = BusBuilder::<u64>::new()
                .capacity(CAPACITY)
                .wait_strategy(wait)
                .execution(Execution::Inline)
                .single_producer()
                .build()
                .unwrap();
            let mut rec = Recorder::new(tx);
            bus.subscribe(
                "bench.>",
                move |e: &Event<u64>| -> Result<(), HandlerError> {
                    rec.record(e.data);
                    Ok(())
                },
            )
            .unwrap();
            paced(Box::new(|i, due| {
                let mut e = t.event(i);
                e.data = due;
                p.publish(e).unwrap();
            }));
            bus.shutdown().unwrap();
        }
        LatencySystem::Disruptor => {
            use disruptor::{BusySpin, Producer};
            let mut rec = Recorder::new(tx);
            let mut p = disruptor::build_single_producer(CAPACITY, Envelope::default, BusySpin)
                .handle_events_with(move |e: &Envelope, _, _| rec.record(e.data))
                .build();
            paced(Box::new(|i, due| {
                let mut src = t.envelope(i);
                src.data = due;
                p.publish(|e| e.clone_from(&src));
            }));
            drop(p);
        }
        LatencySystem::Crossbeam => {
            let (ctx, crx) = crossbeam_channel::bounded::<Envelope>(CAPACITY);
            let consumer = std::thread::spawn(move || {
                let mut rec = Recorder::new(tx);
                while let Ok(e) = crx.recv() {
                    rec.record(e.data);
                }
            });
            paced(Box::new(|i, due| {
                let mut e = t.envelope(i);
                e.data = due;
                ctx.send(e).unwrap();
            }));
            drop(ctx);
            consumer.join().unwrap();
        }
    }
    rx.recv()
        .expect("the recorder hands its histogram back on shutdown")
}

// ---- idle cost ---------------------------------------------------------------------

/// CPU time (ns) all threads of this process have used so far, from
/// `/proc/self/task/*/schedstat` (Linux); `None` elsewhere.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// CPU time a default-configured bus (one handler subscribed) uses while idle for
/// `idle`, as a fraction of one core. Measured after a short burst of events, so the
/// dispatcher and pool have been active and must go back to sleep.
pub fn idle_cpu(idle: Duration) -> Option<f64> {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let done = Arc::new(Done::default());
    bus.subscribe_handler("bench.>", sum_handler(&done, 0))
        .unwrap();
    let t = Templates::new();
    let mut p = bus.publisher();
    for i in 0..10_000 {
        p.publish(t.event(i)).unwrap();
    }
    done.wait_for(10_000);
    std::thread::sleep(Duration::from_millis(50));
    let before = process_cpu_ns()?;
    std::thread::sleep(idle);
    let after = process_cpu_ns()?;
    bus.shutdown().unwrap();
    Some((after - before) as f64 / idle.as_nanos() as f64)
}
