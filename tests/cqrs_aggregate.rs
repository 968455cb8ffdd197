//! CQRS part B1 (issue 12): aggregates, commands, the repository and the
//! given/when/then harness, on a small shop order and a counter.
//!
//! What a user relies on: the harness catches wrong events; the repository's
//! state is the fold of the stream whether it came from a snapshot, the cache
//! or a replay; a conflict loses no update and, without retries, says so; a
//! rejected command appends nothing; a command sent twice with the same id
//! appends once; a snapshot that is incompatible or cannot be saved changes
//! nothing but speed.

use std::io;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use ringbus::codec::EventRef;
use ringbus::cqrs::{
    Aggregate, AggregateTest, CommandError, CommandId, CommandMeta, LoadError, Repository,
    Snapshotted, StoreError,
};
use ringbus::store::snapshot::{Snapshot, SnapshotStore};
use ringbus::store::upcast::{UpcastErrorKind, Upcasters};
use ringbus::store::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, FileStore, InMemoryStore, Position,
    ReadError, Recorded, RejectReason, StoreOptions, StreamId,
};
use ringbus::{event_type, source, DomainEvent, Event, EventType, Source};
use serde::{Deserialize, Serialize};

// ---- the order: Place / Pay / Cancel ------------------------------------------

#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    customer: Option<String>,
    total_cents: u64,
    paid_cents: u64,
    cancelled: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum OrderCommand {
    Place { customer: String, total_cents: u64 },
    Pay { cents: u64 },
    Cancel { reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    Placed { customer: String, total_cents: u64 },
    Paid { cents: u64 },
    FullyPaid,
    Cancelled { reason: String },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> EventType {
        match self {
            OrderEvent::Placed { .. } => event_type!("order.placed"),
            OrderEvent::Paid { .. } => event_type!("order.paid"),
            OrderEvent::FullyPaid => event_type!("order.fully_paid"),
            OrderEvent::Cancelled { .. } => event_type!("order.cancelled"),
        }
    }
    fn source(&self) -> Source {
        source!("order-service")
    }
    fn version(&self) -> u32 {
        2
    }
    fn subject(&self) -> Option<ringbus::Subject> {
        // Not the stream id: the repository must set the subject to the stream.
        Some("something-else".into())
    }
}

#[derive(Debug, PartialEq)]
enum OrderError {
    AlreadyPlaced,
    NotPlaced,
    Cancelled,
    Overpaid { open_cents: u64 },
    AlreadyPaid,
    ZeroAmount,
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for OrderError {}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.customer.is_some();
        match command {
            OrderCommand::Place { .. } if placed => Err(OrderError::AlreadyPlaced),
            OrderCommand::Place { total_cents: 0, .. } => Err(OrderError::ZeroAmount),
            OrderCommand::Place {
                customer,
                total_cents,
            } => Ok(vec![OrderEvent::Placed {
                customer,
                total_cents,
            }]),
            _ if !placed => Err(OrderError::NotPlaced),
            _ if self.cancelled => Err(OrderError::Cancelled),
            OrderCommand::Pay { cents: 0 } => Err(OrderError::ZeroAmount),
            OrderCommand::Pay { cents } => {
                let open_cents = self.total_cents - self.paid_cents;
                if cents > open_cents {
                    return Err(OrderError::Overpaid { open_cents });
                }
                let mut events = vec![OrderEvent::Paid { cents }];
                if cents == open_cents {
                    events.push(OrderEvent::FullyPaid);
                }
                Ok(events)
            }
            OrderCommand::Cancel { .. } if self.paid_cents == self.total_cents => {
                Err(OrderError::AlreadyPaid)
            }
            OrderCommand::Cancel { reason } => Ok(vec![OrderEvent::Cancelled { reason }]),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed {
                customer,
                total_cents,
            } => {
                self.customer = Some(customer.clone());
                self.total_cents = *total_cents;
            }
            OrderEvent::Paid { cents } => self.paid_cents += cents,
            OrderEvent::FullyPaid => {}
            OrderEvent::Cancelled { .. } => self.cancelled = true,
        }
    }
}

impl Snapshotted for Order {
    const SCHEMA: u32 = 3;
}

fn place(total_cents: u64) -> OrderCommand {
    OrderCommand::Place {
        customer: "ada".into(),
        total_cents,
    }
}

fn placed(total_cents: u64) -> OrderEvent {
    OrderEvent::Placed {
        customer: "ada".into(),
        total_cents,
    }
}

fn pay(cents: u64) -> OrderCommand {
    OrderCommand::Pay { cents }
}

fn stream(id: &str) -> StreamId {
    StreamId::new(format!("order-{id}")).unwrap()
}

// ---- the counter: for contention ------------------------------------------------

#[derive(Default, Debug, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Added {
    n: u64,
}
ringbus::domain_event!(Added => "counter.added", source = "counter");

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    /// How many `Added { n: 1 }` events to produce.
    type Command = usize;
    type Event = Added;
    type Error = Never;
    fn handle(&self, count: usize) -> Result<Vec<Added>, Never> {
        Ok(vec![Added { n: 1 }; count])
    }
    fn apply(&mut self, e: &Added) {
        self.value += e.n;
    }
}

impl Snapshotted for Counter {}

// ---- a store wrapper that interferes ---------------------------------------------

