//! The errors of subscribing, shutting down and publishing.

use std::fmt;

use crate::dispatch::PatternError;
use crate::event::Event;
use crate::outcome::{ErrorKind, HandlerError, SubscriptionId};

#[cfg(doc)]
use super::Bus;

/// Why a subscription change was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscribeError {
    /// A pattern is malformed.
    InvalidPattern(PatternError),
    /// No pattern was given.
    NoPatterns,
    /// A partitioned subscription needs at least one lane (and at most 1024).
    InvalidLanes(usize),
    /// Called from inside one of this bus's handlers or hooks (or, for
    /// `unsubscribe`, from a `publish_with` closure or `publish_batch` iterator of
    /// one of its publishers): waiting for the dispatcher from there would wait
    /// for this very call.
    FromHandler,
    /// The dispatcher has stopped.
    Closed,
    /// `unsubscribe` with an id that is not subscribed (any more).
    UnknownSubscription(SubscriptionId),
    /// `SubscribeOptions::max_pending(0)`.
    InvalidMaxPending,
    /// The retry policy was made from values that cannot work (see [`crate::resilience::RetryPolicy::validate`]).
    InvalidRetryPolicy(crate::resilience::ResilienceConfigError),
    /// The circuit breaker was configured with values that cannot work (see [`crate::resilience::BreakerConfig::validate`]).
    InvalidCircuitBreaker(crate::resilience::ResilienceConfigError),
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidPattern(e) => fmt::Display::fmt(e, f),
            SubscribeError::NoPatterns => f.write_str("no pattern given"),
            SubscribeError::InvalidLanes(n) => {
                write!(f, "a partitioned handler needs 1 to 1024 lanes, got {n}")
            }
            SubscribeError::FromHandler => f.write_str(
                "subscribe/unsubscribe called from a handler would wait for its own dispatcher",
            ),
            SubscribeError::Closed => f.write_str("the bus has shut down"),
            SubscribeError::UnknownSubscription(id) => write!(f, "{id} is not subscribed"),
            SubscribeError::InvalidMaxPending => f.write_str("max_pending must be at least 1"),
            SubscribeError::InvalidRetryPolicy(e) => write!(f, "invalid retry policy: {e}"),
            SubscribeError::InvalidCircuitBreaker(e) => write!(f, "invalid circuit breaker: {e}"),
        }
    }
}

impl std::error::Error for SubscribeError {}

impl From<PatternError> for SubscribeError {
    fn from(e: PatternError) -> Self {
        SubscribeError::InvalidPattern(e)
    }
}

/// Why [`Bus::shutdown`] returned no report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Called from inside the bus — one of its handlers or hooks, or a
    /// `publish_with` closure or `publish_batch` iterator of one of its
    /// multi-producer publishers — where waiting for the dispatcher would wait
    /// for this very call. The bus is closed (publishes are refused from now on);
    /// the dispatcher delivers every accepted event and stops by itself once the
    /// call returns. No report: the numbers are not final yet.
    FromInside,
    /// The dispatcher thread panicked (a bug in ringbus: every call into user
    /// code is guarded). The ring was closed at once, so no publish after that
    /// returned `Ok`; events accepted before it may not have been delivered.
    DispatcherPanicked(String),
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::FromInside => f.write_str(
                "shutdown called from inside the bus: closed, the dispatcher stops by itself",
            ),
            ShutdownError::DispatcherPanicked(m) => write!(f, "the dispatcher panicked: {m}"),
        }
    }
}

impl std::error::Error for ShutdownError {}

/// Why a publish was refused (the event is always handed back).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The bus is shut down (or shutting down: after `shutdown` starts, only
    /// follow-ups — publishes from inside the bus — are still accepted).
    Closed,
    /// A publish from inside the bus (a handler or hook — a follow-up) found
    /// [`max_follow_ups`](crate::BusBuilder::max_follow_ups) follow-ups already
    /// waiting. A publish from inside never waits: waiting would deadlock.
    FollowUpLimit,
}

/// `publish` failed; the event is handed back.
#[non_exhaustive]
pub enum PublishError<P> {
    /// The bus is shut down.
    Closed(Event<P>),
    /// A follow-up (a publish from inside the bus) beyond
    /// [`max_follow_ups`](crate::BusBuilder::max_follow_ups).
    FollowUpLimit(Event<P>),
}

/// `try_publish` failed; the event is handed back.
#[non_exhaustive]
pub enum TryPublishError<P> {
    /// The ring is full right now.
    Full(Event<P>),
    /// The bus is shut down.
    Closed(Event<P>),
    /// A follow-up (a publish from inside the bus) beyond
    /// [`max_follow_ups`](crate::BusBuilder::max_follow_ups).
    FollowUpLimit(Event<P>),
}

/// `publish_timeout` failed; the event is handed back.
#[non_exhaustive]
pub enum PublishTimeoutError<P> {
    /// The ring stayed full until the deadline.
    Timeout(Event<P>),
    /// The bus is shut down.
    Closed(Event<P>),
    /// A follow-up (a publish from inside the bus) beyond
    /// [`max_follow_ups`](crate::BusBuilder::max_follow_ups): refused at once.
    FollowUpLimit(Event<P>),
}

/// `publish_batch` stopped part-way.
pub struct PublishBatchError<P> {
    /// How many events of the batch were published (and will be delivered).
    pub published: usize,
    /// The events taken from the iterator but not published, in order.
    pub unpublished: Vec<Event<P>>,
    /// Why it stopped.
    pub reason: Refusal,
}

