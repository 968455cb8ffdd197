//! The outbox mode (issue 13, O7): committed store events → JetStream, with a
//! checkpoint that only moves past events the server has acked.
//!
//! A reader thread (`ringbus-outbox-<name>`) tails the store through the
//! [`EventStore`] trait — [`read_all`](EventStore::read_all) in pages from the
//! checkpoint + 1, [`wait_past`](EventStore::wait_past) at the head — encodes
//! each event whose type matches the filter and hands it to the same publish
//! pipeline as the bus mode (see [`outbound`](super::outbound)), with its store
//! position as the item's key. The pipeline's settled prefix gives the
//! checkpoint: the highest position *p* with every position ≤ *p* acked (or
//! passed over by the filter). The reader saves it to the [`CheckpointStore`]
//! at most every [`SAVE_EVERY`] while it moves, and once more at the stop.
//!
//! After a crash the next run starts at the saved checkpoint + 1: events the
//! server acked after the last save are published again, and dropped by the
//! server as duplicates if they are still inside the stream's
//! `duplicate_window` (older ones reach consumers again: inbound dedup catches
//! them). So every store event is in JetStream at least once, and exactly once
//! when a restart comes within the duplicate window.
//!
//! A publish is never given up here (there is no dead-letter queue to put it
//! in, and skipping it would break the guarantee): it is retried with the
//! [`retry`](super::OutboundOptions::retry) policy's delays, the last one over
//! and over once its attempts are spent, until it is acked or the path stops.
//! An event that cannot be encoded is the one exception: it can never be
//! published, so it is counted as failed and passed over.
//!
//! We chose a thread that reads the store over a
//! [`CatchUp`](crate::store::CatchUp) subscription: a catch-up subscription
//! needs a bus for its live phase and saves its checkpoint once its handler
//! returns, while the outbox's checkpoint must wait for the server's acks,
//! which arrive out of order on another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use super::outbound::{check_options, start_pump, Item, Msg, OutboundHandle, Shared};
use super::{wire, BridgeError, NatsBridge, OutboundOptions};
use crate::dispatch::{IntoPatterns, Pattern};
use crate::store::checkpoint::CheckpointStore;
use crate::store::{EventStore, Position};

/// Events read from the store at a time.
const PAGE: usize = 512;
/// How often, at most, the reader saves a moving checkpoint.
pub const SAVE_EVERY: Duration = Duration::from_millis(100);
/// How long the reader waits at the head before it looks at its stop flag and
/// the checkpoint again.
const IDLE: Duration = Duration::from_millis(50);

impl NatsBridge {
    /// **\[store\]** Committed store events of the types matching `filter` →
    /// JetStream, checkpointed (O7): at least once across crashes of this
    /// process.
    ///
    /// A thread reads `store` from the checkpoint saved under `name` in
    /// `checkpoints` (+ 1; from position 0 without one), in position order,
    /// and publishes through the same pipeline as
    /// [`outbound`](NatsBridge::outbound) (subjects, headers, encoding,
    /// `max_in_flight`, the queue, retries with the same `Nats-Msg-Id`). The
    /// checkpoint is the highest position *p* with every position ≤ *p* acked
    /// by JetStream (positions the filter passes over count as done); it is
    /// saved at most every [`SAVE_EVERY`] while it moves and once more by
    /// [`OutboundHandle::stop`] (or the bridge's shutdown). After a crash the
    /// next run republishes from *p* + 1; the server drops the duplicates it
    /// still remembers (its `duplicate_window`), inbound dedup the older ones.
    ///
    /// Publishes are never given up (retried at the retry policy's last delay
    /// once its attempts are spent): the checkpoint cannot pass an unpublished
    /// event. An event that cannot be encoded is counted as failed and passed
    /// over. Order in the stream is as in bus mode (see
    /// [`outbound`](NatsBridge::outbound)), with the event's subject — its
    /// stream id — as the ordering key.
    ///
    /// `store` is taken by value: pass an `Arc<FileStore<P>>` (a shared store
    /// is a store) to keep using it. The sketch took `&S`; the reader
    /// thread needs to own it.
    ///
    /// # Errors
    /// [`BridgeError::Config`] for options that cannot work, invalid filter
    /// patterns, or a checkpoint that cannot be loaded (the I/O error's text);
    /// [`BridgeError::Closed`] after the bridge's shutdown began.
    pub fn outbound_from_store<P, S, C>(
        &self,
        store: S,
        name: &str,
        filter: impl IntoPatterns,
        checkpoints: C,
        o: OutboundOptions,
    ) -> Result<OutboundHandle, BridgeError>
    where
        P: Serialize + Send + Sync + 'static,
        S: EventStore<P>,
        C: CheckpointStore + Send + Sync + 'static,
    {
        check_options(&o)?;
        if self.core.is_closed() {
            return Err(BridgeError::Closed);
        }
        let filter = filter
            .into_patterns()
            .map_err(|e| BridgeError::Config(format!("outbox filter: {e}")))?;
        let checkpoints = Arc::new(checkpoints);
        let start = checkpoints
            .load(name)
            .map_err(|e| BridgeError::Config(format!("cannot load checkpoint {name:?}: {e}")))?;
        let shared = Arc::new(Shared::new(format!("outbox:{name}"), true));
        if let Some(p) = start {
            // The checkpoint as it stands, before anything new is settled.
            shared.settled_key.store(p.0 + 1, Ordering::Release);
        }
        let (tx, rx) = mpsc::channel::<Item<()>>(o.queue);
        let path = start_pump(&self.core, &o, &shared, rx, None);

        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            store,
            filter,
            tx,
            shared: shared.clone(),
            encoding: self.core.encoding,
            prefix: self.core.prefix.clone(),
            next: start.map_or(0, |p| p.0 + 1),
            stop: stop.clone(),
            saver: Saver {
                checkpoints: checkpoints.clone(),
                name: name.to_owned(),
                saved: start.map(|p| p.0),
                at: Instant::now(),
            },
            _payload: std::marker::PhantomData,
        };
        let thread = thread::Builder::new()
            .name(format!("ringbus-outbox-{name}"))
            .spawn(move || reader.run())
            .map_err(|e| BridgeError::Config(format!("cannot start the outbox thread: {e}")))?;
        path.set_detach(Box::new(move || {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }));
        let mut last = Saver {
            checkpoints,
            name: name.to_owned(),
            saved: None,
            at: Instant::now(),
        };
        let after = shared.clone();
        path.set_after(Box::new(move || last.save(&after, true)));
        if let Err(e) = self.core.register(path.clone()) {
            use super::bridge::Part as _;
            path.shutdown();
            return Err(e);
        }
        Ok(OutboundHandle { path })
    }
}