/// What [`Meddling`] does on the next appends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Meddle {
    Nothing,
    /// Another writer appends one event to the stream first, this many times.
    Interfere(u32),
    /// The batch is appended twice; the second outcome is returned (as if a
    /// concurrent execution of the same command had won).
    AppendTwice,
    /// The next append fails with an I/O error after writing the batch (the
    /// worst case: the events are there, the caller does not know it).
    WriteThenFail,
}

/// Snapshot storage that always fails.
#[derive(Debug)]
struct BrokenSnapshots {
    saves: AtomicU32,
}

impl SnapshotStore for BrokenSnapshots {
    fn save(&self, _: Snapshot) -> io::Result<()> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        Err(io::Error::other("snapshot disk full"))
    }
    fn load(&self, _: &StreamId) -> io::Result<Option<Snapshot>> {
        Err(io::Error::other("snapshot disk gone"))
    }
}

/// An in-memory store with a hand on its appends and, optionally, broken
/// snapshot storage.
struct Meddling {
    inner: InMemoryStore<OrderEvent>,
    meddle: Mutex<Meddle>,
    broken: Option<BrokenSnapshots>,
}

impl Meddling {
    fn new() -> Self {
        Meddling {
            inner: InMemoryStore::new(),
            meddle: Mutex::new(Meddle::Nothing),
            broken: None,
        }
    }
    fn set(&self, m: Meddle) {
        *self.meddle.lock().unwrap() = m;
    }
}

impl EventStore<OrderEvent> for Meddling {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<Event<OrderEvent>>,
    ) -> Result<AppendOutcome, AppendError<OrderEvent>> {
        let m = *self.meddle.lock().unwrap();
        match m {
            Meddle::Nothing => {}
            Meddle::Interfere(n) => {
                self.set(if n > 1 {
                    Meddle::Interfere(n - 1)
                } else {
                    Meddle::Nothing
                });
                let other =
                    Event::typed(OrderEvent::Paid { cents: 1 }).with_subject(stream.clone());
                self.inner
                    .append(stream, ExpectedVersion::Any, vec![other])
                    .unwrap();
            }
            Meddle::WriteThenFail => {
                self.set(Meddle::Nothing);
                let stored = self.inner.append(stream, expected, events.clone());
                assert!(stored.is_ok());
                return Err(AppendError::Io {
                    error: io::Error::other("fsync failed"),
                    events,
                });
            }
            Meddle::AppendTwice => {
                self.set(Meddle::Nothing);
                let first = self.inner.append(stream, expected, events.clone())?;
                assert!(!first.duplicate);
            }
        }
        self.inner.append(stream, expected, events)
    }
    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Recorded<OrderEvent>>, ReadError> {
        self.inner.read_stream(stream, from_version, max)
    }
    fn read_stream_backward(
        &self,
        stream: &StreamId,
        max: usize,
    ) -> Result<Vec<Recorded<OrderEvent>>, ReadError> {
        self.inner.read_stream_backward(stream, max)
    }
    fn read_all(&self, from: Position, max: usize) -> Result<Vec<Recorded<OrderEvent>>, ReadError> {
        self.inner.read_all(from, max)
    }
    fn scan_all(
        &self,
        from: Position,
        f: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Position>, ReadError> {
        self.inner.scan_all(from, f)
    }
    fn stream_version(&self, stream: &StreamId) -> Result<u64, ReadError> {
        self.inner.stream_version(stream)
    }
    fn head(&self) -> Option<Position> {
        self.inner.head()
    }
    fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        self.inner.wait_past(after, timeout)
    }
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        match &self.broken {
            Some(b) => Some(b),
            None => self.inner.snapshots(),
        }
    }
}

fn payloads(store: &impl EventStore<OrderEvent>, id: &str) -> Vec<OrderEvent> {
    store
        .read_stream(&stream(id), 1, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| r.event.data)
        .collect()
}

// ---- the harness ------------------------------------------------------------------

#[test]
fn harness_order_rules() {
    AggregateTest::<Order>::given_none()
        .when(place(500))
        .then([placed(500)]);
    AggregateTest::<Order>::given_none()
        .when(place(0))
        .then_err(|e| *e == OrderError::ZeroAmount);
    AggregateTest::<Order>::given([placed(500)])
        .when(place(500))
        .then_err(|e| *e == OrderError::AlreadyPlaced);
    AggregateTest::<Order>::given_none()
        .when(pay(1))
        .then_err(|e| *e == OrderError::NotPlaced);
    let state = AggregateTest::<Order>::given([placed(500), OrderEvent::Paid { cents: 200 }])
        .when(pay(300))
        .then([OrderEvent::Paid { cents: 300 }, OrderEvent::FullyPaid]);
    assert_eq!(state.paid_cents, 500);
    let err = AggregateTest::<Order>::given([placed(500), OrderEvent::Paid { cents: 200 }])
        .when(pay(301))
        .then_err(|e| matches!(e, OrderError::Overpaid { .. }));
    assert_eq!(err, OrderError::Overpaid { open_cents: 300 });
    AggregateTest::<Order>::given([
        placed(500),
        OrderEvent::Paid { cents: 500 },
        OrderEvent::FullyPaid,
    ])
    .when(OrderCommand::Cancel {
        reason: "late".into(),
    })
    .then_err(|e| *e == OrderError::AlreadyPaid);
    AggregateTest::<Order>::given([placed(500), OrderEvent::Cancelled { reason: "x".into() }])
        .when(pay(5))
        .then_err(|e| *e == OrderError::Cancelled);
}

