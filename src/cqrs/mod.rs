//! CQRS on the event store: aggregates that decide on commands and evolve by
//! their events, a repository that loads them and appends their events with
//! optimistic concurrency, a given/when/then harness to test them; projections
//! that build read models from the store and answer queries; and sagas that
//! turn events into commands, durably, with deadlines.
//!
//! | want | use |
//! | --- | --- |
//! | write the domain logic | [`Aggregate`]: `handle` (decide, pure) and `apply` (evolve, infallible) |
//! | run commands against a store | [`Repository::execute`]; with a correlation id or your own command id: [`Repository::execute_with`] + [`CommandMeta`] |
//! | read an aggregate's state | [`Repository::load`] → [`Loaded`] |
//! | survive concurrent writers | [`Repository::retry_on_conflict`], or handle [`CommandError::Conflict`] |
//! | load long streams fast | [`Snapshotted`] + [`Repository::snapshots`] |
//! | keep hot aggregates in memory | [`Repository::cache`] |
//! | read events written at older schemas | [`Repository::upcasters`] |
//! | retry a command safely | send it again with the same [`CommandId`] |
//! | test the domain logic | [`AggregateTest`]`::given(..).when(..).then(..)` |
//! | build a read model, query it | [`Projection`] + [`project`] → [`ProjectionHandle::ask`] a [`Query`] |
//! | react to events with commands, with deadlines | [`ProcessManager`] + [`saga`] → [`SagaHandle`] |
//!
//! An aggregate of type `TYPE` with id `id` lives in the stream `"{TYPE}-{id}"`.
//! Each event the repository appends is an [`Event::typed`](crate::Event::typed)
//! envelope whose causation id is the command's [`CommandId`] and whose own id
//! is derived from it, so a command executed again is recognised rather than
//! appended twice. The seed's shop, end to end, is `examples/shop/`.
//!
//! # Examples
//! ```
//! use ringbus::cqrs::{Aggregate, AggregateTest, CommandError, Repository};
//! use ringbus::store::InMemoryStore;
//! use ringbus::{event_type, source, DomainEvent, EventType, Source};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Order { placed: bool, paid_cents: u64, total_cents: u64 }
//!
//! #[derive(Clone)]
//! enum OrderCommand { Place { total_cents: u64 }, Pay { cents: u64 } }
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! enum OrderEvent { Placed { total_cents: u64 }, Paid { cents: u64 } }
//!
//! impl DomainEvent for OrderEvent {
//!     fn event_type(&self) -> EventType {
//!         match self {
//!             OrderEvent::Placed { .. } => event_type!("order.placed"),
//!             OrderEvent::Paid { .. } => event_type!("order.paid"),
//!         }
//!     }
//!     fn source(&self) -> Source { source!("order-service") }
//! }
//!
//! #[derive(Debug, PartialEq)]
//! enum OrderError { AlreadyPlaced, NotPlaced, Overpaid }
//! impl std::fmt::Display for OrderError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         write!(f, "{self:?}")
//!     }
//! }
//! impl std::error::Error for OrderError {}
//!
//! impl Aggregate for Order {
//!     const TYPE: &'static str = "order";
//!     type Command = OrderCommand;
//!     type Event = OrderEvent;
//!     type Error = OrderError;
//!
//!     fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
//!         match command {
//!             OrderCommand::Place { .. } if self.placed => Err(OrderError::AlreadyPlaced),
//!             OrderCommand::Place { total_cents } => Ok(vec![OrderEvent::Placed { total_cents }]),
//!             OrderCommand::Pay { .. } if !self.placed => Err(OrderError::NotPlaced),
//!             OrderCommand::Pay { cents } if self.paid_cents + cents > self.total_cents => {
//!                 Err(OrderError::Overpaid)
//!             }
//!             OrderCommand::Pay { cents } => Ok(vec![OrderEvent::Paid { cents }]),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: &OrderEvent) {
//!         match event {
//!             OrderEvent::Placed { total_cents } => {
//!                 self.placed = true;
//!                 self.total_cents = *total_cents;
//!             }
//!             OrderEvent::Paid { cents } => self.paid_cents += cents,
//!         }
//!     }
//! }
//!
//! // The domain logic alone:
//! AggregateTest::<Order>::given([OrderEvent::Placed { total_cents: 500 }])
//!     .when(OrderCommand::Pay { cents: 600 })
//!     .then_err(|e| *e == OrderError::Overpaid);
//!
//! // Against a store:
//! let orders = Repository::<Order, _>::new(InMemoryStore::new())
//!     .cache(10_000)
//!     .retry_on_conflict(5);
//! orders.execute("7", OrderCommand::Place { total_cents: 500 })?;
//! let paid = orders.execute("7", OrderCommand::Pay { cents: 200 })?;
//! assert_eq!(paid.version, 2);
//! assert_eq!(paid.events, [OrderEvent::Paid { cents: 200 }]);
//!
//! let refused = orders.execute("7", OrderCommand::Pay { cents: 400 });
//! assert!(matches!(refused, Err(CommandError::Rejected(OrderError::Overpaid))));
//!
//! let order = orders.load("7")?;
//! assert_eq!((order.version, order.state.paid_cents), (2, 200));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod cache;
mod command;
mod error;
mod harness;
mod projection;
mod recent;
mod repository;
mod saga;

pub use aggregate::{Aggregate, Snapshotted};
pub use command::{CommandId, CommandMeta};
pub use error::{CommandError, LoadError, StoreError};
pub use harness::{AggregateTest, AggregateTestOutcome};
pub use projection::{project, Projection, ProjectionHandle, Projector, Query};
pub use repository::{Executed, Loaded, Repository};
pub use saga::{
    saga, ProcessManager, Saga, SagaContext, SagaHandle, SagaRecord, Trigger, WallClock,
};
