//! Loom models of the rate limiters (`fusebox::bucket`).
//!
//! Run only as:
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fusebox-loom --release --test bucket
//! ```
//!
//! Every model sets its preemption bound in code (the environment variable
//! only matters for models that do not), so the run time is predictable.
//!
//! * `TokenBucket`: every concurrent run must be *linearizable* against an
//!   independent reference GCRA written here (integer µs, rate 1/s): the
//!   results each thread saw (admitted, or refused with an exact
//!   `retry_after`) and `available` afterwards must be those of at least one
//!   sequential interleaving of the same calls. On top of that the headline
//!   counts are asserted directly (exactly `burst` admitted at one `now`,
//!   never more than `burst + rate · (max now − min now)`).
//! * `KeyedLimiter`: exact outcomes (results, `available` per key, every
//!   metric) compared with what the sequential executions allow. Under
//!   loom a slot folds its pending admission count into the global counter
//!   from 2 on (not 2 048), so the models cross that fold too; (e) and (e')
//!   check the count is exact across folds and evictions. Loom builds have
//!   64-bit atomics, so these run the two-RMW protocol (pin on the bucket
//!   word); (f) checks that a pin blocks an eviction and never leaks, (g)
//!   that charges which unpin and count in one CAS stay exact contended.
//!
//! `keyed_requota_*` (kr1–kr3): `KeyedLimiter::set_quota` racing
//! decisions on one key (a raise, a cut, two changes in a row): never more
//! admitted than the larger quota allows from the key's state, and a
//! decision stalled across two changes never acts on the quota it read
//! (kr3 found unconfirmed refusals doing so). Preemption bound 3 on the
//! 64-bit layout, 2 on the 32-bit one (`REQUOTA_BOUND`).
//!
//! `keyed_eviction_races_stale_return_of_evicted_key` (c6) checks that an
//! evicted key returning on a staler clock than the evicting caller's is
//! never admitted early (issue 10, 2b: insertions start from the
//! eviction marks, under the table's lock).
//!
//! `keyed_available_of_busy_key_during_eviction_check` is a regression
//! model: it found `KeyedLimiter::available` reading a key as absent (full
//! burst) while another thread held its slot LOCKED for an idle check.
//! `available` now takes no lock: an eviction checks that the key is idle
//! before it locks the slot (so a busy key is never locked), and raises
//! the evicted key's mark before that lock, so a reader that misses the key
//! reads its mark; `keyed_available_of_evicted_key_reads_its_mark` (h)
//! checks the second half. Insertions take the limiter's own lock (a loom
//! mutex per table).
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use fusebox::bucket::{AcquireError, FullPolicy, KeyedError, KeyedMetrics, Quota, TokenBucket};
use fusebox::{Duration, Instant, KeyedLimiter};
use loom::sync::Arc;
use loom::thread;

/// One token per `T` µs: scale 1, emission interval `T`. One second
/// normally; 100 ms with `--cfg fusebox_narrow_words` (the 32-bit word
/// layouts), so every stale clock in these models (at most 10 `T` behind)
/// stays inside the 32-bit word's documented ~1.05 s backward tolerance.
#[cfg(not(fusebox_narrow_words))]
const T: u64 = 1_000_000;
#[cfg(fusebox_narrow_words)]
const T: u64 = 100_000;
/// A `now` well away from zero (the arrival-time word's `FRESH` value).
const T0: u64 = 10 * T;

fn at(micros: u64) -> Instant {
    Instant::from_micros(micros)
}

