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
mod handler;
mod pattern;
mod table;

pub use failure::{Failure, FailurePolicy, FailureReason, LogFailures, SubscriptionId};
pub use handler::{ErrorKind, Handler, HandlerError};
pub use pattern::{IntoPatterns, Pattern, PatternError};

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc as StdArc;

use crate::ring::{Poll, Ring};
use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crate::Event;
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
    dispatched: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    batches: AtomicU64,
    skipped: AtomicU64,
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

/// What `Bus::shutdown` returns.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
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
}

pub(crate) enum Control<P> {
    Subscribe(SubscribeSpec<P>, Arc<Ack>),
    Unsubscribe(SubscriptionId, Arc<Ack>),
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
                Control::Subscribe(_, ack) | Control::Unsubscribe(_, ack) => ack.complete(false),
            }
        }
    }
}

/// Everything the bus handle, its publishers and the dispatcher share.
pub(crate) struct Shared<P> {
    pub(crate) ring: Ring<Event<P>>,
    pub(crate) control: ControlQueue<P>,
    pub(crate) stats: Stats,
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

/// One handler instance (a lane, for a partitioned subscription).
struct HandlerSlot<P> {
    handler: Box<dyn Handler<P>>,
    sub: SubscriptionId,
    name: StdArc<str>,
    lane: u32,
    /// Offsets (from the batch start) of this batch's events for this handler.
    work: Vec<u32>,
    failures: Vec<(u32, FailureReason)>,
    ok: u64,
    panicked: u64,
}

/// The batch being dispatched, shared read-only by the handler tasks.
struct BatchView<'a, P> {
    ring: &'a Ring<Event<P>>,
    lo: u64,
}

impl<P> BatchView<'_, P> {
    #[inline]
    fn get(&self, offset: u32) -> &Event<P> {
        // SAFETY: the dispatcher polled `[lo, hi)` as published events and
        // releases it only after every handler task of the batch has returned;
        // offsets are `< hi - lo`.
        unsafe { self.ring.get(self.lo + u64::from(offset)) }
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

fn run_slot<P: 'static>(slot: &mut HandlerSlot<P>, batch: &BatchView<'_, P>) {
    let _ctx = DispatchContext::enter();
    for &off in slot.work.iter() {
        let event = batch.get(off);
        match catch_unwind(AssertUnwindSafe(|| slot.handler.handle(event))) {
            Ok(Ok(())) => slot.ok += 1,
            Ok(Err(e)) => slot.failures.push((off, FailureReason::Error(e))),
            Err(p) => {
                slot.panicked += 1;
                slot.failures
                    .push((off, FailureReason::Panic(panic_message(&*p))));
            }
        }
    }
    if catch_unwind(AssertUnwindSafe(|| slot.handler.on_batch_end())).is_err() {
        eprintln!("ringbus: handler {} panicked in on_batch_end", slot.name);
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
    /// Dispatched or skipped a batch.
    Worked,
    /// Nothing published; the ring is open.
    Idle,
    /// The ring is closed and every event published before the close is dispatched.
    Drained,
}

/// The consumer side of a bus. Runs on its own thread ([`Dispatcher::run`]), or is
/// stepped inline ([`Dispatcher::step`], used by the loom models).
pub(crate) struct Dispatcher<P> {
    shared: Arc<Shared<P>>,
    next: u64,
    max_batch: u64,
    table: Table,
    routes: Vec<Route>,
    subs: Vec<SubInfo>,
    slots: Vec<Option<HandlerSlot<P>>>,
    exec: Executor,
    policy: Box<dyn FailurePolicy<P>>,
    // Local counters, published to `shared.stats` once per batch.
    dispatched: u64,
    delivered: u64,
    failed: u64,
    panicked: u64,
    batches: u64,
    skipped: u64,
}

impl<P> std::fmt::Debug for Dispatcher<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("next", &self.next)
            .field("subscriptions", &self.subs.len())
            .field("exec", &self.exec)
            .finish_non_exhaustive()
    }
}

