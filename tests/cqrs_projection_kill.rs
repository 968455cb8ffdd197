//! A projection killed mid-catch-up (`SIGKILL` of a child process) resumes
//! from its checkpoint and ends identical to a rebuild (issue 12, B5).
//!
//! The parent fills a `FileStore` with events, then starts this test binary
//! again as a child ([`CHILD_DIR`] set) several times, killing each after a
//! random 30–300 ms. The child runs a projection whose read model is a file
//! written together with its position (write a temporary file, sync, rename:
//! the model and its checkpoint can never disagree) every 500 events; it
//! prints the position it resumed from. After the kills the parent runs the
//! projection to the end in-process from the file, and compares the model
//! with a fresh projection of the whole store: every event applied exactly
//! once, however often the catch-up was cut. The kill delays come from a
//! xorshift seeded from the clock; the seed is printed, and
//! `RINGBUS_KILL_SEED=<n>` replays it.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringbus::cqrs::{project, Projection};
use ringbus::store::checkpoint::CheckpointStore;
use ringbus::store::{
    Durability, EventStore, ExpectedVersion, FileStore, Position, Recorded, StoreOptions, StreamId,
};
use ringbus::{event_type, source, BusBuilder, Event, HandlerError};
use serde::{Deserialize, Serialize};

const CHILD_DIR: &str = "RINGBUS_PROJECTION_KILL_DIR";
const TEST: &str = "a_projection_killed_mid_catch_up_resumes_from_its_checkpoint";
const EVENTS: u64 = 200_000;
const PER_APPEND: u64 = 100;
const SAVE_EVERY: u64 = 500;
const KILLS: usize = 6;

/// Per stream: count and sum of payloads, and a checksum of the positions in
/// order (a repeated or skipped event changes it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Model {
    per_stream: BTreeMap<String, (u64, u64)>,
    applied: u64,
    order_hash: u64,
}

impl Model {
    fn apply(&mut self, r: &Recorded<u64>) {
        let e = self
            .per_stream
            .entry(r.event.subject.as_ref().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += r.event.data;
        self.applied += 1;
        self.order_hash = (self.order_hash ^ r.position.0).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    model: Model,
    position: Position,
}

/// The model, saved to `file` with its position every [`SAVE_EVERY`] events.
struct Persisted {
    model: Model,
    file: PathBuf,
    since_save: u64,
}

fn load(file: &Path) -> Option<Saved> {
    let bytes = std::fs::read(file).ok()?;
    Some(serde_json::from_slice(&bytes).expect("the saved model decodes"))
}

fn save(file: &Path, model: &Model, position: Position) -> io::Result<()> {
    let temp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&temp)?;
    f.write_all(&serde_json::to_vec(&Saved {
        model: model.clone(),
        position,
    })?)?;
    f.sync_data()?;
    std::fs::rename(&temp, file)?;
    std::fs::File::open(file.parent().unwrap())?.sync_all()
}

impl Projection<u64> for Persisted {
    fn name(&self) -> &str {
        "kill-view"
    }
    fn apply(&mut self, r: &Recorded<u64>) -> Result<(), HandlerError> {
        self.model.apply(r);
        self.since_save += 1;
        if self.since_save == SAVE_EVERY || r.position.0 + 1 == EVENTS {
            self.since_save = 0;
            save(&self.file, &self.model, r.position)
                .map_err(|e| HandlerError::transient(e.to_string()))?;
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.model = Model::default();
    }
}

/// The checkpoint is the position saved with the model; saving is the
/// model's job.
struct SavedWithModel(PathBuf);

impl CheckpointStore for SavedWithModel {
    fn load(&self, _: &str) -> io::Result<Option<Position>> {
        Ok(load(&self.0).map(|s| s.position))
    }
    fn save(&self, _: &str, _: Position) -> io::Result<()> {
        Ok(())
    }
    fn clear(&self, _: &str) -> io::Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Runs the persisted projection over the store in `dir` until it has
/// applied everything; prints where it resumed from.
fn run(dir: &Path) -> Model {
    let store = Arc::new(
        FileStore::<u64>::open(
            dir.join("store"),
            StoreOptions::default().durability(Durability::None),
        )
        .unwrap(),
    );
    let bus = BusBuilder::<u64>::new().build().unwrap();
    let file = dir.join("model.json");
    let saved = load(&file);
    println!(
        "resumed {}",
        saved.as_ref().map_or(-1, |s| s.position.0 as i64)
    );
    io::stdout().flush().unwrap();
    let view = project(
        store.clone(),
        &bus,
        Persisted {
            model: saved.map(|s| s.model).unwrap_or_default(),
            file: file.clone(),
            since_save: 0,
        },
    )
    .checkpoints(SavedWithModel(file))
    .start()
    .unwrap();
    assert!(view.wait_for(Position(EVENTS - 1), Duration::from_secs(120)));
    let model = view.read(|p| p.model.clone());
    view.stop();
    model
}

#[test]
fn a_projection_killed_mid_catch_up_resumes_from_its_checkpoint() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        run(Path::new(&dir));
        return;
    }
    let dir = std::env::temp_dir().join(format!("ringbus-projection-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    {
        let store = FileStore::<u64>::open(
            dir.join("store"),
            StoreOptions::default().durability(Durability::None),
        )
        .unwrap();
        for a in 0..EVENTS / PER_APPEND {
            let s = StreamId::new(format!("s-{}", a % 50)).unwrap();
            let events = (0..PER_APPEND)
                .map(|i| {
                    Event::new(
                        event_type!("kill.counted"),
                        source!("kill"),
                        a * PER_APPEND + i,
                    )
                })
                .collect();
            store.append(&s, ExpectedVersion::Any, events).unwrap();
        }
        store.close().unwrap();
    }
    let seed = std::env::var("RINGBUS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("RINGBUS_KILL_SEED={seed}");
    let mut x = seed;
    let mut resumed = Vec::new();
    for _ in 0..KILLS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(30 + x % 270);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill only once the child has opened the store and started.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // (libtest may print the test's name on the same line first.)
        while out.read_line(&mut line).unwrap() > 0 && !line.contains("resumed ") {
            line.clear();
        }
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL (it may have finished: fine)
        let _ = child.wait();
        if let Some((_, p)) = line.trim_end().split_once("resumed ") {
            resumed.push(p.parse::<i64>().unwrap());
        }
    }
    println!("resumed from: {resumed:?}");
    // Checkpoints only move forward across kills, and some kill cut a
    // catch-up in the middle that a later run resumed.
    assert_eq!(resumed.len(), KILLS, "every child started");
    assert!(resumed.windows(2).all(|w| w[0] <= w[1]), "{resumed:?}");
    let last = EVENTS as i64 - 1;
    assert!(
        resumed.iter().any(|&p| p > -1 && p < last),
        "no run resumed from the middle: {resumed:?}"
    );
    let resumed_model = run(&dir);
    // A fresh projection of the whole store, in memory.
    let store = Arc::new(
        FileStore::<u64>::open(
            dir.join("store"),
            StoreOptions::default().durability(Durability::None),
        )
        .unwrap(),
    );
    let mut fresh = Model::default();
    let mut from = Position(0);
    loop {
        let page = store.read_all(from, 4096).unwrap();
        let Some(last) = page.last().map(|r| r.position) else {
            break;
        };
        page.iter().for_each(|r| fresh.apply(r));
        from = last.next();
    }
    drop(store);
    assert_eq!(fresh.applied, EVENTS);
    assert_eq!(resumed_model, fresh, "killed and resumed vs applied once");
    let _ = std::fs::remove_dir_all(&dir);
}
