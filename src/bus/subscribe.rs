//! Subscribing: the subscribe verbs on [`Bus`], their [`SubscribeOptions`], and
//! `unsubscribe`.

use crate::dispatch::{
    Ack, Control, FnHandler, Handler, HandlerResult, Inside, IntoPatterns, Pattern, Reply,
    ResilienceSpec, Role, SubscribeSpec,
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
    /// Subscribes the closure `f` to the event types matching `patterns` (one
    /// pattern or several; see [`Pattern`] for the syntax). A closure matched by
    /// several of its patterns gets each event once. Its name in metrics, failures
    /// and dead letters is its patterns' text (`"order.*"`; several joined by
    /// `", "`). Every subscribe verb takes another name with the patterns:
    /// `subscribe(named("emails", "user.*"), f)` ([`named`](crate::pattern::named)),
    /// or through [`SubscribeOptions::name`] in the `_with` verbs.
    ///
    /// `f` takes `&Event<P>` — no annotation needed, the bus knows `P` — and
    /// returns `()` or a `Result` (see [`HandlerResult`]). For a type
    /// implementing [`Handler`] (with `on_start`, `on_batch_end`, `on_shutdown`
    /// hooks) use [`Bus::subscribe_handler`].
    ///
    /// Returns once the dispatcher has installed the handler (between two batches):
    /// every event published after this returns reaches it.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{event_type, source, Bus, Event};
    /// use serde_json::json;
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    ///
    /// let bus = Bus::builder().build()?;
    /// let total = Arc::new(AtomicU64::new(0));
    /// let sum = total.clone();
    /// bus.subscribe("order.*", move |e| {
    ///     sum.fetch_add(e.data["amount"].as_u64().unwrap_or(0), Ordering::Relaxed);
    /// })?;
    /// // A closure that can fail names its error type once, for `?`.
    /// bus.subscribe("order.placed", |e| -> Result<(), serde_json::Error> {
    ///     let amount: u64 = serde_json::from_value(e.data["amount"].clone())?;
    ///     assert!(amount > 0);
    ///     Ok(())
    /// })?;
    ///
    /// let mut publisher = bus.publisher();
    /// publisher.publish(Event::new(event_type!("order.placed"), source!("shop"), json!({"amount": 30})))?;
    /// publisher.publish(Event::new(event_type!("order.refunded"), source!("shop"), json!({"amount": 5})))?;
    ///
    /// let handlers = bus.metrics().handlers;
    /// assert!(handlers.iter().any(|h| &*h.handler == "order.*"));
    /// let report = bus.shutdown()?;
    /// assert_eq!(total.load(Ordering::Relaxed), 35);
    /// assert_eq!(report.counters.failed, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe<F, R>(
        &self,
        patterns: impl IntoPatterns,
        f: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: FnMut(&Event<P>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let (patterns, name) = self.checked(patterns, 1)?;
        let name = name.unwrap_or_else(|| patterns_text(&patterns));
        self.install(
            Some(patterns),
            vec![Box::new(FnHandler::new(f))],
            &name,
            None,
        )
    }

    /// [`Bus::subscribe`] with failure handling: a retry policy, a circuit
    /// breaker, a bound on the events waiting at this handler, and a name (see
    /// [`SubscribeOptions`]; without a name, the patterns' text). Needs
    /// `P: Clone`: a failed event leaves the ring as a copy, into this handler's
    /// retry queue.
    ///
    /// Every failure that is not retried — a permanent error, a panic, the last
    /// attempt — sends the event to the bus's dead-letter queue with every
    /// attempt's error and time.
    ///
    /// # Errors
    /// Besides those of [`Bus::subscribe`]: [`SubscribeError::InvalidMaxPending`],
    /// and [`SubscribeError::InvalidRetryPolicy`] or
    /// [`SubscribeError::InvalidCircuitBreaker`] for a policy or breaker made
    /// from values that cannot work (a backoff factor read from a configuration
    /// file as NaN, say): nothing is subscribed.
    pub fn subscribe_with<F, R>(
        &self,
        patterns: impl IntoPatterns,
        f: F,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        P: Clone,
        F: FnMut(&Event<P>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let (patterns, name) = self.checked(patterns, 1)?;
        let name = name
            .or_else(|| options.name.clone())
            .unwrap_or_else(|| patterns_text(&patterns));
        let spec = options.into_spec()?;
        let handlers = vec![Box::new(FnHandler::new(f)) as Box<dyn Handler<P>>];
        self.install(Some(patterns), handlers, &name, Some(spec))
    }

    /// Subscribes the closure `f` to every event — the seed's `SubscribeToAll`
    /// (its `"*"`; in ringbus patterns `*` is exactly one token). The same as
    /// `subscribe(">", f)`, and named `">"`; name it with
    /// `subscribe(named("audit", ">"), f)`, add failure handling with
    /// [`Bus::subscribe_with`]`(">", f, options)`.
    pub fn subscribe_all<F, R>(&self, f: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: FnMut(&Event<P>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        self.install(None, vec![Box::new(FnHandler::new(f))], ">", None)
    }

    /// Subscribes `handler`, a type implementing [`Handler`], like
    /// [`Bus::subscribe`]. Its name is its type name
    /// ([`std::any::type_name`]); [`Bus::subscribe_handler_with`] gives another.
    pub fn subscribe_handler<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        handler: H,
    ) -> Result<SubscriptionId, SubscribeError> {
        let (patterns, name) = self.checked(patterns, 1)?;
        let name = name.unwrap_or_else(|| std::any::type_name::<H>().to_owned());
        self.install(Some(patterns), vec![Box::new(handler)], &name, None)
    }

    /// [`Bus::subscribe_handler`] with failure handling (see
    /// [`Bus::subscribe_with`]); without a name in `options`, the type name.
    pub fn subscribe_handler_with<H: Handler<P>>(
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

    /// Subscribes a partitioned handler: `lanes` instances made by `factory(lane)`,
    /// running in parallel. An event goes to the lane picked by its subject's hash,
    /// so each subject's events stay in order on one lane. Events without a subject
    /// all go to lane 0 (in order). The name is the handler's type name;
    /// [`Bus::subscribe_partitioned_with`] gives another.
    pub fn subscribe_partitioned<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        lanes: usize,
        mut factory: impl FnMut(usize) -> H,
    ) -> Result<SubscriptionId, SubscribeError> {
        let (patterns, name) = self.checked(patterns, lanes)?;
        let name = name.unwrap_or_else(|| std::any::type_name::<H>().to_owned());
        let handlers = (0..lanes)
            .map(|lane| Box::new(factory(lane)) as Box<dyn Handler<P>>)
            .collect();
        self.install(Some(patterns), handlers, &name, None)
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
        let (patterns, name) = self.checked(patterns, lanes)?;
        let name = name
            .or_else(|| options.name.clone())
            .unwrap_or_else(|| std::any::type_name::<H>().to_owned());
        let spec = options.into_spec()?;
        let handlers = (0..lanes)
            .map(|lane| Box::new(factory(lane)) as Box<dyn Handler<P>>)
            .collect();
        self.install(Some(patterns), handlers, &name, Some(spec))
    }

    /// The patterns, parsed, with the name that came with them (`named`), and
    /// the lane count checked.
    fn checked(
        &self,
        patterns: impl IntoPatterns,
        lanes: usize,
    ) -> Result<(Vec<Pattern>, Option<String>), SubscribeError> {
        if lanes == 0 || lanes > MAX_LANES {
            return Err(SubscribeError::InvalidLanes(lanes));
        }
        let (patterns, name) = patterns.into_named_patterns()?;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        Ok((patterns, name))
    }

    fn install(
        &self,
        patterns: Option<Vec<Pattern>>,
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
    /// call (they are removed once the dispatcher has dispatched those — for
    /// follow-ups, those queued when the dispatcher takes the call; an endless
    /// follow-up chain does not hold the removal up), then their `on_shutdown`
    /// runs, and the call returns: they receive nothing more.
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

impl<P: Send + Sync + 'static, M: ProducerMode> Bus<P, M> {
    /// A request to remove subscription `id` that does not wait for the
    /// dispatcher, to be sent from any thread later — a bus handler's
    /// included, where [`Bus::unsubscribe`] would wait for itself. For the
    /// store's catch-up subscriptions, which remove their forwarder when they
    /// end. The removal then happens as `unsubscribe`'s would.
    pub(crate) fn unsubscriber(&self, id: SubscriptionId) -> impl FnOnce() + Send + 'static {
        let shared = self.shared.clone();
        move || {
            let until = shared.ring.claimed();
            let _ = shared.send_control(Control::Unsubscribe {
                id,
                until,
                ack: Ack::new(),
            });
        }
    }
}

/// The name of a subscription to `patterns` made without one: their text.
fn patterns_text(patterns: &[Pattern]) -> String {
    let texts: Vec<&str> = patterns.iter().map(Pattern::as_str).collect();
    texts.join(", ")
}

/// How a subscription handles failures, and its name. See [`Bus::subscribe_with`].
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

    /// The subscription's name in metrics, failures and dead letters. Default:
    /// for a closure, its patterns' text (`"order.*"`); for a [`Handler`] type,
    /// its type name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The retry policy. An invalid one (see
    /// [`RetryPolicy::validate`]) makes the subscribe call fail with
    /// [`SubscribeError::InvalidRetryPolicy`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A circuit breaker: while open, the handler is not called and its events wait
    /// in its queue, in order — not lost, not counted as failures. An invalid
    /// configuration (see [`BreakerConfig::validate`]) makes the subscribe call
    /// fail with [`SubscribeError::InvalidCircuitBreaker`].
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
        self.retry
            .validate()
            .map_err(SubscribeError::InvalidRetryPolicy)?;
        if let Some(breaker) = &self.breaker {
            breaker
                .validate()
                .map_err(SubscribeError::InvalidCircuitBreaker)?;
        }
        Ok(ResilienceSpec {
            retry: self.retry,
            breaker: self.breaker,
            max_pending: self.max_pending,
            clone: |e: &Event<P>| e.clone(),
        })
    }
}
