//! The dispatcher: takes published events from the ring in batches, routes them
//! through the precomputed table, and runs each handler with work over its events
//! in publish order — different handlers concurrently on a rayon pool.
//!
//! ## One batch
//! 1. Apply pending control messages (subscribe / unsubscribe). They take effect
//!    between batches, so a batch sees one fixed set of handlers.
//! 2. Poll the ring for `[lo, hi)`, at most `max_batch` published events.
//! 3. Route: for each event, one table index gives its targets; each target's slot
//!    (lane, for a partitioned handler) gets the event's offset appended to its
//!    work list. Work lists keep their capacity across batches: no allocation in
//!    the steady state.
//! 4. Run: one handler with work runs inline on the dispatcher thread; several run
//!    as one rayon task each (`in_place_scope`, the dispatcher running one of them
//!    itself). Rayon is never a per-event transport.
//! 5. Hand each failure to the [`FailurePolicy`], in order, on the dispatcher thread.
//! 6. Release the batch: drop the events, advance the ring's consumer cursor.
//!
//! ## Where things are
//! * `dispatcher` — the loop: [`Dispatcher`], its settings, subscribe / unsubscribe
//!   / redrive as applied between batches, shutdown, and [`dead_letter`];
//! * `control` — the control channel from the bus to the dispatcher;
//! * `shared` — the state the bus handle, publishers and dispatcher share, the
//!   counters, and the shutdown report;
//! * `inside` — which bus (and in which [`Role`]) the current thread is inside;
//! * `follow_ups` — events published from inside the bus, dispatched without
//!   going through the ring;
//! * `execution` — where handlers run;
//! * `table`, `pattern` — routing;
//! * `slot` — one handler instance and its run over a batch; `waiting` — its
//!   per-subject queue of retries and events held by an open breaker;
//!   `slot_metrics` — its counters and histograms;
//! * `handler`, `failure` — the handler trait, failures and their policy (the
//!   outcome vocabulary — `HandlerError`, `FailureReason`, `SubscriptionId` — is
//!   the leaf module `crate::outcome`; the flow log is `crate::metrics::flow`).

mod control;
mod dispatcher;
mod execution;
mod failure;
mod follow_ups;
mod handler;
mod inside;
mod pattern;
mod shared;
mod slot;
mod slot_metrics;
mod table;
mod waiting;
mod work;

pub use execution::Execution;
pub use failure::{Failure, FailurePolicy, LogFailures};
pub(crate) use handler::FnHandler;
pub use handler::{Handler, HandlerResult};
pub use pattern::{named, IntoPatterns, Named, Pattern, PatternError};
pub use shared::{ShutdownReport, StuckHandler};

pub(crate) use control::{Ack, Control, ControlQueue, Redrive, Reply, SubscribeSpec};
pub(crate) use dispatcher::{DispatchConfig, Dispatcher};
pub(crate) use execution::Executor;
pub(crate) use follow_ups::{FollowUps, Refused};
pub(crate) use inside::{Inside, Role};
pub(crate) use shared::{Progress, Shared, Stats};
pub(crate) use slot::{BreakerListener, CloneEvent, DeadLetterListener, Services};
pub(crate) use slot_metrics::{Sampling, DEFAULT_SAMPLE_EVERY};
pub(crate) use waiting::ResilienceSpec;

// Not named outside `dispatch` today, but importable from here as they always were.
#[allow(unused_imports)]
pub(crate) use {
    dispatcher::{dead_letter, Step},
    shared::HandlerInfo,
    slot_metrics::SlotMetrics,
};
