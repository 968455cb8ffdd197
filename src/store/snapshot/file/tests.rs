//! `FileSnapshots` on the simulated disk: random saves across streams with a
//! power cut at a random I/O operation (compactions included), `EIO` from
//! `fdatasync`, `ENOSPC`; the mutation checks that prove the crash test sees a
//! missing sync; damaged bytes in the middle of the log; concurrent saves and
//! loads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(not(miri))]
use proptest::prelude::*;

use super::*;
use crate::store::sim::{proptest_cases, Crash, Rng, SimFs, CRASH_MODES};

fn dir() -> &'static Path {
    Path::new("/db/snapshots")
}

/// Never compacts.
const NEVER: Compaction = Compaction {
    min_bytes: u64::MAX,
    ratio: 1,
};

fn open(fs: &SimFs, policy: Compaction) -> FileSnapshots {
    FileSnapshots::open_with(Arc::new(fs.clone()), dir(), policy, Mutations::default()).unwrap()
}

/// The disk a restart finds after a power loss now (with everything synced, an
/// exact copy).
fn restart(fs: &SimFs) -> SimFs {
    fs.crash(Crash::DropUnsynced, 1)
}

fn stream(i: usize) -> StreamId {
    StreamId::new(format!("stream-{i}")).unwrap()
}

/// A snapshot whose payload says which save it was (`n`), `len` bytes long.
fn snap(stream: &StreamId, version: u64, schema_version: u32, len: usize, n: u64) -> Snapshot {
    let seed = n.to_le_bytes();
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version,
        payload: (0..len).map(|i| seed[i % 8] ^ (i / 8) as u8).collect(),
    }
}

/// What a failure message shows of a snapshot.
fn show(s: Option<&Snapshot>) -> String {
    match s {
        Some(s) => format!(
            "{}@v{} schema {} ({} bytes)",
            s.stream,
            s.version,
            s.schema_version,
            s.payload.len()
        ),
        None => "none".into(),
    }
}

// ---- behaviour ------------------------------------------------------------------

#[test]
fn round_trip_latest_by_version_same_version_replaces_and_reopen_keeps() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    let a = stream(0);
    assert_eq!(s.load(&a).unwrap(), None);
    s.save(snap(&a, 5, 1, 10, 1)).unwrap();
    assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 5, 1, 10, 1)));
    // Older: not written at all.
    let ops = fs.ops();
    s.save(snap(&a, 4, 1, 10, 2)).unwrap();
    assert_eq!(fs.ops(), ops, "an older snapshot was written");
    assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 5, 1, 10, 1)));
    // Same version: replaces (a new schema of the same state).
    s.save(snap(&a, 5, 2, 20, 3)).unwrap();
    assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 5, 2, 20, 3)));
    s.save(snap(&a, 9, 2, 0, 4)).unwrap();
    drop(s);
    for how in CRASH_MODES {
        let s = open(&fs.crash(how, 5), NEVER);
        assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 9, 2, 0, 4)), "{how:?}");
        assert_eq!(s.torn_tail_bytes(), 0);
        assert_eq!(s.skipped(), 0);
    }
}

#[test]
fn many_streams_and_a_large_payload() {
    let fs = SimFs::new();
    let s = open(&fs, Compaction::default());
    let n = if cfg!(miri) { 20 } else { 500 };
    for i in 0..n {
        s.save(snap(&stream(i), i as u64, 1, i % 40, i as u64))
            .unwrap();
    }
    let big = snap(
        &stream(0),
        1_000,
        1,
        if cfg!(miri) { 5_000 } else { 3 << 20 },
        7,
    );
    s.save(big.clone()).unwrap();
    drop(s);
    let s = open(&restart(&fs), Compaction::default());
    assert_eq!(s.load(&stream(0)).unwrap().as_ref(), Some(&big));
    for i in 1..n {
        let want = snap(&stream(i), i as u64, 1, i % 40, i as u64);
        assert_eq!(s.load(&stream(i)).unwrap(), Some(want));
    }
    assert_eq!(s.load(&stream(n)).unwrap(), None);
}

