//! The HTTP admin actions on a registered fleet breaker, against a real
//! redis-server: `force-open`, `force-close` and `reset` posted to one
//! instance's router apply fleet-wide (the other instance follows). Before,
//! a fleet breaker, shown on the dashboard and in the health report, was an
//! `unknown_breaker` to the admin route.

use crate::http_common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::core_breaker;
use crate::common::fleet::{backend, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::State;
use fusebox_std::backend::FleetBreaker;
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::Registry;
use hyper::Method;

const TOKEN: &str = "admin-token-0123456789";

async fn instance(url: &str, registry: &Registry) -> FleetBreaker {
    let fleet = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(url).await,
    )
    .sync_interval(Duration::from_millis(50))
    .build()
    .await
    .expect("fleet breaker");
    registry.register_fleet_breaker(&fleet).unwrap();
    fleet
}

/// The admin router over `registry` (token, admin on), served on a free
/// loopback port.
struct Admin(http_common::Server);

impl Admin {
    async fn serve(registry: &Arc<Registry>) -> Self {
        let options = HttpOptions::builder()
            .bearer_token(TOKEN)
            .admin(true)
            .build()
            .unwrap();
        Self(http_common::serve(router(Arc::clone(registry), options)).await)
    }

    /// `POST admin/breakers/payments/{action}` with the token.
    async fn post(&self, action: &str) -> http_common::Reply {
        let url = self.0.url(&format!("/admin/breakers/payments/{action}"));
        http_common::call(Method::POST, &url, Some(&format!("Bearer {TOKEN}"))).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_on_a_fleet_breaker_apply_fleet_wide() {
    let server = RedisServer::start();
    let url = server.url();
    let (ra, rb) = (Arc::new(Registry::new()), Registry::new());
    let a = instance(&url, &ra).await;
    let b = instance(&url, &rb).await;
    let admin = Admin::serve(&ra).await;

    let opened = admin.post("force-open").await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(
        opened.json(),
        serde_json::json!({"name": "payments", "action": "force-open", "changed": true, "state": "forced_open", "fleet": true})
    );
    assert_eq!(a.state(), State::ForcedOpen);
    until_state(&b, State::ForcedOpen, Duration::from_secs(3)).await;

    let closed = admin.post("force-close").await;
    assert_eq!(
        (
            closed.json()["state"].clone(),
            closed.json()["fleet"].clone()
        ),
        ("closed".into(), true.into())
    );
    until_state(&b, State::Closed, Duration::from_secs(3)).await;

    // A trip, then a reset: closed fleet-wide, the local counters zeroed.
    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    until_state(&b, State::Open, Duration::from_secs(3)).await;
    let reset = admin.post("reset").await;
    assert_eq!(
        (
            reset.json()["changed"].clone(),
            reset.json()["state"].clone()
        ),
        (true.into(), "closed".into())
    );
    assert_eq!(a.core().metrics().trips, 0, "counters zeroed");
    until_state(&b, State::Closed, Duration::from_secs(3)).await;

    let unknown = admin.post("explode").await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.json()["error"].clone()),
        (404, "unknown_action".into())
    );
}

/// A fleet breaker built over the registry's own breaker of its name (a
/// breaker the configuration declares, or one marked required): the
/// admin route found the in-process breaker first and forced its core
/// open on this instance only, never fleet-wide, and said nothing of it
/// (no `"fleet"` in the answer); the other instance stayed closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_breaker_over_the_registrys_breaker_is_acted_on_fleet_wide() {
    let server = RedisServer::start();
    let url = server.url();
    let registry = Arc::new(Registry::new());
    let config = fusebox::breaker::Config::builder()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(30).into())
        .half_open_permits(1)
        .build()
        .unwrap();
    let core = registry.breaker("payments", config).unwrap();
    let a = FleetBreaker::builder("payments", core, backend(&url).await)
        .sync_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("fleet breaker");
    registry.register_fleet_breaker(&a).unwrap();
    let b = instance(&url, &Registry::new()).await;
    let admin = Admin::serve(&registry).await;
    let opened = admin.post("force-open").await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(
        opened.json(),
        serde_json::json!({"name": "payments", "action": "force-open", "changed": true, "state": "forced_open", "fleet": true})
    );
    assert_eq!(a.state(), State::ForcedOpen);
    until_state(&b, State::ForcedOpen, Duration::from_secs(3)).await;
}

