//! What the store says back: the outcome of an append and the events as stored.

use super::Position;
use crate::event::Event;

/// What a successful append did.
///
/// ```
/// use ringbus::store::{AppendOutcome, Position};
/// let o = AppendOutcome { first_position: Position(4), last_position: Position(6), version: 3, duplicate: false };
/// assert_eq!(o.len(), 3);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct AppendOutcome {
    /// The position of the first event written.
    pub first_position: Position,
    /// The position of the last event written.
    pub last_position: Position,
    /// The stream's version after the append: the version of its last event.
    pub version: u64,
    /// `true`: this batch had been appended before (same event ids, same place), so
    /// nothing was written and the positions and version are those of the earlier
    /// append.
    pub duplicate: bool,
}

impl AppendOutcome {
    /// How many events the append covers.
    #[inline]
    pub const fn len(&self) -> u64 {
        self.last_position.0 - self.first_position.0 + 1
    }

    /// Always `false`: an append covers at least one event.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// An event as stored: the envelope and payload, plus where it is.
#[derive(Clone, PartialEq, Debug)]
pub struct Recorded<P = serde_json::Value> {
    /// Its place in the total order.
    pub position: Position,
    /// Its 1-based index within its stream.
    pub version: u64,
    /// The event; its `subject` is the stream's id.
    pub event: Event<P>,
}
