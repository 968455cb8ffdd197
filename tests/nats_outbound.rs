//! The NATS bridge's outbound side (issue 13, O1–O5 and tests 1, 7, 11) against
//! a real `nats-server` each test starts: dedup by event id (also across a
//! server `SIGKILL` and restart), CloudEvents JSON read by a plain subscriber,
//! backpressure without loss or reordering, a stream with other settings, a
//! 20 000-event run through a server crash, retries exhausted into the bus's
//! dead-letter queue, and the stop report.
//!
//! Every wait has a deadline; the stream is read back with a raw async-nats
//! client and counted.
#![cfg(feature = "nats")]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::stream;
use futures_util::StreamExt;
use nats_client::{bridge, bus, read_stream, wait_until, with_jetstream, Stored, STREAM};
use nats_support::{block_on, within, NatsServer};
use ringbus::nats::{
    BridgeError, NatsBridge, OutboundHandle, OutboundOptions, StreamSpec, WireEncoding,
    FRAME_CONTENT_TYPE,
};
use ringbus::resilience::{DlqFilter, RetryPolicy};
use ringbus::{Bus, Event, EventId, EventType, Source};

fn event(ty: &str, subject: &str, n: u64) -> Event<u64> {
    Event::new(EventType::new(ty), Source::new("shop"), n).with_subject(subject)
}

/// Options that retry every `every` without end, each publish waiting at most
/// `publish_timeout` for its ack.
fn retrying(publish_timeout: Duration, every: Duration) -> OutboundOptions {
    OutboundOptions {
        publish_timeout,
        retry: RetryPolicy::fixed(every, u32::MAX),
        ..OutboundOptions::default()
    }
}

/// A bridge to `server` with the default settings, a bus, and the bus's
/// outbound side for `pattern` with `options`.
fn outbound(
    server: &NatsServer,
    pattern: &str,
    options: OutboundOptions,
) -> (NatsBridge, Bus<u64>, OutboundHandle) {
    let bridge = bridge(server);
    let bus = bus();
    let out = bridge.outbound(&bus, pattern, options).expect("outbound");
    (bridge, bus, out)
}

/// The bridge's stream as the bridge would make it (name and subjects), the
/// rest at the server's defaults: what the tests change before the bridge
/// starts.
fn bridge_stream() -> stream::Config {
    stream::Config {
        name: STREAM.into(),
        subjects: vec!["rb.ev.>".into()],
        ..Default::default()
    }
}

/// Creates the stream `config` before any bridge does.
fn create_stream(server: &NatsServer, config: stream::Config) {
    with_jetstream(server, 10, "creating the stream", |js| async move {
        js.create_stream(config).await.expect("stream created");
    });
}

/// The events in the stream, decoded from their frames, checking subject and
/// headers on the way.
fn decoded(stored: &[Stored]) -> Vec<Event<u64>> {
    stored
        .iter()
        .map(|m| {
            let (e, n) = ringbus::codec::decode::<u64>(&m.body).expect("a frame");
            assert_eq!(n, m.body.len());
            assert_eq!(m.subject, format!("rb.ev.{}", e.event_type.name()));
            assert_eq!(m.msg_id, e.id.to_string());
            assert_eq!(m.content_type, FRAME_CONTENT_TYPE);
            e
        })
        .collect()
}

/// Test 1: the same event twice → one message, the second ack a duplicate;
/// again after the server was killed and restarted.
#[test]
fn the_same_event_twice_is_stored_once_also_across_a_server_restart() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let (bridge, bus, out) = outbound(&server, "order.*", OutboundOptions::default());
    let mut p = bus.publisher();
    let e = event("order.placed", "o-1", 7);
    p.publish(e.clone()).unwrap();
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(10)));
    p.publish(e.clone()).unwrap();
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(10)));
    let m = out.metrics();
    assert_eq!((m.accepted, m.published, m.duplicates), (2, 2, 1));
    assert_eq!(m.name, "outbound:order.*");
    let stored = read_stream(&server, STREAM);
    assert_eq!(stored.len(), 1);
    assert_eq!(decoded(&stored), vec![e.clone()]);

    server.kill();
    server.restart().unwrap();
    p.publish(e.clone()).unwrap();
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(20)), "{:?}", out.metrics());
    let m = out.metrics();
    assert_eq!(
        (m.accepted, m.published, m.duplicates, m.failed),
        (3, 3, 2, 0)
    );
    let stored = read_stream(&server, STREAM);
    assert_eq!(decoded(&stored), vec![e]);
    let text = bridge.metrics().to_prometheus();
    assert!(
        text.contains("ringbus_nats_outbound_duplicates_total{name=\"outbound:order.*\"} 2"),
        "{text}"
    );
    let report = out.stop();
    assert!(report.unacked.is_empty(), "{report:?}");
    assert_eq!(report.completed, 3);
    bus.shutdown().unwrap();
    assert!(bridge.shutdown().is_clean());
}

