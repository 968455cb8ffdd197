//! Catch-up subscriptions: a handler that sees every committed event from a
//! starting point (or its checkpoint) onwards, exactly once and in position
//! order, first from the store and then live from the bus.
//!
//! # The switch (issue 11, A3)
//! 1. At [`CatchUp::start`] a forwarder is subscribed on the bus: once `start`
//!    returns, every later publish reaches it. It fills a bounded live queue
//!    (default 65 536 events), but only while the subscription is near the head.
//! 2. The subscription's thread reads history from the store in pages (default
//!    512) up to [`head`](super::EventStore::head), switches buffering on, and
//!    reads up to the head again.
//! 3. Then it drains the live queue: positions at or below the last delivered
//!    are duplicates and skipped; the next position is delivered; a jump is a
//!    gap, read from the store. Status [`Status::Live`],
//!    [`Notification::CaughtUp`].
//! 4. If the live queue overflows (a slow handler), the subscription drops it
//!    and goes back to step 2 — [`Notification::FellBehind`]: bounded memory,
//!    never a lost or repeated event.
//!
//! While live, a quiet queue with a store head past the last delivered event
//! (the feed is not running, or the bus was shut down) is read from the store
//! too, so a subscription never stalls behind its store.
//!
//! The forwarder leaves the bus when the subscription ends (stopped or dropped).
//!
//! Every position is handled once: the subscription keeps the last position it
//! handled and delivers position `last + 1` only. The bus must carry one
//! store's events (positions of two stores would mix), and events carrying a
//! position must come from that store's feed.
//!
//! # Failures
//! A handler error is retried in place under the [`RetryPolicy`] (default:
//! [`RetryPolicy::none`]); the subscription never moves past an event it could
//! not handle: a permanent error, a panic, or the last attempt **stops** it with
//! [`Status::Failed`] naming the position (its checkpoint is saved up to the
//! event before), and [`CatchUpHandle::restart`] — or a new subscription on the
//! same checkpoint — retries from there. [`OnFailure::SkipToDeadLetters`] opts
//! into sending such events to the bus's dead-letter queue and going on.

mod queue;
mod runner;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use self::queue::LiveQueue;
use self::runner::Runner;
use super::checkpoint::CheckpointStore;
use super::{EventStore, Position, ReadError, Recorded, StreamId};
use crate::bus::{Bus, ProducerMode, SubscribeError};
use crate::dispatch::{HandlerResult, IntoPatterns, Pattern};
use crate::event::Event;
use crate::pattern::named;
use crate::resilience::RetryPolicy;

/// Where a subscription without a saved checkpoint starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SubscribeFrom {
    /// From position 0: every event in the store (a replay).
    #[default]
    Start,
    /// From the event after this position (exclusive, like a checkpoint).
    After(Position),
}

/// What a subscription does with an event its handler gave up on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Stop with [`Status::Failed`] (the default: a projection must not skip).
    #[default]
    Stop,
    /// Send the event to the bus's dead-letter queue (under the subscription's
    /// name, with every attempt) and go on. The letters name the subscription's
    /// forwarder, which leaves the bus with the subscription: take them from the
    /// queue and handle them yourself rather than redrive them.
    SkipToDeadLetters,
}

/// Where a subscription stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Reading history from the store.
    CatchingUp,
    /// At the head, fed by the bus.
    Live,
    /// Stopped at `position`: the handler gave up on that event (or a read or
    /// checkpoint save failed there). Everything before it was handled.
    Failed {
        /// The event that could not be handled.
        position: Position,
        /// Why (the last failure's text).
        error: String,
    },
    /// Stopped by [`CatchUpHandle::stop`] (or its drop).
    Stopped,
}

/// What a subscription tells its [`on_notification`](CatchUp::on_notification)
/// callback, on its own thread, between two handler calls.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// Caught up: from now on events come live from the bus. `last` is the
    /// last position handled.
    CaughtUp {
        /// The last position handled, `None` if none yet.
        last: Option<Position>,
    },
    /// The live queue overflowed: back to reading the store.
    FellBehind {
        /// The last position handled.
        last: Option<Position>,
    },
    /// [`CatchUpHandle::rebuild`]: the replay from the start begins after this
    /// call. Reset the read model here.
    Rebuilding,
}

