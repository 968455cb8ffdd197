//! Crash safety on the simulated disk (issue 11, A7 layers 2 and 3): random
//! workloads with a power cut at a random I/O operation, every crash mode, and
//! injected `EIO`/`ENOSPC`; plus the mutation check that proves the test can
//! see a missing directory sync or an acknowledgement before the sync.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(miri))]
use proptest::prelude::*;

use super::*;
use crate::event::EventId;
use crate::store::checkpoint::{CheckpointStore, FileCheckpoints};
use crate::store::sim::{Crash, SimFs};
use crate::store::snapshot::Snapshot;
use crate::{event_type, source};

const MODES: [Crash; 4] = [
    Crash::DropUnsynced,
    Crash::KeepPrefix,
    Crash::KeepRandomPages,
    Crash::ZeroUnsynced,
];

fn dir() -> &'static Path {
    Path::new("/db")
}

fn options(durability: Durability) -> StoreOptions {
    StoreOptions::default()
        .durability(durability)
        .segment_bytes(StoreOptions::MIN_SEGMENT_BYTES)
}

/// xorshift64*, for workloads drawn from one seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// One random run: a workload, where the power is cut, how the crash treats
/// unsynced writes.
#[derive(Debug)]
struct Case {
    durability: Durability,
    segment_bytes: u64,
    preallocate: bool,
    /// (stream, events, expected-version kind)
    appends: Vec<(u8, u16, u8)>,
    /// After each append: nothing, a snapshot save of a stream (`Some((true,
    /// stream))`) or a checkpoint save (`Some((false, _))`).
    saves: Vec<Option<(bool, u8)>>,
    /// Mutating operations after open before the power cut.
    cut_after: u64,
    how: Crash,
    crash_seed: u64,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed | 1);
        let durability = match rng.below(4) {
            0 | 1 => Durability::Immediate,
            2 => Durability::Periodic(Duration::ZERO),
            _ => Durability::None,
        };
        let appends: Vec<(u8, u16, u8)> = (0..1 + rng.below(8))
            .map(|_| {
                // 1 ..= 200 events, small ones more often (a random bound,
                // then a random size below it).
                let bound = 1 + rng.below(if cfg!(miri) { 3 } else { 200 });
                (
                    rng.below(4) as u8,
                    1 + rng.below(bound) as u16,
                    rng.below(5) as u8,
                )
            })
            .collect();
        let appends_len = appends.len() as u64;
        let saves: Vec<Option<(bool, u8)>> = (0..appends_len)
            .map(|_| match rng.below(4) {
                0 => Some((true, rng.below(4) as u8)),
                1 => Some((false, 0)),
                _ => None,
            })
            .collect();
        let saves_len = saves.iter().flatten().count() as u64;
        let how = MODES[rng.below(4) as usize];
        Case {
            durability,
            // Tiny segments: many workloads roll, some several times.
            segment_bytes: [512, 2_048, 8_192, 65_536][rng.below(4) as usize],
            preallocate: rng.below(2) == 0,
            appends,
            saves,
            // Each written append takes one or two operations (a write, a
            // sync), a roll five more; some appends conflict and take none.
            // A snapshot save takes two, a checkpoint save five.
            cut_after: rng.below(2 * appends_len + 3 + 3 * saves_len),
            how,
            crash_seed: rng.below(u64::MAX),
        }
    }
}

fn ev(n: u32) -> Event<u32> {
    Event::new(event_type!("sim.happened"), source!("sim"), n)
}

/// What a run did, besides passing.
#[derive(Copy, Clone, Debug)]
struct Ran {
    /// The power was cut during the workload (not after it).
    cut_during: bool,
    /// What the reopen after the crash did.
    recovered: Recovered,
    /// What a second reopen (no crash) did.
    again: Recovered,
    /// Snapshot and checkpoint saves acknowledged, and whether one failed.
    saves_acked: usize,
    save_failed: bool,
}

