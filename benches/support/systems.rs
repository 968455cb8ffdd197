//! Building each system: ringbus, the disruptor and the channels, with the same setup.

use super::*;

// ---- building each system ----------------------------------------------------------

/// Builds `system` for `setup`, hands its producers to `drive`, shuts it down.
pub fn run_system<D: Drive>(system: System, setup: &Setup, drive: D) -> D::Out {
    let done = Arc::new(Done::default());
    match system {
        System::Ringbus(wait) => ringbus_system(wait, setup, &done, drive),
        System::Disruptor(DisruptorWait::BusySpin) => {
            disruptor_system(disruptor::BusySpin, setup, &done, drive)
        }
        System::Disruptor(DisruptorWait::Sleep) => {
            disruptor_system(disruptor::Sleep::new(DISRUPTOR_SLEEP), setup, &done, drive)
        }
        System::Channel(Channel::Crossbeam) => {
            let pairs = channel_pairs(setup, crossbeam_channel::bounded);
            channel_system(pairs, setup, &done, drive)
        }
        System::Channel(Channel::Flume) => {
            let pairs = channel_pairs(setup, flume::bounded);
            channel_system(pairs, setup, &done, drive)
        }
        System::Channel(Channel::Std) => {
            let pairs = channel_pairs(setup, mpsc::sync_channel);
            channel_system(pairs, setup, &done, drive)
        }
    }
}

pub fn ringbus_system<D: Drive>(
    wait: WaitStrategy,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    let builder = BusBuilder::<u64>::new()
        .capacity(CAPACITY)
        .wait_strategy(wait)
        .metrics(setup.metrics);
    let builder = match setup.shape {
        Shape::Partitioned => builder
            .execution(Execution::Pool {
                threads: RINGBUS_POOL_THREADS,
            })
            .max_batch(1024),
        _ => builder.execution(Execution::Inline),
    };
    let calls = setup.shape.calls_per_event();
    if setup.producers == 1 {
        let (bus, p) = builder.single_producer().build().expect("bus builds");
        subscribe(&bus, setup, done);
        let out = drive.drive(vec![p], done, calls);
        bus.shutdown().expect("bus shuts down");
        out
    } else {
        let bus = builder.build().expect("bus builds");
        subscribe(&bus, setup, done);
        let producers = (0..setup.producers).map(|_| bus.publisher()).collect();
        let out = drive.drive(producers, done, calls);
        bus.shutdown().expect("bus shuts down");
        out
    }
}

pub fn subscribe<M: ProducerMode>(bus: &Bus<u64, M>, setup: &Setup, done: &Arc<Done>) {
    let leaf = |spin| BusHandler(setup.leaf(spin, done));
    match setup.shape {
        Shape::Routed => {
            for i in 0..HANDLERS {
                bus.subscribe_handler(format!("bench.type{i}").as_str(), leaf(0))
                    .expect("subscribes");
            }
        }
        Shape::FanOut { .. } => {
            for _ in 0..FANOUT {
                bus.subscribe_handler("bench.>", leaf(0))
                    .expect("subscribes");
            }
        }
        Shape::Partitioned => {
            bus.subscribe_partitioned("bench.>", LANES, |_| leaf(work_iters()))
                .expect("subscribes");
        }
        Shape::Latency => {
            bus.subscribe_handler("bench.>", leaf(0))
                .expect("subscribes");
        }
    }
}

pub fn disruptor_system<D: Drive, W: disruptor::wait_strategies::WaitStrategy + 'static>(
    wait: W,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    let consumers = match setup.shape {
        Shape::Partitioned => LANES,
        Shape::FanOut { consumers } => consumers,
        _ => 1,
    };
    assert!(
        consumers == 1 || consumers == 4,
        "the disruptor is wired for 1 or 4 consumers"
    );
    let mut sinks: Vec<Sink> = (0..consumers)
        .map(|k| setup.competitor_sink(k, consumers, false, done))
        .collect();
    let mut handler = || {
        let mut sink = sinks.remove(0);
        move |e: &DisruptorSlot, _seq: i64, end_of_batch: bool| {
            sink.on_event(e);
            if end_of_batch {
                sink.end_batch();
            }
        }
    };
    let ty = types()[0];
    let source = Source::new("bench");
    let factory = move || Event::new(ty, source, 0u64);
    let calls = setup.shape.calls_per_event();
    let producers = setup.producers;
    // Each builder chain has its own type: one arm per (producer mode, consumers).
    macro_rules! consumers {
        ($builder:expr, $go:ident) => {
            if consumers == 1 {
                $go(
                    $builder.handle_events_with(handler()).build(),
                    producers,
                    drive,
                    done,
                    calls,
                )
            } else {
                $go(
                    $builder
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .handle_events_with(handler())
                        .build(),
                    producers,
                    drive,
                    done,
                    calls,
                )
            }
        };
    }
    if producers == 1 {
        consumers!(
            disruptor::build_single_producer(CAPACITY, factory, wait),
            go_single
        )
    } else {
        consumers!(
            disruptor::build_multi_producer(CAPACITY, factory, wait),
            go_multi
        )
    }
}

pub fn go_single<P: disruptor::Producer<DisruptorSlot> + Send, D: Drive>(
    p: P,
    _producers: usize,
    drive: D,
    done: &Done,
    calls: u64,
) -> D::Out {
    // Dropping the producer (when `drive` returns) joins the consumers.
    drive.drive(vec![Dis(p)], done, calls)
}

pub fn go_multi<P: disruptor::Producer<DisruptorSlot> + Clone + Send, D: Drive>(
    p: P,
    producers: usize,
    drive: D,
    done: &Done,
    calls: u64,
) -> D::Out {
    let mut all: Vec<Dis<P>> = (1..producers).map(|_| Dis(p.clone())).collect();
    all.push(Dis(p));
    // The last producer dropped joins the consumers.
    drive.drive(all, done, calls)
}

/// One bounded channel, or one per lane sharing [`CAPACITY`].
pub fn channel_pairs<T, R>(setup: &Setup, bounded: impl Fn(usize) -> (T, R)) -> Vec<(T, R)> {
    let n = if setup.shape == Shape::Partitioned {
        LANES
    } else {
        1
    };
    (0..n).map(|_| bounded(CAPACITY / n)).collect()
}

pub fn channel_system<D: Drive, T: Tx, R: Rx>(
    pairs: Vec<(T, R)>,
    setup: &Setup,
    done: &Arc<Done>,
    drive: D,
) -> D::Out {
    assert!(
        !matches!(setup.shape, Shape::FanOut { consumers } if consumers > 1),
        "a channel fans out on one consumer thread"
    );
    let (txs, rxs): (Vec<T>, Vec<R>) = pairs.into_iter().unzip();
    let filtered = rxs.len() > 1;
    let consumers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(k, rx)| {
            let mut sink = setup.competitor_sink(k, 1, filtered, done);
            std::thread::spawn(move || {
                while let Some(e) = rx.take() {
                    sink.on_event(&e);
                    // Drain what is there (at most a ring's worth), then report.
                    for _ in 1..CAPACITY {
                        let Some(e) = rx.try_take() else { break };
                        sink.on_event(&e);
                    }
                    sink.end_batch();
                }
            })
        })
        .collect();
    let producers = (0..setup.producers).map(|_| Chan(txs.clone())).collect();
    drop(txs);
    let out = drive.drive(producers, done, setup.shape.calls_per_event());
    for c in consumers {
        c.join().expect("consumer thread");
    }
    out
}