#[test]
fn compaction_keeps_the_latest_of_each_stream_and_shrinks_the_log() {
    let fs = SimFs::new();
    let policy = Compaction {
        min_bytes: 4096,
        ratio: 4,
    };
    let s = open(&fs, policy);
    let rounds = if cfg!(miri) { 20 } else { 200 };
    for v in 1..=rounds {
        for i in 0..3 {
            s.save(snap(&stream(i), v, 1, 300, v * 3 + i as u64))
                .unwrap();
        }
    }
    let (begun, done) = s.compactions();
    assert!(done >= 2 && begun == done, "{begun} begun, {done} done");
    let len = fs.read(&dir().join(LOG_NAME)).unwrap().len() as u64;
    // At most the threshold plus the records since the last compaction.
    assert!(len <= 4 * 3 * 340 + 4096, "log of {len} bytes");
    assert!(!fs.exists(&dir().join(TEMP_NAME)));
    drop(s);
    let s = open(&restart(&fs), policy);
    for i in 0..3 {
        let want = snap(&stream(i), rounds, 1, 300, rounds * 3 + i as u64);
        assert_eq!(s.load(&stream(i)).unwrap(), Some(want));
    }
}

#[test]
fn a_second_open_of_the_directory_is_refused() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    let e = FileSnapshots::open_in(Arc::new(fs.clone()), dir()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    drop(s);
    open(&fs, NEVER);
}

#[test]
fn a_leftover_compaction_file_is_removed_and_never_read() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    s.save(snap(&stream(0), 1, 1, 5, 1)).unwrap();
    drop(s);
    let t = fs
        .open(&dir().join(TEMP_NAME), OpenMode::CreateNew)
        .unwrap();
    t.write_all_at(&encode(&snap(&stream(0), 99, 1, 5, 2)).unwrap(), 0)
        .unwrap();
    drop(t);
    let s = open(&fs, NEVER);
    assert!(!fs.exists(&dir().join(TEMP_NAME)));
    assert_eq!(s.load(&stream(0)).unwrap().unwrap().version, 1);
}

/// The record layout the docs of `FileSnapshots` give, byte by byte.
#[test]
fn a_record_is_laid_out_as_documented() {
    let r = encode(&Snapshot {
        stream: StreamId::new("ab").unwrap(),
        version: 0x0102,
        schema_version: 3,
        payload: vec![0xAA, 0xBB],
    })
    .unwrap();
    let body: &[u8] = &[
        2, b'a', b'b', // stream id
        0x02, 0x01, 0, 0, 0, 0, 0, 0, // version
        3, 0, 0, 0, // schema version
        0xAA, 0xBB, // payload
    ];
    assert_eq!(r.len(), 16 + body.len());
    assert_eq!(r[..4], [0xEB, 0x53, 1, 0]);
    assert_eq!(r[4..8], (body.len() as u32).to_le_bytes());
    assert_eq!(r[8..12], crc32c::crc32c(body).to_le_bytes());
    assert_eq!(r[12..16], crc32c::crc32c(&r[..12]).to_le_bytes());
    assert_eq!(&r[16..], body);
    assert_eq!(decode(&r).unwrap().payload, [0xAA, 0xBB]);
}

#[test]
fn the_payload_limit_is_where_the_body_length_field_ends() {
    assert_eq!(
        body_len(255, FileSnapshots::MAX_PAYLOAD_LEN),
        Some(u32::MAX)
    );
    assert_eq!(body_len(255, FileSnapshots::MAX_PAYLOAD_LEN + 1), None);
    assert_eq!(body_len(1, 0), Some(14));
}

