//! Helpers for the HTTP endpoint tests: a real axum server on a free
//! loopback port, and a plain hyper client.
#![allow(dead_code)] // each test file uses some of them

pub mod browser;

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A server answering on `addr` until dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Serves `app` on `127.0.0.1:0`.
pub async fn serve(app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    Server { addr, task }
}

/// An answer: status, headers, body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Content-Type`, or `""`.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON (panics, naming the body, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `method url` over real HTTP/1, with `Authorization: <auth>` if given.
pub async fn call(method: Method, url: &str, auth: Option<&str>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = client
        .request(request.body(Empty::new()).expect("request"))
        .await
        .expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
    }
}

/// `GET url`, no credentials.
pub async fn get(url: &str) -> Reply {
    call(Method::GET, url, None).await
}

/// `GET url` with `Authorization: Bearer <token>`.
pub async fn get_with(url: &str, token: &str) -> Reply {
    call(Method::GET, url, Some(&format!("Bearer {token}"))).await
}
