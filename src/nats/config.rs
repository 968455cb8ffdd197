//! What the bridge is asked to set up: the JetStream streams, the outbound
//! publish pipeline, the inbound consumers, and how events are put on the wire.

use std::sync::Arc;
use std::time::Duration;

use super::dedup::StoreDedup;
use crate::resilience::RetryPolicy;
use crate::store::upcast::Upcasters;

/// The JetStream stream the bridge publishes events to, and the settings it is
/// created with when missing. A stream that exists with other settings is an
/// error ([`BridgeError::Mismatch`](super::BridgeError::Mismatch)),
/// never silently changed.
///
/// The dead-letter stream is `<name>_DLQ`, on `<prefix>.dlq.>`, with the same
/// settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name (`"RINGBUS"`).
    pub name: String,
    /// Where the server keeps it (`File`).
    pub storage: Storage,
    /// How many servers keep a copy (1).
    pub replicas: usize,
    /// How long the server remembers published ids to drop a republish
    /// (2 minutes, the server's default).
    pub duplicate_window: Duration,
    /// How long messages are kept (`None`: no limit).
    pub max_age: Option<Duration>,
    /// How many bytes are kept (`None`: no limit).
    pub max_bytes: Option<u64>,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            name: "RINGBUS".into(),
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            max_bytes: None,
        }
    }
}

impl StreamSpec {
    /// The default settings, under the stream name `name`.
    pub fn named(name: impl Into<String>) -> Self {
        StreamSpec {
            name: name.into(),
            ..StreamSpec::default()
        }
    }

    /// The dead-letter stream's name: `<name>_DLQ`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.name)
    }
}

/// Where a JetStream stream keeps its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Storage {
    /// On the server's disk (synced on the server's `sync_interval`: see the
    /// module docs on what a publish ack means).
    #[default]
    File,
    /// In the server's memory.
    Memory,
}

/// How events are put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WireEncoding {
    /// The codec's event frame (FORMAT.md), with its CRC-32C;
    /// `Content-Type: application/vnd.ringbus.frame.v1`.
    #[default]
    Frame,
    /// The CloudEvents JSON event format (structured mode, the only one the
    /// CloudEvents NATS binding 1.0.2 defines);
    /// `Content-Type: application/cloudevents+json`.
    CloudEventsJson,
}

/// How the outbound side publishes.
#[derive(Clone, Debug)]
pub struct OutboundOptions {
    /// Publish acks outstanding at most (256).
    pub max_in_flight: usize,
    /// Events accepted from the bus and not yet published, at most (65 536).
    /// When full, the bridge's handler fails the event with a transient error
    /// and the bus's retry holds it: the ring never stalls.
    pub queue: usize,
    /// How long to wait for one publish ack before retrying it (5 s).
    pub publish_timeout: Duration,
    /// How often and when a failed publish is tried again (with the same
    /// `Nats-Msg-Id`, so a retry never duplicates).
    pub retry: RetryPolicy,
}

impl Default for OutboundOptions {
    fn default() -> Self {
        OutboundOptions {
            max_in_flight: 256,
            queue: 65_536,
            publish_timeout: Duration::from_secs(5),
            retry: RetryPolicy::exponential(
                Duration::from_millis(100),
                2.0,
                Duration::from_secs(10),
                10,
            ),
        }
    }
}

/// Where a new durable consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeliverFrom {
    /// The first message in the stream.
    #[default]
    All,
    /// Messages published after the consumer is created.
    New,
    /// The message at this stream sequence.
    Sequence(u64),
}

/// One durable pull consumer on the event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The durable name (also names its dead letters).
    pub durable: String,
    /// Event-type patterns, in the bus's grammar (which is NATS's): `payment.*`
    /// becomes the filter `<prefix>.ev.payment.*`. Several patterns need a
    /// 2.10 server.
    pub patterns: Vec<String>,
    /// Where a new consumer starts (`All`).
    pub deliver: DeliverFrom,
    /// How long the server waits for an ack before redelivering (30 s).
    pub ack_wait: Duration,
    /// Deliveries the bridge tries before it dead-letters a message (5). The
    /// server's `max_deliver` is one more, so the bridge decides first.
    pub max_attempts: u32,
    /// Redelivery delays after ack-wait expiries (the server's `backoff`;
    /// empty: `ack_wait` each time).
    pub backoff: Vec<Duration>,
    /// Messages delivered and not yet acked, at most (1 000).
    pub max_ack_pending: u32,
}

