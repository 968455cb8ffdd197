//! The vocabulary of handler outcomes, shared by the dispatcher, the resilience
//! building blocks and the metrics: a leaf module (it imports nothing of the
//! crate), so none of those areas has to import another to name a failure.

use std::borrow::Cow;
use std::fmt;

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

/// Whether retrying could help.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A passing condition (a timeout, a busy dependency): a retry may succeed.
    Transient,
    /// The event cannot be handled (invalid data): retrying is pointless.
    Permanent,
}

/// A handler's failure: a message, whether it is worth retrying, and the cause.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it (as a
/// transient error), so `?` works inside handlers.
pub struct HandlerError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl HandlerError {
    /// A transient error with this message.
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    /// A permanent error with this message.
    pub fn permanent(message: impl Into<Cow<'static, str>>) -> Self {
        HandlerError {
            kind: ErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// Whether a retry may help.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the error is transient.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, if this one was converted from one.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            message: e.to_string().into(),
            source: Some(Box::new(e)),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} error: {}", self.message)
    }
}
