//! Regression tests for defects found by independent testing, one (or a few) per
//! defect, named `dNN_…` after the defect number. Public API only.
//!
//! Rules these tests follow:
//! * no test may hang the binary: any scenario that can deadlock runs on its own
//!   thread and is waited for with a deadline (a stuck thread is leaked, or
//!   unblocked where the test can do that);
//! * no sleeping to let things settle: conditions are waited for with a deadline;
//!   a few short sleeps only *create* a timing window, and say so;
//! * every `Bus::shutdown` goes through [`shutdown`] below (its signature is about
//!   to change to `Result<ShutdownReport, ShutdownError>`);
//! * failures are collected and reported after the scenario is cleaned up, so that
//!   an assertion never unwinds through a `Bus` whose dispatcher is stuck.
//!
//! d01 is kept small (Inline execution, capacity 8, 4 events) so that it can also
//! run under Miri (~20 s); events read the real-time clock, so Miri needs
//! `MIRIFLAGS=-Zmiri-disable-isolation`:
//! `MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test --test defects d01`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::event;
use ringbus::failure::Failure;
use ringbus::resilience::{
    BreakerConfig, BreakerTransition, Clock, DlqFilter, DlqFullPolicy, ManualClock, RetryPolicy,
};
use ringbus::{
    Bus, BusBuilder, Event, Execution, Handler, HandlerError, ProducerMode, PublishTimeoutError,
    Publisher, ShutdownReport, SubscribeError, SubscribeOptions, SubscriptionId, WaitStrategy,
};

// ---- helpers ---------------------------------------------------------------------

/// The one place that calls `Bus::shutdown` from outside the bus.
fn shutdown<P: Send + Sync + 'static, M: ringbus::ProducerMode>(
    bus: Bus<P, M>,
) -> ringbus::ShutdownReport {
    bus.shutdown()
        .expect("shutdown from outside the bus returns a report")
}

/// Runs `f` on its own thread and waits at most `limit` for its result. A thread
/// still running at the deadline is leaked.
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit * MIRI_SLOWDOWN) {
        Ok(v) => Ok(v),
        Err(RecvTimeoutError::Timeout) => {
            Err(format!("did not return within {limit:?} (deadlocked)"))
        }
        Err(RecvTimeoutError::Disconnected) => Err("panicked".to_owned()),
    }
}

/// [`shutdown`] with a deadline: a shutdown that hangs is reported, not waited for.
fn shutdown_within<P: Send + Sync + 'static, M: ProducerMode>(
    bus: Bus<P, M>,
    limit: Duration,
) -> Result<ShutdownReport, String> {
    within(limit, move || shutdown(bus)).map_err(|e| format!("shutdown {e}"))
}

/// Under Miri (about a hundred times slower) every deadline stretches by this.
const MIRI_SLOWDOWN: u32 = if cfg!(miri) { 50 } else { 1 };

/// Waits until `cond` holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit * MIRI_SLOWDOWN;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Panics with every collected failure, if any.
#[track_caller]
fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n  - {}\n", failures.join("\n  - "));
}

/// A handler that counts its calls.
fn counter<P>(
    n: &Arc<AtomicUsize>,
) -> impl FnMut(&Event<P>) -> Result<(), HandlerError> + Send + 'static {
    let n = n.clone();
    move |_| {
        n.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// Subscribes a counting handler to `"probe"` events.
fn probe<P: Send + Sync + 'static>(bus: &Bus<P>) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    bus.subscribe("probe", counter(&n)).unwrap();
    n
}

fn inline<P: Send + Sync + 'static>() -> BusBuilder<P> {
    BusBuilder::<P>::new()
        .capacity(64)
        .execution(Execution::Inline)
}

/// After a panic in user code that the dispatcher called: every later publish that
/// returns `Ok` is delivered (or publish returns `Err` with the event) — never
/// Ok-and-lost — and shutdown returns. Panics with `failures` plus what it found.
fn assert_alive_after_panic<P: Send + Sync + 'static>(
    what: &str,
    bus: Bus<P>,
    mut publisher: Publisher<P>,
    make_probe: impl Fn(u64) -> Event<P>,
    delivered: &Arc<AtomicUsize>,
    mut failures: Vec<String>,
) {
    let before = delivered.load(SeqCst);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3 {
        match publisher.publish(make_probe(i)) {
            Ok(()) => ok += 1,
            Err(e) => {
                refused += 1;
                drop(e.into_inner());
            }
        }
    }
    if !eventually(Duration::from_secs(3), || {
        delivered.load(SeqCst) >= before + ok
    }) {
        failures.push(format!(
            "{what}: after the panic {ok} publishes returned Ok ({refused} refused), but only {} \
             of them were delivered within 3 s (Ok-and-lost: the dispatcher is dead, the ring open)",
            delivered.load(SeqCst) - before
        ));
    }
    drop(publisher);
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(format!("{what}: {e}"));
    }
    report(failures);
}

/// `bus.unsubscribe(id)` on another thread with a deadline; hands the bus back.
fn unsubscribe_within<P: Send + Sync + 'static>(
    bus: Bus<P>,
    id: SubscriptionId,
    limit: Duration,
) -> Result<(Result<(), SubscribeError>, Bus<P>), String> {
    within(limit, move || {
        let r = bus.unsubscribe(id);
        (r, bus)
    })
    .map_err(|e| format!("unsubscribe {e}"))
}

