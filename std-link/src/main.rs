//! A server user's first program: the README's keyed-limiter example on
//! `StdClock`, built with nothing but `fusebox = { features = ["std"] }`.
//! `scripts/test.sh` runs it; it exits non-zero if a decision is wrong.
//! With `std` a `KeyedLimiter` locks per table and never enters the
//! `critical-section` crate's process-wide critical section: nothing here
//! provides that crate's implementation, so a call to it anywhere would
//! fail to link (`_critical_section_1_0_acquire`).

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::hash::RandomState;
use fusebox::{Clock, StdClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Large enough to overflow a 2 MiB stack if it were built on one.
    let mut per_client = KeyedLimiter::<u64, 131_072, 2, RandomState>::with_hasher_boxed(
        [Quota::per_second(10)?, Quota::per_second(100)?],
        FullPolicy::Reject,
        RandomState::new(),
    )?;
    per_client.set_tier_fn(|client| usize::from(*client < 100));
    let now = StdClock.now();
    let mut admitted = 0;
    for _ in 0..20 {
        match per_client.try_acquire(&4242, now) {
            Ok(()) => admitted += 1,
            Err(KeyedError::RateLimited(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    // Tier 0: 10 per second, burst 10 (the default burst is one second).
    if admitted != 10 {
        return Err(format!("admitted {admitted} of 20 at one instant, expected 10").into());
    }
    let premium = (0..200)
        .filter(|_| per_client.try_acquire(&7, now).is_ok())
        .count();
    if premium != 100 {
        return Err(format!("premium admitted {premium}, expected 100").into());
    }
    // New keys from several threads at once, each table locking alone.
    let inserted = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let l = &per_client;
                s.spawn(move || {
                    (0..1_000)
                        .filter(|i| l.try_acquire(&(1_000_000 + t * 1_000 + i), now).is_ok())
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum::<usize>()
    });
    if inserted != 4_000 || per_client.metrics().keys != 4_002 {
        return Err(format!("{inserted} new keys admitted, expected 4 000").into());
    }
    let report = "std link: 3 passed, 0 failed";
    std::io::Write::write_all(&mut std::io::stdout(), format!("{report}\n").as_bytes())?;
    Ok(())
}
