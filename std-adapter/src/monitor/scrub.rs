//! Secrets out of everything the monitor stores or logs: URL user info
//! (`user:password@`) and the values of `token=`, `key=` and `password=`
//! query parameters (any parameter whose name ends with one of those words,
//! case-insensitively: `access_token`, `api_key`, `db_password`).
//!
//! A private, monitor-local scrubber: the crate-wide `redact` module of the
//! registry branch can replace it when the two meet.

/// What a secret value is replaced with.
pub(crate) const MASK: &str = "[redacted]";

const SECRET_NAMES: [&str; 3] = ["token", "key", "password"];

/// `text` with every URL's user info removed and every secret query value
/// masked. Text without secrets comes back unchanged.
pub(crate) fn scrub(text: &str) -> String {
    mask_params(&strip_userinfo(text))
}

/// Removes `user[:password]@` from every `scheme://` authority in `text`.
fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || is_text_boundary(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the value of every `name=value` whose name ends with a secret
/// word, where the name starts the text or follows `?`, `&`, `;` or a text
/// boundary (whitespace, quotes, brackets, `,`).
fn mask_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut name_start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        if matches!(c, '?' | '&' | ';') || is_text_boundary(c) {
            name_start = i + c.len_utf8();
        } else if c == '=' {
            let name = text[name_start..i].to_ascii_lowercase();
            let masked = text[i + 1..].starts_with(MASK); // scrubbed before
            if !masked && SECRET_NAMES.iter().any(|s| name.ends_with(s)) {
                out.push_str(MASK);
                while let Some(&(_, v)) = chars.peek() {
                    if matches!(v, '&' | '#' | ';') || is_text_boundary(v) {
                        break;
                    }
                    chars.next();
                }
            }
            name_start = i + 1;
        }
    }
    out
}

fn is_text_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | ',' | '`'
        )
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn user_info_is_stripped() {
        assert_eq!(
            scrub("http://admin:hunter2@127.0.0.1:8080/health"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(scrub("redis://:pw@cache:6379"), "redis://cache:6379");
        assert_eq!(
            scrub("error trying to connect to http://u:p@a/x and https://v:q@b"),
            "error trying to connect to http://a/x and https://b"
        );
        assert_eq!(scrub("http://host:80/a@b"), "http://host:80/a@b");
    }

    #[test]
    fn secret_query_values_are_masked() {
        assert_eq!(
            scrub("http://h/p?a=1&token=abc&api_key=k1&Password=x#f"),
            "http://h/p?a=1&token=[redacted]&api_key=[redacted]&Password=[redacted]#f"
        );
        assert_eq!(
            scrub("key=v1 other=v2 (access_token=t)"),
            "key=[redacted] other=v2 (access_token=[redacted])"
        );
        assert_eq!(scrub("monkey=banana"), "monkey=[redacted]");
        assert_eq!(
            scrub("plain text, no secrets = here"),
            "plain text, no secrets = here"
        );
    }
}
