//! Live delivery through the bus (`publish_to`) and catch-up subscriptions:
//! every position exactly once, in order, across the switch to live, across a
//! fallback, across restarts; failures stop at the right position.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringbus::resilience::RetryPolicy;
use ringbus::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
use ringbus::store::{
    subscribe_all, subscribe_stream, AppendError, CatchUpHandle, EventStore, ExpectedVersion,
    InMemoryStore, Notification, OnFailure, Position, Status, StreamId, SubscribeFrom,
};
use ringbus::{event_type, source, Bus, BusBuilder, Event, HandlerError};

const DEADLINE: Duration = Duration::from_secs(60);

fn ev(n: u64) -> Event<u64> {
    Event::new(event_type!("test.appended"), source!("tests"), n)
}

fn bus() -> Bus<u64> {
    BusBuilder::<u64>::new().capacity(1024).build().unwrap()
}

fn stream(i: usize) -> StreamId {
    StreamId::new(format!("s-{i}")).unwrap()
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn wait_position(sub: &CatchUpHandle, p: Option<Position>) {
    wait_until("the subscription's position", || sub.position() >= p);
}

/// Spawns `writers` threads each appending `per_writer` single events to its own
/// stream.
fn writers(
    store: &Arc<InMemoryStore<u64>>,
    writers: usize,
    per_writer: u64,
) -> Vec<thread::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let store = store.clone();
            thread::spawn(move || {
                let s = stream(w);
                for n in 0..per_writer {
                    store.append(&s, ExpectedVersion::Any, vec![ev(n)]).unwrap();
                }
            })
        })
        .collect()
}

/// Asserts `seen` is exactly `0 .. n` in order, and each stream's versions are
/// 1, 2, 3, … in order.
fn assert_exactly_once(seen: &[(Position, u64, String)], n: u64) {
    let positions: Vec<u64> = seen.iter().map(|s| s.0 .0).collect();
    let expected: Vec<u64> = (0..n).collect();
    assert_eq!(positions.len(), expected.len(), "count of events seen");
    assert_eq!(positions, expected, "every position exactly once, in order");
    let mut versions = std::collections::HashMap::<&str, u64>::new();
    for (_, version, subject) in seen {
        let v = versions.entry(subject).or_default();
        *v += 1;
        assert_eq!(*version, *v, "stream {subject}: versions in order");
    }
}

type Seen = Arc<Mutex<Vec<(Position, u64, String)>>>;

fn recorder() -> (
    Seen,
    impl FnMut(&ringbus::store::Recorded<u64>) + Send + 'static,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let f = move |r: &ringbus::store::Recorded<u64>| {
        assert_eq!(
            r.event.position(),
            Some(r.position),
            "the event carries its position"
        );
        let subject = r.event.subject.as_ref().unwrap().as_str().to_owned();
        s.lock().unwrap().push((r.position, r.version, subject));
    };
    (seen, f)
}

#[test]
fn a_subscription_started_during_appends_sees_every_position_once_across_the_switch() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let per_writer = if cfg!(miri) { 50 } else { 3_000 };
    let w = writers(&store, 4, per_writer);
    wait_until("some history", || store.head() >= Some(Position(200)));

    let caught_up = Arc::new(AtomicU64::new(0));
    let c = caught_up.clone();
    let (seen, handler) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .on_notification(move |n| {
            if matches!(n, Notification::CaughtUp { .. }) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        })
        .start(handler)
        .unwrap();
    for t in w {
        t.join().unwrap();
    }
    let n = 4 * per_writer;
    assert_eq!(store.head(), Some(Position(n - 1)));
    wait_position(&sub, Some(Position(n - 1)));
    assert_eq!(
        sub.wait_status(DEADLINE, |s| *s == Status::Live),
        Status::Live
    );
    assert!(caught_up.load(Ordering::Relaxed) >= 1);
    assert!(sub.metrics().caught_up >= 1);
    sub.stop();
    assert_eq!(sub.status(), Status::Stopped);
    assert_exactly_once(&seen.lock().unwrap(), n);
    feed.stop();
}

