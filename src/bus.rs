//! The public facade: [`Bus::builder`], [`Bus`], [`Publisher`], their errors, and
//! shutdown.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use std::sync::Mutex as StdMutex;

use crate::dispatch::{
    breaker_from_code, Ack, BreakerListener, BusStats, Control, ControlQueue, DispatchConfig,
    Dispatcher, Execution, Executor, FailurePolicy, FlowLog, Handler, Inside, IntoPatterns,
    LogFailures, PatternError, Redrive, Reply, ResilienceSpec, Role, Services, Shared,
    ShutdownReport, Stats, SubscribeSpec, SubscriptionId,
};
use crate::metrics::{BusMetrics, HandlerMetrics, LocalHistogram, MetricsSnapshot};
use crate::resilience::{
    BreakerConfig, BreakerTransition, Clock, DeadLetter, DeadLetterInfo, DeadLetterQueue,
    DlqFilter, DlqFullPolicy, GuardedClock, RetryPolicy, SystemClock,
};
#[cfg(not(loom))]
use crate::resilience::{ClockWaker, Wake};
use crate::ring::{ClaimError, MpCursor, Producers, Ring, SpCursor, WaitStrategy};
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};
use crate::Event;

/// Type-level producer mode: many producers ([`Multi`], the default) or one
/// ([`Single`]).
pub trait ProducerMode: sealed::Sealed + Send + 'static {}

/// Many producers: `bus.publisher()` hands out cloneable publishers that claim slots
/// with one `fetch_add` each.
#[derive(Debug)]
pub enum Multi {}

/// One producer: [`BusBuilder::build`] returns the only publisher, which claims slots
/// without any atomic read-modify-write on the shared claim cursor. It is not
/// `Clone`, so the type system rules out a second producer.
#[derive(Debug)]
pub enum Single {}

impl ProducerMode for Multi {}
impl ProducerMode for Single {}

mod sealed {
    pub trait Sealed {
        /// Single producer (else multi).
        const SINGLE: bool;
    }
    impl Sealed for super::Multi {
        const SINGLE: bool = false;
    }
    impl Sealed for super::Single {
        const SINGLE: bool = true;
    }
}

/// The ring sequencer for mode `M`.
fn producers<M: ProducerMode>() -> Producers {
    if M::SINGLE {
        Producers::Single
    } else {
        Producers::Multi
    }
}

/// Why a bus could not be built.
#[derive(Debug)]
pub struct BuildError {
    kind: BuildErrorKind,
}

/// What was wrong with a bus configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// `capacity(0)`.
    ZeroCapacity,
    /// The capacity is not a power of two.
    CapacityNotPowerOfTwo(usize),
    /// The capacity exceeds [`MAX_CAPACITY`].
    CapacityTooLarge(usize),
    /// `max_batch(0)`.
    ZeroMaxBatch,
    /// `Execution::Pool { threads: 0 }`.
    ZeroThreads,
    /// `Execution::Pool { threads }` above [`MAX_POOL_THREADS`].
    TooManyThreads(usize),
    /// `dead_letter_queue(0, _)`.
    ZeroDeadLetterCapacity,
    /// `flow_log(0)`.
    ZeroFlowLogCapacity,
    /// The thread name contains a NUL byte (threads cannot be named so).
    InvalidThreadName(String),
    /// The rayon pool could not be built.
    Pool(rayon::ThreadPoolBuildError),
    /// The dispatcher thread could not be spawned.
    Spawn(std::io::Error),
}

