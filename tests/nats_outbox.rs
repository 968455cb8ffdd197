//! The NATS bridge's outbox mode (issue 13, O7 and the outbound half of test 8)
//! against a real `nats-server`: committed store events reach JetStream, the
//! checkpoint only covers acked (or filtered) positions, and a publishing
//! process `SIGKILL`ed at random moments leaves every store event in the stream
//! exactly once after its restart.
//!
//! The kill test starts this test binary again as the child (this same test,
//! with [`CHILD_DIR`] set), as `tests/store_kill.rs` does: the child opens the
//! `FileStore`, starts the outbox with `FileCheckpoints` and appends more
//! events while it publishes; the parent kills it after a random 20–400 ms.
//! The delays come from a xorshift generator seeded from the clock; the seed
//! is printed, and `RINGBUS_OUTBOX_SEED=<n>` replays it.
#![cfg(all(feature = "nats", unix))]

#[path = "support/nats_client.rs"]
mod nats_client;
#[path = "support/nats.rs"]
mod nats_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nats_client::{bridge, bus, publish, raw_messages, read_stream, wait_until, Raw, STREAM};
use nats_support::NatsServer;
use ringbus::nats::{ConsumerSpec, Dedup, InboundOptions, NatsBridge, OutboundOptions, StoreDedup};
use ringbus::resilience::RetryPolicy;
use ringbus::store::checkpoint::{CheckpointStore, FileCheckpoints, InMemoryCheckpoints};
use ringbus::store::{
    EventStore, ExpectedVersion, FileStore, InMemoryStore, Position, StoreOptions, StreamId,
};
use ringbus::{Event, EventId, EventType, Source};

/// Set in the child: the directory with `store/` and `checkpoints/`.
const CHILD_DIR: &str = "RINGBUS_OUTBOX_CHILD_DIR";
/// Set in the child: the server's URL.
const CHILD_URL: &str = "RINGBUS_OUTBOX_CHILD_URL";
/// Set in the child: `kill` (run until killed) or `finish` (publish
/// everything, stop, exit).
const CHILD_MODE: &str = "RINGBUS_OUTBOX_CHILD_MODE";
/// The test the child runs.
const TEST: &str = "a_publisher_killed_at_random_leaves_every_store_event_once_in_jetstream";
/// The checkpoint's name.
const NAME: &str = "outbox";
const RUNS: usize = 10;

/// Every message id in [`STREAM`], in stream order.
fn stream_ids(server: &NatsServer) -> Vec<String> {
    read_stream(server, STREAM)
        .into_iter()
        .map(|m| m.msg_id)
        .collect()
}

fn event(ty: &str, stream: &str, n: u64) -> Event<u64> {
    Event::new(EventType::new(ty), Source::new("shop"), n).with_subject(stream)
}

fn append<S: EventStore<u64>>(store: &S, stream: &str, events: Vec<Event<u64>>) {
    store
        .append(
            &StreamId::new(stream).unwrap(),
            ExpectedVersion::Any,
            events,
        )
        .unwrap();
}

/// The filter's events go out in position order; the checkpoint reaches the
/// head (filtered positions count as done) and is saved; a second outbox on
/// the same checkpoint publishes nothing again.
#[test]
fn store_events_go_out_and_the_checkpoint_follows_the_acks() {
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let store = Arc::new(InMemoryStore::<u64>::new());
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    let mut expected = Vec::new();
    for i in 0..100u64 {
        let ty = if i % 3 == 0 {
            "user.seen"
        } else {
            "order.placed"
        };
        let e = event(ty, &format!("o-{}", i % 7), i);
        if ty == "order.placed" {
            expected.push(e.id.to_string());
        }
        append(&*store, &format!("o-{}", i % 7), vec![e]);
    }
    // The last events are filtered out: the checkpoint must still pass them.
    append(&*store, "u", vec![event("user.seen", "u", 100)]);
    let start_outbox = || {
        bridge
            .outbound_from_store(
                store.clone(),
                NAME,
                "order.*",
                checkpoints.clone(),
                OutboundOptions::default(),
            )
            .unwrap()
    };
    let out = start_outbox();
    let head = store.head().unwrap().0;
    wait_until(20, "the checkpoint at the head", || {
        out.metrics().checkpoint == Some(head)
    });
    assert!(out.flush(Duration::from_secs(10)));
    let m = out.metrics();
    assert_eq!(m.name, "outbox:outbox");
    assert_eq!((m.accepted, m.published, m.failed), (66, 66, 0));
    assert_eq!(stream_ids(&server), expected);
    // Live: appended later, published too.
    let late = event("order.placed", "o-late", 1000);
    expected.push(late.id.to_string());
    append(&*store, "o-late", vec![late]);
    let head = store.head().unwrap().0;
    wait_until(20, "the checkpoint at the new head", || {
        out.metrics().checkpoint == Some(head)
    });
    let report = out.stop();
    assert!(report.unacked.is_empty(), "{report:?}");
    assert_eq!(checkpoints.load(NAME).unwrap(), Some(Position(head)));
    assert_eq!(stream_ids(&server), expected);

    let again = start_outbox();
    assert_eq!(again.metrics().checkpoint, Some(head));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(again.metrics().accepted, 0, "nothing published twice");
    again.stop();
}

