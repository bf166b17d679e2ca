//! The memory backend against the Redis script on the same random
//! operation sequences, decision for decision (the `backend` module's
//! contract: under unchanged quotas both decide as the core bucket), over
//! what one key sees in production and the lockstep tests of
//! `peer_redis_limits.rs` do not mix: several keys and limiter names at
//! once, each request checking its own subset of a limiter's named rules
//! in its own order (a rule's state is shared by every request that
//! names it: one Redis key per rule name, one memory bucket per name and
//! quota), peeks (`n = 0`), requests over the burst, and keys that share
//! a prefix or differ only in escaping (`a:b` and `a%3Ab`).
//!
//! Time: Redis at a realistic Unix time or at the top of the script's
//! range (`now + burst·T` near 2^53 µs); the memory backend's clock,
//! independently, at zero or where the core bucket's arrival-time word
//! (`now · 2 · scale`, in half units, modulo 2^64) wraps for one of the
//! case's rules, so that a schedule crosses the wrap.

use std::cell::Cell;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Backend, BackendError, Decision, MemoryBackend, RedisBackend, RedisConfig, Rule, Rules,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::runtime::Runtime;

const T0: u64 = 1_800_000_000_000_000;
const SKEW_US: u64 = 60_000_000;
const LUA_MAX: u64 = (1 << 53) - 1;
const SEC: u64 = 1_000_000;
const NAMES: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 4] = ["a:b", "a%3Ab", "", "{x}"];
const LIMITERS: [&str; 2] = ["api", "api_b"];

/// A quota with its core scale (`tokens / gcd(tokens, period µs)`,
/// clamped to 65 536): quotas from one a day to a million a second, some
/// at the finest scale.
fn quota() -> impl Strategy<Value = Quota> {
    let tokens = prop_oneof![
        Just(1u32),
        Just(7),
        Just(10),
        Just(65_537),
        Just(1_000_003),
        1u32..=100
    ];
    let period = prop_oneof![
        Just(SEC),
        Just(60 * SEC),
        Just(86_400 * SEC),
        1u64..=3 * SEC
    ];
    (tokens, period, 1u32..=30).prop_filter_map("representable", |(t, p, b)| {
        let q = Quota::new(t, fusebox::Duration::from_micros(p))
            .ok()?
            .with_burst(b)
            .ok()?;
        Rule::new("r", q).ok().map(|_| q)
    })
}

fn scale(q: &Quota) -> u64 {
    let (mut a, mut b) = (u64::from(q.tokens()), q.period().as_micros());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    (u64::from(q.tokens()) / a).min(1 << 16)
}

fn earn(q: &Quota, n: u32) -> u64 {
    (u128::from(n) * u128::from(q.period().as_micros())).div_ceil(u128::from(q.tokens())) as u64
}

/// What a decision says, without where it was made.
fn said(d: &Decision) -> (bool, Duration, u64, Duration, usize) {
    (d.allowed, d.retry_after, d.remaining, d.reset, d.rule)
}

/// One step: a key, a limiter, the rules named (a bitmask of `NAMES`,
/// never empty) in an order (a rotation), `n` in `0..=burst + 1`, and the
/// time step in thousandths of the shortest refill.
type Step = (usize, usize, u8, usize, u32, u32);

fn step() -> impl Strategy<Value = Step> {
    (
        0..KEYS.len(),
        0..LIMITERS.len(),
        1u8..8,
        0usize..3,
        any::<u32>(),
        prop_oneof![Just(0u32), 0u32..=50, 0u32..=1_500],
    )
}

/// What the steps met, over all cases.
#[derive(Clone, Copy, Default)]
struct Seen {
    admitted: u32,
    refused: u32,
    peeks: u32,
    over_burst: u32,
    past_wrap: u32,
}

/// Both backends, each on its own clock.
struct Backends {
    redis_rt: Runtime,
    redis: RedisBackend,
    memory_rt: Runtime,
    memory: MemoryBackend,
}

/// One case: its quotas, and where each clock starts.
struct Case {
    quotas: Vec<Quota>,
    prefix: String,
    redis_base: u64,
    memory_base: u64,
    memory_wrap: bool,
    finest: u64,
}