/// A handler that blocks on the event with payload `block_on` until `release` is
/// dropped (or 30 s pass), counting every call in `calls` and setting `entered`.
fn latch_handler(
    block_on: u64,
    calls: &Arc<AtomicUsize>,
    entered: &Arc<AtomicBool>,
) -> (
    mpsc::Sender<()>,
    impl FnMut(&Event<u64>) -> Result<(), HandlerError> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<()>();
    let (calls, entered) = (calls.clone(), entered.clone());
    let handler = move |e: &Event<u64>| {
        if e.data == block_on {
            entered.store(true, SeqCst);
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
        calls.fetch_add(1, SeqCst);
        Ok(())
    };
    (tx, handler)
}

// ---- d01: a payload Drop that panics during release: double drop -------------------

static D01_DROPS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static D01_ARMED: AtomicBool = AtomicBool::new(false);

/// Payload `i`; payload 1 panics in its first `Drop` while armed. It owns heap
/// memory, so under Miri a second drop is a double free (undefined behaviour).
struct D01(usize, Box<usize>);

impl Drop for D01 {
    fn drop(&mut self) {
        // Reads the heap copy: after a double free, Miri flags this read.
        D01_DROPS[*self.1].fetch_add(1, SeqCst);
        if self.0 == 1 && D01_ARMED.swap(false, SeqCst) {
            panic!("d01: payload 1 panics in Drop");
        }
    }
}

#[test]
fn d01_payload_drop_panic_during_release_drops_each_payload_exactly_once() {
    D01_ARMED.store(true, SeqCst);
    let (bus, mut p) = BusBuilder::<D01>::new()
        .single_producer()
        .capacity(8)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    bus.subscribe_all(counter(&delivered)).unwrap();
    let mut failures = Vec::new();

    if p.publish_batch((0..3).map(|i| event("d01", D01(i, Box::new(i)))))
        .is_err()
    {
        failures.push("publish_batch of 3 events on an open bus failed".into());
    }
    if !eventually(Duration::from_secs(5), || D01_DROPS[1].load(SeqCst) >= 1) {
        failures.push("the dispatcher never released the batch".into());
    }
    // The bus keeps delivering later events.
    match p.publish(event("d01", D01(3, Box::new(3)))) {
        Ok(()) => {
            if !eventually(Duration::from_secs(3), || delivered.load(SeqCst) >= 4) {
                failures.push(format!(
                    "a publish after the Drop panic returned Ok but was never delivered \
                     (delivered {} of 4)",
                    delivered.load(SeqCst)
                ));
            }
        }
        Err(e) => drop(e.into_inner()),
    }
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(e);
    }
    drop(p); // the last handle: the ring is dropped now
    D01_ARMED.store(false, SeqCst);
    let drops: Vec<usize> = D01_DROPS.iter().map(|d| d.load(SeqCst)).collect();
    if drops != [1, 1, 1, 1] {
        failures.push(format!(
            "drops per payload id 0..4: {drops:?}, expected each exactly once [1, 1, 1, 1] \
             (2 = dropped twice: a double free)"
        ));
    }
    report(failures);
}

// ---- d02: a retry blocking a subject spins the dispatcher; drain timeout ignored ---

/// CPU ticks (user + system) used so far by this process's thread named `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        return Some(utime + stime);
    }
    None
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[test]
fn d02_event_behind_a_pending_retry_neither_spins_nor_outlives_retry_drain_timeout() {
    const NAME: &str = "rb-d02-disp";
    let clock = ManualClock::new();
    let bus = BusBuilder::<u64>::new()
        .clock(clock.clone())
        .execution(Execution::Inline)
        .thread_name(NAME)
        .retry_drain_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let a_calls = Arc::new(AtomicUsize::new(0));
    let ac = a_calls.clone();
    bus.subscribe_with(
        "d02",
        move |e: &Event<u64>| -> Result<(), HandlerError> {
            // Event A (payload 1) fails transiently on its first call only.
            if e.data == 1 && ac.fetch_add(1, SeqCst) == 0 {
                Err(HandlerError::transient("A: try again later"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new()
            .name("d02")
            .retry(RetryPolicy::fixed(Duration::from_secs(60), 3)),
    )
    .unwrap();
    let pending = |bus: &Bus<u64>| bus.metrics().handlers.first().map_or(0, |h| h.pending);
    let mut p = bus.publisher();
    let a = event("d02", 1u64).with_subject("s");
    let a_id = a.id;
    p.publish(a).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || pending(&bus) == 1),
        "A never waited for its retry"
    );
    let b = event("d02", 2u64).with_subject("s");
    let b_id = b.id;
    p.publish(b).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || pending(&bus) == 2),
        "B never queued behind A"
    );
    let mut failures = Vec::new();

    // The dispatcher has nothing to do for 60 (manual) seconds: it must sleep.
    // (Sleeping here *is* the measurement window.)
    let tck = clock_ticks_per_second();
    match thread_cpu_ticks(NAME) {
        Some(t0) => {
            let started = Instant::now();
            std::thread::sleep(Duration::from_millis(500));
            let t1 = thread_cpu_ticks(NAME).unwrap_or(t0);
            let wall = started.elapsed().as_secs_f64();
            let share = (t1 - t0) as f64 / tck as f64 / wall;
            if share >= 0.5 {
                failures.push(format!(
                    "the dispatcher used {:.0}% of a core over {wall:.2} s while idle, waiting \
                     for a retry 60 s away (busy loop)",
                    share * 100.0
                ));
            }
        }
        None => eprintln!("d02: no /proc thread named {NAME}; CPU check skipped"),
    }

    drop(p);
    let started = Instant::now();
    match shutdown_within(bus, Duration::from_secs(5)) {
        Ok(report) => {
            let ids: Vec<_> = report.undelivered.iter().map(|u| u.event_id).collect();
            if !(ids.contains(&a_id) && ids.contains(&b_id)) {
                failures.push(format!(
                    "report.undelivered should list A and B, lists {ids:?} (A {a_id}, B {b_id})"
                ));
            }
            if started.elapsed() > Duration::from_secs(2) {
                failures.push(format!(
                    "shutdown took {:?} with retry_drain_timeout(100ms)",
                    started.elapsed()
                ));
            }
        }
        Err(e) => {
            failures.push(format!(
                "{e} with retry_drain_timeout(100ms) and a retry pending on a ManualClock"
            ));
            // Unblock the leaked shutdown: A's retry falls due and succeeds.
            clock.advance(Duration::from_secs(61));
        }
    }
    report(failures);
}

// ---- d03: a refused redrive destroys the letter -----------------------------------

