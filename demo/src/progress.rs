//! Live progress of a run: an indicatif bar redrawn in place on a
//! terminal, or one plain line per phase of the story otherwise (CI logs,
//! pipes), so no escape code ever lands in a file.

use std::fmt::Write as _;
use std::time::Duration;

use fusebox::breaker::State;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::{state_label, Mode};
use crate::scenario::PhaseKind;
use crate::upstream::UpstreamCounts;

/// What the live display shows, read at one moment of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Time since the story started.
    pub elapsed: Duration,
    /// The story's phase now.
    pub phase: PhaseKind,
    /// Requests finished by the clients.
    pub requests: u64,
    /// Of which answered.
    pub ok: u64,
    /// Of which from the stale cache.
    pub from_cache: u64,
    /// What reached the upstream.
    pub upstream: UpstreamCounts,
    /// The breaker's state (protected run only).
    pub breaker: Option<State>,
    /// The fleet's decision on it as last applied here (`--redis` only).
    pub fleet: Option<State>,
}

impl Snapshot {
    /// The live line: phase, requests, success, upstream calls, breaker,
    /// cache.
    pub fn line(&self) -> String {
        let ok = if self.requests == 0 {
            100.0
        } else {
            crate::report::percent(self.ok, self.requests)
        };
        let mut line = format!(
            "{:<13} {:>7} req  {:>5.1}% ok  upstream {:>7} ({:>6} in outage)",
            self.phase.label(),
            self.requests,
            ok,
            self.upstream.total,
            self.upstream.during_outage,
        );
        if let Some(state) = self.breaker {
            let _ = write!(line, "  breaker {:<9}", state_label(state));
            if let Some(fleet) = self.fleet {
                let _ = write!(line, " fleet {:<9}", state_label(fleet));
            }
            let _ = write!(line, "  cache {:>6}", self.from_cache);
        }
        line
    }
}

/// The live display of one run.
#[derive(Debug)]
pub struct Live {
    mode: Mode,
    bar: Option<ProgressBar>,
    /// The phase last printed (plain output).
    printed: Option<(PhaseKind, Duration)>,
}

impl Live {
    /// A display for a run of `duration`: a bar on a terminal that draws
    /// one, plain lines otherwise.
    ///
    /// indicatif hides its bar on a terminal whose `TERM` is `dumb` or
    /// unset, so `tty` alone does not make a bar: there the display falls
    /// back to plain lines (found by a hostile review: under `TERM=dumb`
    /// the runs showed no progress at all, only blank lines).
    pub fn new(mode: Mode, duration: Duration, tty: bool) -> Self {
        let target = tty
            .then(ProgressDrawTarget::stdout)
            .filter(|target| !target.is_hidden());
        let bar = target.map(|target| {
            let length = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            let bar = ProgressBar::with_draw_target(Some(length), target);
            let style = ProgressStyle::with_template(
                "{prefix:>11.bold} [{bar:20.cyan/blue}] {elapsed:>3} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(mode.name());
            bar
        });
        Self {
            mode,
            bar,
            printed: None,
        }
    }

    /// Shows `s`: redraws the bar, or prints a line when a new phase began.
    pub fn update(&mut self, s: &Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_position(u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX));
            bar.set_message(s.line());
        } else if self.printed.is_none_or(|(phase, _)| phase != s.phase) {
            self.print(s);
        }
    }

    /// The last update: the bar stays on screen with the final figures.
    pub fn finish(&mut self, s: &Snapshot) {
        match self.bar.take() {
            Some(bar) => {
                bar.set_message(s.line());
                bar.finish();
                // The bar leaves the cursor at the end of its line.
                println!();
            }
            None => self.print(s),
        }
    }

    fn print(&mut self, s: &Snapshot) {
        println!(
            "{:>11} {:>5.1}s  {}",
            self.mode.name(),
            s.elapsed.as_secs_f64(),
            s.line()
        );
        self.printed = Some((s.phase, s.elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            elapsed: Duration::from_millis(4_200),
            phase: PhaseKind::Outage,
            requests: 1_000,
            ok: 950,
            from_cache: 300,
            upstream: UpstreamCounts {
                total: 1_200,
                during_outage: 40,
                ..UpstreamCounts::default()
            },
            breaker: Some(State::Open),
            fleet: None,
        }
    }

    #[test]
    fn a_bar_indicatif_would_hide_falls_back_to_plain_lines() {
        // The test's stdout is a pipe (or a terminal): a bar only where
        // indicatif draws one, never a hidden bar and no lines at all.
        let hidden = ProgressDrawTarget::stdout().is_hidden();
        let live = Live::new(Mode::Protected, Duration::from_secs(3), true);
        assert_eq!(live.bar.is_some(), !hidden);
        assert!(Live::new(Mode::Protected, Duration::from_secs(3), false)
            .bar
            .is_none());
    }

    #[test]
    fn the_live_line_shows_the_figures() {
        let line = snapshot().line();
        for part in [
            "OUTAGE",
            "1000 req",
            "95.0% ok",
            "upstream    1200",
            "40 in outage",
        ] {
            assert!(line.contains(part), "{part:?} in {line:?}");
        }
        assert!(line.contains("breaker OPEN") && line.contains("cache    300"));
        assert!(!line.contains("fleet"));
        let shared = Snapshot {
            breaker: Some(State::HalfOpen),
            fleet: Some(State::Open),
            ..snapshot()
        };
        assert!(
            shared
                .line()
                .contains("breaker half-open fleet OPEN       cache"),
            "{}",
            shared.line()
        );
        let plain = Snapshot {
            breaker: None,
            ..snapshot()
        };
        assert!(!plain.line().contains("breaker"));
    }
}