/// One token per `T`, burst `burst`.
fn quota(burst: u32) -> Quota {
    Quota::with_period(Duration::from_micros(T))
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

/// Runs `f` under loom with `bound` preemptions, and reports the number of
/// executions explored (visible with `--nocapture`).
fn check(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    // Atomic operations per execution, not interleavings: the keyed models'
    // sequential checks read each tier's quota too.
    builder.max_branches = 10_000;
    let iterations = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = iterations.clone();
    let start = std::time::Instant::now();
    builder.check(move || {
        seen.fetch_add(1, Relaxed);
        f();
    });
    eprintln!(
        "{name}: {} executions, preemption bound {bound}, {:?}",
        iterations.load(Relaxed),
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// TokenBucket: a reference GCRA and a linearizability check against it
// ---------------------------------------------------------------------------

/// One call: `n` tokens at `now` (µs). `n == 1` goes through `try_acquire`,
/// anything else through `try_acquire_n`.
#[derive(Clone, Copy, Debug)]
struct Op {
    n: u32,
    now: u64,
}

/// What a call returned: `Ok(())`, or `Err(retry_after in µs)`.
type Outcome = Result<(), u64>;

fn run(bucket: &TokenBucket, op: Op) -> Outcome {
    if op.n == 1 {
        bucket
            .try_acquire(at(op.now))
            .map_err(|e| e.retry_after.as_micros())
    } else {
        match bucket.try_acquire_n(op.n, at(op.now)) {
            Ok(()) => Ok(()),
            Err(AcquireError::RateLimited(e)) => Err(e.retry_after.as_micros()),
            Err(e) => panic!("unexpected {e:?} for {op:?}"),
        }
    }
}

/// The reference: GCRA in plain integers, rate 1/s, for `now`s far from 0.
#[derive(Clone, Copy, Debug)]
struct RefBucket {
    burst: u64,
    /// Theoretical arrival time; `None` for a fresh (full) bucket.
    tat: Option<u64>,
}

impl RefBucket {
    fn new(burst: u32) -> Self {
        Self {
            burst: u64::from(burst),
            tat: None,
        }
    }
    fn ahead(&self, now: u64) -> u64 {
        self.tat.map_or(0, |tat| tat.saturating_sub(now))
    }
    fn take(&mut self, op: Op) -> Outcome {
        if op.n == 0 {
            return Ok(());
        }
        let needed = self.ahead(op.now) + u64::from(op.n) * T;
        if needed <= self.burst * T {
            self.tat = Some(op.now + needed);
            Ok(())
        } else {
            Err(needed - self.burst * T)
        }
    }
    fn available(&self, now: u64) -> u32 {
        ((self.burst * T).saturating_sub(self.ahead(now)) / T) as u32
    }
}

/// Whether some interleaving of the per-thread `ops` (program order kept)
/// produces exactly the `observed` outcomes on the reference bucket and
/// leaves it with `available(now) == avail` for every `(now, avail)` in
/// `after`.
fn linearizable(
    reference: RefBucket,
    ops: &[Vec<Op>],
    observed: &[Vec<Outcome>],
    after: &[(u64, u32)],
) -> bool {
    fn go(
        r: RefBucket,
        next: &mut Vec<usize>,
        ops: &[Vec<Op>],
        observed: &[Vec<Outcome>],
        after: &[(u64, u32)],
    ) -> bool {
        if next.iter().zip(ops).all(|(&i, o)| i == o.len()) {
            return after.iter().all(|&(now, a)| r.available(now) == a);
        }
        for t in 0..ops.len() {
            let i = next[t];
            if i == ops[t].len() {
                continue;
            }
            let mut r2 = r;
            if r2.take(ops[t][i]) != observed[t][i] {
                continue;
            }
            next[t] += 1;
            let ok = go(r2, next, ops, observed, after);
            next[t] -= 1;
            if ok {
                return true;
            }
        }
        false
    }
    go(reference, &mut vec![0; ops.len()], ops, observed, after)
}

/// Runs one thread per entry of `ops` against one bucket of `burst`, then
/// checks linearizability (results and `available` at each of `probe`).
/// Returns the observed outcomes and the `available`s for extra asserts.
fn race_bucket(burst: u32, ops: &[Vec<Op>], probe: &[u64]) -> (Vec<Vec<Outcome>>, Vec<u32>) {
    let bucket = Arc::new(TokenBucket::new(quota(burst)));
    let handles: Vec<_> = ops
        .iter()
        .map(|thread_ops| {
            let bucket = bucket.clone();
            let thread_ops = thread_ops.clone();
            thread::spawn(move || thread_ops.iter().map(|&op| run(&bucket, op)).collect())
        })
        .collect();
    let observed: Vec<Vec<Outcome>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let avail: Vec<u32> = probe.iter().map(|&now| bucket.available(at(now))).collect();
    let after: Vec<(u64, u32)> = probe.iter().copied().zip(avail.iter().copied()).collect();
    assert!(
        linearizable(RefBucket::new(burst), ops, &observed, &after),
        "not linearizable: ops {ops:?}, observed {observed:?}, available {after:?}"
    );
    (observed, avail)
}

fn admitted_tokens(ops: &[Vec<Op>], observed: &[Vec<Outcome>]) -> u32 {
    ops.iter()
        .flatten()
        .zip(observed.iter().flatten())
        .filter(|(_, r)| r.is_ok())
        .map(|(op, _)| op.n)
        .sum()
}

/// (a1) Three threads, one token each, same `now`, burst 2: exactly two
/// admitted, the third refused with a retry of exactly one interval, and
/// the bucket empty afterwards (one token back after `T`).
#[test]
fn bucket_three_threads_same_now() {
    check("bucket_three_threads_same_now", 3, || {
        let op = Op { n: 1, now: T0 };
        let ops = vec![vec![op], vec![op], vec![op]];
        let (observed, avail) = race_bucket(2, &ops, &[T0, T0 + T - 1, T0 + T, T0 + 2 * T]);
        assert_eq!(admitted_tokens(&ops, &observed), 2, "{observed:?}");
        let refused: Vec<_> = observed.iter().flatten().filter_map(|r| r.err()).collect();
        assert_eq!(refused, [T], "{observed:?}");
        assert_eq!(avail, [0, 0, 1, 2]);
    });
}

/// (a2) Two threads mixing `try_acquire_n(2)` and `try_acquire`, same
/// `now`, burst 3: whatever the interleaving, exactly 3 tokens admitted,
/// the later calls refused with the exact wait.
#[test]
fn bucket_mixed_n_same_now() {
    check("bucket_mixed_n_same_now", 3, || {
        let ops = vec![
            vec![Op { n: 2, now: T0 }, Op { n: 1, now: T0 }],
            vec![Op { n: 1, now: T0 }, Op { n: 2, now: T0 }],
        ];
        let (observed, avail) = race_bucket(3, &ops, &[T0, T0 + T]);
        assert_eq!(admitted_tokens(&ops, &observed), 3, "{observed:?}");
        assert_eq!(avail, [0, 1]);
    });
}

/// (a3) Different `now`s: thread A is one interval ahead of thread B
/// ("behind"), each takes one token twice, burst 2. Never more than
/// `burst + rate · (max now − min now)` = 3 tokens; at least 2 (the burst at
/// A's `now`); and, via the linearizability check, exactly what some
/// sequential order allows. A third thread, at B's `now`, asks for the
/// whole burst at once.
#[test]
fn bucket_skewed_nows() {
    check("bucket_skewed_nows", 2, || {
        let a = T0 + T;
        let b = T0;
        let ops = vec![
            vec![Op { n: 1, now: a }, Op { n: 1, now: a }],
            vec![Op { n: 1, now: b }, Op { n: 1, now: b }],
            vec![Op { n: 2, now: b }],
        ];
        let (observed, avail) = race_bucket(2, &ops, &[a, a + 3 * T]);
        let admitted = admitted_tokens(&ops, &observed);
        assert!((2..=3).contains(&admitted), "{admitted}: {observed:?}");
        assert_eq!(avail[1], 2, "full again after 3 s");
        // Taking the whole burst at `b` still leaves one token at `a`, so
        // A's first call is admitted in every interleaving.
        assert_eq!(observed[0][0], Ok(()), "{observed:?}");
    });
}

/// (a3') Half an interval of skew, two threads mixing sizes, burst 3,
/// bound 3. At most `⌊3 + 0.5⌋` = 3 tokens; 2 when A's single token first
/// pushes the arrival time past what B's pair fits in (A1, B1 refused, B2,
/// A2 refused); linearizability pins the rest.
#[test]
fn bucket_skewed_nows_two_threads() {
    check("bucket_skewed_nows_two_threads", 3, || {
        let a = T0 + T / 2;
        let b = T0;
        let ops = vec![
            vec![Op { n: 1, now: a }, Op { n: 2, now: a }],
            vec![Op { n: 2, now: b }, Op { n: 1, now: b }],
        ];
        let (observed, _) = race_bucket(3, &ops, &[a, b, a + T / 2]);
        // burst + rate · (a − b) = 3.5: at most 3 whole tokens.
        let admitted = admitted_tokens(&ops, &observed);
        assert!((2..=3).contains(&admitted), "{admitted}: {observed:?}");
    });
}

// ---------------------------------------------------------------------------
// TokenBucket quota changes (`set_quota`, `reset`): a reference with changes
// ---------------------------------------------------------------------------
//
// The bucket's arrival-time word is tagged with one of two quota slots; a
// change writes the other slot and flips the tag in the CAS that publishes
// the state it carries over. These models race changes with decisions and
// check every run against a reference written from the documented
// contract: linearizable (results, the quota each change reports replacing,
// `available` afterwards), so no decision is ever made on a word under the
// other slot's quota; and never more admitted than the larger quota allows.

/// The models' quotas. `B` has scale 3 (three per `T`), so deciding a word
/// written under `A` or `C` (scale 1) with `B`'s values, or the reverse,
/// would misread it threefold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Q {
    /// One per `T`, burst 2.
    A,
    /// Three per `T`, burst 3.
    B,
    /// One per `2T`, burst 1.
    C,
}

/// The reference counts time in ticks of 1/3 µs, a unit of every quota.
const TICKS: u64 = 3;

impl Q {
    fn quota(self) -> Quota {
        match self {
            Q::A => quota(2),
            Q::B => Quota::new(3, Duration::from_micros(T))
                .unwrap()
                .with_burst(3)
                .unwrap(),
            Q::C => Quota::with_period(Duration::from_micros(2 * T))
                .unwrap()
                .with_burst(1)
                .unwrap(),
        }
    }
    fn of(quota: Quota) -> Self {
        [Q::A, Q::B, Q::C]
            .into_iter()
            .find(|q| q.quota() == quota)
            .unwrap()
    }
    /// Ticks per token.
    fn interval(self) -> u64 {
        match self {
            Q::A => TICKS * T,
            Q::B => T,
            Q::C => 2 * TICKS * T,
        }
    }
    fn burst(self) -> u64 {
        match self {
            Q::A => 2,
            Q::B => 3,
            Q::C => 1,
        }
    }
    fn capacity(self) -> u64 {
        self.burst() * self.interval()
    }
    /// The quota's resolution in ticks: `1 / scale` µs.
    fn resolution(self) -> u64 {
        match self {
            Q::B => 1,
            Q::A | Q::C => TICKS,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ROp {
    /// `n` tokens at `now` µs.
    Take(u32, u64),
    /// `set_quota` at `now` µs.
    Change(Q, u64),
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ROut {
    /// Admitted, or refused with the wait in µs.
    Taken(Result<(), u64>),
    /// The quota a change replaced.
    Replaced(Q),
    Reset,
}

/// The contract: GCRA in ticks; a change keeps the tokens available at its
/// `now` (rounded toward fewer to the new resolution, clamped to the new
/// burst), or an overdraft as time (rounded up); a reset refills for any
/// `now` within years of the last admission: all of the model's.
#[derive(Clone, Copy, Debug)]
struct RefQ {
    q: Q,
    /// Arrival time in ticks; `None` for a fresh (full) bucket.
    tat: Option<u64>,
}

impl RefQ {
    fn ahead(&self, now: u64) -> u64 {
        self.tat.map_or(0, |tat| tat.saturating_sub(TICKS * now))
    }
    fn apply(&mut self, op: ROp) -> ROut {
        match op {
            ROp::Take(n, now) => {
                let needed = self.ahead(now) + u64::from(n) * self.q.interval();
                let capacity = self.q.capacity();
                ROut::Taken(if needed <= capacity {
                    self.tat = Some(TICKS * now + needed);
                    Ok(())
                } else {
                    Err((needed - capacity).div_ceil(TICKS))
                })
            }
            ROp::Change(q, now) => {
                let (ahead, capacity) = (self.ahead(now), self.q.capacity());
                let res = q.resolution();
                let drained = if ahead > capacity {
                    q.capacity() + (ahead - capacity).div_ceil(res) * res
                } else {
                    let avail = (capacity - ahead) * q.interval() / (self.q.interval() * res) * res;
                    q.capacity() - avail.min(q.capacity())
                };
                let old = std::mem::replace(&mut self.q, q);
                self.tat = Some(TICKS * now + drained);
                ROut::Replaced(old)
            }
            ROp::Reset => {
                self.tat = None;
                ROut::Reset
            }
        }
    }
    fn available(&self, now: u64) -> u32 {
        (self.q.capacity().saturating_sub(self.ahead(now)) / self.q.interval()) as u32
    }
}

fn apply(bucket: &TokenBucket, op: ROp) -> ROut {
    match op {
        ROp::Take(n, now) => ROut::Taken(run(bucket, Op { n, now })),
        ROp::Change(q, now) => ROut::Replaced(Q::of(bucket.set_quota(q.quota(), at(now)))),
        ROp::Reset => {
            bucket.reset();
            ROut::Reset
        }
    }
}

/// Whether some interleaving of the per-thread `ops` (program order kept)
/// gives exactly the `observed` outcomes on `reference` and leaves it with
/// the quota `last` and `available(now) == avail` for every `after` entry.
fn linearizable_with_changes(
    reference: RefQ,
    ops: &[Vec<ROp>],
    observed: &[Vec<ROut>],
    last: Q,
    after: &[(u64, u32)],
) -> bool {
    fn go(
        r: RefQ,
        next: &mut Vec<usize>,
        ops: &[Vec<ROp>],
        observed: &[Vec<ROut>],
        end: &dyn Fn(&RefQ) -> bool,
    ) -> bool {
        if next.iter().zip(ops).all(|(&i, o)| i == o.len()) {
            return end(&r);
        }
        for t in 0..ops.len() {
            let i = next[t];
            if i == ops[t].len() {
                continue;
            }
            let mut r2 = r;
            if r2.apply(ops[t][i]) != observed[t][i] {
                continue;
            }
            next[t] += 1;
            let ok = go(r2, next, ops, observed, end);
            next[t] -= 1;
            if ok {
                return true;
            }
        }
        false
    }
    let end = |r: &RefQ| r.q == last && after.iter().all(|&(now, a)| r.available(now) == a);
    go(reference, &mut vec![0; ops.len()], ops, observed, &end)
}

/// Runs `setup` single-threaded on a fresh bucket of `q0`, then one thread
/// per entry of `ops`; checks linearizability (results, the final quota,
/// `available` at each of `probe`) and returns the observed outcomes.
fn race_changes(q0: Q, setup: &[ROp], ops: &[Vec<ROp>], probe: &[u64]) -> Vec<Vec<ROut>> {
    let bucket = Arc::new(TokenBucket::new(q0.quota()));
    let mut reference = RefQ { q: q0, tat: None };
    for &op in setup {
        assert_eq!(apply(&bucket, op), reference.apply(op), "setup {op:?}");
    }
    let handles: Vec<_> = ops
        .iter()
        .map(|thread_ops| {
            let bucket = bucket.clone();
            let thread_ops = thread_ops.clone();
            thread::spawn(move || thread_ops.iter().map(|&op| apply(&bucket, op)).collect())
        })
        .collect();
    let observed: Vec<Vec<ROut>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let last = Q::of(bucket.quota());
    let after: Vec<(u64, u32)> = probe
        .iter()
        .map(|&now| (now, bucket.available(at(now))))
        .collect();
    assert!(
        linearizable_with_changes(reference, ops, &observed, last, &after),
        "not linearizable: ops {ops:?}, observed {observed:?}, quota {last:?}, available {after:?}"
    );
    observed
}

fn admitted(ops: &[Vec<ROp>], observed: &[Vec<ROut>]) -> u32 {
    ops.iter()
        .flatten()
        .zip(observed.iter().flatten())
        .map(|(op, out)| match (op, out) {
            (ROp::Take(n, _), ROut::Taken(Ok(()))) => *n,
            _ => 0,
        })
        .sum()
}

/// (r1) A change to a smaller, slower quota (`A` burst 2 → `C` burst 1)
/// races two deciders at the same `now` on a full bucket: linearizable,
/// and never more than the larger burst (2) admitted.
#[test]
fn requota_lowering_races_two_deciders() {
    check("requota_lowering_races_two_deciders", 3, || {
        let take = ROp::Take(1, T0);
        let ops = vec![vec![take], vec![take], vec![ROp::Change(Q::C, T0)]];
        let observed = race_changes(Q::A, &[], &ops, &[T0, T0 + 2 * T]);
        assert!(admitted(&ops, &observed) <= 2, "{observed:?}");
    });
}

/// (r1') A change to a larger, faster quota (`A` burst 2 → `B` burst 3,
/// three times the rate, scale 3) races two deciders asking for 2 and 1
/// at the same `now`: linearizable, and the raise grants nothing: at most
/// 2 admitted.
#[test]
fn requota_raising_races_two_deciders() {
    check("requota_raising_races_two_deciders", 3, || {
        let ops = vec![
            vec![ROp::Take(2, T0)],
            vec![ROp::Take(1, T0)],
            vec![ROp::Change(Q::B, T0)],
        ];
        let observed = race_changes(Q::A, &[], &ops, &[T0, T0 + T / 3, T0 + T]);
        assert!(admitted(&ops, &observed) <= 2, "{observed:?}");
    });
}

/// (r2) Two changes in a row (`A` → `B` → `C`) race a decider making two
/// decisions, so a decision can load the word under `A`'s slot and read
/// that slot while the second change rewrites it with `C`: such a mix is
/// never acted on (its CAS fails, or its refusal is re-read), and every
/// result is linearizable.
#[test]
fn requota_stale_slot_is_never_acted_on() {
    check("requota_stale_slot_is_never_acted_on", 3, || {
        let ops = vec![
            vec![ROp::Take(1, T0), ROp::Take(1, T0 + T)],
            vec![ROp::Change(Q::B, T0), ROp::Change(Q::C, T0 + T)],
        ];
        race_changes(Q::A, &[ROp::Take(1, T0)], &ops, &[T0 + T, T0 + 3 * T]);
    });
}

/// (r3) A change stamped with a stale `now` (`T0`) races deciders one
/// interval later on a bucket drained at `T0`: linearizable, the debt is
/// never forgiven, and over `[T0, T0 + T]` (which holds every `now`) at
/// most the larger burst plus the larger rate times `T`: 3 + 3.
#[test]
fn requota_stale_now_races_deciders() {
    check("requota_stale_now_races_deciders", 3, || {
        let later = T0 + T;
        let ops = vec![
            vec![ROp::Take(1, later)],
            vec![ROp::Take(2, later)],
            vec![ROp::Change(Q::B, T0)],
        ];
        let drain = ROp::Take(2, T0);
        let observed = race_changes(Q::A, &[drain], &ops, &[later, later + T]);
        assert!(2 + admitted(&ops, &observed) <= 3 + 3, "{observed:?}");
    });
}

/// (r4) A reset races a decider and a change on a drained bucket:
/// linearizable (the reset refills under whichever quota it finds).
#[test]
fn requota_reset_races_a_decider_and_a_change() {
    check("requota_reset_races_a_decider_and_a_change", 2, || {
        let ops = vec![
            vec![ROp::Take(2, T0)],
            vec![ROp::Reset],
            vec![ROp::Change(Q::B, T0)],
        ];
        race_changes(Q::A, &[ROp::Take(2, T0)], &ops, &[T0, T0 + T]);
    });
}

// ---------------------------------------------------------------------------
// KeyedLimiter
// ---------------------------------------------------------------------------

type Keyed<const N: usize, const TIERS: usize> = KeyedLimiter<u32, N, TIERS>;

fn metrics(allowed: u64, limited: u64, evictions: u64, table_full: u64, keys: u64) -> KeyedMetrics {
    KeyedMetrics {
        allowed,
        limited,
        evictions,
        table_full,
        keys,
    }
}

const LIMITED_1S: KeyedError = KeyedError::RateLimited(fusebox::bucket::RateLimited {
    retry_after: Duration::from_micros(T),
});

/// (b) Two threads first-touch the same new key, two requests each, burst
/// 2, two free slots: the key is inserted once (`keys == 1`: a second copy
/// would take the other free slot), exactly 2 requests admitted and the
/// other 2 refused with a one-interval retry, the bucket then empty.
#[test]
fn keyed_same_new_key_inserted_once() {
    check("keyed_same_new_key_inserted_once", 3, || {
        let limiter: Arc<Keyed<2, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        let spawn = |l: &Arc<Keyed<2, 1>>| {
            let l = l.clone();
            thread::spawn(move || [l.try_acquire(&7, at(T0)), l.try_acquire(&7, at(T0))])
        };
        let (h1, h2) = (spawn(&limiter), spawn(&limiter));
        let (r1, r2) = (h1.join().unwrap(), h2.join().unwrap());
        let all: Vec<_> = r1.iter().chain(&r2).copied().collect();
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 2, "{all:?}");
        assert!(
            all.iter().all(|r| *r == Ok(()) || *r == Err(LIMITED_1S)),
            "{all:?}"
        );
        // Per thread, a refusal is never followed by an admission (same now).
        for r in [r1, r2] {
            assert!(!(r[0].is_err() && r[1].is_ok()), "{r:?}");
        }
        assert_eq!(limiter.metrics(), metrics(2, 2, 0, 0, 1));
        assert_eq!(limiter.available(&7, at(T0)), 0);
        assert_eq!(limiter.available(&7, at(T0 + T)), 1);
        // The other slot is still free: a new key gets it without eviction.
        assert_eq!(limiter.try_acquire(&8, at(T0)), Ok(()));
        assert_eq!(limiter.metrics(), metrics(3, 2, 0, 0, 2));
    });
}

/// (b') Three threads first-touch the same new key once each, burst 2, two
/// slots: inserted once, exactly 2 admitted, 1 rate limited (never
/// `TableFull`: the key found its own slot).
#[test]
fn keyed_same_new_key_three_threads() {
    check("keyed_same_new_key_three_threads", 2, || {
        let limiter: Arc<Keyed<2, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let l = limiter.clone();
                thread::spawn(move || l.try_acquire(&7, at(T0)))
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        all.sort_by_key(Result::is_ok);
        assert_eq!(all, [Err(LIMITED_1S), Ok(()), Ok(())]);
        assert_eq!(limiter.metrics(), metrics(2, 1, 0, 0, 1));
        assert_eq!(limiter.available(&7, at(T0)), 0);
    });
}

/// Snapshot of one keyed run, for comparison with sequential runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyedOutcome {
    a: Result<(), KeyedError>,
    b: Result<(), KeyedError>,
    available: [u32; 3],
    metrics: KeyedMetrics,
}

/// (c1) One slot holding key 1, idle (charged at T0, full again at T0+5s).
/// Thread A acquires key 1 while thread B inserts key 2 (which may evict
/// key 1). Exactly one of the two sequential outcomes:
///
/// * A then B: A charges key 1 (now busy), B finds no idle slot: TableFull.
/// * B then A: B evicts key 1 and charges key 2, A finds key 1 gone and the
///   only slot busy: TableFull.
///
/// Both admitted would mean A's token went to a key evicted under it (or to
/// key 2's bucket). `available` shows which key holds the slot and was
/// charged: a present, charged key has 1 of 2; an absent one reads 2.
#[test]
fn keyed_insert_evict_race_one_slot() {
    check("keyed_insert_evict_race_one_slot", 3, || {
        let now = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        assert_eq!(limiter.available(&1, at(now)), 2, "idle at `now`");
        let la = limiter.clone();
        let a = thread::spawn(move || la.try_acquire(&1, at(now)));
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
        let got = KeyedOutcome {
            a: a.join().unwrap(),
            b: b.join().unwrap(),
            available: [1, 2, 3].map(|k| limiter.available(&k, at(now))),
            metrics: limiter.metrics(),
        };
        let a_then_b = KeyedOutcome {
            a: Ok(()),
            b: Err(KeyedError::TableFull),
            available: [1, 2, 2],
            metrics: metrics(2, 1, 0, 1, 1),
        };
        let b_then_a = KeyedOutcome {
            a: Err(KeyedError::TableFull),
            b: Ok(()),
            available: [2, 1, 2],
            metrics: metrics(2, 1, 1, 1, 1),
        };
        assert!(got == a_then_b || got == b_then_a, "{got:#?}");
    });
}

/// The (c2) setup: two slots, keys 1 and 3 in tier 1 (burst 3), both
/// charged at T0 and idle at T0+5s; new keys get tier 0 (burst 2). Tiers
/// make the slot contents visible through `available`: an absent key reads
/// tier 0's burst (2), a present idle tier-1 key 3, a tier-1 key charged
/// once 2, a tier-0 key charged once 1.
fn two_idle_keys() -> Keyed<2, 2> {
    let limiter = KeyedLimiter::with_tiers([quota(2), quota(3)], FullPolicy::Reject)
        .expect("quota within the keyed range");
    limiter.try_acquire_tier(&1, 1, at(T0)).unwrap();
    limiter.try_acquire_tier(&3, 1, at(T0)).unwrap();
    limiter
}

fn snapshot_c2(
    l: &Keyed<2, 2>,
    key_b: u32,
    a: Result<(), KeyedError>,
    b: Result<(), KeyedError>,
    now: u64,
) -> KeyedOutcome {
    KeyedOutcome {
        a,
        b,
        available: [1, key_b, 3].map(|k| l.available(&k, at(now))),
        metrics: l.metrics(),
    }
}

/// New keys for (c2): one whose insertion (alone) evicts key 3, one whose
/// insertion evicts key 1 — which depends on the hash, so it is found by a
/// single-threaded loom run rather than hard-coded.
fn new_keys_for_c2() -> (u32, u32) {
    let found = std::sync::Arc::new(std::sync::Mutex::new((None, None)));
    let out = found.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(0);
    builder.max_branches = 1_000_000; // one thread, many atomic operations
    builder.check(move || {
        let mut found = out.lock().unwrap();
        for key in 2..64 {
            if found.0.is_some() && found.1.is_some() {
                break;
            }
            let l = two_idle_keys();
            l.try_acquire(&key, at(T0 + 5 * T)).unwrap();
            match [1, 3].map(|k| l.available(&k, at(T0 + 5 * T))) {
                [3, 2] => found.0 = found.0.or(Some(key)),
                [2, 3] => found.1 = found.1.or(Some(key)),
                other => panic!("key {key}: {other:?}"),
            }
        }
    });
    let (evicts_3, evicts_1) = *found.lock().unwrap();
    (evicts_3.unwrap(), evicts_1.unwrap())
}

/// (c2) Two slots, keys 1 and 3 both idle. Thread A acquires key 1 while
/// thread B inserts a new key, which evicts one idle key; run once with a
/// new key that would evict key 3 and once with one that would evict
/// key 1 (so A's registration on key 1 races B's eviction attempt on it).
/// Whatever the interleaving: both admitted; the new key present and
/// charged once; key 3 gone; key 1 either kept (tier 1, charged once,
/// 1 eviction) or evicted by B and re-inserted by A in key 3's slot
/// (tier 0, charged once, 2 evictions) — never charged to another key;
/// `keys == 2`; and the whole outcome equals one of the two sequential
/// executions (run here on fresh limiters, single-threaded).
#[test]
fn keyed_insert_evict_race_two_slots() {
    let (evicts_3, evicts_1) = new_keys_for_c2();
    for key_b in [evicts_3, evicts_1] {
        let name = format!("keyed_insert_evict_race_two_slots (new key {key_b})");
        // Which of the two end states (1 or 2 evictions) were reached.
        let reached = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let seen = reached.clone();
        check(&name, 3, move || {
            let now = T0 + 5 * T;
            let limiter = Arc::new(two_idle_keys());
            let la = limiter.clone();
            let a = thread::spawn(move || la.try_acquire(&1, at(now)));
            let lb = limiter.clone();
            let b = thread::spawn(move || lb.try_acquire(&key_b, at(now)));
            let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
            let got = snapshot_c2(&limiter, key_b, ra, rb, now);

            assert_eq!((got.a, got.b), (Ok(()), Ok(())), "{got:#?}");
            let m = got.metrics;
            assert_eq!(
                (m.allowed, m.limited, m.table_full, m.keys),
                (4, 0, 0, 2),
                "{got:#?}"
            );
            seen[(m.evictions as usize).clamp(1, 2) - 1].fetch_add(1, Relaxed);
            match m.evictions {
                1 => assert_eq!(got.available, [2, 1, 2], "key 1 kept: {got:#?}"),
                2 => assert_eq!(got.available, [1, 1, 2], "key 1 re-inserted: {got:#?}"),
                _ => panic!("{got:#?}"),
            }

            let seq_ab = {
                let l = two_idle_keys();
                let a = l.try_acquire(&1, at(now));
                let b = l.try_acquire(&key_b, at(now));
                snapshot_c2(&l, key_b, a, b, now)
            };
            let seq_ba = {
                let l = two_idle_keys();
                let b = l.try_acquire(&key_b, at(now));
                let a = l.try_acquire(&1, at(now));
                snapshot_c2(&l, key_b, a, b, now)
            };
            assert!(
                got == seq_ab || got == seq_ba,
                "{got:#?}\nneither A;B {seq_ab:#?}\nnor B;A {seq_ba:#?}"
            );
        });
        // Coverage: with the key-1-first layout both end states occur (A
        // registered first, or B evicted key 1 first); otherwise only one.
        let reached = reached.each_ref().map(|r| r.load(Relaxed) > 0);
        let expected = if key_b == evicts_1 {
            [true, true]
        } else {
            [true, false]
        };
        assert_eq!(reached, expected, "new key {key_b}");
    }
}

/// (c3) One slot, idle key 1; A acquires key 1 *twice* (so it stays
/// registered across two lock-free passes) while B inserts key 2. A
/// registered key is never evicted: if A's first call was admitted, key 1
/// is busy from then on and B is refused; if B evicted key 1 first, both of
/// A's calls are TableFull. Never a mix where A's second token lands after
/// key 1 was evicted.
#[test]
fn keyed_insert_evict_race_repeated_acquire() {
    check("keyed_insert_evict_race_repeated_acquire", 3, || {
        let now = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        let la = limiter.clone();
        let a = thread::spawn(move || [la.try_acquire(&1, at(now)), la.try_acquire(&1, at(now))]);
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        let avail = [1, 2].map(|k| limiter.available(&k, at(now)));
        let m = limiter.metrics();
        let full = Err(KeyedError::TableFull);
        let ok = (ra, rb, avail, m);
        let a_first = ([Ok(()), Ok(())], full, [0, 2], metrics(3, 1, 0, 1, 1));
        let b_first = ([full, full], Ok(()), [2, 1], metrics(2, 2, 1, 2, 1));
        assert!(ok == a_first || ok == b_first, "{ok:#?}");
    });
}

/// (c4) One slot, key 1 drained at T0 and idle again at `now`. Both
/// threads first-touch the same new key 2 at `now` (evicting key 1): A
/// asks for 2 tokens, B for 1, burst 2. A caller that registers on the
/// slot right after it is published must see the new key's fresh bucket
/// and its charge must survive (`fill` resets the arrival time *before*
/// publishing the state word): exactly the two sequential outcomes, never
/// 3 tokens admitted for key 2.
#[test]
fn keyed_new_key_published_with_fresh_bucket() {
    check("keyed_new_key_published_with_fresh_bucket", 3, || {
        let now = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire_n(&1, 2, at(T0)).unwrap();
        let la = limiter.clone();
        let a = thread::spawn(move || la.try_acquire_n(&2, 2, at(now)));
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
        let got = (
            a.join().unwrap(),
            b.join().unwrap(),
            [1, 2].map(|k| limiter.available(&k, at(now))),
            limiter.metrics(),
        );
        let a_then_b = (Ok(()), Err(LIMITED_1S), [2, 0], metrics(2, 1, 1, 0, 1));
        let b_then_a = (Err(LIMITED_1S), Ok(()), [2, 1], metrics(2, 1, 1, 0, 1));
        assert!(got == a_then_b || got == b_then_a, "{got:#?}");
    });
}

/// Two keys for the eviction-mark models: `(sharing, apart)`, the first
/// with key 1's eviction mark, the first with another (marks are picked by
/// fingerprint bits, so this depends on the hash). Found by a
/// single-threaded loom run: once key 1, drained at T0, is evicted, an
/// absent key reads 0 tokens at T0 if it shares key 1's mark, 2 if not.
fn keys_by_mark_of_key_1() -> (u32, u32) {
    let found = std::sync::Arc::new(std::sync::Mutex::new((None, None)));
    let out = found.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(0);
    builder.max_branches = 1_000_000; // one thread, many atomic operations
    builder.check(move || {
        let l: Keyed<1, 1> =
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range");
        l.try_acquire_n(&1, 2, at(T0)).unwrap();
        l.try_acquire(&0, at(T0 + 5 * T)).unwrap(); // evicts key 1
        let with = |tokens| (2..64).find(|k| l.available(k, at(T0)) == tokens);
        *out.lock().unwrap() = (with(0), with(2));
    });
    let (sharing, apart) = *found.lock().unwrap();
    (sharing.unwrap(), apart.unwrap())
}

/// (c5) One slot, key 1 drained at T0 (arrival time T0+2s), idle at
/// `now_b` = T0+5s. B inserts key 2 at `now_b` (evicting key 1); A, whose
/// clock is behind (T0), acquires key 2. Key 2's decision must be made on
/// key 2's bucket — fresh, or charged by B at `now_b` — never on key 1's
/// stale arrival time (which would refuse A with a 1 s retry): A is
/// `TableFull` (before B: key 1 busy at T0), refused with a 5 s retry
/// (after B's charge), or admitted (registered between B's publish and
/// B's charge: a fresh bucket; fine, two tokens fit the burst). "Key 2"
/// is a key whose eviction mark is not key 1's: one sharing it would
/// rightly start from key 1's mark, as (c6) shows.
#[test]
fn keyed_evicted_bucket_never_seen_by_new_key() {
    let key2 = keys_by_mark_of_key_1().1;
    let name = format!("keyed_evicted_bucket_never_seen_by_new_key (key {key2})");
    check(&name, 3, move || {
        let now_b = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire_n(&1, 2, at(T0)).unwrap();
        let la = limiter.clone();
        let a = thread::spawn(move || la.try_acquire(&key2, at(T0)));
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&key2, at(now_b)));
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(rb, Ok(()), "B always inserts key 2 (key 1 idle at now_b)");
        let after_b = KeyedError::RateLimited(fusebox::bucket::RateLimited {
            retry_after: Duration::from_micros(5 * T),
        });
        let m = limiter.metrics();
        match ra {
            Err(KeyedError::TableFull) => {
                assert_eq!(m, metrics(2, 1, 1, 1, 1));
                assert_eq!(limiter.available(&key2, at(now_b)), 1);
            }
            Err(e) if e == after_b => {
                assert_eq!(m, metrics(2, 1, 1, 0, 1));
                assert_eq!(limiter.available(&key2, at(now_b)), 1);
            }
            Ok(()) => {
                assert_eq!(m, metrics(3, 0, 1, 0, 1));
                // A at T0 (arrival T0+1s), then B at now_b: max(T0+1s, now_b) + 1s.
                assert_eq!(limiter.available(&key2, at(now_b)), 1);
            }
            Err(e) => panic!("A decided on the wrong bucket: {e:?}"),
        }
        assert_eq!(limiter.available(&1, at(now_b)), 2, "key 1 evicted");
    });
}

/// (c6) An eviction racing a stale-clock return of the evicted key (issue
/// 10, 2b). One slot, burst 1: key 1 charged at T0 (full again at T0+T).
/// B, at T0+T, takes a token for another key: its insertion evicts key 1
/// (idle at B's `now`) and charges B's key; or, while A is pinned on key
/// 1, B finds no idle slot (`TableFull`). A, whose clock is T/2 behind
/// B's, takes key 1. To A's clock key 1 was never full again, so A is
/// refused whatever the interleaving: rate limited for T/2 (key 1 still
/// there) or `TableFull` (B's key, charged, is busy to A; from key 1's
/// eviction mark or not). Never admitted: that would be a second token
/// within T/2 with burst 1. Afterwards key 1 reads 0 tokens at A's `now`
/// and 1 at T0+T, whether it is in the table or not.
///
/// Run with B's key sharing key 1's mark and with one apart from it; both
/// ways A before B (rate limited, then B evicts key 1) and A after B
/// (`TableFull`) are reached (coverage asserted). B asked for one token:
/// a request for more than the burst touches nothing (it once inserted
/// its key, uncharged, which this model used to reach an eviction).
#[test]
fn keyed_eviction_races_stale_return_of_evicted_key() {
    let (sharing, apart) = keys_by_mark_of_key_1();
    for key_b in [sharing, apart] {
        let name = format!("keyed_eviction_races_stale_return_of_evicted_key (key {key_b})");
        // Reached: A rate limited and B admitted (A first), A TableFull.
        let reached = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let seen = reached.clone();
        check(&name, 3, move || {
            let (now_a, now_b) = (T0 + T / 2, T0 + T);
            let limiter: Arc<Keyed<1, 1>> = Arc::new(
                KeyedLimiter::new(quota(1), FullPolicy::Reject)
                    .expect("quota within the keyed range"),
            );
            limiter.try_acquire(&1, at(T0)).unwrap();
            let la = limiter.clone();
            let a = thread::spawn(move || la.try_acquire(&1, at(now_a)));
            let lb = limiter.clone();
            let b = thread::spawn(move || lb.try_acquire(&key_b, at(now_b)));
            let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
            let half = Err(KeyedError::RateLimited(fusebox::bucket::RateLimited {
                retry_after: Duration::from_micros(T / 2),
            }));
            let full = Err(KeyedError::TableFull);
            assert!(ra == half || ra == full, "key 1 admitted again: {ra:?}");
            assert!(rb == Ok(()) || (rb == full && ra == half), "{ra:?}, {rb:?}");
            let m = limiter.metrics();
            let admitted = u64::from(rb.is_ok());
            assert_eq!(
                (m.allowed, m.limited, m.keys),
                (1 + admitted, 2 - admitted, 1),
                "{m:?}"
            );
            assert_eq!(m.evictions, admitted, "{m:?}");
            if ra == half && rb.is_ok() {
                seen[0].fetch_add(1, Relaxed);
            }
            if ra == full {
                seen[1].fetch_add(1, Relaxed);
            }
            assert_eq!(limiter.available(&1, at(now_a)), 0);
            assert_eq!(limiter.available(&1, at(now_b)), 1);
        });
        let reached = reached.each_ref().map(|r| r.load(Relaxed) > 0);
        assert_eq!(reached, [true, true], "key {key_b}");
    }
}

/// (d) FullPolicy::Reject, two slots, both keys busy (charged at `now`).
/// Two threads bring new keys while a third charges an existing key (so
/// eviction attempts race a registration): the new keys are refused with
/// `TableFull` — never admitted, never an eviction — and the existing key
/// is charged exactly once.
#[test]
fn keyed_reject_when_full() {
    check("keyed_reject_when_full", 2, || {
        let now = T0;
        let limiter: Arc<Keyed<2, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(now)).unwrap();
        limiter.try_acquire(&3, at(now)).unwrap();
        let spawn = |key: u32| {
            let l = limiter.clone();
            thread::spawn(move || l.try_acquire(&key, at(now)))
        };
        let (h10, h11, h1) = (spawn(10), spawn(11), spawn(1));
        let (r10, r11, r1) = (h10.join().unwrap(), h11.join().unwrap(), h1.join().unwrap());
        assert_eq!(r10, Err(KeyedError::TableFull));
        assert_eq!(r11, Err(KeyedError::TableFull));
        assert_eq!(r1, Ok(()));
        assert_eq!(limiter.metrics(), metrics(3, 2, 0, 2, 2));
        let avail = [1, 3, 10, 11].map(|k| limiter.available(&k, at(now)));
        assert_eq!(avail, [0, 1, 2, 2]);
    });
}

/// (d″) Reading a busy key while a new key probes the full table. One
/// slot, key 1 busy (both tokens taken at `now`), so it can never be
/// evicted. Thread B brings key 2 (TableFull); thread A reads
/// `available(&1, now)`. Key 1 is in the table with no token left at every
/// point of every interleaving, so the only correct answer is 0 (and B's
/// only correct result TableFull).
#[test]
fn keyed_available_of_busy_key_during_eviction_check() {
    check(
        "keyed_available_of_busy_key_during_eviction_check",
        3,
        || {
            let now = T0;
            let limiter: Arc<Keyed<1, 1>> = Arc::new(
                KeyedLimiter::new(quota(2), FullPolicy::Reject)
                    .expect("quota within the keyed range"),
            );
            limiter.try_acquire_n(&1, 2, at(now)).unwrap();
            let la = limiter.clone();
            let a = thread::spawn(move || la.available(&1, at(now)));
            let lb = limiter.clone();
            let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
            let (avail, rb) = (a.join().unwrap(), b.join().unwrap());
            assert_eq!(rb, Err(KeyedError::TableFull));
            assert_eq!(limiter.metrics(), metrics(1, 1, 0, 1, 1));
            assert_eq!(
                avail, 0,
                "available(&1) read {avail} while key 1 was present with 0 tokens"
            );
        },
    );
}

/// (h) `available` of a key being evicted takes no lock, and still never
/// reads it fuller than it left. One slot, burst 2: key 1 drained at T0
/// (full again at T0+2T). B brings key 2 at T0+2T, evicting key 1 (mark
/// T0+2T) unless A's read has key 1 pinned at that moment (then
/// `TableFull`, as in (f)); A, whose clock is T behind B's, reads
/// `available(&1)`. At A's `now` key 1 has 1 token, in its slot (before
/// the eviction) or from its mark (after): 1 in every interleaving.
/// Reading 2 would mean A missed the key in its slot but read the mark
/// from before the eviction (an eviction that raised the mark only after
/// locking the slot, or a mark not ordered before the slot's new state).
/// Both of B's outcomes are reached.
#[test]
fn keyed_available_of_evicted_key_reads_its_mark() {
    let reached = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let seen = reached.clone();
    check(
        "keyed_available_of_evicted_key_reads_its_mark",
        3,
        move || {
            let limiter: Arc<Keyed<1, 1>> = Arc::new(
                KeyedLimiter::new(quota(2), FullPolicy::Reject)
                    .expect("quota within the keyed range"),
            );
            limiter.try_acquire_n(&1, 2, at(T0)).unwrap();
            let la = limiter.clone();
            let a = thread::spawn(move || la.available(&1, at(T0 + T)));
            let lb = limiter.clone();
            let b = thread::spawn(move || lb.try_acquire(&2, at(T0 + 2 * T)));
            let (avail, rb) = (a.join().unwrap(), b.join().unwrap());
            assert_eq!(avail, 1, "key 1 read fuller than it left ({rb:?})");
            match rb {
                Ok(()) => assert_eq!(limiter.metrics(), metrics(2, 0, 1, 0, 1)),
                Err(KeyedError::TableFull) => {
                    assert_eq!(limiter.metrics(), metrics(1, 1, 0, 1, 1));
                }
                Err(e) => panic!("{e:?}"),
            }
            seen[usize::from(rb.is_err())].fetch_add(1, Relaxed);
            assert_eq!(limiter.available(&1, at(T0 + T)), 1);
        },
    );
    let reached = reached.each_ref().map(|r| r.load(Relaxed) > 0);
    assert_eq!(
        reached,
        [true, true],
        "evicted, and TableFull under A's pin"
    );
}

/// (d') Both slots busy, two new keys race, no existing-key traffic, bound
/// 3: both TableFull, nothing admitted, nothing evicted, buckets untouched.
#[test]
fn keyed_reject_when_full_two_new_keys() {
    check("keyed_reject_when_full_two_new_keys", 3, || {
        let now = T0 + T / 2;
        let limiter: Arc<Keyed<2, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        limiter.try_acquire(&3, at(T0)).unwrap();
        let spawn = |key: u32| {
            let l = limiter.clone();
            thread::spawn(move || l.try_acquire(&key, at(now)))
        };
        let (h10, h11) = (spawn(10), spawn(11));
        assert_eq!(h10.join().unwrap(), Err(KeyedError::TableFull));
        assert_eq!(h11.join().unwrap(), Err(KeyedError::TableFull));
        assert_eq!(limiter.metrics(), metrics(2, 2, 0, 2, 2));
        // Half a token back since T0: still 1 whole token each.
        let avail = [1, 3, 10, 11].map(|k| limiter.available(&k, at(now)));
        assert_eq!(avail, [1, 1, 2, 2]);
    });
}

/// (d‴) As (d'), under `FullPolicy::Overflow` with a shared bucket of
/// burst 1: the two new keys share that one token — exactly one admitted,
/// the other refused with a one-interval retry — never an unlimited pass
/// and never a slot.
#[test]
fn keyed_overflow_when_full_is_shared_and_limited() {
    check("keyed_overflow_when_full_is_shared_and_limited", 3, || {
        let now = T0 + T / 2;
        let limiter: Arc<Keyed<2, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Overflow(quota(1)))
                .expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        limiter.try_acquire(&3, at(T0)).unwrap();
        let spawn = |key: u32| {
            let l = limiter.clone();
            thread::spawn(move || l.try_acquire(&key, at(now)))
        };
        let (h10, h11) = (spawn(10), spawn(11));
        let mut got = [h10.join().unwrap(), h11.join().unwrap()];
        got.sort_by_key(Result::is_ok);
        assert_eq!(got, [Err(LIMITED_1S), Ok(())]);
        assert_eq!(limiter.metrics(), metrics(3, 1, 0, 0, 2));
        let avail = [1, 3].map(|k| limiter.available(&k, at(now)));
        assert_eq!(avail, [1, 1], "the keys' own buckets untouched");
    });
}

