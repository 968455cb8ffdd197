//! The workloads every benchmark and the throughput report run, one implementation
//! per system, so that every system does the same work per event.
//!
//! **One value for everyone.** Every system carries `ringbus::Event<u64>`: ringbus's
//! ring slot, the disruptor's slot (written in place by its publish closure) and the
//! channels' message are the same type ([`RingbusSlot`], [`DisruptorSlot`],
//! [`ChannelMessage`]; the report prints their sizes).
//!
//! **Events are made in the measured loop** ([`Make::New`]: `Event::new` per event,
//! unique ids, real timestamps) for every system; [`Make::Prebuilt`] clones one
//! template instead (all events share its id) and measures transport alone.
//!
//! **The consumers do the same work.** Routed: eight handlers, one per event type
//! (ringbus: eight subscriptions on its routing table; the others: one consumer
//! thread indexing an array of eight handlers by the type's interned id). Fan-out:
//! four handlers see every event. Partitioned: four lanes picked by the subject's
//! hash, about [`WORK_NS`] of work per event. A handler folds the payload into its
//! sum.
//!
//! **Same capacity, same threads.** [`CAPACITY`] slots for every ring and channel
//! (the four partitioned channels share it). ringbus runs `Execution::Inline` (one
//! dispatcher thread runs every handler) except in the partitioned shape, where a
//! pool of [`RINGBUS_POOL_THREADS`] plus the dispatcher runs the lanes.
//! [`System::consumer_threads`] says how many threads consume, per system and shape.
//!
//! **Matched waiting.** [`Waiting`] classes the systems: ringbus `BusySpin` and the
//! disruptor's `BusySpin` spin; ringbus `Blocking` and the channels park. The
//! disruptor 4.4 has no parking strategy (`BusySpin`, `BusySpinWithSpinLoopHint`,
//! `Sleep`): its `Sleep` ([`DISRUPTOR_SLEEP`]) is the nearest to blocking and is
//! classed with the blocking systems; its producers always spin on a full ring.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringbus::{
    Bus, BusBuilder, Event, EventType, Execution, HandlerError, ProducerMode, Source, Subject,
    WaitStrategy,
};

/// What ringbus's ring stores per slot (`UnsafeCell<MaybeUninit<Event<u64>>>`).
pub type RingbusSlot = Event<u64>;
/// The disruptor's slot type.
pub type DisruptorSlot = Event<u64>;
/// What the channels carry per message.
pub type ChannelMessage = Event<u64>;

/// Handlers in the routing table (one per event type).
pub const HANDLERS: usize = 8;
/// Handlers in the fan-out shape.
pub const FANOUT: usize = 4;
/// Lanes in the partitioned shape.
pub const LANES: usize = 4;
/// Distinct subjects in the partitioned shape.
pub const SUBJECTS: usize = 64;
/// Ring / channel slots, the same for every system.
pub const CAPACITY: usize = 8192;
/// Handler work per event in the partitioned shape, in nanoseconds.
pub const WORK_NS: u64 = 200;
/// ringbus's pool in the partitioned shape: with the dispatcher, which takes part
/// in every batch, [`LANES`] threads run handlers.
pub const RINGBUS_POOL_THREADS: usize = LANES - 1;
/// The disruptor's `Sleep` strategy: its nearest to blocking (it cannot park).
pub const DISRUPTOR_SLEEP: Duration = Duration::from_micros(10);

/// `size_of` each system's slot / message value, for the report's header.
pub fn slot_sizes() -> [(&'static str, usize); 3] {
    [
        ("ringbus slot", std::mem::size_of::<RingbusSlot>()),
        ("disruptor slot", std::mem::size_of::<DisruptorSlot>()),
        ("channel message", std::mem::size_of::<ChannelMessage>()),
    ]
}

// ---- systems -----------------------------------------------------------------------

/// The disruptor's consumer wait strategies used here.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DisruptorWait {
    /// Busy-spin (its fastest, idiomatic configuration).
    BusySpin,
    /// Sleep [`DISRUPTOR_SLEEP`] between checks: its nearest to blocking.
    Sleep,
}

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

/// How a system's threads wait: the ratio columns compare only equal classes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Spins while waiting (burns its core).
    BusySpin,
    /// Gives the core back while waiting (parks, or the disruptor's sleep).
    Blocking,
    /// Neither (ringbus `Yielding`): compared with nothing.
    Other,
}

impl Waiting {
    pub fn name(self) -> &'static str {
        match self {
            Waiting::BusySpin => "busy-spin",
            Waiting::Blocking => "blocking",
            Waiting::Other => "other",
        }
    }
}

/// A system under test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum System {
    Ringbus(WaitStrategy),
    Disruptor(DisruptorWait),
    Channel(Channel),
}

