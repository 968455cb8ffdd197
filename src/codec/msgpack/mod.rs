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
//!
//! The price of a give-up is a second pass: the value's `Serialize` or
//! `Deserialize` runs again under `rmp-serde` (an implementation with side
//! effects sees them twice for such a payload). What derive produces for the
//! usual field types (numbers up to 64 bits, strings, bytes, options, vectors,
//! maps, tuples, unit and newtype structs, enums) never gives up; see
//! `the_fast_paths_handle_what_rmp_serde_writes`. 128-bit integers, ext values
//! and sequences of unknown length do.

pub(crate) mod de;
pub(crate) mod ser;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    use super::{de, ser};

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    enum E {
        A,
        B(i16),
        C(u8, String),
        D { x: Option<f32> },
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct S {
        a: u64,
        b: i64,
        c: String,
        d: Vec<E>,
        e: BTreeMap<String, Option<bool>>,
        f: (u8, char),
        g: (),
    }

    fn rmp(v: &impl Serialize, named: bool) -> Vec<u8> {
        if named {
            rmp_serde::to_vec_named(v).unwrap()
        } else {
            rmp_serde::to_vec(v).unwrap()
        }
    }

    fn fast(v: &impl Serialize, named: bool) -> Vec<u8> {
        let mut out = Vec::new();
        ser::to_vec(v, named, &mut out).unwrap();
        out
    }

    fn s(n: i64) -> S {
        S {
            a: n.unsigned_abs() << 20,
            b: n.wrapping_neg(),
            c: "x".repeat(n.unsigned_abs() as usize % 300),
            d: vec![
                E::A,
                E::B(n as i16),
                E::C(n as u8, "c".into()),
                E::D { x: Some(0.5) },
            ],
            e: [("k".to_string(), Some(true)), ("n".to_string(), None)].into(),
            f: (7, 'é'),
            g: (),
        }
    }

    #[test]
    fn the_fast_paths_handle_what_rmp_serde_writes() {
        // Not a single give-up on the shapes derive produces: the fast path is
        // the one taken, not a fallback that hides it.
        for n in [
            0,
            1,
            32,
            -33,
            128,
            200,
            40_000,
            70_000,
            -3_000_000_000,
            i64::MIN,
        ] {
            for named in [true, false] {
                let v = s(n);
                let bytes = rmp(&v, named);
                assert_eq!(fast(&v, named), bytes, "n={n} named={named}");
                assert_eq!(de::from_slice::<S>(&bytes, 8).unwrap(), v);
            }
        }
        let v = json!({"a": [1, -1, 1.5, null, true, "s", {"b": {}}], "c": u64::MAX});
        let bytes = rmp(&v, true);
        assert_eq!(fast(&v, true), bytes);
        assert_eq!(de::from_slice::<Value>(&bytes, 8).unwrap(), v);
    }

    #[test]
    fn the_fast_reader_gives_up_instead_of_deciding() {
        // Too deep, trailing bytes, truncated, reserved marker, a count the bytes
        // cannot hold, invalid UTF-8, bin read as a sequence, ext.
        let cases: [(&[u8], u32); 8] = [
            (&[0x91, 0x91, 0x01], 1),
            (&[0x01, 0x02], 8),
            (&[0x92, 0x01], 8),
            (&[0xc1], 8),
            (&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], 8),
            (&[0xa1, 0xff], 8),
            (&[0xc4, 0x01, 0x01], 8),
            (&[0xd4, 0x01, 0x01], 8),
        ];
        for (bytes, depth) in cases {
            assert!(de::from_slice::<Value>(bytes, depth).is_err(), "{bytes:x?}");
            assert!(
                de::from_slice::<Vec<u8>>(bytes, depth).is_err(),
                "{bytes:x?}"
            );
        }
        assert_eq!(
            de::from_slice::<Value>(&[0x91, 0x91, 0x01], 2).unwrap(),
            json!([[1]])
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 512 }))]

        #[test]
        fn fast_writer_writes_rmp_serde_bytes(n in any::<i64>(), named in any::<bool>()) {
            let v = s(n);
            prop_assert_eq!(fast(&v, named), rmp(&v, named));
        }

        /// Whatever the fast reader accepts, the checked path accepts with the
        /// same value.
        #[test]
        fn fast_reader_agrees_with_the_checked_path(
            n in any::<i64>(),
            named in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            depth in 0u32..6,
        ) {
            let mut bytes = rmp(&s(n), named);
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let checked = |bytes: &[u8]| -> Option<S> {
                crate::codec::payload::check_msgpack(bytes, depth).ok()?;
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
                de.set_max_depth(depth as usize + 1);
                S::deserialize(&mut de).ok()
            };
            if let Ok(v) = de::from_slice::<S>(&bytes, depth) {
                prop_assert_eq!(Some(v), checked(&bytes));
            }
            if let Ok(v) = de::from_slice::<Value>(&bytes, depth) {
                crate::codec::payload::check_msgpack(&bytes, depth).unwrap();
                prop_assert_eq!(Some(v), rmp_serde::from_slice::<Value>(&bytes).ok());
            }
        }
    }
}
