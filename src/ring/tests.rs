//! Unit tests of the ring protocol with real threads; small enough for Miri.

use super::*;
use std::sync::Arc;

const N: u64 = if cfg!(miri) { 200 } else { 100_000 };

fn consume_all(ring: &Ring<Box<u64>>, mut on: impl FnMut(u64, u64)) -> u64 {
    let mut next = 0;
    let mut count = 0;
    loop {
        let mut poll = Poll::Empty;
        ring.consumer_wait_until(|| {
            poll = ring.poll(next, 64);
            poll != Poll::Empty || ring.closed_at() == Some(next)
        });
        match poll {
            Poll::Empty => return count,
            Poll::Events(hi) => {
                for s in next..hi {
                    // SAFETY: published by poll, not yet released.
                    on(s, **unsafe { ring.get(s) });
                    count += 1;
                }
                // SAFETY: the range just polled; no references remain.
                unsafe { ring.release(next, hi, true) };
                next = hi;
            }
            Poll::Skip(hi) => {
                // SAFETY: as above; skipped slots hold nothing.
                unsafe { ring.release(next, hi, false) };
                next = hi;
            }
        }
    }
}

fn sp_publish(ring: &Ring<Box<u64>>, seq: &mut u64, cached: &mut u64, v: u64) -> bool {
    // A closed ring refuses at once, even while the producer waits for space.
    if ring.sp_claim(*seq, 1, cached, true, None).is_err() {
        return false;
    }
    // SAFETY: claimed and free.
    unsafe { ring.write(*seq, Box::new(v)) };
    match ring.sp_publish(*seq, 1) {
        Ok(()) => {
            *seq += 1;
            true
        }
        Err(_) => {
            // SAFETY: publish failed: still ours.
            drop(unsafe { ring.take(*seq) });
            false
        }
    }
}

#[test]
fn single_producer_in_order_with_wraparound() {
    for wait in [WaitStrategy::Blocking, WaitStrategy::Yielding] {
        let ring = Arc::new(Ring::new(4, Producers::Single, wait, wait));
        let r = ring.clone();
        let producer = std::thread::spawn(move || {
            let (mut seq, mut cached) = (0, 0);
            for i in 0..N {
                assert!(sp_publish(&r, &mut seq, &mut cached, i));
            }
            r.close();
        });
        let mut expected = 0;
        let n = consume_all(&ring, |s, v| {
            assert_eq!(s, v);
            assert_eq!(v, expected);
            expected += 1;
        });
        producer.join().unwrap();
        assert_eq!(n, N);
    }
}

#[test]
fn multi_producer_every_value_once_in_producer_order() {
    const P: u64 = 3;
    let ring = Arc::new(Ring::new(
        4,
        Producers::Multi,
        WaitStrategy::Blocking,
        WaitStrategy::Blocking,
    ));
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let r = ring.clone();
            std::thread::spawn(move || {
                let mut cached = 0;
                for i in 0..N / P {
                    let n = 1 + (i % 2); // singles and pairs
                    let seq = r.mp_claim(n, &mut cached).unwrap();
                    for k in 0..n {
                        // SAFETY: claimed and free.
                        unsafe { r.write(seq + k, Box::new(p << 32 | (i * 2 + k))) };
                    }
                    r.mp_publish(seq, n);
                }
            })
        })
        .collect();
    let closer = {
        let r = ring.clone();
        std::thread::spawn(move || {
            for p in producers {
                p.join().unwrap();
            }
            r.close();
        })
    };
    let mut last = vec![None::<u64>; P as usize];
    let mut count = 0;
    consume_all(&ring, |_, v| {
        let (p, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
        if let Some(prev) = last[p] {
            assert!(i > prev, "producer {p}: {i} after {prev}");
        }
        last[p] = Some(i);
        count += 1;
    });
    closer.join().unwrap();
    let expected: u64 = (0..N / P).map(|i| 1 + (i % 2)).sum::<u64>() * P;
    assert_eq!(count, expected);
}

