//! The binary codec against serde_json, postcard and rmp-serde on the same events.
//!
//! `cargo bench --bench codec` prints a size table first (bytes per event), then
//! criterion's timings: `codec/<event>/<op>/<format>`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringbus::codec::{decode, decode_batch, encode, encode_batch, Encoder, EventRef};
use ringbus::{Event, EventId, EventType, Source, Timestamp};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The seed's `UserRegisteredEvent` payload.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct UserRegistered {
    user_id: String,
    email: String,
    name: String,
}

/// A small typed payload.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Tick {
    seq: u64,
    value: i32,
}

/// The seed's event struct (id, type, source, timestamp, data, version), for
/// postcard and rmp-serde: what a user would serialize without this codec. (The
/// timestamp is plain nanoseconds: postcard cannot read `Timestamp`, whose
/// `Deserialize` also accepts RFC 3339 text.) serde_json gets the seed's JSON,
/// `Event<P>`'s own serde form, with an RFC 3339 timestamp.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Flat<P> {
    event_id: uuid::Uuid,
    event_type: String,
    source: String,
    timestamp: u64,
    data: P,
    version: u32,
}

const T0: u64 = 1_720_000_000_123_456_789;

fn event<P>(ty: &str, src: &str, data: P, i: u64) -> Event<P> {
    let mut e = Event::new(EventType::new(ty), Source::new(src), data);
    e.id = EventId::from_bytes(
        (0x0190_7630_4c3f_7b2a_9c4d_5e6f_7081_9200_u128 + u128::from(i)).to_be_bytes(),
    );
    // Events of a stream: about a millisecond apart.
    e.timestamp = Timestamp::from_nanos(T0 + i * 1_000_317);
    e
}

fn user_registered(i: u64) -> Event<UserRegistered> {
    event(
        "user.registered",
        "user-service",
        UserRegistered {
            user_id: format!("u-{}", 1001 + i),
            email: "alice@example.com".into(),
            name: "Alice Smith".into(),
        },
        i,
    )
}

fn tick(i: u64) -> Event<Tick> {
    event(
        "sensor.tick",
        "sensor",
        Tick {
            seq: 42 + i,
            value: -7,
        },
        i,
    )
}

fn flat<P: Clone>(e: &Event<P>) -> Flat<P> {
    Flat {
        event_id: *e.id.as_uuid(),
        event_type: e.event_type.name().to_owned(),
        source: e.source.name().to_owned(),
        timestamp: e.timestamp.as_nanos(),
        data: e.data.clone(),
        version: e.version,
    }
}

struct Sizes {
    ringbus: usize,
    ringbus_compact: usize,
    ringbus_batch100: f64,
    json: usize,
    postcard: usize,
    rmp: usize,
}

fn sizes<P: Serialize + Clone>(make: impl Fn(u64) -> Event<P>) -> Sizes {
    let e = make(0);
    let f = flat(&e);
    let mut buf = Vec::new();
    let ringbus = encode(&e, &mut buf).unwrap();
    buf.clear();
    let ringbus_compact = Encoder::new()
        .compact_structs(true)
        .encode(&e, &mut buf)
        .unwrap();
    let batch: Vec<_> = (0..100).map(&make).collect();
    buf.clear();
    let b = encode_batch(&batch, &mut buf).unwrap();
    Sizes {
        ringbus,
        ringbus_compact,
        ringbus_batch100: b as f64 / 100.0,
        json: serde_json::to_vec(&e).unwrap().len(),
        postcard: postcard::to_stdvec(&f).unwrap().len(),
        rmp: rmp_serde::to_vec(&f).unwrap().len(),
    }
}

fn print_sizes() {
    println!("bytes/event           ringbus  ringbus-compact  ringbus batch-100  serde_json  postcard  rmp-serde");
    for (name, s) in [
        ("user.registered", sizes(user_registered)),
        ("tick (small typed)", sizes(tick)),
    ] {
        println!(
            "{name:<20} {:>9} {:>16} {:>18.1} {:>11} {:>9} {:>10}",
            s.ringbus, s.ringbus_compact, s.ringbus_batch100, s.json, s.postcard, s.rmp
        );
    }
}

