//! Tracked publishing: `Publisher::publish_tracked` and its `Delivery`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{event, log, recorder, wait_for};
use ringbus::delivery::{Delivery, DeliveryOutcome};
use ringbus::resilience::{ManualClock, RetryPolicy};
use ringbus::{
    Bus, BusBuilder, Event, HandlerError, Multi, ProducerMode, PublishError, Publisher,
    SubscribeOptions,
};

const LONG: Duration = Duration::from_secs(30);

fn ok(_: &Event<u64>) -> Result<(), HandlerError> {
    Ok(())
}

/// Waits for the outcome with a generous deadline (a hang fails the test).
#[track_caller]
fn outcome(d: &Delivery) -> DeliveryOutcome {
    d.wait_timeout(LONG).expect("the delivery completes")
}

/// A gated handler, the receiver telling when it is inside a call, and the
/// sender releasing one call.
type Gate = (
    Box<dyn FnMut(&Event<u64>) -> Result<(), HandlerError> + Send + 'static>,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
);

/// A handler whose every call blocks until `release` is sent to, telling
/// `entered` when it is inside.
fn gate() -> Gate {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &Event<u64>| -> Result<(), HandlerError> {
        let _ = entered_tx.send(());
        release_rx.lock().unwrap().recv().ok();
        Ok(())
    };
    (Box::new(handler), entered, release)
}

fn all_succeed<M: ProducerMode>(bus: Bus<u64, M>, mut p: Publisher<u64, M>) {
    let seen = log();
    bus.subscribe("order.placed", recorder(&seen, |e: &Event<u64>| e.data))
        .unwrap();
    bus.subscribe("order.*", ok).unwrap();
    bus.subscribe(">", ok).unwrap();
    bus.subscribe("invoice.sent", ok).unwrap();
    let d = p.publish_tracked(event("order.placed", 7)).unwrap();
    let o = outcome(&d);
    assert_eq!(o.handlers, 3, "three of the four subscriptions match");
    assert_eq!(o.succeeded, 3);
    assert!(o.dispatched && o.failed.is_empty() && o.is_success());
    assert!(d.is_done());
    assert_eq!(*seen.lock().unwrap(), [7]);
    bus.shutdown().unwrap();
}

#[test]
fn every_handler_succeeds_multi_producer() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let p = bus.publisher();
    all_succeed(bus, p);
}

#[test]
fn every_handler_succeeds_single_producer() {
    let (bus, p) = BusBuilder::<u64>::new().single_producer().build().unwrap();
    all_succeed(bus, p);
}

#[test]
fn a_permanent_failure_names_the_subscription_and_handler() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    bus.subscribe("pay.card", ok).unwrap();
    let failing = bus
        .subscribe_with(
            "pay.card",
            |_: &Event<u64>| -> Result<(), HandlerError> {
                Err(HandlerError::permanent("invalid card"))
            },
            SubscribeOptions::new()
                .name("card-check")
                .retry(RetryPolicy::immediate(3)),
        )
        .unwrap();
    let d = bus
        .publisher()
        .publish_tracked(event("pay.card", 1))
        .unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (2, 1));
    assert_eq!(o.failed.len(), 1);
    let f = &o.failed[0];
    assert_eq!(f.subscription, failing);
    assert_eq!(f.handler, "card-check");
    assert!(!f.transient, "a permanent error");
    assert!(f.message.contains("invalid card"), "{}", f.message);
    assert!(!o.is_success());
    bus.shutdown().unwrap();
}

