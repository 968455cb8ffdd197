//! Nothing is silent: events nobody subscribed to are counted, breaker transitions
//! name their lane, histogram sampling is a setting and an empty histogram renders
//! without `NaN` — and the library itself never writes to standard error (its
//! diagnostics are `tracing` events, with the `tracing` feature).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, wait_for};
use ringbus::resilience::{BreakerConfig, BreakerState, BreakerTransition};
use ringbus::{
    BuildErrorKind, Bus, BusBuilder, Event, EventType, Execution, Handler, HandlerError, Source,
    SubscribeOptions,
};

fn ok(_: &Event<u64>) -> Result<(), HandlerError> {
    Ok(())
}

/// Publishes one event of each type and waits until all are dispatched.
fn publish_types(bus: &Bus<u64>, types: &[&str]) {
    let mut p = bus.publisher();
    let before = bus.stats().dispatched;
    for (i, ty) in types.iter().enumerate() {
        p.publish(event(ty, i as u64)).unwrap();
    }
    let want = before + types.len() as u64;
    wait_for(10, "events dispatched", || bus.stats().dispatched >= want);
}

#[test]
fn events_no_subscription_matches_are_counted() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    bus.subscribe("order.placed", ok).unwrap();
    // The mistake the counter is for: "*" is one token, not "everything".
    bus.subscribe("*", ok).unwrap();
    publish_types(
        &bus,
        &["order.placed", "order.paid", "ping", "user.signed.up"],
    );

    let stats = bus.stats();
    assert_eq!(stats.dispatched, 4);
    assert_eq!(
        stats.unmatched, 2,
        "order.paid and user.signed.up: {stats:?}"
    );
    assert_eq!(stats.delivered, 2, "order.placed, and ping through \"*\"");
    let metrics = bus.metrics();
    assert_eq!(metrics.bus.counters.unmatched, 2);
    let text = metrics.to_prometheus();
    assert!(
        text.contains(
            "# TYPE ringbus_events_unmatched_total counter\nringbus_events_unmatched_total 2\n"
        ),
        "{text}"
    );
    let report = bus.shutdown().unwrap();
    assert_eq!(report.counters.unmatched, 2);
}

#[test]
fn all_events_through_gt_or_subscribe_all_leave_nothing_unmatched() {
    let types = ["order.placed", "ping", "user.signed.up"];
    let gt = BusBuilder::<u64>::new().build().unwrap();
    gt.subscribe(">", ok).unwrap();
    publish_types(&gt, &types);
    assert_eq!(gt.stats().unmatched, 0);
    assert_eq!(gt.stats().delivered, 3);

    let all = BusBuilder::<u64>::new().build().unwrap();
    all.subscribe_all(ok).unwrap();
    publish_types(&all, &types);
    assert_eq!(all.stats().unmatched, 0);

    // With no subscription at all, every event is unmatched.
    let none = BusBuilder::<u64>::new().build().unwrap();
    publish_types(&none, &types);
    assert_eq!(none.shutdown().unwrap().counters.unmatched, 3);
}

#[test]
fn an_event_unmatched_before_a_subscription_is_matched_after_it() {
    let bus = BusBuilder::<u64>::new().build().unwrap();
    publish_types(&bus, &["late.joiner"]);
    assert_eq!(bus.stats().unmatched, 1);
    bus.subscribe("late.*", ok).unwrap();
    publish_types(&bus, &["late.joiner"]);
    let stats = bus.stats();
    assert_eq!((stats.unmatched, stats.delivered), (1, 1));
}

#[test]
fn breaker_transitions_name_the_lane_of_a_partitioned_subscription() {
    const LANES: usize = 4;
    let seen: Arc<Mutex<Vec<(String, BreakerTransition)>>> = Arc::default();
    let s = seen.clone();
    let bus = BusBuilder::<u64>::new()
        .execution(Execution::Inline)
        // Events behind an open breaker go to the dead-letter queue at shutdown.
        .retry_drain_timeout(Duration::ZERO)
        .on_breaker_change(move |_sub, name, t| s.lock().unwrap().push((name.to_owned(), t)))
        .build()
        .unwrap();
    // Every lane's handler fails and remembers its lane; one failure opens a breaker.
    let failed_lanes: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let factory = |lane: usize| {
        let failed = failed_lanes.clone();
        move |_: &Event<u64>| -> Result<(), HandlerError> {
            failed.lock().unwrap().insert(lane as u32);
            Err(HandlerError::permanent("down"))
        }
    };
    let options =
        SubscribeOptions::new()
            .name("lanes")
            .circuit_breaker(BreakerConfig::consecutive_failures(
                1,
                Duration::from_secs(3600),
            ));
    bus.subscribe_partitioned_with("work", LANES, factory, options)
        .unwrap();
    let mut p = bus.publisher();
    for i in 0..64u64 {
        p.publish(event("work", i).with_subject(format!("customer-{i}")))
            .unwrap();
    }
    bus.shutdown().unwrap();

    let failed = failed_lanes.lock().unwrap().clone();
    assert!(
        failed.len() > 1,
        "64 subjects reached only lanes {failed:?}"
    );
    let seen = seen.lock().unwrap();
    let opened: BTreeSet<u32> = seen
        .iter()
        .filter(|(name, t)| {
            name == "lanes" && t.from == BreakerState::Closed && t.to == BreakerState::Open
        })
        .map(|(_, t)| t.lane)
        .collect();
    assert_eq!(
        opened, failed,
        "one Closed → Open per failing lane, each naming its lane"
    );
    assert_eq!(seen.len(), failed.len(), "{seen:?}");
}

