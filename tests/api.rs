//! The program a newcomer writes: a JSON bus from `Bus::builder()`, closures with
//! no type annotations, `?` in handlers, a typed bus, named subscriptions — and
//! what `?` makes of each error (permanent: dead-lettered at once; transient:
//! retried).

mod common;

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::wait_for;
use ringbus::codec::{DecodeError, EncodeError};
use ringbus::failure::{ErrorKind, FailureReason};
use ringbus::resilience::{DlqFilter, ManualClock, RetryPolicy};
use ringbus::{
    event_type, source, Bus, BusBuilder, Classify, Event, Execution, Handler, HandlerError,
    SubscribeOptions,
};
use serde::Deserialize;
use serde_json::json;

type TestResult = Result<(), Box<dyn Error>>;

#[derive(Deserialize)]
struct Order {
    amount: u64,
}

fn order(ty: &'static str, data: serde_json::Value) -> Event {
    Event::new(ringbus::EventType::new(ty), source!("shop"), data)
}

#[test]
fn json_bus_with_unannotated_closures() -> TestResult {
    let bus = Bus::builder().build()?;
    let seen = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));

    let s = seen.clone();
    bus.subscribe("order.*", move |e| {
        assert!(e.event_type.name().starts_with("order."));
        s.fetch_add(1, Ordering::Relaxed);
    })?;
    let t = total.clone();
    bus.subscribe("order.placed", move |e| -> Result<(), serde_json::Error> {
        let order: Order = serde_json::from_value(e.data.clone())?;
        t.fetch_add(order.amount, Ordering::Relaxed);
        Ok(())
    })?;

    let mut p = bus.publisher();
    p.publish(order("order.placed", json!({"amount": 30})))?;
    p.publish(order("order.placed", json!({"amount": 12})))?;
    p.publish(order("order.placed", json!({"amount": "lots"})))?; // does not parse
    p.publish(order("order.shipped", json!({})))?;
    p.publish(order("user.registered", json!({})))?;

    let report = bus.shutdown()?;
    assert_eq!(seen.load(Ordering::Relaxed), 4);
    assert_eq!(total.load(Ordering::Relaxed), 42);
    assert_eq!(report.counters.delivered, 4 + 2);
    assert_eq!(report.counters.failed, 1);
    assert_eq!(report.counters.retried, 0);
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
enum ShopEvent {
    Placed { order: u32, cents: u64 },
    Cancelled { order: u32 },
}

#[test]
fn typed_bus_with_a_struct_payload() -> TestResult {
    let bus = BusBuilder::<ShopEvent>::new().build()?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    bus.subscribe("order.>", move |e| {
        l.lock().unwrap().push(e.data.clone());
    })?;
    let mut p = bus.publisher();
    let placed = ShopEvent::Placed {
        order: 7,
        cents: 990,
    };
    let cancelled = ShopEvent::Cancelled { order: 7 };
    p.publish(Event::new(
        event_type!("order.placed"),
        source!("shop"),
        placed.clone(),
    ))?;
    p.publish(Event::new(
        event_type!("order.cancelled"),
        source!("shop"),
        cancelled.clone(),
    ))?;
    bus.shutdown()?;
    assert_eq!(*log.lock().unwrap(), [placed, cancelled]);
    Ok(())
}

struct Counter(Arc<AtomicU64>);

