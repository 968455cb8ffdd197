//! The NATS bridge's dead letters against a real `nats-server` each test
//! starts: the last attempt's failure dead-lettered (stored, then the original
//! terminated), the max-deliveries advisory as a backstop, undecodable bodies,
//! and `JetStreamDeadLetters` list / redrive / discard.
#![cfg(feature = "nats")]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use nats_client::{
    bridge, bus, consumer_info, frame, publish, publish_events, raw_messages, wait_until,
    with_jetstream, Raw, STREAM,
};
use nats_support::NatsServer;
use ringbus::nats::{
    BridgeError, ConsumerSpec, DeadLetterReason, InboundOptions, NatsBridge, DLQ_CONSUMER,
    DLQ_DELIVERIES, DLQ_ERROR, DLQ_REASON, DLQ_STREAM_SEQ,
};
use ringbus::resilience::RetryPolicy;
use ringbus::{Bus, Event, EventId, EventType, HandlerError, Source};
use serde_json::{json, Value};

fn event(event_type: &str, n: u64) -> Event<Value> {
    Event::new(
        EventType::new(event_type),
        Source::new("test"),
        json!({ "n": n }),
    )
}

fn quick_retry() -> InboundOptions {
    InboundOptions {
        retry: RetryPolicy::fixed(Duration::from_millis(100), u32::MAX),
        ..InboundOptions::default()
    }
}

/// A bus whose handler on `>` only counts the events it sees.
fn counting_bus() -> (Bus<Value>, Arc<AtomicUsize>) {
    let b = bus();
    let handled = Arc::new(AtomicUsize::new(0));
    let hd = handled.clone();
    b.subscribe(">", move |_e: &Event<Value>| {
        hd.fetch_add(1, AtomicOrdering::Relaxed);
    })
    .unwrap();
    (b, handled)
}

/// A consumer on `job.*` with one attempt (`max_deliver` 2) and an ack wait of 1 s.
fn short_lived(durable: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(durable, ["job.*"]);
    spec.max_attempts = 1; // max_deliver 2
    spec.ack_wait = Duration::from_secs(1);
    spec
}

/// A bus that counts what reaches it, and the consumer `durable`
/// ([`short_lived`]) as the bridge makes it; then `e` is published and taken
/// `deliveries` times by a raw client that never acks ([`deliver_unacked`]).
fn unacked_deliveries(
    server: &NatsServer,
    bridge: &NatsBridge,
    durable: &str,
    e: &Event<Value>,
    deliveries: i64,
) -> (Bus<Value>, Arc<AtomicUsize>) {
    let (b, handled) = counting_bus();
    // The consumer, as the bridge makes it; no message yet.
    bridge
        .inbound(&b, short_lived(durable), InboundOptions::default())
        .unwrap()
        .stop();
    publish_events(server, [e]);
    deliver_unacked(server, durable, deliveries);
    (b, handled)
}

/// Takes `deliveries` deliveries from `durable` with a raw client and drops each
/// without an ack (the "crash" of the bridge instance that took it): delivery
/// `n` is the `n`th of the same message.
fn deliver_unacked(server: &NatsServer, durable: &str, deliveries: i64) {
    let durable = durable.to_owned();
    with_jetstream(server, 20, "unacked deliveries", |js| async move {
        let stream = js.get_stream(STREAM).await.expect("stream");
        let consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&durable).await.expect("consumer");
        // Fetch until the server's delivery count reaches `deliveries`
        // (each step bounded; a late copy of an earlier delivery is skipped).
        let mut seen = 0;
        for delivery in 1..=deliveries {
            let deadline = Instant::now() + Duration::from_secs(8);
            while seen < delivery && Instant::now() < deadline {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .expect("fetch");
                while let Some(m) = batch.next().await {
                    let m = m.expect("message");
                    // Dropped without an ack: the "crash".
                    seen = seen.max(m.info().unwrap().delivered);
                }
            }
            assert!(seen >= delivery, "delivery {delivery}: only {seen}");
        }
        assert_eq!(seen, deliveries, "no delivery beyond those asked for");
    });
}

