//! `FileStore`: the event store in files, crash-safe.
//!
//! # Layout
//! `dir/LOCK` (an advisory lock: one process at a time), `dir/snapshots/` (the
//! store's [`FileSnapshots`], returned by [`EventStore::snapshots`]),
//! `dir/checkpoints/` ([`FileStore::checkpoints`]), and `dir/log/`, holding
//! segments `<first position, 20 digits>.seg`: a 20-byte header and a 12-byte
//! sync mark ([`segment`]), then codec frames (FORMAT.md), one per append — an event
//! frame for one event, a batch frame for several, always with the CRC-32C —
//! each event's `subject` the stream. Positions are implied by order (the
//! segment's first position plus the count of events before) and versions by
//! counting each stream's events; both are rebuilt on open and checked against
//! the segment headers. Preallocated segments end in zeros: a zero byte where a
//! frame would start is the clean end.
//!
//! # Writing
//! One committer thread ([`committer`]) takes appends from a bounded queue and
//! commits them in groups: one `write` and (under [`Durability::Immediate`]) one
//! `sync_data` per group, then the watermark, then the answers. Appending
//! threads check and encode their batch before they queue it.
//!
//! # Reading
//! An in-memory table of frames (position → segment, offset, length) and the
//! stream index (stream → positions, sharded) are published before the
//! watermark; reads load the watermark, find the frames and `pread` them
//! through the [`Vfs`]. Bytes below the watermark are never written again.
//!
//! # Recovery
//! See [`FileStore::open`]. Each sealed segment has an index file
//! (`<first position>.idx`, [`index`]) written when it is sealed: open loads
//! sealed segments from their indexes and reads and scans only the last
//! segment, so its time grows with the index files (16 bytes per event, 12 per
//! frame), not with the segments. The index is dense, not sparse (a position →
//! offset entry every 256 frames, as issue 11 first suggested): the frame table
//! keeps every frame's location in memory anyway, and the committer needs
//! every event's id for idempotent retries, so the index holds exactly that —
//! what a scan of the segment would yield. A missing, bad or stale index is
//! rebuilt from a scan, never trusted.

mod committer;
mod index;
mod segment;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::committer::{Active, Committer, Request, Versions};
use self::index::{Index, IndexName};
use self::segment::{End, Header, DATA_START};
use super::check;
use super::checkpoint::FileCheckpoints;
use super::memory::streams::Streams;
use super::memory::watermark::Watermark;
use super::snapshot::{FileSnapshots, SnapshotStore};
use super::upcast::{DecodeUpcastError, Upcasters};
use super::vfs::{create_dir_durably, OpenMode, StdFs, Vfs, VfsFile, VfsLock};
use super::{
    AppendError, AppendOutcome, EventStore, ExpectedVersion, Position, ReadError, Recorded,
    RejectReason, StreamId,
};
use crate::codec::{EncodeError, Encoder, EventRef, Frame, Frames, Limits};
use crate::event::{Event, EventId};

/// When an append returns, relative to the disk.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// After `fdatasync` (shared by the appends committed together): an
    /// acknowledged append survives a power loss.
    #[default]
    Immediate,
    /// After `write`; `fdatasync` at least every this long. Survives a process
    /// crash; a power loss may lose up to this much of the acknowledged appends
    /// (always a suffix: what survives is a prefix of what was acknowledged).
    Periodic(Duration),
    /// After `write`; the operating system decides when to write back (segments
    /// are still synced when sealed and at `close`). Survives a process crash
    /// only.
    None,
}

/// What [`FileStore::open`] does with a damaged log.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Truncates a torn tail (see [`FileStore::open`]); refuses to open a log
    /// with a damaged frame anywhere else ([`OpenError::Corrupt`]).
    #[default]
    TruncateTornTail,
    /// Also truncates the log at a damaged frame anywhere, after copying the
    /// segment to `<name>.broken` (later segments are renamed to
    /// `<name>.broken`): the events from there on are gone from the store.
    TruncateAfterCorruption,
}

/// How a [`FileStore`] writes and recovers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// When an append returns. Default [`Durability::Immediate`].
    pub durability: Durability,
    /// A segment file's size: a new one starts when an append would not fit.
    /// Default 128 MiB, at least 64 KiB.
    pub segment_bytes: u64,
    /// Whether a new segment is extended to its full size at once
    /// (`set_len`), so that later syncs need not update the file's size.
    /// Default `true`.
    pub preallocate: bool,
    /// The largest append, encoded. Default 16 MiB.
    pub max_append_bytes: usize,
    /// What open does with a damaged log. Default [`RecoveryMode::TruncateTornTail`].
    pub recovery: RecoveryMode,
    /// Bounds on frames, batches and payload nesting, for writing and reading.
    pub limits: Limits,
    /// Whether open reads and checks every segment, ignoring the index files of
    /// sealed segments (it still rewrites a missing or bad one), so that a
    /// damaged frame anywhere is [`OpenError::Corrupt`] at open. Default
    /// `false`: open loads sealed segments from their indexes and scans only
    /// the last one; a damaged frame in a sealed segment is then found by the
    /// read that reaches it ([`ReadError`]). See [`FileStore::open`].
    pub verify_on_open: bool,
}

impl StoreOptions {
    /// The smallest `segment_bytes`.
    pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

    /// The defaults.
    pub fn new() -> Self {
        StoreOptions {
            durability: Durability::Immediate,
            segment_bytes: 128 << 20,
            preallocate: true,
            max_append_bytes: 16 << 20,
            recovery: RecoveryMode::TruncateTornTail,
            limits: Limits::DEFAULT,
            verify_on_open: false,
        }
    }

