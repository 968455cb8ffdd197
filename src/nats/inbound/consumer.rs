//! The JetStream side of an inbound consumer's start: the spec checked, the
//! consumer config asked for, and the server's answer compared with it (I1).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};

use super::super::bridge::Core;
use super::super::error::nats;
use super::super::{BridgeError, ConsumerSpec, Dedup, DeliverFrom, InboundOptions, Ordering};
use crate::pattern::Pattern;

/// Checks the spec and the options; the spec with `Strict` applied.
pub(super) fn validate(
    core: &Core,
    mut spec: ConsumerSpec,
    o: &InboundOptions,
) -> Result<ConsumerSpec, BridgeError> {
    let bad = |what: String| Err(BridgeError::Config(what));
    let d = &spec.durable;
    if d.is_empty()
        || d.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
    {
        return bad(format!(
            "durable name {d:?} must be one NATS subject token (no '.', '*', '>', spaces)"
        ));
    }
    if spec.patterns.is_empty() {
        return bad("an inbound consumer needs at least one pattern".into());
    }
    for p in &spec.patterns {
        Pattern::parse(p).map_err(|e| BridgeError::Config(format!("pattern {p:?}: {e}")))?;
    }
    if spec.max_attempts == 0 {
        return bad("max_attempts must be at least 1".into());
    }
    if spec.ack_wait.is_zero() {
        return bad("ack_wait must not be zero".into());
    }
    if spec.backoff.len() > spec.max_attempts as usize {
        return bad(format!(
            "{} backoff steps for {} attempts: the server needs max_deliver ({}) > steps",
            spec.backoff.len(),
            spec.max_attempts,
            spec.max_attempts + 1
        ));
    }
    if o.ordering == Ordering::Strict {
        spec.max_ack_pending = 1;
    }
    if spec.max_ack_pending == 0 {
        return bad("max_ack_pending must be at least 1".into());
    }
    let dlq = core.dlq_stream();
    if !o.dead_letter_stream.is_empty() && o.dead_letter_stream != dlq {
        // Dead letters go to `<prefix>.dlq.>`, which only the bridge's
        // dead-letter stream captures (two streams may not overlap).
        return bad(format!(
            "dead_letter_stream {:?}: this bridge's dead letters are in {dlq:?} (StreamSpec::name + \"_DLQ\")",
            o.dead_letter_stream
        ));
    }
    if let Dedup::Window { ids: 0, .. } = o.dedup {
        return bad("Dedup::Window needs room for at least one id".into());
    }
    if spec.patterns.len() > 1 && !core.server_version.at_least(2, 10) {
        return Err(BridgeError::Unsupported {
            feature: "several filter subjects on one consumer",
            server_version: core.server_version,
        });
    }
    Ok(spec)
}

/// The consumer config the bridge asks for.
pub(super) fn consumer_config(core: &Core, spec: &ConsumerSpec) -> pull::Config {
    let filters: Vec<String> = spec
        .patterns
        .iter()
        .map(|p| core.filter_subject(p))
        .collect();
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters[0].clone(), Vec::new())
    } else {
        (String::new(), filters)
    };
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: i64::from(spec.max_attempts) + 1,
        backoff: spec.backoff.clone(),
        max_ack_pending: i64::from(spec.max_ack_pending),
        deliver_policy: match spec.deliver {
            DeliverFrom::All => DeliverPolicy::All,
            DeliverFrom::New => DeliverPolicy::New,
            DeliverFrom::Sequence(start_sequence) => {
                DeliverPolicy::ByStartSequence { start_sequence }
            }
        },
        filter_subject,
        filter_subjects,
        ..Default::default()
    }
}

/// Creates the durable consumer or looks it up, and checks that the server
/// has it as asked. Returns it and the ack wait the server applies.
pub(super) async fn ensure_consumer(
    core: Arc<Core>,
    want: pull::Config,
) -> Result<(PullConsumer, Duration), BridgeError> {
    let durable = want.durable_name.clone().unwrap_or_default();
    let stream = core
        .js
        .get_stream_no_info(&core.stream.name)
        .await
        .map_err(nats)?;
    let mut consumer: PullConsumer = stream
        .get_or_create_consumer(&durable, want.clone())
        .await
        .map_err(nats)?;
    let have = consumer.info().await.map_err(nats)?.config.clone();
    let what = format!("consumer {durable} on stream {}", core.stream.name);
    let mismatch = |field: &'static str, want: String, have: String| {
        Err(BridgeError::Mismatch {
            what: what.clone(),
            field,
            want,
            have,
        })
    };
    let filters = |one: &str, many: &[String]| -> Vec<String> {
        let mut all: Vec<String> = many.to_vec();
        if !one.is_empty() {
            all.push(one.to_owned());
        }
        all.sort();
        all
    };
    let want_filters = filters(&want.filter_subject, &want.filter_subjects);
    let have_filters = filters(&have.filter_subject, &have.filter_subjects);
    if want_filters != have_filters {
        if have_filters.is_empty() && want_filters.len() > 1 {
            // A server that ignored `filter_subjects` (2.9 does, silently).
            return Err(BridgeError::Unsupported {
                feature: "several filter subjects on one consumer",
                server_version: core.server_version,
            });
        }
        return mismatch(
            "filter subjects",
            format!("{want_filters:?}"),
            format!("{have_filters:?}"),
        );
    }
    if have.ack_policy != AckPolicy::Explicit {
        return mismatch(
            "ack_policy",
            "Explicit".into(),
            format!("{:?}", have.ack_policy),
        );
    }
    if have.max_deliver != want.max_deliver {
        return mismatch(
            "max_deliver",
            want.max_deliver.to_string(),
            have.max_deliver.to_string(),
        );
    }
    if have.max_ack_pending != want.max_ack_pending {
        return mismatch(
            "max_ack_pending",
            want.max_ack_pending.to_string(),
            have.max_ack_pending.to_string(),
        );
    }
    if have.backoff != want.backoff {
        return mismatch(
            "backoff",
            format!("{:?}", want.backoff),
            format!("{:?}", have.backoff),
        );
    }
    // With a backoff the server sets ack_wait to its first step.
    let want_ack_wait = want.backoff.first().copied().unwrap_or(want.ack_wait);
    if have.ack_wait != want_ack_wait && have.ack_wait != want.ack_wait {
        return mismatch(
            "ack_wait",
            format!("{:?}", want.ack_wait),
            format!("{:?}", have.ack_wait),
        );
    }
    if have.deliver_policy != want.deliver_policy {
        return mismatch(
            "deliver_policy",
            format!("{:?}", want.deliver_policy),
            format!("{:?}", have.deliver_policy),
        );
    }
    if have.durable_name.as_deref() != Some(durable.as_str()) {
        return mismatch(
            "durable_name",
            durable.clone(),
            format!("{:?}", have.durable_name),
        );
    }
    Ok((consumer, have.ack_wait))
}
