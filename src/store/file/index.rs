//! Segment index files: what open needs to know about a sealed segment without
//! reading it.
//!
//! When the committer seals a segment (it is full and synced) it writes
//! `log/<first position, 20 digits>.idx` beside it: `.idx.tmp`, synced, then
//! renamed (no directory sync: a missing or bad index is rebuilt, never trusted).
//! On open, a sealed segment whose index is valid is loaded from the index
//! alone; one without a valid index is scanned ([`segment::scan`]) and its
//! index written again. The last segment is always scanned.
//!
//! The index is **dense**, not sparse: the store keeps every frame's location
//! in memory anyway, so the index holds exactly what rebuilds the frame table,
//! the stream index and the committer's per-stream ids — per frame its length
//! (frames lie back to back from [`DATA_START`], so the lengths give the
//! offsets), its stream and its events' ids. The format, all integers
//! little-endian:
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..4 | magic `RBIX` |
//! | 4 | index format version, `1` |
//! | 5..8 | zero |
//! | 8..16 | the segment's first position, u64 (= its name) |
//! | 16..24 | the segment's clean end: the offset just past its last frame, u64 |
//! | 24..28 | S, the number of streams, u32 |
//! | 28..32 | F, the number of frames, u32 |
//! | 32..40 | E, the number of events, u64 |
//! | then S times | a stream name: u16 length, that many bytes of UTF-8 (a valid stream id, each name once) |
//! | then F times | a frame: its length u32 (> 0), its stream (an index into the names) u32, its event count u32 (> 0) |
//! | then E times | an event id, 16 bytes (UUID byte order), frame after frame |
//! | last 4 | CRC-32C of everything before it |
//!
//! The frame lengths add up to `end - DATA_START` and the event counts to E.
//! Open trusts an index only if, besides all that, its first position is the
//! segment's name and the position the previous segment ended at, `end` is
//! within the segment file, the segment's header is valid for that position,
//! the last frame the index names is at that place in the segment, checksummed,
//! with that stream and those ids, and nothing but zeros or the end of the file
//! follows it. Reads check every frame's CRC anyway.
//!
//! [`segment::scan`]: super::segment::scan

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::segment::{self, Header, DATA_START, HEADER_LEN};
use crate::codec::{Frames, Limits};
use crate::event::EventId;
use crate::store::vfs::{OpenMode, Vfs, VfsFile};
use crate::store::StreamId;

const MAGIC: [u8; 4] = *b"RBIX";
/// The index format this code writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// The fixed part before the stream names.
const FIXED: usize = 40;
/// A frame entry's bytes.
const FRAME_ENTRY: usize = 12;
/// An id's bytes.
const ID: usize = 16;
/// The checksum's bytes.
const CRC: usize = 4;

/// One frame of an index.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexFrame {
    /// The frame's length in bytes, `> 0`.
    pub(crate) len: u32,
    /// Its stream: an index into [`Index::streams`].
    pub(crate) stream: u32,
    /// Its number of events, `> 0`.
    pub(crate) count: u32,
}

/// What a segment holds, frame by frame: built while a segment is scanned or
/// written, or decoded from its `.idx` file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    /// The segment's first position.
    pub(crate) first: u64,
    /// Each stream once, in order of first appearance.
    pub(crate) streams: Vec<StreamId>,
    /// The frames in order.
    pub(crate) frames: Vec<IndexFrame>,
    /// Every event's id, frame after frame.
    pub(crate) ids: Vec<EventId>,
    /// The frames' bytes, summed.
    bytes: u64,
    /// Stream → index into `streams`.
    ordinals: HashMap<StreamId, u32, ahash::RandomState>,
}

impl PartialEq for Index {
    fn eq(&self, other: &Self) -> bool {
        self.first == other.first
            && self.bytes == other.bytes
            && self.streams == other.streams
            && self.frames == other.frames
            && self.ids == other.ids
    }
}

impl Index {
    /// The index of an empty segment whose first event is at `first`.
    pub(crate) fn new(first: u64) -> Self {
        Index {
            first,
            ..Index::default()
        }
    }

    /// Adds the next frame: `len` bytes, stream `stream`, events with `ids`.
    pub(crate) fn push(
        &mut self,
        len: u32,
        stream: &StreamId,
        ids: impl IntoIterator<Item = EventId>,
    ) {
        let next = self.streams.len() as u32;
        let ordinal = *self.ordinals.entry(stream.clone()).or_insert(next);
        if ordinal == next {
            self.streams.push(stream.clone());
        }
        let before = self.ids.len();
        self.ids.extend(ids);
        self.frames.push(IndexFrame {
            len,
            stream: ordinal,
            count: (self.ids.len() - before) as u32,
        });
        self.bytes += u64::from(len);
    }

