//! One handler instance and everything that runs on its task: the fresh events of
//! a batch, and — for subscriptions with a retry policy or a circuit breaker — its
//! queue of events waiting for a retry or for the breaker to let them through.
//!
//! The queue of a resilient slot lives in [`waiting`](super::waiting), its
//! counters and histograms in [`slot_metrics`](super::slot_metrics).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering as StdOrdering;
use std::sync::Arc as StdArc;

use super::handler::Handler;
use super::inside::{Inside, Role};
use super::shared::Activity;
use super::slot_metrics::{breaker_code, record_sample, Sampling, SlotMetrics};
use super::waiting::{Resilience, ResilienceSpec};
use super::work::Work;
use crate::delivery::Tracks;
use crate::event::{Event, Timestamp};
use crate::metrics::FlowEntry;
use crate::outcome::{FailureReason, SubscriptionId};
use crate::resilience::{BreakerTransition, DeadLetterInfo, DeadLetterQueue, GuardedClock};
use crate::unwind::{drop_quietly, panic_message};

/// Called on every breaker state change: (subscription, handler name, transition).
pub(crate) type BreakerListener =
    StdArc<dyn Fn(SubscriptionId, &str, BreakerTransition) + Send + Sync>;

/// Called on every dead letter, with the letter as the queue lists it.
pub(crate) type DeadLetterListener = StdArc<dyn Fn(&DeadLetterInfo) + Send + Sync>;

/// Copies an event (`Event::clone`, for a `P: Clone`).
pub(crate) type CloneEvent<P> = fn(&Event<P>) -> Event<P>;

/// Bus-wide services a slot's failure handling uses.
pub(crate) struct Services<P> {
    /// The bus's identity (see [`Inside`]).
    pub(crate) bus: usize,
    pub(crate) clock: GuardedClock,
    pub(crate) dlq: DeadLetterQueue<P>,
    pub(crate) on_breaker: Option<BreakerListener>,
    /// Called after each dead letter is queued (see `dispatcher::dead_letter`).
    pub(crate) on_dead_letter: Option<DeadLetterListener>,
    /// Set by `BusBuilder::dead_letter_failures`: how to copy the event of a
    /// failed call of a subscription without failure handling into the
    /// dead-letter queue (the dispatcher does it, after the batch).
    pub(crate) dead_letter_plain: Option<CloneEvent<P>>,
    pub(crate) metrics: Sampling,
    pub(crate) flow_log: bool,
}

/// A failed call, for the failure policy (run on the dispatcher after the batch).
pub(crate) enum Failed<P> {
    /// A fresh event of the batch, at this offset: its first call (attempt 1);
    /// `last` when no retry was scheduled.
    Fresh { off: u32, last: bool },
    /// A queued event (a retry): a copy, since the original stays queued or moved
    /// on (`None` if the payload's `clone` panicked), its sequence, which call
    /// this was (1-based) and whether it was the last.
    Queued {
        copy: Option<Box<Event<P>>>,
        sequence: u64,
        attempt: u32,
        last: bool,
    },
}

impl<P> Failed<P> {
    /// A fresh event's failed call after which nothing is retried.
    pub(crate) fn last_fresh(off: u32) -> Self {
        Failed::Fresh { off, last: true }
    }
}

/// One handler instance (a lane, for a partitioned subscription).
pub(crate) struct HandlerSlot<P> {
    pub(crate) handler: Box<dyn Handler<P>>,
    pub(crate) sub: SubscriptionId,
    pub(crate) name: StdArc<str>,
    pub(crate) lane: u32,
    /// Offsets (from the batch start) of this batch's events for this handler.
    pub(crate) work: Vec<u32>,
    pub(crate) failures: Vec<(Failed<P>, FailureReason)>,
    pub(crate) flow: Vec<FlowEntry>,
    // Totals, published to `metrics` after each run.
    ok: u64,
    pub(super) errors: u64,
    panicked: u64,
    pub(super) retries: u64,
    pub(super) dead_lettered: u64,
    /// Of this run: for the bus totals.
    pub(crate) run_ok: u64,
    pub(crate) run_failed: u64,
    pub(crate) run_panicked: u64,
    pub(crate) run_retried: u64,
    pub(crate) run_dead_lettered: u64,
    sample: u32,
    pub(crate) metrics: StdArc<SlotMetrics>,
    pub(crate) activity: StdArc<Activity>,
    pub(super) resilience: Option<Box<Resilience<P>>>,
    /// The lowest root among the events of the last run (`u64::MAX` if none):
    /// where follow-ups published by the failure policy for them belong.
    pub(crate) run_root: u64,
}

