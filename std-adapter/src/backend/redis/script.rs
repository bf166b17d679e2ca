//! The GCRA script (`scripts/gcra.lua`): its arguments and its reply.
//!
//! One `EVALSHA` per decision; the `redis` crate's `invoke_async` loads the
//! script and retries once on `NOSCRIPT`. See the script's header for the
//! argument layout and the state it keeps; in short, per rule the script
//! receives the same `scale`, `interval` and `burst` the core kernel
//! derives from the quota ([`Rule`](super::super::Rule)), and stores
//! `tat = tat_us · scale + frac` as `g1:<tat_us>:<frac>:<scale>:<interval>:<burst>`
//! with `PX` = the time until the bucket is full.
//!
//! Time: Redis `TIME`, unless the optional last argument `now` (µs) is
//! given — only [`RedisBackend::decide_at`](super::RedisBackend::decide_at)
//! sends it, for deterministic tests.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, ScriptInvocation};

use super::super::{BackendError, Decision, Rules, Source};

/// The script's source.
pub(super) const GCRA_LUA: &str = include_str!("scripts/gcra.lua");

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// The invocation of one decision: keys in rule order, then `n`, the rule
/// count, each rule's `scale interval burst`, and `now` if given.
pub(super) fn invocation(
    keys: &[String],
    rules: &Rules,
    n: u32,
    now: Option<u64>,
) -> ScriptInvocation<'static> {
    let mut inv = GCRA.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv.arg(n).arg(rules.len());
    for rule in rules.iter() {
        inv.arg(rule.scale)
            .arg(rule.interval)
            .arg(rule.quota().burst());
    }
    if let Some(now) = now {
        inv.arg(now);
    }
    inv
}

/// Runs it (EVALSHA, reloading on NOSCRIPT).
pub(super) async fn run(
    invocation: &ScriptInvocation<'static>,
    conn: &mut super::RedisConnection,
) -> redis::RedisResult<Vec<i64>> {
    invocation.invoke_async(conn).await
}

/// The script's reply `{allowed, retry_us, remaining, reset_us, rule,
/// corrupt}` as a decision.
pub(super) fn decision(reply: &[i64]) -> Result<Decision, BackendError> {
    let &[allowed, retry, remaining, reset, rule, corrupt] = reply else {
        return Err(BackendError::Protocol(format!(
            "{} values from the gcra script, expected 6",
            reply.len()
        )));
    };
    let micros = |v: i64| u64::try_from(v).map(Duration::from_micros);
    match (
        allowed,
        micros(retry),
        u64::try_from(remaining),
        micros(reset),
        usize::try_from(rule),
        u32::try_from(corrupt),
    ) {
        (0 | 1, Ok(retry_after), Ok(remaining), Ok(reset), Ok(rule), Ok(corrupt)) => Ok(Decision {
            allowed: allowed == 1,
            retry_after,
            remaining,
            reset,
            rule,
            source: Source::Redis,
            corrupt,
        }),
        _ => Err(BackendError::Protocol(
            "out-of-range values from the gcra script".into(),
        )),
    }
}