/// (e) Counting admissions in the slot. Under loom a slot folds its
/// pending admissions into the global counter from 2 on, so these runs
/// cross the fold. One slot, key 1 inserted (counted globally) and charged
/// once lock-free (1 pending in the slot).
///
/// * Burst 5: A takes key 1 twice, B once, all admitted; a fold races the
///   other thread's charging CAS, which unpins and counts in one write (a
///   fold that lost it would also leave a phantom pin for ever).
/// * Burst 4: both take it twice: exactly 3 of the 4 admitted.
///
/// At quiescence `metrics().allowed` is exactly the real admissions.
#[test]
fn keyed_counter_folds_exactly() {
    for (burst, calls_b) in [(5, 1), (4, 2)] {
        let name = format!("keyed_counter_folds_exactly (burst {burst})");
        check(&name, 3, move || {
            let limiter: Arc<Keyed<1, 1>> = Arc::new(
                KeyedLimiter::new(quota(burst), FullPolicy::Reject)
                    .expect("quota within the keyed range"),
            );
            limiter.try_acquire(&1, at(T0)).unwrap();
            limiter.try_acquire(&1, at(T0)).unwrap();
            let spawn = |l: &Arc<Keyed<1, 1>>, calls: usize| {
                let l = l.clone();
                thread::spawn(move || {
                    (0..calls)
                        .map(|_| l.try_acquire(&1, at(T0)))
                        .collect::<Vec<_>>()
                })
            };
            let (ha, hb) = (spawn(&limiter, 2), spawn(&limiter, calls_b));
            let mut all = ha.join().unwrap();
            all.extend(hb.join().unwrap());
            let admitted = all.iter().filter(|r| r.is_ok()).count() as u64;
            assert_eq!(admitted, u64::from(burst) - 2, "{all:?}");
            assert!(
                all.iter().all(|r| r.is_ok() || *r == Err(LIMITED_1S)),
                "{all:?}"
            );
            let refused = all.len() as u64 - admitted;
            assert_eq!(
                limiter.metrics(),
                metrics(u64::from(burst), refused, 0, 0, 1)
            );
            assert_eq!(limiter.available(&1, at(T0)), 0);
            // No phantom caller left registered: key 1, idle again, can be
            // evicted.
            let idle = at(T0 + 10 * T);
            limiter.try_acquire(&2, idle).unwrap();
            assert_eq!(
                limiter.metrics(),
                metrics(u64::from(burst) + 1, refused, 1, 0, 1)
            );
        });
    }
}