    /// The offset just past the last frame.
    pub(crate) fn end(&self) -> u64 {
        DATA_START + self.bytes
    }

    /// The number of events.
    pub(crate) fn events(&self) -> u64 {
        self.ids.len() as u64
    }

    /// The `.idx` file's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let names: usize = self.streams.iter().map(|s| 2 + s.as_str().len()).sum();
        let mut out = Vec::with_capacity(
            FIXED + names + self.frames.len() * FRAME_ENTRY + self.ids.len() * ID + CRC,
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.end().to_le_bytes());
        out.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.events().to_le_bytes());
        for s in &self.streams {
            out.extend_from_slice(&(s.as_str().len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_str().as_bytes());
        }
        for f in &self.frames {
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.stream.to_le_bytes());
            out.extend_from_slice(&f.count.to_le_bytes());
        }
        for id in &self.ids {
            out.extend_from_slice(&id.to_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an `.idx` file and checks it is consistent in itself (not yet
    /// against its segment: [`Index::check_segment`]). Allocates no more than a
    /// small multiple of `bytes.len()`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Index, String> {
        if bytes.len() < FIXED + CRC {
            return Err(format!("{} bytes, shorter than an index", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC);
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != crc32c::crc32c(body) {
            return Err("index checksum mismatch".into());
        }
        if body[..4] != MAGIC {
            return Err("bad index magic".into());
        }
        if body[4] != FORMAT_VERSION || body[5..8] != [0, 0, 0] {
            return Err(format!("index format version {}", body[4]));
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let first = u64_at(8);
        let end = u64_at(16);
        let n_streams = u32_at(24) as usize;
        let n_frames = u32_at(28) as usize;
        let n_events = u64_at(32);
        // Sizes before allocating: each name takes at least 3 bytes.
        let tables = (n_frames as u64)
            .checked_mul(FRAME_ENTRY as u64)
            .and_then(|f| n_events.checked_mul(ID as u64)?.checked_add(f))
            .and_then(|t| t.checked_add(3 * n_streams as u64 + FIXED as u64));
        if tables.is_none_or(|t| t > body.len() as u64) {
            return Err("index counts exceed its length".into());
        }
        if first.checked_add(n_events).is_none() {
            return Err("index positions overflow".into());
        }
        let mut at = FIXED;
        let mut streams = Vec::with_capacity(n_streams);
        let mut seen = HashSet::with_capacity(n_streams);
        for _ in 0..n_streams {
            let len = body
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or("index stream table truncated")?;
            let name = body
                .get(at + 2..at + 2 + len)
                .ok_or("index stream table truncated")?;
            let name = std::str::from_utf8(name).map_err(|_| "index stream name is not UTF-8")?;
            let stream = StreamId::new(name).map_err(|e| format!("index stream name: {e}"))?;
            if !seen.insert(stream.clone()) {
                return Err("index names a stream twice".into());
            }
            streams.push(stream);
            at += 2 + len;
        }
        let rest = &body[at..];
        let frame_bytes = n_frames * FRAME_ENTRY;
        if rest.len() as u64 != frame_bytes as u64 + n_events * ID as u64 {
            return Err("index tables do not fill it".into());
        }
        let (frame_table, id_table) = rest.split_at(frame_bytes);
        let mut frames = Vec::with_capacity(n_frames);
        let mut bytes_sum = 0_u64;
        let mut events = 0_u64;
        for e in frame_table.chunks_exact(FRAME_ENTRY) {
            let word = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4 bytes"));
            let f = IndexFrame {
                len: word(0),
                stream: word(4),
                count: word(8),
            };
            if f.len == 0 || f.count == 0 || f.stream as usize >= streams.len() {
                return Err("index frame entry out of range".into());
            }
            bytes_sum += u64::from(f.len);
            events += u64::from(f.count);
            frames.push(f);
        }
        if events != n_events {
            return Err("index event count does not match its frames".into());
        }
        if end.checked_sub(DATA_START) != Some(bytes_sum) {
            return Err(format!(
                "index end {end} is not where its frames end ({})",
                DATA_START + bytes_sum
            ));
        }
        let ids = id_table
            .chunks_exact(ID)
            .map(|b| EventId::from_bytes(b.try_into().expect("16 bytes")))
            .collect();
        let ordinals = streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Ok(Index {
            first,
            streams,
            frames,
            ids,
            bytes: bytes_sum,
            ordinals,
        })
    }

    /// Checks this index against its segment `file` (of length `file_len`),
    /// named for position `named` and expected to start at `next`: see the
    /// module documentation. Reads the header, the last frame and the byte
    /// after it.
    pub(crate) fn check_segment(
        &self,
        file: &dyn VfsFile,
        file_len: u64,
        named: u64,
        next: u64,
        limits: &Limits,
    ) -> Result<(), String> {
        if self.first != named || self.first != next {
            return Err(format!(
                "index starts at {} for a segment named {named}, expected {next}",
                self.first
            ));
        }
        let end = self.end();
        if end > file_len {
            return Err(format!(
                "index end {end} is beyond the segment's {file_len} bytes"
            ));
        }
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| e.to_string())?;
        if segment::read_header(&head) != Header::Valid(self.first) {
            return Err("the segment's header does not match its index".into());
        }
        let Some(last) = self.frames.last() else {
            return check_clean_end(file, end, file_len);
        };
        let start = end - u64::from(last.len);
        let mut buf = vec![0u8; last.len as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| e.to_string())?;
        let mut frames = Frames::with_limits(&buf, *limits);
        let frame = match frames.next() {
            Some(Ok(f)) if frames.remainder().is_empty() => f,
            _ => return Err(format!("no frame of {} bytes at {start}", last.len)),
        };
        let (stream, ids) = segment::append_of(&frame)?;
        let last_ids = &self.ids[self.ids.len() - last.count as usize..];
        if stream != self.streams[last.stream as usize] || ids != last_ids {
            return Err(format!(
                "the frame at {start} is not the one the index names"
            ));
        }
        check_clean_end(file, end, file_len)
    }
}

/// The segment has nothing but a zero byte, or its end, at `end`.
fn check_clean_end(file: &dyn VfsFile, end: u64, file_len: u64) -> Result<(), String> {
    if end == file_len {
        return Ok(());
    }
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, end).map_err(|e| e.to_string())?;
    if b[0] != 0 {
        return Err(format!("a frame follows the index's end {end}"));
    }
    Ok(())
}

/// `<first, 20 digits>.idx`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}.idx")
}

/// What a name in the log directory is, as far as indexes go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IndexName {
    /// `<first>.idx`.
    Index(u64),
    /// `<first>.idx.tmp`: an index write that did not finish.
    Temporary,
}