#[test]
fn a_slow_handler_with_a_tiny_live_queue_falls_behind_and_still_sees_every_position_once() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    // The handler blocks on position 10 until the gate opens.
    let gate = Arc::new(AtomicBool::new(false));
    let at_gate = Arc::new(AtomicBool::new(false));
    let (seen, mut record) = recorder();
    let (g, a) = (gate.clone(), at_gate.clone());
    let fell_behind = Arc::new(AtomicU64::new(0));
    let fb = fell_behind.clone();
    let sub = subscribe_all(store.clone(), &bus)
        .live_queue_capacity(2)
        .page_size(3)
        .on_notification(move |n| {
            if matches!(n, Notification::FellBehind { .. }) {
                fb.fetch_add(1, Ordering::Relaxed);
            }
        })
        .start(move |r| {
            if r.position == Position(10) {
                a.store(true, Ordering::Release);
                while !g.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            record(r);
        })
        .unwrap();
    sub.wait_status(DEADLINE, |s| *s == Status::Live);
    wait_position(&sub, Some(Position(9)));
    store
        .append(&stream(1), ExpectedVersion::Any, vec![ev(10)])
        .unwrap();
    wait_until("the handler at the gate", || {
        at_gate.load(Ordering::Acquire)
    });
    // Far more than the live queue holds, published and forwarded while the
    // handler is stuck: the queue overflows.
    let w = writers(&store, 4, 50);
    for t in w {
        t.join().unwrap();
    }
    wait_until("the feed", || feed.next_position() == Position(211));
    bus.flush().unwrap();
    gate.store(true, Ordering::Release);
    // More appends while it catches up again.
    let w = writers(&store, 4, 100);
    for t in w {
        t.join().unwrap();
    }
    let n = 611;
    wait_position(&sub, Some(Position(n - 1)));
    assert!(
        fell_behind.load(Ordering::Relaxed) >= 1,
        "FellBehind observed"
    );
    assert!(sub.metrics().fell_behind >= 1);
    sub.stop();
    assert_exactly_once(&seen.lock().unwrap(), n);
    feed.stop();
}

#[test]
fn a_handler_that_saves_its_checkpoint_with_its_state_resumes_without_repeating() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    // The read model and its checkpoint change together, under one lock.
    let model: Arc<Mutex<Vec<u64>>> = Arc::default();
    let start = |store: &Arc<InMemoryStore<u64>>| {
        let from = checkpoints
            .load("view")
            .unwrap()
            .map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let (m, c) = (model.clone(), checkpoints.clone());
        subscribe_all(store.clone(), &bus)
            .from(from)
            .start(move |r| -> Result<(), HandlerError> {
                let mut m = m.lock().unwrap();
                m.push(r.position.0);
                c.save("view", r.position)?;
                Ok(())
            })
            .unwrap()
    };
    let w = writers(&store, 4, 100);
    let sub = start(&store);
    for t in w {
        t.join().unwrap();
    }
    wait_position(&sub, Some(Position(399)));
    sub.stop();
    drop(sub);
    let w = writers(&store, 4, 50);
    for t in w {
        t.join().unwrap();
    }
    let sub = start(&store);
    wait_position(&sub, Some(Position(599)));
    sub.stop();
    assert_eq!(*model.lock().unwrap(), (0..600).collect::<Vec<_>>());
    feed.stop();
}