#[test]
#[should_panic(expected = "first difference at index 1")]
fn harness_then_panics_on_other_events() {
    AggregateTest::<Order>::given([placed(500)])
        .when(pay(500))
        .then([
            OrderEvent::Paid { cents: 500 },
            OrderEvent::Cancelled {
                reason: "no".into(),
            },
        ]);
}

#[test]
#[should_panic(expected = "first difference at index 1")]
fn harness_then_panics_on_missing_events() {
    AggregateTest::<Order>::given([placed(500)])
        .when(pay(500))
        .then([OrderEvent::Paid { cents: 500 }]);
}

#[test]
#[should_panic(expected = "but the command was rejected: NotPlaced")]
fn harness_then_panics_on_rejection() {
    AggregateTest::<Order>::given_none().when(pay(1)).then([]);
}

#[test]
#[should_panic(expected = "expected a rejection, but the command produced")]
fn harness_then_err_panics_on_events() {
    AggregateTest::<Order>::given_none()
        .when(place(5))
        .then_err(|_| true);
}

#[test]
#[should_panic(expected = "error the matcher does not accept: AlreadyPlaced")]
fn harness_then_err_panics_on_another_error() {
    AggregateTest::<Order>::given([placed(5)])
        .when(place(5))
        .then_err(|e| *e == OrderError::NotPlaced);
}

// ---- the repository: envelopes ------------------------------------------------------

#[test]
fn events_carry_type_ids_causation_correlation_and_the_stream_as_subject() {
    let orders = Repository::<Order, _>::new(InMemoryStore::new());
    let done = orders.execute("7", place(500)).unwrap();
    assert_eq!((done.version, done.duplicate, done.attempts), (1, false, 1));
    let flow = Event::new(event_type!("cart.checked_out"), source!("cart"), ());
    let meta = CommandMeta::new().correlated_with(&flow);
    let paid = orders.execute_with("7", meta, pay(500)).unwrap();
    assert_eq!(
        paid.events,
        [OrderEvent::Paid { cents: 500 }, OrderEvent::FullyPaid]
    );
    assert_eq!(paid.command_id, meta.id());

    let stored = orders.store().read_stream(&stream("7"), 1, 10).unwrap();
    assert_eq!(stored.len(), 3);
    let first = &stored[0].event;
    assert_eq!(first.event_type.name(), "order.placed");
    assert_eq!(first.source.name(), "order-service");
    assert_eq!(first.version, 2);
    assert_eq!(first.subject.as_ref().unwrap().as_str(), "order-7");
    assert_eq!(first.id, done.command_id.event_id(0));
    assert_eq!(first.causation_id, Some(done.command_id.as_event_id()));
    // Without a correlation id the command starts its flow.
    assert_eq!(first.correlation_id, Some(done.command_id.as_event_id()));
    for (i, r) in stored[1..].iter().enumerate() {
        assert_eq!(r.event.id, meta.id().event_id(i as u32));
        assert_eq!(r.event.causation_id, Some(meta.id().as_event_id()));
        assert_eq!(r.event.correlation_id, Some(flow.id));
    }
}

#[test]
fn an_id_that_makes_no_stream_id_is_a_typed_error() {
    let orders = Repository::<Order, _>::new(InMemoryStore::new());
    assert!(matches!(
        orders.execute("a\nb", place(5)),
        Err(CommandError::InvalidId(_))
    ));
    assert!(matches!(
        orders.load(&"x".repeat(300)),
        Err(LoadError::InvalidId(_))
    ));
    assert_eq!(orders.stream_id("7").unwrap().as_str(), "order-7");
}

#[test]
fn load_of_a_new_aggregate_is_the_default_at_version_0() {
    let orders = Repository::<Order, _>::new(InMemoryStore::new());
    let loaded = orders.load("nobody").unwrap();
    assert_eq!((loaded.state, loaded.version), (Order::default(), 0));
}

// ---- rejection, conflicts -----------------------------------------------------------

#[test]
fn a_rejected_command_appends_nothing() {
    for cached in [false, true] {
        let store = Arc::new(InMemoryStore::new());
        let mut orders = Repository::<Order, _>::new(store.clone());
        if cached {
            orders = orders.cache(8);
        }
        orders.execute("1", place(100)).unwrap();
        let head = store.head();
        let err = orders.execute("1", pay(101)).unwrap_err();
        assert!(matches!(
            err,
            CommandError::Rejected(OrderError::Overpaid { open_cents: 100 })
        ));
        assert_eq!(
            err.to_string(),
            "command rejected: Overpaid { open_cents: 100 }"
        );
        assert_eq!(store.head(), head);
        assert_eq!(store.stream_version(&stream("1")).unwrap(), 1);
        // The aggregate is still usable.
        assert_eq!(orders.execute("1", pay(100)).unwrap().version, 3);
    }
}

