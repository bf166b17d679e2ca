//! The GCRA script (`scripts/gcra.lua`): its arguments and its reply.
//!
//! One `EVALSHA` per decision, reloading the script and retrying once on
//! `NOSCRIPT` (as the `redis` crate's `invoke_async` does). See the
//! script's header for the argument layout and the state it keeps; in
//! short, per rule the script receives the same `scale`, `interval` and
//! `burst` the core kernel derives from the quota
//! ([`Rule`](super::super::Rule)), as the text `<scale>:<interval>:<burst>`
//! formatted once per rule, and stores `tat = tat_us · scale + frac` as
//! `g1:<tat_us>:<frac>:<scale>:<interval>:<burst>` with `PX` = the time
//! until the bucket is full (followed by `:h<hold_us>` after another
//! quota's longer drain was clamped to this rule's bucket: the time every
//! other quota still reads, so that two quotas on one key never forgive
//! each other's drain).
//!
//! The command is written straight into one buffer: the storage keys from
//! one base `<prefix>:{<limiter>:<key>}:` (escaped once), the counts and
//! the rules' texts.
//!
//! Time: Redis `TIME`, unless the optional last argument `now` (µs) is
//! given — only [`RedisBackend::decide_at`](super::RedisBackend::decide_at)
//! sends it, for deterministic tests.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Cmd, Script, Value};

use super::super::{BackendError, Decision, Rules, Source};

/// The script's source.
pub(super) const GCRA_LUA: &str = include_str!("scripts/gcra.lua");

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// The `EVALSHA` of one decision: keys (`base` + rule name) in rule
/// order, then `most`, `fewest`, each rule's text, and `now` if given.
pub(super) fn command(
    base: &mut String,
    rules: &Rules,
    most: u32,
    fewest: u32,
    now: Option<u64>,
) -> Cmd {
    let size = 64 + rules.len() * (base.len() + 48);
    let mut cmd = Cmd::with_capacity(6 + 2 * rules.len(), size);
    cmd.arg("EVALSHA").arg(GCRA.get_hash()).arg(rules.len());
    let len = base.len();
    for rule in rules.iter() {
        base.push_str(rule.name());
        cmd.arg(base.as_str());
        base.truncate(len);
    }
    cmd.arg(most).arg(fewest);
    for rule in rules.iter() {
        cmd.arg(&*rule.spec);
    }
    if let Some(now) = now {
        cmd.arg(now);
    }
    cmd
}

/// Runs it (EVALSHA, loading the script on NOSCRIPT and trying again).
pub(super) async fn run(cmd: &Cmd, conn: &mut super::RedisConnection) -> redis::RedisResult<Value> {
    match cmd.query_async::<Value>(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            GCRA.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// The script's reply `{allowed, retry_us, remaining, reset_us, rule,
/// corrupt, taken}` as a decision and the tokens taken.
pub(super) fn decision(reply: &Value) -> Result<(Decision, u32), BackendError> {
    let ints = match reply {
        Value::Array(items) if items.len() == 7 => {
            let mut ints = [0i64; 7];
            for (slot, item) in ints.iter_mut().zip(items) {
                let Value::Int(v) = item else {
                    return Err(BackendError::Protocol(
                        "a value that is no integer from the gcra script".into(),
                    ));
                };
                *slot = *v;
            }
            ints
        }
        Value::Array(items) => {
            return Err(BackendError::Protocol(format!(
                "{} values from the gcra script, expected 7",
                items.len()
            )));
        }
        _ => {
            return Err(BackendError::Protocol(
                "no array from the gcra script".into(),
            ));
        }
    };
    let [allowed, retry, remaining, reset, rule, corrupt, taken] = ints;
    let micros = |v: i64| u64::try_from(v).map(Duration::from_micros);
    match (
        allowed,
        micros(retry),
        u64::try_from(remaining),
        micros(reset),
        usize::try_from(rule),
        u32::try_from(corrupt),
        u32::try_from(taken),
    ) {
        (0 | 1, Ok(retry_after), Ok(remaining), Ok(reset), Ok(rule), Ok(corrupt), Ok(taken)) => {
            Ok((
                Decision {
                    allowed: allowed == 1,
                    retry_after,
                    remaining,
                    reset,
                    rule,
                    source: Source::Redis,
                    corrupt,
                },
                taken,
            ))
        }
        _ => Err(BackendError::Protocol(
            "out-of-range values from the gcra script".into(),
        )),
    }
}
