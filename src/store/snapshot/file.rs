//! `FileSnapshots`: the latest snapshot of each stream, in one append-only log
//! file per directory, indexed in memory.
//!
//! # The log
//! `dir/snapshots.log`: records one after the other, laid out as the
//! `# Format` section of [`FileSnapshots`] says.
//!
//! Not a codec frame (FORMAT.md): a frame has one CRC over everything, and its
//! envelope (id, type, source, time) would be noise here. The header's own CRC
//! keeps a damaged length from being believed, and makes the search for the
//! next record after damage cheap: a candidate header is checked without
//! reading a body. A record of an unknown body layout with good CRCs is skipped, not
//! truncated, so a newer writer's records survive an older reader (which does
//! not index them, and drops them at its next compaction).
//!
//! # Writing
//! `save` encodes the record, then, under the writer lock (this store's own, not
//! the event store's committer: snapshot writes never wait for event appends),
//! checks the kept version (an older snapshot is not written at all), compacts if
//! due, appends the record with one positional write and `sync_data`s the file
//! before it updates the index and returns `Ok`: a saved snapshot survives a
//! power loss. The index (stream → offset, length, version of its latest record)
//! is swapped under a read-write lock held only for the update; `load` clones
//! the file handle and location under the read lock and reads the record with
//! one positional read, outside any lock, then checks its CRCs again.
//!
//! **A failed write or sync poisons the writer**: that save and every later one
//! return an error until the directory is opened again; loads go on. The sync is
//! never retried (a failed `fsync` may have dropped the dirty pages and a second
//! one "succeeds"). The failed snapshot is not loaded in this process; after a
//! restart the previous one or, if its bytes reached the disk after all, the
//! failed one is found — never a part of it.
//!
//! # Compaction
//! Before a save appends, if the log is at least `Compaction::min_bytes` long
//! and more than `Compaction::ratio` times the bytes of the live records (1 MiB
//! and 4× by default), the live records are copied to `dir/snapshots.log.tmp`,
//! which is synced, renamed over `snapshots.log`, and the directory synced; only
//! then does the save append to the new file. A crash leaves the old log (the
//! rename was not durable yet: it still holds every saved snapshot) or the new
//! one (synced before the rename), never a mix and never neither; open removes a
//! leftover temporary file. A failure during compaction poisons the writer, and
//! that save returns the error without having written its record.
//!
//! # Recovery, and how it differs from the event log
//! Open reads the whole log and checks every record's CRCs. Anything after the
//! last valid record (an incomplete record, a bad CRC, zeros) is a **torn tail**
//! and is truncated away and synced. A damaged record *with valid records after
//! it* is **skipped**: its stream's snapshot comes from an earlier valid record,
//! or there is none. The event log refuses to open in that case, because an
//! event is the truth; a snapshot is an optimisation, so a damaged or
//! undecodable one is ignored and the caller replays the stream from its
//! events. Damage is never an open error and never a panic; only I/O errors
//! are. After a damaged record (a bad header, a bad body, a length that runs
//! past the end) the next one is found by searching for the next header whose
//! magic and CRC check out, from the byte after the damaged record's start —
//! not by its length, since a record cut short in the middle of the log is
//! followed by the next one early. (A payload that itself contains a whole
//! valid record could be mistaken for one there, and only there.)

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Snapshot, SnapshotStore};
use crate::store::vfs::{create_dir_durably, OpenMode, StdFs, Vfs, VfsFile, VfsLock};
use crate::store::StreamId;

#[cfg(test)]
mod tests;

/// The log's file name in the directory.
const LOG_NAME: &str = "snapshots.log";
/// Where compaction writes the new log before renaming it over the old one.
const TEMP_NAME: &str = "snapshots.log.tmp";
/// The lock file that keeps a second `FileSnapshots` out of the directory.
const LOCK_NAME: &str = "LOCK";

const MAGIC: [u8; 2] = [0xEB, 0x53];
const LAYOUT: u8 = 1;
const HEADER_LEN: usize = 16;
/// Stream id length, stream version, schema version: the body before the
/// stream id bytes and the payload.
const BODY_FIXED: usize = 1 + 8 + 4;
/// The most body bytes open reads before the payload (stream id at its longest).
const BODY_META_MAX: usize = BODY_FIXED + StreamId::MAX_LEN;
/// Bytes read at a time while scanning.
const CHUNK: usize = 64 * 1024;
/// Compaction copies live records in writes of about this size.
const COPY_BATCH: usize = 1024 * 1024;

