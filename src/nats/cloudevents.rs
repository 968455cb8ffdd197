//! The CloudEvents attribute mapping (CloudEvents 1.0, JSON event format):
//! how an [`Event`] is written as a CloudEvent in structured mode, the only mode
//! the CloudEvents NATS binding 1.0.2 defines, and read back.
//!
//! | CloudEvents attribute | from the event |
//! |---|---|
//! | `specversion` | `"1.0"` |
//! | `id` | `id`, UUID text |
//! | `source` | `source`, as a URI-reference: bytes outside the URI characters (RFC 3986: unreserved, reserved) and `%` are percent-encoded |
//! | `type` | `event_type` |
//! | `time` | `timestamp`, RFC 3339 in UTC with nanoseconds (`2026-12-06T16:53:32.123456789Z`) |
//! | `subject` | `subject`, when there is one |
//! | `datacontenttype` | `"application/json"` |
//! | `data` | `data`, as JSON |
//! | `correlationid` (extension) | `correlation_id`, UUID text, when there is one |
//! | `causationid` (extension) | `causation_id`, UUID text, when there is one |
//! | `schemaversion` (extension) | `version`, a JSON integer |
//!
//! Reading is strict: `specversion` must be `"1.0"`; `id` a UUID; `source` a
//! URI-reference whose decoded text is a valid source name; `type` a valid
//! event type; `time` present, RFC 3339 with an offset (converted to UTC), not
//! before 1970; `datacontenttype`, when present, JSON (`application/json` or a
//! `+json` type); `data_base64` is refused. A missing `data` reads as JSON
//! `null`; a missing `schemaversion` as 1. Anything else is an `Err` naming the
//! attribute, never a panic. The store position of an event is not part of the
//! CloudEvent (an event read back has none).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventId, EventType, Source, Subject, Timestamp};

/// The `specversion` written and accepted.
const SPEC_VERSION: &str = "1.0";
/// The `datacontenttype` written.
const DATA_CONTENT_TYPE: &str = "application/json";

#[derive(Serialize)]
struct CloudEventRef<'a, P> {
    specversion: &'static str,
    id: EventId,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlationid: Option<EventId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<EventId>,
    schemaversion: u32,
    data: &'a P,
}

/// The CloudEvents JSON event for `event`.
pub(crate) fn to_json<P: Serialize>(event: &Event<P>) -> Result<Vec<u8>, String> {
    let source = uri_encode(event.source.name());
    let ce = CloudEventRef {
        specversion: SPEC_VERSION,
        id: event.id,
        source: &source,
        event_type: event.event_type.name(),
        time: event.timestamp,
        subject: event.subject.as_ref().map(Subject::as_str),
        datacontenttype: DATA_CONTENT_TYPE,
        correlationid: event.correlation_id,
        causationid: event.causation_id,
        schemaversion: event.version,
        data: &event.data,
    };
    serde_json::to_vec(&ce).map_err(|e| format!("cannot write the CloudEvent: {e}"))
}

/// Every attribute as it came, checked afterwards (so that the error names the
/// attribute).
#[derive(Deserialize)]
struct CloudEventOwned {
    specversion: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    source: Option<serde_json::Value>,
    #[serde(rename = "type")]
    event_type: Option<serde_json::Value>,
    time: Option<serde_json::Value>,
    subject: Option<serde_json::Value>,
    datacontenttype: Option<serde_json::Value>,
    correlationid: Option<serde_json::Value>,
    causationid: Option<serde_json::Value>,
    schemaversion: Option<serde_json::Value>,
    data: Option<serde_json::Value>,
    data_base64: Option<serde_json::Value>,
}

