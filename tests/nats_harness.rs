//! The NATS test harness (`tests/support/nats.rs`) and the server behaviours the
//! JetStream bridge relies on, through raw async-nats against a real `nats-server`
//! that each test starts: dedup by `Nats-Msg-Id` (across a `SIGKILL` and restart),
//! restart on the same port and store, what a pre-2.10 server does with
//! `filter_subjects`, and a delayed NAK.
#![cfg(feature = "nats")]

#[path = "support/nats.rs"]
mod nats_support;

use std::future::IntoFuture;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use nats_support::{block_on, parse_version, within, NatsServer, StartError};

/// Every test's whole body is bounded by this (each await inside by less).
const TEST_SECS: u64 = 30;

async fn connect(server: &NatsServer) -> (async_nats::Client, jetstream::Context) {
    let client = within(10, "connecting", async_nats::connect(server.url()))
        .await
        .expect("connects");
    let js = jetstream::new(client.clone());
    (client, js)
}

async fn file_stream(js: &jetstream::Context, name: &str, subjects: &str) -> stream::Stream {
    within(
        10,
        "creating a stream",
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        }),
    )
    .await
    .expect("stream created")
}

/// Publishes `payload` to `subject` with `Nats-Msg-Id: id`; the server's ack.
async fn publish_id(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    payload: &'static [u8],
) -> jetstream::publish::PublishAck {
    let msg = PublishMessage::build()
        .payload(Bytes::from_static(payload))
        .message_id(id);
    let ack = within(
        10,
        "sending a publish",
        js.send_publish(subject.to_owned(), msg),
    )
    .await
    .expect("publish sent");
    within(10, "the publish ack", ack.into_future())
        .await
        .expect("publish acked")
}

/// Whether a TCP connection to the port is refused (nothing listening).
fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

// ------------------------------------------------------------------ the harness

#[test]
fn starts_connects_reports_jetstream_and_version() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    assert!(server.port() > 0);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.log().contains("Server is ready"));
    let (major, minor, _) = server.version_triple();
    assert!(
        (major, minor) >= (2, 9),
        "version {:?} parsed from the log",
        server.version()
    );
    block_on(within(TEST_SECS, "the test", async {
        let (client, js) = connect(&server).await;
        let info = client.server_info();
        assert_eq!(
            info.version,
            server.version(),
            "the logged version is the served one"
        );
        assert!(info.jetstream, "INFO says JetStream is on");
        assert_eq!(info.port, server.port());
        // JetStream answers its account INFO request (raw: see below).
        let account: serde_json::Value = within(
            10,
            "account info",
            js.request("INFO", &serde_json::json!({})),
        )
        .await
        .expect("JetStream answers");
        assert!(account.get("error").is_none(), "{account}");
        assert_eq!(account["streams"], 0, "a fresh store: {account}");
        // async-nats 0.51's `query_account()` requires `reserved_memory` and
        // `reserved_storage`, which older servers (2.9.10) do not send: there it fails
        // to parse, so the bridge must check JetStream some other way.
        let typed = within(10, "query_account", js.query_account()).await;
        if account.get("reserved_memory").is_some() {
            assert_eq!(typed.expect("parses").streams, 0);
        } else {
            assert!(
                typed.is_err(),
                "{}: query_account parsed {account}",
                server.version()
            );
            eprintln!(
                "nats-server {}: query_account() fails to parse",
                server.version()
            );
        }
    }));
    eprintln!("nats-server {} at {}", server.version(), server.url());
}

#[test]
fn config_is_applied_and_a_bad_one_is_a_typed_error_with_the_log() {
    let Some(probe) = NatsServer::start_or_skip() else {
        return;
    };
    drop(probe);
    let server = NatsServer::start_with_config("max_payload: 65536\n").expect("starts");
    block_on(within(TEST_SECS, "the test", async {
        let (client, _) = connect(&server).await;
        assert_eq!(client.server_info().max_payload, 65536);
    }));
    drop(server);

    match NatsServer::start_with_config("this is { not a config") {
        Err(StartError::Exited { status, log }) => {
            assert!(!status.success());
            assert!(!log.is_empty(), "the server said why");
        }
        other => panic!("expected StartError::Exited, got {other:?}"),
    }
}

#[test]
fn kill_stops_it_restart_keeps_the_port_and_drop_removes_the_store() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let port = server.port();
    let store = server.store_dir();
    assert!(store.is_dir());
    assert!(server.is_running());
    assert!(!refused(port));

    server.kill();
    assert!(!server.is_running());
    assert!(refused(port), "nothing listens after SIGKILL");

    server.restart().expect("restarts");
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert!(!refused(port));
    assert!(server.log().contains("restart"), "the log spans both runs");

    // Restarting a running server kills it first.
    server.restart().expect("restarts while running");
    assert_eq!(server.port(), port);

    drop(server);
    assert!(!store.exists(), "the temp dir is removed on drop");
}