/// While the server is down nothing is acked, so the checkpoint stays; once it
/// is back, the outbox catches up.
#[test]
fn the_checkpoint_waits_for_the_server() {
    let Some(mut server) = NatsServer::start_or_skip() else {
        return;
    };
    let bridge = bridge(&server);
    let store = Arc::new(InMemoryStore::<u64>::new());
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    append(&*store, "a", vec![event("order.placed", "a", 0)]);
    let out = bridge
        .outbound_from_store(
            store.clone(),
            NAME,
            ">",
            checkpoints.clone(),
            OutboundOptions {
                publish_timeout: Duration::from_millis(300),
                retry: RetryPolicy::fixed(Duration::from_millis(50), 2),
                ..OutboundOptions::default()
            },
        )
        .unwrap();
    wait_until(20, "the first checkpoint", || {
        out.metrics().checkpoint == Some(0)
    });
    server.kill();
    for i in 1..20 {
        append(&*store, "a", vec![event("order.placed", "a", i)]);
    }
    wait_until(20, "retries", || out.metrics().retries >= 3);
    // Past the retry policy's attempts, still not given up.
    let m = out.metrics();
    assert_eq!((m.checkpoint, m.failed), (Some(0), 0), "{m:?}");
    assert_eq!(checkpoints.load(NAME).unwrap(), Some(Position(0)));
    server.restart().unwrap();
    wait_until(25, "the checkpoint at the head", || {
        out.metrics().checkpoint == Some(19)
    });
    assert_eq!(out.metrics().failed, 0);
    out.stop();
    assert_eq!(checkpoints.load(NAME).unwrap(), Some(Position(19)));
    assert_eq!(stream_ids(&server).len(), 20);
}

// ---- the kill test -----------------------------------------------------------------

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("store"), dir.join("checkpoints"))
}

