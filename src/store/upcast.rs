//! Event versioning: upcasting a stored event from the schema it was written in
//! to the schema the code reads, one link at a time.
//!
//! Events are immutable: a store never rewrites them. When a payload's schema
//! changes, the code registers a *link* that turns the old shape into the next
//! one — `order.placed` v1 → v2 — and every typed read path runs the links an
//! event needs (v1 → v2 → v3) before the payload meets its Rust type.
//!
//! # The rules
//! * A link turns `(event_type, v)` into `v + 1`; it may rewrite the payload and
//!   rename the type. The registry stamps the new version itself, so a link only
//!   says what changed.
//! * The registry judges only the event types it has links for. For such a type
//!   [`latest`](Upcasters::latest) is one more than its highest link, and an
//!   event whose version has no link is either at that latest version (done), newer
//!   ([`UpcastErrorKind::TooNew`]: written by newer code), or older with no way
//!   forward ([`UpcastErrorKind::MissingLink`]). An event of a type without links
//!   — including the new name of a renamed type, until it gets links of its own —
//!   is returned as it is.
//! * A link that fails (or panics) is [`UpcastErrorKind::LinkFailed`]; a chain
//!   whose result does not fit the requested payload type is
//!   [`UpcastErrorKind::Mismatch`]. Every error names the event type and version
//!   of the step that failed, and the store position once the caller adds it with
//!   [`UpcastError::at`]. No error hands back a partly upcast event.
//!
//! # What an event at the latest version costs
//! Nothing beyond the plain decode: the typed entry points
//! ([`Upcasters::to_event`], [`Upcasters::to_typed_event`],
//! [`codec::decode_upcast`](crate::codec::decode_upcast) and
//! [`codec::decode_upcast_typed`](crate::codec::decode_upcast_typed)) read the
//! type and version from the frame ([`EventRef`]) without touching the payload, and
//! an event that needs no link is decoded straight into its type, as
//! [`codec::decode`](crate::codec::decode) would. Only an event that needs links
//! takes the detour through [`serde_json::Value`]. The check is one hash lookup of
//! the event type (none when the registry is empty) and allocates nothing.
//!
//! # Examples
//! ```
//! use ringbus::codec::{decode_upcast, encode};
//! use ringbus::store::upcast::{UpcastError, Upcasters};
//! use ringbus::{event_type, source, Event};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! // Version 3 of `user.registered`, as the code reads it today.
//! #[derive(Deserialize, Debug, PartialEq)]
//! struct UserRegistered { first: String, last: String, verified: bool }
//!
//! let mut upcasters = Upcasters::new();
//! upcasters
//!     // v1 → v2: `name` was split into `first` and `last`.
//!     .add("user.registered", 1, |mut e| {
//!         let name = e.data["name"].as_str().ok_or_else(|| UpcastError::failed("no name"))?;
//!         let (first, last) = name.split_once(' ').unwrap_or((name, ""));
//!         e.data = json!({ "first": first, "last": last });
//!         Ok(e)
//!     })
//!     .unwrap()
//!     // v2 → v3: `verified` was added.
//!     .add("user.registered", 2, |mut e| {
//!         e.data["verified"] = json!(false);
//!         Ok(e)
//!     })
//!     .unwrap();
//! assert_eq!(upcasters.latest("user.registered"), Some(3));
//!
//! // An event written by the first version of the code.
//! let old = Event::new(event_type!("user.registered"), source!("users"),
//!     json!({ "name": "Ada Lovelace" }));
//! let mut frame = Vec::new();
//! encode(&old, &mut frame).unwrap();
//!
//! let (e, _) = decode_upcast::<UserRegistered>(&frame, &upcasters).unwrap();
//! assert_eq!(e.version, 3);
//! assert_eq!(e.id, old.id);
//! assert_eq!(e.data, UserRegistered { first: "Ada".into(), last: "Lovelace".into(), verified: false });
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Position;
use crate::codec::{DecodeError, EventRef};
use crate::event::{validate_event_type, Event, EventEnum, NameError};
use crate::unwind::{drop_quietly, panic_message};

