//! [`RateLimitLayer`]: a tower layer that charges every request to one
//! core [`TokenBucket`](fusebox::TokenBucket), or to a key's bucket in a
//! core [`KeyedLimiter`](fusebox::bucket::KeyedLimiter).
//!
//! Files as in tower's own middleware: `layer` (configuration), `service`
//! (the decision, on `call`), `future` (stamps the quota on the response),
//! `error` (refusals and their responses), `registry` (layers over a
//! registry's limiters); `limit` holds the two in-process kinds of
//! limit, [`key`] the usual key functions. With feature `redis`, `shared`
//! adds a third kind, `Shared`: a `RedisLimiter`'s decision, shared by a
//! fleet, awaited in its own response future (`SharedResponseFuture`).

mod bad_keys;
mod error;
mod future;
pub mod key;
mod layer;
mod limit;
mod quote_cache;
mod registry;
mod service;
#[cfg(feature = "redis")]
mod shared;

pub use crate::tower::grpc::GrpcRateLimitResponse;
pub(crate) use bad_keys::BadKeyCounter;
pub use bad_keys::BadKeys;
pub use error::{
    BadKey, JsonRateLimitResponse, KeyError, RateLimitRejection, RateLimitResponder, Refusal,
};
pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use limit::{Keyed, Single};
pub use service::RateLimitService;
#[cfg(feature = "redis")]
pub use shared::{Shared, SharedResponseFuture};

use std::sync::Arc;

use crate::events::RejectionReporter;
use crate::tower::headers::PolicyFields;
use crate::TokioClock;

/// What every clone of a layer's service shares (one `Arc` of it per
/// service, cloned per request by hyper and axum).
pub(crate) struct Common<L, R> {
    pub(crate) limit: L,
    pub(crate) name: Arc<str>,
    /// `name` as the `RateLimit` fields spell it, and its policy member.
    pub(crate) fields: Arc<PolicyFields>,
    pub(crate) clock: TokioClock,
    /// Whether responses carry `RateLimit-Policy` and `RateLimit`.
    pub(crate) headers: bool,
    /// Whether they also carry `X-RateLimit-Limit/Remaining/Reset`.
    pub(crate) legacy: bool,
    /// Where refusals are published, if anywhere.
    pub(crate) reporter: Option<RejectionReporter>,
    /// The warning for a full keyed table, shared by every service of the
    /// layer.
    pub(crate) full_warn: Arc<service::WarnThrottle>,
    /// What refused requests are answered with.
    pub(crate) responder: R,
}

#[cfg(test)]
mod table_full_tests;
#[cfg(test)]
mod tests;
