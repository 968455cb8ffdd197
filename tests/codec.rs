//! The binary codec: round trips, the FORMAT.md dumps, hostile input, limits.

mod codec_support;

use std::collections::BTreeMap;

use codec_support::*;
use proptest::prelude::*;
use ringbus::codec::{
    decode, decode_batch, encode, encode_batch, BatchRef, ContentType, DecodeError, Decoder,
    EncodeError, Encoder, EventRef, Field, Frame, FrameKind, FrameReader, Frames, Limit, Limits,
};
use ringbus::{Event, EventId, EventType, Source, Subject, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// ---- helpers ---------------------------------------------------------------------

fn frame_of<P: Serialize>(enc: &Encoder, e: &Event<P>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = enc.encode(e, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

fn batch_of<P: Serialize>(enc: &Encoder, events: &[Event<P>]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = enc.encode_batch(events, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Checks that a view shows the event's envelope.
fn assert_view<P>(v: &EventRef<'_>, e: &Event<P>) {
    assert_eq!(v.id(), e.id);
    assert_eq!(v.event_type(), e.event_type.name());
    assert_eq!(v.source(), e.source.name());
    assert_eq!(v.timestamp(), e.timestamp);
    assert_eq!(v.version(), e.version);
    assert_eq!(v.subject(), e.subject.as_ref().map(Subject::as_str));
    assert_eq!(v.correlation_id(), e.correlation_id);
    assert_eq!(v.causation_id(), e.causation_id);
}

/// Every decoder entry point on `bytes`; none may panic. Returns whether the
/// owned dynamic decode succeeded.
fn decode_everything(bytes: &[u8]) -> bool {
    let owned = decode::<Value>(bytes).is_ok();
    let _ = decode::<UserRegistered>(bytes);
    if let Ok((v, _)) = EventRef::decode(bytes) {
        let _ = v.data::<Value>();
        let _ = v.to_event_raw();
        let _ = v.extensions().count();
    }
    if let Ok((b, _)) = BatchRef::decode(bytes) {
        for v in &b {
            let _ = v.data::<Value>();
        }
    }
    let _ = decode_batch::<Value>(bytes);
    for f in Frames::new(bytes) {
        let _ = f;
    }
    owned
}

// ---- FORMAT.md -----------------------------------------------------------------

/// The bytes of the dump named `name` in FORMAT.md: the fenced block after
/// `<!-- dump: name -->`, each line's hex before its `|`.
fn dump(name: &str) -> Vec<u8> {
    let doc = include_str!("../FORMAT.md");
    let marker = format!("<!-- dump: {name} -->");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no dump {name} in FORMAT.md"));
    let rest = &doc[start + marker.len()..];
    let open = rest.find("```text\n").expect("dump block") + "```text\n".len();
    let close = rest[open..].find("```").expect("dump block end") + open;
    let mut bytes = Vec::new();
    for line in rest[open..close].lines() {
        let hex = line.split('|').next().unwrap();
        for tok in hex.split_whitespace() {
            assert_eq!(tok.len(), 2, "bad hex token {tok:?} in dump {name}");
            bytes.push(u8::from_str_radix(tok, 16).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    bytes
}

#[test]
fn format_md_dumps_match_the_encoder() {
    let e = user_registered();
    let single = frame_of(&Encoder::new(), &e);
    assert_eq!(
        single,
        dump("user_registered"),
        "FORMAT.md 11.1 drifted from the encoder"
    );
    assert!(
        single.len() <= 120,
        "user.registered frame is {} bytes",
        single.len()
    );

    let events = three_events();
    assert_eq!(
        batch_of(&Encoder::new(), &events),
        dump("batch_of_three"),
        "FORMAT.md 11.2"
    );

    let all = everything();
    assert_eq!(
        frame_of(&everything_encoder(), &all),
        dump("everything"),
        "FORMAT.md 11.3"
    );

    // And the dumps decode to the events they show.
    assert_eq!(
        decode::<UserRegistered>(&dump("user_registered"))
            .unwrap()
            .0,
        e
    );
    assert_eq!(
        decode_batch::<Value>(&dump("batch_of_three")).unwrap().0,
        events
    );
    let bytes = dump("everything");
    let (v, n) = EventRef::decode(&bytes).unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!(v.content_type(), ContentType::JSON);
    assert_eq!(v.extensions().collect::<Vec<_>>(), vec![(2, &[1u8][..])]);
    assert_eq!(v.to_event::<Value>().unwrap(), all);
}

// ---- round trips ---------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
enum Shape {
    Unit,
    Circle { r: i32 },
    Pair(u8, String),
}

/// A typed payload exercising most serde data model types.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Typed {
    text: String,
    n: u64,
    i: i64,
    f: f64,
    flag: bool,
    bytes: Vec<u8>,
    maybe: Option<String>,
    shape: Shape,
    map: BTreeMap<String, i32>,
    tuple: (u16, char),
}

/// Floats. `serde_json` (without its `float_roundtrip` feature) may read a
/// float back one ULP off, so JSON payloads get floats with short decimal forms,
/// which it reads exactly; MessagePack stores the bits and gets any float.
fn float(json: bool) -> BoxedStrategy<f64> {
    if json {
        any::<i32>().prop_map(|m| f64::from(m) / 100.0).boxed()
    } else {
        prop_oneof![-1e300f64..1e300, any::<i32>().prop_map(f64::from)].boxed()
    }
}

fn typed(json: bool) -> impl Strategy<Value = Typed> {
    let shape = prop_oneof![
        Just(Shape::Unit),
        any::<i32>().prop_map(|r| Shape::Circle { r }),
        (any::<u8>(), ".{0,8}").prop_map(|(a, b)| Shape::Pair(a, b)),
    ];
    (
        (
            ".{0,40}",
            any::<u64>(),
            any::<i64>(),
            float(json),
            any::<bool>(),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..40),
            prop::option::of(".{0,10}"),
            shape,
            prop::collection::btree_map(".{0,6}", any::<i32>(), 0..5),
            (any::<u16>(), any::<char>()),
        ),
    )
        .prop_map(
            |((text, n, i, f, flag), (bytes, maybe, shape, map, tuple))| Typed {
                text,
                n,
                i,
                f,
                flag,
                bytes,
                maybe,
                shape,
                map,
                tuple,
            },
        )
}

fn json_value(json: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float(json).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TYPES: &[&str] = &["user.registered", "order.placed", "a", "x.y.z", "é.ü"];
const SOURCES: &[&str] = &["user-service", "order-service", "s", "order service #1"];

fn event_id() -> impl Strategy<Value = EventId> {
    any::<[u8; 16]>().prop_map(EventId::from_bytes)
}

/// Events with every combination of optional fields, any timestamp and version.
fn event<P: std::fmt::Debug + Clone>(
    payload: impl Strategy<Value = P>,
) -> impl Strategy<Value = Event<P>> {
    (
        (
            event_id(),
            0..TYPES.len(),
            0..SOURCES.len(),
            any::<u64>(),
            any::<u32>(),
        ),
        (
            prop::option::of(".{0,20}"),
            prop::option::of(event_id()),
            prop::option::of(event_id()),
            payload,
        ),
    )
        .prop_map(|((id, t, s, ts, version), (subject, corr, caus, data))| {
            let mut e = Event::new(EventType::new(TYPES[t]), Source::new(SOURCES[s]), data)
                .with_version(version);
            e.id = id;
            e.timestamp = Timestamp::from_nanos(ts);
            e.subject = subject.map(Subject::new);
            e.correlation_id = corr;
            e.causation_id = caus;
            e
        })
}

/// An encoder with any options, and whether it writes JSON.
fn encoder() -> impl Strategy<Value = (Encoder, bool)> {
    (
        prop::bool::ANY,
        prop::bool::ANY,
        prop::bool::ANY,
        prop::option::of((0u64..20, prop::collection::vec(any::<u8>(), 0..6))),
    )
        .prop_map(|(json, checksum, compact, ext)| {
            let ct = if json {
                ContentType::JSON
            } else {
                ContentType::MESSAGEPACK
            };
            let mut enc = Encoder::new()
                .content_type(ct)
                .checksum(checksum)
                .compact_structs(compact);
            if let Some((tag, data)) = ext {
                // Even: skippable. Not 4, the store position (FORMAT.md §5).
                let tag = if tag == 2 { 40 } else { tag * 2 };
                enc = enc.extension(tag, &data);
            }
            (enc, json)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 256 }))]

    #[test]
    fn typed_events_round_trip(
        (enc, e) in encoder().prop_flat_map(|(enc, json)| (Just(enc), event(typed(json)))),
        prefix in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut buf = prefix.clone();
        let n = enc.encode(&e, &mut buf).unwrap();
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..], "encode appends");
        let bytes = &buf[prefix.len()..];
        prop_assert_eq!(n, bytes.len());
        let (back, used) = decode::<Typed>(bytes).unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(&back, &e);
        let (v, used) = EventRef::decode(bytes).unwrap();
        prop_assert_eq!(used, n);
        assert_view(&v, &e);
        prop_assert_eq!(v.data::<Typed>().unwrap(), e.data);
    }

    #[test]
    fn dynamic_events_round_trip(
        (enc, e) in encoder().prop_flat_map(|(enc, json)| (Just(enc), event(json_value(json)))),
    ) {
        let bytes = frame_of(&enc, &e);
        let (back, used) = decode::<Value>(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, e);
    }

    #[test]
    fn batches_round_trip(
        (enc, events) in encoder().prop_flat_map(|(enc, json)| {
            (Just(enc), prop::collection::vec(event(json_value(json)), 0..12))
        }),
    ) {
        let bytes = batch_of(&enc, &events);
        let (back, used) = decode_batch::<Value>(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&back, &events);
        let (batch, _) = BatchRef::decode(&bytes).unwrap();
        prop_assert_eq!(batch.len(), events.len());
        prop_assert_eq!(batch.iter().len(), events.len());
        let mut seen = 0;
        for (v, e) in batch.iter().zip(&events) {
            assert_view(&v, e);
            prop_assert_eq!(&v.data::<Value>().unwrap(), &e.data);
            seen += 1;
        }
        prop_assert_eq!(seen, events.len());
        // A batch is not an event frame, and the reverse.
        prop_assert!(
            matches!(
                decode::<Value>(&bytes),
                Err(DecodeError::WrongFrameKind { expected: FrameKind::Event, found: FrameKind::Batch })
            ),
            "batch decoded as an event"
        );
    }

    /// Concatenated frames read back through `FrameReader` fed in random pieces.
    #[test]
    fn streams_of_frames_resume_after_partial_input(
        events in prop::collection::vec(event(json_value(false)), 1..6),
        cuts in prop::collection::vec(1usize..40, 1..20),
    ) {
        let mut bytes = Vec::new();
        for e in &events {
            encode(e, &mut bytes).unwrap();
        }
        encode_batch(&events, &mut bytes).unwrap();
        let mut reader = FrameReader::new();
        let mut singles = Vec::new();
        let mut batches = Vec::new();
        let mut rest = &bytes[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            reader.feed(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = reader.next_frame().unwrap() {
                match f {
                    Frame::Event(v) => singles.push(v.to_event::<Value>().unwrap()),
                    Frame::Batch(b) => batches.push(b.len()),
                }
            }
        }
        prop_assert_eq!(reader.buffered(), 0);
        prop_assert_eq!(singles, events.clone());
        prop_assert_eq!(batches, vec![events.len()]);
    }
}

#[test]
fn every_optional_field_combination_round_trips() {
    for mask in 0..8u8 {
        for enc in [Encoder::new(), everything_encoder()] {
            let mut e = user_registered();
            if mask & 1 != 0 {
                e = e.with_subject("u-1001");
            }
            if mask & 2 != 0 {
                e.correlation_id = Some(id(1));
            }
            if mask & 4 != 0 {
                e.causation_id = Some(id(2));
            }
            let bytes = frame_of(&enc, &e);
            assert_eq!(
                decode::<UserRegistered>(&bytes).unwrap().0,
                e,
                "mask {mask}"
            );
            // Absent optional fields cost nothing: the body grows by exactly the
            // fields present.
            let body_len = |f: &[u8]| f.len() - if f[4] & 0x80 != 0 { 6 } else { 5 };
            let bare = body_len(&frame_of(&enc, &user_registered()));
            let extra = [(1, 1 + 6), (2, 16), (4, 16)]
                .iter()
                .filter(|(bit, _)| mask & bit != 0)
                .map(|(_, n)| n)
                .sum::<usize>();
            assert_eq!(body_len(&bytes), bare + extra, "mask {mask}");
        }
    }
}

#[test]
fn typed_payload_reads_as_dynamic_and_back() {
    let bytes = frame_of(&Encoder::new(), &user_registered());
    let (dynamic, _) = decode::<Value>(&bytes).unwrap();
    assert_eq!(
        dynamic.data,
        json!({"user_id": "u-1001", "email": "alice@example.com", "name": "Alice Smith"})
    );
    let again = frame_of(&Encoder::new(), &dynamic);
    assert_eq!(
        decode::<UserRegistered>(&again).unwrap().0,
        user_registered()
    );
}

#[test]
fn compact_structs_are_smaller_and_decode_the_same() {
    let e = user_registered();
    let named = frame_of(&Encoder::new(), &e);
    let compact = frame_of(&Encoder::new().compact_structs(true), &e);
    assert_eq!(
        named.len() - compact.len(),
        "user_id".len() + "email".len() + "name".len() + 3
    );
    assert_eq!(decode::<UserRegistered>(&compact).unwrap().0, e);
    let (dynamic, _) = decode::<Value>(&compact).unwrap();
    assert_eq!(
        dynamic.data,
        json!(["u-1001", "alice@example.com", "Alice Smith"])
    );
}

#[test]
fn raw_payloads_pass_through() {
    let e = user_registered().map(|_| vec![0xde_u8, 0xad, 0xbe, 0xef]);
    let mut bytes = Vec::new();
    let app = ContentType::from_code(200);
    Encoder::new().encode_raw(&e, app, &mut bytes).unwrap();
    let (v, _) = EventRef::decode(&bytes).unwrap();
    assert_eq!(v.content_type(), app);
    assert_eq!(v.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(v.to_event_raw().unwrap().map(<[u8]>::to_vec), e);
    assert_eq!(
        v.data::<Value>(),
        Err(DecodeError::UnsupportedContentType(app))
    );
    assert_eq!(
        decode::<Value>(&bytes).unwrap_err(),
        DecodeError::UnsupportedContentType(app)
    );
    // `encode` serializes only MessagePack and JSON.
    let mut out = vec![1, 2, 3];
    let err = Encoder::new()
        .content_type(ContentType::RAW)
        .encode(&user_registered(), &mut out)
        .unwrap_err();
    assert_eq!(err, EncodeError::UnsupportedContentType(ContentType::RAW));
    assert_eq!(
        out,
        [1, 2, 3],
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn timestamps_in_any_order_round_trip_in_batches() {
    let stamps = [u64::MAX, 0, 1, u64::MAX - 1, 1 << 63, T0, T0 - 1, 5];
    let events: Vec<Event<u8>> = stamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            let mut e = Event::new(EventType::new("t"), Source::new("s"), i as u8);
            e.timestamp = Timestamp::from_nanos(ts);
            e
        })
        .collect();
    let bytes = batch_of(&Encoder::new(), &events);
    assert_eq!(decode_batch::<u8>(&bytes).unwrap().0, events);
}

#[test]
fn large_frames_use_multi_byte_lengths() {
    let e = user_registered().map(|_| "x".repeat(100_000));
    let bytes = frame_of(&Encoder::new().checksum(true), &e);
    assert_eq!(decode::<String>(&bytes).unwrap().0, e);
    let events = vec![e.clone(); 3];
    let bytes = batch_of(&Encoder::new(), &events);
    assert_eq!(decode_batch::<String>(&bytes).unwrap().0, events);
}

// ---- hostile input -------------------------------------------------------------

/// Valid frames of every shape.
fn samples() -> Vec<Vec<u8>> {
    let mut v = vec![
        frame_of(&Encoder::new(), &user_registered()),
        frame_of(&everything_encoder(), &everything()),
        frame_of(
            &Encoder::new().content_type(ContentType::JSON),
            &user_registered(),
        ),
        batch_of(&Encoder::new(), &three_events()),
        batch_of(&everything_encoder(), &three_events()),
        batch_of(&Encoder::new(), &Vec::<Event>::new()),
    ];
    v.push(frame_of(&Encoder::new(), &everything()));
    v
}

#[test]
fn every_truncation_is_an_error() {
    for frame in samples() {
        for cut in 0..frame.len() {
            let part = &frame[..cut];
            for r in [
                decode::<Value>(part).map(|_| ()),
                decode_batch::<Value>(part).map(|_| ()),
                EventRef::decode(part).map(|_| ()),
                BatchRef::decode(part).map(|_| ()),
            ] {
                match r {
                    Err(DecodeError::Truncated { offset, needed }) => {
                        assert_eq!(offset, cut);
                        assert!(needed >= 1 && cut + needed <= frame.len());
                    }
                    other => panic!("prefix of {cut}/{} bytes: {other:?}", frame.len()),
                }
            }
            assert!(!decode_everything(part));
        }
    }
}

#[test]
fn every_single_bit_flip_is_ok_or_err_never_a_panic() {
    for frame in samples() {
        let checksummed = frame[3] & 0x10 != 0;
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let ok = decode_everything(&bad);
            if checksummed {
                // CRC-32C catches every single-bit error; header flips fail too.
                assert!(
                    !ok,
                    "bit {bit} flipped in a checksummed frame went unnoticed"
                );
                assert!(EventRef::decode(&bad).is_err() && BatchRef::decode(&bad).is_err());
            }
        }
    }
}

#[test]
fn every_byte_value_at_every_offset_is_ok_or_err() {
    let frame = frame_of(&everything_encoder().checksum(false), &everything());
    for i in 0..frame.len() {
        for b in 0..=255u8 {
            let mut bad = frame.clone();
            bad[i] = b;
            decode_everything(&bad);
        }
    }
}

/// `decode` against the view it is equivalent to: `EventRef::decode`, then
/// `to_event`. Same event or same error, for any damage to any frame.
#[test]
fn owned_decode_agrees_with_the_view_on_every_damaged_frame() {
    fn via_view<P: serde::de::DeserializeOwned>(
        bytes: &[u8],
    ) -> Result<(Event<P>, usize), DecodeError> {
        let (v, n) = EventRef::decode(bytes)?;
        Ok((v.to_event()?, n))
    }
    fn agree(bytes: &[u8]) {
        assert_eq!(
            decode::<Value>(bytes),
            via_view::<Value>(bytes),
            "{bytes:x?}"
        );
        assert_eq!(
            decode::<UserRegistered>(bytes),
            via_view::<UserRegistered>(bytes),
            "{bytes:x?}"
        );
    }
    let step = if cfg!(miri) { 61 } else { 1 };
    for frame in samples() {
        for cut in (0..=frame.len()).step_by(step) {
            agree(&frame[..cut]);
        }
        for i in (0..frame.len()).step_by(step) {
            for b in (0..=255u8).step_by(step) {
                let mut bad = frame.clone();
                bad[i] = b;
                agree(&bad);
            }
        }
    }
}

#[test]
fn header_errors() {
    let good = frame_of(&Encoder::new(), &user_registered());
    let with = |i: usize, b: u8| {
        let mut f = good.clone();
        f[i] = b;
        f
    };
    assert_eq!(
        decode::<Value>(&with(0, b'{')).unwrap_err(),
        DecodeError::BadMagic {
            found: [b'{', 0x52]
        }
    );
    assert_eq!(
        EventRef::decode(&[0x00]).unwrap_err(),
        DecodeError::BadMagic { found: [0, 0] }
    );
    assert_eq!(
        decode::<Value>(&with(2, 2)).unwrap_err(),
        DecodeError::UnsupportedVersion(2)
    );
    assert_eq!(
        decode::<Value>(&with(2, 0)).unwrap_err(),
        DecodeError::UnsupportedVersion(0)
    );
    assert_eq!(
        decode::<Value>(&with(3, 0x40)).unwrap_err(),
        DecodeError::UnsupportedFlags(0x40)
    );
    assert_eq!(
        decode::<Value>(&with(3, 0x21)).unwrap_err(),
        DecodeError::UnsupportedFlags(0x01)
    );
    // Overlong length varint.
    let mut f = good[..4].to_vec();
    f.extend_from_slice(&[0xf1, 0x00]);
    f.extend_from_slice(&good[5..]);
    assert_eq!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::InvalidVarint {
            field: Field::Header,
            offset: 4
        }
    );
    // Length one too long / one too short.
    let long = with(4, good[4] + 1);
    assert!(matches!(
        decode::<Value>(&long),
        Err(DecodeError::Truncated { needed: 1, .. })
    ));
    let mut long_padded = long.clone();
    long_padded.push(0);
    assert!(matches!(
        decode::<Value>(&long_padded),
        Err(DecodeError::TrailingBytes {
            field: Field::Body,
            count: 1,
            ..
        })
    ));
    let short = with(4, good[4] - 1);
    assert!(matches!(
        decode::<Value>(&short),
        Err(DecodeError::LengthMismatch {
            field: Field::Payload,
            ..
        })
    ));
}

#[test]
fn body_errors_are_precise() {
    // Invalid UTF-8 in the event type: the 'u' of "user.registered" at offset 22.
    let mut f = frame_of(&Encoder::new(), &user_registered());
    assert_eq!(f[22], b'u');
    f[22] = 0xff;
    assert_eq!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::InvalidUtf8 {
            field: Field::EventType,
            offset: 21
        }
    );
    // A wildcard in the event type.
    f[22] = b'*';
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::InvalidName {
            field: Field::EventType,
            ..
        }
    ));
    // A control character in the source (first byte of "user-service", offset 38).
    let mut f = frame_of(&Encoder::new(), &user_registered());
    assert_eq!(f[38], b'u');
    f[38] = 0x07;
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::InvalidName {
            field: Field::Source,
            ..
        }
    ));
    // Bad payload for the requested type.
    let f = frame_of(&Encoder::new(), &user_registered());
    assert!(matches!(
        decode::<Vec<u32>>(&f).unwrap_err(),
        DecodeError::Payload {
            content_type: ContentType::MESSAGEPACK,
            ..
        }
    ));
    // Checksum mismatch: flip a payload bit of a checksummed frame.
    let mut f = frame_of(&Encoder::new().checksum(true), &user_registered());
    f[100] ^= 0x04;
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::ChecksumMismatch { .. }
    ));
    // Batch: a type index past the dictionary.
    let mut b = dump("batch_of_three");
    let first_type_index = 4 + 2 + 1 + (1 + 1 + 15 + 1 + 12) + (1 + 1 + 12 + 1 + 13) + 8 + 1 + 16;
    assert_eq!(b[first_type_index], 0);
    b[first_type_index] = 2;
    assert_eq!(
        BatchRef::decode(&b).unwrap_err(),
        DecodeError::InvalidIndex {
            field: Field::TypeIndex,
            index: 2,
            len: 2
        }
    );
}