impl<P> PublishError<P> {
    pub(crate) fn new(event: Event<P>, reason: Refusal) -> Self {
        match reason {
            Refusal::Closed => PublishError::Closed(event),
            Refusal::FollowUpLimit => PublishError::FollowUpLimit(event),
        }
    }

    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        match self {
            PublishError::Closed(e) | PublishError::FollowUpLimit(e) => e,
        }
    }

    /// Why.
    pub fn reason(&self) -> Refusal {
        match self {
            PublishError::Closed(_) => Refusal::Closed,
            PublishError::FollowUpLimit(_) => Refusal::FollowUpLimit,
        }
    }
}

/// `?` on a publish inside a handler: a follow-up over the limit is transient (a
/// retry may find room), a closed bus permanent. The event stays inside the
/// error (its `source`, downcastable to `PublishError<P>`).
impl<P: Send + Sync + 'static> From<PublishError<P>> for HandlerError {
    fn from(e: PublishError<P>) -> Self {
        let kind = match e {
            PublishError::FollowUpLimit(_) => ErrorKind::Transient,
            PublishError::Closed(_) => ErrorKind::Permanent,
        };
        HandlerError::new(kind, e)
    }
}

impl<P> TryPublishError<P> {
    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        match self {
            TryPublishError::Full(e)
            | TryPublishError::Closed(e)
            | TryPublishError::FollowUpLimit(e) => e,
        }
    }
    /// Whether the ring was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPublishError::Full(_))
    }
}

impl<P> PublishTimeoutError<P> {
    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        match self {
            PublishTimeoutError::Timeout(e)
            | PublishTimeoutError::Closed(e)
            | PublishTimeoutError::FollowUpLimit(e) => e,
        }
    }
}

/// Why [`Bus::flush`] returned without everything settled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// Called from inside the bus (a handler or hook of it, or a claim of one of
    /// its publishers): waiting there would wait for this very call.
    FromInside,
    /// `flush_timeout`'s deadline passed first.
    Timeout,
    /// The dispatcher stopped without finishing (it panicked: a bug in ringbus).
    Stopped,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushError::FromInside => "flush called from inside the bus would wait for itself",
            FlushError::Timeout => "the flush deadline passed before every event was settled",
            FlushError::Stopped => "the dispatcher stopped without finishing",
        })
    }
}

impl std::error::Error for FlushError {}

macro_rules! error_impls {
    ($ty:ident, |$s:ident, $f:ident| $display:expr, |$d:ident, $g:ident| $debug:expr) => {
        impl<P> fmt::Debug for $ty<P> {
            fn fmt(&self, $g: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $d = self;
                $debug
            }
        }
        impl<P> fmt::Display for $ty<P> {
            fn fmt(&self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                $display
            }
        }
        impl<P> std::error::Error for $ty<P> {}
    };
}

const FOLLOW_UP_LIMIT: &str = "publishing a follow-up beyond max_follow_ups";

error_impls!(
    PublishError,
    |s, f| f.write_str(match s {
        PublishError::Closed(_) => "publishing on a closed bus",
        PublishError::FollowUpLimit(_) => FOLLOW_UP_LIMIT,
    }),
    |d, f| match d {
        PublishError::Closed(e) => write!(f, "PublishError::Closed({})", e.id),
        PublishError::FollowUpLimit(e) => write!(f, "PublishError::FollowUpLimit({})", e.id),
    }
);
error_impls!(
    TryPublishError,
    |s, f| f.write_str(match s {
        TryPublishError::Full(_) => "publishing on a full ring",
        TryPublishError::Closed(_) => "publishing on a closed bus",
        TryPublishError::FollowUpLimit(_) => FOLLOW_UP_LIMIT,
    }),
    |d, f| match d {
        TryPublishError::Full(e) => write!(f, "TryPublishError::Full({})", e.id),
        TryPublishError::Closed(e) => write!(f, "TryPublishError::Closed({})", e.id),
        TryPublishError::FollowUpLimit(e) => {
            write!(f, "TryPublishError::FollowUpLimit({})", e.id)
        }
    }
);
error_impls!(
    PublishTimeoutError,
    |s, f| f.write_str(match s {
        PublishTimeoutError::Timeout(_) => "the ring stayed full until the deadline",
        PublishTimeoutError::Closed(_) => "publishing on a closed bus",
        PublishTimeoutError::FollowUpLimit(_) => FOLLOW_UP_LIMIT,
    }),
    |d, f| match d {
        PublishTimeoutError::Timeout(e) => write!(f, "PublishTimeoutError::Timeout({})", e.id),
        PublishTimeoutError::Closed(e) => write!(f, "PublishTimeoutError::Closed({})", e.id),
        PublishTimeoutError::FollowUpLimit(e) => {
            write!(f, "PublishTimeoutError::FollowUpLimit({})", e.id)
        }
    }
);
error_impls!(
    PublishBatchError,
    |s, f| write!(
        f,
        "{} after {} events of the batch; {} were not published",
        match s.reason {
            Refusal::Closed => "the bus closed",
            Refusal::FollowUpLimit => "the follow-up limit was reached",
        },
        s.published,
        s.unpublished.len()
    ),
    |d, f| f
        .debug_struct("PublishBatchError")
        .field("published", &d.published)
        .field("unpublished", &d.unpublished.len())
        .field("reason", &d.reason)
        .finish()
);
