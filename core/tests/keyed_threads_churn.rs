//! Keys moving in and out of a tiny table from several threads, sized for
//! Miri: heap keys (`String` inside) are compared lock-free by pinned
//! callers while other threads evict them and write new keys into the
//! same slots. Under Miri this checks what the loom models cannot see
//! (their atomics are loom's, the key cell is not): the key's write is
//! published before any pinned reader reads it, no reader compares a key
//! being moved out or overwritten (data races, use after free, aliasing),
//! and every key stored is dropped exactly once. Natively it runs longer.
//!
//! Also checked: the counters add up (every call is admitted or refused,
//! at quiescence), no more keys than slots, and an over-capacity request
//! (which pins and compares but never charges) changes nothing.

// 32-bit atomics: this also runs on 32-bit-word targets (Miri, powerpc).
use std::sync::atomic::{AtomicIsize, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

const THREADS: usize = 3;
const CALLS: u32 = if cfg!(miri) { 24 } else { 20_000 };

/// A heap key that counts its live copies.
#[derive(Debug)]
struct Key {
    name: String,
    live: Arc<AtomicIsize>,
}

impl Key {
    fn new(id: u32, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self {
            name: format!("client-{id}"),
            live: Arc::clone(live),
        }
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        self.live.fetch_add(1, Ordering::Relaxed);
        Self {
            name: self.name.clone(),
            live: Arc::clone(&self.live),
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn churn<const N: usize>(keys: u32) {
    let live = Arc::new(AtomicIsize::new(0));
    // One token per millisecond, burst 2: a key is idle again 2 ms after
    // its last admission; the shared clock moves 1 ms per call.
    let quota = Quota::per_second(1_000).unwrap().with_burst(2).unwrap();
    let limiter: KeyedLimiter<Key, N> = KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    // Milliseconds.
    let clock = AtomicU32::new(1_000);
    let (admitted, refused, full) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    thread::scope(|s| {
        for t in 0..THREADS as u32 {
            let (limiter, clock, live) = (&limiter, &clock, &live);
            let (admitted, refused, full) = (&admitted, &refused, &full);
            s.spawn(move || {
                for i in 0..CALLS {
                    let now =
                        Instant::from_millis(u64::from(clock.fetch_add(1, Ordering::Relaxed)));
                    let key = Key::new((i * 7 + t * 3) % keys, live);
                    match limiter.try_acquire(&key, now) {
                        Ok(()) => admitted.fetch_add(1, Ordering::Relaxed),
                        Err(KeyedError::TableFull) => full.fetch_add(1, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                    };
                    // Pins and compares, never charges or inserts.
                    let over = limiter.try_acquire_n(&key, 3, now);
                    assert!(
                        matches!(over, Err(KeyedError::InsufficientCapacity(_))),
                        "{over:?}"
                    );
                    assert!(limiter.available(&key, now) <= 2);
                }
            });
        }
    });
    let m = limiter.metrics();
    let calls = THREADS as u64 * u64::from(CALLS);
    let (admitted, refused, full) = (
        u64::from(admitted.into_inner()),
        u64::from(refused.into_inner()),
        u64::from(full.into_inner()),
    );
    assert_eq!(admitted + refused + full, calls);
    assert_eq!(m.allowed, admitted, "{m:?}");
    assert_eq!(m.limited, refused + full + calls, "{m:?}"); // + the over-capacity asks
    assert_eq!(m.table_full, full, "{m:?}");
    assert!(m.keys <= N as u64, "{m:?}");
    // Quiescent: every stored key is the table's one copy.
    assert_eq!(
        live.load(Ordering::Relaxed),
        isize::try_from(m.keys).unwrap(),
        "{m:?}"
    );
    // Still whole: once every key is idle, a new key finds a slot.
    let later = Instant::from_millis(u64::from(clock.into_inner())) + Duration::from_secs(1);
    limiter.try_acquire(&Key::new(keys, &live), later).unwrap();
    let after = limiter.metrics();
    assert_eq!(after.keys, (m.keys + 1).min(N as u64), "{after:?}");
    assert_eq!(
        after.evictions,
        m.evictions + m.keys / N as u64,
        "{after:?}"
    );
    assert_eq!(
        live.load(Ordering::Relaxed),
        isize::try_from(after.keys).unwrap(),
        "{after:?}"
    );
    drop(limiter);
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "a key leaked or was dropped twice"
    );
}

#[test]
fn one_slot_many_keys() {
    churn::<1>(3);
}

#[test]
fn two_slots_many_keys() {
    churn::<2>(5);
}
