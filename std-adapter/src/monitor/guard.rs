//! Panic isolation for user code (checks and recovery actions): a panic
//! becomes an error of that run, so one faulty check cannot end its task
//! and freeze its health.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;

/// Calls `make` and awaits its future; a panic in either becomes
/// `Err(panic message)`. The future is not polled again after it panicked.
/// A panic while the future is dropped (cut off by a timeout, or after it
/// panicked) is caught too and logged: the run's result is already known.
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
    let fut = caught(make)?;
    let mut fut = CatchDrop(Some(Box::pin(fut)));
    poll_fn(|cx| {
        let Some(fut) = fut.0.as_mut() else {
            return Poll::Ready(Err("polled after it ended".to_owned()));
        };
        match caught(|| fut.as_mut().poll(cx)) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// Owns a future of user code and drops it inside `catch_unwind` (found by
/// a hostile review: a check whose state panicked when dropped at its
/// timeout ended the check's task, its health frozen).
struct CatchDrop<T>(Option<Pin<Box<T>>>);

impl<T> Drop for CatchDrop<T> {
    fn drop(&mut self) {
        let Some(fut) = self.0.take() else { return };
        if let Err(panic) = caught(move || drop(fut)) {
            let panic = crate::redact::redact_cut(&panic, super::CheckError::MAX_MESSAGE_CHARS);
            tracing::warn!(
                panic = panic.as_str(),
                "a check or recovery action panicked when dropped"
            );
        }
    }
}

/// Calls `f`; a panic becomes `Err(its message)`. The panic's payload is
/// dropped inside `catch_unwind` as well: a payload whose `drop` panics
/// (`std::panic::panic_any` of such a value) would otherwise unwind from
/// here, out of the guard, into the monitor's task (found by a hostile
/// review: a check panicking with one ended its task; the check never ran
/// again and read stale, at 0 runs, for ever). The second panic's own
/// payload is leaked, never dropped: its `drop` could panic in turn.
pub(crate) fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let text = message(&*payload);
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
        text
    })
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}
