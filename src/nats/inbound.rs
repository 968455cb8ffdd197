//! A durable pull consumer → the local bus (issue 13, I1–I9).
//!
//! ## Who does what
//! ```text
//!  pull task ──Msg──▶ worker (runtime) ──Feed──▶ feeder thread ──publish_tracked──▶ bus
//!  advisories ─────▶    │  ▲                         │ decode, dedup, inbox append
//!  ticker ─────Tick─▶   │  └──── Done / Dropped / Undecodable / NotPublished ◀─ on_done
//!                       └─ ack · NAK(delay) · dead letter then Term · Progress
//! ```
//! * The **worker** is one task on the bridge's runtime. It owns the table of
//!   messages in flight (delivered by the server, not yet acked, NAK'd or
//!   terminated) and is the only one that acks: a message is settled exactly
//!   once, by whoever removes it from the table.
//! * The **feeder** is a thread of its own (`ringbus-nats-in`): decoding,
//!   dedup, the store inbox's append and `publish_tracked` may block (a full
//!   ring, an fsync), which the runtime thread must never do. It feeds the bus
//!   in the order the server delivered, so first deliveries reach the bus in
//!   stream order (I6).
//! * A delivery's completion (`Delivery::on_done`) runs on a bus thread and
//!   only sends the outcome back to the worker through an unbounded channel.
//! * Messages in flight are bounded by the consumer's `max_ack_pending`: the
//!   server delivers no more until some are acked.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::{self};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::bridge::{Core, Part, PartMetrics};
use super::dead_letters::{self, DeadLetterReason, Letter};
use super::dedup::{InboxAppend, Window};
use super::error::nats;
use super::metrics::{PartReport, Unacked};
use super::wire::{self, MSG_ID};
use super::{
    AckMode, BridgeError, ConsumerSpec, Dedup, DeliverFrom, InboundOptions, NatsBridge, Ordering,
};
use crate::delivery::DeliveryOutcome;
use crate::event::EventId;
use crate::pattern::Pattern;
use crate::store::upcast::Upcasters;
use crate::{Bus, Publisher};

/// Messages per pull request, at most.
const MAX_BATCH: u32 = 256;
/// The idle heartbeat asked of the server on each pull request; a missed one
/// is counted, never terminal (nats.go#1729).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one pull request waits on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// The pause before a pull stream that ended is opened again.
const REOPEN_AFTER: Duration = Duration::from_millis(250);