#[test]
fn a_record_of_an_unknown_layout_is_skipped_not_truncated() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    s.save(snap(&stream(0), 1, 1, 5, 1)).unwrap();
    drop(s);
    // A newer writer's record: layout 2, good CRCs.
    let mut r = encode(&snap(&stream(0), 2, 1, 5, 2)).unwrap();
    r[2] = 2;
    let crc = crc32c::crc32c(&r[..12]);
    r[12..16].copy_from_slice(&crc.to_le_bytes());
    let log = dir().join(LOG_NAME);
    let f = fs.open(&log, OpenMode::ReadWrite).unwrap();
    let end = f.len().unwrap();
    f.write_all_at(&r, end).unwrap();
    f.sync_data().unwrap();
    drop(f);
    let s = open(&fs, NEVER);
    assert_eq!(s.load(&stream(0)).unwrap().unwrap().version, 1);
    assert_eq!(s.torn_tail_bytes(), 0);
    assert_eq!(s.skipped(), 1);
    assert_eq!(fs.read(&log).unwrap().len() as u64, end + r.len() as u64);
}

// ---- damaged bytes ------------------------------------------------------------------

/// A log of five records: a@1, b@1, a@2 (the record the tests damage), b@2,
/// c@1. Returns the disk and the damaged record's byte range.
fn five_records() -> (SimFs, std::ops::Range<usize>) {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    let mut at = 0;
    let mut target = 0..0;
    for (i, (st, v)) in [(0, 1), (1, 1), (0, 2), (1, 2), (2, 1)]
        .into_iter()
        .enumerate()
    {
        let sn = snap(&stream(st), v, 1, 40 + i, i as u64);
        let len = encode(&sn).unwrap().len();
        if i == 2 {
            target = at..at + len;
        }
        at += len;
        s.save(sn).unwrap();
    }
    (fs, target)
}

/// After damage to a@2: a loads a@1, the other streams their latest.
fn check_damaged(fs: &SimFs, what: &str) {
    let s = FileSnapshots::open_with(Arc::new(fs.clone()), dir(), NEVER, Mutations::default())
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let got = |i| s.load(&stream(i)).unwrap();
    assert_eq!(got(0), Some(snap(&stream(0), 1, 1, 40, 0)), "{what}");
    assert_eq!(got(1), Some(snap(&stream(1), 2, 1, 43, 3)), "{what}");
    assert_eq!(got(2), Some(snap(&stream(2), 1, 1, 44, 4)), "{what}");
    assert!(s.skipped() >= 1, "{what}: nothing skipped");
    assert_eq!(s.torn_tail_bytes(), 0, "{what}");
}

#[test]
fn every_bit_flip_in_a_middle_record_skips_only_that_record() {
    let (fs, target) = five_records();
    let log = dir().join(LOG_NAME);
    let bits: Vec<usize> = if cfg!(miri) {
        vec![0, 17, 40, 100, 130, 200]
    } else {
        (0..target.len() * 8).collect()
    };
    for bit in bits {
        let disk = restart(&fs);
        let mut bytes = disk.read(&log).unwrap();
        bytes[target.start + bit / 8] ^= 1 << (bit % 8);
        let f = disk.open(&log, OpenMode::ReadWrite).unwrap();
        f.write_all_at(&bytes, 0).unwrap();
        drop(f);
        check_damaged(&disk, &format!("bit {bit}"));
    }
}

#[test]
fn a_middle_record_cut_short_at_every_byte_skips_only_that_record() {
    let (fs, target) = five_records();
    let log = dir().join(LOG_NAME);
    let cuts: Vec<usize> = if cfg!(miri) {
        vec![1, 15, 16, 30, target.len() - 1]
    } else {
        // (Keeping none is no damage: the record is simply not there.)
        (1..target.len()).collect()
    };
    for keep in cuts {
        // The record keeps its first `keep` bytes; the next one follows at once.
        let disk = restart(&fs);
        let mut bytes = disk.read(&log).unwrap();
        bytes.drain(target.start + keep..target.end);
        let f = disk.open(&log, OpenMode::ReadWrite).unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(&bytes, 0).unwrap();
        drop(f);
        check_damaged(&disk, &format!("kept {keep} bytes"));
    }
}

