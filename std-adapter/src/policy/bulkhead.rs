//! [`Bulkhead`]: at most `max_concurrent` calls at once; the rest rejected
//! at once or queued, up to a bound, for at most a maximum wait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::error::Elapsed;

use super::CallError;
use crate::events::RejectionReporter;
use crate::redact::Redacted;

/// Why a bulkhead refused a call.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::BulkheadRejection;
///
/// assert_eq!(BulkheadRejection::Full.to_string(), "all slots in use");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadRejection {
    /// Every slot was in use and the bulkhead does not queue.
    Full,
    /// Every slot was in use and the queue was full.
    QueueFull,
    /// The call queued for the maximum wait without getting a slot.
    QueueTimeout,
}

impl fmt::Display for BulkheadRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "all slots in use",
            Self::QueueFull => "all slots in use and the queue is full",
            Self::QueueTimeout => "no slot within the maximum queueing time",
        })
    }
}

impl std::error::Error for BulkheadRejection {}

/// Why [`Bulkhead::new`] refused a setting.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
///
/// ```
/// use fusebox_std::policy::BulkheadError;
///
/// assert_eq!(BulkheadError::NoSlots.to_string(), "a bulkhead needs at least one slot");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadError {
    /// `max_concurrent` was 0: every call would be refused.
    NoSlots,
    /// [`Overflow::Queue`] with `max_queued` 0: no call could queue (that
    /// is [`Overflow::Reject`]).
    NoQueuePlaces,
    /// [`Overflow::Queue`] with a zero `max_wait`: every queued call would
    /// time out at once (that is [`Overflow::Reject`]).
    NoQueueWait,
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSlots => "a bulkhead needs at least one slot",
            Self::NoQueuePlaces => {
                "a queueing bulkhead needs at least one queue place (or Overflow::Reject)"
            }
            Self::NoQueueWait => {
                "a queueing bulkhead needs a maximum wait above zero (or Overflow::Reject)"
            }
        })
    }
}

impl std::error::Error for BulkheadError {}

/// What a bulkhead does with a call when every slot is in use.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Bulkhead, Overflow};
///
/// let bulkhead = Bulkhead::new(8, Overflow::Queue { max_queued: 32, max_wait: Duration::from_millis(50) })?;
/// assert_eq!(bulkhead.overflow(), Overflow::Queue { max_queued: 32, max_wait: Duration::from_millis(50) });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it at once ([`BulkheadRejection::Full`]).
    Reject,
    /// Queue it (first come, first served) if fewer than `max_queued`
    /// calls are queued, for at most `max_wait` (give or take tokio's
    /// 1 ms timer tick, see `max_wait`). A slot freed goes to the first
    /// queued call at once, and so does its place: a call arriving next,
    /// even before that one's task runs again, finds the place free.
    Queue {
        /// The most calls queued at once (at least 1).
        max_queued: usize,
        /// The longest a call waits for a slot (above zero). The wait is a
        /// `tokio::time` timeout, which ends on the timer's first 1 ms
        /// tick at or after `max_wait`: up to 1 ms later (a 100 µs
        /// `max_wait` gives up after 1 ms), never earlier. The timer wakes
        /// the call's task, which then gives the place back: until that
        /// task runs the call still queues (and a slot freed meanwhile
        /// still goes to it).
        max_wait: Duration,
    },
}

/// A bulkhead's counters.
///
/// ```
/// use fusebox_std::policy::{Bulkhead, BulkheadMetrics, Overflow};
///
/// let bulkhead = Bulkhead::new(4, Overflow::Reject)?;
/// let _slot = bulkhead.try_acquire()?;
/// assert_eq!(bulkhead.metrics(), BulkheadMetrics { in_use: 1, queued: 0, rejected: 0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkheadMetrics {
    /// Slots held right now.
    pub in_use: usize,
    /// Calls waiting for a slot right now (a call a slot was handed to
    /// holds it, counted in `in_use`, even before its task runs again; a
    /// call cancelled while it queues is not counted from the moment its
    /// drop begins). `in_use` and `queued` are two counters read one
    /// after the other: while calls come and go on other threads, a
    /// reading can mix two instants, each within its bound.
    pub queued: usize,
    /// Calls refused since creation, for any [`BulkheadRejection`].
    pub rejected: u64,
}

