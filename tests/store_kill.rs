//! `FileStore` under a real process kill (issue 11, A7 crash-safety layer 4).
//!
//! The test starts its own binary again as a child (this same test, with
//! [`CHILD_DIR`] set). The child opens a store in that directory and appends
//! from 4 threads, one event per append, each thread to its own stream, with
//! the payload `thread * 1_000_000 + i`; after every acknowledged append it
//! prints `ack <position> <event id> <payload>`. The parent `SIGKILL`s it after
//! a random 20–500 ms, reopens the store and checks:
//!
//! * every printed append is there, at its position, with its id and payload;
//! * positions are dense, `0 ..= head`;
//! * each stream holds exactly its first `k` payloads, in order, versions
//!   `1 ..= k` — nothing partial, nothing reordered, no hole;
//! * the reopened store accepts an append at the next position.
//!
//! This runs for each [`Durability`] mode. A kill cannot lose data that
//! reached the page cache, so this layer proves **process-crash** safety and
//! recovery in all three modes; it says nothing about power loss, where only
//! `Immediate` promises to keep acknowledged appends (the fault-injecting file
//! system of layer 2 is what checks where `fdatasync` is placed).
//!
//! The kill delays come from a xorshift generator seeded from the clock; the
//! seed is printed, and `RINGBUS_KILL_SEED=<n>` replays it.
#![cfg(unix)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, Position, StoreOptions, StreamId,
};
use ringbus::{event_type, source, Event, EventId};

/// Set in the child: the store's directory.
const CHILD_DIR: &str = "RINGBUS_KILL_CHILD_DIR";
/// Set in the child: the durability mode, as [`mode_name`] spells it.
const CHILD_MODE: &str = "RINGBUS_KILL_CHILD_MODE";
/// The name of the test, which the child runs.
const TEST: &str = "acknowledged_appends_survive_sigkill";
/// Appending threads in the child, one stream each.
const THREADS: u64 = 4;
/// Kills per durability mode.
const RUNS: usize = 20;
/// The payload of a thread's `i`-th event is `thread * STRIDE + i`.
const STRIDE: u64 = 1_000_000;

const MODES: [Durability; 3] = [
    Durability::Immediate,
    Durability::Periodic(Duration::from_millis(50)),
    Durability::None,
];

fn mode_name(mode: Durability) -> &'static str {
    match mode {
        Durability::Immediate => "immediate",
        Durability::Periodic(_) => "periodic",
        Durability::None => "none",
    }
}

fn mode_named(name: &str) -> Durability {
    MODES
        .into_iter()
        .find(|m| mode_name(*m) == name)
        .unwrap_or_else(|| panic!("unknown durability mode {name:?}"))
}

fn stream(thread: u64) -> StreamId {
    StreamId::new(format!("writer-{thread}")).unwrap()
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringbus-store-kill-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Marsaglia's xorshift64: enough to spread the kill moments.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The child half: appends from [`THREADS`] threads until it is killed.
fn child(dir: &Path, mode: Durability) -> ! {
    let store =
        Arc::new(FileStore::<u64>::open(dir, StoreOptions::default().durability(mode)).unwrap());
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let id = stream(t);
                for i in 0.. {
                    let payload = t * STRIDE + i;
                    let event = Event::new(event_type!("kill.appended"), source!("kill"), payload);
                    let event_id = event.id;
                    let done = store
                        .append(&id, ExpectedVersion::Any, vec![event])
                        .unwrap();
                    let id_bits = u128::from_be_bytes(event_id.to_bytes());
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ack {} {id_bits:032x} {payload}",
                        done.first_position.0
                    )
                    .unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    unreachable!("the writers never stop");
}

/// One acknowledged append, as the child printed it.
#[derive(Debug)]
struct Ack {
    position: u64,
    id: EventId,
    payload: u64,
}

/// The complete `ack` lines of the child's output (a line cut by the kill
/// has no newline and is left out).
fn acks(out: &[u8]) -> Vec<Ack> {
    let text = String::from_utf8_lossy(out);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|line| line.strip_prefix("ack "))
        .map(|rest| {
            let f: Vec<&str> = rest.split(' ').collect();
            assert_eq!(f.len(), 3, "bad ack line {rest:?}");
            Ack {
                position: f[0].parse().unwrap(),
                id: EventId::from_bytes(u128::from_str_radix(f[1], 16).unwrap().to_be_bytes()),
                payload: f[2].parse().unwrap(),
            }
        })
        .collect()
}

/// What one kill left: acknowledged appends, events found on reopen (a few
/// more than acknowledged: written, not yet printed), and the torn tail open
/// cut off, if any.
struct Outcome {
    acked: usize,
    stored: usize,
    torn_tail: Option<u64>,
}

