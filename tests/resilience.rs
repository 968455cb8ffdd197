//! Failure handling: sequenced retries, dead letters, circuit breakers, metrics,
//! flow log — all driven by a manual clock (no test sleeps through a backoff).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, wait_for};
use ringbus::resilience::{
    BreakerConfig, BreakerState, DlqFilter, DlqFullPolicy, ManualClock, RetryPolicy,
};
use ringbus::{BusBuilder, Event, Execution, HandlerError, SubscribeOptions};

type Log = Arc<Mutex<Vec<(String, u64)>>>;

fn subj(ty: &str, subject: &str, i: u64) -> Event<u64> {
    event(ty, i).with_subject(subject)
}

fn entries(log: &Log) -> Vec<(String, u64)> {
    log.lock().unwrap().clone()
}

/// A handler that fails (transiently) on the first `fail_first` calls for each
/// payload listed in `flaky`, and records every call as (subject, payload).
fn flaky_handler(
    log: &Log,
    flaky: &'static [u64],
    fail_first: u32,
) -> impl FnMut(&Event<u64>) -> Result<(), HandlerError> + Send + 'static {
    let log = log.clone();
    let mut calls = std::collections::HashMap::<u64, u32>::new();
    move |e| {
        let subject = e
            .subject
            .as_ref()
            .map_or("-".to_owned(), |s| s.as_str().to_owned());
        log.lock().unwrap().push((subject, e.data));
        let n = calls.entry(e.data).or_insert(0);
        *n += 1;
        if flaky.contains(&e.data) && *n <= fail_first {
            Err(HandlerError::transient(format!(
                "flaky {} (call {n})",
                e.data
            )))
        } else {
            Ok(())
        }
    }
}

#[test]
fn transient_failure_retried_until_success_keeping_subject_order() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let sub = bus
        .subscribe_with(
            "acct.>",
            flaky_handler(&log, &[1], 2),
            SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_millis(10), 5)),
        )
        .unwrap();
    // The clock may move only once a retry is scheduled (the handler logs its
    // call before it fails).
    let scheduled = |n: u64| {
        wait_for(10, "the retry scheduled", || {
            bus.metrics()
                .handler(sub, 0)
                .is_some_and(|h| h.retries == n)
        })
    };
    let mut p = bus.publisher();
    p.publish(subj("acct.op", "S", 1)).unwrap(); // fails twice
    p.publish(subj("acct.op", "S", 2)).unwrap(); // must wait behind 1
    p.publish(subj("acct.op", "T", 3)).unwrap(); // other subject: flows
    p.publish(subj("acct.op", "S", 4)).unwrap(); // behind 1 and 2
    wait_for(10, "first pass", || entries(&log).len() >= 2);
    // S is blocked behind event 1's retry; T went through.
    assert_eq!(entries(&log), [("S".into(), 1), ("T".into(), 3)]);
    scheduled(1);
    clock.advance(Duration::from_millis(10));
    wait_for(10, "second attempt", || entries(&log).len() >= 3);
    assert_eq!(entries(&log)[2], ("S".into(), 1));
    assert_eq!(entries(&log).len(), 3, "2 and 4 still wait behind 1");
    scheduled(2);
    clock.advance(Duration::from_millis(10));
    wait_for(10, "third attempt and the queue", || {
        entries(&log).len() >= 6
    });
    let s: Vec<u64> = entries(&log)
        .iter()
        .filter(|e| e.0 == "S")
        .map(|e| e.1)
        .collect();
    assert_eq!(
        s,
        [1, 1, 1, 2, 4],
        "handler saw event 1 three times, then S in order"
    );
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.retried, 2);
    assert_eq!(report.counters.failed, 2);
    assert_eq!(report.counters.dead_lettered, 0);
    assert!(report.undelivered.is_empty());
}

#[test]
fn permanent_error_goes_to_the_dead_letter_queue_immediately() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "pay.>",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            c.fetch_add(1, Ordering::SeqCst);
            if e.data == 13 {
                Err(HandlerError::permanent("invalid card"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new()
            .name("payments")
            .retry(RetryPolicy::exponential(
                Duration::from_millis(1),
                2.0,
                Duration::from_secs(1),
                5,
            )),
    )
    .unwrap();
    let mut p = bus.publisher();
    for i in [12, 13, 14] {
        p.publish(event("pay.charge", i)).unwrap();
    }
    let dlq = bus.dead_letters();
    wait_for(10, "dead letter", || dlq.len() == 1);
    let info = &dlq.list(&DlqFilter::all())[0];
    assert_eq!(info.handler.as_ref(), "payments");
    assert_eq!(info.attempts.len(), 1);
    assert!(info.attempts[0].error.contains("invalid card"));
    let letter = dlq.get(info.id).unwrap();
    assert_eq!(letter.event.data, 13);
    bus.shutdown().unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no retry of a permanent error"
    );
}

