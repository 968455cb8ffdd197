//! The NATS bridge's inbound side against a real `nats-server` each test starts:
//! a durable pull consumer feeding a local bus, acked after the handlers,
//! NAK'd with the configured delays, progress for long work, the 2.9 filter
//! limitation, a broker restart, the stop's report, and dedup (window, store).
//!
//! Test messages are published with raw async-nats as the outbound side would
//! publish them: the codec frame, `Nats-Msg-Id: <event id>`,
//! `Content-Type: application/vnd.ringbus.frame.v1`, on `rb.ev.<event type>`.
#![cfg(feature = "nats")]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats_client::{
    acks_settled, bridge, bus, consumer_info, frame, inbound, publish, publish_events, wait_until,
    Raw,
};
use nats_support::NatsServer;
use ringbus::nats::{BridgeError, ConsumerSpec, Dedup, InboundOptions, Ordering, StoreDedup};
use ringbus::resilience::{BreakerConfig, RetryPolicy};
use ringbus::store::{EventStore, InMemoryStore, Position};
use ringbus::{Bus, Event, EventId, EventType, HandlerError, Source, SubscribeOptions};
use serde_json::{json, Value};

fn event(event_type: &str, subject: &str, n: u64) -> Event<Value> {
    Event::new(
        EventType::new(event_type),
        Source::new("test"),
        json!({ "n": n }),
    )
    .with_subject(subject)
}

/// Subscribes a handler on `pattern` that records the id of each event it
/// sees; the record.
fn record_ids(b: &Bus<Value>, pattern: &str) -> Arc<Mutex<Vec<EventId>>> {
    let ids: Arc<Mutex<Vec<EventId>>> = Arc::default();
    let record = ids.clone();
    b.subscribe(pattern, move |e: &Event<Value>| {
        record.lock().unwrap().push(e.id)
    })
    .unwrap();
    ids
}

/// Test 2, inbound half: 10 000 events, 3 types, 50 subjects → bus B, each
/// once, per-subject order kept, nothing left pending or redelivered.
#[test]
fn round_trip_delivers_each_event_once_in_subject_order() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let events: Vec<_> = (0..10_000u64)
        .map(|i| {
            let t = ["order.placed", "order.paid", "user.seen"][(i % 3) as usize];
            event(t, &format!("s-{}", i % 50), i)
        })
        .collect();
    publish_events(&server, &events);

    let b = bus();
    let seen: Arc<Mutex<Vec<(String, u64, EventId)>>> = Arc::default();
    let s = seen.clone();
    b.subscribe(">", move |e: &Event<Value>| {
        let subject = e.subject.as_ref().map(|s| s.as_str().to_owned());
        s.lock().unwrap().push((
            subject.unwrap_or_default(),
            e.data["n"].as_u64().unwrap(),
            e.id,
        ));
    })
    .unwrap();
    let handle = inbound(&bridge, &b, "roundtrip", "order.*");
    // One pattern on 2.9: the order.* events only, then a second consumer for
    // the rest (several patterns on one consumer need 2.10).
    let handle2 = inbound(&bridge, &b, "roundtrip-users", "user.seen");
    wait_until(25, "10 000 events on the bus", || {
        seen.lock().unwrap().len() >= 10_000
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10_000, "no event twice");
    let ids: HashSet<EventId> = seen.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len(), 10_000, "each event once");
    let mut by_subject: HashMap<String, Vec<u64>> = HashMap::new();
    for (s, n, _) in &seen {
        by_subject.entry(s.clone()).or_default().push(*n);
    }
    assert_eq!(by_subject.len(), 50);
    // Per subject, each consumer's events keep stream order; the two consumers
    // interleave, so check each type family separately.
    for (s, ns) in &by_subject {
        let orders: Vec<u64> = ns.iter().copied().filter(|n| n % 3 != 2).collect();
        let users: Vec<u64> = ns.iter().copied().filter(|n| n % 3 == 2).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "order kept on {s}");
        assert!(users.windows(2).all(|w| w[0] < w[1]), "order kept on {s}");
    }
    for durable in ["roundtrip", "roundtrip-users"] {
        let info = acks_settled(&server, durable);
        assert_eq!(info.num_redelivered, 0, "{durable}: nothing redelivered");
        assert_eq!(info.num_pending, 0, "{durable}: nothing left");
    }
    let m = handle.metrics();
    let m2 = handle2.metrics();
    assert_eq!(m.received + m2.received, 10_000);
    assert_eq!(m.acked + m2.acked, 10_000);
    assert_eq!(m.redelivered + m2.redelivered + m.naked + m2.naked, 0);
    let text = bridge.metrics().to_prometheus();
    assert!(
        text.contains("ringbus_nats_inbound_acked_total{durable=\"roundtrip\"}"),
        "{text}"
    );
    let report = bridge.shutdown();
    assert!(report.is_clean(), "{report:?}");
}

