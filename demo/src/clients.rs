//! The two ways the clients call the upstream: the naive one people write
//! (a timeout and three tries with a fixed pause), and the protected one
//! (fusebox-std's [`Policy`] with a rate limit, a circuit breaker, retries
//! under a budget, and a [`StaleCache`] answering when it all fails).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fusebox::breaker::{Config, Metrics, State};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, FleetBreaker, RedisLimiter, RedisLimiterMetrics, Rules};
use fusebox_std::policy::{
    Breaker, ExponentialBackoffMaker, Jitter, Limiter, Policy, Retry, RetryBudget, Source,
    StaleCache,
};
use fusebox_std::registry::CacheSource;
use fusebox_std::{CallError, Registry, TokioClock};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::fleet::{fleet_breaker, SharedRedis};

/// The per-attempt timeout, the same for both callers.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Entries of the stale cache (the hot part of the key space).
pub const CACHE_ENTRIES: usize = 1_024;

/// The protected caller's stale cache.
pub type ItemCache = StaleCache<u32, Bytes, CACHE_ENTRIES>;

/// Why one HTTP call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The upstream answered with this status.
    Status(u16),
    /// No answer: connection refused or reset.
    Transport,
    /// No answer within [`ATTEMPT_TIMEOUT`] (naive caller only; the policy
    /// has its own timeout).
    Timeout,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(code) => write!(f, "upstream answered {code}"),
            Self::Transport => f.write_str("no answer from upstream"),
            Self::Timeout => f.write_str("upstream timed out"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A plain HTTP/1 client for the upstream (hyper-util's pooled client).
/// Its clones share one count of the calls that got no answer.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: Arc<str>,
    unanswered: Arc<AtomicU64>,
}

impl Http {
    /// A client for the upstream at `addr`, keeping up to `pool` idle
    /// connections.
    pub fn new(addr: std::net::SocketAddr, pool: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .build(connector);
        Self {
            client,
            base: format!("http://{addr}/item/").into(),
            unanswered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls that got no answer ([`FetchError::Transport`]), by this
    /// client and its clones. The upstream's story never refuses or
    /// resets a connection: such a call is the process's own failure
    /// (out of file descriptors, mostly), not the upstream's.
    pub fn unanswered(&self) -> u64 {
        self.unanswered.load(Relaxed)
    }

    /// `GET /item/{key}`: the body of a `200`, else why not.
    ///
    /// # Errors
    ///
    /// [`FetchError::Status`] for any other status, [`FetchError::Transport`]
    /// when no answer came.
    pub async fn get(&self, key: u32) -> Result<Bytes, FetchError> {
        let no_answer = || {
            self.unanswered.fetch_add(1, Relaxed);
            FetchError::Transport
        };
        let uri: http::Uri = format!("{}{key}", self.base)
            .parse()
            .map_err(|_| FetchError::Transport)?;
        let response = self.client.get(uri).await.map_err(|_| no_answer())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| no_answer())?
            .to_bytes();
        if status == http::StatusCode::OK {
            Ok(body)
        } else {
            Err(FetchError::Status(status.as_u16()))
        }
    }
}

/// What the callers of one run did, counted on the client side.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Logical requests the clients finished.
    pub requests: AtomicU64,
    /// Requests answered (fresh or from the cache).
    pub ok: AtomicU64,
    /// Requests answered from the stale cache.
    pub from_cache: AtomicU64,
    /// HTTP attempts sent.
    pub attempts: AtomicU64,
    /// HTTP attempts beyond each request's first.
    pub retries: AtomicU64,
    /// Requests answered without a single attempt on the wire: the
    /// breaker or the rate limit refused the first (a request refused only
    /// a retry made a call, and is not counted).
    pub refused_locally: AtomicU64,
}

/// One of the two callers.
#[derive(Clone, Debug)]
pub enum Caller {
    /// Timeout and three tries 100 ms apart, as people write it.
    Naive(Box<Http>),
    /// Through fusebox-std.
    Protected(Arc<Protected>),
}

impl Caller {
    /// Its HTTP attempts that got no answer ([`Http::unanswered`]).
    pub fn unanswered(&self) -> u64 {
        match self {
            Self::Naive(http) => http.unanswered(),
            Self::Protected(p) => p.http.unanswered(),
        }
    }

    /// One logical request for `key`; `Ok` when the client got an item.
    pub async fn fetch(&self, key: u32, counters: &ClientCounters) -> bool {
        let ok = match self {
            Self::Naive(http) => naive(http, key, counters).await.is_ok(),
            Self::Protected(p) => p.fetch(key, counters).await,
        };
        counters.requests.fetch_add(1, Relaxed);
        if ok {
            counters.ok.fetch_add(1, Relaxed);
        }
        ok
    }
}

async fn naive(http: &Http, key: u32, counters: &ClientCounters) -> Result<Bytes, FetchError> {
    let mut last = FetchError::Transport;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            counters.retries.fetch_add(1, Relaxed);
        }
        counters.attempts.fetch_add(1, Relaxed);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, http.get(key)).await {
            Ok(Ok(body)) => return Ok(body),
            Ok(Err(e)) => last = e,
            Err(_) => last = FetchError::Timeout,
        }
    }
    Err(last)
}

/// The protected caller: a [`Policy`] (retry with budget → rate limit →
/// breaker → timeout) inside a stale-on-error [`StaleCache`], every piece
/// registered in the [`Registry`] (breaker, limiter, cache) so its health
/// report and Prometheus text show them. The rate limit and the breaker
/// are in process, or shared through Redis by every storm given the same
/// Redis.
#[derive(Debug)]
pub struct Protected {
    http: Http,
    policy: Policy,
    limiter: Arc<Limiter>,
    cache: Arc<ItemCache>,
    breaker: Breaker,
    fleet: Option<FleetBreaker>,
}

