//! The dispatcher loop: [`Dispatcher`] takes batches from the ring, applies
//! control messages between them, routes and runs each batch (see the steps in
//! the [module docs](super)), and on shutdown drains the retries and reports.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use super::control::{Ack, Control, Redrive, Reply, SubscribeSpec};
use super::execution::Executor;
use super::failure::{Failure, FailurePolicy};
use super::follow_ups::FollowUp;
use super::inside::{Inside, Role};
use super::shared::{HandlerInfo, Shared, ShutdownReport};
use super::slot::{Failed, HandlerSlot, Services};
use super::table::{ListId, Route, Table, Target};
use super::waiting::Waiting;
use super::work::Work;
use crate::delivery::Tracks;
use crate::event::Event;
use crate::metrics::{Counters, FlowLog};
use crate::outcome::{FailureReason, SubscriptionId};
use crate::resilience::DeadLetterInfo;
use crate::resilience::{Attempt, DeadLetter};
use crate::ring::{Consumer, Next, Ring};
use crate::sync::{Arc, Ordering};
use crate::unwind::{drop_quietly, panic_message};

fn call_hook(name: &str, hook: &str, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        crate::log::warning!("ringbus: hook panicked", handler = name, hook = hook);
        drop_quietly(p);
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

/// An `unsubscribe` waiting for the dispatcher to reach `until`.
struct Removal {
    id: SubscriptionId,
    until: u64,
    /// The follow-up batches that must have run first: follow-ups published
    /// before the call were queued by the time the dispatcher saw it, and the
    /// next follow-up batch takes all of them.
    follow_up_batches: u64,
    ack: Arc<Ack>,
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
    /// Unsubscribes waiting for their last event to be dispatched.
    removals: Vec<Removal>,
    config: DispatchConfig<P>,
    /// Local counters, published to `shared.stats` once per batch (`published`
    /// is the ring's and filled in only for the shutdown report).
    counters: Counters,
    /// Sequences skipped as holes so far.
    skipped: u64,
    /// The follow-up batch being dispatched (kept for its capacity).
    follow_ups: Vec<FollowUp<P>>,
    /// Whether waiting follow-ups go before the next ring batch: ring batches
    /// and follow-up batches alternate while both have work.
    follow_ups_turn: bool,
    /// Follow-up batches dispatched so far.
    follow_up_batches: u64,
    /// The tracked events of the batch being dispatched (usually none).
    tracks: Tracks,
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
            removals: Vec::new(),
            config,
            counters: Counters::default(),
            skipped: 0,
            follow_ups: Vec::new(),
            follow_ups_turn: false,
            follow_up_batches: 0,
            tracks: Tracks::default(),
        }
    }

    /// Runs until the ring is closed and drained, then shuts the handlers down.
    ///
    /// Every call into user code is guarded where it is made; should the loop
    /// panic anyway (a bug in ringbus), the ring is closed at once (by `Drop`), so
    /// that no later publish returns `Ok` for an event nobody will deliver, and the
    /// panic's message is returned.
    pub(crate) fn run(self) -> Result<ShutdownReport, String> {
        let bus = self.shared.id();
        let shared = self.shared.clone();
        catch_unwind(AssertUnwindSafe(move || {
            let _inside = Inside::enter(bus, Role::Dispatch);
            let mut consumer = shared
                .ring
                .consumer()
                .expect("the dispatcher is its ring's only consumer");
            let mut me = self;
            loop {
                match me.step(&shared.ring, &mut consumer) {
                    Step::Worked => {}
                    Step::Idle => me.wait(),
                    Step::Drained => break,
                }
            }
            me.finish()
        }))
        .map_err(|p| {
            let message = panic_message(&*p);
            drop_quietly(p);
            message
        })
    }

    /// The real-time instant at which the earliest queued retry falls due, if
    /// that is representable.
    fn next_timer(&self) -> Option<Instant> {
        let due = self
            .slots
            .iter()
            .flatten()
            .filter_map(|s| s.next_due())
            .min()?;
        let now = self.config.services.clock.now();
        Instant::now().checked_add(due.saturating_sub(now))
    }

    fn wait(&self) {
        let (shared, next) = (&*self.shared, self.next);
        let timer = self.next_timer();
        let ready = || {
            shared.control.is_pending()
                || shared.ring.has_next()
                || shared.ring.closed_at() == Some(next)
                || shared.timer_kick.load(Ordering::Acquire)
                || shared.progress.kick.load(Ordering::Acquire)
        };
        match timer {
            None => shared.ring.consumer_wait_until(ready),
            Some(deadline) => shared.ring.consumer_wait_deadline(deadline, ready),
        }
        shared.timer_kick.store(false, Ordering::Relaxed);
    }

    /// One iteration: control messages, then at most one batch — from the ring,
    /// or of follow-ups (the two alternate while both have work) — or the due
    /// retries, when no event is waiting. Never blocks (except inside handlers).
    pub(crate) fn step(&mut self, ring: &Ring<Event<P>>, consumer: &mut Consumer) -> Step {
        let step = self.step_inner(ring, consumer);
        // A new flush caller kicks (after registering as a waiter): taking the
        // kick with an acquiring swap both serves it and makes its registration
        // visible, so a kick can neither be lost nor keep the loop awake.
        let progress = &self.shared.progress;
        let kicked =
            progress.kick.load(Ordering::Relaxed) && progress.kick.swap(false, Ordering::AcqRel);
        if kicked || progress.waiters.load(Ordering::Acquire) > 0 {
            self.report_progress();
        }
        step
    }

    fn step_inner(&mut self, ring: &Ring<Event<P>>, consumer: &mut Consumer) -> Step {
        if self.shared.control.is_pending() {
            self.apply_control();
        }
        if !self.removals.is_empty() {
            self.apply_removals();
        }
        if self.follow_ups_turn && self.shared.follow_ups.is_pending() {
            self.dispatch_follow_ups();
            return Step::Worked;
        }
        let lo = self.next;
        // A pending unsubscribe ends its handler's events at its `until`: the batch
        // stops there, and the removal happens before the next one.
        let max = match self.removals.iter().map(|r| r.until).min() {
            Some(until) => self.config.max_batch.min(until.saturating_sub(lo)),
            None => self.config.max_batch,
        };
        let next = if max == 0 {
            Next::Empty
        } else {
            ring.next_batch(consumer, max)
        };
        match next {
            Next::Batch(batch) => {
                self.shared
                    .tracked
                    .take_range(lo, batch.end(), &mut self.tracks);
                self.dispatch(Some(&batch));
                self.next = batch.end();
                self.follow_ups_turn = true;
                // Every handler task has returned: drop the events, free the slots.
                // A payload `Drop` that panics is contained there.
                let _drop_panics = batch.release();
                #[cfg(feature = "tracing")]
                if _drop_panics > 0 {
                    tracing::warn!(count = _drop_panics, "ringbus: payload Drop panicked");
                }
                Step::Worked
            }
            Next::Skipped(hi) => {
                self.skipped += hi - lo;
                self.shared
                    .stats
                    .skipped
                    .store(self.skipped, Ordering::Relaxed);
                self.next = hi;
                Step::Worked
            }
            Next::Empty => {
                if self.shared.follow_ups.is_pending() {
                    self.dispatch_follow_ups();
                    return Step::Worked;
                }
                if self.retries_due() {
                    self.tracks.clear();
                    self.dispatch::<[FollowUp<P>]>(None);
                    return Step::Worked;
                }
                if ring.closed_at() == Some(lo) {
                    Step::Drained
                } else {
                    Step::Idle
                }
            }
        }
    }

    /// Takes every waiting follow-up and dispatches them as one batch.
    fn dispatch_follow_ups(&mut self) {
        let mut batch = std::mem::take(&mut self.follow_ups);
        self.shared.follow_ups.take(&mut batch);
        self.follow_ups_turn = false;
        self.follow_ups = self.run_follow_ups(batch);
    }

    /// Dispatches a batch of follow-ups, then drops the events (every handler
    /// has returned; a panicking `Drop` is contained, one event at a time).
    /// Returns the emptied vector, for its capacity.
    fn run_follow_ups(&mut self, mut batch: Vec<FollowUp<P>>) -> Vec<FollowUp<P>> {
        if !batch.is_empty() {
            self.tracks.clear();
            for (off, f) in batch.iter_mut().enumerate() {
                if let Some(t) = f.tracker.take() {
                    self.tracks.push(off as u32, t);
                }
            }
            self.dispatch(Some(&batch[..]));
            self.follow_up_batches += 1;
            self.counters.follow_ups += batch.len() as u64;
            self.publish_stats();
        }
        for f in batch.drain(..) {
            drop_quietly(f);
        }
        batch
    }

    /// Publishes how far everything is settled (see `Progress::settled`) and
    /// wakes the `flush` callers.
    fn report_progress(&mut self) {
        let progress = &self.shared.progress;
        let settled = [self.next]
            .into_iter()
            .chain(self.shared.follow_ups.min_root())
            .chain(
                self.slots
                    .iter()
                    .flatten()
                    .filter_map(|s| s.queue_min_sequence()),
            )
            .min()
            .unwrap_or(self.next);
        // It may go down: a redriven event re-enters below earlier marks.
        progress.settled.store(settled, Ordering::Release);
        progress.notify();
    }

    /// Removes the subscriptions whose last event has been dispatched.
    fn apply_removals(&mut self) {
        let (next, batches) = (self.next, self.follow_up_batches);
        // Follow-ups published before the call are dispatched too (not every
        // follow-up since: an endless chain must not hold the removal up).
        let (done, waiting): (Vec<Removal>, Vec<Removal>) = self
            .removals
            .drain(..)
            .partition(|r| r.until <= next && r.follow_up_batches <= batches);
        self.removals = waiting;
        for r in done {
            let found = self.remove(r.id);
            r.ack.complete(Reply::Done(usize::from(found)));
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

    /// Finishes what was started, then stops: applies pending control messages;
    /// dispatches follow-ups and runs due retries until nothing is left or the
    /// deadline passes (`shutdown_timeout`'s, else the retry drain timeout).
    /// Retries that cannot come due before the deadline — and those still
    /// waiting at it — go to the dead-letter queue and the report. At the
    /// deadline the follow-up queue closes (later follow-ups are refused), and
    /// the follow-ups accepted before are still dispatched. Then every handler's
    /// shutdown hook runs and later control messages are refused. Call once the
    /// ring is drained.
    pub(crate) fn finish(mut self) -> ShutdownReport {
        self.apply_control();
        // Every event is dispatched: every pending unsubscribe can complete.
        for r in &mut self.removals {
            r.until = 0;
            r.follow_up_batches = 0;
        }
        while self.shared.follow_ups.is_pending() {
            self.dispatch_follow_ups();
        }
        self.apply_removals();
        // `shutdown_timeout`'s deadline, else the retry drain timeout (one too
        // large for an `Instant` is no timeout).
        let stop_by = *self
            .shared
            .stop_by
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let deadline = stop_by.or_else(|| Instant::now().checked_add(self.config.retry_drain));
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
        let mut open = true;
        loop {
            if self.shared.progress.waiters.load(Ordering::Acquire) > 0 {
                self.report_progress();
            }
            if open && passed(deadline) {
                // Chains stop growing here; what they published before is still
                // dispatched (it was accepted).
                open = false;
                let accepted = self.shared.follow_ups.close();
                self.run_follow_ups(accepted);
            }
            if self.shared.follow_ups.is_pending() {
                self.dispatch_follow_ups();
                continue;
            }
            if !open || !self.slots.iter().flatten().any(|s| s.has_queue()) {
                break;
            }
            if self.retries_due() {
                self.dispatch::<[FollowUp<P>]>(None);
                continue;
            }
            let timer = self.next_timer();
            // Nothing can come due before the deadline: give up now, not at it.
            if let (Some(t), Some(d)) = (timer, deadline) {
                if t > d {
                    break;
                }
            }
            let until = match (timer, deadline) {
                (Some(t), Some(d)) => Some(t.min(d)),
                (t, d) => t.or(d),
            };
            let kick = &self.shared.timer_kick;
            let ready = || kick.load(Ordering::Acquire);
            match until {
                Some(until) => self.shared.ring.consumer_wait_deadline(until, ready),
                None => self.shared.ring.consumer_wait_until(ready),
            }
            kick.store(false, Ordering::Relaxed);
        }
        let mut undelivered = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            for w in slot.drain_queue() {
                let note = "undelivered at shutdown: no retry before the stop deadline";
                let (event_id, event_type) = (w.event.id, w.event.event_type);
                let subject = w.event.subject.clone();
                let (id, attempts) = give_up(
                    &self.config.services,
                    w,
                    (slot.sub, slot.lane),
                    &slot.name,
                    note,
                );
                self.counters.dead_lettered += 1;
                undelivered.push(DeadLetterInfo {
                    id: id.unwrap_or(0),
                    event_id,
                    event_type,
                    subject,
                    subscription: slot.sub,
                    handler: slot.name.clone(),
                    attempts,
                });
            }
        }
        // Quiescent: the follow-up queue closes before the hooks run (a
        // follow-up published from `on_shutdown` is refused). Nothing is left in
        // it: everything accepted was dispatched above.
        let late = self.shared.follow_ups.close();
        self.run_follow_ups(late);
        self.shared.control.close();
        for slot in self.slots.iter_mut().flatten() {
            let handler = &mut slot.handler;
            call_hook(&slot.name, "on_shutdown", || handler.on_shutdown());
        }
        for slot in self.slots.iter_mut().flatten() {
            slot.publish_metrics();
        }
        let handlers = self
            .shared
            .handler_infos()
            .iter()
            .map(HandlerInfo::snapshot)
            .collect();
        for slot in self.slots.drain(..) {
            drop_quietly(slot);
        }
        self.publish_stats();
        let published = self.shared.ring.closed_at().unwrap_or(self.next) - self.skipped;
        let report = ShutdownReport {
            counters: Counters {
                published,
                ..self.counters
            },
            undelivered,
            handlers,
            completed: true,
            stuck: Vec::new(),
        };
        // Everything is settled: `flush` callers return.
        self.shared
            .progress
            .settled
            .store(u64::MAX, Ordering::Release);
        // The failure policy, the clock, listeners: user code may run in their `Drop`.
        drop_quietly(self);
        report
    }

    /// Dispatches a batch (or, with `None`, only the due retries). The caller
    /// releases the batch afterwards.
    /// Gives the events `run` of `batch`, which all route to target list `list`,
    /// to their slots: the whole run to a plain handler, event by event to the
    /// lane of a partitioned one.
    #[inline]
    fn assign<W: Work<P> + ?Sized>(
        &mut self,
        batch: &W,
        run: std::ops::Range<u32>,
        list: ListId,
        matched_anyway: bool,
    ) {
        let targets = self.table.targets(list);
        if targets.is_empty() && !matched_anyway {
            self.counters.unmatched += u64::from(run.end - run.start);
        }
        for target in targets {
            if target.lanes == 1 {
                debug_assert!(
                    self.slots[target.first as usize].is_some(),
                    "route to an empty slot"
                );
                if let Some(slot) = self.slots[target.first as usize].as_mut() {
                    slot.work.extend(run.clone());
                }
            } else {
                for off in run.clone() {
                    let i = target.slot_for(batch.event(off));
                    debug_assert!(self.slots[i].is_some(), "route to an empty slot");
                    if let Some(slot) = self.slots[i].as_mut() {
                        slot.work.push(off);
                    }
                }
            }
        }
    }

    fn dispatch<W: Work<P> + ?Sized>(&mut self, batch: Option<&W>) {
        let len = batch.map_or(0, |b| b.len());
        #[cfg(feature = "tracing")]
        let _span = tracing::trace_span!("ringbus.batch", len).entered();
        if let Some(batch) = batch {
            // Subscriptions to everything take the whole batch in one go.
            let everything = self.table.everything(&self.routes);
            let matched_anyway = !everything.is_empty();
            for target in everything {
                if let Some(slot) = self.slots[target.first as usize].as_mut() {
                    slot.work.extend(0..len);
                }
            }
            // The others, by runs of consecutive events with the same target list
            // (all of a batch, for a fan-out by pattern; often one event, for
            // handlers by type).
            let mut run: Option<(u32, ListId)> = None;
            for off in 0..len {
                let list = self.table.route(batch.event(off).event_type, &self.routes);
                match run {
                    Some((_, current)) if current == list => {}
                    Some((start, current)) => {
                        self.assign(batch, start..off, current, matched_anyway);
                        run = Some((off, list));
                    }
                    None => run = Some((off, list)),
                }
            }
            if let Some((start, current)) = run {
                self.assign(batch, start..len, current, matched_anyway);
            }
        }

        // Each tracked event lists the handler instances routed to, before
        // any of them runs; one routed nowhere completes here. A slot's work
        // is in offset order (its handler runs it in publish order).
        for (off, tracker) in self.tracks.iter() {
            let routed = self.slots.iter().flatten();
            tracker.arm(
                routed
                    .filter(|s| s.work.binary_search(off).is_ok())
                    .map(|s| (s.sub, s.lane, &s.name)),
            );
        }

        let busy = |s: &HandlerSlot<P>| !s.work.is_empty() || s.has_queue();
        let active = self.slots.iter().flatten().filter(|s| busy(s)).count();
        let services = &self.config.services;
        let tracks = &self.tracks;
        match &self.config.exec {
            Executor::Pool(pool) if active > 1 => {
                pool.in_place_scope(|scope| {
                    let mut it = self.slots.iter_mut().flatten().filter(|s| busy(s));
                    let mine = it.next();
                    for slot in it {
                        scope.spawn(move |_| slot.run(batch, services, tracks));
                    }
                    if let Some(slot) = mine {
                        slot.run(batch, services, tracks);
                    }
                });
            }
            _ => {
                for slot in self.slots.iter_mut().flatten().filter(|s| busy(s)) {
                    slot.run(batch, services, tracks);
                }
            }
        }

        let mut flow = Vec::new();
        for slot in self.slots.iter_mut().flatten() {
            self.counters.delivered += slot.run_ok;
            self.counters.failed += slot.run_failed;
            self.counters.panicked += slot.run_panicked;
            self.counters.retried += slot.run_retried;
            self.counters.dead_lettered += slot.run_dead_lettered;
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
            // Follow-ups the policy publishes belong to this slot's chains.
            let _root = (!slot.failures.is_empty())
                .then(|| Inside::enter_at(self.config.services.bus, Role::Dispatch, slot.run_root));
            // A subscription without failure handling keeps no copies; with
            // `dead_letter_failures` the dispatcher copies its failed events to
            // the dead-letter queue here, off the handler's path, and reports
            // a tracked event's failure once its letter is queued.
            let copy_plain = if slot.dead_letters_plain(&self.config.services) {
                self.config.services.dead_letter_plain
            } else {
                None
            };
            let mut plain_letters = 0;
            for (failed, reason) in slot.failures.drain(..) {
                let (event, sequence, attempt, last) = match &failed {
                    Failed::Fresh { off, last } => {
                        let batch = batch.expect("a fresh failure comes from a batch");
                        (batch.event(*off), batch.sequence(*off), 1, *last)
                    }
                    Failed::Queued {
                        copy: Some(e),
                        sequence,
                        attempt,
                        last,
                    } => (&**e, *sequence, *attempt, *last),
                    // The payload's `clone` panicked: no copy to show the policy.
                    Failed::Queued { copy: None, .. } => continue,
                };
                if let Some(clone) = copy_plain {
                    let services = &self.config.services;
                    match catch_unwind(AssertUnwindSafe(|| clone(event))) {
                        Ok(copy) => {
                            // Worded as the retry queue words its attempts.
                            let attempts = vec![Attempt {
                                at: services.clock.now(),
                                error: reason.to_string(),
                                panicked: matches!(reason, FailureReason::Panic(_)),
                            }];
                            dead_letter(services, copy, slot.sub, &slot.name, attempts);
                            plain_letters += 1;
                        }
                        Err(p) => {
                            crate::log::warning!(
                                "ringbus: the payload's clone panicked: not dead-lettered",
                                handler = slot.name
                            );
                            drop_quietly(p);
                        }
                    }
                    if let Failed::Fresh { off, .. } = &failed {
                        if let Some(t) = self.tracks.get(*off) {
                            t.failed((slot.sub, slot.lane), &slot.name, &reason);
                        }
                    }
                }
                let failure = Failure {
                    event,
                    sequence,
                    subscription: slot.sub,
                    handler: &slot.name,
                    lane: slot.lane,
                    reason: &reason,
                    attempt,
                    last,
                };
                let policy = &mut self.config.policy;
                call_hook("failure policy", "on_failure", || {
                    policy.on_failure(&failure)
                });
                drop_quietly(failed);
            }
            if plain_letters > 0 {
                slot.count_dead_letters(plain_letters);
                self.counters.dead_lettered += plain_letters;
            }
            slot.work.clear();
        }
        self.tracks.clear();
        if let Some(log) = &self.config.flow_log {
            log.append(flow);
        }

        if len > 0 {
            if W::RING {
                self.counters.dispatched += u64::from(len);
            }
            self.counters.batches += 1;
            if self.config.services.metrics.is_on() {
                // One uncontended lock per batch.
                let mut h = self
                    .shared
                    .batch_sizes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                h.record(u64::from(len));
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        self.shared.stats.counters.store(&self.counters);
    }

    fn apply_control(&mut self) {
        for msg in self.shared.control.take() {
            match msg {
                Control::Subscribe(spec, ack) => {
                    self.install(spec);
                    ack.complete(Reply::Done(1));
                }
                Control::Unsubscribe { id, until, ack } => {
                    if self.subs.iter().any(|s| s.id == id) {
                        let follow_up_batches =
                            self.follow_up_batches + u64::from(self.shared.follow_ups.is_pending());
                        self.removals.push(Removal {
                            id,
                            until,
                            follow_up_batches,
                            ack,
                        });
                    } else {
                        ack.complete(Reply::Done(0));
                    }
                }
                Control::Redrive(which, ack) => {
                    let n = self.redrive(&which);
                    // Before the caller returns: a flush after the redrive
                    // sees the redriven events as unsettled.
                    if n > 0 {
                        self.report_progress();
                    }
                    ack.complete(Reply::Done(n));
                }
            }
        }
    }

    /// Takes the selected dead letters that can be redriven — their subscription
    /// is still here and keeps a retry queue — out of the dead-letter queue and
    /// queues each at its handler again. Letters that cannot be redriven stay in
    /// the dead-letter queue untouched. Returns how many were redriven.
    fn redrive(&mut self, which: &Redrive) -> usize {
        let (subs, slots) = (&self.subs, &self.slots);
        let target = |letter: &DeadLetter<P>| {
            let sub = subs.iter().find(|s| s.id == letter.subscription)?;
            let i = sub.target.slot_for(&letter.event);
            slots[i].as_ref().filter(|s| s.can_queue()).map(|_| i)
        };
        let letters = self
            .config
            .services
            .dlq
            .take_where(|l| which.selects(l) && target(l).is_some());
        let targets: Vec<usize> = letters.iter().filter_map(target).collect();
        debug_assert_eq!(targets.len(), letters.len(), "selected above");
        let n = letters.len();
        for (letter, i) in letters.into_iter().zip(targets) {
            if let Some(slot) = self.slots[i].as_mut() {
                // Its root lies below every later flush mark (the claim count,
                // at least `next`): a flush after the redrive waits for it.
                slot.enqueue_redrive(letter.event, self.next.saturating_sub(1));
            }
        }
        n
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
                activity: slot.activity.clone(),
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
                    let note = "unsubscribed while waiting for a retry";
                    give_up(&self.config.services, w, (s.sub, s.lane), &s.name, note);
                    self.counters.dead_lettered += 1;
                }
                let handler = &mut s.handler;
                call_hook(&s.name, "on_shutdown", || handler.on_shutdown());
                drop_quietly(s);
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
        // Normal exit or unwinding: either way no one will consume again. Close
        // first, so that no publish succeeds from now on; then release producers
        // waiting for space and every caller waiting on a control message.
        self.shared.ring.close();
        self.shared.control.close();
        for r in self.removals.drain(..) {
            r.ack.complete(Reply::Refused);
        }
        self.shared.ring.terminate();
        self.config.services.dlq.close();
        // Late follow-ups are refused; `flush` and `shutdown_timeout` stop waiting.
        for f in self.shared.follow_ups.close() {
            drop_quietly(f);
        }
        drop(self.shared.tracked.take_all());
        // Every tracked delivery not complete by now (only if the loop died:
        // events not dispatched, or held by a handler's retry queue) completes:
        // nothing will finish it.
        self.shared.deliveries.stop(crate::delivery::SHUT_DOWN);
        self.shared.progress.finished.store(true, Ordering::Release);
        self.shared.progress.notify();
    }
}

/// Dead-letters an event that was still waiting at a handler, with `note` as its
/// last attempt; returns the letter's id (if known) and its attempts.
fn give_up<P>(
    services: &Services<P>,
    w: Waiting<P>,
    (sub, lane): (SubscriptionId, u32),
    name: &StdArc<str>,
    note: &str,
) -> (Option<u64>, Vec<Attempt>) {
    let mut attempts = w.attempts;
    attempts.push(Attempt {
        at: services.clock.now(),
        error: note.into(),
        panicked: false,
    });
    let id = dead_letter(services, w.event, sub, name, attempts.clone());
    // Completed once the letter is in the queue.
    if let Some(t) = w.tracker {
        t.failed_with((sub, lane), name, false, note.into());
    }
    (id, attempts)
}

/// Moves `event` to the dead-letter queue; returns the letter's id there, if
/// known. A queue closed by then (only past the end of shutdown) hands the letter
/// back; it is dropped, as is an evicted one — quietly, since a payload's `Drop`
/// is user code (a panic there leaves the letter queued, its id unknown).
///
/// Every dead letter goes through here: once it is queued, the `on_dead_letter`
/// hook sees it, on this thread (a panic in the hook is contained).
pub(crate) fn dead_letter<P>(
    services: &Services<P>,
    event: Event<P>,
    sub: SubscriptionId,
    name: &StdArc<str>,
    attempts: Vec<Attempt>,
) -> Option<u64> {
    // What the hook will see, taken before the queue owns the letter (only when
    // there is a hook: the copy of the attempts costs an allocation).
    let info = services.on_dead_letter.as_ref().map(|_| DeadLetterInfo {
        id: 0,
        event_id: event.id,
        event_type: event.event_type,
        subject: event.subject.clone(),
        subscription: sub,
        handler: name.clone(),
        attempts: attempts.clone(),
    });
    let dlq = &services.dlq;
    let pushed = catch_unwind(AssertUnwindSafe(|| {
        dlq.push(event, sub, name.clone(), attempts)
    }));
    let id = match pushed {
        Ok(Ok(id)) => Some(id),
        Ok(Err(closed)) => {
            crate::log::error!("ringbus: dead-letter queue closed", handler = name);
            drop_quietly(closed);
            None
        }
        Err(p) => {
            drop_quietly(p);
            None
        }
    };
    if let (Some(id), Some(mut info), Some(hook)) = (id, info, &services.on_dead_letter) {
        info.id = id;
        call_hook(name, "on_dead_letter", || hook(&info));
    }
    id
}