/// Test 3: a handler failing twice (no local retry) → delivered 3 times, the
/// gaps at least the NAK delays the retry policy gives, then acked.
#[test]
fn failures_are_naked_with_the_retry_delays_then_acked() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    b.subscribe("job.run", move |_e: &Event<Value>| {
        let mut calls = c.lock().unwrap();
        calls.push(Instant::now());
        if calls.len() <= 2 {
            Err(HandlerError::transient("not yet"))
        } else {
            Ok(())
        }
    })
    .unwrap();
    let retry = RetryPolicy::exponential(
        Duration::from_millis(300),
        2.0,
        Duration::from_secs(5),
        u32::MAX,
    );
    let handle = bridge
        .inbound(
            &b,
            ConsumerSpec::new("nak", ["job.run"]),
            InboundOptions {
                retry,
                ..InboundOptions::default()
            },
        )
        .unwrap();
    publish_events(&server, &[event("job.run", "j-1", 1)]);
    wait_until(15, "three calls and an ack", || handle.metrics().acked == 1);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "delivered three times");
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(300),
        "first NAK delay kept: {:?}",
        calls[1] - calls[0]
    );
    assert!(
        calls[2] - calls[1] >= Duration::from_millis(600),
        "second NAK delay kept: {:?}",
        calls[2] - calls[1]
    );
    let m = handle.metrics();
    assert_eq!((m.received, m.redelivered, m.naked), (3, 2, 2));
    assert_eq!(acks_settled(&server, "nak").num_pending, 0);
}

