//! The one writer: a thread that takes appends from a bounded queue and commits
//! them in groups.
//!
//! Each round it takes what is queued (up to [`GROUP_BYTES`] of frames), checks
//! each append's expected version in queue order against the streams as the
//! earlier appends of the group left them (a conflict fails only that append,
//! at once), puts the accepted frames one after the other in one buffer, and
//! then makes **one `write`** and, under `Durability::Immediate`, **one
//! `sync_data`** for the group. Only after that does it publish — frame table,
//! stream index, then the watermark (which wakes `wait_past`) — and answer the
//! appenders. A group that would cross the segment size is split: the part
//! before is written and the segment sealed (synced), a new segment is created
//! and made durable (file and directory synced), and the rest goes there.
//!
//! A failed `write` or `sync_data` poisons the store: the group's appends, and
//! every later one, fail with `Io`; the written bytes are cut off again (best
//! effort); the sync is never retried (after a failed fsync Linux may have
//! dropped the dirty pages, and a second fsync would "succeed").

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use super::index::{self, Index};
use super::segment::{self, DATA_START, SYNC_MARK};
use super::{Durability, FrameLoc, Mutations, Shared};
use crate::event::{Event, EventId};
use crate::store::check::{self, Decision, Stamped};
use crate::store::vfs::{OpenMode, VfsFile};
use crate::store::{AppendError, AppendOutcome, ExpectedVersion, Position, RejectReason, StreamId};

/// A group takes what is queued up to this many bytes of frames (one larger
/// append still goes, alone).
const GROUP_BYTES: usize = 4 << 20;

pub(super) type Reply<P> = SyncSender<Result<AppendOutcome, AppendError<P>>>;

/// One append, checked and encoded by the appending thread.
pub(super) struct Request<P> {
    pub(super) stream: StreamId,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<Event<P>>,
    pub(super) stamped: Stamped,
    /// The append's frame (an event frame, or a batch frame for several).
    pub(super) frame: Vec<u8>,
    pub(super) reply: Reply<P>,
}

impl<P> Request<P> {
    fn fail(mut self, make: impl FnOnce(Vec<Event<P>>) -> AppendError<P>) {
        self.stamped.undo(&mut self.events);
        let _ = self.reply.send(Err(make(self.events)));
    }
}

/// An accepted append waiting for its group's write (and sync).
struct Pending<P> {
    request: Request<P>,
    outcome: AppendOutcome,
}

/// The committer's view of the streams: each stream's events as (position, id),
/// in version order — including the appends of the group being built.
pub(super) type Versions = HashMap<StreamId, Vec<(u64, EventId)>, ahash::RandomState>;

/// The segment appends go to.
pub(super) struct Active {
    pub(super) file: Arc<dyn VfsFile>,
    /// Its index in the shared segment table.
    pub(super) seg: u32,
    /// Where the next frame goes: the end of the valid frames.
    pub(super) offset: u64,
    /// Its frames so far (those published), for its index when it is sealed.
    pub(super) index: Index,
}

pub(super) struct Committer<P> {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Receiver<Request<P>>,
    pub(super) durability: Durability,
    pub(super) segment_bytes: u64,
    pub(super) preallocate: bool,
    pub(super) mutations: Mutations,
    pub(super) active: Active,
    /// The next position to assign.
    pub(super) next: u64,
    pub(super) versions: Versions,
    /// Bytes written to the active segment since its last sync.
    pub(super) unsynced: bool,
    pub(super) last_sync: Instant,
    pub(super) buf: Vec<u8>,
}

