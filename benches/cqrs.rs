//! The CQRS repository (issue 12, B6 targets C1 and C3).
//!
//! * **C1** `cqrs/execute_cached`: `Repository::execute` on cached aggregates
//!   of at most 10 events, `InMemoryStore`, one thread. The commands go round
//!   robin over 1 000 aggregates until each has 10 events, then to 1 000 fresh
//!   ones (a fresh store per sample). Each command: cache look-up and slot
//!   lock, a catch-up read that finds nothing, `handle`, one event built with
//!   `Event::typed` and derived ids, `append` with `Exact`, `apply`. Target
//!   ≥ 300 000 commands/s.
//! * **C3** `cqrs/load_10k`: `Repository::load` of an aggregate whose stream
//!   has 10 000 events — full replay, and with a snapshot every 1 000 events
//!   (snapshot at 10 000, nothing after it; and the worst case, 10 999 events:
//!   999 after it). Targets ≤ 5 ms full, ≤ 0.5 ms with snapshots.
//!
//! * **C4** `cqrs/projection_catch_up_1m`: a projection catching up over
//!   1 000 000 stored events of a typed payload (`ItemAdded`, MessagePack in
//!   the frames, decoded into the struct) in a `FileStore` (page cache), from
//!   `start` to `wait_for(head)`. Target ≥ 500 000 events/s.
//! * **C5** `cqrs/saga_orders`: the checkout saga's flow on `InMemoryStore`:
//!   `order.placed` → the saga records a step and sends `RequestPayment`, whose
//!   dispatch appends `payment.processed` → the saga records a step and sends
//!   `ConfirmOrder`. Orders per second, from the first order appended to the
//!   last confirmation sent. Target ≥ 50 000 orders/s.
//!
//! `cargo bench --bench cqrs`. Criterion reports commands per second (C1),
//! time per load (C3), events per second (C4) and orders per second (C5).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringbus::cqrs::{
    project, saga, Aggregate, ProcessManager, Projection, Repository, SagaContext, Snapshotted,
};
use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, InMemoryStore, Position, Recorded,
    StoreOptions, StreamId,
};
use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
use serde::{Deserialize, Serialize};

/// A shopping cart: the counts of items.
#[derive(Default, Serialize, Deserialize)]
struct Cart {
    items: u64,
    cents: u64,
}

#[derive(Clone)]
struct AddItem {
    cents: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct ItemAdded {
    cents: u64,
}
ringbus::domain_event!(ItemAdded => "cart.item_added", source = "cart-service");

#[derive(Debug)]
struct TooMany;
impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many items")
    }
}
impl std::error::Error for TooMany {}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";
    type Command = AddItem;
    type Event = ItemAdded;
    type Error = TooMany;
    fn handle(&self, c: AddItem) -> Result<Vec<ItemAdded>, TooMany> {
        if self.items >= 1_000_000 {
            return Err(TooMany);
        }
        Ok(vec![ItemAdded { cents: c.cents }])
    }
    fn apply(&mut self, e: &ItemAdded) {
        self.items += 1;
        self.cents += e.cents;
    }
}

impl Snapshotted for Cart {}

const AGGREGATES: usize = 1_000;
const EVENTS_PER_AGGREGATE: usize = 10;

