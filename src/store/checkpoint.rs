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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for &T {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
    }
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for Box<T> {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
    }
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for Arc<T> {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        (**self).load(name)
    }
    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        (**self).save(name, position)
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

fn decode(bytes: &[u8], path: &Path) -> io::Result<Position> {
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("damaged checkpoint file {}: {why}", path.display()),
        )
    };
    if bytes.len() != FILE_LEN {
        return Err(bad(format!("{} byte(s), expected {FILE_LEN}", bytes.len())));
    }
    if bytes[..4] != MAGIC {
        return Err(bad("not a checkpoint file (bad magic)".into()));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(bad(format!("unsupported format version {}", bytes[4])));
    }
    let stored = u32::from_le_bytes([bytes[13], bytes[14], bytes[15], bytes[16]]);
    let computed = crc32c::crc32c(&bytes[..13]);
    if stored != computed {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&bytes[5..13]);
    Ok(Position(u64::from_le_bytes(p)))
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
/// retried). Concurrent saves are safe
/// (each has its own temporary file; the last rename wins); one process should
/// own a directory.
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
#[derive(Debug)]
pub struct FileCheckpoints {
    dir: PathBuf,
    /// The directory, open for fsync after a rename.
    #[cfg(unix)]
    dir_handle: File,
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
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            // The new directory's entry must be durable before files in it are.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && entry.file_type()?.is_file()
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(FileCheckpoints {
            #[cfg(unix)]
            dir_handle: File::open(&dir)?,
            dir,
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

    fn sync_dir(&self) -> io::Result<()> {
        #[cfg(unix)]
        {
            self.dir_handle.sync_all()
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }
}

/// Fsyncs a directory (on Unix; elsewhere directories cannot be opened for it and
/// renames are made durable by the file system).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl CheckpointStore for FileCheckpoints {
    fn load(&self, name: &str) -> io::Result<Option<Position>> {
        check_name(name)?;
        let path = self.path(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // One byte more than a checkpoint: enough to tell a longer file.
        let mut bytes = Vec::with_capacity(FILE_LEN + 1);
        file.take(FILE_LEN as u64 + 1).read_to_end(&mut bytes)?;
        decode(&bytes, &path).map(Some)
    }

    fn save(&self, name: &str, position: Position) -> io::Result<()> {
        check_name(name)?;
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{name}.{}-{seq}{TEMP_SUFFIX}", std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(&encode(position))?;
            f.sync_all()?;
            fs::rename(&temp, self.path(name))
        })();
        if let Err(e) = written {
            // The old checkpoint is intact; the temporary file is garbage.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        self.sync_dir()
    }
}
