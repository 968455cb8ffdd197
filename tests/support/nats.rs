//! A real `nats-server` with JetStream, owned by one test: started on a free loopback
//! port with its store in a temp dir, killed (`SIGKILL`) and restarted on the same port
//! and store, its log kept and printed when the test fails.
//!
//! Each NATS test file includes it by path (the file is shared with
//! `benches/support/nats.rs`, so it is not a `tests/<name>/mod.rs` directory module):
//!
//! ```ignore
//! #[path = "support/nats.rs"]
//! mod nats_support;
//! use nats_support::{block_on, NatsServer};
//!
//! let Some(server) = NatsServer::start_or_skip() else { return };
//! block_on(async { async_nats::connect(server.url()).await.unwrap() });
//! ```
//!
//! The binary: `NATS_SERVER_BIN` if set, else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server` (Debian's package; `/usr/sbin` is not on every user's
//! `PATH`). Without one, [`NatsServer::start_or_skip`] skips the test with a loud
//! message, or panics when `CI=true`.

#![allow(dead_code)]

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a start or restart may take before [`StartError::NotReady`] (measured
/// ready in 5–40 ms; generous for a loaded machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a restart keeps retrying while the old port is still held by the kernel.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server binary is looked up, in order, when `NATS_SERVER_BIN` is unset.
const FALLBACK_BIN: &str = "/usr/sbin/nats-server";

/// The log line that carries the port the server picked for `-p -1`.
const LISTENING: &str = "Listening for client connections on 127.0.0.1:";

/// The log line after which clients may connect.
const READY: &str = "Server is ready";

/// Why a server did not start.
#[derive(Debug)]
pub enum StartError {
    /// No binary: `NATS_SERVER_BIN` unset and none on `PATH` or at `/usr/sbin`.
    NoBinary,
    /// `NATS_SERVER_BIN` names a file that does not exist.
    BadBinEnv(PathBuf),
    /// The temp dir or the config file could not be written.
    Io(std::io::Error),
    /// The process could not be spawned.
    Spawn(PathBuf, std::io::Error),
    /// The process exited before it was ready; its log so far.
    Exited { status: ExitStatus, log: String },
    /// Not ready within [`READY_TIMEOUT`] (the process is killed); its log so far.
    NotReady { waited: Duration, log: String },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoBinary => write!(
                f,
                "no nats-server binary: NATS_SERVER_BIN is unset, none on PATH, none at {FALLBACK_BIN}"
            ),
            StartError::BadBinEnv(p) => {
                write!(f, "NATS_SERVER_BIN={} does not exist", p.display())
            }
            StartError::Io(e) => write!(f, "preparing the server's directory: {e}"),
            StartError::Spawn(p, e) => write!(f, "spawning {}: {e}", p.display()),
            StartError::Exited { status, log } => {
                write!(f, "nats-server exited before it was ready ({status}); log:\n{log}")
            }
            StartError::NotReady { waited, log } => {
                write!(f, "nats-server not ready after {waited:?}; log:\n{log}")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// The server binary to run: `NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
/// `/usr/sbin/nats-server`.
pub fn server_bin() -> Result<PathBuf, StartError> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(StartError::BadBinEnv(p))
        };
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from(FALLBACK_BIN)).filter(|p| p.is_file()))
        .ok_or(StartError::NoBinary)
}

/// The text a server wrote to stderr, across its restarts, and whether the current
/// process's stream has ended.
#[derive(Default)]
struct LogState {
    text: String,
    /// The current process's stderr reached end of file (it exited).
    eof: bool,
}

#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    grew: Condvar,
}

/// A `nats-server -js` process owned by a test. Dropping it kills the process and
/// removes its temp dir; if the thread is panicking (a failing test), the server's log
/// is printed first.
///
/// On Linux the process is also killed when the thread that started (or last
/// restarted) it exits, so that a killed test run leaves no server behind: start,
/// restart and drop it on the test's own thread.
pub struct NatsServer {
    bin: PathBuf,
    /// The temp dir: `store/` (JetStream's `-sd`) and `nats.conf` if any.
    dir: PathBuf,
    config: Option<PathBuf>,
    port: u16,
    version: String,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    log: Arc<Log>,
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("bin", &self.bin)
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("version", &self.version)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p -1 -js -sd <tempdir>` and waits until it
    /// is ready; the port is the one it logged.
    pub fn start() -> Result<NatsServer, StartError> {
        Self::launch(None)
    }

    /// Like [`start`](Self::start), with `config` written to `nats.conf` in the temp
    /// dir and passed with `-c` (the command-line flags above win over it).
    pub fn start_with_config(config: &str) -> Result<NatsServer, StartError> {
        Self::launch(Some(config))
    }

    /// [`start`](Self::start), or `None` with a loud message when there is no binary
    /// — but a panic under `CI=true`, where a missing server is a failure. Any other
    /// error panics everywhere: a binary that fails to start, or a `NATS_SERVER_BIN`
    /// that names no file (a typo must not turn into a skipped test).
    #[track_caller]
    pub fn start_or_skip() -> Option<NatsServer> {
        match Self::start() {
            Ok(s) => Some(s),
            Err(e @ StartError::NoBinary) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true and {e}: install it (apt-get install nats-server)");
                }
                eprintln!(
                    "\n!!!!!!!! SKIPPED: {e}.\n!!!!!!!! This NATS test did not run. Install \
                     nats-server (apt-get install nats-server) or set NATS_SERVER_BIN.\n"
                );
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn launch(config: Option<&str>) -> Result<NatsServer, StartError> {
        let bin = server_bin()?;
        let dir = temp_dir().map_err(StartError::Io)?;
        let mut server = NatsServer {
            bin,
            dir,
            config: None,
            port: 0,
            version: String::new(),
            child: None,
            reader: None,
            log: Arc::default(),
        };
        if let Some(text) = config {
            let path = server.dir.join("nats.conf");
            std::fs::write(&path, text).map_err(StartError::Io)?;
            server.config = Some(path);
        }
        server.spawn(None)?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The version the server logged at its last start, e.g. `"2.9.10"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// [`version`](Self::version) as (major, minor, patch); 0 for a missing part.
    pub fn version_triple(&self) -> (u32, u32, u32) {
        parse_version(&self.version)
    }

