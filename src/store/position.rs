//! `Position`: where an event stands in the store's total order.

use std::fmt;

/// A dense, gap-free, 0-based position in the store's total order (`$all`).
///
/// Positions are assigned when an append commits, one per event, in commit
/// order; they are never reused. A reader never sees position `p + 1` before `p`.
///
/// ```
/// use ringbus::store::Position;
/// assert!(Position(3) < Position(4));
/// assert_eq!(Position(3).next(), Position(4));
/// assert_eq!(Position(3).to_string(), "3");
/// ```
#[derive(
    Copy,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// The first position.
    pub const START: Position = Position(0);

    /// The position after this one.
    ///
    /// # Panics
    /// At `u64::MAX`, which no store reaches.
    #[inline]
    #[track_caller]
    pub const fn next(self) -> Position {
        match self.0.checked_add(1) {
            Some(p) => Position(p),
            None => panic!("Position::next past u64::MAX"),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Position {
    fn from(p: u64) -> Self {
        Position(p)
    }
}

impl From<Position> for u64 {
    fn from(p: Position) -> Self {
        p.0
    }
}