    /// Sets [`durability`](StoreOptions::durability).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`segment_bytes`](StoreOptions::segment_bytes).
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets [`preallocate`](StoreOptions::preallocate).
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    /// Sets [`max_append_bytes`](StoreOptions::max_append_bytes).
    pub fn max_append_bytes(mut self, bytes: usize) -> Self {
        self.max_append_bytes = bytes;
        self
    }

    /// Sets [`recovery`](StoreOptions::recovery).
    pub fn recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets [`limits`](StoreOptions::limits).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`verify_on_open`](StoreOptions::verify_on_open).
    pub fn verify_on_open(mut self, on: bool) -> Self {
        self.verify_on_open = on;
        self
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`FileStore::open`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Another `FileStore` (in this or another process) has the directory open.
    Locked,
    /// The log is damaged where a crash cannot have damaged it: a bad frame with
    /// valid frames after it, or any bad frame in a segment that is not the last
    /// (found when open scans that segment: when its index file is missing or
    /// bad, or with [`StoreOptions::verify_on_open`]).
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Where in it the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A segment of a format version this code does not read.
    UnsupportedFormat {
        /// The segment file.
        file: PathBuf,
        /// Its format version.
        found: u8,
    },
    /// The file system failed (or the options are invalid:
    /// `io::ErrorKind::InvalidInput`).
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Locked => f.write_str("the store is open elsewhere (LOCK is held)"),
            OpenError::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "{} is damaged at byte {offset}: {reason}",
                file.display()
            ),
            OpenError::UnsupportedFormat { file, found } => write!(
                f,
                "{} has segment format version {found}, this code reads {}",
                file.display(),
                segment::FORMAT_VERSION
            ),
            OpenError::Io(e) => write!(f, "opening the store failed: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Deliberate bugs, for the crash tests' mutation check: each must make them
/// fail.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Mutations {
    /// Do not sync the log directory after creating a segment at a roll.
    pub(crate) skip_dir_sync: bool,
    /// Publish and answer a group before its `sync_data`.
    pub(crate) ack_before_sync: bool,
}

/// Where an append's frame is.
#[derive(Copy, Clone, Debug)]
pub(crate) struct FrameLoc {
    /// The position of its first event.
    first: u64,
    /// The stream version of its first event.
    version: u64,
    /// Index into the segment table.
    seg: u32,
    offset: u64,
    len: u32,
}

/// What the committer and the readers share.
pub(crate) struct Shared {
    vfs: Arc<dyn Vfs>,
    log_dir: PathBuf,
    limits: Limits,
    /// Every segment, oldest first; only grows.
    segments: RwLock<Vec<Arc<dyn VfsFile>>>,
    /// Every committed append's frame, in position order; only grows. May run
    /// ahead of the watermark by the frames of a group being published.
    frames: RwLock<Vec<FrameLoc>>,
    streams: Streams,
    watermark: Watermark,
    poisoned: AtomicBool,
    /// The first failure: its OS error code, or its kind and message.
    poison: Mutex<Option<(Option<i32>, io::ErrorKind, String)>>,
}

impl Shared {
    fn push_segment(&self, file: Arc<dyn VfsFile>) -> u32 {
        let mut segs = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        segs.push(file);
        (segs.len() - 1) as u32
    }

    fn push_frames(&self, locs: impl Iterator<Item = FrameLoc>) {
        self.frames
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(locs);
    }

    fn poison(&self, e: &io::Error) {
        let mut p = self.poison.lock().unwrap_or_else(PoisonError::into_inner);
        if p.is_none() {
            *p = Some((e.raw_os_error(), e.kind(), e.to_string()));
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// The error every append gets once the store is poisoned.
    fn poison_error(&self) -> Option<io::Error> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let p = self.poison.lock().unwrap_or_else(PoisonError::into_inner);
        p.as_ref().map(|(code, kind, msg)| match code {
            Some(code) => io::Error::from_raw_os_error(*code),
            None => io::Error::new(*kind, msg.clone()),
        })
    }

    /// Frames holding positions `from .. end`, at most `max` of them.
    fn frames_from(&self, from: u64, end: u64, max: usize) -> Vec<FrameLoc> {
        let frames = self.frames.read().unwrap_or_else(PoisonError::into_inner);
        let start = frames
            .partition_point(|f| f.first <= from)
            .saturating_sub(1);
        frames[start..]
            .iter()
            .take_while(|f| f.first < end)
            .take(max)
            .copied()
            .collect()
    }

    /// Reads a frame's bytes into `buf`.
    fn read_frame(&self, loc: &FrameLoc, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        let file =
            self.segments.read().unwrap_or_else(PoisonError::into_inner)[loc.seg as usize].clone();
        buf.clear();
        buf.resize(loc.len as usize, 0);
        file.read_exact_at(buf, loc.offset)?;
        Ok(())
    }

    /// Calls `f` with each event of the frame at `loc` (its position and view).
    fn visit_frame(
        &self,
        loc: &FrameLoc,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(u64, &EventRef<'_>) -> Result<bool, ReadError>,
    ) -> Result<bool, ReadError> {
        self.read_frame(loc, buf)?;
        let decode_error = |error| ReadError::Decode {
            position: Position(loc.first),
            error,
        };
        let misplaced = || {
            ReadError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the frame at position {} is damaged: not one checksummed frame of {} bytes",
                    loc.first, loc.len
                ),
            ))
        };
        // Every frame this store writes carries its CRC-32C (flag 0x10 of
        // byte 3, FORMAT.md §2): one without it is damaged.
        if buf.get(3).is_none_or(|flags| flags & 0x10 == 0) {
            return Err(misplaced());
        }
        let mut frames = Frames::with_limits(buf, self.limits);
        let frame = frames.next();
        if matches!(frame, Some(Ok(_))) && !frames.remainder().is_empty() {
            return Err(misplaced());
        }
        match frame {
            Some(Ok(Frame::Event(e))) => f(loc.first, &e),
            Some(Ok(Frame::Batch(b))) => {
                for (e, p) in b.iter().zip(loc.first..) {
                    if !f(p, &e)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Some(Err(error)) => Err(decode_error(error)),
            None => Err(ReadError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("incomplete frame at position {}", loc.first),
            ))),
        }
    }
}

