//! Fixtures shared by the codec tests: the events whose frames FORMAT.md dumps.
#![allow(dead_code)]

use ringbus::{Event, EventId, EventType, Source, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The seed's `UserRegisteredEvent` payload.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct UserRegistered {
    pub user_id: String,
    pub email: String,
    pub name: String,
}

/// 2024-07-03T09:46:40.123456789Z
pub const T0: u64 = 1_720_000_000_123_456_789;

pub fn id(n: u128) -> EventId {
    EventId::from_bytes((0x0190_7630_4c3f_7b2a_9c4d_5e6f_7081_9200_u128 + n).to_be_bytes())
}

fn envelope<P>(n: u128, ty: &str, src: &str, ts: u64, data: P) -> Event<P> {
    let mut e = Event::new(EventType::new(ty), Source::new(src), data);
    e.id = id(n);
    e.timestamp = Timestamp::from_nanos(ts);
    e
}

/// The seed's `user.registered` event, typed.
pub fn user_registered() -> Event<UserRegistered> {
    envelope(
        0xa3,
        "user.registered",
        "user-service",
        T0,
        UserRegistered {
            user_id: "u-1001".into(),
            email: "alice@example.com".into(),
            name: "Alice Smith".into(),
        },
    )
}

/// Three events for the batch dump: two types, two sources, a subject, a causal
/// link, and an out-of-order timestamp.
pub fn three_events() -> Vec<Event> {
    let first = user_registered().map(|d| serde_json::to_value(d).unwrap());
    let placed = envelope(
        0xb4,
        "order.placed",
        "order-service",
        T0 + 1_500_000,
        json!({"amount": 42.5, "order_id": "o-2001"}),
    )
    .with_subject("o-2001")
    .caused_by(&first);
    let earlier = envelope(
        0xc5,
        "order.placed",
        "order-service",
        T0 + 1_200_000,
        json!({"amount": 7, "order_id": "o-2002"}),
    )
    .with_subject("o-2002");
    vec![first, placed, earlier]
}

/// A small event with every optional field, for the checksum/extension dump.
pub fn everything() -> Event {
    envelope(0xd6, "a.b", "s", T0, json!({"x": 1}))
        .with_version(3)
        .with_subject("k")
        .with_correlation_id(id(0x01))
        .caused_by_id(id(0x02))
}

/// The encoder of the checksum/extension dump.
pub fn everything_encoder() -> ringbus::codec::Encoder {
    ringbus::codec::Encoder::new()
        .content_type(ringbus::codec::ContentType::JSON)
        .checksum(true)
        .extension(2, &[0x01])
}

pub trait CausedById {
    fn caused_by_id(self, id: EventId) -> Self;
}

impl<P> CausedById for Event<P> {
    fn caused_by_id(mut self, id: EventId) -> Self {
        self.causation_id = Some(id);
        self
    }
}
