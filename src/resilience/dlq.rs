//! The dead-letter queue: events a handler gave up on, with every attempt's error,
//! kept for inspection, redrive or discard.
//!
//! A bounded queue behind one mutex, ordered by the id it assigns (increasing from
//! 1, so the front is always the oldest letter). Pushes come from the dispatcher at
//! the rate handlers fail; queries come from the user. Neither is a hot path, so a
//! lock is the right tool here; a full queue under [`DlqFullPolicy::Block`] waits on
//! a condition variable that every removal and [`close`](DeadLetterQueue::close)
//! signals.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::error::{ResilienceConfigError, ResilienceConfigErrorKind as Kind};
use super::retry::unwrap_config;
use crate::event::{Event, EventId, EventType, Subject};
use crate::outcome::{FailureReason, SubscriptionId};
use crate::sync::{Arc, Condvar, Mutex};

/// One failed call of a dead-lettered event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When the call failed (the bus clock's time).
    pub at: Duration,
    /// The error text (the handler error's `Display`, or the panic message).
    pub error: String,
    /// Whether the handler panicked.
    pub panicked: bool,
}

impl Attempt {
    /// The record of a call that failed at `at` for `reason`.
    pub fn new(at: Duration, reason: &FailureReason) -> Self {
        match reason {
            FailureReason::Error(e) => Attempt {
                at,
                error: e.to_string(),
                panicked: false,
            },
            FailureReason::Panic(msg) => Attempt {
                at,
                error: msg.clone(),
                panicked: true,
            },
        }
    }
}

/// An event a handler gave up on, with who gave up and every attempt.
#[derive(Clone)]
pub struct DeadLetter<P> {
    /// Assigned by the queue, increasing from 1; 0 in a letter handed back by a
    /// failed push (never queued, so never numbered).
    pub id: u64,
    /// The event.
    pub event: Event<P>,
    /// The subscription whose handler failed.
    pub subscription: SubscriptionId,
    /// The handler's name.
    pub handler: std::sync::Arc<str>,
    /// Every failed call, oldest first.
    pub attempts: Vec<Attempt>,
}

impl<P> fmt::Debug for DeadLetter<P> {
    /// Everything but the payload (so `P` need not be `Debug`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("event_id", &self.event.id)
            .field("event_type", &self.event.event_type)
            .field("subject", &self.event.subject)
            .field("subscription", &self.subscription)
            .field("handler", &self.handler)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A dead letter without its payload: what [`DeadLetterQueue::list`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// The letter's id in the queue.
    pub id: u64,
    /// The event's id.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The event's subject, if any.
    pub subject: Option<Subject>,
    /// The subscription whose handler failed.
    pub subscription: SubscriptionId,
    /// The handler's name.
    pub handler: std::sync::Arc<str>,
    /// Every failed call, oldest first.
    pub attempts: Vec<Attempt>,
}

impl<P> From<&DeadLetter<P>> for DeadLetterInfo {
    fn from(l: &DeadLetter<P>) -> Self {
        DeadLetterInfo {
            id: l.id,
            event_id: l.event.id,
            event_type: l.event.event_type,
            subject: l.event.subject.clone(),
            subscription: l.subscription,
            handler: l.handler.clone(),
            attempts: l.attempts.clone(),
        }
    }
}

/// Which dead letters a query selects: all by default; each setting narrows it.
///
/// # Examples
/// ```
/// use ringbus::EventType;
/// use ringbus::resilience::DlqFilter;
///
/// let placed = DlqFilter::all().event_type(EventType::new("order.placed"));
/// assert_ne!(placed, DlqFilter::all());
/// assert_eq!(DlqFilter::all(), DlqFilter::default());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlqFilter {
    subscription: Option<SubscriptionId>,
    event_type: Option<EventType>,
    handler: Option<std::sync::Arc<str>>,
}

impl DlqFilter {
    /// Every letter.
    pub fn all() -> Self {
        DlqFilter::default()
    }

