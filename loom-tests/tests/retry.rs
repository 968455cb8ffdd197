//! Loom model of the dispatcher's retry timer through the real `Bus` (system
//! clock: under loom a timed park is a yield, so waiting for a retry that is not
//! due is a loop of scheduling points that ends when the ring closes).
#![cfg(loom)]

use std::time::Duration;

use ringbus::resilience::RetryPolicy;
use ringbus::{
    BusBuilder, Event, EventType, Execution, HandlerError, Source, SubscribeOptions, WaitStrategy,
};

fn ev(i: u64) -> Event<u64> {
    Event::new(EventType::new("loom.e"), Source::new("loom"), i).with_subject("s")
}

/// Defect 2: event A of subject "s" fails (transient) and waits 60 s for its
/// retry; event B of the same subject, published after it, queues behind it
/// (due at once, but it cannot run before A). The dispatcher's timer must only
/// count A: it goes idle until the retry is due or something happens — before the
/// fix it took B's due time, found "a retry due" on every step, ran nothing and
/// spun without a scheduling point. `shutdown` with a zero retry drain must then
/// return, listing both events, in order, in `undelivered`.
#[test]
fn queued_behind_a_retry_goes_idle_and_shuts_down() {
    loom::model(|| {
        let bus = BusBuilder::<u64>::new()
            .capacity(2)
            .execution(Execution::Inline)
            .wait_strategy(WaitStrategy::Blocking)
            .retry_drain_timeout(Duration::ZERO)
            .build()
            .unwrap();
        bus.subscribe_with(
            "loom.e",
            |e: &Event<u64>| -> Result<(), HandlerError> {
                assert_eq!(e.data, 0, "B runs only after A, which never succeeds");
                Err(HandlerError::transient("not yet"))
            },
            SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(60), 3)),
        )
        .unwrap();
        let (a, b) = (ev(0), ev(1));
        let ids = [a.id, b.id];
        let mut p = bus.publisher();
        p.publish(a).unwrap();
        p.publish(b).unwrap();
        let report = bus.shutdown().unwrap();
        assert_eq!(report.counters.published, 2);
        assert_eq!(report.counters.dispatched, 2);
        assert_eq!(report.counters.failed, 1, "A's first call");
        assert_eq!(report.counters.delivered, 0);
        assert_eq!(
            report.counters.retried, 1,
            "A's retry was scheduled, never made"
        );
        assert_eq!(report.counters.dead_lettered, 2);
        let undelivered: Vec<_> = report.undelivered.iter().map(|u| u.event_id).collect();
        assert_eq!(undelivered, ids);
        // Each letter lists its failed calls (A: 1, B: none) and, last, why it was
        // dead-lettered at shutdown.
        let attempts: Vec<_> = report
            .undelivered
            .iter()
            .map(|u| u.attempts.len())
            .collect();
        assert_eq!(attempts, [2, 1]);
        assert!(report.undelivered.iter().all(|u| u
            .attempts
            .last()
            .unwrap()
            .error
            .contains("no retry before the stop deadline")));
    });
}
