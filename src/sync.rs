//! The one place that names atomics, `UnsafeCell`, locks, parking and spin hints.
//!
//! Under `cfg(loom)` every item here comes from [loom] so that the models in
//! `loom-tests/` explore every interleaving of the real protocols; otherwise from
//! `std`. Every atomic that takes part in a protocol comes from here; only
//! statistics counters (Relaxed, never used to order other memory) use
//! `std::sync::atomic` directly.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use std::thread::{current as current_thread, park, Thread};

    /// A spin-loop hint (`PAUSE` on x86).
    #[inline(always)]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }

    /// Gives up the rest of this thread's time slice.
    #[inline]
    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }

    /// Parks the current thread for at most `dur` (spurious wake-ups allowed).
    #[inline]
    pub(crate) fn park_timeout(dur: std::time::Duration) {
        std::thread::park_timeout(dur);
    }

    /// `UnsafeCell` with loom's closure-based API, so call sites read the same
    /// under both configurations.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use loom::thread::{current as current_thread, park, Thread};

    /// Under loom a spin is a yield, so the model checker can schedule the
    /// thread that will end the spin.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }

    /// Loom has no timed park: a timed park is a yield (a spurious wake-up).
    pub(crate) fn park_timeout(_dur: std::time::Duration) {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;
