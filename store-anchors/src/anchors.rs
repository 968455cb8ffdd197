//! The anchors: what a user would otherwise pick to keep events, each set up
//! as issue 11 (A8) names it. Each stores the same bytes ringbus's codec makes
//! of the same event ([`Maker::encoded`], made in the measured loop), keyed by
//! a global position.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::support::{err, Maker, Res, TempDir};

// ---------------------------------------------------------------- SQLite

/// SQLite (rusqlite, bundled) in WAL mode with `synchronous=FULL`, one table
/// `events(pos INTEGER PRIMARY KEY, stream, ver, data, UNIQUE(stream, ver))`.
/// One connection behind a mutex: concurrent appenders take turns (SQLite has
/// one writer at a time anyway).
pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (or creates) `dir/events.db`.
    pub fn open(dir: &Path) -> Res<Sqlite> {
        let conn = Connection::open(dir.join("events.db")).map_err(err("sqlite open"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err("sqlite journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("sqlite: journal_mode is {mode}, not wal"));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("sqlite synchronous"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events(
                 pos INTEGER PRIMARY KEY,
                 stream TEXT NOT NULL,
                 ver INTEGER NOT NULL,
                 data BLOB NOT NULL,
                 UNIQUE(stream, ver))",
        )
        .map_err(err("sqlite create table"))?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    /// Appends `events` to `stream` in one transaction: the stream's version
    /// looked up by the index, the rows inserted with the next versions, one
    /// commit (one WAL sync with `synchronous=FULL`).
    pub fn append(&self, stream: &str, events: &[Vec<u8>]) -> Res<()> {
        let mut conn = self.conn.lock().map_err(|_| "sqlite lock poisoned")?;
        let tx = conn.transaction().map_err(err("sqlite begin"))?;
        {
            let version: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(ver), 0) FROM events WHERE stream = ?1")
                .and_then(|mut s| s.query_row([stream], |r| r.get(0)))
                .map_err(err("sqlite version"))?;
            let mut insert = tx
                .prepare_cached("INSERT INTO events(stream, ver, data) VALUES (?1, ?2, ?3)")
                .map_err(err("sqlite prepare"))?;
            for (k, data) in events.iter().enumerate() {
                insert
                    .execute(params![stream, version + 1 + k as i64, data])
                    .map_err(err("sqlite insert"))?;
            }
        }
        tx.commit().map_err(err("sqlite commit"))
    }

    /// Fills per the layout in transactions of about 10 000 rows, with
    /// `synchronous=OFF` meanwhile (setup, not measured).
    pub fn fill(&self, maker: &Maker, layout: crate::support::Layout) -> Res<()> {
        let conn = self.conn.lock().map_err(|_| "sqlite lock poisoned")?;
        conn.pragma_update(None, "synchronous", "OFF")
            .map_err(err("sqlite synchronous"))?;
        conn.execute_batch("BEGIN").map_err(err("sqlite begin"))?;
        let mut rows = 0;
        let mut versions = vec![0i64; layout.streams];
        layout.for_each_chunk(|s, first, len| {
            let name = format!("s-{s}");
            let mut insert = conn
                .prepare_cached("INSERT INTO events(stream, ver, data) VALUES (?1, ?2, ?3)")
                .map_err(err("sqlite prepare"))?;
            for k in 0..len as u64 {
                versions[s] += 1;
                insert
                    .execute(params![name, versions[s], maker.encoded(first + k)])
                    .map_err(err("sqlite insert"))?;
            }
            rows += len;
            if rows >= 10_000 {
                rows = 0;
                conn.execute_batch("COMMIT; BEGIN")
                    .map_err(err("sqlite commit"))?;
            }
            Ok(())
        })?;
        conn.execute_batch("COMMIT").map_err(err("sqlite commit"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("sqlite synchronous"))?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(err("sqlite checkpoint"))?;
        Ok(())
    }

    /// Reads every row in position order (`pos, stream, ver, data`, the blob
    /// borrowed; with `decode`, decoded by ringbus's codec into an owned
    /// `Event<serde_json::Value>`, as `read_all` hands out); rows/s. Fails
    /// unless it reads `expect` rows.
    pub fn read_all(&self, expect: u64, decode: bool) -> Res<f64> {
        let conn = self.conn.lock().map_err(|_| "sqlite lock poisoned")?;
        let start = std::time::Instant::now();
        let mut stmt = conn
            .prepare_cached("SELECT pos, stream, ver, data FROM events ORDER BY pos")
            .map_err(err("sqlite prepare"))?;
        let mut rows = stmt.query([]).map_err(err("sqlite query"))?;
        let (mut n, mut bytes) = (0u64, 0usize);
        while let Some(row) = rows.next().map_err(err("sqlite row"))? {
            let pos: i64 = row.get(0).map_err(err("sqlite pos"))?;
            let stream = row.get_ref(1).and_then(|v| Ok(v.as_str()?.len()));
            let ver: i64 = row.get(2).map_err(err("sqlite ver"))?;
            let data = row
                .get_ref(3)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(err("sqlite data"))?;
            bytes += stream.map_err(err("sqlite stream"))? + touch(data, decode)?;
            std::hint::black_box((pos, ver));
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(bytes);
        if n != expect {
            return Err(format!("sqlite read {n} rows, {expect} expected"));
        }
        Ok(n as f64 / secs)
    }

    /// Reads every stream of the layout, whole, by the `(stream, ver)` index
    /// (`pos, ver, data`; with `decode`, as in [`Sqlite::read_all`]); rows/s.
    pub fn read_streams(&self, layout: crate::support::Layout, decode: bool) -> Res<f64> {
        let conn = self.conn.lock().map_err(|_| "sqlite lock poisoned")?;
        let names: Vec<String> = (0..layout.streams).map(|s| format!("s-{s}")).collect();
        let start = std::time::Instant::now();
        let (mut n, mut bytes) = (0u64, 0usize);
        for name in &names {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT pos, ver, data FROM events WHERE stream = ?1 AND ver >= 1 ORDER BY ver",
                )
                .map_err(err("sqlite prepare"))?;
            let mut rows = stmt.query([name]).map_err(err("sqlite query"))?;
            while let Some(row) = rows.next().map_err(err("sqlite row"))? {
                let pos: i64 = row.get(0).map_err(err("sqlite pos"))?;
                let ver: i64 = row.get(1).map_err(err("sqlite ver"))?;
                let data = row
                    .get_ref(2)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(err("sqlite data"))?;
                bytes += touch(data, decode)?;
                std::hint::black_box((pos, ver));
                n += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(bytes);
        if n != layout.events() {
            return Err(format!(
                "sqlite read {n} rows by stream, {} expected",
                layout.events()
            ));
        }
        Ok(n as f64 / secs)
    }
}

/// The blob's length; with `decode`, after decoding it into an owned event.
fn touch(data: &[u8], decode: bool) -> Res<usize> {
    if decode {
        let (event, _) =
            ringbus::codec::decode::<serde_json::Value>(data).map_err(err("decode"))?;
        std::hint::black_box(event);
    }
    Ok(data.len())
}

// ---------------------------------------------------------------- fjall

/// fjall 3.1: one keyspace, key = position (u64 big-endian); an append is a
/// `WriteBatch` committed, then `Database::persist(SyncData)` (fdatasync of
/// its journal) — or not, for the `Durability::None` comparison.
pub struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    next: AtomicU64,
}

impl Fjall {
    /// Opens (or creates) a database in `dir`.
    pub fn open(dir: &Path) -> Res<Fjall> {
        let db = fjall::Database::builder(dir)
            .open()
            .map_err(err("fjall open"))?;
        let events = db
            .keyspace("events", fjall::KeyspaceCreateOptions::default)
            .map_err(err("fjall keyspace"))?;
        Ok(Fjall {
            db,
            events,
            next: AtomicU64::new(0),
        })
    }

    /// Writes `events` as one batch; with `sync`, persists with `SyncData`.
    pub fn append(&self, events: Vec<Vec<u8>>, sync: bool) -> Res<()> {
        let first = self.next.fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut batch = self.db.batch();
        for (k, data) in events.into_iter().enumerate() {
            batch.insert(&self.events, (first + k as u64).to_be_bytes(), data);
        }
        batch.commit().map_err(err("fjall commit"))?;
        if sync {
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(err("fjall persist"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- okaywal

/// okaywal 0.3 with its default configuration and no checkpointing work
/// (`LogVoid`): an append is `begin_entry`, one `write_chunk` per event,
/// `commit` — which waits for an fsync that concurrent committers share
/// (group commit).
pub struct OkayWal {
    wal: okaywal::WriteAheadLog,
}

impl OkayWal {
    /// Opens (or creates) a log in `dir`.
    pub fn open(dir: &Path) -> Res<OkayWal> {
        let wal =
            okaywal::WriteAheadLog::recover(dir, okaywal::LogVoid).map_err(err("okaywal open"))?;
        Ok(OkayWal { wal })
    }

    /// Writes `events` as one entry and commits it.
    pub fn append(&self, events: &[Vec<u8>]) -> Res<()> {
        let mut entry = self.wal.begin_entry().map_err(err("okaywal begin"))?;
        for data in events {
            entry.write_chunk(data).map_err(err("okaywal write"))?;
        }
        entry.commit().map_err(err("okaywal commit"))?;
        Ok(())
    }

    /// Shuts the log down.
    pub fn close(self) -> Res<()> {
        self.wal.shutdown().map_err(err("okaywal shutdown"))
    }
}

// ---------------------------------------------------------------- redb

const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");

/// redb 4.6: one table, key = position; an append is one write transaction
/// with `Durability::Immediate` (or `None`, for the `Durability::None`
/// comparison).
pub struct Redb {
    db: redb::Database,
    next: AtomicU64,
}

impl Redb {
    /// Creates `dir/events.redb`.
    pub fn open(dir: &Path) -> Res<Redb> {
        let db = redb::Database::create(dir.join("events.redb")).map_err(err("redb create"))?;
        Ok(Redb {
            db,
            next: AtomicU64::new(0),
        })
    }

    /// Inserts `events` in one transaction and commits it.
    pub fn append(&self, events: &[Vec<u8>], immediate: bool) -> Res<()> {
        let first = self.next.fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut tx = self.db.begin_write().map_err(err("redb begin"))?;
        tx.set_durability(if immediate {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(err("redb durability"))?;
        {
            let mut table = tx.open_table(EVENTS).map_err(err("redb table"))?;
            for (k, data) in events.iter().enumerate() {
                table
                    .insert(first + k as u64, data.as_slice())
                    .map_err(err("redb insert"))?;
            }
        }
        tx.commit().map_err(err("redb commit"))
    }
}

// ---------------------------------------------------------------- the anchors' append loops

/// The anchors' twin of [`support::appends`]: `threads` threads, `batch`
/// events per append (encoded in the loop), until `window` passes; events/s.
fn timed_appends(
    threads: usize,
    batch: usize,
    window: Duration,
    maker: &Maker,
    append: impl Fn(usize, Vec<Vec<u8>>) -> Res<()> + Sync,
) -> Res<f64> {
    let barrier = Barrier::new(threads + 1);
    let total = AtomicU64::new(0);
    let append = &append;
    let (start, end) = std::thread::scope(|s| -> Res<(Instant, Instant)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, total) = (&barrier, &total);
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    let deadline = Instant::now() + window;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let events = (0..batch as u64).map(|k| maker.encoded(n + k)).collect();
                        append(t, events)?;
                        n += batch as u64;
                    }
                    total.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().map_err(|_| "an appender panicked".to_owned())??;
        }
        Ok((start, Instant::now()))
    })?;
    Ok(total.load(Ordering::Relaxed) as f64 / (end - start).as_secs_f64())
}

pub fn sqlite_appends(
    base: &Path,
    maker: &Maker,
    threads: usize,
    batch: usize,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "sqlite")?;
    let db = Sqlite::open(dir.path())?;
    let names: Vec<String> = (0..threads).map(|t| format!("s-{t}")).collect();
    timed_appends(threads, batch, window, maker, |t, ev| {
        db.append(&names[t], &ev)
    })
}

pub fn fjall_appends(
    base: &Path,
    maker: &Maker,
    batch: usize,
    sync: bool,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "fjall")?;
    let db = Fjall::open(dir.path())?;
    let rate = timed_appends(1, batch, window, maker, |_, ev| db.append(ev, sync))?;
    drop(db);
    Ok(rate)
}

pub fn okaywal_appends(base: &Path, maker: &Maker, threads: usize, window: Duration) -> Res<f64> {
    let dir = TempDir::new(base, "okaywal")?;
    let wal = OkayWal::open(dir.path())?;
    let rate = timed_appends(threads, 1, window, maker, |_, ev| wal.append(&ev))?;
    wal.close()?;
    Ok(rate)
}

pub fn redb_appends(
    base: &Path,
    maker: &Maker,
    batch: usize,
    immediate: bool,
    window: Duration,
) -> Res<f64> {
    let dir = TempDir::new(base, "redb")?;
    let db = Redb::open(dir.path())?;
    let rate = timed_appends(1, batch, window, maker, |_, ev| db.append(&ev, immediate))?;
    drop(db);
    Ok(rate)
}
