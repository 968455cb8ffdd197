//! # ringbus
//!
//! A lock-free, high-throughput, in-process event bus built like the LMAX
//! Disruptor: publishers claim slots in a preallocated ring (one atomic per publish
//! or per batch); one dispatcher thread takes published events in batches, routes
//! each through a precomputed table indexed by the interned event type, and runs
//! every handler with work over its events in publish order — different handlers in
//! parallel on a rayon pool.
//!
//! See the README for an example, and `src/ring/README.md` (the ring protocol) for
//! how slots move between producers and the dispatcher.
//!
//! ## Memory ordering
//!
//! Every atomic that is part of a protocol — the ring's cursors, flags and
//! sleep/wake signal (`src/ring`), the control queue, the re-entrancy and timer
//! flags (`src/dispatch`), the dead-letter queue and the manual clock
//! (`src/resilience`) — is reached through `crate::sync`, which swaps in loom under
//! `cfg(loom)`. Counters read only as statistics (per-handler metrics, the guarded
//! clock's last reading) are plain `std` atomics with Relaxed ordering. The ring
//! protocol — claim, write, publish, dispatch, release, close, park and wake — is
//! written down in `src/ring/README.md` and checked by the loom models in
//! `loom-tests/`; its `unsafe` never leaves `src/ring` (the crate denies
//! `unsafe_code` elsewhere, but for two foreign calls: `clock_gettime` in
//! `event/id.rs` and `lseek` in `store/vfs.rs`).
// The other lints are the workspace's (Cargo.toml).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub(crate) mod sync;
mod unwind;

mod bus;
pub mod codec;
pub mod cqrs;
pub mod delivery;
mod dispatch;
mod event;
mod log;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
mod outcome;
pub mod resilience;
pub mod store;
// The ring owns every `unsafe` of the crate: producers write through its claims,
// the dispatcher reads through its batches. (The one other is a foreign call: the
// coarse clock `Event::new` reads, in `event/id.rs`.)
#[allow(unsafe_code)]
mod ring;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

// The root holds the bus, the publisher, the event, the handler and the errors a
// user matches on; each area beyond that is a module.
pub use bus::{
    BuildError, BuildErrorKind, Bus, BusBuilder, DeadLetters, FlushError, Multi, ProducerMode,
    PublishBatchError, PublishError, PublishTimeoutError, Publisher, Refusal, ShutdownError,
    Single, SubscribeError, SubscribeOptions, TryPublishError,
};
pub use dispatch::{Execution, Handler, HandlerResult, ShutdownReport, StuckHandler};
pub use event::{
    DomainEvent, Event, EventEnum, EventId, EventType, NameError, Source, Subject, Timestamp,
    VariantError,
};
pub use outcome::{Classify, HandlerError, SubscriptionId};
pub use ring::WaitStrategy;

/// Subscription patterns: exact event types, `*` (one token), `>` (one or more
/// trailing tokens), as in NATS subjects. Every event is `">"` — not `"*"`, which
/// matches single-token types only (see [`Pattern`](pattern::Pattern)).
pub mod pattern {
    pub use crate::dispatch::{named, IntoPatterns, Named, Pattern, PatternError};
}

/// What happens when a handler fails: the failure record, the policy hook that
/// sees every failure, why a call failed and whether retrying could help.
pub mod failure {
    pub use crate::dispatch::{Failure, FailurePolicy, LogFailures};
    pub use crate::outcome::{ErrorKind, FailureReason};
}

/// The limits the bus and the name table enforce.
pub mod limits {
    pub use crate::bus::{MAX_CAPACITY, MAX_LANES, MAX_POOL_THREADS};
    pub use crate::event::{MAX_NAMES, MAX_NAME_LEN};
}

/// What the exported macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::{all_distinct, assert_event_type, assert_source};
    pub use serde;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
