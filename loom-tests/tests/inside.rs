//! Loom models of calls made from inside a bus — a multi-producer `publish_with`
//! closure or `publish_batch` iterator that drops the last `Bus`, and a handler of
//! one bus that subscribes to and drops another. Re-entrancy is tracked per bus
//! (`dispatch::Inside`), so only a call that would wait for itself skips the join.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use ringbus::{
    Bus, BusBuilder, Event, EventType, Execution, Handler, HandlerError, ShutdownError, Source,
    WaitStrategy,
};

fn ev(i: u64) -> Event<u64> {
    Event::new(EventType::new("loom.e"), Source::new("loom"), i)
}

/// What a [`Probe`] saw: the values it was given, in order, and whether its
/// `on_shutdown` ran (after which the dispatcher delivers nothing more).
#[derive(Default)]
struct Seen {
    values: Mutex<Vec<u64>>,
    shut: AtomicBool,
}

impl Seen {
    fn values(&self) -> Vec<u64> {
        self.values.lock().unwrap().clone()
    }

    fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Waits (yielding to the model) until the dispatcher has run `on_shutdown`:
    /// used where nobody joins the dispatcher.
    fn wait_shut(&self) {
        while !self.is_shut() {
            thread::yield_now();
        }
    }
}

struct Probe(Arc<Seen>);

impl Handler<u64> for Probe {
    fn handle(&mut self, e: &Event<u64>) -> Result<(), HandlerError> {
        self.0.values.lock().unwrap().push(e.data);
        Ok(())
    }

    fn on_shutdown(&mut self) {
        self.0.shut.store(true, Ordering::Release);
    }
}

fn bus() -> Bus<u64> {
    BusBuilder::<u64>::new()
        .capacity(2)
        .execution(Execution::Inline)
        .wait_strategy(WaitStrategy::Blocking)
        .build()
        .unwrap()
}

/// Defect 6: a multi-producer `publish_with` whose closure drops the last `Bus`.
/// The closure runs while this thread holds a claimed sequence, which the
/// dispatcher must drain before it can exit, so the drop must close without
/// joining. The publish must not deadlock; its sequence was claimed before the
/// close, so it returns `Ok` and the event is delivered exactly once (the
/// dispatcher stops by itself: we wait for its `on_shutdown`, then count).
/// A second publisher racing the drop is either delivered or handed its event
/// back.
#[test]
fn publish_with_closure_drops_last_bus() {
    loom::model(|| {
        let bus = bus();
        let seen = Arc::new(Seen::default());
        bus.subscribe_handler("loom.e", Probe(seen.clone()))
            .unwrap();
        let mut p = bus.publisher();
        let mut other = bus.publisher();
        let racer = thread::spawn(move || match other.publish(ev(1)) {
            Ok(()) => true,
            Err(e) => {
                assert_eq!(e.into_inner().data, 1);
                false
            }
        });
        let r = p.publish_with(move || {
            drop(bus);
            ev(0)
        });
        assert!(r.is_ok(), "claimed before the close: must be published");
        let racer_ok = racer.join().unwrap();
        seen.wait_shut();
        let mut values = seen.values();
        values.sort_unstable();
        let expect: &[u64] = if racer_ok { &[0, 1] } else { &[0] };
        assert_eq!(values, expect);
        assert!(p.is_closed());
        // Later publishes are refused with their event.
        assert_eq!(p.publish(ev(2)).unwrap_err().into_inner().data, 2);
    });
}

/// Single-producer form: nothing is claimed from the shared ring while the
/// closure runs (the single producer publishes with one compare-and-swap after
/// it), so the drop joins the dispatcher, whose `on_shutdown` has run when the
/// closure returns; the publish then loses to the close and hands the event
/// back. An earlier publish is delivered exactly once.
#[test]
fn single_producer_publish_with_closure_drops_last_bus() {
    loom::model(|| {
        let (bus, mut p) = BusBuilder::<u64>::new()
            .single_producer()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        bus.subscribe_handler("loom.e", Probe(seen.clone()))
            .unwrap();
        p.publish(ev(0)).unwrap();
        let s = seen.clone();
        let r = p.publish_with(move || {
            drop(bus);
            assert!(s.is_shut(), "the drop joined the dispatcher");
            ev(1)
        });
        assert_eq!(r.unwrap_err().into_inner().data, 1);
        assert_eq!(seen.values(), [0]);
    });
}

/// An iterator of `n` events that drops the bus it holds when `next` is called for
/// the `drop_at`-th time (0-based). Its `size_hint` is exact.
struct DropBusIter {
    bus: Option<Bus<u64>>,
    calls: usize,
    drop_at: usize,
    n: u64,
}

impl Iterator for DropBusIter {
    type Item = Event<u64>;

    fn next(&mut self) -> Option<Event<u64>> {
        let k = self.calls;
        self.calls += 1;
        if k == self.drop_at {
            drop(self.bus.take());
        }
        (k < self.n as usize).then(|| ev(k as u64))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.n as usize).saturating_sub(self.calls);
        (left, Some(left))
    }
}

