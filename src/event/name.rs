//! Interning of event-type and source names into dense `u32` ids.
//!
//! Names are interned once, into one process-wide table, and never freed: the
//! routing table is a dense array indexed by the id, so an id must stay valid for
//! the life of the process. To keep hostile input (decoded frames naming a fresh
//! type each) from growing that table without bound, it holds at most
//! [`MAX_NAMES`] names; interning more fails with [`NameError::TooManyNames`].
//!
//! Interning takes a lock and hashes, so it belongs off the per-event path: create
//! an [`EventType`] once and keep it, or use the [`event_type!`](crate::event_type)
//! and [`source!`](crate::source) macros, which cache the id in a per-call-site
//! static.

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

/// The most names (event types and sources together) the process-wide table holds.
pub const MAX_NAMES: usize = 1 << 16;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong(usize),
    /// An event type contains a character that is not allowed (whitespace, a
    /// control character, or a wildcard `*` / `>`), or an empty token (`a..b`).
    InvalidEventType(String),
    /// A source contains a control character.
    InvalidSource(String),
    /// The process-wide table already holds [`MAX_NAMES`] names.
    TooManyNames,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong(n) => {
                write!(f, "name is {n} bytes long; the limit is {MAX_NAME_LEN}")
            }
            NameError::InvalidEventType(s) => write!(
                f,
                "invalid event type {s:?}: dot-separated non-empty tokens without whitespace, control characters, `*` or `>`"
            ),
            NameError::InvalidSource(s) => {
                write!(f, "invalid source {s:?}: control characters are not allowed")
            }
            NameError::TooManyNames => {
                write!(f, "the name table is full ({MAX_NAMES} names)")
            }
        }
    }
}

impl std::error::Error for NameError {}

#[derive(Default)]
struct Table {
    ids: HashMap<&'static str, u32, ahash::RandomState>,
    names: Vec<&'static str>,
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn intern(name: &str) -> Result<u32, NameError> {
    if let Some(&id) = table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ids
        .get(name)
    {
        return Ok(id);
    }
    let mut t = table().write().unwrap_or_else(|e| e.into_inner());
    if let Some(&id) = t.ids.get(name) {
        return Ok(id);
    }
    if t.names.len() >= MAX_NAMES {
        return Err(NameError::TooManyNames);
    }
    // Leaked on purpose: ids are dense indices that live as long as the process,
    // and the table is bounded by MAX_NAMES * MAX_NAME_LEN bytes.
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let id = t.names.len() as u32;
    t.names.push(leaked);
    t.ids.insert(leaked, id);
    Ok(id)
}

fn lookup(name: &str) -> Option<u32> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ids
        .get(name)
        .copied()
}

fn name_of(id: u32) -> &'static str {
    let t = table().read().unwrap_or_else(|e| e.into_inner());
    // Ids are only minted by `intern`, so the index is always in range.
    t.names[id as usize]
}

