//! The ring: preallocated slots and the sequences that hand them from producers to
//! the dispatcher and back.
//!
//! The algorithm is the LMAX Disruptor's (Thompson et al., *Disruptor: High
//! performance alternative to bounded queues*, 2011), with its single- and
//! multi-producer sequencers, plus a close protocol of our own that makes shutdown
//! lose nothing. The cross-module protocol — who may touch a slot when, how close
//! works, who wakes whom — is written down in `src/ring/README.md`.
//!
//! ## Memory ordering
//!
//! * A producer writes a slot, then publishes it with a SeqCst compare-and-swap on
//!   `cursor` (single producer; SeqCst so that the wake-up check needs no fence)
//!   or a Release store of the sequence into the slot's flag
//!   (multi producer). The dispatcher's Acquire load of the same word makes the slot
//!   contents visible to it, and to the rayon tasks it spawns (spawn/join
//!   synchronize).
//! * The dispatcher drops the events of a batch, then stores `consumed` with
//!   Release. A producer loads `consumed` with Acquire before writing a slot of the
//!   next round, so the drop happens before the overwrite.
//! * Closing is a `fetch_or` of [`CLOSED`] into `cursor`. Every claim (multi: a
//!   compare-and-swap, or a `fetch_add` for `publish_timeout`) or publish (single: a
//!   compare-and-swap) is an RMW on the same word, and RMWs on one location are
//!   totally ordered, so each publish is unambiguously before the close (the
//!   dispatcher delivers it) or after it (the producer takes its event back).

mod batch;
mod claim;
mod wait;

pub(crate) use batch::{Batch, Consumer, Next};
pub(crate) use claim::{Claim, MpCursor, Sequencer, SpCursor, Wait};
pub use wait::WaitStrategy;
pub(crate) use wait::{Signal, TimedOut};

use std::mem::MaybeUninit;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, UnsafeCell};

/// Bit 63 of `cursor`: the ring is closed. Sequences stay far below it (2^63
/// events at 10^9/s is 292 years).
pub(crate) const CLOSED: u64 = 1 << 63;

/// Bit 62 of a slot flag: the claimed sequence holds no event (its producer
/// unwound between claim and publish) and is to be skipped.
const SKIP: u64 = 1 << 62;

/// No sequence has been published into this slot yet.
const NEVER: u64 = u64::MAX;

/// Which sequencer the ring runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Producers {
    /// One producer: claims locally, publishes with one RMW on `cursor`.
    Single,
    /// Many producers: claim with an RMW on `cursor`, publish per-slot flags.
    Multi,
}

/// What the dispatcher finds at its next sequence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Nothing published yet.
    Empty,
    /// `[next, hi)` are published events.
    Events(u64),
    /// `[next, hi)` were claimed by producers that unwound; skip them.
    Skip(u64),
}

/// A claim failed: why.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// Not enough free slots (only from `try_claim`).
    Full,
    /// The ring is closed, or the dispatcher is gone.
    Closed,
    /// The deadline passed.
    TimedOut,
}

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The shared ring.
pub(crate) struct Ring<T> {
    /// Single producer: the number of published sequences. Multi producer: the
    /// number of claimed sequences. Either way, bit [`CLOSED`] marks a closed ring;
    /// the count is in range `0 .. 2^62`.
    cursor: CachePadded<AtomicU64>,
    /// Every sequence below this has been consumed and its slot is free again; in
    /// range `0 ..= published`. Written only by the dispatcher.
    consumed: CachePadded<AtomicU64>,
    /// The published count at the moment of closing (`u64::MAX` while open).
    /// Written once, by the closer.
    closed_at: CachePadded<AtomicU64>,
    /// Set when the consumer has stopped for good: waiters for space give up.
    terminated: AtomicBool,
    /// Multi producer only: sequences claimed by a bounded wait (`publish_timeout`)
    /// that timed out before their slot came free. Their slots still belonged to
    /// the previous round, so no flag could be written: the dispatcher skips each
    /// when it reaches it. Holds at most one entry per timed-out claim not yet
    /// reached; `abandoned_len` mirrors its length so the poll's empty path pays
    /// one load, not a lock.
    abandoned: Mutex<Vec<u64>>,
    abandoned_len: AtomicUsize,
    /// Whether the single producer's cursor / the consumer token were handed out
    /// (each at most once: that is what makes claims and batches exclusive).
    producer_taken: AtomicBool,
    consumer_taken: AtomicBool,
    /// Multi producer only: `flags[i]` holds the last sequence published into slot
    /// `i` (or it `| SKIP`, or `NEVER`).
    flags: Box<[AtomicU64]>,
    slots: Box<[Slot<T>]>,
    mask: u64,
    producers: Producers,
    producer_wait: WaitStrategy,
    consumer_wait: WaitStrategy,
    /// The dispatcher sleeps here (waiting for events or control messages).
    pub(crate) data_signal: Signal,
    /// Producers sleep here (waiting for free slots).
    space_signal: Signal,
}