/// Runs `case` and checks what a reopen finds — and that a reopen of the same
/// crashed disk that ignores the index files (`verify_on_open`) finds the same.
/// `Err` says what went wrong.
fn check(case: &Case, mutations: Mutations) -> Result<Ran, String> {
    let fs = SimFs::new();
    let opts = options(case.durability)
        .segment_bytes(case.segment_bytes)
        .preallocate(case.preallocate);
    let store = FileStore::<u32>::open_with(Arc::new(fs.clone()), dir(), opts.clone(), mutations)
        .map_err(|e| format!("first open: {e}"))?;
    let checkpoints = FileCheckpoints::open_in(Arc::new(fs.clone()), &dir().join("checkpoints"))
        .map_err(|e| format!("checkpoints: {e}"))?;
    let cut = fs.ops() + case.cut_after;
    fs.power_cut_at(cut);

    let streams: Vec<StreamId> = (0..4)
        .map(|i| StreamId::new(format!("s-{i}")).unwrap())
        .collect();
    // Acknowledged appends, in position order: (outcome, events as stored).
    let mut acked: Vec<(AppendOutcome, Vec<Event<u32>>)> = Vec::new();
    // The append that failed with Io: it may or may not be there.
    let mut failed: Option<Vec<Event<u32>>> = None;
    // Snapshot saves per stream, acknowledged (the last) and attempted since.
    let mut snap_acked: Vec<Option<Snapshot>> = vec![None; 4];
    let mut snap_tried: Vec<Vec<Snapshot>> = vec![Vec::new(); 4];
    let mut cp_acked: Option<Position> = None;
    let mut cp_tried: Vec<Position> = Vec::new();
    let mut saves = 0_u64;
    let mut n = 0;
    for (i, &(s, count, kind)) in case.appends.iter().enumerate() {
        // (A test may give a case more appends than saves.)
        let save = case.saves.get(i).copied().flatten();
        let stream = &streams[s as usize];
        let version = acked
            .iter()
            .filter(|(_, e)| e[0].subject.as_ref() == Some(stream.as_subject()))
            .map(|(o, _)| o.version)
            .max()
            .unwrap_or(0);
        let expected = match kind {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            _ => ExpectedVersion::Exact(version),
        };
        let batch: Vec<Event<u32>> = (0..count)
            .map(|_| {
                n += 1;
                ev(n)
            })
            .collect();
        match store.append(stream, expected, batch.clone()) {
            Ok(o) => {
                let stored = batch
                    .into_iter()
                    .map(|mut e| {
                        e.subject = Some(stream.as_subject().clone());
                        e
                    })
                    .collect();
                acked.push((o, stored));
            }
            Err(AppendError::Io { events, .. }) => {
                if events != batch {
                    return Err("Io did not hand the events back unchanged".into());
                }
                let stored = events
                    .into_iter()
                    .map(|mut e| {
                        e.subject = Some(stream.as_subject().clone());
                        e
                    })
                    .collect();
                failed = Some(stored);
                break;
            }
            Err(AppendError::WrongExpectedVersion { .. }) => {}
            Err(e) => return Err(format!("unexpected append error {e:?}")),
        }
        saves += 1;
        match save {
            Some((true, s)) => {
                let s = s as usize;
                let snapshot = Snapshot {
                    stream: streams[s].clone(),
                    version: saves,
                    schema_version: 1,
                    payload: vec![saves as u8; 1 + (saves as usize * 37) % 700],
                };
                let store_snapshots = store.snapshots().expect("a file store has snapshots");
                match store_snapshots.save(snapshot.clone()) {
                    Ok(()) => {
                        snap_acked[s] = Some(snapshot);
                        snap_tried[s].clear();
                    }
                    Err(_) => snap_tried[s].push(snapshot),
                }
            }
            Some((false, _)) => match checkpoints.save("cp", Position(saves)) {
                Ok(()) => {
                    cp_acked = Some(Position(saves));
                    cp_tried.clear();
                }
                Err(_) => cp_tried.push(Position(saves)),
            },
            None => {}
        }
    }
    drop(store);
    drop(checkpoints);
    let saves_acked = snap_acked.iter().flatten().count() + usize::from(cp_acked.is_some());
    let save_failed = !cp_tried.is_empty() || snap_tried.iter().any(|t| !t.is_empty());
    let cut_during = fs.ops() > cut;

    let after = fs.crash(case.how, case.crash_seed);
    // The same crashed disk again, opened by scanning every segment.
    let scanned = {
        let twin = fs.crash(case.how, case.crash_seed);
        let store =
            FileStore::<u32>::open_in(Arc::new(twin), dir(), opts.clone().verify_on_open(true))
                .map_err(|e| format!("reopen after the crash, verifying: {e}"))?;
        store
            .read_all(Position(0), usize::MAX)
            .map_err(|e| format!("read_all, verifying: {e}"))?
    };
    let after = Arc::new(after);
    let store = FileStore::<u32>::open_in(after.clone(), dir(), opts.clone())
        .map_err(|e| format!("reopen after the crash: {e}"))?;
    let records = store
        .read_all(Position(0), usize::MAX)
        .map_err(|e| format!("read_all: {e}"))?;
    if records != scanned {
        return Err("opened with the index files, the store differs from a full scan".into());
    }

    // The survivors are whole appends: a prefix of the acknowledged ones,
    // perhaps followed by the failed one (only if all acknowledged survived).
    let mut at = 0;
    let mut whole = 0;
    for (o, events) in &acked {
        if at == records.len() {
            break;
        }
        for (i, e) in events.iter().enumerate() {
            let Some(r) = records.get(at) else {
                return Err(format!("append at {:?} is partly there", o.first_position));
            };
            let version = o.version - events.len() as u64 + 1 + i as u64;
            // Read back, an event carries its position; the acknowledged one did not.
            if r.position != Position(o.first_position.0 + i as u64)
                || r.version != version
                || r.event.position() != Some(r.position)
                || r.event.clone().with_position(None) != *e
            {
                return Err(format!(
                    "position {at}: {:?} v{} is not the acknowledged event v{version}",
                    r.position, r.version
                ));
            }
            at += 1;
        }
        whole += 1;
    }
    if at < records.len() {
        let rest = &records[at..];
        let ok = whole == acked.len()
            && failed.as_ref().is_some_and(|f| {
                f.len() == rest.len()
                    && f.iter()
                        .zip(rest)
                        .all(|(e, r)| r.event.clone().with_position(None) == *e)
            });
        if !ok {
            return Err(format!(
                "{} event(s) after the acknowledged appends are not the failed append",
                rest.len()
            ));
        }
    }
    if case.durability == Durability::Immediate && whole < acked.len() {
        return Err(format!(
            "{} of {} acknowledged appends survived under Immediate",
            whole,
            acked.len()
        ));
    }
    for s in &streams {
        let want = records
            .iter()
            .filter(|r| r.event.subject.as_ref() == Some(s.as_subject()))
            .count() as u64;
        if store.stream_version(s).map_err(|e| e.to_string())? != want {
            return Err(format!("stream {s:?} has the wrong version"));
        }
    }

    // Snapshots and checkpoints saved with `Ok` are there (or a later one
    // whose save failed); nothing that was never saved appears.
    let snapshots = store.snapshots().expect("a file store has snapshots");
    for (s, stream) in streams.iter().enumerate() {
        let found = snapshots
            .load(stream)
            .map_err(|e| format!("snapshot load: {e}"))?;
        let ok = match &found {
            None => snap_acked[s].is_none(),
            Some(f) => snap_acked[s].as_ref() == Some(f) || snap_tried[s].contains(f),
        };
        if !ok {
            return Err(format!(
                "stream {s}: snapshot {:?} after the crash, acknowledged {:?}",
                found.map(|f| f.version),
                snap_acked[s].as_ref().map(|a| a.version)
            ));
        }
    }
    let found = FileCheckpoints::open_in(after.clone(), &dir().join("checkpoints"))
        .and_then(|c| c.load("cp"))
        .map_err(|e| format!("checkpoint load: {e}"))?;
    let ok = match found {
        None => cp_acked.is_none(),
        Some(p) => cp_acked == Some(p) || cp_tried.contains(&p),
    };
    if !ok {
        return Err(format!(
            "checkpoint {found:?} after the crash, acknowledged {cp_acked:?}"
        ));
    }

    // And it takes appends again.
    let o = store
        .append(&streams[0], ExpectedVersion::Any, vec![ev(0)])
        .map_err(|e| format!("append after reopen: {e}"))?;
    if o.first_position != Position(records.len() as u64) {
        return Err(format!("append after reopen at {:?}", o.first_position));
    }
    let recovered = store.recovered;
    store.close().map_err(|e| format!("close: {e}"))?;

    // Once more without a crash: the indexes the reopen wrote, or those the
    // rolls wrote, are loaded; the store is the same.
    let store =
        FileStore::<u32>::open_in(after, dir(), opts).map_err(|e| format!("second reopen: {e}"))?;
    let again = store
        .read_all(Position(0), usize::MAX)
        .map_err(|e| format!("read_all after the second reopen: {e}"))?;
    if again.len() != records.len() + 1 || again[..records.len()] != records[..] {
        return Err("the second reopen differs".into());
    }
    for s in &streams {
        let want = again
            .iter()
            .filter(|r| r.event.subject.as_ref() == Some(s.as_subject()))
            .count() as u64;
        if store.stream_version(s).map_err(|e| e.to_string())? != want {
            return Err(format!(
                "stream {s:?} has the wrong version after the second reopen"
            ));
        }
    }
    Ok(Ran {
        cut_during,
        recovered,
        again: store.recovered,
        saves_acked,
        save_failed,
    })
}

