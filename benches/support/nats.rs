//! The `nats` section of the report (issue 13): raw async-nats 0.51 against a
//! `nats-server` this run starts itself — the anchors the JetStream bridge's rows
//! (N1–N6) are measured against, in the same run, in interleaved rounds.
//!
//! Included by path from `examples/throughput.rs` (`--scenario nats`, feature `nats`),
//! next to `store.rs`, whose `Run`, `interleave`, `spread` and formatting it uses. The
//! server comes from the tests' harness, `tests/support/nats.rs`, included by path (one
//! copy of the start / port / readiness logic).
//!
//! Every workload: a fresh R1 file stream `RAW` on `raw.ev.>`, 120-byte payloads to
//! `raw.ev.bench.appended`, each with a unique `Nats-Msg-Id` in UUID text (as the
//! bridge sends event ids), loopback, a tokio current-thread runtime on this thread.

#![allow(dead_code)]

#[path = "../../tests/support/nats.rs"]
mod server;

#[path = "nats_bridge.rs"]
mod bridge;

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::store::{
    commit, cores, err, fmt_rate, interleave, load_average, run, show_load, spread, Res, Run,
};
pub use server::NatsServer;

/// The payload size of every published message, bytes.
pub const PAYLOAD_BYTES: usize = 120;

/// The subject every message goes to (the bridge's `<prefix>.ev.<event type>`).
const SUBJECT: &str = "raw.ev.bench.appended";

/// The stream each workload recreates.
const STREAM: &str = "RAW";

/// The pull consumer's `max_ack_pending` (the bridge's `ConsumerSpec` default).
pub const MAX_ACK_PENDING: i64 = 1000;

/// The publish windows measured (acks outstanding).
pub const WINDOWS: [usize; 2] = [256, 1024];

/// How long one request to the server may take before the run fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Messages per run of each workload.
#[derive(Copy, Clone, Debug)]
pub struct Sizes {
    pub publish_each: u64,
    pub publish_window: u64,
    pub pull_ack: u64,
    pub pull_double_ack: u64,
}

impl Sizes {
    /// `--quick`: a few hundred ms per round on this machine.
    pub const QUICK: Sizes = Sizes {
        publish_each: 2_000,
        publish_window: 20_000,
        pull_ack: 20_000,
        pull_double_ack: 2_000,
    };
    /// The full report: about a second per run.
    pub const FULL: Sizes = Sizes {
        publish_each: 8_000,
        publish_window: 60_000,
        pull_ack: 60_000,
        pull_double_ack: 6_000,
    };
}

/// A server started for the benchmark, a client connected to it, and the runtime
/// that drives the client.
pub struct RawNats {
    server: NatsServer,
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    payload: Bytes,
    /// The next `Nats-Msg-Id` number: ids never repeat within a run of the server.
    next_id: AtomicU64,
}

impl std::fmt::Debug for RawNats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawNats")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Awaits `f` for at most [`TIMEOUT`].
async fn bounded<T, E: std::fmt::Display>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Res<T> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r.map_err(err(what)),
        Err(_) => Err(format!("{what}: no answer in {TIMEOUT:?}")),
    }
}

impl RawNats {
    /// Starts a server (see the module doc) and connects to it.
    pub fn start() -> Res<RawNats> {
        let server = NatsServer::start().map_err(err("starting nats-server"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err("building a tokio runtime"))?;
        // `jetstream::new` spawns the context's acker task: inside the runtime.
        let (client, js) = rt.block_on(async {
            let client = bounded("connecting", async_nats::connect(server.url())).await?;
            let js = jetstream::new(client.clone());
            Res::Ok((client, js))
        })?;
        Ok(RawNats {
            server,
            rt,
            client,
            js,
            payload: Bytes::from(vec![b'x'; PAYLOAD_BYTES]),
            next_id: AtomicU64::new(0),
        })
    }

    /// The server's version, as it reported it to the client.
    pub fn version(&self) -> String {
        self.client.server_info().version
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The client, for the bridge's rows (the same server).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The next message: the payload and a fresh `Nats-Msg-Id`.
    fn message(&self) -> PublishMessage {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = uuid::Uuid::from_u128((u128::from(std::process::id()) << 64) | u128::from(n));
        PublishMessage::build()
            .payload(self.payload.clone())
            .message_id(id.hyphenated().to_string())
    }

    /// Deletes and recreates the stream: every run starts empty.
    async fn fresh_stream(&self) -> Res<stream::Stream> {
        if bounded("looking up the stream", self.js.get_stream(STREAM))
            .await
            .is_ok()
        {
            bounded("deleting the stream", self.js.delete_stream(STREAM)).await?;
        }
        bounded(
            "creating the stream",
            self.js.create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["raw.ev.>".into()],
                storage: stream::StorageType::File,
                num_replicas: 1,
                ..Default::default()
            }),
        )
        .await
    }

