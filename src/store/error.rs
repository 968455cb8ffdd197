//! The errors of appending and reading. Every append error hands the events back.

use std::fmt;

use super::{ExpectedVersion, Position, StreamId};
use crate::codec::{DecodeError, EncodeError};
use crate::event::{Event, EventId, Subject};

/// Why an append failed. Every variant hands the events back, unchanged.
///
/// Its `Debug` does not require `P: Debug` (it prints how many events it holds).
///
/// ```
/// use ringbus::store::{AppendError, EventStore, ExpectedVersion, InMemoryStore, StreamId};
/// use ringbus::{event_type, source, Event};
///
/// let store = InMemoryStore::new();
/// let cart = StreamId::new("cart-1").unwrap();
/// let e = Event::new(event_type!("cart.opened"), source!("shop"), 1_u32);
/// store.append(&cart, ExpectedVersion::NoStream, vec![e.clone()]).unwrap();
///
/// let again = Event::new(event_type!("cart.opened"), source!("shop"), 2_u32);
/// match store.append(&cart, ExpectedVersion::NoStream, vec![again.clone()]) {
///     Err(AppendError::WrongExpectedVersion { actual, events, .. }) => {
///         assert_eq!(actual, 1);
///         assert_eq!(events, vec![again]);
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[non_exhaustive]
pub enum AppendError<P> {
    /// The stream's version did not pass the [`ExpectedVersion`] check; nothing
    /// was written.
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: u64,
        /// The events, unchanged.
        events: Vec<Event<P>>,
    },
    /// The batch cannot be appended as it is; nothing was written.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// The events, unchanged.
        events: Vec<Event<P>>,
    },
    /// Writing failed. A file store is poisoned afterwards: every later append
    /// fails the same way, readers keep working (the in-memory store never
    /// returns this).
    Io {
        /// What the operating system said.
        error: std::io::Error,
        /// The events, unchanged.
        events: Vec<Event<P>>,
    },
    /// The store is closed (the in-memory store never returns this).
    Closed {
        /// The events, unchanged.
        events: Vec<Event<P>>,
    },
}

impl<P> AppendError<P> {
    /// The events that were not appended.
    pub fn events(&self) -> &[Event<P>] {
        match self {
            AppendError::WrongExpectedVersion { events, .. }
            | AppendError::Rejected { events, .. }
            | AppendError::Io { events, .. }
            | AppendError::Closed { events } => events,
        }
    }

    /// Takes the events back.
    pub fn into_events(self) -> Vec<Event<P>> {
        match self {
            AppendError::WrongExpectedVersion { events, .. }
            | AppendError::Rejected { events, .. }
            | AppendError::Io { events, .. }
            | AppendError::Closed { events } => events,
        }
    }
}

impl<P> fmt::Debug for AppendError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.events().len();
        match self {
            AppendError::WrongExpectedVersion {
                stream,
                expected,
                actual,
                ..
            } => f
                .debug_struct("WrongExpectedVersion")
                .field("stream", stream)
                .field("expected", expected)
                .field("actual", actual)
                .field("events", &n)
                .finish(),
            AppendError::Rejected { reason, .. } => f
                .debug_struct("Rejected")
                .field("reason", reason)
                .field("events", &n)
                .finish(),
            AppendError::Io { error, .. } => f
                .debug_struct("Io")
                .field("error", error)
                .field("events", &n)
                .finish(),
            AppendError::Closed { .. } => f.debug_struct("Closed").field("events", &n).finish(),
        }
    }
}

impl<P> fmt::Display for AppendError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::WrongExpectedVersion {
                stream,
                expected,
                actual,
                ..
            } => write!(
                f,
                "stream {stream:?} is at version {actual}, the append expected {expected}"
            ),
            AppendError::Rejected { reason, .. } => write!(f, "append rejected: {reason}"),
            AppendError::Io { error, .. } => write!(f, "append failed: {error}"),
            AppendError::Closed { .. } => f.write_str("the store is closed"),
        }
    }
}

impl<P> std::error::Error for AppendError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppendError::Io { error, .. } => Some(error),
            AppendError::Rejected {
                reason: RejectReason::Unencodable { error, .. },
                ..
            } => Some(error),
            _ => None,
        }
    }
}

