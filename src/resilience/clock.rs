//! The time source of retries and circuit breakers, injectable so tests never sleep
//! through a backoff.
//!
//! Time is a [`Duration`] since an arbitrary fixed origin: the resilience code only
//! ever compares and adds instants, so it needs no calendar. [`SystemClock`] reads
//! the monotonic system clock; [`ManualClock`] moves only when a test moves it, and
//! tells the bus's timer (through the waker) that it did.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// A monotonic clock.
///
/// `now` never goes backwards. A clock that can jump (a test clock) calls every
/// waker registered with [`set_waker`](Clock::set_waker) after each jump, so a timer
/// sleeping until a deadline can re-check it; the system clock does not jump and
/// ignores wakers.
///
/// The bus calls `now` on its dispatcher and handler threads. If it panics, the
/// bus uses the last reading it got (to within a millisecond; zero before any)
/// and goes on.
pub trait Clock: Send + Sync + 'static {
    /// The current time, as a duration since this clock's fixed origin.
    fn now(&self) -> Duration;

    /// Registers `waker`, to be called after every jump of this clock (from the
    /// thread that moved it). Clocks that only move with real time ignore it.
    /// A clock that keeps wakers should drop those that are
    /// [gone](ClockWaker::is_gone) (a bus registers one, and it is gone once the
    /// bus has stopped), so that a clock shared by many buses does not grow.
    fn set_waker(&self, waker: ClockWaker) {
        drop(waker);
    }
}

/// What a [`Clock`] that jumps calls after each jump: a bus's timer, or a closure.
pub struct ClockWaker {
    target: Target,
}

enum Target {
    Fn(Box<dyn Fn() + Send + Sync>),
    /// A bus: gone once the bus's shared state is dropped. (Loom's `Arc` has no
    /// weak references: the loom models run buses on the system clock.)
    #[cfg_attr(loom, allow(dead_code))]
    Weak(std::sync::Weak<dyn Wake>),
}

/// Something a [`ClockWaker`] can wake without keeping it alive.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

impl ClockWaker {
    /// A waker that calls `f`; it is never gone.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        ClockWaker {
            target: Target::Fn(Box::new(f)),
        }
    }

    /// A waker of `target` that does not keep it alive.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn weak(target: std::sync::Weak<dyn Wake>) -> Self {
        ClockWaker {
            target: Target::Weak(target),
        }
    }

    /// Wakes the target; `false` if it is gone (the clock may drop this waker).
    pub fn wake(&self) -> bool {
        match &self.target {
            Target::Fn(f) => {
                f();
                true
            }
            Target::Weak(w) => match w.upgrade() {
                Some(t) => {
                    t.wake();
                    true
                }
                None => false,
            },
        }
    }

    /// Whether what this waker wakes is gone for good.
    pub fn is_gone(&self) -> bool {
        match &self.target {
            Target::Fn(_) => false,
            Target::Weak(w) => w.strong_count() == 0,
        }
    }
}

impl fmt::Debug for ClockWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClockWaker")
            .field("gone", &self.is_gone())
            .finish()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn set_waker(&self, waker: ClockWaker) {
        (**self).set_waker(waker)
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn set_waker(&self, waker: ClockWaker) {
        (**self).set_waker(waker)
    }
}

/// A [`Clock`] as the bus uses it: a panic in the user's `now` is contained — the
/// reading falls back to the last good one — so it cannot kill the dispatcher or
/// a handler task.
pub(crate) struct GuardedClock {
    clock: std::sync::Arc<dyn Clock>,
    /// The last good reading, in nanoseconds.
    last: std::sync::atomic::AtomicU64,
}

impl GuardedClock {
    pub(crate) fn new(clock: std::sync::Arc<dyn Clock>) -> Self {
        GuardedClock {
            clock,
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The clock's reading, or (if `now` panicked) the last good one, to within
    /// a millisecond.
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.clock.now())) {
            Ok(t) => {
                // Kept to the millisecond: the fallback need not be exact, and a
                // write per reading would bounce this line between handler threads.
                let nanos = duration_to_nanos(t);
                if nanos.saturating_sub(self.last.load(Relaxed)) >= 1_000_000 {
                    self.last.fetch_max(nanos, Relaxed);
                }
                t
            }
            Err(p) => {
                crate::unwind::drop_quietly(p);
                Duration::from_nanos(self.last.load(Relaxed))
            }
        }
    }
}

