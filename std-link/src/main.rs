//! A server user's first program: the README's keyed-limiter example on
//! `StdClock`, built with nothing but `fusebox = { features = ["std"] }`.
//! `scripts/test.sh` runs it; it exits non-zero if a decision is wrong, and
//! it fails to link at all if the `std` feature stops providing the host's
//! critical section (`_critical_section_1_0_acquire`).

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Clock, StdClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_client: KeyedLimiter<u64, 64, 2> = KeyedLimiter::with_tiers(
        [Quota::per_second(10)?, Quota::per_second(100)?],
        FullPolicy::Reject,
    )?
    .with_tier_fn(|client| usize::from(*client < 100));
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
    let report = "std link: 2 passed, 0 failed";
    std::io::Write::write_all(&mut std::io::stdout(), format!("{report}\n").as_bytes())?;
    Ok(())
}
