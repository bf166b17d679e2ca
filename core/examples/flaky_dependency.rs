//! Drives a circuit breaker with a simulated flaky dependency on virtual
//! time and prints every transition and the final metrics.
//!
//! The dependency is healthy, then has an outage (every call fails), then
//! recovers slowly (calls are slow, then fast). Nothing sleeps: `now` is
//! advanced by hand, which is how the core is meant to be driven.
//!
//! ```text
//! cargo run --release -p fusebox --example flaky_dependency
//! ```

use fusebox::breaker::{Config, Outcome, State};
use fusebox::{CircuitBreaker, Duration, Instant};

/// What the simulated dependency does at a given virtual time.
fn dependency(at: Instant, rng: &mut u32) -> (Outcome, Duration) {
    // xorshift32: deterministic noise, so every run prints the same story.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 17;
    *rng ^= *rng << 5;
    let noise = *rng % 100;
    let secs = at.as_millis() / 1_000;
    match secs {
        // Healthy: 2 % errors, 5-25 ms.
        0..=9 => (
            if noise < 2 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            Duration::from_millis(5 + u64::from(noise) / 5),
        ),
        // Outage: everything fails fast.
        10..=24 => (Outcome::Failure, Duration::from_millis(2)),
        // Recovering: succeeds, but slowly at first.
        25..=34 => (Outcome::Success, Duration::from_millis(400)),
        _ => (Outcome::Success, Duration::from_millis(8)),
    }
}

fn main() -> Result<(), fusebox::breaker::ConfigError> {
    let config = Config::builder()
        .consecutive_failures(5)
        .failure_rate(50)
        .slow_call(Duration::from_millis(250), 80)
        .window(20)
        .minimum_calls(10)
        .open_for(Duration::from_secs(1))
        .max_open_for(Duration::from_secs(8))
        .half_open_permits(2)
        .close_after(3)
        .build()?;
    let breaker = CircuitBreaker::new(config);
    println!("config: {config:?}");
    println!(
        "size_of::<CircuitBreaker>() = {} bytes",
        core::mem::size_of::<CircuitBreaker>()
    );

    let mut rng = 0x2545_f491;
    let mut now = Instant::ZERO;
    let end = Instant::from_secs(45);
    let step = Duration::from_millis(50);
    let (mut attempted, mut rejected) = (0u32, 0u32);
    while now < end {
        attempted += 1;
        match breaker.try_acquire(now) {
            Ok(permit) => {
                if let Some(t) = permit.transition() {
                    println!("{:>9.3}s  {:?} -> {:?}", secs(t.at), t.from, t.to);
                }
                let (outcome, took) = dependency(now, &mut rng);
                let done = now + took;
                if let Some(t) = permit.record(outcome, done, took) {
                    println!(
                        "{:>9.3}s  {:?} -> {:?}   (after a {outcome:?} that took {took:?})",
                        secs(t.at),
                        t.from,
                        t.to
                    );
                }
            }
            Err(_) => rejected += 1,
        }
        now += step;
    }

    let m = breaker.metrics();
    println!();
    println!("final state: {:?}", breaker.state(now));
    println!("attempted {attempted}, rejected {rejected}");
    println!("metrics: {m:?}");
    println!("calls completed: {}", m.calls());
    assert_eq!(
        breaker.state(now),
        State::Closed,
        "the dependency recovered"
    );
    assert_eq!(m.rejected, u64::from(rejected));
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn secs(at: Instant) -> f64 {
    at.as_micros() as f64 / 1e6
}
