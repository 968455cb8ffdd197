//! Loom models of tracked delivery: the countdown of one tracked event racing
//! its completion (no lost and no double completion, the `on_done` callback run
//! exactly once whichever side comes first), the bus forcing a delivery to
//! complete (as `shutdown_timeout` does when it gives up) racing the last
//! handler's release and the dispatcher's routing, and through the real `Bus` an
//! event routed to no handler and one whose handler is unsubscribed while the
//! event waits in its retry queue.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringbus::delivery::DeliveryOutcome;
use ringbus::loom_api::Countdown;
use ringbus::resilience::RetryPolicy;
use ringbus::{
    BusBuilder, Event, EventType, Execution, HandlerError, Source, SubscribeOptions, WaitStrategy,
};

fn ev(name: &str, i: u64) -> Event<u64> {
    Event::new(EventType::new(name), Source::new("loom"), i)
}

/// Two handler instances finish on their own threads while the caller
/// registers `on_done` on a third: the callback runs exactly once, with both
/// outcomes, and `wait` sees the same outcome.
#[test]
fn countdown_races_completion_and_on_done() {
    loom::model(|| {
        let (countdown, delivery) = Countdown::new();
        countdown.arm(2);
        let (a, b) = (countdown.clone(), countdown.clone());
        let ta = thread::spawn(move || a.succeeded(0));
        let tb = thread::spawn(move || b.failed(1, "no"));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(loom::sync::Mutex::new(None));
        let (c, s) = (calls.clone(), seen.clone());
        let observer = thread::spawn(move || {
            delivery.on_done(move |o| {
                c.fetch_add(1, Ordering::Relaxed);
                *s.lock().unwrap() = Some(o);
            });
        });
        ta.join().unwrap();
        tb.join().unwrap();
        observer.join().unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1, "completed exactly once");
        let o = seen.lock().unwrap().take().unwrap();
        assert_eq!((o.handlers, o.succeeded, o.failed.len()), (2, 1, 1));
        assert_eq!(o.failed[0].message, "no");
    });
}

/// `wait` on one thread while the last two holds — the dispatcher's own,
/// dropped by `arm`, and a handler's — go on others: `wait` returns (no lost
/// wake-up) with the full outcome.
#[test]
fn wait_races_the_last_release() {
    loom::model(|| {
        let (countdown, delivery) = Countdown::new();
        let waiter = thread::spawn(move || delivery.wait());
        let handler = countdown.clone();
        countdown.arm(1);
        let t = thread::spawn(move || handler.succeeded(0));
        t.join().unwrap();
        let o = waiter.join().unwrap();
        assert_eq!((o.handlers, o.succeeded), (1, 1));
    });
}

/// The bus forces the delivery (a `shutdown_timeout` giving up) while the two
/// handler instances finish on their own threads and a third registers
/// `on_done`: the delivery completes exactly once, `on_done` runs once, and the
/// outcome accounts for each instance once — succeeded, or failed as still
/// holding the event when the bus gave up.
#[test]
fn forced_completion_races_the_last_release() {
    loom::model(|| {
        let (countdown, delivery) = Countdown::new();
        countdown.arm(2);
        let (a, b, bus) = (countdown.clone(), countdown.clone(), countdown.clone());
        let ta = thread::spawn(move || a.succeeded(0));
        let tb = thread::spawn(move || b.succeeded(1));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(loom::sync::Mutex::new(None));
        let (c, s) = (calls.clone(), seen.clone());
        delivery.on_done(move |o| {
            c.fetch_add(1, Ordering::Relaxed);
            *s.lock().unwrap() = Some(o);
        });
        let observer = countdown.delivery();
        bus.force();
        ta.join().unwrap();
        tb.join().unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1, "completed exactly once");
        let o = seen.lock().unwrap().take().unwrap();
        assert_eq!(observer.wait(), o, "one outcome, never replaced");
        assert!(o.dispatched);
        assert_eq!(o.handlers, 2);
        assert_eq!(o.succeeded as usize + o.failed.len(), 2, "{o:?}");
        for f in &o.failed {
            assert_eq!(f.message, Countdown::forced_message());
            assert!(!f.transient);
        }
        assert_eq!(o.is_success(), o.failed.is_empty());
    });
}

/// The bus forces the delivery while the dispatcher routes the event to one
/// instance that then succeeds, and a waiter waits: `wait` returns (no lost
/// wake-up) with one outcome — not dispatched if the force came first, else
/// the instance succeeded or was still holding the event.
#[test]
fn forced_completion_races_routing() {
    loom::model(|| {
        let (countdown, delivery) = Countdown::new();
        let dispatcher = countdown.clone();
        let waiter = thread::spawn(move || delivery.wait());
        let td = thread::spawn(move || {
            dispatcher.arm(1);
            dispatcher.succeeded(0);
        });
        countdown.force();
        td.join().unwrap();
        let o = waiter.join().unwrap();
        if o.dispatched {
            assert_eq!(o.handlers, 1);
            assert_eq!(o.succeeded as usize + o.failed.len(), 1, "{o:?}");
        } else {
            assert_eq!((o.handlers, o.succeeded, o.failed.len()), (0, 0, 0));
            assert!(!o.is_success());
        }
    });
}

/// Through the real bus: an event no handler takes completes at dispatch, with
/// the producer on its own thread racing the shutdown.
#[test]
fn an_event_routed_nowhere_completes_at_dispatch() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || p.publish_tracked(ev("loom.none", 1)).ok());
        let delivery = producer
            .join()
            .unwrap()
            .expect("published before the shutdown");
        let report = bus.shutdown().unwrap();
        assert_eq!(report.counters.unmatched, 1);
        assert_eq!(
            delivery.wait(),
            DeliveryOutcome {
                handlers: 0,
                succeeded: 0,
                failed: Vec::new(),
                dispatched: true,
            }
        );
    });
}

/// Through the real bus: the event fails at its handler and waits 60 s for a
/// retry; the handler is unsubscribed from another thread while a third waits on
/// the delivery. The unsubscribe dead-letters the waiting event and completes
/// the delivery, once, as a failure.
#[test]
fn unsubscribed_while_waiting_for_a_retry_completes() {
    loom::model(|| {
        let bus = std::sync::Arc::new(
            BusBuilder::<u64>::new()
                .capacity(2)
                .execution(Execution::Inline)
                .wait_strategy(WaitStrategy::Blocking)
                .build()
                .unwrap(),
        );
        let sub = bus
            .subscribe_with(
                "loom.e",
                |_: &Event<u64>| -> Result<(), HandlerError> {
                    Err(HandlerError::transient("not yet"))
                },
                SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(60), 3)),
            )
            .unwrap();
        let delivery = bus.publisher().publish_tracked(ev("loom.e", 1)).unwrap();
        let waiter = thread::spawn(move || delivery.wait());
        let b = bus.clone();
        let unsub = thread::spawn(move || b.unsubscribe(sub).unwrap());
        unsub.join().unwrap();
        let o = waiter.join().unwrap();
        assert_eq!((o.handlers, o.succeeded), (1, 0));
        assert_eq!(o.failed.len(), 1);
        assert!(o.failed[0].message.contains("unsubscribed"));
        let Ok(bus) = std::sync::Arc::try_unwrap(bus) else {
            panic!("the only handle left")
        };
        bus.shutdown().unwrap();
    });
}
