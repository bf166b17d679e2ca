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
//! | [`bucket`] | [`TokenBucket`] (GCRA in one atomic word, quota changeable under `&self`) and [`KeyedLimiter`] (per-key buckets in fixed storage, quota tiers) |
//! | [`cache`] | [`LruCache`]: exact fixed-capacity LRU for a single owner, O(1) operations, optional per-entry TTL; [`CacheMetrics`](cache::CacheMetrics); [`ConcurrentCache`]: lock-free set-associative cache (`&self`), exact LRU per set, seqlock slots, writers never wait |
//! | [`histogram`] | [`Histogram`]: lock-free log-linear latency histogram, one atomic RMW per `record`, exact count and sum, percentiles within 1/256 (0.39 %), fixed size, `const` constructor; bucket lists with bounds to export and to merge (validated) |
//! | [`time`] | [`Instant`], [`Duration`], the [`Clock`] trait |
//! | [`hash`] | the keyed structures' hashers: [`FixedState`](hash::FixedState) (default, fixed seed) and, with `std`, `RandomState` (secret per-instance seed, for servers) |
//! | [`RetryAfter`] | one way to ask any refusal when to try again |
//!
//! ## Features
//!
//! | feature | adds |
//! |---|---|
//! | `defmt` | `defmt::Format` for the public data types |
//! | `serde` | `Serialize`/`Deserialize` for configs (validated on the way in, unknown keys refused) and snapshots |
//! | `embassy-time` | `EmbassyClock`, a [`Clock`] reading `embassy_time::Instant`; needs Rust 1.85 (embassy-time 0.5 is edition 2024), the rest of the crate 1.81 |
//! | `time-window` | time-based failure windows for [`CircuitBreaker`] (`ConfigBuilder::time_window`, `failure_count`): a ring of 16 bucket words in every breaker (+152 bytes on x86-64, +76 on Cortex-M; +144 and +72 with `half-open-timeout` on too) |
//! | `half-open-timeout` | [`CircuitBreaker`]'s half-open timeout (`ConfigBuilder::max_half_open`): +16 bytes per breaker on x86-64, +20 on Cortex-M (padding included), about 0.8 KiB of flash on Cortex-M (804 B on thumbv7em, 816 B on thumbv6m: the README's size tables) |
//! | `alloc` | heap construction of large tables in place (`new_boxed`, `with_hasher_boxed`), for targets with an allocator |
//! | `std` | `StdClock` (a [`Clock`] on `std::time::Instant`, one origin per process), `alloc`, `hash::RandomState` (a per-instance secret hash seed, for keys chosen by clients), a per-table mutex instead of the process-wide critical section for [`KeyedLimiter`] inserts, and the host's `critical-section` implementation (for [`TokenBucket::set_quota`]): a server binary links with nothing else enabled |
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
//! | `CircuitBreaker` state | 1 × `u32`: 2-bit state, low 14 bits of the generation, 16-bit payload (closed: 8-bit failure count + the window cursor); + the epoch, the full generation: `u64` with native 64-bit atomics, `u32` on Cortex-M | ≤ 255 consecutive failures; ≤ 63 half-open permits and `close_after`; a permit is checked against the full generation: one held unrecorded across any number of transitions stays stale (on Cortex-M, below 2³²) |
//! | `CircuitBreaker` open deadline | in the same word: 26 bits of 1.024 ms ticks, wrapped (≈ 19 h 5 min); + the last installed Open word's deadline in full ticks (`u64`, or `u32` on Cortex-M) | open time rounded *up* to 1.024 ms; `open_for` ≤ 4 h 46 min; a `now` up to `max(open time, ~1.05 s)` earlier than the trip (a clock read before another thread's trip) still reads open: a stale clock never fails open; the deadline is also kept in full ticks (`u64`; `u32` on Cortex-M, wrapping every ≈ 50 days), stored just before each CAS that installs an Open word (a trip, a timed-out half-open, a fleet decision merged, a snapshot restored), and an Open word's 26 bits are extended to the full deadline nearest it: a breaker that nobody calls (`try_acquire`; reads with `state` do not count) after its deadline keeps reading half-open (on Cortex-M, until the last two open periods plus ~1 s before each whole multiple of ≈ 50 days after it), whichever of racing installs stored last; only an install with a clock more than ≈ 9 h 32 min behind another's (outside the tolerance above) can misplace a deadline by a multiple of ≈ 19 h |
//! | `CircuitBreaker` window | 64 × `u16` slots tagged with 12 generation bits and a lap bit, + a `u32` publication counter; the cursor lives in the state word | window ≤ 64 calls; a slot is written only while its claim is current (judged against the state word, not by comparing tags), so no history length locks a slot out; a record racing a transition drops its own outcome, never corrupts the new window; a tally can miscount a slot claimed but not yet written whose old tag happens to match (a record stalled between its claim and its write) until that write lands |
//! | `CircuitBreaker` half-open timeout (feature `half-open-timeout`) | 1 × `u32`: low 8 bits of the half-open generation + 24-bit deadline in 1.024 ms ticks, wrapped (≈ 4 h 46 min) | `max_half_open` ≤ 2²² ticks (`Config::MAX_HALF_OPEN`, 71 min 34.97 s: "71 min 35 s" is refused), rounded up to 1.024 ms; a `now` up to `max(max_half_open, ~1.05 s)` before the entry never times out; a half-open breaker nobody asks for a whole multiple of ≈ 4 h 46 min past its deadline may read undecided for up to `max_half_open + max(max_half_open, ~1.05 s)` (two more timeouts, or ~1.05 s for a short one) before each such multiple; a stamp overwritten by a racer stalled across 256·k half-open periods restarts the timeout |
//! | `CircuitBreaker` time window (feature `time-window`) | 16 bucket words, each `[tag][slow][failures][calls]`: `u64` with 16-bit fields with native 64-bit atomics, `u32` with 8-bit fields on Cortex-M; + the newest interval (`u64`, or `u32` with 31 interval bits on Cortex-M) and a `u32` publication counter | ≤ 16 buckets (a power of two), interval 1 ms to 2³² − 1 µs; counts saturate per bucket at 65 535 (Cortex-M: 255), over-stating rates once saturated; on Cortex-M (31 interval bits) a `now` up to 2²⁰ intervals (≥ 17 min at 1 ms) behind the newest, modulo 2³¹, reads as a stale clock (counted in the newest interval) and any other as later: a breaker idle within 2²⁰ intervals short of a whole multiple of 2³¹ (24.8 days at 1 ms) stops expiring its window until time passes the newest again (at most 2²⁰ intervals; never fails open), one idle for fewer than `buckets` intervals past such a multiple still counts the buckets it had, as if those 24.8 days had not passed (it may open on failures that old; never fails open), and a clock more than 2²⁰ intervals stale moves the window on, emptying it; a record racing a window move by a whole multiple of 2¹⁶ (Cortex-M: 2⁸) intervals may count once in the new window |
//! | `TokenBucket` | 1 × `u64` with native 64-bit atomics, 1 × `u32` on Cortex-M: the arrival time in half units, its lowest bit naming which of two quota slots it was written under; + the two slots (interval, capacity, offset, reset mark in that width; scale, tokens, period in `u32`s): 104 bytes on x86-64, 68 on Cortex-M | arrival time in scaled units (see [`bucket`]); 64-bit: `burst × period / tokens` under 2⁶¹ scaled units, exact across ±2.2 years (at the largest scale; 146 000 years at scale 1) of idle time or backward jumps; 32-bit: `burst × period / tokens` plus ~1.05 s must fit 2³⁰ scaled units (an exact scale that leaves no room gives way to the largest power-of-two scale that does, the interval rounded up by under 1/64: 541 a second admits 0.00005 % less; refused only if even that cannot fit), a `now` up to ~1.05 s behind a previous call only denies, and a bucket idle for close to a multiple of 2³¹ scaled units (35.8 min at one token per whole µs) may briefly admit *less*, never more; `set_quota` never makes a decision wait (changes are serialised by `critical-section`), and a decision is made under the older of two quotas only if it stalled between its load and its CAS across two changes while scaled time went a whole 2⁶³ (Cortex-M: 2³¹) units around (a `reset` among them counts for up to half); `reset` refills for any `now` within years of the last admission (Cortex-M: 17.9 min at scale 1 less the burst span, 0.5 s at the largest scale) |
//! | `KeyedLimiter` slot | 64-bit atomics: state `u32` (12-bit fingerprint, tier) + bucket `u64` `[arrival time 48][pins 6][quota tag 1][admissions 9]`, a call is 2 RMWs; Cortex-M: state `u32` `[fingerprint 12][tier 2][readers 6][admissions 12]` + the 32-bit bucket word (arrival time in half units, its lowest bit the quota tag), 3 RMWs; + the key; per tier a `u32` quota generation and two quota slots (a call loads the generation once) | 64-bit: `burst × period / tokens` under 2⁴⁶ scaled units (814 days at scale 1, 17.9 min at the largest scale; else `QuotaError::TooLong` at construction), a `now` up to 2⁴² scaled units stale (50.9 days at scale 1, 67 s at the largest scale) only denies, one staler reads the bucket as full; ≤ 62 (64-bit) or 63 (Cortex-M) callers pinned on one key at once, more take the locked path; new keys inserted under the table's lock (a per-table mutex with `std`, `critical-section` without); an evicted key returns no fuller than it left (8 eviction marks of `u64` µs, written only under that lock, read lock-free), while a new key sharing a mark may wait up to its caller's lag behind the eviction; `metrics().allowed` exact whenever no call is in flight; Cortex-M: as `TokenBucket` (~1.05 s backward tolerance, wrap at 2³¹ scaled units); `set_quota` converts every key of the tier under the table's lock (linear in `N`) while decisions racing it convert their key themselves, never waiting |
//! | `ConcurrentCache` | per set, contiguous: one `u32` (writer lock + 4-bit LRU age lanes), two `u32` of 8-bit way tags; per slot a 64-bit sequence (62-bit version, occupied, writing): one `u64` with native 64-bit atomics, two `u32` words read as a wide sequence lock on Cortex-M; + key and value copied through atomic 4- or 1-byte views | ≤ 8 ways; `K`, `V` without padding (`bytemuck::NoUninit`); a reader stalled across a multiple of 2⁶² writes of one slot (Cortex-M: at least 2⁶² − 2³⁰) could accept a torn copy, over 140 years at one write per nanosecond |
//! | statistics counters | `u64` with native 64-bit atomics, else `u32` | wrap at 2³² on 32-bit MCUs |
//! | `Histogram` buckets | `BUCKETS` statistics words: `u64` `[offset sum 20][count 44]` with native 64-bit atomics, a `u32` count on 32-bit MCUs; `record` is one `fetch_add` | a bucket counts up to 2⁴⁴−1 values (2³²−1 on 32-bit MCUs): merges and `record_n` saturate there, `record` wraps; values above `MAX_VALUE` (2³²−1 by default) are clamped into the top bucket and counted |
//! | `Histogram` sum | derived from the buckets (`count · low + offset sum`) plus a spill of two statistics words for offsets that carry out of a bucket word or do not fit it (an extra RMW: 64-bit, once per ≥ 512 values of a bucket below 2¹⁹, most values from 2²⁸; 32-bit MCUs, every value from 256) | exact modulo 2⁶⁴; a read racing a carry may be 2²⁰ off (2³² on 32-bit MCUs) for that moment |
//! | `Histogram` min/max | two statistics words: the values, or order-preserving 32-bit codes on 32-bit MCUs (minimum stored inverted, so all-zero is empty) | on 32-bit MCUs exact below 2³¹, above that rounded outward by ≤ 2⁻²⁵ relative |
//!
//! ## Example
//!
//! ```
//! use fusebox::breaker::{Config, Outcome};
//! use fusebox::{CircuitBreaker, Duration, Instant};
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

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
mod boxed;
pub mod breaker;
pub mod bucket;
pub mod cache;
pub mod hash;
pub mod histogram;
mod retry_after;
mod sync;
pub mod time;

// The crate root holds the primitives and the time vocabulary they share;
// each primitive's own vocabulary stays in its module
// (`breaker::{Config, Outcome, State, ..}`, `bucket::{Quota, ..}`), so no
// name at the root belongs to one primitive alone.
pub use breaker::CircuitBreaker;
pub use bucket::{KeyedLimiter, TokenBucket};
pub use cache::{ConcurrentCache, LruCache};
pub use histogram::Histogram;
pub use retry_after::RetryAfter;
#[cfg(feature = "embassy-time")]
pub use time::EmbassyClock;
#[cfg(feature = "std")]
pub use time::StdClock;
pub use time::{Clock, Duration, Instant};
