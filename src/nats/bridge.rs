//! The bridge itself: its connection, the runtime it owns, the streams it sets
//! up, and the outbound paths and inbound consumers started on it.
//!
//! The bus stays synchronous. The bridge runs a current-thread tokio runtime on
//! its own thread (`ringbus-nats`); the bridge's methods, called on the user's
//! threads, hand it work and wait for the answer ([`Core::block_on`]), and bus
//! handlers hand it events through channels. Nothing of the bridge runs on the
//! runtime thread but async code: a blocking call there would stall every
//! publish and every ack.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::ConnectOptions;

use super::config::Storage;
use super::error::nats;
use super::metrics::{ConnectionCounters, PartReport};
use super::{BridgeError, BridgeMetrics, BridgeReport, StreamSpec, WireEncoding};
use super::{InboundMetrics, OutboundMetrics};

/// A NATS server's version (`2.9.10`), as it reports it at connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// `2` in `2.9.10`.
    pub major: u32,
    /// `9` in `2.9.10`.
    pub minor: u32,
    /// `10` in `2.9.10`.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `"2.9.10"` (a `-beta` or `+build` tail is ignored); `None` if it
    /// is not three numbers.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|n| n.parse::<u32>().ok());
        let v = ServerVersion {
            major: it.next()??,
            minor: it.next()??,
            patch: it.next()??,
        };
        it.next().is_none().then_some(v)
    }

    /// Whether this is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// An outbound path or inbound consumer started on the bridge, as the bridge
/// sees it: for metrics and for the shutdown.
pub(crate) trait Part: Send + Sync {
    /// Its counters.
    fn metrics(&self) -> PartMetrics;
    /// Stops it (idempotent): inbound consumers stop pulling and finish or NAK
    /// what is in flight, outbound paths wait for their publish acks, each
    /// within its own options' time. Called on a user's thread, never on the
    /// runtime's. A second call returns an empty report.
    fn shutdown(&self) -> PartReport;
}

/// One part's counters.
pub(crate) enum PartMetrics {
    Outbound(OutboundMetrics),
    Inbound(InboundMetrics),
}

/// What the bridge's parts share: the connection and the runtime.
pub(crate) struct Core {
    /// Spawns onto the bridge's runtime.
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// The subject prefix (`"rb"`).
    pub(crate) prefix: String,
    /// The event stream (the dead-letter stream is `<name>_DLQ`).
    pub(crate) stream: StreamSpec,
    pub(crate) encoding: WireEncoding,
    pub(crate) server_version: ServerVersion,
    pub(crate) connection: Arc<ConnectionCounters>,
    parts: Mutex<Vec<Arc<dyn Part>>>,
    closed: AtomicBool,
    runtime: Mutex<Option<RuntimeThread>>,
    runtime_thread: ThreadId,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBridge")
            .field("prefix", &self.prefix)
            .field("stream", &self.stream.name)
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

struct RuntimeThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl RuntimeThread {
    /// A current-thread runtime driven on a thread of its own.
    fn start() -> Result<(Self, tokio::runtime::Handle), BridgeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BridgeError::Connect(format!("cannot start the runtime: {e}")))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("ringbus-nats".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Tasks still running (none after a clean shutdown) are dropped.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| BridgeError::Connect(format!("cannot start the runtime thread: {e}")))?;
        Ok((RuntimeThread { stop, thread }, handle))
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Runs `f` on the runtime behind `rt` and waits for it on this thread.
fn block_on_handle<F>(rt: &tokio::runtime::Handle, f: F) -> Result<F::Output, BridgeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().map_err(|_| BridgeError::Closed)
}

