//! Loom model of the dead-letter queue's `Block` policy: a push into a full queue
//! waits, and a concurrent take (or close) always releases it — no lost wake-up,
//! no letter lost or duplicated.
#![cfg(loom)]

use loom::thread;
use ringbus::resilience::{DeadLetterQueue, DlqFilter, DlqFullPolicy};
use ringbus::{Event, EventType, Source, SubscriptionId};

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
