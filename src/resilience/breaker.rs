//! Circuit breakers: stop calling a handler that keeps failing, try it again after
//! a cool-down, and resume when it works.
//!
//! The classic three-state breaker (Nygard, *Release It!*, 2007, ch. 5). A
//! breaker is plain data driven by the dispatcher, which owns it together with the
//! handler: it asks [`CircuitBreaker::allow`] before each call and reports the
//! outcome with [`on_success`](CircuitBreaker::on_success) or
//! [`on_failure`](CircuitBreaker::on_failure). Time comes in as an argument (a
//! [`Clock`](super::Clock) reading), so a test drives the cool-down with a
//! [`ManualClock`](super::ManualClock).
//!
//! ```text
//!            trip condition                  now >= opened_at + cool_down
//!   Closed ─────────────────▶ Open ──────────────────────────────▶ HalfOpen
//!     ▲                        ▲          (on the next `allow`)        │
//!     │                        └──────────── any trial fails ──────────┤
//!     └──────────────────── half_open_trials trials succeed ───────────┘
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use super::error::{ResilienceConfigError, ResilienceConfigErrorKind as Kind};

/// The largest failure-ratio window, in calls.
pub const MAX_WINDOW: u32 = 1 << 16;

/// When a closed breaker opens.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Trip {
    /// After `n` failures in a row (`n >= 1`).
    Consecutive(u32),
    /// When, among the last `window` calls (at least `min_calls` of them), the
    /// share of failures reaches `ratio` (`0 < ratio <= 1`).
    Ratio {
        ratio: f64,
        window: u32,
        min_calls: u32,
    },
}

/// When a circuit breaker opens, how long it stays open, and how many trial calls
/// decide whether it closes again.
///
/// ## Invalid values
/// The plain constructors never panic. Given values that cannot work (a
/// threshold or window of 0, a ratio outside `(0, 1]`, …) they return an
/// *invalid* configuration that keeps the values and says what is wrong through
/// [`validate`](BreakerConfig::validate);
/// [`Bus::subscribe_with`](crate::Bus::subscribe_with) refuses it with
/// [`SubscribeError::InvalidCircuitBreaker`](crate::SubscribeError::InvalidCircuitBreaker),
/// and a [`CircuitBreaker`] made from it never opens. The `try_*` constructors
/// return the error at once instead.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ringbus::resilience::BreakerConfig;
///
/// let strict = BreakerConfig::consecutive_failures(5, Duration::from_secs(30));
/// let lenient = BreakerConfig::failure_ratio(0.5, 20, 10, Duration::from_secs(30))
///     .half_open_trials(3);
/// assert_eq!(lenient.trials(), 3);
/// assert!(BreakerConfig::try_failure_ratio(1.5, 20, 10, Duration::from_secs(1)).is_err());
/// # let _ = strict;
/// ```
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    trip: Trip,
    cool_down: Duration,
    /// `1 ..= u32::MAX` (0 only in an invalid configuration).
    half_open_trials: u32,
}

impl BreakerConfig {
    /// Opens after `n` consecutive failures; stays open for `cool_down`.
    ///
    /// An `n` of 0 gives an [invalid](BreakerConfig#invalid-values)
    /// configuration; [`try_consecutive_failures`](BreakerConfig::try_consecutive_failures)
    /// returns the error.
    pub fn consecutive_failures(n: u32, cool_down: Duration) -> Self {
        BreakerConfig {
            trip: Trip::Consecutive(n),
            cool_down,
            half_open_trials: 1,
        }
    }

    /// [`consecutive_failures`](BreakerConfig::consecutive_failures), or an error if
    /// `n` is 0.
    pub fn try_consecutive_failures(
        n: u32,
        cool_down: Duration,
    ) -> Result<Self, ResilienceConfigError> {
        let config = BreakerConfig::consecutive_failures(n, cool_down);
        config.validate()?;
        Ok(config)
    }

    /// Opens when, among the last `window` calls, at least `min_calls` calls were
    /// made and the share that failed is `ratio` or more; stays open for
    /// `cool_down`. The check runs after each failure. A `min_calls` of 0 means 1.
    ///
    /// Values [`try_failure_ratio`](BreakerConfig::try_failure_ratio) rejects give
    /// an [invalid](BreakerConfig#invalid-values) configuration.
    pub fn failure_ratio(ratio: f64, window: u32, min_calls: u32, cool_down: Duration) -> Self {
        BreakerConfig {
            trip: Trip::Ratio {
                ratio,
                window,
                min_calls: min_calls.max(1),
            },
            cool_down,
            half_open_trials: 1,
        }
    }