impl BuildError {
    /// What went wrong.
    pub fn kind(&self) -> &BuildErrorKind {
        &self.kind
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BuildErrorKind::ZeroCapacity => f.write_str("ring capacity must not be 0"),
            BuildErrorKind::CapacityNotPowerOfTwo(n) => {
                write!(f, "ring capacity must be a power of two, got {n}")
            }
            BuildErrorKind::CapacityTooLarge(n) => {
                write!(f, "ring capacity {n} exceeds the maximum {MAX_CAPACITY}")
            }
            BuildErrorKind::ZeroMaxBatch => f.write_str("max batch size must not be 0"),
            BuildErrorKind::ZeroThreads => f.write_str("a handler pool needs at least 1 thread"),
            BuildErrorKind::TooManyThreads(n) => write!(
                f,
                "a handler pool of {n} threads exceeds the maximum {MAX_POOL_THREADS}"
            ),
            BuildErrorKind::ZeroDeadLetterCapacity => {
                f.write_str("the dead-letter queue needs a capacity of at least 1")
            }
            BuildErrorKind::ZeroFlowLogCapacity => {
                f.write_str("the flow log needs a capacity of at least 1")
            }
            BuildErrorKind::InvalidThreadName(n) => {
                write!(f, "thread name {n:?} contains a NUL byte")
            }
            BuildErrorKind::Pool(e) => write!(f, "could not build the handler pool: {e}"),
            BuildErrorKind::Spawn(e) => write!(f, "could not spawn the dispatcher thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            BuildErrorKind::Pool(e) => Some(e),
            BuildErrorKind::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// The largest ring: 2^24 slots.
pub const MAX_CAPACITY: usize = 1 << 24;

/// The most threads an internal handler pool may have.
pub const MAX_POOL_THREADS: usize = 1024;

/// Configures and builds a [`Bus`]. Made by [`Bus::builder`].
pub struct BusBuilder<P = serde_json::Value, M = Multi> {
    capacity: usize,
    producer_wait: WaitStrategy,
    consumer_wait: WaitStrategy,
    max_batch: usize,
    execution: Execution,
    thread_name: String,
    policy: Option<Box<dyn FailurePolicy<P>>>,
    extras: Extras,
    _mode: PhantomData<M>,
}

/// Builder settings for failure handling and observability.
#[derive(Clone)]
struct Extras {
    clock: StdArc<dyn Clock>,
    dlq_capacity: usize,
    dlq_policy: DlqFullPolicy,
    metrics: bool,
    flow_log: Option<usize>,
    retry_drain: Duration,
    on_breaker: Option<BreakerListener>,
}

impl Default for Extras {
    fn default() -> Self {
        Extras {
            clock: StdArc::new(SystemClock::new()),
            dlq_capacity: 10_000,
            dlq_policy: DlqFullPolicy::default(),
            metrics: true,
            flow_log: None,
            retry_drain: Duration::from_secs(5),
            on_breaker: None,
        }
    }
}

impl<P, M> fmt::Debug for BusBuilder<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusBuilder")
            .field("capacity", &self.capacity)
            .field("producer_wait", &self.producer_wait)
            .field("consumer_wait", &self.consumer_wait)
            .field("max_batch", &self.max_batch)
            .field("execution", &self.execution)
            .field("thread_name", &self.thread_name)
            .finish_non_exhaustive()
    }
}

impl<P: Send + Sync + 'static, M: ProducerMode> BusBuilder<P, M> {
    fn with_mode<N>(self) -> BusBuilder<P, N> {
        BusBuilder {
            capacity: self.capacity,
            producer_wait: self.producer_wait,
            consumer_wait: self.consumer_wait,
            max_batch: self.max_batch,
            execution: self.execution,
            thread_name: self.thread_name,
            policy: self.policy,
            extras: self.extras,
            _mode: PhantomData,
        }
    }

    /// Ring slots: a power of two, at most [`MAX_CAPACITY`]. Default 4096.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// One producer: `build` returns the bus and its only [`Publisher`].
    pub fn single_producer(self) -> BusBuilder<P, Single> {
        self.with_mode()
    }

    /// Many producers (the default): `bus.publisher()` hands out cloneable publishers.
    pub fn multi_producer(self) -> BusBuilder<P, Multi> {
        self.with_mode()
    }