/// A subscription's counters (see [`CatchUpHandle::metrics`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUpMetrics {
    /// Events handed to the handler successfully.
    pub delivered: u64,
    /// Events passed over because the filter rejected them.
    pub filtered: u64,
    /// Events read from the store (history, gaps).
    pub from_store: u64,
    /// Events taken from the live queue and handled or filtered.
    pub from_bus: u64,
    /// Times the subscription caught up and went live.
    pub caught_up: u64,
    /// Times the live queue overflowed while live.
    pub fell_behind: u64,
    /// Handler calls that were retries.
    pub retries: u64,
    /// Events sent to the dead-letter queue ([`OnFailure::SkipToDeadLetters`]).
    pub dead_lettered: u64,
    /// Checkpoints saved.
    pub checkpoints_saved: u64,
    /// Times the subscription stopped with [`Status::Failed`].
    pub failures: u64,
}

/// A catch-up subscription as the bus's [`metrics`](crate::Bus::metrics) list
/// it ([`MetricsSnapshot::catch_ups`](crate::metrics::MetricsSnapshot::catch_ups)).
#[derive(Clone, Debug, PartialEq)]
pub struct CatchUpReport {
    /// Its name ([`CatchUp::name`], else its checkpoint name, else `"catch-up"`).
    pub name: String,
    /// Where it stands.
    pub status: Status,
    /// The last position handled (or passed over by the filter), `None` if none.
    pub position: Option<Position>,
    /// The store's head when the report was taken.
    pub head: Option<Position>,
    /// Events between `position` and `head`: how far behind it is.
    pub lag: u64,
    /// Events handled (delivered or filtered) per second, over the time since
    /// the previous report at least a second before (since the start for the
    /// first).
    pub events_per_sec: f64,
    /// Its counters.
    pub counters: CatchUpMetrics,
}

/// What the bus asks a subscription for its metrics (type-erased over the
/// store and payload).
pub(crate) trait ReportCatchUp: Send + Sync {
    fn report(&self) -> CatchUpReport;
}

/// Which events a subscription hands its handler: event types matching its
/// patterns (all by default), of one stream (all by default).
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    patterns: Option<Vec<Pattern>>,
    stream: Option<StreamId>,
}

impl Filter {
    pub(crate) fn matches<P>(&self, e: &Event<P>) -> bool {
        let of_stream = match &self.stream {
            None => true,
            Some(s) => e.subject.as_ref().is_some_and(|x| x.as_str() == s.as_str()),
        };
        of_stream
            && self
                .patterns
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.matches(e.event_type.name())))
    }
}

/// Why a catch-up subscription could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum CatchUpError {
    /// The bus refused the forwarder (closed, called from a handler), or the
    /// filter's patterns or the retry policy are invalid.
    Subscribe(SubscribeError),
    /// The checkpoint could not be loaded.
    Checkpoint(io::Error),
    /// The store could not be read (resolving a stream's starting version).
    Read(ReadError),
}

impl fmt::Display for CatchUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUpError::Subscribe(e) => write!(f, "catch-up subscription refused: {e}"),
            CatchUpError::Checkpoint(e) => write!(f, "loading the checkpoint failed: {e}"),
            CatchUpError::Read(e) => write!(f, "reading the store failed: {e}"),
        }
    }
}

impl std::error::Error for CatchUpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CatchUpError::Subscribe(e) => Some(e),
            CatchUpError::Checkpoint(e) => Some(e),
            CatchUpError::Read(e) => Some(e),
        }
    }
}

