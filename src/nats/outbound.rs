//! Local events → JetStream (being written: issue 13, O1–O7).

use std::fmt::Write as _;

/// A running outbound path (placeholder).
#[derive(Debug)]
pub struct OutboundHandle {}

/// One outbound path's counters (placeholder).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboundMetrics {
    /// `outbound:<patterns>` or `outbox:<name>`.
    pub name: String,
}

impl OutboundMetrics {
    pub(crate) fn write_prometheus(&self, out: &mut String) {
        let _ = writeln!(out, "# outbound {}", self.name);
    }
}
