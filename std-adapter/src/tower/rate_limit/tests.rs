//! The rate-limit layer on paused tokio time: one limit for every clone,
//! the exact fields, keys, bad keys and the full table.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::{Clock, TokenBucket};
use http::Request;
use tower_layer::Layer;

use super::{key, BadKey, RateLimitLayer, RateLimitRejection, Refusal};
use crate::tower::test_service::{get, retry_after, send, with_key, FnInner, Scripted};

fn bucket(quota: Result<Quota, fusebox::bucket::QuotaError>) -> Arc<TokenBucket> {
    Arc::new(TokenBucket::new(quota.expect("valid quota")))
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
    // Nothing left until the next token: `t` is the Retry-After, not the
    // 2 880.5 s to full (a Retry-After earlier than `t` is what the draft
    // says it should not be).
    assert_eq!(refused.headers()["ratelimit"], "\"api\";r=0;t=1");
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
    assert_eq!(refused.headers()["ratelimit"], "\"per_key\";r=0;t=30");
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
    // A slot frees once "first" is full again: it is one token short, so
    // in one token's time (5 an hour: 12 min), which `Retry-After` says
    // (it had none).
    let full = send(&mut service, with_key(b"second")).await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "720");
    assert_eq!(
        full.body(),
        r#"{"error":"limiter_full","policy":"tiny","retry_after":720}"#
    );
    let rejection = full.extensions().get::<RateLimitRejection>().unwrap();
    assert_eq!(
        rejection.refusal,
        Refusal::TableFull {
            retry_after: fusebox::Duration::from_secs(720)
        }
    );
    assert_eq!(rejection.retry_after_secs(), Some(720));
    // Not before: "first" came back 12 minutes later and its slot is
    // free for "second" then.
    tokio::time::advance(StdDuration::from_secs(719)).await;
    let early = send(&mut service, with_key(b"second")).await.unwrap();
    assert_eq!(early.status(), 503);
    tokio::time::advance(StdDuration::from_secs(1)).await;
    assert_eq!(
        send(&mut service, with_key(b"second"))
            .await
            .unwrap()
            .status(),
        200
    );
    let unavailable = RateLimitRejection::new("tiny", Refusal::Unavailable);
    assert_eq!(unavailable.retry_after_secs(), None);
    let answer: http::Response<String> =
        super::RateLimitResponder::respond(&super::JsonRateLimitResponse, &unavailable);
    assert_eq!(
        (answer.status(), answer.headers().get("retry-after")),
        (http::StatusCode::SERVICE_UNAVAILABLE, None)
    );
    assert_eq!(
        answer.body(),
        r#"{"error":"limiter_error","policy":"tiny"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn overflow_charges_never_advertise_the_per_key_quota() {
    // One slot: "first" holds it, every other key is charged to the shared
    // overflow bucket (1 an hour). Such a key has no bucket of its own, so
    // it read the per-key burst: a 429 said `r=10;t=0` with `Retry-After:
    // 3600`.
    let limiter: Arc<KeyedLimiter<String, 1>> = Arc::new(
        KeyedLimiter::new(
            Quota::per_hour(10).unwrap(),
            FullPolicy::Overflow(Quota::per_hour(1).unwrap()),
        )
        .unwrap(),
    );
    let service = RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 32))
        .legacy_headers(true)
        .layer(Scripted);
    let first = send(&mut service.clone(), with_key(b"first"))
        .await
        .unwrap();
    assert_eq!(first.headers()["ratelimit"], "\"per_key\";r=9;t=360");
    let overflow = send(&mut service.clone(), with_key(b"second"))
        .await
        .unwrap();
    assert_eq!(overflow.status(), 200);
    for field in ["ratelimit", "ratelimit-policy", "x-ratelimit-remaining"] {
        assert!(
            !overflow.headers().contains_key(field),
            "{field} on an overflow charge"
        );
    }
    let refused = send(&mut service.clone(), with_key(b"third"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "3600");
    for field in ["ratelimit", "ratelimit-policy", "x-ratelimit-remaining"] {
        assert!(
            !refused.headers().contains_key(field),
            "{field} on an overflow 429"
        );
    }
    // The key with a slot still gets its own fields.
    let first = send(&mut service.clone(), with_key(b"first"))
        .await
        .unwrap();
    assert_eq!(first.headers()["ratelimit"], "\"per_key\";r=8;t=720");
}

