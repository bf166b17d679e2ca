//! "Never early", checked over the whole `u64` of time: the waits the core
//! tells (`retry_after`) are never too short, at any `now` (multiples of
//! the 32-bit words' wraps included), and the breaker's is never more than
//! one 1.024 ms tick and 6 µs too long (its documented rounding).
//!
//! The two properties are sound-but-checked (review of time, both word
//! widths): no early wait found. The last test pins a docs fix.
#![cfg(not(miri))]

use fusebox::breaker::{Config, State};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::{CircuitBreaker, Duration, Instant, KeyedLimiter, TokenBucket};
use proptest::prelude::*;

const TICK: u64 = 1_024;

/// Instants anywhere, and near the wraps of the breaker's 26-bit and
/// 32-bit tick words and of a 32-bit µs word (on either side).
fn any_now() -> impl Strategy<Value = u64> {
    let edge = prop_oneof![
        Just(1u64 << 26),
        Just(1u64 << 32),
        Just(1u64 << 31),
        Just(1u64 << 30)
    ];
    prop_oneof![
        0u64..u64::MAX / 2,
        (edge, 1u64..4_000, 0u64..4_000_000, any::<bool>()).prop_map(|(wrap, k, off, up)| {
            let base = (wrap * TICK).saturating_mul(k);
            if up {
                base.saturating_add(off)
            } else {
                base.saturating_sub(off)
            }
        }),
        (0u64..(1 << 40)).prop_map(|off| u64::MAX - off),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// A breaker tripped at `t` rejects until `t + open_for`, tells each
    /// rejected caller (at `t + a`) a wait that ends at or after that
    /// (within one tick), and lets a trial through when it ends.
    #[test]
    fn the_breakers_wait_is_never_early(
        t in any_now(),
        open_ms in 1u64..(4 * 3_600_000),
        frac in 0u64..1_000,
    ) {
        let open_for = Duration::from_micros(open_ms * 1_000 + frac);
        let b = CircuitBreaker::new(
            Config::builder().consecutive_failures(1).open_for(open_for).build().unwrap(),
        );
        let t = Instant::from_micros(t);
        let Some(end) = t.checked_add(open_for) else { return Ok(()) };
        // Room for a tick of rounding after the end.
        prop_assume!(end.checked_add(Duration::from_micros(TICK)).is_some());
        b.trip(t);
        let ask = t + Duration::from_micros(open_for.as_micros() * frac / 1_000);
        let r = b.try_acquire(ask).map(|_| ()).unwrap_err();
        prop_assert_eq!(r.state, State::Open);
        let wait = r.retry_after.unwrap();
        prop_assert!(ask + wait >= end, "told {:?} at {:?}: before {:?}", wait, ask, end);
        // Late by at most a tick and 6 µs (the 8 µs grid the open time is
        // kept on).
        prop_assert!(ask + wait <= end + Duration::from_micros(TICK + 6));
        // Still open just before the end (never early), and a trial at
        // the told instant.
        prop_assert_eq!(b.state(end - Duration::from_micros(1)), State::Open);
        prop_assert_eq!(b.state(ask + wait - Duration::from_micros(1)), State::Open);
        let trial = b.try_acquire(ask + wait);
        prop_assert!(trial.is_ok(), "no trial at the told {:?}", ask + wait);
    }

    /// A token bucket refusing at `t + a` tells a wait after which the
    /// same request succeeds, and a microsecond sooner it still fails.
    #[test]
    fn the_buckets_wait_is_never_early(
        t in any_now(),
        tokens in 1u32..2_000,
        period_ms in 1u64..60_000,
        gap in 0u64..2_000_000,
    ) {
        let Ok(q) = Quota::new(tokens, Duration::from_millis(period_ms)) else {
            return Ok(());
        };
        let t = Instant::from_micros(t);
        prop_assume!(t.checked_add(Duration::from_secs(7_200)).is_some());
        let bucket = TokenBucket::new(q);
        let keyed: KeyedLimiter<u8, 16> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
        // Drain both at `t`.
        for _ in 0..q.burst() {
            bucket.try_acquire(t).unwrap();
            keyed.try_acquire(&1, t).unwrap();
        }
        let ask = t + Duration::from_micros(gap % q.replenish_interval().as_micros().max(1));
        let Err(refusal) = bucket.try_acquire(ask) else {
            return Ok(()); // a token came back already
        };
        let wait = refusal.retry_after;
        prop_assert!(!wait.is_zero());
        prop_assert!(bucket.try_acquire(ask + wait - Duration::from_micros(1)).is_err());
        prop_assert!(bucket.try_acquire(ask + wait).is_ok(), "early: {:?} at {:?}", wait, ask);
        match keyed.try_acquire(&1, ask) {
            Ok(()) => prop_assert!(false, "keyed admitted at {:?}", ask),
            Err(e) => {
                let wait = fusebox::RetryAfter::retry_after(&e).unwrap();
                prop_assert!(keyed.try_acquire(&1, ask + wait - Duration::from_micros(1)).is_err());
                prop_assert!(keyed.try_acquire(&1, ask + wait).is_ok(), "keyed early: {:?}", wait);
            }
        }
    }
}

/// An open time off the 8 µs grid the live configuration keeps it on is
/// rounded up to that grid first, then its deadline up to a tick: the
/// breaker may stay open up to one tick *and* 6 µs longer than asked
/// (1 000 001 µs ending 6 µs before a tick boundary: 1 030 µs more), not
/// "at most one tick more" as `open_for`'s docs said. Late, never early.
/// Docs fix; both word widths.
#[test]
fn an_open_time_off_the_8_us_grid_may_open_a_tick_and_6_us_longer() {
    let open_for = Duration::from_micros(1_000_001);
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(open_for)
        .build()
        .unwrap();
    assert_eq!(config.open_for(), Duration::from_micros(1_000_008));
    let b = CircuitBreaker::new(config);
    // `t + open_for` ends 6 µs before a tick boundary; the rounded open
    // time 1 µs after it.
    let t = Instant::from_micros(1_000 * TICK + 2 * TICK - 6 - 1_000_001 % TICK);
    let end = t + open_for;
    assert_eq!(end.as_micros() % TICK, TICK - 6);
    b.trip(t);
    let wait = b
        .try_acquire(t)
        .map(|_| ())
        .unwrap_err()
        .retry_after
        .unwrap();
    assert_eq!(wait, open_for + Duration::from_micros(TICK + 6));
    assert_eq!(b.state(end + Duration::from_micros(TICK + 5)), State::Open);
    assert_eq!(
        b.state(end + Duration::from_micros(TICK + 6)),
        State::HalfOpen
    );
}

#[cfg(feature = "half-open-timeout")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Sound-but-checked: a half-open breaker entered at `h` (anywhere, the
    /// stamp's 24-bit wrap included) never times out before
    /// `h + max_half_open`, and has by one tick after it.
    #[test]
    fn the_half_open_timeout_is_never_early(
        t in any_now(),
        max_us in 1u64..(71 * 60_000_000),
    ) {
        let max = Duration::from_micros(max_us);
        let open_for = Duration::from_millis(5);
        let b = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(open_for)
                .max_half_open(max)
                .build()
                .unwrap(),
        );
        let t = Instant::from_micros(t);
        prop_assume!(t.checked_add(Duration::from_secs(5 * 3_600)).is_some());
        b.trip(t);
        let h = t + open_for + Duration::from_micros(TICK);
        let trial = b.try_acquire(h);
        prop_assert!(trial.is_ok());
        prop_assert_eq!(b.state(h + max - Duration::from_micros(1)), State::HalfOpen);
        prop_assert_eq!(b.state(h + max + Duration::from_micros(TICK)), State::Open);
    }
}

