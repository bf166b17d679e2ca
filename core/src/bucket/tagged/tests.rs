use super::*;
use crate::sync::TAT_BITS;

fn quota(tokens: u32, period_micros: u64, burst: u32) -> Quota {
    Quota::build(tokens, Duration::from_micros(period_micros), burst).unwrap()
}

fn quotas() -> [Quota; 5] {
    [
        quota(1, 1_000_000, 1),
        quota(3, 1_000_000, 7),
        quota(10_000_000, 1_000_000, 100),
        quota(1_009, 1_000_000, 3), // scale 1 009: near the 32-bit limit
        quota(1, 60_000_000, 10),
    ]
}

#[test]
fn every_write_keeps_the_tag_of_its_slot() {
    let t = Tagged::new(&quotas()[1]);
    let mut now = 1_000_000_000u64;
    for (i, q) in quotas().iter().cycle().take(40).enumerate() {
        t.set_quota(q, Instant::from_micros(now));
        let tag = (i + 1) % 2;
        assert_eq!(slot(t.word()), tag);
        assert_eq!(t.offset[tag].load(Ordering::Relaxed) & 1, tag as Tat);
        for _ in 0..3 {
            let _ = t.take(1, Instant::from_micros(now), |r| r);
            assert_eq!(slot(t.word()), tag, "a decision keeps the tag");
            now += 77_777;
        }
        assert_eq!(t.quota(), *q);
    }
    // reset and restore switch slots too.
    let before = slot(t.word());
    t.reset();
    assert_eq!(slot(t.word()), 1 - before);
    t.restore(Duration::from_secs(1), Instant::from_micros(now));
    assert_eq!(slot(t.word()), before);
}

#[test]
fn nothing_writes_fresh_again() {
    // Arrange for the next decision to land on 0: it lands on 2.
    // One per µs: scale and interval 2 half units; `now` at 2^W − 2.
    let t = Tagged::new(&quota(1, 1, 1));
    let rule = t.rule(0);
    let micros = wide(Tat::MAX / 2);
    assert_eq!(rule.now(micros).wrapping_add(rule.interval), 0);
    assert_eq!(rule.decide(FRESH as Tat, micros, 1), Ok(2));
    // A change from the last odd word skips 0.
    t.word.store(Tat::MAX, Ordering::Relaxed);
    t.reset();
    assert_eq!(t.word(), 2);
}

/// A stale decision may read a slot while it is rewritten: any mix of
/// two quotas' values must decide without panicking (its result is
/// discarded by the failing CAS or re-read).
#[test]
#[cfg_attr(
    miri,
    ignore = "plain integer arithmetic on every quota pair (no atomics, no unsafe): run natively"
)]
fn a_mix_of_two_slots_never_panics() {
    let rules = quotas().map(|q| Rule::of(&q));
    let words = [
        0,
        1,
        2,
        Tat::MAX,
        Tat::MAX / 2,
        Tat::MAX / 2 + 1,
        12_345_678,
    ];
    for a in &rules {
        for b in &rules {
            let mixes = [
                Rule {
                    interval: b.interval,
                    ..*a
                },
                Rule {
                    capacity: b.capacity,
                    ..*a
                },
                Rule {
                    scale: b.scale,
                    ..*a
                },
                Rule {
                    scale: b.scale,
                    capacity: b.capacity,
                    offset: 1,
                    ..*a
                },
            ];
            for rule in mixes {
                for &word in &words {
                    for micros in [0, 1, 999_999_999, u64::MAX / 3, u64::MAX] {
                        for n in [1, 2, 100, u32::MAX] {
                            let _ = rule.decide(word, micros, n);
                        }
                        let _ = (rule.available(word, micros), rule.until_full(word, micros));
                        let _ = rule.carried(b, rule.ahead(word, rule.now(micros)));
                    }
                }
            }
        }
    }
}

#[test]
fn the_range_is_one_bit_less_than_the_kernels() {
    if TAT_BITS == 64 {
        assert!(fits(1, (1 << 61) - 1));
        assert!(!fits(1, 1 << 61));
        // One per 2^61 − 1 µs fits, one per 2^61 µs does not.
        assert!(Quota::with_period(Duration::from_micros((1 << 61) - 1)).is_ok());
        assert!(Quota::with_period(Duration::from_micros(1 << 61)).is_err());
    } else {
        // capacity + 2^20·scale < 2^30 scaled units.
        assert!(fits(1, (1 << 30) - (1 << 20) - 1));
        assert!(!fits(1, (1 << 30) - (1 << 20)));
        assert!(fits(1_023, 0));
        assert!(!fits(1_024, 0));
    }
}

#[test]
fn a_fresh_bucket_is_full_at_any_time() {
    for q in quotas() {
        let t = Tagged::new(&q);
        for micros in [0, 1 << 50, u64::MAX / 3, u64::MAX] {
            assert_eq!(t.available(Instant::from_micros(micros)), q.burst());
        }
    }
}