/// Every system with a matched counterpart, busy-spinning ones first.
pub const ALL_SYSTEMS: [System; 7] = [
    System::Ringbus(WaitStrategy::BusySpin),
    System::Disruptor(DisruptorWait::BusySpin),
    System::Ringbus(WaitStrategy::Blocking),
    System::Disruptor(DisruptorWait::Sleep),
    System::Channel(Channel::Crossbeam),
    System::Channel(Channel::Flume),
    System::Channel(Channel::Std),
];

/// The rings alone (they have batch publish; channels do not).
pub const RINGS: [System; 4] = [
    System::Ringbus(WaitStrategy::BusySpin),
    System::Disruptor(DisruptorWait::BusySpin),
    System::Ringbus(WaitStrategy::Blocking),
    System::Disruptor(DisruptorWait::Sleep),
];

/// The latency runs' systems: the matched pairs, then crossbeam-channel.
pub const LATENCY_SYSTEMS: [System; 5] = [
    System::Ringbus(WaitStrategy::BusySpin),
    System::Disruptor(DisruptorWait::BusySpin),
    System::Ringbus(WaitStrategy::Blocking),
    System::Disruptor(DisruptorWait::Sleep),
    System::Channel(Channel::Crossbeam),
];

/// The offered rates of the latency runs, events/s.
pub const LATENCY_RATES: [u64; 3] = [100_000, 500_000, 1_000_000];

impl System {
    /// The report's label (the same in the criterion benches).
    pub fn name(self) -> String {
        match self {
            System::Ringbus(w) => format!("ringbus ({w:?})"),
            System::Disruptor(DisruptorWait::BusySpin) => "disruptor (BusySpin)".into(),
            System::Disruptor(DisruptorWait::Sleep) => "disruptor (Sleep)".into(),
            System::Channel(c) => c.name().into(),
        }
    }

    /// [`System::name`], with the disruptor's consumer count where it has several.
    pub fn label(self, shape: Shape) -> String {
        match (self, shape) {
            (System::Disruptor(w), Shape::FanOut { consumers }) if consumers > 1 => {
                format!("disruptor ({w:?}, {consumers} consumers)")
            }
            _ => self.name(),
        }
    }

    pub fn waiting(self) -> Waiting {
        match self {
            System::Ringbus(WaitStrategy::BusySpin)
            | System::Disruptor(DisruptorWait::BusySpin) => Waiting::BusySpin,
            System::Ringbus(WaitStrategy::Blocking)
            | System::Disruptor(DisruptorWait::Sleep)
            | System::Channel(_) => Waiting::Blocking,
            System::Ringbus(_) => Waiting::Other,
        }
    }

    /// What the consumer side does while waiting, in a few words.
    pub fn wait_detail(self) -> &'static str {
        match self {
            System::Ringbus(WaitStrategy::BusySpin) => "spin",
            System::Ringbus(WaitStrategy::Yielding) => "spin, yield",
            System::Ringbus(_) => "spin, yield ≤50µs, park",
            System::Disruptor(DisruptorWait::BusySpin) => "spin",
            System::Disruptor(DisruptorWait::Sleep) => "sleep 10µs",
            System::Channel(_) => "spin, park",
        }
    }

    pub fn is_ringbus(self) -> bool {
        matches!(self, System::Ringbus(_))
    }

    /// Threads that consume (run handlers) in this shape.
    pub fn consumer_threads(self, shape: Shape) -> usize {
        match (self, shape) {
            (System::Ringbus(_), Shape::Partitioned) => RINGBUS_POOL_THREADS + 1,
            (System::Ringbus(_), _) => 1,
            (_, Shape::Partitioned) => LANES,
            (System::Disruptor(_), Shape::FanOut { consumers }) => consumers,
            _ => 1,
        }
    }
}

// ---- workload ----------------------------------------------------------------------

/// What the consumers do with each event.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// [`HANDLERS`] handlers, one per event type; one consumer thread.
    Routed,
    /// [`FANOUT`] handlers see every event. `consumers` = 1: one thread calls all
    /// four (ringbus, the channels, the disruptor like for like); = [`FANOUT`]: one
    /// handler per consumer thread (the disruptor's idiom).
    FanOut { consumers: usize },
    /// [`LANES`] lanes by subject hash, [`WORK_NS`] of work per event.
    Partitioned,
    /// One handler records each event's latency.
    Latency,
}

impl Shape {
    /// Handler calls per event (what [`Done`] counts).
    fn calls_per_event(self) -> u64 {
        match self {
            Shape::FanOut { .. } => FANOUT as u64,
            _ => 1,
        }
    }
}

/// How each event is made in the measured loop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Make {
    /// `Event::new` per event: unique id, real timestamp (what users do).
    New,
    /// A clone of one prebuilt template, type and payload set: transport alone.
    Prebuilt,
}

/// How events are published.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    Single,
    Batch(usize),
}

/// The eight event types, interned once.
pub fn types() -> [EventType; HANDLERS] {
    std::array::from_fn(|i| EventType::new(&format!("bench.type{i}")))
}

