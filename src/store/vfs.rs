//! The file system as the durable store sees it: the few operations it needs,
//! behind a trait, so that tests can run it on a simulated disk that loses
//! unsynced data at a crash (`sim::SimFs`) and on the real one (`StdFs`).
//!
//! The operations are the ones whose durability rules the store relies on:
//! positional writes and reads, `set_len` (preallocation, truncation of a torn
//! tail), `sync_data` (fdatasync: the data and the size), directory entries
//! (create, rename, remove) that are durable only after the directory is synced
//! (`sync_dir`), and an advisory lock on a file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, read and write.
    ReadWrite,
    /// A new file (error if it exists), read and write.
    CreateNew,
    /// Created if missing, read and write, contents kept.
    Create,
}

/// An open file.
pub(crate) trait VfsFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset` (growing the file if needed).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fdatasync: the data written so far, and the length, are durable.
    fn sync_data(&self) -> io::Result<()>;

    /// Where the file's last region of data ends: every byte from there to
    /// [`len`](VfsFile::len) is a hole and reads as zero. The default (and
    /// where the file system cannot tell) is the length.
    fn data_end(&self) -> io::Result<u64> {
        self.len()
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A held lock; released when dropped.
pub(crate) trait VfsLock: Send + Sync + 'static {}

/// The file system.
pub(crate) trait Vfs: Send + Sync + 'static {
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// Creates `path` and its parents (durable once each parent is synced).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of directory `path`, sorted.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Renames `from` to `to`, replacing `to` (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path` (durable after `sync_dir`).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing), or
    /// `Ok(None)` if someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn VfsLock>>>;
}

/// The real file system (`std::fs`).
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct StdFs;

struct StdFile(File);

impl VfsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        pread(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        pwrite_all(&self.0, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    /// `lseek(SEEK_DATA / SEEK_HOLE)` over the file: a preallocated segment
    /// (`set_len`) is a hole after its frames, which open then need not read.
    /// The `unsafe` is the foreign call, like the coarse clock's in
    /// `event/id.rs`: the crate's only two outside the ring.
    #[cfg(all(target_os = "linux", not(miri)))]
    #[allow(unsafe_code)]
    fn data_end(&self) -> io::Result<u64> {
        use std::os::fd::AsRawFd;
        let len = self.len()?;
        let fd = self.0.as_raw_fd();
        let (mut at, mut end) = (0_i64, 0_u64);
        while end < len {
            // SAFETY: `lseek` on a descriptor this `File` owns and keeps open
            // for the call; no memory is handed over. The file position it
            // moves is never used (all I/O here is positional).
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            if data < 0 {
                return match io::Error::last_os_error().raw_os_error() {
                    // No data at or after `at`: the rest is a hole.
                    Some(libc::ENXIO) => Ok(end),
                    // SEEK_DATA not supported here: assume data throughout.
                    _ => Ok(len),
                };
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            if hole < 0 {
                return Ok(len);
            }
            end = hole as u64;
            at = hole;
        }
        Ok(end.min(len))
    }
}

#[cfg(unix)]
fn pread(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(unix)]
fn pwrite_all(f: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, offset)
}

#[cfg(windows)]
fn pread(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

#[cfg(windows)]
fn pwrite_all(f: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(f, buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

struct StdLock(#[allow(dead_code)] File);

impl VfsLock for StdLock {}

impl Drop for StdLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Vfs for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::Create => o.read(true).write(true).create(true).truncate(false),
        };
        Ok(Arc::new(StdFile(o.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    #[cfg(unix)]
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    /// Windows cannot open a directory as a file to sync it; NTFS journals its
    /// directory entries.
    #[cfg(not(unix))]
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn VfsLock>>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Box::new(StdLock(f)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Creates `dir` and its missing parents, each entry made durable by a sync of
/// its parent directory (top down: a directory's entry is durable before anything
/// inside it is).
pub(crate) fn create_dir_durably(vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !vfs.exists(d)) {
        missing.push(d);
        p = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    vfs.create_dir_all(dir)?;
    for d in missing.into_iter().rev() {
        let parent = d
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        vfs.sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data_end` never cuts data: everything past it reads as zero. On a
    /// file system with holes (ext4, tmpfs, xfs), a file extended by
    /// `set_len` ends its data well before its length.
    #[test]
    #[cfg_attr(miri, ignore = "real files")]
    fn data_end_covers_every_written_byte() {
        let dir = std::env::temp_dir().join(format!("ringbus-vfs-data-end-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        StdFs.create_dir_all(&dir).unwrap();
        let f = StdFs.open(&dir.join("f"), OpenMode::CreateNew).unwrap();
        f.write_all_at(&[7u8; 5000], 0).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[9u8; 10], 3 << 20).unwrap();
        let end = f.data_end().unwrap();
        assert!(((3 << 20) + 10..=8 << 20).contains(&end), "{end}");
        let mut rest = vec![1u8; (f.len().unwrap() - end) as usize];
        f.read_exact_at(&mut rest, end).unwrap();
        assert!(rest.iter().all(|&b| b == 0));
        eprintln!("data ends at {end} of {} bytes", 8 << 20);
        drop(f);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn std_fs_does_what_the_trait_says() {
        let dir = std::env::temp_dir().join(format!("ringbus-vfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fs = StdFs;
        fs.create_dir_all(&dir.join("log")).unwrap();
        let p = dir.join("log").join("a");
        let f = fs.open(&p, OpenMode::CreateNew).unwrap();
        assert!(fs.open(&p, OpenMode::CreateNew).is_err());
        f.write_all_at(b"hello", 3).unwrap();
        assert_eq!(f.len().unwrap(), 8);
        let mut buf = [9u8; 8];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"\0\0\0hello");
        assert_eq!(f.read_at(&mut buf, 8).unwrap(), 0);
        assert!(f.read_exact_at(&mut buf, 4).is_err());
        f.set_len(4).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 4);
        fs.rename(&p, &dir.join("log").join("b")).unwrap();
        fs.sync_dir(&dir.join("log")).unwrap();
        assert_eq!(fs.list(&dir.join("log")).unwrap(), vec!["b".to_owned()]);
        assert!(!fs.exists(&p));
        let lock = fs.try_lock(&dir.join("LOCK")).unwrap();
        assert!(lock.is_some());
        assert!(fs.try_lock(&dir.join("LOCK")).unwrap().is_none());
        drop(lock);
        assert!(fs.try_lock(&dir.join("LOCK")).unwrap().is_some());
        fs.remove_file(&dir.join("log").join("b")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
