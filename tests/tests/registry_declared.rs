//! What a configuration declares binds its names: the code asking for a
//! declared name with other settings gets `Conflict`, for every kind, as
//! for a name it created itself (the registry's "never a silent reuse").
//! Keyed limiters are built on first use, so their declaration must hold
//! until then.

use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::registry::{Kind, RegistryConfig};
use fusebox_std::{Registry, RegistryError};

fn declared() -> Registry {
    let config = RegistryConfig::from_toml(
        "[breakers.db]\nconsecutive_failures = 3\n\
         [limiters.api]\nrate = 10\n\
         [keyed_limiters.per_client]\nrate = 10\n",
    )
    .unwrap();
    Registry::from_config(&config).unwrap()
}

#[test]
fn a_declared_keyed_limiter_asked_for_with_another_quota_is_a_conflict() {
    let registry = declared();
    // The other kinds, for comparison: declared, then asked for otherwise.
    let breaker = fusebox::breaker::Config::builder()
        .consecutive_failures(50)
        .build()
        .unwrap();
    assert!(matches!(
        registry.breaker("db", breaker),
        Err(RegistryError::Conflict {
            kind: Kind::Breaker,
            ..
        })
    ));
    let generous = Quota::per_second(1_000).unwrap();
    assert!(matches!(
        registry.limiter("api", generous),
        Err(RegistryError::Conflict {
            kind: Kind::Limiter,
            ..
        })
    ));
    // The keyed limiter the operator declared at 10/s, asked for at 1 000/s
    // before its first configured use.
    let err = registry
        .keyed_limiter::<u64, 16>("per_client", generous, FullPolicy::Reject)
        .map(|l| l.quota(0).map(|q| q.tokens()))
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::Conflict {
            kind: Kind::KeyedLimiter,
            name: "per_client".into()
        }
    );
    // Nothing was built: the declared one is still there, as declared.
    let per_client = registry
        .configured_keyed_limiter::<u64, 16>("per_client")
        .unwrap();
    assert_eq!(per_client.quota(0).map(|q| q.tokens()), Some(10));
    // Asked for with the declared settings: the same instance.
    let same = registry
        .keyed_limiter::<u64, 16>(
            "per_client",
            Quota::per_second(10).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&per_client, &same));
}

#[test]
fn a_declared_keyed_limiter_asked_for_with_its_quota_before_first_use_is_it() {
    let registry = declared();
    let direct = registry
        .keyed_limiter::<u64, 16>(
            "per_client",
            Quota::per_second(10).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    let configured = registry
        .configured_keyed_limiter::<u64, 16>("per_client")
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&direct, &configured));
}

/// A declared keyed limiter keeps its place under the entry limit until
/// its first use: startup counts it (`build_from_config` refuses more
/// than `max_entries`), so the code's own keyed limiters cannot take its
/// place and make its first use fail as full.
#[test]
fn a_declared_keyed_limiter_keeps_its_place_under_the_entry_limit() {
    let config = RegistryConfig::from_toml("[keyed_limiters.per_client]\nrate = 10\n").unwrap();
    let registry = Registry::builder()
        .max_entries(2)
        .build_from_config(&config)
        .unwrap();
    let q = Quota::per_second(5).unwrap();
    registry
        .keyed_limiter::<u64, 16>("a", q, FullPolicy::Reject)
        .unwrap();
    // The second place is the declared one's.
    assert_eq!(
        registry
            .keyed_limiter::<u64, 16>("b", q, FullPolicy::Reject)
            .map(drop),
        Err(RegistryError::Full {
            kind: Kind::KeyedLimiter,
            limit: 2
        })
    );
    let per_client = registry.configured_keyed_limiter::<u64, 16>("per_client");
    assert_eq!(
        per_client.map(|l| l.quota(0).map(|q| q.tokens())),
        Ok(Some(10))
    );
}
