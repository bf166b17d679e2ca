//! The Redis backend over TLS (`rediss://`) against a real redis-server
//! serving TLS only, with a CA and certificates made at run time: a
//! private CA trusted through the configuration, a wrong CA refused with
//! a typed error, mutual TLS, and no secret (URL password, client key) in
//! errors, `Debug`, logs or health; a certificate refused in the
//! background (expired, another CA) read as TLS and recovered from, by a
//! limiter and by a fleet breaker; a server that does not speak TLS
//! never sent plain text.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::{RedisCluster, RedisServer, TlsPem};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Backend, BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA made for one test: its certificate and its issuer.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and its key (PEM) for `names`, for `usage`.
    fn issue(&self, names: &[&str], usage: &[ExtendedKeyUsagePurpose]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fusebox test");
        params.extended_key_usages = usage.to_vec();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A server certificate's usages: Redis also presents it as a client
/// certificate, to the other nodes on the cluster bus (always mutual TLS)
/// and to a primary when replicating.
const SERVER: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];

/// A TLS-only server with a certificate for `127.0.0.1` from `ca`.
fn tls_server(ca: &Ca, auth_clients: bool, extra: &[&str]) -> RedisServer {
    tls_server_named(ca, &["127.0.0.1", "localhost"], auth_clients, extra)
}

/// A TLS-only server with a certificate for `names` from `ca`.
fn tls_server_named(ca: &Ca, names: &[&str], auth_clients: bool, extra: &[&str]) -> RedisServer {
    let (cert, key) = ca.issue(names, SERVER);
    RedisServer::start_tls(
        &TlsPem {
            cert: &cert,
            key: &key,
            ca: &ca.pem,
            auth_clients,
        },
        extra,
    )
}

/// A generous command timeout (two shared cores, TLS handshakes).
fn config(url: String) -> RedisConfig {
    RedisConfig::new(url)
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(5))
}

fn rules(burst: u32) -> Rules {
    Rules::single(
        "per_minute",
        Quota::per_minute(burst).unwrap().with_burst(burst).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn redis_limit_tls_decides_over_rediss_with_a_private_ca() {
    let ca = Ca::new("fusebox test CA");
    let server = tls_server(&ca, false, &[]);
    assert!(server.url().starts_with("rediss://"));
    let backend = RedisBackend::connect(config(server.url()).tls_root_cert_pem(ca.pem.clone()))
        .await
        .expect("a TLS connection trusting the test CA");

    // Raw commands run on the same TLS connection.
    let mut conn = backend.connection();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");

    let rules = rules(3);
    for left in [2, 1, 0] {
        let d = backend.decide("tls", "user-1", &rules, 1).await.unwrap();
        assert!(d.allowed && d.remaining == left, "{d:?}");
        assert_eq!(d.source, Source::Redis);
    }
    assert!(
        !backend
            .decide("tls", "user-1", &rules, 1)
            .await
            .unwrap()
            .allowed
    );

    // A limiter over a lazily connected backend: the first use connects.
    let lazy =
        RedisBackend::connect_lazy(config(server.url()).tls_root_cert_pem(ca.pem.clone())).unwrap();
    let limiter = RedisLimiter::builder("tls", rules, lazy)
        .degrade(Degrade::FailClosed)
        .build()
        .unwrap();
    let d = limiter.try_acquire("user-1").await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::Redis), "{d:?}");
    let d = limiter.try_acquire("user-2").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis), "{d:?}");
    assert_eq!(limiter.metrics().faults, 0);
}

