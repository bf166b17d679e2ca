//! Storage keys: `<prefix>:{<limiter>:<key>}:<rule>`, the user's key
//! escaped and length-limited, inside the braces of Redis's hash tag.
//!
//! Every rule of one request lives under the same hash tag, so a Redis
//! Cluster keeps them in one slot and the script may touch them all
//! atomically (the CROSSSLOT rule). The user's key is percent-escaped:
//! every byte outside `A–Z a–z 0–9 . _ ~ @ -` becomes `%XX`, so a key can
//! hold neither `{`, `}` (which would move the hash tag) nor `:` (which
//! would make two different (limiter, key) pairs collide); escaping is
//! injective, so distinct keys stay distinct.

use std::fmt::Write as _;

use super::BackendError;
use crate::registry::validate_name;

/// The longest user key accepted, in bytes (before escaping).
///
/// ```
/// use fusebox_std::backend::{escape, MAX_KEY_LEN};
///
/// assert!(escape(&"k".repeat(MAX_KEY_LEN)).is_ok());
/// assert!(escape(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
/// ```
pub const MAX_KEY_LEN: usize = 256;
/// The longest key prefix, in bytes.
///
/// ```
/// use fusebox_std::backend::{KeyPrefix, MAX_PREFIX_LEN};
///
/// assert!(KeyPrefix::new(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
/// assert!(KeyPrefix::new(&"p".repeat(MAX_PREFIX_LEN + 1)).is_err());
/// ```
pub const MAX_PREFIX_LEN: usize = 64;

/// A validated key prefix (a tenant's namespace), e.g. `fusebox`.
///
/// # Examples
///
/// ```
/// use fusebox_std::backend::KeyPrefix;
///
/// assert_eq!(KeyPrefix::new("tenant-a:fusebox")?.as_str(), "tenant-a:fusebox");
/// assert!(KeyPrefix::new("a{b}").is_err());
/// # Ok::<(), fusebox_std::backend::BackendError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPrefix(Box<str>);

impl KeyPrefix {
    /// A prefix of 1 to [`MAX_PREFIX_LEN`] printable ASCII bytes without
    /// braces or spaces.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] otherwise.
    ///
    /// ```
    /// use fusebox_std::backend::KeyPrefix;
    ///
    /// assert!(KeyPrefix::new("tenant-a").is_ok());
    /// assert!(KeyPrefix::new("").is_err());
    /// assert!(KeyPrefix::new("tenant a").is_err()); // a space
    /// assert!(KeyPrefix::new("{tenant}").is_err()); // braces
    /// ```
    pub fn new(prefix: &str) -> Result<Self, BackendError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if ok {
            Ok(Self(prefix.into()))
        } else {
            Err(BackendError::InvalidKey(
                "a key prefix is 1 to 64 printable ASCII bytes without braces",
            ))
        }
    }

    /// The prefix.
    ///
    /// ```
    /// use fusebox_std::backend::KeyPrefix;
    ///
    /// assert_eq!(KeyPrefix::default().as_str(), "fusebox");
    /// assert_eq!(KeyPrefix::new("tenant-a")?.as_str(), "tenant-a");
    /// # Ok::<(), fusebox_std::backend::BackendError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    /// `fusebox`.
    fn default() -> Self {
        Self("fusebox".into())
    }
}

/// `key` escaped: every byte outside `A–Z a–z 0–9 . _ ~ @ -` becomes
/// `%XX`, so the result holds no `{`, `}` or `:` and distinct keys stay
/// distinct.
///
/// ```
/// assert_eq!(fusebox_std::backend::escape("a:b{c}")?, "a%3Ab%7Bc%7D");
/// # Ok::<(), fusebox_std::backend::BackendError>(())
/// ```
///
/// # Errors
///
/// [`BackendError::InvalidKey`] for a key longer than [`MAX_KEY_LEN`].
pub fn escape(key: &str) -> Result<String, BackendError> {
    let mut out = String::with_capacity(key.len());
    escape_into(&mut out, key)?;
    Ok(out)
}

/// [`escape`] appended to `out` (no allocation of its own).
fn escape_into(out: &mut String, key: &str) -> Result<(), BackendError> {
    check_key(key)?;
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(())
}

/// The only way a key fails to escape: its length.
pub(crate) fn check_key(key: &str) -> Result<(), BackendError> {
    if key.len() > MAX_KEY_LEN {
        return Err(BackendError::InvalidKey(
            "a limiter key is at most 256 bytes",
        ));
    }
    Ok(())
}