    /// Publishes `n` messages with up to `window` acks outstanding (1: awaiting each);
    /// every ack must be a new message.
    async fn publish(&self, n: u64, window: usize) -> Res<()> {
        let mut pending = VecDeque::with_capacity(window);
        let mut stored = 0u64;
        for _ in 0..n {
            if pending.len() == window {
                let ack = pending.pop_front().expect("window is not empty");
                stored += check_ack(bounded("publish ack", IntoFuture::into_future(ack)).await?)?;
            }
            let ack = bounded(
                "sending a publish",
                self.js.send_publish(SUBJECT, self.message()),
            )
            .await?;
            pending.push_back(ack);
        }
        for ack in pending {
            stored += check_ack(bounded("publish ack", IntoFuture::into_future(ack)).await?)?;
        }
        if stored != n {
            return Err(format!("{stored} of {n} publishes stored"));
        }
        Ok(())
    }

    /// Publish, awaiting each ack before the next publish: events/s.
    pub fn publish_each(&self, n: u64) -> Res<f64> {
        self.publish_window(n, 1)
    }

    /// Publish with up to `window` acks outstanding: events/s.
    pub fn publish_window(&self, n: u64, window: usize) -> Res<f64> {
        self.rt.block_on(async {
            self.fresh_stream().await?;
            let t = Instant::now();
            self.publish(n, window).await?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            self.expect_messages(n).await?;
            Ok(rate)
        })
    }

    /// A stream of `n` messages (untimed), then one durable pull consumer (explicit
    /// acks, `max_ack_pending` [`MAX_ACK_PENDING`], async-nats's default pull batch)
    /// takes them all and acks each (`double`: awaits the server's confirmation of
    /// each ack): events/s, from the consumer's first pull to the last ack flushed.
    pub fn pull(&self, n: u64, double: bool) -> Res<f64> {
        self.rt.block_on(async {
            let s = self.fresh_stream().await?;
            self.publish(n, 1024).await?;
            let mut c: consumer::PullConsumer = bounded(
                "creating the consumer",
                s.create_consumer(consumer::pull::Config {
                    durable_name: Some("raw".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                }),
            )
            .await?;
            let t = Instant::now();
            let mut messages = bounded("pulling", c.messages()).await?;
            for _ in 0..n {
                let m = match tokio::time::timeout(TIMEOUT, messages.next()).await {
                    Ok(Some(m)) => m.map_err(err("a pulled message"))?,
                    Ok(None) => return Err("the pull stream ended early".into()),
                    Err(_) => return Err(format!("no message in {TIMEOUT:?}")),
                };
                if double {
                    bounded("double ack", m.double_ack()).await?;
                } else {
                    bounded("ack", m.ack()).await?;
                }
            }
            bounded("flushing the acks", self.client.flush()).await?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            drop(messages);
            // Every message acked, none twice: the ack floor reaches n.
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let info = bounded("consumer info", c.info()).await?;
                if info.ack_floor.stream_sequence == n && info.num_ack_pending == 0 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "acks not applied: ack floor {}, {} pending, of {n}",
                        info.ack_floor.stream_sequence, info.num_ack_pending
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(rate)
        })
    }

    /// The stream holds exactly `n` messages.
    async fn expect_messages(&self, n: u64) -> Res<()> {
        let mut s = bounded("looking up the stream", self.js.get_stream(STREAM)).await?;
        let messages = bounded("stream info", s.info()).await?.state.messages;
        if messages != n {
            return Err(format!("the stream holds {messages} messages, not {n}"));
        }
        Ok(())
    }
}

/// 1 for a stored message; an error for a duplicate (ids never repeat here).
fn check_ack(ack: jetstream::publish::PublishAck) -> Res<u64> {
    if ack.duplicate {
        Err(format!("sequence {} acked as a duplicate", ack.sequence))
    } else {
        Ok(1)
    }
}

/// The raw rows, `R1`–`R5`, as interleavable runs on `raw`'s server.
pub fn raw_runs(raw: &RawNats, sizes: Sizes) -> Vec<Run<'_>> {
    let mut runs = vec![run(
        "R1  raw async-nats  publish, awaiting each ack",
        move || raw.publish_each(sizes.publish_each),
    )];
    for (i, window) in WINDOWS.into_iter().enumerate() {
        runs.push(run(
            format!(
                "R{}  raw async-nats  publish, {window} acks outstanding",
                i + 2
            ),
            move || raw.publish_window(sizes.publish_window, window),
        ));
    }
    runs.push(run("R4  raw async-nats  pull consume + ack", move || {
        raw.pull(sizes.pull_ack, false)
    }));
    runs.push(run(
        "R5  raw async-nats  pull consume + double ack",
        move || raw.pull(sizes.pull_double_ack, true),
    ));
    runs
}

