//! `FileStore` on the real file system: recovery from damaged segments at the
//! byte level (issue 11, A7 crash-safety layer 1), the lock, format checks.
//!
//! A store with a few appends is closed; its last segment is then cut at every
//! byte offset inside the last frame, and every bit of that frame is flipped in
//! turn: open must recover exactly the earlier appends. A flipped bit in an
//! earlier frame, with valid frames after it, is corruption: open refuses,
//! naming file and offset, or — with `TruncateAfterCorruption` — truncates
//! there and keeps a `.broken` copy.
//!
//! Sealed segments and their index files: a damaged frame in a sealed segment
//! with a valid index is found by the read (a typed `ReadError`), or at open
//! with `verify_on_open`; a damaged, missing or stale index is rebuilt, never
//! trusted; a store opened through the indexes is the same store as one opened
//! by scanning every segment (a proptest).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use ringbus::codec::Frames;
use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, OpenError, Position, ReadError,
    RecoveryMode, StoreOptions, StreamId,
};
use ringbus::{event_type, source, Event, EventId};

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringbus-store-file-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ev(n: u32) -> Event<u32> {
    Event::new(event_type!("file.happened"), source!("test"), n)
}

fn options() -> StoreOptions {
    // No preallocation: the segment ends where its last frame ends.
    StoreOptions::default()
        .preallocate(false)
        .durability(Durability::None)
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("log").join("00000000000000000000.seg")
}

/// A closed store with appends of 1, 3, 2 and 1 events to two streams; returns
/// its directory, the ids in position order, and the offsets of the frames.
fn fixture() -> (TempDir, Vec<EventId>, Vec<u64>) {
    let dir = TempDir::new();
    let store = FileStore::open(&dir.0, options()).unwrap();
    let a = StreamId::new("a").unwrap();
    let b = StreamId::new("b").unwrap();
    let mut ids = Vec::new();
    let mut offsets = Vec::new();
    let mut n = 0;
    for (stream, k) in [(&a, 1), (&b, 3), (&a, 2), (&b, 1)] {
        offsets.push(std::fs::metadata(segment(&dir.0)).unwrap().len());
        let batch: Vec<Event<u32>> = (0..k)
            .map(|_| {
                n += 1;
                ev(n)
            })
            .collect();
        ids.extend(batch.iter().map(|e| e.id));
        store.append(stream, ExpectedVersion::Any, batch).unwrap();
    }
    store.close().unwrap();
    (dir, ids, offsets)
}

/// Opens a copy of the fixture whose segment holds `bytes`.
fn open_with_segment(
    bytes: &[u8],
    recovery: RecoveryMode,
) -> (TempDir, Result<FileStore<u32>, OpenError>) {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("log")).unwrap();
    std::fs::write(segment(&dir.0), bytes).unwrap();
    let r = FileStore::open(&dir.0, options().recovery(recovery));
    (dir, r)
}

fn all_ids(store: &FileStore<u32>) -> Vec<EventId> {
    store
        .read_all(Position(0), usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.event.id)
        .collect()
}

#[test]
fn a_cut_anywhere_in_the_last_frame_recovers_the_earlier_appends() {
    let (dir, ids, offsets) = fixture();
    let bytes = std::fs::read(segment(&dir.0)).unwrap();
    let last = offsets[3] as usize;
    for cut in last..bytes.len() {
        let (_d, store) = open_with_segment(&bytes[..cut], RecoveryMode::TruncateTornTail);
        let store = store.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(all_ids(&store), ids[..6], "cut at {cut}");
        let torn = if cut == last { None } else { Some(last as u64) };
        assert_eq!(store.torn_tail(), torn, "cut at {cut}");
        // The torn tail is gone from the file, and the store goes on.
        store
            .append(
                &StreamId::new("b").unwrap(),
                ExpectedVersion::Exact(3),
                vec![ev(99)],
            )
            .unwrap();
        assert_eq!(store.head(), Some(Position(6)));
    }
    // The whole segment: everything.
    let (_d, store) = open_with_segment(&bytes, RecoveryMode::TruncateTornTail);
    assert_eq!(all_ids(&store.unwrap()), ids);
}

