//! Routing, runtime subscription changes, failure isolation, partitioned handlers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{event, log, recorder, wait_for};
use ringbus::failure::{Failure, FailureReason};
use ringbus::{BusBuilder, Event, Execution, Handler, HandlerError, Subject, SubscribeError};

fn names(l: &common::Log<String>) -> Vec<String> {
    l.lock().unwrap().clone()
}

#[test]
fn patterns_route_exact_star_tail_and_all() {
    for exec in [Execution::Inline, Execution::Pool { threads: 2 }] {
        let bus = BusBuilder::<u32>::new().execution(exec).build().unwrap();
        let (exact, star, tail, all, multi) = (log(), log(), log(), log(), log());
        let name = |e: &Event<u32>| e.event_type.name().to_owned();
        bus.subscribe("order.placed", recorder(&exact, name))
            .unwrap();
        bus.subscribe("order.*", recorder(&star, name)).unwrap();
        bus.subscribe("order.>", recorder(&tail, name)).unwrap();
        bus.subscribe_all(recorder(&all, name)).unwrap();
        // Several overlapping patterns: still each event once.
        bus.subscribe(
            ["user.registered", "order.placed", "order.*"],
            recorder(&multi, name),
        )
        .unwrap();

        let mut p = bus.publisher();
        // `order.item.added.rt` has never been interned before this point: a type
        // first seen at runtime gets its table entry computed on first sight.
        for ty in [
            "order.placed",
            "order",
            "order.item.added.rt",
            "user.registered",
            "order.paid",
        ] {
            p.publish(event(ty, 0)).unwrap();
        }
        bus.shutdown().unwrap();
        assert_eq!(names(&exact), ["order.placed"]);
        assert_eq!(names(&star), ["order.placed", "order.paid"]);
        assert_eq!(
            names(&tail),
            ["order.placed", "order.item.added.rt", "order.paid"]
        );
        assert_eq!(
            names(&all),
            [
                "order.placed",
                "order",
                "order.item.added.rt",
                "user.registered",
                "order.paid"
            ]
        );
        assert_eq!(
            names(&multi),
            ["order.placed", "user.registered", "order.paid"]
        );
    }
}

#[test]
fn invalid_patterns_and_lanes_are_typed_errors() {
    let bus = BusBuilder::<u32>::new().build().unwrap();
    let h = |_: &Event<u32>| -> Result<(), HandlerError> { Ok(()) };
    assert!(matches!(
        bus.subscribe("a.>.b", h),
        Err(SubscribeError::InvalidPattern(_))
    ));
    assert!(matches!(
        bus.subscribe(Vec::<&str>::new(), h),
        Err(SubscribeError::NoPatterns)
    ));
    assert!(matches!(
        bus.subscribe_partitioned("a", 0, |_| h),
        Err(SubscribeError::InvalidLanes(0))
    ));
    let id = bus.subscribe("a", h).unwrap();
    bus.unsubscribe(id).unwrap();
    assert!(matches!(
        bus.unsubscribe(id),
        Err(SubscribeError::UnknownSubscription(_))
    ));
}

#[test]
fn runtime_subscribe_sees_everything_published_after_it_returns() {
    let bus = Arc::new(BusBuilder::<u64>::new().capacity(64).build().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let producer = {
        let (stop, published) = (stop.clone(), published.clone());
        let mut p = bus.publisher();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                p.publish(event("tick.n", i)).unwrap();
                published.store(i + 1, Ordering::SeqCst);
                i += 1;
            }
            i
        })
    };
    wait_for(10, "publishing started", || {
        published.load(Ordering::SeqCst) > 1000
    });
    let seen = log();
    bus.subscribe("tick.n", recorder(&seen, |e: &Event<u64>| e.data))
        .unwrap();
    // Every event whose publish *started* after subscribe returned must arrive; the
    // producer may be mid-publish, so allow the one in flight.
    let after = published.load(Ordering::SeqCst) + 1;
    wait_for(10, "more publishing", || {
        published.load(Ordering::SeqCst) > after + 1000
    });
    stop.store(true, Ordering::Relaxed);
    let total = producer.join().unwrap();
    let bus = Arc::try_unwrap(bus).unwrap();
    bus.shutdown().unwrap();
    let seen = seen.lock().unwrap();
    let first = seen[0];
    assert!(
        first <= after,
        "first event seen {first}, expected <= {after}"
    );
    assert_eq!(*seen, (first..total).collect::<Vec<_>>(), "gap or reorder");
}