#[test]
fn d03_redrive_after_shutdown_keeps_the_letter() {
    let bus = inline::<u64>().build().unwrap();
    bus.subscribe_with(
        "d03",
        |_e: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::permanent("no")) },
        SubscribeOptions::new().name("d03"),
    )
    .unwrap();
    let dl = bus.dead_letters();
    let mut p = bus.publisher();
    p.publish(event("d03", 1)).unwrap();
    p.publish(event("d03", 2)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || dl.len() == 2),
        "both events should be dead-lettered"
    );
    drop(p);
    shutdown(bus);

    let ids = |dl: &ringbus::DeadLetters<u64>| -> Vec<u64> {
        dl.list(&DlqFilter::all()).iter().map(|l| l.id).collect()
    };
    let before = ids(&dl);
    let mut failures = Vec::new();
    let r = dl.redrive(before[0]);
    if !matches!(r, Err(SubscribeError::Closed)) {
        failures.push(format!(
            "redrive after shutdown: expected Err(Closed), got {r:?}"
        ));
    }
    if !ids(&dl).contains(&before[0]) {
        failures.push(format!(
            "refused redrive({}) destroyed the letter: listed before {before:?}, after {:?}",
            before[0],
            ids(&dl)
        ));
    }
    let listed = ids(&dl);
    let r = dl.redrive_matching(&DlqFilter::all());
    if r.is_ok() {
        failures.push(format!(
            "redrive_matching after shutdown: expected Err, got {r:?}"
        ));
    }
    if ids(&dl) != listed {
        failures.push(format!(
            "refused redrive_matching destroyed letters: listed before {listed:?}, after {:?}",
            ids(&dl)
        ));
    }
    report(failures);
}

// ---- d04: shutdown deadlocks on a full Block dead-letter queue ---------------------

#[test]
fn d04_shutdown_returns_with_a_full_blocking_dead_letter_queue() {
    let bus = inline::<u64>()
        .dead_letter_queue(1, DlqFullPolicy::Block)
        .build()
        .unwrap();
    bus.subscribe_with(
        "d04",
        |_e: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::permanent("no")) },
        SubscribeOptions::new().name("d04"),
    )
    .unwrap();
    let dl = bus.dead_letters();
    let mut p = bus.publisher();
    p.publish(event("d04", 1)).unwrap();
    p.publish(event("d04", 2)).unwrap();
    drop(p);
    let mut failures = Vec::new();
    match shutdown_within(bus, Duration::from_secs(5)) {
        Ok(report) => {
            if report.counters.dispatched != 2 {
                failures.push(format!(
                    "report.counters.dispatched {} != 2",
                    report.counters.dispatched
                ));
            }
        }
        Err(e) => {
            failures.push(format!(
                "{e}: two permanent failures, dead_letter_queue(1, Block)"
            ));
            // Unblock the dispatcher's push so the leaked shutdown can finish.
            dl.discard_matching(&DlqFilter::all());
        }
    }
    report(failures);
}

// ---- d05: a panic in user code called outside catch_unwind -------------------------

#[test]
fn d05a_retry_if_predicate_panic_does_not_lose_later_publishes() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = probe(&bus);
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    bus.subscribe_with(
        "trigger",
        |_e: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("t")) },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::from_millis(1), 3).retry_if(
            move |_| {
                if a.swap(false, SeqCst) {
                    panic!("d05a: retry_if predicate panics");
                }
                false
            },
        )),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !armed.load(SeqCst)) {
        failures.push("the retry_if predicate was never called".into());
    }
    assert_alive_after_panic(
        "retry_if panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

/// A clock whose `now` panics once, the first time it is read while armed.
struct BombClock {
    armed: Arc<AtomicBool>,
    origin: Instant,
}

impl Clock for BombClock {
    fn now(&self) -> Duration {
        if self.armed.swap(false, SeqCst) {
            panic!("d05b: Clock::now panics");
        }
        self.origin.elapsed()
    }
}

#[test]
fn d05b_clock_now_panic_does_not_lose_later_publishes() {
    let armed = Arc::new(AtomicBool::new(false));
    let bus = inline::<u64>()
        .clock(BombClock {
            armed: armed.clone(),
            origin: Instant::now(),
        })
        .build()
        .unwrap();
    let delivered = probe(&bus);
    let mut p = bus.publisher();
    armed.store(true, SeqCst);
    // Any event wakes the dispatcher, which reads the clock on its next idle turn.
    p.publish(event("tick", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !armed.load(SeqCst)) {
        failures.push("the clock was never read".into());
    }
    assert_alive_after_panic(
        "Clock::now panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

static D05C_ARMED: AtomicBool = AtomicBool::new(false);

/// A payload whose `Clone` panics for the bomb while armed.
struct CloneBomb {
    bomb: bool,
}

impl Clone for CloneBomb {
    fn clone(&self) -> Self {
        if self.bomb && D05C_ARMED.swap(false, SeqCst) {
            panic!("d05c: payload Clone panics");
        }
        CloneBomb { bomb: self.bomb }
    }
}

#[test]
fn d05c_payload_clone_panic_does_not_lose_later_publishes() {
    D05C_ARMED.store(true, SeqCst);
    let bus = inline::<CloneBomb>().build().unwrap();
    let delivered = probe(&bus);
    // A failing resilient handler makes the bus clone the event.
    bus.subscribe_with(
        "trigger",
        |_e: &Event<CloneBomb>| -> Result<(), HandlerError> { Err(HandlerError::permanent("p")) },
        SubscribeOptions::new(),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", CloneBomb { bomb: true }))
        .unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !D05C_ARMED.load(SeqCst)) {
        failures.push("the payload was never cloned".into());
    }
    D05C_ARMED.store(false, SeqCst);
    assert_alive_after_panic(
        "payload Clone panic",
        bus,
        p,
        |_| event("probe", CloneBomb { bomb: false }),
        &delivered,
        failures,
    );
}

static D05D_ARMED: AtomicBool = AtomicBool::new(false);

/// A payload whose `Drop` panics for the bomb while armed.
struct DropBomb {
    bomb: bool,
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.bomb && D05D_ARMED.swap(false, SeqCst) {
            panic!("d05d: payload Drop panics");
        }
    }
}

#[test]
fn d05d_payload_drop_panic_does_not_lose_later_publishes() {
    D05D_ARMED.store(true, SeqCst);
    let bus = inline::<DropBomb>().build().unwrap();
    let delivered = probe(&bus);
    let mut p = bus.publisher();
    p.publish(event("trigger", DropBomb { bomb: true }))
        .unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !D05D_ARMED.load(SeqCst)) {
        failures.push("the payload was never dropped".into());
    }
    D05D_ARMED.store(false, SeqCst);
    assert_alive_after_panic(
        "payload Drop panic",
        bus,
        p,
        |_| event("probe", DropBomb { bomb: false }),
        &delivered,
        failures,
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Start,
    BatchEnd,
    Shutdown,
    Drop,
}

/// A handler that panics once in `hook` while armed.
struct HookBomb {
    hook: Hook,
    armed: Arc<AtomicBool>,
}

impl HookBomb {
    fn fire(&self, hook: Hook) {
        if self.hook == hook && self.armed.swap(false, SeqCst) {
            panic!("d05: handler panics in a hook");
        }
    }
}

impl Handler<u64> for HookBomb {
    fn handle(&mut self, _e: &Event<u64>) -> Result<(), HandlerError> {
        Ok(())
    }
    fn on_start(&mut self) {
        self.fire(Hook::Start);
    }
    fn on_batch_end(&mut self) {
        self.fire(Hook::BatchEnd);
    }
    fn on_shutdown(&mut self) {
        self.fire(Hook::Shutdown);
    }
}

impl Drop for HookBomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.fire(Hook::Drop);
        }
    }
}

