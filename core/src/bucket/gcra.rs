//! The GCRA kernel: pure decisions on a wrapped "theoretical arrival time".
//!
//! GCRA (the Generic Cell Rate Algorithm, ITU-T I.371) is a token bucket
//! whose whole state is one number, the *theoretical arrival time* `tat`:
//! the instant at which the bucket would be full again. Asking for `n`
//! tokens at `now` moves it to `max(tat, now) + n·T` (`T` the emission
//! interval), which is allowed iff that is at most `burst·T` ahead of
//! `now`.
//!
//! # Scaled time, exact rates
//!
//! A quota of `tokens` per `period` has `T = period / tokens`, rarely a
//! whole number of microseconds. The kernel therefore counts time in
//! *scaled units* of `1/scale` µs with `scale = tokens / gcd(tokens,
//! period_µs)`, where `T = period_µs / gcd` is an integer: 3 per second is
//! `scale = 3, T = 1 000 000`, ten million per second is `scale = 10, T = 1`,
//! one per day is `scale = 1, T = 86 400 000 000`. Every decision is then
//! exact. Scales above [`MAX_SCALE`] are clamped and `T` rounded *up*, which
//! can only admit less: each token's interval grows by less than 1/65 536
//! µs, which is a large share of a very short interval (at `u32::MAX`
//! tokens a second, 4.6 % fewer tokens), and negligible above a few µs.
//!
//! On 32 bits the backward tolerance is ~1.05 s of scaled units, so it
//! grows with the scale, and an exact scale can leave no room for the
//! burst: 541 a second with a burst of 541 is scale 541, a capacity of
//! 541 000 000 units and a tolerance of 567 279 616, over 2³⁰ together.
//! `Quota` then takes the largest power-of-two scale that fits, `T`
//! rounded up likewise: each token's interval grows by less than
//! `1/scale` µs (there, scale 512: 1 848.4297 µs for 1 848.4288). It
//! refuses (`TooLong`) a quota whose coarser `T` would be under 64 units,
//! rounded by more than 1/64: a burst so large at a rate so fast that no
//! scale leaves it both room and resolution (a billion a second with a
//! burst of a billion).
//!
//! # Wrapped state
//!
//! `tat` is stored modulo 2^BITS (64 where the target has 64-bit atomics,
//! 32 on Cortex-M). Only its distance ahead of `now`, `ahead = tat - now`,
//! matters, and it is classified by [`Params::horizon`]:
//!
//! * `ahead <= horizon`: the bucket is drained by `ahead` (time going
//!   backwards lands here too and can only *deny*);
//! * otherwise `tat` is in the past: the bucket is full.
//!
//! With 64 bits the horizon is 2^63 scaled units (≥ 4.4 years of real time,
//! both directions). With 32 bits it is `capacity + ~1.05 s`: a `now` up to
//! ~1.05 s earlier than a previous call still only denies, and a bucket left
//! idle for close to a multiple of 2^32 scaled units (71.6 min at scale 1)
//! may read as partly drained — it then admits *less* for at most
//! `burst·T + 1.05 s`, never more.
//!
//! The token bucket keeps its arrival time in *half units* (the `tagged`
//! module): its word's lowest bit names the quota slot the word was
//! written under, so its ranges are those of a word one bit narrower —
//! on 64 bits a horizon of 2^62 scaled units (≥ 2.2 years both ways) and
//! `capacity < 2^61`; on 32 bits `capacity + ~1.05 s` below 2^30 scaled
//! units (a coarser scale where the exact one leaves no room, as above),
//! with the wrap at 2^31. [`Quota`] refuses what does not fit
//! ([`QuotaError::TooLong`]).
//!
//! [`Quota`]: super::Quota
//! [`QuotaError::TooLong`]: super::QuotaError::TooLong
//!
//! The keyed limiter's slots keep a 48-bit arrival time (beside their
//! bookkeeping in one 64-bit word), which behaves like 32 bits with a
//! wider margin: the horizon is `capacity + 2^42` scaled units (1/64 of the
//! wrap), so a `now` up to 2^42 units behind a previous call's still only
//! denies (50.9 days at scale 1, 73 min at scale 1 000, 67 s at scale
//! 65 536). A `now` further behind than that reads the bucket as *full*,
//! like a bucket idle for a long time: callers must not hold a clock
//! reading that long. The wrap is at 2^48 scaled units (8.9 years at scale
//! 1, 78 hours at scale 1 000, 71.6 min at scale 65 536): a bucket idle for
//! close to a multiple of that may admit less for at most `burst·T` plus
//! the tolerance, never more. The same holds on 32 bits with ~1.05 s.
//! `Params::new` refuses `capacity >= 2^(BITS-2)` (2^46 units for 48
//! bits).

