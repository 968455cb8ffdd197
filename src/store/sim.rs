//! A simulated file system that loses what a real one may lose at a power cut.
//!
//! `SimFs` keeps, for every file, the bytes a reader sees now and the bytes that
//! are durable (written before a successful `sync_data`), plus the writes since
//! that sync in order; and, for every directory entry (files and directories), the
//! entry as it is now and as it is durable (after `sync_dir` of its parent).
//! [`SimFs::crash`] builds the disk a restart would find:
//!
//! * only durable directory entries exist — a file created or renamed without a
//!   directory sync is gone or back under its old name;
//! * each file's contents are its durable bytes plus, per [`Crash`], none of the
//!   unsynced writes, a prefix of them in order (cut at a 512-byte boundary), a
//!   random subset of the 4 KiB pages they touched (the disk reordered them), or
//!   those pages zero-filled (allocated, never written).
//!
//! Faults: a power cut at the n-th mutating operation (that operation and every
//! later one fail with `EIO` and change nothing), `EIO` from the n-th
//! `sync_data` (the writes it should have made durable are then lost for good,
//! as Linux may drop the dirty pages — a later sync that "succeeds" does not
//! bring them back), and `ENOSPC` once the files hold more than a byte budget (a
//! write is then applied up to the budget, as a short write would be).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{OpenMode, Vfs, VfsFile, VfsLock};

/// What a crash keeps of the writes that were not synced.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Crash {
    /// Nothing: each file is exactly its durable bytes.
    DropUnsynced,
    /// The unsynced writes in order up to a random point, the last one cut at a
    /// 512-byte boundary.
    KeepPrefix,
    /// A random subset of the 4 KiB pages the unsynced writes touched.
    KeepRandomPages,
    /// The file keeps its new length, but the bytes unsynced writes wrote read
    /// as zeros (allocated, never written); durable bytes they did not overwrite
    /// stay.
    ZeroUnsynced,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What a reader sees.
    data: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    unsynced: Vec<Op>,
    /// Byte ranges whose sync failed: lost even if a later sync succeeds.
    lost: Vec<(u64, u64)>,
}

impl Inode {
    fn apply(data: &mut Vec<u8>, op: &Op) {
        match op {
            Op::Write(off, bytes) => {
                let end = *off as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[*off as usize..end].copy_from_slice(bytes);
            }
            Op::SetLen(len) => data.resize(*len as usize, 0),
        }
    }

    /// After a successful sync: durable = data, except ranges lost earlier.
    fn sync(&mut self) {
        let mut durable = self.data.clone();
        for &(start, end) in &self.lost {
            for i in start..end.min(durable.len() as u64) {
                durable[i as usize] = self.durable.get(i as usize).copied().unwrap_or(0);
            }
        }
        self.durable = durable;
        self.unsynced.clear();
    }

    /// The 4 KiB pages the unsynced writes touched.
    fn dirty_pages(&self) -> Vec<u64> {
        let mut pages = HashSet::new();
        for op in &self.unsynced {
            let (start, end) = match op {
                Op::Write(off, b) => (*off, off + b.len() as u64),
                Op::SetLen(len) => {
                    let old = self.durable.len() as u64;
                    (old.min(*len), old.max(*len))
                }
            };
            let mut p = start / PAGE;
            while p * PAGE < end {
                pages.insert(p);
                p += 1;
            }
        }
        let mut v: Vec<u64> = pages.into_iter().collect();
        v.sort_unstable();
        v
    }