    /// The wait strategy for both the dispatcher and producers waiting for space.
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.producer_wait = strategy;
        self.consumer_wait = strategy;
        self
    }

    /// How producers wait for free slots when the ring is full.
    pub fn producer_wait(mut self, strategy: WaitStrategy) -> Self {
        self.producer_wait = strategy;
        self
    }

    /// How the dispatcher waits for events.
    pub fn consumer_wait(mut self, strategy: WaitStrategy) -> Self {
        self.consumer_wait = strategy;
        self
    }

    /// The most events the dispatcher takes in one batch. Default: the capacity.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Where handlers run. Default: [`Execution::default`].
    pub fn execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// The dispatcher thread's name. Default `"ringbus-dispatch"`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// What happens after a handler fails. Default: [`LogFailures`].
    pub fn failure_policy(mut self, policy: impl FailurePolicy<P>) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// The clock retries and circuit breakers run on. Default: the system's
    /// monotonic clock. Tests pass a [`ManualClock`](crate::resilience::ManualClock)
    /// and advance it instead of sleeping through backoffs.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.extras.clock = StdArc::new(clock);
        self
    }

    /// The dead-letter queue's capacity and what happens when it is full. Default:
    /// 10 000 letters, [`DlqFullPolicy::DropOldest`] (counted in the metrics).
    pub fn dead_letter_queue(mut self, capacity: usize, when_full: DlqFullPolicy) -> Self {
        self.extras.dlq_capacity = capacity;
        self.extras.dlq_policy = when_full;
        self
    }

    /// Whether to sample handler time and latency histograms and batch sizes.
    /// Counters are always kept. Default: on.
    pub fn metrics(mut self, on: bool) -> Self {
        self.extras.metrics = on;
        self
    }

    /// Keeps the last `capacity` handler calls in an in-memory [`FlowLog`]
    /// (off by default: it costs a record per call).
    pub fn flow_log(mut self, capacity: usize) -> Self {
        self.extras.flow_log = Some(capacity);
        self
    }

    /// How long `shutdown` keeps running due retries after the ring is drained.
    /// Events still waiting then go to the dead-letter queue and are listed in the
    /// report's `undelivered`. Default 5 s.
    pub fn retry_drain_timeout(mut self, timeout: Duration) -> Self {
        self.extras.retry_drain = timeout;
        self
    }

    /// Called on every circuit-breaker state change, on the thread running the
    /// handler.
    pub fn on_breaker_change(
        mut self,
        listener: impl Fn(SubscriptionId, &str, BreakerTransition) + Send + Sync + 'static,
    ) -> Self {
        self.extras.on_breaker = Some(StdArc::new(listener));
        self
    }

    fn err(kind: BuildErrorKind) -> BuildError {
        BuildError { kind }
    }

    fn start(self) -> Result<Bus<P, M>, BuildError> {
        let cap = self.capacity;
        if cap == 0 {
            return Err(Self::err(BuildErrorKind::ZeroCapacity));
        }
        if !cap.is_power_of_two() {
            return Err(Self::err(BuildErrorKind::CapacityNotPowerOfTwo(cap)));
        }
        if cap > MAX_CAPACITY {
            return Err(Self::err(BuildErrorKind::CapacityTooLarge(cap)));
        }
        if self.max_batch == 0 {
            return Err(Self::err(BuildErrorKind::ZeroMaxBatch));
        }
        if self.extras.dlq_capacity == 0 {
            return Err(Self::err(BuildErrorKind::ZeroDeadLetterCapacity));
        }
        if self.extras.flow_log == Some(0) {
            return Err(Self::err(BuildErrorKind::ZeroFlowLogCapacity));
        }
        if self.thread_name.contains('\0') {
            return Err(Self::err(BuildErrorKind::InvalidThreadName(
                self.thread_name,
            )));
        }
        let exec = match self.execution {
            Execution::Inline => Executor::Inline,
            Execution::SharedPool(pool) => Executor::Pool(pool),
            Execution::Pool { threads: 0 } => return Err(Self::err(BuildErrorKind::ZeroThreads)),
            Execution::Pool { threads } if threads > MAX_POOL_THREADS => {
                return Err(Self::err(BuildErrorKind::TooManyThreads(threads)))
            }
            Execution::Pool { threads } => {
                let name = self.thread_name.clone();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(move |i| format!("{name}-pool-{i}"))
                    .build()
                    .map_err(|e| Self::err(BuildErrorKind::Pool(e)))?;
                Executor::Pool(StdArc::new(pool))
            }
        };
        let shared = Arc::new(Shared {
            ring: Ring::new(
                cap,
                producers::<M>(),
                self.producer_wait,
                self.consumer_wait,
            ),
            control: ControlQueue::new(),
            stats: Stats::default(),
            handlers: StdMutex::new(Vec::new()),
            batch_sizes: StdMutex::new(LocalHistogram::new()),
            timer_kick: AtomicBool::new(false),
        });
        let extras = self.extras;
        // A clock that jumps (a manual clock) wakes the dispatcher's retry timer.
        // (Loom's `Arc` has no weak references; the models use the system clock.)
        // The waker does not keep the bus alive, and the clock drops it once the bus
        // is gone.
        #[cfg(not(loom))]
        {
            let weak: std::sync::Weak<dyn Wake> = Arc::downgrade(&shared) as _;
            extras.clock.set_waker(ClockWaker::weak(weak));
        }
        let dlq = DeadLetterQueue::new(extras.dlq_capacity, extras.dlq_policy);
        let flow_log = extras.flow_log.map(|n| StdArc::new(FlowLog::new(n)));
        let policy = self
            .policy
            .unwrap_or_else(|| Box::new(LogFailures::default()));
        let max_batch = self.max_batch.min(cap) as u64;
        let config = DispatchConfig {
            max_batch,
            exec,
            policy,
            services: Services {
                bus: shared.id(),
                clock: GuardedClock::new(extras.clock.clone()),
                dlq: dlq.clone(),
                on_breaker: extras.on_breaker.clone(),
                metrics: extras.metrics,
                flow_log: flow_log.is_some(),
            },
            flow_log: flow_log.clone(),
            retry_drain: extras.retry_drain,
        };
        let dispatcher = Dispatcher::new(shared.clone(), config);
        let thread = spawn_dispatcher(self.thread_name, dispatcher)
            .map_err(|e| Self::err(BuildErrorKind::Spawn(e)))?;
        Ok(Bus {
            shared,
            thread: Some(thread),
            next_id: AtomicU64::new(1),
            dlq,
            flow_log,
            _mode: PhantomData,
        })
    }
}

/// What the dispatcher thread returns: its report, or the message of a panic that
/// escaped it.
type Outcome = Result<ShutdownReport, String>;
#[cfg(not(loom))]
type JoinHandle = std::thread::JoinHandle<Outcome>;
#[cfg(loom)]
type JoinHandle = loom::thread::JoinHandle<Outcome>;

#[cfg(not(loom))]
fn spawn_dispatcher<P: Send + Sync + 'static>(
    name: String,
    dispatcher: Dispatcher<P>,
) -> std::io::Result<JoinHandle> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || dispatcher.run())
}

#[cfg(loom)]
fn spawn_dispatcher<P: Send + Sync + 'static>(
    _name: String,
    dispatcher: Dispatcher<P>,
) -> std::io::Result<JoinHandle> {
    Ok(loom::thread::spawn(move || dispatcher.run()))
}

impl<P: Send + Sync + 'static> BusBuilder<P, Multi> {
    /// Starts the dispatcher and returns the bus; get publishers with
    /// [`Bus::publisher`].
    pub fn build(self) -> Result<Bus<P, Multi>, BuildError> {
        self.start()
    }
}

/// What a single-producer build returns: the bus and its only publisher.
pub type SingleProducerBus<P> = (Bus<P, Single>, Publisher<P, Single>);

impl<P: Send + Sync + 'static> BusBuilder<P, Single> {
    /// Starts the dispatcher and returns the bus with its only publisher.
    pub fn build(self) -> Result<SingleProducerBus<P>, BuildError> {
        let bus = self.start()?;
        let publisher = Publisher::new(bus.shared.clone());
        Ok((bus, publisher))
    }
}