/// Only the event types matching the patterns go out, each on its subject.
#[test]
fn patterns_select_the_events_and_types_become_subjects() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = NatsBridge::builder(server.url())
        .subject_prefix("shop.eu")
        .stream(StreamSpec::named("SHOP"))
        .build()
        .unwrap();
    let bus = bus::<u64>();
    let out = bridge
        .outbound(&bus, ["order.*", "payment.>"], OutboundOptions::default())
        .unwrap();
    let mut p = bus.publisher();
    for (i, ty) in [
        "order.placed",
        "user.registered",
        "payment.card.charged",
        "order",
    ]
    .into_iter()
    .enumerate()
    {
        p.publish(event(ty, "s", i as u64)).unwrap();
    }
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(10)));
    let subjects: Vec<String> = read_stream(&server, "SHOP")
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(
        subjects,
        ["shop.eu.ev.order.placed", "shop.eu.ev.payment.card.charged"]
    );
    assert_eq!(out.metrics().name, "outbound:order.*, payment.>");
}

/// Without failures the stream holds the events in the order the bus handed
/// them over: with one outbound subscription, the publish order.
#[test]
fn without_failures_the_stream_keeps_the_bus_order() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let (_bridge, bus, out) = outbound(&server, ">", OutboundOptions::default());
    let mut p = bus.publisher();
    let mut sent = Vec::new();
    for i in 0..5_000u64 {
        let e = event("order.placed", &format!("o-{}", i % 50), i);
        sent.push(e.id);
        p.publish(e).unwrap();
    }
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(20)), "{:?}", out.metrics());
    let stored: Vec<EventId> = decoded(&read_stream(&server, STREAM))
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(stored.len(), sent.len());
    let first_out_of_order = stored.iter().zip(&sent).position(|(a, b)| a != b);
    assert_eq!(first_out_of_order, None);
}

