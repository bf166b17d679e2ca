//! A firmware adopter's quotas (README "Quick start: firmware"): which
//! rates a `TokenBucket` accepts on Cortex-M's 32-bit words. The crate
//! docs' table ("Atomic words and their limits") says a 32-bit bucket needs
//! `burst × period / tokens` plus ~1.05 s (2²⁰ µs) to fit 2³⁰ scaled units,
//! at scale 1 a burst span of 2³⁰ − 2²⁰ µs (17 min 52.7 s), and that a quota
//! that cannot fit even at scale 1 is refused (`TooLong`); with 64-bit words
//! the span may reach years. So on Cortex-M `Quota::per_hour`, whose burst
//! spans the whole hour, is always refused, and a slow hourly rate needs a
//! smaller burst. Run on the narrow layout with `RUSTFLAGS="--cfg
//! fusebox_narrow_words"` (scripts/test.sh does).

use fusebox::bucket::{Quota, QuotaError};
use fusebox::{Duration, Instant, TokenBucket};

/// The 32-bit (Cortex-M) word layout.
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

const MIN: u64 = 60_000_000;

/// Sound-but-checked: every `per_hour` quota spans one hour, which the
/// 32-bit layout refuses whatever the number of tokens, and the 64-bit one
/// accepts; `with_period` of an hour likewise.
#[test]
fn per_hour_is_refused_on_cortex_m_whatever_the_tokens() {
    for tokens in [1, 2, 60, 100, 3_600, 1_000_000, u32::MAX] {
        let q = Quota::per_hour(tokens);
        if NARROW {
            assert_eq!(q, Err(QuotaError::TooLong), "per_hour({tokens})");
        } else {
            assert_eq!(q.map(|q| q.burst()), Ok(tokens), "per_hour({tokens})");
        }
    }
    let hourly = Quota::with_period(Duration::from_secs(3_600));
    assert_eq!(hourly.is_err(), NARROW, "{hourly:?}");
    // The 32-bit edge: a span under 2³⁰ − 2²⁰ µs fits, that span does not.
    let edge = (1u64 << 30) - (1 << 20);
    assert!(Quota::with_period(Duration::from_micros(edge - 1)).is_ok());
    let over = Quota::with_period(Duration::from_micros(edge));
    assert_eq!(over.is_err(), NARROW, "{over:?}");
    // The same span as a burst of 1 000 of a faster rate.
    let bursty = Quota::new_with_burst(1_000, Duration::from_micros(edge), 1_000);
    assert_eq!(bursty.is_err(), NARROW, "{bursty:?}");
}

/// Sound-but-checked: an hourly rate with a burst spanning under the 32-bit
/// limit works on Cortex-M as documented (`new_with_burst`: 100 an hour
/// with a burst of 5): the burst, then one token per 36 s, never earlier.
#[test]
fn an_hourly_rate_with_a_short_burst_admits_exactly_on_both_layouts() {
    let q = Quota::new_with_burst(100, Duration::from_secs(3_600), 5).unwrap();
    assert_eq!(q.replenish_interval(), Duration::from_secs(36));
    // 60 tokens an hour with a burst of 17 spans 17 min.
    let wide = Quota::new_with_burst(60, Duration::from_secs(3_600), 17).unwrap();
    assert_eq!(wide.burst(), 17);
    // Far from zero, and past 2³² µs (71.6 min), where the 32-bit word wraps.
    for base in [1_000 * MIN, (1 << 32) - 5 * MIN, 50 * 24 * 60 * MIN] {
        let b = TokenBucket::new(q);
        let t = Instant::from_micros(base);
        for i in 0..5 {
            assert_eq!(b.try_acquire(t), Ok(()), "burst call {i} at {base}");
        }
        assert!(b.try_acquire(t).is_err());
        let next = t + Duration::from_secs(36);
        assert!(b.try_acquire(next - Duration::from_micros(1)).is_err());
        assert_eq!(
            b.try_acquire(next),
            Ok(()),
            "one token after 36 s at {base}"
        );
        // Idle for 30 min (under the 32-bit word's wrap, 2³¹ µs at scale
        // 1): full again, exactly the burst.
        let later = next + Duration::from_secs(30 * 60);
        assert_eq!(b.available(later), 5, "refilled at {base}");
        assert_eq!(b.try_acquire_n(5, later), Ok(()));
        assert!(b.try_acquire(later).is_err());
        // Idle for 3 h, 62.6 s past 5 × 2³¹ µs after the arrival time: on
        // Cortex-M the documented band ("idle for close to a multiple of
        // 2³¹ scaled units may briefly admit less, never more", for at
        // most burst·T + ~1.05 s) reads it partly drained (1 token); never
        // more than the burst, and full once that band has passed.
        let t = later + Duration::from_secs(36);
        assert_eq!(b.try_acquire(t), Ok(()));
        let idle = t + Duration::from_secs(3 * 3_600);
        assert_eq!(b.available(idle), if NARROW { 1 } else { 5 });
        let after_band = idle + Duration::from_micros(180_000_000 + (1 << 20));
        assert_eq!(b.available(after_band), 5, "full after the band at {base}");
        assert_eq!(b.try_acquire_n(5, after_band), Ok(()));
        assert!(b.try_acquire(after_band).is_err());
    }
}
