//! The failure hooks: what the failure policy learns about each attempt, the
//! `on_dead_letter` hook on every path to the dead-letter queue, dead letters for
//! subscriptions without failure handling, and invalid retry settings refused
//! with a typed error.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, wait_for};
use ringbus::resilience::{
    BreakerConfig, DeadLetterInfo, DlqFilter, ManualClock, ResilienceConfigErrorKind, RetryPolicy,
};
use ringbus::{Bus, BusBuilder, Event, HandlerError, SubscribeError, SubscribeOptions};

/// What the failure policy saw: (payload, attempt, last).
type Seen = Arc<Mutex<Vec<(u64, u32, bool)>>>;
/// What `on_dead_letter` saw.
type Letters = Arc<Mutex<Vec<DeadLetterInfo>>>;

/// A bus on a manual clock that records every failure and every dead letter.
fn recording_bus(clock: &ManualClock) -> (Bus<u64>, Seen, Letters) {
    recording_builder(clock, false)
}

fn recording_builder(clock: &ManualClock, dead_letter_failures: bool) -> (Bus<u64>, Seen, Letters) {
    let seen: Seen = Arc::default();
    let letters: Letters = Arc::default();
    let (s, l) = (seen.clone(), letters.clone());
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .failure_policy(move |f| s.lock().unwrap().push((f.event.data, f.attempt, f.last)))
        .on_dead_letter(move |letter| l.lock().unwrap().push(letter.clone()))
        .dead_letter_failures(dead_letter_failures)
        .build()
        .unwrap();
    (bus, seen, letters)
}

fn failing(e: &Event<u64>) -> Result<(), HandlerError> {
    Err(HandlerError::transient(format!("busy {}", e.data)))
}

fn seen(s: &Seen) -> Vec<(u64, u32, bool)> {
    s.lock().unwrap().clone()
}

/// The hook saw exactly the letters the queue lists, each once, in order.
#[track_caller]
fn hook_matches_queue(bus: &Bus<u64>, letters: &Letters) -> Vec<DeadLetterInfo> {
    let listed = bus.dead_letters().list(&DlqFilter::all());
    assert_eq!(*letters.lock().unwrap(), listed);
    listed
}

#[test]
fn attempts_count_from_one_and_only_the_final_one_is_last() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    let retry = RetryPolicy::fixed(Duration::from_millis(10), 3);
    bus.subscribe_with("job.run", failing, SubscribeOptions::new().retry(retry))
        .unwrap();
    bus.publisher().publish(event("job.run", 7)).unwrap();
    for n in 1..3 {
        // The retry waits on the manual clock: wait for the failure, then advance.
        wait_for(10, "a failed attempt", || seen(&policy_saw).len() == n);
        assert!(letters.lock().unwrap().is_empty(), "nothing dead yet");
        clock.advance(Duration::from_millis(10));
    }
    bus.flush().unwrap();
    assert_eq!(
        seen(&policy_saw),
        [(7, 1, false), (7, 2, false), (7, 3, true)]
    );
    let listed = hook_matches_queue(&bus, &letters);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempts.len(), 3);
    assert_eq!(bus.stats().dead_lettered, 1);

    // A redriven letter starts counting again.
    assert!(bus.dead_letters().redrive(listed[0].id).unwrap());
    // `flush` waits for the redriven letter: its retry is not due yet.
    assert_eq!(
        bus.flush_timeout(Duration::from_millis(50)),
        Err(ringbus::FlushError::Timeout)
    );
    for n in 4..6 {
        wait_for(10, "a failed attempt", || seen(&policy_saw).len() == n);
        clock.advance(Duration::from_millis(10));
    }
    // Once the last retry is due, `flush` returns with it handled.
    bus.flush().unwrap();
    assert_eq!(seen(&policy_saw).len(), 6);
    assert_eq!(
        seen(&policy_saw)[3..],
        [(7, 1, false), (7, 2, false), (7, 3, true)]
    );
    // The hook saw the first letter (redriven out since) and the new one.
    let listed = bus.dead_letters().list(&DlqFilter::all());
    let hook_saw = letters.lock().unwrap().clone();
    assert_eq!(hook_saw.len(), 2);
    assert_eq!(hook_saw[1..], listed);
    assert_eq!(listed[0].attempts.len(), 3);
}

#[test]
fn a_failure_of_a_plain_subscription_is_its_last() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    bus.subscribe("job.run", failing).unwrap();
    let mut p = bus.publisher();
    p.publish(event("job.run", 1)).unwrap();
    p.publish(event("job.run", 2)).unwrap();
    bus.flush().unwrap();
    assert_eq!(seen(&policy_saw), [(1, 1, true), (2, 1, true)]);
    // Without `dead_letter_failures`, nothing is kept.
    assert!(bus.dead_letters().is_empty());
    assert!(letters.lock().unwrap().is_empty());
    assert_eq!(bus.stats().dead_lettered, 0);
}

