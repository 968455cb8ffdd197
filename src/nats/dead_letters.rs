//! Dead letters of inbound consumers (issue 13, I4): how the bridge writes
//! them to the dead-letter stream, and [`JetStreamDeadLetters`] to list,
//! redrive and discard them.
//!
//! A dead letter is the original message body, published to
//! `<prefix>.dlq.<durable>.<event_type>` in the dead-letter stream with
//! `Nats-Msg-Id: <event id>:<durable>` (so dead-lettering the same message
//! twice — from the bridge and from the max-deliveries advisory — stores it
//! once inside the duplicate window) and the headers below. The bridge awaits
//! the stream's publish ack **before** it terminates the original: a dead
//! letter that could not be stored leaves the original NAK'd, never lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::bridge::Core;
use super::error::nats;
use super::wire::{CONTENT_TYPE, MSG_ID};
use super::{BridgeError, NatsBridge};
use crate::event::EventId;

/// `Rb-Dlq-Reason`: [`DeadLetterReason`] as text.
pub const DLQ_REASON: &str = "Rb-Dlq-Reason";
/// `Rb-Dlq-Error`: the last handler error, or why the body cannot be decoded.
pub const DLQ_ERROR: &str = "Rb-Dlq-Error";
/// `Rb-Dlq-Deliveries`: how often the message had been delivered.
pub const DLQ_DELIVERIES: &str = "Rb-Dlq-Deliveries";
/// `Rb-Dlq-Stream-Seq`: the original's sequence in the event stream.
pub const DLQ_STREAM_SEQ: &str = "Rb-Dlq-Stream-Seq";
/// `Rb-Dlq-Consumer`: the durable consumer that gave up on it.
pub const DLQ_CONSUMER: &str = "Rb-Dlq-Consumer";
/// `Rb-Dlq-Subject`: the original's subject (where a redrive publishes it).
pub const DLQ_SUBJECT: &str = "Rb-Dlq-Subject";

/// The longest `Rb-Dlq-Error` value; longer messages are cut.
const MAX_ERROR_LEN: usize = 1024;

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// A local handler failed on the last attempt (or no handler took it and
    /// `ack_unrouted` is off).
    HandlerFailed,
    /// The body is not an event the bridge can decode (never retried).
    Undecodable,
    /// The server's delivery count ran out by ack-wait expiries (the bridge was
    /// down or stuck): seen on a delivery past `max_attempts`, or from the
    /// server's `MAX_DELIVERIES` advisory.
    MaxDeliveries,
}

impl DeadLetterReason {
    /// `"HandlerFailed"`, `"Undecodable"`, `"MaxDeliveries"`: the header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::HandlerFailed => "HandlerFailed",
            DeadLetterReason::Undecodable => "Undecodable",
            DeadLetterReason::MaxDeliveries => "MaxDeliveries",
        }
    }

    /// The reason a header value names.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "HandlerFailed" => Some(DeadLetterReason::HandlerFailed),
            "Undecodable" => Some(DeadLetterReason::Undecodable),
            "MaxDeliveries" => Some(DeadLetterReason::MaxDeliveries),
            _ => None,
        }
    }
}

/// One message to dead-letter.
#[derive(Debug)]
pub(crate) struct Letter {
    pub(crate) reason: DeadLetterReason,
    pub(crate) error: String,
    pub(crate) deliveries: u64,
    pub(crate) stream_seq: u64,
    pub(crate) event_id: Option<EventId>,
    /// The original's subject (`<prefix>.ev.<type>`).
    pub(crate) subject: String,
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) body: Bytes,
}

/// Publishes `letter` to the dead-letter stream `dlq_stream` for consumer
/// `durable` and waits for the stream's ack.
pub(crate) async fn publish(
    core: &Core,
    dlq_stream: &str,
    durable: &str,
    letter: Letter,
) -> Result<(), String> {
    let event_type = core.event_type_of(&letter.subject).unwrap_or("unknown");
    let subject = core.dlq_subject(durable, event_type);
    let msg_id = match letter.event_id {
        Some(id) => format!("{id}:{durable}"),
        None => format!("seq-{}:{durable}", letter.stream_seq),
    };
    let mut headers = HeaderMap::new();
    if let Some(ct) = letter.headers.as_ref().and_then(|h| h.get(CONTENT_TYPE)) {
        headers.insert(CONTENT_TYPE, ct.as_str());
    }
    headers.insert(DLQ_REASON, letter.reason.as_str());
    headers.insert(DLQ_ERROR, header_text(&letter.error).as_str());
    headers.insert(DLQ_DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(DLQ_STREAM_SEQ, letter.stream_seq.to_string().as_str());
    headers.insert(DLQ_CONSUMER, durable);
    headers.insert(DLQ_SUBJECT, letter.subject.as_str());
    let message = PublishMessage::build()
        .payload(letter.body)
        .headers(headers)
        .message_id(msg_id)
        .expected_stream(dlq_stream);
    let ack = core
        .js
        .send_publish(subject, message)
        .await
        .map_err(|e| format!("dead letter not published: {e}"))?;
    ack.await
        .map(|_| ())
        .map_err(|e| format!("dead letter not acked: {e}"))
}

/// A header value on one line, at most [`MAX_ERROR_LEN`] bytes.
fn header_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    if out.trim().is_empty() {
        out = "-".into();
    }
    out
}

