//! Retry policies: how often to retry a failed handler call, and after what delay.
//!
//! A policy is pure arithmetic. The dispatcher asks [`RetryPolicy::next_delay`]
//! after each failure and either schedules the event on the bus's timer (`Some`) or
//! dead-letters it (`None`); the policy itself never sleeps and holds no state, so
//! one policy value serves every event of a handler.
//!
//! Jitter draws from a caller-owned xorshift64 state (Marsaglia, "Xorshift RNGs",
//! 2003, the 13/7/17 triple), so a test that seeds it sees the same delays every run.

use std::fmt;
use std::time::Duration;

use super::clock::duration_to_nanos;
use super::error::{ResilienceConfigError, ResilienceConfigErrorKind as Kind};
use crate::outcome::FailureReason;

/// Which failures a policy retries. A plain `std` `Arc` so that `RetryPolicy` is a
/// cheap `Clone` of an immutable closure.
type Predicate = std::sync::Arc<dyn Fn(&FailureReason) -> bool + Send + Sync + 'static>;

/// The shape of the delays, before jitter.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Backoff {
    /// Retry at once.
    Immediate,
    /// The same delay before every retry.
    Fixed(Duration),
    /// `initial * factor^(n-1)` before retry `n`, never more than `cap`.
    Exponential {
        initial: Duration,
        factor: f64,
        cap: Duration,
    },
}

/// How a handler's failed calls are retried: how many attempts in all, the delay
/// before each retry, the jitter on it, and which failures are worth retrying.
///
/// `max_attempts` counts **every** call, the first included: `immediate(3)` is one
/// call and at most two retries. By default only transient failures are retried
/// ([`FailureReason::is_transient`]): a permanent [`HandlerError`](crate::HandlerError)
/// or a panic goes to the dead-letter queue after its first attempt. Change that with
/// [`retry_if`](RetryPolicy::retry_if).
///
/// ## Invalid values
/// The plain constructors never panic. Given values that cannot work (zero
/// attempts, a backoff factor that is NaN, infinite or below 1, …) they return an
/// *invalid* policy that keeps the values, never retries, and says what is wrong
/// through [`validate`](RetryPolicy::validate);
/// [`Bus::subscribe_with`](crate::Bus::subscribe_with) refuses it with
/// [`SubscribeError::InvalidRetryPolicy`](crate::SubscribeError::InvalidRetryPolicy).
/// The `try_*` constructors return the error at once instead.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ringbus::failure::FailureReason;
/// use ringbus::HandlerError;
/// use ringbus::resilience::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(1), 5);
/// let busy = FailureReason::Error(HandlerError::transient("database busy"));
/// let mut rng = 0x9E37_79B9_7F4A_7C15; // any non-zero seed
///
/// let delays: Vec<_> = (1..=5).map(|made| policy.next_delay(made, &busy, &mut rng)).collect();
/// assert_eq!(delays, [
///     Some(Duration::from_millis(100)),
///     Some(Duration::from_millis(200)),
///     Some(Duration::from_millis(400)),
///     Some(Duration::from_millis(800)),
///     None, // 5 attempts made: give up (dead-letter)
/// ]);
///
/// let invalid = FailureReason::Error(HandlerError::permanent("bad payload"));
/// assert_eq!(policy.next_delay(1, &invalid, &mut rng), None);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    /// Calls in all, first included; `1 ..= u32::MAX`.
    max_attempts: u32,
    /// Jitter fraction in `0.0 ..= 1.0`.
    jitter: f64,
    /// `None`: the default, [`FailureReason::is_transient`].
    retry_if: Option<Predicate>,
    /// Why the values given to a plain constructor cannot work (`None`: they can).
    invalid: Option<ResilienceConfigError>,
}

/// Replaces a zero xorshift state, which would stay zero forever.
const RNG_FALLBACK: u64 = 0x9E37_79B9_7F4A_7C15;

impl RetryPolicy {
    fn with(backoff: Backoff, max_attempts: u32) -> Self {
        RetryPolicy {
            backoff,
            max_attempts,
            jitter: 0.0,
            retry_if: None,
            invalid: None,
        }
    }

    /// The policy `checked` returned, or — for invalid values — one that keeps
    /// them (for `Debug`) and the error, and never retries.
    fn or_invalid(
        checked: Result<Self, ResilienceConfigError>,
        backoff: Backoff,
        max_attempts: u32,
    ) -> Self {
        checked.unwrap_or_else(|e| RetryPolicy {
            invalid: Some(e),
            ..RetryPolicy::with(backoff, max_attempts)
        })
    }