/// (e') Eviction racing a charge and a fold. One slot, burst 3: key 1
/// inserted at T0 (counted globally) and charged again lock-free (1
/// admission pending in the slot), idle again at `now`. A takes key 1
/// twice at `now` (its second registration folds the slot's count) while
/// B brings key 2 (evicting key 1 if idle, which folds the remainder).
/// Exactly the sequential outcomes, counters included: A first (key 1
/// busy, B `TableFull`), or B first (key 1 evicted, A `TableFull` twice).
/// No admission is lost or counted twice by the eviction.
#[test]
fn keyed_eviction_races_charge_and_fold() {
    check("keyed_eviction_races_charge_and_fold", 3, || {
        let now = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(3), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        limiter.try_acquire(&1, at(T0)).unwrap();
        assert_eq!(limiter.metrics(), metrics(2, 0, 0, 0, 1));
        let la = limiter.clone();
        let a = thread::spawn(move || [la.try_acquire(&1, at(now)), la.try_acquire(&1, at(now))]);
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
        let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
        let got = (
            ra,
            rb,
            [1, 2].map(|k| limiter.available(&k, at(now))),
            limiter.metrics(),
        );
        let full = Err(KeyedError::TableFull);
        let a_first = ([Ok(()), Ok(())], full, [1, 3], metrics(4, 1, 0, 1, 1));
        let b_first = ([full, full], Ok(()), [3, 2], metrics(3, 2, 1, 2, 1));
        assert!(got == a_first || got == b_first, "{got:#?}");
    });
}

