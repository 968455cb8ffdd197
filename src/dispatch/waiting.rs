//! The per-subject waiting queue of a handler slot, for subscriptions with a retry
//! policy or a circuit breaker: events waiting for a retry or for the breaker to
//! let them through, and the code that queues, retries, and gives up on them.
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
use std::sync::atomic::Ordering as StdOrdering;
use std::time::Duration;

use super::dispatcher;
use super::slot::{flow_entry, Failed, HandlerSlot, Services};
use crate::delivery::Tracker;
use crate::event::{Event, Subject};
use crate::outcome::{FailureReason, SubscriptionId};
use crate::resilience::{Attempt, BreakerConfig, CircuitBreaker, RetryPolicy};
use crate::sync::Arc;
use crate::unwind::{drop_quietly, panic_message};

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

/// An event waiting at one handler.
pub(crate) struct Waiting<P> {
    pub(crate) event: Event<P>,
    pub(crate) sequence: u64,
    pub(crate) attempts: Vec<Attempt>,
    /// Clock time from which it may be tried (0: as soon as nothing blocks it).
    due: Duration,
    /// Its delivery's countdown, if it was published tracked: whoever ends its
    /// wait here reports this handler's outcome to it.
    pub(crate) tracker: Option<Arc<Tracker>>,
}

pub(super) struct Resilience<P> {
    spec: ResilienceSpec<P>,
    pub(super) breaker: Option<CircuitBreaker>,
    pub(super) queue: VecDeque<Waiting<P>>,
    /// Subject → entries of that subject in `queue`. A fresh event whose subject is
    /// here queues behind them.
    blocked: HashMap<Subject, usize>,
    rng: u64,
}

impl<P> Resilience<P> {
    pub(super) fn new(spec: ResilienceSpec<P>, sub: SubscriptionId, lane: u32) -> Self {
        Resilience {
            breaker: spec.breaker.map(CircuitBreaker::new),
            spec,
            queue: VecDeque::new(),
            blocked: HashMap::new(),
            // Any non-zero seed: jitter need not be unpredictable, only spread.
            rng: 0x9E37_79B9_7F4A_7C15 ^ (sub.0 << 8) ^ u64::from(lane),
        }
    }
}

/// The queue side of a slot.
impl<P: 'static> HandlerSlot<P> {
    /// Whether the slot has queued events (waiting for a retry or the breaker).
    pub(crate) fn has_queue(&self) -> bool {
        self.resilience
            .as_ref()
            .is_some_and(|r| !r.queue.is_empty())
    }

    /// The lowest sequence (root) among the queued events, if any.
    pub(crate) fn queue_min_sequence(&self) -> Option<u64> {
        let r = self.resilience.as_ref()?;
        r.queue.iter().map(|w| w.sequence).min()
    }

    /// The earliest clock time at which a queued event could be tried. Only the
    /// first waiting event of each subject counts: the events queued behind it
    /// cannot be tried before it, whatever their own due time.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        let r = self.resilience.as_ref()?;
        let mut heads: ahash::AHashSet<&Subject> = ahash::AHashSet::new();
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
            tracker: None,
        });
        self.metrics
            .pending
            .store(r.queue.len() as u64, StdOrdering::Relaxed);
    }

    /// Queues a fresh event that [`must_queue`](HandlerSlot::must_queue): a copy
    /// waits behind its subject (or the breaker), due at once.
    pub(super) fn queue_fresh(
        &mut self,
        event: &Event<P>,
        (off, seq): (u32, u64),
        services: &Services<P>,
        tracker: Option<&Arc<Tracker>>,
    ) {
        let r = self.resilience.as_mut().expect("checked");
        let copy = match try_clone(r.spec.clone, event) {
            Ok(copy) => copy,
            Err(reason) => {
                // No copy to keep: the event cannot wait here. A failure.
                if let Some(t) = tracker {
                    t.failed((self.sub, self.lane), &self.name, &reason);
                }
                self.errors += 1;
                self.run_failed += 1;
                self.failures.push((Failed::last_fresh(off), reason));
                return;
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
            tracker: tracker.cloned(),
        });
        self.overflow_check(services);
    }

    /// Whether a fresh event must wait in the queue: its subject is blocked, or the
    /// breaker does not let calls through.
    pub(super) fn must_queue(&mut self, event: &Event<P>, services: &Services<P>) -> bool {
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
    /// Returns whether a retry was scheduled.
    pub(super) fn after_fresh_failure(
        &mut self,
        event: &Event<P>,
        (off, seq): (u32, u64),
        reason: &FailureReason,
        services: &Services<P>,
        tracker: Option<&Arc<Tracker>>,
    ) -> bool {
        let Some(r) = self.resilience.as_mut() else {
            return false;
        };
        let now = services.clock.now();
        let mut attempts = vec![attempt(now, reason)];
        let copy = match try_clone(r.spec.clone, event) {
            Ok(copy) => copy,
            Err(why) => {
                // No copy: the event can be neither retried nor dead-lettered. The
                // handler's failure is reported already; this one says why.
                self.failures.push((Failed::last_fresh(off), why));
                return false;
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
                    tracker: tracker.cloned(),
                });
                self.overflow_check(services);
                true
            }
            None => {
                self.dead_letter(copy, attempts, services);
                false
            }
        }
    }

    fn dead_letter(&mut self, event: Event<P>, attempts: Vec<Attempt>, services: &Services<P>) {
        self.dead_lettered += 1;
        self.run_dead_lettered += 1;
        dispatcher::dead_letter(services, event, self.sub, &self.name, attempts);
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
            let note = "pending queue full (max_pending)";
            let mut attempts = w.attempts;
            attempts.push(Attempt {
                at: services.clock.now(),
                error: note.into(),
                panicked: false,
            });
            self.dead_letter(w.event, attempts, services);
            if let Some(t) = w.tracker {
                t.failed_with((self.sub, self.lane), &self.name, false, note.into());
            }
        }
    }

    /// Tries every queued event that is due and not behind an earlier waiting
    /// event of its subject, in order.
    pub(super) fn run_queue(&mut self, services: &Services<P>) {
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
        let mut waiting: Vec<Subject> = Vec::new();
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
                    if let Some(t) = w.tracker.take() {
                        t.succeeded(self.sub, self.lane);
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
                    let retry = next_delay(
                        &r.spec.retry,
                        made,
                        &reason,
                        &mut r.rng,
                        &mut w.attempts,
                        now,
                    );
                    let last = retry.is_none();
                    match retry {
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
                            let tracker = w.tracker.take();
                            self.dead_letter(w.event, w.attempts, services);
                            // Completed once the letter is in the queue.
                            if let Some(t) = tracker {
                                t.failed((self.sub, self.lane), &self.name, &reason);
                            }
                        }
                    }
                    let failed = Failed::Queued {
                        copy: report,
                        sequence,
                        attempt: made,
                        last,
                    };
                    self.failures.push((failed, reason));
                }
            }
        }
        let r = self.resilience.as_mut().expect("resilient slot");
        r.queue = keep;
    }
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

fn unblock(blocked: &mut HashMap<Subject, usize>, s: &Subject) {
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