/// One link: schema `v` of an event type in, schema `v + 1` out.
type Link = Arc<dyn Fn(Event<Value>) -> Result<Event<Value>, UpcastError> + Send + Sync>;

/// The links of one event type, keyed by the version they start from.
#[derive(Clone)]
struct Links {
    by_version: BTreeMap<u32, Link>,
    /// One more than the highest key of `by_version` (which is never empty).
    latest: u32,
}

/// A registry of upcasters: per event type, the links that turn schema `v` into
/// `v + 1`.
///
/// Build it once at start-up with [`add`](Upcasters::add), share it (it is
/// `Send + Sync`, and cloning shares the links), and read through it:
/// [`to_event`](Upcasters::to_event) / [`to_typed_event`](Upcasters::to_typed_event)
/// for a frame, [`upcast`](Upcasters::upcast) for a dynamic event. See the
/// [module docs](self) for the rules.
///
/// # Examples
/// ```
/// use ringbus::store::upcast::{UpcastErrorKind, Upcasters};
/// use ringbus::{event_type, source, Event};
/// use serde_json::json;
///
/// let mut upcasters = Upcasters::new();
/// // v1 → v2: `amount` became `total_cents`.
/// upcasters.add("order.placed", 1, |mut e| {
///     let cents = e.data["amount"].as_f64().unwrap_or(0.0) * 100.0;
///     e.data = json!({ "total_cents": cents as u64 });
///     Ok(e)
/// }).unwrap();
///
/// let v1 = Event::new(event_type!("order.placed"), source!("shop"), json!({ "amount": 4.5 }));
/// let v2 = upcasters.upcast(v1).unwrap();
/// assert_eq!(v2.version, 2);
/// assert_eq!(v2.data, json!({ "total_cents": 450 }));
///
/// // Written by newer code than this registry knows.
/// let v5 = Event::new(event_type!("order.placed"), source!("shop"), json!({})).with_version(5);
/// let err = upcasters.upcast(v5).unwrap_err();
/// assert_eq!(err.kind(), &UpcastErrorKind::TooNew { latest: 2 });
/// assert_eq!((err.event_type(), err.version()), ("order.placed", 5));
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    types: HashMap<Box<str>, Links, ahash::RandomState>,
}

impl Upcasters {
    /// An empty registry: every event is returned as it is.
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// let upcasters = Upcasters::new();
    /// assert_eq!(upcasters.latest("order.placed"), None);
    /// assert_eq!(upcasters.needs_upcast("order.placed", 7), Ok(false));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the link that turns `event_type` at schema `from_version` into
    /// schema `from_version + 1`.
    ///
    /// `f` receives the whole event and returns the next version of it: it may
    /// rewrite the payload and rename the event type (the chain then goes on with
    /// the new type's links). The registry sets the returned event's `version` to
    /// `from_version + 1` whatever `f` left there. To refuse an event, return
    /// [`UpcastError::failed`]; a panic in `f` is caught and reported the same
    /// way.
    ///
    /// # Errors
    /// [`UpcastConfigError`] when `event_type` already has a link from
    /// `from_version` ([`DuplicateLink`](UpcastConfigErrorKind::DuplicateLink)),
    /// `from_version` is `u32::MAX` ([`VersionOverflow`](UpcastConfigErrorKind::VersionOverflow)),
    /// or `event_type` is not a valid event-type name
    /// ([`InvalidEventType`](UpcastConfigErrorKind::InvalidEventType)). The
    /// registry is unchanged then.
    ///
    /// # Examples
    /// ```
    /// use ringbus::store::upcast::{UpcastConfigErrorKind, Upcasters};
    /// use ringbus::{event_type, source, Event};
    /// use serde_json::json;
    ///
    /// let mut upcasters = Upcasters::new();
    /// // `customer.created` was renamed `client.created` when its schema became v2.
    /// upcasters.add("customer.created", 1, |mut e| {
    ///     e.event_type = event_type!("client.created");
    ///     Ok(e)
    /// }).unwrap();
    /// let old = Event::new(event_type!("customer.created"), source!("crm"), json!({ "id": 7 }));
    /// let new = upcasters.upcast(old).unwrap();
    /// assert_eq!((new.event_type.name(), new.version), ("client.created", 2));
    ///
    /// let again = upcasters.add("customer.created", 1, |e| Ok(e)).unwrap_err();
    /// assert_eq!(again.kind(), &UpcastConfigErrorKind::DuplicateLink);
    /// assert_eq!((again.event_type(), again.from_version()), ("customer.created", 1));
    /// ```
    pub fn add(
        &mut self,
        event_type: &str,
        from_version: u32,
        f: impl Fn(Event<Value>) -> Result<Event<Value>, UpcastError> + Send + Sync + 'static,
    ) -> Result<&mut Self, UpcastConfigError> {
        let config_error = |kind| UpcastConfigError {
            kind,
            event_type: event_type.to_owned(),
            from_version,
        };
        if let Err(e) = validate_event_type(event_type) {
            return Err(config_error(UpcastConfigErrorKind::InvalidEventType(e)));
        }
        let Some(to_version) = from_version.checked_add(1) else {
            return Err(config_error(UpcastConfigErrorKind::VersionOverflow));
        };
        let links = self
            .types
            .entry(event_type.into())
            .or_insert_with(|| Links {
                by_version: BTreeMap::new(),
                latest: to_version,
            });
        if links.by_version.contains_key(&from_version) {
            return Err(config_error(UpcastConfigErrorKind::DuplicateLink));
        }
        links.by_version.insert(from_version, Arc::new(f));
        links.latest = links.latest.max(to_version);
        Ok(self)
    }

