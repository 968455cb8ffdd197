//! CQRS on the event store: the write side's aggregates and the read side's
//! projections and queries.

mod projection;

pub use projection::{project, Projection, ProjectionHandle, Projector, Query};