#[test]
fn a_transient_error_retried_then_handled_counts_as_succeeded() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "flaky.op",
        move |_: &Event<u64>| -> Result<(), HandlerError> {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(HandlerError::transient("try again"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new().retry(RetryPolicy::immediate(5)),
    )
    .unwrap();
    let d = bus
        .publisher()
        .publish_tracked(event("flaky.op", 1))
        .unwrap();
    let o = outcome(&d);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    assert_eq!((o.handlers, o.succeeded), (1, 1));
    assert!(o.failed.is_empty());
    bus.shutdown().unwrap();
}

#[test]
fn retries_exhausted_is_a_transient_failure() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    bus.subscribe_with(
        "down.op",
        |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("down")) },
        SubscribeOptions::new()
            .name("downstream")
            .retry(RetryPolicy::immediate(2)),
    )
    .unwrap();
    let dlq = bus.dead_letters();
    let d = bus
        .publisher()
        .publish_tracked(event("down.op", 1))
        .unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (1, 0));
    assert_eq!(o.failed.len(), 1);
    assert!(o.failed[0].transient);
    assert_eq!(o.failed[0].handler, "downstream");
    assert_eq!(dlq.len(), 1, "dead-lettered when the retries ran out");
    bus.shutdown().unwrap();
}

#[test]
fn an_event_no_handler_takes_completes_at_dispatch() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    bus.subscribe("other.thing", ok).unwrap();
    let d = bus
        .publisher()
        .publish_tracked(event("nobody.listens", 1))
        .unwrap();
    let o = outcome(&d);
    assert_eq!(
        o,
        DeliveryOutcome {
            dispatched: true,
            handlers: 0,
            succeeded: 0,
            failed: Vec::new()
        }
    );
    bus.shutdown().unwrap();
}

#[test]
fn a_panicking_handler_is_a_failure() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let sub = bus
        .subscribe("boom.x", |_: &Event<u64>| -> Result<(), HandlerError> {
            panic!("kaboom")
        })
        .unwrap();
    bus.subscribe("boom.x", ok).unwrap();
    let d = bus.publisher().publish_tracked(event("boom.x", 1)).unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (2, 1));
    assert_eq!(o.failed[0].subscription, sub);
    assert_eq!(
        o.failed[0].handler, "boom.x",
        "a closure is named by its pattern"
    );
    assert!(
        o.failed[0].message.contains("kaboom"),
        "{}",
        o.failed[0].message
    );
    assert!(!o.failed[0].transient);
    bus.shutdown().unwrap();
}

#[test]
fn on_done_runs_once_with_the_outcome() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let (handler, entered, release) = gate();
    bus.subscribe("gated.x", handler).unwrap();
    let d = bus
        .publisher()
        .publish_tracked(event("gated.x", 1))
        .unwrap();
    entered.recv_timeout(LONG).unwrap();
    assert!(!d.is_done(), "the handler is still inside");
    let runs = Arc::new(Mutex::new(Vec::new()));
    let r = runs.clone();
    // Registered before completion: runs on the thread that completes.
    d.on_done(move |o| r.lock().unwrap().push(o));
    release.send(()).unwrap();
    wait_for(30, "on_done ran", || !runs.lock().unwrap().is_empty());
    // Registered after completion: runs at once, here.
    let d2 = bus
        .publisher()
        .publish_tracked(event("gated.x", 2))
        .unwrap();
    release.send(()).unwrap();
    outcome(&d2);
    let here = Arc::new(AtomicU32::new(0));
    let h = here.clone();
    d2.on_done(move |o| {
        assert_eq!(o.succeeded, 1);
        h.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(
        here.load(Ordering::SeqCst),
        1,
        "ran before on_done returned"
    );
    bus.shutdown().unwrap();
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 1, "exactly once");
    assert_eq!((runs[0].handlers, runs[0].succeeded), (1, 1));
}

#[test]
fn a_panicking_on_done_does_not_hurt_the_bus() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let seen = log();
    let (handler, entered, release) = gate();
    bus.subscribe("gated.x", handler).unwrap();
    bus.subscribe("after.x", recorder(&seen, |e: &Event<u64>| e.data))
        .unwrap();
    let mut p = bus.publisher();
    let d = p.publish_tracked(event("gated.x", 1)).unwrap();
    entered.recv_timeout(LONG).unwrap();
    d.on_done(|_| panic!("callback bug"));
    release.send(()).unwrap();
    // The bus goes on: later events are delivered, and tracked ones complete.
    p.publish(event("after.x", 2)).unwrap();
    let d = p.publish_tracked(event("after.x", 3)).unwrap();
    assert_eq!(outcome(&d).succeeded, 1);
    let report = bus.shutdown().unwrap();
    assert_eq!(*seen.lock().unwrap(), [2, 3]);
    assert_eq!(report.counters.delivered, 3);
    assert_eq!(report.counters.failed, 0);
}