fn check_len(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// Checks an event-type name: dot-separated, non-empty tokens; no whitespace, no
/// control characters, no wildcard (`*`, `>`), which are reserved for patterns.
pub(crate) fn validate_event_type(name: &str) -> Result<(), NameError> {
    check_len(name)?;
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>';
    if name.chars().any(bad_char) || name.split('.').any(str::is_empty) {
        return Err(NameError::InvalidEventType(name.to_owned()));
    }
    Ok(())
}

/// Checks a source name: 1 ..= 255 bytes, no control characters.
pub(crate) fn validate_source(name: &str) -> Result<(), NameError> {
    check_len(name)?;
    if name.chars().any(char::is_control) {
        return Err(NameError::InvalidSource(name.to_owned()));
    }
    Ok(())
}

/// The type of an event (`"order.placed"`), interned to a dense `u32` id.
///
/// Copying and comparing an `EventType` is copying and comparing a `u32`; the
/// dispatcher routes by indexing its table with [`EventType::id`].
///
/// # Examples
/// ```
/// use ringbus::EventType;
/// let placed = EventType::new("order.placed");
/// assert_eq!(placed.name(), "order.placed");
/// assert_eq!(placed, EventType::new("order.placed"));
/// assert!(EventType::try_new("order.*").is_err()); // wildcards are for patterns
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(u32);

impl EventType {
    /// Interns `name` (taking a lock: cache the result, or use
    /// [`event_type!`](crate::event_type)).
    ///
    /// # Panics
    /// If `name` is not a valid event type or the name table is full; see
    /// [`EventType::try_new`] for the fallible form.
    #[track_caller]
    pub fn new(name: &str) -> Self {
        match Self::try_new(name) {
            Ok(t) => t,
            Err(e) => panic!("EventType::new: {e}"),
        }
    }

    /// Interns `name`, or says why it cannot be an event type.
    pub fn try_new(name: &str) -> Result<Self, NameError> {
        validate_event_type(name)?;
        intern(name).map(EventType)
    }

    /// The event type with this name, if it has been interned already. Never grows
    /// the table.
    pub fn lookup(name: &str) -> Option<Self> {
        lookup(name).map(EventType)
    }

    /// The name this type was interned from.
    pub fn name(self) -> &'static str {
        name_of(self.0)
    }

    /// The dense id: an index into the dispatcher's routing table.
    #[inline]
    pub fn id(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({:?})", self.name())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The service or component that produced an event (`"order-service"`), interned
/// like [`EventType`].
///
/// # Examples
/// ```
/// use ringbus::Source;
/// assert_eq!(Source::new("order-service").name(), "order-service");
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(u32);

impl Source {
    /// Interns `name` (taking a lock: cache the result, or use
    /// [`source!`](crate::source)).
    ///
    /// # Panics
    /// If `name` is empty, too long, has a control character, or the table is
    /// full; see [`Source::try_new`].
    #[track_caller]
    pub fn new(name: &str) -> Self {
        match Self::try_new(name) {
            Ok(s) => s,
            Err(e) => panic!("Source::new: {e}"),
        }
    }

    /// Interns `name`, or says why it cannot be a source.
    pub fn try_new(name: &str) -> Result<Self, NameError> {
        validate_source(name)?;
        intern(name).map(Source)
    }

    /// The name this source was interned from.
    pub fn name(self) -> &'static str {
        name_of(self.0)
    }

    /// The dense id.
    #[inline]
    pub fn id(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({:?})", self.name())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An [`EventType`] interned once per call site and cached in a static: after the
/// first call, evaluating it is one atomic load.
///
/// ```
/// let t = ringbus::event_type!("user.registered");
/// assert_eq!(t.name(), "user.registered");
/// ```
#[macro_export]
macro_rules! event_type {
    ($name:expr) => {{
        static CACHE: ::std::sync::OnceLock<$crate::EventType> = ::std::sync::OnceLock::new();
        *CACHE.get_or_init(|| $crate::EventType::new($name))
    }};
}

/// A [`Source`] interned once per call site and cached in a static.
///
/// ```
/// let s = ringbus::source!("user-service");
/// assert_eq!(s.name(), "user-service");
/// ```
#[macro_export]
macro_rules! source {
    ($name:expr) => {{
        static CACHE: ::std::sync::OnceLock<$crate::Source> = ::std::sync::OnceLock::new();
        *CACHE.get_or_init(|| $crate::Source::new($name))
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_dense() {
        let a = EventType::new("test.name.a");
        let b = EventType::new("test.name.b");
        assert_ne!(a, b);
        assert_eq!(a, EventType::new("test.name.a"));
        assert_eq!(EventType::lookup("test.name.b"), Some(b));
        assert_eq!(a.name(), "test.name.a");
    }

    #[test]
    fn event_type_validation() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\n"] {
            assert!(EventType::try_new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            EventType::try_new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong(_))
        ));
        assert!(EventType::try_new("user.registered").is_ok());
        assert!(Source::try_new("order service #1").is_ok());
        assert!(Source::try_new("bad\u{7}").is_err());
    }
}
