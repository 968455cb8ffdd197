//! The flow log: a bounded, opt-in, in-memory record of handler calls, answering
//! "which handlers processed event X, when, with what outcome — and which events
//! did it cause?" through the events' causation ids.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::event::{EventId, EventType, Timestamp};
use crate::outcome::SubscriptionId;

/// One handler call on one event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowRecord {
    /// The event handled.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// Its correlation id.
    pub correlation_id: Option<EventId>,
    /// The event that caused it.
    pub causation_id: Option<EventId>,
    /// The subscription whose handler ran.
    pub subscription: SubscriptionId,
    /// The handler's name.
    pub handler: String,
    /// The lane (partitioned handlers; 0 otherwise).
    pub lane: u32,
    /// When the call finished.
    pub at: Timestamp,
    /// `Ok`, or the failure as text.
    pub outcome: Result<(), String>,
}

/// What the flow log knows about one event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowTrace {
    /// Every recorded call on the event (retries included), oldest first.
    pub handled: Vec<FlowRecord>,
    /// Events recorded with this event as their causation id (deduplicated, in
    /// first-seen order): what it caused, as far as handlers saw.
    pub caused: Vec<EventId>,
}

/// The bounded flow log; the oldest records are dropped (and counted) when full.
#[derive(Debug)]
pub struct FlowLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: VecDeque<FlowRecord>,
    dropped: u64,
}

type Batch = Vec<(SubscriptionId, Arc<str>, u32, FlowEntry)>;

impl FlowLog {
    pub(crate) fn new(capacity: usize) -> Self {
        FlowLog {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Appends one batch's records (one lock per batch).
    pub(crate) fn append(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (subscription, handler, lane, e) in batch {
            if inner.records.len() == self.capacity {
                inner.records.pop_front();
                inner.dropped += 1;
            }
            inner.records.push_back(FlowRecord {
                event_id: e.event_id,
                event_type: e.event_type,
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
                subscription,
                handler: handler.to_string(),
                lane,
                at: e.at,
                outcome: match e.error {
                    None => Ok(()),
                    Some(err) => Err(err),
                },
            });
        }
    }

    /// The calls on `event` and the events it caused.
    pub fn trace(&self, event: EventId) -> FlowTrace {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut trace = FlowTrace::default();
        for r in &inner.records {
            if r.event_id == event {
                trace.handled.push(r.clone());
            }
            if r.causation_id == Some(event) && !trace.caused.contains(&r.event_id) {
                trace.caused.push(r.event_id);
            }
        }
        trace
    }

    /// Every record of a flow (all events with this correlation id), oldest first.
    pub fn correlated(&self, correlation: EventId) -> Vec<FlowRecord> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .records
            .iter()
            .filter(|r| r.correlation_id == Some(correlation) || r.event_id == correlation)
            .cloned()
            .collect()
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }
}

/// One handled call, for the flow log.
#[derive(Clone, Debug)]
pub(crate) struct FlowEntry {
    pub(crate) event_id: EventId,
    pub(crate) event_type: EventType,
    pub(crate) correlation_id: Option<EventId>,
    pub(crate) causation_id: Option<EventId>,
    pub(crate) at: Timestamp,
    /// `None`: the call succeeded.
    pub(crate) error: Option<String>,
}
