//! The subscription's thread: history, the switch, live, failures, commands.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{Item, LiveQueue, Take};
use super::{Checkpoints, Command, Filter, Notification, Notify, Shared, Status};
use crate::event::Subject;
use crate::outcome::{FailureReason, HandlerError, SubscriptionId};
use crate::resilience::{Attempt, DeadLetterQueue, RetryPolicy};
use crate::store::{EventStore, Position, Recorded};
use crate::unwind::panic_message;

/// How long a live subscription waits on a quiet queue before it looks at the
/// store's head.
const POLL: Duration = Duration::from_millis(50);
/// Streams whose version the live path remembers before it forgets them all.
const MAX_VERSIONS: usize = 100_000;

type BoxedHandler<P> = Box<dyn FnMut(&Recorded<P>) -> Result<(), HandlerError> + Send>;

/// Why `follow` returned.
enum Halt {
    Stop,
    Rebuild,
    Failed(Position, String),
}

pub(super) struct Runner<S, P> {
    pub(super) store: Arc<S>,
    pub(super) queue: Arc<LiveQueue<P>>,
    pub(super) shared: Arc<Shared>,
    pub(super) handler: BoxedHandler<P>,
    pub(super) filter: Filter,
    /// Stream subscriptions: the first stream version to deliver (0 or 1: all).
    pub(super) min_version: u64,
    /// The last position handled.
    pub(super) last: Option<Position>,
    /// The stream version of each stream's last event handled (a cache).
    pub(super) versions: HashMap<Subject, u64>,
    pub(super) page_size: usize,
    pub(super) retry: RetryPolicy,
    pub(super) dead_letters: Option<(DeadLetterQueue<P>, SubscriptionId, Arc<str>)>,
    pub(super) checkpoints: Option<Checkpoints>,
    pub(super) save_every: u64,
    pub(super) since_save: u64,
    pub(super) notify: Option<Notify>,
    pub(super) rng: u64,
    pub(super) started: Instant,
    /// Removes the forwarder from the bus (without waiting) when the
    /// subscription ends.
    pub(super) detach: Option<Box<dyn FnOnce() + Send>>,
}

