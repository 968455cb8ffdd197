//! Loom models through the real `Bus`: the dispatcher runs on a loom thread
//! (inline execution), so shutdown, control messages and parking are the shipped
//! code paths.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringbus::resilience::{DlqFilter, RetryPolicy};
use ringbus::{
    Bus, BusBuilder, Event, EventType, Execution, Handler, HandlerError, Source, SubscribeError,
    SubscribeOptions, WaitStrategy,
};

fn ev(i: u64) -> Event<u64> {
    Event::new(EventType::new("loom.e"), Source::new("loom"), i)
}

fn counting(count: &Arc<AtomicUsize>) -> impl FnMut(&Event<u64>) -> Result<(), HandlerError> {
    let count = count.clone();
    move |_e| {
        count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `shutdown` racing a publisher: every `Ok` publish is delivered exactly once;
/// every refused one comes back to the caller.
#[test]
fn shutdown_races_publish() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        bus.subscribe("loom.e", counting(&count)).unwrap();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = 0;
            for i in 0..2 {
                match p.publish(ev(i)) {
                    Ok(()) => ok += 1,
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        assert_eq!(report.counters.published, ok as u64);
        assert_eq!(count.load(Ordering::Relaxed), ok);
    });
}

/// Same, single-producer mode (publish is a compare-and-swap that loses to close).
#[test]
fn shutdown_races_single_producer() {
    loom::model(|| {
        let (bus, mut p) = BusBuilder::<u64>::new()
            .single_producer()
            .capacity(2)
            .execution(Execution::Inline)
            .build()
            .unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        bus.subscribe("loom.e", counting(&count)).unwrap();
        let producer = thread::spawn(move || {
            let mut ok = 0;
            for i in 0..2 {
                if p.publish(ev(i)).is_ok() {
                    ok += 1;
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        assert_eq!(report.counters.published, ok as u64);
        assert_eq!(count.load(Ordering::Relaxed), ok);
    });
}

/// Runtime subscribe: a control message applied between batches. An event
/// published after `subscribe` returns reaches the new handler; one published
/// concurrently may or may not; nothing is delivered twice.
#[test]
fn runtime_subscribe() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .build()
            .unwrap();
        let mut p = bus.publisher();
        let mut p2 = bus.publisher();
        let concurrent = thread::spawn(move || p2.publish(ev(0)).unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen_after = Arc::new(AtomicUsize::new(0));
        let (c, s) = (count.clone(), seen_after.clone());
        bus.subscribe(
            "loom.e",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                c.fetch_add(1, Ordering::Relaxed);
                if e.data == 1 {
                    s.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .unwrap();
        p.publish(ev(1)).unwrap();
        concurrent.join().unwrap();
        let report = bus.shutdown().unwrap();
        assert_eq!(report.counters.published, 2);
        assert_eq!(seen_after.load(Ordering::Relaxed), 1);
        let n = count.load(Ordering::Relaxed);
        assert!(n == 1 || n == 2, "delivered {n}");
    });
}

/// Runtime unsubscribe: once it returns, the handler gets nothing more.
#[test]
fn runtime_unsubscribe() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .build()
            .unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let id = bus.subscribe("loom.e", counting(&count)).unwrap();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || p.publish(ev(0)).unwrap());
        bus.unsubscribe(id).unwrap();
        let at = count.load(Ordering::Relaxed);
        producer.join().unwrap();
        bus.shutdown().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), at);
    });
}

/// What the handler of [`values_bus`] was given.
type Values = Arc<loom::sync::Mutex<Vec<u64>>>;

/// A multi-producer bus of capacity 2 whose one handler records every value.
fn values_bus() -> (Bus<u64>, Values) {
    let bus = BusBuilder::<u64>::new()
        .capacity(2)
        .execution(Execution::Inline)
        .wait_strategy(WaitStrategy::Blocking)
        .build()
        .unwrap();
    let values: Values = Arc::default();
    let v = values.clone();
    bus.subscribe(
        "loom.e",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            v.lock().unwrap().push(e.data);
            Ok(())
        },
    )
    .unwrap();
    (bus, values)
}

/// Checks a shutdown report against the values whose publish returned `Ok`:
/// each delivered exactly once, in publish order (one publisher), nothing else.
fn check_delivered(report: &ringbus::ShutdownReport, values: &Values, ok: &[u64]) {
    assert_eq!(report.counters.published, ok.len() as u64);
    assert_eq!(report.counters.dispatched, ok.len() as u64);
    assert_eq!(*values.lock().unwrap(), ok);
}

