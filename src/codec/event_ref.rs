//! `EventRef`: a borrowed, allocation-free view of one event frame (or one event of
//! a batch frame).

use serde::de::DeserializeOwned;

use super::error::{DecodeError, Field, FrameKind};
use super::frame::{
    self, parse_header, read_event_type, read_source, read_str, Extensions, FLAG_CAUSATION,
    FLAG_CORRELATION, FLAG_EXTENSIONS, FLAG_SUBJECT,
};
use super::msgpack::de::FastDe;
use super::names::{event_type_of, intern_event_type, intern_source, source_of};
use super::payload::{self, ContentType};
use super::varint::Reader;
use super::Limits;
use crate::event::{
    Event, EventEnum, EventId, EventType, Source, StorePosition, Subject, Timestamp,
};
use crate::store::Position;

/// A decoded event that borrows its names, subject and payload from the frame.
///
/// Decoding it checks the whole frame (header, checksum, lengths, UTF-8, name
/// rules, extensions) and allocates nothing: routing on the event type or the
/// subject never pays for the payload. [`EventRef::data`] decodes the payload on
/// demand; [`EventRef::to_event`] makes an owned [`Event`].
///
/// # Examples
/// ```
/// use ringbus::codec::{encode, EventRef};
/// use ringbus::{event_type, source, Event};
///
/// let e = Event::new(event_type!("order.placed"), source!("shop"), serde_json::json!({"n": 1}))
///     .with_subject("o-1");
/// let mut buf = Vec::new();
/// encode(&e, &mut buf).unwrap();
///
/// let (view, used) = EventRef::decode(&buf).unwrap();
/// assert_eq!(used, buf.len());
/// assert_eq!(view.event_type(), "order.placed");
/// assert_eq!(view.subject(), Some("o-1"));
/// assert_eq!(view.id(), e.id);
/// let data: serde_json::Value = view.data().unwrap();
/// assert_eq!(data["n"], 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub(crate) id: EventId,
    pub(crate) event_type: &'a str,
    pub(crate) source: &'a str,
    pub(crate) timestamp: Timestamp,
    pub(crate) version: u32,
    pub(crate) subject: Option<&'a str>,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) content_type: ContentType,
    pub(crate) payload: &'a [u8],
    /// The checked extension block (empty when absent).
    pub(crate) extensions: &'a [u8],
    /// The store position from the extension block (tag 4), if any; never
    /// `u64::MAX`.
    pub(crate) position: Option<u64>,
    /// The depth limit for [`EventRef::data`].
    pub(crate) max_depth: u32,
}

impl<'a> EventRef<'a> {
    /// Decodes the event frame at the start of `bytes` with the default
    /// [`Limits`]; returns the view and the frame's length.
    #[inline]
    pub fn decode(bytes: &'a [u8]) -> Result<(Self, usize), DecodeError> {
        Self::decode_with(bytes, &Limits::DEFAULT)
    }

    /// Decodes the event frame at the start of `bytes` under `limits`.
    #[inline]
    pub fn decode_with(bytes: &'a [u8], limits: &Limits) -> Result<(Self, usize), DecodeError> {
        let h = parse_header(bytes, limits)?;
        if h.kind() != FrameKind::Event {
            return Err(DecodeError::WrongFrameKind {
                expected: FrameKind::Event,
                found: h.kind(),
            });
        }
        let frame = &bytes[..h.frame_len];
        let mut r = h.verified_body(frame)?;
        let e = parse_event_body(&mut r, h.flags, limits.max_depth)?;
        r.finish(Field::Body)?;
        Ok((e, h.frame_len))
    }

    /// The event id.
    #[inline]
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The event-type name (already checked against the event-type rules).
    #[inline]
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The interned [`EventType`] of this name, if this process has interned it
    /// (for routing: an unknown type has no handlers). Never grows the name table.
    #[inline]
    pub fn lookup_event_type(&self) -> Option<EventType> {
        EventType::lookup(self.event_type)
    }

