//! Segment files: their names, their header, and the scan that finds their
//! frames on open.
//!
//! A segment is `log/<first position, 20 digits>.seg`: a 20-byte header, a
//! 12-byte sync mark, then codec frames (FORMAT.md) one after the other, then
//! — when preallocated — zeros. The header is
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..4 | magic `RBSG` |
//! | 4 | segment format version, `1` |
//! | 5..8 | zero |
//! | 8..16 | the position of the segment's first event, u64 little-endian |
//! | 16..20 | CRC-32C of bytes 0..16, little-endian |
//! | 20..28 | the sync mark: a byte offset up to which the segment was synced, u64 little-endian |
//! | 28..32 | CRC-32C of bytes 20..28 (a mark that fails it counts as 32) |
//!
//! The writer rewrites the sync mark after a sync, without syncing it: after a
//! crash it holds the last mark that reached the disk, a lower bound of what was
//! durable. Recovery uses it to tell a torn tail (a damaged frame in bytes that
//! were never synced, perhaps with whole frames after it, if the disk wrote the
//! unsynced pages out of order) from corruption (a damaged frame in synced
//! bytes with whole frames after it).
//!
//! A sealed segment has an index file beside it ([`super::index`]).
//!
//! A frame never starts with a zero byte (its magic is `EB 52`), so a zero byte
//! where a frame should start is the clean end of the segment.

use crate::codec::{Frame, Frames, Limits};
use crate::event::EventId;
use crate::store::StreamId;

/// The header's bytes.
pub(crate) const HEADER_LEN: u64 = 20;
/// Where the sync mark is, and its length.
pub(crate) const SYNC_MARK: u64 = HEADER_LEN;
const SYNC_MARK_LEN: usize = 12;
/// Where the first frame starts.
pub(crate) const DATA_START: u64 = SYNC_MARK + SYNC_MARK_LEN as u64;
const MAGIC: [u8; 4] = *b"RBSG";
/// The segment format this code writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// A codec frame's first two bytes.
const FRAME_MAGIC: [u8; 2] = [0xEB, 0x52];

/// The header of a segment whose first event is at `first`.
pub(crate) fn header(first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = FORMAT_VERSION;
    h[8..16].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The sync mark saying bytes below `synced` are durable.
pub(crate) fn sync_mark(synced: u64) -> [u8; SYNC_MARK_LEN] {
    let mut m = [0u8; SYNC_MARK_LEN];
    m[..8].copy_from_slice(&synced.to_le_bytes());
    let crc = crc32c::crc32c(&m[..8]);
    m[8..].copy_from_slice(&crc.to_le_bytes());
    m
}

/// The offset a segment's sync mark names, or [`DATA_START`] if it has none.
pub(crate) fn read_sync_mark(bytes: &[u8]) -> u64 {
    let Some(m) = bytes.get(SYNC_MARK as usize..DATA_START as usize) else {
        return DATA_START;
    };
    let crc = u32::from_le_bytes(m[8..].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&m[..8]) {
        return DATA_START;
    }
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes")).max(DATA_START)
}

/// `<first, 20 digits>.seg`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// The first position a segment file name says, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a segment's first bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A good header for this first position.
    Valid(u64),
    /// Shorter than a header, or all zeros: a segment whose creation a crash
    /// interrupted (acceptable only for the last one, which then holds nothing).
    Blank,
    /// A header of a format version this code does not read.
    Unsupported(u8),
    /// Anything else.
    Damaged(&'static str),
}

pub(crate) fn read_header(bytes: &[u8]) -> Header {
    if bytes.len() < HEADER_LEN as usize || bytes[..HEADER_LEN as usize].iter().all(|&b| b == 0) {
        return Header::Blank;
    }
    if bytes[..4] != MAGIC {
        return Header::Damaged("bad segment magic");
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..16]) {
        return Header::Damaged("segment header checksum mismatch");
    }
    if bytes[4] != FORMAT_VERSION {
        return Header::Unsupported(bytes[4]);
    }
    Header::Valid(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    ))
}

/// One append as found in a segment.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The frame's length (it starts where the one before ends).
    pub(crate) len: u32,
    /// The stream (every event's subject).
    pub(crate) stream: StreamId,
    /// The events' ids, in order.
    pub(crate) ids: Vec<EventId>,
}