impl NatsBridge {
    /// A durable pull consumer on the event stream feeding `bus`: each message
    /// is decoded, published on the bus with
    /// [`publish_tracked`](crate::Publisher::publish_tracked), and — once every
    /// local handler has finished with it — acked (all succeeded), NAK'd with
    /// the delay `options.retry` gives for its delivery count (a handler failed
    /// for good), or, on delivery `max_attempts`, dead-lettered and terminated.
    ///
    /// * **Consumer (I1):** created if missing with explicit acks,
    ///   `max_deliver = max_attempts + 1` (the bridge decides first; the server's
    ///   last delivery is the backstop), the spec's `backoff`, `ack_wait`,
    ///   `max_ack_pending` and start. The config the server returns is compared
    ///   with the request: a consumer present with other settings is
    ///   [`BridgeError::Mismatch`]; several patterns need a 2.10 server
    ///   ([`BridgeError::Unsupported`] before — 2.9 would silently drop the
    ///   filter).
    /// * **Undecodable (I2):** dead-lettered (`Undecodable`, body kept) and
    ///   terminated, never retried.
    /// * **No handler:** acked when `ack_unrouted` (default), else treated as a
    ///   failure.
    /// * **Dead letters (I4):** published to the dead-letter stream and acked
    ///   by it **before** the original is terminated; a dead letter that cannot
    ///   be stored leaves the original NAK'd. The server's
    ///   `MAX_DELIVERIES` advisory for this consumer (deliveries run out by
    ///   ack-wait expiry while the bridge was down or stuck) is dead-lettered
    ///   too (`MaxDeliveries`), fetching the message by stream sequence.
    /// * **Dedup (I5):** see [`Dedup`].
    /// * **Ordering (I6):** [`Ordering::PerSubject`]: first deliveries reach the
    ///   bus in stream order; a NAK'd event comes back after later events of
    ///   its subject. [`Ordering::Strict`]: `max_ack_pending` is 1 — one
    ///   message in flight, stream order even across failures.
    /// * **Long work (I7):** a delivery pending for `ack_wait / 2` gets
    ///   `AckKind::Progress`, and again every `ack_wait / 2`.
    /// * **Reconnects (I8):** the pull resumes after a server restart; missed
    ///   heartbeats and pull errors are counted, never terminal.
    /// * **Stop (I9):** [`InboundHandle::stop`] or [`NatsBridge::shutdown`].
    ///
    /// JetStream redelivery re-runs *every* local handler of the event:
    /// handlers behind a bridge must be idempotent, or use [`Dedup`].
    ///
    /// # Errors
    /// [`BridgeError::Config`] for an empty or invalid durable name, no
    /// pattern, a pattern outside the bus's grammar, `max_attempts` or
    /// `max_ack_pending` of 0, a zero `ack_wait`, more `backoff` steps than
    /// `max_attempts`, or a `Dedup::Store` made for another payload type;
    /// [`BridgeError::Unsupported`]; [`BridgeError::Mismatch`];
    /// [`BridgeError::Nats`]; [`BridgeError::Closed`].
    pub fn inbound<P>(
        &self,
        bus: &Bus<P>,
        consumer: ConsumerSpec,
        options: InboundOptions,
    ) -> Result<InboundHandle, BridgeError>
    where
        P: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        start(&self.core, bus.publisher(), consumer, options)
    }
}

/// A running inbound consumer: its counters, and [`stop`](Self::stop).
///
/// Dropping the handle leaves the consumer running until the bridge shuts
/// down.
#[derive(Debug)]
pub struct InboundHandle {
    part: Arc<InboundPart>,
}

impl InboundHandle {
    /// The durable name.
    pub fn durable(&self) -> &str {
        &self.part.durable
    }

    /// Its counters now.
    pub fn metrics(&self) -> InboundMetrics {
        self.part.counters.snapshot(&self.part.durable)
    }

    /// Stops the consumer: it stops pulling, lets deliveries in flight finish
    /// within the options' `drain_timeout` (acking, NAK'ing or dead-lettering
    /// each as usual), then NAKs (without delay) whatever is still unfinished,
    /// and reports those in [`PartReport::unacked`]. A second stop (also the
    /// bridge's shutdown after this) reports nothing.
    pub fn stop(self) -> PartReport {
        self.part.shutdown()
    }
}

/// One inbound consumer's counters (`ringbus_nats_inbound_*{durable="…"}` in
/// [`BridgeMetrics::to_prometheus`](super::BridgeMetrics::to_prometheus)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundMetrics {
    /// The durable name.
    pub durable: String,
    /// Messages delivered by the server (redeliveries included).
    pub received: u64,
    /// Of those, redeliveries (`delivered > 1`).
    pub redelivered: u64,
    /// Acked (handled, dropped as duplicates, or unrouted).
    pub acked: u64,
    /// NAK'd (for a retry, or at shutdown).
    pub naked: u64,
    /// Terminated (after their dead letter was stored).
    pub termed: u64,
    /// Dead letters stored with reason `HandlerFailed`.
    pub dead_lettered_handler_failed: u64,
    /// Dead letters stored with reason `Undecodable`.
    pub dead_lettered_undecodable: u64,
    /// Dead letters stored with reason `MaxDeliveries`.
    pub dead_lettered_max_deliveries: u64,
    /// Dead letters the dead-letter stream did not ack (the original was
    /// NAK'd instead of terminated).
    pub dead_letter_failures: u64,
    /// Messages whose body could not be decoded.
    pub undecodable: u64,
    /// Deliveries acked without reaching the bus because their event had
    /// completed before ([`Dedup`]).
    pub dedup_dropped: u64,
    /// `AckKind::Progress` sent for long deliveries.
    pub progress_sent: u64,
    /// Acks, NAKs or progress the client could not send (disconnected).
    pub ack_errors: u64,
    /// Messages delivered and not yet settled, now.
    pub in_flight: u64,
    /// `MAX_DELIVERIES` advisories seen for this consumer.
    pub advisories_max_deliveries: u64,
    /// `MSG_TERMINATED` advisories seen for this consumer.
    pub advisories_terminated: u64,
    /// Idle heartbeats the server missed (the pull goes on).
    pub heartbeat_gaps: u64,
    /// Pull requests or pull streams that failed (the pull goes on).
    pub pull_errors: u64,
    /// Times the pull stream was opened again after it ended.
    pub pull_restarts: u64,
}

