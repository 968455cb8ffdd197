//! What happens when a handler fails: the record of the failure and the policy hook.

use crate::event::Event;
use crate::outcome::{FailureReason, SubscriptionId};

/// One failed handler call, as the failure policy sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure<'a, P> {
    /// The event the handler failed on (still in the ring: clone it to keep it).
    pub event: &'a Event<P>,
    /// The ring sequence of the event; for a follow-up (published from a handler,
    /// it never enters the ring), the sequence of the published event its causal
    /// chain started at; for a redriven event, the dispatcher's position when it
    /// was redriven.
    pub sequence: u64,
    /// The subscription whose handler failed.
    pub subscription: SubscriptionId,
    /// The subscription's name (see [`SubscribeOptions::name`](crate::SubscribeOptions::name)).
    pub handler: &'a str,
    /// The lane, for a partitioned handler (0 otherwise).
    pub lane: u32,
    /// What went wrong.
    pub reason: &'a FailureReason,
    /// Which call of this handler on this event failed: 1 for the first, 2 for
    /// the first retry, and so on. A redriven dead letter starts again at 1.
    pub attempt: u32,
    /// Whether no retry follows this failure: the event went to the dead-letter
    /// queue (before the policy runs), or — for a subscription without failure
    /// handling — is dropped after this call (then `attempt` is 1), unless
    /// [`BusBuilder::dead_letter_failures`](crate::BusBuilder::dead_letter_failures)
    /// dead-letters it. `false` when a retry is scheduled; an event waiting for
    /// its retry can still be dead-lettered without another call (its queue
    /// overflowing `max_pending`, `unsubscribe`, shutdown):
    /// [`BusBuilder::on_dead_letter`](crate::BusBuilder::on_dead_letter) sees
    /// every dead letter.
    pub last: bool,
}

/// Decides what happens after a handler fails. Runs on the dispatcher thread, after
/// the batch, once per failure, in the order of the handler's events.
///
/// The bus has already counted the failure, and the handler has already moved on
/// to its next event; a retry is already scheduled or the event already
/// dead-lettered ([`Failure::attempt`] and [`Failure::last`] say which). The
/// policy can log, count, alert, or keep a copy of the event.
///
/// # Examples
/// ```
/// use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
/// use std::sync::{Arc, Mutex};
///
/// let given_up = Arc::new(Mutex::new(Vec::new()));
/// let log = given_up.clone();
/// let bus = BusBuilder::<u32>::new()
///     .failure_policy(move |f| {
///         if f.last {
///             log.lock().unwrap().push((f.event.data, f.attempt));
///         }
///     })
///     .build()?;
/// bus.subscribe("order.placed", |_e| Err::<(), _>(HandlerError::permanent("no stock")))?;
/// bus.publisher().publish(Event::new(event_type!("order.placed"), source!("shop"), 7))?;
/// bus.flush()?;
/// assert_eq!(*given_up.lock().unwrap(), [(7, 1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FailurePolicy<P>: Send + 'static {
    /// Called once per failed handler call.
    fn on_failure(&mut self, failure: &Failure<'_, P>);
}

impl<P, F> FailurePolicy<P> for F
where
    F: FnMut(&Failure<'_, P>) + Send + 'static,
{
    fn on_failure(&mut self, failure: &Failure<'_, P>) {
        self(failure)
    }
}

/// The default policy: reports failures as `tracing` events (with the `tracing`
/// feature), and does nothing else.
///
/// With the `tracing` feature, each reported failure is one event with the fields
/// `handler`, `subscription`, `lane`, `event_id`, `event_type`, `sequence`,
/// `reason`, `attempt`, `last` and `failure` (the running count): at `WARN` for an error the handler
/// returned, at `ERROR` for a panic. It reports every one of the first 100
/// failures, then one in every 10 000, so a handler failing on every event cannot
/// flood the log.
///
/// Without the feature it reports nothing: the library never prints. Failures
/// stay visible where they always are — counted in [`Bus::stats`](crate::Bus::stats)
/// (`failed`, `panicked`) and per handler in [`Bus::metrics`](crate::Bus::metrics),
/// recorded in the [flow log](crate::BusBuilder::flow_log) if it is on, and, for a
/// subscription with failure handling ([`Bus::subscribe_with`](crate::Bus::subscribe_with))
/// — or any, with [`BusBuilder::dead_letter_failures`](crate::BusBuilder::dead_letter_failures)
/// — kept in the dead-letter queue with every attempt. Install your own
/// [`FailurePolicy`] to log elsewhere.
#[derive(Debug, Default)]
pub struct LogFailures {
    seen: u64,
}

impl<P> FailurePolicy<P> for LogFailures {
    fn on_failure(&mut self, f: &Failure<'_, P>) {
        self.seen += 1;
        if self.seen <= 100 || self.seen.is_multiple_of(10_000) {
            macro_rules! report {
                ($level:ident, $msg:literal) => {
                    crate::log::$level!(
                        $msg,
                        handler = f.handler,
                        subscription = f.subscription,
                        lane = f.lane,
                        event_id = f.event.id,
                        event_type = f.event.event_type,
                        sequence = f.sequence,
                        reason = f.reason,
                        attempt = f.attempt,
                        last = f.last,
                        failure = self.seen,
                    )
                };
            }
            match f.reason {
                FailureReason::Panic(_) => report!(error, "ringbus: handler panicked"),
                FailureReason::Error(_) => report!(warning, "ringbus: handler failed"),
            }
        }
    }
}
