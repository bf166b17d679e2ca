//! [`FleetBreaker`]: a circuit breaker whose decision a fleet shares
//! through Redis (see the type's docs).

mod admin;
mod builder;
mod notify;
mod script;
mod slot;
mod sync;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox::breaker::{Decision, Metrics, State};
use fusebox::{CircuitBreaker, Instant};
use tokio::sync::Notify;

pub use self::builder::FleetBreakerBuilder;
use self::script::{Keys, Op, GRANTED};
use self::slot::Slot;
use super::super::BackendError;
use super::{RedisBackend, RedisConnection};
use crate::policy::{Breaker, BreakerObserver, Recorded};
use crate::CallError;

/// A circuit breaker whose *decision* a whole fleet
/// shares through Redis, while every call is decided by the local core
/// breaker.
///
/// Only decisions travel. The shared decision is one string under
/// `<prefix>:{breaker:<name>}:decision`:
///
/// ```text
/// fb1:<version>:<state>:<open_until_us>:<streak>
/// ```
///
/// with `state` one of `c` (closed), `o` (open), `h` (half-open), `f`
/// (forced open), `open_until_us` a Redis `TIME` in µs (only for `o`, `0`
/// otherwise) and `streak` the re-opening streak (0..=15). It is changed
/// only by `scripts/breaker.lua`, which compares and sets on the version
/// and reads Redis `TIME`, so a transition happens once fleet-wide, and
/// which publishes the new version on `<prefix>:{breaker:<name>}:events`
/// (`PUBLISH`; on a Cluster `SPUBLISH`, sharded pub/sub).
/// The fleet's decision is applied to the local breaker with the core's
/// [`CircuitBreaker::merge`] (stale versions rejected, open times capped
/// at this instance's open time for the decision's streak).
///
/// Instances may be configured with different open times (a new
/// configuration rolled out one instance at a time). A stored opening is
/// honoured whoever wrote it, up to
/// [`Config::MAX_OPEN_FOR`](fusebox::breaker::Config::MAX_OPEN_FOR) away
/// (the longest any configuration may have, plus a minute for a Redis
/// clock stepping back), and every instance adopts the fleet's
/// open-until: while the open decision it applied has time left, it
/// refuses every call ([`state`](FleetBreaker::state) reads Open), even
/// once its own, shorter, open time has run out locally, with no request
/// to Redis; these refusals are counted in
/// [`trials_refused`](FleetBreakerMetrics::trials_refused). Its own open
/// time still governs its local breaker (and its calls while degraded).
/// A trial decided locally in the meantime (while degraded, or through
/// [`policy`](FleetBreaker::policy), which takes no fleet slot) closes
/// only the local breaker: the fleet refuses the close while its opening
/// lasts, the instance keeps refusing calls, and sends the close again at
/// each reconciliation, closing the fleet once the opening ends (for up
/// to one sync interval after that end, the instance admits calls while
/// the fleet's decision, run out, still reads open). An operator's
/// [`force_close`](FleetBreaker::force_close) or
/// [`reset`](FleetBreaker::reset) that failed closes the instance under
/// that opening for good, as documented there (a newer decision still
/// applies). Only a deadline
/// further away than `MAX_OPEN_FOR` is taken for forged: counted corrupt
/// and cut to the reading instance's `max_open_for`. (A hand with write
/// access can hold the fleet open longer anyway, by writing a
/// forced-open decision.)
///
/// * **Fast path.** A closed breaker's call never touches the network: it
///   is the core's two atomic loads. Local transitions wake the background
///   task, which publishes them; it also reconciles every sync interval
///   (the backstop). With [`FleetBreakerBuilder::notifications`] every
///   instance subscribes to `…:events` and applies a change within one
///   round trip.
/// * **Half-open.** When the fleet's open time is up, each trial call first
///   takes one of `half_open_permits` fleet-wide slots (`SET … PX` in the
///   script, `<prefix>:{breaker:<name>}:trial:<i>`), so at most that many
///   trials run across the fleet (instances configured with different
///   `half_open_permits` each take slots up to their own: the largest
///   bounds the fleet; give every instance the same); their result closes
///   or reopens it for all.
///   Only a trial the core recorded as a success counts toward closing (a
///   slow success is a failure; an ignored outcome is neither), and a
///   cancelled trial gives its slot back at once (the slot's TTL, by
///   default the timeout plus 1 s and at least `open_for`, frees it if
///   the instance dies). A slot's value claims the TTL it was set with
///   (`<version>:ttl<ms>:<token>`): one kept longer than its claim, with
///   a claim over a day, with no expiry, or with no claim (written by
///   hand, or by the version before) kept longer than the reading
///   instance's own trial TTL was set by no trial: it is forged, taken
///   over and counted [`corrupt`](FleetBreakerMetrics::corrupt). A slot
///   claiming a longer TTL than the reader's (an instance configured
///   with a longer one) is honoured until its claim runs out, so no
///   instance ever runs a trial beyond the configured permits; a hand
///   that writes a well-formed claim of a day shuts the trials for that
///   day, as a forced-open decision written by hand holds the fleet open.
///   During an upgrade from the version before, give every instance the
///   same trial TTL: its slots carry no claim. A trial that hangs keeps its slot until then;
///   with the core's `max_half_open` (`ConfigBuilder::max_half_open`) an
///   instance whose half-open period outlives it reopens the breaker on
///   its next call and publishes that as a failed trial, and the next
///   half-open decision has its slots free (a slot belongs to one
///   decision version): the hung trial, answering late, decides nothing.
///   A trip reopens a half-open decision (or one whose open time ran
///   out) only from an instance that holds it: a trip made before the
///   instance saw the fleet open leaves the trials to decide.
/// * **Lost replies.** A trip whose reply is lost (Redis stalled past the
///   timeout) is published again, the instance cannot tell whether the
///   script ran; each trip carries a token (a number that grows with
///   each new trip or admin command of the process), which the script
///   writes to the process's record
///   (`<prefix>:{breaker:<name>}:record:<nonce>`, one key per process,
///   kept a day after its last command) once it took the trip, so its
///   repeat (or an older trip arriving late) changes nothing, whatever
///   the fleet decided meanwhile: it does not reopen a fleet that served
///   that trip's open time and closed, nor stamp its quorum verdict anew
///   (which would keep it in the window longer). `force_open`/`force_close`
///   likewise (the same record): one sent again on a new connection (the
///   server closed the old one after running it) does not undo a trip or
///   another operator's command made in between, nor does an older
///   command of this instance's, timed out and run late (a trip or an
///   admin command), undo its newer one. A record the script did not
///   write (not a number, or kept longer than a day: no expiry) is
///   forged: counted [`corrupt`](FleetBreakerMetrics::corrupt) and
///   replaced.
/// * **Quorum.** With [`FleetBreakerBuilder::quorum`], a local trip opens
///   the fleet only once `min_instances` distinct instances tripped within
///   the window (`…:verdicts`, a sorted set); a lone bad instance still
///   protects itself locally, for its own open time, against the closed
///   fleet decisions that predate its trip; a closed decision made since
///   (newer than the one its trip was refused in) ends the trip: an
///   operator's close ([`force_close`](FleetBreaker::force_close) on any
///   instance, any number of times, or a newer version written by hand),
///   or the fleet's trials closing a fleet that opened after the trip.
///   One exception, with Redis's data lost (no persistence, a
///   `FLUSHALL`): instances rebuild the decision from what they hold, each
///   at the version it knows, so when the trip is refused in a decision
///   rebuilt at an older version than another instance knows, that
///   instance's rebuild, closed at a newer version, reads as a decision
///   made since the trip and ends it early.
/// * **Faults.** While Redis fails, calls are decided on local state alone
///   (local trips still protect the instance), [`FleetBreaker::is_degraded`]
///   is true, and the task retries with backoff. On reconnect a local trip
///   made meanwhile is published (no trip lost) unless a local trial has
///   closed the breaker again since, a newer fleet version is
///   merged, and a lost or corrupt stored value is repopulated from the
///   local state (a decision made since Redis lost its data, numbered
///   below this instance's version by instances that never saw it, is
///   kept and renumbered if it holds the breaker more firmly: forced >
///   open > half-open > closed; corrupt values, including keys of another type
///   and values longer than any instance writes (deleted once read), are
///   counted, logged once and replaced, never an error that would leave
///   the breaker degraded). One exception: the script writes no version
///   past 9 007 199 254 740 000 (its numbers are doubles, exact to 2^53),
///   which only a hand writing versions 2^32 ahead again and again, each
///   adopted, reaches; there every reconciliation fails with
///   [`BackendError::Protocol`] and the instances decide on local state
///   alone, degraded, until an operator deletes the decision key and
///   restarts them (their merged versions stay). Callers more impatient
///   than the command timeout (their own timeout shorter, a dropped
///   future) do not hide an outage: a closed breaker's call sends
///   nothing, and a half-open call given up on before its trial slot
///   request is answered has its slot given back by a task of its own,
///   whose command, like the background reconciliation's, runs to the
///   command timeout; a stalled or blackholed Redis is counted in
///   [`errors`](FleetBreakerMetrics::errors) and degrades the breaker all
///   the same.
/// * **Operators.** `force_open`/`force_close` apply fleet-wide; from
///   `redis-cli`, write a newer version, e.g. after `GET
///   fusebox:{breaker:payments}:decision` returned `fb1:7:c:0:0`, run
///   `SET fusebox:{breaker:payments}:decision fb1:8:f:0:0` (forced open) or
///   `fb1:8:c:0:0` (closed); instances apply it within one sync interval.
///   A value written with the version instances already hold (`fb1:7:f:0:0`
///   over `fb1:7:c:0:0`) is not applied by them: they hold that version,
///   their calls and [`fleet_state`](FleetBreaker::fleet_state) keep the
///   decision they applied, and a warning is logged once; an instance
///   that has not seen that version yet (one started since) does apply
///   it, and one whose local breaker is already in that state reports it
///   (Redis lost its data and an instance closed by its own trial wrote
///   its closed state back at the version it knew). Always write a newer
///   version.
///
/// Feature `redis`.
///
/// Cheap to clone; the background task stops when the
/// last clone drops.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
/// let breaker = FleetBreaker::builder("payments", core, backend)
///     .sync_interval(Duration::from_millis(200))
///     .build()
///     .await?;
/// let charged = breaker.call(async { Ok::<_, std::io::Error>(42) }).await?;
/// assert_eq!(charged, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FleetBreaker {
    inner: Arc<Inner>,
}

