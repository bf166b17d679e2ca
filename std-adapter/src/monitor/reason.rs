//! The reason a monitor, or one of its checks, is degraded or unhealthy:
//! which checks fail and why, redacted and bounded in size
//! ([`Status::reason`](super::Status::reason)).

use std::fmt::Write as _;
use std::time::Duration;

use super::{CheckError, CheckStatus, ErrorKind, Health};
use crate::redact::Redacted;

/// The most characters of a check's name a reason shows (then `…`).
pub(crate) const NAME_CHARS: usize = 64;
/// The most characters of a check's target a reason shows (then `…`).
pub(crate) const TARGET_CHARS: usize = 128;
/// The most characters of a check's error a reason shows (then `…`).
pub(crate) const ERROR_CHARS: usize = 256;
/// The longest reason, in characters: see [`Status::MAX_REASON_CHARS`](super::Status::MAX_REASON_CHARS).
pub(crate) const MAX_CHARS: usize = 1_024;

/// What one check's line is made of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    pub(crate) name: &'a str,
    pub(crate) target: Option<&'a str>,
    pub(crate) health: Health,
    pub(crate) critical: bool,
    /// `Some` when stale.
    pub(crate) stale: Option<Stale>,
    pub(crate) failures: u32,
    pub(crate) successes: u32,
    /// The last run's error, if it failed.
    pub(crate) error: Option<&'a CheckError>,
}

/// How long no run of a stale check has ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stale {
    /// None ever has.
    Never,
    /// None has for this long.
    For(Duration),
}

impl<'a> Line<'a> {
    /// The line of `check` in a status taken `now` (since the start).
    pub(crate) fn of(check: &'a CheckStatus, now: Duration) -> Self {
        Self {
            name: &check.name,
            target: check.target.as_deref(),
            health: check.health,
            critical: check.critical,
            stale: check.stale.then(|| match check.last_run_at {
                Some(at) => Stale::For(now.saturating_sub(at)),
                None => Stale::Never,
            }),
            failures: check.consecutive_failures,
            successes: check.consecutive_successes,
            error: check.last.as_ref().and_then(|p| p.error.as_ref()),
        }
    }

    /// `check "db" (tcp://db:5432) unhealthy: 3 failures in a row, last:
    /// connect: connection refused`; at most some 520 characters, every
    /// piece [redacted](crate::redact) with control and reordering
    /// characters escaped, and cut (`…`) to its bound.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Its quotes escaped before the cut, so that the cut bounds it.
        let name = cut(
            &Redacted(self.name).to_string().replace('"', "\\\""),
            NAME_CHARS,
        );
        let _ = write!(out, "check \"{name}\"");
        // Cut in the middle: a message's end often says what failed
        // (`GET <a long URL>: status 503, expected 200..=299`).
        let error = self.error.map(|e| {
            let message = cut_middle(&Redacted(e.message()).to_string(), ERROR_CHARS);
            format!("{}: {message}", kind_name(e.kind()))
        });
        if let Some(target) = self.target {
            // An HTTP check's errors name its URL already (both are
            // redacted the same way).
            if !self.error.is_some_and(|e| e.message().contains(target)) {
                let _ = write!(out, " ({})", shown(target, TARGET_CHARS));
            }
        }
        let _ = write!(out, " {}", health_name(self.health));
        if !self.critical {
            out.push_str(", not critical");
        }
        out.push_str(": ");
        let mut details = Vec::new();
        if let Some(stale) = self.stale {
            details.push(match stale {
                Stale::For(d) => format!("stale, no run ended for {} s", d.as_secs()),
                Stale::Never => "stale, never ran".to_owned(),
            });
        }
        if self.failures > 0 {
            let s = if self.failures == 1 { "" } else { "s" };
            details.push(format!("{} failure{s} in a row", self.failures));
            if let Some(error) = error {
                details.push(format!("last: {error}"));
            }
        } else if self.stale.is_none() {
            let s = if self.successes == 1 { "" } else { "es" };
            details.push(format!("recovering, {} pass{s} in a row", self.successes));
        }
        out.push_str(&details.join(", "));
        out
    }
}

/// The reason of a monitor whose checks are `checks` (a status taken
/// `now`), `None` when none is degraded or unhealthy; see
/// [`Status::reason`](super::Status::reason).
pub(crate) fn of_status(checks: &[CheckStatus], now: Duration) -> Option<String> {
    let mut failing: Vec<&CheckStatus> = checks
        .iter()
        .filter(|c| c.health >= Health::Degraded)
        .collect();
    // The worst first: what bounds the monitor's health (a non-critical
    // check counts at most as degraded), critical before not; stable, so
    // in the order added within each.
    failing.sort_by_key(|c| {
        let bound = if c.critical {
            c.health
        } else {
            c.health.min(Health::Degraded)
        };
        (std::cmp::Reverse(bound), !c.critical)
    });
    let lines: Vec<String> = failing.iter().map(|c| Line::of(c, now).render()).collect();
    bounded(&lines)
}

