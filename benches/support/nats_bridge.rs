//! The JetStream bridge's rows of the `nats` section (issue 13, N1–N6), measured in
//! the same interleaved rounds as the raw async-nats rows R1–R5 of `nats.rs` (this
//! module's parent, whose server, client and runtime it shares), plus the store's S1
//! workload as a row of its own (N5's second anchor).
//!
//! Every bridge run starts from a fresh event stream: the raw client deletes
//! `RINGBUS` (and `RINGBUS_DLQ`), then a new [`NatsBridge`] with the default stream
//! spec creates them (prefix `rb`, so events go to `rb.ev.bench.appended`). Bridges,
//! buses and consumers are made and shut down outside the measured time. Every run
//! checks its counts — every event stored, handled and acked exactly once, nothing
//! redelivered, NAK'd or given up — and fails rather than report a figure otherwise.
//!
//! Events are `Event<Payload>`: a timestamp (N3 measures latency with it) and a
//! padding string calibrated so that the encoded frame — the message body the bridge
//! sends — is at least as long as the raw rows' payload ([`PAYLOAD_BYTES`]); both
//! sizes are printed. N5 and S1 use the store's events instead (`Maker`, S1's shape).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer::PullConsumer, message::PublishMessage};
use bytes::Bytes;
use hdrhistogram::Histogram;
use ringbus::nats::{
    AckMode, ConsumerSpec, InboundHandle, InboundOptions, NatsBridge, Ordering, OutboundOptions,
    FRAME_CONTENT_TYPE,
};
use ringbus::store::checkpoint::InMemoryCheckpoints;
use ringbus::store::{Durability, EventStore};
use ringbus::{event_type, source, Bus, BusBuilder, Event};
use serde::{Deserialize, Serialize};

use super::{bounded, check_ack, RawNats, Sizes, PAYLOAD_BYTES, TIMEOUT};
use crate::store::{appends, err, file_appends, now_ns, open_file, run, Maker, Res, Run, TempDir};

/// The bridge's event stream (its default [`StreamSpec`](ringbus::nats::StreamSpec)).
const STREAM: &str = "RINGBUS";
/// The bridge's dead-letter stream.
const DLQ_STREAM: &str = "RINGBUS_DLQ";
/// Where the bridge publishes the bench events: `<prefix>.ev.<event type>`.
const SUBJECT: &str = "rb.ev.bench.appended";
/// S1's shape: this many concurrent appenders, one single-event append at a time each.
pub const APPENDERS: usize = 64;
/// N3's pace, events/s.
pub const PACE: u64 = 1_000;
/// N3's events before the measured ones (not recorded): connections and caches warm.
pub const WARM_UP: u64 = 50;

/// A bench event's payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payload {
    /// `now_ns()` at publish (N3), else the event's number.
    pub t: u64,
    pub pad: String,
}

/// Makes the bench events, padded to the raw rows' payload size once encoded.
#[derive(Clone, Debug)]
pub struct Frames {
    pad: String,
}

impl Frames {
    /// Calibrates the padding against the codec.
    pub fn new() -> Frames {
        let mut f = Frames { pad: String::new() };
        while f.frame(u64::MAX / 2).len() < PAYLOAD_BYTES {
            f.pad.push('x');
        }
        f
    }

    /// An event with payload `t`.
    pub fn event(&self, t: u64) -> Event<Payload> {
        Event::new(
            event_type!("bench.appended"),
            source!("bench"),
            Payload {
                t,
                pad: self.pad.clone(),
            },
        )
    }

    /// Its encoded frame: the body of the bridge's message.
    pub fn frame(&self, t: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAYLOAD_BYTES * 2);
        ringbus::codec::encode(&self.event(t), &mut out).expect("the bench event encodes");
        out
    }

    /// The size of an encoded frame, bytes.
    pub fn frame_len(&self) -> usize {
        self.frame(u64::MAX / 2).len()
    }
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

