//! Command identity: the `CommandId` that becomes the causation id of every
//! event a command produces, the ids of those events derived from it, and the
//! metadata a caller passes along (`CommandMeta`).

use std::fmt;

use crate::event::{Event, EventId};

/// The id of one command, a UUID.
///
/// Every event the command produces carries it as its
/// [`causation_id`](crate::Event::causation_id), and the events' own ids are
/// derived from it ([`CommandId::event_id`]), so a command sent again with the
/// same id — a saga re-sending after a crash, a client retrying after a
/// timeout — is recognised by the [`Repository`](super::Repository) instead of
/// being executed twice.
///
/// # Examples
/// ```
/// use ringbus::cqrs::CommandId;
///
/// let id = CommandId::new();
/// assert_ne!(id, CommandId::new());
/// assert_eq!(CommandId::from_uuid(*id.as_uuid()), id);
/// // The ids of its events are a function of the command id and the index.
/// assert_eq!(id.event_id(0), id.event_id(0));
/// assert_ne!(id.event_id(0), id.event_id(1));
/// assert_eq!(id.to_string().len(), 36); // hyphenated UUID
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(uuid::Uuid);

impl CommandId {
    /// A new, unique id (a time-ordered UUID v7, made like an
    /// [`EventId`]).
    pub fn new() -> Self {
        CommandId(*EventId::new().as_uuid())
    }

    /// Wraps an existing UUID — e.g. one a saga derives deterministically, or
    /// one a client sent with its request.
    pub const fn from_uuid(uuid: uuid::Uuid) -> Self {
        CommandId(uuid)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// The command id as the causation id its events carry.
    pub const fn as_event_id(&self) -> EventId {
        EventId::from_uuid(self.0)
    }

    /// The id of the `index`-th event (from 0) this command produces: a UUID
    /// version 8 whose 122 free bits are a fixed mix of the command id and the
    /// index — the same for the same pair on every run and machine (it is
    /// stored), different for different pairs (barring a 2⁻¹²² accident), never
    /// nil.
    pub fn event_id(&self, index: u32) -> EventId {
        let bytes = self.0.as_bytes();
        let hi = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let lo = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
        let i = u64::from(index);
        // Two rounds of SplitMix64's finaliser over both halves and the index;
        // the constants are SplitMix64's. Changing this changes stored ids:
        // never do.
        let a = mix(hi ^ mix(lo ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D));
        let b = mix(lo ^ mix(a ^ hi ^ i ^ 0x1405_7B7E_F767_814F));
        let mut out = [0_u8; 16];
        out[..8].copy_from_slice(&a.to_be_bytes());
        out[8..].copy_from_slice(&b.to_be_bytes());
        EventId::from_uuid(uuid::Builder::from_custom_bytes(out).into_uuid())
    }
}

/// SplitMix64's output function: a bijection on `u64` with full avalanche.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandId({})", self.0)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What travels with a command besides the command itself: its id and the
/// flow it belongs to. For [`Repository::execute_with`](super::Repository::execute_with).
///
/// Every event the command produces gets
/// * `causation_id` = the command id,
/// * `correlation_id` = the one given here, or else the command id (the
///   command starts a flow),
/// * an id derived from the command id and its index ([`CommandId::event_id`]).
///
/// # Examples
/// ```
/// use ringbus::cqrs::{CommandId, CommandMeta};
/// use ringbus::{event_type, source, Event};
///
/// // A saga reacting to `placed` sends a command in the same flow, with an id
/// // it can derive again after a restart.
/// let placed = Event::new(event_type!("order.placed"), source!("shop"), ());
/// let id = CommandId::from_uuid(*placed.id.as_uuid()); // e.g. derived from the trigger
/// let meta = CommandMeta::with_id(id).correlated_with(&placed);
/// assert_eq!(meta.id(), id);
/// assert_eq!(meta.correlation_id(), Some(placed.id));
/// assert_eq!(CommandMeta::new().correlation_id(), None);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CommandMeta {
    id: CommandId,
    correlation_id: Option<EventId>,
}

impl CommandMeta {
    /// A fresh command id, no correlation id.
    pub fn new() -> Self {
        Self::with_id(CommandId::new())
    }

    /// The given command id (send the same id again to retry safely), no
    /// correlation id.
    pub const fn with_id(id: CommandId) -> Self {
        CommandMeta {
            id,
            correlation_id: None,
        }
    }

    /// Sets the correlation id the command's events carry.
    #[must_use]
    pub const fn with_correlation_id(mut self, correlation_id: EventId) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Puts the command in `event`'s flow: its correlation id, or its own id
    /// when it starts the flow (as [`Event::caused_by`] does).
    #[must_use]
    pub fn correlated_with<P>(self, event: &Event<P>) -> Self {
        self.with_correlation_id(event.correlation_id.unwrap_or(event.id))
    }

    /// The command id.
    pub const fn id(&self) -> CommandId {
        self.id
    }

    /// The correlation id given, if any.
    pub const fn correlation_id(&self) -> Option<EventId> {
        self.correlation_id
    }

    /// The correlation id the command's events carry.
    pub(crate) fn flow(&self) -> EventId {
        self.correlation_id.unwrap_or(self.id.as_event_id())
    }
}

impl Default for CommandMeta {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The derivation is part of the stored format: pin it.
    #[test]
    fn event_ids_are_pinned() {
        let id = CommandId::from_uuid(uuid::Uuid::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        let first = id.event_id(0);
        assert_eq!(first.as_uuid().get_version_num(), 8);
        assert_eq!(first, id.event_id(0));
        assert_eq!(first.to_string(), PINNED);
    }
    const PINNED: &str = "8fe6956c-05c6-8700-b61e-4aab1545c419";

    #[test]
    fn event_ids_are_distinct_and_never_nil() {
        let mut seen = HashSet::new();
        for c in 0..200_u128 {
            let id = CommandId::from_uuid(uuid::Uuid::from_u128(c));
            for i in 0..50 {
                let e = id.event_id(i);
                assert_ne!(e, EventId::nil());
                assert_eq!(e.as_uuid().get_version_num(), 8);
                assert!(seen.insert(e), "collision at command {c}, index {i}");
            }
        }
    }
}