/// The stored value of a bucket that has never been used (or was reset
/// without a `now`): full at any time. [`Params::decide`] never produces it
/// (it moves a would-be `FRESH` result one scaled unit later, which only
/// admits less).
pub(crate) const FRESH: u64 = 0;

/// Largest exact time scale; see the module docs.
pub(crate) const MAX_SCALE: u64 = 1 << 16;
/// Backward tolerance on 32-bit words, in µs (scaled by `scale`).
pub(crate) const BACKWARD_TOLERANCE_MICROS: u64 = 1 << 20;
/// Backward tolerance on words of 33 to 63 bits (the keyed limiter's 48),
/// as a power of two of *scaled units*: 1/64 of the wrap (2^42 units for 48
/// bits: 50.9 days at scale 1, 73 min at scale 1 000, 67 s at 65 536).
const WIDE_BACKWARD_TOLERANCE_SHIFT: u32 = 6;

/// The derived, validated parameters of a quota for one word width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) struct Params {
    /// Scaled units per microsecond.
    pub(crate) scale: u64,
    /// Emission interval `T`, in scaled units.
    pub(crate) interval: u64,
    /// `burst · T`, in scaled units.
    pub(crate) capacity: u64,
    /// Largest `ahead` still read as "drained" (see the module docs).
    pub(crate) horizon: u64,
    /// `2^BITS - 1`.
    pub(crate) mask: u64,
}