#[test]
fn a_permanent_error_and_a_panic_are_dead_lettered_after_one_attempt() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    let retry = RetryPolicy::immediate(5);
    bus.subscribe_with(
        "job.run",
        |e: &Event<u64>| match e.data {
            1 => Err(HandlerError::permanent("bad job")),
            _ => panic!("job {} exploded", e.data),
        },
        SubscribeOptions::new().retry(retry),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("job.run", 1)).unwrap();
    p.publish(event("job.run", 2)).unwrap();
    bus.flush().unwrap();
    assert_eq!(seen(&policy_saw), [(1, 1, true), (2, 1, true)]);
    let listed = hook_matches_queue(&bus, &letters);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].attempts[0].error, "permanent error: bad job");
    assert!(listed[1].attempts[0].panicked);
    assert_eq!(listed[1].attempts[0].error, "panicked: job 2 exploded");
}

#[test]
fn an_overflowing_queue_dead_letters_its_oldest_event_through_the_hook() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    let options = SubscribeOptions::new()
        .retry(RetryPolicy::fixed(Duration::from_secs(3600), 5))
        .max_pending(1);
    bus.subscribe_with("job.run", failing, options).unwrap();
    let mut p = bus.publisher();
    p.publish(event("job.run", 1)).unwrap();
    wait_for(10, "first failure", || seen(&policy_saw).len() == 1);
    p.publish(event("job.run", 2)).unwrap();
    wait_for(10, "second failure", || seen(&policy_saw).len() == 2);
    // Both were to be retried when they failed; 1 was pushed out by 2.
    assert_eq!(seen(&policy_saw), [(1, 1, false), (2, 1, false)]);
    let listed = hook_matches_queue(&bus, &letters);
    assert_eq!(listed.len(), 1);
    let letter = bus.dead_letters().get(listed[0].id).unwrap();
    assert_eq!(letter.event.data, 1);
    assert!(listed[0]
        .attempts
        .last()
        .unwrap()
        .error
        .contains("max_pending"));
}

#[test]
fn unsubscribing_dead_letters_waiting_events_through_the_hook() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    let retry = RetryPolicy::fixed(Duration::from_secs(3600), 5);
    let id = bus
        .subscribe_with("job.run", failing, SubscribeOptions::new().retry(retry))
        .unwrap();
    bus.publisher().publish(event("job.run", 4)).unwrap();
    wait_for(10, "the failure", || seen(&policy_saw).len() == 1);
    assert!(letters.lock().unwrap().is_empty());
    bus.unsubscribe(id).unwrap();
    let listed = hook_matches_queue(&bus, &letters);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subscription, id);
    assert!(listed[0]
        .attempts
        .last()
        .unwrap()
        .error
        .contains("unsubscribed"));
}

#[test]
fn shutdown_dead_letters_waiting_events_through_the_hook() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_bus(&clock);
    let retry = RetryPolicy::fixed(Duration::from_secs(3600), 5);
    bus.subscribe_with("job.run", failing, SubscribeOptions::new().retry(retry))
        .unwrap();
    bus.publisher().publish(event("job.run", 5)).unwrap();
    wait_for(10, "the failure", || seen(&policy_saw).len() == 1);
    let dead_letters = bus.dead_letters();
    let report = bus.shutdown().unwrap();
    assert_eq!(report.undelivered.len(), 1);
    assert_eq!(*letters.lock().unwrap(), report.undelivered);
    assert_eq!(
        dead_letters.list(&DlqFilter::all()),
        report.undelivered,
        "the hook, the report and the queue agree"
    );
}

#[test]
fn a_panicking_dead_letter_hook_does_not_stop_the_bus() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let bus = BusBuilder::<u64>::new()
        .on_dead_letter(move |_| {
            *c.lock().unwrap() += 1;
            panic!("hook broke");
        })
        .build()
        .unwrap();
    bus.subscribe_with(
        "job.run",
        |_e: &Event<u64>| Err::<(), _>(HandlerError::permanent("no")),
        SubscribeOptions::new(),
    )
    .unwrap();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let d = delivered.clone();
    bus.subscribe("job.run", move |e: &Event<u64>| {
        d.lock().unwrap().push(e.data)
    })
    .unwrap();
    let mut p = bus.publisher();
    for i in 0..3 {
        p.publish(event("job.run", i)).unwrap();
    }
    bus.flush().unwrap();
    assert_eq!(*calls.lock().unwrap(), 3, "called for every letter");
    assert_eq!(bus.dead_letters().len(), 3, "every letter stays queued");
    assert_eq!(*delivered.lock().unwrap(), [0, 1, 2]);
    assert_eq!(bus.stats().dead_lettered, 3);
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.delivered, 3);
}

