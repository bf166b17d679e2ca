//! The 64-bit bucket word's layout (see the parent module's docs): its
//! fields, their constants, and the kernel's parameters for its 48-bit
//! arrival time.

use crate::bucket::gcra::Params;
use crate::bucket::{Quota, QuotaError};
use crate::sync::{fence, Ordering, TatWord};

/// Width of the arrival time in the bucket word.
pub(in crate::bucket::keyed) const TAT_BITS: u32 = 48;
pub(in crate::bucket::keyed) const TAT_SHIFT: u32 = 64 - TAT_BITS;
/// The arrival time's values: `2^48 - 1`.
pub(in crate::bucket::keyed) const MASK: u64 = (1 << TAT_BITS) - 1;
const ALLOWED_BITS: u32 = 9;
pub(in crate::bucket::keyed) const ALLOWED_MASK: u64 = (1 << ALLOWED_BITS) - 1;
/// The quota generation's tag.
pub(in crate::bucket::keyed) const TAG: u64 = 1 << ALLOWED_BITS;
pub(in crate::bucket::keyed) const PIN_SHIFT: u32 = ALLOWED_BITS + 1;
/// One pinned caller.
pub(in crate::bucket::keyed) const PIN: u64 = 1 << PIN_SHIFT;
pub(in crate::bucket::keyed) const PINS_MASK: u64 = ((1 << TAT_SHIFT) - 1) & !(ALLOWED_MASK | TAG);
/// Most callers pinned on one slot at once (all ones is `LOCKED`'s).
pub(in crate::bucket::keyed) const MAX_PINS: u64 = (PINS_MASK >> PIN_SHIFT) - 1;
/// Empty, or being rewritten under the table's lock.
pub(in crate::bucket::keyed) const LOCKED: u64 = u64::MAX;

/// Pending admissions moved to the global counter by the next caller.
/// Small under loom so that the models reach the fold.
#[cfg(not(loom))]
pub(in crate::bucket::keyed) const FOLD_AT: u64 = 1 << (ALLOWED_BITS - 1);
#[cfg(loom)]
pub(in crate::bucket::keyed) const FOLD_AT: u64 = 2;
const _: () = assert!(FOLD_AT - 1 + MAX_PINS <= ALLOWED_MASK);
const _: () = assert!(FOLD_AT.is_power_of_two());

/// Bits that send a pin to its slow path: a batch to fold, half the pins'
/// room taken, or `LOCKED`. One `test` on the fast path.
pub(in crate::bucket::keyed) const SLOW: u64 =
    (ALLOWED_MASK & !(FOLD_AT - 1)) | (PINS_MASK & !(PINS_MASK >> 1));

/// Added by an admitting charge besides the new arrival time: one pin
/// less, one admission more.
pub(in crate::bucket::keyed) const UNPIN_ADMITTED: u64 = 1u64.wrapping_sub(PIN);

pub(in crate::bucket::keyed) const fn tat(word: u64) -> u64 {
    word >> TAT_SHIFT
}

/// The tag of a word (see the `tiers` module).
pub(in crate::bucket::keyed) const fn tag(word: u64) -> usize {
    ((word & TAG) >> ALLOWED_BITS) as usize
}

/// `word` with arrival time `tat` written under tag `tag`.
pub(in crate::bucket::keyed) const fn with_tat(word: u64, tat: u64, tag: usize) -> u64 {
    tat << TAT_SHIFT | (word & !(u64::MAX << TAT_SHIFT) & !TAG) | (tag as u64) << ALLOWED_BITS
}

/// A refusal decided on `word`: `Ok` if its arrival time and tag have not
/// moved since (so the quota read was the word's, see `tiers`), else `Err`
/// with the word now. Pins and counts may have moved: they decide nothing.
#[cold]
#[inline(never)]
pub(in crate::bucket::keyed) fn confirm(slot: &TatWord, word: u64) -> Result<(), u64> {
    fence(Ordering::Acquire);
    let now = slot.load(Ordering::Acquire);
    let state = |w: u64| (tat(w), tag(w));
    if now != LOCKED && state(now) == state(word) {
        Ok(())
    } else {
        Err(now)
    }
}

/// The drain, in `new`'s units, that carries a drain of `ahead` under
/// `old` over to `new` ([`Params::carried`]).
pub(in crate::bucket::keyed) fn carried(new: &Params, old: &Params, ahead: u64) -> u64 {
    new.carried(old, ahead)
}

/// An arrival time as stored: never `FRESH` (one unit later instead, which
/// only admits less).
pub(in crate::bucket::keyed) const fn arrival(tat: u64) -> u64 {
    if tat == crate::bucket::gcra::FRESH {
        1
    } else {
        tat
    }
}

/// Admissions pending in a word (0 if `LOCKED`).
pub(in crate::bucket::keyed) const fn pending(word: u64) -> u64 {
    if word == LOCKED {
        0
    } else {
        word & ALLOWED_MASK
    }
}

/// The 48-bit GCRA parameters of `quota`.
pub(in crate::bucket::keyed) const fn params(quota: &Quota) -> Result<Params, QuotaError> {
    match Params::new(
        quota.tokens(),
        quota.period().as_micros(),
        quota.burst(),
        TAT_BITS,
    ) {
        Ok(p) => Ok(p),
        Err(_) => Err(QuotaError::TooLong),
    }
}
