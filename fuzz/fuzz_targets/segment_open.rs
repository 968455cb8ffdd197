//! Arbitrary bytes as the log's segment files → `FileStore::open`: `Ok` (and then
//! every event reads back and the store closes) or a typed `OpenError`, never a
//! panic or a hang.
//!
//! Input: a selector byte, then the segments. Selector bit 0 clear: the rest is
//! the one segment `log/00000000000000000000.seg`. Bit 0 set: a u16 LE length,
//! that many bytes as the first segment, the rest as a second segment named by
//! its header's first position (bytes 8..16, 1 if too short), plus one when
//! selector bit 1 is set (a name the header contradicts).
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use ringbus::store::{EventStore, FileStore, OpenError, Position, StoreOptions};

/// A fresh directory per process and iteration, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ringbus-fuzz-segment-open-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("log")).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn segments(data: &[u8]) -> Vec<(u64, &[u8])> {
    let Some((&selector, rest)) = data.split_first() else {
        return Vec::new();
    };
    if selector & 1 == 0 {
        return vec![(0, rest)];
    }
    let (len, rest) = match rest {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        _ => return vec![(0, rest)],
    };
    let (first, second) = rest.split_at(len.min(rest.len()));
    let mut name = second
        .get(8..16)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap()));
    if selector & 2 != 0 {
        name = name.wrapping_add(1);
    }
    if name == 0 {
        // Both files would be `0…0.seg`; keep the first one alone.
        return vec![(0, first)];
    }
    vec![(0, first), (name, second)]
}

fuzz_target!(|data: &[u8]| {
    let dir = TempDir::new();
    for (first, bytes) in segments(data) {
        std::fs::write(dir.0.join("log").join(seg_name(first)), bytes).unwrap();
    }
    let options = StoreOptions::default().preallocate(false);
    match FileStore::<serde_json::Value>::open(&dir.0, options) {
        Ok(store) => {
            let mut next = Position::START;
            loop {
                let page = store
                    .read_all(next, 256)
                    .expect("an event that open accepted does not read back");
                let Some(last) = page.last() else { break };
                assert!(last.position >= next);
                next = last.position.next();
            }
            store.close().unwrap();
        }
        Err(OpenError::Corrupt { .. } | OpenError::UnsupportedFormat { .. }) => {}
        // A typed refusal: what the damage is, or what the file system said.
        Err(OpenError::Io(_)) => {}
        Err(OpenError::Locked) => panic!("a fresh directory was locked"),
        Err(e) => panic!("unexpected open error: {e}"),
    }
});
