//! The critical-section path of [`KeyedLimiter`]: keys not found
//! lock-free are inserted (into an empty slot, or by evicting an idle key),
//! found inserted meanwhile, or charged without registering when their
//! slot has no room for another caller. Evictions happen only here.

use core::hash::Hash;

use super::marks;
use super::state::{EMPTY, FP_SHIFT, LOCKED};
use super::{KeyedError, KeyedLimiter};
use crate::bucket::{take, InsufficientCapacity};
use crate::sync::Ordering;
use crate::Instant;

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize> KeyedLimiter<K, N, TIERS> {
    /// Not found lock-free: inserts the key (or finds it inserted
    /// meanwhile, or busy with the most callers a slot can pin or register),
    /// or uses the
    /// [`FullPolicy`](super::FullPolicy). Counts the outcome globally.
    #[cold]
    #[inline(never)]
    pub(super) fn acquire_slow(
        &self,
        key: &K,
        n: u32,
        tier: Option<usize>,
        fp: u32,
        home: usize,
        now: Instant,
    ) -> Result<(), KeyedError> {
        let tier = tier
            .or_else(|| self.tier_of.map(|f| f(key)))
            .unwrap_or(0)
            .min(TIERS - 1);
        // Charged inside the critical section: evictions happen only there,
        // so the slot found or filled still holds this key.
        let charged = crate::sync::critical(|| {
            let i = self.insert(key, fp, home, tier, now)?;
            Some(self.charge_locked(i, n, now))
        });
        let result = match charged {
            Some(result) => result,
            None => match &self.overflow {
                Some(bucket) if n > bucket.quota().burst() => {
                    Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
                        requested: n,
                        burst: bucket.quota().burst(),
                    }))
                }
                Some(bucket) => take(&bucket.tat, bucket.quota(), n, now).map_err(Into::into),
                None => Err(KeyedError::TableFull),
            },
        };
        match result {
            Ok(()) => self.allowed.incr(),
            Err(KeyedError::TableFull) => {
                self.limited.incr();
                self.table_full.incr();
            }
            Err(_) => self.limited.incr(),
        }
        result
    }

    /// Inside the critical section: the live slot holding `key`.
    pub(super) fn find_locked(&self, key: &K, fp: u32, home: usize) -> Option<usize> {
        Self::window(home).find(|&i| {
            let slot = &self.slots[i];
            // The fingerprint test also rejects EMPTY and LOCKED.
            // SAFETY: live slot, and only the critical section (which we
            // hold) writes or drops keys.
            slot.state.load(Ordering::Acquire) >> FP_SHIFT == fp
                && unsafe { (*slot.key.get()).assume_init_ref() } == key
        })
    }

    /// Inside the critical section: finds or inserts `key`, returning its
    /// slot, or `None` if the window has no empty or idle slot.
    fn insert(&self, key: &K, fp: u32, home: usize, tier: usize, now: Instant) -> Option<usize> {
        if let Some(i) = self.find_locked(key, fp, home) {
            return Some(i);
        }
        let empty =
            Self::window(home).find(|&i| self.slots[i].state.load(Ordering::Acquire) == EMPTY);
        if let Some(i) = empty {
            let slot = &self.slots[i];
            // EMPTY -> LOCKED cannot race: only the critical section claims
            // (a caller's pin or registration needs a live state).
            slot.state.store(LOCKED, Ordering::Relaxed);
            // SAFETY: inside the critical section.
            let start = unsafe { self.start(fp, tier, now) };
            Self::fill(slot, key, fp, tier, start);
            self.keys.fetch_add(1, Ordering::Relaxed);
            return Some(i);
        }
        for i in Self::window(home) {
            let slot = &self.slots[i];
            // Locks the slot if its key is idle and nobody is on it.
            let Some(evicted) = self.lock_if_idle(slot, now) else {
                continue;
            };
            // The evicted key's admissions not yet folded.
            self.allowed.add(evicted.pending);
            // Where its bucket stood, for its return (see `marks`).
            let params = self.params_of(evicted.state);
            if let Some(mark) = marks::left_by(params, evicted.tat, now.as_micros()) {
                // SAFETY: inside the critical section.
                unsafe { self.marks.raise(evicted.state >> FP_SHIFT, mark) };
            }
            // SAFETY: the slot was live (initialised key) and is locked with
            // nobody on it; nobody else can reach the key.
            unsafe { (*slot.key.get()).assume_init_drop() };
            // SAFETY: inside the critical section.
            let start = unsafe { self.start(fp, tier, now) };
            Self::fill(slot, key, fp, tier, start);
            self.evictions.incr();
            return Some(i);
        }
        None
    }

    /// The arrival time a key with fingerprint `fp` starts from in `tier`
    /// if inserted at `now`: full, unless its fingerprint's eviction mark
    /// says otherwise (see `marks`).
    ///
    /// # Safety
    ///
    /// * The caller is inside `crate::sync::critical`.
    pub(super) unsafe fn start(&self, fp: u32, tier: usize, now: Instant) -> u64 {
        // SAFETY: inside the critical section (the caller's contract).
        let mark = unsafe { self.marks.get(fp) };
        marks::start(&self.params[tier], mark, now.as_micros())
    }
}

/// A key [`KeyedLimiter::lock_if_idle`] locked out of its slot.
pub(super) struct Evicted {
    /// Its admissions counted in the slot and not yet folded.
    pub(super) pending: u64,
    /// Its bucket's final arrival time.
    pub(super) tat: u64,
    /// Its state word (fingerprint and tier) before the lock.
    pub(super) state: u32,
}
