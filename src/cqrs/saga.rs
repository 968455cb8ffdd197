//! Sagas (process managers): durable, correlation-keyed state machines that
//! react to events by sending commands, with deadlines.
//!
//! A [`ProcessManager`] says which instance an event belongs to
//! ([`correlate`](ProcessManager::correlate), e.g. the order id), whether it may
//! start one ([`starts`](ProcessManager::starts)), and what to do
//! ([`handle`](ProcessManager::handle)): change the instance's state, send
//! commands, schedule or cancel deadlines, complete. [`saga`] runs it on a
//! catch-up subscription of the store, so it sees every event once, in order,
//! history first.
//!
//! # Durable, and nothing sent twice
//! Each instance is itself event-sourced, in a store of [`SagaRecord`]s (stream
//! `saga-{name}-{key}`; give the saga a store of its own, e.g. a second
//! `FileStore` directory): one record per step — the trigger (an event's
//! position, or a deadline), the new state, the commands sent, the deadlines
//! scheduled and cancelled — appended atomically *before* the commands are
//! sent. Ids are deterministic: a record's id is derived from the saga, the
//! instance and the trigger, and each command's [`CommandId`] from the record
//! and its index. So after a crash:
//! * a trigger seen again (an event at or before the instance's last event
//!   step) takes no new step;
//! * steps and the sending of their commands happen one at a time, in record
//!   order; the saga keeps, under the checkpoint name `{name}.sent`, the saga
//!   store position up to which every step's commands went out (saved every 256
//!   steps and at stop). At start the commands of every later step are sent
//!   again, with the same ids, which the [`Repository`](super::Repository)
//!   recognises (a command that already caused events is not executed twice) —
//!   a crash between "command executed" and "progress saved" is harmless. A
//!   failed send is retried (by the event's retry, then by the timer every
//!   second) before the instance takes its next step;
//! * deadlines are re-armed from the records at start, and fire once (a fired
//!   deadline is a record too). A panic in `on_deadline` or in the dispatch
//!   function on the timer thread is caught and retried a second later.
//!
//! The commands go through the dispatch function given to
//! [`Saga::dispatch`] (usually a `match` that calls
//! [`Repository::execute_with`](super::Repository::execute_with) with the
//! [`CommandMeta`] it is given). Its error is the step's: a transient one is
//! retried under [`Saga::retry`] (the record is kept, the commands are sent
//! again), a permanent one stops the saga with [`Status::Failed`]. A command an
//! aggregate *rejects* is the dispatch function's call: return `Ok` to go on (the
//! saga will see no event from it), or an error.
//!
//! # Deadlines
//! [`SagaContext::schedule`] sets a named deadline `after` a duration of the
//! saga's [`Clock`] (default [`WallClock`], milliseconds since the Unix epoch:
//! deadlines survive restarts; tests use a
//! [`ManualClock`](crate::resilience::ManualClock)). When it comes due,
//! [`ProcessManager::on_deadline`] runs on the saga's timer thread, one step at
//! a time with the event steps. Scheduling a name again moves it; cancelling
//! removes it; completing an instance drops its deadlines. Events for a
//! completed instance are ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{CommandId, CommandMeta};
use crate::bus::{Bus, ProducerMode};
use crate::event::{Event, EventId};
use crate::outcome::HandlerError;
use crate::resilience::{Clock, ClockWaker, RetryPolicy, Wake};
use crate::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
use crate::store::{
    subscribe_all, CatchUpError, CatchUpHandle, EventStore, ExpectedVersion, Position, ReadError,
    Recorded, Status, StreamId,
};
use crate::{event_type, source};

