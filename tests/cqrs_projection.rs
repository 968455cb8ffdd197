//! Projections on catch-up subscriptions: added late they catch up and go
//! live, every event applied once; queries; rebuilds; a model that keeps its
//! checkpoint with its state resumes without repeating and ends identical to a
//! rebuild; failures stop at the event; panics do not poison the model.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ringbus::cqrs::{project, Projection, Query};
use ringbus::resilience::RetryPolicy;
use ringbus::store::checkpoint::CheckpointStore;
use ringbus::store::{
    EventStore, ExpectedVersion, InMemoryStore, Position, Recorded, Status, StreamId,
};
use ringbus::{event_type, source, Bus, BusBuilder, Event, HandlerError};

const DEADLINE: Duration = Duration::from_secs(60);

fn bus() -> Bus<u64> {
    BusBuilder::<u64>::new().capacity(1024).build().unwrap()
}

fn placed(amount: u64) -> Event<u64> {
    Event::new(event_type!("order.placed"), source!("shop"), amount)
}

fn viewed(n: u64) -> Event<u64> {
    Event::new(event_type!("page.viewed"), source!("web"), n)
}

fn stream(i: u64) -> StreamId {
    StreamId::new(format!("order-{i}")).unwrap()
}

/// Per stream: the number of orders and their total; the positions applied.
#[derive(Default, Debug, Clone, PartialEq)]
struct Orders {
    per_stream: BTreeMap<String, (u64, u64)>,
    applied: Vec<u64>,
}

impl Projection<u64> for Orders {
    fn name(&self) -> &str {
        "orders"
    }
    fn patterns(&self) -> &[&str] {
        &["order.*"]
    }
    fn apply(&mut self, r: &Recorded<u64>) -> Result<(), HandlerError> {
        let e = self
            .per_stream
            .entry(r.event.subject.as_ref().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += r.event.data;
        self.applied.push(r.position.0);
        Ok(())
    }
    fn reset(&mut self) {
        *self = Orders::default();
    }
}

struct TotalOf(u64);
impl Query<Orders> for TotalOf {
    type Output = u64;
    fn ask(&self, model: &Orders) -> u64 {
        model
            .per_stream
            .get(&format!("order-{}", self.0))
            .map_or(0, |e| e.1)
    }
}

#[test]
fn a_projection_added_after_100_000_events_catches_up_and_goes_live() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let history = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    for i in 0..history {
        store
            .append(
                &stream(i % 100),
                ExpectedVersion::Any,
                vec![placed(i), viewed(i)],
            )
            .unwrap();
    }
    let orders = project(store.clone(), &bus, Orders::default())
        .start()
        .unwrap();
    // Live appends while it catches up.
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            for i in history..history + 5_000 {
                store
                    .append(&stream(i % 100), ExpectedVersion::Any, vec![placed(i)])
                    .unwrap();
            }
        })
    };
    writer.join().unwrap();
    let head = store.head().unwrap();
    assert!(orders.wait_for(head, DEADLINE), "{:?}", orders.status());
    assert_eq!(orders.status(), Status::Live);
    let total = history + 5_000;
    orders.read(|m| {
        // Every order event once, in position order, no page views.
        assert_eq!(m.applied.len() as u64, total);
        assert!(m.applied.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m.per_stream.values().map(|e| e.0).sum::<u64>(), total);
    });
    let expected_7: u64 = (0..total).filter(|i| i % 100 == 7).sum();
    assert_eq!(orders.ask(&TotalOf(7)), expected_7);
    assert_eq!(orders.metrics().filtered, history);
    // Listed in the bus's metrics under its name, with no lag.
    let report = bus
        .metrics()
        .catch_ups
        .into_iter()
        .find(|c| c.name == "orders")
        .unwrap();
    assert_eq!((report.status, report.lag), (Status::Live, 0));
    orders.stop();
    feed.stop();
}

#[test]
fn rebuild_resets_the_model_and_replays_to_the_same_state() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    for i in 0..500 {
        store
            .append(&stream(i % 7), ExpectedVersion::Any, vec![placed(i)])
            .unwrap();
    }
    let orders = project(store.clone(), &bus, Orders::default())
        .start()
        .unwrap();
    let head = store.head().unwrap();
    assert!(orders.wait_for(head, DEADLINE));
    let before = orders.read(Orders::clone);
    orders.rebuild();
    // The replay empties the model first, then reaches the same state.
    let deadline = std::time::Instant::now() + DEADLINE;
    while orders.read(|m| m.applied.len()) != 500 || orders.metrics().delivered < 1_000 {
        assert!(std::time::Instant::now() < deadline, "replay");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(orders.read(Orders::clone), before);
    orders.stop();
    feed.stop();
}

/// A "database" holding a model and its checkpoint, written together.
#[derive(Default)]
struct Db {
    saved: Mutex<Option<(Orders, Position)>>,
}

/// The model writes itself and its position to the Db in one step.
struct Persistent {
    model: Orders,
    db: Arc<Db>,
}

