//! Size probe: an empty firmware plus the pieces enabled by cargo features.
#![no_std]
#![no_main]

#[allow(unused_imports)]
use core::hint::black_box;
use cortex_m_rt::entry;
use fusebox::{Clock, EmbassyClock};
use fusebox_firmware as fw;

#[entry]
fn main() -> ! {
    let p = cortex_m::Peripherals::take().unwrap();
    fw::start_clock(p.SYST);
    let now = EmbassyClock.now();
    defmt::info!("size probe at {}", now);
    #[cfg(feature = "breaker")]
    {
        use fusebox::breaker::{Config, Outcome};
        use fusebox::{CircuitBreaker, Duration};
        const fn config() -> Config {
            let builder = Config::builder().open_for(Duration::from_millis(50));
            #[cfg(not(feature = "time-window"))]
            let builder = builder.consecutive_failures(3);
            // "3 failures in 8 s", four 2-second buckets.
            #[cfg(feature = "time-window")]
            let builder = builder
                .time_window(Duration::from_secs(8), 4)
                .failure_count(3);
            #[cfg(feature = "half-open-timeout")]
            let builder = builder.max_half_open(Duration::from_millis(200));
            match builder.build() {
                Ok(c) => c,
                Err(_) => panic!("config"),
            }
        }
        static B: CircuitBreaker = CircuitBreaker::new(config());
        if let Ok(p) = black_box(&B).try_acquire(now) {
            let o = if black_box(true) {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let _ = p.record(o, EmbassyClock.now(), Duration::ZERO);
        }
        defmt::info!("breaker {}", black_box(&B).state(now));
    }
    #[cfg(feature = "bucket")]
    {
        use fusebox::bucket::{Quota, TokenBucket};
        static T: TokenBucket = TokenBucket::new(match Quota::per_second(10) {
            Ok(q) => q,
            Err(_) => panic!("quota"),
        });
        defmt::info!("bucket {}", black_box(&T).try_acquire(now).is_ok());
    }
    #[cfg(feature = "lru")]
    {
        type Lru = fusebox::LruCache<u32, u32, 32>;
        // A `static` (counted in RAM), handed out once as `&'static mut`.
        let c: &'static mut Lru = cortex_m::singleton!(: Lru = Lru::new()).unwrap();
        for k in 0..black_box(40u32) {
            c.put(k, k * 2);
        }
        defmt::info!("lru {}", c.get(&black_box(39)).copied());
    }
    #[cfg(feature = "histogram")]
    {
        static H: fusebox::Histogram<{ fusebox::histogram::buckets_for(16_383) }> =
            fusebox::Histogram::new();
        black_box(&H).record(black_box(now.as_micros()));
        defmt::info!("p99 {}", black_box(&H).percentile(99.0).ok().flatten());
    }
    fw::exit(0)
}