/// The event in a CloudEvents JSON event; `Err` names the attribute at fault.
pub(crate) fn from_json<P: DeserializeOwned>(body: &[u8]) -> Result<Event<P>, String> {
    let ce: CloudEventOwned =
        serde_json::from_slice(body).map_err(|e| format!("not a CloudEvents JSON object: {e}"))?;
    match text(ce.specversion, "specversion")? {
        Text(v) if v == SPEC_VERSION => {}
        Text(v) => return Err(format!("specversion {v:?} is not \"1.0\"")),
    }
    let id = uuid(ce.id, "id")?.ok_or("the required attribute id is missing")?;
    let source = text(ce.source, "source")?.0;
    let source = uri_decode(&source).map_err(|e| format!("source {source:?}: {e}"))?;
    let source = Source::try_new(&source).map_err(|e| format!("source: {e}"))?;
    let event_type = text(ce.event_type, "type")?.0;
    let event_type = EventType::try_new(&event_type).map_err(|e| format!("type: {e}"))?;
    let time = text(ce.time, "time")?.0;
    let timestamp = parse_time(&time).map_err(|e| format!("time {time:?}: {e}"))?;
    let subject = match ce.subject {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(Subject::from(s)),
        Some(other) => return Err(format!("subject {other} is not a string")),
    };
    match ce.datacontenttype {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) if is_json(&t) => {}
        Some(other) => return Err(format!("datacontenttype {other} is not JSON")),
    }
    if ce.data_base64.is_some() {
        return Err("data_base64 (binary data) is not supported".into());
    }
    let correlation_id = uuid(ce.correlationid, "correlationid")?;
    let causation_id = uuid(ce.causationid, "causationid")?;
    let version = match ce.schemaversion {
        None | Some(serde_json::Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("schemaversion {v} is not an integer in 0 ..= 2^32 - 1"))?,
    };
    let data: P = serde_json::from_value(ce.data.unwrap_or(serde_json::Value::Null))
        .map_err(|e| format!("data: {e}"))?;
    let mut event = Event::new(event_type, source, data)
        .with_timestamp(timestamp)
        .with_version(version);
    event.id = id;
    event.subject = subject;
    event.correlation_id = correlation_id;
    event.causation_id = causation_id;
    Ok(event)
}

struct Text(String);

/// A required string attribute.
fn text(v: Option<serde_json::Value>, name: &str) -> Result<Text, String> {
    match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Text(s)),
        Some(serde_json::Value::String(_)) => Err(format!("the attribute {name} is empty")),
        None | Some(serde_json::Value::Null) => {
            Err(format!("the required attribute {name} is missing"))
        }
        Some(other) => Err(format!("the attribute {name} is not a string: {other}")),
    }
}

/// An optional UUID attribute.
fn uuid(v: Option<serde_json::Value>, name: &str) -> Result<Option<EventId>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => uuid::Uuid::parse_str(&s)
            .map(|u| Some(EventId::from_uuid(u)))
            .map_err(|e| format!("{name} {s:?} is not a UUID: {e}")),
        Some(other) => Err(format!("{name} {other} is not a UUID string")),
    }
}

/// `application/json`, `text/json` or a `+json` type, parameters aside.
fn is_json(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "application/json" || t == "text/json" || t.ends_with("+json")
}

/// Bytes a URI-reference may hold as they are (RFC 3986 unreserved and
/// reserved characters; `%` is not among them: it is always encoded).
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)
}

