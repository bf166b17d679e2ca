//! The locked path of [`KeyedLimiter`]: keys not found lock-free are
//! inserted (into an empty slot, or by evicting an idle key), found
//! inserted meanwhile, or charged without pinning when their slot has no
//! room for another caller. Evictions happen only here, under the table's
//! lock.
//!
//! User code under the lock: `K::eq` (the lookup, before anything changes)
//! and `K::clone` (the stored copy, made before a slot is claimed or a key
//! evicted). An evicted key is moved out of its slot and dropped by the
//! caller after the lock is released. So a panic in user code leaves every
//! slot as it was, and the lock is released by the unwinding. User code
//! that calls the same limiter from under the lock panics there (the lock
//! is not re-entrant), before changing anything.

use core::hash::{BuildHasher, Hash};

use super::marks;
use super::state::{EMPTY, FP_SHIFT, LOCKED};
use super::{KeyedError, KeyedLeft, KeyedLimiter};
use crate::bucket::{AcquireError, InsufficientCapacity, TokenBucket};
use crate::sync::Ordering;
use crate::Instant;

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize, S: BuildHasher>
    KeyedLimiter<K, N, TIERS, S>
{
    /// Not found lock-free: inserts the key (or finds it inserted
    /// meanwhile, or busy with the most callers a slot can pin or register),
    /// or uses the [`FullPolicy`](super::FullPolicy). Counts the outcome
    /// globally. Admitted: `Some(what is left)` in the key's own bucket,
    /// `None` if charged to the overflow bucket.
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
    ) -> Result<Option<KeyedLeft>, KeyedError> {
        // User code (the tier function) before the lock.
        let tier = tier.unwrap_or_else(|| self.tier_of.map_or(0, |f| f(key)));
        if tier >= TIERS {
            return Err(self.out_of_range(tier));
        }
        // More than the key's burst (its tier's in force) is never
        // granted: refused before a slot is taken for it (which could
        // evict an idle key) or found full (`TableFull` would say "later"),
        // and before the overflow bucket, whose burst, if larger, does not
        // raise what one request may take (if smaller, it lowers it: a
        // request within the key's burst but above the overflow bucket's
        // is refused there, with that bucket's burst, as
        // `KeyedError::InsufficientCapacity` documents). Read, not
        // re-derived: this is the path a client filling the table takes
        // (a quota's derivation divides 128-bit numbers, in software on
        // Cortex-M0).
        let burst = self.tiers.burst(tier);
        if n > burst {
            self.limited.incr();
            return Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
                requested: n,
                burst,
            }));
        }
        // The stored copy of the key, cloned at the first need; dropped
        // after the lock if unused, like the evicted key.
        let mut copy = None;
        let mut evicted = None;
        // Charged under the lock: evictions happen only there, so the slot
        // found or filled still holds this key.
        let charged = self.lock.with(|| {
            let i = self.insert(key, &mut copy, &mut evicted, fp, home, tier, now)?;
            Some(self.charge_locked(i, n, now))
        });
        let result = match charged {
            Some(result) => result.map(Some),
            None => match &self.overflow {
                Some(bucket) => Self::charge_overflow(bucket, n, now),
                None => Err(KeyedError::TableFull),
            },
        };
        match result {
            Ok(_) => self.allowed.incr(),
            Err(KeyedError::TableFull) => {
                self.limited.incr();
                self.table_full.incr();
            }
            Err(_) => self.limited.incr(),
        }
        // User code (`Drop`) after the lock and the counts: a panic here
        // reaches the caller with the table consistent.
        drop(evicted);
        drop(copy);
        result
    }

    /// Charges a key that found no slot to the overflow `bucket` (`n` is
    /// within the key's burst, checked before): one decision under the
    /// bucket's quota in force (which `set_overflow_quota` may change
    /// meanwhile).
    #[cold]
    fn charge_overflow(
        bucket: &TokenBucket,
        n: u32,
        now: Instant,
    ) -> Result<Option<KeyedLeft>, KeyedError> {
        bucket
            .try_acquire_n(n, now)
            .map(|()| None)
            .map_err(|e| match e {
                AcquireError::InsufficientCapacity(e) => KeyedError::InsufficientCapacity(e),
                AcquireError::RateLimited(e) => KeyedError::RateLimited(e),
            })
    }

    /// Under the lock: the live slot holding `key`.
    pub(super) fn find_locked(&self, key: &K, fp: u32, home: usize) -> Option<usize> {
        Self::window(home).find(|&i| {
            let slot = &self.slots[i];
            // The fingerprint test also rejects EMPTY and LOCKED.
            // SAFETY: live slot, and only the lock holder (us) writes,
            // moves or drops keys; the lock is not re-entrant, so the
            // `==` below (user code) cannot make this thread a second
            // holder that evicts the key it is comparing.
            slot.state.load(Ordering::Acquire) >> FP_SHIFT == fp
                && unsafe { (*slot.key.get()).assume_init_ref() } == key
        })
    }

    /// Under the lock: finds or inserts `key`, returning its slot, or
    /// `None` if the window has no empty or idle slot. The stored key is
    /// `copy` (cloned from `key` into it first if empty), and a key
    /// evicted for it is moved into `evicted`: both for the caller to drop
    /// after the lock.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        key: &K,
        copy: &mut Option<K>,
        evicted: &mut Option<K>,
        fp: u32,
        home: usize,
        tier: usize,
        now: Instant,
    ) -> Option<usize> {
        if let Some(i) = self.find_locked(key, fp, home) {
            return Some(i);
        }
        let empty =
            Self::window(home).find(|&i| self.slots[i].state.load(Ordering::Acquire) == EMPTY);
        if let Some(i) = empty {
            // The clone before any change: if it panics, nothing changed.
            let new = copy.take().unwrap_or_else(|| key.clone());
            let slot = &self.slots[i];
            // EMPTY -> LOCKED cannot race: only the lock holder claims (a
            // caller's pin or registration needs a live state).
            slot.state.store(LOCKED, Ordering::Relaxed);
            Self::fill(slot, new, fp, tier, self.start(fp, tier, now));
            self.keys.fetch_add(1, Ordering::Relaxed);
            return Some(i);
        }
        for i in Self::window(home) {
            let slot = &self.slots[i];
            // A key idle at `now` with nobody on it.
            let Some(idle) = self.idle(slot, now) else {
                continue;
            };
            // The clone before any change, as above.
            let new = copy.take().unwrap_or_else(|| key.clone());
            // Its mark first (see `marks`): once the lock below takes the
            // key out of reach, a caller that no longer finds it sees the
            // mark. A lock that fails leaves a harmless early mark.
            self.leave_mark(idle.state, idle.tat, now);
            // Fails if anyone pinned, charged or folded since `idle`.
            let Some(gone) = self.lock_idle(slot, &idle, now) else {
                *copy = Some(new);
                continue;
            };
            if gone.tat != idle.tat {
                // Charged and idle again in between (Cortex-M only, see
                // `split`): the final arrival time's mark.
                self.leave_mark(gone.state, gone.tat, now);
            }
            // The evicted key's admissions not yet folded.
            // Release: see `metrics`.
            self.allowed.add_release(gone.pending);
            // SAFETY: the slot was live (initialised key) and is locked with
            // nobody on it; nobody else can reach the key, which is moved
            // out (the slot's copy is overwritten by `fill` below).
            *evicted = Some(unsafe { (*slot.key.get()).assume_init_read() });
            Self::fill(slot, new, fp, tier, self.start(fp, tier, now));
            self.evictions.incr();
            return Some(i);
        }
        None
    }

    /// Under the lock: raises the eviction mark of a key (with `state`)
    /// whose idle bucket stands at `tat`, if it leaves one (see `marks`).
    fn leave_mark(&self, state: u32, tat: u64, now: Instant) {
        let params = self.tiers.params(Self::tier_of_state(state));
        let now = now.as_micros();
        if let Some(mark) = marks::left_by(&params, tat, now) {
            // Marks are shared by the tiers: the farthest any tier's
            // callers may read one ahead (see `marks::Marks::raise`).
            let reach = (0..TIERS)
                .map(|tier| {
                    let p = self.tiers.params(tier);
                    p.horizon / p.scale
                })
                .max()
                .unwrap_or(0);
            let ceiling = now.saturating_add(reach);
            // SAFETY: under the table's lock (our caller's), the marks' only
            // writer.
            unsafe { self.marks.raise(state >> FP_SHIFT, mark, ceiling) };
        }
    }

    /// The arrival time a key with fingerprint `fp` starts from in `tier`
    /// if inserted at `now`, under the tier's quota in force, and that
    /// quota's tag: full, unless its fingerprint's eviction mark says
    /// otherwise (see `marks`). Called under the lock, so no mark and no
    /// quota changes meanwhile.
    pub(super) fn start(&self, fp: u32, tier: usize, now: Instant) -> (u64, usize) {
        let params = self.tiers.params(tier);
        let start = marks::start(&params, self.marks.get(fp), now.as_micros());
        (start, self.tiers.tag(tier))
    }
}

/// A live slot [`KeyedLimiter::idle`] found idle, as it was read.
pub(super) struct Idle {
    /// Its state word.
    pub(super) state: u32,
    /// The word the lock compares against: the bucket word with 64-bit
    /// atomics, the state word again on Cortex-M.
    pub(super) word: u64,
    /// Its bucket's arrival time.
    pub(super) tat: u64,
}

/// A key [`KeyedLimiter::lock_idle`] locked out of its slot.
pub(super) struct Evicted {
    /// Its admissions counted in the slot and not yet folded.
    pub(super) pending: u64,
    /// Its bucket's final arrival time.
    pub(super) tat: u64,
    /// Its state word (fingerprint and tier) before the lock.
    pub(super) state: u32,
}