impl Projection<u64> for Persistent {
    fn name(&self) -> &str {
        "persistent"
    }
    fn patterns(&self) -> &[&str] {
        &["order.*"]
    }
    fn apply(&mut self, r: &Recorded<u64>) -> Result<(), HandlerError> {
        self.model.apply(r)?;
        // Saved with its position in one step, as one transaction would.
        *self.db.saved.lock().unwrap() = Some((self.model.clone(), r.position));
        Ok(())
    }
    fn reset(&mut self) {
        self.model.reset();
        *self.db.saved.lock().unwrap() = None;
    }
}

/// The checkpoint is whatever position the Db holds with the model.
struct DbCheckpoints(Arc<Db>);
impl CheckpointStore for DbCheckpoints {
    fn load(&self, _name: &str) -> io::Result<Option<Position>> {
        Ok(self.0.saved.lock().unwrap().as_ref().map(|s| s.1))
    }
    fn save(&self, _name: &str, _position: Position) -> io::Result<()> {
        Ok(()) // already saved with the model
    }
    fn clear(&self, _name: &str) -> io::Result<()> {
        *self.0.saved.lock().unwrap() = None;
        Ok(())
    }
}

#[test]
fn a_model_saving_its_checkpoint_with_its_state_resumes_without_repeating() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let db = Arc::new(Db::default());
    let append = |from: u64, to: u64| {
        for i in from..to {
            store
                .append(
                    &stream(i % 5),
                    ExpectedVersion::Any,
                    vec![placed(i), viewed(i)],
                )
                .unwrap();
        }
    };
    append(0, 300);
    let start = |db: &Arc<Db>| {
        let restored = db
            .saved
            .lock()
            .unwrap()
            .clone()
            .map(|s| s.0)
            .unwrap_or_default();
        project(
            store.clone(),
            &bus,
            Persistent {
                model: restored,
                db: db.clone(),
            },
        )
        .checkpoints(DbCheckpoints(db.clone()))
        .start()
        .unwrap()
    };
    let first = start(&db);
    assert!(first.wait_for(store.head().unwrap(), DEADLINE));
    first.stop();
    drop(first);
    append(300, 600);
    // "Restart the process": the model comes back from the Db with its position.
    let second = start(&db);
    assert!(second.wait_for(store.head().unwrap(), DEADLINE));
    let resumed = second.read(|p| p.model.clone());
    second.stop();
    // Nothing applied twice, nothing missed: identical to a fresh rebuild.
    let fresh = project(store.clone(), &bus, Orders::default())
        .start()
        .unwrap();
    assert!(fresh.wait_for(store.head().unwrap(), DEADLINE));
    assert_eq!(resumed, fresh.read(Orders::clone));
    assert_eq!(resumed.applied.len(), 600);
    fresh.stop();
    feed.stop();
}

/// Fails at order 3 (transiently while `broken`), panics at order 5 once.
struct Flaky {
    seen: Vec<u64>,
    broken: Arc<Mutex<bool>>,
    panicked: bool,
}

impl Projection<u64> for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn apply(&mut self, r: &Recorded<u64>) -> Result<(), HandlerError> {
        if r.event.data == 3 && *self.broken.lock().unwrap() {
            return Err(HandlerError::transient("read model offline"));
        }
        if r.event.data == 5 && !self.panicked {
            self.panicked = true;
            panic!("bug in apply");
        }
        self.seen.push(r.event.data);
        Ok(())
    }
    fn reset(&mut self) {
        self.seen.clear();
    }
}

#[test]
fn a_failing_apply_stops_at_its_event_and_a_panic_does_not_poison_the_model() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    for i in 0..8 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![placed(i)])
            .unwrap();
    }
    let broken = Arc::new(Mutex::new(true));
    let flaky = project(
        store.clone(),
        &bus,
        Flaky {
            seen: vec![],
            broken: broken.clone(),
            panicked: false,
        },
    )
    .retry(RetryPolicy::immediate(2))
    .start()
    .unwrap();
    let failed = |p: u64| {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            match flaky.status() {
                Status::Failed { position, .. } => {
                    assert_eq!(position, Position(p));
                    break;
                }
                s => assert!(std::time::Instant::now() < deadline, "{s:?}"),
            }
            thread::sleep(Duration::from_millis(1));
        }
    };
    failed(3);
    assert_eq!(flaky.read(|f| f.seen.clone()), [0, 1, 2]);
    assert!(!flaky.wait_for(Position(7), Duration::from_millis(10)));
    *broken.lock().unwrap() = false;
    flaky.restart();
    failed(5); // the panic stops it too
               // The model is still readable after the panic under its write lock.
    assert_eq!(flaky.read(|f| f.seen.clone()), [0, 1, 2, 3, 4]);
    flaky.restart();
    assert!(flaky.wait_for(Position(7), DEADLINE));
    assert_eq!(flaky.read(|f| f.seen.clone()), [0, 1, 2, 3, 4, 5, 6, 7]);
    flaky.stop();
    feed.stop();
}