/// Why a batch was [rejected](AppendError::Rejected). An `index` is the offending
/// event's place in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The batch is empty.
    EmptyBatch,
    /// The batch holds more events than one append may (the codec's
    /// [`Limits::max_batch_events`](crate::codec::Limits::max_batch_events),
    /// 65 536 by default).
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The most one append may hold.
        max: usize,
    },
    /// The batch's encoded events are larger than one append may be (the codec's
    /// [`Limits::max_frame_len`](crate::codec::Limits::max_frame_len), 16 MiB by
    /// default).
    TooLarge {
        /// Encoded bytes of the batch, at least (encoding stops at the limit).
        bytes: usize,
        /// The most one append may hold.
        max: usize,
    },
    /// An event's payload could not be encoded.
    Unencodable {
        /// Which event.
        index: usize,
        /// What the encoder said.
        error: EncodeError,
    },
    /// An event has the nil id (all zeros): ids are what makes retries safe.
    NilEventId {
        /// Which event.
        index: usize,
    },
    /// Two events of the batch have the same id.
    DuplicateEventId {
        /// The later of the two.
        index: usize,
        /// The id.
        id: EventId,
    },
    /// An event carries a subject other than the stream (`append` sets each
    /// event's subject to the stream; one that is already set must match).
    SubjectMismatch {
        /// Which event.
        index: usize,
        /// Its subject.
        subject: Subject,
    },
    /// Some but not all of the batch's events are already stored where the
    /// append would put them: a retry of a different batch, or of one that
    /// overlaps an earlier append. Appending would duplicate events; reporting
    /// success would hide the ones that are not stored.
    PartialDuplicate {
        /// How many of the batch's ids are already stored there.
        already_stored: usize,
        /// Events in the batch.
        batch: usize,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::EmptyBatch => f.write_str("the batch is empty"),
            RejectReason::TooManyEvents { count, max } => {
                write!(f, "{count} events in one append, at most {max} allowed")
            }
            RejectReason::TooLarge { bytes, max } => write!(
                f,
                "the append encodes to at least {bytes} bytes, at most {max} allowed"
            ),
            RejectReason::Unencodable { index, error } => {
                write!(f, "event {index} cannot be encoded: {error}")
            }
            RejectReason::NilEventId { index } => write!(f, "event {index} has the nil id"),
            RejectReason::DuplicateEventId { index, id } => write!(
                f,
                "event {index} repeats the id {} of an earlier event of the batch",
                id.as_uuid()
            ),
            RejectReason::SubjectMismatch { index, subject } => write!(
                f,
                "event {index} has subject {subject:?}, not the stream it is appended to"
            ),
            RejectReason::PartialDuplicate {
                already_stored,
                batch,
            } => write!(
                f,
                "{already_stored} of the batch's {batch} events are already stored there"
            ),
        }
    }
}

/// Why a read failed. The in-memory store's reads cannot fail; a file store's
/// can.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading failed.
    Io(std::io::Error),
    /// A stored event could not be upcast to the current schema (see
    /// [`FileStore::upcasters`](super::FileStore::upcasters)); the error names
    /// its type, version and position.
    Upcast(super::upcast::UpcastError),
    /// A stored event could not be decoded.
    Decode {
        /// Where it is.
        position: Position,
        /// What the decoder said.
        error: DecodeError,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Upcast(e) => write!(f, "{e}"),
            ReadError::Decode { position, error } => {
                write!(
                    f,
                    "the event at position {position} does not decode: {error}"
                )
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(e) => Some(e),
            ReadError::Upcast(e) => Some(e),
            ReadError::Decode { error, .. } => Some(error),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event_type, source};

    fn batch() -> Vec<Event<u8>> {
        vec![
            Event::new(event_type!("a"), source!("s"), 1),
            Event::new(event_type!("a"), source!("s"), 2),
        ]
    }

    /// Every variant gives back exactly the events it was given, including the
    /// two the in-memory store never produces.
    #[test]
    fn every_variant_hands_the_events_back() {
        let stream = StreamId::new("s").unwrap();
        type Make = fn(Vec<Event<u8>>, &StreamId) -> AppendError<u8>;
        let make: [Make; 4] = [
            |events, stream| AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected: ExpectedVersion::NoStream,
                actual: 1,
                events,
            },
            |events, _| AppendError::Rejected {
                reason: RejectReason::EmptyBatch,
                events,
            },
            |events, _| AppendError::Io {
                error: std::io::Error::other("disk"),
                events,
            },
            |events, _| AppendError::Closed { events },
        ];
        for f in make {
            let events = batch();
            let e = f(events.clone(), &stream);
            assert_eq!(e.events(), &events[..]);
            assert!(format!("{e:?}").contains("events: 2"), "{e:?}");
            assert!(!e.to_string().is_empty());
            assert_eq!(e.into_events(), events);
        }
    }
}