/// Quorum mode's parameters.
#[derive(Clone, Copy, Debug)]
struct Quorum {
    min: u32,
    window_ms: u64,
}

pub(super) struct Inner {
    policy: Breaker,
    /// The builder's observer, also told of the transitions no call makes
    /// (the fleet's decisions applied here, admin actions applied locally).
    observer: Option<Arc<dyn BreakerObserver>>,
    conn: RedisConnection,
    timeout: Duration,
    keys: Keys,
    /// A Cluster: the script `SPUBLISH`es (sharded pub/sub).
    sharded: bool,
    quorum: Option<Quorum>,
    instance: Arc<str>,
    /// A random number of this instance's (the OS's randomness, see
    /// `builder::nonce`), in trial tokens and record keys.
    nonce: u64,
    trial_ttl: Duration,
    notify: Arc<Notify>,
    sync_lock: tokio::sync::Mutex<()>,
    last: Mutex<Option<Decision>>,
    trips_published: AtomicU64,
    /// The trip being published (the local trip count it was made for,
    /// its token) until Redis answers it.
    pending_trip: Mutex<Option<(u64, String)>>,
    /// The decision version a local close was last reported for.
    close_reported: AtomicU64,
    /// Closes of the local breaker by its own trials (half-open to closed
    /// through the policy), counted by the observer hook: only these are
    /// reported to the fleet as a trial's success, never a `reset` or
    /// `force_close` of the core.
    trial_closes: Arc<AtomicU64>,
    /// `trial_closes` as last reported or found to have nothing to
    /// report (written under `sync_lock`).
    trial_closes_reported: AtomicU64,
    /// The local breaker is open by a trip the fleet did not take up.
    local_only: AtomicBool,
    /// The version of the closed fleet decision that trip was not taken
    /// up in (set with `local_only`): a newer closed decision was made
    /// since the trip and ends it (so does a rebuild at a newer version
    /// after Redis lost its data: see the type's docs).
    local_only_at: AtomicU64,
    degraded: AtomicBool,
    corrupt_logged: AtomicBool,
    /// A stored decision of the held version but another state was logged.
    conflict_logged: AtomicBool,
    corrupt: AtomicU64,
    errors: AtomicU64,
    syncs: AtomicU64,
    published: AtomicU64,
    /// Half-open calls refused for want of a fleet trial slot (after the
    /// core gave a permit: the core counts no refusal for them).
    trials_refused: AtomicU64,
    /// The fleet's opening last read (an open decision with time left,
    /// held by the local breaker): its version and when it ends here, as
    /// stored (not capped at this instance's `max_open_for`). Until then,
    /// while that version is the one merged, calls are refused whatever
    /// the local state (its own open time shorter, or closed by a trial
    /// decided locally), without asking Redis. Set and cleared with
    /// `fleet_holds`, under this lock.
    fleet_open: Mutex<Option<(u64, Instant)>>,
    /// `fleet_open` is set: read by every call (one atomic load on the
    /// closed fast path; the lock only while it is set).
    fleet_holds: AtomicBool,
    /// The version whose opening is not held here (`u64::MAX`: none): an
    /// operator's `force_close` or `reset` that failed closed this
    /// instance under it, locally only.
    fleet_open_waived: AtomicU64,
    tokens: AtomicU64,
    task: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Inner {
    /// Tells the observer (if any) of `t`, a transition of the local
    /// breaker that no call made.
    fn tell(&self, t: fusebox::breaker::Transition) {
        if let Some(observer) = &self.observer {
            observer.transition(self.policy.name(), t);
        }
    }

    /// Whether the local breaker is not open and every local trip has
    /// been published (so a success may count toward closing the fleet).
    fn holds_no_unpublished_trip(&self) -> bool {
        let trips = self.policy.core().metrics().trips;
        let state = self.policy.state();
        !unpublished(trips, self.trips_published.load(Ordering::Acquire), state)
            && !matches!(state, State::Open | State::ForcedOpen)
    }

    /// What is left at `now` of the fleet opening a trial request was last
    /// refused in, if the local breaker still holds that decision (its
    /// newest merged version) and it has not ended.
    /// Not while degraded: calls are then decided on local state alone.
    fn fleet_still_open(&self, now: Instant) -> Option<fusebox::Duration> {
        if !self.fleet_holds.load(Ordering::Acquire) || self.degraded.load(Ordering::Acquire) {
            return None;
        }
        let mut held = self
            .fleet_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (version, until) = (*held)?;
        if version == self.policy.core().merged_version() && now < until {
            return Some(until.saturating_duration_since(now));
        }
        // Over, or a newer decision merged since: never again.
        *held = None;
        self.fleet_holds.store(false, Ordering::Release);
        None
    }

    /// Records the fleet's opening `d` (open, with `left` as stored) that
    /// the local breaker holds, read at `now`.
    fn hold_fleet_open(&self, version: u64, left: std::time::Duration, now: Instant) {
        let mut held = self
            .fleet_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if left.is_zero() || self.fleet_open_waived.load(Ordering::Acquire) == version {
            if held.is_some_and(|(v, _)| v == version) {
                *held = None;
                self.fleet_holds.store(false, Ordering::Release);
            }
            return;
        }
        *held = Some((version, now.saturating_add(left.into())));
        self.fleet_holds.store(true, Ordering::Release);
    }

    /// Ends the hold of the fleet's opening `version`, and holds it no
    /// more (see `fleet_open_waived`).
    fn waive_fleet_open(&self, version: u64) {
        let mut held = self
            .fleet_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.fleet_open_waived.store(version, Ordering::Release);
        *held = None;
        self.fleet_holds.store(false, Ordering::Release);
    }

    /// The trial slot's TTL in ms, at most a day (the script takes a
    /// slot kept longer than the TTL it claims, or than a day, for a
    /// forged one).
    fn trial_ttl_ms(&self) -> u64 {
        const MAX_MS: u64 = 86_400_000;
        u64::try_from(self.trial_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_MS)
    }
}

/// Whether the core's trip counter, now `trips`, counts a trip not yet
/// published, the counter having read `published` when the last trip was,
/// and the local breaker now in `state` (read after `trips`).
/// A counter that went back was zeroed by the core's
/// [`reset`](CircuitBreaker::reset) (which is no trip): only the trips
/// counted since then are unpublished, as far as the counter shows (one
/// that came back to `published` before a reconciliation read it reads as
/// published: [`FleetBreaker::reset`] makes 0 the count to compare with,
/// so that none is missed). A trip leaves the breaker open
/// (half-open once its time is up): a counter moved while it is neither
/// was moved by the core's [`restore`](CircuitBreaker::restore) of a
/// closed or forced-open snapshot, which is no trip either.
fn unpublished(trips: u64, published: u64, state: State) -> bool {
    let moved = if trips < published {
        trips > 0
    } else {
        trips != published
    };
    moved && matches!(state, State::Open | State::HalfOpen)
}

/// Counters of a [`FleetBreaker`]'s traffic with Redis.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::backend::{FleetBreaker, FleetBreakerMetrics, RedisBackend, RedisConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Nothing listens on port 1: the breaker starts degraded, on local state.
/// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
/// let m: FleetBreakerMetrics = breaker.fleet_metrics();
/// assert_eq!(m.trials_refused, 0);
/// assert_ne!(m, FleetBreakerMetrics::default()); // the failed load is counted
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetBreakerMetrics {
    /// Reconciliations that reached Redis.
    pub syncs: u64,
    /// Commands that failed (timeouts, connection errors).
    pub errors: u64,
    /// Corrupt or hostile stored decisions rejected and replaced.
    pub corrupt: u64,
    /// Changes of the shared decision this instance made.
    pub published: u64,
    /// Calls of this instance refused by the fleet: half-open calls whose
    /// fleet trial slots were all taken (by other instances' trials), and
    /// calls made while the fleet's decision applied here is still open
    /// (an opening longer than this instance's own, or a local close the
    /// fleet refused). The local
    /// breaker had let them through, so its
    /// [`rejected`](fusebox::breaker::Metrics::rejected) does not count
    /// them; the registry's `fusebox_fleet_breaker_rejected_total` does.
    pub trials_refused: u64,
}

impl FleetBreaker {
    /// A builder for the breaker `name` (a registry name: an ASCII letter,
    /// then letters, digits and single `_`) over the local `core` breaker, sharing its decision through
    /// `backend`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// assert_eq!(breaker.name(), "payments");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn builder(
        name: impl Into<Arc<str>>,
        core: Arc<CircuitBreaker>,
        backend: RedisBackend,
    ) -> FleetBreakerBuilder {
        FleetBreakerBuilder::new(name.into(), core, backend)
    }