    /// Only letters of this subscription.
    pub fn subscription(mut self, id: SubscriptionId) -> Self {
        self.subscription = Some(id);
        self
    }

    /// Only letters whose event has this type.
    pub fn event_type(mut self, t: EventType) -> Self {
        self.event_type = Some(t);
        self
    }

    /// Only letters of handlers with this name.
    pub fn handler(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.handler = Some(name.into());
        self
    }

    /// Whether `letter` is selected.
    pub fn matches<P>(&self, letter: &DeadLetter<P>) -> bool {
        self.subscription.is_none_or(|s| s == letter.subscription)
            && self.event_type.is_none_or(|t| t == letter.event.event_type)
            && self
                .handler
                .as_deref()
                .is_none_or(|h| h == &*letter.handler)
    }
}

/// What a push does when the queue is full.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum DlqFullPolicy {
    /// Evict the oldest letter to make room, and count it
    /// ([`DeadLetterQueue::evicted`]).
    #[default]
    DropOldest,
    /// Wait until a letter is taken or discarded, or the queue is closed.
    ///
    /// In a bus, the push waits on the thread of the failing handler, and the
    /// dispatcher waits for every handler task before it releases a batch: while
    /// the queue stays full, **every** handler stalls, not just the failing one,
    /// until a letter is discarded or redriven. Once the bus begins shutting down,
    /// a full queue stops waiting and takes letters beyond its capacity (at most
    /// what was in flight), so shutdown never hangs on it.
    Block,
}

/// `push` failed: the queue is closed. The letter (with id 0) is handed back,
/// boxed so that the `Result` of a push stays small.
pub struct DlqClosed<P>(pub Box<DeadLetter<P>>);

/// `try_push` failed; the letter (with id 0) is handed back, boxed.
pub enum DlqTryPushError<P> {
    /// The queue is full and its policy is [`DlqFullPolicy::Block`].
    Full(Box<DeadLetter<P>>),
    /// The queue is closed.
    Closed(Box<DeadLetter<P>>),
}

/// `push_timeout` failed; the letter (with id 0) is handed back, boxed.
pub enum DlqPushTimeoutError<P> {
    /// The queue stayed full until the timeout.
    Timeout(Box<DeadLetter<P>>),
    /// The queue is closed.
    Closed(Box<DeadLetter<P>>),
}

impl<P> DlqClosed<P> {
    /// The letter that was not queued.
    pub fn into_inner(self) -> DeadLetter<P> {
        *self.0
    }
}

impl<P> DlqTryPushError<P> {
    /// The letter that was not queued.
    pub fn into_inner(self) -> DeadLetter<P> {
        match self {
            DlqTryPushError::Full(l) | DlqTryPushError::Closed(l) => *l,
        }
    }

    /// Whether the queue was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, DlqTryPushError::Full(_))
    }
}

impl<P> DlqPushTimeoutError<P> {
    /// The letter that was not queued.
    pub fn into_inner(self) -> DeadLetter<P> {
        match self {
            DlqPushTimeoutError::Timeout(l) | DlqPushTimeoutError::Closed(l) => *l,
        }
    }
}

impl<P> fmt::Debug for DlqClosed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DlqClosed").field(&self.0).finish()
    }
}

impl<P> fmt::Display for DlqClosed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the dead-letter queue is closed")
    }
}

impl<P> std::error::Error for DlqClosed<P> {}

impl<P> fmt::Debug for DlqTryPushError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlqTryPushError::Full(l) => f.debug_tuple("Full").field(l).finish(),
            DlqTryPushError::Closed(l) => f.debug_tuple("Closed").field(l).finish(),
        }
    }
}

impl<P> fmt::Display for DlqTryPushError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlqTryPushError::Full(_) => f.write_str("the dead-letter queue is full"),
            DlqTryPushError::Closed(_) => f.write_str("the dead-letter queue is closed"),
        }
    }
}

impl<P> std::error::Error for DlqTryPushError<P> {}