    /// JetStream's store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the server has logged so far, across restarts.
    pub fn log(&self) -> String {
        self.log.state.lock().unwrap().text.clone()
    }

    /// `SIGKILL`s the server and reaps it (no shutdown, no flush: a crash). A no-op if
    /// it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Starts the server again with `-p <the same port>` and the same store (and
    /// config); kills it first if it is still running. Retries for a few seconds while
    /// the port is still held.
    pub fn restart(&mut self) -> Result<(), StartError> {
        self.kill();
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn(Some(self.port)) {
                Err(StartError::Exited { log, .. })
                    if log.contains("address already in use") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Spawns the process on `port` (`None`: `-p -1`, any free port) and waits for it.
    fn spawn(&mut self, port: Option<u16>) -> Result<(), StartError> {
        let store = self.store_dir();
        let mut cmd = Command::new(&self.bin);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", "127.0.0.1", "-p"])
            .arg(port.map_or_else(|| "-1".to_owned(), |p| p.to_string()))
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        die_with_this_thread(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError::Spawn(self.bin.clone(), e))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let start = {
            let mut st = self.log.state.lock().unwrap();
            st.eof = false;
            if !st.text.is_empty() {
                st.text
                    .push_str("---------------- restart ----------------\n");
            }
            st.text.len()
        };
        self.reader = Some(spawn_reader(stderr, self.log.clone()));
        self.child = Some(child);
        match self.wait_ready(start) {
            Ok((port, version)) => {
                self.port = port;
                self.version = version;
                Ok(())
            }
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Waits until this run's log (from byte `start`) says ready; returns the port
    /// and version it logged.
    fn wait_ready(&mut self, start: usize) -> Result<(u16, String), StartError> {
        let began = Instant::now();
        let deadline = began + READY_TIMEOUT;
        let mut st = self.log.state.lock().unwrap();
        loop {
            let run = &st.text[start..];
            if run.contains(READY) {
                let port = run.lines().find_map(|l| {
                    let at = l.find(LISTENING)? + LISTENING.len();
                    l[at..].trim().parse::<u16>().ok()
                });
                let version = run
                    .lines()
                    .find_map(|l| Some(l.split_once("Version:")?.1.trim().to_owned()))
                    .unwrap_or_default();
                return match port {
                    Some(port) => Ok((port, version)),
                    None => Err(StartError::NotReady {
                        waited: began.elapsed(),
                        log: format!("(ready, but no {LISTENING:?} line)\n{}", st.text),
                    }),
                };
            }
            if st.eof {
                let log = st.text.clone();
                drop(st);
                let child = self.child.as_mut().expect("spawned");
                let status = child.wait().map_err(StartError::Io)?;
                return Err(StartError::Exited { status, log });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StartError::NotReady {
                    waited: began.elapsed(),
                    log: st.text.clone(),
                });
            }
            st = self.log.grew.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "\n======== nats-server log ({}, port {}, store {}) ========\n{}\
                 ======== end of nats-server log ========",
                self.bin.display(),
                self.port,
                self.store_dir().display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Has the kernel `SIGKILL` the server when the thread that spawns it exits
/// (`PR_SET_PDEATHSIG`), so a test process killed by a timeout leaves no server behind.
#[cfg(target_os = "linux")]
fn die_with_this_thread(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let set_death_signal = || {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no
        // memory of ours; it is async-signal-safe, as code between fork and exec must be.
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure runs in the forked child before exec; it calls only prctl and
    // reads errno, allocating nothing and taking no lock.
    unsafe {
        cmd.pre_exec(set_death_signal);
    }
}

/// Appends the server's stderr to `log` line by line until end of file.
fn spawn_reader(stderr: impl Read + Send + 'static, log: Arc<Log>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr);
        let mut line = String::new();
        loop {
            line.clear();
            let n = lines.read_line(&mut line).unwrap_or(0);
            let mut st = log.state.lock().unwrap();
            if n == 0 {
                st.eof = true;
                log.grew.notify_all();
                return;
            }
            st.text.push_str(&line);
            log.grew.notify_all();
        }
    })
}

/// A fresh `<tmp>/ringbus-nats-<pid>-<n>` with an empty `store/`.
fn temp_dir() -> std::io::Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ringbus-nats-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store"))?;
    Ok(dir)
}

/// `"2.9.10"` → (2, 9, 10); a missing or unparsable part is 0.
pub fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// Runs `f` to completion on a fresh current-thread tokio runtime with I/O and time
/// enabled: the async test body's driver. The runtime ends with the call: connect
/// inside `f` (a client kept for a later call has lost its connection task).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
        .block_on(f)
}

/// Awaits `f` for at most `secs` seconds, panicking with `what` on a timeout: every
/// await on the server in a test goes through this, so no test hangs.
#[track_caller]
pub fn within<F: std::future::Future>(
    secs: u64,
    what: &'static str,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(Duration::from_secs(secs), f).await {
            Ok(v) => v,
            Err(_) => panic!("{caller}: timed out after {secs} s: {what}"),
        }
    }
}
