//! Enums of domain events: many event types on one bus, each variant a payload
//! struct, decoded by the envelope's event type so that a payload can never land
//! in the wrong variant.
//!
//! [`domain_events!`](crate::domain_events) declares the enum and implements
//! [`EventEnum`], [`DomainEvent`], `Serialize` and one `From` per variant.
//! Decoding goes through [`EventEnum::deserialize_variant`], which is told the
//! event type: the codec's [`decode_typed`](crate::codec::decode_typed) family and
//! [`Event::into_typed`] (for JSON and dynamic events) use it.
//!
//! # Why there is no `Deserialize` for the enum
//! A payload alone does not say which event it is: `{"order_id": "o-1"}` fits
//! `OrderConfirmed` and `PaymentFailed` alike, so an untagged `Deserialize` would
//! pick whichever variant comes first. The macro therefore implements no
//! `Deserialize`, which makes the paths that ignore the event type
//! ([`codec::decode`](crate::codec::decode), `serde_json::from_str::<Event<E>>`)
//! fail to compile for an event enum instead of returning the wrong variant.

use std::fmt;

use super::{DomainEvent, Event};

/// An enum of domain events whose variant is chosen by the event type: what
/// [`domain_events!`](crate::domain_events) implements.
///
/// Implementing it by hand is possible; the contract is that
/// [`deserialize_variant`](EventEnum::deserialize_variant) returns `None` exactly
/// for the event types not in [`EVENT_TYPES`](EventEnum::EVENT_TYPES), and
/// otherwise the variant whose [`DomainEvent::event_type`] is `event_type`.
///
/// # Why an event enum has no `Deserialize`
/// A payload alone does not say which event it is: `{"order_id": "o-1"}` fits
/// `OrderConfirmed` and `PaymentFailed` alike, so an untagged `Deserialize` would
/// pick whichever variant comes first. The macro therefore implements no
/// `Deserialize`, which makes the paths that ignore the event type
/// ([`codec::decode`](crate::codec::decode), `serde_json::from_str::<Event<E>>`)
/// fail to compile for an event enum instead of returning the wrong variant. The
/// paths that read the event type are [`codec::decode_typed`](crate::codec::decode_typed),
/// [`codec::decode_batch_typed`](crate::codec::decode_batch_typed),
/// [`EventRef::typed_data`](crate::codec::EventRef::typed_data) and
/// [`Event::into_typed`] (JSON envelopes, dynamic events).
///
/// # Examples
/// ```
/// use ringbus::EventEnum;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Serialize, Deserialize)] struct OrderPlaced { order_id: String }
/// # #[derive(Debug, Serialize, Deserialize)] struct PaymentFailed { order_id: String }
/// ringbus::domain_events! {
///     #[derive(Debug)]
///     pub enum ShopEvent {
///         OrderPlaced(OrderPlaced) => "order.placed", source = "order-service";
///         PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service";
///     }
/// }
///
/// assert_eq!(ShopEvent::EVENT_TYPES, ["order.placed", "payment.failed"]);
/// let payload = serde_json::json!({ "order_id": "o-1" });
/// let e = ShopEvent::deserialize_variant("payment.failed", payload.clone()).unwrap().unwrap();
/// assert!(matches!(e, ShopEvent::PaymentFailed(_)));
/// assert!(ShopEvent::deserialize_variant("order.shipped", payload).is_none());
/// ```
pub trait EventEnum: DomainEvent + Sized {
    /// The event type of each variant, in declaration order, all distinct.
    const EVENT_TYPES: &'static [&'static str];

    /// Deserializes `payload` as the variant whose event type is `event_type`:
    /// `None` (with `payload` untouched) if no variant has that event type,
    /// `Some(Err(..))` if the payload does not fit that variant's type.
    fn deserialize_variant<'de, D: serde::Deserializer<'de>>(
        event_type: &str,
        payload: D,
    ) -> Option<Result<Self, D::Error>>;

    /// Whether a variant has the event type `event_type`.
    fn has_event_type(event_type: &str) -> bool {
        Self::EVENT_TYPES.contains(&event_type)
    }
}

/// Why a payload could not become a variant of an [`EventEnum`] (from
/// [`Event::into_typed`]; the codec reports the same two cases as
/// [`DecodeError`](crate::codec::DecodeError) variants).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VariantError {
    /// No variant of the enum has this event type.
    UnknownEventType {
        /// The event type of the event.
        event_type: String,
    },
    /// The variant for this event type exists, but the payload does not fit its
    /// type (a missing field, a field of the wrong type, …).
    PayloadMismatch {
        /// The event type of the event.
        event_type: String,
        /// What the deserializer said.
        message: String,
    },
}

