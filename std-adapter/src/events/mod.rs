//! Events: state changes, rejections, failures and recoveries, published
//! by the policies and delivered to any number of subscribers through a
//! bounded [`tokio::sync::broadcast`] channel.
//!
//! Breaker transitions are best reported with
//! [`Registry::transition`](crate::Registry::transition), which also logs
//! them to `tracing` and adds [`Event::Recovered`]; the other events are
//! published directly ([`Events::publish`]), e.g. a policy's rejections
//! and failures ([`Event::failure`] redacts the error).
//!
//! Every event names its primitive and says which [`Component`] it is: a
//! registry's breaker and a fleet breaker (feature `redis`) may have one
//! name, and the events of one are not the other's
//! ([`Component::Breaker`], [`Component::FleetBreaker`]).
//!
//! Publishing never blocks and never fails: with no subscriber the event is
//! only counted; a subscriber that falls more than the channel's capacity
//! behind loses the oldest events, and the number it lost is counted, on
//! its [`Subscription::missed`] and in the total [`Events::lagged`].
//!
//! # Examples
//!
//! ```
//! use fusebox::breaker::State;
//! use fusebox::Instant;
//! use fusebox_std::events::{Component, Event, Events};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let events = Events::new(16);
//! let mut sub = events.subscribe();
//! events.publish(Event::StateChange {
//!     name: "payments".into(),
//!     component: Component::Breaker,
//!     from: State::Closed,
//!     to: State::Open,
//!     at: Instant::from_secs(3),
//! });
//! match sub.recv().await {
//!     Some(Event::StateChange { name, to, .. }) => assert_eq!((&*name, to), ("payments", State::Open)),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use fusebox::breaker::State;
use fusebox::Instant;
use tokio::sync::broadcast;

use crate::redact::redact_cut;

mod reporter;
pub use reporter::RejectionReporter;

/// Which kind of primitive an event is about.
///
/// ```
/// use fusebox_std::events::Component;
///
/// assert_eq!(serde_json::to_string(&Component::KeyedLimiter)?, "\"keyed_limiter\"");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Component {
    /// A circuit breaker: a [`Registry`](crate::Registry)'s, or one
    /// built elsewhere reporting to it.
    Breaker,
    /// A fleet breaker (feature `redis`: `backend::FleetBreaker` built
    /// with [`Registry::breaker_observer`](crate::Registry::breaker_observer)).
    /// It may have the name of a registry breaker, which is another
    /// breaker; its events' times are on its own clock, not the
    /// registry's.
    FleetBreaker,
    /// A token bucket.
    Limiter,
    /// A keyed limiter.
    KeyedLimiter,
    /// A bulkhead (the policies' concurrency limit).
    Bulkhead,
    /// Anything else (a custom policy).
    Other,
}

impl Component {
    /// Its name as it serialises (`"fleet_breaker"`).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Breaker => "breaker",
            Self::FleetBreaker => "fleet_breaker",
            Self::Limiter => "limiter",
            Self::KeyedLimiter => "keyed_limiter",
            Self::Bulkhead => "bulkhead",
            Self::Other => "other",
        }
    }
}

