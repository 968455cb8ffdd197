//! `FileStore` on the real file system: recovery from damaged segments at the
//! byte level (issue 11, A7 crash-safety layer 1), the lock, format checks.
//!
//! A store with a few appends is closed; its last segment is then cut at every
//! byte offset inside the last frame, and every bit of that frame is flipped in
//! turn: open must recover exactly the earlier appends. A flipped bit in an
//! earlier frame, with valid frames after it, is corruption: open refuses,
//! naming file and offset, or — with `TruncateAfterCorruption` — truncates
//! there and keeps a `.broken` copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, OpenError, Position, RecoveryMode,
    StoreOptions, StreamId,
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
