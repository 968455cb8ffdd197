//! Payload content types, and the guarded payload decoders.
//!
//! MessagePack payloads go first through the fast path of
//! [`msgpack`], which writes and reads the bytes `rmp-serde` does
//! and checks as it reads what [`check_msgpack`] checks. Anything it does not
//! handle, and every error, goes to the checked `rmp-serde` path below, which
//! decides: the fast path changes speed, never bytes, values or errors.
//!
//! Before a MessagePack payload reaches `rmp-serde`, [`check_msgpack`] walks it once
//! without allocating: it must be exactly one value, nested at most `max_depth`
//! deep, and every declared string, binary, array and map length must fit in the
//! bytes that remain. That last check is what bounds allocation: serde
//! preallocates collections from their declared length, so a 6-byte payload that
//! declares a 4-billion-element array must never reach it. JSON gets a depth scan
//! before `serde_json` (which checks lengths by construction).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{DecodeError, EncodeError, Field, Limit};
use super::msgpack;
use crate::event::EventEnum;

/// The code that says how a payload's bytes are encoded.
///
/// Codes 0–2 are built in; 3–127 are reserved for future versions of the format;
/// 128–255 are free for applications (written with
/// [`Encoder::encode_raw`](super::Encoder::encode_raw), read with
/// [`EventRef::payload`](super::EventRef::payload)).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct ContentType(u8);

impl ContentType {
    /// Raw bytes in the application's own encoding.
    pub const RAW: ContentType = ContentType(0);
    /// MessagePack, written by `rmp-serde` with structs as maps (field names
    /// included), so any MessagePack reader, and `serde_json::Value`, sees an
    /// object. The default.
    pub const MESSAGEPACK: ContentType = ContentType(1);
    /// UTF-8 JSON, written by `serde_json`. Floats read back through
    /// `serde_json`'s default parser may differ from what was written by one unit
    /// in the last place; MessagePack stores float bits exactly.
    pub const JSON: ContentType = ContentType(2);

    /// The content type with this code.
    pub const fn from_code(code: u8) -> Self {
        ContentType(code)
    }

    /// Its code on the wire.
    pub const fn code(self) -> u8 {
        self.0
    }
}

impl Default for ContentType {
    fn default() -> Self {
        ContentType::MESSAGEPACK
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ContentType::RAW => f.write_str("raw"),
            ContentType::MESSAGEPACK => f.write_str("MessagePack"),
            ContentType::JSON => f.write_str("JSON"),
            ContentType(c) => write!(f, "content type {c}"),
        }
    }
}

/// Appends `data` serialized as `ct`; MessagePack structs as maps (field names
/// written) unless `compact`, then as arrays.
// Always inlined, and only the fast MessagePack path; the rest out of line.
#[inline(always)]
pub(crate) fn serialize<P: Serialize + ?Sized>(
    ct: ContentType,
    data: &P,
    compact: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if ct == ContentType::MESSAGEPACK {
        let start = out.len();
        if msgpack::ser::to_vec(data, !compact, out).is_ok() {
            return Ok(());
        }
        out.truncate(start);
    }
    serialize_checked(ct, data, compact, out)
}

/// [`serialize`] without the fast MessagePack path: what the fast writer does
/// not copy, `rmp-serde` writes (or refuses); and JSON.
#[inline(never)]
fn serialize_checked<P: Serialize + ?Sized>(
    ct: ContentType,
    data: &P,
    compact: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let err = |message: String| EncodeError::Payload {
        content_type: ct,
        message,
    };
    match ct {
        ContentType::MESSAGEPACK => {
            serialize_rmp(data, compact, out).map_err(|e| err(e.to_string()))
        }
        ContentType::JSON => serde_json::to_writer(&mut *out, data).map_err(|e| err(e.to_string())),
        other => Err(EncodeError::UnsupportedContentType(other)),
    }
}

/// `data` written by `rmp-serde`: the reference the fast writer copies, and
/// what runs when it gives up.
pub(crate) fn serialize_rmp<P: Serialize + ?Sized>(
    data: &P,
    compact: bool,
    out: &mut Vec<u8>,
) -> Result<(), rmp_serde::encode::Error> {
    if compact {
        data.serialize(&mut rmp_serde::Serializer::new(&mut *out))
    } else {
        data.serialize(&mut rmp_serde::Serializer::new(&mut *out).with_struct_map())
    }
}

