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

/// How far back the script lets Redis's clock step and still only deny
/// (its `SKEW_US`): a stored time that far ahead of a rule's drain is
/// read, so a wait may exceed the drain by as much.
const SKEW: Duration = Duration::from_secs(60);

/// Checks a reply's decision against what was asked: at most `most` and
/// at least `fewest` tokens, under `rules`. A reply the script never
/// gives (a rule that is not there, tokens taken outside the range asked
/// or on a refusal, a wait on an admission or none on a refusal, a wait or
/// refill time past the longest rule's drain plus the clock step the
/// script tolerates, more tokens left than the largest burst, more corrupt
/// keys than rules) is a protocol error, never taken as a decision: it
/// came from something that is not the script (a proxy, a server
/// answering in its name), and could admit more than the rules allow.
pub(super) fn check(
    decision: &Decision,
    taken: u32,
    rules: &Rules,
    (most, fewest): (u32, u32),
) -> Result<(), BackendError> {
    let refill = |r: &super::super::Rule| {
        let scaled = u128::from(r.interval) * u128::from(r.quota().burst());
        let micros = scaled.div_ceil(u128::from(r.scale.max(1)));
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    };
    let longest = rules.iter().map(refill).max().unwrap_or_default();
    let most_left = rules.iter().map(|r| r.quota().burst()).max().unwrap_or(0);
    // A millisecond for the script's roundings up (a fraction of a µs
    // read back from a stored time rounds the wait up by one).
    let within = longest.saturating_add(SKEW + Duration::from_millis(1));
    let valid = decision.rule < rules.len()
        && decision.corrupt as usize <= rules.len()
        && if decision.allowed {
            (fewest..=most).contains(&taken) && decision.retry_after.is_zero()
        } else {
            taken == 0 && !decision.retry_after.is_zero()
        }
        && decision.retry_after <= within
        && decision.reset <= within
        && decision.remaining <= u64::from(most_left);
    if valid {
        Ok(())
    } else {
        Err(BackendError::Protocol(
            "a gcra script reply outside what the rules allow".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use fusebox::bucket::Quota;

    use super::*;
    use crate::backend::Rule;

    fn rules() -> Rules {
        // 10/s, burst 10 (a 1 s drain) and 100/min (a 60 s drain).
        Rules::new([
            Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap(),
            Rule::new("per_minute", Quota::per_minute(100).unwrap()).unwrap(),
        ])
        .unwrap()
    }

    fn admitted(taken: u32) -> (Decision, u32) {
        let d = Decision {
            allowed: true,
            retry_after: Duration::ZERO,
            remaining: 9,
            reset: Duration::from_millis(100),
            rule: 0,
            source: Source::Redis,
            corrupt: 0,
        };
        (d, taken)
    }

    fn refused(wait: Duration) -> Decision {
        Decision {
            allowed: false,
            retry_after: wait,
            remaining: 0,
            reset: wait,
            rule: 1,
            source: Source::Redis,
            corrupt: 0,
        }
    }

    #[test]
    fn replies_the_script_gives_pass() {
        let rules = rules();
        let (d, taken) = admitted(1);
        assert!(check(&d, taken, &rules, (1, 1)).is_ok());
        // A lease of 3 to 5 tokens that took 4.
        assert!(check(&d, 4, &rules, (5, 3)).is_ok());
        // The longest drain, plus the clock step the script tolerates.
        let wait = Duration::from_secs(60) + SKEW;
        assert!(check(&refused(wait), 0, &rules, (1, 1)).is_ok());
    }

    #[test]
    fn replies_the_script_never_gives_are_protocol_errors() {
        let rules = rules();
        let bad = |d: &Decision, taken: u32, asked: (u32, u32)| {
            matches!(
                check(d, taken, &rules, asked),
                Err(BackendError::Protocol(_))
            )
        };
        let (d, _) = admitted(1);
        // More tokens than asked (a lease would hold them), or fewer than
        // the least (admitted on nothing taken).
        assert!(bad(&d, 1_000_000, (5, 1)));
        assert!(bad(&d, 0, (1, 1)));
        assert!(bad(&d, 2, (5, 3)));
        // A rule that is not there, more corrupt keys than rules.
        assert!(bad(&Decision { rule: 2, ..d }, 1, (1, 1)));
        assert!(bad(&Decision { corrupt: 3, ..d }, 1, (1, 1)));
        // More tokens left than any burst; a wait on an admission.
        assert!(bad(
            &Decision {
                remaining: 101,
                ..d
            },
            1,
            (1, 1)
        ));
        let wait = Duration::from_millis(5);
        assert!(bad(
            &Decision {
                retry_after: wait,
                ..d
            },
            1,
            (1, 1)
        ));
        // A refusal that took tokens, or names no wait, or years of one.
        assert!(bad(&refused(wait), 1, (1, 1)));
        assert!(bad(&refused(Duration::ZERO), 0, (1, 1)));
        let years = Duration::from_secs(3 * 365 * 86_400);
        assert!(bad(&refused(years), 0, (1, 1)));
        assert!(bad(
            &Decision {
                reset: years,
                ..refused(wait)
            },
            0,
            (1, 1)
        ));
    }
}