#[test]
fn a_conflict_without_retry_is_returned_and_appends_nothing() {
    let orders = Repository::<Order, _>::new(Meddling::new());
    orders.execute("1", place(100)).unwrap();
    orders.store().set(Meddle::Interfere(1));
    let err = orders.execute("1", pay(10)).unwrap_err();
    assert!(
        matches!(err, CommandError::Conflict { attempts: 1 }),
        "{err:?}"
    );
    // Only the other writer's event came in.
    assert_eq!(
        payloads(orders.store(), "1"),
        [placed(100), OrderEvent::Paid { cents: 1 }]
    );
}

#[test]
fn a_conflict_is_retried_on_the_new_state() {
    for cached in [false, true] {
        let mut orders = Repository::<Order, _>::new(Meddling::new()).retry_on_conflict(3);
        if cached {
            orders = orders.cache(8);
        }
        orders.execute("1", place(100)).unwrap();
        orders.store().set(Meddle::Interfere(2));
        // Decided on 99 open cents after the two interfering payments: fully paid.
        let done = orders.execute("1", pay(98)).unwrap();
        assert_eq!(done.attempts, 3);
        assert_eq!(
            done.events,
            [OrderEvent::Paid { cents: 98 }, OrderEvent::FullyPaid]
        );
        assert_eq!(done.version, 5);

        orders.execute("2", place(100)).unwrap();
        orders.store().set(Meddle::Interfere(3));
        let err = orders.execute("2", pay(10));
        assert!(
            matches!(err, Err(CommandError::Conflict { attempts: 3 })),
            "{err:?}"
        );
        assert_eq!(
            payloads(orders.store(), "2"),
            [
                placed(100),
                OrderEvent::Paid { cents: 1 },
                OrderEvent::Paid { cents: 1 },
                OrderEvent::Paid { cents: 1 }
            ]
        );
    }
}

/// 8 threads × `per_thread` commands on one counter, through `repos[t % len]`:
/// the final version and value are the number of commands, each command's
/// events are there once. Returns the attempts that were retries.
fn hammer(repos: &[Repository<Counter, Arc<InMemoryStore<Added>>>], per_thread: usize) -> u32 {
    const THREADS: usize = 8;
    let barrier = Barrier::new(THREADS);
    let retried = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (repo, barrier, retried) = (&repos[t % repos.len()], &barrier, &retried);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    let done = repo.execute("hot", 1).unwrap();
                    assert!(!done.duplicate);
                    retried.fetch_add(done.attempts - 1, Ordering::Relaxed);
                }
            });
        }
    });
    let total = (THREADS * per_thread) as u64;
    let loaded = repos[0].load("hot").unwrap();
    assert_eq!((loaded.version, loaded.state.value), (total, total));
    let events = repos[0]
        .store()
        .read_stream(&StreamId::new("counter-hot").unwrap(), 1, usize::MAX)
        .unwrap();
    let causes: std::collections::HashSet<_> =
        events.iter().map(|r| r.event.causation_id).collect();
    assert_eq!(causes.len() as u64, total, "one command, one event");
    retried.load(Ordering::Relaxed)
}

/// The issue's 8 threads × 10 000 commands on one aggregate (the same count
/// with and without debug assertions: about 3 s unoptimised).
#[test]
fn no_lost_update_under_contention() {
    const PER_THREAD: usize = 10_000;
    let store = || Arc::new(InMemoryStore::new());
    let counters = |store: &Arc<InMemoryStore<Added>>| {
        Repository::<Counter, _>::new(store.clone()).retry_on_conflict(u32::MAX)
    };
    // One repository per thread, as eight processes would have, each with
    // its own cache: they conflict with each other and retry on what came in.
    let shared = store();
    let eight: Vec<_> = (0..8).map(|_| counters(&shared).cache(4)).collect();
    let retried = hammer(&eight, PER_THREAD);
    println!("8 cached repositories: {retried} retried attempts");
    // One cached repository shared by the threads: its commands on the
    // aggregate take turns.
    let retried = hammer(&[counters(&store()).cache(4)], PER_THREAD);
    assert_eq!(
        retried, 0,
        "one repository's commands on one aggregate take turns"
    );
    // One repository without a cache: every command replays the stream
    // (quadratic, hence 8 × 300), and they conflict.
    let retried = hammer(&[counters(&store())], 300);
    println!("uncached repository: {retried} retried attempts");
}

// ---- the same command twice ----------------------------------------------------------

#[test]
fn the_same_command_id_twice_appends_once() {
    for cached in [false, true] {
        let store = Arc::new(InMemoryStore::new());
        let mut orders = Repository::<Order, _>::new(store.clone());
        if cached {
            orders = orders.cache(8);
        }
        orders.execute("1", place(100)).unwrap();
        let meta = CommandMeta::with_id(CommandId::new());
        let first = orders.execute_with("1", meta, pay(100)).unwrap();
        // Later commands in between; then a saga re-sends after a crash.
        let other = orders.execute("1", OrderCommand::Cancel { reason: "x".into() });
        assert!(matches!(
            other,
            Err(CommandError::Rejected(OrderError::AlreadyPaid))
        ));
        let again = orders.execute_with("1", meta, pay(100)).unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate, "cached={cached}");
        assert_eq!(again.events, first.events);
        assert_eq!(again.version, first.version);
        assert_eq!(
            payloads(orders.store(), "1"),
            [
                placed(100),
                OrderEvent::Paid { cents: 100 },
                OrderEvent::FullyPaid
            ]
        );
        // A fresh repository (a restarted process) recognises it too.
        let restarted = Repository::<Order, _>::new(store.clone());
        assert!(
            restarted
                .execute_with("1", meta, pay(100))
                .unwrap()
                .duplicate
        );
        assert_eq!(orders.store().stream_version(&stream("1")).unwrap(), 3);
    }
}

