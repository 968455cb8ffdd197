//! The errors of encoding and decoding.

use std::fmt;

use super::ContentType;
use crate::event::NameError;

/// The part of a frame an error is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The fixed header: magic, format version, flags, frame length.
    Header,
    /// The frame body as a whole (its declared length).
    Body,
    /// The event id.
    EventId,
    /// The event-type name.
    EventType,
    /// The source name.
    Source,
    /// The timestamp (or, in a batch, the base timestamp).
    Timestamp,
    /// A batch event's timestamp delta.
    TimestampDelta,
    /// The schema version.
    Version,
    /// The subject.
    Subject,
    /// The correlation id.
    CorrelationId,
    /// The causation id.
    CausationId,
    /// The payload content-type code.
    ContentType,
    /// The payload bytes.
    Payload,
    /// The extension block.
    Extensions,
    /// The checksum.
    Checksum,
    /// A batch's event count.
    EventCount,
    /// A batch event's flags byte.
    EventFlags,
    /// A batch's event-type dictionary.
    TypeDictionary,
    /// A batch's source dictionary.
    SourceDictionary,
    /// A batch event's index into the event-type dictionary.
    TypeIndex,
    /// A batch event's index into the source dictionary.
    SourceIndex,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Header => "header",
            Field::Body => "frame body",
            Field::EventId => "event id",
            Field::EventType => "event type",
            Field::Source => "source",
            Field::Timestamp => "timestamp",
            Field::TimestampDelta => "timestamp delta",
            Field::Version => "version",
            Field::Subject => "subject",
            Field::CorrelationId => "correlation id",
            Field::CausationId => "causation id",
            Field::ContentType => "content type",
            Field::Payload => "payload",
            Field::Extensions => "extensions",
            Field::Checksum => "checksum",
            Field::EventCount => "event count",
            Field::EventFlags => "event flags",
            Field::TypeDictionary => "event-type dictionary",
            Field::SourceDictionary => "source dictionary",
            Field::TypeIndex => "event-type index",
            Field::SourceIndex => "source index",
        })
    }
}

/// Which configurable [`Limits`](super::Limits) entry was exceeded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_frame_len`](super::Limits::max_frame_len).
    FrameLen,
    /// [`Limits::max_batch_events`](super::Limits::max_batch_events).
    BatchEvents,
    /// [`Limits::max_depth`](super::Limits::max_depth).
    Depth,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::FrameLen => "frame length",
            Limit::BatchEvents => "events per batch",
            Limit::Depth => "payload nesting depth",
        })
    }
}

/// The two kinds of frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// One event.
    Event,
    /// A batch of events sharing a name dictionary.
    Batch,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Event => "event",
            FrameKind::Batch => "batch",
        })
    }
}

