//! Loom models of the dead-letter queue's `Block` policy: a push into a full queue
//! waits, and a concurrent take (or close, or the bus's shutdown) always releases
//! it — no lost wake-up, no letter lost or duplicated.
#![cfg(loom)]

use loom::thread;
use ringbus::resilience::{DeadLetterQueue, DlqFilter, DlqFullPolicy};
use ringbus::{
    Bus, BusBuilder, DeadLetters, Event, EventType, Execution, HandlerError, Source,
    SubscribeOptions, SubscriptionId, WaitStrategy,
};

fn ev(i: u64) -> Event<u64> {
    Event::new(EventType::new("loom.dlq"), Source::new("loom"), i)
}

fn sub() -> SubscriptionId {
    SubscriptionId::from_raw(1)
}

#[test]
fn blocked_push_is_released_by_take() {
    loom::model(|| {
        let dlq = DeadLetterQueue::<u64>::new(1, DlqFullPolicy::Block);
        dlq.push(ev(1), sub(), "h", Vec::new()).unwrap();
        let d = dlq.clone();
        let pusher = thread::spawn(move || d.push(ev(2), sub(), "h", Vec::new()).is_ok());
        let taken = loop {
            let all = dlq.take_matching(&DlqFilter::all());
            if !all.is_empty() {
                break all;
            }
            thread::yield_now();
        };
        assert!(pusher.join().unwrap());
        let mut seen: Vec<u64> = taken.into_iter().map(|l| l.event.data).collect();
        seen.extend(
            dlq.take_matching(&DlqFilter::all())
                .into_iter()
                .map(|l| l.event.data),
        );
        seen.sort_unstable();
        assert_eq!(seen, [1, 2]);
    });
}

#[test]
fn blocked_push_is_released_by_close() {
    loom::model(|| {
        let dlq = DeadLetterQueue::<u64>::new(1, DlqFullPolicy::Block);
        dlq.push(ev(1), sub(), "h", Vec::new()).unwrap();
        let d = dlq.clone();
        let pusher = thread::spawn(move || d.push(ev(2), sub(), "h", Vec::new()));
        dlq.close();
        let handed_back = pusher.join().unwrap().unwrap_err().into_inner();
        assert_eq!(handed_back.event.data, 2);
        assert_eq!(dlq.len(), 1);
    });
}

/// A bus whose dead-letter queue holds 1 letter under `Block`, with a handler
/// that fails permanently on every event, and two events published: the
/// dispatcher's second dead-letter push finds the queue full.
fn failing_bus_with_full_dlq() -> (Bus<u64>, DeadLetters<u64>) {
    let bus = BusBuilder::<u64>::new()
        .capacity(2)
        .execution(Execution::Inline)
        .wait_strategy(WaitStrategy::Blocking)
        .dead_letter_queue(1, DlqFullPolicy::Block)
        .build()
        .unwrap();
    bus.subscribe_with(
        "loom.dlq",
        |_e: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::permanent("no")) },
        SubscribeOptions::new(),
    )
    .unwrap();
    let letters = bus.dead_letters();
    let mut p = bus.publisher();
    p.publish(ev(1)).unwrap();
    p.publish(ev(2)).unwrap();
    (bus, letters)
}

/// Both letters are in the queue — over its capacity, by design, once shutdown
/// began.
fn check_both_letters(letters: &DeadLetters<u64>) {
    assert_eq!(letters.len(), 2, "over capacity after shutdown began");
    let mut seen: Vec<u64> = letters
        .list(&DlqFilter::all())
        .into_iter()
        .map(|l| letters.get(l.id).unwrap().event.data)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [1, 2]);
}

/// Defect 4, through the real bus: the dispatcher's second dead-letter push
/// waits on the full `Block` queue for room that no reader will make; `shutdown`
/// must release it (the queue stops blocking once shutdown begins and takes
/// letters beyond its capacity), return its report, and leave both letters in
/// the queue.
#[test]
fn shutdown_releases_dispatcher_blocked_on_full_dlq() {
    loom::model(|| {
        let (bus, letters) = failing_bus_with_full_dlq();
        let report = bus.shutdown().unwrap();
        assert_eq!(report.counters.published, 2);
        assert_eq!(report.counters.failed, 2);
        assert_eq!(report.counters.dead_lettered, 2);
        assert!(report.undelivered.is_empty());
        check_both_letters(&letters);
    });
}

/// Same, closing by dropping the last `Bus` (which joins the dispatcher too).
#[test]
fn drop_releases_dispatcher_blocked_on_full_dlq() {
    loom::model(|| {
        let (bus, letters) = failing_bus_with_full_dlq();
        drop(bus);
        check_both_letters(&letters);
    });
}
