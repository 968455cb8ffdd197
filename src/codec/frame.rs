//! The frame header, the checksum, extensions and name checks shared by event and
//! batch frames.

use super::error::{DecodeError, Field, FrameKind, Limit};
use super::varint::Reader;
use super::Limits;
use crate::event::NameError;
use crc32c::crc32c;

/// The first two bytes of every frame.
pub(crate) const MAGIC: [u8; 2] = [0xEB, 0x52];
/// The format version this module writes and reads.
pub(crate) const VERSION: u8 = 1;

/// Event frame: a subject follows the version. Batch event: the same.
pub(crate) const FLAG_SUBJECT: u8 = 0x01;
/// A correlation id follows.
pub(crate) const FLAG_CORRELATION: u8 = 0x02;
/// A causation id follows.
pub(crate) const FLAG_CAUSATION: u8 = 0x04;
/// An extension block follows the payload.
pub(crate) const FLAG_EXTENSIONS: u8 = 0x08;
/// Header only: the frame ends with a CRC-32C.
pub(crate) const FLAG_CHECKSUM: u8 = 0x10;
/// Header only: this is a batch frame.
pub(crate) const FLAG_BATCH: u8 = 0x20;

/// The bits an event's own flags may use (in an event frame's header, or a batch
/// event's flags byte).
pub(crate) const EVENT_FLAGS: u8 =
    FLAG_SUBJECT | FLAG_CORRELATION | FLAG_CAUSATION | FLAG_EXTENSIONS;

/// The longest header: magic, version, flags, a 5-byte length.
pub(crate) const MAX_HEADER_LEN: usize = 9;

/// A parsed header.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Header {
    /// The flags byte, reserved bits checked.
    pub(crate) flags: u8,
    /// Offset of the body in the frame (after the length varint): 5 ..= 9.
    pub(crate) body_start: usize,
    /// Total frame length, header and checksum included.
    pub(crate) frame_len: usize,
}

impl Header {
    pub(crate) fn kind(&self) -> FrameKind {
        if self.flags & FLAG_BATCH != 0 {
            FrameKind::Batch
        } else {
            FrameKind::Event
        }
    }

    /// The body without the checksum, once the checksum (if any) is verified.
    /// `frame` is exactly `frame_len` bytes.
    // Always inlined, as `parse_header`: out of line, the `Result` goes through
    // memory and its reload stalls on the stores that wrote it.
    #[inline(always)]
    pub(crate) fn verified_body<'a>(&self, frame: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        debug_assert_eq!(frame.len(), self.frame_len);
        let mut end = self.frame_len;
        if self.flags & FLAG_CHECKSUM != 0 {
            if end - self.body_start < 4 {
                return Err(DecodeError::LengthMismatch {
                    field: Field::Checksum,
                    offset: self.body_start,
                    needed: 4,
                    available: (end - self.body_start) as u64,
                });
            }
            end -= 4;
            let mut stored = [0u8; 4];
            stored.copy_from_slice(&frame[end..]);
            let stored = u32::from_le_bytes(stored);
            let computed = crc32c(&frame[..end]);
            if stored != computed {
                return Err(DecodeError::ChecksumMismatch { stored, computed });
            }
        }
        Ok(Reader::new(&frame[self.body_start..end], self.body_start))
    }
}

/// Parses the header at the start of `input`.
///
/// `Truncated` means `input` ends before the header or the frame does (with
/// `needed` telling how much more is needed at least); any other error means no
/// amount of further input can make this a frame.
#[inline(always)]
pub(crate) fn parse_header(input: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    // Fast path: a whole small event frame without reserved bits.
    if let [m0, m1, v, flags, len, ..] = *input {
        if [m0, m1] == MAGIC
            && v == VERSION
            && flags & !(EVENT_FLAGS | FLAG_CHECKSUM) == 0
            && len < 0x80
        {
            let frame_len = 5 + usize::from(len);
            if frame_len <= input.len() && frame_len <= limits.max_frame_len {
                return Ok(Header {
                    flags,
                    body_start: 5,
                    frame_len,
                });
            }
        }
    }
    parse_header_slow(input, limits)
}

