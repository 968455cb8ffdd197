//! `InMemoryStore`: the event store in memory.
//!
//! # Shape
//! * **One short critical section per append** (the write lock, a
//!   `Mutex<u64>` holding the next position): look the stream up in its shard of
//!   the stream index ([`streams`]), check the expected version and recognise
//!   retries ([`check::decide`](super::check::decide)), move the events into the
//!   log, extend the stream's position list, publish the watermark. Everything
//!   that does not need the lock — checking the batch, stamping subjects,
//!   encoding frames — happens before it.
//! * **A chunked append-only log** ([`log`]): fixed chunks of `OnceLock` slots
//!   behind a doubling directory; nothing moves once written.
//! * **A visibility watermark** ([`watermark`]): one atomic counter of committed
//!   events, stored after an append's entries and index are in place. Readers load
//!   it and read the log below it without a lock, so they see whole appends in
//!   position order; `wait_past` sleeps on a condvar the writer signals only when
//!   someone sleeps.
//!
//! # Frames for `scan_all`: encoded once, at append
//! `scan_all` hands out [`EventRef`]s, borrowed views of codec frames, so the
//! store must hold or make frames. It encodes each event once at append (on the
//! appending thread, before the write lock; MessagePack payload, no checksum,
//! the codec's default) and keeps the frame beside the event; a scan decodes the
//! view in place. Measured with `cargo bench --bench store` (a 16-byte typed
//! payload, 72-byte frames; 2 vCPUs shared with other builds, load average 3–5,
//! so absolute figures are pessimistic; medians of 3 criterion runs, range in
//! brackets):
//!
//! | | per event |
//! | --- | --- |
//! | single-event append, whole (1 thread) | 200 ns [164–211] |
//! | of which: encode the frame and box it | 50 ns [38–62] |
//! | `scan_all` over the stored frames | 20 ns [20–27] |
//! | a scan that encodes instead (`read_all` + encode + view) | 113 ns [65–118] |
//!
//! So keeping frames costs an append about a quarter of its time and one frame
//! of memory per event (72 bytes here, beside the 120-byte `Event`; 112 before
//! it carried its position), and makes every scan 3–6× faster; projections scan
//! the same events many times, an event is appended once. Encoding at append also makes the in-memory store refuse
//! what a file store refuses (a payload whose `Serialize` fails, an append over
//! the frame limit) at `append`, instead of failing a later scan.
//!
//! # Memory ordering
//! The log's slots are `OnceLock`s (set with Release, read with Acquire), written
//! only under the write lock. The watermark (`watermark.rs`, which opens with the
//! protocol) is the only atomic: the writer stores it after the slots and the
//! stream index of an append are in place; readers load it first and read only
//! below it, so they see the committed prefix, whole appends, in position order.
//! `wait_past`'s sleeper count and condvar are the watermark's too.
//!
//! [`EventRef`]: crate::codec::EventRef

mod log;
// Shared with the file store (and the loom models).
pub(crate) mod streams;
pub(crate) mod watermark;

use std::cell::RefCell;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use smallvec::SmallVec;

use self::log::{Entry, Log, CHUNK_LEN};
use self::streams::Streams;
use self::watermark::Watermark;
use super::check::{self, Decision};
use super::snapshot::{InMemorySnapshots, SnapshotStore};
use super::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, Position, ReadError, Recorded,
    RejectReason, StreamId,
};
use crate::codec::{EncodeError, Encoder, EventRef, Limits};
use crate::event::Event;

/// Frames of one append: one inline, more on the heap.
type Frames = SmallVec<[Box<[u8]>; 1]>;

