//! Decoded names: a per-thread, direct-mapped cache of names already checked and
//! known to the process-wide table, in front of UTF-8 validation, the name rules
//! and interning. Decoding a stream of events of known types then checks each
//! name with one hash and one comparison, and takes no lock. A name the table
//! does not know is checked in full every time (and looked up once, under the
//! table's read lock); the borrowed decoders never add names to the table.

use std::cell::{Cell, RefCell};

use super::error::{DecodeError, Field};
use crate::event::{EventType, Source};

const WAYS: usize = 8;
const SLOTS: usize = 64;

/// A name from a frame that was checked against the name rules and found in the
/// process-wide table: its `'static` copy there, and its id once known.
#[derive(Copy, Clone)]
struct Known<T: Copy> {
    name: &'static str,
    id: Option<T>,
}

/// A direct-mapped per-thread cache of known names, indexed by a cheap hash of
/// the bytes. A hit means the bytes equal a name already checked for this
/// field's rules, so decoding skips UTF-8 and rule checks and takes no lock.
struct Cache<T: Copy + 'static> {
    slots: [Cell<Option<Known<T>>>; SLOTS],
}

impl<T: Copy + 'static> Cache<T> {
    const fn new() -> Self {
        Cache {
            slots: [const { Cell::new(None) }; SLOTS],
        }
    }

    #[inline(always)]
    fn slot(bytes: &[u8]) -> usize {
        let n = bytes.len();
        let (first, last) = match bytes {
            [] => (0, 0),
            [f, .., l] => (*f as usize, *l as usize),
            [f] => (*f as usize, *f as usize),
        };
        (n.wrapping_mul(7) ^ first.wrapping_mul(31) ^ last.wrapping_mul(131)) % SLOTS
    }

    #[inline(always)]
    fn get(&self, bytes: &[u8]) -> Option<Known<T>> {
        match self.slots[Self::slot(bytes)].get() {
            Some(k) if k.name.as_bytes() == bytes => Some(k),
            _ => None,
        }
    }

    fn put(&self, k: Known<T>) {
        self.slots[Self::slot(k.name.as_bytes())].set(Some(k));
    }
}

thread_local! {
    static TYPES: Cache<EventType> = const { Cache::new() };
    static SOURCES: Cache<Source> = const { Cache::new() };
}

/// A checked name from a frame: its interned id when the per-thread cache knew
/// it, else the name to intern.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Name<'a, T> {
    /// Already interned.
    Interned(T),
    /// Checked against the rules; not interned yet.
    Checked(&'a str),
}

/// The event type in `bytes` (at `offset` in the frame), checked: what
/// [`event_type_name`] checks, with the interned id when the cache has it.
#[inline]
pub(crate) fn event_type_of(
    bytes: &[u8],
    offset: usize,
    field: Field,
) -> Result<Name<'_, EventType>, DecodeError> {
    if let Some(k) = TYPES.with(|c| c.get(bytes)) {
        return Ok(match k.id {
            Some(t) => Name::Interned(t),
            None => Name::Checked(k.name),
        });
    }
    event_type_name(bytes, offset, field).map(Name::Checked)
}

/// The source in `bytes` (at `offset` in the frame), checked: what
/// [`source_name_of`] checks, with the interned id when the cache has it.
#[inline]
pub(crate) fn source_of(
    bytes: &[u8],
    offset: usize,
    field: Field,
) -> Result<Name<'_, Source>, DecodeError> {
    if let Some(k) = SOURCES.with(|c| c.get(bytes)) {
        return Ok(match k.id {
            Some(s) => Name::Interned(s),
            None => Name::Checked(k.name),
        });
    }
    source_name_of(bytes, offset, field).map(Name::Checked)
}

impl Name<'_, EventType> {
    /// The interned event type (interning it now if need be).
    #[inline]
    pub(crate) fn intern(self, field: Field) -> Result<EventType, DecodeError> {
        match self {
            Name::Interned(t) => Ok(t),
            Name::Checked(name) => intern_event_type(name, field),
        }
    }
}

impl Name<'_, Source> {
    /// The interned source (interning it now if need be).
    #[inline]
    pub(crate) fn intern(self, field: Field) -> Result<Source, DecodeError> {
        match self {
            Name::Interned(s) => Ok(s),
            Name::Checked(name) => intern_source(name, field),
        }
    }
}

/// The event-type name in `bytes` (at `offset` in the frame), checked.
#[inline]
pub(crate) fn event_type_name(
    bytes: &[u8],
    offset: usize,
    field: Field,
) -> Result<&str, DecodeError> {
    if let Some(k) = TYPES.with(|c| c.get(bytes)) {
        return Ok(k.name);
    }
    let s = utf8(bytes, offset, field)?;
    super::frame::check_event_type(s).map_err(|error| DecodeError::InvalidName { field, error })?;
    if let Some(t) = EventType::lookup(s) {
        TYPES.with(|c| {
            c.put(Known {
                name: t.name(),
                id: Some(t),
            })
        });
    }
    Ok(s)
}

