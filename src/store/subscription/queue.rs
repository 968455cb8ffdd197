//! The live queue: what the bus forwarder hands a catch-up subscription.
//!
//! The forwarder is an ordinary bus handler subscribed to every event (`">"`):
//! the subscription must see every *position* to notice gaps, so events its
//! filter rejects go in as their position and subject only (no payload copy).
//! The queue is bounded; when it is full the forwarder drops everything it
//! holds and refuses more (`overflowed`) until the subscription thread re-arms
//! it, after it has caught up from the store again. Buffering is off
//! (`armed == false`) while the subscription reads history far from the head, so
//! a long catch-up does not fill the queue with events it will read anyway.
//!
//! One mutex guards the state; the forwarder takes it once per event (and
//! copies the payload inside it), the subscription once per batch it takes.
//! The mutex is also what makes the switch sound: the forwarder handles an
//! event only after it was published, hence committed; if it handles it before
//! `arm` (and drops it), its unlock happens before `arm`'s lock, which happens
//! before the subscription reads the store's head — so that head covers the
//! event. If it handles it after `arm`, the event is queued. (A lock-free
//! `armed` flag read outside the mutex would need a SeqCst fence on both
//! sides for the same argument.)

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::super::Position;
use super::Filter;
use crate::event::{Event, Subject};

/// One live event: its position, its subject (for the stream-version cache),
/// and the event if the filter wants it.
pub(super) struct Item<P> {
    pub(super) position: Position,
    pub(super) subject: Option<Subject>,
    pub(super) event: Option<Event<P>>,
}

struct State<P> {
    items: VecDeque<Item<P>>,
    /// Buffering on.
    armed: bool,
    /// The queue overflowed since it was last armed: it holds nothing and takes
    /// nothing until re-armed.
    overflowed: bool,
    /// The subscription asked for attention (stop, rebuild): wake its wait.
    poke: bool,
    /// The subscription is gone: the forwarder is idle for good.
    closed: bool,
}

/// What [`LiveQueue::take`] found.
pub(super) enum Take<P> {
    /// Events, oldest first.
    Items(VecDeque<Item<P>>),
    /// The queue overflowed: its events were dropped.
    Overflow,
    /// Nothing within the timeout (or a poke).
    Empty,
}

pub(super) struct LiveQueue<P> {
    state: Mutex<State<P>>,
    cond: Condvar,
    /// Items held at most; ≥ 1.
    capacity: usize,
}

impl<P> LiveQueue<P> {
    pub(super) fn new(capacity: usize) -> Self {
        LiveQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                armed: false,
                overflowed: false,
                poke: false,
                closed: false,
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The forwarder's side: offers one bus event.
    pub(super) fn offer(&self, e: &Event<P>, filter: &Filter)
    where
        P: Clone,
    {
        let Some(position) = e.position() else {
            return; // not a store's event
        };
        let mut s = self.lock();
        if !s.armed || s.overflowed || s.closed {
            return;
        }
        if s.items.len() >= self.capacity {
            s.overflowed = true;
            s.items = VecDeque::new();
            drop(s);
            self.cond.notify_one();
            return;
        }
        let was_empty = s.items.is_empty();
        s.items.push_back(Item {
            position,
            subject: e.subject.clone(),
            event: filter.matches(e).then(|| e.clone()),
        });
        drop(s);
        if was_empty {
            self.cond.notify_one();
        }
    }

    /// Starts buffering, empty: every event the forwarder handles from now on
    /// is queued (until an overflow).
    pub(super) fn arm(&self) {
        let mut s = self.lock();
        s.items.clear();
        s.overflowed = false;
        s.armed = true;
    }

    /// Stops buffering and drops what is queued.
    pub(super) fn disarm(&self) {
        let mut s = self.lock();
        s.items = VecDeque::new();
        s.overflowed = false;
        s.armed = false;
    }

    /// Whether the queue is buffering and has not overflowed since it was
    /// armed: everything the forwarder handled since then is in it.
    pub(super) fn is_complete(&self) -> bool {
        let s = self.lock();
        s.armed && !s.overflowed
    }

    /// The subscription is gone: drop everything, take nothing more.
    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.armed = false;
        s.items = VecDeque::new();
    }

    /// Wakes a `take` in progress (the subscription has a command waiting).
    pub(super) fn poke(&self) {
        self.lock().poke = true;
        self.cond.notify_all();
    }

    /// Waits up to `timeout` for events, an overflow, or a poke.
    pub(super) fn take(&self, timeout: Duration) -> Take<P> {
        let mut s = self.lock();
        if s.items.is_empty() && !s.overflowed && !s.poke {
            s = self
                .cond
                .wait_timeout_while(s, timeout, |s| {
                    s.items.is_empty() && !s.overflowed && !s.poke
                })
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.poke = false;
        if s.overflowed {
            Take::Overflow
        } else if s.items.is_empty() {
            Take::Empty
        } else {
            Take::Items(std::mem::take(&mut s.items))
        }
    }
}
