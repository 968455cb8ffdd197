//! The checks every store makes on an append, in this order: the batch's shape
//! ([`check_batch`]), then, under the store's write lock, the expected version and
//! the retry recognition ([`decide`]). Store-independent, so the in-memory and the
//! file store answer the same appends the same way.

use std::collections::HashSet;

use smallvec::SmallVec;

use super::{ExpectedVersion, Position, RejectReason, StreamId};
use crate::event::{Event, EventId, StorePosition};

/// Batches up to this size compare ids pairwise; larger ones use a hash set.
const PAIRWISE_MAX: usize = 16;

/// Checks a batch before anything is locked: not empty, not more than
/// `max_events`, no nil id, no id twice, no subject other than the stream.
pub(crate) fn check_batch<P>(
    stream: &StreamId,
    events: &[Event<P>],
    max_events: usize,
) -> Result<(), RejectReason> {
    if events.is_empty() {
        return Err(RejectReason::EmptyBatch);
    }
    if events.len() > max_events {
        return Err(RejectReason::TooManyEvents {
            count: events.len(),
            max: max_events,
        });
    }
    for (index, e) in events.iter().enumerate() {
        if e.id == EventId::nil() {
            return Err(RejectReason::NilEventId { index });
        }
        match &e.subject {
            Some(s) if s != stream.as_subject() => {
                return Err(RejectReason::SubjectMismatch {
                    index,
                    subject: s.clone(),
                })
            }
            _ => {}
        }
    }
    if let Some((index, id)) = first_repeated_id(events) {
        return Err(RejectReason::DuplicateEventId { index, id });
    }
    Ok(())
}

fn first_repeated_id<P>(events: &[Event<P>]) -> Option<(usize, EventId)> {
    if events.len() <= PAIRWISE_MAX {
        (1..events.len())
            .find(|&i| events[..i].iter().any(|e| e.id == events[i].id))
            .map(|i| (i, events[i].id))
    } else {
        let mut seen = HashSet::with_capacity(events.len());
        events
            .iter()
            .enumerate()
            .find(|(_, e)| !seen.insert(e.id))
            .map(|(i, e)| (i, e.id))
    }
}

/// What [`stamp`] changed: which events of a batch had no subject (one bit per
/// event), and the positions the caller had set, if any had one.
pub(crate) struct Stamped {
    subjects: SmallVec<[u64; 1]>,
    positions: Option<Vec<Option<Position>>>,
}

/// Sets the subject of every event that has none to the stream (after
/// [`check_batch`], every other event's subject already is the stream), and
/// clears every event's [`position`](Event::position): positions are the
/// store's to assign at commit, and a frame must not carry a stale one.
pub(crate) fn stamp<P>(stream: &StreamId, events: &mut [Event<P>]) -> Stamped {
    let mut subjects = SmallVec::from_elem(0_u64, events.len().div_ceil(64));
    for (i, e) in events.iter_mut().enumerate() {
        if e.subject.is_none() {
            e.subject = Some(stream.as_subject().clone());
            subjects[i / 64] |= 1 << (i % 64);
        }
    }
    let positions = events.iter().any(|e| e.position().is_some()).then(|| {
        events
            .iter_mut()
            .map(|e| std::mem::replace(&mut e.position, StorePosition::NONE).get())
            .collect()
    });
    Stamped {
        subjects,
        positions,
    }
}

impl Stamped {
    /// Gives the events their subjects and positions back as they were before
    /// [`stamp`], so a failed append returns them unchanged.
    pub(crate) fn undo<P>(&self, events: &mut [Event<P>]) {
        for (i, e) in events.iter_mut().enumerate() {
            if self.subjects[i / 64] & (1 << (i % 64)) != 0 {
                e.subject = None;
            }
        }
        for (e, p) in events.iter_mut().zip(self.positions.iter().flatten()) {
            e.position = StorePosition::new(*p);
        }
    }
}

