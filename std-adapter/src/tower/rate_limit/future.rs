//! [`ResponseFuture`]: the inner service's response, with the quota left
//! stamped on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::tower::future_state::State;
use crate::tower::headers::Members;

pin_project! {
    /// The response future of a
    /// [`RateLimitService`](super::RateLimitService): a refused request's
    /// is ready at once with the responder's answer; an admitted one's is
    /// the inner future's, whose response gets the `RateLimit-Policy` and
    /// `RateLimit` fields (the quota left after this request's admission).
    ///
    /// # Cancellation
    ///
    /// The token is taken when the request is admitted, in `call`; dropping
    /// this future does not give it back (a client that disconnects still
    /// spent its request).
    ///
    /// # Panics
    ///
    /// Polling it again after it returned `Ready` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox::TokenBucket;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    ///
    /// #[derive(Clone)]
    /// struct Ok200;
    /// impl Service<http::Request<()>> for Ok200 {
    ///     type Response = http::Response<String>;
    ///     type Error = Infallible;
    ///     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    ///     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
    ///         std::task::Poll::Ready(Ok(()))
    ///     }
    ///     fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::ready(Ok(http::Response::new(String::new()))) }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_minute(100)?));
    /// let mut service = RateLimitLayer::new("api", bucket).layer(Ok200);
    /// let response = service.call(http::Request::new(())).await?;
    /// assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=100;w=60");
    /// assert_eq!(response.headers()["ratelimit"], "\"api\";r=99;t=1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        stamp: Option<Members>,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn admitted(inner: F, stamp: Option<Members>) -> Self {
        Self {
            state: State::Inner { future: inner },
            stamp,
        }
    }

    pub(super) fn refused(output: F::Output) -> Self {
        Self {
            state: State::given(output),
            stamp: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let stamp = this.stamp;
        this.state.poll_in_place(cx, |result| {
            if let (Ok(response), Some(stamp)) = (result, stamp.take()) {
                // Not this layer's response: its fields join the inner ones.
                stamp.apply(response.headers_mut(), false);
            }
        })
    }
}
