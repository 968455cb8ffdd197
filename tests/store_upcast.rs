//! Upcasting (issue 11, A5): links applied one by one, renames, the typed errors,
//! and the promise that an event at its latest version pays nothing — checked
//! with a counting allocator (its own test binary: the allocator is global to it)
//! and with a payload that records which deserializer built it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringbus::codec::{
    decode, decode_upcast, decode_upcast_typed, encode, encode_batch, DecodeError, EventRef,
    FrameKind,
};
use ringbus::store::upcast::{
    DecodeUpcastError, UpcastConfigErrorKind, UpcastError, UpcastErrorKind, Upcasters,
};
use ringbus::store::Position;
use ringbus::{Event, EventId, EventType, Source, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

// ---- a counting allocator, as in tests/codec_alloc.rs ------------------------

struct Counting;

thread_local! {
    /// Allocations made by this thread while counting is on.
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: delegates to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n + 1));
            }
        });
        // SAFETY: the caller's duties for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if let Some(n) = c.get() {
                c.set(Some(n + 1));
            }
        });
        // SAFETY: the caller's duties for `realloc` are passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`; returns its result and the allocations it made on this thread.
fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNT.with(|c| c.set(Some(0)));
    let r = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap();
    (r, n)
}

// ---- fixtures ------------------------------------------------------------------

/// An event with every envelope field set, so tests can check links keep them.
fn event(ty: &str, version: u32, data: Value) -> Event {
    let mut e = Event::new(EventType::new(ty), Source::new("users"), data)
        .with_version(version)
        .with_subject("u-1")
        .with_correlation_id(EventId::from_bytes([7; 16]));
    e.id = EventId::from_bytes([1; 16]);
    e.timestamp = Timestamp::from_nanos(1_720_000_000_000_000_000);
    e
}

fn frame<P: Serialize>(e: &Event<P>) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(e, &mut buf).unwrap();
    buf
}

/// `user.registered`: v1 `{name}` → v2 `{first, last}` → v3 adds `verified`.
/// Each link counts its calls and checks the version it is given.
fn user_upcasters(calls: &Arc<[AtomicUsize; 2]>) -> Upcasters {
    let mut u = Upcasters::new();
    let c = Arc::clone(calls);
    u.add("user.registered", 1, move |mut e| {
        c[0].fetch_add(1, Ordering::Relaxed);
        assert_eq!(e.version, 1, "link 1 is given v1 events only");
        let name = e.data["name"]
            .as_str()
            .ok_or_else(|| UpcastError::failed("v1 without a name"))?;
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        e.data = json!({ "first": first, "last": last });
        Ok(e)
    })
    .unwrap();
    let c = Arc::clone(calls);
    u.add("user.registered", 2, move |mut e| {
        c[1].fetch_add(1, Ordering::Relaxed);
        assert_eq!(e.version, 2, "link 2 is given v2 events only");
        e.data["verified"] = json!(false);
        e.version = 99; // the registry stamps the version itself
        Ok(e)
    })
    .unwrap();
    u
}

/// Version 3 of `user.registered`, as the code reads it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct UserV3 {
    first: String,
    last: String,
    verified: bool,
}

fn calls() -> Arc<[AtomicUsize; 2]> {
    Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)])
}

fn counts(c: &[AtomicUsize; 2]) -> [usize; 2] {
    [c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)]
}

fn upcast_err(r: Result<impl Sized, DecodeUpcastError>) -> UpcastError {
    match r {
        Err(DecodeUpcastError::Upcast(e)) => e,
        Err(other) => panic!("expected an upcast error, got {other:?}"),
        Ok(_) => panic!("expected an upcast error, got an event"),
    }
}

// ---- chains ----------------------------------------------------------------------