/// Decodes a payload of content type `ct` into `P`.
// Always inlined, and only the fast MessagePack path: out of line, its `Result`
// goes through memory and the caller's reload stalls on the stores that wrote it.
#[inline(always)]
pub(crate) fn deserialize<P: DeserializeOwned>(
    ct: ContentType,
    bytes: &[u8],
    max_depth: u32,
) -> Result<P, DecodeError> {
    if ct == ContentType::MESSAGEPACK {
        if let Ok(v) = msgpack::de::from_slice(bytes, max_depth) {
            return Ok(v);
        }
    }
    deserialize_checked(ct, bytes, max_depth)
}

/// [`deserialize`] without the fast MessagePack path: the checked `rmp-serde`
/// path (which returns the value or decides the error) and JSON.
#[inline(never)]
pub(crate) fn deserialize_checked<P: DeserializeOwned>(
    ct: ContentType,
    bytes: &[u8],
    max_depth: u32,
) -> Result<P, DecodeError> {
    let err = |message: String| DecodeError::Payload {
        content_type: ct,
        message,
    };
    match ct {
        ContentType::MESSAGEPACK => {
            check_msgpack(bytes, max_depth)?;
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(max_depth as usize + 1);
            P::deserialize(&mut de).map_err(|e| err(e.to_string()))
        }
        ContentType::JSON => {
            check_json_depth(bytes, max_depth)?;
            serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))
        }
        other => Err(DecodeError::UnsupportedContentType(other)),
    }
}

/// Decodes a payload of content type `ct` as the variant of `E` that
/// `event_type` names. An unknown event type is refused before the payload is
/// looked at; a payload that is not well formed is [`DecodeError::Payload`] (or a
/// limit), one that is well formed but does not fit the variant
/// [`DecodeError::PayloadMismatch`].
pub(crate) fn deserialize_variant<E: EventEnum>(
    ct: ContentType,
    bytes: &[u8],
    max_depth: u32,
    event_type: &str,
) -> Result<E, DecodeError> {
    let unknown = || DecodeError::UnknownEventType {
        event_type: event_type.to_owned(),
    };
    let mismatch = |message: String| DecodeError::PayloadMismatch {
        event_type: event_type.to_owned(),
        content_type: ct,
        message,
    };
    if !E::has_event_type(event_type) {
        return Err(unknown());
    }
    match ct {
        ContentType::MESSAGEPACK => {
            // Well formed, one value, every length inside the input: what fails
            // after this is the value not fitting the variant's type.
            let mut fast = msgpack::de::FastDe::new(bytes, max_depth);
            if let Some(Ok(v)) = E::deserialize_variant(event_type, &mut fast) {
                if fast.end().is_ok() {
                    return Ok(v);
                }
            }
            check_msgpack(bytes, max_depth)?;
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(max_depth as usize + 1);
            match E::deserialize_variant(event_type, &mut de) {
                None => Err(unknown()),
                Some(r) => r.map_err(|e| mismatch(e.to_string())),
            }
        }
        ContentType::JSON => {
            check_json_depth(bytes, max_depth)?;
            let json_error = |e: serde_json::Error| match e.classify() {
                serde_json::error::Category::Data => mismatch(e.to_string()),
                _ => DecodeError::Payload {
                    content_type: ct,
                    message: e.to_string(),
                },
            };
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = match E::deserialize_variant(event_type, &mut de) {
                None => return Err(unknown()),
                Some(r) => r.map_err(json_error)?,
            };
            de.end().map_err(json_error)?;
            Ok(value)
        }
        other => Err(DecodeError::UnsupportedContentType(other)),
    }
}

fn depth_error(max_depth: u32) -> DecodeError {
    DecodeError::LimitExceeded {
        limit: Limit::Depth,
        value: u64::from(max_depth) + 1,
        max: u64::from(max_depth),
    }
}

/// Checks that `bytes` is exactly one MessagePack value within `max_depth`, with
/// every declared length inside the input. Allocates nothing.
pub(crate) fn check_msgpack(bytes: &[u8], max_depth: u32) -> Result<(), DecodeError> {
    let mut m = MsgPack {
        bytes,
        pos: 0,
        max_depth,
    };
    m.value(0)?;
    if m.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            field: Field::Payload,
            offset: m.pos,
            count: bytes.len() - m.pos,
        });
    }
    Ok(())
}

struct MsgPack<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_depth: u32,
}

