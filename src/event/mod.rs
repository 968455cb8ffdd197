//! The event: its envelope (id, type, source, time, version, subject, correlation)
//! and its payload.
//!
//! `Event<P>` is generic over the payload. The default, [`serde_json::Value`], is the
//! dynamic payload of the seed's `map[string]interface{}`; a user's own type (often an
//! enum of domain events with serde derives) is the typed path, which allocates
//! nothing per event beyond what the type itself owns.

mod domain;
mod id;
mod name;
mod subject;

#[doc(hidden)]
pub use domain::all_distinct;
pub use domain::{EventEnum, VariantError};

pub use id::{EventId, Timestamp};
#[doc(hidden)]
pub use name::{assert_event_type, assert_source};
pub(crate) use name::{validate_event_type, validate_source};
pub use name::{EventType, NameError, Source, MAX_NAMES, MAX_NAME_LEN};
pub use subject::Subject;

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::store::Position;

/// One event: an immutable fact that something happened.
///
/// Build it with [`Event::new`] (dynamic or any payload) or [`Event::typed`] (a
/// [`DomainEvent`]); add a subject, version or causal parent with the `with_*`
/// builders and [`Event::caused_by`].
///
/// # JSON
/// `Serialize`/`Deserialize` use the seed's field names — `event_id`, `event_type`,
/// `source`, `timestamp` (RFC 3339, nanoseconds, UTC), `data`, `version` — plus
/// `subject`, `correlation_id`, `causation_id` and `position` when present.
/// `version` is written as an integer; the seed's string form (`"1.0"`) is
/// accepted when reading (its major number is kept).
///
/// # Position
/// An event that went through an event store carries its place in the store's
/// total order: [`Event::position`]. Events a store hands out (reads, live
/// delivery on the bus through `publish_to`, catch-up subscriptions) have it;
/// events made with [`Event::new`] do not. It is kept in 8 bytes inside the
/// envelope (see [`Event::position`]), so `size_of::<Event<u64>>()` is 112.
///
/// # Examples
/// ```
/// use ringbus::{event_type, source, Event};
/// use serde_json::json;
///
/// let placed = Event::new(
///     event_type!("order.placed"),
///     source!("order-service"),
///     json!({ "order_id": "o-1", "amount": 42.5 }),
/// )
/// .with_subject("o-1");
/// let charged = Event::new(event_type!("payment.processed"), source!("payment-service"), json!({}))
///     .caused_by(&placed);
/// assert_eq!(charged.causation_id, Some(placed.id));
/// assert_eq!(charged.correlation_id, Some(placed.id));
///
/// let text = serde_json::to_string(&placed).unwrap();
/// assert!(text.contains("\"event_type\":\"order.placed\""));
/// let back: Event = serde_json::from_str(&text).unwrap();
/// assert_eq!(back, placed);
/// ```
#[derive(Clone, PartialEq, Debug)]
pub struct Event<P = serde_json::Value> {
    /// Unique, time-ordered id.
    pub id: EventId,
    /// What happened (`"order.placed"`); the key the bus routes by.
    pub event_type: EventType,
    /// Who said so (`"order-service"`).
    pub source: Source,
    /// When it happened: nanoseconds since the Unix epoch, UTC. [`Event::new`] stamps
    /// it from the coarse clock (resolution [`Timestamp::coarse_resolution`]).
    pub timestamp: Timestamp,
    /// Schema version of `data`, for upcasting. Starts at 1.
    pub version: u32,
    /// What it is about (an order id): orders and partitions.
    pub subject: Option<Subject>,
    /// The id of the first event of the flow this event belongs to.
    pub correlation_id: Option<EventId>,
    /// The id of the event that directly caused this one.
    pub causation_id: Option<EventId>,
    /// Its position in an event store, if it went through one: read it with
    /// [`Event::position`], set it with [`Event::with_position`].
    pub(crate) position: StorePosition,
    /// The payload.
    pub data: P,
}