impl InboundMetrics {
    pub(crate) fn write_prometheus(&self, out: &mut String) {
        let d = &self.durable;
        for (name, v) in [
            ("received", self.received),
            ("redelivered", self.redelivered),
            ("acked", self.acked),
            ("naked", self.naked),
            ("termed", self.termed),
            ("dead_letter_failures", self.dead_letter_failures),
            ("undecodable", self.undecodable),
            ("dedup_dropped", self.dedup_dropped),
            ("progress_sent", self.progress_sent),
            ("ack_errors", self.ack_errors),
            ("advisories_max_deliveries", self.advisories_max_deliveries),
            ("advisories_terminated", self.advisories_terminated),
            ("heartbeat_gaps", self.heartbeat_gaps),
            ("pull_errors", self.pull_errors),
            ("pull_restarts", self.pull_restarts),
        ] {
            let _ = writeln!(
                out,
                "ringbus_nats_inbound_{name}_total{{durable=\"{d}\"}} {v}"
            );
        }
        for (reason, v) in [
            (
                DeadLetterReason::HandlerFailed,
                self.dead_lettered_handler_failed,
            ),
            (
                DeadLetterReason::Undecodable,
                self.dead_lettered_undecodable,
            ),
            (
                DeadLetterReason::MaxDeliveries,
                self.dead_lettered_max_deliveries,
            ),
        ] {
            let _ = writeln!(
                out,
                "ringbus_nats_inbound_dead_lettered_total{{durable=\"{d}\",reason=\"{}\"}} {v}",
                reason.as_str()
            );
        }
        let _ = writeln!(
            out,
            "ringbus_nats_inbound_in_flight{{durable=\"{d}\"}} {}",
            self.in_flight
        );
    }
}

/// The live counters behind [`InboundMetrics`] (Relaxed: statistics only).
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    redelivered: AtomicU64,
    acked: AtomicU64,
    naked: AtomicU64,
    termed: AtomicU64,
    dl_handler_failed: AtomicU64,
    dl_undecodable: AtomicU64,
    dl_max_deliveries: AtomicU64,
    dl_failures: AtomicU64,
    undecodable: AtomicU64,
    dedup_dropped: AtomicU64,
    progress_sent: AtomicU64,
    ack_errors: AtomicU64,
    in_flight: AtomicU64,
    adv_max_deliveries: AtomicU64,
    adv_terminated: AtomicU64,
    heartbeat_gaps: AtomicU64,
    pull_errors: AtomicU64,
    pull_restarts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, AtomicOrdering::Relaxed);
}

