//! Loom models through the real `Bus`: the dispatcher runs on a loom thread
//! (inline execution), so shutdown, control messages and parking are the shipped
//! code paths.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringbus::{Bus, Event, EventType, Execution, HandlerError, Source, WaitStrategy};

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
        let bus = Bus::<u64>::builder()
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
        assert_eq!(report.published, ok as u64);
        assert_eq!(count.load(Ordering::Relaxed), ok);
    });
}

/// Same, single-producer mode (publish is a compare-and-swap that loses to close).
#[test]
fn shutdown_races_single_producer() {
    loom::model(|| {
        let (bus, mut p) = Bus::<u64>::builder()
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
        assert_eq!(report.published, ok as u64);
        assert_eq!(count.load(Ordering::Relaxed), ok);
    });
}

/// Runtime subscribe: a control message applied between batches. An event
/// published after `subscribe` returns reaches the new handler; one published
/// concurrently may or may not; nothing is delivered twice.
#[test]
fn runtime_subscribe() {
    loom::model(|| {
        let bus = Bus::<u64>::builder()
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
        assert_eq!(report.published, 2);
        assert_eq!(seen_after.load(Ordering::Relaxed), 1);
        let n = count.load(Ordering::Relaxed);
        assert!(n == 1 || n == 2, "delivered {n}");
    });
}

/// Runtime unsubscribe: once it returns, the handler gets nothing more.
#[test]
fn runtime_unsubscribe() {
    loom::model(|| {
        let bus = Bus::<u64>::builder()
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
