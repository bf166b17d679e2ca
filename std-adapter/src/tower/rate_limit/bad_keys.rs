//! [`BadKeys`]: the requests a keyed layer found no usable key in, by
//! reason; counted whether they were refused or charged to the default
//! key.

use std::sync::atomic::{AtomicU64, Ordering};

use super::KeyError;

/// The requests a keyed [`RateLimitLayer`](super::RateLimitLayer) found
/// no usable key in, by [`KeyError`]: each one refused (`400`) or charged
/// to the default key, as its [`BadKey`](super::BadKey) says. Every clone
/// of the layer's service counts into one set; the layers a
/// [`Registry`](crate::Registry) builds for one name
/// ([`RateLimitLayer::keyed_from_registry`](super::RateLimitLayer::keyed_from_registry))
/// count into the registry's, which its health report
/// ([`HealthReport::bad_keys`](crate::health::HealthReport::bad_keys)) and
/// Prometheus text (`fusebox_keyed_limiter_bad_keys_total{name,reason}`)
/// show. A client sending no key, or a hostile one, shows there, and not
/// only in debug logs.
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
/// use fusebox::hash::RandomState;
/// use fusebox_std::tower::rate_limit::key;
/// use fusebox_std::tower::RateLimitLayer;
///
/// let per_key = KeyedLimiter::<String, 64, 1, RandomState>::with_hasher(
///     [Quota::per_minute(60)?], FullPolicy::Reject, RandomState::new())?;
/// let layer = RateLimitLayer::keyed("per_api_key", Arc::new(per_key), key::header("x-api-key", 64));
/// let bad = layer.limit().bad_keys();
/// assert_eq!((bad.missing, bad.total()), (0, 0));
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BadKeys {
    /// [`KeyError::Missing`]: no such header, no client address.
    pub missing: u64,
    /// [`KeyError::NotUtf8`].
    pub not_utf8: u64,
    /// [`KeyError::TooLong`].
    pub too_long: u64,
    /// [`KeyError::Invalid`]: the value does not parse as the key type.
    pub invalid: u64,
    /// [`KeyError::Ambiguous`]: the key's header on more than one line.
    pub ambiguous: u64,
}

impl BadKeys {
    /// All of them.
    ///
    /// ```
    /// assert_eq!(fusebox_std::tower::rate_limit::BadKeys::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.missing
            .saturating_add(self.not_utf8)
            .saturating_add(self.too_long)
            .saturating_add(self.invalid)
            .saturating_add(self.ambiguous)
    }

    /// Each count with its reason, as [`KeyError::code`] names it.
    ///
    /// ```
    /// let reasons: Vec<&str> = fusebox_std::tower::rate_limit::BadKeys::default()
    ///     .by_reason()
    ///     .iter()
    ///     .map(|(reason, _)| *reason)
    ///     .collect();
    /// assert_eq!(reasons, ["missing", "not_utf8", "too_long", "invalid", "ambiguous"]);
    /// ```
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("missing", self.missing),
            ("not_utf8", self.not_utf8),
            ("too_long", self.too_long),
            ("invalid", self.invalid),
            ("ambiguous", self.ambiguous),
        ]
    }
}

/// The shared counters behind [`BadKeys`].
#[derive(Debug, Default)]
pub(crate) struct BadKeyCounter([AtomicU64; 5]);

impl BadKeyCounter {
    /// Counts one request `error` left without a key.
    pub(crate) fn count(&self, error: &KeyError) {
        let i = match error {
            KeyError::Missing => 0,
            KeyError::NotUtf8 => 1,
            KeyError::TooLong { .. } => 2,
            KeyError::Invalid => 3,
            KeyError::Ambiguous => 4,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn read(&self) -> BadKeys {
        let [missing, not_utf8, too_long, invalid, ambiguous] =
            std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed));
        BadKeys {
            missing,
            not_utf8,
            too_long,
            invalid,
            ambiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_counts_under_its_own_reason() {
        let counter = BadKeyCounter::default();
        counter.count(&KeyError::Missing);
        counter.count(&KeyError::NotUtf8);
        counter.count(&KeyError::NotUtf8);
        counter.count(&KeyError::TooLong { len: 9, max: 8 });
        counter.count(&KeyError::Invalid);
        counter.count(&KeyError::Invalid);
        counter.count(&KeyError::Invalid);
        counter.count(&KeyError::Ambiguous);
        let read = counter.read();
        assert_eq!(
            read.by_reason(),
            [
                ("missing", 1),
                ("not_utf8", 2),
                ("too_long", 1),
                ("invalid", 3),
                ("ambiguous", 1)
            ]
        );
        assert_eq!(read.total(), 8);
        for (reason, _) in read.by_reason() {
            let error = match reason {
                "missing" => KeyError::Missing,
                "not_utf8" => KeyError::NotUtf8,
                "too_long" => KeyError::TooLong { len: 1, max: 0 },
                "invalid" => KeyError::Invalid,
                _ => KeyError::Ambiguous,
            };
            assert_eq!(error.code(), reason, "the reasons are the errors' codes");
        }
    }
}
