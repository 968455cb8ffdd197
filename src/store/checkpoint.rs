//! Checkpoints: where a named consumer (a catch-up subscription, a projection)
//! got to in the store's total order, kept so that it resumes there after a
//! restart.
//!
//! [`CheckpointStore`] is the interface; [`FileCheckpoints`] keeps one small file
//! per name and replaces it atomically (write a temporary file, fsync it, rename it
//! over the old one, fsync the directory), so a crash leaves either the old
//! checkpoint or the new one, never a mix; [`InMemoryCheckpoints`] is for tests and
//! replays. A projection that keeps its read model in storage of its own should
//! implement the trait on that storage and save the checkpoint in the same
//! transaction as the model: then the two can never disagree.
//!
//! # Names
//! A checkpoint name is 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits,
//! `_`, `-` and `.`, not starting with `.`: it is used as a file name, so nothing
//! that could leave the directory (`/`, `\`, `..`) or hide in it is accepted, by
//! either store. A refused name is an [`io::Error`] of kind
//! [`InvalidInput`](io::ErrorKind::InvalidInput). Names differing only in case
//! are distinct, but share a file on a case-insensitive file system: avoid them.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::vfs::{create_dir_durably, OpenMode, StdFs, Vfs};
use super::Position;

/// The longest checkpoint name, in bytes (a file name with room for the
/// temporary file's decoration).
pub const MAX_NAME_LEN: usize = 200;

/// Keeps, per name, the position a consumer has got to.
///
/// What the position means is the caller's: the catch-up subscriptions save the
/// last position they have handled. `save` then `load` of the same name returns
/// what was saved; a name never saved loads as `None`.
///
/// Implemented for `&T`, `Box<T>` and `Arc<T>` of any implementation, so one
/// store can be shared.
///
/// # Examples
/// ```
/// use ringbus::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
/// use ringbus::store::Position;
///
/// fn resume_from(checkpoints: &impl CheckpointStore) -> std::io::Result<Position> {
///     // The next position to handle: one past the checkpoint, or the start.
///     Ok(checkpoints.load("orders-view")?.map_or(Position(0), |p| Position(p.0 + 1)))
/// }
///
/// let checkpoints = InMemoryCheckpoints::new();
/// assert_eq!(resume_from(&checkpoints).unwrap(), Position(0));
/// checkpoints.save("orders-view", Position(41)).unwrap();
/// assert_eq!(resume_from(&checkpoints).unwrap(), Position(42));
/// ```
pub trait CheckpointStore {
    /// The position saved under `name`, or `None` if none was.
    ///
    /// # Errors
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a name outside the
    /// [rules](self#names); [`InvalidData`](io::ErrorKind::InvalidData) when the
    /// stored checkpoint is damaged; any error of the underlying storage.
    fn load(&self, name: &str) -> io::Result<Option<Position>>;

    /// Saves `position` under `name`, replacing what was there. When it returns
    /// `Ok`, the checkpoint is as durable as the store promises.
    ///
    /// # Errors
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a name outside the
    /// [rules](self#names); any error of the underlying storage (see each
    /// implementation for what is kept then).
    fn save(&self, name: &str, position: Position) -> io::Result<()>;

    /// Forgets the checkpoint saved under `name`: a later `load` returns `None`.
    /// Forgetting a name never saved is `Ok`. When it returns `Ok`, the
    /// forgetting is as durable as a save.
    /// [`CatchUpHandle::rebuild`](crate::store::CatchUpHandle::rebuild) clears
    /// its checkpoint before the replay, so a process that stops during the
    /// replay starts it again.
    ///
    /// # Errors
    /// As [`save`](CheckpointStore::save).
    fn clear(&self, name: &str) -> io::Result<()>;
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for &T {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
    }

    fn clear(&self, name: &str) -> io::Result<()> {
        (**self).clear(name)
    }
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for Box<T> {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
    }

    fn clear(&self, name: &str) -> io::Result<()> {
        (**self).clear(name)
    }
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for Arc<T> {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
    }

    fn clear(&self, name: &str) -> io::Result<()> {
        (**self).clear(name)
    }
}

/// Refuses a name outside the [rules](self#names).
fn check_name(name: &str) -> io::Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid checkpoint name {name:?}: use 1 to {MAX_NAME_LEN} ASCII letters, \
                 digits, '_', '-' or '.', not starting with '.'"
            ),
        ))
    }
}

// ---- in memory --------------------------------------------------------------