// ------------------------------------------------------------------ the server

/// Issue 13, test 1 at the raw level (O3): a second publish of a `Nats-Msg-Id` is
/// acked `duplicate` with the first one's sequence, and still is after `SIGKILL` and
/// a restart on the same store.
#[test]
fn msg_id_dedup_survives_sigkill_and_restart() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    const IDS: u64 = 200;
    block_on(within(TEST_SECS, "before the kill", async {
        let (_client, js) = connect(&server).await;
        file_stream(&js, "DEDUP", "dd.>").await;
        let first = publish_id(&js, "dd.x", "id-0", b"one").await;
        assert_eq!((first.sequence, first.duplicate), (1, false));
        let again = publish_id(&js, "dd.x", "id-0", b"one").await;
        assert_eq!(
            (again.sequence, again.duplicate),
            (1, true),
            "same sequence, duplicate"
        );
        for i in 1..IDS {
            let ack = publish_id(&js, "dd.x", &format!("id-{i}"), b"more").await;
            assert_eq!((ack.sequence, ack.duplicate), (i + 1, false));
        }
    }));

    server.kill();
    server.restart().expect("restarts");

    block_on(within(TEST_SECS, "after the restart", async {
        let (_client, js) = connect(&server).await;
        let mut duplicates = 0;
        for i in 0..IDS {
            let ack = publish_id(&js, "dd.x", &format!("id-{i}"), b"again").await;
            assert_eq!(ack.sequence, i + 1, "id-{i} keeps its sequence");
            duplicates += u64::from(ack.duplicate);
        }
        assert_eq!(duplicates, IDS, "every republished id is a duplicate");
        let mut s = within(10, "get stream", js.get_stream("DEDUP"))
            .await
            .expect("stream kept");
        let info = within(10, "stream info", s.info()).await.expect("info");
        assert_eq!(info.state.messages, IDS, "one message per id");
    }));
}

/// `restart()` brings the server back on its port with the stream's messages.
#[test]
fn restart_keeps_the_port_and_the_streams_messages() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    const N: u64 = 100;
    let port = server.port();
    block_on(within(TEST_SECS, "publishing", async {
        let (_client, js) = connect(&server).await;
        file_stream(&js, "KEEP", "keep.>").await;
        for i in 0..N {
            let msg = PublishMessage::build().payload(Bytes::from(format!("payload {i}")));
            let ack = within(10, "send", js.send_publish(format!("keep.{}", i % 7), msg))
                .await
                .expect("sent");
            let ack = within(10, "ack", ack.into_future()).await.expect("acked");
            assert_eq!(ack.sequence, i + 1);
        }
    }));

    server.kill();
    server.restart().expect("restarts");
    assert_eq!(server.port(), port, "same port");

    block_on(within(TEST_SECS, "reading back", async {
        let (_client, js) = connect(&server).await;
        let mut s = within(10, "get stream", js.get_stream("KEEP"))
            .await
            .expect("stream kept");
        let info = within(10, "stream info", s.info()).await.expect("info");
        assert_eq!(
            (
                info.state.messages,
                info.state.first_sequence,
                info.state.last_sequence
            ),
            (N, 1, N)
        );
        for i in 0..N {
            let m = within(10, "get message", s.get_raw_message(i + 1))
                .await
                .expect("message kept");
            assert_eq!(m.subject.as_str(), format!("keep.{}", i % 7));
            assert_eq!(&m.payload[..], format!("payload {i}").as_bytes());
        }
    }));
}

