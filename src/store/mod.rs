//! The event store: append-only streams of events in one total order, with
//! optimistic concurrency and idempotent retries.
//!
//! A *stream* ([`StreamId`], e.g. `"order-7"`) holds the events of one aggregate in
//! version order (1, 2, 3, …); the store as a whole holds every event in one dense
//! total order of [`Position`]s (0, 1, 2, …, "`$all`"). [`EventStore`] is the
//! interface; [`InMemoryStore`] implements it in memory, [`FileStore`] in files
//! that survive a crash (see [`Durability`] for what each mode survives).
//!
//! | want | call |
//! | --- | --- |
//! | write events, checking the stream's version | [`EventStore::append`] with an [`ExpectedVersion`] |
//! | an aggregate's events | [`EventStore::read_stream`], newest first: [`EventStore::read_stream_backward`] |
//! | everything, in commit order | [`EventStore::read_all`], or zero-copy [`EventStore::scan_all`] |
//! | follow the head | [`EventStore::head`], [`EventStore::wait_past`] |
//! | committed events on a bus, live, with positions (not durable) | [`InMemoryStore::publish_to`] → [`LiveFeed`] |
//! | every event exactly once, from a checkpoint, then live | [`subscribe_all`], [`subscribe_stream`] → [`CatchUpHandle`] |
//! | keep events on disk | [`FileStore::open`] with [`StoreOptions`], [`FileStore::close`] |
//!
//! # Guarantees (every store)
//! * **Expected version** — see the matrix on [`ExpectedVersion`]. A conflict
//!   writes nothing and returns the events.
//! * **Atomic appends** — all events of one `append` become visible together, or
//!   none do.
//! * **One dense total order** — positions are assigned at commit, 0, 1, 2, …,
//!   never reused. A reader never sees position `p + 1` before `p`: reads, scans
//!   and `head` see only the committed prefix, published through a visibility
//!   watermark after the commit.
//! * **Idempotent retries** — see [`EventStore::append`].
//! * **Subject = stream** — `append` sets each event's `subject` to the stream id
//!   (an event whose subject is already set to something else is rejected), so
//!   the bus's per-subject ordering and partitioned handlers follow streams.
//! * **Readers do not block writers** — `read_all` and `scan_all` take no lock;
//!   `read_stream` holds a shard's read lock only to copy the positions it returns.
//!
//! [`checkpoint`] stores subscription checkpoints (in memory or in files);
//! [`snapshot`] keeps the latest state of each stream ([`EventStore::snapshots`]);
//! [`upcast`] turns events written at older schema versions into the current
//! ones on every typed read path.
//!
//! Out of scope: multi-stream atomic appends, stream deletion and scavenging.
//!
//! # Examples
//! ```
//! use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, StreamId};
//! use ringbus::{domain_event, Event};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct ItemAdded { sku: String, qty: u32 }
//! domain_event!(ItemAdded => "cart.item_added", source = "cart-service");
//!
//! let store = InMemoryStore::new();
//! let cart = StreamId::new("cart-42").unwrap();
//! let add = |sku: &str| Event::typed(ItemAdded { sku: sku.into(), qty: 1 });
//!
//! store.append(&cart, ExpectedVersion::NoStream, vec![add("apple"), add("pear")]).unwrap();
//! let version = store.stream_version(&cart).unwrap();
//! store.append(&cart, ExpectedVersion::Exact(version), vec![add("plum")]).unwrap();
//!
//! let skus: Vec<String> = store
//!     .read_stream(&cart, 1, 100)
//!     .unwrap()
//!     .into_iter()
//!     .map(|r| r.event.data.sku)
//!     .collect();
//! assert_eq!(skus, ["apple", "pear", "plum"]);
//! ```

mod check;
pub mod checkpoint;
mod error;
mod expected;
mod file;
mod live;
pub(crate) mod memory;
mod position;
mod recorded;
mod stream_id;
mod subscription;
pub mod upcast;
// The file system behind the file store, and its simulation for crash tests
// (the lead's groundwork for `FileStore`).
#[cfg(test)]
pub(crate) mod sim;
pub mod snapshot;
pub(crate) mod vfs;

pub use error::{AppendError, ReadError, RejectReason};
pub use expected::ExpectedVersion;
pub use file::{Durability, FileStore, OpenError, RecoveryMode, StoreOptions};
pub use live::LiveFeed;
pub use memory::InMemoryStore;
pub use position::Position;
pub use recorded::{AppendOutcome, Recorded};
pub use stream_id::{StreamId, StreamIdError};
pub(crate) use subscription::ReportCatchUp;
pub use subscription::{
    subscribe_all, subscribe_stream, CatchUp, CatchUpError, CatchUpHandle, CatchUpMetrics,
    CatchUpReport, Notification, OnFailure, Status, SubscribeFrom,
};

