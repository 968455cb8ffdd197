//! Event chains: handlers that publish follow-ups never deadlock the bus, at any
//! fill level, in every producer mode and wait strategy; `flush` waits for whole
//! causal chains; shutdown finishes them, and `shutdown_timeout` bounds it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbus::resilience::{ManualClock, RetryPolicy};
use ringbus::{
    event_type, source, Bus, BusBuilder, Event, Execution, FlushError, HandlerError, Multi,
    ProducerMode, PublishError, Publisher, Refusal, SubscribeOptions, TryPublishError,
    WaitStrategy,
};

type R = Result<(), HandlerError>;

fn ev(t: &'static str, n: u64) -> Event<u64> {
    let et = match t {
        "a" => event_type!("chain.a"),
        "b" => event_type!("chain.b"),
        "c" => event_type!("chain.c"),
        _ => event_type!("chain.other"),
    };
    Event::new(et, source!("chains"), n)
}

fn stage(e: &Event<u64>) -> u8 {
    e.event_type.name().as_bytes()[6]
}

/// What the chain test saw.
#[derive(Default)]
struct Seen {
    /// Per handler: the payloads in the order it saw them.
    a: Vec<u64>,
    b: Vec<u64>,
    c: Vec<u64>,
    /// The audit handler (all events): (stage, payload) in delivery order.
    audit: Vec<(u8, u64)>,
}

fn check(seen: &Seen, n: u64) -> Result<(), String> {
    let want: Vec<u64> = (0..n).collect();
    for (name, got) in [("a", &seen.a), ("b", &seen.b), ("c", &seen.c)] {
        if got != &want {
            let first_bad = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            return Err(format!(
                "handler {name}: {} events, first out of order/missing at {first_bad}",
                got.len()
            ));
        }
    }
    if seen.audit.len() as u64 != 3 * n {
        return Err(format!(
            "audit saw {} events, want {}",
            seen.audit.len(),
            3 * n
        ));
    }
    // Causal order: a(i) before b(i) before c(i) at the audit handler.
    let mut pos = vec![[usize::MAX; 3]; n as usize];
    for (k, &(s, i)) in seen.audit.iter().enumerate() {
        let slot = &mut pos[i as usize][(s - b'a') as usize];
        if *slot != usize::MAX {
            return Err(format!("audit saw {}({i}) twice", s as char));
        }
        *slot = k;
    }
    for (i, p) in pos.iter().enumerate() {
        if !(p[0] < p[1] && p[1] < p[2]) {
            return Err(format!("causal order broken for {i}: positions {p:?}"));
        }
    }
    Ok(())
}

/// Subscribes the chain handlers on `bus`: `a` publishes `b`, `b` publishes
/// `c` (through publishers the handlers captured), audit on everything.
fn subscribe_chain<M: ProducerMode>(
    bus: &Bus<u64, M>,
    follow_a: Publisher<u64, Multi>,
    follow_b: Publisher<u64, Multi>,
) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s, mut p) = (seen.clone(), follow_a);
    bus.subscribe("chain.a", move |e: &Event<u64>| -> R {
        s.lock().unwrap().a.push(e.data);
        p.publish(ev("b", e.data)).expect("follow-up b accepted");
        Ok(())
    })
    .unwrap();
    let (s, mut p) = (seen.clone(), follow_b);
    bus.subscribe("chain.b", move |e: &Event<u64>| -> R {
        s.lock().unwrap().b.push(e.data);
        p.publish(ev("c", e.data)).expect("follow-up c accepted");
        Ok(())
    })
    .unwrap();
    let s = seen.clone();
    bus.subscribe("chain.c", move |e: &Event<u64>| -> R {
        s.lock().unwrap().c.push(e.data);
        Ok(())
    })
    .unwrap();
    let s = seen.clone();
    bus.subscribe("chain.>", move |e: &Event<u64>| -> R {
        s.lock().unwrap().audit.push((stage(e), e.data));
        Ok(())
    })
    .unwrap();
    seen
}

