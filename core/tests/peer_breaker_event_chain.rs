//! Resilience4j's event stream (`CircuitBreakerOnStateTransitionEvent`,
//! asserted in `CircuitBreakerStateMachineTest` after every step) and
//! Polly's `onBreak`/`onHalfOpen`/`onReset` delegates, as a property of
//! random histories: the transitions fusebox returns (from
//! `Permit::transition`, `Rejected::transition`, `record`, `force_open`,
//! `force_close`, `reset`, `trip`) are each returned once, to one caller,
//! so followed alone they form one unbroken chain (each `from` is the
//! previous `to`), stamped with the `now` of the call that made it; the
//! state read after each step is the chain's last state, or what time
//! makes of it (an Open whose time has passed reads HalfOpen; a HalfOpen
//! past `max_half_open` reads Open); `Metrics::trips` counts exactly the
//! transitions into Open from Closed or HalfOpen, `rejected` the refused
//! acquires, and successes + failures + ignored + abandoned the permits
//! settled, since creation or the last `reset`.
//!
//! Random configurations (consecutive, rate and slow-call rules, half-open
//! limits, growing open times; with the features, a half-open timeout and
//! a time window), starting at instants across the wrapping ranges, half
//! of them after more than 2^16 generations; operations: acquire (now or
//! a stale clock), record (success, failure, slow, ignored), drop, waits
//! from microseconds to days, the manual transitions, fleet decisions
//! merged (new and repeated versions) and `set_config`.

#![cfg(not(miri))] // proptest's failure file needs getcwd

use fusebox::breaker::{
    CircuitBreaker, Config, Decision, Metrics, Outcome, Permit, State, Transition,
};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(kind: u8, r: &mut Rng) -> Config {
    let s = Duration::from_secs;
    let mut b = Config::builder()
        .open_for(s(1 + r.below(3)))
        .half_open_permits(1 + r.below(3) as u8)
        .close_after(1 + r.below(3) as u8);
    if r.below(2) == 0 {
        b = b.max_open_for(s(16));
    }
    #[cfg(feature = "half-open-timeout")]
    if r.below(2) == 0 {
        b = b.max_half_open(s(2 + r.below(3)));
    }
    match kind % 4 {
        0 => b.consecutive_failures(1 + r.below(4) as u32),
        1 => b
            .failure_rate(50)
            .window(4)
            .minimum_calls(2)
            .slow_call(Duration::from_millis(100), 50),
        2 => b
            .consecutive_failures(3)
            .failure_rate(60)
            .window(8)
            .minimum_calls(5),
        #[cfg(feature = "time-window")]
        _ => b
            .time_window(s(4), 4)
            .failure_count(2)
            .failure_rate(50)
            .minimum_calls(4),
        #[cfg(not(feature = "time-window"))]
        _ => b.slow_call(Duration::from_millis(100), 100).window(2),
    }
    .build()
    .unwrap()
}

const BASES: [u64; 6] = [
    1_000_000,
    (1 << 32) - 5_000_000,
    (1 << 26) * 1_024 - 5_000_000,
    (1 << 32) * 1_024 - 5_000_000,
    (1 << 42) - 5_000_000,
    u64::MAX - 400 * 86_400_000_000,
];

/// What the chain allows `state(now)` to read when it ends in `tracked`.
fn reads_as(tracked: State, read: State) -> bool {
    match tracked {
        State::Open => matches!(read, State::Open | State::HalfOpen),
        State::HalfOpen => matches!(read, State::HalfOpen | State::Open),
        other => read == other,
    }
}

struct Chain {
    tracked: State,
    trips: u64,
    rejected: u64,
    settled: u64,
}

impl Chain {
    fn follow(
        &mut self,
        t: Option<Transition>,
        now: Instant,
        step: usize,
    ) -> Result<(), TestCaseError> {
        self.follow_counting(t, now, step, true)
    }

