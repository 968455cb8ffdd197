//! The control channel: subscribe, unsubscribe and redrive messages, queued for
//! the dispatcher's next batch boundary, each answered through a one-shot
//! [`Ack`].

use std::sync::Arc as StdArc;

use super::handler::Handler;
use super::pattern::Pattern;
use super::waiting::ResilienceSpec;
use crate::outcome::SubscriptionId;
use crate::resilience::{DeadLetter, DlqFilter};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, Ordering};
use crate::unwind::drop_quietly;

/// The dispatcher's answer to a control message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Applied, to this many things (subscriptions removed, letters redriven; 1
    /// for a subscribe).
    Done(usize),
    /// Not applied: the dispatcher has stopped.
    Refused,
}

/// A one-shot reply slot for a control message.
#[derive(Debug)]
pub(crate) struct Ack {
    done: Mutex<Option<Reply>>,
    cv: Condvar,
}

impl Ack {
    pub(crate) fn new() -> Arc<Ack> {
        Arc::new(Ack {
            done: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    pub(super) fn complete(&self, reply: Reply) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(reply);
        self.cv.notify_all();
    }

    /// Waits for the dispatcher's answer.
    pub(crate) fn wait(&self) -> Reply {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(reply) = *done {
                return reply;
            }
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Which dead letters to redrive.
#[derive(Debug)]
pub(crate) enum Redrive {
    One(u64),
    Matching(DlqFilter),
}

impl Redrive {
    pub(super) fn selects<P>(&self, letter: &DeadLetter<P>) -> bool {
        match self {
            Redrive::One(id) => letter.id == *id,
            Redrive::Matching(f) => f.matches(letter),
        }
    }
}

/// A new subscription, as sent to the dispatcher.
pub(crate) struct SubscribeSpec<P> {
    pub(crate) id: SubscriptionId,
    /// `None`: every event type.
    pub(crate) patterns: Option<Vec<Pattern>>,
    /// One handler per lane (one for a plain subscription).
    pub(crate) handlers: Vec<Box<dyn Handler<P>>>,
    pub(crate) name: StdArc<str>,
    /// Retry policy, breaker, queue bound — for subscriptions that asked for them.
    pub(crate) resilience: Option<ResilienceSpec<P>>,
}

pub(crate) enum Control<P> {
    Subscribe(SubscribeSpec<P>, Arc<Ack>),
    /// Remove the subscription once every sequence below `until` is dispatched:
    /// its handler gets every event published before `unsubscribe` was called.
    Unsubscribe {
        id: SubscriptionId,
        until: u64,
        ack: Arc<Ack>,
    },
    /// Dead letters to deliver again to their handlers. The dispatcher takes them
    /// out of the queue itself, so a refused message leaves them where they were.
    Redrive(Redrive, Arc<Ack>),
}

impl<P> Control<P> {
    fn ack(&self) -> &Ack {
        match self {
            Control::Subscribe(_, ack)
            | Control::Unsubscribe { ack, .. }
            | Control::Redrive(_, ack) => ack,
        }
    }
}

/// Control messages waiting for the next batch boundary.
pub(crate) struct ControlQueue<P> {
    /// Set after a push, cleared by the dispatcher before it drains the queue.
    pending: AtomicBool,
    queue: Mutex<Vec<Control<P>>>,
    /// Set by the dispatcher when it exits; later messages are refused.
    closed: AtomicBool,
}

impl<P> ControlQueue<P> {
    pub(crate) fn new() -> Self {
        ControlQueue {
            pending: AtomicBool::new(false),
            queue: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `msg` for the next batch boundary; `false` if the queue is closed
    /// (the message is dropped).
    pub(super) fn push(&self, msg: Control<P>) -> bool {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            q.push(msg);
        }
        self.pending.store(true, Ordering::Release);
        true
    }

    #[inline]
    pub(super) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    pub(super) fn take(&self) -> Vec<Control<P>> {
        self.pending.store(false, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *q)
    }

    /// Refuses every queued and later message.
    pub(super) fn close(&self) {
        let refused = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Relaxed);
            std::mem::take(&mut *q)
        };
        // Outside the lock: a refused subscription drops its handlers (user code).
        for c in refused {
            c.ack().complete(Reply::Refused);
            drop_quietly(c);
        }
    }
}