const STRATEGIES: [WaitStrategy; 3] = [
    WaitStrategy::Blocking,
    WaitStrategy::Yielding,
    WaitStrategy::BusySpin,
];

fn chain_events() -> u64 {
    if cfg!(miri) {
        50
    } else {
        100_000
    }
}

#[test]
fn follow_up_chains_never_deadlock_multi_producer_every_wait_strategy() {
    let n = chain_events();
    for wait in STRATEGIES {
        for exec in [Execution::Inline, Execution::Pool { threads: 2 }] {
            let bus = BusBuilder::<u64>::new()
                .capacity(16)
                .wait_strategy(wait)
                .execution(exec.clone())
                .build()
                .unwrap();
            let seen = subscribe_chain(&bus, bus.publisher(), bus.publisher());
            let mut p = bus.publisher();
            for i in 0..n {
                p.publish(ev("a", i)).unwrap();
            }
            bus.flush().unwrap();
            let report = bus.shutdown().unwrap();
            let seen = seen.lock().unwrap();
            check(&seen, n).unwrap_or_else(|e| panic!("{wait:?} {exec:?}: {e}"));
            assert_eq!(report.counters.published, n);
            assert_eq!(report.counters.dispatched, n);
            assert_eq!(report.counters.follow_ups, 2 * n);
            assert_eq!(report.counters.delivered, 6 * n);
        }
    }
}

#[test]
fn single_producer_publisher_owned_by_a_handler_never_waits() {
    // On a single-producer bus the one publisher can belong to a handler: its
    // `on_start` publishes every root event (follow-ups: far more than the
    // ring holds) and its `handle` publishes the next link of each chain.
    struct Root {
        publisher: Publisher<u64, ringbus::Single>,
        n: u64,
        seen: Arc<Mutex<Seen>>,
    }
    impl ringbus::Handler<u64> for Root {
        fn on_start(&mut self) {
            self.publisher
                .publish_batch((0..self.n).map(|i| ev("a", i)))
                .expect("roots accepted as follow-ups");
        }
        fn handle(&mut self, e: &Event<u64>) -> R {
            let next = match stage(e) {
                b'a' => {
                    self.seen.lock().unwrap().a.push(e.data);
                    "b"
                }
                b'b' => {
                    self.seen.lock().unwrap().b.push(e.data);
                    "c"
                }
                _ => {
                    self.seen.lock().unwrap().c.push(e.data);
                    return Ok(());
                }
            };
            self.publisher.publish(ev(next, e.data)).unwrap();
            Ok(())
        }
    }
    let n = chain_events() / 10;
    for wait in STRATEGIES {
        let (bus, publisher) = BusBuilder::<u64>::new()
            .capacity(16)
            .wait_strategy(wait)
            .single_producer()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        bus.subscribe("chain.>", move |e: &Event<u64>| -> R {
            s.lock().unwrap().audit.push((stage(e), e.data));
            Ok(())
        })
        .unwrap();
        let root = Root {
            publisher,
            n,
            seen: seen.clone(),
        };
        bus.subscribe_handler("chain.>", root).unwrap();
        bus.flush().unwrap();
        let report = bus.shutdown().unwrap();
        check(&seen.lock().unwrap(), n).unwrap_or_else(|e| panic!("{wait:?}: {e}"));
        assert_eq!(report.counters.follow_ups, 3 * n);
        assert_eq!(
            report.counters.published, 0,
            "nothing went through the ring"
        );
    }
}

