//! [`RecordedBody`]: a response body that holds the breaker's permit until
//! it ends (with [`CircuitBreakerLayer::record_at_end_of_body`](super::CircuitBreakerLayer::record_at_end_of_body)).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use fusebox::breaker::{Outcome, OwnedPermit};
use fusebox::Duration;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::future::record_took;
use super::{ClassifyEnd, Held};

pin_project! {
    /// The body of a response through a breaker that records at the end
    /// of the body: the inner body, and, while it streams, the permit of
    /// the request it answers.
    ///
    /// The permit is recorded when the body ends: as a failure if the body
    /// fails, else as [`ClassifyEnd::classify_end`] counts its trailers (or
    /// their absence), with the time the service took to answer (to the
    /// head: the client's reading pace is not the service's latency).
    /// Dropping the body before its end (a client that hangs up mid-stream)
    /// *abandons* the permit, as dropping a response future does. A
    /// refused request's body, and the body of a response whose head
    /// already decided (a `5xx`, a `grpc-status` in the head, an answer
    /// that has no body: to a `HEAD` request, a `1xx`, `204` or `304`, a
    /// `2xx` to `CONNECT`), hold none.
    ///
    /// A half-open trial's body holds its trial permit the same way: the
    /// trial is decided when the body ends (a failure reopens the breaker,
    /// a success closes it), and its slot stays taken until then (the
    /// breaker's `max_half_open`, if it has one, bounds that); dropped
    /// before its end, it frees the slot without deciding.
    ///
    /// Over HTTP/1.x, a body of declared length (its exact
    /// [`size_hint`](Body::size_hint), else the response's
    /// `content-length`) ends with its last declared byte: hyper writes no
    /// more and drops the body without polling it again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("chunk")))
    /// }));
    /// let response = service.call(http::Request::new(())).await?;
    /// assert_eq!(core.metrics().successes, 0, "the body has not ended yet");
    /// let body = response.into_body().collect().await?.to_bytes();
    /// assert_eq!(&body[..], b"chunk");
    /// assert_eq!(core.metrics().successes, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub struct RecordedBody<B, C = super::HttpClassifier, R = super::JsonBreakerResponse> {
        #[pin]
        inner: B,
        // `None` once recorded, and for a body that records nothing.
        permit: Option<OwnedPermit<Held<C, R>>>,
        // How long the service took to answer (to the head), if measured.
        took: Option<Duration>,
        // The bytes left of a declared length over HTTP/1.x (see above).
        left: Option<u64>,
    }
}

impl<B, C, R> RecordedBody<B, C, R> {
    /// A body that records nothing (a refusal, or a response already
    /// counted).
    pub(super) fn unrecorded(inner: B) -> Self {
        Self {
            inner,
            permit: None,
            took: None,
            left: None,
        }
    }

    /// Whether this body still holds its request's permit (it has not
    /// ended, and its head did not decide).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("chunk")))
    /// }));
    /// let mut body = service.call(http::Request::new(())).await?.into_body();
    /// assert!(body.is_recording());
    /// while body.frame().await.is_some() {}
    /// assert!(!body.is_recording());
    /// assert_eq!(core.metrics().successes, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn is_recording(&self) -> bool {
        self.permit.is_some()
    }

    /// The inner body.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("chunk")))
    /// }));
    /// let response = service.call(http::Request::new(())).await?;
    /// assert_eq!(response.body().get_ref(), "chunk");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

/// An empty body that records nothing, as a refusal's: what a responder
/// bounded on `B: Default` (`GrpcRateLimitResponse`, `GrpcBreakerResponse`)
/// answers with when it sits *outside* a breaker that records at the end
/// of the body, whose responses' bodies are `RecordedBody`s.
///
/// ```
/// use fusebox_std::tower::breaker::RecordedBody;
///
/// let body: RecordedBody<String> = RecordedBody::default();
/// assert!(!body.is_recording());
/// assert_eq!(body.get_ref(), "");
/// ```
impl<B: Default, C, R> Default for RecordedBody<B, C, R> {
    fn default() -> Self {
        Self::unrecorded(B::default())
    }
}

/// A body of `text` that records nothing, as a refusal's: what a
/// responder bounded on `B: From<String>` (`JsonRateLimitResponse`,
/// `JsonBreakerResponse`) answers with when it sits outside a breaker
/// that records at the end of the body.
///
/// ```
/// use fusebox_std::tower::breaker::RecordedBody;
///
/// let body: RecordedBody<String> = RecordedBody::from(String::from("{}"));
/// assert!(!body.is_recording());
/// assert_eq!(body.get_ref(), "{}");
/// ```
impl<B: From<String>, C, R> From<String> for RecordedBody<B, C, R> {
    fn from(text: String) -> Self {
        Self::unrecorded(B::from(text))
    }
}

impl<B: Body, C: ClassifyEnd, R> RecordedBody<B, C, R> {
    /// `inner` holding `permit` until it ends (or, if `left` is given,
    /// until that many bytes have passed); recorded at once if it is
    /// already at its end (hyper polls no frame of such a body).
    pub(super) fn recording(
        inner: B,
        permit: OwnedPermit<Held<C, R>>,
        took: Option<Duration>,
        left: Option<u64>,
    ) -> Self {
        let mut body = Self {
            inner,
            permit: Some(permit),
            took,
            left,
        };
        if body.inner.is_end_stream() || left == Some(0) {
            end(&mut body.permit, took, |c| c.classify_end(None));
        }
        body
    }
}

/// Records the permit in `slot` at the body's end: the call took `took`
/// (to its head; zero if not measured).
fn end<C, R>(
    slot: &mut Option<OwnedPermit<Held<C, R>>>,
    took: Option<Duration>,
    classify: impl FnOnce(&C) -> Outcome,
) {
    record_took(slot, took.unwrap_or(Duration::ZERO), None, classify);
}

impl<B, C, R> Body for RecordedBody<B, C, R>
where
    B: Body,
    C: ClassifyEnd,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.permit.is_some() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        end(this.permit, *this.took, |c| c.classify_end(Some(trailers)));
                    } else {
                        if let (Some(left), Some(data)) = (this.left.as_mut(), frame.data_ref()) {
                            let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                            *left = left.saturating_sub(len);
                        }
                        if this.inner.is_end_stream() || *this.left == Some(0) {
                            // Its last frame: hyper polls no further.
                            end(this.permit, *this.took, |c| c.classify_end(None));
                        }
                    }
                }
                Some(Err(_)) => end(this.permit, *this.took, |_| Outcome::Failure),
                None => end(this.permit, *this.took, |c| c.classify_end(None)),
            }
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

impl<B: std::fmt::Debug, C, R> std::fmt::Debug for RecordedBody<B, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedBody")
            .field("inner", &self.inner)
            .field("recording", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}
