//! Helpers of the core's long-history suites (`bucket_long_history`,
//! `arrival_curve`, `arrival_curve_threads`,
//! `keyed_long_history`, `keyed_requota_churn`, the caches' contract and
//! unstable-hash suites): seeded generators, the
//! word-width facts their models state, and the quotas' exact figures.
#![allow(dead_code)] // each suite uses some of them

use std::hash::{Hash, Hasher};

use fusebox::bucket::Quota;
use fusebox::Duration;

/// The 32-bit (Cortex-M) word layout, native or emulated.
pub const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

/// How far a `now` may be behind the latest one and still only deny: the
/// 32-bit word's ~1.05 s (2^20 µs); the 64-bit words' is far longer.
pub const STALE: u64 = 1 << 20;

pub fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A seeded xorshift generator: the same history for the same seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The quotas of `set` (tokens, period in µs, burst) this target can
/// represent.
pub fn representable(set: &[(u32, u64, u32)]) -> Vec<Quota> {
    set.iter()
        .filter_map(|&(t, p, b)| {
            Quota::new(t, Duration::from_micros(p))
                .ok()?
                .with_burst(b)
                .ok()
        })
        .collect()
}

/// The quota's emission interval as the `gcra` module docs define it, in
/// units of `1/scale` µs: `(scale, T)`, exact (`scale = tokens /
/// gcd(tokens, period)`) or, for a clamped or coarsened scale, `T` rounded
/// up. Read from `Quota`'s `Debug`, which shows them.
pub fn scaled(q: Quota) -> (u128, u128) {
    let debug = format!("{q:?}");
    let field = |name: &str| -> u128 {
        let at = debug.find(name).expect("Debug shows the field") + name.len();
        let digits: String = debug[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    (field("scale: "), field("interval: "))
}

/// Keys at or above this id hash only their parity: two sets of keys
/// that collide whatever the hasher, for the keyed limiter's suites.
pub const COLLIDE_FROM: u32 = 48;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Key(pub u32);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.0 < COLLIDE_FROM {
            self.0.hash(state);
        } else {
            (self.0 % 2).hash(state);
        }
    }
}

/// SplitMix64: a seeded, dependency-free generator.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Panics unless the admissions `(now µs, tokens)` meet
/// `burst + ⌊rate · T⌋` over every interval (the bucket module's
/// "Exactness"): sorted by `now`, they must be payable by a token bucket
/// of depth `burst` and rate `tokens / period`, full at the start (the
/// arrival-curve equivalence), in exact integers.
pub fn check_curve(
    what: &str,
    mut admitted: Vec<(u64, u32)>,
    tokens: u32,
    period: u64,
    burst: u32,
) {
    admitted.sort_by_key(|&(t, _)| t);
    // One token is `period` units; the bucket refills `tokens` units a µs.
    let (period, depth) = (u128::from(period), u128::from(burst) * u128::from(period));
    let mut level = depth;
    let mut last = admitted.first().map_or(0, |&(t, _)| t);
    for (i, &(t, n)) in admitted.iter().enumerate() {
        let refill = u128::from(t - last) * u128::from(tokens);
        level = (level + refill).min(depth);
        last = t;
        let cost = u128::from(n) * period;
        assert!(
            level >= cost,
            "{what}: admission {i} of {} ({n} at {t} µs) exceeds burst + rate·T \
             (level {level} < cost {cost}, quota {tokens}/{period} µs burst {burst})",
            admitted.len()
        );
        level -= cost;
    }
}

/// Silences the panics a hostile-history test provokes (their messages start with
/// "hostile"), and only those: a failing assertion still prints.
pub fn quiet_hostile_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with("hostile") {
                default(info);
            }
        }));
    });
}