#[inline(never)]
fn parse_header_slow(input: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    let truncated = |needed: usize| DecodeError::Truncated {
        offset: input.len(),
        needed,
    };
    // Check what is there byte by byte, so garbage is refused as early as possible.
    for (i, &m) in MAGIC.iter().enumerate() {
        match input.get(i) {
            None => return Err(truncated(MAGIC.len() - i)),
            Some(&b) if b != m => {
                return Err(DecodeError::BadMagic {
                    found: [input[0], input.get(1).copied().unwrap_or(0)],
                })
            }
            Some(_) => {}
        }
    }
    let Some(&version) = input.get(2) else {
        return Err(truncated(1));
    };
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let Some(&flags) = input.get(3) else {
        return Err(truncated(1));
    };
    let allowed = if flags & FLAG_BATCH != 0 {
        FLAG_BATCH | FLAG_CHECKSUM
    } else {
        EVENT_FLAGS | FLAG_CHECKSUM
    };
    if flags & !allowed != 0 {
        return Err(DecodeError::UnsupportedFlags(flags & !allowed));
    }
    // The body length: a minimal varint of at most 5 bytes (a u32).
    let mut r = Reader::new(&input[4..input.len().min(MAX_HEADER_LEN)], 4);
    let body_len = match r.varint_u32(Field::Header) {
        Ok(n) => n as usize,
        // Ran off the end of the input (not of the frame): wait for more.
        Err(DecodeError::LengthMismatch { .. }) => return Err(truncated(1)),
        Err(e) => return Err(e),
    };
    let body_start = r.offset();
    let frame_len = body_start + body_len;
    if frame_len > limits.max_frame_len {
        return Err(DecodeError::LimitExceeded {
            limit: Limit::FrameLen,
            value: frame_len as u64,
            max: limits.max_frame_len as u64,
        });
    }
    if input.len() < frame_len {
        return Err(truncated(frame_len - input.len()));
    }
    Ok(Header {
        flags,
        body_start,
        frame_len,
    })
}

/// Extension tag 4 (FORMAT.md §5): the event's position in its event store, a
/// varint64 (never `u64::MAX`). Even: decoders that do not know it skip it.
pub(crate) const EXT_POSITION: u64 = 4;

/// A checked extension block, and the records this version reads from it.
#[must_use = "the block carries the event's position"]
pub(crate) struct CheckedExtensions<'a> {
    /// The whole block.
    pub(crate) block: &'a [u8],
    /// The position record's value (the last, if it repeats).
    pub(crate) position: Option<u64>,
}

/// Checks an extension block (a sequence of `tag, length, data` records) and
/// returns it with the records this version knows read. Unknown even tags are
/// skipped; odd tags are critical, and this version knows none.
pub(crate) fn read_extensions<'a>(
    r: &mut Reader<'a>,
) -> Result<CheckedExtensions<'a>, DecodeError> {
    let offset = r.offset();
    let block = r.len_prefixed(Field::Extensions)?;
    let mut inner = Reader::new(block, offset + (r.offset() - offset - block.len()));
    let mut position = None;
    while inner.remaining() > 0 {
        let tag = inner.varint_u64(Field::Extensions)?;
        let data = inner.len_prefixed(Field::Extensions)?;
        if tag == EXT_POSITION {
            let at = inner.offset() - data.len();
            let mut d = Reader::new(data, at);
            let p = d.varint_u64(Field::Extensions)?;
            d.finish(Field::Extensions)?;
            if p == u64::MAX {
                return Err(DecodeError::InvalidVarint {
                    field: Field::Extensions,
                    offset: at,
                });
            }
            position = Some(p);
        } else if tag & 1 == 1 {
            return Err(DecodeError::UnknownCriticalExtension { tag });
        }
    }
    Ok(CheckedExtensions { block, position })
}