/// Builds an event frame by hand, body given, so tests can put anything in it.
fn raw_frame(flags: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut f = vec![0xeb, 0x52, 0x01, flags, body.len() as u8];
    f.extend_from_slice(body);
    f
}

fn body_with_extension_block(block: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 16]; // id
    body.extend_from_slice(&[1, b'a', 1, b's']);
    body.extend_from_slice(&[0; 8]); // timestamp
    body.push(1); // version
    body.extend_from_slice(&[1, 1, 0xc0]); // MessagePack nil
    body.push(block.len() as u8);
    body.extend_from_slice(block);
    body
}

#[test]
fn unknown_extensions_even_are_skipped_odd_are_refused() {
    let f = raw_frame(
        0x08,
        &body_with_extension_block(&[0x0c, 0x02, 0xaa, 0xbb, 0x80, 0x01, 0x00]),
    );
    let (v, _) = EventRef::decode(&f).unwrap();
    assert_eq!(
        v.extensions().collect::<Vec<_>>(),
        vec![(12, &[0xaa, 0xbb][..]), (128, &[][..])]
    );
    assert_eq!(decode::<Option<u8>>(&f).unwrap().0.data, None);

    let f = raw_frame(0x08, &body_with_extension_block(&[0x0c, 0x00, 0x07, 0x00]));
    assert_eq!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::UnknownCriticalExtension { tag: 7 }
    );
    // A record that runs past its block.
    let f = raw_frame(0x08, &body_with_extension_block(&[0x02, 0x05, 0x00]));
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::LengthMismatch {
            field: Field::Extensions,
            ..
        }
    ));
}