impl<S, P> Runner<S, P>
where
    S: EventStore<P>,
    P: Clone + Send + Sync + 'static,
{
    pub(super) fn run(mut self) {
        'run: loop {
            let Err(halt) = self.follow();
            self.queue.disarm();
            let mut halt = match halt {
                Halt::Rebuild => self.reset().err(),
                other => Some(other),
            };
            while let Some(h) = halt.take() {
                match h {
                    Halt::Rebuild => halt = self.reset().err(),
                    Halt::Stop => {
                        let _ = self.save();
                        break 'run;
                    }
                    Halt::Failed(position, error) => {
                        let _ = self.save();
                        self.shared.count(|m| m.failures += 1);
                        self.set_status(Status::Failed { position, error });
                        match self.wait_command() {
                            Command::Stop => halt = Some(Halt::Stop),
                            Command::Restart => {}
                            Command::Rebuild => halt = self.reset().err(),
                        }
                    }
                }
            }
        }
        self.queue.close();
        if let Some(detach) = self.detach.take() {
            detach();
        }
        self.set_status(Status::Stopped);
    }

    /// Starts the replay: tells the handler's owner, forgets the position and
    /// clears the checkpoint (so a process that stops during the replay starts
    /// it again rather than resuming from the old checkpoint).
    fn reset(&mut self) -> Result<(), Halt> {
        self.tell(Notification::Rebuilding);
        self.last = None;
        self.versions.clear();
        self.shared.next.store(0, Ordering::Release);
        if let Some((store, name)) = &self.checkpoints {
            store
                .clear(name)
                .map_err(|e| Halt::Failed(Position(0), format!("clearing the checkpoint: {e}")))?;
        }
        Ok(())
    }

    fn set_status(&self, status: Status) {
        let mut c = self.shared.control();
        c.status = status;
        drop(c);
        self.shared.changed.notify_all();
    }

    fn tell(&mut self, n: Notification) {
        if let Some(f) = &mut self.notify {
            let _ = catch_unwind(AssertUnwindSafe(|| f(n)));
        }
    }

    /// The command waiting, if any (cheap when none is).
    fn command(&self) -> Option<Command> {
        if !self.shared.attention.load(Ordering::Acquire) {
            return None;
        }
        let mut c = self.shared.control();
        self.shared.attention.store(false, Ordering::Release);
        c.command.take()
    }

    fn check(&self) -> Result<(), Halt> {
        match self.command() {
            Some(Command::Stop) => Err(Halt::Stop),
            Some(Command::Rebuild) => Err(Halt::Rebuild),
            Some(Command::Restart) | None => Ok(()),
        }
    }

    fn wait_command(&self) -> Command {
        let mut c = self.shared.control();
        loop {
            if let Some(cmd) = c.command.take() {
                self.shared.attention.store(false, Ordering::Release);
                return cmd;
            }
            c = self
                .shared
                .changed
                .wait(c)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn next(&self) -> Position {
        self.last.map_or(Position(0), Position::next)
    }

    /// History, the switch, live; back to history on an overflow.
    fn follow(&mut self) -> Result<std::convert::Infallible, Halt> {
        loop {
            self.set_status(Status::CatchingUp);
            // Read to the head unbuffered, switch buffering on, read to the
            // (new) head again: everything published from then on is queued.
            // (An overflow meanwhile: arm again, read again.)
            loop {
                self.read_store(None)?;
                if self.queue.is_complete() {
                    break;
                }
                self.queue.arm();
            }
            self.shared.count(|m| m.caught_up += 1);
            self.set_status(Status::Live);
            let last = self.last;
            self.tell(Notification::CaughtUp { last });
            self.save()?;
            loop {
                self.check()?;
                match self.queue.take(POLL) {
                    Take::Items(items) => {
                        for item in items {
                            self.live(item)?;
                        }
                    }
                    Take::Overflow => {
                        self.queue.disarm();
                        self.shared.count(|m| m.fell_behind += 1);
                        let last = self.last;
                        self.tell(Notification::FellBehind { last });
                        break;
                    }
                    Take::Empty => {
                        if self.store.head() > self.last {
                            self.read_store(None)?;
                        }
                    }
                }
            }
        }
    }

    /// Reads and handles committed events from `next()` up to `until`
    /// (inclusive; `None`: the head).
    fn read_store(&mut self, until: Option<Position>) -> Result<(), Halt> {
        loop {
            self.check()?;
            let from = self.next();
            let mut max = self.page_size;
            if let Some(u) = until {
                if from > u {
                    return Ok(());
                }
                max = max.min((u.0 - from.0 + 1).try_into().unwrap_or(usize::MAX));
            }
            let page = self
                .store
                .read_all(from, max)
                .map_err(|e| Halt::Failed(from, format!("reading the store: {e}")))?;
            if page.is_empty() {
                return Ok(());
            }
            let n = page.len() as u64;
            self.shared.count(|m| m.from_store += n);
            for r in page {
                self.handle(r)?;
            }
        }
    }

    /// One event from the live queue.
    fn live(&mut self, item: Item<P>) -> Result<(), Halt> {
        let next = self.next();
        if item.position < next {
            return Ok(()); // a duplicate
        }
        if item.position > next {
            // A gap: read it from the store.
            self.read_store(Some(Position(item.position.0 - 1)))?;
            if self.next() != item.position {
                return Ok(()); // the store does not have it: not its event
            }
        }
        self.shared.count(|m| m.from_bus += 1);
        let known = item
            .subject
            .as_ref()
            .and_then(|s| self.versions.get(s).copied());
        match (item.event, known) {
            (Some(event), Some(v)) => self.handle(Recorded {
                position: item.position,
                version: v + 1,
                event,
            }),
            (Some(_), None) => {
                // Its stream version is not cached: read the event instead.
                let r = self
                    .store
                    .read_all(item.position, 1)
                    .map_err(|e| Halt::Failed(item.position, format!("reading the store: {e}")))?;
                match r.into_iter().next() {
                    Some(r) if r.position == item.position => self.handle(r),
                    _ => Ok(()),
                }
            }
            (None, _) => {
                if let (Some(s), Some(v)) = (item.subject, known) {
                    self.versions.insert(s, v + 1);
                }
                self.shared.count(|m| m.filtered += 1);
                self.advance(item.position)
            }
        }
    }

    /// Hands one event to the handler (if the filter wants it) and advances.
    fn handle(&mut self, r: Recorded<P>) -> Result<(), Halt> {
        if let Some(s) = &r.event.subject {
            if self.versions.len() >= MAX_VERSIONS && !self.versions.contains_key(s) {
                self.versions.clear();
            }
            self.versions.insert(s.clone(), r.version);
        }
        // Commands take effect between two handler calls.
        self.check()?;
        if r.version >= self.min_version && self.filter.matches(&r.event) {
            self.call(&r)?;
        } else {
            self.shared.count(|m| m.filtered += 1);
        }
        self.advance(r.position)
    }

    fn advance(&mut self, position: Position) -> Result<(), Halt> {
        self.last = Some(position);
        self.shared.next.store(position.0 + 1, Ordering::Release);
        self.since_save += 1;
        if self.since_save >= self.save_every {
            self.save()?;
        }
        Ok(())
    }

    /// Calls the handler, retrying in place; never moves past a failure unless
    /// dead letters are opted into.
    fn call(&mut self, r: &Recorded<P>) -> Result<(), Halt> {
        let mut attempts = Vec::new();
        loop {
            let handler = &mut self.handler;
            let reason = match catch_unwind(AssertUnwindSafe(|| handler(r))) {
                Ok(Ok(())) => {
                    self.shared.count(|m| m.delivered += 1);
                    return Ok(());
                }
                Ok(Err(e)) => FailureReason::Error(e),
                Err(p) => FailureReason::Panic(panic_message(&*p)),
            };
            attempts.push(Attempt::new(self.started.elapsed(), &reason));
            let made = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
            match self.retry.next_delay(made, &reason, &mut self.rng) {
                Some(delay) => {
                    self.shared.count(|m| m.retries += 1);
                    self.pause(delay)?;
                }
                None => {
                    let Some((dlq, subscription, name)) = &self.dead_letters else {
                        return Err(Halt::Failed(r.position, reason.to_string()));
                    };
                    // A closed queue (the bus shut down) cannot take it: stop.
                    if dlq
                        .push(r.event.clone(), *subscription, name.clone(), attempts)
                        .is_err()
                    {
                        return Err(Halt::Failed(r.position, reason.to_string()));
                    }
                    self.shared.count(|m| m.dead_lettered += 1);
                    return Ok(());
                }
            }
        }
    }

    /// Sleeps `d` before a retry, or less if a command comes.
    fn pause(&self, d: Duration) -> Result<(), Halt> {
        let deadline = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let c = self.shared.control();
            if c.command.is_some() {
                continue;
            }
            let _ = self
                .shared
                .changed
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Saves the last position handled, if there is a checkpoint store.
    fn save(&mut self) -> Result<(), Halt> {
        self.since_save = 0;
        let (Some((store, name)), Some(last)) = (&self.checkpoints, self.last) else {
            return Ok(());
        };
        store
            .save(name, last)
            .map_err(|e| Halt::Failed(last.next(), format!("saving the checkpoint: {e}")))?;
        self.shared.count(|m| m.checkpoints_saved += 1);
        Ok(())
    }
}