    /// The version the links of `event_type` lead to: one more than its highest
    /// link, or `None` if it has no links (its events are not checked).
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("order.placed", 1, |e| Ok(e)).unwrap();
    /// upcasters.add("order.placed", 2, |e| Ok(e)).unwrap();
    /// assert_eq!(upcasters.latest("order.placed"), Some(3));
    /// assert_eq!(upcasters.latest("order.paid"), None);
    /// ```
    pub fn latest(&self, event_type: &str) -> Option<u32> {
        self.links(event_type).map(|l| l.latest)
    }

    /// Whether an event of `event_type` at `version` needs links before it can be
    /// read: `Ok(false)` for an event at its latest version or of a type without
    /// links, `Ok(true)` when a link starts at `version`, an error when it is too
    /// new or no link leads on. Allocates nothing unless it fails.
    ///
    /// ```
    /// use ringbus::store::upcast::{UpcastErrorKind, Upcasters};
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("order.placed", 2, |e| Ok(e)).unwrap();
    /// assert_eq!(upcasters.needs_upcast("order.placed", 2), Ok(true));
    /// assert_eq!(upcasters.needs_upcast("order.placed", 3), Ok(false));
    /// let missing = upcasters.needs_upcast("order.placed", 1).unwrap_err();
    /// assert_eq!(missing.kind(), &UpcastErrorKind::MissingLink { latest: 3 });
    /// ```
    #[inline]
    pub fn needs_upcast(&self, event_type: &str, version: u32) -> Result<bool, UpcastError> {
        self.step(event_type, version).map(|link| link.is_some())
    }

    /// Runs the links `event` needs, one after the other, and returns it at its
    /// latest version (unchanged when it needs none).
    ///
    /// # Errors
    /// [`UpcastError`] naming the type and version of the step that failed; the
    /// event is dropped (never returned half upcast).
    ///
    /// # Examples
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// use ringbus::{event_type, source, Event};
    /// use serde_json::json;
    ///
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("order.placed", 1, |mut e| { e.data["currency"] = json!("EUR"); Ok(e) }).unwrap();
    /// let e = Event::new(event_type!("order.placed"), source!("shop"), json!({ "total": 5 }));
    /// let e = upcasters.upcast(e).unwrap();
    /// assert_eq!(e.data, json!({ "total": 5, "currency": "EUR" }));
    /// ```
    pub fn upcast(&self, mut event: Event<Value>) -> Result<Event<Value>, UpcastError> {
        // Each step uses the link keyed by the event's current version, and each
        // raises that version by one: no link runs twice, so this ends.
        while let Some(link) = self.step(event.event_type.name(), event.version)? {
            let (event_type, version) = (event.event_type.name(), event.version);
            event = match catch_unwind(AssertUnwindSafe(|| link(event))) {
                Ok(Ok(mut next)) => {
                    next.version = version + 1;
                    next
                }
                Ok(Err(e)) => return Err(e.in_link(event_type, version)),
                Err(panic) => {
                    let reason = format!("the upcaster panicked: {}", panic_message(&*panic));
                    drop_quietly(panic);
                    return Err(UpcastError::new(
                        UpcastErrorKind::LinkFailed { reason },
                        event_type,
                        version,
                    ));
                }
            };
        }
        Ok(event)
    }