/// Test 4: an always-failing handler, `max_attempts` 3 → a dead letter with
/// every `Rb-Dlq-*` header, the original terminated (its advisory seen), and
/// no fourth delivery.
#[test]
fn the_last_attempt_is_dead_lettered_then_terminated() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let calls: Arc<Mutex<Vec<EventId>>> = Arc::default();
    let c = calls.clone();
    b.subscribe(
        "pay.*",
        move |e: &Event<Value>| -> Result<(), HandlerError> {
            c.lock().unwrap().push(e.id);
            if e.event_type.name() == "pay.fail" {
                Err(HandlerError::transient("card declined"))
            } else {
                Ok(())
            }
        },
    )
    .unwrap();
    let mut spec = ConsumerSpec::new("dlq", ["pay.*"]);
    spec.max_attempts = 3;
    let h = bridge.inbound(&b, spec, quick_retry()).unwrap();
    let failing = event("pay.fail", 1);
    publish_events(&server, [&failing]);
    wait_until(15, "dead-lettered and terminated", || {
        let m = h.metrics();
        m.termed == 1 && m.advisories_terminated == 1
    });
    let m = h.metrics();
    assert_eq!(
        (m.received, m.naked, m.dead_lettered_handler_failed),
        (3, 2, 1)
    );

    let letters = bridge.dead_letters("dlq").list(10).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(l.reason, Some(DeadLetterReason::HandlerFailed));
    assert!(l.error.contains("card declined"), "{}", l.error);
    assert_eq!(l.deliveries, 3);
    assert_eq!(l.stream_sequence, 1);
    assert_eq!(l.consumer, "dlq");
    assert_eq!(l.subject, "rb.dlq.dlq.pay.fail");
    assert_eq!(l.original_subject, "rb.ev.pay.fail");
    assert_eq!(l.event_id, Some(failing.id));
    assert_eq!(l.body, frame(&failing), "the original body, unchanged");
    let headers = raw_messages(&server, "RINGBUS_DLQ", l.sequence..=l.sequence)
        .remove(0)
        .headers;
    for name in [
        DLQ_REASON,
        DLQ_ERROR,
        DLQ_DELIVERIES,
        DLQ_STREAM_SEQ,
        DLQ_CONSUMER,
    ] {
        assert!(headers.get(name).is_some(), "{name} missing");
    }
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        format!("{}:dlq", failing.id)
    );

    // No fourth delivery: once a later event is through, nothing is pending.
    let ok = event("pay.ok", 2);
    publish_events(&server, [&ok]);
    wait_until(10, "the later event acked", || h.metrics().acked == 1);
    wait_until(10, "nothing pending", || {
        let info = consumer_info(&server, "dlq");
        info.num_ack_pending == 0 && info.num_pending == 0
    });
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls, [failing.id, failing.id, failing.id, ok.id]);
}

/// Test 4, backstop: deliveries that ran out by ack-wait expiry while no
/// bridge handled them (here a raw client stands in for bridge instances that
/// took a delivery each and were killed) are dead-lettered by the next bridge
/// from the server's `MAX_DELIVERIES` advisory — the bus never sees them.
#[test]
fn the_max_deliveries_advisory_is_dead_lettered() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let lost = event("job.lost", 1);
    // Two deliveries, neither acked: each expires after ack_wait.
    let (b, handled) = unacked_deliveries(&server, &bridge, "backstop", &lost, 2);
    // Let the second delivery's ack wait run out.
    std::thread::sleep(Duration::from_millis(1_200));

    let h = bridge
        .inbound(&b, short_lived("backstop"), InboundOptions::default())
        .unwrap();
    wait_until(15, "the advisory's dead letter", || {
        h.metrics().dead_lettered_max_deliveries == 1
    });
    let m = h.metrics();
    assert!(m.advisories_max_deliveries >= 1, "{m:?}");
    assert_eq!(m.received, 0, "the bridge never got a delivery of it");
    assert_eq!(handled.load(AtomicOrdering::Relaxed), 0);
    let letters = bridge.dead_letters("backstop").list(10).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, Some(DeadLetterReason::MaxDeliveries));
    assert_eq!(letters[0].deliveries, 2);
    assert_eq!(letters[0].stream_sequence, 1);
    assert_eq!(letters[0].event_id, Some(lost.id));
    assert_eq!(letters[0].body, frame(&lost));
}