/// (f) A pin with no charge racing an eviction (64-bit targets pin on the
/// bucket word; Cortex-M registers on the state word). One slot, key 1
/// idle at `now`, burst 2. A asks key 1 for 3 tokens (over capacity: it
/// pins, compares the key, and only unpins); B brings key 2. B evicts
/// key 1 only when A is not pinned: before A (A then finds key 1 absent,
/// and is refused as over capacity before any slot is sought) or after A.
/// While A is pinned, B's lock fails: TableFull. Afterwards no pin is
/// left behind: the key in the slot, idle again, is evicted by key 3.
#[test]
fn keyed_pin_blocks_eviction() {
    check("keyed_pin_blocks_eviction", 3, || {
        let now = T0 + 5 * T;
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(2), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        let la = limiter.clone();
        let a = thread::spawn(move || la.try_acquire_n(&1, 3, at(now)));
        let lb = limiter.clone();
        let b = thread::spawn(move || lb.try_acquire(&2, at(now)));
        let got = (a.join().unwrap(), b.join().unwrap(), limiter.metrics());
        let over = Err(KeyedError::InsufficientCapacity(
            fusebox::bucket::InsufficientCapacity {
                requested: 3,
                burst: 2,
            },
        ));
        let full = Err(KeyedError::TableFull);
        // B evicting key 1 before or after A: the same outcome.
        let b_evicts = (over, Ok(()), metrics(2, 1, 1, 0, 1));
        let b_during_a = (over, full, metrics(1, 2, 0, 1, 1));
        assert!(got == b_evicts || got == b_during_a, "{got:#?}");
        let evictions = got.2.evictions;
        limiter.try_acquire(&3, at(now + 10 * T)).unwrap();
        assert_eq!(limiter.metrics().evictions, evictions + 1, "a pin leaked");
    });
}