#[test]
fn follow_ups_keep_publish_order_and_follow_their_cause() {
    // One handler publishes several follow-ups per event (publish,
    // try_publish, publish_timeout, publish_with, publish_batch); all arrive in
    // that order, after their cause, with a ring of 4 kept full by a producer.
    let bus = BusBuilder::<u64>::new().capacity(4).build().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut p = bus.publisher();
    bus.subscribe("chain.a", move |e: &Event<u64>| -> R {
        let base = e.data * 10;
        p.publish(ev("b", base)).unwrap();
        assert!(p.try_publish(ev("b", base + 1)).is_ok());
        assert!(p
            .publish_timeout(ev("b", base + 2), Duration::from_millis(1))
            .is_ok());
        p.publish_with(|| ev("b", base + 3)).unwrap();
        p.publish_batch([ev("b", base + 4), ev("b", base + 5)])
            .unwrap();
        Ok(())
    })
    .unwrap();
    let l = log.clone();
    bus.subscribe("chain.>", move |e: &Event<u64>| -> R {
        l.lock().unwrap().push((stage(e), e.data));
        Ok(())
    })
    .unwrap();
    let mut p = bus.publisher();
    let n = 2_000;
    for i in 0..n {
        p.publish(ev("a", i)).unwrap();
    }
    bus.flush().unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len() as u64, 7 * n);
    let roots: Vec<u64> = log
        .iter()
        .filter(|(s, _)| *s == b'a')
        .map(|&(_, i)| i)
        .collect();
    assert_eq!(roots, (0..n).collect::<Vec<_>>(), "roots in publish order");
    let follow: Vec<u64> = log
        .iter()
        .filter(|(s, _)| *s == b'b')
        .map(|&(_, i)| i)
        .collect();
    let want: Vec<u64> = (0..n)
        .flat_map(|i| (0..6).map(move |k| i * 10 + k))
        .collect();
    assert_eq!(follow, want, "follow-ups in publish order");
    for (k, &(s, i)) in log.iter().enumerate() {
        if s == b'b' {
            let cause = log.iter().position(|&x| x == (b'a', i / 10)).unwrap();
            assert!(cause < k, "follow-up {i} before its cause");
        }
    }
    drop(log);
    bus.shutdown().unwrap();
}

#[test]
fn follow_up_limit_is_a_typed_error_with_the_event_handed_back() {
    let bus = BusBuilder::<u64>::new()
        .capacity(16)
        .max_follow_ups(3)
        .build()
        .unwrap();
    let outcome = Arc::new(Mutex::new(Vec::new()));
    let (o, mut p) = (outcome.clone(), bus.publisher());
    bus.subscribe("chain.a", move |_e: &Event<u64>| -> R {
        let mut o = o.lock().unwrap();
        for i in 0..5 {
            match p.publish(ev("b", i)) {
                Ok(()) => o.push(Ok(i)),
                Err(e) => {
                    assert_eq!(e.reason(), Refusal::FollowUpLimit);
                    assert!(matches!(e, PublishError::FollowUpLimit(_)));
                    o.push(Err(e.into_inner().data));
                }
            }
        }
        match p.try_publish(ev("b", 9)) {
            Err(TryPublishError::FollowUpLimit(e)) => o.push(Err(e.data)),
            _ => o.push(Ok(99)),
        }
        let err = p.publish_batch([ev("b", 7), ev("b", 8)]).unwrap_err();
        assert_eq!((err.published, err.reason), (0, Refusal::FollowUpLimit));
        assert_eq!(err.unpublished[0].data, 7);
        Ok(())
    })
    .unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    bus.subscribe("chain.b", move |_e: &Event<u64>| -> R {
        d.fetch_add(1, SeqCst);
        Ok(())
    })
    .unwrap();
    bus.publisher().publish(ev("a", 0)).unwrap();
    bus.flush().unwrap();
    assert_eq!(
        *outcome.lock().unwrap(),
        vec![Ok(0), Ok(1), Ok(2), Err(3), Err(4), Err(9)]
    );
    assert_eq!(delivered.load(SeqCst), 3, "the accepted follow-ups arrive");
    let err = BusBuilder::<u64>::new()
        .max_follow_ups(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_follow_ups"));
    bus.shutdown().unwrap();
}

#[test]
fn flush_waits_for_follow_ups_and_retries_of_earlier_events() {
    let clock = Arc::new(ManualClock::new());
    let bus = BusBuilder::<u64>::new()
        .capacity(8)
        .clock(clock.clone())
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (a, mut p) = (attempts.clone(), bus.publisher());
    // `b` fails once (transient), is retried after 50 ms of the manual clock.
    bus.subscribe("chain.a", move |e: &Event<u64>| -> R {
        p.publish(ev("b", e.data)).unwrap();
        Ok(())
    })
    .unwrap();
    let d = done.clone();
    bus.subscribe_with(
        "chain.b",
        move |_e: &Event<u64>| -> R {
            if a.fetch_add(1, SeqCst) == 0 {
                return Err(HandlerError::transient("first try fails"));
            }
            d.fetch_add(1, SeqCst);
            Ok(())
        },
        SubscribeOptions::new()
            .name("b")
            .retry(RetryPolicy::fixed(Duration::from_millis(50), 3)),
    )
    .unwrap();
    bus.publisher().publish(ev("a", 1)).unwrap();
    // The retry is not due: flush cannot finish yet.
    assert_eq!(
        bus.flush_timeout(Duration::from_millis(200)),
        Err(FlushError::Timeout)
    );
    assert_eq!(done.load(SeqCst), 0);
    // Once the clock moves past the retry's due time, flush returns with the
    // retry handled.
    let flusher = {
        let clock = clock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            clock.advance(Duration::from_millis(60));
        })
    };
    bus.flush().unwrap();
    assert_eq!(done.load(SeqCst), 1);
    flusher.join().unwrap();
    bus.shutdown().unwrap();
}