/// A row's index by its name (the label's first token: `R2`, `N1`, `S1`).
fn row(runs: &[Run<'_>], name: &str) -> usize {
    runs.iter()
        .position(|r| r.label.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}"))
}

/// `met`, or `**missed**` (markdown bold: the report is pasted into BENCHMARKS.md).
fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// `--scenario nats`: starts a server, runs every row — raw R1–R5, the bridge's
/// N1–N6 and the store's S1 — in interleaved rounds and prints a table, one row per
/// system and workload: median [min – max] events/s; then each bridge row against
/// its anchor (ratio of the medians, and the range of the per-round ratios) and the
/// issue's target, and N3's latency percentiles.
pub fn own_report(quick: bool) -> Res<()> {
    let (sizes, rounds) = if quick {
        (Sizes::QUICK, 3)
    } else {
        (Sizes::FULL, 5)
    };
    let bsizes = bridge::BridgeSizes::for_raw(sizes, quick);
    let load_before = load_average();
    let started = Instant::now();
    let raw = RawNats::start()?;
    let version = raw.version();
    eprintln!("[nats] nats-server {version} at {}", raw.url());
    let bench = bridge::Bench::new(&raw);
    let mut runs = raw_runs(&raw, sizes);
    runs.extend(bridge::bridge_runs(&bench, bsizes));
    // For profiling one workload: `RINGBUS_NATS_ROWS=N2,R4` runs only those rows.
    let only = std::env::var("RINGBUS_NATS_ROWS").ok();
    if let Some(only) = &only {
        let names: Vec<&str> = only.split(',').map(str::trim).collect();
        runs.retain(|r| names.contains(&r.label.split_whitespace().next().unwrap_or("")));
    }
    let values = interleave("nats", rounds, &mut runs)?;
    let load_after = load_average();

    println!(
        "nats — commit {}, {} cores; load (1-min average) {} before, {} after; {:.0} s",
        commit(),
        cores(),
        show_load(load_before),
        show_load(load_after),
        started.elapsed().as_secs_f64()
    );
    println!(
        "nats-server {version} started by this run (-js, store in {}); async-nats 0.51, tokio \
         current-thread runtime; {PAYLOAD_BYTES}-byte payload + Nats-Msg-Id (UUID text), R1 \
         file stream, loopback; {rounds} interleaved rounds; median [min – max]",
        std::env::temp_dir().display()
    );
    println!(
        "  per run: {} (R1), {} (R2, R3), {} (R4), {} (R5) messages",
        sizes.publish_each, sizes.publish_window, sizes.pull_ack, sizes.pull_double_ack
    );
    println!(
        "  bridge: Event<{{t: u64, pad: String}}> as a {}-byte codec frame (raw rows: {PAYLOAD_BYTES}-byte \
         payload) + Nats-Msg-Id + Content-Type; default options; per run {} (N1), {} (N2), \
         {} + {} warm-up (N3), {} (N4), {} (N6) events; S1 and N5: {} appenders for {} ms, \
         {}-byte store events",
        bench.frames.frame_len(),
        bsizes.outbound,
        bsizes.inbound,
        bsizes.round_trip,
        bridge::WARM_UP,
        bsizes.strict,
        bsizes.double_ack,
        bridge::APPENDERS,
        bsizes.append_window.as_millis(),
        crate::store::EVENT_BYTES,
    );
    for (r, v) in runs.iter().zip(&values) {
        let s = spread(v);
        println!(
            "  {:<58} {:>11}  [{} – {}]",
            r.label,
            fmt_rate(s.median),
            fmt_rate(s.min),
            fmt_rate(s.max)
        );
    }

    let cpu: Vec<String> = ["N1", "N2", "N4", "N6"]
        .iter()
        .filter_map(|row| {
            let v = bench.cpu_per_event(row);
            (!v.is_empty()).then(|| {
                let s = spread(&v);
                format!("{row} {:.2} µs [{:.2}–{:.2}]", s.median, s.min, s.max)
            })
        })
        .collect();
    if !cpu.is_empty() {
        println!(
            "  CPU time of the bridge's threads (runtime, feeder, bus dispatchers) per event: {}",
            cpu.join(", ")
        );
    }
    if let Some(only) = only {
        println!("\n  rows limited to {only} (RINGBUS_NATS_ROWS): no targets");
        return Ok(());
    }
    let median = |name: &str| spread(&values[row(&runs, name)]).median;
    // The per-round ratios of `name` to `anchor`: min and max.
    let per_round = |name: &str, anchor: &dyn Fn(usize) -> f64| {
        let v = &values[row(&runs, name)];
        let r: Vec<f64> = (0..v.len()).map(|k| v[k] / anchor(k)).collect();
        let s = spread(&r);
        (s.min, s.max)
    };
    let at = |name: &str, k: usize| values[row(&runs, name)][k];
    println!("\n  targets (ratio of the medians; per-round ratios in brackets):");
    for (name, anchor, target) in [("N1", "R2", 0.8), ("N2", "R4", 0.7)] {
        let ratio = median(name) / median(anchor);
        let (lo, hi) = per_round(name, &|k| at(anchor, k));
        println!(
            "  {name}  {ratio:.2}× {anchor}  [{lo:.2}–{hi:.2}]   target ≥ {target}× {anchor}   {}",
            verdict(ratio >= target)
        );
    }
    {
        let s1 = median("S1");
        let n1 = median("N1");
        let ratio = median("N5") / s1.min(n1);
        let (lo, hi) = per_round("N5", &|k| at("S1", k).min(at("N1", k)));
        println!(
            "  N5  {ratio:.2}× min(S1 {}, N1 {})  [{lo:.2}–{hi:.2}]   target ≥ 0.8×   {}",
            fmt_rate(s1),
            fmt_rate(n1),
            verdict(ratio >= 0.8)
        );
        let phases = bench.outbox_phases();
        let appending = spread(&phases.iter().map(|p| p.append_rate).collect::<Vec<_>>());
        let drain = spread(
            &phases
                .iter()
                .map(|p| p.drain.as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
        );
        println!(
            "      while the outbox published, the appenders made {} ({:.2}× S1 alone); the last \
             ack came {:.1} ms [{:.1}–{:.1}] after they stopped",
            fmt_rate(appending.median),
            appending.median / s1,
            drain.median,
            drain.min,
            drain.max
        );
    }
    {
        let n4 = median("N4");
        let (lo, hi) = per_round("N4", &|k| at("N2", k));
        println!(
            "  N4  {:.0} µs per event ({:.3}× N2 [{lo:.3}–{hi:.3}])   reported (one event per round trip)",
            1e6 / n4,
            n4 / median("N2")
        );
        let (lo, hi) = per_round("N6", &|k| at("R5", k));
        println!(
            "  N6  {:.2}× R5  [{lo:.2}–{hi:.2}]   reported",
            median("N6") / median("R5")
        );
    }
    let hists = bench.latencies();
    let mut all = hists.first().cloned().ok_or("N3 recorded nothing")?;
    for h in &hists[1..] {
        all.add(h).map_err(err("merging histograms"))?;
    }
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1e6;
    let p50 = q(&all, 0.5);
    let p99 = q(&all, 0.99);
    let rounds_p50 = spread(&hists.iter().map(|h| q(h, 0.5)).collect::<Vec<_>>());
    let rounds_p99 = spread(&hists.iter().map(|h| q(h, 0.99)).collect::<Vec<_>>());
    println!(
        "  N3  publish → handler on bus B, {} events over {} rounds: p50 {p50:.3} ms, p99 {p99:.3} ms, \
         p99.9 {:.3} ms, max {:.3} ms (per round: p50 {:.3}–{:.3}, p99 {:.3}–{:.3})",
        all.len(),
        hists.len(),
        q(&all, 0.999),
        all.max() as f64 / 1e6,
        rounds_p50.min,
        rounds_p50.max,
        rounds_p99.min,
        rounds_p99.max,
    );
    println!(
        "      target p50 ≤ 1 ms {}, p99 ≤ 10 ms {}",
        verdict(p50 <= 1.0),
        verdict(p99 <= 10.0)
    );
    Ok(())
}