/// The event store in files: everything [`EventStore`] promises, and each
/// acknowledged append survives a crash (under [`Durability::Immediate`], a
/// power loss too).
///
/// All events of one append are one frame with one checksum, so after a crash
/// an append is there whole or not at all. Appends from any number of threads
/// are committed by one writer thread in groups that share one write and one
/// `fdatasync`. A failed write or sync **poisons** the store: that append and
/// every later one fail with [`AppendError::Io`], reads keep working; open the
/// store again to go on.
///
/// # Examples
/// ```
/// use ringbus::store::{EventStore, ExpectedVersion, FileStore, StoreOptions, StreamId};
/// use ringbus::{event_type, source, Event};
///
/// let dir = std::env::temp_dir().join(format!("ringbus-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = FileStore::open(&dir, StoreOptions::default()).unwrap();
/// let cart = StreamId::new("cart-1").unwrap();
/// let added = |sku: &str| Event::new(event_type!("cart.item_added"), source!("shop"), sku.to_string());
/// store.append(&cart, ExpectedVersion::NoStream, vec![added("apple")]).unwrap();
/// store.close().unwrap();
///
/// // Open again: the first event is still there, the stream at version 1.
/// let store = FileStore::open(&dir, StoreOptions::default()).unwrap();
/// store.append(&cart, ExpectedVersion::Exact(1), vec![added("pear")]).unwrap();
/// let skus: Vec<String> = store
///     .read_stream(&cart, 1, 10)
///     .unwrap()
///     .into_iter()
///     .map(|r| r.event.data)
///     .collect();
/// assert_eq!(skus, ["apple", "pear"]);
/// store.close().unwrap();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct FileStore<P = serde_json::Value> {
    shared: Arc<Shared>,
    encoder: Encoder,
    max_append_bytes: usize,
    tx: Option<std::sync::mpsc::SyncSender<Request<P>>>,
    committer: Option<JoinHandle<io::Result<()>>>,
    torn_tail: Option<u64>,
    /// `dir/snapshots/`: the store's snapshot storage.
    snapshots: FileSnapshots,
    /// `dir/checkpoints/`, for the store's consumers.
    checkpoints: FileCheckpoints,
    /// Applied to every typed read.
    upcasters: Option<Arc<Upcasters>>,
    /// What open did (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    recovered: Recovered,
    // Dropped last: the lock is held until everything else is closed.
    _lock: Box<dyn VfsLock>,
}

/// Appends waiting for the committer, at most.
const QUEUE: usize = 1024;

