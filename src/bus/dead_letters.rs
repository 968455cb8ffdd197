//! [`DeadLetters`]: a bus's dead-letter queue, to inspect, redrive and discard.

use std::fmt;

use crate::dispatch::{Ack, Control, Inside, Redrive, Reply, Role, Shared};
use crate::resilience::{DeadLetter, DeadLetterInfo, DeadLetterQueue, DlqFilter};
use crate::sync::Arc;

use super::error::SubscribeError;

/// A handle on a bus's dead-letter queue. Cheap to clone; outlives the bus (the
/// letters stay readable after shutdown).
pub struct DeadLetters<P> {
    pub(super) dlq: DeadLetterQueue<P>,
    pub(super) shared: Arc<Shared<P>>,
}

impl<P> Clone for DeadLetters<P> {
    fn clone(&self) -> Self {
        DeadLetters {
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<P> fmt::Debug for DeadLetters<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("len", &self.dlq.len())
            .finish()
    }
}

impl<P: Send + Sync + 'static> DeadLetters<P> {
    /// Letters held now.
    pub fn len(&self) -> usize {
        self.dlq.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.dlq.is_empty()
    }

    /// Letters dropped because the queue was full (policy `DropOldest`).
    pub fn evicted(&self) -> u64 {
        self.dlq.evicted()
    }

    /// Summaries of the letters matching `filter`, oldest first.
    pub fn list(&self, filter: &DlqFilter) -> Vec<DeadLetterInfo> {
        self.dlq.list(filter)
    }

    /// A copy of one letter.
    pub fn get(&self, id: u64) -> Option<DeadLetter<P>>
    where
        P: Clone,
    {
        self.dlq.get(id)
    }

    /// Removes one letter for good.
    pub fn discard(&self, id: u64) -> bool {
        self.dlq.discard(id)
    }

    /// Removes every letter matching `filter`; returns how many.
    pub fn discard_matching(&self, filter: &DlqFilter) -> usize {
        self.dlq.discard_matching(filter)
    }

    /// Delivers one letter again to its handler (a fresh set of attempts under the
    /// subscription's retry policy, behind any waiting event of its subject).
    /// Returns once the dispatcher has queued it; `Ok(false)` if no such letter.
    ///
    /// # Errors
    /// A refused redrive leaves the letter where it was, with its id:
    /// [`SubscribeError::Closed`] after shutdown (letters stay readable),
    /// [`SubscribeError::FromHandler`] from one of this bus's handlers,
    /// [`SubscribeError::UnknownSubscription`] when the letter's subscription is
    /// gone (or keeps no retry queue).
    pub fn redrive(&self, id: u64) -> Result<bool, SubscribeError> {
        match self.send(Redrive::One(id))? {
            0 => match self.dlq.subscription_of(id) {
                Some(sub) => Err(SubscribeError::UnknownSubscription(sub)),
                None => Ok(false),
            },
            _ => Ok(true),
        }
    }

    /// Redrives every letter matching `filter` whose subscription is still there;
    /// returns how many. Letters that cannot be redriven stay where they are.
    ///
    /// # Errors
    /// As [`redrive`](DeadLetters::redrive), except that letters of a gone
    /// subscription are skipped, not an error.
    pub fn redrive_matching(&self, filter: &DlqFilter) -> Result<usize, SubscribeError> {
        self.send(Redrive::Matching(filter.clone()))
    }

    fn send(&self, which: Redrive) -> Result<usize, SubscribeError> {
        if Inside::is(self.shared.id(), Role::Dispatch) {
            return Err(SubscribeError::FromHandler);
        }
        let ack = Ack::new();
        if !self
            .shared
            .send_control(Control::Redrive(which, ack.clone()))
        {
            return Err(SubscribeError::Closed);
        }
        match ack.wait() {
            Reply::Done(n) => Ok(n),
            Reply::Refused => Err(SubscribeError::Closed),
        }
    }
}