/// `lines` joined: one alone, or `N checks failing: a; b` with as many
/// as fit in [`MAX_CHARS`] and `; and K more` for the rest.
fn bounded(lines: &[String]) -> Option<String> {
    /// Room kept for `; and 4294967295 more` (and more).
    const TAIL: usize = 32;
    if lines.is_empty() {
        return None;
    }
    let mut out = if lines.len() == 1 {
        String::new()
    } else {
        format!("{} checks failing: ", lines.len())
    };
    let mut used = out.chars().count();
    let mut shown_lines = 0;
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let more = if i + 1 < lines.len() { TAIL } else { 0 };
        let len = line.chars().count();
        if i > 0 && used + sep.len() + len + more > MAX_CHARS {
            break;
        }
        out.push_str(sep);
        out.push_str(line);
        used += sep.len() + len;
        shown_lines += 1;
    }
    if shown_lines < lines.len() {
        let _ = write!(out, "; and {} more", lines.len() - shown_lines);
    }
    // Never cut, the lines being bounded: a guard all the same.
    Some(cut(&out, MAX_CHARS - 1))
}

/// `text` redacted, with control and reordering characters escaped
/// ([`Redacted`]), cut to `max` characters (then ending with `…`).
pub(crate) fn shown(text: &str, max: usize) -> String {
    cut(&Redacted(text).to_string(), max)
}

/// `text` cut to `max` characters (then ending with `…`).
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `text` cut to `max` characters by its middle (then holding `…`): its
/// first half and its last.
fn cut_middle(text: &str, max: usize) -> String {
    let chars = text.chars().count();
    if chars <= max {
        return text.to_owned();
    }
    let head = max / 2;
    let tail = max - head;
    let end: String = text.chars().skip(chars - tail).collect();
    format!("{}…{end}", text.chars().take(head).collect::<String>())
}

/// The name of `health` as serialized.
pub(crate) fn health_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::Unknown => "unknown",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    }
}

/// The name of `kind` as serialized.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Timeout => "timeout",
        ErrorKind::Connect => "connect",
        ErrorKind::Status => "status",
        ErrorKind::Config => "config",
        ErrorKind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<'a> Line<'a> {
        fn of_nothing(target: &'a str) -> Self {
            Line {
                name: "db",
                target: Some(target),
                health: Health::Degraded,
                critical: true,
                stale: None,
                failures: 0,
                successes: 0,
                error: None,
            }
        }
    }

    fn line(stale: Option<Stale>, failures: u32, successes: u32) -> String {
        Line {
            name: "db",
            target: Some("tcp://db:5432"),
            health: Health::Degraded,
            critical: true,
            stale,
            failures,
            successes,
            error: None,
        }
        .render()
    }

    /// A stale check says for how long no run ended, or that none did.
    #[test]
    fn a_stale_check_says_so() {
        assert_eq!(
            line(Some(Stale::For(Duration::from_millis(31_500))), 0, 2),
            "check \"db\" (tcp://db:5432) degraded: stale, no run ended for 31 s"
        );
        assert_eq!(
            line(Some(Stale::Never), 0, 0),
            "check \"db\" (tcp://db:5432) degraded: stale, never ran"
        );
        assert_eq!(
            line(Some(Stale::Never), 2, 0),
            "check \"db\" (tcp://db:5432) degraded: stale, never ran, 2 failures in a row"
        );
    }

    /// A long error keeps its start and its end, where the cause often is.
    #[test]
    fn a_long_error_is_cut_in_its_middle() {
        let url = format!("http://db/{}", "p".repeat(400));
        let error = CheckError::new(
            ErrorKind::Status,
            format_args!("GET {url}: status 503, expected 200..=299"),
        );
        let shown = Line {
            error: Some(&error),
            failures: 1,
            ..Line::of_nothing(&url)
        }
        .render();
        assert_eq!(
            shown,
            format!(
                "check \"db\" degraded: 1 failure in a row, last: status: GET http://db/{}…{}: \
                 status 503, expected 200..=299",
                "p".repeat(128 - 14),
                "p".repeat(128 - 32),
            )
        );
        assert_eq!(cut_middle("abcdef", 4), "ab…ef");
        assert_eq!(cut_middle("abcd", 4), "abcd");
    }

    #[test]
    fn no_failing_check_no_reason() {
        assert_eq!(bounded(&[]), None);
        assert_eq!(bounded(&["a".into()]).as_deref(), Some("a"));
        assert_eq!(
            bounded(&["a".into(), "b".into()]).as_deref(),
            Some("2 checks failing: a; b")
        );
    }
}