    /// The source name.
    #[inline]
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The timestamp.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The schema version.
    #[inline]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The subject, if any.
    #[inline]
    pub fn subject(&self) -> Option<&'a str> {
        self.subject
    }

    /// The correlation id, if any.
    #[inline]
    pub fn correlation_id(&self) -> Option<EventId> {
        self.correlation_id
    }

    /// The causation id, if any.
    #[inline]
    pub fn causation_id(&self) -> Option<EventId> {
        self.causation_id
    }

    /// How the payload is encoded.
    #[inline]
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The payload bytes, undecoded.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The frame's extension records, `(tag, data)`, in order: the store
    /// position (tag 4, also read by [`EventRef::position`]) and the ones this
    /// version does not know (skipped, as the format says), passed on for
    /// inspection.
    #[inline]
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions::new(self.extensions)
    }

    /// The event's position in its event store, if the frame carries one
    /// (FORMAT.md §5, tag 4). [`Event::position`] of the owned decodes.
    ///
    /// (`InMemoryStore::scan_all` passes each position beside the view: its
    /// frames are encoded before their position is assigned.)
    #[inline]
    pub fn position(&self) -> Option<Position> {
        self.position.map(Position)
    }

    /// Decodes the payload as `P` (MessagePack or JSON content types), within the
    /// nesting-depth limit the view was decoded with.
    pub fn data<P: DeserializeOwned>(&self) -> Result<P, DecodeError> {
        payload::deserialize(self.content_type, self.payload, self.max_depth)
    }

    /// An owned event: the payload decoded as `P`, the names interned (which may
    /// fail with [`DecodeError::InvalidName`] when the process-wide table is full).
    pub fn to_event<P: DeserializeOwned>(&self) -> Result<Event<P>, DecodeError> {
        let data = self.data()?;
        self.envelope(data)
    }

    /// Decodes the payload as the variant of the event enum `E` that this
    /// event's type names (MessagePack or JSON content types).
    ///
    /// Fails with [`DecodeError::UnknownEventType`] if no variant has this event
    /// type (without decoding the payload), and with
    /// [`DecodeError::PayloadMismatch`] if the payload does not fit that variant;
    /// it never tries another variant.
    ///
    /// ```
    /// use ringbus::codec::{encode, DecodeError, EventRef};
    /// use ringbus::Event;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Debug, Serialize, Deserialize)] struct Shipped { order_id: String }
    /// #[derive(Debug, Serialize, Deserialize)] struct Delivered { order_id: String }
    /// ringbus::domain_events! {
    ///     #[derive(Debug)]
    ///     enum Parcel {
    ///         Shipped(Shipped) => "parcel.shipped", source = "warehouse";
    ///         Delivered(Delivered) => "parcel.delivered", source = "courier";
    ///     }
    /// }
    ///
    /// let mut buf = Vec::new();
    /// encode(&Event::typed(Parcel::from(Delivered { order_id: "o-1".into() })), &mut buf).unwrap();
    /// let (view, _) = EventRef::decode(&buf).unwrap();
    /// assert!(matches!(view.typed_data::<Parcel>().unwrap(), Parcel::Delivered(_)));
    /// ```
    pub fn typed_data<E: EventEnum>(&self) -> Result<E, DecodeError> {
        payload::deserialize_variant(
            self.content_type,
            self.payload,
            self.max_depth,
            self.event_type,
        )
    }

    /// An owned event whose payload is [`typed_data`](EventRef::typed_data): the
    /// variant of `E` named by the event type. The envelope (source, version,
    /// subject, …) is the frame's, not recomputed from the variant.
    pub fn to_typed_event<E: EventEnum>(&self) -> Result<Event<E>, DecodeError> {
        let data = self.typed_data()?;
        self.envelope(data)
    }

    /// An owned event whose payload is the raw payload bytes (any content type).
    pub fn to_event_raw(&self) -> Result<Event<&'a [u8]>, DecodeError> {
        self.envelope(self.payload)
    }

    fn envelope<P>(&self, data: P) -> Result<Event<P>, DecodeError> {
        let event_type = intern_event_type(self.event_type, Field::EventType)?;
        let source = intern_source(self.source, Field::Source)?;
        Ok(self.with_names(event_type, source, data))
    }

    /// The owned event with names already interned.
    pub(crate) fn with_names<P>(&self, event_type: EventType, source: Source, data: P) -> Event<P> {
        Event {
            id: self.id,
            event_type,
            source,
            timestamp: self.timestamp,
            version: self.version,
            subject: self.subject.map(Subject::new),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            position: StorePosition::new(self.position.map(Position)),
            data,
        }
    }
}

