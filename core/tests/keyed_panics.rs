//! User code that panics inside a keyed limiter's insert: `Hash` and the
//! tier function (before the table's lock), `Eq` and `Clone` (under it),
//! `Drop` of an evicted key (after it). Each time the panic reaches the
//! caller and the table stays consistent and unlocked: nothing half
//! inserted, no key lost or leaked, no pin left behind, the next insert
//! goes through. Run with and without `std` (a per-table mutex, poisoned
//! by the panic and still usable; the critical section otherwise).

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

const T0: Instant = Instant::from_secs(100);

/// Which user call panics, and at which of its calls (1 = the next).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Hash,
    Eq,
    Clone,
    /// Drop of the key with this id.
    Drop(u32),
}

thread_local! {
    static TRAP: Cell<Option<(Op, u32)>> = const { Cell::new(None) };
    /// Keys alive on this thread: made by tests, clones, minus drops.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn trip(op: Op) {
    if let Some((armed, n)) = TRAP.get() {
        if armed == op {
            if n <= 1 {
                TRAP.set(None);
                panic!("{op:?} panics");
            }
            TRAP.set(Some((armed, n - 1)));
        }
    }
}

/// `group` alone is hashed: keys of one group share fingerprint and home
/// slot, so `Eq` is what tells them apart.
#[derive(Debug)]
struct Key {
    id: u32,
    group: u32,
}

impl Key {
    fn new(id: u32, group: u32) -> Self {
        LIVE.set(LIVE.get() + 1);
        Self { id, group }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(Op::Hash);
        self.group.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        trip(Op::Eq);
        self.id == other.id
    }
}
impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        trip(Op::Clone);
        Self::new(self.id, self.group)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        LIVE.set(LIVE.get() - 1);
        trip(Op::Drop(self.id));
    }
}

/// One token a second, burst 1.
fn limiter<const N: usize>() -> KeyedLimiter<Key, N> {
    KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject)
        .expect("quota within the keyed range")
}

/// Runs `f` with `op`'s `n`th call armed to panic; asserts it did.
fn panics_at<R>(op: Op, n: u32, f: impl FnOnce() -> R) {
    TRAP.set(Some((op, n)));
    let got = catch_unwind(AssertUnwindSafe(f)).map(|_| ());
    let fired = TRAP.get().is_none();
    TRAP.set(None);
    assert!(got.is_err() && fired, "{op:?} #{n} did not panic");
}

#[test]
fn a_panicking_clone_inserts_nothing() {
    let live = LIVE.get();
    {
        let l = limiter::<4>();
        let a = Key::new(1, 0);
        panics_at(Op::Clone, 1, || l.try_acquire(&a, T0));
        let m = l.metrics();
        assert_eq!((m.keys, m.allowed, m.limited), (0, 0, 0));
        assert_eq!(l.available(&a, T0), 1);
        // Unlocked, and the slot it would have taken is free.
        l.try_acquire(&a, T0).unwrap();
        for id in 2..5 {
            l.try_acquire(&Key::new(id, id), T0).unwrap();
        }
        assert_eq!(l.metrics().keys, 4);
    }
    assert_eq!(LIVE.get(), live, "a key leaked or was dropped twice");
}

#[test]
fn a_panicking_clone_while_evicting_keeps_the_idle_key() {
    let live = LIVE.get();
    {
        let l = limiter::<1>();
        let (a, b) = (Key::new(1, 0), Key::new(2, 0));
        l.try_acquire(&a, T0).unwrap();
        let idle = T0 + Duration::from_secs(2);
        panics_at(Op::Clone, 1, || l.try_acquire(&b, idle));
        let m = l.metrics();
        assert_eq!((m.keys, m.evictions, m.allowed), (1, 0, 1));
        // Key 1 is still there, drained at T0 (present: 0 tokens at T0;
        // had it been evicted, its mark would say the same, so also check
        // it is charged, not inserted).
        l.try_acquire(&a, idle).unwrap();
        assert_eq!(l.metrics().keys, 1);
        assert_eq!(l.metrics().evictions, 0);
        // And key 2 evicts it once it is idle again.
        l.try_acquire(&b, idle + Duration::from_secs(2)).unwrap();
        assert_eq!(l.metrics().evictions, 1);
    }
    assert_eq!(LIVE.get(), live);
}