    /// No retries: a failed event goes to the dead-letter queue after its one call.
    pub fn none() -> Self {
        RetryPolicy::with(Backoff::Immediate, 1)
    }

    /// Retries at once (on the timer's next turn, never inside the dispatcher's
    /// current batch), up to `max_attempts` calls in all.
    ///
    /// A `max_attempts` of 0 gives an [invalid](RetryPolicy#invalid-values)
    /// policy; [`try_immediate`](RetryPolicy::try_immediate) returns the error.
    pub fn immediate(max_attempts: u32) -> Self {
        RetryPolicy::or_invalid(
            RetryPolicy::try_immediate(max_attempts),
            Backoff::Immediate,
            max_attempts,
        )
    }

    /// [`immediate`](RetryPolicy::immediate), or an error if `max_attempts` is 0.
    pub fn try_immediate(max_attempts: u32) -> Result<Self, ResilienceConfigError> {
        check_attempts(max_attempts)?;
        Ok(RetryPolicy::with(Backoff::Immediate, max_attempts))
    }

    /// Waits `delay` before every retry, up to `max_attempts` calls in all.
    ///
    /// A `max_attempts` of 0 gives an [invalid](RetryPolicy#invalid-values)
    /// policy; [`try_fixed`](RetryPolicy::try_fixed) returns the error.
    pub fn fixed(delay: Duration, max_attempts: u32) -> Self {
        RetryPolicy::or_invalid(
            RetryPolicy::try_fixed(delay, max_attempts),
            Backoff::Fixed(delay),
            max_attempts,
        )
    }

    /// [`fixed`](RetryPolicy::fixed), or an error if `max_attempts` is 0.
    pub fn try_fixed(delay: Duration, max_attempts: u32) -> Result<Self, ResilienceConfigError> {
        check_attempts(max_attempts)?;
        Ok(RetryPolicy::with(Backoff::Fixed(delay), max_attempts))
    }

    /// Waits `initial` before the first retry, then `factor` times longer before
    /// each next one, never more than `cap`: retry `n` (1-based) waits
    /// `min(initial * factor^(n-1), cap)`. Up to `max_attempts` calls in all.
    ///
    /// Invalid values (a `factor` that is NaN, infinite or below 1.0, a zero
    /// `initial`, `initial` above `cap`, zero `max_attempts`) give an
    /// [invalid](RetryPolicy#invalid-values) policy, which
    /// [`Bus::subscribe_with`](crate::Bus::subscribe_with) refuses with a typed
    /// error; [`try_exponential`](RetryPolicy::try_exponential) returns the error
    /// at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ringbus::resilience::{ResilienceConfigErrorKind, RetryPolicy};
    ///
    /// let policy = RetryPolicy::exponential(Duration::from_millis(10), 0.5, Duration::from_secs(1), 5);
    /// let err = policy.validate().unwrap_err();
    /// assert_eq!(err.kind(), &ResilienceConfigErrorKind::InvalidFactor(0.5));
    /// assert!(!policy.retries());
    /// ```
    pub fn exponential(initial: Duration, factor: f64, cap: Duration, max_attempts: u32) -> Self {
        RetryPolicy::or_invalid(
            RetryPolicy::try_exponential(initial, factor, cap, max_attempts),
            Backoff::Exponential {
                initial,
                factor,
                cap,
            },
            max_attempts,
        )
    }

