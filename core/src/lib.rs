//! # fusebox
//!
//! Resilience primitives that run the same in a Cortex-M0 firmware and in a
//! tokio server: `#![no_std]`, no allocation, lock-free, and *sans clock* —
//! every time-dependent call takes `now` ([`Instant`], microseconds), so the
//! core is deterministic, testable on virtual time and checkable with loom.
//!
//! | module | what |
//! |---|---|
//! | [`breaker`] | [`CircuitBreaker`]: consecutive-failure, failure-rate and slow-call tripping, half-open trials, exponential open time |
//! | [`bucket`] | [`TokenBucket`] (GCRA in one atomic word) and [`KeyedLimiter`] (per-key buckets in fixed storage, quota tiers) |
//! | [`time`] | [`Instant`], [`Duration`], the [`Clock`] trait |
//!
//! ## Features
//!
//! | feature | adds |
//! |---|---|
//! | `defmt` | `defmt::Format` for the public data types |
//! | `serde` | `Serialize`/`Deserialize` for configs (validated on the way in) and snapshots |
//! | `embassy-time` | `EmbassyClock`, a [`Clock`] reading `embassy_time::Instant` |
//!
//! ## Atomic words and their limits
//!
//! Cortex-M3/M4 have only 32-bit compare-and-swap and Cortex-M0 none, so all
//! decision state is kept in 32-bit words (native `LDREX`/`STREX` on M3/M4,
//! portable-atomic's interrupt-safe `critical-section` emulation on M0).
//! portable-atomic's global-lock `fallback` is never enabled: on
//! `thumbv7em-none-eabihf` a 64-bit atomic is a compile error in this crate.
//!
//! | structure | words | limits that follow |
//! |---|---|---|
//! | `CircuitBreaker` state | 1 × `u32`: 2-bit state, 14-bit generation, 16-bit payload | ≤ 65 535 consecutive failures; ≤ 63 half-open permits and `close_after`; a permit left unrecorded across 16 384 transitions could be taken for a current one |
//! | `CircuitBreaker` open deadline | in the same word: 26 bits of 1.024 ms ticks, wrapped (≈ 19 h 5 min) | open time rounded *up* to 1.024 ms; `open_for` ≤ 9 h 32 min; a `now` up to ~1 s earlier than the trip (another thread's older clock read) still reads open; a breaker that nobody asks for a whole multiple of ≈ 19 h may stay open for at most one more open period |
//! | `CircuitBreaker` window | cursor `u32` + 2 bitmaps × 2 `u32` | window ≤ 64 calls |
//! | `TokenBucket` | 1 × `u64` with native 64-bit atomics; 1 × `u32` on Cortex-M | arrival time in scaled units (see [`bucket`]); 64-bit: exact across ±4.4 years of idle time or backward jumps; 32-bit: `burst × period / tokens` plus ~1.05 s must fit 2³¹ scaled units, a `now` up to ~1.05 s behind a previous call only denies, and a bucket idle for close to a multiple of 2³² scaled units (71.6 min at one token per whole µs) may briefly admit *less*, never more |
//! | `KeyedLimiter` slot | state `u32` (fingerprint, tier, registered callers) + the bucket word + the key | ≤ 1 023 callers on one key at once (more wait in the insert path); new keys inserted under `critical-section` |
//! | statistics counters | `u64` with native 64-bit atomics, else `u32` | wrap at 2³² on 32-bit MCUs |
//!
//! ## Example
//!
//! ```
//! use fusebox::{CircuitBreaker, Config, Duration, Instant, Outcome};
//!
//! static BREAKER: CircuitBreaker = CircuitBreaker::new(match Config::builder()
//!     .consecutive_failures(5)
//!     .open_for(Duration::from_secs(30))
//!     .build()
//! {
//!     Ok(c) => c,
//!     Err(_) => panic!("bad config"),
//! });
//!
//! let now = Instant::from_millis(42);
//! match BREAKER.try_acquire(now) {
//!     Ok(permit) => {
//!         let transition = permit.record(Outcome::Success, now, Duration::from_millis(3));
//!         assert!(transition.is_none());
//!     }
//!     Err(rejected) => panic!("unexpected: {rejected}"),
//! }
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod breaker;
pub mod bucket;
pub mod cache;
mod sync;
pub mod time;

pub use breaker::{
    CircuitBreaker, Config, ConfigError, Metrics, Outcome, Permit, Rejected, Snapshot,
    SnapshotError, State, Transition,
};
pub use bucket::{KeyedLimiter, Quota, RateLimited, TokenBucket};
#[cfg(feature = "embassy-time")]
pub use time::EmbassyClock;
pub use time::{Clock, Duration, Instant};

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
