//! The fast MessagePack writer: a serde `Serializer` appending to a `Vec<u8>`
//! the bytes `rmp_serde::Serializer` writes (default configuration, structs as
//! maps with `with_struct_map`, or as arrays), for the values it handles.
//!
//! It gives up ([`GiveUp`]) where `rmp-serde` does something it does not copy:
//! a sequence or map of unknown length (`rmp-serde` buffers it), a length past
//! `u32::MAX`, an ext value (`_ExtStruct`), or an error raised by the value's
//! `Serialize`; the caller then truncates what was written and runs `rmp-serde`,
//! which decides. 128-bit integers are written as `rmp-serde` writes them (bin 8
//! of 16 big-endian bytes).

use serde::ser::{self, Serialize};

use super::de::GiveUp;

impl ser::Error for GiveUp {
    #[inline]
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        GiveUp
    }
}

type Result<T = ()> = std::result::Result<T, GiveUp>;

/// `rmp-serde`'s newtype name for MessagePack ext values.
const EXT_STRUCT_NAME: &str = "_ExtStruct";

/// Appends `value` as MessagePack, structs as maps with their field names when
/// `named`, else as arrays. On [`GiveUp`] `out` may hold a partial value.
#[inline(always)]
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T, named: bool, out: &mut Vec<u8>) -> Result {
    value.serialize(&mut FastSer { out, named })
}

/// A writer appending to `out`.
pub(crate) struct FastSer<'a> {
    out: &'a mut Vec<u8>,
    /// Structs as maps with field names (`rmp-serde`'s `with_struct_map`).
    named: bool,
}

impl FastSer<'_> {
    #[inline(always)]
    fn len32(len: usize) -> Result<u32> {
        u32::try_from(len).map_err(|_| GiveUp)
    }

    /// An array header in its smallest form (`rmp::encode::write_array_len`).
    #[inline(always)]
    fn array_len(&mut self, len: usize) -> Result {
        if len < 16 {
            self.out.push(0x90 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.out.push(0xdc);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            let n = Self::len32(len)?;
            self.out.push(0xdd);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
        Ok(())
    }

    /// A map header in its smallest form (`rmp::encode::write_map_len`).
    #[inline(always)]
    fn map_len(&mut self, len: usize) -> Result {
        if len < 16 {
            self.out.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.out.push(0xde);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            let n = Self::len32(len)?;
            self.out.push(0xdf);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
        Ok(())
    }

    /// A string in its smallest form (`rmp::encode::write_str`).
    #[inline(always)]
    fn str(&mut self, s: &str) -> Result {
        let n = s.len();
        if n < 32 {
            self.out.push(0xa0 | n as u8);
        } else if n < 256 {
            self.out.extend_from_slice(&[0xd9, n as u8]);
        } else if n <= usize::from(u16::MAX) {
            self.out.push(0xda);
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            let n = Self::len32(n)?;
            self.out.push(0xdb);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// `rmp::encode::write_uint`: the smallest form.
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        if v < 128 {
            self.out.push(v as u8);
        } else if v < 256 {
            self.out.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65_536 {
            self.out.push(0xcd);
            self.out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v < 1 << 32 {
            self.out.push(0xce);
            self.out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.out.push(0xcf);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// `rmp::encode::write_sint`: the smallest form, unsigned ones for `v >= 0`.
    #[inline(always)]
    fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.out.push(v as u8);
        } else if v >= -128 {
            self.out.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= -32_768 {
            self.out.push(0xd1);
            self.out.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= -2_147_483_648 {
            self.out.push(0xd2);
            self.out.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

impl<'a, 'b> ser::Serializer for &'a mut FastSer<'b> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, v: i8) -> Result {
        self.sint(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> Result {
        self.sint(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> Result {
        self.sint(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> Result {
        self.sint(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result {
        self.serialize_bytes(&v.to_be_bytes())
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result {
        self.uint(u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> Result {
        self.uint(u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result {
        self.uint(u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result {
        self.uint(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result {
        self.serialize_bytes(&v.to_be_bytes())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result {
        self.out.push(0xca);
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result {
        self.str(v.encode_utf8(&mut [0; 4]))
    }

    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result {
        self.str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result {
        let n = FastSer::len32(v.len())?;
        if n < 256 {
            self.out.extend_from_slice(&[0xc4, n as u8]);
        } else if n <= u32::from(u16::MAX) {
            self.out.push(0xc5);
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.out.push(0xc6);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
        self.out.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.out.push(0xc0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        self.out.push(0xc0);
        Ok(())
    }

    /// `[]`, as `rmp-serde` writes it.
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.out.push(0x90);
        Ok(())
    }

    /// The variant's name.
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.str(variant)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result {
        if name == EXT_STRUCT_NAME {
            return Err(GiveUp);
        }
        value.serialize(self)
    }

    /// `{variant: value}`.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.out.push(0x81);
        self.str(variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.array_len(len.ok_or(GiveUp)?)?;
        Ok(self)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self> {
        self.array_len(len)?;
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self> {
        self.array_len(len)?;
        Ok(self)
    }

    /// `{variant: [fields…]}`.
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self> {
        self.out.push(0x81);
        self.str(variant)?;
        self.array_len(len)?;
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.map_len(len.ok_or(GiveUp)?)?;
        Ok(self)
    }

    #[inline(always)]
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Self> {
        if self.named {
            self.map_len(len)?;
        } else {
            self.array_len(len)?;
        }
        Ok(self)
    }

    /// `{variant: struct}`.
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self> {
        self.out.push(0x81);
        self.str(variant)?;
        self.serialize_struct(name, len)
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut FastSer<'_> {
            type Ok = ();
            type Error = GiveUp;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result {
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut FastSer<'_> {
            type Ok = ();
            type Error = GiveUp;

            #[inline(always)]
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
                if self.named {
                    self.str(key)?;
                }
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for &mut FastSer<'_> {
    type Ok = ();
    type Error = GiveUp;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result {
        Ok(())
    }
}
