//! The fast MessagePack path for typed payloads: a serde `Serializer` and
//! `Deserializer` over byte slices that write and read exactly the bytes
//! `rmp-serde` does, without its `io::Write`/`Read` layers, the separate
//! [`check_msgpack`](super::payload::check_msgpack) walk, or formatted error
//! messages.
//!
//! Neither decides an error. Each handles the values `rmp-serde` handles in one
//! obvious way (numbers, strings, binary, options, sequences and maps of known
//! length, structs, enums) and returns [`GiveUp`](de::GiveUp) for anything else or anything
//! wrong; [`payload`](super::payload) then runs the `rmp-serde` path, which
//! produces the bytes or the typed [`DecodeError`](super::DecodeError) it always
//! did. So the fast path changes speed, never bytes, values or errors; the tests
//! below and `tests/codec_msgpack.rs` compare both paths.

pub(crate) mod de;
pub(crate) mod ser;
