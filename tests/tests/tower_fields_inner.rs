//! A rate-limit layer in front of a service that sends rate-limit fields
//! of its own (an upstream's, passed through), over real HTTP: the
//! layer's members join the service's in one field line that an
//! independent Structured Field parser (`sfv`) reads as one List, the
//! service's partial legacy trio and its `Retry-After` stay as they are,
//! and answers without a body (`HEAD`, `304`, `204`) carry the fields
//! too; the layer's own `429` carries its figures alone.

use std::sync::Arc;

use crate::tower_common::{connect_from, get, read_reply, request, serve, Reply};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get as route;
use axum::Router;
use fusebox::bucket::Quota;
use fusebox::TokenBucket;
use fusebox_std::tower::RateLimitLayer;
use sfv::{ListEntry, Parser};
use tokio::io::AsyncWriteExt;

/// The upstream's own fields: its policy members on two field lines, its
/// `RateLimit` member, one field of the legacy trio and a `Retry-After`.
fn upstream_fields() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let field = |s: &'static str| HeaderValue::from_static(s);
    headers.append("ratelimit-policy", field("\"upstream\";q=10;w=1"));
    headers.append(
        "ratelimit-policy",
        field("\"up \\\"day\\\"\";q=1000;w=86400"),
    );
    headers.insert("ratelimit", field("\"upstream\";r=9;t=1"));
    headers.insert("x-ratelimit-remaining", field("9"));
    headers.insert("retry-after", field("120"));
    headers
}

fn app() -> Router {
    Router::new()
        .route("/own", route(|| async { (upstream_fields(), "hello") }))
        .route(
            "/not-modified",
            route(|| async { (StatusCode::NOT_MODIFIED, upstream_fields()) }),
        )
        .route("/no-content", route(|| async { StatusCode::NO_CONTENT }))
}

/// The field lines named `name`.
fn lines<'a>(reply: &'a Reply, name: &str) -> Vec<&'a [u8]> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// Field `name`, in one line, parsed as a List: each member's name and
/// its parameters, in order.
fn members(reply: &Reply, name: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let lines = lines(reply, name);
    assert_eq!(lines.len(), 1, "{name}: one field line, got {lines:?}");
    let text = std::str::from_utf8(lines[0]).expect("visible ASCII");
    let list: sfv::List = Parser::new(text)
        .parse_list()
        .unwrap_or_else(|e| panic!("{name}: {text:?} is no Structured Field List: {e}"));
    list.into_iter()
        .map(|entry| {
            let ListEntry::Item(item) = entry else {
                panic!("{name}: an inner list in {text:?}");
            };
            let member = item.bare_item.as_string().expect("a String").as_str();
            let params = item
                .params
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_integer().map_or(-1, i64::from)))
                .collect();
            (member.to_owned(), params)
        })
        .collect()
}

/// The edge's `r`, and whether its `t` is within a minute below `t`
/// (the quota's figures are exact; how much of the hour passed between
/// the requests is the machine's, and rounded up to whole seconds).
fn edge(reply: &Reply, r: i64, t: i64) -> bool {
    let limit = members(reply, "ratelimit");
    let Some((_, params)) = limit.iter().find(|(name, _)| name == "edge") else {
        return false;
    };
    params[0] == ("r".to_owned(), r) && params[1].0 == "t" && (t - 60..=t).contains(&params[1].1)
}

fn member(name: &str, a: (&str, i64), b: (&str, i64)) -> (String, Vec<(String, i64)>) {
    (
        name.to_owned(),
        vec![(a.0.to_owned(), a.1), (b.0.to_owned(), b.1)],
    )
}

/// Sends `method path` on a new connection and reads the whole answer.
async fn send(addr: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    let mut bytes = request(path, &[]);
    bytes.splice(..3, method.bytes());
    let mut stream = connect_from(addr, std::net::Ipv4Addr::LOCALHOST).await;
    stream.write_all(&bytes).await.expect("write");
    read_reply(&mut stream).await
}

#[tokio::test]
async fn the_layers_members_join_the_services_own_fields() {
    let bucket = Arc::new(TokenBucket::new(Quota::per_hour(4).unwrap()));
    let layer = RateLimitLayer::new("edge", bucket).legacy_headers(true);
    let addr = serve(app().layer(layer)).await;

    let reply = get(addr, "/own", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello"));
    assert_eq!(
        members(&reply, "ratelimit-policy"),
        [
            member("upstream", ("q", 10), ("w", 1)),
            member("up \"day\"", ("q", 1000), ("w", 86_400)),
            member("edge", ("q", 4), ("w", 3_600)),
        ]
    );
    let limit = members(&reply, "ratelimit");
    assert_eq!(limit[0], member("upstream", ("r", 9), ("t", 1)));
    assert_eq!(limit[1].0, "edge");
    assert!(limit.len() == 2 && edge(&reply, 3, 900), "{limit:?}");
    // The upstream's partial trio is never completed with the edge's
    // figures; its Retry-After is its own.
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("9"));
    assert_eq!(reply.header("x-ratelimit-limit"), None);
    assert_eq!(reply.header("x-ratelimit-reset"), None);
    assert_eq!(lines(&reply, "retry-after"), [b"120"]);

    // No body, the same fields.
    let head = send(addr, "HEAD", "/own").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert!(edge(&head, 2, 1_800), "{:?}", members(&head, "ratelimit"));
    let not_modified = get(addr, "/not-modified", &[]).await;
    assert_eq!((not_modified.status, not_modified.body.as_str()), (304, ""));
    assert_eq!(members(&not_modified, "ratelimit-policy").len(), 3);
    assert!(edge(&not_modified, 1, 2_700));
    let no_content = get(addr, "/no-content", &[]).await;
    assert_eq!(no_content.status, 204);
    assert_eq!(members(&no_content, "ratelimit").len(), 1);
    assert!(edge(&no_content, 0, 3_600));
    // The legacy trio is the edge's where the service sent none: its `t`.
    let t = members(&no_content, "ratelimit")[0].1[1].1.to_string();
    assert_eq!(
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset"
        ]
        .map(|n| no_content.header(n)),
        [Some("4"), Some("0"), Some(t.as_str())]
    );

    // The edge's own refusal: its figures alone (the service never ran).
    let refused = get(addr, "/own", &[]).await;
    assert_eq!(refused.status, 429);
    let wait = refused.header("retry-after").expect("a Retry-After");
    assert_eq!(
        members(&refused, "ratelimit-policy"),
        [member("edge", ("q", 4), ("w", 3_600))]
    );
    assert_eq!(members(&refused, "ratelimit").len(), 1);
    assert!(edge(&refused, 0, 900));
    assert_eq!(members(&refused, "ratelimit")[0].1[1].1.to_string(), wait);
    assert_eq!(
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset"
        ]
        .map(|n| refused.header(n)),
        [Some("4"), Some("0"), Some(wait)]
    );
}
