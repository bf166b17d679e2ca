//! governor's keyed-limiter scenarios (`keyed_dashmap.rs`,
//! `keyed_hashmap.rs`: per-key independence, `retain_recent`, `len`; the
//! `proptests.rs` per-key bound) driven with *chosen keys*: a hasher with
//! one output, so every key shares one home slot, one fingerprint and one
//! eviction mark, and with clocks that jitter backwards. Expectations from
//! the `KeyedLimiter` docs: "no request is ever charged to another key's
//! bucket", "A key is evicted only when idle", "per key, at most `burst +
//! rate·Δ` tokens are admitted among calls whose `now`s lie within `Δ` of
//! each other, evictions included", "a stale clock can cost waits, never
//! admissions", [`FullPolicy`] "Never an unlimited pass".

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

#[derive(Clone, Copy, Default)]
struct OneHash;
struct OneHasher;
impl Hasher for OneHasher {
    fn finish(&self) -> u64 {
        0x0123_4567_89AB_CDEF
    }
    fn write(&mut self, _: &[u8]) {}
}
impl BuildHasher for OneHash {
    type Hasher = OneHasher;
    fn build_hasher(&self) -> OneHasher {
        OneHasher
    }
}

type Colliding<const N: usize> = KeyedLimiter<u32, N, 1, OneHash>;

fn colliding<const N: usize>(q: Quota, policy: FullPolicy) -> Colliding<N> {
    KeyedLimiter::with_hasher([q], policy, OneHash).unwrap()
}

fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *s >> 33
}

/// governor keyed "each key its own bucket", with every key colliding:
/// the probe window holds 16 ([`PROBE`](fusebox::bucket::PROBE)
/// slots); each of them keeps its own bucket; a 17th busy-table key is
/// refused (`Reject`) or charged to the shared overflow bucket.
#[test]
fn colliding_keys_keep_their_own_buckets() {
    let q = Quota::per_second(2).unwrap();
    let l: Colliding<64> = colliding(q, FullPolicy::Reject);
    let t = Instant::from_secs(3);
    for k in 0..16 {
        l.try_acquire(&k, t).unwrap();
    }
    for k in 0..16 {
        assert_eq!(l.available(&k, t), 1, "key {k}");
        l.try_acquire(&k, t).unwrap();
        assert!(
            matches!(l.try_acquire(&k, t), Err(KeyedError::RateLimited(_))),
            "key {k}"
        );
    }
    assert_eq!(l.try_acquire(&16, t), Err(KeyedError::TableFull));
    assert_eq!(l.metrics().keys, 16);

    let o: Colliding<64> = colliding(q, FullPolicy::Overflow(q));
    for k in 0..16 {
        o.try_acquire_n(&k, 2, t).unwrap();
    }
    // Keys 16.. share one overflow bucket of burst 2: two pass, then none.
    assert_eq!(
        o.try_acquire_left(&16, t),
        Ok(None),
        "charged to the overflow bucket"
    );
    assert_eq!(o.try_acquire_left(&17, t), Ok(None));
    assert!(matches!(
        o.try_acquire(&18, t),
        Err(KeyedError::RateLimited(_))
    ));
    assert!(matches!(
        o.try_acquire(&16, t),
        Err(KeyedError::RateLimited(_))
    ));
}

/// An ideal GCRA bucket per key, on whole microseconds.
struct Ideal {
    t: u64,
    cap: u64,
    tat: HashMap<u32, u64>,
}
impl Ideal {
    fn admit(&mut self, k: u32, now: u64) -> bool {
        let tat = self.tat.get(&k).copied().unwrap_or(0).max(now);
        if tat + self.t - now <= self.cap {
            self.tat.insert(k, tat + self.t);
            true
        } else {
            false
        }
    }
}

