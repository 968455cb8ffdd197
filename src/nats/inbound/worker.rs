//! The worker: one task on the bridge's runtime that owns the messages in
//! flight and settles each exactly once (ack, NAK with delay, dead letter then
//! Term, NAK at the stop), sends progress for long deliveries, and handles the
//! max-deliveries advisories; and the pull that feeds it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::super::bridge::Core;
use super::super::dead_letters::{self, DeadLetterReason, Letter};
use super::super::dedup::Window;
use super::super::metrics::{PartReport, Unacked};
use super::super::wire::MSG_ID;
use super::super::{AckMode, Dedup, InboundOptions};
use super::feeder::lock;
use super::{bump, Counters};
use crate::delivery::DeliveryOutcome;
use crate::event::EventId;

/// The idle heartbeat asked of the server on each pull request; a missed one
/// is counted, never terminal (nats.go#1729).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request waits on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Messages handed to the feeder in one send, at most: the worker collects
/// what it feeds while it has events queued and sends them together (one
/// wake-up of the feeder thread per batch, not per message).
const FEED_BATCH: usize = 64;
/// The pause before a pull stream that ended is opened again.
const REOPEN_AFTER: Duration = Duration::from_millis(250);

/// What reaches the worker.
pub(super) enum Ev {
    /// A message from the pull.
    Msg(Box<jetstream::Message>),
    /// The feeder published the event of `token` on the bus and its handlers
    /// are done with it.
    Done {
        token: u64,
        id: EventId,
        outcome: DeliveryOutcome,
    },
    /// With dedup: the event of `token` is on the bus already, put there by
    /// the delivery `leader`.
    Follow {
        token: u64,
        leader: u64,
        id: EventId,
    },
    /// The event of `token` completed before ([`Dedup`]): ack it.
    Dropped { token: u64 },
    /// The body of `token` is not an event.
    Undecodable { token: u64, error: String },
    /// The store inbox could not take the event of `token`: a failure.
    InboxFailed { token: u64, error: String },
    /// The feeder did not publish `token`: the bus is shut down (`closed`) or
    /// the consumer is stopping.
    NotPublished { token: u64, closed: bool },
    /// A spawned settlement (double ack, dead letter then Term) finished.
    Settled { token: u64, how: Settled },
    /// Time to send progress for long deliveries.
    Tick,
    /// A `MAX_DELIVERIES` advisory's payload.
    MaxDeliveries(Bytes),
    /// The stop's drain timeout passed.
    DrainDeadline,
    /// Stop: answer with the report.
    Stop(std_mpsc::SyncSender<PartReport>),
}

/// How a spawned settlement ended.
pub(super) enum Settled {
    Acked,
    AckFailed,
    /// Dead letter stored, original terminated.
    Termed(DeadLetterReason),
    /// Dead letter stored; the Term could not be sent (the server redelivers:
    /// the dead letter's `Nats-Msg-Id` keeps it single).
    TermFailed(DeadLetterReason),
    /// The dead letter was not stored: the original was NAK'd.
    DeadLetterFailed,
}

/// What the feeder is handed per message.
pub(super) struct Feed {
    pub(super) token: u64,
    /// Shared with the message's [`InFlight`] entry (one allocation, not a
    /// copy of the map per message).
    pub(super) headers: Option<Arc<HeaderMap>>,
    pub(super) body: Bytes,
}

/// A message delivered and not yet settled.
pub(super) struct InFlight {
    acker: Arc<Acker>,
    event_id: Option<EventId>,
    /// Made into text only for a dead letter or a report.
    subject: async_nats::Subject,
    stream_seq: u64,
    delivered: u64,
    headers: Option<Arc<HeaderMap>>,
    body: Bytes,
    /// When it was delivered or last got progress.
    touched: Instant,
    /// Handed to the feeder (else: still in the worker's hands).
    fed: bool,
    /// A settlement task owns it now (double ack, dead letter).
    settling: bool,
}