/// Runs one child in a fresh directory, kills it after `delay`, checks the
/// reopened store against what it acknowledged.
fn kill_and_check(mode: Durability, delay: Duration, label: &str) -> Outcome {
    let dir = TempDir::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &dir.0)
        .env(CHILD_MODE, mode_name(mode))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while the child runs, so it never blocks on a full one.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).unwrap();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = String::new();
        stderr.read_to_string(&mut buf).unwrap();
        buf
    });
    std::thread::sleep(delay);
    let early_exit = child.try_wait().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(
        early_exit.is_none(),
        "{label}: the child exited by itself ({early_exit:?}) before the kill:\n{err}"
    );
    let acks = acks(&out);

    let store = FileStore::<u64>::open(&dir.0, StoreOptions::default().durability(mode))
        .unwrap_or_else(|e| panic!("{label}: reopen after kill failed: {e}"));
    let all = store.read_all(Position(0), usize::MAX).unwrap();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            r.position,
            Position(i as u64),
            "{label}: positions not dense"
        );
    }
    assert_eq!(
        store.head(),
        all.last().map(|r| r.position),
        "{label}: head is not the last event read"
    );

    // Each stream: exactly its first k payloads, in order, versions 1..=k.
    let mut next: HashMap<u64, u64> = HashMap::new();
    for r in &all {
        let t = r.event.data / STRIDE;
        assert!(
            t < THREADS,
            "{label}: foreign payload {} at {:?}",
            r.event.data,
            r.position
        );
        let i = next.entry(t).or_insert(0);
        assert_eq!(
            r.event.data,
            t * STRIDE + *i,
            "{label}: stream {t} out of order or with a hole at {:?}",
            r.position
        );
        assert_eq!(
            r.version,
            *i + 1,
            "{label}: wrong version at {:?}",
            r.position
        );
        let subject = r.event.subject.as_ref().map(|s| s.as_str().to_owned());
        assert_eq!(
            subject.as_deref(),
            Some(stream(t).as_str()),
            "{label}: wrong stream"
        );
        *i += 1;
    }

    for ack in &acks {
        let r = all.get(ack.position as usize).unwrap_or_else(|| {
            panic!(
                "{label}: acknowledged position {} lost (head {:?})",
                ack.position,
                store.head()
            )
        });
        assert_eq!(r.event.id, ack.id, "{label}: id at {}", ack.position);
        assert_eq!(
            r.event.data, ack.payload,
            "{label}: payload at {}",
            ack.position
        );
    }

    // The recovered store takes new appends, at the next position.
    let extra = Event::new(event_type!("kill.appended"), source!("kill"), u64::MAX);
    let extra_id = extra.id;
    let done = store
        .append(
            &StreamId::new("after-kill").unwrap(),
            ExpectedVersion::NoStream,
            vec![extra],
        )
        .unwrap();
    assert_eq!(done.first_position, Position(all.len() as u64), "{label}");
    let back = store.read_all(done.first_position, 1).unwrap();
    assert_eq!(back.len(), 1, "{label}");
    assert_eq!(
        (back[0].event.id, back[0].event.data),
        (extra_id, u64::MAX),
        "{label}"
    );
    let torn_tail = store.torn_tail();
    store.close().unwrap();
    Outcome {
        acked: acks.len(),
        stored: all.len(),
        torn_tail,
    }
}

/// Kills a child that appends from 4 threads, [`RUNS`] times for each
/// durability mode, and checks every acknowledged append survives intact.
#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let mode = mode_named(&std::env::var(CHILD_MODE).unwrap());
        child(Path::new(&dir), mode);
    }
    let seed = match std::env::var("RINGBUS_KILL_SEED") {
        Ok(s) => s.parse().unwrap(),
        Err(_) => {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    };
    println!("store_kill: seed {seed} (replay with RINGBUS_KILL_SEED={seed})");
    let mut rng = XorShift(seed);
    for mode in MODES {
        let mut acked = 0;
        for run in 0..RUNS {
            let delay = Duration::from_millis(20 + rng.next() % 481);
            let label = format!(
                "{} run {run} (kill after {delay:?}, seed {seed})",
                mode_name(mode)
            );
            let o = kill_and_check(mode, delay, &label);
            println!(
                "store_kill: {label}: {} acknowledged appends intact, {} stored, torn tail {:?}",
                o.acked, o.stored, o.torn_tail
            );
            acked += o.acked;
        }
        // Not vacuous: across the runs, the child got to acknowledge appends.
        assert!(
            acked > 0,
            "{}: no run acknowledged any append",
            mode_name(mode)
        );
    }
}
