//! `KeyedLimiter` through eviction churn, checked *both ways*: the other
//! long-history suites (`keyed_long_history`, `keyed_adversarial`) check
//! that nothing is admitted beyond a key's bucket and accept any refusal;
//! this one also refuses the refusals the docs do not allow. On a table of
//! `N ≤ PROBE` slots the probe window is the whole table ("a key lives in
//! one of the `PROBE` consecutive slots from its hash (or fewer if `N` is
//! smaller)"), so which slot a key lands in does not matter, and with a
//! clock that never goes back the `bucket::keyed` docs determine every
//! answer:
//!
//! * "A key is evicted only when idle: its bucket full again at the
//!   evicting caller's `now`", and an evicted key comes back "full at its
//!   fingerprint's mark", the instant it became full, never later than a
//!   monotonic `now`: so a key's bucket is exactly a per-key GCRA bucket
//!   that is never evicted, whatever the churn and whoever shares its
//!   fingerprint, home slot and mark (keys from `COLLIDE_FROM` on share
//!   all three);
//! * a new key finds no slot ("every slot of the key's probe window holds
//!   a busy key") exactly when `N` *other* keys are busy (not full) at
//!   `now`: busy keys are never evicted, so they hold the whole table;
//!   otherwise it is inserted. Then `FullPolicy::Reject` refuses
//!   (`TableFull`, counted in `table_full`) and `FullPolicy::Overflow`
//!   charges the shared overflow bucket, a GCRA bucket of its own quota
//!   (`try_acquire_left` then answers `None`);
//! * `metrics()`: `allowed` and `limited` exact, `keys` the slots ever
//!   filled (nothing empties a slot), at most `N`.
//!
//! The same holds in a table larger than the window when every key hashes
//! alike (a hasher with one output: one home slot, fingerprint and mark
//! for all), on tables of 17, 100 and 1 024 slots, for hashes 0, all ones
//! and a mixed one (with the usual range reductions: a window at the
//! table's start, one wrapping past its end, one between).
//!
//! The model is the `gcra` module docs' kernel on unbounded integers (time
//! in units of `1/scale` µs, `scale = tokens / gcd(tokens, period)`). 21
//! histories of 20 000 requests (on 1, 4 and 16 slots, and on the large
//! tables), 20 keys (half of them colliding entirely), time running from 0
//! and from just below a wrap of the slots' arrival-time word, crossing it
//! hundreds of times; the generator keeps every key's idle time out of the
//! zone the docs leave open next to a multiple of that wrap (see
//! `keyed_left_model`).
#![cfg(not(miri))]

use crate::common::{gcd, Key, Rng, COLLIDE_FROM, NARROW};
use std::hash::{BuildHasher, Hasher};

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, RateLimited, PROBE};
use fusebox::hash::FixedState;
use fusebox::{Duration, Instant};

const STEPS: usize = 20_000;
/// Keys 0..10 and `COLLIDE_FROM`..+10 (those hash only their parity).
const KEYS: [u32; 20] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
];
const WRAP: u128 = if NARROW { 1 << 31 } else { 1 << 48 };

/// (tokens, period µs, burst), exact scales that fit both layouts.
const SET: &[(u32, u64, u32)] = &[
    (3, 1_000_000, 1),
    (7, 100_000, 5),
    (1_000, 60_000_000, 4),
    (10_000_000, 1_000_000, 2),
    (1, 60_000_000, 2),
];

#[derive(Clone, Copy, Debug)]
struct Bucket {
    scale: u128,
    t: u128,
    burst: u128,
}

