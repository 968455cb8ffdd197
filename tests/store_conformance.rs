//! The event store conformance suite (issue 11, A2): what every [`EventStore`]
//! promises, written once over the trait and run for each store by one line at the
//! bottom — `conformance!(module_name, fixture_fn);` — where the fixture calls its
//! argument with a fresh, empty store.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ringbus::store::StreamId;
use ringbus::store::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, InMemoryStore, Position, Recorded,
    RejectReason,
};
use ringbus::{event_type, source, Event, EventId, Subject};
use serde_json::{json, Value};

use ExpectedVersion::{Any, Exact, NoStream, StreamExists};

fn ev(n: u64) -> Event {
    Event::new(
        event_type!("test.happened"),
        source!("conformance"),
        json!({ "n": n }),
    )
}

fn evs(k: u64) -> Vec<Event> {
    (0..k).map(ev).collect()
}

fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

fn recorded_ids(records: &[Recorded]) -> Vec<EventId> {
    records.iter().map(|r| r.event.id).collect()
}

/// The generic cases. Each takes a fresh, empty store.
mod cases {
    use super::*;

    /// Appends `k` events to `stream` (which must be at `version`), checks the
    /// outcome, and returns the events.
    pub(super) fn put<S: EventStore<Value>>(store: &S, stream: &StreamId, k: u64) -> Vec<Event> {
        let batch = evs(k);
        let version = store.stream_version(stream).unwrap();
        let head = store.head();
        let o = store.append(stream, Exact(version), batch.clone()).unwrap();
        let first = head.map_or(0, |h| h.0 + 1);
        assert_eq!(
            o,
            AppendOutcome {
                first_position: Position(first),
                last_position: Position(first + k - 1),
                version: version + k,
                duplicate: false
            }
        );
        batch
    }

    /// The store is exactly as it was: same head, same stream versions.
    fn assert_unchanged<S: EventStore<Value>>(
        store: &S,
        head: Option<Position>,
        versions: &[(&StreamId, u64)],
    ) {
        assert_eq!(store.head(), head, "head moved");
        for (s, v) in versions {
            assert_eq!(store.stream_version(s).unwrap(), *v, "version of {s}");
        }
        let all = store.read_all(Position(0), usize::MAX).unwrap();
        assert_eq!(all.len() as u64, head.map_or(0, |h| h.0 + 1));
    }