#[test]
fn a_racing_duplicate_is_recognised_by_the_store() {
    let orders = Repository::<Order, _>::new(Meddling::new()).cache(4);
    orders.execute("1", place(100)).unwrap();
    orders.store().set(Meddle::AppendTwice);
    let done = orders.execute("1", pay(40)).unwrap();
    assert!(done.duplicate);
    assert_eq!(done.events, [OrderEvent::Paid { cents: 40 }]);
    assert_eq!(
        payloads(orders.store(), "1"),
        [placed(100), OrderEvent::Paid { cents: 40 }]
    );
    // The cached state is right afterwards (40 paid, 60 open).
    let err = orders.execute("1", pay(61)).unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(OrderError::Overpaid { open_cents: 60 })
    ));
}

#[test]
fn a_retry_is_recognised_within_the_window_only() {
    let orders = Repository::<Counter, _>::new(InMemoryStore::new()).dedup_window(5);
    let meta = CommandMeta::new();
    orders.execute_with("c", meta, 2).unwrap();
    orders.execute("c", 3).unwrap(); // versions 3..=5: the command's last event (2) is in the last 5
    assert!(orders.execute_with("c", meta, 2).unwrap().duplicate);
    orders.execute("c", 1).unwrap(); // version 6: the last 5 are 2..=6
    assert!(orders.execute_with("c", meta, 2).unwrap().duplicate);
    orders.execute("c", 1).unwrap(); // version 7: event 2 is out of the last 5
    let again = orders.execute_with("c", meta, 2).unwrap();
    assert!(
        !again.duplicate,
        "beyond the window a command is decided again"
    );
    assert_eq!(again.version, 9);
    // With the window off, nothing is recognised.
    let off = Repository::<Counter, _>::new(InMemoryStore::new()).dedup_window(0);
    off.execute_with("c", meta, 1).unwrap();
    assert!(!off.execute_with("c", meta, 1).unwrap().duplicate);
}

#[test]
fn a_retry_is_recognised_after_a_load_from_a_snapshot() {
    let store = Arc::new(InMemoryStore::new());
    let orders = Repository::<Order, _>::new(store.clone()).snapshots(1);
    orders.execute("1", place(100)).unwrap();
    let meta = CommandMeta::new();
    orders.execute_with("1", meta, pay(30)).unwrap();
    let snapshot = store
        .snapshots()
        .unwrap()
        .load(&stream("1"))
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 2);
    // The command's events are all before the snapshot's version: the
    // repository reads their envelopes back to recognise the retry.
    let restarted = Repository::<Order, _>::new(store.clone()).snapshots(1);
    let again = restarted.execute_with("1", meta, pay(30)).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, [OrderEvent::Paid { cents: 30 }]);
    assert_eq!(store.stream_version(&stream("1")).unwrap(), 2);
}

// ---- snapshots ----------------------------------------------------------------------

#[test]
fn snapshots_are_saved_every_n_events_and_used() {
    let store = Arc::new(InMemoryStore::new());
    let counters = Repository::<Counter, _>::new(store.clone()).snapshots(10);
    let id = StreamId::new("counter-c").unwrap();
    for _ in 0..9 {
        counters.execute("c", 1).unwrap();
    }
    assert!(store.snapshots().unwrap().load(&id).unwrap().is_none());
    counters.execute("c", 3).unwrap(); // 9 → 12 crosses 10
    let s = store.snapshots().unwrap().load(&id).unwrap().unwrap();
    assert_eq!((s.version, s.schema_version), (12, 1));
    assert_eq!(s.decode::<Counter>(1).unwrap().value, 12);

    // The snapshot is what loading starts from: a doctored one (value 1 000 at
    // version 12) shows through, and the events after it are applied on top.
    let doctored = Snapshot::encode(id.clone(), 12, 1, &Counter { value: 1_000 }).unwrap();
    store.snapshots().unwrap().save(doctored).unwrap();
    counters.execute("c", 1).unwrap();
    assert_eq!(counters.load("c").unwrap().state.value, 1_001);
    // Without snapshots, the events alone.
    let plain = Repository::<Counter, _>::new(store.clone());
    assert_eq!(plain.load("c").unwrap().state.value, 13);
}

