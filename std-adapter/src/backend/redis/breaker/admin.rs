//! The admin actions of a [`FleetBreaker`]: forcing it open or closed,
//! and resetting it, fleet-wide (what `POST admin/breakers/{name}/{action}`
//! runs on a fleet breaker).

use std::sync::atomic::Ordering;

use super::script::{Op, Record};
use super::{ClockNow, FleetBreaker};
use crate::backend::BackendError;

impl super::Inner {
    /// This process's record key and a new token for one admin
    /// command (the same when the connection sends that command again:
    /// the script runs it once).
    fn admin_record(&self) -> (String, String) {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed).to_string();
        (self.keys.record(self.nonce), token)
    }
}

impl FleetBreaker {
    /// Forces the breaker open fleet-wide (until [`force_close`](Self::force_close)).
    /// It waits for the exchanges with Redis this instance has in flight
    /// (a reconciliation, a trial slot given back), each bounded by the
    /// command timeout: their replies, older, are applied before it.
    ///
    /// # Errors
    ///
    /// The backend's error: the breaker is then forced open locally only
    /// (a newer fleet decision replaces it; a command that timed out may
    /// still have reached Redis).
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
    /// // Redis is out: forced open on this instance only.
    /// assert!(breaker.force_open().await.is_err());
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn force_open(&self) -> Result<(), BackendError> {
        // After the reconciliation in flight: its reply, older than this
        // decision, is applied first (see `force_close`).
        let _one = self.inner.sync_lock.lock().await;
        let (key, token) = self.inner.admin_record();
        let record = Record {
            key: &key,
            token: &token,
        };
        let r = self.inner.invoke(Op::ForceOpen(record)).await.map(drop);
        if r.is_err()
            && let Some(t) = self.core().force_open(self.policy().clock_now())
        {
            self.inner.tell(t);
        }
        r
    }

    /// Closes the breaker fleet-wide, including the instances open on a
    /// trip of their own the fleet did not take up (below the quorum),
    /// which a closed fleet decision otherwise leaves to run its open
    /// time: this one at once, the others when they apply this decision
    /// (within a sync interval, or one round trip with notifications),
    /// unless they have applied a newer one meanwhile. It waits as
    /// [`force_open`](Self::force_open) does.
    ///
    /// # Errors
    ///
    /// The backend's error: the breaker is then closed locally only, and
    /// that local close is never reported to the fleet as a trial's
    /// success (a command that timed out may still have reached Redis).
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
    /// let _ = breaker.call(async { Err::<(), _>("boom") }).await;
    /// assert_eq!(breaker.state(), State::Open);
    /// // Redis is out: closed on this instance only.
    /// assert!(breaker.force_close().await.is_err());
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn force_close(&self) -> Result<(), BackendError> {
        // After the reconciliation in flight: the reply of a trip it
        // publishes below the quorum would mark this instance open on its
        // own trip again after the line below, and the forced close would
        // then not be applied here.
        let _one = self.inner.sync_lock.lock().await;
        self.force_close_locked().await
    }

    /// [`force_close`](Self::force_close), the sync lock held.
    async fn force_close_locked(&self) -> Result<(), BackendError> {
        // Asked here: a local-only trip (below the quorum) ends too. Left
        // set, the forced close was not applied here (a closed decision
        // does not end such a trip): the instance stayed open.
        self.inner.local_only.store(false, Ordering::Release);
        let (key, token) = self.inner.admin_record();
        let record = Record {
            key: &key,
            token: &token,
        };
        let r = self.inner.invoke(Op::ForceClose(record)).await.map(drop);
        if r.is_err() {
            if let Some(t) = self.core().force_close(self.policy().clock_now()) {
                self.inner.tell(t);
            }
            // Closed here only: never reported to the fleet later as if
            // trials had closed it.
            let held = *self
                .inner
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(d) = held {
                self.inner
                    .close_reported
                    .store(d.version, Ordering::Release);
                // Nor overridden here by that decision's opening, read
                // again once Redis answers: the operator closed this
                // instance (a newer decision still applies).
                self.inner.waive_fleet_open(d.version);
            }
        }
        r
    }

    /// Closes the breaker fleet-wide, as [`force_close`](Self::force_close),
    /// and zeroes the local core's counters ([`CircuitBreaker::reset`](fusebox::CircuitBreaker::reset));
    /// the admin route's `reset`. Use it rather than resetting the core
    /// by hand: the trips counted after it are published as the new trips
    /// they are (the core's counter, zeroed between two reconciliations,
    /// may come back to the count last published, and its trip then read
    /// as published already: the fleet never heard of it).
    ///
    /// # Errors
    ///
    /// The backend's error: the breaker is then closed locally only (as
    /// [`force_close`](Self::force_close)), its counters zeroed all the same.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend).build().await?;
    /// let _ = breaker.call(async { Err::<(), _>("boom") }).await;
    /// assert_eq!(breaker.core().metrics().trips, 1);
    /// // Redis is out: closed on this instance only, the counters zeroed.
    /// assert!(breaker.reset().await.is_err());
    /// assert_eq!(breaker.state(), State::Closed);
    /// assert_eq!(breaker.core().metrics().trips, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn reset(&self) -> Result<(), BackendError> {
        // One hold of the sync lock for the force-close and the core's
        // reset: no reconciliation between them (one woken by a trip
        // counted while the force-close ran would publish it, the fleet
        // open again on a trip the reset then zeroes here), nor between
        // the core's reset and the new count to compare with (one that
        // read the counter before would store it).
        let _one = self.inner.sync_lock.lock().await;
        let r = self.force_close_locked().await;
        if let Some(t) = self.core().reset(self.policy().clock_now()) {
            self.inner.tell(t);
        }
        self.inner.trips_published.store(0, Ordering::Release);
        // A trip whose reply was lost before the reset is no longer sent:
        // a trip counted since, of the same count, is a new one.
        *self
            .inner
            .pending_trip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        r
    }
}
