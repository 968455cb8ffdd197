//! What the bridge reports: live counters ([`BridgeMetrics`], also as
//! Prometheus text) and, at shutdown, what it left unacknowledged
//! ([`BridgeReport`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::inbound::InboundMetrics;
use super::outbound::OutboundMetrics;
use super::ServerVersion;
use crate::event::EventId;

/// A snapshot of the bridge's counters ([`NatsBridge::metrics`](super::NatsBridge::metrics)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BridgeMetrics {
    /// The server's version at connect.
    pub server_version: ServerVersion,
    /// The connection.
    pub connection: ConnectionMetrics,
    /// Each outbound path, in the order they were started.
    pub outbound: Vec<OutboundMetrics>,
    /// Each inbound consumer, in the order they were started.
    pub inbound: Vec<InboundMetrics>,
}

/// The connection's events since the bridge connected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionMetrics {
    /// Whether the client is connected now.
    pub connected: bool,
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Times it was made again.
    pub reconnects: u64,
    /// Errors the client reported (slow consumer, server errors).
    pub errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    pub(crate) connected: std::sync::atomic::AtomicBool,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl ConnectionCounters {
    pub(crate) fn snapshot(&self) -> ConnectionMetrics {
        ConnectionMetrics {
            connected: self.connected.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl BridgeMetrics {
    /// The counters in the Prometheus text format, as `ringbus_nats_*`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let c = &self.connection;
        let _ = writeln!(
            out,
            "# TYPE ringbus_nats_connected gauge\nringbus_nats_connected {}",
            u8::from(c.connected)
        );
        for (name, v) in [
            ("disconnects", c.disconnects),
            ("reconnects", c.reconnects),
            ("errors", c.errors),
        ] {
            let _ = writeln!(
                out,
                "# TYPE ringbus_nats_{name}_total counter\nringbus_nats_{name}_total {v}"
            );
        }
        for o in &self.outbound {
            o.write_prometheus(&mut out);
        }
        for i in &self.inbound {
            i.write_prometheus(&mut out);
        }
        out
    }
}

/// What [`NatsBridge::shutdown`](super::NatsBridge::shutdown) left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeReport {
    /// Each outbound path and inbound consumer, in the order they were started.
    pub parts: Vec<PartReport>,
}

impl BridgeReport {
    /// Whether everything was acknowledged: every outbound event by the
    /// server, every inbound message to the server.
    pub fn is_clean(&self) -> bool {
        self.parts.iter().all(|p| p.unacked.is_empty())
    }
}

/// One outbound path's or inbound consumer's end.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartReport {
    /// `outbound:<patterns>`, `outbox:<name>` or `inbound:<durable>`.
    pub name: String,
    /// Events (outbound) or messages (inbound) completed: acked by the server,
    /// or acked/NAK'd/terminated to it.
    pub completed: u64,
    /// What was not acknowledged.
    pub unacked: Vec<Unacked>,
}

/// An event or message the bridge could not finish before it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unacked {
    /// The event's id, when known (an undecodable message has none).
    pub event_id: Option<EventId>,
    /// The NATS subject.
    pub subject: String,
    /// The stream sequence (inbound), if known.
    pub stream_sequence: Option<u64>,
    /// What became of it: `"not published"`, `"publish not acked"`,
    /// `"NAK'd at shutdown"`, …
    pub state: String,
}
