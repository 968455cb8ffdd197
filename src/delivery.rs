//! Tracked publishing: [`Publisher::publish_tracked`](crate::Publisher::publish_tracked)
//! returns a [`Delivery`], which completes with a [`DeliveryOutcome`] once every
//! handler subscribed when the event is dispatched has finished with it —
//! succeeded, or failed for good (retries exhausted, dead-lettered, panicked) —
//! or once the bus gives up on it (it stopped before dispatching the event, or
//! before a handler holding it finished).
//!
//! ## The countdown
//! One `Tracker` per tracked event, shared (`Arc`) by the caller's [`Delivery`],
//! by whatever holds the event inside the bus, and by the bus's list of tracked
//! deliveries (`Deliveries`). All of its state is under one lock. Until the
//! dispatcher routes the event, the tracker is *unarmed*: only the dispatcher
//! holds it. Routing arms it with the handler instances (subscription and lane)
//! the event goes to, before any of them runs (`Tracker::arm`); each instance
//! then leaves the list when it is finished with the event
//! (`Tracker::succeeded` / `Tracker::failed`), on whatever thread it runs. The
//! one that empties the list of an armed tracker completes the delivery; an
//! event routed to no handler completes at `arm`.
//!
//! ## Forced completion
//! When the bus gives up — `shutdown_timeout` returns with a handler still
//! running, or the dispatcher stops (normally, or by a ringbus bug) — it forces
//! every delivery it still lists (`Tracker::force`): an unarmed one completes
//! as not dispatched; an armed one completes with a failure for each instance
//! still in its list. Whichever of a forced and a normal completion takes the
//! lock first sets the outcome; the other finds it set and does nothing, so a
//! delivery completes exactly once and `on_done` runs once. A handler that
//! finishes after a forced completion still leaves the list (no count goes
//! below zero) but changes nothing.
//!
//! ## Memory ordering
//! Every change to a tracker is made under its lock; the completer sets the
//! outcome under it, then wakes the waiters and runs the `on_done` callback
//! (outside the lock), so `wait`, `on_done` and the callback see the whole
//! outcome. `complete` (an atomic flag, set under the lock after the outcome)
//! is read Relaxed, only to prune the list of deliveries.
//!
//! Where a tracked event waits between publish and dispatch — a side table keyed
//! by ring sequence, `PendingTracks` in the bus's shared state — is described
//! in `docs/design.md` ("Tracked deliveries").

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use crate::outcome::{FailureReason, SubscriptionId};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crate::unwind::drop_quietly;

/// The message of the failure a forced completion reports for each handler
/// instance that still held the event.
pub(crate) const SHUT_DOWN: &str = "the bus shut down before the handler finished with the event";

/// What became of a tracked event at the handlers it was dispatched to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// Whether the bus dispatched the event. `false` only when the bus stopped
    /// first: a [`shutdown_timeout`](crate::Bus::shutdown_timeout) that gave up
    /// with the event still waiting (in the ring, or as a follow-up, behind a
    /// handler that did not return), or a dispatcher that died. Such an event
    /// reached no handler as far as this outcome knows (`handlers` is 0).
    pub dispatched: bool,
    /// How many handler instances the event was dispatched to (a partitioned
    /// subscription counts once: the event goes to one of its lanes).
    pub handlers: u32,
    /// How many of them handled it successfully (after retries, if any).
    pub succeeded: u32,
    /// The ones that failed for good, in the order they gave up — including,
    /// after a `shutdown_timeout` that gave up, one for each handler still
    /// holding the event then (not transient; its message says the bus shut
    /// down before the handler finished).
    pub failed: Vec<HandlerFailure>,
}

impl DeliveryOutcome {
    /// Whether the event was dispatched and every handler it went to succeeded
    /// (also true for a dispatched event no handler took). `false` for an event
    /// the bus stopped before dispatching.
    pub fn is_success(&self) -> bool {
        self.dispatched && self.failed.is_empty()
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
    /// pending queue) or gave up on a handler that had not finished with it
    /// (`shutdown_timeout`): `message` then says which.
    pub transient: bool,
    /// The last failure, or why the event stopped waiting for a retry.
    pub message: String,
}

type Callback = Box<dyn FnOnce(DeliveryOutcome) + Send + 'static>;

/// A handler instance holding a tracked event.
struct Holder {
    subscription: SubscriptionId,
    lane: u32,
    name: StdArc<str>,
}

struct State {
    /// Set by `arm`: the event was routed.
    armed: bool,
    /// The instances routed to that have not finished with the event. Empty
    /// until armed; once armed, it only shrinks.
    holders: Vec<Holder>,
    /// How many instances it was routed to.
    handlers: u32,
    succeeded: u32,
    failed: Vec<HandlerFailure>,
    /// Set once, by the completer (normal or forced).
    outcome: Option<DeliveryOutcome>,
    callback: Option<Callback>,
}

impl State {
    /// Takes `(subscription, lane)` out of the holders; whether the delivery
    /// is now due to complete (armed, nobody left, not yet complete).
    fn leave(&mut self, subscription: SubscriptionId, lane: u32) -> bool {
        let found = self
            .holders
            .iter()
            .position(|h| h.subscription == subscription && h.lane == lane);
        debug_assert!(
            found.is_some() || !self.armed || self.outcome.is_some(),
            "a handler instance finishes with an event it was routed"
        );
        if let Some(i) = found {
            self.holders.swap_remove(i);
        }
        self.armed && self.holders.is_empty() && self.outcome.is_none()
    }
}

/// The countdown of one tracked event (see the [module docs](self)).
pub(crate) struct Tracker {
    state: Mutex<State>,
    done: Condvar,
    /// Set (under the lock) once the outcome is; read Relaxed to prune the
    /// bus's list of deliveries.
    complete: AtomicBool,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("complete", &self.complete.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Tracker {
            state: Mutex::new(State {
                armed: false,
                holders: Vec::new(),
                handlers: 0,
                succeeded: 0,
                failed: Vec::new(),
                outcome: None,
                callback: None,
            }),
            done: Condvar::new(),
            complete: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the delivery has completed (a hint: Relaxed).
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Relaxed)
    }

