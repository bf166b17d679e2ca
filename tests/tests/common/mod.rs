//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test file uses some of them

pub mod fleet;
pub mod logs;
pub mod password_rotation;
pub mod redis_server;
pub mod resp;
pub mod runs;
pub mod shared_limit;
pub mod silencing_proxy;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config};

/// Polls `future` once, as an executor would, and reports whether it is
/// done (the test then decides whether to drop it there).
pub fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls `future` up to `polls` times, advancing paused tokio time by 1 ms
/// after each pending poll, and drops it: its output if it completed.
/// The cancellation tests drop every future after k polls this way, for
/// k = 0, 1, 2, … until it completes.
pub async fn poll_then_drop<F: Future>(future: F, polls: u32) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    for _ in 0..polls {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Some(output);
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    None
}

/// A closed core breaker that opens after `failures` consecutive failures,
/// for `open_for`, with one half-open trial.
pub fn core_breaker(failures: u32, open_for: Duration) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(failures)
            .open_for(open_for.into())
            .half_open_permits(1)
            .build()
            .expect("valid config"),
    ))
}

/// The name the test harness gives `test`, a test function of the file
/// whose `module_path!()` is `module` (`suite::file` in a suite binary,
/// the crate alone in a binary of its own): for a test that runs itself
/// again in a child process with `--exact`.
pub fn harness_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_, file)) => format!("{file}::{test}"),
        None => test.to_owned(),
    }
}

/// Milliseconds since `start`.
pub fn ms_since(start: tokio::time::Instant) -> u128 {
    (tokio::time::Instant::now() - start).as_millis()
}

/// One `tracing` event as field name/value pairs (values as `Debug` text).
pub type Event = Vec<(String, String)>;

/// A subscriber that keeps every event's fields.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<Event>>>);

struct Visitor<'a>(&'a mut Event);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = vec![("level".to_owned(), event.metadata().level().to_string())];
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Capture {
    /// The process-wide capture, installed once as the global default
    /// subscriber. A per-test `set_default` subscriber loses events when
    /// another test thread registers the same callsite while it has no
    /// subscriber (tracing caches the callsite's interest as "never"); a
    /// global one sees every event. Tests tell their events apart by a
    /// field with a name unique to the test (e.g. the breaker's name).
    pub fn global() -> Capture {
        static GLOBAL: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let capture = Capture::default();
                tracing::subscriber::set_global_default(capture.clone())
                    .expect("no other global subscriber in the test binary");
                capture
            })
            .clone()
    }

    /// The events that have a field `name` equal to `value`.
    pub fn with(&self, name: &str, value: &str) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.iter().any(|(n, v)| n == name && v == value))
            .cloned()
            .collect()
    }
}

/// How many events so far (on the [global](Capture::global) capture,
/// installed by the first call) have a message containing `text`.
pub fn messages_containing(text: &str) -> usize {
    let events = Capture::global().0.lock().unwrap().clone();
    events
        .iter()
        .filter(|event| field(event, "message").is_some_and(|m| m.contains(text)))
        .count()
}

/// The value of field `name` in `event`.
pub fn field<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Checks a GCRA bound on admissions timed from outside: each admission
/// happened somewhere in its `(sent, received)` span, so for every start
/// `s_i` the admissions certainly inside `[s_i, r]` number at most
/// `burst + ⌊rate · (r − s_i)⌋ + extra` (`rate` per second). Returns the
/// largest count seen in any window.
pub fn assert_window_bound(
    admitted: &mut [(Duration, Duration)],
    burst: u64,
    rate: u64,
    extra: u64,
) {
    admitted.sort();
    let bound =
        |span: Duration| burst + extra + (u128::from(rate) * span.as_micros() / 1_000_000) as u64;
    for (i, &(from, _)) in admitted.iter().enumerate() {
        let mut ends: Vec<Duration> = admitted[i..].iter().map(|&(_, r)| r).collect();
        ends.sort();
        for (m, &end) in ends.iter().enumerate() {
            // Every end is after its own start, so after `from`.
            let span = end.saturating_sub(from);
            assert!(
                (m as u64) < bound(span),
                "{} admissions within {span:?}, bound {}",
                m + 1,
                bound(span)
            );
        }
    }
}