#[tokio::test(start_paused = true)]
async fn a_429_never_carries_units_left_nor_a_reset_before_retry_after() {
    // A per-key bucket refused on its own: r=0 and t >= Retry-After, for
    // every 429 of a flood that straddles refills.
    let limiter = per_key(Quota::per_second(2));
    let mut service =
        RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 32)).layer(Scripted);
    let mut refused = 0;
    for _ in 0..40 {
        let response = send(&mut service, with_key(b"k")).await.unwrap();
        if response.status() == 429 {
            refused += 1;
            let wait = retry_after(&response);
            let fields = response.headers()["ratelimit"].to_str().unwrap();
            let (r, t) = fields
                .strip_prefix("\"per_key\";r=")
                .and_then(|rest| rest.split_once(";t="))
                .unwrap();
            assert_eq!(r, "0", "{fields}");
            assert!(
                t.parse::<u64>().unwrap() >= wait,
                "{fields} with Retry-After {wait}"
            );
        }
        tokio::time::advance(StdDuration::from_millis(150)).await;
    }
    assert!(refused > 0);
}

#[tokio::test(start_paused = true)]
async fn stacked_layers_list_every_policy() {
    // A global limit around a per-key one: each response lists both
    // policies; the outer layer used to replace the inner's fields, even
    // on the inner's 429.
    let global = RateLimitLayer::new("global", bucket(Quota::per_hour(100))).legacy_headers(true);
    let per_key = RateLimitLayer::keyed(
        "per_key",
        per_key(Quota::per_hour(1)),
        key::header("x-api-key", 32),
    )
    .legacy_headers(true);
    let mut service = global.layer(per_key.layer(Scripted));
    let ok = send(&mut service, with_key(b"k")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["ratelimit-policy"],
        "\"per_key\";q=1;w=3600, \"global\";q=100;w=3600"
    );
    assert_eq!(
        ok.headers()["ratelimit"],
        "\"per_key\";r=0;t=3600, \"global\";r=99;t=36"
    );
    let refused = send(&mut service, with_key(b"k")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "\"per_key\";q=1;w=3600, \"global\";q=100;w=3600"
    );
    assert_eq!(
        refused.headers()["ratelimit"],
        "\"per_key\";r=0;t=3600, \"global\";r=98;t=72"
    );
    // The refusing layer's figures, not the outer one's.
    assert_eq!(refused.headers()["retry-after"], "3600");
    assert_eq!(refused.headers()["x-ratelimit-limit"], "1");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(refused.headers()["x-ratelimit-reset"], "3600");
    assert_eq!(refused.headers().get_all("ratelimit").iter().count(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_refusal_is_reported() {
    use crate::events::{Component, Event, Events, RejectionReporter};

    let events = Events::new(64);
    let mut seen = events.subscribe();
    let limiter: Arc<KeyedLimiter<String, 1>> =
        Arc::new(KeyedLimiter::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject).unwrap());
    let reporter = RejectionReporter::new(
        "per_key",
        Component::KeyedLimiter,
        &events,
        crate::TokioClock::new(),
    );
    let mut service = RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 32))
        .reporting_to(reporter)
        .layer(Scripted);
    let statuses = [
        send(&mut service, with_key(b"a")).await.unwrap().status(), // admitted
        send(&mut service, with_key(b"a")).await.unwrap().status(), // limited
        send(&mut service, get("/200")).await.unwrap().status(),    // bad key
        send(&mut service, with_key(b"b")).await.unwrap().status(), // table full
    ];
    assert_eq!(statuses, [200, 429, 400, 503]);
    assert_eq!(events.published(), 3);
    for _ in 0..3 {
        assert!(matches!(
            seen.try_recv(),
            Some(Event::Rejected { ref name, component: Component::KeyedLimiter, .. }) if &**name == "per_key"
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_table_warns_once_per_interval() {
    let limiter: Arc<KeyedLimiter<String, 1>> =
        Arc::new(KeyedLimiter::new(Quota::per_hour(5).unwrap(), FullPolicy::Reject).unwrap());
    let layer = RateLimitLayer::keyed("tiny", limiter, key::header("x-api-key", 32));
    let throttle = Arc::clone(&layer.full_warn);
    let clock = layer.clock();
    let service = layer.layer(Scripted);
    assert_eq!(
        send(&mut service.clone(), with_key(b"first"))
            .await
            .unwrap()
            .status(),
        200
    );
    for i in 0..100 {
        let key = format!("new-{i}");
        let response = send(&mut service.clone(), with_key(key.as_bytes()))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    // The first refusal warned; the 99 after it wait for the next one.
    assert_eq!(throttle.hit(clock.now()), None);
    tokio::time::advance(StdDuration::from_secs(10)).await;
    assert_eq!(throttle.hit(clock.now()), Some(101));
}

#[tokio::test(start_paused = true)]
async fn the_fields_follow_a_quota_changed_at_run_time() {
    let limiter = per_key(Quota::per_minute(60));
    let service = RateLimitLayer::keyed(
        "per_key",
        Arc::clone(&limiter),
        key::header("x-api-key", 32),
    )
    .layer(Scripted);
    let fields = |response: &http::Response<String>| {
        let h = response.headers();
        (
            h["ratelimit-policy"].to_str().unwrap().to_owned(),
            h["ratelimit"].to_str().unwrap().to_owned(),
        )
    };
    // Twice under the first quota (the second from what the layer kept),
    // twice under each later one, the last back to the first's figures.
    let expected = [
        ("\"per_key\";q=60;w=60", "\"per_key\";r=59;t=1"),
        ("\"per_key\";q=60;w=60", "\"per_key\";r=59;t=1"),
    ];
    for (i, key) in ["a", "b"].into_iter().enumerate() {
        let response = send(&mut service.clone(), with_key(key.as_bytes()))
            .await
            .unwrap();
        assert_eq!(
            fields(&response),
            (expected[i].0.into(), expected[i].1.into())
        );
    }
    let clock = crate::TokioClock::new();
    // New keys each time: a key's bucket carries over to a new quota.
    for (quota, keys, policy, limit) in [
        (
            Quota::per_second(10),
            ["c", "d"],
            "\"per_key\";q=10;w=1",
            "\"per_key\";r=9;t=1",
        ),
        (
            Quota::per_minute(60),
            ["e", "f"],
            "\"per_key\";q=60;w=60",
            "\"per_key\";r=59;t=1",
        ),
    ] {
        limiter.set_quota(0, quota.unwrap(), clock.now()).unwrap();
        for key in keys {
            let response = send(&mut service.clone(), with_key(key.as_bytes()))
                .await
                .unwrap();
            assert_eq!(
                fields(&response),
                (policy.to_owned(), limit.to_owned()),
                "key {key}"
            );
        }
    }
}

/// The two fields of one response as `(q, w, r, t)`.
fn figures(response: &http::Response<String>) -> (u64, u64, u64, u64) {
    let param = |field: &str, name: &str| -> u64 {
        let text = response.headers()[field].to_str().unwrap();
        let after = text.split(&format!(";{name}=")).nth(1).unwrap();
        after.split(';').next().unwrap().parse().unwrap()
    };
    (
        param("ratelimit-policy", "q"),
        param("ratelimit-policy", "w"),
        param("ratelimit", "r"),
        param("ratelimit", "t"),
    )
}

/// Spends a burst of 10 (1 a minute) through `service`: the fields never
/// say more units are left than the policy allows, nor a reset beyond its
/// window.
async fn spend_the_burst<S>(mut service: S)
where
    S: tower_service::Service<Request<()>, Response = http::Response<String>>,
    S::Error: std::fmt::Debug,
{
    let mut admitted = Vec::new();
    for _ in 0..12 {
        let response = send(&mut service, with_key(b"k")).await.unwrap();
        let (q, w, r, t) = figures(&response);
        assert_eq!((q, w), (10, 600), "the burst over its refill");
        assert!(r <= q && t <= w, "q={q} w={w} r={r} t={t}");
        if response.status() == 200 {
            admitted.push(r);
        }
    }
    assert_eq!(admitted, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
}

/// A burst above the tokens per window (found by a hostile review:
/// `q=1;w=60` came with `r=9;t=60`).
#[tokio::test(start_paused = true)]
async fn the_units_left_never_exceed_the_advertised_quota() {
    let quota = || Quota::per_minute(1).unwrap().with_burst(10).unwrap();
    spend_the_burst(
        RateLimitLayer::new("api", Arc::new(TokenBucket::new(quota()))).layer(Scripted),
    )
    .await;
    let table = KeyedLimiter::<String, 8>::new(quota(), FullPolicy::Reject).unwrap();
    let keyed = RateLimitLayer::keyed("per_key", Arc::new(table), key::header("x-api-key", 64));
    spend_the_burst(keyed.layer(Scripted)).await;
}

/// A client behind the proxy cannot leave its address's bucket by padding
/// `X-Forwarded-For` (the part it writes) into a bad key charged to a
/// shared default.
#[tokio::test(start_paused = true)]
async fn padding_x_forwarded_for_never_escapes_the_address_bucket() {
    use std::net::{IpAddr, Ipv4Addr};
    let table = KeyedLimiter::<IpAddr, 64>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject);
    let mut service =
        RateLimitLayer::keyed("per_ip", Arc::new(table.unwrap()), key::forwarded_ip(1))
            .on_bad_key(BadKey::Default(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
            .layer(Scripted);
    let via_proxy = |client_wrote: &str| {
        let mut request = get("/200");
        let field = format!("{client_wrote}203.0.113.9");
        request
            .headers_mut()
            .insert("x-forwarded-for", field.parse().unwrap());
        request
    };
    assert_eq!(
        send(&mut service, via_proxy("")).await.unwrap().status(),
        200
    );
    assert_eq!(
        send(&mut service, via_proxy("")).await.unwrap().status(),
        429
    );
    let padding = format!("{}, ", "1".repeat(1_100));
    let padded = send(&mut service, via_proxy(&padding)).await.unwrap();
    assert_eq!(padded.status(), 429, "a request past the address's limit");
}

// ---------------------------------------------------------------------
// Hostile review (tower layers): models written from the documented
// contract, not from the code.
// ---------------------------------------------------------------------

/// The `(r, t)` of `policy`'s member in the `RateLimit` field.
fn member_rt(response: &http::Response<String>, policy: &str) -> (u64, u64) {
    let field = response.headers()["ratelimit"].to_str().unwrap();
    let prefix = format!("\"{policy}\";r=");
    let member = field
        .split(", ")
        .find_map(|m| m.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {policy} member in {field}"));
    let (r, t) = member.split_once(";t=").unwrap();
    (r.parse().unwrap(), t.parse().unwrap())
}

/// The contract (module docs): on a `429`, `t` is its `Retry-After` (with
/// a burst of 1 also the seconds until the bucket is full again). A key
/// used once at 0 (1 an hour) and refused at 3 599 s is full again one
/// second later, as `Retry-After: 1` says; the single bucket says `t=1`,
/// the keyed one must too (a client reading `r=0;t=3600` backs off for an
/// hour instead of a second).
#[tokio::test(start_paused = true)]
async fn a_keyed_429_reports_the_real_time_until_full() {
    let single = RateLimitLayer::new("single", bucket(Quota::per_hour(1))).layer(Scripted);
    let keyed = RateLimitLayer::keyed(
        "per_key",
        per_key(Quota::per_hour(1)),
        key::header("x-api-key", 32),
    )
    .layer(Scripted);
    let (mut single, mut keyed) = (single, keyed);
    assert_eq!(
        send(&mut single, with_key(b"k")).await.unwrap().status(),
        200
    );
    assert_eq!(
        send(&mut keyed, with_key(b"k")).await.unwrap().status(),
        200
    );
    tokio::time::advance(StdDuration::from_secs(3_599)).await;
    let s = send(&mut single, with_key(b"k")).await.unwrap();
    let k = send(&mut keyed, with_key(b"k")).await.unwrap();
    assert_eq!((s.status().as_u16(), k.status().as_u16()), (429, 429));
    assert_eq!((retry_after(&s), retry_after(&k)), (1, 1));
    assert_eq!(member_rt(&s, "single"), (0, 1), "the single bucket");
    assert_eq!(member_rt(&k, "per_key"), (0, 1), "the keyed bucket");
}

/// The same for an admitted request: 1 an hour with a burst of 2, one
/// token spent at 0 and another at 1 800 s leaves half a token, full
/// again 5 400 s later (the single bucket says so); the keyed one said
/// 7 200.
#[tokio::test(start_paused = true)]
async fn a_keyed_admission_reports_the_real_time_until_full() {
    let quota = || Quota::per_hour(1).unwrap().with_burst(2).unwrap();
    let mut single =
        RateLimitLayer::new("single", Arc::new(TokenBucket::new(quota()))).layer(Scripted);
    let table = KeyedLimiter::<String, 8>::new(quota(), FullPolicy::Reject).unwrap();
    let mut keyed = RateLimitLayer::keyed("per_key", Arc::new(table), key::header("x-api-key", 32))
        .layer(Scripted);
    send(&mut single, with_key(b"k")).await.unwrap();
    send(&mut keyed, with_key(b"k")).await.unwrap();
    tokio::time::advance(StdDuration::from_secs(1_800)).await;
    let s = send(&mut single, with_key(b"k")).await.unwrap();
    let k = send(&mut keyed, with_key(b"k")).await.unwrap();
    assert_eq!((s.status().as_u16(), k.status().as_u16()), (200, 200));
    assert_eq!(member_rt(&s, "single"), (0, 5_400));
    assert_eq!(member_rt(&k, "per_key"), (0, 5_400));
}

/// The legacy trio has room for one policy: an outer layer that finds an
/// inner service's partial trio must not complete it with its own figures
/// (the client would read one policy's limit with another's remaining).
#[tokio::test(start_paused = true)]
async fn the_legacy_trio_never_mixes_two_policies() {
    // The application's own quota: none left, back in 900 s.
    let own_remaining = FnInner {
        ready: Ok(()),
        call: |_| {
            let mut response = http::Response::new(String::new());
            let h = response.headers_mut();
            h.insert("x-ratelimit-remaining", http::HeaderValue::from_static("0"));
            h.insert("x-ratelimit-reset", http::HeaderValue::from_static("900"));
            response
        },
    };
    let mut service = RateLimitLayer::new("api", bucket(Quota::per_hour(100)))
        .legacy_headers(true)
        .layer(own_remaining);
    let response = send(&mut service, get("/")).await.unwrap();
    let h = response.headers();
    let trio = (
        h.get("x-ratelimit-limit").map(|v| v.to_str().unwrap()),
        h["x-ratelimit-remaining"].to_str().unwrap(),
        h["x-ratelimit-reset"].to_str().unwrap(),
    );
    // Either the inner's (partial) trio as it was, or the layer's whole.
    assert!(
        trio == (None, "0", "900") || trio == (Some("100"), "99", "36"),
        "a trio of two policies: {trio:?}"
    );
}

/// However long the bucket sat idle (ten years of paused time), a burst
/// admits at most the configured burst, single or keyed.
#[tokio::test(start_paused = true)]
async fn a_long_idle_never_admits_more_than_the_burst() {
    let quota = || Quota::per_second(5).unwrap().with_burst(3).unwrap();
    let mut single =
        RateLimitLayer::new("single", Arc::new(TokenBucket::new(quota()))).layer(Scripted);
    let table = KeyedLimiter::<String, 8>::new(quota(), FullPolicy::Reject).unwrap();
    let mut keyed = RateLimitLayer::keyed("per_key", Arc::new(table), key::header("x-api-key", 32))
        .layer(Scripted);
    for idle in [0_u64, 1, 3_600, 86_400 * 365 * 10] {
        tokio::time::advance(StdDuration::from_secs(idle)).await;
        let (mut s, mut k) = (0, 0);
        for _ in 0..20 {
            s += u32::from(send(&mut single, with_key(b"k")).await.unwrap().status() == 200);
            k += u32::from(send(&mut keyed, with_key(b"k")).await.unwrap().status() == 200);
        }
        assert_eq!((s, k), (3, 3), "after {idle} s idle");
    }
}

/// Many distinct keys filling a small table never let a known key past
/// its limit, and never refuse a key that has its own slot.
#[tokio::test(start_paused = true)]
async fn a_flood_of_new_keys_never_frees_a_known_key_from_its_limit() {
    let limiter: Arc<KeyedLimiter<String, 8>> =
        Arc::new(KeyedLimiter::new(Quota::per_hour(2).unwrap(), FullPolicy::Reject).unwrap());
    let service =
        RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 4096)).layer(Scripted);
    let mut victim = 0;
    for i in 0..2_000 {
        // Keys that differ only in case, in padding, or are very long.
        let key = match i % 4 {
            0 => format!("K{i}"),
            1 => format!("k{i}"),
            2 => format!("{}{i}", "x".repeat(4_000)),
            _ => format!("k{i} "),
        };
        let _ = send(&mut service.clone(), with_key(key.as_bytes())).await;
        if i % 100 == 0 {
            let r = send(&mut service.clone(), with_key(b"victim"))
                .await
                .unwrap();
            victim += u32::from(r.status() == 200);
        }
    }
    assert!(victim <= 2, "{victim} admitted on a quota of 2 an hour");
}

/// Many threads and many clones at once never admit more than the quota
/// (100 an hour on real time: a test of a few seconds refills at most one
/// more).
#[test]
fn concurrent_clones_never_admit_beyond_the_quota() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let admitted = runtime.block_on(async {
        let single = RateLimitLayer::new("api", bucket(Quota::per_hour(100))).layer(Scripted);
        let limiter = per_key(Quota::per_hour(100));
        let keyed =
            RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 32)).layer(Scripted);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (single, keyed) = (single.clone(), keyed.clone());
            tasks.push(tokio::spawn(async move {
                let (mut s, mut k) = (0_u32, 0_u32);
                for _ in 0..500 {
                    let a = send(&mut single.clone(), get("/200")).await.unwrap();
                    s += u32::from(a.status() == 200);
                    let b = send(&mut keyed.clone(), with_key(b"k")).await.unwrap();
                    k += u32::from(b.status() == 200);
                }
                (s, k)
            }));
        }
        let mut total = (0, 0);
        for task in tasks {
            let (s, k) = task.await.unwrap();
            total = (total.0 + s, total.1 + k);
        }
        total
    });
    assert!(admitted.0 >= 100 && admitted.0 <= 101, "{admitted:?}");
    assert!(admitted.1 >= 100 && admitted.1 <= 101, "{admitted:?}");
}

/// For a spread of quotas, single and keyed, on requests at pseudo-random
/// times: `Retry-After` is at least 1 and a client that waits exactly it
/// is admitted; `r <= q`; an admitted response's `t` is never short (the
/// bucket is full `t` seconds later), a refusal's is its `Retry-After`
/// (draft-ietf-httpapi-ratelimit-headers § 6); every parameter is a Structured Field Integer (at most
/// 15 digits).
#[tokio::test(start_paused = true)]
async fn retry_after_and_reset_are_never_early_for_any_quota() {
    let quotas = [
        Quota::per_second(1),
        Quota::per_second(7),
        Quota::new(10, fusebox::Duration::from_millis(1_500)),
        Quota::new(3, fusebox::Duration::from_millis(7)),
        Quota::new(7, fusebox::Duration::from_secs(3)),
        Quota::per_minute(100).and_then(|q| q.with_burst(7)),
        Quota::per_hour(1).and_then(|q| q.with_burst(3)),
        Quota::new(1, fusebox::Duration::from_secs(1 << 30)),
    ];
    let sf_integer = |v: u64| v <= 999_999_999_999_999;
    let mut rng = fastrand::Rng::with_seed(7);
    for quota in quotas {
        let quota = quota.unwrap();
        let single = Arc::new(TokenBucket::new(quota));
        let layer = RateLimitLayer::new("s", Arc::clone(&single));
        let clock = layer.clock();
        let mut single_svc = layer.layer(Scripted);
        // A keyed table's range is narrower: the longest quota is single
        // only (its keyed side is charged to a quota of one a second).
        let table =
            KeyedLimiter::<String, 8>::new(quota, FullPolicy::Reject).unwrap_or_else(|_| {
                assert_eq!(quota.period(), fusebox::Duration::from_secs(1 << 30));
                KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject).unwrap()
            });
        let table = Arc::new(table);
        let keyed_burst = table.quota(0).unwrap().burst();
        let mut keyed_svc =
            RateLimitLayer::keyed("k", Arc::clone(&table), key::header("x-api-key", 8))
                .with_clock(clock)
                .layer(Scripted);
        let period = quota.period().as_micros().min(10_000_000);
        for _ in 0..60 {
            let gap = rng.u64(0..=period / u64::from(quota.burst()).max(1) / 2);
            tokio::time::advance(StdDuration::from_micros(gap)).await;
            for (name, keyed) in [("s", false), ("k", true)] {
                let response = if keyed {
                    send(&mut keyed_svc, with_key(b"a")).await.unwrap()
                } else {
                    send(&mut single_svc, with_key(b"a")).await.unwrap()
                };
                let (q, w, r, t) = figures(&response);
                let at = format!("{quota:?} {name} q={q} w={w} r={r} t={t}");
                assert!([q, w, r, t].into_iter().all(sf_integer), "{at}");
                assert!(r <= q, "{at}");
                if response.status() == 429 {
                    let wait = retry_after(&response);
                    assert!(wait >= 1 && sf_integer(wait), "{at}");
                    assert_eq!((r, t), (0, wait), "{at} Retry-After {wait}");
                    tokio::time::advance(StdDuration::from_secs(wait)).await;
                    let again = if keyed {
                        send(&mut keyed_svc, with_key(b"a")).await.unwrap()
                    } else {
                        send(&mut single_svc, with_key(b"a")).await.unwrap()
                    };
                    assert_eq!(again.status(), 200, "{at}: early Retry-After {wait}");
                } else {
                    let later = clock.now() + fusebox::Duration::from_secs(t);
                    let full = if keyed {
                        table.available(&"a".to_owned(), later)
                    } else {
                        single.available(later)
                    };
                    let burst = if keyed { keyed_burst } else { quota.burst() };
                    assert_eq!(full, burst, "not full t s later: {at}");
                }
            }
        }
    }
}

/// A table filled by many new keys is not refusing forever: once their
/// buckets are full again, a newcomer gets a slot; meanwhile the keys
/// that hold slots are served within their limits.
#[tokio::test(start_paused = true)]
async fn a_full_table_takes_newcomers_once_its_keys_are_idle() {
    let limiter: Arc<KeyedLimiter<String, 8>> =
        Arc::new(KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject).unwrap());
    let mut service =
        RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 64)).layer(Scripted);
    let mut full = 0;
    for i in 0..64 {
        let r = send(&mut service, with_key(format!("flood-{i}").as_bytes()))
            .await
            .unwrap();
        full += u32::from(r.status() == 503);
    }
    assert!(full > 0, "the table filled");
    let newcomer = send(&mut service, with_key(b"newcomer")).await.unwrap();
    assert_eq!(newcomer.status(), 503);
    tokio::time::advance(StdDuration::from_secs(2)).await;
    let newcomer = send(&mut service, with_key(b"newcomer")).await.unwrap();
    assert_eq!(newcomer.status(), 200, "idle keys make room");
    let again = send(&mut service, with_key(b"newcomer")).await.unwrap();
    assert_eq!(again.status(), 429, "and the newcomer is limited");
}

