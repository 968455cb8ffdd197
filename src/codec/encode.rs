//! The encoder: event frames and batch frames.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use super::error::EncodeError;
use super::frame::{
    EXT_POSITION, FLAG_BATCH, FLAG_CAUSATION, FLAG_CHECKSUM, FLAG_CORRELATION, FLAG_EXTENSIONS,
    FLAG_SUBJECT, MAGIC, VERSION,
};
use super::names::{put_names, source_name, type_name};
use super::payload::{self, ContentType};
use super::varint::{patch_placeholder, put_u64, zigzag};
use super::Limits;
use crate::event::{Event, EventType, Source};
use crc32c::crc32c;

/// Writes event and batch frames. [`encode`](super::encode) and
/// [`encode_batch`](super::encode_batch) use the default: MessagePack payloads,
/// no checksum, no extensions.
///
/// Encoding appends to a `Vec<u8>` and allocates only when the vector must grow:
/// clear and reuse one buffer and the steady state allocates nothing.
///
/// # Examples
/// ```
/// use ringbus::codec::{decode, ContentType, Encoder};
/// use ringbus::{event_type, source, Event};
///
/// let enc = Encoder::new().content_type(ContentType::JSON).checksum(true);
/// let e = Event::new(event_type!("a.b"), source!("s"), serde_json::json!([1, 2]));
/// let mut buf = Vec::with_capacity(256);
/// let n = enc.encode(&e, &mut buf).unwrap();
/// let (back, used) = decode::<serde_json::Value>(&buf).unwrap();
/// assert_eq!((back, used), (e, n));
/// ```
#[derive(Clone, Debug)]
pub struct Encoder {
    content_type: ContentType,
    checksum: bool,
    /// MessagePack structs as arrays instead of maps.
    compact_structs: bool,
    /// Concatenated `tag, length, data` records, written into every event.
    extensions: Vec<u8>,
    max_frame_len: usize,
    max_batch_events: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// MessagePack payloads, no checksum, no extensions, the default [`Limits`].
    pub const fn new() -> Self {
        Encoder {
            content_type: ContentType::MESSAGEPACK,
            checksum: false,
            compact_structs: false,
            extensions: Vec::new(),
            max_frame_len: Limits::DEFAULT.max_frame_len,
            max_batch_events: Limits::DEFAULT.max_batch_events,
        }
    }

