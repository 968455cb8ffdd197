//! The seed's flow in miniature: a user registers, places an order, the payment
//! fails. An email-notification handler subscribes to several types, an audit
//! handler to everything, a projector keeps a read model.
//!
//! Run: `cargo run --release --example quickstart`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ringbus::{domain_event, BusBuilder, Event, Handler, HandlerError};
use serde::{Deserialize, Serialize};

/// The shop's domain events: plain Rust types, each declaring its event type once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Shop {
    UserRegistered {
        user_id: String,
        email: String,
        name: String,
    },
    OrderPlaced {
        order_id: String,
        customer_id: String,
        amount: f64,
    },
    PaymentFailed {
        payment_id: String,
        order_id: String,
        reason: String,
    },
}

impl ringbus::DomainEvent for Shop {
    fn event_type(&self) -> ringbus::EventType {
        match self {
            Shop::UserRegistered { .. } => ringbus::event_type!("user.registered"),
            Shop::OrderPlaced { .. } => ringbus::event_type!("order.placed"),
            Shop::PaymentFailed { .. } => ringbus::event_type!("payment.failed"),
        }
    }
    fn source(&self) -> ringbus::Source {
        match self {
            Shop::UserRegistered { .. } => ringbus::source!("user-service"),
            Shop::OrderPlaced { .. } => ringbus::source!("order-service"),
            Shop::PaymentFailed { .. } => ringbus::source!("payment-service"),
        }
    }
    fn subject(&self) -> Option<ringbus::Subject> {
        match self {
            Shop::UserRegistered { user_id, .. } => Some(user_id.as_str().into()),
            Shop::OrderPlaced { order_id, .. } | Shop::PaymentFailed { order_id, .. } => {
                Some(order_id.as_str().into())
            }
        }
    }
}

/// A standalone domain event type, with the macro.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Heartbeat {
    at: u64,
}
domain_event!(Heartbeat => "system.heartbeat", source = "monitor");

/// Sends (here: prints) emails for the three interesting types.
struct EmailNotifications {
    sent: Arc<Mutex<Vec<String>>>,
}

impl Handler<Shop> for EmailNotifications {
    fn handle(&mut self, event: &Event<Shop>) -> Result<(), HandlerError> {
        let line = match &event.data {
            Shop::UserRegistered { email, name, .. } => {
                format!("welcome email to {name} <{email}>")
            }
            Shop::OrderPlaced {
                order_id, amount, ..
            } => {
                format!("order confirmation for {order_id} ({amount:.2})")
            }
            Shop::PaymentFailed {
                order_id, reason, ..
            } => {
                format!("payment failure notice for {order_id}: {reason}")
            }
        };
        println!("  [email] {line}");
        self.sent.lock().unwrap().push(line);
        Ok(())
    }
}

/// Keeps a read model of orders (a CQRS projection): stateful, no lock needed.
#[derive(Default)]
struct OrderProjector {
    orders: HashMap<String, &'static str>,
    out: Arc<Mutex<HashMap<String, &'static str>>>,
}

impl Handler<Shop> for OrderProjector {
    fn handle(&mut self, event: &Event<Shop>) -> Result<(), HandlerError> {
        match &event.data {
            Shop::OrderPlaced { order_id, .. } => {
                self.orders.insert(order_id.clone(), "placed");
            }
            Shop::PaymentFailed { order_id, .. } => {
                self.orders.insert(order_id.clone(), "payment-failed");
            }
            Shop::UserRegistered { .. } => {}
        }
        Ok(())
    }
    fn on_shutdown(&mut self) {
        *self.out.lock().unwrap() = std::mem::take(&mut self.orders);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = BusBuilder::<Shop>::new().capacity(1024).build()?;

    let sent = Arc::new(Mutex::new(Vec::new()));
    bus.subscribe_handler(
        ["user.registered", "order.placed", "payment.failed"],
        EmailNotifications { sent: sent.clone() },
    )?;

    let audit = Arc::new(Mutex::new(Vec::new()));
    let log = audit.clone();
    bus.subscribe_all(move |e: &Event<Shop>| -> Result<(), HandlerError> {
        println!(
            "  [audit] {} {} from {} (subject {:?})",
            e.id,
            e.event_type,
            e.source,
            e.subject.as_ref().map(|s| s.as_str())
        );
        log.lock().unwrap().push(e.event_type.name());
        Ok(())
    })?;

    let read_model = Arc::new(Mutex::new(HashMap::new()));
    bus.subscribe_handler(
        ["order.*", "payment.>"],
        OrderProjector {
            out: read_model.clone(),
            ..Default::default()
        },
    )?;

    let mut publisher = bus.publisher();
    let registered = Event::typed(Shop::UserRegistered {
        user_id: "u-42".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
    });
    let placed = Event::typed(Shop::OrderPlaced {
        order_id: "o-7".into(),
        customer_id: "u-42".into(),
        amount: 129.90,
    })
    .caused_by(&registered);
    let failed = Event::typed(Shop::PaymentFailed {
        payment_id: "p-1".into(),
        order_id: "o-7".into(),
        reason: "card declined".into(),
    })
    .caused_by(&placed);
    println!(
        "publishing {} ({}), then {} and {}",
        registered.event_type, registered.id, placed.event_type, failed.event_type
    );
    println!("as JSON: {}", serde_json::to_string(&placed)?);
    publisher.publish_batch([registered, placed, failed])?;

    // A typed event of another payload type goes on its own bus.
    let heartbeat = Event::typed(Heartbeat { at: 1 });
    println!("a {} event from {}", heartbeat.event_type, heartbeat.source);

    let report = bus.shutdown().unwrap();
    println!(
        "shutdown: published {}, dispatched {}, delivered {}, failed {}",
        report.counters.published,
        report.counters.dispatched,
        report.counters.delivered,
        report.counters.failed
    );
    assert_eq!(sent.lock().unwrap().len(), 3);
    assert_eq!(audit.lock().unwrap().len(), 3);
    assert_eq!(
        read_model.lock().unwrap().get("o-7"),
        Some(&"payment-failed")
    );
    println!("read model: {:?}", read_model.lock().unwrap());
    Ok(())
}