#[test]
fn a_torn_last_record_is_truncated_at_every_byte() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    s.save(snap(&stream(0), 1, 1, 30, 1)).unwrap();
    s.save(snap(&stream(1), 1, 1, 30, 2)).unwrap();
    let good = fs.read(&dir().join(LOG_NAME)).unwrap().len();
    s.save(snap(&stream(0), 2, 1, 30, 3)).unwrap();
    drop(s);
    let log = dir().join(LOG_NAME);
    let full = fs.read(&log).unwrap();
    let mut lengths: Vec<usize> = (good..full.len()).collect();
    if cfg!(miri) {
        lengths = vec![good, good + 1, good + 16, full.len() - 1];
    }
    for len in lengths {
        for tail in [None, Some(0u8)] {
            let disk = restart(&fs);
            let f = disk.open(&log, OpenMode::ReadWrite).unwrap();
            f.set_len(len as u64).unwrap();
            if let Some(zero) = tail {
                // Zeros where the rest of the record should be.
                f.write_all_at(&vec![zero; full.len() - len], len as u64)
                    .unwrap();
            }
            drop(f);
            let before = disk_len(&disk);
            let s = open(&disk, NEVER);
            assert_eq!(
                s.load(&stream(0)).unwrap().unwrap().version,
                1,
                "cut at {len}"
            );
            assert_eq!(s.load(&stream(1)).unwrap().unwrap().version, 1);
            assert_eq!(s.torn_tail_bytes(), before - good as u64);
            assert_eq!(disk.read(&log).unwrap().len(), good, "not truncated");
            // And it takes saves again, after the truncation.
            s.save(snap(&stream(0), 3, 1, 30, 4)).unwrap();
            drop(s);
            let s = open(&restart(&disk), NEVER);
            assert_eq!(s.load(&stream(0)).unwrap().unwrap().version, 3);
            assert_eq!(s.torn_tail_bytes(), 0);
        }
    }
}

fn disk_len(fs: &SimFs) -> u64 {
    fs.read(&dir().join(LOG_NAME)).unwrap().len() as u64
}

// ---- faults ---------------------------------------------------------------------------

/// EIO from `fdatasync`: that save fails, the store is poisoned (later saves
/// fail without touching the disk, loads go on and never see the failed
/// snapshot), and a restart finds the snapshot before.
#[test]
fn a_failed_sync_poisons_the_store() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    let a = stream(0);
    s.save(snap(&a, 1, 1, 10, 1)).unwrap();
    fs.fail_sync_at(0);
    let e = s.save(snap(&a, 2, 1, 10, 2)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO, passed on: {e}");
    let ops = fs.ops();
    let e = s.save(snap(&stream(1), 1, 1, 10, 3)).unwrap_err();
    assert!(e.to_string().contains("opened again"), "{e}");
    assert_eq!(fs.ops(), ops, "a poisoned store wrote");
    assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 1, 1, 10, 1)));
    assert_eq!(s.load(&stream(1)).unwrap(), None);
    drop(s);
    for how in CRASH_MODES {
        let s = open(&fs.crash(how, 9), NEVER);
        assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 1, 1, 10, 1)), "{how:?}");
        s.save(snap(&a, 3, 1, 10, 4)).unwrap();
        assert_eq!(s.load(&a).unwrap().unwrap().version, 3);
    }
}

/// ENOSPC in the middle of a record: the save fails, poisons, and nothing
/// partial is visible after a restart (the partial record is a torn tail).
#[test]
fn running_out_of_space_leaves_nothing_partial() {
    let fs = SimFs::new();
    let s = open(&fs, NEVER);
    let a = stream(0);
    s.save(snap(&a, 1, 1, 10, 1)).unwrap();
    let used = disk_len(&fs);
    fs.byte_budget(used + 30);
    let e = s.save(snap(&a, 2, 1, 100, 2)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28));
    assert!(disk_len(&fs) > used, "the test wants a short write");
    assert!(s.save(snap(&a, 3, 1, 1, 3)).is_err());
    assert_eq!(s.load(&a).unwrap().unwrap().version, 1);
    drop(s);
    // Without a power loss (the partial bytes are there), and after each kind.
    let disks = std::iter::once(fs.clone()).chain(CRASH_MODES.iter().map(|&how| fs.crash(how, 2)));
    for disk in disks {
        disk.byte_budget(u64::MAX);
        let s = open(&disk, NEVER);
        assert_eq!(s.load(&a).unwrap(), Some(snap(&a, 1, 1, 10, 1)));
        assert_eq!(disk_len(&disk), used);
    }
}

