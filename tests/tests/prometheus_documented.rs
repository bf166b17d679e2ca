//! Every family `Registry::to_prometheus` writes is in the table of the
//! `prometheus` module's docs, with the type the table gives it: the
//! table is the contract a dashboard or an alert is written against.
//! Counters end in `_total` (DESIGN.md), and no other family does.
//! The bulkheads' four families were written and not listed (found by a
//! hostile review). The fleet breakers' families need a Redis to exist
//! and are checked by their own unit test.

use std::collections::BTreeMap;
use std::sync::Arc;

use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::cache::LruCache;
use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
use fusebox_std::policy::Overflow;
use fusebox_std::registry::CacheSource;
use fusebox_std::tower::rate_limit::key;
use fusebox_std::tower::RateLimitLayer;
use fusebox_std::{Registry, TrackerConfig};

/// The module's source, whose `//!` lines hold the table.
const SOURCE: &str = include_str!("../../std-adapter/src/prometheus.rs");

/// `fusebox_a_{b,c}_total` → `fusebox_a_b_total`, `fusebox_a_c_total`.
fn expand(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if open < close => pattern[open + 1..close]
            .split(',')
            .flat_map(|part| {
                expand(&format!(
                    "{}{part}{}",
                    &pattern[..open],
                    &pattern[close + 1..]
                ))
            })
            .collect(),
        _ => vec![pattern.to_owned()],
    }
}

/// The table: every family name its first column spells, with the
/// type its second column starts with.
fn documented() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in SOURCE.lines() {
        let Some(row) = line.strip_prefix("//! | `fusebox_") else {
            continue;
        };
        let row = format!("`fusebox_{row}");
        let cells: Vec<&str> = row.split(" | ").collect();
        let kind = cells[1].split([' ', ',']).next().unwrap().to_owned();
        for name in cells[0].split('`').skip(1).step_by(2) {
            for family in expand(name) {
                out.insert(family, kind.clone());
            }
        }
    }
    out
}

struct Lru(std::sync::Mutex<LruCache<u32, u32, 4>>);

impl CacheSource for Lru {
    fn cache_metrics(&self) -> fusebox::cache::CacheMetrics {
        self.0.lock().unwrap().metrics()
    }
}

#[tokio::test(start_paused = true)]
async fn every_family_written_is_documented_with_its_type() {
    let table = documented();
    assert!(table.len() > 40, "the table was not read: {table:?}");

    let registry = Arc::new(Registry::new());
    let consecutive = Config::builder().consecutive_failures(3).build().unwrap();
    registry.breaker("db", consecutive).unwrap();
    registry
        .limiter("api", Quota::per_second(10).unwrap())
        .unwrap();
    let _layer = RateLimitLayer::keyed_from_registry::<String, 64, _>(
        &registry,
        "per_key",
        Quota::per_second(5).unwrap(),
        FullPolicy::Reject,
        key::header("x-api-key", 64),
    )
    .unwrap();
    registry
        .concurrent_cache::<u32, u32, 4, 2>("sessions")
        .unwrap();
    let lru = Arc::new(Lru(std::sync::Mutex::new(LruCache::new())));
    registry.register_cache("users", lru).unwrap();
    let tracker = registry
        .tracker(
            "http",
            TrackerConfig {
                sample_rate: 1.0,
                ..TrackerConfig::default()
            },
        )
        .unwrap();
    drop(tracker.track_operation("GET /"));
    registry.bulkhead("pool", 4, Overflow::Reject).unwrap();
    let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    let rules = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    let shared = Arc::new(
        RedisLimiter::builder("shared", rules, backend)
            .build()
            .unwrap(),
    );
    registry.register_redis_limiter(&shared).unwrap();

    let text = registry.to_prometheus();
    let mut written = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                written.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} typed twice"
            );
        }
    }
    assert!(written.len() > 40, "{text}");
    let mut missing = Vec::new();
    for (name, kind) in &written {
        // DESIGN.md: counters end in `_total`, and nothing else does.
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
        match table.get(name) {
            Some(documented) => assert_eq!(documented, kind, "{name}"),
            None => missing.push(name.as_str()),
        }
    }
    assert!(
        missing.is_empty(),
        "written but not documented: {missing:?}"
    );
}