/// Makes event `i` the same way for every system.
pub struct Events {
    types: [EventType; HANDLERS],
    source: Source,
    template: Event<u64>,
    subjects: Vec<Subject>,
    make: Make,
    with_subject: bool,
}

impl Events {
    pub fn new(make: Make, with_subject: bool) -> Self {
        let types = types();
        let source = Source::new("bench");
        Events {
            template: Event::new(types[0], source, 0),
            types,
            source,
            subjects: (0..SUBJECTS).map(|i| format!("acct-{i}").into()).collect(),
            make,
            with_subject,
        }
    }

    /// Event `i`: type `i % 8`, payload `data`, subject `i % 64` if the shape has
    /// subjects.
    #[inline(always)]
    pub fn make(&self, i: u64, data: u64) -> Event<u64> {
        let ty = self.types[(i % HANDLERS as u64) as usize];
        let mut e = match self.make {
            Make::New => Event::new(ty, self.source, data),
            Make::Prebuilt => {
                let mut e = self.template.clone();
                e.event_type = ty;
                e.data = data;
                e
            }
        };
        if self.with_subject {
            e.subject = Some(self.subjects[(i % SUBJECTS as u64) as usize].clone());
        }
        e
    }
}

/// The lane ringbus picks for an event (multiply-shift of the subject's hash); the
/// competitors use the same function so every system sees the same lane loads.
#[inline]
pub fn lane_of(e: &Event<u64>, lanes: usize) -> usize {
    e.subject.as_ref().map_or(0, |s| {
        ((u128::from(s.partition_hash()) * lanes as u128) >> 64) as usize
    })
}

/// Burns CPU, standing in for real handler work.
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

/// Iterations of [`spin_work`] for [`WORK_NS`], calibrated once per process.
pub fn work_iters() -> u64 {
    static ITERS: OnceLock<u64> = OnceLock::new();
    *ITERS.get_or_init(|| calibrate_work(WORK_NS))
}

/// What [`work_iters`] costs, measured (ns per event).
pub fn work_ns_measured() -> u64 {
    let iters = work_iters();
    let t = Instant::now();
    black_box(spin_work(iters * 10_000, 3));
    t.elapsed().as_nanos() as u64 / 10_000
}

/// A handler's work: fold the payload into its sum (plus optional spinning).
#[inline(always)]
fn work(sum: &mut u64, data: u64, spin: u64) {
    *sum = sum.wrapping_add(data);
    if spin > 0 {
        *sum ^= spin_work(spin, data);
    }
}

/// Counts handler calls; the measuring thread waits for the total.
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

// ---- consumers ---------------------------------------------------------------------

/// One consumer's (or one ringbus handler's) work.
enum Work {
    /// One handler (ringbus: routing done by the bus).
    Leaf { sum: u64, spin: u64 },
    /// Eight handlers indexed by the event type's interned id.
    Router {
        by_id: Arc<[u8]>,
        sums: [u64; HANDLERS],
    },
    /// Four handlers, each called for every event.
    Fan { sums: [u64; FANOUT] },
    /// One lane of a disruptor whose every consumer sees every event.
    Lane { lane: usize, sum: u64, spin: u64 },
    /// Records latencies.
    Record(Recorder),
}

/// A consumer's handlers plus the count it reports once per batch.
pub struct Sink {
    work: Work,
    pending: u64,
    done: Arc<Done>,
}

impl Sink {
    fn new(work: Work, done: &Arc<Done>) -> Self {
        Sink {
            work,
            pending: 0,
            done: done.clone(),
        }
    }

    #[inline(always)]
    fn on_event(&mut self, e: &Event<u64>) {
        match &mut self.work {
            Work::Leaf { sum, spin } => {
                work(sum, e.data, *spin);
                self.pending += 1;
            }
            Work::Router { by_id, sums } => {
                let h = by_id[e.event_type.id() as usize] as usize;
                work(&mut sums[h], e.data, 0);
                self.pending += 1;
            }
            Work::Fan { sums } => {
                for s in sums.iter_mut() {
                    work(s, e.data, 0);
                }
                self.pending += FANOUT as u64;
            }
            Work::Lane { lane, sum, spin } => {
                if lane_of(e, LANES) == *lane {
                    work(sum, e.data, *spin);
                    self.pending += 1;
                }
            }
            Work::Record(r) => {
                r.record(e.data);
                self.pending += 1;
            }
        }
    }

    #[inline]
    fn end_batch(&mut self) {
        if self.pending > 0 {
            self.done.add(std::mem::take(&mut self.pending));
        }
        // The sums are never read: keep the optimizer from dropping the work.
        black_box(&self.work);
    }
}

/// The handler ringbus subscribes: a [`Sink`].
struct BusHandler(Sink);