/// The source name in `bytes` (at `offset` in the frame), checked.
#[inline]
pub(crate) fn source_name_of(
    bytes: &[u8],
    offset: usize,
    field: Field,
) -> Result<&str, DecodeError> {
    if let Some(k) = SOURCES.with(|c| c.get(bytes)) {
        return Ok(k.name);
    }
    let s = utf8(bytes, offset, field)?;
    super::frame::check_source(s).map_err(|error| DecodeError::InvalidName { field, error })?;
    // Event types and sources share one table: a lookup finds the `'static`
    // copy of a source name too (its `Source` id comes when it is interned).
    if let Some(t) = EventType::lookup(s) {
        SOURCES.with(|c| {
            c.put(Known {
                name: t.name(),
                id: None,
            })
        });
    }
    Ok(s)
}

#[inline]
fn utf8(bytes: &[u8], offset: usize, field: Field) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field, offset })
}

/// Interns a decoded (already checked) event-type name.
#[inline]
pub(crate) fn intern_event_type(name: &str, field: Field) -> Result<EventType, DecodeError> {
    if let Some(Known { id: Some(t), .. }) = TYPES.with(|c| c.get(name.as_bytes())) {
        return Ok(t);
    }
    let t = EventType::try_new(name).map_err(|error| DecodeError::InvalidName { field, error })?;
    TYPES.with(|c| {
        c.put(Known {
            name: t.name(),
            id: Some(t),
        })
    });
    Ok(t)
}

/// Interns a decoded (already checked) source name.
#[inline]
pub(crate) fn intern_source(name: &str, field: Field) -> Result<Source, DecodeError> {
    if let Some(Known { id: Some(s), .. }) = SOURCES.with(|c| c.get(name.as_bytes())) {
        return Ok(s);
    }
    let s = Source::try_new(name).map_err(|error| DecodeError::InvalidName { field, error })?;
    SOURCES.with(|c| {
        c.put(Known {
            name: s.name(),
            id: Some(s),
        })
    });
    Ok(s)
}

/// The last few `(id, name)` pairs looked up on this thread, so encoding does not
/// take the name table's lock per event.
struct NameCache {
    /// `(dense id, name)`.
    entries: [Option<(u32, &'static str)>; WAYS],
    /// The next entry to replace, in `0 .. WAYS`.
    next: usize,
}

impl NameCache {
    const fn new() -> Self {
        NameCache {
            entries: [None; WAYS],
            next: 0,
        }
    }

    #[inline]
    fn get_or(&mut self, id: u32, name: impl FnOnce() -> &'static str) -> &'static str {
        if let Some((_, n)) = self.entries.iter().flatten().find(|(i, _)| *i == id) {
            return n;
        }
        let n = name();
        self.entries[self.next] = Some((id, n));
        self.next = (self.next + 1) % WAYS;
        n
    }
}

thread_local! {
    static TYPE_NAMES: RefCell<NameCache> = const { RefCell::new(NameCache::new()) };
    static SOURCE_NAMES: RefCell<NameCache> = const { RefCell::new(NameCache::new()) };
}

/// `t.name()`, cached per thread.
#[inline]
pub(crate) fn type_name(t: EventType) -> &'static str {
    TYPE_NAMES.with(|c| c.borrow_mut().get_or(t.id(), || t.name()))
}

/// `s.name()`, cached per thread.
#[inline]
pub(crate) fn source_name(s: Source) -> &'static str {
    SOURCE_NAMES.with(|c| c.borrow_mut().get_or(s.id(), || s.name()))
}

/// How many `(event type, source)` pairs [`put_names`] keeps per thread.
const PAIRS: usize = 16;

/// The last pairs of names written on this thread, each as the bytes an event
/// frame holds (length-prefixed event type, then length-prefixed source): an
/// event frame's names cost one lookup and one copy.
struct PairCache {
    /// Direct-mapped by [`PairCache::slot`]: `(type id, source id, bytes)`.
    slots: [Option<(u32, u32, Box<[u8]>)>; PAIRS],
}

impl PairCache {
    #[inline(always)]
    fn slot(t: u32, s: u32) -> usize {
        (t.wrapping_mul(0x9E37_79B9) ^ s) as usize % PAIRS
    }
}

thread_local! {
    static PAIR_NAMES: RefCell<PairCache> = const {
        RefCell::new(PairCache { slots: [const { None }; PAIRS] })
    };
}

/// Appends the event type's and the source's names, each a varint length and
/// its bytes (an event frame's fields 2 and 3).
#[inline]
pub(crate) fn put_names(out: &mut Vec<u8>, t: EventType, s: Source) {
    PAIR_NAMES.with(|c| {
        let mut c = c.borrow_mut();
        let slot = &mut c.slots[PairCache::slot(t.id(), s.id())];
        match slot {
            Some((ti, si, bytes)) if *ti == t.id() && *si == s.id() => {
                out.extend_from_slice(bytes);
            }
            _ => {
                let mut bytes = Vec::new();
                for name in [t.name(), s.name()] {
                    super::varint::put_u64(&mut bytes, name.len() as u64);
                    bytes.extend_from_slice(name.as_bytes());
                }
                out.extend_from_slice(&bytes);
                *slot = Some((t.id(), s.id(), bytes.into_boxed_slice()));
            }
        }
    })
}