/// Why a quota cannot be represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unrepresentable {
    /// `burst · T` (plus the backward tolerance on 32-bit words) does not fit
    /// in half the word.
    TooLong,
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Params {
    /// Parameters for `tokens` per `period_micros`, `burst`, in a word of
    /// `bits` (32 or 64). All inputs are non-zero (checked by `Quota`).
    /// (The 48-bit keyed slot's and the tests' constructor: `Quota` itself
    /// goes through [`with_max_scale`](Self::with_max_scale).)
    #[cfg(any(fusebox_wide_words, test))]
    pub(crate) const fn new(
        tokens: u32,
        period_micros: u64,
        burst: u32,
        bits: u32,
    ) -> Result<Self, Unrepresentable> {
        Self::with_max_scale(tokens, period_micros, burst, bits, MAX_SCALE)
    }

    /// As [`new`](Self::new), with scales above `max_scale` (at most
    /// [`MAX_SCALE`], at least 1) clamped to it and `T` rounded up.
    pub(crate) const fn with_max_scale(
        tokens: u32,
        period_micros: u64,
        burst: u32,
        bits: u32,
        max_scale: u64,
    ) -> Result<Self, Unrepresentable> {
        let tokens = tokens as u64;
        let g = gcd(tokens, period_micros);
        let (scale, interval) = if tokens / g <= max_scale {
            (tokens / g, period_micros / g)
        } else {
            // T = period · max_scale / tokens, rounded up (admits less).
            let t = (period_micros as u128 * max_scale as u128).div_ceil(tokens as u128);
            if t > u64::MAX as u128 {
                return Err(Unrepresentable::TooLong);
            }
            (max_scale, t as u64)
        };
        let Some(capacity) = interval.checked_mul(burst as u64) else {
            return Err(Unrepresentable::TooLong);
        };
        let half = 1u64 << (bits - 1);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        let horizon = if bits == 64 {
            half - 1
        } else if bits > 32 {
            capacity.saturating_add(1 << (bits - WIDE_BACKWARD_TOLERANCE_SHIFT))
        } else {
            capacity.saturating_add(BACKWARD_TOLERANCE_MICROS * scale)
        };
        // `ahead + cost` must not overflow and must stay below the wrap.
        if capacity >= half / 2 || horizon >= half {
            return Err(Unrepresentable::TooLong);
        }
        Ok(Self {
            scale,
            interval,
            capacity,
            horizon,
            mask,
        })
    }

    /// `now` in wrapped scaled units.
    pub(crate) const fn scaled(&self, now_micros: u64) -> u64 {
        now_micros.wrapping_mul(self.scale) & self.mask
    }

    /// How far `tat` is ahead of `now` (0 when the bucket is full).
    pub(crate) const fn ahead(&self, tat: u64, now: u64) -> u64 {
        if tat == FRESH {
            return 0;
        }
        let ahead = tat.wrapping_sub(now) & self.mask;
        if ahead <= self.horizon {
            ahead
        } else {
            0
        }
    }

    /// Decides `n` tokens at `now_micros` against the stored `tat`.
    ///
    /// `Ok(new_tat)` to admit; `Err(wait)` with the wait in microseconds
    /// after which the same request is admitted (rounded up, so asking
    /// exactly then succeeds).
    pub(crate) const fn decide(&self, tat: u64, now_micros: u64, n: u32) -> Result<u64, u64> {
        if n == 0 {
            return Ok(tat);
        }
        let now = self.scaled(now_micros);
        let ahead = self.ahead(tat, now);
        // n <= burst is checked by the caller, so this cannot overflow.
        let cost = n as u64 * self.interval;
        let needed = ahead + cost;
        if needed <= self.capacity {
            Ok(Self::not_fresh(now.wrapping_add(needed) & self.mask))
        } else {
            Err((needed - self.capacity).div_ceil(self.scale))
        }
    }

    /// Whole tokens available at `now_micros` (zero while `now` is behind
    /// a previous call's).
    pub(crate) const fn available(&self, tat: u64, now_micros: u64) -> u64 {
        let ahead = self.ahead(tat, self.scaled(now_micros));
        self.capacity.saturating_sub(ahead) / self.interval
    }

    /// Microseconds until a bucket at `tat` is full again at `now_micros`,
    /// rounded up (0: full): never early.
    pub(crate) const fn until_full(&self, tat: u64, now_micros: u64) -> u64 {
        let ahead = self.ahead(tat, self.scaled(now_micros));
        if self.scale == 1 {
            ahead
        } else {
            ahead.div_ceil(self.scale)
        }
    }

    /// [`available`](Self::available), given the quota's `burst` (which
    /// is `capacity / interval`): without a division when the bucket is
    /// full or one token short, the usual state of a key under its limit
    /// right after its admission (a 64-bit division costs tens of cycles).
    pub(crate) const fn available_of(&self, tat: u64, now_micros: u64, burst: u32) -> u64 {
        let ahead = self.ahead(tat, self.scaled(now_micros));
        if ahead == 0 {
            burst as u64
        } else if ahead <= self.interval {
            // capacity − ahead ∈ [capacity − interval, capacity).
            burst as u64 - 1
        } else {
            self.capacity.saturating_sub(ahead) / self.interval
        }
    }

    /// The `tat` of a bucket drained by `ahead` scaled units at `now_micros`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const fn at(&self, now_micros: u64, ahead: u64) -> u64 {
        if ahead == 0 {
            return FRESH;
        }
        Self::not_fresh(self.scaled(now_micros).wrapping_add(ahead) & self.mask)
    }

    /// The `tat` of a bucket that is full again at `micros` (never
    /// `FRESH`: one scaled unit later instead).
    pub(crate) const fn full_at(&self, micros: u64) -> u64 {
        Self::not_fresh(self.scaled(micros))
    }

    /// How far behind a previous call's `now` a `now` may be and still
    /// read a drained bucket as drained, in scaled units (see the module
    /// docs): `2^(BITS-6)` on 33- to 63-bit words, ~1.05 s on 32 bits.
    pub(crate) const fn tolerance(&self) -> u64 {
        self.horizon - self.capacity
    }

    const fn not_fresh(tat: u64) -> u64 {
        if tat == FRESH {
            1
        } else {
            tat
        }
    }

    /// Tokens in flight toward full, as scaled units still to elapse.
    pub(crate) const fn drained(&self, tat: u64, now_micros: u64) -> u64 {
        self.ahead(tat, self.scaled(now_micros))
    }

    /// The drain, in these parameters' units, that carries a drain of
    /// `ahead` under `old` over to them at the same instant, granting no
    /// token: the available tokens (fractions included) carry over, clamped
    /// to the new burst, rounded toward fewer; a drain past `old`'s capacity
    /// (an overdraft: a `now` behind an admission already made) carries
    /// over as the same *time* past the new capacity, rounded up (clamped
    /// to the horizon).
    pub(crate) fn carried(&self, old: &Self, ahead: u64) -> u64 {
        let [a, c, t, s] = [ahead, old.capacity, old.interval, old.scale].map(u128::from);
        let [nc, nt, ns] = [self.capacity, self.interval, self.scale].map(u128::from);
        let drain = if a > c {
            (nc + ((a - c) * ns).div_ceil(s)).min(u128::from(self.horizon))
        } else {
            nc - ((c - a) * nt / t).min(nc)
        };
        drain as u64
    }

    /// The `tat`, in these parameters, of a bucket drained by `drained`
    /// scaled units of `old` at `now_micros`, with no token granted (see
    /// [`Params::carried`]). The token bucket carries its state over in its
    /// own (tagged) word; this is the plain word's form.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn carried_over(&self, old: &Self, drained: u64, now_micros: u64) -> u64 {
        self.at(now_micros, self.carried(old, drained))
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