#[tokio::test]
async fn redis_limit_tls_wrong_ca_is_a_tls_error_without_the_password() {
    let password = "tls-horse-battery-7c1";
    let ca = Ca::new("fusebox server CA");
    let user = format!(">{password}");
    let server = tls_server(
        &ca,
        false,
        &["--user", "app", "on", &user, "~*", "&*", "+@all"],
    );
    let url = format!("rediss://app:{password}@127.0.0.1:{}", server.port());

    // Trusting another CA, and trusting only the system's roots: both
    // refuse the server's certificate, before any password is sent.
    let other = Ca::new("fusebox other CA");
    for config in [
        config(url.clone()).tls_root_cert_pem(other.pem.clone()),
        config(url.clone()),
    ] {
        assert!(!format!("{config:?}").contains(password));
        let err = RedisBackend::connect(config).await.unwrap_err();
        let (text, debug) = (err.to_string(), format!("{err:?}"));
        assert!(matches!(err, BackendError::Tls(_)), "{debug}");
        assert!(err.is_fault());
        assert!(text.starts_with("redis TLS failed: "), "{text}");
        assert!(text.contains("certificate"), "{text}");
        assert!(
            !text.contains(password) && !debug.contains(password),
            "{debug}"
        );
    }

    // The right CA, but a certificate for another name.
    let elsewhere = tls_server_named(&ca, &["redis.internal"], false, &[]);
    let err = RedisBackend::connect(config(elsewhere.url()).tls_root_cert_pem(ca.pem.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("not valid for name")),
        "{err:?}"
    );

    // `#insecure` (no certificate check): refused, there is no opt-out.
    let err = RedisBackend::connect(config(format!("{url}/#insecure")))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Tls(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(password), "{err:?}");

    // A lazily connected limiter degrades (its connection manager keeps
    // retrying the handshake in the background, so a decision meets the
    // command timeout), and neither health nor the logs show the password.
    let capture = common::Capture::global();
    let registry = Arc::new(fusebox_std::Registry::new());
    let lazy = config(url)
        .tls_root_cert_pem(other.pem.clone())
        .timeout(Duration::from_millis(200));
    let backend = RedisBackend::connect_lazy(lazy).unwrap();
    assert!(!format!("{backend:?}").contains(password));
    let limiter = RedisLimiter::builder("tls_wrong_ca", rules(5), backend)
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!(d.source, Source::FailClosed, "{d:?}");
    assert_eq!(limiter.metrics().faults, 1);
    let health = serde_json::to_string(&registry.health()).unwrap();
    assert!(
        health.contains("redis_tls_wrong_ca") && !health.contains(password),
        "{health}"
    );
    let logs = format!("{:?}", capture.with("limiter", "tls_wrong_ca"));
    assert!(
        logs.contains("degraded") && !logs.contains(password),
        "{logs}"
    );
}