#[test]
fn unsubscribe_returns_after_shutdown_hook_and_then_nothing_arrives() {
    struct H {
        count: Arc<AtomicU64>,
        down: Arc<AtomicBool>,
        after_down: Arc<AtomicU64>,
    }
    impl Handler<u64> for H {
        fn handle(&mut self, _: &Event<u64>) -> Result<(), HandlerError> {
            if self.down.load(Ordering::SeqCst) {
                self.after_down.fetch_add(1, Ordering::SeqCst);
            }
            self.count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn on_shutdown(&mut self) {
            self.down.store(true, Ordering::SeqCst);
        }
    }
    let bus = BusBuilder::<u64>::new().capacity(64).build().unwrap();
    let (count, down, after_down) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let id = bus
        .subscribe_handler(
            "tick.>",
            H {
                count: count.clone(),
                down: down.clone(),
                after_down: after_down.clone(),
            },
        )
        .unwrap();
    let stop = AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|s| {
        let mut p = bus.publisher();
        s.spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                p.publish(event("tick.n", i)).unwrap();
                i += 1;
            }
        });
        wait_for(10, "deliveries", || count.load(Ordering::SeqCst) > 1000);
        bus.unsubscribe(id).unwrap();
        assert!(
            down.load(Ordering::SeqCst),
            "on_shutdown ran before unsubscribe returned"
        );
        let at = count.load(Ordering::SeqCst);
        let before = bus.stats().dispatched;
        wait_for(10, "more dispatching", || {
            bus.stats().dispatched > before + 1000
        });
        assert_eq!(count.load(Ordering::SeqCst), at, "events after unsubscribe");
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(after_down.load(Ordering::SeqCst), 0);
    bus.shutdown().unwrap();
}

#[test]
fn subscribe_from_a_handler_is_refused_not_deadlocked() {
    let bus = Arc::new(BusBuilder::<u32>::new().build().unwrap());
    let result = Arc::new(Mutex::new(None));
    let (b, r) = (Arc::downgrade(&bus), result.clone());
    bus.subscribe("x.y", move |_: &Event<u32>| -> Result<(), HandlerError> {
        if let Some(bus) = b.upgrade() {
            let e = bus.subscribe("z", |_: &Event<u32>| -> Result<(), HandlerError> { Ok(()) });
            *r.lock().unwrap() = Some(matches!(e, Err(SubscribeError::FromHandler)));
        }
        Ok(())
    })
    .unwrap();
    bus.publisher().publish(event("x.y", 1)).unwrap();
    wait_for(10, "handler ran", || result.lock().unwrap().is_some());
    assert_eq!(*result.lock().unwrap(), Some(true));
}

#[test]
fn failing_handlers_do_not_affect_others_and_are_counted() {
    let failures: Arc<Mutex<Vec<(String, u64, bool)>>> = Arc::default();
    let f = failures.clone();
    let bus = BusBuilder::<u64>::new()
        .execution(Execution::Pool { threads: 2 })
        .failure_policy(move |fail: &Failure<'_, u64>| {
            let panicked = matches!(fail.reason, FailureReason::Panic(_));
            f.lock()
                .unwrap()
                .push((fail.handler.to_owned(), fail.event.data, panicked));
        })
        .build()
        .unwrap();
    let good = log();
    bus.subscribe("work.>", recorder(&good, |e: &Event<u64>| e.data))
        .unwrap();
    let panicky_seen = Arc::new(AtomicU64::new(0));
    let ps = panicky_seen.clone();
    bus.subscribe(
        "work.>",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            ps.fetch_add(1, Ordering::SeqCst);
            if e.data % 10 == 3 {
                panic!("handler bug on {}", e.data);
            }
            Ok(())
        },
    )
    .unwrap();
    bus.subscribe("work.>", |e: &Event<u64>| -> Result<(), HandlerError> {
        if e.data % 10 == 7 {
            Err(HandlerError::permanent(format!("cannot handle {}", e.data)))
        } else {
            Ok(())
        }
    })
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..1000 {
        p.publish(event("work.item", i)).unwrap();
    }
    let report = bus.shutdown().unwrap();
    assert_eq!(*good.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(
        panicky_seen.load(Ordering::SeqCst),
        1000,
        "panicking handler continued"
    );
    assert_eq!(report.counters.failed, 200);
    assert_eq!(report.counters.panicked, 100);
    assert_eq!(report.counters.delivered, 3000 - 200);
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 200);
    assert_eq!(failures.iter().filter(|f| f.2).count(), 100);
    assert!(failures.iter().filter(|f| f.2).all(|f| f.1 % 10 == 3));
    assert!(failures.iter().filter(|f| !f.2).all(|f| f.1 % 10 == 7));
}

