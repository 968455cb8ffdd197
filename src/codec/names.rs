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

/// The longest encoding of a pair [`put_names`] keeps (two one-byte lengths and
/// the names); longer pairs are written from the name caches each time.
const PAIR_BYTES: usize = 62;

/// A pair of names as an event frame holds them: length-prefixed event type,
/// then length-prefixed source. `len == 0` marks an empty entry.
#[derive(Copy, Clone)]
struct Pair {
    /// Dense ids of the event type and the source.
    ids: (u32, u32),
    /// The number of bytes of `bytes` in use: `0 ..= PAIR_BYTES`.
    len: u8,
    bytes: [u8; PAIR_BYTES],
}

thread_local! {
    /// Direct-mapped by the ids' hash. Fixed-size entries: filling one never
    /// allocates, and two pairs that share a slot only cost each other a miss.
    static PAIR_NAMES: RefCell<[Pair; PAIRS]> = const {
        RefCell::new([Pair { ids: (0, 0), len: 0, bytes: [0; PAIR_BYTES] }; PAIRS])
    };
}

/// Appends the event type's and the source's names, each a varint length and
/// its bytes (an event frame's fields 2 and 3): usually one per-thread lookup
/// and one copy.
#[inline]
pub(crate) fn put_names(out: &mut Vec<u8>, t: EventType, s: Source) {
    let ids = (t.id(), s.id());
    let slot = (ids.0.wrapping_mul(0x9E37_79B9) ^ ids.1.wrapping_mul(0x85EB_CA6B)) as usize % PAIRS;
    let hit = PAIR_NAMES.with(|c| {
        let c = c.borrow();
        let p = &c[slot];
        if p.len != 0 && p.ids == ids {
            let len = usize::from(p.len);
            if out.capacity() - out.len() >= PAIR_BYTES {
                // The whole entry, a fixed-size copy (no call to `memcpy`),
                // then cut to the pair: only when it needs no more capacity.
                let start = out.len();
                out.extend_from_slice(&p.bytes);
                out.truncate(start + len);
            } else {
                out.extend_from_slice(&p.bytes[..len]);
            }
            true
        } else {
            false
        }
    });
    if !hit {
        put_names_slow(out, t, s, slot);
    }
}

#[cold]
#[inline(never)]
fn put_names_slow(out: &mut Vec<u8>, t: EventType, s: Source, slot: usize) {
    let start = out.len();
    for name in [type_name(t), source_name(s)] {
        super::varint::put_u64(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
    }
    let written = &out[start..];
    if written.len() <= PAIR_BYTES {
        PAIR_NAMES.with(|c| {
            let p = &mut c.borrow_mut()[slot];
            p.ids = (t.id(), s.id());
            p.len = written.len() as u8;
            p.bytes[..written.len()].copy_from_slice(written);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(t: EventType, s: Source) -> Vec<u8> {
        let mut v = Vec::new();
        for name in [t.name(), s.name()] {
            super::super::varint::put_u64(&mut v, name.len() as u64);
            v.extend_from_slice(name.as_bytes());
        }
        v
    }

    #[test]
    fn pair_cache_writes_the_names_whatever_shares_a_slot() {
        // More pairs than slots, some longer than an entry holds, written in
        // turns so that entries are replaced and hit.
        let long = "x".repeat(40);
        let types: Vec<EventType> = (0..12)
            .map(|i| EventType::new(&format!("pair.cache.t{i}")))
            .chain([EventType::new(&format!("long.{long}"))])
            .collect();
        let sources: Vec<Source> = ["pc-a", "pc-b", long.as_str()]
            .iter()
            .map(|s| Source::new(s))
            .collect();
        for _ in 0..3 {
            for &t in &types {
                for &s in &sources {
                    let mut out = vec![0xaa];
                    put_names(&mut out, t, s);
                    assert_eq!(out[0], 0xaa);
                    assert_eq!(&out[1..], &expected(t, s)[..], "{} {}", t.name(), s.name());
                }
            }
        }
    }
}
