//! The public facade: [`Bus::builder`], [`Bus`], [`Publisher`], their errors, and
//! shutdown.

// One concept per file: producer modes (`mode.rs`), building and the dispatcher
// thread (`builder.rs`), subscribing (`subscribe.rs`), the dead-letter handle
// (`dead_letters.rs`), publishing (`publisher.rs`) and the errors (`error.rs`).
// The `Bus` handle itself — publishers, metrics, shutdown — lives here.

mod builder;
mod dead_letters;
mod error;
mod mode;
mod publisher;
mod subscribe;

pub use builder::{BuildError, BuildErrorKind, BusBuilder, MAX_CAPACITY, MAX_POOL_THREADS};
pub use dead_letters::DeadLetters;
pub use error::{
    FlushError, PublishBatchError, PublishError, PublishTimeoutError, Refusal, ShutdownError,
    SubscribeError, TryPublishError,
};
pub use mode::{Multi, ProducerMode, Single};
pub use publisher::Publisher;
pub use subscribe::{SubscribeOptions, MAX_LANES};

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

#[cfg(doc)]
use crate::dispatch::{Execution, LogFailures};
use crate::dispatch::{Inside, Shared, ShutdownReport};
use crate::metrics::{BusMetrics, MetricsSnapshot};
use crate::metrics::{Counters, FlowLog};
use crate::resilience::DeadLetterQueue;
use crate::sync::{Arc, AtomicU64, Ordering};

use builder::JoinHandle;

/// An in-process event bus: a ring, a dispatcher thread, and handlers.
///
/// `P` is the payload type (default: dynamic JSON). `M` is [`Multi`] (default) or
/// [`Single`] producer. Dropping the bus shuts it down like [`Bus::shutdown`].
///
/// # Examples
/// ```
/// use ringbus::{event_type, source, Bus, Event};
/// use serde_json::json;
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
///
/// let bus = Bus::builder().capacity(1024).build().unwrap();
/// let orders = Arc::new(AtomicUsize::new(0));
/// let seen = orders.clone();
/// bus.subscribe("order.*", move |_e| {
///     seen.fetch_add(1, Ordering::Relaxed);
/// }).unwrap();
///
/// let mut publisher = bus.publisher();
/// publisher.publish(Event::new(event_type!("order.placed"), source!("shop"), json!({"id": 1}))).unwrap();
/// publisher.publish(Event::new(event_type!("user.registered"), source!("shop"), json!({}))).unwrap();
///
/// let report = bus.shutdown().unwrap();
/// assert_eq!(report.counters.published, 2);
/// assert_eq!(orders.load(Ordering::Relaxed), 1);
/// ```
pub struct Bus<P = serde_json::Value, M = Multi> {
    shared: Arc<Shared<P>>,
    thread: Option<JoinHandle>,
    next_id: AtomicU64,
    dlq: DeadLetterQueue<P>,
    flow_log: Option<StdArc<FlowLog>>,
    _mode: PhantomData<M>,
}

impl<P, M> fmt::Debug for Bus<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A builder for a bus of JSON events ([`serde_json::Value`] payloads), with
    /// the defaults: multi producer, capacity 4096, blocking waits, max batch =
    /// capacity, [`Execution::default`], [`LogFailures`].
    ///
    /// For another payload type, [`BusBuilder::<P>::new`](BusBuilder::new) makes
    /// the same builder: `BusBuilder::<ShopEvent>::new().build()?`.
    pub fn builder() -> BusBuilder {
        BusBuilder::new()
    }
}

impl<P: Send + Sync + 'static> Bus<P, Multi> {
    /// A new publisher. Publishers are `Clone + Send`: one per producing thread.
    pub fn publisher(&self) -> Publisher<P, Multi> {
        Publisher::new(self.shared.clone())
    }
}

