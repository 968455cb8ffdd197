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
    // SAFETY: claimed.
    unsafe {
        ring.write(a, Box::new(1));
        ring.write(a + 1, Box::new(2));
    }
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
