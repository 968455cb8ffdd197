//! The given/when/then test harness for aggregates, as cqrs-es
//! (`TestFramework`) and disintegrate (`TestHarness`) ship it: no store, no
//! repository — the events so far, one command, the events or error expected.

use std::fmt;

use super::aggregate::Aggregate;

/// An aggregate test: **given** these events happened, **when** this command
/// arrives, **then** these events (or this error) follow.
///
/// For tests: the `then…` methods **panic** with a message showing what was
/// expected and what came, like `assert_eq!`.
///
/// # Examples
/// ```
/// use ringbus::cqrs::{Aggregate, AggregateTest};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Default)] struct Counter { value: u64 }
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)] struct Added(u64);
/// # ringbus::domain_event!(Added => "counter.added", source = "counter");
/// # #[derive(Debug)] struct Overflow;
/// # impl std::fmt::Display for Overflow { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("overflow") } }
/// # impl std::error::Error for Overflow {}
/// # impl Aggregate for Counter {
/// #     const TYPE: &'static str = "counter";
/// #     type Command = u64; type Event = Added; type Error = Overflow;
/// #     fn handle(&self, n: u64) -> Result<Vec<Added>, Overflow> {
/// #         self.value.checked_add(n).ok_or(Overflow)?; Ok(vec![Added(n)]) }
/// #     fn apply(&mut self, e: &Added) { self.value += e.0 }
/// # }
/// AggregateTest::<Counter>::given([Added(1), Added(2)])
///     .when(3)
///     .then([Added(3)]);
/// let after = AggregateTest::<Counter>::given_none().when(7).then([Added(7)]);
/// assert_eq!(after.value, 7);
/// AggregateTest::<Counter>::given([Added(u64::MAX)])
///     .when(1)
///     .then_err(|e| matches!(e, Overflow));
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
    given: usize,
}

impl<A: Aggregate> AggregateTest<A> {
    /// The aggregate after `events` (applied in order to `A::default()`).
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        let mut given = 0;
        for event in events {
            state.apply(&event);
            given += 1;
        }
        AggregateTest { state, given }
    }

    /// The aggregate before its first event.
    pub fn given_none() -> Self {
        Self::given([])
    }

    /// Decides `command` on the aggregate.
    pub fn when(self, command: A::Command) -> AggregateTestOutcome<A> {
        let result = self.state.handle(command);
        AggregateTestOutcome {
            state: self.state,
            given: self.given,
            result,
        }
    }
}

impl<A: Aggregate> fmt::Debug for AggregateTest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("aggregate", &A::TYPE)
            .field("given", &self.given)
            .finish_non_exhaustive()
    }
}

/// What a command decided in an [`AggregateTest`]: check it with
/// [`then`](AggregateTestOutcome::then) or
/// [`then_err`](AggregateTestOutcome::then_err).
pub struct AggregateTestOutcome<A: Aggregate> {
    state: A,
    given: usize,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> AggregateTestOutcome<A> {
    /// Asserts the command produced exactly `expected`, in order, and returns
    /// the aggregate after applying them (for further assertions on its state).
    ///
    /// # Panics
    /// If the command was refused, or produced other events; the message lists
    /// both sequences and the first index where they differ.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A
    where
        A::Event: PartialEq + fmt::Debug,
    {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!(
                "{} test (given {} events): expected the events\n  {expected:?}\nbut the command was rejected: {e} ({e:?})",
                A::TYPE,
                self.given
            ),
        };
        if events != expected {
            let at = events
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(events.len().min(expected.len()));
            panic!(
                "{} test (given {} events): the command produced other events than expected \
                 (first difference at index {at})\nexpected: {expected:?}\n     got: {events:?}",
                A::TYPE,
                self.given
            );
        }
        let mut state = self.state;
        for event in &events {
            state.apply(event);
        }
        state
    }

    /// Asserts the command was refused with an error `matcher` accepts (e.g.
    /// `|e| matches!(e, OrderError::AlreadyPaid)`), and returns the error.
    ///
    /// # Panics
    /// If the command produced events, or `matcher` returns `false`.
    #[track_caller]
    pub fn then_err(self, matcher: impl FnOnce(&A::Error) -> bool) -> A::Error
    where
        A::Event: fmt::Debug,
    {
        match self.result {
            Ok(events) => panic!(
                "{} test (given {} events): expected a rejection, but the command produced {events:?}",
                A::TYPE,
                self.given
            ),
            Err(e) if matcher(&e) => e,
            Err(e) => panic!(
                "{} test (given {} events): the command was rejected with an error the matcher does not accept: {e} ({e:?})",
                A::TYPE,
                self.given
            ),
        }
    }
}

impl<A: Aggregate> fmt::Debug for AggregateTestOutcome<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTestOutcome")
            .field("aggregate", &A::TYPE)
            .field("given", &self.given)
            .field(
                "result",
                &match &self.result {
                    Ok(events) => format!("{} events", events.len()),
                    Err(e) => format!("rejected: {e}"),
                },
            )
            .finish_non_exhaustive()
    }
}