#[test]
fn a_flipped_bit_in_the_last_frame_recovers_the_earlier_appends() {
    let (dir, ids, offsets) = fixture();
    let bytes = std::fs::read(segment(&dir.0)).unwrap();
    let last = offsets[3] as usize;
    for i in last..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1 << bit;
            let (_d, store) = open_with_segment(&damaged, RecoveryMode::TruncateTornTail);
            let store = store.unwrap_or_else(|e| panic!("byte {i} bit {bit}: {e}"));
            assert_eq!(all_ids(&store), ids[..6], "byte {i} bit {bit}");
            assert_eq!(store.torn_tail(), Some(last as u64), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn a_flipped_bit_before_valid_frames_is_corruption() {
    let (dir, ids, offsets) = fixture();
    let bytes = std::fs::read(segment(&dir.0)).unwrap();
    // Every bit of the second frame (the batch of 3).
    for i in offsets[1] as usize..offsets[2] as usize {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1 << bit;
            let (d, r) = open_with_segment(&damaged, RecoveryMode::TruncateTornTail);
            match r {
                Err(OpenError::Corrupt { file, offset, .. }) => {
                    assert_eq!(file, segment(&d.0), "byte {i} bit {bit}");
                    assert_eq!(offset, offsets[1], "byte {i} bit {bit}");
                }
                Err(e) => panic!("byte {i} bit {bit}: {e}"),
                Ok(_) => panic!("byte {i} bit {bit}: opened"),
            }
            // The file is left as it was.
            assert_eq!(std::fs::read(segment(&d.0)).unwrap(), damaged);
        }
    }
    // Opted in: truncated at the damage, the damaged file kept aside.
    let mut damaged = bytes.clone();
    damaged[offsets[1] as usize + 20] ^= 0x40;
    let (d, r) = open_with_segment(&damaged, RecoveryMode::TruncateAfterCorruption);
    let store = r.unwrap();
    assert_eq!(all_ids(&store), ids[..1]);
    let broken = d.0.join("log").join("00000000000000000000.seg.broken");
    assert_eq!(std::fs::read(broken).unwrap(), damaged);
    assert_eq!(
        std::fs::metadata(segment(&d.0)).unwrap().len(),
        offsets[1],
        "not truncated at the damage"
    );
    store
        .append(
            &StreamId::new("b").unwrap(),
            ExpectedVersion::NoStream,
            vec![ev(7)],
        )
        .unwrap();
}

#[test]
fn a_damaged_header_is_corruption_and_a_newer_format_is_refused() {
    let (dir, _, _) = fixture();
    let bytes = std::fs::read(segment(&dir.0)).unwrap();
    let mut damaged = bytes.clone();
    damaged[10] ^= 1;
    let (_d, r) = open_with_segment(&damaged, RecoveryMode::TruncateAfterCorruption);
    assert!(
        matches!(r, Err(OpenError::Corrupt { offset: 0, .. })),
        "{r:?}"
    );

    let mut newer = bytes.clone();
    newer[4] = 9;
    let crc = crc32c_of(&newer[..16]);
    newer[16..20].copy_from_slice(&crc.to_le_bytes());
    let (_d, r) = open_with_segment(&newer, RecoveryMode::TruncateTornTail);
    assert!(
        matches!(r, Err(OpenError::UnsupportedFormat { found: 9, .. })),
        "{r:?}"
    );
}

/// CRC-32C (Castagnoli), bitwise: the test does not lean on the crate's own.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_second_open_is_locked_out_until_close() {
    let dir = TempDir::new();
    let store: FileStore<u32> = FileStore::open(&dir.0, StoreOptions::default()).unwrap();
    assert!(matches!(
        FileStore::<u32>::open(&dir.0, StoreOptions::default()),
        Err(OpenError::Locked)
    ));
    store.close().unwrap();
    let again: FileStore<u32> = FileStore::open(&dir.0, StoreOptions::default()).unwrap();
    drop(again);
}