/// An iterator over the `(tag, data)` records of a checked extension block.
#[derive(Clone, Debug)]
pub struct Extensions<'a> {
    r: Reader<'a>,
}

impl<'a> Extensions<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Self {
        Extensions {
            r: Reader::new(block, 0),
        }
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        // The block was checked when the frame was decoded; a failure here cannot
        // happen, and ends the iteration if it did.
        let tag = self.r.varint_u64(Field::Extensions).ok()?;
        let data = self.r.len_prefixed(Field::Extensions).ok()?;
        Some((tag, data))
    }
}

/// Reads a length-prefixed UTF-8 string.
#[inline]
pub(crate) fn read_str<'a>(r: &mut Reader<'a>, field: Field) -> Result<&'a str, DecodeError> {
    let offset = r.offset();
    let bytes = r.len_prefixed(field)?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field, offset })
}

/// Reads an event-type name and checks it is one [`crate::event::EventType::try_new`]
/// accepts.
#[inline]
pub(crate) fn read_event_type<'a>(
    r: &mut Reader<'a>,
    field: Field,
) -> Result<&'a str, DecodeError> {
    let offset = r.offset();
    let bytes = r.len_prefixed(field)?;
    super::names::event_type_name(bytes, offset, field)
}

/// Reads a source name and checks it is one [`crate::event::Source::try_new`] accepts.
#[inline]
pub(crate) fn read_source<'a>(r: &mut Reader<'a>, field: Field) -> Result<&'a str, DecodeError> {
    let offset = r.offset();
    let bytes = r.len_prefixed(field)?;
    super::names::source_name_of(bytes, offset, field)
}

/// The event-type rules of `EventType::try_new` (dot-separated non-empty tokens,
/// no whitespace, control characters, `*` or `>`), with a fast path for ASCII.
#[inline]
pub(crate) fn check_event_type(s: &str) -> Result<(), NameError> {
    let b = s.as_bytes();
    if let (Some(&first), Some(&last)) = (b.first(), b.last()) {
        // Branch-free over the bytes: printable ASCII other than `*` and `>`, and
        // no two dots in a row; then no leading or trailing dot.
        let printable = b.iter().fold(true, |ok, &c| {
            ok & (c.wrapping_sub(0x21) < 0x5e) & (c != b'*') & (c != b'>')
        });
        let double_dot = b
            .iter()
            .zip(&b[1..])
            .fold(false, |acc, (&x, &y)| acc | ((x == b'.') & (y == b'.')));
        if printable
            && !double_dot
            && first != b'.'
            && last != b'.'
            && b.len() <= crate::event::MAX_NAME_LEN
        {
            return Ok(());
        }
    }
    // The general rule, exactly as `EventType::try_new` applies it.
    crate::event::validate_event_type(s)
}

/// The event module's source rules: 1 ..= 255 bytes, no control characters.
#[inline]
pub(crate) fn check_source(s: &str) -> Result<(), NameError> {
    // Fast path: short printable ASCII is always a valid source.
    let printable_ascii = s
        .bytes()
        .fold(true, |ok, c| ok & (c.wrapping_sub(0x20) < 0x5f));
    if printable_ascii && !s.is_empty() && s.len() <= crate::event::MAX_NAME_LEN {
        return Ok(());
    }
    crate::event::validate_source(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_checks_agree_with_the_event_module() {
        let names = [
            "a",
            "a.b",
            "user.registered",
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a*",
            "a>",
            "a\tb",
            "é.ü",
            "a\u{85}b",
            "a\u{a0}b",
            "x\u{7f}",
            "order service #1",
            "s\u{7}",
        ];
        for n in names {
            assert_eq!(
                check_event_type(n).is_ok(),
                crate::event::EventType::try_new(n).is_ok(),
                "event type {n:?}"
            );
            assert_eq!(
                check_source(n).is_ok(),
                crate::event::Source::try_new(n).is_ok(),
                "source {n:?}"
            );
        }
        let long = "a".repeat(256);
        assert!(check_event_type(&long).is_err());
        assert!(check_source(&long).is_err());
    }
}
