//! The visibility watermark: how many events are committed, and the wake-up of
//! threads waiting for more.
//!
//! `next` is the number of visible events: positions `0 .. next` are committed and
//! readable, `head() = next - 1`. Only the write-lock holder stores it
//! ([`Watermark::publish`]), after the entries and the stream index of an append
//! are in place, so a reader that loads `next` (Acquire) sees everything below it.
//! It only grows.
//!
//! Waiting ([`Watermark::wait_past`]) is the classic "flag + sleeper count +
//! condvar" handshake with no lost wake-up, written with fences (as the ring's
//! `Signal` is, and for the same reason: loom models SeqCst fences, not SeqCst
//! accesses): a waiter registers in `sleepers` under `lock`, then a SeqCst fence,
//! then re-reads `next`; the writer stores `next`, then a SeqCst fence, then reads
//! `sleepers`. Of the two fences, the later one in their single total order lets
//! its thread see the other's write: either the waiter sees the new `next`, or the
//! writer sees the sleeper and takes `lock` — which it can only get once the
//! waiter is inside `Condvar::wait` — and notifies. A writer that sees no sleeper
//! pays a fence and a load: appends do not touch the lock or the condvar unless
//! someone waits. The loom model `loom-tests/tests/store.rs` checks this.

use std::time::{Duration, Instant};

use super::super::Position;
use crate::sync::{fence, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};

pub(crate) struct Watermark {
    /// Committed events; in `0 ..= u64::MAX`, only grows.
    next: AtomicU64,
    /// Threads inside `wait_past`'s wait loop; in `0 ..= number of threads`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Watermark {
    pub(crate) fn new() -> Self {
        Watermark {
            next: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// Positions below this are visible.
    #[inline]
    pub(crate) fn visible(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// The last visible position.
    #[inline]
    pub(crate) fn head(&self) -> Option<Position> {
        head_of(self.visible())
    }

    /// Makes positions below `next` visible. Write-lock holder only; `next` never
    /// goes down. Call [`Watermark::wake`] afterwards (after the write lock is
    /// released).
    #[inline]
    pub(crate) fn publish(&self, next: u64) {
        debug_assert!(next >= self.next.load(Ordering::Relaxed));
        self.next.store(next, Ordering::Release);
    }

    /// Wakes the threads in `wait_past`, if there are any.
    #[inline]
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            // Taking the lock orders this notify after every registered waiter
            // entered `wait` (they hold the lock until then).
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.cond.notify_all();
        }
    }

    /// Blocks until the head is past `after` or `timeout` passes; returns the head.
    pub(crate) fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        let past = |next: u64| head_of(next) > after;
        let head = self.head();
        if head > after || timeout.is_zero() {
            return head;
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        loop {
            fence(Ordering::SeqCst);
            if past(self.next.load(Ordering::Acquire)) {
                break;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                // A timeout beyond `Instant`'s range: wait in long steps.
                None => Duration::from_secs(3600),
            };
            guard = self
                .cond
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        drop(guard);
        self.head()
    }
}

#[inline]
fn head_of(next: u64) -> Option<Position> {
    next.checked_sub(1).map(Position)
}
