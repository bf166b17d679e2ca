//! Scenarios of the test suites of Redis rate limiters that fusebox's
//! shared limiter is a peer of, re-expressed against fusebox's documented
//! contract (the `backend` module's docs, `Decision`, `Degrade`,
//! `RedisLimiter`), on a real
//! redis-server and, where the contract is the same, on the
//! `MemoryBackend` too, decision for decision:
//!
//! * go-redis/redis_rate (GCRA in a Lua script): `AllowN` tables (tokens
//!   left, reset-after), `n = 0` peeks that write nothing, retry-after
//!   never longer than the time to earn the tokens, over-burst requests;
//! * brandur/redis-cell (`CL.THROTTLE`): its case table of limit,
//!   remaining, reset-after and retry-after at fixed instants;
//! * animir/node-rate-limiter-flexible (`RateLimiterRedis`): concurrent
//!   consumers of one key, and its insurance limiter while Redis is down
//!   (here `Degrade::Local`), Redis restarted and losing its state;
//! * throttled's GCRA store tests: a client that waits exactly the named
//!   retry-after is admitted, one a microsecond earlier is not, long idle
//!   periods, and times at the top of the script's range (2^53 µs).
//!
//! Deterministic schedules go through `RedisBackend::decide_at` (the
//! script's time given) and a `MemoryBackend` on a paused tokio clock;
//! the real-time tests use quotas whose refill (an hour) no scheduling
//! delay can turn into an admission.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Backend, BackendError, Decision, Degrade, MemoryBackend, RedisBackend, RedisConfig,
    RedisLimiter, Rule, Rules, Source, MAX_REFILL,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// A realistic Unix time in µs (2027).
const T0: u64 = 1_800_000_000_000_000;
/// The script's skew allowance (a Redis clock going back this far).
const SKEW_US: u64 = 60_000_000;
/// 2^53 - 1: Lua numbers are exact integers up to here.
const LUA_MAX: u64 = (1 << 53) - 1;
const SEC: u64 = 1_000_000;

fn real_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url()).timeout(Duration::from_secs(2))
}

/// The Redis script at given instants: `base + at` µs.
struct OnRedis {
    rt: Runtime,
    backend: RedisBackend,
}

impl OnRedis {
    fn new(server: &RedisServer) -> Self {
        let rt = real_runtime();
        let backend = rt
            .block_on(RedisBackend::connect(config(server)))
            .expect("connect");
        Self { rt, backend }
    }

    fn decide(&self, key: &str, rules: &Rules, n: u32, now: u64) -> Result<Decision, BackendError> {
        self.rt
            .block_on(self.backend.decide_at("peer", key, rules, n, now))
    }

    fn raw(&self, args: &[&str]) -> redis::Value {
        let mut conn = self.backend.connection();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        self.rt
            .block_on(cmd.query_async::<redis::Value>(&mut conn))
            .unwrap()
    }
}

/// A `MemoryBackend` on a paused tokio clock: `at` µs after its creation.
struct OnMemory {
    rt: Runtime,
    backend: MemoryBackend,
    now: Cell<u64>,
}

impl OnMemory {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let backend = rt.block_on(async { MemoryBackend::new(1_000) });
        Self {
            rt,
            backend,
            now: Cell::new(0),
        }
    }

    fn decide(&self, key: &str, rules: &Rules, n: u32, at: u64) -> Result<Decision, BackendError> {
        assert!(at >= self.now.get(), "memory time only goes forward");
        let step = at - self.now.get();
        self.now.set(at);
        self.rt.block_on(async {
            tokio::time::advance(Duration::from_micros(step)).await;
            self.backend.decide("peer", key, rules, n).await
        })
    }
}

/// What a decision says, without where it was made.
fn said(d: &Decision) -> (bool, u64, u64, u64, usize) {
    (
        d.allowed,
        d.retry_after.as_micros() as u64,
        d.remaining,
        d.reset.as_micros() as u64,
        d.rule,
    )
}

/// One step of a case table: at `at` µs, `n` tokens; the decision's
/// `(allowed, retry_after µs, remaining, reset µs)`, or `None` for a
/// request larger than the burst.
type Step = (u64, u32, Option<(bool, u64, u64, u64)>);

fn run_table(
    what: &str,
    decide: &dyn Fn(u32, u64) -> Result<Decision, BackendError>,
    burst: u32,
    table: &[Step],
) {
    for (i, &(at, n, want)) in table.iter().enumerate() {
        let got = decide(n, at);
        match want {
            Some((allowed, retry, remaining, reset)) => {
                let d = got.unwrap_or_else(|e| panic!("{what} step {i}: {e:?}"));
                assert_eq!(
                    (d.allowed, d.retry_after.as_micros() as u64, d.remaining),
                    (allowed, retry, remaining),
                    "{what} step {i} (at {at} µs, n {n}): {d:?}"
                );
                assert_eq!(
                    d.reset.as_micros() as u64,
                    reset,
                    "{what} step {i} (at {at} µs, n {n}): reset, {d:?}"
                );
            }
            None => assert_eq!(
                got,
                Err(BackendError::InsufficientCapacity {
                    requested: n,
                    burst
                }),
                "{what} step {i}"
            ),
        }
    }
}

