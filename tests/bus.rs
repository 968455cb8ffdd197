//! The public facade: configuration, publishing verbs, backpressure, shutdown.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{event, log, recorder, wait_for};
use ringbus::{
    BuildErrorKind, Bus, BusBuilder, Event, Execution, HandlerError, PublishTimeoutError,
    TryPublishError, WaitStrategy,
};

#[test]
fn bad_configuration_is_a_typed_error() {
    let kind = |r: Result<Bus, ringbus::BuildError>| r.unwrap_err().kind().to_string_kind();
    trait K {
        fn to_string_kind(&self) -> &'static str;
    }
    impl K for BuildErrorKind {
        fn to_string_kind(&self) -> &'static str {
            match self {
                BuildErrorKind::ZeroCapacity => "zero",
                BuildErrorKind::CapacityNotPowerOfTwo(_) => "pow2",
                BuildErrorKind::CapacityTooLarge(_) => "large",
                BuildErrorKind::ZeroMaxBatch => "batch",
                BuildErrorKind::ZeroThreads => "threads",
                BuildErrorKind::TooManyThreads(_) => "many-threads",
                BuildErrorKind::ZeroDeadLetterCapacity => "dlq",
                BuildErrorKind::ZeroFlowLogCapacity => "flow",
                _ => "other",
            }
        }
    }
    assert_eq!(kind(Bus::builder().capacity(0).build()), "zero");
    assert_eq!(kind(Bus::builder().capacity(1000).build()), "pow2");
    assert_eq!(kind(Bus::builder().capacity(1 << 30).build()), "large");
    assert_eq!(kind(Bus::builder().max_batch(0).build()), "batch");
    assert_eq!(
        kind(
            Bus::builder()
                .execution(Execution::Pool { threads: 0 })
                .build()
        ),
        "threads"
    );
    assert_eq!(
        kind(
            Bus::builder()
                .execution(Execution::Pool { threads: 1_000_000 })
                .build()
        ),
        "many-threads"
    );
    assert_eq!(
        kind(
            Bus::builder()
                .dead_letter_queue(0, Default::default())
                .build()
        ),
        "dlq"
    );
    assert_eq!(kind(Bus::builder().flow_log(0).build()), "flow");
    let msg = BusBuilder::<u32>::new()
        .capacity(3)
        .build()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("power of two"), "{msg}");
}

#[test]
fn batch_larger_than_capacity_is_split_not_refused() {
    for single in [false, true] {
        let seen = log();
        let n = 1000usize;
        let events = (0..n as u64).map(|i| event("batch.item", i));
        let report = if single {
            let (bus, mut p) = BusBuilder::new()
                .single_producer()
                .capacity(8)
                .build()
                .unwrap();
            bus.subscribe("batch.item", recorder(&seen, |e: &Event<u64>| e.data))
                .unwrap();
            p.publish_batch(events).unwrap();
            bus.shutdown().unwrap()
        } else {
            let bus = BusBuilder::new().capacity(8).build().unwrap();
            bus.subscribe("batch.item", recorder(&seen, |e: &Event<u64>| e.data))
                .unwrap();
            bus.publisher().publish_batch(events).unwrap();
            bus.shutdown().unwrap()
        };
        assert_eq!(report.counters.published, n as u64);
        assert_eq!(*seen.lock().unwrap(), (0..n as u64).collect::<Vec<_>>());
    }
}

#[test]
fn wraparound_with_capacity_two() {
    let seen = log();
    let (bus, mut p) = BusBuilder::new()
        .single_producer()
        .capacity(2)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    bus.subscribe("w.x", recorder(&seen, |e: &Event<u32>| e.data))
        .unwrap();
    for i in 0..10_000 {
        p.publish(event("w.x", i)).unwrap();
    }
    bus.shutdown().unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..10_000).collect::<Vec<_>>());

    let seen = log();
    let bus = BusBuilder::new().capacity(2).build().unwrap();
    bus.subscribe("w.x", recorder(&seen, |e: &Event<u32>| e.data))
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let mut p = bus.publisher();
            s.spawn(move || {
                for i in 0..5_000 {
                    p.publish(event("w.x", t * 1_000_000 + i)).unwrap();
                }
            });
        }
    });
    bus.shutdown().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10_000);
    for t in 0..2u32 {
        let mine: Vec<_> = seen.iter().filter(|v| **v / 1_000_000 == t).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer {t} out of order"
        );
    }
}

/// A handler that blocks until released, so a test can fill the ring.
fn gate() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    )
}

