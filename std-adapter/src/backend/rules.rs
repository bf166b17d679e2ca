//! [`Rule`] and [`Rules`]: the named quotas one request is checked
//! against, all at once, and the [`Decision`] a backend returns.

use std::fmt;
use std::time::Duration;

use fusebox::bucket::Quota;

use super::BackendError;
use crate::registry::validate_name;

/// The largest `burst · T` in scaled units a rule may have (2^52): the
/// Redis script computes in Lua numbers (doubles), exact below 2^53.
///
/// ```
/// assert_eq!(fusebox_std::backend::MAX_CAPACITY, 4_503_599_627_370_496);
/// ```
pub const MAX_CAPACITY: u64 = 1 << 52;
/// The longest time a rule's bucket takes to refill from empty, `burst ·
/// T`: 2^47 µs (4.46 years). Stored states further ahead are corrupt.
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Rule, MAX_REFILL};
///
/// assert_eq!(MAX_REFILL.as_secs() / 86_400, 1_628); // about 4.46 years
/// // 1 token a day with a burst of 1 629 takes longer than that to refill.
/// let daily = Quota::new(1, fusebox::Duration::from_secs(86_400))?;
/// assert!(Rule::new("per_day", daily.with_burst(1_628)?).is_ok());
/// assert!(Rule::new("per_day", daily.with_burst(1_629)?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const MAX_REFILL: std::time::Duration = std::time::Duration::from_micros(1 << 47);
/// The finest time scale (as the core's kernel): 1/65 536 µs.
const MAX_SCALE: u64 = 1 << 16;

/// One named quota, e.g. `per_second` = 10/s.
///
/// The name is part of the rule's storage key: a [registry
/// name](crate::registry::validate_name) (ASCII letters, digits, single
/// underscores). The quota's GCRA parameters are derived exactly as the
/// core's [`TokenBucket`](fusebox::bucket::TokenBucket) derives them
/// (`scale = tokens / gcd(tokens, period µs)`, emission interval
/// `period / gcd` scaled units, clamped to a scale of 65 536 with the
/// interval rounded up), so both backends decide alike.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::Rule;
///
/// let rule = Rule::new("per_second", Quota::per_second(10)?)?;
/// assert_eq!(rule.name(), "per_second");
/// assert!(Rule::new("per:second", Quota::per_second(10)?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Rule {
    name: Box<str>,
    quota: Quota,
    /// Scaled units per µs.
    pub(crate) scale: u64,
    /// Emission interval in scaled units.
    pub(crate) interval: u64,
    /// `<scale>:<interval>:<burst>`, the rule as the Redis script takes it
    /// (and stores it), formatted once.
    pub(crate) spec: Box<str>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rule {
    /// A rule `name` of `quota`.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidRule`] for a bad name, or a quota whose
    /// `burst · T` exceeds [`MAX_CAPACITY`] scaled units or [`MAX_REFILL`]
    /// (e.g. a burst of more than 1 628 at one token per day).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, Rule};
    ///
    /// assert!(Rule::new("per_minute", Quota::per_minute(60)?).is_ok());
    /// let bad = Rule::new("per minute", Quota::per_minute(60)?);
    /// assert!(matches!(bad, Err(BackendError::InvalidRule(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: &str, quota: Quota) -> Result<Self, BackendError> {
        if validate_name(name).is_err() {
            return Err(BackendError::InvalidRule(
                "a rule name must be a registry name",
            ));
        }
        let tokens = u64::from(quota.tokens());
        let period = quota.period().as_micros();
        let g = gcd(tokens, period);
        let (scale, interval) = if tokens / g <= MAX_SCALE {
            (tokens / g, period / g)
        } else {
            let t = (u128::from(period) * u128::from(MAX_SCALE)).div_ceil(u128::from(tokens));
            (MAX_SCALE, u64::try_from(t).unwrap_or(u64::MAX))
        };
        let max_refill = MAX_REFILL.as_micros() as u64;
        match interval.checked_mul(u64::from(quota.burst())) {
            Some(capacity) if capacity <= MAX_CAPACITY && capacity.div_ceil(scale) <= max_refill => Ok(Self {
                name: name.into(),
                quota,
                scale,
                interval,
                spec: format!("{scale}:{interval}:{}", quota.burst()).into(),
            }),
            _ => Err(BackendError::InvalidRule(
                "burst × period / tokens is too long for the Redis script (2^52 scaled units, 4.46 years)",
            )),
        }
    }

    /// The rule's name.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rule;
    ///
    /// assert_eq!(Rule::new("per_second", Quota::per_second(10)?)?.name(), "per_second");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's quota.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rule;
    ///
    /// let quota = Quota::per_second(10)?;
    /// assert_eq!(Rule::new("per_second", quota)?.quota(), quota);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// The rules one request is checked against, all at once: admitted only if
/// every rule admits, and a refused request takes no token from any.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Rule, Rules};
///
/// let rules = Rules::new([
///     Rule::new("per_second", Quota::per_second(10)?)?,
///     Rule::new("per_minute", Quota::per_minute(500)?)?,
///     Rule::new("per_day", Quota::new(10_000, fusebox::Duration::from_secs(86_400))?)?,
/// ])?;
/// assert_eq!(rules.len(), 3);
/// assert_eq!(rules.min_burst(), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: Box<[Rule]>,
}

/// At most this many rules per request.
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Rule, Rules, MAX_RULES};
///
/// let rule = |i: usize| Rule::new(&format!("r{i}"), Quota::per_second(10).unwrap()).unwrap();
/// assert!(Rules::new((0..MAX_RULES).map(rule)).is_ok());
/// assert!(Rules::new((0..=MAX_RULES).map(rule)).is_err());
/// ```
pub const MAX_RULES: usize = 16;

