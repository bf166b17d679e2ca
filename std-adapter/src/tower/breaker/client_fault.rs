//! [`ClientFaultLayer`]: marks the answers to requests whose body failed
//! (the client reset its stream or lost its connection mid-upload), so
//! that a [`CircuitBreakerLayer`](super::CircuitBreakerLayer) around it
//! ignores them instead of counting the service's failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The mark [`ClientFaultLayer`] puts in the extensions of an answer to a
/// request whose body failed: the service answered a client that was
/// gone, or whose upload broke, not a fault of its own. The default
/// classifiers ([`HttpClassifier`](super::HttpClassifier),
/// [`GrpcClassifier`](super::GrpcClassifier)) ignore an answer carrying
/// it; a classifier of your own can look for it too.
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::policy::Classify;
/// use fusebox_std::tower::breaker::{ClientFault, HttpClassifier};
///
/// let mut answer = http::Response::builder().status(500).body(()).unwrap();
/// answer.extensions_mut().insert(ClientFault);
/// assert_eq!(HttpClassifier.classify(&Ok::<_, ()>(answer)), Outcome::Ignored);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientFault;

/// A layer, put *inside* a [`CircuitBreakerLayer`](super::CircuitBreakerLayer),
/// that watches each request's body: if reading it fails (an HTTP/2
/// client resets its stream, any client's connection closes mid-upload),
/// the answer the service makes of it is marked [`ClientFault`], which the
/// breaker's default classifiers ignore.
///
/// Without it a client decides what its own call counts for: tonic
/// answers a request stream reset with `REFUSED_STREAM` or an unknown
/// error code `UNAVAILABLE` or `UNKNOWN`, and a connection closed
/// mid-upload `UNKNOWN`, failures to [`GrpcClassifier`](super::GrpcClassifier):
/// a few such calls open the breaker of a healthy service, at any
/// client's will. With it, such a call is ignored (a client can hide the
/// outcome of its own calls, never another's).
///
/// What it cannot see: a body the service never reads, an answer whose
/// head was made before the body failed (a streaming response, whose
/// failure then comes in its trailers), and an `Err` from the service
/// (not an answer: it stays a failure). The inner service receives
/// [`WatchedBody<B>`]: tonic's servers and axum's `Router` take any body.
/// It costs an allocation and two atomic operations per request.
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::tower::breaker::{ClientFault, ClientFaultLayer, WatchedBody};
/// use fusebox_std::tower::CircuitBreakerLayer;
/// use http_body_util::BodyExt;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// /// A body that breaks, as a client gone mid-upload's does.
/// struct Broken;
/// impl http_body::Body for Broken {
///     type Data = bytes::Bytes;
///     type Error = &'static str;
///     fn poll_frame(
///         self: std::pin::Pin<&mut Self>,
///         _: &mut std::task::Context<'_>,
///     ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, &'static str>>> {
///         std::task::Poll::Ready(Some(Err("stream reset")))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let breaker = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new("upload", Arc::clone(&breaker)))
///     .layer(ClientFaultLayer::new())
///     .service(service_fn(|request: http::Request<WatchedBody<Broken>>| async move {
///         // A handler answering a failed read with a 500.
///         let status = match request.into_body().collect().await {
///             Ok(_) => 200,
///             Err(_) => 500,
///         };
///         Ok::<_, Infallible>(http::Response::builder().status(status).body(String::new()).unwrap())
///     }));
/// let answer = service.oneshot(http::Request::new(Broken)).await?;
/// assert_eq!(answer.status(), 500);
/// assert!(answer.extensions().get::<ClientFault>().is_some());
/// assert_eq!((breaker.metrics().failures, breaker.metrics().ignored), (0, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientFaultLayer {
    _private: (),
}

impl ClientFaultLayer {
    /// The layer.
    ///
    /// ```
    /// use fusebox_std::tower::breaker::ClientFaultLayer;
    ///
    /// let layer = ClientFaultLayer::new();
    /// # drop(layer);
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for ClientFaultLayer {
    type Service = ClientFaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientFaultService { inner }
    }
}

/// The service of a [`ClientFaultLayer`].
///
/// ```
/// use fusebox_std::tower::breaker::{ClientFaultLayer, ClientFaultService};
/// use tower_layer::Layer;
///
/// let service: ClientFaultService<&str> = ClientFaultLayer::new().layer("inner");
/// assert_eq!(*service.get_ref(), "inner");
/// ```
#[derive(Clone, Debug)]
pub struct ClientFaultService<S> {
    inner: S,
}

impl<S> ClientFaultService<S> {
    /// The inner service.
    ///
    /// ```
    /// use fusebox_std::tower::breaker::ClientFaultLayer;
    /// use tower_layer::Layer;
    ///
    /// assert_eq!(*ClientFaultLayer::new().layer(7).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for ClientFaultService<S>
where
    S: Service<Request<WatchedBody<B>>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ClientFaultFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let failed = Arc::new(AtomicBool::new(false));
        let watched = Arc::clone(&failed);
        let request = request.map(|inner| WatchedBody {
            inner,
            failed: watched,
        });
        ClientFaultFuture {
            inner: self.inner.call(request),
            failed,
        }
    }
}

