//! Wait strategies, and the [`Signal`] that lets a waiter sleep without the other
//! side paying for it.
//!
//! ## The sleep/wake protocol
//!
//! A waiter registers (pushes its `Thread`, increments `sleepers`), issues a SeqCst
//! fence, then re-checks its condition before each `park`. A notifier changes the
//! state with an atomic write, issues a SeqCst fence, then loads `sleepers`, and only
//! if it is non-zero takes the lock and unparks. By the fence rules of the C++20
//! model (which Rust follows), of the two fences the one later in the single total
//! order S sees the other side's write: either the waiter's re-check sees the new
//! state, or the notifier sees `sleepers > 0` and unparks it. An `unpark` that comes
//! before the `park` leaves a token, so the park returns at once. Hence no lost
//! wake-up, and a notifier whose peer is busy pays one fence and one load — no lock,
//! no syscall. The loom model `loom-tests/tests/wait.rs` checks this.

use std::time::Instant;

use crate::sync::{fence, park, Mutex, Ordering, Thread};
use crate::sync::{park_timeout, spin_loop, yield_now, AtomicUsize};

/// How a thread waits — the dispatcher for events, a producer for free slots.
///
/// On a machine with fewer cores than spinning threads, spinning steals the time
/// the other side needs; [`WaitStrategy::Blocking`] is the default for that reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Spin on the condition with a CPU pause hint. Lowest latency; burns a core
    /// per waiting thread, even while idle.
    BusySpin,
    /// Spin briefly, then yield the time slice between checks. Low latency, frees
    /// the core for other runnable threads, still ~100 % CPU when idle.
    Yielding,
    /// Spin briefly, yield a few times, then park until notified. The notifying
    /// side pays one fence and one load when nobody sleeps. Idles at ~0 % CPU.
    /// Default.
    #[default]
    Blocking,
}

impl WaitStrategy {
    /// Whether a waiter with this strategy may park (sleep until notified). Only
    /// then must the other side notify after changing the state, and only then
    /// does a full ring make producers wait for a quarter of it rather than one
    /// slot (fewer wake-ups). The one place that says which strategies sleep.
    #[inline]
    pub(crate) fn parks(self) -> bool {
        matches!(self, WaitStrategy::Blocking)
    }
}

/// Spins before a `Yielding` or `Blocking` waiter starts yielding. (Under loom a
/// spin is a scheduling point: one is enough to explore both paths.)
const SPIN_LIMIT: u32 = if cfg!(loom) { 1 } else { 64 };
/// Yields before a `Blocking` waiter parks. Few, as crossbeam-channel's `Backoff`
/// does: a waiter that kept yielding for tens of microseconds (as an earlier
/// version did, 50 µs) never parked at 100 k – 1 M events/s and burned a core —
/// 2× the CPU per event of crossbeam-channel at 1 M events/s (issue 14). Parking
/// sooner costs the notifier a futex wake-up (microseconds) when the waiter slept.
const YIELD_LIMIT: u32 = if cfg!(loom) { 0 } else { 4 };

/// Why a wait ended without its condition becoming true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// A set of threads sleeping until some shared state changes.
#[derive(Debug)]
pub(crate) struct Signal {
    /// How many threads are registered to sleep: in range `0 ..= #threads`.
    sleepers: AtomicUsize,
    /// The registered threads. Locked only by sleepers (register, deregister) and
    /// by a notifier that saw `sleepers > 0`.
    waiters: Mutex<Vec<Thread>>,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Signal {
            sleepers: AtomicUsize::new(0),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Wakes every sleeper. Call after the atomic write that changed the state.
    #[inline]
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// [`Signal::notify`] for a notifier whose state change was a SeqCst
    /// read-modify-write: a SeqCst RMW followed by a SeqCst load of `sleepers` is
    /// already ordered against the sleeper's fence (C++20 [atomics.order]: a load
    /// sequenced after a SeqCst fence that follows the RMW in S sees it), so no
    /// fence is needed — on x86 the load is a plain `mov` instead of an `mfence`.
    /// Loom does not model SeqCst accesses, only fences, so under loom this is
    /// `notify`.
    #[inline]
    pub(crate) fn notify_after_seqcst_rmw(&self) {
        #[cfg(loom)]
        self.notify();
        #[cfg(not(loom))]
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for t in waiters.iter() {
            t.unpark();
        }
    }

    /// Waits, with `strategy`, until `ready()` is true or `deadline` passes.
    ///
    /// `ready` is called many times and must only read atomics.
    #[inline]
    pub(crate) fn wait_until(
        &self,
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), TimedOut> {
        let mut step = 0u32;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(d) = deadline {
                // Reading the clock only every few spins keeps the spin tight.
                if step.is_multiple_of(16) && Instant::now() >= d {
                    return Err(TimedOut);
                }
            }
            match strategy {
                WaitStrategy::BusySpin => spin_loop(),
                WaitStrategy::Yielding => {
                    if step < SPIN_LIMIT {
                        spin_loop()
                    } else {
                        yield_now()
                    }
                }
                WaitStrategy::Blocking => {
                    if step < SPIN_LIMIT {
                        spin_loop()
                    } else if step < SPIN_LIMIT + YIELD_LIMIT {
                        yield_now()
                    } else {
                        return self.sleep_until(deadline, ready);
                    }
                }
            }
            step = step.wrapping_add(1);
        }
    }

    #[cold]
    fn sleep_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), TimedOut> {
        let me = crate::sync::current_thread();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me.clone());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            fence(Ordering::SeqCst);
            if ready() {
                break Ok(());
            }
            match deadline {
                None => park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Err(TimedOut);
                    }
                    park_timeout(d - now);
                }
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waiters.iter().position(|t| t.id() == me.id()) {
            waiters.swap_remove(i);
        }
        result
    }
}
