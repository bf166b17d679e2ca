//! Secrets out of logs, errors and [`health()`](crate::Registry::health):
//! [`redact`] masks credentials in URLs and free text, [`Redacted`] does it
//! when displayed.
//!
//! What is masked (each replaced by [`MASK`]):
//!
//! * the password of a URL's user info (`redis://user:pass@host` →
//!   `redis://user:***@host`), or the whole user info when it has no
//!   password part or an empty one (`https://ghp_token@host` and
//!   `https://ghp_token:@host` → `https://***@host`);
//! * the value of a `name=value` pair (a query parameter, a form field, a
//!   `key=value` in a message) whose name is `token`, `key`, `secret`,
//!   `password`, `pass` (the password of a `redis+unix://` URL),
//!   `passwd`, `pwd`, `auth`, `apikey`, `signature` or `sig`,
//!   or ends with `_token`, `-token`, `_key`, `-key`, `_secret`,
//!   `-secret`, `_signature`, `-signature` (a presigned URL's
//!   `X-Amz-Signature`, `X-Goog-Signature`) or `password` (any case); a value in quotes
//!   (`password="a b"`, as logfmt writes one) is masked up to its closing
//!   quote, which stays, as is one whose quotes are escaped
//!   (`password=\"a b\"`, as `{:?}` or JSON writes that in a string);
//!   a colon ending a value unquoted stays (`?token=***: status 403`);
//! * the quoted value of a `name: "value"` field with such a name: JSON
//!   (`{"password": "a b"}`, also escaped inside a string) and `Debug`
//!   (`Config { password: "a b" }`); a value not in quotes after a colon
//!   is not masked;
//! * the credentials after `Bearer` or `Basic` (any case);
//! * the arguments Redis (and Valkey) echo in the error for a command
//!   they do not know, up to the end of the line (`ERR unknown command
//!   'HELLO', with args beginning with: '3' 'AUTH' 'app' 'pw'` →
//!   `…, with args beginning with: ***`): a client's `AUTH` or `HELLO`
//!   carries the password, and a server where that command is renamed
//!   away, or a proxy without it, sends the password back in its error.
//!
//! It is a filter for text that should never have carried a secret, not a
//! parser of every format: pass credentials separately from what you log.
//!
//! # Examples
//!
//! ```
//! use fusebox_std::redact::redact;
//!
//! assert_eq!(redact("redis://app:hunter2@cache:6379/0"), "redis://app:***@cache:6379/0");
//! assert_eq!(redact("GET /v1?user=7&token=abc123&x=1"), "GET /v1?user=7&token=***&x=1");
//! assert_eq!(redact("Authorization: Bearer eyJhbGciOi"), "Authorization: Bearer ***");
//! assert_eq!(
//!     redact("unknown command 'AUTH', with args beginning with: 'app' 'hunter2' "),
//!     "unknown command 'AUTH', with args beginning with: ***",
//! );
//! assert_eq!(redact("nothing to hide"), "nothing to hide");
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// What replaces a secret.
///
/// ```
/// use fusebox_std::redact::{redact, MASK};
///
/// assert_eq!(redact("?token=t"), format!("?token={MASK}"));
/// ```
pub const MASK: &str = "***";

