//! Metrics snapshots and their Prometheus rendering.
//!
//! A [`MetricsSnapshot`] is plain data: the bus's counters and gauges
//! ([`BusMetrics`]) and one [`HandlerMetrics`] per handler lane, with
//! distributions summarised as [`HistogramSummary`]s (from `hdrhistogram`). The
//! bus fills one in on request; [`MetricsSnapshot::to_prometheus`] renders it in
//! the Prometheus text exposition format, version 0.0.4.
//!
//! Nothing the bus does goes uncounted: an event no subscription matched is
//! [`Counters::unmatched`], a failure is `failed` (and `panicked`), a dead letter
//! `dead_lettered`. Handler time and latency are timed on one call in 256 per
//! handler instance by default
//! ([`BusBuilder::metrics_sample_every`](crate::BusBuilder::metrics_sample_every)
//! changes it); until a call is timed their summaries are empty — all zero, never
//! `NaN`, and rendered without quantiles.

mod flow;
mod prometheus;

pub(crate) use flow::FlowEntry;
pub use flow::{FlowLog, FlowRecord, FlowTrace};

use hdrhistogram::Histogram;

use crate::outcome::SubscriptionId;
use crate::resilience::BreakerState;
use std::sync::Arc;

/// A distribution summarised: count, extremes, mean and four quantiles.
///
/// Values are in the unit recorded (nanoseconds for times, events for batch
/// sizes), with the precision of the source histogram (3 significant figures for
/// the bus's). All zero when nothing was recorded (the mean too: never `NaN`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSummary {
    /// Values recorded.
    pub count: u64,
    /// The smallest value.
    pub min: u64,
    /// The largest value.
    pub max: u64,
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
}

impl HistogramSummary {
    /// Summarises `h`.
    ///
    /// # Examples
    /// ```
    /// use ringbus::metrics::HistogramSummary;
    /// let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    /// for v in 1..=100 { h.record(v).unwrap(); }
    /// let s = HistogramSummary::from_hdr(&h);
    /// assert_eq!((s.count, s.min, s.max, s.p50, s.p99), (100, 1, 100, 50, 99));
    /// assert_eq!(s.mean, 50.5);
    /// ```
    pub fn from_hdr(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return HistogramSummary::default();
        }
        HistogramSummary {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }

    /// The sum of the values, as `mean * count` (so as precise as the mean).
    pub fn sum(&self) -> f64 {
        self.mean * self.count as f64
    }

    /// The quantiles, as `(quantile, value)` pairs: 0.5, 0.9, 0.99, 0.999.
    pub fn quantiles(&self) -> [(f64, u64); 4] {
        [
            (0.5, self.p50),
            (0.9, self.p90),
            (0.99, self.p99),
            (0.999, self.p999),
        ]
    }
}

/// The bus's counters, since it started: the one counters type of
/// [`Bus::stats`](crate::Bus::stats), the metrics snapshot
/// ([`BusMetrics::counters`]) and the shutdown report
/// ([`ShutdownReport::counters`](crate::ShutdownReport::counters)).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Events whose publish completed (returned `Ok`); a producer still waiting
    /// for a slot is not counted.
    pub published: u64,
    /// Events the dispatcher took from the ring and routed (whether or not any
    /// handler wanted them): equal to `published` after a clean shutdown.
    pub dispatched: u64,
    /// Dispatched events that no subscription matched (included in
    /// `dispatched`): nobody handled them. A growing count usually means a
    /// pattern that does not say what was meant — `"*"` is one token, so it
    /// matches `ping` but not `order.placed`; every event is `">"` or
    /// [`Bus::subscribe_all`](crate::Bus::subscribe_all) (see
    /// [`Pattern`](crate::pattern::Pattern)) — or events published before their
    /// handler subscribed.
    pub unmatched: u64,
    /// Successful handler calls (one event delivered to one handler).
    pub delivered: u64,
    /// Failed handler calls (errors and panics).
    pub failed: u64,
    /// Failed handler calls that panicked (included in `failed`).
    pub panicked: u64,
    /// Retries scheduled: failed calls given another attempt (counted when
    /// scheduled, so a retry still waiting is included).
    pub retried: u64,
    /// Events sent to the dead-letter queue (at shutdown: including the report's
    /// `undelivered`).
    pub dead_lettered: u64,
    /// Batches the dispatcher ran: from the ring, and of follow-ups.
    pub batches: u64,
    /// Follow-ups dispatched: events published from inside the bus (by its
    /// handlers and hooks), which go to the dispatcher without entering the
    /// ring. Not counted in `published` or `dispatched`.
    pub follow_ups: u64,
}