#[test]
fn a_subscription_managed_checkpoint_resumes_where_it_stopped() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    for n in 0..100 {
        store
            .append(&stream((n % 3) as usize), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let (seen, record) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "sub")
        .save_every(7)
        .start(record)
        .unwrap();
    wait_position(&sub, Some(Position(99)));
    sub.stop();
    assert_eq!(checkpoints.load("sub").unwrap(), Some(Position(99)));
    for n in 100..150 {
        store
            .append(&stream((n % 3) as usize), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let (seen2, record2) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "sub")
        .start(record2)
        .unwrap();
    wait_position(&sub, Some(Position(149)));
    sub.stop();
    let mut all = seen.lock().unwrap().clone();
    all.extend(seen2.lock().unwrap().iter().cloned());
    assert_exactly_once(&all, 150);
    feed.stop();
}

#[test]
fn a_failing_handler_stops_at_its_position_and_restarts_from_the_checkpoint() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    for n in 0..20 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let broken = Arc::new(AtomicBool::new(true));
    let calls_at_5 = Arc::new(AtomicU64::new(0));
    let (seen, mut record) = recorder();
    let (b, c5) = (broken.clone(), calls_at_5.clone());
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "failing")
        .retry(RetryPolicy::immediate(3))
        .start(move |r| -> Result<(), HandlerError> {
            if r.position == Position(5) {
                c5.fetch_add(1, Ordering::Relaxed);
                if b.load(Ordering::Relaxed) {
                    return Err(HandlerError::transient("database down"));
                }
            }
            record(r);
            Ok(())
        })
        .unwrap();
    let status = sub.wait_status(DEADLINE, |s| matches!(s, Status::Failed { .. }));
    match status {
        Status::Failed { position, error } => {
            assert_eq!(position, Position(5));
            assert!(error.contains("database down"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // Retried in place, three attempts in all, never skipped.
    assert_eq!(calls_at_5.load(Ordering::Relaxed), 3);
    assert_eq!(sub.metrics().retries, 2);
    assert_eq!(sub.metrics().failures, 1);
    assert_eq!(sub.position(), Some(Position(4)));
    assert_eq!(checkpoints.load("failing").unwrap(), Some(Position(4)));
    // Restart in place once the cause is fixed.
    broken.store(false, Ordering::Relaxed);
    sub.restart();
    wait_position(&sub, Some(Position(19)));
    assert_exactly_once(&seen.lock().unwrap(), 20);
    sub.stop();

    // A permanent error is not retried; a new subscription on the same
    // checkpoint resumes at the failed event.
    for n in 20..30 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "failing")
        .retry(RetryPolicy::immediate(3))
        .start(|r| -> Result<(), HandlerError> {
            if r.position == Position(25) {
                return Err(HandlerError::permanent("bad event"));
            }
            Ok(())
        })
        .unwrap();
    let status = sub.wait_status(DEADLINE, |s| matches!(s, Status::Failed { .. }));
    assert!(
        matches!(
            status,
            Status::Failed {
                position: Position(25),
                ..
            }
        ),
        "{status:?}"
    );
    assert_eq!(sub.metrics().retries, 0);
    sub.stop();
    assert_eq!(checkpoints.load("failing").unwrap(), Some(Position(24)));
    let (seen, record) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "failing")
        .start(record)
        .unwrap();
    wait_position(&sub, Some(Position(29)));
    sub.stop();
    let positions: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0 .0).collect();
    assert_eq!(positions, (25..30).collect::<Vec<_>>());
    feed.stop();
}

#[test]
fn skip_to_dead_letters_is_opt_in_and_goes_on() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let (seen, mut record) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .name("skipper")
        .on_failure(OnFailure::SkipToDeadLetters)
        .start(move |r| {
            if r.position == Position(3) {
                panic!("boom");
            }
            record(r);
        })
        .unwrap();
    wait_position(&sub, Some(Position(9)));
    let forwarder = |bus: &Bus<u64>| {
        bus.metrics()
            .handlers
            .iter()
            .any(|h| &*h.handler == "skipper (catch-up)")
    };
    assert!(forwarder(&bus), "the forwarder is on the bus while running");
    sub.stop();
    wait_until("the forwarder's removal", || !forwarder(&bus));
    let positions: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0 .0).collect();
    assert_eq!(positions, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    let letters = bus.dead_letters().list(&Default::default());
    assert_eq!(letters.len(), 1);
    assert_eq!(&*letters[0].handler, "skipper");
    assert!(letters[0].attempts[0].panicked);
    assert_eq!(sub.metrics().dead_lettered, 1);
}

#[test]
fn a_subscription_can_be_stopped_from_a_bus_handler() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let sub = subscribe_all(store.clone(), &bus).start(|_r| ()).unwrap();
    sub.wait_status(DEADLINE, |s| *s == Status::Live);
    let slot = Arc::new(Mutex::new(Some(sub)));
    let s = slot.clone();
    let stopped = Arc::new(AtomicBool::new(false));
    let st = stopped.clone();
    bus.subscribe("test.appended", move |_e: &Event<u64>| {
        if let Some(sub) = s.lock().unwrap().take() {
            sub.stop();
            assert_eq!(sub.status(), Status::Stopped);
            st.store(true, Ordering::Release);
        }
    })
    .unwrap();
    store
        .append(&stream(0), ExpectedVersion::Any, vec![ev(1)])
        .unwrap();
    wait_until("the stop from the handler", || {
        stopped.load(Ordering::Acquire)
    });
    feed.stop();
}