#[test]
fn v1_becomes_v3_through_two_links_keeping_the_envelope() {
    let c = calls();
    let u = user_upcasters(&c);
    assert_eq!(u.latest("user.registered"), Some(3));
    let v1 = event("user.registered", 1, json!({ "name": "Ada Lovelace" }));

    let v3 = u.upcast(v1.clone()).unwrap();
    assert_eq!(counts(&c), [1, 1]);
    assert_eq!(v3.version, 3, "stamped by the registry, not the link's 99");
    assert_eq!(
        v3.data,
        json!({ "first": "Ada", "last": "Lovelace", "verified": false })
    );
    assert_eq!(
        (v3.id, v3.timestamp, v3.source, v3.event_type),
        (v1.id, v1.timestamp, v1.source, v1.event_type)
    );
    assert_eq!(v3.subject, v1.subject);
    assert_eq!(v3.correlation_id, v1.correlation_id);

    // The same through bytes, typed.
    let (typed, used) = decode_upcast::<UserV3>(&frame(&v1), &u).unwrap();
    assert_eq!(counts(&c), [2, 2]);
    assert_eq!(used, frame(&v1).len());
    assert_eq!(typed.version, 3);
    assert_eq!(typed.id, v1.id);
    assert_eq!(typed.subject, v1.subject);
    assert_eq!(
        typed.data,
        UserV3 {
            first: "Ada".into(),
            last: "Lovelace".into(),
            verified: false
        }
    );
}

#[test]
fn an_event_at_v2_runs_only_the_second_link_and_one_at_v3_none() {
    let c = calls();
    let u = user_upcasters(&c);
    let v2 = event("user.registered", 2, json!({ "first": "A", "last": "B" }));
    assert_eq!(u.needs_upcast("user.registered", 2), Ok(true));
    let (e, _) = decode_upcast::<UserV3>(&frame(&v2), &u).unwrap();
    assert_eq!(counts(&c), [0, 1]);
    assert_eq!((e.version, e.data.verified), (3, false));

    let v3 = event(
        "user.registered",
        3,
        json!({ "first": "A", "last": "B", "verified": true }),
    );
    assert_eq!(u.needs_upcast("user.registered", 3), Ok(false));
    let (e, _) = decode_upcast::<UserV3>(&frame(&v3), &u).unwrap();
    assert_eq!(
        counts(&c),
        [0, 1],
        "no link runs for an event at the latest version"
    );
    assert!(e.data.verified);
    assert_eq!(u.upcast(v3.clone()).unwrap(), v3);
}

#[test]
fn types_without_links_pass_unchecked_whatever_their_version() {
    let c = calls();
    let u = user_upcasters(&c);
    assert_eq!(u.latest("order.placed"), None);
    let e = event("order.placed", 7, json!({ "total": 1 }));
    assert_eq!(u.needs_upcast("order.placed", 7), Ok(false));
    assert_eq!(u.upcast(e.clone()).unwrap(), e);
    let (back, _) = decode_upcast::<Value>(&frame(&e), &u).unwrap();
    assert_eq!(back, e);
    // An empty registry passes everything.
    let empty = Upcasters::new();
    let (back, _) = decode_upcast::<Value>(&frame(&e), &empty).unwrap();
    assert_eq!(back, e);
    assert_eq!(counts(&c), [0, 0]);
}

// ---- renames ---------------------------------------------------------------------

