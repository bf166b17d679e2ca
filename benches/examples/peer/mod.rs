//! What the HTTP benchmark examples share (`#[path]`-included, not an
//! example of its own): tower_governor's key, the same as fusebox's.

use tower_governor::key_extractor::KeyExtractor;
use tower_governor::GovernorError;

use fusebox::hash::RandomState;
use fusebox_std::tower::rate_limit::{KeyError, Keyed};
use fusebox_std::tower::RateLimitLayer;
use http::request::Parts;
use smol_str::SmolStr;

/// The `x-api-key` header as a `SmolStr` (inline up to 23 bytes), as
/// fusebox's `key::header_as::<SmolStr>` makes it: both limiters key
/// without a heap allocation per request.
#[derive(Clone, Copy, Debug)]
pub struct ApiKey;

impl KeyExtractor for ApiKey {
    type Key = SmolStr;

    fn extract<T>(&self, req: &http::Request<T>) -> Result<SmolStr, GovernorError> {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64)
            .map(SmolStr::new)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

type Error = Box<dyn std::error::Error>;

/// What `key::header_as::<SmolStr>` returns.
pub trait KeyFn: Fn(&Parts) -> Result<SmolStr, KeyError> + Clone + Send + Sync + 'static {}

impl<F: Fn(&Parts) -> Result<SmolStr, KeyError> + Clone + Send + Sync + 'static> KeyFn for F {}

/// fusebox's keyed limit of the benchmarks, from `registry`: keyed by the
/// `x-api-key` header into a `SmolStr` (inline up to 23 bytes: no heap
/// allocation per request, `key::header_as`), 10^9 tokens a second with
/// a burst of 10^9 (never reached).
pub fn fusebox_limit(
    registry: &fusebox_std::Registry,
) -> Result<RateLimitLayer<Keyed<SmolStr, 1024, RandomState, impl KeyFn>>, Error> {
    let quota = fusebox::bucket::Quota::per_second(1_000_000_000)?.with_burst(1_000_000_000)?;
    Ok(RateLimitLayer::keyed_from_registry::<SmolStr, 1024, _>(
        registry,
        "per_api_key",
        quota,
        fusebox::bucket::FullPolicy::Reject,
        fusebox_std::tower::rate_limit::key::header_as("x-api-key", 64),
    )?)
}

/// fusebox's breaker of the benchmarks, from `registry`: a failure rate
/// of 50 % over 20 calls.
pub fn fusebox_breaker(
    registry: &std::sync::Arc<fusebox_std::Registry>,
) -> Result<fusebox_std::tower::CircuitBreakerLayer, Error> {
    let config = fusebox::breaker::Config::builder()
        .failure_rate(50)
        .window(20)
        .build()?;
    Ok(fusebox_std::tower::CircuitBreakerLayer::from_registry(
        registry, "backend", config,
    )?)
}