#[test]
fn a_subscription_can_be_stopped_from_its_own_handler() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let slot: Arc<Mutex<Option<CatchUpHandle>>> = Arc::default();
    let s = slot.clone();
    let (seen, mut record) = recorder();
    let sub = subscribe_all(store.clone(), &bus)
        .name("self-stop")
        .start(move |r| {
            record(r);
            if r.position == Position(4) {
                // Takes effect once this call returns; must not wait for itself.
                let sub = s.lock().unwrap().take().unwrap();
                sub.stop();
                assert_ne!(sub.status(), Status::Stopped);
            }
        })
        .unwrap();
    *slot.lock().unwrap() = Some(sub);
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    // The thread ends: its forwarder leaves the bus.
    wait_until("the forwarder's removal", || {
        !bus.metrics()
            .handlers
            .iter()
            .any(|h| &*h.handler == "self-stop (catch-up)")
    });
    let positions: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0 .0).collect();
    assert_eq!(
        positions,
        [0, 1, 2, 3, 4],
        "nothing after the stopping call"
    );
}

#[test]
fn filters_and_stream_subscriptions_see_only_their_events_with_stream_versions() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    let other = |n| Event::new(event_type!("other.thing"), source!("tests"), n);
    for n in 0..30 {
        let e = if n % 2 == 0 { ev(n) } else { other(n) };
        store
            .append(&stream((n % 3) as usize), ExpectedVersion::Any, vec![e])
            .unwrap();
    }
    let (typed, record) = recorder();
    let by_type = subscribe_all(store.clone(), &bus)
        .filter("test.*")
        .start(record)
        .unwrap();
    let (streamed, record) = recorder();
    let by_stream = subscribe_stream(store.clone(), &bus, stream(1), 3)
        .start(record)
        .unwrap();
    for n in 30..60 {
        let e = if n % 2 == 0 { ev(n) } else { other(n) };
        store
            .append(&stream((n % 3) as usize), ExpectedVersion::Any, vec![e])
            .unwrap();
    }
    wait_position(&by_type, Some(Position(59)));
    wait_position(&by_stream, Some(Position(59)));
    by_type.stop();
    by_stream.stop();
    let typed: Vec<u64> = typed.lock().unwrap().iter().map(|s| s.0 .0).collect();
    assert_eq!(typed, (0..60).step_by(2).collect::<Vec<_>>());
    let m = by_type.metrics();
    assert_eq!((m.delivered, m.filtered), (30, 30));
    assert_eq!(m.from_store + m.from_bus, 60, "{m:?}");
    let streamed = streamed.lock().unwrap().clone();
    // Stream s-1 holds positions 1, 4, 7, …; from version 3 on: 7, 10, …
    let expected: Vec<(Position, u64, String)> = (0..60)
        .filter(|p| p % 3 == 1)
        .enumerate()
        .map(|(i, p)| (Position(p), i as u64 + 1, "s-1".to_owned()))
        .filter(|e| e.1 >= 3)
        .collect();
    assert_eq!(streamed, expected);
    feed.stop();
}