/// redis-cell's `it_rate_limits` table: a limit of 5 (its `max_burst` 4
/// is fusebox's burst 5) at 1/s. Its `retry_after = -1` when admitted is
/// fusebox's zero; a zero-volume request is an admitted peek.
#[test]
fn redis_cell_case_table_on_both_backends() {
    let quota = Quota::per_second(1).unwrap().with_burst(5).unwrap();
    let rules = Rules::single("per_second", quota).unwrap();
    let ms = 1_000;
    let table: &[Step] = &[
        // Never more than the burst at once: no wait helps.
        (0, 6, None),
        (0, 1, Some((true, 0, 4, SEC))),
        (0, 1, Some((true, 0, 3, 2 * SEC))),
        (0, 1, Some((true, 0, 2, 3 * SEC))),
        (0, 1, Some((true, 0, 1, 4 * SEC))),
        (0, 1, Some((true, 0, 0, 5 * SEC))),
        (0, 1, Some((false, SEC, 0, 5 * SEC))),
        (3_000 * ms, 1, Some((true, 0, 2, 3 * SEC))),
        (3_100 * ms, 1, Some((true, 0, 1, 3_900 * ms))),
        (4_000 * ms, 1, Some((true, 0, 1, 4 * SEC))),
        (8_000 * ms, 1, Some((true, 0, 4, SEC))),
        (9_500 * ms, 1, Some((true, 0, 4, SEC))),
        // A zero-volume request peeks.
        (9_500 * ms, 0, Some((true, 0, 4, SEC))),
        (9_500 * ms, 2, Some((true, 0, 2, 3 * SEC))),
        // Larger than what is left: refused, nothing taken.
        (9_500 * ms, 5, Some((false, 3 * SEC, 2, 3 * SEC))),
        (9_500 * ms, 0, Some((true, 0, 2, 3 * SEC))),
        // Waiting the named 3 s exactly admits the same request; one µs
        // earlier does not.
        (12_500 * ms - 1, 5, Some((false, 1, 4, 1))),
        (12_500 * ms, 5, Some((true, 0, 0, 5 * SEC))),
    ];
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    run_table(
        "redis",
        &|n, at| redis.decide("cell", &rules, n, T0 + at),
        5,
        table,
    );
    let memory = OnMemory::new();
    run_table(
        "memory",
        &|n, at| memory.decide("cell", &rules, n, at),
        5,
        table,
    );
}

/// redis_rate's `TestAllow`, `TestAllowN_IncrementZero` and the
/// `AllowN(1000)` step: 10/s with a burst of 10. A peek (`n = 0`) on a key
/// never seen writes nothing (idle keys cost no memory), and a peek on a
/// live key leaves its expiry alone.
#[test]
fn redis_rate_allow_n_tables_on_both_backends() {
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let ms = 1_000;
    let table: &[Step] = &[
        (0, 0, Some((true, 0, 10, 0))),
        (0, 1, Some((true, 0, 9, 100 * ms))),
        (0, 0, Some((true, 0, 9, 100 * ms))),
        (0, 2, Some((true, 0, 7, 300 * ms))),
        (0, 7, Some((true, 0, 0, SEC))),
        (0, 0, Some((true, 0, 0, SEC))),
        (0, 1_000, None),
        (0, 11, None),
        (0, 10, Some((false, SEC, 0, SEC))),
        (0, 1, Some((false, 100 * ms, 0, SEC))),
        (100 * ms - 1, 1, Some((false, 1, 0, SEC - 100 * ms + 1))),
        (100 * ms, 1, Some((true, 0, 0, SEC))),
        // Half a token's time later: still none whole.
        (150 * ms, 0, Some((true, 0, 0, 950 * ms))),
        // A long idle: full, and the reset is zero.
        (3_600 * SEC, 0, Some((true, 0, 10, 0))),
    ];
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    // The first peek, alone: no key written.
    let d = redis.decide("peek", &rules, 0, T0).unwrap();
    assert_eq!(said(&d), (true, 0, 10, 0, 0));
    assert_eq!(
        redis.raw(&["DBSIZE"]),
        redis::Value::Int(0),
        "a peek writes nothing"
    );
    run_table(
        "redis",
        &|n, at| redis.decide("allow_n", &rules, n, T0 + at),
        10,
        table,
    );
    // A peek and a refusal leave the stored state and its expiry alone.
    assert!(redis.decide("ttl", &rules, 3, T0).unwrap().allowed);
    let key = "fusebox:{peer:ttl}:per_second";
    let before = redis.raw(&["GET", key]);
    assert!(matches!(before, redis::Value::BulkString(_)), "{before:?}");
    assert!(redis.decide("ttl", &rules, 0, T0 + 1).unwrap().allowed);
    assert!(!redis.decide("ttl", &rules, 8, T0 + 2).unwrap().allowed);
    assert_eq!(redis.raw(&["GET", key]), before);

    let memory = OnMemory::new();
    run_table(
        "memory",
        &|n, at| memory.decide("allow_n", &rules, n, at),
        10,
        table,
    );
}

