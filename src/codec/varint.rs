//! Unsigned LEB128 varints, zigzag, and the bounds-checked byte reader every
//! decoder in this module goes through.
//!
//! A varint stores 7 bits per byte, least significant group first; the high bit of
//! each byte says "another byte follows". Decoders accept only the minimal
//! encoding (no trailing `0x80 … 0x00` padding) and at most 10 bytes for a `u64`,
//! 5 for a `u32`, so each value has exactly one encoding.

use super::error::{DecodeError, Field};

/// Appends `v` as a minimal varint.
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes `put_u64(v)` writes: 1 ..= 10.
#[inline]
pub(crate) fn len_u64(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes `v` as a minimal varint into `out[..len_u64(v)]`.
#[inline]
fn write_at(out: &mut [u8], mut v: u64) {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
}

/// Fills the one-byte placeholder at `out[pos]` with `v` as a varint, shifting
/// everything after it right when `v` needs more than one byte.
#[inline]
pub(crate) fn patch_placeholder(out: &mut Vec<u8>, pos: usize, v: u64) {
    if v < 0x80 {
        out[pos] = v as u8;
        return;
    }
    patch_wide(out, pos, v);
}

#[inline(never)]
fn patch_wide(out: &mut Vec<u8>, pos: usize, v: u64) {
    let n = len_u64(v);
    if n > 1 {
        let old_len = out.len();
        out.resize(old_len + n - 1, 0);
        out.copy_within(pos + 1..old_len, pos + n);
    }
    write_at(&mut out[pos..pos + n], v);
}

/// Zigzag: 0, -1, 1, -2, … → 0, 1, 2, 3, …
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over one frame. Every read checks the bytes that remain before it
/// touches them; offsets in errors are relative to the start of the frame.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    /// The frame (or block) being read; reads never go past its end.
    buf: &'a [u8],
    /// Position of the next unread byte, in `0 ..= buf.len()`.
    pos: usize,
    /// Offset of `buf[0]` in the frame, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Offset of the next byte in the frame.
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[cold]
    #[inline(never)]
    fn overrun(&self, field: Field, needed: u64) -> DecodeError {
        DecodeError::LengthMismatch {
            field,
            offset: self.offset(),
            needed,
            available: self.remaining() as u64,
        }
    }

    /// Fails with `TrailingBytes` unless everything was consumed.
    #[inline]
    pub(crate) fn finish(&self, field: Field) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                field,
                offset: self.offset(),
                count: self.remaining(),
            })
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.overrun(field, 1)),
        }
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self, n: u64, field: Field) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() as u64 {
            return Err(self.overrun(field, n));
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub(crate) fn array16(&mut self, field: Field) -> Result<[u8; 16], DecodeError> {
        let s = self.bytes(16, field)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    pub(crate) fn u64_le(&mut self, field: Field) -> Result<u64, DecodeError> {
        let s = self.bytes(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    /// A minimal varint of at most `max_bytes` bytes whose value is at most `max`.
    #[inline(always)]
    fn varint(&mut self, field: Field, max: u64, max_bytes: usize) -> Result<u64, DecodeError> {
        // Fast path: one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow(field, max, max_bytes)
    }

    #[inline(never)]
    fn varint_slow(
        &mut self,
        field: Field,
        max: u64,
        max_bytes: usize,
    ) -> Result<u64, DecodeError> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..max_bytes {
            let b = self.u8(field)?;
            let group = u64::from(b & 0x7f);
            let shift = 7 * i as u32;
            // The 10th byte holds only bit 63.
            if shift == 63 && group > 1 {
                return Err(DecodeError::InvalidVarint {
                    field,
                    offset: start,
                });
            }
            v |= group << shift;
            if b < 0x80 {
                // Minimal: a multi-byte varint never ends in a zero group.
                if i > 0 && b == 0 {
                    return Err(DecodeError::InvalidVarint {
                        field,
                        offset: start,
                    });
                }
                if v > max {
                    return Err(DecodeError::InvalidVarint {
                        field,
                        offset: start,
                    });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::InvalidVarint {
            field,
            offset: start,
        })
    }

    #[inline]
    pub(crate) fn varint_u64(&mut self, field: Field) -> Result<u64, DecodeError> {
        self.varint(field, u64::MAX, 10)
    }

    #[inline]
    pub(crate) fn varint_u32(&mut self, field: Field) -> Result<u32, DecodeError> {
        self.varint(field, u64::from(u32::MAX), 5).map(|v| v as u32)
    }

    /// A varint length followed by that many bytes.
    #[inline(always)]
    pub(crate) fn len_prefixed(&mut self, field: Field) -> Result<&'a [u8], DecodeError> {
        let n = self.varint_u64(field)?;
        self.bytes(n, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<u64, DecodeError> {
        let mut r = Reader::new(bytes, 0);
        let v = r.varint_u64(Field::Version)?;
        r.finish(Field::Version)?;
        Ok(v)
    }

    #[test]
    fn varint_round_trips_at_every_width() {
        let mut values = vec![
            0u64,
            1,
            127,
            128,
            255,
            300,
            16383,
            16384,
            u64::MAX,
            u64::MAX - 1,
        ];
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..64).map(|s| (1u64 << s) - 1));
        for v in values {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            assert_eq!(out.len(), len_u64(v), "{v}");
            assert_eq!(read(&out).unwrap(), v);
        }
    }

    #[test]
    fn varint_rejects_overlong_and_overflow() {
        assert!(read(&[0x80, 0x00]).is_err()); // 0 padded
        assert!(read(&[0x81, 0x80, 0x00]).is_err());
        // 2^64 needs a 10th byte of 0x02: overflow.
        let mut v = vec![0xff; 9];
        v.push(0x02);
        assert!(read(&v).is_err());
        let mut v = vec![0xff; 9];
        v.push(0x01);
        assert_eq!(read(&v).unwrap(), u64::MAX);
        assert!(read(&[0xff; 11]).is_err());
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x10], 0);
        assert!(r.varint_u32(Field::Version).is_err()); // 2^32
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0);
        assert_eq!(r.varint_u32(Field::Version).unwrap(), u32::MAX);
    }

    #[test]
    fn placeholder_patch_shifts_the_tail() {
        for v in [0u64, 127, 128, 20_000, 1 << 40] {
            let mut out = vec![9, 0, 1, 2, 3];
            patch_placeholder(&mut out, 1, v);
            let n = len_u64(v);
            assert_eq!(&out[1 + n..], &[1, 2, 3]);
            let mut r = Reader::new(&out[1..], 0);
            assert_eq!(r.varint_u64(Field::Version).unwrap(), v);
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
