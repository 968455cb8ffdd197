//! The seed's shop, end to end, on the file store.
//!
//! `cargo run --release --example shop -- --data DIR [--orders N] [--quick]
//! [--durability none|periodic|immediate]`
//!
//! * **Write side** — three aggregates in one store (`DIR/events`): `User`
//!   (`UserService::register`), `Order` (`OrderService::place`, confirm,
//!   cancel) and `Payment` (a simulated gateway: order numbers ending in 3 are
//!   declined, in 7 never answer).
//! * **The checkout saga** (instances in `DIR/sagas`, position in
//!   `DIR/events/checkpoints`): `OrderPlaced → RequestPayment` with a 15-minute
//!   deadline, `PaymentProcessed → ConfirmOrder`, `PaymentFailed →
//!   CancelOrder`, deadline → `CancelOrder`.
//! * **Read side** — `UserReadModel` and `OrderReadModel`, projections kept in
//!   `DIR/views/*.json` together with their positions, and queries over them.
//! * **`EmailNotificationHandler`** — a plain bus handler on the store's live
//!   feed (emails for registrations, confirmations and failed payments).
//!
//! Shop time is a manual clock kept in `DIR/clock`; each run starts 20
//! minutes after the last one ended, so the second run fires the payment
//! deadlines the first left pending (re-armed from the saga's records), and
//! leaves its own pending. Run it twice over the same directory: the second run
//! reloads the aggregates, resumes the projections from their checkpoints,
//! re-arms the deadlines, and prints the read models — the first run's plus
//! the new orders. Each run checks its resumed read models against a rebuild
//! from the whole store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbus::cqrs::{project, saga, CommandError, Projection, Query, Repository, SagaRecord};
use ringbus::pattern::named;
use ringbus::resilience::ManualClock;
use ringbus::store::checkpoint::CheckpointStore;
use ringbus::store::{Durability, EventStore, FileStore, Position, Recorded, StoreOptions};
use ringbus::{BusBuilder, HandlerError};
use serde::{Deserialize, Serialize};

mod domain;

use domain::*;

// ---- the read side: models kept in files with their positions ----------------

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct UserReadModel {
    users: BTreeMap<String, (String, u64)>, // user → (email, orders)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct OrderReadModel {
    orders: BTreeMap<u64, (String, u64, String)>, // order → (customer, amount, status)
}

/// A read model saved to `file` (if any) with its position, atomically, every
/// `SAVE_EVERY` events and when the run ends.
struct Saved<M> {
    name: &'static str,
    model: M,
    file: Option<PathBuf>,
    last: Option<Position>,
    unsaved: u64,
    apply: fn(&mut M, &ShopEvent),
}

const SAVE_EVERY: u64 = 1_000;

impl<M: Serialize + for<'de> Deserialize<'de> + Default> Saved<M> {
    /// The model saved in `dir`, or a new one.
    fn open(name: &'static str, dir: &Path, apply: fn(&mut M, &ShopEvent)) -> Self {
        let file = dir.join(format!("{name}.json"));
        let (model, last) = std::fs::read(&file)
            .ok()
            .map(|b| {
                serde_json::from_slice::<(M, Option<Position>)>(&b).expect("a saved read model")
            })
            .unwrap_or_default();
        Saved {
            name,
            model,
            file: Some(file),
            last,
            unsaved: 0,
            apply,
        }
    }