/// How a segment's frames end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// At `offset` the file ends or a zero byte stands where a frame would start.
    Clean(u64),
    /// The frame at `offset` is incomplete or fails its checks.
    Bad {
        offset: u64,
        reason: String,
        /// It lies in bytes that were synced and a valid frame follows it, or
        /// it is itself whole and checksummed but not an append this store
        /// wrote: it cannot be a torn write.
        corrupt: bool,
    },
}

/// Walks the frames of a segment's bytes (header included) from
/// [`DATA_START`] on, calling `found` for each append, and says how they end.
/// Bytes below `synced` were durable before the crash.
pub(crate) fn scan(
    bytes: &[u8],
    synced: u64,
    limits: &Limits,
    mut found: impl FnMut(Scanned),
) -> End {
    let mut offset = DATA_START as usize;
    loop {
        let rest = &bytes[offset.min(bytes.len())..];
        if rest.is_empty() || rest[0] == 0 {
            return End::Clean(offset as u64);
        }
        let mut frames = Frames::with_limits(rest, *limits);
        let bad = |reason: String, corrupt: bool| End::Bad {
            offset: offset as u64,
            corrupt: corrupt
                || ((offset as u64) < synced && valid_frame_after(bytes, offset + 1, limits)),
            reason,
        };
        let frame = match frames.next() {
            None => return bad("incomplete frame".into(), false),
            Some(Err(e)) => return bad(e.to_string(), false),
            Some(Ok(frame)) => frame,
        };
        let len = rest.len() - frames.remainder().len();
        match append_of(&frame) {
            Ok((stream, ids)) => found(Scanned {
                len: len as u32,
                stream,
                ids,
            }),
            // Whole and checksummed, so not torn: written by something else.
            Err(reason) => return bad(reason, true),
        }
        offset += len;
    }
}

/// The stream and ids of a frame, if it is an append: at least one event, all
/// with the same subject, a valid stream id.
pub(crate) fn append_of(frame: &Frame<'_>) -> Result<(StreamId, Vec<EventId>), String> {
    let (subjects, ids): (Vec<Option<&str>>, Vec<EventId>) = match frame {
        Frame::Event(e) => (vec![e.subject()], vec![e.id()]),
        Frame::Batch(b) => b.iter().map(|e| (e.subject(), e.id())).unzip(),
    };
    let Some(Some(first)) = subjects.first() else {
        return Err("a frame without events or without a subject".into());
    };
    if subjects.iter().any(|s| s != &Some(*first)) {
        return Err("a frame whose events have different subjects".into());
    }
    let stream = StreamId::new(first).map_err(|e| format!("subject is no stream id: {e}"))?;
    Ok((stream, ids))
}

/// Whether a whole, valid frame starts anywhere at or after `from`.
fn valid_frame_after(bytes: &[u8], from: usize, limits: &Limits) -> bool {
    (from..bytes.len().saturating_sub(1)).any(|o| {
        bytes[o..o + 2] == FRAME_MAGIC
            && matches!(
                Frames::with_limits(&bytes[o..], *limits).next(),
                Some(Ok(ref f)) if append_of(f).is_ok()
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_name("00000000000000000042.seg.broken"), None);
    }

    #[test]
    fn sync_marks() {
        let mut seg = header(0).to_vec();
        assert_eq!(read_sync_mark(&seg), DATA_START);
        seg.extend_from_slice(&sync_mark(4096));
        assert_eq!(read_sync_mark(&seg), 4096);
        seg[21] ^= 1;
        assert_eq!(read_sync_mark(&seg), DATA_START);
        assert_eq!(read_sync_mark(&[0; 40]), DATA_START);
    }

    #[test]
    fn headers() {
        let h = header(7);
        assert_eq!(read_header(&h), Header::Valid(7));
        assert_eq!(read_header(&h[..19]), Header::Blank);
        assert_eq!(read_header(&[0; 20]), Header::Blank);
        let mut bad = h;
        bad[9] ^= 1;
        assert!(matches!(read_header(&bad), Header::Damaged(_)));
        let mut newer = header(7);
        newer[4] = 2;
        let crc = crc32c::crc32c(&newer[..16]);
        newer[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(read_header(&newer), Header::Unsupported(2));
    }
}
