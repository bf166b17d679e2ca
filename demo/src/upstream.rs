//! The simulated flaky upstream: a real HTTP/1 server (hyper) on
//! `127.0.0.1:0` that plays a [`Scenario`] and counts what reaches it.
//!
//! `GET /item/{key}` answers `200` with a small body, `500` (an error), or
//! `503` (down, or shedding load beyond its capacity), after the service
//! time the scenario names. Its random draws come from one `fastrand` RNG
//! seeded with `--seed`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::scenario::{Conditions, Scenario};

/// What reached the upstream, counted by the upstream itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Every request received.
    pub total: u64,
    /// Received while the scenario had it failing (burst, outage, recovery).
    pub while_failing: u64,
    /// Received during the outage.
    pub during_outage: u64,
    /// Answered `200`.
    pub ok: u64,
    /// Answered `500`.
    pub errors: u64,
    /// Answered `503` (down or shedding load).
    pub unavailable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    total: AtomicU64,
    while_failing: AtomicU64,
    during_outage: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    unavailable: AtomicU64,
}

/// The upstream's mutable state: its RNG and the load of the current
/// 100 ms slot (for shedding beyond capacity).
#[derive(Debug)]
struct Dice {
    rng: fastrand::Rng,
    slot: u128,
    in_slot: u32,
}

struct State {
    scenario: Arc<Scenario>,
    started: Instant,
    /// Nominal capacity, in calls per 100 ms.
    capacity_per_slot: f64,
    counters: Counters,
    dice: Mutex<Dice>,
}

/// How one call is answered.
enum Answer {
    Ok(Duration),
    Error(Duration),
    Unavailable,
}

/// How long [`Upstream::start`] waits for a file descriptor to bind with
/// when the process has none free: the previous run's connections are
/// closed by tasks that may not have run yet (found by CI: under
/// `ulimit -n 64` with 40 descriptors inherited from the harness, the
/// second run's bind failed now and then with `EMFILE`, ending the storm).
const BIND_PATIENCE: Duration = Duration::from_secs(2);

/// A running upstream. [`stop`](Self::stop) closes every connection and
/// waits until they are closed; dropping it aborts them without waiting.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("capacity_per_slot", &self.capacity_per_slot)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts playing `scenario` now, with a
    /// nominal capacity of `capacity_rps` calls per second.
    ///
    /// # Errors
    ///
    /// The bind's error; out of file descriptors, once none has been
    /// released for [`BIND_PATIENCE`], with a hint to raise `ulimit -n`.
    pub async fn start(
        scenario: Arc<Scenario>,
        seed: u64,
        capacity_rps: u32,
    ) -> std::io::Result<Self> {
        let listener = bind().await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            scenario,
            started: Instant::now(),
            capacity_per_slot: f64::from(capacity_rps) / 10.0,
            counters: Counters::default(),
            dice: Mutex::new(Dice {
                rng: fastrand::Rng::with_seed(seed),
                slot: 0,
                in_slot: 0,
            }),
        });
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(serve(listener, Arc::clone(&state), stopped));
        Ok(Self {
            addr,
            state,
            server,
            stop: Some(stop),
        })
    }

    /// Stops listening and closes every connection, returning once their
    /// descriptors are released (so that the next run finds them free).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }

    /// Where it listens.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When its story started.
    pub fn started(&self) -> Instant {
        self.state.started
    }

    /// What reached it so far.
    pub fn counts(&self) -> UpstreamCounts {
        let c = &self.state.counters;
        UpstreamCounts {
            total: c.total.load(Relaxed),
            while_failing: c.while_failing.load(Relaxed),
            during_outage: c.during_outage.load(Relaxed),
            ok: c.ok.load(Relaxed),
            errors: c.errors.load(Relaxed),
            unavailable: c.unavailable.load(Relaxed),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // The accept loop owns the connections' JoinSet: aborting it drops
        // the set, which aborts every connection.
        self.server.abort();
    }
}

/// `127.0.0.1:0`, waiting up to [`BIND_PATIENCE`] for a file descriptor.
async fn bind() -> std::io::Result<TcpListener> {
    let deadline = Instant::now() + BIND_PATIENCE;
    loop {
        match TcpListener::bind(("127.0.0.1", 0)).await {
            Err(e) if out_of_descriptors(&e) => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open the upstream's socket: {e}; \
                             raise `ulimit -n` or run fewer --clients"
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            bound => return bound,
        }
    }
}

/// `EMFILE` (the process's limit) or `ENFILE` (the system's).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24 | 23))
}

/// Accepts connections until `stopped` fires (then closes every one and
/// waits for them) or the task is aborted.
async fn serve(listener: TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, say: let some connections finish.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&state)));
            // A client hanging up mid-call is no error of the upstream's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    connections.shutdown().await;
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let t = state.started.elapsed();
    let conditions = state.scenario.conditions(t);
    let c = &state.counters;
    c.total.fetch_add(1, Relaxed);
    if conditions.kind.is_failing() {
        c.while_failing.fetch_add(1, Relaxed);
    }
    if conditions.down {
        c.during_outage.fetch_add(1, Relaxed);
    }
    let answer = state.answer(t, &conditions);
    let (status, body) = match answer {
        Answer::Unavailable => {
            c.unavailable.fetch_add(1, Relaxed);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"unavailable"),
            )
        }
        Answer::Error(after) => {
            tokio::time::sleep(after).await;
            c.errors.fetch_add(1, Relaxed);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"internal error"),
            )
        }
        Answer::Ok(after) => {
            tokio::time::sleep(after).await;
            c.ok.fetch_add(1, Relaxed);
            let key = request.uri().path().trim_start_matches("/item/");
            let body = format!("item {key} as of {} ms", t.as_millis());
            (StatusCode::OK, Bytes::from(body))
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

impl State {
    /// Draws this call's answer under `conditions` at `t`.
    fn answer(&self, t: Duration, conditions: &Conditions) -> Answer {
        if conditions.down {
            return Answer::Unavailable;
        }
        let mut dice = self.dice.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = t.as_millis() / 100;
        if slot != dice.slot {
            dice.slot = slot;
            dice.in_slot = 0;
        }
        dice.in_slot += 1;
        if f64::from(dice.in_slot) > self.capacity_per_slot * conditions.capacity {
            return Answer::Unavailable;
        }
        let (low, high) = conditions.latency;
        let mut latency = low + high.saturating_sub(low).mul_f64(dice.rng.f64());
        if dice.rng.f64() < conditions.tail_chance {
            latency *= conditions.tail_factor;
        }
        if dice.rng.f64() < conditions.error_rate {
            Answer::Error(latency / 2)
        } else {
            Answer::Ok(latency)
        }
    }
}