/// Saves the checkpoint when it moved.
struct Saver<C> {
    checkpoints: Arc<C>,
    name: String,
    saved: Option<u64>,
    at: Instant,
}

impl<C: CheckpointStore> Saver<C> {
    /// Saves the pipeline's checkpoint if it moved (and, unless `now`,
    /// [`SAVE_EVERY`] has passed since the last save). A failed save is the
    /// path's last error; the next one tries again.
    fn save(&mut self, shared: &Shared, now: bool) {
        let Some(p) = shared.checkpoint() else { return };
        if self.saved.is_some_and(|s| s >= p) || (!now && self.at.elapsed() < SAVE_EVERY) {
            return;
        }
        self.at = Instant::now();
        match self.checkpoints.save(&self.name, Position(p)) {
            Ok(()) => self.saved = Some(p),
            Err(e) => shared.set_error(format!("cannot save checkpoint {:?}: {e}", self.name)),
        }
    }
}

/// What an item in the outbox's queue is.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Kind {
    /// An event to publish.
    Event,
    /// An event that cannot be encoded: passed over, counted as failed.
    Failed,
    /// Filtered positions at the end of a page: only moves the checkpoint.
    Marker,
}

struct Reader<P, S, C> {
    store: S,
    filter: Vec<Pattern>,
    tx: mpsc::Sender<Item<()>>,
    shared: Arc<Shared>,
    encoding: super::WireEncoding,
    prefix: String,
    /// The next position to read.
    next: u64,
    stop: Arc<AtomicBool>,
    saver: Saver<C>,
    _payload: std::marker::PhantomData<fn() -> P>,
}

impl<P: Serialize, S: EventStore<P>, C: CheckpointStore> Reader<P, S, C> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let mut subjects = std::collections::HashMap::new();
        while !self.stopped() {
            self.saver.save(&self.shared, false);
            let page = match self.store.read_all(Position(self.next), PAGE) {
                Ok(page) => page,
                Err(e) => {
                    self.shared
                        .set_error(format!("cannot read the store at {}: {e}", self.next));
                    thread::sleep(IDLE);
                    continue;
                }
            };
            if page.is_empty() {
                let after = self.next.checked_sub(1).map(Position);
                self.store.wait_past(after, IDLE);
                continue;
            }
            let mut filtered_tail = None;
            for r in page {
                let position = r.position.0;
                self.next = position + 1;
                let e = &r.event;
                if !self.filter.iter().any(|p| p.matches(e.event_type.name())) {
                    filtered_tail = Some((position, e.event_type, e.id));
                    continue;
                }
                filtered_tail = None;
                let msg = match wire::encode(e, self.encoding) {
                    Ok((headers, body)) => {
                        let prefix = &self.prefix;
                        let subject: &async_nats::Subject =
                            subjects.entry(e.event_type).or_insert_with(|| {
                                format!("{prefix}.ev.{}", e.event_type.name()).into()
                            });
                        Some(Msg {
                            subject: subject.clone(),
                            headers: Some(headers),
                            body,
                        })
                    }
                    Err(why) => {
                        self.shared.set_error(format!(
                            "cannot encode the event at position {position}: {why}"
                        ));
                        None
                    }
                };
                let kind = if msg.is_some() {
                    Kind::Event
                } else {
                    Kind::Failed
                };
                let order = e.subject.as_ref().map_or(0, |s| s.partition_hash());
                let item = Item::new(0, position, order, e.event_type, e.id, msg, ());
                if !self.send(item, kind) {
                    return;
                }
            }
            if let Some((position, event_type, id)) = filtered_tail {
                // Moves the checkpoint past the filtered events at the end of
                // the page, once everything before them is settled.
                let item = Item::new(0, position, 0, event_type, id, None, ());
                if !self.send(item, Kind::Marker) {
                    return;
                }
            }
        }
    }

    /// Puts `item` into the queue, waiting for room; `false` if stopped first
    /// (or the pipeline is gone).
    fn send(&mut self, mut item: Item<()>, kind: Kind) -> bool {
        let mut wait = Duration::from_micros(200);
        loop {
            match self.tx.try_reserve() {
                Ok(permit) => {
                    // Numbered once it has its place: the numbers stay dense.
                    item.seq = self.shared.next_item(kind == Kind::Event);
                    if kind == Kind::Failed {
                        self.shared.record_failure(item.seq);
                    }
                    permit.send(item);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return false,
                Err(mpsc::error::TrySendError::Full(())) => {
                    if self.stopped() {
                        return false;
                    }
                    self.saver.save(&self.shared, false);
                    thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(10));
                }
            }
        }
    }
}