/// When the log is rewritten with only its live records.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Compaction {
    /// The log is never compacted below this many bytes.
    pub(crate) min_bytes: u64,
    /// Compacted when it holds more than `ratio` times the live records' bytes.
    pub(crate) ratio: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            min_bytes: 1024 * 1024,
            ratio: 4,
        }
    }
}

/// Deliberate defects, for the tests that prove the crash test can see them.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Mutations {
    /// Acknowledge a save without `sync_data`.
    pub(crate) skip_save_sync: bool,
    /// Do not sync the directory after renaming a compacted log into place.
    pub(crate) skip_compaction_dir_sync: bool,
}

/// Where a stream's latest record is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Loc {
    /// Byte offset of the record (its header) in the log.
    offset: u64,
    /// The whole record's length, header included.
    len: u64,
    /// The snapshot's stream version.
    version: u64,
}

/// The index loads read: the current log file and where each stream's latest
/// record is in it. Replaced whole by compaction.
struct Index {
    file: Arc<dyn VfsFile>,
    map: HashMap<StreamId, Loc>,
    /// The sum of the indexed records' lengths.
    live_bytes: u64,
}

/// The writer's side, under its own lock.
struct Writer {
    /// The log file saves append to (the index's, but owned here for writing).
    file: Arc<dyn VfsFile>,
    /// Where the next record goes: the end of the last valid record.
    end: u64,
    /// The error that poisoned the writer, as kind and text.
    poisoned: Option<(io::ErrorKind, String)>,
    /// Compactions begun, and finished (test statistics).
    compactions_begun: u64,
    compactions_done: u64,
}

/// The latest [`Snapshot`] of each stream, durable: one append-only log file
/// in a directory, with the latest record of each stream indexed in memory.
///
/// * [`save`](SnapshotStore::save) appends a record and syncs it (`fdatasync`)
///   before it returns `Ok`: a saved snapshot survives a crash or a power loss.
///   A snapshot older (lower version) than the one kept is not written at all;
///   one of the same version replaces it. Saves take this store's own lock,
///   never the event store's, so they never hold up event appends.
/// * [`load`](SnapshotStore::load) reads the stream's latest record with one
///   positional read and checks its checksums: a damaged snapshot loads as
///   `None` (replay the events), never as wrong bytes.
/// * **A failed write or sync poisons the store:** that save and every later
///   one return an error until the directory is opened again (loads go on).
///   After a failed save, a restart finds the previous snapshot or the failed
///   one, whole, never a part of it.
/// * **Open** truncates a torn tail (what a crash in the middle of a save
///   leaves) and *skips* a damaged record that has valid records after it:
///   that stream loads an earlier snapshot or none. Damage is never an open
///   error — a snapshot is an optimisation, unlike an event.
/// * **Compaction:** once the log is over 1 MiB and over 4 times the size of
///   the live snapshots, the next save first rewrites the live ones to a new
///   file and renames it into place, crash-safely (a crash leaves the old log
///   or the new one).
///
/// One `FileSnapshots` per directory: a second `open` of the same directory
/// fails (kind [`WouldBlock`](io::ErrorKind::WouldBlock)) while the first is
/// alive.
///
/// # Format
/// `dir/snapshots.log` is records written one after the other, nothing between
/// them and no file header. A record (integers little-endian):
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 2 | magic `eb 53` |
/// | 2 | 1 | body layout version, `01` |
/// | 3 | 1 | reserved, `00` |
/// | 4 | 4 | body length *n* (u32) |
/// | 8 | 4 | CRC-32C of the body |
/// | 12 | 4 | CRC-32C of bytes 0..12 (the header's own check) |
/// | 16 | *n* | body |
///
/// Body, layout 1: stream id length (u8, 1..=255), the stream id (UTF-8), the
/// stream version (u64), the schema version (u32), the payload (the rest).
///
/// A record of another body layout with good checksums is skipped (kept on
/// disk, not loaded). After a damaged record, open searches for the next header
/// whose magic and checksum check out.
///
/// # Examples
/// ```
/// use ringbus::store::snapshot::{FileSnapshots, Snapshot, SnapshotStore};
/// use ringbus::store::StreamId;
///
/// let dir = std::env::temp_dir().join(format!("ringbus-doc-snapshots-{}", std::process::id()));
/// let cart = StreamId::new("cart-1").unwrap();
/// let snapshots = FileSnapshots::open(&dir).unwrap();
/// snapshots.save(Snapshot::encode(cart.clone(), 7, 1, &vec!["apple"]).unwrap()).unwrap();
/// snapshots.save(Snapshot::encode(cart.clone(), 3, 1, &vec!["older"]).unwrap()).unwrap(); // kept out
///
/// // After a restart.
/// drop(snapshots);
/// let snapshots = FileSnapshots::open(&dir).unwrap();
/// let latest = snapshots.load(&cart).unwrap().unwrap();
/// assert_eq!(latest.version, 7);
/// assert_eq!(latest.decode::<Vec<String>>(1).unwrap(), ["apple"]);
/// # drop(snapshots);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct FileSnapshots {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    policy: Compaction,
    mutations: Mutations,
    /// Lock order: `writer`, then `index`.
    writer: Mutex<Writer>,
    index: RwLock<Index>,
    /// Bytes truncated away as a torn tail at open.
    torn_tail_bytes: u64,
    /// Damaged or unreadable stretches skipped at open.
    skipped: u64,
    _lock: Box<dyn VfsLock>,
}

