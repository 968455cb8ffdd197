//! The producer side: a producer's private cursor and the claims through which it
//! writes slots — the only way a value gets into the ring.
//!
//! A claim owns sequences `[start, start + len)`. Values are pushed into it in
//! order; ending the claim publishes what was pushed. Ending happens by value
//! (`publish`) or by `Drop` — also while unwinding from a panicking
//! `publish_with` closure or batch iterator — so a claim can never be forgotten
//! half-way and leave the dispatcher waiting for a sequence nobody will fill:
//!
//! * multi producer: the pushed prefix is published, the unpushed rest is marked
//!   `SKIP` (a hole the dispatcher steps over);
//! * single producer: the pushed prefix is published with one compare-and-swap;
//!   if the ring closed first, the values are taken back — returned by
//!   `publish`, dropped (quietly: a payload's `Drop` is user code) by `Drop`.

use std::time::Instant;

use super::{ClaimError, Producers, Ring};
use crate::unwind::drop_quietly;

/// A single producer's private state: the next sequence to claim, and its cache of
/// the ring's `consumed`. [`Ring::single_producer`] hands out exactly one per
/// single-producer ring, which is what makes its claims exclusive.
#[derive(Debug)]
pub(crate) struct SpCursor {
    /// The next sequence this producer will claim: `0 .. 2^62`.
    next: u64,
    /// The producer's cache of `consumed`, re-read only when the ring looks full.
    cached: u64,
}

/// A multi producer's private cache of the ring's `consumed` (one per publisher;
/// clones start from the same cache).
#[derive(Debug, Default, Clone)]
pub(crate) struct MpCursor {
    cached: u64,
}

impl<T> Ring<T> {
    /// The single producer's cursor: `Some` once, for a single-producer ring.
    pub(crate) fn single_producer(&self) -> Option<SpCursor> {
        let first = !self
            .producer_taken
            .swap(true, crate::sync::Ordering::Relaxed);
        (self.producers == Producers::Single && first).then_some(SpCursor { next: 0, cached: 0 })
    }

    /// Single producer: claims the next `n` sequences, waiting for space (per the
    /// producer wait strategy, until `deadline` if any) unless `wait` is false.
    /// A closed ring is noticed where it costs nothing extra: while waiting for
    /// space (`Closed` at once), and otherwise at the publish (the one
    /// compare-and-swap), which then hands the written values back.
    #[inline]
    pub(crate) fn claim_single<'a>(
        &'a self,
        cursor: &'a mut SpCursor,
        n: u64,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<SpClaim<'a, T>, ClaimError> {
        let seq = cursor.next;
        self.sp_claim(seq, n, &mut cursor.cached, wait, deadline)?;
        Ok(SpClaim {
            ring: self,
            cursor,
            written: 0,
            len: n,
        })
    }

    /// Multi producer: waits for `n` free slots, then claims them (see
    /// `Ring::mp_claim`).
    #[inline]
    pub(crate) fn claim_multi(
        &self,
        cursor: &mut MpCursor,
        n: u64,
    ) -> Result<MpClaim<'_, T>, ClaimError> {
        let start = self.mp_claim(n, &mut cursor.cached)?;
        Ok(MpClaim::new(self, start, n))
    }

    /// Multi producer: claims `n` sequences only if their slots are free now.
    #[inline]
    pub(crate) fn try_claim_multi(
        &self,
        cursor: &mut MpCursor,
        n: u64,
    ) -> Result<MpClaim<'_, T>, ClaimError> {
        let start = self.mp_try_claim(n, &mut cursor.cached)?;
        Ok(MpClaim::new(self, start, n))
    }

    /// Multi producer: claims `n` sequences in line and waits until `deadline`
    /// for their slots; on timeout they are abandoned (see `Ring::mp_claim_until`).
    #[inline]
    pub(crate) fn claim_multi_until(
        &self,
        cursor: &mut MpCursor,
        n: u64,
        deadline: Instant,
    ) -> Result<MpClaim<'_, T>, ClaimError> {
        let start = self.mp_claim_until(n, &mut cursor.cached, deadline)?;
        Ok(MpClaim::new(self, start, n))
    }
}

/// A single producer's claim of `[cursor.next, cursor.next + len)`.
#[must_use = "a claim publishes when it ends"]
pub(crate) struct SpClaim<'a, T> {
    ring: &'a Ring<T>,
    cursor: &'a mut SpCursor,
    /// Values pushed so far: `0 ..= len`.
    written: u64,
    len: u64,
}