/// Something that happened to a named primitive.
///
/// Serialises with a `"kind"` tag (`state_change`, `rejected`, `failure`,
/// `recovered`), the primitive's `name` and `component`, `at` in
/// microseconds of the primitive's clock (the registry's for its own
/// primitives), and states as in the core (`"Closed"`, `"Open"`, …).
///
/// Every variant carries its [`Component`] (read it with
/// [`component`](Self::component)): names are unique per kind only, so a
/// consumer keys what it keeps by component and name.
///
/// ```
/// use fusebox::Instant;
/// use fusebox_std::events::{Component, Event};
///
/// let e = Event::Rejected { name: "api".into(), component: Component::Limiter, at: Instant::from_micros(9) };
/// assert_eq!(
///     serde_json::to_value(&e)?,
///     serde_json::json!({"kind": "rejected", "name": "api", "component": "limiter", "at": 9})
/// );
///
/// let e = Event::Recovered { name: "api".into(), component: Component::FleetBreaker, at: Instant::ZERO };
/// assert_eq!(
///     serde_json::to_value(&e)?,
///     serde_json::json!({"kind": "recovered", "name": "api", "component": "fleet_breaker", "at": 0})
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A breaker changed state.
    StateChange {
        /// The breaker.
        name: Arc<str>,
        /// Its kind: [`Component::Breaker`] or [`Component::FleetBreaker`].
        component: Component,
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// When.
        at: Instant,
    },
    /// A call was refused (breaker open, limiter empty, bulkhead full).
    Rejected {
        /// The primitive that refused.
        name: Arc<str>,
        /// Its kind.
        component: Component,
        /// When.
        at: Instant,
    },
    /// A call failed (as classified by the policy).
    Failure {
        /// The primitive that saw it.
        name: Arc<str>,
        /// Its kind.
        component: Component,
        /// The error, already redacted: build it with [`Event::failure`].
        error: String,
        /// When.
        at: Instant,
    },
    /// A breaker closed again after being open.
    Recovered {
        /// The breaker.
        name: Arc<str>,
        /// Its kind: [`Component::Breaker`] or [`Component::FleetBreaker`].
        component: Component,
        /// When.
        at: Instant,
    },
}

impl Event {
    /// A [`Event::Failure`] of a [`Component::Breaker`] whose message is
    /// `error` displayed, passed through [`redact`](crate::redact::redact)
    /// (so no credential reaches a subscriber) and cut to
    /// [`MAX_ERROR_CHARS`](Self::MAX_ERROR_CHARS).
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event};
    ///
    /// let e = Event::failure("cache", &"redis://u:pw@h refused", Instant::ZERO);
    /// assert!(matches!(e, Event::Failure { ref error, .. } if error == "redis://u:***@h refused"));
    /// assert_eq!(e.component(), Component::Breaker);
    /// ```
    pub fn failure(name: &str, error: &dyn fmt::Display, at: Instant) -> Self {
        Self::failure_of(name.into(), Component::Breaker, error, at)
    }

    /// [`failure`](Self::failure) of `name` (already shared), a `component`.
    pub(crate) fn failure_of(
        name: Arc<str>,
        component: Component,
        error: &dyn fmt::Display,
        at: Instant,
    ) -> Self {
        let error = redact_cut(&error.to_string(), Self::MAX_ERROR_CHARS);
        Self::Failure {
            name,
            component,
            error,
            at,
        }
    }

    /// The longest error message an [`Event::failure`] keeps, in
    /// characters; a longer one is cut (and ends with `…`), so the channel's
    /// memory stays bounded.
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::Event;
    ///
    /// let long = "x".repeat(10_000);
    /// match Event::failure("db", &long, Instant::ZERO) {
    ///     Event::Failure { error, .. } => assert_eq!(error.chars().count(), Event::MAX_ERROR_CHARS + 1),
    ///     _ => unreachable!(),
    /// }
    /// ```
    pub const MAX_ERROR_CHARS: usize = 512;

    /// The name of the primitive the event is about.
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event};
    ///
    /// let e = Event::Recovered { name: "db".into(), component: Component::Breaker, at: Instant::ZERO };
    /// assert_eq!(e.name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Self::StateChange { name, .. }
            | Self::Rejected { name, .. }
            | Self::Failure { name, .. }
            | Self::Recovered { name, .. } => name,
        }
    }

    /// The kind of primitive the event is about: with [`name`](Self::name),
    /// what tells a breaker from a fleet breaker of the same name.
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event};
    ///
    /// let e = Event::Recovered { name: "db".into(), component: Component::FleetBreaker, at: Instant::ZERO };
    /// assert_eq!(e.component(), Component::FleetBreaker);
    /// ```
    pub fn component(&self) -> Component {
        match self {
            Self::StateChange { component, .. }
            | Self::Rejected { component, .. }
            | Self::Failure { component, .. }
            | Self::Recovered { component, .. } => *component,
        }
    }
}

