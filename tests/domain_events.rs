//! Enums of domain events: one declaration per enum, and decoding that picks the
//! variant by the event type, through the codec (MessagePack and JSON payloads,
//! single frames and batches) and through JSON envelopes.

use proptest::prelude::*;
use ringbus::codec::{self, ContentType, DecodeError, Encoder, EventRef};
use ringbus::{event_type, source, DomainEvent, Event, EventEnum, VariantError};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    amount: f64,
    items: Vec<String>,
}

/// The same shape as `PaymentFailed`: an untagged decode would confuse them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderConfirmed {
    order_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentFailed {
    order_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CustomerNotified {
    customer: u64,
}

ringbus::domain_events! {
    /// Everything the shop publishes.
    #[derive(Debug, Clone, PartialEq)]
    pub enum ShopEvent {
        /// Declared first: an untagged decode would pick it for any `{order_id}`.
        OrderConfirmed(OrderConfirmed) => "order.confirmed", source = "order-service",
            subject = order_id;
        OrderPlaced(OrderPlaced) => "order.placed", source = "order-service",
            subject = order_id, version = 3;
        PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service",
            subject = |e| format!("order/{}", e.order_id), version = 2;
        CustomerNotified(CustomerNotified) => "customer.notified", source = "mailer";
    }
}

fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: "o-1".into(),
        amount: 42.5,
        items: vec!["book".into(), "pen".into()],
    }
}

fn failed() -> PaymentFailed {
    PaymentFailed {
        order_id: "o-1".into(),
    }
}

fn all() -> Vec<ShopEvent> {
    vec![
        OrderConfirmed {
            order_id: "o-1".into(),
        }
        .into(),
        placed().into(),
        failed().into(),
        CustomerNotified { customer: 7 }.into(),
    ]
}

fn encode_with(e: &Event<ShopEvent>, ct: ContentType) -> Vec<u8> {
    let mut buf = Vec::new();
    Encoder::new().content_type(ct).encode(e, &mut buf).unwrap();
    buf
}

/// A frame of an arbitrary event type and JSON payload (what another service,
/// or an attacker, might send).
fn dynamic_frame(name: &str, data: serde_json::Value, ct: ContentType) -> Vec<u8> {
    let e = Event::new(ringbus::EventType::new(name), source!("elsewhere"), data);
    let mut buf = Vec::new();
    Encoder::new()
        .content_type(ct)
        .encode(&e, &mut buf)
        .unwrap();
    buf
}

const BOTH: [ContentType; 2] = [ContentType::MESSAGEPACK, ContentType::JSON];

#[test]
fn each_variant_declares_its_type_source_subject_and_version() {
    let expect = [
        ("order.confirmed", "order-service", Some("o-1"), 1),
        ("order.placed", "order-service", Some("o-1"), 3),
        ("payment.failed", "payment-service", Some("order/o-1"), 2),
        ("customer.notified", "mailer", None, 1),
    ];
    for (data, (t, s, subject, version)) in all().into_iter().zip(expect) {
        assert_eq!(data.event_type().name(), t);
        assert_eq!(data.source().name(), s);
        assert_eq!(data.subject().as_ref().map(|s| s.as_str()), subject);
        assert_eq!(data.version(), version);

        let e = Event::typed(data.clone());
        assert_eq!(e.event_type, event_type_of(t));
        assert_eq!(e.source.name(), s);
        assert_eq!(e.subject.as_ref().map(|s| s.as_str()), subject);
        assert_eq!(e.version, version);
        assert_eq!(e.data, data);
    }
    assert_eq!(
        ShopEvent::EVENT_TYPES,
        [
            "order.confirmed",
            "order.placed",
            "payment.failed",
            "customer.notified"
        ]
    );
    assert!(ShopEvent::has_event_type("payment.failed"));
    assert!(!ShopEvent::has_event_type("payment"));
}

fn event_type_of(name: &str) -> ringbus::EventType {
    ringbus::EventType::try_new(name).unwrap()
}

#[test]
fn from_wraps_each_payload_in_its_variant() {
    assert_eq!(ShopEvent::from(placed()), ShopEvent::OrderPlaced(placed()));
    assert_eq!(
        ShopEvent::from(failed()),
        ShopEvent::PaymentFailed(failed())
    );
    let e: ShopEvent = CustomerNotified { customer: 1 }.into();
    assert!(matches!(
        e,
        ShopEvent::CustomerNotified(CustomerNotified { customer: 1 })
    ));
}

#[test]
fn a_variant_serializes_as_its_payload_alone() {
    assert_eq!(
        serde_json::to_value(ShopEvent::from(placed())).unwrap(),
        serde_json::to_value(placed()).unwrap()
    );
    let e = Event::typed(ShopEvent::from(failed()));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["data"], json!({"order_id": "o-1"}));
    assert_eq!(v["event_type"], "payment.failed");
    assert_eq!(v["version"], 2);
    assert_eq!(v["subject"], "order/o-1");
}