impl<P> FileStore<P> {
    /// Opens (or creates) the store in directory `dir`.
    ///
    /// Recovery: every segment is read and its frames checked (checksum, one
    /// stream per frame, positions continuing the previous segment). In the
    /// last segment, a frame that is incomplete or fails its checks is a
    /// **torn write** if no valid frame follows it, or if it lies beyond the
    /// segment's sync mark (bytes never synced, which a disk may have written
    /// out of order, leaving a hole before whole frames): the segment is
    /// truncated there and synced (see [`FileStore::torn_tail`]). A bad frame in
    /// synced bytes with a valid frame after it, or any bad frame in an earlier
    /// segment, is **corruption**: [`OpenError::Corrupt`], or, with
    /// [`RecoveryMode::TruncateAfterCorruption`], truncation there after a copy
    /// to `<name>.broken`. A bad record is never skipped.
    ///
    /// Sealed segments (all but the last) have an index file each, written
    /// when they were sealed: open loads a sealed segment from its index
    /// without reading the segment, if the index checks out (its CRC-32C, its
    /// position and end against the segment's name, header and length, its
    /// last frame against the segment's bytes); a missing or bad index is
    /// ignored, the segment scanned as above and the index written again. So
    /// open reads the index files and the last segment, not the whole history.
    /// A damaged frame in a sealed segment that has a valid index is then not
    /// found by open but by the read that reaches it, which fails with a
    /// [`ReadError`] (every read checks each frame's CRC-32C); with
    /// [`StoreOptions::verify_on_open`] open scans every segment and such a
    /// frame is [`OpenError::Corrupt`] (or truncated) as described above.
    ///
    /// The stream index and the frame table live in memory; open reads one
    /// segment at a time.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, OpenError>
    where
        P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if options.segment_bytes < StoreOptions::MIN_SEGMENT_BYTES {
            return Err(OpenError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "segment_bytes is {}, at least {} needed",
                    options.segment_bytes,
                    StoreOptions::MIN_SEGMENT_BYTES
                ),
            )));
        }
        Self::open_in(Arc::new(StdFs), dir.as_ref(), options)
    }

    /// [`FileStore::open`] on `vfs`, without the minimum segment size (the
    /// crash tests roll segments of a few KiB).
    pub(crate) fn open_in(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: StoreOptions,
    ) -> Result<Self, OpenError>
    where
        P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        Self::open_with(vfs, dir, options, Mutations::default())
    }

    pub(crate) fn open_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: StoreOptions,
        mutations: Mutations,
    ) -> Result<Self, OpenError>
    where
        P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let log_dir = dir.join("log");
        create_dir_durably(&*vfs, &log_dir)?;
        let lock = vfs.try_lock(&dir.join("LOCK"))?.ok_or(OpenError::Locked)?;
        let snapshots = FileSnapshots::open_in(vfs.clone(), &dir.join("snapshots"))?;
        let checkpoints = FileCheckpoints::open_in(vfs.clone(), &dir.join("checkpoints"))?;
        let shared = Arc::new(Shared {
            vfs: vfs.clone(),
            log_dir,
            limits: options.limits,
            segments: RwLock::new(Vec::new()),
            frames: RwLock::new(Vec::new()),
            streams: Streams::new(),
            watermark: Watermark::new(),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
        });
        let mut versions = Versions::default();
        let Recovery {
            active,
            next,
            torn_tail,
            done: recovered,
        } = recover(&shared, &options, &mut versions)?;
        shared.watermark.publish(next);

        let (tx, rx) = sync_channel(QUEUE);
        let committer = Committer {
            shared: shared.clone(),
            rx,
            durability: options.durability,
            segment_bytes: options.segment_bytes,
            preallocate: options.preallocate,
            mutations,
            active,
            next,
            versions,
            unsynced: false,
            last_sync: Instant::now(),
            buf: Vec::new(),
        };
        let committer = std::thread::Builder::new()
            .name("ringbus-store-committer".into())
            .spawn(move || committer.run())?;
        let max_append_bytes = options.max_append_bytes.min(options.limits.max_frame_len);
        Ok(FileStore {
            shared,
            encoder: Encoder::new()
                .checksum(true)
                .limits(&options.limits.max_frame_len(max_append_bytes)),
            max_append_bytes,
            tx: Some(tx),
            committer: Some(committer),
            torn_tail,
            snapshots,
            checkpoints,
            upcasters: None,
            recovered,
            _lock: lock,
        })
    }

    /// Checkpoints kept beside the log, in `dir/checkpoints/` (a handle; clone
    /// it freely): where the store's catch-up subscriptions, projections and
    /// sagas keep their positions, so that the directory holds everything.
    ///
    /// ```
    /// use ringbus::store::checkpoint::CheckpointStore;
    /// use ringbus::store::{FileStore, Position, StoreOptions};
    /// let dir = std::env::temp_dir().join(format!("ringbus-doc-cps-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = FileStore::<u64>::open(&dir, StoreOptions::default()).unwrap();
    /// store.checkpoints().save("orders-view", Position(41)).unwrap();
    /// assert_eq!(store.checkpoints().dir(), dir.join("checkpoints"));
    /// store.close().unwrap();
    /// let again = FileStore::<u64>::open(&dir, StoreOptions::default()).unwrap();
    /// assert_eq!(again.checkpoints().load("orders-view").unwrap(), Some(Position(41)));
    /// # again.close().unwrap();
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn checkpoints(&self) -> FileCheckpoints {
        self.checkpoints.clone()
    }

    /// Upcasts every event read from the store ([`read_stream`], [`read_all`],
    /// and so the catch-up subscriptions and the CQRS repository) with
    /// `upcasters`: events written at an older schema version are turned into
    /// the current one, link by link, before they meet `P`; events at the
    /// latest version decode directly. An event that cannot be upcast is a
    /// [`ReadError::Upcast`] naming its type, version and position.
    /// ([`scan_all`] hands out the frames as stored.)
    ///
    /// [`read_stream`]: EventStore::read_stream
    /// [`read_all`]: EventStore::read_all
    /// [`scan_all`]: EventStore::scan_all
    ///
    /// # Examples
    /// ```
    /// use ringbus::store::upcast::Upcasters;
    /// use ringbus::store::{EventStore, ExpectedVersion, FileStore, Position, StoreOptions, StreamId};
    /// use ringbus::{event_type, source, Event};
    /// use serde_json::json;
    ///
    /// let dir = std::env::temp_dir().join(format!("ringbus-doc-upcast-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// // Version 1 of the code wrote prices in euros.
    /// let v1 = FileStore::<serde_json::Value>::open(&dir, StoreOptions::default()).unwrap();
    /// let priced = Event::new(event_type!("item.priced"), source!("shop"), json!({ "euros": 3 }));
    /// v1.append(&StreamId::new("item-1").unwrap(), ExpectedVersion::Any, vec![priced]).unwrap();
    /// v1.close().unwrap();
    ///
    /// // Version 2 reads cents.
    /// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    /// struct Priced { cents: u64 }
    /// let mut upcasters = Upcasters::new();
    /// upcasters.add("item.priced", 1, |mut e| {
    ///     e.data = json!({ "cents": e.data["euros"].as_u64().unwrap_or(0) * 100 });
    ///     Ok(e)
    /// }).unwrap();
    /// let v2 = FileStore::<Priced>::open(&dir, StoreOptions::default()).unwrap().upcasters(upcasters);
    /// let read = v2.read_all(Position(0), 10).unwrap();
    /// assert_eq!((read[0].event.version, &read[0].event.data), (2, &Priced { cents: 300 }));
    /// v2.close().unwrap();
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[must_use]
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Some(Arc::new(upcasters));
        self
    }

    /// Waits for the queued appends, syncs the log, stops the writer thread and
    /// releases the directory's lock. The error of a poisoned store, or of the
    /// last sync.
    pub fn close(mut self) -> io::Result<()> {
        self.stop()
    }

    /// Where open truncated a torn tail of the last segment (the byte offset),
    /// if it did.
    pub fn torn_tail(&self) -> Option<u64> {
        self.torn_tail
    }

    fn stop(&mut self) -> io::Result<()> {
        drop(self.tx.take());
        match self.committer.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the store's writer thread panicked"))),
            None => Ok(()),
        }
    }
}