    /// The event of `view` with its payload as `P`, upcast first if it needs it.
    ///
    /// An event at its latest version (or of a type without links) is decoded
    /// straight into `P` ([`EventRef::to_event`]); only one that needs links is
    /// decoded as [`serde_json::Value`], upcast, and then converted to `P`.
    ///
    /// # Errors
    /// [`DecodeUpcastError::Decode`] when the payload cannot be decoded (as `P`,
    /// or as a `Value` for upcasting); [`DecodeUpcastError::Upcast`] when the
    /// chain fails or its result does not fit `P`
    /// ([`UpcastErrorKind::Mismatch`]).
    ///
    /// # Examples
    /// ```
    /// use ringbus::codec::{encode, EventRef};
    /// use ringbus::store::upcast::Upcasters;
    /// use ringbus::{event_type, source, Event};
    /// use serde_json::json;
    ///
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("tick", 1, |mut e| { e.data = json!(e.data.as_u64().unwrap_or(0) * 1000); Ok(e) }).unwrap();
    /// let mut frame = Vec::new();
    /// encode(&Event::new(event_type!("tick"), source!("clock"), 7), &mut frame).unwrap();
    ///
    /// let (view, _) = EventRef::decode(&frame).unwrap();
    /// let e = upcasters.to_event::<u64>(&view).unwrap();
    /// assert_eq!((e.version, e.data), (2, 7000));
    /// ```
    pub fn to_event<P: DeserializeOwned>(
        &self,
        view: &EventRef<'_>,
    ) -> Result<Event<P>, DecodeUpcastError> {
        if !self.needs_upcast(view.event_type(), view.version())? {
            return Ok(view.to_event()?);
        }
        let mut e = self.upcast(view.to_event::<Value>()?)?;
        match serde_json::from_value(std::mem::take(&mut e.data)) {
            Ok(data) => Ok(e.map(|_| data)),
            Err(error) => Err(UpcastError::mismatch(&e, error.to_string()).into()),
        }
    }

