//! `CircuitBreaker::restore` of any snapshot at all (corrupt, hostile,
//! contradictory, from another configuration) into any configuration, at
//! any `now` (at the clock's far end, past 2⁴⁵ µs ≈ 407 days, only the
//! refusals and the absence of panics are checked), against the docs
//! alone:
//!
//! * refused exactly when a field is out of the range `SnapshotError`
//!   names ("`consecutive_failures` above 255", "`reopen_streak` above
//!   15", "`window_calls` above 64, or outcome bits set beyond it",
//!   "`Open` without `open_remaining`, or a remaining time above
//!   `MAX_OPEN_FOR` plus one 1.024 ms tick", "a field set that the
//!   snapshot's state cannot have", "counters that cannot be: their sum
//!   overflows `u64`, or more slow calls than recorded ones"), with one of
//!   the errors that apply, and then "nothing is changed";
//! * otherwise accepted ("a snapshot taken under another configuration is
//!   fitted to this one, never refused for it"), and the breaker still
//!   keeps its own configuration's limits afterwards: a closed one opens
//!   at exactly the record the policies say (the failure count one short
//!   of the threshold at most, the kept window "trips at the next outcome
//!   that is evaluated"), neither earlier nor later; an open one admits nothing before
//!   its fitted deadline and a trial at it; a half-open one admits its
//!   permits and no more, a failed trial reopens it with the streak grown
//!   and `close_after` successes (one short at most restored) close it; a
//!   forced-open one admits nothing. Counters read back as restored, then
//!   count on from there (wrapping at the counters' width).
//!
//! Sound-but-checked (review of persisted state): no case of these found
//! a breaker that admits beyond its configuration or never trips again.
#![cfg(not(miri))]

use crate::common::NARROW;
use fusebox::breaker::*;
use fusebox::{Duration, Instant};
use proptest::prelude::*;

const TICK: u64 = 1_024;

/// A valid configuration of either or both count-based policies, with or
/// without a slow-call policy.
fn cfg() -> impl Strategy<Value = Config> {
    (
        prop::option::of(prop_oneof![Just(1u32), Just(255), 1u32..8]),
        prop::option::of(prop_oneof![Just(1u8), Just(100), 1u8..=100]),
        prop::option::of((
            1u64..1_000_000,
            prop_oneof![Just(1u8), Just(100), 1u8..=100],
        )),
        prop_oneof![Just(1u8), Just(64), 1u8..=64],
        1u8..=64,
        prop_oneof![
            Just(1u64),
            1u64..5_000_000,
            Just(Config::MAX_OPEN_FOR.as_micros())
        ],
        0u32..16,
        prop_oneof![Just(1u8), 1u8..=8],
        prop::option::of(1u8..=8),
    )
        .prop_filter_map("valid", |(cf, fr, slow, w, m, open, grow, hop, ca)| {
            let mut b = Config::builder()
                .open_for(Duration::from_micros(open))
                .max_open_for(Duration::from_micros(
                    (open << grow).min(Config::MAX_OPEN_FOR.as_micros()),
                ))
                .half_open_permits(hop);
            if let Some(x) = cf {
                b = b.consecutive_failures(x);
            }
            if fr.is_some() || slow.is_some() {
                b = b.window(w).minimum_calls(m.min(w));
            }
            if let Some(x) = fr {
                b = b.failure_rate(x);
            }
            if let Some((t, r)) = slow {
                b = b.slow_call(Duration::from_micros(t), r);
            }
            if let Some(x) = ca {
                b = b.close_after(x);
            }
            b.build().ok()
        })
}

fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1_000,
        1 => Just(u64::MAX),
        1 => (0u64..4).prop_map(|k| u64::MAX - k),
        1 => any::<u64>(),
        1 => (0u64..4).prop_map(|k| (1 << 32) - 2 + k),
    ]
}

fn metrics() -> impl Strategy<Value = Metrics> {
    (
        counter(),
        counter(),
        counter(),
        counter(),
        counter(),
        counter(),
        counter(),
    )
        .prop_map(
            |(successes, failures, slow_calls, rejected, trips, abandoned, ignored)| Metrics {
                successes,
                failures,
                slow_calls,
                rejected,
                trips,
                abandoned,
                ignored,
            },
        )
}

