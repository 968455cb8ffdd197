//! Sagas: the seed's payment flow with a deadline on a manual clock; restarts
//! between every pair of steps send nothing twice and fire the deadline once;
//! a step whose commands were not sent is sent again, with the same ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringbus::cqrs::{saga, CommandId, CommandMeta, ProcessManager, SagaContext, SagaRecord};
use ringbus::resilience::{ManualClock, RetryPolicy};
use ringbus::store::checkpoint::{CheckpointStore, InMemoryCheckpoints};
use ringbus::store::{EventStore, ExpectedVersion, InMemoryStore, Recorded, Status, StreamId};
use ringbus::{event_type, source, Bus, BusBuilder, Event, HandlerError};
use serde::{Deserialize, Serialize};

const DEADLINE: Duration = Duration::from_secs(60);
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Shop {
    OrderPlaced { order: u32, amount: u64 },
    PaymentProcessed { order: u32 },
    PaymentFailed { order: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Command {
    RequestPayment { order: u32, amount: u64 },
    ConfirmOrder { order: u32 },
    CancelOrder { order: u32, why: String },
    SendEmail { order: u32 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Checkout {
    order: u32,
    paid: bool,
}

struct Payment;

impl ProcessManager<Shop> for Payment {
    type State = Checkout;
    type Command = Command;
    fn name(&self) -> &str {
        "payment"
    }
    fn correlate(&self, r: &Recorded<Shop>) -> Option<String> {
        Some(match r.event.data {
            Shop::OrderPlaced { order, .. }
            | Shop::PaymentProcessed { order }
            | Shop::PaymentFailed { order } => order.to_string(),
        })
    }
    fn starts(&self, r: &Recorded<Shop>) -> bool {
        matches!(r.event.data, Shop::OrderPlaced { .. })
    }
    fn handle(
        &self,
        s: &mut Checkout,
        r: &Recorded<Shop>,
        cx: &mut SagaContext<Command>,
    ) -> Result<(), HandlerError> {
        match r.event.data {
            Shop::OrderPlaced { order, amount } => {
                s.order = order;
                cx.send(Command::RequestPayment { order, amount });
                cx.schedule("payment-timeout", PAYMENT_TIMEOUT);
            }
            Shop::PaymentProcessed { order } => {
                s.paid = true;
                cx.send(Command::ConfirmOrder { order });
                cx.send(Command::SendEmail { order });
                cx.cancel("payment-timeout");
                cx.complete();
            }
            Shop::PaymentFailed { order } => {
                cx.send(Command::CancelOrder {
                    order,
                    why: "payment failed".into(),
                });
                cx.complete();
            }
        }
        Ok(())
    }
    fn on_deadline(
        &self,
        s: &mut Checkout,
        deadline: &str,
        cx: &mut SagaContext<Command>,
    ) -> Result<(), HandlerError> {
        assert_eq!(deadline, "payment-timeout");
        cx.send(Command::CancelOrder {
            order: s.order,
            why: "payment timed out".into(),
        });
        cx.complete();
        Ok(())
    }
}

/// What the "services" received: each command id once (a re-send with a known
/// id is recognised, as the Repository does), and every delivery.
#[derive(Default)]
struct Services {
    executed: Mutex<Vec<Command>>,
    by_id: Mutex<HashMap<CommandId, Command>>,
    deliveries: Mutex<u32>,
}

impl Services {
    fn receive(&self, meta: CommandMeta, command: Command) -> Result<(), HandlerError> {
        *self.deliveries.lock().unwrap() += 1;
        let mut by_id = self.by_id.lock().unwrap();
        match by_id.get(&meta.id()) {
            Some(known) => assert_eq!(*known, command, "one id, two commands"),
            None => {
                by_id.insert(meta.id(), command.clone());
                self.executed.lock().unwrap().push(command);
            }
        }
        Ok(())
    }
    fn executed(&self) -> Vec<Command> {
        self.executed.lock().unwrap().clone()
    }
}

struct World {
    bus: Bus<Shop>,
    store: Arc<InMemoryStore<Shop>>,
    sagas: Arc<InMemoryStore<SagaRecord>>,
    checkpoints: Arc<InMemoryCheckpoints>,
    /// Keeps no checkpoint: every start is as after a crash.
    crashy: bool,
    clock: ManualClock,
    services: Arc<Services>,
    _feed: ringbus::store::LiveFeed,
}

impl World {
    fn new() -> World {
        let bus = BusBuilder::<Shop>::new().capacity(1024).build().unwrap();
        let store = Arc::new(InMemoryStore::new());
        let feed = store.publish_to(&bus);
        World {
            bus,
            store,
            sagas: Arc::new(InMemoryStore::new()),
            checkpoints: Arc::new(InMemoryCheckpoints::new()),
            crashy: false,
            clock: ManualClock::new(),
            services: Arc::default(),
            _feed: feed,
        }
    }

    fn start(&self) -> ringbus::cqrs::SagaHandle<Checkout> {
        let services = self.services.clone();
        let s = saga(self.store.clone(), &self.bus, self.sagas.clone(), Payment)
            .clock(self.clock.clone())
            .dispatch(move |meta, command| services.receive(meta, command));
        if self.crashy {
            s.checkpoints(Amnesia)
        } else {
            s.checkpoints(self.checkpoints.clone())
        }
        .start()
        .unwrap()
    }

    fn append(&self, order: u32, e: Shop) {
        let stream = StreamId::new(format!("order-{order}")).unwrap();
        let event = Event::new(event_type!("shop.event"), source!("shop"), e);
        self.store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .unwrap();
    }

    fn settle<T>(&self, saga: &ringbus::cqrs::SagaHandle<T>) {
        assert!(
            saga.wait_for(self.store.head().unwrap(), DEADLINE),
            "{:?}",
            saga.status()
        );
    }

    /// Waits until the services executed `n` commands.
    fn wait_executed(&self, n: usize) {
        let deadline = std::time::Instant::now() + DEADLINE;
        while self.services.executed().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                self.services.executed()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn placed_then_paid_confirms_emails_and_cancels_the_deadline() {
    let w = World::new();
    let s = w.start();
    w.append(
        1,
        Shop::OrderPlaced {
            order: 1,
            amount: 30,
        },
    );
    w.settle(&s);
    assert_eq!(s.deadlines("1").len(), 1);
    w.append(1, Shop::PaymentProcessed { order: 1 });
    w.settle(&s);
    assert_eq!(
        w.services.executed(),
        [
            Command::RequestPayment {
                order: 1,
                amount: 30
            },
            Command::ConfirmOrder { order: 1 },
            Command::SendEmail { order: 1 }
        ]
    );
    assert_eq!(
        s.state("1"),
        Some((
            Checkout {
                order: 1,
                paid: true
            },
            true
        ))
    );
    assert!(s.deadlines("1").is_empty());
    // The deadline does not fire after completion.
    w.clock.advance(PAYMENT_TIMEOUT * 2);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(w.services.executed().len(), 3);
    // Events for a completed instance are ignored; events never starting one too.
    w.append(1, Shop::PaymentFailed { order: 1 });
    w.append(2, Shop::PaymentProcessed { order: 2 });
    w.settle(&s);
    assert_eq!(w.services.executed().len(), 3);
    assert_eq!(s.instances(), 1);
}

#[test]
fn a_failed_payment_cancels_the_order() {
    let w = World::new();
    let s = w.start();
    w.append(
        4,
        Shop::OrderPlaced {
            order: 4,
            amount: 9,
        },
    );
    w.append(4, Shop::PaymentFailed { order: 4 });
    w.settle(&s);
    assert_eq!(
        w.services.executed()[1],
        Command::CancelOrder {
            order: 4,
            why: "payment failed".into()
        }
    );
}

#[test]
fn the_payment_deadline_cancels_the_order_once() {
    let w = World::new();
    let s = w.start();
    w.append(
        7,
        Shop::OrderPlaced {
            order: 7,
            amount: 5,
        },
    );
    w.settle(&s);
    w.clock.advance(PAYMENT_TIMEOUT - Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(w.services.executed().len(), 1, "not due yet");
    w.clock.advance(Duration::from_secs(1));
    w.wait_executed(2);
    assert_eq!(
        w.services.executed()[1],
        Command::CancelOrder {
            order: 7,
            why: "payment timed out".into()
        }
    );
    assert!(s.state("7").unwrap().1, "completed");
    w.clock.advance(PAYMENT_TIMEOUT);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(w.services.executed().len(), 2, "fires once");
}

/// Checkpoints that keep nothing, as if every run crashed before saving: each
/// start reads the whole store again (every event is seen again) and treats
/// every recorded step as perhaps unsent.
struct Amnesia;

impl CheckpointStore for Amnesia {
    fn load(&self, _: &str) -> std::io::Result<Option<ringbus::store::Position>> {
        Ok(None)
    }
    fn save(&self, _: &str, _: ringbus::store::Position) -> std::io::Result<()> {
        Ok(())
    }
    fn clear(&self, _: &str) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn restarts_between_every_pair_of_steps_send_nothing_twice_and_fire_the_deadline_once() {
    restarts(false);
}

#[test]
fn restarts_as_after_crashes_resend_with_the_same_ids_and_execute_nothing_twice() {
    restarts(true);
}

fn restarts(crashy: bool) {
    let mut w = World::new();
    w.crashy = crashy;
    // Order 1 pays, order 2 fails, order 3 times out; a restart after each step.
    type Step = Box<dyn Fn(&World)>;
    let steps: Vec<Step> = vec![
        Box::new(|w| {
            w.append(
                1,
                Shop::OrderPlaced {
                    order: 1,
                    amount: 10,
                },
            )
        }),
        Box::new(|w| {
            w.append(
                2,
                Shop::OrderPlaced {
                    order: 2,
                    amount: 20,
                },
            )
        }),
        Box::new(|w| {
            w.append(
                3,
                Shop::OrderPlaced {
                    order: 3,
                    amount: 30,
                },
            )
        }),
        Box::new(|w| w.append(1, Shop::PaymentProcessed { order: 1 })),
        Box::new(|w| w.append(2, Shop::PaymentFailed { order: 2 })),
        Box::new(|w| w.clock.advance(PAYMENT_TIMEOUT)),
    ];
    for step in &steps {
        let s = w.start();
        step(&w);
        w.settle(&s);
        s.stop();
    }
    // The deadline came due while the saga was stopped: re-armed at start.
    let s = w.start();
    w.wait_executed(7);
    w.settle(&s);
    std::thread::sleep(Duration::from_millis(50));
    let executed = w.services.executed();
    assert_eq!(executed.len(), 7, "{executed:?}");
    for c in [
        Command::RequestPayment {
            order: 1,
            amount: 10,
        },
        Command::RequestPayment {
            order: 2,
            amount: 20,
        },
        Command::RequestPayment {
            order: 3,
            amount: 30,
        },
        Command::ConfirmOrder { order: 1 },
        Command::SendEmail { order: 1 },
        Command::CancelOrder {
            order: 2,
            why: "payment failed".into(),
        },
        Command::CancelOrder {
            order: 3,
            why: "payment timed out".into(),
        },
    ] {
        assert_eq!(
            executed.iter().filter(|e| **e == c).count(),
            1,
            "{c:?} in {executed:?}"
        );
    }
    // One step per trigger, however often the events were seen.
    for (order, steps) in [(1, 2), (2, 2), (3, 2)] {
        let stream = StreamId::new(format!("saga-payment-{order}")).unwrap();
        assert_eq!(
            w.sagas.stream_version(&stream).unwrap(),
            steps,
            "order {order}"
        );
    }
    let deliveries = *w.services.deliveries.lock().unwrap();
    if crashy {
        // Without checkpoints every start sees every event again and sends
        // the recorded commands again, with the same ids, and the services
        // recognise them.
        assert!(deliveries > 7, "{deliveries}");
    } else {
        // A stopped saga saved its sent mark: nothing was even sent twice.
        assert_eq!(deliveries, 7);
    }
}

#[test]
fn a_step_whose_commands_failed_is_recorded_once_and_its_commands_sent_again_with_the_same_ids() {
    let w = World::new();
    let failures = Arc::new(Mutex::new(2));
    let ids: Arc<Mutex<Vec<CommandId>>> = Arc::default();
    let (f, i, services) = (failures.clone(), ids.clone(), w.services.clone());
    let s = saga(w.store.clone(), &w.bus, w.sagas.clone(), Payment)
        .clock(w.clock.clone())
        .retry(RetryPolicy::immediate(5))
        .dispatch(move |meta, command| {
            i.lock().unwrap().push(meta.id());
            let mut left = f.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(HandlerError::transient("payment service down"));
            }
            services.receive(meta, command)
        })
        .start()
        .unwrap();
    w.append(
        9,
        Shop::OrderPlaced {
            order: 9,
            amount: 1,
        },
    );
    w.settle(&s);
    assert_eq!(s.status(), Status::Live);
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "same id on every attempt"
    );
    assert_eq!(w.services.executed().len(), 1);
    // One record, not three.
    let stream = StreamId::new("saga-payment-9").unwrap();
    assert_eq!(w.sagas.stream_version(&stream).unwrap(), 1);
}

#[test]
fn commands_left_unsent_by_a_failed_saga_are_sent_at_the_next_start() {
    let w = World::new();
    let s = saga(w.store.clone(), &w.bus, w.sagas.clone(), Payment)
        .clock(w.clock.clone())
        .checkpoints(w.checkpoints.clone())
        .dispatch(|_, _| Err(HandlerError::permanent("no route")))
        .start()
        .unwrap();
    w.append(
        5,
        Shop::OrderPlaced {
            order: 5,
            amount: 2,
        },
    );
    let deadline = std::time::Instant::now() + DEADLINE;
    while !matches!(s.status(), Status::Failed { .. }) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(s);
    assert!(w.services.executed().is_empty());
    let s = w.start();
    w.settle(&s);
    assert_eq!(
        w.services.executed(),
        [Command::RequestPayment {
            order: 5,
            amount: 2
        }]
    );
    assert_eq!(s.deadlines("5").len(), 1);
}

/// Panics in its first deadline call, sends `Command::SendEmail` in the next.
struct PanickyReminder(Arc<Mutex<bool>>);

impl ProcessManager<Shop> for PanickyReminder {
    type State = u32;
    type Command = Command;
    fn name(&self) -> &str {
        "reminder"
    }
    fn correlate(&self, r: &Recorded<Shop>) -> Option<String> {
        match r.event.data {
            Shop::OrderPlaced { order, .. } => Some(order.to_string()),
            _ => None,
        }
    }
    fn starts(&self, _: &Recorded<Shop>) -> bool {
        true
    }
    fn handle(
        &self,
        order: &mut u32,
        r: &Recorded<Shop>,
        cx: &mut SagaContext<Command>,
    ) -> Result<(), HandlerError> {
        if let Shop::OrderPlaced { order: o, .. } = r.event.data {
            *order = o;
        }
        cx.schedule("remind", Duration::from_secs(60));
        Ok(())
    }
    fn on_deadline(
        &self,
        order: &mut u32,
        _: &str,
        cx: &mut SagaContext<Command>,
    ) -> Result<(), HandlerError> {
        let mut first = self.0.lock().unwrap();
        if std::mem::take(&mut *first) {
            drop(first);
            panic!("bug in on_deadline");
        }
        cx.send(Command::SendEmail { order: *order });
        Ok(())
    }
}

#[test]
fn a_panicking_deadline_handler_is_retried_and_the_saga_goes_on() {
    let w = World::new();
    let services = w.services.clone();
    let s = saga(
        w.store.clone(),
        &w.bus,
        w.sagas.clone(),
        PanickyReminder(Arc::new(Mutex::new(true))),
    )
    .clock(w.clock.clone())
    .dispatch(move |meta, command| services.receive(meta, command))
    .start()
    .unwrap();
    w.append(
        8,
        Shop::OrderPlaced {
            order: 8,
            amount: 1,
        },
    );
    w.settle(&s);
    w.clock.advance(Duration::from_secs(61));
    // The panic is caught; the timer tries again a second later.
    w.wait_executed(1);
    assert_eq!(w.services.executed(), [Command::SendEmail { order: 8 }]);
    assert!(s.deadlines("8").is_empty());
    // And it still handles events.
    w.append(
        9,
        Shop::OrderPlaced {
            order: 9,
            amount: 1,
        },
    );
    w.settle(&s);
    assert_eq!(s.deadlines("9").len(), 1);
}

#[test]
fn deadlines_of_many_instances_fire_in_due_order_each_once() {
    let w = World::new();
    let s = w.start();
    // Orders placed a minute apart; each has its own payment deadline.
    for order in [21, 22, 23] {
        w.append(order, Shop::OrderPlaced { order, amount: 1 });
        w.settle(&s);
        w.clock.advance(Duration::from_secs(60));
    }
    // Order 22 pays: its deadline goes.
    w.append(22, Shop::PaymentProcessed { order: 22 });
    w.settle(&s);
    assert!(s.deadlines("22").is_empty());
    // 15 minutes after order 21: only its deadline is due.
    w.clock.advance(PAYMENT_TIMEOUT - Duration::from_secs(180));
    w.wait_executed(3 + 2 + 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        w.services.executed().len(),
        6,
        "{:?}",
        w.services.executed()
    );
    w.clock.advance(Duration::from_secs(120));
    w.wait_executed(7);
    let cancelled: Vec<u32> = w
        .services
        .executed()
        .into_iter()
        .filter_map(|c| match c {
            Command::CancelOrder { order, .. } => Some(order),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, [21, 23]);
    w.clock.advance(PAYMENT_TIMEOUT);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(w.services.executed().len(), 7);
}