#[test]
fn display_says_what_went_wrong() {
    let cases = [
        (
            DecodeError::Truncated {
                offset: 7,
                needed: 3,
            },
            "offset 7",
        ),
        (
            DecodeError::BadMagic {
                found: [0x7b, 0x22],
            },
            "7B 22",
        ),
        (DecodeError::UnsupportedVersion(9), "version 9"),
        (
            DecodeError::InvalidUtf8 {
                field: Field::Subject,
                offset: 40,
            },
            "UTF-8 in subject at offset 40",
        ),
        (
            DecodeError::LimitExceeded {
                limit: Limit::Depth,
                value: 65,
                max: 64,
            },
            "payload nesting depth is 65, the maximum is 64",
        ),
        (
            DecodeError::ChecksumMismatch {
                stored: 1,
                computed: 2,
            },
            "checksum mismatch",
        ),
        (
            DecodeError::WrongFrameKind {
                expected: FrameKind::Event,
                found: FrameKind::Batch,
            },
            "expected an event frame, found a batch frame",
        ),
    ];
    for (e, want) in cases {
        let s = e.to_string();
        assert!(s.contains(want), "{s:?} lacks {want:?}");
        let _: &dyn std::error::Error = &e;
    }
}

// ---- limits ---------------------------------------------------------------------

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