/// `text` as a URI-reference: every other byte (and `%`) as `%XX`.
fn uri_encode(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().all(uri_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if uri_char(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The inverse of [`uri_encode`]: `%XX` sequences decoded, the result UTF-8.
fn uri_decode(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

/// An RFC 3339 time with `Z` or a numeric offset, as UTC.
fn parse_time(text: &str) -> Result<Timestamp, String> {
    let t = text.trim();
    if t.len() < 20 {
        return Err("not an RFC 3339 time".into());
    }
    let (local, offset) = if let Some(rest) = t.strip_suffix(['Z', 'z']) {
        (rest, 0i64)
    } else {
        let (local, off) = t.split_at(t.len() - 6);
        let ob = off.as_bytes();
        let sign = match ob[0] {
            b'+' => 1i64,
            b'-' => -1i64,
            _ => return Err("no time zone offset (Z or ±hh:mm)".into()),
        };
        let h: i64 = off[1..3].parse().map_err(|_| "a bad offset hour")?;
        let m: i64 = off[4..6].parse().map_err(|_| "a bad offset minute")?;
        if ob[3] != b':' || h > 23 || m > 59 {
            return Err("a bad time zone offset".into());
        }
        (local, sign * (h * 3600 + m * 60))
    };
    let utc_text = format!("{local}Z");
    let at = humantime::parse_rfc3339(&utc_text).map_err(|e| e.to_string())?;
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "before 1970".to_owned())?;
    let shifted = if offset >= 0 {
        nanos.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        nanos.checked_add(Duration::from_secs(offset.unsigned_abs()))
    }
    .ok_or("before 1970")?;
    Ok(Timestamp::from_system_time(UNIX_EPOCH + shifted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event() -> Event {
        Event::new(
            EventType::new("order.placed"),
            Source::new("order service/β"),
            json!({"order": "o-1", "amount": 42.5}),
        )
        .with_subject("o-1")
        .with_version(3)
        .with_timestamp(Timestamp::now())
    }

    #[test]
    fn writes_the_attributes() {
        let e = event().caused_by(&event());
        let v: serde_json::Value = serde_json::from_slice(&to_json(&e).unwrap()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], e.id.to_string());
        assert_eq!(v["source"], "order%20service/%CE%B2");
        assert_eq!(v["type"], "order.placed");
        assert_eq!(v["time"], e.timestamp.to_string());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["subject"], "o-1");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"], e.data);
        assert_eq!(v["schemaversion"], 3);
        assert_eq!(v["causationid"], e.causation_id.unwrap().to_string());
        assert_eq!(v["correlationid"], e.correlation_id.unwrap().to_string());
        let back: Event = from_json(&to_json(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn optional_attributes_are_left_out() {
        let e = Event::new(EventType::new("tick"), Source::new("clock"), 1u32);
        let v: serde_json::Value = serde_json::from_slice(&to_json(&e).unwrap()).unwrap();
        for absent in ["subject", "correlationid", "causationid"] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        assert_eq!(v["source"], "clock");
    }

    fn reject(mut patch: impl FnMut(&mut serde_json::Value), why: &str) {
        let mut v: serde_json::Value = serde_json::from_slice(&to_json(&event()).unwrap()).unwrap();
        patch(&mut v);
        let err = from_json::<serde_json::Value>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.contains(why), "{err:?} should mention {why:?}");
    }

    #[test]
    fn reading_is_strict() {
        for attr in ["specversion", "id", "source", "type", "time"] {
            reject(|v| drop(v.as_object_mut().unwrap().remove(attr)), attr);
            reject(|v| v[attr] = json!(7), attr);
        }
        reject(|v| v["specversion"] = json!("0.3"), "specversion");
        reject(|v| v["id"] = json!("not-a-uuid"), "id");
        reject(|v| v["type"] = json!("order.*"), "type");
        reject(|v| v["type"] = json!(""), "type");
        reject(|v| v["source"] = json!("a%2"), "source");
        reject(|v| v["source"] = json!("a%ff"), "source");
        reject(|v| v["time"] = json!("yesterday"), "time");
        reject(|v| v["time"] = json!("2026-12-06T16:53:32"), "time");
        reject(|v| v["time"] = json!("1969-12-31T23:59:59Z"), "time");
        reject(
            |v| v["datacontenttype"] = json!("text/plain"),
            "datacontenttype",
        );
        reject(|v| v["data_base64"] = json!("AAAA"), "data_base64");
        reject(|v| v["subject"] = json!(1), "subject");
        reject(|v| v["schemaversion"] = json!(-1), "schemaversion");
        reject(|v| v["causationid"] = json!("x"), "causationid");
        assert!(from_json::<serde_json::Value>(b"[1, 2]").is_err());
        assert!(from_json::<serde_json::Value>(b"\xff").is_err());
        assert!(from_json::<u32>(&to_json(&event()).unwrap())
            .unwrap_err()
            .contains("data"));
    }

    #[test]
    fn offsets_are_converted_to_utc_and_data_defaults_to_null() {
        let mut v: serde_json::Value = serde_json::from_slice(&to_json(&event()).unwrap()).unwrap();
        v["time"] = json!("2026-12-06T18:53:32.5+02:00");
        v.as_object_mut().unwrap().remove("data");
        v.as_object_mut().unwrap().remove("schemaversion");
        let e: Event = from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(e.timestamp.to_string(), "2026-12-06T16:53:32.500000000Z");
        assert_eq!(e.data, serde_json::Value::Null);
        assert_eq!(e.version, 1);
    }

    proptest! {
        #[test]
        fn round_trip(
            source in "[^\\p{Cc}]{1,40}",
            ty in "[a-z0-9_-]{1,12}(\\.[a-z0-9_-]{1,12}){0,3}",
            subject in proptest::option::of(".{0,30}"),
            nanos in 0u64..=u64::MAX / 2,
            version in any::<u32>(),
            correlated in any::<bool>(),
            data in proptest::collection::vec(any::<i64>(), 0..5),
            text in ".{0,20}",
        ) {
            let mut e = Event::new(
                EventType::new(&ty),
                Source::new(&source),
                json!({"n": data, "t": text}),
            )
            .with_timestamp(Timestamp::from_nanos(nanos))
            .with_version(version);
            e.subject = subject.map(Subject::from);
            if correlated {
                e = e.caused_by(&Event::new(EventType::new("x"), Source::new("y"), json!(null)));
            }
            let json = to_json(&e).unwrap();
            let back: Event = from_json(&json).unwrap();
            prop_assert_eq!(back, e);
        }
    }
}