#[test]
fn an_incompatible_snapshot_is_ignored_and_the_aggregate_replayed() {
    let store = Arc::new(InMemoryStore::new());
    let orders = Repository::<Order, _>::new(store.clone()).snapshots(1_000);
    orders.execute("1", place(100)).unwrap();
    orders.execute("1", pay(30)).unwrap();
    let truth = Repository::<Order, _>::new(store.clone())
        .load("1")
        .unwrap();
    assert_eq!(truth.state.paid_cents, 30);
    let lie = Order {
        paid_cents: 77,
        ..truth.state.clone()
    };
    let snapshots = store.snapshots().unwrap();
    let bad = [
        // Another schema (the aggregate's is 3), with a payload that decodes.
        Snapshot::encode(stream("1"), 2, 2, &lie).unwrap(),
        // The right schema, garbage bytes.
        Snapshot {
            stream: stream("1"),
            version: 2,
            schema_version: 3,
            payload: vec![0xc1, 0xff, 0x00, 0x13],
        },
        // The right schema, another shape.
        Snapshot::encode(stream("1"), 2, 3, &"not an order").unwrap(),
        // Decodes, but claims more events than the stream has.
        Snapshot::encode(stream("1"), 9, 3, &lie).unwrap(),
    ];
    for snapshot in bad {
        let version = snapshot.version;
        snapshots.save(snapshot).unwrap();
        let loaded = orders.load("1").unwrap();
        assert_eq!(
            (loaded.state.clone(), loaded.version),
            (truth.state.clone(), 2)
        );
        // Commands decide on the replayed state too.
        let err = orders.execute("1", pay(71)).unwrap_err();
        assert!(matches!(
            err,
            CommandError::Rejected(OrderError::Overpaid { open_cents: 70 })
        ));
        if version == 9 {
            break;
        }
    }
    // Control: the same lie with the right schema *is* used.
    snapshots
        .save(Snapshot::encode(stream("1"), 9, 3, &truth.state).unwrap())
        .unwrap(); // keeps the version-9 one out of the way …
    let store2 = Arc::new(InMemoryStore::new());
    let orders2 = Repository::<Order, _>::new(store2.clone()).snapshots(1_000);
    orders2.execute("1", place(100)).unwrap();
    orders2.execute("1", pay(30)).unwrap();
    store2
        .snapshots()
        .unwrap()
        .save(Snapshot::encode(stream("1"), 2, 3, &lie).unwrap())
        .unwrap();
    assert_eq!(orders2.load("1").unwrap().state.paid_cents, 77);
}

#[test]
fn a_failing_snapshot_store_does_not_fail_commands() {
    let mut store = Meddling::new();
    store.broken = Some(BrokenSnapshots {
        saves: AtomicU32::new(0),
    });
    let store = Arc::new(store);
    let orders = Repository::<Order, _>::new(store.clone())
        .snapshots(1)
        .cache(4);
    orders.execute("1", place(100)).unwrap();
    orders.execute("1", pay(40)).unwrap();
    let fresh = Repository::<Order, _>::new(store.clone()).snapshots(1);
    let loaded = fresh.load("1").unwrap();
    assert_eq!((loaded.state.paid_cents, loaded.version), (40, 2));
    fresh.execute("1", pay(60)).unwrap();
    assert_eq!(
        store.broken.as_ref().unwrap().saves.load(Ordering::Relaxed),
        3
    );
}

#[test]
fn snapshots_on_a_store_without_snapshot_storage_are_a_no_op() {
    // `&S` is no store, but `Arc<Meddling>` is; a store with snapshots() = None:
    struct NoSnapshots(InMemoryStore<Added>);
    impl EventStore<Added> for NoSnapshots {
        fn append(
            &self,
            s: &StreamId,
            e: ExpectedVersion,
            ev: Vec<Event<Added>>,
        ) -> Result<AppendOutcome, AppendError<Added>> {
            self.0.append(s, e, ev)
        }
        fn read_stream(
            &self,
            s: &StreamId,
            f: u64,
            m: usize,
        ) -> Result<Vec<Recorded<Added>>, ReadError> {
            self.0.read_stream(s, f, m)
        }
        fn read_stream_backward(
            &self,
            s: &StreamId,
            m: usize,
        ) -> Result<Vec<Recorded<Added>>, ReadError> {
            self.0.read_stream_backward(s, m)
        }
        fn read_all(&self, f: Position, m: usize) -> Result<Vec<Recorded<Added>>, ReadError> {
            self.0.read_all(f, m)
        }
        fn scan_all(
            &self,
            f: Position,
            g: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
        ) -> Result<Option<Position>, ReadError> {
            self.0.scan_all(f, g)
        }
        fn stream_version(&self, s: &StreamId) -> Result<u64, ReadError> {
            self.0.stream_version(s)
        }
        fn head(&self) -> Option<Position> {
            self.0.head()
        }
        fn wait_past(&self, a: Option<Position>, t: Duration) -> Option<Position> {
            self.0.wait_past(a, t)
        }
    }
    let counters = Repository::<Counter, _>::new(NoSnapshots(InMemoryStore::new())).snapshots(1);
    for _ in 0..5 {
        counters.execute("c", 1).unwrap();
    }
    assert!(counters
        .store()
        .0
        .snapshots()
        .unwrap()
        .load(&StreamId::new("counter-c").unwrap())
        .unwrap()
        .is_none());
    assert_eq!(counters.load("c").unwrap().state.value, 5);
}

// ---- the store's own refusals ------------------------------------------------------

