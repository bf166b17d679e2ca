//! `RateLimitLayer` under a real axum server, over real HTTP: one limit for
//! every connection (axum clones the service per request), the exact
//! fields, per-key buckets (API key, client IP, `X-Forwarded-For` behind a
//! proxy), stacked policies, refusals on the registry's events, and bad
//! keys sent as raw bytes.

mod common;
mod tower_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::get as route;
use axum::Router;
use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::TokenBucket;
use fusebox_std::events::{Component, Event};
use fusebox_std::tower::rate_limit::{key, BadKey, KeyError};
use fusebox_std::tower::RateLimitLayer;
use fusebox_std::Registry;
use tower_common::{get, get_from, serve};

/// A header as raw bytes.
type Header<'a> = (&'a str, &'a [u8]);

fn app() -> Router {
    Router::new().route("/", route(|| async { "hello" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_limit_across_many_connections() {
    // tower's RateLimit gives every clone its own limit (tower#794): with
    // axum, which clones per request, a 5/s limit let 1 500 through
    // (axum#3682). Here 200 requests on 200 connections from 40 clients
    // at once get exactly the quota.
    let bucket = Arc::new(TokenBucket::new(Quota::per_hour(50).unwrap()));
    let addr = serve(app().layer(RateLimitLayer::new("api", Arc::clone(&bucket)))).await;
    let clients = (0..40).map(|_| {
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                statuses.push(get(addr, "/", &[]).await.status);
            }
            statuses
        })
    });
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }
    assert_eq!(statuses.len(), 200);
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 50);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 150);
    assert_eq!(bucket.available(fusebox::Instant::ZERO), 0);
}

#[tokio::test]
async fn admitted_and_refused_responses_carry_exact_fields() {
    let layer = RateLimitLayer::new(
        "api",
        Arc::new(TokenBucket::new(Quota::per_hour(5).unwrap())),
    )
    .legacy_headers(true);
    let addr = serve(app().layer(layer)).await;
    let first = get(addr, "/", &[]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(first.header("ratelimit-policy"), Some("\"api\";q=5;w=3600"));
    // One token every 720 s; the test takes far less than a second.
    assert_eq!(first.header("ratelimit"), Some("\"api\";r=4;t=720"));
    assert_eq!(first.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(first.header("x-ratelimit-reset"), Some("720"));
    for _ in 0..4 {
        assert_eq!(get(addr, "/", &[]).await.status, 200);
    }
    let refused = get(addr, "/", &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("retry-after"),
        Some("720"),
        "rounded up, never early"
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));
    // Nothing left until the next token: `t` is the Retry-After (draft
    // § 6), not the hour the bucket takes to refill.
    assert_eq!(refused.header("ratelimit"), Some("\"api\";r=0;t=720"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.json(),
        serde_json::json!({"error": "rate_limited", "policy": "api", "retry_after": 720})
    );
}

#[tokio::test]
async fn api_keys_have_independent_limits() {
    let limiter = Arc::new(
        KeyedLimiter::<String, 256>::new(Quota::per_hour(2).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 64),
    );
    let addr = serve(app().layer(layer)).await;
    let status = |k: &'static str| async move {
        get(addr, "/", &[("x-api-key", k.as_bytes())]).await.status
    };
    assert_eq!(
        [
            status("alice").await,
            status("alice").await,
            status("alice").await
        ],
        [200, 200, 429]
    );
    assert_eq!(
        [
            status("bob").await,
            status("bob").await,
            status("bob").await
        ],
        [200, 200, 429]
    );
    let carol = get(addr, "/", &[("x-api-key", b"carol")]).await;
    assert_eq!(carol.header("ratelimit"), Some("\"per_key\";r=1;t=1800"));
    assert_eq!(limiter.metrics().keys, 3);
}

#[tokio::test]
async fn client_ips_have_independent_limits() {
    let limiter = Arc::new(
        KeyedLimiter::<IpAddr, 256>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_ip",
        Arc::clone(&limiter),
        |head: &http::request::Parts| {
            let peer = head
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .ok_or(KeyError::Missing)?;
            Ok(peer.0.ip())
        },
    );
    let addr = serve(app().layer(layer)).await;
    for last in 1..=3 {
        let from = Ipv4Addr::new(127, 0, 0, last);
        assert_eq!(
            get_from(addr, from, "/", &[]).await.status,
            200,
            "first from {from}"
        );
        assert_eq!(
            get_from(addr, from, "/", &[]).await.status,
            429,
            "second from {from}"
        );
    }
    assert_eq!(limiter.metrics().keys, 3);
}

#[tokio::test]
async fn bad_keys_get_400_and_are_never_stored() {
    let limiter = Arc::new(
        KeyedLimiter::<String, 256>::new(Quota::per_hour(2).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 64),
    );
    let layer_clone = layer.clone();
    let addr = serve(app().layer(layer)).await;
    let huge = vec![b'k'; 16 * 1024];
    // An empty value (or one of spaces, which hyper strips) is no key
    // either: it was a bucket of its own.
    // The key's header on two lines: which one an API-key check before
    // this layer read is not known, and a client adding a line would
    // choose its bucket (it was keyed on the first line).
    let cases: [(&[Header], &str); 6] = [
        (&[], "missing"),
        (&[("x-api-key", b"")], "missing"),
        (&[("x-api-key", b"   ")], "missing"),
        (&[("x-api-key", b"caf\xe9-\xff")], "not_utf8"),
        (&[("x-api-key", &huge)], "too_long"),
        (
            &[("x-api-key", b"mine"), ("X-Api-Key", b"fresh-1")],
            "ambiguous",
        ),
    ];
    for (headers, reason) in cases {
        let reply = get(addr, "/", headers).await;
        assert_eq!(reply.status, 400, "{reason}");
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "bad_key", "policy": "per_key", "reason": reason})
        );
    }
    assert_eq!(limiter.metrics().keys, 0);
    // Counted, by reason, in one set shared by every clone of the layer.
    let bad = layer_clone.limit().bad_keys();
    assert_eq!(
        bad.by_reason(),
        [
            ("missing", 3),
            ("not_utf8", 1),
            ("too_long", 1),
            ("invalid", 0),
            ("ambiguous", 1)
        ]
    );
}

