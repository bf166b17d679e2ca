//! The command line (clap).

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

/// The most clients: each holds a connection at both ends, and the
/// default open-file limit is 1 024.
pub const MAX_CLIENTS: u32 = 450;

/// A storm against a flaky HTTP upstream, unprotected and then through
/// fusebox-std (rate limit, circuit breaker, retries under a budget, a
/// stale-on-error cache), compared side by side.
#[derive(Clone, Debug, Parser, PartialEq)]
#[command(name = "storm", version, about, long_about = None)]
pub struct Args {
    /// Seeds the story, the upstream's dice and the clients' choices (a
    /// random one, printed, when absent).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Concurrent clients (tokio tasks).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS)))]
    pub clients: u32,

    /// Length of each run's story, in seconds (1 to 60).
    #[arg(long, value_name = "SECONDS", conflicts_with = "short", value_parser = seconds)]
    pub duration: Option<Duration>,

    /// A story of 3 seconds per run, for CI (the default is 10).
    #[arg(long)]
    pub short: bool,

    /// Serves the live dashboard (and /health, /metrics) on this loopback
    /// IP:PORT (e.g. 127.0.0.1:9000 or [::1]:9000; no host names) while the
    /// storm runs, and after it until Ctrl-C (default 127.0.0.1 on a free
    /// port; the URL is printed).
    #[arg(long, value_name = "IP:PORT", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    pub serve: Option<std::net::SocketAddr>,

    /// Shares the protected clients' rate limit and circuit breaker
    /// through the Redis at this URL (`redis://[user:password@]host:port[/db]`):
    /// every storm given the same URL, limit and client count draws from
    /// one limit, and a trip in any of them opens the breaker in all (start
    /// two in two terminals). Without it both are in process. While Redis
    /// does not answer within 50 ms, each process keeps the whole limit to
    /// itself and decides on its own breaker. The URL is only ever shown
    /// redacted. A URL holding a password is better given in the
    /// environment: any local user can read a command line (`ps`). The
    /// variable set but empty means no Redis, as unset.
    #[arg(
        long,
        value_name = "URL",
        env = "FUSEBOX_REDIS_URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// A story without a storm: the upstream stays healthy (no failure, no
    /// shed call) the whole run. With --redis, next to a stormy storm, its
    /// breaker still opens whenever the other one's trips.
    #[arg(long)]
    pub calm: bool,

    /// The protected clients' rate limit in calls per second, for all of
    /// them together (and, with --redis, for every process sharing it);
    /// default 12 per client.
    #[arg(long, value_name = "CALLS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: Option<u32>,
}

/// Each run's story by default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Each run's story with `--short`.
pub const SHORT_DURATION: Duration = Duration::from_secs(3);

impl Args {
    /// The process's command line, `FUSEBOX_REDIS_URL` included; that
    /// variable set but empty is read as unset (no Redis), as a compose
    /// file or a CI job passing an optional variable through gives it when
    /// it is not set. An empty `--redis ""` typed on the command line is
    /// kept (and refused by the storm). Exits with clap's message and code
    /// on a bad command line, as `Args::parse` does.
    ///
    /// ```
    /// let args = fusebox_demo::cli::Args::from_process();
    /// assert!(args.redis.as_deref() != Some("") || std::env::var_os("FUSEBOX_REDIS_URL").is_none());
    /// ```
    pub fn from_process() -> Self {
        Self::from_matches(&Self::command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// [`from_process`](Self::from_process) on parsed matches.
    fn from_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::from_arg_matches(matches)?;
        let from_env = matches.value_source("redis") == Some(ValueSource::EnvVariable);
        if from_env && args.redis.as_deref().is_some_and(str::is_empty) {
            args.redis = None;
        }
        Ok(args)
    }

    /// The length of each run.
    pub fn duration(&self) -> Duration {
        match (self.duration, self.short) {
            (Some(d), _) => d,
            (None, true) => SHORT_DURATION,
            (None, false) => DEFAULT_DURATION,
        }
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (1.0..=60.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("must be 1 to 60 seconds, got {secs}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Args::try_parse_from`, blind to `FUSEBOX_REDIS_URL`: these tests
    /// are about the command line, and a shell or CI job may export the
    /// variable (as the docs advise for a password; `defaults_and_flags`
    /// then read its URL as `--redis`).
    fn parse<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Args::command().mut_arg("redis", |arg| arg.env(None::<&'static str>));
        Args::from_arg_matches(&command.try_get_matches_from(argv)?)
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse(["storm"]).unwrap();
        assert_eq!(
            (args.clients, args.seed, args.duration()),
            (300, None, DEFAULT_DURATION)
        );
        let args = parse(["storm", "--short", "--seed", "7", "--clients", "50"]).unwrap();
        assert_eq!(
            (args.clients, args.seed, args.duration()),
            (50, Some(7), SHORT_DURATION)
        );
        let args = parse(["storm", "--duration", "2.5"]).unwrap();
        assert_eq!(args.duration(), Duration::from_millis(2_500));
        assert_eq!(args.serve, None);
        let args = parse(["storm", "--serve"]).unwrap();
        assert_eq!(args.serve, Some("127.0.0.1:0".parse().unwrap()));
        let args = parse(["storm", "--serve", "127.0.0.1:8080", "--short"]).unwrap();
        assert_eq!(args.serve, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!((args.redis, args.rate_limit), (None, None));
        let args = parse([
            "storm",
            "--redis",
            "redis://app:pw@127.0.0.1:6379/0",
            "--rate-limit",
            "150",
        ])
        .unwrap();
        assert_eq!(
            args.redis.as_deref(),
            Some("redis://app:pw@127.0.0.1:6379/0")
        );
        assert_eq!(args.rate_limit, Some(150));
        assert!(!args.calm);
        assert!(parse(["storm", "--calm"]).unwrap().calm);
        let shown = fusebox_std::backend::redacted_url(&args.redis.unwrap());
        assert_eq!(shown, "redis://app:***@127.0.0.1:6379/0");
        // Passwords a text filter stops inside (found by a hostile review:
        // the demo printed these whole).
        for url in [
            "redis://:pa ss@127.0.0.1:6379",
            "redis://user:pa ss word@127.0.0.1:6379",
            "redis://user:\"pa\"@127.0.0.1:6379",
            "redis://u:pa/ss@127.0.0.1:6379",
            "redis://:pa#ss@127.0.0.1:6379",
            "redis://:pa?ss@127.0.0.1:6379",
            // A slash too many or too few: no host, and the user info is
            // read as the path (found by a hostile review: shown whole).
            "redis:///:pass@127.0.0.1:6379",
            "redis:/:pass@127.0.0.1:6379",
            "rediss:///user:pass@127.0.0.1:6379",
            "redis://127.0.0.1:6379/0#:pass@x",
        ] {
            let shown = fusebox_std::backend::redacted_url(url);
            assert!(!shown.contains("pa"), "{url} shown as {shown}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["storm", "--clients", "0"][..],
            &["storm", "--clients", "100000"],
            &["storm", "--duration", "0.5"],
            &["storm", "--duration", "soon"],
            &["storm", "--short", "--duration", "5"],
            &["storm", "--serve", "localhost"],
            &["storm", "--rate-limit", "0"],
            &["storm", "--redis"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