#[test]
fn flush_from_inside_is_refused_and_flush_under_load_returns() {
    let bus = Arc::new(BusBuilder::<u64>::new().capacity(16).build().unwrap());
    let got = Arc::new(Mutex::new(None));
    let (b, g) = (Arc::downgrade(&bus), got.clone());
    bus.subscribe("chain.a", move |_e: &Event<u64>| -> R {
        if let Some(bus) = b.upgrade() {
            *g.lock().unwrap() = Some(bus.flush());
        }
        Ok(())
    })
    .unwrap();
    bus.publisher().publish(ev("a", 0)).unwrap();
    bus.flush().unwrap();
    assert_eq!(*got.lock().unwrap(), Some(Err(FlushError::FromInside)));

    // Another thread keeps publishing: flush still returns (it waits for what
    // was published before the call only).
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, mut p) = (stop.clone(), bus.publisher());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(SeqCst) {
                p.publish(ev("other", i)).unwrap();
                i += 1;
            }
        })
    };
    for _ in 0..20 {
        bus.flush().unwrap();
    }
    stop.store(true, SeqCst);
    producer.join().unwrap();
    Arc::try_unwrap(bus).unwrap().shutdown().unwrap();
}

#[test]
fn shutdown_lets_follow_ups_of_accepted_events_finish() {
    for exec in [Execution::Inline, Execution::Pool { threads: 2 }] {
        let bus = BusBuilder::<u64>::new()
            .capacity(16)
            .execution(exec)
            .build()
            .unwrap();
        let seen = subscribe_chain(&bus, bus.publisher(), bus.publisher());
        let mut p = bus.publisher();
        let n = 1_000;
        for i in 0..n {
            p.publish(ev("a", i)).unwrap();
        }
        // No flush: shutdown itself must let the chains finish.
        let report = bus.shutdown().unwrap();
        assert!(p.publish(ev("a", n)).is_err(), "outside publishes refused");
        check(&seen.lock().unwrap(), n).unwrap();
        assert!(report.completed && report.stuck.is_empty());
        assert_eq!(report.counters.follow_ups, 2 * n);
        assert_eq!(report.handlers.len(), 4);
        let handled: u64 = report.handlers.iter().map(|h| h.handled).sum();
        assert_eq!(handled, 6 * n);
    }
}