/// Limits the calls in flight at once: a [`tokio::sync::Semaphore`] of
/// `max_concurrent` slots (FIFO, so queued calls are served in arrival
/// order) and an [`Overflow`] rule. Cheap to clone; clones share the slots.
///
/// # Cancellation
///
/// A call dropped while it queues (an outer timeout, a client gone, a
/// `select!`) leaves the queue within the drop: its place is free before
/// the drop returns, and before a slot handed to it meanwhile goes on to
/// the next queued call, so that call (woken from inside the drop) and any
/// caller arriving after it find the place free. One dropped while it runs
/// returns its slot. A refused call (queue full, queue timeout, or
/// [`try_acquire`](Self::try_acquire) finding every slot taken) has given
/// back what it counted before its refusal is counted, logged or reported.
///
/// On a multi-thread runtime a caller arriving on another thread *during*
/// such a drop is served as if the drop came before it or after it; and
/// while a leaving call (cancelled, or returning its slot) hands its slot
/// on, the call the slot goes to may wait a moment more, so a caller
/// arriving then can queue behind it. The bounds never move: at most
/// `max_concurrent` calls hold a slot, and the calls holding a slot or
/// waiting, each counted from before it takes a slot or a place until it
/// leaves, are at most `max_concurrent + max_queued`.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Bulkhead, BulkheadRejection, Overflow};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bulkhead = Bulkhead::new(1, Overflow::Queue { max_queued: 1, max_wait: Duration::from_secs(1) })?;
/// let _held = bulkhead.acquire().await?;
/// // A queued call given up on by an outer timeout leaves the queue...
/// let gave_up = tokio::time::timeout(Duration::from_millis(5), bulkhead.acquire()).await;
/// assert!(gave_up.is_err());
/// assert_eq!(bulkhead.metrics().queued, 0);
/// // ...so the next caller queues (here for its whole `max_wait`) instead of
/// // being refused `QueueFull`.
/// assert_eq!(bulkhead.acquire().await.unwrap_err(), BulkheadRejection::QueueTimeout);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::{Bulkhead, BulkheadRejection, Overflow};
/// use fusebox_std::CallError;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bulkhead = Bulkhead::new(1, Overflow::Reject)?;
/// let held = bulkhead.try_acquire().unwrap();
/// let refused = bulkhead.call(async { Ok::<_, ()>(1) }).await;
/// assert!(matches!(refused, Err(CallError::Bulkhead(BulkheadRejection::Full))));
/// drop(held);
/// assert_eq!(bulkhead.call(async { Ok::<_, ()>(1) }).await.unwrap(), 1);
/// assert_eq!(bulkhead.metrics().rejected, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Bulkhead {
    shared: Arc<Shared>,
    reporter: Option<RejectionReporter>,
}

#[derive(Debug)]
struct Shared {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    overflow: Overflow,
    /// With [`Overflow::Queue`]: the calls holding a slot or waiting for
    /// one (each counted by an [`Admission`] before it takes a slot or a
    /// place), at most `max_concurrent + max_queued`. Those waiting are
    /// this less the slots taken: a slot the semaphore hands to a waiter
    /// counts as taken at once, before the waiter's task runs again, so
    /// its place is free at once. Unused with [`Overflow::Reject`].
    admitted: AtomicUsize,
    rejected: AtomicU64,
}

/// A bulkhead slot, returned when dropped.
///
/// ```
/// use fusebox_std::policy::{Bulkhead, Overflow};
///
/// let bulkhead = Bulkhead::new(1, Overflow::Reject)?;
/// let permit = bulkhead.try_acquire()?;
/// assert!(bulkhead.try_acquire().is_err());
/// drop(permit);
/// assert!(bulkhead.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "the slot is returned as soon as the permit is dropped"]
pub struct BulkheadPermit {
    // Dropped in this order: the call leaves the count before its slot is
    // handed on, so a caller arriving in between is never refused for it.
    _admission: Option<Admission>,
    _permit: OwnedSemaphorePermit,
}