impl Counters {
    fn snapshot(&self, durable: &str) -> InboundMetrics {
        let r = |c: &AtomicU64| c.load(AtomicOrdering::Relaxed);
        InboundMetrics {
            durable: durable.to_owned(),
            received: r(&self.received),
            redelivered: r(&self.redelivered),
            acked: r(&self.acked),
            naked: r(&self.naked),
            termed: r(&self.termed),
            dead_lettered_handler_failed: r(&self.dl_handler_failed),
            dead_lettered_undecodable: r(&self.dl_undecodable),
            dead_lettered_max_deliveries: r(&self.dl_max_deliveries),
            dead_letter_failures: r(&self.dl_failures),
            undecodable: r(&self.undecodable),
            dedup_dropped: r(&self.dedup_dropped),
            progress_sent: r(&self.progress_sent),
            ack_errors: r(&self.ack_errors),
            in_flight: r(&self.in_flight),
            advisories_max_deliveries: r(&self.adv_max_deliveries),
            advisories_terminated: r(&self.adv_terminated),
            heartbeat_gaps: r(&self.heartbeat_gaps),
            pull_errors: r(&self.pull_errors),
            pull_restarts: r(&self.pull_restarts),
        }
    }

    fn dead_lettered(&self, reason: DeadLetterReason) {
        bump(match reason {
            DeadLetterReason::HandlerFailed => &self.dl_handler_failed,
            DeadLetterReason::Undecodable => &self.dl_undecodable,
            DeadLetterReason::MaxDeliveries => &self.dl_max_deliveries,
        });
    }
}

/// The consumer as the bridge sees it (metrics, shutdown).
struct InboundPart {
    durable: String,
    counters: Arc<Counters>,
    to_worker: mpsc::UnboundedSender<Ev>,
    drain_timeout: Duration,
    stopped: AtomicBool,
    /// Set when the stop begins: the feeder publishes nothing more.
    feeder_stop: Arc<AtomicBool>,
    core: Weak<Core>,
}

impl std::fmt::Debug for InboundPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundPart")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Part for InboundPart {
    fn metrics(&self) -> PartMetrics {
        PartMetrics::Inbound(self.counters.snapshot(&self.durable))
    }

    fn shutdown(&self) -> PartReport {
        let empty = PartReport {
            name: format!("inbound:{}", self.durable),
            completed: 0,
            unacked: Vec::new(),
        };
        if self.stopped.swap(true, AtomicOrdering::AcqRel) || self.core.upgrade().is_none() {
            return empty;
        }
        self.feeder_stop.store(true, AtomicOrdering::Release);
        let (tx, rx) = std_mpsc::sync_channel(1);
        if self.to_worker.send(Ev::Stop(tx)).is_err() {
            return empty;
        }
        // The worker answers within the drain timeout plus the NAKs' sends.
        rx.recv_timeout(self.drain_timeout + Duration::from_secs(10))
            .unwrap_or(empty)
    }
}