impl FileSnapshots {
    /// The largest payload a snapshot may have, in bytes (a record's body length
    /// is a u32); a larger one is refused by `save` with
    /// [`InvalidInput`](io::ErrorKind::InvalidInput), and nothing is written.
    pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize - BODY_META_MAX;

    /// Opens (creating it and its parents if needed) the snapshot directory
    /// `dir`, reads its log, truncates a torn tail and indexes the latest valid
    /// snapshot of each stream.
    ///
    /// # Errors
    /// An I/O error creating, reading, truncating or syncing the directory or its
    /// log ([`WouldBlock`](io::ErrorKind::WouldBlock) if another `FileSnapshots`
    /// has it open). Damaged records are not an error: they are skipped.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_in(Arc::new(StdFs), dir.as_ref())
    }

    /// [`open`](FileSnapshots::open) on the file system `vfs` (the file store's,
    /// or a simulated disk in crash tests).
    pub(crate) fn open_in(vfs: Arc<dyn Vfs>, dir: &Path) -> io::Result<Self> {
        Self::open_with(vfs, dir, Compaction::default(), Mutations::default())
    }

    pub(crate) fn open_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        policy: Compaction,
        mutations: Mutations,
    ) -> io::Result<Self> {
        create_dir_durably(&*vfs, dir)?;
        let lock = vfs.try_lock(&dir.join(LOCK_NAME))?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("snapshot directory {} is already open", dir.display()),
            )
        })?;
        let temp = dir.join(TEMP_NAME);
        if vfs.exists(&temp) {
            // An interrupted compaction's: never read. One that cannot be removed
            // is replaced by the next compaction.
            let _ = vfs.remove_file(&temp);
        }
        let path = dir.join(LOG_NAME);
        let file = if vfs.exists(&path) {
            vfs.open(&path, OpenMode::ReadWrite)?
        } else {
            // The log's directory entry is durable before any save syncs data
            // into it.
            let f = vfs.open(&path, OpenMode::Create)?;
            f.sync_data()?;
            vfs.sync_dir(dir)?;
            f
        };
        let scan = scan(&*file)?;
        let len = file.len()?;
        let torn_tail_bytes = len.saturating_sub(scan.end);
        if torn_tail_bytes > 0 {
            file.set_len(scan.end)?;
            file.sync_data()?;
        }
        let live_bytes = scan.map.values().map(|l| l.len).sum();
        Ok(FileSnapshots {
            vfs,
            dir: dir.to_path_buf(),
            policy,
            mutations,
            writer: Mutex::new(Writer {
                file: file.clone(),
                end: scan.end,
                poisoned: None,
                compactions_begun: 0,
                compactions_done: 0,
            }),
            index: RwLock::new(Index {
                file,
                map: scan.map,
                live_bytes,
            }),
            torn_tail_bytes,
            skipped: scan.skipped,
            _lock: lock,
        })
    }

    /// The directory the snapshots are in.
    ///
    /// ```
    /// use ringbus::store::snapshot::FileSnapshots;
    /// let dir = std::env::temp_dir().join(format!("ringbus-doc-snapdir-{}", std::process::id()));
    /// assert_eq!(FileSnapshots::open(&dir).unwrap().dir(), dir);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of a torn tail that open truncated away (0 after a clean shutdown).
    #[cfg(test)]
    pub(crate) fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail_bytes
    }

    /// Damaged stretches of the log that open skipped.
    #[cfg(test)]
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// (compactions begun, compactions finished) since open.
    #[cfg(test)]
    pub(crate) fn compactions(&self) -> (u64, u64) {
        let w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        (w.compactions_begun, w.compactions_done)
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites the live records to a new log and renames it into place. On
    /// `Ok`, the writer and the index use the new file.
    fn compact(&self, w: &mut Writer) -> io::Result<()> {
        w.compactions_begun += 1;
        let mut live: Vec<(StreamId, Loc)> = self
            .index()
            .map
            .iter()
            .map(|(s, l)| (s.clone(), *l))
            .collect();
        live.sort_unstable_by_key(|(_, l)| l.offset);
        let temp = self.dir.join(TEMP_NAME);
        if self.vfs.exists(&temp) {
            self.vfs.remove_file(&temp)?;
        }
        let copied = (|| {
            let out = self.vfs.open(&temp, OpenMode::CreateNew)?;
            let mut map = HashMap::with_capacity(live.len());
            let mut batch = Vec::new();
            let mut at = 0u64;
            for (stream, loc) in live {
                let mut record = vec![0u8; loc.len as usize];
                match w.file.read_exact_at(&mut record, loc.offset) {
                    Ok(()) => {}
                    // Cut short behind our back: damaged, dropped.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                    Err(e) => return Err(e),
                }
                if decode(&record).is_none() {
                    // Damaged since open: copying it would keep garbage.
                    continue;
                }
                map.insert(
                    stream,
                    Loc {
                        offset: at + batch.len() as u64,
                        ..loc
                    },
                );
                batch.extend_from_slice(&record);
                if batch.len() >= COPY_BATCH {
                    out.write_all_at(&batch, at)?;
                    at += batch.len() as u64;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                out.write_all_at(&batch, at)?;
                at += batch.len() as u64;
            }
            out.sync_data()?;
            Ok((out, map, at))
        })();
        let (out, map, end) = match copied {
            Ok(c) => c,
            Err(e) => {
                // The old log is untouched; the temporary file is garbage.
                let _ = self.vfs.remove_file(&temp);
                return Err(e);
            }
        };
        self.vfs.rename(&temp, &self.dir.join(LOG_NAME))?;
        if !self.mutations.skip_compaction_dir_sync {
            self.vfs.sync_dir(&self.dir)?;
        }
        w.file = out.clone();
        w.end = end;
        w.compactions_done += 1;
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Index {
            file: out,
            map,
            live_bytes: end,
        };
        Ok(())
    }
}

impl fmt::Debug for FileSnapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSnapshots")
            .field("dir", &self.dir)
            .field("streams", &self.index().map.len())
            .field("torn_tail_bytes", &self.torn_tail_bytes)
            .field("skipped", &self.skipped)
            // Not waiting for a save under way.
            .field(
                "compactions",
                &self.writer.try_lock().ok().map(|w| w.compactions_done),
            )
            .finish_non_exhaustive()
    }
}

