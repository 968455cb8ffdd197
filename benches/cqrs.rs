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
//! `cargo bench --bench cqrs`. Criterion reports commands per second (C1) and
//! time per load (C3).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringbus::cqrs::{Aggregate, Repository, Snapshotted};
use ringbus::store::InMemoryStore;
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

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = execute_cached, load_10k
}
criterion_main!(benches);