/// Test 11: CloudEvents JSON, read by a plain async-nats subscriber.
#[test]
fn cloudevents_json_is_readable_by_a_plain_subscriber() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = NatsBridge::builder(server.url())
        .encoding(WireEncoding::CloudEventsJson)
        .build()
        .unwrap();
    let bus = bus::<serde_json::Value>();
    let out = bridge
        .outbound(&bus, "order.placed", OutboundOptions::default())
        .unwrap();
    let url = server.url();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        block_on(within(20, "the CloudEvent", async move {
            let client = async_nats::connect(url).await.unwrap();
            let mut sub = client.subscribe("rb.ev.>").await.unwrap();
            // A message to itself after the subscription: once it is back,
            // the server has the subscription (`flush` only writes).
            let mut probe = client.subscribe("probe.ce").await.unwrap();
            client.publish("probe.ce", "x".into()).await.unwrap();
            probe.next().await.unwrap();
            ready_tx.send(()).unwrap();
            sub.next().await.unwrap()
        }))
    });
    ready_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let placed = Event::new(
        EventType::new("order.placed"),
        Source::new("order-service"),
        serde_json::json!({"order": "o-9", "amount": 12.5}),
    )
    .with_subject("o-9")
    .with_timestamp(ringbus::Timestamp::now());
    bus.publisher().publish(placed.clone()).unwrap();
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(10)), "{:?}", out.metrics());
    let msg = reader.join().unwrap();
    assert_eq!(msg.subject.as_str(), "rb.ev.order.placed");
    let headers = msg.headers.expect("headers");
    assert_eq!(
        headers.get("Content-Type").unwrap().as_str(),
        "application/cloudevents+json"
    );
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        placed.id.to_string()
    );
    let ce: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], placed.id.to_string());
    assert_eq!(ce["type"], "order.placed");
    assert_eq!(ce["source"], "order-service");
    assert_eq!(ce["time"], placed.timestamp.to_string());
    assert!(ce["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ce["subject"], "o-9");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["data"], placed.data);
    assert_eq!(ce["schemaversion"], 1);
    assert!(out.flush(Duration::from_secs(10)));
    assert_eq!(read_stream(&server, STREAM).len(), 1);
}

/// O5: a queue of 2 while the server is down: the bus holds what does not
/// fit, nothing is lost, and each subject's events are stored in order.
#[test]
fn a_full_queue_holds_events_in_the_bus_without_loss_or_reordering() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let (_bridge, bus, out) = outbound(
        &server,
        ">",
        OutboundOptions {
            max_in_flight: 1,
            queue: 2,
            ..retrying(Duration::from_millis(500), Duration::from_millis(100))
        },
    );
    server.kill();
    let mut p = bus.publisher();
    let mut sent = Vec::new();
    for i in 0..300u64 {
        let e = event("order.placed", &format!("o-{}", i % 5), i);
        sent.push(e.id);
        p.publish(e).unwrap();
    }
    wait_until(10, "the queue to fill", || out.metrics().queue_full > 0);
    let m = out.metrics();
    assert!(m.accepted <= 3, "{m:?}");
    assert!(bus.dead_letters().is_empty());
    server.restart().unwrap();
    bus.flush_timeout(Duration::from_secs(25)).unwrap();
    assert!(out.flush(Duration::from_secs(25)), "{:?}", out.metrics());
    let m = out.metrics();
    assert_eq!((m.accepted, m.published, m.failed), (300, 300, 0));
    assert!(bus.dead_letters().is_empty());
    let events = decoded(&read_stream(&server, STREAM));
    assert_eq!(events.len(), 300, "each event exactly once");
    let ids: HashSet<EventId> = events.iter().map(|e| e.id).collect();
    assert!(sent.iter().all(|id| ids.contains(id)), "no loss");
    // The bus holds a turned-away event and its subject's later ones (other
    // subjects go on), and one publish at a time keeps the stream in the
    // order the bridge takes them: each subject's events in order.
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in &events {
        let s = e.subject.as_ref().unwrap().as_str().to_owned();
        if let Some(prev) = last.insert(s.clone(), e.data) {
            assert!(prev < e.data, "subject {s}: {} stored after {prev}", e.data);
        }
    }
}

/// A stream already there with other settings is an error, never changed.
#[test]
fn a_stream_with_other_settings_is_a_mismatch() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    create_stream(
        &server,
        stream::Config {
            duplicate_window: Duration::from_secs(30),
            ..bridge_stream()
        },
    );
    match NatsBridge::builder(server.url()).build() {
        Err(BridgeError::Mismatch {
            what, field, have, ..
        }) => {
            assert_eq!(what, "stream RINGBUS");
            assert_eq!(field, "duplicate_window");
            assert_eq!(have, "30s");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

/// Test 7, outbound half: the server is `SIGKILL`ed during a 20 000-event
/// run and restarted on the same port and store: every event exactly once.
#[test]
fn a_server_killed_mid_run_loses_and_duplicates_nothing() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let (_bridge, bus, out) = outbound(
        &server,
        ">",
        retrying(Duration::from_secs(1), Duration::from_millis(200)),
    );
    const N: u64 = 20_000;
    let publisher = {
        let mut p = bus.publisher();
        std::thread::spawn(move || {
            let mut ids = Vec::with_capacity(N as usize);
            for i in 0..N {
                let ty = ["order.placed", "order.paid", "user.registered"][(i % 3) as usize];
                let e = event(ty, &format!("s-{}", i % 50), i);
                ids.push(e.id);
                p.publish(e).unwrap();
            }
            ids
        })
    };
    wait_until(25, "a quarter of the events acked", || {
        out.metrics().published >= N / 4
    });
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart().unwrap();
    let ids = publisher.join().unwrap();
    bus.flush_timeout(Duration::from_secs(25)).unwrap();
    assert!(out.flush(Duration::from_secs(25)), "{:?}", out.metrics());
    let m = out.metrics();
    assert_eq!((m.accepted, m.published, m.failed), (N, N, 0), "{m:?}");
    eprintln!("after the kill: {m:?}");
    let events = decoded(&read_stream(&server, STREAM));
    assert_eq!(events.len() as u64, N, "stored messages");
    let stored: HashSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(stored.len() as u64, N, "no duplicate");
    assert!(ids.iter().all(|id| stored.contains(id)), "no loss");
}

/// O4: a publish failing on every attempt ends in the bus's dead-letter queue,
/// with every attempt's error; `flush` reports it.
#[test]
fn exhausted_retries_go_to_the_bus_dead_letter_queue() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let (_bridge, bus, out) = outbound(
        &server,
        "order.*",
        OutboundOptions {
            retry: RetryPolicy::fixed(Duration::from_millis(20), 3),
            publish_timeout: Duration::from_secs(2),
            ..OutboundOptions::default()
        },
    );
    // No stream captures the subjects any more: every publish fails at once
    // ("no responders").
    with_jetstream(&server, 10, "deleting the stream", |js| async move {
        js.delete_stream(STREAM).await.expect("deleted");
    });
    let mut p = bus.publisher();
    let events: Vec<_> = (0..3).map(|i| event("order.placed", "o-1", i)).collect();
    for e in &events {
        p.publish(e.clone()).unwrap();
    }
    bus.flush().unwrap();
    assert!(!out.flush(Duration::from_secs(10)));
    let m = out.metrics();
    assert_eq!((m.accepted, m.published, m.failed), (3, 0, 3), "{m:?}");
    assert_eq!(m.retries, 6);
    assert!(m.last_error.is_some());
    let letters = bus.dead_letters().list(&DlqFilter::all());
    assert_eq!(letters.len(), 3);
    for (letter, e) in letters.iter().zip(&events) {
        assert_eq!(letter.event_id, e.id, "in order");
        assert_eq!(&*letter.handler, "outbound:order.*");
        assert_eq!(letter.attempts.len(), 3);
        assert!(letter.attempts.iter().all(|a| !a.error.is_empty()));
    }
    let got = bus.dead_letters().get(letters[0].id).unwrap();
    assert_eq!(got.event, events[0]);
}