impl Handler for Counter {
    fn handle(&mut self, _event: &Event) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn every_subscription_has_a_readable_name() -> TestResult {
    let bus = Bus::builder().build()?;
    let counted = Arc::new(AtomicU64::new(0));
    let by_pattern = bus.subscribe("order.*", |_| ())?;
    let by_patterns = bus.subscribe(["order.placed", "user.>"], |_| ())?;
    let named = bus.subscribe_with("order.*", |_| (), SubscribeOptions::new().name("audit"))?;
    let all = bus.subscribe_all(|_| ())?;
    let typed = bus.subscribe_handler("order.*", Counter(counted.clone()))?;
    let typed_named = bus.subscribe_handler_with(
        "order.*",
        Counter(counted.clone()),
        SubscribeOptions::new().name("counter"),
    )?;
    let lanes = bus.subscribe_partitioned_with(
        "order.*",
        2,
        |_| Counter(counted.clone()),
        SubscribeOptions::new().name("lanes"),
    )?;

    let metrics = bus.metrics();
    let name_of = |id| -> String {
        let h = metrics
            .handlers
            .iter()
            .find(|h| h.subscription == id)
            .expect("listed");
        h.handler.to_string()
    };
    assert_eq!(name_of(by_pattern), "order.*");
    assert_eq!(name_of(by_patterns), "order.placed, user.>");
    assert_eq!(name_of(named), "audit");
    assert_eq!(name_of(all), ">");
    assert!(name_of(typed).ends_with("Counter"), "{}", name_of(typed));
    assert_eq!(name_of(typed_named), "counter");
    assert_eq!(name_of(lanes), "lanes");
    assert!(metrics
        .handlers
        .iter()
        .all(|h| !h.handler.contains("closure")));

    bus.publisher().publish(order("order.placed", json!({})))?;
    bus.shutdown()?;
    assert_eq!(counted.load(Ordering::Relaxed), 3);
    Ok(())
}

/// A bus on a manual clock, running handlers inline.
fn manual_bus() -> (Bus, ManualClock) {
    let clock = ManualClock::new();
    let bus = Bus::builder()
        .clock(clock.clone())
        .execution(Execution::Inline)
        .build()
        .unwrap();
    (bus, clock)
}

fn retry_three_times() -> SubscribeOptions {
    SubscribeOptions::new()
        .name("billing")
        .retry(RetryPolicy::fixed(Duration::from_millis(10), 3))
}

#[test]
fn a_permanent_error_is_dead_lettered_without_a_retry() -> TestResult {
    let (bus, _clock) = manual_bus();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "order.placed",
        move |e| -> Result<(), HandlerError> {
            c.fetch_add(1, Ordering::Relaxed);
            let order: Order = serde_json::from_value(e.data.clone())?;
            assert!(order.amount > 0);
            Ok(())
        },
        retry_three_times(),
    )?;
    bus.publisher()
        .publish(order("order.placed", json!({"amount": "lots"})))?;

    let letters = bus.dead_letters();
    wait_for(10, "the dead letter", || letters.len() == 1);
    let listed = letters.list(&DlqFilter::all());
    assert_eq!(&*listed[0].handler, "billing");
    assert_eq!(listed[0].attempts.len(), 1, "no retry");
    assert!(listed[0].attempts[0].error.contains("permanent"));
    let report = bus.shutdown()?;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(report.counters.retried, 0);
    assert_eq!(report.counters.dead_lettered, 1);
    Ok(())
}

#[test]
fn marking_an_error_permanent_dead_letters_it_without_a_retry() -> TestResult {
    let (bus, _clock) = manual_bus();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    bus.subscribe_with(
        "order.placed",
        move |e| -> Result<(), HandlerError> {
            c.fetch_add(1, Ordering::Relaxed);
            let qty = e.data["qty"].as_str().unwrap_or_default();
            let qty: u32 = qty.parse().permanent()?;
            assert!(qty > 0);
            Ok(())
        },
        retry_three_times(),
    )?;
    bus.publisher()
        .publish(order("order.placed", json!({"qty": "three"})))?;
    let letters = bus.dead_letters();
    wait_for(10, "the dead letter", || letters.len() == 1);
    assert_eq!(letters.list(&DlqFilter::all())[0].attempts.len(), 1);
    let report = bus.shutdown()?;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(report.counters.retried, 0);
    Ok(())
}

#[test]
fn a_transient_error_is_retried() -> TestResult {
    let (bus, clock) = manual_bus();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let sub = bus.subscribe_with(
        "order.placed",
        move |_| -> Result<(), std::io::Error> {
            // Refused twice, then through.
            if c.fetch_add(1, Ordering::Relaxed) < 2 {
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            }
            Ok(())
        },
        retry_three_times(),
    )?;
    // The clock may move only once the retry is scheduled (10 ms after the
    // failure, on this clock): the handler counts its call before it fails.
    let scheduled = |n: u64| {
        bus.metrics()
            .handler(sub, 0)
            .is_some_and(|h| h.retries == n)
    };
    bus.publisher()
        .publish(order("order.placed", json!({"amount": 1})))?;
    wait_for(10, "the first retry scheduled", || scheduled(1));
    clock.advance(Duration::from_millis(10));
    wait_for(10, "the second retry scheduled", || scheduled(2));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    clock.advance(Duration::from_millis(10));
    wait_for(10, "the second retry", || {
        calls.load(Ordering::Relaxed) == 3
    });
    let report = bus.shutdown()?;
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(report.counters.retried, 2);
    assert_eq!(report.counters.delivered, 1);
    assert_eq!(report.counters.dead_lettered, 0);
    Ok(())
}