/// An `Option<Position>` in 8 bytes: `position + 1`, 0 for none.
///
/// `Position` is a plain `u64` (every value valid), so `Option<Position>` needs
/// 16 bytes; this encoding leaves out `Position(u64::MAX)`, which no store
/// reaches ([`Position::next`] panics before).
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct StorePosition(Option<NonZeroU64>);

impl StorePosition {
    /// No position.
    pub(crate) const NONE: StorePosition = StorePosition(None);

    /// `position`, or none.
    ///
    /// # Panics
    /// For `Position(u64::MAX)`.
    #[inline]
    #[track_caller]
    pub(crate) fn new(position: Option<Position>) -> Self {
        StorePosition(
            position.map(|p| match p.0.checked_add(1).and_then(NonZeroU64::new) {
                Some(n) => n,
                None => panic!("Position(u64::MAX) cannot be carried by an event"),
            }),
        )
    }

    /// The position, if any.
    #[inline]
    pub(crate) fn get(self) -> Option<Position> {
        self.0.map(|n| Position(n.get() - 1))
    }
}

impl fmt::Debug for StorePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get().map(|p| p.0), f)
    }
}

impl<P> Event<P> {
    /// A new event, stamped now, version 1, without subject or causal parent.
    ///
    /// The timestamp comes from the coarse real-time clock
    /// ([`Timestamp::now_coarse`]: the kernel's last tick, resolution
    /// [`Timestamp::coarse_resolution`], 1–4 ms on Linux), made strictly increasing
    /// within the calling thread; the id is a UUID v7 carrying the timestamp's
    /// millisecond, strictly increasing within the thread. For a nanosecond-precise
    /// time, set it with [`Event::with_timestamp`]`(Timestamp::now())` (about 30 ns
    /// more).
    #[inline]
    pub fn new(event_type: EventType, source: Source, data: P) -> Self {
        let (timestamp, id) = id::stamp();
        Event {
            id,
            event_type,
            source,
            timestamp,
            version: 1,
            subject: None,
            correlation_id: None,
            causation_id: None,
            position: StorePosition::NONE,
            data,
        }
    }

    /// A new event whose type, source, version and subject come from the payload.
    ///
    /// ```
    /// use ringbus::{domain_event, Event};
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct UserRegistered { user_id: String, email: String }
    /// domain_event!(UserRegistered => "user.registered", source = "user-service");
    ///
    /// let e = Event::typed(UserRegistered { user_id: "u1".into(), email: "a@b.c".into() });
    /// assert_eq!(e.event_type.name(), "user.registered");
    /// assert_eq!(e.source.name(), "user-service");
    /// ```
    #[inline]
    pub fn typed(data: P) -> Self
    where
        P: DomainEvent,
    {
        let mut e = Event::new(data.event_type(), data.source(), data);
        e.version = e.data.version();
        e.subject = e.data.subject();
        e
    }

