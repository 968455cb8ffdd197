//! Events on the wire: the body and headers of a NATS message for an event, and
//! back.
//!
//! * `Frame`: the codec's event frame (FORMAT.md) as the body,
//!   `Content-Type: application/vnd.ringbus.frame.v1`.
//! * `CloudEventsJson`: the CloudEvents JSON event format as the body
//!   ([`cloudevents`](super::cloudevents)), `Content-Type: application/cloudevents+json`.
//!
//! Either way `Nats-Msg-Id` is the event id as UUID text, so a republish of an
//! event inside the stream's duplicate window is dropped by the server.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{cloudevents, WireEncoding};
use crate::codec;
use crate::event::{Event, EventId};
use crate::store::upcast::{decode_upcast, Upcasters};

/// The content type of a codec event frame.
pub const FRAME_CONTENT_TYPE: &str = "application/vnd.ringbus.frame.v1";
/// The content type of a CloudEvents JSON event.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// `Nats-Msg-Id`.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// `Content-Type`.
pub(crate) const CONTENT_TYPE: &str = "Content-Type";

/// The body and headers of the message for `event`.
pub(crate) fn encode<P: Serialize>(
    event: &Event<P>,
    encoding: WireEncoding,
) -> Result<(HeaderMap, Bytes), String> {
    let body = match encoding {
        WireEncoding::Frame => {
            let mut out = Vec::new();
            codec::encode(event, &mut out).map_err(|e| e.to_string())?;
            out
        }
        WireEncoding::CloudEventsJson => cloudevents::to_json(event)?,
    };
    Ok((headers(event.id, encoding), Bytes::from(body)))
}

/// The headers of the message for the event `id` in `encoding`: what
/// [`encode`] sets, again (for a republish, whose headers were handed over
/// with the first one).
pub(crate) fn headers(id: EventId, encoding: WireEncoding) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut text = uuid::Uuid::encode_buffer();
    headers.insert(MSG_ID, &*id.as_uuid().hyphenated().encode_lower(&mut text));
    headers.insert(
        CONTENT_TYPE,
        match encoding {
            WireEncoding::Frame => FRAME_CONTENT_TYPE,
            WireEncoding::CloudEventsJson => CLOUDEVENTS_CONTENT_TYPE,
        },
    );
    headers
}

/// The event in a message's body, by its `Content-Type` (a frame when there is
/// none): `Err` says why it cannot be decoded. A frame must be exactly one
/// event frame.
pub(crate) fn decode<P: DeserializeOwned>(
    headers: Option<&HeaderMap>,
    body: &[u8],
    upcasters: Option<&Upcasters>,
) -> Result<Event<P>, String> {
    let content_type = headers
        .and_then(|h| h.get(CONTENT_TYPE))
        .map(|v| v.as_str());
    match content_type {
        None | Some(FRAME_CONTENT_TYPE) => {
            let (event, n) = match upcasters {
                Some(u) => decode_upcast(body, u).map_err(|e| e.to_string())?,
                None => codec::decode(body).map_err(|e| e.to_string())?,
            };
            if n != body.len() {
                return Err(format!("{} bytes after the event frame", body.len() - n));
            }
            Ok(event)
        }
        Some(CLOUDEVENTS_CONTENT_TYPE) => match upcasters {
            None => cloudevents::from_json(body),
            Some(u) => {
                let event: Event<serde_json::Value> = cloudevents::from_json(body)?;
                let event = u.upcast(event).map_err(|e| e.to_string())?;
                let Event { data, .. } = &event;
                let data: P = serde_json::from_value(data.clone()).map_err(|e| e.to_string())?;
                Ok(event.map(|_| data))
            }
        },
        Some(other) => Err(format!("unknown content type {other:?}")),
    }
}
