//! The two kinds of limit a [`RateLimitLayer`](super::RateLimitLayer)
//! enforces: [`Single`] (one token bucket for every request) and [`Keyed`]
//! (a keyed limiter and a key function). `Limit`, the trait the service
//! asks, is sealed: it lives in this private module.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use fusebox::bucket::{KeyedError, KeyedLimiter};
use fusebox::{Clock, Duration, Instant, TokenBucket};
use http::request::Parts;

use super::quote_cache::{Base, QuoteCache};
use super::{BadKey, BadKeyCounter, BadKeys, KeyError, Refusal};
use crate::redact::Redacted;
use crate::tower::headers::{ceil_secs, quota_qw, Quoted};
use crate::TokioClock;

/// What the service learns from a limit for one request.
///
/// # Examples
///
/// Internal (the [`Limit`] trait is sealed); what each answer becomes:
/// `Admitted` lets the request through with the quota left,
/// `Limited` answers `429` with `Retry-After`.
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox::TokenBucket;
/// use fusebox_std::tower::RateLimitLayer;
/// use tower::{service_fn, Layer, Service};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
/// let mut service = RateLimitLayer::new("api", bucket).layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(String::new()))
/// }));
/// for _ in 0..5 {
///     assert_eq!(service.call(http::Request::new(())).await?.status(), 200); // Admitted
/// }
/// let limited = service.call(http::Request::new(())).await?;
/// assert_eq!(limited.status(), 429); // Limited
/// assert_eq!(limited.headers()["retry-after"], "1");
/// assert_eq!(limited.headers()["ratelimit"], "\"api\";r=0;t=1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Admitted; the quota as it stands after the admission, or `None`
    /// when the request was charged to something the policy's fields do
    /// not describe (a keyed limiter's overflow bucket).
    Admitted(Option<Quoted>),
    /// Out of tokens for `retry_after`; the quota as it stands (`None` as
    /// for `Admitted`).
    Limited(Duration, Option<Quoted>),
    /// Refused for another reason (no quota to report).
    Refused(Refusal),
}

/// One decision per request, on the request head.
///
/// Sealed: implemented by [`Single`], [`Keyed`] and, with feature `redis`,
/// `Shared`; a [`RateLimitLayer`](super::RateLimitLayer) asks it once per
/// request.
///
/// # Examples
///
/// A [`Keyed`] limit decides per key:
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
/// use fusebox::hash::RandomState;
/// use fusebox_std::tower::rate_limit::key;
/// use fusebox_std::tower::RateLimitLayer;
/// use tower::{service_fn, Layer, Service};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// // Clients choose the header: a secret hash seed.
/// let limiter = Arc::new(KeyedLimiter::<String, 16, 1, RandomState>::with_hasher(
///     [Quota::per_second(1)?], FullPolicy::Reject, RandomState::new())?);
/// let mut service = RateLimitLayer::keyed("api", limiter, key::header("user", 64)).layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(String::new()))
/// }));
/// let from = |user: &str| http::Request::builder().header("user", user).body(()).unwrap();
/// assert_eq!(service.call(from("a")).await?.status(), 200);
/// assert_eq!(service.call(from("a")).await?.status(), 429);
/// assert_eq!(service.call(from("b")).await?.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait Limit: Send + Sync + 'static {
    /// Charges the request with head `head`, reading `clock` right before
    /// the core call (after the key function, which is user code); `name`
    /// is the policy's, for the logs. The quota is reported (`Quoted`)
    /// only if `fields` (the layer sends the fields): otherwise it is not
    /// even read.
    fn check(&self, head: &Parts, clock: &TokioClock, name: &str, fields: bool) -> Check;
}

/// One [`TokenBucket`] for every request through the layer (and every
/// clone of its services).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox::TokenBucket;
/// use fusebox_std::tower::rate_limit::Single;
/// use fusebox_std::tower::RateLimitLayer;
///
/// let layer: RateLimitLayer<Single> = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?)));
/// assert_eq!(layer.limit().bucket().quota().tokens(), 5);
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Single {
    bucket: Arc<TokenBucket>,
}

impl Single {
    pub(super) fn new(bucket: Arc<TokenBucket>) -> Self {
        Self { bucket }
    }