/// The publishing side: never blocks; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use fusebox::Instant;
/// use fusebox_std::events::{Component, Event, Events};
///
/// let events = Events::new(8);
/// let mut sub = events.subscribe();
/// events.publish(Event::Rejected { name: "api".into(), component: Component::Limiter, at: Instant::ZERO });
/// assert_eq!(sub.try_recv().unwrap().name(), "api");
/// ```
///
/// A clone is another handle on the same channel and counters (what a
/// [`RejectionReporter`] keeps).
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    capacity: usize,
    published: Arc<AtomicU64>,
    lagged: Arc<AtomicU64>,
    /// Live subscriptions, the crate's own included: read by `publish`
    /// without the channel's lock (tokio's `send` and `receiver_count`
    /// take it even with no receiver).
    receivers: Arc<AtomicUsize>,
    /// Live subscriptions of this crate's own readers (the dashboard's),
    /// counted in neither [`subscribers`](Self::subscribers) nor
    /// [`lagged`](Self::lagged).
    internal: Arc<AtomicUsize>,
}

impl Events {
    /// The most events kept for slow subscribers: a larger capacity is
    /// this one (the channel allocates every slot at once, so a capacity
    /// read from a configuration must not be able to take the process's
    /// memory, nor overflow the power of two it is rounded up to).
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// assert_eq!(Events::MAX_CAPACITY, 1 << 20);
    /// assert_eq!(Events::new(Events::MAX_CAPACITY + 1).capacity(), Events::MAX_CAPACITY);
    /// ```
    pub const MAX_CAPACITY: usize = 1 << 20;

    /// A channel keeping the last `capacity` events for slow subscribers
    /// (rounded up to a power of two, at least 1, at most
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY)).
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// let events = Events::new(0); // rounded up to 1
    /// assert_eq!(events.capacity(), 1);
    /// assert_eq!(Events::new(usize::MAX).capacity(), Events::MAX_CAPACITY);
    /// ```
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Self::MAX_CAPACITY).next_power_of_two();
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            capacity,
            published: Arc::new(AtomicU64::new(0)),
            lagged: Arc::new(AtomicU64::new(0)),
            receivers: Arc::new(AtomicUsize::new(0)),
            internal: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many events a subscriber may fall behind before losing some:
    /// the requested capacity rounded up to a power of two, as tokio's
    /// broadcast channel does.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// assert_eq!(Events::new(100).capacity(), 128);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sends `event` to every subscriber; returns how many there were.
    /// Never blocks, never fails. With no subscription alive it only
    /// counts the event, without taking the channel's lock (one atomic
    /// load): a subscriber made later does not receive it, as it receives
    /// nothing published before it subscribed.
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event, Events};
    ///
    /// let events = Events::new(4);
    /// assert_eq!(events.publish(Event::Recovered { name: "db".into(), component: Component::Breaker, at: Instant::ZERO }), 0);
    /// let _sub = events.subscribe();
    /// assert_eq!(events.publish(Event::Recovered { name: "db".into(), component: Component::Breaker, at: Instant::ZERO }), 1);
    /// assert_eq!(events.published(), 2);
    /// ```
    pub fn publish(&self, event: Event) -> usize {
        self.published.fetch_add(1, Ordering::Relaxed);
        // A subscription counts itself before it subscribes and uncounts
        // itself once its receiver is dropped, so a zero here means no
        // receiver could take the event. A `subscribe` that happened
        // before this call is seen (the load reads its increment or a
        // later value); one racing with it is after it.
        if self.receivers.load(Ordering::Acquire) == 0 {
            return 0;
        }
        // The crate's own subscriptions are no subscribers (as in
        // `subscribers`).
        self.tx
            .send(event)
            .unwrap_or(0)
            .saturating_sub(self.internal.load(Ordering::Relaxed))
    }

    /// A new subscriber, receiving events published from now on.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// let events = Events::new(4);
    /// let sub = events.subscribe();
    /// assert_eq!((events.subscribers(), sub.missed()), (1, 0));
    /// ```
    pub fn subscribe(&self) -> Subscription {
        let alive = Alive::count(&self.receivers);
        Subscription {
            rx: self.tx.subscribe(),
            missed: 0,
            lagged: Some(Arc::clone(&self.lagged)),
            internal: None,
            _alive: alive,
        }
    }

    /// A subscription of this crate's own, read only when someone looks
    /// (the HTTP dashboard drains its events on each read of its data):
    /// what it loses between two looks is its own
    /// [`missed`](Subscription::missed), not the subscribers' lag that
    /// [`lagged`](Self::lagged) reports (where it was a count of how long
    /// nobody looked), and it is not among the
    /// [`subscribers`](Self::subscribers).
    #[cfg(feature = "http")]
    pub(crate) fn subscribe_internal(&self) -> Subscription {
        self.internal.fetch_add(1, Ordering::Relaxed);
        let alive = Alive::count(&self.receivers);
        Subscription {
            rx: self.tx.subscribe(),
            missed: 0,
            lagged: None,
            internal: Some(Arc::clone(&self.internal)),
            _alive: alive,
        }
    }

    /// Events published so far (delivered or not).
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// assert_eq!(Events::new(1).published(), 0);
    /// ```
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events lost by slow subscribers, all subscribers together (counted
    /// when a subscriber finds out, on its next receive).
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event, Events};
    ///
    /// let events = Events::new(1);
    /// let mut sub = events.subscribe();
    /// for _ in 0..3 {
    ///     events.publish(Event::Recovered { name: "db".into(), component: Component::Breaker, at: Instant::ZERO });
    /// }
    /// assert!(sub.try_recv().is_some()); // the newest; two were lost
    /// assert_eq!((sub.missed(), events.lagged()), (2, 2));
    /// ```
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Live subscribers.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// let events = Events::new(1);
    /// drop(events.subscribe());
    /// assert_eq!(events.subscribers(), 0);
    /// ```
    pub fn subscribers(&self) -> usize {
        self.receivers
            .load(Ordering::Acquire)
            .saturating_sub(self.internal.load(Ordering::Relaxed))
    }
}