#[test]
fn segments_below_the_minimum_are_refused() {
    let dir = TempDir::new();
    let r = FileStore::<u32>::open(&dir.0, StoreOptions::default().segment_bytes(1024));
    match r {
        Err(OpenError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("{other:?}"),
    }
}

/// Many threads appending at once share writes and syncs (group commit) and
/// all of it is there after a reopen, in one dense order.
#[test]
fn concurrent_appends_survive_a_reopen() {
    let dir = TempDir::new();
    let opts = StoreOptions::default().segment_bytes(64 << 10);
    let store: FileStore<u32> = FileStore::open(&dir.0, opts.clone()).unwrap();
    let threads = 8;
    let per = if cfg!(miri) { 2 } else { 50 };
    let total = threads * per;
    std::thread::scope(|s| {
        // A follower: never a gap, never beyond the head it saw afterwards.
        let store = &store;
        s.spawn(move || {
            let mut next = 0_u64;
            while next < total {
                let page = store.read_all(Position(next), 64).unwrap();
                let head = store.head();
                for r in &page {
                    assert_eq!(r.position, Position(next), "a gap");
                    assert!(Some(r.position) <= head, "beyond the head");
                    next += 1;
                }
                if page.is_empty() {
                    store.wait_past(
                        next.checked_sub(1).map(Position),
                        std::time::Duration::from_secs(10),
                    );
                }
            }
        });
        for t in 0..threads {
            s.spawn(move || {
                let stream = StreamId::new(format!("t-{t}")).unwrap();
                for i in 0..per {
                    store
                        .append(&stream, ExpectedVersion::Exact(i), vec![ev(i as u32)])
                        .unwrap();
                }
            });
        }
    });
    store.close().unwrap();
    let store: FileStore<u32> = FileStore::open(&dir.0, opts).unwrap();
    let all = store.read_all(Position(0), usize::MAX).unwrap();
    assert_eq!(all.len() as u64, threads * per);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, r)| r.position == Position(i as u64)));
    for t in 0..threads {
        let stream = StreamId::new(format!("t-{t}")).unwrap();
        let got: Vec<u32> = store
            .read_stream(&stream, 1, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.event.data)
            .collect();
        assert_eq!(got, (0..per as u32).collect::<Vec<_>>());
    }
}

/// A file store's reads carry each event's position, its `publish_to` feeds a bus
/// in position order, and a catch-up subscription over it sees history and then
/// live appends, every position exactly once — across a reopen.
#[test]
fn reads_carry_positions_and_catch_up_works_on_a_file_store() {
    use ringbus::store::{subscribe_all, Status};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let dir = TempDir::new();
    let s = StreamId::new("file-live").unwrap();
    {
        let store = FileStore::<u32>::open(&dir.0, options()).unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, vec![ev(0), ev(1)])
            .unwrap();
        store.close().unwrap();
    }
    let store = Arc::new(FileStore::<u32>::open(&dir.0, options()).unwrap());
    for r in store.read_all(Position(0), 10).unwrap() {
        assert_eq!(r.event.position(), Some(r.position));
    }
    let bus = ringbus::BusBuilder::<u32>::new().build().unwrap();
    let fed = Arc::new(Mutex::new(Vec::new()));
    let f = fed.clone();
    bus.subscribe("file.happened", move |e: &Event<u32>| {
        f.lock().unwrap().push(e.position());
    })
    .unwrap();
    let feed = store.publish_to(&bus);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sub = subscribe_all(store.clone(), &bus)
        .start(move |r| {
            s2.lock()
                .unwrap()
                .push((r.position, r.version, r.event.data))
        })
        .unwrap();
    store
        .append(&s, ExpectedVersion::Exact(2), vec![ev(2), ev(3)])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.lock().unwrap().len() < 4 || fed.lock().unwrap().len() < 2)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Position(0), 1, 0),
            (Position(1), 2, 1),
            (Position(2), 3, 2),
            (Position(3), 4, 3)
        ]
    );
    assert!(matches!(sub.status(), Status::Live | Status::CatchingUp));
    bus.flush().unwrap();
    // The feed starts at the head when it starts: the two later appends, in order.
    assert_eq!(*fed.lock().unwrap(), [Some(Position(2)), Some(Position(3))]);
    feed.stop();
    sub.stop();
}

