//! The ring's `unsafe` as production composes it, small enough for Miri: every
//! publish verb of both producer modes ([`Publisher`]), and the dispatcher's
//! batch, route, run (inline and on a rayon pool), release and skip paths, through
//! the public API only.
//!
//! Payloads own heap memory (a `String` and a `Vec`) and count their clones and
//! drops, so under Miri a slot read after its release, a double drop or a lost
//! payload is reported as undefined behaviour or a leak, and in any build the
//! exact-delivery assertions catch it: every event whose publish returned `Ok` is
//! delivered exactly once to each handler, in order per producer; a failed
//! publish hands its event back intact; after the bus and its publishers are gone
//! every payload made (or cloned) has been dropped exactly once.
//!
//! Test names end in `_inline` or `_pool` by where handlers run (the others use
//! `Inline`). The `_pool` tests need rayon, whose idle workers register with
//! crossbeam-epoch's process-wide collector; under Miri that collector's memory is
//! reported as leaked (crossbeam-rs/crossbeam#579), so CI (`.ci/run`) runs them in
//! their own Miri process with the leak check off and everything else with it on.
//! The `_pool` tests check what the leak check would: every payload dropped, and
//! the bus itself freed ([`assert_bus_freed`]). Under Miri only the
//! multi-producer `_pool` tests run (the pool branch of the dispatcher is the same
//! for both producer modes; the inline tests cover both modes with the leak check
//! on); natively all of them do.
//!
//! Sizes are tens of events on rings of 4–16 slots, so the file runs under Miri
//! in minutes; deadlines stretch under Miri, and nothing sleeps to let things
//! settle.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbus::resilience::{ManualClock, RetryPolicy};
use ringbus::{
    Bus, BusBuilder, Event, EventType, Execution, HandlerError, Multi, ProducerMode,
    PublishTimeoutError, Publisher, ShutdownReport, Single, Source, SubscribeOptions,
    TryPublishError,
};

// ---- payload ---------------------------------------------------------------------

/// Counts the payloads made (including clones) and dropped by one test.
#[derive(Default, Debug)]
struct Tally {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

/// A payload that owns heap memory and reports its drops to its [`Tally`].
#[derive(Debug)]
struct Payload {
    producer: usize,
    seq: usize,
    text: String,
    bytes: Vec<u8>,
    /// Whether this instance panics in `Drop` (clones do not).
    panic_on_drop: bool,
    tally: Arc<Tally>,
}

impl Payload {
    fn new(tally: &Arc<Tally>, producer: usize, seq: usize) -> Self {
        tally.made.fetch_add(1, SeqCst);
        Payload {
            producer,
            seq,
            text: format!("p{producer}-e{seq}"),
            bytes: vec![seq as u8; 3],
            panic_on_drop: false,
            tally: tally.clone(),
        }
    }

    /// Whether the heap parts still say what they said when made (a read of freed
    /// or overwritten memory is what Miri reports; this catches the rest).
    fn intact(&self) -> bool {
        self.text == format!("p{}-e{}", self.producer, self.seq)
            && self.bytes == [self.seq as u8; 3]
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        self.tally.made.fetch_add(1, SeqCst);
        Payload {
            producer: self.producer,
            seq: self.seq,
            text: self.text.clone(),
            bytes: self.bytes.clone(),
            panic_on_drop: false,
            tally: self.tally.clone(),
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        // Reads the heap parts: after a double drop, Miri flags these reads.
        let sum = self.text.len() + self.bytes.iter().map(|&b| usize::from(b)).sum::<usize>();
        std::hint::black_box(sum);
        self.tally.dropped.fetch_add(1, SeqCst);
        if self.panic_on_drop {
            panic!("payload {} panics in Drop (on purpose)", self.text);
        }
    }
}

fn event(tally: &Arc<Tally>, producer: usize, seq: usize) -> Event<Payload> {
    Event::new(
        EventType::new("miri.event"),
        Source::new("miri"),
        Payload::new(tally, producer, seq),
    )
}

/// Asserts that every payload made has been dropped, exactly once.
#[track_caller]
fn assert_all_dropped(tally: &Tally) {
    let (made, dropped) = (tally.made.load(SeqCst), tally.dropped.load(SeqCst));
    assert_eq!(
        dropped, made,
        "{made} payloads made (clones included), {dropped} dropped"
    );
}

// ---- helpers ---------------------------------------------------------------------

/// Under Miri (about a hundred times slower) every deadline stretches by this.
const SLOWDOWN: u32 = if cfg!(miri) { 50 } else { 1 };

/// Waits until `cond` holds; panics after `secs` seconds (stretched under Miri).
#[track_caller]
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs) * SLOWDOWN;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::yield_now();
    }
}