/// Quotas from one a day to a million a second, exact and rounded to the
/// finest scale, bursts of 1 to 60.
fn quota() -> impl Strategy<Value = Quota> {
    let tokens = prop_oneof![
        Just(1u32),
        Just(3),
        Just(7),
        Just(10),
        Just(65_537),
        Just(1_000_003),
        1u32..=200
    ];
    let period = prop_oneof![
        Just(SEC),
        Just(60 * SEC),
        Just(3_600 * SEC),
        Just(86_400 * SEC),
        Just(7),
        1u64..=5 * SEC,
    ];
    (tokens, period, prop_oneof![1u32..=4, 1u32..=60]).prop_filter_map(
        "representable",
        |(t, p, b)| {
            let q = Quota::new(t, fusebox::Duration::from_micros(p))
                .ok()?
                .with_burst(b)
                .ok()?;
            Rule::new("r", q).ok().map(|_| q)
        },
    )
}

/// Time to earn `n` tokens of `q`, rounded up (µs).
fn earn(q: &Quota, n: u32) -> u64 {
    (u128::from(n) * u128::from(q.period().as_micros())).div_ceil(u128::from(q.tokens())) as u64
}

/// One key on both backends in lockstep: Redis at `base + at`, memory at
/// `at`.
struct Lockstep<'a> {
    redis: &'a OnRedis,
    memory: OnMemory,
    key: String,
    rules: Rules,
    base: u64,
}

impl Lockstep<'_> {
    /// The decision, the same on both (`None`: the same error on both).
    fn decide(&self, n: u32, at: u64) -> Result<Option<Decision>, TestCaseError> {
        let r = self.redis.decide(&self.key, &self.rules, n, self.base + at);
        let m = self.memory.decide(&self.key, &self.rules, n, at);
        let context = format!("{:?} n {n} at {at}", self.rules);
        match (r, m) {
            (Ok(r), Ok(m)) => {
                prop_assert_eq!(r.source, Source::Redis);
                prop_assert_eq!(said(&r), said(&m), "{}", context);
                Ok(Some(r))
            }
            (Err(r), Err(m)) => {
                prop_assert_eq!(&r, &m, "{}", context);
                Ok(None)
            }
            (r, m) => Err(TestCaseError::fail(format!(
                "{context}: redis {r:?}, memory {m:?}"
            ))),
        }
    }
}

/// Random quotas (one to three rules on a key), random schedules: the two
/// backends make the same decision at every step (allowed, wait, tokens
/// left, reset, binding rule), and after every refusal the same request
/// made exactly `retry_after` later is admitted while one a microsecond
/// earlier is refused (redis_rate's `TestRetryAfter`, throttled's
/// `RateLimit` tests). Half the cases run at the top of the script's time
/// range, where `now + burst·T` nears 2^53 µs.
#[test]
fn both_backends_agree_and_the_named_wait_is_exact_on_random_schedules() {
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    let steps = proptest::collection::vec(
        (
            prop_oneof![Just(0u32), 0u32..=40, 0u32..=1_200],
            any::<u32>(),
        ),
        1..40,
    );
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let case = Cell::new(0u32);
    let cases = (
        proptest::collection::vec(quota(), 1..4),
        steps,
        any::<bool>(),
    );
    runner
        .run(&cases, |(quotas, steps, at_top)| {
            case.set(case.get() + 1);
            let rules = Rules::new(
                quotas
                    .iter()
                    .zip(["a", "b", "c"])
                    .map(|(q, name)| Rule::new(name, *q).unwrap()),
            )
            .unwrap();
            let longest = quotas.iter().map(|q| earn(q, q.burst())).max().unwrap();
            let shortest = quotas.iter().map(|q| earn(q, q.burst())).min().unwrap();
            // The script's range ends where now + burst·T + skew passes
            // 2^53 - 1, for every rule of the request (+1: a rate rounded
            // to the finest scale drains a µs longer).
            let last = LUA_MAX - SKEW_US - longest - 1;
            let base = if at_top {
                last - 2 * longest.max(SEC)
            } else {
                T0
            };
            let burst = rules.min_burst();
            let key = Lockstep {
                redis: &redis,
                memory: OnMemory::new(),
                key: format!("case{}", case.get()),
                rules,
                base,
            };
            let mut at = 0u64;
            for (step, raw) in steps {
                at += (u128::from(shortest + 1) * u128::from(step) / 1_000) as u64;
                if base + at > last {
                    break;
                }
                let n = raw % (burst + 2);
                let Some(d) = key.decide(n, at)? else {
                    prop_assert!(n > burst);
                    continue;
                };
                if d.allowed {
                    prop_assert_eq!(d.retry_after, Duration::ZERO);
                    continue;
                }
                // Never longer than the time to earn n tokens at the
                // slowest rule's rate (redis_rate's TestRetryAfter).
                let slowest = quotas.iter().map(|q| earn(q, n)).max().unwrap();
                let wait = d.retry_after.as_micros() as u64;
                prop_assert!(wait > 0 && wait <= slowest, "{:?} {:?}", quotas, d);
                if base + at + wait > last {
                    break;
                }
                let early = key.decide(n, at + wait - 1)?.unwrap();
                prop_assert!(!early.allowed, "{:?}: admitted 1 µs early", quotas);
                prop_assert_eq!(early.retry_after, Duration::from_micros(1));
                at += wait;
                let on_time = key.decide(n, at)?.unwrap();
                prop_assert!(on_time.allowed, "{:?}: refused after the wait", quotas);
            }
            Ok(())
        })
        .unwrap();
}