#[test]
fn shutdown_timeout_names_a_stuck_handler_and_returns() {
    let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    bus.subscribe_with(
        "chain.a",
        move |_e: &Event<u64>| -> R {
            while !r.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        },
        SubscribeOptions::new().name("stuck-one"),
    )
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..3 {
        p.publish(ev("a", i)).unwrap();
    }
    let started = Instant::now();
    let report = bus.shutdown_timeout(Duration::from_millis(300)).unwrap();
    let waited = started.elapsed();
    assert!(!report.completed);
    assert_eq!(report.stuck.len(), 1, "{report:?}");
    assert_eq!(&*report.stuck[0].handler, "stuck-one");
    assert!(report.stuck[0].held >= 1);
    // It returned (the handler is still stuck); not asserting a duration beyond
    // "it came back before the handler was released".
    assert!(!release.load(SeqCst));
    let _ = waited;
    release.store(true, SeqCst);
}

#[test]
fn shutdown_dead_letters_a_retry_that_cannot_come_due_before_the_deadline() {
    let clock = Arc::new(ManualClock::new());
    let bus = BusBuilder::<u64>::new()
        .capacity(16)
        .clock(clock)
        // The drain deadline is far away in real time…
        .retry_drain_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    bus.subscribe_with(
        "chain.a",
        |_e: &Event<u64>| -> R { Err(HandlerError::transient("always")) },
        // …but the manual clock never reaches the retry's due time before it.
        SubscribeOptions::new()
            .name("failing")
            .retry(RetryPolicy::fixed(Duration::from_secs(7200), 5)),
    )
    .unwrap();
    bus.publisher().publish(ev("a", 1)).unwrap();
    bus.flush_timeout(Duration::from_millis(100)).unwrap_err();
    // The manual clock never moves: the retry can never come due, so shutdown
    // gives up on it at once instead of waiting out the hour.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(bus.shutdown().unwrap()).unwrap());
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("shutdown returned without waiting out the drain timeout");
    assert_eq!(report.undelivered.len(), 1);
    assert_eq!(&*report.undelivered[0].handler, "failing");
}

#[test]
fn shutdown_timeout_dead_letters_retries_not_due_by_its_deadline() {
    let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    bus.subscribe_with(
        "chain.a",
        |_e: &Event<u64>| -> R { Err(HandlerError::transient("always")) },
        SubscribeOptions::new()
            .name("failing")
            .retry(RetryPolicy::fixed(Duration::from_secs(3600), 5)),
    )
    .unwrap();
    bus.publisher().publish(ev("a", 1)).unwrap();
    bus.flush_timeout(Duration::from_millis(100)).unwrap_err();
    let report = bus.shutdown_timeout(Duration::from_secs(30)).unwrap();
    assert!(report.completed);
    assert_eq!(report.undelivered.len(), 1);
}

#[test]
fn follow_ups_published_from_on_shutdown_are_refused_not_lost() {
    struct Hook(Publisher<u64, Multi>, Arc<Mutex<Option<bool>>>);
    impl ringbus::Handler<u64> for Hook {
        fn handle(&mut self, _e: &Event<u64>) -> R {
            Ok(())
        }
        fn on_shutdown(&mut self) {
            *self.1.lock().unwrap() = Some(self.0.publish(ev("b", 1)).is_err());
        }
    }
    let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    let refused = Arc::new(Mutex::new(None));
    bus.subscribe_handler("chain.a", Hook(bus.publisher(), refused.clone()))
        .unwrap();
    let report = bus.shutdown().unwrap();
    assert_eq!(*refused.lock().unwrap(), Some(true));
    assert_eq!(report.counters.follow_ups, 0);
}