#[test]
fn wait_timeout_returns_none_while_a_handler_is_blocked() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let (handler, entered, release) = gate();
    bus.subscribe("gated.x", handler).unwrap();
    let d = bus
        .publisher()
        .publish_tracked(event("gated.x", 1))
        .unwrap();
    entered.recv_timeout(LONG).unwrap();
    assert_eq!(d.wait_timeout(Duration::from_millis(20)), None);
    assert!(!d.is_done());
    release.send(()).unwrap();
    assert_eq!(d.wait().succeeded, 1);
    bus.shutdown().unwrap();
}

#[test]
fn shutdown_completes_a_tracked_event_in_flight() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let (handler, entered, release) = gate();
    bus.subscribe("gated.x", handler).unwrap();
    let mut p = bus.publisher();
    let first = p.publish_tracked(event("gated.x", 1)).unwrap();
    entered.recv_timeout(LONG).unwrap();
    // Accepted before the shutdown, still in the ring when it starts.
    let second = p.publish_tracked(event("gated.x", 2)).unwrap();
    let stopper = std::thread::spawn(move || bus.shutdown().unwrap());
    wait_for(30, "the shutdown closed the ring", || p.is_closed());
    release.send(()).unwrap();
    release.send(()).unwrap();
    let report = stopper.join().unwrap();
    assert_eq!(first.wait().succeeded, 1);
    assert_eq!(second.wait().succeeded, 1, "drained by the shutdown");
    assert_eq!(report.counters.delivered, 2);
    // Refused after the shutdown: the event comes back.
    match p.publish_tracked(event("gated.x", 3)) {
        Err(PublishError::Closed(e)) => assert_eq!(e.data, 3),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[test]
fn single_producer_refused_after_shutdown_returns_the_event() {
    let (bus, mut p) = BusBuilder::<u64>::new().single_producer().build().unwrap();
    bus.subscribe("x.y", ok).unwrap();
    bus.shutdown().unwrap();
    match p.publish_tracked(event("x.y", 9)) {
        Err(PublishError::Closed(e)) => assert_eq!(e.data, 9),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[test]
fn shutdown_completes_an_event_waiting_for_a_retry() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock)
        .retry_drain_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let sub = bus
        .subscribe_with(
            "slow.x",
            |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("later")) },
            SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(3600), 3)),
        )
        .unwrap();
    let d = bus.publisher().publish_tracked(event("slow.x", 1)).unwrap();
    wait_for(30, "the retry scheduled", || {
        bus.metrics()
            .handler(sub, 0)
            .is_some_and(|h| h.retries == 1)
    });
    assert!(!d.is_done(), "waiting for its retry");
    bus.shutdown().unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (1, 0));
    assert_eq!(o.failed[0].subscription, sub);
    assert!(
        o.failed[0].message.contains("shutdown"),
        "{}",
        o.failed[0].message
    );
}

#[test]
fn unsubscribing_a_handler_while_the_event_waits_for_a_retry_completes_it() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new().clock(clock).build().unwrap();
    let sub = bus
        .subscribe_with(
            "slow.x",
            |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("later")) },
            SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(3600), 3)),
        )
        .unwrap();
    bus.subscribe("slow.x", ok).unwrap();
    let d = bus.publisher().publish_tracked(event("slow.x", 1)).unwrap();
    wait_for(30, "the retry scheduled", || {
        bus.metrics()
            .handler(sub, 0)
            .is_some_and(|h| h.retries == 1)
    });
    assert!(!d.is_done());
    bus.unsubscribe(sub).unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (2, 1));
    assert_eq!(o.failed.len(), 1);
    assert_eq!(o.failed[0].subscription, sub);
    assert!(
        o.failed[0].message.contains("unsubscribed"),
        "{}",
        o.failed[0].message
    );
    bus.shutdown().unwrap();
}