fn hook_bomb(hook: Hook) -> (HookBomb, Arc<AtomicBool>) {
    let armed = Arc::new(AtomicBool::new(true));
    (
        HookBomb {
            hook,
            armed: armed.clone(),
        },
        armed,
    )
}

#[test]
fn d05e_on_batch_end_panic_does_not_lose_later_publishes() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = probe(&bus);
    let (bomb, armed) = hook_bomb(Hook::BatchEnd);
    bus.subscribe_handler("trigger", bomb).unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !armed.load(SeqCst)) {
        failures.push("on_batch_end was never called".into());
    }
    assert_alive_after_panic(
        "on_batch_end panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

#[test]
fn d05f_on_shutdown_panic_on_unsubscribe_does_not_lose_later_publishes() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = probe(&bus);
    let (bomb, armed) = hook_bomb(Hook::Shutdown);
    let id = bus.subscribe_handler("trigger", bomb).unwrap();
    let p = bus.publisher();
    let mut failures = Vec::new();
    match unsubscribe_within(bus, id, Duration::from_secs(5)) {
        Ok((r, bus)) => {
            if let Err(e) = r {
                failures.push(format!("unsubscribe: {e:?}"));
            }
            if armed.load(SeqCst) {
                failures.push("on_shutdown was never called".into());
            }
            assert_alive_after_panic(
                "on_shutdown panic",
                bus,
                p,
                |i| event("probe", i),
                &delivered,
                failures,
            );
        }
        Err(e) => panic!("on_shutdown panic: {e}"),
    }
}

#[test]
fn d05g_on_start_panic_does_not_lose_later_publishes() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = probe(&bus);
    let (bomb, armed) = hook_bomb(Hook::Start);
    let mut failures = Vec::new();
    if let Err(e) = bus.subscribe_handler("trigger", bomb) {
        failures.push(format!(
            "subscribe of a handler whose on_start panics: {e:?}"
        ));
    }
    if armed.load(SeqCst) {
        failures.push("on_start was never called".into());
    }
    let p = bus.publisher();
    assert_alive_after_panic(
        "on_start panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

#[test]
fn d05h_failure_policy_panic_does_not_lose_later_publishes() {
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let bus = inline::<u64>()
        .failure_policy(move |_f: &Failure<'_, u64>| {
            if a.swap(false, SeqCst) {
                panic!("d05h: failure policy panics");
            }
        })
        .build()
        .unwrap();
    let delivered = probe(&bus);
    bus.subscribe("trigger", |_e: &Event<u64>| -> Result<(), HandlerError> {
        Err(HandlerError::permanent("p"))
    })
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !armed.load(SeqCst)) {
        failures.push("the failure policy was never called".into());
    }
    assert_alive_after_panic(
        "failure policy panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

#[test]
fn d05i_breaker_listener_panic_does_not_lose_later_publishes() {
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let bus = inline::<u64>()
        .on_breaker_change(move |_sub, _name, _t: BreakerTransition| {
            if a.swap(false, SeqCst) {
                panic!("d05i: breaker listener panics");
            }
        })
        .build()
        .unwrap();
    let delivered = probe(&bus);
    bus.subscribe_with(
        "trigger",
        |_e: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::permanent("p")) },
        SubscribeOptions::new().circuit_breaker(BreakerConfig::consecutive_failures(
            1,
            Duration::from_secs(60),
        )),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || !armed.load(SeqCst)) {
        failures.push("the breaker listener was never called".into());
    }
    assert_alive_after_panic(
        "breaker listener panic",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

#[test]
fn d05j_handler_drop_panic_on_unsubscribe_does_not_lose_later_publishes() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = probe(&bus);
    let (bomb, armed) = hook_bomb(Hook::Drop);
    let id = bus.subscribe_handler("trigger", bomb).unwrap();
    let mut p = bus.publisher();
    let mut failures = Vec::new();
    match unsubscribe_within(bus, id, Duration::from_secs(5)) {
        Ok((r, bus)) => {
            if let Err(e) = r {
                failures.push(format!("unsubscribe: {e:?}"));
            }
            if armed.load(SeqCst) {
                failures.push("the handler was never dropped".into());
            }
            assert_alive_after_panic(
                "handler Drop panic",
                bus,
                p,
                |i| event("probe", i),
                &delivered,
                failures,
            );
        }
        Err(e) => {
            // The bus is stuck in the leaked thread; still show what publishes do.
            failures.push(format!("handler Drop panic: {e}"));
            let before = delivered.load(SeqCst);
            let ok = (0..3)
                .filter(|&i| p.publish(event("probe", i)).is_ok())
                .count();
            if !eventually(Duration::from_secs(3), || {
                delivered.load(SeqCst) >= before + ok
            }) {
                failures.push(format!(
                    "{ok} later publishes returned Ok, {} delivered (Ok-and-lost)",
                    delivered.load(SeqCst) - before
                ));
            }
            report(failures);
        }
    }
}

// ---- d06: dropping the last Bus inside publish_with / a batch iterator --------------

type Holder = Arc<Mutex<Option<Bus<u64>>>>;

fn holder_bus() -> (Holder, Publisher<u64>, Arc<AtomicUsize>) {
    let bus = inline::<u64>().build().unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    bus.subscribe_all(counter(&delivered)).unwrap();
    let p = bus.publisher();
    (Arc::new(Mutex::new(Some(bus))), p, delivered)
}