/// A saga: how events drive a state machine per correlation key.
pub trait ProcessManager<P>: Send + Sync + 'static {
    /// An instance's state, kept in the saga's records.
    type State: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static;
    /// What it sends (an enum of the commands of the aggregates it drives).
    type Command: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// The saga's name: its checkpoint's name, part of its streams' names
    /// (`saga-{name}-{key}`) and of every id it derives. Never change it for a
    /// saga with state.
    fn name(&self) -> &str;

    /// The event types it wants (the bus's pattern grammar); default all.
    fn patterns(&self) -> &[&str] {
        &[">"]
    }

    /// The instance `event` belongs to (e.g. the order id), `None` if it is
    /// not for this saga.
    fn correlate(&self, event: &Recorded<P>) -> Option<String>;

    /// Whether `event` may start a new instance (Axon's `@StartSaga`). An event
    /// for an instance that does not exist and may not start one is ignored.
    fn starts(&self, event: &Recorded<P>) -> bool;

    /// Reacts to an event of the instance.
    ///
    /// # Errors
    /// A [`HandlerError`]: transient (the step is retried) or permanent (the
    /// saga stops with [`Status::Failed`]). Nothing of a failed step is kept.
    fn handle(
        &self,
        state: &mut Self::State,
        event: &Recorded<P>,
        cx: &mut SagaContext<Self::Command>,
    ) -> Result<(), HandlerError>;

    /// Reacts to the instance's deadline `deadline` coming due.
    ///
    /// # Errors
    /// As [`handle`](ProcessManager::handle).
    fn on_deadline(
        &self,
        state: &mut Self::State,
        deadline: &str,
        cx: &mut SagaContext<Self::Command>,
    ) -> Result<(), HandlerError>;
}

/// What a step of a saga does besides changing its state.
#[derive(Debug)]
pub struct SagaContext<C> {
    now: Duration,
    commands: Vec<C>,
    schedule: Vec<(String, u64)>,
    cancel: Vec<String>,
    complete: bool,
}

impl<C> SagaContext<C> {
    /// Sends `command` once the step is recorded.
    pub fn send(&mut self, command: C) {
        self.commands.push(command);
    }

    /// Sets the deadline `name` to `after` from now (moving it if set).
    pub fn schedule(&mut self, name: impl Into<String>, after: Duration) {
        let name = name.into();
        self.cancel.retain(|n| *n != name);
        let due = self.now.saturating_add(after);
        self.schedule.retain(|(n, _)| *n != name);
        self.schedule
            .push((name, u64::try_from(due.as_millis()).unwrap_or(u64::MAX)));
    }

    /// Removes the deadline `name`, if set.
    pub fn cancel(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.schedule.retain(|(n, _)| *n != name);
        self.cancel.push(name);
    }

    /// Ends the instance: its deadlines are dropped and later events for it
    /// ignored.
    pub fn complete(&mut self) {
        self.complete = true;
    }

    /// The saga clock's time now.
    pub fn now(&self) -> Duration {
        self.now
    }
}

/// What made a saga step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// The event at this position of the store.
    Event(Position),
    /// A deadline of this name, due at this many milliseconds of the saga's
    /// clock.
    Deadline(String, u64),
}

/// One step of a saga instance, as its stream keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// What made the step.
    pub trigger: Trigger,
    /// The instance's state after it.
    pub state: serde_json::Value,
    /// The commands it sent, in order.
    pub commands: Vec<serde_json::Value>,
    /// The deadlines it set: name, due (milliseconds of the saga's clock).
    pub scheduled: Vec<(String, u64)>,
    /// The deadlines it removed.
    pub cancelled: Vec<String>,
    /// Whether it completed the instance.
    pub completed: bool,
}

/// Milliseconds since the Unix epoch, never going backwards within the
/// process: the default clock of saga deadlines, which survive restarts.
#[derive(Debug, Default)]
pub struct WallClock {
    last: Mutex<Duration>,
}

impl WallClock {
    /// The clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = (*last).max(wall);
        *last
    }
}

type Dispatch<C> = Box<dyn Fn(CommandMeta, C) -> Result<(), HandlerError> + Send + Sync>;