/// Counters a breaker can have: the five call counts within `u64`
/// together, slow calls no more than the recorded ones.
fn possible(mut m: Metrics) -> Metrics {
    let mut room = u64::MAX;
    for c in [
        &mut m.successes,
        &mut m.failures,
        &mut m.ignored,
        &mut m.abandoned,
        &mut m.rejected,
    ] {
        *c = (*c).min(room);
        room -= *c;
    }
    m.slow_calls = m.slow_calls.min(m.successes + m.failures);
    m
}

/// A snapshot whose fields are each in range and fit its state.
fn valid_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        0u8..4,
        prop_oneof![Just(0u16), Just(255), 0u16..=255],
        prop_oneof![Just(0u8), Just(u8::MAX), any::<u8>()],
        prop_oneof![Just(0u8), Just(15), 0u8..16],
        prop_oneof![
            Just(0u64),
            Just(Config::MAX_OPEN_FOR.as_micros() + TICK),
            0u64..(1 << 35).min(Config::MAX_OPEN_FOR.as_micros() + TICK),
            0u64..20_000_000,
        ],
        prop_oneof![Just(0u8), Just(64), 0u8..=64],
        (any::<u64>(), any::<u64>()),
        metrics(),
    )
        .prop_map(|(st, cf, hs, rs, left, wc, (f, sl), m)| {
            let state = [
                State::Closed,
                State::Open,
                State::HalfOpen,
                State::ForcedOpen,
            ][usize::from(st)];
            let closed = state == State::Closed;
            let in_window = mask(u32::from(wc));
            Snapshot {
                state,
                consecutive_failures: if closed { cf } else { 0 },
                half_open_successes: if state == State::HalfOpen { hs } else { 0 },
                reopen_streak: if matches!(state, State::Open | State::HalfOpen) {
                    rs
                } else {
                    0
                },
                open_remaining: (state == State::Open).then_some(Duration::from_micros(left)),
                window_calls: if closed { wc } else { 0 },
                window_failures: if closed { f & in_window } else { 0 },
                window_slow: if closed { sl & in_window } else { 0 },
                metrics: possible(m),
            }
        })
}

/// `s` with field number `field` set out of its range or its state
/// (or, for a few, to another value in range), from `x` and `edge`.
fn corrupted(mut s: Snapshot, field: u8, x: u64, edge: u64) -> Snapshot {
    let past_window = 1u64.checked_shl(u32::from(s.window_calls)).unwrap_or(0);
    let states = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
    ];
    let m = &mut s.metrics;
    match field {
        0 => s.consecutive_failures = 256 + (x % 65_280) as u16,
        1 => s.reopen_streak = 16 + (x % 240) as u8,
        2 => s.window_calls = 65 + (x % 191) as u8,
        3 => s.window_failures |= past_window | (edge & 1 << 63),
        4 => s.window_slow |= past_window,
        5 => {
            let past = Config::MAX_OPEN_FOR + Duration::from_micros(TICK + 1 + x % 1_000);
            s.open_remaining = [None, Some(Duration::MAX), Some(past)][(x % 3) as usize];
        }
        6 => s.state = states[(x % 4) as usize],
        7 => s.half_open_successes = 1 + (x % 255) as u8,
        8 => m.slow_calls = m.successes.wrapping_add(m.failures).wrapping_add(1 + x % 3),
        // The five call counts one to three past `u64::MAX` together.
        9 => m.rejected = (u64::MAX - m.calls()).wrapping_add(1 + x % 3),
        10 => m.trips = edge,
        _ => s.reopen_streak = (x % 16) as u8,
    }
    s
}

/// Any snapshot: a valid one, one with a field out of range or out of
/// its state, or one with every field drawn at random.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    let corrupt = (
        valid_snapshot(),
        0u8..12,
        any::<u64>(),
        prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
    )
        .prop_map(|(s, field, x, edge)| corrupted(s, field, x, edge));
    let random = (
        0u8..4,
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        prop::option::of(any::<u64>()),
        any::<u8>(),
        (any::<u64>(), any::<u64>()),
        metrics(),
    )
        .prop_map(|(st, cf, hs, rs, left, wc, (f, sl), m)| Snapshot {
            state: [
                State::Closed,
                State::Open,
                State::HalfOpen,
                State::ForcedOpen,
            ][usize::from(st)],
            consecutive_failures: cf,
            half_open_successes: hs,
            reopen_streak: rs,
            open_remaining: left.map(Duration::from_micros),
            window_calls: wc,
            window_failures: f,
            window_slow: sl,
            metrics: m,
        });
    prop_oneof![5 => valid_snapshot(), 4 => corrupt, 1 => random]
}