/// Pulls from the consumer for as long as the worker listens; a stream that
/// ends (a terminal pull error) is opened again.
pub(super) async fn pull_loop(
    consumer: PullConsumer,
    batch: usize,
    tx: mpsc::UnboundedSender<Ev>,
    counters: Arc<Counters>,
) {
    loop {
        let opened = consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        match opened {
            Ok(mut messages) => {
                while let Some(item) = messages.next().await {
                    match item {
                        Ok(m) => {
                            if tx.send(Ev::Msg(Box::new(m))).is_err() {
                                return;
                            }
                        }
                        Err(e) => match e.kind() {
                            MessagesErrorKind::MissingHeartbeat => bump(&counters.heartbeat_gaps),
                            _ => bump(&counters.pull_errors),
                        },
                    }
                }
            }
            Err(_) => bump(&counters.pull_errors),
        }
        if tx.is_closed() {
            return;
        }
        bump(&counters.pull_restarts);
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// The consumer's state on the runtime (see the module docs).
pub(super) struct Worker {
    pub(super) core: Arc<Core>,
    pub(super) durable: String,
    pub(super) dlq_stream: String,
    pub(super) max_attempts: u64,
    pub(super) options: InboundOptions,
    pub(super) progress_after: Duration,
    pub(super) counters: Arc<Counters>,
    pub(super) to_self: mpsc::UnboundedSender<Ev>,
    pub(super) to_feeder: Option<std_mpsc::Sender<Vec<Feed>>>,
    /// Fed and not yet sent (see [`FEED_BATCH`]).
    pub(super) feeds: Vec<Feed>,
    pub(super) window: Option<Arc<Mutex<Window>>>,
    pub(super) retried_here: Arc<Mutex<HashSet<EventId>>>,
    pub(super) in_flight: HashMap<u64, InFlight, ahash::RandomState>,
    /// With dedup: the delivery of each event id now on the bus (shared
    /// with the feeder).
    pub(super) on_bus: Option<Arc<Mutex<HashMap<EventId, u64>>>>,
    /// With dedup: deliveries of the same event that arrived meanwhile.
    pub(super) followers: HashMap<u64, Vec<u64>>,
    pub(super) next_token: u64,
    /// Messages acked, NAK'd for a retry or terminated before the stop.
    pub(super) settled: u64,
    pub(super) pulling: bool,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The stop's reply, once asked.
    pub(super) stop: Option<std_mpsc::SyncSender<PartReport>>,
    /// What the stop NAK'd or could not settle.
    pub(super) unacked: Vec<Unacked>,
    pub(super) rng: u64,
    /// The bus refused a publish because it is shut down: every message not
    /// yet on it is NAK'd for that reason.
    pub(super) bus_closed: bool,
}

impl Worker {
    /// Why a message that never reached the bus is NAK'd.
    fn not_on_bus(&self) -> &'static str {
        if self.bus_closed {
            "NAK'd: the bus is shut down"
        } else {
            "NAK'd at shutdown: not yet on the bus"
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ev>) {
        while let Some(ev) = rx.recv().await {
            match ev {
                Ev::Msg(m) => self.on_message(*m).await,
                Ev::Done { token, id, outcome } => {
                    if let Some(e) = self.in_flight.get_mut(&token) {
                        // The decoded id is the one that counts (the header
                        // may name another: a replay under a new Nats-Msg-Id).
                        e.event_id = Some(id);
                    }
                    self.on_done(token, outcome).await;
                }
                Ev::Follow { token, leader, id } => self.on_follow(token, leader, id).await,
                Ev::Dropped { token } => {
                    bump(&self.counters.dedup_dropped);
                    self.ack(token).await;
                }
                Ev::Undecodable { token, error } => {
                    bump(&self.counters.undecodable);
                    self.dead_letter(token, DeadLetterReason::Undecodable, error);
                }
                Ev::InboxFailed { token, error } => {
                    self.failed(token, format!("the store inbox refused it: {error}"))
                        .await;
                }
                Ev::NotPublished { token, closed } => {
                    if closed {
                        // The bus is gone: nothing more can be delivered.
                        self.bus_closed = true;
                        self.stop_pulling();
                    }
                    self.nak_now(token, self.not_on_bus()).await;
                }
                Ev::Settled { token, how } => self.on_settled(token, how).await,
                Ev::Tick => self.progress().await,
                Ev::MaxDeliveries(payload) => self.on_max_deliveries(payload),
                Ev::DrainDeadline => self.drain_deadline().await,
                Ev::Stop(reply) => {
                    self.flush_feeds().await;
                    self.stop = Some(reply);
                    self.stop_pulling();
                    let tx = self.to_self.clone();
                    let drain = self.options.drain_timeout;
                    tokio::spawn(async move {
                        tokio::time::sleep(drain).await;
                        let _ = tx.send(Ev::DrainDeadline);
                    });
                }
            }
            if self.feeds.len() >= FEED_BATCH || rx.is_empty() {
                self.flush_feeds().await;
            }
            self.counters
                .in_flight
                .store(self.in_flight.len() as u64, AtomicOrdering::Relaxed);
            if self.stop.is_some() && self.in_flight.is_empty() {
                self.finish();
                return;
            }
        }
    }

    fn stop_pulling(&mut self) {
        if self.pulling {
            self.pulling = false;
            for t in self.tasks.drain(..) {
                t.abort();
            }
        }
    }

    async fn on_message(&mut self, m: jetstream::Message) {
        let (stream_seq, delivered) = match m.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1) as u64),
            Err(_) => {
                // Not a JetStream delivery (no ack subject): nothing to settle.
                bump(&self.counters.pull_errors);
                return;
            }
        };
        let (m, acker) = m.split();
        bump(&self.counters.received);
        if delivered > 1 {
            bump(&self.counters.redelivered);
        }
        let event_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(MSG_ID))
            .and_then(|v| uuid::Uuid::parse_str(v.as_str()).ok())
            .map(EventId::from_uuid);
        let token = self.next_token;
        self.next_token += 1;
        let headers = m.headers.map(Arc::new);
        let entry = InFlight {
            acker: Arc::new(acker),
            event_id,
            subject: m.subject,
            stream_seq,
            delivered,
            headers: headers.clone(),
            body: m.payload.clone(),
            touched: Instant::now(),
            fed: false,
            settling: false,
        };
        self.in_flight.insert(token, entry);
        if self.stop.is_some() {
            self.nak_now(token, self.not_on_bus()).await;
            return;
        }
        if delivered > self.max_attempts {
            // Deliveries ran out by ack-wait expiry (the bridge was down or
            // stuck): the server's last delivery is the backstop.
            let error = format!(
                "delivered {delivered} times; the bridge tries {} (ack-wait expiries)",
                self.max_attempts
            );
            self.dead_letter(token, DeadLetterReason::MaxDeliveries, error);
            return;
        }
        let feed = Feed {
            token,
            headers,
            body: m.payload,
        };
        self.feed(token, feed).await;
    }

    /// Queues a message for the feeder (NAK'd at once if it is gone); the
    /// run loop sends the queue once no event waits or it holds
    /// [`FEED_BATCH`].
    async fn feed(&mut self, token: u64, feed: Feed) {
        if self.to_feeder.is_none() {
            self.nak_now(token, "NAK'd: the feeder stopped").await;
            return;
        }
        if let Some(e) = self.in_flight.get_mut(&token) {
            e.fed = true;
        }
        self.feeds.push(feed);
    }

    /// Sends the queued messages to the feeder, NAK'ing them if it is gone.
    async fn flush_feeds(&mut self) {
        if self.feeds.is_empty() {
            return;
        }
        let feeds = std::mem::take(&mut self.feeds);
        let Some(to_feeder) = &self.to_feeder else {
            for f in feeds {
                self.nak_now(f.token, "NAK'd: the feeder stopped").await;
            }
            return;
        };
        if let Err(std_mpsc::SendError(feeds)) = to_feeder.send(feeds) {
            for f in feeds {
                self.nak_now(f.token, "NAK'd: the feeder stopped").await;
            }
        }
    }

    /// A delivery of an event already on the bus (a redelivery whose first
    /// copy is still being handled, a replay): it shares the first copy's end.
    /// If that settled meanwhile, it is dropped (completed) or fed again.
    async fn on_follow(&mut self, token: u64, leader: u64, id: EventId) {
        if !self.in_flight.contains_key(&token) {
            return;
        }
        if self.in_flight.contains_key(&leader) {
            self.followers.entry(leader).or_default().push(token);
            return;
        }
        if self.window.as_ref().is_some_and(|w| lock(w).contains(id)) {
            bump(&self.counters.dedup_dropped);
            self.ack(token).await;
            return;
        }
        let Some(e) = self.in_flight.get(&token) else {
            return;
        };
        let feed = Feed {
            token,
            headers: e.headers.clone(),
            body: e.body.clone(),
        };
        self.feed(token, feed).await;
    }

    async fn on_done(&mut self, token: u64, outcome: DeliveryOutcome) {
        if !self.in_flight.contains_key(&token) {
            return;
        }
        if !outcome.dispatched {
            let error = "the bus stopped before it dispatched the event".to_owned();
            self.failed(token, error).await;
        } else if !outcome.is_success() {
            let error = outcome
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.handler, f.message))
                .collect::<Vec<_>>()
                .join("; ");
            self.failed(token, error).await;
        } else if outcome.handlers == 0 && !self.options.ack_unrouted {
            self.failed(token, "no local handler took the event".into())
                .await;
        } else {
            self.ack(token).await;
        }
    }

    /// Handling failed: NAK with the retry delay, or dead-letter on the last
    /// attempt.
    async fn failed(&mut self, token: u64, error: String) {
        let Some(e) = self.in_flight.get(&token) else {
            return;
        };
        if e.delivered >= self.max_attempts {
            self.dead_letter(token, DeadLetterReason::HandlerFailed, error);
            return;
        }
        let delay = self.nak_delay(e.delivered);
        let Some(e) = self.in_flight.remove(&token) else {
            return;
        };
        if let (Some(id), true) = (e.event_id, self.options_use_store()) {
            lock(&self.retried_here).insert(id);
        }
        if e.acker.ack_with(AckKind::Nak(Some(delay))).await.is_ok() {
            bump(&self.counters.naked);
        } else {
            bump(&self.counters.ack_errors);
        }
        self.settled += 1;
        let followers = self.take_followers(token, e.event_id);
        self.settle_followers(followers, AckKind::Nak(Some(delay)))
            .await;
    }

    /// The deliveries of the same event that arrived while `leader` was on the
    /// bus: they share its end.
    fn take_followers(&mut self, leader: u64, id: Option<EventId>) -> Vec<u64> {
        if let (Some(id), Some(on_bus)) = (id, &self.on_bus) {
            let mut on_bus = lock(on_bus);
            if on_bus.get(&id) == Some(&leader) {
                on_bus.remove(&id);
            }
        }
        self.followers.remove(&leader).unwrap_or_default()
    }

    /// Settles duplicates of a settled leader the same way: acked as dropped
    /// duplicates, NAK'd with its delay, or terminated with it.
    async fn settle_followers(&mut self, followers: Vec<u64>, kind: AckKind) {
        for token in followers {
            let Some(e) = self.in_flight.remove(&token) else {
                continue;
            };
            let counter = match kind {
                AckKind::Ack => {
                    bump(&self.counters.dedup_dropped);
                    &self.counters.acked
                }
                AckKind::Term => &self.counters.termed,
                _ => &self.counters.naked,
            };
            if e.acker.ack_with(kind).await.is_ok() {
                bump(counter);
            } else {
                bump(&self.counters.ack_errors);
            }
            self.settled += 1;
        }
    }

    fn options_use_store(&self) -> bool {
        matches!(self.options.dedup, Dedup::Store(_))
    }

    /// The NAK delay for a message delivered `delivered` times: the retry
    /// policy's delay before retry `delivered`, with its jitter.
    fn nak_delay(&mut self, delivered: u64) -> Duration {
        let retry = &self.options.retry;
        let base = retry.base_delay(u32::try_from(delivered).unwrap_or(u32::MAX));
        let jitter = retry.jitter();
        if jitter == 0.0 || base.is_zero() {
            return base;
        }
        // xorshift64 (13/7/17), as the retry policy draws its jitter.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(1.0 - jitter * u).min(base)
    }

    async fn ack(&mut self, token: u64) {
        let use_store = self.options_use_store();
        let Some(e) = self.in_flight.get_mut(&token) else {
            return;
        };
        if let (Some(id), Some(w)) = (e.event_id, &self.window) {
            lock(w).insert(id);
        }
        if let (Some(id), true) = (e.event_id, use_store) {
            lock(&self.retried_here).remove(&id);
        }
        let id = e.event_id;
        let followers = self.take_followers(token, id);
        self.settle_followers(followers, AckKind::Ack).await;
        let Some(e) = self.in_flight.get_mut(&token) else {
            return;
        };
        match self.options.ack {
            AckMode::Ack => {
                let e = self.in_flight.remove(&token).expect("present");
                if e.acker.ack().await.is_ok() {
                    bump(&self.counters.acked);
                } else {
                    bump(&self.counters.ack_errors);
                }
                self.settled += 1;
            }
            AckMode::DoubleAck => {
                e.settling = true;
                let acker = e.acker.clone();
                let tx = self.to_self.clone();
                tokio::spawn(async move {
                    let how = match acker.double_ack().await {
                        Ok(()) => Settled::Acked,
                        Err(_) => Settled::AckFailed,
                    };
                    let _ = tx.send(Ev::Settled { token, how });
                });
            }
        }
    }

    /// Publishes the dead letter of `token`, then (in the same task, only once
    /// the stream acked it) terminates the original.
    fn dead_letter(&mut self, token: u64, reason: DeadLetterReason, error: String) {
        let Some(delivered) = self.in_flight.get(&token).map(|e| e.delivered) else {
            return;
        };
        let delay = self.nak_delay(delivered);
        let Some(e) = self.in_flight.get_mut(&token) else {
            return;
        };
        e.settling = true;
        let letter = Letter {
            reason,
            error,
            deliveries: e.delivered,
            stream_seq: e.stream_seq,
            event_id: e.event_id,
            subject: e.subject.to_string(),
            headers: e.headers.as_deref().cloned(),
            body: e.body.clone(),
        };
        let acker = e.acker.clone();
        let core = self.core.clone();
        let dlq = self.dlq_stream.clone();
        let durable = self.durable.clone();
        let tx = self.to_self.clone();
        tokio::spawn(async move {
            let how = match dead_letters::publish(&core, &dlq, &durable, letter).await {
                Ok(()) => match acker.ack_with(AckKind::Term).await {
                    Ok(()) => Settled::Termed(reason),
                    Err(_) => Settled::TermFailed(reason),
                },
                Err(_) => {
                    let _ = acker.ack_with(AckKind::Nak(Some(delay))).await;
                    Settled::DeadLetterFailed
                }
            };
            let _ = tx.send(Ev::Settled { token, how });
        });
    }

    async fn on_settled(&mut self, token: u64, how: Settled) {
        let Some(e) = self.in_flight.remove(&token) else {
            return;
        };
        self.settled += 1;
        let followers = self.take_followers(token, e.event_id);
        match how {
            Settled::Termed(_) | Settled::TermFailed(_) => {
                self.settle_followers(followers, AckKind::Term).await;
            }
            Settled::DeadLetterFailed => {
                let delay = self.nak_delay(e.delivered);
                self.settle_followers(followers, AckKind::Nak(Some(delay)))
                    .await;
            }
            Settled::Acked | Settled::AckFailed => {
                self.settle_followers(followers, AckKind::Ack).await;
            }
        }
        let c = &self.counters;
        match how {
            Settled::Acked => bump(&c.acked),
            Settled::AckFailed => bump(&c.ack_errors),
            Settled::Termed(reason) => {
                c.dead_lettered(reason);
                bump(&c.termed);
            }
            Settled::TermFailed(reason) => {
                c.dead_lettered(reason);
                bump(&c.ack_errors);
            }
            Settled::DeadLetterFailed => {
                bump(&c.dl_failures);
                bump(&c.naked);
            }
        }
    }

    /// NAKs `token` without delay and reports it unacked with `state`.
    /// Its followers (duplicates waiting on it) go the same way.
    async fn nak_now(&mut self, token: u64, state: &str) {
        let Some(id) = self.in_flight.get(&token).map(|e| e.event_id) else {
            return;
        };
        let mut tokens = self.take_followers(token, id);
        tokens.insert(0, token);
        for t in tokens {
            let Some(e) = self.in_flight.remove(&t) else {
                continue;
            };
            if e.acker.ack_with(AckKind::Nak(None)).await.is_ok() {
                bump(&self.counters.naked);
            } else {
                bump(&self.counters.ack_errors);
            }
            self.unacked.push(unacked(&e, state));
        }
    }

    /// `Progress` for every delivery pending for `ack_wait / 2`.
    async fn progress(&mut self) {
        let now = Instant::now();
        for e in self.in_flight.values_mut() {
            if now.duration_since(e.touched) >= self.progress_after {
                e.touched = now;
                if e.acker.ack_with(AckKind::Progress).await.is_ok() {
                    bump(&self.counters.progress_sent);
                } else {
                    bump(&self.counters.ack_errors);
                }
            }
        }
    }

    /// The server gave up on a message by ack-wait expiry: fetch it by its
    /// stream sequence and dead-letter it. Its `Nats-Msg-Id` keeps the dead
    /// letter single if the bridge dead-letters it too.
    fn on_max_deliveries(&mut self, payload: Bytes) {
        #[derive(serde::Deserialize)]
        struct Advisory {
            stream_seq: u64,
            #[serde(default)]
            deliveries: u64,
        }
        let Ok(a) = serde_json::from_slice::<Advisory>(&payload) else {
            return;
        };
        let core = self.core.clone();
        let dlq = self.dlq_stream.clone();
        let durable = self.durable.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let fetched = async {
                let stream = core
                    .js
                    .get_stream_no_info(&core.stream.name)
                    .await
                    .map_err(|e| e.to_string())?;
                stream
                    .get_raw_message(a.stream_seq)
                    .await
                    .map_err(|e| e.to_string())
            };
            let m = match fetched.await {
                Ok(m) => m,
                Err(_) => {
                    bump(&counters.dl_failures);
                    return;
                }
            };
            let event_id = m
                .headers
                .get(MSG_ID)
                .and_then(|v| uuid::Uuid::parse_str(v.as_str()).ok())
                .map(EventId::from_uuid);
            let letter = Letter {
                reason: DeadLetterReason::MaxDeliveries,
                error: format!(
                    "the server gave up after {} deliveries (ack-wait expiries)",
                    a.deliveries
                ),
                deliveries: a.deliveries,
                stream_seq: a.stream_seq,
                event_id,
                subject: m.subject.to_string(),
                headers: Some(m.headers),
                body: m.payload,
            };
            match dead_letters::publish(&core, &dlq, &durable, letter).await {
                Ok(()) => counters.dead_lettered(DeadLetterReason::MaxDeliveries),
                Err(_) => bump(&counters.dl_failures),
            }
        });
    }

    /// The drain timeout passed: NAK what is still unfinished, then report.
    async fn drain_deadline(&mut self) {
        let tokens: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, e)| !e.settling)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            let state = if self.in_flight[&token].fed {
                "NAK'd at shutdown: handlers unfinished"
            } else {
                self.not_on_bus()
            };
            self.nak_now(token, state).await;
        }
        // Settlements still running (a double ack, a dead letter) are
        // reported as they are.
        for e in self.in_flight.values() {
            self.unacked.push(unacked(
                e,
                "settling at shutdown (ack or dead letter pending)",
            ));
        }
        self.in_flight.clear();
    }

    fn finish(&mut self) {
        self.stop_pulling();
        self.to_feeder = None;
        let report = PartReport {
            name: format!("inbound:{}", self.durable),
            completed: self.settled,
            unacked: std::mem::take(&mut self.unacked),
        };
        if let Some(reply) = self.stop.take() {
            let _ = reply.try_send(report);
        }
    }
}

fn unacked(e: &InFlight, state: &str) -> Unacked {
    Unacked {
        event_id: e.event_id,
        subject: e.subject.to_string(),
        stream_sequence: Some(e.stream_seq),
        state: state.to_owned(),
    }
}