/// `text` with the secrets listed in the [module docs](self) replaced by
/// [`MASK`]; borrowed unchanged when there are none.
///
/// # Examples
///
/// ```
/// use std::borrow::Cow;
/// use fusebox_std::redact::redact;
///
/// assert!(matches!(redact("plain"), Cow::Borrowed("plain")));
/// assert_eq!(
///     redact("connect to redis://:s3cret@10.0.0.1 failed (api_key=XYZ)"),
///     "connect to redis://:***@10.0.0.1 failed (api_key=***)"
/// );
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    // A mask can change what an earlier pass sees: a masked value no longer
    // holds the `/` that ended a URL's authority, say. So the passes repeat
    // until a round changes nothing, which makes `redact` idempotent. Every
    // change replaces a secret with the mask, so a round or two suffices;
    // the cap only bounds the work on hostile text.
    const MAX_ROUNDS: usize = 8;
    let mut out = Cow::Borrowed(text);
    for _ in 0..MAX_ROUNDS {
        let mut changed = false;
        for pass in [
            userinfo as fn(&str) -> Option<String>,
            pairs,
            fields,
            schemes,
            echoed,
        ] {
            if let Some(next) = pass(&out)
                && next != *out
            {
                out = Cow::Owned(next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    out
}

/// Displays its value through [`redact`], with control characters and
/// the characters that move or reorder text (line and paragraph
/// separators, bidirectional overrides and isolates) escaped (a newline as
/// `\n`, U+2028 as `\u{2028}`): for `tracing` fields and error messages
/// built from text that may hold a URL, or that comes from outside (a
/// name, a server's error), so that it can neither show a secret nor
/// forge or disguise a log line. Its `Debug` is the same text, quoted.
///
/// # Examples
///
/// ```
/// use fusebox_std::redact::Redacted;
///
/// let url = "redis://default:pw@db:6379";
/// assert_eq!(Redacted(url).to_string(), "redis://default:***@db:6379");
/// assert_eq!(Redacted("db\nlevel=ERROR forged").to_string(), "db\\nlevel=ERROR forged");
/// assert_eq!(Redacted("a\u{202E}b").to_string(), "a\\u{202e}b");
/// assert_eq!(format!("{:?}", Redacted(url)), "Redacted(\"redis://default:***@db:6379\")");
/// // tracing::warn!(url = %Redacted(url), "redis unreachable");
/// ```
#[derive(Clone, Copy)]
pub struct Redacted<T>(pub T);

/// Whether `c` is escaped by [`Redacted`]: a control character, or one
/// that breaks a line or reorders what follows on screen.
fn disguises(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

impl<T: fmt::Display> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let redacted = redact(&text);
        if !redacted.contains(disguises) {
            return f.write_str(&redacted);
        }
        for c in redacted.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else if disguises(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The value's [`Display`](fmt::Display) form, quoted: never the raw value
/// (a derived `Debug` showed the secret it exists to hide).
impl<T: fmt::Display> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redacted(\"{self}\")")
    }
}

/// Bytes that end a URL's authority, a value or a token.
fn is_end(b: u8, extra: &[u8]) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>') || extra.contains(&b)
}

/// Replaces `text[range]` pieces with the mask; `None` if there are none.
fn splice(text: &str, ranges: &[(usize, usize)]) -> Option<String> {
    if ranges.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in ranges {
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// URL user info: the password, or the whole user info without one.
fn userinfo(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        // `'` may be part of a user info (RFC 3986's sub-delims), so it
        // does not end the authority here.
        let end = bytes[start..]
            .iter()
            .position(|&b| b != b'\'' && is_end(b, b"/?#"))
            .map_or(bytes.len(), |p| start + p);
        if let Some(at) = text[start..end].rfind('@') {
            let info = &text[start..start + at];
            // The password; the whole user info if it has none, or an
            // empty one (`TOKEN:`, curl's `-u TOKEN:`): the user is the
            // secret then.
            let secret_from = match info.find(':') {
                Some(colon) if colon + 1 < info.len() => start + colon + 1,
                _ => start,
            };
            if secret_from < start + at {
                ranges.push((secret_from, start + at));
            }
        }
        // Not from `end`: an authority read up to the next URL's `//`
        // (after a `,` or a quote) holds that URL's `:`.
        from = start;
    }
    splice(text, &ranges)
}

/// `text` [redacted](redact) and cut to `max_chars` characters (then
/// ending with `…`): what a report or event keeps of a message it does not
/// control.
pub(crate) fn redact_cut(text: &str, max_chars: usize) -> String {
    let mut out = redact(text).into_owned();
    if let Some((cut, _)) = out.char_indices().nth(max_chars) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Whether a parameter called `name` holds a secret (the names the
/// [module docs](self) list).
pub(crate) fn sensitive(name: &str) -> bool {
    const EXACT: [&str; 11] = [
        "token",
        "key",
        "secret",
        "password",
        "pass",
        "passwd",
        "pwd",
        "auth",
        "apikey",
        "signature",
        "sig",
    ];
    // `-signature`: a presigned URL's signature (S3's `X-Amz-Signature`,
    // GCS's `X-Goog-Signature`) grants its access until it expires (found
    // by a hostile review: an `HttpCheck` of a presigned URL showed it in
    // the status, the logs and its errors).
    const SUFFIX: [&str; 9] = [
        "_token",
        "-token",
        "_key",
        "-key",
        "_secret",
        "-secret",
        "_signature",
        "-signature",
        "password",
    ];
    let name = name.to_ascii_lowercase();
    EXACT.contains(&name.as_str()) || SUFFIX.iter().any(|s| name.ends_with(s))
}

/// `name=value` pairs with a sensitive name.
fn pairs(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    for (eq, _) in text.match_indices('=') {
        // Inside a value already masked: part of it, not a new pair. Its
        // rest was read once; reading it again for each `=` in it made
        // `token=token=…` quadratic.
        if ranges.last().is_some_and(|&(_, last)| eq < last) || !sensitive_before(text, eq) {
            continue;
        }
        // Quoted (logfmt's `key="a b"`, or `key=\"a b\"` in a string).
        let (start, end) = quoted_value(bytes, eq + 1, b"\"'").unwrap_or_else(|| {
            // `'` may be part of a value (a URL's query holds it as it
            // is, and a `redis+unix://` URL's password is `pass`): it
            // ends one only where the value ends anyway (`'token=t' x`).
            let start = eq + 1;
            let mut end = bytes[start..]
                .iter()
                .position(|&b| b != b'\'' && is_end(b, b"&#,;)"))
                .map_or(bytes.len(), |p| start + p);
            if end > start && bytes[end - 1] == b'\'' {
                end -= 1;
            }
            // A colon ending the value (before a blank, a separator or
            // the text's end) is the text's: `GET <url>?token=t: status
            // 403`. One inside the value is the value's: `token=user:pw`.
            if end > start && bytes[end - 1] == b':' {
                end -= 1;
            }
            (start, end)
        });
        #[cfg(test)]
        VALUE_BYTES_READ.with(|read| read.set(read.get() + (end - start)));
        if end > start {
            ranges.push((start, end));
        }
    }
    splice(text, &ranges)
}

/// `name: "value"` fields with a sensitive name and a quoted value: JSON
/// (`{"password":"x"}`, the name quoted; `{\"password\":\"x\"}` inside
/// a string) and `Debug` (`Config { password: "x" }`). A value not in
/// quotes (`"key": 42`, `cache key: users`) is not masked: after a colon,
/// free text is too often no secret.
fn fields(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    for (colon, _) in text.match_indices(':') {
        if ranges.last().is_some_and(|&(_, last)| colon < last) {
            continue;
        }
        // The name ends before the blanks and its closing quote (`"name"`,
        // or `\"name\"` in a string), if quoted.
        let mut name_end = bytes[..colon]
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(0, |p| p + 1);
        if name_end > 0 && bytes[name_end - 1] == b'"' {
            name_end -= 1;
            if name_end > 0 && bytes[name_end - 1] == b'\\' {
                name_end -= 1;
            }
        }
        if !sensitive_before(text, name_end) {
            continue;
        }
        let value = bytes[colon + 1..]
            .iter()
            .position(|&b| b != b' ')
            .map_or(bytes.len(), |p| colon + 1 + p);
        if let Some((start, end)) = quoted_value(bytes, value, b"\"")
            && end > start
        {
            ranges.push((start, end));
        }
    }
    splice(text, &ranges)
}

/// Whether the name ending at `end` (letters, digits, `_`, `-`, `.`) is
/// [`sensitive`]; `false` if there is none.
fn sensitive_before(text: &str, end: usize) -> bool {
    let start = text.as_bytes()[..end]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
        .map_or(0, |p| p + 1);
    start < end && sensitive(&text[start..end])
}

/// The range of a value quoted at `at` by one of `quotes`: up to its
/// closing quote, an escaped one skipped (unclosed, the rest of the
/// text); or, quoted with escaped quotes inside a quoted string (`{:?}`,
/// JSON: `\"a b\"`), up to the escaped closing quote. `None` if no quote
/// opens at `at`.
fn quoted_value(bytes: &[u8], at: usize, quotes: &[u8]) -> Option<(usize, usize)> {
    match (bytes.get(at), bytes.get(at + 1)) {
        (Some(&quote), _) if quotes.contains(&quote) => {
            Some((at + 1, closing(bytes, at + 1, quote, false)))
        }
        (Some(b'\\'), Some(&quote)) if quotes.contains(&quote) => {
            Some((at + 2, closing(bytes, at + 2, quote, true)))
        }
        _ => None,
    }
}

/// Where the value quoted by `quote` from `start` ends: its closing quote
/// (one after a backslash is part of it), or the end of `bytes`. With
/// `escaped` (the quotes themselves escaped, in a quoted string), the
/// closing quote is one after a backslash, and a bare one (the end of the
/// enclosing string) ends the value too.
fn closing(bytes: &[u8], start: usize, quote: u8, escaped: bool) -> usize {
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if escaped && bytes.get(i + 1) == Some(&quote) => return i,
            b'\\' => i += 2,
            b if b == quote => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Credentials after `Bearer` / `Basic`.
fn schemes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    for scheme in [&b"bearer"[..], b"basic"] {
        let found = bytes
            .windows(scheme.len())
            .enumerate()
            .filter(|(_, w)| w.eq_ignore_ascii_case(scheme));
        for (at, _) in found {
            let word_start = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            let after = at + scheme.len();
            let spaces = bytes[after..].iter().take_while(|&&b| b == b' ').count();
            if !word_start || spaces == 0 {
                continue;
            }
            let start = after + spaces;
            let end = bytes[start..]
                .iter()
                .position(|&b| is_end(b, b","))
                .map_or(bytes.len(), |p| start + p);
            if end > start {
                ranges.push((start, end));
            }
        }
    }
    ranges.sort_unstable();
    ranges.dedup_by(|later, earlier| later.0 < earlier.1);
    splice(text, &ranges)
}

/// The arguments a Redis error echoes, after `with args beginning with:`,
/// masked up to the end of the line (Redis quotes them with `'` but does
/// not escape them: no quote can be trusted to end one).
fn echoed(text: &str) -> Option<String> {
    const ECHO: &str = "with args beginning with:";
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(ECHO) {
        let after = from + found + ECHO.len();
        let start = after + bytes[after..].iter().take_while(|&&b| b == b' ').count();
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(bytes.len(), |p| start + p);
        if end > start {
            ranges.push((start, end));
        }
        from = end.max(after);
    }
    splice(text, &ranges)
}

#[cfg(test)]
thread_local! {
    /// Bytes of values [`pairs`] read on this thread: a test asks that
    /// hostile text is read about once, not once per `=` in it.
    pub(crate) static VALUE_BYTES_READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
