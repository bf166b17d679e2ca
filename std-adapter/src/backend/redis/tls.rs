//! TLS for the Redis backend: `rediss://` URLs on rustls, a private CA
//! ([`RedisConfig::tls_root_cert_pem`]) and client certificates for mutual
//! TLS ([`RedisConfig::tls_client_cert_pem`]).
//!
//! rustls needs a process-wide crypto provider. fusebox builds rustls with
//! ring only and, before the first `rediss://` connection, installs ring's
//! provider as the process default *unless one is installed already*: an
//! application that prefers another provider (aws-lc-rs, FIPS) installs it
//! before connecting and fusebox uses that one.

use std::error::Error as _;
use std::fmt;

use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::super::BackendError;
use super::config::RedisConfig;
use crate::redact::MASK;

/// The PEM texts given to a [`RedisConfig`]; empty: the system's roots, no
/// client certificate.
#[derive(Clone, Default)]
pub(super) struct Tls {
    roots: Option<Vec<u8>>,
    /// The client's certificate chain and private key.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |on: bool| if on { "set" } else { "none" };
        f.debug_struct("Tls")
            .field("roots", &set(self.roots.is_some()))
            .field("client_cert", &set(self.client.is_some()))
            .field(
                "client_key",
                &if self.client.is_some() { MASK } else { "none" },
            )
            .finish()
    }
}

impl RedisConfig {
    /// Trusts the CA certificates in `pem` (one or more `CERTIFICATE`
    /// blocks) *instead of* the system's roots: for a `rediss://` server
    /// whose certificate a private CA signed. Without it the system's
    /// roots are trusted (as `rustls-native-certs` finds them; a CA added
    /// to the system store works too).
    ///
    /// The PEM is checked when connecting: a text with no certificate in
    /// it is a [`BackendError::Tls`] there, and so is a server whose
    /// certificate does not chain to these roots.
    ///
    /// # Examples
    ///
    /// This example needs a TLS Redis server and its CA file, so the
    /// doctests compile it without running it.
    ///
    /// ```no_run
    /// use fusebox_std::backend::{RedisBackend, RedisConfig};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/fusebox/redis-ca.pem")?;
    /// let config = RedisConfig::new("rediss://app:s3cret@redis.internal:6380").tls_root_cert_pem(ca);
    /// let backend = RedisBackend::connect(config).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.roots = Some(pem.into());
        self
    }

    /// Presents a client certificate, for a server that asks for one
    /// (mutual TLS, `tls-auth-clients yes`): `cert_pem` is the chain, leaf
    /// first; `key_pem` its private key (PKCS#8, PKCS#1 or SEC1 PEM).
    ///
    /// The key never appears in `Debug` or in an error: a key that cannot
    /// be read is reported as such, without its text.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox_std::backend::RedisConfig;
    ///
    /// let cert = "-----BEGIN CERTIFICATE-----\n(the client's certificate)\n-----END CERTIFICATE-----\n";
    /// let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
    /// let config = RedisConfig::new("rediss://redis.internal:6380").tls_client_cert_pem(cert, key);
    /// assert!(!format!("{config:?}").contains("c2VjcmV0"));
    /// ```
    #[must_use]
    pub fn tls_client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }
}

impl Tls {
    /// Whether roots or a client certificate were given.
    fn given(&self) -> bool {
        self.roots.is_some() || self.client.is_some()
    }

    /// The certificates for the `redis` crate, checked; `None` when none
    /// were given.
    pub(super) fn certificates(&self) -> Result<Option<TlsCertificates>, BackendError> {
        if !self.given() {
            return Ok(None);
        }
        if let Some(roots) = &self.roots {
            check_certificates(roots, "root certificate")?;
        }
        if let Some((cert, key)) = &self.client {
            // Loaded as the handshake will load it (by the process's
            // provider), so a key that cannot sign is reported here. The
            // parser's messages could quote the key: not passed on.
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| std::sync::Arc::new(ring_provider()));
            PrivateKeyDer::from_pem_slice(key)
                .ok()
                .and_then(|der| provider.key_provider.load_private_key(der).ok())
                .ok_or_else(|| {
                    BackendError::Tls(
                        "the client key is not a usable private key (PKCS#8, PKCS#1 or SEC1 PEM)"
                            .into(),
                    )
                })?;
            check_certificates(cert, "client certificate")?;
        }
        Ok(Some(TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.roots.clone(),
        }))
    }
}

/// A `CERTIFICATE` block or more in `pem`, all readable.
fn check_certificates(pem: &[u8], what: &str) -> Result<(), BackendError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| BackendError::Tls(format!("{what} PEM unreadable: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(BackendError::Tls(format!(
            "no CERTIFICATE block in the {what} PEM"
        )));
    }
    Ok(())
}

/// Whether `url` asks for TLS (`rediss://`); a [`BackendError::Tls`] for
/// `rediss://…/#insecure`, refused here rather than left to the `redis`
/// crate: it refuses it only while its `tls-rustls-insecure` (or
/// `tls-native-tls`) feature is off, and any other crate of the
/// application may turn that on (cargo unifies features), when
/// `#insecure` connected to a server with a self-signed certificate,
/// unchecked (found by a hostile review).
pub(super) fn is_tls_url(url: &str) -> Result<bool, BackendError> {
    let info = url
        .into_connection_info()
        .map_err(|e| super::config::setup_fault(&e))?;
    match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => Err(BackendError::Tls(
            "rediss://…/#insecure is refused: the server's certificate is always checked".into(),
        )),
        ConnectionAddr::TcpTls { .. } => Ok(true),
        _ => Ok(false),
    }
}