#[test]
fn codec_round_trip_of_every_variant_in_both_content_types() {
    for ct in BOTH {
        for data in all() {
            let e = Event::typed(data).with_correlation_id(ringbus::EventId::new());
            let buf = encode_with(&e, ct);
            let (back, used) = codec::decode_typed::<ShopEvent>(&buf).unwrap();
            assert_eq!((&back, used), (&e, buf.len()), "{ct}");

            let (view, _) = EventRef::decode(&buf).unwrap();
            assert_eq!(view.typed_data::<ShopEvent>().unwrap(), e.data, "{ct}");
            assert_eq!(view.to_typed_event::<ShopEvent>().unwrap(), e, "{ct}");
        }
    }
}

#[test]
fn batch_round_trip_chooses_each_events_variant() {
    let events: Vec<Event<ShopEvent>> = all()
        .into_iter()
        .cycle()
        .take(10)
        .map(Event::typed)
        .collect();
    let mut buf = Vec::new();
    codec::encode_batch(&events, &mut buf).unwrap();
    let (back, used) = codec::decode_batch_typed::<ShopEvent>(&buf).unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(back, events);
}

#[test]
fn json_envelope_round_trip_of_every_variant() {
    for data in all() {
        let e = Event::typed(data).with_correlation_id(ringbus::EventId::new());
        let text = serde_json::to_string(&e).unwrap();
        let back = serde_json::from_str::<Event>(&text)
            .unwrap()
            .into_typed::<ShopEvent>()
            .unwrap();
        assert_eq!(back, e);
    }
}

/// The trap: a `payment.failed` payload also fits `OrderConfirmed`, the first
/// variant. It must decode as `PaymentFailed`, by every path.
#[test]
fn the_event_type_decides_even_when_the_payload_fits_another_variant() {
    let payload = json!({"order_id": "o-9"});
    let want = ShopEvent::PaymentFailed(PaymentFailed {
        order_id: "o-9".into(),
    });
    // The payload really does fit the first variant.
    assert!(serde_json::from_value::<OrderConfirmed>(payload.clone()).is_ok());

    for ct in BOTH {
        let buf = dynamic_frame("payment.failed", payload.clone(), ct);
        let (e, _) = codec::decode_typed::<ShopEvent>(&buf).unwrap();
        assert_eq!(e.data, want, "{ct}");
        // The envelope is the frame's: its source, not the variant's.
        assert_eq!(e.source.name(), "elsewhere");
        assert_eq!(e.event_type, e.data.event_type());
    }
    let dynamic = Event::new(event_type!("payment.failed"), source!("x"), payload.clone());
    assert_eq!(dynamic.into_typed::<ShopEvent>().unwrap().data, want);
    // And the other way round.
    let confirmed = Event::new(event_type!("order.confirmed"), source!("x"), payload);
    assert!(matches!(
        confirmed.into_typed::<ShopEvent>().unwrap().data,
        ShopEvent::OrderConfirmed(_)
    ));
}

#[test]
fn an_unknown_event_type_is_a_typed_error() {
    for ct in BOTH {
        let buf = dynamic_frame("order.shipped", json!({"order_id": "o-1"}), ct);
        let err = codec::decode_typed::<ShopEvent>(&buf).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownEventType {
                event_type: "order.shipped".into()
            }
        );
        assert!(err.to_string().contains("\"order.shipped\""), "{err}");
    }
    // Even when the payload is garbage: the type is refused first.
    let mut buf = Vec::new();
    let e = Event::new(event_type!("order.shipped"), source!("x"), [0xc1u8]);
    Encoder::new()
        .encode_raw(&e, ContentType::MESSAGEPACK, &mut buf)
        .unwrap();
    assert!(matches!(
        codec::decode_typed::<ShopEvent>(&buf),
        Err(DecodeError::UnknownEventType { .. })
    ));

    let json = Event::new(event_type!("order.shipped"), source!("x"), json!({}));
    assert_eq!(
        json.into_typed::<ShopEvent>().unwrap_err(),
        VariantError::UnknownEventType {
            event_type: "order.shipped".into()
        }
    );
}

