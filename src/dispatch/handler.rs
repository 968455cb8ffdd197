//! What a handler is, what a handler closure may return, and the adapter that
//! makes such a closure a [`Handler`].

use std::marker::PhantomData;

use crate::event::Event;
use crate::outcome::HandlerError;

/// Receives the events it subscribed to, in publish order.
///
/// `handle` takes `&mut self`: a handler runs on one task at a time (different
/// handlers run in parallel), so a stateful handler — a projector, an aggregate —
/// needs no lock. Subscribe a type implementing it with
/// [`Bus::subscribe_handler`](crate::Bus::subscribe_handler), or one instance per
/// lane with [`Bus::subscribe_partitioned`](crate::Bus::subscribe_partitioned).
/// For a closure, [`Bus::subscribe`](crate::Bus::subscribe) needs no trait at all
/// (closures `FnMut(&Event<P>) -> Result<(), HandlerError>` are handlers too, for a
/// factory that returns one).
///
/// # Publishing from a handler
/// A handler may publish follow-up events through any [`Publisher`](crate::Publisher)
/// of its bus it captured (or owns), in any producer mode, with any verb. From
/// inside the bus a publish never waits for ring space — the dispatcher frees the
/// ring only after the handler returns, so waiting would deadlock: the event is
/// queued for the dispatcher instead and delivered after the event that caused
/// it, the follow-ups of one handler in their publish order. At most
/// [`max_follow_ups`](crate::BusBuilder::max_follow_ups) may wait; beyond it the
/// publish fails with a `FollowUpLimit` error, the event handed back. A publish
/// into *another* bus is an ordinary publish there (it may wait for that bus's
/// ring: two buses feeding each other from handlers can still deadlock).
///
/// An `Err` or a panic is caught, recorded with the event and handed to the bus's
/// [`FailurePolicy`](crate::failure::FailurePolicy); the handler then goes on with its next
/// event, and no other handler notices.
///
/// # Examples
/// ```
/// use ringbus::{event_type, source, Bus, Event, Handler, HandlerError};
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
///
/// struct Counter { seen: Arc<AtomicU64> }
/// impl Handler for Counter {
///     fn handle(&mut self, _event: &Event) -> Result<(), HandlerError> {
///         self.seen.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// let bus = Bus::builder().build()?;
/// let seen = Arc::new(AtomicU64::new(0));
/// bus.subscribe_handler("order.placed", Counter { seen: seen.clone() })?;
/// bus.publisher().publish(Event::new(event_type!("order.placed"), source!("shop"), serde_json::json!({})))?;
/// bus.shutdown()?;
/// assert_eq!(seen.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
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

/// What a handler closure may return: `()` (it cannot fail), or `Result<(), E>`
/// for any `E` that converts into a [`HandlerError`] — `HandlerError` itself, or
/// an error its table classifies (`serde_json::Error`, `std::io::Error`, …, and
/// `Box<dyn Error + Send + Sync>`, which takes any error).
///
/// A closure whose body uses `?` names its error type once, in its return type:
/// `|e| -> Result<(), HandlerError> { … }`.
pub trait HandlerResult {
    /// The outcome as the dispatcher records it.
    fn into_outcome(self) -> Result<(), HandlerError>;
}

impl HandlerResult for () {
    #[inline]
    fn into_outcome(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: Into<HandlerError>> HandlerResult for Result<(), E> {
    #[inline]
    fn into_outcome(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// A closure subscribed with `Bus::subscribe`, as the [`Handler`] the dispatcher
/// calls.
pub(crate) struct FnHandler<F, R> {
    f: F,
    // `fn() -> R`: the handler is `Send` whether or not `R` is.
    _result: PhantomData<fn() -> R>,
}

impl<F, R> FnHandler<F, R> {
    pub(crate) fn new(f: F) -> Self {
        FnHandler {
            f,
            _result: PhantomData,
        }
    }
}

impl<P, F, R> Handler<P> for FnHandler<F, R>
where
    F: FnMut(&Event<P>) -> R + Send + 'static,
    R: HandlerResult + 'static,
{
    #[inline]
    fn handle(&mut self, event: &Event<P>) -> Result<(), HandlerError> {
        (self.f)(event).into_outcome()
    }
}
