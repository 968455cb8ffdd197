//! Tracked publishing: [`Publisher::publish_tracked`](crate::Publisher::publish_tracked)
//! returns a [`Delivery`], which completes with a [`DeliveryOutcome`] once every
//! handler subscribed when the event is dispatched has finished with it —
//! succeeded, or failed for good (retries exhausted, dead-lettered, panicked).
//!
//! ## The countdown
//! One `Tracker` per tracked event, shared (`Arc`) by the caller's [`Delivery`]
//! and by whatever holds the event inside the bus. Its `remaining` counter starts
//! at 1, the dispatcher's own hold. When the dispatcher routes the event it adds
//! one per handler instance (lane) the event goes to (`Tracker::arm`), then
//! drops its hold; each instance drops one when it is finished with the event
//! (`Tracker::succeeded` / `Tracker::failed`), on whatever thread it runs.
//! Whoever takes `remaining` from 1 to 0 — and only they, since a counter can
//! pass 1 → 0 once — completes the delivery: builds the outcome under the lock,
//! wakes the waiters, and then, outside the lock, runs the `on_done` callback if
//! one was registered before. An event routed to no handler completes when the
//! dispatcher drops its hold, at dispatch.
//!
//! ## Memory ordering
//! `succeeded` is counted (Relaxed) and failures are pushed (under the lock)
//! before the counter's `fetch_sub(AcqRel)`; the RMWs on `remaining` form one
//! release sequence, so the completer's `fetch_sub` acquires every earlier
//! finisher's writes. `on_done` and `wait` synchronise with the completer
//! through the lock.
//!
//! Where a tracked event waits between publish and dispatch — a side table keyed
//! by ring sequence, `PendingTracks` in the bus's shared state — is described
//! in `docs/design.md` ("Tracked deliveries").

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::outcome::{FailureReason, SubscriptionId};
use crate::sync::{Arc, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crate::unwind::drop_quietly;

/// What became of a tracked event at the handlers it was dispatched to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// How many handler instances the event was dispatched to (a partitioned
    /// subscription counts once: the event goes to one of its lanes).
    pub handlers: u32,
    /// How many of them handled it successfully (after retries, if any).
    pub succeeded: u32,
    /// The ones that failed for good, in the order they gave up.
    pub failed: Vec<HandlerFailure>,
}

impl DeliveryOutcome {
    /// Whether every handler succeeded (also true for an event no handler took).
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A handler that failed for good with a tracked event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerFailure {
    /// The subscription.
    pub subscription: SubscriptionId,
    /// Its handler name (as in metrics and dead letters).
    pub handler: String,
    /// Whether the handler's last failure was a transient error (its retries
    /// ran out). `false` for a permanent error or a panic, and when the bus
    /// stopped the event waiting for a retry (unsubscribe, shutdown, a full
    /// pending queue): `message` then says which.
    pub transient: bool,
    /// The last failure, or why the event stopped waiting for a retry.
    pub message: String,
}

type Callback = Box<dyn FnOnce(DeliveryOutcome) + Send + 'static>;

struct State {
    failed: Vec<HandlerFailure>,
    /// Set once, by the completer.
    outcome: Option<DeliveryOutcome>,
    callback: Option<Callback>,
}

/// The countdown of one tracked event (see the [module docs](self)).
pub(crate) struct Tracker {
    /// Holds not yet dropped: 1 (the dispatcher's) + handler instances routed to
    /// − those finished. In range `0 ..= 1 + handlers`; reaches 0 once.
    remaining: AtomicUsize,
    /// Handler instances the event was routed to; written by the dispatcher
    /// before it drops its hold.
    handlers: AtomicUsize,
    succeeded: AtomicUsize,
    state: Mutex<State>,
    done: Condvar,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Tracker {
            remaining: AtomicUsize::new(1),
            handlers: AtomicUsize::new(0),
            succeeded: AtomicUsize::new(0),
            state: Mutex::new(State {
                failed: Vec::new(),
                outcome: None,
                callback: None,
            }),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The dispatcher routed the event to `handlers` instances (none run yet):
    /// adds their holds and drops its own — completing at once for `0`.
    pub(crate) fn arm(&self, handlers: u32) {
        self.handlers.store(handlers as usize, Ordering::Relaxed);
        self.remaining
            .fetch_add(handlers as usize, Ordering::Relaxed);
        self.release();
    }

    /// One handler instance handled the event.
    pub(crate) fn succeeded(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        self.release();
    }

    /// One handler instance failed for good with the event.
    pub(crate) fn failed(
        &self,
        subscription: SubscriptionId,
        handler: &str,
        reason: &FailureReason,
    ) {
        let transient = reason.is_transient();
        self.failed_with(subscription, handler, transient, reason.to_string());
    }

    /// One handler instance stopped holding the event for a reason of the bus
    /// (unsubscribed, shut down, queue overflow) rather than its own call.
    pub(crate) fn failed_with(
        &self,
        subscription: SubscriptionId,
        handler: &str,
        transient: bool,
        message: String,
    ) {
        self.lock().failed.push(HandlerFailure {
            subscription,
            handler: handler.to_owned(),
            transient,
            message,
        });
        self.release();
    }

    fn release(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.complete();
        }
    }

