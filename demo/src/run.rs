//! One run of the storm: a fresh upstream playing the scenario, the
//! clients hammering it through one [`Caller`], live progress, and what
//! was measured.

use std::error::Error;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fusebox::breaker::State;
use fusebox_std::backend::FleetBreaker;
use fusebox_std::tracker::{Latency, Tracker};
use fusebox_std::{Registry, TokioClock, TrackerConfig};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clients::{Caller, ClientCounters, Http, Protected};
use crate::fleet::{FleetUse, SharedRedis};
use crate::progress::{Live, Snapshot};
use crate::scenario::Scenario;
use crate::upstream::{Upstream, UpstreamCounts};

/// How long clients still in a call at the end of the story may take to
/// finish before they are cut off (and their requests not counted): longer
/// than any request can take (the naive caller's worst is three 1 s
/// timeouts and two 100 ms pauses; the protected one's, its 1.5 s retry
/// deadline plus a 1 s attempt), so it is only a safety net.
const GRACE: Duration = Duration::from_secs(4);

/// How many items the clients ask for (the hot ones far more often).
pub const KEYS: u32 = 500;

/// The tracker holding the client-seen latencies (one operation per mode).
pub const TRACKER: &str = "clients";

/// Which caller a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain calls with a naive retry.
    Unprotected,
    /// Through fusebox-std.
    Protected,
}

impl Mode {
    /// The mode's name (a column of the report, an operation of the tracker).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected",
            Self::Protected => "protected",
        }
    }
}

/// What one run is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Seeds the story, the upstream's dice and the clients' choices.
    pub seed: u64,
    /// Length of the story.
    pub duration: Duration,
    /// Concurrent clients (tokio tasks).
    pub clients: u32,
    /// Redraw a live bar in place (a terminal) or print plain lines.
    pub tty: bool,
    /// The protected caller's rate limit in calls per second (`None`: 12
    /// per client).
    pub rate: Option<u32>,
}

impl Settings {
    /// The upstream's nominal capacity: 15 calls per second per client,
    /// half as much again as the clients' normal load (about 9.5 each).
    pub const fn capacity_rps(&self) -> u32 {
        self.clients.saturating_mul(15)
    }

    /// The protected caller's rate limit: [`rate`](Self::rate), by default
    /// 12 calls per second per client, under the upstream's capacity,
    /// above the normal load.
    pub const fn rate_limit(&self) -> u32 {
        match self.rate {
            Some(rate) => rate,
            None => self.clients.saturating_mul(12),
        }
    }

    /// The rate limit's burst: a tenth of a second's calls, plus one.
    pub const fn rate_burst(&self) -> u32 {
        self.rate_limit() / 10 + 1
    }
}

/// What one run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunResult {
    /// The caller.
    pub mode: Mode,
    /// Logical requests finished by the clients.
    pub requests: u64,
    /// Requests answered (fresh or from the cache).
    pub ok: u64,
    /// Requests answered from the stale cache.
    pub from_cache: u64,
    /// HTTP attempts sent by the clients.
    pub attempts: u64,
    /// Attempts beyond each request's first.
    pub retries: u64,
    /// Requests answered without a call: the breaker or the rate limit
    /// refused their first attempt (a request refused only a retry made a
    /// call, and is not counted).
    pub refused_locally: u64,
    /// Client-seen latency of the requests (µs), from fusebox-std's tracker.
    pub latency: Option<Latency>,
    /// Times the breaker opened (`None` without a breaker).
    pub breaker_trips: Option<u64>,
    /// What reached the upstream.
    pub upstream: UpstreamCounts,
    /// Wall time of the run.
    pub wall: Duration,
    /// What this process took from a rate limit shared through Redis
    /// (protected run with `--redis` only).
    pub shared: Option<SharedUse>,
    /// What this process did to the breaker it shares through Redis, and
    /// saw of it (protected run with `--redis` only).
    pub fleet: Option<FleetUse>,
    /// HTTP attempts that got no answer (connection refused or reset):
    /// the upstream's story never makes one, so these are the process's
    /// own failures (out of file descriptors, mostly), counted among the
    /// failed requests all the same (see [`Http::unanswered`]).
    pub unanswered: u64,
}

/// What one process's protected run took from the rate limit it shares
/// with other processes through Redis: with the window's wall-clock ends,
/// so that the runs of several processes can be added up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedUse {
    /// Calls the shared limit admitted to this run's clients.
    pub admitted: u64,
    /// Decisions made without Redis (it did not answer in time): this
    /// process's own share of the limit decided them.
    pub without_redis: u64,
    /// When the run's clients started (wall clock).
    pub from: SystemTime,
    /// When the last of them stopped (wall clock).
    pub to: SystemTime,
}

impl RunResult {
    /// Share of the requests the clients got an answer for, in percent.
    pub fn success_rate(&self) -> f64 {
        crate::report::percent(self.ok, self.requests)
    }
}

/// The key a client asks for next: skewed towards small keys (a cube of a
/// uniform draw), so a few hundred items take most of the traffic.
// `x` is in `0..1`, so the product is in `0..KEYS`: no sign, no overflow.
#[allow(clippy::cast_sign_loss)]
pub fn pick_key(rng: &mut fastrand::Rng) -> u32 {
    let x = rng.f64();
    ((x * x * x) * f64::from(KEYS)) as u32
}

