//! What can go wrong setting up or running the bridge.

use std::fmt;

use super::ServerVersion;
use crate::SubscribeError;

/// An error of the NATS bridge.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The connection to the server could not be made.
    Connect(String),
    /// The server (or the account) has no JetStream.
    NoJetStream(String),
    /// A stream or consumer exists with settings other than those asked for;
    /// the bridge never changes them.
    Mismatch {
        /// The stream or consumer.
        what: String,
        /// The setting that differs.
        field: &'static str,
        /// What the bridge asked for.
        want: String,
        /// What the server has.
        have: String,
    },
    /// The server is too old for what was asked.
    Unsupported {
        /// What was asked (`"several filter subjects"`).
        feature: &'static str,
        /// The server's version.
        server_version: ServerVersion,
    },
    /// A setting that cannot work (an empty durable name, a pattern that is
    /// not valid, a queue of 0).
    Config(String),
    /// Subscribing the bridge to the local bus failed.
    Subscribe(SubscribeError),
    /// A JetStream request failed.
    Nats(String),
    /// The bridge is shut down.
    Closed,
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Connect(e) => write!(f, "cannot connect to NATS: {e}"),
            BridgeError::NoJetStream(e) => write!(f, "JetStream is not available: {e}"),
            BridgeError::Mismatch {
                what,
                field,
                want,
                have,
            } => write!(
                f,
                "{what} exists with {field} = {have}, the bridge asks for {want}"
            ),
            BridgeError::Unsupported {
                feature,
                server_version,
            } => write!(f, "nats-server {server_version} does not support {feature}"),
            BridgeError::Config(e) => write!(f, "invalid bridge setting: {e}"),
            BridgeError::Subscribe(e) => write!(f, "cannot subscribe the bridge: {e}"),
            BridgeError::Nats(e) => write!(f, "JetStream request failed: {e}"),
            BridgeError::Closed => f.write_str("the bridge is shut down"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Subscribe(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SubscribeError> for BridgeError {
    fn from(e: SubscribeError) -> Self {
        BridgeError::Subscribe(e)
    }
}

/// Wraps any JetStream client error.
pub(crate) fn nats(e: impl fmt::Display) -> BridgeError {
    BridgeError::Nats(e.to_string())
}