impl Bucket {
    fn of((tokens, period, burst): (u32, u64, u32)) -> Self {
        let g = gcd(u128::from(tokens), u128::from(period));
        Self {
            scale: u128::from(tokens) / g,
            t: u128::from(period) / g,
            burst: u128::from(burst),
        }
    }
    fn quota((tokens, period, burst): (u32, u64, u32)) -> Quota {
        Quota::new(tokens, Duration::from_micros(period))
            .unwrap()
            .with_burst(burst)
            .unwrap()
    }
    /// GCRA: `Ok(new tat)` or the exact wait in µs, rounded up.
    fn decide(self, tat: u128, n: u32, now: u64) -> Result<u128, u64> {
        let now = u128::from(now) * self.scale;
        let new = tat.max(now) + u128::from(n) * self.t;
        let over = (new - now).saturating_sub(self.burst * self.t);
        if over == 0 {
            Ok(new)
        } else {
            Err(over.div_ceil(self.scale) as u64)
        }
    }
    fn busy(self, tat: u128, now: u64) -> bool {
        tat > u128::from(now) * self.scale
    }
    /// Whether `now` leaves `tat` idle for close below a multiple of the
    /// word's wrap (twice the documented horizon as a margin).
    fn in_zone(self, tat: u128, now: u64) -> bool {
        let now = u128::from(now) * self.scale;
        let tolerance = if NARROW {
            (1 << 20) * self.scale
        } else {
            1 << 42
        };
        tat != 0 && now > tat && (now - tat) % WRAP + 2 * (self.burst * self.t + tolerance) >= WRAP
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // the signature `with_tier_fn` takes
fn tier_of(key: &Key) -> usize {
    (key.0 % 2) as usize
}

/// Returns how many requests found the table full of busy keys.
fn history<const N: usize>(seed: u64, start: u64, overflow: bool) -> u64 {
    history_with::<N, _>(seed, start, overflow, FixedState::new(), N)
}

/// A hasher with one output: every key has the same home slot,
/// fingerprint and eviction mark, so all of them share one probe window
/// of `PROBE` slots, however large the table.
#[derive(Clone, Copy)]
struct OneHash(u64);

impl BuildHasher for OneHash {
    type Hasher = OneHash;
    fn build_hasher(&self) -> OneHash {
        *self
    }
}

impl Hasher for OneHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {}
}

/// `window`: the slots the keys can use (`N ≤ PROBE`: all of them).
#[allow(clippy::too_many_lines)] // one history: the model's state and its checks side by side
fn history_with<const N: usize, S: BuildHasher>(
    seed: u64,
    start: u64,
    overflow: bool,
    hasher: S,
    window: usize,
) -> u64 {
    let mut rng = Rng(seed | 1);
    let pick = |rng: &mut Rng| SET[rng.below(SET.len() as u64) as usize];
    let picked = [pick(&mut rng), pick(&mut rng), pick(&mut rng)];
    let policy = if overflow {
        FullPolicy::Overflow(Bucket::quota(picked[2]))
    } else {
        FullPolicy::Reject
    };
    let tiers = [Bucket::quota(picked[0]), Bucket::quota(picked[1])];
    let limiter: KeyedLimiter<Key, N, 2, S> = KeyedLimiter::with_hasher(tiers, policy, hasher)
        .unwrap()
        .with_tier_fn(tier_of);
    let tiers = [Bucket::of(picked[0]), Bucket::of(picked[1])];
    let shared = Bucket::of(picked[2]);
    let (mut tat, mut shared_tat) = ([0u128; KEYS.len()], 0u128);
    let (mut allowed, mut limited, mut table_full, mut seen) =
        (0u64, 0u64, 0u64, [false; KEYS.len()]);
    let step = tiers.iter().map(|b| b.t / b.scale + 1).max().unwrap() as u64;
    let short = tiers.iter().map(|b| b.t / b.scale + 1).min().unwrap() as u64;
    let wrap = tiers.iter().map(|b| WRAP / b.scale).max().unwrap() as u64;
    let mut now = start;
    let mut full_seen = 0u64;
    for i in 0..STEPS {
        // Mostly short steps, so that keys stay busy and the table fills.
        let jump = match rng.below(100) {
            0..=29 => 0,
            30..=64 => rng.below(2 * short / window as u64 + 1),
            65..=94 => rng.below(step / 2 + 1),
            95..=98 => rng.below(4 * step),
            _ => rng.below(3 * wrap),
        };
        let candidate = now.saturating_add(jump);
        let zone = |t: u64| {
            (0..KEYS.len()).any(|k| tiers[k % 2].in_zone(tat[k], t))
                || shared.in_zone(shared_tat, t)
        };
        if !zone(candidate) {
            now = candidate;
        }
        assert!(!zone(now), "seed {seed}: stuck in a wrap zone");
        let k = rng.below(KEYS.len() as u64) as usize;
        let key = Key(KEYS[k]);
        let own = tiers[k % 2];
        let n = [1, 1, 2, own.burst as u32][rng.below(4) as usize].min(own.burst as u32);
        let busy_others = (0..KEYS.len())
            .filter(|&j| j != k && tiers[j % 2].busy(tat[j], now))
            .count();
        let no_slot = !own.busy(tat[k], now) && busy_others >= window;
        let ctx = format!(
            "seed {seed} N {N} step {i} key {} n {n} now {now} {picked:?}",
            key.0
        );
        let want = if !no_slot {
            own.decide(tat[k], n, now).map(|new| {
                tat[k] = new;
                seen[k] = true;
                true
            })
        } else if !overflow {
            full_seen += 1;
            table_full += 1;
            limited += 1;
            let got = limiter.try_acquire_n(&key, n, Instant::from_micros(now));
            assert_eq!(got, Err(KeyedError::TableFull), "{ctx}");
            continue;
        } else if u128::from(n) > shared.burst {
            full_seen += 1;
            limited += 1;
            let got = limiter.try_acquire_n(&key, n, Instant::from_micros(now));
            assert!(
                matches!(got, Err(KeyedError::InsufficientCapacity(_))),
                "{ctx}: {got:?}"
            );
            continue;
        } else {
            full_seen += 1;
            shared.decide(shared_tat, n, now).map(|new| {
                shared_tat = new;
                false
            })
        };
        let at = Instant::from_micros(now);
        match want {
            Ok(own_slot) => {
                allowed += 1;
                if n == 1 && rng.below(2) == 0 {
                    let left = limiter.try_acquire_left(&key, at);
                    assert_eq!(left.map(|l| l.is_some()), Ok(own_slot), "{ctx}");
                } else {
                    assert_eq!(limiter.try_acquire_n(&key, n, at), Ok(()), "{ctx}");
                }
            }
            Err(wait) => {
                limited += 1;
                let retry_after = Duration::from_micros(wait);
                let got = limiter.try_acquire_n(&key, n, at);
                assert_eq!(
                    got,
                    Err(KeyedError::RateLimited(RateLimited { retry_after })),
                    "{ctx}"
                );
            }
        }
        if i % 89 == 0 || i + 1 == STEPS {
            let m = limiter.metrics();
            let keys = (seen.iter().filter(|&&s| s).count() as u64).min(window as u64);
            let got = (m.allowed, m.limited, m.table_full, m.keys);
            let want_full = if overflow { m.table_full } else { table_full };
            assert_eq!(got, (allowed, limited, want_full, keys), "{ctx}");
        }
    }
    full_seen
}

#[test]
fn churn_on_one_slot() {
    let mut full = 0;
    for seed in 1..=3 {
        full += history::<1>(seed * 0x9E37_79B9, 0, seed % 2 == 0);
    }
    assert!(full > 0, "the table never filled");
}

#[test]
fn churn_on_four_slots() {
    let mut full = 0;
    for seed in 4..=7 {
        full += history::<4>(seed * 0x9E37_79B9, 0, seed % 2 == 0);
    }
    assert!(full > 0, "the table never filled");
}

#[test]
fn churn_on_a_whole_probe_window() {
    let mut full = 0;
    for seed in 8..=9 {
        full += history::<16>(seed * 0x9E37_79B9, 0, seed % 2 == 0);
    }
    assert!(full > 0, "the table never filled");
}

#[test]
fn churn_across_the_word_wrap() {
    let wrap = if NARROW { 1u64 << 31 } else { 1u64 << 48 };
    let mut full = 0;
    for seed in 10..=12 {
        full += history::<4>(seed * 0x2545_F491, wrap - 5_000, seed % 2 == 0);
    }
    assert!(full > 0, "the table never filled");
}

/// Tables larger than the probe window, every key in one window, for
/// hashes 0, all ones and a mixed one.
#[test]
fn churn_in_one_window_of_a_large_table() {
    let mut full = 0;
    for (k, hash) in [(13u64, 0u64), (14, u64::MAX), (15, 0x9E37_79B9_7F4A_7C15)] {
        let seed = k * 0x51_7CC1_B727;
        full += history_with::<17, _>(seed, 0, k % 2 == 0, OneHash(hash), PROBE);
        full += history_with::<100, _>(seed + 10, 0, k % 2 == 1, OneHash(hash), PROBE);
        full += history_with::<1024, _>(seed + 20, 0, k % 2 == 0, OneHash(hash), PROBE);
    }
    assert!(full > 0, "the table never filled");
}

const _: () = assert!(COLLIDE_FROM == 48, "KEYS names the colliding keys by value");