#[tokio::test]
async fn redis_limit_tls_password_in_a_rediss_url_never_shows() {
    let ca = Ca::new("fusebox test CA");
    let server = tls_server(
        &ca,
        false,
        &[
            "--user",
            "app",
            "on",
            ">right-tls-staple",
            "~*",
            "&*",
            "+@all",
        ],
    );
    let url = |password: &str| format!("rediss://app:{password}@127.0.0.1:{}", server.port());

    // Over TLS the wrong password is still an `Auth` error, redacted.
    let err =
        RedisBackend::connect(config(url("wrong-tls-staple")).tls_root_cert_pem(ca.pem.clone()))
            .await
            .unwrap_err();
    assert!(matches!(err, BackendError::Auth(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("wrong-tls-staple"), "{text}");
    }

    let config = config(url("right-tls-staple")).tls_root_cert_pem(ca.pem.clone());
    assert!(!format!("{config:?}").contains("right-tls-staple"));
    let backend = RedisBackend::connect(config)
        .await
        .expect("the right password");
    assert!(!format!("{backend:?}").contains("right-tls-staple"));
    let d = backend.decide("tls_acl", "k", &rules(1), 1).await.unwrap();
    assert!(d.allowed && d.source == Source::Redis, "{d:?}");
}

#[tokio::test]
async fn redis_limit_tls_mutual_tls_presents_the_client_certificate() {
    let ca = Ca::new("fusebox mTLS CA");
    let server = tls_server(&ca, true, &[]);
    let (cert, key) = ca.issue(&["fusebox-client"], &[ExtendedKeyUsagePurpose::ClientAuth]);
    let key_body = key
        .lines()
        .nth(1)
        .expect("a base64 line of the key")
        .to_owned();

    // With the client certificate: decisions.
    let config_mtls = config(server.url())
        .tls_root_cert_pem(ca.pem.clone())
        .tls_client_cert_pem(cert.clone(), key.clone());
    assert!(!format!("{config_mtls:?}").contains(&key_body));
    let backend = RedisBackend::connect(config_mtls)
        .await
        .expect("mutual TLS");
    let d = backend.decide("mtls", "k", &rules(2), 2).await.unwrap();
    assert!(d.allowed && d.source == Source::Redis, "{d:?}");

    // Without one: the server ends the handshake, a TLS error.
    let err = RedisBackend::connect(config(server.url()).tls_root_cert_pem(ca.pem.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Tls(_)), "{err:?}");

    // A certificate from another CA is refused by the server.
    let stranger = Ca::new("fusebox stranger CA");
    let (cert2, key2) = stranger.issue(&["stranger"], &[ExtendedKeyUsagePurpose::ClientAuth]);
    let err = RedisBackend::connect(
        config(server.url())
            .tls_root_cert_pem(ca.pem.clone())
            .tls_client_cert_pem(cert2, key2),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackendError::Tls(_)), "{err:?}");

    // A key that cannot be read is named, never quoted.
    let broken = key.replace("PRIVATE KEY", "PRIVATE KEZ");
    let err = RedisBackend::connect(
        config(server.url())
            .tls_root_cert_pem(ca.pem.clone())
            .tls_client_cert_pem(cert, broken),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackendError::Tls(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("client key") && !text.contains(&key_body),
        "{text}"
    );
}

#[tokio::test]
async fn redis_limit_tls_certificates_that_cannot_be_used_are_refused_at_connect() {
    let ca = Ca::new("fusebox test CA");
    let tls = |url: &str| config(url.to_owned()).tls_root_cert_pem(ca.pem.clone());
    // Certificates with a redis:// URL: no silent plain-text connection.
    let err = RedisBackend::connect_lazy(tls("redis://127.0.0.1:1")).unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("rediss://")),
        "{err:?}"
    );
    // A root PEM with no certificate in it.
    let err = RedisBackend::connect_lazy(
        config("rediss://127.0.0.1:1".into()).tls_root_cert_pem("not a certificate"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("root certificate")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tls_cluster_decides_over_rediss_with_a_private_ca() {
    let ca = Ca::new("fusebox cluster CA");
    let (cert, key) = ca.issue(&["127.0.0.1"], SERVER);
    let cluster = RedisCluster::start_tls(
        3,
        &TlsPem {
            cert: &cert,
            key: &key,
            ca: &ca.pem,
            auth_clients: false,
        },
    );
    let urls = cluster.urls();
    assert!(urls.iter().all(|u| u.starts_with("rediss://")), "{urls:?}");
    let cluster_config = || {
        RedisConfig::cluster(urls.clone())
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(5))
    };
    let backend = RedisBackend::connect(cluster_config().tls_root_cert_pem(ca.pem.clone()))
        .await
        .expect("a TLS connection to the cluster");
    let rules = rules(2);
    // Keys on every node (30 users spread over the slots).
    for user in 0..30 {
        let key = format!("user-{user}");
        for _ in 0..2 {
            let d = backend
                .decide("tls_cluster", &key, &rules, 1)
                .await
                .unwrap();
            assert_eq!((d.allowed, d.source), (true, Source::Redis), "{key}");
        }
        assert!(
            !backend
                .decide("tls_cluster", &key, &rules, 1)
                .await
                .unwrap()
                .allowed
        );
    }
    // Without the CA, the nodes' certificates are refused.
    let err = RedisBackend::connect(cluster_config()).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("UnknownIssuer")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_notifications_reach_a_rediss_server_with_a_private_ca() {
    use fusebox::breaker::{CircuitBreaker, Config, State};
    use fusebox_std::backend::FleetBreaker;

    let ca = Ca::new("fusebox notifications CA");
    let server = tls_server(&ca, false, &[]);
    let tls = config(server.url()).tls_root_cert_pem(ca.pem.clone());
    let core = || {
        Arc::new(CircuitBreaker::new(
            Config::builder().consecutive_failures(1).build().unwrap(),
        ))
    };
    // Reconciliation alone would take 60 s: only the subscription, over
    // TLS with the private CA, can show A's trip on B in time.
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let backend = RedisBackend::connect(tls.clone()).await.expect("TLS");
        let breaker = FleetBreaker::builder("tls_orders", core(), backend)
            .sync_interval(Duration::from_secs(60))
            .notifications_with(tls.clone())
            .build()
            .await
            .expect("fleet breaker");
        fleet.push(breaker);
    }
    // Let B's subscription settle before A trips.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = fleet[0].call(async { Err::<(), _>("down") }).await;
    assert_eq!(fleet[0].state(), State::Open);
    let start = tokio::time::Instant::now();
    while fleet[1].state() != State::Open {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B never heard of A's trip over the TLS subscription"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A plain client for a TLS-only server cannot subscribe (backstop
    // only); a certificate that cannot be used is refused at build.
    let bad = config(server.url()).tls_root_cert_pem("not a certificate");
    let backend = RedisBackend::connect(tls.clone()).await.unwrap();
    let err = FleetBreaker::builder("tls_orders", core(), backend)
        .notifications_with(bad)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Tls(_)), "{err:?}");
}