    /// The payload encoding for [`Encoder::encode`]: [`ContentType::MESSAGEPACK`]
    /// (default) or [`ContentType::JSON`].
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Whether MessagePack payloads write structs as arrays (`true`: smaller and
    /// faster, as `rmp_serde::to_vec` does, but a reader without the Rust type,
    /// `serde_json::Value` included, sees an array without field names) instead
    /// of maps with field names (`false`, the default). Decoding reads both.
    pub fn compact_structs(mut self, on: bool) -> Self {
        self.compact_structs = on;
        self
    }

    /// Whether frames end with a CRC-32C of their bytes (for storage).
    pub fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Adds an extension record written into every event. Even tags are
    /// optional (decoders that do not know them skip them); odd tags are
    /// critical (decoders that do not know them refuse the frame). This format
    /// version defines no tag.
    pub fn extension(mut self, tag: u64, data: &[u8]) -> Self {
        put_u64(&mut self.extensions, tag);
        put_u64(&mut self.extensions, data.len() as u64);
        self.extensions.extend_from_slice(data);
        self
    }

    /// Refuses frames longer than `limits.max_frame_len` and batches of more
    /// than `limits.max_batch_events` events (decoders with the same limits would
    /// refuse them).
    pub fn limits(mut self, limits: &Limits) -> Self {
        self.max_frame_len = limits.max_frame_len;
        self.max_batch_events = limits.max_batch_events;
        self
    }

    /// Appends one event frame, its payload serialized with the encoder's content
    /// type; returns the frame's length. On error `out` is left as it was.
    pub fn encode<P: Serialize>(
        &self,
        event: &Event<P>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        if self.is_plain() && is_plain(event) {
            return self.encode_plain(event, out);
        }
        self.encode_general(event, out)
    }

    /// [`Encoder::encode`] through the general path, whatever the event.
    fn encode_general<P: Serialize>(
        &self,
        event: &Event<P>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let ct = self.content_type;
        self.frame(event, out, |e, out| {
            self.put_event_tail(e, ct, out, |out| {
                payload::serialize(ct, &e.data, self.compact_structs, out)
            })
        })
    }

    /// Whether this encoder writes the common frame: a MessagePack payload, no
    /// checksum, no extensions.
    #[inline]
    fn is_plain(&self) -> bool {
        self.content_type == ContentType::MESSAGEPACK
            && !self.checksum
            && self.extensions.is_empty()
    }

    /// The common frame of a plain event, with a plain encoder: the bytes of
    /// [`Encoder::encode_general`], without its per-field branches.
    #[inline]
    fn encode_plain<P: Serialize>(
        &self,
        e: &Event<P>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        debug_assert!(self.is_plain() && is_plain(e));
        let start = out.len();
        // Header (flags 0, body length placeholder), event id, names,
        // timestamp, version (one varint byte), content type, payload length
        // placeholder. (Each piece is copied as is: assembling them in a stack
        // buffer first costs a store-forwarding stall when it is copied out.)
        out.extend_from_slice(&[MAGIC[0], MAGIC[1], VERSION, 0, 0]);
        out.extend_from_slice(&e.id.to_bytes());
        put_names(out, e.event_type, e.source);
        out.extend_from_slice(&e.timestamp.as_nanos().to_le_bytes());
        out.extend_from_slice(&[e.version as u8, ContentType::MESSAGEPACK.code(), 0]);
        let pos = out.len() - 1;
        if let Err(err) =
            payload::serialize(ContentType::MESSAGEPACK, &e.data, self.compact_structs, out)
        {
            out.truncate(start);
            return Err(err);
        }
        patch_placeholder(out, pos, (out.len() - pos - 1) as u64);
        let len_pos = start + 4;
        let body_len = (out.len() - len_pos - 1) as u64;
        // A body under 128 bytes has a one-byte length: skip the varint sizing.
        let frame_len = if body_len < 0x80 {
            5 + body_len
        } else {
            4 + super::varint::len_u64(body_len) as u64 + body_len
        };
        let max = (self.max_frame_len as u64).min(u64::from(u32::MAX));
        if frame_len > max {
            out.truncate(start);
            return Err(EncodeError::FrameTooLarge {
                len: frame_len,
                max,
            });
        }
        patch_placeholder(out, len_pos, body_len);
        Ok(out.len() - start)
    }

    /// Appends one event frame whose payload is `event.data`'s bytes, verbatim,
    /// labelled `content_type` (raw bytes, an application-defined code, or bytes
    /// already in MessagePack or JSON).
    pub fn encode_raw<B: AsRef<[u8]>>(
        &self,
        event: &Event<B>,
        content_type: ContentType,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        self.frame(event, out, |e, out| {
            self.put_event_tail(e, content_type, out, |out| {
                out.extend_from_slice(e.data.as_ref());
                Ok(())
            })
        })
    }

    /// Appends one batch frame holding `events` in order; returns its length.
    pub fn encode_batch<P: Serialize>(
        &self,
        events: &[Event<P>],
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        if events.len() > self.max_batch_events {
            return Err(EncodeError::TooManyEvents {
                count: events.len(),
                max: self.max_batch_events,
            });
        }
        let ct = self.content_type;
        let start = out.len();
        let r = self.wrap(start, FLAG_BATCH, out, |out| {
            let mut types = Dict::<EventType>::default();
            let mut sources = Dict::<Source>::default();
            for e in events {
                types.add(e.event_type);
                sources.add(e.source);
            }
            put_u64(out, events.len() as u64);
            put_u64(out, types.items.len() as u64);
            for &t in &types.items {
                put_str(out, type_name(t));
            }
            put_u64(out, sources.items.len() as u64);
            for &s in &sources.items {
                put_str(out, source_name(s));
            }
            let base = events.first().map_or(0, |e| e.timestamp.as_nanos());
            out.extend_from_slice(&base.to_le_bytes());
            let mut prev = base;
            for e in events {
                out.push(self.event_flags(e));
                out.extend_from_slice(&e.id.to_bytes());
                put_u64(out, u64::from(types.index(e.event_type)));
                put_u64(out, u64::from(sources.index(e.source)));
                let ts = e.timestamp.as_nanos();
                put_u64(out, zigzag(ts.wrapping_sub(prev) as i64));
                prev = ts;
                put_u64(out, u64::from(e.version));
                self.put_event_tail(e, ct, out, |out| {
                    payload::serialize(ct, &e.data, self.compact_structs, out)
                })?;
            }
            Ok(())
        });
        r.inspect_err(|_| out.truncate(start))
    }

    fn event_flags<P>(&self, e: &Event<P>) -> u8 {
        let mut f = 0;
        if e.subject.is_some() {
            f |= FLAG_SUBJECT;
        }
        if e.correlation_id.is_some() {
            f |= FLAG_CORRELATION;
        }
        if e.causation_id.is_some() {
            f |= FLAG_CAUSATION;
        }
        if !self.extensions.is_empty() || e.position().is_some() {
            f |= FLAG_EXTENSIONS;
        }
        f
    }

    /// An event frame: header, the fields up to the version, then `tail`.
    fn frame<P>(
        &self,
        e: &Event<P>,
        out: &mut Vec<u8>,
        tail: impl FnOnce(&Event<P>, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<usize, EncodeError> {
        let start = out.len();
        let r = self.wrap(start, self.event_flags(e), out, |out| {
            out.extend_from_slice(&e.id.to_bytes());
            put_names(out, e.event_type, e.source);
            out.extend_from_slice(&e.timestamp.as_nanos().to_le_bytes());
            put_u64(out, u64::from(e.version));
            tail(e, out)
        });
        r.inspect_err(|_| out.truncate(start))
    }

    /// Header, `body`, length patched in, checksum appended; returns the frame's
    /// length.
    fn wrap(
        &self,
        start: usize,
        flags: u8,
        out: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<usize, EncodeError> {
        let flags = flags | if self.checksum { FLAG_CHECKSUM } else { 0 };
        out.extend_from_slice(&[MAGIC[0], MAGIC[1], VERSION, flags, 0]);
        let len_pos = out.len() - 1;
        body(out)?;
        let body_len = (out.len() - len_pos - 1 + if self.checksum { 4 } else { 0 }) as u64;
        let frame_len =
            (len_pos - start) as u64 + super::varint::len_u64(body_len) as u64 + body_len;
        let max = (self.max_frame_len as u64).min(u64::from(u32::MAX));
        if frame_len > max {
            return Err(EncodeError::FrameTooLarge {
                len: frame_len,
                max,
            });
        }
        patch_placeholder(out, len_pos, body_len);
        if self.checksum {
            let crc = crc32c(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        Ok(out.len() - start)
    }

    /// Subject, correlation, causation, content type, payload, extensions.
    fn put_event_tail<P>(
        &self,
        e: &Event<P>,
        ct: ContentType,
        out: &mut Vec<u8>,
        payload: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        if let Some(s) = &e.subject {
            put_str(out, s.as_str());
        }
        if let Some(id) = e.correlation_id {
            out.extend_from_slice(&id.to_bytes());
        }
        if let Some(id) = e.causation_id {
            out.extend_from_slice(&id.to_bytes());
        }
        out.push(ct.code());
        let pos = out.len();
        out.push(0);
        payload(out)?;
        let n = out.len() - pos - 1;
        patch_placeholder(out, pos, n as u64);
        if let Some(p) = e.position() {
            // The position record first (FORMAT.md §5, tag 4), then the
            // encoder's own records.
            let data_len = super::varint::len_u64(p.0);
            let record = super::varint::len_u64(EXT_POSITION)
                + super::varint::len_u64(data_len as u64)
                + data_len;
            put_u64(out, (record + self.extensions.len()) as u64);
            put_u64(out, EXT_POSITION);
            put_u64(out, data_len as u64);
            put_u64(out, p.0);
            out.extend_from_slice(&self.extensions);
        } else if !self.extensions.is_empty() {
            put_u64(out, self.extensions.len() as u64);
            out.extend_from_slice(&self.extensions);
        }
        Ok(())
    }
}

/// Whether `e`'s frame has no optional field and a one-byte version: the
/// frame [`Encoder::encode_plain`] writes.
#[inline]
fn is_plain<P>(e: &Event<P>) -> bool {
    e.subject.is_none()
        && e.correlation_id.is_none()
        && e.causation_id.is_none()
        && e.position().is_none()
        && e.version < 0x80
}

#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A batch dictionary: names in order of first use.
struct Dict<T> {
    items: Vec<T>,
    index: HashMap<T, u32, ahash::RandomState>,
    /// The last lookup, which a run of same-type events hits every time.
    last: Option<(T, u32)>,
}

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict {
            items: Vec::new(),
            index: HashMap::default(),
            last: None,
        }
    }
}

impl<T: Copy + Eq + Hash> Dict<T> {
    fn add(&mut self, t: T) {
        self.index(t);
    }

    fn index(&mut self, t: T) -> u32 {
        if let Some((lt, li)) = self.last {
            if lt == t {
                return li;
            }
        }
        let next = self.items.len() as u32;
        let i = *self.index.entry(t).or_insert_with(|| next);
        if i == next {
            self.items.push(t);
        }
        self.last = Some((t, i));
        i
    }
}