/// Subscribes to every event of `store` (its `$all`), through `bus`: returns a
/// [`CatchUp`] builder; [`CatchUp::start`] it with a handler.
///
/// # Examples
/// ```
/// use ringbus::store::{subscribe_all, EventStore, ExpectedVersion, InMemoryStore, Position, Status, StreamId};
/// use ringbus::{event_type, source, Bus, Event};
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, Instant};
///
/// let bus = Bus::builder().build()?;
/// let store = Arc::new(InMemoryStore::new());
/// let _feed = store.publish_to(&bus);
/// let cart = StreamId::new("cart-1")?;
/// let added = || Event::new(event_type!("cart.item_added"), source!("shop"), serde_json::json!({}));
/// store.append(&cart, ExpectedVersion::Any, vec![added(), added()])?; // history
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let sub = subscribe_all(store.clone(), &bus)
///     .filter("cart.*")
///     .start(move |r| s.lock().unwrap().push((r.position, r.version)))?;
///
/// store.append(&cart, ExpectedVersion::Any, vec![added()])?; // live
/// let deadline = Instant::now() + Duration::from_secs(10);
/// while sub.position() < Some(Position(2)) && Instant::now() < deadline {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// assert_eq!(*seen.lock().unwrap(), [(Position(0), 1), (Position(1), 2), (Position(2), 3)]);
/// sub.stop();
/// assert_eq!(sub.status(), Status::Stopped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn subscribe_all<S, P, M>(store: Arc<S>, bus: &Bus<P, M>) -> CatchUp<'_, S, P, M>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
{
    CatchUp {
        store,
        bus,
        from: SubscribeFrom::Start,
        from_version: None,
        patterns: Ok(None),
        stream: None,
        name: None,
        queue_capacity: 65_536,
        page_size: 512,
        retry: RetryPolicy::none(),
        on_failure: OnFailure::Stop,
        checkpoints: None,
        save_every: 1_000,
        notify: None,
        _payload: std::marker::PhantomData,
    }
}

/// Subscribes to the events of one stream of `store`, from version
/// `from_version` on (1 = its first event; a saved checkpoint wins over it).
/// Otherwise like [`subscribe_all`]: the switch to live follows the whole
/// store's positions.
pub fn subscribe_stream<S, P, M>(
    store: Arc<S>,
    bus: &Bus<P, M>,
    stream: StreamId,
    from_version: u64,
) -> CatchUp<'_, S, P, M>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
{
    let mut c = subscribe_all(store, bus);
    c.stream = Some(stream);
    c.from_version = Some(from_version);
    c
}

type Notify = Box<dyn FnMut(Notification) + Send>;
type Checkpoints = (Box<dyn CheckpointStore + Send + Sync>, String);

/// A catch-up subscription being set up: from [`subscribe_all`] or
/// [`subscribe_stream`]; ends with [`CatchUp::start`].
#[must_use = "a catch-up subscription does nothing until started"]
pub struct CatchUp<'b, S, P, M: ProducerMode> {
    store: Arc<S>,
    bus: &'b Bus<P, M>,
    from: SubscribeFrom,
    from_version: Option<u64>,
    patterns: Result<Option<Vec<Pattern>>, SubscribeError>,
    stream: Option<StreamId>,
    name: Option<String>,
    queue_capacity: usize,
    page_size: usize,
    retry: RetryPolicy,
    on_failure: OnFailure,
    checkpoints: Option<Checkpoints>,
    save_every: u64,
    notify: Option<Notify>,
    _payload: std::marker::PhantomData<fn(P)>,
}