impl ringbus::Handler<u64> for BusHandler {
    #[inline]
    fn handle(&mut self, e: &Event<u64>) -> Result<(), HandlerError> {
        self.0.on_event(e);
        Ok(())
    }
    fn on_batch_end(&mut self) {
        self.0.end_batch();
    }
}

/// How a run is set up.
pub struct Setup {
    pub shape: Shape,
    pub producers: usize,
    /// ringbus metrics histograms (default on).
    pub metrics: bool,
    /// Where [`Shape::Latency`] recorders send their histogram on shutdown.
    record: Option<mpsc::Sender<Histogram<u64>>>,
}

impl Setup {
    fn leaf(&self, spin: u64, done: &Arc<Done>) -> Sink {
        match &self.record {
            Some(tx) => Sink::new(Work::Record(Recorder::new(tx.clone())), done),
            None => Sink::new(Work::Leaf { sum: 0, spin }, done),
        }
    }

    /// Consumer `k`'s sink for a competitor (`filtered`: its lane's events only
    /// reach it, as with one channel per lane).
    fn competitor_sink(
        &self,
        k: usize,
        consumers: usize,
        filtered: bool,
        done: &Arc<Done>,
    ) -> Sink {
        match self.shape {
            Shape::Routed => {
                let types = types();
                let max = types.iter().map(|t| t.id()).max().unwrap_or(0) as usize;
                let mut by_id = vec![0u8; max + 1];
                for (h, t) in types.iter().enumerate() {
                    by_id[t.id() as usize] = h as u8;
                }
                Sink::new(
                    Work::Router {
                        by_id: by_id.into(),
                        sums: [0; HANDLERS],
                    },
                    done,
                )
            }
            Shape::FanOut { .. } if consumers == 1 => {
                Sink::new(Work::Fan { sums: [0; FANOUT] }, done)
            }
            Shape::FanOut { .. } | Shape::Latency => self.leaf(0, done),
            Shape::Partitioned if filtered => self.leaf(work_iters(), done),
            Shape::Partitioned => Sink::new(
                Work::Lane {
                    lane: k,
                    sum: 0,
                    spin: work_iters(),
                },
                done,
            ),
        }
    }
}

// ---- producers and drivers ---------------------------------------------------------

/// One producer's handle on a system.
pub trait Producer: Send {
    /// Publishes the event `make` builds (the disruptor builds it in its slot).
    fn send(&mut self, make: impl FnOnce() -> Event<u64>);
    /// Publishes `k` events with the system's batch publish.
    fn send_batch(&mut self, k: usize, make: impl FnMut() -> Event<u64>);
}

impl<M: ProducerMode> Producer for ringbus::Publisher<u64, M>
where
    ringbus::Publisher<u64, M>: Send,
{
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        if self.publish(make()).is_err() {
            panic!("the bus closed during the run");
        }
    }
    #[inline(always)]
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        if self.publish_batch((0..k).map(|_| make())).is_err() {
            panic!("the bus closed during the run");
        }
    }
}

/// A disruptor producer.
pub struct Dis<P>(P);

impl<P: disruptor::Producer<DisruptorSlot> + Send> Producer for Dis<P> {
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        self.0.publish(|slot| *slot = make());
    }
    #[inline(always)]
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        self.0.batch_publish(k, |slots| {
            for slot in slots {
                *slot = make();
            }
        });
    }
}

/// A channel's sending half.
trait Tx: Clone + Send + 'static {
    fn put(&self, e: ChannelMessage);
}
/// A channel's receiving half.
trait Rx: Send + 'static {
    fn take(&self) -> Option<ChannelMessage>;
    fn try_take(&self) -> Option<ChannelMessage>;
}

impl Tx for crossbeam_channel::Sender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for crossbeam_channel::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}
impl Tx for flume::Sender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for flume::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}
impl Tx for mpsc::SyncSender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for mpsc::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}

/// A producer on one channel, or on one channel per lane (picked by [`lane_of`]).
pub struct Chan<T>(Vec<T>);

impl<T: Tx> Producer for Chan<T> {
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        let e = make();
        let k = if self.0.len() == 1 {
            0
        } else {
            lane_of(&e, self.0.len())
        };
        self.0[k].put(e);
    }
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        for _ in 0..k {
            self.send(&mut make);
        }
    }
}

/// Makes events without publishing them: the CPU baseline of the paced producer.
struct Nowhere;

impl Producer for Nowhere {
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        black_box(make());
    }
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        for _ in 0..k {
            black_box(make());
        }
    }
}

/// What to do with a system once it is built: drive its producers, wait until
/// `calls` handler calls per event are done, return a measurement. The system is
/// shut down after `drive` returns.
pub trait Drive {
    type Out;
    fn drive<P: Producer>(self, producers: Vec<P>, done: &Done, calls: u64) -> Self::Out;
}

/// `n` events (split between the producers), as fast as they go: the elapsed time
/// from the first publish to the last handler call.
struct Saturate<'a> {
    n: u64,
    publish: Publish,
    events: &'a Events,
}