fn mask(calls: u32) -> u64 {
    if calls >= 64 {
        u64::MAX
    } else {
        (1u64 << calls) - 1
    }
}

/// The errors the `SnapshotError` docs name for `s` (empty: acceptable).
fn refusals(s: &Snapshot) -> Vec<SnapshotError> {
    let mut errs = Vec::new();
    if s.consecutive_failures > 255 {
        errs.push(SnapshotError::ConsecutiveFailures(s.consecutive_failures));
    }
    if s.reopen_streak > 15 {
        errs.push(SnapshotError::ReopenStreak(s.reopen_streak));
    }
    let in_window = mask(u32::from(s.window_calls));
    if s.window_calls > 64 || s.window_failures & !in_window != 0 || s.window_slow & !in_window != 0
    {
        errs.push(SnapshotError::Window);
    }
    let max_left = Config::MAX_OPEN_FOR + Duration::from_micros(TICK);
    if s.state == State::Open && !matches!(s.open_remaining, Some(l) if l <= max_left) {
        errs.push(SnapshotError::OpenRemaining);
    }
    let window = s.window_calls != 0 || s.window_failures != 0 || s.window_slow != 0;
    let inconsistent = (s.state != State::Closed && (s.consecutive_failures != 0 || window))
        || (s.state != State::HalfOpen && s.half_open_successes != 0)
        || (s.state != State::Open && s.open_remaining.is_some())
        || (matches!(s.state, State::Closed | State::ForcedOpen) && s.reopen_streak != 0);
    if inconsistent {
        errs.push(SnapshotError::Inconsistent);
    }
    let m = &s.metrics;
    let recorded = u128::from(m.successes) + u128::from(m.failures);
    let sum = recorded + u128::from(m.ignored) + u128::from(m.abandoned) + u128::from(m.rejected);
    if sum > u128::from(u64::MAX) || u128::from(m.slow_calls) > recorded {
        errs.push(SnapshotError::Metrics);
    }
    errs
}

/// A counter as the breaker keeps it: the full `u64`, or its low 32 bits
/// on Cortex-M.
fn kept(v: u64) -> u64 {
    if NARROW {
        v & u64::from(u32::MAX)
    } else {
        v
    }
}

fn kept_metrics(m: Metrics) -> Metrics {
    Metrics {
        successes: kept(m.successes),
        failures: kept(m.failures),
        slow_calls: kept(m.slow_calls),
        rejected: kept(m.rejected),
        trips: kept(m.trips),
        abandoned: kept(m.abandoned),
        ignored: kept(m.ignored),
    }
}

/// The open time for `streak` re-openings (the config docs: `open_for`
/// doubled per streak, capped at `max_open_for`).
fn open_time(c: &Config, streak: u32) -> u64 {
    (c.open_for().as_micros().saturating_mul(1 << streak)).min(c.max_open_for().as_micros())
}

/// The documented window model of a closed breaker: the kept outcomes,
/// oldest first, and the failures in a row.
struct Closed {
    outcomes: Vec<(bool, bool)>,
    full_once: bool,
    in_a_row: u32,
}