fn cases() -> u32 {
    if cfg!(miri) {
        return 3;
    }
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

#[cfg(not(miri))]
proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// The deciding test: acknowledged appends survive a power cut at any I/O
    /// operation, whole, with their positions and versions (all of them under
    /// `Immediate`, a prefix otherwise), and the store takes appends again.
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
    for seed in 0..cases() as u64 {
        let case = Case::new(seed);
        if let Err(e) = check(&case, Mutations::default()) {
            panic!("{e}\n{case:?}");
        }
    }
}

/// The workloads are long enough that the power cut lands inside most of
/// them, after some appends were acknowledged; and the reopens load sealed
/// segments from index files often, and rebuild missing ones too.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn the_power_cut_lands_inside_most_workloads() {
    let runs = 500;
    let ran: Vec<Ran> = (0..runs)
        .map(|seed| check(&Case::new(seed), Mutations::default()).unwrap())
        .collect();
    let inside = ran.iter().filter(|r| r.cut_during).count();
    let from_index = ran
        .iter()
        .filter(|r| r.recovered.from_index + r.again.from_index > 0)
        .count();
    let after_crash = ran.iter().filter(|r| r.recovered.from_index > 0).count();
    let rebuilt = ran
        .iter()
        .filter(|r| r.recovered.indexes_written > 0)
        .count();
    eprintln!(
        "the power cut landed inside {inside} of {runs} workloads; \
         {from_index} loaded an index ({after_crash} right after the crash), {rebuilt} wrote one"
    );
    assert!(inside * 2 > runs as usize, "{inside} of {runs}");
    assert!(
        from_index * 4 > runs as usize,
        "{from_index} of {runs} loaded an index"
    );
    assert!(rebuilt > 0, "no reopen rebuilt an index");
    // Snapshot and checkpoint saves are in the workloads, and the power cut
    // catches some of them.
    let acked = ran.iter().filter(|r| r.saves_acked > 0).count();
    let failed = ran.iter().filter(|r| r.save_failed).count();
    eprintln!("{acked} runs acknowledged a snapshot or checkpoint save, in {failed} one failed");
    assert!(
        acked * 4 > runs as usize && failed > runs as usize / 20,
        "{acked} / {failed}"
    );
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

