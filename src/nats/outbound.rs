//! Local events → JetStream (issue 13, O1–O7): the publish pipeline both
//! outbound modes share, and the bus mode ([`NatsBridge::outbound`]).
//!
//! # The pipeline
//! ```text
//! bus handler (bus threads)              runtime thread (`ringbus-nats`)
//!   encode, try_reserve ──bounded queue──▶ pump: up to max_in_flight publishes
//!   full → transient error                   ack ok/duplicate → settled
//!   (the bus's retry holds it)               error/timeout → retry (same Nats-Msg-Id)
//!                                            exhausted → the bus's dead-letter queue
//! ```
//! The producer side (a bus handler, or the outbox's reader thread) encodes the
//! event and puts it into a bounded `tokio::sync::mpsc` channel of
//! [`OutboundOptions::queue`] items; it numbers the items it puts in (`seq`,
//! dense from 0). The pump, one task on the bridge's runtime, takes up to
//! `max_in_flight` items out at a time (a batch per wake-up), publishes each
//! (`send_publish`, then its ack), and settles them. Sends happen in the order
//! items arrive (a `FuturesUnordered` polls new futures first in push order,
//! and the client's command channel is FIFO), so without failures the stream
//! holds them in queue order.
//!
//! **The ledger.** The pump keeps one small entry per item taken out and not
//! yet settled below the lowest unsettled one (`VecDeque`, indexed by
//! `seq - base`): whether it is settled, whether it was sent, its event id and
//! type (for the shutdown report), and its key (the store position in outbox
//! mode). `settled` = the number of items all settled from the start; the
//! outbox's checkpoint is the key of the last of them. Both are published as
//! atomics for [`OutboundHandle::flush`] and the outbox's checkpoint saver.
//!
//! **Order across retries ("lanes").** JetStream stores messages in the order
//! publishes reach it, so a publish that fails and is retried lands after the
//! later ones that succeeded meanwhile. To keep the damage small, the pump
//! holds the event's subject (its [`Subject`](crate::Subject), the bus's
//! ordering key; events without one share a key) while one of its events waits
//! for a retry: later events of that subject that were not yet sent wait
//! behind it, and from then on that subject's events go one at a time, in
//! order, until its backlog is empty; other subjects go on at full speed. Events
//! of the subject that were already in flight when the failure happened are
//! not held back (they may be stored before the retried one); with
//! `max_in_flight = 1` nothing ever is, and the stream keeps the exact order,
//! at one round trip per event.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishError, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::bridge::{Core, Part, PartMetrics};
use super::metrics::{PartReport, Unacked};
use super::{wire, BridgeError, NatsBridge, OutboundOptions, WireEncoding};
use crate::bus::{Bus, ProducerMode, SubscribeOptions};
use crate::codec;
use crate::dispatch::IntoPatterns;
use crate::event::{Event, EventId, EventType};
use crate::outcome::{FailureReason, HandlerError, SubscriptionId};
use crate::pattern::named;
use crate::resilience::{Attempt, DeadLetterQueue, DlqTryPushError, RetryPolicy};

/// The text of the transient error the bridge's bus handler fails an event
/// with when the outbound queue is full (the bus's retry then holds it).
pub(crate) const QUEUE_FULL: &str = "nats outbound full";

// ---- the public face --------------------------------------------------------

/// One outbound path's counters ([`OutboundHandle::metrics`], and in
/// [`BridgeMetrics::outbound`](super::BridgeMetrics::outbound)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboundMetrics {
    /// `outbound:<patterns>` (or the name given with
    /// [`named`](crate::pattern::named)) or `outbox:<name>`.
    pub name: String,
    /// Events accepted into the outbound queue.
    pub accepted: u64,
    /// Events acked by the server (stored, or reported as duplicates).
    pub published: u64,
    /// Of `published`, those the server reported as duplicates (an id seen
    /// within the stream's duplicate window).
    pub duplicates: u64,
    /// Publishes tried again after an error or a timeout.
    pub retries: u64,
    /// Events given up after the last attempt (bus mode: sent to the bus's
    /// dead-letter queue).
    pub failed: u64,
    /// Events the bus handler turned away because the queue was full (each
    /// rejection counts; the bus retries the event).
    pub queue_full: u64,
    /// Events taken out of the queue and not yet settled: publishes awaiting
    /// their ack, waiting for a retry, or held behind one of their subject.
    pub in_flight: u64,
    /// Events in the queue, not yet taken out.
    pub queue_depth: u64,
    /// The last publish error, if any.
    pub last_error: Option<String>,
    /// Outbox mode: the checkpoint, the highest store position with every
    /// position up to it acked (`None` before the first, and in bus mode).
    pub checkpoint: Option<u64>,
}

