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
//!   stream order (I6). The worker hands it messages in batches: those it fed
//!   while more events were queued, sent together once none waits (at most 64),
//!   so the feeder wakes once per burst, not per message.
//! * A delivery's completion (`Delivery::on_done`) runs on a bus thread and
//!   only sends the outcome back to the worker through an unbounded channel.
//! * Messages in flight are bounded by the consumer's `max_ack_pending`: the
//!   server delivers no more until some are acked.
//!
//! Files: this one has the public handle, the counters and the start;
//! `consumer.rs` sets up and checks the JetStream consumer, `feeder.rs` is the
//! feeder thread, `worker.rs` the worker and the pull.

mod consumer;
mod feeder;
mod worker;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::bridge::{Core, Part, PartMetrics};
use super::dead_letters::DeadLetterReason;
use super::dedup::Window;
use super::error::nats;
use super::metrics::PartReport;
use super::{BridgeError, ConsumerSpec, Dedup, InboundOptions, NatsBridge};
use crate::{Bus, Publisher};
use consumer::{consumer_config, ensure_consumer, validate};
use feeder::Feeder;
use worker::{pull_loop, Ev, Feed, Worker};

/// Messages per pull request, at most.
const MAX_BATCH: u32 = 256;

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
    /// * **Ordering (I6):** [`Ordering::PerSubject`](super::Ordering::PerSubject): first deliveries reach the
    ///   bus in stream order; a NAK'd event comes back after later events of
    ///   its subject. [`Ordering::Strict`](super::Ordering::Strict): `max_ack_pending` is 1 — one
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
    /// # Examples
    /// ```no_run
    /// use std::time::Duration;
    /// use ringbus::nats::{ConsumerSpec, Dedup, InboundOptions, NatsBridge};
    /// use ringbus::{Bus, Event, HandlerError};
    ///
    /// let bridge = NatsBridge::builder("nats://127.0.0.1:4222").build()?;
    /// let bus = Bus::builder().build()?;
    /// bus.subscribe("payment.*", |e: &Event| -> Result<(), HandlerError> {
    ///     println!("{} {}", e.event_type, e.data);
    ///     Ok(())
    /// })?;
    /// let mut spec = ConsumerSpec::new("payments", ["payment.*"]);
    /// spec.max_attempts = 3;
    /// let options = InboundOptions {
    ///     dedup: Dedup::Window { ids: 100_000, keep: Duration::from_secs(300) },
    ///     ..InboundOptions::default()
    /// };
    /// let inbound = bridge.inbound(&bus, spec, options)?;
    /// // … later: NAKs what did not finish within the drain timeout.
    /// let report = inbound.stop();
    /// assert!(report.unacked.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
pub(super) struct Counters {
    pub(super) received: AtomicU64,
    pub(super) redelivered: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) naked: AtomicU64,
    pub(super) termed: AtomicU64,
    pub(super) dl_handler_failed: AtomicU64,
    pub(super) dl_undecodable: AtomicU64,
    pub(super) dl_max_deliveries: AtomicU64,
    pub(super) dl_failures: AtomicU64,
    pub(super) undecodable: AtomicU64,
    pub(super) dedup_dropped: AtomicU64,
    pub(super) progress_sent: AtomicU64,
    pub(super) ack_errors: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) adv_max_deliveries: AtomicU64,
    pub(super) adv_terminated: AtomicU64,
    pub(super) heartbeat_gaps: AtomicU64,
    pub(super) pull_errors: AtomicU64,
    pub(super) pull_restarts: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
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

    pub(super) fn dead_lettered(&self, reason: DeadLetterReason) {
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
    let on_bus = match options.dedup {
        Dedup::Off => None,
        _ => Some(Arc::new(Mutex::new(HashMap::new()))),
    };
    let (to_feeder, feeder_rx) = std_mpsc::channel::<Vec<Feed>>();
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
            on_bus: on_bus.clone(),
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
        // Not among the tasks the stop aborts: deliveries draining at the stop
        // still get progress. It ends with the worker (its channel closes).
        core.rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if tx.send(Ev::Tick).is_err() {
                    break;
                }
            }
        });
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
        feeds: Vec::new(),
        window,
        retried_here,
        in_flight: HashMap::default(),
        on_bus: on_bus.clone(),
        followers: HashMap::new(),
        next_token: 0,
        settled: 0,
        pulling: true,
        tasks,
        stop: None,
        unacked: Vec::new(),
        rng: seed(),
        bus_closed: false,
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
