//! The bridge itself against a real nats-server: what `build()` refuses (a
//! prefix or stream name that cannot work, no server, no JetStream for the
//! account, a stream present with other settings), what it creates, and its
//! metrics and report before anything runs.
#![cfg(feature = "nats")]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::time::Duration;

use nats_client::with_jetstream;
use nats_support::NatsServer;
use ringbus::nats::{async_nats, BridgeError, NatsBridge, Storage, StreamSpec};

#[test]
fn settings_that_cannot_work_are_refused_before_connecting() {
    // Nothing listens on port 1: a refusal here is the check, not the network.
    let url = "nats://127.0.0.1:1";
    for prefix in ["", "a..b", "rb.*", "rb.>", "r b"] {
        let r = NatsBridge::builder(url).subject_prefix(prefix).build();
        assert!(
            matches!(r, Err(BridgeError::Config(_))),
            "{prefix:?}: {r:?}"
        );
    }
    for name in ["", "A.B", "A B", "A*"] {
        let r = NatsBridge::builder(url)
            .stream(StreamSpec::named(name))
            .build();
        assert!(matches!(r, Err(BridgeError::Config(_))), "{name:?}: {r:?}");
    }
    let none = StreamSpec {
        replicas: 0,
        ..StreamSpec::default()
    };
    let r = NatsBridge::builder(url).stream(none).build();
    assert!(matches!(r, Err(BridgeError::Config(_))), "{r:?}");
    let r = NatsBridge::builder(url).build();
    assert!(matches!(r, Err(BridgeError::Connect(_))), "{r:?}");
}

#[test]
fn build_creates_both_streams_and_checks_them_next_time() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let spec = StreamSpec {
        name: "ORDERS".into(),
        storage: Storage::Memory,
        duplicate_window: Duration::from_secs(30),
        max_age: Some(Duration::from_secs(3600)),
        max_bytes: Some(1 << 20),
        ..StreamSpec::default()
    };
    let bridge = NatsBridge::builder(server.url())
        .subject_prefix("shop")
        .stream(spec.clone())
        .build()
        .unwrap();
    assert_eq!(bridge.server_version().to_string(), server.version());
    assert_eq!(bridge.subject_prefix(), "shop");
    let streams = with_jetstream(&server, 10, "the streams' settings", |js| async move {
        let mut out = Vec::new();
        for name in ["ORDERS", "ORDERS_DLQ"] {
            let mut s = js.get_stream(name).await.unwrap();
            let c = s.info().await.unwrap().config.clone();
            out.push((
                c.subjects,
                c.storage,
                c.duplicate_window,
                c.max_age,
                c.max_bytes,
            ));
        }
        out
    });
    let memory = async_nats::jetstream::stream::StorageType::Memory;
    let (window, age) = (Duration::from_secs(30), Duration::from_secs(3600));
    assert_eq!(
        streams,
        vec![
            (vec!["shop.ev.>".to_owned()], memory, window, age, 1 << 20),
            (vec!["shop.dlq.>".to_owned()], memory, window, age, 1 << 20),
        ]
    );
    // The same settings again: accepted; other settings: refused, unchanged.
    let again = NatsBridge::builder(server.url())
        .subject_prefix("shop")
        .stream(spec.clone())
        .build()
        .unwrap();
    let other = StreamSpec {
        max_age: None,
        ..spec.clone()
    };
    match NatsBridge::builder(server.url())
        .subject_prefix("shop")
        .stream(other)
        .build()
    {
        Err(BridgeError::Mismatch { what, field, .. }) => {
            assert_eq!((what.as_str(), field), ("stream ORDERS", "max_age"));
        }
        r => panic!("expected Mismatch, got {r:?}"),
    }
    match NatsBridge::builder(server.url())
        .subject_prefix("other")
        .stream(spec)
        .build()
    {
        Err(BridgeError::Mismatch { field, .. }) => assert_eq!(field, "subjects"),
        r => panic!("expected Mismatch, got {r:?}"),
    }
    // Nothing started: metrics say so, the report is clean.
    let m = bridge.metrics();
    assert!(m.connection.connected);
    assert_eq!((m.outbound.len(), m.inbound.len()), (0, 0));
    assert!(m.to_prometheus().contains("ringbus_nats_connected 1"));
    assert!(bridge.shutdown().is_clean());
    assert!(again.shutdown().is_clean());
}

#[test]
fn an_account_without_jetstream_is_refused() {
    // JetStream is on for the server (`-js`) but not for this account.
    let config = r#"
        accounts {
            PLAIN: { users: [ { user: plain, password: plain } ] }
        }
    "#;
    let server = match NatsServer::start_with_config(config) {
        Ok(s) => s,
        Err(e) => {
            // No binary: skip as the harness does (fails under CI=true).
            if NatsServer::start_or_skip().is_none() {
                return;
            }
            panic!("{e}");
        }
    };
    let r = NatsBridge::builder(server.url()).build();
    assert!(
        matches!(r, Err(BridgeError::Connect(_))),
        "no credentials: {r:?}"
    );
    let r = NatsBridge::builder(server.url())
        .connect_options(async_nats::ConnectOptions::with_user_and_password(
            "plain".into(),
            "plain".into(),
        ))
        .build();
    assert!(matches!(r, Err(BridgeError::NoJetStream(_))), "{r:?}");
}