impl OutboundMetrics {
    pub(crate) fn write_prometheus(&self, out: &mut String) {
        let name = self.name.replace('\\', "\\\\").replace('"', "\\\"");
        for (metric, kind, help, v) in [
            (
                "accepted_total",
                "counter",
                "events accepted",
                self.accepted,
            ),
            ("published_total", "counter", "events acked", self.published),
            (
                "duplicates_total",
                "counter",
                "acks that were duplicates",
                self.duplicates,
            ),
            (
                "retries_total",
                "counter",
                "publishes retried",
                self.retries,
            ),
            ("failed_total", "counter", "events given up", self.failed),
            (
                "queue_full_total",
                "counter",
                "events turned away",
                self.queue_full,
            ),
            (
                "in_flight",
                "gauge",
                "events taken and not settled",
                self.in_flight,
            ),
            ("queue_depth", "gauge", "events queued", self.queue_depth),
        ] {
            let _ = writeln!(
                out,
                "# HELP ringbus_nats_outbound_{metric} Outbound {help}.\n\
                 # TYPE ringbus_nats_outbound_{metric} {kind}\n\
                 ringbus_nats_outbound_{metric}{{name=\"{name}\"}} {v}"
            );
        }
        if let Some(c) = self.checkpoint {
            let _ = writeln!(
                out,
                "# TYPE ringbus_nats_outbound_checkpoint gauge\n\
                 ringbus_nats_outbound_checkpoint{{name=\"{name}\"}} {c}"
            );
        }
    }
}

/// A running outbound path: [`NatsBridge::outbound`] or
/// [`NatsBridge::outbound_from_store`].
///
/// Dropping the handle leaves the path running until the bridge shuts down
/// ([`NatsBridge::shutdown`] stops it like [`stop`](OutboundHandle::stop)).
pub struct OutboundHandle {
    pub(crate) path: Arc<OutboundPath>,
}

impl fmt::Debug for OutboundHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundHandle")
            .field("name", &self.path.shared.name)
            .finish_non_exhaustive()
    }
}

impl OutboundHandle {
    /// Its counters now.
    pub fn metrics(&self) -> OutboundMetrics {
        self.path.shared.metrics()
    }

    /// Waits until every event accepted before this call has been acked by the
    /// server or given up, at most `timeout`. `true` if all of them were
    /// acked; `false` on the timeout, or if one of them was given up
    /// ([`OutboundMetrics::failed`]).
    ///
    /// Bus mode: "accepted" means taken by the bridge's handler. Events still
    /// on the bus, or held in the bus's retry because the queue was full, are
    /// not covered: call [`Bus::flush`] first (it returns once the handler has
    /// taken them). Outbox mode: the events read from the store so far.
    ///
    /// Call it on a user's thread, not on a bus handler's (it blocks).
    pub fn flush(&self, timeout: Duration) -> bool {
        let s = &self.path.shared;
        let target = s.next_seq.load(Ordering::Acquire);
        let deadline = Instant::now().checked_add(timeout);
        let done = || s.settled.load(Ordering::SeqCst) >= target;
        if !done() {
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                // Asks the pump to notify once `settled` reaches the target
                // (the lowest target of all waiting flushes), then checks:
                // SeqCst on both sides, so either the pump sees the request
                // or this sees the pump's progress.
                s.wake_at.fetch_min(target, Ordering::SeqCst);
                if done() {
                    break;
                }
                let left = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left,
                        _ => break,
                    },
                    None => Duration::from_secs(3600),
                };
                // Bounded anyway: a pump that is gone cannot notify.
                let step = left.min(Duration::from_millis(50));
                guard = s
                    .changed
                    .wait_timeout(guard, step)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(guard);
        }
        done() && s.first_failed.load(Ordering::Acquire) >= target
    }

    /// Stops the path: leaves the bus (bus mode; events the bus still held for
    /// a retry because the queue was full go to the bus's dead-letter queue, as
    /// for any unsubscribed handler) or stops reading the store (outbox mode),
    /// then waits up to [`OutboundOptions::publish_timeout`] for the events in
    /// the queue and in flight to be acked. The report lists those that were
    /// not (`"not published"`: still queued; `"publish not acked"`: sent, no
    /// ack yet). Outbox mode saves the final checkpoint.
    ///
    /// Blocks; call it on a user's thread. A second stop (or the bridge's
    /// shutdown after this) reports nothing.
    pub fn stop(self) -> PartReport {
        self.path.shutdown()
    }
}

// ---- the shared state ---------------------------------------------------------

/// What the producer side, the pump and the handle share. Counters are
/// statistics (Relaxed) except `next_seq`, `settled` and `first_failed`, which
/// [`OutboundHandle::flush`] relies on (Release by their writers, Acquire by
/// the flush).
pub(crate) struct Shared {
    pub(crate) name: String,
    /// Items put into the queue so far (events, and outbox markers); the next
    /// item's `seq`.
    pub(crate) next_seq: AtomicU64,
    /// Items `0 .. settled` are all settled (acked, given up, or markers).
    pub(crate) settled: AtomicU64,
    /// The key of item `settled - 1`, plus one (0: none yet): the outbox's
    /// checkpoint position + 1.
    pub(crate) settled_key: AtomicU64,
    /// The lowest `seq` given up (`u64::MAX`: none).
    first_failed: AtomicU64,
    accepted: AtomicU64,
    taken: AtomicU64,
    published: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    in_flight: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The lowest `settled` a waiting flush needs (`u64::MAX`: none waits);
    /// the pump notifies `changed` once `settled` reaches it, then resets it.
    wake_at: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
    /// Outbox mode: whether the metrics carry a checkpoint.
    has_checkpoint: bool,
}