/// Starts building a saga: `manager` driven by `store`'s events (live through
/// `bus`), its instances kept in `saga_store`.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ringbus::cqrs::{saga, ProcessManager, SagaContext};
/// use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, Recorded, StreamId};
/// use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
///
/// /// Sends a reminder for every order, once.
/// struct Reminders;
/// impl ProcessManager<u64> for Reminders {
///     type State = u32;
///     type Command = String;
///     fn name(&self) -> &str { "reminders" }
///     fn correlate(&self, r: &Recorded<u64>) -> Option<String> { Some(r.event.data.to_string()) }
///     fn starts(&self, _: &Recorded<u64>) -> bool { true }
///     fn handle(&self, seen: &mut u32, r: &Recorded<u64>, cx: &mut SagaContext<String>) -> Result<(), HandlerError> {
///         *seen += 1;
///         cx.send(format!("remind {}", r.event.data));
///         cx.complete();
///         Ok(())
///     }
///     fn on_deadline(&self, _: &mut u32, _: &str, _: &mut SagaContext<String>) -> Result<(), HandlerError> { Ok(()) }
/// }
///
/// let bus = BusBuilder::<u64>::new().build()?;
/// let store = Arc::new(InMemoryStore::new());
/// let _feed = store.publish_to(&bus);
/// let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
/// let s = sent.clone();
/// let reminders = saga(store.clone(), &bus, Arc::new(InMemoryStore::new()), Reminders)
///     .dispatch(move |_meta, command| { s.lock().unwrap().push(command); Ok(()) })
///     .start()?;
/// let order = Event::new(event_type!("order.placed"), source!("shop"), 7);
/// store.append(&StreamId::new("order-7")?, ExpectedVersion::Any, vec![order])?;
/// assert!(reminders.wait_for(store.head().unwrap(), Duration::from_secs(10)));
/// assert_eq!(*sent.lock().unwrap(), ["remind 7"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn saga<S, P, M, SS, PM>(
    store: Arc<S>,
    bus: &Bus<P, M>,
    saga_store: Arc<SS>,
    manager: PM,
) -> Saga<'_, S, P, M, SS, PM>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
    SS: EventStore<SagaRecord>,
    PM: ProcessManager<P>,
{
    Saga {
        store,
        bus,
        saga_store,
        manager,
        dispatch: None,
        clock: Arc::new(WallClock::new()),
        checkpoints: Box::new(InMemoryCheckpoints::new()),
        retry: RetryPolicy::none(),
    }
}

/// Options of a saga before it starts (see [`saga`]).
#[must_use = "a saga does nothing until started"]
pub struct Saga<'b, S, P, M: ProducerMode, SS, PM: ProcessManager<P>> {
    store: Arc<S>,
    bus: &'b Bus<P, M>,
    saga_store: Arc<SS>,
    manager: PM,
    dispatch: Option<Dispatch<PM::Command>>,
    clock: Arc<dyn Clock>,
    checkpoints: Box<dyn CheckpointStore + Send + Sync>,
    retry: RetryPolicy,
}

impl<S, P, M: ProducerMode, SS, PM: ProcessManager<P>> fmt::Debug for Saga<'_, S, P, M, SS, PM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.manager.name())
            .finish_non_exhaustive()
    }
}

