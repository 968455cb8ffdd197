//! Subscribing: the subscribe verbs on [`Bus`], their [`SubscribeOptions`], and
//! `unsubscribe`.

use crate::dispatch::{
    Ack, Control, Handler, Inside, IntoPatterns, Reply, ResilienceSpec, Role, SubscribeSpec,
};
use crate::event::Event;
use crate::outcome::SubscriptionId;
use crate::resilience::{BreakerConfig, RetryPolicy};
use crate::sync::Ordering;

use super::error::SubscribeError;
use super::mode::ProducerMode;
use super::Bus;

/// The most lanes a partitioned handler may have.
pub const MAX_LANES: usize = 1024;

impl<P: Send + Sync + 'static, M: ProducerMode> Bus<P, M> {
    /// Subscribes `handler` to the event types matching `patterns` (one pattern or
    /// several; see [`Pattern`](crate::pattern::Pattern) for the syntax). A handler matched by
    /// several of its patterns gets each event once.
    ///
    /// Returns once the dispatcher has installed the handler (between two batches):
    /// every event published after this returns reaches it.
    pub fn subscribe<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        handler: H,
    ) -> Result<SubscriptionId, SubscribeError> {
        let mut handler = Some(handler);
        self.subscribe_partitioned(patterns, 1, |_| handler.take().expect("one lane"))
    }

    /// Subscribes `handler` to every event — the seed's `SubscribeToAll` (its
    /// `"*"`; in ringbus patterns `*` is exactly one token).
    pub fn subscribe_all<H: Handler<P>>(
        &self,
        handler: H,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.install(None, vec![Box::new(handler)], std::any::type_name::<H>())
    }

    /// Subscribes a partitioned handler: `lanes` instances made by `factory(lane)`,
    /// running in parallel. An event goes to the lane picked by its subject's hash,
    /// so each subject's events stay in order on one lane. Events without a subject
    /// all go to lane 0 (in order).
    pub fn subscribe_partitioned<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        lanes: usize,
        mut factory: impl FnMut(usize) -> H,
    ) -> Result<SubscriptionId, SubscribeError> {
        if lanes == 0 || lanes > MAX_LANES {
            return Err(SubscribeError::InvalidLanes(lanes));
        }
        let patterns = patterns.into_patterns()?;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        let handlers = (0..lanes)
            .map(|lane| Box::new(factory(lane)) as Box<dyn Handler<P>>)
            .collect();
        self.install(Some(patterns), handlers, std::any::type_name::<H>())
    }

    /// Subscribes with failure handling: a retry policy, a circuit breaker, a
    /// bound on the events waiting at this handler, and a name (see
    /// [`SubscribeOptions`]). Needs `P: Clone`: a failed event leaves the ring as a
    /// copy, into this handler's retry queue.
    ///
    /// Every failure that is not retried — a permanent error, a panic, the last
    /// attempt — sends the event to the bus's dead-letter queue with every
    /// attempt's error and time.
    pub fn subscribe_with<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        handler: H,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        P: Clone,
    {
        let mut handler = Some(handler);
        self.subscribe_partitioned_with(patterns, 1, |_| handler.take().expect("one lane"), options)
    }

    /// [`Bus::subscribe_partitioned`] with failure handling (see
    /// [`Bus::subscribe_with`]); each lane has its own retry queue and breaker.
    pub fn subscribe_partitioned_with<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        lanes: usize,
        mut factory: impl FnMut(usize) -> H,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        P: Clone,
    {
        if lanes == 0 || lanes > MAX_LANES {
            return Err(SubscribeError::InvalidLanes(lanes));
        }
        let patterns = patterns.into_patterns()?;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| std::any::type_name::<H>().to_owned());
        let spec = options.into_spec()?;
        let handlers = (0..lanes)
            .map(|lane| Box::new(factory(lane)) as Box<dyn Handler<P>>)
            .collect();
        self.install_with(Some(patterns), handlers, &name, Some(spec))
    }

    fn install(
        &self,
        patterns: Option<Vec<crate::dispatch::Pattern>>,
        handlers: Vec<Box<dyn Handler<P>>>,
        name: &str,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.install_with(patterns, handlers, name, None)
    }

    fn install_with(
        &self,
        patterns: Option<Vec<crate::dispatch::Pattern>>,
        handlers: Vec<Box<dyn Handler<P>>>,
        name: &str,
        resilience: Option<ResilienceSpec<P>>,
    ) -> Result<SubscriptionId, SubscribeError> {
        if Inside::is(self.shared.id(), Role::Dispatch) {
            return Err(SubscribeError::FromHandler);
        }
        let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let spec = SubscribeSpec {
            id,
            patterns,
            handlers,
            name: name.into(),
            resilience,
        };
        let ack = Ack::new();
        if !self
            .shared
            .send_control(Control::Subscribe(spec, ack.clone()))
            || ack.wait() == Reply::Refused
        {
            return Err(SubscribeError::Closed);
        }
        Ok(id)
    }

    /// Removes a subscription. Its handlers get every event published before this
    /// call (they are removed once the dispatcher has dispatched those), then their
    /// `on_shutdown` runs, and the call returns: they receive nothing more.
    /// Events still waiting at them for a retry go to the dead-letter queue.
    pub fn unsubscribe(&self, id: SubscriptionId) -> Result<(), SubscribeError> {
        // From a handler, or while this thread holds a claim (a `publish_with`
        // closure): the removal waits for sequences this very call holds up.
        if Inside::any(self.shared.id()) {
            return Err(SubscribeError::FromHandler);
        }
        let ack = Ack::new();
        // Every publish that returned before this call holds a sequence below the
        // claim count read now.
        let until = self.shared.ring.claimed();
        let msg = Control::Unsubscribe {
            id,
            until,
            ack: ack.clone(),
        };
        if !self.shared.send_control(msg) {
            return Err(SubscribeError::Closed);
        }
        match ack.wait() {
            Reply::Done(0) => Err(SubscribeError::UnknownSubscription(id)),
            Reply::Done(_) => Ok(()),
            Reply::Refused => Err(SubscribeError::Closed),
        }
    }
}

