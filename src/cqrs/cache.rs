//! The repository's cache of hot aggregates: a bounded map from stream to the
//! state the repository last saw, taken out while a command runs on it.
//!
//! An aggregate need not be `Clone`, so a command *takes* its entry out
//! ([`Cache::take`]) and puts it back when done ([`Cache::put`]); a second
//! command on the same aggregate meanwhile finds no entry and loads from the
//! store. An entry is never trusted blindly: the repository reads the stream's
//! events after the entry's version before using it (usually none), so a cache
//! never serves a stale state, whoever else writes to the store.
//!
//! Eviction: when a new stream would make the map exceed its bound, the least
//! recently used half is dropped at once (one selection, amortised O(1) per
//! insertion), a cheap approximation of LRU.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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

/// A bounded map of [`Entry`]s with approximate-LRU eviction.
#[derive(Debug)]
pub(crate) struct Cache<A> {
    /// At most this many entries, ≥ 1.
    max: usize,
    inner: Mutex<Inner<A>>,
}

#[derive(Debug)]
struct Inner<A> {
    /// Each entry with the tick of its last use.
    map: HashMap<StreamId, (Entry<A>, u64)>,
    /// Increases on every `put`.
    tick: u64,
}

impl<A> Cache<A> {
    /// An empty cache of at most `max` (≥ 1) entries.
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

    /// Takes `stream`'s entry out, if there is one.
    pub(crate) fn take(&self, stream: &StreamId) -> Option<Entry<A>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.remove(stream).map(|(entry, _)| entry)
    }

    /// Puts `stream`'s entry (back) in, unless the cache holds a newer one.
    pub(crate) fn put(&self, stream: StreamId, entry: Entry<A>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((kept, used)) = inner.map.get_mut(&stream) {
            if kept.version <= entry.version {
                *kept = entry;
            }
            *used = tick;
            return;
        }
        if inner.map.len() >= self.max {
            evict_older_half(&mut inner.map);
        }
        inner.map.insert(stream, (entry, tick));
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.len()
    }
}

/// Drops the least recently used half of `map` (at least one entry).
fn evict_older_half<A>(map: &mut HashMap<StreamId, (Entry<A>, u64)>) {
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

    fn entry(version: u64) -> Entry<u64> {
        Entry {
            state: version,
            version,
            recent: RecentCommands::new(0),
        }
    }

    fn id(i: usize) -> StreamId {
        StreamId::new(format!("s-{i}")).unwrap()
    }

    #[test]
    fn bounded_and_keeps_the_recently_used() {
        let cache = Cache::new(4);
        for i in 0..4 {
            cache.put(id(i), entry(1));
        }
        // Touch 0 and 1: they become the most recent.
        for i in 0..2 {
            let e = cache.take(&id(i)).unwrap();
            cache.put(id(i), e);
        }
        cache.put(id(9), entry(1));
        assert!(cache.len() <= 4);
        assert!(cache.take(&id(0)).is_some());
        assert!(cache.take(&id(1)).is_some());
        assert!(
            cache.take(&id(2)).is_none(),
            "2 and 3 were the least recently used"
        );
        assert!(cache.take(&id(9)).is_some());
    }

    #[test]
    fn an_older_entry_does_not_replace_a_newer_one() {
        let cache = Cache::new(2);
        cache.put(id(0), entry(5));
        cache.put(id(0), entry(3));
        assert_eq!(cache.take(&id(0)).unwrap().version, 5);
    }

    #[test]
    fn max_one() {
        let cache = Cache::new(1);
        cache.put(id(0), entry(1));
        cache.put(id(1), entry(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.take(&id(1)).is_some());
    }
}
