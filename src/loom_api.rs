//! The internal protocols, exposed for the loom models in `loom-tests/` only.
//!
//! Compiled only under `cfg(loom)`; not part of the public API. Each type is a thin
//! wrapper that drives the real ring / signal code with `u64` payloads, so the
//! models check the code that ships, not a copy of it.

#![allow(
    missing_docs,
    missing_debug_implementations,
    clippy::new_without_default
)]

use crate::ring::{self, ClaimError, Poll, Producers, WaitStrategy};
use crate::sync::{AtomicBool, Ordering};
use std::time::Instant;

/// A ring of `Box<u64>` (boxed so that loom's leak checker sees every drop).
pub struct Ring {
    inner: ring::Ring<Box<u64>>,
}

/// A single producer's private state.
pub struct SpState {
    next: u64,
    cached: u64,
}

impl Ring {
    pub fn new(capacity: usize, multi: bool, wait: WaitStrategy) -> Self {
        let producers = if multi {
            Producers::Multi
        } else {
            Producers::Single
        };
        Ring {
            inner: ring::Ring::new(capacity, producers, wait, wait),
        }
    }

    pub fn sp_state() -> SpState {
        SpState { next: 0, cached: 0 }
    }

    /// Single producer: publishes `values` as one batch (one claim, one publish).
    /// `false` if the ring closed first (the values were taken back).
    pub fn sp_publish(&self, st: &mut SpState, values: &[u64]) -> bool {
        let n = values.len() as u64;
        if self
            .inner
            .sp_claim(st.next, n, &mut st.cached, true, None)
            .is_err()
        {
            return false;
        }
        for (k, v) in values.iter().enumerate() {
            // SAFETY: the single producer owns `[next, next + n)`, and the claim waited
            // for those slots to be free.
            unsafe { self.inner.write(st.next + k as u64, Box::new(*v)) };
        }
        match self.inner.sp_publish(st.next, n) {
            Ok(()) => {
                st.next += n;
                true
            }
            Err(_) => {
                for k in 0..n {
                    // SAFETY: the publish lost to the close: the slots are still ours.
                    drop(unsafe { self.inner.take(st.next + k) });
                }
                false
            }
        }
    }

    /// Multi producer: claims `values.len()` sequences with one `fetch_add`, writes
    /// and publishes them. `false` if the ring was closed.
    pub fn mp_publish(&self, cached: &mut u64, values: &[u64]) -> bool {
        let n = values.len() as u64;
        let seq = match self.inner.mp_claim(n, cached) {
            Ok(seq) => seq,
            Err(ClaimError::Closed) => return false,
            Err(e) => panic!("unexpected {e:?}"),
        };
        for (k, v) in values.iter().enumerate() {
            // SAFETY: claimed by this producer; `mp_claim` waited for the slots.
            unsafe { self.inner.write(seq + k as u64, Box::new(*v)) };
        }
        self.inner.mp_publish(seq, n);
        true
    }

    /// Multi producer, bounded wait for one slot (as `Publisher::publish_timeout`):
    /// claims with `fetch_add`, waits until `deadline` for the slot; on timeout the
    /// sequence is abandoned (the consumer skips it) and the value is kept.
    /// `Err("timeout")` or `Err("closed")` if not published.
    pub fn mp_publish_until(
        &self,
        cached: &mut u64,
        value: u64,
        deadline: Instant,
    ) -> Result<(), &'static str> {
        match self.inner.mp_claim_until(1, cached, deadline) {
            Ok(seq) => {
                // SAFETY: claimed by this producer; `mp_claim_until` waited for the slot.
                unsafe { self.inner.write(seq, Box::new(value)) };
                self.inner.mp_publish(seq, 1);
                Ok(())
            }
            Err(ClaimError::TimedOut) => Err("timeout"),
            Err(_) => Err("closed"),
        }
    }

    /// Multi producer, non-blocking claim of one slot.
    pub fn mp_try_publish(&self, cached: &mut u64, value: u64) -> Result<(), &'static str> {
        match self.inner.mp_try_claim(1, cached) {
            Ok(seq) => {
                // SAFETY: claimed by this producer; the slot was free at the claim.
                unsafe { self.inner.write(seq, Box::new(value)) };
                self.inner.mp_publish(seq, 1);
                Ok(())
            }
            Err(ClaimError::Full) => Err("full"),
            Err(_) => Err("closed"),
        }
    }

    pub fn close(&self) -> u64 {
        self.inner.close()
    }

    /// The consumer: waits for events (with the ring's strategy), takes one batch of
    /// at most `max`, appends its values to `out` and releases it. Returns `false`
    /// once the ring is closed and drained.
    pub fn consume(&self, next: &mut u64, max: u64, out: &mut Vec<u64>) -> bool {
        loop {
            let mut poll = Poll::Empty;
            let n = *next;
            self.inner.consumer_wait_until(|| {
                poll = self.inner.poll(n, max);
                poll != Poll::Empty || self.inner.closed_at() == Some(n)
            });
            match poll {
                Poll::Empty => return false,
                Poll::Events(hi) => {
                    for s in n..hi {
                        // SAFETY: polled as published, released below.
                        out.push(**unsafe { self.inner.get(s) });
                    }
                    // SAFETY: the range just polled; no reference outlives this line.
                    unsafe { self.inner.release(n, hi, true) };
                    *next = hi;
                    return true;
                }
                Poll::Skip(hi) => {
                    // SAFETY: polled as skipped.
                    unsafe { self.inner.release(n, hi, false) };
                    *next = hi;
                }
            }
        }
    }

    /// Drains until closed.
    pub fn consume_all(&self) -> Vec<u64> {
        let (mut next, mut out) = (0, Vec::new());
        while self.consume(&mut next, u64::MAX, &mut out) {}
        out
    }
}

/// The park/wake protocol, on one flag.
pub struct Signal {
    inner: ring::Signal,
    flag: AtomicBool,
}

impl Signal {
    pub fn new() -> Self {
        Signal {
            inner: ring::Signal::new(),
            flag: AtomicBool::new(false),
        }
    }

    /// Sets the flag and notifies, as a producer does after publishing.
    pub fn set(&self) {
        self.flag.store(true, Ordering::Release);
        self.inner.notify();
    }

    /// Waits with the blocking strategy until the flag is set.
    pub fn wait(&self) {
        let _ = self.inner.wait_until(WaitStrategy::Blocking, None, || {
            self.flag.load(Ordering::Acquire)
        });
    }
}
