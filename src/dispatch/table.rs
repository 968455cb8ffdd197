//! The routing table: event-type id → the handler slots that get the event.
//!
//! Dense, indexed by [`EventType::id`](crate::EventType::id): routing an event is
//! one bounds-checked index and a branch. An entry is computed the first time its
//! type is seen (one name lookup and one match against every subscription), then
//! reused until the subscriptions change; a change clears the table, and the
//! entries are recomputed lazily. Owned by the dispatcher thread: no lock.

use smallvec::SmallVec;

use super::pattern::Pattern;
use crate::event::{Event, EventType};

/// Where one subscription's handler instances live: slots `first .. first + lanes`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) first: u32,
    /// 1 for a plain handler, n for a partitioned one.
    pub(crate) lanes: u32,
}

impl Target {
    /// The slot that handles `event`: by the subject's precomputed hash for a
    /// partitioned subscription; lane 0 for events without a subject.
    #[inline]
    pub(crate) fn slot_for<P>(&self, event: &Event<P>) -> usize {
        let lane = if self.lanes == 1 {
            0
        } else {
            match &event.subject {
                // Multiply-shift maps the 64-bit hash onto 0..lanes without a division.
                Some(s) => ((u128::from(s.partition_hash()) * u128::from(self.lanes)) >> 64) as u32,
                None => 0,
            }
        };
        (self.first + lane) as usize
    }
}

/// A subscription as the table sees it.
#[derive(Debug)]
pub(crate) struct Route {
    /// `None` = every event type.
    pub(crate) patterns: Option<Vec<Pattern>>,
    pub(crate) target: Target,
}

impl Route {
    /// Whether this subscription gets every event of every batch, in one slot: no
    /// patterns (`subscribe_all`), no lanes. Such slots are kept out of the
    /// per-type entries; the dispatcher gives them the whole batch at once.
    fn takes_all(&self) -> bool {
        self.patterns.is_none() && self.target.lanes == 1
    }

    fn matches(&self, name: &str) -> bool {
        match &self.patterns {
            None => true,
            Some(ps) => ps.iter().any(|p| p.matches(name)),
        }
    }
}

type Targets = SmallVec<[Target; 4]>;

/// Which target list an event type routes to: an index into `Table::lists`.
/// Types with the same targets share one list, so consecutive events of different
/// types that go to the same handlers (a fan-out by pattern) form one run.
pub(crate) type ListId = u32;

#[derive(Debug, Default)]
pub(crate) struct Table {
    /// `entries[type id]`: the type's target list, `None` until computed.
    /// Without the targets of [`Table::everything`].
    entries: Vec<Option<ListId>>,
    /// The distinct target lists, each once.
    lists: Vec<Targets>,
    /// The targets that take every event (see `Route::takes_all`); `None` until
    /// computed.
    all: Option<Targets>,
}

impl Table {
    /// Forgets every entry (after subscriptions changed).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.lists.clear();
        self.all = None;
    }

    /// The targets that get every event whatever its type, one slot each — the
    /// dispatcher hands them whole batches rather than routing event by event.
    #[inline]
    pub(crate) fn everything(&mut self, routes: &[Route]) -> &[Target] {
        self.all.get_or_insert_with(|| {
            routes
                .iter()
                .filter(|r| r.takes_all())
                .map(|r| r.target)
                .collect()
        })
    }

    /// The target list of `ty` (besides [`Table::everything`]), computing the
    /// entry on first sight.
    #[inline]
    pub(crate) fn route(&mut self, ty: EventType, routes: &[Route]) -> ListId {
        match self.entries.get(ty.id() as usize) {
            Some(Some(list)) => *list,
            _ => self.compute(ty, routes),
        }
    }

    /// The targets of a list [`Table::route`] returned.
    #[inline]
    pub(crate) fn targets(&self, list: ListId) -> &[Target] {
        &self.lists[list as usize]
    }

    #[cold]
    fn compute(&mut self, ty: EventType, routes: &[Route]) -> ListId {
        let id = ty.id() as usize;
        if self.entries.len() <= id {
            self.entries.resize(id + 1, None);
        }
        let name = ty.name();
        let targets: Targets = routes
            .iter()
            .filter(|r| !r.takes_all() && r.matches(name))
            .map(|r| r.target)
            .collect();
        let list = match self.lists.iter().position(|l| *l == targets) {
            Some(i) => i,
            None => {
                self.lists.push(targets);
                self.lists.len() - 1
            }
        } as ListId;
        self.entries[id] = Some(list);
        list
    }
}
