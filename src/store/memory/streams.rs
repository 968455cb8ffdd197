//! The stream index: for each stream, the positions of its events in version order.
//!
//! Sharded by the stream id's precomputed hash into [`SHARDS`] maps, each behind
//! its own `RwLock`: the writer (who also holds the store's write lock) takes one
//! shard's write lock for the few instructions that check and extend one stream;
//! `read_stream` takes one shard's read lock for O(result) time to copy positions
//! out. Positions at or above the watermark may already be listed (the writer
//! extends the index before it publishes); readers cut them off.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::super::StreamId;

/// Number of shards (a power of two).
const SHARDS: usize = 64;

type Map = HashMap<StreamId, Vec<u64>, ahash::RandomState>;

pub(crate) struct Streams {
    shards: Box<[RwLock<Map>]>,
}

impl Streams {
    pub(crate) fn new() -> Self {
        Streams {
            shards: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
        }
    }

    #[inline]
    fn shard(&self, stream: &StreamId) -> &RwLock<Map> {
        // The low bits pick the shard; the map rehashes the full hash with its own
        // keys, so keys of one shard still spread over its buckets.
        &self.shards[(stream.hash64() as usize) & (SHARDS - 1)]
    }

    /// The shard of `stream`, for writing.
    #[inline]
    pub(crate) fn write(&self, stream: &StreamId) -> ShardWriter<'_> {
        ShardWriter(
            self.shard(stream)
                .write()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Calls `f` with the positions of `stream`'s events below `visible` (empty for
    /// an absent stream), under the shard's read lock.
    #[inline]
    pub(crate) fn read<R>(
        &self,
        stream: &StreamId,
        visible: u64,
        f: impl FnOnce(&[u64]) -> R,
    ) -> R {
        let map: RwLockReadGuard<'_, Map> =
            self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        let all = map.get(stream).map_or(&[][..], |v| &v[..]);
        // Only the last append's positions can be at or above the watermark.
        let n = all.iter().rposition(|&p| p < visible).map_or(0, |i| i + 1);
        f(&all[..n])
    }

    /// Number of streams (for `Debug`).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// One shard, write-locked.
pub(crate) struct ShardWriter<'a>(RwLockWriteGuard<'a, Map>);

impl ShardWriter<'_> {
    /// The positions of `stream`'s events (all committed: the caller holds the
    /// store's write lock).
    #[inline]
    pub(crate) fn positions(&self, stream: &StreamId) -> &[u64] {
        self.0.get(stream).map_or(&[], |v| &v[..])
    }

    /// Adds positions `first .. first + count` to `stream`.
    #[inline]
    pub(crate) fn extend(&mut self, stream: &StreamId, first: u64, count: u64) {
        let list = match self.0.get_mut(stream) {
            Some(list) => list,
            None => self.0.entry(stream.clone()).or_default(),
        };
        list.extend(first..first + count);
    }
}
