//! The dispatcher: takes published events from the ring in batches, routes them
//! through the precomputed table, and runs each handler with work over its events
//! in publish order — different handlers concurrently on a rayon pool.
//!
//! ## One batch
//! 1. Apply pending control messages (subscribe / unsubscribe). They take effect
//!    between batches, so a batch sees one fixed set of handlers.
//! 2. Poll the ring for `[lo, hi)`, at most `max_batch` published events.
//! 3. Route: for each event, one table index gives its targets; each target's slot
//!    (lane, for a partitioned handler) gets the event's offset appended to its
//!    work list. Work lists keep their capacity across batches: no allocation in
//!    the steady state.
//! 4. Run: one handler with work runs inline on the dispatcher thread; several run
//!    as one rayon task each (`in_place_scope`, the dispatcher running one of them
//!    itself). Rayon is never a per-event transport.
//! 5. Hand each failure to the [`FailurePolicy`], in order, on the dispatcher thread.
//! 6. Release the batch: drop the events, advance the ring's consumer cursor.

mod failure;
mod flow;
mod handler;
mod pattern;
mod slot;
mod table;

pub use failure::{Failure, FailurePolicy, FailureReason, LogFailures, SubscriptionId};
pub use flow::{FlowLog, FlowRecord, FlowTrace};
pub use handler::{ErrorKind, Handler, HandlerError};
pub use pattern::{IntoPatterns, Pattern, PatternError};
pub use slot::BreakerListener;
pub(crate) use slot::{breaker_from_code, ResilienceSpec, Services, SlotMetrics};

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use crate::resilience::DeadLetter;
use crate::ring::{Poll, Ring};
use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crate::{Event, EventId};
use slot::HandlerSlot;
use table::{Route, Table, Target};

/// Where handlers run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Execution {
    /// A pool owned by the bus, with this many threads (the dispatcher thread
    /// takes part in each batch as well).
    Pool {
        /// Worker threads; at least 1.
        threads: usize,
    },
    /// A rayon pool the application already has.
    SharedPool(StdArc<rayon::ThreadPool>),
    /// Every handler on the dispatcher thread, one after the other: no pool hop,
    /// lowest latency, no parallelism between handlers.
    Inline,
}

impl Default for Execution {
    /// A pool of `available_parallelism - 1` threads (at least 1): with the
    /// dispatcher thread, one thread per core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Execution::Pool {
            threads: cores.saturating_sub(1).max(1),
        }
    }
}

/// The resolved execution mode.
pub(crate) enum Executor {
    Pool(StdArc<rayon::ThreadPool>),
    Inline,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Executor::Pool(p) => write!(f, "Pool({} threads)", p.current_num_threads()),
            Executor::Inline => f.write_str("Inline"),
        }
    }
}

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
    pub event_type: crate::EventType,
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
    /// Retry calls made.
    pub retried: u64,
    /// Events moved to the dead-letter queue (including `undelivered`).
    pub dead_lettered: u64,
    /// Events still waiting for a retry when the drain deadline passed; they are in
    /// the dead-letter queue. Empty after a clean shutdown.
    pub undelivered: Vec<Undelivered>,
}