#[tokio::test]
async fn bad_keys_can_share_a_default_key() {
    let limiter = Arc::new(
        KeyedLimiter::<String, 256>::new(Quota::per_hour(2).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 64),
    )
    .on_bad_key(BadKey::Default("anonymous".to_owned()));
    let layer_clone = layer.clone();
    let addr = serve(app().layer(layer)).await;
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    assert_eq!(
        get(addr, "/", &[("x-api-key", b"\xff\xfe")]).await.status,
        200
    );
    assert_eq!(
        get(addr, "/", &[("x-api-key", &[b'k'; 4096])]).await.status,
        429
    );
    // So is a key sent on two lines.
    assert_eq!(
        get(addr, "/", &[("x-api-key", b"eve"), ("x-api-key", b"new")])
            .await
            .status,
        429
    );
    // An empty key is the default one, not a fresh bucket.
    for empty in [&b""[..], b" \t "] {
        assert_eq!(get(addr, "/", &[("x-api-key", empty)]).await.status, 429);
    }
    assert_eq!(get(addr, "/", &[("x-api-key", b"dave")]).await.status, 200);
    assert_eq!(limiter.metrics().keys, 2, "anonymous and dave");
    // Charged to the default key, yet counted: a client sending no key
    // shows in the counts, not only in debug logs.
    let bad = layer_clone.limit().bad_keys();
    assert_eq!(
        bad.by_reason(),
        [
            ("missing", 3),
            ("not_utf8", 1),
            ("too_long", 1),
            ("invalid", 0),
            ("ambiguous", 1)
        ]
    );
}

#[tokio::test]
async fn a_registry_limiter_shows_in_prometheus() {
    let registry = Arc::new(Registry::new());
    let layer =
        RateLimitLayer::from_registry(&registry, "api", Quota::per_hour(10).unwrap()).unwrap();
    let addr = serve(app().layer(layer)).await;
    for _ in 0..3 {
        assert_eq!(get(addr, "/", &[]).await.status, 200);
    }
    let text = registry.to_prometheus();
    assert!(
        text.contains("fusebox_limiter_available_tokens{name=\"api\"} 7\n"),
        "{text}"
    );
}

