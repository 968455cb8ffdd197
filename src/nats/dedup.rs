//! Inbound dedup (issue 13, I5): recognising a redelivered event whose
//! handling already completed, so that it is acked without reaching the bus
//! again.
//!
//! * [`Dedup::Window`](super::Dedup::Window) — `Window` below: the ids of the
//!   last completed events, in memory. Lost with the process.
//! * [`Dedup::Store`](super::Dedup::Store) — [`StoreDedup`]: every inbound event
//!   is appended to a local [`EventStore`] before it is published on the bus,
//!   into a stream of its own named after its id, with `ExpectedVersion::NoStream`
//!   — so the store's idempotent append answers "seen before?" (`duplicate:
//!   true`) whatever order redeliveries come in, and after a restart.
//!
//! `InboundOptions` is not generic over the payload, so `StoreDedup` keeps the
//! typed append as a type-erased closure (`Box<dyn Fn(&Event<P>) -> …>` behind
//! `dyn Any`); `NatsBridge::inbound::<P>` takes it back out with a downcast, and
//! a `StoreDedup` made for another payload type is a configuration error.

use std::any::Any;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BridgeError;
use crate::event::{Event, EventId};
use crate::store::{EventStore, ExpectedVersion, StreamId};

/// The ids of the last completed events, each for at most `keep` (memory only).
#[derive(Debug)]
pub(crate) struct Window {
    /// At most this many ids.
    capacity: usize,
    keep: Duration,
    /// Completion order, oldest first; the same ids as `ids`.
    order: VecDeque<(EventId, Instant)>,
    ids: HashSet<EventId>,
}

impl Window {
    pub(crate) fn new(capacity: usize, keep: Duration) -> Self {
        Window {
            capacity,
            keep,
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Whether `id` completed (and is still remembered).
    pub(crate) fn contains(&mut self, id: EventId) -> bool {
        self.expire(Instant::now());
        self.ids.contains(&id)
    }

    /// Remembers that `id` completed.
    pub(crate) fn insert(&mut self, id: EventId) {
        let now = Instant::now();
        self.expire(now);
        if self.ids.insert(id) {
            self.order.push_back((id, now));
        }
        while self.order.len() > self.capacity {
            if let Some((old, _)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.order.front() {
            if now.duration_since(at) < self.keep {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }
}

/// The typed append of a [`StoreDedup`]: `Ok(true)` if the event was in the
/// store already.
pub(crate) type InboxAppend<P> = dyn Fn(&Event<P>) -> Result<bool, String> + Send + Sync;

/// The local store behind [`Dedup::Store`](super::Dedup::Store): the inbound
/// side's durable inbox.
///
/// Each inbound event is appended — before it is published on the bus — to the
/// store stream `<inbox>-<event id>` with `ExpectedVersion::NoStream`. The
/// first delivery of an id creates that stream; a later one is recognised by
/// the store as a retry of the same append (`AppendOutcome::duplicate`), and
/// the message is acked without reaching the bus. So every inbound event is in
/// the store exactly once, also across restarts of the process, and the
/// store's readers (catch-up subscriptions, projections) see each once.
///
/// What is stored is the event with its `subject` set to the inbox stream id
/// (the store's rule: subject = stream), the rest unchanged.
///
/// **Delivery to the bus:** an event NAK'd by this process (a handler failed)
/// is published on the bus again when it comes back. After a crash, an event
/// already appended is *not* published again: the store is the record that it
/// arrived. Handlers that must see every event after a crash read the store
/// (e.g. [`subscribe_all`](crate::store::subscribe_all) with a checkpoint)
/// rather than the bus.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use ringbus::nats::{Dedup, InboundOptions, StoreDedup};
/// use ringbus::store::InMemoryStore;
///
/// let store = Arc::new(InMemoryStore::<serde_json::Value>::new());
/// let options = InboundOptions {
///     dedup: Dedup::Store(StoreDedup::new(store, "inbox").unwrap()),
///     ..InboundOptions::default()
/// };
/// assert!(matches!(options.dedup, Dedup::Store(_)));
/// ```
#[derive(Clone)]
pub struct StoreDedup {
    inbox: String,
    payload: &'static str,
    /// An `Arc<Box<InboxAppend<P>>>` for the `P` it was made for.
    append: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for StoreDedup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreDedup")
            .field("inbox", &self.inbox)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl StoreDedup {
    /// An inbox in `store`, under stream ids `<inbox>-<event id>`.
    ///
    /// # Errors
    /// [`BridgeError::Config`] if `inbox` is empty or too long for a stream id
    /// with an event id after it.
    pub fn new<P, S>(store: Arc<S>, inbox: &str) -> Result<Self, BridgeError>
    where
        P: Clone + Send + Sync + 'static,
        S: EventStore<P>,
    {
        // The longest stream id this inbox makes: `<inbox>-` + 36 characters.
        StreamId::new(format!("{inbox}-{}", EventId::nil()))
            .ok()
            .filter(|_| !inbox.is_empty())
            .ok_or_else(|| {
                BridgeError::Config(format!(
                    "inbox name {inbox:?} does not make valid stream ids"
                ))
            })?;
        let name = inbox.to_owned();
        let append: Box<InboxAppend<P>> = Box::new(move |event: &Event<P>| {
            let stream =
                StreamId::new(format!("{name}-{}", event.id)).map_err(|e| e.to_string())?;
            let mut copy = event.clone();
            copy.subject = None;
            store
                .append(&stream, ExpectedVersion::NoStream, vec![copy])
                .map(|outcome| outcome.duplicate)
                .map_err(|e| e.to_string())
        });
        Ok(StoreDedup {
            inbox: inbox.to_owned(),
            payload: std::any::type_name::<P>(),
            append: Arc::new(append),
        })
    }

    /// The inbox name (stream ids are `<inbox>-<event id>`).
    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    /// The stream id an event of id `id` is kept under.
    pub fn stream_of(&self, id: EventId) -> StreamId {
        StreamId::new(format!("{}-{id}", self.inbox))
            .expect("checked by StoreDedup::new for every event id")
    }

    /// The typed append, for payload `P`; `Config` if it was made for another.
    pub(crate) fn for_payload<P: 'static>(&self) -> Result<Arc<Box<InboxAppend<P>>>, BridgeError> {
        self.append
            .clone()
            .downcast::<Box<InboxAppend<P>>>()
            .map_err(|_| {
                BridgeError::Config(format!(
                    "Dedup::Store was made for payload {}, the bus carries {}",
                    self.payload,
                    std::any::type_name::<P>()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_forgets_the_oldest_beyond_capacity() {
        let mut w = Window::new(2, Duration::from_secs(60));
        let ids: Vec<_> = (0..3).map(|_| EventId::new()).collect();
        for id in &ids {
            w.insert(*id);
        }
        assert!(!w.contains(ids[0]));
        assert!(w.contains(ids[1]) && w.contains(ids[2]));
    }

    #[test]
    fn window_forgets_after_keep() {
        let mut w = Window::new(10, Duration::ZERO);
        let id = EventId::new();
        w.insert(id);
        assert!(!w.contains(id));
    }
}
