//! State shared by the bus handle, its publishers and the dispatcher: the ring,
//! the control queue, the counters and the live handler list — and what the bus
//! reports from them ([`BusStats`], [`ShutdownReport`]).

use std::sync::{Arc as StdArc, Mutex as StdMutex};

use super::control::{Control, ControlQueue};
use super::failure::SubscriptionId;
use super::slot_metrics::SlotMetrics;
use crate::event::{Event, EventId, EventType};
use crate::metrics::LocalHistogram;
use crate::resilience::Wake;
use crate::ring::Ring;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// Counters kept by the dispatcher, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) dispatched: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
}

/// A snapshot of a bus's counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Events taken from the ring and routed (whether or not any handler wanted them).
    pub dispatched: u64,
    /// Handler calls that returned `Ok`.
    pub delivered: u64,
    /// Handler calls that returned an error or panicked.
    pub failed: u64,
    /// Of `failed`, the calls that panicked.
    pub panicked: u64,
    /// Batches dispatched.
    pub batches: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> BusStats {
        BusStats {
            dispatched: self.dispatched.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// An event still waiting for a retry (or behind an open breaker) when the bus
/// shut down and the retry drain deadline passed. It was moved to the dead-letter
/// queue, where it can be inspected, redriven on another bus, or discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The subscription it was waiting at.
    pub subscription: SubscriptionId,
    /// That subscription's handler name.
    pub handler: String,
    /// Calls made so far.
    pub attempts: usize,
}

/// What `Bus::shutdown` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events whose publish returned `Ok`.
    pub published: u64,
    /// Events the dispatcher routed: equal to `published` after a clean shutdown.
    pub dispatched: u64,
    /// Handler calls that returned `Ok`.
    pub delivered: u64,
    /// Handler calls that failed (error or panic).
    pub failed: u64,
    /// Of `failed`, the calls that panicked.
    pub panicked: u64,
    /// Retries scheduled: failed calls given another attempt. Each was made, or
    /// its event is listed in `undelivered`.
    pub retried: u64,
    /// Events moved to the dead-letter queue (including `undelivered`).
    pub dead_lettered: u64,
    /// Events still waiting for a retry when the drain deadline passed; they are in
    /// the dead-letter queue. Empty after a clean shutdown.
    pub undelivered: Vec<Undelivered>,
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
