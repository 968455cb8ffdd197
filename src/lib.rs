//! # ringbus
//!
//! A lock-free, high-throughput, in-process event bus built like the LMAX
//! Disruptor: publishers claim slots in a preallocated ring (one atomic per publish
//! or per batch); one dispatcher thread takes published events in batches, routes
//! each through a precomputed table indexed by the interned event type, and runs
//! every handler with work over its events in publish order — different handlers in
//! parallel on a rayon pool.
//!
//! See the README for an example, `src/ring/README.md` for the concurrency protocol.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks
)]

pub(crate) mod sync;

pub mod codec;
pub mod event;
mod bus;
mod dispatch;
mod ring;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

pub use bus::{
    BuildError, BuildErrorKind, Bus, BusBuilder, Multi, ProducerMode, PublishBatchError, PublishError,
    PublishTimeoutError, Publisher, Single, SubscribeError, TryPublishError, MAX_CAPACITY, MAX_LANES,
};
pub use dispatch::{
    BusStats, ErrorKind, Execution, Failure, FailurePolicy, FailureReason, Handler, HandlerError,
    IntoPatterns, LogFailures, Pattern, PatternError, ShutdownReport, SubscriptionId,
};
pub use ring::WaitStrategy;

pub use event::{DomainEvent, Event, EventId, EventType, NameError, Source, Subject, Timestamp};

