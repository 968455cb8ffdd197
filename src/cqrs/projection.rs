//! Projections: read models built from the store's events, and queries over
//! them.
//!
//! A [`Projection`] applies events to a read model. [`project`] runs it on a
//! [catch-up subscription](crate::store::subscribe_all): the store's history
//! from its checkpoint, then live through the bus, every event exactly once
//! and in position order — so a projection added after 100 000 events exist
//! catches up and goes live (what cqrs-es users could not do,
//! serverlesstechnology/cqrs#64). The model lives behind a read–write lock in
//! the [`ProjectionHandle`]: [`ask`](ProjectionHandle::ask) a [`Query`] (or
//! [`read`](ProjectionHandle::read) it) from any thread; each event is applied
//! under the write lock, so a query never sees half an event.
//!
//! See [`project`] for checkpoints, failures and rebuilds.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::bus::{Bus, ProducerMode};
use crate::outcome::HandlerError;
use crate::resilience::RetryPolicy;
use crate::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
use crate::store::{
    subscribe_all, CatchUpError, CatchUpHandle, CatchUpMetrics, EventStore, Notification,
    OnFailure, Position, Recorded, Status,
};

/// A read model built from events.
///
/// # Examples
/// ```
/// use std::collections::HashMap;
/// use ringbus::cqrs::{Projection, Query};
/// use ringbus::store::Recorded;
/// use ringbus::HandlerError;
///
/// /// Orders per customer.
/// #[derive(Default)]
/// struct OrdersPerCustomer(HashMap<String, u32>);
///
/// impl Projection<serde_json::Value> for OrdersPerCustomer {
///     fn name(&self) -> &str { "orders-per-customer" }
///     fn patterns(&self) -> &[&str] { &["order.placed"] }
///     fn apply(&mut self, r: &Recorded<serde_json::Value>) -> Result<(), HandlerError> {
///         let customer = r.event.data["customer"].as_str().ok_or(HandlerError::permanent("no customer"))?;
///         *self.0.entry(customer.to_owned()).or_default() += 1;
///         Ok(())
///     }
///     fn reset(&mut self) { self.0.clear() }
/// }
///
/// struct OrdersOf(&'static str);
/// impl Query<OrdersPerCustomer> for OrdersOf {
///     type Output = u32;
///     fn ask(&self, model: &OrdersPerCustomer) -> u32 { model.0.get(self.0).copied().unwrap_or(0) }
/// }
/// # let _ = OrdersOf("ada");
/// ```
pub trait Projection<P>: Send + Sync + 'static {
    /// The projection's name: its checkpoint's name and its name in the
    /// metrics. ASCII letters, digits, `_`, `-`, `.` (the
    /// [checkpoint name rules](crate::store::checkpoint#names)).
    fn name(&self) -> &str;

    /// The event types it wants, in the bus's pattern grammar (`"order.*"`,
    /// `">"`); the default is every event. Events of other types are passed
    /// over without a call.
    fn patterns(&self) -> &[&str] {
        &[">"]
    }

    /// Applies one event. An error is retried or stops the projection (see
    /// the [module docs](project#failures-and-rebuilds)); the event is not
    /// skipped.
    ///
    /// # Errors
    /// A [`HandlerError`]: transient (retried under the projector's policy) or
    /// permanent.
    fn apply(&mut self, event: &Recorded<P>) -> Result<(), HandlerError>;

    /// Empties the model before a [rebuild](ProjectionHandle::rebuild)
    /// replays every event into it.
    fn reset(&mut self);
}

/// A question to a read model: the query side of CQRS.
pub trait Query<M> {
    /// The answer.
    type Output;

    /// Answers from the model as it is now.
    fn ask(&self, model: &M) -> Self::Output;
}

/// Starts building a projection of `store`'s events into `projection`, live
/// through `bus` (the bus the store publishes to:
/// [`InMemoryStore::publish_to`](crate::store::InMemoryStore::publish_to),
/// [`FileStore::publish_to`](crate::store::FileStore::publish_to)).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ringbus::cqrs::{project, Projection};
/// use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, Recorded, StreamId};
/// use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
///
/// #[derive(Default)]
/// struct Total(u64);
/// impl Projection<u64> for Total {
///     fn name(&self) -> &str { "total" }
///     fn apply(&mut self, r: &Recorded<u64>) -> Result<(), HandlerError> {
///         self.0 += r.event.data;
///         Ok(())
///     }
///     fn reset(&mut self) { self.0 = 0 }
/// }
///
/// let bus = BusBuilder::<u64>::new().build()?;
/// let store = Arc::new(InMemoryStore::new());
/// let _feed = store.publish_to(&bus);
/// let s = StreamId::new("till-1")?;
/// let sale = |n| Event::new(event_type!("till.sale"), source!("till"), n);
/// store.append(&s, ExpectedVersion::Any, vec![sale(5), sale(7)])?; // history
///
/// let total = project(store.clone(), &bus, Total::default()).start()?;
/// store.append(&s, ExpectedVersion::Any, vec![sale(30)])?; // live
/// let head = store.head().unwrap();
/// assert!(total.wait_for(head, Duration::from_secs(10)));
/// assert_eq!(total.read(|t| t.0), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Checkpoints: where the model resumes
/// | the read model lives | checkpoints |
/// | --- | --- |
/// | in memory (rebuilt at each start) | the default, in memory: every start replays from the start |
/// | in storage of its own (a database, files) | implement [`CheckpointStore`] on that storage and save the position **in the same transaction** as the model (KurrentDB's advice for exactly-once effects): they can never disagree |
/// | elsewhere, with idempotent updates | [`FileCheckpoints`](crate::store::checkpoint::FileCheckpoints): after a crash a few events may be applied again |
///
/// A persisted checkpoint with an in-memory model would be wrong (the model is
/// gone after a restart, the checkpoint says it is not), which is why the
/// default is in memory.
///
/// # Failures and rebuilds
/// An `apply` error is retried in place under the
/// [`RetryPolicy`](crate::resilience::RetryPolicy) given to
/// [`Projector::retry`]; a permanent error or the last attempt stops the
/// projection with [`Status::Failed`] at that position (everything before it
/// is applied) — a projection never skips an event unless told to
/// ([`Projector::on_failure`]). [`ProjectionHandle::rebuild`] calls
/// [`Projection::reset`] and replays from the start. Each projection is listed
/// in its bus's [`metrics`](crate::Bus::metrics) under its name: status,
/// position, lag behind the store's head, counters.
pub fn project<S, P, M, Pr>(
    store: Arc<S>,
    bus: &Bus<P, M>,
    projection: Pr,
) -> Projector<'_, S, P, M, Pr>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
    Pr: Projection<P>,
{
    Projector {
        store,
        bus,
        projection,
        checkpoints: Box::new(InMemoryCheckpoints::new()),
        save_every: 1_000,
        retry: RetryPolicy::none(),
        on_failure: OnFailure::Stop,
    }
}

