//! One handler instance and everything that runs on its task: the fresh events of
//! a batch, and — for subscriptions with a retry policy or a circuit breaker — its
//! queue of events waiting for a retry or for the breaker to let them through.
//!
//! ## Sequencing per subject
//! While an event of subject S waits at this handler (for a retry, or behind an
//! open breaker), every later event of S for this handler queues behind it, in
//! order; events of other subjects — and events without a subject, which are
//! independent — go on being handled. So a handler sees each subject's events in
//! publish order even across retries, and a failing event never stalls the bus:
//! the ring batch is released as soon as the task returns, the queue keeps owned
//! copies (hence `P: Clone` for resilient subscriptions).
//!
//! Nothing here sleeps: a waiting entry carries the clock time it is due at, and
//! the dispatcher — the bus's one timer — wakes up at the earliest due time.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering as StdOrdering};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Duration;

use super::failure::{FailureReason, SubscriptionId};
use super::handler::Handler;
use super::{Inside, Role};
use crate::metrics::{HistogramSummary, LocalHistogram};
use crate::resilience::{
    Attempt, BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker, DeadLetterQueue,
    GuardedClock, RetryPolicy,
};
use crate::ring::Batch;
use crate::unwind::{drop_quietly, panic_message};
use crate::{Event, Timestamp};

/// Handler-time and latency are sampled on one call in this many, so that the
/// clock reads stay off most calls.
const SAMPLE_EVERY: u32 = 256;

/// Counters and histograms of one handler instance, readable from any thread.
/// Written only by the task running the slot (stores, not read-modify-writes),
/// published once per batch.
#[derive(Debug, Default)]
pub(crate) struct SlotMetrics {
    pub(crate) handled: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) pending: AtomicU64,
    /// 0 closed, 1 half-open, 2 open.
    pub(crate) breaker: AtomicU8,
    pub(crate) histograms: StdMutex<Histograms>,
}

/// Sampled handler time and publish→handled latency, in nanoseconds (clamped to
/// the metrics histograms' 1 ns .. 60 s range, never dropped).
#[derive(Debug, Default)]
pub(crate) struct Histograms {
    pub(crate) handler_time: LocalHistogram,
    pub(crate) latency: LocalHistogram,
}

impl SlotMetrics {
    pub(crate) fn summaries(&self) -> (HistogramSummary, HistogramSummary) {
        let h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        (h.handler_time.summary(), h.latency.summary())
    }
}