impl Shared {
    pub(crate) fn new(name: String, has_checkpoint: bool) -> Self {
        Shared {
            name,
            next_seq: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            settled_key: AtomicU64::new(0),
            first_failed: AtomicU64::new(u64::MAX),
            accepted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_error: Mutex::new(None),
            wake_at: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
            changed: Condvar::new(),
            has_checkpoint,
        }
    }

    /// Numbers the next item; counts it as accepted when it is an event.
    pub(crate) fn next_item(&self, event: bool) -> u64 {
        if event {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        self.next_seq.fetch_add(1, Ordering::AcqRel)
    }

    /// Records `error` as the last error.
    pub(crate) fn set_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Counts item `seq` as given up.
    pub(crate) fn record_failure(&self, seq: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_failed.fetch_min(seq, Ordering::AcqRel);
    }

    /// The outbox's checkpoint: the key of the last item of the settled prefix.
    pub(crate) fn checkpoint(&self) -> Option<u64> {
        self.settled_key.load(Ordering::Acquire).checked_sub(1)
    }

    pub(crate) fn metrics(&self) -> OutboundMetrics {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let seqs = self.next_seq.load(Ordering::Relaxed);
        let taken = self.taken.load(Ordering::Relaxed);
        OutboundMetrics {
            name: self.name.clone(),
            accepted,
            published: self.published.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queue_depth: seqs.saturating_sub(taken),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            checkpoint: if self.has_checkpoint {
                self.checkpoint()
            } else {
                None
            },
        }
    }
}

// ---- items ----------------------------------------------------------------------

/// One event on its way out (or, with `msg: None`, a marker that only moves
/// the outbox's checkpoint past filtered positions).
pub(crate) struct Item<X> {
    /// Dense from 0 per path, in queue order.
    pub(crate) seq: u64,
    /// The outbox's store position (bus mode: unused).
    pub(crate) key: u64,
    /// The ordering key: the event subject's partition hash (0 without one).
    pub(crate) order: u64,
    pub(crate) id: EventId,
    pub(crate) event_type: EventType,
    pub(crate) msg: Option<Msg>,
    /// What the give-up callback needs (bus mode: the event).
    pub(crate) extra: X,
    attempts: Vec<Attempt>,
    not_before: Option<Instant>,
    /// Whether it is its lane's active item.
    lane_head: bool,
}

/// A message to publish.
pub(crate) struct Msg {
    pub(crate) subject: async_nats::Subject,
    /// Handed to the first publish; rebuilt for a retry.
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) body: Bytes,
}

impl<X> Item<X> {
    pub(crate) fn new(
        seq: u64,
        key: u64,
        order: u64,
        event_type: EventType,
        id: EventId,
        msg: Option<Msg>,
        extra: X,
    ) -> Self {
        Item {
            seq,
            key,
            order,
            id,
            event_type,
            msg,
            extra,
            attempts: Vec::new(),
            not_before: None,
            lane_head: false,
        }
    }
}

/// Gives up on an item after its last attempt (bus mode: the bus's
/// dead-letter queue). `None` in outbox mode: retried until acked.
pub(crate) type GiveUp<X> = Box<dyn FnMut(Item<X>) + Send>;

// ---- the pump -------------------------------------------------------------------

type SendFuture = Pin<
    Box<dyn Future<Output = Result<jetstream::context::PublishAckFuture, PublishError>> + Send>,
>;

/// A sent publish waiting for its ack, with its item.
struct AckWait<X> {
    item: Option<Item<X>>,
    ack: Pin<Box<dyn Future<Output = Result<jetstream::publish::PublishAck, PublishError>> + Send>>,
}

// The item is only ever moved out whole, never pinned in place.
impl<X> Unpin for AckWait<X> {}

impl<X> Future for AckWait<X> {
    type Output = (Item<X>, Result<bool, PublishError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.ack.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready((
                this.item.take().expect("polled after completion"),
                r.map(|a| a.duplicate),
            )),
        }
    }
}
type Timer<X> = Pin<Box<dyn Future<Output = Item<X>> + Send>>;

/// One item taken out of the queue, until the settled prefix passes it.
struct Entry {
    key: u64,
    id: EventId,
    event_type: EventType,
    sent: bool,
    done: bool,
}

/// The events of one subject, one at a time, while one of them waits for a
/// retry.
struct Lane<X> {
    /// Whether an item of this lane is in flight or waiting on its timer.
    active: bool,
    /// Waiting, in `seq` order.
    queue: VecDeque<Item<X>>,
}

