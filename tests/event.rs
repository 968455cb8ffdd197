//! The event envelope: JSON with the seed's field names, typed domain events,
//! causation.

use ringbus::{domain_event, event_type, source, DomainEvent, Event, EventType, Source, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserRegistered {
    user_id: String,
    email: String,
    name: String,
}
domain_event!(UserRegistered => "user.registered", source = "user-service",
    subject = |e| e.user_id.as_str());

#[test]
fn json_uses_the_seed_field_names_and_round_trips() {
    let e = Event::new(
        event_type!("user.registered"),
        source!("user-service"),
        json!({"user_id": "u-1", "email": "ada@example.com", "name": "Ada"}),
    );
    let v = serde_json::to_value(&e).unwrap();
    let obj = v.as_object().unwrap();
    for key in [
        "event_id",
        "event_type",
        "source",
        "timestamp",
        "data",
        "version",
    ] {
        assert!(obj.contains_key(key), "missing {key} in {v}");
    }
    assert_eq!(obj.len(), 6, "absent optional fields are omitted: {v}");
    assert_eq!(v["event_type"], "user.registered");
    assert_eq!(v["source"], "user-service");
    assert_eq!(v["event_id"], e.id.to_string());
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let back: Event = serde_json::from_value(v).unwrap();
    assert_eq!(back, e);

    let full = e
        .clone()
        .with_subject("u-1")
        .with_version(3)
        .caused_by(&back);
    let text = serde_json::to_string(&full).unwrap();
    let back: Event = serde_json::from_str(&text).unwrap();
    assert_eq!(back, full);
    assert_eq!(back.subject.unwrap().as_str(), "u-1");
}

#[test]
fn reads_what_the_seed_writes() {
    // Go's encoding/json of the seed's Event: RFC 3339 time, version "1.0".
    let text = r#"{
        "event_id": "0190c0a0-7b5e-7cc3-8c3e-0123456789ab",
        "event_type": "order.placed",
        "source": "order-service",
        "timestamp": "2024-07-01T12:30:00.123456789Z",
        "data": {"order_id": "o-1", "amount": 99.5},
        "version": "1.0"
    }"#;
    let e: Event = serde_json::from_str(text).unwrap();
    assert_eq!(e.event_type, EventType::new("order.placed"));
    assert_eq!(e.version, 1);
    assert_eq!(
        e.timestamp,
        Timestamp::from_nanos(1_719_837_000_123_456_789)
    );
    assert_eq!(e.data["amount"], 99.5);

    let bad = text.replace("order.placed", "order.*");
    assert!(
        serde_json::from_str::<Event>(&bad).is_err(),
        "wildcard type accepted"
    );
}

#[test]
fn typed_domain_events_declare_their_type_once() {
    let e = Event::typed(UserRegistered {
        user_id: "u-9".into(),
        email: "x@example.com".into(),
        name: "X".into(),
    });
    assert_eq!(e.event_type.name(), "user.registered");
    assert_eq!(e.source.name(), "user-service");
    assert_eq!(e.subject.as_ref().unwrap().as_str(), "u-9");
    assert_eq!(e.data.event_type(), e.event_type);
    let text = serde_json::to_string(&e).unwrap();
    let back: Event<UserRegistered> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, e);
}

#[test]
fn causation_follows_the_flow() {
    let root = Event::new(event_type!("order.placed"), source!("shop"), ());
    let child = Event::new(event_type!("payment.processed"), source!("pay"), ()).caused_by(&root);
    let grandchild = Event::new(event_type!("email.sent"), source!("mail"), ()).caused_by(&child);
    assert_eq!(child.causation_id, Some(root.id));
    assert_eq!(grandchild.causation_id, Some(child.id));
    assert_eq!(grandchild.correlation_id, Some(root.id));
}

/// Not about events, but about the message a user reads first: a capacity that
/// is not a power of two names the one to use instead.
#[test]
fn a_capacity_that_is_not_a_power_of_two_suggests_one() {
    use ringbus::{limits::MAX_CAPACITY, BuildErrorKind};
    let err = ringbus::BusBuilder::<u32>::new()
        .capacity(1000)
        .build()
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        BuildErrorKind::CapacityNotPowerOfTwo(1000)
    ));
    assert_eq!(
        err.to_string(),
        "ring capacity 1000 is not a power of two; try 1024"
    );
    // Beyond the maximum, the suggestion is the maximum, never a capacity that
    // fails again.
    for cap in [MAX_CAPACITY + 1, usize::MAX] {
        let err = ringbus::BusBuilder::<u32>::new()
            .capacity(cap)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("ring capacity {cap} is not a power of two; try {MAX_CAPACITY}")
        );
    }
}

