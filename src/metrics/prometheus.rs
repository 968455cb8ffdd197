//! The Prometheus text exposition format, version 0.0.4.
//!
//! Reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>.
//! Each metric family is written as one block: `# HELP name text`, `# TYPE name
//! kind`, then all its samples `name{label="value",…} value`. Help text escapes `\`
//! and newline; label values also escape `"`. Values are integers where exact,
//! otherwise Go-parsable floats (`NaN`, `+Inf`, `-Inf` for the specials).

use std::fmt::Write as _;

use super::{HandlerMetrics, HistogramSummary, MetricsSnapshot};
use crate::store::{CatchUpReport, Status};

/// Nanoseconds per second, for rendering times in seconds.
const NANOS_PER_SEC: f64 = 1e9;

pub(super) fn render(s: &MetricsSnapshot) -> String {
    let mut w = Writer::default();
    let b = &s.bus;

    let bus_counters: [(&str, &str, u64); 10] = [
        (
            "ringbus_events_published_total",
            "Events published to the bus.",
            b.counters.published,
        ),
        (
            "ringbus_events_dispatched_total",
            "Events the dispatcher took from the ring.",
            b.counters.dispatched,
        ),
        (
            "ringbus_follow_ups_total",
            "Events published from inside the bus (by handlers and hooks) and dispatched.",
            b.counters.follow_ups,
        ),
        (
            "ringbus_events_unmatched_total",
            "Events dispatched that no subscription matched (nobody handled them).",
            b.counters.unmatched,
        ),
        (
            "ringbus_deliveries_total",
            "Successful handler calls (one event to one handler).",
            b.counters.delivered,
        ),
        (
            "ringbus_failures_total",
            "Failed handler calls, errors and panics.",
            b.counters.failed,
        ),
        (
            "ringbus_panics_total",
            "Handler calls that panicked (included in ringbus_failures_total).",
            b.counters.panicked,
        ),
        (
            "ringbus_retries_total",
            "Retries scheduled.",
            b.counters.retried,
        ),
        (
            "ringbus_dead_letters_total",
            "Events sent to the dead-letter queue.",
            b.counters.dead_lettered,
        ),
        (
            "ringbus_dlq_evicted_total",
            "Dead letters evicted because the queue was full.",
            b.dlq_evicted,
        ),
    ];
    for (name, help, value) in bus_counters {
        w.family(name, help, "counter");
        w.sample(name, &[], &value.to_string());
    }
    let bus_gauges: [(&str, &str, u64); 3] = [
        (
            "ringbus_dlq_length",
            "Letters in the dead-letter queue.",
            b.dlq_len,
        ),
        (
            "ringbus_ring_capacity",
            "Slots in the ring.",
            b.ring_capacity,
        ),
        (
            "ringbus_ring_occupancy",
            "Ring slots published and not yet released by the dispatcher.",
            b.ring_occupancy,
        ),
    ];
    for (name, help, value) in bus_gauges {
        w.family(name, help, "gauge");
        w.sample(name, &[], &value.to_string());
    }
    w.family(
        "ringbus_batch_size",
        "Events per dispatcher batch.",
        "summary",
    );
    w.summary("ringbus_batch_size", &[], &b.batch_size, 1.0);

    type Field = fn(&HandlerMetrics) -> u64;
    let handler_families: [(&str, &str, &str, Field); 7] = [
        (
            "ringbus_handler_handled_total",
            "Successful calls of the handler.",
            "counter",
            |h| h.handled,
        ),
        (
            "ringbus_handler_errors_total",
            "Calls of the handler that returned an error.",
            "counter",
            |h| h.errors,
        ),
        (
            "ringbus_handler_panics_total",
            "Calls of the handler that panicked.",
            "counter",
            |h| h.panics,
        ),
        (
            "ringbus_handler_retries_total",
            "Retries scheduled for the handler.",
            "counter",
            |h| h.retries,
        ),
        (
            "ringbus_handler_dead_letters_total",
            "Events the handler gave up on, sent to the dead-letter queue.",
            "counter",
            |h| h.dead_lettered,
        ),
        (
            "ringbus_handler_pending",
            "Events waiting in the handler's retry or breaker queue.",
            "gauge",
            |h| h.pending,
        ),
        (
            "ringbus_handler_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            "gauge",
            |h| u64::from(h.breaker.as_gauge()),
        ),
    ];
    for (name, help, kind, field) in handler_families {
        w.family(name, help, kind);
        for h in &s.handlers {
            let labels = HandlerLabels::of(h);
            w.sample(name, &labels.pairs(), &field(h).to_string());
        }
    }
    type Dist = fn(&HandlerMetrics) -> &HistogramSummary;
    let handler_summaries: [(&str, &str, Dist); 2] = [
        (
            "ringbus_handler_duration_seconds",
            "Time spent in the handler per call.",
            |h| &h.handler_time_ns,
        ),
        (
            "ringbus_handler_latency_seconds",
            "Time from publish to handled, per event.",
            |h| &h.latency_ns,
        ),
    ];
    for (name, help, dist) in handler_summaries {
        w.family(name, help, "summary");
        for h in &s.handlers {
            let labels = HandlerLabels::of(h);
            w.summary(name, &labels.pairs(), dist(h), NANOS_PER_SEC);
        }
    }
    catch_ups(&mut w, &s.catch_ups);
    w.out
}