    fn after_crash(&self, how: Crash, rng: &mut Rng) -> Vec<u8> {
        match how {
            Crash::DropUnsynced => self.durable.clone(),
            Crash::KeepPrefix => {
                let mut data = self.durable.clone();
                let keep = rng.below(self.unsynced.len() as u64 + 1) as usize;
                for (i, op) in self.unsynced.iter().enumerate().take(keep) {
                    if i + 1 == keep {
                        if let Op::Write(off, bytes) = op {
                            // The last kept write reached the disk up to a sector
                            // boundary.
                            let end = off + bytes.len() as u64;
                            let cut = (off + rng.below(bytes.len() as u64 + 1)) / SECTOR * SECTOR;
                            let cut = cut.max(*off).min(end);
                            let part = Op::Write(*off, bytes[..(cut - off) as usize].to_vec());
                            Inode::apply(&mut data, &part);
                            continue;
                        }
                    }
                    Inode::apply(&mut data, op);
                }
                data
            }
            Crash::ZeroUnsynced => {
                // The new length, and zeros where unsynced writes went: their
                // blocks were allocated but never written. Bytes that were
                // durable and not overwritten stay (a journaling file system does
                // not zero what it had already written).
                let mut out = self.durable.clone();
                out.resize(self.data.len(), 0);
                for op in &self.unsynced {
                    if let Op::Write(off, bytes) = op {
                        let start = (*off as usize).min(out.len());
                        let end = (*off as usize + bytes.len()).min(out.len());
                        out[start..end].fill(0);
                    }
                }
                out
            }
            Crash::KeepRandomPages => {
                let len = if rng.below(2) == 0 {
                    self.data.len()
                } else {
                    self.durable.len()
                };
                let mut out = self.durable.clone();
                out.resize(len, 0);
                for p in self.dirty_pages() {
                    let start = (p * PAGE) as usize;
                    if start >= len {
                        continue;
                    }
                    let end = ((p + 1) * PAGE).min(len as u64) as usize;
                    if rng.below(2) == 0 {
                        for (i, byte) in out.iter_mut().enumerate().take(end).skip(start) {
                            *byte = self.data.get(i).copied().unwrap_or(0);
                        }
                    }
                }
                out
            }
        }
    }
}

const SECTOR: u64 = 512;
const PAGE: u64 = 4096;

/// Every [`Crash`] mode, for tests that try them all.
pub(crate) const CRASH_MODES: [Crash; 4] = [
    Crash::DropUnsynced,
    Crash::KeepPrefix,
    Crash::KeepRandomPages,
    Crash::ZeroUnsynced,
];

/// How many cases a crash proptest runs: `PROPTEST_CASES` if set, else
/// `default`; 3 under Miri.
pub(crate) fn proptest_cases(default: u32) -> u32 {
    if cfg!(miri) {
        return 3;
    }
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: the crash's choices (and tests' workloads), reproducible from a
/// seed.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    entries: BTreeMap<PathBuf, Entry>,
    durable_entries: BTreeMap<PathBuf, Entry>,
    locks: HashSet<PathBuf>,
    /// Mutating operations so far.
    ops: u64,
    /// `sync_data` calls so far.
    syncs: u64,
    power_cut_at: Option<u64>,
    fail_sync_at: Option<u64>,
    byte_budget: Option<u64>,
}

impl State {
    /// Counts a mutating operation; `Err(EIO)` from the power cut on.
    fn op(&mut self) -> io::Result<()> {
        let n = self.ops;
        self.ops += 1;
        match self.power_cut_at {
            Some(at) if n >= at => Err(io::Error::from_raw_os_error(EIO)),
            _ => Ok(()),
        }
    }

    fn powered(&self) -> io::Result<()> {
        match self.power_cut_at {
            Some(at) if self.ops > at => Err(io::Error::from_raw_os_error(EIO)),
            _ => Ok(()),
        }
    }

    fn used(&self) -> u64 {
        let live: HashSet<u64> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::File(i) => Some(*i),
                Entry::Dir => None,
            })
            .collect();
        live.iter().map(|i| self.inodes[i].data.len() as u64).sum()
    }

    fn parent_is_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if p.as_os_str().is_empty() || self.entries.get(p) == Some(&Entry::Dir) => {
                Ok(())
            }
            None => Ok(()),
            Some(_) => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// The simulated file system (cheap to clone: clones share the disk).