/// Plays `scenario` once with `mode`'s caller; the protected caller's
/// pieces are built through `registry` (whose clock is `clock`), its rate
/// limit and breaker shared through `redis` when given.
///
/// # Errors
///
/// The upstream's bind, or a configuration error of the protected caller.
pub async fn run(
    mode: Mode,
    settings: Settings,
    scenario: &Arc<Scenario>,
    registry: &Arc<Registry>,
    clock: TokioClock,
    redis: Option<&SharedRedis>,
) -> Result<RunResult, Box<dyn Error>> {
    let tracker = registry.tracker(
        TRACKER,
        TrackerConfig {
            sample_rate: 1.0,
            max_requests: 0,
            ..TrackerConfig::default()
        },
    )?;
    let upstream =
        Upstream::start(Arc::clone(scenario), settings.seed, settings.capacity_rps()).await?;
    let http = Http::new(upstream.addr(), settings.clients as usize);
    let caller = caller(mode, http, settings, registry, clock, redis).await?;
    let protected = match &caller {
        Caller::Protected(p) => Some(Arc::clone(p)),
        Caller::Naive(_) => None,
    };
    let from = SystemTime::now();
    let counters = Arc::new(ClientCounters::default());
    let started = upstream.started();
    let duration = scenario.duration();
    let mut clients = spawn_clients(
        mode, settings, &caller, &counters, &tracker, started, duration,
    );
    let mut live = Live::new(mode, duration, settings.tty);
    let snapshot = || Snapshot {
        elapsed: started.elapsed(),
        phase: scenario.phase_at(started.elapsed()).kind,
        requests: counters.requests.load(Relaxed),
        ok: counters.ok.load(Relaxed),
        from_cache: counters.from_cache.load(Relaxed),
        upstream: upstream.counts(),
        breaker: protected.as_ref().map(|p| p.breaker_state()),
        fleet: protected
            .as_ref()
            .and_then(|p| p.fleet())
            .and_then(FleetBreaker::fleet_state),
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = clients.join_next() => if joined.is_none() { break },
            _ = ticker.tick() => {
                live.update(&snapshot());
                if started.elapsed() > duration + GRACE {
                    clients.abort_all();
                }
            }
        }
    }
    let to = SystemTime::now();
    let last = snapshot();
    live.finish(&last);
    let shared = protected
        .as_ref()
        .and_then(|p| p.shared_limit())
        .map(|m| SharedUse {
            admitted: m.admitted,
            without_redis: m.degraded_decisions,
            from,
            to,
        });
    let fleet = protected.as_ref().and_then(|p| p.fleet().map(FleetUse::of));

    let upstream_counts = last.upstream;
    let wall = Instant::now() - started;
    let unanswered = caller.unanswered();
    let breaker_trips = protected.as_ref().map(|p| p.breaker_metrics().trips);
    // Release the run's descriptors before the next run binds: the
    // clients' connections (dropped with the caller) and the upstream's.
    drop((clients, caller, protected));
    upstream.stop().await;

    let latency = tracker
        .stats()
        .get(mode.name())
        .and_then(|stats| stats.latency_us);
    Ok(RunResult {
        mode,
        requests: counters.requests.load(Relaxed),
        ok: counters.ok.load(Relaxed),
        from_cache: counters.from_cache.load(Relaxed),
        attempts: counters.attempts.load(Relaxed),
        retries: counters.retries.load(Relaxed),
        refused_locally: counters.refused_locally.load(Relaxed),
        latency,
        breaker_trips,
        upstream: upstream_counts,
        wall,
        shared,
        fleet,
        unanswered,
    })
}

/// The run's clients: each sends requests through `caller` from `started`
/// until the story's `duration` is over, pausing 50 to 150 ms between two.
fn spawn_clients(
    mode: Mode,
    settings: Settings,
    caller: &Caller,
    counters: &Arc<ClientCounters>,
    tracker: &Tracker,
    started: Instant,
    duration: Duration,
) -> JoinSet<()> {
    let mut clients = JoinSet::new();
    for i in 0..settings.clients {
        let caller = caller.clone();
        let counters = Arc::clone(counters);
        let tracker = tracker.clone();
        let mut rng = fastrand::Rng::with_seed(settings.seed ^ (u64::from(i) << 32 | 0x5eed));
        clients.spawn(async move {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..100))).await;
            while started.elapsed() < duration {
                let key = pick_key(&mut rng);
                let mut op = tracker.track_operation(mode.name());
                if !caller.fetch(key, &counters).await {
                    op.fail();
                }
                drop(op);
                tokio::time::sleep(Duration::from_millis(rng.u64(50..=150))).await;
            }
        });
    }
    clients
}

/// `mode`'s caller of `http`.
async fn caller(
    mode: Mode,
    http: Http,
    settings: Settings,
    registry: &Arc<Registry>,
    clock: TokioClock,
    redis: Option<&SharedRedis>,
) -> Result<Caller, Box<dyn Error>> {
    Ok(match mode {
        Mode::Unprotected => Caller::Naive(Box::new(http)),
        Mode::Protected => Caller::Protected(Arc::new(
            Protected::new(
                http,
                settings.rate_limit(),
                settings.seed,
                registry,
                clock,
                redis,
            )
            .await?,
        )),
    })
}

/// The breaker state as the live line shows it.
pub const fn state_label(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "OPEN",
        State::HalfOpen => "half-open",
        State::ForcedOpen => "forced open",
    }
}
