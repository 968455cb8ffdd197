//! Loom models of the ring: single- and multi-producer publish/consume with
//! wraparound, batch publish, and close racing publish.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use ringbus::loom_api::Ring;
use ringbus::WaitStrategy;
use std::time::Instant;

/// One producer, capacity 2, three events (the third wraps around): the consumer
/// sees all of them, in order, exactly once — with parking enabled.
#[test]
fn spsc_publish_consume_wraparound() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, false, WaitStrategy::Blocking));
        let r = ring.clone();
        let producer = thread::spawn(move || {
            let mut st = Ring::sp_state();
            for v in 0..3 {
                assert!(r.sp_publish(&mut st, &[v]));
            }
            r.close();
        });
        let seen = ring.consume_all();
        producer.join().unwrap();
        assert_eq!(seen, [0, 1, 2]);
    });
}

/// Batch publish: one claim and one publish for two events, then one more.
#[test]
fn spsc_batch_publish() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, false, WaitStrategy::Blocking));
        let r = ring.clone();
        let producer = thread::spawn(move || {
            let mut st = Ring::sp_state();
            assert!(r.sp_publish(&mut st, &[10, 11]));
            assert!(r.sp_publish(&mut st, &[12]));
            r.close();
        });
        let seen = ring.consume_all();
        producer.join().unwrap();
        assert_eq!(seen, [10, 11, 12]);
    });
}

/// Two producers claim with `fetch_add` on a ring of 2 and wrap around; the
/// consumer finds the highest contiguous published sequence via the flags. Every
/// value arrives once, each producer's in order.
#[test]
fn mpsc_claim_publish_wraparound() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, true, WaitStrategy::Blocking));
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let r = ring.clone();
                thread::spawn(move || {
                    let mut cached = Ring::mp_state();
                    assert!(r.mp_publish(&mut cached, &[p * 10]));
                    assert!(r.mp_publish(&mut cached, &[p * 10 + 1]));
                })
            })
            .collect();
        let r = ring.clone();
        let closer = thread::spawn(move || {
            for p in producers {
                p.join().unwrap();
            }
            r.close();
        });
        let seen = ring.consume_all();
        closer.join().unwrap();
        assert_eq!(seen.len(), 4);
        for p in 0..2 {
            let mine: Vec<_> = seen.iter().filter(|v| **v / 10 == p).copied().collect();
            assert_eq!(mine, [p * 10, p * 10 + 1]);
        }
    });
}

/// Capacity 4: a blocking producer that finds the ring full waits for a quarter of
/// it (one slot here) beyond the one it needs, capped at its own sequence. Two
/// producers, three events each, so the ring wraps while both wait.
#[test]
fn mpsc_full_ring_waits_with_slack() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(4, true, WaitStrategy::Blocking));
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let r = ring.clone();
                thread::spawn(move || {
                    let mut cached = Ring::mp_state();
                    for k in 0..3 {
                        assert!(r.mp_publish(&mut cached, &[p * 10 + k]));
                    }
                })
            })
            .collect();
        let r = ring.clone();
        let closer = thread::spawn(move || {
            for p in producers {
                p.join().unwrap();
            }
            r.close();
        });
        let seen = ring.consume_all();
        closer.join().unwrap();
        assert_eq!(seen.len(), 6);
        for p in 0..2 {
            let mine: Vec<_> = seen.iter().filter(|v| **v / 10 == p).copied().collect();
            assert_eq!(mine, [p * 10, p * 10 + 1, p * 10 + 2]);
        }
    });
}

/// Multi-producer batch claim (two sequences with one `fetch_add`) against a single
/// claim, capacity 2 (so the batch must wait for the single to be consumed or go
/// first).
#[test]
fn mpsc_batch_claim() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, true, WaitStrategy::Blocking));
        let r1 = ring.clone();
        let a = thread::spawn(move || {
            let mut cached = Ring::mp_state();
            assert!(r1.mp_publish(&mut cached, &[1, 2]));
        });
        let r2 = ring.clone();
        let b = thread::spawn(move || {
            let mut cached = Ring::mp_state();
            assert!(r2.mp_publish(&mut cached, &[3]));
            a.join().unwrap();
            r2.close();
        });
        let mut seen = ring.consume_all();
        b.join().unwrap();
        let pos1 = seen.iter().position(|v| *v == 1).unwrap();
        assert_eq!(seen[pos1 + 1], 2, "a batch stays contiguous");
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3]);
    });
}

