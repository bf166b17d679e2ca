//! A "Redis" whose `TIME` answers something no clock reads: microseconds
//! past a second, a time past the year 9999, `u64::MAX` seconds. A
//! fleet round decides which instances' fields have expired by that
//! time, so it must not act on it: the round fails (counted in
//! `faults`, the report stale with the reply named) and sends nothing
//! after the `TIME`; no push, no read, no delete.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox_std::backend::{
    BackendError, FleetConfig, FleetPercentiles, RedisBackend, RedisConfig,
};
use fusebox_std::{Registry, TrackerConfig};

/// A fake Redis answering `TIME` with `secs` and `micros` (as bulk
/// strings, as Redis does), `PING` with `PONG`, anything else with `OK`;
/// the port and the names of the commands it received (but `CLIENT`).
async fn fake(secs: &str, micros: &str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let time = format!(
        "*2\r\n${}\r\n{secs}\r\n${}\r\n{micros}\r\n",
        secs.len(),
        micros.len()
    )
    .into_bytes();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let port = common::resp::serve(move |name| {
        // Not the client's own `CLIENT SETINFO` on connecting.
        if name != b"CLIENT" {
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(name).into_owned());
        }
        match name {
            b"TIME" => time.clone(),
            b"PING" => b"+PONG\r\n".to_vec(),
            _ => b"+OK\r\n".to_vec(),
        }
    })
    .await;
    (port, seen)
}

/// Fleet percentiles of a tracker "http" on the fake at `port`, with one
/// sample under "checkout" if `sampled` (a series to push), else none.
async fn fleet_on(port: u16, sampled: bool) -> FleetPercentiles {
    let registry = Registry::new();
    let config = TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    };
    let tracker = registry.tracker("http", config).unwrap();
    if sampled {
        drop(tracker.track_operation("checkout"));
    }
    let backend = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}")).timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect");
    FleetPercentiles::new(
        "http",
        tracker,
        &backend,
        FleetConfig::new("pod-a").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_no_clock_reads_fails_the_round_before_anything_is_sent() {
    let cases = [
        ("1700000000", "1000000"),
        ("1700000000", "18446744073709551615"),
        ("253402300800", "0"),
        ("18446744073709551615", "999999"),
    ];
    for (secs, micros) in cases {
        let (port, seen) = fake(secs, micros).await;
        let fleet = fleet_on(port, true).await;
        seen.lock().unwrap().clear();
        let err = fleet
            .sync()
            .await
            .expect_err(&format!("TIME {secs} {micros}"));
        assert!(matches!(err, BackendError::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains("TIME"), "{err}");
        let report = fleet.report();
        assert!(report.stale && !report.available, "{report:?}");
        assert_eq!(report.faults, 1, "{report:?}");
        let sent = seen.lock().unwrap().clone();
        assert_eq!(sent, ["TIME"], "TIME {secs} {micros}: sent {sent:?}");
    }
}

/// Its edges: the last microsecond of the year 9999 is a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_microsecond_of_9999_is_a_time() {
    let (port, seen) = fake("253402300799", "999999").await;
    let fleet = fleet_on(port, false).await;
    seen.lock().unwrap().clear();
    // No series: the round reads the time and has nothing else to do.
    fleet.sync().await.expect("a time");
    assert_eq!(seen.lock().unwrap().clone(), ["TIME"]);
}