    /// Sets the subject.
    #[inline]
    pub fn with_subject(mut self, subject: impl Into<Subject>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the schema version.
    #[inline]
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Sets the timestamp — e.g. `Timestamp::now()` for a nanosecond-precise time
    /// instead of [`Event::new`]'s coarse one. The id keeps the millisecond it was
    /// made with.
    ///
    /// ```
    /// use ringbus::{Event, EventType, Source, Timestamp};
    /// let before = Timestamp::now();
    /// let e = Event::new(EventType::new("tick"), Source::new("clock"), 1)
    ///     .with_timestamp(Timestamp::now());
    /// assert!(e.timestamp >= before);
    /// ```
    #[inline]
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sets the correlation id.
    #[inline]
    pub fn with_correlation_id(mut self, id: EventId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Marks this event as caused by `parent`: the causation id becomes the
    /// parent's id, and the correlation id the parent's correlation id (or the
    /// parent's own id when it starts the flow).
    #[inline]
    pub fn caused_by<Q>(mut self, parent: &Event<Q>) -> Self {
        self.causation_id = Some(parent.id);
        self.correlation_id = Some(parent.correlation_id.unwrap_or(parent.id));
        self
    }

    /// Its position in the event store it went through, `None` if it went
    /// through none.
    ///
    /// A store sets it on every event it hands out: reads, the events its
    /// `publish_to` feed publishes on a bus, catch-up subscriptions. An event
    /// made with [`Event::new`] has none; `append` ignores it (the store assigns
    /// positions at commit).
    ///
    /// ```
    /// use ringbus::store::Position;
    /// use ringbus::{event_type, source, Event};
    ///
    /// let e = Event::new(event_type!("order.placed"), source!("shop"), 7);
    /// assert_eq!(e.position(), None);
    /// let e = e.with_position(Position(41));
    /// assert_eq!(e.position(), Some(Position(41)));
    /// assert_eq!(e.with_position(None).position(), None);
    /// ```
    #[inline]
    pub fn position(&self) -> Option<Position> {
        self.position.get()
    }

    /// Sets (`Position` or `Some(Position)`) or clears (`None`) the store
    /// position — for stores, bridges that carry events between processes, and
    /// tests. See [`Event::position`].
    ///
    /// # Panics
    /// For `Position(u64::MAX)`, which no store reaches (the envelope keeps the
    /// position in 8 bytes, so one value had to go).
    #[inline]
    #[track_caller]
    pub fn with_position(mut self, position: impl Into<Option<Position>>) -> Self {
        self.position = StorePosition::new(position.into());
        self
    }

    /// The same envelope with the payload mapped by `f`.
    pub fn map<Q>(self, f: impl FnOnce(P) -> Q) -> Event<Q> {
        Event {
            id: self.id,
            event_type: self.event_type,
            source: self.source,
            timestamp: self.timestamp,
            version: self.version,
            subject: self.subject,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            position: self.position,
            data: f(self.data),
        }
    }
}

/// A payload type that knows its own event type and source: the seed's
/// `UserRegisteredEvent`, `OrderPlacedEvent`, … as plain Rust types.
///
/// Implement it with [`domain_event!`](crate::domain_event) for a struct (the type
/// name is written once), or by hand for an enum of events, returning an
/// [`event_type!`](crate::event_type) per variant so the interned id is cached:
///
/// ```
/// use ringbus::{event_type, source, DomainEvent, EventType, Source};
/// enum Shop { Placed { order: String }, Paid { order: String } }
/// impl DomainEvent for Shop {
///     fn event_type(&self) -> EventType {
///         match self {
///             Shop::Placed { .. } => event_type!("order.placed"),
///             Shop::Paid { .. } => event_type!("payment.processed"),
///         }
///     }
///     fn source(&self) -> Source { source!("shop") }
///     fn subject(&self) -> Option<ringbus::Subject> {
///         match self { Shop::Placed { order } | Shop::Paid { order } => Some(order.as_str().into()) }
///     }
/// }
/// ```
pub trait DomainEvent {
    /// The event type of this value.
    fn event_type(&self) -> EventType;
    /// The source that emits it.
    fn source(&self) -> Source;
    /// Its schema version (default 1).
    fn version(&self) -> u32 {
        1
    }
    /// Its subject, if it has one (default none).
    fn subject(&self) -> Option<Subject> {
        None
    }
}

/// Implements [`DomainEvent`] for a struct, naming its event type (and source) once.
///
/// ```
/// # #[derive(Clone)] struct OrderPlaced { order_id: String }
/// ringbus::domain_event!(OrderPlaced => "order.placed", source = "order-service", version = 2,
///     subject = |e| e.order_id.as_str());
/// # use ringbus::DomainEvent;
/// let e = OrderPlaced { order_id: "o-7".into() };
/// assert_eq!(e.event_type().name(), "order.placed");
/// assert_eq!(e.version(), 2);
/// assert_eq!(e.subject().unwrap().as_str(), "o-7");
/// ```
#[macro_export]
macro_rules! domain_event {
    ($ty:ty => $name:expr, source = $source:expr
        $(, version = $version:expr)?
        $(, subject = |$e:ident| $subject:expr)? $(,)?) => {
        impl $crate::DomainEvent for $ty {
            #[inline]
            fn event_type(&self) -> $crate::EventType {
                $crate::event_type!($name)
            }
            #[inline]
            fn source(&self) -> $crate::Source {
                $crate::source!($source)
            }
            $(
                #[inline]
                fn version(&self) -> u32 {
                    $version
                }
            )?
            $(
                #[inline]
                fn subject(&self) -> ::core::option::Option<$crate::Subject> {
                    let $e = self;
                    ::core::option::Option::Some($crate::Subject::from($subject))
                }
            )?
        }
    };
}

// ---- serde: the seed's JSON field names -----------------------------------------

#[derive(Serialize)]
struct WireRef<'a, P> {
    event_id: EventId,
    event_type: &'a str,
    source: &'a str,
    timestamp: Timestamp,
    data: &'a P,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a Subject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<EventId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: Option<EventId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
}

impl<P: Serialize> Serialize for Event<P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireRef {
            event_id: self.id,
            event_type: self.event_type.name(),
            source: self.source.name(),
            timestamp: self.timestamp,
            data: &self.data,
            version: self.version,
            subject: self.subject.as_ref(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            position: self.position().map(|p| p.0),
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireVersion {
    Int(u32),
    Text(String),
}

#[derive(Deserialize)]
struct WireOwned<P> {
    event_id: EventId,
    event_type: String,
    source: String,
    timestamp: Timestamp,
    data: P,
    #[serde(default)]
    version: Option<WireVersion>,
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    correlation_id: Option<EventId>,
    #[serde(default)]
    causation_id: Option<EventId>,
    #[serde(default)]
    position: Option<u64>,
}

impl<'de, P: Deserialize<'de>> Deserialize<'de> for Event<P> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = WireOwned::<P>::deserialize(d)?;
        let version = match w.version {
            None => 1,
            Some(WireVersion::Int(v)) => v,
            Some(WireVersion::Text(t)) => t
                .split('.')
                .next()
                .and_then(|major| major.parse().ok())
                .ok_or_else(|| D::Error::custom(format!("invalid version {t:?}")))?,
        };
        let position = match w.position {
            Some(u64::MAX) => return Err(D::Error::custom("position u64::MAX is out of range")),
            p => StorePosition::new(p.map(Position)),
        };
        Ok(Event {
            id: w.event_id,
            event_type: EventType::try_new(&w.event_type).map_err(D::Error::custom)?,
            source: Source::try_new(&w.source).map_err(D::Error::custom)?,
            timestamp: w.timestamp,
            version,
            subject: w.subject,
            correlation_id: w.correlation_id,
            causation_id: w.causation_id,
            position,
            data: w.data,
        })
    }
}

#[cfg(feature = "arbitrary")]
impl<'a, P: arbitrary::Arbitrary<'a>> arbitrary::Arbitrary<'a> for Event<P> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        // Names from a small alphabet so interning stays bounded while fuzzing.
        const TYPES: &[&str] = &["a", "a.b", "order.placed", "user.registered", "x.y.z"];
        const SOURCES: &[&str] = &["s", "order-service", "user-service"];
        let opt_id = |u: &mut arbitrary::Unstructured<'a>| -> arbitrary::Result<Option<EventId>> {
            Ok(if bool::arbitrary(u)? {
                Some(EventId::from_bytes(u.arbitrary()?))
            } else {
                None
            })
        };
        Ok(Event {
            id: EventId::from_bytes(u.arbitrary()?),
            event_type: EventType::new(u.choose(TYPES)?),
            source: Source::new(u.choose(SOURCES)?),
            timestamp: Timestamp::from_nanos(u.arbitrary()?),
            version: u.arbitrary()?,
            subject: if bool::arbitrary(u)? {
                Some(Subject::new(String::arbitrary(u)?))
            } else {
                None
            },
            correlation_id: opt_id(u)?,
            causation_id: opt_id(u)?,
            position: StorePosition::new(if bool::arbitrary(u)? {
                Some(Position(u64::arbitrary(u)? >> 1))
            } else {
                None
            }),
            data: P::arbitrary(u)?,
        })
    }
}