impl<P> Drop for FileStore<P> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl<P> fmt::Debug for FileStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.shared.log_dir.parent())
            .field("head", &self.shared.watermark.head())
            .field("poisoned", &self.shared.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<P> FileStore<P> {
    fn encode(&self, events: &[Event<P>]) -> Result<Vec<u8>, RejectReason>
    where
        P: Serialize,
    {
        let mut frame = Vec::new();
        let r = if events.len() == 1 {
            self.encoder.encode(&events[0], &mut frame)
        } else {
            self.encoder.encode_batch(events, &mut frame)
        };
        match r {
            Ok(_) => Ok(frame),
            Err(EncodeError::FrameTooLarge { len, .. }) => Err(RejectReason::TooLarge {
                bytes: len as usize,
                max: self.max_append_bytes,
            }),
            Err(EncodeError::TooManyEvents { count, max }) => {
                Err(RejectReason::TooManyEvents { count, max })
            }
            Err(error) => {
                // Which event: the first that does not encode alone.
                let mut scratch = Vec::new();
                let index = events
                    .iter()
                    .position(|e| {
                        scratch.clear();
                        matches!(
                            self.encoder.encode(e, &mut scratch),
                            Err(e) if !matches!(e, EncodeError::FrameTooLarge { .. })
                        )
                    })
                    .unwrap_or(0);
                Err(RejectReason::Unencodable { index, error })
            }
        }
    }
}

impl<P> FileStore<P> {
    /// The events at `positions` (each committed; ascending, or descending
    /// for a backward read), each decoded once.
    fn read_positions(
        &self,
        positions: impl Iterator<Item = u64>,
    ) -> Result<Vec<Recorded<P>>, ReadError>
    where
        P: DeserializeOwned + Clone,
    {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        // The frame last read, its events decoded (taken out as they are
        // returned: each is decoded once and moved, not cloned).
        let mut cached: Option<(FrameLoc, Vec<Option<Event<P>>>)> = None;
        let visible = self.shared.watermark.visible();
        let decode = |pos: u64, e: &EventRef<'_>| -> Result<Event<P>, ReadError> {
            match &self.upcasters {
                None => e.to_event().map_err(|error| ReadError::Decode {
                    position: Position(pos),
                    error,
                }),
                Some(u) => u.to_event(e).map_err(|err| match err {
                    DecodeUpcastError::Upcast(e) => ReadError::Upcast(e.at(Position(pos))),
                    DecodeUpcastError::Decode(error) => ReadError::Decode {
                        position: Position(pos),
                        error,
                    },
                }),
            }
        };
        let positions: Vec<u64> = positions.collect();
        // Sorted, to tell which events of a frame are wanted: only those are
        // decoded (and upcast).
        let mut wanted = positions.clone();
        wanted.sort_unstable();
        for p in positions {
            let hit = matches!(&cached, Some((loc, evs)) if loc.first <= p && p < loc.first + evs.len() as u64);
            if !hit {
                let loc = self.shared.frames_from(p, visible, 1)[0];
                let mut evs = Vec::new();
                self.shared.visit_frame(&loc, &mut buf, |pos, e| {
                    evs.push(if wanted.binary_search(&pos).is_ok() {
                        Some(decode(pos, e)?)
                    } else {
                        None
                    });
                    Ok(true)
                })?;
                cached = Some((loc, evs));
            }
            let (loc, evs) = cached.as_mut().expect("cached");
            let i = p - loc.first;
            let event = match evs.get_mut(i as usize) {
                Some(slot) => match slot.take() {
                    Some(e) => e,
                    // Asked for twice: decode again.
                    None => {
                        let mut again = None;
                        self.shared.visit_frame(loc, &mut buf, |pos, e| {
                            if pos == p {
                                again = Some(decode(pos, e)?);
                                return Ok(false);
                            }
                            Ok(true)
                        })?;
                        again.expect("the event was there a moment ago")
                    }
                },
                None => {
                    // The frame holds fewer events than the frame table says.
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the frame at position {} has no event at {p}", loc.first),
                    )));
                }
            };
            out.push(Recorded {
                position: Position(p),
                version: loc.version + i,
                event: event.with_position(Position(p)),
            });
        }
        Ok(out)
    }
}

impl<P> FileStore<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Publishes every event committed from now on to `bus`, in position order,
    /// each with its [`Event::position`] set — only once durable per the store's
    /// [`Durability`] — from a feed thread, until the returned [`LiveFeed`](super::LiveFeed)
    /// is stopped or the store or the bus goes away. Like
    /// [`InMemoryStore::publish_to`](super::InMemoryStore::publish_to), which
    /// documents the details: plain bus handlers fed this way are not durable (a
    /// crash between the commit and the publish loses the event for them); durable
    /// consumers use [`subscribe_all`](super::subscribe_all).
    pub fn publish_to(self: &std::sync::Arc<Self>, bus: &crate::Bus<P>) -> super::LiveFeed {
        super::live::publish_to(self, bus)
    }
}

