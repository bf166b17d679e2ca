//! Secrets out of everything the monitor stores or logs, through the
//! crate-wide [`redact`](crate::redact) (URL passwords, tokens, keys and
//! passwords in query strings, bearer tokens).

/// `text` with its secrets masked; text without secrets comes back
/// unchanged.
pub(crate) fn scrub(text: &str) -> String {
    crate::redact::redact(text).into_owned()
}
