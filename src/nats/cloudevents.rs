//! The CloudEvents attribute mapping (CloudEvents 1.0, JSON event format).
//!
//! Placeholder: the mapping is being written (issue 13, O2).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Event;

/// The CloudEvents JSON event for `event`.
pub(crate) fn to_json<P: Serialize>(_event: &Event<P>) -> Result<Vec<u8>, String> {
    Err("CloudEvents JSON is not implemented yet".into())
}

/// The event in a CloudEvents JSON event.
pub(crate) fn from_json<P: DeserializeOwned>(_body: &[u8]) -> Result<Event<P>, String> {
    Err("CloudEvents JSON is not implemented yet".into())
}
