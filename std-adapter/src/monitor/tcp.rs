//! [`TcpCheck`]: a TCP connect.

use super::{CheckError, ErrorKind, HealthCheck};

/// Healthy when a TCP connection to the address opens (it is closed at
/// once). The address is anything `tokio::net::TcpStream::connect` takes
/// as a string (`"10.0.0.5:5432"`, `"db.internal:5432"`). A failure is
/// [`ErrorKind::Connect`] (refused, reset, unreachable, a failed DNS
/// lookup), [`ErrorKind::Timeout`], or [`ErrorKind::Config`] for an
/// address that is none (`"db.internal"` without a port, or one with user
/// info, `"app:s3cret@db:5432"`, refused before any lookup: no host name
/// holds an `@`, and the lookup would send the password to the DNS).
/// A host name is looked up on tokio's blocking pool, one lookup per
/// check at a time: a run that finds its previous run's lookup still under
/// way (a hanging resolver) fails at once as `Connect` rather than leave
/// one more blocking thread behind. A clone is a check of its own, with
/// its own lookups.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{probe, TcpCheck};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let check = TcpCheck::new(listener.local_addr()?.to_string());
/// assert!(probe(&check, Duration::from_secs(1)).await.passed());
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct TcpCheck {
    addr: String,
    /// Its lookups of `addr`, one at a time.
    resolver: super::resolve::Resolver,
}

impl TcpCheck {
    /// A check connecting to `addr`.
    ///
    /// ```
    /// use fusebox_std::monitor::TcpCheck;
    ///
    /// let check = TcpCheck::new("127.0.0.1:6379");
    /// assert_eq!(check.addr(), "127.0.0.1:6379");
    /// ```
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            resolver: super::resolve::Resolver::default(),
        }
    }

    /// The address connected to.
    ///
    /// ```
    /// use fusebox_std::monitor::TcpCheck;
    ///
    /// assert_eq!(TcpCheck::new("[::1]:80").addr(), "[::1]:80");
    /// ```
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// A check of the same address with its own lookups: runs of two clones
/// (two monitors checking one dependency) at one moment each look the
/// name up, rather than one failing as if the resolver hung.
impl Clone for TcpCheck {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            resolver: self.resolver.fresh(),
        }
    }
}

/// Shows the address as the status does, [redacted](crate::redact) as
/// its target (found by a hostile review: a derived `Debug` showed
/// `u:s3cret@db:5432` whole, where the status shows `tcp://u:***@db:5432`).
impl std::fmt::Debug for TcpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = format!("tcp://{}", self.addr);
        f.debug_struct("TcpCheck")
            .field("target", &crate::redact::redact(&target))
            .finish_non_exhaustive()
    }
}

impl HealthCheck for TcpCheck {
    async fn check(&self) -> Result<Option<String>, CheckError> {
        // A connection string's credentials left in (found by a hostile
        // review: `app:s3cret@db:5432` was looked up as the host name
        // `app:s3cret@db`, its password sent to the resolver, and the run
        // failed as a `Connect` error, an outage where none was).
        if self.addr.contains('@') {
            return Err(CheckError::new(
                ErrorKind::Config,
                format_args!(
                    "an address with user info (host:port only): {}",
                    crate::redact::redact(&format!("tcp://{}", self.addr))
                ),
            ));
        }
        let stream = self.resolver.connect(&self.addr).await.map_err(|e| {
            // Connecting is all the check does: an address that is no
            // address is a misconfigured check, a timeout a timeout,
            // and any other failure (refused, reset, unreachable, DNS)
            // one to reach the dependency (found by a hostile review:
            // the first and the last were `Other`).
            let kind = match e.kind() {
                std::io::ErrorKind::InvalidInput => ErrorKind::Config,
                std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Connect,
            };
            CheckError::new(kind, e)
        })?;
        drop(stream);
        Ok(None)
    }

    fn target(&self) -> Option<String> {
        Some(format!("tcp://{}", self.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::TcpCheck;

    /// An address with user info was looked up as a host name, its
    /// password sent to the resolver, and failed as `Connect`.
    #[tokio::test]
    async fn an_address_with_user_info_is_a_config_error_before_any_lookup() {
        use crate::monitor::{ErrorKind, HealthCheck};
        for addr in [
            "app:s3cret@db.internal:5432",
            "s3cret@127.0.0.1:9",
            "app:s3cret@[::1]:5432",
        ] {
            let e = TcpCheck::new(addr).check().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{addr}: {e}");
            assert!(!e.message().contains("s3cret"), "{e}");
            assert!(e.message().contains("user info"), "{e}");
        }
    }

    /// Two clones of one check run at the same moment (two monitors, or
    /// a monitor and a `probe`, checking one dependency), the lookup
    /// answering normally: each run looks the name up and connects. The
    /// clones shared their one-lookup flag, so the second run failed at
    /// once as `Connect` ("still pending"), an outage where none was.
    #[tokio::test]
    async fn clones_run_at_once_each_look_up_and_connect() {
        use crate::monitor::HealthCheck;
        use std::net::SocketAddr;
        use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
        use std::time::Duration;
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        static OPEN: AtomicBool = AtomicBool::new(false);
        static PORT: AtomicU16 = AtomicU16::new(0);
        /// A lookup answering once the test opens it (at most ~10 s).
        #[allow(clippy::unnecessary_wraps)] // a `Lookup`
        fn gated(_: &str) -> std::io::Result<Vec<SocketAddr>> {
            STARTED.fetch_add(1, Ordering::SeqCst);
            for _ in 0..2_000 {
                if OPEN.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let port = PORT.load(Ordering::SeqCst);
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        PORT.store(listener.local_addr().unwrap().port(), Ordering::SeqCst);
        let one = TcpCheck {
            addr: "db.internal:5432".into(),
            resolver: super::super::resolve::Resolver::with(gated),
        };
        let other = one.clone();
        let first = tokio::spawn(async move { one.check().await });
        while STARTED.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let second = tokio::spawn(async move { other.check().await });
        while STARTED.load(Ordering::SeqCst) < 2 && !second.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        OPEN.store(true, Ordering::SeqCst);
        let second = second.await.unwrap();
        assert!(second.is_ok(), "{second:?}");
        assert!(first.await.unwrap().is_ok());
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn debug_redacts_the_address() {
        let shown = format!("{:?}", TcpCheck::new("app:s3cret@db:5432"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db:5432"), "{shown}");
    }
}