impl<P: Send + Sync + 'static> Dispatcher<P> {
    pub(crate) fn new(
        shared: Arc<Shared<P>>,
        max_batch: u64,
        exec: Executor,
        policy: Box<dyn FailurePolicy<P>>,
    ) -> Self {
        Dispatcher {
            shared,
            next: 0,
            max_batch,
            table: Table::default(),
            routes: Vec::new(),
            subs: Vec::new(),
            slots: Vec::new(),
            exec,
            policy,
            dispatched: 0,
            delivered: 0,
            failed: 0,
            panicked: 0,
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

    fn wait(&self) {
        let (shared, next) = (&*self.shared, self.next);
        shared.ring.consumer_wait_until(|| {
            shared.control.is_pending()
                || shared.ring.poll(next, 1) != Poll::Empty
                || shared.ring.closed_at() == Some(next)
        });
    }

    /// One iteration: control messages, then at most one batch. Never blocks
    /// (except inside handlers).
    pub(crate) fn step(&mut self) -> Step {
        if self.shared.control.is_pending() {
            self.apply_control();
        }
        let lo = self.next;
        match self.shared.ring.poll(lo, self.max_batch) {
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
            Poll::Empty if self.shared.ring.closed_at() == Some(lo) => Step::Drained,
            Poll::Empty => Step::Idle,
        }
    }

    /// Applies pending control messages, runs every handler's shutdown hook, and
    /// refuses later control messages. Call once the ring is drained.
    pub(crate) fn finish(mut self) -> ShutdownReport {
        self.apply_control();
        self.shared.control.close();
        for slot in self.slots.iter_mut().flatten() {
            let handler = &mut slot.handler;
            call_hook(&slot.name, "on_shutdown", || handler.on_shutdown());
        }
        self.slots.clear();
        let published = self.shared.ring.closed_at().unwrap_or(self.next) - self.skipped;
        ShutdownReport {
            published,
            dispatched: self.dispatched,
            delivered: self.delivered,
            failed: self.failed,
            panicked: self.panicked,
        }
    }

    fn dispatch(&mut self, lo: u64, hi: u64) {
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

        let batch = BatchView { ring, lo };
        let active = self
            .slots
            .iter()
            .flatten()
            .filter(|s| !s.work.is_empty())
            .count();
        match &self.exec {
            Executor::Pool(pool) if active > 1 => {
                let batch = &batch;
                pool.in_place_scope(|scope| {
                    let mut busy = self
                        .slots
                        .iter_mut()
                        .flatten()
                        .filter(|s| !s.work.is_empty());
                    let mine = busy.next();
                    for slot in busy {
                        scope.spawn(move |_| run_slot(slot, batch));
                    }
                    if let Some(slot) = mine {
                        run_slot(slot, batch);
                    }
                });
            }
            _ => {
                for slot in self
                    .slots
                    .iter_mut()
                    .flatten()
                    .filter(|s| !s.work.is_empty())
                {
                    run_slot(slot, &batch);
                }
            }
        }

        for slot in self.slots.iter_mut().flatten() {
            if slot.work.is_empty() {
                continue;
            }
            self.delivered += slot.ok;
            self.panicked += slot.panicked;
            self.failed += slot.failures.len() as u64;
            slot.ok = 0;
            slot.panicked = 0;
            for (off, reason) in slot.failures.drain(..) {
                let failure = Failure {
                    event: batch.get(off),
                    sequence: lo + u64::from(off),
                    subscription: slot.sub,
                    handler: &slot.name,
                    lane: slot.lane,
                    reason: &reason,
                };
                let policy = &mut self.policy;
                call_hook("failure policy", "on_failure", || {
                    policy.on_failure(&failure)
                });
            }
            slot.work.clear();
        }

        self.dispatched += hi - lo;
        self.batches += 1;
        let stats = &self.shared.stats;
        stats.dispatched.store(self.dispatched, Ordering::Relaxed);
        stats.delivered.store(self.delivered, Ordering::Relaxed);
        stats.failed.store(self.failed, Ordering::Relaxed);
        stats.panicked.store(self.panicked, Ordering::Relaxed);
        stats.batches.store(self.batches, Ordering::Relaxed);
        // SAFETY: `[lo, hi)` was polled above; every handler task has returned, so
        // no reference into it is alive.
        unsafe { ring.release(lo, hi, true) };
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
        for (lane, mut handler) in spec.handlers.into_iter().enumerate() {
            call_hook(&spec.name, "on_start", || handler.on_start());
            self.slots[first + lane] = Some(HandlerSlot {
                handler,
                sub: spec.id,
                name: spec.name.clone(),
                lane: lane as u32,
                work: Vec::new(),
                failures: Vec::new(),
                ok: 0,
                panicked: 0,
            });
        }
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
                let handler = &mut s.handler;
                call_hook(&s.name, "on_shutdown", || handler.on_shutdown());
            }
        }
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.table.clear();
        true
    }
}

impl<P> Drop for Dispatcher<P> {
    fn drop(&mut self) {
        // Normal exit or unwinding: either way no one will consume again.
        self.shared.control.close();
        self.shared.ring.terminate();
    }
}