/// Test 6: several patterns need a 2.10 server; on an older one the bridge
/// refuses (never a silently unfiltered consumer), one pattern works.
#[test]
fn several_patterns_need_a_2_10_server() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    b.subscribe(">", move |_e: &Event<Value>| {
        g.fetch_add(1, AtomicOrdering::Relaxed);
    })
    .unwrap();
    publish_events(
        &server,
        &[
            event("fs.a", "x", 1),
            event("fs.b", "x", 2),
            event("fs.c", "x", 3),
        ],
    );
    let two = bridge.inbound(
        &b,
        ConsumerSpec::new("two", ["fs.a", "fs.b"]),
        InboundOptions::default(),
    );
    if bridge.server_version().at_least(2, 10) {
        let h = two.expect("two patterns on a 2.10+ server");
        wait_until(10, "fs.a and fs.b", || h.metrics().acked == 2);
        let info = consumer_info(&server, "two");
        let mut filters = info.config.filter_subjects.clone();
        filters.sort();
        assert_eq!(filters, ["rb.ev.fs.a", "rb.ev.fs.b"]);
        assert_eq!(info.num_pending, 0, "fs.c is not for this consumer");
        assert_eq!(got.load(AtomicOrdering::Relaxed), 2);
    } else {
        match two {
            Err(BridgeError::Unsupported { server_version, .. }) => {
                assert_eq!(server_version, bridge.server_version())
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        let h = bridge
            .inbound(
                &b,
                ConsumerSpec::new("one", ["fs.a"]),
                InboundOptions::default(),
            )
            .expect("one pattern works");
        wait_until(10, "fs.a", || h.metrics().acked == 1);
        let info = consumer_info(&server, "one");
        assert_eq!(info.config.filter_subject, "rb.ev.fs.a");
        assert_eq!(info.num_pending, 0);
        assert_eq!(got.load(AtomicOrdering::Relaxed), 1, "only fs.a");
    }
}

/// I1: a consumer present with other settings is a mismatch, never changed;
/// bad settings are configuration errors.
#[test]
fn an_existing_consumer_with_other_settings_is_a_mismatch() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b: Bus<Value> = bus();
    let h = inbound(&bridge, &b, "cfg", "a.b");
    h.stop();
    let mut other = ConsumerSpec::new("cfg", ["a.b"]);
    other.max_attempts = 7;
    match bridge.inbound(&b, other, InboundOptions::default()) {
        Err(BridgeError::Mismatch { field, .. }) => assert_eq!(field, "max_deliver"),
        other => panic!("expected Mismatch, got {other:?}"),
    }
    match bridge.inbound(
        &b,
        ConsumerSpec::new("cfg", ["a.c"]),
        InboundOptions::default(),
    ) {
        Err(BridgeError::Mismatch { field, .. }) => assert_eq!(field, "filter subjects"),
        other => panic!("expected Mismatch, got {other:?}"),
    }
    let mut too_many_steps = ConsumerSpec::new("steps", ["a.b"]);
    too_many_steps.max_attempts = 1;
    too_many_steps.backoff = vec![Duration::from_secs(1); 2];
    let no_room = InboundOptions {
        dedup: Dedup::Window {
            ids: 0,
            keep: Duration::from_secs(1),
        },
        ..InboundOptions::default()
    };
    let elsewhere = InboundOptions {
        dead_letter_stream: "OTHER_DLQ".into(),
        ..InboundOptions::default()
    };
    let default = InboundOptions::default;
    for (bad, options) in [
        (ConsumerSpec::new("has.dot", ["a.b"]), default()),
        (ConsumerSpec::new("ok", ["a..b"]), default()),
        (ConsumerSpec::new("ok", Vec::<String>::new()), default()),
        (too_many_steps, default()),
        (ConsumerSpec::new("room", ["a.b"]), no_room),
        (ConsumerSpec::new("elsewhere", ["a.b"]), elsewhere),
    ] {
        assert!(
            matches!(
                bridge.inbound(&b, bad.clone(), options),
                Err(BridgeError::Config(_))
            ),
            "{bad:?}"
        );
    }
    let named = InboundOptions {
        dead_letter_stream: "RINGBUS_DLQ".into(),
        ..InboundOptions::default()
    };
    bridge
        .inbound(&b, ConsumerSpec::new("named", ["a.b"]), named)
        .unwrap()
        .stop();
    let info = consumer_info(&server, "cfg");
    assert_eq!(info.config.max_deliver, 6, "max_attempts 5 + 1, unchanged");
}

