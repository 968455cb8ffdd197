//! Many producers hammer the real bus; every handler must see every event exactly
//! once, in each producer's order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ringbus::{
    event_type, source, BusBuilder, Event, Execution, Handler, HandlerError, WaitStrategy,
};

/// (producer, per-producer sequence)
type Msg = (u32, u64);

/// Checks exactly-once, in-order delivery per producer; counts violations (a
/// failed assert inside a handler would only be recorded as a handler failure).
struct Checker {
    next: Vec<u64>,
    violations: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
}

impl Handler<Msg> for Checker {
    fn handle(&mut self, e: &Event<Msg>) -> Result<(), HandlerError> {
        let (p, i) = e.data;
        if self.next[p as usize] != i {
            self.violations.fetch_add(1, Ordering::Relaxed);
        }
        self.next[p as usize] = i + 1;
        self.seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn checkers(n: usize, producers: usize) -> Vec<(Checker, Arc<AtomicU64>, Arc<AtomicU64>)> {
    (0..n)
        .map(|_| {
            let v = Arc::new(AtomicU64::new(0));
            let s = Arc::new(AtomicU64::new(0));
            (
                Checker {
                    next: vec![0; producers],
                    violations: v.clone(),
                    seen: s.clone(),
                },
                v,
                s,
            )
        })
        .collect()
}

const PER_PRODUCER: u64 = 1_000_000;

fn run_multi(capacity: usize, wait: WaitStrategy, batch: bool) {
    const PRODUCERS: usize = 4;
    let bus = BusBuilder::<Msg>::new()
        .capacity(capacity)
        .wait_strategy(wait)
        .execution(Execution::Pool { threads: 2 })
        .build()
        .unwrap();
    let mut counters = Vec::new();
    for (c, v, s) in checkers(3, PRODUCERS) {
        bus.subscribe_handler("stress.>", c).unwrap();
        counters.push((v, s));
    }
    std::thread::scope(|scope| {
        for p in 0..PRODUCERS {
            let mut publisher = bus.publisher();
            scope.spawn(move || {
                let ty = event_type!("stress.tick");
                let src = source!("stress");
                if batch {
                    let mut i = 0;
                    while i < PER_PRODUCER {
                        let n = (PER_PRODUCER - i).min(1 + i % 300);
                        let events: Vec<_> = (i..i + n)
                            .map(|k| Event::new(ty, src, (p as u32, k)))
                            .collect();
                        publisher.publish_batch(events).unwrap();
                        i += n;
                    }
                } else {
                    for i in 0..PER_PRODUCER {
                        publisher
                            .publish(Event::new(ty, src, (p as u32, i)))
                            .unwrap();
                    }
                }
            });
        }
    });
    let report = bus.shutdown().unwrap();
    let total = PER_PRODUCER * PRODUCERS as u64;
    assert_eq!(report.counters.published, total);
    assert_eq!(report.counters.dispatched, total);
    assert_eq!(report.counters.delivered, total * 3);
    assert_eq!(report.counters.failed, 0);
    for (v, s) in counters {
        assert_eq!(v.load(Ordering::Relaxed), 0, "order/duplication violations");
        assert_eq!(s.load(Ordering::Relaxed), total);
    }
}

#[test]
fn four_producers_three_handlers_blocking() {
    run_multi(1024, WaitStrategy::Blocking, false);
}

#[test]
fn four_producers_batches_small_ring_yielding() {
    run_multi(64, WaitStrategy::Yielding, true);
}

#[test]
fn single_producer_three_handlers() {
    let (bus, mut publisher) = BusBuilder::<Msg>::new()
        .single_producer()
        .capacity(256)
        .build()
        .unwrap();
    let mut counters = Vec::new();
    for (c, v, s) in checkers(3, 1) {
        bus.subscribe_handler("stress.*", c).unwrap();
        counters.push((v, s));
    }
    let ty = event_type!("stress.tick");
    let src = source!("stress");
    let n = PER_PRODUCER * 4;
    let producer = std::thread::spawn(move || {
        let mut i = 0;
        while i < n {
            if i % 3 == 0 {
                let k = (n - i).min(1000);
                publisher
                    .publish_batch((0..k as usize).map(|j| Event::new(ty, src, (0, i + j as u64))))
                    .unwrap();
                i += k;
            } else {
                publisher.publish(Event::new(ty, src, (0, i))).unwrap();
                i += 1;
            }
        }
    });
    producer.join().unwrap();
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.published, n);
    assert_eq!(report.counters.delivered, n * 3);
    for (v, s) in counters {
        assert_eq!(v.load(Ordering::Relaxed), 0);
        assert_eq!(s.load(Ordering::Relaxed), n);
    }
}