impl<T> SpClaim<'_, T> {
    /// Writes the next claimed slot.
    ///
    /// # Panics
    /// If every claimed slot is written already.
    #[inline]
    #[track_caller]
    pub(crate) fn push(&mut self, value: T) {
        assert!(self.written < self.len, "push beyond the claim");
        let seq = self.cursor.next + self.written;
        // SAFETY: the ring's only single-producer cursor claimed `seq` (below
        // `next + len`) and waited until its slot was free; it is not published
        // yet, and this claim holds the cursor exclusively, so nobody else
        // touches the slot.
        unsafe { self.ring.write(seq, value) };
        self.written += 1;
    }

    /// Pushes values from `values` until the claim is full or `values` ends. The
    /// bound is checked before each value is taken, so each goes straight from
    /// the iterator into its slot (no panic path keeps it on the stack first).
    #[inline]
    pub(crate) fn fill(&mut self, values: &mut impl Iterator<Item = T>) {
        while self.written < self.len {
            let Some(value) = values.next() else { return };
            let seq = self.cursor.next + self.written;
            // SAFETY: as in `push`: `seq` is below `next + len` (checked above).
            unsafe { self.ring.write(seq, value) };
            self.written += 1;
        }
    }

    /// Publishes the pushed values; returns how many. If the ring closed first,
    /// nothing is published and the values come back, in order.
    #[inline]
    pub(crate) fn publish(self) -> Result<u64, Vec<T>> {
        let mut me = std::mem::ManuallyDrop::new(self);
        match me.finish() {
            Ok(n) => Ok(n),
            Err(start) => Err((start..start + me.written)
                // SAFETY: the publish lost to the close: the pushed slots are still
                // this producer's, written, and each is taken once here.
                .map(|s| unsafe { me.ring.take(s) })
                .collect()),
        }
    }

    /// Publishes one pushed value; if the ring closed first, hands it back.
    #[inline]
    pub(crate) fn publish_one(self) -> Result<(), T> {
        debug_assert_eq!(self.written, 1, "publish_one of a claim of one");
        let mut me = std::mem::ManuallyDrop::new(self);
        match me.finish() {
            Ok(_) => Ok(()),
            // SAFETY: as in `publish`: the slot is still ours, taken once.
            Err(start) => Err(unsafe { me.ring.take(start) }),
        }
    }

    /// The publish itself: `Ok(count)` and the cursor moves on, or `Err(start)` —
    /// the ring is closed and `[start, start + written)` is still ours.
    #[inline]
    fn finish(&mut self) -> Result<u64, u64> {
        let start = self.cursor.next;
        if self.written == 0 {
            return Ok(0);
        }
        match self.ring.sp_publish(start, self.written) {
            Ok(()) => {
                self.cursor.next = start + self.written;
                Ok(self.written)
            }
            Err(_) => Err(start),
        }
    }
}

impl<T> Drop for SpClaim<'_, T> {
    fn drop(&mut self) {
        if let Err(start) = self.finish() {
            for s in start..start + self.written {
                // SAFETY: as in `publish`: ours, written, taken once.
                drop_quietly(unsafe { self.ring.take(s) });
            }
        }
    }
}

/// A multi producer's claim of `[start, end)`.
#[must_use = "a claim publishes when it ends"]
pub(crate) struct MpClaim<'a, T> {
    ring: &'a Ring<T>,
    start: u64,
    /// The next unwritten sequence: `start ..= end`.
    written_to: u64,
    end: u64,
}

impl<'a, T> MpClaim<'a, T> {
    fn new(ring: &'a Ring<T>, start: u64, n: u64) -> Self {
        MpClaim {
            ring,
            start,
            written_to: start,
            end: start + n,
        }
    }

    /// Writes the next claimed slot.
    ///
    /// # Panics
    /// If every claimed slot is written already.
    #[inline]
    #[track_caller]
    pub(crate) fn push(&mut self, value: T) {
        assert!(self.written_to < self.end, "push beyond the claim");
        // SAFETY: this claim owns `written_to` (claimed by one RMW on the cursor,
        // which no other producer got), its slot was free when the claim was made
        // (`mp_claim*` waited), and it is not published yet.
        unsafe { self.ring.write(self.written_to, value) };
        self.written_to += 1;
    }

    /// Pushes values from `values` until the claim is full or `values` ends (see
    /// [`SpClaim::fill`]).
    #[inline]
    pub(crate) fn fill(&mut self, values: &mut impl Iterator<Item = T>) {
        while self.written_to < self.end {
            let Some(value) = values.next() else { return };
            // SAFETY: as in `push`: `written_to` is below `end` (checked above).
            unsafe { self.ring.write(self.written_to, value) };
            self.written_to += 1;
        }
    }

    /// Publishes the pushed values and marks the rest as holes (as `Drop` does);
    /// returns how many were published.
    #[inline]
    pub(crate) fn publish(self) -> u64 {
        self.written_to - self.start
    }
}

impl<T> Drop for MpClaim<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.written_to > self.start {
            self.ring
                .mp_publish(self.start, self.written_to - self.start);
        }
        if self.written_to < self.end {
            self.ring
                .mp_skip(self.written_to, self.end - self.written_to);
        }
    }
}

/// How long a claim may wait for free slots.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Wait {
    /// Not at all: `Full` if the slots are not free now.
    No,
    /// Until they are (or the ring closes).
    Forever,
    /// Until the deadline (`TimedOut` then).
    Until(Instant),
}