/// Limiter names whose keys are other state's: a fleet breaker keeps its
/// decision in `<prefix>:{breaker:<name>}:decision` (and `:verdicts`), the
/// fleet percentiles in `<prefix>:{hist:<tracker>:<series>}`, so a limiter
/// called `breaker` with a rule `decision` would read and overwrite a
/// breaker's decision for the key `<name>`.
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig, RedisLimiter, Rules, RESERVED_LIMITER_NAMES};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let rules = Rules::single("decision", Quota::per_second(5)?)?;
/// for name in RESERVED_LIMITER_NAMES {
///     let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
///     let built = RedisLimiter::builder(name, rules.clone(), backend).build();
///     assert!(matches!(built, Err(BackendError::InvalidKey(_))));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub const RESERVED_LIMITER_NAMES: [&str; 2] = ["breaker", "hist"];

/// `name` is a registry name and not a [reserved](RESERVED_LIMITER_NAMES)
/// one.
pub(crate) fn check_limiter_name(name: &str) -> Result<(), BackendError> {
    if validate_name(name).is_err() {
        return Err(BackendError::InvalidKey(
            "a limiter name must be a registry name",
        ));
    }
    if RESERVED_LIMITER_NAMES.contains(&name) {
        return Err(BackendError::InvalidKey(
            "a limiter cannot be named `breaker` or `hist` (the fleet breakers' and percentiles' keys)",
        ));
    }
    Ok(())
}

/// `<prefix>:{<limiter>:<escaped key>}:`, the storage keys' common part,
/// in one allocation with room for the longest rule name: a rule's key
/// is this followed by the rule's name.
pub(crate) fn key_base(
    prefix: &KeyPrefix,
    limiter: &str,
    key: &str,
    rules: &super::Rules,
) -> Result<String, BackendError> {
    check_limiter_name(limiter)?;
    let longest = rules.iter().map(|r| r.name().len()).max().unwrap_or(0);
    let mut base =
        String::with_capacity(prefix.as_str().len() + limiter.len() + 3 * key.len() + 5 + longest);
    base.push_str(prefix.as_str());
    base.push_str(":{");
    base.push_str(limiter);
    base.push(':');
    escape_into(&mut base, key)?;
    base.push_str("}:");
    Ok(base)
}

/// The storage keys of `rules` for `key` of `limiter`, in rule order.
///
/// # Errors
///
/// [`BackendError::InvalidKey`] for a bad limiter name (one of the
/// [reserved](RESERVED_LIMITER_NAMES) ones included) or key.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{storage_keys, KeyPrefix, Rules};
///
/// let rules = Rules::single("per_second", Quota::per_second(10)?)?;
/// let keys = storage_keys(&KeyPrefix::default(), "payments", "user:42}", &rules)?;
/// assert_eq!(keys, ["fusebox:{payments:user%3A42%7D}:per_second"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn storage_keys(
    prefix: &KeyPrefix,
    limiter: &str,
    key: &str,
    rules: &super::Rules,
) -> Result<Vec<String>, BackendError> {
    let base = key_base(prefix, limiter, key, rules)?;
    Ok(rules
        .iter()
        .map(|r| format!("{base}{}", r.name()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter's keys are never a fleet breaker's (found by a hostile
    /// review: `breaker` with a rule `decision` and the key `payments` was
    /// `fusebox:{breaker:payments}:decision`).
    #[test]
    fn reserved_limiter_names_are_refused() {
        let rules =
            super::super::Rules::single("decision", fusebox::bucket::Quota::per_second(1).unwrap())
                .unwrap();
        for name in RESERVED_LIMITER_NAMES {
            assert!(matches!(
                storage_keys(&KeyPrefix::default(), name, "payments", &rules),
                Err(BackendError::InvalidKey(_))
            ));
        }
        let keys = storage_keys(&KeyPrefix::default(), "breakers", "payments", &rules).unwrap();
        assert_eq!(keys, ["fusebox:{breakers:payments}:decision"]);
    }

    #[test]
    fn escaping_is_injective_and_keeps_the_hash_tag_closed() {
        let keys = ["a:b", "a%3Ab", "{x}", "", "é", "a b"];
        let escaped: Vec<String> = keys.iter().map(|k| escape(k).unwrap()).collect();
        for (i, e) in escaped.iter().enumerate() {
            assert!(!e.contains(['{', '}', ':', ' ']), "{e}");
            assert!(escaped[..i].iter().all(|o| o != e), "{e} collides");
        }
        assert_eq!(escaped[1], "a%253Ab");
        assert!(escape(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(escape(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }
}