/// An in-process event bus: a ring, a dispatcher thread, and handlers.
///
/// `P` is the payload type (default: dynamic JSON). `M` is [`Multi`] (default) or
/// [`Single`] producer. Dropping the bus shuts it down like [`Bus::shutdown`].
///
/// # Examples
/// ```
/// use ringbus::{event_type, source, Bus, Event, HandlerError};
/// use serde_json::json;
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
///
/// let bus = Bus::builder().capacity(1024).build().unwrap();
/// let orders = Arc::new(AtomicUsize::new(0));
/// let seen = orders.clone();
/// bus.subscribe("order.*", move |_e: &Event| -> Result<(), HandlerError> {
///     seen.fetch_add(1, Ordering::Relaxed);
///     Ok(())
/// }).unwrap();
///
/// let mut publisher = bus.publisher();
/// publisher.publish(Event::new(event_type!("order.placed"), source!("shop"), json!({"id": 1}))).unwrap();
/// publisher.publish(Event::new(event_type!("user.registered"), source!("shop"), json!({}))).unwrap();
///
/// let report = bus.shutdown().unwrap();
/// assert_eq!(report.published, 2);
/// assert_eq!(orders.load(Ordering::Relaxed), 1);
/// ```
pub struct Bus<P = serde_json::Value, M = Multi> {
    shared: Arc<Shared<P>>,
    thread: Option<JoinHandle>,
    next_id: AtomicU64,
    dlq: DeadLetterQueue<P>,
    flow_log: Option<StdArc<FlowLog>>,
    _mode: PhantomData<M>,
}

impl<P, M> fmt::Debug for Bus<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Why a subscription change was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscribeError {
    /// A pattern is malformed.
    InvalidPattern(PatternError),
    /// No pattern was given.
    NoPatterns,
    /// A partitioned subscription needs at least one lane (and at most 1024).
    InvalidLanes(usize),
    /// Called from inside one of this bus's handlers or hooks (or, for
    /// `unsubscribe`, from a `publish_with` closure or `publish_batch` iterator of
    /// one of its publishers): waiting for the dispatcher from there would wait
    /// for this very call.
    FromHandler,
    /// The dispatcher has stopped.
    Closed,
    /// `unsubscribe` with an id that is not subscribed (any more).
    UnknownSubscription(SubscriptionId),
    /// `SubscribeOptions::max_pending(0)`.
    InvalidMaxPending,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidPattern(e) => fmt::Display::fmt(e, f),
            SubscribeError::NoPatterns => f.write_str("no pattern given"),
            SubscribeError::InvalidLanes(n) => {
                write!(f, "a partitioned handler needs 1 to 1024 lanes, got {n}")
            }
            SubscribeError::FromHandler => f.write_str(
                "subscribe/unsubscribe called from a handler would wait for its own dispatcher",
            ),
            SubscribeError::Closed => f.write_str("the bus has shut down"),
            SubscribeError::UnknownSubscription(id) => write!(f, "{id} is not subscribed"),
            SubscribeError::InvalidMaxPending => f.write_str("max_pending must be at least 1"),
        }
    }
}

impl std::error::Error for SubscribeError {}

impl From<PatternError> for SubscribeError {
    fn from(e: PatternError) -> Self {
        SubscribeError::InvalidPattern(e)
    }
}

/// The most lanes a partitioned handler may have.
pub const MAX_LANES: usize = 1024;

/// Why [`Bus::shutdown`] returned no report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Called from inside the bus — one of its handlers or hooks, or a
    /// `publish_with` closure or `publish_batch` iterator of one of its
    /// multi-producer publishers — where waiting for the dispatcher would wait
    /// for this very call. The bus is closed (publishes are refused from now on);
    /// the dispatcher delivers every accepted event and stops by itself once the
    /// call returns. No report: the numbers are not final yet.
    FromInside,
    /// The dispatcher thread panicked (a bug in ringbus: every call into user
    /// code is guarded). The ring was closed at once, so no publish after that
    /// returned `Ok`; events accepted before it may not have been delivered.
    DispatcherPanicked(String),
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::FromInside => f.write_str(
                "shutdown called from inside the bus: closed, the dispatcher stops by itself",
            ),
            ShutdownError::DispatcherPanicked(m) => write!(f, "the dispatcher panicked: {m}"),
        }
    }
}

impl std::error::Error for ShutdownError {}

impl<P: Send + Sync + 'static> Bus<P, Multi> {
    /// A builder with the defaults: multi producer, capacity 4096, blocking waits,
    /// max batch = capacity, [`Execution::default`], [`LogFailures`].
    pub fn builder() -> BusBuilder<P, Multi> {
        BusBuilder {
            capacity: 4096,
            producer_wait: WaitStrategy::default(),
            consumer_wait: WaitStrategy::default(),
            max_batch: usize::MAX,
            execution: Execution::default(),
            thread_name: "ringbus-dispatch".to_owned(),
            policy: None,
            extras: Extras::default(),
            _mode: PhantomData,
        }
    }

    /// A new publisher. Publishers are `Clone + Send`: one per producing thread.
    pub fn publisher(&self) -> Publisher<P, Multi> {
        Publisher::new(self.shared.clone())
    }
}

