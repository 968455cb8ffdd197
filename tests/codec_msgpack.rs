//! MessagePack payloads: the codec writes exactly the bytes `rmp-serde` writes
//! (structs as maps, or as arrays with `compact_structs`), and reads exactly what
//! `rmp-serde` reads: the same value when it succeeds, an error when it fails,
//! whatever the payload's type and bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringbus::codec::{
    decode, decode_typed, encode, ContentType, DecodeError, Encoder, EventRef, Limits,
};
use ringbus::{event_type, source, Event};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Unit;

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Newtype(i32);

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Pair(u8, String);

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: Option<u16> },
}

/// Every serde data-model shape the derive produces.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Everything {
    flag: bool,
    small: i8,
    short: i16,
    int: i32,
    long: i64,
    byte: u8,
    ushort: u16,
    uint: u32,
    ulong: u64,
    single: f32,
    double: f64,
    letter: char,
    text: String,
    bytes: Vec<u8>,
    maybe: Option<String>,
    nested: Option<Option<u8>>,
    list: Vec<i64>,
    map: BTreeMap<String, u32>,
    tuple: (u8, bool, String),
    unit: (),
    unit_struct: Unit,
    newtype: Newtype,
    pair: Pair,
    shapes: Vec<Shape>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    skipped: Option<u8>,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        any::<f64>().prop_map(Shape::Circle),
        (any::<u32>(), any::<u32>()).prop_map(|(w, h)| Shape::Rect(w, h)),
        (".{0,40}", any::<Option<u16>>()).prop_map(|(name, sides)| Shape::Named { name, sides }),
    ]
}

/// Integers near every MessagePack size boundary, or anywhere.
fn int<T: TryFrom<i64> + std::fmt::Debug>() -> impl Strategy<Value = T> {
    let edges = [
        0, 1, 31, 32, 33, 127, 128, 255, 256, 32_767, 32_768, 65_535, 65_536,
    ];
    let edges: Vec<i64> = edges
        .iter()
        .flat_map(|&e: &i64| [e, -e, e - 1, -e - 1])
        .chain([
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            1 << 32,
            i64::MAX,
            i64::MIN,
        ])
        .collect();
    prop_oneof![prop::sample::select(edges), any::<i64>()]
        .prop_filter_map("fits", |v| T::try_from(v).ok())
}

fn uint<T: TryFrom<u64> + std::fmt::Debug>() -> impl Strategy<Value = T> {
    let edges: Vec<u64> = [
        0u64,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX),
    ]
    .iter()
    .flat_map(|&e| [e, e + 1])
    .chain([u64::MAX])
    .collect();
    prop_oneof![prop::sample::select(edges), any::<u64>()]
        .prop_filter_map("fits", |v| T::try_from(v).ok())
}

prop_compose! {
    fn everything()(
        (flag, small, short, int, long, byte, ushort, uint, ulong) in (
            any::<bool>(), int(), int(), int(), int(), uint(), uint(), uint(), uint(),
        ),
        (single, double, letter) in (any::<f32>(), any::<f64>(), any::<char>()),
        text in ".{0,300}",
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        maybe in prop::option::of(".{0,8}"),
        nested in any::<Option<Option<u8>>>(),
        list in prop::collection::vec(any::<i64>(), 0..20),
        map in prop::collection::btree_map(".{0,6}", any::<u32>(), 0..20),
        tuple in (any::<u8>(), any::<bool>(), ".{0,4}"),
        newtype in any::<i32>(),
        pair in (any::<u8>(), ".{0,4}"),
        shapes in prop::collection::vec(shape(), 0..4),
        skipped in any::<Option<u8>>(),
    ) -> Everything {
        Everything {
            flag, small, short, int, long, byte, ushort, uint, ulong, single,
            double, letter, text, bytes, maybe, nested, list, map, tuple, unit: (),
            unit_struct: Unit, newtype: Newtype(newtype), pair: Pair(pair.0, pair.1), shapes,
            skipped,
        }
    }
}