/// `customer.created` v1 was renamed `client.created` (v2); `client.created` v2 →
/// v3 added `tier`.
fn rename_upcasters() -> Upcasters {
    let mut u = Upcasters::new();
    u.add("customer.created", 1, |mut e| {
        e.event_type = EventType::new("client.created");
        Ok(e)
    })
    .unwrap()
    .add("client.created", 2, |mut e| {
        e.data["tier"] = json!("basic");
        Ok(e)
    })
    .unwrap();
    u
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ClientCreated {
    id: u64,
    tier: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ClientClosed {
    id: u64,
}

ringbus::domain_events! {
    #[derive(Debug, PartialEq)]
    enum Crm {
        ClientCreated(ClientCreated) => "client.created", source = "crm", version = 3;
        ClientClosed(ClientClosed) => "client.closed", source = "crm";
    }
}

#[test]
fn a_renamed_type_continues_with_the_new_types_links() {
    let u = rename_upcasters();
    assert_eq!(u.latest("customer.created"), Some(2));
    assert_eq!(u.latest("client.created"), Some(3));
    let old = event("customer.created", 1, json!({ "id": 7 }));

    let e = u.upcast(old.clone()).unwrap();
    assert_eq!((e.event_type.name(), e.version), ("client.created", 3));
    assert_eq!(e.data, json!({ "id": 7, "tier": "basic" }));
    assert_eq!(e.id, old.id);

    // Typed through an event enum: the new name picks the variant.
    let (typed, _) = decode_upcast_typed::<Crm>(&frame(&old), &u).unwrap();
    assert_eq!(
        typed.data,
        Crm::ClientCreated(ClientCreated {
            id: 7,
            tier: "basic".into()
        })
    );
    assert_eq!(typed.event_type.name(), "client.created");
    assert_eq!(typed.version, 3);

    // Events written under the new name, at v2 and at v3.
    let v2 = event("client.created", 2, json!({ "id": 8 }));
    let (typed, _) = decode_upcast_typed::<Crm>(&frame(&v2), &u).unwrap();
    assert_eq!(
        typed.data,
        Crm::ClientCreated(ClientCreated {
            id: 8,
            tier: "basic".into()
        })
    );
    let v3 = event("client.created", 3, json!({ "id": 9, "tier": "gold" }));
    let (typed, _) = decode_upcast_typed::<Crm>(&frame(&v3), &u).unwrap();
    assert_eq!(typed.version, 3);
    assert_eq!(
        typed.data,
        Crm::ClientCreated(ClientCreated {
            id: 9,
            tier: "gold".into()
        })
    );
}

#[test]
fn a_rename_to_a_type_without_links_ends_the_chain() {
    let mut u = Upcasters::new();
    u.add("client.deleted", 1, |mut e| {
        e.event_type = EventType::new("client.closed");
        Ok(e)
    })
    .unwrap();
    let old = event("client.deleted", 1, json!({ "id": 3 }));
    let (typed, _) = decode_upcast_typed::<Crm>(&frame(&old), &u).unwrap();
    assert_eq!(typed.data, Crm::ClientClosed(ClientClosed { id: 3 }));
    assert_eq!(typed.version, 2);
}

// ---- errors ----------------------------------------------------------------------

#[test]
fn a_missing_link_is_a_typed_error_naming_type_version_and_position() {
    // Links 1 → 2 and 3 → 4: nothing leads from 2.
    let mut u = Upcasters::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    u.add("order.placed", 1, move |e| {
        r.fetch_add(1, Ordering::Relaxed);
        Ok(e)
    })
    .unwrap()
    .add("order.placed", 3, Ok)
    .unwrap();
    assert_eq!(u.latest("order.placed"), Some(4));

    // Stored at v2: refused before anything runs.
    let v2 = event("order.placed", 2, json!({}));
    let err = u.upcast(v2.clone()).unwrap_err();
    assert_eq!(err.kind(), &UpcastErrorKind::MissingLink { latest: 4 });
    assert_eq!(
        (err.event_type(), err.version(), err.position()),
        ("order.placed", 2, None)
    );
    assert_eq!(ran.load(Ordering::Relaxed), 0);

    // Stored at v1: the first link runs, then the chain breaks at v2.
    let v1 = event("order.placed", 1, json!({}));
    let err = upcast_err(decode_upcast::<Value>(&frame(&v1), &u).map_err(|e| e.at(Position(17))));
    assert_eq!(err.kind(), &UpcastErrorKind::MissingLink { latest: 4 });
    assert_eq!(
        (err.event_type(), err.version(), err.position()),
        ("order.placed", 2, Some(Position(17)))
    );
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    let text = err.to_string();
    for part in ["order.placed", "v2", "position 17", "v4"] {
        assert!(text.contains(part), "{text:?} does not mention {part}");
    }

    // Below the first link, too.
    let v0 = event("order.placed", 0, json!({}));
    let err = upcast_err(decode_upcast::<Value>(&frame(&v0), &u));
    assert_eq!(
        (err.kind(), err.version()),
        (&UpcastErrorKind::MissingLink { latest: 4 }, 0)
    );
}

#[test]
fn a_version_newer_than_latest_is_a_typed_error() {
    let c = calls();
    let u = user_upcasters(&c);
    let v4 = event("user.registered", 4, json!({ "first": "A" }));
    let err = u.upcast(v4.clone()).unwrap_err();
    assert_eq!(err.kind(), &UpcastErrorKind::TooNew { latest: 3 });
    assert_eq!((err.event_type(), err.version()), ("user.registered", 4));
    assert_eq!(u.needs_upcast("user.registered", 4).unwrap_err(), err);

    // The typed paths refuse it rather than decode it as v3.
    let err = upcast_err(decode_upcast::<Value>(&frame(&v4), &u).map_err(|e| e.at(Position(5))));
    assert_eq!(err.kind(), &UpcastErrorKind::TooNew { latest: 3 });
    assert_eq!(err.position(), Some(Position(5)));
    let bytes = frame(&v4);
    let (view, _) = EventRef::decode(&bytes).unwrap();
    let err = upcast_err(u.to_event::<Value>(&view));
    assert_eq!((err.event_type(), err.version()), ("user.registered", 4));
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(counts(&c), [0, 0]);
}

#[test]
fn a_failing_link_is_a_typed_error_and_no_event_comes_back() {
    let c = calls();
    let u = user_upcasters(&c);
    // v1 without a name: the first link refuses it.
    let bad = event("user.registered", 1, json!({ "nom": "Ada" }));
    let err = u.upcast(bad.clone()).unwrap_err();
    assert_eq!(
        err.kind(),
        &UpcastErrorKind::LinkFailed {
            reason: "v1 without a name".into()
        }
    );
    assert_eq!((err.event_type(), err.version()), ("user.registered", 1));
    assert_eq!(counts(&c), [1, 0], "the chain stops at the failing link");

    let err = upcast_err(decode_upcast::<UserV3>(&frame(&bad), &u).map_err(|e| e.at(Position(3))));
    assert_eq!(err.position(), Some(Position(3)));
    assert_eq!(
        err.to_string(),
        "cannot upcast user.registered v1 at position 3: the upcaster from v1 failed: v1 without a name"
    );

    // A link that fails second: the error names the second step, not the first.
    let mut u = Upcasters::new();
    u.add("a.b", 1, |mut e| {
        e.data = json!("half");
        Ok(e)
    })
    .unwrap()
    .add("a.b", 2, |_| Err(UpcastError::failed("no")))
    .unwrap();
    let err = u.upcast(event("a.b", 1, json!(null))).unwrap_err();
    assert_eq!((err.version(), err.event_type()), (2, "a.b"));
}

#[test]
fn a_panicking_link_is_a_failure_not_a_panic() {
    let mut u = Upcasters::new();
    u.add("a.b", 1, |e| {
        if e.data.is_null() {
            panic!("boom in the upcaster");
        }
        Ok(e)
    })
    .unwrap();
    let err = u.upcast(event("a.b", 1, json!(null))).unwrap_err();
    match err.kind() {
        UpcastErrorKind::LinkFailed { reason } => {
            assert!(reason.contains("boom in the upcaster"), "{reason}")
        }
        other => panic!("expected LinkFailed, got {other:?}"),
    }
    assert_eq!(err.version(), 1);
    // The registry still works afterwards.
    assert_eq!(u.upcast(event("a.b", 1, json!(1))).unwrap().version, 2);
}

#[test]
fn a_chain_whose_result_does_not_fit_the_type_is_a_mismatch() {
    let mut u = Upcasters::new();
    // Forgets `tier`, which `ClientCreated` needs.
    u.add("client.created", 2, Ok).unwrap();
    let v2 = event("client.created", 2, json!({ "id": 1 }));

    let err = upcast_err(decode_upcast::<ClientCreated>(&frame(&v2), &u));
    assert!(matches!(err.kind(), UpcastErrorKind::Mismatch { reason } if reason.contains("tier")));
    assert_eq!((err.event_type(), err.version()), ("client.created", 3));

    let err = upcast_err(decode_upcast_typed::<Crm>(&frame(&v2), &u));
    assert!(matches!(err.kind(), UpcastErrorKind::Mismatch { .. }));

    // Renamed to a type the enum does not have.
    let mut u = Upcasters::new();
    u.add("client.created", 2, |mut e| {
        e.event_type = EventType::new("client.archived");
        Ok(e)
    })
    .unwrap();
    let err = upcast_err(decode_upcast_typed::<Crm>(&frame(&v2), &u));
    assert!(
        matches!(err.kind(), UpcastErrorKind::Mismatch { reason } if reason.contains("client.archived"))
    );
    assert_eq!((err.event_type(), err.version()), ("client.archived", 3));
}

#[test]
fn bytes_that_are_not_an_event_frame_are_decode_errors() {
    let u = rename_upcasters();
    let f = frame(&event("customer.created", 1, json!({ "id": 1 })));
    assert!(matches!(
        decode_upcast::<Value>(&f[..f.len() - 1], &u),
        Err(DecodeUpcastError::Decode(DecodeError::Truncated { .. }))
    ));
    let mut batch = Vec::new();
    encode_batch(&[event("customer.created", 1, json!({}))], &mut batch).unwrap();
    assert_eq!(
        decode_upcast::<Value>(&batch, &u).unwrap_err(),
        DecodeUpcastError::Decode(DecodeError::WrongFrameKind {
            expected: FrameKind::Event,
            found: FrameKind::Batch
        })
    );
    // A payload that is not a value at all (raw bytes) cannot be upcast.
    let mut raw = Vec::new();
    ringbus::codec::Encoder::new()
        .encode_raw(
            &event("customer.created", 1, json!(null)).map(|_| [1u8, 2]),
            ringbus::codec::ContentType::RAW,
            &mut raw,
        )
        .unwrap();
    assert!(matches!(
        decode_upcast::<Value>(&raw, &u),
        Err(DecodeUpcastError::Decode(
            DecodeError::UnsupportedContentType(_)
        ))
    ));
    // Positions are not added to decode errors.
    let e = DecodeUpcastError::Decode(DecodeError::UnsupportedVersion(9));
    assert_eq!(e.clone().at(Position(1)), e);
}

// ---- configuration ----------------------------------------------------------------

#[test]
fn a_duplicate_link_is_refused_and_the_first_one_kept() {
    let mut u = Upcasters::new();
    u.add("a.b", 1, |mut e| {
        e.data = json!("first");
        Ok(e)
    })
    .unwrap();
    let err = u
        .add("a.b", 1, |mut e| {
            e.data = json!("second");
            Ok(e)
        })
        .unwrap_err();
    assert_eq!(err.kind(), &UpcastConfigErrorKind::DuplicateLink);
    assert_eq!((err.event_type(), err.from_version()), ("a.b", 1));
    assert!(err.to_string().contains("already"), "{err}");
    assert_eq!(
        u.upcast(event("a.b", 1, json!(null))).unwrap().data,
        json!("first")
    );

    let err = u.add("a.b", u32::MAX, Ok).unwrap_err();
    assert_eq!(err.kind(), &UpcastConfigErrorKind::VersionOverflow);
    let err = u.add("a..b", 1, Ok).unwrap_err();
    assert!(matches!(
        err.kind(),
        UpcastConfigErrorKind::InvalidEventType(_)
    ));
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(u.latest("a.b"), Some(2), "refused links change nothing");
    // The same version of another type is no duplicate.
    u.add("a.c", 1, Ok).unwrap();
}

#[test]
fn the_registry_is_shareable_and_clones_share_links() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Upcasters>();
    let c = calls();
    let u = user_upcasters(&c);
    let v = u.clone();
    let t = std::thread::spawn(move || v.upcast(event("user.registered", 2, json!({}))).unwrap());
    assert_eq!(t.join().unwrap().version, 3);
    assert_eq!(counts(&c), [0, 1]);
    assert_eq!(
        format!("{u:?}"),
        r#"{"user.registered": [1, 2]}"#,
        "Debug lists the links"
    );
}

// ---- the fast path ------------------------------------------------------------------

/// A payload without heap data, so decoding it allocates nothing at all.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Tick {
    n: u64,
    up: bool,
}