    /// Run once, by whoever dropped the last hold.
    fn complete(&self) {
        let mut state = self.lock();
        debug_assert!(state.outcome.is_none(), "a delivery completes once");
        let outcome = DeliveryOutcome {
            handlers: self.handlers.load(Ordering::Relaxed) as u32,
            succeeded: self.succeeded.load(Ordering::Relaxed) as u32,
            failed: std::mem::take(&mut state.failed),
        };
        let callback = state.callback.take();
        let for_callback = callback.as_ref().map(|_| outcome.clone());
        state.outcome = Some(outcome);
        drop(state);
        self.done.notify_all();
        if let (Some(f), Some(outcome)) = (callback, for_callback) {
            run_callback(f, outcome);
        }
    }

    /// The bus stopped before it dispatched the event (its dispatcher died):
    /// completes with no handler if nobody else will.
    pub(crate) fn abandon(&self) {
        // Only reachable for an event still in the side table: its count is the
        // dispatcher's hold alone, and the dispatcher is gone.
        self.release();
    }
}

/// Runs an `on_done` callback; a panic there is contained (it is user code, run
/// on a bus thread).
fn run_callback(f: Callback, outcome: DeliveryOutcome) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || f(outcome))) {
        crate::log::warning!("ringbus: an on_done callback panicked");
        drop_quietly(p);
    }
}

/// The completion handle of a tracked publish (see
/// [`Publisher::publish_tracked`](crate::Publisher::publish_tracked)).
///
/// Dropping it is fine: the event is delivered all the same.
///
/// # Examples
/// ```
/// use ringbus::{BusBuilder, Event, EventType, HandlerError, Source};
///
/// let bus = BusBuilder::<u32>::new().build().unwrap();
/// bus.subscribe("order.placed", |_e: &Event<u32>| -> Result<(), HandlerError> { Ok(()) })
///     .unwrap();
/// let mut p = bus.publisher();
/// let delivery = p
///     .publish_tracked(Event::new(EventType::new("order.placed"), Source::new("doc"), 7))
///     .unwrap();
/// let outcome = delivery.wait();
/// assert_eq!((outcome.handlers, outcome.succeeded), (1, 1));
/// assert!(outcome.failed.is_empty());
/// bus.shutdown().unwrap();
/// ```
pub struct Delivery {
    tracker: Arc<Tracker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("done", &self.is_done())
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(tracker: Arc<Tracker>) -> Self {
        Delivery { tracker }
    }

    /// Whether every handler has finished with the event.
    pub fn is_done(&self) -> bool {
        self.tracker.lock().outcome.is_some()
    }

