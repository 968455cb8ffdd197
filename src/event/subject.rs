//! The subject of an event: the key that orders and partitions (an order id).

use std::fmt;
use std::sync::Arc;

/// The key an event is about — an order id, an account number, an aggregate id.
///
/// Events with the same subject keep their relative order through partitioned
/// handlers (they always go to the same lane) and, later, through per-subject
/// retry sequencing. The hash that picks the lane is computed once, when the subject
/// is created, with fixed keys: the same subject maps to the same lane in every run
/// and every process.
///
/// Cloning is a reference-count increment.
#[derive(Clone)]
pub struct Subject {
    name: Arc<str>,
    hash: u64,
}

fn hasher() -> &'static ahash::RandomState {
    static H: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        ahash::RandomState::with_seeds(
            0x5249_4e47_4255_5331,
            0x9e37_79b9_7f4a_7c15,
            0xbf58_476d_1ce4_e5b9,
            0x94d0_49bb_1331_11eb,
        )
    })
}

impl Subject {
    /// A subject with this name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        let hash = hasher().hash_one(&*name);
        Subject { name, hash }
    }

    /// The subject's name.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The precomputed, run-independent hash that assigns the subject to a lane.
    #[inline]
    pub fn partition_hash(&self) -> u64 {
        self.hash
    }
}

impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name
    }
}

impl Eq for Subject {}

impl std::hash::Hash for Subject {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for Subject {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Subject {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({:?})", &*self.name)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl From<&str> for Subject {
    fn from(s: &str) -> Self {
        Subject::new(s)
    }
}

impl From<&String> for Subject {
    fn from(s: &String) -> Self {
        Subject::new(s.as_str())
    }
}

impl From<&Subject> for Subject {
    fn from(s: &Subject) -> Self {
        s.clone()
    }
}

impl From<String> for Subject {
    fn from(s: String) -> Self {
        Subject::new(s)
    }
}

impl serde::Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Subject::new(&*s))
    }
}
