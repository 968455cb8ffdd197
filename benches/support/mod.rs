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

mod consumers;
mod drivers;
mod latency;
mod systems;

pub use consumers::*;
pub use drivers::*;
pub use latency::*;
pub use systems::*;

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
pub fn work(sum: &mut u64, data: u64, spin: u64) {
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