impl<X> Default for Lane<X> {
    fn default() -> Self {
        Lane {
            active: false,
            queue: VecDeque::new(),
        }
    }
}

/// How the pump is told to stop: by when it must have finished.
pub(crate) type StopSignal = oneshot::Sender<Instant>;

/// Starts the pump of one outbound path on the bridge's runtime, reading
/// `rx`; returns the path's end (stop, report) for its handle.
pub(crate) fn start_pump<X: Send + 'static>(
    core: &Core,
    o: &OutboundOptions,
    shared: &Arc<Shared>,
    rx: mpsc::Receiver<Item<X>>,
    give_up: Option<GiveUp<X>>,
) -> Arc<OutboundPath> {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (report_tx, report_rx) = std::sync::mpsc::sync_channel(1);
    Pump {
        shared: shared.clone(),
        js: publish_context(core, o),
        encoding: core.encoding,
        prefix: core.prefix.clone(),
        rx,
        max_in_flight: o.max_in_flight,
        retry: o.retry.clone(),
        give_up,
        stop: stop_rx,
        report: report_tx,
    }
    .spawn(&core.rt);
    Arc::new(OutboundPath::new(
        shared.clone(),
        o.publish_timeout,
        stop_tx,
        report_rx,
    ))
}

pub(crate) struct Pump<X> {
    pub(crate) shared: Arc<Shared>,
    /// Shared by the send futures (a `Context` clone allocates).
    pub(crate) js: Arc<jetstream::Context>,
    pub(crate) encoding: WireEncoding,
    pub(crate) prefix: String,
    pub(crate) rx: mpsc::Receiver<Item<X>>,
    pub(crate) max_in_flight: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) give_up: Option<GiveUp<X>>,
    pub(crate) stop: oneshot::Receiver<Instant>,
    /// A std channel: the handle waits on it without a runtime (and
    /// inside someone else's, where tokio's `blocking_recv` would panic).
    pub(crate) report: std::sync::mpsc::SyncSender<PartReport>,
}

struct Running<X> {
    p: Pump<X>,
    rx_open: bool,
    /// Items taken out and not settled.
    slots: usize,
    acks: FuturesUnordered<AckWait<X>>,
    /// Publishes to hand to the client, in order.
    to_send: VecDeque<Item<X>>,
    /// The one being handed over.
    sending: Option<(Item<X>, SendFuture)>,
    timers: FuturesUnordered<Timer<X>>,
    lanes: HashMap<u64, Lane<X>, ahash::RandomState>,
    ledger: VecDeque<Entry>,
    /// The `seq` of `ledger[0]`.
    base: u64,
    buf: Vec<Item<X>>,
    rng: u64,
    started: Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    stop_open: bool,
}

impl<X: Send + 'static> Pump<X> {
    /// Spawns the pump on the bridge's runtime.
    pub(crate) fn spawn(self, rt: &tokio::runtime::Handle) {
        let rng = 0x9E37_79B9_7F4A_7C15 ^ (Arc::as_ptr(&self.shared) as u64);
        let max = self.max_in_flight;
        let mut r = Running {
            p: self,
            rx_open: true,
            slots: 0,
            acks: FuturesUnordered::new(),
            to_send: VecDeque::new(),
            sending: None,
            timers: FuturesUnordered::new(),
            lanes: HashMap::default(),
            ledger: VecDeque::with_capacity(max),
            base: 0,
            buf: Vec::with_capacity(max.min(1024)),
            rng,
            started: Instant::now(),
            deadline: None,
            stop_open: true,
        };
        rt.spawn(async move {
            std::future::poll_fn(|cx| r.poll(cx)).await;
            let report = r.report();
            let Running { p, .. } = r;
            let _ = p.report.try_send(report);
        });
    }
}

