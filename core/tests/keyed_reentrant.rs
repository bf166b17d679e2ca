//! A key whose `Eq` or `Clone` calls back into the limiter that holds it.
//!
//! Both run under the table's lock (the repeated lookup, the stored copy).
//! Without `std` that lock is the `critical-section` crate's, which nests:
//! a call from there used to go through and rewrite the table under the
//! outer insert. A nested insert filled the empty slot the outer one had
//! chosen, which the outer one then overwrote (the nested key leaked,
//! `keys` went past `N`); a nested eviction moved out and dropped the key
//! the outer lookup was comparing through a `&K` (undefined behaviour:
//! Miri reports it). With `std` the per-table mutex would deadlock. Now
//! the nested call panics before it touches anything, in either build,
//! and the table is left consistent and usable.

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

const T0: Instant = Instant::from_secs(100);

type Hook = Box<dyn FnOnce()>;

thread_local! {
    /// Run by the user call (`op`) that brings `skip` to zero.
    static HOOK: RefCell<Option<(Op, u32, Hook)>> = RefCell::new(None);
    /// Keys alive on this thread: made by tests, clones, minus drops.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Eq,
    Clone,
    Hash,
    Drop,
    Tier,
}

fn arm(op: Op, skip: u32, hook: impl FnOnce() + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some((op, skip, Box::new(hook))));
}

fn fired() -> bool {
    HOOK.with(|h| h.borrow().is_none())
}

fn trip(op: Op) {
    let hook = HOOK.with(|h| {
        let mut h = h.borrow_mut();
        match h.as_mut() {
            Some((armed, skip, _)) if *armed == op => {
                if *skip == 0 {
                    h.take().map(|(_, _, hook)| hook)
                } else {
                    *skip -= 1;
                    None
                }
            }
            _ => None,
        }
    });
    if let Some(hook) = hook {
        hook();
    }
}

/// A constant hash: every key has the same fingerprint and home slot, so
/// `Eq` is what tells them apart. Heap data, so that a key dropped while
/// it is being compared is a use after free.
#[derive(Debug)]
struct Key(String);

impl Key {
    fn new(name: &str) -> Self {
        LIVE.set(LIVE.get() + 1);
        Self(name.to_owned())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(Op::Hash);
        0u8.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        let mine: &str = &self.0;
        trip(Op::Eq);
        mine == other.0
    }
}
impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        trip(Op::Clone);
        Self::new(&self.0)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        LIVE.set(LIVE.get() - 1);
        trip(Op::Drop);
    }
}

type Limiter = KeyedLimiter<Key, 1>;

/// A limiter of one slot (one token a second, burst 1, a tier function
/// that runs the `Tier` hook) on the heap, that
/// hooks can reach: a `&'static` to it, and the pointer to free it with.
struct Leaked {
    raw: *mut Limiter,
    l: &'static Limiter,
}

fn limiter() -> Leaked {
    let raw = Box::into_raw(Box::new(
        KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject)
            .expect("quota within the keyed range")
            .with_tier_fn(|_| {
                trip(Op::Tier);
                0
            }),
    ));
    // SAFETY: from `Box::into_raw`, freed only by `free`, after its last use.
    let l = unsafe { &*raw };
    Leaked { raw, l }
}

/// Frees a limiter from [`limiter`] (dropping its keys).
fn free(raw: *mut Limiter) {
    // SAFETY: made by `Box::into_raw` in `limiter`; its `l` is not used
    // after this.
    drop(unsafe { Box::from_raw(raw) });
}

/// Runs `f`; asserts the hook fired and the call panicked.
fn panics<R>(f: impl FnOnce() -> R) {
    let got = catch_unwind(AssertUnwindSafe(f)).map(|_| ());
    assert!(fired(), "the hook did not run");
    assert!(got.is_err(), "the nested call did not panic");
}

#[test]
fn a_clone_that_inserts_into_its_own_limiter_panics() {
    let live = LIVE.get();
    let leaked = limiter();
    let l = leaked.l;
    // The empty slot is found, then the key cloned: the nested call would
    // insert into that very slot.
    arm(Op::Clone, 0, move || {
        let _ = l.try_acquire(&Key::new("nested"), T0);
    });
    panics(|| l.try_acquire(&Key::new("outer"), T0));
    let m = l.metrics();
    assert_eq!((m.keys, m.allowed, m.evictions), (0, 0, 0), "{m:?}");
    // Unlocked and whole: a key goes in, one per slot.
    l.try_acquire(&Key::new("a"), T0).unwrap();
    let full = l.try_acquire(&Key::new("b"), T0);
    assert!(full.is_err(), "{full:?}");
    assert_eq!(l.metrics().keys, 1);
    free(leaked.raw);
    assert_eq!(LIVE.get(), live, "a key leaked or was dropped twice");
}