impl Core {
    /// Runs `f` on the bridge's runtime and waits for its output on this
    /// thread. `Err(Closed)` if the runtime stopped first.
    ///
    /// # Panics
    /// On the runtime's own thread (it would wait for itself).
    pub(crate) fn block_on<F>(&self, f: F) -> Result<F::Output, BridgeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        assert!(
            thread::current().id() != self.runtime_thread,
            "ringbus: a blocking NatsBridge call on the bridge's own runtime thread"
        );
        block_on_handle(&self.rt, f)
    }

    /// The subject events of `event_type` are published on: `<prefix>.ev.<type>`.
    pub(crate) fn event_subject(&self, event_type: &str) -> String {
        format!("{}.ev.{event_type}", self.prefix)
    }

    /// The subject a consumer pattern filters on: `<prefix>.ev.<pattern>`.
    pub(crate) fn filter_subject(&self, pattern: &str) -> String {
        self.event_subject(pattern)
    }

    /// The event type in an event subject, if it is one.
    pub(crate) fn event_type_of<'s>(&self, subject: &'s str) -> Option<&'s str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".ev.")
            .filter(|t| !t.is_empty())
    }

    /// The subject a dead letter of consumer `durable` is published on:
    /// `<prefix>.dlq.<durable>.<event_type>`.
    pub(crate) fn dlq_subject(&self, durable: &str, event_type: &str) -> String {
        format!("{}.dlq.{durable}.{event_type}", self.prefix)
    }

    /// The dead-letter stream's name.
    pub(crate) fn dlq_stream(&self) -> String {
        self.stream.dead_letter_stream()
    }

    /// Whether [`NatsBridge::shutdown`] has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Adds a part, for metrics and the shutdown; `Err(Closed)` after the
    /// shutdown began (the part is then shut down by the caller).
    pub(crate) fn register(&self, part: Arc<dyn Part>) -> Result<(), BridgeError> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closed() {
            return Err(BridgeError::Closed);
        }
        parts.push(part);
        Ok(())
    }
}

/// A bridge between local buses and NATS JetStream: see the [module docs](super).
///
/// Built with [`NatsBridge::builder`]. Cheap to share: the methods take `&self`.
#[derive(Debug)]
pub struct NatsBridge {
    pub(crate) core: Arc<Core>,
}

impl NatsBridge {
    /// A builder for a bridge to the server at `url` (`"nats://127.0.0.1:4222"`,
    /// or several, comma-separated).
    pub fn builder(url: impl Into<String>) -> NatsBridgeBuilder {
        NatsBridgeBuilder {
            url: url.into(),
            options: None,
            prefix: "rb".into(),
            stream: StreamSpec::default(),
            encoding: WireEncoding::Frame,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The server's version, as reported at connect.
    pub fn server_version(&self) -> ServerVersion {
        self.core.server_version
    }

    /// The event stream's settings.
    pub fn stream(&self) -> &StreamSpec {
        &self.core.stream
    }

    /// The subject prefix.
    pub fn subject_prefix(&self) -> &str {
        &self.core.prefix
    }

    /// The counters of the connection and of every outbound path and inbound
    /// consumer started on this bridge.
    pub fn metrics(&self) -> BridgeMetrics {
        let parts: Vec<_> = self
            .core
            .parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut metrics = BridgeMetrics {
            server_version: self.core.server_version,
            connection: self.core.connection.snapshot(),
            outbound: Vec::new(),
            inbound: Vec::new(),
        };
        metrics.connection.connected =
            self.core.client.connection_state() == async_nats::connection::State::Connected;
        for p in parts {
            match p.metrics() {
                PartMetrics::Outbound(m) => metrics.outbound.push(m),
                PartMetrics::Inbound(m) => metrics.inbound.push(m),
            }
        }
        metrics
    }

    /// Stops the bridge: inbound consumers stop pulling and let deliveries in
    /// flight finish within their `drain_timeout`, acking or NAK'ing each;
    /// outbound paths wait for their outstanding publish acks; then the
    /// connection is flushed and closed. The report lists what was not
    /// acknowledged.
    pub fn shutdown(self) -> BridgeReport {
        self.core.shutdown()
    }
}

impl Core {
    fn shutdown(&self) -> BridgeReport {
        let parts: Vec<Arc<dyn Part>> = {
            let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.swap(true, Ordering::AcqRel) {
                return BridgeReport::default();
            }
            parts.clone()
        };
        // Inbound first (their acks and dead letters need the connection and,
        // for dead letters, publishing), then outbound.
        let mut report = BridgeReport::default();
        let (inbound, outbound): (Vec<_>, Vec<_>) = parts
            .iter()
            .partition(|p| matches!(p.metrics(), PartMetrics::Inbound(_)));
        for p in inbound.into_iter().chain(outbound) {
            report.parts.push(p.shutdown());
        }
        let client = self.client.clone();
        let _ = self.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        });
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.stop();
        }
        report
    }
}

