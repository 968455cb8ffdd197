//! Building a bus: [`BusBuilder`], its validation ([`BuildError`]), and spawning
//! the dispatcher thread.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc as StdArc;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use crate::dispatch::{
    BreakerListener, CloneEvent, ControlQueue, DeadLetterListener, DispatchConfig, Dispatcher,
    Execution, Executor, Failure, FailurePolicy, FollowUps, LogFailures, Progress, Sampling,
    Services, Shared, ShutdownReport, Stats, DEFAULT_SAMPLE_EVERY,
};
use crate::event::Event;
use crate::metrics::FlowLog;
use crate::metrics::LocalHistogram;
use crate::outcome::SubscriptionId;
use crate::resilience::{
    BreakerTransition, Clock, DeadLetterInfo, DeadLetterQueue, DlqFullPolicy, GuardedClock,
    SystemClock,
};
#[cfg(not(loom))]
use crate::resilience::{ClockWaker, Wake};
use crate::ring::{Ring, WaitStrategy};
use crate::sync::{Arc, AtomicBool, AtomicU64};

use super::mode::{producers, Multi, ProducerMode, Single};
use super::publisher::Publisher;
use super::Bus;

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
    /// `max_follow_ups(0)`.
    ZeroFollowUps,
    /// `metrics_sample_every(n)` with an `n` that is not a power of two (0
    /// included).
    SampleEveryNotPowerOfTwo(u32),
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
                // The nearest capacity that builds: the next power of two, or
                // the maximum when that is beyond it.
                let try_instead = n
                    .checked_next_power_of_two()
                    .map_or(MAX_CAPACITY, |p| p.min(MAX_CAPACITY));
                write!(
                    f,
                    "ring capacity {n} is not a power of two; try {try_instead}"
                )
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
            BuildErrorKind::ZeroFollowUps => f.write_str("max_follow_ups must be at least 1"),
            BuildErrorKind::SampleEveryNotPowerOfTwo(n) => write!(
                f,
                "metrics sampling must time one call in a power of two (1, 2, 4, …), got {n}"
            ),
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

/// Configures and builds a [`Bus`]. Made by [`Bus::builder`] (a JSON bus) or
/// [`BusBuilder::<P>::new`](BusBuilder::new) (a bus of payload `P`).
pub struct BusBuilder<P = serde_json::Value, M = Multi> {
    capacity: usize,
    producer_wait: WaitStrategy,
    consumer_wait: WaitStrategy,
    max_batch: usize,
    execution: Execution,
    thread_name: String,
    policy: Option<Box<dyn FailurePolicy<P>>>,
    /// Set by [`BusBuilder::dead_letter_failures`] (only when `P: Clone`).
    dead_letter_plain: Option<CloneEvent<P>>,
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
    sample_every: u32,
    flow_log: Option<usize>,
    retry_drain: Duration,
    on_breaker: Option<BreakerListener>,
    on_dead_letter: Option<DeadLetterListener>,
    max_follow_ups: usize,
}