impl fmt::Display for VariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariantError::UnknownEventType { event_type } => {
                write!(
                    f,
                    "no variant of the event enum has event type {event_type:?}"
                )
            }
            VariantError::PayloadMismatch {
                event_type,
                message,
            } => write!(
                f,
                "the payload of a {event_type:?} event does not fit its variant: {message}"
            ),
        }
    }
}

impl std::error::Error for VariantError {}

impl Event<serde_json::Value> {
    /// The same event with its dynamic payload decoded as the variant of `E`
    /// that the event type names: the typed path for JSON envelopes and for
    /// events received as [`serde_json::Value`].
    ///
    /// The envelope (id, source, version, subject, …) is kept as it is.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{Event, VariantError};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// struct OrderConfirmed { order_id: String }
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// struct PaymentFailed { order_id: String }
    /// ringbus::domain_events! {
    ///     #[derive(Debug, Clone, PartialEq)]
    ///     pub enum ShopEvent {
    ///         OrderConfirmed(OrderConfirmed) => "order.confirmed", source = "order-service";
    ///         PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service";
    ///     }
    /// }
    ///
    /// let failed = Event::typed(ShopEvent::from(PaymentFailed { order_id: "o-1".into() }));
    /// let json = serde_json::to_string(&failed).unwrap();
    /// assert!(json.contains(r#""data":{"order_id":"o-1"}"#)); // the struct alone
    ///
    /// // The payload would fit `OrderConfirmed` too: the event type decides.
    /// let back = serde_json::from_str::<Event>(&json).unwrap().into_typed::<ShopEvent>().unwrap();
    /// assert_eq!(back, failed);
    ///
    /// let unknown = Event::new(ringbus::event_type!("order.shipped"), ringbus::source!("s"),
    ///     serde_json::json!({}));
    /// assert!(matches!(unknown.into_typed::<ShopEvent>(),
    ///     Err(VariantError::UnknownEventType { .. })));
    /// ```
    pub fn into_typed<E: EventEnum>(mut self) -> Result<Event<E>, VariantError> {
        let name = self.event_type.name();
        let value = std::mem::take(&mut self.data);
        match E::deserialize_variant(name, value) {
            None => Err(VariantError::UnknownEventType {
                event_type: name.to_owned(),
            }),
            Some(Err(e)) => Err(VariantError::PayloadMismatch {
                event_type: name.to_owned(),
                message: e.to_string(),
            }),
            // The envelope as it is, the payload typed.
            Some(Ok(data)) => Ok(self.map(|_| data)),
        }
    }
}