    fn expect_conflict<S: EventStore<Value>>(
        store: &S,
        stream: &StreamId,
        expected: ExpectedVersion,
        actual: u64,
    ) {
        let head = store.head();
        let batch = evs(2);
        match store.append(stream, expected, batch.clone()) {
            Err(AppendError::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual: a,
                events,
            }) => {
                assert_eq!((&s, e, a), (stream, expected, actual));
                assert_eq!(events, batch, "events come back unchanged");
            }
            other => panic!("{expected:?} at version {actual}: {other:?}"),
        }
        assert_unchanged(store, head, &[(stream, actual)]);
    }

    fn expect_append<S: EventStore<Value>>(
        store: &S,
        stream: &StreamId,
        expected: ExpectedVersion,
        version: u64,
    ) {
        let batch = evs(2);
        let o = store.append(stream, expected, batch.clone()).unwrap();
        assert!(!o.duplicate);
        assert_eq!(o.version, version + 2);
        assert_eq!(o.len(), 2);
        let back = store.read_stream(stream, version + 1, 10).unwrap();
        assert_eq!(recorded_ids(&back), ids(&batch));
    }

    // ---- A2.1: the expected-version matrix, every cell ------------------------

    pub(super) fn any_on_absent_stream_appends<S: EventStore<Value>>(store: &S) {
        expect_append(store, &sid("a"), Any, 0);
    }

    pub(super) fn any_on_existing_stream_appends<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 3);
        expect_append(store, &sid("a"), Any, 3);
    }

    pub(super) fn no_stream_on_absent_stream_appends<S: EventStore<Value>>(store: &S) {
        put(store, &sid("other"), 1);
        expect_append(store, &sid("a"), NoStream, 0);
    }

    pub(super) fn no_stream_on_existing_stream_conflicts<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 3);
        expect_conflict(store, &sid("a"), NoStream, 3);
    }

    pub(super) fn stream_exists_on_absent_stream_conflicts<S: EventStore<Value>>(store: &S) {
        expect_conflict(store, &sid("a"), StreamExists, 0);
        put(store, &sid("other"), 2);
        expect_conflict(store, &sid("a"), StreamExists, 0);
    }

    pub(super) fn stream_exists_on_existing_stream_appends<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 1);
        expect_append(store, &sid("a"), StreamExists, 1);
    }

    pub(super) fn exact_on_absent_stream<S: EventStore<Value>>(store: &S) {
        expect_conflict(store, &sid("a"), Exact(1), 0);
        expect_conflict(store, &sid("a"), Exact(7), 0);
        expect_append(store, &sid("a"), Exact(0), 0);
    }

    pub(super) fn exact_on_existing_stream<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 3);
        put(store, &sid("b"), 1);
        for wrong in [0, 1, 2, 4, u64::MAX] {
            expect_conflict(store, &sid("a"), Exact(wrong), 3);
        }
        expect_append(store, &sid("a"), Exact(3), 3);
    }

    // ---- A2.2 and A2.3: atomicity, dense total order ------------------------

    pub(super) fn batches_are_atomic_and_dense<S: EventStore<Value>>(store: &S) {
        let a = put(store, &sid("a"), 5);
        let b = put(store, &sid("b"), 2);
        let c = put(store, &sid("a"), 1);
        let all = store.read_all(Position(0), usize::MAX).unwrap();
        let positions: Vec<u64> = all.iter().map(|r| r.position.0).collect();
        assert_eq!(positions, (0..8).collect::<Vec<_>>());
        let versions: Vec<u64> = all.iter().map(|r| r.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5, 1, 2, 6]);
        let expected: Vec<EventId> = [a, b, c].concat().iter().map(|e| e.id).collect();
        assert_eq!(recorded_ids(&all), expected);
        assert_eq!(store.head(), Some(Position(7)));
        // A batch with one bad event writes none of them.
        let mut bad = evs(3);
        bad[2].subject = Some(Subject::new("elsewhere"));
        assert!(store.append(&sid("a"), Any, bad).is_err());
        assert_unchanged(store, Some(Position(7)), &[(&sid("a"), 6), (&sid("b"), 2)]);
    }

    /// A reader never sees part of an append: while batches of 3 are appended,
    /// the head always ends a batch and `read_all` returns whole batches.
    pub(super) fn readers_see_whole_appends<S: EventStore<Value>>(store: &S) {
        let batches: u64 = if cfg!(miri) { 10 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..batches {
                    let stream = sid(&format!("s-{}", i % 7));
                    store.append(&stream, Any, evs(3)).unwrap();
                }
            });
            s.spawn(|| {
                let mut seen = 0;
                while seen < 3 * batches {
                    if let Some(h) = store.head() {
                        assert_eq!((h.0 + 1) % 3, 0, "head {h} inside a batch");
                    }
                    let new = store.read_all(Position(seen), usize::MAX).unwrap();
                    assert_eq!(new.len() % 3, 0, "read_all returned {} events", new.len());
                    for r in &new {
                        assert_eq!(r.position.0, seen);
                        seen += 1;
                    }
                }
            });
        });
    }

    // ---- A2.4: idempotent retries -----------------------------------------

    fn expect_duplicate<S: EventStore<Value>>(
        store: &S,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &[Event],
        original: AppendOutcome,
    ) {
        let head = store.head();
        let version = store.stream_version(stream).unwrap();
        let o = store.append(stream, expected, batch.to_vec()).unwrap();
        assert_eq!(
            o,
            AppendOutcome {
                duplicate: true,
                ..original
            },
            "{expected:?}"
        );
        assert_unchanged(store, head, &[(stream, version)]);
    }

    pub(super) fn identical_retry_is_a_duplicate<S: EventStore<Value>>(store: &S) {
        let a = sid("a");
        put(store, &a, 2);
        let batch = evs(3);
        let original = store.append(&a, Exact(2), batch.clone()).unwrap();
        expect_duplicate(store, &a, Exact(2), &batch, original);
        // The retry carries the subjects the first attempt set.
        let stamped: Vec<Event> = batch.iter().map(|e| e.clone().with_subject("a")).collect();
        expect_duplicate(store, &a, Exact(2), &stamped, original);
        // With Any / StreamExists: the stream's last events.
        expect_duplicate(store, &a, Any, &batch, original);
        expect_duplicate(store, &a, StreamExists, &batch, original);
        // Still recognised with Exact after later appends to the stream.
        put(store, &a, 2);
        put(store, &sid("b"), 1);
        expect_duplicate(store, &a, Exact(2), &batch, original);
    }

    pub(super) fn no_stream_retry_is_a_duplicate<S: EventStore<Value>>(store: &S) {
        let a = sid("a");
        let batch = evs(2);
        let original = store.append(&a, NoStream, batch.clone()).unwrap();
        expect_duplicate(store, &a, NoStream, &batch, original);
        expect_duplicate(store, &a, Exact(0), &batch, original);
        // A single event of it, retried at its own place.
        let single = store.append(&a, Exact(2), vec![ev(9)]).unwrap();
        let retry = store.read_stream(&a, 3, 1).unwrap()[0].event.clone();
        expect_duplicate(store, &a, Exact(2), &[retry], single);
    }

    fn expect_partial<S: EventStore<Value>>(
        store: &S,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: Vec<Event>,
        already_stored: usize,
    ) {
        let head = store.head();
        let version = store.stream_version(stream).unwrap();
        match store.append(stream, expected, batch.clone()) {
            Err(AppendError::Rejected {
                reason:
                    RejectReason::PartialDuplicate {
                        already_stored: n,
                        batch: b,
                    },
                events,
            }) => {
                assert_eq!((n, b), (already_stored, batch.len()));
                assert_eq!(events, batch);
            }
            other => panic!("{expected:?}: {other:?}"),
        }
        assert_unchanged(store, head, &[(stream, version)]);
    }

    pub(super) fn partial_overlap_is_rejected<S: EventStore<Value>>(store: &S) {
        let a = sid("a");
        let stored = put(store, &a, 3);
        // The first two again, plus a new one, at their place.
        let longer = vec![stored[0].clone(), stored[1].clone(), ev(7)];
        expect_partial(store, &a, NoStream, longer, 2);
        // The stored batch plus one more: the batch runs past the stream's end.
        let mut past_end = stored.clone();
        past_end.push(ev(8));
        expect_partial(store, &a, Exact(0), past_end, 3);
        // Same ids, other order.
        let swapped = vec![stored[1].clone(), stored[0].clone()];
        expect_partial(store, &a, Exact(0), swapped, 2);
        // With Any: the last event again, plus a new one.
        expect_partial(store, &a, Any, vec![stored[2].clone(), ev(9)], 1);
    }

    // ---- A2.5: subject = stream ----------------------------------------------

    pub(super) fn subject_is_the_stream<S: EventStore<Value>>(store: &S) {
        let a = sid("order-7");
        let batch = vec![ev(0), ev(1).with_subject("order-7")];
        store.append(&a, NoStream, batch).unwrap();
        for r in store.read_stream(&a, 1, 10).unwrap() {
            assert_eq!(r.event.subject.as_ref(), Some(a.as_subject()));
        }
        let mut wrong = evs(3);
        wrong[1].subject = Some(Subject::new("order-8"));
        match store.append(&a, Any, wrong.clone()) {
            Err(AppendError::Rejected {
                reason: RejectReason::SubjectMismatch { index, subject },
                events,
            }) => {
                assert_eq!((index, subject.as_str()), (1, "order-8"));
                assert_eq!(events, wrong);
            }
            other => panic!("{other:?}"),
        }
        assert_unchanged(store, Some(Position(1)), &[(&a, 2)]);
    }

    // ---- errors hand the events back ------------------------------------------

    fn expect_rejected<S: EventStore<Value>>(
        store: &S,
        batch: Vec<Event>,
        check: impl Fn(&RejectReason) -> bool,
    ) {
        let head = store.head();
        let a = sid("a");
        let version = store.stream_version(&a).unwrap();
        let n = batch.len();
        let first_ids = ids(&batch[..n.min(4)]);
        match store.append(&a, Any, batch) {
            Err(e @ AppendError::Rejected { .. }) => {
                let AppendError::Rejected { reason, .. } = &e else {
                    unreachable!()
                };
                assert!(check(reason), "{reason:?}");
                assert!(!e.to_string().is_empty());
                let events = e.into_events();
                assert_eq!(events.len(), n);
                assert_eq!(ids(&events[..n.min(4)]), first_ids);
                assert!(
                    events.iter().all(|e| e.subject.is_none()),
                    "subjects untouched"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_unchanged(store, head, &[(&a, version)]);
    }

    pub(super) fn bad_batches_are_rejected_with_their_events<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 1);
        expect_rejected(store, vec![], |r| *r == RejectReason::EmptyBatch);
        let mut nil = evs(3);
        nil[1].id = EventId::nil();
        expect_rejected(store, nil, |r| *r == RejectReason::NilEventId { index: 1 });
        let mut twice = evs(3);
        twice[2].id = twice[0].id;
        let id = twice[0].id;
        expect_rejected(store, twice, |r| {
            *r == RejectReason::DuplicateEventId { index: 2, id }
        });
    }

    /// The codec's limits bound one append: 65 536 events, 16 MiB.
    pub(super) fn oversized_batches_are_rejected<S: EventStore<Value>>(store: &S) {
        let many: Vec<Event> = (0..65_537)
            .map(|_| Event::new(event_type!("t"), source!("s"), Value::Null))
            .collect();
        expect_rejected(store, many, |r| {
            matches!(r, RejectReason::TooManyEvents { count: 65_537, .. })
        });
        let big = Event::new(
            event_type!("t"),
            source!("s"),
            Value::String("x".repeat(17 << 20)),
        );
        expect_rejected(store, vec![big], |r| {
            matches!(r, RejectReason::TooLarge { .. })
        });
        let halves = (0..2)
            .map(|_| {
                Event::new(
                    event_type!("t"),
                    source!("s"),
                    Value::String("x".repeat(9 << 20)),
                )
            })
            .collect();
        expect_rejected(store, halves, |r| {
            matches!(r, RejectReason::TooLarge { .. })
        });
        // Exactly the maximum number of events is fine.
        let max: Vec<Event> = (0..65_536)
            .map(|_| Event::new(event_type!("t"), source!("s"), Value::Null))
            .collect();
        assert_eq!(store.append(&sid("a"), Any, max).unwrap().len(), 65_536);
    }

    // ---- A2.6: read bounds ------------------------------------------------------

    pub(super) fn read_stream_bounds<S: EventStore<Value>>(store: &S) {
        let a = sid("a");
        let b = sid("b");
        let mut a_ids = Vec::new();
        for i in 0..4 {
            a_ids.extend(ids(&put(store, &a, 2)));
            put(store, &b, i + 1);
        }
        let read = |from, max| store.read_stream(&a, from, max).unwrap();
        assert_eq!(recorded_ids(&read(0, 100)), a_ids);
        assert_eq!(recorded_ids(&read(1, 100)), a_ids);
        assert_eq!(recorded_ids(&read(4, 3)), a_ids[3..6]);
        assert_eq!(recorded_ids(&read(8, 3)), a_ids[7..]);
        assert!(read(9, 3).is_empty());
        assert!(read(u64::MAX, usize::MAX).is_empty());
        assert!(read(1, 0).is_empty());
        assert_eq!(read(2, usize::MAX).len(), 7);
        for r in read(1, 100) {
            assert_eq!(r.event.subject.as_ref(), Some(a.as_subject()));
            let at = store.read_all(r.position, 1).unwrap();
            assert_eq!(at[0], r, "read_stream and read_all agree");
        }
        let versions: Vec<u64> = read(3, 100).iter().map(|r| r.version).collect();
        assert_eq!(versions, [3, 4, 5, 6, 7, 8]);
        assert!(store.read_stream(&sid("absent"), 0, 10).unwrap().is_empty());
        assert_eq!(store.stream_version(&sid("absent")).unwrap(), 0);
        assert_eq!(store.stream_version(&a).unwrap(), 8);
        assert_eq!(store.stream_version(&b).unwrap(), 10);
    }

    pub(super) fn read_stream_backward_bounds<S: EventStore<Value>>(store: &S) {
        let a = sid("a");
        let stored = [
            put(store, &a, 3),
            put(store, &sid("b"), 1),
            put(store, &a, 2),
        ];
        let mut a_ids = ids(&stored[0]);
        a_ids.extend(ids(&stored[2]));
        a_ids.reverse();
        let back = |max| store.read_stream_backward(&a, max).unwrap();
        assert_eq!(recorded_ids(&back(100)), a_ids);
        assert_eq!(recorded_ids(&back(2)), a_ids[..2]);
        assert!(back(0).is_empty());
        let versions: Vec<u64> = back(usize::MAX).iter().map(|r| r.version).collect();
        assert_eq!(versions, [5, 4, 3, 2, 1]);
        assert!(store
            .read_stream_backward(&sid("absent"), 10)
            .unwrap()
            .is_empty());
    }

    pub(super) fn read_all_bounds<S: EventStore<Value>>(store: &S) {
        assert!(store.read_all(Position(0), 10).unwrap().is_empty());
        assert_eq!(store.head(), None);
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend(ids(&put(store, &sid(&format!("s{}", i % 2)), i + 1)));
        }
        let n = all.len();
        let read = |from, max| recorded_ids(&store.read_all(Position(from), max).unwrap());
        assert_eq!(read(0, usize::MAX), all);
        assert_eq!(read(0, 4), all[..4]);
        assert_eq!(read(5, 4), all[5..9]);
        assert_eq!(read(n as u64 - 1, 4), all[n - 1..]);
        assert!(read(n as u64, 4).is_empty());
        assert!(read(u64::MAX, usize::MAX).is_empty());
        assert!(read(3, 0).is_empty());
        let positions: Vec<u64> = store
            .read_all(Position(6), 3)
            .unwrap()
            .iter()
            .map(|r| r.position.0)
            .collect();
        assert_eq!(positions, [6, 7, 8]);
        assert_eq!(store.head(), Some(Position(n as u64 - 1)));
    }

    /// Every read hands out events carrying their own position, whatever position
    /// the appended events carried (a store assigns positions; a caller's stale one
    /// is not kept).
    pub(super) fn reads_carry_positions<S: EventStore<Value>>(store: &S) {
        let s = sid("positions");
        let stale: Vec<Event> = (0..3)
            .map(|i| {
                Event::new(event_type!("test.event"), source!("tests"), json!(i))
                    .with_position(Position(1000 + i))
            })
            .collect();
        store.append(&s, ExpectedVersion::Any, stale).unwrap();
        put(store, &s, 2);
        let check = |rs: Vec<ringbus::store::Recorded<Value>>| {
            assert!(!rs.is_empty());
            for r in rs {
                assert_eq!(r.event.position(), Some(r.position));
            }
        };
        check(store.read_all(Position(0), usize::MAX).unwrap());
        check(store.read_stream(&s, 1, usize::MAX).unwrap());
        check(store.read_stream_backward(&s, usize::MAX).unwrap());
    }

    pub(super) fn scan_all_bounds<S: EventStore<Value>>(store: &S) {
        let mut none = |_: Position, _: &ringbus::codec::EventRef<'_>| -> ControlFlow<()> {
            panic!("empty store")
        };
        assert_eq!(store.scan_all(Position(0), &mut none).unwrap(), None);
        for i in 0..4 {
            put(store, &sid(&format!("s{}", i % 2)), 3);
        }
        let all = store.read_all(Position(0), usize::MAX).unwrap();
        // A full scan sees every event, in order, as stored.
        let mut seen = Vec::new();
        let last = store
            .scan_all(Position(0), &mut |p, e| {
                let r = &all[p.0 as usize];
                assert_eq!(e.id(), r.event.id);
                assert_eq!(e.event_type(), r.event.event_type.name());
                assert_eq!(e.source(), r.event.source.name());
                assert_eq!(e.timestamp(), r.event.timestamp);
                assert_eq!(e.subject(), r.event.subject.as_ref().map(|s| s.as_str()));
                assert_eq!(e.data::<Value>().unwrap(), r.event.data);
                seen.push(p.0);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_eq!(last, Some(Position(11)));
        // From the middle, breaking at the third event seen.
        let mut seen = Vec::new();
        let last = store
            .scan_all(Position(5), &mut |p, _| {
                seen.push(p.0);
                if seen.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!((seen, last), (vec![5, 6, 7], Some(Position(7))));
        // At and past the end.
        let mut seen = Vec::new();
        assert_eq!(
            store
                .scan_all(Position(11), &mut |p, _| {
                    seen.push(p.0);
                    ControlFlow::Continue(())
                })
                .unwrap(),
            Some(Position(11))
        );
        assert_eq!(seen, [11]);
        assert_eq!(store.scan_all(Position(12), &mut none).unwrap(), None);
        assert_eq!(store.scan_all(Position(u64::MAX), &mut none).unwrap(), None);
    }

    // ---- wait_past ------------------------------------------------------------

    pub(super) fn wait_past_returns_at_once_when_already_past<S: EventStore<Value>>(store: &S) {
        put(store, &sid("a"), 3);
        let long = Duration::from_secs(3600);
        assert_eq!(store.wait_past(None, long), Some(Position(2)));
        assert_eq!(store.wait_past(Some(Position(1)), long), Some(Position(2)));
    }

    pub(super) fn wait_past_times_out<S: EventStore<Value>>(store: &S) {
        let t = Duration::from_millis(30);
        let start = Instant::now();
        assert_eq!(store.wait_past(None, t), None);
        assert!(start.elapsed() >= t);
        put(store, &sid("a"), 2);
        let start = Instant::now();
        assert_eq!(store.wait_past(Some(Position(1)), t), Some(Position(1)));
        assert!(start.elapsed() >= t);
        assert_eq!(
            store.wait_past(Some(Position(5)), Duration::ZERO),
            Some(Position(1))
        );
    }

    /// Waiters wake on the commit that passes them, long before their timeout;
    /// one commit wakes them all. The appender starts at varying delays so some
    /// rounds commit before the waiters sleep and some after.
    pub(super) fn wait_past_wakes_on_commit<S: EventStore<Value>>(store: &S) {
        let timeout = Duration::from_secs(120);
        let rounds = if cfg!(miri) { 3 } else { 40 };
        for round in 0..rounds {
            let before = store.head();
            let barrier = std::sync::Barrier::new(4);
            std::thread::scope(|s| {
                let waiters: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let start = Instant::now();
                            let head = store.wait_past(before, timeout);
                            (head, start.elapsed())
                        })
                    })
                    .collect();
                barrier.wait();
                // Varies the interleaving only; nothing depends on it.
                std::thread::sleep(Duration::from_micros(round * 100));
                put(store, &sid("a"), 1);
                for w in waiters {
                    let (head, waited) = w.join().unwrap();
                    assert!(head > before, "round {round}: woke with head {head:?}");
                    assert!(
                        waited < timeout,
                        "round {round}: timed out instead of waking"
                    );
                }
            });
        }
    }
}

