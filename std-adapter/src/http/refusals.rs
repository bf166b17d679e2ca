//! [`Refusals`]: the requests the endpoints refused, counted by reason and
//! shown in `/metrics` as `fusebox_http_refused_total{reason}`.
//!
//! Every refusal is an [`HttpError`] answer, which marks its response with
//! its [`code`](HttpError::code); one layer around the protected routes
//! counts the marked responses (the bearer-token check's `401`s, the admin
//! route's unknown names and unreadable paths), so that a client guessing
//! tokens or probing names shows up in the metrics, not only in `debug`
//! logs.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::response::Response;

use super::error::HttpError;
use super::AppState;

/// What marks a response as a refusal: the error's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Refused(pub(super) &'static str);

/// The reasons, in the order `/metrics` lists them: the codes of
/// [`HttpError`].
const REASONS: [&str; 4] = [
    "unauthorized",
    "unknown_breaker",
    "unknown_action",
    "bad_path",
];

/// Refusals per reason since the router was built.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    counts: [AtomicU64; REASONS.len()],
}

impl Refusals {
    /// Counts one refusal with `code` (one of [`HttpError`]'s).
    fn count(&self, code: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == code) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends the `fusebox_http_refused_total` family, one sample per
    /// reason (zeros included, so that a rate over it starts at once).
    pub(super) fn write_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP fusebox_http_refused_total Requests the fusebox endpoints refused, by reason.\n",
        );
        out.push_str("# TYPE fusebox_http_refused_total counter\n");
        for (reason, count) in REASONS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "fusebox_http_refused_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// The layer's function: counts a response marked [`Refused`].
pub(super) async fn count_refusals(State(state): State<AppState>, response: Response) -> Response {
    if let Some(Refused(code)) = response.extensions().get::<Refused>() {
        state.refusals.count(code);
    }
    response
}

impl HttpError {
    /// The mark of this error's response.
    pub(super) fn refused(&self) -> Refused {
        Refused(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_a_reason_and_every_reason_is_listed() {
        let errors = [
            HttpError::Unauthorized,
            HttpError::unknown_breaker("x"),
            HttpError::unknown_action("x"),
            HttpError::BadPath,
        ];
        let refusals = Refusals::default();
        for (i, e) in errors.iter().enumerate() {
            for _ in 0..=i {
                refusals.count(e.code());
            }
        }
        let mut text = String::new();
        refusals.write_prometheus(&mut text);
        for (i, e) in errors.iter().enumerate() {
            let line = format!(
                "fusebox_http_refused_total{{reason=\"{}\"}} {}\n",
                e.code(),
                i + 1
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert_eq!(text.lines().count(), 2 + REASONS.len());
    }
}