#[test]
fn follow_ups_count_in_metrics() {
    let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    let mut p = bus.publisher();
    bus.subscribe("chain.a", move |e: &Event<u64>| -> R {
        p.publish(ev("b", e.data)).unwrap();
        Ok(())
    })
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..10 {
        p.publish(ev("a", i)).unwrap();
    }
    bus.flush().unwrap();
    assert_eq!(bus.stats().follow_ups, 10);
    assert!(bus
        .metrics()
        .to_prometheus()
        .contains("ringbus_follow_ups_total 10"));
    let _ = AtomicU64::new(0);
    bus.shutdown().unwrap();
}

#[test]
fn question_mark_on_a_follow_up_publish_classifies_the_refusal() {
    use ringbus::failure::ErrorKind;
    let closed = HandlerError::from(PublishError::Closed(ev("b", 1)));
    assert_eq!(closed.kind(), ErrorKind::Permanent);
    let full = HandlerError::from(PublishError::FollowUpLimit(ev("b", 2)));
    assert_eq!(full.kind(), ErrorKind::Transient);
    // The event is kept inside the error.
    let source = std::error::Error::source(&full).expect("the publish error");
    let back = source
        .downcast_ref::<PublishError<u64>>()
        .expect("downcasts to the publish error");
    assert!(matches!(back, PublishError::FollowUpLimit(e) if e.data == 2));

    // Through a bus: the second follow-up of each event is over the limit of
    // one waiting follow-up; `?` makes the handler fail (transient).
    let bus = BusBuilder::<u64>::new()
        .capacity(16)
        .max_follow_ups(1)
        .build()
        .unwrap();
    let mut p = bus.publisher();
    bus.subscribe_with(
        "chain.a",
        move |e| -> R {
            p.publish(ev("b", e.data))?;
            p.publish(ev("b", e.data + 100))?;
            Ok(())
        },
        SubscribeOptions::new().name("two-follow-ups"),
    )
    .unwrap();
    bus.publisher().publish(ev("a", 1)).unwrap();
    bus.flush().unwrap();
    let report = bus.shutdown().unwrap();
    let h = report
        .handler("two-follow-ups")
        .expect("named in the report");
    assert_eq!((h.handled, h.errors), (0, 1));
    assert_eq!(report.counters.follow_ups, 1);
    assert!(report.handler("nobody").is_none());
}

#[test]
fn unsubscribe_returns_while_an_endless_chain_runs() {
    // `chain.a` republishes itself forever (a ticker made of follow-ups): the
    // follow-up queue is never empty, yet unsubscribing another handler returns
    // after the follow-ups queued before it were dispatched, and the ring keeps
    // flowing.
    let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (s, mut p) = (stop.clone(), bus.publisher());
    bus.subscribe("chain.a", move |e| {
        if !s.load(SeqCst) {
            p.publish(ev("a", e.data + 1)).unwrap();
        }
    })
    .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let c = seen.clone();
    let other = bus
        .subscribe("chain.other", move |_e| {
            c.fetch_add(1, SeqCst);
        })
        .unwrap();
    let mut p = bus.publisher();
    p.publish(ev("a", 0)).unwrap();
    for i in 0..100 {
        p.publish(ev("other", i)).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let bus = Arc::new(bus);
    let b = bus.clone();
    let unsubscriber = std::thread::spawn(move || tx.send(b.unsubscribe(other)).unwrap());
    rx.recv_timeout(Duration::from_secs(60))
        .expect("unsubscribe returned during an endless chain")
        .unwrap();
    unsubscriber.join().unwrap();
    assert_eq!(
        seen.load(SeqCst),
        100,
        "every event published before the call"
    );
    p.publish(ev("other", 100)).unwrap();
    stop.store(true, SeqCst);
    bus.flush().unwrap();
    assert_eq!(seen.load(SeqCst), 100, "nothing after it");
    Arc::try_unwrap(bus).unwrap().shutdown().unwrap();
}
