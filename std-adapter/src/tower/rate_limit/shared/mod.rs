//! [`Shared`]: a limit kind whose decision is a [`RedisLimiter`]'s, so
//! every instance of a fleet charges one quota (features `tower` and
//! `redis`).
//!
//! Files as for the layer itself: `layer` (the constructor), `limit` (the
//! kind: its key and what a decision becomes), `fields` (the `RateLimit`
//! fields of its rules), `service` (the layer's `Service` for this kind:
//! the decision is awaited in the response future before the inner
//! service is called) and `future` ([`SharedResponseFuture`]).
//!
//! [`RedisLimiter`]: crate::backend::RedisLimiter

mod fields;
mod future;
mod layer;
mod limit;
mod service;
#[cfg(test)]
mod tests;

pub use future::SharedResponseFuture;
pub use limit::Shared;

use self::fields::Stamp;
use self::limit::{Deciding, Outcome};