/// One dead letter, as stored in the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JetStreamDeadLetter {
    /// Its sequence in the dead-letter stream (what `redrive` and `discard`
    /// take).
    pub sequence: u64,
    /// Its subject: `<prefix>.dlq.<durable>.<event_type>`.
    pub subject: String,
    /// The original's subject: `<prefix>.ev.<event_type>`.
    pub original_subject: String,
    /// The event id, when the body was an event (`Nats-Msg-Id` `<id>:<durable>`).
    pub event_id: Option<EventId>,
    /// `Rb-Dlq-Reason` (`None` if the header is missing or unknown).
    pub reason: Option<DeadLetterReason>,
    /// `Rb-Dlq-Error`.
    pub error: String,
    /// `Rb-Dlq-Deliveries`.
    pub deliveries: u64,
    /// `Rb-Dlq-Stream-Seq`: the original's sequence in the event stream.
    pub stream_sequence: u64,
    /// `Rb-Dlq-Consumer`.
    pub consumer: String,
    /// The original `Content-Type`, kept.
    pub content_type: Option<String>,
    /// The original body, unchanged.
    pub body: Bytes,
}

impl JetStreamDeadLetter {
    fn from_message(m: StreamMessage) -> Self {
        let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        let number = |name: &str| h(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        let event_id = h(MSG_ID).and_then(|v| {
            let id = v.split(':').next()?;
            uuid::Uuid::parse_str(id).ok().map(EventId::from_uuid)
        });
        JetStreamDeadLetter {
            sequence: m.sequence,
            subject: m.subject.to_string(),
            original_subject: h(DLQ_SUBJECT).unwrap_or_default(),
            event_id,
            reason: h(DLQ_REASON).and_then(|r: String| DeadLetterReason::parse(r.as_str())),
            error: h(DLQ_ERROR).unwrap_or_default(),
            deliveries: number(DLQ_DELIVERIES),
            stream_sequence: number(DLQ_STREAM_SEQ),
            consumer: h(DLQ_CONSUMER).unwrap_or_default(),
            content_type: h(CONTENT_TYPE),
            body: m.payload,
        }
    }
}

/// The dead letters of one inbound consumer, in the bridge's dead-letter
/// stream ([`NatsBridge::dead_letters`]).
///
/// # Examples
/// ```no_run
/// use ringbus::nats::{DeadLetterReason, NatsBridge};
///
/// let bridge = NatsBridge::builder("nats://127.0.0.1:4222").build()?;
/// let letters = bridge.dead_letters("payments");
/// for letter in letters.list(100)? {
///     match letter.reason {
///         // The handler is fixed: back to the consumer as a new message.
///         Some(DeadLetterReason::HandlerFailed) => letters.redrive(letter.sequence)?,
///         // Nothing will ever decode it.
///         _ => letters.discard(letter.sequence)?,
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JetStreamDeadLetters {
    core: Arc<Core>,
    durable: String,
    stream: String,
}

impl NatsBridge {
    /// The dead letters of the inbound consumer `durable`: those under
    /// `<prefix>.dlq.<durable>.>` in the bridge's dead-letter stream
    /// (`<stream>_DLQ`).
    pub fn dead_letters(&self, durable: &str) -> JetStreamDeadLetters {
        JetStreamDeadLetters {
            core: self.core.clone(),
            durable: durable.to_owned(),
            stream: self.core.dlq_stream(),
        }
    }
}

impl JetStreamDeadLetters {
    /// The consumer's durable name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    fn filter(&self) -> String {
        format!("{}.dlq.{}.>", self.core.prefix, self.durable)
    }