impl Bulkhead {
    /// A bulkhead of `max_concurrent` slots (at most
    /// [`Semaphore::MAX_PERMITS`]; a larger number is clamped to it).
    ///
    /// # Errors
    ///
    /// [`BulkheadError`] for a setting that would refuse every call that
    /// does not find a free slot *and* every one that does, or queue calls
    /// only to refuse them at once: no slots, a queue of no places, a queue
    /// with no wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Bulkhead, BulkheadError, Overflow};
    ///
    /// let bulkhead = Bulkhead::new(16, Overflow::Reject)?;
    /// assert_eq!(bulkhead.max_concurrent(), 16);
    /// assert_eq!(Bulkhead::new(0, Overflow::Reject).unwrap_err(), BulkheadError::NoSlots);
    /// let no_wait = Overflow::Queue { max_queued: 8, max_wait: Duration::ZERO };
    /// assert_eq!(Bulkhead::new(4, no_wait).unwrap_err(), BulkheadError::NoQueueWait);
    /// # Ok::<(), BulkheadError>(())
    /// ```
    pub fn new(max_concurrent: usize, overflow: Overflow) -> Result<Self, BulkheadError> {
        if max_concurrent == 0 {
            return Err(BulkheadError::NoSlots);
        }
        match overflow {
            Overflow::Queue { max_queued: 0, .. } => return Err(BulkheadError::NoQueuePlaces),
            Overflow::Queue { max_wait, .. } if max_wait.is_zero() => {
                return Err(BulkheadError::NoQueueWait)
            }
            _ => {}
        }
        let max_concurrent = max_concurrent.min(Semaphore::MAX_PERMITS);
        Ok(Self {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                overflow,
                admitted: AtomicUsize::new(0),
                rejected: AtomicU64::new(0),
            }),
            reporter: None,
        })
    }

    /// Reports every refusal (full, queue full, queue timeout) to
    /// `reporter` as an [`Event::Rejected`](crate::events::Event::Rejected).
    /// Clones made afterwards report too; the returned bulkhead shares its
    /// slots with `self`'s other clones.
    ///
    /// ```
    /// use fusebox_std::events::{Component, Events, RejectionReporter};
    /// use fusebox_std::policy::{Bulkhead, Overflow};
    /// use fusebox_std::TokioClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let events = Events::new(8);
    /// let bulkhead = Bulkhead::new(1, Overflow::Reject)?
    ///     .reporting_to(RejectionReporter::new("db", Component::Bulkhead, &events, TokioClock::new()));
    /// let _held = bulkhead.try_acquire()?;
    /// assert!(bulkhead.try_acquire().is_err());
    /// assert_eq!(events.published(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn reporting_to(mut self, reporter: RejectionReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// The overflow rule.
    ///
    /// ```
    /// use fusebox_std::policy::{Bulkhead, Overflow};
    ///
    /// assert_eq!(Bulkhead::new(2, Overflow::Reject)?.overflow(), Overflow::Reject);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overflow(&self) -> Overflow {
        self.shared.overflow
    }

    /// The number of slots.
    ///
    /// ```
    /// use fusebox_std::policy::{Bulkhead, Overflow};
    ///
    /// assert_eq!(Bulkhead::new(3, Overflow::Reject)?.max_concurrent(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent
    }

    /// The counters.
    ///
    /// ```
    /// use fusebox_std::policy::{Bulkhead, Overflow};
    ///
    /// let bulkhead = Bulkhead::new(1, Overflow::Reject)?;
    /// let _held = bulkhead.try_acquire()?;
    /// let _ = bulkhead.try_acquire();
    /// let m = bulkhead.metrics();
    /// assert_eq!((m.in_use, m.rejected), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> BulkheadMetrics {
        let s = &self.shared;
        let in_use = s.max_concurrent - s.slots.available_permits();
        let queued = match s.overflow {
            Overflow::Queue { max_queued, .. } => s
                .admitted
                .load(Ordering::Acquire)
                .saturating_sub(in_use)
                .min(max_queued),
            Overflow::Reject => 0,
        };
        BulkheadMetrics {
            in_use,
            queued,
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// A slot if one is free now (never queues).
    ///
    /// # Errors
    ///
    /// [`BulkheadRejection::Full`] (counted as a rejection).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Bulkhead, BulkheadRejection, Overflow};
    ///
    /// // Even a queueing bulkhead refuses at once here.
    /// let bulkhead = Bulkhead::new(1, Overflow::Queue { max_queued: 8, max_wait: Duration::from_secs(1) })?;
    /// let _held = bulkhead.try_acquire()?;
    /// assert_eq!(bulkhead.try_acquire().unwrap_err(), BulkheadRejection::Full);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadRejection> {
        // With a queue, a slot is counted before it is taken: every call
        // past the count holds or waits, and those that wait stay within
        // `max_queued`. A full count means no slot is free for us.
        let admission = match self.shared.overflow {
            Overflow::Queue { .. } => match Admission::take(&self.shared) {
                Some(admission) => Some(admission),
                None => return Err(self.reject(BulkheadRejection::Full)),
            },
            Overflow::Reject => None,
        };
        let Ok(permit) = Arc::clone(&self.shared.slots).try_acquire_owned() else {
            // Uncounted before the refusal is counted, logged and
            // reported: this call never queues.
            drop(admission);
            return Err(self.reject(BulkheadRejection::Full));
        };
        Ok(BulkheadPermit {
            _admission: admission,
            _permit: permit,
        })
    }

    /// A slot, by the overflow rule: at once, or after queueing.
    ///
    /// # Errors
    ///
    /// [`BulkheadRejection`], counted in [`BulkheadMetrics::rejected`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Bulkhead, BulkheadRejection, Overflow};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let bulkhead = Bulkhead::new(1, Overflow::Queue { max_queued: 1, max_wait: Duration::from_millis(10) })?;
    /// let _held = bulkhead.acquire().await?;
    /// assert_eq!(bulkhead.acquire().await.unwrap_err(), BulkheadRejection::QueueTimeout);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadRejection> {
        let slots = &self.shared.slots;
        let Overflow::Queue { max_wait, .. } = self.shared.overflow else {
            return match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Ok(BulkheadPermit {
                    _admission: None,
                    _permit: permit,
                }),
                Err(_) => Err(self.reject(BulkheadRejection::Full)),
            };
        };
        // Counted before taking a slot or a place (see `Shared::admitted`):
        // a full count is every slot taken and every place too.
        let Some(admission) = Admission::take(&self.shared) else {
            return Err(self.reject(BulkheadRejection::QueueFull));
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Ok(BulkheadPermit {
                _admission: Some(admission),
                _permit: permit,
            });
        }
        let queued = Queued {
            admission: Some(admission),
            wait: tokio::time::timeout(max_wait, Arc::clone(slots).acquire_owned()),
        };
        // A refused wait has given its place back (see `Queued`) before
        // the refusal is counted, logged and reported.
        queued.await.map_err(|why| self.reject(why))
    }

    /// Runs `future` in a slot (taken by [`acquire`](Self::acquire)) and
    /// returns the slot when it ends or is dropped.
    ///
    /// # Errors
    ///
    /// [`CallError::Bulkhead`] when refused; [`CallError::Inner`] with the
    /// callee's error.
    ///
    /// ```
    /// use fusebox_std::policy::{Bulkhead, Overflow};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let bulkhead = Bulkhead::new(2, Overflow::Reject)?;
    /// let value = bulkhead.call(async { Ok::<_, std::io::Error>(21 * 2) }).await?;
    /// assert_eq!(value, 42);
    /// assert_eq!(bulkhead.metrics().in_use, 0, "the slot is back");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn call<F, T, E>(&self, future: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let _slot = self.acquire().await.map_err(CallError::Bulkhead)?;
        future.await.map_err(CallError::Inner)
    }

    fn reject(&self, why: BulkheadRejection) -> BulkheadRejection {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = %Redacted(&why), "bulkhead rejected a call");
        if let Some(reporter) = &self.reporter {
            reporter.report();
        }
        why
    }
}