/// `shutdown` racing `publish_with` (multi producer): the closure runs after the
/// claim; an `Ok` is delivered exactly once, a refusal hands back the event the
/// closure made.
#[test]
fn shutdown_races_publish_with() {
    loom::model(|| {
        let (bus, values) = values_bus();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..2 {
                match p.publish_with(|| ev(i)) {
                    Ok(()) => ok.push(i),
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// `shutdown` racing `publish_batch` of 2 on a ring of 2 (one claim of both
/// slots), twice — the second batch waits for the ring to wrap. The events of an
/// `Ok` batch are delivered exactly once; a refused batch reports how many it
/// published and hands back the events it took but did not publish, in order;
/// the rest stay in the iterator (passed `by_ref`).
#[test]
fn shutdown_races_publish_batch() {
    loom::model(|| {
        let (bus, values) = values_bus();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for b in 0..2u64 {
                let batch = [2 * b, 2 * b + 1];
                let mut events = batch.map(ev).into_iter();
                match p.publish_batch(events.by_ref()) {
                    Ok(()) => ok.extend(batch),
                    Err(e) => {
                        // Handed back: the events taken but not published, then
                        // what the iterator still holds (it is not drained).
                        let back: Vec<u64> = e
                            .unpublished
                            .iter()
                            .chain(events.as_slice())
                            .map(|e| e.data)
                            .collect();
                        assert_eq!(back, batch[e.published..]);
                        ok.extend(&batch[..e.published]);
                    }
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// `shutdown` racing `try_publish` (multi producer, compare-and-swap claim) on a
/// ring of 2, three times: an `Ok` is delivered exactly once; `Full` and
/// `Closed` hand the event back.
#[test]
fn shutdown_races_try_publish() {
    loom::model(|| {
        let (bus, values) = values_bus();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..3 {
                match p.try_publish(ev(i)) {
                    Ok(()) => ok.push(i),
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// A multi producer publishing 3 events on a ring of 2 while `shutdown` runs:
/// the third publish may wait for space on a full ring. A claim made before the
/// close is below `closed_at`, so the dispatcher frees the slot and delivers it
/// before it exits; one made after fails at once. Either way the publisher is
/// released (no deadlock), every `Ok` is delivered exactly once, every refusal
/// hands back its event.
#[test]
fn shutdown_releases_producer_waiting_on_full_ring() {
    loom::model(|| {
        let (bus, values) = values_bus();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..3 {
                match p.publish(ev(i)) {
                    Ok(()) => ok.push(i),
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// Same, single producer: its wait for space ends as soon as the ring is closed
/// (its publish can only fail then), handing the event back.
#[test]
fn shutdown_releases_single_producer_waiting_on_full_ring() {
    loom::model(|| {
        let (bus, mut p) = BusBuilder::<u64>::new()
            .single_producer()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        let values: Values = Arc::default();
        let v = values.clone();
        bus.subscribe(
            "loom.e",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                v.lock().unwrap().push(e.data);
                Ok(())
            },
        )
        .unwrap();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..3 {
                match p.publish(ev(i)) {
                    Ok(()) => ok.push(i),
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// Defect 8 through the real `Publisher`: two publishes fill the ring of 2, then
/// a `publish_timeout` with a zero timeout (multi producer: `fetch_add` claim,
/// abandoned on timeout) races `shutdown`. A timed-out or refused publish hands
/// its event back; the dispatcher skips the abandoned sequence instead of waiting
/// for it, so shutdown returns, and the report counts only the `Ok` publishes,
/// each delivered exactly once.
#[test]
fn shutdown_races_publish_timeout() {
    loom::model(|| {
        let (bus, values) = values_bus();
        let mut p = bus.publisher();
        let producer = thread::spawn(move || {
            let mut ok = Vec::new();
            for i in 0..2 {
                match p.publish(ev(i)) {
                    Ok(()) => ok.push(i),
                    Err(e) => assert_eq!(e.into_inner().data, i),
                }
            }
            match p.publish_timeout(ev(2), std::time::Duration::ZERO) {
                Ok(()) => ok.push(2),
                Err(e) => assert_eq!(e.into_inner().data, 2),
            }
            ok
        });
        let report = bus.shutdown().unwrap();
        let ok = producer.join().unwrap();
        check_delivered(&report, &values, &ok);
    });
}

/// `DeadLetters::redrive` racing `shutdown` (a `DeadLetters` handle outlives the
/// bus, so its control message can really arrive while the dispatcher exits).
/// Event 7 fails permanently on its first call (no retries) and is dead-lettered;
/// then a thread redrives that letter while main shuts the bus down. Nothing
/// hangs, and exactly one of:
/// - `Ok(true)`: the dispatcher took the letter out and the handler got the
///   event once more (or, had the retry drain deadline passed, it is listed in
///   the report's `undelivered` and back in the dead-letter queue);
/// - `Err(Closed)`: the letter is still in the queue under the same id, and the
///   handler did not get the event again.
///
/// Never lost, never delivered twice.
#[test]
fn redrive_races_shutdown() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .build()
            .unwrap();
        // Calls the handler got (all with event 7).
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut failed_once = false;
        bus.subscribe_with(
            "loom.e",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                assert_eq!(e.data, 7);
                c.fetch_add(1, Ordering::Relaxed);
                if !failed_once {
                    failed_once = true;
                    return Err(HandlerError::permanent("first call"));
                }
                Ok(())
            },
            SubscribeOptions::new().retry(RetryPolicy::none()),
        )
        .unwrap();
        let letters = bus.dead_letters();
        let event = ev(7);
        let event_id = event.id;
        bus.publisher().publish(event).unwrap();
        while letters.len() != 1 {
            thread::yield_now();
        }
        let listed = letters.list(&DlqFilter::all());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].event_id, event_id);
        let id = listed[0].id;
        let l = letters.clone();
        let redriver = thread::spawn(move || l.redrive(id));
        let report = bus.shutdown().unwrap();
        let redriven = redriver.join().unwrap();
        let calls = calls.load(Ordering::Relaxed);
        assert_eq!(report.counters.published, 1);
        assert_eq!(report.counters.failed, 1, "only the first call fails");
        assert_eq!(
            report.counters.dead_lettered,
            1 + report.undelivered.len() as u64,
            "the first failure, plus any redriven event left undelivered"
        );
        let in_queue: Vec<_> = letters
            .list(&DlqFilter::all())
            .into_iter()
            .map(|l| (l.id, l.event_id))
            .collect();
        match redriven {
            Ok(true) if report.undelivered.is_empty() => {
                assert_eq!(calls, 2, "a redriven event is delivered once more");
                assert_eq!(report.counters.delivered, 1);
                assert!(in_queue.is_empty(), "taken out, delivered: {in_queue:?}");
            }
            Ok(true) => {
                assert_eq!(calls, 1, "undelivered, yet the handler got it");
                assert_eq!(report.counters.delivered, 0);
                let undelivered: Vec<_> = report.undelivered.iter().map(|u| u.event_id).collect();
                assert_eq!(undelivered, [event_id]);
                assert_eq!(in_queue.len(), 1, "undelivered goes back to the queue");
                assert_eq!(in_queue[0].1, event_id);
            }
            Err(SubscribeError::Closed) => {
                assert_eq!(calls, 1, "a refused redrive delivered the event");
                assert_eq!(report.counters.delivered, 0);
                assert!(report.undelivered.is_empty());
                assert_eq!(in_queue, [(id, event_id)], "left where it was, same id");
            }
            other => panic!("redrive returned {other:?}"),
        }
    });
}

/// What a [`Hooks`] handler saw: how many times each hook ran.
#[derive(Default)]
struct HookCounts {
    started: AtomicUsize,
    shut: AtomicUsize,
}

/// A handler that counts its `on_start` and `on_shutdown` calls.
struct Hooks(Arc<HookCounts>);

impl Handler<u64> for Hooks {
    fn handle(&mut self, _e: &Event<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    fn on_start(&mut self) {
        self.0.started.fetch_add(1, Ordering::Relaxed);
    }

    fn on_shutdown(&mut self) {
        self.0.shut.fetch_add(1, Ordering::Relaxed);
    }
}

/// `subscribe` on one thread racing `shutdown` on main. `subscribe` borrows
/// the `Bus` and `shutdown` consumes it, so main gets the bus back (from an
/// `Arc`, yielding until the subscriber has let go) only after `subscribe`
/// returned: the race left is the dispatcher finishing the subscription (its
/// reply, the rest of that step) against the close and its exit. Never a hang;
/// `Ok` means `on_start` and `on_shutdown` each ran exactly once by the time
/// `shutdown` returns; `Err(Closed)` would mean neither ran.
#[test]
fn subscribe_races_shutdown() {
    loom::model(|| {
        let bus = Arc::new(
            BusBuilder::<u64>::new()
                .capacity(2)
                .execution(Execution::Inline)
                .wait_strategy(WaitStrategy::Blocking)
                .build()
                .unwrap(),
        );
        let counts = Arc::new(HookCounts::default());
        let (b, h) = (bus.clone(), Hooks(counts.clone()));
        let subscriber = thread::spawn(move || b.subscribe_handler("loom.e", h).map(|_| ()));
        let mut bus = bus;
        let bus = loop {
            match Arc::try_unwrap(bus) {
                Ok(bus) => break bus,
                Err(shared) => {
                    bus = shared;
                    thread::yield_now();
                }
            }
        };
        bus.shutdown().unwrap();
        let subscribed = subscriber.join().unwrap();
        let started = counts.started.load(Ordering::Relaxed);
        let shut = counts.shut.load(Ordering::Relaxed);
        match subscribed {
            Ok(()) => assert_eq!((started, shut), (1, 1), "on_start, on_shutdown"),
            Err(SubscribeError::Closed) => assert_eq!((started, shut), (0, 0)),
            Err(e) => panic!("subscribe returned {e:?}"),
        }
    });
}
