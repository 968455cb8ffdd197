//! The repository's cache of hot aggregates: a bounded map from stream to a
//! *slot* holding the state the repository last saw.
//!
//! A command locks its aggregate's slot for its whole run (catch up, decide,
//! append, evolve), so commands of one process on one aggregate take turns
//! instead of racing each other into conflicts and reloads; commands on
//! different aggregates share only the map's lock, held for a look-up. A slot
//! is empty until its first command loads the aggregate, and again after a
//! command failed in a way that leaves its state in doubt (or panicked: the
//! entry is taken out of the slot while in use). An entry is never trusted
//! blindly: the repository reads the stream's events after the entry's version
//! before using it (usually none), so the cache never serves a stale state,
//! whoever else writes to the store.
//!
//! Eviction: when a new stream would make the map exceed its bound, the least
//! recently used half is dropped at once (one selection, amortised O(1) per
//! insertion), a cheap approximation of LRU. A command holding an evicted
//! slot finishes normally; its result is just not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::recent::RecentCommands;
use crate::store::StreamId;

/// An aggregate as the repository holds it.
#[derive(Debug)]
pub(crate) struct Entry<A> {
    /// The state after events `1..=version`.
    pub(crate) state: A,
    /// The stream version the state includes.
    pub(crate) version: u64,
    /// The commands among the stream's last events.
    pub(crate) recent: RecentCommands,
}

/// One aggregate's place in the cache; `None` until loaded.
pub(crate) type Slot<A> = Arc<Mutex<Option<Entry<A>>>>;

/// A bounded map of [`Slot`]s with approximate-LRU eviction.
#[derive(Debug)]
pub(crate) struct Cache<A> {
    /// At most this many slots, ≥ 1.
    max: usize,
    inner: Mutex<Inner<A>>,
}

#[derive(Debug)]
struct Inner<A> {
    /// Each slot with the tick of its last use.
    map: HashMap<StreamId, (Slot<A>, u64)>,
    /// Increases on every look-up.
    tick: u64,
}

impl<A> Cache<A> {
    /// An empty cache of at most `max` (≥ 1) slots.
    pub(crate) fn new(max: usize) -> Self {
        debug_assert!(max >= 1);
        Cache {
            max,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
        }
    }

    /// `stream`'s slot, made (empty) if there is none.
    pub(crate) fn slot(&self, stream: &StreamId) -> Slot<A> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((slot, used)) = inner.map.get_mut(stream) {
            *used = tick;
            return Arc::clone(slot);
        }
        if inner.map.len() >= self.max {
            evict_older_half(&mut inner.map);
        }
        let slot = Slot::default();
        inner.map.insert(stream.clone(), (Arc::clone(&slot), tick));
        slot
    }

    /// How many slots it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.len()
    }
}

/// Drops the least recently used half of `map` (at least one slot).
fn evict_older_half<A>(map: &mut HashMap<StreamId, (Slot<A>, u64)>) {
    let mut ticks: Vec<u64> = map.values().map(|(_, t)| *t).collect();
    if ticks.is_empty() {
        return;
    }
    let mid = (ticks.len() - 1) / 2;
    let (_, median, _) = ticks.select_nth_unstable(mid);
    let median = *median;
    map.retain(|_, (_, t)| *t > median);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> StreamId {
        StreamId::new(format!("s-{i}")).unwrap()
    }

    fn fill(cache: &Cache<u64>, i: usize, version: u64) {
        *cache.slot(&id(i)).lock().unwrap() = Some(Entry {
            state: version,
            version,
            recent: RecentCommands::new(0),
        });
    }

    fn cached(cache: &Cache<u64>, i: usize) -> bool {
        cache.slot(&id(i)).lock().unwrap().is_some()
    }

    #[test]
    fn bounded_and_keeps_the_recently_used() {
        let cache = Cache::new(4);
        for i in 0..4 {
            fill(&cache, i, 1);
        }
        // Touch 0 and 1: they become the most recent.
        assert!(cached(&cache, 0) && cached(&cache, 1));
        fill(&cache, 9, 1);
        assert!(cache.len() <= 4);
        assert!(cached(&cache, 9));
        assert!(cached(&cache, 0));
        assert!(cached(&cache, 1));
        assert!(!cached(&cache, 2), "2 and 3 were the least recently used");
    }

    #[test]
    fn one_slot_per_stream() {
        let cache = Cache::<u64>::new(2);
        assert!(Arc::ptr_eq(&cache.slot(&id(0)), &cache.slot(&id(0))));
        assert!(!Arc::ptr_eq(&cache.slot(&id(0)), &cache.slot(&id(1))));
    }

    #[test]
    fn max_one() {
        let cache = Cache::new(1);
        fill(&cache, 0, 1);
        fill(&cache, 1, 1);
        assert_eq!(cache.len(), 1);
        assert!(cached(&cache, 1));
    }
}
