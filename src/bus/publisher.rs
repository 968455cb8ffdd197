//! [`Publisher`]: claims ring slots and publishes events, one at a time or in
//! batches.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::delivery::{Delivery, Tracker};
use crate::dispatch::{Inside, Refused, Role, Shared};
use crate::event::Event;
use crate::ring::{Claim, ClaimError, Sequencer, Wait};
use crate::sync::Arc;

use super::error::{
    PublishBatchError, PublishError, PublishTimeoutError, Refusal, TryPublishError,
};
use super::mode::sealed::Sealed;
#[cfg(doc)]
use super::mode::Single;
use super::mode::{Multi, ProducerMode};
#[cfg(doc)]
use super::Bus;

/// Publishes events onto a bus.
///
/// In [`Multi`] mode publishers are `Clone`: give each producing thread its own
/// (each keeps a private cache of the consumer position). In [`Single`] mode there is
/// exactly one.
///
/// # Publishing from a handler (follow-ups)
/// A publisher used inside the bus — by one of its handlers or hooks (the
/// failure policy, `on_start`, …), on whatever thread the handler runs — never
/// waits for ring space: the dispatcher frees the ring only after the handler
/// returns, so waiting would deadlock. The event becomes a *follow-up*: it is
/// queued for the dispatcher and delivered after the event that caused it, the
/// follow-ups of one handler in their publish order. Every verb works this way
/// from inside; none blocks. Beyond
/// [`max_follow_ups`](crate::BusBuilder::max_follow_ups) waiting follow-ups it
/// is refused with the `FollowUpLimit` error, the event handed back.
pub struct Publisher<P = serde_json::Value, M: ProducerMode = Multi> {
    shared: Arc<Shared<P>>,
    /// The producer's private ring state: the mode's sequencer.
    cursor: <M as Sealed>::Sequencer,
    _mode: PhantomData<M>,
}

impl<P, M: ProducerMode> fmt::Debug for Publisher<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("single", &!<M as Sealed>::Sequencer::CLAIM_HOLDS_DISPATCH)
            .finish_non_exhaustive()
    }
}

impl<P> Clone for Publisher<P, Multi> {
    fn clone(&self) -> Self {
        Publisher {
            shared: self.shared.clone(),
            cursor: self.cursor.clone(),
            _mode: PhantomData,
        }
    }
}

