//! Snapshot storage through the public API: the same behaviour from
//! `InMemorySnapshots` and `FileSnapshots`, and, for `FileSnapshots` on the real
//! file system, restarts, damaged bytes, compaction and concurrent use. (Crash
//! safety at every I/O operation is proven on a simulated disk, in the unit
//! tests of `src/store/snapshot/file.rs`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ringbus::store::snapshot::{FileSnapshots, InMemorySnapshots, Snapshot, SnapshotStore};
use ringbus::store::StreamId;
use serde::{Deserialize, Serialize};

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "ringbus-store-snapshots-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
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

fn id(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn raw(stream: &StreamId, version: u64, schema_version: u32, payload: Vec<u8>) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version,
        payload,
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    total_cents: u64,
}

/// What every `SnapshotStore` does.
fn behaves(store: &dyn SnapshotStore) {
    let cart = id("cart-1");
    let other = id("cart-2");
    assert_eq!(store.load(&cart).unwrap(), None);

    let state = Cart {
        items: vec!["apple".into()],
        total_cents: 120,
    };
    store
        .save(Snapshot::encode(cart.clone(), 3, 1, &state).unwrap())
        .unwrap();
    let got = store.load(&cart).unwrap().unwrap();
    assert_eq!(
        (got.stream.clone(), got.version, got.schema_version),
        (cart.clone(), 3, 1)
    );
    assert_eq!(got.decode::<Cart>(1), Some(state));
    // Another schema, or another type: ignored.
    assert_eq!(got.decode::<Cart>(2), None);
    assert_eq!(got.decode::<Vec<u64>>(1), None);

    // Latest by version: an older one is kept out.
    store.save(raw(&cart, 2, 1, b"old".to_vec())).unwrap();
    assert_eq!(store.load(&cart).unwrap().unwrap().version, 3);
    // The same version replaces.
    store
        .save(raw(&cart, 3, 2, b"v3, schema 2".to_vec()))
        .unwrap();
    assert_eq!(
        store.load(&cart).unwrap(),
        Some(raw(&cart, 3, 2, b"v3, schema 2".to_vec()))
    );
    store.save(raw(&cart, 10, 2, Vec::new())).unwrap();
    assert_eq!(
        store.load(&cart).unwrap(),
        Some(raw(&cart, 10, 2, Vec::new()))
    );
    // Streams are independent; any UTF-8 name, even one no file may have.
    let odd = id("ordre/7 ✓ ..\\ :*?");
    store.save(raw(&odd, 1, 1, b"odd".to_vec())).unwrap();
    assert_eq!(store.load(&other).unwrap(), None);
    assert_eq!(store.load(&odd).unwrap().unwrap().payload, b"odd");
}

#[test]
fn in_memory_and_file_snapshots_behave_alike() {
    behaves(&InMemorySnapshots::new());
    let dir = TempDir::new("alike");
    behaves(&FileSnapshots::open(dir.path()).unwrap());
}

#[test]
fn a_restart_keeps_every_stream_latest_and_large_payloads() {
    let dir = TempDir::new("restart");
    let large: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i * 7 + i / 4096) as u8)
        .collect();
    {
        let s = FileSnapshots::open(dir.path()).unwrap();
        for i in 0..300u64 {
            let st = id(&format!("order-{i}"));
            s.save(raw(&st, i, 1, i.to_le_bytes().to_vec())).unwrap();
            s.save(raw(&st, i + 1, 1, (i + 1).to_le_bytes().to_vec()))
                .unwrap();
        }
        s.save(raw(&id("big"), 1, 1, large.clone())).unwrap();
    }
    let s = FileSnapshots::open(dir.path()).unwrap();
    for i in 0..300u64 {
        let got = s.load(&id(&format!("order-{i}"))).unwrap().unwrap();
        assert_eq!(
            (got.version, got.payload),
            (i + 1, (i + 1).to_le_bytes().to_vec())
        );
    }
    assert_eq!(s.load(&id("big")).unwrap().unwrap().payload, large);
    assert_eq!(s.load(&id("order-300")).unwrap(), None);
}

#[test]
fn a_second_open_of_the_directory_is_refused_while_the_first_lives() {
    let dir = TempDir::new("lock");
    let first = FileSnapshots::open(dir.path()).unwrap();
    let err = FileSnapshots::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    drop(first);
    FileSnapshots::open(dir.path()).unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The only file in the directory that is not the lock: the log.
fn log_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn compaction_keeps_the_log_near_the_live_snapshots() {
    let dir = TempDir::new("compact");
    let payload = |v: u64, s: u64| vec![(v * 3 + s) as u8; 64 * 1024];
    let rounds = 60;
    {
        let s = FileSnapshots::open(dir.path()).unwrap();
        for v in 1..=rounds {
            for st in 0..3 {
                s.save(raw(&id(&format!("s{st}")), v, 1, payload(v, st)))
                    .unwrap();
            }
        }
        // 60 × 3 × 64 KiB = 11.25 MiB written; live: 192 KiB. Compacted once
        // over 1 MiB and 4 × live: at most that plus one save's records.
        let bytes = dir_bytes(dir.path());
        assert!(bytes < 1_400_000, "{bytes} bytes on disk");
    }
    let s = FileSnapshots::open(dir.path()).unwrap();
    for st in 0..3 {
        let got = s.load(&id(&format!("s{st}"))).unwrap().unwrap();
        assert_eq!((got.version, got.payload), (rounds, payload(rounds, st)));
    }
}

/// Three streams with two snapshots each; returns the byte range, in the log, of
/// b's first one (a damaged record in the middle of the log).
fn three_streams(dir: &Path) -> (std::ops::Range<u64>, u64) {
    let s = FileSnapshots::open(dir).unwrap();
    let log = log_file(dir);
    let mut middle = 0..0;
    for (st, v) in [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2)] {
        let before = fs::metadata(&log).unwrap().len();
        s.save(raw(
            &id(st),
            v,
            1,
            format!("{st}{v}").repeat(20).into_bytes(),
        ))
        .unwrap();
        if (st, v) == ("b", 1) {
            middle = before..fs::metadata(&log).unwrap().len();
        }
    }
    (middle, fs::metadata(&log).unwrap().len())
}

