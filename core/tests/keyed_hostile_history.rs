//! A keyed limiter over long seeded histories (120 000 operations) of
//! admissions, lookups and run-time quota changes (`set_quota` on every
//! tier, one out of range, `set_overflow_quota`), keys chosen to share
//! their hash (groups of 3 or more), tables of 1, 2 and 16 slots, a
//! clock that also goes back, and user code that panics at a chosen call:
//! the key's `Hash`, `Eq`, `Clone` or `Drop` (every stored key is a clone
//! the limiter made; an evicted one is dropped by it).
//!
//! Every key instance carries a serial, tracked from creation to drop.
//! After every operation: no instance was dropped twice; the instances
//! alive are exactly the keys the table holds (`metrics().keys`, at most
//! `N`; nothing leaked by a panic); `allowed` counts exactly the admissions
//! returned (re-read after a panic, when the call's own count is not
//! known); a key just admitted reads at most its tier's burst; and the
//! table answers the next call (no lock left held). When the limiter is
//! dropped, nothing is left alive. A review's probe ("sound-but-checked").

#![cfg(not(miri))]

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

use crate::common;
use crate::common::SplitMix;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trap {
    Hash,
    Eq,
    Clone,
    Drop,
}

thread_local! {
    static TRAP: Cell<Option<(Trap, u32)>> = const { Cell::new(None) };
    static LIVE: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    static SERIAL: Cell<u64> = const { Cell::new(0) };
    static TWICE: Cell<u32> = const { Cell::new(0) };
}

fn trip(op: Trap) {
    if let Some((armed, n)) = TRAP.get() {
        if armed == op {
            if n <= 1 {
                TRAP.set(None);
                panic!("hostile {op:?}");
            }
            TRAP.set(Some((armed, n - 1)));
        }
    }
}

#[derive(Debug)]
struct Key {
    id: u32,
    serial: u64,
}

impl Key {
    fn new(id: u32) -> Self {
        let serial = SERIAL.get() + 1;
        SERIAL.set(serial);
        LIVE.with(|l| l.borrow_mut().insert(serial));
        Self { id, serial }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(Trap::Hash);
        (self.id / 3).hash(state); // groups of 3 share every hash
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        trip(Trap::Eq);
        self.id == other.id
    }
}
impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        trip(Trap::Clone);
        Self::new(self.id)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !LIVE.with(|l| l.borrow_mut().remove(&self.serial)) {
            TWICE.set(TWICE.get() + 1);
        }
        trip(Trap::Drop);
    }
}

fn quota(rng: &mut SplitMix) -> Quota {
    let tokens = 1 + (rng.next() % 20) as u32;
    let millis = [100, 1_000, 7_000, 60_000][(rng.next() % 4) as usize];
    Quota::new(tokens, Duration::from_millis(millis))
        .and_then(|q| q.with_burst(1 + (rng.next() % 12) as u32))
        .unwrap()
}

fn history<const N: usize>(seed: u64, steps: u32, ids: u32) {
    let mut rng = SplitMix(seed);
    let tiers = [quota(&mut rng), quota(&mut rng)];
    let limiter: KeyedLimiter<Key, N, 2> =
        KeyedLimiter::with_tiers(tiers, FullPolicy::Overflow(quota(&mut rng)))
            .unwrap()
            .with_tier_fn(|k| (k.id % 2) as usize);
    let mut now = 1_000_000_000u64;
    let (mut allowed, mut panics, mut changes) = (limiter.metrics().allowed, 0u32, 0u32);
    for step in 0..steps {
        now = match rng.next() % 16 {
            0 => now.saturating_sub(rng.next() % 300_000),
            1 => now + rng.next() % 120_000_000,
            _ => now + rng.next() % 300_000,
        };
        let at = Instant::from_micros(now);
        let id = (rng.next() % u64::from(ids)) as u32;
        if rng.next() % 6 == 0 {
            let trap = [Trap::Hash, Trap::Eq, Trap::Clone, Trap::Drop][(rng.next() % 4) as usize];
            TRAP.set(Some((trap, 1 + (rng.next() % 3) as u32)));
        }
        let op = rng.next() % 12;
        let new_quota = quota(&mut rng);
        let n = 1 + (rng.next() % 4) as u32;
        let r = catch_unwind(AssertUnwindSafe(|| match op {
            0..=5 => Some(limiter.try_acquire_n(&Key::new(id), n, at)),
            6 | 7 => Some(limiter.try_acquire_tier(&Key::new(id), (rng.next() % 3) as usize, at)),
            8 | 9 => {
                let key = Key::new(id);
                let left = limiter.available(&key, at);
                assert!(left <= 12, "step {step}: {left} tokens");
                None
            }
            10 => {
                let tier = (rng.next() % 3) as usize;
                let r = limiter.set_quota(tier, new_quota, at);
                assert_eq!(r.is_err(), tier == 2, "step {step}");
                changes += u32::from(r.is_ok());
                None
            }
            _ => {
                limiter.set_overflow_quota(new_quota, at);
                None
            }
        }));
        TRAP.set(None);
        match r {
            Err(_) => {
                panics += 1;
                allowed = limiter.metrics().allowed;
            }
            Ok(Some(Ok(()))) => {
                allowed += 1;
                // Admitted by its own bucket (or the overflow bucket).
                let burst = limiter.quota((id % 2) as usize).unwrap().burst();
                assert!(
                    limiter.available(&Key::new(id), at) <= burst.max(12),
                    "step {step}"
                );
            }
            Ok(
                Some(Err(
                    KeyedError::RateLimited(_)
                    | KeyedError::InsufficientCapacity(_)
                    | KeyedError::TableFull
                    | KeyedError::TierOutOfRange { .. },
                ))
                | None,
            ) => {}
            Ok(Some(Err(e))) => panic!("step {step}: {e:?}"),
        }
        let m = limiter.metrics();
        assert_eq!(TWICE.get(), 0, "step {step}: a key dropped twice");
        assert!(m.keys <= N as u64, "step {step}: {m:?}");
        let live = LIVE.with(|l| l.borrow().len()) as u64;
        assert_eq!(live, m.keys, "step {step}: instances alive vs keys stored");
        assert_eq!(m.allowed, allowed, "step {step}");
    }
    assert!(
        panics > steps / 50 && changes > steps / 30,
        "{panics} {changes}"
    );
    drop(limiter);
    assert_eq!(TWICE.get(), 0);
    assert_eq!(LIVE.with(|l| l.borrow().len()), 0, "leaked");
}

#[test]
fn one_slot() {
    common::quiet_hostile_panics();
    history::<1>(11, 120_000, 6);
}

#[test]
fn two_slots() {
    common::quiet_hostile_panics();
    history::<2>(12, 120_000, 9);
}

#[test]
fn sixteen_slots() {
    common::quiet_hostile_panics();
    history::<16>(13, 120_000, 60);
}
