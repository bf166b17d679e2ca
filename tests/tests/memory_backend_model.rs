//! `MemoryBackend` against an independent model, written from its
//! contract: every (key, rule name, quota) is an exact integer token
//! bucket, full at its first use; the backend never admits a request that
//! one of its rules' model buckets could not pay for, whatever the rule
//! sets, quotas and times (random histories; found by a hostile review,
//! with 40 rule names on a key, when drained buckets were evicted).

use std::collections::HashMap;
use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Backend, BackendError, MemoryBackend, Rule, Rules};

/// Exact model bucket, in units of 1/period_us of a token.
struct Model {
    level: u128,
    cap: u128,
    per_us: u128,
    unit: u128,
    at_us: u128,
}

impl Model {
    fn new(q: Quota, now_us: u128) -> Self {
        let period_us = q.period().as_micros() as u128;
        Self {
            level: q.burst() as u128 * period_us,
            cap: q.burst() as u128 * period_us,
            per_us: q.tokens() as u128,
            unit: period_us,
            at_us: now_us,
        }
    }
    fn refill(&mut self, now_us: u128) {
        self.level = (self.level + (now_us - self.at_us) * self.per_us).min(self.cap);
        self.at_us = now_us;
    }
}

fn quotas() -> Vec<Quota> {
    vec![
        Quota::per_second(10).unwrap(),
        Quota::new(5, fusebox::Duration::from_secs(1)).unwrap(),
        Quota::per_minute(6).unwrap(),
        Quota::new(2, fusebox::Duration::from_millis(100)).unwrap(),
        Quota::per_hour(100).unwrap(),
        Quota::per_hour(1).unwrap(),
        Quota::new(4, fusebox::Duration::from_secs(1))
            .unwrap()
            .with_burst(8)
            .unwrap(),
        Quota::new(3, fusebox::Duration::from_millis(300)).unwrap(),
    ]
}

async fn run(seed: u64, names: usize, steps: usize) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let qs = quotas();
    let max_keys = rng.usize(1..4);
    let backend = MemoryBackend::new(max_keys);
    let start = tokio::time::Instant::now();
    let mut model: HashMap<(usize, String, usize), Model> = HashMap::new();
    for step in 0..steps {
        match rng.u32(0..10) {
            0..=5 => {}
            6..=8 => tokio::time::advance(Duration::from_millis(rng.u64(1..300))).await,
            _ => tokio::time::advance(Duration::from_secs(rng.u64(1..120))).await,
        }
        let now_us = (tokio::time::Instant::now() - start).as_micros();
        let key = rng.usize(0..3);
        let count = rng.usize(1..=names.min(4));
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < count {
            let n = rng.usize(0..names);
            if !chosen.contains(&n) {
                chosen.push(n);
            }
        }
        let picked: Vec<(String, usize)> = chosen
            .iter()
            .map(|&n| (format!("r{n}"), rng.usize(0..qs.len())))
            .collect();
        let rules = Rules::new(
            picked
                .iter()
                .map(|(name, q)| Rule::new(name, qs[*q]).unwrap()),
        )
        .unwrap();
        let n = rng.u32(1..=3);
        let d = match backend.decide("l", &format!("k{key}"), &rules, n).await {
            Ok(d) => d,
            Err(BackendError::InsufficientCapacity { .. } | BackendError::TableFull) => continue,
            Err(e) => return Err(format!("step {step}: {e:?}")),
        };
        if backend.len() > max_keys {
            return Err(format!("step {step}: {} keys > {max_keys}", backend.len()));
        }
        if d.rule >= rules.len() {
            return Err(format!(
                "step {step}: rule index {} of {}",
                d.rule,
                rules.len()
            ));
        }
        if !d.allowed {
            continue;
        }
        for (name, q) in &picked {
            let m = model
                .entry((key, name.clone(), *q))
                .or_insert_with(|| Model::new(qs[*q], now_us));
            m.refill(now_us);
            let need = n as u128 * m.unit;
            if m.level < need {
                return Err(format!(
                    "seed {seed} step {step} t={}ms: key k{key} rule {name} quota {:?}/{:?} burst {}: \
                     admitted {n} with {}/{} tokens in the model",
                    now_us / 1000,
                    qs[*q].tokens(),
                    qs[*q].period(),
                    qs[*q].burst(),
                    m.level,
                    m.unit
                ));
            }
            m.level -= need;
        }
    }
    Ok(())
}

/// Runs `seeds` histories of 2 000 steps over `names` rule names.
async fn histories(names: usize, seeds: u64) {
    let mut failures = Vec::new();
    for seed in 0..seeds {
        if let Err(e) = run(seed, names, 2_000).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} histories failed, the first: {}",
        failures.len(),
        failures[0]
    );
}

/// Few rule names, many quotas each: a quota moved to another.
#[tokio::test(start_paused = true)]
async fn each_quota_admits_no_more_than_alone_over_few_names() {
    histories(3, 200).await;
}

/// Many rule names on a key: more buckets than are kept when full.
#[tokio::test(start_paused = true)]
async fn each_quota_admits_no_more_than_alone_over_many_names() {
    histories(40, 200).await;
}
