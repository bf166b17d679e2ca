//! Decisions per second of fusebox's Redis backend against a private
//! loopback `redis-server`, next to two peers written from the client,
//! and with local leasing (issue 14; run by `benches/redis.sh`, which
//! turns the output into `benches/redis.md`).
//!
//!     cargo run --release -p fusebox-benches --example redis_bench
//!
//! Rows, each with 1 and 64 concurrent tokio tasks on one multiplexed
//! connection (the `redis` crate pipelines concurrent requests on it), a
//! key per task, quotas never reached:
//! * `fusebox`: `RedisBackend::decide`, the GCRA Lua script (`EVALSHA`);
//! * `fusebox_limiter`: `RedisLimiter::try_acquire` on that backend (what
//!   an application calls: outage bookkeeping and metrics on top);
//! * `incr_expire`: the naive fixed window, `INCR` (+ `EXPIRE` when a
//!   window starts);
//! * `client_gcra`: GCRA from the client, `GET` then `SET` (not atomic);
//! * `leased`: one `LeasedLimiter` shared by the tasks, leases of
//!   `REDIS_BENCH_LEASE` tokens.
//!
//! Then a contention run per implementation: 64 tasks on one key with a
//! small quota, admissions counted against what the limiter may admit
//! over the run, to show the client GCRA's race (and that fusebox keeps
//! its bound on the same schedule).
//!
//! Round trips are counted by the server (`INFO commandstats` around each
//! row, see `stats.rs`). The process prints one tab-separated line per
//! row on stdout (`key=value` fields) and progress on stderr.
//!
//! Environment: `REDIS_BENCH_SECS` (measured seconds per row, default 2),
//! `REDIS_BENCH_WARMUP_SECS` (0.3), `REDIS_BENCH_ROUNDS` (3),
//! `REDIS_BENCH_TASKS` ("1 64"), `REDIS_BENCH_CONTENTION_TASKS` (64),
//! `REDIS_BENCH_LEASE` (1000), `REDIS_BENCH_TIMEOUT_MS` (the backend's
//! command timeout, 1000: the machine is shared, a fault would measure
//! nothing), `REDIS_BENCH_WORKERS` (tokio workers, 2), `REDIS_BENCH_ROWS`
//! (a subset of the row names), `REDIS_BENCH_DIR` (the server's
//! directory; its pid goes to `redis.pid` there).

mod peers;
mod server;
mod stats;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Backend, LeasedLimiter, RedisBackend, RedisConfig, RedisConnection, RedisLimiter, Rules, Source,
};

use self::peers::{ClientGcra, FixedWindow};
use self::server::RedisServer;
use self::stats::{Delta, Snapshot};

/// Errors of the benchmark.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The rows, in order.
const ROWS: [&str; 5] = [
    "fusebox",
    "fusebox_limiter",
    "incr_expire",
    "client_gcra",
    "leased",
];

/// The contention run's quota: `RATE`/s, burst `BURST` (the fixed window:
/// `RATE` per 1 s window), leases of `HOT_LEASE`.
const RATE: u32 = 1_000;
const BURST: u32 = 100;
const HOT_LEASE: u32 = 10;

struct Settings {
    secs: Duration,
    warmup: Duration,
    rounds: u32,
    tasks: Vec<usize>,
    contention_tasks: usize,
    lease: u32,
    timeout: Duration,
    workers: usize,
    rows: Vec<String>,
    dir: Option<PathBuf>,
}

fn env<T: FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v}: not a number").into()),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self, BoxError> {
        let list = |name: &str, default: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| default.into())
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let tasks = list("REDIS_BENCH_TASKS", "1 64")
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<usize>, _>>()?;
        let rows = list("REDIS_BENCH_ROWS", &ROWS.join(" "));
        if let Some(bad) = rows.iter().find(|r| !ROWS.contains(&r.as_str())) {
            return Err(format!("unknown row {bad}; rows: {}", ROWS.join(" ")).into());
        }
        Ok(Self {
            secs: Duration::from_secs_f64(env("REDIS_BENCH_SECS", 2.0)?),
            warmup: Duration::from_secs_f64(env("REDIS_BENCH_WARMUP_SECS", 0.3)?),
            rounds: env("REDIS_BENCH_ROUNDS", 3)?,
            tasks,
            contention_tasks: env("REDIS_BENCH_CONTENTION_TASKS", 64)?,
            lease: env("REDIS_BENCH_LEASE", 1_000)?,
            timeout: Duration::from_millis(env("REDIS_BENCH_TIMEOUT_MS", 1_000)?),
            workers: env("REDIS_BENCH_WORKERS", 2)?,
            rows,
            dir: std::env::var_os("REDIS_BENCH_DIR").map(PathBuf::from),
        })
    }
}

