//! The 32-bit state word of a keyed-limiter slot.
//!
//! Where the target has 64-bit atomics only the fingerprint and tier are
//! used (readers and allowed stay zero: the bucket word holds them, see
//! the `packed` module); the rest describes Cortex-M.
//!
//! ```text
//!  31          20 19  18 17      12 11          0
//! [fingerprint 12][tier 2][readers 6][allowed 12]
//! ```
//!
//! * `0` ([`EMPTY`]): no key; `u32::MAX` ([`LOCKED`]): being written or
//!   evicted (under the table's lock). Their fingerprint
//!   fields (0 and 4 095) are never a key's, so one comparison of the
//!   fingerprint also rejects both.
//! * *readers*: callers registered on the slot (at most [`MAX_READERS`];
//!   one more takes the locked path).
//! * *allowed*: admissions counted on this slot and not yet moved into the
//!   limiter's global counter. A caller unregisters after an admission with
//!   one `fetch_add(UNREGISTER_ADMITTED)` (in `registration`), which both drops its
//!   registration and counts it. A caller that finds the field at
//!   [`FOLD_AT`] or more moves it into the global counter (one CAS) before
//!   registering, and an eviction moves the remainder of the key it
//!   recycles. Registering needs the field below `FOLD_AT`, and only
//!   registered callers add to it (at most `MAX_READERS` of them since the
//!   last registration), so it never exceeds `FOLD_AT - 1 + MAX_READERS`
//!   and never carries into the readers field.

/// No key.
pub(super) const EMPTY: u32 = 0;
/// Being written or checked for eviction.
pub(super) const LOCKED: u32 = u32::MAX;

const ALLOWED_BITS: u32 = 12;
/// The *allowed* field.
pub(super) const ALLOWED_MASK: u32 = (1 << ALLOWED_BITS) - 1;
const READERS_BITS: u32 = 6;
/// Most callers registered on one slot at once.
pub(super) const MAX_READERS: u32 = (1 << READERS_BITS) - 1;
const TIER_SHIFT: u32 = ALLOWED_BITS + READERS_BITS;
/// Position of the fingerprint.
pub(super) const FP_SHIFT: u32 = TIER_SHIFT + 2;
/// Largest fingerprint a key gets (all ones is `LOCKED`'s).
pub(super) const FP_MAX: u32 = (1 << (32 - FP_SHIFT)) - 2;

/// Pending admissions moved to the global counter by the next caller.
/// Small under loom so that the models reach the fold.
#[cfg(not(loom))]
pub(super) const FOLD_AT: u32 = 1 << (ALLOWED_BITS - 1);
#[cfg(loom)]
pub(super) const FOLD_AT: u32 = 2;
const _: () = assert!(FOLD_AT - 1 + MAX_READERS <= ALLOWED_MASK);

/// The state of a live slot holding a key with fingerprint `fp` in `tier`,
/// nobody registered, nothing counted.
pub(super) const fn live(fp: u32, tier: usize) -> u32 {
    fp << FP_SHIFT | (tier as u32) << TIER_SHIFT
}

/// The tier of a live state.
pub(super) const fn tier(state: u32) -> usize {
    ((state >> TIER_SHIFT) & 0b11) as usize
}

/// The registration fields' constants, used only by the split (Cortex-M)
/// protocol: where the bucket word holds the pins (`packed`), a state's
/// readers and allowed fields stay zero.
#[cfg(not(fusebox_wide_words))]
pub(super) mod registration {
    use super::{ALLOWED_BITS, ALLOWED_MASK, FOLD_AT, LOCKED, MAX_READERS, READERS_BITS};

    /// One registered caller.
    pub(in super::super) const READER: u32 = 1 << ALLOWED_BITS;
    /// The *readers* field.
    pub(in super::super) const READERS_MASK: u32 = MAX_READERS << ALLOWED_BITS;

    /// Bits that send `KeyedLimiter::register` to its slow path: a
    /// batch to fold (*allowed* at `FOLD_AT` or more; `FOLD_AT` is a power of
    /// two) or half the readers' room taken. One `test` on the fast path.
    pub(in super::super) const SLOW: u32 =
        (ALLOWED_MASK & !(FOLD_AT - 1)) | (READER << (READERS_BITS - 1));
    const _: () = assert!(FOLD_AT.is_power_of_two());

    /// Added to unregister after a refusal (minus one reader).
    pub(in super::super) const UNREGISTER: u32 = READER.wrapping_neg();
    /// Added to unregister after an admission (minus one reader, plus one
    /// admission).
    pub(in super::super) const UNREGISTER_ADMITTED: u32 = UNREGISTER.wrapping_add(1);

    /// Admissions pending in a state (0 for `EMPTY` and `LOCKED`).
    pub(in super::super) const fn pending(state: u32) -> u32 {
        if state == LOCKED {
            0
        } else {
            state & ALLOWED_MASK
        }
    }
}
