//! HTTP endpoints for a [`Registry`] on axum 0.8 (feature `http`): probes,
//! the health report, Prometheus metrics, a live dashboard, and opt-in
//! admin actions on breakers.
//!
//! | route | auth | answers |
//! |---|---|---|
//! | `GET livez` | never | 200 `{"status":"alive"}`, 503 `{"status":"dead"}` ([`HttpOptionsBuilder::liveness`]) |
//! | `GET readyz` | never | 200 `{"status":"ready"}`, 503 `{"status":"not_ready"}` (the report's `ready`) |
//! | `GET health` | token | the [`HealthReport`](crate::health::HealthReport) JSON, 200 when ready, 503 when not |
//! | `GET metrics` | token | [`Registry::to_prometheus`] and `fusebox_http_refused_total{reason}` (below), `Content-Type: text/plain; version=0.0.4; charset=utf-8` |
//! | `GET dashboard` | never (holds no data) | the dashboard page, HTML |
//! | `GET dashboard/data` | token | `{"now_us", "health", "timelines", "fleet_timelines" (feature `redis`, when a fleet breaker is registered), "rejections", "missed_events"}` |
//! | `POST admin/breakers/{name}/{action}` | token, only if [`admin`](HttpOptionsBuilder::admin) | `{"name", "action", "changed", "state"}`; `action` is `force-open`, `force-close` or `reset`; on a registered fleet breaker (feature `redis`; also when its core is the in-process breaker of its name) fleet-wide (`reset`: closed fleet-wide, local counters zeroed), with `"fleet"`: false when Redis did not take it (then applied on this instance only) |
//!
//! *token*: with a [bearer token](HttpOptionsBuilder::bearer_token)
//! configured, the request needs `Authorization: Bearer <token>` (compared
//! in constant time; one `Authorization` field: a request with two is
//! refused), else 401 [`HttpError::Unauthorized`]. Without one
//! these routes are open: put them behind your own auth layer with
//! [`routes`] (its `protected` router), or keep them off the public
//! network (building them without a token logs one `info` line saying
//! so). Admin actions are refused without a token
//! ([`HttpConfigError::AdminWithoutToken`]); without `admin(true)` their
//! route does not exist (404). Every answer of these routes, refusals
//! included, carries `X-Content-Type-Options: nosniff`.
//!
//! Errors are [`HttpError`]s: a JSON `{"error", "message"}` body that
//! never carries a token and shows names [redacted](crate::redact). Each
//! one the protected routes answer is counted in `/metrics` as
//! `fusebox_http_refused_total{reason}`, `reason` being its
//! [`code`](HttpError::code) (`unauthorized`, `unknown_breaker`,
//! `unknown_action`, `bad_path`): a client guessing tokens or probing
//! names shows up there.
//!
//! Every route is relative: nest the router under any prefix
//! (`Router::nest("/ops", …)`, or one with parameters of its own such as
//! `"/tenants/{tenant}"`) but the root, or [`merge`](Router::merge) it at
//! the root (axum's `nest` panics on `"/"` and `""`: "Nesting at the root
//! is no longer supported"); the dashboard fetches its data by a relative
//! URL. The prefix is matched against the request's path as sent, percent-
//! encoded: nest under `"/%C3%A9"`, not `"/é"`, which no request matches.
//!
//! `health`, `metrics` and `dashboard/data` build their answer on tokio's
//! blocking pool ([`spawn_blocking`](tokio::task::spawn_blocking)): it
//! grows with what the registry tracks, and the async workers, serving
//! the probes and the application, are not held while it is built. As
//! many are built at once as the machine has cores; further requests wait
//! their turn without holding a thread. Serve the router on a tokio
//! runtime (as `axum::serve` does).
//!
//! # Dashboard
//!
//! The page polls `dashboard/data` every second (a poll, not server-sent
//! events: one request per viewer per second, nothing held open, and it
//! works through any proxy). It shows each breaker's state, counters and
//! a timeline of its recent states, the rate limiters (tokens available,
//! admissions and rejections), the caches' hit ratios, and p50/p95/p99 per
//! tracked operation. The timelines and the token buckets' rejections
//! come from the registry's [events](crate::events), gathered as the data
//! is read (see `activity.rs`): they start when the router is built. A
//! fleet breaker (feature `redis`) may have a registry breaker's name:
//! its row, its timeline (`fleet_timelines`, its state as each read
//! finds it) and its rejections (`rejections.fleet_breaker`) are its own,
//! its events told apart by their
//! [`Component`](crate::events::Component).
//! The router reads them through a subscription of its own, which is in
//! neither `fusebox_events_subscribers` nor `fusebox_events_lagged_total`:
//! when nobody reads the dashboard for longer than the channel's capacity
//! of events, the events it then skips are the data's `missed_events`
//! only (counted with the subscribers' lag, they measured how long nobody
//! looked at the dashboard, and made an alert on lost events fire at the
//! first look after a busy spell).
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use fusebox::breaker::Config;
//! use fusebox_std::http::{router, HttpOptions};
//! use fusebox_std::Registry;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Arc::new(Registry::new());
//! registry.breaker("payments", Config::builder().consecutive_failures(5).build()?)?;
//! let options = HttpOptions::builder().bearer_token("a-long-random-token-from-config").build()?;
//! let app = axum::Router::new().nest("/ops", router(Arc::clone(&registry), options));
//! // axum::serve(listener, app).await?;
//!
//! let probe = app.clone().oneshot(Request::get("/ops/readyz").body(Body::empty())?).await?;
//! assert_eq!(probe.status(), StatusCode::OK);
//! let report = app.oneshot(Request::get("/ops/health").body(Body::empty())?).await?;
//! assert_eq!(report.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod activity;
mod admin;
mod auth;
mod dashboard;
mod error;
#[cfg(test)]
mod hostile_tests;
mod options;
mod probes;
mod refusals;