impl<P> EventStore<P> for FileStore<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<Event<P>>,
    ) -> Result<AppendOutcome, AppendError<P>> {
        if let Some(error) = self.shared.poison_error() {
            return Err(AppendError::Io { error, events });
        }
        let max_events = self.shared.limits.max_batch_events;
        if let Err(reason) = check::check_batch(stream, &events, max_events) {
            return Err(AppendError::Rejected { reason, events });
        }
        let stamped = check::stamp(stream, &mut events);
        let frame = match self.encode(&events) {
            Ok(frame) => frame,
            Err(reason) => {
                stamped.undo(&mut events);
                return Err(AppendError::Rejected { reason, events });
            }
        };
        let (reply, answer) = sync_channel(1);
        let request = Request {
            stream: stream.clone(),
            expected,
            events,
            stamped,
            frame,
            reply,
        };
        let Some(tx) = &self.tx else {
            unreachable!("the sender lives until close or drop")
        };
        if let Err(e) = tx.send(request) {
            let mut r = e.0;
            r.stamped.undo(&mut r.events);
            return Err(AppendError::Closed { events: r.events });
        }
        answer.recv().unwrap_or_else(|_| {
            // The writer thread is gone (it panicked) with the events.
            Err(AppendError::Closed { events: Vec::new() })
        })
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        let visible = self.shared.watermark.visible();
        let positions = self.shared.streams.read(stream, visible, |all| {
            let start = from_version.saturating_sub(1).min(all.len() as u64) as usize;
            let end = start.saturating_add(max).min(all.len());
            all[start..end].to_vec()
        });
        self.read_positions(positions.into_iter())
    }

    fn read_stream_backward(
        &self,
        stream: &StreamId,
        max: usize,
    ) -> Result<Vec<Recorded<P>>, ReadError> {
        let visible = self.shared.watermark.visible();
        let positions = self.shared.streams.read(stream, visible, |all| {
            all[all.len() - max.min(all.len())..].to_vec()
        });
        let mut out = self.read_positions(positions.into_iter())?;
        out.reverse();
        Ok(out)
    }

    fn read_all(&self, from: Position, max: usize) -> Result<Vec<Recorded<P>>, ReadError> {
        let end = from
            .0
            .saturating_add(max as u64)
            .min(self.shared.watermark.visible());
        if from.0 >= end {
            return Ok(Vec::new());
        }
        self.read_positions(from.0..end)
    }

    fn scan_all(
        &self,
        from: Position,
        f: &mut dyn FnMut(Position, &EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Position>, ReadError> {
        let end = self.shared.watermark.visible();
        let mut at = from.0;
        let mut last = None;
        let mut buf = Vec::new();
        while at < end {
            let locs = self.shared.frames_from(at, end, 256);
            if locs.is_empty() {
                break;
            }
            for loc in &locs {
                let mut after = at;
                let go_on = self.shared.visit_frame(loc, &mut buf, |p, e| {
                    after = p + 1;
                    if p < from.0 {
                        return Ok(true);
                    }
                    last = Some(Position(p));
                    Ok(f(Position(p), e).is_continue())
                })?;
                if !go_on {
                    return Ok(last);
                }
                at = at.max(after);
            }
        }
        Ok(last)
    }

    fn stream_version(&self, stream: &StreamId) -> Result<u64, ReadError> {
        let visible = self.shared.watermark.visible();
        Ok(self
            .shared
            .streams
            .read(stream, visible, |all| all.len() as u64))
    }

    fn head(&self) -> Option<Position> {
        self.shared.watermark.head()
    }

    fn wait_past(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        self.shared.watermark.wait_past(after, timeout)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(&self.snapshots)
    }
}

/// What open did with the segments (for the tests).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Sealed segments loaded from their index files.
    pub(crate) from_index: usize,
    /// Segments read and scanned.
    pub(crate) scanned: usize,
    /// Index files written (missing, bad, or not matching the segment).
    pub(crate) indexes_written: usize,
}

/// What [`recover`] hands to the committer.
struct Recovery {
    active: Active,
    next: u64,
    torn_tail: Option<u64>,
    done: Recovered,
}

