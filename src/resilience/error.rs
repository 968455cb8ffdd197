//! The one configuration error of the resilience building blocks.

use std::fmt;

/// A retry policy, circuit breaker or dead-letter queue was configured with values
/// that cannot work (a backoff factor below 1, zero attempts, a ratio outside
/// `(0, 1]`, …). Returned by the `try_*` constructors; the plain constructors of a
/// retry policy or breaker keep it for their `validate` (and `subscribe_with`
/// refuses them with it).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use ringbus::resilience::{ResilienceConfigErrorKind, RetryPolicy};
///
/// let err = RetryPolicy::try_exponential(Duration::from_millis(10), 0.5, Duration::from_secs(1), 5)
///     .unwrap_err();
/// assert!(matches!(err.kind(), ResilienceConfigErrorKind::InvalidFactor(_)));
/// assert_eq!(err.to_string(), "backoff factor must be a finite number >= 1.0, got 0.5");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ResilienceConfigError {
    kind: ResilienceConfigErrorKind,
}

/// What was wrong with a resilience configuration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ResilienceConfigErrorKind {
    /// `max_attempts` was 0 (it counts the first call, so it must be at least 1).
    ZeroMaxAttempts,
    /// An exponential backoff factor that is NaN, infinite or below 1.0.
    InvalidFactor(f64),
    /// An exponential backoff whose initial delay is zero (it would never grow).
    ZeroInitialDelay,
    /// An exponential backoff whose initial delay exceeds its cap.
    InitialAboveCap,
    /// `consecutive_failures(0, ..)`: a breaker must need at least one failure to open.
    ZeroFailureThreshold,
    /// A failure ratio that is NaN or outside `(0, 1]`.
    InvalidRatio(f64),
    /// A failure-ratio window of 0 calls.
    ZeroWindow,
    /// A failure-ratio window larger than [`MAX_WINDOW`](crate::resilience::MAX_WINDOW).
    WindowTooLarge(u32),
    /// `min_calls` larger than the window: the breaker could never open.
    MinCallsAboveWindow {
        /// The configured minimum number of calls.
        min_calls: u32,
        /// The configured window.
        window: u32,
    },
    /// `half_open_trials(0)`: a half-open breaker could never close.
    ZeroHalfOpenTrials,
    /// A dead-letter queue of capacity 0.
    ZeroCapacity,
}

impl ResilienceConfigError {
    pub(crate) fn new(kind: ResilienceConfigErrorKind) -> Self {
        ResilienceConfigError { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ResilienceConfigErrorKind {
        &self.kind
    }
}

impl fmt::Display for ResilienceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ResilienceConfigErrorKind as K;
        match &self.kind {
            K::ZeroMaxAttempts => {
                f.write_str("max_attempts must be at least 1 (it counts the first call)")
            }
            K::InvalidFactor(x) => {
                write!(f, "backoff factor must be a finite number >= 1.0, got {x}")
            }
            K::ZeroInitialDelay => f.write_str("exponential backoff needs a non-zero initial delay"),
            K::InitialAboveCap => {
                f.write_str("exponential backoff: the initial delay exceeds the cap")
            }
            K::ZeroFailureThreshold => {
                f.write_str("a circuit breaker needs at least 1 consecutive failure to open")
            }
            K::InvalidRatio(x) => write!(f, "failure ratio must be in (0, 1], got {x}"),
            K::ZeroWindow => f.write_str("failure-ratio window must be at least 1 call"),
            K::WindowTooLarge(n) => write!(
                f,
                "failure-ratio window of {n} calls exceeds the maximum {}",
                super::MAX_WINDOW
            ),
            K::MinCallsAboveWindow { min_calls, window } => write!(
                f,
                "min_calls ({min_calls}) exceeds the window ({window}): the breaker could never open"
            ),
            K::ZeroHalfOpenTrials => f.write_str("half_open_trials must be at least 1"),
            K::ZeroCapacity => f.write_str("dead-letter queue capacity must not be 0"),
        }
    }
}

impl std::error::Error for ResilienceConfigError {}