/// Decodes the event frame at the start of `bytes` into an owned event: what
/// [`EventRef::decode_with`] then [`EventRef::to_event`] do, with the same
/// checks in the same order (so the same error for every input), without
/// building the view (a large value, copied at every step) and with each name
/// looked up in the per-thread cache once instead of twice.
#[inline]
pub(crate) fn decode_owned<P: DeserializeOwned>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Event<P>, usize), DecodeError> {
    let h = parse_header(bytes, limits)?;
    if h.kind() != FrameKind::Event {
        return Err(DecodeError::WrongFrameKind {
            expected: FrameKind::Event,
            found: h.kind(),
        });
    }
    let frame = &bytes[..h.frame_len];
    let mut r = h.verified_body(frame)?;
    let id = EventId::from_bytes(r.array16(Field::EventId)?);
    let offset = r.offset();
    let event_type = event_type_of(r.len_prefixed(Field::EventType)?, offset, Field::EventType)?;
    let offset = r.offset();
    let source = source_of(r.len_prefixed(Field::Source)?, offset, Field::Source)?;
    let timestamp = Timestamp::from_nanos(r.u64_le(Field::Timestamp)?);
    let version = r.varint_u32(Field::Version)?;
    let flags = h.flags;
    let subject = match flags & FLAG_SUBJECT {
        0 => None,
        _ => Some(read_str(&mut r, Field::Subject)?),
    };
    let correlation_id = match flags & FLAG_CORRELATION {
        0 => None,
        _ => Some(EventId::from_bytes(r.array16(Field::CorrelationId)?)),
    };
    let causation_id = match flags & FLAG_CAUSATION {
        0 => None,
        _ => Some(EventId::from_bytes(r.array16(Field::CausationId)?)),
    };
    let content_type = ContentType::from_code(r.u8(Field::ContentType)?);
    let payload = r.len_prefixed(Field::Payload)?;
    let position = match flags & FLAG_EXTENSIONS {
        0 => None,
        _ => frame::read_extensions(&mut r)?.position,
    };
    r.finish(Field::Body)?;
    // The fast MessagePack read, spelled out rather than through
    // `payload::deserialize`: each `Result` layer it would add is one more copy
    // of the payload value.
    let mut fast = FastDe::new(payload, limits.max_depth);
    let data = match (content_type == ContentType::MESSAGEPACK).then(|| P::deserialize(&mut fast)) {
        Some(Ok(v)) if fast.end().is_ok() => v,
        _ => payload::deserialize_checked(content_type, payload, limits.max_depth)?,
    };
    let event = Event {
        id,
        event_type: event_type.intern(Field::EventType)?,
        source: source.intern(Field::Source)?,
        timestamp,
        version,
        subject: subject.map(Subject::new),
        correlation_id,
        causation_id,
        position: StorePosition::new(position.map(Position)),
        data,
    };
    Ok((event, h.frame_len))
}

/// The body of an event frame, after the header and before the checksum.
#[inline(always)]
fn parse_event_body<'a>(
    r: &mut Reader<'a>,
    flags: u8,
    max_depth: u32,
) -> Result<EventRef<'a>, DecodeError> {
    let id = EventId::from_bytes(r.array16(Field::EventId)?);
    let event_type = read_event_type(r, Field::EventType)?;
    let source = read_source(r, Field::Source)?;
    let timestamp = Timestamp::from_nanos(r.u64_le(Field::Timestamp)?);
    let version = r.varint_u32(Field::Version)?;
    let mut e = EventRef::head(id, event_type, source, timestamp, version, max_depth);
    parse_tail(r, flags, &mut e)?;
    Ok(e)
}

impl<'a> EventRef<'a> {
    /// The fields before the version, in both frame kinds; the optional rest
    /// (`parse_tail`) starts empty.
    #[inline(always)]
    pub(crate) fn head(
        id: EventId,
        event_type: &'a str,
        source: &'a str,
        timestamp: Timestamp,
        version: u32,
        max_depth: u32,
    ) -> Self {
        EventRef {
            id,
            event_type,
            source,
            timestamp,
            version,
            subject: None,
            correlation_id: None,
            causation_id: None,
            content_type: ContentType::RAW,
            payload: &[],
            extensions: &[],
            position: None,
            max_depth,
        }
    }
}

/// The fields every event has after its version, in both frame kinds: optional
/// subject, correlation and causation ids; content type; payload; extensions.
#[inline(always)]
pub(crate) fn parse_tail<'a>(
    r: &mut Reader<'a>,
    flags: u8,
    e: &mut EventRef<'a>,
) -> Result<(), DecodeError> {
    if flags & FLAG_SUBJECT != 0 {
        e.subject = Some(read_str(r, Field::Subject)?);
    }
    if flags & FLAG_CORRELATION != 0 {
        e.correlation_id = Some(EventId::from_bytes(r.array16(Field::CorrelationId)?));
    }
    if flags & FLAG_CAUSATION != 0 {
        e.causation_id = Some(EventId::from_bytes(r.array16(Field::CausationId)?));
    }
    e.content_type = ContentType::from_code(r.u8(Field::ContentType)?);
    e.payload = r.len_prefixed(Field::Payload)?;
    if flags & FLAG_EXTENSIONS != 0 {
        let x = frame::read_extensions(r)?;
        e.extensions = x.block;
        e.position = x.position;
    }
    Ok(())
}
