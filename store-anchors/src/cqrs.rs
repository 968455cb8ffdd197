//! C2 (issue 12, B6): the CQRS repository on the file store, in the same run
//! as S1 — `Repository::execute` from 64 threads, each on an aggregate of its
//! own, one event of about 200 bytes per command, `Durability::Immediate`. The
//! target is ≥ 0.8× S1's plain appends (CQRS overhead ≤ 20 %).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ringbus::cqrs::{Aggregate, Repository};
use ringbus::store::{Durability, FileStore, StoreOptions};
use ringbus::{event_type, source, DomainEvent, EventType, Source};
use serde::{Deserialize, Serialize};

use crate::support::{err, Res, TempDir};

/// The one event: a note of about 130 characters (about 200 bytes encoded
/// with its envelope, like the S1 events).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Noted {
    text: String,
}

impl DomainEvent for Noted {
    fn event_type(&self) -> EventType {
        event_type!("note.added")
    }
    fn source(&self) -> Source {
        source!("store-anchors")
    }
}

#[derive(Debug)]
pub struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// Counts its notes.
#[derive(Default)]
struct Notebook {
    notes: u64,
}

impl Aggregate for Notebook {
    const TYPE: &'static str = "notebook";
    type Command = String;
    type Event = Noted;
    type Error = Never;
    fn handle(&self, text: String) -> Result<Vec<Noted>, Never> {
        Ok(vec![Noted { text }])
    }
    fn apply(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

/// Commands per second: `threads` threads, each executing commands on its own
/// aggregate through one shared repository (cached), until `window` passes.
pub fn repository_executes(base: &std::path::Path, threads: usize, window: Duration) -> Res<f64> {
    let dir = TempDir::new(base, "cqrs")?;
    let store = Arc::new(
        FileStore::<Noted>::open(
            dir.path(),
            StoreOptions::new().durability(Durability::Immediate),
        )
        .map_err(err("FileStore::open"))?,
    );
    let repo = Repository::<Notebook, _>::new(store.clone()).cache(threads * 2);
    let text = "x".repeat(130);
    let barrier = Barrier::new(threads + 1);
    let total = AtomicU64::new(0);
    let (start, end) = std::thread::scope(|s| -> Res<(Instant, Instant)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, total, repo, text) = (&barrier, &total, &repo, &text);
                s.spawn(move || -> Res<()> {
                    let id = t.to_string();
                    barrier.wait();
                    let deadline = Instant::now() + window;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        repo.execute(&id, text.clone()).map_err(err("execute"))?;
                        n += 1;
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().map_err(|_| "an executor panicked".to_owned())??;
        }
        Ok((start, Instant::now()))
    })?;
    drop(repo);
    Arc::try_unwrap(store)
        .map_err(|_| "the store is still shared".to_owned())?
        .close()
        .map_err(err("FileStore::close"))?;
    Ok(total.load(Ordering::Relaxed) as f64 / (end - start).as_secs_f64())
}