impl Default for Extras {
    fn default() -> Self {
        Extras {
            clock: StdArc::new(SystemClock::new()),
            dlq_capacity: 10_000,
            dlq_policy: DlqFullPolicy::default(),
            metrics: true,
            sample_every: DEFAULT_SAMPLE_EVERY,
            flow_log: None,
            retry_drain: Duration::from_secs(5),
            on_breaker: None,
            on_dead_letter: None,
            max_follow_ups: 1 << 20,
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

impl<P: Send + Sync + 'static> Default for BusBuilder<P, Multi> {
    fn default() -> Self {
        Self::new()
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
            dead_letter_plain: self.dead_letter_plain,
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

    /// What happens after a handler fails: `policy` sees every failure (see
    /// [`FailurePolicy`] for when). Default: [`LogFailures`].
    ///
    /// A type implementing [`FailurePolicy`] is passed as a closure calling it:
    /// `.failure_policy(move |f| my_policy.on_failure(f))`.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{failure::FailureReason, Bus};
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    ///
    /// let panics = Arc::new(AtomicU64::new(0));
    /// let seen = panics.clone();
    /// let bus = Bus::builder()
    ///     .failure_policy(move |f| {
    ///         if matches!(f.reason, FailureReason::Panic(_)) {
    ///             seen.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build()?;
    /// # drop(bus);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure_policy<F>(mut self, policy: F) -> Self
    where
        F: FnMut(&Failure<'_, P>) + Send + 'static,
    {
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
    /// Counters are always kept. Default: on. How often a call is timed:
    /// [`metrics_sample_every`](BusBuilder::metrics_sample_every).
    pub fn metrics(mut self, on: bool) -> Self {
        self.extras.metrics = on;
        self
    }

    /// How often a handler call is timed for the handler-time and latency
    /// histograms: one call in every `n` per handler instance, `n` a power of two
    /// (1 = every call). Default 256, so that the clock reads stay off most
    /// calls; lower it for rarely called handlers, whose histograms otherwise
    /// stay empty for a long time. `build` refuses any other `n`
    /// ([`BuildErrorKind::SampleEveryNotPowerOfTwo`]; 0 too: to time nothing, turn
    /// [`metrics`](BusBuilder::metrics) off). Batch sizes are recorded for every
    /// batch regardless.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{BusBuilder, BuildErrorKind, Event, EventType, HandlerError, Source};
    ///
    /// let bus = BusBuilder::<u32>::new().metrics_sample_every(1).build()?;
    /// let id = bus.subscribe("tick", |_: &Event<u32>| -> Result<(), HandlerError> { Ok(()) })?;
    /// let mut publisher = bus.publisher();
    /// for i in 0..3 {
    ///     publisher.publish(Event::new(EventType::new("tick"), Source::new("clock"), i))?;
    /// }
    /// bus.flush()?;
    /// // Every call timed.
    /// assert_eq!(bus.metrics().handler(id, 0).unwrap().handler_time_ns.count, 3);
    ///
    /// let refused = BusBuilder::<u32>::new().metrics_sample_every(100).build().unwrap_err();
    /// assert!(matches!(refused.kind(), BuildErrorKind::SampleEveryNotPowerOfTwo(100)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics_sample_every(mut self, n: u32) -> Self {
        self.extras.sample_every = n;
        self
    }

    /// Keeps the last `capacity` handler calls in an in-memory [`FlowLog`]
    /// (off by default: it costs a record per call).
    pub fn flow_log(mut self, capacity: usize) -> Self {
        self.extras.flow_log = Some(capacity);
        self
    }

    /// How long [`Bus::shutdown`] keeps running retries once every accepted event
    /// and follow-up is dispatched. Events still waiting then — or whose next
    /// retry cannot come due before this deadline — go to the dead-letter queue
    /// at once and are listed in the report's `undelivered`. Default 5 s.
    /// ([`Bus::shutdown_timeout`] bounds the whole stop instead.)
    pub fn retry_drain_timeout(mut self, timeout: Duration) -> Self {
        self.extras.retry_drain = timeout;
        self
    }

    /// The most follow-ups — events published from inside the bus, by its
    /// handlers and hooks — that may wait to be dispatched (default 2^20). A
    /// publish from inside never waits for ring space (that would deadlock: the
    /// dispatcher frees the ring only when the handler returns); beyond this
    /// bound it is refused with [`Refusal::FollowUpLimit`](crate::Refusal), the
    /// event handed back. See [`Handler`](crate::Handler) for the rule.
    pub fn max_follow_ups(mut self, n: usize) -> Self {
        self.extras.max_follow_ups = n;
        self
    }

    /// Called on every circuit-breaker state change, on the thread running the
    /// handler, with the subscription, the handler's name and the transition —
    /// whose [`lane`](BreakerTransition::lane) says which lane of a partitioned
    /// subscription changed (each lane has its own breaker). A panic in the
    /// listener is caught (and reported as a `tracing` warning with the `tracing`
    /// feature); the bus goes on.
    pub fn on_breaker_change(
        mut self,
        listener: impl Fn(SubscriptionId, &str, BreakerTransition) + Send + Sync + 'static,
    ) -> Self {
        self.extras.on_breaker = Some(StdArc::new(listener));
        self
    }

    /// Called every time an event is dead-lettered, with the letter as
    /// [`DeadLetters::list`](crate::DeadLetters::list) shows it (its
    /// [`id`](DeadLetterInfo::id) included), once it is in the queue: for a
    /// permanent error or a panic, after the last attempt, when a handler's
    /// queue overflows its [`max_pending`](crate::SubscribeOptions::max_pending),
    /// for events still waiting at a handler when it is unsubscribed or the bus
    /// shuts down, and for the failures [`dead_letter_failures`](BusBuilder::dead_letter_failures)
    /// keeps. (A letter the queue later evicts to make room is not reported
    /// again.)
    ///
    /// It runs on the thread that dead-letters — a handler's thread, or the
    /// dispatcher's — so keep it short: count, log, alert. A panic in it is
    /// caught (and reported as a `tracing` warning with the `tracing` feature);
    /// the letter stays queued and the bus goes on.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{event_type, source, BusBuilder, Event, HandlerError, SubscribeOptions};
    /// use ringbus::resilience::DlqFilter;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let ids = Arc::new(Mutex::new(Vec::new()));
    /// let seen = ids.clone();
    /// let bus = BusBuilder::<u32>::new()
    ///     .on_dead_letter(move |letter| seen.lock().unwrap().push(letter.id))
    ///     .build()?;
    /// bus.subscribe_with(
    ///     "order.placed",
    ///     |_e| Err::<(), _>(HandlerError::permanent("bad order")),
    ///     SubscribeOptions::new(),
    /// )?;
    /// bus.publisher().publish(Event::new(event_type!("order.placed"), source!("shop"), 7))?;
    /// bus.flush()?;
    /// let listed: Vec<u64> = bus.dead_letters().list(&DlqFilter::all()).iter().map(|l| l.id).collect();
    /// assert_eq!(*ids.lock().unwrap(), listed);
    /// assert_eq!(listed.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_dead_letter(
        mut self,
        hook: impl Fn(&DeadLetterInfo) + Send + Sync + 'static,
    ) -> Self {
        self.extras.on_dead_letter = Some(StdArc::new(hook));
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
        if self.extras.max_follow_ups == 0 {
            return Err(Self::err(BuildErrorKind::ZeroFollowUps));
        }
        let Some(sampling) = Sampling::one_in(self.extras.sample_every) else {
            return Err(Self::err(BuildErrorKind::SampleEveryNotPowerOfTwo(
                self.extras.sample_every,
            )));
        };
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
            follow_ups: FollowUps::new(self.extras.max_follow_ups),
            progress: Progress::default(),
            stop_by: StdMutex::new(None),
            catch_ups: StdMutex::new(Vec::new()),
            tracked: crate::delivery::PendingTracks::new(),
            deliveries: crate::delivery::Deliveries::new(),
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
                on_dead_letter: extras.on_dead_letter.clone(),
                dead_letter_plain: self.dead_letter_plain,
                metrics: if extras.metrics {
                    sampling
                } else {
                    Sampling::OFF
                },
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
pub(super) type JoinHandle = std::thread::JoinHandle<Outcome>;
#[cfg(loom)]
pub(super) type JoinHandle = loom::thread::JoinHandle<Outcome>;

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

impl<P: Clone + Send + Sync + 'static, M: ProducerMode> BusBuilder<P, M> {
    /// Whether a failed call of a subscription **without** failure handling
    /// (made with [`Bus::subscribe`], [`subscribe_all`](Bus::subscribe_all),
    /// [`subscribe_handler`](Bus::subscribe_handler) or
    /// [`subscribe_partitioned`](Bus::subscribe_partitioned)) also puts a copy
    /// of its event in the dead-letter queue, with its one attempt. Default
    /// `false`: such a failure is counted, shown to the
    /// [failure policy](BusBuilder::failure_policy) (with
    /// [`last`](Failure::last) set) and the event dropped. Only for a payload
    /// that is `Clone`.
    ///
    /// The copy is made on the dispatcher thread after the batch, once per
    /// failure, so handlers that succeed pay nothing for it. The letter can be
    /// listed, read, taken and discarded like any other, and
    /// [`on_dead_letter`](BusBuilder::on_dead_letter) sees it; it **cannot be
    /// redriven**: its subscription keeps no retry queue, so
    /// [`DeadLetters::redrive`](crate::DeadLetters::redrive) returns
    /// [`SubscribeError::UnknownSubscription`](crate::SubscribeError::UnknownSubscription)
    /// and [`redrive_matching`](crate::DeadLetters::redrive_matching) skips it,
    /// leaving it in the queue. To deliver it again,
    /// [`get`](crate::DeadLetters::get) it, publish its event, and
    /// [`discard`](crate::DeadLetters::discard) it. Subscriptions
    /// made with [`Bus::subscribe_with`] dead-letter their failures whatever this
    /// says.
    ///
    /// # Examples
    /// ```
    /// use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
    /// use ringbus::resilience::DlqFilter;
    ///
    /// let bus = BusBuilder::<u32>::new().dead_letter_failures(true).build()?;
    /// bus.subscribe("order.placed", |e| -> Result<(), HandlerError> {
    ///     Err(HandlerError::permanent(format!("cannot place order {}", e.data)))
    /// })?;
    /// bus.publisher().publish(Event::new(event_type!("order.placed"), source!("shop"), 7))?;
    /// bus.flush()?;
    /// let letters = bus.dead_letters().list(&DlqFilter::all());
    /// assert_eq!(letters.len(), 1);
    /// assert_eq!(letters[0].attempts[0].error, "permanent error: cannot place order 7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dead_letter_failures(mut self, on: bool) -> Self {
        self.dead_letter_plain = on.then_some(Event::<P>::clone as CloneEvent<P>);
        self
    }
}

impl<P: Send + Sync + 'static> BusBuilder<P, Multi> {
    /// A builder for a bus of payload `P`, with the defaults [`Bus::builder`]
    /// documents — the spelling for a typed bus (`Bus::builder()` builds the
    /// default, JSON bus).
    ///
    /// # Examples
    /// ```
    /// use ringbus::{event_type, source, BusBuilder, Event};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Deposit { cents: u64 }
    ///
    /// let bus = BusBuilder::<Deposit>::new().capacity(256).build()?;
    /// bus.subscribe("account.deposited", |e| assert!(e.data.cents > 0))?;
    /// bus.publisher().publish(Event::new(event_type!("account.deposited"), source!("bank"), Deposit { cents: 500 }))?;
    /// assert_eq!(bus.shutdown()?.counters.failed, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        BusBuilder {
            capacity: 4096,
            producer_wait: WaitStrategy::default(),
            consumer_wait: WaitStrategy::default(),
            max_batch: usize::MAX,
            execution: Execution::default(),
            thread_name: "ringbus-dispatch".to_owned(),
            policy: None,
            dead_letter_plain: None,
            extras: Extras::default(),
            _mode: PhantomData,
        }
    }

    /// Starts the dispatcher and returns the bus; get publishers with
    /// [`Bus::publisher`].
    pub fn build(self) -> Result<Bus<P, Multi>, BuildError> {
        self.start()
    }
}

impl<P: Send + Sync + 'static> BusBuilder<P, Single> {
    /// Starts the dispatcher and returns the bus with its only publisher.
    // The pair is the API: the bus and its only publisher.
    #[allow(clippy::type_complexity)]
    pub fn build(self) -> Result<(Bus<P, Single>, Publisher<P, Single>), BuildError> {
        let bus = self.start()?;
        let publisher = Publisher::new(bus.shared.clone());
        Ok((bus, publisher))
    }
}