/// A refusal said `Retry-After: 0` (and `"retry_after":0`) when the wait
/// it was given was zero. A `Shared` limit failing closed names the time
/// until its next probe of Redis, and that time saturates to zero for a
/// request sent before the outage was seen that fails after the probe
/// came due (`Outage::until_probe`): the client was told to come back at
/// once, in a loop, to a limiter that refuses. A refusal's wait is at
/// least a second (found by a hostile review).
#[test]
fn a_refusal_never_says_retry_after_zero() {
    use super::{JsonRateLimitResponse, RateLimitResponder};
    use crate::tower::breaker::{BreakerRejection, BreakerResponder, JsonBreakerResponse};
    let zero = fusebox::Duration::ZERO;
    for refusal in [
        Refusal::Limited { retry_after: zero },
        Refusal::FailClosed { retry_after: zero },
    ] {
        let rejection = RateLimitRejection::new("api", refusal);
        assert_eq!(rejection.retry_after_secs(), Some(1), "{refusal:?}");
        let response: http::Response<String> = JsonRateLimitResponse.respond(&rejection);
        assert_eq!(response.headers()["retry-after"], "1", "{refusal:?}");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["retry_after"], 1, "{refusal:?}");
    }
    let open = BreakerRejection::new("db", fusebox::breaker::State::Open, Some(zero));
    assert_eq!(open.retry_after_secs(), Some(1));
    let response: http::Response<String> = JsonBreakerResponse.respond(&open);
    assert_eq!(response.headers()["retry-after"], "1");
}

