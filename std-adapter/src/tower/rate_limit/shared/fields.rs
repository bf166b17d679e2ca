//! The `RateLimit-Policy` and `RateLimit` fields of a [`Shared`](super::Shared)
//! limit: one policy member per rule, built once; the binding rule's
//! `RateLimit` member from each Redis decision.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use http::{HeaderMap, HeaderValue};

use crate::backend::{Decision, RedisLimiter};
use crate::tower::headers::{
    add_legacy, join_value, member, member_value, quota_qw, sf_string, ListField, Quoted,
};

/// The `RateLimit` fields of a limiter's rules, built once per layer.
#[derive(Debug)]
pub(super) struct Fields {
    /// The whole `RateLimit-Policy` List, one member per rule.
    policy: HeaderValue,
    /// Per rule, in the limiter's order (a [`Decision::rule`] indexes it):
    /// its member's name as a Structured Field String, `q` and `w`.
    rules: Box<[(Box<str>, u64, u64)]>,
}

impl Fields {
    pub(super) fn new(limiter: &RedisLimiter) -> Self {
        let rules: Box<[(Box<str>, u64, u64)]> = limiter
            .rules()
            .iter()
            .map(|rule| {
                let (q, w) = quota_qw(&rule.quota());
                (
                    sf_string(&format!("{}.{}", limiter.name(), rule.name())),
                    q,
                    w,
                )
            })
            .collect();
        let mut list: Vec<u8> = Vec::new();
        for (sf_name, q, w) in &rules {
            if !list.is_empty() {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(&member(sf_name, "q", *q, "w", *w));
        }
        // Printable ASCII by construction (`sf_string`, digits); a set of
        // rules is never empty.
        let policy = HeaderValue::from_maybe_shared(bytes::Bytes::from(list))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        Self { policy, rules }
    }
}

/// The fields to add to a response: the policy list, and the binding
/// rule's `RateLimit` member.
#[derive(Clone, Debug)]
pub(super) struct Stamp {
    fields: Arc<Fields>,
    rule: usize,
    pub(super) quoted: Quoted,
    /// Whether the `RateLimit` fields are sent (else the legacy trio
    /// alone).
    ietf: bool,
    legacy: bool,
}

impl Stamp {
    /// A Redis decision's fields (`None` if `fields` has no binding
    /// rule `d.rule`, never for the limiter they were built from).
    pub(super) fn new(
        fields: &Arc<Fields>,
        d: &Decision,
        ietf: bool,
        legacy: bool,
    ) -> Option<Self> {
        let (_, limit, window) = fields.rules.get(d.rule)?;
        Some(Self {
            fields: Arc::clone(fields),
            rule: d.rule,
            quoted: Quoted {
                limit: *limit,
                window: *window,
                remaining: d.remaining,
                reset: ceil_secs(d.reset),
                full: false,
            },
            ietf,
            legacy,
        })
    }

    /// Adds the fields to `headers`; `own` as for the in-process kinds
    /// (this layer's refusal sets the legacy trio even where present).
    pub(super) fn apply(&self, headers: &mut HeaderMap, own: bool) {
        let Some((sf_name, _, _)) = self.fields.rules.get(self.rule) else {
            return;
        };
        let q = &self.quoted;
        if self.ietf {
            join_value(headers, ListField::Policy, self.fields.policy.clone());
            let limit = member_value(member(sf_name, "r", q.remaining, "t", q.reset));
            join_value(headers, ListField::Limit, limit);
        }
        add_legacy(headers, q, self.legacy, own);
    }
}

/// `d` in the core's µs, rounded up: never earlier than Redis said.
pub(super) fn to_core(d: StdDuration) -> fusebox::Duration {
    let micros = d.as_nanos().div_ceil(1_000);
    fusebox::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Whole seconds of `d`, rounded up.
fn ceil_secs(d: StdDuration) -> u64 {
    crate::tower::headers::ceil_secs(to_core(d))
}
