//! The fuzzing seeds in `fuzz/seeds/<target>/`: valid frames of every shape, so
//! fuzzing starts from the interesting places.
//!
//! `RINGBUS_WRITE_SEEDS=1 cargo test --test codec_seeds` (re)writes them; without
//! the variable the test checks that the committed seeds are exactly what this
//! file generates, and that they decode.

mod codec_support;

use std::path::PathBuf;

use codec_support::*;
use ringbus::codec::{decode, decode_batch, BatchRef, ContentType, Encoder, EventRef};
use ringbus::{Event, Subject};
use serde_json::{json, Value};

fn event_frames() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut push = |name: String, enc: &Encoder, e: &Event| {
        let mut b = Vec::new();
        enc.encode(e, &mut b).unwrap();
        out.push((name, b));
    };
    let base = user_registered().map(|d| serde_json::to_value(d).unwrap());
    let encoders = [
        ("msgpack", Encoder::new()),
        ("json", Encoder::new().content_type(ContentType::JSON)),
        ("crc_ext", everything_encoder()),
    ];
    for (ename, enc) in &encoders {
        for mask in 0..8u8 {
            let mut e = base.clone();
            if mask & 1 != 0 {
                e.subject = Some(Subject::new("u-1001"));
            }
            if mask & 2 != 0 {
                e.correlation_id = Some(id(1));
            }
            if mask & 4 != 0 {
                e.causation_id = Some(id(2));
            }
            push(format!("{ename}_fields{mask}"), enc, &e);
        }
        for (pname, payload) in [
            ("null", Value::Null),
            (
                "nested",
                json!({"a": [1, [2, [3, {"b": null}]]], "c": -1.5, "d": u64::MAX}),
            ),
            ("string", json!("x".repeat(200))),
        ] {
            push(
                format!("{ename}_{pname}"),
                enc,
                &base.clone().map(|_| payload.clone()),
            );
        }
    }
    let mut raw = Vec::new();
    Encoder::new()
        .encode_raw(
            &base.clone().map(|_| b"\x00\x01raw".to_vec()),
            ContentType::from_code(200),
            &mut raw,
        )
        .unwrap();
    out.push(("raw_app_code".into(), raw));
    out
}

fn batch_frames() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let many: Vec<Event> = (0..20)
        .map(|i| {
            let mut e = three_events()[i % 3].clone();
            e.id = id(i as u128);
            e
        })
        .collect();
    for (ename, enc) in [
        ("msgpack", Encoder::new()),
        ("json", Encoder::new().content_type(ContentType::JSON)),
        ("crc_ext", everything_encoder()),
    ] {
        for (bname, events) in [
            ("empty", Vec::new()),
            ("one", vec![everything()]),
            ("three", three_events()),
            ("twenty", many.clone()),
        ] {
            let mut b = Vec::new();
            enc.encode_batch(&events, &mut b).unwrap();
            out.push((format!("{ename}_{bname}"), b));
        }
    }
    out
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let events = event_frames();
    let batches = batch_frames();
    let mut stream = Vec::new();
    for (_, f) in events.iter().take(3).chain(batches.iter().take(3)) {
        stream.extend_from_slice(f);
    }
    let mut out = Vec::new();
    for target in ["decode_event", "event_ref", "decode_reencode"] {
        for (name, f) in &events {
            out.push((target, name.clone(), f.clone()));
        }
    }
    out.push(("decode_event", "stream".into(), stream));
    for target in ["decode_batch", "decode_reencode"] {
        for (name, f) in &batches {
            out.push((target, format!("batch_{name}"), f.clone()));
        }
    }
    // The structured target reads its input through `arbitrary`: any bytes are a
    // valid seed; frames give it varied material.
    for (name, f) in events.iter().step_by(5).chain(batches.iter().step_by(3)) {
        out.push(("roundtrip", name.clone(), f.clone()));
    }
    out.push(("roundtrip", "zeros".into(), vec![0; 64]));
    out.push(("roundtrip", "ones".into(), vec![0xff; 64]));
    out
}

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

#[test]
fn fuzz_seeds_are_committed_and_decode() {
    let seeds = seeds();
    if std::env::var_os("RINGBUS_WRITE_SEEDS").is_some() {
        for (target, name, bytes) in &seeds {
            let dir = seed_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (target, name, bytes) in &seeds {
        let path = seed_dir().join(target).join(name);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with RINGBUS_WRITE_SEEDS=1)", path.display()));
        assert_eq!(
            &committed,
            bytes,
            "{} is stale (run with RINGBUS_WRITE_SEEDS=1)",
            path.display()
        );
        match *target {
            "decode_event" if name != "stream" => {
                decode::<Value>(bytes)
                    .map(|_| ())
                    .or_else(|e| {
                        // The raw seed has an application content type.
                        EventRef::decode(bytes).map(|_| ()).map_err(|_| e)
                    })
                    .unwrap();
            }
            "decode_batch" => {
                decode_batch::<Value>(bytes).unwrap();
                BatchRef::decode(bytes).unwrap();
            }
            _ => {}
        }
    }
}