fn assert_others_intact(s: &FileSnapshots) {
    assert_eq!(s.load(&id("a")).unwrap().unwrap().payload, b"a2".repeat(20));
    assert_eq!(s.load(&id("c")).unwrap().unwrap().payload, b"c2".repeat(20));
}

#[test]
fn a_damaged_record_in_the_middle_is_ignored_and_the_rest_kept() {
    let dir = TempDir::new("damaged");
    let (middle, _) = three_streams(dir.path());
    let log = log_file(dir.path());
    let pristine = fs::read(&log).unwrap();
    // Every bit of b's record flipped in turn, then the record cut short at
    // every length: open works, b is ignored (it had no earlier snapshot), a
    // and c are intact.
    let mut damaged: Vec<Vec<u8>> = Vec::new();
    for bit in 0..(middle.end - middle.start) * 8 {
        let mut bytes = pristine.clone();
        bytes[(middle.start + bit / 8) as usize] ^= 1 << (bit % 8);
        damaged.push(bytes);
    }
    for keep in 1..middle.end - middle.start {
        let mut bytes = pristine.clone();
        bytes.drain((middle.start + keep) as usize..middle.end as usize);
        damaged.push(bytes);
    }
    for bytes in damaged {
        fs::write(&log, &bytes).unwrap();
        let s = FileSnapshots::open(dir.path()).unwrap();
        assert_eq!(s.load(&id("b")).unwrap(), None);
        assert_others_intact(&s);
        // A damaged record in the middle is skipped, not truncated.
        assert_eq!(fs::metadata(&log).unwrap().len(), bytes.len() as u64);
    }
    // A save of b after that is found.
    let s = FileSnapshots::open(dir.path()).unwrap();
    s.save(raw(&id("b"), 5, 1, b"b5".to_vec())).unwrap();
    drop(s);
    let s = FileSnapshots::open(dir.path()).unwrap();
    assert_eq!(s.load(&id("b")).unwrap().unwrap().version, 5);
}

#[test]
fn a_torn_tail_is_truncated_and_the_previous_snapshot_loads() {
    let dir = TempDir::new("torn");
    let (_, end) = three_streams(dir.path());
    let log = log_file(dir.path());
    let pristine = fs::read(&log).unwrap();
    let c2 = {
        let s = FileSnapshots::open(dir.path()).unwrap();
        s.save(raw(&id("c"), 3, 1, b"c3".repeat(20))).unwrap();
        fs::read(&log).unwrap()[end as usize..].to_vec()
    };
    for keep in 0..c2.len() {
        // The last record cut at every byte, then with garbage after the cut.
        for garbage in [None, Some(0u8), Some(0xEB)] {
            let mut bytes = pristine.clone();
            bytes.extend_from_slice(&c2[..keep]);
            if let Some(g) = garbage {
                bytes.resize(pristine.len() + c2.len(), g);
            }
            fs::write(&log, &bytes).unwrap();
            let s = FileSnapshots::open(dir.path()).unwrap();
            assert_eq!(
                fs::metadata(&log).unwrap().len(),
                end,
                "cut at {keep}: not truncated"
            );
            assert_eq!(s.load(&id("b")).unwrap().unwrap().payload, b"b1".repeat(20));
            assert_others_intact(&s);
        }
    }
}

/// The payload a stream's snapshot has at a version: a load can tell a whole
/// snapshot from a torn or mixed one.
fn payload_for(stream: u64, version: u64) -> Vec<u8> {
    let len = 100 + ((version * 7919 + stream * 104_729) % 20_000) as usize;
    (0..len)
        .map(|i| (i as u64 ^ version.wrapping_mul(131) ^ (stream << 5)) as u8)
        .collect()
}

#[test]
fn saves_from_four_threads_while_loads_run() {
    let dir = TempDir::new("threads");
    let s = FileSnapshots::open(dir.path()).unwrap();
    let per = 150u64;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let loaders: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = [0u64; 2];
                    loop {
                        let last_round = done.load(Ordering::Acquire);
                        for (st, seen) in seen.iter_mut().enumerate() {
                            let stream = id(&format!("s{st}"));
                            if let Some(got) = s.load(&stream).unwrap() {
                                assert_eq!(got.stream, stream);
                                assert_eq!(got.payload, payload_for(st as u64, got.version));
                                assert!(got.version >= *seen, "a load went back");
                                *seen = got.version;
                            }
                        }
                        if last_round {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    let st = t % 2;
                    for k in 0..per {
                        let version = 2 * k + t / 2 + 1;
                        s.save(raw(
                            &id(&format!("s{st}")),
                            version,
                            1,
                            payload_for(st, version),
                        ))
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        for l in loaders {
            assert_eq!(l.join().unwrap(), [2 * per, 2 * per]);
        }
    });
}