/// The stop report names what the server never acked.
#[test]
fn stop_reports_the_events_not_acked() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let (bridge, bus, out) = outbound(
        &server,
        ">",
        retrying(Duration::from_millis(300), Duration::from_millis(50)),
    );
    server.kill();
    let mut p = bus.publisher();
    let mut ids = HashSet::new();
    for i in 0..5 {
        let e = event("order.placed", &format!("o-{i}"), i);
        ids.insert(e.id);
        p.publish(e).unwrap();
    }
    bus.flush().unwrap();
    assert!(!out.flush(Duration::from_millis(200)));
    let report = out.stop();
    assert_eq!(report.name, "outbound:>");
    assert_eq!(report.completed, 0);
    let reported: HashSet<EventId> = report.unacked.iter().filter_map(|u| u.event_id).collect();
    assert_eq!(reported, ids);
    assert!(report
        .unacked
        .iter()
        .all(|u| u.subject == "rb.ev.order.placed" && u.state == "publish not acked"));
    // The bridge's shutdown afterwards reports nothing more for it.
    assert!(bridge.shutdown().is_clean());
}

/// With one publish in flight, what never left the queue is reported "not
/// published", apart from the one the server never acked.
#[test]
fn stop_reports_the_events_never_sent() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let one_at_a_time = OutboundOptions {
        max_in_flight: 1,
        ..retrying(Duration::from_millis(300), Duration::from_millis(50))
    };
    let (bridge, bus, out) = outbound(&server, ">", one_at_a_time);
    server.kill();
    let mut p = bus.publisher();
    let mut ids = HashSet::new();
    for i in 0..5 {
        let e = event("order.placed", &format!("o-{i}"), i);
        ids.insert(e.id);
        p.publish(e).unwrap();
    }
    bus.flush().unwrap();
    assert!(!out.flush(Duration::from_millis(200)));
    let report = out.stop();
    let reported: HashSet<EventId> = report.unacked.iter().filter_map(|u| u.event_id).collect();
    assert_eq!(reported, ids, "each event reported once: {report:?}");
    assert_eq!(report.unacked.len(), 5, "{report:?}");
    let never_sent = report
        .unacked
        .iter()
        .filter(|u| u.state == "not published")
        .count();
    assert!(never_sent >= 4, "at most one was ever sent: {report:?}");
    assert!(report
        .unacked
        .iter()
        .all(|u| u.state == "not published" || u.state == "publish not acked"));
    assert!(bridge.shutdown().is_clean());
}