#[test]
fn partitioned_lanes_keep_per_subject_order() {
    const LANES: usize = 4;
    type Seen = Arc<Mutex<Vec<(usize, Option<String>, u64)>>>;
    let seen: Seen = Arc::default();
    let bus = BusBuilder::<u64>::new()
        .capacity(256)
        .execution(Execution::Pool { threads: 2 })
        .build()
        .unwrap();
    let s = seen.clone();
    bus.subscribe_partitioned("acct.>", LANES, move |lane| {
        let s = s.clone();
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            let subject = e.subject.as_ref().map(|s| s.as_str().to_owned());
            s.lock().unwrap().push((lane, subject, e.data));
            Ok(())
        }
    })
    .unwrap();
    let mut p = bus.publisher();
    let subjects: Vec<Subject> = (0..32).map(|i| Subject::new(format!("acct-{i}"))).collect();
    for i in 0..20_000u64 {
        let e = event("acct.moved", i);
        let e = if i % 50 == 0 {
            e
        } else {
            e.with_subject(subjects[(i * 7 % 32) as usize].clone())
        };
        p.publish(e).unwrap();
    }
    bus.shutdown().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20_000);
    let mut lane_of: HashMap<Option<String>, usize> = HashMap::new();
    let mut last: HashMap<Option<String>, u64> = HashMap::new();
    let mut lanes_used = [false; LANES];
    for (lane, subject, i) in seen.iter() {
        lanes_used[*lane] = true;
        let l = *lane_of.entry(subject.clone()).or_insert(*lane);
        assert_eq!(l, *lane, "subject {subject:?} on two lanes");
        if let Some(prev) = last.insert(subject.clone(), *i) {
            assert!(*i > prev, "subject {subject:?}: {i} after {prev}");
        }
    }
    assert_eq!(lane_of[&None], 0, "events without a subject go to lane 0");
    assert!(
        lanes_used.iter().all(|u| *u),
        "32 subjects should spread over 4 lanes"
    );
}

#[test]
fn lifecycle_hooks_run_in_order() {
    #[derive(Clone)]
    struct H(Arc<Mutex<Vec<&'static str>>>);
    impl Handler<u32> for H {
        fn on_start(&mut self) {
            self.0.lock().unwrap().push("start");
        }
        fn handle(&mut self, _: &Event<u32>) -> Result<(), HandlerError> {
            self.0.lock().unwrap().push("event");
            Ok(())
        }
        fn on_batch_end(&mut self) {
            self.0.lock().unwrap().push("batch_end");
        }
        fn on_shutdown(&mut self) {
            self.0.lock().unwrap().push("shutdown");
        }
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (bus, mut p) = BusBuilder::new().single_producer().build().unwrap();
    bus.subscribe_handler("h.x", H(calls.clone())).unwrap();
    p.publish_batch((0..3).map(|i| event("h.x", i))).unwrap();
    bus.shutdown().unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.first(), Some(&"start"));
    assert_eq!(calls.last(), Some(&"shutdown"));
    assert_eq!(calls.iter().filter(|c| **c == "event").count(), 3);
    assert!(calls.iter().filter(|c| **c == "batch_end").count() >= 1);
    assert_eq!(calls[calls.len() - 2], "batch_end");
}