/// What the bridge rows share: the raw side (server, client, runtime), the event
/// makers, and the latency histograms N3 collects, one per round.
pub struct Bench<'a> {
    raw: &'a RawNats,
    pub frames: Frames,
    maker: Maker,
    store_base: PathBuf,
    latencies: RefCell<Vec<Histogram<u64>>>,
    outbox_phases: RefCell<Vec<OutboxPhases>>,
    /// Per row: the bridge threads' CPU time per event of each run, µs.
    cpu: RefCell<Vec<(&'static str, f64)>>,
}

/// Where an N5 run's time went.
#[derive(Copy, Clone, Debug)]
pub struct OutboxPhases {
    /// Events appended per second while the outbox ran (S1 measures it without).
    pub append_rate: f64,
    /// From the appenders' end until the checkpoint reached the head.
    pub drain: Duration,
}

/// Waits for `done` (polled every 100 µs) for at most [`TIMEOUT`]; the error says
/// `what` was awaited and `state()` where it stood.
fn wait_until(what: &str, mut done: impl FnMut() -> bool, state: impl Fn() -> String) -> Res<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {TIMEOUT:?} ({})", state()));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// CPU time so far of this process's live threads whose name starts with one of
/// `prefixes` (Linux `/proc/self/task/*/schedstat`, nanoseconds; 0 elsewhere).
pub fn threads_cpu_ns(prefixes: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if prefixes.iter().any(|p| comm.starts_with(p)) {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// The bridge's own threads: its runtime, the inbound feeder, the outbox reader,
/// and the buses' dispatchers (where the outbound handler runs).
const BRIDGE_THREADS: [&str; 4] = [
    "ringbus-nats",
    "ringbus-dispatc",
    "ringbus-outbox",
    "ringbus-nats-in",
];

/// `Err` naming `what` unless `got == want`.
fn expect_eq(what: &str, got: u64, want: u64) -> Res<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got}, expected {want}"))
    }
}

/// Shuts a bridge down and checks that it left nothing unacked.
fn shut(bridge: NatsBridge) -> Res<()> {
    let report = bridge.shutdown();
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("the bridge's shutdown was not clean: {report:?}"))
    }
}

/// A bus for the bench payload (defaults: 4096 slots, blocking waits).
fn bus() -> Res<Bus<Payload>> {
    BusBuilder::<Payload>::new()
        .build()
        .map_err(err("building a bus"))
}

/// Checks an inbound consumer's counters after `n` first deliveries: each acked
/// once, nothing redelivered, NAK'd, terminated or dropped.
fn check_inbound(inbound: &InboundHandle, n: u64) -> Res<()> {
    let m = inbound.metrics();
    expect_eq("inbound received", m.received, n)?;
    expect_eq("inbound acked", m.acked, n)?;
    expect_eq("inbound redelivered", m.redelivered, 0)?;
    expect_eq("inbound NAK'd", m.naked, 0)?;
    expect_eq("inbound terminated", m.termed, 0)?;
    expect_eq("inbound ack errors", m.ack_errors, 0)
}

