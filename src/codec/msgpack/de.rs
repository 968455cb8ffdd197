//! The fast MessagePack reader: a serde `Deserializer` over a byte slice that
//! makes the same visitor calls as `rmp_serde::Deserializer::from_read_ref` for
//! the values it handles, and gives up on everything else.
//!
//! One deliberate difference in visitor calls: a field or variant name written
//! as a string is offered to `deserialize_identifier`'s visitor as bytes, which
//! derived visitors treat exactly as the string; see
//! `FastDe::deserialize_identifier`.
//!
//! It checks as it reads what [`check_msgpack`](super::super::payload::check_msgpack)
//! checks before `rmp-serde` runs: one value filling the payload, containers at
//! most `max_depth` deep, every declared length inside the input (a collection
//! of `n` entries needs `n` bytes per value before anything is visited, so serde
//! never sizes anything from an unchecked count). It never decides an error: on
//! anything it does not read exactly as `rmp-serde` would (ext types, bin read as
//! a sequence, invalid UTF-8 strings, 128-bit integers, an error raised by the
//! visitor, a length mismatch, too deep, trailing bytes) it returns [`GiveUp`],
//! and the caller runs the checked `rmp-serde` path, which decides.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// This reader cannot decide the payload; the `rmp-serde` path must. Carries no
/// message, so raising it allocates nothing.
#[derive(Debug)]
pub(crate) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not read by the fast MessagePack path")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    #[inline]
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        GiveUp
    }
}

type Result<T> = std::result::Result<T, GiveUp>;

/// `rmp-serde`'s newtype name for MessagePack ext values.
const EXT_STRUCT_NAME: &str = "_ExtStruct";

/// Deserializes `bytes`, which must be exactly one MessagePack value nested at
/// most `max_depth` deep, as `T`; [`GiveUp`] when the `rmp-serde` path must decide.
#[inline(always)]
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(
    bytes: &'de [u8],
    max_depth: u32,
) -> Result<T> {
    let mut de = FastDe::new(bytes, max_depth);
    let v = T::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A reader over one payload.
pub(crate) struct FastDe<'de> {
    bytes: &'de [u8],
    /// The next unread byte, in `0 ..= bytes.len()`.
    pos: usize,
    /// The number of containers around the value read next, in `0 ..= max_depth`.
    depth: u32,
    max_depth: u32,
}

impl<'de> FastDe<'de> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub(crate) fn new(bytes: &'de [u8], max_depth: u32) -> Self {
        FastDe {
            bytes,
            pos: 0,
            depth: 0,
            max_depth,
        }
    }

    /// Succeeds if the whole payload was read.
    #[inline]
    pub(crate) fn end(&self) -> Result<()> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    #[inline(always)]
    fn peek(&self) -> Result<u8> {
        self.bytes.get(self.pos).copied().ok_or(GiveUp)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        let bytes: &'de [u8] = self.bytes;
        let end = self.pos.checked_add(n).ok_or(GiveUp)?;
        let s = bytes.get(self.pos..end).ok_or(GiveUp)?;
        self.pos = end;
        Ok(s)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    fn be16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    #[inline(always)]
    fn be32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline(always)]
    fn be64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A number, `nil` or a boolean whose marker was just read (`rmp-serde`'s
    /// `any_num`).
    #[inline(always)]
    fn number<V: Visitor<'de>>(&mut self, marker: u8, visitor: V) -> Result<V::Value> {
        match marker {
            0x00..=0x7f => visitor.visit_u8(marker),
            0xe0..=0xff => visitor.visit_i8(marker as i8),
            0xc0 => visitor.visit_unit(),
            0xc2 => visitor.visit_bool(false),
            0xc3 => visitor.visit_bool(true),
            0xcc => visitor.visit_u8(self.u8()?),
            0xcd => visitor.visit_u16(self.be16()?),
            0xce => visitor.visit_u32(self.be32()?),
            0xcf => visitor.visit_u64(self.be64()?),
            0xd0 => visitor.visit_i8(self.u8()? as i8),
            0xd1 => visitor.visit_i16(self.be16()? as i16),
            0xd2 => visitor.visit_i32(self.be32()? as i32),
            0xd3 => visitor.visit_i64(self.be64()? as i64),
            0xca => visitor.visit_f32(f32::from_bits(self.be32()?)),
            0xcb => visitor.visit_f64(f64::from_bits(self.be64()?)),
            _ => Err(GiveUp),
        }
    }

    /// Any value (`rmp-serde`'s `any_inner`); binary data is visited as bytes
    /// only when `allow_bytes` (otherwise `rmp-serde` visits it as a sequence,
    /// which this reader leaves to it).
    #[inline]
    fn any<V: Visitor<'de>>(&mut self, visitor: V, allow_bytes: bool) -> Result<V::Value> {
        let marker = self.u8()?;
        match marker {
            0xa0..=0xbf => {
                let n = usize::from(marker & 0x1f);
                self.str(n, visitor)
            }
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), visitor),
            0x90..=0x9f => self.seq(usize::from(marker & 0x0f), visitor),
            0xd9 => {
                let n = usize::from(self.u8()?);
                self.str(n, visitor)
            }
            0xda => {
                let n = usize::from(self.be16()?);
                self.str(n, visitor)
            }
            0xdb => {
                let n = self.be32()? as usize;
                self.str(n, visitor)
            }
            0xdc => {
                let n = usize::from(self.be16()?);
                self.seq(n, visitor)
            }
            0xdd => {
                let n = self.be32()? as usize;
                self.seq(n, visitor)
            }
            0xde => {
                let n = usize::from(self.be16()?);
                self.map(n, visitor)
            }
            0xdf => {
                let n = self.be32()? as usize;
                self.map(n, visitor)
            }
            0xc4..=0xc6 if allow_bytes => {
                let n = match marker {
                    0xc4 => usize::from(self.u8()?),
                    0xc5 => usize::from(self.be16()?),
                    _ => self.be32()? as usize,
                };
                visitor.visit_borrowed_bytes(self.take(n)?)
            }
            _ => self.number(marker, visitor),
        }
    }

    #[inline(always)]
    fn str<V: Visitor<'de>>(&mut self, n: usize, visitor: V) -> Result<V::Value> {
        // `rmp-serde` offers invalid UTF-8 as bytes; leave that to it.
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| GiveUp)?;
        visitor.visit_borrowed_str(s)
    }

    /// Enters a container of `values` values: checks the depth and that each
    /// value can have its byte.
    #[inline(always)]
    fn enter(&mut self, values: usize) -> Result<()> {
        if self.depth >= self.max_depth || values > self.bytes.len() - self.pos {
            return Err(GiveUp);
        }
        self.depth += 1;
        Ok(())
    }

    fn seq<V: Visitor<'de>>(&mut self, n: usize, visitor: V) -> Result<V::Value> {
        self.enter(n)?;
        let mut access = Access { de: self, left: n };
        let v = visitor.visit_seq(&mut access)?;
        // `rmp-serde` refuses a sequence the visitor did not read to its end.
        if access.left != 0 {
            return Err(GiveUp);
        }
        self.depth -= 1;
        Ok(v)
    }

    fn map<V: Visitor<'de>>(&mut self, n: usize, visitor: V) -> Result<V::Value> {
        self.enter(n.checked_mul(2).ok_or(GiveUp)?)?;
        let mut access = Access { de: self, left: n };
        let v = visitor.visit_map(&mut access)?;
        if access.left != 0 {
            return Err(GiveUp);
        }
        self.depth -= 1;
        Ok(v)
    }
}

