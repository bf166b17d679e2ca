//! The rate-limit fields as a client reads them: every `RateLimit-Policy`
//! and `RateLimit` the layers send, parsed by an independent Structured
//! Field parser (the `sfv` crate, RFC 9651) rather than compared with the
//! strings the code means to write, and held to
//! draft-ietf-httpapi-ratelimit-headers (-10 and -11, the same fields on
//! the wire): each field a List of Items, each Item a String naming a
//! policy; `RateLimit-Policy` with `q` (required, the quota) and `w` (the
//! window, seconds); `RateLimit` with `r` (required, the quota left) and
//! `t` (seconds); every name in `RateLimit` listed in `RateLimit-Policy`;
//! `r` never above its policy's `q`; and on a `429`, the refusing policy at
//! `r=0` with a `t` equal to the `Retry-After` (§ 6: a `Retry-After`
//! SHOULD NOT reference a point in time earlier than `t`).
//!
//! Over single, keyed and stacked layers, policy names a client must see
//! escaped or percent-encoded, and a spread of quotas, on paused time.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::TokenBucket;
use fusebox_std::tower::rate_limit::key;
use fusebox_std::tower::RateLimitLayer;
use http::{HeaderMap, Request, Response};
use sfv::{ListEntry, Parser};
use tower::{service_fn, Layer, Service, ServiceExt};

/// One member of a field: its policy name and its Integer parameters.
#[derive(Debug)]
struct Member {
    name: String,
    params: BTreeMap<String, i64>,
}

/// Every line of `field` in `headers`, parsed as one List (RFC 9651
/// § 4.2: a List's lines are combined).
fn members(headers: &HeaderMap, field: &str) -> Vec<Member> {
    let lines: Vec<&str> = headers
        .get_all(field)
        .iter()
        .map(|v| v.to_str().expect("a field of visible ASCII"))
        .collect();
    let value = lines.join(", ");
    let list: sfv::List = Parser::new(value.as_str())
        .parse_list()
        .unwrap_or_else(|e| panic!("{field}: {value:?} is not a Structured Field List: {e}"));
    list.into_iter()
        .map(|entry| {
            let ListEntry::Item(item) = entry else {
                panic!("{field}: an inner list in {value:?}");
            };
            let name = item
                .bare_item
                .as_string()
                .unwrap_or_else(|| {
                    panic!("{field}: a policy name that is not a String in {value:?}")
                })
                .as_str()
                .to_owned();
            let params = item
                .params
                .iter()
                .map(|(key, v)| {
                    let n = v.as_integer().unwrap_or_else(|| {
                        panic!("{field}: {key:?} is not an Integer in {value:?}")
                    });
                    (key.as_str().to_owned(), i64::from(n))
                })
                .collect();
            Member { name, params }
        })
        .collect()
}

/// Checks one response's fields against the draft; returns the `RateLimit`
/// members.
fn check(response: &Response<String>, at: &str) -> Vec<Member> {
    let headers = response.headers();
    let policies = members(headers, "ratelimit-policy");
    let limits = members(headers, "ratelimit");
    assert!(
        !policies.is_empty() && !limits.is_empty(),
        "{at}: {headers:?}"
    );
    let mut quota = BTreeMap::new();
    for p in &policies {
        let keys: Vec<&str> = p.params.keys().map(String::as_str).collect();
        assert_eq!(keys, ["q", "w"], "{at}: {p:?}");
        assert!(p.params["q"] >= 1 && p.params["w"] >= 1, "{at}: {p:?}");
        assert!(
            quota.insert(p.name.clone(), p.params["q"]).is_none(),
            "{at}: policy {:?} listed twice",
            p.name
        );
    }
    for l in &limits {
        let keys: Vec<&str> = l.params.keys().map(String::as_str).collect();
        assert_eq!(keys, ["r", "t"], "{at}: {l:?}");
        let q = quota
            .get(&l.name)
            .unwrap_or_else(|| panic!("{at}: {:?} not in RateLimit-Policy", l.name));
        assert!((0..=*q).contains(&l.params["r"]), "{at}: {l:?} q={q}");
        assert!(l.params["t"] >= 0, "{at}: {l:?}");
    }
    if response.status() == 429 {
        let wait: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait >= 1, "{at}");
        assert!(
            limits
                .iter()
                .any(|l| (l.params["r"], l.params["t"]) == (0, wait)),
            "{at}: no policy at r=0;t={wait} (the Retry-After): {limits:?}"
        );
    }
    limits
}

type Svc = tower::util::BoxService<Request<()>, Response<String>, Infallible>;

fn ok() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
       + Clone
       + Send {
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::from("ok"))) })
}

fn with_key(k: &str) -> Request<()> {
    Request::builder().header("x-api-key", k).body(()).unwrap()
}

