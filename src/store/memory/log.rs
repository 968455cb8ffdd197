//! The in-memory store's log: position → entry, append-only, in fixed-size chunks.
//!
//! Layout (a segmented vector like the `boxcar` crate's, but with fixed-size chunks
//! behind a doubling directory, so no allocation ever exceeds one chunk):
//! position `p` lives in chunk `c = p >> CHUNK_BITS`, slot `p & (CHUNK_LEN - 1)`;
//! chunk `c` lives in bucket `b = log2(c + 1)` at offset `c + 1 - 2^b`, and bucket
//! `b` holds `2^b` chunks. Every level is a [`OnceLock`]: the single writer (the
//! store's write lock holder) initialises a slot once, and a reader's `get` is one
//! acquire load that sees the slot either empty or complete. No `unsafe`, no lock
//! on the read path, nothing ever moves, and the directory has room for every
//! `u64` position.
//!
//! The log does not decide what is visible: the store's watermark does. A slot
//! below the watermark is always set (the writer sets it before it publishes),
//! so readers treat an empty slot there as a broken invariant.

use std::sync::OnceLock;

use crate::event::Event;

/// log2 of the events per chunk. Small under Miri so tests cross chunks.
const CHUNK_BITS: u32 = if cfg!(miri) { 3 } else { 12 };
/// Events per chunk (4 096: about 550 KiB of slots for small payloads).
pub(crate) const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// Buckets needed to index chunk `u64::MAX >> CHUNK_BITS`: bucket `b` is in
/// `0 ..= 64 - CHUNK_BITS`.
const BUCKETS: usize = 65 - CHUNK_BITS as usize;

/// One stored event: its version in its stream, the event, and its codec frame
/// (for `scan_all`).
#[derive(Debug)]
pub(crate) struct Entry<P> {
    /// 1-based index in its stream.
    pub(crate) version: u64,
    /// The event, subject set to its stream.
    pub(crate) event: Event<P>,
    /// The event encoded as one frame (MessagePack payload, no checksum).
    pub(crate) frame: Box<[u8]>,
}

/// `CHUNK_LEN` slots.
type Chunk<P> = Box<[OnceLock<Entry<P>>]>;
/// Bucket `b`: `2^b` chunks.
type Bucket<P> = Box<[OnceLock<Chunk<P>>]>;

/// The chunked, append-only array of entries.
pub(crate) struct Log<P> {
    buckets: [OnceLock<Bucket<P>>; BUCKETS],
}

impl<P> Log<P> {
    pub(crate) fn new() -> Self {
        Log {
            buckets: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// `(bucket, offset in bucket, slot in chunk)` of position `p`.
    #[inline]
    fn locate(p: u64) -> (usize, usize, usize) {
        let c = (p >> CHUNK_BITS) + 1; // in 1 ..= 2^(64 - CHUNK_BITS)
        let b = 63 - c.leading_zeros();
        let offset = c - (1 << b);
        debug_assert!((b as usize) < BUCKETS);
        (b as usize, offset as usize, (p as usize) & (CHUNK_LEN - 1))
    }

    /// The chunk holding `p`, if it was allocated.
    #[inline]
    fn chunk(&self, p: u64) -> Option<&[OnceLock<Entry<P>>]> {
        let (b, offset, _) = Self::locate(p);
        Some(&self.buckets[b].get()?[offset].get()?[..])
    }

    /// Allocates the chunk holding `p` if it is missing, so the writer rarely
    /// allocates (and takes the page faults of) a chunk inside its critical
    /// section. Any thread may call this; one allocation per chunk wins.
    #[inline]
    pub(crate) fn prepare(&self, p: u64) {
        if self.chunk(p).is_none() {
            self.chunk_or_init(p);
        }
    }

    fn chunk_or_init(&self, p: u64) -> &[OnceLock<Entry<P>>] {
        let (b, offset, _) = Self::locate(p);
        let bucket =
            self.buckets[b].get_or_init(|| (0..1_usize << b).map(|_| OnceLock::new()).collect());
        bucket[offset].get_or_init(|| (0..CHUNK_LEN).map(|_| OnceLock::new()).collect())
    }

    /// Stores the entry at `p`. Only the write-lock holder calls this, once per
    /// position, in increasing order.
    pub(crate) fn set(&self, p: u64, entry: Entry<P>) {
        let slot = (p as usize) & (CHUNK_LEN - 1);
        let fresh = self.chunk_or_init(p)[slot].set(entry).is_ok();
        assert!(fresh, "log position {p} written twice");
    }

    /// The entry at `p`, which the caller knows is below the watermark.
    #[inline]
    #[track_caller]
    pub(crate) fn get(&self, p: u64) -> &Entry<P> {
        self.chunk(p)
            .and_then(|c| c[(p as usize) & (CHUNK_LEN - 1)].get())
            .unwrap_or_else(|| panic!("log position {p} is below the watermark but unset"))
    }

    /// Calls `f` for every entry in `from..to` (all below the watermark), in order,
    /// until it returns `false`.
    #[inline]
    pub(crate) fn visit(&self, from: u64, to: u64, mut f: impl FnMut(u64, &Entry<P>) -> bool) {
        let mut p = from;
        while p < to {
            let chunk = self
                .chunk(p)
                .unwrap_or_else(|| panic!("log chunk of {p} missing"));
            let first = (p as usize) & (CHUNK_LEN - 1);
            let n = (CHUNK_LEN - first).min((to - p) as usize);
            for slot in &chunk[first..first + n] {
                let entry = slot
                    .get()
                    .unwrap_or_else(|| panic!("log position {p} is below the watermark but unset"));
                if !f(p, entry) {
                    return;
                }
                p += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_u64() {
        assert_eq!(Log::<()>::locate(0), (0, 0, 0));
        let l = CHUNK_LEN as u64;
        assert_eq!(Log::<()>::locate(l - 1), (0, 0, CHUNK_LEN - 1));
        assert_eq!(Log::<()>::locate(l), (1, 0, 0));
        assert_eq!(Log::<()>::locate(2 * l), (1, 1, 0));
        assert_eq!(Log::<()>::locate(3 * l), (2, 0, 0));
        assert_eq!(Log::<()>::locate(u64::MAX).0, BUCKETS - 1);
        // Consecutive chunks map to distinct, gap-free (bucket, offset) pairs.
        let mut prev = (0, 0);
        for c in 1..5000_u64 {
            let (b, o, s) = Log::<()>::locate(c * l);
            assert_eq!(s, 0);
            let expected = if prev.1 + 1 == 1 << prev.0 {
                (prev.0 + 1, 0)
            } else {
                (prev.0, prev.1 + 1)
            };
            assert_eq!((b, o), expected, "chunk {c}");
            prev = (b, o);
        }
    }
}
