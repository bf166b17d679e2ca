//! The state both layers' response futures share: the inner service's
//! future while it runs, or an output ready to return.

use std::future::Future;

use pin_project_lite::pin_project;

pin_project! {
    /// The inner future, or the output to return (`None` once returned):
    /// one or the other, so the future is no larger than the larger of
    /// the two (a layer's future is moved, and boxed by axum, on every
    /// request).
    #[project = StateProj]
    pub(crate) enum State<F>
    where
        F: Future,
    {
        Inner { #[pin] future: F },
        Ready { output: Option<F::Output> },
    }
}

/// What [`State::poll_output`] returns: the inner future's output (the
/// future dropped), or the output the state was given.
pub(crate) enum Output<T> {
    /// The inner future completed with this.
    Inner(T),
    /// The state held this (a refusal answered at once).
    Given(T),
}

impl<F: Future> State<F> {
    /// A state holding `output`, ready at once.
    #[inline]
    pub(crate) fn given(output: F::Output) -> Self {
        Self::Ready {
            output: Some(output),
        }
    }

    /// Polls the inner future; once it completes it is dropped (before the
    /// caller handles its output) and the state is spent.
    ///
    /// # Panics
    ///
    /// Polled again once spent.
    #[inline]
    pub(crate) fn poll_output(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Output<F::Output>> {
        let output = match self.as_mut().project() {
            StateProj::Inner { future } => std::task::ready!(future.poll(cx)),
            StateProj::Ready { output } => {
                let output = output
                    .take()
                    .expect("ResponseFuture polled after completion");
                return std::task::Poll::Ready(Output::Given(output));
            }
        };
        self.set(Self::Ready { output: None });
        std::task::Poll::Ready(Output::Inner(output))
    }

    /// Polls the inner future and, once it completes, drops it and hands
    /// its output to `on_inner` in place, returning the inner poll as it
    /// came: the response is not moved through an [`Output`] on its way
    /// out (each move of an HTTP response copies over a hundred bytes, on
    /// every request). A state holding a given output returns it as is.
    ///
    /// # Panics
    ///
    /// Polled again once spent.
    #[inline]
    pub(crate) fn poll_in_place(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        on_inner: impl FnOnce(&mut F::Output),
    ) -> std::task::Poll<F::Output> {
        let mut poll = match self.as_mut().project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Ready { output } => {
                return std::task::Poll::Ready(
                    output
                        .take()
                        .expect("ResponseFuture polled after completion"),
                );
            }
        };
        if let std::task::Poll::Ready(output) = &mut poll {
            self.set(Self::Ready { output: None });
            on_inner(output);
        }
        poll
    }
}