#[test]
fn try_publish_on_full_ring_returns_the_same_event() {
    for single in [false, true] {
        let (started, release) = gate();
        let (s, r) = (started.clone(), release.clone());
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        let handler = move |_e: &Event<u32>| -> Result<(), HandlerError> {
            s.store(true, Ordering::SeqCst);
            while !r.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            h.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let builder = BusBuilder::new().capacity(4).execution(Execution::Inline);
        let (bus, mut publish): (AnyBus<u32>, TryPublish) = if single {
            let (bus, mut p) = builder.single_producer().build().unwrap();
            bus.subscribe("full.x", handler).unwrap();
            let f = Box::new(move |e| p.try_publish(e));
            (bus.erase(), f)
        } else {
            let bus = builder.build().unwrap();
            bus.subscribe("full.x", handler).unwrap();
            let mut p = bus.publisher();
            let f = Box::new(move |e| p.try_publish(e));
            (bus.erase(), f)
        };
        publish(event("full.x", 0)).unwrap();
        wait_for(10, "handler started", || started.load(Ordering::SeqCst));
        // Slot 0 is held by the running batch: three more fit.
        for i in 1..4 {
            publish(event("full.x", i)).unwrap();
        }
        let rejected = event("full.x", 99);
        let id = rejected.id;
        match publish(rejected) {
            Err(TryPublishError::Full(e)) => {
                assert_eq!(e.id, id);
                assert_eq!(e.data, 99);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        release.store(true, Ordering::SeqCst);
        drop(publish);
        let report = bus.shutdown();
        assert_eq!(report.counters.published, 4);
        assert_eq!(handled.load(Ordering::SeqCst), 4);
    }
}

type TryPublish = Box<dyn FnMut(Event<u32>) -> Result<(), TryPublishError<u32>>>;

/// Shutting down works the same in both modes; this lets one test body hold either.
enum AnyBus<P: Send + Sync + 'static> {
    Single(Bus<P, ringbus::Single>),
    Multi(Bus<P, ringbus::Multi>),
}

impl<P: Send + Sync + 'static> AnyBus<P> {
    fn shutdown(self) -> ringbus::ShutdownReport {
        match self {
            AnyBus::Single(b) => b.shutdown().unwrap(),
            AnyBus::Multi(b) => b.shutdown().unwrap(),
        }
    }
}

trait Erase<P: Send + Sync + 'static> {
    fn erase(self) -> AnyBus<P>;
}
impl<P: Send + Sync + 'static> Erase<P> for Bus<P, ringbus::Single> {
    fn erase(self) -> AnyBus<P> {
        AnyBus::Single(self)
    }
}
impl<P: Send + Sync + 'static> Erase<P> for Bus<P, ringbus::Multi> {
    fn erase(self) -> AnyBus<P> {
        AnyBus::Multi(self)
    }
}

#[test]
fn publish_timeout_gives_the_event_back() {
    let (started, release) = gate();
    let (s, r) = (started.clone(), release.clone());
    let bus = BusBuilder::new()
        .capacity(2)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    bus.subscribe("t.x", move |_e: &Event<u32>| -> Result<(), HandlerError> {
        s.store(true, Ordering::SeqCst);
        while !r.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        Ok(())
    })
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("t.x", 0)).unwrap();
    wait_for(10, "handler started", || started.load(Ordering::SeqCst));
    p.publish(event("t.x", 1)).unwrap();
    match p.publish_timeout(event("t.x", 2), Duration::from_millis(20)) {
        Err(PublishTimeoutError::Timeout(e)) => assert_eq!(e.data, 2),
        other => panic!("expected Timeout, got {other:?}"),
    }
    release.store(true, Ordering::SeqCst);
    p.publish_timeout(event("t.x", 3), Duration::from_secs(10))
        .unwrap();
    assert_eq!(bus.shutdown().unwrap().counters.published, 3);
}

#[test]
fn publish_after_shutdown_returns_closed_with_the_event() {
    let bus = BusBuilder::<u32>::new().build().unwrap();
    let mut p = bus.publisher();
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.published, 0);
    assert!(p.is_closed());

    let e = event("late.x", 7);
    let id = e.id;
    assert_eq!(p.publish(e).unwrap_err().into_inner().id, id);
    match p.try_publish(event("late.x", 8)) {
        Err(TryPublishError::Closed(e)) => assert_eq!(e.data, 8),
        other => panic!("{other:?}"),
    }
    match p.publish_timeout(event("late.x", 9), Duration::from_secs(1)) {
        Err(PublishTimeoutError::Closed(e)) => assert_eq!(e.data, 9),
        other => panic!("{other:?}"),
    }
    // Only what was taken comes back; the rest of the iterator is not consumed.
    let mut batch = (0..3).map(|i| event("late.x", i));
    let err = p.publish_batch(batch.by_ref()).unwrap_err();
    assert_eq!(err.published, 0);
    assert_eq!(
        err.unpublished.iter().map(|e| e.data).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(batch.map(|e| e.data).collect::<Vec<_>>(), [1, 2]);
    let err = p.publish_with(|| event("late.x", 10)).unwrap_err();
    assert_eq!(err.into_inner().data, 10);

    let (bus, mut sp) = BusBuilder::<u32>::new().single_producer().build().unwrap();
    bus.shutdown().unwrap();
    assert_eq!(
        sp.publish(event("late.x", 11))
            .unwrap_err()
            .into_inner()
            .data,
        11
    );
    let err = sp
        .publish_batch((0..2).map(|i| event("late.x", i)))
        .unwrap_err();
    assert_eq!(err.unpublished.len(), 2);
}