/// A delivery past `max_attempts` (the earlier ones expired while no bridge
/// handled them) is dead-lettered as `MaxDeliveries` without reaching the bus.
#[test]
fn a_delivery_past_max_attempts_is_dead_lettered() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let e = event("job.late", 1);
    let (b, handled) = unacked_deliveries(&server, &bridge, "past", &e, 1);
    let h = bridge
        .inbound(&b, short_lived("past"), InboundOptions::default())
        .unwrap();
    wait_until(15, "dead-lettered", || h.metrics().termed == 1);
    let m = h.metrics();
    assert_eq!(
        (m.received, m.redelivered, m.dead_lettered_max_deliveries),
        (1, 1, 1)
    );
    assert_eq!(handled.load(AtomicOrdering::Relaxed), 0);
    let letters = bridge.dead_letters("past").list(10).unwrap();
    assert_eq!(letters[0].reason, Some(DeadLetterReason::MaxDeliveries));
    assert_eq!(letters[0].deliveries, 2);
}

/// Test 5: an undecodable body → dead letter `Undecodable` with the raw body,
/// then `Term`; never retried.
#[test]
fn an_undecodable_body_is_dead_lettered_and_never_retried() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let (b, handled) = counting_bus();
    let garbage = Bytes::from_static(b"this is not an event frame");
    publish(
        &server,
        [Raw::frame("rb.ev.bad.body", "not-a-uuid", garbage.clone())],
    );
    let h = bridge
        .inbound(&b, ConsumerSpec::new("undec", ["bad.*"]), quick_retry())
        .unwrap();
    wait_until(10, "terminated", || h.metrics().termed == 1);
    let m = h.metrics();
    assert_eq!(
        (m.received, m.undecodable, m.dead_lettered_undecodable),
        (1, 1, 1)
    );
    assert_eq!((m.redelivered, m.naked), (0, 0), "zero retries");
    assert_eq!(handled.load(AtomicOrdering::Relaxed), 0);
    let letters = bridge.dead_letters("undec").list(10).unwrap();
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(l.reason, Some(DeadLetterReason::Undecodable));
    assert!(!l.error.is_empty());
    assert_eq!(l.deliveries, 1);
    assert_eq!(l.body, garbage, "raw bytes kept");
    assert_eq!(l.event_id, None);
    wait_until(10, "nothing pending", || {
        let info = consumer_info(&server, "undec");
        info.num_ack_pending == 0 && info.num_redelivered == 0
    });
}

/// `JetStreamDeadLetters`: list (oldest first, bounded), redrive (back to the
/// consumer as a new message, then deleted), discard.
#[test]
fn dead_letters_are_listed_redriven_and_discarded() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let b = bus();
    let healthy = Arc::new(AtomicBool::new(false));
    let handled: Arc<Mutex<Vec<EventId>>> = Arc::default();
    let (hl, hd) = (healthy.clone(), handled.clone());
    b.subscribe(
        "rd.*",
        move |e: &Event<Value>| -> Result<(), HandlerError> {
            if hl.load(AtomicOrdering::Relaxed) {
                hd.lock().unwrap().push(e.id);
                Ok(())
            } else {
                Err(HandlerError::permanent("down"))
            }
        },
    )
    .unwrap();
    let mut spec = ConsumerSpec::new("redrive", ["rd.*"]);
    spec.max_attempts = 1;
    let h = bridge.inbound(&b, spec, quick_retry()).unwrap();
    let (first, second) = (event("rd.one", 1), event("rd.two", 2));
    publish_events(&server, [&first, &second]);
    wait_until(10, "both dead-lettered", || h.metrics().termed == 2);

    let dl = bridge.dead_letters("redrive");
    assert_eq!(dl.durable(), "redrive");
    let all = dl.list(10).unwrap();
    assert_eq!(
        all.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        [Some(first.id), Some(second.id)]
    );
    assert_eq!(dl.list(1).unwrap().len(), 1);
    assert!(
        bridge
            .dead_letters("someone-else")
            .list(10)
            .unwrap()
            .is_empty(),
        "another consumer's letters are not listed"
    );

    healthy.store(true, AtomicOrdering::Relaxed);
    dl.redrive(all[0].sequence).unwrap();
    wait_until(10, "the redriven event handled", || h.metrics().acked == 1);
    assert_eq!(*handled.lock().unwrap(), [first.id]);
    assert_eq!(dl.list(10).unwrap().len(), 1, "redriven letter deleted");

    dl.discard(all[1].sequence).unwrap();
    assert!(dl.list(10).unwrap().is_empty());
    assert!(matches!(
        dl.discard(all[1].sequence),
        Err(BridgeError::Config(_))
    ));
    assert!(matches!(dl.redrive(999), Err(BridgeError::Config(_))));
}