impl<'b, S, P, M, SS, PM> Saga<'b, S, P, M, SS, PM>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
    M: ProducerMode,
    SS: EventStore<SagaRecord>,
    PM: ProcessManager<P>,
{
    /// Where the saga's commands go: called once the step that sent them is
    /// recorded, with the command's id and flow ([`CommandMeta`]: pass it to
    /// [`Repository::execute_with`](super::Repository::execute_with)), perhaps
    /// again after a crash or a failed step with the same id. Without it the
    /// saga sends nothing (`start` refuses a saga that sends commands then —
    /// it cannot know in advance; commands are dropped with an error).
    pub fn dispatch(
        mut self,
        f: impl Fn(CommandMeta, PM::Command) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.dispatch = Some(Box::new(f));
        self
    }

    /// The clock of deadlines (default [`WallClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Where the saga keeps its subscription's position (under its name) and
    /// its sent mark (`{name}.sent`). Default in memory: each start reads the
    /// store from the start and sends every recorded step again — safe (ids),
    /// but slower; give it
    /// [`FileCheckpoints`](crate::store::checkpoint::FileCheckpoints) with a file
    /// store.
    pub fn checkpoints(
        mut self,
        checkpoints: impl CheckpointStore + Send + Sync + 'static,
    ) -> Self {
        self.checkpoints = Box::new(checkpoints);
        self
    }

    /// Retries a failed step in place under `policy` (default: none).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Loads the instances from the saga store, sends again the commands of
    /// the steps after the sent mark, re-arms deadlines and starts following
    /// the store.
    ///
    /// # Errors
    /// [`CatchUpError::Read`] if the saga store cannot be read or holds records
    /// that do not decode; otherwise as
    /// [`CatchUp::start`](crate::store::CatchUp::start).
    pub fn start(self) -> Result<SagaHandle<PM::State>, CatchUpError> {
        let name = self.manager.name().to_owned();
        let patterns: Vec<String> = self
            .manager
            .patterns()
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        let checkpoints: Arc<dyn CheckpointStore + Send + Sync> = Arc::from(self.checkpoints);
        let core = Arc::new(Core {
            name: name.clone(),
            sent_name: format!("{name}.sent"),
            manager: self.manager,
            saga_store: self.saga_store,
            dispatch: self.dispatch,
            clock: self.clock,
            checkpoints: checkpoints.clone(),
            inner: Mutex::new(Inner {
                instances: HashMap::new(),
                due: BTreeSet::new(),
                unsent: BTreeMap::new(),
                last_record: None,
                sends_since_save: 0,
            }),
            timer: Condvar::new(),
            stopping: Mutex::new(false),
            _payload: std::marker::PhantomData,
        });
        core.load().map_err(CatchUpError::Read)?;
        {
            // Steps recorded after the last saved "sent" mark may not have had
            // their commands sent: send them again (their ids make that harmless).
            let mut inner = core.lock();
            if let Err(e) = core.flush(&mut inner, None) {
                crate::log::warning!(
                    "ringbus saga: re-sending recorded commands failed; retried by the timer and when their triggers are seen",
                    saga = name.as_str(),
                    error = e.to_string()
                );
            }
        }
        let timer = {
            let core = core.clone();
            // Weak: a stopped saga's core is freed, and the clock drops its waker.
            let weak: Arc<dyn Wake> = core.clone();
            core.clock
                .set_waker(ClockWaker::weak(Arc::downgrade(&weak)));
            std::thread::Builder::new()
                .name(format!("ringbus-saga-{name}"))
                .spawn(move || core.run_timer())
                .map_err(|e| CatchUpError::Read(ReadError::Io(e)))?
        };
        let handling = core.clone();
        let subscription = subscribe_all(self.store, self.bus)
            .name(format!("saga-{name}"))
            .filter(patterns)
            .checkpoints(checkpoints, name)
            .retry(self.retry)
            .start(move |r: &Recorded<P>| handling.on_event(r));
        let subscription = match subscription {
            Ok(s) => s,
            Err(e) => {
                core.stop_timer();
                let _ = timer.join();
                return Err(e);
            }
        };
        Ok(SagaHandle {
            core: core as Arc<dyn Instances<PM::State>>,
            subscription,
            timer: Mutex::new(Some(timer)),
        })
    }
}

/// One instance in memory.
#[derive(Debug)]
struct Instance<T> {
    state: T,
    /// Records in its stream.
    version: u64,
    completed: bool,
    deadlines: BTreeMap<String, u64>,
    /// The store position of the last event that made a step of it.
    last_event: Option<Position>,
}

impl<T: Default> Instance<T> {
    fn new() -> Self {
        Instance {
            state: T::default(),
            version: 0,
            completed: false,
            deadlines: BTreeMap::new(),
            last_event: None,
        }
    }
}

/// Everything the steps change, behind one lock: steps, and the sending of
/// their commands, happen one at a time.
struct Inner<T> {
    instances: HashMap<String, Instance<T>>,
    /// Every pending deadline, soonest first: (due, instance key, name).
    due: BTreeSet<(u64, String, String)>,
    /// Recorded steps whose commands are not known to be sent, by their
    /// position in the saga store: instance key and record.
    unsent: BTreeMap<Position, (String, SagaRecord)>,
    /// The saga store position of the last record of this saga.
    last_record: Option<Position>,
    sends_since_save: u64,
}

