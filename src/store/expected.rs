//! `ExpectedVersion`: the optimistic-concurrency check of an append.

use std::fmt;

/// What an append expects of its stream: the optimistic-concurrency check.
///
/// A stream's *version* is the number of events in it (the seed's
/// `len(stream) == expectedVersion`): an absent stream has version 0 and its first
/// event has version 1. A failed check writes nothing and returns
/// [`AppendError::WrongExpectedVersion`](super::AppendError::WrongExpectedVersion)
/// with the events.
///
/// | expected | absent stream | stream with *n* events |
/// | --- | --- | --- |
/// | `Any` | ok | ok |
/// | `NoStream` | ok | conflict (actual = *n*) |
/// | `StreamExists` | conflict (actual = 0) | ok |
/// | `Exact(v)` | ok iff v == 0 | ok iff v == *n* |
///
/// A conflict may instead be a recognised retry; see
/// [`EventStore::append`](super::EventStore::append).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist (have version 0).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream must have exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `version` passes the check.
    ///
    /// ```
    /// use ringbus::store::ExpectedVersion;
    /// assert!(ExpectedVersion::Exact(0).admits(0));
    /// assert!(!ExpectedVersion::StreamExists.admits(0));
    /// assert!(!ExpectedVersion::NoStream.admits(3));
    /// ```
    #[inline]
    pub const fn admits(self, version: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::StreamExists => version > 0,
            ExpectedVersion::Exact(v) => v == version,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}