impl<P: 'static> HandlerSlot<P> {
    pub(crate) fn new(
        handler: Box<dyn Handler<P>>,
        sub: SubscriptionId,
        name: StdArc<str>,
        lane: u32,
        resilience: Option<ResilienceSpec<P>>,
    ) -> Self {
        let resilience = resilience.map(|spec| Box::new(Resilience::new(spec, sub, lane)));
        HandlerSlot {
            handler,
            sub,
            name,
            lane,
            work: Vec::new(),
            failures: Vec::new(),
            flow: Vec::new(),
            ok: 0,
            errors: 0,
            panicked: 0,
            retries: 0,
            dead_lettered: 0,
            run_ok: 0,
            run_failed: 0,
            run_panicked: 0,
            run_retried: 0,
            run_dead_lettered: 0,
            sample: 0,
            metrics: StdArc::new(SlotMetrics::default()),
            activity: StdArc::default(),
            resilience,
            run_root: u64::MAX,
        }
    }

    /// Runs the slot: due queued events first, then this batch's fresh events.
    ///
    /// `tracks` holds the batch's tracked events (by offset); each gets this
    /// slot's final outcome for it, or — if it stays queued — goes on waiting
    /// with its countdown.
    pub(crate) fn run<W: Work<P> + ?Sized>(
        &mut self,
        batch: Option<&W>,
        services: &Services<P>,
        tracks: &Tracks,
    ) {
        let work = std::mem::take(&mut self.work);
        let fresh = batch.filter(|_| !work.is_empty());
        let queued = self.resilience.as_ref().map_or(0, |r| r.queue.len());
        // Follow-ups published from here belong to the oldest chain run here.
        let root = fresh
            .and_then(|b| b.min_sequence(&work))
            .into_iter()
            .chain(self.queue_min_sequence())
            .min()
            .unwrap_or(u64::MAX);
        self.run_root = root;
        let _inside = Inside::enter_at(services.bus, Role::Dispatch, root);
        let activity = &self.activity;
        activity
            .held
            .store((work.len() + queued) as u64, StdOrdering::Relaxed);
        activity.running.store(true, StdOrdering::Relaxed);
        self.run_ok = 0;
        self.run_failed = 0;
        self.run_panicked = 0;
        self.run_retried = 0;
        self.run_dead_lettered = 0;
        if self.resilience.is_some() {
            self.run_queue(services);
        }
        if let Some(batch) = fresh {
            self.run_fresh(&work, batch, services, tracks);
        }
        self.work = work;
        self.batch_end();
        self.publish_metrics();
        self.activity.running.store(false, StdOrdering::Relaxed);
    }

    /// Runs this batch's events for this handler, in order.
    fn run_fresh<W: Work<P> + ?Sized>(
        &mut self,
        work: &[u32],
        batch: &W,
        services: &Services<P>,
        tracks: &Tracks,
    ) {
        #[cfg(not(feature = "tracing"))]
        if self.resilience.is_none() && !services.flow_log && tracks.is_empty() {
            self.run_plain(work, batch, services.metrics);
            return;
        }
        for &off in work {
            let seq = batch.sequence(off);
            let event = batch.event(off);
            let tracker = tracks.get(off);
            if self.resilience.is_some() && self.must_queue(event, services) {
                self.queue_fresh(event, (off, seq), services, tracker);
                continue;
            }
            match self.call(event, services) {
                Ok(()) => {
                    if let Some(t) = tracker {
                        t.succeeded(self.sub, self.lane);
                    }
                }
                Err(reason) => {
                    if services.flow_log {
                        self.flow.push(flow_entry(event, Some(&reason)));
                    }
                    let retried =
                        self.after_fresh_failure(event, (off, seq), &reason, services, tracker);
                    // The dispatcher reports a failure it dead-letters itself
                    // (`dead_letter_failures`), once the letter is queued.
                    if let (false, Some(t)) = (retried, tracker) {
                        if !self.dead_letters_plain(services) {
                            t.failed((self.sub, self.lane), &self.name, &reason);
                        }
                    }
                    let failed = Failed::Fresh {
                        off,
                        last: !retried,
                    };
                    self.failures.push((failed, reason));
                    continue;
                }
            }
            if services.flow_log {
                self.flow.push(flow_entry(event, None));
            }
        }
    }

    fn batch_end(&mut self) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.handler.on_batch_end())) {
            crate::log::warning!("ringbus: on_batch_end panicked", handler = self.name);
            drop_quietly(p);
        }
    }

    /// The common case — no retry machinery, no flow log: one `catch_unwind` around
    /// the whole run of events rather than one per call; after a panic the run
    /// resumes with the next event.
    #[cfg(not(feature = "tracing"))]
    fn run_plain<W: Work<P> + ?Sized>(&mut self, work: &[u32], batch: &W, metrics: Sampling) {
        let mut i = 0;
        let (mut ok, mut errors) = (0u64, 0u64);
        let mut sample = self.sample;
        while i < work.len() {
            let handler = &mut self.handler;
            let failures = &mut self.failures;
            let shared = &self.metrics;
            let result = catch_unwind(AssertUnwindSafe(|| {
                while i < work.len() {
                    let off = work[i];
                    let event = batch.event(off);
                    sample = sample.wrapping_add(1);
                    let outcome = if metrics.hit(sample) {
                        let started = std::time::Instant::now();
                        let outcome = handler.handle(event);
                        record_sample(shared, started, event);
                        outcome
                    } else {
                        handler.handle(event)
                    };
                    match outcome {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            failures.push((Failed::last_fresh(off), FailureReason::Error(e)));
                        }
                    }
                    i += 1;
                }
            }));
            if let Err(p) = result {
                // `i` is the event whose call panicked.
                self.panicked += 1;
                self.run_panicked += 1;
                self.run_failed += 1;
                self.failures.push((
                    Failed::last_fresh(work[i]),
                    FailureReason::Panic(panic_message(&*p)),
                ));
                drop_quietly(p);
                i += 1;
            }
        }
        self.sample = sample;
        self.ok += ok;
        self.run_ok += ok;
        self.errors += errors;
        self.run_failed += errors;
    }

    /// Calls the handler once, catching a panic, recording outcome and samples.
    pub(super) fn call(
        &mut self,
        event: &Event<P>,
        services: &Services<P>,
    ) -> Result<(), FailureReason> {
        let breaker_active = self
            .resilience
            .as_ref()
            .is_some_and(|r| r.breaker.is_some());
        self.sample = self.sample.wrapping_add(1);
        let sampled = services.metrics.hit(self.sample);
        let started = sampled.then(std::time::Instant::now);
        #[cfg(feature = "tracing")]
        let _span = tracing::trace_span!(
            "ringbus.handle",
            handler = &*self.name,
            lane = self.lane,
            event_id = %event.id,
            event_type = event.event_type.name(),
            correlation_id = ?event.correlation_id,
        )
        .entered();
        let result = match catch_unwind(AssertUnwindSafe(|| self.handler.handle(event))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FailureReason::Error(e)),
            Err(p) => {
                let reason = FailureReason::Panic(panic_message(&*p));
                drop_quietly(p);
                Err(reason)
            }
        };
        if let Some(started) = started {
            record_sample(&self.metrics, started, event);
        }
        match &result {
            Ok(()) => {
                self.ok += 1;
                self.run_ok += 1;
            }
            Err(FailureReason::Panic(_)) => {
                self.panicked += 1;
                self.run_panicked += 1;
                self.run_failed += 1;
            }
            Err(_) => {
                self.errors += 1;
                self.run_failed += 1;
            }
        }
        if breaker_active {
            let now = services.clock.now();
            let r = self.resilience.as_mut().expect("checked");
            let b = r.breaker.as_mut().expect("checked");
            let t = if result.is_ok() {
                b.on_success(now)
            } else {
                b.on_failure(now)
            };
            if let Some(t) = t {
                self.breaker_changed(t, services);
            }
        }
        result
    }

    pub(super) fn breaker_changed(&mut self, mut t: BreakerTransition, services: &Services<P>) {
        t.lane = self.lane;
        self.metrics
            .breaker
            .store(breaker_code(t.to), StdOrdering::Relaxed);
        if let Some(listener) = &services.on_breaker {
            let name = self.name.clone();
            let sub = self.sub;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| listener(sub, &name, t))) {
                crate::log::warning!("ringbus: breaker listener panicked", handler = name);
                drop_quietly(p);
            }
        }
    }

    /// Whether the dispatcher copies this slot's failed events to the
    /// dead-letter queue after the batch (`BusBuilder::dead_letter_failures`,
    /// for a subscription without a retry queue of its own).
    pub(crate) fn dead_letters_plain(&self, services: &Services<P>) -> bool {
        services.dead_letter_plain.is_some() && !self.can_queue()
    }

    /// Counts `n` dead letters the dispatcher made for this slot (see
    /// `Services::dead_letter_plain`), in its totals and metrics at once.
    pub(crate) fn count_dead_letters(&mut self, n: u64) {
        self.dead_lettered += n;
        self.metrics
            .dead_lettered
            .store(self.dead_lettered, StdOrdering::Relaxed);
    }

    pub(crate) fn publish_metrics(&mut self) {
        let m = &self.metrics;
        m.handled.store(self.ok, StdOrdering::Relaxed);
        m.errors.store(self.errors, StdOrdering::Relaxed);
        m.panics.store(self.panicked, StdOrdering::Relaxed);
        m.retries.store(self.retries, StdOrdering::Relaxed);
        m.dead_lettered
            .store(self.dead_lettered, StdOrdering::Relaxed);
        let pending = self.resilience.as_ref().map_or(0, |r| r.queue.len());
        m.pending.store(pending as u64, StdOrdering::Relaxed);
    }
}

pub(super) fn flow_entry<P>(e: &Event<P>, failure: Option<&FailureReason>) -> FlowEntry {
    FlowEntry {
        event_id: e.id,
        event_type: e.event_type,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        at: Timestamp::now(),
        error: failure.map(|f| f.to_string()),
    }
}
