//! What the NATS bridge's tests share besides the server: a bridge, a bus and a
//! consumer with the settings the tests start from; a raw async-nats client for
//! what the tests publish and read back behind the bridge's back (frames as the
//! outbound side publishes them, consumer info, the stream in order, raw
//! messages by sequence); and [`wait_until`].
//!
//! Included by path next to the harness, whose `block_on` and `within` it uses as
//! `crate::nats_support`:
//!
//! ```ignore
//! #[path = "support/nats.rs"]
//! mod nats_support;
//! #[path = "support/nats_client.rs"]
//! mod nats_client;
//! ```
//!
//! Every call to the server is bounded (`within`), and each opens its own
//! connection on its own runtime, so a test may call these between restarts of
//! the server.

#![allow(dead_code)]

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, publish::PublishAck};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use ringbus::nats::{ConsumerSpec, InboundHandle, InboundOptions, NatsBridge, FRAME_CONTENT_TYPE};
use ringbus::{Bus, BusBuilder, Event};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::nats_support::{block_on, within, NatsServer};

/// The stream a bridge with the default settings uses.
pub const STREAM: &str = "RINGBUS";

/// At most this many publish acks are outstanding in [`publish`].
const PUBLISH_WINDOW: usize = 256;

/// Polls `cond` every 5 ms until it holds; panics with `what` after `secs` seconds.
#[track_caller]
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A bridge to `server` with the default settings (stream [`STREAM`], prefix `rb`).
pub fn bridge(server: &NatsServer) -> NatsBridge {
    NatsBridge::builder(server.url())
        .build()
        .expect("the bridge connects")
}

/// A bus with the default settings (capacity 4096).
pub fn bus<P: Send + Sync + 'static>() -> Bus<P> {
    BusBuilder::<P>::new().build().expect("a bus")
}

/// The consumer `durable` on `pattern` into `bus`, with the default consumer
/// settings and options.
#[track_caller]
pub fn inbound<P>(bridge: &NatsBridge, bus: &Bus<P>, durable: &str, pattern: &str) -> InboundHandle
where
    P: DeserializeOwned + Clone + Send + Sync + 'static,
{
    bridge
        .inbound(
            bus,
            ConsumerSpec::new(durable, [pattern]),
            InboundOptions::default(),
        )
        .expect("inbound")
}

/// Runs `f` with a JetStream context on a fresh connection to `server`, on a fresh
/// runtime; the connection and `f` together may take at most `secs` seconds.
#[track_caller]
pub fn with_jetstream<T, F: Future<Output = T>>(
    server: &NatsServer,
    secs: u64,
    what: &'static str,
    f: impl FnOnce(jetstream::Context) -> F,
) -> T {
    let url = server.url();
    block_on(within(secs, what, async move {
        let client = async_nats::connect(url).await.expect("connects");
        f(jetstream::new(client)).await
    }))
}

/// The codec frame of `e`: the body the outbound side publishes.
pub fn frame<P: Serialize>(e: &Event<P>) -> Bytes {
    let mut body = Vec::new();
    ringbus::codec::encode(e, &mut body).expect("encodes");
    Bytes::from(body)
}

/// A message to publish raw.
#[derive(Clone, Debug)]
pub struct Raw {
    pub subject: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    /// `body` on `subject` with the frame's `Content-Type` and `Nats-Msg-Id: msg_id`.
    pub fn frame(subject: &str, msg_id: &str, body: Bytes) -> Raw {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        headers.insert("Content-Type", FRAME_CONTENT_TYPE);
        Raw {
            subject: subject.to_owned(),
            headers,
            body,
        }
    }

    /// `e` as the outbound side publishes it: its frame on `rb.ev.<event type>`,
    /// `Nats-Msg-Id: <event id>`.
    pub fn event<P: Serialize>(e: &Event<P>) -> Raw {
        let subject = format!("rb.ev.{}", e.event_type.name());
        Raw::frame(&subject, &e.id.to_string(), frame(e))
    }
}