#[test]
fn dead_letter_failures_keeps_failed_events_of_plain_subscriptions() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_builder(&clock, true);
    let sub = bus
        .subscribe("job.run", |e: &Event<u64>| match e.data {
            1 => Err(HandlerError::permanent("bad job")),
            2 => panic!("job 2 exploded"),
            _ => Ok(()),
        })
        .unwrap();
    let mut p = bus.publisher();
    for i in 0..4 {
        p.publish(event("job.run", i)).unwrap();
    }
    bus.flush().unwrap();
    assert_eq!(seen(&policy_saw), [(1, 1, true), (2, 1, true)]);
    let listed = hook_matches_queue(&bus, &letters);
    assert_eq!(listed.len(), 2);
    let dlq = bus.dead_letters();
    let payloads: Vec<u64> = listed
        .iter()
        .map(|l| dlq.get(l.id).unwrap().event.data)
        .collect();
    assert_eq!(payloads, [1, 2]);
    assert!(listed.iter().all(|l| l.subscription == sub));
    assert!(listed.iter().all(|l| l.attempts.len() == 1));
    assert_eq!(listed[0].attempts[0].error, "permanent error: bad job");
    assert!(listed[1].attempts[0].panicked);
    assert_eq!(listed[1].attempts[0].error, "panicked: job 2 exploded");
    assert_eq!(bus.stats().dead_lettered, 2);
    let metrics = bus.metrics();
    assert_eq!(metrics.handler(sub, 0).unwrap().dead_lettered, 2);

    // Such a letter cannot be redriven (no retry queue): it stays.
    assert!(matches!(
        dlq.redrive(listed[0].id),
        Err(SubscribeError::UnknownSubscription(s)) if s == sub
    ));
    assert_eq!(dlq.redrive_matching(&DlqFilter::all()).unwrap(), 0);
    assert_eq!(dlq.list(&DlqFilter::all()), listed);
}

#[test]
fn dead_letter_failures_leaves_resilient_subscriptions_as_they_were() {
    let clock = ManualClock::new();
    let (bus, policy_saw, letters) = recording_builder(&clock, true);
    bus.subscribe_with(
        "job.run",
        |_e: &Event<u64>| Err::<(), _>(HandlerError::permanent("no")),
        SubscribeOptions::new(),
    )
    .unwrap();
    bus.publisher().publish(event("job.run", 1)).unwrap();
    bus.flush().unwrap();
    assert_eq!(seen(&policy_saw), [(1, 1, true)]);
    assert_eq!(
        hook_matches_queue(&bus, &letters).len(),
        1,
        "one letter, not two"
    );
}

#[test]
fn invalid_retry_and_breaker_settings_are_typed_errors() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let ms = Duration::from_millis;
    let factor: f64 = "NaN".parse().unwrap(); // as read from a configuration file
    let nan = RetryPolicy::exponential(ms(10), factor, ms(1000), 5);
    let err = bus
        .subscribe_with("job.run", failing, SubscribeOptions::new().retry(nan))
        .unwrap_err();
    assert!(matches!(
        &err,
        SubscribeError::InvalidRetryPolicy(e)
            if matches!(e.kind(), ResilienceConfigErrorKind::InvalidFactor(f) if f.is_nan())
    ));
    assert!(err.to_string().contains("backoff factor"), "{err}");

    for policy in [
        RetryPolicy::exponential(ms(10), 0.5, ms(1000), 5),
        RetryPolicy::exponential(ms(10), f64::INFINITY, ms(1000), 5),
        RetryPolicy::immediate(0),
    ] {
        let options = SubscribeOptions::new().retry(policy);
        let refused = bus.subscribe_partitioned_with("job.run", 2, |_| failing, options);
        assert!(matches!(
            refused,
            Err(SubscribeError::InvalidRetryPolicy(_))
        ));
    }
    let breaker = BreakerConfig::failure_ratio(2.0, 10, 1, ms(100));
    let refused = bus.subscribe_with(
        "job.run",
        failing,
        SubscribeOptions::new().circuit_breaker(breaker),
    );
    assert!(matches!(
        refused,
        Err(SubscribeError::InvalidCircuitBreaker(e))
            if e.kind() == &ResilienceConfigErrorKind::InvalidRatio(2.0)
    ));

    // Nothing was subscribed, and the bus goes on.
    assert!(bus.metrics().handlers.is_empty());
    let delivered = Arc::new(Mutex::new(0));
    let d = delivered.clone();
    bus.subscribe("job.run", move |_e: &Event<u64>| *d.lock().unwrap() += 1)
        .unwrap();
    bus.publisher().publish(event("job.run", 1)).unwrap();
    bus.flush().unwrap();
    assert_eq!(*delivered.lock().unwrap(), 1);
}