#[test]
fn a_panicking_eq_anywhere_leaves_the_table_usable() {
    let live = LIVE.get();
    // Key 1 in the table; key 2 (same group) is compared with it lock-free
    // (call 1, pinned), then under the lock (call 2), then inserted.
    for n in 1..=2 {
        let l = limiter::<4>();
        let (a, b) = (Key::new(1, 0), Key::new(2, 0));
        l.try_acquire(&a, T0).unwrap();
        panics_at(Op::Eq, n, || l.try_acquire(&b, T0));
        // No pin left on key 1 (it is evicted once idle), no lock held.
        let later = T0 + Duration::from_secs(2);
        l.try_acquire(&b, T0).unwrap();
        assert_eq!(
            l.try_acquire(&a, T0),
            Err(KeyedError::RateLimited(fusebox::bucket::RateLimited {
                retry_after: Duration::from_secs(1),
            }))
        );
        assert_eq!(l.metrics().keys, 2);
        for id in 3..6 {
            l.try_acquire(&Key::new(id, 0), later).unwrap();
        }
        assert_eq!(l.metrics().evictions, 1, "n = {n}");
    }
    assert_eq!(LIVE.get(), live);
}

#[test]
fn a_panicking_drop_of_an_evicted_key_comes_after_the_insert() {
    let live = LIVE.get();
    {
        let l = limiter::<1>();
        let (a, b) = (Key::new(1, 0), Key::new(2, 0));
        l.try_acquire(&a, T0).unwrap();
        let idle = T0 + Duration::from_secs(2);
        // The stored copy of key 1 is dropped, and panics, after key 2 was
        // inserted, charged and counted, and the lock released.
        panics_at(Op::Drop(1), 1, || l.try_acquire(&b, idle));
        let m = l.metrics();
        assert_eq!((m.keys, m.evictions, m.allowed), (1, 1, 2));
        assert_eq!(l.available(&b, idle), 0, "key 2 was charged");
        assert!(l.try_acquire(&b, idle).is_err());
        l.try_acquire(&a, idle + Duration::from_secs(2)).unwrap();
        assert_eq!(l.metrics().evictions, 2);
    }
    assert_eq!(LIVE.get(), live);
}

#[test]
fn a_panicking_hash_or_tier_function_changes_nothing() {
    let live = LIVE.get();
    {
        let l: KeyedLimiter<Key, 4, 2> = KeyedLimiter::with_tiers(
            [Quota::per_second(1).unwrap(), Quota::per_second(2).unwrap()],
            FullPolicy::Reject,
        )
        .unwrap()
        .with_tier_fn(|k| {
            assert!(k.id != 7, "tier function panics");
            1
        });
        let a = Key::new(1, 0);
        panics_at(Op::Hash, 1, || l.try_acquire(&a, T0));
        let seven = Key::new(7, 0);
        assert!(catch_unwind(AssertUnwindSafe(|| l.try_acquire(&seven, T0))).is_err());
        assert_eq!(l.metrics().keys, 0);
        l.try_acquire(&a, T0).unwrap();
        assert_eq!(l.available(&a, T0), 1, "tier 1");
    }
    assert_eq!(LIVE.get(), live);
}

/// A key whose `Drop` panics while the limiter itself is dropped: the
/// panic reaches the caller and every other stored key is still dropped
/// (as a `Vec`'s or an array's would be), none leaked.
#[test]
fn a_panicking_drop_while_the_limiter_drops_drops_the_other_keys() {
    for panicking in 1..=4 {
        let live = LIVE.get();
        let l = limiter::<8>();
        for id in 1..=4 {
            l.try_acquire(&Key::new(id, id), T0).unwrap();
        }
        assert_eq!((l.metrics().keys, LIVE.get() - live), (4, 4));
        panics_at(Op::Drop(panicking), 1, move || drop(l));
        assert_eq!(
            LIVE.get(),
            live,
            "key {panicking} panicked: {} stored keys leaked",
            LIVE.get() - live
        );
    }
}
