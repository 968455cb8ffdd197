//! The consumer side: the one consumer's token and the batches through which it
//! reads published events — the only way a value is read out of the ring.
//!
//! A [`Batch`] borrows the [`Consumer`] token mutably, so there is never more than
//! one batch at a time, and the only consumer is the token's holder. Reading
//! through it is safe: a batch covers published slots only, and no producer
//! writes them until the batch is released. Releasing — by value or by `Drop`,
//! also while unwinding — drops the events (containing a panicking `Drop`) and
//! frees the slots.

use super::{Poll, Ring};

/// The right to consume a ring. [`Ring::consumer`] hands out exactly one.
#[derive(Debug)]
pub(crate) struct Consumer {
    _private: (),
}

/// What [`Ring::next_batch`] found.
pub(crate) enum Next<'a, T> {
    /// Nothing published at the consumer's position.
    Empty,
    /// A run of holes (claims given up by their producers) was stepped over; the
    /// consumer is now at this sequence.
    Skipped(u64),
    /// Published events.
    Batch(Batch<'a, T>),
}

/// Published events `[lo, lo + len)`, readable until released.
pub(crate) struct Batch<'a, T> {
    ring: &'a Ring<T>,
    _consumer: &'a mut Consumer,
    lo: u64,
    /// `1 ..= u32::MAX` events (a batch is at most the capacity, ≤ 2^24).
    len: u32,
    released: bool,
}

impl<T> Ring<T> {
    /// The consumer token: `Some` once per ring.
    pub(crate) fn consumer(&self) -> Option<Consumer> {
        let first = !self
            .consumer_taken
            .swap(true, crate::sync::Ordering::Relaxed);
        first.then_some(Consumer { _private: () })
    }

    /// The next published events from the consumer's position (the ring's
    /// `consumed`), at most `max`. Holes are stepped over (and freed) at once.
    #[inline]
    pub(crate) fn next_batch<'a>(&'a self, consumer: &'a mut Consumer, max: u64) -> Next<'a, T> {
        let lo = self.consumed_relaxed();
        match self.poll(lo, max) {
            Poll::Empty => Next::Empty,
            Poll::Skip(hi) => {
                // SAFETY: `[lo, hi)` was just polled as holes by the only consumer
                // (`&mut Consumer`): nothing to drop, nothing borrowed.
                unsafe { self.release(lo, hi, false) };
                Next::Skipped(hi)
            }
            Poll::Events(hi) => Next::Batch(Batch {
                ring: self,
                _consumer: consumer,
                lo,
                len: u32::try_from(hi - lo).expect("a batch is at most the capacity"),
                released: false,
            }),
        }
    }
}

impl<T> Batch<'_, T> {
    /// The event at `offset` from the batch start.
    ///
    /// # Panics
    /// If `offset` is outside the batch.
    #[inline]
    #[track_caller]
    pub(crate) fn get(&self, offset: u32) -> &T {
        assert!(offset < self.len, "offset outside the batch");
        // SAFETY: `[lo, lo + len)` was polled as published by the only consumer and
        // is not released while `self` lives; the reference borrows `self`.
        unsafe { self.ring.get(self.lo + u64::from(offset)) }
    }

    /// The ring sequence of the event at `offset`.
    #[inline]
    pub(crate) fn sequence(&self, offset: u32) -> u64 {
        self.lo + u64::from(offset)
    }

    /// Events in the batch.
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The sequence after the batch: the consumer's position once it is released.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        self.lo + u64::from(self.len)
    }

    /// Drops the events and frees their slots. Returns how many `Drop`s panicked
    /// (each contained; every event is still dropped exactly once).
    #[inline]
    pub(crate) fn release(mut self) -> u64 {
        self.released = true;
        // SAFETY: the batch's range, polled by the only consumer, starting at
        // `consumed`; `self` is consumed, so no reference from `get` is alive.
        unsafe { self.ring.release(self.lo, self.end(), true) }
    }
}

impl<T> Drop for Batch<'_, T> {
    fn drop(&mut self) {
        if !self.released {
            // SAFETY: as in `release`; `&mut self` in `drop`: no borrow is alive.
            unsafe { self.ring.release(self.lo, self.end(), true) };
        }
    }
}