impl<'a> Bench<'a> {
    pub fn new(raw: &'a RawNats) -> Bench<'a> {
        Bench {
            raw,
            frames: Frames::new(),
            maker: Maker::new(),
            store_base: std::env::temp_dir(),
            latencies: RefCell::new(Vec::new()),
            outbox_phases: RefCell::new(Vec::new()),
            cpu: RefCell::new(Vec::new()),
        }
    }

    /// N3's histograms so far, one per round.
    pub fn latencies(&self) -> Vec<Histogram<u64>> {
        self.latencies.borrow().clone()
    }

    /// Records a run's bridge CPU: `ns` over `n` events. Only the threads of
    /// this run's bridge and bus are alive then (earlier ones were shut down).
    fn record_cpu(&self, row: &'static str, ns: u64, n: u64) {
        if ns > 0 {
            self.cpu
                .borrow_mut()
                .push((row, ns as f64 / 1e3 / n as f64));
        }
    }

    /// The bridge threads' CPU per event of `row`'s runs, µs.
    pub fn cpu_per_event(&self, row: &str) -> Vec<f64> {
        self.cpu
            .borrow()
            .iter()
            .filter(|(r, _)| *r == row)
            .map(|(_, v)| *v)
            .collect()
    }

    /// N5's phases so far, one per round.
    pub fn outbox_phases(&self) -> Vec<OutboxPhases> {
        self.outbox_phases.borrow().clone()
    }

    /// Deletes the bridge's streams (the next bridge creates them empty).
    fn fresh_streams(&self) -> Res<()> {
        let js = &self.raw.js;
        self.raw.rt.block_on(async {
            for name in [STREAM, DLQ_STREAM] {
                if bounded("looking up a stream", js.get_stream(name))
                    .await
                    .is_ok()
                {
                    bounded("deleting a stream", js.delete_stream(name)).await?;
                }
            }
            Res::Ok(())
        })
    }

    /// Fresh streams and a bridge on them.
    fn fresh_bridge(&self) -> Res<NatsBridge> {
        self.fresh_streams()?;
        self.bridge()
    }

    /// A bridge on the existing streams (creates them when missing).
    fn bridge(&self) -> Res<NatsBridge> {
        NatsBridge::builder(self.raw.url())
            .build()
            .map_err(err("building the bridge"))
    }

    /// The number of messages in the bridge's event stream.
    fn stream_messages(&self) -> Res<u64> {
        let js = &self.raw.js;
        self.raw.rt.block_on(async {
            let mut s = bounded("looking up the stream", js.get_stream(STREAM)).await?;
            Ok(bounded("stream info", s.info()).await?.state.messages)
        })
    }

    /// Waits until the consumer `durable` has acked stream sequences 1..=n (ack
    /// floor n, nothing pending), polling its info from the raw client.
    fn wait_ack_floor(&self, durable: &str, n: u64) -> Res<()> {
        let js = &self.raw.js;
        self.raw.rt.block_on(async {
            let mut c: PullConsumer = bounded(
                "looking up the consumer",
                js.get_consumer_from_stream(durable, STREAM),
            )
            .await?;
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let info = bounded("consumer info", c.info()).await?;
                if info.ack_floor.stream_sequence == n && info.num_ack_pending == 0 {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "acks not applied: ack floor {}, {} pending, of {n}",
                        info.ack_floor.stream_sequence, info.num_ack_pending
                    ));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    }

    /// Publishes `n` bench events' frames to the bridge's subject with the raw
    /// client, as the bridge's outbound would (Nats-Msg-Id = event id,
    /// Content-Type = frame), 1 024 acks outstanding: not timed.
    fn prepublish(&self, n: u64) -> Res<()> {
        let js = &self.raw.js;
        self.raw.rt.block_on(async {
            let mut pending = std::collections::VecDeque::with_capacity(1024);
            let mut stored = 0;
            for i in 0..n {
                if pending.len() == 1024 {
                    let ack = pending.pop_front().expect("not empty");
                    stored += check_ack(bounded("publish ack", ack).await?)?;
                }
                let event = self.frames.event(i);
                let mut body = Vec::with_capacity(PAYLOAD_BYTES * 2);
                ringbus::codec::encode(&event, &mut body).map_err(err("encoding"))?;
                let m = PublishMessage::build()
                    .payload(Bytes::from(body))
                    .message_id(event.id.to_string())
                    .header("Content-Type", FRAME_CONTENT_TYPE);
                let ack = bounded("sending a publish", js.send_publish(SUBJECT, m)).await?;
                pending.push_back(std::future::IntoFuture::into_future(ack));
            }
            for ack in pending {
                stored += check_ack(bounded("publish ack", ack).await?)?;
            }
            expect_eq("pre-published messages stored", stored, n)
        })
    }

    /// N1: `n` events published on a bus, the bridge's outbound (default options:
    /// 256 in flight) publishing them: events/s from the first publish until
    /// [`OutboundHandle::flush`](ringbus::nats::OutboundHandle::flush) returns
    /// (after `Bus::flush`, which returns once the bridge's handler took them all).
    pub fn outbound(&self, n: u64) -> Res<f64> {
        let bridge = self.fresh_bridge()?;
        let bus = bus()?;
        let out = bridge
            .outbound(&bus, ">", OutboundOptions::default())
            .map_err(err("starting the outbound"))?;
        let mut p = bus.publisher();
        let t = Instant::now();
        for i in 0..n {
            p.publish(self.frames.event(i))
                .map_err(|_| "publishing on the bus failed".to_owned())?;
        }
        bus.flush().map_err(err("Bus::flush"))?;
        let flushed = out.flush(TIMEOUT);
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let cpu = threads_cpu_ns(&BRIDGE_THREADS);
        let m = out.metrics();
        if !flushed {
            return Err(format!("OutboundHandle::flush failed: {m:?}"));
        }
        expect_eq("outbound accepted", m.accepted, n)?;
        expect_eq("outbound published", m.published, n)?;
        expect_eq("outbound duplicates", m.duplicates, 0)?;
        expect_eq("outbound failed", m.failed, 0)?;
        expect_eq("messages in the stream", self.stream_messages()?, n)?;
        self.record_cpu("N1", cpu, n);
        drop(p);
        shut(bridge)?;
        bus.shutdown().map_err(err("Bus::shutdown"))?;
        Ok(rate)
    }

    /// N2, N4, N6: `n` frames pre-published (not timed), then an inbound consumer
    /// with `options` feeding a bus with one no-op handler (it counts): events/s
    /// from the `inbound()` call until every event was handled and the consumer's
    /// info shows every message acked (ack floor `n`, nothing pending).
    pub fn inbound(&self, row: &'static str, n: u64, options: InboundOptions) -> Res<f64> {
        let bridge = self.fresh_bridge()?;
        self.prepublish(n)?;
        let bus = bus()?;
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        bus.subscribe(">", move |_: &Event<Payload>| {
            h.fetch_add(1, AtomicOrdering::Relaxed);
        })
        .map_err(err("subscribing"))?;
        let durable = "bench";
        let t = Instant::now();
        let inbound = bridge
            .inbound(&bus, ConsumerSpec::new(durable, [">"]), options)
            .map_err(err("starting the inbound"))?;
        wait_until(
            "every event handled and acked",
            || handled.load(AtomicOrdering::Relaxed) >= n && inbound.metrics().acked >= n,
            || {
                format!(
                    "{} handled, {:?}",
                    handled.load(AtomicOrdering::Relaxed),
                    inbound.metrics()
                )
            },
        )?;
        self.wait_ack_floor(durable, n)?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let cpu = threads_cpu_ns(&BRIDGE_THREADS);
        bus.flush().map_err(err("Bus::flush"))?;
        expect_eq("events handled", handled.load(AtomicOrdering::Relaxed), n)?;
        check_inbound(&inbound, n)?;
        self.record_cpu(row, cpu, n);
        let report = inbound.stop();
        if !report.unacked.is_empty() {
            return Err(format!("the inbound's stop left messages: {report:?}"));
        }
        shut(bridge)?;
        bus.shutdown().map_err(err("Bus::shutdown"))?;
        Ok(rate)
    }

    /// N3: bus A → outbound → JetStream → inbound → bus B, two bridges in this
    /// process, `n` events paced at [`PACE`]/s after [`WARM_UP`] unrecorded ones;
    /// bus B's handler records publish-to-handler time (the payload's `now_ns()`)
    /// in an HDR histogram, kept for the report. The figure is the achieved rate.
    pub fn round_trip(&self, n: u64) -> Res<f64> {
        self.fresh_streams()?;
        let bridge_a = self.bridge()?;
        let bridge_b = self.bridge()?;
        let bus_a = bus()?;
        let bus_b = bus()?;
        let out = bridge_a
            .outbound(&bus_a, ">", OutboundOptions::default())
            .map_err(err("starting the outbound"))?;
        let hist = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
                .map_err(err("a histogram"))?,
        ));
        let handled = Arc::new(AtomicU64::new(0));
        let (h, c) = (hist.clone(), handled.clone());
        bus_b
            .subscribe(">", move |e: &Event<Payload>| {
                if e.data.t != 0 {
                    let ns = now_ns().saturating_sub(e.data.t).max(1_000);
                    let _ = h.lock().unwrap_or_else(|e| e.into_inner()).record(ns);
                }
                c.fetch_add(1, AtomicOrdering::Relaxed);
            })
            .map_err(err("subscribing"))?;
        let durable = "latency";
        let inbound = bridge_b
            .inbound(
                &bus_b,
                ConsumerSpec::new(durable, [">"]),
                InboundOptions::default(),
            )
            .map_err(err("starting the inbound"))?;
        let mut p = bus_a.publisher();
        let total = WARM_UP + n;
        let gap = Duration::from_nanos(1_000_000_000 / PACE);
        now_ns(); // the clock's epoch, before the first stamp
        let start = Instant::now();
        for i in 0..total {
            let due = start + gap * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let t = if i < WARM_UP { 0 } else { now_ns() };
            p.publish(self.frames.event(t))
                .map_err(|_| "publishing on the bus failed".to_owned())?;
        }
        let paced = total as f64 / start.elapsed().as_secs_f64();
        wait_until(
            "every event handled",
            || handled.load(AtomicOrdering::Relaxed) >= total && inbound.metrics().acked >= total,
            || {
                format!(
                    "{} handled, {:?}",
                    handled.load(AtomicOrdering::Relaxed),
                    inbound.metrics()
                )
            },
        )?;
        bus_a.flush().map_err(err("Bus::flush"))?;
        if !out.flush(TIMEOUT) {
            return Err(format!("OutboundHandle::flush failed: {:?}", out.metrics()));
        }
        self.wait_ack_floor(durable, total)?;
        bus_b.flush().map_err(err("Bus::flush"))?;
        expect_eq(
            "events handled",
            handled.load(AtomicOrdering::Relaxed),
            total,
        )?;
        let m = out.metrics();
        expect_eq("outbound published", m.published, total)?;
        expect_eq("outbound duplicates", m.duplicates, 0)?;
        check_inbound(&inbound, total)?;
        let recorded = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
        expect_eq("latencies recorded", recorded.len(), n)?;
        self.latencies.borrow_mut().push(recorded);
        drop(p);
        shut(bridge_b)?;
        shut(bridge_a)?;
        bus_a.shutdown().map_err(err("Bus::shutdown"))?;
        bus_b.shutdown().map_err(err("Bus::shutdown"))?;
        Ok(paced)
    }

