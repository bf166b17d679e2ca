//! A scripted inner service for the layers' unit tests: the request path
//! says what it answers (`/200`, `/404`, `/502`, `/err`, `/hang`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

pub(crate) type Reply =
    Pin<Box<dyn Future<Output = Result<Response<String>, &'static str>> + Send>>;

#[derive(Clone, Debug, Default)]
pub(crate) struct Scripted;

impl<B> Service<Request<B>> for Scripted {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        match path.as_str() {
            "hang" => Box::pin(std::future::pending()),
            "err" => Box::pin(async { Err("inner failed") }),
            code => {
                let status = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
                let mut response = Response::new(String::from("inner"));
                *response.status_mut() = status.unwrap_or(StatusCode::OK);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// A request for `path`.
pub(crate) fn get(path: &str) -> Request<()> {
    Request::builder()
        .uri(path)
        .body(())
        .expect("valid request")
}

/// A request for `/200` with the API key `value` in `x-api-key`.
pub(crate) fn with_key(value: &[u8]) -> Request<()> {
    let mut request = get("/200");
    let value = http::HeaderValue::from_bytes(value).expect("a header value");
    request.headers_mut().insert("x-api-key", value);
    request
}

/// Calls `service` as a server would: ready, then call.
pub(crate) async fn send<S>(
    service: &mut S,
    request: Request<()>,
) -> Result<Response<String>, S::Error>
where
    S: Service<Request<()>, Response = Response<String>>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

/// An inner service whose `poll_ready` answers `ready` and whose `call`
/// answers `call(request)` at once (a panic in `call` unwinds from the
/// layer's `call`).
#[derive(Clone, Debug)]
pub(crate) struct FnInner {
    pub(crate) ready: Result<(), &'static str>,
    pub(crate) call: fn(Request<()>) -> Response<String>,
}

impl Service<Request<()>> for FnInner {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(self.ready)
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        std::future::ready(Ok((self.call)(request)))
    }
}

/// The `Retry-After` of `response`, in seconds.
pub(crate) fn retry_after(response: &Response<String>) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .expect("an ASCII Retry-After")
        .parse()
        .expect("delta seconds")
}