#[test]
fn d06a_publish_with_closure_dropping_the_last_bus_completes() {
    let (holder, mut p, delivered) = holder_bus();
    let h = holder.clone();
    drop(holder);
    let outcome = within(Duration::from_secs(10), move || {
        let r = p.publish_with(move || {
            let bus = h.lock().unwrap().take();
            drop(bus); // the last Bus handle
            event("d06", 1)
        });
        r.is_ok()
    });
    match outcome {
        Ok(true) => assert!(
            eventually(Duration::from_secs(3), || delivered.load(SeqCst) == 1),
            "publish_with returned Ok but the event was not delivered"
        ),
        Ok(false) => {} // Err with the event: fine
        Err(e) => panic!("publish_with whose closure drops the last Bus {e}"),
    }
}

/// Yields `n` events; its second `next()` drops the last Bus first.
struct DropBusIter {
    holder: Holder,
    next: u64,
    n: u64,
}

impl Iterator for DropBusIter {
    type Item = Event<u64>;
    fn next(&mut self) -> Option<Event<u64>> {
        if self.next >= self.n {
            return None;
        }
        if self.next == 1 {
            let bus = self.holder.lock().unwrap().take();
            drop(bus);
        }
        self.next += 1;
        Some(event("d06", self.next - 1))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.n - self.next) as usize;
        (left, Some(left))
    }
}

#[test]
fn d06b_publish_batch_iterator_dropping_the_last_bus_completes() {
    let (holder, mut p, delivered) = holder_bus();
    let it = DropBusIter {
        holder,
        next: 0,
        n: 3,
    };
    let outcome = within(Duration::from_secs(10), move || match p.publish_batch(it) {
        Ok(()) => (3, 0),
        Err(e) => (e.published, e.unpublished.len()),
    });
    match outcome {
        Ok((published, returned)) => {
            assert_eq!(
                published + returned,
                3,
                "every event published or handed back"
            );
            assert!(
                eventually(Duration::from_secs(3), || delivered.load(SeqCst)
                    == published),
                "{published} published, {} delivered",
                delivered.load(SeqCst)
            );
        }
        Err(e) => panic!("publish_batch whose iterator drops the last Bus {e}"),
    }
}

// ---- d07: shutdown from inside the bus's own handler --------------------------------

// `Bus::shutdown(self) -> Result<ShutdownReport, ShutdownError>`: called from its
// own handler it cannot join the dispatcher it runs on. Before the fix it returned
// a report made up from the counters (`published: 2, dispatched: 0, …`).
#[test]
fn d07_shutdown_from_inside_its_own_handler_is_refused() {
    let bus = inline::<u64>().build().unwrap();
    let holder: Holder = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let h = holder.clone();
    bus.subscribe("stop", move |_e: &Event<u64>| -> Result<(), HandlerError> {
        if let Some(bus) = h.lock().unwrap().take() {
            let r = bus.shutdown(); // deliberately not the helper: this is the new API
            let refused = matches!(r, Err(ringbus::ShutdownError::FromInside));
            let _ = tx.send((refused, format!("{r:?}")));
        }
        Ok(())
    })
    .unwrap();
    let mut p = bus.publisher();
    *holder.lock().unwrap() = Some(bus);
    p.publish(event("stop", 1)).unwrap();
    let (refused, shown) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown called from inside its own handler deadlocked");
    assert!(
        refused,
        "shutdown from inside its own handler must be Err(FromInside), not a made-up report: {shown}"
    );
}

// ---- d08: publish_timeout starves under batch publishers ---------------------------

#[test]
fn d08_publish_timeout_succeeds_beside_batch_publishers() {
    let bus = BusBuilder::<u64>::new()
        .capacity(16)
        .wait_strategy(WaitStrategy::Yielding)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    bus.subscribe_all(counter(&delivered)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..2 {
        let mut p = bus.publisher();
        let (stop, done) = (stop.clone(), done_tx.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                if p.publish_batch((0..64).map(|i| event("d08", i))).is_err() {
                    break;
                }
            }
            let _ = done.send(());
        });
    }
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || delivered.load(SeqCst) > 0) {
        failures.push("the batch publishers never got going".into());
    }
    let mut p = bus.publisher();
    let before = delivered.load(SeqCst);
    let mut outcomes = Vec::new();
    for i in 0..5 {
        match p.publish_timeout(event("d08-timed", i), Duration::from_millis(500)) {
            Ok(()) => {
                outcomes.push("Ok");
                break;
            }
            Err(PublishTimeoutError::Timeout(_)) => outcomes.push("Timeout"),
            Err(PublishTimeoutError::Closed(_)) => outcomes.push("Closed"),
            Err(_) => outcomes.push("other"),
        }
    }
    // The batch publishers keep the dispatcher busy throughout (a timed publish
    // that finds room at once may return before any batch event is delivered).
    if !eventually(Duration::from_secs(5), || {
        delivered.load(SeqCst) > before + 64
    }) {
        failures.push("the dispatcher made no progress during the tries".into());
    }
    let progressed = delivered.load(SeqCst) - before;
    stop.store(true, SeqCst);
    for _ in 0..2 {
        if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            failures.push("a batch publisher did not stop".into());
        }
    }
    if !outcomes.contains(&"Ok") {
        failures.push(format!(
            "publish_timeout(500ms) never succeeded in 5 tries: {outcomes:?}, while the \
             dispatcher delivered {progressed} batch events"
        ));
    }
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(e);
    }
    report(failures);
}

// ---- d09: single-producer publish on a closing bus waits for the drain --------------

#[test]
fn d09_single_producer_publish_on_a_closing_bus_fails_promptly() {
    let (bus, mut p) = BusBuilder::<u64>::new()
        .single_producer()
        .capacity(4)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let (calls, entered) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (release, handler) = latch_handler(0, &calls, &entered);
    bus.subscribe_all(handler).unwrap();
    p.publish(event("d09", 0)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || entered.load(SeqCst)),
        "the handler never got event 0"
    );
    for i in 1..4 {
        p.publish(event("d09", i)).unwrap(); // the ring is full now
    }
    let (sd_tx, sd_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sd_tx.send(shutdown(bus));
    });
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || p.is_closed()) {
        failures.push("shutdown never closed the bus".into());
    }
    let (pub_tx, pub_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = pub_tx.send(p.publish(event("d09", 4)).is_err());
    });
    match pub_rx.recv_timeout(Duration::from_secs(1)) {
        Ok(true) => {}
        Ok(false) => failures.push("publish on a closed bus returned Ok".into()),
        Err(_) => failures.push(
            "single-producer publish on a closing bus did not return within 1 s (it waits \
             for the blocked handler to drain the ring)"
                .into(),
        ),
    }
    drop(release); // let the handler go
    if sd_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        failures.push("shutdown did not finish after the handler was released".into());
    }
    if let Ok(refused) = pub_rx.recv_timeout(Duration::from_secs(10)) {
        if !refused {
            failures.push("the late publish returned Ok".into());
        }
    }
    report(failures);
}