/// NaN-tolerant equality through the value's MessagePack bytes.
fn same<T: Serialize>(a: &T, b: &T) -> bool {
    rmp_serde::to_vec(a).unwrap() == rmp_serde::to_vec(b).unwrap()
}

fn event<P>(data: P) -> Event<P> {
    Event::new(event_type!("test.msgpack"), source!("tests"), data)
}

/// A frame whose MessagePack payload is `payload`, verbatim.
fn frame_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new()
        .encode_raw(&event(payload), ContentType::MESSAGEPACK, &mut out)
        .unwrap();
    out
}

/// A MessagePack value `rmp-serde` writes, from a JSON value.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,5}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What `rmp-serde` makes of `payload` on its own (the codec adds its checks,
/// which only ever refuse more).
fn reference<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Option<T> {
    rmp_serde::from_slice(payload).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn payload_bytes_are_rmp_serde_bytes(data in everything(), compact in any::<bool>()) {
        let e = event(data);
        let mut buf = Vec::new();
        Encoder::new().compact_structs(compact).encode(&e, &mut buf).unwrap();
        let (view, _) = EventRef::decode(&buf).unwrap();
        let expected = if compact {
            rmp_serde::to_vec(&e.data).unwrap()
        } else {
            rmp_serde::to_vec_named(&e.data).unwrap()
        };
        prop_assert_eq!(view.payload(), &expected[..]);
        let (back, _) = decode::<Everything>(&buf).unwrap();
        prop_assert!(same(&back.data, &e.data), "{:?} != {:?}", back.data, e.data);
    }

    #[test]
    fn dynamic_payload_bytes_are_rmp_serde_bytes(v in json_value()) {
        let mut buf = Vec::new();
        encode(&event(v.clone()), &mut buf).unwrap();
        let (view, _) = EventRef::decode(&buf).unwrap();
        prop_assert_eq!(view.payload(), &rmp_serde::to_vec_named(&v).unwrap()[..]);
        prop_assert_eq!(decode::<Value>(&buf).unwrap().0.data, v);
    }

    /// Valid MessagePack with one byte changed, or cut short: whatever the codec
    /// decodes, `rmp-serde` decodes to the same value; whatever `rmp-serde`
    /// refuses, the codec refuses.
    #[test]
    fn decoding_agrees_with_rmp_serde_on_damaged_payloads(
        data in everything(),
        compact in any::<bool>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut payload = if compact {
            rmp_serde::to_vec(&data).unwrap()
        } else {
            rmp_serde::to_vec_named(&data).unwrap()
        };
        let i = at.index(payload.len());
        if cut {
            payload.truncate(i);
        } else {
            payload[i] = byte;
        }
        let frame = frame_with_payload(&payload);
        let ours = decode::<Everything>(&frame).map(|(e, _)| e.data);
        match (&ours, reference::<Everything>(&payload)) {
            (Ok(a), Some(b)) => prop_assert!(same(a, &b)),
            (Ok(a), None) => prop_assert!(false, "decoded {a:?}, rmp-serde refuses"),
            (Err(e), _) => prop_assert!(matches!(
                e,
                DecodeError::Payload { .. }
                    | DecodeError::TrailingBytes { .. }
                    | DecodeError::LimitExceeded { .. }
            ), "{e:?}"),
        }
        let dynamic = decode::<Value>(&frame).map(|(e, _)| e.data).ok();
        if let Some(v) = &dynamic {
            prop_assert_eq!(Some(v.clone()), reference::<Value>(&payload));
        }
    }

    /// Arbitrary bytes: never a panic; a success is `rmp-serde`'s value.
    #[test]
    fn arbitrary_payloads_decode_as_rmp_serde_does(payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let frame = frame_with_payload(&payload);
        if let Ok((e, _)) = decode::<Value>(&frame) {
            prop_assert_eq!(Some(e.data), reference::<Value>(&payload));
        }
        if let Ok((e, _)) = decode::<Shape>(&frame) {
            prop_assert_eq!(Some(e.data), reference::<Shape>(&payload));
        }
        if let Ok((e, _)) = decode::<(u8, Option<String>, Vec<i16>)>(&frame) {
            prop_assert_eq!(Some(e.data), reference(&payload));
        }
    }
}