pin_project! {
    /// A request body as a [`ClientFaultService`]'s inner service gets
    /// it: the client's, unchanged, noting whether reading it failed.
    ///
    /// ```
    /// use http_body::Body;
    /// use http_body_util::Full;
    /// use fusebox_std::tower::breaker::ClientFaultLayer;
    /// use tower::{service_fn, ServiceExt};
    /// use tower_layer::Layer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let service = ClientFaultLayer::new().layer(service_fn(|request: http::Request<_>| async move {
    ///     let body: &fusebox_std::tower::breaker::WatchedBody<Full<bytes::Bytes>> = request.body();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body.size_hint().exact()))
    /// }));
    /// let answer = service.oneshot(http::Request::new(Full::from("four"))).await.unwrap();
    /// assert_eq!(*answer.body(), Some(4));
    /// # });
    /// ```
    #[derive(Debug)]
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        failed: Arc<AtomicBool>,
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if matches!(frame, Some(Err(_))) {
            // Read by the response future, perhaps on another thread
            // (the body read in a task of its own).
            this.failed.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response future of a [`ClientFaultService`]: the inner one's,
    /// its answer marked [`ClientFault`] if the request's body failed.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use fusebox_std::tower::breaker::{ClientFault, ClientFaultLayer};
    /// use tower::{service_fn, ServiceExt};
    /// use tower_layer::Layer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let service = ClientFaultLayer::new().layer(service_fn(|_: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(()))
    /// }));
    /// let answer = service.oneshot(http::Request::new(String::from("whole"))).await.unwrap();
    /// assert!(answer.extensions().get::<ClientFault>().is_none()); // nothing failed
    /// # });
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct ClientFaultFuture<F> {
        #[pin]
        inner: F,
        failed: Arc<AtomicBool>,
    }
}

impl<F, B, E> Future for ClientFaultFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result
            && this.failed.load(Ordering::Acquire)
        {
            response.extensions_mut().insert(ClientFault);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use fusebox::breaker::{CircuitBreaker, Config};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    use super::{ClientFault, ClientFaultLayer, WatchedBody};
    use crate::tower::breaker::GrpcClassifier;
    use crate::tower::CircuitBreakerLayer;

    /// A request body whose read fails at once.
    struct Broken;

    impl http_body::Body for Broken {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(Some(Err("stream reset")))
        }
    }

    fn breaker() -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(
            Config::builder().consecutive_failures(1).build().unwrap(),
        ))
    }

    /// (successes, failures, ignored)
    fn counts(b: &CircuitBreaker) -> (u64, u64, u64) {
        let m = b.metrics();
        (m.successes, m.failures, m.ignored)
    }

    /// tonic's answer to an unreadable message, recorded at the end of
    /// the body (a trailers-only `UNKNOWN`, decided at the head): marked,
    /// ignored.
    #[tokio::test(start_paused = true)]
    async fn a_marked_answer_is_ignored_when_recording_at_the_end_of_the_body() {
        let b = breaker();
        let service = ServiceBuilder::new()
            .layer(
                CircuitBreakerLayer::new("grpc", Arc::clone(&b))
                    .classifier(GrpcClassifier::new())
                    .record_at_end_of_body(),
            )
            .layer(ClientFaultLayer::new())
            .service(service_fn(
                |request: http::Request<WatchedBody<Broken>>| async move {
                    assert!(request.into_body().collect().await.is_err());
                    let answer = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "2")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    Ok::<_, Infallible>(answer)
                },
            ));
        let answer = service.oneshot(http::Request::new(Broken)).await.unwrap();
        assert!(answer.extensions().get::<ClientFault>().is_some());
        let _ = answer.into_body().collect().await;
        assert_eq!(counts(&b), (0, 0, 1));
    }

    /// A body read whole leaves the answer unmarked: the service's own
    /// `500` is a failure, as an `Err` is even after a failed body (no
    /// answer to mark).
    #[tokio::test(start_paused = true)]
    async fn only_an_answer_to_a_failed_body_is_marked() {
        let b = breaker();
        let service = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("http", Arc::clone(&b)))
            .layer(ClientFaultLayer::new())
            .service(service_fn(
                |request: http::Request<WatchedBody<Full<Bytes>>>| async move {
                    let whole = request.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(whole, "upload");
                    let answer = http::Response::builder().status(500).body(String::new());
                    Ok::<_, Infallible>(answer.unwrap())
                },
            ));
        let answer = service
            .oneshot(http::Request::new(Full::from("upload")))
            .await
            .unwrap();
        assert!(answer.extensions().get::<ClientFault>().is_none());
        assert_eq!(counts(&b), (0, 1, 0));

        let b = breaker();
        let service = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new("http", Arc::clone(&b)))
            .layer(ClientFaultLayer::new())
            .service(service_fn(
                |request: http::Request<WatchedBody<Broken>>| async move {
                    let read = request.into_body().collect().await;
                    read.map(|_| http::Response::new(String::new()))
                },
            ));
        assert!(service.oneshot(http::Request::new(Broken)).await.is_err());
        assert_eq!(counts(&b), (0, 1, 0));
    }
}
