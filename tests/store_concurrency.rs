//! The event store under concurrent appenders and readers (issue 11, A7): 8
//! threads append with `Exact` versions and retry on conflict, while readers
//! follow the log and must never see a gap or a position beyond the head (the
//! Marten "skipped events" regression, made a test).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use ringbus::store::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, InMemoryStore, Position, StreamId,
};
use ringbus::{event_type, source, Event, EventId};

const APPENDERS: usize = if cfg!(miri) { 3 } else { 8 };
const APPENDS: usize = if cfg!(miri) { 30 } else { 10_000 };
const STREAMS: usize = if cfg!(miri) { 5 } else { 100 };
const TOTAL: u64 = (APPENDERS * APPENDS) as u64;

/// Payload: who appended it, and its index in that thread's sequence.
type Payload = (u32, u32);

/// One successful append, as its appender saw it.
struct Success {
    stream: usize,
    id: EventId,
    outcome: AppendOutcome,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Appends `APPENDS` single events to random streams, each with `Exact(version)`
/// read just before, retrying with the returned events on conflict.
fn appender<S: EventStore<Payload>>(
    store: &S,
    streams: &[StreamId],
    thread: usize,
) -> (Vec<Success>, u64) {
    let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (thread as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut done = Vec::with_capacity(APPENDS);
    let mut conflicts = 0;
    for i in 0..APPENDS {
        let stream = (xorshift(&mut rng) % STREAMS as u64) as usize;
        let mut events = vec![Event::new(
            event_type!("test.appended"),
            source!("concurrency"),
            (thread as u32, i as u32),
        )];
        let id = events[0].id;
        let mut version = store.stream_version(&streams[stream]).unwrap();
        loop {
            match store.append(&streams[stream], ExpectedVersion::Exact(version), events) {
                Ok(outcome) => {
                    assert!(!outcome.duplicate);
                    assert_eq!(outcome.len(), 1);
                    done.push(Success {
                        stream,
                        id,
                        outcome,
                    });
                    break;
                }
                Err(AppendError::WrongExpectedVersion {
                    actual,
                    events: back,
                    ..
                }) => {
                    assert!(
                        actual > version,
                        "versions only grow: {actual} after {version}"
                    );
                    assert_eq!(back.len(), 1);
                    assert_eq!(back[0].id, id);
                    conflicts += 1;
                    version = actual;
                    events = back;
                }
                Err(other) => panic!("thread {thread}, append {i}: {other:?}"),
            }
        }
    }
    (done, conflicts)
}

/// Follows the log with `read_all` from its last position until it has seen
/// every event: every page starts where the last one ended, holds consecutive
/// positions, and never passes the head read after it.
fn follower<S: EventStore<Payload>>(store: &S, seed: u64) -> Vec<EventId> {
    let mut rng = seed;
    let mut next = 0_u64;
    let mut ids = Vec::with_capacity(TOTAL as usize);
    while next < TOTAL {
        let head_before = store.head();
        let max = if seed.is_multiple_of(2) {
            usize::MAX
        } else {
            1 + (xorshift(&mut rng) % 512) as usize
        };
        let page = store.read_all(Position(next), max).unwrap();
        let head_after = store.head();
        if head_before.is_some_and(|h| h.0 >= next) {
            assert!(
                !page.is_empty(),
                "head {head_before:?} is at or past {next}, read_all returned nothing"
            );
        }
        for r in &page {
            assert_eq!(r.position, Position(next), "gap or reordering in read_all");
            assert!(
                Some(r.position) <= head_after,
                "position {} beyond head {head_after:?}",
                r.position
            );
            ids.push(r.event.id);
            next += 1;
        }
        if page.is_empty() {
            std::thread::yield_now();
        }
    }
    ids
}

/// Follows the log with `scan_all`, with the same checks.
fn scanner<S: EventStore<Payload>>(store: &S) -> Vec<EventId> {
    let mut next = 0_u64;
    let mut ids = Vec::with_capacity(TOTAL as usize);
    while next < TOTAL {
        let last = store
            .scan_all(Position(next), &mut |p, e| {
                assert_eq!(p, Position(next), "gap or reordering in scan_all");
                ids.push(e.id());
                next += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        let head = store.head();
        assert!(
            last <= head,
            "scan_all reached {last:?} beyond head {head:?}"
        );
        if last.is_none() {
            std::thread::yield_now();
        }
    }
    ids
}

fn concurrent_appends_and_readers<S: EventStore<Payload>>(store: &S) {
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new(format!("stream-{i}")).unwrap())
        .collect();
    let (appended, followed, scanned) = std::thread::scope(|s| {
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|t| {
                s.spawn({
                    let streams = &streams;
                    move || appender(store, streams, t)
                })
            })
            .collect();
        let followers: Vec<_> = [2_u64, 3]
            .into_iter()
            .map(|seed| s.spawn(move || follower(store, seed)))
            .collect();
        let scanning = s.spawn(|| scanner(store));
        (
            appenders
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            followers
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            scanning.join().unwrap(),
        )
    });

    // Dense positions 0 .. N-1, no duplicates; the readers saw exactly that.
    let all = store.read_all(Position(0), usize::MAX).unwrap();
    assert_eq!(all.len() as u64, TOTAL);
    assert_eq!(store.head(), Some(Position(TOTAL - 1)));
    let positions: Vec<u64> = all.iter().map(|r| r.position.0).collect();
    assert_eq!(positions, (0..TOTAL).collect::<Vec<_>>());
    let ids: Vec<EventId> = all.iter().map(|r| r.event.id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len() as u64,
        TOTAL,
        "an event is stored twice"
    );
    for seen in followed.iter().chain([&scanned]) {
        assert_eq!(seen, &ids);
    }

    // Every successful append is where its outcome says, with that version.
    let mut per_stream = vec![0_u64; STREAMS];
    let mut conflicts = 0;
    for (thread, (done, c)) in appended.iter().enumerate() {
        conflicts += c;
        assert_eq!(done.len(), APPENDS);
        let mut last_version: HashMap<usize, u64> = HashMap::new();
        for (i, s) in done.iter().enumerate() {
            let r = &all[s.outcome.first_position.0 as usize];
            assert_eq!(r.event.id, s.id);
            assert_eq!(r.version, s.outcome.version);
            assert_eq!(r.event.data, (thread as u32, i as u32));
            assert_eq!(
                r.event.subject.as_ref(),
                Some(streams[s.stream].as_subject())
            );
            // Per stream, a thread's appends keep their order.
            let prev = last_version
                .insert(s.stream, s.outcome.version)
                .unwrap_or(0);
            assert!(
                s.outcome.version > prev,
                "thread {thread}: stream order differs from append order"
            );
            per_stream[s.stream] += 1;
        }
    }

    // Final versions equal the successful appends per stream; versions are dense
    // and the stream lists exactly the events whose outcomes named it.
    for (i, stream) in streams.iter().enumerate() {
        assert_eq!(
            store.stream_version(stream).unwrap(),
            per_stream[i],
            "{stream}"
        );
        let events = store.read_stream(stream, 1, usize::MAX).unwrap();
        let versions: Vec<u64> = events.iter().map(|r| r.version).collect();
        assert_eq!(versions, (1..=per_stream[i]).collect::<Vec<_>>());
        assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    }
    assert_eq!(per_stream.iter().sum::<u64>(), TOTAL);
    eprintln!("{TOTAL} appends, {conflicts} conflicts retried");
}

#[test]
fn in_memory_store() {
    concurrent_appends_and_readers(&InMemoryStore::new());
}
