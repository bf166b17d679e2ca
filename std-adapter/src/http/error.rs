//! [`HttpError`]: what the endpoints refuse, as a status code and a small
//! JSON body that never carries a secret.

use std::fmt;

use axum::http::header::{HeaderValue, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::registry::shown;

/// Why a request was refused. As a response: the status of
/// [`status`](Self::status) and a JSON body
/// `{"error": "<code>", "message": "<text>"}`, where `<code>` is
/// [`code`](Self::code) and `<text>` the `Display` text.
///
/// Names taken from the request are [redacted](crate::redact) and cut to
/// the registry's longest name before they are shown; a token is never
/// shown.
///
/// # Examples
///
/// ```
/// use axum::http::StatusCode;
/// use fusebox_std::http::HttpError;
///
/// let e = HttpError::unknown_breaker("payments?token=hunter2");
/// assert_eq!(e.status(), StatusCode::NOT_FOUND);
/// assert_eq!(e.code(), "unknown_breaker");
/// assert_eq!(e.to_string(), "no breaker named \"payments?token=***\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// No `Authorization: Bearer` header, or not the configured token
    /// (401, with `WWW-Authenticate: Bearer`).
    Unauthorized,
    /// The admin route names a breaker the registry does not hold (404).
    UnknownBreaker {
        /// The name asked for, as shown (redacted, cut).
        name: String,
    },
    /// The admin route names an action other than `force-open`,
    /// `force-close` and `reset` (404).
    UnknownAction {
        /// The action asked for, as shown (redacted, cut).
        action: String,
    },
    /// The path could not be read (bad percent-encoding, …) (400).
    BadPath,
}

impl HttpError {
    /// [`HttpError::UnknownBreaker`] with `name` made safe to show.
    ///
    /// ```
    /// use fusebox_std::http::HttpError;
    ///
    /// let long = "x".repeat(500);
    /// assert!(HttpError::unknown_breaker(&long).to_string().len() < 200);
    /// ```
    pub fn unknown_breaker(name: &str) -> Self {
        Self::UnknownBreaker { name: shown(name) }
    }

    /// [`HttpError::UnknownAction`] with `action` made safe to show.
    ///
    /// ```
    /// use fusebox_std::http::HttpError;
    ///
    /// assert_eq!(HttpError::unknown_action("explode").code(), "unknown_action");
    /// ```
    pub fn unknown_action(action: &str) -> Self {
        Self::UnknownAction {
            action: shown(action),
        }
    }

    /// The response's status code.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use fusebox_std::http::HttpError;
    ///
    /// assert_eq!(HttpError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownBreaker { .. } | Self::UnknownAction { .. } => StatusCode::NOT_FOUND,
            Self::BadPath => StatusCode::BAD_REQUEST,
        }
    }

    /// The body's `error` field: `unauthorized`, `unknown_breaker`,
    /// `unknown_action` or `bad_path`.
    ///
    /// ```
    /// use fusebox_std::http::HttpError;
    ///
    /// assert_eq!(HttpError::BadPath.code(), "bad_path");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UnknownBreaker { .. } => "unknown_breaker",
            Self::UnknownAction { .. } => "unknown_action",
            Self::BadPath => "bad_path",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthorized => f.write_str("a valid bearer token is required"),
            Self::UnknownBreaker { name } => write!(f, "no breaker named \"{name}\""),
            Self::UnknownAction { action } => write!(
                f,
                "no action \"{action}\": use force-open, force-close or reset"
            ),
            Self::BadPath => f.write_str("the request path could not be read"),
        }
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(self.refused());
        if self == Self::Unauthorized {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fusebox\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(e: HttpError) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let r = e.into_response();
        let status = r.status();
        let auth = r.headers().get(WWW_AUTHENTICATE).cloned();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), auth)
    }

    #[tokio::test]
    async fn unauthorized_asks_for_a_bearer_token() {
        let (status, json, auth) = body(HttpError::Unauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["error"], "unauthorized");
        assert_eq!(auth.unwrap(), "Bearer realm=\"fusebox\"");
    }

    #[tokio::test]
    async fn names_in_bodies_are_redacted_and_cut() {
        let (status, json, auth) = body(HttpError::unknown_breaker("db://admin:pw@host/x")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json["error"], "unknown_breaker");
        assert_eq!(
            json["message"],
            "no breaker named \"db://admin:***@host/x\""
        );
        assert!(auth.is_none());
        let (_, json, _) = body(HttpError::unknown_action(&"a".repeat(1000))).await;
        let message = json["message"].as_str().unwrap();
        assert!(message.len() < 200 && message.contains('…'), "{message}");
    }

    #[tokio::test]
    async fn bad_path_echoes_nothing() {
        let (status, json, _) = body(HttpError::BadPath).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["message"], "the request path could not be read");
    }
}
