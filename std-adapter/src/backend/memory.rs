//! [`MemoryBackend`]: the rules of each (limiter, key) as core
//! [`TokenBucket`]s in one process, a bounded table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use fusebox::bucket::TokenBucket;
use fusebox::Clock;

use super::{check_capacity, Backend, BackendError, Decision, Rules, Source};
use crate::TokioClock;

/// One (limiter, key): a core bucket per rule.
struct Group {
    rules: Rules,
    buckets: Box<[TokenBucket]>,
}

impl Group {
    fn new(rules: &Rules) -> Self {
        Self {
            rules: rules.clone(),
            buckets: rules.iter().map(|r| TokenBucket::new(r.quota())).collect(),
        }
    }

    fn idle(&self, now: fusebox::Instant) -> bool {
        self.buckets
            .iter()
            .all(|b| b.available(now) >= b.quota().burst())
    }
}

/// Rate-limit state in this process: the default backend, and the one the
/// `Local` degradation policy falls back on.
///
/// Each (limiter, key) holds one core [`TokenBucket`] per rule. A decision
/// over several rules is made under one lock: every rule is read at the
/// same `now` (the [`TokioClock`] read right before), and the tokens are
/// taken only if every bucket has them, so a refused request takes none.
/// Quotas changed between calls are applied with
/// [`TokenBucket::set_quota`] (the tokens available carry over).
///
/// At most `max_keys` (limiter, key) pairs are kept; a new one evicts the
/// idle ones (all buckets full: forgetting them changes nothing), and when
/// none is idle the request fails with [`BackendError::TableFull`]: never
/// a silent unlimited pass.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Backend, MemoryBackend, Rule, Rules};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = MemoryBackend::new(10_000);
/// let rules = Rules::new([
///     Rule::new("per_second", Quota::per_second(10)?)?,
///     Rule::new("per_minute", Quota::per_minute(12)?)?,
/// ])?;
/// for _ in 0..10 {
///     assert!(backend.decide("api", "k", &rules, 1).await?.allowed);
/// }
/// let d = backend.decide("api", "k", &rules, 2).await?; // 10/s has none left
/// assert!(!d.allowed);
/// assert_eq!((d.retry_after, d.rule), (std::time::Duration::from_millis(200), 0));
/// tokio::time::advance(std::time::Duration::from_secs(1)).await;
/// assert!(backend.decide("api", "k", &rules, 2).await?.allowed);
/// assert!(!backend.decide("api", "k", &rules, 1).await?.allowed, "12/min is spent");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct MemoryBackend {
    clock: TokioClock,
    max_keys: usize,
    groups: Mutex<HashMap<GroupId, Group>>,
}