#[test]
fn depth_limit_is_enforced_for_both_payload_formats() {
    for ct in [ContentType::MESSAGEPACK, ContentType::JSON] {
        let enc = Encoder::new().content_type(ct);
        let ok = frame_of(&enc, &user_registered().map(|_| nested(64)));
        assert_eq!(decode::<Value>(&ok).unwrap().0.data, nested(64));
        let deep = frame_of(&enc, &user_registered().map(|_| nested(65)));
        let err = decode::<Value>(&deep).unwrap_err();
        assert_eq!(
            err,
            DecodeError::LimitExceeded {
                limit: Limit::Depth,
                value: 65,
                max: 64
            }
        );
        // The borrowed view does not look at the payload; `data` does.
        let (v, _) = EventRef::decode(&deep).unwrap();
        assert_eq!(v.data::<Value>().unwrap_err(), err);
        let strict = Decoder::new(Limits::new().max_depth(3));
        assert!(strict.decode::<Value>(&ok).is_err());
        assert!(strict
            .decode::<Value>(&frame_of(&enc, &user_registered().map(|_| nested(3))))
            .is_ok());
    }
    // 100 000 nested arrays in MessagePack: refused without recursing through them.
    let mut body = body_with_extension_block(&[]);
    body.truncate(16 + 4 + 8 + 1 + 1); // up to the content type
    let payload = vec![0x91u8; 100_000];
    let mut f = vec![0xeb, 0x52, 0x01, 0x00];
    let mut len = Vec::new();
    let body_len = body.len() + 3 + payload.len();
    let mut n = body_len;
    while n >= 0x80 {
        len.push((n as u8) | 0x80);
        n >>= 7;
    }
    len.push(n as u8);
    f.extend_from_slice(&len);
    f.extend_from_slice(&body);
    f.extend_from_slice(&[0xa0, 0x8d, 0x06]); // varint 100 000
    f.extend_from_slice(&payload);
    let (v, _) = EventRef::decode(&f).unwrap();
    assert_eq!(v.payload().len(), 100_000);
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::LimitExceeded {
            limit: Limit::Depth,
            ..
        }
    ));
}