impl SnapshotStore for FileSnapshots {
    fn save(&self, snapshot: Snapshot) -> io::Result<()> {
        let record = encode(&snapshot)?;
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kind, why)) = &w.poisoned {
            return Err(io::Error::new(
                *kind,
                format!(
                    "snapshot store {} failed earlier and takes no more saves until it is \
                     opened again: {why}",
                    self.dir.display()
                ),
            ));
        }
        let (kept, live_bytes) = {
            let index = self.index();
            (index.map.get(&snapshot.stream).copied(), index.live_bytes)
        };
        if kept.is_some_and(|k| k.version > snapshot.version) {
            return Ok(());
        }
        let due =
            w.end >= self.policy.min_bytes && w.end > live_bytes.saturating_mul(self.policy.ratio);
        let written: io::Result<()> = (|| {
            if due {
                self.compact(&mut w)?;
            }
            w.file.write_all_at(&record, w.end)?;
            if !self.mutations.skip_save_sync {
                w.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            w.poisoned = Some((e.kind(), e.to_string()));
            return Err(e);
        }
        let loc = Loc {
            offset: w.end,
            len: record.len() as u64,
            version: snapshot.version,
        };
        w.end += loc.len;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let replaced = index.map.insert(snapshot.stream, loc).map_or(0, |l| l.len);
        index.live_bytes = index.live_bytes - replaced + loc.len;
        Ok(())
    }

    fn load(&self, stream: &StreamId) -> io::Result<Option<Snapshot>> {
        let (file, loc) = {
            let index = self.index();
            match index.map.get(stream) {
                Some(loc) => (index.file.clone(), *loc),
                None => return Ok(None),
            }
        };
        let mut record = vec![0u8; loc.len as usize];
        match file.read_exact_at(&mut record, loc.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        Ok(decode(&record).filter(|s| s.stream == *stream && s.version == loc.version))
    }
}

// ---- records ------------------------------------------------------------------

/// The record of `snapshot`, or `InvalidInput` if its payload is too large.
fn encode(snapshot: &Snapshot) -> io::Result<Vec<u8>> {
    let stream = snapshot.stream.as_str().as_bytes();
    let body_len = body_len(stream.len(), snapshot.payload.len()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "snapshot payload of {} bytes is over the limit of {} bytes",
                snapshot.payload.len(),
                FileSnapshots::MAX_PAYLOAD_LEN
            ),
        )
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len as usize);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.push(stream.len() as u8);
    out.extend_from_slice(stream);
    out.extend_from_slice(&snapshot.version.to_le_bytes());
    out.extend_from_slice(&snapshot.schema_version.to_le_bytes());
    out.extend_from_slice(&snapshot.payload);
    let body_crc = crc32c::crc32c(&out[HEADER_LEN..]);
    out[..2].copy_from_slice(&MAGIC);
    out[2] = LAYOUT;
    out[4..8].copy_from_slice(&body_len.to_le_bytes());
    out[8..12].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[..12]);
    out[12..16].copy_from_slice(&header_crc.to_le_bytes());
    Ok(out)
}