// ---- the crash proptest ------------------------------------------------------------

#[derive(Copy, Clone, Debug)]
enum Fault {
    /// The power is cut at this many mutating operations after open.
    PowerCut(u64),
    /// The n-th `sync_data` after open fails with EIO.
    FailSync(u64),
    /// The disk holds this many bytes.
    NoSpace(u64),
    /// None (the crash comes after the workload).
    Nothing,
}

/// One random run: saves, a fault, how the crash treats unsynced writes.
#[derive(Debug)]
struct Case {
    policy: Compaction,
    /// (stream, version, schema version, payload length)
    saves: Vec<(usize, u64, u32, usize)>,
    fault: Fault,
    how: Crash,
    crash_seed: u64,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        let saves: Vec<(usize, u64, u32, usize)> =
            (0..1 + rng.below(if cfg!(miri) { 6 } else { 24 }))
                .map(|_| {
                    // Mostly small payloads, some over several 4 KiB pages.
                    let bound = [16, 300, 9_000][rng.below(3) as usize];
                    (
                        rng.below(3) as usize,
                        rng.below(12),
                        1 + rng.below(2) as u32,
                        rng.below(bound + 1) as usize,
                    )
                })
                .collect();
        let n = saves.len() as u64;
        // Small thresholds: most workloads compact, some often.
        let policy = Compaction {
            min_bytes: [0, 256, 1_024][rng.below(3) as usize],
            ratio: 1 + rng.below(3),
        };
        let fault = match rng.below(8) {
            // A save is two operations (write, sync), a compaction five or more.
            0..=4 => Fault::PowerCut(rng.below(2 * n + 4)),
            5 => Fault::FailSync(rng.below(n + 2)),
            6 => Fault::NoSpace(rng.below(400 * n + 200)),
            _ => Fault::Nothing,
        };
        Case {
            policy,
            saves,
            fault,
            how: CRASH_MODES[rng.below(4) as usize],
            crash_seed: rng.below(u64::MAX),
        }
    }
}

/// What a run did, for the coverage test.
#[derive(Copy, Clone, Debug, Default)]
struct Ran {
    /// The power cut landed inside the workload.
    cut_inside: bool,
    /// Compactions finished before the crash.
    compactions: u64,
    /// A compaction was under way when a fault hit.
    compaction_interrupted: bool,
}

