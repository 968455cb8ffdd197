//! Producers and drivers: how each system is fed, saturated or paced.

use super::*;

// ---- producers and drivers ---------------------------------------------------------

/// One producer's handle on a system.
pub trait Producer: Send {
    /// Publishes the event `make` builds (the disruptor builds it in its slot).
    fn send(&mut self, make: impl FnOnce() -> Event<u64>);
    /// Publishes `k` events with the system's batch publish.
    fn send_batch(&mut self, k: usize, make: impl FnMut() -> Event<u64>);
}

impl<M: ProducerMode> Producer for ringbus::Publisher<u64, M>
where
    ringbus::Publisher<u64, M>: Send,
{
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        if self.publish(make()).is_err() {
            panic!("the bus closed during the run");
        }
    }
    #[inline(always)]
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        if self.publish_batch((0..k).map(|_| make())).is_err() {
            panic!("the bus closed during the run");
        }
    }
}

/// A disruptor producer.
pub struct Dis<P>(pub P);

impl<P: disruptor::Producer<DisruptorSlot> + Send> Producer for Dis<P> {
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        self.0.publish(|slot| *slot = make());
    }
    #[inline(always)]
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        self.0.batch_publish(k, |slots| {
            for slot in slots {
                *slot = make();
            }
        });
    }
}

/// A channel's sending half.
pub trait Tx: Clone + Send + 'static {
    fn put(&self, e: ChannelMessage);
}
/// A channel's receiving half.
pub trait Rx: Send + 'static {
    fn take(&self) -> Option<ChannelMessage>;
    fn try_take(&self) -> Option<ChannelMessage>;
}

impl Tx for crossbeam_channel::Sender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for crossbeam_channel::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}
impl Tx for flume::Sender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for flume::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}
impl Tx for mpsc::SyncSender<ChannelMessage> {
    #[inline(always)]
    fn put(&self, e: ChannelMessage) {
        self.send(e).expect("consumer alive");
    }
}
impl Rx for mpsc::Receiver<ChannelMessage> {
    fn take(&self) -> Option<ChannelMessage> {
        self.recv().ok()
    }
    fn try_take(&self) -> Option<ChannelMessage> {
        self.try_recv().ok()
    }
}

/// A producer on one channel, or on one channel per lane (picked by [`lane_of`]).
pub struct Chan<T>(pub Vec<T>);

impl<T: Tx> Producer for Chan<T> {
    #[inline(always)]
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        let e = make();
        let k = if self.0.len() == 1 {
            0
        } else {
            lane_of(&e, self.0.len())
        };
        self.0[k].put(e);
    }
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        for _ in 0..k {
            self.send(&mut make);
        }
    }
}

/// Makes events without publishing them: the CPU baseline of the paced producer.
pub struct Nowhere;

impl Producer for Nowhere {
    fn send(&mut self, make: impl FnOnce() -> Event<u64>) {
        black_box(make());
    }
    fn send_batch(&mut self, k: usize, mut make: impl FnMut() -> Event<u64>) {
        for _ in 0..k {
            black_box(make());
        }
    }
}

/// What to do with a system once it is built: drive its producers, wait until
/// `calls` handler calls per event are done, return a measurement. The system is
/// shut down after `drive` returns.
pub trait Drive {
    type Out;
    fn drive<P: Producer>(self, producers: Vec<P>, done: &Done, calls: u64) -> Self::Out;
}

/// `n` events (split between the producers), as fast as they go: the elapsed time
/// from the first publish to the last handler call.
pub struct Saturate<'a> {
    pub n: u64,
    pub publish: Publish,
    pub events: &'a Events,
}

pub fn produce<P: Producer>(p: &mut P, events: &Events, from: u64, n: u64, publish: Publish) {
    match publish {
        Publish::Single => {
            for i in from..from + n {
                p.send(|| events.make(i, i));
            }
        }
        Publish::Batch(b) => {
            let mut i = from;
            while i < from + n {
                let k = (b as u64).min(from + n - i);
                let mut j = i;
                p.send_batch(k as usize, || {
                    let e = events.make(j, j);
                    j += 1;
                    e
                });
                i += k;
            }
        }
    }
}

impl Drive for Saturate<'_> {
    type Out = Duration;
    fn drive<P: Producer>(self, mut producers: Vec<P>, done: &Done, calls: u64) -> Duration {
        let per = self.n / producers.len() as u64;
        let start = Instant::now();
        if let [p] = producers.as_mut_slice() {
            produce(p, self.events, 0, per, self.publish);
        } else {
            std::thread::scope(|s| {
                for (k, p) in producers.iter_mut().enumerate() {
                    let (events, publish) = (self.events, self.publish);
                    s.spawn(move || produce(p, events, k as u64 * per, per, publish));
                }
            });
        }
        done.wait_for(per * producers.len() as u64 * calls);
        start.elapsed()
    }
}

/// One producer at a fixed rate. `spin`: waits for each event's due time by
/// spinning and stamps it as the payload (latency); else sleeps between bursts of
/// due events (CPU cost; a spinning producer would hide every system's cost
/// behind its own). Returns the process's CPU time over the run.
pub struct Paced<'a> {
    pub rate: u64,
    pub n: u64,
    pub spin: bool,
    pub events: &'a Events,
}

impl Drive for Paced<'_> {
    type Out = Option<u64>;
    fn drive<P: Producer>(self, mut producers: Vec<P>, done: &Done, calls: u64) -> Option<u64> {
        let p = &mut producers[0];
        let interval = 1_000_000_000 / self.rate;
        // Latency: start 1 ms out, past the set-up. CPU: count from the first event.
        let lead = if self.spin { 1_000_000 } else { 0 };
        let cpu_before = process_cpu_ns();
        let start = now_ns() + lead;
        let mut i = 0;
        while i < self.n {
            let due = start + i * interval;
            let now = now_ns();
            if now < due {
                if self.spin {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                continue;
            }
            p.send(|| self.events.make(i, due));
            i += 1;
        }
        done.wait_for(self.n * calls);
        Some(process_cpu_ns()?.saturating_sub(cpu_before?))
    }
}
