//! Latency recording and the interleaved rounds of the report.

use super::*;

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
    pub hist: Histogram<u64>,
    pub out: mpsc::Sender<Histogram<u64>>,
}

impl Recorder {
    pub fn new(out: mpsc::Sender<Histogram<u64>>) -> Self {
        Recorder {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
            out,
        }
    }
    /// `intended`: when the event was due to be sent (not when it was sent), so a
    /// stalled producer's backlog counts against the system: no coordinated omission.
    #[inline]
    pub fn record(&mut self, intended: u64) {
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