/// A body's length for a stream id and payload of these lengths, if it fits the
/// format (and [`FileSnapshots::MAX_PAYLOAD_LEN`]).
fn body_len(stream_len: usize, payload_len: usize) -> Option<u32> {
    if payload_len > FileSnapshots::MAX_PAYLOAD_LEN {
        return None;
    }
    u32::try_from(BODY_FIXED + stream_len + payload_len).ok()
}

/// A record header that checks out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Header {
    layout: u8,
    body_len: u32,
    body_crc: u32,
}

impl Header {
    fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }
}

/// The header at the start of `bytes`, if its magic and CRC check out.
fn header(bytes: &[u8]) -> Option<Header> {
    let h = bytes.get(..HEADER_LEN)?;
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if h[..2] != MAGIC || crc32c::crc32c(&h[..12]) != u32_at(12) {
        return None;
    }
    Some(Header {
        layout: h[2],
        body_len: u32_at(4),
        body_crc: u32_at(8),
    })
}

/// The stream, version and schema version at the start of a layout-1 body
/// (`meta` may be cut after them), if they are well formed.
fn body_meta(meta: &[u8], body_len: u32) -> Option<(StreamId, u64, u32)> {
    let stream_len = *meta.first()? as usize;
    if stream_len == 0 || BODY_FIXED + stream_len > body_len as usize {
        return None;
    }
    let stream = std::str::from_utf8(meta.get(1..1 + stream_len)?).ok()?;
    let stream = StreamId::new(stream).ok()?;
    let rest = meta.get(1 + stream_len..BODY_FIXED + stream_len)?;
    let version = u64::from_le_bytes(rest[..8].try_into().ok()?);
    let schema_version = u32::from_le_bytes(rest[8..12].try_into().ok()?);
    Some((stream, version, schema_version))
}

/// The snapshot in `record` (exactly one record), if it is whole, of a known
/// layout and well formed.
fn decode(record: &[u8]) -> Option<Snapshot> {
    let h = header(record)?;
    let body = &record[HEADER_LEN..];
    if h.layout != LAYOUT || body.len() as u64 != u64::from(h.body_len) {
        return None;
    }
    if crc32c::crc32c(body) != h.body_crc {
        return None;
    }
    let (stream, version, schema_version) = body_meta(body, h.body_len)?;
    let payload = body[BODY_FIXED + stream.as_str().len()..].to_vec();
    Some(Snapshot {
        stream,
        version,
        schema_version,
        payload,
    })
}

// ---- open: the scan ---------------------------------------------------------------

