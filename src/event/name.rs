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

/// The verdict of a name check, computable in a `const` context so that the
/// [`event_type!`](crate::event_type) and [`source!`](crate::source) macros can
/// refuse a bad constant name at compile time. The runtime validators below are
/// built on the same functions, so the two can never disagree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum NameCheck {
    Ok,
    Empty,
    TooLong,
    /// A character or token the name's rules forbid.
    Invalid,
}

/// `char::is_control`, as a `const fn`: the Unicode general category Cc, which is
/// exactly U+0000–U+001F and U+007F–U+009F.
const fn is_control(c: u32) -> bool {
    c <= 0x1f || (c >= 0x7f && c <= 0x9f)
}

/// `char::is_whitespace`, as a `const fn`: the Unicode `White_Space` property
/// (a fixed list of 25 code points; checked against `std` for every `char` in the
/// unit tests).
const fn is_whitespace(c: u32) -> bool {
    matches!(
        c,
        0x09..=0x0d
            | 0x20
            | 0x85
            | 0xa0
            | 0x1680
            | 0x2000..=0x200a
            | 0x2028
            | 0x2029
            | 0x202f
            | 0x205f
            | 0x3000
    )
}

/// The character starting at byte `i` of valid UTF-8, and its length in bytes.
const fn char_at(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | (b[i + 1] as u32 & 0x3f), 2)
    } else if b0 < 0xf0 {
        (
            ((b0 & 0x0f) << 12) | ((b[i + 1] as u32 & 0x3f) << 6) | (b[i + 2] as u32 & 0x3f),
            3,
        )
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((b[i + 1] as u32 & 0x3f) << 12)
                | ((b[i + 2] as u32 & 0x3f) << 6)
                | (b[i + 3] as u32 & 0x3f),
            4,
        )
    }
}

const fn check_len(name: &str) -> NameCheck {
    if name.is_empty() {
        NameCheck::Empty
    } else if name.len() > MAX_NAME_LEN {
        NameCheck::TooLong
    } else {
        NameCheck::Ok
    }
}

/// The event-type rules: 1 ..= [`MAX_NAME_LEN`] bytes of dot-separated, non-empty
/// tokens; no whitespace, no control characters, no wildcard (`*`, `>`), which
/// are reserved for patterns.
pub(crate) const fn check_event_type(name: &str) -> NameCheck {
    let len = check_len(name);
    if !matches!(len, NameCheck::Ok) {
        return len;
    }
    let b = name.as_bytes();
    let mut i = 0;
    // Whether the current token is still empty (true at the start: ".a" is bad).
    let mut token_empty = true;
    while i < b.len() {
        let (c, n) = char_at(b, i);
        if is_whitespace(c) || is_control(c) || c == '*' as u32 || c == '>' as u32 {
            return NameCheck::Invalid;
        }
        if c == '.' as u32 {
            if token_empty {
                return NameCheck::Invalid;
            }
            token_empty = true;
        } else {
            token_empty = false;
        }
        i += n;
    }
    if token_empty {
        // Ends with a dot.
        return NameCheck::Invalid;
    }
    NameCheck::Ok
}

/// The source rules: 1 ..= [`MAX_NAME_LEN`] bytes, no control characters.
pub(crate) const fn check_source(name: &str) -> NameCheck {
    let len = check_len(name);
    if !matches!(len, NameCheck::Ok) {
        return len;
    }
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let (c, n) = char_at(b, i);
        if is_control(c) {
            return NameCheck::Invalid;
        }
        i += n;
    }
    NameCheck::Ok
}

/// Called by [`event_type!`](crate::event_type) in a `const` item: a bad constant
/// name stops the build with one of these messages.
#[doc(hidden)]
pub const fn assert_event_type(name: &str) {
    match check_event_type(name) {
        NameCheck::Ok => {}
        NameCheck::Empty => panic!("event_type!: the event type is empty"),
        NameCheck::TooLong => panic!("event_type!: the event type is longer than 255 bytes"),
        NameCheck::Invalid => panic!(
            "event_type!: invalid event type: use dot-separated non-empty tokens without whitespace, control characters, `*` or `>`"
        ),
    }
}

/// Called by [`source!`](crate::source) in a `const` item.
#[doc(hidden)]
pub const fn assert_source(name: &str) {
    match check_source(name) {
        NameCheck::Ok => {}
        NameCheck::Empty => panic!("source!: the source is empty"),
        NameCheck::TooLong => panic!("source!: the source is longer than 255 bytes"),
        NameCheck::Invalid => panic!("source!: invalid source: control characters are not allowed"),
    }
}