use std::ops::ControlFlow;
use std::time::Duration;

use self::snapshot::SnapshotStore;
use crate::codec::EventRef;
use crate::event::Event;

/// An append-only store of event streams in one total order.
///
/// Synchronous, like the rest of the crate, and shared between threads by
/// reference (`Arc<impl EventStore<P>>`). Generic over the payload `P`; a store
/// holds one payload type (use an enum of domain events, or the dynamic
/// `serde_json::Value`).
pub trait EventStore<P>: Send + Sync + 'static {
    /// Appends `events` to `stream`, in order, as one atomic commit, if the stream's
    /// version passes `expected`.
    ///
    /// Each event's `subject` becomes the stream id. The batch is checked first
    /// (not empty, not too many or too large, no nil or repeated id, no other
    /// subject) and rejected as a whole; then the version.
    ///
    /// **Retries are recognised** (KurrentDB's idempotent appends): if the batch's
    /// ids are exactly the ids of the stored events the batch would have been
    /// written over — versions `v + 1 ..` for `Exact(v)` (`NoStream` is
    /// `Exact(0)`), the stream's last events for `Any` and `StreamExists` — the
    /// append succeeds with `duplicate: true`, writes nothing and reports the
    /// earlier append's positions and version. So "the append timed out, did it
    /// happen?" is answered by appending again. Some but not all of the ids there
    /// is [`RejectReason::PartialDuplicate`]. (A retry with `Any` after other
    /// events were appended to the stream is not recognised and appends again.)
    ///
    /// Every error hands the events back unchanged.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<Event<P>>,
    ) -> Result<AppendOutcome, AppendError<P>>;

    /// The stream's events with version ≥ `from_version` (versions start at 1; 0
    /// reads from the start too), oldest first, at most `max`. Empty at the end
    /// and for an absent stream.
    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError>;

    /// The stream's last `max` events, newest first.
    fn read_stream_backward(
        &self,
        stream: &StreamId,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError>;

    /// Committed events at positions ≥ `from`, in position order, at most `max`.
    /// Empty at the end.
    fn read_all(&self, from: Position, max: usize) -> Result<Vec<Recorded<P>>, ReadError>;

    /// Zero-copy scan for fast projections: calls `f` with each committed event at
    /// positions ≥ `from`, as a borrowed codec frame ([`EventRef`]; decode the
    /// payload on demand with [`EventRef::data`]), until `f` returns
    /// `ControlFlow::Break` or the scan reaches the head it saw when it started.
    ///
    /// Returns the position of the last event `f` saw (the one that broke, if
    /// one did), `None` if it saw none.
    fn scan_all(
        &self,
        from: Position,
        f: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Position>, ReadError>;

    /// The stream's version: its number of committed events, 0 if absent.
    fn stream_version(&self, stream: &StreamId) -> Result<u64, ReadError>;

    /// The last committed (visible) position, `None` while the store is empty.
    fn head(&self) -> Option<Position>;

    /// Blocks until [`head`](EventStore::head) is past `after` (`None`: until
    /// there is any event) or `timeout` passes, without busy waiting; returns the
    /// head. The live-tail primitive: read up to the head, then wait past it.
    fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position>;

    /// The store's [snapshot storage](snapshot), if it has one: where the CQRS
    /// repository keeps aggregate states so that loading need not replay whole
    /// streams. Snapshot writes never wait for event appends. The default is
    /// `None` (no snapshots; loading replays).
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        None
    }
}

/// A shared store is a store: `Arc<FileStore<P>>` can be handed to a
/// [`Repository`](crate::cqrs::Repository) by value while subscriptions and
/// other repositories share it.
impl<P, S: EventStore<P> + ?Sized> EventStore<P> for std::sync::Arc<S> {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<Event<P>>,
    ) -> Result<AppendOutcome, AppendError<P>> {
        (**self).append(stream, expected, events)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        (**self).read_stream(stream, from_version, max)
    }

    fn read_stream_backward(
        &self,
        stream: &StreamId,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        (**self).read_stream_backward(stream, max)
    }

    fn read_all(&self, from: Position, max: usize) -> Result<Vec<Recorded<P>>, ReadError> {
        (**self).read_all(from, max)
    }

    fn scan_all(
        &self,
        from: Position,
        f: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Position>, ReadError> {
        (**self).scan_all(from, f)
    }

    fn stream_version(&self, stream: &StreamId) -> Result<u64, ReadError> {
        (**self).stream_version(stream)
    }

    fn head(&self) -> Option<Position> {
        (**self).head()
    }

    fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        (**self).wait_past(after, timeout)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        (**self).snapshots()
    }
}