pub use error::HttpError;
pub use options::{
    HttpConfigError, HttpOptions, HttpOptionsBuilder, ADMIN_VAR, MIN_TOKEN_LEN, TOKEN_VAR,
};
pub use probes::METRICS_CONTENT_TYPE;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::Registry;

/// What every handler reads.
#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    options: Arc<HttpOptions>,
    activity: Arc<activity::Activity>,
    refusals: Arc<refusals::Refusals>,
    /// Reports being built at once (`probes::off_the_workers`).
    builds: Arc<tokio::sync::Semaphore>,
}

/// The endpoints in two routers, for adding your own layers: `public`
/// (`livez`, `readyz`, `dashboard`) and `protected` (`health`, `metrics`,
/// `dashboard/data`, and the admin route if enabled; already behind the
/// bearer token when one is configured).
///
/// # Examples
///
/// Any tower auth layer in front of the protected routes:
///
/// ```
/// use std::sync::Arc;
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use axum::middleware::{self, Next};
/// use fusebox_std::http::{routes, HttpOptions};
/// use fusebox_std::Registry;
/// use tower::ServiceExt;
///
/// async fn internal_only(request: axum::extract::Request, next: Next) -> Result<axum::response::Response, StatusCode> {
///     match request.headers().get("x-internal") {
///         Some(_) => Ok(next.run(request).await),
///         None => Err(StatusCode::FORBIDDEN),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let routes = routes(Arc::new(Registry::new()), HttpOptions::default());
/// let app = routes.public.merge(routes.protected.layer(middleware::from_fn(internal_only)));
/// let metrics = app.clone().oneshot(Request::get("/metrics").body(Body::empty())?).await?;
/// assert_eq!(metrics.status(), StatusCode::FORBIDDEN);
/// let live = app.oneshot(Request::get("/livez").body(Body::empty())?).await?;
/// assert_eq!(live.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Routes {
    /// Status only: `livez`, `readyz`, and the dashboard page (no data).
    pub public: Router,
    /// Details and actions: `health`, `metrics`, `dashboard/data`, admin.
    /// With a bearer token in the options, the check is a layer over these
    /// routes: a route added to this router later is not behind it (axum's
    /// [`Router::layer`] covers only the routes it was added over).
    pub protected: Router,
}

impl Routes {
    /// Both routers merged: what [`router`] returns.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox_std::http::{routes, HttpOptions};
    /// use fusebox_std::Registry;
    ///
    /// let app: axum::Router = routes(Arc::new(Registry::new()), HttpOptions::default()).into_router();
    /// # drop(app);
    /// ```
    pub fn into_router(self) -> Router {
        self.public.merge(self.protected)
    }
}

/// The endpoints over `registry`, split as [`Routes`].
///
/// The router subscribes to the registry's events when it is built: the
/// dashboard's timelines and rejection counts start then. Its
/// subscription is its own: not among the report's subscribers, and
/// what it skips is not in their `lagged` count (see the module docs).
///
/// ```
/// use std::sync::Arc;
/// use fusebox_std::http::{routes, HttpOptions};
/// use fusebox_std::Registry;
///
/// let registry = Arc::new(Registry::new());
/// let routes = routes(Arc::clone(&registry), HttpOptions::default());
/// assert_eq!(registry.health().events.subscribers, 0);
/// # drop(routes);
/// ```
pub fn routes(registry: Arc<Registry>, options: HttpOptions) -> Routes {
    if !options.token_required() {
        // Intended for a port only operators reach, or behind a layer the
        // user adds; said once, so that a deployment that forgot its
        // token can find out from its log.
        tracing::info!(
            "fusebox http: no bearer token; health, metrics and dashboard/data answer anyone unless a layer around them asks for credentials"
        );
    }
    let state = AppState {
        activity: Arc::new(activity::Activity::new(&registry)),
        registry,
        options: Arc::new(options),
        refusals: Arc::default(),
        builds: Arc::new(probes::report_builds()),
    };
    let public = Router::new()
        .route("/livez", get(probes::livez))
        .route("/readyz", get(probes::readyz))
        .route("/dashboard", get(dashboard::page))
        .route_layer(axum::middleware::map_response(probes::nosniff))
        .with_state(state.clone());
    let mut protected = Router::new()
        .route("/health", get(probes::health))
        .route("/metrics", get(probes::metrics))
        .route("/dashboard/data", get(dashboard::data));
    if state.options.admin_enabled() {
        protected = protected.route(
            "/admin/breakers/{name}/{action}",
            post(admin::breaker_action),
        );
    }
    let protected = protected
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route_layer(axum::middleware::map_response_with_state(
            state.clone(),
            refusals::count_refusals,
        ))
        .route_layer(axum::middleware::map_response(probes::nosniff))
        .with_state(state);
    Routes { public, protected }
}

/// All the endpoints over `registry` in one router (see the
/// [module docs](self)); nest it under any prefix, or merge it at the
/// root (axum's `nest` panics on `"/"`).
///
/// ```
/// use std::sync::Arc;
/// use fusebox_std::http::{router, HttpOptions};
/// use fusebox_std::Registry;
///
/// let registry = Arc::new(Registry::new());
/// let app = axum::Router::new().nest("/internal", router(Arc::clone(&registry), HttpOptions::default()));
/// // At the root (`/health`, `/dashboard`, ...): merged, not nested.
/// let at_root = axum::Router::new().merge(router(registry, HttpOptions::default()));
/// # drop((app, at_root));
/// ```
pub fn router(registry: Arc<Registry>, options: HttpOptions) -> Router {
    routes(registry, options).into_router()
}
