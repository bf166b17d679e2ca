//! [`StaleCache`] against a reference model written from its docs (not
//! from the code): random schedules of successes, failures, fetch
//! durations and pauses, on tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::time::Instant as TokioInstant;

use super::*;

/// What the docs promise for one `get_or_fetch`, given the model's
/// entries: `(value, fetched_at)` per key.
#[derive(Debug, PartialEq)]
enum Expect {
    Cached(u32, Duration),
    Fetched(u32),
    Stale(u32, Duration),
    Error,
}

#[tokio::test(start_paused = true)]
async fn random_schedules_match_the_documented_model() {
    let mut rng = fastrand::Rng::with_seed(0x5ca1_ab1e);
    for round in 0..300 {
        let ms = |n: u64| Duration::from_millis(n);
        let fresh_for = ms(*[0, 0, 1, 3, 7].get(rng.usize(0..5)).unwrap());
        let max_stale = fresh_for + ms(rng.u64(0..8));
        if max_stale.is_zero() {
            continue;
        }
        // Keys within the capacity: no eviction to model.
        let cache: StaleCache<u8, u32, 4> = StaleCache::new(fresh_for, max_stale).unwrap();
        let mut model: HashMap<u8, (u32, TokioInstant)> = HashMap::new();
        for step in 0..40 {
            tokio::time::advance(ms(rng.u64(0..6))).await;
            let key = rng.u8(0..4);
            let value = rng.u32(..);
            let succeeds = rng.bool();
            let takes = ms(*[0, 0, 1, 2, 5].get(rng.usize(0..5)).unwrap());
            let start = TokioInstant::now();
            let age_at = |at: TokioInstant, since: TokioInstant| at - since;
            let calls = AtomicU32::new(0);
            let served = cache
                .get_or_fetch(key, || {
                    calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        tokio::time::sleep(takes).await;
                        if succeeds {
                            Ok(value)
                        } else {
                            Err("down")
                        }
                    }
                })
                .await;
            let end = TokioInstant::now();
            let fresh = model.get(&key).and_then(|&(v, at)| {
                let age = age_at(start, at);
                (!fresh_for.is_zero() && age < fresh_for && age < max_stale).then_some((v, age))
            });
            let expect = if let Some((v, age)) = fresh {
                Expect::Cached(v, age)
            } else if succeeds {
                model.insert(key, (value, end));
                Expect::Fetched(value)
            } else {
                match model.get(&key) {
                    Some(&(v, at)) if age_at(end, at) < max_stale => {
                        Expect::Stale(v, age_at(end, at))
                    }
                    _ => Expect::Error,
                }
            };
            let got = match served {
                Ok(Served {
                    value,
                    source: Source::Cached,
                    age,
                }) => Expect::Cached(value, age),
                Ok(Served {
                    value,
                    source: Source::Fetched,
                    age,
                }) => {
                    assert_eq!(age, Duration::ZERO);
                    Expect::Fetched(value)
                }
                Ok(Served {
                    value,
                    source: Source::Stale,
                    age,
                }) => Expect::Stale(value, age),
                Err(_) => Expect::Error,
            };
            let called = u32::from(!matches!(expect, Expect::Cached(..)));
            let ctx = format!("round {round} step {step}: fresh_for {fresh_for:?}, max_stale {max_stale:?}, key {key}, takes {takes:?}");
            assert_eq!(got, expect, "{ctx}");
            assert_eq!(calls.load(Ordering::Relaxed), called, "{ctx}");
        }
    }
}

/// Compiled, not run: the futures of `get_or_fetch`, `Fallback::call` and
/// `Bulkhead::call` can be spawned on a multi-thread runtime.
#[allow(dead_code)]
fn futures_are_send() {
    fn send<T: Send>(_: T) {}
    let cache: Arc<StaleCache<String, String, 4>> =
        Arc::new(StaleCache::new(Duration::ZERO, Duration::from_secs(1)).unwrap());
    send(async move {
        cache
            .get_or_fetch("k".to_owned(), || async { Ok::<_, ()>(String::new()) })
            .await
    });
    let f = Fallback::new(|(): &()| Some(1));
    send(async move { f.call(async { Err::<i32, ()>(()) }).await });
    let b = super::super::Bulkhead::new(1, super::super::Overflow::Reject).unwrap();
    send(async move { b.call(async { Ok::<_, ()>(1) }).await });
}