/// The stale cache as the registry sees it (its hits, misses, inserts).
struct CacheReport(Arc<ItemCache>);

impl CacheSource for CacheReport {
    fn cache_metrics(&self) -> fusebox::cache::CacheMetrics {
        self.0.metrics()
    }
}

/// The breaker's name in the registry.
pub const BREAKER: &str = "upstream";
/// The rate limit's name in the registry.
pub const LIMITER: &str = "upstream";
/// The stale cache's name in the registry.
pub const CACHE: &str = "upstream_items";

impl Protected {
    /// The protected caller of `http`, sending at most `rate` calls per
    /// second (with a burst of a tenth of it), built through `registry`
    /// whose clock is `clock`; `seed` seeds the backoff's jitter. With
    /// `redis`, the rate limit is the one every process using that Redis
    /// shares (limiter [`LIMITER`]), each keeping the whole limit to itself
    /// while Redis is out, and so is the breaker (fleet breaker
    /// [`BREAKER`], see [`fleet_breaker`]): a
    /// trip in any process opens it in all.
    ///
    /// # Errors
    ///
    /// A registry or configuration error (a bug in the demo), or a fleet
    /// breaker that cannot be built.
    pub async fn new(
        http: Http,
        rate: u32,
        seed: u64,
        registry: &Arc<Registry>,
        clock: TokioClock,
        redis: Option<&SharedRedis>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let breaker_config = Config::builder()
            .failure_rate(50)
            .window(40)
            .minimum_calls(20)
            .slow_call(fusebox::Duration::from_millis(250), 60)
            .open_for(fusebox::Duration::from_millis(200))
            .max_open_for(fusebox::Duration::from_secs(1))
            .half_open_permits(3)
            .close_after(2)
            .build()?;
        let (breaker, fleet): (Breaker, _) = match redis {
            None => (registry.breaker_policy(BREAKER, breaker_config)?, None),
            Some(redis) => {
                let fleet = fleet_breaker(registry, breaker_config, redis).await?;
                (fleet.policy().clone(), Some(fleet))
            }
        };
        let quota = Quota::per_second(rate)?.with_burst(rate / 10 + 1)?;
        let limiter = Arc::new(match redis {
            None => Limiter::with_clock(registry.limiter(LIMITER, quota)?, clock),
            Some(redis) => {
                let rules = Rules::single(Limiter::SHARED_RULE, quota)?;
                let shared = RedisLimiter::builder(LIMITER, rules, redis.backend().clone())
                    .degrade(Degrade::Local { instances: 1 })
                    .registry(Arc::clone(registry))
                    .build()?;
                registry.redis_limiter_policy(Arc::new(shared))?
            }
        });
        let budget = RetryBudget::with_clock(Duration::from_secs(1), 20, 10, clock)?;
        let retry = Retry::builder()
            .max_attempts(3)
            .deadline(Duration::from_millis(1_500))
            .budget(Arc::new(budget))
            .backoff(
                ExponentialBackoffMaker::new(
                    Duration::from_millis(50),
                    2.0,
                    Duration::from_millis(400),
                )?
                .with_jitter(Jitter::Full)
                .with_rng(fastrand::Rng::with_seed(seed)),
            )
            .build();
        let policy = Policy::builder()
            .retry(retry)
            .limiter(Arc::clone(&limiter))
            .breaker(breaker.clone())
            .timeout(ATTEMPT_TIMEOUT)
            .build();
        let cache = Arc::new(ItemCache::with_clock(
            Duration::ZERO,
            Duration::from_secs(60),
            clock,
        )?);
        registry.register_cache(CACHE, Arc::new(CacheReport(Arc::clone(&cache))))?;
        Ok(Self {
            http,
            policy,
            limiter,
            cache,
            breaker,
            fleet,
        })
    }

    /// The counters of the rate limit shared through Redis (`None` for
    /// one in process).
    pub fn shared_limit(&self) -> Option<RedisLimiterMetrics> {
        self.limiter.redis_limiter().map(|l| l.metrics())
    }

    /// The breaker's state here, as the next call would see it.
    pub fn breaker_state(&self) -> State {
        self.breaker.state()
    }

    /// The counters of the breaker here (this process's calls only, also
    /// when it is shared).
    pub fn breaker_metrics(&self) -> Metrics {
        self.breaker.metrics()
    }

    /// The breaker shared through Redis (`None` for one in process).
    pub fn fleet(&self) -> Option<&FleetBreaker> {
        self.fleet.as_ref()
    }

    async fn fetch(&self, key: u32, counters: &ClientCounters) -> bool {
        // Whether an attempt went out: a request whose retry the breaker
        // refused made a call, and is not short-circuited.
        let called = AtomicBool::new(false);
        let call = self.policy.call(|| {
            if called.swap(true, Relaxed) {
                counters.retries.fetch_add(1, Relaxed);
            }
            counters.attempts.fetch_add(1, Relaxed);
            self.http.get(key)
        });
        let served = self
            .cache
            .get_or_fetch(key, || async {
                let result = call.await;
                if !called.load(Relaxed)
                    && matches!(
                        result,
                        Err(CallError::Open { .. } | CallError::RateLimited(_))
                    )
                {
                    counters.refused_locally.fetch_add(1, Relaxed);
                }
                result
            })
            .await;
        match served {
            Ok(served) => {
                if served.source == Source::Stale {
                    counters.from_cache.fetch_add(1, Relaxed);
                }
                true
            }
            Err(_) => false,
        }
    }
}
