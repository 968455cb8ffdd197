//! Batch frames: many events sharing a dictionary of event-type and source names,
//! with timestamps delta-encoded against the previous event.

use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use super::error::{DecodeError, Field, FrameKind, Limit};
use super::event_ref::{parse_tail, EventRef};
use super::frame::{parse_header, read_event_type, read_source, EVENT_FLAGS};
use super::names::{intern_event_type, intern_source};
use super::varint::{unzigzag, Reader};
use super::Limits;
use crate::event::{Event, EventEnum, EventId, EventType, Source, Timestamp};

/// The fewest bytes one batch event takes: flags, id, two indices, delta,
/// version, content type, payload length.
const MIN_BATCH_EVENT_LEN: usize = 1 + 16 + 1 + 1 + 1 + 1 + 1 + 1;

/// A dictionary; up to 8 names live inline, so a typical batch decodes without
/// allocating.
type Names<'a> = SmallVec<[&'a str; 8]>;

/// A borrowed, checked view of a batch frame; iterate it for [`EventRef`]s.
///
/// Decoding checks the whole frame, every event included, so iteration cannot
/// fail. A batch whose dictionaries hold at most 8 names each decodes without
/// allocating.
///
/// # Examples
/// ```
/// use ringbus::codec::{encode_batch, BatchRef};
/// use ringbus::{event_type, source, Event};
///
/// let events: Vec<Event> = (0..3)
///     .map(|i| Event::new(event_type!("tick"), source!("clock"), serde_json::json!(i)))
///     .collect();
/// let mut buf = Vec::new();
/// encode_batch(&events, &mut buf).unwrap();
///
/// let (batch, used) = BatchRef::decode(&buf).unwrap();
/// assert_eq!((batch.len(), used), (3, buf.len()));
/// for (view, e) in batch.iter().zip(&events) {
///     assert_eq!(view.event_type(), "tick");
///     assert_eq!(view.timestamp(), e.timestamp);
///     assert_eq!(view.data::<i32>().unwrap(), e.data);
/// }
/// ```
#[derive(Clone, Debug)]
pub struct BatchRef<'a> {
    len: usize,
    types: Names<'a>,
    sources: Names<'a>,
    base: u64,
    /// The event records, exactly `len` of them, already checked.
    events: Reader<'a>,
    max_depth: u32,
}

impl<'a> BatchRef<'a> {
    /// Decodes the batch frame at the start of `bytes` with the default
    /// [`Limits`]; returns the view and the frame's length.
    pub fn decode(bytes: &'a [u8]) -> Result<(Self, usize), DecodeError> {
        Self::decode_with(bytes, &Limits::DEFAULT)
    }

    /// Decodes the batch frame at the start of `bytes` under `limits`.
    pub fn decode_with(bytes: &'a [u8], limits: &Limits) -> Result<(Self, usize), DecodeError> {
        let h = parse_header(bytes, limits)?;
        if h.kind() != FrameKind::Batch {
            return Err(DecodeError::WrongFrameKind {
                expected: FrameKind::Batch,
                found: h.kind(),
            });
        }
        let mut r = h.verified_body(&bytes[..h.frame_len])?;
        let count_offset = r.offset();
        let count = r.varint_u64(Field::EventCount)?;
        if count > limits.max_batch_events as u64 {
            return Err(DecodeError::LimitExceeded {
                limit: Limit::BatchEvents,
                value: count,
                max: limits.max_batch_events as u64,
            });
        }
        if count > (r.remaining() / MIN_BATCH_EVENT_LEN) as u64 {
            return Err(DecodeError::LengthMismatch {
                field: Field::EventCount,
                offset: count_offset,
                needed: count.saturating_mul(MIN_BATCH_EVENT_LEN as u64),
                available: r.remaining() as u64,
            });
        }
        let types = read_dict(&mut r, Field::TypeDictionary, read_event_type)?;
        let sources = read_dict(&mut r, Field::SourceDictionary, read_source)?;
        let base = r.u64_le(Field::Timestamp)?;
        let batch = BatchRef {
            len: count as usize,
            types,
            sources,
            base,
            events: r,
            max_depth: limits.max_depth,
        };
        // Check every event now, so iteration cannot fail.
        let mut it = batch.records();
        for _ in 0..batch.len {
            it.try_next()?;
        }
        it.r.finish(Field::Body)?;
        Ok((batch, h.frame_len))
    }

    /// The number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The event-type dictionary, in order of first use.
    pub fn event_types(&self) -> &[&'a str] {
        &self.types
    }

    /// The source dictionary, in order of first use.
    pub fn sources(&self) -> &[&'a str] {
        &self.sources
    }

    /// The events, in order.
    pub fn iter(&self) -> BatchIter<'_, 'a> {
        BatchIter {
            records: self.records(),
        }
    }

    fn records(&self) -> Records<'_, 'a> {
        Records {
            batch: self,
            r: self.events.clone(),
            prev: self.base,
            left: self.len,
        }
    }

