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
pub trait Clock: Send + Sync + 'static {
    /// The current time, as a duration since this clock's fixed origin.
    fn now(&self) -> Duration;

    /// Registers `waker`, to be called after every jump of this clock (from the
    /// thread that moved it). Clocks that only move with real time ignore it.
    fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        drop(waker);
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        (**self).set_waker(waker)
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        (**self).set_waker(waker)
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
/// `Arc`: it only counts references to an immutable closure, no protocol state.
type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

struct ManualInner {
    /// Nanoseconds since the origin, `0 ..= u64::MAX` (about 584 years; moves
    /// saturate there). Only ever increases.
    nanos: AtomicU64,
    /// Every waker registered so far, in registration order.
    wakers: Mutex<Vec<Waker>>,
}

/// A clock that moves only when told to: the test clock.
///
/// Starts at zero. Clones are handles to the same clock. After every change
/// ([`advance`](ManualClock::advance), [`set`](ManualClock::set)) it calls every
/// registered waker, on the calling thread, outside its lock.
///
/// # Examples
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use std::time::Duration;
/// use ringbus::resilience::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let wakes = Arc::new(AtomicUsize::new(0));
/// let w = wakes.clone();
/// clock.set_waker(Box::new(move || { w.fetch_add(1, Ordering::SeqCst); }));
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

    /// How many wakers are registered.
    pub fn waker_count(&self) -> usize {
        self.with_wakers(|w| w.len())
    }

    fn with_wakers<R>(&self, f: impl FnOnce(&mut Vec<Waker>) -> R) -> R {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut wakers)
    }

    fn wake(&self) {
        let wakers: Vec<Waker> = self.with_wakers(|w| w.clone());
        for waker in wakers {
            waker();
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

    fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        self.with_wakers(|w| w.push(std::sync::Arc::from(waker)));
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
        clock.set_waker(Box::new(move || {
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
        let (c, s) = (clock.clone(), seen.clone());
        clock.set_waker(Box::new(move || {
            s.lock().unwrap().push(c.now());
            // Re-entrant use of the clock from a waker must not deadlock.
            let _ = c.waker_count();
        }));
        clock.advance(Duration::from_millis(7));
        assert_eq!(*seen.lock().unwrap(), vec![Duration::from_millis(7)]);
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
        a.set_waker(Box::new(|| panic!("the system clock never calls wakers")));
    }

    #[test]
    fn clocks_work_behind_arc_dyn() {
        let manual = ManualClock::new();
        let dynamic: std::sync::Arc<dyn Clock> = std::sync::Arc::new(manual.clone());
        manual.advance(Duration::from_secs(9));
        assert_eq!(dynamic.now(), Duration::from_secs(9));
    }
}
