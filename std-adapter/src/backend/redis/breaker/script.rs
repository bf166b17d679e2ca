//! The fleet breaker's script (`scripts/breaker.lua`): its keys, its
//! arguments and its reply, validated before anything is merged.

use std::sync::LazyLock;
use std::time::Duration;

use fusebox::breaker::{Decision, State};
use redis::Script;

use super::super::super::BackendError;
use super::super::RedisConnection;

/// The script's source (see its header for keys, arguments and reply).
pub(super) const BREAKER_LUA: &str = include_str!("../scripts/breaker.lua");

static BREAKER: LazyLock<Script> = LazyLock::new(|| Script::new(BREAKER_LUA));

/// Flag bits of the reply.
pub(super) const CORRUPT: i64 = 1;
pub(super) const GRANTED: i64 = 2;
pub(super) const REPOPULATED: i64 = 4;
pub(super) const CHANGED: i64 = 8;
/// A change was not written: the version would pass the largest the
/// script writes (just below 2^53, where Lua's numbers stop being exact).
pub(super) const EXHAUSTED: i64 = 16;

/// One operation on the shared decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// Read it (repopulating a lost or corrupt one).
    Sync,
    /// A local trip: open a closed fleet (with `quorum` = (min, window ms,
    /// instance) only once enough instances tripped), reopen a half-open
    /// one (or one whose open time ran out) that the caller holds. The
    /// trip's `record` (this process's [`Keys::record`], the trip's
    /// token) is the same each time one trip is published: a repeat of a
    /// trip the script took (its reply lost) changes nothing.
    Trip {
        quorum: Option<(u32, u64, &'a str)>,
        record: Record<'a>,
    },
    /// A trial succeeded in the half-open decision of this version: close
    /// it once this many trials succeeded fleet-wide. The trial's token
    /// (empty: none) counts its success once, however often it is sent
    /// (a command sent again after its connection closed may have run).
    Close(u64, u8, &'a str),
    /// Forced open, once for its `record` (this process's
    /// [`Keys::record`], the command's token): the command sent
    /// again (its connection closed after Redis ran it) changes nothing.
    ForceOpen(Record<'a>),
    /// Closed, once for its `record`, as [`ForceOpen`](Op::ForceOpen).
    ForceClose(Record<'a>),
    /// A fleet trial token (slot TTL ms, token).
    Trial(u64, &'a str),
    /// Gives a token back.
    Release(&'a str),
}

/// A command's record: the key (one per process, for its trips and admin
/// commands alike) and
/// the command's token (a decimal number that only grows in a process;
/// the same when the command is sent again), which the script writes
/// there once it ran the command: a token not above the one recorded is
/// a repeat, or an older command arriving late, and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub(super) key: &'a str,
    pub(super) token: &'a str,
}

/// The keys of one named breaker, under one hash tag.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub(super) decision: String,
    pub(super) verdicts: String,
    pub(super) successes: String,
    pub(super) slots: Vec<String>,
    /// What a process's record key starts with.
    record: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, name: &str, permits: u8) -> Self {
        let base = format!("{prefix}:{{breaker:{name}}}");
        Self {
            decision: format!("{base}:decision"),
            verdicts: format!("{base}:verdicts"),
            successes: format!("{base}:trial:ok"),
            slots: (1..=permits.max(1))
                .map(|i| format!("{base}:trial:{i}"))
                .collect(),
            record: format!("{base}:record:"),
        }
    }

    /// The record key of the process `nonce` names: the script writes
    /// there the token of each trip, `force_open` and `force_close` it
    /// runs (one key per process, kept a day after its last command).
    /// One key for the three: the tokens come from one counter, in the
    /// order the process sends the commands (one at a time), so a command
    /// arriving after a newer one of the other kind ran is older too
    /// (with a key per kind, a trip that timed out and ran late reopened
    /// the fleet its process's newer `force_close` had closed: found by a
    /// hostile review).
    pub(super) fn record(&self, nonce: u64) -> String {
        format!("{}{nonce:016x}", self.record)
    }
}

/// The caller's side of every invocation.
pub(super) struct Local {
    pub(super) known: u64,
    pub(super) open_for: Duration,
    pub(super) max_open_for: Duration,
    pub(super) state: State,
    pub(super) remaining: Duration,
    pub(super) streak: u8,
}

/// A validated reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) decision: Decision,
    pub(super) flags: i64,
    /// What is left of an open decision's opening as stored (not capped
    /// at this instance's `max_open_for`, as the decision's is for the
    /// merge; at most [`Config::MAX_OPEN_FOR`], which the script honours
    /// a stored opening up to): this instance refuses calls until then.
    ///
    /// [`Config::MAX_OPEN_FOR`]: fusebox::breaker::Config::MAX_OPEN_FOR
    pub(super) fleet_remaining: Option<Duration>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs `op` (EVALSHA, reloading on NOSCRIPT) within `timeout`.
pub(super) async fn run(
    conn: &mut RedisConnection,
    keys: &Keys,
    local: &Local,
    op: Op<'_>,
    timeout: Duration,
    sharded: bool,
) -> Result<Reply, BackendError> {
    let mut inv = BREAKER.prepare_invoke();
    inv.key(&keys.decision)
        .key(&keys.verdicts)
        .key(&keys.successes);
    match op {
        Op::Trial(..) | Op::Release(_) => {
            for slot in &keys.slots {
                inv.key(slot);
            }
        }
        Op::Trip { record, .. } | Op::ForceOpen(record) | Op::ForceClose(record) => {
            inv.key(record.key);
        }
        _ => {}
    }
    let name = match op {
        Op::Sync => "sync",
        Op::Trip { .. } => "trip",
        Op::Close(..) => "close",
        Op::ForceOpen(_) => "force_open",
        Op::ForceClose(_) => "force_close",
        Op::Trial(..) => "trial",
        Op::Release(_) => "release",
    };
    let state = match local.state {
        State::Closed => "c",
        State::Open => "o",
        State::HalfOpen => "h",
        State::ForcedOpen => "f",
    };
    inv.arg(name)
        .arg(local.known)
        .arg(micros(local.open_for).max(1))
        .arg(micros(local.max_open_for).max(1))
        .arg(state)
        .arg(micros(local.remaining))
        .arg(local.streak);
    // ARGV[8..=10], the op's own (unused ones empty), then ARGV[11] and
    // the record's token, ARGV[12].
    match op {
        Op::Trip {
            quorum: Some((min, window_ms, instance)),
            ..
        } => {
            inv.arg(min).arg(window_ms).arg(instance);
        }
        Op::Close(version, needed, token) => {
            inv.arg(version).arg(needed).arg(token);
        }
        Op::Trial(ttl_ms, token) => {
            inv.arg(ttl_ms).arg(token).arg("");
        }
        Op::Release(token) => {
            inv.arg(0).arg(token).arg("");
        }
        Op::Trip { quorum: None, .. } | Op::Sync | Op::ForceOpen(_) | Op::ForceClose(_) => {
            inv.arg(0).arg("").arg("");
        }
    }
    inv.arg(if sharded { "s" } else { "p" });
    match op {
        Op::Trip { record, .. } | Op::ForceOpen(record) | Op::ForceClose(record) => {
            inv.arg(record.token);
        }
        _ => {
            inv.arg("");
        }
    }
    let reply: Vec<i64> = match tokio::time::timeout(timeout, inv.invoke_async(conn)).await {
        Err(_) => return Err(conn.unanswered(timeout)),
        Ok(Err(e)) => return Err(conn.failed(&e, timeout)),
        Ok(Ok(reply)) => reply,
    };
    let reply = parse(&reply, local.max_open_for)?;
    if reply.flags & EXHAUSTED != 0 {
        // Applied, the unchanged decision would read as the fleet's
        // answer to this instance's trip or close: decided locally
        // instead, as with Redis out, until an operator resets it.
        return Err(BackendError::Protocol(
            "shared breaker decision version exhausted (above 2^53 - 992): \
             delete the decision key and restart the instances"
                .into(),
        ));
    }
    Ok(reply)
}

/// The reply as a decision, every field checked; an open deadline is
/// relative to the script's own `TIME` and capped at `max_open_for`.
pub(super) fn parse(reply: &[i64], max_open_for: Duration) -> Result<Reply, BackendError> {
    let bad = || BackendError::Protocol("malformed breaker script reply".into());
    let &[version, state, until, streak, now, flags] = reply else {
        return Err(bad());
    };
    let (Ok(version), Ok(streak)) = (u64::try_from(version), u8::try_from(streak)) else {
        return Err(bad());
    };
    if streak > 15 || until < 0 || now < 0 || flags < 0 {
        return Err(bad());
    }
    let longest: Duration = fusebox::breaker::Config::MAX_OPEN_FOR.into();
    let (state, open_remaining, fleet_remaining) = match state {
        0 => (State::Closed, None, None),
        1 => {
            let left = until.saturating_sub(now).max(0).unsigned_abs();
            let left = Duration::from_micros(left);
            (
                State::Open,
                Some(left.min(max_open_for).into()),
                Some(left.min(longest)),
            )
        }
        2 => (State::HalfOpen, None, None),
        3 => (State::ForcedOpen, None, None),
        _ => return Err(bad()),
    };
    let reopen_streak = if matches!(state, State::Open | State::HalfOpen) {
        streak
    } else {
        0
    };
    Ok(Reply {
        decision: Decision {
            version,
            state,
            open_remaining,
            reopen_streak,
        },
        flags,
        fleet_remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_validated() {
        let max = Duration::from_secs(60);
        assert!(parse(&[1, 0, 0, 0, 5], max).is_err());
        assert!(parse(&[-1, 0, 0, 0, 5, 0], max).is_err());
        assert!(parse(&[1, 9, 0, 0, 5, 0], max).is_err());
        assert!(parse(&[1, 1, 0, 16, 5, 0], max).is_err());
        let open = parse(&[3, 1, 1_000_000_000_000, 2, 5, 8], max).unwrap();
        assert_eq!(open.decision.state, State::Open);
        assert_eq!(open.decision.open_remaining, Some(max.into()));
        assert_eq!(open.decision.reopen_streak, 2);
        // The fleet's own opening is kept uncapped by `max_open_for`, up
        // to the longest any configuration has.
        let longest: Duration = fusebox::breaker::Config::MAX_OPEN_FOR.into();
        assert_eq!(open.fleet_remaining, Some(longest));
        let two_min = parse(&[3, 1, 120_000_005, 2, 5, 8], max).unwrap();
        assert_eq!(two_min.decision.open_remaining, Some(max.into()));
        assert_eq!(two_min.fleet_remaining, Some(Duration::from_secs(120)));
        assert_eq!(
            parse(&[3, 2, 0, 2, 5, 8], max).unwrap().fleet_remaining,
            None
        );
        let expired = parse(&[3, 1, 4, 0, 5, 0], max).unwrap();
        assert_eq!(
            expired.decision.open_remaining,
            Some(fusebox::Duration::ZERO)
        );
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("fusebox", "payments", 2);
        assert_eq!(keys.decision, "fusebox:{breaker:payments}:decision");
        assert_eq!(keys.slots[1], "fusebox:{breaker:payments}:trial:2");
        assert_eq!(
            keys.record(0xf3),
            "fusebox:{breaker:payments}:record:00000000000000f3"
        );
    }

    /// The script's bound on a stored opening is the longest open time a
    /// configuration may have (plus its clock-skew allowance).
    #[test]
    fn the_scripts_longest_opening_is_the_cores() {
        let micros = fusebox::breaker::Config::MAX_OPEN_FOR.as_micros();
        assert!(BREAKER_LUA.contains(&format!("local LONGEST = {micros} + SKEW")));
    }
}