#[test]
fn an_event_at_the_latest_version_allocates_what_a_plain_decode_does() {
    let mut u = Upcasters::new();
    u.add("clock.tick", 1, |mut e| {
        e.data = json!({ "n": e.data["n"], "up": true });
        Ok(e)
    })
    .unwrap()
    .add("other.type", 1, Ok)
    .unwrap();
    let mut latest = Event::new(
        EventType::new("clock.tick"),
        Source::new("clock"),
        Tick { n: 7, up: false },
    )
    .with_version(2);
    latest.id = EventId::from_bytes([2; 16]);
    let latest = frame(&latest);
    let old = frame(&Event::new(
        EventType::new("clock.tick"),
        Source::new("clock"),
        json!({ "n": 7 }),
    ));
    // Warm up: thread-locals, the name table.
    let _ = decode::<Tick>(&latest).unwrap();
    let _ = decode_upcast::<Tick>(&old, &u).unwrap();

    let (plain, plain_allocs) = counting(|| decode::<Tick>(&latest).unwrap());
    let (upcast, upcast_allocs) = counting(|| decode_upcast::<Tick>(&latest, &u).unwrap());
    assert_eq!(upcast, plain);
    assert_eq!(
        plain_allocs, 0,
        "the plain decode of this payload allocates nothing"
    );
    assert_eq!(
        upcast_allocs, 0,
        "an event at its latest version took a detour"
    );

    // Through a view, and with a registry that knows nothing of the type.
    let (view, _) = EventRef::decode(&latest).unwrap();
    let (_, n) = counting(|| u.to_event::<Tick>(&view).unwrap());
    assert_eq!(n, 0);
    let (_, n) = counting(|| Upcasters::new().to_event::<Tick>(&view).unwrap());
    assert_eq!(n, 0);

    // The counter does see the detour an old event takes.
    let ((e, _), detour_allocs) = counting(|| decode_upcast::<Tick>(&old, &u).unwrap());
    assert_eq!((e.version, e.data), (2, Tick { n: 7, up: true }));
    assert!(detour_allocs > 0, "the Value detour allocates");
}