/// A trip right after an admin `reset`: the reset zeroed the core's trip
/// counter under the fleet breaker, and the next trip brought it back to
/// the count last published, so it read as published already: the fleet
/// never heard of it (the other instance stayed closed, this one open
/// alone). Instance A syncs only on its own transitions here (a long
/// interval), so no reconciliation falls between the reset and the trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_after_an_admin_reset_is_published() {
    let server = RedisServer::start();
    let url = server.url();
    let registry = Arc::new(Registry::new());
    let a = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(&url).await,
    )
    .sync_interval(Duration::from_secs(600))
    .build()
    .await
    .expect("fleet breaker");
    registry.register_fleet_breaker(&a).unwrap();
    let b = instance(&url, &Registry::new()).await;
    let admin = Admin::serve(&registry).await;

    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    until_state(&b, State::Open, Duration::from_secs(3)).await;
    let reset = admin.post("reset").await;
    assert_eq!(reset.json()["fleet"], true, "{}", reset.body);
    until_state(&b, State::Closed, Duration::from_secs(3)).await;
    assert_eq!(a.core().metrics().trips, 0);

    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(a.core().metrics().trips, 1);
    until_state(&b, State::Open, Duration::from_secs(3)).await;
}

/// A force-close posted to an instance open on a trip of its own that
/// the fleet did not take up (below the quorum): the fleet's decision
/// was written closed, but the instance kept its local-only trip open
/// (a closed decision does not end one before its open time), so the
/// action answered `"changed": false, "state": "open"` and the instance
/// went on refusing every call for its whole open time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_close_closes_an_instance_open_below_the_quorum() {
    let server = RedisServer::start();
    let url = server.url();
    let registry = Arc::new(Registry::new());
    let a = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(&url).await,
    )
    .quorum(2, Duration::from_secs(60))
    .sync_interval(Duration::from_millis(50))
    .build()
    .await
    .expect("fleet breaker");
    registry.register_fleet_breaker(&a).unwrap();
    let admin = Admin::serve(&registry).await;

    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    a.sync().await.expect("sync");
    assert_eq!(
        (a.state(), a.fleet_state()),
        (State::Open, Some(State::Closed)),
        "open here alone: one instance of the two the quorum needs"
    );
    let closed = admin.post("force-close").await;
    assert_eq!(
        closed.json(),
        serde_json::json!({"name": "payments", "action": "force-close", "changed": true, "state": "closed", "fleet": true})
    );
    assert_eq!(a.state(), State::Closed);
    a.sync().await.expect("sync");
    assert_eq!(a.state(), State::Closed, "and stays closed");
    assert!(a.call(async { Ok::<_, &str>(()) }).await.is_ok());
}

/// A trip counted while a reset's force-close is in flight (Redis slow to
/// answer): the force-close's closed decision is then not applied here
/// (a trip not yet published comes first), and before, `reset` let go of
/// the sync lock between the force-close and zeroing the core: the
/// reconciliation the trip had woken, waiting for that lock, published
/// the trip (the fleet open again, the other instance following for the
/// whole open time), and the reset then closed this instance and zeroed
/// its trip alone. The instance and the fleet disagreed: this one closed,
/// its own trip holding every other open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_during_a_reset_leaves_the_fleet_and_the_instance_agreeing() {
    let server = RedisServer::start();
    let url = server.url();
    let a = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(&url).await,
    )
    .sync_interval(Duration::from_secs(600))
    .build()
    .await
    .expect("fleet breaker");
    let a = Arc::new(a);
    let b = instance(&url, &Registry::new()).await;
    // Redis stalls (for less than the 500 ms timeout) under the reset's
    // force-close; a trips meanwhile.
    server.signal("STOP");
    let resetting = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.reset().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(a.core().metrics().trips, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.signal("CONT");
    resetting.await.unwrap().expect("the reset answered");
    // Every reconciliation woken meanwhile has run; b has synced.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.sync().await.expect("sync"), State::Closed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (a.state(), a.fleet_state(), b.state()),
        (State::Closed, Some(State::Closed), State::Closed)
    );
}
