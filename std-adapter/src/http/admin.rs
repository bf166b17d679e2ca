//! The admin route, `POST admin/breakers/{name}/{action}`: force a
//! breaker open or closed, or reset it (a registered fleet breaker
//! fleet-wide). Served only when the options allow it, and then always
//! behind the bearer token.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fusebox::CircuitBreaker;

use super::error::HttpError;
use super::probes::no_store;
use super::AppState;
use crate::health::state_name;

/// What an admin request does to a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    ForceOpen,
    ForceClose,
    Reset,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "force-open" => Some(Self::ForceOpen),
            "force-close" => Some(Self::ForceClose),
            "reset" => Some(Self::Reset),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::ForceOpen => "force-open",
            Self::ForceClose => "force-close",
            Self::Reset => "reset",
        }
    }

    fn apply(
        self,
        breaker: &CircuitBreaker,
        now: fusebox::Instant,
    ) -> Option<fusebox::breaker::Transition> {
        match self {
            Self::ForceOpen => breaker.force_open(now),
            Self::ForceClose => breaker.force_close(now),
            Self::Reset => breaker.reset(now),
        }
    }
}

/// The route's own parameters, `name` and `action`: the last of each.
/// A prefix the router is nested under may have parameters of its own
/// (`/tenants/{tenant}`), even of the same names; they come first.
fn name_and_action(params: &RawPathParams) -> Option<(&str, &str)> {
    let last = |key: &str| {
        params
            .iter()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    };
    Some((last("name")?, last("action")?))
}