impl<X: Send + 'static> Running<X> {
    /// Drives everything; `Ready` once stopped and drained, or at the deadline.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progress = false;
            while let Poll::Ready(Some((item, result))) = self.acks.poll_next_unpin(cx) {
                self.on_result(item, result);
                progress = true;
            }
            while let Poll::Ready(Some(item)) = self.timers.poll_next_unpin(cx) {
                self.send(item);
                progress = true;
            }
            while self.rx_open && self.slots < self.p.max_in_flight {
                let room = self.p.max_in_flight - self.slots;
                let mut buf = std::mem::take(&mut self.buf);
                match self.p.rx.poll_recv_many(cx, &mut buf, room) {
                    Poll::Ready(0) => self.rx_open = false,
                    Poll::Ready(n) => {
                        self.p.shared.taken.fetch_add(n as u64, Ordering::Relaxed);
                        for item in buf.drain(..) {
                            self.take(item);
                        }
                        progress = true;
                    }
                    Poll::Pending => {
                        self.buf = buf;
                        break;
                    }
                }
                self.buf = buf;
            }
            progress |= self.drive_sends(cx);
            if self.stop_open {
                if let Poll::Ready(r) = Pin::new(&mut self.p.stop).poll(cx) {
                    self.stop_open = false;
                    // A dropped sender (the handle gone without a stop) is not
                    // a stop: the bridge's shutdown sends one.
                    // The queue closes when the producer side has left (the
                    // bus subscription removed, the outbox reader stopped).
                    if let Ok(at) = r {
                        self.deadline = Some(Box::pin(tokio::time::sleep_until(at.into())));
                    }
                    progress = true;
                }
            }
            if let Some(deadline) = &mut self.deadline {
                if !self.rx_open && self.slots == 0 {
                    return Poll::Ready(());
                }
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// An item taken out of the queue.
    fn take(&mut self, item: Item<X>) {
        debug_assert_eq!(item.seq, self.base + self.ledger.len() as u64);
        self.ledger.push_back(Entry {
            key: item.key,
            id: item.id,
            event_type: item.event_type,
            sent: false,
            done: false,
        });
        if item.msg.is_none() {
            self.settle(item.seq);
            return;
        }
        self.slots += 1;
        self.p
            .shared
            .in_flight
            .store(self.slots as u64, Ordering::Relaxed);
        match self.lanes.get_mut(&item.order) {
            Some(lane) => lane.queue.push_back(item),
            None => self.send(item),
        }
    }

    /// Queues `item` to be published (again). Sends go out one after the
    /// other, in this order (see [`Running::drive_sends`]).
    fn send(&mut self, item: Item<X>) {
        if let Some(e) = self.ledger.get_mut((item.seq - self.base) as usize) {
            e.sent = true;
        }
        self.to_send.push_back(item);
    }

    /// Hands the queued publishes to the client one at a time, so that they
    /// reach its command channel (and the server) in queue order; each one's
    /// ack is then awaited among the others. `true` if anything moved.
    fn drive_sends(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if self.sending.is_none() {
                let Some(mut item) = self.to_send.pop_front() else {
                    return progress;
                };
                let js = self.p.js.clone();
                let msg = item.msg.as_mut().expect("a marker is never sent");
                let headers = msg
                    .headers
                    .take()
                    .unwrap_or_else(|| wire::headers(item.id, self.p.encoding));
                let publish = PublishMessage::build()
                    .payload(msg.body.clone())
                    .headers(headers);
                let subject = msg.subject.clone();
                let fut: SendFuture =
                    Box::pin(async move { js.send_publish(subject, publish).await });
                self.sending = Some((item, fut));
            }
            let (_, fut) = self.sending.as_mut().expect("set above");
            match fut.as_mut().poll(cx) {
                Poll::Pending => return progress,
                Poll::Ready(result) => {
                    let (item, _) = self.sending.take().expect("set above");
                    progress = true;
                    match result {
                        Ok(ack) => self.acks.push(AckWait {
                            item: Some(item),
                            ack: ack.into_future(),
                        }),
                        Err(e) => self.on_result(item, Err(e)),
                    }
                }
            }
        }
    }

    fn on_result(&mut self, mut item: Item<X>, result: Result<bool, PublishError>) {
        let shared = self.p.shared.clone();
        match result {
            Ok(duplicate) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
                if duplicate {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                self.finish(item);
            }
            Err(e) => {
                let error = e.to_string();
                shared.set_error(error.clone());
                let reason = FailureReason::Error(HandlerError::transient(error));
                item.attempts
                    .push(Attempt::new(self.started.elapsed(), &reason));
                let made = u32::try_from(item.attempts.len()).unwrap_or(u32::MAX);
                let delay = match self.p.give_up {
                    Some(_) => self.p.retry.next_delay(made, &reason, &mut self.rng),
                    // Never given up: the policy's delays, its last one once
                    // its attempts are spent.
                    None => Some(
                        self.p
                            .retry
                            .next_delay(made, &reason, &mut self.rng)
                            .unwrap_or_else(|| {
                                self.p
                                    .retry
                                    .base_delay(self.p.retry.max_attempts().saturating_sub(1))
                            }),
                    ),
                };
                match delay {
                    None => {
                        shared.record_failure(item.seq);
                        let (seq, order, head) = (item.seq, item.order, item.lane_head);
                        if let Some(give_up) = &mut self.p.give_up {
                            give_up(item);
                        }
                        self.settled_one(seq, order, head);
                    }
                    Some(d) => {
                        shared.retries.fetch_add(1, Ordering::Relaxed);
                        item.not_before = Some(Instant::now() + d);
                        let lane = self.lanes.entry(item.order).or_default();
                        if item.lane_head || !lane.active {
                            lane.active = true;
                            item.lane_head = true;
                            self.arm(item);
                        } else {
                            let at = lane.queue.partition_point(|i| i.seq < item.seq);
                            lane.queue.insert(at, item);
                        }
                    }
                }
            }
        }
    }

    /// Sends `item` now or on its timer.
    fn arm(&mut self, item: Item<X>) {
        match item.not_before {
            Some(at) if at > Instant::now() => {
                self.timers.push(Box::pin(async move {
                    tokio::time::sleep_until(at.into()).await;
                    item
                }));
            }
            _ => self.send(item),
        }
    }

    /// An acked item.
    fn finish(&mut self, item: Item<X>) {
        self.settled_one(item.seq, item.order, item.lane_head);
    }

    /// Settles `seq` and, if it headed its lane, lets the lane's next go.
    fn settled_one(&mut self, seq: u64, order: u64, lane_head: bool) {
        self.slots -= 1;
        self.p
            .shared
            .in_flight
            .store(self.slots as u64, Ordering::Relaxed);
        self.settle(seq);
        if lane_head {
            let next = match self.lanes.get_mut(&order) {
                Some(lane) => match lane.queue.pop_front() {
                    Some(next) => Some(next),
                    None => {
                        self.lanes.remove(&order);
                        None
                    }
                },
                None => None,
            };
            if let Some(mut next) = next {
                next.lane_head = true;
                self.arm(next);
            }
        }
    }

    /// Marks `seq` settled and moves the settled prefix.
    fn settle(&mut self, seq: u64) {
        let i = (seq - self.base) as usize;
        self.ledger[i].done = true;
        if i != 0 {
            return;
        }
        let mut last = None;
        while self.ledger.front().is_some_and(|e| e.done) {
            last = self.ledger.pop_front().map(|e| e.key);
            self.base += 1;
        }
        let shared = &self.p.shared;
        if let Some(key) = last {
            shared.settled_key.store(key + 1, Ordering::Release);
        }
        shared.settled.store(self.base, Ordering::SeqCst);
        if shared.wake_at.load(Ordering::SeqCst) <= self.base {
            shared.wake_at.store(u64::MAX, Ordering::SeqCst);
            let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.changed.notify_all();
        }
    }

    /// What is left: every unsettled item, and what is still in the queue.
    fn report(&mut self) -> PartReport {
        let prefix = self.p.prefix.clone();
        let subject = |t: EventType| format!("{prefix}.ev.{}", t.name());
        let mut unacked: Vec<Unacked> = self
            .ledger
            .iter()
            .filter(|e| !e.done)
            .map(|e| Unacked {
                event_id: Some(e.id),
                subject: subject(e.event_type),
                stream_sequence: None,
                state: if e.sent {
                    "publish not acked"
                } else {
                    "not published"
                }
                .into(),
            })
            .collect();
        self.p.rx.close();
        while let Ok(item) = self.p.rx.try_recv() {
            if item.msg.is_some() {
                unacked.push(Unacked {
                    event_id: Some(item.id),
                    subject: subject(item.event_type),
                    stream_sequence: None,
                    state: "not published".into(),
                });
            }
        }
        PartReport {
            name: self.p.shared.name.clone(),
            completed: self.p.shared.published.load(Ordering::Relaxed),
            unacked,
        }
    }
}