/// Why a byte string is not a valid frame. Offsets count from the first byte of
/// the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends at `offset`, at least `needed` bytes before the frame does.
    /// With more input the frame may still decode (the streaming reader waits).
    Truncated {
        /// Where the input ends.
        offset: usize,
        /// At least this many more bytes are needed.
        needed: usize,
    },
    /// The frame does not start with the magic bytes `EB 52`.
    BadMagic {
        /// The first two bytes found (the second is 0 if the input has one byte).
        found: [u8; 2],
    },
    /// The format version is not one this decoder reads (it reads version 1).
    UnsupportedVersion(u8),
    /// Flag bits that are reserved in this format version are set.
    UnsupportedFlags(u8),
    /// A frame of the other kind was found (an event frame where a batch was
    /// expected, or the reverse).
    WrongFrameKind {
        /// The kind asked for.
        expected: FrameKind,
        /// The kind found.
        found: FrameKind,
    },
    /// A configured limit was exceeded.
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value found (declared or reached).
        value: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A field at `offset` declares (or needs) `needed` bytes, but its enclosing
    /// frame or block has only `available` left.
    LengthMismatch {
        /// The field.
        field: Field,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in its container.
        available: u64,
    },
    /// A frame, block or payload ends `count` bytes after its content did.
    TrailingBytes {
        /// The container with bytes left over.
        field: Field,
        /// Where the unconsumed bytes start.
        offset: usize,
        /// How many.
        count: usize,
    },
    /// A varint is longer than its minimal encoding or overflows its field.
    InvalidVarint {
        /// The field.
        field: Field,
        /// Where the varint starts.
        offset: usize,
    },
    /// A text field is not valid UTF-8.
    InvalidUtf8 {
        /// The field.
        field: Field,
        /// Where the text starts.
        offset: usize,
    },
    /// An event-type or source name is not allowed, or the process-wide name
    /// table is full.
    InvalidName {
        /// [`Field::EventType`] or [`Field::Source`] (or a dictionary).
        field: Field,
        /// Why.
        error: NameError,
    },
    /// A batch event refers to a dictionary entry that does not exist.
    InvalidIndex {
        /// [`Field::TypeIndex`] or [`Field::SourceIndex`].
        field: Field,
        /// The index found.
        index: u64,
        /// The number of dictionary entries.
        len: usize,
    },
    /// An extension this decoder does not know is marked critical (odd tag).
    UnknownCriticalExtension {
        /// The extension tag.
        tag: u64,
    },
    /// The CRC-32C stored in the frame does not match its bytes.
    ChecksumMismatch {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum computed over the frame.
        computed: u32,
    },
    /// The payload's content type cannot be decoded into a typed value (raw
    /// bytes or an application-defined code); read it with
    /// [`EventRef::payload`](super::EventRef::payload).
    UnsupportedContentType(ContentType),
    /// The payload bytes are not a valid value of the requested type.
    Payload {
        /// The payload's content type.
        content_type: ContentType,
        /// What the payload decoder said.
        message: String,
    },
    /// Decoding into an [`EventEnum`](crate::EventEnum): no variant of the enum
    /// has the frame's event type. Nothing of the payload was decoded.
    UnknownEventType {
        /// The frame's event type.
        event_type: String,
    },
    /// Decoding into an [`EventEnum`](crate::EventEnum): the payload is well
    /// formed, but does not fit the variant the frame's event type names (it is
    /// never tried against the other variants).
    PayloadMismatch {
        /// The frame's event type.
        event_type: String,
        /// The payload's content type.
        content_type: ContentType,
        /// What the payload decoder said.
        message: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { offset, needed } => write!(
                f,
                "truncated frame: input ends at offset {offset}, at least {needed} more byte(s) needed"
            ),
            DecodeError::BadMagic { found } => write!(
                f,
                "bad magic: expected EB 52, found {:02X} {:02X}",
                found[0], found[1]
            ),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported format version {v} (this decoder reads version 1)")
            }
            DecodeError::UnsupportedFlags(bits) => {
                write!(f, "reserved flag bits set: {bits:#04x}")
            }
            DecodeError::WrongFrameKind { expected, found } => {
                write!(f, "expected a{} {expected} frame, found a{} {found} frame",
                    if *expected == FrameKind::Event { "n" } else { "" },
                    if *found == FrameKind::Event { "n" } else { "" })
            }
            DecodeError::LimitExceeded { limit, value, max } => {
                write!(f, "limit exceeded: {limit} is {value}, the maximum is {max}")
            }
            DecodeError::LengthMismatch { field, offset, needed, available } => write!(
                f,
                "length mismatch: {field} at offset {offset} needs {needed} byte(s) but only {available} remain in its frame"
            ),
            DecodeError::TrailingBytes { field, offset, count } => write!(
                f,
                "length mismatch: {count} unconsumed byte(s) at offset {offset} at the end of the {field}"
            ),
            DecodeError::InvalidVarint { field, offset } => {
                write!(f, "invalid varint in {field} at offset {offset} (overlong or overflowing)")
            }
            DecodeError::InvalidUtf8 { field, offset } => {
                write!(f, "invalid UTF-8 in {field} at offset {offset}")
            }
            DecodeError::InvalidName { field, error } => write!(f, "invalid {field}: {error}"),
            DecodeError::InvalidIndex { field, index, len } => write!(
                f,
                "{field} {index} is out of range: the dictionary has {len} entr{}",
                if *len == 1 { "y" } else { "ies" }
            ),
            DecodeError::UnknownCriticalExtension { tag } => {
                write!(f, "unknown critical extension tag {tag}")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: frame says {stored:#010x}, its bytes give {computed:#010x}"
            ),
            DecodeError::UnsupportedContentType(ct) => {
                write!(f, "payload content type {ct} cannot be decoded into a typed value")
            }
            DecodeError::Payload { content_type, message } => {
                write!(f, "invalid {content_type} payload: {message}")
            }
            DecodeError::UnknownEventType { event_type } => {
                write!(f, "no variant of the event enum has event type {event_type:?}")
            }
            DecodeError::PayloadMismatch { event_type, content_type, message } => write!(
                f,
                "the {content_type} payload of a {event_type:?} event does not fit its variant: {message}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::InvalidName { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why an event could not be encoded. The output buffer is left as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload's `Serialize` implementation (or the payload format) failed.
    Payload {
        /// The content type being written.
        content_type: ContentType,
        /// What the serializer said.
        message: String,
    },
    /// `encode` serializes only MessagePack and JSON; write other content types
    /// with [`Encoder::encode_raw`](super::Encoder::encode_raw).
    UnsupportedContentType(ContentType),
    /// The frame would be longer than the encoder's maximum frame length, which
    /// decoders with the same limit would refuse.
    FrameTooLarge {
        /// The frame's length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// The batch holds more events than the encoder's maximum.
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The maximum.
        max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Payload {
                content_type,
                message,
            } => {
                write!(f, "cannot encode the payload as {content_type}: {message}")
            }
            EncodeError::UnsupportedContentType(ct) => write!(
                f,
                "content type {ct} is not serialized by the codec; use encode_raw"
            ),
            EncodeError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            EncodeError::TooManyEvents { count, max } => {
                write!(f, "batch of {count} events exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}
