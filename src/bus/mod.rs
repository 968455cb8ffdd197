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
    PublishBatchError, PublishError, PublishTimeoutError, ShutdownError, SubscribeError,
    TryPublishError,
};
pub use mode::{Multi, ProducerMode, Single};
pub use publisher::Publisher;
pub use subscribe::{SubscribeOptions, MAX_LANES};

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc as StdArc;

use crate::dispatch::{breaker_from_code, Inside, Shared, ShutdownReport};
#[cfg(doc)]
use crate::dispatch::{Execution, LogFailures};
use crate::metrics::{BusMetrics, HandlerMetrics, MetricsSnapshot};
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
/// use ringbus::{event_type, source, Bus, Event, HandlerError};
/// use serde_json::json;
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
///
/// let bus = Bus::builder().capacity(1024).build().unwrap();
/// let orders = Arc::new(AtomicUsize::new(0));
/// let seen = orders.clone();
/// bus.subscribe("order.*", move |_e: &Event| -> Result<(), HandlerError> {
///     seen.fetch_add(1, Ordering::Relaxed);
///     Ok(())
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
        let infos = self
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let handlers = infos
            .iter()
            .map(|h| {
                let m = &h.metrics;
                let (handler_time_ns, latency_ns) = m.summaries();
                HandlerMetrics {
                    subscription: h.sub,
                    handler: h.name.clone(),
                    lane: h.lane,
                    handled: m.handled.load(std::sync::atomic::Ordering::Relaxed),
                    errors: m.errors.load(std::sync::atomic::Ordering::Relaxed),
                    panics: m.panics.load(std::sync::atomic::Ordering::Relaxed),
                    retries: m.retries.load(std::sync::atomic::Ordering::Relaxed),
                    dead_lettered: m.dead_lettered.load(std::sync::atomic::Ordering::Relaxed),
                    pending: m.pending.load(std::sync::atomic::Ordering::Relaxed),
                    breaker: breaker_from_code(
                        m.breaker.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    handler_time_ns,
                    latency_ns,
                }
            })
            .collect();
        MetricsSnapshot { bus, handlers }
    }

    /// The dispatcher's counters now.
    pub fn stats(&self) -> Counters {
        self.shared.stats.snapshot(&self.shared.ring)
    }

    /// Ring slots.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Shuts down gracefully: publishes from now on fail with `Closed` (returning
    /// the event); every event whose publish returned `Ok` is dispatched; handlers'
    /// `on_shutdown` hooks run; threads are joined. A publish racing with this is
    /// either delivered or returned to its caller, never lost and never both.
    ///
    /// # Errors
    /// [`ShutdownError::FromInside`] when called from inside this bus (a handler
    /// or hook of it, or a `publish_with` closure / `publish_batch` iterator of one
    /// of its publishers): the bus is closed and stops by itself once the call
    /// returns, but no report can be had there.
    /// [`ShutdownError::DispatcherPanicked`] if the dispatcher thread died.
    pub fn shutdown(mut self) -> Result<ShutdownReport, ShutdownError> {
        self.close_and_join()
    }

    fn close_and_join(&mut self) -> Result<ShutdownReport, ShutdownError> {
        self.shared.ring.close();
        // A full `Block` dead-letter queue must not hold shutdown up.
        self.dlq.stop_blocking();
        // From inside the bus, joining would wait for this very call: close only;
        // the dispatcher drains and exits by itself.
        if Inside::any(self.shared.id()) {
            return Err(ShutdownError::FromInside);
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
