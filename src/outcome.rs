//! The vocabulary of handler outcomes, shared by the dispatcher, the resilience
//! building blocks and the metrics: a leaf module (it names nothing of the crate
//! but the codec's error types, to classify them), so none of those areas has to
//! import another to name a failure.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// Identifies a subscription (one handler, or one partitioned handler's lanes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// An id from its raw number — for tools and tests that build dead letters by
    /// hand; a bus hands out its own ids from `subscribe`.
    pub const fn from_raw(n: u64) -> Self {
        SubscriptionId(n)
    }

    /// The raw number (unique within a bus).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub#{}", self.0)
    }
}

/// Why a handler call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FailureReason {
    /// The handler returned an error.
    Error(HandlerError),
    /// The handler panicked; the panic message, if it was a string.
    Panic(String),
}

impl FailureReason {
    /// Whether a retry may help: transient errors yes; permanent errors and panics no.
    pub fn is_transient(&self) -> bool {
        matches!(self, FailureReason::Error(e) if e.is_transient())
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Error(e) => fmt::Display::fmt(e, f),
            FailureReason::Panic(msg) => write!(f, "panicked: {msg}"),
        }
    }
}

/// Whether retrying could help.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A passing condition (a timeout, a busy dependency): a retry may succeed.
    Transient,
    /// The event cannot be handled (invalid data): retrying is pointless.
    Permanent,
}

/// A handler's failure: a message, whether it is worth retrying, and the cause.
///
/// # What `?` makes of an error
///
/// `?` in a handler returning `Result<(), HandlerError>` converts these errors,
/// and decides whether a retry may help:
///
/// | error | kind |
/// |---|---|
/// | [`serde_json::Error`] | permanent (the data does not fit the type), except an I/O error while reading: transient |
/// | [`rmp_serde::decode::Error`] | permanent, except an I/O error other than an unexpected end of input: transient |
/// | [`rmp_serde::encode::Error`] | permanent |
/// | [`codec::DecodeError`](crate::codec::DecodeError), [`codec::EncodeError`](crate::codec::EncodeError) | permanent (the bytes or value will not change) |
/// | [`std::io::Error`] | transient (a file, a socket: the world may change) |
/// | `Box<dyn Error + Send + Sync>` | what its contents would be by this table (a boxed `HandlerError` keeps its kind); any other error: transient |
///
/// Any other error type goes through `Box<dyn Error + Send + Sync>` — a handler
/// returning `Result<(), Box<dyn Error + Send + Sync>>` can use `?` on anything,
/// classified by the table — or is classified by hand with
/// [`Classify::permanent`] / [`Classify::transient`] (`parse(e).permanent()?`),
/// [`HandlerError::new`], or the message-only constructors
/// [`HandlerError::transient`] and [`HandlerError::permanent`].
///
/// A permanent error is not retried: with a retry policy (see
/// [`SubscribeOptions::retry`](crate::SubscribeOptions::retry)) it goes straight
/// to the dead-letter queue.
///
/// # Examples
/// ```
/// use ringbus::{failure::ErrorKind, Classify, HandlerError};
///
/// let bad_json = serde_json::from_str::<u32>("not json").unwrap_err();
/// assert_eq!(HandlerError::from(bad_json).kind(), ErrorKind::Permanent);
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(HandlerError::from(refused).kind(), ErrorKind::Transient);
///
/// let id: Result<u32, HandlerError> = "x12".parse::<u32>().permanent();
/// assert!(!id.unwrap_err().is_transient());
/// ```
pub struct HandlerError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl HandlerError {
    /// A transient error with this message.
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    /// A permanent error with this message.
    pub fn permanent(message: impl Into<Cow<'static, str>>) -> Self {
        HandlerError {
            kind: ErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// An error of this kind caused by `error` (which [`Error::source`] returns),
    /// with its message. A `HandlerError` passed here keeps its message and cause
    /// and takes the new kind.
    pub fn new(kind: ErrorKind, error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        match error.into().downcast::<HandlerError>() {
            Ok(inner) => HandlerError { kind, ..*inner },
            Err(error) => HandlerError {
                kind,
                message: error.to_string().into(),
                source: Some(error),
            },
        }
    }

    /// Whether a retry may help.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the error is transient.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn classified(error: Box<dyn Error + Send + Sync + 'static>) -> Self {
        match error.downcast::<HandlerError>() {
            Ok(inner) => *inner,
            Err(error) => {
                let kind = classify(&*error);
                HandlerError::new(kind, error)
            }
        }
    }
}

/// The table in [`HandlerError`]'s documentation, for one error value.
fn classify(error: &(dyn Error + 'static)) -> ErrorKind {
    use rmp_serde::decode::Error as MsgpackDecode;
    if let Some(e) = error.downcast_ref::<serde_json::Error>() {
        return match e.classify() {
            serde_json::error::Category::Io => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
    }
    if let Some(e) = error.downcast_ref::<MsgpackDecode>() {
        return match e {
            MsgpackDecode::InvalidMarkerRead(io) | MsgpackDecode::InvalidDataRead(io)
                if io.kind() != std::io::ErrorKind::UnexpectedEof =>
            {
                ErrorKind::Transient
            }
            _ => ErrorKind::Permanent,
        };
    }
    if error.is::<rmp_serde::encode::Error>()
        || error.is::<crate::codec::DecodeError>()
        || error.is::<crate::codec::EncodeError>()
    {
        return ErrorKind::Permanent;
    }
    ErrorKind::Transient
}

impl Error for HandlerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Converts by the table in [`HandlerError`]'s documentation.
impl From<Box<dyn Error + Send + Sync + 'static>> for HandlerError {
    fn from(error: Box<dyn Error + Send + Sync + 'static>) -> Self {
        HandlerError::classified(error)
    }
}

macro_rules! classified_from {
    ($($error:ty),* $(,)?) => {$(
        /// Converts by the table in [`HandlerError`]'s documentation.
        impl From<$error> for HandlerError {
            fn from(error: $error) -> Self {
                HandlerError::classified(Box::new(error))
            }
        }
    )*};
}

classified_from!(
    serde_json::Error,
    rmp_serde::decode::Error,
    rmp_serde::encode::Error,
    crate::codec::DecodeError,
    crate::codec::EncodeError,
    std::io::Error,
);

/// Marks the error of a `Result` as permanent or transient, converting it into a
/// [`HandlerError`] (its cause) — so a handler says what a failure means at the
/// `?` that propagates it.
///
/// # Examples
/// ```
/// use ringbus::{Classify, HandlerError};
///
/// fn quantity(text: &str) -> Result<u32, HandlerError> {
///     // A malformed number will not parse on a retry either.
///     let n = text.parse::<u32>().permanent()?;
///     Ok(n)
/// }
/// assert_eq!(quantity("3").unwrap(), 3);
/// let e = quantity("three").unwrap_err();
/// assert!(!e.is_transient());
/// assert!(std::error::Error::source(&e).is_some());
/// ```
pub trait Classify<T> {
    /// The error, if any, as a permanent [`HandlerError`]: never retried.
    fn permanent(self) -> Result<T, HandlerError>;

    /// The error, if any, as a transient [`HandlerError`]: retried under the
    /// subscription's retry policy.
    fn transient(self) -> Result<T, HandlerError>;
}

impl<T, E> Classify<T> for Result<T, E>
where
    E: Into<Box<dyn Error + Send + Sync + 'static>>,
{
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::new(ErrorKind::Permanent, e))
    }

    fn transient(self) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::new(ErrorKind::Transient, e))
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} error: {}", self.message)
    }
}
