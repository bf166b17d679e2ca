//! A response body that yields a script of frames: data, trailers, an
//! error, or a pause that never ends (a stream still running).
#![allow(dead_code)] // each test file uses some of them

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame};

/// One step of a [`FrameBody`].
#[derive(Debug)]
pub enum Step {
    Data(&'static str),
    /// Trailers with this `grpc-status`.
    GrpcStatus(&'static str),
    Error,
    /// Pending for ever.
    Hang,
}

/// A body yielding its steps in order, then its end.
#[derive(Debug)]
pub struct FrameBody(VecDeque<Step>);

impl FrameBody {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self(steps.into_iter().collect())
    }
}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match self.0.pop_front() {
            None => None,
            Some(Step::Data(chunk)) => Some(Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))),
            Some(Step::GrpcStatus(code)) => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", code.parse().unwrap());
                Some(Ok(Frame::trailers(trailers)))
            }
            Some(Step::Error) => Some(Err(std::io::Error::other("upstream reset"))),
            Some(Step::Hang) => {
                self.0.push_front(Step::Hang);
                return Poll::Pending;
            }
        })
    }
}