/// I1: what the server does with a consumer asked for two `filter_subjects`. A
/// pre-2.10 server (Debian's 2.9.10) does not know the field: the consumer comes back
/// without any filter and sees every subject — which is why the bridge must compare the
/// returned config. From 2.10 on it filters. The request goes through the raw API
/// (async-nats gates `filter_subjects` behind its `server_2_10` feature, off here).
#[test]
fn two_filter_subjects_on_the_server_at_hand() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let multi_filter = server.version_triple() >= (2, 10, 0);
    block_on(within(TEST_SECS, "the test", async {
        let (_client, js) = connect(&server).await;
        let s = file_stream(&js, "FS", "fs.>").await;
        for subject in ["fs.a.1", "fs.b.1", "fs.c.1"] {
            let ack = within(10, "send", js.publish(subject, Bytes::from_static(b"x")))
                .await
                .expect("sent");
            within(10, "ack", ack.into_future()).await.expect("acked");
        }

        let asked = ["fs.a.>", "fs.b.>"];
        let reply: serde_json::Value = within(
            10,
            "consumer create",
            js.request(
                "CONSUMER.CREATE.FS.multi",
                &serde_json::json!({
                    "stream_name": "FS",
                    "config": {
                        "durable_name": "multi",
                        "ack_policy": "explicit",
                        "deliver_policy": "all",
                        "filter_subjects": asked,
                    },
                }),
            ),
        )
        .await
        .expect("the API answers");
        assert!(reply.get("error").is_none(), "created: {reply}");
        let config = &reply["config"];
        let returned: Vec<&str> = config["filter_subjects"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let single = config["filter_subject"].as_str().unwrap_or("");

        let mut consumer: consumer::PullConsumer =
            within(10, "get consumer", s.get_consumer("multi"))
                .await
                .expect("consumer exists");
        let pending = within(10, "consumer info", consumer.info())
            .await
            .expect("info")
            .num_pending;
        let mut seen = Vec::new();
        let mut batch = within(
            10,
            "fetch",
            consumer
                .fetch()
                .max_messages(10)
                .expires(Duration::from_millis(500))
                .messages(),
        )
        .await
        .expect("fetch");
        while let Some(m) = within(10, "next fetched", batch.next()).await {
            let m = m.expect("a message");
            seen.push(m.subject.to_string());
            within(10, "ack", m.ack()).await.expect("acked");
        }

        if multi_filter {
            assert_eq!(returned, asked, "{}: filters kept", server.version());
            assert_eq!(pending, 2);
            assert_eq!(seen, ["fs.a.1", "fs.b.1"]);
        } else {
            assert!(
                returned.is_empty() && single.is_empty(),
                "{}: the filters are dropped silently: {config}",
                server.version()
            );
            assert_eq!(pending, 3, "an unfiltered consumer");
            assert_eq!(seen, ["fs.a.1", "fs.b.1", "fs.c.1"]);
        }

        // One filter works on every version.
        let mut one: consumer::PullConsumer = within(
            10,
            "single-filter consumer",
            s.create_consumer(consumer::pull::Config {
                durable_name: Some("one".into()),
                filter_subject: "fs.a.>".into(),
                ..Default::default()
            }),
        )
        .await
        .expect("created");
        let info = within(10, "consumer info", one.info()).await.expect("info");
        assert_eq!(info.config.filter_subject, "fs.a.>");
        assert_eq!(info.num_pending, 1);
    }));
    eprintln!(
        "nats-server {}: two filter_subjects {}",
        server.version(),
        if multi_filter {
            "honoured"
        } else {
            "silently dropped"
        }
    );
}

/// I3: a NAK with a delay is redelivered no sooner than the delay (measured from
/// before the NAK was sent, so a server that honours it cannot fail this).
#[test]
fn nak_with_delay_is_redelivered_no_sooner_than_the_delay() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    const DELAY: Duration = Duration::from_millis(300);
    block_on(within(TEST_SECS, "the test", async {
        let (_client, js) = connect(&server).await;
        let s = file_stream(&js, "NAK", "nak.>").await;
        publish_id(&js, "nak.x", "nak-1", b"x").await;
        let c: consumer::PullConsumer = within(
            10,
            "consumer",
            s.create_consumer(consumer::pull::Config {
                durable_name: Some("nak".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            }),
        )
        .await
        .expect("created");
        let mut messages = within(10, "pull", c.messages()).await.expect("pulling");

        let first = within(10, "first delivery", messages.next())
            .await
            .expect("a message")
            .expect("no error");
        let (seq, delivered) = {
            let info = first.info().expect("a JetStream message");
            (info.stream_sequence, info.delivered)
        };
        assert_eq!(delivered, 1);
        let naked = Instant::now();
        within(10, "nak", first.ack_with(AckKind::Nak(Some(DELAY))))
            .await
            .expect("nak sent");

        let again = within(10, "redelivery", messages.next())
            .await
            .expect("redelivered")
            .expect("no error");
        let after = naked.elapsed();
        let info = again.info().expect("a JetStream message");
        assert_eq!((info.stream_sequence, info.delivered), (seq, 2));
        assert!(
            after >= DELAY,
            "redelivered {after:?} after a NAK with delay {DELAY:?}"
        );
        within(10, "ack", again.ack()).await.expect("acked");
        eprintln!("NAK with {DELAY:?}: redelivered after {after:?}");
    }));
}

#[test]
fn parse_version_reads_the_logged_forms() {
    assert_eq!(parse_version("2.9.10"), (2, 9, 10));
    assert_eq!(parse_version("v2.15.1"), (2, 15, 1));
    assert_eq!(parse_version("2.11.0-RC.1"), (2, 11, 0));
    assert_eq!(parse_version(""), (0, 0, 0));
}
