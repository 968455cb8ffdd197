//! What one dispatch runs over: a batch taken from the ring, or a batch of
//! follow-ups. The routing and handler code is generic over [`Work`], so each
//! source is monomorphized — no branch per event.

use super::follow_ups::FollowUp;
use crate::event::Event;
use crate::ring::Batch;

/// Events addressed by offset, each with the ring sequence it counts under (for
/// a follow-up, the root of its causal chain).
pub(crate) trait Work<P>: Sync {
    /// Whether these events came from the ring (and count as `dispatched`).
    const RING: bool;
    /// How many events.
    fn len(&self) -> u32;
    /// The event at `off`.
    fn event(&self, off: u32) -> &Event<P>;
    /// Its sequence (a follow-up's root).
    fn sequence(&self, off: u32) -> u64;
    /// The lowest sequence among `work` (offsets in increasing order).
    fn min_sequence(&self, work: &[u32]) -> Option<u64> {
        work.iter().map(|&off| self.sequence(off)).min()
    }
}

impl<P: Send + Sync> Work<P> for Batch<'_, Event<P>> {
    const RING: bool = true;
    #[inline]
    fn len(&self) -> u32 {
        Batch::len(self)
    }
    #[inline]
    fn event(&self, off: u32) -> &Event<P> {
        self.get(off)
    }
    #[inline]
    fn sequence(&self, off: u32) -> u64 {
        Batch::sequence(self, off)
    }
    /// Ring sequences increase with the offset.
    #[inline]
    fn min_sequence(&self, work: &[u32]) -> Option<u64> {
        work.first().map(|&off| Batch::sequence(self, off))
    }
}

impl<P: Send + Sync> Work<P> for [FollowUp<P>] {
    const RING: bool = false;
    #[inline]
    fn len(&self) -> u32 {
        <[FollowUp<P>]>::len(self) as u32
    }
    #[inline]
    fn event(&self, off: u32) -> &Event<P> {
        &self[off as usize].event
    }
    #[inline]
    fn sequence(&self, off: u32) -> u64 {
        self[off as usize].root
    }
}