/// Applies the action and answers
/// `{"name", "action", "changed", "state"}` (the state after it); an
/// actual change is reported like any other
/// ([`Registry::transition`](crate::Registry::transition): log and
/// event) and logged at `warn` as an admin action.
pub(super) async fn breaker_action(
    State(state): State<AppState>,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Response, HttpError> {
    // axum's own rejection text may quote the path: never shown.
    let params = params.map_err(|_| HttpError::BadPath)?;
    let (name, action) = name_and_action(&params).ok_or(HttpError::BadPath)?;
    let breaker = state.registry.get_breaker(name);
    // A fleet breaker of the name, alone or over the registry's breaker
    // of the name (its core): acted on fleet-wide. Forced here only, its
    // core would be one instance's, and the fleet's next decision would
    // undo it. (A fleet breaker over another core than the in-process
    // one of its name leaves the route to the in-process one.)
    #[cfg(feature = "redis")]
    if let Some(fleet) = state.registry.get_fleet_breaker(name)
        && breaker
            .as_ref()
            .is_none_or(|b| std::sync::Arc::ptr_eq(b, fleet.core()))
    {
        let action = Action::parse(action).ok_or_else(|| HttpError::unknown_action(action))?;
        return Ok(fleet_action(&fleet, action).await);
    }
    let breaker = breaker.ok_or_else(|| HttpError::unknown_breaker(name))?;
    let action = Action::parse(action).ok_or_else(|| HttpError::unknown_action(action))?;
    let now = state.registry.now();
    let transition = action.apply(&breaker, now);
    tracing::warn!(
        breaker = name,
        action = action.name(),
        changed = transition.is_some(),
        "admin action on breaker"
    );
    if let Some(t) = transition {
        state.registry.transition(name, t);
    }
    let body = serde_json::json!({
        "name": name,
        "action": action.name(),
        "changed": transition.is_some(),
        "state": state_name(breaker.state(now)),
    });
    Ok(no_store(Json(body).into_response()))
}

/// An action on a registered fleet breaker, fleet-wide: `force-open` and
/// `force-close` as [`FleetBreaker::force_open`](crate::backend::FleetBreaker::force_open)
/// and [`force_close`](crate::backend::FleetBreaker::force_close), `reset`
/// as [`FleetBreaker::reset`](crate::backend::FleetBreaker::reset)
/// (`force-close` with the local breaker's counters zeroed too). Answers
/// `{"name", "action", "changed", "state", "fleet"}`: `fleet` false when
/// Redis did not take it (applied on this instance only, as those methods
/// do; the error is logged, redacted).
#[cfg(feature = "redis")]
async fn fleet_action(fleet: &crate::backend::FleetBreaker, action: Action) -> Response {
    let before = fleet.state();
    let result = match action {
        Action::ForceOpen => fleet.force_open().await,
        Action::ForceClose => fleet.force_close().await,
        Action::Reset => fleet.reset().await,
    };
    let after = fleet.state();
    if let Err(e) = &result {
        tracing::warn!(
            breaker = %crate::redact::Redacted(fleet.name()),
            action = action.name(),
            error = %crate::redact::Redacted(e),
            "admin action on fleet breaker applied on this instance only: Redis did not take it"
        );
    } else {
        tracing::warn!(
            breaker = %crate::redact::Redacted(fleet.name()),
            action = action.name(),
            changed = before != after,
            "admin action on fleet breaker"
        );
    }
    let body = serde_json::json!({
        "name": fleet.name(),
        "action": action.name(),
        "changed": before != after,
        "state": state_name(after),
        "fleet": result.is_ok(),
    });
    no_store(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use fusebox::breaker::{Config, State};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::events::Event;
    use crate::http::{router, HttpOptions};
    use crate::Registry;

    const TOKEN: &str = "admin-token-0123456789";

    async fn post(registry: &Arc<Registry>, path: &str) -> (u16, serde_json::Value) {
        let options = HttpOptions::builder()
            .bearer_token(TOKEN)
            .admin(true)
            .build()
            .unwrap();
        let request = Request::post(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let response = router(Arc::clone(registry), options)
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn actions_parse_from_their_names() {
        for a in [
            super::Action::ForceOpen,
            super::Action::ForceClose,
            super::Action::Reset,
        ] {
            assert_eq!(super::Action::parse(a.name()), Some(a));
        }
        assert_eq!(super::Action::parse("force_open"), None);
    }

    #[tokio::test]
    async fn force_open_then_reset_reports_and_publishes() {
        let registry = Arc::new(Registry::new());
        registry
            .breaker(
                "db",
                Config::builder().consecutive_failures(3).build().unwrap(),
            )
            .unwrap();
        let mut events = registry.events().subscribe();
        let (code, body) = post(&registry, "/admin/breakers/db/force-open").await;
        assert_eq!(code, 200);
        assert_eq!(
            body,
            serde_json::json!({"name": "db", "action": "force-open", "changed": true, "state": "forced_open"})
        );
        assert!(matches!(
            events.try_recv(),
            Some(Event::StateChange {
                to: State::ForcedOpen,
                ..
            })
        ));
        let (_, again) = post(&registry, "/admin/breakers/db/force-open").await;
        assert_eq!(again["changed"], false);
        let (_, reset) = post(&registry, "/admin/breakers/db/reset").await;
        assert_eq!(
            (reset["changed"].clone(), reset["state"].clone()),
            (true.into(), "closed".into())
        );
    }

    #[tokio::test]
    async fn unknown_breakers_and_actions_are_typed_404s() {
        let registry = Arc::new(Registry::new());
        registry
            .breaker(
                "db",
                Config::builder().consecutive_failures(3).build().unwrap(),
            )
            .unwrap();
        let (code, body) = post(&registry, "/admin/breakers/nope/reset").await;
        assert_eq!(
            (code, body["error"].as_str()),
            (404, Some("unknown_breaker"))
        );
        let (code, body) = post(&registry, "/admin/breakers/db/explode").await;
        assert_eq!(
            (code, body["error"].as_str()),
            (404, Some("unknown_action"))
        );
        let (code, body) = post(&registry, "/admin/breakers/%FF%FE/reset").await;
        assert_eq!((code, body["error"].as_str()), (400, Some("bad_path")));
    }

    /// Redis out: the action applies on this instance only, and the
    /// answer says so (`fleet: false`).
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_fleet_breaker_cut_off_from_redis_is_acted_on_here_only() {
        use crate::backend::{FleetBreaker, RedisBackend, RedisConfig};

        let registry = Arc::new(Registry::new());
        // Nothing listens on port 1.
        let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let core = Arc::new(fusebox::CircuitBreaker::new(
            Config::builder().consecutive_failures(3).build().unwrap(),
        ));
        let fleet = FleetBreaker::builder("payments", core, backend)
            .build()
            .await
            .unwrap();
        registry.register_fleet_breaker(&fleet).unwrap();
        let (code, body) = post(&registry, "/admin/breakers/payments/force-open").await;
        assert_eq!(code, 200);
        assert_eq!(
            body,
            serde_json::json!({"name": "payments", "action": "force-open", "changed": true, "state": "forced_open", "fleet": false})
        );
        assert_eq!(fleet.state(), State::ForcedOpen);
    }
}