/// Mutation check: without the directory sync after creating a segment, the
/// crash test loses acknowledged appends.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn mutation_without_directory_sync_is_caught() {
    let found = first_failure(
        Mutations {
            skip_dir_sync: true,
            ..Mutations::default()
        },
        5_000,
    );
    assert!(found.is_some(), "the crash test did not notice");
}

/// Mutation check: acknowledging a group before its sync loses acknowledged
/// appends under `Immediate`.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn mutation_acknowledging_before_the_sync_is_caught() {
    let found = first_failure(
        Mutations {
            ack_before_sync: true,
            ..Mutations::default()
        },
        5_000,
    );
    assert!(found.is_some(), "the crash test did not notice");
}

fn stream() -> StreamId {
    StreamId::new("s").unwrap()
}

fn seg0() -> std::path::PathBuf {
    dir().join("log").join(segment::file_name(0))
}

/// EIO from fdatasync: the group is answered `Io` and never visible, the store
/// is poisoned (later appends fail, reads work), and a reopen after a crash
/// has exactly the appends before.
#[test]
fn a_failed_sync_poisons_the_store() {
    let fs = SimFs::new();
    let store =
        FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::Immediate))
            .unwrap();
    let a = store
        .append(&stream(), ExpectedVersion::NoStream, vec![ev(1)])
        .unwrap();
    fs.fail_sync_at(0);
    let b = vec![ev(2), ev(3)];
    match store.append(&stream(), ExpectedVersion::Exact(1), b.clone()) {
        Err(AppendError::Io { error, events }) => {
            assert_eq!(error.raw_os_error(), Some(5));
            assert_eq!(events, b);
        }
        other => panic!("{other:?}"),
    }
    // Poisoned: even an append whose sync would work fails, without a write.
    let ops = fs.ops();
    match store.append(&stream(), ExpectedVersion::Any, vec![ev(4)]) {
        Err(AppendError::Io { events, .. }) => assert_eq!(events.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs.ops(), ops, "a poisoned store wrote");
    // Readers keep working and never saw the failed group.
    assert_eq!(store.head(), Some(a.last_position));
    assert_eq!(store.read_all(Position(0), 10).unwrap().len(), 1);
    assert!(
        store.close().is_err(),
        "close of a poisoned store succeeded"
    );

    for how in MODES {
        let store = FileStore::<u32>::open_in(
            Arc::new(fs.crash(how, 7)),
            dir(),
            options(Durability::Immediate),
        )
        .unwrap();
        let all = store.read_all(Position(0), 10).unwrap();
        assert_eq!(all.len(), 1, "{how:?}");
        assert_eq!(all[0].event.data, 1);
        store
            .append(&stream(), ExpectedVersion::Exact(1), vec![ev(5)])
            .unwrap();
    }
}

/// ENOSPC in the middle of a group's write: a typed error, the partial frame
/// cut off again, poisoned; a reopen sees no partial frame.
#[test]
fn running_out_of_space_leaves_no_partial_frame() {
    let fs = SimFs::new();
    let opts = options(Durability::Immediate).preallocate(false);
    let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts.clone()).unwrap();
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![ev(1)])
        .unwrap();
    let used = fs.read(&seg0()).unwrap().len() as u64;
    fs.byte_budget(used + 30);
    let big: Vec<Event<u32>> = (0..20).map(ev).collect();
    match store.append(&stream(), ExpectedVersion::Exact(1), big.clone()) {
        Err(AppendError::Io { error, events }) => {
            assert_eq!(error.raw_os_error(), Some(28));
            assert_eq!(events, big);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs.read(&seg0()).unwrap().len() as u64, used, "not cut off");
    assert!(matches!(
        store.append(&stream(), ExpectedVersion::Any, vec![ev(2)]),
        Err(AppendError::Io { .. })
    ));
    drop(store);
    // Without a crash, and after every kind of crash.
    let disks = std::iter::once(fs.clone()).chain(MODES.iter().map(|&how| fs.crash(how, 3)));
    for disk in disks {
        let store = FileStore::<u32>::open_in(Arc::new(disk), dir(), opts.clone()).unwrap();
        assert_eq!(store.torn_tail(), None);
        assert_eq!(store.read_all(Position(0), 100).unwrap().len(), 1);
    }
}

/// A second open of the same directory is refused while the first is open.
#[test]
fn the_directory_is_locked() {
    let fs = SimFs::new();
    let a = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::Immediate))
        .unwrap();
    assert!(matches!(
        FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::Immediate)),
        Err(OpenError::Locked)
    ));
    a.close().unwrap();
    FileStore::<u32>::open_in(Arc::new(fs), dir(), options(Durability::Immediate)).unwrap();
}