/// How often the "sent" mark is saved, in steps sent.
const SAVE_SENT_EVERY: u64 = 256;

struct Core<P, PM: ProcessManager<P>, SS> {
    name: String,
    /// The checkpoint under which the saga store position up to which every
    /// step's commands were sent is kept.
    sent_name: String,
    manager: PM,
    saga_store: Arc<SS>,
    dispatch: Option<Dispatch<PM::Command>>,
    clock: Arc<dyn Clock>,
    checkpoints: Arc<dyn CheckpointStore + Send + Sync>,
    inner: Mutex<Inner<PM::State>>,
    /// Woken when a deadline is set, the clock jumps, or the saga stops.
    timer: Condvar,
    stopping: Mutex<bool>,
    _payload: std::marker::PhantomData<fn(P)>,
}

type Guard<'a, T> = MutexGuard<'a, Inner<T>>;

impl<P, PM, SS> Core<P, PM, SS>
where
    P: Clone + Send + Sync + 'static,
    PM: ProcessManager<P>,
    SS: EventStore<SagaRecord>,
{
    fn lock(&self) -> Guard<'_, PM::State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stream(&self, key: &str) -> Result<StreamId, HandlerError> {
        StreamId::new(format!("saga-{}-{key}", self.name))
            .map_err(|e| HandlerError::permanent(format!("saga instance key {key:?}: {e}")))
    }

    /// Rebuilds every instance from the saga store; the records after the
    /// saved "sent" mark are queued to be sent again.
    fn load(&self) -> Result<(), ReadError> {
        let sent = self
            .checkpoints
            .load(&self.sent_name)
            .map_err(ReadError::Io)?;
        let prefix = format!("saga-{}-", self.name);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut from = Position(0);
        loop {
            let page = self.saga_store.read_all(from, 4096)?;
            let Some(end) = page.last().map(|r| r.position) else {
                break;
            };
            for r in page {
                let Some(key) = r
                    .event
                    .subject
                    .as_ref()
                    .and_then(|s| s.as_str().strip_prefix(&prefix))
                else {
                    continue; // another saga's
                };
                let record = r.event.data;
                let state = serde_json::from_value(record.state.clone()).map_err(|e| {
                    ReadError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "saga {}: the state of {key:?} at position {} does not decode: {e}",
                            self.name, r.position
                        ),
                    ))
                })?;
                let i = inner
                    .instances
                    .entry(key.to_owned())
                    .or_insert_with(Instance::new);
                i.state = state;
                i.version = r.version;
                if let Trigger::Event(p) = record.trigger {
                    i.last_event = Some(p);
                }
                apply(i, &mut inner.due, key, &record);
                if sent.is_none_or(|s| r.position > s) {
                    inner.unsent.insert(r.position, (key.to_owned(), record));
                }
                inner.last_record = Some(r.position);
            }
            from = end.next();
        }
        Ok(())
    }

    /// One event of the store: find or start the instance, take a step.
    fn on_event(&self, r: &Recorded<P>) -> Result<(), HandlerError> {
        let Some(key) = self.manager.correlate(r) else {
            return Ok(());
        };
        let mut inner = self.lock();
        if let Some(i) = inner.instances.get(&key) {
            match i.last_event {
                // Seen before (a restart, a retry): send what it recorded,
                // if that is still unsent.
                Some(p) if p >= r.position => return self.flush(&mut inner, Some(&key)),
                _ => {}
            }
            if i.completed {
                return Ok(());
            }
        } else if !self.manager.starts(r) {
            return Ok(());
        }
        // The instance's earlier steps go out first.
        self.flush(&mut inner, Some(&key))?;
        let i = inner
            .instances
            .entry(key.clone())
            .or_insert_with(Instance::new);
        let mut state = i.state.clone();
        let mut cx = self.context();
        self.manager.handle(&mut state, r, &mut cx)?;
        let sets_deadline = !cx.schedule.is_empty();
        self.step(&mut inner, &key, Trigger::Event(r.position), state, cx)?;
        if sets_deadline {
            // The timer may have to wake sooner.
            self.timer.notify_all();
        }
        self.flush(&mut inner, Some(&key))
    }

    fn context(&self) -> SagaContext<PM::Command> {
        SagaContext {
            now: self.clock.now(),
            commands: Vec::new(),
            schedule: Vec::new(),
            cancel: Vec::new(),
            complete: false,
        }
    }

    /// Records a step, applies it to the instance and queues its commands.
    fn step(
        &self,
        inner: &mut Inner<PM::State>,
        key: &str,
        trigger: Trigger,
        state: PM::State,
        cx: SagaContext<PM::Command>,
    ) -> Result<(), HandlerError> {
        let json = |what: &str, e: serde_json::Error| {
            HandlerError::permanent(format!(
                "saga {}: {what} is not serialisable: {e}",
                self.name
            ))
        };
        let record = SagaRecord {
            trigger,
            state: serde_json::to_value(&state).map_err(|e| json("the state", e))?,
            commands: cx
                .commands
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(|e| json("a command", e))?,
            scheduled: cx.schedule,
            cancelled: cx.cancel,
            completed: cx.complete,
        };
        let stream = self.stream(key)?;
        let i = inner.instances.get_mut(key).expect("the step's instance");
        let mut event = Event::new(
            event_type!("saga.step"),
            source!("ringbus-saga"),
            record.clone(),
        );
        event.id = derived(&[
            self.name.as_bytes(),
            key.as_bytes(),
            &trigger_bytes(&record.trigger),
        ]);
        let outcome = self
            .saga_store
            .append(&stream, ExpectedVersion::Exact(i.version), vec![event])
            .map_err(|e| {
                HandlerError::transient(format!(
                    "saga {}: recording a step of {key:?}: {e}",
                    self.name
                ))
            })?;
        i.version = outcome.version;
        i.state = state;
        if let Trigger::Event(p) = record.trigger {
            i.last_event = Some(p);
        }
        apply(i, &mut inner.due, key, &record);
        inner.last_record = Some(outcome.last_position);
        inner
            .unsent
            .insert(outcome.last_position, (key.to_owned(), record));
        Ok(())
    }

    /// Sends the unsent steps' commands, oldest first — of instance `only`, or
    /// of all — stopping at the first failure; saves the "sent" mark now and
    /// then.
    fn flush(&self, inner: &mut Inner<PM::State>, only: Option<&str>) -> Result<(), HandlerError> {
        let due: Vec<Position> = inner
            .unsent
            .iter()
            .filter(|(_, (k, _))| only.is_none_or(|o| o == k))
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let (key, record) = &inner.unsent[&p];
            self.send(key, record)?;
            inner.unsent.remove(&p);
            inner.sends_since_save += 1;
        }
        if inner.sends_since_save >= SAVE_SENT_EVERY {
            self.save_sent(inner);
        }
        Ok(())
    }

    /// Saves the saga store position up to which every step was sent.
    fn save_sent(&self, inner: &mut Inner<PM::State>) {
        let mark = match inner.unsent.keys().next() {
            Some(first) => first.0.checked_sub(1).map(Position),
            None => inner.last_record,
        };
        let Some(mark) = mark else { return };
        match self.checkpoints.save(&self.sent_name, mark) {
            Ok(()) => inner.sends_since_save = 0,
            Err(e) => crate::log::warning!(
                "ringbus saga: saving the sent mark failed (more is re-sent at the next start)",
                saga = self.name.as_str(),
                error = e.to_string()
            ),
        }
    }

    /// Sends a recorded step's commands, with ids derived from the step.
    fn send(&self, key: &str, record: &SagaRecord) -> Result<(), HandlerError> {
        if record.commands.is_empty() {
            return Ok(());
        }
        let Some(dispatch) = &self.dispatch else {
            return Err(HandlerError::permanent(format!(
                "saga {} sends commands but has no dispatch function",
                self.name
            )));
        };
        let step = trigger_bytes(&record.trigger);
        for (n, command) in record.commands.iter().enumerate() {
            let command: PM::Command = serde_json::from_value(command.clone()).map_err(|e| {
                HandlerError::permanent(format!(
                    "saga {}: a recorded command does not decode: {e}",
                    self.name
                ))
            })?;
            let id = derived(&[
                self.name.as_bytes(),
                key.as_bytes(),
                &step,
                b"command",
                &(n as u64).to_le_bytes(),
            ]);
            let meta = CommandMeta::with_id(CommandId::from_uuid(*id.as_uuid()))
                .with_correlation_id(derived(&[self.name.as_bytes(), key.as_bytes()]));
            dispatch(meta, command)?;
        }
        Ok(())
    }

    /// The timer thread: fires due deadlines, one step at a time, and retries
    /// unsent commands.
    fn run_timer(&self) {
        let mut inner = self.lock();
        loop {
            if *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) {
                self.save_sent(&mut inner);
                return;
            }
            if !inner.unsent.is_empty() {
                if let Err(e) = caught(|| self.flush(&mut inner, None)) {
                    crate::log::warning!(
                        "ringbus saga: sending recorded commands failed; retried in a second",
                        saga = self.name.as_str(),
                        error = e.to_string()
                    );
                    inner = self.wait(inner, Duration::from_secs(1));
                    continue;
                }
            }
            let now = self.clock.now();
            let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            let next = inner.due.iter().next().cloned();
            match next {
                Some((due, key, name)) if due <= now_ms => {
                    let i = &inner.instances[&key];
                    let mut state = i.state.clone();
                    let mut cx = self.context();
                    // A deadline fires once: the next steps see it gone.
                    cx.cancel.push(name.clone());
                    let result = caught(|| self.manager.on_deadline(&mut state, &name, &mut cx))
                        .and_then(|()| {
                            self.step(
                                &mut inner,
                                &key,
                                Trigger::Deadline(name.clone(), due),
                                state,
                                cx,
                            )
                        });
                    if let Err(e) = result {
                        crate::log::warning!(
                            "ringbus saga: a deadline's step failed; retried in a second",
                            saga = self.name.as_str(),
                            deadline = name.as_str(),
                            error = e.to_string()
                        );
                        inner = self.wait(inner, Duration::from_secs(1));
                    }
                }
                Some((due, ..)) => {
                    let wait = Duration::from_millis(due - now_ms).min(Duration::from_millis(100));
                    inner = self.wait(inner, wait);
                }
                None => inner = self.wait(inner, Duration::from_millis(100)),
            }
        }
    }

    fn wait<'a>(&self, guard: Guard<'a, PM::State>, d: Duration) -> Guard<'a, PM::State> {
        self.timer
            .wait_timeout(guard, d)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    fn stop_timer(&self) {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) = true;
        let _guard = self.lock();
        self.timer.notify_all();
    }
}