impl<P: Send + Sync + 'static, M: ProducerMode> Bus<P, M> {
    /// The dead-letter queue: inspect, redrive, discard.
    pub fn dead_letters(&self) -> DeadLetters<P> {
        DeadLetters {
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The bus's dead-letter queue itself, for the store's catch-up
    /// subscriptions (`OnFailure::SkipToDeadLetters`).
    pub(crate) fn dead_letter_queue(&self) -> DeadLetterQueue<P> {
        self.dlq.clone()
    }

    /// The flow log, if the builder enabled it ([`BusBuilder::flow_log`]).
    pub fn flow_log(&self) -> Option<StdArc<FlowLog>> {
        self.flow_log.clone()
    }

    /// A snapshot of every counter and histogram, per bus and per handler.
    /// `snapshot.to_prometheus()` renders it in the Prometheus text format.
    pub fn metrics(&self) -> MetricsSnapshot {
        let ring = &self.shared.ring;
        // Only publishes that completed: a producer still waiting for a slot has
        // claimed a sequence but published nothing.
        let counters = self.stats();
        let skipped = self.shared.stats.skipped.load(Ordering::Relaxed);
        let consumed = ring.consumed_relaxed().saturating_sub(skipped);
        let batch_size = {
            let h = self
                .shared
                .batch_sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            h.summary()
        };
        let bus = BusMetrics {
            counters,
            dlq_len: self.dlq.len() as u64,
            dlq_evicted: self.dlq.evicted(),
            ring_capacity: ring.capacity(),
            ring_occupancy: counters.published.saturating_sub(consumed),
            batch_size,
        };
        let handlers = self
            .shared
            .handler_infos()
            .iter()
            .map(|h| h.snapshot())
            .collect();
        let catch_ups = {
            let mut list = self
                .shared
                .catch_ups
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.iter()
                .filter_map(|w| w.upgrade())
                .map(|s| s.report())
                .collect()
        };
        MetricsSnapshot {
            bus,
            handlers,
            catch_ups,
        }
    }

    /// Lists a catch-up subscription in [`metrics`](Bus::metrics) for as long
    /// as it lives.
    pub(crate) fn register_catch_up(
        &self,
        source: std::sync::Weak<dyn crate::store::ReportCatchUp>,
    ) {
        self.shared
            .catch_ups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// The dispatcher's counters now.
    pub fn stats(&self) -> Counters {
        self.shared.stats.snapshot(&self.shared.ring)
    }

    /// Ring slots.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Waits until every event published before this call — every follow-up it
    /// caused, transitively, and every retry of them — has been handled or
    /// dead-lettered. Other threads may go on publishing meanwhile; their events
    /// are not waited for (except follow-ups dispatched together with the
    /// awaited ones, which may be counted in with them).
    ///
    /// A retry waits for its due time, and an open breaker holds its events
    /// until it lets them through: use [`Bus::flush_timeout`] to bound the wait.
    ///
    /// # Errors
    /// [`FlushError::FromInside`] from inside the bus (a handler or hook of it,
    /// or a `publish_with` closure / `publish_batch` iterator of one of its
    /// publishers): it would wait for itself. [`FlushError::Stopped`] if the
    /// dispatcher died (a bug in ringbus).
    ///
    /// # Examples
    /// ```
    /// use ringbus::{event_type, source, BusBuilder, Event};
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    ///
    /// let bus = BusBuilder::<u64>::new().capacity(16).build().unwrap();
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let mut follow = bus.publisher();
    /// bus.subscribe("order.placed", move |e| {
    ///     // A follow-up, published from the handler: never waits for the ring.
    ///     follow.publish(Event::new(event_type!("order.paid"), source!("shop"), e.data))
    /// }).unwrap();
    /// let s = seen.clone();
    /// bus.subscribe("order.paid", move |_e| {
    ///     s.fetch_add(1, Ordering::Relaxed);
    /// }).unwrap();
    ///
    /// let mut p = bus.publisher();
    /// for i in 0..100 {
    ///     p.publish(Event::new(event_type!("order.placed"), source!("shop"), i)).unwrap();
    /// }
    /// bus.flush().unwrap();
    /// assert_eq!(seen.load(Ordering::Relaxed), 100);
    /// ```
    pub fn flush(&self) -> Result<(), FlushError> {
        self.flush_until(None)
    }

    /// [`Bus::flush`], waiting at most `timeout` (one too large for an
    /// [`Instant`] waits like `flush`): [`FlushError::Timeout`] if not
    /// everything was settled by then.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), FlushError> {
        self.flush_until(Instant::now().checked_add(timeout))
    }

    fn flush_until(&self, deadline: Option<Instant>) -> Result<(), FlushError> {
        let shared = &*self.shared;
        if Inside::any(shared.id()) {
            return Err(FlushError::FromInside);
        }
        // Every publish that returned before this call holds a sequence below
        // the claim count read now.
        let mark = shared.ring.claimed();
        let progress = &shared.progress;
        progress.waiters.fetch_add(1, Ordering::AcqRel);
        progress.kick.store(true, Ordering::Release);
        shared.ring.data_signal.notify();
        let settled = || progress.settled.load(Ordering::Acquire) >= mark;
        let finished = || progress.finished.load(Ordering::Acquire);
        progress.wait_for(deadline, || settled() || finished());
        progress.waiters.fetch_sub(1, Ordering::AcqRel);
        if settled() {
            Ok(())
        } else if finished() {
            Err(FlushError::Stopped)
        } else {
            Err(FlushError::Timeout)
        }
    }

    /// Shuts down gracefully, finishing what was started:
    ///
    /// 1. publishes from outside the bus fail with `Closed` from now on
    ///    (returning the event);
    /// 2. every event whose publish returned `Ok` is dispatched, and so is every
    ///    follow-up its handlers publish — follow-ups are accepted until the bus
    ///    is quiescent, so causal chains finish;
    /// 3. retries run until none is left or the
    ///    [retry drain timeout](BusBuilder::retry_drain_timeout) passes; a retry
    ///    that cannot come due before it is dead-lettered at once (listed in the
    ///    report's `undelivered`) instead of being waited for;
    /// 4. handlers' `on_shutdown` hooks run (a follow-up published from there is
    ///    refused); threads are joined.
    ///
    /// A publish racing with this is either delivered or returned to its caller,
    /// never lost and never both. A handler that never returns makes this wait
    /// forever: [`Bus::shutdown_timeout`] bounds it.
    ///
    /// # Errors
    /// [`ShutdownError::FromInside`] when called from inside this bus (a handler
    /// or hook of it, or a `publish_with` closure / `publish_batch` iterator of
    /// one of its publishers): the bus is closed and stops by itself once the call
    /// returns, but no report can be had there.
    /// [`ShutdownError::DispatcherPanicked`] if the dispatcher thread died.
    pub fn shutdown(mut self) -> Result<ShutdownReport, ShutdownError> {
        self.close_and_join(None)
    }

    /// [`Bus::shutdown`] within `timeout`: the same steps, with this deadline
    /// for all of them. Once the accepted events are dispatched and the deadline
    /// has passed, retries still waiting are dead-lettered and the follow-up
    /// queue closes (follow-ups accepted before are still dispatched). If the
    /// dispatcher has not finished at the deadline — a handler still running, or
    /// a backlog still being dispatched — the call returns anyway: the report's
    /// `completed` is `false` and `stuck` names the handlers running then, with
    /// the events they held; the dispatcher finishes in the background (once a
    /// stuck handler returns, if it ever does).
    ///
    /// # Errors
    /// As [`Bus::shutdown`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<ShutdownReport, ShutdownError> {
        let deadline = Instant::now().checked_add(timeout);
        *self
            .shared
            .stop_by
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = deadline;
        self.close_and_join(deadline)
    }

    fn close_and_join(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<ShutdownReport, ShutdownError> {
        self.shared.ring.close();
        // A full `Block` dead-letter queue must not hold shutdown up.
        self.dlq.stop_blocking();
        // From inside the bus, joining would wait for this very call: close only;
        // the dispatcher drains and exits by itself.
        if Inside::any(self.shared.id()) {
            return Err(ShutdownError::FromInside);
        }
        if deadline.is_some() {
            let progress = &self.shared.progress;
            let finished = || progress.finished.load(Ordering::Acquire);
            if !progress.wait_for(deadline, finished) {
                // Stuck in user code: report what is known, leave the thread.
                drop(self.thread.take());
                // Nothing waits on a delivery past this point: every tracked
                // one not complete now completes, as not dispatched or with
                // the handlers still holding it as failed.
                self.shared.deliveries.stop(crate::delivery::SHUT_DOWN);
                return Ok(self.report_unfinished());
            }
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(report))) => Ok(report),
            Some(Ok(Err(message))) => Err(ShutdownError::DispatcherPanicked(message)),
            // The guard in `Dispatcher::run` makes a panic of the thread itself
            // unreachable; say so if it happens anyway.
            Some(Err(_)) => Err(ShutdownError::DispatcherPanicked(
                "the dispatcher thread panicked".into(),
            )),
            None => Err(ShutdownError::FromInside),
        }
    }

    /// The report of a stop whose deadline passed with a handler still running.
    fn report_unfinished(&self) -> ShutdownReport {
        let infos = self.shared.handler_infos();
        ShutdownReport {
            counters: self.stats(),
            undelivered: Vec::new(),
            handlers: infos.iter().map(|h| h.snapshot()).collect(),
            completed: false,
            stuck: infos.iter().filter_map(|h| h.stuck()).collect(),
        }
    }
}

impl<P, M> Drop for Bus<P, M> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.ring.close();
            self.dlq.stop_blocking();
            if !Inside::any(self.shared.id()) {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}