/// A last segment whose creation a crash interrupted (zeros, or a torn header
/// and nothing after it) is removed; the one before goes on. With anything
/// after the damaged header, it is corruption.
#[test]
fn a_blank_or_torn_last_segment_is_removed() {
    let mut torn_header = segment::header(1)[..7].to_vec();
    torn_header.resize(100, 0);
    let mut damaged_with_data = segment::header(1).to_vec();
    damaged_with_data[9] ^= 1;
    damaged_with_data.resize(segment::DATA_START as usize, 0);
    damaged_with_data.extend_from_slice(&[0xEB, 0x52, 1, 2, 3]);
    for (leftover, removed) in [
        (vec![0_u8; 100], true),
        (vec![], true),
        (torn_header, true),
        (damaged_with_data, false),
    ] {
        let fs = SimFs::new();
        let store =
            FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::Immediate))
                .unwrap();
        store
            .append(&stream(), ExpectedVersion::NoStream, vec![ev(1)])
            .unwrap();
        store.close().unwrap();
        let blank = dir().join("log").join(segment::file_name(1));
        let f = fs.open(&blank, OpenMode::CreateNew).unwrap();
        f.write_all_at(&leftover, 0).unwrap();
        drop(f);
        let r =
            FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::Immediate));
        if !removed {
            assert!(
                matches!(r, Err(OpenError::Corrupt { offset: 0, .. })),
                "{r:?}"
            );
            continue;
        }
        let store = r.unwrap();
        // Created again, for the next append, with a good header.
        assert_eq!(fs.read(&blank).unwrap()[..4], *b"RBSG");
        store
            .append(&stream(), ExpectedVersion::Exact(1), vec![ev(2)])
            .unwrap();
        assert_eq!(store.read_stream(&stream(), 1, 9).unwrap().len(), 2);
    }
}

/// Ids, versions and positions survive many rolls and reopens (no crash).
#[test]
#[cfg_attr(miri, ignore = "6 000 events")]
fn rolls_and_reopens_keep_everything() {
    let fs = SimFs::new();
    let mut ids: Vec<EventId> = Vec::new();
    for round in 0..3_u32 {
        let store =
            FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::None))
                .unwrap();
        for i in 0..40 {
            let batch: Vec<Event<u32>> = (0..50).map(|j| ev(round * 10_000 + i * 50 + j)).collect();
            ids.extend(batch.iter().map(|e| e.id));
            store
                .append(&stream(), ExpectedVersion::Any, batch)
                .unwrap();
        }
        store.close().unwrap();
    }
    let segments = fs.list(&dir().join("log")).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    let store =
        FileStore::<u32>::open_in(Arc::new(fs), dir(), options(Durability::Immediate)).unwrap();
    let all = store.read_stream(&stream(), 1, usize::MAX).unwrap();
    assert_eq!(all.iter().map(|r| r.event.id).collect::<Vec<_>>(), ids);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, r)| r.version == i as u64 + 1 && r.position == Position(i as u64)));
    let back = store.read_stream_backward(&stream(), 3).unwrap();
    assert_eq!(back[0].version, ids.len() as u64);
    let mut seen = 0;
    store
        .scan_all(Position(1234), &mut |p, e| {
            assert_eq!(e.id(), ids[p.0 as usize]);
            seen += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, ids.len() - 1234);
}