// ---- the part the bridge sees ----------------------------------------------------

/// An outbound path as the bridge and its handle see it.
pub(crate) struct OutboundPath {
    pub(crate) shared: Arc<Shared>,
    pub(crate) publish_timeout: Duration,
    stopped: AtomicBool,
    stop: Mutex<Option<StopSignal>>,
    report: Mutex<Option<std::sync::mpsc::Receiver<PartReport>>>,
    /// Leaves the producer side: unsubscribes from the bus, or stops the
    /// outbox's reader (and returns once it has saved its checkpoint).
    detach: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Runs after the pump's report (the outbox's final checkpoint save).
    after: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl OutboundPath {
    pub(crate) fn new(
        shared: Arc<Shared>,
        publish_timeout: Duration,
        stop: StopSignal,
        report: std::sync::mpsc::Receiver<PartReport>,
    ) -> Self {
        OutboundPath {
            shared,
            publish_timeout,
            stopped: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
            report: Mutex::new(Some(report)),
            detach: Mutex::new(None),
            after: Mutex::new(None),
        }
    }

    pub(crate) fn set_detach(&self, f: Box<dyn FnOnce() + Send>) {
        *self.detach.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    pub(crate) fn set_after(&self, f: Box<dyn FnOnce() + Send>) {
        *self.after.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }
}

impl Part for OutboundPath {
    fn metrics(&self) -> PartMetrics {
        PartMetrics::Outbound(self.shared.metrics())
    }

    fn shutdown(&self) -> PartReport {
        let empty = || PartReport {
            name: self.shared.name.clone(),
            completed: 0,
            unacked: Vec::new(),
        };
        if self.stopped.swap(true, Ordering::AcqRel) {
            return empty();
        }
        let detach = self.detach.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(detach) = detach {
            detach();
        }
        let deadline = Instant::now() + self.publish_timeout;
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(deadline);
        }
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner()).take();
        assert!(
            thread_name_is_not_runtime(),
            "ringbus: an outbound path stopped on the bridge's own runtime thread"
        );
        let report = report.and_then(|r| r.recv().ok()).unwrap_or_else(empty);
        let after = self.after.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(after) = after {
            after();
        }
        report
    }
}

