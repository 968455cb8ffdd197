//! The dead-letter stream of a consumer: list, redrive, discard (being written:
//! issue 13, I4).

/// A consumer's dead letters in the dead-letter stream (placeholder).
#[derive(Debug)]
pub struct JetStreamDeadLetters {}
