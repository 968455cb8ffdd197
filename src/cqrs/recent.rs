//! The recent-commands window: which commands caused the last events of a
//! stream, so that a command sent again is recognised instead of executed
//! twice.
//!
//! A *run* is the events one command appended: consecutive versions, causation
//! id = the command id, event ids = [`CommandId::event_id`]`(0, 1, …)`. Runs
//! are recognised from the events themselves, so the window is rebuilt the
//! same way from a replay, a catch-up read or the repository's own appends.
//! An event that does not fit (written without the repository, or a run whose
//! first event is outside what was read) starts no run: such a command is not
//! recognised, which only costs the protection, never a wrong answer.

use std::collections::VecDeque;

use super::command::CommandId;
use crate::event::Event;

/// One command's events in a stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The command.
    pub(crate) command: CommandId,
    /// The stream version of its first event, ≥ 1.
    pub(crate) first: u64,
    /// How many events it appended, ≥ 1.
    pub(crate) count: u64,
}

impl Run {
    /// The version of its last event.
    pub(crate) fn last(&self) -> u64 {
        self.first + self.count - 1
    }
}

/// The runs that end among a stream's last `window` events, oldest first.
#[derive(Debug)]
pub(crate) struct RecentCommands {
    runs: VecDeque<Run>,
    /// How many of the stream's last events are covered; 0 disables the window.
    window: u64,
}

impl RecentCommands {
    /// An empty window over the last `window` events.
    pub(crate) fn new(window: u64) -> Self {
        RecentCommands {
            runs: VecDeque::new(),
            window,
        }
    }

    /// Takes in the stream's event at `version` (versions must come in
    /// increasing order).
    pub(crate) fn observe<P>(&mut self, version: u64, event: &Event<P>) {
        if self.window == 0 {
            return;
        }
        self.trim(version);
        let Some(cause) = event.causation_id else {
            return;
        };
        let command = CommandId::from_uuid(*cause.as_uuid());
        if let Some(last) = self.runs.back_mut() {
            if last.command == command
                && last.first + last.count == version
                && u32::try_from(last.count).is_ok_and(|i| event.id == command.event_id(i))
            {
                last.count += 1;
                return;
            }
        }
        if event.id == command.event_id(0) {
            self.runs.push_back(Run {
                command,
                first: version,
                count: 1,
            });
        }
    }

    /// Records the run the repository has just appended.
    pub(crate) fn record(&mut self, run: Run) {
        if self.window == 0 {
            return;
        }
        self.runs.push_back(run);
        self.trim(run.last());
    }

    /// The run of `command`, if it is in the window.
    pub(crate) fn find(&self, command: CommandId) -> Option<Run> {
        self.runs
            .iter()
            .rev()
            .find(|r| r.command == command)
            .copied()
    }

    /// Drops the runs that end before the last `window` events up to `version`.
    fn trim(&mut self, version: u64) {
        while let Some(front) = self.runs.front() {
            if front.last() + self.window <= version {
                self.runs.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event_type, source};

    fn event(command: CommandId, index: u32) -> Event<()> {
        let mut e = Event::new(event_type!("t"), source!("s"), ());
        e.id = command.event_id(index);
        e.causation_id = Some(command.as_event_id());
        e
    }

    #[test]
    fn runs_are_rebuilt_from_events_and_trimmed() {
        let (a, b) = (CommandId::new(), CommandId::new());
        let mut w = RecentCommands::new(3);
        w.observe(1, &event(a, 0));
        w.observe(2, &event(a, 1));
        w.observe(3, &event(b, 0));
        assert_eq!(
            w.find(a),
            Some(Run {
                command: a,
                first: 1,
                count: 2
            })
        );
        assert_eq!(
            w.find(b),
            Some(Run {
                command: b,
                first: 3,
                count: 1
            })
        );
        // a's last event (2) falls out of the last 3 events at version 5.
        w.observe(4, &Event::new(event_type!("t"), source!("s"), ()));
        assert!(w.find(a).is_some());
        w.observe(5, &Event::new(event_type!("t"), source!("s"), ()));
        assert_eq!(w.find(a), None);
        assert!(w.find(b).is_some());
    }

    #[test]
    fn a_run_cut_at_its_start_is_not_recognised() {
        let a = CommandId::new();
        let mut w = RecentCommands::new(10);
        // Read from the middle of a's events: index 1 first.
        w.observe(7, &event(a, 1));
        w.observe(8, &event(a, 2));
        assert_eq!(w.find(a), None);
    }

    #[test]
    fn window_zero_records_nothing() {
        let a = CommandId::new();
        let mut w = RecentCommands::new(0);
        w.observe(1, &event(a, 0));
        w.record(Run {
            command: a,
            first: 2,
            count: 1,
        });
        assert_eq!(w.find(a), None);
    }
}