#[test]
fn a_payload_that_does_not_fit_its_variant_is_a_typed_error() {
    // `order.placed` needs an amount and items; this is an `OrderConfirmed` shape.
    for ct in BOTH {
        let buf = dynamic_frame("order.placed", json!({"order_id": "o-1"}), ct);
        match codec::decode_typed::<ShopEvent>(&buf).unwrap_err() {
            DecodeError::PayloadMismatch {
                event_type,
                content_type,
                message,
            } => {
                assert_eq!(event_type, "order.placed");
                assert_eq!(content_type, ct);
                assert!(message.contains("amount"), "{message}");
            }
            other => panic!("{ct}: expected PayloadMismatch, got {other:?}"),
        }
    }
    let wrong_type = dynamic_frame(
        "customer.notified",
        json!({"customer": "not a number"}),
        ContentType::JSON,
    );
    assert!(matches!(
        codec::decode_typed::<ShopEvent>(&wrong_type),
        Err(DecodeError::PayloadMismatch { .. })
    ));
    let json = Event::new(
        event_type!("order.placed"),
        source!("x"),
        json!({"order_id": 1}),
    );
    assert!(matches!(
        json.into_typed::<ShopEvent>(),
        Err(VariantError::PayloadMismatch { ref event_type, .. }) if event_type == "order.placed"
    ));
    // One bad event fails the whole batch.
    let mut events: Vec<Event> = vec![
        Event::new(
            event_type!("payment.failed"),
            source!("x"),
            json!({"order_id": "a"}),
        ),
        Event::new(
            event_type!("order.placed"),
            source!("x"),
            json!({"order_id": "b"}),
        ),
    ];
    let mut buf = Vec::new();
    codec::encode_batch(&events, &mut buf).unwrap();
    assert!(matches!(
        codec::decode_batch_typed::<ShopEvent>(&buf),
        Err(DecodeError::PayloadMismatch { .. })
    ));
    events.truncate(1);
    buf.clear();
    codec::encode_batch(&events, &mut buf).unwrap();
    assert_eq!(
        codec::decode_batch_typed::<ShopEvent>(&buf)
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn a_malformed_payload_is_a_payload_error_not_a_mismatch() {
    for (ct, bytes) in [
        (ContentType::MESSAGEPACK, &[0xc1][..]),
        (
            ContentType::MESSAGEPACK,
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        ),
        (ContentType::JSON, &b"{\"order_id\": \"o-1\""[..]),
        (ContentType::JSON, &b"{\"order_id\": \"o-1\"} trailing"[..]),
    ] {
        let e = Event::new(event_type!("payment.failed"), source!("x"), bytes);
        let mut buf = Vec::new();
        Encoder::new().encode_raw(&e, ct, &mut buf).unwrap();
        assert!(
            matches!(
                codec::decode_typed::<ShopEvent>(&buf),
                Err(DecodeError::Payload { .. })
            ),
            "{ct} {bytes:?}"
        );
    }
    let e = Event::new(event_type!("payment.failed"), source!("x"), b"{}");
    let mut buf = Vec::new();
    Encoder::new()
        .encode_raw(&e, ContentType::RAW, &mut buf)
        .unwrap();
    assert_eq!(
        codec::decode_typed::<ShopEvent>(&buf).unwrap_err(),
        DecodeError::UnsupportedContentType(ContentType::RAW)
    );
}

fn arb_shop_event() -> impl Strategy<Value = ShopEvent> {
    let id = "[a-z0-9-]{1,12}";
    prop_oneof![
        id.prop_map(|order_id| ShopEvent::from(OrderConfirmed { order_id })),
        (
            id,
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            prop::collection::vec(".{0,8}", 0..4)
        )
            .prop_map(|(order_id, amount, items)| ShopEvent::from(OrderPlaced {
                order_id,
                amount,
                items
            })),
        id.prop_map(|order_id| ShopEvent::from(PaymentFailed { order_id })),
        any::<u64>().prop_map(|customer| ShopEvent::from(CustomerNotified { customer })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 }))]

    #[test]
    fn typed_round_trips(data in arb_shop_event()) {
        let e = Event::typed(data);
        let buf = encode_with(&e, ContentType::MESSAGEPACK);
        prop_assert_eq!(&codec::decode_typed::<ShopEvent>(&buf).unwrap().0, &e);
        let buf = encode_with(&e, ContentType::JSON);
        let back = codec::decode_typed::<ShopEvent>(&buf).unwrap().0;
        // JSON floats may differ by one ulp on the way back (see ContentType::JSON).
        prop_assert_eq!(back.event_type, e.event_type);
        prop_assert_eq!(back.data.event_type(), e.data.event_type());
        let text = serde_json::to_string(&e).unwrap();
        let back = serde_json::from_str::<Event>(&text).unwrap().into_typed::<ShopEvent>().unwrap();
        prop_assert_eq!(back.data.event_type(), e.data.event_type());
    }

    /// Whatever the bytes, a typed decode returns a typed error or an event whose
    /// variant is the one its event type names; it never panics. (Flipped bytes
    /// land in names, lengths, payloads and checksums alike.)
    #[test]
    fn corrupted_frames_never_decode_as_a_wrong_variant(
        data in arb_shop_event(),
        json in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let ct = if json { ContentType::JSON } else { ContentType::MESSAGEPACK };
        let mut buf = encode_with(&Event::typed(data), ct);
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] ^= byte;
        }
        let end = buf.len() - cut.index(buf.len() / 4 + 1);
        for bytes in [&buf[..], &buf[..end]] {
            if let Ok((e, used)) = codec::decode_typed::<ShopEvent>(bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(e.data.event_type(), e.event_type);
            }
        }
    }
}