/// Sound-but-checked: a bucket driven through the instants where its
/// scaled arrival time wraps to zero (the never-used value) on either word
/// width, and where the µs count crosses 2³¹ and 2³² (any multiple), admits
/// exactly what an ideal GCRA with the same quota admits, call for call.
#[test]
fn buckets_across_every_wrap_of_their_word_admit_as_an_ideal_one() {
    let quotas = [
        Quota::new(1, Duration::from_millis(1)).unwrap(), // scale 1, T 1 000
        Quota::new(3, Duration::from_secs(1)).unwrap(),   // scale 3
        Quota::new_with_burst(1_000, Duration::from_secs(1), 5).unwrap(), // T 1 000, burst 5
        Quota::new(7, Duration::from_micros(1)).unwrap(), // scale 7, T 1
    ];
    for q in quotas {
        let t_num = u128::from(q.period().as_micros());
        let t_den = u128::from(q.tokens());
        let burst = u128::from(q.burst());
        for wrap in [1u64 << 29, 1 << 30, 1 << 31, 1 << 32, 1 << 33] {
            for k in [1u64, 2, 3, 5, 1 << 20] {
                let centre = wrap.saturating_mul(k);
                let start = centre - 40_000;
                let bucket = TokenBucket::new(q);
                let keyed: KeyedLimiter<u8, 16> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
                // Ideal GCRA in exact rationals (µs · tokens).
                let mut tat: Option<u128> = None;
                let mut now = start;
                let mut step = 0u64;
                while now < centre + 40_000 {
                    let n = u128::from(now) * t_den;
                    let at = tat.map_or(n, |t| t.max(n));
                    let ideal = at + t_num <= n + burst * t_num;
                    if ideal {
                        tat = Some(at + t_num);
                    }
                    let got = bucket.try_acquire(Instant::from_micros(now)).is_ok();
                    let got_keyed = keyed.try_acquire(&3, Instant::from_micros(now)).is_ok();
                    assert_eq!(got, ideal, "{q:?} at {now} (wrap {wrap} x {k})");
                    assert_eq!(got_keyed, ideal, "keyed {q:?} at {now} (wrap {wrap} x {k})");
                    step = (step * 7 + 3) % 997;
                    now += 1 + step;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Sound-but-checked: the "until full" a keyed admission reports
    /// (`KeyedLeft::until_full`, "rounded up, never early, exact") and a
    /// token bucket's snapshot (`until_full`, "rounded up") is the first
    /// microsecond at which the bucket holds its whole burst again.
    #[test]
    fn until_full_is_the_first_full_microsecond(
        t in any_now(),
        tokens in 1u32..5_000,
        period_us in 1u64..100_000_000,
        burst in 1u32..20,
        taken in 1u32..20,
        gap in 0u64..10_000_000,
    ) {
        let Ok(q) = Quota::new_with_burst(tokens, Duration::from_micros(period_us), burst) else {
            return Ok(());
        };
        let t = Instant::from_micros(t);
        prop_assume!(t.checked_add(Duration::from_secs(100_000)).is_some());
        let taken = taken.min(burst);
        let keyed: KeyedLimiter<u8, 16> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
        let bucket = TokenBucket::new(q);
        for _ in 1..taken {
            keyed.try_acquire(&9, t).unwrap();
            bucket.try_acquire(t).unwrap();
        }
        bucket.try_acquire(t).unwrap();
        let left = keyed.try_acquire_left(&9, t).unwrap().unwrap();
        prop_assert_eq!(left.tokens, burst - taken);
        let u = left.until_full;
        prop_assert!(!u.is_zero());
        prop_assert_eq!(keyed.available(&9, t + u), burst);
        prop_assert!(keyed.available(&9, t + u - Duration::from_micros(1)) < burst);
        let ask = t + Duration::from_micros(gap % (u.as_micros() + 1));
        let s = bucket.snapshot(ask);
        prop_assert_eq!(ask + s.until_full, t + u);
        prop_assert_eq!(bucket.available(ask + s.until_full), burst);
        if !s.until_full.is_zero() {
            prop_assert!(bucket.available(ask + s.until_full - Duration::from_micros(1)) < burst);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Sound-but-checked: a caller whose clock reads up to
    /// `max(open time, ~1.05 s)` before another thread's trip (a stale
    /// `now`) is rejected, and the wait it is told, counted on its own
    /// clock, ends no earlier than the open time after the trip.
    #[test]
    fn a_stale_clock_is_told_a_wait_that_is_never_early(
        t in any_now(),
        open_ms in 1u64..(4 * 3_600_000),
        back_frac in 0u64..=1_000,
    ) {
        let open_for = Duration::from_millis(open_ms);
        let b = CircuitBreaker::new(
            Config::builder().consecutive_failures(1).open_for(open_for).build().unwrap(),
        );
        let t = Instant::from_micros(t);
        prop_assume!(t.checked_add(open_for + Duration::from_secs(1)).is_some());
        let tolerance = open_for.as_micros().max(1_048_576);
        let back = Duration::from_micros(tolerance * back_frac / 1_000);
        prop_assume!(t.as_micros() >= back.as_micros());
        b.trip(t);
        let stale = t - back;
        let r = b.try_acquire(stale).map(|_| ()).unwrap_err();
        prop_assert_eq!(r.state, State::Open);
        let end = t + open_for;
        prop_assert!(stale + r.retry_after.unwrap() >= end, "{:?} back: told {:?}", back, r.retry_after);
    }
}

#[cfg(feature = "time-window")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Sound-but-checked: a failure at `t1` counts with a second one at
    /// `t2 >= t1` exactly while `⌊t2 / interval⌋ − ⌊t1 / interval⌋ <
    /// buckets` (the documented "between total − interval and total"),
    /// for `t1` anywhere, intervals counted past every wrap of the 31-bit
    /// (Cortex-M) and 64-bit interval words included.
    #[test]
    fn a_failure_counts_for_its_documented_span(
        t1 in any_now(),
        interval_ms in 1u64..4_000,
        buckets_log in 0u32..=4,
        later in 0u64..40,
        frac in 0u64..1_000,
        wrap in proptest::option::of((1u64..4, 0u64..100, 30u32..=32)),
    ) {
        let buckets = 1u8 << buckets_log;
        let interval = interval_ms * 1_000;
        // Or just before the k-th wrap of 2^30..2^32 intervals.
        let t1 = match wrap {
            Some((k, off, bits)) => (k << bits) * interval - off * interval / 2,
            None => t1,
        };
        let total = Duration::from_micros(interval * u64::from(buckets));
        let b = CircuitBreaker::new(
            Config::builder()
                .time_window(total, buckets)
                .failure_count(2)
                .build()
                .unwrap(),
        );
        let t1 = Instant::from_micros(t1);
        let Some(t2) = t1.checked_add(Duration::from_micros(later * interval / 2 + frac * interval / 1_000)) else {
            return Ok(());
        };
        let fail = |now: Instant| {
            b.try_acquire(now)
                .map(|p| p.record(fusebox::breaker::Outcome::Failure, now, Duration::ZERO))
        };
        prop_assert_eq!(fail(t1).unwrap(), None);
        let counts = t2.as_micros() / interval - t1.as_micros() / interval < u64::from(buckets);
        let tripped = fail(t2).unwrap().map(|t| t.to);
        prop_assert_eq!(tripped == Some(State::Open), counts, "t1 {:?} t2 {:?}", t1, t2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Sound-but-checked: a `now` up to ~1 s behind the call that drained
    /// a bucket (the backward tolerance every layout keeps, Cortex-M's
    /// ~1.05 s the narrowest) only denies, and the wait it is told ends
    /// exactly when the next token is back (`t + T` for a drained bucket).
    #[test]
    fn a_stale_clock_on_a_drained_bucket_is_denied_and_told_the_true_wait(
        t in any_now(),
        tokens in 1u32..1_000,
        period_ms in 1u64..10_000,
        back_us in 0u64..1_000_000,
    ) {
        let Ok(q) = Quota::new(tokens, Duration::from_millis(period_ms)) else {
            return Ok(());
        };
        let t = Instant::from_micros(t);
        prop_assume!(t.checked_add(Duration::from_secs(20_000)).is_some());
        prop_assume!(t.as_micros() >= back_us);
        let bucket = TokenBucket::new(q);
        let keyed: KeyedLimiter<u8, 16> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
        for _ in 0..q.burst() {
            bucket.try_acquire(t).unwrap();
            keyed.try_acquire(&5, t).unwrap();
        }
        let stale = t - Duration::from_micros(back_us);
        // The instant the first token is back, on the exact schedule.
        let next = t.as_micros()
            + (u128::from(period_ms) * 1_000).div_ceil(u128::from(tokens)) as u64;
        let wait = bucket.try_acquire(stale).unwrap_err().retry_after;
        prop_assert_eq!((stale + wait).as_micros(), next);
        let e = keyed.try_acquire(&5, stale).unwrap_err();
        let wait = fusebox::RetryAfter::retry_after(&e).unwrap();
        prop_assert_eq!((stale + wait).as_micros(), next);
    }
}

/// `max_open_for`'s bound is the *rounded* open time's 2¹⁵ (what
/// `Config::open_for` reads, a multiple of 8 µs), not the asked one's as
/// its docs and `MaxOpenForOutOfRange`'s said: `open_for(1 µs)` accepts a
/// `max_open_for` up to 262 144 µs (8 µs · 2¹⁵), where the docs promised
/// a refusal above 32 768 µs. Docs fix; the growth reaches such a maximum
/// within its 15 doublings (8 µs, 16 µs, … then the cap).
#[test]
fn max_open_for_is_bounded_by_the_rounded_open_time() {
    let b = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_micros(1));
    let c = b
        .max_open_for(Duration::from_micros(32_769))
        .build()
        .unwrap();
    assert_eq!(c.open_for(), Duration::from_micros(8));
    let c = b
        .max_open_for(Duration::from_micros(8 << 15))
        .build()
        .unwrap();
    assert_eq!(c.max_open_for(), Duration::from_micros(8 << 15));
    let over = Duration::from_micros((8 << 15) + 1);
    assert_eq!(
        b.max_open_for(over).build(),
        Err(fusebox::breaker::ConfigError::MaxOpenForOutOfRange(over))
    );
    // And the growth gets there: 8 µs doubled 15 times is the cap.
    let breaker = CircuitBreaker::new(c);
    let mut now = Instant::from_secs(1);
    breaker.trip(now);
    for _ in 0..15 {
        now = now
            + breaker
                .try_acquire(now)
                .map(|_| ())
                .unwrap_err()
                .retry_after
                .unwrap();
        let trial = breaker.try_acquire(now).unwrap();
        trial.record(fusebox::breaker::Outcome::Failure, now, Duration::ZERO);
    }
    let wait = breaker
        .try_acquire(now)
        .map(|_| ())
        .unwrap_err()
        .retry_after
        .unwrap();
    assert!(
        wait >= Duration::from_micros(8 << 15) && wait <= Duration::from_micros((8 << 15) + TICK)
    );
}