impl Drop for NatsBridge {
    fn drop(&mut self) {
        // Parts hold the core too; the runtime stops when the bridge goes.
        let _ = self.core.shutdown();
    }
}

/// Settings of a [`NatsBridge`] before it connects.
pub struct NatsBridgeBuilder {
    url: String,
    options: Option<ConnectOptions>,
    prefix: String,
    stream: StreamSpec,
    encoding: WireEncoding,
    request_timeout: Duration,
}

impl fmt::Debug for NatsBridgeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBridgeBuilder")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl NatsBridgeBuilder {
    /// The client's connect options: credentials, TLS, a connection name. The
    /// bridge installs its own event callback (for the connection counters),
    /// replacing one set here.
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The first token of every subject the bridge uses (`"rb"`): events go to
    /// `<prefix>.ev.<event_type>`, dead letters to `<prefix>.dlq.<durable>.<event_type>`.
    pub fn subject_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The event stream, created if missing (and its dead-letter stream
    /// `<name>_DLQ`); a stream present with other settings is an error.
    pub fn stream(mut self, stream: StreamSpec) -> Self {
        self.stream = stream;
        self
    }

    /// How outbound events are encoded ([`WireEncoding::Frame`]). Inbound
    /// messages are decoded by their `Content-Type`, whatever this says.
    pub fn encoding(mut self, encoding: WireEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// How long a JetStream API request (stream and consumer lookups, creation)
    /// may take (5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Connects, checks that the server has JetStream, and creates (or checks)
    /// the event stream and its dead-letter stream.
    ///
    /// # Errors
    /// [`BridgeError::Config`] for a prefix that is not NATS subject tokens or
    /// a stream name that is not valid; [`BridgeError::Connect`];
    /// [`BridgeError::NoJetStream`]; [`BridgeError::Mismatch`] for a stream
    /// present with other settings; [`BridgeError::Nats`].
    pub fn build(self) -> Result<NatsBridge, BridgeError> {
        check_tokens("subject prefix", &self.prefix)?;
        check_stream_name(&self.stream.name)?;
        if self.stream.replicas == 0 {
            return Err(BridgeError::Config(
                "a stream needs at least one replica".into(),
            ));
        }
        let (runtime, rt) = RuntimeThread::start()?;
        let runtime_thread = runtime.thread.thread().id();
        let connection = Arc::new(ConnectionCounters::default());
        let connects = Arc::new(AtomicU64::new(0));
        let counters = connection.clone();
        let options = self
            .options
            .unwrap_or_default()
            .event_callback(move |event| {
                let counters = counters.clone();
                let connects = connects.clone();
                async move {
                    use async_nats::Event;
                    match event {
                        // The first connect is not a reconnect.
                        Event::Connected if connects.fetch_add(1, Ordering::Relaxed) > 0 => {
                            counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Disconnected => {
                            counters.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::SlowConsumer(_) | Event::ServerError(_) | Event::ClientError(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
        let url = self.url.clone();
        let timeout = self.request_timeout;
        let stream = self.stream.clone();
        let prefix = self.prefix.clone();
        let setup = async move {
            let client = options
                .connect(url.as_str())
                .await
                .map_err(|e| BridgeError::Connect(e.to_string()))?;
            let info = client.server_info();
            let version = ServerVersion::parse(&info.version).ok_or_else(|| {
                BridgeError::Connect(format!("unknown server version {:?}", info.version))
            })?;
            let mut js = jetstream::new(client.clone());
            js.set_timeout(timeout);
            check_jetstream(&client).await?;
            ensure_stream(
                &js,
                stream_config(&stream, &stream.name, format!("{prefix}.ev.>")),
            )
            .await?;
            ensure_stream(
                &js,
                stream_config(
                    &stream,
                    &stream.dead_letter_stream(),
                    format!("{prefix}.dlq.>"),
                ),
            )
            .await?;
            Ok::<_, BridgeError>((client, js, version))
        };
        let result = block_on_handle(&rt, setup).and_then(|r| r);
        let (client, js, server_version) = match result {
            Ok(ok) => ok,
            Err(e) => {
                runtime.stop();
                return Err(e);
            }
        };
        Ok(NatsBridge {
            core: Arc::new(Core {
                rt,
                client,
                js,
                prefix: self.prefix,
                stream: self.stream,
                encoding: self.encoding,
                server_version,
                connection,
                parts: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                runtime: Mutex::new(Some(runtime)),
                runtime_thread,
            }),
        })
    }
}

/// Asks the JetStream API for the account's info: no responder, or an error
/// answer, means no JetStream. (Raw, because async-nats 0.51's typed
/// `query_account` cannot parse a 2.9 server's answer.)
async fn check_jetstream(client: &async_nats::Client) -> Result<(), BridgeError> {
    let reply = client
        .request("$JS.API.INFO", bytes::Bytes::new())
        .await
        .map_err(|e| BridgeError::NoJetStream(e.to_string()))?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| BridgeError::NoJetStream(format!("unreadable account info: {e}")))?;
    match info.get("error") {
        Some(error) => Err(BridgeError::NoJetStream(error.to_string())),
        None => Ok(()),
    }
}

/// `Err` unless `text` is dot-separated NATS subject tokens without wildcards.
pub(crate) fn check_tokens(what: &str, text: &str) -> Result<(), BridgeError> {
    let bad = text.is_empty()
        || text
            .split('.')
            .any(|t| t.is_empty() || t == "*" || t == ">" || t.chars().any(|c| c.is_whitespace()));
    if bad {
        return Err(BridgeError::Config(format!(
            "{what} {text:?} is not dot-separated NATS subject tokens"
        )));
    }
    Ok(())
}

fn check_stream_name(name: &str) -> Result<(), BridgeError> {
    let bad = name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if bad {
        return Err(BridgeError::Config(format!(
            "stream name {name:?} is not valid"
        )));
    }
    Ok(())
}

fn stream_config(spec: &StreamSpec, name: &str, subject: String) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subject],
        storage: match spec.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: spec.replicas,
        duplicate_window: spec.duplicate_window,
        max_age: spec.max_age.unwrap_or_default(),
        max_bytes: spec
            .max_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        ..Default::default()
    }
}

/// Creates the stream, or checks that the one present has these settings.
async fn ensure_stream(js: &jetstream::Context, want: stream::Config) -> Result<(), BridgeError> {
    let mut s = js.get_or_create_stream(want.clone()).await.map_err(nats)?;
    let have = s.info().await.map_err(nats)?.config.clone();
    let what = format!("stream {}", want.name);
    let mismatch = |field: &'static str, want: String, have: String| BridgeError::Mismatch {
        what: what.clone(),
        field,
        want,
        have,
    };
    if have.subjects != want.subjects {
        return Err(mismatch(
            "subjects",
            format!("{:?}", want.subjects),
            format!("{:?}", have.subjects),
        ));
    }
    if have.storage != want.storage {
        return Err(mismatch(
            "storage",
            format!("{:?}", want.storage),
            format!("{:?}", have.storage),
        ));
    }
    if have.num_replicas.max(1) != want.num_replicas {
        return Err(mismatch(
            "replicas",
            want.num_replicas.to_string(),
            have.num_replicas.to_string(),
        ));
    }
    if have.duplicate_window != want.duplicate_window {
        return Err(mismatch(
            "duplicate_window",
            format!("{:?}", want.duplicate_window),
            format!("{:?}", have.duplicate_window),
        ));
    }
    if have.max_age != want.max_age {
        return Err(mismatch(
            "max_age",
            format!("{:?}", want.max_age),
            format!("{:?}", have.max_age),
        ));
    }
    if have.max_bytes.max(-1) != want.max_bytes {
        return Err(mismatch(
            "max_bytes",
            want.max_bytes.to_string(),
            have.max_bytes.to_string(),
        ));
    }
    Ok(())
}