impl<P, PM, SS> Wake for Core<P, PM, SS>
where
    P: Clone + Send + Sync + 'static,
    PM: ProcessManager<P>,
    SS: EventStore<SagaRecord>,
{
    /// The clock jumped: the timer re-checks its deadlines.
    fn wake(&self) {
        let _guard = self.lock();
        self.timer.notify_all();
    }
}

/// `f`, with a panic turned into a transient error: user code on the timer
/// thread (a deadline handler, the dispatch function) must not kill it.
fn caught(f: impl FnOnce() -> Result<(), HandlerError>) -> Result<(), HandlerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(HandlerError::transient(format!("panicked: {what}")))
    })
}

/// Applies a step's deadline changes and completion to instance `key`, and to
/// the index of pending deadlines.
fn apply<T>(
    i: &mut Instance<T>,
    due: &mut BTreeSet<(u64, String, String)>,
    key: &str,
    record: &SagaRecord,
) {
    fn unset<T>(
        i: &mut Instance<T>,
        due: &mut BTreeSet<(u64, String, String)>,
        key: &str,
        name: &str,
    ) {
        if let Some(at) = i.deadlines.remove(name) {
            due.remove(&(at, key.to_owned(), name.to_owned()));
        }
    }
    for name in &record.cancelled {
        unset(i, due, key, name);
    }
    for (name, at) in &record.scheduled {
        unset(i, due, key, name);
        i.deadlines.insert(name.clone(), *at);
        due.insert((*at, key.to_owned(), name.clone()));
    }
    if record.completed {
        i.completed = true;
        let names: Vec<String> = i.deadlines.keys().cloned().collect();
        for name in names {
            unset(i, due, key, &name);
        }
    }
}

