//! Hostile-review checks of a full keyed table's `503` at the extremes of
//! the quota: a token of a microsecond (the hint is never `0`, in the
//! header, the body and the gRPC pushback) and one of ten days (the
//! whole wait, not a wrapped or clamped one). Sound-but-checked.

use std::sync::Arc;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::Duration;
use tower_layer::Layer;

use super::{key, RateLimitLayer, RateLimitRejection, Refusal};
use crate::tower::test_service::{send, with_key, Scripted};

/// One slot held by `first`; `second` refused: its rejection, the JSON
/// answer's `Retry-After` and body, and the gRPC answer's pushback.
async fn refused_second(quota: Quota) -> (Refusal, String, String, String) {
    let limiter: Arc<KeyedLimiter<String, 1>> =
        Arc::new(KeyedLimiter::new(quota, FullPolicy::Reject).unwrap());
    let layer = RateLimitLayer::keyed("tiny", limiter, key::header("x-api-key", 32));
    let mut service = layer.clone().layer(Scripted);
    assert_eq!(
        send(&mut service, with_key(b"first"))
            .await
            .unwrap()
            .status(),
        200
    );
    let full = send(&mut service, with_key(b"second")).await.unwrap();
    assert_eq!(full.status(), 503);
    let refusal = full
        .extensions()
        .get::<RateLimitRejection>()
        .unwrap()
        .refusal;
    let mut grpc = layer
        .responder(crate::tower::grpc::GrpcRateLimitResponse)
        .layer(Scripted);
    let answer = send(&mut grpc, with_key(b"third")).await.unwrap();
    assert_eq!(answer.headers()["grpc-status"], "14");
    (
        refusal,
        full.headers()["retry-after"].to_str().unwrap().to_owned(),
        full.body().clone(),
        answer.headers()["grpc-retry-pushback-ms"]
            .to_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_microsecond_token_says_one_second_and_one_millisecond() {
    let quota = Quota::with_period(Duration::from_micros(1)).unwrap();
    let (refusal, header, body, pushback) = refused_second(quota).await;
    assert_eq!(
        refusal,
        Refusal::TableFull {
            retry_after: Duration::from_micros(1)
        }
    );
    assert_eq!((header.as_str(), pushback.as_str()), ("1", "1"));
    assert_eq!(
        body,
        r#"{"error":"limiter_full","policy":"tiny","retry_after":1}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_ten_day_token_says_ten_days() {
    let days = Duration::from_secs(10 * 86_400);
    let quota = Quota::with_period(days).unwrap().with_burst(3).unwrap();
    let (refusal, header, body, pushback) = refused_second(quota).await;
    assert_eq!(refusal, Refusal::TableFull { retry_after: days });
    assert_eq!(header, "864000");
    assert_eq!(
        body,
        r#"{"error":"limiter_full","policy":"tiny","retry_after":864000}"#
    );
    assert_eq!(pushback, "864000000");
}