#[test]
fn last_attempt_dead_letters_with_every_attempt_then_redrive_delivers() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .build()
        .unwrap();
    let healthy = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (healthy.clone(), seen.clone());
    let id = bus
        .subscribe_with(
            "job.>",
            move |e: &Event<u64>| -> Result<(), HandlerError> {
                s.lock().unwrap().push(e.data);
                if h.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(HandlerError::transient("dependency down"))
                }
            },
            SubscribeOptions::new().retry(RetryPolicy::immediate(3)),
        )
        .unwrap();
    bus.publisher().publish(event("job.run", 7)).unwrap();
    let dlq = bus.dead_letters();
    wait_for(10, "dead letter after 3 attempts", || dlq.len() == 1);
    assert_eq!(*seen.lock().unwrap(), [7, 7, 7]);
    let info = dlq.list(&DlqFilter::all().subscription(id)).remove(0);
    assert_eq!(info.attempts.len(), 3);
    assert!(info
        .attempts
        .iter()
        .all(|a| a.error.contains("dependency down") && !a.panicked));

    healthy.store(true, Ordering::SeqCst);
    assert!(dlq.redrive(info.id).unwrap());
    wait_for(10, "redriven delivery", || seen.lock().unwrap().len() == 4);
    assert!(dlq.is_empty());
    let m = bus.metrics();
    let h = &m.handlers[0];
    assert_eq!(
        (h.handled, h.errors, h.retries, h.dead_lettered),
        (1, 3, 2, 1)
    );
    bus.shutdown().unwrap();
}

#[test]
fn circuit_breaker_opens_holds_events_then_half_opens_and_closes() {
    let clock = ManualClock::new();
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let t = transitions.clone();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .on_breaker_change(move |_, _, tr| t.lock().unwrap().push((tr.from, tr.to)))
        .build()
        .unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (b, s) = (broken.clone(), seen.clone());
    bus.subscribe_with(
        "io.>",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            s.lock().unwrap().push(e.data);
            if b.load(Ordering::SeqCst) {
                Err(HandlerError::transient("timeout"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new().circuit_breaker(BreakerConfig::consecutive_failures(
            3,
            Duration::from_secs(1),
        )),
    )
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..3 {
        p.publish(event("io.write", i)).unwrap();
    }
    wait_for(10, "three failures", || seen.lock().unwrap().len() == 3);
    wait_for(10, "breaker open", || {
        bus.metrics().handlers[0].breaker == BreakerState::Open
    });
    for i in 3..8 {
        p.publish(event("io.write", i)).unwrap();
    }
    wait_for(10, "events held", || bus.metrics().handlers[0].pending == 5);
    assert_eq!(seen.lock().unwrap().len(), 3, "not called while open");
    assert_eq!(
        bus.metrics().bus.counters.failed,
        3,
        "held events are not failures"
    );

    broken.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    wait_for(10, "held events delivered", || {
        seen.lock().unwrap().len() == 8
    });
    assert_eq!(
        seen.lock().unwrap()[3..],
        [3, 4, 5, 6, 7],
        "in order after the cool-down"
    );
    assert_eq!(bus.metrics().handlers[0].breaker, BreakerState::Closed);
    assert_eq!(
        *transitions.lock().unwrap(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed)
        ]
    );
    let report = bus.shutdown().unwrap();
    assert_eq!(
        report.counters.dead_lettered, 3,
        "the three failures had no retries left"
    );
}

#[test]
fn shutdown_reports_events_still_waiting_for_a_retry() {
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .retry_drain_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    bus.subscribe_with(
        "slow.>",
        |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("later")) },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(3600), 3)),
    )
    .unwrap();
    let mut p = bus.publisher();
    let ids: Vec<_> = (0..3)
        .map(|i| {
            let e = event("slow.x", i);
            let id = e.id;
            p.publish(e).unwrap();
            id
        })
        .collect();
    let dlq = bus.dead_letters();
    let report = bus.shutdown().unwrap();
    let mut undelivered: Vec<_> = report.undelivered.iter().map(|u| u.event_id).collect();
    undelivered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(undelivered, expected);
    assert_eq!(
        dlq.len(),
        3,
        "undelivered events are kept in the dead-letter queue"
    );
}