/// What reaches the worker.
enum Ev {
    /// A message from the pull.
    Msg(Box<jetstream::Message>),
    /// The feeder published the event of `token` on the bus and its handlers
    /// are done with it.
    Done {
        token: u64,
        outcome: DeliveryOutcome,
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
enum Settled {
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
struct Feed {
    token: u64,
    headers: Option<HeaderMap>,
    body: Bytes,
}

/// A message delivered and not yet settled.
struct InFlight {
    acker: Arc<Acker>,
    event_id: Option<EventId>,
    subject: String,
    stream_seq: u64,
    delivered: u64,
    headers: Option<HeaderMap>,
    body: Bytes,
    /// When it was delivered or last got progress.
    touched: Instant,
    /// Handed to the feeder (else: still in the worker's hands).
    fed: bool,
    /// A settlement task owns it now (double ack, dead letter).
    settling: bool,
}

/// Checks the spec and the options; the spec with `Strict` applied.
fn validate(
    core: &Core,
    mut spec: ConsumerSpec,
    o: &InboundOptions,
) -> Result<ConsumerSpec, BridgeError> {
    let bad = |what: String| Err(BridgeError::Config(what));
    let d = &spec.durable;
    if d.is_empty()
        || d.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
    {
        return bad(format!(
            "durable name {d:?} must be one NATS subject token (no '.', '*', '>', spaces)"
        ));
    }
    if spec.patterns.is_empty() {
        return bad("an inbound consumer needs at least one pattern".into());
    }
    for p in &spec.patterns {
        Pattern::parse(p).map_err(|e| BridgeError::Config(format!("pattern {p:?}: {e}")))?;
    }
    if spec.max_attempts == 0 {
        return bad("max_attempts must be at least 1".into());
    }
    if spec.ack_wait.is_zero() {
        return bad("ack_wait must not be zero".into());
    }
    if spec.backoff.len() > spec.max_attempts as usize {
        return bad(format!(
            "{} backoff steps for {} attempts: the server needs max_deliver ({}) > steps",
            spec.backoff.len(),
            spec.max_attempts,
            spec.max_attempts + 1
        ));
    }
    if o.ordering == Ordering::Strict {
        spec.max_ack_pending = 1;
    }
    if spec.max_ack_pending == 0 {
        return bad("max_ack_pending must be at least 1".into());
    }
    if let Dedup::Window { ids: 0, .. } = o.dedup {
        return bad("Dedup::Window needs room for at least one id".into());
    }
    if spec.patterns.len() > 1 && !core.server_version.at_least(2, 10) {
        return Err(BridgeError::Unsupported {
            feature: "several filter subjects on one consumer",
            server_version: core.server_version,
        });
    }
    Ok(spec)
}

/// The consumer config the bridge asks for.
fn consumer_config(core: &Core, spec: &ConsumerSpec) -> pull::Config {
    let filters: Vec<String> = spec
        .patterns
        .iter()
        .map(|p| core.filter_subject(p))
        .collect();
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters[0].clone(), Vec::new())
    } else {
        (String::new(), filters)
    };
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: i64::from(spec.max_attempts) + 1,
        backoff: spec.backoff.clone(),
        max_ack_pending: i64::from(spec.max_ack_pending),
        deliver_policy: match spec.deliver {
            DeliverFrom::All => DeliverPolicy::All,
            DeliverFrom::New => DeliverPolicy::New,
            DeliverFrom::Sequence(start_sequence) => {
                DeliverPolicy::ByStartSequence { start_sequence }
            }
        },
        filter_subject,
        filter_subjects,
        ..Default::default()
    }
}

/// Creates the durable consumer or looks it up, and checks that the server
/// has it as asked. Returns it and the ack wait the server applies.
async fn ensure_consumer(
    core: Arc<Core>,
    want: pull::Config,
) -> Result<(PullConsumer, Duration), BridgeError> {
    let durable = want.durable_name.clone().unwrap_or_default();
    let stream = core
        .js
        .get_stream_no_info(&core.stream.name)
        .await
        .map_err(nats)?;
    let mut consumer: PullConsumer = stream
        .get_or_create_consumer(&durable, want.clone())
        .await
        .map_err(nats)?;
    let have = consumer.info().await.map_err(nats)?.config.clone();
    let what = format!("consumer {durable} on stream {}", core.stream.name);
    let mismatch = |field: &'static str, want: String, have: String| {
        Err(BridgeError::Mismatch {
            what: what.clone(),
            field,
            want,
            have,
        })
    };
    let filters = |one: &str, many: &[String]| -> Vec<String> {
        let mut all: Vec<String> = many.to_vec();
        if !one.is_empty() {
            all.push(one.to_owned());
        }
        all.sort();
        all
    };
    let want_filters = filters(&want.filter_subject, &want.filter_subjects);
    let have_filters = filters(&have.filter_subject, &have.filter_subjects);
    if want_filters != have_filters {
        if have_filters.is_empty() && want_filters.len() > 1 {
            // A server that ignored `filter_subjects` (2.9 does, silently).
            return Err(BridgeError::Unsupported {
                feature: "several filter subjects on one consumer",
                server_version: core.server_version,
            });
        }
        return mismatch(
            "filter subjects",
            format!("{want_filters:?}"),
            format!("{have_filters:?}"),
        );
    }
    if have.ack_policy != AckPolicy::Explicit {
        return mismatch(
            "ack_policy",
            "Explicit".into(),
            format!("{:?}", have.ack_policy),
        );
    }
    if have.max_deliver != want.max_deliver {
        return mismatch(
            "max_deliver",
            want.max_deliver.to_string(),
            have.max_deliver.to_string(),
        );
    }
    if have.max_ack_pending != want.max_ack_pending {
        return mismatch(
            "max_ack_pending",
            want.max_ack_pending.to_string(),
            have.max_ack_pending.to_string(),
        );
    }
    if have.backoff != want.backoff {
        return mismatch(
            "backoff",
            format!("{:?}", want.backoff),
            format!("{:?}", have.backoff),
        );
    }
    // With a backoff the server sets ack_wait to its first step.
    let want_ack_wait = want.backoff.first().copied().unwrap_or(want.ack_wait);
    if have.ack_wait != want_ack_wait && have.ack_wait != want.ack_wait {
        return mismatch(
            "ack_wait",
            format!("{:?}", want.ack_wait),
            format!("{:?}", have.ack_wait),
        );
    }
    if have.deliver_policy != want.deliver_policy {
        return mismatch(
            "deliver_policy",
            format!("{:?}", want.deliver_policy),
            format!("{:?}", have.deliver_policy),
        );
    }
    if have.durable_name.as_deref() != Some(durable.as_str()) {
        return mismatch(
            "durable_name",
            durable.clone(),
            format!("{:?}", have.durable_name),
        );
    }
    Ok((consumer, have.ack_wait))
}