    /// S1 as a row of its own: [`APPENDERS`] threads appending single events
    /// (each to its own stream) to a fresh `FileStore`, `Immediate`, for `window`.
    pub fn store_appends(&self, window: Duration) -> Res<f64> {
        file_appends(
            &self.store_base,
            &self.maker,
            Durability::Immediate,
            APPENDERS,
            1,
            window,
        )
    }

    /// N5: the outbox. A fresh `FileStore` (`Immediate`) with
    /// `outbound_from_store` (default options, in-memory checkpoints) reading it;
    /// S1's appenders append for `window`: events/s from before the appenders
    /// start until the outbox's checkpoint says every appended event was acked
    /// by JetStream.
    pub fn outbox(&self, window: Duration) -> Res<f64> {
        let bridge = self.fresh_bridge()?;
        let dir = TempDir::new(&self.store_base, "outbox")?;
        let store = Arc::new(open_file(dir.path(), Durability::Immediate)?);
        let out = bridge
            .outbound_from_store(
                store.clone(),
                "bench",
                ">",
                InMemoryCheckpoints::new(),
                OutboundOptions::default(),
            )
            .map_err(err("starting the outbox"))?;
        let t = Instant::now();
        appends(&*store, &self.maker, APPENDERS, 1, window)?;
        let total = store.head().map_or(0, |p| p.0 + 1);
        let appended_in = t.elapsed();
        if total == 0 {
            return Err("nothing appended".into());
        }
        wait_until(
            "every appended event acked (the checkpoint at the head)",
            || out.metrics().checkpoint == Some(total - 1),
            || format!("{total} appended, {:?}", out.metrics()),
        )?;
        let took = t.elapsed();
        let rate = total as f64 / took.as_secs_f64();
        self.outbox_phases.borrow_mut().push(OutboxPhases {
            append_rate: total as f64 / appended_in.as_secs_f64(),
            drain: took - appended_in,
        });
        let m = out.metrics();
        expect_eq("outbox accepted", m.accepted, total)?;
        expect_eq("outbox published", m.published, total)?;
        expect_eq("outbox duplicates", m.duplicates, 0)?;
        expect_eq("outbox failed", m.failed, 0)?;
        expect_eq("messages in the stream", self.stream_messages()?, total)?;
        let report = out.stop();
        if !report.unacked.is_empty() {
            return Err(format!("the outbox's stop left events: {report:?}"));
        }
        shut(bridge)?;
        drop(store);
        Ok(rate)
    }
}

