//! Checkpoint stores (issue 11, A3): round trips, names, damaged files, crash
//! leftovers, for `FileCheckpoints` and `InMemoryCheckpoints` alike.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringbus::store::checkpoint::{
    CheckpointStore, FileCheckpoints, InMemoryCheckpoints, MAX_NAME_LEN,
};
use ringbus::store::Position;

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringbus-checkpoints-{}-{test}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What every checkpoint store promises, run against each.
fn round_trips(store: &dyn CheckpointStore) {
    assert_eq!(store.load("orders").unwrap(), None);
    store.save("orders", Position(41)).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(41)));
    // Overwrite, upwards and downwards (a rebuild resets).
    store.save("orders", Position(1_000_000)).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(1_000_000)));
    store.save("orders", Position(0)).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(0)));
    // Names are independent; the extremes survive.
    store.save("billing.v2", Position(u64::MAX)).unwrap();
    store.save("A-b_c", Position(7)).unwrap();
    assert_eq!(store.load("billing.v2").unwrap(), Some(Position(u64::MAX)));
    assert_eq!(store.load("A-b_c").unwrap(), Some(Position(7)));
    assert_eq!(
        store.load("a-b_c").unwrap(),
        None,
        "names are case-sensitive"
    );
    assert_eq!(store.load("orders").unwrap(), Some(Position(0)));
    assert_eq!(store.load("billing").unwrap(), None);
}

const BAD_NAMES: &[&str] = &[
    "",
    ".",
    "..",
    "../escape",
    "a/b",
    "/abs",
    "a\\b",
    "..\\escape",
    ".hidden",
    ".orders.1-0.tmp",
    "a b",
    "a\0b",
    "a\nb",
    "caf\u{e9}",
    "a:b",
    "a*",
];

fn rejects_bad_names(store: &dyn CheckpointStore) {
    let too_long = "x".repeat(MAX_NAME_LEN + 1);
    let longest = "x".repeat(MAX_NAME_LEN);
    for name in BAD_NAMES.iter().copied().chain([too_long.as_str()]) {
        let err = store.save(name, Position(1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "save {name:?}: {err}");
        let err = store.load(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "load {name:?}: {err}");
    }
    store.save(&longest, Position(2)).unwrap();
    assert_eq!(store.load(&longest).unwrap(), Some(Position(2)));
}

#[test]
fn in_memory_round_trips_and_rejects_bad_names() {
    let store = InMemoryCheckpoints::new();
    round_trips(&store);
    rejects_bad_names(&store);
}

#[test]
fn files_round_trip_and_survive_reopening() {
    let dir = TempDir::new("round-trip");
    let store = FileCheckpoints::open(dir.path()).unwrap();
    round_trips(&store);
    drop(store);
    let store = FileCheckpoints::open(dir.path()).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(0)));
    assert_eq!(store.load("billing.v2").unwrap(), Some(Position(u64::MAX)));
    assert_eq!(
        entries(dir.path()),
        ["A-b_c.ckpt", "billing.v2.ckpt", "orders.ckpt"]
            .map(String::from)
            .into(),
        "one file per name, no temporary file left"
    );
}

#[test]
fn open_creates_missing_directories() {
    let dir = TempDir::new("nested");
    let nested = dir.path().join("store").join("checkpoints");
    let store = FileCheckpoints::open(&nested).unwrap();
    assert_eq!(store.dir(), nested);
    store.save("x", Position(3)).unwrap();
    assert!(nested.join("x.ckpt").is_file());
}

#[test]
fn files_reject_bad_names_and_write_nothing_outside() {
    let dir = TempDir::new("names");
    let inner = dir.path().join("checkpoints");
    let store = FileCheckpoints::open(&inner).unwrap();
    rejects_bad_names(&store);
    assert_eq!(
        entries(dir.path()),
        ["checkpoints".to_owned()].into(),
        "nothing beside the directory"
    );
    let longest = format!("{}.ckpt", "x".repeat(MAX_NAME_LEN));
    assert_eq!(entries(&inner), [longest].into());
}