impl Counters {
    /// Every counter, in field order; with [`Counters::from_array`] the one place
    /// that lists the fields (so adding a counter touches this module, plus the
    /// code that counts it).
    fn to_array(self) -> [u64; 10] {
        [
            self.published,
            self.dispatched,
            self.unmatched,
            self.delivered,
            self.failed,
            self.panicked,
            self.retried,
            self.dead_lettered,
            self.batches,
            self.follow_ups,
        ]
    }

    fn from_array(a: [u64; 10]) -> Self {
        let [published, dispatched, unmatched, delivered, failed, panicked, retried, dead_lettered, batches, follow_ups] =
            a;
        Counters {
            published,
            dispatched,
            unmatched,
            delivered,
            failed,
            panicked,
            retried,
            dead_lettered,
            batches,
            follow_ups,
        }
    }
}

/// [`Counters`] published by their one writer (the dispatcher) for readers on any
/// thread. Relaxed stores and loads: a statistic, never used to order other
/// memory, so a snapshot may mix two batches' values.
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    values: [std::sync::atomic::AtomicU64; 10],
}

impl SharedCounters {
    pub(crate) fn store(&self, c: &Counters) {
        for (slot, v) in self.values.iter().zip(c.to_array()) {
            slot.store(v, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn load(&self) -> Counters {
        Counters::from_array(std::array::from_fn(|i| {
            self.values[i].load(std::sync::atomic::Ordering::Relaxed)
        }))
    }
}

/// The bus's own counters and gauges.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BusMetrics {
    /// Counters since the bus started.
    pub counters: Counters,
    /// Letters in the dead-letter queue now.
    pub dlq_len: u64,
    /// Letters the dead-letter queue evicted because it was full.
    pub dlq_evicted: u64,
    /// Ring slots.
    pub ring_capacity: u64,
    /// Ring slots published but not yet released by the dispatcher (its lag).
    pub ring_occupancy: u64,
    /// Events per dispatcher batch.
    pub batch_size: HistogramSummary,
}

/// One handler lane's counters, queue, breaker and timings.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerMetrics {
    /// The subscription.
    pub subscription: SubscriptionId,
    /// The handler's name.
    pub handler: Arc<str>,
    /// The lane (0 unless partitioned).
    pub lane: u32,
    /// Successful calls.
    pub handled: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Retries scheduled for this handler instance (counted when scheduled, so a
    /// retry still waiting is included).
    pub retries: u64,
    /// Events sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Events waiting in the handler's retry/breaker queue now.
    pub pending: u64,
    /// The circuit breaker's state (`Closed` without a breaker).
    pub breaker: BreakerState,
    /// Time in the handler per call, in nanoseconds.
    pub handler_time_ns: HistogramSummary,
    /// The event's age when handled (handled − `event.timestamp`), in nanoseconds.
    /// Its resolution is the timestamp's: [`Event::new`](crate::Event::new) stamps
    /// from the coarse clock (1–4 ms); events stamped with `Timestamp::now()` give
    /// nanosecond figures.
    pub latency_ns: HistogramSummary,
}

impl HandlerMetrics {
    /// All-zero metrics for one handler lane, with a closed breaker.
    pub fn new(subscription: SubscriptionId, handler: impl Into<Arc<str>>, lane: u32) -> Self {
        HandlerMetrics {
            subscription,
            handler: handler.into(),
            lane,
            handled: 0,
            errors: 0,
            panics: 0,
            retries: 0,
            dead_lettered: 0,
            pending: 0,
            breaker: BreakerState::Closed,
            handler_time_ns: HistogramSummary::default(),
            latency_ns: HistogramSummary::default(),
        }
    }
}

/// Everything the bus measures, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Bus-wide metrics.
    pub bus: BusMetrics,
    /// One entry per handler lane.
    pub handlers: Vec<HandlerMetrics>,
    /// One entry per live catch-up subscription of the event store started on
    /// this bus ([`store::subscribe_all`](crate::store::subscribe_all)): name,
    /// status, position, lag behind the store's head and counters. Listed
    /// from `start` until its handle is dropped.
    pub catch_ups: Vec<crate::store::CatchUpReport>,
}

impl MetricsSnapshot {
    /// The metrics of one handler lane, if present.
    pub fn handler(&self, subscription: SubscriptionId, lane: u32) -> Option<&HandlerMetrics> {
        self.handlers
            .iter()
            .find(|h| h.subscription == subscription && h.lane == lane)
    }