impl Default for Events {
    /// [`Events::new`] with a capacity of 1024.
    fn default() -> Self {
        Self::new(1024)
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("published", &self.published())
            .field("lagged", &self.lagged())
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

/// The receiving side of [`Events`]: skips what it lost, counting it.
///
/// # Examples
///
/// ```
/// use fusebox::Instant;
/// use fusebox_std::events::{Component, Event, Events};
///
/// let events = Events::new(2);
/// let mut sub = events.subscribe();
/// for at in 0..5 {
///     events.publish(Event::Recovered { name: "db".into(), component: Component::Breaker, at: Instant::from_micros(at) });
/// }
/// let kept: Vec<Event> = std::iter::from_fn(|| sub.try_recv()).collect();
/// assert_eq!(kept.len(), 2); // the newest two
/// assert_eq!(sub.missed(), 3);
/// ```
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    missed: u64,
    /// Where its losses are reported (`None`: its own only).
    lagged: Option<Arc<AtomicU64>>,
    /// The count it is in while it lives, if it is an internal one.
    internal: Option<Arc<AtomicUsize>>,
    /// Its place in [`Events`]'s count of live subscriptions: declared
    /// after `rx`, so dropped (uncounted) after the receiver is.
    _alive: Alive,
}

/// One live subscription in [`Events`]'s count, from before its receiver
/// exists until after it is dropped.
#[derive(Debug)]
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn count(receivers: &Arc<AtomicUsize>) -> Self {
        receivers.fetch_add(1, Ordering::Release);
        Self(Arc::clone(receivers))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(internal) = &self.internal {
            internal.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Subscription {
    /// The next event, waiting for one; `None` once the [`Events`] is
    /// dropped and everything sent was received.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropping the future loses no event.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let events = Events::new(4);
    /// let mut sub = events.subscribe();
    /// drop(events);
    /// assert_eq!(sub.recv().await, None);
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.count_lost(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without blocking.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// let events = Events::new(4);
    /// let mut sub = events.subscribe();
    /// assert_eq!(sub.try_recv(), None);
    /// ```
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.count_lost(n),
                Err(_) => return None,
            }
        }
    }

    /// Events this subscriber lost by falling behind.
    ///
    /// ```
    /// use fusebox_std::events::Events;
    ///
    /// assert_eq!(Events::new(4).subscribe().missed(), 0);
    /// ```
    pub fn missed(&self) -> u64 {
        self.missed
    }

    fn count_lost(&mut self, n: u64) {
        self.missed += n;
        if let Some(lagged) = &self.lagged {
            lagged.fetch_add(n, Ordering::Relaxed);
        }
        tracing::debug!(lost = n, total = self.missed, "event subscriber lagged");
    }
}

#[cfg(test)]
mod tests {
    use super::{Component, Event, Events};
    use fusebox::Instant;