#[test]
fn full_dead_letter_queue_drops_oldest_and_counts() {
    let bus = BusBuilder::<u64>::new()
        .dead_letter_queue(2, DlqFullPolicy::DropOldest)
        .build()
        .unwrap();
    bus.subscribe_with(
        "x.>",
        |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::permanent("no")) },
        SubscribeOptions::new(),
    )
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..5 {
        p.publish(event("x.y", i)).unwrap();
    }
    let dlq = bus.dead_letters();
    wait_for(10, "five dead letters", || {
        bus.metrics().bus.counters.dead_lettered == 5
    });
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq.evicted(), 3);
    let kept: Vec<u64> = dlq
        .list(&DlqFilter::all())
        .iter()
        .map(|i| dlq.get(i.id).unwrap().event.data)
        .collect();
    assert_eq!(kept, [3, 4]);
    assert_eq!(bus.metrics().bus.dlq_evicted, 3);
    bus.shutdown().unwrap();
}

#[test]
fn metrics_are_exact_and_render_as_prometheus() {
    let bus = BusBuilder::<u64>::new()
        .execution(Execution::Inline)
        .build()
        .unwrap();
    bus.subscribe_with(
        "m.>",
        |e: &Event<u64>| -> Result<(), HandlerError> {
            match e.data % 4 {
                0 => Err(HandlerError::permanent("bad")),
                1 => panic!("boom"),
                _ => Ok(()),
            }
        },
        SubscribeOptions::new().name("mixed"),
    )
    .unwrap();
    bus.subscribe("m.>", |_: &Event<u64>| -> Result<(), HandlerError> {
        Ok(())
    })
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..400 {
        p.publish(event("m.n", i)).unwrap();
    }
    wait_for(10, "all dispatched, dispatcher idle", || {
        let m = bus.metrics().bus;
        m.counters.dispatched == 400
            && (m.batch_size.mean * m.batch_size.count as f64).round() as u64 == 400
    });
    let m = bus.metrics();
    assert_eq!(m.bus.counters.published, 400);
    assert_eq!(m.bus.counters.delivered, 200 + 400);
    assert_eq!(m.bus.counters.failed, 200);
    assert_eq!(m.bus.counters.panicked, 100);
    assert_eq!(m.bus.counters.dead_lettered, 200);
    assert_eq!(m.bus.ring_occupancy, 0);
    assert!(m.bus.batch_size.count >= 1 && m.bus.batch_size.max <= 400);
    let mixed = m.handlers.iter().find(|h| &*h.handler == "mixed").unwrap();
    assert_eq!(
        (
            mixed.handled,
            mixed.errors,
            mixed.panics,
            mixed.dead_lettered
        ),
        (200, 100, 100, 200)
    );
    let text = m.to_prometheus();
    assert!(
        text.contains("# TYPE ringbus_events_dispatched_total counter"),
        "{text}"
    );
    assert!(
        text.contains("ringbus_events_dispatched_total 400"),
        "{text}"
    );
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name_labels, value) = line.rsplit_once(' ').expect("sample line: name value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name = name_labels.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(
            text.contains(&format!(
                "# TYPE {}",
                name.trim_end_matches("_sum").trim_end_matches("_count")
            )) || text.contains(&format!("# TYPE {name}")),
            "no TYPE for {name}"
        );
    }
    bus.shutdown().unwrap();
}

#[test]
fn flow_log_answers_who_handled_what_and_what_it_caused() {
    let bus = Arc::new(BusBuilder::<u64>::new().flow_log(1000).build().unwrap());
    let mut p = bus.publisher();
    let root = event("order.placed", 1);
    let root_id = root.id;
    let child = event("payment.requested", 2).caused_by(&root);
    let child_id = child.id;
    bus.subscribe_with(
        "order.*",
        |_: &Event<u64>| -> Result<(), HandlerError> { Ok(()) },
        SubscribeOptions::new().name("orders"),
    )
    .unwrap();
    bus.subscribe_with(
        ">",
        |e: &Event<u64>| -> Result<(), HandlerError> {
            if e.data == 2 {
                Err(HandlerError::permanent("declined"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new().name("audit"),
    )
    .unwrap();
    p.publish(root).unwrap();
    p.publish(child).unwrap();
    let log = bus.flow_log().unwrap();
    wait_for(10, "three calls logged", || log.len() == 3);
    let t = log.trace(root_id);
    let mut handlers: Vec<_> = t.handled.iter().map(|r| r.handler.clone()).collect();
    handlers.sort();
    assert_eq!(handlers, ["audit", "orders"]);
    assert!(t.handled.iter().all(|r| r.outcome.is_ok()));
    assert_eq!(t.caused, [child_id]);
    let c = log.trace(child_id);
    assert_eq!(c.handled.len(), 1);
    assert_eq!(
        c.handled[0].outcome,
        Err("permanent error: declined".into())
    );
}
