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
//! `unsafe_code` elsewhere).
// The other lints are the workspace's (Cargo.toml).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub(crate) mod sync;
mod unwind;

mod bus;
pub mod codec;
mod dispatch;
pub mod event;
pub mod metrics;
pub mod resilience;
// The ring owns every `unsafe` of the crate: producers write through its claims,
// the dispatcher reads through its batches.
#[allow(unsafe_code)]
mod ring;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

pub use bus::{
    BuildError, BuildErrorKind, Bus, BusBuilder, DeadLetters, Multi, ProducerMode,
    PublishBatchError, PublishError, PublishTimeoutError, Publisher, ShutdownError, Single,
    SingleProducerBus, SubscribeError, SubscribeOptions, TryPublishError, MAX_CAPACITY, MAX_LANES,
    MAX_POOL_THREADS,
};
pub use dispatch::{
    BreakerListener, BusStats, ErrorKind, Execution, Failure, FailurePolicy, FailureReason,
    FlowLog, FlowRecord, FlowTrace, Handler, HandlerError, IntoPatterns, LogFailures, Pattern,
    PatternError, ShutdownReport, SubscriptionId, Undelivered,
};
pub use ring::WaitStrategy;

pub use event::{DomainEvent, Event, EventId, EventType, NameError, Source, Subject, Timestamp};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