impl<P: Send + Sync + 'static, M: ProducerMode> Publisher<P, M> {
    pub(super) fn new(shared: Arc<Shared<P>>) -> Self {
        let cursor = <M as Sealed>::Sequencer::of(&shared.ring)
            .expect("a bus hands out the sequencers its ring was built for");
        Publisher {
            shared,
            cursor,
            _mode: PhantomData,
        }
    }

    /// Whether the bus has shut down (publishes will fail).
    pub fn is_closed(&self) -> bool {
        self.shared.ring.is_closed()
    }

    /// Publishes one event, waiting (per the producer wait strategy) while the ring
    /// is full. `Err` only when the bus is shut down, with the event. A publish that
    /// starts after the close is refused at once, and one still waiting for a free
    /// slot gives up when the bus closes (in either producer mode it claims a slot
    /// only once the slot is free, so while it waits it holds nothing the
    /// dispatcher waits for).
    ///
    /// From inside the bus (a handler) the event is a follow-up and this never
    /// waits (see [the type docs](Publisher#publishing-from-a-handler-follow-ups)).
    #[inline]
    pub fn publish(&mut self, event: Event<P>) -> Result<(), PublishError<P>> {
        self.publish_inner(event, true, None)
            .map_err(|(e, why)| match why {
                Why::FollowUpLimit => PublishError::FollowUpLimit(e),
                _ => PublishError::Closed(e),
            })
    }

    /// Publishes one event if a slot is free now.
    ///
    /// In multi-producer mode other producers may take each slot as it frees (e.g.
    /// `publish_batch` loops), so `try_publish` can keep returning `Full`;
    /// [`publish_timeout`](Publisher::publish_timeout) waits its turn in line
    /// instead and gets in as the dispatcher makes progress.
    #[inline]
    pub fn try_publish(&mut self, event: Event<P>) -> Result<(), TryPublishError<P>> {
        self.publish_inner(event, false, None)
            .map_err(|(e, why)| match why {
                Why::Claim(ClaimError::Full) => TryPublishError::Full(e),
                Why::FollowUpLimit => TryPublishError::FollowUpLimit(e),
                _ => TryPublishError::Closed(e),
            })
    }

    /// Publishes one event, waiting at most `timeout` for a free slot. A timeout
    /// too large for an [`Instant`] waits like [`publish`](Publisher::publish).
    ///
    /// In multi-producer mode the call takes its place in line (one `fetch_add`),
    /// so it is not starved by producers that take each slot as it frees; if the
    /// deadline passes first, its sequence is left for the dispatcher to skip and
    /// the event comes back.
    pub fn publish_timeout(
        &mut self,
        event: Event<P>,
        timeout: Duration,
    ) -> Result<(), PublishTimeoutError<P>> {
        let deadline = Instant::now().checked_add(timeout);
        self.publish_inner(event, true, deadline)
            .map_err(|(e, why)| match why {
                Why::Claim(ClaimError::Closed) => PublishTimeoutError::Closed(e),
                Why::FollowUpLimit => PublishTimeoutError::FollowUpLimit(e),
                _ => PublishTimeoutError::Timeout(e),
            })
    }

    /// Publishes `event` (waiting for space, like [`publish`](Self::publish)) and
    /// returns a [`Delivery`] that completes once every handler subscribed when
    /// the event is dispatched has finished with it: succeeded, or failed for
    /// good (retries exhausted, dead-lettered — also by an unsubscribe or the
    /// shutdown while it waited for a retry — or panicked). An event no handler
    /// takes completes at dispatch. A partitioned subscription counts once (the
    /// event goes to one of its lanes).
    ///
    /// It also completes if the bus gives up first: a
    /// [`shutdown_timeout`](super::Bus::shutdown_timeout) that returns with a
    /// handler still running completes every delivery not complete then — an
    /// event not yet dispatched with [`dispatched`](crate::delivery::DeliveryOutcome::dispatched)
    /// `false`, and one dispatched with a failure for each handler still
    /// holding it — so [`Delivery::wait`] never outlives the bus's stop.
    /// [`is_success`](crate::delivery::DeliveryOutcome::is_success) is true only
    /// for a dispatched event every handler succeeded with.
    ///
    /// Untracked publishes pay nothing for this: the countdown exists only for
    /// events published here. From inside a handler the event is a follow-up,
    /// tracked the same way.
    ///
    /// # Errors
    /// [`PublishError::Closed`] with the event if the bus is shut down (an event
    /// accepted before the shutdown is delivered, and its delivery completes);
    /// [`PublishError::FollowUpLimit`] from inside a handler as for `publish`.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{BusBuilder, Event, EventType, HandlerError, Source};
    ///
    /// let bus = BusBuilder::<u32>::new().build().unwrap();
    /// bus.subscribe("job.done", |_e: &Event<u32>| -> Result<(), HandlerError> {
    ///     Err(HandlerError::permanent("no"))
    /// })
    /// .unwrap();
    /// let mut p = bus.publisher();
    /// let d = p
    ///     .publish_tracked(Event::new(EventType::new("job.done"), Source::new("doc"), 1))
    ///     .unwrap();
    /// let outcome = d.wait();
    /// assert_eq!((outcome.handlers, outcome.succeeded), (1, 0));
    /// assert!(!outcome.failed[0].transient);
    /// bus.shutdown().unwrap();
    /// ```
    pub fn publish_tracked(&mut self, event: Event<P>) -> Result<Delivery, PublishError<P>> {
        let tracker = Tracker::new();
        if let Some(root) = self.follow_up_root() {
            return match self
                .shared
                .follow_ups
                .push_tracked(event, root, Some(tracker.clone()))
            {
                Ok(()) => {
                    self.shared.deliveries.register(&tracker);
                    Ok(Delivery::new(tracker))
                }
                Err((e, why)) => Err(PublishError::new(e, Why::from(why).refusal())),
            };
        }
        let Ok(mut claim) = self.cursor.claim(&self.shared.ring, 1, Wait::Forever) else {
            return Err(PublishError::Closed(event));
        };
        let sequence = claim.start();
        claim.push(event);
        // Registered before the publish makes the event visible to the dispatcher.
        self.shared.tracked.insert(sequence, tracker.clone());
        match claim.publish_one() {
            Ok(()) => {
                // Listed once accepted: a delivery the bus gives up on is
                // completed from there (forced at once if it gave up already).
                self.shared.deliveries.register(&tracker);
                Ok(Delivery::new(tracker))
            }
            Err(event) => {
                // A single producer lost to the close: never dispatched.
                self.shared.tracked.remove(sequence);
                Err(PublishError::Closed(event))
            }
        }
    }

    /// If this thread is inside this bus's dispatch (a handler or hook), the
    /// root its follow-ups belong to: publishes from there are follow-ups.
    #[inline]
    fn follow_up_root(&self) -> Option<u64> {
        Inside::dispatch_root(self.shared.id())
    }

    fn follow_up(&self, event: Event<P>, root: u64) -> Result<(), (Event<P>, Why)> {
        self.shared
            .follow_ups
            .push(event, root)
            .map_err(|(e, why)| (e, Why::from(why)))
    }

    #[inline]
    fn publish_inner(
        &mut self,
        event: Event<P>,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<(), (Event<P>, Why)> {
        if let Some(root) = self.follow_up_root() {
            return self.follow_up(event, root);
        }
        let how = match (wait, deadline) {
            (false, _) => Wait::No,
            (true, None) => Wait::Forever,
            (true, Some(d)) => Wait::Until(d),
        };
        let mut claim = match self.cursor.claim(&self.shared.ring, 1, how) {
            Ok(claim) => claim,
            Err(why) => return Err((event, Why::Claim(why))),
        };
        claim.push(event);
        claim
            .publish_one()
            .map_err(|e| (e, Why::Claim(ClaimError::Closed)))
    }

    /// Claims a slot, then builds the event with `make` directly into it and
    /// publishes it. Events built this way are stamped in claim order: in
    /// single-producer mode, timestamps and ids taken inside `make` increase with
    /// the ring sequence.
    ///
    /// If the bus is closed, `make` is still called and its event handed back in
    /// the error. If `make` panics, nothing is published. If `make` shuts the bus
    /// down (drops the last [`Bus`]), the event is still delivered (multi
    /// producer: its slot was claimed before the close) or handed back (single
    /// producer), and the bus stops by itself after this call.
    ///
    /// From inside the bus (a handler), `make` runs first and its event is a
    /// follow-up (see [the type docs](Publisher#publishing-from-a-handler-follow-ups)).
    #[inline]
    pub fn publish_with(&mut self, make: impl FnOnce() -> Event<P>) -> Result<(), PublishError<P>> {
        if let Some(root) = self.follow_up_root() {
            return self
                .follow_up(make(), root)
                .map_err(|(e, why)| PublishError::new(e, why.refusal()));
        }
        let bus = self.shared.id();
        let Ok(mut claim) = self.cursor.claim(&self.shared.ring, 1, Wait::Forever) else {
            return Err(PublishError::Closed(make()));
        };
        let event = {
            // User code runs while this thread holds the claim: where the
            // dispatcher waits for it (multi producer), a shutdown from in there
            // must not wait for the dispatcher.
            let _inside = <M as Sealed>::Sequencer::CLAIM_HOLDS_DISPATCH
                .then(|| Inside::enter(bus, Role::Claim));
            make()
        };
        claim.push(event);
        claim.publish_one().map_err(PublishError::Closed)
    }

    /// Publishes many events with one claim per chunk (a chunk is at most the ring
    /// capacity: a larger batch is split, never refused) and one publish per chunk
    /// (single producer) — the cheapest way to publish.
    ///
    /// The chunk size comes from the iterator's `size_hint` (exact for vectors,
    /// arrays, ranges and maps over them). Waits while the ring is full.
    ///
    /// # Errors
    /// If the bus shuts down part-way, the events already published will be
    /// delivered; the error hands back the events taken from the iterator but not
    /// published, in order. The rest of the iterator is **not consumed** (an
    /// endless or blocking iterator is never drained): pass `iter.by_ref()` to keep
    /// it.
    ///
    /// If the iterator panics, the events it yielded before are published and
    /// the panic propagates.
    ///
    /// From inside the bus (a handler) the events are follow-ups, queued in order
    /// up to [`max_follow_ups`](crate::BusBuilder::max_follow_ups) (see [the type
    /// docs](Publisher#publishing-from-a-handler-follow-ups)).
    pub fn publish_batch<I>(&mut self, events: I) -> Result<(), PublishBatchError<P>>
    where
        I: IntoIterator<Item = Event<P>>,
    {
        let mut iter = events.into_iter();
        if let Some(root) = self.follow_up_root() {
            return match self.shared.follow_ups.push_all(&mut iter, root) {
                (_, None) => Ok(()),
                (published, Some((event, why))) => Err(PublishBatchError {
                    published,
                    unpublished: vec![event],
                    reason: Why::from(why).refusal(),
                }),
            };
        }
        let ring = &self.shared.ring;
        let cap = ring.capacity();
        let bus = self.shared.id();
        let mut published = 0usize;
        loop {
            // One event in hand proves the batch is not done; the hint sizes the claim.
            let Some(first) = iter.next() else {
                return Ok(());
            };
            let n = (iter.size_hint().0 as u64).saturating_add(1).min(cap);
            let refused = |published, first| {
                Err(PublishBatchError {
                    published,
                    unpublished: vec![first],
                    reason: Refusal::Closed,
                })
            };
            let Ok(mut claim) = self.cursor.claim(ring, n, Wait::Forever) else {
                return refused(published, first);
            };
            {
                // The iterator is user code, run while this claim is held.
                let _inside = <M as Sealed>::Sequencer::CLAIM_HOLDS_DISPATCH
                    .then(|| Inside::enter(bus, Role::Claim));
                // `first` on its own, then the iterator itself (not a `Chain`, whose
                // `next` did not inline: each event was built on the stack, then
                // copied into its slot).
                claim.push(first);
                claim.fill(&mut iter);
            }
            // Publishes what was written (a multi-producer claim skips what the
            // iterator did not fill); a single producer losing to the close gets
            // the values back.
            match claim.publish() {
                Ok(written) => published += written as usize,
                Err(unpublished) => {
                    return Err(PublishBatchError {
                        published,
                        unpublished,
                        reason: Refusal::Closed,
                    })
                }
            }
        }
    }
}

/// Why a publish failed, before it is put in the verb's error type.
#[derive(Copy, Clone, Debug)]
enum Why {
    Claim(ClaimError),
    FollowUpLimit,
}

impl From<Refused> for Why {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Full => Why::FollowUpLimit,
            Refused::Closed => Why::Claim(ClaimError::Closed),
        }
    }
}

impl Why {
    fn refusal(self) -> Refusal {
        match self {
            Why::FollowUpLimit => Refusal::FollowUpLimit,
            Why::Claim(_) => Refusal::Closed,
        }
    }
}