/// Runs `case` and checks what a restart finds: every stream's latest saved
/// snapshot (or the one save that failed, if it was for that stream and no
/// older), nothing else; no leftover file; saves work again.
fn check(case: &Case, mutations: Mutations) -> Result<Ran, String> {
    let fs = SimFs::new();
    let snaps = FileSnapshots::open_with(Arc::new(fs.clone()), dir(), case.policy, mutations)
        .map_err(|e| format!("first open: {e}"))?;
    let mut cut = u64::MAX;
    match case.fault {
        Fault::PowerCut(n) => {
            cut = fs.ops() + n;
            fs.power_cut_at(cut);
        }
        Fault::FailSync(n) => fs.fail_sync_at(n),
        Fault::NoSpace(bytes) => fs.byte_budget(bytes),
        Fault::Nothing => {}
    }
    let streams: Vec<StreamId> = (0..3).map(stream).collect();
    // The latest acknowledged snapshot of each stream.
    let mut kept: HashMap<usize, Snapshot> = HashMap::new();
    // The first save that failed: it may or may not be on the disk.
    let mut failed: Option<Snapshot> = None;
    for (n, &(s, version, schema, len)) in case.saves.iter().enumerate() {
        let sn = snap(&streams[s], version, schema, len, n as u64);
        let newer = kept.get(&s).is_none_or(|k| version >= k.version);
        let ops = fs.ops();
        match snaps.save(sn.clone()) {
            Ok(()) => {
                if failed.is_some() {
                    return Err(format!("save {n} succeeded after a failed one"));
                }
                if newer {
                    kept.insert(s, sn);
                } else if fs.ops() != ops {
                    return Err(format!("save {n}, older than the kept one, wrote"));
                }
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidInput {
                    return Err(format!("save {n}: {e}"));
                }
                if failed.is_none() {
                    if !newer {
                        return Err(format!("save {n}, older than the kept one, failed: {e}"));
                    }
                    failed = Some(sn);
                } else if fs.ops() != ops {
                    return Err(format!("save {n}: a poisoned store wrote"));
                }
            }
        }
        // In this process, loads see exactly the acknowledged saves (or fail
        // with the power off).
        for (i, st) in streams.iter().enumerate() {
            match snaps.load(st) {
                Ok(got) if got.as_ref() == kept.get(&i) => {}
                Ok(got) => {
                    return Err(format!(
                        "after save {n}, in process, {st} loads {} instead of {}",
                        show(got.as_ref()),
                        show(kept.get(&i))
                    ))
                }
                Err(_) if fs.ops() > cut => {}
                Err(e) => return Err(format!("load {st}: {e}")),
            }
        }
    }
    let (begun, done) = snaps.compactions();
    let ran = Ran {
        cut_inside: fs.ops() > cut,
        compactions: done,
        compaction_interrupted: begun > done,
    };
    drop(snaps);

    let after = fs.crash(case.how, case.crash_seed);
    let snaps = FileSnapshots::open_with(
        Arc::new(after.clone()),
        dir(),
        case.policy,
        Mutations::default(),
    )
    .map_err(|e| format!("open after the crash: {e}"))?;
    let mut found = Vec::new();
    for (i, st) in streams.iter().enumerate() {
        let got = snaps
            .load(st)
            .map_err(|e| format!("load {st} after the crash: {e}"))?;
        let ok = got.as_ref() == kept.get(&i)
            || (failed.as_ref().is_some_and(|f| f.stream == *st) && got == failed);
        if !ok {
            return Err(format!(
                "after the crash {st} loads {}; saved {}, failed {}",
                show(got.as_ref()),
                show(kept.get(&i)),
                show(failed.as_ref())
            ));
        }
        found.push(got);
    }
    if after.exists(&dir().join(TEMP_NAME)) {
        return Err("the compaction's temporary file is still there".into());
    }
    // It takes saves again, and they last.
    let next = snap(&streams[0], 1_000, 1, 50, 1_000);
    snaps
        .save(next.clone())
        .map_err(|e| format!("save after the crash: {e}"))?;
    drop(snaps);
    let snaps = FileSnapshots::open_with(
        Arc::new(after.crash(Crash::DropUnsynced, 0)),
        dir(),
        case.policy,
        Mutations::default(),
    )
    .map_err(|e| format!("second open: {e}"))?;
    found[0] = Some(next);
    for (i, st) in streams.iter().enumerate() {
        let got = snaps.load(st).map_err(|e| e.to_string())?;
        if got != found[i] {
            return Err(format!("{st} changed across a clean restart"));
        }
    }
    Ok(ran)
}

#[cfg(not(miri))]
proptest! {
    #![proptest_config(ProptestConfig {
        cases: proptest_cases(10_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The deciding test: a saved snapshot survives a power cut at any I/O
    /// operation (compactions included) or is superseded by a newer saved one;
    /// nothing that was not saved appears; faults poison.
    #[test]
    fn power_cut_at_a_random_operation(seed in any::<u64>()) {
        let case = Case::new(seed);
        if let Err(e) = check(&case, Mutations::default()) {
            prop_assert!(false, "{e}\n{case:?}");
        }
    }
}

/// Under Miri: a few fixed runs of the same check, without proptest.
#[cfg(miri)]
#[test]
fn power_cut_at_a_random_operation() {
    for seed in 0..proptest_cases(0) as u64 {
        let case = Case::new(seed);
        if let Err(e) = check(&case, Mutations::default()) {
            panic!("{e}\n{case:?}");
        }
    }
}

/// The workloads reach what the test is for: power cuts inside the workload,
/// compactions, and faults that hit a compaction under way.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn the_faults_land_inside_workloads_and_compactions() {
    let runs = 1_000;
    let ran: Vec<Ran> = (0..runs)
        .map(|seed| check(&Case::new(seed), Mutations::default()).unwrap())
        .collect();
    // Five in eight workloads have a power cut.
    let inside = ran.iter().filter(|r| r.cut_inside).count();
    let compacted = ran.iter().filter(|r| r.compactions > 0).count();
    let interrupted = ran.iter().filter(|r| r.compaction_interrupted).count();
    eprintln!(
        "of {runs} workloads: the power cut landed inside {inside}, {compacted} compacted, \
         a fault hit a compaction in {interrupted}"
    );
    assert!(inside * 2 > runs as usize * 5 / 8, "{inside}");
    assert!(compacted * 4 > runs as usize, "{compacted}");
    assert!(interrupted * 20 > runs as usize, "{interrupted}");
}

