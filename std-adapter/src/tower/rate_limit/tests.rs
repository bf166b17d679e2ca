//! The rate-limit layer on paused tokio time: one limit for every clone,
//! the exact fields, keys, bad keys and the full table.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::TokenBucket;
use http::Request;
use tower_layer::Layer;

use super::{key, BadKey, RateLimitLayer, RateLimitRejection, Refusal};
use crate::tower::test_service::{get, send, Scripted};

fn bucket(quota: Result<Quota, fusebox::bucket::QuotaError>) -> Arc<TokenBucket> {
    Arc::new(TokenBucket::new(quota.expect("valid quota")))
}

fn with_key(value: &[u8]) -> Request<()> {
    let mut request = get("/200");
    let value = http::HeaderValue::from_bytes(value).expect("a header value");
    request.headers_mut().insert("x-api-key", value);
    request
}

#[tokio::test(start_paused = true)]
async fn every_clone_charges_the_one_bucket() {
    let service = RateLimitLayer::new("api", bucket(Quota::per_hour(3))).layer(Scripted);
    let mut admitted = 0;
    for _ in 0..20 {
        let mut clone = service.clone();
        if send(&mut clone, get("/200")).await.unwrap().status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[tokio::test(start_paused = true)]
async fn fields_and_retry_after_are_exact() {
    let mut service = RateLimitLayer::new("api", bucket(Quota::per_hour(5)))
        .legacy_headers(true)
        .layer(Scripted);
    let first = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(first.headers()["ratelimit-policy"], "\"api\";q=5;w=3600");
    assert_eq!(first.headers()["ratelimit"], "\"api\";r=4;t=720");
    assert_eq!(first.headers()["x-ratelimit-limit"], "5");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "4");
    assert_eq!(first.headers()["x-ratelimit-reset"], "720");
    for r in (0..4).rev() {
        let response = send(&mut service, get("/200")).await.unwrap();
        let expected = format!("\"api\";r={r};t={}", 720 * (5 - r));
        assert_eq!(response.headers()["ratelimit"], expected.as_str());
    }
    // 720 s per token: 719.5 s later the wait is 0.5 s, rounded up to 1.
    tokio::time::advance(StdDuration::from_millis(719_500)).await;
    let refused = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["ratelimit"], "\"api\";r=0;t=2881"); // 2 880.5 s to full
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        refused.body(),
        r#"{"error":"rate_limited","policy":"api","retry_after":1}"#
    );
    // A client that waits exactly Retry-After is admitted.
    tokio::time::advance(StdDuration::from_secs(1)).await;
    assert_eq!(send(&mut service, get("/200")).await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn headers_can_be_turned_off_and_the_responder_replaced() {
    let mut service = RateLimitLayer::new("api", bucket(Quota::per_hour(1)))
        .rate_limit_headers(false)
        .responder(|r: &RateLimitRejection| {
            http::Response::new(format!("{} {:?}", r.name, r.retry_after_secs()))
        })
        .layer(Scripted);
    let ok = send(&mut service, get("/200")).await.unwrap();
    assert!(!ok.headers().contains_key("ratelimit"));
    let refused = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(refused.body(), "api Some(3600)");
    assert!(refused.headers().is_empty());
}

fn per_key(quota: Result<Quota, fusebox::bucket::QuotaError>) -> Arc<KeyedLimiter<String, 64>> {
    Arc::new(KeyedLimiter::new(quota.expect("valid quota"), FullPolicy::Reject).expect("fits"))
}

#[tokio::test(start_paused = true)]
async fn keys_have_independent_buckets() {
    let limiter = per_key(Quota::per_minute(2));
    let service = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 32),
    )
    .layer(Scripted);
    for (k, expect) in [
        ("a", 200),
        ("a", 200),
        ("a", 429),
        ("b", 200),
        ("b", 200),
        ("b", 429),
    ] {
        let response = send(&mut service.clone(), with_key(k.as_bytes()))
            .await
            .unwrap();
        assert_eq!(response.status(), expect, "key {k}");
    }
    let refused = send(&mut service.clone(), with_key(b"a")).await.unwrap();
    assert_eq!(refused.headers()["ratelimit"], "\"per_key\";r=0;t=60");
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(limiter.metrics().keys, 2);
}

#[tokio::test(start_paused = true)]
async fn bad_keys_are_refused_with_400_and_never_stored() {
    let limiter = per_key(Quota::per_minute(2));
    let mut service = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 32),
    )
    .layer(Scripted);
    let cases: [(Request<()>, &str); 3] = [
        (get("/200"), "missing"),
        (with_key(b"\xff\xfe"), "not_utf8"),
        (with_key(&[b'k'; 33]), "too_long"),
    ];
    for (request, reason) in cases {
        let response = send(&mut service, request).await.unwrap();
        assert_eq!(response.status(), 400);
        let expected = format!(r#"{{"error":"bad_key","policy":"per_key","reason":"{reason}"}}"#);
        assert_eq!(response.body(), &expected);
        assert!(!response.headers().contains_key("ratelimit"));
    }
    assert_eq!(limiter.metrics().keys, 0);
}

#[tokio::test(start_paused = true)]
async fn bad_keys_can_share_a_default_key() {
    let limiter = per_key(Quota::per_minute(2));
    let mut service = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 32),
    )
    .on_bad_key(BadKey::Default("anonymous".to_owned()))
    .layer(Scripted);
    assert_eq!(send(&mut service, get("/200")).await.unwrap().status(), 200);
    assert_eq!(
        send(&mut service, with_key(&[b'k'; 99]))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(&mut service, with_key(b"\xff"))
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        limiter.available(&"anonymous".to_owned(), fusebox::Instant::ZERO),
        0
    );
    assert_eq!(limiter.metrics().keys, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_table_refuses_new_keys_with_503() {
    let limiter: Arc<KeyedLimiter<String, 1>> =
        Arc::new(KeyedLimiter::new(Quota::per_hour(5).unwrap(), FullPolicy::Reject).unwrap());
    let mut service =
        RateLimitLayer::keyed("tiny", limiter, key::header("x-api-key", 32)).layer(Scripted);
    assert_eq!(
        send(&mut service, with_key(b"first"))
            .await
            .unwrap()
            .status(),
        200
    );
    let full = send(&mut service, with_key(b"second")).await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.body(), r#"{"error":"limiter_full","policy":"tiny"}"#);
    let rejection = RateLimitRejection::new("tiny", Refusal::Unavailable);
    assert_eq!(rejection.retry_after_secs(), None);
}