    /// The event of `view` with its payload as the variant of the event enum `E`
    /// that its (upcast) event type names, upcast first if it needs it.
    ///
    /// Like [`to_event`](Upcasters::to_event): an event at its latest version is
    /// decoded straight into `E` ([`EventRef::to_typed_event`]); one that needs
    /// links is upcast as a [`serde_json::Value`] and then converted with
    /// [`Event::into_typed`], so a rename picks the new type's variant.
    ///
    /// # Errors
    /// As [`to_event`](Upcasters::to_event); an upcast event whose type no variant
    /// has, or whose payload does not fit its variant, is
    /// [`UpcastErrorKind::Mismatch`].
    ///
    /// # Examples
    /// ```
    /// use ringbus::codec::{encode, EventRef};
    /// use ringbus::store::upcast::Upcasters;
    /// use ringbus::{event_type, source, Event};
    /// use serde::{Deserialize, Serialize};
    /// use serde_json::json;
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// struct ClientCreated { id: u64 }
    /// ringbus::domain_events! {
    ///     #[derive(Debug, PartialEq)]
    ///     enum Crm { ClientCreated(ClientCreated) => "client.created", source = "crm", version = 2; }
    /// }
    ///
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("customer.created", 1, |mut e| {
    ///     e.event_type = event_type!("client.created");
    ///     Ok(e)
    /// }).unwrap();
    ///
    /// let mut frame = Vec::new();
    /// let old = Event::new(event_type!("customer.created"), source!("crm"), json!({ "id": 7 }));
    /// encode(&old, &mut frame).unwrap();
    /// let (view, _) = EventRef::decode(&frame).unwrap();
    /// let e = upcasters.to_typed_event::<Crm>(&view).unwrap();
    /// assert_eq!(e.data, Crm::ClientCreated(ClientCreated { id: 7 }));
    /// assert_eq!(e.version, 2);
    /// ```
    pub fn to_typed_event<E: EventEnum>(
        &self,
        view: &EventRef<'_>,
    ) -> Result<Event<E>, DecodeUpcastError> {
        if !self.needs_upcast(view.event_type(), view.version())? {
            return Ok(view.to_typed_event()?);
        }
        let e = self.upcast(view.to_event::<Value>()?)?;
        let (event_type, version) = (e.event_type.name(), e.version);
        e.into_typed().map_err(|error| {
            UpcastError::new(
                UpcastErrorKind::Mismatch {
                    reason: error.to_string(),
                },
                event_type,
                version,
            )
            .into()
        })
    }

    #[inline]
    fn links(&self, event_type: &str) -> Option<&Links> {
        if self.types.is_empty() {
            return None;
        }
        self.types.get(event_type)
    }

    /// The link to run next for an event at `(event_type, version)`: `None`
    /// when it is done.
    #[inline]
    fn step(&self, event_type: &str, version: u32) -> Result<Option<&Link>, UpcastError> {
        let Some(links) = self.links(event_type) else {
            return Ok(None);
        };
        if let Some(link) = links.by_version.get(&version) {
            return Ok(Some(link));
        }
        let latest = links.latest;
        let kind = match version.cmp(&latest) {
            std::cmp::Ordering::Equal => return Ok(None),
            std::cmp::Ordering::Greater => UpcastErrorKind::TooNew { latest },
            std::cmp::Ordering::Less => UpcastErrorKind::MissingLink { latest },
        };
        Err(UpcastError::new(kind, event_type, version))
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<_> = self.types.iter().collect();
        types.sort_by(|a, b| a.0.cmp(b.0));
        let mut m = f.debug_map();
        for (name, links) in types {
            m.entry(name, &links.by_version.keys().collect::<Vec<_>>());
        }
        m.finish()
    }
}

// ---- errors -----------------------------------------------------------------

/// What went wrong while upcasting (see [`UpcastError::kind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpcastErrorKind {
    /// The event's version is below the latest, and no link starts at it.
    MissingLink {
        /// The version the type's links lead to.
        latest: u32,
    },
    /// The event's version is above the latest: it was written by newer code.
    TooNew {
        /// The version the type's links lead to.
        latest: u32,
    },
    /// A link returned an error, or panicked.
    LinkFailed {
        /// What the link said (or the panic message).
        reason: String,
    },
    /// The upcast event does not fit the requested payload type (or, for an
    /// event enum, names a type no variant has).
    Mismatch {
        /// What the conversion said.
        reason: String,
    },
}

/// Why an event could not be upcast to its latest version: what went wrong,
/// at which event type and version, and (once the caller knows it) at which
/// store position.
///
/// For a failing link, the type and version are those of the event the link was
/// given; for [`Mismatch`](UpcastErrorKind::Mismatch), those of the upcast event.
///
/// # Examples
/// ```
/// use ringbus::store::upcast::{UpcastErrorKind, Upcasters, UpcastError};
/// use ringbus::store::Position;
/// use ringbus::{event_type, source, Event};
///
/// let mut upcasters = Upcasters::new();
/// upcasters.add("order.placed", 1, |_| Err(UpcastError::failed("no total"))).unwrap();
/// let e = Event::new(event_type!("order.placed"), source!("shop"), serde_json::json!({}));
///
/// // A store adds the event's position.
/// let err = upcasters.upcast(e).unwrap_err().at(Position(17));
/// assert_eq!(err.kind(), &UpcastErrorKind::LinkFailed { reason: "no total".into() });
/// assert_eq!((err.event_type(), err.version(), err.position()), ("order.placed", 1, Some(Position(17))));
/// assert_eq!(err.to_string(),
///     "cannot upcast order.placed v1 at position 17: the upcaster from v1 failed: no total");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpcastError {
    kind: UpcastErrorKind,
    event_type: String,
    version: u32,
    position: Option<Position>,
}