/// Two layers over one bucket read two clocks: each `new` started its
/// own at zero, so a layer built an hour after the first (per connection,
/// per router, lazily) read times an hour behind the bucket's state and
/// refused every request for an hour (`Retry-After: 3546`) from a bucket
/// with 55 tokens left. Every layer over one bucket reads one clock
/// (found by a hostile review).
#[tokio::test(start_paused = true)]
async fn layers_built_apart_over_one_bucket_read_one_clock() {
    let shared = bucket(Quota::per_minute(60));
    let first = RateLimitLayer::new("api", Arc::clone(&shared));
    tokio::time::advance(StdDuration::from_secs(3_600)).await;
    let mut a = first.layer(Scripted);
    for _ in 0..5 {
        assert_eq!(send(&mut a, get("/200")).await.unwrap().status(), 200);
    }
    let mut b = RateLimitLayer::new("api", Arc::clone(&shared)).layer(Scripted);
    let response = send(&mut b, get("/200")).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(response.headers()["ratelimit"], "\"api\";r=54;t=6");
    // And a keyed limiter, shared the same way.
    let per_key = per_key(Quota::per_minute(60));
    let first = RateLimitLayer::keyed("k", Arc::clone(&per_key), key::header("x-api-key", 8));
    tokio::time::advance(StdDuration::from_secs(3_600)).await;
    let mut a = first.layer(Scripted);
    assert_eq!(send(&mut a, with_key(b"k1")).await.unwrap().status(), 200);
    let mut b = RateLimitLayer::keyed("k", per_key, key::header("x-api-key", 8)).layer(Scripted);
    let response = send(&mut b, with_key(b"k1")).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
}