/// The multi-producer counterpart, for a publish already waiting for room when the
/// bus closes: it holds no claim (it claims only free slots), so it fails promptly
/// with its event, while the handler still blocks the ring; the events accepted
/// before are all delivered.
#[test]
fn d09b_multi_producer_publish_waiting_for_room_fails_promptly_on_close() {
    let bus = BusBuilder::<u64>::new()
        .capacity(4)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let (calls, entered) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (release, handler) = latch_handler(0, &calls, &entered);
    bus.subscribe_all(handler).unwrap();
    let mut p = bus.publisher();
    p.publish(event("d09b", 0)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || entered.load(SeqCst)),
        "the handler never got event 0"
    );
    // Fill the ring.
    let mut accepted = 1u64;
    while p.try_publish(event("d09b", accepted)).is_ok() {
        accepted += 1;
    }
    let (pub_tx, pub_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = p.publish(event("d09b", accepted));
        let _ = pub_tx.send(r.map_err(|e| e.into_inner().data));
    });
    let mut failures = Vec::new();
    // Give the publish time to start waiting (if it returned, the test says so).
    if let Ok(r) = pub_rx.recv_timeout(Duration::from_millis(200)) {
        failures.push(format!(
            "publish on a full ring returned {r:?} before the close"
        ));
    }
    let (sd_tx, sd_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sd_tx.send(shutdown(bus));
    });
    match pub_rx.recv_timeout(Duration::from_secs(2)) {
        Ok(Err(n)) if n == accepted => {}
        Ok(other) => failures.push(format!(
            "the waiting publish returned {other:?}, not Err(event {accepted})"
        )),
        Err(_) => failures.push(
            "a multi-producer publish waiting for room did not return within 2 s of the close \
             (it waits for the blocked handler)"
                .into(),
        ),
    }
    drop(release);
    if sd_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        failures.push("shutdown did not finish after the handler was released".into());
    }
    let handled = calls.load(SeqCst) as u64;
    if handled != accepted {
        failures.push(format!(
            "{handled} events handled, want the {accepted} accepted"
        ));
    }
    report(failures);
}

// ---- d10: counters ------------------------------------------------------------------

#[test]
fn d10a_published_and_occupancy_count_only_returned_publishes() {
    let bus = BusBuilder::<u64>::new()
        .capacity(4)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let (calls, entered) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (release, handler) = latch_handler(0, &calls, &entered);
    bus.subscribe_all(handler).unwrap();
    let returned = Arc::new(AtomicUsize::new(0));
    let mut p = bus.publisher();
    p.publish(event("d10", 0)).unwrap();
    returned.fetch_add(1, SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || entered.load(SeqCst)),
        "the handler never got event 0"
    );
    // The dispatcher holds slot 0: three more publishes return, the rest wait.
    let (done_tx, done_rx) = mpsc::channel();
    for t in 0..4u64 {
        let mut p = bus.publisher();
        let (returned, done) = (returned.clone(), done_tx.clone());
        std::thread::spawn(move || {
            for j in 0..2 {
                p.publish(event("d10", 1 + 2 * t + j)).unwrap();
                returned.fetch_add(1, SeqCst);
            }
            let _ = done.send(());
        });
    }
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || returned.load(SeqCst) == 4) {
        failures.push(format!(
            "{} publishes returned, expected 4",
            returned.load(SeqCst)
        ));
    }
    // A window for the other producers to reach their (waiting) claims.
    let _ = eventually(Duration::from_millis(500), || {
        bus.metrics().bus.counters.published > returned.load(SeqCst) as u64
    });
    let m = bus.metrics();
    let ret = returned.load(SeqCst) as u64;
    if m.bus.counters.published > ret {
        failures.push(format!(
            "metrics.bus.counters.published = {} while only {ret} publishes have returned (claims still \
             waiting for a slot are counted)",
            m.bus.counters.published
        ));
    }
    if m.bus.ring_occupancy > ret {
        failures.push(format!(
            "metrics.bus.ring_occupancy = {} > {ret} published events in the ring (capacity {})",
            m.bus.ring_occupancy, m.bus.ring_capacity
        ));
    }
    drop(release);
    for _ in 0..4 {
        if done_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            failures.push("a producer never finished".into());
        }
    }
    if !eventually(Duration::from_secs(5), || calls.load(SeqCst) == 9) {
        failures.push(format!("{} of 9 events handled", calls.load(SeqCst)));
    }
    let m = bus.metrics();
    if m.bus.counters.published != 9 {
        failures.push(format!(
            "in the end metrics.bus.counters.published = {} != 9",
            m.bus.counters.published
        ));
    }
    drop(p);
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(e);
    }
    report(failures);
}

#[test]
fn d10b_retry_counters_count_scheduled_retries_as_documented() {
    // `BusMetrics::retried` and `HandlerMetrics::retries` are documented as
    // "Retries scheduled".
    let clock = ManualClock::new();
    let bus = inline::<u64>().clock(clock.clone()).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "d10",
        move |_e: &Event<u64>| -> Result<(), HandlerError> {
            if c.fetch_add(1, SeqCst) == 0 {
                Err(HandlerError::transient("later"))
            } else {
                Ok(())
            }
        },
        SubscribeOptions::new()
            .name("d10b")
            .retry(RetryPolicy::fixed(Duration::from_secs(1), 3)),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("d10", 1)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            // The bus totals are published after the batch, the handler's during
            // it: wait for both.
            let m = bus.metrics();
            m.handlers[0].pending == 1 && m.handlers[0].errors == 1 && m.bus.counters.failed == 1
        }),
        "the retry was never scheduled"
    );
    // The bus totals are Relaxed counters published after each batch: give them
    // the time to arrive rather than racing them.
    eventually(Duration::from_secs(5), || {
        bus.metrics().bus.counters.retried == 1
    });
    let m = bus.metrics();
    let mut failures = Vec::new();
    if m.bus.counters.retried != 1 {
        failures.push(format!(
            "one retry scheduled (pending, clock not advanced): BusMetrics::retried = {}, \
             documented as \"Retries scheduled\" → expected 1",
            m.bus.counters.retried
        ));
    }
    if m.handlers[0].retries != 1 {
        failures.push(format!(
            "one retry scheduled: HandlerMetrics::retries = {}, documented as \"Retries \
             scheduled\" → expected 1",
            m.handlers[0].retries
        ));
    }
    clock.advance(Duration::from_secs(1));
    if !eventually(Duration::from_secs(5), || {
        let m = bus.metrics();
        m.handlers[0].handled == 1 && m.bus.counters.delivered == 1
    }) {
        failures.push("the retry never ran".into());
    }
    let m = bus.metrics();
    if m.bus.counters.retried != 1 || m.handlers[0].retries != 1 {
        failures.push(format!(
            "after the one retry ran: retried {} / retries {}, expected 1 / 1",
            m.bus.counters.retried, m.handlers[0].retries
        ));
    }
    drop(p);
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(e);
    }
    report(failures);
}