#[test]
fn an_event_pushed_out_of_a_full_retry_queue_completes_as_failed() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new().clock(clock).build().unwrap();
    let sub = bus
        .subscribe_with(
            "slow.x",
            |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("later")) },
            SubscribeOptions::new()
                .retry(RetryPolicy::fixed(Duration::from_secs(3600), 3))
                .max_pending(1),
        )
        .unwrap();
    let dlq = bus.dead_letters();
    let mut p = bus.publisher();
    let first = p.publish_tracked(event("slow.x", 1)).unwrap();
    let second = p.publish_tracked(event("slow.x", 2)).unwrap();
    let o = outcome(&first);
    assert_eq!((o.handlers, o.succeeded), (1, 0));
    assert_eq!(o.failed[0].subscription, sub);
    assert!(
        o.failed[0].message.contains("max_pending"),
        "{}",
        o.failed[0].message
    );
    assert_eq!(dlq.len(), 1, "completed after the letter was queued");
    assert!(!second.is_done(), "still waiting for its retry");
    bus.shutdown().unwrap();
    assert_eq!(outcome(&second).failed.len(), 1);
}

#[test]
fn a_partitioned_subscription_counts_once() {
    struct Ok;
    impl ringbus::Handler<u64> for Ok {
        fn handle(&mut self, _: &Event<u64>) -> Result<(), HandlerError> {
            Result::Ok(())
        }
    }
    let bus = BusBuilder::<u64>::new().build().unwrap();
    bus.subscribe_partitioned("part.x", 4, |_| Ok).unwrap();
    let mut p = bus.publisher();
    for i in 0..8 {
        let e = event("part.x", i).with_subject(format!("s{i}"));
        let o = outcome(&p.publish_tracked(e).unwrap());
        assert_eq!((o.handlers, o.succeeded), (1, 1));
    }
    bus.shutdown().unwrap();
}

#[test]
fn a_follow_up_published_tracked_from_a_handler_completes() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut inner = bus.publisher();
    bus.subscribe(
        "root.x",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            let d = inner.publish_tracked(event("child.x", e.data)).unwrap();
            tx.lock().unwrap().send(d).unwrap();
            Ok(())
        },
    )
    .unwrap();
    let seen = log();
    bus.subscribe("child.x", recorder(&seen, |e: &Event<u64>| e.data))
        .unwrap();
    bus.subscribe("child.*", ok).unwrap();
    bus.publisher().publish(event("root.x", 5)).unwrap();
    let d = rx.recv_timeout(LONG).unwrap();
    let o = outcome(&d);
    assert_eq!((o.handlers, o.succeeded), (2, 2));
    assert_eq!(*seen.lock().unwrap(), [5]);
    bus.shutdown().unwrap();
}

fn mixed<M: ProducerMode>(bus: Bus<u64, M>, mut p: Publisher<u64, M>) {
    let seen = log();
    let n = 500u64;
    bus.subscribe("mix.x", recorder(&seen, |e: &Event<u64>| e.data))
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..n {
        if i % 50 == 0 {
            deliveries.push((i, p.publish_tracked(event("mix.x", i)).unwrap()));
        } else {
            p.publish(event("mix.x", i)).unwrap();
        }
    }
    for (i, d) in &deliveries {
        assert_eq!(outcome(d).succeeded, 1, "tracked event {i}");
    }
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.published, n);
    assert_eq!(report.counters.delivered, n);
    assert_eq!(*seen.lock().unwrap(), (0..n).collect::<Vec<_>>());
}

#[test]
fn untracked_publishes_are_unaffected() {
    let bus = BusBuilder::<u64>::new().capacity(8).build().unwrap();
    let p = bus.publisher();
    mixed(bus, p);
    let (bus, p) = BusBuilder::<u64>::new()
        .single_producer()
        .capacity(8)
        .build()
        .unwrap();
    mixed(bus, p);
}