fn produce<P: Producer>(p: &mut P, events: &Events, from: u64, n: u64, publish: Publish) {
    match publish {
        Publish::Single => {
            for i in from..from + n {
                p.send(|| events.make(i, i));
            }
        }
        Publish::Batch(b) => {
            let mut i = from;
            while i < from + n {
                let k = (b as u64).min(from + n - i);
                let mut j = i;
                p.send_batch(k as usize, || {
                    let e = events.make(j, j);
                    j += 1;
                    e
                });
                i += k;
            }
        }
    }
}

impl Drive for Saturate<'_> {
    type Out = Duration;
    fn drive<P: Producer>(self, mut producers: Vec<P>, done: &Done, calls: u64) -> Duration {
        let per = self.n / producers.len() as u64;
        let start = Instant::now();
        if let [p] = producers.as_mut_slice() {
            produce(p, self.events, 0, per, self.publish);
        } else {
            std::thread::scope(|s| {
                for (k, p) in producers.iter_mut().enumerate() {
                    let (events, publish) = (self.events, self.publish);
                    s.spawn(move || produce(p, events, k as u64 * per, per, publish));
                }
            });
        }
        done.wait_for(per * producers.len() as u64 * calls);
        start.elapsed()
    }
}

/// One producer at a fixed rate. `spin`: waits for each event's due time by
/// spinning and stamps it as the payload (latency); else sleeps between bursts of
/// due events (CPU cost; a spinning producer would hide every system's cost
/// behind its own). Returns the process's CPU time over the run.
struct Paced<'a> {
    rate: u64,
    n: u64,
    spin: bool,
    events: &'a Events,
}

impl Drive for Paced<'_> {
    type Out = Option<u64>;
    fn drive<P: Producer>(self, mut producers: Vec<P>, done: &Done, calls: u64) -> Option<u64> {
        let p = &mut producers[0];
        let interval = 1_000_000_000 / self.rate;
        // Latency: start 1 ms out, past the set-up. CPU: count from the first event.
        let lead = if self.spin { 1_000_000 } else { 0 };
        let cpu_before = process_cpu_ns();
        let start = now_ns() + lead;
        let mut i = 0;
        while i < self.n {
            let due = start + i * interval;
            let now = now_ns();
            if now < due {
                if self.spin {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                continue;
            }
            p.send(|| self.events.make(i, due));
            i += 1;
        }
        done.wait_for(self.n * calls);
        Some(process_cpu_ns()?.saturating_sub(cpu_before?))
    }
}

// ---- building each system ----------------------------------------------------------

/// Builds `system` for `setup`, hands its producers to `drive`, shuts it down.
fn run_system<D: Drive>(system: System, setup: &Setup, drive: D) -> D::Out {
    let done = Arc::new(Done::default());
    match system {
        System::Ringbus(wait) => ringbus_system(wait, setup, &done, drive),
        System::Disruptor(DisruptorWait::BusySpin) => {
            disruptor_system(disruptor::BusySpin, setup, &done, drive)
        }
        System::Disruptor(DisruptorWait::Sleep) => {
            disruptor_system(disruptor::Sleep::new(DISRUPTOR_SLEEP), setup, &done, drive)
        }
        System::Channel(Channel::Crossbeam) => {
            let pairs = channel_pairs(setup, crossbeam_channel::bounded);
            channel_system(pairs, setup, &done, drive)
        }
        System::Channel(Channel::Flume) => {
            let pairs = channel_pairs(setup, flume::bounded);
            channel_system(pairs, setup, &done, drive)
        }
        System::Channel(Channel::Std) => {
            let pairs = channel_pairs(setup, mpsc::sync_channel);
            channel_system(pairs, setup, &done, drive)
        }
    }
}

fn ringbus_system<D: Drive>(
    wait: WaitStrategy,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    let builder = BusBuilder::<u64>::new()
        .capacity(CAPACITY)
        .wait_strategy(wait)
        .metrics(setup.metrics);
    let builder = match setup.shape {
        Shape::Partitioned => builder
            .execution(Execution::Pool {
                threads: RINGBUS_POOL_THREADS,
            })
            .max_batch(1024),
        _ => builder.execution(Execution::Inline),
    };
    let calls = setup.shape.calls_per_event();
    if setup.producers == 1 {
        let (bus, p) = builder.single_producer().build().expect("bus builds");
        subscribe(&bus, setup, done);
        let out = drive.drive(vec![p], done, calls);
        bus.shutdown().expect("bus shuts down");
        out
    } else {
        let bus = builder.build().expect("bus builds");
        subscribe(&bus, setup, done);
        let producers = (0..setup.producers).map(|_| bus.publisher()).collect();
        let out = drive.drive(producers, done, calls);
        bus.shutdown().expect("bus shuts down");
        out
    }
}

