//! `--serve`: fusebox-std's HTTP endpoints and live dashboard over the
//! storm's registry, on a local address, so a person can watch the
//! breaker trip and recover while the storm runs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use fusebox_std::http::{router, HttpOptions};
use fusebox_std::Registry;

/// Binds `addr` and serves `/dashboard`, `/health`, `/metrics`, `/readyz`
/// and `/livez` for `registry` on a background task (for the life of the
/// process); returns the dashboard's URL.
///
/// The endpoints are open (no token): bind a loopback address. Binding
/// another one is refused, so the demo never exposes its figures.
///
/// # Errors
///
/// The bind's error, or [`io::ErrorKind::InvalidInput`] for an address
/// that is not a loopback one.
pub async fn dashboard(addr: SocketAddr, registry: Arc<Registry>) -> io::Result<String> {
    // An IPv4-mapped loopback (`[::ffff:127.0.0.1]`) is one too (found by
    // a hostile review: refused as "not loopback").
    if !addr.ip().to_canonical().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the demo serves its open dashboard on loopback addresses only",
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(registry, HttpOptions::default());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("storm: the dashboard server stopped: {e}");
        }
    });
    Ok(format!("http://{local}/dashboard"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_non_loopback_address_is_refused() {
        let err = dashboard("0.0.0.0:0".parse().unwrap(), Arc::new(Registry::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn an_ipv4_mapped_loopback_address_is_served() {
        let url = dashboard(
            "[::ffff:127.0.0.1]:0".parse().unwrap(),
            Arc::new(Registry::new()),
        )
        .await
        .unwrap();
        assert!(url.starts_with("http://[::ffff:127.0.0.1]:"), "{url}");
        for refused in ["[::ffff:10.0.0.1]:0", "[::]:0"] {
            let err = dashboard(refused.parse().unwrap(), Arc::new(Registry::new()))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{refused}");
        }
    }

    #[tokio::test]
    async fn the_url_names_the_bound_port() {
        let url = dashboard("127.0.0.1:0".parse().unwrap(), Arc::new(Registry::new()))
            .await
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/dashboard"));
        assert!(!url.contains(":0/"), "{url}");
    }
}