impl Case {
    /// The rules named by `mask`, rotated by `rotation`.
    fn rules(&self, mask: u8, rotation: usize) -> Rules {
        let mut picked: Vec<Rule> = (0..3)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| Rule::new(NAMES[i], self.quotas[i]).unwrap())
            .collect();
        let len = picked.len();
        picked.rotate_left(rotation % len);
        Rules::new(picked).unwrap()
    }

    /// One request on both backends, `at` µs into the case: the same
    /// decision, or the same error (a request over the burst).
    fn compare(
        &self,
        on: &Backends,
        (limiter, key, rules, n): (&str, &str, &Rules, u32),
        at: u64,
        seen: &Cell<Seen>,
    ) -> Result<(), TestCaseError> {
        let limiter = format!("{}{limiter}", self.prefix);
        let redis =
            on.redis_rt.block_on(
                on.redis
                    .decide_at(&limiter, key, rules, n, self.redis_base + at),
            );
        let memory = on
            .memory_rt
            .block_on(on.memory.decide(&limiter, key, rules, n));
        let context = format!(
            "{:?} {limiter} {key:?} {rules:?} n {n} at {at}",
            self.quotas
        );
        let mut counts = seen.get();
        match (redis, memory) {
            (Ok(redis), Ok(memory)) => {
                prop_assert_eq!(said(&redis), said(&memory), "{}", context);
                if n == 0 {
                    counts.peeks += 1;
                } else if redis.allowed {
                    counts.admitted += 1;
                } else {
                    counts.refused += 1;
                }
                let now = u128::from(self.memory_base + at);
                if self.memory_wrap && now * 2 * u128::from(self.finest) >= 1 << 64 {
                    counts.past_wrap += 1;
                }
            }
            (Err(redis), Err(memory)) => {
                prop_assert_eq!(&redis, &memory, "{}", context);
                let over = matches!(redis, BackendError::InsufficientCapacity { .. });
                prop_assert!(over, "{}: {:?}", context, redis);
                counts.over_burst += 1;
            }
            (redis, memory) => {
                return Err(TestCaseError::fail(format!(
                    "{context}: redis {redis:?}, memory {memory:?}"
                )));
            }
        }
        seen.set(counts);
        Ok(())
    }
}

#[test]
fn memory_and_redis_agree_on_mixed_keys_rule_subsets_and_peeks() {
    let server = RedisServer::start();
    let redis_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = redis_rt
        .block_on(RedisBackend::connect(
            RedisConfig::new(server.url()).timeout(Duration::from_secs(2)),
        ))
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let redis = Cell::new(Some((redis_rt, redis)));
    let case = Cell::new(0u32);
    let seen = Cell::new(Seen::default());
    let cases = (
        proptest::collection::vec(quota(), 3),
        proptest::collection::vec(step(), 1..80),
        any::<bool>(),
        any::<bool>(),
    );
    runner
        .run(&cases, |(quotas, steps, redis_top, memory_wrap)| {
            case.set(case.get() + 1);
            let longest = quotas.iter().map(|q| earn(q, q.burst())).max().unwrap();
            let shortest = quotas.iter().map(|q| earn(q, q.burst())).min().unwrap();
            let last = LUA_MAX - SKEW_US - longest - 1;
            // The memory clock a little before `now · 2 · scale` passes
            // 2^64 for the finest scale of the case (and, before that, the
            // stretch where an arrival time could land on it).
            let finest = quotas.iter().map(scale).max().unwrap();
            let wrap = (1u64 << 63) / finest;
            let this = Case {
                prefix: format!("c{}_", case.get()),
                redis_base: if redis_top {
                    last - 4 * longest.max(SEC)
                } else {
                    T0
                },
                memory_base: if memory_wrap {
                    wrap - longest - 2 - 2 * shortest
                } else {
                    0
                },
                memory_wrap,
                finest,
                quotas,
            };
            let (redis_rt, redis_backend) = redis.take().unwrap();
            let memory_rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let memory = memory_rt.block_on(async { MemoryBackend::new(1_000) });
            memory_rt.block_on(tokio::time::advance(Duration::from_micros(
                this.memory_base,
            )));
            let on = Backends {
                redis_rt,
                redis: redis_backend,
                memory_rt,
                memory,
            };
            let mut outcome = Ok(());
            let mut at = 0u64;
            for (key, limiter, mask, rotation, raw, dt) in steps {
                let mut step = (u128::from(shortest + 1) * u128::from(dt) / 1_000) as u64;
                // No decision in the stretch where a new arrival time could
                // land exactly on the wrap (`now·scale + ahead = 2^63`):
                // the core stores that one scaled unit later (0 means a
                // bucket never used, its module docs), which the script,
                // computing without a wrap, does not. The schedule jumps
                // over it instead, so drained buckets are read across it.
                let landing = wrap - longest - 2..=wrap + 2;
                if memory_wrap && landing.contains(&(this.memory_base + at + step)) {
                    step = wrap + 3 - this.memory_base - at;
                }
                if this.redis_base + at + step > last {
                    break;
                }
                at += step;
                on.memory_rt
                    .block_on(tokio::time::advance(Duration::from_micros(step)));
                let rules = this.rules(mask, rotation);
                let n = raw % (rules.min_burst() + 2);
                let request = (LIMITERS[limiter], KEYS[key], &rules, n);
                outcome = this.compare(&on, request, at, &seen);
                if outcome.is_err() {
                    break;
                }
            }
            redis.set(Some((on.redis_rt, on.redis)));
            outcome
        })
        .unwrap();
    // Every kind of step was met, and decisions past the wrap were made.
    let seen = seen.get();
    assert!(
        seen.admitted > 100 && seen.refused > 100,
        "{}",
        seen.admitted
    );
    assert!(seen.peeks > 10 && seen.over_burst > 10, "{}", seen.peeks);
    assert!(seen.past_wrap > 100, "{}", seen.past_wrap);
}
