//! `EmbassyClock` at the tick rate of the build's embassy-time driver
//! (feature `embassy-time`; the rate is the driver's `tick-hz-*` feature,
//! chosen for a test run with e.g. `--features
//! embassy-time,embassy-time/tick-hz-32_768`): `now` is the driver's ticks
//! in whole microseconds, rounded down, never going backwards and
//! saturating at `Instant::MAX` like the rest of the crate's time
//! arithmetic, at any uptime the driver's `u64` of ticks can reach.
//!
//! The driver is this file's: a tick counter the test sets. embassy-time
//! resolves `_embassy_time_now` at link time, and its global clock is one
//! per test binary, so the whole check is one test.
#![cfg(feature = "embassy-time")]

use core::sync::atomic::{AtomicU64, Ordering};

use fusebox::{Clock, EmbassyClock, Instant};

static TICKS: AtomicU64 = AtomicU64::new(0);

/// The driver's clock: the ticks the test set. (Rust ABI: embassy-time
/// declares it `extern "Rust"`, as its `time_driver_impl!` defines it.)
#[allow(clippy::no_mangle_with_rust_abi)]
#[no_mangle]
fn _embassy_time_now() -> u64 {
    TICKS.load(Ordering::SeqCst)
}

/// No timers are used here.
#[allow(clippy::no_mangle_with_rust_abi)]
#[no_mangle]
fn _embassy_time_schedule_wake(_at: u64, _waker: &core::task::Waker) {}

/// `ticks` of the driver in µs as the contract reads: rounded down,
/// saturating at `u64::MAX`.
fn expected(ticks: u64) -> Instant {
    let hz = u128::from(embassy_time::TICK_HZ);
    let micros = u128::from(ticks) * 1_000_000 / hz;
    Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[test]
fn now_is_the_drivers_ticks_in_micros_at_any_uptime() {
    const YEAR_SECS: u64 = 365 * 24 * 3_600;
    let hz = embassy_time::TICK_HZ;
    // The tick count past which `ticks · (10⁶ / gcd)` leaves a u64: where
    // an unchecked conversion wraps (or panics with overflow checks).
    let gcd = {
        let (mut a, mut b) = (hz, 1_000_000u64);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let product_limit = u64::MAX / (1_000_000 / gcd);
    let mut ticks = vec![
        0,
        1,
        hz - 1,
        hz,
        hz.saturating_add(1),
        u64::from(u32::MAX),
        1 << 32,
        (1 << 32) + 1,
        product_limit - 1,
        product_limit,
        product_limit.saturating_add(1),
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    // Uptimes a device reaches: days to decades.
    for secs in [
        86_400,
        50 * 86_400,
        YEAR_SECS,
        3 * YEAR_SECS,
        10 * YEAR_SECS,
        40 * YEAR_SECS,
    ] {
        let at = secs.saturating_mul(hz);
        ticks.extend([at - 1, at, at + 1]);
    }
    ticks.sort_unstable();
    let mut previous = Instant::ZERO;
    for t in ticks {
        TICKS.store(t, Ordering::SeqCst);
        let now = EmbassyClock.now();
        assert_eq!(now, expected(t), "{t} ticks at {hz} Hz");
        assert!(now >= previous, "{t} ticks at {hz} Hz: the clock went back");
        previous = now;
    }

    // Sound-but-checked (review of time): a wait the core tells, slept with
    // embassy-time's `Duration::from_micros` (rounded up to ticks) from
    // the tick `now` was read at, ends at a reading no earlier than
    // `now + wait`, though `now` itself was rounded down.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = if i % 2 == 0 { x % (1 << 40) } else { x >> 8 };
        let wait = fusebox::Duration::from_micros(match i % 3 {
            0 => x % 2_000,
            1 => x % 10_000_000,
            _ => x % (1 << 32),
        });
        TICKS.store(start, Ordering::SeqCst);
        let now = EmbassyClock.now();
        let ticks = embassy_time::Duration::from_micros(wait.as_micros()).as_ticks();
        TICKS.store(start + ticks, Ordering::SeqCst);
        assert!(
            EmbassyClock.now() >= now + wait,
            "{start} ticks + {wait:?} at {hz} Hz ended early"
        );
    }
}