/// `Periodic(d)`: an append returns after the write, and the committer syncs
/// within about `d` even when no further append comes.
#[test]
fn periodic_durability_syncs_without_further_appends() {
    let fs = SimFs::new();
    let store = FileStore::<u32>::open_in(
        Arc::new(fs.clone()),
        dir(),
        options(Durability::Periodic(Duration::from_millis(5))),
    )
    .unwrap();
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![ev(1)])
        .unwrap();
    let durable = || {
        let after = fs.crash(Crash::DropUnsynced, 1);
        FileStore::<u32>::open_in(Arc::new(after), dir(), options(Durability::None))
            .unwrap()
            .head()
            .is_some()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !durable() {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    store.close().unwrap();
}

/// Concurrent appenders, so that groups hold several appends, with a power cut
/// at a random operation. Returns what went wrong, if anything.
fn check_concurrent(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let durability = [Durability::Immediate, Durability::None][rng.below(2) as usize];
    let how = MODES[rng.below(4) as usize];
    let threads = 2 + rng.below(3);
    let per = 1 + rng.below(6);
    let opts = options(durability)
        .segment_bytes([2_048, 8_192][rng.below(2) as usize])
        .preallocate(rng.below(2) == 0);
    let fs = SimFs::new();
    let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts.clone())
        .map_err(|e| format!("first open: {e}"))?;
    fs.power_cut_at(fs.ops() + rng.below(threads * per + 3));
    let sizes: Vec<u64> = (0..threads * per).map(|_| 1 + rng.below(20)).collect();
    type Outcomes = Vec<(Result<AppendOutcome, ()>, Vec<Event<u32>>)>;
    let results: Vec<Outcomes> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = &store;
                let sizes = &sizes;
                s.spawn(move || {
                    let stream = StreamId::new(format!("t-{t}")).unwrap();
                    let mut out = Vec::new();
                    for i in 0..per {
                        let k = sizes[(t * per + i) as usize];
                        let batch: Vec<Event<u32>> = (0..k).map(|j| ev(j as u32)).collect();
                        let mut stored = batch.clone();
                        for e in &mut stored {
                            e.subject = Some(stream.as_subject().clone());
                        }
                        match store.append(&stream, ExpectedVersion::Any, batch) {
                            Ok(o) => out.push((Ok(o), stored)),
                            Err(AppendError::Io { .. }) => {
                                out.push((Err(()), stored));
                                break;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(store);
    let store = FileStore::<u32>::open_in(Arc::new(fs.crash(how, seed)), dir(), opts)
        .map_err(|e| format!("reopen: {e}"))?;
    let records = store
        .read_all(Position(0), usize::MAX)
        .map_err(|e| e.to_string())?;
    let n = records.len() as u64;
    let all: Vec<_> = results.into_iter().flatten().collect();
    // Every surviving event belongs to an append that survived whole.
    let mut covered = 0;
    for (outcome, events) in &all {
        let start = records.iter().position(|r| r.event.id == events[0].id);
        match (outcome, start) {
            (Ok(o), Some(at)) => {
                if at as u64 != o.first_position.0 {
                    return Err("an acknowledged append moved".into());
                }
            }
            (Ok(o), None) => {
                if durability == Durability::Immediate || n > o.first_position.0 {
                    return Err(format!(
                        "acknowledged append at {:?} lost ({n} survived)",
                        o.first_position
                    ));
                }
                continue;
            }
            (Err(()), None) => continue,
            (Err(()), Some(_)) => {}
        }
        let at = start.expect("present");
        let whole = records.len() >= at + events.len()
            && events.iter().zip(&records[at..]).all(|(e, r)| {
                r.event.position() == Some(r.position) && r.event.clone().with_position(None) == *e
            });
        if !whole {
            return Err(format!("append at {at} is not whole"));
        }
        covered += events.len();
    }
    if covered != records.len() {
        return Err(format!(
            "{covered} of {} events belong to appends",
            records.len()
        ));
    }
    store
        .append(&stream(), ExpectedVersion::Any, vec![ev(0)])
        .map_err(|e| format!("append after reopen: {e}"))?;
    Ok(())
}

/// Group commit under crashes: concurrent appenders, a power cut at a random
/// operation; acknowledged appends survive whole (all under `Immediate`, a
/// prefix under `None`), and every survivor is a whole append.
#[test]
fn power_cut_with_concurrent_appenders() {
    let runs = if cfg!(miri) { 2 } else { 1_000 };
    for seed in 0..runs {
        let seed = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        if let Err(e) = check_concurrent(seed) {
            panic!("seed {seed}: {e}");
        }
    }
}

/// Many unsynced appends, then a crash that keeps a random subset of their
/// pages: holes with whole frames after them. The sync mark says those bytes
/// were never synced, so open truncates at the first hole (never `Corrupt`),
/// and what survives is a prefix.
#[test]
fn unsynced_pages_kept_out_of_order_are_a_torn_tail() {
    let runs = if cfg!(miri) { 1 } else { 200 };
    let mut cut_short = 0;
    for seed in 0..runs {
        let fs = SimFs::new();
        let store =
            FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), options(Durability::None))
                .unwrap();
        let ids: Vec<EventId> = (0..200)
            .map(|i| {
                let e = ev(i);
                let id = e.id;
                store
                    .append(&stream(), ExpectedVersion::Any, vec![e])
                    .unwrap();
                id
            })
            .collect();
        fs.power_cut_at(fs.ops());
        drop(store);
        let after = Arc::new(fs.crash(Crash::KeepRandomPages, seed));
        let store = FileStore::<u32>::open_in(after, dir(), options(Durability::None))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let got: Vec<EventId> = store
            .read_all(Position(0), usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.event.id)
            .collect();
        assert_eq!(got, ids[..got.len()], "seed {seed}: not a prefix");
        if got.len() < ids.len() && store.torn_tail().is_some() {
            cut_short += 1;
        }
    }
    assert!(cut_short > 0 || cfg!(miri), "no crash ever tore the tail");
}

/// A closed store on `fs` with several sealed segments (and their indexes);
/// the ids of its events in position order.
fn sealed_segments(fs: &SimFs) -> Vec<EventId> {
    let opts = options(Durability::None).segment_bytes(2_048);
    let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts).unwrap();
    let mut ids = Vec::new();
    for i in 0..60_u32 {
        let s = StreamId::new(format!("s-{}", i % 3)).unwrap();
        let batch: Vec<Event<u32>> = (0..1 + i % 4).map(|j| ev(i * 10 + j)).collect();
        ids.extend(batch.iter().map(|e| e.id));
        store.append(&s, ExpectedVersion::Any, batch).unwrap();
    }
    store.close().unwrap();
    ids
}

fn idx(first: u64) -> std::path::PathBuf {
    index::path(&dir().join("log"), first)
}

/// The first positions of the sealed segments (all but the last), from the
/// segment names.
fn sealed_firsts(fs: &SimFs) -> Vec<u64> {
    let mut firsts: Vec<u64> = fs
        .list(&dir().join("log"))
        .unwrap()
        .iter()
        .filter_map(|n| segment::parse_name(n))
        .collect();
    firsts.sort_unstable();
    firsts.pop();
    firsts
}

fn reopen(fs: &SimFs, verify: bool) -> FileStore<u32> {
    let opts = options(Durability::None)
        .segment_bytes(2_048)
        .verify_on_open(verify);
    FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts).unwrap()
}

fn ids_of(store: &FileStore<u32>) -> Vec<EventId> {
    store
        .read_all(Position(0), usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.event.id)
        .collect()
}

/// Every sealed segment gets its index at the roll, the last none; open loads
/// the sealed ones from their indexes and scans only the last; with
/// `verify_on_open` it scans them all and writes nothing (the indexes match).
#[test]
fn rolls_write_indexes_and_open_loads_them() {
    let fs = SimFs::new();
    let ids = sealed_segments(&fs);
    let sealed = sealed_firsts(&fs);
    assert!(sealed.len() >= 3, "{sealed:?}");
    let idx_files: Vec<String> = fs
        .list(&dir().join("log"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".idx"))
        .collect();
    let want: Vec<String> = sealed.iter().map(|&f| index::file_name(f)).collect();
    assert_eq!(idx_files, want);

    let store = reopen(&fs, false);
    assert_eq!(
        store.recovered,
        Recovered {
            from_index: sealed.len(),
            scanned: 1,
            indexes_written: 0
        }
    );
    assert_eq!(ids_of(&store), ids);
    drop(store);
    let store = reopen(&fs, true);
    assert_eq!(
        store.recovered,
        Recovered {
            from_index: 0,
            scanned: sealed.len() + 1,
            indexes_written: 0
        }
    );
    assert_eq!(ids_of(&store), ids);
}

/// An index that claims a frame more than its segment holds (checksum and
/// tables consistent) is rejected: the segment is scanned and the right index
/// written in its place.
#[test]
fn an_index_claiming_more_than_its_segment_is_rejected_and_rebuilt() {
    let fs = SimFs::new();
    let ids = sealed_segments(&fs);
    let first = sealed_firsts(&fs)[1];
    let good = fs.read(&idx(first)).unwrap();
    let mut more = Index::decode(&good).unwrap();
    more.push(60, &stream(), [EventId::new()]);
    let f = fs.open(&idx(first), OpenMode::ReadWrite).unwrap();
    f.write_all_at(&more.encode(), 0).unwrap();
    drop(f);
    let store = reopen(&fs, false);
    assert_eq!(store.recovered.indexes_written, 1);
    assert_eq!(store.recovered.from_index, sealed_firsts(&fs).len() - 1);
    assert_eq!(ids_of(&store), ids);
    assert_eq!(fs.read(&idx(first)).unwrap(), good, "not rebuilt as it was");
}

/// An index whose segment is gone, and a half-written `.idx.tmp`, are removed
/// at open; so is an index beside the last segment (here: the segment after it
/// was deleted), since appends go on in that segment.
#[test]
fn stale_index_files_are_removed() {
    let fs = SimFs::new();
    let ids = sealed_segments(&fs);
    let sealed = sealed_firsts(&fs);
    let log = dir().join("log");
    // The last segment deleted: the one before is last again.
    let mut names: Vec<String> = fs
        .list(&log)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    let last = names.pop().unwrap();
    let last_first = segment::parse_name(&last).unwrap();
    fs.remove_file(&log.join(&last)).unwrap();
    // An orphan index, and a temporary one.
    fs.open(&idx(999_999), OpenMode::CreateNew)
        .unwrap()
        .write_all_at(b"junk", 0)
        .unwrap();
    fs.open(
        &log.join(format!("{}.tmp", index::file_name(sealed[0]))),
        OpenMode::CreateNew,
    )
    .unwrap();
    let store = reopen(&fs, false);
    assert_eq!(ids_of(&store), ids[..last_first as usize]);
    let left: Vec<String> = fs
        .list(&log)
        .unwrap()
        .into_iter()
        .filter(|n| n.contains(".idx"))
        .collect();
    let want: Vec<String> = sealed[..sealed.len() - 1]
        .iter()
        .map(|&f| index::file_name(f))
        .collect();
    assert_eq!(left, want);
    // Appends go on in the segment that was sealed; its next roll writes its
    // index again, and a reopen loads it.
    for i in 0..30 {
        store
            .append(&stream(), ExpectedVersion::Any, vec![ev(i), ev(i + 1)])
            .unwrap();
    }
    let all = ids_of(&store);
    store.close().unwrap();
    assert!(fs.exists(&idx(*sealed.last().unwrap())));
    let store = reopen(&fs, false);
    assert!(store.recovered.from_index >= sealed.len());
    assert_eq!(ids_of(&store), all);
}

/// A blank last segment (its creation cut short) is removed and created again;
/// the segment before it stays sealed, loaded from its index.
#[test]
fn a_blank_last_segment_leaves_the_sealed_ones_to_their_indexes() {
    let fs = SimFs::new();
    let ids = sealed_segments(&fs);
    let sealed = sealed_firsts(&fs);
    let log = dir().join("log");
    let mut names: Vec<String> = fs
        .list(&log)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    let last = names.pop().unwrap();
    let last_first = segment::parse_name(&last).unwrap();
    fs.remove_file(&log.join(&last)).unwrap();
    fs.open(&log.join(&last), OpenMode::CreateNew).unwrap();
    let store = reopen(&fs, false);
    assert_eq!(store.recovered.from_index, sealed.len());
    assert_eq!(ids_of(&store), ids[..last_first as usize]);
    assert_eq!(fs.read(&log.join(&last)).unwrap()[..4], *b"RBSG");
}

/// A failed index write fails no append: with the index's `sync_data`
/// failing at every roll, every append is acknowledged; the half-written
/// `.idx.tmp` files are removed at open and the indexes rebuilt.
#[test]
fn a_failed_index_write_fails_no_append() {
    let fs = SimFs::new();
    let opts = options(Durability::Immediate).segment_bytes(2_048);
    let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts.clone()).unwrap();
    let mut ids = Vec::new();
    for i in 0..100 {
        // An append that rolls syncs the new segment first (sync 0), then the
        // sealed segment's index (sync 1), then itself; others sync once.
        fs.fail_sync_at(1);
        let e = ev(i);
        ids.push(e.id);
        store
            .append(&stream(), ExpectedVersion::Any, vec![e])
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
    }
    fs.fail_sync_at(u64::MAX / 2);
    store.close().unwrap();
    let sealed = sealed_firsts(&fs);
    assert!(sealed.len() >= 2, "{sealed:?}");
    let names = fs.list(&dir().join("log")).unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".idx")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".idx.tmp")), "{names:?}");

    let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts).unwrap();
    assert_eq!(store.recovered.indexes_written, sealed.len());
    assert_eq!(ids_of(&store), ids);
    let names = fs.list(&dir().join("log")).unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    for f in sealed {
        assert!(fs.exists(&idx(f)));
    }
}

