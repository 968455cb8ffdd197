//! The seed's shop, end to end: users register and place orders; a payment
//! service charges them and publishes the outcome; an order saga confirms or
//! cancels each order; an e-mail handler, an audit handler and a projection
//! (orders by status) listen in. Then `flush`, check the numbers, and stop.
//!
//! Every invariant is an `assert!`: a broken one exits non-zero (CI runs this).
//!
//! Run: `cargo run --release --example quickstart`

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringbus::resilience::RetryPolicy;
use ringbus::{codec, BusBuilder, Classify, Event, HandlerError, SubscribeOptions};
use serde::{Deserialize, Serialize};

// The seed's event structs (`UserRegisteredEvent`, `OrderPlacedEvent`, …), as
// plain payloads: the envelope (id, type, source, timestamp, version) is `Event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserRegistered {
    user_id: String,
    email: String,
    name: String,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderItem {
    product_id: String,
    quantity: u32,
    price: f64,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    customer_id: String,
    amount: f64,
    items: Vec<OrderItem>,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PaymentProcessed {
    payment_id: String,
    order_id: String,
    amount: f64,
    status: String,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PaymentFailed {
    payment_id: String,
    order_id: String,
    reason: String,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderConfirmed {
    order_id: String,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderCancelled {
    order_id: String,
    reason: String,
}

ringbus::domain_events! {
    /// Everything the shop publishes: each variant's type, source and subject, once.
    #[derive(Clone, Debug, PartialEq)]
    enum ShopEvent {
        UserRegistered(UserRegistered) => "user.registered", source = "user-service", subject = user_id;
        OrderPlaced(OrderPlaced) => "order.placed", source = "order-service", subject = order_id;
        PaymentProcessed(PaymentProcessed) => "payment.processed", source = "payment-service",
            subject = order_id;
        PaymentFailed(PaymentFailed) => "payment.failed", source = "payment-service", subject = order_id;
        OrderConfirmed(OrderConfirmed) => "order.confirmed", source = "order-service", subject = order_id;
        // Schema version 2 (the seed's "event versioning"): `reason` was added.
        OrderCancelled(OrderCancelled) => "order.cancelled", source = "order-service",
            subject = order_id, version = 2;
    }
}

const USERS: usize = 50;
const ORDERS: usize = 5_000; // far more than the ring holds: follow-ups must not deadlock
const CARD_LIMIT: f64 = 500.0; // the payment service declines larger amounts
const FLAKY_EVERY: usize = 500; // the gateway times out once on every 500th order

/// The seed's `OrderService.PlaceOrder`: the amount is the sum over the items.
fn order(i: usize) -> OrderPlaced {
    let items = vec![OrderItem {
        product_id: format!("p-{}", i % 7),
        quantity: 1 + (i % 3) as u32,
        price: (i % 100) as f64 * 2.5,
    }];
    let amount = items
        .iter()
        .map(|it| it.price * f64::from(it.quantity))
        .sum();
    let customer_id = format!("u-{}", i % USERS);
    OrderPlaced {
        order_id: format!("o-{i}"),
        customer_id,
        amount,
        items,
    }
}

/// An order's state in the read model (the seed's `OrderReadModel.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Status {
    Placed,
    Paid,
    PaymentFailed,
    Confirmed,
    Cancelled,
}

/// What the audit handler saw: events by type, and how many name a cause.
#[derive(Default)]
struct Audit {
    by_type: HashMap<&'static str, usize>,
    chained: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A small ring on purpose: 5 050 events go through 64 slots while handlers
    // publish 10 000 follow-ups, with the producer keeping the ring full.
    let bus = BusBuilder::<ShopEvent>::new().capacity(64).build()?;

    // Payment service: charges each order and publishes the outcome as a
    // follow-up through a publisher it captured. From inside a handler a publish
    // never waits for ring space, so this cannot deadlock however full the ring is.
    let mut payments = bus.publisher();
    let mut timed_out = HashSet::new();
    bus.subscribe_with(
        "order.placed",
        move |e| {
            let ShopEvent::OrderPlaced(o) = &e.data else {
                return Ok(());
            };
            // A malformed id will not parse on a retry either: a permanent error.
            let n: usize = o.order_id.trim_start_matches("o-").parse().permanent()?;
            if n.is_multiple_of(FLAKY_EVERY) && timed_out.insert(n) {
                return Err(HandlerError::transient("payment gateway timed out"));
            }
            let payment_id = format!("pay-{n}");
            let outcome: ShopEvent = if o.amount > CARD_LIMIT {
                let reason = format!("card limit {CARD_LIMIT:.2} exceeded");
                PaymentFailed {
                    payment_id,
                    order_id: o.order_id.clone(),
                    reason,
                }
                .into()
            } else {
                let (amount, status) = (o.amount, "captured".into());
                PaymentProcessed {
                    payment_id,
                    order_id: o.order_id.clone(),
                    amount,
                    status,
                }
                .into()
            };
            // `caused_by`: the follow-up carries the `order.placed` event id as its causation
            // and correlation id. A refused publish is worth a retry: transient.
            payments
                .publish(Event::typed(outcome).caused_by(e))
                .transient()
        },
        // Up to 3 attempts, 1 ms apart, for transient errors; only the attempt
        // that gets past the gateway publishes, so no outcome is published twice.
        SubscribeOptions::new()
            .name("payments")
            .retry(RetryPolicy::fixed(Duration::from_millis(1), 3)),
    )?;

    // The order saga: a payment outcome decides the order's fate, as a further follow-up.
    let mut orders = bus.publisher();
    bus.subscribe_with(
        ["payment.processed", "payment.failed"],
        move |e| {
            let next: ShopEvent = match &e.data {
                ShopEvent::PaymentProcessed(p) => OrderConfirmed {
                    order_id: p.order_id.clone(),
                }
                .into(),
                ShopEvent::PaymentFailed(p) => {
                    let reason = format!("payment failed: {}", p.reason);
                    OrderCancelled {
                        order_id: p.order_id.clone(),
                        reason,
                    }
                    .into()
                }
                _ => return Ok(()),
            };
            orders.publish(Event::typed(next).caused_by(e)).transient()
        },
        SubscribeOptions::new().name("order-saga"),
    )?;

    // The seed's `EmailNotificationHandler`: welcome, order confirmation, payment failure.
    let emails = Arc::new(Mutex::new(HashMap::new()));
    let sent = emails.clone();
    bus.subscribe_with(
        ["user.registered", "order.placed", "payment.failed"],
        move |e| {
            let kind = match &e.data {
                ShopEvent::UserRegistered(_) => "welcome",
                ShopEvent::OrderPlaced(_) => "order confirmation",
                ShopEvent::PaymentFailed(_) => "payment failure notice",
                _ => return,
            };
            *sent.lock().unwrap().entry(kind).or_default() += 1;
        },
        SubscribeOptions::new().name("emails"),
    )?;

    // Audit: every event (`">"`, the seed's `SubscribeToAll`), and its causal links.
    let audit = Arc::new(Mutex::new(Audit::default()));
    let log = audit.clone();
    bus.subscribe_with(
        ">",
        move |e| {
            let mut log = log.lock().unwrap();
            *log.by_type.entry(e.event_type.name()).or_default() += 1;
            log.chained += usize::from(e.causation_id.is_some() && e.correlation_id.is_some());
        },
        SubscribeOptions::new().name("audit"),
    )?;

    // The seed's `EventProjector`: orders by status. Each order's events reach it
    // in causal order (a follow-up is delivered after its cause), so a transition
    // out of order is a bug: the handler would panic, and the report counts it.
    let read_model = Arc::new(Mutex::new(HashMap::<String, Status>::new()));
    let model = read_model.clone();
    bus.subscribe_with(
        ["order.>", "payment.>"],
        move |e| {
            let (id, from, to) = match &e.data {
                ShopEvent::OrderPlaced(o) => (&o.order_id, None, Status::Placed),
                ShopEvent::PaymentProcessed(p) => (&p.order_id, Some(Status::Placed), Status::Paid),
                ShopEvent::PaymentFailed(p) => {
                    (&p.order_id, Some(Status::Placed), Status::PaymentFailed)
                }
                ShopEvent::OrderConfirmed(o) => {
                    (&o.order_id, Some(Status::Paid), Status::Confirmed)
                }
                ShopEvent::OrderCancelled(o) => {
                    (&o.order_id, Some(Status::PaymentFailed), Status::Cancelled)
                }
                ShopEvent::UserRegistered(_) => return,
            };
            let previous = model.lock().unwrap().insert(id.clone(), to);
            assert_eq!(previous, from, "{id}: {:?} out of order", e.event_type);
        },
        SubscribeOptions::new().name("orders-by-status"),
    )?;

    // The producers: the seed's `UserService.RegisterUser` and `OrderService.PlaceOrder`.
    let mut publisher = bus.publisher();
    for u in 0..USERS {
        publisher.publish(Event::typed(ShopEvent::from(UserRegistered {
            user_id: format!("u-{u}"),
            email: format!("user{u}@example.com"),
            name: format!("User {u}"),
        })))?;
    }
    for i in 0..ORDERS {
        publisher.publish(Event::typed(ShopEvent::from(order(i))))?;
    }

    // Everything published so far, every follow-up and every retry: settled.
    bus.flush()?;

    // The read model: every order confirmed or cancelled, by the card limit.
    let declined = (0..ORDERS)
        .filter(|&i| order(i).amount > CARD_LIMIT)
        .count();
    let (confirmed, cancelled) = (ORDERS - declined, declined);
    assert!(confirmed > 0 && cancelled > 0);
    let mut by_status = HashMap::new();
    for status in read_model.lock().unwrap().values() {
        *by_status.entry(*status).or_default() += 1;
    }
    println!("orders by status: {by_status:?}");
    let expected = [
        (Status::Confirmed, confirmed),
        (Status::Cancelled, cancelled),
    ];
    assert_eq!(by_status, HashMap::from(expected));

    let emails = emails.lock().unwrap().clone();
    println!("e-mails sent: {emails:?}");
    let expected = [
        ("welcome", USERS),
        ("order confirmation", ORDERS),
        ("payment failure notice", cancelled),
    ];
    assert_eq!(emails, HashMap::from(expected));

    let audit = audit.lock().unwrap();
    let expected = [
        ("user.registered", USERS),
        ("order.placed", ORDERS),
        ("payment.processed", confirmed),
        ("payment.failed", cancelled),
        ("order.confirmed", confirmed),
        ("order.cancelled", cancelled),
    ];
    assert_eq!(audit.by_type, HashMap::from(expected));
    assert_eq!(
        audit.chained,
        2 * ORDERS,
        "every follow-up names its cause and flow"
    );

    // The binary codec: the frame's event type selects the variant on decoding.
    // This payload would fit `OrderCancelled` too (serde skips `payment_id`).
    let failed = Event::typed(ShopEvent::from(PaymentFailed {
        payment_id: "pay-x".into(),
        order_id: "o-x".into(),
        reason: "card declined".into(),
    }));
    let mut frame = Vec::new();
    codec::encode(&failed, &mut frame)?;
    let (decoded, _) = codec::decode_typed::<ShopEvent>(&frame)?;
    println!(
        "decoded {} bytes: {} -> {:?}",
        frame.len(),
        decoded.event_type,
        decoded.data
    );
    assert!(matches!(decoded.data, ShopEvent::PaymentFailed(_)));
    assert_eq!(decoded, failed);

    // The graceful stop: refuse new publishes, drain, run shutdown hooks, join.
    let report = bus.shutdown()?;
    let c = report.counters;
    println!(
        "shutdown: published {}, follow-ups {}, delivered {}, retried {}, failed {}",
        c.published, c.follow_ups, c.delivered, c.retried, c.failed
    );
    for h in &report.handlers {
        println!(
            "  {:<18} handled {:>6}  errors {}",
            h.handler, h.handled, h.errors
        );
    }
    let flaky = ORDERS.div_ceil(FLAKY_EVERY) as u64; // each failed once, then succeeded
    assert!(report.completed);
    assert_eq!(c.published, (USERS + ORDERS) as u64);
    assert_eq!(c.follow_ups, 2 * ORDERS as u64);
    assert_eq!(
        (c.failed, c.retried, c.panicked, c.dead_lettered),
        (flaky, flaky, 0, 0)
    );
    let handled: HashMap<&str, u64> = report
        .handlers
        .iter()
        .map(|h| (&*h.handler, h.handled))
        .collect();
    assert_eq!(handled["payments"], ORDERS as u64);
    assert_eq!(handled["audit"], (USERS + 3 * ORDERS) as u64);
    Ok(())
}
