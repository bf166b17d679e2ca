//! Policy names as the `RateLimit-Policy` and `RateLimit` fields spell
//! them, over real HTTP: two stacked layers whose names differ only
//! outside printable ASCII must stay two policies a client can tell
//! apart.

use std::sync::Arc;

use crate::tower_common::{get, serve};
use axum::routing::get as route;
use axum::Router;
use fusebox::bucket::Quota;
use fusebox::TokenBucket;
use fusebox_std::tower::RateLimitLayer;

fn app() -> Router {
    Router::new().route("/", route(|| async { "hello" }))
}

fn layer(name: &str, per_hour: u32) -> RateLimitLayer<fusebox_std::tower::rate_limit::Single> {
    RateLimitLayer::new(
        name,
        Arc::new(TokenBucket::new(Quota::per_hour(per_hour).unwrap())),
    )
}

/// Every `_` stood for any byte outside printable ASCII: `"über"` (one
/// an hour) around `"_ber"` (100 an hour) were both `"_ber"`, and the
/// client read two contradictory quotas under one name (found by a
/// hostile review). Non-ASCII bytes, and `%`, are now percent-encoded
/// (lower-case hex, as RFC 9651's Display String does), so different
/// names stay different.
#[tokio::test]
async fn stacked_policies_whose_names_differ_outside_ascii_stay_distinct() {
    let addr = serve(app().layer(layer("_ber", 100)).layer(layer("über", 1))).await;
    let first = get(addr, "/", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"_ber\";q=100;w=3600, \"%c3%bcber\";q=1;w=3600")
    );
    let refused = get(addr, "/", &[]).await;
    assert_eq!(refused.status, 429);
    // Refused by the outer layer: only its member.
    assert_eq!(
        refused.header("ratelimit"),
        Some("\"%c3%bcber\";r=0;t=3600")
    );
    // The JSON body holds the name as it is.
    assert_eq!(refused.json()["policy"], "über");
}

/// `%` itself is encoded, so a name that looks like an encoding is not
/// taken for the name it encodes; control characters are encoded too.
#[tokio::test]
async fn a_percent_or_a_control_character_is_encoded() {
    let addr = serve(
        app()
            .layer(layer("a%c3%bc", 100))
            .layer(layer("aü", 100))
            .layer(layer("t\tab", 100)),
    )
    .await;
    let reply = get(addr, "/", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some("\"a%25c3%25bc\";q=100;w=3600, \"a%c3%bc\";q=100;w=3600, \"t%09ab\";q=100;w=3600")
    );
}

/// A policy named after what it guards may hold a credential (a partner's
/// URL with its password, a `key=`), as a breaker's name may: the
/// breaker's refusals show its name redacted, "every refused client reads
/// it", but a rate limit's 429 (its JSON body, its `RateLimit` fields),
/// its 400 for a bad key, and its gRPC refusal's `grpc-message` showed
/// the policy's name whole, to every client, while the layer's own log
/// redacted it (found by a hostile review). Redacted everywhere now.
#[tokio::test]
async fn a_policy_name_holding_a_secret_is_redacted_in_every_answer() {
    use fusebox::bucket::{FullPolicy, KeyedLimiter};
    use fusebox_std::tower::rate_limit::{key, GrpcRateLimitResponse};

    const NAME: &str = "https://ops:s3cret-pw@partner.example/api?api_key=k3y-secret";
    let keyed = RateLimitLayer::keyed(
        NAME,
        Arc::new(
            KeyedLimiter::<String, 8>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject)
                .unwrap(),
        ),
        key::header("x-api-key", 64),
    );
    let grpc = RateLimitLayer::new(
        NAME,
        Arc::new(TokenBucket::new(Quota::per_hour(1).unwrap())),
    )
    .responder(GrpcRateLimitResponse);
    let router = Router::new()
        .route("/", route(|| async { "hello" }))
        .layer(keyed)
        .merge(
            Router::new()
                .route("/grpc", route(|| async { "hello" }))
                .layer(grpc),
        );
    let addr = serve(router).await;
    let replies = [
        get(addr, "/", &[("x-api-key", b"a")]).await,
        get(addr, "/", &[("x-api-key", b"a")]).await,
        get(addr, "/", &[]).await,
        get(addr, "/grpc", &[]).await,
        get(addr, "/grpc", &[]).await,
    ];
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 400, 200, 200]);
    assert_eq!(replies[4].header("grpc-status"), Some("8"));
    for reply in &replies {
        let mut shown = reply.body.clone();
        for (_, value) in &reply.headers {
            shown.push_str(&String::from_utf8_lossy(value));
        }
        for secret in ["s3cret-pw", "k3y-secret"] {
            assert!(!shown.contains(secret), "{secret} shown: {reply:?}");
        }
    }
    assert_eq!(
        replies[1].json()["policy"],
        "https://ops:***@partner.example/api?api_key=***"
    );
    assert_eq!(
        replies[1].header("ratelimit"),
        Some("\"https://ops:***@partner.example/api?api_key=***\";r=0;t=3600")
    );
}