impl MsgPack<'_> {
    fn malformed(&self, what: &str) -> DecodeError {
        DecodeError::Payload {
            content_type: ContentType::MESSAGEPACK,
            message: format!("{what} at payload offset {}", self.pos),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline]
    fn skip(&mut self, n: u64) -> Result<(), DecodeError> {
        if n > self.remaining() as u64 {
            return Err(self.malformed(&format!("length {n} runs past the end")));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A big-endian unsigned integer of `n` bytes.
    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        if n > self.remaining() {
            return Err(self.malformed("truncated length"));
        }
        let v = self.bytes[self.pos..self.pos + n]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        self.pos += n;
        Ok(v)
    }

    fn value(&mut self, depth: u32) -> Result<(), DecodeError> {
        let Some(&marker) = self.bytes.get(self.pos) else {
            return Err(self.malformed("missing value"));
        };
        self.pos += 1;
        match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Ok(()),
            0x80..=0x8f => self.container(u64::from(marker & 0x0f), 2, depth),
            0x90..=0x9f => self.container(u64::from(marker & 0x0f), 1, depth),
            0xa0..=0xbf => self.skip(u64::from(marker & 0x1f)),
            0xc1 => {
                self.pos -= 1;
                Err(self.malformed("reserved marker 0xc1"))
            }
            0xc4 | 0xd9 => {
                let n = self.uint(1)?;
                self.skip(n)
            }
            0xc5 | 0xda => {
                let n = self.uint(2)?;
                self.skip(n)
            }
            0xc6 | 0xdb => {
                let n = self.uint(4)?;
                self.skip(n)
            }
            // ext 8/16/32: length, type byte, data.
            0xc7 => {
                let n = self.uint(1)?;
                self.skip(n + 1)
            }
            0xc8 => {
                let n = self.uint(2)?;
                self.skip(n + 1)
            }
            0xc9 => {
                let n = self.uint(4)?;
                self.skip(n + 1)
            }
            0xca => self.skip(4),
            0xcb => self.skip(8),
            0xcc | 0xd0 => self.skip(1),
            0xcd | 0xd1 => self.skip(2),
            0xce | 0xd2 => self.skip(4),
            0xcf | 0xd3 => self.skip(8),
            // fixext 1/2/4/8/16: type byte and data.
            0xd4 => self.skip(2),
            0xd5 => self.skip(3),
            0xd6 => self.skip(5),
            0xd7 => self.skip(9),
            0xd8 => self.skip(17),
            0xdc => {
                let n = self.uint(2)?;
                self.container(n, 1, depth)
            }
            0xdd => {
                let n = self.uint(4)?;
                self.container(n, 1, depth)
            }
            0xde => {
                let n = self.uint(2)?;
                self.container(n, 2, depth)
            }
            0xdf => {
                let n = self.uint(4)?;
                self.container(n, 2, depth)
            }
        }
    }

    /// `n` entries of `per` values each (arrays 1, maps 2).
    fn container(&mut self, n: u64, per: u64, depth: u32) -> Result<(), DecodeError> {
        if depth >= self.max_depth {
            return Err(depth_error(self.max_depth));
        }
        // Every value takes at least one byte.
        let values = n * per;
        if values > self.remaining() as u64 {
            return Err(self.malformed(&format!(
                "collection of {n} entries cannot fit in {} bytes",
                self.remaining()
            )));
        }
        for _ in 0..values {
            // Inline the common leaves (short strings, small integers, nil,
            // booleans); recurse for the rest.
            match self.bytes.get(self.pos) {
                Some(&m @ 0xa0..=0xbf) => {
                    self.pos += 1;
                    self.skip(u64::from(m & 0x1f))?;
                }
                Some(0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3) => self.pos += 1,
                _ => self.value(depth + 1)?,
            }
        }
        Ok(())
    }
}

/// Checks that JSON text nests arrays and objects at most `max_depth` deep.
pub(crate) fn check_json_depth(bytes: &[u8], max_depth: u32) -> Result<(), DecodeError> {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(depth_error(max_depth));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_check_accepts_what_rmp_writes() {
        let v =
            serde_json::json!({"a": [1, -2, 3.5, null, true, "x"], "b": {"c": "d"}, "e": u64::MAX});
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        check_msgpack(&bytes, 8).unwrap();
        assert!(check_msgpack(&bytes, 1).is_err()); // depth 2
        let mut trailing = bytes.clone();
        trailing.push(0xc0);
        assert!(matches!(
            check_msgpack(&trailing, 8),
            Err(DecodeError::TrailingBytes { .. })
        ));
        for cut in 0..bytes.len() {
            assert!(check_msgpack(&bytes[..cut], 8).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn msgpack_check_refuses_huge_declared_lengths() {
        // array32 declaring 2^32-1 elements, then one.
        assert!(check_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], 8).is_err());
        assert!(check_msgpack(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], 8).is_err());
        assert!(check_msgpack(&[0xc1], 8).is_err());
    }

    #[test]
    fn json_depth() {
        check_json_depth(br#"{"a":[[1]],"s":"[[[[["}"#, 3).unwrap();
        assert!(check_json_depth(br#"{"a":[[1]]}"#, 2).is_err());
        assert!(check_json_depth(br#""\"[[[[""#, 1).is_ok());
    }
}