#[test]
fn a_damaged_file_is_invalid_data_never_a_position() {
    let dir = TempDir::new("damaged");
    let store = FileCheckpoints::open(dir.path()).unwrap();
    store
        .save("orders", Position(0x0123_4567_89ab_cdef))
        .unwrap();
    let file = dir.path().join("orders.ckpt");
    let good = fs::read(&file).unwrap();

    let check = |bytes: &[u8], what: &str| {
        fs::write(&file, bytes).unwrap();
        let err = store.load("orders").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
        assert!(err.to_string().contains("orders.ckpt"), "{what}: {err}");
    };
    // Every truncation, including an empty file.
    for len in 0..good.len() {
        check(&good[..len], &format!("cut to {len} bytes"));
    }
    // Every single bit flipped.
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        check(&bad, &format!("bit {i} flipped"));
    }
    // Too long, and something else entirely.
    check(&[good.as_slice(), b"\n"].concat(), "a byte appended");
    check(b"12345\n", "a text file");
    check(&[0u8; 4096], "zeros");

    // Saving again repairs it.
    store.save("orders", Position(5)).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(5)));
}

#[test]
fn a_temporary_file_left_by_a_crash_is_ignored_and_cleaned_up() {
    let dir = TempDir::new("crash");
    let store = FileCheckpoints::open(dir.path()).unwrap();
    store.save("orders", Position(10)).unwrap();
    let good = fs::read(dir.path().join("orders.ckpt")).unwrap();
    // A crash between writing the temporary file and renaming it: complete,
    // torn, or empty (created, never written).
    store.save("shadow", Position(99)).unwrap();
    let newer = fs::read(dir.path().join("shadow.ckpt")).unwrap();
    fs::write(dir.path().join(".orders.4242-0.tmp"), &newer).unwrap();
    fs::write(dir.path().join(".orders.4242-1.tmp"), &good[..5]).unwrap();
    fs::write(dir.path().join(".fresh.4242-2.tmp"), b"").unwrap();

    // Until the next open, the leftovers are simply not read.
    assert_eq!(store.load("orders").unwrap(), Some(Position(10)));
    assert_eq!(store.load("fresh").unwrap(), None);
    store.save("orders", Position(11)).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(11)));
    drop(store);

    let store = FileCheckpoints::open(dir.path()).unwrap();
    assert_eq!(store.load("orders").unwrap(), Some(Position(11)));
    assert_eq!(store.load("fresh").unwrap(), None);
    assert_eq!(
        entries(dir.path()),
        ["orders.ckpt", "shadow.ckpt"].map(String::from).into(),
        "open removed the temporary files"
    );
}

#[test]
fn concurrent_saves_never_tear_a_checkpoint() {
    let dir = TempDir::new("concurrent");
    let store = Arc::new(FileCheckpoints::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    store.save(&format!("own-{t}"), Position(i)).unwrap();
                    store.save("shared", Position(t * 1000 + i)).unwrap();
                    // Whatever another thread wrote last, it is a whole value.
                    let seen = store.load("shared").unwrap().unwrap().0;
                    assert!(seen % 1000 < 50 && seen / 1000 < 4, "torn value {seen}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4 {
        assert_eq!(store.load(&format!("own-{t}")).unwrap(), Some(Position(49)));
    }
    let last = store.load("shared").unwrap().unwrap().0;
    assert_eq!(last % 1000, 49, "the last save of some thread wins");
    assert!(
        entries(dir.path()).iter().all(|n| n.ends_with(".ckpt")),
        "no temporary file left: {:?}",
        entries(dir.path())
    );
}

#[test]
fn a_vanished_directory_is_an_error_not_a_panic() {
    let dir = TempDir::new("vanished");
    let store = FileCheckpoints::open(dir.path()).unwrap();
    store.save("orders", Position(1)).unwrap();
    fs::remove_dir_all(dir.path()).unwrap();
    assert_eq!(store.load("orders").unwrap(), None);
    let err = store.save("orders", Position(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn shared_handles_are_checkpoint_stores_too() {
    fn uses(store: impl CheckpointStore) {
        store.save("via-handle", Position(8)).unwrap();
    }
    let memory = Arc::new(InMemoryCheckpoints::new());
    uses(Arc::clone(&memory));
    uses(&*memory);
    let boxed: Box<dyn CheckpointStore> = Box::new(InMemoryCheckpoints::new());
    uses(&boxed);
    assert_eq!(boxed.load("via-handle").unwrap(), Some(Position(8)));
    assert_eq!(memory.load("via-handle").unwrap(), Some(Position(8)));
}