    /// Up to `limit` dead letters, oldest first.
    ///
    /// # Errors
    /// [`BridgeError::Nats`] if a request fails; [`BridgeError::Closed`].
    pub fn list(&self, limit: usize) -> Result<Vec<JetStreamDeadLetter>, BridgeError> {
        let js = self.core.js.clone();
        let stream = self.stream.clone();
        let filter = self.filter();
        self.core.block_on(async move {
            let stream = js.get_stream_no_info(&stream).await.map_err(nats)?;
            let mut out = Vec::new();
            let mut next = 1;
            while out.len() < limit {
                let found = stream
                    .raw_message_builder()
                    .sequence(next)
                    .next_by_subject(filter.clone())
                    .send()
                    .await;
                match found {
                    Ok(m) => {
                        next = m.sequence + 1;
                        out.push(JetStreamDeadLetter::from_message(m));
                    }
                    Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
                    Err(e) => return Err(nats(e)),
                }
            }
            Ok(out)
        })?
    }

    /// The dead letter at `sequence`, if it is one of this consumer's.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub fn get(&self, sequence: u64) -> Result<Option<JetStreamDeadLetter>, BridgeError> {
        let js = self.core.js.clone();
        let stream = self.stream.clone();
        let prefix = format!("{}.dlq.{}.", self.core.prefix, self.durable);
        self.core.block_on(async move {
            let stream = js.get_stream_no_info(&stream).await.map_err(nats)?;
            match stream.get_raw_message(sequence).await {
                Ok(m) if m.subject.as_str().starts_with(&prefix) => {
                    Ok(Some(JetStreamDeadLetter::from_message(m)))
                }
                Ok(_) => Ok(None),
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(e) => Err(nats(e)),
            }
        })?
    }

    /// Publishes the dead letter at `sequence` again to its original subject
    /// (the consumer gets it as a new message, delivery 1) with
    /// `Nats-Msg-Id: <event id>:redrive:<sequence>:<nanos>` — a fresh id, so
    /// the stream's duplicate window does not drop it — then, once the stream
    /// acked it, deletes the dead letter.
    ///
    /// # Errors
    /// [`BridgeError::Config`] if there is no dead letter of this consumer at
    /// `sequence`; [`BridgeError::Nats`] if the publish or the delete fails (a
    /// failed delete after a successful publish leaves the dead letter in
    /// place: redriving it again publishes it again).
    pub fn redrive(&self, sequence: u64) -> Result<(), BridgeError> {
        let letter = self
            .get(sequence)?
            .ok_or_else(|| self.not_found(sequence))?;
        let js = self.core.js.clone();
        let stream = self.stream.clone();
        let subject = if letter.original_subject.is_empty() {
            // Older letters without Rb-Dlq-Subject: the event type is the
            // subject's tail after `<prefix>.dlq.<durable>.`.
            let tail = letter
                .subject
                .splitn(4, '.')
                .nth(3)
                .unwrap_or("unknown")
                .to_owned();
            self.core.event_subject(&tail)
        } else {
            letter.original_subject.clone()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let id = match letter.event_id {
            Some(id) => format!("{id}:redrive:{sequence}:{nanos}"),
            None => format!("seq-{}:redrive:{sequence}:{nanos}", letter.stream_sequence),
        };
        let event_stream = self.core.stream.name.clone();
        let content_type = letter.content_type.clone();
        self.core.block_on(async move {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type {
                headers.insert(CONTENT_TYPE, ct.as_str());
            }
            let message = PublishMessage::build()
                .payload(letter.body)
                .headers(headers)
                .message_id(id)
                .expected_stream(event_stream);
            js.send_publish(subject, message)
                .await
                .map_err(nats)?
                .await
                .map_err(nats)?;
            let stream = js.get_stream_no_info(&stream).await.map_err(nats)?;
            stream.delete_message(sequence).await.map_err(nats)?;
            Ok(())
        })?
    }

    /// Deletes the dead letter at `sequence`.
    ///
    /// # Errors
    /// As [`redrive`](Self::redrive).
    pub fn discard(&self, sequence: u64) -> Result<(), BridgeError> {
        if self.get(sequence)?.is_none() {
            return Err(self.not_found(sequence));
        }
        let js = self.core.js.clone();
        let stream = self.stream.clone();
        self.core.block_on(async move {
            let stream = js.get_stream_no_info(&stream).await.map_err(nats)?;
            stream.delete_message(sequence).await.map_err(nats)?;
            Ok(())
        })?
    }

    fn not_found(&self, sequence: u64) -> BridgeError {
        BridgeError::Config(format!(
            "no dead letter of consumer {:?} at sequence {sequence}",
            self.durable
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_one_bounded_line() {
        assert_eq!(header_text("a\r\nb"), "a  b");
        assert_eq!(header_text(""), "-");
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = header_text(&long);
        assert!(cut.len() <= MAX_ERROR_LEN && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            DeadLetterReason::HandlerFailed,
            DeadLetterReason::Undecodable,
            DeadLetterReason::MaxDeliveries,
        ] {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(r));
        }
    }
}