    /// [`exponential`](RetryPolicy::exponential), or an error if `max_attempts` is 0,
    /// `factor` is NaN, infinite or below 1.0, `initial` is zero, or `initial`
    /// exceeds `cap`. (A factor of exactly 1.0 is a fixed delay, and allowed.)
    ///
    /// Use it whenever the numbers come from outside the program (a
    /// configuration file, an environment variable): every value of its
    /// arguments gives `Ok` or a [`ResilienceConfigError`], never a panic, and
    /// every policy it returns computes its delays without panicking.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ringbus::resilience::{ResilienceConfigErrorKind, RetryPolicy};
    ///
    /// let factor: f64 = "NaN".parse().unwrap(); // read from a config file, say
    /// let policy = match RetryPolicy::try_exponential(
    ///     Duration::from_millis(10), factor, Duration::from_secs(1), 5,
    /// ) {
    ///     Ok(policy) => policy,
    ///     Err(e) => {
    ///         assert!(matches!(e.kind(), ResilienceConfigErrorKind::InvalidFactor(f) if f.is_nan()));
    ///         RetryPolicy::fixed(Duration::from_millis(10), 5) // a fallback
    ///     }
    /// };
    /// assert_eq!(policy.max_attempts(), 5);
    /// ```
    pub fn try_exponential(
        initial: Duration,
        factor: f64,
        cap: Duration,
        max_attempts: u32,
    ) -> Result<Self, ResilienceConfigError> {
        check_attempts(max_attempts)?;
        if !factor.is_finite() || factor < 1.0 {
            return Err(ResilienceConfigError::new(Kind::InvalidFactor(factor)));
        }
        if initial.is_zero() {
            return Err(ResilienceConfigError::new(Kind::ZeroInitialDelay));
        }
        if initial > cap {
            return Err(ResilienceConfigError::new(Kind::InitialAboveCap));
        }
        Ok(RetryPolicy::with(
            Backoff::Exponential {
                initial,
                factor,
                cap,
            },
            max_attempts,
        ))
    }

    /// Full, proportional jitter: each delay is multiplied by a random factor in
    /// `[1 - fraction, 1]`, so retries of many events failing together spread out
    /// instead of arriving in a burst. `fraction` is clamped to `0.0 ..= 1.0`; NaN
    /// counts as 0 (no jitter). Jitter never lengthens a delay, so the cap still holds.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// Retries only the failures for which `f` returns `true` (replacing the
    /// default, [`FailureReason::is_transient`]). `max_attempts` still applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ringbus::failure::FailureReason;
    /// use ringbus::resilience::RetryPolicy;
    ///
    /// // Retry panics too (say, a flaky dependency that panics on timeouts).
    /// let policy = RetryPolicy::fixed(Duration::from_secs(1), 3).retry_if(|_| true);
    /// let panic = FailureReason::Panic("timed out".into());
    /// assert_eq!(policy.next_delay(1, &panic, &mut 1), Some(Duration::from_secs(1)));
    /// ```
    pub fn retry_if(mut self, f: impl Fn(&FailureReason) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(std::sync::Arc::new(f));
        self
    }

    /// `Ok` for a policy that can work; for an [invalid](RetryPolicy#invalid-values)
    /// one, what is wrong with the values given to its constructor.
    pub fn validate(&self) -> Result<(), ResilienceConfigError> {
        match &self.invalid {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }

    /// Calls in all, the first included (1 for [`none`](RetryPolicy::none)), as
    /// given to the constructor (so 0 for an invalid `immediate(0)`).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The jitter fraction, `0.0 ..= 1.0`.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Whether this policy ever retries (`max_attempts > 1`, and valid).
    pub fn retries(&self) -> bool {
        self.max_attempts > 1 && self.invalid.is_none()
    }

    /// Whether the predicate considers `reason` worth retrying (ignoring the
    /// attempt count).
    pub fn should_retry(&self, reason: &FailureReason) -> bool {
        match &self.retry_if {
            Some(f) => f(reason),
            None => reason.is_transient(),
        }
    }

    /// The delay before retry number `retry` (1-based), before jitter; `retry` 0
    /// is treated as 1. Independent of `max_attempts`. Zero for an
    /// [invalid](RetryPolicy#invalid-values) policy.
    pub fn base_delay(&self, retry: u32) -> Duration {
        if self.invalid.is_some() {
            return Duration::ZERO;
        }
        match self.backoff {
            Backoff::Immediate => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::Exponential {
                initial,
                factor,
                cap,
            } => {
                let exp = i32::try_from(retry.max(1) - 1).unwrap_or(i32::MAX);
                // In nanoseconds, as f64: exact for the usual factors (2, 1.5, …)
                // and small exponents; `powi` overflowing to infinity lands on `cap`.
                let nanos = duration_to_nanos(initial) as f64 * factor.powi(exp);
                let cap_nanos = duration_to_nanos(cap);
                if nanos >= cap_nanos as f64 {
                    cap
                } else {
                    Duration::from_nanos(nanos.round() as u64)
                }
            }
        }
    }

    /// What to do after a failed call: `None` = give up (dead-letter the event),
    /// `Some(d)` = call again `d` after the failure.
    ///
    /// * `attempts_made`: calls made so far, the one that just failed included
    ///   (1 after the first failure; 0 is treated as 1).
    /// * `reason`: why the last call failed; the predicate decides on it.
    /// * `rng`: the caller's xorshift64 state, advanced only when a jittered delay
    ///   is drawn. It must not be zero (xorshift stays at zero forever); a zero
    ///   state is replaced by a fixed non-zero constant before use. Seed it once
    ///   (per handler, say) and keep passing the same variable.
    ///
    /// Gives up when `attempts_made >= max_attempts`, the predicate rejects
    /// `reason`, or the policy is [invalid](RetryPolicy#invalid-values); otherwise returns [`base_delay(attempts_made)`](RetryPolicy::base_delay)
    /// scaled by the jitter factor.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        reason: &FailureReason,
        rng: &mut u64,
    ) -> Option<Duration> {
        let made = attempts_made.max(1);
        if made >= self.max_attempts || self.invalid.is_some() || !self.should_retry(reason) {
            return None;
        }
        let base = self.base_delay(made);
        if self.jitter == 0.0 || base.is_zero() {
            return Some(base);
        }
        // A uniform draw in [0, 1) from the top 53 bits.
        let u = (xorshift64(rng) >> 11) as f64 / (1u64 << 53) as f64;
        let scale = 1.0 - self.jitter * u; // in (1 - jitter, 1]
        let nanos = (duration_to_nanos(base) as f64 * scale).round();
        Some(Duration::from_nanos(nanos as u64).min(base))
    }
}

