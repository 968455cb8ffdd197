//! Per-handler metrics: the counters and sampled histograms one handler instance
//! publishes for metrics snapshots, and the breaker state as they store it.

use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Mutex as StdMutex;

use crate::event::{Event, Timestamp};
use crate::metrics::{HistogramSummary, LocalHistogram};
use crate::resilience::BreakerState;

/// Handler time and latency are sampled on one call in this many by default, so
/// that the clock reads stay off most calls.
pub(crate) const DEFAULT_SAMPLE_EVERY: u32 = 256;

/// Which handler calls are timed: one in every `n` (`n` a power of two, so the
/// test is a mask, not a division on every call), or none (metrics off).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sampling {
    /// `n - 1`; `None` = metrics off.
    mask: Option<u32>,
}

impl Sampling {
    /// Nothing sampled, no batch sizes recorded.
    pub(crate) const OFF: Sampling = Sampling { mask: None };

    /// One call in every `every`; `None` unless `every` is a power of two.
    pub(crate) fn one_in(every: u32) -> Option<Sampling> {
        every.is_power_of_two().then(|| Sampling {
            mask: Some(every - 1),
        })
    }

    /// Whether metrics are on (histograms recorded at all).
    #[inline]
    pub(crate) fn is_on(self) -> bool {
        self.mask.is_some()
    }

    /// Whether the call with this running count is timed.
    #[inline]
    pub(crate) fn hit(self, count: u32) -> bool {
        matches!(self.mask, Some(mask) if count & mask == 0)
    }
}

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
/// uncontended lock per sampled call (see [`Sampling`]): cheaper than merging a
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_hits_one_call_in_n() {
        let hits = |s: Sampling| (1..=1024u32).filter(|&c| s.hit(c)).count();
        assert_eq!(hits(Sampling::one_in(1).unwrap()), 1024);
        assert_eq!(hits(Sampling::one_in(256).unwrap()), 4);
        assert_eq!(hits(Sampling::OFF), 0);
        assert!(!Sampling::OFF.is_on());
        assert!(Sampling::one_in(1 << 31).unwrap().hit(0));
        for bad in [0, 3, 100, u32::MAX] {
            assert_eq!(Sampling::one_in(bad), None, "{bad}");
        }
    }
}
