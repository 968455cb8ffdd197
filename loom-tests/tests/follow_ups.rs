//! Loom models of the follow-up hand-off: handlers publishing from inside the
//! bus while the dispatcher takes, dispatches and finally closes the queue —
//! through the real `Bus` (inline execution: handlers run on the dispatcher's
//! loom thread) and on the queue itself (handler threads racing the take).
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringbus::loom_api::FollowUpQueue;
use ringbus::{BusBuilder, Event, EventType, Execution, HandlerError, Source, WaitStrategy};

fn ev(name: &str, i: u64) -> Event<u64> {
    Event::new(EventType::new(name), Source::new("loom"), i)
}

/// A handler publishing a follow-up for every event while a producer keeps
/// the ring (capacity 2) full: no deadlock in any interleaving, and every
/// accepted root yields exactly one delivered follow-up, even when shutdown
/// races the producer.
#[test]
fn follow_ups_with_a_full_ring_and_a_racing_shutdown() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let roots = Arc::new(AtomicUsize::new(0));
        let follow = Arc::new(AtomicUsize::new(0));
        let (r, mut p) = (roots.clone(), bus.publisher());
        bus.subscribe(
            "loom.a",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                r.fetch_add(1, Ordering::Relaxed);
                p.publish(ev("loom.b", e.data))
                    .expect("a follow-up is accepted until quiescence");
                Ok(())
            },
        )
        .unwrap();
        let f = follow.clone();
        bus.subscribe(
            "loom.b",
            move |_e: &Event<u64>| -> Result<(), HandlerError> {
                f.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = 0;
            for i in 0..3 {
                if p.publish(ev("loom.a", i)).is_ok() {
                    ok += 1;
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        assert_eq!(roots.load(Ordering::Relaxed), ok);
        assert_eq!(follow.load(Ordering::Relaxed), ok);
        assert_eq!(report.counters.follow_ups, ok as u64);
    });
}

/// `flush` racing the chain: when it returns, the follow-up of the event
/// published before it has been handled.
#[test]
fn flush_waits_for_the_follow_up() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let follow = Arc::new(AtomicUsize::new(0));
        let mut p = bus.publisher();
        bus.subscribe(
            "loom.a",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                p.publish(ev("loom.b", e.data)).unwrap();
                Ok(())
            },
        )
        .unwrap();
        let f = follow.clone();
        bus.subscribe(
            "loom.b",
            move |_e: &Event<u64>| -> Result<(), HandlerError> {
                f.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
        bus.publisher().publish(ev("loom.a", 1)).unwrap();
        bus.flush().unwrap();
        assert_eq!(follow.load(Ordering::Relaxed), 1);
        bus.shutdown().unwrap();
    });
}

/// Two handler threads push while the dispatcher takes and then closes: every
/// value pushed with `Ok` is taken exactly once (by a take or by the close),
/// each pusher's values in its order; a refused value comes back.
#[test]
fn pushes_race_take_and_close() {
    loom::model(|| {
        let q = Arc::new(FollowUpQueue::new(8));
        let pushers: Vec<_> = (0..2u64)
            .map(|t| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut ok = Vec::new();
                    for k in 0..2 {
                        let v = t * 10 + k;
                        match q.push(v) {
                            Ok(()) => ok.push(v),
                            Err(back) => assert_eq!(back, v),
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut taken = q.take();
        taken.extend(q.close());
        let pushed: Vec<Vec<u64>> = pushers.into_iter().map(|h| h.join().unwrap()).collect();
        let mut want: Vec<u64> = pushed.concat();
        let mut got = taken.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "every accepted value taken exactly once");
        for t in 0..2u64 {
            let mine: Vec<u64> = taken.iter().copied().filter(|v| v / 10 == t).collect();
            assert_eq!(mine, pushed[t as usize], "per-pusher order kept");
        }
        assert!(!q.is_pending());
        assert!(q.push(99).is_err(), "refused after close");
    });
}

/// The limit holds under concurrent pushes: never more than `limit` queued.
#[test]
fn limit_holds_under_racing_pushes() {
    loom::model(|| {
        let q = Arc::new(FollowUpQueue::new(1));
        let a = {
            let q = q.clone();
            thread::spawn(move || q.push(1).is_ok())
        };
        let b = q.push(2).is_ok();
        let a = a.join().unwrap();
        assert!(a ^ b, "exactly one of two pushes fits a limit of 1");
        assert_eq!(q.take().len(), 1);
    });
}
