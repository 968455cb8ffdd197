//! The feeder thread: decodes each message, drops completed events
//! ([`Dedup`](super::super::Dedup)), appends to the store inbox, and publishes
//! on the bus with `publish_tracked` — everything that may block, off the
//! runtime thread. It feeds the bus in delivery order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::super::dedup::{InboxAppend, Window};
use super::super::wire;
use super::worker::{Ev, Feed};
use crate::event::EventId;
use crate::store::upcast::Upcasters;
use crate::Publisher;

/// The feeder thread: decode, dedup, inbox, publish on the bus.
pub(super) struct Feeder<P: Send + Sync + 'static> {
    /// Messages in delivery order, in the batches the worker sends.
    pub(super) rx: std_mpsc::Receiver<Vec<Feed>>,
    pub(super) tx: mpsc::UnboundedSender<Ev>,
    pub(super) publisher: Publisher<P>,
    pub(super) upcasters: Option<Arc<Upcasters>>,
    pub(super) window: Option<Arc<Mutex<Window>>>,
    pub(super) inbox: Option<Arc<Box<InboxAppend<P>>>>,
    /// Ids this process NAK'd (their handlers failed): a store duplicate of
    /// one is a retry of ours and goes to the bus again.
    pub(super) retried_here: Arc<Mutex<HashSet<EventId>>>,
    pub(super) stop: Arc<AtomicBool>,
    /// With dedup: the event ids on the bus now, and the token of the
    /// delivery that put each there (shared with the worker, which removes an
    /// id when that delivery settles — after a success, only once the id is
    /// in the window).
    pub(super) on_bus: Option<Arc<Mutex<HashMap<EventId, u64>>>>,
}

impl<P: DeserializeOwned + Clone + Send + Sync + 'static> Feeder<P> {
    pub(super) fn run(mut self) {
        while let Ok(feeds) = self.rx.recv() {
            for feed in feeds {
                if let Some(ev) = self.feed(feed) {
                    if self.tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one message; `Some` is what the worker hears now (`None`: it
    /// hears from the delivery's `on_done`).
    fn feed(&mut self, feed: Feed) -> Option<Ev> {
        let token = feed.token;
        let event = match wire::decode::<P>(
            feed.headers.as_deref(),
            &feed.body,
            self.upcasters.as_deref(),
        ) {
            Ok(event) => event,
            Err(error) => return Some(Ev::Undecodable { token, error }),
        };
        // On the bus first, then the window: the worker puts a completed id
        // into the window before it takes it off the bus, so one of the two
        // sees it.
        if let Some(on_bus) = &self.on_bus {
            if let Some(&leader) = lock(on_bus).get(&event.id) {
                return Some(Ev::Follow {
                    token,
                    leader,
                    id: event.id,
                });
            }
        }
        if let Some(w) = &self.window {
            if lock(w).contains(event.id) {
                return Some(Ev::Dropped { token });
            }
        }
        if self.stop.load(AtomicOrdering::Acquire) {
            return Some(Ev::NotPublished {
                token,
                closed: false,
            });
        }
        if let Some(inbox) = &self.inbox {
            match inbox(&event) {
                Ok(true) if !lock(&self.retried_here).contains(&event.id) => {
                    return Some(Ev::Dropped { token });
                }
                Ok(_) => {}
                Err(error) => return Some(Ev::InboxFailed { token, error }),
            }
        }
        let id = event.id;
        if let Some(on_bus) = &self.on_bus {
            lock(on_bus).insert(id, token);
        }
        match self.publisher.publish_tracked(event) {
            Ok(delivery) => {
                let tx = self.tx.clone();
                delivery.on_done(move |outcome| {
                    let _ = tx.send(Ev::Done { token, id, outcome });
                });
                None
            }
            Err(_) => {
                if let Some(on_bus) = &self.on_bus {
                    lock(on_bus).remove(&id);
                }
                Some(Ev::NotPublished {
                    token,
                    closed: true,
                })
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
