//! The consumers: one sink per handler, the same work for every system.

use super::*;

// ---- consumers ---------------------------------------------------------------------

/// One consumer's (or one ringbus handler's) work.
pub enum Work {
    /// One handler (ringbus: routing done by the bus).
    Leaf { sum: u64, spin: u64 },
    /// Eight handlers indexed by the event type's interned id.
    Router {
        by_id: Arc<[u8]>,
        sums: [u64; HANDLERS],
    },
    /// Four handlers, each called for every event.
    Fan { sums: [u64; FANOUT] },
    /// One lane of a disruptor whose every consumer sees every event.
    Lane { lane: usize, sum: u64, spin: u64 },
    /// Records latencies.
    Record(Recorder),
}

/// A consumer's handlers plus the count it reports once per batch.
pub struct Sink {
    pub work: Work,
    pub pending: u64,
    pub done: Arc<Done>,
}

impl Sink {
    pub fn new(work: Work, done: &Arc<Done>) -> Self {
        Sink {
            work,
            pending: 0,
            done: done.clone(),
        }
    }

    #[inline(always)]
    pub fn on_event(&mut self, e: &Event<u64>) {
        match &mut self.work {
            Work::Leaf { sum, spin } => {
                work(sum, e.data, *spin);
                self.pending += 1;
            }
            Work::Router { by_id, sums } => {
                let h = by_id[e.event_type.id() as usize] as usize;
                work(&mut sums[h], e.data, 0);
                self.pending += 1;
            }
            Work::Fan { sums } => {
                for s in sums.iter_mut() {
                    work(s, e.data, 0);
                }
                self.pending += FANOUT as u64;
            }
            Work::Lane { lane, sum, spin } => {
                if lane_of(e, LANES) == *lane {
                    work(sum, e.data, *spin);
                    self.pending += 1;
                }
            }
            Work::Record(r) => {
                r.record(e.data);
                self.pending += 1;
            }
        }
    }

    #[inline]
    pub fn end_batch(&mut self) {
        if self.pending > 0 {
            self.done.add(std::mem::take(&mut self.pending));
        }
        // The sums are never read: keep the optimizer from dropping the work.
        black_box(&self.work);
    }
}

/// The handler ringbus subscribes: a [`Sink`].
pub struct BusHandler(pub Sink);

impl ringbus::Handler<u64> for BusHandler {
    #[inline]
    fn handle(&mut self, e: &Event<u64>) -> Result<(), HandlerError> {
        self.0.on_event(e);
        Ok(())
    }
    fn on_batch_end(&mut self) {
        self.0.end_batch();
    }
}

/// How a run is set up.
pub struct Setup {
    pub shape: Shape,
    pub producers: usize,
    /// ringbus metrics histograms (default on).
    pub metrics: bool,
    /// Where [`Shape::Latency`] recorders send their histogram on shutdown.
    pub record: Option<mpsc::Sender<Histogram<u64>>>,
}

impl Setup {
    pub fn leaf(&self, spin: u64, done: &Arc<Done>) -> Sink {
        match &self.record {
            Some(tx) => Sink::new(Work::Record(Recorder::new(tx.clone())), done),
            None => Sink::new(Work::Leaf { sum: 0, spin }, done),
        }
    }

    /// Consumer `k`'s sink for a competitor (`filtered`: its lane's events only
    /// reach it, as with one channel per lane).
    pub fn competitor_sink(
        &self,
        k: usize,
        consumers: usize,
        filtered: bool,
        done: &Arc<Done>,
    ) -> Sink {
        match self.shape {
            Shape::Routed => {
                let types = types();
                let max = types.iter().map(|t| t.id()).max().unwrap_or(0) as usize;
                let mut by_id = vec![0u8; max + 1];
                for (h, t) in types.iter().enumerate() {
                    by_id[t.id() as usize] = h as u8;
                }
                Sink::new(
                    Work::Router {
                        by_id: by_id.into(),
                        sums: [0; HANDLERS],
                    },
                    done,
                )
            }
            Shape::FanOut { .. } if consumers == 1 => {
                Sink::new(Work::Fan { sums: [0; FANOUT] }, done)
            }
            Shape::FanOut { .. } | Shape::Latency => self.leaf(0, done),
            Shape::Partitioned if filtered => self.leaf(work_iters(), done),
            Shape::Partitioned => Sink::new(
                Work::Lane {
                    lane: k,
                    sum: 0,
                    spin: work_iters(),
                },
                done,
            ),
        }
    }
}
