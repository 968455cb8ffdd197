//! What a handler is, and how it fails.

use std::borrow::Cow;
use std::fmt;

use crate::event::Event;

/// Receives the events it subscribed to, in publish order.
///
/// `handle` takes `&mut self`: a handler runs on one task at a time (different
/// handlers run in parallel), so a stateful handler — a projector, an aggregate —
/// needs no lock. Closures `FnMut(&Event<P>) -> Result<(), HandlerError>` are
/// handlers.
///
/// An `Err` or a panic is caught, recorded with the event and handed to the bus's
/// [`FailurePolicy`](crate::FailurePolicy); the handler then goes on with its next
/// event, and no other handler notices.
///
/// # Examples
/// ```
/// use ringbus::{Event, Handler, HandlerError};
///
/// struct Counter { seen: u64 }
/// impl Handler for Counter {
///     fn handle(&mut self, _event: &Event) -> Result<(), HandlerError> {
///         self.seen += 1;
///         Ok(())
///     }
/// }
///
/// let mut audit = |e: &Event| -> Result<(), HandlerError> {
///     if e.event_type.name() == "bad" { Err(HandlerError::permanent("bad event")) } else { Ok(()) }
/// };
/// # let _ = (&mut audit, Counter { seen: 0 });
/// ```
pub trait Handler<P = serde_json::Value>: Send + 'static {
    /// Handles one event.
    fn handle(&mut self, event: &Event<P>) -> Result<(), HandlerError>;

    /// Called once on the dispatcher thread when the subscription takes effect,
    /// before the first event.
    fn on_start(&mut self) {}

    /// Called after the last event of each batch in which this handler had events:
    /// the place to flush buffered work.
    fn on_batch_end(&mut self) {}

    /// Called once, after the last event: on `unsubscribe` (before it returns) or
    /// on bus shutdown (after the ring is drained).
    fn on_shutdown(&mut self) {}
}

impl<P, F> Handler<P> for F
where
    F: FnMut(&Event<P>) -> Result<(), HandlerError> + Send + 'static,
{
    #[inline]
    fn handle(&mut self, event: &Event<P>) -> Result<(), HandlerError> {
        self(event)
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