impl<P: Send + Sync + 'static, M: ProducerMode> Bus<P, M> {
    /// Subscribes `handler` to the event types matching `patterns` (one pattern or
    /// several; see [`Pattern`](crate::Pattern) for the syntax). A handler matched by
    /// several of its patterns gets each event once.
    ///
    /// Returns once the dispatcher has installed the handler (between two batches):
    /// every event published after this returns reaches it.
    pub fn subscribe<H: Handler<P>>(
        &self,
        patterns: impl IntoPatterns,
        handler: H,
    ) -> Result<SubscriptionId, SubscribeError> {
        let patterns = patterns.into_patterns()?;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        self.install(
            Some(patterns),
            vec![Box::new(handler)],
            std::any::type_name::<H>(),
        )
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
        let patterns = patterns.into_patterns()?;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| std::any::type_name::<H>().to_owned());
        let spec = options.into_spec()?;
        self.install_with(Some(patterns), vec![Box::new(handler)], &name, Some(spec))
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

    /// The dead-letter queue: inspect, redrive, discard.
    pub fn dead_letters(&self) -> DeadLetters<P> {
        DeadLetters {
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The flow log, if the builder enabled it ([`BusBuilder::flow_log`]).
    pub fn flow_log(&self) -> Option<StdArc<FlowLog>> {
        self.flow_log.clone()
    }

    /// A snapshot of every counter and histogram, per bus and per handler.
    /// `snapshot.to_prometheus()` renders it in the Prometheus text format.
    pub fn metrics(&self) -> MetricsSnapshot {
        let stats = &self.shared.stats;
        let ring = &self.shared.ring;
        // Only publishes that completed: a producer still waiting for a slot has
        // claimed a sequence but published nothing.
        let published = ring.published_relaxed();
        let skipped = stats.skipped.load(Ordering::Relaxed);
        let consumed = ring.consumed_relaxed();
        let batch_size = {
            let h = self
                .shared
                .batch_sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            h.summary()
        };
        let bus = BusMetrics {
            published: published.saturating_sub(skipped),
            dispatched: stats.dispatched.load(Ordering::Relaxed),
            delivered: stats.delivered.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            panicked: stats.panicked.load(Ordering::Relaxed),
            retried: stats.retried.load(Ordering::Relaxed),
            dead_lettered: stats.dead_lettered.load(Ordering::Relaxed),
            dlq_len: self.dlq.len() as u64,
            dlq_evicted: self.dlq.evicted(),
            ring_capacity: ring.capacity(),
            ring_occupancy: published.saturating_sub(consumed),
            batch_size,
        };
        let infos = self
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let handlers = infos
            .iter()
            .map(|h| {
                let m = &h.metrics;
                let (handler_time_ns, latency_ns) = m.summaries();
                HandlerMetrics {
                    subscription: h.sub,
                    handler: h.name.to_string(),
                    lane: h.lane,
                    handled: m.handled.load(std::sync::atomic::Ordering::Relaxed),
                    errors: m.errors.load(std::sync::atomic::Ordering::Relaxed),
                    panics: m.panics.load(std::sync::atomic::Ordering::Relaxed),
                    retries: m.retries.load(std::sync::atomic::Ordering::Relaxed),
                    dead_lettered: m.dead_lettered.load(std::sync::atomic::Ordering::Relaxed),
                    pending: m.pending.load(std::sync::atomic::Ordering::Relaxed),
                    breaker: breaker_from_code(
                        m.breaker.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    handler_time_ns,
                    latency_ns,
                }
            })
            .collect();
        MetricsSnapshot { bus, handlers }
    }

    fn install(
        &self,
        patterns: Option<Vec<crate::Pattern>>,
        handlers: Vec<Box<dyn Handler<P>>>,
        name: &str,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.install_with(patterns, handlers, name, None)
    }

    fn install_with(
        &self,
        patterns: Option<Vec<crate::Pattern>>,
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

    /// The dispatcher's counters now.
    pub fn stats(&self) -> BusStats {
        self.shared.stats.snapshot()
    }

    /// Ring slots.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Shuts down gracefully: publishes from now on fail with `Closed` (returning
    /// the event); every event whose publish returned `Ok` is dispatched; handlers'
    /// `on_shutdown` hooks run; threads are joined. A publish racing with this is
    /// either delivered or returned to its caller, never lost and never both.
    ///
    /// # Errors
    /// [`ShutdownError::FromInside`] when called from inside this bus (a handler
    /// or hook of it, or a `publish_with` closure / `publish_batch` iterator of one
    /// of its publishers): the bus is closed and stops by itself once the call
    /// returns, but no report can be had there.
    /// [`ShutdownError::DispatcherPanicked`] if the dispatcher thread died.
    pub fn shutdown(mut self) -> Result<ShutdownReport, ShutdownError> {
        self.close_and_join()
    }

    fn close_and_join(&mut self) -> Result<ShutdownReport, ShutdownError> {
        self.shared.ring.close();
        // A full `Block` dead-letter queue must not hold shutdown up.
        self.dlq.stop_blocking();
        // From inside the bus, joining would wait for this very call: close only;
        // the dispatcher drains and exits by itself.
        if Inside::any(self.shared.id()) {
            return Err(ShutdownError::FromInside);
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(report))) => Ok(report),
            Some(Ok(Err(message))) => Err(ShutdownError::DispatcherPanicked(message)),
            // The guard in `Dispatcher::run` makes a panic of the thread itself
            // unreachable; say so if it happens anyway.
            Some(Err(_)) => Err(ShutdownError::DispatcherPanicked(
                "the dispatcher thread panicked".into(),
            )),
            None => Err(ShutdownError::FromInside),
        }
    }
}

impl<P, M> Drop for Bus<P, M> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.ring.close();
            self.dlq.stop_blocking();
            if !Inside::any(self.shared.id()) {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

// ---- failure handling --------------------------------------------------------------

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

/// A handle on a bus's dead-letter queue. Cheap to clone; outlives the bus (the
/// letters stay readable after shutdown).
pub struct DeadLetters<P> {
    dlq: DeadLetterQueue<P>,
    shared: Arc<Shared<P>>,
}

impl<P> Clone for DeadLetters<P> {
    fn clone(&self) -> Self {
        DeadLetters {
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<P> fmt::Debug for DeadLetters<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("len", &self.dlq.len())
            .finish()
    }
}

impl<P: Send + Sync + 'static> DeadLetters<P> {
    /// Letters held now.
    pub fn len(&self) -> usize {
        self.dlq.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.dlq.is_empty()
    }

    /// Letters dropped because the queue was full (policy `DropOldest`).
    pub fn evicted(&self) -> u64 {
        self.dlq.evicted()
    }

    /// Summaries of the letters matching `filter`, oldest first.
    pub fn list(&self, filter: &DlqFilter) -> Vec<DeadLetterInfo> {
        self.dlq.list(filter)
    }

    /// A copy of one letter.
    pub fn get(&self, id: u64) -> Option<DeadLetter<P>>
    where
        P: Clone,
    {
        self.dlq.get(id)
    }

    /// Removes one letter for good.
    pub fn discard(&self, id: u64) -> bool {
        self.dlq.discard(id)
    }

    /// Removes every letter matching `filter`; returns how many.
    pub fn discard_matching(&self, filter: &DlqFilter) -> usize {
        self.dlq.discard_matching(filter)
    }

    /// Delivers one letter again to its handler (a fresh set of attempts under the
    /// subscription's retry policy, behind any waiting event of its subject).
    /// Returns once the dispatcher has queued it; `Ok(false)` if no such letter.
    ///
    /// # Errors
    /// A refused redrive leaves the letter where it was, with its id:
    /// [`SubscribeError::Closed`] after shutdown (letters stay readable),
    /// [`SubscribeError::FromHandler`] from one of this bus's handlers,
    /// [`SubscribeError::UnknownSubscription`] when the letter's subscription is
    /// gone (or keeps no retry queue).
    pub fn redrive(&self, id: u64) -> Result<bool, SubscribeError> {
        match self.send(Redrive::One(id))? {
            0 => match self.dlq.subscription_of(id) {
                Some(sub) => Err(SubscribeError::UnknownSubscription(sub)),
                None => Ok(false),
            },
            _ => Ok(true),
        }
    }

    /// Redrives every letter matching `filter` whose subscription is still there;
    /// returns how many. Letters that cannot be redriven stay where they are.
    ///
    /// # Errors
    /// As [`redrive`](DeadLetters::redrive), except that letters of a gone
    /// subscription are skipped, not an error.
    pub fn redrive_matching(&self, filter: &DlqFilter) -> Result<usize, SubscribeError> {
        self.send(Redrive::Matching(filter.clone()))
    }

    fn send(&self, which: Redrive) -> Result<usize, SubscribeError> {
        if Inside::is(self.shared.id(), Role::Dispatch) {
            return Err(SubscribeError::FromHandler);
        }
        let ack = Ack::new();
        if !self
            .shared
            .send_control(Control::Redrive(which, ack.clone()))
        {
            return Err(SubscribeError::Closed);
        }
        match ack.wait() {
            Reply::Done(n) => Ok(n),
            Reply::Refused => Err(SubscribeError::Closed),
        }
    }
}

// ---- publishing ------------------------------------------------------------------

/// `publish` failed: the bus is shut down. The event is handed back.
pub struct PublishError<P>(pub Event<P>);

/// `try_publish` failed; the event is handed back.
pub enum TryPublishError<P> {
    /// The ring is full right now.
    Full(Event<P>),
    /// The bus is shut down.
    Closed(Event<P>),
}

/// `publish_timeout` failed; the event is handed back.
pub enum PublishTimeoutError<P> {
    /// The ring stayed full until the deadline.
    Timeout(Event<P>),
    /// The bus is shut down.
    Closed(Event<P>),
}

/// `publish_batch` stopped because the bus shut down.
pub struct PublishBatchError<P> {
    /// How many events of the batch were published (and will be delivered).
    pub published: usize,
    /// The rest of the batch, in order, not published.
    pub unpublished: Vec<Event<P>>,
}

impl<P> PublishError<P> {
    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        self.0
    }
}

impl<P> TryPublishError<P> {
    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        match self {
            TryPublishError::Full(e) | TryPublishError::Closed(e) => e,
        }
    }
    /// Whether the ring was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPublishError::Full(_))
    }
}