/// Parses an index file name.
pub(crate) fn parse_name(name: &str) -> Option<IndexName> {
    if let Some(stem) = name.strip_suffix(".idx.tmp") {
        return digits(stem).map(|_| IndexName::Temporary);
    }
    digits(name.strip_suffix(".idx")?).map(IndexName::Index)
}

fn digits(stem: &str) -> Option<u64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The path of the index of the segment starting at `first` in `log_dir`.
pub(crate) fn path(log_dir: &Path, first: u64) -> PathBuf {
    log_dir.join(file_name(first))
}

/// Writes `index` for its segment in `log_dir`: `.idx.tmp`, synced, renamed to
/// `.idx` (without a directory sync).
pub(crate) fn write(vfs: &dyn Vfs, log_dir: &Path, index: &Index) -> io::Result<()> {
    write_bytes(vfs, log_dir, index.first, &index.encode())
}

/// Writes `bytes` as the index of the segment starting at `first`.
pub(crate) fn write_bytes(
    vfs: &dyn Vfs,
    log_dir: &Path,
    first: u64,
    bytes: &[u8],
) -> io::Result<()> {
    let path = path(log_dir, first);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let f = vfs.open(&tmp, OpenMode::Create)?;
    f.set_len(0)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    vfs.rename(&tmp, &path)
}