    fn event() -> Event {
        Event::Recovered {
            name: "db".into(),
            component: Component::Breaker,
            at: Instant::ZERO,
        }
    }

    /// As `publish`'s docs say: with no subscriber an event is counted and
    /// delivered to nobody, not to one subscribing later; once subscribed,
    /// every event reaches it; all gone, none is delivered again. The same
    /// on two threads: a subscription made before a publish (ordered by a
    /// barrier) always receives it. Checks the lock-free no-subscriber path
    /// (a regression check: the lock it skips was not observable).
    #[test]
    fn publishing_before_and_after_subscribing() {
        let events = Events::new(4);
        assert_eq!(events.publish(event()), 0);
        let mut sub = events.subscribe();
        assert_eq!(sub.try_recv(), None);
        assert_eq!(events.publish(event()), 1);
        assert_eq!(sub.try_recv(), Some(event()));
        let second = events.subscribe();
        assert_eq!(events.publish(event()), 2);
        drop((sub, second));
        assert_eq!((events.publish(event()), events.subscribers()), (0, 0));
        assert_eq!((events.published(), events.lagged()), (4, 0));

        for _ in 0..2_000 {
            let events = Events::new(1);
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut sub = events.subscribe();
                    barrier.wait();
                    barrier.wait(); // published
                    sub.try_recv()
                });
                barrier.wait();
                assert_eq!(events.publish(event()), 1);
                barrier.wait();
                assert_eq!(reader.join().unwrap(), Some(event()));
            });
        }
    }

    /// Sound, kept as a test (hostile review of the live-subscription
    /// count): a subscription moved to another thread stays counted and
    /// receives; one leaked with `mem::forget` stays counted for good (its
    /// receiver leaks with it, as tokio's own count did), so publishing
    /// never skips a receiver alive; one outliving every `Events` handle
    /// leaves the count right when dropped; an internal one is no
    /// subscriber, yet receives (the lock-free skip sees it).
    #[test]
    fn the_live_count_follows_moves_leaks_and_internal_subscriptions() {
        let events = Events::new(4);
        let mut moved = events.subscribe();
        let publisher = events.clone();
        let got = std::thread::spawn(move || {
            assert_eq!(publisher.publish(event()), 1);
            moved.try_recv()
        })
        .join()
        .unwrap();
        assert_eq!((got, events.subscribers()), (Some(event()), 0));
        std::mem::forget(events.subscribe());
        assert_eq!((events.subscribers(), events.publish(event())), (1, 1));

        let events = Events::new(4);
        let late = events.subscribe();
        let handle = events.clone();
        drop(events);
        assert_eq!(handle.subscribers(), 1);
        drop(late);
        assert_eq!((handle.subscribers(), handle.publish(event())), (0, 0));
        #[cfg(feature = "http")]
        {
            let mut internal = handle.subscribe_internal();
            assert_eq!((handle.subscribers(), handle.publish(event())), (0, 0));
            assert_eq!(internal.try_recv(), Some(event()));
            drop(internal);
            assert_eq!(handle.subscribers(), 0);
        }
    }

    /// The names the dashboard keys rejections by are the serialised ones.
    #[test]
    fn component_names_are_their_json() {
        for c in [
            Component::Breaker,
            Component::FleetBreaker,
            Component::Limiter,
            Component::KeyedLimiter,
            Component::Bulkhead,
            Component::Other,
        ] {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::from(c.as_str())
            );
        }
    }
}