    /// Calls `future` if the breaker permits, like
    /// [`Breaker::call`](crate::policy::Breaker::call). Closed: no network.
    /// Half-open: the call first takes a fleet-wide trial slot (one script
    /// call); without one it is refused with [`CallError::Open`], and the
    /// builder's [observer](FleetBreakerBuilder::observer) is told of it
    /// as of any refused call. While degraded, trials are decided locally.
    ///
    /// # Errors
    ///
    /// As [`Breaker::call`](crate::policy::Breaker::call).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::CallError;
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// // Closed: the call runs, with no network.
    /// assert_eq!(breaker.call(async { Ok::<_, std::io::Error>(42) }).await?, 42);
    /// let failed = breaker.call(async { Err::<u32, _>("boom") }).await;
    /// assert!(matches!(failed, Err(CallError::Inner("boom"))));
    /// // One failure trips this breaker: the next call is refused.
    /// let refused = breaker.call(async { Ok::<_, &str>(1) }).await;
    /// assert!(matches!(refused, Err(CallError::Open { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn call<F, T, E>(&self, future: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let inner = &self.inner;
        let state = inner.policy.state();
        // The fleet's decision held here is still open (an opening longer
        // than this instance's own, or a local close the fleet refused):
        // refused, with no request to Redis.
        if let Some(left) = (inner.fleet_holds.load(Ordering::Relaxed)
            && matches!(state, State::Closed | State::HalfOpen))
        .then(|| inner.fleet_still_open(inner.policy.clock_now()))
        .flatten()
        {
            inner.trials_refused.fetch_add(1, Ordering::Relaxed);
            return Err(inner.policy.refused(State::Open, Some(left)));
        }
        if state != State::HalfOpen || self.is_degraded() {
            return inner.policy.call(future).await;
        }
        // Armed before the request, so a grant whose caller is cancelled
        // (or whose reply times out) is given back too.
        let mut slot = Slot::new(inner);
        let reply = inner
            .invoke(Op::Trial(inner.trial_ttl_ms(), &slot.token))
            .await;
        slot.answered = true;
        match reply {
            Ok(reply) if reply.flags & GRANTED != 0 => {
                if reply.decision.state == State::HalfOpen {
                    slot.version = Some(reply.decision.version);
                } else {
                    slot.armed = false; // closed meanwhile: no slot taken
                }
            }
            Ok(reply) => {
                slot.armed = false;
                // The fleet still open (an opening longer than this
                // instance's own open time) was recorded by the reply's
                // merge: refused locally until it ends, unless a newer
                // decision is applied meanwhile.
                // Refused as the policy refuses a call when its half-open
                // trials are all taken: logged and observed the same way.
                inner.trials_refused.fetch_add(1, Ordering::Relaxed);
                return Err(inner
                    .policy
                    .refused(reply.decision.state, reply.decision.open_remaining));
            }
            // Redis failed: degraded, the trial is decided locally (a slot
            // granted before the failure is still given back).
            Err(_) => {}
        }
        // Only a trial the core recorded as a success counts toward the
        // fleet's `close_after`; see `Slot` for the order of what follows.
        let (result, recorded) = inner.policy.call_recorded(future).await;
        slot.succeeded = recorded == Recorded::Success;
        result
    }

    /// The state a call made now would see (local, no network): the
    /// local breaker's, or Open while the fleet's decision applied here is
    /// open (an opening longer than this instance's own open time, or a
    /// local close the fleet refused; not while degraded).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox::breaker::State;
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// assert_eq!(breaker.state(), State::Closed);
    /// let _ = breaker.call(async { Err::<(), _>("boom") }).await;
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn state(&self) -> State {
        let inner = &self.inner;
        let state = inner.policy.state();
        if matches!(state, State::Closed | State::HalfOpen)
            && inner.fleet_still_open(inner.policy.clock_now()).is_some()
        {
            return State::Open;
        }
        state
    }

    /// The fleet's decision as last applied here (`None` before the first
    /// reconciliation reached Redis); compare with [`state`](Self::state),
    /// the local one. A stored decision that was not applied (one
    /// rewritten by hand without a new version, in a state the local
    /// breaker is not in) is not shown.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// // No reconciliation has reached Redis.
    /// assert_eq!(breaker.fleet_state(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn fleet_state(&self) -> Option<State> {
        self.inner
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|d| d.state)
    }

    /// The local core breaker. Its [`reset`](CircuitBreaker::reset) is
    /// local (this instance's state and counters; no trip is published),
    /// and can hide the next trip from the fleet: a trip counted after it
    /// that brings the core's counter back to the count last published
    /// before a reconciliation reads it is read as published already (one
    /// trip published, the core reset by hand, one trip: the other
    /// instances never open). [`reset`](Self::reset) does not: use it. Its
    /// [`restore`](CircuitBreaker::restore) publishes a trip only if it
    /// leaves the breaker open or half-open with the trip counter moved
    /// (the fleet then opens as for a local trip); a restored closed or
    /// forced-open state publishes nothing, whatever its counters.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", Arc::clone(&core), backend).build().await?;
    /// assert!(Arc::ptr_eq(breaker.core(), &core));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn core(&self) -> &Arc<CircuitBreaker> {
        self.inner.policy.core()
    }

    /// The local policy (every call's decision is the core's).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .call_timeout(Duration::from_secs(2))
    ///     .build()
    ///     .await?;
    /// assert_eq!(breaker.policy().name(), "payments");
    /// assert_eq!(breaker.policy().timeout(), Some(Duration::from_secs(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn policy(&self) -> &Breaker {
        &self.inner.policy
    }

    /// The name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// assert_eq!(breaker.name(), "payments");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        self.inner.policy.name()
    }

    /// The Redis key of the shared decision.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// assert_eq!(breaker.decision_key(), "fusebox:{breaker:payments}:decision");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn decision_key(&self) -> &str {
        &self.inner.keys.decision
    }

    /// Whether Redis failed the last reconciliation or admin action (calls
    /// then decide on local state alone). A trial slot's request or
    /// release, which may only read (a full or read-only Redis answers
    /// reads), does not end an outage; the next reconciliation does.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// assert!(breaker.is_degraded());
    /// // Degraded, calls are still decided, locally.
    /// assert_eq!(breaker.call(async { Ok::<_, std::io::Error>(1) }).await?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Acquire)
    }

    /// The counters.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// let m = breaker.fleet_metrics();
    /// assert_eq!((m.syncs, m.published), (0, 0));
    /// assert!(m.errors >= 1); // loading the stored decision failed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn fleet_metrics(&self) -> FleetBreakerMetrics {
        FleetBreakerMetrics {
            syncs: self.inner.syncs.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
            corrupt: self.inner.corrupt.load(Ordering::Relaxed),
            published: self.inner.published.load(Ordering::Relaxed),
            trials_refused: self.inner.trials_refused.load(Ordering::Relaxed),
        }
    }

    /// The local core breaker's counters.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// breaker.call(async { Ok::<_, std::io::Error>(()) }).await?;
    /// let _ = breaker.call(async { Err::<(), _>("boom") }).await;
    /// let m = breaker.metrics();
    /// assert_eq!((m.successes, m.failures, m.trips), (1, 1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn metrics(&self) -> Metrics {
        self.core().metrics()
    }

    /// Reconciles with Redis now (the background task does it every sync
    /// interval and after every local transition).
    ///
    /// # Errors
    ///
    /// The backend's error; the breaker is then degraded.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// let err = breaker.sync().await.unwrap_err();
    /// assert!(err.is_fault());
    /// assert!(breaker.is_degraded());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn sync(&self) -> Result<State, BackendError> {
        self.inner.reconcile().await.map(|r| r.decision.state)
    }
}

impl std::fmt::Debug for FleetBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBreaker")
            .field("name", &self.name())
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

/// The policy's clock, read now.
trait ClockNow {
    fn clock_now(&self) -> Instant;
}

impl ClockNow for Breaker {
    fn clock_now(&self) -> Instant {
        use fusebox::Clock;
        self.clock().now()
    }
}