/// The script's documented range: decisions are exact up to the instant
/// where `now + burst·T` (plus the clock-skew allowance) reaches
/// 2^53 - 1 µs, and past it the script refuses with an error (a fault
/// the `Degrade` policy meets) rather than guess.
#[test]
fn times_at_the_top_of_the_lua_range_decide_exactly_then_fail_loudly() {
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    // The longest refill allowed: 1 628 a day (4.46 years).
    let day = Quota::new(1, fusebox::Duration::from_secs(86_400))
        .unwrap()
        .with_burst(1_628)
        .unwrap();
    let rules = Rules::single("per_day", day).unwrap();
    let full = 1_628 * 86_400 * SEC;
    assert!(full <= MAX_REFILL.as_micros() as u64);
    let last = LUA_MAX - SKEW_US - full;
    let d = redis.decide("top", &rules, 1_628, last).unwrap();
    assert_eq!(said(&d), (true, 0, 0, full, 0));
    let d = redis.decide("top", &rules, 1, last).unwrap();
    assert_eq!(said(&d), (false, 86_400 * SEC, 0, full, 0));
    // One more µs: out of range, an error.
    let e = redis.decide("top", &rules, 1, last + 1).unwrap_err();
    assert!(e.is_fault(), "{e:?}");
    // A rate of 3 a second (no whole µs per token) at its own top.
    let third = Rules::single("r", Quota::per_second(3).unwrap()).unwrap();
    let last = LUA_MAX - SKEW_US - SEC;
    assert!(
        redis
            .decide("third", &third, 3, last - SEC)
            .unwrap()
            .allowed
    );
    let d = redis.decide("third", &third, 1, last - SEC).unwrap();
    assert_eq!(d.retry_after, Duration::from_micros(333_334));
    assert!(
        !redis
            .decide("third", &third, 1, last - SEC + 333_333)
            .unwrap()
            .allowed
    );
    assert!(
        redis
            .decide("third", &third, 1, last - SEC + 333_334)
            .unwrap()
            .allowed
    );
    let d = redis.decide("third", &third, 2, last).unwrap();
    assert_eq!(said(&d), (true, 0, 0, SEC, 0));
}

/// Long idle periods (a key unused for hours, years): a full bucket, no
/// more; on Redis up to the script's 2250 horizon, on the memory backend
/// (a process clock) for centuries of virtual time.
#[test]
fn long_idle_keys_come_back_full_and_no_fuller() {
    let rules = Rules::new([
        Rule::new("per_hour", Quota::per_hour(100).unwrap()).unwrap(),
        Rule::new(
            "per_day",
            Quota::new(1, fusebox::Duration::from_secs(86_400))
                .unwrap()
                .with_burst(1_000)
                .unwrap(),
        )
        .unwrap(),
    ])
    .unwrap();
    let year = 365 * 86_400 * SEC;
    let table: &[Step] = &[
        (0, 100, Some((true, 0, 0, 3_600 * SEC))),
        // A token comes back 36 s after the drain, not a µs earlier.
        (36 * SEC - 1, 1, Some((false, 1, 0, 3_564 * SEC + 1))),
        (10 * year, 0, Some((true, 0, 100, 0))),
        (10 * year, 100, Some((true, 0, 0, 3_600 * SEC))),
        (10 * year, 1, Some((false, 36 * SEC, 0, 3_600 * SEC))),
        (200 * year, 0, Some((true, 0, 100, 0))),
        (200 * year, 101, None),
        (200 * year, 100, Some((true, 0, 0, 3_600 * SEC))),
    ];
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    run_table(
        "redis",
        &|n, at| redis.decide("idle", &rules, n, T0 + at),
        100,
        table,
    );
    let memory = OnMemory::new();
    run_table(
        "memory",
        &|n, at| memory.decide("idle", &rules, n, at),
        100,
        table,
    );
    // Centuries more, on the process clock only; with a rate at the
    // finest scale (1 000 003/s) too.
    let fast = Rules::single(
        "per_second",
        Quota::per_second(1_000_003).unwrap().with_burst(5).unwrap(),
    )
    .unwrap();
    for (rules, at, n, want) in [
        (&rules, 2_000 * year, 0, (true, 0, 100)),
        (&rules, 2_000 * year, 60, (true, 0, 40)),
        (&fast, 2_000 * year, 5, (true, 0, 0)),
        (&fast, 2_000 * year, 1, (false, 1, 0)),
        (&rules, 20_000 * year, 0, (true, 0, 100)),
        (&fast, 20_000 * year, 5, (true, 0, 0)),
        (&fast, 20_000 * year, 1, (false, 1, 0)),
        (&fast, 20_000 * year + 1, 1, (true, 0, 0)),
    ] {
        let key = if rules == &fast { "fast" } else { "idle" };
        let d = memory.decide(key, rules, n, at).unwrap();
        assert_eq!(
            (d.allowed, d.retry_after.as_micros() as u64, d.remaining),
            want,
            "at {} years: {d:?}",
            at / year
        );
    }
}

