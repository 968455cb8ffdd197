//! Live delivery: a store's committed events, published on a bus in position
//! order, with their positions.
//!
//! # Who publishes
//! A [`LiveFeed`] is one thread per (store, bus) pair that tails the store
//! through the [`EventStore`] trait: it waits past the last position it
//! published ([`EventStore::wait_past`]), reads the committed events up to the
//! head ([`EventStore::read_all`], in pages), stamps each with its position
//! ([`Event::with_position`]) and publishes them with one ordinary publisher.
//! The alternatives were the appending thread publishing its own events (in
//! position order only through a sequencer that hands the turn over) or, for a
//! store with a committer thread, the committer. The tailing thread was chosen
//! because:
//!
//! * **Order is the ring's order.** One publisher, outside the bus, publishes
//!   position after position. An appender that is itself a bus handler (a
//!   command handler appending to the store — the common case in CQRS) would
//!   publish through the bus's follow-up queue, which the dispatcher inserts
//!   later than the direct publishes of other appenders: a sequencer on the
//!   append path cannot keep position order across the two routes.
//! * **Appends never wait for the bus.** A full ring slows the feed, not the
//!   writers; the feed catches up from the store, so nothing piles up in memory.
//! * **Only what is visible is published**: the feed reads below the store's
//!   watermark, which a durable store publishes only once the events are as
//!   durable as its durability mode promises.
//! * **Every store gets it for one line**: `live::publish_to(self, bus)`.
//!
//! The cost is a thread per feed and a wake-up per quiet period: an append
//! that finds the feed waiting signals the store's condvar (see the store's
//! `wait_past`); under load the feed finds work on every pass and nobody waits.
//!
//! # Not durable
//! Plain bus handlers fed this way see each committed event at most once: a
//! crash (or a bus shutdown) between the commit and the publish loses the event
//! for them — exactly cqrs-es#26. Consumers that must see everything use
//! catch-up subscriptions ([`subscribe_all`](super::subscribe_all)), which read
//! the store from their checkpoint and switch to the bus without a gap.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{EventStore, Position, ReadError};
use crate::bus::{Bus, PublishTimeoutError, Publisher};

/// Events read and published per pass.
const PAGE: usize = 512;
/// How long the feed waits for a new commit (or for ring space) before it looks
/// at its stop flag and the bus again.
const POLL: Duration = Duration::from_millis(20);

/// A running live feed: the thread that publishes a store's committed events
/// on a bus. Made by a store's `publish_to` (e.g.
/// [`InMemoryStore::publish_to`](super::InMemoryStore::publish_to)).
///
/// The feed ends when [`stop`](LiveFeed::stop) is called, the bus shuts down or
/// the store is dropped. Dropping the handle leaves the feed running (like
/// dropping a [`JoinHandle`]).
pub struct LiveFeed {
    shared: Arc<FeedShared>,
    thread: Option<JoinHandle<()>>,
}

struct FeedShared {
    stop: AtomicBool,
    /// The next position to publish: every position below it was published (or
    /// refused by a closed bus). Only the feed thread stores it.
    next: AtomicU64,
    /// Set when the feed ended by itself (bus closed, store gone, read error).
    ended: AtomicBool,
    /// The last read error, if one ended the feed.
    error: std::sync::Mutex<Option<ReadError>>,
}

impl LiveFeed {
    /// The next position the feed will publish: every committed event below it
    /// has been published. Starts at the head when the feed was made, plus one.
    pub fn next_position(&self) -> Position {
        Position(self.shared.next.load(Ordering::Acquire))
    }

    /// Whether the feed thread has ended by itself (the bus shut down, the store
    /// was dropped, or a read failed: see [`LiveFeed::error`]).
    pub fn is_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// The read error that ended the feed, if one did (its text).
    pub fn error(&self) -> Option<String> {
        let e = self.shared.error.lock().unwrap_or_else(|e| e.into_inner());
        e.as_ref().map(ToString::to_string)
    }

    /// Stops the feed after the event it is publishing, and waits for its
    /// thread. Committed events not yet published then are not published.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveFeed")
            .field("next_position", &self.next_position())
            .field("ended", &self.is_ended())
            .finish()
    }
}

/// Starts a feed publishing `store`'s events committed after now on `bus`.
pub(crate) fn publish_to<S, P>(store: &Arc<S>, bus: &Bus<P>) -> LiveFeed
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
{
    let next = store.head().map_or(0, |p| p.0 + 1);
    let shared = Arc::new(FeedShared {
        stop: AtomicBool::new(false),
        next: AtomicU64::new(next),
        ended: AtomicBool::new(false),
        error: std::sync::Mutex::new(None),
    });
    let publisher = bus.publisher();
    let weak = Arc::downgrade(store);
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("ringbus-live-feed".into())
        .spawn(move || {
            let s = &*thread_shared;
            if let Err(e) = run(&weak, publisher, s) {
                *s.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
            s.ended.store(true, Ordering::Release);
        })
        .expect("spawn the live feed thread");
    LiveFeed {
        shared,
        thread: Some(thread),
    }
}

/// The feed's loop; returns when stopped, when the bus or the store is gone,
/// or with the read error that stopped it.
fn run<S, P>(
    store: &Weak<S>,
    mut publisher: Publisher<P>,
    shared: &FeedShared,
) -> Result<(), ReadError>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
{
    let mut next = shared.next.load(Ordering::Relaxed);
    loop {
        if shared.stop.load(Ordering::Acquire) || publisher.is_closed() {
            return Ok(());
        }
        let Some(store) = store.upgrade() else {
            return Ok(());
        };
        let head = store.wait_past(next.checked_sub(1).map(Position), POLL);
        if head.is_none_or(|h| h.0 < next) {
            continue;
        }
        let page = store.read_all(Position(next), PAGE)?;
        drop(store);
        for recorded in page {
            let position = recorded.position;
            debug_assert_eq!(position.0, next, "read_all returns dense positions");
            let mut event = recorded.event.with_position(position);
            loop {
                match publisher.publish_timeout(event, POLL) {
                    Ok(()) => break,
                    Err(PublishTimeoutError::Timeout(e)) => {
                        if shared.stop.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        event = e;
                    }
                    // A closed bus: nothing more can be delivered.
                    Err(PublishTimeoutError::Closed(_)) => return Ok(()),
                    // Only a publish from inside the bus can hit the follow-up
                    // limit, and the feed's thread is outside it.
                    Err(PublishTimeoutError::FollowUpLimit(e)) => event = e,
                }
            }
            next = position.0 + 1;
            shared.next.store(next, Ordering::Release);
        }
    }
}