// ---- d11: a thread name with a NUL byte ---------------------------------------------

#[test]
fn d11_thread_name_with_nul_is_a_build_error_not_a_panic() {
    let mut failures = Vec::new();
    for (what, execution) in [
        ("Inline", Execution::Inline),
        ("Pool { threads: 1 }", Execution::Pool { threads: 1 }),
    ] {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            BusBuilder::<u64>::new()
                .thread_name("a\0b")
                .execution(execution)
                .build()
        }));
        match outcome {
            Ok(Err(_)) => {}
            Ok(Ok(bus)) => {
                failures.push(format!("{what}: a thread name with NUL was accepted"));
                shutdown(bus);
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                failures.push(format!(
                    "{what}: build() panicked instead of returning Err: {msg:?}"
                ));
            }
        }
    }
    report(failures);
}

// ---- d12: unsubscribe drops accepted, not yet dispatched events ----------------------

#[test]
fn d12_unsubscribe_delivers_every_event_published_before_it() {
    const N: usize = 1000;
    let bus = BusBuilder::<u64>::new()
        .capacity(1024)
        .max_batch(16)
        .execution(Execution::Inline)
        .build()
        .unwrap();
    let (calls, entered) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (release, handler) = latch_handler(0, &calls, &entered);
    let id = bus.subscribe("d12", handler).unwrap();
    let mut p = bus.publisher();
    p.publish(event("d12", 0)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || entered.load(SeqCst)),
        "the handler never got event 0"
    );
    for i in 1..N as u64 {
        p.publish(event("d12", i)).unwrap();
    }
    // Every event is published; now unsubscribe (from another thread: it waits for
    // the dispatcher, which is inside the blocked handler).
    let (tx, rx) = mpsc::channel();
    let c = calls.clone();
    std::thread::spawn(move || {
        let r = bus.unsubscribe(id);
        let seen = c.load(SeqCst);
        let _ = tx.send((r, seen, bus));
    });
    // A window for the unsubscribe request to be queued before the handler resumes.
    std::thread::sleep(Duration::from_millis(100));
    drop(release);
    let (r, seen, bus) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("unsubscribe deadlocked");
    drop(p);
    shutdown(bus);
    assert!(r.is_ok(), "unsubscribe: {r:?}");
    assert_eq!(
        seen, N,
        "when unsubscribe returned the handler had received {seen} of the {N} events published \
         before unsubscribe was called"
    );
}

// ---- d13: Duration overflows ----------------------------------------------------------

#[test]
fn d13a_publish_timeout_duration_max_does_not_panic() {
    let bus = inline::<u64>().build().unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    bus.subscribe_all(counter(&delivered)).unwrap();
    let mut p = bus.publisher();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        p.publish_timeout(event("d13", 1), Duration::MAX).is_ok()
    }));
    let mut failures = Vec::new();
    match outcome {
        Ok(true) => {
            if !eventually(Duration::from_secs(3), || delivered.load(SeqCst) == 1) {
                failures.push("publish_timeout(MAX) returned Ok, never delivered".into());
            }
        }
        Ok(false) => failures.push("publish_timeout(MAX) on an open, empty bus failed".into()),
        Err(_) => failures.push("publish_timeout(e, Duration::MAX) panicked".into()),
    }
    drop(p);
    if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
        failures.push(e);
    }
    report(failures);
}

struct ShutdownFlag(Arc<AtomicBool>);

impl Handler<u64> for ShutdownFlag {
    fn handle(&mut self, _e: &Event<u64>) -> Result<(), HandlerError> {
        Ok(())
    }
    fn on_shutdown(&mut self) {
        self.0.store(true, SeqCst);
    }
}

#[test]
fn d13b_retry_drain_timeout_duration_max_shuts_down_cleanly() {
    let bus = inline::<u64>()
        .retry_drain_timeout(Duration::MAX)
        .build()
        .unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    bus.subscribe_handler("d13", ShutdownFlag(stopped.clone()))
        .unwrap();
    let mut p = bus.publisher();
    p.publish(event("d13", 1)).unwrap();
    drop(p);
    let mut failures = Vec::new();
    match shutdown_within(bus, Duration::from_secs(5)) {
        Ok(report) => {
            if (report.counters.published, report.counters.dispatched) != (1, 1) {
                failures.push(format!("report: {report:?}"));
            }
        }
        Err(e) => failures.push(e),
    }
    if !stopped.load(SeqCst) {
        failures.push(
            "retry_drain_timeout(Duration::MAX), nothing pending: the handler's on_shutdown \
             did not run"
                .into(),
        );
    }
    report(failures);
}

#[test]
fn d13c_fixed_retry_of_duration_max_does_not_kill_the_dispatcher() {
    let bus = inline::<u64>()
        .retry_drain_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let delivered = probe(&bus);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "trigger",
        move |_e: &Event<u64>| -> Result<(), HandlerError> {
            c.fetch_add(1, SeqCst);
            Err(HandlerError::transient("t"))
        },
        SubscribeOptions::new().retry(RetryPolicy::fixed(Duration::MAX, 3)),
    )
    .unwrap();
    let mut p = bus.publisher();
    p.publish(event("trigger", 0)).unwrap();
    let mut failures = Vec::new();
    if !eventually(Duration::from_secs(5), || calls.load(SeqCst) >= 1) {
        failures.push("the failing handler was never called".into());
    }
    assert_alive_after_panic(
        "RetryPolicy::fixed(Duration::MAX, 3)",
        bus,
        p,
        |i| event("probe", i),
        &delivered,
        failures,
    );
}