/// Loads the sealed segments that have a valid index from it and scans the
/// others and the last one, rebuilds the frame table and the indexes, repairs
/// a torn tail, writes missing or bad index files and removes stale ones.
fn recover(
    shared: &Shared,
    options: &StoreOptions,
    versions: &mut Versions,
) -> Result<Recovery, OpenError> {
    let vfs = &shared.vfs;
    let log_dir = &shared.log_dir;
    let listing = vfs.list(log_dir)?;
    let mut names: Vec<(u64, String)> = listing
        .iter()
        .filter_map(|n| segment::parse_name(n).map(|first| (first, n.clone())))
        .collect();
    names.sort();
    // Index files present; an unfinished index write is removed.
    let mut indexes = HashSet::new();
    for n in &listing {
        match index::parse_name(n) {
            Some(IndexName::Index(first)) => {
                indexes.insert(first);
            }
            Some(IndexName::Temporary) => vfs.remove_file(&log_dir.join(n))?,
            None => {}
        }
    }
    let remove_index = |indexes: &mut HashSet<u64>, first: u64| -> io::Result<()> {
        if indexes.remove(&first) {
            vfs.remove_file(&index::path(log_dir, first))?;
        }
        Ok(())
    };
    let mut sealed = HashSet::new();
    let mut done = Recovered::default();
    let mut next = 0_u64;
    let mut torn_tail = None;
    let mut active = None;
    let mut i = 0;
    while i < names.len() {
        let (named_first, name) = names[i].clone();
        let last = i + 1 == names.len();
        let path = log_dir.join(&name);
        let file = vfs.open(&path, OpenMode::ReadWrite)?;
        let len = file.len()?;
        if !last && !options.verify_on_open && indexes.contains(&named_first) {
            match load_index(
                &**vfs,
                log_dir,
                &*file,
                len,
                named_first,
                next,
                &shared.limits,
            ) {
                Ok(ix) => {
                    let seg = shared.push_segment(file);
                    apply(shared, versions, seg, &ix);
                    next += ix.events();
                    sealed.insert(named_first);
                    done.from_index += 1;
                    i += 1;
                    continue;
                }
                Err(reason) => crate::log::warning!(
                    "ringbus store: a sealed segment's index is not usable; scanning the segment",
                    file = path.display(),
                    reason = reason
                ),
            }
        }
        // A segment with a good header is read up to a little past its sync
        // mark (where a cleanly closed segment's frames end), not into the
        // zeros of its preallocated rest; the whole of it only if the frames
        // do not end cleanly within that.
        let mut bytes = read_prefix(&*file, len.min(DATA_START))?;
        if matches!(segment::read_header(&bytes), Header::Valid(_)) {
            let ahead = segment::read_sync_mark(&bytes).saturating_add(SCAN_AHEAD);
            bytes = read_prefix(&*file, len.min(ahead))?;
        } else {
            bytes = read_prefix(&*file, len)?;
        }
        let corrupt = |offset: u64, reason: String| OpenError::Corrupt {
            file: path.clone(),
            offset,
            reason,
        };
        let bad_at = match segment::read_header(&bytes) {
            Header::Blank | Header::Damaged(_)
                if last
                    && bytes
                        .get(DATA_START as usize..)
                        .is_none_or(|rest| rest.iter().all(|&b| b == 0)) =>
            {
                // A crash while the segment was created (its header not yet
                // durable, so nothing was acknowledged in it): it holds nothing.
                crate::log::warning!(
                    "ringbus store: removed a segment whose creation a crash interrupted",
                    file = path.display()
                );
                drop(file);
                vfs.remove_file(&path)?;
                remove_index(&mut indexes, named_first)?;
                vfs.sync_dir(log_dir)?;
                break;
            }
            Header::Blank => Some((0, "blank segment header".to_owned(), true)),
            Header::Damaged(reason) => Some((0, reason.to_owned(), true)),
            Header::Unsupported(found) => {
                return Err(OpenError::UnsupportedFormat { file: path, found })
            }
            Header::Valid(first) if first != named_first || first != next => Some((
                0,
                format!(
                    "segment starts at position {first} (named {named_first}), expected {next}"
                ),
                true,
            )),
            Header::Valid(_) => None,
        };
        let seg = shared.push_segment(file.clone());
        let mut scanned = Index::new(next);
        let end = match bad_at {
            Some((offset, reason, _)) => End::Bad {
                offset,
                reason,
                corrupt: true,
            },
            None => {
                let scan = |bytes: &[u8], scanned: &mut Index| {
                    segment::scan(bytes, segment::read_sync_mark(bytes), &shared.limits, |s| {
                        scanned.push(s.len, &s.stream, s.ids)
                    })
                };
                let end = scan(&bytes, &mut scanned);
                // Whether a scan of the whole file finds the same: it stopped
                // at a zero byte it had read, or (in the last segment) at a
                // torn frame it had read whole (one that is not even whole is
                // not told from one the lookahead cut), beyond the sync mark,
                // where what follows does not matter.
                let same = bytes.len() as u64 == len
                    || match &end {
                        End::Clean(o) => *o < bytes.len() as u64,
                        End::Bad {
                            offset,
                            corrupt: false,
                            ..
                        } => {
                            last && *offset >= segment::read_sync_mark(&bytes)
                                && Frames::with_limits(&bytes[*offset as usize..], shared.limits)
                                    .next()
                                    .is_some()
                        }
                        End::Bad { .. } => false,
                    };
                if same {
                    end
                } else {
                    // The whole segment, but not its preallocated hole: past
                    // the data's end it can only read zeros.
                    bytes = read_prefix(&*file, file.data_end()?.min(len))?;
                    scanned = Index::new(next);
                    scan(&bytes, &mut scanned)
                }
            }
        };
        done.scanned += 1;
        // The frames before any damage stay (truncation keeps them).
        apply(shared, versions, seg, &scanned);
        next += scanned.events();
        let end_offset = match end {
            End::Clean(offset) => offset,
            End::Bad {
                offset,
                reason: _,
                corrupt: false,
            } if last => {
                // A torn tail: cut it off, keep the preallocated length.
                truncate(&*file, offset, &bytes, len, options.preallocate)?;
                crate::log::warning!(
                    "ringbus store: truncated a torn tail",
                    file = path.display(),
                    offset = offset,
                    bytes = len - offset
                );
                torn_tail = Some(offset);
                offset
            }
            End::Bad { offset, reason, .. } => {
                if options.recovery == RecoveryMode::TruncateTornTail {
                    return Err(corrupt(offset, reason));
                }
                if offset < DATA_START {
                    // Nothing of this segment can be kept.
                    return Err(corrupt(offset, reason));
                }
                crate::log::error!(
                    "ringbus store: corrupt segment truncated (RecoveryMode::TruncateAfterCorruption), copy kept as .broken",
                    file = path.display(),
                    offset = offset,
                    reason = reason
                );
                keep_broken_copy(&**vfs, &path, &bytes)?;
                // No index may describe a truncated or renamed segment.
                remove_index(&mut indexes, named_first)?;
                for (first, later) in &names[i + 1..] {
                    let p = log_dir.join(later);
                    vfs.rename(&p, &log_dir.join(format!("{later}.broken")))?;
                    remove_index(&mut indexes, *first)?;
                }
                vfs.sync_dir(log_dir)?;
                names.truncate(i + 1);
                truncate(&*file, offset, &bytes, len, options.preallocate)?;
                offset
            }
        };
        debug_assert_eq!(scanned.end(), end_offset);
        if names.len() == i + 1 {
            // The active segment: appends go on in it, so no index may stay
            // (one is there if the segments after it were deleted).
            if indexes.contains(&named_first) {
                remove_index(&mut indexes, named_first)?;
                vfs.sync_dir(log_dir)?;
            }
            active = Some(Active {
                file,
                seg,
                offset: end_offset,
                index: scanned,
            });
        } else {
            sealed.insert(named_first);
            let encoded = scanned.encode();
            let current = indexes
                .contains(&named_first)
                .then(|| index::read_file(&**vfs, &index::path(log_dir, named_first)).ok())
                .flatten();
            if current.as_deref() != Some(&encoded[..]) {
                match index::write_bytes(&**vfs, log_dir, named_first, &encoded) {
                    Ok(()) => {
                        indexes.insert(named_first);
                        done.indexes_written += 1;
                    }
                    Err(e) => crate::log::warning!(
                        "ringbus store: writing a sealed segment's index failed (the next open scans it again)",
                        file = path.display(),
                        error = e
                    ),
                }
            }
        }
        i += 1;
    }
    // Indexes of segments that are gone (removed as blank, renamed `.broken`).
    for first in indexes.iter().filter(|f| !sealed.contains(*f)) {
        vfs.remove_file(&index::path(log_dir, *first))?;
    }
    let active = match active {
        Some(a) => a,
        None => {
            // (The mutation check removes the directory sync at a roll only,
            // where losing the entry loses acknowledged appends.)
            let file = committer::create_segment(
                shared,
                next,
                options.segment_bytes,
                options.preallocate,
                Mutations::default(),
            )?;
            let seg = shared.push_segment(file.clone());
            Active {
                file,
                seg,
                offset: DATA_START,
                index: Index::new(next),
            }
        }
    };
    Ok(Recovery {
        active,
        next,
        torn_tail,
        done,
    })
}

