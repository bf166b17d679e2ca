use super::*;

fn params(tokens: u32, period: u64, burst: u32, bits: u32) -> Params {
    Params::new(tokens, period, burst, bits).unwrap()
}

#[test]
fn rates_are_scaled_to_whole_intervals() {
    let p = params(3, 1_000_000, 3, 64);
    assert_eq!((p.scale, p.interval, p.capacity), (3, 1_000_000, 3_000_000));
    let p = params(10_000_000, 1_000_000, 1, 64);
    assert_eq!((p.scale, p.interval), (10, 1));
    let p = params(1, 86_400_000_000, 1, 64);
    assert_eq!((p.scale, p.interval), (1, 86_400_000_000));
    // A coprime huge rate is clamped and rounded up.
    let p = params(4_294_967_291, 1_000_000, 1, 64);
    assert_eq!(p.scale, MAX_SCALE);
    assert_eq!(p.interval, 16); // ceil(1e6 * 65536 / 4294967291) = 16
}

#[test]
fn steady_rate_and_exact_retry_after() {
    for bits in [32, 64] {
        let p = params(3, 1_000_000, 3, bits);
        let tat = p.decide(FRESH, 0, 3).unwrap();
        let wait = p.decide(tat, 0, 1).unwrap_err();
        assert_eq!(wait, 333_334, "ceil(1e6 / 3)");
        assert!(p.decide(tat, wait - 1, 1).is_err());
        assert!(p.decide(tat, wait, 1).is_ok());
        // No drift from rounding: exactly three tokens after one second.
        assert_eq!(p.available(tat, 999_999), 2);
        assert_eq!(p.available(tat, 1_000_000), 3);
        assert!(p.decide(tat, 1_000_000, 3).is_ok());
    }
}

#[test]
fn burst_then_refill() {
    for bits in [32, 64] {
        let p = params(10, 1_000_000, 5, bits);
        let mut tat = FRESH;
        tat = p.decide(tat, 7, 5).unwrap();
        assert_eq!(p.available(tat, 7), 0);
        assert_eq!(p.decide(tat, 7, 1), Err(100_000));
        assert_eq!(p.available(tat, 7 + 250_000), 2);
    }
}

#[test]
fn time_going_backwards_never_admits_more() {
    for bits in [32, 64] {
        let p = params(1, 1_000_000, 1, bits);
        let now = 10_000_000;
        let tat = p.decide(FRESH, now, 1).unwrap();
        for back in [1, 1_000, 500_000, 1_000_000] {
            assert!(
                p.decide(tat, now - back, 1).is_err(),
                "{bits} bits, {back} µs back"
            );
        }
    }
    // 48-bit words (keyed slots): up to 2^42 scaled units back is a
    // denial (50.9 days at scale 1); further back reads as full, as
    // documented.
    let p = params(1, 1_000_000, 2, 48);
    let now = 1 << 44;
    let tat = p.decide(FRESH, now, 2).unwrap();
    let day = 86_400_000_000;
    for back in [1, 1_000_000, 60_000_000, day, 50 * day] {
        assert!(
            p.decide(tat, now - back, 1).is_err(),
            "48 bits, {back} µs back"
        );
    }
    assert!(p.decide(tat, now - 52 * day, 1).is_ok());
    // 64-bit words: any realistic jump back is a denial.
    let p = params(1, 1_000_000, 1, 64);
    let now = 1 << 50;
    let tat = p.decide(FRESH, now, 1).unwrap();
    assert!(p.decide(tat, now - (1 << 40), 1).is_err());
}

#[test]
fn idle_buckets_refill_across_the_wrap() {
    let p = params(1, 1_000, 4, 32);
    let now = (1u64 << 32) - 10;
    let tat = p.decide(FRESH, now, 4).unwrap();
    assert_eq!(p.available(tat, now + 2_000), 2);
    assert_eq!(p.available(tat, now + 60_000_000), 4);
    let p = params(1, 1_000, 4, 64);
    let tat = p.decide(FRESH, u64::MAX - 10, 4).unwrap();
    assert_eq!(p.available(tat, u64::MAX), 0);
}