/// Records whether it was built by a human-readable deserializer: MessagePack
/// (the frame, directly) is not, a `serde_json::Value` is.
#[derive(Debug)]
struct Probe {
    via_value: bool,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let via_value = d.is_human_readable();
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Probe { via_value })
    }
}

ringbus::domain_events! {
    enum Probed { Tick(ProbedEventPayload) => "clock.tick", source = "clock"; }
}

/// The event-enum variant's payload, probing the same way.
#[derive(Debug)]
struct ProbedEventPayload(Probe);

impl Serialize for ProbedEventPayload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for ProbedEventPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Probe::deserialize(d).map(ProbedEventPayload)
    }
}

#[test]
fn only_an_event_that_needs_links_is_decoded_through_a_value() {
    let mut u = Upcasters::new();
    u.add("clock.tick", 1, Ok).unwrap();
    let at = |v: u32| {
        frame(
            &Event::new(
                EventType::new("clock.tick"),
                Source::new("clock"),
                json!({ "n": 1 }),
            )
            .with_version(v),
        )
    };
    let (latest, _) = decode_upcast::<Probe>(&at(2), &u).unwrap();
    assert!(
        !latest.data.via_value,
        "v2 is the latest: decoded from the frame"
    );
    let (old, _) = decode_upcast::<Probe>(&at(1), &u).unwrap();
    assert!(
        old.data.via_value,
        "v1 needs a link: decoded from the upcast Value"
    );

    // The event-enum path likewise.
    let (latest, _) = decode_upcast_typed::<Probed>(&at(2), &u).unwrap();
    let Probed::Tick(p) = latest.data;
    assert!(!p.0.via_value);
    let (old, _) = decode_upcast_typed::<Probed>(&at(1), &u).unwrap();
    let Probed::Tick(p) = old.data;
    assert!(p.0.via_value);
}