/// A gated handler that counts the calls it finished.
fn counted_gate() -> (Gate, Arc<AtomicU32>) {
    let (mut handler, entered, release) = gate();
    let finished = Arc::new(AtomicU32::new(0));
    let f = finished.clone();
    let counted = move |e: &Event<u64>| -> Result<(), HandlerError> {
        let r = handler(e);
        f.fetch_add(1, Ordering::SeqCst);
        r
    };
    ((Box::new(counted), entered, release), finished)
}

#[test]
fn shutdown_timeout_completes_every_delivery_a_stuck_handler_holds_up() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let ((handler, entered, release), finished) = counted_gate();
    let stuck = bus
        .subscribe_with("gated.x", handler, SubscribeOptions::new().name("stuck"))
        .unwrap();
    let mut p = bus.publisher();
    let held = p.publish_tracked(event("gated.x", 1)).unwrap();
    entered.recv_timeout(LONG).unwrap();
    // Accepted, and still in the ring behind the stuck handler.
    let behind = p.publish_tracked(event("gated.x", 2)).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    p.publish_tracked(event("gated.x", 3))
        .unwrap()
        .on_done(move |o| {
            assert!(!o.dispatched);
            c.fetch_add(1, Ordering::SeqCst);
        });
    let report = bus.shutdown_timeout(Duration::from_millis(50)).unwrap();
    assert!(!report.completed);

    // The bus gave up: every delivery completed, none as a success.
    let o = outcome(&held);
    assert!(o.dispatched);
    assert_eq!((o.handlers, o.succeeded), (1, 0));
    assert_eq!(o.failed.len(), 1, "the stuck handler still held it");
    assert_eq!(o.failed[0].subscription, stuck);
    assert_eq!(o.failed[0].handler, "stuck");
    assert!(!o.failed[0].transient);
    assert!(
        o.failed[0].message.contains("shut down"),
        "{}",
        o.failed[0].message
    );
    assert!(!o.is_success());
    let b = outcome(&behind);
    assert_eq!(
        b,
        DeliveryOutcome {
            dispatched: false,
            handlers: 0,
            succeeded: 0,
            failed: Vec::new()
        }
    );
    assert!(!b.is_success(), "never dispatched is no success");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The handler comes back; the dispatcher finishes in the background and
    // hands it the other two events. The outcomes stay as they were.
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    wait_for(30, "the handler ran all three events", || {
        finished.load(Ordering::SeqCst) == 3
    });
    assert_eq!(held.wait(), o, "completed once");
    assert_eq!(behind.wait(), b);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "on_done ran once");
}

#[test]
fn a_tracked_follow_up_behind_a_stuck_handler_completes_as_not_dispatched() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let (mut gated, entered, release) = gate();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut inner = bus.publisher();
    bus.subscribe(
        "root.x",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            let d = inner.publish_tracked(event("child.x", e.data)).unwrap();
            tx.lock().unwrap().send(d).unwrap();
            // Stuck after publishing: the follow-up waits in its queue.
            gated(e)
        },
    )
    .unwrap();
    bus.subscribe("child.x", ok).unwrap();
    bus.publisher().publish(event("root.x", 1)).unwrap();
    entered.recv_timeout(LONG).unwrap();
    let child = rx.recv_timeout(LONG).unwrap();
    let report = bus.shutdown_timeout(Duration::from_millis(50)).unwrap();
    assert!(!report.completed);
    let o = outcome(&child);
    assert!(!o.dispatched && !o.is_success());
    assert_eq!((o.handlers, o.succeeded, o.failed.len()), (0, 0, 0));
    release.send(()).unwrap();
}