/// Defines one `#[test]` per case for a store: `conformance!(name, fixture)`, where
/// `fixture` is a function that calls its argument with a fresh, empty store
/// (`fn fixture(test: impl FnOnce(&MyStore<serde_json::Value>))`).
macro_rules! conformance {
    ($name:ident, $fixture:ident) => {
        conformance!(@cases $name, $fixture, [
            any_on_absent_stream_appends,
            any_on_existing_stream_appends,
            no_stream_on_absent_stream_appends,
            no_stream_on_existing_stream_conflicts,
            stream_exists_on_absent_stream_conflicts,
            stream_exists_on_existing_stream_appends,
            exact_on_absent_stream,
            exact_on_existing_stream,
            batches_are_atomic_and_dense,
            readers_see_whole_appends,
            identical_retry_is_a_duplicate,
            no_stream_retry_is_a_duplicate,
            partial_overlap_is_rejected,
            subject_is_the_stream,
            bad_batches_are_rejected_with_their_events,
            read_stream_bounds,
            read_stream_backward_bounds,
            read_all_bounds,
            scan_all_bounds,
            reads_carry_positions,
            wait_past_returns_at_once_when_already_past,
            wait_past_times_out,
            wait_past_wakes_on_commit,
        ]);
    };
    (@cases $name:ident, $fixture:ident, [$($case:ident),* $(,)?]) => {
        mod $name {
            $(
                #[test]
                fn $case() {
                    super::$fixture(|store| crate::cases::$case(store));
                }
            )*

            #[test]
            #[cfg_attr(miri, ignore = "allocates 16 MiB payloads and 65 536 events")]
            fn oversized_batches_are_rejected() {
                super::$fixture(|store| crate::cases::oversized_batches_are_rejected(store));
            }
        }
    };
}

fn in_memory(test: impl FnOnce(&InMemoryStore<Value>)) {
    test(&InMemoryStore::new());
}

conformance!(in_memory_store, in_memory);

/// A fresh `FileStore` in its own temporary directory (removed afterwards), with
/// 1 MiB segments so that the suite also crosses segment rolls.
fn file_store(test: impl FnOnce(&ringbus::store::FileStore<Value>)) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringbus-conformance-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let options = ringbus::store::StoreOptions::default().segment_bytes(1 << 20);
    let store = ringbus::store::FileStore::open(&dir, options).unwrap();
    test(&store);
    store.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

conformance!(file_store_suite, file_store);