impl<P> fmt::Debug for DlqPushTimeoutError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlqPushTimeoutError::Timeout(l) => f.debug_tuple("Timeout").field(l).finish(),
            DlqPushTimeoutError::Closed(l) => f.debug_tuple("Closed").field(l).finish(),
        }
    }
}

impl<P> fmt::Display for DlqPushTimeoutError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlqPushTimeoutError::Timeout(_) => {
                f.write_str("the dead-letter queue stayed full until the timeout")
            }
            DlqPushTimeoutError::Closed(_) => f.write_str("the dead-letter queue is closed"),
        }
    }
}

impl<P> std::error::Error for DlqPushTimeoutError<P> {}

struct State<P> {
    /// Queued letters in increasing id order; `len() <= capacity`.
    letters: VecDeque<DeadLetter<P>>,
    /// The id of the next letter, `1 ..`.
    next_id: u64,
    /// Letters pushed out by `DropOldest`.
    evicted: u64,
    /// Letters ever queued.
    total_pushed: u64,
    /// Pushes waiting for space right now (`Block`).
    blocked: usize,
    closed: bool,
    /// Set when the bus begins shutting down: a full `Block` queue stops
    /// waiting for a reader that may never come and takes the letter beyond its
    /// capacity (at most what was in flight at the close).
    overflow: bool,
}

struct Shared<P> {
    state: Mutex<State<P>>,
    /// Signalled (all waiters) when a letter leaves the queue or the queue closes.
    space: Condvar,
    /// `1 ..`.
    capacity: usize,
    policy: DlqFullPolicy,
}

/// A bounded dead-letter queue; a cheap-to-clone handle (clones share the queue).
///
/// `Send + Sync` when `P: Send`. Letters keep their push order; ids increase.
/// When full, [`DlqFullPolicy::DropOldest`] evicts the oldest letter and counts it
/// in [`evicted`](DeadLetterQueue::evicted) (a metric, so no letter vanishes
/// unnoticed), while [`DlqFullPolicy::Block`] makes the push wait for room.
/// [`close`](DeadLetterQueue::close) wakes blocked pushes and fails later ones,
/// handing the letter back; queries and removals keep working after it.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ringbus::failure::FailureReason;
/// use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
/// use ringbus::resilience::{Attempt, DeadLetterQueue, DlqFilter, DlqFullPolicy};
///
/// # let bus = BusBuilder::<u32>::new().build().unwrap();
/// # let subscription = bus
/// #     .subscribe_all(|_: &Event<u32>| -> Result<(), HandlerError> { Ok(()) })
/// #     .unwrap();
/// let dlq = DeadLetterQueue::new(1000, DlqFullPolicy::DropOldest);
/// let event = Event::new(event_type!("order.placed"), source!("shop"), 42u32);
/// let failed = FailureReason::Error(HandlerError::permanent("no such customer"));
/// let id = dlq
///     .push(event, subscription, "billing", vec![Attempt::new(Duration::ZERO, &failed)])
///     .unwrap();
///
/// let listed = dlq.list(&DlqFilter::all().subscription(subscription));
/// assert_eq!(listed[0].id, id);
/// assert_eq!(listed[0].attempts[0].error, "permanent error: no such customer");
/// let letter = dlq.take(id).unwrap(); // e.g. to redrive it
/// assert_eq!(letter.event.data, 42);
/// assert!(dlq.is_empty());
/// ```
pub struct DeadLetterQueue<P> {
    shared: Arc<Shared<P>>,
}

impl<P> Clone for DeadLetterQueue<P> {
    fn clone(&self) -> Self {
        DeadLetterQueue {
            shared: self.shared.clone(),
        }
    }
}

impl<P> DeadLetterQueue<P> {
    /// A queue holding at most `capacity` letters.
    ///
    /// # Panics
    /// If `capacity` is 0; see [`try_new`](DeadLetterQueue::try_new).
    #[track_caller]
    pub fn new(capacity: usize, policy: DlqFullPolicy) -> Self {
        unwrap_config(DeadLetterQueue::try_new(capacity, policy))
    }

