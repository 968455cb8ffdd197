//! What a handler is, and how it fails.

use crate::event::Event;
use crate::outcome::HandlerError;

/// Receives the events it subscribed to, in publish order.
///
/// `handle` takes `&mut self`: a handler runs on one task at a time (different
/// handlers run in parallel), so a stateful handler — a projector, an aggregate —
/// needs no lock. Closures `FnMut(&Event<P>) -> Result<(), HandlerError>` are
/// handlers.
///
/// An `Err` or a panic is caught, recorded with the event and handed to the bus's
/// [`FailurePolicy`](crate::failure::FailurePolicy); the handler then goes on with its next
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
