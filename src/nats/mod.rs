//! A bridge to NATS JetStream (feature `nats`): local events out to subjects,
//! with the broker dropping republished event ids; durable pull consumers into
//! a local bus, acked once every local handler has succeeded, NAK'd with a
//! delay when one failed, dead-lettered after the last attempt.
//!
//! ```text
//! bus A ──outbound──▶ <prefix>.ev.<event_type>  (stream RINGBUS)  ──inbound──▶ bus B
//! store ──outbound_from_store──┘                  dead letters ──▶ <prefix>.dlq.<durable>.<event_type>  (RINGBUS_DLQ)
//! ```
//!
//! The bridge owns a small tokio runtime on a thread of its own; the bus stays
//! synchronous and its handlers never wait for the network. Build one per
//! process with [`NatsBridge::builder`]; it creates the event stream and the
//! dead-letter stream if they are missing, and refuses ones that exist with
//! other settings.
//!
//! # Two machines
//! ```no_run
//! use ringbus::nats::{ConsumerSpec, InboundOptions, NatsBridge, OutboundOptions};
//! use ringbus::{event_type, source, BusBuilder, Event};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! // Machine A: its `order.*` events go out.
//! let bus = BusBuilder::new().build()?;
//! let bridge = NatsBridge::builder("nats://127.0.0.1:4222").build()?;
//! let out = bridge.outbound(&bus, "order.*", OutboundOptions::default())?;
//! bus.publisher()
//!     .publish(Event::new(event_type!("order.placed"), source!("shop"), json!({ "id": 1 })))?;
//! bus.flush()?;
//! assert!(out.flush(Duration::from_secs(5)), "stored by the server");
//!
//! // Machine B: a durable consumer feeds its bus; each message is acked once
//! // every handler succeeded.
//! let bus_b = BusBuilder::new().build()?;
//! bus_b.subscribe("order.placed", |e: &Event| println!("billing {}", e.data["id"]))?;
//! let bridge_b = NatsBridge::builder("nats://127.0.0.1:4222").build()?;
//! bridge_b.inbound(&bus_b, ConsumerSpec::new("billing", ["order.*"]), InboundOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is guaranteed
//! * **Outbound, bus mode ([`NatsBridge::outbound`]): at most once across a
//!   crash of this process.** An event the bus accepted and the server has not
//!   acked yet is lost if the process dies. While it runs, nothing is lost: a
//!   failed publish is retried with the same `Nats-Msg-Id` (the event id), so
//!   the server stores it once; retries exhausted → the bus's dead-letter
//!   queue. A full outbound queue fails the bridge's handler with a transient
//!   error and the bus's per-subject retry holds the event: the ring never
//!   stalls, order per subject is kept.
//! * **Outbound, outbox mode ([`NatsBridge::outbound_from_store`]): at least
//!   once across crashes.** The bridge reads the store from its checkpoint, the
//!   highest position with every position up to it acked by the server; after
//!   a crash it republishes from there. The server drops republished ids
//!   inside its `duplicate_window` (2 min by default); older duplicates reach
//!   consumers, whose [`Dedup`] drops them.
//! * **Inbound ([`NatsBridge::inbound`]): at least once into the bus.** A
//!   message is acked after every local handler subscribed to it succeeded
//!   ([`Publisher::publish_tracked`](crate::Publisher::publish_tracked)); a
//!   crash before the ack means a redelivery, which runs *all* local handlers
//!   again: handlers behind a bridge must be idempotent, or use
//!   [`Dedup::Window`] (in memory) or [`Dedup::Store`] (survives restarts).
//!   Local retry policies run first, per handler, in process; a handler that
//!   fails for good gets the message NAK'd with the delay
//!   [`InboundOptions::retry`] gives for its delivery count (a plain NAK would
//!   be redelivered at once), and on delivery [`ConsumerSpec::max_attempts`]
//!   it is dead-lettered: published to the dead-letter stream, its ack
//!   awaited, then terminated. An undecodable message is dead-lettered at
//!   once. First deliveries reach the bus in stream order; a NAK'd event comes
//!   back after later events of its subject unless [`Ordering::Strict`].
//!
//! # What a JetStream ack means
//! A publish ack means *stored by the server*, not *on disk*: a file stream
//! is synced on the server's `sync_interval` (2 minutes by default; `always`
//! exists on newer servers, at one fsync per message). nats-server 2.9.10, the
//! Debian package, has no such option. A power loss of the server can lose
//! acknowledged messages (Jepsen's report, nats-io/nats-server#7564). An
//! outbox publisher's checkpoint moves on such acks, so the store will not
//! republish what the server then lost.
//!
//! # nats-server 2.9
//! * One pattern per consumer: several need 2.10 (`filter_subjects`; 2.9
//!   silently ignores them, so [`NatsBridge::inbound`] refuses with
//!   [`BridgeError::Unsupported`] instead of consuming unfiltered).
//! * Tested against 2.9.10 and 2.15.1 (CI runs both; the 2.15.1 binary comes from PyPI
//!   and its leg is skipped, loudly, when PyPI cannot be reached).

mod bridge;
mod cloudevents;
mod config;
mod dead_letters;
mod dedup;
mod error;
mod inbound;
mod metrics;
mod outbound;
mod outbox;
mod wire;

pub use bridge::{NatsBridge, NatsBridgeBuilder, ServerVersion};
pub use config::{
    AckMode, ConsumerSpec, Dedup, DeliverFrom, InboundOptions, Ordering, OutboundOptions, Storage,
    StreamSpec, WireEncoding,
};
pub use dead_letters::{
    DeadLetterReason, JetStreamDeadLetter, JetStreamDeadLetters, DLQ_CONSUMER, DLQ_DELIVERIES,
    DLQ_ERROR, DLQ_REASON, DLQ_STREAM_SEQ, DLQ_SUBJECT,
};
pub use dedup::StoreDedup;
pub use error::BridgeError;
pub use inbound::{InboundHandle, InboundMetrics};
pub use metrics::{BridgeMetrics, BridgeReport, ConnectionMetrics, PartReport, Unacked};
pub use outbound::{OutboundHandle, OutboundMetrics};
pub use outbox::SAVE_EVERY;
pub use wire::{CLOUDEVENTS_CONTENT_TYPE, FRAME_CONTENT_TYPE};

/// The client crate the bridge is built on, for
/// [`NatsBridgeBuilder::connect_options`] (the same version).
pub use async_nats;