fn name_error(
    name: &str,
    check: NameCheck,
    invalid: fn(String) -> NameError,
) -> Result<(), NameError> {
    match check {
        NameCheck::Ok => Ok(()),
        NameCheck::Empty => Err(NameError::Empty),
        NameCheck::TooLong => Err(NameError::TooLong(name.len())),
        NameCheck::Invalid => Err(invalid(name.to_owned())),
    }
}

/// Checks an event-type name (see [`check_event_type`]).
pub(crate) fn validate_event_type(name: &str) -> Result<(), NameError> {
    name_error(name, check_event_type(name), NameError::InvalidEventType)
}

/// Checks a source name (see [`check_source`]).
pub(crate) fn validate_source(name: &str) -> Result<(), NameError> {
    name_error(name, check_source(name), NameError::InvalidSource)
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
/// The name must be a constant expression (a literal, or a `const`): it is checked
/// against the event-type rules **at compile time**, so a bad name is a build
/// error, never a panic at run time. For a name known only at run time use
/// [`EventType::try_new`] (and keep the result: interning takes a lock).
///
/// ```
/// let t = ringbus::event_type!("user.registered");
/// assert_eq!(t.name(), "user.registered");
///
/// const SHIPPED: &str = "order.shipped";
/// assert_eq!(ringbus::event_type!(SHIPPED).name(), "order.shipped");
/// ```
///
/// A space (or a wildcard, an empty token, a control character) does not compile:
///
/// ```compile_fail
/// let t = ringbus::event_type!("order placed");
/// ```
///
/// ```compile_fail
/// let t = ringbus::event_type!("order..placed");
/// ```
///
/// Nor does a value computed at run time, whose first value the per-call-site
/// cache would otherwise keep for ever:
///
/// ```compile_fail
/// let name = String::from("order.placed");
/// let t = ringbus::event_type!(&name);
/// ```
#[macro_export]
macro_rules! event_type {
    ($name:expr) => {{
        const _: () = $crate::__private::assert_event_type($name);
        static CACHE: ::std::sync::OnceLock<$crate::EventType> = ::std::sync::OnceLock::new();
        *CACHE.get_or_init(|| $crate::EventType::new($name))
    }};
}

/// A [`Source`] interned once per call site and cached in a static.
///
/// Like [`event_type!`](crate::event_type), the name must be a constant and is
/// checked at compile time (1 ..= 255 bytes, no control characters); for a name
/// known only at run time use [`Source::try_new`].
///
/// ```
/// let s = ringbus::source!("user-service");
/// assert_eq!(s.name(), "user-service");
/// ```
///
/// ```compile_fail
/// let s = ringbus::source!("");
/// ```
///
/// ```compile_fail
/// let s = ringbus::source!("user\nservice");
/// ```
#[macro_export]
macro_rules! source {
    ($name:expr) => {{
        const _: () = $crate::__private::assert_source($name);
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

    /// The `const` character classes are `std`'s, for every `char` (under Miri,
    /// which interprets a million iterations too slowly for CI, every 4099th
    /// code point plus the first 4096: ASCII, Latin-1 and the first
    /// multi-byte classes).
    #[test]
    fn const_char_classes_match_std() {
        let step = if cfg!(miri) { 4099 } else { 1 };
        let codes = (0..4096).chain((4096..=0x10_ffff).step_by(step));
        for c in codes.filter_map(char::from_u32) {
            assert_eq!(is_whitespace(c as u32), c.is_whitespace(), "{c:?}");
            assert_eq!(is_control(c as u32), c.is_control(), "{c:?}");
            let mut buf = [0; 4];
            let s = c.encode_utf8(&mut buf);
            assert_eq!(char_at(s.as_bytes(), 0), (c as u32, c.len_utf8()), "{c:?}");
        }
    }

    /// The `const` checks agree with the rules as `std`'s `str` methods state them.
    #[test]
    fn const_checks_match_the_stated_rules() {
        let stated_type = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && !name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
                && !name.split('.').any(str::is_empty)
        };
        let stated_source = |name: &str| {
            !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
        };
        let long = "é".repeat(128);
        let names = [
            "",
            ".",
            "a",
            "a.b",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a\tb",
            "a\u{85}b",
            "a\u{a0}b",
            "a\u{3000}",
            "a\u{2029}",
            "a\u{9f}",
            "a*",
            "a.>",
            "ünï.cødé",
            "日本.語",
            "🦀.🦀",
            "x-y_z.1",
            long.as_str(),
            &long[..254],
        ];
        for name in names {
            assert_eq!(
                check_event_type(name) == NameCheck::Ok,
                stated_type(name),
                "{name:?}"
            );
            assert_eq!(
                check_source(name) == NameCheck::Ok,
                stated_source(name),
                "{name:?}"
            );
        }
    }
}
