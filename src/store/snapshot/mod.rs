//! Snapshots: a stream's state at a version, kept so that loading an aggregate
//! need not replay its whole stream.
//!
//! A [`Snapshot`] is bytes the caller encoded (the CQRS repository writes its
//! aggregate state as MessagePack with [`Snapshot::encode`]) plus the stream,
//! the stream version the state includes and the state's schema version.
//! [`SnapshotStore`] keeps the latest one per stream. Snapshots are an
//! optimisation, never the truth: a snapshot that is missing, damaged, of
//! another schema version or undecodable is ignored and the stream replayed
//! from its events ([`Snapshot::decode`] returns `None` then) — cqrs-es had to
//! add that fallback after the fact (serverlesstechnology/cqrs#192).
//!
//! [`InMemorySnapshots`] keeps them in a map; [`FileSnapshots`] in a directory,
//! durably; a store hands out its own through
//! [`EventStore::snapshots`](super::EventStore::snapshots).
//!
//! # Snapshots on disk
//! [`FileSnapshots`] is the file store's (in `dir/snapshots/`), and can be
//! opened on its own. It keeps one append-only log of records — stream,
//! version, schema version, payload, each record with CRC-32C checksums of its
//! header and of its body — and indexes the latest record of each stream in
//! memory; `load` reads that record with one positional read. A `save` is
//! synced to the disk before it returns `Ok`, under the snapshot store's own
//! lock (never the event store's committer: snapshot writes never hold up
//! event appends). A failed write or sync poisons it: later saves fail until
//! it is opened again.
//!
//! Recovery differs from the event log's on purpose. A torn tail (what a crash
//! in the middle of a save leaves) is truncated, as there; but a damaged record
//! *followed by valid ones*, which makes the event store refuse to open, is
//! here skipped: that stream loads an earlier snapshot or none, and is replayed
//! from its events. Damage is never an open error and never a panic.
//!
//! When the log holds over 1 MiB and over 4 times the bytes of the live
//! snapshots, the next save first compacts it: the live records are written to
//! a temporary file, synced, renamed over the log and the directory synced — a
//! crash leaves the old log or the new one, never a mix, never neither. The
//! record format and the rules in detail are on [`FileSnapshots`]'s module
//! (`src/store/snapshot/file.rs`).

mod file;

pub use file::FileSnapshots;

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StreamId;

/// A stream's state at a version, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream whose state this is.
    pub stream: StreamId,
    /// The stream version the state includes: its events `1..=version` were
    /// applied; loading replays from `version + 1`.
    pub version: u64,
    /// The schema of the encoded state, chosen by the writer. A reader that
    /// expects another schema ignores the snapshot.
    pub schema_version: u32,
    /// The encoded state.
    pub payload: Vec<u8>,
}

impl Snapshot {
    /// Encodes `state` as MessagePack (structs as maps, so fields may be added
    /// with `#[serde(default)]` without a new schema version).
    ///
    /// # Errors
    /// The serializer's error, as text (a state `serde` cannot write as
    /// MessagePack, e.g. a map with non-string keys is fine but a failing
    /// `Serialize` impl is not).
    ///
    /// # Examples
    /// ```
    /// use ringbus::store::snapshot::Snapshot;
    /// use ringbus::store::StreamId;
    ///
    /// let stream = StreamId::new("cart-1").unwrap();
    /// let snapshot = Snapshot::encode(stream, 10, 1, &vec!["apple", "pear"]).unwrap();
    /// assert_eq!(snapshot.decode::<Vec<String>>(1).unwrap(), ["apple", "pear"]);
    /// assert_eq!(snapshot.decode::<Vec<String>>(2), None); // another schema: ignored
    /// ```
    pub fn encode<S: Serialize + ?Sized>(
        stream: StreamId,
        version: u64,
        schema_version: u32,
        state: &S,
    ) -> Result<Snapshot, String> {
        let payload = rmp_serde::to_vec_named(state).map_err(|e| e.to_string())?;
        Ok(Snapshot {
            stream,
            version,
            schema_version,
            payload,
        })
    }

    /// Decodes the state if the snapshot is of `schema_version` and its payload
    /// decodes as `S`; `None` otherwise (the caller replays from events).
    pub fn decode<S: DeserializeOwned>(&self, schema_version: u32) -> Option<S> {
        if self.schema_version != schema_version {
            return None;
        }
        rmp_serde::from_slice(&self.payload).ok()
    }
}

/// Keeps the latest [`Snapshot`] of each stream.
///
/// "Latest" is by version: saving a snapshot older than the one kept (a lower
/// `version`) keeps the newer one; saving one of the same version replaces it
/// (a new schema version of the same state).
pub trait SnapshotStore: Send + Sync + 'static {
    /// Keeps `snapshot` as its stream's latest, unless a newer one is kept.
    /// When it returns `Ok`, the snapshot is as durable as the store promises.
    ///
    /// # Errors
    /// Any error of the underlying storage; the previous snapshot stays. (A
    /// durable store cannot always know whether a failed write reached the disk:
    /// after a restart, [`FileSnapshots`] loads the previous snapshot or the
    /// failed one, whole.)
    fn save(&self, snapshot: Snapshot) -> io::Result<()>;

    /// The stream's latest snapshot, `None` if there is none.
    ///
    /// # Errors
    /// Any error of the underlying storage. (A damaged snapshot is not an error:
    /// it is not returned.)
    fn load(&self, stream: &StreamId) -> io::Result<Option<Snapshot>>;
}

/// Snapshots in a map: the [`InMemoryStore`](super::InMemoryStore)'s, and for
/// tests.
///
/// # Examples
/// ```
/// use ringbus::store::snapshot::{InMemorySnapshots, Snapshot, SnapshotStore};
/// use ringbus::store::StreamId;
///
/// let snapshots = InMemorySnapshots::new();
/// let cart = StreamId::new("cart-1").unwrap();
/// snapshots.save(Snapshot::encode(cart.clone(), 20, 1, &3u32).unwrap()).unwrap();
/// snapshots.save(Snapshot::encode(cart.clone(), 10, 1, &2u32).unwrap()).unwrap(); // older: kept out
/// let latest = snapshots.load(&cart).unwrap().unwrap();
/// assert_eq!((latest.version, latest.decode::<u32>(1)), (20, Some(3)));
/// ```
#[derive(Debug, Default)]
pub struct InMemorySnapshots {
    map: Mutex<HashMap<StreamId, Snapshot>>,
}

impl InMemorySnapshots {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SnapshotStore for InMemorySnapshots {
    fn save(&self, snapshot: Snapshot) -> io::Result<()> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&snapshot.stream) {
            Some(kept) if kept.version > snapshot.version => {}
            _ => {
                map.insert(snapshot.stream.clone(), snapshot);
            }
        }
        Ok(())
    }

    fn load(&self, stream: &StreamId) -> io::Result<Option<Snapshot>> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(stream).cloned())
    }
}

impl<T: SnapshotStore + ?Sized> SnapshotStore for std::sync::Arc<T> {
    fn save(&self, snapshot: Snapshot) -> io::Result<()> {
        (**self).save(snapshot)
    }

    fn load(&self, stream: &StreamId) -> io::Result<Option<Snapshot>> {
        (**self).load(stream)
    }
}