    /// [`failure_ratio`](BreakerConfig::failure_ratio), or an error if `ratio` is
    /// NaN or outside `(0, 1]`, `window` is 0 or above [`MAX_WINDOW`], or
    /// `min_calls` exceeds `window`.
    pub fn try_failure_ratio(
        ratio: f64,
        window: u32,
        min_calls: u32,
        cool_down: Duration,
    ) -> Result<Self, ResilienceConfigError> {
        let config = BreakerConfig::failure_ratio(ratio, window, min_calls, cool_down);
        config.validate()?;
        Ok(config)
    }

    /// `Ok` for a configuration that can work; for an
    /// [invalid](BreakerConfig#invalid-values) one, what is wrong with its values.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ringbus::resilience::{BreakerConfig, ResilienceConfigErrorKind};
    ///
    /// let config = BreakerConfig::consecutive_failures(0, Duration::from_secs(1));
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.kind(), &ResilienceConfigErrorKind::ZeroFailureThreshold);
    /// ```
    pub fn validate(&self) -> Result<(), ResilienceConfigError> {
        let err = |kind| Err(ResilienceConfigError::new(kind));
        match self.trip {
            Trip::Consecutive(0) => return err(Kind::ZeroFailureThreshold),
            Trip::Consecutive(_) => {}
            Trip::Ratio {
                ratio,
                window,
                min_calls,
            } => {
                if ratio.is_nan() || ratio <= 0.0 || ratio > 1.0 {
                    return err(Kind::InvalidRatio(ratio));
                }
                if window == 0 {
                    return err(Kind::ZeroWindow);
                }
                if window > MAX_WINDOW {
                    return err(Kind::WindowTooLarge(window));
                }
                if min_calls > window {
                    return err(Kind::MinCallsAboveWindow { min_calls, window });
                }
            }
        }
        if self.half_open_trials == 0 {
            return err(Kind::ZeroHalfOpenTrials);
        }
        Ok(())
    }

    /// How many trial calls a half-open breaker lets through (default 1). All
    /// must succeed for it to close; any failure re-opens it.
    ///
    /// An `n` of 0 gives an [invalid](BreakerConfig#invalid-values)
    /// configuration; [`try_half_open_trials`](BreakerConfig::try_half_open_trials)
    /// returns the error.
    pub fn half_open_trials(mut self, n: u32) -> Self {
        self.half_open_trials = n;
        self
    }

    /// [`half_open_trials`](BreakerConfig::half_open_trials), or an error if `n` is 0
    /// (or this configuration was invalid already).
    pub fn try_half_open_trials(self, n: u32) -> Result<Self, ResilienceConfigError> {
        let config = self.half_open_trials(n);
        config.validate()?;
        Ok(config)
    }

    /// How long the breaker stays open before it lets a trial through.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// The number of half-open trial calls.
    pub fn trials(&self) -> u32 {
        self.half_open_trials
    }
}

/// Where a circuit breaker is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    #[default]
    Closed,
    /// The handler is not called until the cool-down has passed.
    Open,
    /// A limited number of trial calls decide between `Closed` and `Open`.
    HalfOpen,
}

impl BreakerState {
    /// The state as a gauge value: 0 closed, 1 half-open, 2 open (the Prometheus
    /// rendering uses it).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, with the clock time at which it happened and the lane whose
/// breaker changed.
///
/// Each lane of a partitioned subscription has its own breaker, so one lane can
/// be open while the others are closed; the bus's breaker listener
/// ([`BusBuilder::on_breaker_change`](crate::BusBuilder::on_breaker_change)) gets
/// the lane here, next to the subscription and handler name it is called with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerTransition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// When (the `now` passed to the call that made the change).
    pub at: Duration,
    /// The lane of the handler instance whose breaker changed: 0 for a subscription
    /// that is not partitioned. A [`CircuitBreaker`] used on its own does not know
    /// a lane and reports 0; the bus fills in the lane before calling the listener.
    pub lane: u32,
}

/// What the breaker knows about its state.
#[derive(Clone, Debug)]
enum Phase {
    Closed,
    /// Open since `opened_at`; reopens (half-opens) at `opened_at + cool_down`,
    /// saturating at `Duration::MAX` (never).
    Open {
        reopens_at: Duration,
    },
    /// `started` trials allowed, `succeeded` of them reported successful;
    /// `succeeded <= started <= half_open_trials`.
    HalfOpen {
        started: u32,
        succeeded: u32,
    },
}