/// Publishes `messages` in order, up to 256 acks outstanding, within 25 s; the
/// server's acks, in the same order.
#[track_caller]
pub fn publish(server: &NatsServer, messages: impl IntoIterator<Item = Raw>) -> Vec<PublishAck> {
    let messages: Vec<Raw> = messages.into_iter().collect();
    with_jetstream(server, 25, "publishing raw", |js| async move {
        let mut acks = Vec::with_capacity(messages.len());
        let mut pending = Vec::new();
        for Raw {
            subject,
            headers,
            body,
        } in messages
        {
            let m = PublishMessage::build().payload(body).headers(headers);
            pending.push(js.send_publish(subject, m).await.expect("sent"));
            if pending.len() >= PUBLISH_WINDOW {
                for p in pending.drain(..) {
                    acks.push(p.await.expect("acked"));
                }
            }
        }
        for p in pending {
            acks.push(p.await.expect("acked"));
        }
        acks
    })
}

/// Publishes each of `events` as the outbound side would ([`Raw::event`]).
#[track_caller]
pub fn publish_events<'a, P: Serialize + 'a>(
    server: &NatsServer,
    events: impl IntoIterator<Item = &'a Event<P>>,
) {
    publish(server, events.into_iter().map(Raw::event));
}

/// The info of the consumer `durable` on [`STREAM`].
#[track_caller]
pub fn consumer_info(server: &NatsServer, durable: &str) -> consumer::Info {
    let durable = durable.to_owned();
    with_jetstream(server, 10, "consumer info", |js| async move {
        let stream = js.get_stream(STREAM).await.expect("stream");
        let mut c: consumer::PullConsumer = stream.get_consumer(&durable).await.expect("consumer");
        c.info().await.expect("info").clone()
    })
}

/// Waits (at most 10 s) until every ack of `durable` reached the server
/// (`num_ack_pending` 0); the consumer's info then.
#[track_caller]
pub fn acks_settled(server: &NatsServer, durable: &str) -> consumer::Info {
    let what = format!("every ack of {durable} reached the server");
    wait_until(10, &what, || {
        consumer_info(server, durable).num_ack_pending == 0
    });
    consumer_info(server, durable)
}

/// The messages at the sequences `seqs` of `stream`, read directly (no consumer).
#[track_caller]
pub fn raw_messages(
    server: &NatsServer,
    stream: &str,
    seqs: RangeInclusive<u64>,
) -> Vec<jetstream::message::StreamMessage> {
    let stream = stream.to_owned();
    with_jetstream(server, 25, "raw gets", |js| async move {
        let s = js.get_stream(&stream).await.expect("stream");
        let mut out = Vec::new();
        for seq in seqs {
            out.push(s.get_raw_message(seq).await.expect("message"));
        }
        out
    })
}

/// One message read back from a stream.
#[derive(Clone, Debug)]
pub struct Stored {
    pub subject: String,
    /// `Nats-Msg-Id`, empty if none.
    pub msg_id: String,
    /// `Content-Type`, empty if none.
    pub content_type: String,
    pub body: Bytes,
}

/// Every message in `stream`, in stream order (an ordered consumer), within 25 s.
#[track_caller]
pub fn read_stream(server: &NatsServer, stream: &str) -> Vec<Stored> {
    let stream = stream.to_owned();
    with_jetstream(server, 25, "reading the stream back", |js| async move {
        let mut s = js.get_stream(&stream).await.expect("the stream");
        let total = s.info().await.expect("stream info").state.messages;
        let mut out = Vec::new();
        if total == 0 {
            return out;
        }
        let consumer = s
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("an ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        while (out.len() as u64) < total {
            let m = messages
                .next()
                .await
                .expect("more messages")
                .expect("a message");
            let header = |h: &str| {
                m.headers
                    .as_ref()
                    .and_then(|hs| hs.get(h))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push(Stored {
                subject: m.subject.to_string(),
                msg_id: header("Nats-Msg-Id"),
                content_type: header("Content-Type"),
                body: m.payload.clone(),
            });
        }
        out
    })
}