/// The event store in memory: everything [`EventStore`] promises, nothing
/// durable.
///
/// For tests, prototypes and caches. Appends are serialised by one short
/// critical section; reads of the whole log take no lock. The payload must be
/// `Serialize` (each event is encoded once, at append, for
/// [`scan_all`](EventStore::scan_all)) and `Clone` (reads return owned events). An append holds at most
/// [`Limits::DEFAULT`]'s batch limit of events (65 536) and frame limit of encoded
/// bytes (16 MiB), like a file store's.
///
/// # Examples
/// ```
/// use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, Position, StreamId};
/// use ringbus::{event_type, source, Event};
/// use serde_json::json;
///
/// let store = InMemoryStore::new();
/// let order = StreamId::new("order-7").unwrap();
/// let placed = Event::new(event_type!("order.placed"), source!("shop"), json!({ "total": 42 }));
///
/// let outcome = store.append(&order, ExpectedVersion::NoStream, vec![placed.clone()]).unwrap();
/// assert_eq!(outcome.first_position, Position(0));
/// assert_eq!(outcome.version, 1);
///
/// let events = store.read_stream(&order, 1, 10).unwrap();
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].event.id, placed.id);
/// assert_eq!(events[0].event.data["total"], 42);
/// // The stream id became the event's subject.
/// assert_eq!(events[0].event.subject.as_ref().map(|s| s.as_str()), Some("order-7"));
/// assert_eq!(store.head(), Some(Position(0)));
/// ```
pub struct InMemoryStore<P = serde_json::Value> {
    /// The write lock; holds the next position to assign, which outside the lock
    /// equals the watermark.
    writer: Mutex<u64>,
    log: Log<P>,
    streams: Streams,
    watermark: Watermark,
    snapshots: InMemorySnapshots,
}

impl<P> InMemoryStore<P> {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryStore {
            writer: Mutex::new(0),
            log: Log::new(),
            streams: Streams::new(),
            watermark: Watermark::new(),
            snapshots: InMemorySnapshots::new(),
        }
    }

    fn record(&self, p: u64, e: &Entry<P>) -> Recorded<P>
    where
        P: Clone,
    {
        Recorded {
            position: Position(p),
            version: e.version,
            event: e.event.clone(),
        }
    }
}

impl<P> InMemoryStore<P>
where
    P: Serialize + Clone + Send + Sync + 'static,
{
    /// Publishes every event committed from now on on `bus`, in position
    /// order, each with its [`position`](Event::position), from a thread of its
    /// own (see [`LiveFeed`](super::LiveFeed) for who publishes and why).
    ///
    /// Plain bus handlers fed this way are **not durable**: an event committed
    /// but not yet published when the process stops is never delivered to them
    /// (cqrs-es#26). A consumer that must see every event uses a catch-up
    /// subscription ([`subscribe_all`](super::subscribe_all)), which reads the
    /// store from its checkpoint and then follows this feed.
    ///
    /// # Examples
    /// ```
    /// use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, Position, StreamId};
    /// use ringbus::{event_type, source, Bus, Event};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let bus = Bus::builder().build().unwrap();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// bus.subscribe("order.*", move |e| s.lock().unwrap().push(e.position())).unwrap();
    ///
    /// let store = Arc::new(InMemoryStore::new());
    /// let feed = store.publish_to(&bus);
    /// let order = StreamId::new("order-1").unwrap();
    /// let event = |t| Event::new(t, source!("shop"), serde_json::json!({}));
    /// let batch = vec![event(event_type!("order.placed")), event(event_type!("order.paid"))];
    /// store.append(&order, ExpectedVersion::NoStream, batch).unwrap();
    ///
    /// // Wait (bounded) until the feed has published both, then for the handler.
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    /// while feed.next_position() < Position(2) && std::time::Instant::now() < deadline {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// bus.flush().unwrap();
    /// assert_eq!(*seen.lock().unwrap(), [Some(Position(0)), Some(Position(1))]);
    /// feed.stop();
    /// ```
    pub fn publish_to(self: &std::sync::Arc<Self>, bus: &crate::Bus<P>) -> super::LiveFeed {
        super::live::publish_to(self, bus)
    }
}