#[test]
fn close_races_publish_nothing_lost_or_duplicated() {
    let iters = if cfg!(miri) { 5 } else { 200 };
    for _ in 0..iters {
        let ring = Arc::new(Ring::new(
            2,
            Producers::Single,
            WaitStrategy::Yielding,
            WaitStrategy::Yielding,
        ));
        let r = ring.clone();
        let producer = std::thread::spawn(move || {
            let (mut seq, mut cached) = (0, 0);
            let mut ok = 0;
            for i in 0..50 {
                if !sp_publish(&r, &mut seq, &mut cached, i) {
                    break;
                }
                ok += 1;
            }
            ok
        });
        let r = ring.clone();
        let closer = std::thread::spawn(move || {
            std::thread::yield_now();
            r.close()
        });
        let delivered = consume_all(&ring, |_, _| {});
        let ok = producer.join().unwrap();
        let at = closer.join().unwrap();
        assert_eq!(delivered, ok);
        assert_eq!(at, ok);
    }
}

#[test]
fn try_claim_reports_full_then_closed() {
    let ring: Ring<Box<u64>> = Ring::new(
        2,
        Producers::Multi,
        WaitStrategy::Yielding,
        WaitStrategy::Yielding,
    );
    let mut cached = 0;
    let a = ring.mp_try_claim(2, &mut cached).unwrap();
    assert_eq!(ring.mp_try_claim(1, &mut cached), Err(ClaimError::Full));
    // SAFETY: claimed, free, unpublished.
    unsafe { ring.write(a, Box::new(1)) };
    // SAFETY: as above.
    unsafe { ring.write(a + 1, Box::new(2)) };
    ring.mp_publish(a, 2);
    assert_eq!(ring.close(), 2);
    assert_eq!(ring.mp_try_claim(1, &mut cached), Err(ClaimError::Closed));
    assert_eq!(ring.poll(0, 8), Poll::Events(2));
    // Dropping the ring with two unconsumed events frees them (checked by Miri).
}

#[test]
fn skipped_claims_are_skipped() {
    let ring: Ring<Box<u64>> = Ring::new(
        4,
        Producers::Multi,
        WaitStrategy::Yielding,
        WaitStrategy::Yielding,
    );
    let mut cached = 0;
    let a = ring.mp_claim(1, &mut cached).unwrap();
    let b = ring.mp_claim(2, &mut cached).unwrap();
    // SAFETY: claimed.
    unsafe { ring.write(a, Box::new(7)) };
    ring.mp_publish(a, 1);
    ring.mp_skip(b, 2);
    assert_eq!(ring.poll(0, 8), Poll::Events(1));
    // SAFETY: polled.
    unsafe { ring.release(0, 1, true) };
    assert_eq!(ring.poll(1, 8), Poll::Skip(3));
    // SAFETY: polled.
    unsafe { ring.release(1, 3, false) };
    assert_eq!(ring.poll(3, 8), Poll::Empty);
}

/// A payload that counts its drops and panics in `Drop` when told to. Boxed data,
/// so that a double drop is a double free Miri reports.
struct Tracked {
    id: usize,
    _heap: Box<u64>,
    drops: Arc<Vec<std::sync::atomic::AtomicUsize>>,
    panic_on_drop: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.panic_on_drop {
            panic!("payload {} panics in Drop", self.id);
        }
    }
}

