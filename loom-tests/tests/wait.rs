//! Loom model of the blocking wait strategy: no lost wake-up.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use ringbus::loom_api::Signal;

/// The waiter registers, fences and re-checks before parking; the notifier writes,
/// fences and only then looks for sleepers. Loom explores every interleaving and
/// would report a deadlock if the waiter could park with nobody left to wake it.
#[test]
fn park_wake_no_lost_wakeup() {
    loom::model(|| {
        let s = Arc::new(Signal::new());
        let s2 = s.clone();
        let notifier = thread::spawn(move || s2.set());
        s.wait();
        notifier.join().unwrap();
    });
}

/// Two waiters on one signal (producers waiting for space): both wake.
#[test]
fn park_wake_two_waiters() {
    loom::model(|| {
        let s = Arc::new(Signal::new());
        let s2 = s.clone();
        let waiter = thread::spawn(move || s2.wait());
        let s3 = s.clone();
        let notifier = thread::spawn(move || s3.set());
        s.wait();
        waiter.join().unwrap();
        notifier.join().unwrap();
    });
}