fn trigger_bytes(t: &Trigger) -> Vec<u8> {
    match t {
        Trigger::Event(p) => [b"event".as_slice(), &p.0.to_le_bytes()].concat(),
        Trigger::Deadline(name, due) => [
            b"deadline".as_slice(),
            name.as_bytes(),
            b"\0",
            &due.to_le_bytes(),
        ]
        .concat(),
    }
}

/// A stable id from `parts`: 128 bits of two FNV-1a passes (different
/// offsets) over the length-prefixed parts, as a UUID v8. Stored: never change.
fn derived(parts: &[&[u8]]) -> EventId {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            a = (a ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(x))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
    };
    for p in parts {
        eat(&(p.len() as u64).to_le_bytes());
        eat(p);
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    EventId::from_uuid(uuid::Builder::from_custom_bytes(out).into_uuid())
}

/// What the handle asks of the saga, type-erased over the store and payload.
trait Instances<T>: Send + Sync {
    fn state(&self, key: &str) -> Option<(T, bool)>;
    fn deadlines(&self, key: &str) -> Vec<(String, Duration)>;
    fn count(&self) -> usize;
    fn stop_timer(&self);
}

impl<P, PM, SS> Instances<PM::State> for Core<P, PM, SS>
where
    P: Clone + Send + Sync + 'static,
    PM: ProcessManager<P>,
    SS: EventStore<SagaRecord>,
{
    fn state(&self, key: &str) -> Option<(PM::State, bool)> {
        self.lock()
            .instances
            .get(key)
            .map(|i| (i.state.clone(), i.completed))
    }

    fn deadlines(&self, key: &str) -> Vec<(String, Duration)> {
        self.lock().instances.get(key).map_or_else(Vec::new, |i| {
            i.deadlines
                .iter()
                .map(|(n, due)| (n.clone(), Duration::from_millis(*due)))
                .collect()
        })
    }

    fn count(&self) -> usize {
        self.lock().instances.len()
    }

    fn stop_timer(&self) {
        Core::stop_timer(self);
    }
}