impl<S, P, M: ProducerMode> fmt::Debug for CatchUp<'_, S, P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchUp")
            .field("from", &self.from)
            .field("stream", &self.stream)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'b, S, P, M> CatchUp<'b, S, P, M>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
{
    /// Where to start when no checkpoint is saved (default: the start).
    pub fn from(mut self, from: SubscribeFrom) -> Self {
        self.from = from;
        self
    }

    /// Only events whose type matches `patterns` (the bus's pattern grammar,
    /// see [`Pattern`]); all by default. Invalid patterns fail `start`.
    pub fn filter(mut self, patterns: impl IntoPatterns) -> Self {
        self.patterns = patterns
            .into_patterns()
            .map(Some)
            .map_err(SubscribeError::InvalidPattern);
        self
    }

    /// The name in metrics and dead letters (default: the checkpoint's name, or
    /// `"catch-up"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The live queue's capacity in events (default 65 536; at least 1).
    pub fn live_queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events.max(1);
        self
    }

    /// Events read from the store per page (default 512; at least 1).
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.max(1);
        self
    }

    /// How a failing handler call is retried, in place (default: not at all).
    /// An invalid policy fails `start`.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What to do when the handler gives up on an event (default
    /// [`OnFailure::Stop`]).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Resume from, and save progress to, the checkpoint `name` in
    /// `checkpoints`: the last position handled is saved every
    /// [`save_every`](CatchUp::save_every) events, when the subscription
    /// catches up, fails, or stops. A saved checkpoint wins over
    /// [`from`](CatchUp::from).
    pub fn checkpoints(
        mut self,
        checkpoints: impl CheckpointStore + Send + Sync + 'static,
        name: impl Into<String>,
    ) -> Self {
        self.checkpoints = Some((Box::new(checkpoints), name.into()));
        self
    }

    /// Save the checkpoint every `events` handled events (default 1 000; at
    /// least 1).
    pub fn save_every(mut self, events: u64) -> Self {
        self.save_every = events.max(1);
        self
    }

    /// Calls `f` with each [`Notification`], on the subscription's thread.
    pub fn on_notification(mut self, f: impl FnMut(Notification) + Send + 'static) -> Self {
        self.notify = Some(Box::new(f));
        self
    }

    /// Starts the subscription on a thread of its own, calling `handler` with
    /// each event (`&Recorded<P>`: position, stream version, event). The
    /// handler returns `()` or a `Result` like a bus handler
    /// ([`HandlerResult`]).
    ///
    /// # Errors
    /// [`CatchUpError::Subscribe`] if the bus refuses the forwarder or the
    /// filter or retry policy is invalid; [`CatchUpError::Checkpoint`] if the
    /// checkpoint cannot be loaded; [`CatchUpError::Read`] if a stream's
    /// starting version cannot be resolved.
    pub fn start<F, R>(self, mut handler: F) -> Result<CatchUpHandle, CatchUpError>
    where
        F: FnMut(&Recorded<P>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let patterns = self.patterns.map_err(CatchUpError::Subscribe)?;
        self.retry
            .validate()
            .map_err(|e| CatchUpError::Subscribe(SubscribeError::InvalidRetryPolicy(e)))?;
        let name = self
            .name
            .or_else(|| self.checkpoints.as_ref().map(|c| c.1.clone()))
            .unwrap_or_else(|| "catch-up".to_owned());
        let saved = match &self.checkpoints {
            Some((c, n)) => c.load(n).map_err(CatchUpError::Checkpoint)?,
            None => None,
        };
        let last = match (saved, self.from_version, &self.stream) {
            (Some(p), _, _) => Some(p),
            (None, Some(v), Some(stream)) if v > 1 => {
                // After the event before version `v`, or at the head if the
                // stream is not that long yet.
                let before = self
                    .store
                    .read_stream(stream, v - 1, 1)
                    .map_err(CatchUpError::Read)?;
                match before.first() {
                    Some(r) if r.version == v - 1 => Some(r.position),
                    _ => self.store.head(),
                }
            }
            (None, Some(_), Some(_)) => None,
            (None, _, _) => match self.from {
                SubscribeFrom::Start => None,
                SubscribeFrom::After(p) => Some(p),
            },
        };
        let filter = Filter {
            patterns,
            stream: self.stream,
        };
        let queue = Arc::new(LiveQueue::new(self.queue_capacity));
        let q = queue.clone();
        let f = filter.clone();
        let forwarder = self
            .bus
            .subscribe(
                named(format!("{name} (catch-up)"), ">"),
                move |e: &Event<P>| q.offer(e, &f),
            )
            .map_err(CatchUpError::Subscribe)?;
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                status: Status::CatchingUp,
                command: None,
            }),
            changed: Condvar::new(),
            attention: std::sync::atomic::AtomicBool::new(false),
            next: AtomicU64::new(last.map_or(0, |p| p.0 + 1)),
            metrics: Mutex::new(CatchUpMetrics::default()),
            name: name.clone(),
            head: {
                let store = self.store.clone();
                Box::new(move || store.head())
            },
            rate: Mutex::new((std::time::Instant::now(), 0, 0.0)),
        });
        self.bus
            .register_catch_up(Arc::downgrade(&shared) as std::sync::Weak<dyn ReportCatchUp>);
        let dead_letters = match self.on_failure {
            OnFailure::Stop => None,
            OnFailure::SkipToDeadLetters => Some(self.bus.dead_letter_queue()),
        };
        let runner = Runner {
            store: self.store,
            queue: queue.clone(),
            shared: shared.clone(),
            handler: Box::new(move |r: &Recorded<P>| handler(r).into_outcome()),
            filter,
            min_version: self.from_version.unwrap_or(0),
            last,
            versions: Default::default(),
            page_size: self.page_size,
            retry: self.retry,
            dead_letters: dead_letters.map(|d| (d, forwarder, Arc::<str>::from(name.as_str()))),
            checkpoints: self.checkpoints,
            save_every: self.save_every,
            since_save: 0,
            notify: self.notify,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (Arc::as_ptr(&shared) as u64),
            started: std::time::Instant::now(),
            detach: Some(Box::new(self.bus.unsubscriber(forwarder))),
        };
        let thread = std::thread::Builder::new()
            .name(format!("ringbus-catch-up-{name}"))
            .spawn(move || runner.run())
            .expect("spawn the catch-up thread");
        Ok(CatchUpHandle {
            shared,
            queue: queue as Arc<dyn Poke>,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// A command from the handle to the thread.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Stop,
    Rebuild,
    Restart,
}

pub(crate) struct Control {
    pub(crate) status: Status,
    pub(crate) command: Option<Command>,
}

/// What the handle and the thread share.
pub(crate) struct Shared {
    pub(crate) control: Mutex<Control>,
    /// Signalled when the status changes or a command arrives.
    pub(crate) changed: Condvar,
    /// A command is waiting: the thread looks at `control` between events.
    pub(crate) attention: std::sync::atomic::AtomicBool,
    /// One past the last position handled (0: none). Only the thread stores it.
    pub(crate) next: AtomicU64,
    pub(crate) metrics: Mutex<CatchUpMetrics>,
    /// For the bus's metrics.
    name: String,
    head: Box<dyn Fn() -> Option<Position> + Send + Sync>,
    /// For the rate: when the window started, the events handled by then,
    /// and the rate of the last whole window.
    rate: Mutex<(std::time::Instant, u64, f64)>,
}

impl ReportCatchUp for Shared {
    fn report(&self) -> CatchUpReport {
        // Position before head: the head only grows, so the lag is never
        // negative.
        let position = self
            .next
            .load(Ordering::Acquire)
            .checked_sub(1)
            .map(Position);
        let head = (self.head)();
        let lag = match (head, position) {
            (Some(h), Some(p)) => h.0.saturating_sub(p.0),
            (Some(h), None) => h.0 + 1,
            (None, _) => 0,
        };
        let counters = *self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let handled = counters.delivered + counters.filtered;
        let events_per_sec = {
            let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            let elapsed = r.0.elapsed();
            if elapsed >= std::time::Duration::from_secs(1) || r.1 == 0 {
                let secs = elapsed.as_secs_f64().max(1e-9);
                let rate = handled.saturating_sub(r.1) as f64 / secs;
                if elapsed >= std::time::Duration::from_secs(1) {
                    *r = (std::time::Instant::now(), handled, rate);
                }
                rate
            } else {
                r.2
            }
        };
        CatchUpReport {
            name: self.name.clone(),
            status: self.control().status.clone(),
            position,
            head,
            lag,
            events_per_sec,
            counters,
        }
    }
}

impl Shared {
    pub(crate) fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut CatchUpMetrics)) {
        f(&mut self.metrics.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Wakes the thread's wait on the live queue (type-erased over `P`).
trait Poke: Send + Sync {
    fn poke(&self);
}

impl<P: Send> Poke for LiveQueue<P> {
    fn poke(&self) {
        LiveQueue::poke(self);
    }
}

/// A running catch-up subscription. Dropping it stops the subscription (like
/// [`CatchUpHandle::stop`]).
pub struct CatchUpHandle {
    shared: Arc<Shared>,
    queue: Arc<dyn Poke>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for CatchUpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchUpHandle")
            .field("status", &self.status())
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl CatchUpHandle {
    /// Where the subscription stands now.
    pub fn status(&self) -> Status {
        self.shared.control().status.clone()
    }

    /// The last position handled (or passed over by the filter), `None` if none.
    pub fn position(&self) -> Option<Position> {
        self.shared
            .next
            .load(Ordering::Acquire)
            .checked_sub(1)
            .map(Position)
    }

    /// The subscription's counters.
    pub fn metrics(&self) -> CatchUpMetrics {
        *self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the subscription has handled (or passed over) every event
    /// up to `position`, or `timeout` passes, or it stops or fails; `true` if
    /// it got there. Read-your-writes: append, then wait for the append's last
    /// position.
    pub fn wait_for(&self, position: Position, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.position() >= Some(position) {
                return true;
            }
            if std::time::Instant::now() >= deadline
                || matches!(self.status(), Status::Failed { .. } | Status::Stopped)
            {
                return self.position() >= Some(position);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Waits until `until` holds for the status, or `timeout` passes; returns
    /// the status then.
    pub fn wait_status(
        &self,
        timeout: std::time::Duration,
        until: impl Fn(&Status) -> bool,
    ) -> Status {
        let guard = self.shared.control();
        let (guard, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |c| !until(&c.status))
            .unwrap_or_else(|e| e.into_inner());
        guard.status.clone()
    }

    fn send(&self, command: Command) {
        let mut c = self.shared.control();
        if c.status == Status::Stopped {
            return;
        }
        c.command = Some(command);
        self.shared.attention.store(true, Ordering::Release);
        drop(c);
        self.shared.changed.notify_all();
        self.queue.poke();
    }

    /// Stops the subscription after the handler call in progress, saves its
    /// checkpoint, and waits for its thread (except when called from that
    /// thread: the handler or notification callback itself). Status
    /// [`Status::Stopped`].
    pub fn stop(&self) {
        self.send(Command::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        // From the subscription's own thread (its handler or notification
        // callback): the stop happens once that call returns; nothing to wait for.
        if let Some(t) = thread.filter(|t| t.thread().id() != std::thread::current().id()) {
            let _ = t.join();
        }
    }

    /// After [`Status::Failed`]: tries again from the failed event. No effect
    /// otherwise. The status is [`Status::CatchingUp`] when it returns.
    pub fn restart(&self) {
        let mut c = self.shared.control();
        if matches!(c.status, Status::Failed { .. }) {
            c.status = Status::CatchingUp;
            drop(c);
            self.send(Command::Restart);
        }
    }

    /// Replays from the start: after the handler call in progress the
    /// subscription sends [`Notification::Rebuilding`] (reset the read model
    /// there), forgets its position, clears its checkpoint
    /// ([`CheckpointStore::clear`]) and reads the store from position 0. Works
    /// while running and after [`Status::Failed`]. A process that stops during
    /// the replay starts it again (the read model it keeps must be reset then
    /// too: a model saved atomically with its checkpoint is). If the clear
    /// fails, the subscription stops with [`Status::Failed`] at position 0.
    pub fn rebuild(&self) {
        self.send(Command::Rebuild);
    }
}

impl Drop for CatchUpHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