/// Messages per run of the bridge rows, and S1's / N5's append window.
#[derive(Copy, Clone, Debug)]
pub struct BridgeSizes {
    pub outbound: u64,
    pub inbound: u64,
    pub round_trip: u64,
    pub strict: u64,
    pub double_ack: u64,
    pub append_window: Duration,
}

impl BridgeSizes {
    /// The bridge rows' sizes for the raw rows' `sizes` (the anchors' counts).
    pub fn for_raw(sizes: Sizes, quick: bool) -> BridgeSizes {
        BridgeSizes {
            outbound: sizes.publish_window,
            inbound: sizes.pull_ack,
            round_trip: if quick { 500 } else { 2_000 },
            strict: if quick { 500 } else { 2_000 },
            double_ack: sizes.pull_double_ack,
            append_window: Duration::from_millis(if quick { 100 } else { 300 }),
        }
    }
}

/// The bridge's rows (and S1) as interleavable runs, labelled with their row names.
pub fn bridge_runs<'b>(bench: &'b Bench<'_>, s: BridgeSizes) -> Vec<Run<'b>> {
    vec![
        run(
            "N1  bridge outbound  bus → JetStream, 256 in flight",
            move || bench.outbound(s.outbound),
        ),
        run(
            "N2  bridge inbound  JetStream → bus → no-op → ack",
            move || bench.inbound("N2", s.inbound, InboundOptions::default()),
        ),
        run(
            format!("N3  bridge round trip  bus A → bus B, paced {PACE}/s"),
            move || bench.round_trip(s.round_trip),
        ),
        run("N4  bridge inbound  Ordering::Strict", move || {
            bench.inbound(
                "N4",
                s.strict,
                InboundOptions {
                    ordering: Ordering::Strict,
                    ..InboundOptions::default()
                },
            )
        }),
        run(
            format!("N5  bridge outbox  FileStore Immediate, {APPENDERS} appenders"),
            move || bench.outbox(s.append_window),
        ),
        run("N6  bridge inbound  AckMode::DoubleAck", move || {
            bench.inbound(
                "N6",
                s.double_ack,
                InboundOptions {
                    ack: AckMode::DoubleAck,
                    ..InboundOptions::default()
                },
            )
        }),
        run(
            format!("S1  FileStore  single-event appends, {APPENDERS} appenders, Immediate"),
            move || bench.store_appends(s.append_window),
        ),
    ]
}