fn bench_event<P>(c: &mut Criterion, name: &str, make: impl Fn(u64) -> Event<P>)
where
    P: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug,
{
    let e = make(0);
    let f = flat(&e);
    let mut g = c.benchmark_group(format!("codec/{name}"));
    g.throughput(Throughput::Elements(1));

    let mut buf = Vec::with_capacity(4096);
    g.bench_function("encode/ringbus", |b| {
        b.iter(|| {
            buf.clear();
            encode(black_box(&e), &mut buf).unwrap()
        })
    });
    let compact = Encoder::new().compact_structs(true);
    g.bench_function("encode/ringbus-compact", |b| {
        b.iter(|| {
            buf.clear();
            compact.encode(black_box(&e), &mut buf).unwrap()
        })
    });
    g.bench_function("encode/serde_json", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&e)).unwrap()
        })
    });
    g.bench_function("encode/postcard", |b| {
        b.iter(|| {
            buf.clear();
            postcard::to_io(black_box(&f), &mut buf).unwrap();
        })
    });
    g.bench_function("encode/rmp-serde", |b| {
        b.iter(|| {
            buf.clear();
            rmp_serde::encode::write(&mut buf, black_box(&f)).unwrap()
        })
    });

    let mut ours = Vec::new();
    encode(&e, &mut ours).unwrap();
    assert_eq!(decode::<P>(&ours).unwrap().0, e);
    let json = serde_json::to_vec(&e).unwrap();
    assert_eq!(serde_json::from_slice::<Event<P>>(&json).unwrap(), e);
    let pc = postcard::to_stdvec(&f).unwrap();
    assert_eq!(postcard::from_bytes::<Flat<P>>(&pc).unwrap(), f);
    let rmp = rmp_serde::to_vec(&f).unwrap();
    g.bench_function("decode/ringbus", |b| {
        b.iter(|| decode::<P>(black_box(&ours)).unwrap())
    });
    g.bench_function("decode/ringbus-EventRef", |b| {
        b.iter(|| EventRef::decode(black_box(&ours)).unwrap())
    });
    let mut ours_compact = Vec::new();
    compact.encode(&e, &mut ours_compact).unwrap();
    g.bench_function("decode/ringbus-compact", |b| {
        b.iter(|| decode::<P>(black_box(&ours_compact)).unwrap())
    });
    // The same frame with an event type this process never interned (same
    // length, last letter changed): the per-thread name cache cannot help.
    let mut unknown = ours.clone();
    let at = 4 + 1 + 16 + 1 + e.event_type.name().len() - 1;
    unknown[at] = b'Q';
    assert!(EventType::lookup(EventRef::decode(&unknown).unwrap().0.event_type()).is_none());
    g.bench_function("decode/ringbus-EventRef-uninterned-type", |b| {
        b.iter(|| EventRef::decode(black_box(&unknown)).unwrap())
    });
    g.bench_function("decode/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Event<P>>(black_box(&json)).unwrap())
    });
    g.bench_function("decode/postcard", |b| {
        b.iter(|| postcard::from_bytes::<Flat<P>>(black_box(&pc)).unwrap())
    });
    g.bench_function("decode/rmp-serde", |b| {
        b.iter(|| rmp_serde::from_slice::<Flat<P>>(black_box(&rmp)).unwrap())
    });
    g.finish();

    // Batches of 100: time per event.
    let batch: Vec<_> = (0..100).map(&make).collect();
    let mut g = c.benchmark_group(format!("codec/{name}/batch100"));
    g.throughput(Throughput::Elements(100));
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_batch(black_box(&batch), &mut buf).unwrap()
        })
    });
    let mut frame = Vec::new();
    encode_batch(&batch, &mut frame).unwrap();
    g.bench_function("decode", |b| {
        b.iter(|| decode_batch::<P>(black_box(&frame)).unwrap())
    });
    g.bench_function("decode-EventRef", |b| {
        b.iter(|| {
            let (batch, _) = ringbus::codec::BatchRef::decode(black_box(&frame)).unwrap();
            batch
                .iter()
                .map(|v| v.timestamp().as_nanos())
                .fold(0, u64::wrapping_add)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    print_sizes();
    bench_event(c, "user.registered", user_registered);
    bench_event(c, "tick", tick);
}

criterion_group! {
    name = codec;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(codec);