#[test]
fn histogram_sampling_is_a_setting() {
    let timed = |every: Option<u32>, calls: u64| {
        let mut builder = BusBuilder::<u64>::new().execution(Execution::Inline);
        if let Some(n) = every {
            builder = builder.metrics_sample_every(n);
        }
        let bus = builder.build().unwrap();
        let id = bus.subscribe("tick", ok).unwrap();
        let types = vec!["tick"; calls as usize];
        publish_types(&bus, &types);
        wait_for(10, "calls delivered", || bus.stats().delivered == calls);
        let m = bus.metrics();
        let h = m.handler(id, 0).unwrap();
        assert_eq!(h.handler_time_ns.count, h.latency_ns.count);
        (h.handler_time_ns.count, m.to_prometheus())
    };
    assert_eq!(timed(Some(1), 5).0, 5, "every call");
    assert_eq!(timed(Some(2), 6).0, 3, "every second call");
    // The default times one call in 256: three calls leave the histograms empty,
    // and an empty histogram renders without quantiles, never as NaN.
    let (count, text) = timed(None, 3);
    assert_eq!(count, 0);
    assert!(!text.contains("NaN"), "{text}");
    assert!(
        !text.contains("ringbus_handler_duration_seconds{"),
        "quantiles of an empty histogram in\n{text}"
    );
    assert!(
        text.contains("ringbus_handler_duration_seconds_count{"),
        "{text}"
    );

    for bad in [0, 3, 100, u32::MAX] {
        let err = BusBuilder::<u64>::new()
            .metrics_sample_every(bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(err.kind(), BuildErrorKind::SampleEveryNotPowerOfTwo(n) if *n == bad),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
    }
}

#[test]
fn metrics_off_records_no_histogram_whatever_the_sampling() {
    let bus = BusBuilder::<u64>::new()
        .metrics(false)
        .metrics_sample_every(1)
        .build()
        .unwrap();
    let id = bus.subscribe("tick", ok).unwrap();
    publish_types(&bus, &["tick", "tick"]);
    let m = bus.metrics();
    assert_eq!(m.handler(id, 0).unwrap().handler_time_ns.count, 0);
    assert_eq!(m.bus.batch_size.count, 0);
    assert!(!m.to_prometheus().contains("NaN"));
}

/// A handler that fails in every way ringbus catches: an error, a panic, and a
/// panic in each hook.
struct Troublemaker;

impl Handler<u64> for Troublemaker {
    fn handle(&mut self, e: &Event<u64>) -> Result<(), HandlerError> {
        match e.data {
            0 => Err(HandlerError::permanent("an error")),
            _ => panic!("a handler panic"),
        }
    }
    fn on_start(&mut self) {
        panic!("on_start panic");
    }
    fn on_batch_end(&mut self) {
        panic!("on_batch_end panic");
    }
    fn on_shutdown(&mut self) {
        panic!("on_shutdown panic");
    }
}

/// The child half of [`the_library_writes_nothing_to_stderr`]: run in its own
/// process with a silent panic hook, so that anything on its standard error was
/// written by ringbus itself.
fn silent_child() {
    std::panic::set_hook(Box::new(|_| {}));
    // The default failure policy (LogFailures), hook panics, a breaker listener
    // that panics.
    let bus = BusBuilder::<u64>::new()
        .retry_drain_timeout(Duration::ZERO)
        .on_breaker_change(|_, _, _| panic!("breaker listener panic"))
        .build()
        .unwrap();
    bus.subscribe_handler("trouble", Troublemaker).unwrap();
    bus.subscribe_with(
        "trouble",
        |_: &Event<u64>| -> Result<(), HandlerError> { Err(HandlerError::transient("down")) },
        SubscribeOptions::new().circuit_breaker(BreakerConfig::consecutive_failures(
            1,
            Duration::from_secs(3600),
        )),
    )
    .unwrap();
    // The pattern mistake the tracing warning is about.
    bus.subscribe("*", ok).unwrap();
    let mut p = bus.publisher();
    for i in 0..3 {
        p.publish(Event::new(
            EventType::new("trouble"),
            Source::new("child"),
            i,
        ))
        .unwrap();
    }
    let report = bus.shutdown().unwrap();
    let c = report.counters;
    assert!(c.failed >= 4 && c.panicked == 2, "{c:?}");

    // A failure policy that panics.
    let policy_ran = Arc::new(AtomicBool::new(false));
    let ran = policy_ran.clone();
    let bus = BusBuilder::<u64>::new()
        .failure_policy(move |_: &ringbus::failure::Failure<'_, u64>| {
            ran.store(true, SeqCst);
            panic!("failure policy panic");
        })
        .build()
        .unwrap();
    bus.subscribe_handler("trouble", Troublemaker).unwrap();
    bus.publisher().publish(event("trouble", 0)).unwrap();
    bus.shutdown().unwrap();
    assert!(policy_ran.load(SeqCst));
    println!("silent_child: every path ran");
}