/// Requests without a usable key reach the registry's health report and
/// Prometheus text, by reason, summed over every layer the registry built
/// for the name (two here: two routers).
#[tokio::test]
async fn a_registry_keyed_limiter_counts_bad_keys_in_health_and_prometheus() {
    let registry = Arc::new(Registry::new());
    let layer = || {
        RateLimitLayer::keyed_from_registry::<String, 64, _>(
            &registry,
            "per_key",
            Quota::per_hour(100).unwrap(),
            FullPolicy::Reject,
            key::header("x-api-key", 16),
        )
        .unwrap()
    };
    let first = serve(app().layer(layer())).await;
    let second = serve(app().layer(layer())).await;
    assert_eq!(get(first, "/", &[]).await.status, 400);
    assert_eq!(get(second, "/", &[]).await.status, 400);
    assert_eq!(
        get(first, "/", &[("x-api-key", &[b'k'; 17])]).await.status,
        400
    );
    assert_eq!(
        get(second, "/", &[("x-api-key", b"\xff")]).await.status,
        400
    );
    assert_eq!(
        get(first, "/", &[("x-api-key", b"alice")]).await.status,
        200
    );
    let bad = registry.health().bad_keys["per_key"];
    assert_eq!(
        bad.by_reason(),
        [
            ("missing", 2),
            ("not_utf8", 1),
            ("too_long", 1),
            ("invalid", 0),
            ("ambiguous", 0)
        ]
    );
    let text = registry.to_prometheus();
    for (reason, n) in [
        ("missing", 2),
        ("not_utf8", 1),
        ("too_long", 1),
        ("invalid", 0),
        ("ambiguous", 0),
    ] {
        let line = format!(
            "fusebox_keyed_limiter_bad_keys_total{{name=\"per_key\",reason=\"{reason}\"}} {n}\n"
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(text.contains("# TYPE fusebox_keyed_limiter_bad_keys_total counter\n"));
    let json = serde_json::to_value(registry.health()).unwrap();
    assert_eq!(json["bad_keys"]["per_key"]["missing"], 2);
}

#[tokio::test]
async fn a_registry_limiter_publishes_every_refusal() {
    let registry = Arc::new(Registry::new());
    let mut events = registry.events().subscribe();
    let layer =
        RateLimitLayer::from_registry(&registry, "api", Quota::per_hour(1).unwrap()).unwrap();
    let addr = serve(app().layer(layer)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(addr, "/", &[]).await.status);
    }
    assert_eq!(statuses, [200, 429, 429, 429, 429]);
    let mut rejected = 0;
    while let Some(event) = events.try_recv() {
        if let Event::Rejected {
            name, component, ..
        } = event
        {
            assert_eq!((&*name, component), ("api", Component::Limiter));
            rejected += 1;
        }
    }
    assert_eq!(rejected, 4);
}

#[tokio::test]
async fn a_registry_keyed_limiter_publishes_every_refusal() {
    let registry = Arc::new(Registry::new());
    let mut events = registry.events().subscribe();
    let layer = RateLimitLayer::keyed_from_registry::<String, 64, _>(
        &registry,
        "per_key",
        Quota::per_hour(1).unwrap(),
        FullPolicy::Reject,
        key::header("X-Api-Key", 64),
    )
    .unwrap();
    let addr = serve(app().layer(layer)).await;
    let statuses = [
        get(addr, "/", &[("x-api-key", b"alice")]).await.status,
        get(addr, "/", &[("X-API-KEY", b"alice")]).await.status,
        get(addr, "/", &[]).await.status,
    ];
    assert_eq!(statuses, [200, 429, 400]);
    let mut rejected = Vec::new();
    while let Some(event) = events.try_recv() {
        if let Event::Rejected {
            name, component, ..
        } = event
        {
            rejected.push((name.to_string(), component));
        }
    }
    assert_eq!(
        rejected,
        vec![("per_key".to_owned(), Component::KeyedLimiter); 2]
    );
}

#[tokio::test]
async fn forwarded_for_keys_on_the_entry_the_trusted_proxy_appended() {
    // Behind one proxy that appends the peer it saw (nginx's
    // `$proxy_add_x_forwarded_for`): whatever the client puts on the left,
    // the rightmost entry is the proxy's. Keyed on the leftmost, each of
    // these 50 requests had a fresh bucket.
    let limiter = Arc::new(
        KeyedLimiter::<IpAddr, 256>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed("per_ip", Arc::clone(&limiter), key::forwarded_ip(1));
    let addr = serve(app().layer(layer)).await;
    let mut admitted = 0;
    for i in 0..50 {
        let forwarded = format!("10.9.0.{i}, 203.0.113.7");
        let reply = get(addr, "/", &[("x-forwarded-for", forwarded.as_bytes())]).await;
        if reply.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 1);
    assert_eq!(limiter.metrics().keys, 1);
    // Another client behind the same proxy has its own bucket.
    let other = get(addr, "/", &[("x-forwarded-for", b"203.0.113.8")]).await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn stacked_limits_list_both_policies_on_the_inner_429() {
    let global = RateLimitLayer::new(
        "global",
        Arc::new(TokenBucket::new(Quota::per_hour(100).unwrap())),
    );
    let per_key = RateLimitLayer::keyed(
        "per_key",
        Arc::new(
            KeyedLimiter::<String, 256>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject)
                .unwrap(),
        ),
        key::header("x-api-key", 64),
    );
    // The last layer added is the outermost.
    let addr = serve(app().layer(per_key).layer(global)).await;
    let first = get(addr, "/", &[("x-api-key", b"alice")]).await;
    assert_eq!(first.status, 200);
    let refused = get(addr, "/", &[("x-api-key", b"alice")]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"per_key\";q=1;w=3600, \"global\";q=100;w=3600")
    );
    // The refusing policy says r=0; the global one has 98 of 100 left (one
    // token every 36 s; the test takes far less than a second).
    assert_eq!(
        refused.header("ratelimit"),
        Some("\"per_key\";r=0;t=3600, \"global\";r=98;t=72")
    );
    assert_eq!(refused.header("retry-after"), Some("3600"));
    assert_eq!(
        refused.json(),
        serde_json::json!({"error": "rate_limited", "policy": "per_key", "retry_after": 3600})
    );
}

#[tokio::test]
async fn a_flood_into_a_full_table_warns_once() {
    // An attacker who fills the keyed table then gets a 503 per new key;
    // each used to log a WARN. Now: one WARN (per 10 s), a DEBUG each.
    let capture = common::Capture::global();
    let limiter = Arc::new(
        KeyedLimiter::<String, 1>::new(Quota::per_hour(5).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let layer = RateLimitLayer::keyed("flooded", limiter, key::header("x-api-key", 64));
    let addr = serve(app().layer(layer)).await;
    assert_eq!(get(addr, "/", &[("x-api-key", b"first")]).await.status, 200);
    for i in 0..40 {
        let key = format!("attacker-{i}");
        assert_eq!(
            get(addr, "/", &[("x-api-key", key.as_bytes())])
                .await
                .status,
            503
        );
    }
    let events = capture.with("policy", "flooded");
    let level = |l: &str| {
        events
            .iter()
            .filter(|e| common::field(e, "level") == Some(l))
            .count()
    };
    assert_eq!(level("WARN"), 1, "{events:?}");
    assert_eq!(level("DEBUG"), 40, "{events:?}");
    let warn = events
        .iter()
        .find(|e| common::field(e, "level") == Some("WARN"))
        .unwrap();
    assert_eq!(common::field(warn, "refused"), Some("1"));
}

/// Review (session 15): the exposition with bad keys counted for two
/// keyed limiters (one refusing, one charging the default key) next to
/// every other family a registry writes: it parses, each family has one
/// `# TYPE` and its samples in one block after it, and each request
/// without a usable key is counted once, under its limiter and reason.
#[tokio::test]
async fn review_bad_keys_exposition_is_valid_and_counts_each_request_once() {
    let registry = Arc::new(Registry::new());
    let keyed = |name: &str| {
        RateLimitLayer::keyed_from_registry::<String, 64, _>(
            &registry,
            name,
            Quota::per_hour(100).unwrap(),
            FullPolicy::Reject,
            key::header("x-api-key", 16),
        )
        .unwrap()
    };
    let _plain =
        RateLimitLayer::from_registry(&registry, "plain", Quota::per_hour(5).unwrap()).unwrap();
    let refusing = serve(app().layer(keyed("refusing"))).await;
    let defaulting =
        serve(app().layer(keyed("defaulting").on_bad_key(BadKey::Default("anonymous".to_owned()))))
            .await;
    for _ in 0..3 {
        assert_eq!(get(refusing, "/", &[]).await.status, 400);
        assert_eq!(get(defaulting, "/", &[]).await.status, 200);
    }
    assert_eq!(
        get(defaulting, "/", &[("x-api-key", &[b'k'; 17])])
            .await
            .status,
        200
    );
    let text = registry.to_prometheus();
    prometheus_parse::Scrape::parse(std::io::BufRead::lines(text.as_bytes()))
        .expect("valid exposition");
    let mut typed = Vec::new();
    let mut seen_blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap().to_owned();
            assert!(!typed.contains(&family), "{family} typed twice");
            typed.push(family);
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = typed
                .iter()
                .rev()
                .find(|f| name.starts_with(f.as_str()))
                .unwrap_or_else(|| panic!("{line}: sample before its TYPE"));
            if seen_blocks.last() != Some(family) {
                assert!(
                    !seen_blocks.contains(family),
                    "{family}: samples in two blocks"
                );
                seen_blocks.push(family.clone());
            }
        }
    }
    for (name, reason, n) in [
        ("refusing", "missing", 3),
        ("defaulting", "missing", 3),
        ("defaulting", "too_long", 1),
        ("refusing", "too_long", 0),
    ] {
        let line = format!(
            "fusebox_keyed_limiter_bad_keys_total{{name=\"{name}\",reason=\"{reason}\"}} {n}\n"
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(!text.contains("name=\"plain\",reason"), "only keyed layers");
}
