//! The seed's shop aggregates and its checkout saga (examples/shop/domain.rs),
//! tested with the given/when/then harness and on an in-memory store with a
//! manual clock (issue 12, B5).

#[path = "../examples/shop/domain.rs"]
#[allow(dead_code)]
mod domain;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::*;
use ringbus::cqrs::{saga, AggregateTest, CommandMeta, Repository};
use ringbus::resilience::ManualClock;
use ringbus::store::InMemoryStore;
use ringbus::BusBuilder;

fn item(price_cents: u64, quantity: u32) -> Item {
    Item {
        product: "tea".into(),
        quantity,
        price_cents,
    }
}

#[test]
fn a_user_registers_once() {
    let registered = ShopEvent::UserRegistered {
        user: "u1".into(),
        email: "a@b.c".into(),
        name: "Ada".into(),
    };
    AggregateTest::<User>::given_none()
        .when(("u1".into(), "a@b.c".into(), "Ada".into()))
        .then([registered.clone()]);
    AggregateTest::<User>::given([registered])
        .when(("u1".into(), "x@y.z".into(), "Ada".into()))
        .then_err(|e| *e == Refused("already registered"));
}

#[test]
fn an_order_is_placed_with_its_total_then_confirmed_or_cancelled_once() {
    let placed = ShopEvent::OrderPlaced {
        order: 5,
        customer: "u1".into(),
        items: vec![item(250, 2), item(199, 1)],
        amount_cents: 699,
    };
    AggregateTest::<Order>::given_none()
        .when(OrderCommand::Place {
            order: 5,
            customer: "u1".into(),
            items: vec![item(250, 2), item(199, 1)],
        })
        .then([placed.clone()]);
    AggregateTest::<Order>::given([placed.clone()])
        .when(OrderCommand::Confirm { order: 5 })
        .then([ShopEvent::OrderConfirmed { order: 5 }]);
    AggregateTest::<Order>::given([placed.clone(), ShopEvent::OrderConfirmed { order: 5 }])
        .when(OrderCommand::Cancel {
            order: 5,
            reason: "late".into(),
        })
        .then_err(|e| *e == Refused("order already settled"));
    AggregateTest::<Order>::given_none()
        .when(OrderCommand::Confirm { order: 5 })
        .then_err(|e| *e == Refused("no such order"));
    AggregateTest::<Order>::given([placed])
        .when(OrderCommand::Place {
            order: 5,
            customer: "u1".into(),
            items: vec![],
        })
        .then_err(|e| *e == Refused("order already settled"));
}

#[test]
fn a_payment_follows_the_gateway_and_settles_once() {
    AggregateTest::<Payment>::given_none()
        .when((1, 500, Gateway::Approved))
        .then([ShopEvent::PaymentProcessed {
            order: 1,
            amount_cents: 500,
        }]);
    AggregateTest::<Payment>::given_none()
        .when((3, 500, Gateway::Declined))
        .then([ShopEvent::PaymentFailed {
            order: 3,
            reason: "card declined".into(),
        }]);
    // No answer leaves it open: a later answer still settles it.
    AggregateTest::<Payment>::given([ShopEvent::PaymentPending { order: 7 }])
        .when((7, 500, Gateway::Approved))
        .then([ShopEvent::PaymentProcessed {
            order: 7,
            amount_cents: 500,
        }]);
    AggregateTest::<Payment>::given([ShopEvent::PaymentFailed {
        order: 3,
        reason: "card declined".into(),
    }])
    .when((3, 500, Gateway::Approved))
    .then_err(|e| *e == Refused("payment already settled"));
    assert_eq!(
        [gateway(11), gateway(13), gateway(17)],
        [Gateway::Approved, Gateway::Declined, Gateway::NoAnswer]
    );
}

/// The whole flow on real aggregates: placed orders end confirmed, cancelled
/// by the gateway, or cancelled by the deadline, each once.
#[test]
fn the_checkout_saga_drives_the_aggregates_to_their_end_states() {
    let bus = BusBuilder::<ShopEvent>::new().build().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let _feed = store.publish_to(&bus);
    let clock = ManualClock::new();
    let orders = Arc::new(Repository::<Order, _>::new(store.clone()));
    let payments = Arc::new(Repository::<Payment, _>::new(store.clone()));
    let sent: Arc<Mutex<Vec<ShopCommand>>> = Arc::default();
    let (o, p, s) = (orders.clone(), payments.clone(), sent.clone());
    let checkout = saga(
        store.clone(),
        &bus,
        Arc::new(InMemoryStore::new()),
        CheckoutSaga,
    )
    .clock(clock.clone())
    .dispatch(move |meta: CommandMeta, command: ShopCommand| {
        s.lock().unwrap().push(command.clone());
        dispatch(&o, &p, meta, command)
    })
    .start()
    .unwrap();
    for order in [11, 13, 17] {
        orders
            .execute(
                &order.to_string(),
                OrderCommand::Place {
                    order,
                    customer: "u1".into(),
                    items: vec![item(100, 1)],
                },
            )
            .unwrap();
    }
    let settle = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let head = ringbus::store::EventStore::head(&*store).unwrap();
            assert!(checkout.wait_for(head, Duration::from_secs(30)));
            std::thread::sleep(Duration::from_millis(20));
            if ringbus::store::EventStore::head(&*store) == Some(head) {
                return;
            }
            assert!(std::time::Instant::now() < deadline);
        }
    };
    settle();
    let status = |order: u64| orders.load(&order.to_string()).unwrap().state.status;
    assert_eq!(
        [status(11), status(13), status(17)],
        [Status::Confirmed, Status::Cancelled, Status::Placed]
    );
    assert_eq!(checkout.deadlines("17").len(), 1);
    clock.advance(PAYMENT_TIMEOUT);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status(17) != Status::Cancelled {
        assert!(
            std::time::Instant::now() < deadline,
            "the deadline did not fire"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    settle();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert!(sent.contains(&ShopCommand::CancelOrder {
        order: 17,
        reason: "payment timed out".into()
    }));
}