/// The entries of an array or a map; `left` counts elements or key-value pairs.
struct Access<'a, 'de> {
    de: &'a mut FastDe<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = GiveUp;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = GiveUp;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum written as a one-entry map `{variant: value}` (`with_unit` false) or
/// as the bare variant (`with_unit` true: a unit variant).
struct Variant<'a, 'de> {
    de: &'a mut FastDe<'de>,
    bare: bool,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = GiveUp;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let v = seed.deserialize(&mut *self.de)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = GiveUp;

    fn unit_variant(self) -> Result<()> {
        if self.bare {
            return Ok(());
        }
        // `{variant: nil}`.
        match self.de.u8()? {
            0xc0 => Ok(()),
            _ => Err(GiveUp),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if self.bare {
            return Err(GiveUp);
        }
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if self.bare {
            return Err(GiveUp);
        }
        self.de.any(visitor, false)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.bare {
            return Err(GiveUp);
        }
        self.de.any(visitor, false)
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let marker = self.u8()?;
            self.number(marker, visitor)
        }
    )*};
}

macro_rules! anything {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.any(visitor, true)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut FastDe<'de> {
    type Error = GiveUp;

    numbers! {
        deserialize_bool deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_f32 deserialize_f64
    }

    anything! {
        deserialize_any deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_map
        deserialize_ignored_any
    }

    /// A field or variant name: a string is offered as bytes (skipping UTF-8
    /// validation), which derived field and variant visitors match exactly as
    /// they match the string (`rmp-serde` offers the string, or the bytes when
    /// they are not UTF-8). A visitor that takes only strings refuses the
    /// bytes, and the `rmp-serde` path reads the payload instead.
    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let marker = self.peek()?;
        if let 0xa0..=0xbf = marker {
            self.pos += 1;
            let name = self.take(usize::from(marker & 0x1f))?;
            return visitor.visit_borrowed_bytes(name);
        }
        self.any(visitor, true)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(GiveUp)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(GiveUp)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // `nil` is `None`; anything else is `Some` of that value (so nested
        // options all become `Some` of the innermost value, as in `rmp-serde`).
        if self.peek()? == 0xc0 {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // `rmp-serde` writes a unit struct as `[]` and reads `nil` or `[]`.
        match self.peek()? {
            0xc0 | 0x90 => {
                self.pos += 1;
                visitor.visit_unit()
            }
            _ => self.any(visitor, true),
        }
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == EXT_STRUCT_NAME {
            return Err(GiveUp);
        }
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.any(visitor, false)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.any(visitor, false)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.any(visitor, false)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.any(visitor, false)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let marker = self.peek()?;
        let (len, head) = match marker {
            0x80..=0x8f => (usize::from(marker & 0x0f), 1),
            0xde => {
                let b = self.bytes.get(self.pos + 1..self.pos + 3).ok_or(GiveUp)?;
                (usize::from(u16::from_be_bytes([b[0], b[1]])), 3)
            }
            0xdf => {
                let b = self.bytes.get(self.pos + 1..self.pos + 5).ok_or(GiveUp)?;
                (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
            }
            // The bare variant: a unit variant by name (or index).
            _ => {
                return visitor.visit_enum(Variant {
                    de: self,
                    bare: true,
                })
            }
        };
        // `{variant: value}`; `rmp-serde` refuses any other map length.
        if len != 1 {
            return Err(GiveUp);
        }
        self.pos += head;
        self.enter(2)?;
        let v = visitor.visit_enum(Variant {
            de: &mut *self,
            bare: false,
        })?;
        self.depth -= 1;
        Ok(v)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }
}
