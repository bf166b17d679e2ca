//! A name is the user's to choose, and one built from an upstream's URL
//! or a request can carry a credential. The registry, the logs, the
//! health report and every HTTP answer show names redacted; so does the
//! `Debug` of each type that keeps one, which is what a `?layer` or
//! `{:?}` in the application's own log lines prints. (Names of what lives
//! in Redis are registry names, which hold no secret.)

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::{Quota, TokenBucket};
use fusebox_std::events::{Component, Events, RejectionReporter};
use fusebox_std::policy::Breaker;
use fusebox_std::tower::breaker::BreakerRejection;
use fusebox_std::tower::rate_limit::{RateLimitRejection, Refusal};
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use fusebox_std::TokioClock;
use tower::Layer;

/// Names holding a password in a URL and a token in a pair.
const NAMES: [&str; 2] = ["redis://app:hunter2@cache:6379", "upstream?token=s3cret"];
const SECRETS: [&str; 2] = ["hunter2", "s3cret"];

fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(5).build().unwrap(),
    ))
}

/// `debug` shows the type, and neither secret.
fn hides_secrets(what: &str, debug: &str) {
    for secret in SECRETS {
        assert!(!debug.contains(secret), "{what} shows {secret:?}: {debug}");
    }
    assert!(debug.contains("***"), "{what} shows no mask: {debug}");
}

#[tokio::test]
async fn the_debug_of_every_named_policy_and_layer_redacts_its_name() {
    for name in NAMES {
        let builder = Breaker::builder(name, core());
        hides_secrets("BreakerBuilder", &format!("{builder:?}"));
        hides_secrets("Breaker", &format!("{:?}", builder.build()));

        let layer = CircuitBreakerLayer::new(name, core());
        hides_secrets("CircuitBreakerLayer", &format!("{layer:?}"));
        let service = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
        hides_secrets("CircuitBreakerService", &format!("{service:?}"));

        let bucket = Arc::new(TokenBucket::new(Quota::per_second(5).unwrap()));
        let limit = RateLimitLayer::new(name, bucket);
        hides_secrets("RateLimitLayer", &format!("{limit:?}"));
        let service = limit.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
        hides_secrets("RateLimitService", &format!("{service:?}"));

        let reporter =
            RejectionReporter::new(name, Component::Limiter, &Events::new(4), TokioClock::new());
        hides_secrets("RejectionReporter", &format!("{reporter:?}"));

        // What the layers hand their responders (and put in the response's
        // extensions): printed raw before (found by a hostile review of
        // b935e5c, which redacted the layers' own Debug).
        let refused = BreakerRejection::new(name, State::Open, None);
        hides_secrets("BreakerRejection", &format!("{refused:?}"));
        let refused = RateLimitRejection::new(name, Refusal::Unavailable);
        hides_secrets("RateLimitRejection", &format!("{refused:?}"));
    }
}
