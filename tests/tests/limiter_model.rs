//! `Limiter` and `KeyedLimiter` waiters arriving at random instants, for
//! random numbers of tokens, against a model of the docs: waiters (of one
//! key) pass a FIFO gate in arrival order; the one at the gate takes its
//! `n` tokens as soon as the GCRA bucket (`burst` at once, then one token
//! per interval) has them, then leaves the gate to the next. Every
//! admission instant must be the model's, exactly (whole milliseconds on
//! paused time; arrivals at distinct instants).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox_std::policy::{KeyedLimiter, Limiter};

/// The GCRA bucket of the docs, in ms.
struct Bucket {
    interval: u64,
    burst: u64,
    tat: u64,
}

impl Bucket {
    /// When `n` tokens are first free at or after `at`; takes them then.
    fn admit(&mut self, n: u64, at: u64) -> u64 {
        let ready =
            at.max((self.tat + n * self.interval).saturating_sub(self.burst * self.interval));
        self.tat = self.tat.max(ready) + n * self.interval;
        ready
    }
}

/// One waiter: arrival (ms), tokens, key.
type Waiter = (u64, u32, u8);

/// The model's admission instants, in the waiters' order.
fn model(waiters: &[Waiter], interval: u64, burst: u32, keys: u8) -> Vec<u64> {
    let mut buckets: Vec<Bucket> = (0..keys)
        .map(|_| Bucket {
            interval,
            burst: u64::from(burst),
            tat: 0,
        })
        .collect();
    // When each key's gate is free again.
    let mut free = vec![0u64; usize::from(keys)];
    waiters
        .iter()
        .map(|&(arrival, n, key)| {
            let k = usize::from(key);
            let at = buckets[k].admit(u64::from(n), arrival.max(free[k]));
            free[k] = at;
            at
        })
        .collect()
}

fn waiters(rng: &mut fastrand::Rng, burst: u32, keys: u8) -> Vec<Waiter> {
    let mut arrival = 0;
    (0..rng.usize(1..12))
        .map(|_| {
            arrival += rng.u64(1..700);
            (arrival, rng.u32(1..=burst), rng.u8(0..keys))
        })
        .collect()
}

async fn history(seed: u64, keyed: bool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let per_second = [1u32, 2, 4, 5, 10, 20][rng.usize(0..6)];
    let burst = rng.u32(1..5);
    let keys = if keyed { 3 } else { 1 };
    let quota = Quota::per_second(per_second)
        .unwrap()
        .with_burst(burst)
        .unwrap();
    let waiters = waiters(&mut rng, burst, keys);
    let plain = Arc::new(Limiter::new(Arc::new(TokenBucket::new(quota))));
    let core: fusebox::KeyedLimiter<u8, 8> =
        fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    let by_key = Arc::new(KeyedLimiter::new(Arc::new(core)));
    let start = tokio::time::Instant::now();
    let admitted = Arc::new(Mutex::new(vec![None; waiters.len()]));
    let tasks: Vec<_> = (waiters.iter().enumerate())
        .map(|(i, &(arrival, n, key))| {
            let (plain, by_key, admitted) = (
                Arc::clone(&plain),
                Arc::clone(&by_key),
                Arc::clone(&admitted),
            );
            tokio::spawn(async move {
                tokio::time::sleep_until(start + Duration::from_millis(arrival)).await;
                if keyed {
                    by_key.until_n_ready(&key, n).await.unwrap();
                } else {
                    plain.until_n_ready(n).await.unwrap();
                }
                let at = tokio::time::Instant::now() - start;
                admitted.lock().unwrap()[i] = Some(u64::try_from(at.as_millis()).unwrap());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let got: Vec<u64> = admitted
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.unwrap())
        .collect();
    let want = model(&waiters, 1_000 / u64::from(per_second), burst, keys);
    assert_eq!(
        got, want,
        "seed {seed}, keyed {keyed}, {per_second}/s burst {burst}, waiters {waiters:?}"
    );
    if keyed {
        assert_eq!(by_key.waiting_keys(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_are_admitted_when_the_documented_model_admits_them() {
    for seed in 0..300 {
        history(seed, false).await;
        history(seed, true).await;
    }
}
