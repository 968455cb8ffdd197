//! Retries, circuit breakers, dead letters and the clock they run on.
//!
//! Building blocks of the bus's failure handling, each a self-contained data
//! structure the dispatcher drives:
//!
//! * [`Clock`] — the time source ([`SystemClock`], or [`ManualClock`] in tests), so
//!   no test sleeps through a backoff;
//! * [`RetryPolicy`] — how many attempts, which failures, and the delay before each
//!   retry (immediate, fixed, exponential with a cap and jitter);
//! * [`CircuitBreaker`] — per handler: closed → open after consecutive failures or
//!   a failure ratio, half-open after a cool-down, closed again on success (each
//!   [`BreakerTransition`] says which lane of a partitioned subscription changed);
//! * [`DeadLetterQueue`] — the bounded store of events a handler gave up on, with
//!   every attempt, for listing, redrive and discard.
//!
//! Invalid configurations are reported as one [`ResilienceConfigError`] by the
//! `try_*` constructors; the plain constructors panic with its message.

mod breaker;
mod clock;
mod dlq;
mod error;
mod retry;

pub use breaker::{BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker, MAX_WINDOW};
pub use clock::{Clock, ClockWaker, ManualClock, SystemClock};
pub(crate) use clock::{GuardedClock, Wake};
pub use dlq::{
    Attempt, DeadLetter, DeadLetterInfo, DeadLetterQueue, DlqClosed, DlqFilter, DlqFullPolicy,
    DlqPushTimeoutError, DlqTryPushError,
};
pub use error::{ResilienceConfigError, ResilienceConfigErrorKind};
pub use retry::RetryPolicy;
