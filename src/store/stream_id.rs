//! `StreamId`: the validated name of a stream, stored as its events' subject.

use std::fmt;
use std::str::FromStr;

use crate::event::Subject;

/// The name of a stream, e.g. `"order-7"`: 1 to 255 bytes of UTF-8 without
/// control characters.
///
/// A stream id is stored as the [`subject`](crate::Event::subject) of every event
/// appended to the stream, so per-subject ordering and partitioned handlers on the
/// bus follow streams with no extra key. It wraps a [`Subject`]: cloning is a
/// reference-count increment, and the run-independent hash is computed once.
///
/// # Examples
/// ```
/// use ringbus::store::{StreamId, StreamIdError};
///
/// let order = StreamId::new("order-7").unwrap();
/// assert_eq!(order.as_str(), "order-7");
/// assert_eq!(order.as_subject().as_str(), "order-7");
///
/// assert_eq!(StreamId::new(""), Err(StreamIdError::Empty));
/// assert_eq!(StreamId::new("a\nb"), Err(StreamIdError::ControlCharacter { index: 1 }));
/// assert_eq!(StreamId::new("x".repeat(256)), Err(StreamIdError::TooLong { len: 256 }));
/// let parsed: StreamId = "order-7".parse().unwrap();
/// assert_eq!(parsed, order);
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(Subject);

impl StreamId {
    /// The longest stream id, in bytes of UTF-8.
    pub const MAX_LEN: usize = 255;

    /// Checks `name` and makes it a stream id.
    pub fn new(name: impl AsRef<str>) -> Result<Self, StreamIdError> {
        let name = name.as_ref();
        validate(name)?;
        Ok(StreamId(Subject::new(name)))
    }

    /// The stream's name.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The subject its events carry (the same name).
    #[inline]
    pub fn as_subject(&self) -> &Subject {
        &self.0
    }

    /// The subject's precomputed hash (shards and maps use it).
    #[inline]
    pub(crate) fn hash64(&self) -> u64 {
        self.0.partition_hash()
    }
}

fn validate(name: &str) -> Result<(), StreamIdError> {
    if name.is_empty() {
        return Err(StreamIdError::Empty);
    }
    if name.len() > StreamId::MAX_LEN {
        return Err(StreamIdError::TooLong { len: name.len() });
    }
    match name.char_indices().find(|(_, c)| c.is_control()) {
        Some((index, _)) => Err(StreamIdError::ControlCharacter { index }),
        None => Ok(()),
    }
}

/// Hashes the subject's precomputed 64-bit hash (equal names, equal hashes), so a
/// map keyed by stream ids never rehashes the name.
impl std::hash::Hash for StreamId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", self.as_str())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamId::new(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        StreamId::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(StreamId(Subject::new(s)))
    }
}

impl From<StreamId> for Subject {
    fn from(id: StreamId) -> Subject {
        id.0
    }
}

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StreamId::new(&*s).map_err(serde::de::Error::custom)
    }
}

/// Why a name is not a [`StreamId`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamIdError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`StreamId::MAX_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a control character (Unicode category Cc: `U+0000`–`U+001F`,
    /// `U+007F`–`U+009F`).
    ControlCharacter {
        /// The byte offset of the first one.
        index: usize,
    },
}

impl fmt::Display for StreamIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamIdError::Empty => f.write_str("a stream id must not be empty"),
            StreamIdError::TooLong { len } => write!(
                f,
                "a stream id has at most {} bytes, this one {len}",
                StreamId::MAX_LEN
            ),
            StreamIdError::ControlCharacter { index } => {
                write!(f, "a stream id has a control character at byte {index}")
            }
        }
    }
}

impl std::error::Error for StreamIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(StreamId::new("x".repeat(255)).is_ok());
        assert_eq!(
            StreamId::new("é".repeat(128)),
            Err(StreamIdError::TooLong { len: 256 })
        );
        assert_eq!(
            StreamId::new("ab\u{7f}"),
            Err(StreamIdError::ControlCharacter { index: 2 })
        );
        assert_eq!(
            StreamId::new("é\u{85}"),
            Err(StreamIdError::ControlCharacter { index: 2 })
        );
        assert!(StreamId::new("order 7 / ü").is_ok());
        assert_eq!(StreamId::try_from(String::new()), Err(StreamIdError::Empty));
    }

    #[test]
    fn serde_validates() {
        let id: StreamId = serde_json::from_str("\"order-7\"").unwrap();
        assert_eq!(id.as_str(), "order-7");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"order-7\"");
        assert!(serde_json::from_str::<StreamId>("\"\"").is_err());
    }
}