/// What a handler saw: `(producer, seq)` per call.
type Seen = Arc<Mutex<Vec<(usize, usize)>>>;

/// A handler that checks the payload is intact and records `(producer, seq)`.
fn recorder(
    seen: &Seen,
) -> impl FnMut(&Event<Payload>) -> Result<(), HandlerError> + Send + 'static {
    let seen = seen.clone();
    move |e| {
        assert!(
            e.data.intact(),
            "handler got a damaged payload: {:?}",
            e.data
        );
        seen.lock().unwrap().push((e.data.producer, e.data.seq));
        Ok(())
    }
}

fn seen_len(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

/// Asserts that `seen` holds, for each producer `p`, exactly `expected[p]` in
/// that order (events of different producers may interleave).
#[track_caller]
fn assert_per_producer(seen: &Seen, expected: &[Vec<usize>]) {
    let seen = seen.lock().unwrap();
    for (p, want) in expected.iter().enumerate() {
        let got: Vec<usize> = seen.iter().filter(|e| e.0 == p).map(|e| e.1).collect();
        assert_eq!(&got, want, "producer {p}: delivered sequence");
    }
    let total: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(seen.len(), total, "no event from an unknown producer");
}

/// Where handlers run.
#[derive(Copy, Clone, Debug)]
enum Exec {
    Inline,
    Pool,
}

/// A bus builder for these tests: a small ring, handlers where `exec` says, and
/// a manual clock (kept by the caller for [`assert_bus_freed`]).
fn builder(exec: Exec, capacity: usize, clock: &ManualClock) -> BusBuilder<Payload, Multi> {
    let execution = match exec {
        Exec::Inline => Execution::Inline,
        Exec::Pool => Execution::Pool { threads: 1 },
    };
    BusBuilder::<Payload>::new()
        .capacity(capacity)
        .execution(execution)
        .clock(clock.clone())
}

/// Asserts that the bus's shared state is freed (its clock waker, which holds
/// only a weak reference to it, is gone): call after the bus and every publisher
/// are dropped. Under Miri without the leak check, this is the leak check.
#[track_caller]
fn assert_bus_freed(clock: &ManualClock) {
    assert_eq!(
        clock.waker_count(),
        0,
        "the bus's shared state outlived the bus and its publishers (a leak)"
    );
}

/// Shuts down from outside the bus.
fn shutdown<M: ProducerMode>(bus: Bus<Payload, M>) -> ShutdownReport {
    bus.shutdown()
        .expect("shutdown from outside returns a report")
}

/// Publishes `count` events of `producer` from `first` on, one verb after the
/// other (publish, try_publish, publish_timeout, publish_with, then a batch of 5,
/// more than a small ring holds); returns the sequences published, in order.
/// Nothing may fail: the bus is open.
fn publish_every_verb<M: ProducerMode>(
    p: &mut Publisher<Payload, M>,
    tally: &Arc<Tally>,
    producer: usize,
    count: usize,
) -> Vec<usize> {
    let mut seq = 0;
    while seq < count {
        match seq % 5 {
            0 => p.publish(event(tally, producer, seq)).expect("publish"),
            1 => {
                // A full ring hands the event back: publish that same event again.
                let mut e = event(tally, producer, seq);
                loop {
                    match p.try_publish(e) {
                        Ok(()) => break,
                        Err(TryPublishError::Full(back)) => {
                            assert!(back.data.intact() && back.data.seq == seq);
                            e = back;
                            std::thread::yield_now();
                        }
                        Err(other) => panic!("try_publish: {other}"),
                    }
                }
            }
            2 => p
                .publish_timeout(event(tally, producer, seq), Duration::from_secs(600))
                .expect("publish_timeout with a long deadline"),
            3 => p
                .publish_with(|| event(tally, producer, seq))
                .expect("publish_with"),
            _ => {
                let n = 5.min(count - seq);
                p.publish_batch((seq..seq + n).map(|s| event(tally, producer, s)))
                    .expect("publish_batch");
                seq += n;
                continue;
            }
        }
        seq += 1;
    }
    (0..count).collect()
}

// ---- every publish verb, delivered exactly once, in order ----------------------

/// Two handlers (so that the pool runs them in parallel), one producer.
fn every_verb_single(exec: Exec) {
    const N: usize = if cfg!(miri) { 10 } else { 200 };
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let (bus, mut p) = builder(exec, 4, &clock).single_producer().build().unwrap();
    let seen: Vec<Seen> = (0..2).map(|_| Seen::default()).collect();
    for s in &seen {
        bus.subscribe_all(recorder(s)).unwrap();
    }
    let published = publish_every_verb(&mut p, &tally, 0, N);
    let report = shutdown(bus);
    for s in &seen {
        assert_per_producer(s, std::slice::from_ref(&published));
    }
    assert_eq!(report.counters.published, N as u64);
    assert_eq!(report.counters.delivered, 2 * N as u64);
    drop(p);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

/// Two handlers, two producer threads with a publisher each.
fn every_verb_multi(exec: Exec) {
    const N: usize = if cfg!(miri) { 8 } else { 200 };
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 8, &clock).build().unwrap();
    let seen: Vec<Seen> = (0..2).map(|_| Seen::default()).collect();
    for s in &seen {
        bus.subscribe_all(recorder(s)).unwrap();
    }
    let producers: Vec<_> = (0..2)
        .map(|producer| {
            let (mut p, tally) = (bus.publisher(), tally.clone());
            std::thread::spawn(move || publish_every_verb(&mut p, &tally, producer, N))
        })
        .collect();
    let published: Vec<Vec<usize>> = producers.into_iter().map(|t| t.join().unwrap()).collect();
    let report = shutdown(bus);
    for s in &seen {
        assert_per_producer(s, &published);
    }
    assert_eq!(report.counters.published, 2 * N as u64);
    assert_eq!(report.counters.delivered, 4 * N as u64);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

#[test]
fn every_verb_single_producer_inline() {
    every_verb_single(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn every_verb_single_producer_pool() {
    every_verb_single(Exec::Pool);
}

#[test]
fn every_verb_multi_producer_inline() {
    every_verb_multi(Exec::Inline);
}

#[test]
fn every_verb_multi_producer_pool() {
    every_verb_multi(Exec::Pool);
}

// ---- a closed bus hands every event back -----------------------------------------

/// Every verb on a shut-down bus fails and hands back its event intact;
/// `publish_batch` hands back the event it took and leaves the rest of the
/// iterator alone.
fn closed_bus<M: ProducerMode>(
    bus: Bus<Payload, M>,
    mut p: Publisher<Payload, M>,
    tally: &Arc<Tally>,
) {
    shutdown(bus);
    assert!(p.is_closed());
    let back = p.publish(event(tally, 0, 0)).unwrap_err().into_inner();
    assert!(back.data.intact() && back.data.seq == 0);
    drop(back);
    let back = p.try_publish(event(tally, 0, 1)).unwrap_err();
    assert!(matches!(&back, TryPublishError::Closed(e) if e.data.seq == 1 && e.data.intact()));
    drop(back);
    let back = p
        .publish_timeout(event(tally, 0, 2), Duration::from_secs(600))
        .unwrap_err();
    assert!(matches!(&back, PublishTimeoutError::Closed(e) if e.data.seq == 2 && e.data.intact()));
    drop(back);
    let back = p
        .publish_with(|| event(tally, 0, 3))
        .unwrap_err()
        .into_inner();
    assert!(back.data.intact() && back.data.seq == 3);
    drop(back);
    // Six events, more than the ring holds: what was taken comes back, in order;
    // the rest stays in the iterator.
    let mut rest = (4..10).map(|s| event(tally, 0, s));
    let err = p.publish_batch(rest.by_ref()).unwrap_err();
    assert_eq!(err.published, 0);
    let taken = err.unpublished.len();
    let handed_back: Vec<usize> = err.unpublished.iter().map(|e| e.data.seq).collect();
    assert_eq!(handed_back, (4..4 + taken).collect::<Vec<_>>());
    assert!(err.unpublished.iter().all(|e| e.data.intact()));
    drop(err);
    let left: Vec<usize> = rest.map(|e| e.data.seq).collect();
    assert_eq!(
        left,
        (4 + taken..10).collect::<Vec<_>>(),
        "the rest is not consumed"
    );
    drop(p);
    assert_all_dropped(tally);
}

#[test]
fn closed_bus_hands_every_event_back_single_producer() {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let (bus, p) = builder(Exec::Inline, 4, &clock)
        .single_producer()
        .build()
        .unwrap();
    closed_bus::<Single>(bus, p, &tally);
    assert_bus_freed(&clock);
}

#[test]
fn closed_bus_hands_every_event_back_multi_producer() {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(Exec::Inline, 4, &clock).build().unwrap();
    let p = bus.publisher();
    closed_bus::<Multi>(bus, p, &tally);
    assert_bus_freed(&clock);
}

// ---- user code that panics while holding a claim ---------------------------------

/// Yields events `0 .. panic_at`, then panics; its size hint claims more than it
/// yields, so a multi-producer claim has slots left to skip.
struct PanicsAfter {
    tally: Arc<Tally>,
    next: usize,
    panic_at: usize,
}

impl Iterator for PanicsAfter {
    type Item = Event<Payload>;
    fn next(&mut self) -> Option<Event<Payload>> {
        if self.next == self.panic_at {
            panic!("batch iterator panics (on purpose)");
        }
        self.next += 1;
        Some(event(&self.tally, 0, self.next - 1))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.panic_at + 3 - self.next;
        (left, Some(left))
    }
}

/// A `publish_with` closure and a `publish_batch` iterator panic: the closure's
/// claim publishes nothing (multi producer: its slot is skipped), the iterator's
/// publishes what it yielded (multi producer: the rest is skipped); later
/// publishes are delivered, in order.
fn user_code_panics<M: ProducerMode>(
    bus: Bus<Payload, M>,
    mut p: Publisher<Payload, M>,
    tally: &Arc<Tally>,
) {
    let seen = Seen::default();
    bus.subscribe_all(recorder(&seen)).unwrap();
    let other = Seen::default();
    bus.subscribe_all(recorder(&other)).unwrap();

    let made = catch_unwind(AssertUnwindSafe(|| {
        // `.is_ok()`: the result is not reached; only the panic is.
        p.publish_with(|| panic!("publish_with closure panics (on purpose)"))
            .is_ok()
    }));
    assert!(made.is_err(), "the closure's panic propagates");
    let batch = catch_unwind(AssertUnwindSafe(|| {
        p.publish_batch(PanicsAfter {
            tally: tally.clone(),
            next: 0,
            panic_at: 3,
        })
    }));
    assert!(batch.is_err(), "the iterator's panic propagates");
    p.publish(event(tally, 0, 3)).unwrap();
    p.publish_batch((4..6).map(|s| event(tally, 0, s))).unwrap();
    let report = shutdown(bus);
    assert_per_producer(&seen, &[(0..6).collect()]);
    assert_per_producer(&other, &[(0..6).collect()]);
    assert_eq!(
        report.counters.published, 6,
        "holes are not counted as published"
    );
    assert_eq!(report.counters.dispatched, 6);
    drop(p);
    assert_all_dropped(tally);
}

fn user_code_panics_single(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let (bus, p) = builder(exec, 8, &clock).single_producer().build().unwrap();
    user_code_panics::<Single>(bus, p, &tally);
    assert_bus_freed(&clock);
}

fn user_code_panics_multi(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 8, &clock).build().unwrap();
    let p = bus.publisher();
    user_code_panics::<Multi>(bus, p, &tally);
    assert_bus_freed(&clock);
}

#[test]
fn user_code_panics_while_claiming_single_producer_inline() {
    user_code_panics_single(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn user_code_panics_while_claiming_single_producer_pool() {
    user_code_panics_single(Exec::Pool);
}

#[test]
fn user_code_panics_while_claiming_multi_producer_inline() {
    user_code_panics_multi(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn user_code_panics_while_claiming_multi_producer_pool() {
    user_code_panics_multi(Exec::Pool);
}

// ---- a full ring: Full, Timeout, and the skipped claim of a timed-out publish ----

/// Multi producer: while a handler holds the dispatcher, the ring fills;
/// `try_publish` says `Full` and `publish_timeout` times out (its claimed
/// sequence becomes a hole), each handing the event back; published again once
/// the handler lets go, it is delivered, in order, exactly once.
fn full_ring_multi(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 4, &clock).build().unwrap();
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let entered = Arc::new(AtomicBool::new(false));
    let seen = Seen::default();
    let mut record = recorder(&seen);
    let inside = entered.clone();
    bus.subscribe_all(move |e: &Event<Payload>| {
        if e.data.seq == 0 {
            inside.store(true, SeqCst);
            // Until the test opens the gate (drops the sender), or a deadline.
            let limit = Duration::from_secs(30) * SLOWDOWN;
            let _ = gate.lock().unwrap().recv_timeout(limit);
        }
        record(e)
    })
    .unwrap();
    let other = Seen::default();
    bus.subscribe_all(recorder(&other)).unwrap();

    let mut p = bus.publisher();
    p.publish(event(&tally, 0, 0)).unwrap();
    wait_for(10, "the handler holds event 0", || entered.load(SeqCst));
    // Event 0's slot stays taken until its batch is released: 3 more fill the ring.
    for s in 1..4 {
        p.publish(event(&tally, 0, s)).unwrap();
    }
    let back = p.try_publish(event(&tally, 0, 4)).unwrap_err();
    assert!(back.is_full(), "a full ring says Full");
    let back = back.into_inner();
    assert!(back.data.intact() && back.data.seq == 4);
    let back = match p.publish_timeout(back, Duration::from_millis(10)) {
        Err(PublishTimeoutError::Timeout(e)) => e,
        Err(other) => panic!("publish_timeout: {other}"),
        Ok(()) => panic!("publish_timeout succeeded on a ring held full"),
    };
    assert!(back.data.intact() && back.data.seq == 4);
    drop(open);
    p.publish(back).unwrap();
    p.publish(event(&tally, 0, 5)).unwrap();
    let report = shutdown(bus);
    assert_per_producer(&seen, &[(0..6).collect()]);
    assert_per_producer(&other, &[(0..6).collect()]);
    assert_eq!(
        report.counters.published, 6,
        "the hole is not counted as published"
    );
    drop(p);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

#[test]
fn full_ring_and_timed_out_claim_multi_producer_inline() {
    full_ring_multi(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn full_ring_and_timed_out_claim_multi_producer_pool() {
    full_ring_multi(Exec::Pool);
}

// ---- a retrying subscription -----------------------------------------------------

/// Every third event fails its first attempt; a fixed-delay retry on a manual
/// clock delivers it, and the events behind it on its subject wait, in order.
/// The retry queue holds clones: they are dropped too.
fn retrying(exec: Exec) {
    const N: usize = if cfg!(miri) { 4 } else { 31 };
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 8, &clock).build().unwrap();
    let attempts: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let log = attempts.clone();
    let mut failed_once = std::collections::HashSet::new();
    bus.subscribe_with(
        "miri.event",
        move |e: &Event<Payload>| -> Result<(), HandlerError> {
            assert!(e.data.intact(), "retried payload damaged: {:?}", e.data);
            let fail = e.data.seq.is_multiple_of(3) && failed_once.insert(e.data.seq);
            log.lock().unwrap().push((e.data.seq, !fail));
            if fail {
                Err(HandlerError::transient("first attempt fails (on purpose)"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_millis(10), 3)),
    )
    .unwrap();
    let other = Seen::default();
    bus.subscribe_all(recorder(&other)).unwrap();

    let mut p = bus.publisher();
    for s in 0..N {
        let e = event(&tally, 0, s).with_subject("one-subject");
        p.publish(e).unwrap();
    }
    let expected: Vec<(usize, bool)> = (0..N)
        .flat_map(|s| {
            let first = if s.is_multiple_of(3) {
                vec![(s, false)]
            } else {
                vec![]
            };
            first.into_iter().chain([(s, true)])
        })
        .collect();
    let mut failures = 0;
    for (i, &(_, ok)) in expected.iter().enumerate() {
        wait_for(10, "the next attempt", || {
            attempts.lock().unwrap().len() > i
        });
        if !ok {
            failures += 1;
            // Once the retry is scheduled, its delay passes.
            wait_for(10, "the retry is scheduled", || {
                bus.stats().retried >= failures
            });
            clock.advance(Duration::from_millis(10));
        }
    }
    let report = shutdown(bus);
    assert_eq!(*attempts.lock().unwrap(), expected);
    assert_per_producer(&other, &[(0..N).collect()]);
    let failed = N.div_ceil(3) as u64;
    assert_eq!(report.counters.retried, failed);
    assert_eq!(report.counters.failed, failed);
    assert_eq!(report.counters.dead_lettered, 0);
    assert!(report.undelivered.is_empty());
    assert_eq!(report.counters.delivered, 2 * N as u64);
    drop(p);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

#[test]
fn retrying_subscription_inline() {
    retrying(Exec::Inline);
}

#[test]
fn retrying_subscription_pool() {
    retrying(Exec::Pool);
}

// ---- a partitioned subscription --------------------------------------------------

/// Three lanes, two producers, four subjects: each event reaches exactly one
/// lane, each subject stays on one lane, in publish order.
fn partitioned(exec: Exec) {
    const N: usize = if cfg!(miri) { 8 } else { 200 };
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 8, &clock).build().unwrap();
    // (lane, subject, producer, seq) per call.
    type Calls = Arc<Mutex<Vec<(usize, String, usize, usize)>>>;
    let calls: Calls = Arc::default();
    bus.subscribe_partitioned("miri.event", 3, |lane| {
        let calls = calls.clone();
        move |e: &Event<Payload>| -> Result<(), HandlerError> {
            assert!(
                e.data.intact(),
                "handler got a damaged payload: {:?}",
                e.data
            );
            let subject = e.subject.as_ref().expect("every event has a subject");
            let subject = subject.as_str().to_owned();
            calls
                .lock()
                .unwrap()
                .push((lane, subject, e.data.producer, e.data.seq));
            Ok(())
        }
    })
    .unwrap();
    let subject = |producer: usize, seq: usize| format!("s{producer}-{}", seq % 2);
    let producers: Vec<_> = (0..2)
        .map(|producer| {
            let (mut p, tally) = (bus.publisher(), tally.clone());
            std::thread::spawn(move || {
                let make = |s| event(&tally, producer, s).with_subject(subject(producer, s));
                if producer == 0 {
                    for s in 0..N {
                        p.publish(make(s)).unwrap();
                    }
                } else {
                    p.publish_batch((0..N).map(make)).unwrap();
                }
            })
        })
        .collect();
    for t in producers {
        t.join().unwrap();
    }
    let report = shutdown(bus);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2 * N, "each event reaches exactly one lane");
    for producer in 0..2 {
        for k in 0..2 {
            let name = subject(producer, k);
            let mine: Vec<_> = calls.iter().filter(|c| c.1 == name).collect();
            let lanes: std::collections::HashSet<usize> = mine.iter().map(|c| c.0).collect();
            assert_eq!(lanes.len(), 1, "subject {name} on one lane, not {lanes:?}");
            let seqs: Vec<usize> = mine.iter().map(|c| c.3).collect();
            let want: Vec<usize> = (0..N).filter(|s| s % 2 == k).collect();
            assert_eq!(seqs, want, "subject {name}: in publish order");
        }
    }
    assert_eq!(report.counters.delivered, 2 * N as u64);
    drop(calls);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

#[test]
fn partitioned_subscription_inline() {
    partitioned(Exec::Inline);
}

#[test]
fn partitioned_subscription_pool() {
    partitioned(Exec::Pool);
}

// ---- a payload whose Drop panics -------------------------------------------------

/// Payload 2's `Drop` panics when its batch is released: contained, every payload
/// dropped exactly once, later events delivered.
fn drop_panics<M: ProducerMode>(
    bus: Bus<Payload, M>,
    mut p: Publisher<Payload, M>,
    tally: &Arc<Tally>,
) {
    const N: usize = 6;
    let seen: Vec<Seen> = (0..2).map(|_| Seen::default()).collect();
    for s in &seen {
        bus.subscribe_all(recorder(s)).unwrap();
    }
    for s in 0..N {
        let mut e = event(tally, 0, s);
        e.data.panic_on_drop = s == 2;
        p.publish(e).unwrap();
    }
    wait_for(10, "event 2's batch is released", || {
        tally.dropped.load(SeqCst) >= 3
    });
    p.publish_batch((N..N + 3).map(|s| event(tally, 0, s)))
        .unwrap();
    let report = shutdown(bus);
    for s in &seen {
        assert_per_producer(s, &[(0..N + 3).collect()]);
    }
    assert_eq!(report.counters.published, N as u64 + 3);
    drop(p);
    assert_all_dropped(tally);
}

fn drop_panics_single(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let (bus, p) = builder(exec, 4, &clock).single_producer().build().unwrap();
    drop_panics::<Single>(bus, p, &tally);
    assert_bus_freed(&clock);
}

fn drop_panics_multi(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 4, &clock).build().unwrap();
    let p = bus.publisher();
    drop_panics::<Multi>(bus, p, &tally);
    assert_bus_freed(&clock);
}

#[test]
fn payload_drop_panic_single_producer_inline() {
    drop_panics_single(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn payload_drop_panic_single_producer_pool() {
    drop_panics_single(Exec::Pool);
}

#[test]
fn payload_drop_panic_multi_producer_inline() {
    drop_panics_multi(Exec::Inline);
}

#[test]
fn payload_drop_panic_multi_producer_pool() {
    drop_panics_multi(Exec::Pool);
}

// ---- shutdown while producers are busy -------------------------------------------

/// The most events a busy producer publishes (it stops earlier, at the shutdown).
const BUSY_LIMIT: usize = if cfg!(miri) { 200 } else { 100_000 };

/// What a busy producer did: the sequences published (`0 .. published`), and the
/// events handed back by the failed publish, if it saw the close.
struct Busy {
    published: usize,
    handed_back: Vec<Event<Payload>>,
}

/// Publishes one at a time until the bus refuses.
fn busy_publish<M: ProducerMode>(
    p: &mut Publisher<Payload, M>,
    tally: &Arc<Tally>,
    producer: usize,
) -> Busy {
    for s in 0..BUSY_LIMIT {
        if let Err(e) = p.publish(event(tally, producer, s)) {
            return Busy {
                published: s,
                handed_back: vec![e.into_inner()],
            };
        }
    }
    Busy {
        published: BUSY_LIMIT,
        handed_back: Vec::new(),
    }
}

/// Publishes batches of 3 until the bus refuses.
fn busy_batches(p: &mut Publisher<Payload, Multi>, tally: &Arc<Tally>, producer: usize) -> Busy {
    let mut s = 0;
    while s < BUSY_LIMIT {
        if let Err(e) = p.publish_batch((s..s + 3).map(|s| event(tally, producer, s))) {
            return Busy {
                published: s + e.published,
                handed_back: e.unpublished,
            };
        }
        s += 3;
    }
    Busy {
        published: s,
        handed_back: Vec::new(),
    }
}

/// Checks one busy producer's outcome against what was delivered.
#[track_caller]
fn check_busy(busy: &[Busy], seen: &Seen, report: &ShutdownReport) {
    let expected: Vec<Vec<usize>> = busy.iter().map(|b| (0..b.published).collect()).collect();
    assert_per_producer(seen, &expected);
    for (producer, b) in busy.iter().enumerate() {
        for (i, e) in b.handed_back.iter().enumerate() {
            assert!(e.data.intact() && e.data.producer == producer);
            assert_eq!(
                e.data.seq,
                b.published + i,
                "handed back in order, after the last published"
            );
        }
    }
    let total: usize = busy.iter().map(|b| b.published).sum();
    assert_eq!(report.counters.published, total as u64);
}

fn shutdown_while_busy_single(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let (bus, mut p) = builder(exec, 4, &clock).single_producer().build().unwrap();
    let seen: Vec<Seen> = (0..2).map(|_| Seen::default()).collect();
    for s in &seen {
        bus.subscribe_all(recorder(s)).unwrap();
    }
    let t = tally.clone();
    let producer = std::thread::spawn(move || busy_publish(&mut p, &t, 0));
    wait_for(10, "a few deliveries", || seen_len(&seen[0]) >= 3);
    let report = shutdown(bus);
    let busy = producer.join().unwrap();
    for s in &seen {
        check_busy(std::slice::from_ref(&busy), s, &report);
    }
    drop(busy);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

fn shutdown_while_busy_multi(exec: Exec) {
    let (tally, clock) = (Arc::new(Tally::default()), ManualClock::new());
    let bus = builder(exec, 4, &clock).build().unwrap();
    let seen: Vec<Seen> = (0..2).map(|_| Seen::default()).collect();
    for s in &seen {
        bus.subscribe_all(recorder(s)).unwrap();
    }
    let (mut p0, mut p1) = (bus.publisher(), bus.publisher());
    let (t0, t1) = (tally.clone(), tally.clone());
    let one = std::thread::spawn(move || busy_publish(&mut p0, &t0, 0));
    let batches = std::thread::spawn(move || busy_batches(&mut p1, &t1, 1));
    wait_for(10, "a few deliveries", || seen_len(&seen[0]) >= 3);
    let report = shutdown(bus);
    let busy = [one.join().unwrap(), batches.join().unwrap()];
    for s in &seen {
        check_busy(&busy, s, &report);
    }
    drop(busy);
    assert_all_dropped(&tally);
    assert_bus_freed(&clock);
}

#[test]
fn shutdown_while_producer_busy_single_producer_inline() {
    shutdown_while_busy_single(Exec::Inline);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "under Miri the multi-producer `_pool` tests cover the pool path"
)]
fn shutdown_while_producer_busy_single_producer_pool() {
    shutdown_while_busy_single(Exec::Pool);
}

#[test]
fn shutdown_while_producers_busy_multi_producer_inline() {
    shutdown_while_busy_multi(Exec::Inline);
}

#[test]
fn shutdown_while_producers_busy_multi_producer_pool() {
    shutdown_while_busy_multi(Exec::Pool);
}