/// With a monotonic clock the limiter must agree exactly with an ideal
/// per-key bucket whenever it finds the key a slot (keys are evicted only
/// when full again, so a key that returns is as full as its ideal bucket),
/// across a long history of 40 colliding keys competing for 16 slots.
#[test]
fn colliding_keys_match_ideal_buckets_over_a_long_history() {
    let quota = Quota::per_second(4).unwrap(); // T = 250 ms, burst 4
    let limiter: Colliding<32> = colliding(quota, FullPolicy::Reject);
    let mut ideal = Ideal {
        t: 250_000,
        cap: 1_000_000,
        tat: HashMap::new(),
    };
    let mut seed = 5;
    let mut now = 1_000_000u64;
    let (mut admitted, mut full) = (0u64, 0u64);
    for step in 0..300_000 {
        now += lcg(&mut seed) % 40_000;
        // Half the calls on 4 hot keys (limited often), half spread over
        // 40 (idle often, so evicted and re-inserted).
        let k = if lcg(&mut seed) % 2 == 0 {
            lcg(&mut seed) % 4
        } else {
            lcg(&mut seed) % 40
        } as u32;
        match limiter.try_acquire(&k, Instant::from_micros(now)) {
            Ok(()) => {
                assert!(
                    ideal.admit(k, now),
                    "step {step}: key {k} admitted beyond its bucket"
                );
                admitted += 1;
            }
            Err(KeyedError::RateLimited(e)) => {
                assert!(
                    !ideal.admit(k, now),
                    "step {step}: key {k} refused a token it had"
                );
                // The stated wait is exact for the ideal bucket too.
                let tat = ideal.tat[&k];
                assert_eq!(
                    e.retry_after.as_micros(),
                    tat + 250_000 - 1_000_000 - now,
                    "step {step}"
                );
            }
            Err(KeyedError::TableFull) => full += 1,
            Err(e) => panic!("step {step}: {e:?}"),
        }
    }
    let m = limiter.metrics();
    assert_eq!(m.allowed, admitted);
    assert_eq!(m.table_full, full);
    assert!(m.evictions > 1_000, "evictions {}", m.evictions);
    assert!(
        m.limited - m.table_full > 1_000,
        "rate-limited {}",
        m.limited - m.table_full
    );
    assert!(m.keys <= 16);
}

/// The per-key bound with stale clocks and colliding keys (one shared
/// eviction mark): callers' `now`s jitter up to 1 s behind the newest.
/// For every key and every pair of its admissions `i < j` (by `now`),
/// `j - i + 1 <= burst + ⌊rate · (t_j - t_i)⌋`.
#[test]
fn colliding_keys_with_stale_clocks_keep_the_per_key_bound() {
    let (rate, burst) = (5u64, 3u32);
    let q = Quota::per_second(5).unwrap().with_burst(burst).unwrap();
    for policy in [
        FullPolicy::Reject,
        FullPolicy::Overflow(Quota::per_second(1).unwrap()),
    ] {
        let limiter: Colliding<16> = colliding(q, policy);
        let mut seed = 77;
        let mut newest = 10_000_000u64;
        let mut times: HashMap<u32, Vec<u64>> = HashMap::new();
        for _ in 0..200_000 {
            newest += lcg(&mut seed) % 3_000;
            let lag = if lcg(&mut seed) % 4 == 0 {
                lcg(&mut seed) % 1_000_000
            } else {
                0
            };
            let now = newest - lag;
            let k = (lcg(&mut seed) % 24) as u32;
            if let Ok(Some(_)) = limiter.try_acquire_left(&k, Instant::from_micros(now)) {
                times.entry(k).or_default().push(now);
            }
        }
        for (k, mut ts) in times {
            ts.sort_unstable();
            for j in 0..ts.len() {
                for i in j.saturating_sub(40)..j {
                    let n = (j - i + 1) as u64;
                    let allowed = u64::from(burst) + rate * (ts[j] - ts[i]) / 1_000_000;
                    assert!(
                        n <= allowed,
                        "key {k}: {n} admissions within {} µs (bound {allowed})",
                        ts[j] - ts[i]
                    );
                }
            }
        }
    }
}

/// governor `retain_recent` with time near `u64::MAX` and colliding keys:
/// idle keys are evicted on demand, busy ones never.
#[test]
fn colliding_keys_evict_only_idle_ones_near_instant_max() {
    let q = Quota::per_second(1).unwrap();
    let l: Colliding<16> = colliding(q, FullPolicy::Reject);
    let t = Instant::MAX - Duration::from_secs(100);
    for k in 0..16 {
        l.try_acquire(&k, t).unwrap();
    }
    let busy = t + Duration::from_millis(999);
    assert_eq!(l.try_acquire(&100, busy), Err(KeyedError::TableFull));
    let idle = t + Duration::from_secs(1);
    for k in 100..116 {
        l.try_acquire(&k, idle).unwrap();
    }
    assert_eq!(l.metrics().evictions, 16);
    for k in 100..116 {
        assert!(
            matches!(l.try_acquire(&k, idle), Err(KeyedError::RateLimited(_))),
            "key {k}"
        );
    }
    assert_eq!(l.try_acquire(&0, idle), Err(KeyedError::TableFull));
    assert!(l.try_acquire(&0, Instant::MAX).is_ok());
}
