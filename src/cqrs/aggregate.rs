//! The aggregate: the consistency boundary that decides on commands and
//! evolves by its own events.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::DomainEvent;

/// An event-sourced aggregate: its state is the fold of its events.
///
/// *Decide* with [`handle`](Aggregate::handle): pure and synchronous (esrs's
/// choice) — a look-up the decision needs (a price, a credit check) is done by
/// the caller and put into the command. *Evolve* with
/// [`apply`](Aggregate::apply): infallible, because the events already happened.
/// [`Default`] is the state before the first event.
///
/// Each instance lives in the store stream `"{TYPE}-{id}"` (e.g. `order-7`).
///
/// # Examples
/// ```
/// use ringbus::cqrs::Aggregate;
/// use ringbus::{event_type, source, DomainEvent, EventType, Source};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default)]
/// struct Counter { value: u64 }
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct Added(u64);
/// impl DomainEvent for Added {
///     fn event_type(&self) -> EventType { event_type!("counter.added") }
///     fn source(&self) -> Source { source!("counter") }
/// }
///
/// #[derive(Debug)]
/// struct Overflow;
/// impl std::fmt::Display for Overflow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("overflow") }
/// }
/// impl std::error::Error for Overflow {}
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Command = u64;
///     type Event = Added;
///     type Error = Overflow;
///     fn handle(&self, add: u64) -> Result<Vec<Added>, Overflow> {
///         self.value.checked_add(add).ok_or(Overflow)?;
///         Ok(vec![Added(add)])
///     }
///     fn apply(&mut self, event: &Added) {
///         self.value += event.0;
///     }
/// }
///
/// let mut c = Counter::default();
/// for e in c.handle(5).unwrap() { c.apply(&e); }
/// assert_eq!(c.value, 5);
/// assert!(c.handle(u64::MAX).is_err());
/// ```
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The aggregate's type name, the prefix of its stream ids:
    /// `"{TYPE}-{id}"`.
    const TYPE: &'static str;
    /// What it is asked to do.
    type Command;
    /// What it records. Events are stored as
    /// [`Event::typed`](crate::Event::typed) envelopes, so the payload names its
    /// own event type, source and schema version.
    type Event: DomainEvent + Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Why it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides: the events `command` causes in this state, or why it is
    /// refused. Must not change anything (it takes `&self`); an empty vector
    /// means "nothing to do".
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves: the state after `event`. Infallible.
    fn apply(&mut self, event: &Self::Event);
}

/// An [`Aggregate`] whose state can be kept as a
/// [snapshot](crate::store::snapshot): serializable, with a schema version.
///
/// Only such aggregates can use [`Repository::snapshots`](super::Repository::snapshots);
/// the others need no `serde` impls on their state. The state is written as
/// MessagePack with its field names
/// ([`Snapshot::encode`](crate::store::snapshot::Snapshot::encode)), so adding a
/// field with `#[serde(default)]` needs no new schema; any other change of the
/// state's shape or meaning bumps [`SCHEMA`](Snapshotted::SCHEMA), and older
/// snapshots are then ignored (the aggregate is replayed from its events).
///
/// # Examples
/// ```
/// use ringbus::cqrs::Snapshotted;
/// # use ringbus::cqrs::Aggregate;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Default, Serialize, Deserialize)] struct Counter { value: u64 }
/// # #[derive(Clone, Serialize, Deserialize)] struct Added(u64);
/// # ringbus::domain_event!(Added => "counter.added", source = "counter");
/// # #[derive(Debug)] struct Never;
/// # impl std::fmt::Display for Never { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") } }
/// # impl std::error::Error for Never {}
/// # impl Aggregate for Counter {
/// #     const TYPE: &'static str = "counter";
/// #     type Command = u64; type Event = Added; type Error = Never;
/// #     fn handle(&self, n: u64) -> Result<Vec<Added>, Never> { Ok(vec![Added(n)]) }
/// #     fn apply(&mut self, e: &Added) { self.value += e.0 }
/// # }
/// // `Counter` derives `Serialize` and `Deserialize`.
/// impl Snapshotted for Counter {
///     const SCHEMA: u32 = 2; // v1 kept the value as a string
/// }
/// assert_eq!(<Counter as Snapshotted>::SCHEMA, 2);
/// ```
pub trait Snapshotted: Aggregate + Serialize + DeserializeOwned {
    /// The schema version of the serialized state (default 1). A snapshot of
    /// another schema is ignored.
    const SCHEMA: u32 = 1;
}
