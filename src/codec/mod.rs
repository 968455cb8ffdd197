//! Compact binary encoding of events: the wire format of [`FORMAT.md`].
//!
//! A frame is a 5–9 byte header (magic `EB 52`, format version, flags, body
//! length) and a body of varint-prefixed fields; optional fields cost nothing when
//! absent; extensions are tagged and length-prefixed so older decoders skip them;
//! an optional CRC-32C protects stored frames. The payload is length-prefixed bytes
//! with a content-type code: MessagePack (default), JSON, or raw bytes. A batch
//! frame carries many events with one dictionary of names and delta-encoded
//! timestamps.
//!
//! | want | call |
//! | --- | --- |
//! | bytes of one event | [`encode`], [`Encoder::encode`] (JSON, checksum, raw payloads) |
//! | bytes of many events | [`encode_batch`], [`Encoder::encode_batch`] |
//! | an owned event | [`decode`], [`Decoder::decode`] |
//! | owned events of a batch | [`decode_batch`], [`Decoder::decode_batch`] |
//! | an event of an [`EventEnum`], variant chosen by event type | [`decode_typed`], [`decode_batch_typed`], [`EventRef::typed_data`] |
//! | route without decoding the payload | [`EventRef::decode`], then [`EventRef::data`] on demand |
//! | iterate a batch without copying | [`BatchRef::decode`], [`BatchRef::iter`] |
//! | a stream of frames | [`Frames`] over a slice, [`FrameReader`] over input arriving in pieces |
//!
//! # Decoding untrusted bytes
//! Every decoder returns `Ok` or a [`DecodeError`] for every input: it does not
//! panic, every loop is bounded by the input's length, every declared length is
//! checked against the bytes that remain before anything is sized from it, and
//! a payload's nesting depth and declared lengths are bounded before serde
//! sizes anything from them (MessagePack payloads are read by a reader that
//! checks as it goes, or walked once before `rmp-serde` sees them). [`Limits`]
//! bounds frame length, events per batch and nesting depth. This module
//! contains no `unsafe` code.
//!
//! # Examples
//! ```
//! use ringbus::codec::{decode, encode};
//! use ringbus::{domain_event, Event};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct UserRegistered { user_id: String, email: String, name: String }
//! domain_event!(UserRegistered => "user.registered", source = "user-service");
//!
//! let e = Event::typed(UserRegistered {
//!     user_id: "u-1".into(), email: "a@example.com".into(), name: "Ada".into(),
//! });
//! let mut buf = Vec::new();
//! let n = encode(&e, &mut buf).unwrap();
//! assert_eq!(n, buf.len());
//!
//! let (back, used) = decode::<UserRegistered>(&buf).unwrap();
//! assert_eq!(used, n);
//! assert_eq!(back, e);
//! // Any MessagePack payload also decodes as a dynamic value.
//! let (dynamic, _) = decode::<serde_json::Value>(&buf).unwrap();
//! assert_eq!(dynamic.data["email"], "a@example.com");
//! ```
//!
//! [`FORMAT.md`]: https://docs.rs/crate/ringbus/latest/source/FORMAT.md
#![forbid(unsafe_code)]

mod batch;
mod encode;
mod error;
mod event_ref;
mod frame;
mod msgpack;
mod names;
mod payload;
mod reader;
mod varint;

pub use crate::store::upcast::{decode_upcast, decode_upcast_typed};
pub use batch::{BatchIter, BatchRef};
pub use encode::Encoder;
pub use error::{DecodeError, EncodeError, Field, FrameKind, Limit};
pub use event_ref::EventRef;
pub use frame::Extensions;
pub use payload::ContentType;
pub use reader::{Frame, FrameReader, Frames};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::{Event, EventEnum};

/// Bounds a decoder enforces on untrusted input.
///
/// ```
/// use ringbus::codec::Limits;
/// let strict = Limits::new().max_frame_len(64 * 1024).max_depth(16);
/// assert_eq!(strict.max_frame_len, 64 * 1024);
/// assert_eq!(strict.max_batch_events, Limits::DEFAULT.max_batch_events);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest frame, header and checksum included, in bytes. Default
    /// 16 MiB; the format's own ceiling is a body of `u32::MAX` bytes.
    pub max_frame_len: usize,
    /// The most events in one batch frame. Default 65 536.
    pub max_batch_events: usize,
    /// The deepest nesting of arrays and maps in a payload (a scalar is depth 0,
    /// `{"a": [1]}` depth 2). Default 64. `serde_json` stops at 128 on its own.
    pub max_depth: u32,
}

impl Limits {
    /// The defaults: 16 MiB frames, 65 536 events per batch, depth 64.
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 16 << 20,
        max_batch_events: 65_536,
        max_depth: 64,
    };

    /// The defaults.
    pub const fn new() -> Self {
        Self::DEFAULT
    }

    /// Sets the longest frame accepted, in bytes.
    pub const fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// Sets the most events accepted in one batch.
    pub const fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events;
        self
    }

    /// Sets the deepest payload nesting accepted.
    pub const fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Decodes frames under configured [`Limits`]; the free functions use the