/// Whether no two names in `names` are equal (for the compile-time check of
/// [`domain_events!`](crate::domain_events)).
#[doc(hidden)]
pub const fn all_distinct(names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            if str_eq(names[i], names[j]) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Declares an enum of domain events: each variant wraps one payload struct and
/// names its event type, source, optional subject field and schema version, once.
///
/// ```
/// use ringbus::{codec, DomainEvent, Event};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderPlaced { pub order_id: String, pub amount: f64 }
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct PaymentFailed { pub order_id: String, pub reason: String }
///
/// ringbus::domain_events! {
///     /// Everything the shop publishes.
///     #[derive(Debug, Clone, PartialEq)]
///     pub enum ShopEvent {
///         OrderPlaced(OrderPlaced) => "order.placed", source = "order-service",
///             subject = order_id, version = 2;
///         PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service",
///             subject = |e| format!("order/{}", e.order_id);
///     }
/// }
///
/// let placed = Event::typed(ShopEvent::from(OrderPlaced { order_id: "o-1".into(), amount: 9.5 }));
/// assert_eq!(placed.event_type.name(), "order.placed");
/// assert_eq!(placed.source.name(), "order-service");
/// assert_eq!(placed.version, 2);
/// assert_eq!(placed.subject.as_ref().unwrap().as_str(), "o-1");
///
/// // Through the codec: the frame's event type picks the variant.
/// let mut buf = Vec::new();
/// codec::encode(&placed, &mut buf).unwrap();
/// let (back, _) = codec::decode_typed::<ShopEvent>(&buf).unwrap();
/// assert_eq!(back, placed);
/// ```
///
/// # Syntax
/// ```text
/// $(#[attr])* $vis enum Name {
///     $(#[attr])* Variant(PayloadType) => "event.type", source = "source-name"
///         [, subject = field | , subject = |e| expression]
///         [, version = u32];
///     …
/// }
/// ```
/// * Each variant is a tuple variant wrapping one payload type; the payload types
///   must be distinct (each gets a `From<Payload> for Name`).
/// * The event types must be distinct and, like the sources, constants that
///   obey the name rules: both are checked at compile time.
/// * `subject = field` takes the subject from a field of the payload (any type
///   with `Subject: From<&T>`, such as `String`); `subject = |e| expression`
///   computes it from the payload `e` (anything `Into<Subject>`).
/// * `version` defaults to 1.
///
/// The macro implements [`EventEnum`], [`DomainEvent`], `From` for each payload
/// type, and `Serialize` (a value serializes as its payload alone: the event type
/// lives in the envelope). Do not derive `Serialize` or `Deserialize` on the enum.
/// It implements no `Deserialize` on purpose (see the
/// [`EventEnum`] docs): decode with
/// [`codec::decode_typed`](crate::codec::decode_typed),
/// [`codec::decode_batch_typed`](crate::codec::decode_batch_typed),
/// [`EventRef::typed_data`](crate::codec::EventRef::typed_data) or
/// [`Event::into_typed`], which choose the variant by the event type. The path
/// that would ignore it does not compile:
///
/// ```compile_fail
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct OrderPlaced { order_id: String }
/// ringbus::domain_events! {
///     pub enum ShopEvent {
///         OrderPlaced(OrderPlaced) => "order.placed", source = "order-service";
///     }
/// }
/// let (e, _) = ringbus::codec::decode::<ShopEvent>(&[]).unwrap();
/// ```
///
/// Two variants with one event type do not compile either:
///
/// ```compile_fail
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct A { id: String }
/// # #[derive(Serialize, Deserialize)] struct B { id: String }
/// ringbus::domain_events! {
///     pub enum Twice {
///         A(A) => "order.placed", source = "order-service";
///         B(B) => "order.placed", source = "order-service";
///     }
/// }
/// ```
///
/// `macro_rules!` rather than a derive: a derive macro needs a proc-macro crate
/// (and `syn`/`quote`), which are outside this crate's dependency list.
#[macro_export]
macro_rules! domain_events {
    // The subject of one variant's payload, bound to `$p`.
    (@subject $p:ident) => {{
        let _ = $p;
        ::core::option::Option::None
    }};
    (@subject $p:ident field $field:ident) => {
        ::core::option::Option::Some($crate::Subject::from(&$p.$field))
    };
    (@subject $p:ident closure $e:ident $subject:expr) => {{
        let $e = $p;
        ::core::option::Option::Some($crate::Subject::from($subject))
    }};
    (@version) => { 1 };
    (@version $version:expr) => { $version };

    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($payload:ty) => $event_type:expr, source = $source:expr
                    $(, subject = $field:ident)?
                    $(, subject = |$e:ident| $subject:expr)?
                    $(, version = $version:expr)?
                ;
            )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant($payload),
            )+
        }

        const _: () = ::core::assert!(
            $crate::__private::all_distinct(&[$($event_type),+]),
            "domain_events!: two variants share an event type"
        );

        $(
            impl ::core::convert::From<$payload> for $name {
                #[inline]
                fn from(payload: $payload) -> Self {
                    $name::$variant(payload)
                }
            }
        )+

        impl $crate::DomainEvent for $name {
            #[inline]
            fn event_type(&self) -> $crate::EventType {
                match self {
                    $($name::$variant(_) => $crate::event_type!($event_type),)+
                }
            }

            #[inline]
            fn source(&self) -> $crate::Source {
                match self {
                    $($name::$variant(_) => $crate::source!($source),)+
                }
            }

            #[inline]
            fn version(&self) -> u32 {
                match self {
                    $($name::$variant(_) => $crate::domain_events!(@version $($version)?),)+
                }
            }

            #[inline]
            fn subject(&self) -> ::core::option::Option<$crate::Subject> {
                match self {
                    $(
                        $name::$variant(payload) => $crate::domain_events!(
                            @subject payload $(field $field)? $(closure $e $subject)?
                        ),
                    )+
                }
            }
        }

        impl $crate::EventEnum for $name {
            const EVENT_TYPES: &'static [&'static str] = &[$($event_type),+];

            fn deserialize_variant<'de, D: $crate::__private::serde::Deserializer<'de>>(
                event_type: &str,
                payload: D,
            ) -> ::core::option::Option<::core::result::Result<Self, D::Error>> {
                $(
                    if event_type == $event_type {
                        return ::core::option::Option::Some(
                            <$payload as $crate::__private::serde::Deserialize<'de>>::deserialize(
                                payload,
                            )
                            .map($name::$variant),
                        );
                    }
                )+
                ::core::option::Option::None
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                match self {
                    $(
                        $name::$variant(payload) => {
                            $crate::__private::serde::Serialize::serialize(payload, serializer)
                        }
                    )+
                }
            }
        }
    };
}