/// The store's catch-up subscriptions, labelled `name`.
fn catch_ups(w: &mut Writer, list: &[CatchUpReport]) {
    type Field = fn(&CatchUpReport) -> Option<u64>;
    let families: [(&str, &str, &str, Field); 13] = [
        (
            "ringbus_catchup_state",
            "Catch-up subscription state: 0 catching up, 1 live, 2 failed, 3 stopped.",
            "gauge",
            |c| {
                Some(match c.status {
                    Status::CatchingUp => 0,
                    Status::Live => 1,
                    Status::Failed { .. } => 2,
                    Status::Stopped => 3,
                })
            },
        ),
        (
            "ringbus_catchup_position",
            "The last store position the subscription handled (absent before the first).",
            "gauge",
            |c| c.position.map(|p| p.0),
        ),
        (
            "ringbus_catchup_lag_events",
            "Events between the subscription's position and the store's head.",
            "gauge",
            |c| Some(c.lag),
        ),
        (
            "ringbus_catchup_delivered_total",
            "Events handed to the subscription's handler successfully.",
            "counter",
            |c| Some(c.counters.delivered),
        ),
        (
            "ringbus_catchup_filtered_total",
            "Events the subscription's filter passed over.",
            "counter",
            |c| Some(c.counters.filtered),
        ),
        (
            "ringbus_catchup_from_store_total",
            "Events the subscription read from the store (history and gaps).",
            "counter",
            |c| Some(c.counters.from_store),
        ),
        (
            "ringbus_catchup_from_bus_total",
            "Events the subscription took live from the bus.",
            "counter",
            |c| Some(c.counters.from_bus),
        ),
        (
            "ringbus_catchup_caught_up_total",
            "Times the subscription caught up and went live.",
            "counter",
            |c| Some(c.counters.caught_up),
        ),
        (
            "ringbus_catchup_fell_behind_total",
            "Times the subscription's live queue overflowed and it went back to the store.",
            "counter",
            |c| Some(c.counters.fell_behind),
        ),
        (
            "ringbus_catchup_retries_total",
            "Handler calls of the subscription that were retries.",
            "counter",
            |c| Some(c.counters.retries),
        ),
        (
            "ringbus_catchup_dead_letters_total",
            "Events the subscription sent to the dead-letter queue.",
            "counter",
            |c| Some(c.counters.dead_lettered),
        ),
        (
            "ringbus_catchup_checkpoints_total",
            "Checkpoints the subscription saved.",
            "counter",
            |c| Some(c.counters.checkpoints_saved),
        ),
        (
            "ringbus_catchup_failures_total",
            "Times the subscription stopped failed.",
            "counter",
            |c| Some(c.counters.failures),
        ),
    ];
    for (name, help, kind, field) in families {
        w.family(name, help, kind);
        for c in list {
            if let Some(v) = field(c) {
                w.sample(name, &[("name", &c.name)], &v.to_string());
            }
        }
    }
    let name = "ringbus_catchup_events_per_second";
    w.family(
        name,
        "Events the subscription handled per second, over the last second or more.",
        "gauge",
    );
    for c in list {
        w.sample(name, &[("name", &c.name)], &float(c.events_per_sec));
    }
}

/// The label values of one handler lane, as owned strings.
struct HandlerLabels {
    subscription: String,
    handler: String,
    lane: String,
}

impl HandlerLabels {
    fn of(h: &HandlerMetrics) -> Self {
        HandlerLabels {
            subscription: h.subscription.get().to_string(),
            handler: h.handler.to_string(),
            lane: h.lane.to_string(),
        }
    }