impl<P: Send + 'static> Committer<P> {
    /// Runs until every sender is gone; then syncs what is unsynced.
    pub(super) fn run(mut self) -> io::Result<()> {
        while let Some(first) = self.recv() {
            let mut bytes = first.frame.len();
            let mut group = vec![first];
            while bytes < GROUP_BYTES {
                match self.rx.try_recv() {
                    Ok(r) => {
                        bytes += r.frame.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        if let Some(e) = self.shared.poison_error() {
            return Err(e);
        }
        // Sync, mark, and sync the mark, so a clean close leaves the whole
        // segment marked durable.
        if self.unsynced {
            self.active.file.sync_data()?;
        }
        let mark = segment::sync_mark(self.active.offset);
        self.active.file.write_all_at(&mark, SYNC_MARK)?;
        self.active.file.sync_data()
    }

    /// The next request; under `Periodic`, syncs when the period passes first.
    fn recv(&mut self) -> Option<Request<P>> {
        loop {
            match self.durability {
                Durability::Periodic(period) if self.unsynced => {
                    let left = period.saturating_sub(self.last_sync.elapsed());
                    match self.rx.recv_timeout(left) {
                        Ok(r) => return Some(r),
                        Err(RecvTimeoutError::Timeout) => self.sync(),
                        Err(RecvTimeoutError::Disconnected) => return None,
                    }
                }
                _ => return self.rx.recv().ok(),
            }
        }
    }

    fn commit(&mut self, group: Vec<Request<P>>) {
        let mut pending: Vec<Pending<P>> = Vec::with_capacity(group.len());
        let mut locs: Vec<FrameLoc> = Vec::with_capacity(group.len());
        self.buf.clear();
        for request in group {
            if let Some(error) = self.shared.poison_error() {
                request.fail(|events| AppendError::Io { error, events });
                continue;
            }
            let list = self.versions.get(&request.stream);
            let stored = list.map_or(&[][..], |l| &l[..]);
            let current = stored.len() as u64;
            let decision = check::decide(request.expected, current, &request.events, |v| {
                stored[(v - 1) as usize].1
            });
            match decision {
                Decision::Append => {
                    let used = self.active.offset + self.buf.len() as u64;
                    if used > DATA_START && used + request.frame.len() as u64 > self.segment_bytes {
                        if self.flush(&mut pending, &mut locs, true).is_err() {
                            let error = self.shared.poison_error().expect("poisoned");
                            request.fail(|events| AppendError::Io { error, events });
                            continue;
                        }
                        if let Err(e) = self.roll() {
                            self.shared.poison(&e);
                            request.fail(|events| AppendError::Io { error: e, events });
                            continue;
                        }
                    }
                    let k = request.events.len() as u64;
                    let first = self.next;
                    self.next += k;
                    locs.push(FrameLoc {
                        first,
                        version: current + 1,
                        seg: self.active.seg,
                        offset: self.active.offset + self.buf.len() as u64,
                        len: request.frame.len() as u32,
                    });
                    self.buf.extend_from_slice(&request.frame);
                    let list = self.versions.entry(request.stream.clone()).or_default();
                    list.extend((first..).zip(request.events.iter().map(|e| e.id)));
                    pending.push(Pending {
                        outcome: AppendOutcome {
                            first_position: Position(first),
                            last_position: Position(first + k - 1),
                            version: current + k,
                            duplicate: false,
                        },
                        request,
                    });
                }
                Decision::Duplicate { first_version } => {
                    let k = request.events.len() as u64;
                    let at = |v: u64| Position(stored[(v - 1) as usize].0);
                    pending.push(Pending {
                        outcome: AppendOutcome {
                            first_position: at(first_version),
                            last_position: at(first_version + k - 1),
                            version: first_version + k - 1,
                            duplicate: true,
                        },
                        request,
                    });
                }
                Decision::Conflict => {
                    let stream = request.stream.clone();
                    let expected = request.expected;
                    request.fail(|events| AppendError::WrongExpectedVersion {
                        stream,
                        expected,
                        actual: current,
                        events,
                    });
                }
                Decision::Partial { already_stored } => {
                    let batch = request.events.len();
                    request.fail(|events| AppendError::Rejected {
                        reason: RejectReason::PartialDuplicate {
                            already_stored,
                            batch,
                        },
                        events,
                    });
                }
            }
        }
        let _ = self.flush(&mut pending, &mut locs, false);
    }

    /// Writes the buffered frames, syncs them if the durability mode (or
    /// `seal`) says so, publishes them and answers their appenders. On failure
    /// the store is poisoned and they are answered `Io`.
    fn flush(
        &mut self,
        pending: &mut Vec<Pending<P>>,
        locs: &mut Vec<FrameLoc>,
        seal: bool,
    ) -> io::Result<()> {
        let start = self.active.offset;
        if !self.buf.is_empty() {
            if let Err(e) = self.active.file.write_all_at(&self.buf, start) {
                return Err(self.fail(pending, locs, start, e));
            }
            self.active.offset += self.buf.len() as u64;
            self.buf.clear();
            self.unsynced = true;
        }
        let sync = self.unsynced && (seal || self.durability == Durability::Immediate);
        if sync && self.mutations.ack_before_sync {
            self.publish(pending, locs);
        }
        if sync {
            if let Err(e) = self.active.file.sync_data() {
                return Err(self.fail(pending, locs, start, e));
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        self.publish(pending, locs);
        if sync {
            self.mark_synced();
        }
        if let Durability::Periodic(period) = self.durability {
            if self.unsynced && self.last_sync.elapsed() >= period {
                self.sync();
            }
        }
        Ok(())
    }

    /// Makes the flushed appends visible and answers them.
    fn publish(&mut self, pending: &mut Vec<Pending<P>>, locs: &mut Vec<FrameLoc>) {
        if pending.is_empty() {
            return;
        }
        self.shared.push_frames(locs.drain(..));
        for p in pending.iter().filter(|p| !p.outcome.duplicate) {
            let o = &p.outcome;
            self.active.index.push(
                p.request.frame.len() as u32,
                &p.request.stream,
                p.request.events.iter().map(|e| e.id),
            );
            self.shared.streams.write(&p.request.stream).extend(
                &p.request.stream,
                o.first_position.0,
                o.len(),
            );
        }
        self.shared.watermark.publish(self.next);
        self.shared.watermark.wake();
        for p in pending.drain(..) {
            let _ = p.request.reply.send(Ok(p.outcome));
        }
    }

    /// Poisons the store after a failed write or sync, cuts the group's bytes
    /// off again (best effort) and answers its appenders `Io`.
    fn fail(
        &mut self,
        pending: &mut Vec<Pending<P>>,
        locs: &mut Vec<FrameLoc>,
        start: u64,
        e: io::Error,
    ) -> io::Error {
        self.shared.poison(&e);
        self.buf.clear();
        locs.clear();
        let _ = self.active.file.set_len(start);
        self.active.offset = start;
        for p in pending.drain(..) {
            let error = self.shared.poison_error().expect("poisoned");
            p.request.fail(|events| AppendError::Io { error, events });
        }
        e
    }

    /// The periodic sync; a failure poisons the store.
    fn sync(&mut self) {
        if self.shared.poison_error().is_some() {
            self.unsynced = false;
            return;
        }
        match self.active.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                self.mark_synced();
            }
            Err(e) => {
                self.unsynced = false;
                self.shared.poison(&e);
            }
        }
    }

    /// Rewrites the active segment's sync mark after a successful sync (not
    /// synced itself: a lost mark leaves an older, smaller one). A failure
    /// poisons the store, like any failed write.
    fn mark_synced(&mut self) {
        let mark = segment::sync_mark(self.active.offset);
        if let Err(e) = self.active.file.write_all_at(&mark, SYNC_MARK) {
            self.shared.poison(&e);
        }
    }

    /// Starts a new segment at the next position: header, preallocation, the
    /// file synced and then its directory entry, before any append goes there.
    /// Then writes the index of the segment it seals (already synced).
    fn roll(&mut self) -> io::Result<()> {
        let file = create_segment(
            &self.shared,
            self.next,
            self.segment_bytes,
            self.preallocate,
            self.mutations,
        )?;
        let seg = self.shared.push_segment(file.clone());
        let sealed = std::mem::replace(
            &mut self.active,
            Active {
                file,
                seg,
                offset: DATA_START,
                index: Index::new(self.next),
            },
        );
        debug_assert_eq!(sealed.index.end(), sealed.offset);
        debug_assert_eq!(sealed.index.first + sealed.index.events(), self.next);
        if let Err(e) = index::write(&*self.shared.vfs, &self.shared.log_dir, &sealed.index) {
            crate::log::warning!(
                "ringbus store: writing a sealed segment's index failed (open rebuilds it)",
                first = sealed.index.first,
                error = e
            );
        }
        Ok(())
    }
}

/// Creates the segment whose first event is at `first`, durably.
pub(super) fn create_segment(
    shared: &Shared,
    first: u64,
    segment_bytes: u64,
    preallocate: bool,
    mutations: Mutations,
) -> io::Result<Arc<dyn VfsFile>> {
    let path = shared.log_dir.join(segment::file_name(first));
    let file = shared.vfs.open(&path, OpenMode::CreateNew)?;
    let mut head = segment::header(first).to_vec();
    head.resize(DATA_START as usize, 0);
    file.write_all_at(&head, 0)?;
    if preallocate {
        file.set_len(segment_bytes)?;
    }
    file.sync_data()?;
    if !mutations.skip_dir_sync {
        shared.vfs.sync_dir(&shared.log_dir)?;
    }
    Ok(file)
}