impl Rules {
    /// A set of rules with distinct names.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidRule`] for no rule, more than [`MAX_RULES`],
    /// or a name given twice.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Rule, Rules};
    ///
    /// let a = Rule::new("per_second", Quota::per_second(10)?)?;
    /// let b = Rule::new("per_hour", Quota::per_hour(1_000)?)?;
    /// assert_eq!(Rules::new([a.clone(), b])?.len(), 2);
    /// assert!(Rules::new([a.clone(), a]).is_err()); // a name given twice
    /// assert!(Rules::new(Vec::<Rule>::new()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Result<Self, BackendError> {
        let rules: Box<[Rule]> = rules.into_iter().collect();
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(BackendError::InvalidRule("between 1 and 16 rules"));
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err(BackendError::InvalidRule("rule names must be distinct"));
            }
        }
        Ok(Self { rules })
    }

    /// One rule.
    ///
    /// # Errors
    ///
    /// As [`Rule::new`].
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rules;
    ///
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// assert_eq!(rules.iter().next().unwrap().quota().tokens(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn single(name: &str, quota: Quota) -> Result<Self, BackendError> {
        Self::new([Rule::new(name, quota)?])
    }

    /// The rules, in order.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Rule, Rules};
    ///
    /// let rules = Rules::new([
    ///     Rule::new("per_second", Quota::per_second(10)?)?,
    ///     Rule::new("per_minute", Quota::per_minute(500)?)?,
    /// ])?;
    /// let names: Vec<&str> = rules.iter().map(Rule::name).collect();
    /// assert_eq!(names, ["per_second", "per_minute"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// How many rules.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rules;
    ///
    /// assert_eq!(Rules::single("per_second", Quota::per_second(10)?)?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Never: a set has at least one rule.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rules;
    ///
    /// assert!(!Rules::single("per_second", Quota::per_second(10)?)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The smallest burst: the most tokens one request may ask for.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Rule, Rules};
    ///
    /// let rules = Rules::new([
    ///     Rule::new("per_second", Quota::per_second(10)?.with_burst(20)?)?,
    ///     Rule::new("per_minute", Quota::per_minute(500)?)?,
    /// ])?;
    /// assert_eq!(rules.min_burst(), 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn min_burst(&self) -> u32 {
        self.rules
            .iter()
            .map(|r| r.quota.burst())
            .min()
            .unwrap_or(0)
    }

    /// These rules with every quota divided among `instances`: the same
    /// tokens over `instances` times the period (so the rates add up
    /// exactly), bursts divided rounding down (at least one).
    ///
    /// # Errors
    ///
    /// As [`Rule::new`] (a period too long to represent).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::Rules;
    ///
    /// let share = Rules::single("per_second", Quota::per_second(100)?)?.divided(4)?;
    /// let q = share.iter().next().unwrap().quota();
    /// assert_eq!((q.tokens(), q.period().as_micros(), q.burst()), (100, 4_000_000, 25));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn divided(&self, instances: u32) -> Result<Self, BackendError> {
        let k = instances.max(1);
        let rules = self.rules.iter().map(|r| {
            let q = r.quota;
            let period =
                fusebox::Duration::from_micros(q.period().as_micros().saturating_mul(u64::from(k)));
            let quota = Quota::new(q.tokens(), period)
                .and_then(|d| d.with_burst((q.burst() / k).max(1)))
                .map_err(|_| BackendError::InvalidRule("a divided quota is out of range"))?;
            Rule::new(&r.name, quota)
        });
        Self::new(rules.collect::<Result<Vec<_>, _>>()?)
    }
}

/// Where a [`Decision`] was made.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Backend, MemoryBackend, Rules, Source};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
/// let decision = MemoryBackend::new(100).decide("api", "user-1", &rules, 1).await?;
/// assert_eq!(decision.source, Source::Local);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The shared state in Redis (the Lua script).
    Redis,
    /// An in-process core bucket: the memory backend, or the `Local`
    /// degradation policy.
    Local,
    /// The `FailOpen` policy admitted without a decision (Redis is down).
    FailOpen,
    /// The `FailClosed` policy refused without a decision (Redis is down).
    FailClosed,
    /// Spent from tokens leased from Redis earlier
    /// ([`LeasedLimiter`](super::LeasedLimiter)).
    Lease,
}

/// One decision over a request's rules.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::backend::{Decision, Source};
///
/// let d = Decision { allowed: false, retry_after: Duration::from_millis(100), remaining: 0,
///     reset: Duration::from_secs(1), rule: 0, source: Source::Redis, corrupt: 0 };
/// assert!(!d.allowed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the tokens were taken (from every rule).
    pub allowed: bool,
    /// When refused: the wait after which the same request is admitted if
    /// nobody else takes tokens first (the longest over the refusing
    /// rules, rounded up to a µs). Zero when allowed.
    pub retry_after: Duration,
    /// Whole tokens left after this decision, in the rule with the fewest.
    pub remaining: u64,
    /// Time until the binding rule's bucket is full again.
    pub reset: Duration,
    /// Index of the binding rule: the one with the fewest tokens left when
    /// allowed, the one with the longest wait when refused.
    pub rule: usize,
    /// Where it was decided.
    pub source: Source,
    /// How many stored values were corrupt (wrong type, garbage, absurd
    /// numbers) and were replaced by a drained bucket (Redis only).
    pub corrupt: u32,
}