impl UpcastError {
    /// The error a link returns to refuse an event. The registry fills in the
    /// event type and version.
    ///
    /// ```
    /// use ringbus::store::upcast::{UpcastError, UpcastErrorKind};
    /// let e = UpcastError::failed("amount is not a number");
    /// assert_eq!(e.kind(), &UpcastErrorKind::LinkFailed { reason: "amount is not a number".into() });
    /// ```
    pub fn failed(reason: impl Into<String>) -> Self {
        UpcastError {
            kind: UpcastErrorKind::LinkFailed {
                reason: reason.into(),
            },
            event_type: String::new(),
            version: 0,
            position: None,
        }
    }

    /// The same error at store position `position`.
    ///
    /// ```
    /// use ringbus::store::upcast::UpcastError;
    /// use ringbus::store::Position;
    /// assert_eq!(UpcastError::failed("x").at(Position(3)).position(), Some(Position(3)));
    /// ```
    #[must_use]
    pub fn at(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    /// What went wrong.
    ///
    /// ```
    /// use ringbus::store::upcast::{UpcastError, UpcastErrorKind};
    /// assert!(matches!(UpcastError::failed("x").kind(), UpcastErrorKind::LinkFailed { .. }));
    /// ```
    pub fn kind(&self) -> &UpcastErrorKind {
        &self.kind
    }

    /// The event type of the failing step (empty in an error a link has made
    /// and not yet returned).
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("a.b", 3, |e| Ok(e)).unwrap();
    /// assert_eq!(upcasters.needs_upcast("a.b", 9).unwrap_err().event_type(), "a.b");
    /// ```
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version of the failing step.
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("a.b", 3, |e| Ok(e)).unwrap();
    /// assert_eq!(upcasters.needs_upcast("a.b", 9).unwrap_err().version(), 9);
    /// ```
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The store position of the event, if the caller added it with
    /// [`at`](UpcastError::at).
    ///
    /// ```
    /// use ringbus::store::upcast::UpcastError;
    /// assert_eq!(UpcastError::failed("x").position(), None);
    /// ```
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    pub(crate) fn new(kind: UpcastErrorKind, event_type: &str, version: u32) -> Self {
        UpcastError {
            kind,
            event_type: event_type.to_owned(),
            version,
            position: None,
        }
    }

    pub(crate) fn mismatch(e: &Event<Value>, reason: String) -> Self {
        Self::new(
            UpcastErrorKind::Mismatch { reason },
            e.event_type.name(),
            e.version,
        )
    }

    /// An error returned by the link from `(event_type, version)`: reported as
    /// that link's failure, whatever the link built.
    fn in_link(self, event_type: &str, version: u32) -> Self {
        let reason = match self.kind {
            UpcastErrorKind::LinkFailed { reason } => reason,
            _ => UpcastError {
                position: None,
                ..self
            }
            .to_string(),
        };
        UpcastError::new(UpcastErrorKind::LinkFailed { reason }, event_type, version)
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot upcast {} v{}", self.event_type, self.version)?;
        if let Some(Position(p)) = self.position {
            write!(f, " at position {p}")?;
        }
        match &self.kind {
            UpcastErrorKind::MissingLink { latest } => write!(
                f,
                ": no upcaster from v{} (its latest version is v{latest})",
                self.version
            ),
            UpcastErrorKind::TooNew { latest } => write!(
                f,
                ": written by newer code (the latest version known here is v{latest})"
            ),
            UpcastErrorKind::LinkFailed { reason } => {
                write!(f, ": the upcaster from v{} failed: {reason}", self.version)
            }
            UpcastErrorKind::Mismatch { reason } => {
                write!(
                    f,
                    ": the upcast event does not fit the payload type: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for UpcastError {}

/// Why [`Upcasters::to_event`] (or [`codec::decode_upcast`](crate::codec::decode_upcast)
/// and their event-enum forms) returned no event: the bytes, or the upcasting.
///
/// ```
/// use ringbus::codec::{decode_upcast, DecodeError};
/// use ringbus::store::upcast::{DecodeUpcastError, Upcasters};
/// let err = decode_upcast::<u64>(&[0x00, 0x01], &Upcasters::new()).unwrap_err();
/// assert!(matches!(err, DecodeUpcastError::Decode(DecodeError::BadMagic { .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeUpcastError {
    /// The frame or its payload could not be decoded.
    Decode(DecodeError),
    /// The event could not be upcast.
    Upcast(UpcastError),
}

impl DecodeUpcastError {
    /// The same error at store position `position` (an upcast error records it;
    /// a decode error is returned as it is).
    ///
    /// ```
    /// use ringbus::store::upcast::{DecodeUpcastError, UpcastError};
    /// use ringbus::store::Position;
    /// let err = DecodeUpcastError::from(UpcastError::failed("x")).at(Position(9));
    /// assert!(matches!(err, DecodeUpcastError::Upcast(e) if e.position() == Some(Position(9))));
    /// ```
    #[must_use]
    pub fn at(self, position: Position) -> Self {
        match self {
            DecodeUpcastError::Upcast(e) => DecodeUpcastError::Upcast(e.at(position)),
            other => other,
        }
    }
}

impl From<DecodeError> for DecodeUpcastError {
    fn from(e: DecodeError) -> Self {
        DecodeUpcastError::Decode(e)
    }
}

impl From<UpcastError> for DecodeUpcastError {
    fn from(e: UpcastError) -> Self {
        DecodeUpcastError::Upcast(e)
    }
}

impl fmt::Display for DecodeUpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeUpcastError::Decode(e) => write!(f, "cannot decode the event: {e}"),
            DecodeUpcastError::Upcast(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for DecodeUpcastError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeUpcastError::Decode(e) => Some(e),
            DecodeUpcastError::Upcast(e) => Some(e),
        }
    }
}

/// What was wrong with a link given to [`Upcasters::add`] (see
/// [`UpcastConfigError::kind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpcastConfigErrorKind {
    /// The event type already has a link from this version.
    DuplicateLink,
    /// A link from `u32::MAX` would lead past the last version.
    VersionOverflow,
    /// The event type is not a valid event-type name.
    InvalidEventType(NameError),
}

/// A link [`Upcasters::add`] refused: which, and why.
///
/// ```
/// use ringbus::store::upcast::{UpcastConfigErrorKind, Upcasters};
/// let mut upcasters = Upcasters::new();
/// let err = upcasters.add("order.*", 1, |e| Ok(e)).unwrap_err();
/// assert!(matches!(err.kind(), UpcastConfigErrorKind::InvalidEventType(_)));
/// assert_eq!(upcasters.latest("order.*"), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpcastConfigError {
    kind: UpcastConfigErrorKind,
    event_type: String,
    from_version: u32,
}

impl UpcastConfigError {
    /// Why the link was refused.
    ///
    /// ```
    /// use ringbus::store::upcast::{UpcastConfigErrorKind, Upcasters};
    /// let err = Upcasters::new().add("a", u32::MAX, |e| Ok(e)).unwrap_err();
    /// assert_eq!(err.kind(), &UpcastConfigErrorKind::VersionOverflow);
    /// ```
    pub fn kind(&self) -> &UpcastConfigErrorKind {
        &self.kind
    }