    /// The shared bucket.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox::TokenBucket;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
    /// assert!(Arc::ptr_eq(RateLimitLayer::new("api", Arc::clone(&bucket)).limit().bucket(), &bucket));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn bucket(&self) -> &Arc<TokenBucket> {
        &self.bucket
    }

    fn quoted(&self, now: Instant) -> Quoted {
        let quota = self.bucket.quota();
        let (limit, window) = quota_qw(&quota);
        let available = self.bucket.available(now);
        Quoted {
            limit,
            window,
            remaining: u64::from(available),
            reset: ceil_secs(self.bucket.snapshot(now).until_full),
            // One token short of the burst: full before this request.
            full: available.checked_add(1) == Some(quota.burst()),
        }
    }
}

impl Limit for Single {
    fn check(&self, _head: &Parts, clock: &TokioClock, _name: &str, fields: bool) -> Check {
        let now = clock.now();
        match self.bucket.try_acquire(now) {
            Ok(()) => Check::Admitted(fields.then(|| self.quoted(now))),
            Err(limited) => Check::Limited(limited.retry_after, fields.then(|| self.quoted(now))),
        }
    }
}

/// A [`KeyedLimiter`] (one quota tier) and the function that makes a key
/// of each request's head: a bucket per client IP, API key or route.
///
/// Under [`FullPolicy::Overflow`](fusebox::bucket::FullPolicy::Overflow),
/// a request whose key found no slot is charged to the limiter's shared
/// overflow bucket; its response carries no `RateLimit` fields for this
/// policy (the per-key quota would be a bucket the key does not have, and
/// the core does not expose the overflow bucket's state).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
/// use fusebox::hash::RandomState;
/// use fusebox_std::tower::rate_limit::key;
/// use fusebox_std::tower::RateLimitLayer;
///
/// // Clients choose their API keys: hashed with a secret seed.
/// let per_key = KeyedLimiter::<String, 1024, 1, RandomState>::with_hasher(
///     [Quota::per_minute(60)?], FullPolicy::Reject, RandomState::new())?;
/// let layer = RateLimitLayer::keyed("per_api_key", Arc::new(per_key), key::header("x-api-key", 64));
/// assert_eq!(layer.limit().limiter().metrics().keys, 0);
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
pub struct Keyed<K, const N: usize, S, F> {
    limiter: Arc<KeyedLimiter<K, N, 1, S>>,
    key: F,
    bad_key: BadKey<K>,
    /// Requests without a usable key, by reason.
    bad_keys: Arc<BadKeyCounter>,
    /// What the fields derive from the quota, shared by every clone.
    quotes: Arc<QuoteCache>,
}

impl<K: Clone, const N: usize, S, F: Clone> Clone for Keyed<K, N, S, F> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            bad_key: self.bad_key.clone(),
            bad_keys: Arc::clone(&self.bad_keys),
            quotes: Arc::clone(&self.quotes),
        }
    }
}

impl<K, const N: usize, S, F> std::fmt::Debug for Keyed<K, N, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<K, const N: usize, S, F> Keyed<K, N, S, F> {
    pub(super) fn new(limiter: Arc<KeyedLimiter<K, N, 1, S>>, key: F) -> Self {
        Self {
            limiter,
            key,
            bad_key: BadKey::Reject,
            bad_keys: Arc::default(),
            quotes: Arc::new(QuoteCache::new()),
        }
    }

    pub(super) fn set_bad_key(&mut self, bad_key: BadKey<K>) {
        self.bad_key = bad_key;
    }

    /// Counts its requests without a usable key into `counter` (a
    /// registry's, shared by every layer it builds for one name).
    pub(super) fn counting_bad_keys_in(mut self, counter: Arc<BadKeyCounter>) -> Self {
        self.bad_keys = counter;
        self
    }

    /// The requests found without a usable key so far, refused or charged
    /// to the default key (see [`BadKeys`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::RandomState;
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let per_key = KeyedLimiter::<String, 64, 1, RandomState>::with_hasher(
    ///     [Quota::per_minute(60)?], FullPolicy::Reject, RandomState::new())?;
    /// let layer = RateLimitLayer::keyed("per_api_key", Arc::new(per_key), key::header("x-api-key", 64));
    /// assert_eq!(layer.limit().bad_keys().total(), 0);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn bad_keys(&self) -> BadKeys {
        self.bad_keys.read()
    }