/// What to do with a checked batch, given the stream's state.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Decision {
    /// Write it.
    Append,
    /// It is already stored, from `first_version` on: write nothing, report the
    /// earlier append.
    Duplicate { first_version: u64 },
    /// The expected version does not hold (and the batch is not a retry).
    Conflict,
    /// Some of its ids are stored where it would go, not all.
    Partial { already_stored: usize },
}

/// Checks `expected` against a stream at `current` and recognises retries
/// (KurrentDB's idempotent appends): the batch is compared with the stored
/// events it would have been written over — versions `v+1 ..` for `Exact(v)`
/// (`NoStream` is `Exact(0)`), the stream's last `batch.len()` events for `Any`
/// and `StreamExists`. The same ids in the same order: `Duplicate`; some of them:
/// `Partial`; none: `Conflict` for an exact expectation that failed, `Append` for
/// the others. `stored_id(version)` reads the id at a version in `1..=current`.
pub(crate) fn decide<P>(
    expected: ExpectedVersion,
    current: u64,
    batch: &[Event<P>],
    stored_id: impl Fn(u64) -> EventId,
) -> Decision {
    let k = batch.len() as u64;
    let (window_start, on_no_overlap) = match expected {
        ExpectedVersion::Any | ExpectedVersion::StreamExists => {
            if current == 0 {
                return if expected == ExpectedVersion::Any {
                    Decision::Append
                } else {
                    Decision::Conflict
                };
            }
            (current.saturating_sub(k) + 1, Decision::Append)
        }
        ExpectedVersion::NoStream | ExpectedVersion::Exact(_) => {
            let v = match expected {
                ExpectedVersion::Exact(v) => v,
                _ => 0,
            };
            if current == v {
                return Decision::Append;
            }
            if current < v {
                return Decision::Conflict;
            }
            (v + 1, Decision::Conflict)
        }
    };
    // The stored versions the batch would cover: window_start ..= window_end.
    let window_end = current.min(window_start + k - 1);
    let window = window_end - window_start + 1;
    if window == k
        && batch
            .iter()
            .zip(window_start..)
            .all(|(e, v)| e.id == stored_id(v))
    {
        return Decision::Duplicate {
            first_version: window_start,
        };
    }
    let already_stored = count_stored(batch, window_start..=window_end, &stored_id);
    if already_stored > 0 {
        Decision::Partial { already_stored }
    } else {
        on_no_overlap
    }
}