// ---- sealed segments and their index files ----

fn log_file(dir: &Path, first: u64, ext: &str) -> PathBuf {
    dir.join("log").join(format!("{first:020}.{ext}"))
}

/// Copies a store's `log/` to a fresh directory.
fn copy_store(from: &Path) -> TempDir {
    let to = TempDir::new();
    std::fs::create_dir_all(to.0.join("log")).unwrap();
    for entry in std::fs::read_dir(from.join("log")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.0.join("log").join(entry.file_name())).unwrap();
    }
    to
}

/// The names in `log/`, sorted.
fn log_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The first positions of the segments, from their names.
fn segment_firsts(dir: &Path) -> Vec<u64> {
    log_names(dir)
        .iter()
        .filter_map(|n| n.strip_suffix(".seg")?.parse().ok())
        .collect()
}

fn sealed_options() -> StoreOptions {
    options().segment_bytes(StoreOptions::MIN_SEGMENT_BYTES)
}

fn streams5() -> Vec<StreamId> {
    (0..5)
        .map(|i| StreamId::new(format!("st-{i}")).unwrap())
        .collect()
}

/// A closed store of 64 KiB segments, at least three of them sealed: appends
/// of 1 to 7 events to 5 streams. Returns the appends (stream index, ids).
fn sealed_fixture() -> (TempDir, Vec<(usize, Vec<EventId>)>) {
    let dir = TempDir::new();
    let store = FileStore::open(&dir.0, sealed_options()).unwrap();
    let streams = streams5();
    let mut appends = Vec::new();
    let mut n = 0;
    while segment_firsts(&dir.0).len() < 4 {
        let s = n % 5;
        let batch: Vec<Event<u32>> = (0..1 + (n * 7 + 3) % 7)
            .map(|j| ev((n * 10 + j) as u32))
            .collect();
        appends.push((s, batch.iter().map(|e| e.id).collect()));
        store
            .append(&streams[s], ExpectedVersion::Any, batch)
            .unwrap();
        n += 1;
    }
    store.close().unwrap();
    (dir, appends)
}

/// Everything a user can see of a store: every record of `read_all` (position,
/// version, id, payload), each stream's `read_stream` and version, `scan_all`'s
/// positions and ids.
type State = (
    Vec<(Position, u64, EventId, u32)>,
    Vec<(Vec<(Position, u64, EventId)>, u64)>,
    Vec<(Position, EventId)>,
);