    fn pairs(&self) -> [(&str, &str); 3] {
        [
            ("subscription", &self.subscription),
            ("handler", &self.handler),
            ("lane", &self.lane),
        ]
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    /// The `# HELP` and `# TYPE` lines of a family.
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, false);
        self.out.push('\n');
        // Writing into a `String` cannot fail.
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    /// The quantile (unless empty), `_sum` and `_count` samples of a summary, values divided by
    /// `divisor` (1 for counts, 1e9 for nanoseconds → seconds; a division, not a
    /// multiplication by 1e-9, so 2000 ns prints as exactly `0.000002`).
    fn summary(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSummary, divisor: f64) {
        // An empty distribution has no quantiles: none are written (rather than
        // `NaN`, which dashboards and alert rules handle badly).
        if h.count > 0 {
            for (q, v) in h.quantiles() {
                let q = float(q);
                let mut with_q: Vec<(&str, &str)> = labels.to_vec();
                with_q.push(("quantile", &q));
                self.sample(name, &with_q, &scaled(v, divisor));
            }
        }
        let sum = float(h.sum() / divisor);
        self.sample(&format!("{name}_sum"), labels, &sum);
        self.sample(&format!("{name}_count"), labels, &h.count.to_string());
    }
}

/// `v / divisor`: the integer itself when the divisor is 1, else a float.
fn scaled(v: u64, divisor: f64) -> String {
    if divisor == 1.0 {
        v.to_string()
    } else {
        float(v as f64 / divisor)
    }
}

/// A float as Prometheus (Go's `ParseFloat`) reads it.
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x == f64::INFINITY {
        "+Inf".to_string()
    } else if x == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's shortest round-trip form, no exponent: "0.5", "1500", "0.0000015".
        x.to_string()
    }
}

