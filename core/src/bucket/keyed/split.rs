//! The slot protocol on targets without 64-bit atomics (Cortex-M): the
//! caller registers on the state word (which also counts admissions; see
//! the `state` module), charges the 32-bit bucket word, and unregisters:
//! three read-modify-writes per call.
//!
//! The bucket word is in *half units*, like the token bucket's (`tagged`):
//! the slots' parameters are twice the quota's scale, interval, capacity
//! and horizon, so every arrival time is even, and the word's lowest bit
//! is the tag of the tier's quota generation it was written under (see
//! the `tiers` module). So it wraps at 2^31 scaled units (35.8 min at
//! scale 1), with the same ~1.05 s backward tolerance as a token bucket.
//!
//! An eviction reads the state word (nobody registered) and the bucket
//! (idle), raises the key's eviction mark, then locks the state word by a
//! CAS from the value it read. A registration changes that value, and a
//! charge needs one, so the lock fails if anyone came meanwhile; only an
//! ABA (a caller registering, charging and unregistering, and enough
//! further admissions to fold the slot's count back to the same value, all
//! between the two reads) gets through, which the locked re-read of the
//! bucket catches: the key is kept if busy (then, for that instant, a
//! lock-free `available` may read it as absent) or evicted with a new mark
//! if idle again.

mod word;

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use self::word::split;
pub(super) use self::word::{arrival, carried, params, MASK};
use super::insert::{Evicted, Idle};
use super::state::registration::{
    pending, READER, READERS_MASK, SLOW, UNREGISTER, UNREGISTER_ADMITTED,
};
use super::state::{self, EMPTY, FP_SHIFT, LOCKED};
use super::{refusal, KeyedError, KeyedLeft, KeyedLimiter, Slot};
use crate::bucket::gcra::{self, Params};
use crate::sync::{fence, AtomicU32, Ordering, Tat, TatWord};
use crate::Instant;

/// Pending admissions moved to the global counter by the next caller.
#[cfg(test)]
pub(super) const FOLD_AT: u64 = state::FOLD_AT as u64;

/// An empty slot.
pub(super) fn empty<K>() -> Slot<K> {
    Slot {
        state: AtomicU32::new(EMPTY),
        tat: TatWord::new(gcra::FRESH as _),
        key: UnsafeCell::new(MaybeUninit::uninit()),
    }
}

