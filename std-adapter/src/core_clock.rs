//! One clock per core: every adapter built over one bucket, keyed limiter
//! or breaker without a clock of its own (a tower layer, a policy's `new`,
//! the registry's) reads the same [`TokioClock`].
//!
//! A core keeps its state in the times of the clock that drove it. A
//! [`TokioClock`] counts from its own origin (the moment it was made, so
//! that paused tokio time starts at zero in tests): two layers that each
//! made one, an hour apart, over one `Arc`'d core, read times an hour
//! apart, and the later one found the bucket an hour in its future (every
//! request refused for an hour) or the breaker opened in its future (its
//! requests let through). So the clock of an adapter over a core is the
//! one the first adapter over that core (still alive) took, or the last
//! one an adapter over it was given (`with_clock`: [`keep`]).
//!
//! The table holds a `Weak` per core, looked up by address at an
//! adapter's construction only (never per request), and drops the entries of cores
//! gone whenever it is consulted.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::TokioClock;

/// A core (while it lives) and the clock its layers read.
type Entry = (Weak<dyn Any + Send + Sync>, TokioClock);

/// The cores layers were built over, by address.
static CLOCKS: Mutex<Option<HashMap<usize, Entry>>> = Mutex::new(None);

/// The clock of the adapters over `core`: the one kept for it, or else
/// `clock`, kept for the next layers over it.
pub(crate) fn of<T: Any + Send + Sync>(core: &Arc<T>, clock: TokioClock) -> TokioClock {
    let mut table = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashMap::new);
    // A core gone frees its entry (and its `Weak`'s allocation), and its
    // address may be another core's now.
    table.retain(|_, (core, _)| core.strong_count() > 0);
    let address = Arc::as_ptr(core).cast::<()>().addr();
    let weak: Weak<T> = Arc::downgrade(core);
    let (_, kept) = table.entry(address).or_insert((weak, clock));
    *kept
}

/// Keeps `clock` as the clock of the adapters built over `core` from now
/// on: an adapter given a clock of its own (`with_clock`) reads it, and
/// so must the next ones over the same core. One lock, at the adapter's
/// construction only.
pub(crate) fn keep(core: &Arc<dyn Any + Send + Sync>, clock: TokioClock) {
    let mut table = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashMap::new);
    table.retain(|_, (core, _)| core.strong_count() > 0);
    let address = Arc::as_ptr(core).cast::<()>().addr();
    table.insert(address, (Arc::downgrade(core), clock));
}

/// [`keep`] for a core of a known type.
pub(crate) fn keep_for<T: Any + Send + Sync>(core: &Arc<T>, clock: TokioClock) {
    keep(&(Arc::clone(core) as Arc<dyn Any + Send + Sync>), clock);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_clock_over_a_live_core_is_kept() {
        let first = TokioClock::new();
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        let later = TokioClock::new();
        assert_ne!(first, later);
        let core = Arc::new(7_u32);
        assert_eq!(of(&core, first), first);
        assert_eq!(of(&core, later), first, "kept");
        assert_eq!(of(&Arc::new(8_u32), later), later, "another core");
        drop(core);
        let again = Arc::new(7_u32);
        assert_eq!(of(&again, later), later, "a new core is not the old one");
    }

    /// An adapter given a clock of its own (a policy limiter, a keyed
    /// one, a policy breaker, a breaker layer) makes it the clock of the
    /// adapters built later over its core without one. Before, they read
    /// the clock the first adapter had kept for the core, in another frame
    /// of time: a bucket drained on the given clock was read full (or a
    /// breaker opened on it read as opened in the future) by the next.
    #[tokio::test(start_paused = true)]
    async fn a_clock_given_to_an_adapter_is_the_one_later_adapters_read() {
        use fusebox::breaker::{CircuitBreaker, Config};
        use fusebox::bucket::{FullPolicy, Quota, TokenBucket};

        tokio::time::advance(std::time::Duration::from_secs(3_600)).await;
        let given = TokioClock::new();
        tokio::time::advance(std::time::Duration::from_secs(1)).await;

        let bucket = Arc::new(TokenBucket::new(Quota::per_hour(1).unwrap()));
        let _ = crate::policy::Limiter::new(Arc::clone(&bucket));
        let _ = crate::policy::Limiter::with_clock(Arc::clone(&bucket), given);
        assert_eq!(crate::policy::Limiter::new(bucket).clock(), given);

        let keyed: Arc<fusebox::KeyedLimiter<u64, 8>> = Arc::new(
            fusebox::KeyedLimiter::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject).unwrap(),
        );
        let _ = crate::policy::KeyedLimiter::new(Arc::clone(&keyed));
        let _ = crate::policy::KeyedLimiter::with_clock(Arc::clone(&keyed), given);
        assert_eq!(crate::policy::KeyedLimiter::new(keyed).clock(), given);

        let config = || Config::builder().consecutive_failures(1).build().unwrap();
        let core = Arc::new(CircuitBreaker::new(config()));
        let _ = crate::policy::Breaker::builder("a", Arc::clone(&core)).build();
        let _ = crate::policy::Breaker::builder("a", Arc::clone(&core))
            .clock(given)
            .build();
        assert_eq!(
            crate::policy::Breaker::builder("a", core).build().clock(),
            given
        );

        #[cfg(feature = "tower")]
        {
            use crate::tower::CircuitBreakerLayer;
            let core = Arc::new(CircuitBreaker::new(config()));
            let _ = CircuitBreakerLayer::new("a", Arc::clone(&core));
            let _ = CircuitBreakerLayer::new("a", Arc::clone(&core)).with_clock(given);
            assert_eq!(CircuitBreakerLayer::new("a", core).clock(), given);
        }
    }
}