fn subscribe<M: ProducerMode>(bus: &Bus<u64, M>, setup: &Setup, done: &Arc<Done>) {
    let leaf = |spin| BusHandler(setup.leaf(spin, done));
    match setup.shape {
        Shape::Routed => {
            for i in 0..HANDLERS {
                bus.subscribe_handler(format!("bench.type{i}").as_str(), leaf(0))
                    .expect("subscribes");
            }
        }
        Shape::FanOut { .. } => {
            for _ in 0..FANOUT {
                bus.subscribe_handler("bench.>", leaf(0))
                    .expect("subscribes");
            }
        }
        Shape::Partitioned => {
            bus.subscribe_partitioned("bench.>", LANES, |_| leaf(work_iters()))
                .expect("subscribes");
        }
        Shape::Latency => {
            bus.subscribe_handler("bench.>", leaf(0))
                .expect("subscribes");
        }
    }
}

fn disruptor_system<D: Drive, W: disruptor::wait_strategies::WaitStrategy + 'static>(
    wait: W,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    let consumers = match setup.shape {
        Shape::Partitioned => LANES,
        Shape::FanOut { consumers } => consumers,
        _ => 1,
    };
    assert!(
        consumers == 1 || consumers == 4,
        "the disruptor is wired for 1 or 4 consumers"
    );
    let mut sinks: Vec<Sink> = (0..consumers)
        .map(|k| setup.competitor_sink(k, consumers, false, done))
        .collect();
    let mut handler = || {
        let mut sink = sinks.remove(0);
        move |e: &DisruptorSlot, _seq: i64, end_of_batch: bool| {
            sink.on_event(e);
            if end_of_batch {
                sink.end_batch();
            }
        }
    };
    let ty = types()[0];
    let source = Source::new("bench");
    let factory = move || Event::new(ty, source, 0u64);
    let calls = setup.shape.calls_per_event();
    let producers = setup.producers;
    // Each builder chain has its own type: one arm per (producer mode, consumers).
    macro_rules! consumers {
        ($builder:expr, $go:ident) => {
            if consumers == 1 {
                $go(
                    $builder.handle_events_with(handler()).build(),
                    producers,
                    drive,
                    done,
                    calls,
                )
            } else {
                $go(
                    $builder
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .build(),
                    producers,
                    drive,
                    done,
                    calls,
                )
            }
        };
    }
    if producers == 1 {
        consumers!(
            disruptor::build_single_producer(CAPACITY, factory, wait),
            go_single
        )
    } else {
        consumers!(
            disruptor::build_multi_producer(CAPACITY, factory, wait),
            go_multi
        )
    }
}

fn go_single<P: disruptor::Producer<DisruptorSlot> + Send, D: Drive>(
    p: P,
    _producers: usize,
    drive: D,
    done: &Done,
    calls: u64,
) -> D::Out {
    // Dropping the producer (when `drive` returns) joins the consumers.
    drive.drive(vec![Dis(p)], done, calls)
}

fn go_multi<P: disruptor::Producer<DisruptorSlot> + Clone + Send, D: Drive>(
    p: P,
    producers: usize,
    drive: D,
    done: &Done,
    calls: u64,
) -> D::Out {
    let mut all: Vec<Dis<P>> = (1..producers).map(|_| Dis(p.clone())).collect();
    all.push(Dis(p));
    // The last producer dropped joins the consumers.
    drive.drive(all, done, calls)
}

/// One bounded channel, or one per lane sharing [`CAPACITY`].
fn channel_pairs<T, R>(setup: &Setup, bounded: impl Fn(usize) -> (T, R)) -> Vec<(T, R)> {
    let n = if setup.shape == Shape::Partitioned {
        LANES
    } else {
        1
    };
    (0..n).map(|_| bounded(CAPACITY / n)).collect()
}

fn channel_system<D: Drive, T: Tx, R: Rx>(
    pairs: Vec<(T, R)>,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    assert!(
        !matches!(setup.shape, Shape::FanOut { consumers } if consumers > 1),
        "a channel fans out on one consumer thread"
    );
    let (txs, rxs): (Vec<T>, Vec<R>) = pairs.into_iter().unzip();
    let filtered = rxs.len() > 1;
    let consumers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(k, rx)| {
            let mut sink = setup.competitor_sink(k, 1, filtered, done);
            std::thread::spawn(move || {
                while let Some(e) = rx.take() {
                    sink.on_event(&e);
                    // Drain what is there (at most a ring's worth), then report.
                    for _ in 1..CAPACITY {
                        let Some(e) = rx.try_take() else { break };
                        sink.on_event(&e);
                    }
                    sink.end_batch();
                }
            })
        })
        .collect();
    let producers = (0..setup.producers).map(|_| Chan(txs.clone())).collect();
    drop(txs);
    let out = drive.drive(producers, done, setup.shape.calls_per_event());
    for c in consumers {
        c.join().expect("consumer thread");
    }
    out
}

