//! The shop's domain: its events, its aggregates (users, orders, payments with
//! a simulated gateway) and the checkout saga. Shared by the example
//! (`main.rs`) and its tests (`tests/cqrs_shop.rs`).

use std::time::Duration;

use ringbus::cqrs::{
    Aggregate, CommandError, CommandMeta, ProcessManager, Repository, SagaContext,
};
use ringbus::store::EventStore;
use ringbus::store::Recorded;
use ringbus::{event_type, source, DomainEvent, EventType, HandlerError, Source};
use serde::{Deserialize, Serialize};

// ---- the domain's events: one enum for the shop's store --------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShopEvent {
    UserRegistered {
        user: String,
        email: String,
        name: String,
    },
    OrderPlaced {
        order: u64,
        customer: String,
        items: Vec<Item>,
        amount_cents: u64,
    },
    OrderConfirmed {
        order: u64,
    },
    OrderCancelled {
        order: u64,
        reason: String,
    },
    PaymentProcessed {
        order: u64,
        amount_cents: u64,
    },
    PaymentFailed {
        order: u64,
        reason: String,
    },
    PaymentPending {
        order: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product: String,
    pub quantity: u32,
    pub price_cents: u64,
}

impl DomainEvent for ShopEvent {
    fn event_type(&self) -> EventType {
        match self {
            ShopEvent::UserRegistered { .. } => event_type!("user.registered"),
            ShopEvent::OrderPlaced { .. } => event_type!("order.placed"),
            ShopEvent::OrderConfirmed { .. } => event_type!("order.confirmed"),
            ShopEvent::OrderCancelled { .. } => event_type!("order.cancelled"),
            ShopEvent::PaymentProcessed { .. } => event_type!("payment.processed"),
            ShopEvent::PaymentFailed { .. } => event_type!("payment.failed"),
            ShopEvent::PaymentPending { .. } => event_type!("payment.pending"),
        }
    }
    fn source(&self) -> Source {
        match self {
            ShopEvent::UserRegistered { .. } => source!("user-service"),
            ShopEvent::PaymentProcessed { .. }
            | ShopEvent::PaymentFailed { .. }
            | ShopEvent::PaymentPending { .. } => source!("payment-service"),
            _ => source!("order-service"),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Refused(pub &'static str);
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Refused {}

// ---- the aggregates -----------------------------------------------------------

#[derive(Default)]
pub struct User {
    pub registered: bool,
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = (String, String, String); // id, email, name
    type Event = ShopEvent;
    type Error = Refused;
    fn handle(&self, (user, email, name): Self::Command) -> Result<Vec<ShopEvent>, Refused> {
        if self.registered {
            return Err(Refused("already registered"));
        }
        Ok(vec![ShopEvent::UserRegistered { user, email, name }])
    }
    fn apply(&mut self, _: &ShopEvent) {
        self.registered = true;
    }
}

#[derive(Default)]
pub struct Order {
    pub status: Status,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Status {
    #[default]
    New,
    Placed,
    Confirmed,
    Cancelled,
}

#[derive(Clone)]
pub enum OrderCommand {
    Place {
        order: u64,
        customer: String,
        items: Vec<Item>,
    },
    Confirm {
        order: u64,
    },
    Cancel {
        order: u64,
        reason: String,
    },
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = ShopEvent;
    type Error = Refused;
    fn handle(&self, command: OrderCommand) -> Result<Vec<ShopEvent>, Refused> {
        match (self.status, command) {
            (
                Status::New,
                OrderCommand::Place {
                    order,
                    customer,
                    items,
                },
            ) => {
                let amount_cents = items
                    .iter()
                    .map(|i| i.price_cents * u64::from(i.quantity))
                    .sum();
                Ok(vec![ShopEvent::OrderPlaced {
                    order,
                    customer,
                    items,
                    amount_cents,
                }])
            }
            (Status::Placed, OrderCommand::Confirm { order }) => {
                Ok(vec![ShopEvent::OrderConfirmed { order }])
            }
            (Status::Placed, OrderCommand::Cancel { order, reason }) => {
                Ok(vec![ShopEvent::OrderCancelled { order, reason }])
            }
            (Status::New, _) => Err(Refused("no such order")),
            _ => Err(Refused("order already settled")),
        }
    }
    fn apply(&mut self, event: &ShopEvent) {
        self.status = match event {
            ShopEvent::OrderPlaced { .. } => Status::Placed,
            ShopEvent::OrderConfirmed { .. } => Status::Confirmed,
            ShopEvent::OrderCancelled { .. } => Status::Cancelled,
            _ => self.status,
        };
    }
}

/// What the gateway said, put into the command (aggregates decide purely).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Gateway {
    Approved,
    Declined,
    NoAnswer,
}

/// The simulated gateway: order numbers ending in 3 are declined, in 7 never
/// answer.
pub fn gateway(order: u64) -> Gateway {
    match order % 10 {
        3 => Gateway::Declined,
        7 => Gateway::NoAnswer,
        _ => Gateway::Approved,
    }
}

#[derive(Default)]
pub struct Payment {
    pub settled: bool,
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = (u64, u64, Gateway); // order, amount, the gateway's answer
    type Event = ShopEvent;
    type Error = Refused;
    fn handle(
        &self,
        (order, amount_cents, answer): Self::Command,
    ) -> Result<Vec<ShopEvent>, Refused> {
        if self.settled {
            return Err(Refused("payment already settled"));
        }
        Ok(vec![match answer {
            Gateway::Approved => ShopEvent::PaymentProcessed {
                order,
                amount_cents,
            },
            Gateway::Declined => ShopEvent::PaymentFailed {
                order,
                reason: "card declined".into(),
            },
            Gateway::NoAnswer => ShopEvent::PaymentPending { order },
        }])
    }
    fn apply(&mut self, event: &ShopEvent) {
        self.settled |= !matches!(event, ShopEvent::PaymentPending { .. });
    }
}

// ---- the checkout saga --------------------------------------------------------

pub const PAYMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShopCommand {
    RequestPayment { order: u64, amount_cents: u64 },
    ConfirmOrder { order: u64 },
    CancelOrder { order: u64, reason: String },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkout {
    pub order: u64,
}

pub struct CheckoutSaga;

impl ProcessManager<ShopEvent> for CheckoutSaga {
    type State = Checkout;
    type Command = ShopCommand;
    fn name(&self) -> &str {
        "checkout"
    }
    fn patterns(&self) -> &[&str] {
        &["order.placed", "payment.processed", "payment.failed"]
    }
    fn correlate(&self, r: &Recorded<ShopEvent>) -> Option<String> {
        match &r.event.data {
            ShopEvent::OrderPlaced { order, .. }
            | ShopEvent::PaymentProcessed { order, .. }
            | ShopEvent::PaymentFailed { order, .. } => Some(order.to_string()),
            _ => None,
        }
    }
    fn starts(&self, r: &Recorded<ShopEvent>) -> bool {
        matches!(r.event.data, ShopEvent::OrderPlaced { .. })
    }
    fn handle(
        &self,
        s: &mut Checkout,
        r: &Recorded<ShopEvent>,
        cx: &mut SagaContext<ShopCommand>,
    ) -> Result<(), HandlerError> {
        match &r.event.data {
            ShopEvent::OrderPlaced {
                order,
                amount_cents,
                ..
            } => {
                s.order = *order;
                cx.send(ShopCommand::RequestPayment {
                    order: *order,
                    amount_cents: *amount_cents,
                });
                cx.schedule("payment-timeout", PAYMENT_TIMEOUT);
            }
            ShopEvent::PaymentProcessed { order, .. } => {
                cx.send(ShopCommand::ConfirmOrder { order: *order });
                cx.complete();
            }
            ShopEvent::PaymentFailed { order, reason } => {
                cx.send(ShopCommand::CancelOrder {
                    order: *order,
                    reason: reason.clone(),
                });
                cx.complete();
            }
            _ => {}
        }
        Ok(())
    }
    fn on_deadline(
        &self,
        s: &mut Checkout,
        _deadline: &str,
        cx: &mut SagaContext<ShopCommand>,
    ) -> Result<(), HandlerError> {
        cx.send(ShopCommand::CancelOrder {
            order: s.order,
            reason: "payment timed out".into(),
        });
        cx.complete();
        Ok(())
    }
}

/// Where the checkout saga's commands go: to the order and payment
/// aggregates (the payment with the gateway's answer). A command an aggregate
/// refuses is fine — a settled order stays settled; anything else is retried.
pub fn dispatch<S: EventStore<ShopEvent>>(
    orders: &Repository<Order, S>,
    payments: &Repository<Payment, S>,
    meta: CommandMeta,
    command: ShopCommand,
) -> Result<(), HandlerError> {
    let outcome = match command {
        ShopCommand::RequestPayment {
            order,
            amount_cents,
        } => payments
            .execute_with(
                &order.to_string(),
                meta,
                (order, amount_cents, gateway(order)),
            )
            .map(drop),
        ShopCommand::ConfirmOrder { order } => orders
            .execute_with(&order.to_string(), meta, OrderCommand::Confirm { order })
            .map(drop),
        ShopCommand::CancelOrder { order, reason } => orders
            .execute_with(
                &order.to_string(),
                meta,
                OrderCommand::Cancel { order, reason },
            )
            .map(drop),
    };
    match outcome {
        Ok(()) | Err(CommandError::Rejected(_)) => Ok(()),
        Err(e) => Err(HandlerError::transient(e.to_string())),
    }
}