#[test]
fn a_batch_the_store_refuses_is_a_store_error_with_its_reason() {
    let counters = Repository::<Counter, _>::new(InMemoryStore::new()).cache(2);
    let err = counters.execute("c", 70_000).unwrap_err();
    match err {
        CommandError::Store(StoreError::Rejected(RejectReason::TooManyEvents {
            count, ..
        })) => {
            assert_eq!(count, 70_000)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(counters.load("c").unwrap().version, 0);
    // A command producing no events appends nothing and succeeds.
    let none = counters.execute("c", 0).unwrap();
    assert_eq!((none.version, none.events.len()), (0, 0));
    assert_eq!(counters.execute("c", 2).unwrap().version, 2);
}

// ---- caches that go stale -----------------------------------------------------------

#[test]
fn two_cached_repositories_on_one_store_see_each_other() {
    let store = Arc::new(InMemoryStore::new());
    let a = Repository::<Order, _>::new(store.clone()).cache(4);
    let b = Repository::<Order, _>::new(store.clone()).cache(4);
    a.execute("1", place(100)).unwrap();
    b.execute("1", pay(30)).unwrap(); // b loads, sees the placement
    a.execute("1", pay(30)).unwrap(); // a's cache is one behind: it catches up, no conflict
    let err = b.execute("1", pay(41)).unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(OrderError::Overpaid { open_cents: 40 })
    ));
    assert_eq!(a.load("1").unwrap().state.paid_cents, 60);
}

// ---- upcasting ----------------------------------------------------------------------

#[test]
fn events_at_older_schemas_are_upcast_and_newer_ones_refused() {
    let store = Arc::new(InMemoryStore::new());
    // Schema 1 of order.paid counted whole euros; schema 2 counts cents.
    let old = Event::typed(OrderEvent::Paid { cents: 3 })
        .with_version(1)
        .with_subject("order-1");
    store
        .append(
            &stream("1"),
            ExpectedVersion::NoStream,
            vec![Event::typed(placed(1_000)).with_subject("order-1")],
        )
        .unwrap();
    store
        .append(&stream("1"), ExpectedVersion::Exact(1), vec![old])
        .unwrap();
    let mut upcasters = Upcasters::new();
    upcasters
        .add("order.paid", 1, |mut e| {
            let euros = e.data["Paid"]["cents"].as_u64().unwrap_or(0);
            e.data["Paid"]["cents"] = serde_json::json!(euros * 100);
            Ok(e)
        })
        .unwrap();
    let orders = Repository::<Order, _>::new(store.clone()).upcasters(upcasters.clone());
    assert_eq!(orders.load("1").unwrap().state.paid_cents, 300);
    let err = orders.execute("1", pay(701)).unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(OrderError::Overpaid { open_cents: 700 })
    ));
    // Without the upcasters the old event is read as it is.
    assert_eq!(
        Repository::<Order, _>::new(store.clone())
            .load("1")
            .unwrap()
            .state
            .paid_cents,
        3
    );

    // An event written by newer code is not applied as if it were current.
    let newer = Event::typed(OrderEvent::Paid { cents: 1 })
        .with_version(7)
        .with_subject("order-1");
    store
        .append(&stream("1"), ExpectedVersion::Any, vec![newer])
        .unwrap();
    match orders.load("1") {
        Err(LoadError::Upcast(e)) => {
            assert_eq!(e.kind(), &UpcastErrorKind::TooNew { latest: 2 });
            assert_eq!(e.position(), Some(Position(2)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        orders.execute("1", pay(1)),
        Err(CommandError::Upcast(_))
    ));

    // A link whose result does not fit the event type: a mismatch naming the
    // type and the version the chain reached, at the event's position.
    let mut broken = Upcasters::new();
    broken
        .add("order.paid", 1, |mut e| {
            e.data = serde_json::json!("not an order event");
            Ok(e)
        })
        .unwrap();
    let broken = Repository::<Order, _>::new(store.clone()).upcasters(broken);
    match broken.load("1") {
        Err(LoadError::Upcast(e)) => {
            assert!(matches!(e.kind(), UpcastErrorKind::Mismatch { .. }), "{e}");
            assert_eq!((e.event_type(), e.version()), ("order.paid", 2));
            assert_eq!(e.position(), Some(Position(1)));
        }
        other => panic!("{other:?}"),
    }
}

// ---- with and without snapshots, with and without a cache: one truth ----------------

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        (0..300_u64).prop_map(place),
        (0..120_u64).prop_map(pay),
        Just(OrderCommand::Cancel { reason: "r".into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 64 } else { 256 }))]

    /// Random command sequences over three orders, executed through four
    /// repositories on four stores (plain, cached, snapshotted, both): the same
    /// results command by command, and every way of loading gives the state
    /// the harness's fold gives.
    #[test]
    fn load_is_the_same_with_and_without_snapshots_and_cache(
        commands in prop::collection::vec((0..3_usize, order_command()), 1..80),
        every in 1..6_u64,
    ) {
        let stores: Vec<Arc<InMemoryStore<OrderEvent>>> = (0..4).map(|_| Arc::new(InMemoryStore::new())).collect();
        let repos = [
            Repository::<Order, _>::new(stores[0].clone()),
            Repository::<Order, _>::new(stores[1].clone()).cache(2),
            Repository::<Order, _>::new(stores[2].clone()).snapshots(every),
            Repository::<Order, _>::new(stores[3].clone()).snapshots(every).cache(1),
        ];
        let mut model: Vec<Vec<OrderEvent>> = vec![Vec::new(); 3];
        for (which, command) in commands {
            let id = which.to_string();
            let results: Vec<_> = repos
                .iter()
                .map(|r| r.execute(&id, command.clone()).map(|e| (e.version, e.events)).map_err(|e| e.to_string()))
                .collect();
            for r in &results[1..] {
                prop_assert_eq!(r, &results[0]);
            }
            if let Ok((_, events)) = &results[0] {
                model[which].extend(events.iter().cloned());
            }
        }
        for (which, events) in model.iter().enumerate() {
            let id = which.to_string();
            let expected = {
                let mut o = Order::default();
                for e in events { o.apply(e); }
                o
            };
            for (r, store) in repos.iter().zip(&stores) {
                let loaded = r.load(&id).unwrap();
                prop_assert_eq!(&loaded.state, &expected);
                prop_assert_eq!(loaded.version, events.len() as u64);
                // A snapshotting repository over a store with snapshots loads
                // the same as a plain one over the same store.
                let plain = Repository::<Order, _>::new(store.clone()).load(&id).unwrap();
                prop_assert_eq!(&plain.state, &expected);
            }
            // Snapshots were written where the versions crossed multiples of `every`.
            if events.len() as u64 >= every {
                let s = stores[2].snapshots().unwrap().load(&stream(&id)).unwrap();
                prop_assert!(s.is_some());
            }
        }
    }
}