/// A torn tail is gone from the file, whatever lies beyond it — here a whole
/// frame further on, beyond what open reads at first (the lookahead past the
/// sync mark): every byte from the cut on is zero (preallocated) or gone.
#[test]
fn a_torn_tail_is_gone_from_the_file_whatever_lies_beyond() {
    for preallocate in [true, false] {
        let fs = SimFs::new();
        let opts = options(Durability::None)
            .segment_bytes(8_192)
            .preallocate(preallocate);
        let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts.clone()).unwrap();
        for i in 0..5 {
            store
                .append(&stream(), ExpectedVersion::Any, vec![ev(i)])
                .unwrap();
        }
        store.close().unwrap();
        let bytes = fs.read(&seg0()).unwrap();
        let end = u64::from_le_bytes(bytes[20..28].try_into().unwrap());
        let first_frame = &bytes[DATA_START as usize..DATA_START as usize + 40];
        let f = fs.open(&seg0(), OpenMode::ReadWrite).unwrap();
        f.write_all_at(&first_frame[..20], end).unwrap();
        f.write_all_at(first_frame, end + 2 * SCAN_AHEAD).unwrap();
        let len = f.len().unwrap();
        drop(f);
        let store = FileStore::<u32>::open_in(Arc::new(fs.clone()), dir(), opts).unwrap();
        assert_eq!(store.torn_tail(), Some(end), "preallocate {preallocate}");
        assert_eq!(store.read_all(Position(0), 100).unwrap().len(), 5);
        drop(store);
        let after = fs.read(&seg0()).unwrap();
        if preallocate {
            assert_eq!(after.len() as u64, len);
            assert!(after[end as usize..].iter().all(|&b| b == 0), "left behind");
        } else {
            assert_eq!(after.len() as u64, end);
        }
    }
}