    /// Renders the snapshot in the Prometheus text exposition format 0.0.4.
    ///
    /// Every family gets one `# HELP` and one `# TYPE` line, then its samples.
    /// Names start with `ringbus_`; counters end in `_total`. Per-handler families
    /// carry the labels `subscription` (the number), `handler` and `lane`.
    /// Distributions are summaries (quantiles 0.5, 0.9, 0.99, 0.999, plus `_sum`
    /// and `_count`); times are converted to seconds, as Prometheus expects, so
    /// `handler_time_ns` becomes `ringbus_handler_duration_seconds` and
    /// `latency_ns` `ringbus_handler_latency_seconds`. An empty distribution (nothing
    /// recorded yet, or metrics off) is written as its `_sum` and `_count`, both 0,
    /// without quantile samples: never `NaN`. The breaker state is the gauge
    /// `ringbus_handler_breaker_state`: 0 closed, 1 half-open, 2 open.
    ///
    /// Two entries for the same subscription and lane would produce duplicate
    /// series; a snapshot from the bus never has them.
    ///
    /// # Examples
    /// ```
    /// use ringbus::metrics::MetricsSnapshot;
    /// let mut snapshot = MetricsSnapshot::default();
    /// snapshot.bus.counters.published = 3;
    /// let text = snapshot.to_prometheus();
    /// assert!(text.contains("# TYPE ringbus_events_published_total counter\n"));
    /// assert!(text.contains("\nringbus_events_published_total 3\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        prometheus::render(self)
    }
}

/// The histogram the bus records into: 1 ns .. 60 s (values outside are clamped,
/// never dropped), 3 significant figures. One per handler lane (handler time,
/// latency) and one per bus (batch sizes), each behind an uncontended lock taken on
/// a sampled call or once per batch.
#[derive(Clone, Debug)]
pub(crate) struct LocalHistogram {
    hist: Histogram<u64>,
}

impl Default for LocalHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalHistogram {
    /// The largest value kept apart: 60 s in nanoseconds.
    pub(crate) const HIGH: u64 = 60_000_000_000;

    /// An empty histogram.
    pub(crate) fn new() -> Self {
        LocalHistogram {
            hist: Self::new_hdr(),
        }
    }

    /// An empty `hdrhistogram` with the same bounds (a merge target).
    pub(crate) fn new_hdr() -> Histogram<u64> {
        Histogram::new_with_bounds(1, Self::HIGH, 3)
            .expect("1 ..= 60e9 with 3 significant figures is a valid histogram")
    }

    /// Records `v`, clamped to `0 ..= HIGH`.
    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        self.hist.saturating_record(v.min(Self::HIGH));
    }

    /// The summary of what was recorded.
    pub(crate) fn summary(&self) -> HistogramSummary {
        HistogramSummary::from_hdr(&self.hist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_distribution() {
        let mut h = LocalHistogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(
            (s.count, s.min, s.max, s.p50, s.p90, s.p99, s.p999),
            (1000, 1, 1000, 500, 900, 990, 999)
        );
        assert_eq!(s.mean, 500.5);
        assert_eq!(s.sum(), 500_500.0);
        assert_eq!(s.quantiles()[2], (0.99, 990));
    }

    #[test]
    fn empty_summary_is_all_zero() {
        let s = HistogramSummary::from_hdr(&LocalHistogram::new_hdr());
        assert_eq!(s, HistogramSummary::default());
        assert_eq!(s.sum(), 0.0);
    }

    #[test]
    fn local_histograms_clamp_and_merge() {
        let mut a = LocalHistogram::new();
        a.record(u64::MAX);
        a.record(3_600_000_000_000); // one hour

        a.record(0);
        let mut b = LocalHistogram::new();
        b.record(5_000);
        let mut total = LocalHistogram::new_hdr();
        total.add(&a.hist).unwrap();
        total.add(&b.hist).unwrap();
        let s = HistogramSummary::from_hdr(&total);
        assert_eq!(s.count, 4);
        assert_eq!(s.min, 0);
        // Sorted: 0, 5000, 60 s, 60 s; hdr reports the median's bucket top.
        assert!((5_000..=5_005).contains(&s.p50), "p50 {}", s.p50);
        // Clamped to 60 s (hdr reports the bucket's highest equivalent value).
        assert!(
            s.max >= LocalHistogram::HIGH
                && s.max < LocalHistogram::HIGH + LocalHistogram::HIGH / 500
        );
        a.hist.reset();
        assert_eq!(a.hist.len(), 0);
    }

    #[test]
    fn handler_lookup_by_subscription_and_lane() {
        let mut snap = MetricsSnapshot::default();
        snap.handlers
            .push(HandlerMetrics::new(SubscriptionId(1), "a", 0));
        snap.handlers
            .push(HandlerMetrics::new(SubscriptionId(1), "a", 1));
        assert_eq!(snap.handler(SubscriptionId(1), 1).unwrap().lane, 1);
        assert!(snap.handler(SubscriptionId(2), 0).is_none());
    }
}