// ---- d14: publish_batch on a closed bus drains a blocking iterator -------------------

#[test]
fn d14_publish_batch_on_a_closed_bus_returns_without_draining_the_iterator() {
    let bus = inline::<u64>().build().unwrap();
    let mut p = bus.publisher();
    shutdown(bus);
    let (tx, rx) = mpsc::channel::<Event<u64>>();
    tx.send(event("d14", 1)).unwrap();
    tx.send(event("d14", 2)).unwrap();
    let outcome = within(Duration::from_secs(5), move || {
        match p.publish_batch(rx.iter()) {
            Ok(()) => None,
            Err(e) => Some((e.published, e.unpublished.len())),
        }
    });
    let failures = match outcome {
        Ok(Some((0, n))) if (1..=2).contains(&n) => Vec::new(),
        Ok(other) => vec![format!(
            "expected Err with 0 published and 1-2 unpublished, got {other:?}"
        )],
        Err(e) => {
            drop(tx); // ends the iterator: the leaked publish returns
            vec![format!(
                "publish_batch(rx.iter()) on a closed bus (sender alive) {e}: it collects the \
                 rest of the iterator"
            )]
        }
    };
    report(failures);
}

// ---- d15: re-entrancy is per thread, not per bus ---------------------------------------

#[test]
fn d15a_a_handler_of_one_bus_may_subscribe_on_another() {
    let bus_a = inline::<u64>().build().unwrap();
    let bus_b = inline::<u64>().build().unwrap();
    let b_seen = Arc::new(AtomicUsize::new(0));
    let holder: Holder = Arc::new(Mutex::new(Some(bus_b)));
    let (tx, rx) = mpsc::channel();
    let (h, seen) = (holder.clone(), b_seen.clone());
    bus_a
        .subscribe("go", move |_e: &Event<u64>| -> Result<(), HandlerError> {
            let guard = h.lock().unwrap();
            let r = guard
                .as_ref()
                .expect("bus B")
                .subscribe("b", counter(&seen));
            let _ = tx.send(r.map(|_| ()));
            Ok(())
        })
        .unwrap();
    let mut pa = bus_a.publisher();
    pa.publish(event("go", 1)).unwrap();
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("bus B's subscribe from bus A's handler deadlocked");
    let bus_b = holder.lock().unwrap().take().unwrap();
    let mut failures = Vec::new();
    match r {
        Ok(()) => {
            let mut pb = bus_b.publisher();
            pb.publish(event("b", 1)).unwrap();
            if !eventually(Duration::from_secs(3), || b_seen.load(SeqCst) == 1) {
                failures.push("the handler subscribed from A's handler never got B's event".into());
            }
        }
        Err(e) => failures.push(format!(
            "subscribe on bus B from a handler of bus A: {e:?} (re-entrancy is per bus)"
        )),
    }
    drop(pa);
    for bus in [bus_a, bus_b] {
        if let Err(e) = shutdown_within(bus, Duration::from_secs(5)) {
            failures.push(e);
        }
    }
    report(failures);
}

#[test]
fn d15b_dropping_another_bus_in_a_handler_waits_for_its_dispatcher() {
    let bus_a = inline::<u64>().build().unwrap();
    let bus_b = inline::<u64>().build().unwrap();
    let b_stopped = Arc::new(AtomicBool::new(false));
    let b_busy = Arc::new(AtomicBool::new(false));
    struct Slow {
        busy: Arc<AtomicBool>,
        stopped: Arc<AtomicBool>,
    }
    impl Handler<u64> for Slow {
        fn handle(&mut self, _e: &Event<u64>) -> Result<(), HandlerError> {
            self.busy.store(true, SeqCst);
            // Keeps B's dispatcher busy: the window in which the drop must wait.
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        }
        fn on_shutdown(&mut self) {
            self.stopped.store(true, SeqCst);
        }
    }
    bus_b
        .subscribe_handler(
            "slow",
            Slow {
                busy: b_busy.clone(),
                stopped: b_stopped.clone(),
            },
        )
        .unwrap();
    let mut pb = bus_b.publisher();
    let holder: Holder = Arc::new(Mutex::new(Some(bus_b)));
    let (tx, rx) = mpsc::channel();
    let (h, stopped) = (holder.clone(), b_stopped.clone());
    bus_a
        .subscribe(
            "drop-b",
            move |_e: &Event<u64>| -> Result<(), HandlerError> {
                let bus_b = h.lock().unwrap().take();
                drop(bus_b); // the last handle of bus B
                let _ = tx.send(stopped.load(SeqCst));
                Ok(())
            },
        )
        .unwrap();
    pb.publish(event("slow", 1)).unwrap();
    drop(pb);
    assert!(
        eventually(Duration::from_secs(5), || b_busy.load(SeqCst)),
        "B's handler never started"
    );
    let mut pa = bus_a.publisher();
    pa.publish(event("drop-b", 1)).unwrap();
    let stopped_at_drop = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("dropping bus B inside bus A's handler deadlocked");
    drop(pa);
    let mut failures = Vec::new();
    if !stopped_at_drop {
        failures.push(
            "dropping the last handle of bus B inside a handler of bus A returned before B's \
             dispatcher finished (B's on_shutdown had not run)"
                .into(),
        );
    }
    if let Err(e) = shutdown_within(bus_a, Duration::from_secs(5)) {
        failures.push(e);
    }
    report(failures);
}

// ---- d16: ManualClock keeps the wakers of dropped buses ------------------------------

#[test]
fn d16_manual_clock_forgets_the_wakers_of_dropped_buses() {
    let clock = ManualClock::new();
    for _ in 0..3 {
        let bus = inline::<u64>().clock(clock.clone()).build().unwrap();
        shutdown(bus);
    }
    clock.advance(Duration::ZERO);
    let after_drops = clock.waker_count();
    let bus = inline::<u64>().clock(clock.clone()).build().unwrap();
    let with_one_live = clock.waker_count();
    shutdown(bus);
    assert!(
        after_drops <= 1 && with_one_live <= 1,
        "waker_count: {after_drops} after 3 buses were built and shut down and the clock was \
         advanced, {with_one_live} with one live bus (expected <= 1 each: no live bus / one)"
    );
}
