//! Helpers of the tower layer tests: an axum server on a free loopback
//! port, and a raw HTTP/1.1 client (one connection per request, any bytes
//! in the head, a chosen loopback source address).
#![allow(dead_code)] // each test file uses some of them

pub mod frames;
pub mod unit_codec;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Serves `router` on 127.0.0.1:0 (with the peer address in the request
/// extensions, as axum's `ConnectInfo`) until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("server") });
    addr
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lower case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// Connects to `addr` from the loopback address `from` (127.0.0.x).
pub async fn connect_from(addr: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind a loopback source");
    socket.connect(addr).await.expect("connect")
}

/// Sends `GET path` with `headers` (raw bytes: anything a client could
/// send) on a new connection from 127.0.0.1 and reads the whole response.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Reply {
    get_from(addr, Ipv4Addr::LOCALHOST, path, headers).await
}

/// [`get`] from another loopback source address.
pub async fn get_from(
    addr: SocketAddr,
    from: Ipv4Addr,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Reply {
    let mut stream = connect_from(addr, from).await;
    stream
        .write_all(&request(path, headers))
        .await
        .expect("write");
    read_reply(&mut stream).await
}

/// The bytes of a `GET` request that closes its connection.
pub fn request(path: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out =
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads a response to the end of the connection and parses its head.
pub async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    Reply {
        status,
        headers,
        body,
    }
}

/// An HTTP/2 connection to `addr` (prior knowledge, as gRPC speaks), its
/// driver spawned: the handle sends requests with `B` bodies.
pub async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    client
}

/// Waits until `done` holds, polling every 5 ms; panics naming `what`
/// after 5 s (a bound on a hang, not a measure of speed).
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        panic!("not within 5 s: {what}");
    }
}