/// A Redis limiter `name` of `rules` on its own connection (one
/// "instance"), quick to time out and to probe.
async fn instance(
    server: &RedisServer,
    name: &str,
    rules: &Rules,
    policy: Degrade,
) -> RedisLimiter {
    let backend = RedisBackend::connect(
        RedisConfig::new(server.url())
            .timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .expect("connect");
    RedisLimiter::builder(name, rules.clone(), backend)
        .degrade(policy)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap()
}

fn per_hour(tokens: u32) -> Rules {
    Rules::single("per_hour", Quota::per_hour(tokens).unwrap()).unwrap()
}

/// Requests on another key until Redis decides again: the limiter
/// recovers by itself (at most 5 s).
async fn until_redis(limiter: &RedisLimiter) {
    let start = Instant::now();
    loop {
        let d = limiter.try_acquire("probe").await.unwrap();
        if d.source == Source::Redis {
            assert!(!limiter.is_degraded());
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} did not recover: {d:?}",
            limiter.name()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Takes one token of `key` at a time until refused: how many.
async fn drain(limiter: &RedisLimiter, key: &str) -> (u32, Decision) {
    let mut admitted = 0;
    loop {
        let d = limiter.try_acquire(key).await.unwrap();
        if !d.allowed {
            return (admitted, d);
        }
        admitted += 1;
        assert!(admitted <= 1_000, "no end");
    }
}

/// node-rate-limiter-flexible's parallel `consume` tests, on a fleet:
/// four instances (connections), four consumers each, requests of mixed
/// sizes on one key of 60 an hour. Every admission is atomic: sorted by
/// the tokens it left, each one left exactly what the one before left
/// less its own size (no two consumers took the same tokens), and
/// together they took the burst, no more (an hour's rate cannot add a
/// token while the test runs, unless it runs a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_with_mixed_sizes_take_exactly_the_burst() {
    let server = RedisServer::start();
    let rules = per_hour(60);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let limiter = Arc::new(instance(&server, "mixed", &rules, Degrade::FailClosed).await);
        for j in 0..4u32 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                let mut admitted = Vec::new();
                for k in 0u32.. {
                    let n = [3, 1, 4, 1, 5, 9, 2, 6][((i * 4 + j + k) % 8) as usize];
                    let d = limiter.try_acquire_n("shared", n).await.unwrap();
                    assert_eq!(d.source, Source::Redis);
                    if d.allowed {
                        admitted.push((n, d.remaining));
                        continue;
                    }
                    // Refused: the wait is that of the missing tokens at
                    // one a minute, never more than n minutes.
                    assert!(d.retry_after > Duration::ZERO, "{d:?}");
                    assert!(
                        d.retry_after <= Duration::from_secs(60 * u64::from(n)),
                        "{d:?}"
                    );
                    assert!(d.remaining < u64::from(n), "{d:?}");
                    if d.remaining == 0 {
                        break;
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted = Vec::new();
    for t in tasks {
        admitted.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(55),
        "too slow to be exact: {elapsed:?}"
    );
    admitted.sort_by_key(|&(_, left)| std::cmp::Reverse(left));
    let mut left = 60;
    for &(n, after) in &admitted {
        assert_eq!(after + u64::from(n), left, "{admitted:?}");
        left = after;
    }
    let taken: u64 = admitted.iter().map(|&(n, _)| u64::from(n)).sum();
    assert_eq!((taken, left), (60, 0), "{admitted:?}");
    // Another limiter name on the same key string is another limit.
    let other = instance(&server, "mixed_other", &rules, Degrade::FailClosed).await;
    assert_eq!(drain(&other, "shared").await.0, 60);
}

/// redis_rate's `TestRetryAfter` as a client: one caller of
/// `until_ready` at 20/s with a burst of 1 sleeps each named wait and is
/// admitted on its next try, every time (the wait is never short: Redis
/// decides before the reply, the caller sleeps after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sleeping_the_named_wait_is_admitted_on_its_next_try() {
    let server = RedisServer::start();
    let rules = Rules::single(
        "per_second",
        Quota::per_second(20).unwrap().with_burst(1).unwrap(),
    )
    .unwrap();
    let limiter = instance(&server, "sleeper", &rules, Degrade::FailClosed).await;
    let rounds = 15;
    for _ in 0..rounds {
        let d = limiter.until_ready("k").await.unwrap();
        assert_eq!((d.allowed, d.source), (true, Source::Redis));
    }
    let m = limiter.metrics();
    assert_eq!(m.admitted, rounds);
    // The first is admitted at once; each later one after one refusal at
    // most.
    assert!(
        m.redis_decisions < 2 * rounds,
        "{} tries for {rounds} admissions",
        m.redis_decisions
    );
}

/// node-rate-limiter-flexible's insurance limiter and redis_rate's
/// "Redis is down", for a Redis that restarts without persistence: while
/// it is down `FailClosed` refuses (a request larger than the burst is
/// still an error, not a wait), the limiters recover by themselves, and
/// the restarted Redis admits one more burst per key (documented), no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_forgets_one_burst_and_the_fleet_recovers_by_itself() {
    let mut server = RedisServer::start();
    let rules = per_hour(5);
    let a = instance(&server, "restart", &rules, Degrade::FailClosed).await;
    let b = instance(&server, "restart", &rules, Degrade::FailClosed).await;
    assert!(a.try_acquire_n("k", 3).await.unwrap().allowed);
    let (more, refused) = drain(&b, "k").await;
    assert_eq!(more, 2);
    // A token every 12 minutes, less the real time since the first.
    assert!(
        refused.retry_after > Duration::from_secs(710)
            && refused.retry_after <= Duration::from_secs(720),
        "{refused:?}"
    );
    assert_eq!(
        a.try_acquire_n("k", 6).await,
        Err(BackendError::InsufficientCapacity {
            requested: 6,
            burst: 5
        })
    );

    server.kill();
    for limiter in [&a, &b] {
        for _ in 0..5 {
            let d = limiter.try_acquire("k").await.unwrap();
            assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");
            assert!(d.retry_after <= Duration::from_millis(200), "{d:?}");
        }
        assert!(limiter.is_degraded());
        assert_eq!(
            limiter.try_acquire_n("k", 6).await,
            Err(BackendError::InsufficientCapacity {
                requested: 6,
                burst: 5
            }),
            "no wait helps, whether Redis is up or not"
        );
    }

    server.restart();
    until_redis(&a).await;
    until_redis(&b).await;
    let (by_a, _) = drain(&a, "k").await;
    let (by_b, refused) = drain(&b, "k").await;
    assert_eq!(by_a + by_b, 5, "one burst after the restart, no more");
    assert_eq!(refused.source, Source::Redis);
    assert!(
        refused.retry_after > Duration::from_secs(700)
            && refused.retry_after <= Duration::from_secs(720),
        "{refused:?}"
    );
}

/// node-rate-limiter-flexible's insurance limiter, as `Degrade::Local`:
/// Redis stalls (SIGSTOP: its state survives). Each of two instances then
/// admits exactly its share of a key (half the burst) locally; Redis
/// comes back, both recover by themselves, and Redis still holds what it
/// held: over the whole run the key gets at most the documented
/// `burst + instances × share` (what Redis admitted, plus each local
/// bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_gives_each_instance_its_share_and_keeps_its_state() {
    let server = RedisServer::start();
    let rules = per_hour(10);
    let policy = Degrade::Local { instances: 2 };
    let a = instance(&server, "stall", &rules, policy).await;
    let b = instance(&server, "stall", &rules, policy).await;
    assert!(a.try_acquire_n("k", 4).await.unwrap().allowed);

    server.signal("STOP");
    let mut faults_on_k = 0;
    let mut local = 0;
    for limiter in [&a, &b] {
        let mut admitted = 0;
        for _ in 0..8 {
            let d = limiter.try_acquire("k").await.unwrap();
            assert_eq!(d.source, Source::Local, "{d:?}");
            if d.allowed {
                admitted += 1;
            } else {
                // The share: 10 per two hours, a token every 12 minutes.
                assert!(
                    d.retry_after > Duration::from_secs(700)
                        && d.retry_after <= Duration::from_secs(720),
                    "{d:?}"
                );
            }
        }
        assert_eq!(admitted, 5, "{}: its share of the burst", limiter.name());
        local += admitted;
        faults_on_k += limiter.metrics().faults;
    }

    server.signal("CONT");
    until_redis(&a).await;
    until_redis(&b).await;
    let (by_a, _) = drain(&a, "k").await;
    let (by_b, refused) = drain(&b, "k").await;
    assert_eq!(refused.source, Source::Redis);
    let after = by_a + by_b;
    // Redis kept its 6 tokens, less what the requests that timed out
    // during the stall took when it resumed (the script runs to its end on
    // the server: they can only take, never give).
    assert!(after <= 6, "{after}");
    assert!(
        u64::from(after) + faults_on_k >= 6,
        "{after} + {faults_on_k}"
    );
    assert!(4 + local + after <= 10 + 2 * 5);
}

/// An exact token bucket in units of 1/period of a token: the model of
/// one (key, rule name, quota) as if it were alone, full at its first use.
struct Alone {
    level: u128,
    cap: u128,
    per_us: u128,
    unit: u128,
    at: u128,
}

impl Alone {
    fn new(q: Quota, at: u64) -> Self {
        let unit = u128::from(q.period().as_micros());
        Self {
            level: u128::from(q.burst()) * unit,
            cap: u128::from(q.burst()) * unit,
            per_us: u128::from(q.tokens()),
            unit,
            at: u128::from(at),
        }
    }

    /// Pays `n` tokens at `now` if it has them.
    fn pay(&mut self, n: u32, now: u64) -> bool {
        let now = u128::from(now);
        self.level = (self.level + (now - self.at) * self.per_us).min(self.cap);
        self.at = now;
        let need = u128::from(n) * self.unit;
        let paid = self.level >= need;
        if paid {
            self.level -= need;
        }
        paid
    }
}

/// The documented rule of quota changes on Redis ("while several quotas
/// are live on one name, each admits no more than it would alone"), the
/// scenario of redis_rate and redis-cell users changing a limit at run
/// time, on random histories: a few rule names on a key, each call
/// picking a quota for each name (raised, lowered, alternating, several
/// at once), at random instants. Every admission is paid for by every
/// (name, quota)'s own bucket, full at its first use.
#[test]
fn changed_and_alternating_quotas_on_redis_never_admit_more_than_each_alone() {
    use std::collections::HashMap;
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    let qs = [
        Quota::per_second(10).unwrap(),
        Quota::per_second(100).unwrap(),
        Quota::per_minute(6).unwrap(),
        Quota::new(2, fusebox::Duration::from_millis(100)).unwrap(),
        Quota::per_hour(100).unwrap(),
        Quota::per_hour(1).unwrap(),
        Quota::new(4, fusebox::Duration::from_secs(1))
            .unwrap()
            .with_burst(8)
            .unwrap(),
        Quota::per_second(3).unwrap().with_burst(1).unwrap(),
    ];
    let mut failures = Vec::new();
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let names = if seed % 2 == 0 { 1 } else { 3 };
        let mut model: HashMap<(usize, usize, usize), Alone> = HashMap::new();
        let mut now = T0;
        'history: for step in 0..1_500 {
            now += match rng.u32(0..10) {
                0..=4 => 0,
                5..=8 => rng.u64(1..300_000),
                _ => rng.u64(1..120) * SEC,
            };
            let key = rng.usize(0..2);
            let mut picked: Vec<(usize, usize)> = Vec::new();
            for name in 0..names {
                if picked.is_empty() || rng.bool() {
                    picked.push((name, rng.usize(0..qs.len())));
                }
            }
            let rules = Rules::new(
                picked
                    .iter()
                    .map(|&(name, q)| Rule::new(&format!("r{name}"), qs[q]).unwrap()),
            )
            .unwrap();
            let n = rng.u32(1..=3);
            let d = match redis.decide(&format!("s{seed}k{key}"), &rules, n, now) {
                Ok(d) => d,
                Err(BackendError::InsufficientCapacity { .. }) => continue,
                Err(e) => panic!("seed {seed} step {step}: {e:?}"),
            };
            assert_eq!(d.corrupt, 0, "seed {seed} step {step}: {d:?}");
            if !d.allowed {
                continue;
            }
            for &(name, q) in &picked {
                let alone = model
                    .entry((key, name, q))
                    .or_insert_with(|| Alone::new(qs[q], now));
                if !alone.pay(n, now) {
                    failures.push(format!(
                        "seed {seed} step {step} t+{} µs: k{key} r{name} {:?}: admitted {n}, \
                         more than it would alone",
                        now - T0,
                        qs[q]
                    ));
                    break 'history;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The `Backend` contract names "a bad key" among the errors of
/// `decide`, whatever the backend: a key longer than `MAX_KEY_LEN`, a
/// limiter name that is no registry name or is reserved. An application
/// developed on the memory backend meets the same refusals as on Redis
/// (redis_rate's and redis-cell's suites run one key set on every store).
#[test]
fn bad_keys_and_limiter_names_are_refused_alike_by_both_backends() {
    use fusebox_std::backend::MAX_KEY_LEN;
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    let memory = OnMemory::new();
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    let longest = "k".repeat(MAX_KEY_LEN);
    for (limiter, key, n, ok) in [
        ("peer", longest.as_str(), 1, true),
        ("peer", "", 1, true),
        ("peer", "a:b{c}", 1, true),
        ("peer", long.as_str(), 1, false),
        ("breaker", "k", 1, false),
        ("hist", "k", 1, false),
        ("a b", "k", 1, false),
        ("", "k", 1, false),
        // Too many tokens is the first error named.
        ("a b", long.as_str(), 11, false),
    ] {
        let on_redis = redis
            .rt
            .block_on(redis.backend.decide_at(limiter, key, &rules, n, T0));
        let on_memory = memory
            .rt
            .block_on(memory.backend.decide(limiter, key, &rules, n));
        assert_eq!(
            on_redis.is_ok(),
            ok,
            "redis {limiter:?} {}: {on_redis:?}",
            key.len()
        );
        match (on_redis, on_memory) {
            (Ok(r), Ok(m)) => assert_eq!(said(&r), said(&m)),
            (Err(r), Err(m)) => assert_eq!(r, m, "{limiter:?} {}", key.len()),
            (r, m) => panic!(
                "{limiter:?} key of {}: redis {r:?}, memory {m:?}",
                key.len()
            ),
        }
    }
}

/// A step of a quota change: rules, n, at, Redis's (allowed, remaining)
/// and the memory backend's.
type Change = (Rules, u32, u64, (bool, u64), (bool, u64));

/// redis_rate and redis-cell keep only a time per key, so a changed limit
/// reads it under the new one; so does fusebox's Redis script ("a state
/// written under another quota is read as time, capped at this rule's
/// refill time"), while the memory backend moves the tokens available
/// over (the core's `set_quota`). The two backends part ways here, each
/// as documented: raised from 10/s to 100/s with 2 tokens left, Redis
/// reads 0.8 s of drain (20 left), memory 2 tokens; lowered from 100/s
/// to 10/s with 50 left, Redis reads 0.5 s (5 left), memory its burst.
#[test]
fn a_changed_quota_carries_time_on_redis_and_tokens_in_memory() {
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    let memory = OnMemory::new();
    let q = |per_second| Rules::single("r", Quota::per_second(per_second).unwrap()).unwrap();
    // (rules, n, at, Redis's (allowed, remaining), memory's)
    let raised: [Change; 4] = [
        (q(10), 8, 0, (true, 2), (true, 2)),
        (q(100), 0, 0, (true, 20), (true, 2)),
        (q(100), 3, 0, (true, 17), (false, 2)),
        (q(100), 0, 10_000, (true, 18), (true, 3)),
    ];
    let lowered: [Change; 3] = [
        (q(100), 50, 20 * SEC, (true, 50), (true, 50)),
        (q(10), 0, 20 * SEC, (true, 5), (true, 10)),
        (q(10), 6, 20 * SEC, (false, 5), (true, 4)),
    ];
    for (key, steps) in [("raised", &raised[..]), ("lowered", &lowered[..])] {
        for (i, (rules, n, at, on_redis, on_memory)) in steps.iter().enumerate() {
            let r = redis.decide(key, rules, *n, T0 + at).unwrap();
            let m = memory.decide(key, rules, *n, *at).unwrap();
            assert_eq!((r.allowed, r.remaining), *on_redis, "{key} {i} redis {r:?}");
            assert_eq!(
                (m.allowed, m.remaining),
                *on_memory,
                "{key} {i} memory {m:?}"
            );
        }
    }
}

/// throttled's and redis-cell's "clock goes backwards" cases, for Redis
/// `TIME` after a failover to a server whose clock is behind: a state
/// ahead of the clock by less than the skew allowance (60 s) plus the
/// refill only refuses, nothing is given; one further ahead is an absurd
/// value, counted as corrupt and replaced by a drained bucket that
/// refills in the rule's own time (never years of refusals).
#[test]
fn a_redis_clock_gone_back_only_refuses_and_never_opens_wide() {
    let server = RedisServer::start();
    let redis = OnRedis::new(&server);
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let t = T0 + 3_600 * SEC;
    assert!(redis.decide("back", &rules, 10, t).unwrap().allowed);
    // 30 s back: 31 s of drain to wait out, nothing corrupt.
    let d = redis.decide("back", &rules, 1, t - 30 * SEC).unwrap();
    assert_eq!(said(&d), (false, 30_100_000, 0, 31 * SEC, 0));
    assert_eq!(d.corrupt, 0);
    // The clock catches up: the token due at t + 0.1 s, not before.
    assert!(!redis.decide("back", &rules, 1, t + 99_999).unwrap().allowed);
    assert!(
        redis
            .decide("back", &rules, 1, t + 100_000)
            .unwrap()
            .allowed
    );
    // Two minutes back: further than any drain plus the skew.
    let back = t - 120 * SEC;
    let d = redis.decide("back", &rules, 1, back).unwrap();
    assert_eq!((d.allowed, d.corrupt), (false, 1), "{d:?}");
    assert_eq!(d.retry_after, Duration::from_millis(100));
    let (mut admitted, mut at) = (0, back + SEC);
    while redis.decide("back", &rules, 1, at).unwrap().allowed {
        admitted += 1;
        at += 1;
    }
    assert_eq!(admitted, 10, "a full bucket a refill later, no more");
}
