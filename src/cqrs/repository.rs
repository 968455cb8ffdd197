//! The repository: loads aggregates from the event store (snapshot, then the
//! events after it, upcast), executes commands on them with optimistic
//! concurrency, recognises retried commands, keeps hot aggregates in memory
//! and snapshots them every N events.
//!
//! How a command goes and why the cache reads the stream: see [`Repository`].

use std::fmt;
use std::sync::PoisonError;

use super::aggregate::{Aggregate, Snapshotted};
use super::cache::{Cache, Entry};
use super::command::{CommandId, CommandMeta};
use super::error::{CommandError, LoadError, StoreError};
use super::recent::{RecentCommands, Run};
use crate::event::Event;
use crate::log;
use crate::store::snapshot::Snapshot;
use crate::store::upcast::{UpcastError, UpcastErrorKind, Upcasters};
use crate::store::{AppendError, EventStore, ExpectedVersion, Recorded, StreamId, StreamIdError};

/// How many events one read of a stream asks for.
const PAGE: usize = 1024;

/// The default [`Repository::dedup_window`]: the stream's last 64 events.
const DEFAULT_DEDUP_WINDOW: u64 = 64;

/// Loads aggregates of type `A` from the event store `S` and executes commands
/// on them.
///
/// Built with [`new`](Repository::new) and configured like a builder:
/// [`cache`](Repository::cache), [`snapshots`](Repository::snapshots),
/// [`retry_on_conflict`](Repository::retry_on_conflict),
/// [`upcasters`](Repository::upcasters), [`dedup_window`](Repository::dedup_window).
/// Share it between threads by reference or in an `Arc`: every method takes
/// `&self`. The store is held by value; pass an `Arc<FileStore<_>>` (any
/// `Arc<S>` of a store is a store) to share one store with subscriptions and
/// other repositories.
///
/// See the [module docs](super) for an example.
///
/// # How `execute` goes
/// 1. **Get** the aggregate: with a cache, lock its slot (this process's
///    commands on one aggregate take turns) and read the stream's events after
///    the cached version (usually none — one read that finds nothing);
///    otherwise load it: the latest snapshot if snapshots are on and it
///    decodes, then the events after it.
/// 2. **Recognise a retry**: if the command's id caused one of the stream's last
///    events ([`Repository::dedup_window`]), return those events with
///    `duplicate: true`; nothing is decided or appended.
/// 3. **Decide**: [`Aggregate::handle`]. A refusal is [`CommandError::Rejected`].
/// 4. **Append** with `ExpectedVersion::Exact(version)`, the events'
///    ids derived from the command id. On a conflict, read the events that
///    came in, decide again and append again, up to
///    [`Repository::retry_on_conflict`] attempts in all.
/// 5. **Evolve** the state with the events, save a snapshot when the version
///    crossed a multiple of N, keep the aggregate in its cache slot.
///
/// # Why the cache reads the stream before each use
/// The cache might be stale: another repository or process may have
/// appended. Rather than trusting it and turning staleness into a conflict
/// (which, without retries, the caller would see as a spurious
/// [`CommandError::Conflict`]), a command reads the events after the cached
/// version first. In the common case that read returns nothing (one store
/// call, like [`EventStore::stream_version`]); when it finds events, they are
/// applied, so the cache never needs a full reload.
pub struct Repository<A: Aggregate, S> {
    store: S,
    snapshots: Option<SnapshotPolicy<A>>,
    cache: Option<Cache<A>>,
    /// Attempts per command, ≥ 1.
    max_attempts: u32,
    upcasters: Option<Upcasters>,
    /// How many of a stream's last events the retry check covers.
    dedup_window: u64,
}

/// When and how to snapshot `A` (only built for [`Snapshotted`] aggregates).
struct SnapshotPolicy<A> {
    /// Snapshot when the version crosses a multiple of this, ≥ 1.
    every: u64,
    encode: fn(&A, StreamId, u64) -> Result<Snapshot, String>,
    decode: fn(&Snapshot) -> Option<A>,
}

fn encode_state<A: Snapshotted>(
    state: &A,
    stream: StreamId,
    version: u64,
) -> Result<Snapshot, String> {
    Snapshot::encode(stream, version, A::SCHEMA, state)
}

fn decode_state<A: Snapshotted>(snapshot: &Snapshot) -> Option<A> {
    snapshot.decode(A::SCHEMA)
}

/// An aggregate as loaded: its state and the stream version it includes.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state after the stream's events `1..=version`.
    pub state: A,
    /// The stream version the state includes: 0 for an aggregate with no
    /// events yet (`state` is then `A::default()`).
    pub version: u64,
}