/// (g) Charges that unpin and count in one CAS, contended. One slot, key 1
/// (burst 4) inserted and charged once at T0 (one admission pending; the
/// pin after the next admission folds under loom). Three threads take key 1 once each at
/// T0: exactly two admitted, the third refused with a one-interval retry;
/// `metrics().allowed` exact; no pin left (key 1 evicted once idle).
#[test]
fn keyed_charge_and_unpin_exact() {
    check("keyed_charge_and_unpin_exact", 2, || {
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(4), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        limiter.try_acquire(&1, at(T0)).unwrap();
        let spawn = || {
            let l = limiter.clone();
            thread::spawn(move || l.try_acquire(&1, at(T0)))
        };
        let hs = [spawn(), spawn(), spawn()];
        let mut got = hs.map(|h| h.join().unwrap());
        got.sort_by_key(Result::is_ok);
        assert_eq!(got, [Err(LIMITED_1S), Ok(()), Ok(())]);
        assert_eq!(limiter.metrics(), metrics(4, 1, 0, 0, 1));
        assert_eq!(limiter.available(&1, at(T0)), 0);
        limiter.try_acquire(&2, at(T0 + 10 * T)).unwrap();
        assert_eq!(limiter.metrics(), metrics(5, 1, 1, 0, 1));
    });
}