/// Set in the child process this test starts.
const CHILD: &str = "RINGBUS_SILENT_CHILD";

/// Runs every path that used to print in a child process (this same test, with
/// [`CHILD`] set) and checks the child's standard error stays empty.
#[test]
fn the_library_writes_nothing_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        silent_child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "the_library_writes_nothing_to_stderr",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("silent_child: every path ran"),
        "the child did not run:\n{stdout}"
    );
    assert_eq!(stderr, "", "ringbus wrote to standard error");
}

/// With the `tracing` feature, what the library used to print arrives as
/// `tracing` events.
#[cfg(feature = "tracing")]
mod traced {
    use super::*;
    use std::fmt::Write as _;
    use std::sync::OnceLock;
    use tracing::field::{Field, Visit};
    use tracing::{span, Level, Metadata, Subscriber};

    static EVENTS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

    /// Records every event as its level and `name=value` fields.
    struct Recorder;

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            EVENTS
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields.0));
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    /// Installs the recorder for the whole process (events come from the
    /// dispatcher and pool threads) and returns the events containing `needle`.
    fn recorded(needle: &str) -> Vec<(Level, String)> {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            tracing::subscriber::set_global_default(Recorder).expect("no other subscriber")
        });
        EVENTS
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| f.contains(needle))
            .cloned()
            .collect()
    }

    #[test]
    fn the_default_failure_policy_reports_through_tracing() {
        recorded("");
        let bus = BusBuilder::<u64>::new().build().unwrap();
        bus.subscribe(
            "traced.fail",
            |e: &Event<u64>| -> Result<(), HandlerError> {
                match e.data {
                    0 => Err(HandlerError::permanent("traced error")),
                    _ => panic!("traced panic"),
                }
            },
        )
        .unwrap();
        let mut p = bus.publisher();
        p.publish(event("traced.fail", 0)).unwrap();
        p.publish(event("traced.fail", 1)).unwrap();
        bus.shutdown().unwrap();
        let events = recorded("event_type=traced.fail");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].0, Level::WARN);
        assert!(events[0].1.contains("traced error"), "{events:?}");
        assert_eq!(events[1].0, Level::ERROR);
        assert!(events[1].1.contains("traced panic"), "{events:?}");
    }

    #[test]
    fn a_bare_star_pattern_warns() {
        recorded("");
        ringbus::pattern::Pattern::parse("*").unwrap();
        let warnings = recorded("pattern=*");
        assert!(
            warnings
                .iter()
                .any(|(level, f)| *level == Level::WARN && f.contains("\">\"")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_panicking_hook_is_a_warning() {
        recorded("");
        struct Hooked;
        impl Handler<u64> for Hooked {
            fn handle(&mut self, _: &Event<u64>) -> Result<(), HandlerError> {
                Ok(())
            }
            fn on_shutdown(&mut self) {
                panic!("traced on_shutdown panic");
            }
        }
        let bus = BusBuilder::<u64>::new().build().unwrap();
        bus.subscribe_handler_with(
            "traced.hook",
            Hooked,
            SubscribeOptions::new().name("traced-hooked"),
        )
        .unwrap();
        bus.shutdown().unwrap();
        let events = recorded("handler=traced-hooked");
        assert!(
            events
                .iter()
                .any(|(level, f)| *level == Level::WARN && f.contains("hook=on_shutdown")),
            "{events:?}"
        );
    }
}
