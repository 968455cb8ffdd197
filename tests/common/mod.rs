//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbus::{Event, EventType, HandlerError, Source};

/// Waits until `cond` holds, or panics after `secs` seconds (no fixed sleeps).
#[track_caller]
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::yield_now();
    }
}

/// A shared log of what a handler saw.
pub type Log<T> = Arc<Mutex<Vec<T>>>;

pub fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

/// A handler that appends `f(event)` to `log`.
pub fn recorder<P, T: Send + 'static>(
    log: &Log<T>,
    f: impl Fn(&Event<P>) -> T + Send + 'static,
) -> impl FnMut(&Event<P>) -> Result<(), HandlerError> + Send + 'static {
    let log = log.clone();
    move |e| {
        log.lock().unwrap().push(f(e));
        Ok(())
    }
}

pub fn event<P>(ty: &str, data: P) -> Event<P> {
    Event::new(EventType::new(ty), Source::new("test"), data)
}
