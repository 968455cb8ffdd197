//! Follow-ups: events published from inside the bus — by a handler, or a hook
//! the dispatcher runs — while it dispatches.
//!
//! ## Why they do not go through the ring
//! The dispatcher frees ring slots only after every handler of a batch has
//! returned. A handler that waited for ring space would wait for the dispatcher,
//! which waits for the handler: once the ring is full, a cycle. So a publish made
//! inside the bus never touches the ring; it appends the event to this queue and
//! returns at once. The dispatcher dispatches the queue as a batch of its own
//! after the batch whose handlers published it — alternating with ring batches,
//! so neither a long chain of follow-ups nor a busy ring starves the other.
//!
//! ## Order
//! The queue is one FIFO: the follow-ups of one handler (one thread at a time)
//! keep their publish order, and a follow-up is dispatched after the event that
//! caused it (that event's batch has finished when the follow-up is taken).
//!
//! ## Bounded
//! At most `limit` follow-ups wait here; beyond it a publish from inside is
//! refused with a typed error (the event handed back) — never a wait, never a
//! silent drop. The batch being dispatched does not count.
//!
//! ## Roots
//! Each follow-up carries the ring sequence of the published event whose causal
//! chain it belongs to (or a lower one): `Bus::flush` waits until nothing with a
//! root below its mark is left anywhere.

use crate::delivery::Tracker;
use crate::event::Event;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

/// A follow-up waiting to be dispatched.
pub(crate) struct FollowUp<P> {
    pub(crate) event: Event<P>,
    /// The ring sequence its causal chain started at (a lower bound).
    pub(crate) root: u64,
    /// Its countdown, when published with `publish_tracked`.
    pub(crate) tracker: Option<Arc<Tracker>>,
}

/// Why a follow-up was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `limit` follow-ups are waiting already.
    Full,
    /// The dispatcher has finished: nothing will dispatch it.
    Closed,
}

struct State<P> {
    queue: Vec<FollowUp<P>>,
    closed: bool,
}

/// The queue of follow-ups (see the module docs).
pub(crate) struct FollowUps<P> {
    state: Mutex<State<P>>,
    /// Whether `queue` is non-empty; set under the lock, read without it.
    pending: AtomicBool,
    limit: usize,
}

impl<P> std::fmt::Debug for FollowUps<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowUps")
            .field("pending", &self.is_pending())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<P> FollowUps<P> {
    pub(crate) fn new(limit: usize) -> Self {
        FollowUps {
            state: Mutex::new(State {
                queue: Vec::new(),
                closed: false,
            }),
            pending: AtomicBool::new(false),
            limit,
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one event; `Err` hands it back with the reason.
    pub(crate) fn push(&self, event: Event<P>, root: u64) -> Result<(), (Event<P>, Refused)> {
        self.push_tracked(event, root, None)
    }

    /// [`push`](Self::push), with the event's countdown if it is tracked.
    pub(crate) fn push_tracked(
        &self,
        event: Event<P>,
        root: u64,
        tracker: Option<Arc<Tracker>>,
    ) -> Result<(), (Event<P>, Refused)> {
        let mut state = self.lock();
        if state.closed {
            return Err((event, Refused::Closed));
        }
        if state.queue.len() >= self.limit {
            return Err((event, Refused::Full));
        }
        state.queue.push(FollowUp {
            event,
            root,
            tracker,
        });
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Appends every event of `events` (under one lock) until the limit; the
    /// first refused event and the reason come back, the rest of the iterator is
    /// not consumed. Returns how many were appended.
    pub(crate) fn push_all(
        &self,
        events: &mut dyn Iterator<Item = Event<P>>,
        root: u64,
    ) -> (usize, Option<(Event<P>, Refused)>) {
        let mut state = self.lock();
        let mut n = 0;
        for event in events {
            if state.closed {
                return (n, Some((event, Refused::Closed)));
            }
            if state.queue.len() >= self.limit {
                return (n, Some((event, Refused::Full)));
            }
            state.queue.push(FollowUp {
                event,
                root,
                tracker: None,
            });
            self.pending.store(true, Ordering::Release);
            n += 1;
        }
        (n, None)
    }

    /// Whether follow-ups are waiting.
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Moves every waiting follow-up into `out` (empty on entry: its capacity is
    /// kept across calls by swapping).
    pub(crate) fn take(&self, out: &mut Vec<FollowUp<P>>) {
        debug_assert!(out.is_empty());
        let mut state = self.lock();
        std::mem::swap(&mut state.queue, out);
        self.pending.store(false, Ordering::Release);
    }

    /// The lowest root waiting, if any.
    pub(crate) fn min_root(&self) -> Option<u64> {
        self.lock().queue.iter().map(|f| f.root).min()
    }

    /// Refuses every later push; returns what was still waiting (for the caller
    /// to dispatch or report).
    pub(crate) fn close(&self) -> Vec<FollowUp<P>> {
        let mut state = self.lock();
        state.closed = true;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut state.queue)
    }
}