/// Drives a restored closed breaker with `records` (failure?, slow?) at
/// `now`, checking that it opens at exactly the record the documented
/// policies say and never admits a refused call. Returns how many records
/// it took (all of them if it never opened).
fn drive_closed(
    breaker: &CircuitBreaker,
    config: &Config,
    model: &mut Closed,
    records: &[(bool, bool)],
    now: Instant,
) -> Result<(u64, u64, u64, bool), TestCaseError> {
    let size = usize::from(config.window());
    let windowed = config.failure_rate().is_some() || config.slow_call().is_some();
    let slow_time = config.slow_call().map(|(t, _)| t);
    let (mut failures, mut successes, mut slow) = (0u64, 0u64, 0u64);
    for (i, &(failure, want_slow)) in records.iter().enumerate() {
        let is_slow = want_slow && slow_time.is_some();
        let elapsed = if is_slow {
            slow_time.unwrap()
        } else {
            Duration::ZERO
        };
        // The contract's verdict.
        let in_a_row = if failure {
            (model.in_a_row + 1).min(255)
        } else {
            0
        };
        let by_count = config
            .consecutive_failures()
            .is_some_and(|t| in_a_row >= u32::from(t));
        let mut by_rate = false;
        if windowed {
            let before = model.outcomes.len();
            model.outcomes.push((failure, is_slow));
            if model.outcomes.len() > size {
                model.outcomes.remove(0);
            }
            let calls = model.outcomes.len() as u64;
            let completes =
                !model.full_once && before < size && calls >= u64::from(config.minimum_calls());
            if model.outcomes.len() == size {
                model.full_once = true;
            }
            let evaluated = failure || is_slow || completes;
            let fails = model.outcomes.iter().filter(|o| o.0).count() as u64;
            let slows = model.outcomes.iter().filter(|o| o.1).count() as u64;
            let over =
                |count: u64, p: Option<u8>| p.is_some_and(|p| count * 100 >= u64::from(p) * calls);
            by_rate = evaluated
                && calls >= u64::from(config.minimum_calls())
                && (over(fails, config.failure_rate())
                    || over(slows, config.slow_call().map(|x| x.1)));
        }
        model.in_a_row = in_a_row;
        let permit = breaker.try_acquire(now);
        prop_assert!(permit.is_ok(), "record {i}: closed breaker refused a call");
        let permit = permit.unwrap();
        prop_assert!(!permit.is_trial());
        let t = permit.record(
            if failure {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            now,
            elapsed,
        );
        if failure {
            failures += 1;
        } else {
            successes += 1;
        }
        slow += u64::from(is_slow);
        let trips = by_count || by_rate;
        prop_assert_eq!(
            t.map(|t| (t.from, t.to)),
            trips.then_some((State::Closed, State::Open)),
            "record {} ({:?}): model window {:?}, in a row {}",
            i,
            (failure, is_slow),
            &model.outcomes,
            in_a_row
        );
        if trips {
            prop_assert!(breaker.try_acquire(now).is_err(), "open after the trip");
            return Ok((successes, failures, slow, true));
        }
    }
    Ok((successes, failures, slow, false))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn any_snapshot_is_refused_as_documented_or_leaves_the_limits_intact(
        c in cfg(),
        s in snapshot(),
        now in prop_oneof![
            12 => 0u64..(1 << 45),
            1 => Just(u64::MAX),
            1 => (0u64..(1 << 20)).prop_map(|k| u64::MAX - k),
            1 => any::<u64>(),
        ],
        records in prop::collection::vec((any::<bool>(), any::<bool>()), 0..300),
        fail_trial in any::<bool>(),
    ) {
        let b = CircuitBreaker::new(c);
        let at = Instant::from_micros(now);
        // Some state of its own first, so that "unchanged" says something.
        if let Ok(p) = b.try_acquire(at) {
            p.record(Outcome::Failure, at, Duration::ZERO);
        }
        let before = (b.snapshot(at), b.metrics(), b.state(at));
        let errs = refusals(&s);
        match b.restore(&s, at) {
            Err(e) => {
                prop_assert!(errs.contains(&e), "refused with {:?}, the docs name {:?} for {:?}", e, errs, s);
                prop_assert_eq!((b.snapshot(at), b.metrics(), b.state(at)), before, "changed by a refused restore");
                return Ok(());
            }
            Ok(()) => prop_assert!(errs.is_empty(), "accepted {:?}, which the docs refuse as {:?}", s, errs),
        }
        prop_assert_eq!(b.metrics(), kept_metrics(s.metrics), "counters as restored");
        // The clock's far end saturates; behaviour is checked where the
        // clock has room for an open time.
        if now >= 1 << 45 {
            let _ = b.try_acquire(at).map(|p| p.record(Outcome::Failure, at, Duration::ZERO));
            return Ok(());
        }
        match s.state {
            State::Closed => {
                prop_assert_eq!(b.state(at), State::Closed);
                let windowed = c.failure_rate().is_some() || c.slow_call().is_some();
                let (outcomes, full_once) = if windowed {
                    let calls = s.window_calls.min(c.window());
                    let drop = u32::from(s.window_calls - calls);
                    let kept: Vec<_> = (0..u32::from(calls))
                        .map(|i| ((s.window_failures >> (i + drop)) & 1 == 1, (s.window_slow >> (i + drop)) & 1 == 1))
                        .collect();
                    (kept, calls == c.window())
                } else {
                    (Vec::new(), false)
                };
                let in_a_row = match c.consecutive_failures() {
                    Some(t) => u32::from(s.consecutive_failures.min(t - 1)),
                    None => u32::from(s.consecutive_failures),
                };
                let mut model = Closed { outcomes, full_once, in_a_row };
                // Always ends with enough failures to trip any policy.
                let mut all = records.clone();
                all.extend(std::iter::repeat_n((true, true), 300));
                let (succ, fail, slow, tripped) = drive_closed(&b, &c, &mut model, &all, at)?;
                prop_assert!(tripped, "never tripped after {} records", all.len());
                let m = s.metrics;
                prop_assert_eq!(b.metrics(), kept_metrics(Metrics {
                    successes: m.successes.wrapping_add(succ),
                    failures: m.failures.wrapping_add(fail),
                    slow_calls: m.slow_calls.wrapping_add(slow),
                    trips: m.trips.wrapping_add(1),
                    rejected: m.rejected.wrapping_add(1),
                    ..m
                }));
            }
            State::Open => {
                let streak = u32::from(s.reopen_streak);
                let l = s.open_remaining.unwrap().as_micros().min(open_time(&c, streak));
                let until = if l == 0 { now / TICK * TICK } else { (now + l).div_ceil(TICK) * TICK };
                if until > now {
                    let r = b.try_acquire(at);
                    prop_assert!(r.is_err(), "admitted {} µs before the deadline", until - now);
                    let r = r.unwrap_err();
                    prop_assert_eq!((r.state, r.retry_after), (State::Open, Some(Duration::from_micros(until - now))));
                    let r = b.try_acquire(Instant::from_micros(until - 1));
                    prop_assert!(r.is_err(), "admitted 1 µs before the deadline");
                }
                let then = Instant::from_micros(until.max(now));
                let trial = b.try_acquire(then);
                prop_assert!(trial.as_ref().is_ok_and(Permit::is_trial), "no trial at the deadline");
                let t = trial.unwrap().record(Outcome::Failure, then, Duration::ZERO);
                prop_assert_eq!(t.map(|t| t.to), Some(State::Open));
                let grown = (streak + 1).min(15);
                let next = (then.as_micros() + open_time(&c, grown)).div_ceil(TICK) * TICK;
                let r = b.try_acquire(then).unwrap_err();
                prop_assert_eq!(r.retry_after, Some(Duration::from_micros(next - then.as_micros())), "reopened for the grown open time");
            }
            State::HalfOpen => {
                let permits = usize::from(c.half_open_permits());
                let mut held = Vec::new();
                for _ in 0..permits {
                    let p = b.try_acquire(at);
                    prop_assert!(p.as_ref().is_ok_and(Permit::is_trial), "a half-open permit refused");
                    held.push(p.unwrap());
                }
                let over = b.try_acquire(at);
                prop_assert!(over.is_err(), "admitted past the half-open permits");
                prop_assert_eq!(over.unwrap_err().state, State::HalfOpen);
                drop(held);
                if fail_trial {
                    let t = b.try_acquire(at).unwrap().record(Outcome::Failure, at, Duration::ZERO);
                    prop_assert_eq!(t.map(|t| t.to), Some(State::Open));
                    let grown = (u32::from(s.reopen_streak) + 1).min(15);
                    let next = (now + open_time(&c, grown)).div_ceil(TICK) * TICK;
                    prop_assert_eq!(b.try_acquire(at).unwrap_err().retry_after, Some(Duration::from_micros(next - now)));
                } else {
                    let have = s.half_open_successes.min(c.close_after() - 1);
                    for k in have..c.close_after() {
                        let p = b.try_acquire(at);
                        prop_assert!(p.as_ref().is_ok_and(Permit::is_trial), "success {} of {}: no trial", k, c.close_after());
                        let t = p.unwrap().record(Outcome::Success, at, Duration::ZERO);
                        let closes = k + 1 == c.close_after();
                        prop_assert_eq!(t.map(|t| t.to), closes.then_some(State::Closed), "success {} of {}", k + 1, c.close_after());
                    }
                }
            }
            State::ForcedOpen => {
                for later in [at, Instant::from_micros(now + 2 * Config::MAX_OPEN_FOR.as_micros())] {
                    let r = b.try_acquire(later);
                    prop_assert!(r.is_err(), "a forced-open breaker admitted a call");
                    let r = r.unwrap_err();
                    prop_assert_eq!((r.state, r.retry_after), (State::ForcedOpen, None));
                }
            }
        }
    }
}
