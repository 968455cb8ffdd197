//! Issue 13, test 2: bus A → outbound → JetStream → inbound → bus B, against a
//! real nats-server the test starts. 10 000 events of 3 types over 50 subjects:
//! each reaches bus B once, in order per subject, and the consumer ends with
//! nothing pending and nothing redelivered. Then the same across two processes
//! (this test binary started again as the child: the other machine).
#![cfg(feature = "nats")]

#[path = "support/nats.rs"]
mod nats_support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats_support::NatsServer;
use ringbus::nats::{ConsumerSpec, InboundOptions, NatsBridge, OutboundOptions};
use ringbus::{Bus, BusBuilder, Event, EventType, Source};

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

fn receiving_bus() -> (Bus<u64>, Seen) {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    bus.subscribe(">", move |e: &Event<u64>| {
        let subject = e.subject.as_ref().unwrap().to_string();
        s.lock().unwrap().entry(subject).or_default().push(e.data);
    })
    .unwrap();
    (bus, seen)
}

fn wait_for(seen: &Seen, n: usize, within: Duration) -> usize {
    let until = Instant::now() + within;
    loop {
        let got: usize = seen.lock().unwrap().values().map(Vec::len).sum();
        if got >= n || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The consumer's `num_ack_pending` and `num_redelivered`, read raw.
fn consumer_counts(url: &str, stream: &str, durable: &str) -> (usize, usize) {
    let (url, stream, durable) = (url.to_owned(), stream.to_owned(), durable.to_owned());
    nats_support::block_on(async move {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream(durable, stream).await.unwrap();
        let info = consumer.info().await.unwrap();
        (info.num_ack_pending, info.num_redelivered)
    })
}

fn publish_all(bus: &Bus<u64>, n: u64) {
    let mut p = bus.publisher();
    for i in 0..n {
        p.publish(event(i)).unwrap();
    }
}

#[test]
fn one_process_round_trip() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    const N: u64 = 10_000;
    let bus_a = BusBuilder::<u64>::new().build().unwrap();
    let bridge_a = NatsBridge::builder(server.url()).build().unwrap();
    let out = bridge_a
        .outbound(&bus_a, ">", OutboundOptions::default())
        .unwrap();

    let (bus_b, seen) = receiving_bus();
    let bridge_b = NatsBridge::builder(server.url()).build().unwrap();
    let _inbound = bridge_b
        .inbound(
            &bus_b,
            ConsumerSpec::new("bus-b", [">"]),
            InboundOptions::default(),
        )
        .unwrap();

    publish_all(&bus_a, N);
    bus_a.flush().unwrap();
    assert!(
        out.flush(Duration::from_secs(20)),
        "every event acked by the server"
    );
    let got = wait_for(&seen, N as usize, Duration::from_secs(20));
    assert_eq!(got, N as usize);
    bus_b.flush().unwrap();
    // Acks are sent after the handlers finish: give the last ones a moment.
    let until = Instant::now() + Duration::from_secs(10);
    let mut counts = consumer_counts(&server.url(), "RINGBUS", "bus-b");
    while counts.0 != 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        counts = consumer_counts(&server.url(), "RINGBUS", "bus-b");
    }
    assert_eq!(counts, (0, 0), "(num_ack_pending, num_redelivered)");
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
        let bus_a = BusBuilder::<u64>::new().build().unwrap();
        let bridge = NatsBridge::builder(url).build().unwrap();
        let out = bridge
            .outbound(&bus_a, ">", OutboundOptions::default())
            .unwrap();
        publish_all(&bus_a, N);
        bus_a.flush().unwrap();
        assert!(out.flush(Duration::from_secs(20)));
        assert!(bridge.shutdown().is_clean());
        bus_a.shutdown().unwrap();
        return;
    }
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let (bus_b, seen) = receiving_bus();
    let bridge_b = NatsBridge::builder(server.url()).build().unwrap();
    let _inbound = bridge_b
        .inbound(
            &bus_b,
            ConsumerSpec::new("proc-b", [">"]),
            InboundOptions::default(),
        )
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, server.url())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the publishing process failed");
    let got = wait_for(&seen, N as usize, Duration::from_secs(20));
    assert_eq!(got, N as usize);
    check(&seen, N);
    assert!(bridge_b.shutdown().is_clean());
    bus_b.shutdown().unwrap();
}