    /// `follow`, for a transition that counts as a trip if `counted`.
    fn follow_counting(
        &mut self,
        t: Option<Transition>,
        now: Instant,
        step: usize,
        counted: bool,
    ) -> Result<(), TestCaseError> {
        if let Some(t) = t {
            prop_assert_eq!(t.from, self.tracked, "step {}: {:?}", step, t);
            prop_assert_ne!(t.from, t.to, "step {}", step);
            prop_assert_eq!(t.at, now, "step {}", step);
            if counted && t.to == State::Open && matches!(t.from, State::Closed | State::HalfOpen) {
                self.trips += 1;
            }
            self.tracked = t.to;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_lines)] // one match arm per operation
fn run(kind: u8, base: usize, aged: bool, seed: u64, len: usize) -> Result<(), TestCaseError> {
    let mut r = Rng(seed | 1);
    let cfg = config(kind, &mut r);
    let b = CircuitBreaker::new(cfg);
    let mut now = Instant::from_micros(BASES[base % BASES.len()]);
    if aged {
        for _ in 0..33_000 {
            b.force_open(now);
            b.force_close(now);
        }
    }
    let _ = b.reset(now);
    let mut chain = Chain {
        tracked: State::Closed,
        trips: 0,
        rejected: 0,
        settled: 0,
    };
    let mut held: Vec<Permit<'_>> = Vec::new();
    let (mut version, mut merged) = (0u64, 0u64);
    for step in 0..len {
        match r.below(21) {
            0..=6 => {
                // A stale clock now and then (up to 0.5 s behind).
                let at = if r.below(8) == 0 {
                    now - Duration::from_micros(r.below(500_000))
                } else {
                    now
                };
                match b.try_acquire(at) {
                    Ok(p) => {
                        chain.follow(p.transition(), at, step)?;
                        if held.len() < 6 {
                            held.push(p);
                        } else {
                            chain.settled += 1;
                            drop(p);
                        }
                    }
                    Err(rejected) => {
                        chain.rejected += 1;
                        prop_assert_ne!(rejected.state, State::Closed);
                        chain.follow(rejected.transition, at, step)?;
                    }
                }
            }
            7..=12 if !held.is_empty() => {
                let p = held.swap_remove(r.below(held.len() as u64) as usize);
                let (outcome, took) = match r.below(6) {
                    0 | 1 => (Outcome::Success, Duration::from_millis(1)),
                    2 | 3 => (Outcome::Failure, Duration::from_millis(1)),
                    4 => (Outcome::Success, Duration::from_millis(150)),
                    _ => (Outcome::Ignored, Duration::ZERO),
                };
                chain.settled += 1;
                chain.follow(p.record(outcome, now, took), now, step)?;
            }
            13 if !held.is_empty() => {
                let p = held.swap_remove(r.below(held.len() as u64) as usize);
                chain.settled += 1;
                drop(p);
            }
            14..=16 => {
                let us = match r.below(4) {
                    0 => r.below(2_000),
                    1 => r.below(3_000_000),
                    2 => 500_000 + r.below(8_000_000),
                    _ => r.below(3 * 86_400_000_000),
                };
                now += Duration::from_micros(us);
            }
            17 => {
                let t = match r.below(4) {
                    0 => b.force_open(now),
                    1 => b.force_close(now),
                    2 => b.trip(now),
                    _ => {
                        let t = b.reset(now);
                        chain.trips = 0;
                        chain.rejected = 0;
                        // Permits still held settle after the reset.
                        chain.settled = 0;
                        if chain.tracked == State::Closed {
                            prop_assert_eq!(t, None, "step {}: closed to closed", step);
                        } else {
                            prop_assert!(
                                t.is_some(),
                                "step {}: reset from {:?}",
                                step,
                                chain.tracked
                            );
                        }
                        t
                    }
                };
                chain.follow(t, now, step)?;
            }
            18 => {
                // A fleet decision (Decision docs): mostly newer, sometimes
                // repeated (stale: refused, nothing changes).
                if r.below(4) != 0 {
                    version += 1;
                }
                let state = [
                    State::Closed,
                    State::Open,
                    State::HalfOpen,
                    State::ForcedOpen,
                ][r.below(4) as usize];
                let streak = if matches!(state, State::Open | State::HalfOpen) {
                    r.below(16) as u8
                } else {
                    0
                };
                let d = Decision {
                    version,
                    state,
                    open_remaining: (state == State::Open)
                        .then(|| Duration::from_micros(r.below(20_000_000))),
                    reopen_streak: streak,
                };
                match b.merge(&d, now) {
                    // "The local window and counters are kept": a merged
                    // opening is not one of this breaker's trips.
                    Ok(t) => {
                        prop_assert!(
                            version > merged,
                            "step {}: version {} applied again",
                            step,
                            version
                        );
                        merged = version;
                        chain.follow_counting(t, now, step, false)?;
                        prop_assert!(
                            reads_as(state, b.state(now)),
                            "step {}: decided {:?}, reads {:?}",
                            step,
                            state,
                            b.state(now)
                        );
                    }
                    Err(e) => {
                        prop_assert_eq!(version, merged, "step {}: {:?}", step, e);
                    }
                }
            }
            19 => {
                // Retuned live (`set_config`): thresholds, half-open limits
                // and open times change, the state and counters stay; a
                // change of the fixed shape is refused, changing nothing.
                let before = (b.state(now), b.metrics());
                let _ = b.set_config(config(kind, &mut r));
                prop_assert_eq!((b.state(now), b.metrics()), before, "step {}", step);
            }
            _ => {}
        }
        let read = b.state(now);
        prop_assert!(
            reads_as(chain.tracked, read),
            "step {}: the chain ends in {:?}, state reads {:?}",
            step,
            chain.tracked,
            read
        );
        let m: Metrics = b.metrics();
        prop_assert_eq!(m.trips, chain.trips, "step {}", step);
        prop_assert_eq!(m.rejected, chain.rejected, "step {}", step);
        prop_assert_eq!(
            m.successes + m.failures + m.ignored + m.abandoned,
            chain.settled,
            "step {}",
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn returned_transitions_form_one_chain(
        kind in 0u8..4,
        base in 0usize..6,
        aged in proptest::bool::weighted(0.25),
        seed in any::<u64>(),
        len in 1usize..600,
    ) {
        run(kind, base, aged, seed, len)?;
    }
}

/// The same chain with threads racing (gobreaker's and Resilience4j's
/// concurrency tests: one transition event per change, however many
/// callers race): the transitions the threads are returned, put
/// together, are one path from Closed (each state entered as often as
/// left, but the path's end, entered once more), that end is what the
/// breaker reads (or what time makes of it), and `trips` counts exactly
/// the openings from Closed or HalfOpen among them. A transition returned
/// twice, or to no one, unbalances the path. (400 seeds passed at both
/// widths, three runs each; 24 kept.)
#[test]
#[allow(clippy::too_many_lines)] // one match arm per operation
fn racing_callers_are_returned_one_path() {
    const THREADS: u64 = 4;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    fn index(s: State) -> usize {
        match s {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
        }
    }
    for seed in 1..=24u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let kind = (seed % 4) as u8;
        let b = CircuitBreaker::new(config(kind, &mut r));
        let base = BASES[(seed % 6) as usize];
        let clock = AtomicU64::new(base);
        let version = AtomicU64::new(0);
        // Each transition, and whether a merge made it.
        let log: Mutex<Vec<(Transition, bool)>> = Mutex::new(Vec::new());
        let barrier = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for id in 0..THREADS {
                let (b, clock, version, log, barrier) = (&b, &clock, &version, &log, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut r = Rng(seed ^ ((id + 1) * 0x2545_f491));
                    let mut mine = Vec::new();
                    let mut held: Vec<Permit<'_>> = Vec::new();
                    for _ in 0..20_000 {
                        let now = Instant::from_micros(clock.load(Ordering::Relaxed));
                        let op = r.below(40);
                        let t = match op {
                            0..=14 => match b.try_acquire(now) {
                                Ok(p) => {
                                    let t = p.transition();
                                    held.push(p);
                                    t
                                }
                                Err(e) => e.transition,
                            },
                            15..=30 if !held.is_empty() => {
                                let p = held.swap_remove(r.below(held.len() as u64) as usize);
                                let o = match r.below(4) {
                                    0 | 1 => Outcome::Failure,
                                    2 => Outcome::Success,
                                    _ => Outcome::Ignored,
                                };
                                p.record(o, now, Duration::from_millis(r.below(200)))
                            }
                            31 if !held.is_empty() => {
                                drop(held.swap_remove(0));
                                None
                            }
                            32..=35 => {
                                clock.fetch_add(r.below(400_000), Ordering::Relaxed);
                                None
                            }
                            36 => b.trip(now),
                            37 => match r.below(8) {
                                0 => b.force_open(now),
                                1 => b.force_close(now),
                                _ => None,
                            },
                            38 => {
                                let v = version.fetch_add(1, Ordering::Relaxed) + 1;
                                let state = [State::Closed, State::Open, State::HalfOpen]
                                    [r.below(3) as usize];
                                let d = Decision {
                                    version: v,
                                    state,
                                    open_remaining: (state == State::Open)
                                        .then(|| Duration::from_micros(r.below(3_000_000))),
                                    reopen_streak: 0,
                                };
                                b.merge(&d, now).ok().flatten()
                            }
                            _ => None,
                        };
                        if let Some(t) = t {
                            assert_eq!(t.at, now);
                            mine.push((t, op == 38));
                        }
                        if held.len() > 4 {
                            drop(held.swap_remove(0));
                        }
                    }
                    drop(held);
                    log.lock().unwrap().extend(mine);
                });
            }
        });
        let log = log.into_inner().unwrap();
        // Entered minus left, the start counted as entering Closed: 1 for
        // the path's end, 0 for every other state.
        let mut balance = [1i64, 0, 0, 0];
        let mut trips = 0;
        for (t, _) in &log {
            assert_ne!(t.from, t.to);
            balance[index(t.from)] -= 1;
            balance[index(t.to)] += 1;
        }
        let ends: Vec<_> = (0..4).filter(|&i| balance[i] == 1).collect();
        assert!(
            ends.len() == 1 && balance.iter().all(|&x| x == 0 || x == 1),
            "seed {seed}: the transitions are no path: {balance:?}"
        );
        let end = [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
        ][ends[0]];
        let now = Instant::from_micros(clock.load(Ordering::Relaxed));
        assert!(
            reads_as(end, b.state(now)),
            "seed {seed}: the path ends in {end:?}, the breaker reads {:?}",
            b.state(now)
        );
        // Merged openings are the deciding instance's trips, not this one's.
        for (t, merged) in &log {
            if !merged && t.to == State::Open && matches!(t.from, State::Closed | State::HalfOpen) {
                trips += 1;
            }
        }
        assert_eq!(b.metrics().trips, trips, "seed {seed}");
        assert!(
            log.len() > 100,
            "seed {seed}: only {} transitions",
            log.len()
        );
    }
}
