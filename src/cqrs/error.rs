//! What loading an aggregate and executing a command can fail with.

use std::fmt;

use crate::store::upcast::UpcastError;
use crate::store::{ReadError, RejectReason, StreamIdError};

/// Why [`Repository::load`](super::Repository::load) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// `"{TYPE}-{id}"` is not a valid [`StreamId`](crate::store::StreamId)
    /// (empty id, too long, a control character).
    InvalidId(StreamIdError),
    /// The store could not read the stream.
    Read(ReadError),
    /// A stored event could not be upcast to the schema the code reads (see
    /// [`Repository::upcasters`](super::Repository::upcasters)); its
    /// [`position`](UpcastError::position) is set.
    Upcast(UpcastError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::InvalidId(e) => write!(f, "invalid aggregate id: {e}"),
            LoadError::Read(e) => write!(f, "cannot load the aggregate: {e}"),
            LoadError::Upcast(e) => write!(f, "cannot load the aggregate: {e}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::InvalidId(e) => Some(e),
            LoadError::Read(e) => Some(e),
            LoadError::Upcast(e) => Some(e),
        }
    }
}

impl From<ReadError> for LoadError {
    fn from(e: ReadError) -> Self {
        LoadError::Read(e)
    }
}

/// Why [`Repository::execute`](super::Repository::execute) did not record the
/// command's events.
///
/// The events a failed command produced are not handed back (unlike
/// [`AppendError`](crate::store::AppendError)): they are a function of the command and the state, so
/// executing the command again — with the same [`CommandId`](super::CommandId),
/// to be safe — makes them again.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command ([`Aggregate::handle`](super::Aggregate::handle)
    /// returned `Err`); nothing was appended.
    Rejected(E),
    /// Another writer appended to the stream between loading and appending,
    /// on each of `attempts` attempts (see
    /// [`Repository::retry_on_conflict`](super::Repository::retry_on_conflict));
    /// nothing was appended.
    Conflict {
        /// How many times the command was decided and its append refused.
        attempts: u32,
    },
    /// The store failed to read or append; see [`StoreError`] for whether
    /// anything may have been written.
    Store(StoreError),
    /// A stored event could not be upcast (see [`LoadError::Upcast`]).
    Upcast(UpcastError),
    /// The aggregate id does not make a valid stream id (see
    /// [`LoadError::InvalidId`]).
    InvalidId(StreamIdError),
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Rejected(e) => write!(f, "command rejected: {e}"),
            CommandError::Conflict { attempts } => write!(
                f,
                "the aggregate changed concurrently on each of {attempts} attempt(s)"
            ),
            CommandError::Store(e) => write!(f, "{e}"),
            CommandError::Upcast(e) => write!(f, "cannot load the aggregate: {e}"),
            CommandError::InvalidId(e) => write!(f, "invalid aggregate id: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Rejected(e) => Some(e),
            CommandError::Conflict { .. } => None,
            CommandError::Store(e) => Some(e),
            CommandError::Upcast(e) => Some(e),
            CommandError::InvalidId(e) => Some(e),
        }
    }
}

impl<E> From<LoadError> for CommandError<E> {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::InvalidId(e) => CommandError::InvalidId(e),
            LoadError::Read(e) => CommandError::Store(StoreError::Read(e)),
            LoadError::Upcast(e) => CommandError::Upcast(e),
        }
    }
}

/// A store failure under a command: the [`AppendError`](crate::store::AppendError) without its events
/// (a conflict is [`CommandError::Conflict`] instead), or a read error.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading the stream failed; nothing was appended.
    Read(ReadError),
    /// The store refused the batch as it is (too many or too large events, a
    /// payload that does not encode, a partial duplicate …); nothing was
    /// appended.
    Rejected(RejectReason),
    /// Writing failed: whether the events were written is unknown (a file
    /// store is poisoned afterwards). Executing the command again with the same
    /// [`CommandId`](super::CommandId) on a reopened store is safe.
    Io(std::io::Error),
    /// The store is closed; nothing was appended.
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Read(e) => write!(f, "{e}"),
            StoreError::Rejected(reason) => write!(f, "append rejected: {reason}"),
            StoreError::Io(e) => {
                write!(f, "append failed, the events may or may not be stored: {e}")
            }
            StoreError::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Read(e) => Some(e),
            StoreError::Io(e) => Some(e),
            StoreError::Rejected(_) | StoreError::Closed => None,
        }
    }
}