/// One implementation, ready to decide (cheap to clone: clones share the
/// connection or the limiter).
#[derive(Clone)]
enum Op {
    Backend(RedisBackend, Rules),
    Limiter(Arc<RedisLimiter>),
    FixedWindow(RedisConnection, FixedWindow),
    ClientGcra(RedisConnection, ClientGcra),
    Leased(Arc<LeasedLimiter>),
}

impl Op {
    /// Whether the request on `key` was admitted.
    async fn decide(&mut self, key: &str) -> Result<bool, BoxError> {
        match self {
            Self::Backend(backend, rules) => {
                Ok(backend.decide("bench", key, rules, 1).await?.allowed)
            }
            Self::Limiter(limiter) => {
                let d = limiter.try_acquire(key).await?;
                if d.source != Source::Redis {
                    return Err(format!("decided without redis: {:?}", d.source).into());
                }
                Ok(d.allowed)
            }
            Self::FixedWindow(conn, w) => w.decide(conn, key).await,
            Self::ClientGcra(conn, g) => g.decide(conn, key).await,
            Self::Leased(leased) => {
                let d = leased.try_acquire().await?;
                if !matches!(d.source, Source::Redis | Source::Lease) {
                    return Err(format!("decided without redis: {:?}", d.source).into());
                }
                Ok(d.allowed)
            }
        }
    }

    /// Whether it runs the Lua script (for the command counts).
    fn scripted(&self) -> bool {
        matches!(self, Self::Backend(..) | Self::Limiter(_) | Self::Leased(_))
    }
}

/// `rate`/s with a burst of `burst`, as one rule.
fn rules(rate: u32, burst: u32) -> Result<Rules, BoxError> {
    Ok(Rules::single(
        "per_second",
        Quota::per_second(rate)?.with_burst(burst)?,
    )?)
}

/// Builds row `name` on a fresh connection; `hot`: the contention
/// run's small quota instead of one never reached.
async fn build(name: &str, url: &str, s: &Settings, hot: bool) -> Result<Op, BoxError> {
    let backend = RedisBackend::connect(RedisConfig::new(url).timeout(s.timeout)).await?;
    let never = 1_000_000_000;
    let (rate, burst) = if hot { (RATE, BURST) } else { (never, never) };
    let rules = rules(rate, burst)?;
    let limiter = |rules| RedisLimiter::builder("bench", rules, backend.clone()).build();
    Ok(match name {
        "fusebox" => Op::Backend(backend.clone(), rules),
        "fusebox_limiter" => Op::Limiter(Arc::new(limiter(rules)?)),
        "incr_expire" => Op::FixedWindow(
            backend.connection(),
            FixedWindow {
                limit: if hot { u64::from(RATE) } else { u64::MAX },
                window_secs: 1,
            },
        ),
        "client_gcra" => Op::ClientGcra(
            backend.connection(),
            ClientGcra::new(rate.into(), burst.into(), Instant::now()),
        ),
        "leased" => {
            let lease = if hot { HOT_LEASE } else { s.lease };
            Op::Leased(Arc::new(LeasedLimiter::new(
                limiter(rules)?,
                "all",
                lease,
                Duration::from_secs(1),
            )?))
        }
        _ => return Err(format!("unknown row {name}").into()),
    })
}

#[derive(Default)]
struct Counts {
    decisions: u64,
    admitted: u64,
    errors: u64,
}