/// A certificate of `ca`'s for `names` that expired in 2020.
fn expired(ca: &Ca, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.extended_key_usages = SERVER.to_vec();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A server whose certificate expires (is replaced by an expired one)
/// while the backend uses it: the reconnections' handshakes fail, and
/// that reads as TLS in errors, `health()`, Prometheus and a warning,
/// not as a slow Redis; the password shows nowhere; the limiter decides
/// locally meanwhile and finds Redis again by itself once the
/// certificate is renewed. Found by a hostile review: every command
/// read `redis did not answer within 200ms` for as long as the
/// certificate was refused (and so did a `connect_lazy` backend with a
/// wrong CA from the start).
#[tokio::test]
async fn redis_limit_tls_a_certificate_expired_while_running_reads_as_tls_and_recovers() {
    let password = "tls-expiry-quince-41";
    let ca = Ca::new("fusebox expiry CA");
    let user = format!(">{password}");
    let mut server = tls_server(
        &ca,
        false,
        &["--user", "app", "on", &user, "~*", "&*", "+@all"],
    );
    let url = format!("rediss://app:{password}@127.0.0.1:{}", server.port());
    let config = RedisConfig::new(url)
        .tls_root_cert_pem(ca.pem.clone())
        .timeout(Duration::from_millis(200))
        // A handshake's time, generous: a debug build's TLS handshake on a
        // loaded 2-core machine took over 200 ms (a refused certificate is
        // refused at once whatever this is).
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let backend = RedisBackend::connect(config.clone()).await.expect("TLS");
    let registry = Arc::new(fusebox_std::Registry::new());
    let limiter = RedisLimiter::builder("tls_expiry", rules(1_000), backend.clone())
        .degrade(Degrade::Local { instances: 1 })
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!(d.source, Source::Redis, "{d:?}");
    let capture = common::Capture::global();

    let (old_cert, old_key) = expired(&ca, &["127.0.0.1"]);
    server.restart_with_certificate(&old_cert, &old_key);
    // A new backend is refused at once, as TLS.
    let err = RedisBackend::connect(config.clone()).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Tls(m) if m.contains("expired")),
        "{err:?}"
    );
    // The running one: every command fails, first as unanswered (the
    // reconnection retries the handshake), then, once its liveness probe
    // has looked, as the certificate's refusal.
    let mut seen = Vec::new();
    for _ in 0..300 {
        let result = backend
            .decide("tls_expiry_raw", "k", &rules(1_000), 1)
            .await;
        assert!(result.is_err(), "admitted through an expired certificate");
        let err = result.unwrap_err();
        seen.push(err.to_string());
        if matches!(err, BackendError::Tls(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = seen.last().unwrap();
    assert!(
        last.starts_with("redis TLS failed: ") && last.contains("expired"),
        "never reported as TLS: {seen:?}"
    );
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!(d.source, Source::Local, "{d:?}");
    let reasons = registry.health().reasons;
    assert!(
        reasons.iter().any(|r| r.contains("redis TLS failed")),
        "{reasons:?}"
    );
    let logs = format!("{:?}", capture.0.lock().unwrap());
    assert!(logs.contains("TLS") && logs.contains("expired"), "{logs}");
    let prometheus = format!("{}{}", limiter.to_prometheus(), registry.to_prometheus());
    assert!(
        prometheus.contains("fusebox_redis_limiter_degraded{name=\"tls_expiry\"} 1"),
        "{prometheus}"
    );
    for text in [
        format!("{seen:?}"),
        format!("{reasons:?}"),
        logs,
        prometheus,
        format!("{backend:?} {limiter:?}"),
    ] {
        assert!(!text.contains(password), "{text}");
    }

    // Renewed: the limiter finds Redis again, with no call of its own
    // needed but requests.
    let (cert, key) = ca.issue(&["127.0.0.1"], SERVER);
    server.restart_with_certificate(&cert, &key);
    let mut source = Source::Local;
    for _ in 0..300 {
        source = limiter.try_acquire("k").await.unwrap().source;
        if source == Source::Redis {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(source, Source::Redis);
    assert!(!limiter.is_degraded());
    assert!(registry.health().reasons.is_empty());
    let d = backend
        .decide("tls_expiry_raw", "k", &rules(1_000), 1)
        .await;
    assert!(d.is_ok_and(|d| d.allowed), "raw commands too");
}

/// A loopback listener that, on each connection, writes `reply` (nothing:
/// it stays silent) and keeps everything it receives.
async fn recording_listener(reply: &'static [u8]) -> (u16, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let _ = socket.write_all(reply).await;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, received)
}

/// Sound, checked: a `rediss://` URL that leads to a server that does
/// not speak TLS (one that stays silent, one that answers plain RESP)
/// never gets a plain-text connection: `connect` fails as a fault (the
/// plain answer as TLS), a lazy limiter degrades to its local state and
/// does not hang, and all the server ever received is TLS handshakes,
/// never the password or an `AUTH`.
#[tokio::test]
async fn redis_limit_tls_a_server_that_does_not_speak_tls_gets_no_plain_text() {
    let password = "tls-plain-medlar-93";
    for (reply, tls) in [
        (&b""[..], false),
        (
            &b"-ERR Protocol error: invalid multibulk length\r\n"[..],
            true,
        ),
    ] {
        let (port, received) = recording_listener(reply).await;
        let url = format!("rediss://app:{password}@127.0.0.1:{port}");
        let config = RedisConfig::new(url)
            .timeout(Duration::from_millis(100))
            // Room for the plain answer to arrive and be read as TLS on a
            // loaded machine (300 ms once ended it first, as a timeout).
            .connect_timeout(Duration::from_secs(1));
        let err = RedisBackend::connect(config.clone()).await.unwrap_err();
        assert!(err.is_fault(), "{err:?}");
        assert_eq!(matches!(err, BackendError::Tls(_)), tls, "{err:?}");
        assert!(!format!("{err} {err:?}").contains(password), "{err:?}");

        let lazy = RedisBackend::connect_lazy(config).unwrap();
        let limiter = RedisLimiter::builder("tls_not_tls", rules(5), lazy)
            .degrade(Degrade::Local { instances: 1 })
            .build()
            .unwrap();
        for _ in 0..3 {
            let d = limiter.try_acquire("k").await.unwrap();
            assert_eq!((d.allowed, d.source), (true, Source::Local), "{d:?}");
        }
        assert!(limiter.is_degraded());

        // What the listener has read so far (its task reads as the
        // runtime gets to it): the first bytes, waited for.
        for _ in 0..250 {
            if received.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = received.lock().unwrap().clone();
        assert_eq!(
            received.get(..2),
            Some(&[0x16, 0x03][..]),
            "a TLS handshake record first: {received:02x?}"
        );
        let text = String::from_utf8_lossy(&received);
        assert!(
            !text.contains(password) && !text.to_ascii_uppercase().contains("AUTH"),
            "{text}"
        );
    }
}

/// A fleet breaker whose server presents a certificate from another CA
/// works on its local state (its syncs fail as TLS once the liveness
/// probe has looked, never as an answer), and syncs again by itself
/// once the server presents one from the trusted CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_tls_a_refused_certificate_degrades_to_local_state_and_recovers() {
    use fusebox::breaker::{CircuitBreaker, Config, State};
    use fusebox_std::backend::FleetBreaker;

    let ca = Ca::new("fusebox fleet CA");
    let stranger = Ca::new("fusebox stranger CA");
    let (cert, key) = stranger.issue(&["127.0.0.1"], SERVER);
    let mut server = tls_server(&ca, false, &[]);
    server.restart_with_certificate(&cert, &key);
    let config = RedisConfig::new(server.url())
        .tls_root_cert_pem(ca.pem.clone())
        .timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let backend = RedisBackend::connect_lazy(config).unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(2).build().unwrap(),
    ));
    let breaker = FleetBreaker::builder("tls_refused", core, backend)
        .sync_interval(Duration::from_secs(60))
        .build()
        .await
        .expect("a breaker on local state");
    assert!(breaker.is_degraded());
    let mut last = None;
    for _ in 0..100 {
        let err = breaker
            .sync()
            .await
            .expect_err("synced through a refused certificate");
        let tls = matches!(err, BackendError::Tls(_));
        last = Some(err);
        if tls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(&last, Some(BackendError::Tls(m)) if m.contains("UnknownIssuer")),
        "{last:?}"
    );
    // Local state decides meanwhile: calls pass, failures trip it.
    assert_eq!(breaker.call(async { Ok::<_, ()>(7) }).await.unwrap(), 7);
    for _ in 0..2 {
        let _ = breaker.call(async { Err::<(), _>(()) }).await;
    }
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.is_degraded());

    let (cert, key) = ca.issue(&["127.0.0.1"], SERVER);
    server.restart_with_certificate(&cert, &key);
    let mut synced = None;
    for _ in 0..100 {
        synced = breaker.sync().await.ok();
        if synced.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        synced,
        Some(State::Open),
        "the local trip, shared once synced"
    );
    assert!(!breaker.is_degraded());
}

/// `#insecure` is refused on every path that dials Redis: a backend, a
/// Cluster's nodes, and a fleet breaker's notifications given as a bare
/// URL (which dialled through the `redis` crate alone, its `#insecure`
/// refused only while its `tls-rustls-insecure` feature is off; another
/// crate of the application may turn it on). Found by a hostile review.
#[tokio::test]
async fn redis_limit_tls_insecure_is_refused_on_every_path() {
    use fusebox::breaker::{CircuitBreaker, Config};
    use fusebox_std::backend::FleetBreaker;

    let insecure = "rediss://app:tls-insecure-sorb-5@127.0.0.1:1/#insecure";
    let refused = |e: BackendError| {
        assert!(
            matches!(&e, BackendError::Tls(m) if m.contains("#insecure")),
            "{e:?}"
        );
        assert!(
            !format!("{e} {e:?}").contains("tls-insecure-sorb-5"),
            "{e:?}"
        );
    };
    refused(RedisBackend::connect_lazy(RedisConfig::new(insecure)).unwrap_err());
    refused(
        RedisBackend::connect(RedisConfig::new(insecure))
            .await
            .unwrap_err(),
    );
    refused(RedisBackend::connect_lazy(RedisConfig::cluster([insecure])).unwrap_err());
    let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(1).build().unwrap(),
    ));
    let err = FleetBreaker::builder("tls_insecure", core, backend)
        .notifications(insecure)
        .build()
        .await
        .unwrap_err();
    refused(err);
}