impl ConsumerSpec {
    /// A durable consumer named `durable` for `patterns`, with the defaults.
    pub fn new<I, S>(durable: impl Into<String>, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ConsumerSpec {
            durable: durable.into(),
            patterns: patterns.into_iter().map(Into::into).collect(),
            deliver: DeliverFrom::All,
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Vec::new(),
            max_ack_pending: 1_000,
        }
    }
}

/// How a handled message is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckMode {
    /// A plain ack (the server may lose it: the message is then redelivered).
    #[default]
    Ack,
    /// An ack the server confirms (`AckSync`): slower, but a confirmed message
    /// is not redelivered.
    DoubleAck,
}

/// In which order inbound events reach the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ordering {
    /// First deliveries in stream order; a message that failed and was NAK'd
    /// comes back after later ones.
    #[default]
    PerSubject,
    /// Stream order even across failures: one message in flight at a time.
    Strict,
}

/// How inbound redeliveries are recognised and dropped.
///
/// Duplicates are recognised by the decoded event id (not the `Nats-Msg-Id`
/// header, so a replay published under another message id is caught too).
/// With `Window` or `Store`, a delivery of an event whose first copy is still
/// on the bus (the restarted server redelivering work whose ack it never got,
/// say) does not reach the bus again: it waits for that copy and is acked,
/// NAK'd or terminated with it.
#[derive(Clone, Debug, Default)]
pub enum Dedup {
    /// Every delivery reaches the bus (handlers must be idempotent).
    #[default]
    Off,
    /// The ids of completed events (acked: every handler succeeded) are
    /// remembered, and a later delivery of one is acked without reaching the
    /// bus. Memory only: lost with the process.
    Window {
        /// At most this many ids; beyond it the oldest is forgotten first
        /// (size it for the event rate × `keep`).
        ids: usize,
        /// How long each id is remembered (at least the stream's duplicate
        /// window, for outbox replays the server no longer drops).
        keep: Duration,
    },
    /// **Durable**: every inbound event is appended to a local event store
    /// (one inbox stream per event id, with the store's idempotent append)
    /// before it is published on the bus; an id already there is acked
    /// without reaching the bus — also after a restart. See [`StoreDedup`].
    Store(StoreDedup),
}

/// How the inbound side takes messages into the bus.
#[derive(Clone, Debug)]
pub struct InboundOptions {
    /// NAK delays by delivery count (1 s, ×2, up to 60 s, jitter 0.2): after
    /// delivery *n* failed, the message is NAK'd with the policy's delay
    /// before retry *n*, jittered. Only the delays and the jitter count; how
    /// many deliveries are tried is [`ConsumerSpec::max_attempts`], and every
    /// failure is retried (the local handlers' own policies decide what is
    /// worth retrying in process).
    pub retry: RetryPolicy,
    /// Plain or confirmed acks.
    pub ack: AckMode,
    /// Per-subject (default) or strict stream order.
    pub ordering: Ordering,
    /// Dropping redeliveries of completed events.
    pub dedup: Dedup,
    /// The stream dead letters go to: empty (the default) or the bridge's
    /// dead-letter stream, `<StreamSpec::name>_DLQ` (`"RINGBUS_DLQ"`), the only
    /// stream that captures `<prefix>.dlq.>`; another name is
    /// [`BridgeError::Config`](super::BridgeError::Config). Dead letters are
    /// published with `Nats-Expected-Stream` set to it.
    pub dead_letter_stream: String,
    /// Ack a message no local handler takes (true); false: NAK it.
    pub ack_unrouted: bool,
    /// How long shutdown waits for deliveries in flight (10 s).
    pub drain_timeout: Duration,
    /// Upcasting of old event versions as they are decoded.
    pub upcasters: Option<Arc<Upcasters>>,
}

impl Default for InboundOptions {
    fn default() -> Self {
        InboundOptions {
            retry: RetryPolicy::exponential(
                Duration::from_secs(1),
                2.0,
                Duration::from_secs(60),
                u32::MAX,
            )
            .with_jitter(0.2),
            ack: AckMode::Ack,
            ordering: Ordering::PerSubject,
            dedup: Dedup::Off,
            dead_letter_stream: String::new(),
            ack_unrouted: true,
            drain_timeout: Duration::from_secs(10),
            upcasters: None,
        }
    }
}