#[test]
fn seed_payload_is_a_map_with_field_names() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct UserRegistered {
        user_id: String,
        email: String,
        name: String,
    }
    let data = UserRegistered {
        user_id: "u-1001".into(),
        email: "alice@example.com".into(),
        name: "Alice Smith".into(),
    };
    let mut buf = Vec::new();
    encode(&event(&data), &mut buf).unwrap();
    let (view, _) = EventRef::decode(&buf).unwrap();
    assert_eq!(view.payload()[0], 0x83, "fixmap of 3");
    assert_eq!(view.payload(), &rmp_serde::to_vec_named(&data).unwrap()[..]);
    assert_eq!(decode::<UserRegistered>(&buf).unwrap().0.data, data);
}

#[test]
fn errors_are_the_checked_paths_errors() {
    // A field of the wrong type: the payload error names the mismatch.
    let frame =
        frame_with_payload(&rmp_serde::to_vec_named(&serde_json::json!({"x": "s"})).unwrap());
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct X {
        x: u8,
    }
    match decode::<X>(&frame) {
        Err(DecodeError::Payload {
            content_type,
            message,
        }) => {
            assert_eq!(content_type, ContentType::MESSAGEPACK);
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // One value then another: trailing bytes, at the offset where the second begins.
    let frame = frame_with_payload(&[0x01, 0x02]);
    assert_eq!(
        decode::<u8>(&frame).unwrap_err(),
        DecodeError::TrailingBytes {
            field: ringbus::codec::Field::Payload,
            offset: 1,
            count: 1,
        }
    );
    // Too deep for the limit: [[[1]]] at depth 2.
    let frame = frame_with_payload(&[0x91, 0x91, 0x91, 0x01]);
    let limits = Limits::new().max_depth(2);
    assert!(matches!(
        ringbus::codec::Decoder::new(limits).decode::<Vec<Vec<Vec<u8>>>>(&frame),
        Err(DecodeError::LimitExceeded { .. })
    ));
    assert_eq!(
        ringbus::codec::Decoder::new(Limits::new().max_depth(3))
            .decode::<Vec<Vec<Vec<u8>>>>(&frame)
            .unwrap()
            .0
            .data,
        vec![vec![vec![1]]]
    );
    // An array32 announcing 4 billion elements in a 6-byte payload.
    let frame = frame_with_payload(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(matches!(
        decode::<Vec<u8>>(&frame),
        Err(DecodeError::Payload { .. })
    ));
}

#[test]
fn what_only_rmp_serde_reads_still_decodes() {
    // Binary data read as a sequence of bytes, a string of invalid UTF-8 read as
    // bytes, an ext value read as a newtype: the fast reader leaves these to
    // rmp-serde, and the result is rmp-serde's.
    let frame = frame_with_payload(&[0xc4, 0x02, 0x07, 0x08]);
    assert_eq!(decode::<Vec<u8>>(&frame).unwrap().0.data, vec![7, 8]);
    let frame = frame_with_payload(&[0x92, 0x07, 0x08]);
    assert_eq!(decode::<[u8; 2]>(&frame).unwrap().0.data, [7, 8]);

    #[derive(Deserialize, PartialEq, Debug)]
    #[serde(untagged)]
    enum Loose {
        Number(u64),
        Text(String),
    }
    let frame = frame_with_payload(&[0xa2, b'h', b'i']);
    assert_eq!(
        decode::<Loose>(&frame).unwrap().0.data,
        Loose::Text("hi".into())
    );
    let frame = frame_with_payload(&[0xcd, 0x01, 0x00]);
    assert_eq!(decode::<Loose>(&frame).unwrap().0.data, Loose::Number(256));

    // 128-bit integers: written as rmp-serde writes them (bin 8 of 16 bytes),
    // read back by it.
    let mut buf = Vec::new();
    let big = (i128::MIN + 7, u128::MAX - 7);
    encode(&event(big), &mut buf).unwrap();
    let (view, _) = EventRef::decode(&buf).unwrap();
    assert_eq!(view.payload(), &rmp_serde::to_vec(&big).unwrap()[..]);
    assert_eq!(decode::<(i128, u128)>(&buf).unwrap().0.data, big);
}

#[test]
fn typed_event_enums_use_the_same_reader() {
    #[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
    struct Opened {
        id: u32,
    }
    #[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
    struct Closed {
        id: u32,
        reason: Option<String>,
    }
    ringbus::domain_events! {
        #[derive(Debug, Clone, PartialEq)]
        enum Door {
            Opened(Opened) => "door.opened", source = "door";
            Closed(Closed) => "door.closed", source = "door";
        }
    }
    let e = Event::typed(Door::from(Closed {
        id: 7,
        reason: Some("wind".into()),
    }));
    let mut buf = Vec::new();
    encode(&e, &mut buf).unwrap();
    assert_eq!(decode_typed::<Door>(&buf).unwrap().0, e);
    // The payload does not fit the variant the event type names.
    let wrong = Event::new(
        event_type!("door.opened"),
        source!("door"),
        serde_json::json!({"id": "seven"}),
    );
    buf.clear();
    encode(&wrong, &mut buf).unwrap();
    assert!(matches!(
        decode_typed::<Door>(&buf),
        Err(DecodeError::PayloadMismatch { .. })
    ));
}

#[test]
fn field_and_variant_names_decode_as_rmp_serde_decodes_them() {
    // Renamed, aliased and flattened fields, renamed variants, unknown fields:
    // the fast reader offers names as bytes, and the values are rmp-serde's.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "camelCase")]
    enum Kind {
        FirstKind,
        #[serde(rename = "other")]
        Other {
            how_much: u8,
        },
    }
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Inner {
        #[serde(rename = "ID")]
        id: u32,
        #[serde(alias = "mail")]
        email: String,
        kinds: Vec<Kind>,
        #[serde(flatten)]
        extra: BTreeMap<String, u8>,
    }
    let payload = rmp_serde::to_vec_named(&serde_json::json!({
        "ID": 7,
        "mail": "a@b",
        "kinds": ["firstKind", {"other": {"how_much": 3}}],
        "unknown": 9,
        "ünïcode": 1,
    }))
    .unwrap();
    let frame = frame_with_payload(&payload);
    let ours = decode::<Inner>(&frame).unwrap().0.data;
    assert_eq!(Some(&ours), reference::<Inner>(&payload).as_ref());
    assert_eq!(ours.email, "a@b");
    assert_eq!(ours.extra.get("ünïcode"), Some(&1));

    // A name that is not UTF-8: rmp-serde offers it as bytes too; a derived
    // struct ignores it as an unknown field.
    #[derive(Deserialize, PartialEq, Debug)]
    struct One {
        a: u8,
    }
    let payload = [0x82, 0xa1, b'a', 0x01, 0xa1, 0xff, 0x02];
    let frame = frame_with_payload(&payload);
    assert_eq!(decode::<One>(&frame).unwrap().0.data, One { a: 1 });
    assert_eq!(reference::<One>(&payload), Some(One { a: 1 }));

    // A hand-written visitor that reads names as strings only still decodes
    // (through the rmp-serde path).
    #[derive(PartialEq, Debug)]
    struct StrOnly(String);
    impl<'de> Deserialize<'de> for StrOnly {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = StrOnly;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a name")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOnly, E> {
                    Ok(StrOnly(v.to_owned()))
                }
            }
            d.deserialize_identifier(V)
        }
    }
    let frame = frame_with_payload(&[0xa3, b'a', b'b', b'c']);
    assert_eq!(
        decode::<StrOnly>(&frame).unwrap().0.data,
        StrOnly("abc".into())
    );
}