/// How many of the batch's ids are among the stored ids at `versions`.
fn count_stored<P>(
    batch: &[Event<P>],
    versions: std::ops::RangeInclusive<u64>,
    stored_id: &impl Fn(u64) -> EventId,
) -> usize {
    if batch.len() <= PAIRWISE_MAX {
        let stored: SmallVec<[EventId; PAIRWISE_MAX]> = versions.map(stored_id).collect();
        batch.iter().filter(|e| stored.contains(&e.id)).count()
    } else {
        let stored: HashSet<EventId> = versions.map(stored_id).collect();
        batch.iter().filter(|e| stored.contains(&e.id)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event_type, source};
    use ExpectedVersion::*;

    fn events(n: usize) -> Vec<Event<()>> {
        (0..n)
            .map(|_| Event::new(event_type!("a"), source!("s"), ()))
            .collect()
    }

    /// A stream whose ids are `stored`, versions 1..
    fn decide_on(expected: ExpectedVersion, stored: &[Event<()>], batch: &[Event<()>]) -> Decision {
        decide(expected, stored.len() as u64, batch, |v| {
            assert!((1..=stored.len() as u64).contains(&v), "version {v}");
            stored[v as usize - 1].id
        })
    }

    #[test]
    fn matrix_without_overlap() {
        let stored = events(3);
        let b = events(2);
        assert_eq!(decide_on(Any, &[], &b), Decision::Append);
        assert_eq!(decide_on(Any, &stored, &b), Decision::Append);
        assert_eq!(decide_on(NoStream, &[], &b), Decision::Append);
        assert_eq!(decide_on(NoStream, &stored, &b), Decision::Conflict);
        assert_eq!(decide_on(StreamExists, &[], &b), Decision::Conflict);
        assert_eq!(decide_on(StreamExists, &stored, &b), Decision::Append);
        assert_eq!(decide_on(Exact(0), &[], &b), Decision::Append);
        assert_eq!(decide_on(Exact(1), &[], &b), Decision::Conflict);
        assert_eq!(decide_on(Exact(3), &stored, &b), Decision::Append);
        assert_eq!(decide_on(Exact(2), &stored, &b), Decision::Conflict);
        assert_eq!(decide_on(Exact(4), &stored, &b), Decision::Conflict);
    }

    #[test]
    fn retries() {
        let stored = events(5);
        // Versions 2..=3 again, expecting 1.
        assert_eq!(
            decide_on(Exact(1), &stored, &stored[1..3]),
            Decision::Duplicate { first_version: 2 }
        );
        assert_eq!(
            decide_on(NoStream, &stored, &stored[..2]),
            Decision::Duplicate { first_version: 1 }
        );
        // The last two, with Any / StreamExists.
        assert_eq!(
            decide_on(Any, &stored, &stored[3..]),
            Decision::Duplicate { first_version: 4 }
        );
        assert_eq!(
            decide_on(StreamExists, &stored, &stored[3..]),
            Decision::Duplicate { first_version: 4 }
        );
        // The batch runs past the stream's end: partial.
        let mut longer = stored[3..].to_vec();
        longer.extend(events(1));
        assert_eq!(
            decide_on(Exact(3), &stored, &longer),
            Decision::Partial { already_stored: 2 }
        );
        // Same ids, other order: partial.
        let swapped = vec![stored[2].clone(), stored[1].clone()];
        assert_eq!(
            decide_on(Exact(1), &stored, &swapped),
            Decision::Partial { already_stored: 2 }
        );
        // One stored id and one new one, with Any.
        let mixed = vec![stored[4].clone(), events(1).remove(0)];
        assert_eq!(
            decide_on(Any, &stored, &mixed),
            Decision::Partial { already_stored: 1 }
        );
        // Large batches take the hash-set path.
        let many = events(40);
        assert_eq!(
            decide_on(Exact(10), &many, &many[10..30]),
            Decision::Duplicate { first_version: 11 }
        );
        let mut half = many[20..30].to_vec();
        half.extend(events(20));
        assert_eq!(
            decide_on(Exact(20), &many, &half),
            Decision::Partial { already_stored: 10 }
        );
    }

    #[test]
    fn batch_shape() {
        let s = StreamId::new("s").unwrap();
        assert_eq!(
            check_batch::<()>(&s, &[], 10),
            Err(RejectReason::EmptyBatch)
        );
        assert_eq!(
            check_batch(&s, &events(3), 2),
            Err(RejectReason::TooManyEvents { count: 3, max: 2 })
        );
        for n in [3, 40] {
            let mut b = events(n);
            b[n - 1].id = b[1].id;
            assert_eq!(
                check_batch(&s, &b, 100),
                Err(RejectReason::DuplicateEventId {
                    index: n - 1,
                    id: b[1].id
                })
            );
        }
        let mut b = events(2);
        b[1].id = EventId::nil();
        assert_eq!(
            check_batch(&s, &b, 100),
            Err(RejectReason::NilEventId { index: 1 })
        );
    }

    #[test]
    fn stamp_and_undo() {
        let s = StreamId::new("s").unwrap();
        let mut b = events(70);
        b[3].subject = Some(s.as_subject().clone());
        let before = b.clone();
        let stamped = stamp(&s, &mut b);
        assert!(b.iter().all(|e| e.subject.as_ref() == Some(s.as_subject())));
        stamped.undo(&mut b);
        assert_eq!(b, before);
    }
}