    /// The shared keyed limiter.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::RandomState;
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let limiter = Arc::new(KeyedLimiter::<String, 64, 1, RandomState>::with_hasher(
    ///     [Quota::per_second(1)?], FullPolicy::Reject, RandomState::new())?);
    /// let layer = RateLimitLayer::keyed("per_route", Arc::clone(&limiter), key::path(128));
    /// assert!(Arc::ptr_eq(layer.limit().limiter(), &limiter));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn limiter(&self) -> &Arc<KeyedLimiter<K, N, 1, S>> {
        &self.limiter
    }

    /// What a request whose key function fails gets.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::RandomState;
    /// use fusebox_std::tower::rate_limit::{key, BadKey};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let limiter = Arc::new(KeyedLimiter::<String, 64, 1, RandomState>::with_hasher(
    ///     [Quota::per_second(1)?], FullPolicy::Reject, RandomState::new())?);
    /// let layer = RateLimitLayer::keyed("per_route", limiter, key::path(128));
    /// assert_eq!(*layer.limit().bad_key(), BadKey::Reject);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn bad_key(&self) -> &BadKey<K> {
        &self.bad_key
    }
}

impl<K, const N: usize, S, F> Keyed<K, N, S, F>
where
    K: Eq + Hash + Clone,
    S: BuildHasher,
{
    /// What a request whose key function failed with `error` is charged
    /// to: the default key, or a refusal.
    #[cold]
    #[inline(never)]
    fn charge_bad_key(&self, error: KeyError, name: &str) -> Result<K, Check> {
        self.bad_keys.count(&error);
        match &self.bad_key {
            BadKey::Reject => Err(Check::Refused(Refusal::BadKey(error))),
            BadKey::Default(key) => {
                tracing::debug!(policy = %Redacted(&name), reason = %Redacted(&error), "request key unusable: charged to the default key");
                Ok(key.clone())
            }
        }
    }

    /// A refusal of `key` at `now`, with its quota if `base` (the fields
    /// are sent).
    #[cold]
    #[inline(never)]
    fn refused(&self, error: KeyedError, base: Option<Base>, key: &K, now: Instant) -> Check {
        match error {
            KeyedError::RateLimited(limited) => Check::Limited(
                limited.retry_after,
                self.quoted(base, key, now, limited.retry_after),
            ),
            KeyedError::TableFull => Check::Refused(Refusal::TableFull {
                retry_after: self
                    .limiter
                    .quota(0)
                    .map_or(Duration::ZERO, |q| q.replenish_interval()),
            }),
            _ => Check::Refused(Refusal::Unavailable),
        }
    }

    /// The key's quota after a refusal at `now`, or `None` if the refusal
    /// was not the key's own bucket's.
    ///
    /// Under [`FullPolicy::Overflow`](fusebox::bucket::FullPolicy::Overflow)
    /// a new key that finds no slot is charged to the one overflow bucket
    /// every such key shares; the per-key policy's fields would then
    /// describe a bucket that does not exist (a key with no slot reads its
    /// full burst) and tell the client it has a whole burst left, even on a
    /// `429`. The core exposes the overflow bucket's quota but not its
    /// state, so such a response carries **no** `RateLimit` fields rather
    /// than wrong ones. An admission says itself which bucket it charged
    /// ([`KeyedLimiter::try_acquire_left`]); a refusal is recognised at the
    /// decision's own `now`: refused by its own bucket, a key has no whole
    /// token left, and a key that reads otherwise was refused by the
    /// overflow bucket. Under
    /// [`FullPolicy::Reject`](fusebox::bucket::FullPolicy::Reject) every
    /// refusal is the key's own.
    fn quoted(
        &self,
        base: Option<Base>,
        key: &K,
        now: Instant,
        retry_after: Duration,
    ) -> Option<Quoted> {
        let base = base?;
        if self.limiter.overflow_quota().is_some() && self.limiter.available(key, now) != 0 {
            return None;
        }
        Some(base.refused(retry_after))
    }

    /// The quota's figures: kept, while the quota is the one they were
    /// derived from (one load to know), else derived.
    #[inline]
    fn base(&self) -> Option<Base> {
        let version = self.limiter.quota_version(0)?;
        match self.quotes.get(version) {
            Some(base) => Some(base),
            None => self.derive_base(version),
        }
    }

    /// The figures of the quota in force, kept if it is still `version`'s.
    #[cold]
    #[inline(never)]
    fn derive_base(&self, version: u32) -> Option<Base> {
        let base = Base::of(&self.limiter.quota(0)?);
        if self.limiter.quota_version(0) == Some(version) {
            self.quotes.put(version, base);
        }
        Some(base)
    }
}

