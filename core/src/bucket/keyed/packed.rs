//! The slot protocol where the target has 64-bit atomics: the caller's pin
//! and the slot's admission count live in the bucket word itself, so a
//! call on an existing key is **two** read-modify-writes (pin, then charge
//! and unpin in one CAS).
//!
//! ```text
//!  63                    16 15     10  9   8          0
//! [tat 48                 ][pins 6  ][tag][allowed 9  ]   u64::MAX: locked
//! ```
//!
//! * *tat*: the GCRA arrival time, wrapped modulo 2^48 (see the `gcra`
//!   module for what the narrower word bounds: [`TAT_BITS`](self::word::TAT_BITS)). `0` is
//!   `FRESH` as everywhere.
//! * *tag*: the parity of the tier's quota generation the word was written
//!   under (see the `tiers` module); every write of *tat* writes it too.
//! * *pins*: callers pinned on the slot (at most [`MAX_PINS`], so the
//!   field is never all ones outside [`LOCKED`]). While one is pinned the
//!   word is not `LOCKED`, and only a `LOCKED` word's key is rewritten, so
//!   a pinned caller may read the key.
//! * *allowed*: admissions counted on the slot, not yet in the global
//!   counter. The charging CAS writes `tat'`, `pins - 1`, `allowed + 1` at
//!   once on admission; a refusal (confirmed by a second load of the word,
//!   see `tiers`) only unpins (`fetch_sub`). A caller that
//!   finds the field at [`FOLD_AT`] or more moves it into the global
//!   counter before pinning; only pinned callers add to it, so it never
//!   exceeds `FOLD_AT - 1 + MAX_PINS` and never carries into *pins*.
//! * [`LOCKED`] (all ones): no key (an empty slot), or a slot being
//!   evicted and rewritten under the table's lock. The idle check comes
//!   first (and the evicted key's mark is raised); the eviction then locks
//!   the word by one CAS from that idle, unpinned value, so it fails if
//!   anyone pinned or charged meanwhile, and a locked word is always
//!   rewritten.
//!
//! The state word keeps the fingerprint and tier (its readers and allowed
//! fields stay zero): a caller reads it (no write) to skip other keys'
//! slots, and reads it again once pinned for the tier, which cannot change
//! while it is pinned.

mod word;

use core::mem::ManuallyDrop;

pub(super) use self::word::{arrival, carried, params, FOLD_AT, LOCKED, MASK, MAX_PINS};
use self::word::{
    confirm, pending, tag, tat, with_tat, ALLOWED_MASK, PIN, PINS_MASK, PIN_SHIFT, SLOW,
    UNPIN_ADMITTED,
};
use super::insert::{Evicted, Idle};
use super::state::{self, EMPTY, FP_SHIFT, LOCKED as STATE_LOCKED};
use super::{refusal, KeyedError, KeyedLeft, KeyedLimiter, Slot};
use crate::bucket::gcra::Params;
use crate::sync::{Ordering, TatWord};
use crate::Instant;

/// An empty slot.
pub(super) fn empty<K>() -> Slot<K> {
    Slot {
        state: crate::sync::AtomicU32::new(EMPTY),
        tat: TatWord::new(LOCKED),
        key: core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()),
    }
}

/// A caller pinned on a slot; unpins on drop (also when `Eq` panics).
struct Pinned<'s> {
    word: &'s TatWord,
    /// The word as this caller's pin left it.
    current: u64,
}

impl Drop for Pinned<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.fetch_sub(PIN, Ordering::Release);
    }
}

