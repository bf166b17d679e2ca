//! [`Resolver`]: a network check's DNS lookups, at most one at a time.
//!
//! A host name is looked up on tokio's blocking pool (`getaddrinfo`
//! blocks), and a run that times out stops waiting for the lookup, not
//! the lookup itself. With a hanging resolver (its server unreachable,
//! each attempt timing out after seconds), a check run every second left
//! one more blocking thread behind each run until the resolver gave up,
//! and many checks could fill the pool (512 threads by default) that file
//! I/O and every other lookup of the process share, in the outage the
//! checks are there to report. So a check holds at most one lookup: a run
//! that finds its previous run's lookup still going fails at once (the
//! dependency is unreachable, as the hanging lookup says) without
//! starting another. An address given as an IP address is never looked
//! up.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;

/// A blocking lookup of `host:port`.
type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// One check's lookups. A clone of the `Resolver` shares its flag (the
/// same check); a clone of a *check* takes [`fresh`](Self::fresh) ones:
/// two clones of a check (two monitors checking one dependency) run at
/// their own moments, and a run of one finding the other's lookup under
/// way is no sign of a hanging resolver (found by a hostile review: the
/// clones shared the flag, and runs of both at one moment failed one of
/// them at once as `Connect`, "still pending", an outage where none was).
#[derive(Clone, Debug)]
pub(super) struct Resolver {
    /// Whether a lookup is under way on the blocking pool.
    pending: Arc<AtomicBool>,
    lookup: Lookup,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::with(system)
    }
}

/// The system's resolver, as `tokio::net::TcpStream::connect` uses it.
fn system(addr: &str) -> io::Result<Vec<SocketAddr>> {
    addr.to_socket_addrs().map(Iterator::collect)
}

impl Resolver {
    /// A resolver looking names up with `lookup`.
    pub(super) fn with(lookup: Lookup) -> Self {
        Self {
            pending: Arc::new(AtomicBool::new(false)),
            lookup,
        }
    }

    /// A resolver looking names up as this one does, with a flag of its
    /// own: for a clone of the check holding it.
    pub(super) fn fresh(&self) -> Self {
        Self::with(self.lookup)
    }

    /// Connects to `addr` (`host:port`, or an IP address and port), trying
    /// each address the name resolves to in turn, as
    /// `TcpStream::connect(addr)` does, with at most one lookup of this
    /// check under way (see the module's docs).
    pub(super) async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        if let Ok(socket) = addr.parse::<SocketAddr>() {
            return TcpStream::connect(socket).await;
        }
        let addrs = self.resolve(addr).await?;
        TcpStream::connect(&addrs[..]).await
    }

    /// The addresses of `addr`, or an error at once if the previous
    /// lookup is still under way.
    async fn resolve(&self, addr: &str) -> io::Result<Vec<SocketAddr>> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Err(io::Error::other(
                "the DNS lookup of an earlier run is still pending",
            ));
        }
        // Cleared when the lookup ends, however it ends (a panic, or the
        // task never run because the runtime is shutting down).
        let done = Done(Arc::clone(&self.pending));
        let (addr, lookup) = (addr.to_owned(), self.lookup);
        let task = tokio::task::spawn_blocking(move || {
            let _done = done;
            lookup(&addr)
        });
        task.await.map_err(io::Error::other)?
    }
}

/// Clears a resolver's `pending` flag when dropped.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, AtomicUsize};
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    static STARTED: AtomicUsize = AtomicUsize::new(0);
    static PORT: AtomicU16 = AtomicU16::new(0);
    static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

    /// Opens the gate when dropped: a failed assertion still lets the
    /// hanging lookups end, and the runtime, which waits for its blocking
    /// tasks when it shuts down, with them.
    struct OpenOnDrop;

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            let (open, opened) = &GATE;
            *open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            opened.notify_all();
        }
    }

    /// A lookup that hangs until the gate opens, then finds the listener.
    #[allow(clippy::unnecessary_wraps)] // a `Lookup`
    fn hanging(_: &str) -> io::Result<Vec<SocketAddr>> {
        STARTED.fetch_add(1, Ordering::SeqCst);
        let (open, opened) = &GATE;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
        Ok(vec![SocketAddr::from((
            [127, 0, 0, 1],
            PORT.load(Ordering::SeqCst),
        ))])
    }

    /// Five runs of a check against a hanging resolver, each giving up
    /// after 20 ms: one lookup started, not five (each run had left one
    /// more blocking thread behind before); the runs after the first fail
    /// at once, saying why; once the lookup ends, the next run looks up
    /// afresh and connects.
    #[tokio::test]
    async fn a_hanging_lookup_is_not_started_again_by_later_runs() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        PORT.store(listener.local_addr().unwrap().port(), Ordering::SeqCst);
        let resolver = Resolver::with(hanging);
        let gate = OpenOnDrop;
        let first = tokio::time::timeout(
            Duration::from_millis(20),
            resolver.connect("db.internal:5432"),
        )
        .await;
        assert!(first.is_err(), "the first run times out waiting");
        for _ in 0..4 {
            let again = tokio::time::timeout(
                Duration::from_millis(20),
                resolver.clone().connect("db.internal:5432"),
            )
            .await
            .expect("fails at once, no wait");
            let e = again.expect_err("no second lookup");
            assert!(e.to_string().contains("still pending"), "{e}");
        }
        assert_eq!(STARTED.load(Ordering::SeqCst), 1);
        // The resolver answers: the flag clears, and a run looks up again.
        drop(gate);
        for _ in 0..1_000 {
            if !resolver.pending.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(resolver.connect("db.internal:5432").await.is_ok());
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);
        // An IP address is never looked up.
        let addr = listener.local_addr().unwrap().to_string();
        assert!(resolver.connect(&addr).await.is_ok());
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);
    }

    /// A lookup that panics clears the flag: the next run looks up again.
    #[tokio::test]
    async fn a_lookup_that_panics_frees_the_next_run() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn panicking(_: &str) -> io::Result<Vec<SocketAddr>> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            panic!("resolver bug");
        }
        let resolver = Resolver::with(panicking);
        for _ in 0..3 {
            let e = resolver.connect("db.internal:5432").await.unwrap_err();
            assert!(!e.to_string().contains("still pending"), "{e}");
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    }

    /// The resolver fails (or connects) as `TcpStream::connect(&str)`
    /// does, with the same error kind (which the checks map to `Config`,
    /// `Timeout` or `Connect`), for addresses that are none and for
    /// literals: no port, a bad port, an empty string, an IPv6 literal
    /// without brackets, a port refused on loopback (sound-but-checked
    /// against tokio, the behaviour before f8cecc2; no name here reaches
    /// a DNS server).
    #[tokio::test]
    async fn errors_match_tokio_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let resolver = Resolver::default();
        for addr in [
            "db.internal",
            "",
            ":",
            "db.internal:99999",
            "db.internal:port",
            "::1:80",
            "127.0.0.1",
            "[::1]",
            open.as_str(),
            closed.as_str(),
        ] {
            let ours = resolver.connect(addr).await.map(drop).map_err(|e| e.kind());
            let tokio = TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| e.kind());
            assert_eq!(ours, tokio, "{addr:?}");
        }
        assert!(!resolver.pending.load(Ordering::Acquire));
    }
}
