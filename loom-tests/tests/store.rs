//! Loom models of the in-memory store's visibility watermark: no lost wake-up for
//! a live reader, and nothing beyond the watermark is read before it is written.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use ringbus::loom_api::Watermark;

/// A reader waiting past the head wakes when one append commits (a lost wake-up
/// would be a deadlock, which loom reports), and sees the head it waited for.
#[test]
fn waiter_wakes_on_commit() {
    loom::model(|| {
        let w = Arc::new(Watermark::new());
        let w2 = w.clone();
        let writer = thread::spawn(move || w2.publish(1));
        assert_eq!(w.wait_past(None), Some(0));
        writer.join().unwrap();
    });
}

/// Two appends, two readers waiting past different heads: both wake with a head
/// past what they asked for.
#[test]
fn two_waiters_two_commits() {
    loom::model(|| {
        let w = Arc::new(Watermark::new());
        let w2 = w.clone();
        let writer = thread::spawn(move || {
            w2.publish(1);
            w2.publish(2);
        });
        let w3 = w.clone();
        let reader = thread::spawn(move || w3.wait_past(Some(0)));
        assert!(w.wait_past(None) >= Some(0));
        assert_eq!(reader.join().unwrap(), Some(1));
        writer.join().unwrap();
    });
}

/// The entry below the watermark is written before the watermark covers it: a
/// reader that sees `visible() > 0` reads the entry without a data race (loom's
/// causality check fails the model otherwise) and sees its value.
#[test]
fn nothing_is_read_beyond_the_watermark() {
    loom::model(|| {
        let w = Arc::new(Watermark::new());
        let entry = Arc::new(UnsafeCell::new(0u64));
        let (w2, e2) = (w.clone(), entry.clone());
        let writer = thread::spawn(move || {
            // SAFETY: no reader touches the entry before the watermark covers it.
            e2.with_mut(|p| unsafe { *p = 42 });
            w2.publish(1);
        });
        if w.visible() > 0 {
            // SAFETY: position 0 is committed; the writer is done with it.
            assert_eq!(entry.with(|p| unsafe { *p }), 42);
        }
        writer.join().unwrap();
    });
}