impl<P> PublishTimeoutError<P> {
    /// The event that was not published.
    pub fn into_inner(self) -> Event<P> {
        match self {
            PublishTimeoutError::Timeout(e) | PublishTimeoutError::Closed(e) => e,
        }
    }
}

macro_rules! error_impls {
    ($ty:ident, |$s:ident, $f:ident| $display:expr, |$d:ident, $g:ident| $debug:expr) => {
        impl<P> fmt::Debug for $ty<P> {
            fn fmt(&self, $g: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $d = self;
                $debug
            }
        }
        impl<P> fmt::Display for $ty<P> {
            fn fmt(&self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                $display
            }
        }
        impl<P> std::error::Error for $ty<P> {}
    };
}

error_impls!(
    PublishError,
    |_s, f| f.write_str("publishing on a closed bus"),
    |d, f| write!(f, "PublishError::Closed({})", d.0.id)
);
error_impls!(
    TryPublishError,
    |s, f| f.write_str(match s {
        TryPublishError::Full(_) => "publishing on a full ring",
        TryPublishError::Closed(_) => "publishing on a closed bus",
    }),
    |d, f| match d {
        TryPublishError::Full(e) => write!(f, "TryPublishError::Full({})", e.id),
        TryPublishError::Closed(e) => write!(f, "TryPublishError::Closed({})", e.id),
    }
);
error_impls!(
    PublishTimeoutError,
    |s, f| f.write_str(match s {
        PublishTimeoutError::Timeout(_) => "the ring stayed full until the deadline",
        PublishTimeoutError::Closed(_) => "publishing on a closed bus",
    }),
    |d, f| match d {
        PublishTimeoutError::Timeout(e) => write!(f, "PublishTimeoutError::Timeout({})", e.id),
        PublishTimeoutError::Closed(e) => write!(f, "PublishTimeoutError::Closed({})", e.id),
    }
);
error_impls!(
    PublishBatchError,
    |s, f| write!(
        f,
        "the bus closed after {} events of the batch; {} were not published",
        s.published,
        s.unpublished.len()
    ),
    |d, f| f
        .debug_struct("PublishBatchError")
        .field("published", &d.published)
        .field("unpublished", &d.unpublished.len())
        .finish()
);