#[test]
fn with_dead_letter_failures_a_plain_failure_completes_after_its_letter_is_queued() {
    let bus = BusBuilder::<u64>::new()
        .dead_letter_failures(true)
        .build()
        .unwrap();
    let (mut gated, entered, release) = gate();
    bus.subscribe(
        "pay.card",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            gated(e)?;
            Err(HandlerError::permanent("declined"))
        },
    )
    .unwrap();
    let dlq = bus.dead_letters();
    let d = bus
        .publisher()
        .publish_tracked(event("pay.card", 1))
        .unwrap();
    entered.recv_timeout(LONG).unwrap();
    // Runs on the completing thread, at completion: the letter must be there.
    let (tx, rx) = mpsc::channel();
    let letters = dlq.clone();
    d.on_done(move |o| tx.send((o, letters.len())).unwrap());
    release.send(()).unwrap();
    let (o, queued) = rx.recv_timeout(LONG).unwrap();
    // A plain subscription (no retry policy): the dispatcher copies the event.
    assert_eq!(queued, 1, "completed after the dead letter was queued");
    assert_eq!((o.handlers, o.succeeded), (1, 0));
    assert!(
        o.failed[0].message.contains("declined"),
        "{}",
        o.failed[0].message
    );
    bus.shutdown().unwrap();
}

/// A payload whose `Drop` panics (user code run by the bus).
#[derive(Clone, Debug)]
struct Bomb(u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("payload drop {}", self.0);
        }
    }
}

/// Publishes tracked events through `p`; with `inner`, the handler of each
/// also publishes a tracked follow-up.
fn bomb_paths<M: ProducerMode>(
    bus: Bus<Bomb, M>,
    mut p: Publisher<Bomb, M>,
    mut inner: Option<Publisher<Bomb, Multi>>,
) {
    let follow_ups = if inner.is_some() { 4 } else { 0 };
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    bus.subscribe(
        "bomb.root",
        move |e: &Event<Bomb>| -> Result<(), HandlerError> {
            let Some(inner) = inner.as_mut() else {
                return Ok(());
            };
            let d = inner
                .publish_tracked(Event::new(
                    ringbus::EventType::new("bomb.child"),
                    ringbus::Source::new("test"),
                    Bomb(e.data.0 + 100),
                ))
                .unwrap();
            tx.lock().unwrap().send(d).unwrap();
            Ok(())
        },
    )
    .unwrap();
    bus.subscribe("bomb.*", |e: &Event<Bomb>| -> Result<(), HandlerError> {
        if e.data.0 % 2 == 1 {
            panic!("handler {}", e.data.0)
        }
        Ok(())
    })
    .unwrap();
    let on_done_ran = Arc::new(AtomicBool::new(false));
    let mut all = Vec::new();
    for i in 0..4u64 {
        let e = Event::new(
            ringbus::EventType::new("bomb.root"),
            ringbus::Source::new("test"),
            Bomb(i),
        );
        all.push((i, p.publish_tracked(e).unwrap()));
    }
    for (i, d) in all {
        let o = outcome(&d);
        assert!(o.dispatched);
        assert_eq!(o.handlers, 2, "event {i}");
        assert_eq!(o.failed.len(), (i % 2) as usize, "event {i}: {o:?}");
        let flag = on_done_ran.clone();
        d.on_done(move |_| {
            flag.store(true, Ordering::SeqCst);
            panic!("on_done bug");
        });
    }
    for _ in 0..follow_ups {
        let child = rx.recv_timeout(LONG).unwrap();
        let flag = on_done_ran.clone();
        let o = outcome(&child);
        assert!(o.dispatched && o.handlers == 1);
        child.on_done(move |_| {
            flag.store(true, Ordering::SeqCst);
            panic!("on_done bug");
        });
    }
    assert!(on_done_ran.load(Ordering::SeqCst));
    bus.shutdown().unwrap();
}

/// Every way of publishing tracked completes, through a panicking handler, a
/// payload whose `Drop` panics and an `on_done` that panics.
#[test]
fn tracked_publishes_complete_through_panics_in_user_code() {
    let bus = BusBuilder::<Bomb>::new().build().unwrap();
    let (p, inner) = (bus.publisher(), bus.publisher());
    bomb_paths(bus, p, Some(inner));
    let (bus, p) = BusBuilder::<Bomb>::new().single_producer().build().unwrap();
    bomb_paths(bus, p, None);
}
