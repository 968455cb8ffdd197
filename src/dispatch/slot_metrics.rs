//! Per-handler metrics: the counters and sampled histograms one handler instance
//! publishes for metrics snapshots, and the breaker state as they store it.

use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Mutex as StdMutex;

use crate::event::{Event, Timestamp};
use crate::metrics::{HistogramSummary, LocalHistogram};
use crate::resilience::BreakerState;

/// Handler-time and latency are sampled on one call in this many, so that the
/// clock reads stay off most calls.
pub(super) const SAMPLE_EVERY: u32 = 256;

/// Counters and histograms of one handler instance, readable from any thread.
/// Written only by the task running the slot (stores, not read-modify-writes),
/// published once per batch.
#[derive(Debug, Default)]
pub(crate) struct SlotMetrics {
    pub(crate) handled: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) pending: AtomicU64,
    /// 0 closed, 1 half-open, 2 open.
    pub(crate) breaker: AtomicU8,
    pub(crate) histograms: StdMutex<Histograms>,
}

/// Sampled handler time and publish→handled latency, in nanoseconds (clamped to
/// the metrics histograms' 1 ns .. 60 s range, never dropped).
#[derive(Debug, Default)]
pub(crate) struct Histograms {
    pub(crate) handler_time: LocalHistogram,
    pub(crate) latency: LocalHistogram,
}

impl SlotMetrics {
    pub(crate) fn summaries(&self) -> (HistogramSummary, HistogramSummary) {
        let h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        (h.handler_time.summary(), h.latency.summary())
    }
}

pub(super) fn breaker_code(s: BreakerState) -> u8 {
    match s {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

pub(crate) fn breaker_from_code(c: u8) -> BreakerState {
    match c {
        1 => BreakerState::HalfOpen,
        2 => BreakerState::Open,
        _ => BreakerState::Closed,
    }
}

/// Records one sampled call's handler time and publish→handled latency. One
/// uncontended lock per sampled call (1 in `SAMPLE_EVERY`): cheaper than merging a
/// local histogram, whose `add` walks every bucket.
#[cold]
pub(super) fn record_sample<P>(
    metrics: &SlotMetrics,
    started: std::time::Instant,
    event: &Event<P>,
) {
    let took = started.elapsed().as_nanos() as u64;
    let now = Timestamp::now().as_nanos();
    let mut h = metrics.histograms.lock().unwrap_or_else(|e| e.into_inner());
    h.handler_time.record(took);
    h.latency
        .record(now.saturating_sub(event.timestamp.as_nanos()));
}
