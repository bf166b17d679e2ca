//! Panic isolation for user code (checks and recovery actions): a panic
//! becomes an error of that run, so one faulty check cannot end its task
//! and freeze its health.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

/// Calls `make` and awaits its future; a panic in either becomes
/// `Err(panic message)`. The future is not polled again after it panicked.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: after a
/// panic nothing of the panicked call is touched again (the future is
/// dropped, never re-polled), and the monitor's own state is not borrowed
/// across the call.
pub(crate) async fn unwind_safe<F, Fut>(make: F) -> Result<Fut::Output, String>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let fut = catch_unwind(AssertUnwindSafe(make)).map_err(|p| message(&*p))?;
    let mut fut = pin!(fut);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(message(&*p))),
        },
    )
    .await
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}