/// Producers publish until `Closed` while another thread shuts the bus down:
/// delivered + returned must equal attempted, with no duplicate.
#[test]
fn shutdown_under_concurrent_publishing_loses_nothing() {
    for round in 0..20 {
        let single = round % 2 == 1;
        let delivered = Arc::new(AtomicU64::new(0));
        let d = delivered.clone();
        let seen_ids = log();
        let rec = recorder(&seen_ids, |e: &Event<u64>| e.data);
        let mut rec = rec;
        let handler = move |e: &Event<u64>| -> Result<(), HandlerError> {
            d.fetch_add(1, Ordering::Relaxed);
            rec(e)
        };
        let builder = BusBuilder::<u64>::new()
            .capacity(16)
            .wait_strategy(if round % 4 < 2 {
                WaitStrategy::Blocking
            } else {
                WaitStrategy::Yielding
            });
        let (ok, returned, report) = if single {
            let (bus, mut p) = builder.single_producer().build().unwrap();
            bus.subscribe("race.x", handler).unwrap();
            let producer = std::thread::spawn(move || {
                let (mut ok, mut returned) = (0u64, 0u64);
                for i in 0.. {
                    let r = if i % 2 == 0 {
                        p.publish(event("race.x", i)).map_err(|e| e.into_inner())
                    } else {
                        p.publish_batch([event("race.x", i)])
                            .map_err(|mut e| e.unpublished.remove(0))
                    };
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            assert_eq!(e.data, i);
                            returned += 1;
                            break;
                        }
                    }
                }
                (ok, returned)
            });
            wait_for(10, "some deliveries", || {
                delivered.load(Ordering::Relaxed) > 100
            });
            let report = bus.shutdown().unwrap();
            let (ok, returned) = producer.join().unwrap();
            (ok, returned, report)
        } else {
            let bus = builder.build().unwrap();
            bus.subscribe("race.x", handler).unwrap();
            let producers: Vec<_> = (0..3u64)
                .map(|t| {
                    let mut p = bus.publisher();
                    std::thread::spawn(move || {
                        let (mut ok, mut returned) = (0u64, 0u64);
                        for i in 0.. {
                            match p.publish(event("race.x", t << 40 | i)) {
                                Ok(()) => ok += 1,
                                Err(_) => {
                                    returned += 1;
                                    break;
                                }
                            }
                        }
                        (ok, returned)
                    })
                })
                .collect();
            wait_for(10, "some deliveries", || {
                delivered.load(Ordering::Relaxed) > 100
            });
            let report = bus.shutdown().unwrap();
            let (mut ok, mut returned) = (0, 0);
            for p in producers {
                let (o, r) = p.join().unwrap();
                ok += o;
                returned += r;
            }
            (ok, returned, report)
        };
        assert_eq!(report.counters.published, ok, "round {round}");
        assert_eq!(delivered.load(Ordering::Relaxed), ok, "round {round}");
        let mut ids = seen_ids.lock().unwrap().clone();
        let len = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), len, "duplicate delivery in round {round}");
        assert!(returned >= 1);
    }
}

#[test]
fn publish_with_builds_in_claim_order() {
    let seen = log();
    let (bus, mut p) = BusBuilder::new()
        .single_producer()
        .capacity(4)
        .build()
        .unwrap();
    bus.subscribe(
        "with.x",
        recorder(&seen, |e: &Event<u32>| (e.timestamp, e.id)),
    )
    .unwrap();
    for i in 0..100 {
        p.publish_with(|| event("with.x", i)).unwrap();
    }
    bus.shutdown().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 100);
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
}

#[test]
fn panicking_publish_with_does_not_stall_the_bus() {
    let seen = log();
    let bus = BusBuilder::new().capacity(4).build().unwrap();
    bus.subscribe("pw.x", recorder(&seen, |e: &Event<u32>| e.data))
        .unwrap();
    let mut p = bus.publisher();
    p.publish(event("pw.x", 1)).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = p.publish_with(|| panic!("boom"));
    }));
    assert!(r.is_err());
    p.publish(event("pw.x", 2)).unwrap();
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.published, 2);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[test]
fn dropping_the_bus_shuts_down_and_runs_hooks() {
    struct Hooked(Arc<AtomicU64>, Arc<AtomicBool>);
    impl ringbus::Handler<u32> for Hooked {
        fn handle(&mut self, _: &Event<u32>) -> Result<(), HandlerError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn on_shutdown(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }
    let count = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    {
        let bus = BusBuilder::new().build().unwrap();
        bus.subscribe_handler(">", Hooked(count.clone(), down.clone()))
            .unwrap();
        let mut p = bus.publisher();
        for i in 0..1000 {
            p.publish(event("drop.x", i)).unwrap();
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 1000);
    assert!(down.load(Ordering::SeqCst));
}