/// A server that asks for a client certificate, and a lazily connected
/// backend that has none (TLS 1.3: the client sees its handshake done,
/// and the server's refusal comes as an alert on the first read).
/// Commands read as TLS once the liveness probe has looked, never as an
/// answer (before 3c28c45: `redis did not answer within 200ms` for
/// good); given the certificate, a new backend decides.
#[tokio::test]
async fn redis_limit_tls_a_client_certificate_refused_in_the_background_reads_as_tls() {
    let ca = Ca::new("fusebox lazy mTLS CA");
    let server = tls_server(&ca, true, &[]);
    let lazy = |config: RedisConfig| {
        RedisBackend::connect_lazy(
            config
                .timeout(Duration::from_millis(200))
                .connect_timeout(Duration::from_millis(200))
                .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
        )
        .unwrap()
    };
    let trusting = RedisConfig::new(server.url()).tls_root_cert_pem(ca.pem.clone());
    let backend = lazy(trusting.clone());
    let mut seen = Vec::new();
    for _ in 0..100 {
        let err = backend
            .decide("tls_lazy_mtls", "k", &rules(5), 1)
            .await
            .expect_err("decided without a client certificate");
        seen.push(err.to_string());
        if matches!(err, BackendError::Tls(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = seen.last().unwrap();
    assert!(last.starts_with("redis TLS failed: "), "{seen:?}");

    let (cert, key) = ca.issue(&["fusebox-client"], &[ExtendedKeyUsagePurpose::ClientAuth]);
    let backend = lazy(trusting.tls_client_cert_pem(cert, key));
    let mut decided = None;
    for _ in 0..100 {
        decided = backend
            .decide("tls_lazy_mtls", "k", &rules(5), 1)
            .await
            .ok();
        if decided.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(decided.is_some_and(|d| d.allowed && d.source == Source::Redis));
}

/// The test servers' restart (`RedisServer::restart`) on a TLS server
/// whose port another listener took while it was down: a TLS server's
/// readiness check cannot send a plain `PING`, so it took any accepted
/// connection for the server; it now also waits for the server's log to
/// say it listens. The holder accepts and answers nothing, for 600 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tls_a_restart_is_not_ready_on_someone_elses_listener() {
    let ca = Ca::new("fusebox test CA");
    let mut server = tls_server(&ca, false, &[]);
    // Someone else's listener: it accepts connections (the kernel's
    // backlog) and never answers.
    let took = tokio::task::block_in_place(|| {
        server.restart_while_port_held(|holder, until| {
            std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
            drop(holder);
        })
    });
    assert!(
        took >= RedisServer::PORT_HELD,
        "ready on the other listener: {took:?}"
    );
    let backend = RedisBackend::connect(config(server.url()).tls_root_cert_pem(ca.pem.clone()))
        .await
        .expect("the restarted server, over TLS");
    let decision = backend.decide("restarted", "k", &rules(5), 1).await;
    assert!(decision.expect("a decision from Redis").allowed);
}
