//! Rate-limit decisions on the mostly-admitted path. fusebox is measured
//! with `now` pre-read (no clock cost) and with `now` read from
//! `std::time::Instant` on every call; governor with its default clock
//! (quanta, read on every call) and with `FakeRelativeClock` (no clock
//! cost). Equal clock cost: fusebox pre-read vs governor fake clock, and
//! fusebox with `now` from quanta on every call vs governor's quanta clock.
//!
//! The keyed limiters hash with the same hasher: fusebox's default
//! (`hash::FixedState`, foldhash) is given to governor's dashmap too, so
//! that the rows compare the limiters, not SipHash (governor's default,
//! std's `RandomState`) against foldhash. governor with its default hasher
//! is a context row.
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant as StdInstant;

use criterion::Criterion;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::hash::FixedState;
use fusebox::{Instant, KeyedLimiter, TokenBucket};
use fusebox_benches::{fb_now, fb_quanta_now, note, pair, uniform_keys};
use governor::clock::FakeRelativeClock;
use governor::RateLimiter;

const RATE: u32 = 1_000_000_000;
const BURST: u32 = 4_000_000_000;
const KEYS: u64 = 1_000;
const LEN: usize = 1 << 16;

fn fb_quota() -> Quota {
    Quota::per_second(RATE)
        .and_then(|q| q.with_burst(BURST))
        .expect("quota")
}

fn gov_quota() -> governor::Quota {
    let nz = |n| NonZeroU32::new(n).expect("non-zero");
    governor::Quota::per_second(nz(RATE)).allow_burst(nz(BURST))
}

/// Runs `n` decisions, counting admissions into `admitted`.
fn decide(n: u64, admitted: &AtomicU64, mut f: impl FnMut(u64) -> bool) -> std::time::Duration {
    let t = StdInstant::now();
    let mut ok = 0;
    for i in 0..n {
        ok += u64::from(f(i));
    }
    let d = t.elapsed();
    admitted.fetch_add(ok, Relaxed);
    d
}