/// The process-wide origin of every [`SystemClock`]: fixed on first use, so the
/// readings of all system clocks in a process are comparable.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The real, monotonic clock ([`Instant`]); its origin is the first time any
/// `SystemClock` was created or read in this process.
///
/// # Examples
/// ```
/// use ringbus::resilience::{Clock, SystemClock};
/// let clock = SystemClock::new();
/// let a = clock.now();
/// let b = SystemClock::default().now(); // same origin
/// assert!(b >= a);
/// ```
#[derive(Copy, Clone, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// The system clock.
    pub fn new() -> Self {
        SystemClock {
            origin: *ORIGIN.get_or_init(Instant::now),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A waker, shared so the list can be copied out of the lock before the calls
/// (a waker may then use the clock, even register another waker). A plain `std`
/// `Arc`: it only counts references to an immutable waker, no protocol state.
type Waker = std::sync::Arc<ClockWaker>;

struct ManualInner {
    /// Nanoseconds since the origin, `0 ..= u64::MAX` (about 584 years; moves
    /// saturate there). Only ever increases.
    nanos: AtomicU64,
    /// The wakers registered and not gone (as of the last registration or jump),
    /// in registration order.
    wakers: Mutex<Vec<Waker>>,
}

/// A clock that moves only when told to: the test clock.
///
/// Starts at zero. Clones are handles to the same clock. After every change
/// ([`advance`](ManualClock::advance), [`set`](ManualClock::set)) it calls every
/// registered waker, on the calling thread, outside its lock. Wakers of buses that
/// have stopped are dropped (at the next registration or jump), so one clock can
/// serve any number of buses over time.
///
/// # Examples
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use std::time::Duration;
/// use ringbus::resilience::{Clock, ClockWaker, ManualClock};
///
/// let clock = ManualClock::new();
/// let wakes = Arc::new(AtomicUsize::new(0));
/// let w = wakes.clone();
/// clock.set_waker(ClockWaker::new(move || { w.fetch_add(1, Ordering::SeqCst); }));
///
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Duration::from_secs(2));
/// assert_eq!(wakes.load(Ordering::SeqCst), 1);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                nanos: AtomicU64::new(0),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the clock forward by `d` (saturating at `u64::MAX` nanoseconds), then
    /// calls every waker. Advancing by zero still calls the wakers.
    pub fn advance(&self, d: Duration) {
        let by = duration_to_nanos(d);
        // A CAS loop rather than `fetch_add`: the sum must saturate, not wrap.
        let mut cur = self.inner.nanos.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_add(by);
            match self.inner.nanos.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.wake();
    }

    /// Sets the clock to `t`, then calls every waker.
    ///
    /// # Panics
    /// If `t` is earlier than the current time: the clock is monotonic.
    #[track_caller]
    pub fn set(&self, t: Duration) {
        let to = duration_to_nanos(t);
        let mut cur = self.inner.nanos.load(Ordering::Acquire);
        loop {
            assert!(
                to >= cur,
                "ManualClock::set: time must not go backwards (now {:?}, set to {:?})",
                Duration::from_nanos(cur),
                t
            );
            match self.inner.nanos.compare_exchange_weak(
                cur,
                to,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.wake();
    }

    /// How many registered wakers are not gone.
    pub fn waker_count(&self) -> usize {
        self.with_wakers(|w| {
            w.retain(|w| !w.is_gone());
            w.len()
        })
    }

    fn with_wakers<R>(&self, f: impl FnOnce(&mut Vec<Waker>) -> R) -> R {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut wakers)
    }

    fn wake(&self) {
        let wakers: Vec<Waker> = self.with_wakers(|w| w.clone());
        let mut gone = false;
        for waker in &wakers {
            gone |= !waker.wake();
        }
        if gone {
            self.with_wakers(|w| w.retain(|w| !w.is_gone()));
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.inner.nanos.load(Ordering::Acquire))
    }

    fn set_waker(&self, waker: ClockWaker) {
        self.with_wakers(|w| {
            w.retain(|w| !w.is_gone());
            w.push(std::sync::Arc::new(waker));
        });
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .field("wakers", &self.waker_count())
            .finish()
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counter(clock: &ManualClock) -> std::sync::Arc<AtomicUsize> {
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        clock.set_waker(ClockWaker::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        n
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), Duration::ZERO);
        let other = clock.clone();
        other.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Duration::from_millis(250));
        clock.set(Duration::from_secs(3));
        assert_eq!(other.now(), Duration::from_secs(3));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX), "saturates");
    }

    #[test]
    fn every_registered_waker_is_called_after_every_change() {
        let clock = ManualClock::new();
        let a = counter(&clock);
        let b = counter(&clock);
        assert_eq!(clock.waker_count(), 2);
        clock.advance(Duration::from_secs(1));
        clock.set(Duration::from_secs(5));
        assert_eq!(a.load(Ordering::SeqCst), 2);
        assert_eq!(b.load(Ordering::SeqCst), 2, "not only the last waker");
    }

    #[test]
    fn a_waker_sees_the_new_time_and_may_use_the_clock() {
        let clock = ManualClock::new();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        // The waker holds the clock, which holds the waker: the test breaks that
        // cycle at the end (`Option::take`), so nothing leaks (Miri checks).
        let handle = std::sync::Arc::new(Mutex::new(Some(clock.clone())));
        let (c, s) = (handle.clone(), seen.clone());
        clock.set_waker(ClockWaker::new(move || {
            let c = c.lock().unwrap().clone();
            if let Some(c) = c {
                s.lock().unwrap().push(c.now());
                // Re-entrant use of the clock from a waker must not deadlock.
                let _ = c.waker_count();
            }
        }));
        clock.advance(Duration::from_millis(7));
        assert_eq!(*seen.lock().unwrap(), vec![Duration::from_millis(7)]);
        handle.lock().unwrap().take();
    }

    #[test]
    fn concurrent_advances_add_up_and_each_wakes() {
        const THREADS: u64 = 4;
        const EACH: u64 = if cfg!(miri) { 10 } else { 1_000 };
        let clock = ManualClock::new();
        let wakes = counter(&clock);
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        clock.advance(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(clock.now(), Duration::from_millis(THREADS * EACH));
        assert_eq!(wakes.load(Ordering::SeqCst) as u64, THREADS * EACH);
    }

    #[test]
    #[should_panic(expected = "must not go backwards")]
    fn set_backwards_panics() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(2));
        clock.set(Duration::from_secs(1));
    }

    #[test]
    fn system_clock_is_monotonic_and_shares_its_origin() {
        let a = SystemClock::new();
        let t1 = a.now();
        let b = SystemClock::default();
        let t2 = b.now();
        let t3 = a.now();
        assert!(t1 <= t2 && t2 <= t3);
        // Ignoring a waker is allowed for a clock that never jumps.
        a.set_waker(ClockWaker::new(|| {
            panic!("the system clock never calls wakers")
        }));
    }

    #[test]
    fn wakers_of_gone_targets_are_dropped() {
        struct Target(AtomicUsize);
        impl Wake for Target {
            fn wake(&self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let clock = ManualClock::new();
        let live = std::sync::Arc::new(Target(AtomicUsize::new(0)));
        let weak: std::sync::Weak<dyn Wake> = std::sync::Arc::downgrade(&live) as _;
        clock.set_waker(ClockWaker::weak(weak));
        for _ in 0..3 {
            let gone = std::sync::Arc::new(Target(AtomicUsize::new(0)));
            let weak: std::sync::Weak<dyn Wake> = std::sync::Arc::downgrade(&gone) as _;
            clock.set_waker(ClockWaker::weak(weak));
            drop(gone);
        }
        assert_eq!(
            clock.waker_count(),
            1,
            "only the live target's waker is kept"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(live.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_clock_falls_back_to_its_last_reading() {
        struct Flaky(ManualClock, AtomicUsize);
        impl Clock for Flaky {
            fn now(&self) -> Duration {
                if self.1.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic!("clock broke");
                }
                self.0.now()
            }
        }
        let manual = ManualClock::new();
        manual.advance(Duration::from_secs(4));
        let guarded = GuardedClock::new(std::sync::Arc::new(Flaky(manual, AtomicUsize::new(0))));
        assert_eq!(guarded.now(), Duration::from_secs(4));
        assert_eq!(
            guarded.now(),
            Duration::from_secs(4),
            "the panic is contained"
        );
    }

    #[test]
    fn clocks_work_behind_arc_dyn() {
        let manual = ManualClock::new();
        let dynamic: std::sync::Arc<dyn Clock> = std::sync::Arc::new(manual.clone());
        manual.advance(Duration::from_secs(9));
        assert_eq!(dynamic.now(), Duration::from_secs(9));
    }
}