/// Reads a whole file.
pub(crate) fn read_file(vfs: &dyn Vfs, path: &Path) -> io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenMode::Read)?;
    let mut bytes = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;
    use crate::store::sim::SimFs;
    use crate::{event_type, source, Event};

    fn stream(name: &str) -> StreamId {
        StreamId::new(name).unwrap()
    }

    fn sample() -> Index {
        let mut ix = Index::new(7);
        ix.push(100, &stream("aa"), [EventId::from_bytes([1; 16])]);
        ix.push(
            250,
            &stream("bb"),
            [EventId::from_bytes([2; 16]), EventId::from_bytes([3; 16])],
        );
        ix.push(90, &stream("aa"), [EventId::from_bytes([4; 16])]);
        ix
    }

    #[test]
    fn round_trips_and_is_laid_out_as_documented() {
        let ix = sample();
        assert_eq!(ix.end(), DATA_START + 440);
        assert_eq!(ix.streams, [stream("aa"), stream("bb")]);
        assert_eq!(
            ix.frames
                .iter()
                .map(|f| (f.stream, f.count))
                .collect::<Vec<_>>(),
            [(0, 1), (1, 2), (0, 1)]
        );
        let bytes = ix.encode();
        let names = (2 + 2) + (2 + 2);
        assert_eq!(bytes.len(), FIXED + names + 3 * FRAME_ENTRY + 4 * ID + CRC);
        assert_eq!(&bytes[..4], b"RBIX");
        assert_eq!(bytes[4], 1);
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 7);
        assert_eq!(
            u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            DATA_START + 440
        );
        assert_eq!(
            &bytes[24..40],
            &[2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&bytes[40..48], &[2, 0, b'a', b'a', 2, 0, b'b', b'b']);
        let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&bytes[..bytes.len() - 4]));
        let back = Index::decode(&bytes).unwrap();
        assert_eq!(back, ix);
        // Decoded, it goes on like a built one (the builder's stream table too).
        let mut a = back;
        let mut b = ix;
        a.push(5, &stream("bb"), [EventId::from_bytes([9; 16])]);
        b.push(5, &stream("bb"), [EventId::from_bytes([9; 16])]);
        assert_eq!(a, b);
        assert_eq!(a.frames[3].stream, 1);
    }

    #[test]
    fn an_empty_index_round_trips() {
        let ix = Index::new(0);
        assert_eq!(ix.end(), DATA_START);
        assert_eq!(Index::decode(&ix.encode()).unwrap(), ix);
    }

    /// Rewrites the checksum of a tampered index, so the checks behind it are
    /// what rejects it.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn every_truncation_and_flipped_bit_is_rejected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Index::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(Index::decode(&b).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn inconsistent_tables_are_rejected_even_with_a_good_checksum() {
        let good = sample().encode();
        type Tamper = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Tamper)> = vec![
            ("magic", Box::new(|b| b[0] = b'X')),
            ("version", Box::new(|b| b[4] = 2)),
            ("end", Box::new(|b| b[16] ^= 1)),
            ("streams", Box::new(|b| b[24] = 3)),
            ("frames", Box::new(|b| b[28] = 200)),
            (
                "huge frames",
                Box::new(|b| b[28..32].copy_from_slice(&u32::MAX.to_le_bytes())),
            ),
            ("events", Box::new(|b| b[32] = 5)),
            (
                "huge events",
                Box::new(|b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            ("name not utf-8", Box::new(|b| b[42] = 0xFF)),
            ("name not a stream id", Box::new(|b| b[42] = b'\n')),
            (
                "duplicate name",
                Box::new(|b| b[46..48].copy_from_slice(b"aa")),
            ),
            ("empty name", Box::new(|b| b[40] = 0)),
            // The first frame entry starts after the names (40 + 4 + 4).
            (
                "zero length",
                Box::new(|b| b[48..52].copy_from_slice(&[0; 4])),
            ),
            ("stream ordinal", Box::new(|b| b[52] = 2)),
            (
                "zero count",
                Box::new(|b| b[56..60].copy_from_slice(&[0; 4])),
            ),
            ("trailing byte", Box::new(|b| b.insert(b.len() - 4, 0))),
        ];
        for (what, tamper) in cases {
            let mut b = good.clone();
            tamper(&mut b);
            let b = reseal(b);
            assert!(Index::decode(&b).is_err(), "{what} accepted");
        }
        assert!(Index::decode(&reseal(good)).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(file_name(42), "00000000000000000042.idx");
        assert_eq!(parse_name(&file_name(42)), Some(IndexName::Index(42)));
        assert_eq!(
            parse_name("00000000000000000042.idx.tmp"),
            Some(IndexName::Temporary)
        );
        assert_eq!(parse_name("00000000000000000042.seg"), None);
        assert_eq!(parse_name("42.idx"), None);
        assert_eq!(parse_name("00000000000000000042.idx.broken"), None);
    }

    /// A segment of three appends written the way the committer writes them,
    /// and its index.
    fn segment_and_index(first: u64) -> (Vec<u8>, Index) {
        let enc = Encoder::new().checksum(true);
        let mut seg = segment::header(first).to_vec();
        seg.extend_from_slice(&segment::sync_mark(DATA_START));
        let mut ix = Index::new(first);
        for (s, k) in [("a", 1), ("b", 3), ("a", 2)] {
            let st = stream(s);
            let events: Vec<Event<u32>> = (0..k)
                .map(|i| {
                    let mut e = Event::new(event_type!("t"), source!("s"), i);
                    e.subject = Some(st.as_subject().clone());
                    e
                })
                .collect();
            let mut frame = Vec::new();
            if k == 1 {
                enc.encode(&events[0], &mut frame).unwrap();
            } else {
                enc.encode_batch(&events, &mut frame).unwrap();
            }
            ix.push(frame.len() as u32, &st, events.iter().map(|e| e.id));
            seg.extend_from_slice(&frame);
        }
        (seg, ix)
    }

    fn file_with(fs: &SimFs, bytes: &[u8]) -> std::sync::Arc<dyn VfsFile> {
        let p = Path::new("/seg");
        let _ = fs.remove_file(p);
        let f = fs.open(p, OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn an_index_is_checked_against_its_segment() {
        let fs = SimFs::new();
        let limits = Limits::DEFAULT;
        let (seg, ix) = segment_and_index(10);
        let len = seg.len() as u64;
        assert_eq!(ix.end(), len);
        let f = file_with(&fs, &seg);
        ix.check_segment(&*f, len, 10, 10, &limits).unwrap();
        // Preallocated: zeros after the end are fine.
        let mut padded = seg.clone();
        padded.resize(seg.len() + 100, 0);
        let f = file_with(&fs, &padded);
        ix.check_segment(&*f, len + 100, 10, 10, &limits).unwrap();

        let f = file_with(&fs, &seg);
        assert!(ix.check_segment(&*f, len, 11, 10, &limits).is_err(), "name");
        assert!(
            ix.check_segment(&*f, len, 10, 11, &limits).is_err(),
            "expected"
        );
        assert!(
            ix.check_segment(&*f, len - 1, 10, 10, &limits).is_err(),
            "beyond the file"
        );
        // The segment holds a frame more than the index says: stale.
        let mut shorter = Index::new(10);
        for (i, fr) in ix.frames[..2].iter().enumerate() {
            let at: usize = ix.frames[..i].iter().map(|f| f.count as usize).sum();
            shorter.push(
                fr.len,
                &ix.streams[fr.stream as usize],
                ix.ids[at..at + fr.count as usize].iter().copied(),
            );
        }
        assert!(
            shorter.check_segment(&*f, len, 10, 10, &limits).is_err(),
            "stale"
        );
        // The segment holds less than the index says (truncated, zeros after).
        let mut cut = seg[..seg.len() - 30].to_vec();
        cut.resize(seg.len(), 0);
        let f = file_with(&fs, &cut);
        assert!(
            ix.check_segment(&*f, len, 10, 10, &limits).is_err(),
            "truncated"
        );
        // Another segment's index of the same shape.
        let (_, other) = segment_and_index(10);
        let f = file_with(&fs, &seg);
        assert!(
            other.check_segment(&*f, len, 10, 10, &limits).is_err(),
            "other ids"
        );
        // A damaged header.
        let mut bad = seg.clone();
        bad[9] ^= 1;
        let f = file_with(&fs, &bad);
        assert!(
            ix.check_segment(&*f, len, 10, 10, &limits).is_err(),
            "header"
        );
    }

    #[test]
    fn writes_go_through_a_temporary_file() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/log")).unwrap();
        let ix = sample();
        write(&fs, Path::new("/log"), &ix).unwrap();
        assert_eq!(fs.list(Path::new("/log")).unwrap(), [file_name(7)]);
        let bytes = read_file(&fs, &path(Path::new("/log"), 7)).unwrap();
        assert_eq!(Index::decode(&bytes).unwrap(), ix);
        // Rewritten shorter: no old bytes left at the end.
        let small = Index::new(7);
        write(&fs, Path::new("/log"), &small).unwrap();
        let bytes = read_file(&fs, &path(Path::new("/log"), 7)).unwrap();
        assert_eq!(Index::decode(&bytes).unwrap(), small);
    }
}