/// Shutdown racing a single producer: each publish either lands before the close
/// (and is delivered) or loses to it (and is returned). Never both, never neither.
#[test]
fn close_races_single_producer() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, false, WaitStrategy::Blocking));
        let r = ring.clone();
        let producer = thread::spawn(move || {
            let mut st = Ring::sp_state();
            let mut ok = Vec::new();
            for v in 0..2 {
                if r.sp_publish(&mut st, &[v]) {
                    ok.push(v);
                }
            }
            ok
        });
        let r = ring.clone();
        let closer = thread::spawn(move || r.close());
        let seen = ring.consume_all();
        let ok = producer.join().unwrap();
        let closed_at = closer.join().unwrap();
        assert_eq!(seen, ok);
        assert_eq!(closed_at, ok.len() as u64);
    });
}

/// Shutdown racing two multi producers (one blocking claim, one try-claim).
#[test]
fn close_races_multi_producers() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, true, WaitStrategy::Blocking));
        let r = ring.clone();
        let a = thread::spawn(move || {
            let mut cached = Ring::mp_state();
            r.mp_publish(&mut cached, &[1]).then_some(1)
        });
        let r = ring.clone();
        let b = thread::spawn(move || {
            let mut cached = Ring::mp_state();
            r.mp_try_publish(&mut cached, 2).ok().map(|_| 2)
        });
        let r = ring.clone();
        let closer = thread::spawn(move || r.close());
        let mut seen = ring.consume_all();
        let mut ok: Vec<u64> = [a.join().unwrap(), b.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        closer.join().unwrap();
        seen.sort_unstable();
        ok.sort_unstable();
        assert_eq!(seen, ok);
    });
}

/// Defect 8: a bounded-wait claim (`mp_claim_until`, as `publish_timeout` in
/// multi-producer mode) takes its place in line with `fetch_add`; if its deadline
/// passes first it abandons the sequence. Ring of 2 filled by producer A; producer
/// B's timed claim (deadline already passed) times out and is abandoned, or
/// succeeds if the consumer freed a slot in time; A publishes one more value
/// concurrently, then closes. The consumer delivers every published value exactly
/// once, in per-producer order, never B's value when B got it back, and
/// `consume_all` ends after the close: the abandoned sequence is skipped, not
/// waited for.
#[test]
fn mpsc_abandoned_timed_claim_is_skipped() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2, true, WaitStrategy::Blocking));
        // Producer A fills the ring before anyone else runs.
        let mut cached_a = Ring::mp_state();
        assert!(ring.mp_publish(&mut cached_a, &[10]));
        assert!(ring.mp_publish(&mut cached_a, &[11]));
        let r = ring.clone();
        let b = thread::spawn(move || {
            let mut cached = Ring::mp_state();
            r.mp_publish_until(&mut cached, 20, Instant::now())
        });
        let r = ring.clone();
        let a = thread::spawn(move || {
            assert!(r.mp_publish(&mut cached_a, &[12]));
            let b = b.join().unwrap();
            r.close();
            b
        });
        let seen = ring.consume_all();
        let b = a.join().unwrap();
        let mut expect = vec![10, 11, 12];
        match b {
            Ok(()) => expect.push(20),
            Err(why) => assert_eq!(why, "timeout"),
        }
        assert_eq!(seen.len(), expect.len(), "seen {seen:?}, B: {b:?}");
        let mine: Vec<_> = seen.iter().filter(|v| **v / 10 == 1).copied().collect();
        assert_eq!(mine, [10, 11, 12], "A's values in order");
        assert_eq!(
            seen.contains(&20),
            b.is_ok(),
            "B's value iff B's publish was Ok"
        );
    });
}
