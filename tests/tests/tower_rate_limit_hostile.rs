//! `RateLimitLayer` under a crowd over real HTTP: keyed and stacked
//! limits admit exactly their quotas however the requests interleave
//! across connections and the server's clones, and every refusal's
//! fields agree with its `Retry-After`.

use std::sync::Arc;

use crate::tower_common::{get, serve, Reply};
use axum::routing::get as route;
use axum::Router;
use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::{Clock, TokenBucket};
use fusebox_std::tower::rate_limit::key;
use fusebox_std::tower::RateLimitLayer;

fn app() -> Router {
    Router::new().route("/", route(|| async { "hello" }))
}

/// Sends `per_key` requests for each of `keys` (as `x-api-key`), all at
/// once, each on its own connection; the replies, by key.
async fn crowd(
    addr: std::net::SocketAddr,
    keys: &[&'static str],
    per_key: usize,
) -> Vec<(&'static str, Reply)> {
    let tasks: Vec<_> = (0..per_key)
        .flat_map(|_| keys.iter().copied())
        .map(|k| {
            tokio::spawn(async move { (k, get(addr, "/", &[("x-api-key", k.as_bytes())]).await) })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// A refusal says `r=0` for its policy and a `t` equal to its
/// `Retry-After`.
fn check_refusal(reply: &Reply, policy: &str) {
    let retry = reply.header("retry-after").expect("a Retry-After");
    let limit = reply.header("ratelimit").expect("a RateLimit field");
    let member = format!("\"{policy}\";r=0;t={retry}");
    assert!(
        limit.split(", ").any(|m| m == member),
        "{limit:?} lacks {member:?}"
    );
}

/// 6 keys (two differing in case only: header values are case-sensitive,
/// so two keys) × 25 requests at once, on 150 connections: each key gets
/// exactly its 5 an hour, every other request is a 429 whose fields
/// agree with its `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_limit_admits_exactly_each_keys_quota_under_a_crowd() {
    let limiter = Arc::new(
        KeyedLimiter::<String, 64>::new(Quota::per_hour(5).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 64),
    );
    let addr = serve(app().layer(layer)).await;
    let keys = ["alice", "Alice", "bob", "carol", "dave", "eve"];
    let replies = crowd(addr, &keys, 25).await;
    for k in keys {
        let mine: Vec<&Reply> = replies
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(mine.len(), 25);
        assert_eq!(mine.iter().filter(|r| r.status == 200).count(), 5, "{k}");
        assert_eq!(mine.iter().filter(|r| r.status == 429).count(), 20, "{k}");
        for refused in mine.iter().filter(|r| r.status == 429) {
            check_refusal(refused, "per_key");
        }
    }
    assert_eq!(limiter.metrics().keys, 6);
}

/// A global limit of 12 around a per-key one of 5: under a crowd of 4
/// keys × 10 requests, the global one admits exactly 12 (each either
/// served or refused by the per-key limit), at most 5 per key are served;
/// each 429 names the refusing policy at `r=0` with its `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_limits_admit_exactly_the_tighter_of_both_under_a_crowd() {
    let per_key = RateLimitLayer::keyed(
        "per_key",
        Arc::new(
            KeyedLimiter::<String, 64>::new(Quota::per_hour(5).unwrap(), FullPolicy::Reject)
                .unwrap(),
        ),
        key::header("x-api-key", 64),
    );
    let global_bucket = Arc::new(TokenBucket::new(Quota::per_hour(12).unwrap()));
    let global = RateLimitLayer::new("global", Arc::clone(&global_bucket));
    let clock = global.clock();
    let addr = serve(app().layer(per_key).layer(global)).await;
    let keys = ["a", "b", "c", "d"];
    let replies = crowd(addr, &keys, 10).await;
    let admitted = replies.iter().filter(|(_, r)| r.status == 200).count();
    let by_key = replies
        .iter()
        .filter(|(_, r)| r.status == 429 && r.json()["policy"] == "per_key")
        .count();
    assert_eq!(
        admitted + by_key,
        12,
        "admitted {admitted}, refused by key {by_key}"
    );
    assert_eq!(
        replies.iter().filter(|(_, r)| r.status == 429).count(),
        40 - admitted
    );
    for k in keys {
        let mine = replies
            .iter()
            .filter(|(key, r)| *key == k && r.status == 200)
            .count();
        assert!(mine <= 5, "{k}: {mine}");
    }
    for (_, reply) in replies.iter().filter(|(_, r)| r.status == 429) {
        let policy = reply.json()["policy"].as_str().unwrap().to_owned();
        check_refusal(reply, &policy);
    }
    // Read on the layer's clock: read at `Instant::ZERO`, before the
    // bucket's first use, a bucket with one token left read empty too.
    assert_eq!(global_bucket.available(clock.now()), 0);
}
