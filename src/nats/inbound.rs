//! A durable pull consumer → the local bus (being written: issue 13, I1–I9).

use std::fmt::Write as _;

/// A running inbound consumer (placeholder).
#[derive(Debug)]
pub struct InboundHandle {}

/// One inbound consumer's counters (placeholder).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundMetrics {
    /// The durable name.
    pub durable: String,
}

impl InboundMetrics {
    pub(crate) fn write_prometheus(&self, out: &mut String) {
        let _ = writeln!(out, "# inbound {}", self.durable);
    }
}
