//! What happens when a handler fails: the record of the failure and the policy hook.

use std::fmt;

use super::handler::HandlerError;
use crate::event::Event;

/// Identifies a subscription (one handler, or one partitioned handler's lanes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// An id from its raw number — for tools and tests that build dead letters by
    /// hand; a bus hands out its own ids from `subscribe`.
    pub const fn from_raw(n: u64) -> Self {
        SubscriptionId(n)
    }

    /// The raw number (unique within a bus).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub#{}", self.0)
    }
}

/// Why a handler call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FailureReason {
    /// The handler returned an error.
    Error(HandlerError),
    /// The handler panicked; the panic message, if it was a string.
    Panic(String),
}

impl FailureReason {
    /// Whether a retry may help: transient errors yes; permanent errors and panics no.
    pub fn is_transient(&self) -> bool {
        matches!(self, FailureReason::Error(e) if e.is_transient())
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Error(e) => fmt::Display::fmt(e, f),
            FailureReason::Panic(msg) => write!(f, "panicked: {msg}"),
        }
    }
}

/// One failed handler call, as the failure policy sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure<'a, P> {
    /// The event the handler failed on (still in the ring: clone it to keep it).
    pub event: &'a Event<P>,
    /// The ring sequence of the event.
    pub sequence: u64,
    /// The subscription whose handler failed.
    pub subscription: SubscriptionId,
    /// The handler's name (its type name unless given).
    pub handler: &'a str,
    /// The lane, for a partitioned handler (0 otherwise).
    pub lane: u32,
    /// What went wrong.
    pub reason: &'a FailureReason,
}

/// Decides what happens after a handler fails. Runs on the dispatcher thread, after
/// the batch, once per failure, in the order of the handler's events.
///
/// The bus has already counted the failure and the handler has already moved on to
/// its next event; the policy can log, keep, or (in a later version) schedule a
/// retry or dead-letter the event.
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

/// The default policy: writes failures to standard error — every one of the
/// first 100, then one in every 10 000, so a handler failing on every event cannot
/// flood the log. Counting is done by the bus itself (see [`BusStats`](crate::BusStats)).
#[derive(Debug, Default)]
pub struct LogFailures {
    seen: u64,
}

impl<P> FailurePolicy<P> for LogFailures {
    fn on_failure(&mut self, f: &Failure<'_, P>) {
        self.seen += 1;
        if self.seen <= 100 || self.seen.is_multiple_of(10_000) {
            eprintln!(
                "ringbus: handler {} ({}, lane {}) failed on event {} ({}, seq {}): {} [failure #{}]",
                f.handler,
                f.subscription,
                f.lane,
                f.event.id,
                f.event.event_type,
                f.sequence,
                f.reason,
                self.seen
            );
        }
    }
}
