//! Upcasting on the file store's typed read paths (issue 11, A5): events a
//! former version of the code wrote reach `read_stream`, `read_all` and the
//! catch-up subscriptions at the current schema; an event that cannot be
//! upcast is a typed `ReadError::Upcast` naming type, version and position.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringbus::store::upcast::{UpcastError, UpcastErrorKind, Upcasters};
use ringbus::store::{
    subscribe_all, EventStore, ExpectedVersion, FileStore, Position, ReadError, StoreOptions,
    StreamId,
};
use ringbus::{BusBuilder, Event, EventType, Source};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `user.registered` as the code reads it today (v3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserV3 {
    first: String,
    last: String,
    verified: bool,
}

/// v1 `{name}` → v2 `{first, last}` → v3 adds `verified`.
fn upcasters() -> Upcasters {
    let mut u = Upcasters::new();
    u.add("user.registered", 1, |mut e| {
        let name = e.data["name"]
            .as_str()
            .ok_or_else(|| UpcastError::failed("v1 without a name"))?;
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        e.data = json!({ "first": first, "last": last });
        Ok(e)
    })
    .unwrap()
    .add("user.registered", 2, |mut e| {
        e.data["verified"] = json!(false);
        Ok(e)
    })
    .unwrap();
    u
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringbus-upcast-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn registered(version: u32, data: Value) -> Event<Value> {
    Event::new(
        EventType::new("user.registered"),
        Source::new("users"),
        data,
    )
    .with_version(version)
}

/// Writes, as the old code did: a v1, a v2 and a v3 event in stream `u-1`.
fn write_history(d: &PathBuf, extra: Vec<Event<Value>>) {
    let old = FileStore::<Value>::open(d, StoreOptions::default()).unwrap();
    let mut events = vec![
        registered(1, json!({ "name": "Ada Lovelace" })),
        registered(2, json!({ "first": "Alan", "last": "Turing" })),
        registered(
            3,
            json!({ "first": "Grace", "last": "Hopper", "verified": true }),
        ),
    ];
    events.extend(extra);
    old.append(
        &StreamId::new("u-1").unwrap(),
        ExpectedVersion::NoStream,
        events,
    )
    .unwrap();
    old.close().unwrap();
}

fn expected() -> Vec<UserV3> {
    vec![
        UserV3 {
            first: "Ada".into(),
            last: "Lovelace".into(),
            verified: false,
        },
        UserV3 {
            first: "Alan".into(),
            last: "Turing".into(),
            verified: false,
        },
        UserV3 {
            first: "Grace".into(),
            last: "Hopper".into(),
            verified: true,
        },
    ]
}

#[test]
fn reads_and_subscriptions_see_old_events_at_the_current_schema() {
    let d = dir("reads");
    write_history(&d, vec![]);
    let store = Arc::new(
        FileStore::<UserV3>::open(&d, StoreOptions::default())
            .unwrap()
            .upcasters(upcasters()),
    );
    let s = StreamId::new("u-1").unwrap();
    let by_stream = store.read_stream(&s, 1, 10).unwrap();
    let all = store.read_all(Position(0), 10).unwrap();
    for read in [&by_stream, &all] {
        let data: Vec<UserV3> = read.iter().map(|r| r.event.data.clone()).collect();
        assert_eq!(data, expected());
        assert!(read.iter().all(|r| r.event.version == 3));
    }
    let backward = store.read_stream_backward(&s, 1).unwrap();
    assert_eq!(backward[0].event.data, expected()[2]);

    // A catch-up subscription reads through the same path.
    let bus = BusBuilder::<UserV3>::new().build().unwrap();
    let seen: Arc<Mutex<Vec<UserV3>>> = Arc::default();
    let sink = seen.clone();
    let sub = subscribe_all(store.clone(), &bus)
        .start(move |r| sink.lock().unwrap().push(r.event.data.clone()))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sub.position() < Some(Position(2)) {
        assert!(std::time::Instant::now() < deadline, "{:?}", sub.status());
        std::thread::sleep(Duration::from_millis(1));
    }
    sub.stop();
    assert_eq!(*seen.lock().unwrap(), expected());
    drop(sub);
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_event_that_cannot_be_upcast_is_a_typed_read_error_at_its_position() {
    // A v1 event without a name (the link fails), and one newer than the code.
    for (bad, kind) in [
        (registered(1, json!({ "nick": "ada" })), "failed"),
        (registered(7, json!({})), "too new"),
    ] {
        let d = dir(kind.replace(' ', "-").as_str());
        write_history(&d, vec![bad]);
        let store = FileStore::<UserV3>::open(&d, StoreOptions::default())
            .unwrap()
            .upcasters(upcasters());
        // The events before it read fine.
        assert_eq!(store.read_all(Position(0), 3).unwrap().len(), 3);
        match store.read_all(Position(0), 10) {
            Err(ReadError::Upcast(e)) => {
                assert_eq!(e.event_type(), "user.registered");
                assert_eq!(e.position(), Some(Position(3)));
                match kind {
                    "failed" => {
                        assert!(
                            matches!(e.kind(), UpcastErrorKind::LinkFailed { .. }),
                            "{e}"
                        );
                        assert_eq!(e.version(), 1);
                    }
                    _ => {
                        assert!(matches!(e.kind(), UpcastErrorKind::TooNew { .. }), "{e}");
                        assert_eq!(e.version(), 7);
                    }
                }
            }
            other => panic!("{kind}: expected an upcast error, got {other:?}"),
        }
        store.close().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn without_upcasters_an_old_payload_that_does_not_fit_is_a_decode_error() {
    let d = dir("none");
    write_history(&d, vec![]);
    let store = FileStore::<UserV3>::open(&d, StoreOptions::default()).unwrap();
    assert!(matches!(
        store.read_all(Position(0), 10),
        Err(ReadError::Decode {
            position: Position(0),
            ..
        })
    ));
    store.close().unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}