/// The index of the sealed segment `file` (named `named`, of length `len`),
/// expected to start at `next`, if its index file is there and valid.
fn load_index(
    vfs: &dyn Vfs,
    log_dir: &Path,
    file: &dyn VfsFile,
    len: u64,
    named: u64,
    next: u64,
    limits: &Limits,
) -> Result<Index, String> {
    let bytes = index::read_file(vfs, &index::path(log_dir, named)).map_err(|e| e.to_string())?;
    let ix = Index::decode(&bytes)?;
    ix.check_segment(file, len, named, next, limits)?;
    Ok(ix)
}

/// Adds a segment's frames (its index, loaded or scanned) to the frame table,
/// the stream index and `versions`.
fn apply(shared: &Shared, versions: &mut Versions, seg: u32, ix: &Index) {
    // Per stream of the segment: its version so far, and its new (position, id)s.
    let mut version: Vec<u64> = ix
        .streams
        .iter()
        .map(|s| versions.get(s).map_or(0, |l| l.len() as u64))
        .collect();
    let mut added: Vec<Vec<(u64, EventId)>> = vec![Vec::new(); ix.streams.len()];
    let mut locs = Vec::with_capacity(ix.frames.len());
    let (mut first, mut offset, mut at) = (ix.first, DATA_START, 0_usize);
    for f in &ix.frames {
        let o = f.stream as usize;
        locs.push(FrameLoc {
            first,
            version: version[o] + 1,
            seg,
            offset,
            len: f.len,
        });
        let ids = &ix.ids[at..at + f.count as usize];
        added[o].extend((first..).zip(ids.iter().copied()));
        version[o] += u64::from(f.count);
        first += u64::from(f.count);
        offset += u64::from(f.len);
        at += f.count as usize;
    }
    shared.push_frames(locs.into_iter());
    for (stream, added) in ix.streams.iter().zip(added) {
        let mut index = shared.streams.write(stream);
        // Runs of consecutive positions.
        let mut run: Option<(u64, u64)> = None;
        for &(p, _) in &added {
            run = match run {
                Some((start, n)) if start + n == p => Some((start, n + 1)),
                Some((start, n)) => {
                    index.extend(stream, start, n);
                    Some((p, 1))
                }
                None => Some((p, 1)),
            };
        }
        if let Some((start, n)) = run {
            index.extend(stream, start, n);
        }
        drop(index);
        versions.entry(stream.clone()).or_default().extend(added);
    }
}

/// Cuts `file` (of length `len`, its first bytes `bytes`) at `offset`, marks
/// it synced up to there and syncs it. With `preallocate` the file keeps its
/// length: if `bytes` reaches the end of the file's data (past it is a hole,
/// [`VfsFile::data_end`]), the bytes from `offset` to the last non-zero one are
/// overwritten with zeros in place (cheaper to sync than two changes of the
/// file's size); otherwise it is cut and extended again.
fn truncate(
    file: &dyn VfsFile,
    offset: u64,
    bytes: &[u8],
    len: u64,
    preallocate: bool,
) -> io::Result<()> {
    if preallocate && bytes.len() as u64 >= file.data_end()?.min(len) {
        let rest = bytes.get(offset as usize..).unwrap_or_default();
        if let Some(last) = rest.iter().rposition(|&b| b != 0) {
            file.write_all_at(&vec![0u8; last + 1], offset)?;
        }
    } else {
        file.set_len(offset)?;
        if preallocate {
            file.set_len(len)?;
        }
    }
    file.write_all_at(&segment::sync_mark(offset), segment::SYNC_MARK)?;
    file.sync_data()
}

/// How far past its sync mark open reads a segment at first (in the unit
/// tests, whose segments are a few KiB, so little that both ways — the frames
/// end within it, or the whole segment is read — are taken often).
const SCAN_AHEAD: u64 = if cfg!(test) { 100 } else { 1 << 20 };

/// The first `len` bytes of `file`.
fn read_prefix(file: &dyn VfsFile, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Copies a damaged segment to `<name>.broken`, durably.
fn keep_broken_copy(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".broken");
    let copy = path.with_file_name(name);
    let f = vfs.open(&copy, OpenMode::Create)?;
    f.set_len(0)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()
}

#[cfg(test)]
mod tests;