    /// The dispatcher routed the event to these handler instances
    /// (subscription, lane, name), none of which has run yet; completes at once
    /// for none. Does nothing to a delivery already forced to complete.
    pub(crate) fn arm<'a>(
        &self,
        instances: impl Iterator<Item = (SubscriptionId, u32, &'a StdArc<str>)>,
    ) {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return;
        }
        debug_assert!(!state.armed, "an event is routed once");
        state.armed = true;
        state
            .holders
            .extend(instances.map(|(subscription, lane, name)| Holder {
                subscription,
                lane,
                name: name.clone(),
            }));
        state.handlers = state.holders.len() as u32;
        if state.holders.is_empty() {
            self.complete(state);
        }
    }

    /// Handler instance `(subscription, lane)` handled the event.
    pub(crate) fn succeeded(&self, subscription: SubscriptionId, lane: u32) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.succeeded += 1;
        }
        if state.leave(subscription, lane) {
            self.complete(state);
        }
    }

    /// Handler instance `(subscription, lane)`, named `handler`, failed for
    /// good with the event.
    pub(crate) fn failed(
        &self,
        (subscription, lane): (SubscriptionId, u32),
        handler: &str,
        reason: &FailureReason,
    ) {
        let transient = reason.is_transient();
        self.failed_with((subscription, lane), handler, transient, reason.to_string());
    }

    /// Handler instance `(subscription, lane)` stopped holding the event for a
    /// reason of the bus (unsubscribed, shut down, queue overflow) rather than
    /// its own call.
    pub(crate) fn failed_with(
        &self,
        (subscription, lane): (SubscriptionId, u32),
        handler: &str,
        transient: bool,
        message: String,
    ) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.failed.push(HandlerFailure {
                subscription,
                handler: handler.to_owned(),
                transient,
                message,
            });
        }
        if state.leave(subscription, lane) {
            self.complete(state);
        }
    }

    /// The bus gave up on the event (see the [module docs](self)): completes
    /// it now unless it has completed — as not dispatched if it was never
    /// routed, else with a failure saying `why` for each instance still holding
    /// it.
    pub(crate) fn force(&self, why: &str) {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return;
        }
        let stuck: Vec<HandlerFailure> = state
            .holders
            .iter()
            .map(|h| HandlerFailure {
                subscription: h.subscription,
                handler: h.name.to_string(),
                transient: false,
                message: why.to_owned(),
            })
            .collect();
        state.failed.extend(stuck);
        self.complete(state);
    }

    /// Sets the outcome (not set yet) from `state`, wakes the waiters, then —
    /// outside the lock — runs the `on_done` callback if one was registered.
    fn complete(&self, mut state: MutexGuard<'_, State>) {
        debug_assert!(state.outcome.is_none(), "a delivery completes once");
        let outcome = DeliveryOutcome {
            dispatched: state.armed,
            handlers: state.handlers,
            succeeded: state.succeeded,
            failed: std::mem::take(&mut state.failed),
        };
        let callback = state.callback.take();
        let for_callback = callback.as_ref().map(|_| outcome.clone());
        state.outcome = Some(outcome);
        self.complete.store(true, Ordering::Relaxed);
        drop(state);
        self.done.notify_all();
        if let (Some(f), Some(outcome)) = (callback, for_callback) {
            run_callback(f, outcome);
        }
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
/// Every delivery completes, exactly once: when the handlers are done with
/// the event, or when the bus gives up on it — a
/// [`shutdown_timeout`](crate::Bus::shutdown_timeout) that returns with a
/// handler still running completes every delivery not complete by then
/// (see [`DeliveryOutcome::dispatched`] and [`HandlerFailure`]). Such an event
/// may still be handled later, if the stuck handler returns: the outcome
/// stays as it was (at-least-once: treat it as not delivered).
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
/// assert!(outcome.dispatched && outcome.failed.is_empty());
/// assert!(outcome.is_success());
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
    /// completes it (a dispatcher or handler thread — keep it short — or, for a
    /// delivery the bus gives up on, the thread calling
    /// [`shutdown_timeout`](crate::Bus::shutdown_timeout)), or at once on this
    /// thread if it is complete already. Runs exactly once; a panic in `f` is
    /// contained and does not affect the bus.
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

/// Every tracked delivery the bus may still have to complete, so that one it
/// gives up on completes anyway (see [forced completion](self#forced-completion)).
/// A tracked publish lists its tracker once accepted (one lock); completed
/// ones are pruned when the list has doubled since the last pruning, so it
/// stays within twice the incomplete ones (plus a small floor). Untracked
/// publishes never touch it.
pub(crate) struct Deliveries {
    state: Mutex<Listed>,
}

struct Listed {
    live: Vec<Arc<Tracker>>,
    /// `live.len()` at which the next push prunes first.
    prune_at: usize,
    /// Set by `stop`: the reason later registrations are forced with at once.
    stopped: Option<&'static str>,
}

/// The list prunes no earlier than at this length.
const PRUNE_FLOOR: usize = 64;

impl fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

impl Deliveries {
    pub(crate) fn new() -> Self {
        Deliveries {
            state: Mutex::new(Listed {
                live: Vec::new(),
                prune_at: PRUNE_FLOOR,
                stopped: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Listed> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists an accepted tracked event's tracker; forces it at once if the bus
    /// has given up already.
    pub(crate) fn register(&self, tracker: &Arc<Tracker>) {
        let mut listed = self.lock();
        if let Some(why) = listed.stopped {
            drop(listed);
            tracker.force(why);
            return;
        }
        if listed.live.len() >= listed.prune_at {
            listed.live.retain(|t| !t.is_complete());
            listed.prune_at = PRUNE_FLOOR.max(2 * listed.live.len());
        }
        listed.live.push(tracker.clone());
    }

    /// The bus gives up: forces every listed delivery, and every one listed
    /// later, with `why`. Idempotent (the first reason stays).
    pub(crate) fn stop(&self, why: &'static str) {
        let live = {
            let mut listed = self.lock();
            listed.stopped.get_or_insert(why);
            std::mem::take(&mut listed.live)
        };
        // Outside the list's lock: a forced completion runs `on_done` callbacks.
        for t in live {
            t.force(why);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn name() -> StdArc<str> {
        "h".into()
    }

    #[test]
    fn force_names_the_instances_still_holding_and_later_finishes_change_nothing() {
        let t = Tracker::new();
        let d = Delivery::new(t.clone());
        let n = name();
        t.arm([(SubscriptionId(1), 0, &n), (SubscriptionId(2), 3, &n)].into_iter());
        t.succeeded(SubscriptionId(2), 3);
        t.force(SHUT_DOWN);
        t.succeeded(SubscriptionId(1), 0);
        let o = d.wait();
        assert!(o.dispatched && !o.is_success());
        assert_eq!((o.handlers, o.succeeded), (2, 1));
        assert_eq!(o.failed.len(), 1);
        assert_eq!(o.failed[0].subscription, SubscriptionId(1));
        assert_eq!(o.failed[0].message, SHUT_DOWN);
    }

    #[test]
    fn force_before_routing_is_not_dispatched_and_routing_after_it_is_ignored() {
        let t = Tracker::new();
        let d = Delivery::new(t.clone());
        t.force(SHUT_DOWN);
        let n = name();
        t.arm(std::iter::once((SubscriptionId(1), 0, &n)));
        t.succeeded(SubscriptionId(1), 0);
        let o = d.wait();
        assert_eq!((o.dispatched, o.handlers, o.succeeded), (false, 0, 0));
        assert!(o.failed.is_empty() && !o.is_success());
    }

    #[test]
    fn a_registration_after_stop_is_forced_at_once() {
        let list = Deliveries::new();
        let early = Tracker::new();
        list.register(&early);
        list.stop(SHUT_DOWN);
        assert!(early.is_complete());
        let late = Tracker::new();
        list.register(&late);
        assert!(late.is_complete());
        assert!(list.lock().live.is_empty());
    }

    #[test]
    fn completed_deliveries_are_pruned() {
        let list = Deliveries::new();
        let n = if cfg!(miri) { 200 } else { 10_000 };
        for _ in 0..n {
            let t = Tracker::new();
            list.register(&t);
            t.arm(std::iter::empty());
        }
        let open: Vec<_> = (0..10).map(|_| Tracker::new()).collect();
        for t in &open {
            list.register(t);
        }
        let listed = list.lock().live.len();
        assert!(listed <= 2 * PRUNE_FLOOR + 10, "{listed} listed");
        drop(list.lock());
        list.stop(SHUT_DOWN);
        assert!(open.iter().all(|t| t.is_complete()));
    }
}