fn tracked(
    n: usize,
) -> (
    Arc<Vec<std::sync::atomic::AtomicUsize>>,
    impl Fn(usize, bool) -> Tracked,
) {
    let drops: Arc<Vec<_>> = Arc::new(
        (0..n)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let d = drops.clone();
    let make = move |id, panic_on_drop| Tracked {
        id,
        _heap: Box::new(id as u64),
        drops: d.clone(),
        panic_on_drop,
    };
    (drops, make)
}

fn drop_counts(drops: &[std::sync::atomic::AtomicUsize]) -> Vec<usize> {
    drops
        .iter()
        .map(|d| d.load(std::sync::atomic::Ordering::SeqCst))
        .collect()
}

/// Issue 8, defect 1: a payload whose `Drop` panics while a batch is released. Before
/// the fix the release unwound half-way, `consumed` stayed put, and dropping the
/// ring dropped the already-dropped events again (a double free under Miri).
#[test]
fn release_survives_a_panicking_drop_and_drops_each_event_once() {
    for producers in [Producers::Single, Producers::Multi] {
        let (drops, make) = tracked(5);
        {
            let ring = Ring::new(8, producers, WaitStrategy::Yielding, WaitStrategy::Yielding);
            let mut cached = 0;
            for id in 0..5 {
                let seq = match producers {
                    Producers::Single => {
                        ring.sp_claim(id as u64, 1, &mut cached, true, None)
                            .unwrap();
                        id as u64
                    }
                    Producers::Multi => ring.mp_claim(1, &mut cached).unwrap(),
                };
                // SAFETY: claimed, free.
                unsafe { ring.write(seq, make(id, id == 1 || id == 3)) };
                match producers {
                    Producers::Single => ring.sp_publish(seq, 1).unwrap(),
                    Producers::Multi => ring.mp_publish(seq, 1),
                }
            }
            assert_eq!(ring.poll(0, 3), Poll::Events(3));
            // SAFETY: `[0, 3)` just polled, no reference taken.
            let panics = unsafe { ring.release(0, 3, true) };
            assert_eq!(panics, 1);
            assert_eq!(drop_counts(&drops), [1, 1, 1, 0, 0]);
            assert_eq!(ring.consumed_relaxed(), 3, "the release completed");
            // Events 3 and 4 are dropped with the ring; 3 panics there too.
        }
        assert_eq!(
            drop_counts(&drops),
            [1; 5],
            "{producers:?}: each dropped once"
        );
    }
}

/// A timed multi-producer claim that gives up is skipped by the consumer, and the
/// sequences after it are delivered (issue 8, defect 8).
#[test]
fn abandoned_timed_claims_are_skipped() {
    let ring: Ring<Box<u64>> = Ring::new(
        2,
        Producers::Multi,
        WaitStrategy::Yielding,
        WaitStrategy::Yielding,
    );
    let mut cached = 0;
    for v in 0..2 {
        let seq = ring.mp_claim(1, &mut cached).unwrap();
        // SAFETY: claimed, free.
        unsafe { ring.write(seq, Box::new(v)) };
        ring.mp_publish(seq, 1);
    }
    // The ring is full: a timed claim with a deadline already passed takes sequence
    // 2 and abandons it.
    let mut other = 0;
    assert_eq!(
        ring.mp_claim_until(1, &mut other, Instant::now()),
        Err(ClaimError::TimedOut)
    );
    assert_eq!(ring.poll(0, 8), Poll::Events(2));
    // SAFETY: polled.
    unsafe { ring.release(0, 2, true) };
    let seq = ring.mp_claim(1, &mut cached).unwrap();
    assert_eq!(seq, 3);
    // SAFETY: claimed, free.
    unsafe { ring.write(seq, Box::new(3)) };
    ring.mp_publish(seq, 1);
    assert_eq!(
        ring.poll(2, 8),
        Poll::Skip(3),
        "the abandoned sequence is skipped"
    );
    // SAFETY: polled as skipped.
    unsafe { ring.release(2, 3, false) };
    assert_eq!(ring.poll(3, 8), Poll::Events(4));
    // SAFETY: polled.
    assert_eq!(**unsafe { ring.get(3) }, 3);
    // SAFETY: polled, the reference above is gone.
    unsafe { ring.release(3, 4, true) };
    assert_eq!(ring.poll(4, 8), Poll::Empty);
}

/// Metrics count only completed publishes: a claim waiting for its slot is not
/// published (issue 8, defect 10).
#[test]
fn published_count_excludes_claims_waiting_for_space() {
    let ring: Ring<Box<u64>> = Ring::new(
        2,
        Producers::Multi,
        WaitStrategy::Yielding,
        WaitStrategy::Yielding,
    );
    let mut cached = 0;
    let a = ring.mp_claim(1, &mut cached).unwrap();
    let _b = ring.mp_claim(1, &mut cached).unwrap();
    // SAFETY: claimed, free.
    unsafe { ring.write(a, Box::new(1)) };
    ring.mp_publish(a, 1);
    assert_eq!(ring.published_relaxed(), 1, "b is claimed, not published");
    ring.mp_skip(1, 1);
    assert_eq!(ring.published_relaxed(), 1, "a hole is not an event");
}