/// (limiter, key).
type GroupId = (Box<str>, Box<str>);

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// A backend keeping at most `max_keys` (limiter, key) pairs, on a new
    /// [`TokioClock`] (call inside a tokio runtime).
    pub fn new(max_keys: usize) -> Self {
        Self::with_clock(max_keys, TokioClock::new())
    }

    /// As [`new`](Self::new), reading `clock`.
    ///
    /// ```
    /// use fusebox_std::{backend::MemoryBackend, TokioClock};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let backend = MemoryBackend::with_clock(100, TokioClock::new());
    /// assert_eq!(backend.len(), 0);
    /// # });
    /// ```
    pub fn with_clock(max_keys: usize, clock: TokioClock) -> Self {
        Self {
            clock,
            max_keys: max_keys.max(1),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// How many (limiter, key) pairs are kept.
    pub fn len(&self) -> usize {
        self.groups.lock().map_or(0, |g| g.len())
    }

    /// Whether no pair is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decision, made now, without awaiting.
    pub(crate) fn decide_now(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        n: u32,
    ) -> Result<Decision, BackendError> {
        check_capacity(rules, n)?;
        // A poisoned lock only means another decision panicked mid-way;
        // the buckets themselves are always consistent.
        let mut groups = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.clock.now();
        let id = (Box::<str>::from(limiter), Box::<str>::from(key));
        if !groups.contains_key(&id) && groups.len() >= self.max_keys {
            groups.retain(|_, g| !g.idle(now));
            if groups.len() >= self.max_keys {
                return Err(BackendError::TableFull);
            }
        }
        let group = groups.entry(id).or_insert_with(|| Group::new(rules));
        if group.rules != *rules {
            let same_names = group.rules.len() == rules.len()
                && group
                    .rules
                    .iter()
                    .zip(rules.iter())
                    .all(|(a, b)| a.name() == b.name());
            if same_names {
                for (bucket, rule) in group.buckets.iter().zip(rules.iter()) {
                    bucket.set_quota(rule.quota(), now);
                }
                group.rules = rules.clone();
            } else {
                *group = Group::new(rules);
            }
        }
        Ok(decide(&group.buckets, n, now))
    }
}

/// All or none, under the caller's lock.
fn decide(buckets: &[TokenBucket], n: u32, now: fusebox::Instant) -> Decision {
    let available: Vec<u32> = buckets.iter().map(|b| b.available(now)).collect();
    let allowed = available.iter().all(|&a| a >= n);
    let mut decision = Decision {
        allowed,
        retry_after: Duration::ZERO,
        remaining: u64::MAX,
        reset: Duration::ZERO,
        rule: 0,
        source: Source::Local,
        corrupt: 0,
    };
    for (i, (bucket, &avail)) in buckets.iter().zip(&available).enumerate() {
        if allowed {
            // Cannot fail: every access is under the lock and `avail >= n`.
            let _ = bucket.try_acquire_n(n, now);
            let left = u64::from(avail - n);
            if left < decision.remaining {
                decision.remaining = left;
                decision.rule = i;
                decision.reset = bucket.snapshot(now).until_full.into();
            }
        } else {
            decision.remaining = decision.remaining.min(u64::from(avail));
            if avail < n
                && let Err(fusebox::bucket::AcquireError::RateLimited(limited)) =
                    bucket.try_acquire_n(n, now)
            {
                let wait: Duration = limited.retry_after.into();
                if wait > decision.retry_after {
                    decision.retry_after = wait;
                    decision.rule = i;
                    decision.reset = bucket.snapshot(now).until_full.into();
                }
            }
        }
    }
    decision
}

impl Backend for MemoryBackend {
    async fn decide(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        n: u32,
    ) -> Result<Decision, BackendError> {
        self.decide_now(limiter, key, rules, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Rule;
    use fusebox::bucket::Quota;

    fn rules(per_second: u32) -> Rules {
        Rules::single("per_second", Quota::per_second(per_second).unwrap()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_idle_keys_and_refuses_when_none_is_idle() {
        let backend = MemoryBackend::new(2);
        let r = rules(1);
        assert!(backend.decide_now("l", "a", &r, 1).unwrap().allowed);
        assert!(backend.decide_now("l", "b", &r, 1).unwrap().allowed);
        // Both drained: no room for a third key, and no silent pass.
        assert_eq!(
            backend.decide_now("l", "c", &r, 1),
            Err(BackendError::TableFull)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // Both full again: idle, evicted for the newcomer.
        assert!(backend.decide_now("l", "c", &r, 1).unwrap().allowed);
        assert_eq!(backend.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_quota_keeps_the_tokens_available() {
        let backend = MemoryBackend::new(8);
        assert!(backend.decide_now("l", "k", &rules(10), 8).unwrap().allowed);
        // Raised to 100/s: the 2 tokens left carry over, no free burst.
        let d = backend.decide_now("l", "k", &rules(100), 3).unwrap();
        assert_eq!(
            (d.allowed, d.retry_after),
            (false, Duration::from_millis(10))
        );
        assert!(
            backend
                .decide_now("l", "k", &rules(100), 2)
                .unwrap()
                .allowed
        );
        // Other rule names: a new group.
        let other = Rules::single("per_minute", Quota::per_minute(5).unwrap()).unwrap();
        assert!(backend.decide_now("l", "k", &other, 5).unwrap().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_multi_rule_request_takes_nothing() {
        let backend = MemoryBackend::new(8);
        let both = Rules::new([
            Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap(),
            Rule::new("per_minute", Quota::per_minute(3).unwrap()).unwrap(),
        ])
        .unwrap();
        assert!(backend.decide_now("l", "k", &both, 3).unwrap().allowed);
        let d = backend.decide_now("l", "k", &both, 1).unwrap();
        assert_eq!(
            (d.allowed, d.rule, d.retry_after),
            (false, 1, Duration::from_secs(20))
        );
        let per_second_left = {
            let groups = backend.groups.lock().unwrap();
            let group = &groups[&(Box::<str>::from("l"), Box::<str>::from("k"))];
            group.buckets[0].available(backend.clock.now())
        };
        assert_eq!(per_second_left, 7, "the refusal took no per_second token");
        tokio::time::advance(Duration::from_secs(20)).await;
        let d = backend.decide_now("l", "k", &both, 1).unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 0));
        assert_eq!(
            backend.decide_now("l", "k", &both, 4),
            Err(BackendError::InsufficientCapacity {
                requested: 4,
                burst: 3
            })
        );
    }
}