/// Checks that certificates go with `rediss://` URLs and, when TLS is
/// used, that rustls has a crypto provider; returns the certificates.
pub(super) fn prepare<'a>(
    urls: impl IntoIterator<Item = &'a str>,
    tls: &Tls,
) -> Result<Option<TlsCertificates>, BackendError> {
    let mut secure = false;
    for url in urls {
        secure |= is_tls_url(url)?;
    }
    if tls.given() && !secure {
        return Err(BackendError::Tls(
            "TLS certificates given for a redis:// URL: TLS needs rediss://".into(),
        ));
    }
    if secure {
        install_provider();
    }
    tls.certificates()
}

/// rustls's provider on *ring*, the one this crate builds rustls with
/// (aws-lc-rs, rustls's other provider, needs a C toolchain and CMake to
/// build). rustls 0.23.48 deprecates it for its lack of post-quantum key
/// exchange; it is still supported and its suites are rustls's defaults.
/// An application that wants another provider installs it as the process
/// default before the first `rediss://` connection, and this one is then
/// never used.
#[allow(deprecated)] // see above; `cargo update` must not break the build
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Installs ring's provider as rustls's process default, unless one is
/// installed (by the application, or by a racing thread: then `Err`, and
/// that one stays).
fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = ring_provider().install_default();
    }
}

/// rustls's messages for a refused certificate or a handshake the peer
/// ended: how a TLS failure reads once the Cluster client has kept only
/// the text of its cause.
const RUSTLS_MESSAGES: [&str; 3] = [
    "invalid peer certificate",
    "received fatal alert",
    "peer sent no certificates",
];

/// Whether `e` is a TLS failure: a rustls error (a certificate refused
/// either way, a failed handshake) anywhere in its causes or in its text,
/// or a TLS setting the `redis` crate refuses (`#insecure`, not built in).
pub(super) fn is_tls_error(e: &redis::RedisError) -> bool {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let text = e.to_string();
    if RUSTLS_MESSAGES.iter().any(|m| text.contains(m)) {
        return true;
    }
    if e.kind() == redis::ErrorKind::InvalidClientConfig {
        let text = text.to_ascii_lowercase();
        if text.contains("tls") || text.contains("insecure") {
            return true;
        }
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(mut c) = cause {
        // The `redis` crate keeps its causes in an `Arc`, and io::Error
        // hides its payload from `source()`: look through both.
        if let Some(shared) = c.downcast_ref::<Shared>() {
            c = &**shared;
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            c = inner;
        }
        if c.is::<rustls::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::connection::fault;
    use super::*;

    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";

    fn tls_error(e: Result<Option<TlsCertificates>, BackendError>) -> String {
        match e {
            Err(BackendError::Tls(why)) => why,
            other => panic!("not a TLS error: {other:?}"),
        }
    }

    #[test]
    fn no_certificates_is_a_plain_client_for_either_scheme() {
        let tls = Tls::default();
        assert!(prepare(["redis://127.0.0.1:6379"], &tls).unwrap().is_none());
        assert!(prepare(["rediss://127.0.0.1:6380"], &tls)
            .unwrap()
            .is_none());
        // A rediss:// URL installed a provider (or found one installed).
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn certificates_need_a_rediss_url_and_readable_pem() {
        let config = RedisConfig::new("redis://127.0.0.1:6379").tls_root_cert_pem("junk");
        let why = tls_error(prepare(["redis://127.0.0.1:6379"], &config.tls));
        assert!(why.contains("rediss://"), "{why}");
        let why = tls_error(prepare(["rediss://127.0.0.1:6380"], &config.tls));
        assert!(
            why.contains("no CERTIFICATE block in the root certificate"),
            "{why}"
        );
        let cert = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let why = tls_error(config.tls_root_cert_pem(cert).tls.certificates());
        assert!(why.contains("root certificate PEM unreadable"), "{why}");
    }

    /// `#insecure` is refused by fusebox itself, whatever features the
    /// `redis` crate was built with (an application's other crates may
    /// enable `tls-rustls-insecure`, which made the `redis` crate accept
    /// it: a self-signed server was connected to, unchecked).
    #[test]
    fn insecure_is_refused_whatever_the_redis_features() {
        for url in [
            "rediss://127.0.0.1:6380/#insecure",
            "rediss://app:s3cret@127.0.0.1:6380/0#insecure",
        ] {
            let why = tls_error(prepare([url], &Tls::default()));
            assert!(why.contains("#insecure"), "{why}");
            let nodes = ["rediss://127.0.0.1:7000", url];
            let why = tls_error(prepare(nodes, &Tls::default()));
            assert!(
                why.contains("#insecure") && !why.contains("s3cret"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_client_key_never_shows() {
        let config = RedisConfig::new("rediss://h:1").tls_client_cert_pem("", KEY);
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
        // A key whose body is not a key: named, not quoted.
        let why = tls_error(config.tls.certificates());
        assert!(
            why.contains("client key") && !why.contains("c2VjcmV0"),
            "{why}"
        );
    }

    #[test]
    fn a_rustls_error_behind_an_io_error_is_a_tls_error() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        // A message none of `RUSTLS_MESSAGES` matches: found by its type.
        let e = redis::RedisError::from(io(rustls::Error::General("boom".into())));
        assert!(is_tls_error(&e), "{e}");
        assert!(matches!(fault(&e), BackendError::Tls(_)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_tls_error(&redis::RedisError::from(refused)));
    }
}