/// How a subscription handles failures. See [`Bus::subscribe_with`].
///
/// ```
/// use ringbus::{resilience::{BreakerConfig, RetryPolicy}, SubscribeOptions};
/// use std::time::Duration;
/// let options = SubscribeOptions::new()
///     .name("projector")
///     .retry(RetryPolicy::exponential(Duration::from_millis(10), 2.0, Duration::from_secs(1), 5))
///     .circuit_breaker(BreakerConfig::consecutive_failures(10, Duration::from_secs(5)))
///     .max_pending(100_000);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    name: Option<String>,
    retry: RetryPolicy,
    breaker: Option<BreakerConfig>,
    max_pending: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscribeOptions {
    /// No retries (failures go straight to the dead-letter queue), no breaker,
    /// at most 1 000 000 events waiting.
    pub fn new() -> Self {
        SubscribeOptions {
            name: None,
            retry: RetryPolicy::none(),
            breaker: None,
            max_pending: 1_000_000,
        }
    }

    /// The handler's name in metrics, failures and dead letters.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A circuit breaker: while open, the handler is not called and its events wait
    /// in its queue, in order — not lost, not counted as failures.
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// The most events that may wait at this handler (for a retry, or behind an
    /// open breaker). Beyond it the oldest waiting event goes to the dead-letter
    /// queue, so a handler that stays broken cannot grow memory without bound.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    fn into_spec<P: Clone>(self) -> Result<ResilienceSpec<P>, SubscribeError> {
        if self.max_pending == 0 {
            return Err(SubscribeError::InvalidMaxPending);
        }
        Ok(ResilienceSpec {
            retry: self.retry,
            breaker: self.breaker,
            max_pending: self.max_pending,
            clone: |e: &Event<P>| e.clone(),
        })
    }
}