struct Admit(&'static str, AtomicU64, AtomicU64);
impl Admit {
    fn new(name: &'static str) -> Self {
        Self(name, AtomicU64::new(0), AtomicU64::new(0))
    }
    fn run(&self, n: u64, f: impl FnMut(u64) -> bool) -> std::time::Duration {
        self.2.fetch_add(n, Relaxed);
        decide(n, &self.1, f)
    }
}
impl Drop for Admit {
    #[allow(clippy::cast_precision_loss, reason = "a ratio")]
    fn drop(&mut self) {
        let total = self.2.load(Relaxed).max(1);
        note(
            &format!("admitted.{}", self.0),
            format!("{:.4}", self.1.load(Relaxed) as f64 / total as f64),
        );
    }
}

/// One `TokenBucket` against governor's direct limiter.
fn direct(c: &mut Criterion, fake: &FakeRelativeClock) {
    let start = StdInstant::now();
    // Opaque to the compiler, as a `now` read from a clock is.
    let pre = black_box(Instant::from_secs(1));
    let fb = TokenBucket::new(fb_quota());
    let gov_fake = RateLimiter::direct_with_clock(gov_quota(), fake.clone());
    let gov = RateLimiter::direct(gov_quota());
    let mut g = c.benchmark_group("bucket");
    {
        let a = Admit::new("bucket.fusebox_pre_read_now");
        g.bench_function("fusebox_pre_read_now", |b| {
            b.iter_custom(|n| {
                fb.reset();
                a.run(n, |_| black_box(&fb).try_acquire(pre).is_ok())
            });
        });
    }
    {
        let a = Admit::new("bucket.fusebox_std_now_per_call");
        g.bench_function("fusebox_std_now_per_call", |b| {
            b.iter_custom(|n| a.run(n, |_| black_box(&fb).try_acquire(fb_now(start)).is_ok()));
        });
    }
    let quanta = quanta::Clock::new();
    {
        let a = Admit::new("bucket.fusebox_quanta_now_per_call");
        g.bench_function("fusebox_quanta_now_per_call", |b| {
            b.iter_custom(|n| {
                a.run(n, |_| {
                    black_box(&fb).try_acquire(fb_quanta_now(&quanta)).is_ok()
                })
            });
        });
    }
    {
        let a = Admit::new("bucket.governor_fake_clock");
        g.bench_function("governor_fake_clock", |b| {
            b.iter_custom(|n| a.run(n, |_| black_box(&gov_fake).check().is_ok()));
        });
    }
    {
        let a = Admit::new("bucket.governor_quanta_clock");
        g.bench_function("governor_quanta_clock", |b| {
            b.iter_custom(|n| a.run(n, |_| black_box(&gov).check().is_ok()));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("bucket_2t");
    g.bench_function("fusebox_pre_read_now", |b| {
        b.iter_custom(|n| {
            fb.reset();
            pair(n, |_, n| {
                for _ in 0..n {
                    black_box(black_box(&fb).try_acquire(pre).is_ok());
                }
            })
        });
    });
    g.bench_function("governor_fake_clock", |b| {
        b.iter_custom(|n| {
            pair(n, |_, n| {
                for _ in 0..n {
                    black_box(black_box(&gov_fake).check().is_ok());
                }
            })
        });
    });
    g.finish();
    // The fake clock never moves and governor's bucket is never reset:
    // the 1-thread rows count their admissions, these do not. Its burst
    // (4e9) lasts the report's settings; longer ones could exhaust it
    // and time refusals instead. Say so rather than report them.
    assert!(
        gov_fake.check().is_ok(),
        "governor's fake-clock burst ran out: its bucket rows timed refusals"
    );
}

pub fn bench(c: &mut Criterion) {
    let start = StdInstant::now();
    // Opaque to the compiler, as a `now` read from a clock is.
    let pre = black_box(Instant::from_secs(1));
    let fake = FakeRelativeClock::default();
    direct(c, &fake);
    keyed(c, start, pre, &fake);
}

/// The keyed limiters, one thread and two.
#[allow(
    clippy::too_many_lines,
    reason = "the limiters are built once and shared by the one- and two-thread groups"
)]
fn keyed(c: &mut Criterion, start: StdInstant, pre: Instant, fake: &FakeRelativeClock) {
    let keys = uniform_keys(KEYS, LEN, 11);
    let key = |i: u64| &keys[i as usize & (LEN - 1)];
    let fbk = KeyedLimiter::<u64, 2048>::new_boxed(fb_quota(), FullPolicy::Reject)
        .expect("quota within the keyed range");
    let govk = RateLimiter::dashmap_with_clock_and_hasher(
        gov_quota(),
        governor::clock::QuantaClock::default(),
        FixedState::default(),
    );
    let govk_fake = RateLimiter::dashmap_with_clock_and_hasher(
        gov_quota(),
        fake.clone(),
        FixedState::default(),
    );
    let govk_fake_sip = RateLimiter::dashmap_with_clock(gov_quota(), fake.clone());
    for k in 0..KEYS {
        fbk.try_acquire(&k, pre).expect("fits");
        let _ = govk.check_key(&k);
        let _ = govk_fake.check_key(&k);
        let _ = govk_fake_sip.check_key(&k);
    }
    let mut g = c.benchmark_group("keyed");
    {
        let a = Admit::new("keyed.fusebox_pre_read_now");
        g.bench_function("fusebox_pre_read_now", |b| {
            b.iter_custom(|n| a.run(n, |i| fbk.try_acquire(key(i), pre).is_ok()));
        });
    }
    {
        let a = Admit::new("keyed.fusebox_std_now_per_call");
        g.bench_function("fusebox_std_now_per_call", |b| {
            b.iter_custom(|n| a.run(n, |i| fbk.try_acquire(key(i), fb_now(start)).is_ok()));
        });
    }
    let quanta = quanta::Clock::new();
    {
        let a = Admit::new("keyed.fusebox_quanta_now_per_call");
        g.bench_function("fusebox_quanta_now_per_call", |b| {
            b.iter_custom(|n| {
                a.run(n, |i| {
                    fbk.try_acquire(key(i), fb_quanta_now(&quanta)).is_ok()
                })
            });
        });
    }
    {
        let a = Admit::new("keyed.governor_fake_clock");
        g.bench_function("governor_fake_clock", |b| {
            b.iter_custom(|n| a.run(n, |i| govk_fake.check_key(key(i)).is_ok()));
        });
    }
    {
        let a = Admit::new("keyed.governor_fake_clock_default_hasher");
        g.bench_function("governor_fake_clock_default_hasher", |b| {
            b.iter_custom(|n| a.run(n, |i| govk_fake_sip.check_key(key(i)).is_ok()));
        });
    }
    {
        let a = Admit::new("keyed.governor_quanta_clock");
        g.bench_function("governor_quanta_clock", |b| {
            b.iter_custom(|n| a.run(n, |i| govk.check_key(key(i)).is_ok()));
        });
    }
    g.finish();

    // Two threads on the same 1 000 keys, half a stream apart (so mostly on
    // different keys at any moment): shared counters and lock words show.
    let mut g = c.benchmark_group("keyed_2t");
    let offset = |t: usize, i: u64| i + (t as u64) * (LEN as u64 / 2);
    g.bench_function("fusebox_pre_read_now", |b| {
        b.iter_custom(|n| {
            pair(n, |t, n| {
                for i in 0..n {
                    black_box(fbk.try_acquire(key(offset(t, i)), pre).is_ok());
                }
            })
        });
    });
    g.bench_function("governor_fake_clock", |b| {
        b.iter_custom(|n| {
            pair(n, |t, n| {
                for i in 0..n {
                    black_box(govk_fake.check_key(key(offset(t, i))).is_ok());
                }
            })
        });
    });
    // Both threads on one key: every call contends on that key's word
    // (fusebox: the pin and the charge; governor: the GCRA CAS).
    let hot = 7;
    g.bench_function("fusebox_one_hot_key", |b| {
        b.iter_custom(|n| {
            pair(n, |_, n| {
                for _ in 0..n {
                    black_box(fbk.try_acquire(black_box(&hot), pre).is_ok());
                }
            })
        });
    });
    g.bench_function("governor_one_hot_key", |b| {
        b.iter_custom(|n| {
            pair(n, |_, n| {
                for _ in 0..n {
                    black_box(govk_fake.check_key(black_box(&hot)).is_ok());
                }
            })
        });
    });
    g.finish();
}