impl<K, const N: usize, S, F> Limit for Keyed<K, N, S, F>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
    F: Fn(&Parts) -> Result<K, KeyError> + Send + Sync + 'static,
    KeyedLimiter<K, N, 1, S>: Send + Sync,
{
    // The admitted path is kept compact: every other path (a bad key, a
    // refusal and its second lookup) is out of line, so that the code an
    // admission runs spans fewer instruction-cache lines (each a miss on
    // every request of a real server, whose request path is far larger
    // than the cache; benches/analysis.md, "HTTP").
    fn check(&self, head: &Parts, clock: &TokioClock, name: &str, fields: bool) -> Check {
        let key = match (self.key)(head) {
            Ok(key) => key,
            Err(error) => match self.charge_bad_key(error, name) {
                Ok(key) => key,
                Err(refused) => return refused,
            },
        };
        let base = if fields { self.base() } else { None };
        let now = clock.now();
        match self.limiter.try_acquire_left(&key, now) {
            // The tokens left come with the admission: one lookup.
            Ok(left) => Check::Admitted(base.zip(left).map(|(base, left)| base.quote(left))),
            Err(error) => self.refused(error, base, &key, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::bucket::{KeyedLeft, Quota};

    #[test]
    fn only_one_token_short_of_the_burst_is_a_full_bucket() {
        let quota = Quota::per_second(10).unwrap().with_burst(4).unwrap();
        let left = |tokens: u32| KeyedLeft {
            tokens,
            until_full: Duration::from_millis(100 * u64::from(4 - tokens)),
        };
        let full: Vec<bool> = (0..=4)
            .map(|tokens| Base::of(&quota).quote(left(tokens)).full)
            .collect();
        assert_eq!(full, [false, false, false, true, false]);
        let q = Base::of(&quota).quote(left(3));
        assert_eq!((q.remaining, q.reset), (3, 1));
        assert!(
            !q.refused(Duration::from_secs(1)).full,
            "a refusal never is"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_quota_figures_are_kept_after_the_first_response() {
        use fusebox::bucket::FullPolicy;
        let clock = TokioClock::new();
        let quota = Quota::per_minute(60).unwrap();
        let limiter = Arc::new(KeyedLimiter::<String, 8>::new(quota, FullPolicy::Reject).unwrap());
        let keyed = Keyed::new(Arc::clone(&limiter), |_: &Parts| Ok("k".to_owned()));
        let (head, ()) = http::Request::new(()).into_parts();
        let version = limiter.quota_version(0).unwrap();
        assert_eq!(keyed.quotes.get(version), None, "nothing before a response");
        let _ = keyed.check(&head, &clock, "k", false);
        assert_eq!(keyed.quotes.get(version), None, "nor without fields");
        let _ = keyed.check(&head, &clock, "k", true);
        assert_eq!(keyed.quotes.get(version), Some(Base::of(&quota)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_bucket_is_full_before_its_first_request_only() {
        let clock = TokioClock::new();
        let quota = Quota::per_second(1).unwrap().with_burst(3).unwrap();
        let single = Single::new(Arc::new(TokenBucket::new(quota)));
        let (head, ()) = http::Request::new(()).into_parts();
        let full = |check| match check {
            Check::Admitted(Some(q)) => (q.remaining, q.full),
            other => panic!("{other:?}"),
        };
        assert_eq!(full(single.check(&head, &clock, "s", true)), (2, true));
        assert_eq!(full(single.check(&head, &clock, "s", true)), (1, false));
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        assert_eq!(full(single.check(&head, &clock, "s", true)), (2, true));
    }
}