// ---------------------------------------------------------------------------
// KeyedLimiter::set_quota: a tier's quota changed while decisions go on
// ---------------------------------------------------------------------------

/// Preemption bound of the `set_quota` models: 3 on the 64-bit layout
/// (~10 s each), 2 on the 32-bit one (`--cfg fusebox_narrow_words`), whose
/// three read-modify-writes per call take a bound of 3 past a minute.
const REQUOTA_BOUND: usize = if cfg!(fusebox_narrow_words) { 2 } else { 3 };

/// Key 1 of a one-tier, two-slot limiter under `quota(burst)`, charged
/// `taken` tokens at `T0`; then two threads take one token each at `T0`
/// while a third changes the tier to `quota(to)` at `T0`. Returns the
/// results of the two takes and the quota the change replaced.
fn race_keyed_change(
    burst: u32,
    taken: u32,
    to: u32,
) -> (Arc<Keyed<2, 1>>, Vec<Result<(), KeyedError>>) {
    let limiter: Arc<Keyed<2, 1>> = Arc::new(
        KeyedLimiter::new(quota(burst), FullPolicy::Reject).expect("quota within the keyed range"),
    );
    limiter.try_acquire_n(&1, taken, at(T0)).unwrap();
    let take = || {
        let l = limiter.clone();
        thread::spawn(move || l.try_acquire(&1, at(T0)))
    };
    let (a, b) = (take(), take());
    let l = limiter.clone();
    let change = thread::spawn(move || l.set_quota(0, quota(to), at(T0)));
    let results = vec![a.join().unwrap(), b.join().unwrap()];
    assert_eq!(change.join().unwrap(), Ok(quota(burst)));
    assert_eq!(limiter.quota(0), Some(quota(to)));
    for r in &results {
        assert!(*r == Ok(()) || *r == Err(LIMITED_1S), "{results:?}");
    }
    (limiter, results)
}

