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

use crate::ring::{self, ClaimError, Next, Producers, WaitStrategy};
use crate::sync::{AtomicBool, Ordering};
use std::time::Instant;

/// A ring of `Box<u64>` (boxed so that loom's leak checker sees every drop).
pub struct Ring {
    inner: ring::Ring<Box<u64>>,
}

/// A single producer's private state (its cursor, taken from the ring on first use).
pub struct SpState {
    cursor: Option<ring::SpCursor>,
}

/// A multi producer's private state.
pub struct MpState {
    cursor: ring::MpCursor,
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
        SpState { cursor: None }
    }

    pub fn mp_state() -> MpState {
        MpState {
            cursor: ring::MpCursor::default(),
        }
    }

    /// Single producer: publishes `values` as one batch (one claim, one publish).
    /// `false` if the ring closed first (the values were taken back).
    pub fn sp_publish(&self, st: &mut SpState, values: &[u64]) -> bool {
        let cursor = st.cursor.get_or_insert_with(|| {
            self.inner
                .single_producer()
                .expect("one single-producer cursor per ring")
        });
        let Ok(mut claim) = self
            .inner
            .claim_single(cursor, values.len() as u64, true, None)
        else {
            return false;
        };
        for v in values {
            claim.push(Box::new(*v));
        }
        claim.publish().is_ok()
    }

    /// Multi producer: claims `values.len()` sequences with one `fetch_add`, writes
    /// and publishes them. `false` if the ring was closed.
    pub fn mp_publish(&self, st: &mut MpState, values: &[u64]) -> bool {
        let mut claim = match self.inner.claim_multi(&mut st.cursor, values.len() as u64) {
            Ok(claim) => claim,
            Err(ClaimError::Closed) => return false,
            Err(e) => panic!("unexpected {e:?}"),
        };
        for v in values {
            claim.push(Box::new(*v));
        }
        claim.publish();
        true
    }

    /// Multi producer, bounded wait for one slot (as `Publisher::publish_timeout`):
    /// claims with `fetch_add`, waits until `deadline` for the slot; on timeout the
    /// sequence is abandoned (the consumer skips it) and the value is kept.
    /// `Err("timeout")` or `Err("closed")` if not published.
    pub fn mp_publish_until(
        &self,
        st: &mut MpState,
        value: u64,
        deadline: Instant,
    ) -> Result<(), &'static str> {
        match self.inner.claim_multi_until(&mut st.cursor, 1, deadline) {
            Ok(mut claim) => {
                claim.push(Box::new(value));
                claim.publish();
                Ok(())
            }
            Err(ClaimError::TimedOut) => Err("timeout"),
            Err(_) => Err("closed"),
        }
    }

    /// Multi producer, non-blocking claim of one slot.
    pub fn mp_try_publish(&self, st: &mut MpState, value: u64) -> Result<(), &'static str> {
        match self.inner.try_claim_multi(&mut st.cursor, 1) {
            Ok(mut claim) => {
                claim.push(Box::new(value));
                claim.publish();
                Ok(())
            }
            Err(ClaimError::Full) => Err("full"),
            Err(_) => Err("closed"),
        }
    }

    pub fn close(&self) -> u64 {
        self.inner.close()
    }

    /// The consumer: takes batches of at most `max` (waiting with the ring's
    /// strategy) until the ring is closed and drained; returns every value in
    /// order.
    pub fn consume_all_in(&self, max: u64) -> Vec<u64> {
        let mut consumer = self.inner.consumer().expect("one consumer per ring");
        let mut out = Vec::new();
        loop {
            self.inner.consumer_wait_until(|| {
                self.inner.has_next()
                    || self.inner.closed_at() == Some(self.inner.consumed_relaxed())
            });
            match self.inner.next_batch(&mut consumer, max) {
                Next::Batch(batch) => {
                    out.extend((0..batch.len()).map(|i| **batch.get(i)));
                    let _ = batch.release();
                }
                Next::Skipped(_) => {}
                Next::Empty => return out,
            }
        }
    }

    /// Drains until closed.
    pub fn consume_all(&self) -> Vec<u64> {
        self.consume_all_in(u64::MAX)
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

/// The follow-up queue (`dispatch::follow_ups`) with `Box<u64>` payloads in
/// events, driven directly: pushes from handler threads racing the dispatcher's
/// take and close.
pub struct FollowUpQueue {
    inner: crate::dispatch::FollowUps<Box<u64>>,
}

impl FollowUpQueue {
    pub fn new(limit: usize) -> Self {
        FollowUpQueue {
            inner: crate::dispatch::FollowUps::new(limit),
        }
    }

    /// `Ok` if queued; `Err(value)` if refused (full or closed), the value handed back.
    pub fn push(&self, value: u64) -> Result<(), u64> {
        let event = crate::Event::new(
            crate::EventType::new("loom.f"),
            crate::Source::new("loom"),
            Box::new(value),
        );
        self.inner.push(event, value).map_err(|(e, _)| *e.data)
    }

    pub fn is_pending(&self) -> bool {
        self.inner.is_pending()
    }

    /// Takes everything queued, in order.
    pub fn take(&self) -> Vec<u64> {
        let mut out = Vec::new();
        self.inner.take(&mut out);
        out.into_iter().map(|f| *f.event.data).collect()
    }

    /// Closes; returns what was still queued.
    pub fn close(&self) -> Vec<u64> {
        self.inner
            .close()
            .into_iter()
            .map(|f| *f.event.data)
            .collect()
    }
}

/// The in-memory store's visibility watermark (`store/memory/watermark.rs`):
/// `publish` is what a committing append does (store the new count, then wake),
/// `wait_past` what a live reader does.
pub struct Watermark {
    inner: crate::store::memory::watermark::Watermark,
}

impl Watermark {
    pub fn new() -> Self {
        Watermark {
            inner: crate::store::memory::watermark::Watermark::new(),
        }
    }

    /// Makes positions below `next` visible and wakes waiters.
    pub fn publish(&self, next: u64) {
        self.inner.publish(next);
        self.inner.wake();
    }

    /// How many positions are visible.
    pub fn visible(&self) -> u64 {
        self.inner.visible()
    }

    /// Waits until the head is past `after`; returns the head. (Loom has no
    /// timeouts: a lost wake-up is a deadlock it reports.)
    pub fn wait_past(&self, after: Option<u64>) -> Option<u64> {
        self.inner
            .wait_past(
                after.map(crate::store::Position),
                std::time::Duration::from_secs(3600),
            )
            .map(|p| p.0)
    }
}

/// One tracked event's countdown (`delivery::Tracker`) and its caller's
/// `Delivery`: the dispatcher arms it, handler instances finish with it, and
/// the bus may force it to complete when it gives up (`shutdown_timeout`).
/// Handler instance `i` is subscription `i + 1`, lane 0, named `"loom"`.
pub struct Countdown {
    tracker: crate::sync::Arc<crate::delivery::Tracker>,
}

/// The name every `Countdown` handler instance has.
const LOOM_HANDLER: &str = "loom";

impl Countdown {
    /// A new countdown and the `Delivery` that observes it.
    pub fn new() -> (Self, crate::delivery::Delivery) {
        let tracker = crate::delivery::Tracker::new();
        let delivery = crate::delivery::Delivery::new(tracker.clone());
        (Countdown { tracker }, delivery)
    }

    /// The dispatcher routed the event to handler instances `0 .. handlers`.
    pub fn arm(&self, handlers: u32) {
        let name: std::sync::Arc<str> = LOOM_HANDLER.into();
        self.tracker
            .arm((0..handlers).map(|i| (crate::SubscriptionId(u64::from(i) + 1), 0, &name)));
    }

    /// Handler instance `i` succeeded.
    pub fn succeeded(&self, i: u32) {
        self.tracker
            .succeeded(crate::SubscriptionId(u64::from(i) + 1), 0);
    }

    /// Handler instance `i` failed for good.
    pub fn failed(&self, i: u32, message: &str) {
        self.tracker.failed_with(
            (crate::SubscriptionId(u64::from(i) + 1), 0),
            LOOM_HANDLER,
            false,
            message.into(),
        );
    }

    /// Another `Delivery` observing the same event (the real one is not
    /// `Clone`; a model may want one to wait on and one to register `on_done`).
    pub fn delivery(&self) -> crate::delivery::Delivery {
        crate::delivery::Delivery::new(self.tracker.clone())
    }

    /// The bus gives up on the event (as `shutdown_timeout` does with a
    /// handler stuck): completes it unless it has completed.
    pub fn force(&self) {
        self.tracker.force(crate::delivery::SHUT_DOWN);
    }

    /// The message a forced completion reports for a handler still holding
    /// the event.
    pub fn forced_message() -> &'static str {
        crate::delivery::SHUT_DOWN
    }
}

impl Clone for Countdown {
    fn clone(&self) -> Self {
        Countdown {
            tracker: self.tracker.clone(),
        }
    }
}