    /// Owned events, each dictionary name interned once.
    pub(crate) fn to_events<P: DeserializeOwned>(&self) -> Result<Vec<Event<P>>, DecodeError> {
        self.to_events_with(EventRef::data)
    }

    /// Owned events, each payload the variant of `E` its event type names.
    pub(crate) fn to_typed_events<E: EventEnum>(&self) -> Result<Vec<Event<E>>, DecodeError> {
        self.to_events_with(EventRef::typed_data)
    }

    /// Owned events, each payload decoded by `data`.
    fn to_events_with<P>(
        &self,
        mut data: impl FnMut(&EventRef<'a>) -> Result<P, DecodeError>,
    ) -> Result<Vec<Event<P>>, DecodeError> {
        let types = self
            .types
            .iter()
            .map(|n| intern_event_type(n, Field::TypeDictionary))
            .collect::<Result<SmallVec<[EventType; 8]>, _>>()?;
        let sources = self
            .sources
            .iter()
            .map(|n| intern_source(n, Field::SourceDictionary))
            .collect::<Result<SmallVec<[Source; 8]>, _>>()?;
        // `len` was checked against the frame's bytes (at least
        // MIN_BATCH_EVENT_LEN each), so this allocation is bounded by the input.
        let mut out = Vec::with_capacity(self.len);
        let mut it = self.records();
        while let Some((view, t, s)) = it.try_next()? {
            let data = data(&view)?;
            out.push(view.with_names(types[t], sources[s], data));
        }
        Ok(out)
    }
}

impl<'b, 'a> IntoIterator for &'b BatchRef<'a> {
    type Item = EventRef<'a>;
    type IntoIter = BatchIter<'b, 'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The events of a [`BatchRef`], as [`EventRef`]s.
#[derive(Clone, Debug)]
pub struct BatchIter<'b, 'a> {
    records: Records<'b, 'a>,
}

impl<'a> Iterator for BatchIter<'_, 'a> {
    type Item = EventRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<EventRef<'a>> {
        // Every record was checked by `BatchRef::decode`, so this never fails; if
        // it did, the iteration would end early rather than panic.
        self.records.try_next().ok().flatten().map(|(e, _, _)| e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.records.left, Some(self.records.left))
    }
}

impl ExactSizeIterator for BatchIter<'_, '_> {}

/// Walks the event records, yielding each view with its dictionary indices.
#[derive(Clone, Debug)]
struct Records<'b, 'a> {
    batch: &'b BatchRef<'a>,
    r: Reader<'a>,
    /// The previous event's timestamp (the base timestamp before the first).
    prev: u64,
    /// Records not yet read.
    left: usize,
}

impl<'a> Records<'_, 'a> {
    fn try_next(&mut self) -> Result<Option<(EventRef<'a>, usize, usize)>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let r = &mut self.r;
        let flags = r.u8(Field::EventFlags)?;
        if flags & !EVENT_FLAGS != 0 {
            return Err(DecodeError::UnsupportedFlags(flags & !EVENT_FLAGS));
        }
        let id = EventId::from_bytes(r.array16(Field::EventId)?);
        let t = index(r, Field::TypeIndex, self.batch.types.len())?;
        let s = index(r, Field::SourceIndex, self.batch.sources.len())?;
        let delta = unzigzag(r.varint_u64(Field::TimestampDelta)?);
        let ts = self.prev.wrapping_add(delta as u64);
        self.prev = ts;
        let version = r.varint_u32(Field::Version)?;
        let mut e = EventRef::head(
            id,
            self.batch.types[t],
            self.batch.sources[s],
            Timestamp::from_nanos(ts),
            version,
            self.batch.max_depth,
        );
        parse_tail(r, flags, &mut e)?;
        Ok(Some((e, t, s)))
    }
}

fn index(r: &mut Reader<'_>, field: Field, len: usize) -> Result<usize, DecodeError> {
    let i = r.varint_u64(field)?;
    if i >= len as u64 {
        return Err(DecodeError::InvalidIndex {
            field,
            index: i,
            len,
        });
    }
    Ok(i as usize)
}

fn read_dict<'a>(
    r: &mut Reader<'a>,
    field: Field,
    read: fn(&mut Reader<'a>, Field) -> Result<&'a str, DecodeError>,
) -> Result<Names<'a>, DecodeError> {
    let offset = r.offset();
    let n = r.varint_u64(field)?;
    // Each name takes at least two bytes; refuse a count the frame cannot hold
    // before looping over it.
    if n > (r.remaining() / 2) as u64 {
        return Err(DecodeError::LengthMismatch {
            field,
            offset,
            needed: n.saturating_mul(2),
            available: r.remaining() as u64,
        });
    }
    let mut names = Names::new();
    for _ in 0..n {
        names.push(read(r, field)?);
    }
    Ok(names)
}