fn execute_cached(c: &mut Criterion) {
    let mut g = c.benchmark_group("cqrs");
    g.throughput(Throughput::Elements(1));
    // Ids for as many blocks of 1 000 aggregates as a sample may need.
    let ids: Vec<String> = (0..AGGREGATES * 200).map(|i| i.to_string()).collect();
    g.bench_function("execute_cached", |b| {
        b.iter_custom(|iters| {
            let carts = Repository::<Cart, _>::new(InMemoryStore::new()).cache(2 * AGGREGATES);
            let block = (AGGREGATES * EVENTS_PER_AGGREGATE) as u64;
            let start = Instant::now();
            for k in 0..iters {
                let (n, i) = (k / block, (k % block) as usize % AGGREGATES);
                let id = &ids[(n as usize * AGGREGATES + i) % ids.len()];
                black_box(carts.execute(id, AddItem { cents: 250 }).unwrap());
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn load_10k(c: &mut Criterion) {
    let mut g = c.benchmark_group("cqrs");
    g.sample_size(30);
    let store = Arc::new(InMemoryStore::new());
    let writer = Repository::<Cart, _>::new(store.clone())
        .cache(4)
        .snapshots(1_000);
    for _ in 0..10_000 {
        writer.execute("10k", AddItem { cents: 1 }).unwrap();
    }
    for _ in 0..10_999 {
        writer.execute("10999", AddItem { cents: 1 }).unwrap();
    }
    let replay = Repository::<Cart, _>::new(store.clone());
    let snapshots = Repository::<Cart, _>::new(store.clone()).snapshots(1_000);
    assert_eq!(replay.load("10k").unwrap().state.items, 10_000);
    assert_eq!(snapshots.load("10999").unwrap().state.items, 10_999);
    g.bench_function("load_10k/full_replay", |b| {
        b.iter(|| black_box(replay.load("10k").unwrap()))
    });
    g.bench_function("load_10k/snapshot_every_1000", |b| {
        b.iter(|| black_box(snapshots.load("10k").unwrap()))
    });
    g.bench_function("load_10999/snapshot_every_1000", |b| {
        b.iter(|| black_box(snapshots.load("10999").unwrap()))
    });
    g.finish();
}

/// C4's read model: totals per stream.
#[derive(Default)]
struct Totals(std::collections::HashMap<String, u64>);

impl Projection<ItemAdded> for Totals {
    fn name(&self) -> &str {
        "totals"
    }
    fn apply(&mut self, r: &Recorded<ItemAdded>) -> Result<(), HandlerError> {
        let stream = r.event.subject.as_ref().expect("a stream").as_str();
        match self.0.get_mut(stream) {
            Some(t) => *t += r.event.data.cents,
            None => {
                self.0.insert(stream.to_owned(), r.event.data.cents);
            }
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.0.clear();
    }
}

fn projection_catch_up(c: &mut Criterion) {
    const EVENTS: u64 = 1_000_000;
    let dir = std::env::temp_dir().join(format!("ringbus-bench-c4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(
        FileStore::<ItemAdded>::open(&dir, StoreOptions::default().durability(Durability::None))
            .unwrap(),
    );
    for a in 0..EVENTS / 100 {
        let s = StreamId::new(format!("cart-{}", a % 1_000)).unwrap();
        let events = (0..100)
            .map(|i| Event::typed(ItemAdded { cents: i }))
            .collect();
        store.append(&s, ExpectedVersion::Any, events).unwrap();
    }
    let bus = BusBuilder::<ItemAdded>::new().build().unwrap();
    let mut g = c.benchmark_group("cqrs");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("projection_catch_up_1m", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let view = project(store.clone(), &bus, Totals::default())
                    .start()
                    .unwrap();
                assert!(view.wait_for(Position(EVENTS - 1), Duration::from_secs(600)));
                total += start.elapsed();
                assert_eq!(view.read(|t| t.0.len()), 1_000);
            }
            total
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// C5's events: one enum for the flow's store.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Flow {
    Placed(u64),
    Paid(u64),
}

/// The checkout saga of the shop, reduced to its two steps.
struct Checkout;

impl ProcessManager<Flow> for Checkout {
    type State = u8;
    type Command = (bool, u64); // (confirm?, order)
    fn name(&self) -> &str {
        "checkout"
    }
    fn correlate(&self, r: &Recorded<Flow>) -> Option<String> {
        Some(match r.event.data {
            Flow::Placed(o) | Flow::Paid(o) => o.to_string(),
        })
    }
    fn starts(&self, r: &Recorded<Flow>) -> bool {
        matches!(r.event.data, Flow::Placed(_))
    }
    fn handle(
        &self,
        step: &mut u8,
        r: &Recorded<Flow>,
        cx: &mut SagaContext<(bool, u64)>,
    ) -> Result<(), HandlerError> {
        *step += 1;
        match r.event.data {
            Flow::Placed(o) => cx.send((false, o)),
            Flow::Paid(o) => {
                cx.send((true, o));
                cx.complete();
            }
        }
        Ok(())
    }
    fn on_deadline(
        &self,
        _: &mut u8,
        _: &str,
        _: &mut SagaContext<(bool, u64)>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn saga_orders(c: &mut Criterion) {
    const ORDERS: u64 = 20_000;
    let mut g = c.benchmark_group("cqrs");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ORDERS));
    g.bench_function("saga_orders", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let bus = BusBuilder::<Flow>::new().build().unwrap();
                let store = Arc::new(InMemoryStore::new());
                let _feed = store.publish_to(&bus);
                let confirmed = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let (payments, done) = (store.clone(), confirmed.clone());
                let checkout = saga(
                    store.clone(),
                    &bus,
                    Arc::new(InMemoryStore::new()),
                    Checkout,
                )
                .dispatch(move |_meta, (confirm, order)| {
                    if confirm {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        // The payment service answers at once.
                        let s = StreamId::new(format!("payment-{order}")).unwrap();
                        let paid = Event::new(
                            event_type!("payment.processed"),
                            source!("pay"),
                            Flow::Paid(order),
                        );
                        payments
                            .append(&s, ExpectedVersion::Any, vec![paid])
                            .unwrap();
                    }
                    Ok(())
                })
                .start()
                .unwrap();
                let start = Instant::now();
                for o in 0..ORDERS {
                    let s = StreamId::new(format!("order-{o}")).unwrap();
                    let placed = Event::new(
                        event_type!("order.placed"),
                        source!("shop"),
                        Flow::Placed(o),
                    );
                    store
                        .append(&s, ExpectedVersion::NoStream, vec![placed])
                        .unwrap();
                }
                while confirmed.load(std::sync::atomic::Ordering::Relaxed) < ORDERS {
                    std::thread::sleep(Duration::from_micros(100));
                }
                total += start.elapsed();
                checkout.stop();
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = execute_cached, load_10k, projection_catch_up, saga_orders
}
criterion_main!(benches);