/// Publishes events onto a bus.
///
/// In [`Multi`] mode publishers are `Clone`: give each producing thread its own
/// (each keeps a private cache of the consumer position). In [`Single`] mode there is
/// exactly one.
pub struct Publisher<P = serde_json::Value, M = Multi> {
    shared: Arc<Shared<P>>,
    /// The producer's private ring state; its variant matches `M`.
    cursor: Cursor,
    _mode: PhantomData<M>,
}

/// A publisher's ring cursor (the variant follows the type-level mode).
enum Cursor {
    Single(SpCursor),
    Multi(MpCursor),
}

impl<P, M> fmt::Debug for Publisher<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("single", &matches!(self.cursor, Cursor::Single(_)))
            .finish_non_exhaustive()
    }
}

impl<P> Clone for Publisher<P, Multi> {
    fn clone(&self) -> Self {
        let cursor = match &self.cursor {
            Cursor::Multi(c) => c.clone(),
            Cursor::Single(_) => unreachable!("a multi-producer publisher has a multi cursor"),
        };
        Publisher {
            shared: self.shared.clone(),
            cursor: Cursor::Multi(cursor),
            _mode: PhantomData,
        }
    }
}

impl<P: Send + Sync + 'static, M: ProducerMode> Publisher<P, M> {
    fn new(shared: Arc<Shared<P>>) -> Self {
        let cursor = match producers::<M>() {
            Producers::Single => Cursor::Single(
                shared
                    .ring
                    .single_producer()
                    .expect("a single-producer bus has exactly one publisher"),
            ),
            Producers::Multi => Cursor::Multi(MpCursor::default()),
        };
        Publisher {
            shared,
            cursor,
            _mode: PhantomData,
        }
    }

    /// Whether the bus has shut down (publishes will fail).
    pub fn is_closed(&self) -> bool {
        self.shared.ring.is_closed()
    }

    /// Publishes one event, waiting (per the producer wait strategy) while the ring
    /// is full. `Err` only when the bus is shut down, with the event — at once,
    /// also while waiting for space.
    #[inline]
    pub fn publish(&mut self, event: Event<P>) -> Result<(), PublishError<P>> {
        self.publish_inner(event, true, None)
            .map_err(|(e, _)| PublishError(e))
    }

    /// Publishes one event if a slot is free now.
    ///
    /// In multi-producer mode a slot counts as taken as soon as a blocking
    /// publisher has claimed it, before it is free: while other producers keep
    /// the ring over-claimed (e.g. `publish_batch` loops), `try_publish` keeps
    /// returning `Full`. [`publish_timeout`](Publisher::publish_timeout) waits its
    /// turn in line instead and gets in as the dispatcher makes progress.
    #[inline]
    pub fn try_publish(&mut self, event: Event<P>) -> Result<(), TryPublishError<P>> {
        self.publish_inner(event, false, None)
            .map_err(|(e, why)| match why {
                ClaimError::Full => TryPublishError::Full(e),
                _ => TryPublishError::Closed(e),
            })
    }

    /// Publishes one event, waiting at most `timeout` for a free slot. A timeout
    /// too large for an [`Instant`] waits like [`publish`](Publisher::publish).
    ///
    /// In multi-producer mode the call takes its place in line like a blocking
    /// publish (one `fetch_add`), so it is not starved by other producers; if the
    /// deadline passes first, its sequence is left for the dispatcher to skip and
    /// the event comes back.
    pub fn publish_timeout(
        &mut self,
        event: Event<P>,
        timeout: Duration,
    ) -> Result<(), PublishTimeoutError<P>> {
        let deadline = Instant::now().checked_add(timeout);
        self.publish_inner(event, true, deadline)
            .map_err(|(e, why)| match why {
                ClaimError::Closed => PublishTimeoutError::Closed(e),
                _ => PublishTimeoutError::Timeout(e),
            })
    }

    #[inline]
    fn publish_inner(
        &mut self,
        event: Event<P>,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<(), (Event<P>, ClaimError)> {
        let ring = &self.shared.ring;
        match &mut self.cursor {
            Cursor::Single(cursor) => {
                let mut claim = match ring.claim_single(cursor, 1, wait, deadline) {
                    Ok(claim) => claim,
                    Err(why) => return Err((event, why)),
                };
                claim.push(event);
                claim.publish_one().map_err(|e| (e, ClaimError::Closed))
            }
            Cursor::Multi(cursor) => {
                let claimed = match (wait, deadline) {
                    (true, None) => ring.claim_multi(cursor, 1),
                    (false, _) => ring.try_claim_multi(cursor, 1),
                    (true, Some(d)) => ring.claim_multi_until(cursor, 1, d),
                };
                let mut claim = match claimed {
                    Ok(claim) => claim,
                    Err(why) => return Err((event, why)),
                };
                claim.push(event);
                claim.publish();
                Ok(())
            }
        }
    }

    /// Claims a slot, then builds the event with `make` directly into it and
    /// publishes it. Events built this way are stamped in claim order: in
    /// single-producer mode, timestamps and ids taken inside `make` increase with
    /// the ring sequence.
    ///
    /// If the bus is closed, `make` is still called and its event handed back in
    /// the error. If `make` panics, nothing is published. If `make` shuts the bus
    /// down (drops the last [`Bus`]), the event is still delivered (multi
    /// producer: its slot was claimed before the close) or handed back (single
    /// producer), and the bus stops by itself after this call.
    #[inline]
    pub fn publish_with(&mut self, make: impl FnOnce() -> Event<P>) -> Result<(), PublishError<P>> {
        let ring = &self.shared.ring;
        let bus = self.shared.id();
        match &mut self.cursor {
            Cursor::Single(cursor) => {
                let Ok(mut claim) = ring.claim_single(cursor, 1, true, None) else {
                    return Err(PublishError(make()));
                };
                claim.push(make());
                claim.publish_one().map_err(PublishError)
            }
            Cursor::Multi(cursor) => {
                let Ok(mut claim) = ring.claim_multi(cursor, 1) else {
                    return Err(PublishError(make()));
                };
                // User code runs while this thread holds the claim: a shutdown from
                // in there must not wait for the dispatcher (which waits for us).
                let event = {
                    let _inside = Inside::enter(bus, Role::Claim);
                    make()
                };
                claim.push(event);
                claim.publish();
                Ok(())
            }
        }
    }

    /// Publishes many events with one claim per chunk (a chunk is at most the ring
    /// capacity: a larger batch is split, never refused) and one publish per chunk
    /// (single producer) — the cheapest way to publish.
    ///
    /// The chunk size comes from the iterator's `size_hint` (exact for vectors,
    /// arrays, ranges and maps over them). Waits while the ring is full.
    ///
    /// # Errors
    /// If the bus shuts down part-way, the events already published will be
    /// delivered; the error hands back the events taken from the iterator but not
    /// published, in order. The rest of the iterator is **not consumed** (an
    /// endless or blocking iterator is never drained): pass `iter.by_ref()` to keep
    /// it.
    ///
    /// If the iterator panics, the events it yielded before are published and
    /// the panic propagates.
    pub fn publish_batch<I>(&mut self, events: I) -> Result<(), PublishBatchError<P>>
    where
        I: IntoIterator<Item = Event<P>>,
    {
        let mut iter = events.into_iter();
        let ring = &self.shared.ring;
        let cap = ring.capacity();
        let bus = self.shared.id();
        let mut published = 0usize;
        loop {
            // One event in hand proves the batch is not done; the hint sizes the claim.
            let Some(first) = iter.next() else {
                return Ok(());
            };
            let n = (iter.size_hint().0 as u64).saturating_add(1).min(cap);
            let refused = |published, first| {
                Err(PublishBatchError {
                    published,
                    unpublished: vec![first],
                })
            };
            match &mut self.cursor {
                Cursor::Single(cursor) => {
                    let Ok(mut claim) = ring.claim_single(cursor, n, true, None) else {
                        return refused(published, first);
                    };
                    claim.push(first);
                    for event in iter.by_ref().take(claim.remaining() as usize) {
                        claim.push(event);
                    }
                    match claim.publish() {
                        Ok(written) => published += written as usize,
                        Err(unpublished) => {
                            return Err(PublishBatchError {
                                published,
                                unpublished,
                            })
                        }
                    }
                }
                Cursor::Multi(cursor) => {
                    let Ok(mut claim) = ring.claim_multi(cursor, n) else {
                        return refused(published, first);
                    };
                    {
                        // The iterator is user code, run while this claim is held.
                        let _inside = Inside::enter(bus, Role::Claim);
                        claim.push(first);
                        for event in iter.by_ref().take(claim.remaining() as usize) {
                            claim.push(event);
                        }
                    }
                    // Publishes what was written, skips what the iterator did not fill.
                    published += claim.publish() as usize;
                }
            }
        }
    }
}