#[test]
fn a_fresh_bucket_is_full_at_any_time() {
    // Scale 65 536 wraps `now · scale` after ~4.5 years of µs: a fresh
    // bucket must still read full there (a Unix-epoch clock is 2^50 µs).
    let p = params(4_294_967_291, 1_000_000, 5, 64);
    for now in [0, 1 << 50, u64::MAX / 3, u64::MAX] {
        assert_eq!(p.available(FRESH, now), 5, "{now}");
    }
    // decide never stores FRESH, even when the arithmetic lands on it.
    let p = params(1, 1, 1, 32);
    let now = (1u64 << 32) - 1; // scaled now + 1 wraps to 0
    assert_eq!(p.decide(FRESH, now, 1), Ok(1));
}

#[test]
fn unrepresentable_quotas_are_refused() {
    // One per day with a burst of 100 does not fit 32 bits...
    assert_eq!(
        Params::new(1, 86_400_000_000, 100, 32),
        Err(Unrepresentable::TooLong)
    );
    // ...but fits 64.
    assert!(Params::new(1, 86_400_000_000, 100, 64).is_ok());
    assert_eq!(
        Params::new(1, u64::MAX, u32::MAX, 64),
        Err(Unrepresentable::TooLong)
    );
    // 48 bits (keyed slots): burst · T below 2^46 scaled units.
    assert!(Params::new(1, 86_400_000_000, 814, 48).is_ok());
    assert_eq!(
        Params::new(1, 86_400_000_000, 815, 48),
        Err(Unrepresentable::TooLong)
    );
    // The keyed bench quota: 1e9/s, burst 4e9 (scale 1 000, ~2^32 units).
    let p = params(1_000_000_000, 1_000_000, 4_000_000_000, 48);
    assert_eq!((p.scale, p.capacity), (1_000, 4_000_000_000));
}

#[test]
fn carry_over_keeps_available_tokens() {
    let old = params(10, 1_000_000, 10, 64);
    let tat = old.decide(FRESH, 0, 7).unwrap(); // 3 left
    let drained = old.drained(tat, 0);
    // Raising: still 3, no free burst.
    let new = params(100, 1_000_000, 100, 64);
    let t = new.carried_over(&old, drained, 0);
    assert_eq!(new.available(t, 0), 3);
    // Lowering below: clamped to the new burst.
    let new = params(1, 1_000_000, 2, 64);
    let t = new.carried_over(&old, drained, 0);
    assert_eq!(new.available(t, 0), 2);
}

#[test]
fn carried_rounds_toward_fewer_and_keeps_debts_as_time() {
    // 3/s (T = 10^6 units of 1/3 µs) to 1 000/s (T = 1 000 units of
    // 1 µs): 1/10^6 of a token is 1/1 000 of a new unit, floored to 0.
    let old = params(3, 1_000_000, 3, 64);
    let new = params(1_000, 1_000_000, 3, 64);
    assert_eq!(new.carried(&old, old.capacity - 1), new.capacity);
    assert_eq!(
        new.carried(&old, old.capacity - 999_999),
        new.capacity - 999
    );
    assert_eq!(new.carried(&old, 0), 0, "full stays full");
    // 2 µs past the capacity (6 units at scale 3) is 2 µs at scale 1.
    assert_eq!(new.carried(&old, old.capacity + 6), new.capacity + 2);
    // Rounded up: 1 unit (1/3 µs) past it is 1 µs past the new one.
    assert_eq!(new.carried(&old, old.capacity + 1), new.capacity + 1);
    // Never past the horizon.
    let narrow = params(1, 1_000_000, 1, 32);
    let wide = params(1, 1_000, 1, 64);
    assert_eq!(narrow.carried(&wide, u64::MAX / 4), narrow.horizon);
}