/// Names as written, and as the fields must spell them once parsed: a
/// Structured Field String holds printable ASCII (quotes and backslashes
/// escaped); anything else, and `%`, is percent-encoded.
const NAMES: [(&str, &str); 4] = [
    ("api", "api"),
    (r#"say "hi" \ bye"#, r#"say "hi" \ bye"#),
    ("tab\there", "tab%09here"),
    ("über", "%c3%bcber"),
];

fn quotas() -> Vec<Quota> {
    [
        Quota::per_second(1),
        Quota::per_second(7),
        Quota::new(3, fusebox::Duration::from_millis(7)),
        Quota::new(10, fusebox::Duration::from_millis(1_500)),
        Quota::per_minute(100).and_then(|q| q.with_burst(7)),
        Quota::per_hour(1).and_then(|q| q.with_burst(3)),
        Quota::per_second(1_000_000_000),
    ]
    .into_iter()
    .map(Result::unwrap)
    .collect()
}

/// One request with API key `key` through `service`, once it is ready.
async fn send(service: &mut Svc, key: &str) -> Response<String> {
    service
        .ready()
        .await
        .unwrap()
        .call(with_key(key))
        .await
        .unwrap()
}

/// Sends `n` requests to `service`, `key` alternating, at pseudo-random
/// gaps up to `max_gap`; checks every response; counts the refusals.
async fn drive(
    service: &mut Svc,
    n: usize,
    max_gap: Duration,
    rng: &mut fastrand::Rng,
    at: &str,
) -> usize {
    let mut refused = 0;
    for i in 0..n {
        let gap = rng.u64(0..=max_gap.as_micros() as u64);
        tokio::time::advance(Duration::from_micros(gap)).await;
        let k = if i % 3 == 0 { "b" } else { "a" };
        let response = send(service, k).await;
        check(&response, &format!("{at} request {i}"));
        refused += usize::from(response.status() == 429);
    }
    refused
}

#[tokio::test(start_paused = true)]
async fn single_and_keyed_layers_send_fields_a_parser_reads_as_the_draft_says() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut refused = 0;
    for quota in quotas() {
        let gap = Duration::from_micros(
            (quota.period().as_micros() / u64::from(quota.tokens())).min(2_000_000),
        );
        for (name, spelled) in NAMES {
            let at = format!("{quota:?} {name:?}");
            let bucket = Arc::new(TokenBucket::new(quota));
            let mut single: Svc = Svc::new(RateLimitLayer::new(name, bucket).layer(ok()));
            refused += drive(&mut single, 40, gap, &mut rng, &format!("single {at}")).await;
            let first = send(&mut single, "a").await;
            let names: Vec<String> = members(first.headers(), "ratelimit")
                .into_iter()
                .map(|m| m.name)
                .collect();
            assert_eq!(names, [spelled], "{at}");

            let table =
                Arc::new(KeyedLimiter::<String, 8>::new(quota, FullPolicy::Reject).unwrap());
            let mut keyed: Svc = Svc::new(
                RateLimitLayer::keyed(name, table, key::header("x-api-key", 64)).layer(ok()),
            );
            refused += drive(&mut keyed, 40, gap, &mut rng, &format!("keyed {at}")).await;
        }
    }
    // The runs reached their refusals, where `t` and `Retry-After` meet.
    assert!(refused > 100, "{refused}");
}

#[tokio::test(start_paused = true)]
async fn stacked_layers_list_every_policy_and_the_refusing_one_at_its_retry_after() {
    let mut rng = fastrand::Rng::with_seed(12);
    let global = Arc::new(TokenBucket::new(Quota::per_minute(90).unwrap()));
    let per_key = Arc::new(
        KeyedLimiter::<String, 8>::new(
            Quota::per_second(2).and_then(|q| q.with_burst(3)).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap(),
    );
    let inner =
        RateLimitLayer::keyed("per \"key\"", per_key, key::header("x-api-key", 64)).layer(ok());
    let mut service: Svc = Svc::new(RateLimitLayer::new("global", global).layer(inner));
    let (mut both, mut by_key, mut by_global) = (0, 0, 0);
    for i in 0..200 {
        tokio::time::advance(Duration::from_millis(rng.u64(0..=400))).await;
        let k = if i % 2 == 0 { "a" } else { "b" };
        let response = send(&mut service, k).await;
        let limits = check(&response, &format!("request {i}"));
        let names: Vec<&str> = limits.iter().map(|m| m.name.as_str()).collect();
        if names.len() == 2 {
            both += 1;
            // Joined in one List, the inner layer's member first.
            assert_eq!(names, ["per \"key\"", "global"], "request {i}");
        }
        if response.status() == 429 {
            // Refused by the global layer: the inner one never saw it.
            if names.len() == 1 {
                by_global += 1;
            } else {
                by_key += 1;
                assert_eq!(limits[0].params["r"], 0, "request {i}");
            }
        }
    }
    // Both layers refused some requests and admitted others.
    assert!(
        both > 100 && by_key > 10 && by_global > 10,
        "both {both}, by key {by_key}, by global {by_global}"
    );
}