/// Whether this is not the bridge's runtime thread (`ringbus-nats`), where
/// waiting for the pump would wait for itself.
fn thread_name_is_not_runtime() -> bool {
    std::thread::current().name() != Some("ringbus-nats")
}

/// Checks the options both modes share.
pub(crate) fn check_options(o: &OutboundOptions) -> Result<(), BridgeError> {
    if o.max_in_flight == 0 {
        return Err(BridgeError::Config(
            "max_in_flight must be at least 1".into(),
        ));
    }
    if o.queue == 0 {
        return Err(BridgeError::Config(
            "the outbound queue must hold at least 1 event".into(),
        ));
    }
    if o.publish_timeout.is_zero() {
        return Err(BridgeError::Config(
            "publish_timeout must be above zero".into(),
        ));
    }
    o.retry
        .validate()
        .map_err(|e| BridgeError::Config(format!("outbound retry policy: {e}")))
}

/// The JetStream context the pump publishes through: the bridge's, with
/// `publish_timeout` as its timeout (the time each send and each ack may take).
pub(crate) fn publish_context(core: &Core, o: &OutboundOptions) -> Arc<jetstream::Context> {
    let mut js = core.js.clone();
    js.set_timeout(o.publish_timeout);
    Arc::new(js)
}

/// How often the bridge's bus handler is called again for an event it turned
/// away because the queue was full: from 1 ms, doubling, to 50 ms, with no
/// limit on attempts (the bus's `max_pending` bounds what waits).
fn queue_full_retry() -> RetryPolicy {
    RetryPolicy::exponential(
        Duration::from_millis(1),
        2.0,
        Duration::from_millis(50),
        u32::MAX,
    )
}

impl NatsBridge {
    /// Local events of the types matching `patterns` → JetStream, on
    /// `<prefix>.ev.<event_type>` (O1), encoded as the bridge's
    /// [`WireEncoding`] with `Nats-Msg-Id` = the event id (O2, O3).
    ///
    /// The bridge subscribes a handler to `bus` ([`Bus::subscribe_with`], named
    /// `outbound:<patterns>` or the name given with
    /// [`named`](crate::pattern::named)). It encodes each event on the bus's
    /// thread and puts it into a queue of [`OutboundOptions::queue`] events;
    /// when the queue is full it fails the event with the transient error
    /// `"nats outbound full"`, and the subscription's retry policy (1 ms
    /// doubling to 50 ms, unlimited) holds it in the bus's per-subject retry
    /// queue: the ring never stalls, each subject's order is kept, and nothing
    /// is lost unless the bus's `max_pending` (1 000 000 waiting events)
    /// overflows (O5). An event that cannot be encoded fails permanently and
    /// goes to the bus's dead-letter queue.
    ///
    /// The bridge's runtime publishes with up to
    /// [`max_in_flight`](OutboundOptions::max_in_flight) acks outstanding. An
    /// ack (or a `duplicate` ack: the server already has that id) settles the
    /// event; an error or a timeout ([`publish_timeout`](OutboundOptions::publish_timeout))
    /// is retried with the same `Nats-Msg-Id` under
    /// [`retry`](OutboundOptions::retry); the last failure sends the event to
    /// the bus's dead-letter queue ([`Bus::dead_letters`], under this
    /// subscription, with every attempt's error) (O4).
    ///
    /// # Order in the stream
    /// Without failures, the stream holds each subject's events in bus order.
    /// A retried publish lands after publishes that were sent after it and
    /// succeeded first; to keep that to a minimum, while an event waits for its
    /// retry, later events of its [`Subject`](crate::Subject) that were not yet
    /// sent wait behind it (other subjects go on). Those already in flight when
    /// it failed — at most `max_in_flight` — may be stored before it (on a
    /// reconnect the client resends what it buffered, while a publish lost with
    /// the old connection is retried after its timeout). `max_in_flight: 1`
    /// keeps the exact order always, at one round trip per event.
    ///
    /// # Guarantee
    /// At most once across a crash of this process (O7): events the bus handed
    /// to the bridge and the server has not acked yet are lost with it. For
    /// at-least-once, publish from an event store with
    /// [`outbound_from_store`](NatsBridge::outbound_from_store). A JetStream
    /// ack means stored by the server, not synced to its disk (see the module
    /// docs).
    ///
    /// # Errors
    /// [`BridgeError::Config`] for options that cannot work (zero
    /// `max_in_flight`, `queue` or `publish_timeout`, an invalid retry
    /// policy); [`BridgeError::Subscribe`] for invalid patterns or a closed
    /// bus; [`BridgeError::Closed`] after the bridge's shutdown began.
    pub fn outbound<P, M>(
        &self,
        bus: &Bus<P, M>,
        patterns: impl IntoPatterns,
        o: OutboundOptions,
    ) -> Result<OutboundHandle, BridgeError>
    where
        P: Serialize + Clone + Send + Sync + 'static,
        M: ProducerMode,
    {
        check_options(&o)?;
        if self.core.is_closed() {
            return Err(BridgeError::Closed);
        }
        let (patterns, given) = patterns
            .into_named_patterns()
            .map_err(|e| BridgeError::Subscribe(crate::SubscribeError::InvalidPattern(e)))?;
        let texts: Vec<String> = patterns.iter().map(|p| p.as_str().to_owned()).collect();
        let name = given.unwrap_or_else(|| format!("outbound:{}", texts.join(", ")));
        let shared = Arc::new(Shared::new(name.clone(), false));
        let (tx, rx) = mpsc::channel::<Item<Event<P>>>(o.queue);
        let subscription: Arc<OnceLock<SubscriptionId>> = Arc::new(OnceLock::new());
        let give_up = dead_letter(
            bus.dead_letter_queue(),
            subscription.clone(),
            Arc::from(name.as_str()),
        );
        let path = start_pump(&self.core, &o, &shared, rx, Some(give_up));

        let handler = BusSide {
            tx,
            shared,
            encoding: self.core.encoding,
            prefix: self.core.prefix.clone(),
            subjects: HashMap::default(),
            frame_capacity: 0,
        };
        let mut handler = handler;
        let id = bus
            .subscribe_with(
                named(name, texts),
                move |e: &Event<P>| handler.offer(e),
                SubscribeOptions::new().retry(queue_full_retry()),
            )
            .map_err(|e| {
                // The pump ends with the dropped handler's queue.
                BridgeError::Subscribe(e)
            })?;
        let _ = subscription.set(id);
        path.set_detach(Box::new(bus.unsubscriber(id)));
        if let Err(e) = self.core.register(path.clone()) {
            path.shutdown();
            return Err(e);
        }
        Ok(OutboundHandle { path })
    }
}

