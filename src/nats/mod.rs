//! A bridge to NATS JetStream (feature `nats`): local events out to subjects,
//! with the broker dropping republished event ids; durable pull consumers into
//! a local bus, acked once every local handler has succeeded, NAK'd with a
//! delay when one failed, dead-lettered after the last attempt.
//!
//! ```text
//! bus A ──outbound──▶ <prefix>.ev.<event_type> (stream RINGBUS) ──inbound──▶ bus B
//!                                               dead letters ──▶ <prefix>.dlq.<durable>.<event_type> (RINGBUS_DLQ)
//! ```
//!
//! The bridge owns a small tokio runtime on a thread of its own; the bus stays
//! synchronous and its handlers never wait for the network.

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