    /// [`new`](DeadLetterQueue::new), or an error if `capacity` is 0.
    pub fn try_new(capacity: usize, policy: DlqFullPolicy) -> Result<Self, ResilienceConfigError> {
        if capacity == 0 {
            return Err(ResilienceConfigError::new(Kind::ZeroCapacity));
        }
        Ok(DeadLetterQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    letters: VecDeque::new(),
                    next_id: 1,
                    evicted: 0,
                    total_pushed: 0,
                    blocked: 0,
                    closed: false,
                    overflow: false,
                }),
                space: Condvar::new(),
                capacity,
                policy,
            }),
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State<P>) -> R) -> R {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Queues a letter, numbering it; returns its id.
    ///
    /// When the queue is full: under `DropOldest` evicts the oldest letter (and
    /// counts it); under `Block` waits until there is room. Fails, handing the
    /// letter back, if the queue is closed (also while waiting).
    pub fn push(
        &self,
        event: Event<P>,
        subscription: SubscriptionId,
        handler: impl Into<std::sync::Arc<str>>,
        attempts: Vec<Attempt>,
    ) -> Result<u64, DlqClosed<P>> {
        let letter = unnumbered(event, subscription, handler.into(), attempts);
        match self.push_until(letter, None) {
            Ok(id) => Ok(id),
            Err(DlqPushTimeoutError::Closed(l) | DlqPushTimeoutError::Timeout(l)) => {
                Err(DlqClosed(l))
            }
        }
    }

    /// Queues a letter without waiting: as [`push`](DeadLetterQueue::push), but a
    /// full `Block` queue fails with [`DlqTryPushError::Full`].
    pub fn try_push(
        &self,
        event: Event<P>,
        subscription: SubscriptionId,
        handler: impl Into<std::sync::Arc<str>>,
        attempts: Vec<Attempt>,
    ) -> Result<u64, DlqTryPushError<P>> {
        let letter = unnumbered(event, subscription, handler.into(), attempts);
        match self.push_until(letter, Some(Instant::now())) {
            Ok(id) => Ok(id),
            Err(DlqPushTimeoutError::Timeout(l)) => Err(DlqTryPushError::Full(l)),
            Err(DlqPushTimeoutError::Closed(l)) => Err(DlqTryPushError::Closed(l)),
        }
    }

    /// Queues a letter, waiting at most `timeout` for room (under `Block`).
    pub fn push_timeout(
        &self,
        event: Event<P>,
        subscription: SubscriptionId,
        handler: impl Into<std::sync::Arc<str>>,
        attempts: Vec<Attempt>,
        timeout: Duration,
    ) -> Result<u64, DlqPushTimeoutError<P>> {
        let letter = unnumbered(event, subscription, handler.into(), attempts);
        // A timeout too large for an `Instant` is no timeout.
        self.push_until(letter, Instant::now().checked_add(timeout))
    }

    /// The one push: `deadline` `None` waits for as long as it takes.
    fn push_until(
        &self,
        mut letter: DeadLetter<P>,
        deadline: Option<Instant>,
    ) -> Result<u64, DlqPushTimeoutError<P>> {
        let shared = &*self.shared;
        let mut evicted = None;
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.closed {
                return Err(DlqPushTimeoutError::Closed(Box::new(letter)));
            }
            if state.letters.len() < shared.capacity || state.overflow {
                break;
            }
            if shared.policy == DlqFullPolicy::DropOldest {
                // Dropped below, outside the lock: a payload's `Drop` is user code.
                evicted = state.letters.pop_front();
                state.evicted += 1;
                break;
            }
            state.blocked += 1;
            state = match deadline {
                None => shared.space.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        state.blocked -= 1;
                        return Err(DlqPushTimeoutError::Timeout(Box::new(letter)));
                    }
                    let (guard, _timed_out) = shared
                        .space
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner());
                    guard
                }
            };
            state.blocked -= 1;
        }
        letter.id = state.next_id;
        state.next_id += 1;
        state.total_pushed += 1;
        let id = letter.id;
        state.letters.push_back(letter);
        drop(state);
        drop(evicted);
        Ok(id)
    }

    /// The bus is shutting down: from now on a full `Block` queue takes letters
    /// beyond its capacity instead of waiting (and releases the pushes waiting
    /// now), so shutdown never waits for a reader that may not come.
    pub(crate) fn stop_blocking(&self) {
        self.with_state(|s| s.overflow = true);
        self.shared.space.notify_all();
    }

    /// Removes and returns the letters for which `select` is true, oldest first.
    pub(crate) fn take_where(
        &self,
        select: impl FnMut(&DeadLetter<P>) -> bool,
    ) -> Vec<DeadLetter<P>> {
        let mut select = select;
        let taken = self.with_state(|s| {
            let (taken, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut s.letters)
                .into_iter()
                .partition(|l| select(l));
            s.letters = kept;
            Vec::from(taken)
        });
        if !taken.is_empty() {
            self.shared.space.notify_all();
        }
        taken
    }

    /// The subscription of the letter with this id, if it is queued.
    pub(crate) fn subscription_of(&self, id: u64) -> Option<SubscriptionId> {
        self.with_state(|s| position(&s.letters, id).map(|i| s.letters[i].subscription))
    }

    /// Closes the queue: pushes waiting for room fail now, later pushes fail at
    /// once (each handing its letter back). Letters already queued stay, and can
    /// still be listed, taken and discarded. Idempotent.
    pub fn close(&self) {
        self.with_state(|s| s.closed = true);
        self.shared.space.notify_all();
    }

    /// Whether [`close`](DeadLetterQueue::close) was called.
    pub fn is_closed(&self) -> bool {
        self.with_state(|s| s.closed)
    }

    /// Letters queued now.
    pub fn len(&self) -> usize {
        self.with_state(|s| s.letters.len())
    }

    /// Whether no letter is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most letters the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// What a push does when the queue is full.
    pub fn policy(&self) -> DlqFullPolicy {
        self.shared.policy
    }

    /// Letters evicted by `DropOldest` so far.
    pub fn evicted(&self) -> u64 {
        self.with_state(|s| s.evicted)
    }

    /// Letters ever queued (evicted, taken and discarded ones included).
    pub fn total_pushed(&self) -> u64 {
        self.with_state(|s| s.total_pushed)
    }

    /// Pushes waiting for room right now (only under `Block`).
    pub fn blocked_pushes(&self) -> usize {
        self.with_state(|s| s.blocked)
    }

    /// The selected letters without payloads, oldest first.
    pub fn list(&self, filter: &DlqFilter) -> Vec<DeadLetterInfo> {
        self.with_state(|s| {
            s.letters
                .iter()
                .filter(|l| filter.matches(l))
                .map(DeadLetterInfo::from)
                .collect()
        })
    }

    /// A copy of the letter with this id, if it is queued.
    pub fn get(&self, id: u64) -> Option<DeadLetter<P>>
    where
        P: Clone,
    {
        self.with_state(|s| position(&s.letters, id).map(|i| s.letters[i].clone()))
    }

    /// Removes and returns the letter with this id (to redrive it).
    pub fn take(&self, id: u64) -> Option<DeadLetter<P>> {
        let taken = self.with_state(|s| position(&s.letters, id).and_then(|i| s.letters.remove(i)));
        if taken.is_some() {
            self.shared.space.notify_all();
        }
        taken
    }

    /// Removes and returns the selected letters, oldest first.
    pub fn take_matching(&self, filter: &DlqFilter) -> Vec<DeadLetter<P>> {
        self.take_where(|l| filter.matches(l))
    }

    /// Drops the letter with this id; whether it was queued.
    pub fn discard(&self, id: u64) -> bool {
        self.take(id).is_some()
    }

    /// Drops the selected letters; how many.
    pub fn discard_matching(&self, filter: &DlqFilter) -> usize {
        self.take_matching(filter).len()
    }
}