impl<K, const N: usize, const TIERS: usize, S> KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + core::hash::Hash + Clone,
    S: core::hash::BuildHasher,
{
    /// Charges `slot` if it holds `key`; `None` if it does not. An admission
    /// is counted in the slot as the caller unregisters.
    #[inline]
    pub(super) fn charge_if<const LEFT: bool>(
        &self,
        slot: &Slot<K>,
        fp: u32,
        key: &K,
        n: u32,
        now: Instant,
    ) -> Option<Result<KeyedLeft, KeyedError>> {
        let mut guard = self.register(slot, fp)?;
        // SAFETY: registered, so the key is initialised and cannot be
        // replaced until the guard drops.
        if unsafe { (*slot.key.get()).assume_init_ref() } != key {
            return None;
        }
        let result = self.charge::<LEFT>(slot, Self::tier_of_state(guard.state), n, now);
        if result.is_ok() {
            guard.release = UNREGISTER_ADMITTED;
        }
        Some(result)
    }

    /// Whole tokens of `slot`'s bucket at `now` if it holds `key`.
    pub(super) fn available_if(
        &self,
        slot: &Slot<K>,
        fp: u32,
        key: &K,
        now: Instant,
    ) -> Option<u32> {
        let guard = self.register(slot, fp)?;
        // SAFETY: registered, so the key is initialised and stable.
        if unsafe { (*slot.key.get()).assume_init_ref() } != key {
            return None;
        }
        let word = slot.tat.load(Ordering::Acquire);
        Some(self.left(Self::tier_of_state(guard.state), word, now.as_micros()))
    }

    /// Whole tokens at `now` (µs) of a bucket word of `tier` (just written,
    /// or read by `available`).
    #[inline]
    fn left(&self, tier: usize, word: Tat, now: u64) -> u32 {
        let (tat, tag) = split(word);
        self.tiers.available(tier, tat, tag, now) as u32
    }

    /// Whether `slot` shows fingerprint `fp` with every registration taken
    /// (so it may hold the key, unreachable without the lock).
    pub(super) fn crowded(slot: &Slot<K>, fp: u32) -> bool {
        let state = slot.state.load(Ordering::Relaxed);
        state >> FP_SHIFT == fp && state & READERS_MASK == READERS_MASK
    }

    /// Under the lock: the parameters and arrival time of a live slot.
    pub(super) fn tat_locked(&self, slot: &Slot<K>) -> (Params, u64) {
        let tier = Self::tier_of_state(slot.state.load(Ordering::Acquire));
        let (tat, tag) = split(slot.tat.load(Ordering::Acquire));
        let (params, tat, _) = self.tiers.state(tier, tat, tag);
        (params, tat)
    }

    /// Admissions counted on `slot` and not yet folded.
    pub(super) fn slot_pending(slot: &Slot<K>) -> u64 {
        u64::from(pending(slot.state.load(Ordering::Relaxed)))
    }

    /// Under the lock: charges live slot `i` without
    /// registering (so this works with `MAX_READERS` callers registered);
    /// the caller counts the admission globally.
    pub(super) fn charge_locked(
        &self,
        i: usize,
        n: u32,
        now: Instant,
    ) -> Result<KeyedLeft, KeyedError> {
        let slot = &self.slots[i];
        self.charge::<true>(
            slot,
            Self::tier_of_state(slot.state.load(Ordering::Acquire)),
            n,
            now,
        )
    }

    /// One GCRA decision on `slot`'s bucket word under `tier`'s quota: a
    /// load, then a CAS from exactly the word decided on, which also
    /// converts a word written under the previous quota (see `tiers`).
    /// Admitted: what the word written holds if `LEFT`
    /// (else 0).
    #[inline]
    fn charge<const LEFT: bool>(
        &self,
        slot: &Slot<K>,
        tier: usize,
        n: u32,
        now: Instant,
    ) -> Result<KeyedLeft, KeyedError> {
        let micros = now.as_micros();
        let mut word = slot.tat.load(Ordering::Acquire);
        loop {
            let (tat, tag) = split(word);
            // The tier's generation is loaded after the word (see `tiers`).
            let (new, tag) = match self.tiers.decide(tier, tat, tag, micros, n) {
                Ok(decided) => decided,
                Err(refused) => {
                    // Confirmed on the word (see `tiers`): a refusal
                    // decided on a word that has moved since is retried.
                    fence(Ordering::Acquire);
                    let again = slot.tat.load(Ordering::Acquire);
                    if again == word {
                        return Err(refusal(n, refused));
                    }
                    word = again;
                    continue;
                }
            };
            let new = (arrival(new) | tag as u64) as Tat;
            match slot
                .tat
                .compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(if LEFT {
                        let (tat, tag) = split(new);
                        self.tiers.left(tier, tat, tag, micros)
                    } else {
                        KeyedLeft::NOTHING
                    })
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Under the lock, after a change of `tier`'s quota: converts `slot`
    /// if it holds a key of `tier` written under the previous quota (one
    /// CAS, retried if a decision moved the word first).
    pub(super) fn sweep(&self, slot: &Slot<K>, tier: usize) {
        let state = slot.state.load(Ordering::Acquire);
        if state == EMPTY || state == LOCKED || Self::tier_of_state(state) != tier {
            return;
        }
        let mut word = slot.tat.load(Ordering::Acquire);
        loop {
            let (tat, tag) = split(word);
            let (_, new, current) = self.tiers.state(tier, tat, tag);
            if tag == current {
                return;
            }
            let new = (arrival(new) | current as u64) as Tat;
            match slot
                .tat
                .compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Under the lock: the live key of `slot` if nobody is registered and
    /// it is idle (bucket full at `now`), as read (for its eviction mark
    /// and [`lock_idle`](Self::lock_idle)).
    pub(super) fn idle(&self, slot: &Slot<K>, now: Instant) -> Option<Idle> {
        let state = slot.state.load(Ordering::Acquire);
        if state == EMPTY || state == LOCKED || state & READERS_MASK != 0 {
            return None;
        }
        // Under the lock every word is current (see `tiers`).
        let (params, tat) = self.tat_locked(slot);
        let held = self
            .tiers
            .holds(Self::tier_of_state(state), now.as_micros());
        if params.drained(tat, now.as_micros()) != 0 || held {
            return None; // busy, or held after a change (see `Tiers::holds`): keep it
        }
        Some(Idle {
            state,
            word: u64::from(state),
            tat,
        })
    }

    /// Under the lock: locks `slot` if its state is still as `idle` read it
    /// (fails if anyone registered, unregistered or folded since) and its
    /// key is idle at `now`, and returns what the key leaves (pending
    /// admissions, final arrival time, state); the key is then the
    /// caller's to move out. `None` leaves the slot as it was.
    pub(super) fn lock_idle(&self, slot: &Slot<K>, idle: &Idle, now: Instant) -> Option<Evicted> {
        slot.state
            .compare_exchange(
                idle.word as u32,
                LOCKED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        // Final while locked: a charge needs a registration (or the lock,
        // which we hold). Re-read for the ABA of the module docs.
        let (params, tat) = self.tat_locked(slot);
        if tat != idle.tat && params.drained(tat, now.as_micros()) != 0 {
            slot.state.store(idle.state, Ordering::Release); // busy: keep it
            return None;
        }
        Some(Evicted {
            pending: u64::from(pending(idle.state)),
            tat,
            state: idle.state,
        })
    }

    /// Under the lock: writes `key` into a LOCKED slot, with a bucket at
    /// arrival time `start` under tag `tag`, and publishes it.
    pub(super) fn fill(slot: &Slot<K>, key: K, fp: u32, tier: usize, (start, tag): (u64, usize)) {
        // SAFETY: the slot is LOCKED and we hold the table's lock: no
        // caller is registered and no other writer exists; any previous
        // key was moved out or never written.
        unsafe { (*slot.key.get()).write(key) };
        let start = if start == gcra::FRESH {
            start
        } else {
            arrival(start)
        };
        slot.tat
            .store((start | tag as u64) as Tat, Ordering::Relaxed);
        slot.state.store(state::live(fp, tier), Ordering::Release);
    }

    /// Registers on `slot` if its fingerprint is `fp` (which also rules out
    /// EMPTY and LOCKED) and it has room for one more caller.
    #[inline]
    fn register<'s>(&self, slot: &'s Slot<K>, fp: u32) -> Option<Registered<'s>> {
        let state = slot.state.load(Ordering::Acquire);
        if state >> FP_SHIFT != fp {
            return None; // another key, or none
        }
        if state & SLOW == 0
            && slot
                .state
                .compare_exchange(state, state + READER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(Registered::new(&slot.state, state));
        }
        self.register_slow(slot, fp)
    }

    /// [`register`](Self::register) under contention, with a batch of
    /// admissions to fold, or with many callers registered.
    #[cold]
    #[inline(never)]
    fn register_slow<'s>(&self, slot: &'s Slot<K>, fp: u32) -> Option<Registered<'s>> {
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            if state >> FP_SHIFT != fp || state & READERS_MASK == READERS_MASK {
                // Another key, no key, or `MAX_READERS` callers on this one:
                // the last take the locked path (`charge_locked`).
                return None;
            }
            if state & state::ALLOWED_MASK >= state::FOLD_AT {
                state = self.fold(&slot.state, state);
                continue;
            }
            match slot.state.compare_exchange_weak(
                state,
                state + READER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Registered::new(&slot.state, state)),
                Err(actual) => state = actual,
            }
        }
    }

    /// Moves the admissions pending in `state` into the global counter;
    /// returns the current state.
    fn fold(&self, word: &AtomicU32, state: u32) -> u32 {
        let pending = state & state::ALLOWED_MASK;
        match word.compare_exchange(state, state - pending, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // Release: see `metrics`.
                self.allowed.add_release(u64::from(pending));
                state - pending
            }
            Err(actual) => actual,
        }
    }
}

/// A caller registered on a slot; unregisters on drop (also when `Eq`
/// panics), adding `release` to the state word.
struct Registered<'s> {
    word: &'s AtomicU32,
    /// The state registered on (before this caller).
    state: u32,
    /// [`UNREGISTER`], or [`UNREGISTER_ADMITTED`] once
    /// admitted.
    release: u32,
}

impl<'s> Registered<'s> {
    #[inline]
    fn new(word: &'s AtomicU32, state: u32) -> Self {
        Self {
            word,
            state,
            release: UNREGISTER,
        }
    }
}

impl Drop for Registered<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.fetch_add(self.release, Ordering::Release);
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
    pub(super) const MAX_CALLERS: u64 = state::MAX_READERS as u64;

    /// Holds a registration on `slot` until dropped.
    pub(super) fn hold<'s>(&self, slot: &'s Slot<K>, fp: u32, _key: &K) -> Option<impl Drop + 's> {
        self.register(slot, fp)
    }

    /// Callers registered on `slot`.
    pub(super) fn callers(slot: &Slot<K>) -> u64 {
        u64::from((slot.state.load(Ordering::Relaxed) & READERS_MASK) / READER)
    }
}