/// (kr1) A raise (burst 2 → 3, same rate) races two decisions on a key
/// with one token left at `T0`: the raise grants no token, so exactly one
/// is admitted (never more than the larger quota allows from that state),
/// the key is empty at `T0` and refills to the new burst at the new rate.
#[test]
fn keyed_requota_raising_races_two_decisions() {
    check(
        "keyed_requota_raising_races_two_decisions",
        REQUOTA_BOUND,
        || {
            let (limiter, results) = race_keyed_change(2, 1, 3);
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(admitted, 1, "{results:?}");
            assert_eq!(limiter.available(&1, at(T0)), 0);
            assert_eq!(limiter.available(&1, at(T0 + T)), 1);
            assert_eq!(limiter.available(&1, at(T0 + 3 * T)), 3);
            assert_eq!(limiter.metrics(), metrics(2, 1, 0, 0, 1));
        },
    );
}

/// (kr2) A cut (burst 3 → 1) races two decisions on a key with two tokens
/// left at `T0`: one or two admitted (two only if a decision came before
/// the cut), never more than the larger quota allows (2); the key is empty
/// at `T0` either way, and then holds at most the new burst.
#[test]
fn keyed_requota_lowering_races_two_decisions() {
    check(
        "keyed_requota_lowering_races_two_decisions",
        REQUOTA_BOUND,
        || {
            let (limiter, results) = race_keyed_change(3, 1, 1);
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            assert!((1..=2).contains(&admitted), "{results:?}");
            assert_eq!(limiter.available(&1, at(T0)), 0);
            assert_eq!(limiter.available(&1, at(T0 + 5 * T)), 1);
            assert_eq!(limiter.metrics().allowed, 1 + admitted as u64);
        },
    );
}

/// (kr3) Two changes in a row (burst 2 → 4 → 1) race two decisions of one
/// thread on a key with one token left at `T0`, so a decision can load its
/// word under the first quota and read that quota's slot while the second
/// change rewrites it: never acted on. Whatever the interleaving, at most
/// the one token left at `T0` is admitted then, and one more a whole
/// interval later (the rate is one per `T` under every quota).
#[test]
fn keyed_requota_two_changes_race_decisions() {
    check(
        "keyed_requota_two_changes_race_decisions",
        REQUOTA_BOUND,
        || {
            let limiter: Arc<Keyed<2, 1>> = Arc::new(
                KeyedLimiter::new(quota(2), FullPolicy::Reject)
                    .expect("quota within the keyed range"),
            );
            limiter.try_acquire(&1, at(T0)).unwrap();
            let l = limiter.clone();
            let decider =
                thread::spawn(move || [l.try_acquire(&1, at(T0)), l.try_acquire(&1, at(T0 + T))]);
            let l = limiter.clone();
            let changer = thread::spawn(move || {
                l.set_quota(0, quota(4), at(T0)).unwrap();
                l.set_quota(0, quota(1), at(T0)).unwrap();
            });
            let got = decider.join().unwrap();
            changer.join().unwrap();
            for r in &got {
                assert!(*r == Ok(()) || *r == Err(LIMITED_1S), "{got:?}");
            }
            // The first finds the token left (the changes keep it: 1 ≤ every
            // burst), the second one interval's refill.
            assert_eq!(got, [Ok(()), Ok(())]);
            assert_eq!(limiter.available(&1, at(T0 + T)), 0);
            assert_eq!(limiter.quota(0), Some(quota(1)));
        },
    );
}

/// (m1) `metrics` read while a key's admissions are folded into the
/// global counter (a batch of 2 under loom): `allowed` never counts an
/// admission twice. One key admitted once (counted globally at its
/// insertion), then three more times by another thread (a fold at the
/// third); a concurrent read finds at most the 4 made, and the read
/// after the join exactly 4. With the slots read before the global
/// counter, a batch folded between the two reads was counted in both
/// (6), and a scraper's next read went back.
#[test]
fn keyed_metrics_never_count_a_folded_batch_twice() {
    check("keyed_metrics_never_count_a_folded_batch_twice", 3, || {
        let limiter: Arc<Keyed<1, 1>> = Arc::new(
            KeyedLimiter::new(quota(8), FullPolicy::Reject).expect("quota within the keyed range"),
        );
        limiter.try_acquire(&1, at(T0)).unwrap();
        let la = limiter.clone();
        let a = thread::spawn(move || {
            for _ in 0..3 {
                la.try_acquire(&1, at(T0)).unwrap();
            }
        });
        let during = limiter.metrics().allowed;
        a.join().unwrap();
        assert!((1..=4).contains(&during), "allowed {during} of at most 4");
        assert_eq!(limiter.metrics().allowed, 4);
    });
}