/// The index of the letter with `id`: ids increase front to back.
fn position<P>(letters: &VecDeque<DeadLetter<P>>, id: u64) -> Option<usize> {
    letters.binary_search_by_key(&id, |l| l.id).ok()
}

fn unnumbered<P>(
    event: Event<P>,
    subscription: SubscriptionId,
    handler: std::sync::Arc<str>,
    attempts: Vec<Attempt>,
) -> DeadLetter<P> {
    DeadLetter {
        id: 0,
        event,
        subscription,
        handler,
        attempts,
    }
}

impl<P> fmt::Debug for DeadLetterQueue<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, evicted, closed) = self.with_state(|s| (s.letters.len(), s.evicted, s.closed));
        f.debug_struct("DeadLetterQueue")
            .field("len", &len)
            .field("capacity", &self.shared.capacity)
            .field("policy", &self.shared.policy)
            .field("evicted", &evicted)
            .field("closed", &closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::HandlerError;
    use std::thread;

    fn event(t: &str, n: u32) -> Event<u32> {
        Event::new(EventType::new(t), crate::event::Source::new("test"), n)
    }

    fn attempt(secs: u64) -> Attempt {
        Attempt::new(
            Duration::from_secs(secs),
            &FailureReason::Error(HandlerError::transient("busy")),
        )
    }

    const A: SubscriptionId = SubscriptionId(1);
    const B: SubscriptionId = SubscriptionId(2);

    /// Spins (yielding) until `cond` holds, failing the test after 10 s.
    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::yield_now();
        }
    }

    #[test]
    fn push_numbers_letters_and_keeps_every_attempt() {
        let dlq = DeadLetterQueue::new(4, DlqFullPolicy::DropOldest);
        let attempts = vec![attempt(1), attempt(3)];
        let a = dlq.push(event("t.a", 1), A, "h", attempts.clone()).unwrap();
        let b = dlq.push(event("t.a", 2), A, "h", vec![]).unwrap();
        assert_eq!((a, b), (1, 2));
        let got = dlq.get(a).unwrap();
        assert_eq!(got.id, 1);
        assert_eq!(got.event.data, 1);
        assert_eq!(got.attempts, attempts);
        assert_eq!(got.attempts[0].error, "transient error: busy");
        assert_eq!(dlq.len(), 2, "get copies");
        assert_eq!((dlq.capacity(), dlq.total_pushed()), (4, 2));
        assert!(dlq.get(99).is_none());
    }

    #[test]
    fn attempt_records_panics() {
        let a = Attempt::new(Duration::from_secs(2), &FailureReason::Panic("boom".into()));
        assert_eq!((a.error.as_str(), a.panicked), ("boom", true));
        assert!(!attempt(0).panicked);
    }

    #[test]
    fn drop_oldest_evicts_in_order_and_counts() {
        let dlq = DeadLetterQueue::new(3, DlqFullPolicy::DropOldest);
        for n in 0..5 {
            dlq.push(event("t.a", n), A, "h", vec![]).unwrap();
        }
        assert_eq!(dlq.len(), 3);
        assert_eq!(dlq.evicted(), 2);
        assert_eq!(dlq.total_pushed(), 5);
        let ids: Vec<u64> = dlq.list(&DlqFilter::all()).iter().map(|i| i.id).collect();
        assert_eq!(ids, [3, 4, 5], "the two oldest went");
        assert_eq!(dlq.get(3).unwrap().event.data, 2);
    }

    #[test]
    fn filters_select_by_subscription_type_and_handler() {
        let dlq = DeadLetterQueue::new(10, DlqFullPolicy::Block);
        let placed = EventType::new("order.placed");
        dlq.push(event("order.placed", 0), A, "billing", vec![])
            .unwrap();
        dlq.push(event("order.shipped", 1), A, "billing", vec![])
            .unwrap();
        dlq.push(event("order.placed", 2), B, "mailer", vec![])
            .unwrap();
        dlq.push(event("order.placed", 3), A, "billing", vec![])
            .unwrap();

        let ids = |f: &DlqFilter| dlq.list(f).iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(&DlqFilter::all()), [1, 2, 3, 4]);
        assert_eq!(ids(&DlqFilter::all().subscription(A)), [1, 2, 4]);
        assert_eq!(ids(&DlqFilter::all().event_type(placed)), [1, 3, 4]);
        assert_eq!(
            ids(&DlqFilter::all().subscription(A).event_type(placed)),
            [1, 4]
        );
        assert_eq!(ids(&DlqFilter::all().handler("mailer")), [3]);
        let info = &dlq.list(&DlqFilter::all().subscription(B))[0];
        assert_eq!(
            (info.event_type, info.subscription, &*info.handler),
            (placed, B, "mailer")
        );

        let taken = dlq.take_matching(&DlqFilter::all().subscription(A).event_type(placed));
        assert_eq!(
            taken.iter().map(|l| l.event.data).collect::<Vec<_>>(),
            [0, 3]
        );
        assert_eq!(ids(&DlqFilter::all()), [2, 3]);
        assert_eq!(dlq.discard_matching(&DlqFilter::all().subscription(B)), 1);
        assert!(!dlq.discard(3), "already gone");
        assert!(dlq.discard(2));
        assert!(dlq.is_empty());
        assert_eq!(dlq.take(2).map(|l| l.id), None);
        assert_eq!(dlq.total_pushed(), 4);
    }

    #[test]
    fn try_push_on_a_full_block_queue_hands_the_letter_back() {
        let dlq = DeadLetterQueue::new(1, DlqFullPolicy::Block);
        dlq.try_push(event("t.a", 0), A, "h", vec![]).unwrap();
        let err = dlq
            .try_push(event("t.a", 1), A, "h", vec![attempt(1)])
            .unwrap_err();
        assert!(err.is_full());
        let back = err.into_inner();
        assert_eq!((back.id, back.event.data, back.attempts.len()), (0, 1, 1));
        let err = dlq
            .push_timeout(event("t.a", 2), A, "h", vec![], Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, DlqPushTimeoutError::Timeout(_)));
        assert_eq!(err.into_inner().event.data, 2);
        assert_eq!((dlq.len(), dlq.blocked_pushes(), dlq.evicted()), (1, 0, 0));
    }

    /// Fills a `Block` queue of 2 and starts a push of payload 99 that must wait.
    fn blocked_push() -> (
        DeadLetterQueue<u32>,
        thread::JoinHandle<Result<u64, DlqClosed<u32>>>,
    ) {
        let dlq = DeadLetterQueue::new(2, DlqFullPolicy::Block);
        dlq.push(event("t.a", 0), A, "h", vec![]).unwrap();
        dlq.push(event("t.a", 1), A, "h", vec![]).unwrap();
        let pusher = {
            let dlq = dlq.clone();
            thread::spawn(move || dlq.push(event("t.a", 99), A, "h", vec![]))
        };
        wait_until("the push to block", || dlq.blocked_pushes() == 1);
        assert!(!pusher.is_finished());
        assert_eq!(dlq.len(), 2);
        (dlq, pusher)
    }

    #[test]
    fn block_policy_waits_until_a_take() {
        let (dlq, pusher) = blocked_push();
        assert_eq!(dlq.take(1).unwrap().event.data, 0);
        assert_eq!(pusher.join().unwrap().unwrap(), 3);
        assert_eq!(
            dlq.list(&DlqFilter::all())
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!((dlq.evicted(), dlq.blocked_pushes()), (0, 0));
    }

    #[test]
    fn block_policy_waits_until_a_discard() {
        let (dlq, pusher) = blocked_push();
        assert_eq!(dlq.discard_matching(&DlqFilter::all()), 2);
        assert_eq!(pusher.join().unwrap().unwrap(), 3);
        assert_eq!(dlq.get(3).unwrap().event.data, 99);
    }

    #[test]
    fn close_releases_blocked_pushes_and_fails_later_ones() {
        let (dlq, pusher) = blocked_push();
        dlq.close();
        let back = pusher.join().unwrap().unwrap_err().into_inner();
        assert_eq!((back.id, back.event.data), (0, 99));
        assert!(dlq.is_closed());
        let err = dlq.push(event("t.a", 5), A, "h", vec![]).unwrap_err();
        assert_eq!(err.to_string(), "the dead-letter queue is closed");
        assert!(matches!(
            dlq.try_push(event("t.a", 6), A, "h", vec![]),
            Err(DlqTryPushError::Closed(_))
        ));
        // What was queued stays available.
        assert_eq!(dlq.len(), 2);
        assert_eq!(dlq.take_matching(&DlqFilter::all()).len(), 2);
        assert_eq!(dlq.total_pushed(), 2);
    }

    #[test]
    fn many_blocked_pushers_all_get_through_as_room_appears() {
        let dlq = DeadLetterQueue::new(1, DlqFullPolicy::Block);
        let pushers: Vec<_> = (0..4)
            .map(|n| {
                let dlq = dlq.clone();
                thread::spawn(move || dlq.push(event("t.a", n), A, "h", vec![]).unwrap())
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            wait_until("a letter", || !dlq.is_empty());
            let taken = dlq.take_matching(&DlqFilter::all());
            assert_eq!(taken.len(), 1, "never above capacity");
            seen.push(taken[0].event.data);
        }
        for p in pushers {
            p.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3], "none lost, none duplicated");
        assert_eq!(dlq.total_pushed(), 4);
    }

    #[test]
    fn stress_block_queue_loses_and_duplicates_nothing() {
        const PRODUCERS: u32 = 3;
        const EACH: u32 = if cfg!(miri) { 20 } else { 2_000 };
        let dlq = DeadLetterQueue::new(4, DlqFullPolicy::Block);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let dlq = dlq.clone();
                thread::spawn(move || {
                    for i in 0..EACH {
                        dlq.push(event("t.a", p * EACH + i), A, "h", vec![])
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut seen = vec![0u32; (PRODUCERS * EACH) as usize];
        let mut last_id = 0;
        let mut received = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received < PRODUCERS * EACH {
            assert!(Instant::now() < deadline, "stalled at {received}");
            for letter in dlq.take_matching(&DlqFilter::all()) {
                assert!(letter.id > last_id, "ids increase");
                last_id = letter.id;
                seen[letter.event.data as usize] += 1;
                received += 1;
            }
            thread::yield_now();
        }
        for p in producers {
            p.join().unwrap();
        }
        assert!(seen.iter().all(|&n| n == 1), "every letter exactly once");
        assert_eq!(
            (dlq.total_pushed(), dlq.evicted()),
            (u64::from(PRODUCERS * EACH), 0)
        );
        assert!(dlq.is_empty());
    }

    #[test]
    fn zero_capacity_is_rejected_and_handles_are_send_sync() {
        assert_eq!(
            DeadLetterQueue::<u32>::try_new(0, DlqFullPolicy::Block)
                .unwrap_err()
                .kind(),
            &Kind::ZeroCapacity
        );
        fn send_sync<T: Send + Sync>() {}
        // `P: Send` suffices: `Cell` is `Send` but not `Sync`.
        send_sync::<DeadLetterQueue<std::cell::Cell<u8>>>();
        let dlq = DeadLetterQueue::<u32>::new(1, DlqFullPolicy::default());
        assert_eq!(dlq.policy(), DlqFullPolicy::DropOldest);
        assert!(format!("{dlq:?}").contains("capacity: 1"));
    }
}