    /// The event type the link was for.
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// assert_eq!(Upcasters::new().add("a b", 1, |e| Ok(e)).unwrap_err().event_type(), "a b");
    /// ```
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version the link was to start from.
    ///
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// assert_eq!(Upcasters::new().add("", 4, |e| Ok(e)).unwrap_err().from_version(), 4);
    /// ```
    pub fn from_version(&self) -> u32 {
        self.from_version
    }
}

impl fmt::Display for UpcastConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, v) = (&self.event_type, self.from_version);
        match &self.kind {
            UpcastConfigErrorKind::DuplicateLink => {
                write!(f, "{t:?} already has an upcaster from v{v}")
            }
            UpcastConfigErrorKind::VersionOverflow => {
                write!(
                    f,
                    "an upcaster of {t:?} from v{v} would lead past the last version"
                )
            }
            UpcastConfigErrorKind::InvalidEventType(e) => {
                write!(f, "cannot add an upcaster for {t:?}: {e}")
            }
        }
    }
}

impl std::error::Error for UpcastConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            UpcastConfigErrorKind::InvalidEventType(e) => Some(e),
            _ => None,
        }
    }
}

// ---- bytes ------------------------------------------------------------------

/// Decodes the event frame at the start of `bytes` (default
/// [`Limits`](crate::codec::Limits)) and upcasts it to its latest version with
/// `upcasters`; returns the event, its payload as `P`, and the frame's length.
/// For events that arrive as bytes (from NATS, a file, a socket); an event at
/// its latest version costs what [`decode`](crate::codec::decode) costs. Under
/// other limits, decode the frame with
/// [`Decoder::event_ref`](crate::codec::Decoder::event_ref) and call
/// [`Upcasters::to_event`].
///
/// # Examples
/// ```
/// use ringbus::codec::{decode_upcast, encode};
/// use ringbus::store::upcast::{DecodeUpcastError, UpcastErrorKind, Upcasters};
/// use ringbus::{event_type, source, Event};
/// use serde_json::json;
///
/// let mut upcasters = Upcasters::new();
/// upcasters.add("price.set", 1, |mut e| { e.data = json!({ "cents": e.data }); Ok(e) }).unwrap();
///
/// let mut frame = Vec::new();
/// encode(&Event::new(event_type!("price.set"), source!("shop"), 250), &mut frame).unwrap();
/// let (e, used) = decode_upcast::<serde_json::Value>(&frame, &upcasters).unwrap();
/// assert_eq!((e.version, e.data, used), (2, json!({ "cents": 250 }), frame.len()));
///
/// // From newer code: a typed error, not a guess.
/// frame.clear();
/// encode(&Event::new(event_type!("price.set"), source!("shop"), 1).with_version(3), &mut frame).unwrap();
/// let err = decode_upcast::<serde_json::Value>(&frame, &upcasters).unwrap_err();
/// assert!(matches!(err, DecodeUpcastError::Upcast(e) if e.kind() == &UpcastErrorKind::TooNew { latest: 2 }));
/// ```
pub fn decode_upcast<P: DeserializeOwned>(
    bytes: &[u8],
    upcasters: &Upcasters,
) -> Result<(Event<P>, usize), DecodeUpcastError> {
    let (view, n) = EventRef::decode(bytes)?;
    Ok((upcasters.to_event(&view)?, n))
}