/// A running saga. Dropping it stops the saga.
pub struct SagaHandle<T> {
    core: Arc<dyn Instances<T>>,
    subscription: CatchUpHandle,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl<T> fmt::Debug for SagaHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaHandle")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl<T> SagaHandle<T> {
    /// An instance's state and whether it completed, `None` if it never
    /// started.
    pub fn state(&self, key: &str) -> Option<(T, bool)> {
        self.core.state(key)
    }

    /// An instance's pending deadlines: name, due time on the saga's clock.
    pub fn deadlines(&self, key: &str) -> Vec<(String, Duration)> {
        self.core.deadlines(key)
    }

    /// The number of instances, completed ones included.
    pub fn instances(&self) -> usize {
        self.core.count()
    }

    /// Waits until the saga has handled (or passed over) every event up to
    /// `position`, or `timeout` passes; `true` if it has.
    pub fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        self.subscription.wait_for(position, timeout)
    }

    /// Where the saga's subscription stands.
    pub fn status(&self) -> Status {
        self.subscription.status()
    }

    /// After [`Status::Failed`]: tries the failed step again.
    pub fn restart(&self) {
        self.subscription.restart();
    }

    /// Stops the saga: its subscription (after the step in progress) and its
    /// timer.
    pub fn stop(&self) {
        self.subscription.stop();
        self.core.stop_timer();
        let timer = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = timer.filter(|t| t.thread().id() != std::thread::current().id()) {
            let _ = t.join();
        }
    }
}

impl<T> Drop for SagaHandle<T> {
    fn drop(&mut self) {
        self.stop();
    }
}