/// Escapes `\` and newline (help text), and `"` too for label values.
fn escape_into(out: &mut String, s: &str, label_value: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{BusMetrics, Counters};
    use crate::outcome::SubscriptionId;
    use crate::resilience::BreakerState;
    use crate::store::{CatchUpMetrics, Position};
    use std::collections::{BTreeMap, HashMap};

    /// A sample's key: metric name and its labels, sorted.
    type Key = (String, Vec<(String, String)>);

    /// A strict reader of the text format: checks the structure and returns every
    /// sample's value. Panics with the line number on the first violation.
    fn validate(text: &str) -> BTreeMap<Key, f64> {
        let mut help_seen: HashMap<String, usize> = HashMap::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut finished: Vec<String> = Vec::new(); // families whose block has ended
        let mut current: Option<String> = None;
        let mut samples = BTreeMap::new();
        assert!(text.ends_with('\n'), "output ends with a newline");
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            assert!(!line.is_empty(), "line {n}: empty line");
            let mut enter = |family: &str, current: &mut Option<String>| {
                if current.as_deref() != Some(family) {
                    assert!(
                        !finished.iter().any(|f| f == family),
                        "line {n}: family {family} is not contiguous"
                    );
                    if let Some(prev) = current.take() {
                        finished.push(prev);
                    }
                    *current = Some(family.to_string());
                }
            };
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(valid_metric_name(name), "line {n}: bad name {name:?}");
                assert!(!help.is_empty(), "line {n}: empty help");
                assert!(
                    help_seen.insert(name.to_string(), n).is_none(),
                    "line {n}: second HELP for {name}"
                );
                assert!(
                    !types.contains_key(name),
                    "line {n}: HELP after TYPE for {name}"
                );
                enter(name, &mut current);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(
                    help_seen.contains_key(name),
                    "line {n}: TYPE before HELP for {name}"
                );
                assert!(
                    ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                    "line {n}: unknown type {kind}"
                );
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "line {n}: second TYPE"
                );
                assert_eq!(
                    current.as_deref(),
                    Some(name),
                    "line {n}: TYPE away from its HELP"
                );
            } else {
                assert!(!line.starts_with('#'), "line {n}: unexpected comment");
                let (name, labels, value) =
                    parse_sample(line).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
                assert!(valid_metric_name(&name), "line {n}: bad name {name:?}");
                // The family: the name itself, or a summary's `_sum` / `_count`.
                let family = [
                    name.as_str(),
                    name.trim_end_matches("_sum"),
                    name.trim_end_matches("_count"),
                ]
                .into_iter()
                .find(|f| types.get(*f).is_some_and(|k| *f == name || k == "summary"))
                .unwrap_or_else(|| panic!("line {n}: sample {name} before its TYPE"))
                .to_string();
                assert_eq!(
                    current.as_deref(),
                    Some(family.as_str()),
                    "line {n}: sample outside its family block"
                );
                let kind = &types[&family];
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "line {n}: counter without _total");
                    assert!(value >= 0.0, "line {n}: negative counter");
                }
                let has_quantile = labels.iter().any(|(k, _)| k == "quantile");
                assert_eq!(
                    has_quantile,
                    kind == "summary" && name == family,
                    "line {n}: quantile label only on a summary's quantile samples"
                );
                let mut sorted = labels.clone();
                sorted.sort();
                assert!(
                    sorted.windows(2).all(|w| w[0].0 != w[1].0),
                    "line {n}: duplicate label"
                );
                assert!(
                    samples.insert((name.clone(), sorted), value).is_none(),
                    "line {n}: duplicate series"
                );
            }
        }
        for name in help_seen.keys() {
            assert!(types.contains_key(name), "{name} has HELP but no TYPE");
        }
        samples
    }

    fn valid_metric_name(s: &str) -> bool {
        let mut cs = s.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && s.starts_with("ringbus_")
    }

    fn valid_label_name(s: &str) -> bool {
        let mut cs = s.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// `name{k="v",…} value` (labels optional) → parts, with label values unescaped.
    #[allow(clippy::type_complexity)]
    fn parse_sample(line: &str) -> Result<(String, Vec<(String, String)>, f64), String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').ok_or("label without =")?;
                let key = &rest[..eq];
                if !valid_label_name(key) {
                    return Err(format!("bad label name {key:?}"));
                }
                let mut chars = rest[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err("label value not quoted".into());
                }
                let mut value = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(eq + 1 + i + 1);
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(format!("bad escape {other:?}")),
                        },
                        '\n' => return Err("raw newline in label value".into()),
                        c => value.push(c),
                    }
                }
                rest = &rest[end.ok_or("unterminated label value")?..];
                labels.push((key.to_string(), value));
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if !rest.starts_with('}') {
                    return Err("expected , or }".into());
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        if value.contains(' ') {
            return Err("timestamps are not written".into());
        }
        let v = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .map_err(|e| format!("bad value {v:?}: {e}"))?,
        };
        Ok((name, labels, v))
    }

    fn key(name: &str, labels: &[(&str, &str)]) -> Key {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        (name.to_string(), l)
    }

    fn known_snapshot() -> MetricsSnapshot {
        let mut billing = HandlerMetrics::new(SubscriptionId(7), "billing", 0);
        billing.handled = 40;
        billing.errors = 3;
        billing.panics = 1;
        billing.retries = 2;
        billing.dead_lettered = 1;
        billing.pending = 4;
        billing.breaker = BreakerState::Open;
        billing.handler_time_ns = HistogramSummary {
            count: 44,
            min: 1_000,
            max: 90_000,
            mean: 2_500.0,
            p50: 2_000,
            p90: 5_000,
            p99: 80_000,
            p999: 90_000,
        };
        // A name needing every escape: backslash, double quote, newline.
        let mut odd = HandlerMetrics::new(SubscriptionId(8), "a\\b \"q\"\nz", 3);
        odd.handled = 5;
        odd.breaker = BreakerState::HalfOpen;
        MetricsSnapshot {
            bus: BusMetrics {
                counters: Counters {
                    published: 100,
                    dispatched: 99,
                    unmatched: 2,
                    delivered: 45,
                    failed: 3,
                    panicked: 1,
                    retried: 2,
                    dead_lettered: 1,
                    batches: 10,
                    follow_ups: 4,
                },
                dlq_len: 1,
                dlq_evicted: 0,
                ring_capacity: 1024,
                ring_occupancy: 1,
                batch_size: HistogramSummary {
                    count: 10,
                    min: 1,
                    max: 32,
                    mean: 9.9,
                    p50: 8,
                    p90: 16,
                    p99: 32,
                    p999: 32,
                },
            },
            handlers: vec![billing, odd],
            catch_ups: vec![
                CatchUpReport {
                    name: "orders-view".into(),
                    status: Status::Live,
                    position: Some(Position(41)),
                    head: Some(Position(44)),
                    lag: 3,
                    events_per_sec: 1250.5,
                    counters: CatchUpMetrics {
                        delivered: 40,
                        filtered: 2,
                        from_store: 30,
                        from_bus: 12,
                        caught_up: 1,
                        ..CatchUpMetrics::default()
                    },
                },
                CatchUpReport {
                    name: "fresh".into(),
                    status: Status::CatchingUp,
                    position: None,
                    head: None,
                    lag: 0,
                    events_per_sec: 0.0,
                    counters: CatchUpMetrics::default(),
                },
            ],
        }
    }

    #[test]
    fn known_snapshot_renders_valid_exact_values() {
        let text = known_snapshot().to_prometheus();
        let samples = validate(&text);
        let get = |name: &str, labels: &[(&str, &str)]| {
            *samples
                .get(&key(name, labels))
                .unwrap_or_else(|| panic!("missing {name} {labels:?} in\n{text}"))
        };
        assert_eq!(get("ringbus_events_published_total", &[]), 100.0);
        assert_eq!(get("ringbus_events_dispatched_total", &[]), 99.0);
        assert_eq!(get("ringbus_events_unmatched_total", &[]), 2.0);
        assert_eq!(get("ringbus_deliveries_total", &[]), 45.0);
        assert_eq!(get("ringbus_failures_total", &[]), 3.0);
        assert_eq!(get("ringbus_panics_total", &[]), 1.0);
        assert_eq!(get("ringbus_retries_total", &[]), 2.0);
        assert_eq!(get("ringbus_dead_letters_total", &[]), 1.0);
        assert_eq!(get("ringbus_dlq_evicted_total", &[]), 0.0);
        assert_eq!(get("ringbus_dlq_length", &[]), 1.0);
        assert_eq!(get("ringbus_ring_capacity", &[]), 1024.0);
        assert_eq!(get("ringbus_ring_occupancy", &[]), 1.0);
        assert_eq!(get("ringbus_batch_size", &[("quantile", "0.5")]), 8.0);
        assert_eq!(get("ringbus_batch_size", &[("quantile", "0.999")]), 32.0);
        assert_eq!(get("ringbus_batch_size_sum", &[]), 99.0);
        assert_eq!(get("ringbus_batch_size_count", &[]), 10.0);

        let billing = [("subscription", "7"), ("handler", "billing"), ("lane", "0")];
        assert_eq!(get("ringbus_handler_handled_total", &billing), 40.0);
        assert_eq!(get("ringbus_handler_errors_total", &billing), 3.0);
        assert_eq!(get("ringbus_handler_panics_total", &billing), 1.0);
        assert_eq!(get("ringbus_handler_retries_total", &billing), 2.0);
        assert_eq!(get("ringbus_handler_dead_letters_total", &billing), 1.0);
        assert_eq!(get("ringbus_handler_pending", &billing), 4.0);
        assert_eq!(get("ringbus_handler_breaker_state", &billing), 2.0);
        let q = |quantile| {
            let mut l = billing.to_vec();
            l.push(("quantile", quantile));
            get("ringbus_handler_duration_seconds", &l)
        };
        assert_eq!(q("0.5"), 0.000002);
        assert_eq!(q("0.9"), 0.000005);
        assert_eq!(q("0.99"), 0.00008);
        assert_eq!(q("0.999"), 0.00009);
        assert_eq!(
            get("ringbus_handler_duration_seconds_sum", &billing),
            0.00011
        );
        assert_eq!(
            get("ringbus_handler_duration_seconds_count", &billing),
            44.0
        );
        // Nothing recorded: no quantiles (never NaN), zero sum and count.
        assert!(
            !samples
                .keys()
                .any(|(name, labels)| name == "ringbus_handler_latency_seconds"
                    && labels.iter().any(|(k, v)| k == "handler" && v == "billing")),
            "quantiles of an empty distribution in\n{text}"
        );
        assert_eq!(get("ringbus_handler_latency_seconds_sum", &billing), 0.0);
        assert_eq!(get("ringbus_handler_latency_seconds_count", &billing), 0.0);
        assert!(!text.contains("NaN"), "NaN in\n{text}");

        // The escaped name reads back as the original.
        let odd = [
            ("subscription", "8"),
            ("handler", "a\\b \"q\"\nz"),
            ("lane", "3"),
        ];
        assert_eq!(get("ringbus_handler_handled_total", &odd), 5.0);
        assert_eq!(get("ringbus_handler_breaker_state", &odd), 1.0);

        // Catch-up subscriptions, by name; no position sample before the first.
        let view = [("name", "orders-view")];
        assert_eq!(get("ringbus_catchup_state", &view), 1.0);
        assert_eq!(get("ringbus_catchup_position", &view), 41.0);
        assert_eq!(get("ringbus_catchup_lag_events", &view), 3.0);
        assert_eq!(get("ringbus_catchup_delivered_total", &view), 40.0);
        assert_eq!(get("ringbus_catchup_filtered_total", &view), 2.0);
        assert_eq!(get("ringbus_catchup_from_store_total", &view), 30.0);
        assert_eq!(get("ringbus_catchup_from_bus_total", &view), 12.0);
        assert_eq!(get("ringbus_catchup_caught_up_total", &view), 1.0);
        assert_eq!(get("ringbus_catchup_fell_behind_total", &view), 0.0);
        assert_eq!(get("ringbus_catchup_events_per_second", &view), 1250.5);
        let fresh = [("name", "fresh")];
        assert_eq!(get("ringbus_catchup_state", &fresh), 0.0);
        assert!(!samples.contains_key(&key("ringbus_catchup_position", &fresh)));

        // And the exact bytes of a few lines.
        for line in [
            "# HELP ringbus_handler_handled_total Successful calls of the handler.\n",
            "# TYPE ringbus_handler_handled_total counter\n",
            "ringbus_handler_handled_total{subscription=\"8\",handler=\"a\\\\b \\\"q\\\"\\nz\",lane=\"3\"} 5\n",
            "ringbus_batch_size{quantile=\"0.99\"} 32\n",
            "# TYPE ringbus_handler_latency_seconds summary\n",
        ] {
            assert!(text.contains(line), "missing line {line:?} in\n{text}");
        }
        // 14 bus families, 9 handler families and 14 catch-up families, each
        // with one HELP and one TYPE.
        assert_eq!(text.matches("# HELP ").count(), 37);
        assert_eq!(text.matches("# TYPE ").count(), 37);
        assert_eq!(get("ringbus_follow_ups_total", &[]), 4.0);
    }

    #[test]
    fn empty_snapshot_is_valid() {
        let text = MetricsSnapshot::default().to_prometheus();
        let samples = validate(&text);
        assert_eq!(samples[&key("ringbus_events_published_total", &[])], 0.0);
        // An empty summary: `_sum` and `_count` only, no quantile, no NaN.
        assert!(!samples.contains_key(&key("ringbus_batch_size", &[("quantile", "0.5")])));
        assert_eq!(samples[&key("ringbus_batch_size_sum", &[])], 0.0);
        assert_eq!(samples[&key("ringbus_batch_size_count", &[])], 0.0);
        assert!(!text.contains("NaN"), "NaN in\n{text}");
        assert!(!text.contains("subscription="), "no handler samples");
    }

    #[test]
    fn the_validator_rejects_broken_output() {
        let bad = [
            // sample before TYPE
            "ringbus_x_total 1\n",
            // TYPE before HELP
            "# TYPE ringbus_x_total counter\nringbus_x_total 1\n",
            // duplicate HELP
            "# HELP ringbus_x_total a\n# TYPE ringbus_x_total counter\n# HELP ringbus_x_total a\n",
            // counter without _total
            "# HELP ringbus_x a\n# TYPE ringbus_x counter\nringbus_x 1\n",
            // unescaped quote in a label value
            "# HELP ringbus_g a\n# TYPE ringbus_g gauge\nringbus_g{h=\"a\"b\"} 1\n",
            // family split in two blocks
            "# HELP ringbus_a a\n# TYPE ringbus_a gauge\nringbus_a 1\n# HELP ringbus_b b\n# TYPE ringbus_b gauge\nringbus_b 1\nringbus_a{x=\"1\"} 2\n",
            // invalid name
            "# HELP ringbus-a a\n# TYPE ringbus-a gauge\nringbus-a 1\n",
        ];
        for text in bad {
            let result = std::panic::catch_unwind(|| validate(text));
            assert!(result.is_err(), "accepted:\n{text}");
        }
    }

    #[test]
    fn floats_and_escapes() {
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(1.0), "1");
        assert_eq!(scaled(1_500, NANOS_PER_SEC), "0.0000015");
        let mut out = String::new();
        escape_into(&mut out, "a\\\"\n", false);
        assert_eq!(out, "a\\\\\"\\n", "help text keeps quotes");
        out.clear();
        escape_into(&mut out, "a\\\"\n", true);
        assert_eq!(out, "a\\\\\\\"\\n");
    }
}