impl<P> Default for InMemoryStore<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> fmt::Debug for InMemoryStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("head", &self.watermark.head())
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl<P> EventStore<P> for InMemoryStore<P>
where
    P: Serialize + Clone + Send + Sync + 'static,
{
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<Event<P>>,
    ) -> Result<AppendOutcome, AppendError<P>> {
        if let Err(reason) = check::check_batch(stream, &events, Limits::DEFAULT.max_batch_events) {
            return Err(AppendError::Rejected { reason, events });
        }
        let stamped = check::stamp(stream, &mut events);
        let frames = match encode(&events, Limits::DEFAULT.max_frame_len) {
            Ok(frames) => frames,
            Err(reason) => {
                stamped.undo(&mut events);
                return Err(AppendError::Rejected { reason, events });
            }
        };

        // Allocate the chunk these events will probably land in, and the next one
        // when they are near a chunk's end, before taking the lock.
        let k = events.len() as u64;
        let visible = self.watermark.visible();
        self.log.prepare(visible + k);
        self.log.prepare(visible + k + (CHUNK_LEN / 8) as u64);

        let mut next = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let first = *next;
        let mut shard = self.streams.write(stream);
        let positions = shard.positions(stream);
        let current = positions.len() as u64;
        let decision = check::decide(expected, current, &events, |version| {
            self.log.get(positions[(version - 1) as usize]).event.id
        });
        let error = match decision {
            Decision::Append => {
                for ((event, frame), i) in events.into_iter().zip(frames).zip(0..) {
                    let version = current + 1 + i;
                    self.log.set(
                        first + i,
                        Entry {
                            version,
                            event: event.with_position(Position(first + i)),
                            frame,
                        },
                    );
                }
                shard.extend(stream, first, k);
                drop(shard);
                *next = first + k;
                self.watermark.publish(first + k);
                drop(next);
                self.watermark.wake();
                return Ok(AppendOutcome {
                    first_position: Position(first),
                    last_position: Position(first + k - 1),
                    version: current + k,
                    duplicate: false,
                });
            }
            Decision::Duplicate { first_version } => {
                let at = |version: u64| Position(positions[(version - 1) as usize]);
                return Ok(AppendOutcome {
                    first_position: at(first_version),
                    last_position: at(first_version + k - 1),
                    version: first_version + k - 1,
                    duplicate: true,
                });
            }
            Decision::Conflict => None,
            Decision::Partial { already_stored } => Some(RejectReason::PartialDuplicate {
                already_stored,
                batch: events.len(),
            }),
        };
        drop(shard);
        drop(next);
        stamped.undo(&mut events);
        Err(match error {
            None => AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: current,
                events,
            },
            Some(reason) => AppendError::Rejected { reason, events },
        })
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        let visible = self.watermark.visible();
        let positions = self.streams.read(stream, visible, |all| {
            let start = from_version.saturating_sub(1).min(all.len() as u64) as usize;
            let end = start.saturating_add(max).min(all.len());
            all[start..end].to_vec()
        });
        Ok(positions
            .into_iter()
            .map(|p| self.record(p, self.log.get(p)))
            .collect())
    }

    fn read_stream_backward(
        &self,
        stream: &StreamId,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        let visible = self.watermark.visible();
        let positions = self.streams.read(stream, visible, |all| {
            all[all.len() - max.min(all.len())..].to_vec()
        });
        Ok(positions
            .into_iter()
            .rev()
            .map(|p| self.record(p, self.log.get(p)))
            .collect())
    }

    fn read_all(&self, from: Position, max: usize) -> Result<Vec<Recorded<P>>, ReadError> {
        let end = from
            .0
            .saturating_add(max as u64)
            .min(self.watermark.visible());
        if from.0 >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - from.0) as usize);
        self.log.visit(from.0, end, |p, e| {
            out.push(self.record(p, e));
            true
        });
        Ok(out)
    }

    fn scan_all(
        &self,
        from: Position,
        f: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Position>, ReadError> {
        let end = self.watermark.visible();
        let mut last = None;
        let mut failed = None;
        self.log.visit(from.0, end, |p, e| {
            let position = Position(p);
            match EventRef::decode(&e.frame) {
                Ok((view, _)) => {
                    last = Some(position);
                    f(position, &view).is_continue()
                }
                Err(error) => {
                    failed = Some(ReadError::Decode { position, error });
                    false
                }
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(last),
        }
    }

    fn stream_version(&self, stream: &StreamId) -> Result<u64, ReadError> {
        let visible = self.watermark.visible();
        Ok(self.streams.read(stream, visible, |all| all.len() as u64))
    }

    fn head(&self) -> Option<Position> {
        self.watermark.head()
    }

    fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        self.watermark.wait_past(after, timeout)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(&self.snapshots)
    }
}

/// Encodes each event as one frame; the batch may take at most `max_bytes`.
fn encode<P: Serialize>(events: &[Event<P>], max_bytes: usize) -> Result<Frames, RejectReason> {
    const ENCODER: Encoder = Encoder::new();
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let run = |buf: &mut Vec<u8>| {
        let mut frames = Frames::with_capacity(events.len());
        let mut bytes = 0_usize;
        for (index, e) in events.iter().enumerate() {
            buf.clear();
            match ENCODER.encode(e, buf) {
                Ok(n) => bytes += n,
                Err(EncodeError::FrameTooLarge { len, max }) => {
                    return Err(RejectReason::TooLarge {
                        bytes: bytes.saturating_add(len as usize),
                        max: max as usize,
                    })
                }
                Err(error) => return Err(RejectReason::Unencodable { index, error }),
            }
            if bytes > max_bytes {
                return Err(RejectReason::TooLarge {
                    bytes,
                    max: max_bytes,
                });
            }
            frames.push(Box::from(&buf[..]));
        }
        // Do not keep a buffer grown by a huge event.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(frames)
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        // A payload whose `Serialize` appends to a store: use a buffer of its own.
        Err(_) => run(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event_type, source};

    /// A payload whose `Serialize` fails (or appends to a store while it is
    /// being encoded).
    #[derive(Clone, Debug)]
    enum Odd {
        Fine(u32),
        Broken,
        Nested(std::sync::Weak<InMemoryStore<Odd>>),
    }

    impl Serialize for Odd {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Odd::Fine(n) => s.serialize_u32(*n),
                Odd::Broken => Err(serde::ser::Error::custom("refuses")),
                Odd::Nested(store) => {
                    let store = store.upgrade().expect("the store is alive");
                    let inner = StreamId::new("inner").unwrap();
                    let e = Event::new(event_type!("t"), source!("s"), Odd::Fine(9));
                    store.append(&inner, ExpectedVersion::Any, vec![e]).unwrap();
                    s.serialize_unit()
                }
            }
        }
    }

    fn ev(data: Odd) -> Event<Odd> {
        Event::new(event_type!("t"), source!("s"), data)
    }

    #[test]
    fn an_unencodable_payload_is_rejected_at_append() {
        let store = InMemoryStore::new();
        let s = StreamId::new("s").unwrap();
        let batch = vec![ev(Odd::Fine(1)), ev(Odd::Broken)];
        match store.append(&s, ExpectedVersion::Any, batch.clone()) {
            Err(AppendError::Rejected {
                reason: RejectReason::Unencodable { index: 1, error },
                events,
            }) => {
                assert!(error.to_string().contains("refuses"), "{error}");
                assert_eq!(events.len(), 2);
                assert!(events
                    .iter()
                    .zip(&batch)
                    .all(|(a, b)| a.id == b.id && a.subject.is_none()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.head(), None);
        assert_eq!(store.stream_version(&s).unwrap(), 0);
    }

    /// Encoding happens before the write lock, with a buffer of its own when the
    /// thread's is in use: a payload that appends while it is encoded works.
    #[test]
    fn encoding_may_append() {
        let store = std::sync::Arc::new(InMemoryStore::new());
        let s = StreamId::new("outer").unwrap();
        let o = store
            .append(
                &s,
                ExpectedVersion::NoStream,
                vec![ev(Odd::Nested(std::sync::Arc::downgrade(&store)))],
            )
            .unwrap();
        // The inner append committed first.
        assert_eq!(o.first_position, Position(1));
        let inner = StreamId::new("inner").unwrap();
        let nested = &store.read_stream(&inner, 1, 9).unwrap()[0];
        assert!(matches!(nested.event.data, Odd::Fine(9)));
    }
}