/// Checkpoints in a map, for tests and replays: a fresh one is a replay from
/// the start. Names follow the same [rules](self#names) as [`FileCheckpoints`],
/// so code tested against one runs against the other.
///
/// # Examples
/// ```
/// use ringbus::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
/// use ringbus::store::Position;
///
/// let checkpoints = InMemoryCheckpoints::new();
/// assert_eq!(checkpoints.load("billing").unwrap(), None);
/// checkpoints.save("billing", Position(9)).unwrap();
/// checkpoints.save("billing", Position(12)).unwrap();
/// assert_eq!(checkpoints.load("billing").unwrap(), Some(Position(12)));
/// assert!(checkpoints.save("../billing", Position(1)).is_err());
/// ```
#[derive(Debug, Default)]
pub struct InMemoryCheckpoints {
    map: Mutex<HashMap<String, Position>>,
}

impl InMemoryCheckpoints {
    /// An empty store.
    ///
    /// ```
    /// use ringbus::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
    /// assert_eq!(InMemoryCheckpoints::new().load("any").unwrap(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for InMemoryCheckpoints {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        check_name(name)?;
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(name).copied())
    }

    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        check_name(name)?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(name.to_owned(), position);
        Ok(())
    }

    fn clear(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(name);
        Ok(())
    }
}

// ---- files ------------------------------------------------------------------

/// The file format: magic, format version, position (u64 LE), CRC-32C of the
/// preceding 13 bytes (u32 LE). 17 bytes; anything else is damaged.
const MAGIC: [u8; 4] = *b"RBCP";
const FORMAT_VERSION: u8 = 1;
const FILE_LEN: usize = 17;
const EXTENSION: &str = "ckpt";
const TEMP_SUFFIX: &str = ".tmp";