/// defaults.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    limits: Limits,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub const fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// Its limits.
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the event frame at the start of `bytes`; returns the event and the
    /// frame's length. Names are interned only once everything else decoded.
    pub fn decode<P: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<(Event<P>, usize), DecodeError> {
        event_ref::decode_owned(bytes, &self.limits)
    }

    /// Decodes the batch frame at the start of `bytes`; returns its events and
    /// the frame's length.
    pub fn decode_batch<P: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<(Vec<Event<P>>, usize), DecodeError> {
        let (batch, n) = BatchRef::decode_with(bytes, &self.limits)?;
        Ok((batch.to_events()?, n))
    }

    /// Decodes the event frame at the start of `bytes` into an [`EventEnum`]:
    /// the payload becomes the variant the frame's event type names. Fails with
    /// [`DecodeError::UnknownEventType`] or [`DecodeError::PayloadMismatch`]
    /// rather than return another variant.
    pub fn decode_typed<E: EventEnum>(
        &self,
        bytes: &[u8],
    ) -> Result<(Event<E>, usize), DecodeError> {
        let (view, n) = EventRef::decode_with(bytes, &self.limits)?;
        Ok((view.to_typed_event()?, n))
    }

    /// Decodes the batch frame at the start of `bytes` into events of an
    /// [`EventEnum`], each payload the variant its event type names; one
    /// event the enum does not know, or whose payload does not fit, fails the
    /// batch.
    pub fn decode_batch_typed<E: EventEnum>(
        &self,
        bytes: &[u8],
    ) -> Result<(Vec<Event<E>>, usize), DecodeError> {
        let (batch, n) = BatchRef::decode_with(bytes, &self.limits)?;
        Ok((batch.to_typed_events()?, n))
    }

    /// A borrowed view of the event frame at the start of `bytes`.
    pub fn event_ref<'a>(&self, bytes: &'a [u8]) -> Result<(EventRef<'a>, usize), DecodeError> {
        EventRef::decode_with(bytes, &self.limits)
    }

    /// A borrowed view of the batch frame at the start of `bytes`.
    pub fn batch_ref<'a>(&self, bytes: &'a [u8]) -> Result<(BatchRef<'a>, usize), DecodeError> {
        BatchRef::decode_with(bytes, &self.limits)
    }
}

/// Appends `event` as one frame (MessagePack payload, no checksum); returns the
/// frame's length. Allocates only if `out` must grow.
pub fn encode<P: Serialize>(event: &Event<P>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    const ENCODER: Encoder = Encoder::new();
    ENCODER.encode(event, out)
}

/// Appends `events` as one batch frame (MessagePack payloads, no checksum);
/// returns the frame's length.
pub fn encode_batch<P: Serialize>(
    events: &[Event<P>],
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    const ENCODER: Encoder = Encoder::new();
    ENCODER.encode_batch(events, out)
}

/// Decodes the event frame at the start of `bytes` with the default [`Limits`];
/// returns the event and the frame's length.
pub fn decode<P: DeserializeOwned>(bytes: &[u8]) -> Result<(Event<P>, usize), DecodeError> {
    Decoder::default().decode(bytes)
}

/// Decodes the batch frame at the start of `bytes` with the default [`Limits`];
/// returns its events and the frame's length.
pub fn decode_batch<P: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Vec<Event<P>>, usize), DecodeError> {
    Decoder::default().decode_batch(bytes)
}

/// Decodes the event frame at the start of `bytes` into an [`EventEnum`] with the
/// default [`Limits`]: the frame's event type chooses the variant.
///
/// [`decode`] deserializes a payload without looking at the event type, so it is
/// not offered for an event enum (which implements no `Deserialize`); this is its
/// counterpart.
///
/// # Examples
/// ```
/// use ringbus::codec::{decode_typed, encode, DecodeError};
/// use ringbus::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct OrderConfirmed { order_id: String }
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct PaymentFailed { order_id: String }
/// ringbus::domain_events! {
///     #[derive(Debug, Clone, PartialEq)]
///     enum ShopEvent {
///         OrderConfirmed(OrderConfirmed) => "order.confirmed", source = "order-service";
///         PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service";
///     }
/// }
///
/// // Both payloads have the same shape; the event type decides.
/// let failed = Event::typed(ShopEvent::from(PaymentFailed { order_id: "o-1".into() }));
/// let mut buf = Vec::new();
/// encode(&failed, &mut buf).unwrap();
/// let (back, _) = decode_typed::<ShopEvent>(&buf).unwrap();
/// assert_eq!(back.data, ShopEvent::PaymentFailed(PaymentFailed { order_id: "o-1".into() }));
///
/// // An event type the enum does not have is a typed error.
/// let other = Event::new(ringbus::event_type!("order.shipped"), ringbus::source!("s"),
///     serde_json::json!({ "order_id": "o-1" }));
/// buf.clear();
/// encode(&other, &mut buf).unwrap();
/// assert_eq!(
///     decode_typed::<ShopEvent>(&buf).unwrap_err(),
///     DecodeError::UnknownEventType { event_type: "order.shipped".into() },
/// );
/// ```
pub fn decode_typed<E: EventEnum>(bytes: &[u8]) -> Result<(Event<E>, usize), DecodeError> {
    Decoder::default().decode_typed(bytes)
}

/// Decodes the batch frame at the start of `bytes` into events of an
/// [`EventEnum`] with the default [`Limits`]; see [`Decoder::decode_batch_typed`].
pub fn decode_batch_typed<E: EventEnum>(
    bytes: &[u8],
) -> Result<(Vec<Event<E>>, usize), DecodeError> {
    Decoder::default().decode_batch_typed(bytes)
}
