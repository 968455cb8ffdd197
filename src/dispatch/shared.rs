//! State shared by the bus handle, its publishers and the dispatcher: the ring,
//! the control queue, the counters and the live handler list — and the report the
//! bus returns at shutdown ([`ShutdownReport`]).

use std::sync::{Arc as StdArc, Mutex as StdMutex};

use super::control::{Control, ControlQueue};
use super::slot_metrics::SlotMetrics;
use crate::event::Event;
use crate::metrics::{Counters, LocalHistogram, SharedCounters};
use crate::outcome::SubscriptionId;
use crate::resilience::{DeadLetterInfo, Wake};
use crate::ring::Ring;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// Counters kept by the dispatcher, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) counters: SharedCounters,
    /// Sequences skipped as holes (claims given up by their producers).
    pub(crate) skipped: AtomicU64,
}

impl Stats {
    /// The counters now; `published` is the ring's (completed publishes, holes
    /// not counted).
    pub(crate) fn snapshot<P>(&self, ring: &Ring<Event<P>>) -> Counters {
        Counters {
            published: ring
                .published_relaxed()
                .saturating_sub(self.skipped.load(Ordering::Relaxed)),
            ..self.counters.load()
        }
    }
}

/// What `Bus::shutdown` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The bus's counters at the end: after a clean shutdown `dispatched ==
    /// published`, and `retried` counts retries that were made or whose event is
    /// listed in `undelivered`.
    pub counters: Counters,
    /// Events still waiting for a retry (or behind an open breaker) when the
    /// retry drain deadline passed: moved to the dead-letter queue, where they
    /// can be inspected, redriven on another bus, or discarded. Each entry is the
    /// letter as the queue lists it (its `id` is the letter's id there). Empty
    /// after a clean shutdown.
    pub undelivered: Vec<DeadLetterInfo>,
}

/// Everything the bus handle, its publishers and the dispatcher share.
pub(crate) struct Shared<P> {
    pub(crate) ring: Ring<Event<P>>,
    pub(crate) control: ControlQueue<P>,
    pub(crate) stats: Stats,
    /// Live handler instances, for metrics snapshots. Changed only by the
    /// dispatcher, between batches.
    pub(crate) handlers: StdMutex<Vec<HandlerInfo>>,
    /// Dispatched-batch sizes (recorded when metrics are on).
    pub(crate) batch_sizes: StdMutex<LocalHistogram>,
    /// Set by a clock that jumped (a manual clock in tests): retry timers re-check.
    pub(crate) timer_kick: AtomicBool,
}

impl<P: Send + Sync> Wake for Shared<P> {
    /// The clock jumped: the retry timer re-checks.
    fn wake(&self) {
        self.timer_kick.store(true, Ordering::Release);
        self.ring.data_signal.notify();
    }
}

/// A live handler instance, as the metrics snapshot sees it.
#[derive(Debug, Clone)]
pub(crate) struct HandlerInfo {
    pub(crate) sub: SubscriptionId,
    pub(crate) name: StdArc<str>,
    pub(crate) lane: u32,
    pub(crate) metrics: StdArc<SlotMetrics>,
}

impl<P> std::fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl<P> Shared<P> {
    /// This bus's identity for [`Inside`](super::inside::Inside): the address of its shared state.
    #[inline]
    pub(crate) fn id(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Queues a control message and wakes the dispatcher; `false` if the dispatcher
    /// is gone (the message is dropped).
    pub(crate) fn send_control(&self, msg: Control<P>) -> bool {
        if !self.control.push(msg) {
            return false;
        }
        self.ring.data_signal.notify();
        true
    }
}