/// The 32-bit word (Cortex-M) decides exactly like the 64-bit one while
/// time moves forward, across its own wrap too.
#[cfg(not(miri))]
mod widths {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_32_bit_kernel_matches_the_64_bit_one(
            tokens in 1u32..2_000,
            period in 1_000u64..2_000_000,
            burst in 1u32..20,
            start in ((1u64 << 32) - 5_000_000)..((1u64 << 32) + 5_000_000),
            steps in prop::collection::vec((0u64..400_000, 1u32..4), 1..300),
        ) {
            let (Ok(p32), Ok(p64)) = (
                Params::new(tokens, period, burst, 32),
                Params::new(tokens, period, burst, 64),
            ) else {
                return Ok(()); // not representable in 32 bits: refused, fine
            };
            let (mut t32, mut t64) = (FRESH, FRESH);
            let mut now = start;
            for (dt, n) in steps {
                now += dt;
                let n = n.min(burst);
                let (a, b) = (p32.decide(t32, now, n), p64.decide(t64, now, n));
                prop_assert_eq!(a.is_ok(), b.is_ok(), "at {}", now);
                match (a, b) {
                    (Ok(x), Ok(y)) => { t32 = x; t64 = y; }
                    (Err(x), Err(y)) => prop_assert_eq!(x, y),
                    _ => unreachable!(),
                }
                prop_assert_eq!(p32.available(t32, now), p64.available(t64, now));
            }
        }

        /// The keyed limiter's 48-bit word, across its wrap.
        #[test]
        fn the_48_bit_kernel_matches_the_64_bit_one(
            tokens in 1u32..3_000_000,
            period in 1_000u64..2_000_000,
            burst in 1u32..20,
            offset in 0u64..5_000_000,
            steps in prop::collection::vec((0u64..400_000, 1u32..4), 1..300),
        ) {
            let (Ok(p48), Ok(p64)) = (
                Params::new(tokens, period, burst, 48),
                Params::new(tokens, period, burst, 64),
            ) else {
                return Ok(());
            };
            let (mut t48, mut t64) = (FRESH, FRESH);
            // Scaled time crosses 2^48 within the run.
            let mut now = ((1u64 << 48) / p64.scale).saturating_sub(offset);
            for (dt, n) in steps {
                now += dt;
                let n = n.min(burst);
                let (a, b) = (p48.decide(t48, now, n), p64.decide(t64, now, n));
                prop_assert_eq!(a.is_ok(), b.is_ok(), "at {}", now);
                match (a, b) {
                    (Ok(x), Ok(y)) => { t48 = x; t64 = y; }
                    (Err(x), Err(y)) => prop_assert_eq!(x, y),
                    _ => unreachable!(),
                }
                prop_assert_eq!(p48.available(t48, now), p64.available(t64, now));
            }
        }
    }
}

#[test]
fn tokens_left_without_a_division_match_the_division() {
    // Whole-interval and scaled quotas, narrow and wide words, every
    // distance ahead around the fast path's edges and across the
    // capacity, the tolerance and the wrap.
    for (tokens, period, burst, bits) in [
        (1, 1_000_000, 1, 64),
        (10, 1_000_000, 4, 64),
        (1_000_000_000, 1_000_000, 1_000_000_000, 64),
        (3, 7, 5, 48),
        (7, 3_000_000, 9, 48),
        (1, 60_000_000, 2, 32),
    ] {
        let p = params(tokens, period, burst, bits);
        let now = 5_000_000_u64;
        let scaled = p.scaled(now);
        let aheads = [
            0,
            1,
            2,
            p.interval - 1,
            p.interval,
            p.interval + 1,
            2 * p.interval,
            p.capacity - 1,
            p.capacity,
            p.capacity + 1,
            p.horizon,
            p.horizon + 1,
            p.mask / 2,
            p.mask,
        ];
        for ahead in aheads {
            let tat = Params::not_fresh(scaled.wrapping_add(ahead) & p.mask);
            assert_eq!(
                p.available_of(tat, now, burst),
                p.available(tat, now),
                "{tokens}/{period} µs, burst {burst}, {bits} bits, {ahead} ahead"
            );
        }
        assert_eq!(p.available_of(FRESH, now, burst), u64::from(burst));
    }
}