/// Options of a projection before it starts (see [`project`]).
#[must_use = "a projector does nothing until started"]
pub struct Projector<'b, S, P, M: ProducerMode, Pr> {
    store: Arc<S>,
    bus: &'b Bus<P, M>,
    projection: Pr,
    checkpoints: Box<dyn CheckpointStore + Send + Sync>,
    save_every: u64,
    retry: RetryPolicy,
    on_failure: OnFailure,
}

impl<S, P, M: ProducerMode, Pr> std::fmt::Debug for Projector<'_, S, P, M, Pr> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("save_every", &self.save_every)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl<'b, S, P, M, Pr> Projector<'b, S, P, M, Pr>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
    Pr: Projection<P>,
{
    /// Where the projection keeps its checkpoint, under its
    /// [name](Projection::name) (default: in memory, see the
    /// [table](project#checkpoints-where-the-model-resumes)).
    pub fn checkpoints(
        mut self,
        checkpoints: impl CheckpointStore + Send + Sync + 'static,
    ) -> Self {
        self.checkpoints = Box::new(checkpoints);
        self
    }

    /// Saves the checkpoint every `events` applied events (default 1 000),
    /// and when the projection catches up, fails or stops.
    pub fn save_every(mut self, events: u64) -> Self {
        self.save_every = events;
        self
    }

    /// Retries failed `apply` calls in place under `policy` (default: none).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What to do with an event `apply` gave up on (default: stop).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Starts the projection on a thread of its own.
    ///
    /// # Errors
    /// As [`CatchUp::start`](crate::store::CatchUp::start): the bus refuses the
    /// subscription (closed, bad pattern, invalid retry policy) or the
    /// checkpoint cannot be loaded (e.g. a name outside the rules).
    pub fn start(self) -> Result<ProjectionHandle<Pr>, CatchUpError> {
        let name = self.projection.name().to_owned();
        let patterns: Vec<String> = self
            .projection
            .patterns()
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        let model = Arc::new(RwLock::new(self.projection));
        let (applying, resetting) = (model.clone(), model.clone());
        let subscription = subscribe_all(self.store, self.bus)
            .name(name.clone())
            .filter(patterns)
            .checkpoints(self.checkpoints, name)
            .save_every(self.save_every)
            .retry(self.retry)
            .on_failure(self.on_failure)
            .on_notification(move |n| {
                if n == Notification::Rebuilding {
                    resetting
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .reset();
                }
            })
            .start(move |r: &Recorded<P>| {
                applying
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(r)
            })?;
        Ok(ProjectionHandle {
            model,
            subscription,
        })
    }
}

/// A running projection: its read model, and the subscription feeding it.
/// Dropping it stops the projection.
pub struct ProjectionHandle<M> {
    model: Arc<RwLock<M>>,
    subscription: CatchUpHandle,
}

impl<M> std::fmt::Debug for ProjectionHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl<M> ProjectionHandle<M> {
    /// Asks `query` of the model as it is now.
    pub fn ask<Q: Query<M>>(&self, query: &Q) -> Q::Output {
        query.ask(&self.guard())
    }

    /// Reads the model as it is now.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        f(&self.guard())
    }

    fn guard(&self) -> RwLockReadGuard<'_, M> {
        // A panicking `apply` is caught by the subscription (and stops it);
        // the model is as that call left it, which the status reports.
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the model has applied (or passed over) every event up to
    /// `position`, or `timeout` passes; `true` if it has. Use it for
    /// read-your-writes: append, then wait for the append's last position.
    pub fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        self.subscription.wait_for(position, timeout)
    }

    /// Where the projection stands.
    pub fn status(&self) -> Status {
        self.subscription.status()
    }

    /// The last position applied (or passed over), `None` if none.
    pub fn position(&self) -> Option<Position> {
        self.subscription.position()
    }

    /// The subscription's counters.
    pub fn metrics(&self) -> CatchUpMetrics {
        self.subscription.metrics()
    }

    /// Empties the model ([`Projection::reset`]), clears the checkpoint and
    /// replays every event.
    pub fn rebuild(&self) {
        self.subscription.rebuild();
    }

    /// After [`Status::Failed`]: tries again from the failed event.
    pub fn restart(&self) {
        self.subscription.restart();
    }

    /// Stops the projection after the event in progress (saving its
    /// checkpoint); the model stays readable.
    pub fn stop(&self) {
        self.subscription.stop();
    }
}
