//! State shared by the bus handle, its publishers and the dispatcher: the ring,
//! the control queue, the counters and the live handler list — and the report the
//! bus returns at shutdown ([`ShutdownReport`]).

use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicU64 as StdAtomicU64};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Instant;

use super::control::{Control, ControlQueue};
use super::follow_ups::FollowUps;
use super::slot_metrics::{breaker_from_code, SlotMetrics};
use crate::event::Event;
use crate::metrics::{Counters, HandlerMetrics, LocalHistogram, SharedCounters};
use crate::outcome::SubscriptionId;
use crate::resilience::{DeadLetterInfo, Wake};
use crate::ring::Ring;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};

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

/// What `Bus::shutdown` and `Bus::shutdown_timeout` return.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The bus's counters at the end: after a completed shutdown `dispatched ==
    /// published` (follow-ups, which never enter the ring, are counted in
    /// `follow_ups`, not in `published`), and `retried` counts retries that were
    /// made or whose event is listed in `undelivered`.
    pub counters: Counters,
    /// Events still waiting for a retry (or behind an open breaker) when the
    /// deadline passed, or whose next retry could not come due before it: moved
    /// to the dead-letter queue, where they can be inspected, redriven on another
    /// bus, or discarded. Each entry is the letter as the queue lists it (its
    /// `id` is the letter's id there). Empty after a clean shutdown.
    pub undelivered: Vec<DeadLetterInfo>,
    /// Every handler instance's numbers at the end (a partitioned subscription
    /// has one entry per lane), in subscription order.
    pub handlers: Vec<HandlerMetrics>,
    /// Whether the dispatcher finished: `false` only when
    /// [`Bus::shutdown_timeout`](crate::Bus::shutdown_timeout) returned at its
    /// deadline before it did — a handler still running (named in `stuck`), or
    /// a backlog of accepted events still being dispatched. The dispatcher then
    /// finishes by itself in the background; the counters are those of the
    /// moment the call returned.
    pub completed: bool,
    /// The handlers running when the deadline passed (empty when `completed`).
    pub stuck: Vec<StuckHandler>,
}

impl ShutdownReport {
    /// The numbers of the handler named `name` (its first lane, for a
    /// partitioned subscription: iterate `handlers` for the others).
    pub fn handler(&self, name: &str) -> Option<&HandlerMetrics> {
        self.handlers.iter().find(|h| &*h.handler == name)
    }
}

/// A handler still running when `shutdown_timeout`'s deadline passed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StuckHandler {
    /// Its subscription.
    pub subscription: SubscriptionId,
    /// Its name.
    pub handler: StdArc<str>,
    /// Its lane (0 unless partitioned).
    pub lane: u32,
    /// The events it held when it started the run it is stuck in: those of the
    /// batch given to it (including the one it is handling) plus those waiting
    /// at it for a retry. They are delivered if it ever returns.
    pub held: u64,
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
    /// Events published from inside the bus (see `follow_ups`).
    pub(crate) follow_ups: FollowUps<P>,
    /// Flush and finish: the dispatcher's progress, for callers waiting on it.
    pub(crate) progress: Progress,
    /// The deadline `shutdown_timeout` set for the whole stop, if any.
    pub(crate) stop_by: StdMutex<Option<Instant>>,
    /// The store's catch-up subscriptions on this bus, for metrics snapshots
    /// (dropped ones are pruned when a snapshot is taken).
    pub(crate) catch_ups: StdMutex<Vec<std::sync::Weak<dyn crate::store::ReportCatchUp>>>,
    /// Tracked events published to the ring and not yet dispatched.
    pub(crate) tracked: crate::delivery::PendingTracks,
    /// Every tracked delivery not known to be complete, for the bus to
    /// complete when it gives up (`shutdown_timeout`, the dispatcher's end).
    pub(crate) deliveries: crate::delivery::Deliveries,
}

/// How far the dispatcher has got, for `Bus::flush` and `shutdown_timeout`.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Every event with a root (ring sequence) below this is settled: handled or
    /// dead-lettered, with every follow-up and retry it caused. Updated while
    /// someone waits (`waiters > 0`); `u64::MAX` once the dispatcher finished.
    pub(crate) settled: AtomicU64,
    /// Callers waiting in `flush`.
    pub(crate) waiters: AtomicUsize,
    /// Set by a new flush caller: the dispatcher recomputes `settled`.
    pub(crate) kick: AtomicBool,
    /// The dispatcher thread has finished (normally or not).
    pub(crate) finished: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            settled: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            kick: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        }
    }
}

impl Progress {
    /// Wakes every caller waiting for progress (after `settled` or `finished`
    /// changed).
    pub(crate) fn notify(&self) {
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }

    /// Waits until `done()` or the deadline; returns `done()`.
    pub(crate) fn wait_for(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done() {
                return true;
            }
            match deadline {
                None => guard = self.changed.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return done();
                    }
                    guard = self
                        .changed
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
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
    pub(crate) activity: StdArc<Activity>,
}

/// Whether a handler instance is running now, and what it holds: for naming a
/// stuck handler. Two stores per run of the slot.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub(crate) running: StdAtomicBool,
    pub(crate) held: StdAtomicU64,
}

impl HandlerInfo {
    /// Its numbers now.
    pub(crate) fn snapshot(&self) -> HandlerMetrics {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.metrics;
        let (handler_time_ns, latency_ns) = m.summaries();
        HandlerMetrics {
            subscription: self.sub,
            handler: self.name.clone(),
            lane: self.lane,
            handled: m.handled.load(Relaxed),
            errors: m.errors.load(Relaxed),
            panics: m.panics.load(Relaxed),
            retries: m.retries.load(Relaxed),
            dead_lettered: m.dead_lettered.load(Relaxed),
            pending: m.pending.load(Relaxed),
            breaker: breaker_from_code(m.breaker.load(Relaxed)),
            handler_time_ns,
            latency_ns,
        }
    }

    /// If it is running now: it, as stuck.
    pub(crate) fn stuck(&self) -> Option<StuckHandler> {
        use std::sync::atomic::Ordering::Relaxed;
        self.activity.running.load(Relaxed).then(|| StuckHandler {
            subscription: self.sub,
            handler: self.name.clone(),
            lane: self.lane,
            held: self.activity.held.load(Relaxed),
        })
    }
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

    /// The live handler instances now.
    pub(crate) fn handler_infos(&self) -> Vec<HandlerInfo> {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