// ---- the measurements --------------------------------------------------------------

/// `n` events through `system` as fast as they go; the time from the first
/// publish to the last handler call.
pub fn throughput(
    system: System,
    shape: Shape,
    producers: usize,
    publish: Publish,
    make: Make,
    n: u64,
) -> Duration {
    throughput_metrics(system, shape, producers, publish, make, n, true)
}

/// [`throughput`] with ringbus's metrics histograms on or off (counters are always
/// kept; the other systems have none).
pub fn throughput_metrics(
    system: System,
    shape: Shape,
    producers: usize,
    publish: Publish,
    make: Make,
    n: u64,
    metrics: bool,
) -> Duration {
    let events = Events::new(make, shape == Shape::Partitioned);
    let setup = Setup {
        shape,
        producers,
        metrics,
        record: None,
    };
    let drive = Saturate {
        n,
        publish,
        events: &events,
    };
    run_system(system, &setup, drive)
}

/// One-way latency at `rate` events/s for `duration` from one producer (`Event::new`
/// per event, one handler): the histogram of (handled − intended send time), ns.
pub fn latency(system: System, rate: u64, duration: Duration) -> Histogram<u64> {
    let (tx, rx) = mpsc::channel();
    let events = Events::new(Make::New, false);
    let setup = Setup {
        shape: Shape::Latency,
        producers: 1,
        metrics: true,
        record: Some(tx),
    };
    let drive = Paced {
        rate,
        n: (rate as f64 * duration.as_secs_f64()) as u64,
        spin: true,
        events: &events,
    };
    run_system(system, &setup, drive);
    drop(setup);
    rx.recv()
        .expect("the recorder hands its histogram back on shutdown")
}

/// CPU time of the whole process per event (ns) while one producer publishes at
/// `rate` events/s for `duration` (`Event::new` per event, routed to eight
/// handlers). `None` for `system` measures the producer alone (pacing and
/// `Event::new`, nothing published): the baseline every system pays.
pub fn cpu_per_event(system: Option<System>, rate: u64, duration: Duration) -> Option<f64> {
    let events = Events::new(Make::New, false);
    let n = (rate as f64 * duration.as_secs_f64()) as u64;
    let drive = Paced {
        rate,
        n,
        spin: false,
        events: &events,
    };
    let cpu = match system {
        Some(system) => {
            let setup = Setup {
                shape: Shape::Routed,
                producers: 1,
                metrics: true,
                record: None,
            };
            run_system(system, &setup, drive)
        }
        None => drive.drive(vec![Nowhere], &Done::default(), 0),
    };
    Some(cpu? as f64 / n as f64)
}