/// Options that cannot work are refused.
#[test]
fn options_that_cannot_work_are_refused() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let bus = bus::<u64>();
    for o in [
        OutboundOptions {
            max_in_flight: 0,
            ..OutboundOptions::default()
        },
        OutboundOptions {
            queue: 0,
            ..OutboundOptions::default()
        },
        OutboundOptions {
            publish_timeout: Duration::ZERO,
            ..OutboundOptions::default()
        },
    ] {
        assert!(matches!(
            bridge.outbound(&bus, ">", o),
            Err(BridgeError::Config(_))
        ));
    }
    assert!(matches!(
        bridge.outbound(&bus, "a..b", OutboundOptions::default()),
        Err(BridgeError::Subscribe(_))
    ));
}

/// A payload that cannot be serialized when `fail` is set.
#[derive(Clone)]
struct Fragile {
    fail: bool,
}

impl serde::Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.fail {
            Err(serde::ser::Error::custom("this payload refuses"))
        } else {
            s.serialize_bool(false)
        }
    }
}

/// An event that cannot be encoded fails for good on the bus (its dead-letter
/// queue, no retry); the others go out.
#[test]
fn an_event_that_cannot_be_encoded_is_dead_lettered_by_the_bus() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let bus = bus::<Fragile>();
    let out = bridge
        .outbound(&bus, ">", OutboundOptions::default())
        .unwrap();
    let mut p = bus.publisher();
    let ty = EventType::new("order.placed");
    let bad = Event::new(ty, Source::new("shop"), Fragile { fail: true });
    p.publish(bad.clone()).unwrap();
    p.publish(Event::new(ty, Source::new("shop"), Fragile { fail: false }))
        .unwrap();
    bus.flush().unwrap();
    assert!(out.flush(Duration::from_secs(10)));
    let m = out.metrics();
    assert_eq!((m.accepted, m.published, m.failed), (1, 1, 0));
    let letters = bus.dead_letters().list(&DlqFilter::all());
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, bad.id);
    assert_eq!(letters[0].attempts.len(), 1);
    assert!(
        letters[0].attempts[0].error.contains("cannot encode"),
        "{:?}",
        letters[0].attempts
    );
}

/// While an event waits for a retry, later events of its subject wait behind
/// it (other subjects go on); once it is stored, they follow in order.
///
/// The failure: the stream, made before the bridge with the bridge's
/// settings plus a 300-byte message limit, refuses a large event until the
/// limit is raised.
#[test]
fn a_retried_event_holds_its_subject_and_only_its_subject() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    create_stream(
        &server,
        stream::Config {
            duplicate_window: Duration::from_secs(120),
            max_message_size: 300,
            ..bridge_stream()
        },
    );
    let bridge = bridge(&server);
    let bus = bus::<String>();
    let out = bridge
        .outbound(
            &bus,
            ">",
            OutboundOptions {
                retry: RetryPolicy::fixed(Duration::from_millis(50), u32::MAX),
                ..OutboundOptions::default()
            },
        )
        .unwrap();
    let ty = EventType::new("order.placed");
    let ev = |subject: &str, data: String| {
        Event::new(ty, Source::new("shop"), data).with_subject(subject)
    };
    let mut p = bus.publisher();
    let a0 = ev("a", "x".repeat(1000));
    p.publish(a0.clone()).unwrap();
    wait_until(10, "a retry of the large event", || {
        out.metrics().retries > 0
    });
    let (a1, a2) = (ev("a", "a1".into()), ev("a", "a2".into()));
    let (b0, b1) = (ev("b", "b0".into()), ev("b", "b1".into()));
    for e in [&a1, &b0, &a2, &b1] {
        p.publish(e.clone()).unwrap();
    }
    bus.flush().unwrap();
    wait_until(10, "subject b published", || out.metrics().published == 2);
    std::thread::sleep(Duration::from_millis(200));
    let m = out.metrics();
    assert_eq!((m.published, m.in_flight), (2, 3), "a1 and a2 held: {m:?}");
    with_jetstream(&server, 10, "raising the limit", |js| async move {
        let mut config = js
            .get_stream(STREAM)
            .await
            .unwrap()
            .cached_info()
            .config
            .clone();
        config.max_message_size = -1;
        js.update_stream(config).await.unwrap();
    });
    assert!(out.flush(Duration::from_secs(10)), "{:?}", out.metrics());
    let order: Vec<EventId> = read_stream(&server, STREAM)
        .iter()
        .map(|m| {
            ringbus::codec::decode::<String>(&m.body)
                .expect("a frame")
                .0
                .id
        })
        .collect();
    assert_eq!(order, [b0.id, b1.id, a0.id, a1.id, a2.id]);
    assert_eq!(out.metrics().failed, 0);
}