// SAFETY: the ring hands each `T` from exactly one producer thread to the
// dispatcher (and its pool), by the claim/publish/consume protocol above; a slot is
// never accessed by two threads without a happens-before edge between them. `T` must
// be `Send` to cross threads, and `Sync` because handlers on different threads read
// the same event through `&T`.
unsafe impl<T: Send + Sync> Sync for Ring<T> {}
// SAFETY: see above; the ring owns `T`s only in transit.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("producers", &self.producers)
            .field("cursor", &self.cursor.load(Ordering::Relaxed))
            .field("consumed", &self.consumed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Ring<T> {
    /// A ring of `capacity` slots.
    ///
    /// # Panics
    /// If `capacity` is not a power of two or exceeds 2^24 (the builder checks this
    /// and returns an error first).
    #[track_caller]
    pub(crate) fn new(
        capacity: usize,
        producers: Producers,
        producer_wait: WaitStrategy,
        consumer_wait: WaitStrategy,
    ) -> Self {
        assert!(
            capacity.is_power_of_two() && capacity <= 1 << 24,
            "ring capacity must be a power of two <= 2^24, got {capacity}"
        );
        let slots = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        let flags = match producers {
            Producers::Single => Box::default(),
            Producers::Multi => (0..capacity).map(|_| AtomicU64::new(NEVER)).collect(),
        };
        Ring {
            cursor: CachePadded::new(AtomicU64::new(0)),
            consumed: CachePadded::new(AtomicU64::new(0)),
            closed_at: CachePadded::new(AtomicU64::new(u64::MAX)),
            terminated: AtomicBool::new(false),
            abandoned: Mutex::new(Vec::new()),
            abandoned_len: AtomicUsize::new(0),
            producer_taken: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
            flags,
            slots,
            mask: capacity as u64 - 1,
            producers,
            producer_wait,
            consumer_wait,
            data_signal: Signal::new(),
            space_signal: Signal::new(),
        }
    }

    /// The number of slots.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Whether the ring has been closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.cursor.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// The published count at close, once closed.
    #[inline]
    pub(crate) fn closed_at(&self) -> Option<u64> {
        match self.closed_at.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// Claimed (multi) or published (single) sequences so far. SeqCst: a caller
    /// uses it as "every publish that completed before now is below this".
    pub(crate) fn claimed(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst) & !CLOSED
    }

    /// For statistics: the consumed count plus the events published since (a claim
    /// still waiting for its slot, or a hole, is not counted). Single producer: the
    /// cursor. Reads at most `capacity` flags, Relaxed: a snapshot, not a fence.
    pub(crate) fn published_relaxed(&self) -> u64 {
        let cursor = self.cursor.load(Ordering::Relaxed) & !CLOSED;
        match self.producers {
            Producers::Single => cursor,
            Producers::Multi => {
                let consumed = self.consumed.load(Ordering::Relaxed);
                let end = cursor.min(consumed + self.capacity());
                let done = (consumed..end)
                    .filter(|&s| self.flags[(s & self.mask) as usize].load(Ordering::Relaxed) == s)
                    .count();
                consumed + done as u64
            }
        }
    }

    /// Whether events (or holes) are published at the consumer's position: the
    /// dispatcher's wake-up condition. Call from the consumer's thread.
    #[inline]
    pub(crate) fn has_next(&self) -> bool {
        self.poll(self.consumed_relaxed(), 1) != Poll::Empty
    }

    /// Sequences consumed so far (Relaxed: a statistic).
    pub(crate) fn consumed_relaxed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot<T> {
        let i = (seq & self.mask) as usize;
        debug_assert!(i < self.slots.len());
        // SAFETY: `i <= mask < slots.len()`.
        unsafe { self.slots.get_unchecked(i) }
    }

    // ---- producer side ---------------------------------------------------------

    /// Waits until slots `[seq, seq + n)` are free (consumed in their previous
    /// round). `cached` is the caller's cache of `consumed`.
    #[inline]
    fn wait_for_space(
        &self,
        seq: u64,
        n: u64,
        cached: &mut u64,
        deadline: Option<Instant>,
    ) -> Result<(), ClaimError> {
        // A single producer has claimed nothing shared yet: once the ring is closed
        // its publish can only fail, so it stops waiting at once. A multi-producer
        // claim below `closed_at` must be delivered, so it waits on.
        let claimed = self.producers == Producers::Multi;
        self.wait_for_room(seq, n, cached, deadline, claimed)
    }

    /// [`Ring::wait_for_space`], saying whether the caller holds a claim on
    /// `[seq, seq + n)`: a caller without one stops waiting when the ring closes.
    #[inline]
    fn wait_for_room(
        &self,
        seq: u64,
        n: u64,
        cached: &mut u64,
        deadline: Option<Instant>,
        claimed: bool,
    ) -> Result<(), ClaimError> {
        let need = (seq + n).saturating_sub(self.capacity());
        if *cached >= need {
            return Ok(());
        }
        *cached = self.consumed.load(Ordering::Acquire);
        if *cached >= need {
            return Ok(());
        }
        // The ring is full. A blocking producer then waits for a quarter of the ring
        // (capped at its own sequence, which the consumer always reaches) rather
        // than for one slot: the consumer gets long uninterrupted batches and the
        // producers far fewer wake-ups. Spinning strategies keep the minimum.
        // A bounded wait (`publish_timeout`) takes the first free slot.
        let target = match (self.producer_wait, deadline) {
            (strategy, None) if strategy.parks() => (need + self.capacity() / 4).min(seq).max(need),
            _ => need,
        };
        let mut gone = false;
        let r = self
            .space_signal
            .wait_until(self.producer_wait, deadline, || {
                *cached = self.consumed.load(Ordering::Acquire);
                gone = self.terminated.load(Ordering::Acquire)
                    || (!claimed && self.cursor.load(Ordering::Acquire) & CLOSED != 0);
                *cached >= target || gone
            });
        match r {
            Err(TimedOut) => Err(ClaimError::TimedOut),
            Ok(()) if *cached >= need => Ok(()),
            Ok(()) => Err(ClaimError::Closed),
        }
    }

    /// Single producer: makes sure `[seq, seq + n)` may be written; waits for space
    /// unless `wait` is false.
    #[inline]
    fn sp_claim(
        &self,
        seq: u64,
        n: u64,
        cached: &mut u64,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<(), ClaimError> {
        debug_assert_eq!(self.producers, Producers::Single);
        if wait {
            return self.wait_for_space(seq, n, cached, deadline);
        }
        let need = (seq + n).saturating_sub(self.capacity());
        if *cached < need {
            *cached = self.consumed.load(Ordering::Acquire);
            if *cached < need {
                return Err(if self.is_closed() {
                    ClaimError::Closed
                } else {
                    ClaimError::Full
                });
            }
        }
        Ok(())
    }

    /// Single producer: publishes `[seq, seq + n)`, written already. On
    /// `Err(Closed)` the ring closed first: the dispatcher will never read those
    /// slots and the caller must take its values back with [`Ring::take`].
    #[inline]
    fn sp_publish(&self, seq: u64, n: u64) -> Result<(), ClaimError> {
        // A compare-and-swap rather than a store: the producer is the only writer of
        // the count, so it fails only when the closer has set `CLOSED` — and then the
        // count stays exactly what the closer saw.
        match self
            .cursor
            .compare_exchange(seq, seq + n, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => {
                // SeqCst success ordering: the RMW is in S, so the wake-up check
                // needs no fence (see `Signal::notify_after_seqcst_rmw`).
                if self.consumer_wait.parks() {
                    self.data_signal.notify_after_seqcst_rmw();
                }
                Ok(())
            }
            Err(actual) => {
                debug_assert_eq!(actual, seq | CLOSED, "single producer out of step");
                Err(ClaimError::Closed)
            }
        }
    }

    /// Multi producer: waits until `n` slots are free, then claims them with a
    /// compare-and-swap (retrying when another producer got there first). On
    /// `Ok(seq)` the caller owns `[seq, seq + n)` and must publish (or skip) every
    /// one of them.
    ///
    /// It claims only free slots, as the LMAX disruptor does, rather than taking its
    /// place in line with a `fetch_add` and then waiting for its slots: a producer
    /// waiting for space then holds no claim the dispatcher must wait for. With a
    /// claim held while waiting, a waiting producer that is preempted stalls the
    /// dispatcher — and every other producer — until it runs again; with more
    /// spinning threads than cores that is every time slice (measured: 4 busy-spin
    /// producers on 2 cores, 1.3 M events/s with `fetch_add` claims).
    #[inline]
    fn mp_claim(&self, n: u64, cached: &mut u64) -> Result<u64, ClaimError> {
        debug_assert_eq!(self.producers, Producers::Multi);
        loop {
            match self.mp_try_claim(n, cached) {
                Err(ClaimError::Full) => {}
                claimed => return claimed,
            }
            let seq = self.cursor.load(Ordering::Relaxed) & !CLOSED;
            match self.wait_for_room(seq, n, cached, None, false) {
                Ok(()) => {}
                // Closed, or the consumer died (it never does on purpose before
                // draining every claimed sequence): nobody will read new slots.
                Err(_) => return Err(ClaimError::Closed),
            }
        }
    }

    /// Multi producer: claims `n` sequences with one `fetch_add` (so a bounded wait
    /// takes its place in line and cannot be starved by producers that keep
    /// claiming each slot as it frees) and waits until `deadline` for
    /// their slots. If the deadline passes first, the sequences are abandoned: the
    /// dispatcher skips them when it gets there, and the caller keeps its event.
    fn mp_claim_until(
        &self,
        n: u64,
        cached: &mut u64,
        deadline: Instant,
    ) -> Result<u64, ClaimError> {
        debug_assert_eq!(self.producers, Producers::Multi);
        let prev = self.cursor.fetch_add(n, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            return Err(ClaimError::Closed);
        }
        match self.wait_for_space(prev, n, cached, Some(deadline)) {
            Ok(()) => Ok(prev),
            Err(ClaimError::TimedOut) => {
                self.abandon(prev, n);
                Err(ClaimError::TimedOut)
            }
            Err(_) => Err(ClaimError::Closed),
        }
    }

    /// Records `[seq, seq + n)` — claimed, never to be written, slots not yet free —
    /// for the dispatcher to skip.
    #[cold]
    fn abandon(&self, seq: u64, n: u64) {
        {
            let mut a = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
            a.extend(seq..seq + n);
            self.abandoned_len.store(a.len(), Ordering::Release);
        }
        self.notify_consumer();
    }

    /// Whether `seq` was abandoned (see [`Ring::mp_claim_until`]).
    #[cold]
    fn is_abandoned(&self, seq: u64) -> bool {
        let a = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        a.contains(&seq)
    }

    /// Forgets the abandoned sequences below `hi` (the dispatcher has passed them).
    #[cold]
    fn forget_abandoned(&self, hi: u64) {
        let mut a = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        a.retain(|&s| s >= hi);
        self.abandoned_len.store(a.len(), Ordering::Release);
    }

    /// Multi producer: claims `n` sequences only if their slots are free now
    /// (a compare-and-swap, since a `fetch_add` cannot be undone).
    #[inline]
    fn mp_try_claim(&self, n: u64, cached: &mut u64) -> Result<u64, ClaimError> {
        debug_assert_eq!(self.producers, Producers::Multi);
        let mut current = self.cursor.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 {
                return Err(ClaimError::Closed);
            }
            let need = (current + n).saturating_sub(self.capacity());
            if *cached < need {
                *cached = self.consumed.load(Ordering::Acquire);
                if *cached < need {
                    return Err(ClaimError::Full);
                }
            }
            match self.cursor.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(current),
                Err(actual) => current = actual,
            }
        }
    }

    /// Multi producer: publishes `[seq, seq + n)`, written already, and wakes the
    /// dispatcher if it sleeps.
    #[inline]
    fn mp_publish(&self, seq: u64, n: u64) {
        if n == 1 && self.consumer_wait.parks() {
            // One slot for a dispatcher that may sleep: publish its flag with a
            // SeqCst RMW, so the wake-up check needs no fence (`mfence` + load →
            // `xchg` + load on x86; see `Signal::notify_after_seqcst_rmw`). The
            // dispatcher's sleep check reads this very flag. (For several slots
            // it reads the first one's, another location: those keep the fence.)
            self.flags[(seq & self.mask) as usize].swap(seq, Ordering::SeqCst);
            self.data_signal.notify_after_seqcst_rmw();
            return;
        }
        for s in seq..seq + n {
            self.flags[(s & self.mask) as usize].store(s, Ordering::Release);
        }
        self.notify_consumer();
    }

    /// Multi producer: marks `[seq, seq + n)` — claimed, never written — as holes
    /// the dispatcher skips.
    fn mp_skip(&self, seq: u64, n: u64) {
        for s in seq..seq + n {
            self.flags[(s & self.mask) as usize].store(s | SKIP, Ordering::Release);
        }
        self.notify_consumer();
    }

    #[inline]
    fn notify_consumer(&self) {
        if self.consumer_wait.parks() {
            self.data_signal.notify();
        }
    }

    /// Writes `value` into the slot of `seq`.
    ///
    /// # Safety
    /// The caller owns `seq`: claimed it, waited until its slot was free, and has
    /// not published it. The slot holds no live value (consumed slots are dropped).
    #[inline]
    unsafe fn write(&self, seq: u64, value: T) {
        // SAFETY: by the caller's duties no other thread accesses the slot now.
        self.slot(seq).with_mut(|p| unsafe { (*p).write(value) });
    }

    /// Moves the value out of the slot of `seq`.
    ///
    /// # Safety
    /// The caller wrote `seq` and owns it still: never published, or its publish
    /// failed because the ring closed first.
    #[inline]
    unsafe fn take(&self, seq: u64) -> T {
        // SAFETY: the slot holds the caller's initialized value; nobody else reads it.
        self.slot(seq).with(|p| unsafe { p.cast::<T>().read() })
    }

    // ---- consumer side ---------------------------------------------------------

    /// What is published from `next` on, at most `max` sequences.
    #[inline]
    fn poll(&self, next: u64, max: u64) -> Poll {
        match self.producers {
            Producers::Single => {
                // Exact even after close: a publish that loses to the close leaves
                // the count alone (see `sp_publish`).
                let published = self.cursor.load(Ordering::Acquire) & !CLOSED;
                if published > next {
                    Poll::Events(published.min(next.saturating_add(max)))
                } else {
                    Poll::Empty
                }
            }
            Producers::Multi => {
                let limit = self
                    .closed_at()
                    .unwrap_or(u64::MAX)
                    .min(next.saturating_add(max));
                if next >= limit {
                    return Poll::Empty;
                }
                let first = self.flags[(next & self.mask) as usize].load(Ordering::Acquire);
                let skip = if first == next {
                    false
                } else if first == next | SKIP {
                    true
                } else if self.abandoned_len.load(Ordering::Acquire) != 0 && self.is_abandoned(next)
                {
                    // Its slot still holds the previous round's flag: skip it alone.
                    return Poll::Skip(next + 1);
                } else {
                    return Poll::Empty;
                };
                let want = if skip { next | SKIP } else { next };
                let mut hi = next + 1;
                while hi < limit
                    && self.flags[(hi & self.mask) as usize].load(Ordering::Acquire)
                        == (want - next + hi)
                {
                    hi += 1;
                }
                if skip {
                    Poll::Skip(hi)
                } else {
                    Poll::Events(hi)
                }
            }
        }
    }

    /// A shared reference to the event at `seq`.
    ///
    /// # Safety
    /// `seq` was returned published by [`Ring::poll`] (as part of `Events`) on this
    /// thread, and not yet released; the reference must not outlive the release.
    #[inline]
    unsafe fn get(&self, seq: u64) -> &T {
        // SAFETY: published slots hold an initialized value, and no producer writes
        // it until `release` moves `consumed` past it.
        self.slot(seq).with(|p| unsafe { &*p.cast::<T>() })
    }

    /// Frees `[lo, hi)` for the producers, dropping their events first when
    /// `events` (false for a skipped range). Returns how many of those drops
    /// panicked: a panicking `Drop` never stops the release — the rest are still
    /// dropped, each exactly once, and `consumed` still moves to `hi`.
    ///
    /// # Safety
    /// `[lo, hi)` is the range just polled on this thread, starting at the current
    /// `consumed`, and no reference from [`Ring::get`] into it is still alive.
    #[inline]
    unsafe fn release(&self, lo: u64, hi: u64, events: bool) -> u64 {
        debug_assert_eq!(lo, self.consumed.load(Ordering::Relaxed));
        let mut panics = 0;
        if events && std::mem::needs_drop::<T>() {
            // SAFETY: by the caller's duties, every slot of `[lo, hi)` holds a
            // published, initialized value that nothing references any more.
            panics = unsafe { self.drop_each(lo..hi, |_| true) };
        } else if !events && self.abandoned_len.load(Ordering::Acquire) != 0 {
            self.forget_abandoned(hi);
        }
        self.consumed.store(hi, Ordering::Release);
        if self.producer_wait.parks() {
            self.space_signal.notify();
        }
        panics
    }

    /// Drops the value of every slot in `range` for which `holds(seq)`, going on
    /// past a `Drop` that panics (a value whose `Drop` panicked still counts as
    /// dropped: its fields were dropped while unwinding). Returns the number of
    /// panics.
    ///
    /// # Safety
    /// Each selected slot holds an initialized value that nothing else accesses
    /// now or later, until it is written again.
    unsafe fn drop_each(&self, range: std::ops::Range<u64>, holds: impl Fn(u64) -> bool) -> u64 {
        let (mut s, end) = (range.start, range.end);
        let mut panics = 0;
        while s < end {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while s < end {
                    // Advance first: a slot whose drop panics is not dropped again.
                    let seq = s;
                    s += 1;
                    if holds(seq) {
                        // SAFETY: the caller's duty, for this selected slot.
                        self.slot(seq)
                            .with_mut(|p| unsafe { std::ptr::drop_in_place(p.cast::<T>()) });
                    }
                }
            }));
            if run.is_err() {
                panics += 1;
            }
        }
        panics
    }

    /// Waits (with the consumer strategy) until `ready()` is true.
    #[inline]
    pub(crate) fn consumer_wait_until(&self, ready: impl FnMut() -> bool) {
        // No deadline: cannot time out.
        let _ = self.data_signal.wait_until(self.consumer_wait, None, ready);
    }

    /// Waits (with the consumer strategy) until `ready()` is true or `deadline`.
    #[inline]
    pub(crate) fn consumer_wait_deadline(&self, deadline: Instant, ready: impl FnMut() -> bool) {
        let _ = self
            .data_signal
            .wait_until(self.consumer_wait, Some(deadline), ready);
    }

    /// Closes the ring: every later claim (multi) or publish (single) fails with
    /// `Closed`. Returns the number of sequences the dispatcher must still deliver
    /// up to (the published/claimed count at the moment of closing). Idempotent.
    pub(crate) fn close(&self) -> u64 {
        let prev = self.cursor.fetch_or(CLOSED, Ordering::AcqRel);
        let at = prev & !CLOSED;
        if prev & CLOSED == 0 {
            self.closed_at.store(at, Ordering::Release);
        }
        self.data_signal.notify();
        // A single producer waiting for space gives up on a closed ring.
        self.space_signal.notify();
        self.closed_at().unwrap_or(at)
    }

    /// Marks the consumer gone: producers waiting for space give up with `Closed`.
    pub(crate) fn terminate(&self) {
        self.terminated.store(true, Ordering::Release);
        self.space_signal.notify();
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Events published but never consumed (only possible if the dispatcher
        // died): drop them. Slots below `consumed` were dropped on release, and
        // values of failed publishes were taken back by their producers.
        let consumed = self.consumed.load(Ordering::Relaxed);
        let (end, multi) = match self.producers {
            Producers::Single => (self.cursor.load(Ordering::Relaxed) & !CLOSED, false),
            Producers::Multi => (consumed + self.capacity(), true),
        };
        let published =
            |s: u64| !multi || self.flags[(s & self.mask) as usize].load(Ordering::Relaxed) == s;
        // SAFETY: `&mut self`: no other access. Single producer: `[consumed,
        // published)` holds published, unconsumed values. Multi producer: a slot
        // whose flag holds exactly `s` was published in round `s` and not consumed.
        // A panicking `Drop` is contained there (no double drop, no abort).
        let _panics = unsafe { self.drop_each(consumed..end, published) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