/// One handler's circuit breaker: a state machine over `Closed`, `Open` and
/// `HalfOpen`, driven by the caller.
///
/// Protocol: before a call, [`allow(now)`](CircuitBreaker::allow); if it says
/// `true`, make the call and report it with exactly one
/// [`on_success`](CircuitBreaker::on_success) or [`on_failure`](CircuitBreaker::on_failure).
/// If it says `false`, do not call the handler (and do not count anything: the
/// event waits). Calls run one at a time, so "in flight" means allowed but not
/// yet reported.
///
/// # Transitions
/// `on_success` and `on_failure` return the transition they caused. `allow` can
/// cause one too (`Open → HalfOpen` when the cool-down has passed); it returns
/// only the permission and keeps that transition until
/// [`take_transition`](CircuitBreaker::take_transition) collects it — call it after
/// every `allow` that may have changed the state. A later pending transition
/// replaces an uncollected one.
///
/// Reports while `Open` (there should be none, as nothing was allowed) are ignored.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ringbus::resilience::{BreakerConfig, BreakerState, CircuitBreaker};
///
/// let secs = Duration::from_secs;
/// let mut b = CircuitBreaker::new(BreakerConfig::consecutive_failures(2, secs(10)));
/// assert!(b.allow(secs(0)));
/// assert_eq!(b.on_failure(secs(0)), None);
/// assert!(b.allow(secs(1)));
/// let opened = b.on_failure(secs(1)).unwrap();
/// assert_eq!((opened.from, opened.to), (BreakerState::Closed, BreakerState::Open));
/// assert_eq!(b.reopens_at(), Some(secs(11)));
///
/// assert!(!b.allow(secs(5)));          // open: the handler is skipped
/// assert!(b.allow(secs(11)));          // cool-down over: one trial
/// assert_eq!(b.take_transition().unwrap().to, BreakerState::HalfOpen);
/// assert_eq!(b.on_success(secs(11)).unwrap().to, BreakerState::Closed);
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Phase,
    /// Failures since the last success (counted while closed).
    consecutive_failures: u32,
    /// Outcomes of the last calls while closed, oldest first, `true` = failed;
    /// at most `window` entries (empty for a consecutive-failures breaker).
    recent: VecDeque<bool>,
    /// Number of `true` entries in `recent`.
    recent_failures: u32,
    /// A transition made by `allow`, not yet taken.
    pending: Option<BreakerTransition>,
    /// Whether `config` is valid; an invalid one never trips (and keeps no window).
    valid: bool,
}

