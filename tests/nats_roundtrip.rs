//! Issue 13, test 2: bus A → outbound → JetStream → inbound → bus B, against a
//! real nats-server the test starts. 10 000 events of 3 types over 50 subjects:
//! each reaches bus B once, in order per subject, and the consumer ends with
//! nothing pending and nothing redelivered. Then the same across two processes
//! (this test binary started again as the child: the other machine).
#![cfg(feature = "nats")]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats_client::{acks_settled, bridge, bus, inbound, wait_until};
use nats_support::NatsServer;
use ringbus::nats::{InboundHandle, NatsBridge, OutboundHandle, OutboundOptions};
use ringbus::{Bus, Event, EventType, Source};

const TYPES: [&str; 3] = ["order.placed", "order.paid", "stock.reserved"];
const SUBJECTS: u64 = 50;
const CHILD_URL: &str = "RINGBUS_NATS_ROUNDTRIP_URL";
const CHILD_TEST: &str = "two_processes_round_trip";

/// Event `i`: type `i % 3`, subject `s-{i % 50}`, payload `i`.
fn event(i: u64) -> Event<u64> {
    Event::new(
        EventType::new(TYPES[(i % 3) as usize]),
        Source::new("bus-a"),
        i,
    )
    .with_subject(format!("s-{}", i % SUBJECTS))
}

/// What bus B saw, per subject, in order.
type Seen = Arc<Mutex<HashMap<String, Vec<u64>>>>;

/// Bus A: a bus and a bridge to `url` taking everything out.
fn sending_side(url: String) -> (Bus<u64>, NatsBridge, OutboundHandle) {
    let bus_a = bus();
    let bridge = NatsBridge::builder(url)
        .build()
        .expect("the bridge connects");
    let out = bridge
        .outbound(&bus_a, ">", OutboundOptions::default())
        .unwrap();
    (bus_a, bridge, out)
}

/// Publishes events `0..n` on bus A; returns once the server acked each.
fn publish_all(bus_a: &Bus<u64>, out: &OutboundHandle, n: u64) {
    let mut p = bus_a.publisher();
    for i in 0..n {
        p.publish(event(i)).unwrap();
    }
    bus_a.flush().unwrap();
    assert!(
        out.flush(Duration::from_secs(20)),
        "every event acked by the server"
    );
}

/// Bus B: a bus recording what it sees, fed by the consumer `durable` on
/// everything.
fn receiving_side(
    server: &NatsServer,
    durable: &str,
) -> (Bus<u64>, Seen, NatsBridge, InboundHandle) {
    let bus_b = bus();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    bus_b
        .subscribe(">", move |e: &Event<u64>| {
            let subject = e.subject.as_ref().unwrap().to_string();
            s.lock().unwrap().entry(subject).or_default().push(e.data);
        })
        .unwrap();
    let bridge_b = bridge(server);
    let inbound = inbound(&bridge_b, &bus_b, durable, ">");
    (bus_b, seen, bridge_b, inbound)
}

/// Waits (at most 20 s) until bus B saw `n` events; fails if it saw more.
fn wait_for(seen: &Seen, n: u64) {
    let count = || seen.lock().unwrap().values().map(Vec::len).sum::<usize>() as u64;
    wait_until(20, "every event on bus B", || count() >= n);
    assert_eq!(count(), n);
}

/// Every event 0..n once, ascending per subject.
fn check(seen: &Seen, n: u64) {
    let seen = seen.lock().unwrap();
    let mut all: Vec<u64> = seen.values().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "each event exactly once");
    for (subject, values) in seen.iter() {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{subject} out of order: {values:?}"
        );
    }
}

#[test]
fn one_process_round_trip() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    const N: u64 = 10_000;
    let (bus_a, bridge_a, out) = sending_side(server.url());
    let (bus_b, seen, bridge_b, _inbound) = receiving_side(&server, "bus-b");

    publish_all(&bus_a, &out, N);
    wait_for(&seen, N);
    bus_b.flush().unwrap();
    // Acks are sent after the handlers finish: give the last ones a moment.
    let info = acks_settled(&server, "bus-b");
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered),
        (0, 0),
        "(num_ack_pending, num_redelivered)"
    );
    check(&seen, N);

    let report = bridge_b.shutdown();
    assert!(report.is_clean(), "{report:?}");
    let report = bridge_a.shutdown();
    assert!(report.is_clean(), "{report:?}");
    bus_a.shutdown().unwrap();
    bus_b.shutdown().unwrap();
}

#[test]
fn two_processes_round_trip() {
    const N: u64 = 5_000;
    if let Ok(url) = std::env::var(CHILD_URL) {
        // The other machine: bus A and its outbound bridge.
        let (bus_a, bridge, out) = sending_side(url);
        publish_all(&bus_a, &out, N);
        assert!(bridge.shutdown().is_clean());
        bus_a.shutdown().unwrap();
        return;
    }
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let (bus_b, seen, bridge_b, _inbound) = receiving_side(&server, "proc-b");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, server.url())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the publishing process failed");
    wait_for(&seen, N);
    check(&seen, N);
    assert!(bridge_b.shutdown().is_clean());
    bus_b.shutdown().unwrap();
}