#[test]
fn a_stream_subscription_from_a_version_the_stream_has_not_reached_waits_for_it() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    store
        .append(&stream(5), ExpectedVersion::Any, vec![ev(1)])
        .unwrap();
    store
        .append(&stream(6), ExpectedVersion::Any, vec![ev(1)])
        .unwrap();
    let (seen, record) = recorder();
    let sub = subscribe_stream(store.clone(), &bus, stream(5), 3)
        .start(record)
        .unwrap();
    for n in 2..=4 {
        store
            .append(&stream(5), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
        store
            .append(&stream(6), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    wait_position(&sub, store.head());
    sub.stop();
    let versions: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(versions, [3, 4]);
    feed.stop();
}

#[test]
fn rebuild_replays_from_the_start_after_a_rebuilding_notification() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let model: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (m1, m2) = (model.clone(), model.clone());
    let sub = subscribe_all(store.clone(), &bus)
        .on_notification(move |n| {
            if n == Notification::Rebuilding {
                m1.lock().unwrap().clear();
            }
        })
        .start(move |r| m2.lock().unwrap().push(r.position.0))
        .unwrap();
    wait_position(&sub, Some(Position(9)));
    sub.rebuild();
    wait_until("the replay", || {
        model.lock().unwrap().len() == 10 && sub.position() == Some(Position(9))
    });
    sub.stop();
    assert_eq!(*model.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn every_event_a_store_hands_out_carries_its_position() {
    let store = InMemoryStore::new();
    // A position the caller set is not what the store keeps.
    let stale = ev(0).with_position(Position(77));
    store
        .append(&stream(0), ExpectedVersion::Any, vec![ev(1), stale])
        .unwrap();
    store
        .append(&stream(1), ExpectedVersion::Any, vec![ev(2)])
        .unwrap();
    let all = store.read_all(Position(0), 10).unwrap();
    assert_eq!(all.len(), 3);
    let mut reads = all;
    reads.extend(store.read_stream(&stream(0), 1, 10).unwrap());
    reads.extend(store.read_stream_backward(&stream(0), 10).unwrap());
    for r in &reads {
        assert_eq!(r.event.position(), Some(r.position), "{r:?}");
    }
    // Scanned frames do not carry the caller's stale position (the scan passes
    // each position beside the view).
    let mut scanned = Vec::new();
    store
        .scan_all(Position(0), &mut |p, v| {
            scanned.push((p, v.position()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert!(
        scanned.iter().all(|s| s.1 != Some(Position(77))),
        "{scanned:?}"
    );
    // A refused append hands the events back with the caller's positions.
    let refused = vec![ev(3).with_position(Position(5))];
    match store.append(&stream(0), ExpectedVersion::NoStream, refused) {
        Err(AppendError::WrongExpectedVersion { events, .. }) => {
            assert_eq!(events[0].position(), Some(Position(5)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_feed_ends_with_its_bus_or_its_store_and_a_dropped_handle_stops_its_subscription() {
    let store = Arc::new(InMemoryStore::new());
    let bus = bus();
    let sub = subscribe_all(store.clone(), &bus)
        .name("dropped")
        .start(|_r| ())
        .unwrap();
    let on_bus = |bus: &Bus<u64>| {
        bus.metrics()
            .handlers
            .iter()
            .any(|h| &*h.handler == "dropped (catch-up)")
    };
    assert!(on_bus(&bus));
    drop(sub);
    wait_until("the dropped subscription's end", || !on_bus(&bus));

    let feed = store.publish_to(&bus);
    assert!(!feed.is_ended());
    bus.shutdown().unwrap();
    wait_until("the feed to notice the shutdown", || feed.is_ended());
    assert_eq!(feed.error(), None);

    let bus = self::bus();
    let feed = store.publish_to(&bus);
    drop(store);
    wait_until("the feed to notice the store is gone", || feed.is_ended());
}

#[test]
fn publish_to_delivers_only_committed_events_in_position_order_with_positions() {
    let bus = bus();
    type Published = Vec<(Option<Position>, ringbus::EventId)>;
    let seen: Arc<Mutex<Published>> = Arc::default();
    let s = seen.clone();
    bus.subscribe(">", move |e: &Event<u64>| {
        s.lock().unwrap().push((e.position(), e.id))
    })
    .unwrap();
    let store = Arc::new(InMemoryStore::new());
    // Committed before the feed: not published.
    store
        .append(&stream(9), ExpectedVersion::Any, vec![ev(999)])
        .unwrap();
    let feed = store.publish_to(&bus);
    let w = writers(&store, 4, if cfg!(miri) { 20 } else { 1_000 });
    // Conflicts and rejections commit nothing, so publish nothing.
    let refused = ev(998);
    let refused_id = refused.id;
    let conflict = store.append(&stream(9), ExpectedVersion::NoStream, vec![refused]);
    assert!(matches!(
        conflict,
        Err(AppendError::WrongExpectedVersion { .. })
    ));
    for t in w {
        t.join().unwrap();
    }
    let head = store.head().unwrap();
    wait_until("the feed", || feed.next_position() == head.next());
    bus.flush().unwrap();
    let seen = seen.lock().unwrap();
    let positions: Vec<Option<Position>> = seen.iter().map(|s| s.0).collect();
    let expected: Vec<Option<Position>> = (1..=head.0).map(|p| Some(Position(p))).collect();
    assert_eq!(positions, expected);
    // Each published event is the stored one.
    let stored = store.read_all(Position(1), usize::MAX).unwrap();
    assert!(stored
        .iter()
        .zip(seen.iter())
        .all(|(r, s)| r.event.id == s.1));
    assert!(seen.iter().all(|s| s.1 != refused_id));
    feed.stop();
}

// ---- the position in the codec (FORMAT.md §5, tag 4) -------------------------

mod codec_position {
    use ringbus::codec::{self, ContentType, DecodeError, Encoder, EventRef};
    use ringbus::store::Position;
    use ringbus::{event_type, source, Event};

    fn event() -> Event<u64> {
        Event::new(event_type!("order.placed"), source!("shop"), 7).with_subject("o-1")
    }

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    #[test]
    fn every_decode_path_reads_the_position_back() {
        for p in [0, 1, 127, 128, 300_000, u64::MAX - 1] {
            let e = event().with_position(Position(p));
            for encoder in [
                Encoder::new(),
                Encoder::new().checksum(true),
                Encoder::new().content_type(ContentType::JSON),
            ] {
                let mut buf = Vec::new();
                encoder.encode(&e, &mut buf).unwrap();
                let (back, n) = codec::decode::<u64>(&buf).unwrap();
                assert_eq!(n, buf.len());
                assert_eq!(back.position(), Some(Position(p)));
                assert_eq!(back, e);
                let (view, _) = EventRef::decode(&buf).unwrap();
                assert_eq!(view.position(), Some(Position(p)));
                assert_eq!(
                    view.to_event::<u64>().unwrap().position(),
                    Some(Position(p))
                );
                assert_eq!(view.to_event_raw().unwrap().position(), Some(Position(p)));
            }
        }
        // Batches: each event its own position, or none.
        let batch = vec![
            event().with_position(Position(5)),
            event(),
            event().with_position(Position(9)),
        ];
        let mut buf = Vec::new();
        codec::encode_batch(&batch, &mut buf).unwrap();
        let (back, _) = codec::decode_batch::<u64>(&buf).unwrap();
        let positions: Vec<_> = back.iter().map(Event::position).collect();
        assert_eq!(positions, [Some(Position(5)), None, Some(Position(9))]);
        assert_eq!(back, batch);
    }

    /// The position is nothing but a FORMAT.md v1 extension record with an even
    /// tag: the frame is byte for byte the frame of the event without it plus
    /// that record, so a decoder that does not know tag 4 skips it.
    #[test]
    fn the_position_is_an_ordinary_even_extension_record() {
        let plain = event();
        let placed = plain.clone().with_position(Position(300));
        let mut with = Vec::new();
        Encoder::new().encode(&placed, &mut with).unwrap();
        let mut by_hand = Vec::new();
        Encoder::new()
            .extension(4, &varint(300))
            .encode(&plain, &mut by_hand)
            .unwrap();
        assert_eq!(with, by_hand);
        let (view, _) = EventRef::decode(&with).unwrap();
        let records: Vec<(u64, Vec<u8>)> =
            view.extensions().map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(records, [(4, varint(300))]);
        // With the encoder's own records after it.
        let mut both = Vec::new();
        Encoder::new()
            .extension(2, &[1])
            .encode(&placed, &mut both)
            .unwrap();
        let (view, _) = EventRef::decode(&both).unwrap();
        assert_eq!(view.position(), Some(Position(300)));
        let tags: Vec<u64> = view.extensions().map(|(t, _)| t).collect();
        assert_eq!(tags, [4, 2]);
    }

    #[test]
    fn an_old_frame_without_the_record_decodes_with_no_position() {
        // What a version 1 encoder that knows no tag writes: no extension
        // block, or one with a record this version does not know.
        for encoder in [Encoder::new(), Encoder::new().extension(2, &[1])] {
            let mut buf = Vec::new();
            encoder.encode(&event(), &mut buf).unwrap();
            let (back, _) = codec::decode::<u64>(&buf).unwrap();
            assert_eq!(back.position(), None);
            assert_eq!(EventRef::decode(&buf).unwrap().0.position(), None);
        }
        let mut raw = Vec::new();
        let e = Event::new(event_type!("t"), source!("s"), b"xy".to_vec());
        Encoder::new()
            .encode_raw(&e, ContentType::RAW, &mut raw)
            .unwrap();
        let (view, _) = EventRef::decode(&raw).unwrap();
        assert_eq!(view.to_event_raw().unwrap().position(), None);
    }

    #[test]
    fn a_malformed_position_record_is_refused() {
        for data in [varint(u64::MAX), vec![0x81], vec![0x01, 0x00], vec![]] {
            let mut buf = Vec::new();
            Encoder::new()
                .extension(4, &data)
                .encode(&event(), &mut buf)
                .unwrap();
            let err = codec::decode::<u64>(&buf).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::InvalidVarint { .. }
                        | DecodeError::TrailingBytes { .. }
                        | DecodeError::LengthMismatch { .. }
                        | DecodeError::Truncated { .. }
                ),
                "{data:?}: {err:?}"
            );
        }
    }
}

#[test]
fn the_bus_metrics_list_each_catch_up_subscription_with_status_position_and_lag() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    let feed = store.publish_to(&bus);
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    // Handles position 0, then holds position 1 until the gate opens.
    let held = subscribe_all(store.clone(), &bus)
        .name("held")
        .start(move |r| {
            while r.position == Position(1) && !g.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    let live = subscribe_all(store.clone(), &bus)
        .name("live")
        .start(|_| {})
        .unwrap();
    wait_position(&held, Some(Position(0)));
    assert_eq!(
        live.wait_status(DEADLINE, |s| *s == Status::Live),
        Status::Live
    );
    wait_position(&live, Some(Position(9)));
    assert!(live.wait_for(Position(9), DEADLINE));
    // Held at position 1: not there within the timeout.
    assert!(!held.wait_for(Position(9), Duration::from_millis(20)));

    let report = |name: &str| {
        bus.metrics()
            .catch_ups
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the bus's metrics"))
    };
    let h = report("held");
    assert_eq!(h.status, Status::CatchingUp);
    assert_eq!(h.position, Some(Position(0)));
    assert_eq!(h.head, Some(Position(9)));
    assert_eq!(h.lag, 9);
    assert_eq!(h.counters.delivered, 1);
    let l = report("live");
    assert_eq!(l.status, Status::Live);
    assert_eq!((l.position, l.lag), (Some(Position(9)), 0));
    assert!(l.counters.caught_up >= 1);
    assert_eq!(l.counters.delivered, 10);
    // Ten events since the start, less than a second ago: a positive rate.
    assert!(l.events_per_sec > 0.0, "{}", l.events_per_sec);
    let text = bus.metrics().to_prometheus();
    assert!(
        text.contains("ringbus_catchup_lag_events{name=\"held\"} 9\n"),
        "{text}"
    );
    assert!(
        text.contains("ringbus_catchup_state{name=\"live\"} 1\n"),
        "{text}"
    );

    gate.store(true, Ordering::Release);
    wait_position(&held, Some(Position(9)));
    assert_eq!(report("held").lag, 0);
    // Listed for as long as the handle lives.
    drop(held);
    live.stop();
    let names: Vec<String> = bus
        .metrics()
        .catch_ups
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["live"]);
    assert_eq!(report("live").status, Status::Stopped);
    drop(live);
    assert!(bus.metrics().catch_ups.is_empty());
    feed.stop();
}

#[test]
fn rebuild_clears_the_checkpoint_before_the_replay() {
    let bus = bus();
    let store = Arc::new(InMemoryStore::new());
    for n in 0..10 {
        store
            .append(&stream(0), ExpectedVersion::Any, vec![ev(n)])
            .unwrap();
    }
    let checkpoints = Arc::new(InMemoryCheckpoints::new());
    let replaying = Arc::new(AtomicBool::new(false));
    let seen_at_replay: Arc<Mutex<Vec<Option<Position>>>> = Arc::default();
    let (r1, r2, cps, seen) = (
        replaying.clone(),
        replaying.clone(),
        checkpoints.clone(),
        seen_at_replay.clone(),
    );
    let sub = subscribe_all(store.clone(), &bus)
        .checkpoints(checkpoints.clone(), "view")
        .save_every(1)
        .on_notification(move |n| {
            if n == Notification::Rebuilding {
                r1.store(true, Ordering::Release);
            }
        })
        .start(move |r| {
            if r.position == Position(0) && r2.load(Ordering::Acquire) {
                seen.lock().unwrap().push(cps.load("view").unwrap());
            }
        })
        .unwrap();
    wait_position(&sub, Some(Position(9)));
    wait_until("the checkpoint", || {
        checkpoints.load("view").unwrap() == Some(Position(9))
    });
    sub.rebuild();
    wait_until("the replay's first event", || {
        !seen_at_replay.lock().unwrap().is_empty()
    });
    // The replay's first event is handled with no checkpoint left behind.
    assert_eq!(*seen_at_replay.lock().unwrap(), [None]);
    wait_until("the replay's checkpoint", || {
        checkpoints.load("view").unwrap() == Some(Position(9))
    });
    sub.stop();
}