fn state_of(store: &FileStore<u32>, streams: &[StreamId]) -> State {
    let all = store
        .read_all(Position(0), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| (r.position, r.version, r.event.id, r.event.data))
        .collect();
    let per_stream = streams
        .iter()
        .map(|s| {
            let records = store
                .read_stream(s, 1, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|r| (r.position, r.version, r.event.id))
                .collect();
            (records, store.stream_version(s).unwrap())
        })
        .collect();
    let mut scanned = Vec::new();
    store
        .scan_all(Position(0), &mut |p, e| {
            scanned.push((p, e.id()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    (all, per_stream, scanned)
}

/// Re-appending each stored append with its own ids is a duplicate at the
/// positions it has.
fn retries_are_duplicates(
    store: &FileStore<u32>,
    streams: &[StreamId],
    appends: &[(usize, Vec<EventId>)],
) {
    let mut position = 0;
    let mut versions = vec![0; streams.len()];
    for (s, ids) in appends {
        let batch: Vec<Event<u32>> = ids
            .iter()
            .map(|&id| {
                let mut e = ev(0);
                e.id = id;
                e
            })
            .collect();
        // The retry of the append, with the expectation it had.
        let o = store
            .append(&streams[*s], ExpectedVersion::Exact(versions[*s]), batch)
            .unwrap();
        versions[*s] += ids.len() as u64;
        assert!(o.duplicate, "append at {position} not seen as a duplicate");
        assert_eq!(o.first_position, Position(position));
        assert_eq!(o.last_position, Position(position + ids.len() as u64 - 1));
        position += ids.len() as u64;
    }
}

/// The frames of a segment file: (offset, length) each.
fn frames_of(segment: &[u8]) -> Vec<(u64, u64)> {
    const DATA_START: usize = 32;
    let mut out = Vec::new();
    let mut offset = DATA_START;
    let mut frames = Frames::new(&segment[DATA_START..]);
    while let Some(Ok(_)) = frames.next() {
        let end = segment.len() - frames.remainder().len();
        out.push((offset as u64, (end - offset) as u64));
        offset = end;
    }
    out
}

#[test]
fn sealed_segments_have_indexes_and_reopen_the_same() {
    let (dir, appends) = sealed_fixture();
    let firsts = segment_firsts(&dir.0);
    let (last, sealed) = firsts.split_last().unwrap();
    for &f in sealed {
        assert!(log_file(&dir.0, f, "idx").exists(), "no index for {f}");
    }
    assert!(
        !log_file(&dir.0, *last, "idx").exists(),
        "the last segment has an index"
    );
    let streams = streams5();
    let store = FileStore::open(&dir.0, sealed_options()).unwrap();
    let via_index = state_of(&store, &streams);
    let ids: Vec<EventId> = appends.iter().flat_map(|(_, ids)| ids.clone()).collect();
    assert_eq!(via_index.0.iter().map(|r| r.2).collect::<Vec<_>>(), ids);
    retries_are_duplicates(&store, &streams, &appends);
    store.close().unwrap();
    let store = FileStore::open(&dir.0, sealed_options().verify_on_open(true)).unwrap();
    assert_eq!(state_of(&store, &streams), via_index);
}

/// A flipped bit in a frame of a sealed segment whose index is valid:
/// open succeeds, the reads that reach that frame fail with a typed error, the
/// others work; with `verify_on_open` open refuses, naming file and offset.
#[test]
fn damage_in_a_sealed_segment_is_found_by_the_read_or_by_verify_on_open() {
    let (dir, appends) = sealed_fixture();
    let streams = streams5();
    let seg0 = log_file(&dir.0, 0, "seg");
    let bytes = std::fs::read(&seg0).unwrap();
    let frames = frames_of(&bytes);
    assert!(frames.len() > 3);
    // The second frame: its events' positions and stream.
    let (offset, len) = frames[1];
    let first = appends[0].1.len() as u64;
    let (stream, ids) = &appends[1];
    let count = ids.len();
    for i in offset..offset + len {
        // Two bits of every byte (all eight of the header's first four: magic,
        // version, flags with the checksum bit): each open closes with syncs.
        let bits: Vec<u32> = if i < offset + 4 {
            (0..8).collect()
        } else {
            vec![(i % 8) as u32, ((i + 3) % 8) as u32]
        };
        for bit in bits {
            let d = copy_store(&dir.0);
            let mut damaged = bytes.clone();
            damaged[i as usize] ^= 1 << bit;
            std::fs::write(log_file(&d.0, 0, "seg"), &damaged).unwrap();
            let store = FileStore::<u32>::open(&d.0, sealed_options())
                .unwrap_or_else(|e| panic!("byte {i} bit {bit}: {e}"));
            match store.read_all(Position(first), count) {
                Err(ReadError::Io(_) | ReadError::Decode { .. }) => {}
                Ok(r) => panic!("byte {i} bit {bit}: read {} events", r.len()),
                Err(e) => panic!("byte {i} bit {bit}: {e}"),
            }
            assert!(store.read_stream(&streams[*stream], 1, usize::MAX).is_err());
            assert_eq!(
                store.read_all(Position(0), first as usize).unwrap().len() as u64,
                first
            );
            let after = first + count as u64;
            assert!(store.read_all(Position(after), 1000).unwrap().len() == 1000);
            drop(store);
            match FileStore::<u32>::open(&d.0, sealed_options().verify_on_open(true)) {
                Err(OpenError::Corrupt {
                    file, offset: at, ..
                }) => {
                    assert_eq!(file, log_file(&d.0, 0, "seg"), "byte {i} bit {bit}");
                    assert_eq!(at, offset, "byte {i} bit {bit}");
                }
                Err(e) => panic!("byte {i} bit {bit}: {e}"),
                Ok(_) => panic!("byte {i} bit {bit}: verify_on_open opened"),
            }
        }
    }
}

/// A damaged, cut, emptied or missing index is rebuilt: the store is the same
/// and the index file is written again exactly as the roll wrote it.
#[test]
fn a_bad_or_missing_index_is_rebuilt_identically() {
    let (dir, _) = sealed_fixture();
    let streams = streams5();
    let want = state_of(
        &FileStore::open(&dir.0, sealed_options()).unwrap(),
        &streams,
    );
    let idx0 = log_file(&dir.0, 0, "idx");
    let good = std::fs::read(&idx0).unwrap();
    let mut variants: Vec<(String, Option<Vec<u8>>)> = vec![
        ("missing".into(), None),
        ("empty".into(), Some(Vec::new())),
        ("cut in half".into(), Some(good[..good.len() / 2].to_vec())),
        (
            "one byte short".into(),
            Some(good[..good.len() - 1].to_vec()),
        ),
    ];
    for at in [
        0,
        4,
        8,
        16,
        24,
        28,
        32,
        40,
        good.len() / 2,
        good.len() - 5,
        good.len() - 1,
    ] {
        let mut b = good.clone();
        b[at] ^= 0x10;
        variants.push((format!("byte {at} flipped"), Some(b)));
    }
    for verify in [false, true] {
        for (what, bytes) in &variants {
            let d = copy_store(&dir.0);
            let idx = log_file(&d.0, 0, "idx");
            match bytes {
                Some(b) => std::fs::write(&idx, b).unwrap(),
                None => std::fs::remove_file(&idx).unwrap(),
            }
            let store = FileStore::open(&d.0, sealed_options().verify_on_open(verify)).unwrap();
            assert_eq!(state_of(&store, &streams), want, "{what}, verify {verify}");
            assert_eq!(
                std::fs::read(&idx).unwrap(),
                good,
                "{what}, verify {verify}"
            );
        }
    }
}

/// `TruncateAfterCorruption` at a damaged frame of a sealed segment (found with
/// `verify_on_open`): no index is left for the truncated segment or the later
/// ones (renamed `.broken`), and the store goes on, rolls, and reopens the same
/// through its new indexes.
#[test]
fn no_stale_index_survives_truncate_after_corruption() {
    let (dir, appends) = sealed_fixture();
    let streams = streams5();
    let seg0 = log_file(&dir.0, 0, "seg");
    let mut bytes = std::fs::read(&seg0).unwrap();
    let (offset, _) = frames_of(&bytes)[1];
    bytes[offset as usize + 10] ^= 0x04;
    std::fs::write(&seg0, &bytes).unwrap();
    let before = segment_firsts(&dir.0);

    let opts = sealed_options()
        .verify_on_open(true)
        .recovery(RecoveryMode::TruncateAfterCorruption);
    let store = FileStore::<u32>::open(&dir.0, opts).unwrap();
    let kept = appends[0].1.clone();
    assert_eq!(all_ids(&store), kept);
    let names = log_names(&dir.0);
    assert!(!names.iter().any(|n| n.contains(".idx")), "{names:?}");
    for f in &before[1..] {
        assert!(names.contains(&format!("{f:020}.seg.broken")), "{names:?}");
    }
    // Go on past two rolls.
    let mut ids = kept;
    let mut n = 0;
    while segment_firsts(&dir.0).len() < 3 {
        let batch: Vec<Event<u32>> = (0..5).map(|j| ev(n * 5 + j)).collect();
        ids.extend(batch.iter().map(|e| e.id));
        store
            .append(&streams[n as usize % 5], ExpectedVersion::Any, batch)
            .unwrap();
        n += 1;
    }
    store.close().unwrap();
    let store = FileStore::<u32>::open(&dir.0, sealed_options()).unwrap();
    assert_eq!(all_ids(&store), ids);
    let via_index = state_of(&store, &streams);
    drop(store);
    let store = FileStore::<u32>::open(&dir.0, sealed_options().verify_on_open(true)).unwrap();
    assert_eq!(state_of(&store, &streams), via_index);
}

/// Random workloads (streams, batch sizes, payload sizes, segment rolls): the
/// store opened through its index files and the one opened by scanning every
/// segment are the same — every read, every stream's version, and retries of
/// stored appends are duplicates at the same positions in both.
fn equivalence(appends: &[(usize, usize, usize)]) {
    let dir = TempDir::new();
    let streams = streams5();
    let opts = sealed_options();
    let store = FileStore::<String>::open(&dir.0, opts.clone()).unwrap();
    let mut stored = Vec::new();
    for &(s, k, size) in appends {
        let batch: Vec<Event<String>> = (0..k)
            .map(|_| Event::new(event_type!("file.sized"), source!("test"), "x".repeat(size)))
            .collect();
        stored.push((s, batch.iter().map(|e| e.id).collect::<Vec<_>>()));
        store
            .append(&streams[s], ExpectedVersion::Any, batch)
            .unwrap();
    }
    store.close().unwrap();
    let read = |verify: bool| {
        let store = FileStore::<String>::open(&dir.0, opts.clone().verify_on_open(verify)).unwrap();
        let all: Vec<(Position, u64, EventId, usize)> = store
            .read_all(Position(0), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| (r.position, r.version, r.event.id, r.event.data.len()))
            .collect();
        let per_stream: Vec<(Vec<(Position, u64)>, u64)> = streams
            .iter()
            .map(|s| {
                let r = store.read_stream(s, 1, usize::MAX).unwrap();
                let v = store.stream_version(s).unwrap();
                (r.into_iter().map(|r| (r.position, r.version)).collect(), v)
            })
            .collect();
        let mut position = 0;
        let mut versions = [0; 5];
        for (s, ids) in &stored {
            let batch: Vec<Event<String>> = ids
                .iter()
                .map(|&id| {
                    let mut e =
                        Event::new(event_type!("file.sized"), source!("test"), String::new());
                    e.id = id;
                    e
                })
                .collect();
            let o = store
                .append(&streams[*s], ExpectedVersion::Exact(versions[*s]), batch)
                .unwrap();
            versions[*s] += ids.len() as u64;
            assert!(o.duplicate && o.first_position == Position(position));
            position += ids.len() as u64;
        }
        store.close().unwrap();
        (all, per_stream)
    };
    let via_index = read(false);
    let scanned = read(true);
    assert_eq!(via_index, scanned);
    let ids: Vec<EventId> = stored.iter().flat_map(|(_, ids)| ids.clone()).collect();
    assert_eq!(via_index.0.iter().map(|r| r.2).collect::<Vec<_>>(), ids);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 1 } else { 12 }))]

    #[test]
    fn a_store_opened_through_its_indexes_is_the_scanned_store(
        appends in proptest::collection::vec((0..5_usize, 1..12_usize, 0..400_usize), 1..300),
    ) {
        equivalence(&appends);
    }
}