fn start<P>(
    core: &Arc<Core>,
    publisher: Publisher<P>,
    spec: ConsumerSpec,
    options: InboundOptions,
) -> Result<InboundHandle, BridgeError>
where
    P: DeserializeOwned + Clone + Send + Sync + 'static,
{
    if core.is_closed() {
        return Err(BridgeError::Closed);
    }
    let spec = validate(core, spec, &options)?;
    let inbox = match &options.dedup {
        Dedup::Store(s) => Some(s.for_payload::<P>()?),
        _ => None,
    };
    let window = match options.dedup {
        Dedup::Window { ids, keep } => Some(Arc::new(Mutex::new(Window::new(ids, keep)))),
        _ => None,
    };
    let want = consumer_config(core, &spec);
    let (consumer, ack_wait) = core.block_on(ensure_consumer(core.clone(), want))??;

    let durable = spec.durable.clone();
    let dlq_stream = if options.dead_letter_stream.is_empty() {
        core.dlq_stream()
    } else {
        options.dead_letter_stream.clone()
    };
    // The advisories are subscribed before the first pull, so that one
    // raised by this consumer's own pulls is seen.
    let client = core.client.clone();
    let stream_name = core.stream.name.clone();
    let subjects = [
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream_name}.{durable}"),
        format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream_name}.{durable}"),
    ];
    let (max_deliveries, terminated) = core.block_on(async move {
        let [a, b] = subjects;
        let a = client.subscribe(a).await.map_err(nats)?;
        let b = client.subscribe(b).await.map_err(nats)?;
        client.flush().await.map_err(nats)?;
        Ok::<_, BridgeError>((a, b))
    })??;

    let counters = Arc::new(Counters::default());
    let (to_worker, from_all) = mpsc::unbounded_channel::<Ev>();
    let feeder_stop = Arc::new(AtomicBool::new(false));
    let retried_here = Arc::new(Mutex::new(HashSet::new()));
    let (to_feeder, feeder_rx) = std_mpsc::channel::<Feed>();
    {
        let feeder = Feeder {
            rx: feeder_rx,
            tx: to_worker.clone(),
            publisher,
            upcasters: options.upcasters.clone(),
            window: window.clone(),
            inbox,
            retried_here: retried_here.clone(),
            stop: feeder_stop.clone(),
        };
        thread::Builder::new()
            .name("ringbus-nats-in".into())
            .spawn(move || feeder.run())
            .map_err(|e| BridgeError::Config(format!("cannot start the feeder thread: {e}")))?;
    }

    // The tasks that feed the worker.
    let mut tasks = Vec::new();
    let batch = spec.max_ack_pending.min(MAX_BATCH) as usize;
    tasks.push(core.rt.spawn(pull_loop(
        consumer,
        batch,
        to_worker.clone(),
        counters.clone(),
    )));
    {
        let tx = to_worker.clone();
        let mut sub = max_deliveries;
        let c = counters.clone();
        tasks.push(core.rt.spawn(async move {
            while let Some(m) = sub.next().await {
                bump(&c.adv_max_deliveries);
                if tx.send(Ev::MaxDeliveries(m.payload)).is_err() {
                    break;
                }
            }
        }));
        let mut sub = terminated;
        let counters = counters.clone();
        tasks.push(core.rt.spawn(async move {
            while sub.next().await.is_some() {
                bump(&counters.adv_terminated);
            }
        }));
    }
    let progress_after = ack_wait / 2;
    {
        let tx = to_worker.clone();
        let every = (progress_after / 2).max(Duration::from_millis(10));
        tasks.push(core.rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if tx.send(Ev::Tick).is_err() {
                    break;
                }
            }
        }));
    }

    let drain_timeout = options.drain_timeout;
    let worker = Worker {
        core: core.clone(),
        durable: durable.clone(),
        dlq_stream,
        max_attempts: u64::from(spec.max_attempts),
        options,
        progress_after,
        counters: counters.clone(),
        to_self: to_worker.clone(),
        to_feeder: Some(to_feeder),
        window,
        retried_here,
        in_flight: HashMap::new(),
        leaders: HashMap::new(),
        followers: HashMap::new(),
        next_token: 0,
        settled: 0,
        pulling: true,
        tasks,
        stop: None,
        unacked: Vec::new(),
        rng: seed(),
    };
    core.rt.spawn(worker.run(from_all));

    let part = Arc::new(InboundPart {
        durable,
        counters,
        to_worker,
        drain_timeout,
        stopped: AtomicBool::new(false),
        feeder_stop,
        core: Arc::downgrade(core),
    });
    if let Err(e) = core.register(part.clone()) {
        part.shutdown();
        return Err(e);
    }
    Ok(InboundHandle { part })
}