#[test]
fn failure_policy_closure_needs_no_annotation() -> TestResult {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = failures.clone();
    let bus = Bus::builder()
        .execution(Execution::Inline)
        .failure_policy(move |fail| {
            let transient = fail.reason.is_transient();
            f.lock().unwrap().push((fail.handler.to_owned(), transient));
        })
        .build()?;
    bus.subscribe("order.placed", |_| -> Result<(), HandlerError> {
        Err(HandlerError::permanent("no such customer"))
    })?;
    bus.publisher().publish(order("order.placed", json!({})))?;
    bus.shutdown()?;
    assert_eq!(
        *failures.lock().unwrap(),
        [("order.placed".to_owned(), false)]
    );

    // A typed bus's policy sees its typed events.
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let bus = BusBuilder::<u64>::new()
        .execution(Execution::Inline)
        .failure_policy(move |fail| {
            s.fetch_add(fail.event.data, Ordering::Relaxed);
        })
        .build()?;
    bus.subscribe("n", |_| -> Result<(), HandlerError> {
        Err(HandlerError::transient("busy"))
    })?;
    bus.publisher()
        .publish(Event::new(event_type!("n"), source!("t"), 5u64))?;
    bus.shutdown()?;
    assert_eq!(seen.load(Ordering::Relaxed), 5);
    Ok(())
}

// ---- what `?` makes of an error -----------------------------------------------

fn kind_of(e: impl Into<HandlerError>) -> ErrorKind {
    e.into().kind()
}

/// A reader that fails as a socket does.
struct Reset;

impl std::io::Read for Reset {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::ConnectionReset.into())
    }
}

#[test]
fn serde_json_errors_are_permanent_unless_reading_failed() {
    let syntax = serde_json::from_str::<u32>("{").unwrap_err();
    let data = serde_json::from_str::<u32>("\"x\"").unwrap_err();
    assert_eq!(kind_of(syntax), ErrorKind::Permanent);
    assert_eq!(kind_of(data), ErrorKind::Permanent);
    let io = serde_json::from_reader::<_, u32>(Reset).unwrap_err();
    assert!(io.is_io());
    assert_eq!(kind_of(io), ErrorKind::Transient);
}

#[test]
fn messagepack_errors_are_permanent_unless_reading_failed() {
    let reserved = rmp_serde::from_slice::<u32>(&[0xc1]).unwrap_err();
    assert_eq!(kind_of(reserved), ErrorKind::Permanent);
    let empty = rmp_serde::from_slice::<u32>(&[]).unwrap_err();
    assert_eq!(kind_of(empty), ErrorKind::Permanent, "truncated input");
    let reset = rmp_serde::from_read::<_, u32>(Reset).unwrap_err();
    assert_eq!(kind_of(reset), ErrorKind::Transient);
    let unencodable = rmp_serde::encode::Error::Syntax("no".into());
    assert_eq!(kind_of(unencodable), ErrorKind::Permanent);
}

#[test]
fn codec_errors_are_permanent() {
    let truncated = DecodeError::Truncated {
        offset: 3,
        needed: 1,
    };
    assert_eq!(kind_of(truncated), ErrorKind::Permanent);
    let too_many = EncodeError::TooManyEvents { count: 9, max: 8 };
    assert_eq!(kind_of(too_many), ErrorKind::Permanent);
}

#[test]
fn io_errors_are_transient() {
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(kind_of(refused), ErrorKind::Transient);
}