/// A one-shot reply slot for a control message.
#[derive(Debug)]
pub(crate) struct Ack {
    done: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Ack {
    pub(crate) fn new() -> Arc<Ack> {
        Arc::new(Ack {
            done: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    fn complete(&self, applied: bool) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(applied);
        self.cv.notify_all();
    }

    /// Waits for the dispatcher's answer: whether the message was applied.
    pub(crate) fn wait(&self) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(applied) = *done {
                return applied;
            }
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A new subscription, as sent to the dispatcher.
pub(crate) struct SubscribeSpec<P> {
    pub(crate) id: SubscriptionId,
    /// `None`: every event type.
    pub(crate) patterns: Option<Vec<Pattern>>,
    /// One handler per lane (one for a plain subscription).
    pub(crate) handlers: Vec<Box<dyn Handler<P>>>,
    pub(crate) name: StdArc<str>,
    /// Retry policy, breaker, queue bound — for subscriptions that asked for them.
    pub(crate) resilience: Option<ResilienceSpec<P>>,
}

pub(crate) enum Control<P> {
    Subscribe(SubscribeSpec<P>, Arc<Ack>),
    Unsubscribe(SubscriptionId, Arc<Ack>),
    /// Dead letters to deliver again to their handlers.
    Redrive(Vec<DeadLetter<P>>, Arc<Ack>),
}

/// Control messages waiting for the next batch boundary.
pub(crate) struct ControlQueue<P> {
    /// Set after a push, cleared by the dispatcher before it drains the queue.
    pending: AtomicBool,
    queue: Mutex<Vec<Control<P>>>,
    /// Set by the dispatcher when it exits; later messages are refused.
    closed: AtomicBool,
}

impl<P> ControlQueue<P> {
    pub(crate) fn new() -> Self {
        ControlQueue {
            pending: AtomicBool::new(false),
            queue: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    #[inline]
    fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn take(&self) -> Vec<Control<P>> {
        self.pending.store(false, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *q)
    }

    /// Refuses every queued and later message.
    fn close(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Relaxed);
        for c in q.drain(..) {
            match c {
                Control::Subscribe(_, ack)
                | Control::Unsubscribe(_, ack)
                | Control::Redrive(_, ack) => ack.complete(false),
            }
        }
    }
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
    pub(crate) batch_sizes: StdMutex<crate::metrics::LocalHistogram>,
    /// Set by a clock that jumped (a manual clock in tests): retry timers re-check.
    pub(crate) timer_kick: AtomicBool,
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
    /// Whether the dispatcher has stopped taking control messages.
    pub(crate) fn control_is_closed(&self) -> bool {
        self.control.closed.load(Ordering::Relaxed)
    }

    /// Queues a control message and wakes the dispatcher; `false` if the dispatcher
    /// is gone (the message is dropped).
    pub(crate) fn send_control(&self, msg: Control<P>) -> bool {
        {
            let mut q = self.control.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.control.closed.load(Ordering::Relaxed) {
                return false;
            }
            q.push(msg);
        }
        self.control.pending.store(true, Ordering::Release);
        self.ring.data_signal.notify();
        true
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Non-zero while this thread runs handlers or the dispatcher loop: blocking on
    /// the dispatcher from here would deadlock.
    static DISPATCH_DEPTH: Cell<u32> = const { Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static DISPATCH_DEPTH: Cell<u32> = Cell::new(0);
}

/// Marks the current thread as running dispatcher work while alive.
pub(crate) struct DispatchContext(());

impl DispatchContext {
    pub(crate) fn enter() -> Self {
        DISPATCH_DEPTH.with(|d| d.set(d.get() + 1));
        DispatchContext(())
    }

    /// Whether the current thread runs dispatcher work (a handler, the loop).
    pub(crate) fn is_active() -> bool {
        DISPATCH_DEPTH.with(|d| d.get() > 0)
    }
}

impl Drop for DispatchContext {
    fn drop(&mut self) {
        DISPATCH_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// The batch being dispatched, shared read-only by the handler tasks.
pub(crate) struct BatchView<'a, P> {
    ring: &'a Ring<Event<P>>,
    lo: u64,
    len: u32,
}

impl<P> BatchView<'_, P> {
    #[inline]
    pub(crate) fn get(&self, offset: u32) -> &Event<P> {
        assert!(offset < self.len, "offset outside the batch");
        // SAFETY: the dispatcher polled `[lo, lo + len)` as published events and
        // releases it only after every handler task of the batch has returned; the
        // offset is in range (checked above).
        unsafe { self.ring.get(self.lo + u64::from(offset)) }
    }

    /// The ring sequence of the event at `offset`.
    #[inline]
    pub(crate) fn sequence(&self, offset: u32) -> u64 {
        self.lo + u64::from(offset)
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn call_hook(name: &str, hook: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        eprintln!("ringbus: handler {name} panicked in {hook}");
    }
}

/// Where a subscription lives in `slots`.
struct SubInfo {
    id: SubscriptionId,
    target: Target,
}

/// What one [`Dispatcher::step`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Dispatched or skipped a batch, or ran due retries.
    Worked,
    /// Nothing published; the ring is open.
    Idle,
    /// The ring is closed and every event published before the close is dispatched.
    Drained,
}

/// Dispatcher settings beyond the ring.
pub(crate) struct DispatchConfig<P> {
    pub(crate) max_batch: u64,
    pub(crate) exec: Executor,
    pub(crate) policy: Box<dyn FailurePolicy<P>>,
    pub(crate) services: Services<P>,
    pub(crate) flow_log: Option<StdArc<FlowLog>>,
    /// How long shutdown keeps running due retries before it gives up on them.
    pub(crate) retry_drain: Duration,
}

/// The consumer side of a bus. Runs on its own thread ([`Dispatcher::run`]), or is
/// stepped inline ([`Dispatcher::step`]).
pub(crate) struct Dispatcher<P> {
    shared: Arc<Shared<P>>,
    next: u64,
    table: Table,
    routes: Vec<Route>,
    subs: Vec<SubInfo>,
    slots: Vec<Option<HandlerSlot<P>>>,
    config: DispatchConfig<P>,
    // Local counters, published to `shared.stats` once per batch.
    dispatched: u64,
    delivered: u64,
    failed: u64,
    panicked: u64,
    retried: u64,
    dead_lettered: u64,
    batches: u64,
    skipped: u64,
}

impl<P> std::fmt::Debug for Dispatcher<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("next", &self.next)
            .field("subscriptions", &self.subs.len())
            .field("exec", &self.config.exec)
            .finish_non_exhaustive()
    }
}

impl<P: Send + Sync + 'static> Dispatcher<P> {
    pub(crate) fn new(shared: Arc<Shared<P>>, config: DispatchConfig<P>) -> Self {
        Dispatcher {
            shared,
            next: 0,
            table: Table::default(),
            routes: Vec::new(),
            subs: Vec::new(),
            slots: Vec::new(),
            config,
            dispatched: 0,
            delivered: 0,
            failed: 0,
            panicked: 0,
            retried: 0,
            dead_lettered: 0,
            batches: 0,
            skipped: 0,
        }
    }

    /// Runs until the ring is closed and drained, then shuts the handlers down.
    pub(crate) fn run(mut self) -> ShutdownReport {
        let _ctx = DispatchContext::enter();
        loop {
            match self.step() {
                Step::Worked => {}
                Step::Idle => self.wait(),
                Step::Drained => break,
            }
        }
        self.finish()
    }

    /// The real-time instant at which the earliest queued retry falls due.
    fn next_timer(&self) -> Option<Instant> {
        let due = self
            .slots
            .iter()
            .flatten()
            .filter_map(|s| s.next_due())
            .min()?;
        let now = self.config.services.clock.now();
        Some(Instant::now() + due.saturating_sub(now))
    }

    fn wait(&self) {
        let (shared, next) = (&*self.shared, self.next);
        let timer = self.next_timer();
        let ready = || {
            shared.control.is_pending()
                || shared.ring.poll(next, 1) != Poll::Empty
                || shared.ring.closed_at() == Some(next)
                || shared.timer_kick.load(Ordering::Acquire)
        };
        match timer {
            None => shared.ring.consumer_wait_until(ready),
            Some(deadline) => shared.ring.consumer_wait_deadline(deadline, ready),
        }
        shared.timer_kick.store(false, Ordering::Relaxed);
    }

    /// One iteration: control messages, then at most one batch (or the due
    /// retries, when no event is waiting). Never blocks (except inside handlers).
    pub(crate) fn step(&mut self) -> Step {
        if self.shared.control.is_pending() {
            self.apply_control();
        }
        let lo = self.next;
        match self.shared.ring.poll(lo, self.config.max_batch) {
            Poll::Events(hi) => {
                self.dispatch(lo, hi);
                self.next = hi;
                Step::Worked
            }
            Poll::Skip(hi) => {
                // SAFETY: `[lo, hi)` was just polled as skipped: no events in it.
                unsafe { self.shared.ring.release(lo, hi, false) };
                self.skipped += hi - lo;
                self.shared
                    .stats
                    .skipped
                    .store(self.skipped, Ordering::Relaxed);
                self.next = hi;
                Step::Worked
            }
            Poll::Empty => {
                if self.retries_due() {
                    self.dispatch(lo, lo);
                    return Step::Worked;
                }
                if self.shared.ring.closed_at() == Some(lo) {
                    Step::Drained
                } else {
                    Step::Idle
                }
            }
        }
    }

    /// Whether some queued event can be tried now.
    fn retries_due(&self) -> bool {
        let now = self.config.services.clock.now();
        self.slots
            .iter()
            .flatten()
            .any(|s| s.next_due().is_some_and(|d| d <= now))
    }

    /// Applies pending control messages, runs due retries until every queue is
    /// empty or the drain deadline passes (the rest go to the dead-letter queue and
    /// the report), runs every handler's shutdown hook, and refuses later control
    /// messages. Call once the ring is drained.
    pub(crate) fn finish(mut self) -> ShutdownReport {
        self.apply_control();
        let deadline = Instant::now() + self.config.retry_drain;
        while self.slots.iter().flatten().any(|s| s.has_queue()) && Instant::now() < deadline {
            if self.retries_due() {
                self.dispatch(self.next, self.next);
            } else {
                let until = self.next_timer().map_or(deadline, |t| t.min(deadline));
                let kick = &self.shared.timer_kick;
                self.shared
                    .ring
                    .consumer_wait_deadline(until, || kick.load(Ordering::Acquire));
                kick.store(false, Ordering::Relaxed);
            }
        }
        let mut undelivered = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            for w in slot.drain_queue() {
                undelivered.push(Undelivered {
                    event_id: w.event.id,
                    event_type: w.event.event_type,
                    subscription: slot.sub,
                    handler: slot.name.to_string(),
                    attempts: w.attempts.len(),
                });
                let mut attempts = w.attempts;
                attempts.push(crate::resilience::Attempt {
                    at: self.config.services.clock.now(),
                    error: "undelivered at shutdown: retry drain deadline passed".into(),
                    panicked: false,
                });
                self.dead_lettered += 1;
                if let Err(e) =
                    self.config
                        .services
                        .dlq
                        .push(w.event, slot.sub, slot.name.clone(), attempts)
                {
                    eprintln!("ringbus: could not dead-letter an undelivered event: {e}");
                }
            }
        }
        self.shared.control.close();
        for slot in self.slots.iter_mut().flatten() {
            let handler = &mut slot.handler;
            call_hook(&slot.name, "on_shutdown", || handler.on_shutdown());
        }
        self.slots.clear();
        self.publish_stats();
        let published = self.shared.ring.closed_at().unwrap_or(self.next) - self.skipped;
        ShutdownReport {
            published,
            dispatched: self.dispatched,
            delivered: self.delivered,
            failed: self.failed,
            panicked: self.panicked,
            retried: self.retried,
            dead_lettered: self.dead_lettered,
            undelivered,
        }
    }

    /// Dispatches `[lo, hi)` (possibly empty: then only due retries run).
    fn dispatch(&mut self, lo: u64, hi: u64) {
        #[cfg(feature = "tracing")]
        let _span = tracing::trace_span!("ringbus.batch", lo, hi, len = hi - lo).entered();
        let ring = &self.shared.ring;
        for seq in lo..hi {
            // SAFETY: `[lo, hi)` was just polled as published and is released below.
            let event = unsafe { ring.get(seq) };
            for target in self.table.route(event.event_type, &self.routes) {
                let i = target.slot_for(event);
                debug_assert!(self.slots[i].is_some(), "route to an empty slot");
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.work.push((seq - lo) as u32);
                }
            }
        }

        let batch = BatchView {
            ring,
            lo,
            len: (hi - lo) as u32,
        };
        let busy = |s: &HandlerSlot<P>| !s.work.is_empty() || s.has_queue();
        let active = self.slots.iter().flatten().filter(|s| busy(s)).count();
        let services = &self.config.services;
        match &self.config.exec {
            Executor::Pool(pool) if active > 1 => {
                let batch = &batch;
                pool.in_place_scope(|scope| {
                    let mut it = self.slots.iter_mut().flatten().filter(|s| busy(s));
                    let mine = it.next();
                    for slot in it {
                        scope.spawn(move |_| slot.run(batch, services));
                    }
                    if let Some(slot) = mine {
                        slot.run(batch, services);
                    }
                });
            }
            _ => {
                for slot in self.slots.iter_mut().flatten().filter(|s| busy(s)) {
                    slot.run(&batch, services);
                }
            }
        }

        let mut flow = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            self.delivered += slot.run_ok;
            self.failed += slot.run_failed;
            self.panicked += slot.run_panicked;
            self.retried += slot.run_retried;
            self.dead_lettered += slot.run_dead_lettered;
            slot.run_ok = 0;
            slot.run_failed = 0;
            slot.run_panicked = 0;
            slot.run_retried = 0;
            slot.run_dead_lettered = 0;
            if self.config.flow_log.is_some() && !slot.flow.is_empty() {
                flow.extend(
                    slot.flow
                        .drain(..)
                        .map(|e| (slot.sub, slot.name.clone(), slot.lane, e)),
                );
            }
            for (failed, reason) in slot.failures.drain(..) {
                let (event, sequence) = match &failed {
                    slot::Failed::Fresh(off) => (batch.get(*off), batch.sequence(*off)),
                    slot::Failed::Queued(e, seq) => (&**e, *seq),
                };
                let failure = Failure {
                    event,
                    sequence,
                    subscription: slot.sub,
                    handler: &slot.name,
                    lane: slot.lane,
                    reason: &reason,
                };
                let policy = &mut self.config.policy;
                call_hook("failure policy", "on_failure", || {
                    policy.on_failure(&failure)
                });
            }
            slot.work.clear();
        }
        if let Some(log) = &self.config.flow_log {
            log.append(flow);
        }

        if hi > lo {
            self.dispatched += hi - lo;
            self.batches += 1;
            if self.config.services.metrics {
                // One uncontended lock per batch.
                let mut h = self
                    .shared
                    .batch_sizes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                h.record(hi - lo);
            }
        }
        self.publish_stats();
        if hi > lo {
            // SAFETY: `[lo, hi)` was polled above; every handler task has returned, so
            // no reference into it is alive.
            unsafe { ring.release(lo, hi, true) };
        }
    }

    fn publish_stats(&self) {
        let stats = &self.shared.stats;
        stats.dispatched.store(self.dispatched, Ordering::Relaxed);
        stats.delivered.store(self.delivered, Ordering::Relaxed);
        stats.failed.store(self.failed, Ordering::Relaxed);
        stats.panicked.store(self.panicked, Ordering::Relaxed);
        stats.batches.store(self.batches, Ordering::Relaxed);
        stats.retried.store(self.retried, Ordering::Relaxed);
        stats
            .dead_lettered
            .store(self.dead_lettered, Ordering::Relaxed);
    }

    fn apply_control(&mut self) {
        for msg in self.shared.control.take() {
            match msg {
                Control::Subscribe(spec, ack) => {
                    self.install(spec);
                    ack.complete(true);
                }
                Control::Unsubscribe(id, ack) => {
                    let found = self.remove(id);
                    ack.complete(found);
                }
                Control::Redrive(letters, ack) => {
                    self.redrive(letters);
                    ack.complete(true);
                }
            }
        }
    }

    /// Queues dead letters at their handlers again; letters whose subscription is
    /// gone (or has no retry machinery) go back to the dead-letter queue.
    fn redrive(&mut self, letters: Vec<DeadLetter<P>>) {
        for letter in letters {
            let target = self
                .subs
                .iter()
                .find(|s| s.id == letter.subscription)
                .map(|s| s.target);
            let back = match target {
                Some(t) => {
                    let i = t.slot_for(&letter.event);
                    match self.slots[i].as_mut() {
                        Some(slot) => slot.enqueue_redrive(letter.event, u64::MAX).err(),
                        None => Some(letter.event),
                    }
                }
                None => Some(letter.event),
            };
            if let Some(event) = back {
                let mut attempts = letter.attempts;
                attempts.push(crate::resilience::Attempt {
                    at: self.config.services.clock.now(),
                    error: "redrive: subscription gone or without a retry policy".into(),
                    panicked: false,
                });
                let _ = self.config.services.dlq.push(
                    event,
                    letter.subscription,
                    letter.handler,
                    attempts,
                );
            }
        }
    }

    fn install(&mut self, spec: SubscribeSpec<P>) {
        let lanes = spec.handlers.len();
        // First run of `lanes` free slots, or the end.
        let mut first = self.slots.len();
        let mut run = 0;
        for (i, s) in self.slots.iter().enumerate() {
            run = if s.is_none() { run + 1 } else { 0 };
            if run == lanes {
                first = i + 1 - lanes;
                break;
            }
        }
        if first + lanes > self.slots.len() {
            self.slots.resize_with(first + lanes, || None);
        }
        let mut infos = Vec::with_capacity(lanes);
        for (lane, mut handler) in spec.handlers.into_iter().enumerate() {
            call_hook(&spec.name, "on_start", || handler.on_start());
            let slot = HandlerSlot::new(
                handler,
                spec.id,
                spec.name.clone(),
                lane as u32,
                spec.resilience.clone(),
            );
            infos.push(HandlerInfo {
                sub: spec.id,
                name: spec.name.clone(),
                lane: lane as u32,
                metrics: slot.metrics.clone(),
            });
            self.slots[first + lane] = Some(slot);
        }
        self.shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(infos);
        let target = Target {
            first: first as u32,
            lanes: lanes as u32,
        };
        self.routes.push(Route {
            patterns: spec.patterns,
            target,
        });
        self.subs.push(SubInfo {
            id: spec.id,
            target,
        });
        self.table.clear();
    }

    fn remove(&mut self, id: SubscriptionId) -> bool {
        let Some(i) = self.subs.iter().position(|s| s.id == id) else {
            return false;
        };
        let info = self.subs.remove(i);
        self.routes.remove(i);
        let first = info.target.first as usize;
        for slot in &mut self.slots[first..first + info.target.lanes as usize] {
            if let Some(mut s) = slot.take() {
                // Queued events of a removed subscription are not lost: they go to
                // the dead-letter queue, from where they can be redriven elsewhere.
                for w in s.drain_queue() {
                    let mut attempts = w.attempts;
                    attempts.push(crate::resilience::Attempt {
                        at: self.config.services.clock.now(),
                        error: "unsubscribed while waiting for a retry".into(),
                        panicked: false,
                    });
                    self.dead_lettered += 1;
                    let _ = self
                        .config
                        .services
                        .dlq
                        .push(w.event, s.sub, s.name.clone(), attempts);
                }
                let handler = &mut s.handler;
                call_hook(&s.name, "on_shutdown", || handler.on_shutdown());
            }
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h| h.sub != id);
        self.table.clear();
        self.publish_stats();
        true
    }
}

impl<P> Drop for Dispatcher<P> {
    fn drop(&mut self) {
        // Normal exit or unwinding: either way no one will consume again.
        self.shared.control.close();
        self.shared.ring.terminate();
        self.config.services.dlq.close();
    }
}