/// The child: publishes from the store (and appends more) until killed, or, in
/// `finish` mode, until the checkpoint reaches the head.
fn child(dir: &Path, url: &str, mode: &str) -> ! {
    let (store_dir, cp_dir) = paths(dir);
    let store = Arc::new(FileStore::<u64>::open(&store_dir, StoreOptions::default()).unwrap());
    let checkpoints = FileCheckpoints::open(&cp_dir).unwrap();
    let bridge = NatsBridge::builder(url).build().unwrap();
    let out = bridge
        .outbound_from_store(
            store.clone(),
            NAME,
            ">",
            checkpoints,
            OutboundOptions {
                publish_timeout: Duration::from_secs(1),
                ..OutboundOptions::default()
            },
        )
        .unwrap();
    println!("ready");
    if mode == "finish" {
        let head = store.head().map(|p| p.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.metrics().checkpoint != head {
            assert!(
                Instant::now() < deadline,
                "no catch-up: {:?}",
                out.metrics()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = out.stop();
        assert!(report.unacked.is_empty(), "{report:?}");
        println!("done {}", head.unwrap_or(0));
        std::process::exit(0);
    }
    // Appends while the outbox publishes: three events per append, about
    // 10 000 a second, so that kills find events in flight.
    let stream = format!("live-{}", std::process::id());
    for i in (0..).step_by(3) {
        let events = (i..i + 3)
            .map(|n| event("order.appended", &stream, n))
            .collect();
        append(&*store, &stream, events);
        std::thread::sleep(Duration::from_micros(300));
    }
    unreachable!()
}

fn spawn_child(dir: &Path, url: &str, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_URL, url)
        .env(CHILD_MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the child's `ready` line; the rest of its stdout and its stderr
/// are drained on threads (returned joined by the caller).
fn await_ready(
    child: &mut std::process::Child,
) -> (
    std::thread::JoinHandle<String>,
    std::thread::JoinHandle<String>,
) {
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the child never got ready:\n{}\n{}",
            out.join().unwrap(),
            err.join().unwrap()
        );
    }
    (out, err)
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Test 8: the publishing process is killed at random moments, 10 times;
/// after a final run every store event is in JetStream exactly once, and a
/// consumer with `Dedup::Store` keeps each once in its store even when older
/// replays arrive under new message ids.
#[test]
fn a_publisher_killed_at_random_leaves_every_store_event_once_in_jetstream() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let url = std::env::var(CHILD_URL).unwrap();
        let mode = std::env::var(CHILD_MODE).unwrap();
        child(Path::new(&dir), &url, &mode);
    }
    let Some(server) = NatsServer::start_or_skip() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ringbus-outbox-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (store_dir, cp_dir) = paths(&dir);
    std::fs::create_dir_all(&cp_dir).unwrap();
    {
        let store = FileStore::<u64>::open(&store_dir, StoreOptions::default()).unwrap();
        for s in 0..20u64 {
            let stream = format!("seed-{s}");
            let events = (0..100)
                .map(|i| event("order.placed", &stream, i))
                .collect();
            append(&store, &stream, events);
        }
    }
    let mut seed = std::env::var("RINGBUS_OUTBOX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill delays seeded with RINGBUS_OUTBOX_SEED={seed}");
    let url = server.url();
    let mut checkpoints_seen = Vec::new();
    for run in 0..RUNS {
        let mut child = spawn_child(&dir, &url, "kill");
        let (out, err) = await_ready(&mut child);
        let delay = Duration::from_millis(20 + xorshift(&mut seed) % 380);
        std::thread::sleep(delay);
        let early = child.try_wait().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let (_out, err) = (out.join().unwrap(), err.join().unwrap());
        assert!(early.is_none(), "run {run}: the child exited early:\n{err}");
        let cp = FileCheckpoints::open(&cp_dir).unwrap().load(NAME).unwrap();
        checkpoints_seen.push(cp.map(|p| p.0));
    }
    eprintln!("checkpoints after each kill: {checkpoints_seen:?}");
    let mut child = spawn_child(&dir, &url, "finish");
    let (out, err) = await_ready(&mut child);
    let status = child.wait().unwrap();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "the final run failed:\n{out}\n{err}");

    let store = FileStore::<u64>::open(&store_dir, StoreOptions::default()).unwrap();
    let all = store.read_all(Position(0), usize::MAX).unwrap();
    assert!(all.len() > 2000, "the children appended");
    let head = store.head().unwrap();
    assert_eq!(
        FileCheckpoints::open(&cp_dir).unwrap().load(NAME).unwrap(),
        Some(head)
    );
    let ids = stream_ids(&server);
    let mut count: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        *count.entry(id.clone()).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<EventId> = all
        .iter()
        .map(|r| r.event.id)
        .filter(|id| !count.contains_key(&id.to_string()))
        .collect();
    assert!(missing.is_empty(), "{} store events missing", missing.len());
    assert_eq!(ids.len(), all.len(), "nothing but store events");

    // The consumer half: replays older than the duplicate window carry new
    // message ids (simulated: the first 200 messages published again under
    // `<id>:replay`); a consumer with `Dedup::Store` keeps each event once in
    // its store and hands it to its bus once.
    replay_first(&server, 200);
    let inbox = Arc::new(InMemoryStore::<u64>::new());
    let dedup = StoreDedup::new(inbox.clone(), "inbox").unwrap();
    let bus = bus::<u64>();
    let handled: Arc<Mutex<HashMap<EventId, usize>>> = Arc::default();
    let h = handled.clone();
    bus.subscribe(">", move |e: &Event<u64>| {
        *h.lock().unwrap().entry(e.id).or_default() += 1;
    })
    .unwrap();
    let bridge = bridge(&server);
    let inbound = bridge
        .inbound(
            &bus,
            ConsumerSpec::new("consumer-store", [">"]),
            InboundOptions {
                dedup: Dedup::Store(dedup.clone()),
                ..InboundOptions::default()
            },
        )
        .unwrap();
    let expected = all.len() + 200;
    wait_until(25, "every message settled", || {
        let m = inbound.metrics();
        m.acked as usize >= expected
    });
    bus.flush().unwrap();
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), all.len(), "every store event reached bus B");
    assert!(handled.values().all(|n| *n == 1), "each once on bus B");
    for r in &all {
        let kept = inbox
            .read_stream(&dedup.stream_of(r.event.id), 0, usize::MAX)
            .unwrap();
        assert_eq!(
            kept.len(),
            1,
            "{} kept once in the consumer's store",
            r.event.id
        );
    }
    assert_eq!(
        inbox.read_all(Position(0), usize::MAX).unwrap().len(),
        all.len(),
        "nothing else in the consumer's store"
    );
    assert!(
        inbound.metrics().dedup_dropped >= 200,
        "{:?}",
        inbound.metrics()
    );
    assert!(bridge.shutdown().is_clean());
    bus.shutdown().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes the first `n` messages of [`STREAM`] again, body and headers as
/// they are, under `Nats-Msg-Id: <id>:replay` (a replay the server's
/// duplicate window no longer catches).
fn replay_first(server: &NatsServer, n: u64) {
    let replays = raw_messages(server, STREAM, 1..=n).into_iter().map(|m| {
        let mut headers = m.headers;
        let id = headers.get("Nats-Msg-Id").expect("an id").to_string();
        headers.insert("Nats-Msg-Id", format!("{id}:replay").as_str());
        Raw {
            subject: m.subject.to_string(),
            headers,
            body: m.payload,
        }
    });
    for ack in publish(server, replays) {
        assert!(!ack.duplicate);
    }
}