    /// A new model kept in memory only.
    fn fresh(name: &'static str, apply: fn(&mut M, &ShopEvent)) -> Self {
        Saved {
            name,
            model: M::default(),
            file: None,
            last: None,
            unsaved: 0,
            apply,
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let temp = file.with_extension("tmp");
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(&serde_json::to_vec(&(&self.model, self.last))?)?;
        f.sync_data()?;
        std::fs::rename(&temp, file)
    }
}

impl<M: Serialize + for<'de> Deserialize<'de> + Default + Send + Sync + 'static>
    Projection<ShopEvent> for Saved<M>
{
    fn name(&self) -> &str {
        self.name
    }
    fn apply(&mut self, r: &Recorded<ShopEvent>) -> Result<(), HandlerError> {
        (self.apply)(&mut self.model, &r.event.data);
        self.last = Some(r.position);
        self.unsaved += 1;
        if self.unsaved >= SAVE_EVERY {
            self.save()
                .map_err(|e| HandlerError::transient(e.to_string()))?;
            self.unsaved = 0;
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.model = M::default();
        self.last = None;
    }
}

/// The checkpoint of a [`Saved`] model is the position in its file.
struct InModelFile(PathBuf);
impl CheckpointStore for InModelFile {
    fn load(&self, _: &str) -> std::io::Result<Option<Position>> {
        Ok(std::fs::read(&self.0)
            .ok()
            .and_then(|b| serde_json::from_slice::<(serde_json::Value, Option<Position>)>(&b).ok())
            .and_then(|(_, p)| p))
    }
    fn save(&self, _: &str, _: Position) -> std::io::Result<()> {
        Ok(()) // the model saves its position with itself
    }
    fn clear(&self, _: &str) -> std::io::Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn users(m: &mut UserReadModel, e: &ShopEvent) {
    match e {
        ShopEvent::UserRegistered { user, email, .. } => {
            m.users.insert(user.clone(), (email.clone(), 0));
        }
        ShopEvent::OrderPlaced { customer, .. } => {
            if let Some(u) = m.users.get_mut(customer) {
                u.1 += 1;
            }
        }
        _ => {}
    }
}

fn orders(m: &mut OrderReadModel, e: &ShopEvent) {
    let mut set = |order: &u64, status: String| {
        if let Some(o) = m.orders.get_mut(order) {
            o.2 = status;
        }
    };
    match e {
        ShopEvent::OrderPlaced {
            order,
            customer,
            amount_cents,
            ..
        } => {
            m.orders
                .insert(*order, (customer.clone(), *amount_cents, "placed".into()));
        }
        ShopEvent::PaymentPending { order } => set(order, "awaiting payment".into()),
        ShopEvent::OrderConfirmed { order } => set(order, "confirmed".into()),
        ShopEvent::OrderCancelled { order, reason } => set(order, format!("cancelled: {reason}")),
        _ => {}
    }
}

/// "How many orders are in each status?"
struct CountByStatus;
impl Query<Saved<OrderReadModel>> for CountByStatus {
    type Output = BTreeMap<String, usize>;
    fn ask(&self, m: &Saved<OrderReadModel>) -> Self::Output {
        let mut counts = BTreeMap::new();
        for (_, _, status) in m.model.orders.values() {
            *counts.entry(status.clone()).or_default() += 1;
        }
        counts
    }
}

// ---- the run --------------------------------------------------------------------

struct Args {
    data: PathBuf,
    orders: u64,
    durability: Durability,
}

fn args() -> Args {
    let mut a = Args {
        data: std::env::temp_dir().join("ringbus-shop"),
        orders: 2_000,
        durability: Durability::Immediate,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data" => a.data = it.next().expect("--data DIR").into(),
            "--orders" => a.orders = it.next().and_then(|n| n.parse().ok()).expect("--orders N"),
            "--quick" => a.orders = 200,
            "--durability" => {
                a.durability = match it.next().as_deref() {
                    Some("none") => Durability::None,
                    Some("periodic") => Durability::Periodic(Duration::from_millis(100)),
                    Some("immediate") => Durability::Immediate,
                    other => panic!("--durability none|periodic|immediate, not {other:?}"),
                }
            }
            other => panic!("unknown argument {other:?} (see the example's docs)"),
        }
    }
    a
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let dir = &args.data;
    std::fs::create_dir_all(dir.join("views"))?;
    let options = StoreOptions::default().durability(args.durability);
    let store = Arc::new(FileStore::<ShopEvent>::open(
        dir.join("events"),
        options.clone(),
    )?);
    let saga_store = Arc::new(FileStore::<SagaRecord>::open(dir.join("sagas"), options)?);
    let bus = BusBuilder::<ShopEvent>::new().build()?;
    let feed = store.publish_to(&bus);

    // Shop time: 20 minutes after the last run ended.
    let clock = ManualClock::new();
    let clock_file = dir.join("clock");
    let last_ms: u64 = std::fs::read_to_string(&clock_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    clock.set(Duration::from_millis(last_ms) + Duration::from_secs(20 * 60));

    // EmailNotificationHandler: live, not durable (a catch-up subscription would be).
    let emails = Arc::new(AtomicU64::new(0));
    let sent = emails.clone();
    bus.subscribe(
        named(
            "emails",
            ["user.registered", "order.confirmed", "payment.failed"],
        ),
        move |_e: &ringbus::Event<ShopEvent>| {
            sent.fetch_add(1, Ordering::Relaxed);
        },
    )?;

    let user_repo = Repository::<User, _>::new(store.clone());
    let order_repo = Arc::new(
        Repository::<Order, _>::new(store.clone())
            .cache(100_000)
            .retry_on_conflict(5),
    );
    let payment_repo = Arc::new(Repository::<Payment, _>::new(store.clone()).retry_on_conflict(5));

    let views = dir.join("views");
    let user_view = project(store.clone(), &bus, Saved::open("users", &views, users))
        .checkpoints(InModelFile(views.join("users.json")))
        .start()?;
    let order_view = project(store.clone(), &bus, Saved::open("orders", &views, orders))
        .checkpoints(InModelFile(views.join("orders.json")))
        .start()?;

    let (orders_for_saga, payments_for_saga) = (order_repo.clone(), payment_repo.clone());
    let checkout = saga(store.clone(), &bus, saga_store.clone(), CheckoutSaga)
        .clock(clock.clone())
        .checkpoints(store.checkpoints())
        .dispatch(move |meta, command| {
            dispatch(&orders_for_saga, &payments_for_saga, meta, command)
        })
        .start()?;

    // Catch up with what earlier runs left, then shop.
    let settle = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let head = store.head();
            let caught_up = head.is_none_or(|h| {
                user_view.wait_for(h, Duration::from_secs(60))
                    && order_view.wait_for(h, Duration::from_secs(60))
                    && checkout.wait_for(h, Duration::from_secs(60))
            });
            std::thread::sleep(Duration::from_millis(20));
            if caught_up && store.head() == head {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the shop did not settle ({what})"
            );
        }
    };
    settle("resuming");
    let first_order =
        order_view.read(|m| m.model.orders.keys().next_back().copied().unwrap_or(0)) + 1;
    println!(
        "resumed: {} users, {} orders, {} saga instances; next order {first_order}",
        user_view.read(|m| m.model.users.len()),
        order_view.read(|m| m.model.orders.len()),
        checkout.instances(),
    );

    // UserService and OrderService.
    let started = Instant::now();
    for u in 0..10 {
        let id = format!("u{u}");
        match user_repo.execute(
            &id,
            (id.clone(), format!("{id}@example.com"), format!("User {u}")),
        ) {
            Ok(_) | Err(CommandError::Rejected(_)) => {} // registered by an earlier run
            Err(e) => return Err(e.into()),
        }
    }
    for order in first_order..first_order + args.orders {
        let items = vec![
            Item {
                product: format!("p{}", order % 17),
                quantity: 1 + (order % 3) as u32,
                price_cents: 250 + order % 1_000,
            },
            Item {
                product: "gift-wrap".into(),
                quantity: 1,
                price_cents: 199,
            },
        ];
        order_repo.execute(
            &order.to_string(),
            OrderCommand::Place {
                order,
                customer: format!("u{}", order % 10),
                items,
            },
        )?;
    }
    settle("shopping");
    let elapsed = started.elapsed();

    // Check the resumed read models against a rebuild from the whole store.
    let fresh_users = project(store.clone(), &bus, Saved::fresh("rebuilt-users", users)).start()?;
    let fresh_orders =
        project(store.clone(), &bus, Saved::fresh("rebuilt-orders", orders)).start()?;
    let head = store.head().expect("events");
    assert!(
        fresh_users.wait_for(head, Duration::from_secs(120))
            && fresh_orders.wait_for(head, Duration::from_secs(120))
    );
    let same = user_view.read(|a| fresh_users.read(|b| a.model == b.model))
        && order_view.read(|a| fresh_orders.read(|b| a.model == b.model));
    assert!(same, "a resumed read model differs from a rebuild");

    let counts = order_view.ask(&CountByStatus);
    println!(
        "{} orders placed in {:.2?} ({:.0} orders/s end to end)",
        args.orders,
        elapsed,
        args.orders as f64 / elapsed.as_secs_f64()
    );
    println!("orders by status: {counts:?}");
    println!(
        "users: {:?}",
        user_view.read(|m| m
            .model
            .users
            .iter()
            .map(|(u, (_, n))| (u.clone(), *n))
            .collect::<Vec<_>>())
    );
    println!("emails sent this run: {}", emails.load(Ordering::Relaxed));
    println!("read models identical to a rebuild from the store: {same}");
    println!(
        "events in the store: {}, saga instances: {}",
        head.0 + 1,
        checkout.instances()
    );

    // Stop, save the models with their positions, keep shop time.
    user_view.stop();
    order_view.stop();
    checkout.stop();
    user_view.read(Saved::save)?;
    order_view.read(Saved::save)?;
    std::fs::write(&clock_file, clock_now_ms(&clock).to_string())?;
    drop((fresh_users, fresh_orders));
    feed.stop();
    Ok(())
}

fn clock_now_ms(clock: &ManualClock) -> u64 {
    use ringbus::resilience::Clock;
    clock.now().as_millis() as u64
}