// ---- a file store, reopened ------------------------------------------------------------

#[test]
fn on_a_file_store_state_and_retries_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("ringbus-cqrs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = CommandMeta::new();
    {
        let store = Arc::new(FileStore::open(&dir, StoreOptions::default()).unwrap());
        let orders = Repository::<Order, _>::new(store.clone())
            .cache(8)
            .snapshots(2);
        orders.execute("1", place(100)).unwrap();
        orders.execute_with("1", meta, pay(60)).unwrap();
        drop(orders);
        Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    }
    let store = Arc::new(FileStore::<OrderEvent>::open(&dir, StoreOptions::default()).unwrap());
    let orders = Repository::<Order, _>::new(store.clone())
        .cache(8)
        .snapshots(2);
    let loaded = orders.load("1").unwrap();
    assert_eq!((loaded.state.paid_cents, loaded.version), (60, 2));
    // The saga re-sends after the restart: recognised, not paid twice.
    let again = orders.execute_with("1", meta, pay(60)).unwrap();
    assert!(again.duplicate);
    assert_eq!(orders.execute("1", pay(40)).unwrap().events.len(), 2);
    drop(orders);
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- failures of the store, misuse ------------------------------------------------------

#[test]
fn an_io_error_is_reported_and_the_cached_state_forgotten() {
    let orders = Repository::<Order, _>::new(Meddling::new()).cache(4);
    orders.execute("1", place(100)).unwrap();
    orders.store().set(Meddle::WriteThenFail);
    let meta = CommandMeta::new();
    let err = orders.execute_with("1", meta, pay(70)).unwrap_err();
    assert!(
        matches!(err, CommandError::Store(StoreError::Io(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("may or may not be stored"),
        "{err}"
    );
    // The events were written after all: the next command sees them (the
    // cached state was dropped), and re-sending the command is recognised.
    let err = orders.execute("1", pay(31)).unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(OrderError::Overpaid { open_cents: 30 })
    ));
    assert!(orders.execute_with("1", meta, pay(70)).unwrap().duplicate);
}

/// An aggregate whose command counts its clones.
#[derive(Default)]
struct Clones;

#[derive(Debug)]
struct CountedCommand(Arc<AtomicU32>);
impl Clone for CountedCommand {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::Relaxed);
        CountedCommand(self.0.clone())
    }
}

impl Aggregate for Clones {
    const TYPE: &'static str = "clones";
    type Command = CountedCommand;
    type Event = Added;
    type Error = Never;
    fn handle(&self, _: CountedCommand) -> Result<Vec<Added>, Never> {
        Ok(vec![Added { n: 1 }])
    }
    fn apply(&mut self, _: &Added) {}
}

#[test]
fn a_command_is_cloned_only_for_attempts_that_may_follow() {
    let clones = Arc::new(AtomicU32::new(0));
    let once = Repository::<Clones, _>::new(InMemoryStore::new()).cache(2);
    once.execute("a", CountedCommand(clones.clone())).unwrap();
    assert_eq!(
        clones.load(Ordering::Relaxed),
        0,
        "one attempt: never cloned"
    );
    let thrice = Repository::<Clones, _>::new(InMemoryStore::new()).retry_on_conflict(3);
    thrice.execute("a", CountedCommand(clones.clone())).unwrap();
    // One clone for the first attempt (two more might follow); no conflict.
    assert_eq!(clones.load(Ordering::Relaxed), 1);
}

#[test]
#[should_panic(expected = "at least one attempt")]
fn zero_attempts_is_refused() {
    let _ = Repository::<Counter, _>::new(InMemoryStore::new()).retry_on_conflict(0);
}

#[test]
#[should_panic(expected = "at least one aggregate")]
fn an_empty_cache_is_refused() {
    let _ = Repository::<Counter, _>::new(InMemoryStore::new()).cache(0);
}

#[test]
#[should_panic(expected = "snapshot every 1 event or more")]
fn snapshots_every_zero_events_is_refused() {
    let _ = Repository::<Counter, _>::new(InMemoryStore::new()).snapshots(0);
}