pin_project! {
    /// A queued call's wait for a slot (with its `max_wait`), holding its
    /// [`Admission`] until the wait ends: handed over with the slot, or
    /// given back at once when the wait times out or is dropped.
    struct Queued<F> {
        // Declared (so dropped) before `wait`: a call cancelled while it
        // queues leaves the count before `wait`'s drop takes it out of the
        // semaphore's queue, and, if a slot was handed to it meanwhile,
        // hands that slot on and wakes the next waiter. So that waiter,
        // woken from inside this drop, and any caller arriving after it,
        // find this call's place free (as with `BulkheadPermit`).
        admission: Option<Admission>,
        #[pin]
        wait: F,
    }
}

impl<F> Future for Queued<F>
where
    F: Future<Output = Result<Result<OwnedSemaphorePermit, AcquireError>, Elapsed>>,
{
    type Output = Result<BulkheadPermit, BulkheadRejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ended = ready!(this.wait.poll(cx));
        let admission = this.admission.take();
        Poll::Ready(match ended {
            Ok(Ok(permit)) => Ok(BulkheadPermit {
                _admission: admission,
                _permit: permit,
            }),
            // The semaphore is never closed; a closed one admits nobody.
            Ok(Err(_)) => Err(BulkheadRejection::Full),
            Err(_) => Err(BulkheadRejection::QueueTimeout),
        })
    }
}

/// A call counted in [`Shared::admitted`] (holding a slot or waiting for
/// one), uncounted when dropped: when its wait ends however it ends (before
/// a refusal is reported), or with its [`BulkheadPermit`].
struct Admission(Arc<Shared>);

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admission")
    }
}

impl Admission {
    /// Counts a call if fewer than `max_concurrent + max_queued` are.
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        let Overflow::Queue { max_queued, .. } = shared.overflow else {
            return None;
        };
        let max = shared.max_concurrent.saturating_add(max_queued);
        shared
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(shared)))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod cancel_tests;

#[cfg(test)]
mod model_tests;