fn breaker_code(s: BreakerState) -> u8 {
    match s {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

pub(crate) fn breaker_from_code(c: u8) -> BreakerState {
    match c {
        1 => BreakerState::HalfOpen,
        2 => BreakerState::Open,
        _ => BreakerState::Closed,
    }
}

/// Called on every breaker state change: (subscription, handler name, transition).
pub type BreakerListener = StdArc<dyn Fn(SubscriptionId, &str, BreakerTransition) + Send + Sync>;

/// What a subscription asks of the failure machinery.
pub(crate) struct ResilienceSpec<P> {
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: Option<BreakerConfig>,
    pub(crate) max_pending: usize,
    pub(crate) clone: fn(&Event<P>) -> Event<P>,
}

impl<P> Clone for ResilienceSpec<P> {
    fn clone(&self) -> Self {
        ResilienceSpec {
            retry: self.retry.clone(),
            breaker: self.breaker,
            max_pending: self.max_pending,
            clone: self.clone,
        }
    }
}

/// Bus-wide services a slot's failure handling uses.
pub(crate) struct Services<P> {
    /// The bus's identity (see [`Inside`]).
    pub(crate) bus: usize,
    pub(crate) clock: GuardedClock,
    pub(crate) dlq: DeadLetterQueue<P>,
    pub(crate) on_breaker: Option<BreakerListener>,
    pub(crate) metrics: bool,
    pub(crate) flow_log: bool,
}

/// An event waiting at one handler.
pub(crate) struct Waiting<P> {
    pub(crate) event: Event<P>,
    pub(crate) sequence: u64,
    pub(crate) attempts: Vec<Attempt>,
    /// Clock time from which it may be tried (0: as soon as nothing blocks it).
    due: Duration,
}

struct Resilience<P> {
    spec: ResilienceSpec<P>,
    breaker: Option<CircuitBreaker>,
    queue: VecDeque<Waiting<P>>,
    /// Subject → entries of that subject in `queue`. A fresh event whose subject is
    /// here queues behind them.
    blocked: HashMap<crate::Subject, usize>,
    rng: u64,
}

/// A failed call, for the failure policy (run on the dispatcher after the batch).
pub(crate) enum Failed<P> {
    /// A fresh event of the batch, at this offset.
    Fresh(u32),
    /// A queued event (a retry): a copy, since the original stays queued or moved
    /// on (`None` if the payload's `clone` panicked).
    Queued(Option<Box<Event<P>>>, u64),
}

/// One handled call, for the flow log.
#[derive(Clone, Debug)]
pub(crate) struct FlowEntry {
    pub(crate) event_id: crate::EventId,
    pub(crate) event_type: crate::EventType,
    pub(crate) correlation_id: Option<crate::EventId>,
    pub(crate) causation_id: Option<crate::EventId>,
    pub(crate) at: Timestamp,
    /// `None`: the call succeeded.
    pub(crate) error: Option<String>,
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
    errors: u64,
    panicked: u64,
    retries: u64,
    dead_lettered: u64,
    /// Of this run: for the bus totals.
    pub(crate) run_ok: u64,
    pub(crate) run_failed: u64,
    pub(crate) run_panicked: u64,
    pub(crate) run_retried: u64,
    pub(crate) run_dead_lettered: u64,
    sample: u32,
    pub(crate) metrics: StdArc<SlotMetrics>,
    resilience: Option<Box<Resilience<P>>>,
}

impl<P: 'static> HandlerSlot<P> {
    pub(crate) fn new(
        handler: Box<dyn Handler<P>>,
        sub: SubscriptionId,
        name: StdArc<str>,
        lane: u32,
        resilience: Option<ResilienceSpec<P>>,
    ) -> Self {
        let resilience = resilience.map(|spec| {
            Box::new(Resilience {
                breaker: spec.breaker.map(CircuitBreaker::new),
                spec,
                queue: VecDeque::new(),
                blocked: HashMap::new(),
                // Any non-zero seed: jitter need not be unpredictable, only spread.
                rng: 0x9E37_79B9_7F4A_7C15 ^ (sub.0 << 8) ^ u64::from(lane),
            })
        });
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
            resilience,
        }
    }

    /// Whether the slot has queued events (waiting for a retry or the breaker).
    pub(crate) fn has_queue(&self) -> bool {
        self.resilience
            .as_ref()
            .is_some_and(|r| !r.queue.is_empty())
    }

    /// The earliest clock time at which a queued event could be tried. Only the
    /// first waiting event of each subject counts: the events queued behind it
    /// cannot be tried before it, whatever their own due time.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        let r = self.resilience.as_ref()?;
        let mut heads: ahash::AHashSet<&crate::Subject> = ahash::AHashSet::new();
        let first = r
            .queue
            .iter()
            .filter(|w| w.event.subject.as_ref().is_none_or(|s| heads.insert(s)))
            .map(|w| w.due)
            .min()?;
        match r.breaker.as_ref().and_then(|b| b.reopens_at()) {
            Some(at) => Some(first.max(at)),
            None => Some(first),
        }
    }

    /// Whether this slot keeps a queue (a retry policy or a breaker), so dead
    /// letters can be redriven to it.
    pub(crate) fn can_queue(&self) -> bool {
        self.resilience.is_some()
    }

    /// Takes every queued event out (for shutdown reporting).
    pub(crate) fn drain_queue(&mut self) -> Vec<Waiting<P>> {
        match self.resilience.as_mut() {
            Some(r) => {
                r.blocked.clear();
                r.queue.drain(..).collect()
            }
            None => Vec::new(),
        }
    }

    /// Queues a dead letter being redriven: a fresh first attempt, due now, behind
    /// anything of its subject already waiting. Only for a slot that
    /// [`can_queue`](HandlerSlot::can_queue).
    pub(crate) fn enqueue_redrive(&mut self, event: Event<P>, sequence: u64) {
        let Some(r) = self.resilience.as_mut() else {
            debug_assert!(false, "redrive to a slot without a queue");
            return;
        };
        if let Some(s) = &event.subject {
            *r.blocked.entry(s.clone()).or_insert(0) += 1;
        }
        r.queue.push_back(Waiting {
            event,
            sequence,
            attempts: Vec::new(),
            due: Duration::ZERO,
        });
        self.metrics
            .pending
            .store(r.queue.len() as u64, StdOrdering::Relaxed);
    }

    /// Runs the slot: due queued events first, then this batch's fresh events.
    pub(crate) fn run(&mut self, batch: Option<&Batch<'_, Event<P>>>, services: &Services<P>) {
        let _inside = Inside::enter(services.bus, Role::Dispatch);
        self.run_ok = 0;
        self.run_failed = 0;
        self.run_panicked = 0;
        self.run_retried = 0;
        self.run_dead_lettered = 0;
        if self.resilience.is_some() {
            self.run_queue(services);
        }
        let work = std::mem::take(&mut self.work);
        if let Some(batch) = batch.filter(|_| !work.is_empty()) {
            self.run_fresh(&work, batch, services);
        }
        self.work = work;
        self.batch_end();
        self.publish_metrics();
    }

    /// Runs this batch's events for this handler, in order.
    fn run_fresh(&mut self, work: &[u32], batch: &Batch<'_, Event<P>>, services: &Services<P>) {
        #[cfg(not(feature = "tracing"))]
        if self.resilience.is_none() && !services.flow_log {
            self.run_plain(work, batch, services.metrics);
            return;
        }
        for &off in work {
            let seq = batch.sequence(off);
            let event = batch.get(off);
            if self.resilience.is_some() && self.must_queue(event, services) {
                let r = self.resilience.as_mut().expect("checked");
                let copy = match try_clone(r.spec.clone, event) {
                    Ok(copy) => copy,
                    Err(reason) => {
                        // No copy to keep: the event cannot wait here. A failure.
                        self.errors += 1;
                        self.run_failed += 1;
                        self.failures.push((Failed::Fresh(off), reason));
                        continue;
                    }
                };
                if let Some(s) = &event.subject {
                    *r.blocked.entry(s.clone()).or_insert(0) += 1;
                }
                r.queue.push_back(Waiting {
                    event: copy,
                    sequence: seq,
                    attempts: Vec::new(),
                    due: Duration::ZERO,
                });
                self.overflow_check(services);
                continue;
            }
            match self.call(event, services) {
                Ok(()) => {}
                Err(reason) => {
                    if services.flow_log {
                        self.flow.push(flow_entry(event, Some(&reason)));
                    }
                    self.after_fresh_failure(event, (off, seq), &reason, services);
                    self.failures.push((Failed::Fresh(off), reason));
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
            eprintln!("ringbus: handler {} panicked in on_batch_end", self.name);
            drop_quietly(p);
        }
    }

    /// The common case — no retry machinery, no flow log: one `catch_unwind` around
    /// the whole run of events rather than one per call; after a panic the run
    /// resumes with the next event.
    #[cfg(not(feature = "tracing"))]
    fn run_plain(&mut self, work: &[u32], batch: &Batch<'_, Event<P>>, metrics: bool) {
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
                    let event = batch.get(off);
                    sample = sample.wrapping_add(1);
                    let outcome = if metrics && sample.is_multiple_of(SAMPLE_EVERY) {
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
                            failures.push((Failed::Fresh(off), FailureReason::Error(e)));
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
                    Failed::Fresh(work[i]),
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
    fn call(&mut self, event: &Event<P>, services: &Services<P>) -> Result<(), FailureReason> {
        let breaker_active = self
            .resilience
            .as_ref()
            .is_some_and(|r| r.breaker.is_some());
        self.sample = self.sample.wrapping_add(1);
        let sampled = services.metrics && self.sample.is_multiple_of(SAMPLE_EVERY);
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

    fn breaker_changed(&mut self, t: BreakerTransition, services: &Services<P>) {
        self.metrics
            .breaker
            .store(breaker_code(t.to), StdOrdering::Relaxed);
        if let Some(listener) = &services.on_breaker {
            let name = self.name.clone();
            let sub = self.sub;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| listener(sub, &name, t))) {
                eprintln!("ringbus: breaker listener panicked");
                drop_quietly(p);
            }
        }
    }

    /// Whether a fresh event must wait in the queue: its subject is blocked, or the
    /// breaker does not let calls through.
    fn must_queue(&mut self, event: &Event<P>, services: &Services<P>) -> bool {
        let r = self.resilience.as_mut().expect("resilient slot");
        if let Some(s) = &event.subject {
            if r.blocked.contains_key(s) {
                return true;
            }
        }
        let Some(b) = r.breaker.as_mut() else {
            return false;
        };
        let allowed = b.allow(services.clock.now());
        if let Some(t) = b.take_transition() {
            self.breaker_changed(t, services);
        }
        !allowed
    }

    /// After a fresh event failed: schedule its retry, or dead-letter it.
    fn after_fresh_failure(
        &mut self,
        event: &Event<P>,
        (off, seq): (u32, u64),
        reason: &FailureReason,
        services: &Services<P>,
    ) {
        let Some(r) = self.resilience.as_mut() else {
            return;
        };
        let now = services.clock.now();
        let mut attempts = vec![attempt(now, reason)];
        let copy = match try_clone(r.spec.clone, event) {
            Ok(copy) => copy,
            Err(why) => {
                // No copy: the event can be neither retried nor dead-lettered. The
                // handler's failure is reported already; this one says why.
                self.failures.push((Failed::Fresh(off), why));
                return;
            }
        };
        match next_delay(&r.spec.retry, 1, reason, &mut r.rng, &mut attempts, now) {
            Some(delay) => {
                self.retries += 1;
                self.run_retried += 1;
                if let Some(s) = &event.subject {
                    *r.blocked.entry(s.clone()).or_insert(0) += 1;
                }
                r.queue.push_back(Waiting {
                    event: copy,
                    sequence: seq,
                    attempts,
                    due: now.saturating_add(delay),
                });
                self.overflow_check(services);
            }
            None => self.dead_letter(copy, attempts, services),
        }
    }

    fn dead_letter(&mut self, event: Event<P>, attempts: Vec<Attempt>, services: &Services<P>) {
        self.dead_lettered += 1;
        self.run_dead_lettered += 1;
        super::dead_letter(services, event, self.sub, &self.name, attempts);
    }

    /// Keeps the queue within `max_pending`: the oldest entries beyond it go to
    /// the dead-letter queue, so a handler that stays broken cannot grow memory
    /// without bound.
    fn overflow_check(&mut self, services: &Services<P>) {
        loop {
            let r = self.resilience.as_mut().expect("resilient slot");
            if r.queue.len() <= r.spec.max_pending {
                return;
            }
            let w = r.queue.pop_front().expect("non-empty");
            if let Some(s) = &w.event.subject {
                unblock(&mut r.blocked, s);
            }
            let mut attempts = w.attempts;
            attempts.push(Attempt {
                at: services.clock.now(),
                error: "pending queue full (max_pending)".into(),
                panicked: false,
            });
            self.dead_letter(w.event, attempts, services);
        }
    }

    /// Tries every queued event that is due and not behind an earlier waiting
    /// event of its subject, in order.
    fn run_queue(&mut self, services: &Services<P>) {
        let Some(r) = self.resilience.as_mut() else {
            return;
        };
        if r.queue.is_empty() {
            return;
        }
        let now = services.clock.now();
        let mut queue = std::mem::take(&mut r.queue);
        let mut keep: VecDeque<Waiting<P>> = VecDeque::with_capacity(queue.len());
        // Subjects with an entry kept (still waiting) earlier in this pass.
        let mut waiting: Vec<crate::Subject> = Vec::new();
        let mut breaker_closed_to_calls = false;
        while let Some(mut w) = queue.pop_front() {
            let behind = w
                .event
                .subject
                .as_ref()
                .is_some_and(|s| waiting.contains(s));
            if behind || w.due > now || breaker_closed_to_calls {
                if let Some(s) = &w.event.subject {
                    if !waiting.contains(s) {
                        waiting.push(s.clone());
                    }
                }
                keep.push_back(w);
                continue;
            }
            // The breaker decides whether this call may go through.
            let r = self.resilience.as_mut().expect("resilient slot");
            if let Some(b) = r.breaker.as_mut() {
                let allowed = b.allow(now);
                if let Some(t) = b.take_transition() {
                    self.breaker_changed(t, services);
                }
                if !allowed {
                    breaker_closed_to_calls = true;
                    if let Some(s) = &w.event.subject {
                        if !waiting.contains(s) {
                            waiting.push(s.clone());
                        }
                    }
                    keep.push_back(w);
                    continue;
                }
            }
            match self.call(&w.event, services) {
                Ok(()) => {
                    if services.flow_log {
                        self.flow.push(flow_entry(&w.event, None));
                    }
                    let r = self.resilience.as_mut().expect("resilient slot");
                    if let Some(s) = &w.event.subject {
                        unblock(&mut r.blocked, s);
                    }
                    drop_quietly(w);
                }
                Err(reason) => {
                    if services.flow_log {
                        self.flow.push(flow_entry(&w.event, Some(&reason)));
                    }
                    let r = self.resilience.as_mut().expect("resilient slot");
                    let sequence = w.sequence;
                    w.attempts.push(attempt(now, &reason));
                    let made = w.attempts.len() as u32;
                    let report = try_clone(r.spec.clone, &w.event).ok().map(Box::new);
                    match next_delay(
                        &r.spec.retry,
                        made,
                        &reason,
                        &mut r.rng,
                        &mut w.attempts,
                        now,
                    ) {
                        Some(delay) => {
                            self.retries += 1;
                            self.run_retried += 1;
                            w.due = now.saturating_add(delay);
                            if let Some(s) = &w.event.subject {
                                if !waiting.contains(s) {
                                    waiting.push(s.clone());
                                }
                            }
                            keep.push_back(w);
                        }
                        None => {
                            if let Some(s) = &w.event.subject {
                                unblock(&mut r.blocked, s);
                            }
                            self.dead_letter(w.event, w.attempts, services);
                        }
                    }
                    self.failures
                        .push((Failed::Queued(report, sequence), reason));
                }
            }
        }
        let r = self.resilience.as_mut().expect("resilient slot");
        r.queue = keep;
    }

    fn publish_metrics(&mut self) {
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

/// Records one sampled call's handler time and publish→handled latency. One
/// uncontended lock per sampled call (1 in `SAMPLE_EVERY`): cheaper than merging a
/// local histogram, whose `add` walks every bucket.
#[cold]
fn record_sample<P>(metrics: &SlotMetrics, started: std::time::Instant, event: &Event<P>) {
    let took = started.elapsed().as_nanos() as u64;
    let now = Timestamp::now().as_nanos();
    let mut h = metrics.histograms.lock().unwrap_or_else(|e| e.into_inner());
    h.handler_time.record(took);
    h.latency
        .record(now.saturating_sub(event.timestamp.as_nanos()));
}

/// Copies an event for a queue or a report; a panicking `clone` (user code) is
/// contained and becomes the failure reason.
fn try_clone<P>(
    clone: fn(&Event<P>) -> Event<P>,
    event: &Event<P>,
) -> Result<Event<P>, FailureReason> {
    catch_unwind(AssertUnwindSafe(|| clone(event))).map_err(|p| {
        let reason = FailureReason::Panic(format!(
            "the payload's clone panicked ({}): the event could not be kept for a retry or the dead-letter queue",
            panic_message(&*p)
        ));
        drop_quietly(p);
        reason
    })
}

/// The retry policy's delay before the next attempt, or `None` to give up. A
/// panicking `retry_if` predicate (user code) is contained: no retry, and the
/// attempt list says why.
fn next_delay(
    policy: &RetryPolicy,
    made: u32,
    reason: &FailureReason,
    rng: &mut u64,
    attempts: &mut Vec<Attempt>,
    now: Duration,
) -> Option<Duration> {
    match catch_unwind(AssertUnwindSafe(|| policy.next_delay(made, reason, rng))) {
        Ok(delay) => delay,
        Err(p) => {
            attempts.push(Attempt {
                at: now,
                error: format!("retry_if predicate panicked: {}", panic_message(&*p)),
                panicked: true,
            });
            drop_quietly(p);
            None
        }
    }
}

fn unblock(blocked: &mut HashMap<crate::Subject, usize>, s: &crate::Subject) {
    if let Some(n) = blocked.get_mut(s) {
        *n -= 1;
        if *n == 0 {
            blocked.remove(s);
        }
    }
}

fn attempt(now: Duration, reason: &FailureReason) -> Attempt {
    Attempt {
        at: now,
        error: reason.to_string(),
        panicked: matches!(reason, FailureReason::Panic(_)),
    }
}

fn flow_entry<P>(e: &Event<P>, failure: Option<&FailureReason>) -> FlowEntry {
    FlowEntry {
        event_id: e.id,
        event_type: e.event_type,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        at: Timestamp::now(),
        error: failure.map(|f| f.to_string()),
    }
}
