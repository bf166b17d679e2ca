//! Loom model of [`fusebox::cache::ConcurrentCache`]'s 64-bit slot
//! sequence across the carry of its low 32-bit word into the high one (on
//! targets without 64-bit atomics the sequence is two words; run with
//! `--cfg fusebox_narrow_words` to model them, without it to model the one
//! 64-bit word): a `get` racing the writes that carry is never torn, never
//! goes back in time, and may give up (only possible while a write
//! overlaps it).
//!
//! Run only as
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fusebox-loom --release --test cache_seq_carry
//! ```
//!
//! Values name their key and version and check themselves, as in
//! `cache.rs`. Preemption bound 2: at 3 the two-word layout took over 8
//! CPU minutes here (2 at 35 s; the 64-bit word, 10 s).
//!
//! What no model can show is the bound itself (a reader stalled across
//! 2³⁰ writes); the core's unit test
//! `a_reader_stalled_across_2_pow_30_writes_is_refused` checks that.
#![cfg(loom)]

use std::collections::BTreeSet;
use std::sync::{Arc as StdArc, Mutex as StdMutex};

use fusebox::cache::ConcurrentCache;
use loom::model::Builder;
use loom::thread;

/// One set of one way: every write lands in the same slot.
type Cache = ConcurrentCache<u64, [u64; 2], 1, 1>;

const KEY: u64 = 1;

fn val(version: u64) -> [u64; 2] {
    let w = KEY << 32 | version;
    [w, mix(w)]
}

fn mix(w: u64) -> u64 {
    w.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15
}

/// The version of a value read for [`KEY`], asserting it is whole.
fn decode(v: [u64; 2]) -> u64 {
    assert_eq!(v[1], mix(v[0]), "torn value {v:x?}");
    assert_eq!(v[0] >> 32, KEY, "foreign value {v:x?}");
    v[0] & 0xffff_ffff
}

/// A replacing insert races two `get`s; the slot's version is 2³⁰ − 1
/// before it, so the insert carries into the high word (bit 32 of the
/// sequence).
#[test]
fn gets_racing_the_high_word_carry_are_whole_and_monotonic() {
    let outcomes = StdArc::new(StdMutex::new(BTreeSet::new()));
    let seen = outcomes.clone();
    let mut builder = Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        // Leaked, shared by reference: an `Arc`'s clone and drop would be
        // loom operations of their own (see `cache.rs`, "Shared state").
        let cache: &'static Cache = Box::leak(Box::new(Cache::new()));
        cache.insert(KEY, val(0)).unwrap();
        cache.loom_set_slot_versions((1 << 30) - 1);
        let writer = thread::spawn(move || {
            // The only writer: never contended.
            cache.insert(KEY, val(1)).unwrap();
        });
        let first = cache.get(&KEY).map(decode);
        let second = cache.get(&KEY).map(decode);
        if let (Some(a), Some(b)) = (first, second) {
            assert!(a <= b, "read version {a}, then the older {b}");
        }
        writer.join().unwrap();
        assert_eq!(cache.get(&KEY).map(decode), Some(1));
        seen.lock().unwrap().insert(format!("{first:?}"));
    });
    let seen: Vec<String> = outcomes.lock().unwrap().iter().cloned().collect();
    assert_eq!(seen, ["None", "Some(0)", "Some(1)"]);
}