#[derive(Clone)]
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty disk: only the root directory `/`, durable.
    pub(crate) fn new() -> Self {
        let mut s = State::default();
        s.entries.insert(PathBuf::from("/"), Entry::Dir);
        s.durable_entries.insert(PathBuf::from("/"), Entry::Dir);
        SimFs {
            state: Arc::new(Mutex::new(s)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutating operations so far (to pick a power-cut point).
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The `n`-th mutating operation (0-based) and every later one fail with
    /// `EIO` and have no effect.
    pub(crate) fn power_cut_at(&self, n: u64) {
        self.lock().power_cut_at = Some(n);
    }

    /// The `n`-th `sync_data` (0-based, counted from now on) fails with `EIO`; the
    /// writes it covered are lost for good.
    pub(crate) fn fail_sync_at(&self, n: u64) {
        let mut s = self.lock();
        s.fail_sync_at = Some(s.syncs + n);
    }

    /// Writes fail with `ENOSPC` once the files would hold more than `bytes`.
    pub(crate) fn byte_budget(&self, bytes: u64) {
        self.lock().byte_budget = Some(bytes);
    }

    /// The disk a restart finds after a power cut now: durable entries only, each
    /// file's contents per `how` (choices drawn from `seed`). The result shares
    /// nothing with `self`; open handles of `self` do not see it.
    pub(crate) fn crash(&self, how: Crash, seed: u64) -> SimFs {
        let s = self.lock();
        let mut rng = Rng::new(seed);
        let mut out = State::default();
        // BTreeMap order: a directory before its entries.
        for (path, entry) in &s.durable_entries {
            // An entry of a directory that is itself gone is gone.
            if path
                .parent()
                .is_some_and(|d| out.entries.get(d) != Some(&Entry::Dir))
            {
                continue;
            }
            let entry = match entry {
                Entry::Dir => Entry::Dir,
                Entry::File(ino) => {
                    let data = s.inodes[ino].after_crash(how, &mut rng);
                    let new = out.next_inode;
                    out.next_inode += 1;
                    out.inodes.insert(
                        new,
                        Inode {
                            durable: data.clone(),
                            data,
                            ..Inode::default()
                        },
                    );
                    Entry::File(new)
                }
            };
            out.entries.insert(path.clone(), entry.clone());
            out.durable_entries.insert(path.clone(), entry);
        }
        SimFs {
            state: Arc::new(Mutex::new(out)),
        }
    }

    /// The bytes of `path` as a reader sees them now (tests).
    pub(crate) fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        match s.entries.get(path)? {
            Entry::File(ino) => Some(s.inodes[ino].data.clone()),
            Entry::Dir => None,
        }
    }
}

struct SimFile {
    fs: SimFs,
    ino: u64,
    writable: bool,
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.fs.lock();
        s.powered()?;
        let data = &s.inodes[&self.ino].data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let mut s = self.fs.lock();
        s.op()?;
        let mut bytes = buf.to_vec();
        let mut full = false;
        if let Some(budget) = s.byte_budget {
            let len = s.inodes[&self.ino].data.len() as u64;
            let grow = (offset + bytes.len() as u64).saturating_sub(len);
            let room = budget.saturating_sub(s.used());
            if grow > room {
                // A short write up to the budget, then ENOSPC.
                let keep = (len + room).saturating_sub(offset).min(bytes.len() as u64);
                bytes.truncate(keep as usize);
                full = true;
            }
        }
        let inode = s
            .inodes
            .get_mut(&self.ino)
            .expect("open file without inode");
        if !bytes.is_empty() {
            let op = Op::Write(offset, bytes);
            Inode::apply(&mut inode.data, &op);
            inode.unsynced.push(op);
        }
        if full {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.lock();
        s.powered()?;
        Ok(s.inodes[&self.ino].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let mut s = self.fs.lock();
        s.op()?;
        if let Some(budget) = s.byte_budget {
            let cur = s.inodes[&self.ino].data.len() as u64;
            if len > cur && len - cur > budget.saturating_sub(s.used()) {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
        }
        let inode = s
            .inodes
            .get_mut(&self.ino)
            .expect("open file without inode");
        let op = Op::SetLen(len);
        Inode::apply(&mut inode.data, &op);
        inode.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.op()?;
        let n = s.syncs;
        s.syncs += 1;
        let fail = s.fail_sync_at == Some(n);
        let inode = s
            .inodes
            .get_mut(&self.ino)
            .expect("open file without inode");
        if fail {
            // fsyncgate: the kernel reports the error once and forgets the dirty
            // pages; their bytes never reach the disk.
            for op in inode.unsynced.drain(..) {
                if let Op::Write(off, b) = op {
                    inode.lost.push((off, off + b.len() as u64));
                }
            }
            return Err(io::Error::from_raw_os_error(EIO));
        }
        inode.sync();
        Ok(())
    }
}

struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl VfsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut s = self.lock();
        let existing = s.entries.get(path).cloned();
        let ino = match (existing, mode) {
            (Some(Entry::Dir), _) => return Err(io::ErrorKind::IsADirectory.into()),
            (Some(_), OpenMode::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Some(Entry::File(ino)), _) => {
                s.powered()?;
                ino
            }
            (None, OpenMode::Read | OpenMode::ReadWrite) => {
                s.powered()?;
                return Err(io::ErrorKind::NotFound.into());
            }
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                s.parent_is_dir(path)?;
                s.op()?;
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                s.entries.insert(path.to_owned(), Entry::File(ino));
                ino
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let mut missing = Vec::new();
        let mut p = Some(path);
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            match s.entries.get(dir) {
                Some(Entry::Dir) => break,
                Some(Entry::File(_)) => return Err(io::ErrorKind::AlreadyExists.into()),
                None => missing.push(dir.to_owned()),
            }
            p = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            s.op()?;
            s.entries.insert(dir, Entry::Dir);
        }
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.powered()?;
        if s.entries.get(path) != Some(&Entry::Dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(s.entries
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().entries.contains_key(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.parent_is_dir(to)?;
        let Some(entry) = s.entries.get(from).cloned() else {
            s.powered()?;
            return Err(io::ErrorKind::NotFound.into());
        };
        if entry == Entry::Dir {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        s.op()?;
        s.entries.remove(from);
        s.entries.insert(to.to_owned(), entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        match s.entries.get(path) {
            Some(Entry::File(_)) => {
                s.op()?;
                s.entries.remove(path);
                Ok(())
            }
            Some(Entry::Dir) => Err(io::ErrorKind::IsADirectory.into()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.entries.get(path) != Some(&Entry::Dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        s.op()?;
        let now: Vec<(PathBuf, Entry)> = s
            .entries
            .iter()
            .filter(|(p, _)| p.parent() == Some(path))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        s.durable_entries.retain(|p, _| p.parent() != Some(path));
        s.durable_entries.extend(now);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn VfsLock>>> {
        let mut s = self.lock();
        s.powered()?;
        if !s.locks.insert(path.to_owned()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_owned(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A disk with `/d` durable and file `/d/f`, durable entry, written `data`.
    fn disk_with_file(data: &[u8], sync_data: bool) -> (SimFs, Arc<dyn VfsFile>) {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap_or(());
        let f = fs.open(&p("/d/f"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_all_at(data, 0).unwrap();
        if sync_data {
            f.sync_data().unwrap();
        }
        (fs, f)
    }

    #[test]
    fn a_file_without_a_directory_sync_is_gone_after_a_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let f = fs.open(&p("/d/f"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        // `/d` itself was never made durable in `/`: nothing survives.
        let after = fs.crash(Crash::DropUnsynced, 1);
        assert!(!after.exists(&p("/d/f")));
        assert!(!after.exists(&p("/d")));
    }

    #[test]
    fn synced_data_and_entries_survive_and_unsynced_data_does_not() {
        let (fs, f) = disk_with_file(b"hello", true);
        f.write_all_at(b" world", 5).unwrap();
        assert_eq!(fs.read(&p("/d/f")).unwrap(), b"hello world");
        let after = fs.crash(Crash::DropUnsynced, 1);
        assert_eq!(after.read(&p("/d/f")).unwrap(), b"hello");
    }

    #[test]
    fn renames_are_durable_only_after_the_directory_sync() {
        let (fs, _f) = disk_with_file(b"x", true);
        fs.rename(&p("/d/f"), &p("/d/g")).unwrap();
        let after = fs.crash(Crash::DropUnsynced, 1);
        assert!(after.exists(&p("/d/f")) && !after.exists(&p("/d/g")));
        fs.sync_dir(&p("/d")).unwrap();
        let after = fs.crash(Crash::DropUnsynced, 1);
        assert!(!after.exists(&p("/d/f")) && after.exists(&p("/d/g")));
    }

    #[test]
    fn crash_modes_keep_what_they_say() {
        let (fs, f) = disk_with_file(&[1u8; 8192], true);
        f.write_all_at(&[2u8; 8192], 0).unwrap();
        f.write_all_at(&[3u8; 4096], 8192).unwrap();
        let mut seen_prefix_lengths = HashSet::new();
        let mut seen_mixed = false;
        // Miri is slow: fewer draws there.
        for seed in 0..if cfg!(miri) { 12 } else { 200 } {
            let prefix = fs.crash(Crash::KeepPrefix, seed).read(&p("/d/f")).unwrap();
            // A prefix: the 2s form a contiguous run from 0 at a sector boundary,
            // 3s only if all 2s are there.
            let twos = prefix.iter().take_while(|&&b| b == 2).count();
            assert_eq!(twos % 512, 0);
            assert!(prefix[twos..8192.min(prefix.len())].iter().all(|&b| b == 1));
            if prefix.len() > 8192 {
                assert_eq!(twos, 8192);
            }
            seen_prefix_lengths.insert(twos);

            let pages = fs
                .crash(Crash::KeepRandomPages, seed)
                .read(&p("/d/f"))
                .unwrap();
            for page in pages.chunks(4096) {
                assert!(page.iter().all(|&b| b == page[0]), "a page is torn");
            }
            seen_mixed |= pages[0] != pages[4096];

            let zeros = fs
                .crash(Crash::ZeroUnsynced, seed)
                .read(&p("/d/f"))
                .unwrap();
            assert_eq!(zeros, vec![0u8; 12288]);
        }
        assert!(seen_prefix_lengths.len() > 3, "{seen_prefix_lengths:?}");
        assert!(seen_mixed, "random pages never reordered");
    }

    #[test]
    fn a_failed_sync_loses_its_writes_for_good() {
        let (fs, f) = disk_with_file(b"aaaa", true);
        fs.fail_sync_at(0);
        f.write_all_at(b"bbbb", 0).unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        // A retried sync "succeeds" but the lost bytes are not on the disk.
        f.sync_data().unwrap();
        assert_eq!(
            fs.crash(Crash::DropUnsynced, 1).read(&p("/d/f")).unwrap(),
            b"aaaa"
        );
    }

    #[test]
    fn a_power_cut_fails_every_later_operation_and_changes_nothing() {
        let (fs, f) = disk_with_file(b"aaaa", true);
        fs.power_cut_at(fs.ops());
        assert!(f.write_all_at(b"b", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.open(&p("/d/new"), OpenMode::CreateNew).is_err());
        assert!(!fs.exists(&p("/d/new")));
        assert_eq!(fs.read(&p("/d/f")).unwrap(), b"aaaa");
        // The crashed disk is powered again.
        let after = fs.crash(Crash::KeepPrefix, 3);
        let g = after.open(&p("/d/f"), OpenMode::ReadWrite).unwrap();
        g.write_all_at(b"c", 4).unwrap();
        assert_eq!(after.read(&p("/d/f")).unwrap(), b"aaaac");
    }

    #[test]
    fn enospc_is_a_short_write_then_an_error() {
        let (fs, f) = disk_with_file(b"", true);
        fs.byte_budget(10);
        f.write_all_at(b"12345678", 0).unwrap();
        let e = f.write_all_at(b"abcdef", 8).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        assert_eq!(fs.read(&p("/d/f")).unwrap(), b"12345678ab");
        assert!(f.set_len(100).is_err());
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let fs = SimFs::new();
        let a = fs.try_lock(&p("/LOCK")).unwrap();
        assert!(a.is_some());
        assert!(fs.try_lock(&p("/LOCK")).unwrap().is_none());
        drop(a);
        assert!(fs.try_lock(&p("/LOCK")).unwrap().is_some());
    }
}