/// A non-zero xorshift seed from the clock.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos | 1
}

/// Pulls from the consumer for as long as the worker listens; a stream that
/// ends (a terminal pull error) is opened again.
async fn pull_loop(
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

/// The feeder thread: decode, dedup, inbox, publish on the bus.
struct Feeder<P: Send + Sync + 'static> {
    rx: std_mpsc::Receiver<Feed>,
    tx: mpsc::UnboundedSender<Ev>,
    publisher: Publisher<P>,
    upcasters: Option<Arc<Upcasters>>,
    window: Option<Arc<Mutex<Window>>>,
    inbox: Option<Arc<Box<InboxAppend<P>>>>,
    /// Ids this process NAK'd (their handlers failed): a store duplicate of
    /// one is a retry of ours and goes to the bus again.
    retried_here: Arc<Mutex<HashSet<EventId>>>,
    stop: Arc<AtomicBool>,
}

impl<P: DeserializeOwned + Clone + Send + Sync + 'static> Feeder<P> {
    fn run(mut self) {
        while let Ok(feed) = self.rx.recv() {
            let ev = self.feed(feed);
            if let Some(ev) = ev {
                if self.tx.send(ev).is_err() {
                    break;
                }
            }
        }
    }

    /// Handles one message; `Some` is what the worker hears now (`None`: it
    /// hears from the delivery's `on_done`).
    fn feed(&mut self, feed: Feed) -> Option<Ev> {
        let token = feed.token;
        let event =
            match wire::decode::<P>(feed.headers.as_ref(), &feed.body, self.upcasters.as_deref()) {
                Ok(event) => event,
                Err(error) => return Some(Ev::Undecodable { token, error }),
            };
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
        match self.publisher.publish_tracked(event) {
            Ok(delivery) => {
                let tx = self.tx.clone();
                delivery.on_done(move |outcome| {
                    let _ = tx.send(Ev::Done { token, outcome });
                });
                None
            }
            Err(_) => Some(Ev::NotPublished {
                token,
                closed: true,
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer's state on the runtime (see the module docs).
struct Worker {
    core: Arc<Core>,
    durable: String,
    dlq_stream: String,
    max_attempts: u64,
    options: InboundOptions,
    progress_after: Duration,
    counters: Arc<Counters>,
    to_self: mpsc::UnboundedSender<Ev>,
    to_feeder: Option<std_mpsc::Sender<Feed>>,
    window: Option<Arc<Mutex<Window>>>,
    retried_here: Arc<Mutex<HashSet<EventId>>>,
    in_flight: HashMap<u64, InFlight>,
    /// With dedup: the delivery of each event id now on the bus.
    leaders: HashMap<EventId, u64>,
    /// With dedup: deliveries of the same event that arrived meanwhile.
    followers: HashMap<u64, Vec<u64>>,
    next_token: u64,
    /// Messages acked, NAK'd for a retry or terminated before the stop.
    settled: u64,
    pulling: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The stop's reply, once asked.
    stop: Option<std_mpsc::SyncSender<PartReport>>,
    /// What the stop NAK'd or could not settle.
    unacked: Vec<Unacked>,
    rng: u64,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ev>) {
        while let Some(ev) = rx.recv().await {
            match ev {
                Ev::Msg(m) => self.on_message(*m).await,
                Ev::Done { token, outcome } => self.on_done(token, outcome).await,
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
                    let state = if closed {
                        // The bus is gone: nothing more can be delivered.
                        self.stop_pulling();
                        "NAK'd: the bus is shut down"
                    } else {
                        "NAK'd at shutdown: not yet on the bus"
                    };
                    self.nak_now(token, state).await;
                }
                Ev::Settled { token, how } => self.on_settled(token, how).await,
                Ev::Tick => self.progress().await,
                Ev::MaxDeliveries(payload) => self.on_max_deliveries(payload),
                Ev::DrainDeadline => self.drain_deadline().await,
                Ev::Stop(reply) => {
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
        let entry = InFlight {
            acker: Arc::new(acker),
            event_id,
            subject: m.subject.to_string(),
            stream_seq,
            delivered,
            headers: m.headers.clone(),
            body: m.payload.clone(),
            touched: Instant::now(),
            fed: false,
            settling: false,
        };
        self.in_flight.insert(token, entry);
        if self.stop.is_some() {
            self.nak_now(token, "NAK'd at shutdown: not yet on the bus")
                .await;
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
        if let (Some(id), false) = (event_id, matches!(self.options.dedup, Dedup::Off)) {
            match self.leaders.get(&id) {
                Some(&leader) if self.in_flight.contains_key(&leader) => {
                    // The same event is on the bus already (a redelivery of a
                    // delivery whose ack was lost, say): it shares that end.
                    self.followers.entry(leader).or_default().push(token);
                    if let Some(e) = self.in_flight.get_mut(&token) {
                        e.fed = true;
                    }
                    return;
                }
                _ => {
                    self.leaders.insert(id, token);
                }
            }
        }
        let feed = Feed {
            token,
            headers: m.headers,
            body: m.payload,
        };
        let sent = self
            .to_feeder
            .as_ref()
            .is_some_and(|f| f.send(feed).is_ok());
        if sent {
            if let Some(e) = self.in_flight.get_mut(&token) {
                e.fed = true;
            }
        } else {
            self.nak_now(token, "NAK'd: the feeder stopped").await;
        }
    }

    async fn on_done(&mut self, token: u64, outcome: DeliveryOutcome) {
        if !self.in_flight.contains_key(&token) {
            return;
        }
        if !outcome.is_success() {
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
        if let Some(id) = id {
            if self.leaders.get(&id) == Some(&leader) {
                self.leaders.remove(&id);
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
            subject: e.subject.clone(),
            headers: e.headers.clone(),
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
            Settled::Acked | Settled::AckFailed => {}
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
                "NAK'd at shutdown: not yet on the bus"
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
        subject: e.subject.clone(),
        stream_sequence: Some(e.stream_seq),
        state: state.to_owned(),
    }
}