#[test]
fn an_eq_that_evicts_the_key_it_compares_panics() {
    let live = LIVE.get();
    let leaked = limiter();
    let l = leaked.l;
    let a = Key::new("a");
    l.try_acquire(&a, T0).unwrap();
    let later = T0 + Duration::from_secs(5); // key "a" idle again
                                             // The outer call compares "b" with "a" lock-free (pinned), then under
                                             // the lock: there the nested call would evict "a" mid-comparison.
    arm(Op::Eq, 1, move || {
        let _ = l.try_acquire(&Key::new("c"), later);
    });
    panics(|| l.try_acquire(&Key::new("b"), later));
    let m = l.metrics();
    assert_eq!((m.keys, m.allowed, m.evictions), (1, 1, 0), "{m:?}");
    // "a" is still there: charged, not re-inserted, then drained.
    l.try_acquire(&a, later).unwrap();
    assert!(l.try_acquire(&a, later).is_err());
    assert_eq!(l.metrics().keys, 1);
    drop(a);
    free(leaked.raw);
    assert_eq!(LIVE.get(), live, "a key leaked or was dropped twice");
}

#[test]
fn an_eq_that_changes_a_quota_or_reads_the_table_under_the_lock_panics() {
    let leaked = limiter();
    let l = leaked.l;
    let a = Key::new("a");
    l.try_acquire(&a, T0).unwrap();
    arm(Op::Eq, 1, move || {
        let _ = l.set_quota(0, Quota::per_second(5).unwrap(), T0);
    });
    panics(|| l.try_acquire(&Key::new("b"), T0));
    assert_eq!(l.quota(0), Some(Quota::per_second(1).unwrap()));
    // Calls outside the lock are fine: the lock-free comparison (pinned)
    // may use the limiter.
    arm(Op::Eq, 0, move || {
        assert_eq!(l.available(&Key::new("zz"), T0), 1);
    });
    assert!(l.try_acquire(&Key::new("b"), T0).is_err()); // table full
    assert!(fired());
    drop(a);
    free(leaked.raw);
}

/// `Hash`, the tier function and the `Drop` of an evicted key run outside
/// the lock (as documented): from there the same limiter can be used.
#[test]
fn calls_from_hash_the_tier_function_and_drop_go_through() {
    let live = LIVE.get();
    let later = T0 + Duration::from_secs(5);
    for (op, skip) in [(Op::Hash, 0), (Op::Tier, 0), (Op::Drop, 0)] {
        let leaked = limiter();
        let l = leaked.l;
        if op == Op::Drop {
            // The first key dropped is the stored copy of "a", evicted by
            // "outer" (and dropped after the lock).
            l.try_acquire(&Key::new("a"), T0).unwrap();
        }
        // The nested call takes the one slot (or finds "outer" in it).
        arm(op, skip, move || {
            let nested = l.try_acquire(&Key::new("nested"), later);
            if op == Op::Drop {
                assert_eq!(nested, Err(KeyedError::TableFull), "{op:?}");
            } else {
                assert_eq!(nested, Ok(()), "{op:?}");
            }
        });
        let outer = l.try_acquire(&Key::new("outer"), later);
        assert!(fired(), "{op:?}: the hook did not run");
        let m = l.metrics();
        if op == Op::Drop {
            assert_eq!(outer, Ok(()));
            assert_eq!((m.keys, m.evictions, m.table_full), (1, 1, 1), "{m:?}");
            assert_eq!(l.available(&Key::new("outer"), later), 0);
        } else {
            // "nested" got the slot first, and is busy.
            assert_eq!(outer, Err(KeyedError::TableFull), "{op:?}");
            assert_eq!((m.keys, m.evictions, m.allowed), (1, 0, 1), "{m:?}");
            assert_eq!(l.available(&Key::new("nested"), later), 0);
        }
        free(leaked.raw);
    }
    assert_eq!(LIVE.get(), live, "a key leaked or was dropped twice");
}
