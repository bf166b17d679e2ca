//! A tagged word's decision rule: the GCRA kernel (`gcra`) in half units,
//! with the slot's offset (see the parent module's docs).

use crate::bucket::gcra::{Params, BACKWARD_TOLERANCE_MICROS, FRESH};
use crate::bucket::quota::Quota;
use crate::sync::{Tat, TAT_BITS};

/// Whether a quota's parameters fit the tagged word: a `W − 1`-bit arrival
/// time (see the module docs).
///
/// * 64 bits: `capacity < 2^61` scaled units, so that `ahead + cost`
///   (below `2^63 + 2^62` half units) never overflows.
/// * 32 bits: `capacity` plus the ~1.05 s backward tolerance below `2^30`
///   scaled units, so that at least half the word reads "full" (as in
///   `gcra` on 32 bits, one bit down).
pub(in crate::bucket) const fn fits(scale: u64, capacity: u64) -> bool {
    if TAT_BITS == 64 {
        capacity < 1 << 61
    } else {
        match BACKWARD_TOLERANCE_MICROS.checked_mul(scale) {
            Some(tolerance) => capacity.saturating_add(tolerance) < 1 << 30,
            None => false,
        }
    }
}

/// The largest drain read as "drained" (anything further ahead reads as a
/// full bucket), in half units: half the word minus one unit on 64 bits;
/// the capacity plus the backward tolerance on 32 bits.
#[inline]
pub(super) const fn horizon(capacity: Tat, scale: Tat) -> Tat {
    if TAT_BITS == 64 {
        Tat::MAX / 2 - 1
    } else {
        // Below 2^31 each for a valid quota, so a mix of two cannot wrap.
        capacity.wrapping_add(scale.wrapping_mul(BACKWARD_TOLERANCE_MICROS as Tat))
    }
}

/// A word value as a `u64` (the identity where the word is 64 bits).
#[inline]
#[allow(clippy::useless_conversion)]
pub(in crate::bucket) fn wide(value: Tat) -> u64 {
    u64::from(value)
}

/// A word value known to fit 32 bits (a scale, a count of whole tokens)
/// as a `u32` (the identity where the word is 32 bits).
#[allow(clippy::unnecessary_cast)]
pub(super) const fn low(value: Tat) -> u32 {
    value as u32
}

/// A slot's decision parameters, loaded: half units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    /// Half units per microsecond (twice the quota's scale).
    pub(super) scale: Tat,
    /// Twice the emission interval.
    pub(super) interval: Tat,
    /// Twice `burst · interval`.
    pub(super) capacity: Tat,
    /// Added to the scaled `now`; its parity is the slot's index.
    pub(super) offset: Tat,
}

/// Why a decision refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::bucket) enum Refusal {
    /// Admitted after this many microseconds (rounded up).
    Wait(Tat),
    /// Never: more than the burst, which is given.
    Never(u32),
}

impl Rule {
    /// The rule of `quota` (before any offset).
    pub(super) const fn of(quota: &Quota) -> Self {
        let p = quota.params();
        Self {
            scale: 2 * p.scale as Tat,
            interval: 2 * p.interval as Tat,
            capacity: 2 * p.capacity as Tat,
            offset: 0,
        }
    }

    /// `now` in wrapped half units.
    #[inline]
    pub(super) fn now(&self, micros: u64) -> Tat {
        (micros as Tat)
            .wrapping_mul(self.scale)
            .wrapping_add(self.offset)
    }

    /// How far `word` is ahead of `now` (0 when the bucket is full).
    #[inline]
    pub(super) fn ahead(&self, word: Tat, now: Tat) -> Tat {
        let ahead = word.wrapping_sub(now);
        if word == FRESH as Tat || ahead > horizon(self.capacity, self.scale) {
            0
        } else {
            ahead
        }
    }

    /// Decides `n ≥ 1` tokens at `micros` against `word`: the new word, or
    /// why not.
    #[inline]
    pub(super) fn decide(&self, word: Tat, micros: u64, n: u32) -> Result<Tat, Option<Tat>> {
        let now = self.now(micros);
        let ahead = self.ahead(word, now);
        let cost = if n == 1 {
            // Within any burst (and a mix of two slots is never acted on).
            self.interval
        } else {
            match (n as Tat).checked_mul(self.interval) {
                Some(cost) if cost <= self.capacity => cost,
                _ => return Err(None),
            }
        };
        // Cannot wrap with one quota's values (see `fits`).
        let needed = ahead.wrapping_add(cost);
        if needed <= self.capacity {
            let new = now.wrapping_add(needed);
            // `FRESH` only ever starts a bucket: one unit later instead,
            // which only admits less (and keeps the tag: 0 is even).
            Ok(if new == FRESH as Tat { 2 } else { new })
        } else {
            Err(Some((needed - self.capacity).div_ceil(self.scale)))
        }
    }

    /// Whole tokens available at `micros` (zero while `micros` is behind a
    /// previous call's).
    pub(super) fn available(&self, word: Tat, micros: u64) -> u32 {
        let ahead = self.ahead(word, self.now(micros));
        low(self.capacity.saturating_sub(ahead) / self.interval)
    }

    /// Microseconds until the bucket is full again, rounded up.
    pub(super) fn until_full(&self, word: Tat, micros: u64) -> Tat {
        self.ahead(word, self.now(micros)).div_ceil(self.scale)
    }

    /// The drain, in `self`'s half units, that carries a drain of `ahead`
    /// under `old` over ([`Params::carried`]).
    pub(super) fn carried(&self, old: &Self, ahead: Tat) -> Tat {
        2 * self.units().carried(&old.units(), wide(ahead / 2)) as Tat
    }

    /// The same rule in whole scaled units, as the kernel's parameters
    /// (for [`Params::carried`], which reads no `mask`).
    pub(super) fn units(&self) -> Params {
        Params {
            scale: wide(self.scale / 2),
            interval: wide(self.interval / 2),
            capacity: wide(self.capacity / 2),
            horizon: wide(horizon(self.capacity, self.scale) / 2),
            mask: wide(Tat::MAX / 2),
        }
    }
}