impl CircuitBreaker {
    /// A closed breaker. One made from an [invalid](BreakerConfig#invalid-values)
    /// configuration never opens.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            valid: config.validate().is_ok(),
            config,
            phase: Phase::Closed,
            consecutive_failures: 0,
            recent: VecDeque::new(),
            recent_failures: 0,
            pending: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. (An open breaker whose cool-down has passed stays
    /// `Open` until the next [`allow`](CircuitBreaker::allow).)
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When an open breaker will let a trial through (`opened_at + cool_down`);
    /// `None` unless `Open`. The dispatcher can set its timer to it.
    pub fn reopens_at(&self) -> Option<Duration> {
        match self.phase {
            Phase::Open { reopens_at } => Some(reopens_at),
            _ => None,
        }
    }

    /// Failures in a row while closed (reset by a success and by every state change).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// For a failure-ratio breaker: `(calls, failures)` in the current window.
    pub fn window(&self) -> (u32, u32) {
        (self.recent.len() as u32, self.recent_failures)
    }

    /// May the handler be called now? See the type's docs for the protocol; an
    /// `Open → HalfOpen` change is kept for [`take_transition`](CircuitBreaker::take_transition).
    pub fn allow(&mut self, now: Duration) -> bool {
        match &mut self.phase {
            Phase::Closed => true,
            Phase::Open { reopens_at } => {
                if now < *reopens_at {
                    return false;
                }
                self.phase = Phase::HalfOpen {
                    started: 1,
                    succeeded: 0,
                };
                self.pending = Some(BreakerTransition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    at: now,
                    lane: 0,
                });
                true
            }
            Phase::HalfOpen { started, .. } => {
                if *started < self.config.half_open_trials {
                    *started += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The transition the last [`allow`](CircuitBreaker::allow) calls made, if
    /// any, once.
    pub fn take_transition(&mut self) -> Option<BreakerTransition> {
        self.pending.take()
    }

    /// Reports a successful call. Returns `HalfOpen → Closed` when this was the
    /// last trial needed.
    pub fn on_success(&mut self, now: Duration) -> Option<BreakerTransition> {
        match &mut self.phase {
            Phase::Closed => {
                self.consecutive_failures = 0;
                self.record(false);
                None
            }
            Phase::Open { .. } => None,
            Phase::HalfOpen { started, succeeded } => {
                *succeeded += 1;
                // A report without an `allow` still counts as a trial.
                *started = (*started).max(*succeeded);
                if *succeeded >= self.config.half_open_trials {
                    Some(self.move_to(Phase::Closed, now))
                } else {
                    None
                }
            }
        }
    }

    /// Reports a failed call (an error or a panic). Returns `Closed → Open` when
    /// the trip condition is met, `HalfOpen → Open` for any failed trial.
    pub fn on_failure(&mut self, now: Duration) -> Option<BreakerTransition> {
        match self.phase {
            Phase::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.record(true);
                if self.tripped() {
                    Some(self.open(now))
                } else {
                    None
                }
            }
            Phase::Open { .. } => None,
            Phase::HalfOpen { .. } => Some(self.open(now)),
        }
    }

    /// Pushes one closed-state outcome into the ratio window.
    fn record(&mut self, failed: bool) {
        let Trip::Ratio { window, .. } = self.config.trip else {
            return;
        };
        if !self.valid {
            return;
        }
        if self.recent.len() == window as usize {
            if let Some(true) = self.recent.pop_front() {
                self.recent_failures -= 1;
            }
        }
        self.recent.push_back(failed);
        self.recent_failures += u32::from(failed);
    }

    fn tripped(&self) -> bool {
        if !self.valid {
            return false;
        }
        match self.config.trip {
            Trip::Consecutive(n) => self.consecutive_failures >= n,
            Trip::Ratio {
                ratio, min_calls, ..
            } => {
                let calls = self.recent.len() as u32;
                calls >= min_calls && f64::from(self.recent_failures) >= ratio * f64::from(calls)
            }
        }
    }

    fn open(&mut self, now: Duration) -> BreakerTransition {
        let reopens_at = now.saturating_add(self.config.cool_down);
        self.move_to(Phase::Open { reopens_at }, now)
    }

    /// Changes phase, clears the counters, and describes the change.
    fn move_to(&mut self, phase: Phase, now: Duration) -> BreakerTransition {
        let from = self.state();
        self.phase = phase;
        self.consecutive_failures = 0;
        self.recent.clear();
        self.recent_failures = 0;
        BreakerTransition {
            from,
            to: self.state(),
            at: now,
            lane: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::{Clock, ManualClock};
    use BreakerState::{Closed, HalfOpen, Open};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn tr(from: BreakerState, to: BreakerState, at: Duration) -> Option<BreakerTransition> {
        Some(BreakerTransition {
            from,
            to,
            at,
            lane: 0,
        })
    }

    /// One allowed call with the given outcome, at the clock's time.
    fn call(b: &mut CircuitBreaker, clock: &ManualClock, ok: bool) -> Option<BreakerTransition> {
        assert!(b.allow(clock.now()), "call not allowed in {:?}", b.state());
        if ok {
            b.on_success(clock.now())
        } else {
            b.on_failure(clock.now())
        }
    }

    #[test]
    fn consecutive_failures_timeline() {
        let clock = ManualClock::new();
        let mut b = CircuitBreaker::new(BreakerConfig::consecutive_failures(3, secs(10)));
        assert_eq!(b.state(), Closed);
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(
            call(&mut b, &clock, true),
            None,
            "a success resets the streak"
        );
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(call(&mut b, &clock, false), None);
        clock.advance(secs(1));
        assert_eq!(call(&mut b, &clock, false), tr(Closed, Open, secs(1)));
        assert_eq!(b.state(), Open);
        assert_eq!(b.reopens_at(), Some(secs(11)));

        // Open: nothing goes through until the cool-down has passed.
        clock.set(Duration::from_millis(10_999));
        assert!(!b.allow(clock.now()));
        assert_eq!(b.take_transition(), None);
        assert_eq!(b.state(), Open);

        // Half-open: one trial; it fails and the breaker re-opens from now.
        clock.set(secs(11));
        assert!(b.allow(clock.now()));
        assert_eq!(b.take_transition(), tr(Open, HalfOpen, secs(11)));
        assert_eq!(b.take_transition(), None, "taken once");
        assert_eq!(b.reopens_at(), None);
        assert!(!b.allow(clock.now()), "only one trial in flight");
        assert_eq!(b.on_failure(clock.now()), tr(HalfOpen, Open, secs(11)));
        assert_eq!(b.reopens_at(), Some(secs(21)));

        // Second cool-down; the trial succeeds and the breaker closes.
        clock.advance(secs(10));
        assert!(b.allow(clock.now()));
        assert_eq!(b.take_transition(), tr(Open, HalfOpen, secs(21)));
        assert_eq!(b.on_success(clock.now()), tr(HalfOpen, Closed, secs(21)));
        assert_eq!(b.state(), Closed);
        // Closed again with a fresh count: it takes 3 new failures to open.
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(call(&mut b, &clock, false), tr(Closed, Open, secs(21)));
    }

    #[test]
    fn several_half_open_trials_must_all_succeed() {
        let clock = ManualClock::new();
        let cfg = BreakerConfig::consecutive_failures(1, secs(5)).half_open_trials(3);
        let mut b = CircuitBreaker::new(cfg);
        assert_eq!(call(&mut b, &clock, false), tr(Closed, Open, secs(0)));
        clock.advance(secs(5));
        assert_eq!(call(&mut b, &clock, true), None);
        assert_eq!(b.take_transition(), tr(Open, HalfOpen, secs(5)));
        assert_eq!(call(&mut b, &clock, true), None);
        assert_eq!(b.state(), HalfOpen);
        // A failure on the last trial re-opens.
        assert_eq!(call(&mut b, &clock, false), tr(HalfOpen, Open, secs(5)));
        clock.advance(secs(5));
        assert_eq!(call(&mut b, &clock, true), None);
        assert_eq!(call(&mut b, &clock, true), None);
        assert_eq!(call(&mut b, &clock, true), tr(HalfOpen, Closed, secs(10)));
    }

    #[test]
    fn half_open_allows_at_most_the_configured_trials_in_flight() {
        let mut b = CircuitBreaker::new(
            BreakerConfig::consecutive_failures(1, secs(1)).half_open_trials(2),
        );
        b.on_failure(secs(0));
        assert!(b.allow(secs(1)));
        assert!(b.allow(secs(1)));
        assert!(!b.allow(secs(1)), "two trials in flight, no third");
        assert_eq!(b.on_success(secs(1)), None);
        assert!(
            !b.allow(secs(1)),
            "both trials used; waiting for the second report"
        );
        assert_eq!(b.on_success(secs(1)), tr(HalfOpen, Closed, secs(1)));
        assert!(b.allow(secs(1)));
    }

    #[test]
    fn failure_ratio_timeline() {
        let clock = ManualClock::new();
        // Half of the last 4 calls failing, with at least 4 calls, opens it.
        let mut b = CircuitBreaker::new(BreakerConfig::failure_ratio(0.5, 4, 4, secs(30)));
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(call(&mut b, &clock, false), None, "2/2 but below min_calls");
        assert_eq!(call(&mut b, &clock, true), None);
        assert_eq!(b.window(), (3, 2));
        assert_eq!(call(&mut b, &clock, true), None, "successes never open it");
        assert_eq!(call(&mut b, &clock, true), None);
        // The oldest failure slid out: [fail, ok, ok, ok].
        assert_eq!(b.window(), (4, 1));
        clock.advance(secs(2));
        // [ok, ok, ok, fail]: 1/4.
        assert_eq!(call(&mut b, &clock, false), None);
        // [ok, ok, fail, fail]: 2/4 = ratio: opens.
        assert_eq!(call(&mut b, &clock, false), tr(Closed, Open, secs(2)));
        assert_eq!(b.window(), (0, 0), "counters cleared");
        assert_eq!(b.reopens_at(), Some(secs(32)));

        clock.set(secs(31));
        assert!(!b.allow(clock.now()));
        clock.set(secs(40));
        assert_eq!(call(&mut b, &clock, false), tr(HalfOpen, Open, secs(40)));
        assert_eq!(b.take_transition(), tr(Open, HalfOpen, secs(40)));
        clock.advance(secs(30));
        assert_eq!(call(&mut b, &clock, true), tr(HalfOpen, Closed, secs(70)));
        // Fresh window after closing: one failure is 1/1 but below min_calls.
        assert_eq!(call(&mut b, &clock, false), None);
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn ratio_with_small_min_calls_trips_early() {
        let mut b = CircuitBreaker::new(BreakerConfig::failure_ratio(1.0, 10, 0, secs(1)));
        assert_eq!(b.on_success(secs(0)), None);
        assert_eq!(b.on_failure(secs(0)), None, "1/2 < 1.0");
        let mut b = CircuitBreaker::new(BreakerConfig::failure_ratio(1.0, 10, 0, secs(1)));
        assert_eq!(
            b.on_failure(secs(0)),
            tr(Closed, Open, secs(0)),
            "min_calls 0 means 1"
        );
    }

    #[test]
    fn reports_while_open_are_ignored_and_cool_down_saturates() {
        let mut b = CircuitBreaker::new(BreakerConfig::consecutive_failures(1, Duration::MAX));
        assert_eq!(b.on_failure(secs(5)), tr(Closed, Open, secs(5)));
        assert_eq!(b.reopens_at(), Some(Duration::MAX));
        assert_eq!(b.on_failure(secs(6)), None);
        assert_eq!(b.on_success(secs(6)), None);
        assert_eq!(b.state(), Open);
        assert!(!b.allow(secs(1_000_000)));
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let kind = |r: Result<BreakerConfig, ResilienceConfigError>| r.unwrap_err().kind().clone();
        assert_eq!(
            kind(BreakerConfig::try_consecutive_failures(0, secs(1))),
            Kind::ZeroFailureThreshold
        );
        let ratio = BreakerConfig::try_failure_ratio;
        assert_eq!(kind(ratio(0.0, 10, 1, secs(1))), Kind::InvalidRatio(0.0));
        assert_eq!(kind(ratio(1.01, 10, 1, secs(1))), Kind::InvalidRatio(1.01));
        assert!(matches!(
            kind(ratio(f64::NAN, 10, 1, secs(1))),
            Kind::InvalidRatio(_)
        ));
        assert_eq!(kind(ratio(0.5, 0, 0, secs(1))), Kind::ZeroWindow);
        assert_eq!(
            kind(ratio(0.5, MAX_WINDOW + 1, 1, secs(1))),
            Kind::WindowTooLarge(MAX_WINDOW + 1)
        );
        assert_eq!(
            kind(ratio(0.5, 10, 11, secs(1))),
            Kind::MinCallsAboveWindow {
                min_calls: 11,
                window: 10
            }
        );
        assert_eq!(
            kind(BreakerConfig::consecutive_failures(1, secs(1)).try_half_open_trials(0)),
            Kind::ZeroHalfOpenTrials
        );
    }

    #[test]
    fn plain_constructors_never_panic_and_an_invalid_breaker_never_opens() {
        let invalid = [
            (
                BreakerConfig::consecutive_failures(0, secs(1)),
                Kind::ZeroFailureThreshold,
            ),
            (
                BreakerConfig::failure_ratio(f64::INFINITY, 4, 1, secs(1)),
                Kind::InvalidRatio(f64::INFINITY),
            ),
            (
                BreakerConfig::failure_ratio(0.5, 0, 0, secs(1)),
                Kind::ZeroWindow,
            ),
            (
                BreakerConfig::failure_ratio(0.5, u32::MAX, 1, secs(1)),
                Kind::WindowTooLarge(u32::MAX),
            ),
            (
                BreakerConfig::consecutive_failures(1, secs(1)).half_open_trials(0),
                Kind::ZeroHalfOpenTrials,
            ),
        ];
        for (config, expected) in invalid {
            assert_eq!(config.validate().unwrap_err().kind(), &expected);
            let mut b = CircuitBreaker::new(config);
            for t in 0..100 {
                assert!(b.allow(secs(t)));
                assert_eq!(b.on_failure(secs(t)), None, "{config:?}");
            }
            assert_eq!(b.window(), (0, 0), "keeps no window");
        }
        assert_eq!(
            BreakerConfig::failure_ratio(0.5, 10, 0, secs(1)).validate(),
            Ok(())
        );
    }

    #[test]
    fn state_gauge_values() {
        assert_eq!(
            [Closed, HalfOpen, Open].map(BreakerState::as_gauge),
            [0, 1, 2]
        );
        assert_eq!(HalfOpen.to_string(), "half_open");
        assert_eq!(BreakerState::default(), Closed);
    }
}
