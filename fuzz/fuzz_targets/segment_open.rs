//! Arbitrary bytes as the log's segment files, and as the index file of a
//! sealed segment → `FileStore::open`: `Ok` (and then every event reads back,
//! the store closes and opens again the same) or a typed `OpenError`, never a
//! panic or a hang.
//!
//! Input: a selector byte, then (selector bit 2 set) an index, then the
//! segments.
//!
//! * Bit 2 set: a u16 LE length and that many bytes as
//!   `log/00000000000000000000.idx`, the index of the first segment (sealed
//!   when there are two). Bit 3 set as well: its last 4 bytes are replaced by
//!   the CRC-32C of the rest, so the checks behind the checksum are reached.
//!   With an index, a read may fail with a typed `ReadError` (a damaged frame
//!   in a sealed segment whose index is valid is found by the read, not by
//!   open), but not panic.
//! * Bit 4 set: open with `verify_on_open` (every segment scanned, the index
//!   not trusted): then every event must read back again.
//! * Bit 0 clear: the rest is the one segment `log/00000000000000000000.seg`.
//!   Bit 0 set: a u16 LE length, that many bytes as the first segment, the rest
//!   as a second segment named by its header's first position (bytes 8..16, 1
//!   if too short), plus one when selector bit 1 is set (a name the header
//!   contradicts).
//!
//! Inputs with bits 2–4 clear are read exactly as before those bits existed.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use ringbus::store::{EventStore, FileStore, OpenError, Position, StoreOptions};
use ringbus::EventId;

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

fn segments(selector: u8, rest: &[u8]) -> Vec<(u64, &[u8])> {
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

/// The index bytes (bit 2) and the rest of the input.
fn index(selector: u8, rest: &[u8]) -> (Option<Vec<u8>>, &[u8]) {
    if selector & 4 == 0 {
        return (None, rest);
    }
    let (len, rest) = match rest {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        _ => return (None, rest),
    };
    let (idx, rest) = rest.split_at(len.min(rest.len()));
    let mut idx = idx.to_vec();
    if selector & 8 != 0 && idx.len() >= 4 {
        let n = idx.len() - 4;
        let crc = crc32c(&idx[..n]);
        idx[n..].copy_from_slice(&crc.to_le_bytes());
    }
    (Some(idx), rest)
}

/// CRC-32C (Castagnoli), bitwise: inputs are small.
fn crc32c(bytes: &[u8]) -> u32 {
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

/// Every event of the store, in pages, or the first read error.
fn read_everything(store: &FileStore) -> Result<Vec<(Position, EventId)>, String> {
    let mut out = Vec::new();
    let mut next = Position::START;
    loop {
        let page = store.read_all(next, 256).map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        assert!(last.position >= next);
        next = last.position.next();
        out.extend(page.iter().map(|r| (r.position, r.event.id)));
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let dir = TempDir::new();
    let (idx, rest) = index(selector, rest);
    if let Some(idx) = &idx {
        std::fs::write(dir.0.join("log").join("00000000000000000000.idx"), idx).unwrap();
    }
    for (first, bytes) in segments(selector, rest) {
        std::fs::write(dir.0.join("log").join(seg_name(first)), bytes).unwrap();
    }
    let verify = selector & 16 != 0;
    let options = StoreOptions::default()
        .preallocate(false)
        .verify_on_open(verify);
    // Read errors are allowed only where an index was trusted.
    let may_fail_reads = idx.is_some() && !verify;
    match FileStore::<serde_json::Value>::open(&dir.0, options.clone()) {
        Ok(store) => {
            let first = read_everything(&store);
            if let Err(e) = &first {
                assert!(may_fail_reads, "an event that open accepted does not read back: {e}");
            }
            store.close().unwrap();
            // Open again (through the indexes this open wrote): the same store.
            let again = FileStore::<serde_json::Value>::open(&dir.0, options)
                .expect("a store that opened does not open again");
            let second = read_everything(&again);
            if let Ok(first) = first {
                assert_eq!(second.expect("read back after the second open"), first);
            }
            again.close().unwrap();
        }
        Err(OpenError::Corrupt { .. } | OpenError::UnsupportedFormat { .. }) => {}
        // A typed refusal: what the damage is, or what the file system said.
        Err(OpenError::Io(_)) => {}
        Err(OpenError::Locked) => panic!("a fresh directory was locked"),
        Err(e) => panic!("unexpected open error: {e}"),
    }
});