#[test]
fn frame_length_limit_is_enforced_from_the_header() {
    let f = frame_of(&Encoder::new(), &user_registered());
    let strict = Decoder::new(Limits::new().max_frame_len(100));
    assert_eq!(
        strict.decode::<Value>(&f).unwrap_err(),
        DecodeError::LimitExceeded {
            limit: Limit::FrameLen,
            value: 118,
            max: 100
        }
    );
    // Refused from the header alone, before the body arrives.
    assert!(matches!(
        strict.event_ref(&f[..5]).unwrap_err(),
        DecodeError::LimitExceeded {
            limit: Limit::FrameLen,
            ..
        }
    ));
    // A header declaring a 4 GiB body: refused by the default limit at once.
    let huge = [0xeb, 0x52, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(matches!(
        decode::<Value>(&huge).unwrap_err(),
        DecodeError::LimitExceeded {
            limit: Limit::FrameLen,
            ..
        }
    ));
    // The encoder refuses what decoders with the same limit would.
    let enc = Encoder::new().limits(&Limits::new().max_frame_len(100));
    let mut out = Vec::new();
    assert_eq!(
        enc.encode(&user_registered(), &mut out).unwrap_err(),
        EncodeError::FrameTooLarge { len: 118, max: 100 }
    );
    assert!(out.is_empty());
}

#[test]
fn batch_event_limit_is_enforced() {
    let events = vec![user_registered(); 5];
    let bytes = batch_of(&Encoder::new(), &events);
    let strict = Decoder::new(Limits::new().max_batch_events(4));
    assert_eq!(
        strict.decode_batch::<UserRegistered>(&bytes).unwrap_err(),
        DecodeError::LimitExceeded {
            limit: Limit::BatchEvents,
            value: 5,
            max: 4
        }
    );
    assert_eq!(
        strict
            .decode_batch::<UserRegistered>(&batch_of(&Encoder::new(), &events[..4]))
            .unwrap()
            .0
            .len(),
        4
    );
    let enc = Encoder::new().limits(&Limits::new().max_batch_events(4));
    assert_eq!(
        enc.encode_batch(&events, &mut Vec::new()).unwrap_err(),
        EncodeError::TooManyEvents { count: 5, max: 4 }
    );
    // A count the frame's bytes cannot hold is refused before any event is read.
    let f = [0xeb, 0x52, 0x01, 0x20, 0x04, 0xff, 0xff, 0x03, 0x00];
    assert!(matches!(
        decode_batch::<Value>(&f).unwrap_err(),
        DecodeError::LengthMismatch {
            field: Field::EventCount,
            ..
        }
    ));
}

#[test]
fn declared_lengths_beyond_the_input_are_refused() {
    // A MessagePack payload announcing a 4-billion-element array in 6 bytes.
    let mut body = body_with_extension_block(&[]);
    body.truncate(16 + 4 + 8 + 1 + 1);
    body.extend_from_slice(&[6, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let f = raw_frame(0x00, &body);
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::Payload {
            content_type: ContentType::MESSAGEPACK,
            ..
        }
    ));
    assert!(matches!(
        decode::<Vec<u64>>(&f).unwrap_err(),
        DecodeError::Payload { .. }
    ));
    // A string length of 2^63.
    let mut body = vec![0u8; 16];
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    let f = raw_frame(0x00, &body);
    assert!(matches!(
        decode::<Value>(&f).unwrap_err(),
        DecodeError::LengthMismatch {
            field: Field::EventType,
            needed: 0x8000_0000_0000_0000,
            ..
        }
    ));
}

// ---- streams ---------------------------------------------------------------------

#[test]
fn frame_reader_skips_a_bad_frame_and_stops_at_a_bad_header() {
    let good = frame_of(&Encoder::new(), &user_registered());
    let mut corrupt = frame_of(&Encoder::new().checksum(true), &user_registered());
    corrupt[50] ^= 1;
    let mut stream = good.clone();
    stream.extend_from_slice(&corrupt);
    stream.extend_from_slice(&good);
    let mut r = FrameReader::new();
    for b in &stream {
        r.feed(std::slice::from_ref(b));
    }
    assert!(matches!(r.next_frame(), Ok(Some(Frame::Event(_)))));
    assert!(matches!(
        r.next_frame(),
        Err(DecodeError::ChecksumMismatch { .. })
    ));
    assert!(matches!(r.next_frame(), Ok(Some(Frame::Event(_)))));
    assert!(matches!(r.next_frame(), Ok(None)));

    r.feed(b"GET / HTTP/1.1\r\n");
    let err = r.next_frame().unwrap_err();
    assert!(matches!(err, DecodeError::BadMagic { .. }));
    r.feed(&good);
    assert_eq!(
        r.next_frame().unwrap_err(),
        err,
        "a bad header poisons the stream"
    );
    r.clear();
    r.feed(&good);
    assert!(matches!(r.next_frame(), Ok(Some(Frame::Event(_)))));
}

#[test]
fn frame_reader_reads_from_io() {
    let mut bytes = Vec::new();
    for e in three_events() {
        encode(&e, &mut bytes).unwrap();
    }
    encode_batch(&three_events(), &mut bytes).unwrap();
    let mut src = std::io::Cursor::new(bytes);
    let mut r = FrameReader::new();
    let mut events = 0;
    while r.read_from(&mut src).unwrap() > 0 {
        while let Some(f) = r.next_frame().unwrap() {
            events += f.len();
        }
    }
    assert_eq!(events, 6);
}

#[test]
fn frames_iterator_reports_the_incomplete_tail() {
    let a = frame_of(&Encoder::new(), &user_registered());
    let mut bytes = a.clone();
    bytes.extend_from_slice(&a[..10]);
    let mut it = Frames::new(&bytes);
    assert!(matches!(it.next(), Some(Ok(Frame::Event(_)))));
    assert!(it.next().is_none());
    assert_eq!(it.remainder(), &a[..10]);
}

#[test]
fn a_source_name_is_not_accepted_as_an_event_type_through_the_name_cache() {
    // Interned as a source (spaces are fine there), so the shared table knows it.
    let source = Source::new("billing service");
    let mut e = Event::new(EventType::new("a"), source, Value::Null);
    e.id = id(7);
    let good = frame_of(&Encoder::new(), &e);
    assert_eq!(decode::<Value>(&good).unwrap().0, e);
    // The same bytes as the event type: refused, however often decoded.
    let mut bad = good.clone();
    let pos = bad
        .windows(15)
        .position(|w| w == b"billing service")
        .unwrap();
    let type_at = 4 + 1 + 16; // header, id: the event type's length byte
    assert_eq!(&bad[type_at..type_at + 2], &[1, b'a']);
    let mut body = bad[type_at + 2..].to_vec();
    bad.truncate(type_at);
    bad.push(15);
    bad.extend_from_slice(b"billing service");
    bad.append(&mut body);
    bad[4] += 14;
    assert!(pos > 0);
    for _ in 0..3 {
        assert!(matches!(
            decode::<Value>(&bad).unwrap_err(),
            DecodeError::InvalidName {
                field: Field::EventType,
                ..
            }
        ));
        assert!(EventRef::decode(&bad).is_err());
    }
}