/// A producer's sequencer: the single producer's cursor or a multi producer's.
/// The producer mode of a bus picks one at the type level, so a publisher can
/// only ever make the claims its ring was built for.
pub(crate) trait Sequencer: Sized + Send + 'static {
    /// The claim this sequencer makes.
    type Claim<'a, T: 'a>: Claim<T>
    where
        Self: 'a;

    /// The ring kind it serves.
    const PRODUCERS: Producers;

    /// Whether the dispatcher waits for a claim made and not yet published
    /// (multi producer): user code run while such a claim is held must not wait
    /// for the dispatcher.
    const CLAIM_HOLDS_DISPATCH: bool;

    /// This ring's sequencer, if one can be had (a single-producer ring hands
    /// out exactly one).
    fn of<T>(ring: &Ring<T>) -> Option<Self>;

    /// Claims the next `n` sequences (at most the capacity), waiting per `wait`.
    fn claim<'a, T>(
        &'a mut self,
        ring: &'a Ring<T>,
        n: u64,
        wait: Wait,
    ) -> Result<Self::Claim<'a, T>, ClaimError>;
}

/// A claim of consecutive sequences (see the module docs).
pub(crate) trait Claim<T> {
    /// Writes the next claimed slot (panics beyond the claim).
    fn push(&mut self, value: T);
    /// Pushes from `values` until the claim is full or `values` ends.
    fn fill(&mut self, values: &mut impl Iterator<Item = T>);
    /// Publishes what was pushed; returns how many, or — if the ring closed
    /// first (single producer) — the values, in order.
    fn publish(self) -> Result<u64, Vec<T>>;
    /// Publishes one pushed value, or hands it back if the ring closed first.
    fn publish_one(self) -> Result<(), T>;
    /// The sequence of the first claimed slot.
    fn start(&self) -> u64;
}

impl Sequencer for SpCursor {
    type Claim<'a, T: 'a> = SpClaim<'a, T>;
    const PRODUCERS: Producers = Producers::Single;
    const CLAIM_HOLDS_DISPATCH: bool = false;

    fn of<T>(ring: &Ring<T>) -> Option<Self> {
        ring.single_producer()
    }

    #[inline]
    fn claim<'a, T>(
        &'a mut self,
        ring: &'a Ring<T>,
        n: u64,
        wait: Wait,
    ) -> Result<SpClaim<'a, T>, ClaimError> {
        match wait {
            Wait::No => ring.claim_single(self, n, false, None),
            Wait::Forever => ring.claim_single(self, n, true, None),
            Wait::Until(d) => ring.claim_single(self, n, true, Some(d)),
        }
    }
}

impl<T> Claim<T> for SpClaim<'_, T> {
    #[inline]
    fn push(&mut self, value: T) {
        SpClaim::push(self, value)
    }
    #[inline]
    fn fill(&mut self, values: &mut impl Iterator<Item = T>) {
        SpClaim::fill(self, values)
    }
    #[inline]
    fn publish(self) -> Result<u64, Vec<T>> {
        SpClaim::publish(self)
    }
    #[inline]
    fn publish_one(self) -> Result<(), T> {
        SpClaim::publish_one(self)
    }
    #[inline]
    fn start(&self) -> u64 {
        self.cursor.next
    }
}

impl Sequencer for MpCursor {
    type Claim<'a, T: 'a> = MpClaim<'a, T>;
    const PRODUCERS: Producers = Producers::Multi;
    const CLAIM_HOLDS_DISPATCH: bool = true;

    fn of<T>(ring: &Ring<T>) -> Option<Self> {
        (ring.producers == Producers::Multi).then(MpCursor::default)
    }

    #[inline]
    fn claim<'a, T>(
        &'a mut self,
        ring: &'a Ring<T>,
        n: u64,
        wait: Wait,
    ) -> Result<MpClaim<'a, T>, ClaimError> {
        match wait {
            Wait::No => ring.try_claim_multi(self, n),
            Wait::Forever => ring.claim_multi(self, n),
            Wait::Until(d) => ring.claim_multi_until(self, n, d),
        }
    }
}

impl<T> Claim<T> for MpClaim<'_, T> {
    #[inline]
    fn push(&mut self, value: T) {
        MpClaim::push(self, value)
    }
    #[inline]
    fn fill(&mut self, values: &mut impl Iterator<Item = T>) {
        MpClaim::fill(self, values)
    }
    /// Always `Ok`: a multi-producer claim made before the close is delivered.
    #[inline]
    fn publish(self) -> Result<u64, Vec<T>> {
        Ok(MpClaim::publish(self))
    }
    #[inline]
    fn publish_one(self) -> Result<(), T> {
        MpClaim::publish(self);
        Ok(())
    }
    #[inline]
    fn start(&self) -> u64 {
        self.start
    }
}