/// Long workloads on 512-byte segments with the power cut late: the reopen
/// right after the crash loads sealed segments from index files that a later
/// roll's directory sync made durable, and finds every acknowledged append.
#[test]
#[cfg_attr(miri, ignore = "needs hundreds of simulated runs")]
fn reopens_right_after_a_crash_load_durable_indexes() {
    let runs = 300;
    let (mut loaded, mut inside) = (0, 0);
    for seed in 0..runs {
        let mut case = Case::new(seed);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        case.segment_bytes = 512;
        case.appends = (0..30)
            .map(|_| {
                (
                    rng.below(4) as u8,
                    1 + rng.below(12) as u16,
                    rng.below(5) as u8,
                )
            })
            .collect();
        // Most appends write and sync (two operations), most roll (about ten).
        case.cut_after = 40 + rng.below(160);
        let ran = check(&case, Mutations::default()).unwrap_or_else(|e| panic!("{e}\n{case:?}"));
        loaded += usize::from(ran.recovered.from_index > 0);
        inside += usize::from(ran.cut_during);
    }
    eprintln!(
        "the power cut landed inside {inside} of {runs} workloads; \
         {loaded} reopens after the crash loaded an index"
    );
    assert!(inside * 2 > runs as usize, "{inside} of {runs}");
    assert!(loaded * 4 > runs as usize, "{loaded} of {runs}");
}