/// The bus handler's state.
struct BusSide<P> {
    tx: mpsc::Sender<Item<Event<P>>>,
    shared: Arc<Shared>,
    encoding: WireEncoding,
    prefix: String,
    /// `<prefix>.ev.<type>` per event type, made once.
    subjects: HashMap<EventType, async_nats::Subject, ahash::RandomState>,
    /// The longest frame encoded so far: the next frame's buffer starts that
    /// large (no regrowing per event; a `Vec` whose length is its capacity
    /// becomes `Bytes` without another allocation).
    frame_capacity: usize,
}

impl<P: Serialize + Clone> BusSide<P> {
    fn offer(&mut self, e: &Event<P>) -> Result<(), HandlerError> {
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                self.shared.queue_full.fetch_add(1, Ordering::Relaxed);
                return Err(HandlerError::transient(QUEUE_FULL));
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(HandlerError::permanent("nats outbound stopped"));
            }
        };
        let cannot = |m: String| HandlerError::permanent(format!("cannot encode the event: {m}"));
        let (headers, body) = match self.encoding {
            WireEncoding::Frame => {
                let mut out = Vec::with_capacity(self.frame_capacity);
                codec::encode(e, &mut out).map_err(|m| cannot(m.to_string()))?;
                self.frame_capacity = self.frame_capacity.max(out.len());
                (wire::headers(e.id, self.encoding), Bytes::from(out))
            }
            WireEncoding::CloudEventsJson => wire::encode(e, self.encoding).map_err(cannot)?,
        };
        let prefix = &self.prefix;
        let subject = self
            .subjects
            .entry(e.event_type)
            .or_insert_with(|| format!("{prefix}.ev.{}", e.event_type.name()).into())
            .clone();
        let seq = self.shared.next_item(true);
        let order = e.subject.as_ref().map_or(0, |s| s.partition_hash());
        permit.send(Item::new(
            seq,
            seq,
            order,
            e.event_type,
            e.id,
            Some(Msg {
                subject,
                headers: Some(headers),
                body,
            }),
            e.clone(),
        ));
        Ok(())
    }
}

/// Bus mode's give-up: the bus's dead-letter queue, under the bridge's
/// subscription, with every attempt. A full `Block` queue is waited for on a
/// blocking thread, never on the runtime's.
fn dead_letter<P: Send + Sync + 'static>(
    dlq: DeadLetterQueue<P>,
    subscription: Arc<OnceLock<SubscriptionId>>,
    name: Arc<str>,
) -> GiveUp<Event<P>> {
    Box::new(move |item: Item<Event<P>>| {
        let sub = subscription.get().copied().unwrap_or(SubscriptionId(0));
        match dlq.try_push(item.extra, sub, name.clone(), item.attempts) {
            Ok(_) | Err(DlqTryPushError::Closed(_)) => {}
            Err(DlqTryPushError::Full(letter)) => {
                let dlq = dlq.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || {
                    let letter = *letter;
                    let _ = dlq.push(letter.event, sub, name, letter.attempts);
                });
            }
        }
    })
}