/// `tasks` tasks deciding on `op` for `run`, each on its own key
/// (`hot`: all on one key); the counts and the time until the last
/// task ended.
async fn drive(
    op: &Op,
    tasks: usize,
    run: Duration,
    hot: bool,
) -> Result<(Counts, Duration), BoxError> {
    let start = Instant::now();
    let deadline = start + run;
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let mut op = op.clone();
            let key = if hot {
                "hot".to_owned()
            } else {
                format!("t{i}")
            };
            tokio::spawn(async move {
                let mut c = Counts::default();
                let mut first_error = None;
                while Instant::now() < deadline {
                    match op.decide(&key).await {
                        Ok(allowed) => {
                            c.decisions += 1;
                            c.admitted += u64::from(allowed);
                        }
                        Err(e) => {
                            c.errors += 1;
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                (c, first_error)
            })
        })
        .collect();
    let mut total = Counts::default();
    for h in handles {
        let (c, first_error) = h.await?;
        if let Some(e) = first_error {
            eprintln!("  task error ({} in this task), first: {e}", c.errors);
        }
        total.decisions += c.decisions;
        total.admitted += c.admitted;
        total.errors += c.errors;
    }
    Ok((total, start.elapsed()))
}

/// This process's CPU time so far (user + system), in clock ticks.
fn cpu_ticks() -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').ok_or("/proc/self/stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// A measured row: what the server and the tasks counted.
struct Measured {
    counts: Counts,
    elapsed: Duration,
    delta: Delta,
    cpu_ticks: u64,
}

async fn measure(
    op: &Op,
    tasks: usize,
    run: Duration,
    hot: bool,
    stats: &mut RedisConnection,
) -> Result<Measured, BoxError> {
    let before = Snapshot::take(stats).await?;
    let ticks = cpu_ticks()?;
    let (counts, elapsed) = drive(op, tasks, run, hot).await?;
    let cpu_ticks = cpu_ticks()? - ticks;
    let after = Snapshot::take(stats).await?;
    Ok(Measured {
        counts,
        elapsed,
        delta: before.delta(&after, op.scripted()),
        cpu_ticks,
    })
}

/// The common fields of an output line.
fn fields(name: &str, tasks: usize, m: &Measured) -> String {
    let d = m.counts.decisions;
    format!(
        "name={name}\ttasks={tasks}\tsecs={:.6}\tdecisions={d}\tadmitted={}\terrors={}\t\
         round_trips={}\tclient={}\tin_script={}\tredis_exec_us={}\tredis_cpu_s={:.6}\t\
         client_cpu_ticks={}",
        m.elapsed.as_secs_f64(),
        m.counts.admitted,
        m.counts.errors,
        m.delta.round_trips(),
        Delta::per_decision(&m.delta.client, d),
        Delta::per_decision(&m.delta.in_script, d),
        m.delta.exec_usec,
        m.delta.cpu_secs,
        m.cpu_ticks,
    )
}

#[allow(clippy::cast_precision_loss, reason = "rates for progress lines")]
fn rate(m: &Measured) -> f64 {
    m.counts.decisions as f64 / m.elapsed.as_secs_f64()
}

async fn flush(stats: &mut RedisConnection) -> Result<(), BoxError> {
    let () = redis::cmd("FLUSHALL").query_async(stats).await?;
    Ok(())
}

async fn run(server: &RedisServer, s: &Settings) -> Result<(), BoxError> {
    let url = server.url();
    let mut stats = RedisBackend::connect(RedisConfig::new(url.as_str()).timeout(s.timeout))
        .await?
        .connection();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut stats)
        .await?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim();
    println!(
        "meta\tredis_version={version}\tworkers={}\tsecs={}\twarmup={}\trounds={}\tlease={}\t\
         timeout_ms={}\tcontention_tasks={}\trate={RATE}\tburst={BURST}\thot_lease={HOT_LEASE}",
        s.workers,
        s.secs.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.rounds,
        s.lease,
        s.timeout.as_millis(),
        s.contention_tasks,
    );
    for round in 1..=s.rounds {
        for &tasks in &s.tasks {
            for name in &s.rows {
                flush(&mut stats).await?;
                let op = build(name, &url, s, false).await?;
                // Warm-up: connects, loads the script (NOSCRIPT, SCRIPT
                // LOAD, EVALSHA), takes the first lease.
                drive(&op, tasks, s.warmup, false).await?;
                let m = measure(&op, tasks, s.secs, false, &mut stats).await?;
                eprintln!(
                    "round {round}, {name}, {tasks} tasks: {:.0} decisions/s, {} round trips for {} decisions, {} errors",
                    rate(&m),
                    m.delta.round_trips(),
                    m.counts.decisions,
                    m.counts.errors
                );
                println!("row\tround={round}\t{}", fields(name, tasks, &m));
            }
        }
    }
    // Contention: every task on one key, the small quota.
    let tasks = s.contention_tasks;
    for name in &s.rows {
        flush(&mut stats).await?;
        let op = build(name, &url, s, true).await?;
        if op.scripted() {
            // Load the script on another key (the leased row's own key is
            // "all", never "hot": its lease is taken in the run).
            let mut warm = op.clone();
            if !matches!(warm, Op::Leased(_)) {
                warm.decide("warm").await?;
            }
        }
        let m = measure(&op, tasks, s.secs, true, &mut stats).await?;
        // The most each may admit over the run, by its own contract.
        let micros = m.elapsed.as_micros();
        let gcra = u64::from(BURST) + u64::try_from(u128::from(RATE) * micros / 1_000_000)?;
        let (bound, how) = match &op {
            Op::FixedWindow(_, w) => (w.bound(m.elapsed), "limit × (⌊T / window⌋ + 1)"),
            Op::Leased(l) => (gcra + u64::from(l.lease()), "burst + rate·T + lease"),
            _ => (gcra, "burst + rate·T"),
        };
        let over = m.counts.admitted.saturating_sub(bound);
        eprintln!(
            "contention, {name}, {tasks} tasks on one key: {} admitted of {} decisions, bound {bound}, {over} over",
            m.counts.admitted, m.counts.decisions
        );
        println!(
            "contention\t{}\tbound={bound}\tbound_how={how}\tover={over}\tgcra_bound={gcra}",
            fields(name, tasks, &m)
        );
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    if let Some(dir) = &settings.dir {
        std::fs::create_dir_all(dir)?;
    }
    let server = RedisServer::start(settings.dir.as_deref())?;
    eprintln!("redis-server pid {} at {}", server.pid(), server.url());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&server, &settings));
    drop(runtime);
    drop(server);
    result
}