/// I6 `Strict`: one message in flight; a failed event is retried before the
/// next one reaches the bus.
#[test]
fn strict_ordering_keeps_stream_order_across_failures() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let s = seen.clone();
    let failed_once = Arc::new(AtomicU32::new(0));
    let f = failed_once.clone();
    b.subscribe("st.x", move |e: &Event<Value>| {
        let n = e.data["n"].as_u64().unwrap();
        s.lock().unwrap().push(n);
        if n == 1 && f.fetch_add(1, AtomicOrdering::Relaxed) == 0 {
            return Err(HandlerError::transient("first try of 1 fails"));
        }
        Ok(())
    })
    .unwrap();
    let h = bridge
        .inbound(
            &b,
            ConsumerSpec::new("strict", ["st.x"]),
            InboundOptions {
                ordering: Ordering::Strict,
                retry: RetryPolicy::fixed(Duration::from_millis(200), u32::MAX),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    publish_events(
        &server,
        &(0..4).map(|n| event("st.x", "k", n)).collect::<Vec<_>>(),
    );
    wait_until(15, "four acks", || h.metrics().acked == 4);
    assert_eq!(*seen.lock().unwrap(), [0, 1, 1, 2, 3]);
    assert_eq!(consumer_info(&server, "strict").config.max_ack_pending, 1);
}

/// I3: an event no local handler takes is NAK'd when `ack_unrouted` is off,
/// acked when on.
#[test]
fn unrouted_events_are_acked_or_naked_as_asked() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b: Bus<Value> = bus();
    publish_events(&server, &[event("nobody.here", "k", 1)]);
    let acking = inbound(&bridge, &b, "unrouted-ack", "nobody.here");
    let naking = bridge
        .inbound(
            &b,
            ConsumerSpec::new("unrouted-nak", ["nobody.here"]),
            InboundOptions {
                ack_unrouted: false,
                retry: RetryPolicy::fixed(Duration::from_secs(30), u32::MAX),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(10, "ack and nak", || {
        acking.metrics().acked == 1 && naking.metrics().naked == 1
    });
    assert_eq!(naking.metrics().acked, 0);
}

/// Test 9 (I7): a handler blocked for 3 × ack_wait → progress keeps the
/// delivery: no redelivery, delivered once, then acked.
#[test]
fn progress_keeps_a_long_delivery_from_being_redelivered() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    b.subscribe("slow.work", move |_e: &Event<Value>| {
        c.fetch_add(1, AtomicOrdering::Relaxed);
        std::thread::sleep(Duration::from_secs(3));
    })
    .unwrap();
    let mut spec = ConsumerSpec::new("progress", ["slow.work"]);
    spec.ack_wait = Duration::from_secs(1);
    let h = bridge.inbound(&b, spec, InboundOptions::default()).unwrap();
    publish_events(&server, &[event("slow.work", "k", 1)]);
    wait_until(15, "the ack", || h.metrics().acked == 1);
    let m = h.metrics();
    assert_eq!(calls.load(AtomicOrdering::Relaxed), 1, "handled once");
    assert_eq!((m.received, m.redelivered), (1, 0));
    assert!(m.progress_sent >= 2, "progress sent: {}", m.progress_sent);
    assert_eq!(acks_settled(&server, "progress").num_redelivered, 0);
}

/// Test 10 (I9): the stop acks what completed, NAKs what did not finish within
/// the drain timeout, and reports exactly those.
#[test]
fn stop_acks_completed_naks_unfinished_and_reports_them() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let slow_started = Arc::new(AtomicUsize::new(0));
    let started = slow_started.clone();
    b.subscribe("stop.slow", move |_e: &Event<Value>| {
        started.fetch_add(1, AtomicOrdering::Relaxed);
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20));
    })
    .unwrap();
    b.subscribe("stop.fast", |_e: &Event<Value>| {}).unwrap();
    let mut events: Vec<_> = (0..5).map(|n| event("stop.fast", "f", n)).collect();
    let slow = event("stop.slow", "s", 99);
    events.push(slow.clone());
    publish_events(&server, &events);
    let h = bridge
        .inbound(
            &b,
            ConsumerSpec::new("stopping", ["stop.*"]),
            InboundOptions {
                drain_timeout: Duration::from_millis(300),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(10, "five acks and the slow one started", || {
        h.metrics().acked == 5 && slow_started.load(AtomicOrdering::Relaxed) == 1
    });
    let report = h.stop();
    assert_eq!(report.name, "inbound:stopping");
    assert_eq!(report.completed, 5, "{report:?}");
    assert_eq!(report.unacked.len(), 1, "{report:?}");
    let u = &report.unacked[0];
    assert_eq!(u.event_id, Some(slow.id));
    assert_eq!(u.subject, "rb.ev.stop.slow");
    assert_eq!(u.stream_sequence, Some(6));
    assert!(u.state.contains("NAK'd at shutdown"), "{}", u.state);
    release_tx.send(()).unwrap();

    // The NAK'd one comes back at once to the next consumer; the acked ones do not.
    let b2 = bus();
    let again = record_ids(&b2, ">");
    let h2 = inbound(&bridge, &b2, "stopping", "stop.*");
    wait_until(10, "the redelivery", || h2.metrics().acked == 1);
    assert_eq!(*again.lock().unwrap(), [slow.id]);
    // (2.9.10 hands a NAK'd last delivery out again as delivery 1, so the
    // delivery count is not asserted.)
    assert_eq!(h2.metrics().received, 1, "{:?}", h2.metrics());
    // A second stop reports nothing more.
    let report = bridge.shutdown();
    assert!(report.is_clean(), "{report:?}");
}

/// Test 7, consumer half (I8): the server is SIGKILLed mid-stream and
/// restarted on the same port and store; the consumer resumes. Returns how
/// often the bus saw each event, and the consumer's counters.
fn kill_and_restart_mid_stream(
    dedup: Dedup,
) -> Option<(HashMap<EventId, u32>, ringbus::nats::InboundMetrics)> {
    let mut server = NatsServer::start_or_skip()?;
    let bridge = bridge(&server);
    let events: Vec<_> = (0..3_000u64)
        .map(|i| event("rs.ev", &format!("s-{}", i % 10), i))
        .collect();
    publish_events(&server, &events);
    let b = bus();
    let seen: Arc<Mutex<HashMap<EventId, u32>>> = Arc::default();
    let s = seen.clone();
    b.subscribe("rs.ev", move |e: &Event<Value>| {
        // Slow enough for the kill to land mid-stream.
        std::thread::sleep(Duration::from_micros(300));
        *s.lock().unwrap().entry(e.id).or_default() += 1;
    })
    .unwrap();
    let mut spec = ConsumerSpec::new("restart", ["rs.ev"]);
    spec.ack_wait = Duration::from_secs(2);
    let h = bridge
        .inbound(
            &b,
            spec,
            InboundOptions {
                dedup,
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(15, "a first part handled", || {
        seen.lock().unwrap().len() >= 300
    });
    server.kill();
    let during = seen.lock().unwrap().len();
    assert!(during < 3_000, "killed mid-stream ({during} handled)");
    server
        .restart()
        .expect("restarts on the same port and store");
    wait_until(25, "every event after the restart", || {
        seen.lock().unwrap().len() == 3_000
    });
    acks_settled(&server, "restart");
    let m = bridge.metrics();
    assert!(m.connection.reconnects >= 1, "{m:?}");
    let report = bridge.shutdown();
    assert!(report.is_clean(), "{report:?}");
    let seen = seen.lock().unwrap().clone();
    Some((seen, h.metrics()))
}

/// Test 7 with `Dedup::Off`: every event at least once.
#[test]
fn the_consumer_resumes_after_a_server_restart() {
    let Some((seen, m)) = kill_and_restart_mid_stream(Dedup::Off) else {
        return;
    };
    assert_eq!(seen.len(), 3_000, "every event");
    let handled: u64 = seen.values().map(|n| u64::from(*n)).sum();
    assert_eq!(handled, m.received, "each delivery reached the bus");
}

/// Test 7 with `Dedup::Window`: every event exactly once; each extra
/// delivery (the restarted server redelivers what it had not seen acked) is
/// dropped.
#[test]
fn window_dedup_makes_the_restart_exactly_once() {
    let dedup = Dedup::Window {
        ids: 100_000,
        keep: Duration::from_secs(300),
    };
    let Some((seen, m)) = kill_and_restart_mid_stream(dedup) else {
        return;
    };
    assert_eq!(seen.len(), 3_000, "every event");
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} events handled twice");
    assert_eq!(m.received, 3_000 + m.dedup_dropped, "{m:?}");
}

/// Test 9 (I7), breaker variant: an event held by an open circuit breaker
/// for 3 × ack_wait is kept by progress, not redelivered, and handled once
/// the breaker lets it through.
#[test]
fn progress_keeps_an_event_held_by_an_open_breaker() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    b.subscribe_with(
        "held.work",
        move |_e: &Event<Value>| -> Result<(), HandlerError> {
            if c.fetch_add(1, AtomicOrdering::Relaxed) == 0 {
                Err(HandlerError::transient("downstream down"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new()
            .retry(RetryPolicy::fixed(Duration::from_millis(100), 100))
            .circuit_breaker(BreakerConfig::consecutive_failures(
                1,
                Duration::from_secs(3),
            )),
    )
    .unwrap();
    let mut spec = ConsumerSpec::new("held", ["held.work"]);
    spec.ack_wait = Duration::from_secs(1);
    let h = bridge.inbound(&b, spec, InboundOptions::default()).unwrap();
    let started = Instant::now();
    publish_events(&server, &[event("held.work", "k", 1)]);
    wait_until(15, "the ack", || h.metrics().acked == 1);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "held for the breaker's cool-down"
    );
    let m = h.metrics();
    assert_eq!((m.received, m.redelivered, m.naked), (1, 0, 0), "{m:?}");
    assert!(m.progress_sent >= 2, "progress sent: {}", m.progress_sent);
    assert_eq!(
        calls.load(AtomicOrdering::Relaxed),
        2,
        "failed once, then handled"
    );
}

/// I5 `Dedup::Store`: inbound events are appended to the store once; a
/// redelivery of one already stored is acked without reaching the bus — also
/// after the bridge restarted — while a retry of this process's own NAK
/// reaches the bus again.
#[test]
fn store_dedup_survives_a_bridge_restart() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let store = Arc::new(InMemoryStore::<Value>::new());
    let dedup = StoreDedup::new(store.clone(), "inbox").unwrap();
    let options = |dedup: &StoreDedup| InboundOptions {
        dedup: Dedup::Store(dedup.clone()),
        retry: RetryPolicy::fixed(Duration::from_millis(100), u32::MAX),
        drain_timeout: Duration::from_millis(200),
        ..InboundOptions::default()
    };
    let stuck = event("in.stuck", "k", 1);
    let flaky = event("in.flaky", "k", 2);

    // Bridge 1: `flaky` fails once (NAK'd, then handled again and acked);
    // `stuck` never finishes before the stop (NAK'd at shutdown).
    let bridge1 = bridge(&server);
    let b1 = bus();
    let calls1: Arc<Mutex<Vec<EventId>>> = Arc::default();
    let c = calls1.clone();
    // `stuck` waits in its handler's retry queue (not blocking the bus).
    b1.subscribe_with(
        "in.stuck",
        |_e: &Event<Value>| -> Result<(), HandlerError> { Err(HandlerError::transient("busy")) },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(30), 3)),
    )
    .unwrap();
    b1.subscribe("in.flaky", move |e: &Event<Value>| {
        let mut calls = c.lock().unwrap();
        calls.push(e.id);
        if calls.len() == 1 {
            Err(HandlerError::transient("once"))
        } else {
            Ok(())
        }
    })
    .unwrap();
    let h1 = bridge1
        .inbound(&b1, ConsumerSpec::new("inbox", ["in.*"]), options(&dedup))
        .unwrap();
    publish_events(&server, [&stuck, &flaky]);
    wait_until(10, "flaky handled twice and acked", || {
        h1.metrics().acked == 1
    });
    assert_eq!(*calls1.lock().unwrap(), [flaky.id, flaky.id]);
    let report = h1.stop();
    assert_eq!(report.unacked.len(), 1, "{report:?}");
    assert_eq!(report.unacked[0].event_id, Some(stuck.id));
    drop(bridge1);

    // Bridge 2, same store: the redelivered `stuck` is in the store already:
    // acked without reaching the bus. A new event goes through.
    let bridge2 = bridge(&server);
    let b2 = bus();
    let calls2 = record_ids(&b2, ">");
    let h2 = bridge2
        .inbound(&b2, ConsumerSpec::new("inbox", ["in.*"]), options(&dedup))
        .unwrap();
    let fresh = event("in.new", "k", 3);
    publish_events(&server, [&fresh]);
    wait_until(10, "the duplicate dropped and the new one acked", || {
        let m = h2.metrics();
        m.dedup_dropped == 1 && m.acked == 2
    });
    assert_eq!(*calls2.lock().unwrap(), [fresh.id]);

    // The store holds each event once, under its inbox stream.
    let stored = store.read_all(Position(0), 100).unwrap();
    let ids: Vec<EventId> = stored.iter().map(|r| r.event.id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for e in [&stuck, &flaky, &fresh] {
        assert_eq!(ids.iter().filter(|id| **id == e.id).count(), 1);
        let stream = dedup.stream_of(e.id);
        assert_eq!(store.stream_version(&stream).unwrap(), 1);
    }
    // A StoreDedup made for another payload type is refused.
    let other = Arc::new(InMemoryStore::<u32>::new());
    let wrong = StoreDedup::new(other, "inbox").unwrap();
    assert!(matches!(
        bridge2.inbound(
            &b2,
            ConsumerSpec::new("inbox-2", ["in.*"]),
            InboundOptions {
                dedup: Dedup::Store(wrong),
                ..InboundOptions::default()
            }
        ),
        Err(BridgeError::Config(_))
    ));
}

/// I3: when the bus is shut down the consumer NAKs what it cannot publish and
/// stops pulling; the stop reports those messages.
#[test]
fn a_closed_bus_stops_the_consumer_and_naks() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b: Bus<Value> = bus();
    let h = inbound(&bridge, &b, "closed", "cl.*");
    b.shutdown().unwrap();
    let events: Vec<_> = (0..3).map(|n| event("cl.x", "k", n)).collect();
    publish_events(&server, &events);
    wait_until(10, "the first delivery NAK'd", || h.metrics().naked >= 1);
    let report = h.stop();
    let m = bridge.metrics().inbound[0].clone();
    assert_eq!(m.acked, 0);
    assert_eq!(m.naked, m.received, "every delivery NAK'd: {m:?}");
    assert_eq!(report.unacked.len() as u64, m.received, "{report:?}");
    assert!(
        report
            .unacked
            .iter()
            .all(|u| u.state.contains("the bus is shut down")),
        "{report:?}"
    );
    assert_eq!(report.unacked[0].event_id, Some(events[0].id));
}

/// I8: missed heartbeats during a long outage are counted and not terminal:
/// after the server is back, the pull resumes.
#[test]
fn missed_heartbeats_are_counted_and_the_pull_resumes() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let got = record_ids(&b, "hb.*");
    let h = inbound(&bridge, &b, "heartbeat", "hb.*");
    let before = event("hb.before", "k", 1);
    publish_events(&server, [&before]);
    wait_until(10, "the first event", || h.metrics().acked == 1);
    server.kill();
    // The pull asks for a heartbeat every 5 s; two missed ones make a gap.
    wait_until(20, "a missed heartbeat counted", || {
        h.metrics().heartbeat_gaps >= 1
    });
    server.restart().expect("restarts");
    let after = event("hb.after", "k", 2);
    publish_events(&server, [&after]);
    wait_until(15, "the event after the outage", || h.metrics().acked == 2);
    assert_eq!(*got.lock().unwrap(), [before.id, after.id]);
    assert!(bridge.metrics().connection.reconnects >= 1);
}