/// The first seed below `tries` whose case fails under `mutations`, if any.
fn first_failure(mutations: Mutations, tries: u64) -> Option<(u64, String)> {
    let found = (0..tries).find_map(|seed| {
        let case = Case::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        check(&case, mutations).err().map(|e| (seed, e))
    });
    if let Some((seed, e)) = &found {
        eprintln!("{mutations:?} caught by seed {seed}: {e}");
    }
    found
}

/// Mutation check: acknowledging a save without its `sync_data` loses saved
/// snapshots at a crash, and the crash test notices.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn mutation_without_the_save_sync_is_caught() {
    let m = Mutations {
        skip_save_sync: true,
        ..Mutations::default()
    };
    assert!(
        first_failure(m, 5_000).is_some(),
        "the crash test did not notice"
    );
}

/// Mutation check: without the directory sync after a compaction's rename, a
/// crash brings back the old log and loses the saves made since, and the crash
/// test notices.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn mutation_without_the_compaction_directory_sync_is_caught() {
    let m = Mutations {
        skip_compaction_dir_sync: true,
        ..Mutations::default()
    };
    assert!(
        first_failure(m, 5_000).is_some(),
        "the crash test did not notice"
    );
}

// ---- concurrency ------------------------------------------------------------------------

/// The payload of `stream`'s snapshot at `version`: a loader can tell a whole
/// one from a torn or mixed one.
fn payload_for(stream: usize, version: u64) -> Vec<u8> {
    let len = 50 + (version as usize * 37 + stream * 11) % 700;
    (0..len)
        .map(|i| (i as u64 ^ version.wrapping_mul(31) ^ stream as u64) as u8)
        .collect()
}

/// Four threads save (two per stream, versions rising) while two load, with
/// compactions under way: every load is a whole snapshot that was saved, and a
/// stream's loaded version never goes back.
#[test]
fn saves_from_four_threads_while_loads_run() {
    let fs = SimFs::new();
    let s = open(
        &fs,
        Compaction {
            min_bytes: 8_192,
            ratio: 2,
        },
    );
    let per = if cfg!(miri) { 5 } else { 300 };
    let done = AtomicBool::new(false);
    let loads = std::thread::scope(|scope| {
        let loaders: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = [0u64; 2];
                    let mut loads = 0u64;
                    loop {
                        let last_round = done.load(Ordering::Acquire);
                        for (i, seen) in seen.iter_mut().enumerate() {
                            if let Some(got) = s.load(&stream(i)).unwrap() {
                                assert_eq!(got.payload, payload_for(i, got.version));
                                assert!(got.version >= *seen, "went back");
                                *seen = got.version;
                                loads += 1;
                            }
                        }
                        if last_round {
                            return (loads, seen);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    let st = t % 2;
                    for k in 0..per {
                        // The two writers of a stream take turns in versions.
                        let version = 2 * k + (t / 2) as u64 + 1;
                        let sn = Snapshot {
                            stream: stream(st),
                            version,
                            schema_version: 1,
                            payload: payload_for(st, version),
                        };
                        s.save(sn).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        loaders
            .into_iter()
            .map(|l| l.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (n, seen) in &loads {
        assert!(*n > 0);
        assert_eq!(
            *seen,
            [2 * per, 2 * per],
            "the last round saw the last saves"
        );
    }
    assert!(s.compactions().1 > 0 || cfg!(miri), "no compaction ran");
}