    /// Blocks until the delivery completes; returns its outcome.
    pub fn wait(&self) -> DeliveryOutcome {
        let t = &*self.tracker;
        let mut state = t.lock();
        loop {
            if let Some(outcome) = &state.outcome {
                return outcome.clone();
            }
            state = t.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until the delivery completes or `timeout` passes; `None` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<DeliveryOutcome> {
        let t = &*self.tracker;
        let deadline = Instant::now().checked_add(timeout);
        let mut state = t.lock();
        loop {
            if let Some(outcome) = &state.outcome {
                return Some(outcome.clone());
            }
            let left = match deadline {
                Some(d) => d
                    .checked_duration_since(Instant::now())
                    .filter(|l| !l.is_zero())?,
                None => Duration::from_secs(3600),
            };
            state = t
                .done
                .wait_timeout(state, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Runs `f` with the outcome once the delivery completes: on the thread that
    /// completes it (a dispatcher or handler thread — keep it short), or at once
    /// on this thread if it is complete already. Runs exactly once; a panic in
    /// `f` is contained and does not affect the bus.
    pub fn on_done(self, f: impl FnOnce(DeliveryOutcome) + Send + 'static) {
        let mut state = self.tracker.lock();
        match &state.outcome {
            Some(outcome) => {
                let outcome = outcome.clone();
                drop(state);
                run_callback(Box::new(f), outcome);
            }
            None => state.callback = Some(Box::new(f)),
        }
    }
}

/// The tracked events of one batch, by offset (increasing), for the handler
/// slots to report to. Empty — and never looked at per event — when nothing in
/// the batch is tracked.
#[derive(Default)]
pub(crate) struct Tracks {
    entries: Vec<(u32, Arc<Tracker>)>,
}

impl Tracks {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tracker of the event at `off`, if it is tracked.
    #[inline]
    pub(crate) fn get(&self, off: u32) -> Option<&Arc<Tracker>> {
        if self.is_empty() {
            return None;
        }
        self.entries
            .binary_search_by_key(&off, |(o, _)| *o)
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub(crate) fn push(&mut self, off: u32, tracker: Arc<Tracker>) {
        debug_assert!(
            self.entries.last().is_none_or(|(o, _)| *o < off),
            "in order"
        );
        self.entries.push((off, tracker));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u32, Arc<Tracker>)> {
        self.entries.iter()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Tracked events published to the ring and not yet dispatched, keyed by ring
/// sequence. A producer registers its event after writing it into its claimed
/// slot and before publishing it; the dispatcher takes the entries of each batch
/// after acquiring it. `len` lets the dispatcher skip the lock (one Relaxed load
/// per batch) while nothing is tracked: the slot's publish (Release) orders the
/// producer's increment before the dispatcher's acquire of the batch.
pub(crate) struct PendingTracks {
    len: AtomicUsize,
    entries: Mutex<Vec<(u64, Arc<Tracker>)>>,
}

impl fmt::Debug for PendingTracks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTracks")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish()
    }
}

impl PendingTracks {
    pub(crate) fn new() -> Self {
        PendingTracks {
            len: AtomicUsize::new(0),
            entries: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, Arc<Tracker>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the tracker of the event written at `sequence` (not yet published).
    pub(crate) fn insert(&self, sequence: u64, tracker: Arc<Tracker>) {
        self.lock().push((sequence, tracker));
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back the entry of `sequence`, whose publish lost to the close.
    pub(crate) fn remove(&self, sequence: u64) {
        let mut entries = self.lock();
        if let Some(i) = entries.iter().position(|(s, _)| *s == sequence) {
            entries.swap_remove(i);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Moves the entries of sequences in `[lo, hi)` into `into`, by offset from
    /// `lo`, in order. Cheap when nothing is tracked.
    pub(crate) fn take_range(&self, lo: u64, hi: u64, into: &mut Tracks) {
        into.clear();
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut entries = self.lock();
        let mut taken: Vec<(u64, Arc<Tracker>)> = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            if (lo..hi).contains(&entries[i].0) {
                taken.push(entries.swap_remove(i));
            } else {
                i += 1;
            }
        }
        self.len.fetch_sub(taken.len(), Ordering::Relaxed);
        drop(entries);
        taken.sort_unstable_by_key(|(s, _)| *s);
        for (s, t) in taken {
            into.push((s - lo) as u32, t);
        }
    }

    /// Takes every entry (the dispatcher is stopping).
    pub(crate) fn take_all(&self) -> Vec<Arc<Tracker>> {
        let taken: Vec<_> = self.lock().drain(..).map(|(_, t)| t).collect();
        self.len.store(0, Ordering::Relaxed);
        taken
    }
}