/// ns per `Event::new`.
pub fn event_new_ns(n: u64) -> f64 {
    let ty = EventType::new("bench.type0");
    let src = Source::new("bench");
    let t = Instant::now();
    for i in 0..n {
        black_box(Event::new(ty, src, i));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

// ---- latency recording -------------------------------------------------------------

/// Nanoseconds since the first call (a process-wide monotonic base).
#[inline]
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Records one-way latencies on the consuming thread; hands its histogram back when
/// dropped (the system under test drops it when it shuts down).
pub struct Recorder {
    hist: Histogram<u64>,
    out: mpsc::Sender<Histogram<u64>>,
}

impl Recorder {
    fn new(out: mpsc::Sender<Histogram<u64>>) -> Self {
        Recorder {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
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
        let empty = Histogram::new(1).expect("bounds");
        let _ = self.out.send(std::mem::replace(&mut self.hist, empty));
    }
}

/// Per-round percentiles of one system's latency at one rate.
#[derive(Clone, Debug, Default)]
pub struct LatencyRounds {
    pub p50: Vec<u64>,
    pub p99: Vec<u64>,
    pub p999: Vec<u64>,
    pub max: Vec<u64>,
    pub samples: u64,
}

/// The median of some figures (the upper one of an even count).
pub fn median<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

/// Latency at `rate` in `rounds` interleaved rounds (one `round`-long run per
/// system per round, systems alternating), per system in `systems` order.
pub fn latency_rounds(
    systems: &[System],
    rate: u64,
    rounds: usize,
    round: Duration,
) -> Vec<LatencyRounds> {
    let mut out = vec![LatencyRounds::default(); systems.len()];
    for _ in 0..rounds {
        for (s, r) in systems.iter().zip(out.iter_mut()) {
            let h = latency(*s, rate, round);
            r.p50.push(h.value_at_quantile(0.50));
            r.p99.push(h.value_at_quantile(0.99));
            r.p999.push(h.value_at_quantile(0.999));
            r.max.push(h.max());
            r.samples = h.len();
        }
    }
    out
}

// ---- CPU time ----------------------------------------------------------------------

/// CPU time (ns) the live threads of this process have used so far, from
/// `/proc/self/task/*/schedstat` (Linux); `None` elsewhere. Threads that exit are
/// not counted: measure while the system under test is running.
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
    let bus = BusBuilder::<u64>::new().build().expect("bus builds");
    let done = Arc::new(Done::default());
    bus.subscribe_handler(
        "bench.>",
        BusHandler(Sink::new(Work::Leaf { sum: 0, spin: 0 }, &done)),
    )
    .expect("subscribes");
    let events = Events::new(Make::New, false);
    let mut p = bus.publisher();
    for i in 0..10_000 {
        p.send(|| events.make(i, i));
    }
    done.wait_for(10_000);
    std::thread::sleep(Duration::from_millis(50));
    let before = process_cpu_ns()?;
    std::thread::sleep(idle);
    let after = process_cpu_ns()?;
    bus.shutdown().expect("bus shuts down");
    Some((after - before) as f64 / idle.as_nanos() as f64)
}

// ---- the scenarios -----------------------------------------------------------------

/// One throughput scenario: the same producers, publish and events for every
/// system in it.
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub producers: usize,
    pub publish: Publish,
    pub make: Make,
    /// Each system with the shape it runs (the disruptor runs fan-out two ways).
    pub entries: Vec<(System, Shape)>,
    /// Events per run = the report's `n` ÷ this (slow scenarios run fewer).
    pub divisor: u64,
}

impl Scenario {
    /// A run of `n` events of `system` in `shape`.
    pub fn run(&self, system: System, shape: Shape, n: u64) -> Duration {
        throughput(system, shape, self.producers, self.publish, self.make, n)
    }
}

/// The throughput scenarios, in report order.
pub fn scenarios() -> Vec<Scenario> {
    let all = |shape| ALL_SYSTEMS.iter().map(|&s| (s, shape)).collect::<Vec<_>>();
    let rings = |shape| RINGS.iter().map(|&s| (s, shape)).collect::<Vec<_>>();
    let one = Shape::FanOut { consumers: 1 };
    let four = Shape::FanOut { consumers: FANOUT };
    let spsc = |name, what, publish, make, entries| Scenario {
        name,
        what,
        producers: 1,
        publish,
        make,
        entries,
        divisor: 1,
    };
    vec![
        spsc(
            "spsc_single",
            "1 producer, single publish, Event::new per event, 8 handlers routed by type",
            Publish::Single,
            Make::New,
            all(Shape::Routed),
        ),
        spsc(
            "spsc_single_prebuilt",
            "transport only: as spsc_single with clones of one prebuilt event (one id)",
            Publish::Single,
            Make::Prebuilt,
            all(Shape::Routed),
        ),
        spsc(
            "spsc_batch10",
            "1 producer, batches of 10 (Event::new each), rings only",
            Publish::Batch(10),
            Make::New,
            rings(Shape::Routed),
        ),
        spsc(
            "spsc_batch100",
            "1 producer, batches of 100 (Event::new each), rings only",
            Publish::Batch(100),
            Make::New,
            rings(Shape::Routed),
        ),
        Scenario {
            name: "mpsc_2p",
            what: "2 producers, single publish, Event::new per event, 8 handlers by type",
            producers: 2,
            publish: Publish::Single,
            make: Make::New,
            entries: all(Shape::Routed),
            divisor: 4,
        },
        Scenario {
            name: "mpsc_4p",
            what: "4 producers, single publish, Event::new per event, 8 handlers by type",
            producers: 4,
            publish: Publish::Single,
            make: Make::New,
            entries: all(Shape::Routed),
            divisor: 4,
        },
        Scenario {
            name: "fanout_4",
            what: "1 producer, Event::new, every event to 4 handlers",
            producers: 1,
            publish: Publish::Single,
            make: Make::New,
            entries: vec![
                (System::Ringbus(WaitStrategy::BusySpin), one),
                (System::Disruptor(DisruptorWait::BusySpin), one),
                (System::Disruptor(DisruptorWait::BusySpin), four),
                (System::Ringbus(WaitStrategy::Blocking), one),
                (System::Disruptor(DisruptorWait::Sleep), one),
                (System::Channel(Channel::Crossbeam), one),
            ],
            divisor: 4,
        },
        Scenario {
            name: "partitioned",
            what: "1 producer, Event::new with 1 of 64 subjects, 4 lanes by subject hash, ~200 ns of work per event",
            producers: 1,
            publish: Publish::Single,
            make: Make::New,
            entries: vec![
                (System::Ringbus(WaitStrategy::BusySpin), Shape::Partitioned),
                (System::Disruptor(DisruptorWait::BusySpin), Shape::Partitioned),
                (System::Ringbus(WaitStrategy::Blocking), Shape::Partitioned),
                (System::Disruptor(DisruptorWait::Sleep), Shape::Partitioned),
                (System::Channel(Channel::Crossbeam), Shape::Partitioned),
            ],
            divisor: 10,
        },
    ]
}