#[test]
fn a_boxed_error_is_classified_by_its_contents() {
    type Boxed = Box<dyn Error + Send + Sync>;
    let other: Boxed = "x".parse::<u32>().unwrap_err().into();
    assert_eq!(kind_of(other), ErrorKind::Transient);
    let json: Boxed = serde_json::from_str::<u32>("{").unwrap_err().into();
    assert_eq!(kind_of(json), ErrorKind::Permanent);
    let handler: Boxed = HandlerError::permanent("no such customer").into();
    let back = HandlerError::from(handler);
    assert_eq!(back.kind(), ErrorKind::Permanent);
    assert_eq!(back.message(), "no such customer");
    assert!(back.source().is_none(), "not wrapped in itself");
}

#[test]
fn classify_marks_the_error_and_keeps_it_as_the_source() {
    let parse = "x".parse::<u32>();
    let e = parse.clone().permanent().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert_eq!(e.message(), parse.clone().unwrap_err().to_string());
    let source = e.source().expect("the parse error");
    assert!(source.downcast_ref::<std::num::ParseIntError>().is_some());
    assert_eq!(e.to_string(), format!("permanent error: {}", e.message()));

    // A serde error from a flaky feed can be marked worth retrying.
    let json = serde_json::from_str::<u32>("{").transient().unwrap_err();
    assert!(json.is_transient());
    assert_eq!(Ok::<u8, std::io::Error>(1).permanent().unwrap(), 1);

    // A HandlerError changes kind and keeps its message, with no extra layer.
    let e = Err::<(), _>(HandlerError::transient("busy"))
        .permanent()
        .unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::Permanent, "busy"));
    assert!(e.source().is_none());
    let e = HandlerError::new(ErrorKind::Transient, HandlerError::permanent("x"));
    assert!(e.is_transient());
}

#[test]
fn handler_error_is_a_std_error() {
    fn takes_std_error(_: &dyn Error) {}
    let e = HandlerError::transient("busy");
    takes_std_error(&e);
    assert!(e.source().is_none());
    let boxed: Box<dyn Error + Send + Sync> = Box::new(e);
    assert_eq!(boxed.to_string(), "transient error: busy");
    // The reason a failure policy sees says the same.
    let reason = FailureReason::Error(HandlerError::permanent("gone"));
    assert_eq!(reason.to_string(), "permanent error: gone");
    assert!(!reason.is_transient());
}

/// Every verb takes a name with its patterns (`pattern::named`), whatever the
/// payload: here one that is not `Clone`, so `SubscribeOptions` is out of reach.
#[test]
fn every_verb_takes_a_name_with_its_patterns() {
    use ringbus::pattern::named;
    struct NotClone(#[allow(dead_code)] u32);
    let bus = ringbus::BusBuilder::<NotClone>::new().build().unwrap();
    let plain = bus.subscribe(named("plain", "a.*"), |_e| ()).unwrap();
    let all = bus.subscribe(named("all", ">"), |_e| ()).unwrap();
    // A factory returning closures would otherwise be named `{{closure}}`.
    let lanes = bus
        .subscribe_partitioned(named("lanes", "a.b"), 2, |_lane| {
            |_e: &ringbus::Event<NotClone>| -> Result<(), ringbus::HandlerError> { Ok(()) }
        })
        .unwrap();
    struct H;
    impl ringbus::Handler<NotClone> for H {
        fn handle(&mut self, _e: &ringbus::Event<NotClone>) -> Result<(), ringbus::HandlerError> {
            Ok(())
        }
    }
    let typed = bus.subscribe_handler(named("typed", "a.b"), H).unwrap();
    let m = bus.metrics();
    for (id, lane, name) in [
        (plain, 0, "plain"),
        (all, 0, "all"),
        (lanes, 0, "lanes"),
        (lanes, 1, "lanes"),
        (typed, 0, "typed"),
    ] {
        assert_eq!(&*m.handler(id, lane).unwrap().handler, name);
    }
    // Unnamed: the patterns' text, never `{{closure}}`.
    let unnamed = bus.subscribe(["a.b", "c.>"], |_e| ()).unwrap();
    assert_eq!(
        &*bus.metrics().handler(unnamed, 0).unwrap().handler,
        "a.b, c.>"
    );
    bus.shutdown().unwrap();
}