/// What open found in the log.
struct Scan {
    /// The latest valid record of each stream.
    map: HashMap<StreamId, Loc>,
    /// The end of the last record with good CRCs: the rest is a torn tail.
    end: u64,
    /// Damaged stretches with a valid record after them, and valid records
    /// that could not be indexed (unknown layout, bad stream id).
    skipped: u64,
}

/// Reads a file through a buffer of [`CHUNK`] bytes.
struct Reader<'a> {
    file: &'a dyn VfsFile,
    len: u64,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    start: u64,
}

impl<'a> Reader<'a> {
    fn new(file: &'a dyn VfsFile, len: u64) -> Self {
        Reader {
            file,
            len,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Up to `n` (≤ [`CHUNK`]) bytes at `offset`; fewer only at the end of the file.
    fn at(&mut self, offset: u64, n: usize) -> io::Result<&[u8]> {
        debug_assert!(n <= CHUNK);
        let want = (n as u64).min(self.len.saturating_sub(offset)) as usize;
        let have =
            offset >= self.start && offset + want as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let fill = (CHUNK as u64).min(self.len - offset.min(self.len)) as usize;
            self.buf.resize(fill, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.buf[from..from + want])
    }
}

/// Reads the whole log: checks every record, indexes the latest valid one of
/// each stream, finds where the valid records end.
fn scan(file: &dyn VfsFile) -> io::Result<Scan> {
    let len = file.len()?;
    let mut r = Reader::new(file, len);
    let mut out = Scan {
        map: HashMap::new(),
        end: 0,
        skipped: 0,
    };
    let mut at = 0u64;
    // Set when a damaged stretch began and no valid record has followed yet.
    let mut damaged = false;
    while at < len {
        match record_at(&mut r, at)? {
            Some((h, meta)) => {
                if damaged {
                    out.skipped += 1;
                    damaged = false;
                }
                let end = at + h.record_len();
                match meta {
                    Some((stream, version)) => {
                        let loc = Loc {
                            offset: at,
                            len: h.record_len(),
                            version,
                        };
                        match out.map.get(&stream) {
                            Some(kept) if kept.version > version => {}
                            _ => {
                                out.map.insert(stream, loc);
                            }
                        }
                    }
                    // Whole, but of another layout or with a bad stream id:
                    // kept on disk, not indexed.
                    None => out.skipped += 1,
                }
                at = end;
                out.end = end;
            }
            None => {
                // Damaged: the header, so its length cannot be trusted, or the
                // body, which may have lost bytes (a record cut short), so the
                // next record may begin anywhere after this one's start.
                damaged = true;
                match next_header(&mut r, at + 1)? {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
    }
    Ok(out)
}

/// The record at `at` if its header and body check out: its header and, for
/// a well-formed layout-1 body, its stream and version.
#[allow(clippy::type_complexity)]
fn record_at(r: &mut Reader<'_>, at: u64) -> io::Result<Option<(Header, Option<(StreamId, u64)>)>> {
    let Some(h) = header(r.at(at, HEADER_LEN)?) else {
        return Ok(None);
    };
    let end = at + h.record_len();
    if end > r.len {
        return Ok(None);
    }
    // The body's CRC, a chunk at a time; its metadata from the first chunk.
    let mut crc = 0u32;
    let mut meta = None;
    let mut off = at + HEADER_LEN as u64;
    while off < end {
        let n = ((end - off) as usize).min(CHUNK);
        let chunk = r.at(off, n)?;
        if meta.is_none() {
            meta = Some(
                (h.layout == LAYOUT)
                    .then(|| body_meta(chunk, h.body_len))
                    .flatten()
                    .map(|(stream, version, _)| (stream, version)),
            );
        }
        crc = crc32c::crc32c_append(crc, chunk);
        off += n as u64;
    }
    if crc != h.body_crc {
        return Ok(None);
    }
    Ok(Some((h, meta.flatten())))
}

/// The offset of the first header at or after `from` whose magic and CRC check
/// out, if any.
fn next_header(r: &mut Reader<'_>, mut from: u64) -> io::Result<Option<u64>> {
    while from + HEADER_LEN as u64 <= r.len {
        let window = r.at(from, CHUNK)?;
        let last = window.len().saturating_sub(HEADER_LEN - 1);
        for i in 0..last {
            if window[i] == MAGIC[0] && window[i + 1] == MAGIC[1] && header(&window[i..]).is_some()
            {
                return Ok(Some(from + i as u64));
            }
        }
        if last == 0 {
            break;
        }
        from += last as u64;
    }
    Ok(None)
}