/// The event-type rules hold the same for the runtime constructor and for what
/// `event_type!` accepts at compile time (a bad literal does not build: see the
/// macro's `compile_fail` doctests); a name known only at run time is checked by
/// `EventType::try_new`, which returns an error instead of panicking.
#[test]
fn names_known_only_at_run_time_are_checked_without_a_panic() {
    use ringbus::NameError;
    let from_input = String::from("order placed");
    assert_eq!(
        EventType::try_new(&from_input),
        Err(NameError::InvalidEventType("order placed".into()))
    );
    assert_eq!(ringbus::Source::try_new(""), Err(NameError::Empty));
    const PLACED: &str = "order.placed";
    assert_eq!(
        event_type!(PLACED),
        EventType::try_new("order.placed").unwrap()
    );
}

/// `Event::new`'s documented stamps: coarse-clock timestamps strictly increasing
/// within a thread, ids strictly increasing and carrying the timestamp's
/// millisecond, never ahead of the precise clock.
#[test]
fn event_new_stamps_are_coarse_but_strictly_increasing_per_thread() {
    let ty = EventType::new("stamp.test");
    let src = Source::new("test");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut prev = Event::new(ty, src, 0u32);
                for i in 1..50_000u32 {
                    let e = Event::new(ty, src, i);
                    assert!(e.timestamp > prev.timestamp);
                    assert!(e.id > prev.id);
                    let (s, n) = e.id.as_uuid().get_timestamp().unwrap().to_unix();
                    assert_eq!(s * 1000 + u64::from(n) / 1_000_000, e.timestamp.as_millis());
                    prev = e;
                }
                assert!(prev.timestamp <= Timestamp::now());
                prev.id
            })
        })
        .collect();
    let ids: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(ids[0], ids[1]);
    let precise = Timestamp::now();
    let e = Event::new(ty, src, 0u32).with_timestamp(precise);
    assert_eq!(e.timestamp, precise);
}

#[test]
fn json_carries_the_store_position_only_when_present() {
    use ringbus::store::Position;
    let e = Event::new(
        event_type!("order.placed"),
        source!("shop"),
        json!({"n": 1}),
    );
    let v = serde_json::to_value(&e).unwrap();
    assert!(v.get("position").is_none(), "no position, no key: {v}");
    let back: Event = serde_json::from_value(v).unwrap();
    assert_eq!(back.position(), None);

    let e = e.with_position(Position(41));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["position"], 41);
    let back: Event = serde_json::from_value(v).unwrap();
    assert_eq!(back.position(), Some(Position(41)));
    assert_eq!(back, e);

    // The largest position an event can carry, and the one it cannot.
    let top = e.clone().with_position(Position(u64::MAX - 1));
    let back: Event = serde_json::from_str(&serde_json::to_string(&top).unwrap()).unwrap();
    assert_eq!(back.position(), Some(Position(u64::MAX - 1)));
    let mut v = serde_json::to_value(&e).unwrap();
    v["position"] = json!(u64::MAX);
    let err = serde_json::from_value::<Event>(v).unwrap_err();
    assert!(err.to_string().contains("position"), "{err}");
}

#[test]
#[should_panic(expected = "Position(u64::MAX)")]
fn position_u64_max_cannot_be_carried() {
    let _ = Event::new(event_type!("t"), source!("s"), 0)
        .with_position(ringbus::store::Position(u64::MAX));
}

/// The envelope decision (issue 11): the position costs 8 bytes, not 16.
#[test]
#[cfg(target_pointer_width = "64")]
fn the_position_costs_eight_bytes_of_envelope() {
    assert_eq!(std::mem::size_of::<Event<u64>>(), 112);
    assert_eq!(
        std::mem::size_of::<Option<ringbus::store::Position>>(),
        16,
        "a plain Option<Position> would have cost 16"
    );
}