impl<K, const N: usize, const TIERS: usize, S> KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + core::hash::Hash + Clone,
    S: core::hash::BuildHasher,
{
    /// Pins `slot` if its state shows fingerprint `fp` and its key is
    /// `key`; returns the pin and the (stable) state, whose tier is all
    /// that is read of it (0 with one tier).
    #[inline]
    fn pin_key<'s>(&self, slot: &'s Slot<K>, fp: u32, key: &K) -> Option<(Pinned<'s>, u32)> {
        if slot.state.load(Ordering::Acquire) >> FP_SHIFT != fp {
            return None; // another key, or none
        }
        let word = slot.tat.load(Ordering::Acquire);
        let pin = if word & SLOW == 0
            && slot
                .tat
                .compare_exchange(word, word + PIN, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            Pinned {
                word: &slot.tat,
                current: word + PIN,
            }
        } else {
            self.pin_slow(slot)?
        };
        // SAFETY: pinned on a word that is not LOCKED, so the slot holds an
        // initialised key (published before the word, Release/Acquire) that
        // cannot be replaced until the pin is released.
        if unsafe { (*slot.key.get()).assume_init_ref() } != key {
            return None; // another key with the same fingerprint, or recycled
        }
        // Once pinned the state cannot change (and the pin's Acquire made
        // the current one visible). One tier: nothing to read.
        let state = if TIERS == 1 {
            0
        } else {
            slot.state.load(Ordering::Relaxed)
        };
        Some((pin, state))
    }

    /// [`pin_key`](Self::pin_key)'s pin under contention, with a batch of
    /// admissions to fold, with many callers pinned, or on a locked slot.
    #[cold]
    #[inline(never)]
    fn pin_slow<'s>(&self, slot: &'s Slot<K>) -> Option<Pinned<'s>> {
        let mut word = slot.tat.load(Ordering::Acquire);
        loop {
            if word == LOCKED || (word & PINS_MASK) >> PIN_SHIFT >= MAX_PINS {
                // No key, a key being rewritten, or `MAX_PINS` callers on
                // this one: the last take the locked path.
                return None;
            }
            let allowed = word & ALLOWED_MASK;
            if allowed >= FOLD_AT {
                match slot.tat.compare_exchange(
                    word,
                    word - allowed,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // Release: see `metrics`.
                        self.allowed.add_release(allowed);
                        word -= allowed;
                    }
                    Err(actual) => word = actual,
                }
                continue;
            }
            match slot.tat.compare_exchange_weak(
                word,
                word + PIN,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Pinned {
                        word: &slot.tat,
                        current: word + PIN,
                    })
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Charges `slot` if it holds `key`; `None` if it does not. The
    /// admitting CAS also unpins and counts the admission in the slot.
    /// Admitted: what the word written holds if `LEFT`
    /// (else 0, and nothing more is read).
    #[inline]
    pub(super) fn charge_if<const LEFT: bool>(
        &self,
        slot: &Slot<K>,
        fp: u32,
        key: &K,
        n: u32,
        now: Instant,
    ) -> Option<Result<KeyedLeft, KeyedError>> {
        let (pin, state) = self.pin_key(slot, fp, key)?;
        let tier = Self::tier_of_state(state);
        let now = now.as_micros();
        let mut current = pin.current;
        loop {
            // The tier's generation is loaded after the word (see `tiers`).
            match self.tiers.decide(tier, tat(current), tag(current), now, n) {
                Ok((new, tag)) => {
                    let next = with_tat(current, new, tag).wrapping_add(UNPIN_ADMITTED);
                    match slot.tat.compare_exchange_weak(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            // The CAS released the pin.
                            let _ = ManuallyDrop::new(pin);
                            return Some(Ok(if LEFT {
                                self.left_quote(tier, next, now)
                            } else {
                                KeyedLeft::NOTHING
                            }));
                        }
                        Err(actual) => current = actual,
                    }
                }
                Err(refused) => match confirm(&slot.tat, current) {
                    Ok(()) => {
                        drop(pin); // unpins
                        return Some(Err(refusal(n, refused)));
                    }
                    Err(moved) => current = moved,
                },
            }
        }
    }

    /// Whole tokens at `now` (µs) of a bucket word of `tier` (read by
    /// `available`).
    #[inline]
    fn left(&self, tier: usize, word: u64, now: u64) -> u32 {
        self.tiers.available(tier, tat(word), tag(word), now) as u32
    }

    /// What a bucket word of `tier` just written holds at `now` (µs).
    #[inline]
    fn left_quote(&self, tier: usize, word: u64, now: u64) -> KeyedLeft {
        self.tiers.left(tier, tat(word), tag(word), now)
    }

    /// Whole tokens of `slot`'s bucket at `now` if it holds `key`.
    pub(super) fn available_if(
        &self,
        slot: &Slot<K>,
        fp: u32,
        key: &K,
        now: Instant,
    ) -> Option<u32> {
        let (pin, state) = self.pin_key(slot, fp, key)?;
        let word = slot.tat.load(Ordering::Acquire);
        drop(pin);
        Some(self.left(Self::tier_of_state(state), word, now.as_micros()))
    }

    /// Whether `slot` shows fingerprint `fp` with every pin taken (so it
    /// may hold the key, unreachable without the lock).
    pub(super) fn crowded(slot: &Slot<K>, fp: u32) -> bool {
        let word = slot.tat.load(Ordering::Relaxed);
        slot.state.load(Ordering::Relaxed) >> FP_SHIFT == fp
            && word != LOCKED
            && (word & PINS_MASK) >> PIN_SHIFT >= MAX_PINS
    }

    /// Under the lock: the parameters and arrival time of a live slot.
    pub(super) fn tat_locked(&self, slot: &Slot<K>) -> (Params, u64) {
        let tier = Self::tier_of_state(slot.state.load(Ordering::Acquire));
        let word = slot.tat.load(Ordering::Acquire);
        let (params, tat, _) = self.tiers.state(tier, tat(word), tag(word));
        (params, tat)
    }

    /// Admissions counted on `slot` and not yet folded.
    pub(super) fn slot_pending(slot: &Slot<K>) -> u64 {
        pending(slot.tat.load(Ordering::Relaxed))
    }

    /// Under the lock: charges live slot `i` without pinning
    /// (so this works with `MAX_PINS` callers pinned); the caller counts the
    /// admission globally.
    /// Admitted: what the word written holds.
    pub(super) fn charge_locked(
        &self,
        i: usize,
        n: u32,
        now: Instant,
    ) -> Result<KeyedLeft, KeyedError> {
        let slot = &self.slots[i];
        let tier = Self::tier_of_state(slot.state.load(Ordering::Acquire));
        let now = now.as_micros();
        let mut current = slot.tat.load(Ordering::Acquire);
        loop {
            let (new, tag) = match self.tiers.decide(tier, tat(current), tag(current), now, n) {
                Ok(decided) => decided,
                Err(refused) => match confirm(&slot.tat, current) {
                    Ok(()) => return Err(refusal(n, refused)),
                    Err(moved) => {
                        current = moved;
                        continue;
                    }
                },
            };
            let next = with_tat(current, new, tag);
            match slot
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(self.left_quote(tier, next, now)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Under the lock: the live key of `slot` if it is idle (bucket full
    /// at `now`) with nobody pinned, as read (for its eviction mark and
    /// [`lock_idle`](Self::lock_idle)).
    pub(super) fn idle(&self, slot: &Slot<K>, now: Instant) -> Option<Idle> {
        let state = slot.state.load(Ordering::Acquire);
        if state == EMPTY || state == STATE_LOCKED {
            return None;
        }
        let word = slot.tat.load(Ordering::Acquire);
        if word == LOCKED || word & PINS_MASK != 0 {
            return None;
        }
        // Under the lock every word is current (see `tiers`).
        let tier = Self::tier_of_state(state);
        let (params, tat, _) = self.tiers.state(tier, tat(word), tag(word));
        if params.drained(tat, now.as_micros()) != 0 || self.tiers.holds(tier, now.as_micros()) {
            return None; // busy, or held after a change (see `Tiers::holds`): keep it
        }
        Some(Idle { state, word, tat })
    }

    /// Under the lock: locks `slot` if its word is still as `idle` read it
    /// (one CAS: it fails if anyone pinned, charged or folded since), and
    /// returns what the key leaves (pending admissions, final arrival time,
    /// state); the key is then the caller's to move out. `None` leaves the
    /// slot as it was.
    #[allow(clippy::unused_self)] // the signature of `split`'s, which reads the tier
    pub(super) fn lock_idle(&self, slot: &Slot<K>, idle: &Idle, _now: Instant) -> Option<Evicted> {
        slot.tat
            .compare_exchange(idle.word, LOCKED, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        // No longer a live key for `find_locked` and `Drop`. Release: a
        // lock-free `available` that reads this state, and so skips the
        // slot, must also see the eviction mark raised before the lock.
        slot.state.store(STATE_LOCKED, Ordering::Release);
        Some(Evicted {
            pending: pending(idle.word),
            tat: idle.tat,
            state: idle.state,
        })
    }

    /// Under the lock: writes `key` into a slot whose state and word are
    /// LOCKED, with a bucket at arrival time `start` under tag `tag`, and
    /// publishes it.
    pub(super) fn fill(slot: &Slot<K>, key: K, fp: u32, tier: usize, (start, tag): (u64, usize)) {
        // SAFETY: the word is LOCKED and we hold the table's lock: nobody
        // is pinned and no other writer exists; any previous key was moved
        // out or never written.
        unsafe { (*slot.key.get()).write(key) };
        // Release, as in `lock_idle`: a reader skipping the slot for its
        // new fingerprint sees the marks raised before.
        slot.state.store(state::live(fp, tier), Ordering::Release);
        // Publishes the key and the state to the next caller's pin: the
        // bucket, nobody pinned, nothing counted (never LOCKED: the low
        // fields are zero).
        slot.tat.store(with_tat(0, start, tag), Ordering::Release);
    }

    /// Under the lock, after a change of `tier`'s quota: converts `slot`
    /// if it holds a key of `tier` written under the previous quota (one
    /// CAS, retried if a decision moved the word first).
    pub(super) fn sweep(&self, slot: &Slot<K>, tier: usize) {
        let state = slot.state.load(Ordering::Acquire);
        if state == EMPTY || state == STATE_LOCKED || Self::tier_of_state(state) != tier {
            return;
        }
        let mut word = slot.tat.load(Ordering::Acquire);
        loop {
            let (_, new, current) = self.tiers.state(tier, tat(word), tag(word));
            if word == LOCKED || tag(word) == current {
                return;
            }
            match slot.tat.compare_exchange_weak(
                word,
                with_tat(word, new, current),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }
}

/// White-box hooks for the unit tests.
#[cfg(all(test, not(loom)))]
impl<K, const N: usize, const TIERS: usize, S> KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + core::hash::Hash + Clone,
    S: core::hash::BuildHasher,
{
    /// Most callers on one slot at once.
    pub(super) const MAX_CALLERS: u64 = MAX_PINS;

    /// Holds a pin on `slot` (holding `key`) until dropped.
    pub(super) fn hold<'s>(&self, slot: &'s Slot<K>, fp: u32, key: &K) -> Option<impl Drop + 's> {
        self.pin_key(slot, fp, key).map(|(pin, _)| pin)
    }

    /// Callers pinned on `slot` (0 if it is locked or empty).
    pub(super) fn callers(slot: &Slot<K>) -> u64 {
        match slot.tat.load(Ordering::Relaxed) {
            LOCKED => 0,
            word => (word & PINS_MASK) >> PIN_SHIFT,
        }
    }
}
