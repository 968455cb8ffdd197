//! Two machines, one NATS JetStream server: machine A's bus sends its `order.*`
//! events out; machine B's bus takes them in and acks each once its handlers
//! succeeded. Run B, then A (any order works: the stream keeps the events):
//!
//! ```sh
//! nats-server -js &                                   # a local server with JetStream
//! cargo run --release --features nats --example nats_bridge -- --role b --count 1000 &
//! cargo run --release --features nats --example nats_bridge -- --role a --count 1000
//! ```
//!
//! `--url` picks the server (`nats://127.0.0.1:4222`). B exits once it has
//! `--count` distinct orders, and fails after `--within` seconds (30) without.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbus::nats::{ConsumerSpec, InboundOptions, NatsBridge, OutboundOptions};
use ringbus::{event_type, source, BusBuilder, Event};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut role = String::new();
    let mut url = "nats://127.0.0.1:4222".to_owned();
    let mut count = 1_000u64;
    let mut within = 30u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--role" => role = value()?,
            "--url" => url = value()?,
            "--count" => count = value()?.parse()?,
            "--within" => within = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    match role.as_str() {
        "a" => machine_a(&url, count),
        "b" => machine_b(&url, count, Duration::from_secs(within)),
        _ => Err("--role a (sends) or --role b (receives)".into()),
    }
}

/// Machine A: its bus's `order.*` events go out to `rb.ev.order.*`.
fn machine_a(url: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let bus = BusBuilder::<Order>::new().build()?;
    let bridge = NatsBridge::builder(url).build()?;
    let out = bridge.outbound(&bus, "order.*", OutboundOptions::default())?;
    let mut publisher = bus.publisher();
    for id in 0..count {
        let order = Order {
            id,
            cents: 100 + id % 900,
        };
        publisher.publish(
            Event::new(event_type!("order.placed"), source!("shop-a"), order)
                .with_subject(format!("order-{id}")),
        )?;
    }
    bus.flush()?;
    // Every event the bus handed the bridge is stored by the server.
    if !out.flush(Duration::from_secs(30)) {
        return Err("the server did not ack every event in 30 s".into());
    }
    println!("machine A: {count} orders published, {:?}", out.metrics());
    let report = bridge.shutdown();
    assert!(report.is_clean(), "{report:?}");
    bus.shutdown()?;
    Ok(())
}

/// Machine B: a durable consumer `billing` feeds its bus; a message is acked
/// once the handler succeeded.
fn machine_b(url: &str, count: u64, within: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let bus = BusBuilder::<Order>::new().build()?;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let billed = seen.clone();
    bus.subscribe("order.placed", move |e: &Event<Order>| {
        billed.lock().unwrap().insert(e.data.id);
    })?;
    let bridge = NatsBridge::builder(url).build()?;
    let inbound = bridge.inbound(
        &bus,
        ConsumerSpec::new("billing", ["order.*"]),
        InboundOptions::default(),
    )?;
    let deadline = Instant::now() + within;
    while (seen.lock().unwrap().len() as u64) < count {
        if Instant::now() > deadline {
            return Err(format!(
                "machine B: {} of {count} orders after {within:?}",
                seen.lock().unwrap().len()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("machine B: {count} orders billed, {:?}", inbound.metrics());
    let report = bridge.shutdown();
    assert!(report.is_clean(), "{report:?}");
    bus.shutdown()?;
    Ok(())
}