/// Defect 6, batch form: a multi-producer `publish_batch` of 2 on a ring of 2
/// whose iterator drops the last `Bus` in its second `next()` — inside the claim
/// of both sequences. Must not deadlock; the batch was claimed before the close,
/// so it returns `Ok` and both events are delivered exactly once, in order.
#[test]
fn publish_batch_iterator_drops_last_bus() {
    loom::model(|| {
        let bus = bus();
        let seen = Arc::new(Seen::default());
        bus.subscribe_handler("loom.e", Probe(seen.clone()))
            .unwrap();
        let mut p = bus.publisher();
        let iter = DropBusIter {
            bus: Some(bus),
            calls: 0,
            drop_at: 1,
            n: 2,
        };
        let r = p.publish_batch(iter);
        assert!(r.is_ok(), "claimed before the close: must be published");
        seen.wait_shut();
        assert_eq!(seen.values(), [0, 1]);
    });
}

/// The same iterator dropping the bus in its first `next()`, before the batch
/// claims anything (so outside the bus): the drop joins the dispatcher, and the
/// publish is refused with the event taken, which comes back.
#[test]
fn publish_batch_iterator_drops_last_bus_before_claim() {
    loom::model(|| {
        let bus = bus();
        let seen = Arc::new(Seen::default());
        bus.subscribe_handler("loom.e", Probe(seen.clone()))
            .unwrap();
        let mut p = bus.publisher();
        let seen2 = seen.clone();
        let iter = DropBusIter {
            bus: Some(bus),
            calls: 0,
            drop_at: 0,
            n: 2,
        }
        .inspect(move |_| {
            // Called after `next` returned: the drop joined the dispatcher.
            assert!(seen2.is_shut(), "the drop from outside the claim joins");
        });
        let err = p.publish_batch(iter).unwrap_err();
        assert_eq!(err.published, 0);
        let back: Vec<u64> = err.unpublished.iter().map(|e| e.data).collect();
        assert_eq!(back, [0]);
        assert!(seen.values().is_empty());
    });
}

/// Defect 15: two buses A and B. A handler of A subscribes to B — `Ok`, not
/// `FromHandler` (re-entrancy is per bus, not per thread) — publishes one event on
/// B and drops the last handle of B. That drop is not from inside B, so it joins
/// B's dispatcher: when it returns, B's handler has had its event and its
/// `on_shutdown` has run.
#[test]
fn handler_of_one_bus_drops_another() {
    loom::model(|| {
        let a = bus();
        let b = bus();
        let seen_b = Arc::new(Seen::default());
        let after_drop = Arc::new(AtomicUsize::new(0));
        let (s, done) = (seen_b.clone(), after_drop.clone());
        let mut b = Some(b);
        a.subscribe(
            "loom.e",
            move |_e: &Event<u64>| -> Result<(), HandlerError> {
                let Some(b) = b.take() else {
                    return Ok(());
                };
                // Outcome codes: 1 all well, 2 the drop returned before B's
                // dispatcher had finished, 3 the subscribe was refused.
                if b.subscribe_handler("loom.e", Probe(s.clone())).is_err() {
                    done.store(3, Ordering::Release);
                    return Ok(());
                }
                b.publisher().publish(ev(7)).unwrap();
                drop(b);
                let finished = s.is_shut() && s.values() == [7];
                done.store(if finished { 1 } else { 2 }, Ordering::Release);
                Ok(())
            },
        )
        .unwrap();
        a.publisher().publish(ev(0)).unwrap();
        let report = a.shutdown().unwrap();
        assert_eq!(report.counters.delivered, 1);
        match after_drop.load(Ordering::Acquire) {
            1 => {}
            2 => panic!("dropping B from A's handler returned before B's on_shutdown"),
            3 => panic!("B.subscribe from A's handler was refused"),
            n => panic!("A's handler did not run ({n})"),
        }
        assert!(seen_b.is_shut());
        assert_eq!(seen_b.values(), [7]);
    });
}

/// A handler that takes the last `Bus` of its own bus and calls `shutdown`:
/// `Err(FromInside)` (joining would wait for this very call), the bus is closed
/// at once, and the dispatcher still delivers every event whose publish returned
/// `Ok` — exactly once — then stops by itself (we wait for `on_shutdown`).
#[test]
fn handler_shuts_down_its_own_bus() {
    loom::model(|| {
        let bus = bus();
        let seen = Arc::new(Seen::default());
        bus.subscribe_handler("loom.e", Probe(seen.clone()))
            .unwrap();
        let cell: Arc<Mutex<Option<Bus<u64>>>> = Arc::default();
        let outcome = Arc::new(AtomicUsize::new(0));
        let (c, o) = (cell.clone(), outcome.clone());
        bus.subscribe(
            "loom.e",
            move |_e: &Event<u64>| -> Result<(), HandlerError> {
                let taken = c.lock().unwrap().take();
                if let Some(bus) = taken {
                    let r = bus.shutdown();
                    let code = if matches!(r, Err(ShutdownError::FromInside)) {
                        1
                    } else {
                        2
                    };
                    o.store(code, Ordering::Release);
                }
                Ok(())
            },
        )
        .unwrap();
        let mut p = bus.publisher();
        *cell.lock().unwrap() = Some(bus);
        let mut ok = Vec::new();
        for i in 0..2 {
            match p.publish(ev(i)) {
                Ok(()) => ok.push(i),
                Err(e) => assert_eq!(e.into_inner().data, i),
            }
        }
        seen.wait_shut();
        assert_eq!(ok, [0, 1][..ok.len()], "once refused, refused for good");
        assert!(
            !ok.is_empty(),
            "nothing closed the bus before the first event"
        );
        assert_eq!(outcome.load(Ordering::Acquire), 1, "shutdown from inside");
        assert_eq!(seen.values(), ok);
        assert!(p.is_closed());
    });
}