/// Decodes the event frame at the start of `bytes` (default
/// [`Limits`](crate::codec::Limits)), upcasts it with `upcasters`, and returns it
/// with its payload as the variant of the event enum `E` that its (upcast) event
/// type names, and the frame's length. See [`Upcasters::to_typed_event`].
///
/// # Examples
/// ```
/// use ringbus::codec::{decode_upcast_typed, encode};
/// use ringbus::store::upcast::Upcasters;
/// use ringbus::{event_type, source, Event};
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Shipped { order_id: String, carrier: String }
/// ringbus::domain_events! {
///     #[derive(Debug, PartialEq)]
///     enum Parcel { Shipped(Shipped) => "parcel.shipped", source = "warehouse", version = 2; }
/// }
///
/// let mut upcasters = Upcasters::new();
/// upcasters.add("parcel.shipped", 1, |mut e| { e.data["carrier"] = json!("unknown"); Ok(e) }).unwrap();
///
/// let mut frame = Vec::new();
/// let v1 = Event::new(event_type!("parcel.shipped"), source!("warehouse"), json!({ "order_id": "o-1" }));
/// encode(&v1, &mut frame).unwrap();
/// let (e, _) = decode_upcast_typed::<Parcel>(&frame, &upcasters).unwrap();
/// assert_eq!(e.data, Parcel::Shipped(Shipped { order_id: "o-1".into(), carrier: "unknown".into() }));
/// ```
pub fn decode_upcast_typed<E: EventEnum>(
    bytes: &[u8],
    upcasters: &Upcasters,
) -> Result<(Event<E>, usize), DecodeUpcastError> {
    let (view, n) = EventRef::decode(bytes)?;
    Ok((upcasters.to_typed_event(&view)?, n))
}