/// Distinguishes the temporary files of concurrent saves within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn encode(position: Position) -> [u8; FILE_LEN] {
    let mut out = [0u8; FILE_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = FORMAT_VERSION;
    out[5..13].copy_from_slice(&position.0.to_le_bytes());
    let crc = crc32c::crc32c(&out[..13]);
    out[13..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn damaged(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("damaged checkpoint file {}: {why}", path.display()),
    )
}

fn decode(bytes: &[u8; FILE_LEN], path: &Path) -> io::Result<Position> {
    if bytes[..4] != MAGIC {
        return Err(damaged(path, "not a checkpoint file (bad magic)".into()));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(damaged(
            path,
            format!("unsupported format version {}", bytes[4]),
        ));
    }
    let stored = u32::from_le_bytes([bytes[13], bytes[14], bytes[15], bytes[16]]);
    let computed = crc32c::crc32c(&bytes[..13]);
    if stored != computed {
        return Err(damaged(
            path,
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&bytes[5..13]);
    Ok(Position(u64::from_le_bytes(p)))
}

/// Whether a directory entry is a temporary file of [`FileCheckpoints::save`].
fn is_temp(entry: &str) -> bool {
    entry.starts_with('.') && entry.ends_with(TEMP_SUFFIX)
}

/// Checkpoints as files in one directory: `<name>.ckpt`, 17 bytes each (magic,
/// format version, position, CRC-32C), so a damaged or foreign file is reported
/// as [`InvalidData`](io::ErrorKind::InvalidData), never read as a position.
///
/// `save` writes a temporary file (`.<name>.<pid>-<n>.tmp`), fsyncs it, renames it
/// over `<name>.ckpt` and fsyncs the directory: when it returns, the checkpoint
/// survives a crash or a power loss, and a crash at any point leaves the previous
/// checkpoint or the new one. A temporary file left by a crash is never read, and
/// the next [`open`](FileCheckpoints::open) removes it. A `save` that fails keeps
/// the previous checkpoint, except when only the final directory fsync fails: the
/// new one is then in place but may not survive a power loss (the fsync is not
/// retried). Concurrent saves are safe (each has its own temporary file; the last
/// rename wins); one process should own a directory. The unit tests check these
/// promises on a simulated disk that loses unsynced writes, with a power cut at
/// every step of a save.
///
/// # Examples
/// ```
/// use ringbus::store::checkpoint::{CheckpointStore, FileCheckpoints};
/// use ringbus::store::Position;
///
/// let dir = std::env::temp_dir().join(format!("ringbus-doc-checkpoints-{}", std::process::id()));
/// let checkpoints = FileCheckpoints::open(&dir).unwrap();
/// checkpoints.save("orders-view", Position(1_000)).unwrap();
/// assert!(dir.join("orders-view.ckpt").exists());
///
/// // After a restart.
/// drop(checkpoints);
/// let checkpoints = FileCheckpoints::open(&dir).unwrap();
/// assert_eq!(checkpoints.load("orders-view").unwrap(), Some(Position(1_000)));
/// assert_eq!(checkpoints.load("billing").unwrap(), None);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone)]
pub struct FileCheckpoints {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
}

impl FileCheckpoints {
    /// Opens (creating it, and its parents, if needed) the checkpoint directory
    /// `dir`, and removes temporary files a crash left in it.
    ///
    /// # Errors
    /// Any error creating, syncing or listing the directory.
    ///
    /// ```
    /// use ringbus::store::checkpoint::FileCheckpoints;
    /// let dir = std::env::temp_dir().join(format!("ringbus-doc-open-{}", std::process::id()));
    /// let checkpoints = FileCheckpoints::open(dir.join("checkpoints")).unwrap();
    /// assert_eq!(checkpoints.dir(), dir.join("checkpoints"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_in(Arc::new(StdFs), dir.as_ref())
    }

    /// [`open`](FileCheckpoints::open) on the file system `vfs` (the store's, or
    /// a simulated disk in crash tests).
    pub(crate) fn open_in(vfs: Arc<dyn Vfs>, dir: &Path) -> io::Result<Self> {
        create_dir_durably(&*vfs, dir)?;
        for entry in vfs.list(dir)? {
            if is_temp(&entry) {
                // Housekeeping: a leftover is never read, so one that cannot be
                // removed (or comes back after a crash) does no harm.
                let _ = vfs.remove_file(&dir.join(entry));
            }
        }
        Ok(FileCheckpoints {
            vfs,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory the checkpoints are in.
    ///
    /// ```
    /// use ringbus::store::checkpoint::FileCheckpoints;
    /// let dir = std::env::temp_dir().join(format!("ringbus-doc-dir-{}", std::process::id()));
    /// assert_eq!(FileCheckpoints::open(&dir).unwrap().dir(), dir);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.{EXTENSION}"))
    }
}

impl fmt::Debug for FileCheckpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCheckpoints")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        check_name(name)?;
        let path = self.path(name);
        let file = match self.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.len()?;
        if len != FILE_LEN as u64 {
            return Err(damaged(
                &path,
                format!("{len} byte(s), expected {FILE_LEN}"),
            ));
        }
        let mut bytes = [0u8; FILE_LEN];
        file.read_exact_at(&mut bytes, 0)?;
        decode(&bytes, &path).map(Some)
    }

    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        check_name(name)?;
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{name}.{}-{seq}{TEMP_SUFFIX}", std::process::id()));
        let written = (|| {
            let f = self.vfs.open(&temp, OpenMode::CreateNew)?;
            f.write_all_at(&encode(position), 0)?;
            f.sync_data()?;
            drop(f);
            self.vfs.rename(&temp, &self.path(name))
        })();
        if let Err(e) = written {
            // The old checkpoint is intact; the temporary file is garbage.
            let _ = self.vfs.remove_file(&temp);
            return Err(e);
        }
        self.vfs.sync_dir(&self.dir)
    }

    /// Removes the name's file and syncs the directory.
    fn clear(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match self.vfs.remove_file(&self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        self.vfs.sync_dir(&self.dir)
    }
}

/// Crash safety on the simulated disk: power cuts at every operation of a save,
/// every way a crash may treat unsynced writes, and a failing fsync.
#[cfg(test)]
mod tests {
    use super::super::sim::{Crash, SimFs};
    use super::*;

    const HOW: [Crash; 4] = [
        Crash::DropUnsynced,
        Crash::KeepPrefix,
        Crash::KeepRandomPages,
        Crash::ZeroUnsynced,
    ];

    fn dir() -> &'static Path {
        Path::new("/store/checkpoints")
    }

    fn reopen(fs: &SimFs, how: Crash, seed: u64) -> FileCheckpoints {
        FileCheckpoints::open_in(Arc::new(fs.crash(how, seed)), dir()).unwrap()
    }

    /// A disk on which "a" holds `Position(1)` (or nothing), durably.
    fn disk(with_old: bool) -> (SimFs, FileCheckpoints) {
        let fs = SimFs::new();
        let cp = FileCheckpoints::open_in(Arc::new(fs.clone()), dir()).unwrap();
        if with_old {
            cp.save("a", Position(1)).unwrap();
        }
        (fs, cp)
    }

    #[test]
    fn a_crash_anywhere_in_a_save_leaves_the_old_or_the_new_checkpoint() {
        for with_old in [true, false] {
            let old = with_old.then_some(Position(1));
            let mut cut = 0;
            loop {
                let (fs, cp) = disk(with_old);
                fs.power_cut_at(fs.ops() + cut);
                let saved = cp.save("a", Position(2));
                for how in HOW {
                    // Miri is slow: one seed per crash mode there.
                    for seed in 0..if cfg!(miri) { 1 } else { 8 } {
                        let after = reopen(&fs, how, seed);
                        let found = after.load("a").unwrap();
                        if saved.is_ok() {
                            assert_eq!(
                                found,
                                Some(Position(2)),
                                "acknowledged, then lost ({how:?})"
                            );
                        } else {
                            assert!(
                                found == old || found == Some(Position(2)),
                                "cut at op {cut}, {how:?}: found {found:?}"
                            );
                        }
                        // The restarted store works, and left no temporary file.
                        after.save("a", Position(3)).unwrap();
                        assert_eq!(after.load("a").unwrap(), Some(Position(3)));
                        let names = after.vfs.list(dir()).unwrap();
                        assert!(names.iter().all(|n| !is_temp(n)), "{names:?}");
                    }
                }
                if saved.is_ok() {
                    break;
                }
                cut += 1;
            }
            assert!(
                cut >= 4,
                "a save is at least create, write, sync, rename, sync dir"
            );
        }
    }

    #[test]
    fn a_crash_anywhere_in_a_clear_leaves_the_old_checkpoint_or_none() {
        let mut cut = 0;
        loop {
            let (fs, cp) = disk(true);
            fs.power_cut_at(fs.ops() + cut);
            let cleared = cp.clear("a");
            for how in HOW {
                for seed in 0..if cfg!(miri) { 1 } else { 4 } {
                    let after = reopen(&fs, how, seed);
                    let found = after.load("a").unwrap();
                    if cleared.is_ok() {
                        assert_eq!(found, None, "cleared, then back ({how:?})");
                    } else {
                        assert!(
                            found.is_none() || found == Some(Position(1)),
                            "cut at op {cut}, {how:?}: found {found:?}"
                        );
                    }
                }
            }
            if cleared.is_ok() {
                break;
            }
            cut += 1;
        }
        assert!(cut >= 2, "a clear is remove, sync dir");
        // Clearing what is not there is fine; so is saving after a clear.
        let (_fs, cp) = disk(false);
        cp.clear("a").unwrap();
        cp.save("a", Position(7)).unwrap();
        cp.clear("a").unwrap();
        assert_eq!(cp.load("a").unwrap(), None);
        assert_eq!(
            cp.clear("../a").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn the_first_open_makes_the_directory_durable() {
        let fs = SimFs::new();
        let cp = FileCheckpoints::open_in(Arc::new(fs.clone()), dir()).unwrap();
        cp.save("a", Position(5)).unwrap();
        for how in HOW {
            assert_eq!(reopen(&fs, how, 1).load("a").unwrap(), Some(Position(5)));
        }
    }

    #[test]
    fn a_failed_fsync_fails_the_save_and_keeps_the_old_checkpoint() {
        let (fs, cp) = disk(true);
        fs.fail_sync_at(0);
        let err = cp.save("a", Position(2)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "EIO, passed on: {err}");
        assert_eq!(cp.load("a").unwrap(), Some(Position(1)));
        for how in HOW {
            assert_eq!(reopen(&fs, how, 3).load("a").unwrap(), Some(Position(1)));
        }
        // Later saves go through.
        cp.save("a", Position(4)).unwrap();
        assert_eq!(
            reopen(&fs, Crash::DropUnsynced, 0).load("a").unwrap(),
            Some(Position(4))
        );
    }

    #[test]
    fn a_short_write_fails_the_save_and_keeps_the_old_checkpoint() {
        let (fs, cp) = disk(true);
        fs.byte_budget(FILE_LEN as u64 + 5);
        assert!(cp.save("a", Position(2)).is_err());
        assert_eq!(cp.load("a").unwrap(), Some(Position(1)));
        let names = cp.vfs.list(dir()).unwrap();
        assert_eq!(
            names,
            vec!["a.ckpt".to_owned()],
            "the temporary file is removed"
        );
    }
}
