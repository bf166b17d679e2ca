//! Bulkheads in the registry: shared slots, conflicts, configuration files,
//! and their figures in the health report and the Prometheus text.

use std::time::Duration;

use fusebox_std::policy::Overflow;
use fusebox_std::registry::{RegistryConfig, RegistryError};
use fusebox_std::Registry;

#[test]
fn every_clone_shares_the_slots_and_the_report_counts_them() {
    let registry = Registry::new();
    let a = registry.bulkhead("db", 2, Overflow::Reject).unwrap();
    let b = registry.bulkhead("db", 2, Overflow::Reject).unwrap();
    let _one = a.try_acquire().unwrap();
    let _two = b.try_acquire().unwrap();
    assert!(a.try_acquire().is_err());
    assert!(b.try_acquire().is_err());
    let report = registry.health().bulkheads["db"];
    assert_eq!(
        (
            report.max_concurrent,
            report.in_use,
            report.queued,
            report.rejected
        ),
        (2, 2, 0, 2)
    );
    let text = registry.to_prometheus();
    for line in [
        "fusebox_bulkhead_max_concurrent{name=\"db\"} 2\n",
        "fusebox_bulkhead_in_use{name=\"db\"} 2\n",
        "fusebox_bulkhead_queued{name=\"db\"} 0\n",
        "fusebox_bulkhead_rejected_total{name=\"db\"} 2\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let rejected = parsed
        .samples
        .iter()
        .find(|s| s.metric == "fusebox_bulkhead_rejected_total")
        .unwrap();
    assert!(
        matches!(rejected.value, prometheus_parse::Value::Counter(v) if (v - 2.0).abs() < f64::EPSILON)
    );
}

#[test]
fn other_settings_under_the_same_name_are_a_conflict() {
    let registry = Registry::new();
    registry.bulkhead("db", 2, Overflow::Reject).unwrap();
    let queued = Overflow::Queue {
        max_queued: 4,
        max_wait: Duration::from_millis(10),
    };
    assert!(matches!(
        registry.bulkhead("db", 2, queued),
        Err(RegistryError::Conflict { .. })
    ));
    assert!(matches!(
        registry.bulkhead("bad name", 2, Overflow::Reject),
        Err(RegistryError::InvalidName { .. })
    ));
}

/// A bulkhead that would refuse every call is refused by name, not
/// registered (found by a hostile review: zero slots were accepted).
#[test]
fn settings_that_refuse_everything_are_invalid_config() {
    let registry = Registry::new();
    let err = registry.bulkhead("db", 0, Overflow::Reject).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bulkheads.db: a bulkhead needs at least one slot"
    );
    assert!(registry.health().bulkheads.is_empty());
    // The name stays free for a valid bulkhead.
    assert_eq!(
        registry
            .bulkhead("db", 1, Overflow::Reject)
            .unwrap()
            .max_concurrent(),
        1
    );
}

/// `max_queued = 0` in a file means what its docs say: refuse at once.
#[test]
fn a_file_queue_of_no_places_refuses_at_once() {
    let config =
        RegistryConfig::from_toml("[bulkheads.db]\nmax_concurrent = 1\nmax_queued = 0\n").unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let db = registry.bulkhead("db", 1, Overflow::Reject).unwrap();
    assert_eq!(db.overflow(), Overflow::Reject);
}

#[test]
fn a_configuration_file_declares_bulkheads_and_names_bad_fields() {
    let config = RegistryConfig::from_toml(
        r#"
        [bulkheads.db]
        max_concurrent = 4
        max_queued = 8
        max_wait = "25ms"

        [bulkheads.search]
        max_concurrent = 2
        "#,
    )
    .unwrap();
    let registry = Registry::from_config(&config).unwrap();
    let db = registry
        .bulkhead(
            "db",
            4,
            Overflow::Queue {
                max_queued: 8,
                max_wait: Duration::from_millis(25),
            },
        )
        .unwrap();
    assert_eq!(db.metrics().in_use, 0);
    assert_eq!(registry.health().bulkheads["search"].max_concurrent, 2);

    let bad = RegistryConfig::from_toml(
        r#"
        [bulkheads.zero]
        max_concurrent = 0

        [bulkheads.wait_alone]
        max_concurrent = 1
        max_wait = "1s"

        [bulkheads.missing]
        max_queued = 3

        [bulkheads.no_wait]
        max_concurrent = 1
        max_queued = 3
        max_wait = "0s"

        [bulkheads.wait_without_places]
        max_concurrent = 1
        max_queued = 0
        max_wait = "5s"
        "#,
    )
    .unwrap();
    let message = Registry::from_config(&bad).unwrap_err().to_string();
    for field in [
        "bulkheads.zero.max_concurrent",
        "bulkheads.wait_alone.max_wait",
        "bulkheads.missing.max_concurrent",
        "bulkheads.no_wait.max_wait",
        "bulkheads.wait_without_places.max_wait",
    ] {
        assert!(message.contains(field), "{field} not named in: {message}");
    }
}