/// `Dedup::Window`: the same event stored twice in the stream (a replay older
/// than the duplicate window, published under another `Nats-Msg-Id`) reaches
/// the bus once; the second copy is acked as a dropped duplicate.
#[test]
fn window_dedup_drops_a_replayed_event() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let got = record_ids(&b, "rp.*");
    let e = event("rp.x", "k", 1);
    let body = frame(&e);
    publish(
        &server,
        ["first", "replayed-later"].map(|msg_id| Raw::frame("rb.ev.rp.x", msg_id, body.clone())),
    );
    let h = bridge
        .inbound(
            &b,
            ConsumerSpec::new("replay", ["rp.*"]),
            InboundOptions {
                dedup: Dedup::Window {
                    ids: 10,
                    keep: Duration::from_secs(300),
                },
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(10, "both acked", || h.metrics().acked == 2);
    assert_eq!(*got.lock().unwrap(), [e.id]);
    assert_eq!(h.metrics().dedup_dropped, 1);
}

/// `AckMode::DoubleAck` acks every message (confirmed by the server);
/// `DeliverFrom::Sequence` starts a new consumer at that stream sequence.
#[test]
fn double_acks_and_a_start_sequence() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let got: Arc<Mutex<Vec<u64>>> = Arc::default();
    let g = got.clone();
    b.subscribe("da.*", move |e: &Event<Value>| {
        g.lock().unwrap().push(e.data["n"].as_u64().unwrap())
    })
    .unwrap();
    let events: Vec<_> = (1..=100).map(|n| event("da.x", "k", n)).collect();
    publish_events(&server, &events);
    let mut spec = ConsumerSpec::new("double", ["da.*"]);
    spec.deliver = ringbus::nats::DeliverFrom::Sequence(41);
    let h = bridge
        .inbound(
            &b,
            spec,
            InboundOptions {
                ack: ringbus::nats::AckMode::DoubleAck,
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(10, "60 double acks", || h.metrics().acked == 60);
    // A double ack is confirmed by the server before it counts.
    assert_eq!(consumer_info(&server, "double").num_ack_pending, 0);
    assert_eq!(*got.lock().unwrap(), (41..=100).collect::<Vec<u64>>());
}

/// I9 through the bridge: `NatsBridge::shutdown` stops the inbound consumers
/// first and its report lists what they NAK'd unfinished.
#[test]
fn the_bridge_shutdown_reports_unfinished_inbound_deliveries() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    b.subscribe_with(
        "sd.wait",
        |_e: &Event<Value>| -> Result<(), HandlerError> { Err(HandlerError::transient("busy")) },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_secs(30), 3)),
    )
    .unwrap();
    b.subscribe("sd.done", |_e: &Event<Value>| {}).unwrap();
    let waiting = event("sd.wait", "k", 1);
    publish_events(&server, &[event("sd.done", "k", 0), waiting.clone()]);
    let h = bridge
        .inbound(
            &b,
            ConsumerSpec::new("bridge-stop", ["sd.*"]),
            InboundOptions {
                drain_timeout: Duration::from_millis(200),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    wait_until(10, "one acked, one waiting", || {
        let m = h.metrics();
        m.acked == 1 && m.in_flight == 1
    });
    let report = bridge.shutdown();
    assert!(!report.is_clean());
    let part = report
        .parts
        .iter()
        .find(|p| p.name == "inbound:bridge-stop")
        .expect("the consumer's report");
    assert_eq!(part.completed, 1);
    assert_eq!(part.unacked.len(), 1, "{part:?}");
    assert_eq!(part.unacked[0].event_id, Some(waiting.id));
    assert!(part.unacked[0].state.contains("handlers unfinished"));
    // The handle's own stop after the bridge's reports nothing more.
    assert!(h.stop().unacked.is_empty());
}

/// I2 through upcasters: a version-1 event on the wire reaches the bus as the
/// version the code reads today; one whose link fails is undecodable (dead
/// letter, terminated, never on the bus).
#[test]
fn inbound_events_are_upcast_as_they_are_decoded() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.subscribe("user.registered", move |e: &Event<Value>| {
        s.lock().unwrap().push((e.version, e.data.clone()));
    })
    .unwrap();
    let mut upcasters = ringbus::store::upcast::Upcasters::new();
    upcasters
        .add("user.registered", 1, |mut e| {
            let name = e.data["name"].as_str().unwrap_or_default().to_owned();
            if name.is_empty() {
                return Err(ringbus::store::upcast::UpcastError::failed("no name"));
            }
            e.data = json!({ "full_name": name });
            Ok(e)
        })
        .unwrap();
    let h = bridge
        .inbound(
            &b,
            ConsumerSpec::new("upcast", ["user.registered"]),
            InboundOptions {
                upcasters: Some(Arc::new(upcasters)),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    let old = Event::new(
        EventType::new("user.registered"),
        Source::new("test"),
        json!({ "name": "Ada Lovelace" }),
    );
    let broken = Event::new(
        EventType::new("user.registered"),
        Source::new("test"),
        json!({ "nick": "ada" }),
    );
    publish_events(&server, &[old, broken]);
    wait_until(20, "both settled", || {
        let m = h.metrics();
        m.acked + m.termed >= 2
    });
    b.flush().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(2, json!({ "full_name": "Ada Lovelace" }))],
        "upcast to version 2; the broken one never reached the bus"
    );
    let m = h.metrics();
    assert_eq!((m.acked, m.termed, m.undecodable), (1, 1, 1), "{m:?}");
    let letters = bridge.dead_letters("upcast").list(10).unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("no name"),
        "{:?}",
        letters[0].error
    );
    h.stop();
}