/// A command that was executed: its events and where they are.
pub struct Executed<A: Aggregate> {
    /// The command's id: the causation id of its events.
    pub command_id: CommandId,
    /// The stream's version after the command's events (the version of its last
    /// event; the version it was at when the command produced no events).
    pub version: u64,
    /// The events the command produced, as stored.
    pub events: Vec<A::Event>,
    /// `true`: the command had been executed before (same [`CommandId`]), so
    /// nothing was decided or appended; `events` and `version` are the earlier
    /// execution's.
    pub duplicate: bool,
    /// How many times the command was decided (1 unless a conflict was retried;
    /// the attempt that found the command already executed counts).
    pub attempts: u32,
}

impl<A: Aggregate> fmt::Debug for Executed<A>
where
    A::Event: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executed")
            .field("command_id", &self.command_id)
            .field("version", &self.version)
            .field("events", &self.events)
            .field("duplicate", &self.duplicate)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<A: Aggregate, S> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::TYPE)
            .field("snapshot_every", &self.snapshots.as_ref().map(|p| p.every))
            .field("cached", &self.cache.is_some())
            .field("max_attempts", &self.max_attempts)
            .field("upcasters", &self.upcasters)
            .field("dedup_window", &self.dedup_window)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: EventStore<A::Event>> Repository<A, S> {
    /// A repository over `store`: no cache, no snapshots, one attempt per
    /// command (a conflict is returned), no upcasters, retries recognised among
    /// a stream's last 64 events.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            snapshots: None,
            cache: None,
            max_attempts: 1,
            upcasters: None,
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }

    /// Keeps up to `max_aggregates` aggregates in memory between commands, so a
    /// command on a hot aggregate reads only the events appended since (usually
    /// none) instead of its whole stream. When full, the least recently used
    /// half is dropped. A cached aggregate is never used without reading the
    /// events after its version first, so results are the same with and without
    /// a cache. [`load`](Repository::load) does not use the cache.
    ///
    /// A command holds its aggregate's cache slot locked while it runs, so
    /// this repository's commands on one aggregate run one after the other
    /// (they could not both succeed on the same version anyway) and conflict
    /// only with other writers; commands on different aggregates run in
    /// parallel.
    ///
    /// # Panics
    /// If `max_aggregates` is 0.
    #[track_caller]
    #[must_use]
    pub fn cache(mut self, max_aggregates: usize) -> Self {
        assert!(max_aggregates >= 1, "a cache holds at least one aggregate");
        self.cache = Some(Cache::new(max_aggregates));
        self
    }

    /// Makes up to `max_attempts` attempts per command (1, the default, returns
    /// the first conflict): on a conflict, the events another writer appended
    /// are read and applied, the command is decided again on the new state and
    /// appended again. After the last attempt it is
    /// [`CommandError::Conflict`]` { attempts: max_attempts }`. (cqrs-es
    /// returns the conflict and leaves retrying to the caller; this offers
    /// both.)
    ///
    /// # Panics
    /// If `max_attempts` is 0.
    #[track_caller]
    #[must_use]
    pub fn retry_on_conflict(mut self, max_attempts: u32) -> Self {
        assert!(max_attempts >= 1, "a command needs at least one attempt");
        self.max_attempts = max_attempts;
        self
    }

    /// Upcasts the events it reads with `upcasters` before applying them.
    ///
    /// The store has already decoded each payload into `A::Event`; an event
    /// whose (type, schema version) needs links is then taken through
    /// [`serde_json::Value`], upcast and converted back, so a link can change
    /// what a field *means* (euros → cents) as long as the old payload decodes
    /// as `A::Event`. An event written by newer code
    /// ([`TooNew`](crate::store::upcast::UpcastErrorKind::TooNew)) or with no
    /// way forward fails the load with [`LoadError::Upcast`] rather than being
    /// applied as if it were current. Events at their latest version (and of
    /// types without links) are applied as read.
    #[must_use]
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Some(upcasters);
        self
    }

    /// How far back a retried command is recognised: a command whose last event
    /// is among the stream's last `events` events (64 by default) is not
    /// executed again; [`execute`](Repository::execute) returns its events with
    /// `duplicate: true`. 0 turns the check off. Each checked-out aggregate
    /// keeps at most one small record per command in that window.
    ///
    /// A command retried after more than `events` later events would be
    /// decided again; a saga that may re-send that late keeps its own record
    /// of what it sent.
    #[must_use]
    pub fn dedup_window(mut self, events: u64) -> Self {
        self.dedup_window = events;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate `id`: `"{TYPE}-{id}"`.
    ///
    /// # Errors
    /// If that is not a valid [`StreamId`] (`id` empty would still give
    /// `"{TYPE}-"`, which is valid; too long or with a control character is
    /// not).
    pub fn stream_id(&self, id: &str) -> Result<StreamId, StreamIdError> {
        StreamId::new(format!("{}-{}", A::TYPE, id))
    }

    /// The aggregate `id` as stored now: the latest snapshot (if snapshots are
    /// on and it is usable), then the events after it, upcast and applied.
    ///
    /// Always reads the store: the cache hands its aggregates to commands, and
    /// an aggregate need not be `Clone`.
    ///
    /// # Errors
    /// [`LoadError::InvalidId`], [`LoadError::Read`], [`LoadError::Upcast`].
    /// A snapshot that cannot be read or used is not an error: it is skipped.
    pub fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id).map_err(LoadError::InvalidId)?;
        let entry = self.fetch(&stream)?;
        Ok(Loaded {
            state: entry.state,
            version: entry.version,
        })
    }

    /// Executes `command` on the aggregate `id` under a fresh [`CommandId`]:
    /// [`execute_with`](Repository::execute_with)`(id, CommandMeta::new(), command)`.
    ///
    /// `A::Command: Clone` is needed to decide again after a conflict; with one
    /// attempt the command is never cloned.
    ///
    /// # Errors
    /// See [`execute_with`](Repository::execute_with).
    pub fn execute(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        self.execute_with(id, CommandMeta::new(), command)
    }

    /// Executes `command` on the aggregate `id`: load, decide, append with
    /// `Exact(version)`, evolve (the steps are in the
    /// [type docs](Repository)).
    ///
    /// Every event gets `causation_id` = `meta`'s command id, `correlation_id`
    /// = `meta`'s correlation id or else the command id, an id derived from the
    /// command id and its index, and the stream id as its subject (whatever
    /// [`DomainEvent::subject`](crate::DomainEvent::subject) says).
    ///
    /// **Retries are safe**: executing again with the same command id after it
    /// succeeded returns the earlier events with `duplicate: true` (within
    /// [`dedup_window`](Repository::dedup_window)); two executions of it racing
    /// each other append once (the store recognises the derived event ids).
    ///
    /// # Errors
    /// * [`CommandError::Rejected`] — `handle` refused; nothing appended.
    /// * [`CommandError::Conflict`] — the stream changed under every attempt.
    /// * [`CommandError::Store`] — reading or appending failed.
    /// * [`CommandError::Upcast`] — a stored event could not be upcast.
    /// * [`CommandError::InvalidId`] — `"{TYPE}-{id}"` is not a stream id.
    pub fn execute_with(
        &self,
        id: &str,
        meta: CommandMeta,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream = self.stream_id(id).map_err(CommandError::InvalidId)?;
        let Some(cache) = &self.cache else {
            let entry = self.fetch(&stream)?;
            return self.run(&stream, entry, meta, command).0;
        };
        // The slot stays locked for the whole command: this process's commands
        // on one aggregate take turns.
        let slot = cache.slot(&stream);
        let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = match held.take() {
            Some(mut entry) => {
                self.catch_up(&stream, &mut entry)?;
                entry
            }
            None => self.fetch(&stream)?,
        };
        let (result, keep) = self.run(&stream, entry, meta, command);
        *held = keep;
        result
    }

    /// Runs a command on `entry` (up to date when called); returns the result
    /// and the entry to keep, `None` when its state is in doubt.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        stream: &StreamId,
        mut entry: Entry<A>,
        meta: CommandMeta,
        command: A::Command,
    ) -> (
        Result<Executed<A>, CommandError<A::Error>>,
        Option<Entry<A>>,
    )
    where
        A::Command: Clone,
    {
        let mut command = Some(command);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(run) = entry.recent.find(meta.id()) {
                let result = self.already_executed(stream, meta.id(), run, attempts);
                return (result, Some(entry));
            }
            let this_attempt = if attempts < self.max_attempts {
                command.clone()
            } else {
                command.take()
            };
            let this_attempt = this_attempt.expect("no attempt after the last");
            let data = match entry.state.handle(this_attempt) {
                Ok(data) => data,
                Err(e) => return (Err(CommandError::Rejected(e)), Some(entry)),
            };
            if data.is_empty() {
                let executed = Executed {
                    command_id: meta.id(),
                    version: entry.version,
                    events: data,
                    duplicate: false,
                    attempts,
                };
                return (Ok(executed), Some(entry));
            }
            let events = envelopes(stream, &meta, &data);
            let before = entry.version;
            let run = Run {
                command: meta.id(),
                first: before + 1,
                count: data.len() as u64,
            };
            match self
                .store
                .append(stream, ExpectedVersion::Exact(before), events)
            {
                Ok(outcome) if outcome.duplicate => {
                    // The same command, decided on the same state, was appended
                    // by a concurrent execution (another process, or another
                    // repository). The next command catches up with it.
                    let result = self.already_executed(stream, meta.id(), run, attempts);
                    return (result, Some(entry));
                }
                Ok(outcome) => {
                    for event in &data {
                        entry.state.apply(event);
                    }
                    entry.version = outcome.version;
                    entry.recent.record(run);
                    self.maybe_snapshot(stream, &entry, before);
                    let executed = Executed {
                        command_id: meta.id(),
                        version: entry.version,
                        events: data,
                        duplicate: false,
                        attempts,
                    };
                    return (Ok(executed), Some(entry));
                }
                Err(AppendError::WrongExpectedVersion { .. }) => {
                    if attempts >= self.max_attempts {
                        // Still a valid prefix of the stream: the next
                        // command catches up.
                        return (Err(CommandError::Conflict { attempts }), Some(entry));
                    }
                    // Let the writer that won finish its command.
                    std::thread::yield_now();
                    if let Err(e) = self.catch_up(stream, &mut entry) {
                        return (Err(e.into()), None);
                    }
                }
                Err(AppendError::Rejected { reason, .. }) => {
                    return (
                        Err(CommandError::Store(StoreError::Rejected(reason))),
                        Some(entry),
                    );
                }
                // Whether the events were written is unknown, or the store is
                // gone: forget the state (the next command reloads).
                Err(AppendError::Io { error, .. }) => {
                    return (Err(CommandError::Store(StoreError::Io(error))), None);
                }
                Err(AppendError::Closed { .. }) => {
                    return (Err(CommandError::Store(StoreError::Closed)), None);
                }
            }
        }
    }

    /// Loads the aggregate from the store: snapshot, then events.
    fn fetch(&self, stream: &StreamId) -> Result<Entry<A>, LoadError> {
        let mut entry = Entry {
            state: A::default(),
            version: 0,
            recent: RecentCommands::new(self.dedup_window),
        };
        if let Some((state, version)) = self.load_snapshot(stream)? {
            // The retry check covers the last events, some of which the
            // snapshot includes: read their envelopes (not applied).
            let back = self.dedup_window.min(version);
            if back > 0 {
                let before = self
                    .store
                    .read_stream(stream, version - back + 1, back as usize)?;
                for r in before.iter().take_while(|r| r.version <= version) {
                    entry.recent.observe(r.version, &r.event);
                }
            }
            entry.state = state;
            entry.version = version;
        }
        self.catch_up(stream, &mut entry)?;
        Ok(entry)
    }

    /// The stream's latest snapshot as a state, if snapshots are on and it is
    /// usable: readable, of this stream, of `A`'s schema, decodable, and not
    /// past the stream's end. Anything else is skipped (the aggregate is then
    /// replayed from its events).
    fn load_snapshot(&self, stream: &StreamId) -> Result<Option<(A, u64)>, LoadError> {
        let (Some(policy), Some(snapshots)) = (&self.snapshots, self.store.snapshots()) else {
            return Ok(None);
        };
        let snapshot = match snapshots.load(stream) {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Ok(None),
            Err(error) => {
                log::warning!(
                    "snapshot not read, replaying",
                    stream = stream,
                    error = error
                );
                return Ok(None);
            }
        };
        if snapshot.stream != *stream || snapshot.version == 0 {
            return Ok(None);
        }
        let Some(state) = (policy.decode)(&snapshot) else {
            log::warning!(
                "snapshot of another schema or undecodable, replaying",
                stream = stream,
                schema = snapshot.schema_version
            );
            return Ok(None);
        };
        let actual = self.store.stream_version(stream)?;
        if actual < snapshot.version {
            log::warning!(
                "snapshot past the end of its stream, replaying",
                stream = stream,
                snapshot_version = snapshot.version,
                stream_version = actual
            );
            return Ok(None);
        }
        Ok(Some((state, snapshot.version)))
    }

    /// Reads and applies the stream's events after `entry.version`.
    fn catch_up(&self, stream: &StreamId, entry: &mut Entry<A>) -> Result<(), LoadError> {
        loop {
            let page = self.store.read_stream(stream, entry.version + 1, PAGE)?;
            let n = page.len();
            for r in page {
                debug_assert_eq!(
                    r.version,
                    entry.version + 1,
                    "read_stream skipped a version"
                );
                entry.recent.observe(r.version, &r.event);
                let version = r.version;
                let data = self.upcast(r)?;
                entry.state.apply(&data);
                entry.version = version;
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// The payload of `r` at its latest schema version.
    fn upcast(&self, r: Recorded<A::Event>) -> Result<A::Event, LoadError> {
        let Some(upcasters) = &self.upcasters else {
            return Ok(r.event.data);
        };
        let position = r.position;
        let fail = |e: UpcastError| LoadError::Upcast(e.at(position));
        let event = r.event;
        if !upcasters
            .needs_upcast(event.event_type.name(), event.version)
            .map_err(fail)?
        {
            return Ok(event.data);
        }
        let (event_type, version) = (event.event_type.name().to_owned(), event.version);
        let value = serde_json::to_value(&event.data).map_err(|e| {
            fail(UpcastError::new(
                UpcastErrorKind::Mismatch {
                    reason: format!("the payload does not convert to JSON: {e}"),
                },
                &event_type,
                version,
            ))
        })?;
        let mut upcast = upcasters.upcast(event.map(|_| value)).map_err(fail)?;
        let data = std::mem::take(&mut upcast.data);
        serde_json::from_value(data).map_err(|e| {
            fail(UpcastError::mismatch(
                &upcast,
                format!("does not fit the aggregate's event type: {e}"),
            ))
        })
    }

    /// The result of a command executed before: its events, read back.
    fn already_executed(
        &self,
        stream: &StreamId,
        command_id: CommandId,
        run: Run,
        attempts: u32,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let records = self
            .store
            .read_stream(stream, run.first, run.count as usize)
            .map_err(|e| CommandError::Store(StoreError::Read(e)))?;
        let events = records
            .into_iter()
            .map(|r| self.upcast(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Executed {
            command_id,
            version: run.last(),
            events,
            duplicate: true,
            attempts,
        })
    }

    /// Saves a snapshot if the append from `before` to `entry.version` crossed a
    /// multiple of the snapshot interval. A failure is logged, never returned:
    /// the command has succeeded.
    fn maybe_snapshot(&self, stream: &StreamId, entry: &Entry<A>, before: u64) {
        let Some(policy) = &self.snapshots else {
            return;
        };
        if before / policy.every == entry.version / policy.every {
            return;
        }
        let Some(snapshots) = self.store.snapshots() else {
            return;
        };
        match (policy.encode)(&entry.state, stream.clone(), entry.version) {
            Ok(snapshot) => {
                if let Err(error) = snapshots.save(snapshot) {
                    log::warning!("snapshot not saved", stream = stream, error = error);
                }
            }
            Err(error) => log::warning!("snapshot not encoded", stream = stream, error = error),
        }
    }
}

impl<A: Snapshotted, S: EventStore<A::Event>> Repository<A, S> {
    /// Saves the aggregate's state in the store's snapshot storage
    /// ([`EventStore::snapshots`]) after each command whose events take the
    /// stream's version across a multiple of `every_n_events`, and loads from the
    /// latest snapshot plus the events after it.
    ///
    /// * A store without snapshot storage (`snapshots()` is `None`) makes this
    ///   a no-op: every load replays.
    /// * A snapshot that cannot be read, is of another
    ///   [`SCHEMA`](Snapshotted::SCHEMA), does not decode, or claims more
    ///   events than the stream has is ignored: the aggregate is replayed from
    ///   its events.
    /// * Saving happens after the append succeeded; a save that fails is
    ///   logged (with the `tracing` feature) and does not fail the command.
    ///
    /// # Panics
    /// If `every_n_events` is 0.
    #[track_caller]
    #[must_use]
    pub fn snapshots(mut self, every_n_events: u64) -> Self {
        assert!(every_n_events >= 1, "snapshot every 1 event or more");
        self.snapshots = Some(SnapshotPolicy {
            every: every_n_events,
            encode: encode_state::<A>,
            decode: decode_state::<A>,
        });
        self
    }
}

/// The command's events as envelopes for the stream.
fn envelopes<P: crate::DomainEvent + Clone>(
    stream: &StreamId,
    meta: &CommandMeta,
    data: &[P],
) -> Vec<Event<P>> {
    let cause = meta.id().as_event_id();
    let flow = meta.flow();
    data.iter()
        .enumerate()
        .map(|(i, payload)| {
            let mut e = Event::typed(payload.clone());
            // Past u32::MAX the ids repeat and the store rejects the batch
            // (no store takes that many events in one append anyway).
            e.id = meta.id().event_id(u32::try_from(i).unwrap_or(u32::MAX));
            e.subject = Some(stream.as_subject().clone());
            e.causation_id = Some(cause);
            e.correlation_id = Some(flow);
            e
        })
        .collect()
}