/// One xorshift64 step (13, 7, 17); a zero state is first replaced by a constant.
fn xorshift64(state: &mut u64) -> u64 {
    let mut x = if *state == 0 { RNG_FALLBACK } else { *state };
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn check_attempts(max_attempts: u32) -> Result<(), ResilienceConfigError> {
    if max_attempts == 0 {
        Err(ResilienceConfigError::new(Kind::ZeroMaxAttempts))
    } else {
        Ok(())
    }
}

#[track_caller]
pub(crate) fn unwrap_config<T>(r: Result<T, ResilienceConfigError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid resilience configuration: {e}"),
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::none`].
    fn default() -> Self {
        RetryPolicy::none()
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RetryPolicy");
        match self.backoff {
            Backoff::Immediate => d.field("backoff", &"immediate"),
            Backoff::Fixed(delay) => d.field("fixed", &delay),
            Backoff::Exponential {
                initial,
                factor,
                cap,
            } => d
                .field("initial", &initial)
                .field("factor", &factor)
                .field("cap", &cap),
        };
        d.field("max_attempts", &self.max_attempts)
            .field("jitter", &self.jitter)
            .field(
                "retry_if",
                &if self.retry_if.is_some() {
                    "custom"
                } else {
                    "is_transient"
                },
            );
        if let Some(e) = &self.invalid {
            d.field("invalid", &e.to_string());
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::HandlerError;

    fn transient() -> FailureReason {
        FailureReason::Error(HandlerError::transient("busy"))
    }

    fn permanent() -> FailureReason {
        FailureReason::Error(HandlerError::permanent("invalid"))
    }

    fn panic() -> FailureReason {
        FailureReason::Panic("boom".into())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every delay until the policy gives up, for a transient failure.
    fn schedule(p: &RetryPolicy, rng: &mut u64) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut made = 1;
        while let Some(d) = p.next_delay(made, &transient(), rng) {
            out.push(d);
            made += 1;
            assert!(made <= 1000, "policy never gives up");
        }
        out
    }

    #[test]
    fn none_never_retries() {
        let p = RetryPolicy::none();
        assert_eq!(p.max_attempts(), 1);
        assert!(!p.retries());
        assert_eq!(schedule(&p, &mut 1), Vec::<Duration>::new());
        assert_eq!(RetryPolicy::default().max_attempts(), 1);
    }

    #[test]
    fn max_attempts_counts_the_first_call() {
        assert_eq!(
            schedule(&RetryPolicy::immediate(3), &mut 1),
            [Duration::ZERO; 2]
        );
        assert_eq!(
            schedule(&RetryPolicy::fixed(ms(50), 4), &mut 1),
            [ms(50); 3]
        );
        assert!(schedule(&RetryPolicy::fixed(ms(50), 1), &mut 1).is_empty());
        // attempts_made 0 means the same as 1.
        let p = RetryPolicy::fixed(ms(5), 2);
        assert_eq!(p.next_delay(0, &transient(), &mut 1), Some(ms(5)));
        assert_eq!(p.next_delay(2, &transient(), &mut 1), None);
        assert_eq!(p.next_delay(u32::MAX, &transient(), &mut 1), None);
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let p = RetryPolicy::exponential(ms(100), 2.0, ms(1000), 8);
        assert_eq!(
            schedule(&p, &mut 1),
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        let p = RetryPolicy::exponential(ms(10), 1.5, ms(100), 6);
        assert_eq!(
            schedule(&p, &mut 1),
            [
                ms(10),
                ms(15),
                Duration::from_micros(22_500),
                Duration::from_micros(33_750),
                Duration::from_micros(50_625)
            ]
        );
        // Enormous retry numbers saturate at the cap instead of overflowing.
        assert_eq!(p.base_delay(u32::MAX), ms(100));
        let huge = RetryPolicy::exponential(ms(1), 10.0, Duration::MAX, 2);
        assert_eq!(huge.base_delay(400), Duration::MAX);
    }

    #[test]
    fn default_predicate_retries_only_transient_errors() {
        let p = RetryPolicy::immediate(5);
        assert_eq!(p.next_delay(1, &transient(), &mut 1), Some(Duration::ZERO));
        assert_eq!(p.next_delay(1, &permanent(), &mut 1), None);
        assert_eq!(p.next_delay(1, &panic(), &mut 1), None);
    }

    #[test]
    fn custom_predicate_replaces_the_default_but_not_the_limit() {
        let p = RetryPolicy::fixed(ms(1), 3)
            .retry_if(|r| matches!(r, FailureReason::Error(e) if e.message() == "invalid"));
        assert_eq!(p.next_delay(1, &permanent(), &mut 1), Some(ms(1)));
        assert_eq!(p.next_delay(1, &transient(), &mut 1), None);
        assert_eq!(p.next_delay(3, &permanent(), &mut 1), None);
        // Clones share the predicate.
        let q = p.clone();
        assert!(q.should_retry(&permanent()));
        assert!(format!("{q:?}").contains("custom"));
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_deterministic_per_seed() {
        let p = RetryPolicy::exponential(ms(100), 2.0, ms(1000), 12).with_jitter(0.5);
        let mut rng = 42;
        let a = schedule(&p, &mut rng);
        assert_ne!(rng, 42, "jitter advanced the rng");
        let b = schedule(&p, &mut 42);
        assert_eq!(a, b, "same seed, same delays");
        assert_ne!(a, schedule(&p, &mut 7), "another seed, other delays");
        let mut distinct = a.clone();
        distinct.dedup();
        assert!(distinct.len() > 1);
        for (i, d) in a.iter().enumerate() {
            let base = p.base_delay(i as u32 + 1);
            assert!(
                *d <= base && *d >= base / 2,
                "retry {}: {d:?} vs base {base:?}",
                i + 1
            );
        }
    }

    #[test]
    fn jitter_fraction_is_clamped_and_zero_rng_is_usable() {
        assert_eq!(RetryPolicy::none().with_jitter(7.0).jitter(), 1.0);
        assert_eq!(RetryPolicy::none().with_jitter(-1.0).jitter(), 0.0);
        assert_eq!(RetryPolicy::none().with_jitter(f64::NAN).jitter(), 0.0);
        let p = RetryPolicy::fixed(ms(100), 50).with_jitter(1.0);
        let mut rng = 0;
        let delays = schedule(&p, &mut rng);
        assert_ne!(rng, 0, "a zero state is replaced");
        assert!(delays.iter().all(|d| *d <= ms(100)));
        assert!(
            delays.iter().any(|d| *d < ms(50)),
            "full jitter reaches low values"
        );
        // No jitter: the rng is left alone.
        let mut untouched = 99;
        schedule(&RetryPolicy::fixed(ms(1), 4), &mut untouched);
        assert_eq!(untouched, 99);
    }

    #[test]
    fn absurd_configurations_are_rejected() {
        let kind = |r: Result<RetryPolicy, ResilienceConfigError>| r.unwrap_err().kind().clone();
        assert_eq!(kind(RetryPolicy::try_immediate(0)), Kind::ZeroMaxAttempts);
        assert_eq!(
            kind(RetryPolicy::try_fixed(ms(1), 0)),
            Kind::ZeroMaxAttempts
        );
        let exp = |i, f, c, n| RetryPolicy::try_exponential(i, f, c, n);
        assert_eq!(kind(exp(ms(1), 0.5, ms(9), 3)), Kind::InvalidFactor(0.5));
        assert!(
            matches!(kind(exp(ms(1), f64::NAN, ms(9), 3)), Kind::InvalidFactor(x) if x.is_nan())
        );
        assert_eq!(
            kind(exp(ms(1), f64::INFINITY, ms(9), 3)),
            Kind::InvalidFactor(f64::INFINITY)
        );
        assert_eq!(
            kind(exp(Duration::ZERO, 2.0, ms(9), 3)),
            Kind::ZeroInitialDelay
        );
        assert_eq!(kind(exp(ms(10), 2.0, ms(9), 3)), Kind::InitialAboveCap);
        assert_eq!(kind(exp(ms(1), 2.0, ms(9), 0)), Kind::ZeroMaxAttempts);
        assert!(exp(ms(1), 1.0, ms(1), 1).is_ok());
    }

    #[test]
    // Miri perturbs `powi` results by a few ULPs on purpose (float
    // non-determinism), so delays one ULP apart can come out in either order
    // there; natively the computation is exact for these factors.
    #[cfg_attr(
        miri,
        ignore = "Miri's deliberate float imprecision breaks ULP-level monotonicity"
    )]
    fn every_bad_factor_is_an_error_and_every_good_one_computes_without_panicking() {
        for bad in [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            -1.0,
            f64::MIN_POSITIVE,
            1.0 - f64::EPSILON,
        ] {
            let err = RetryPolicy::try_exponential(ms(1), bad, ms(9), 3).unwrap_err();
            assert!(
                matches!(err.kind(), Kind::InvalidFactor(f) if f.to_bits() == bad.to_bits()),
                "{bad}: {err}"
            );
        }
        for factor in [1.0, 1.0 + f64::EPSILON, 1.5, 2.0, 10.0, 1e300, f64::MAX] {
            for (initial, cap) in [
                (ms(1), ms(1)),
                (ms(1), Duration::from_secs(60)),
                (Duration::from_nanos(1), Duration::MAX),
                (Duration::MAX, Duration::MAX),
            ] {
                let p = RetryPolicy::try_exponential(initial, factor, cap, u32::MAX)
                    .unwrap()
                    .with_jitter(1.0);
                let mut prev = Duration::ZERO;
                for retry in [0, 1, 2, 63, 64, 65, 1000, u32::MAX - 1, u32::MAX] {
                    let d = p.base_delay(retry);
                    assert!(d >= prev && d <= cap, "{factor} {retry}: {d:?}");
                    prev = d;
                    let jittered = p.next_delay(retry, &transient(), &mut 7);
                    assert!(jittered.is_none_or(|j| j <= d), "{factor} {retry}");
                }
            }
        }
    }

    #[test]
    fn plain_constructors_never_panic_and_keep_the_error() {
        let nan = RetryPolicy::exponential(ms(1), f64::NAN, ms(9), 3);
        assert!(matches!(nan.validate().unwrap_err().kind(), Kind::InvalidFactor(f) if f.is_nan()));
        assert!(format!("{nan:?}").contains("invalid"));
        let invalid = [
            (RetryPolicy::immediate(0), Kind::ZeroMaxAttempts),
            (RetryPolicy::fixed(ms(5), 0), Kind::ZeroMaxAttempts),
            (
                RetryPolicy::exponential(ms(1), f64::INFINITY, ms(9), 3),
                Kind::InvalidFactor(f64::INFINITY),
            ),
            (
                RetryPolicy::exponential(ms(1), -2.0, ms(9), 3),
                Kind::InvalidFactor(-2.0),
            ),
            (
                RetryPolicy::exponential(Duration::ZERO, 2.0, ms(9), 3),
                Kind::ZeroInitialDelay,
            ),
            (
                RetryPolicy::exponential(ms(10), 2.0, ms(9), 3),
                Kind::InitialAboveCap,
            ),
        ];
        let policies = invalid.iter().map(|(p, _)| p).chain([&nan]);
        for p in policies {
            assert!(!p.retries(), "{p:?}");
            for retry in [0, 1, 2, 64, u32::MAX] {
                assert_eq!(p.base_delay(retry), Duration::ZERO, "{p:?}");
                assert_eq!(p.next_delay(retry, &transient(), &mut 7), None, "{p:?}");
            }
        }
        for (p, expected) in &invalid {
            assert_eq!(p.validate().unwrap_err().kind(), expected);
        }
        assert_eq!(RetryPolicy::immediate(3).validate(), Ok(()));
    }
}
