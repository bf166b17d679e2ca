//! [`Registry::to_prometheus`]: the registry in the Prometheus text
//! exposition format 0.0.4.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `fusebox_ready`, `fusebox_degraded` | gauge (0/1) | |
//! | `fusebox_breaker_state` | gauge, 1 for the current state, 0 for the others | `name`, `state` (`closed`, `open`, `half_open`, `forced_open`) |
//! | `fusebox_breaker_required` | gauge (0/1) | `name` |
//! | `fusebox_breaker_{successes,failures,slow_calls,rejected,trips,abandoned,ignored}_total` | counter | `name` |
//! | `fusebox_limiter_available_tokens`, `fusebox_limiter_burst_tokens` | gauge | `name` |
//! | `fusebox_limiter_rate_tokens_per_second` | gauge | `name` |
//! | `fusebox_keyed_limiter_{allowed,limited,evictions,table_full}_total` | counter | `name` |
//! | `fusebox_keyed_limiter_keys` | gauge | `name` |
//! | `fusebox_keyed_limiter_bad_keys_total` (feature `tower`) | counter | `name`, `reason` (`missing`, `not_utf8`, `too_long`, `invalid`, `ambiguous`) |
//! | `fusebox_cache_{hits,misses,inserts,evictions,expirations,contended}_total` | counter | `name` |
//! | `fusebox_operation_{calls,errors}_total` | counter | `tracker`, `operation` |
//! | `fusebox_operation_duration_seconds` | histogram (sampled runs) | `tracker`, `operation`, `le` |
//! | `fusebox_bulkhead_max_concurrent`, `fusebox_bulkhead_in_use`, `fusebox_bulkhead_queued` | gauge | `name` |
//! | `fusebox_bulkhead_rejected_total` | counter | `name` |
//! | `fusebox_events_{published,lagged}_total` | counter | |
//! | `fusebox_events_subscribers` | gauge | |
//! | `fusebox_process_resident_memory_bytes` (Linux), `fusebox_uptime_seconds` | gauge | |
//! | `fusebox_redis_limiter_decisions_total` (feature `redis`) | counter | `name`, `source` (`redis`, `degraded`) |
//! | `fusebox_redis_limiter_{admitted,faults,corrupt_values}_total` | counter | `name` |
//! | `fusebox_redis_limiter_degraded` | gauge (0/1) | `name` |
//! | `fusebox_fleet_breaker_state` (feature `redis`) | gauge, 1 for the current state, 0 for the others (all 0 for `fleet` before the first reconciliation) | `name`, `scope` (`local`: what a call here sees; `fleet`: the fleet's decision as last applied here), `state` |
//! | `fusebox_fleet_breaker_{syncs,errors,corrupt,published}_total` (its traffic with Redis), `fusebox_fleet_breaker_{trips,failures,rejected}_total` (this instance's calls) | counter | `name` |
//! | `fusebox_fleet_breaker_degraded` | gauge (0/1) | `name` |
//!
//! The latency histogram's `le` bounds are fixed, the same for every
//! series, instance and scrape ([`LATENCY_BOUNDS_US`]: 50 µs to 60 s, in
//! seconds), then `+Inf`: a fleet's series add up by `le`, as
//! `histogram_quantile(0.99, sum by (le) (rate(…_bucket[5m])))` needs (with
//! each series' own bounds, sums of cumulative counts at different bounds
//! are not cumulative, and the quantiles wrong), and a series is 20
//! samples, not one per non-empty core bucket (up to 2 533). Each bound
//! counts the runs of the core [`Histogram`](fusebox::Histogram)'s
//! buckets that start at or below it: every run at or below the bound,
//! and the runs that share its core bucket above it, less than 1/128 of
//! the bound above it (exact up to 255 µs, where the core's buckets are
//! 1 µs wide; a run of exactly a bound always counts at it). Runs longer
//! than the tracker's
//! histogram range count in `+Inf` only. Label values are escaped as the
//! format requires (`\` → `\\`, `"` → `\"`, newline → `\n`).
//!
//! The counters are the primitives' own, so they only grow while the
//! primitive lives, with three exceptions a scraper sees as a counter
//! reset: [`CircuitBreaker::reset`](fusebox::CircuitBreaker::reset) (and
//! so the admin route's `reset`) zeroes a breaker's counters,
//! [`restore`](fusebox::CircuitBreaker::restore) replaces them with the
//! snapshot's, and a cache registered with
//! [`Registry::register_cache`] reports what its
//! [`CacheSource`](crate::registry::CacheSource) reads, so
//! [`LruCache::reset_metrics`](fusebox::LruCache::reset_metrics) on it
//! zeroes its `fusebox_cache_*_total`. Prometheus's `rate` and `increase` read a drop as a restart
//! from zero: the calls between the last scrape and a `reset` are lost, as
//! at a process restart, and a `restore` to a lower non-zero value is
//! over-counted. Changing a configuration (`set_config`, `set_quota`)
//! keeps them.
//!
//! Three counters are counts the core keeps in two steps, which a read
//! racing an update may find low for a moment (never high): a keyed
//! limiter's admissions (`fusebox_keyed_limiter_allowed_total`, counted
//! per key and moved to a global count in batches), a latency histogram's
//! `_sum` (a bucket's offsets carried to a spill sum) and its last bound,
//! `le="60"` (the core bucket that ends the range, 59.77 s to 60.03 s,
//! also counts a run past the range until the clamped count, raised
//! first, takes it out). The exposition writes the largest value each has
//! returned, so none goes back between scrapes; each is exact whenever
//! nothing is being recorded.
//!
//! # Examples
//!
//! ```
//! use fusebox::breaker::Config;
//! use fusebox_std::Registry;
//!
//! let registry = Registry::new();
//! registry.breaker("payments", Config::builder().consecutive_failures(5).build()?)?;
//! let text = registry.to_prometheus();
//! assert!(text.contains("# TYPE fusebox_breaker_state gauge\n"));
//! assert!(text.contains("fusebox_breaker_state{name=\"payments\",state=\"closed\"} 1\n"));
//! assert!(text.contains("fusebox_breaker_state{name=\"payments\",state=\"open\"} 0\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::{Display, Write};

use fusebox::breaker::State;

use crate::health::{state_name, HealthReport};
use crate::Registry;

/// The HTTP `Content-Type` of [`Registry::to_prometheus`]'s output.
///
/// ```
/// assert!(fusebox_std::prometheus::CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
/// ```
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter family: its name (or name part), help text and reader.
type Counter<M> = (&'static str, &'static str, fn(&M) -> u64);

/// Appends families of samples to a string.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // The help texts are ours: no backslash or newline to escape.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(&mut self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// One family with one sample per item (skipped when empty).
    fn each<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: &[(&str, T)],
        value: impl Fn(&T) -> u64,
    ) {
        if items.is_empty() {
            return;
        }
        self.family(name, kind, help);
        for (label, item) in items {
            self.sample(name, &[("name", label)], value(item));
        }
    }
}

/// A label value escaped per the text format.
pub(crate) fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The `le` bounds of `fusebox_operation_duration_seconds`, in
/// microseconds (see the [module docs](self)): 50 µs to 60 s (the
/// tracker's range) in 1-2.5-5 steps, then 30 s and 60 s.
///
/// ```
/// use fusebox_std::prometheus::LATENCY_BOUNDS_US;
///
/// assert_eq!((LATENCY_BOUNDS_US[0], LATENCY_BOUNDS_US[18]), (50, 60_000_000));
/// assert!(LATENCY_BOUNDS_US.is_sorted());
/// ```
pub const LATENCY_BOUNDS_US: [u64; 19] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Microseconds as exact decimal seconds (`1500` → `0.0015`).
fn seconds(micros: u64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

impl Registry {
    /// The registry in the Prometheus text format 0.0.4 (serve it with
    /// [`CONTENT_TYPE`]); see the [module docs](crate::prometheus) for the
    /// families.
    ///
    /// ```
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
    /// drop(http.track_operation("GET /"));
    /// let text = registry.to_prometheus();
    /// assert!(text.contains("fusebox_operation_calls_total{tracker=\"http\",operation=\"GET /\"} 1\n"));
    /// assert!(text.contains("fusebox_operation_duration_seconds_count{tracker=\"http\",operation=\"GET /\"} 1\n"));
    /// # Ok::<(), fusebox_std::RegistryError>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        let h = self.report(false);
        let mut w = Writer { out: String::new() };

        w.family(
            "fusebox_ready",
            "gauge",
            "1 while the health report is ready: no required breaker open or forced open, and the attached monitor not unhealthy.",
        );
        w.sample("fusebox_ready", &[], flag(h.ready));
        w.family(
            "fusebox_degraded",
            "gauge",
            "1 while the health report is degraded: a breaker not closed, a degraded condition set, the attached monitor degraded or unhealthy, or a Redis limiter, fleet percentiles or fleet breaker cut off from Redis (or a fleet breaker not closed).",
        );
        w.sample("fusebox_degraded", &[], flag(h.degraded));

        write_breakers(&mut w, &h);
        write_limiters(&mut w, &h);
        write_keyed_and_caches(&mut w, &h);
        self.write_operations(&mut w);
        write_events_and_process(&mut w, &h);
        #[cfg(feature = "redis")]
        self.write_redis_limiters(&mut w.out);
        #[cfg(feature = "redis")]
        crate::registry::fleet_breaker::write_prometheus(&mut w.out, &h.fleet_breakers);
        w.out
    }

    /// The trackers' counters and latency histograms.
    fn write_operations(&self, w: &mut Writer) {
        let trackers: Vec<_> = self
            .read()
            .trackers
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        if trackers.is_empty() {
            return;
        }
        // Each series read once, its latency before its counters (see
        // `Series::errors_and_calls`), then written family by family.
        let mut series = Vec::new();
        for (tracker, t) in &trackers {
            t.for_each_series(|op, s| {
                series.push((tracker.as_str(), op.to_owned(), read_series(s)));
            });
        }
        let counters: [Counter<SeriesRead>; 2] = [
            ("fusebox_operation_calls_total", "Runs finished.", |r| {
                r.calls
            }),
            (
                "fusebox_operation_errors_total",
                "Runs marked failed.",
                |r| r.errors,
            ),
        ];
        for (name, help, get) in counters {
            w.family(name, "counter", help);
            for (tracker, op, r) in &series {
                w.sample(name, &[("tracker", tracker), ("operation", op)], get(r));
            }
        }
        let name = "fusebox_operation_duration_seconds";
        w.family(name, "histogram", "Latency of sampled runs.");
        let bucket = format!("{name}_bucket");
        for (tracker, op, r) in &series {
            for (bound, count) in LATENCY_BOUNDS_US.into_iter().zip(r.at_bounds) {
                let le = seconds(bound);
                w.sample(
                    &bucket,
                    &[("tracker", tracker), ("operation", op), ("le", &le)],
                    count,
                );
            }
            let labels = [("tracker", *tracker), ("operation", op.as_str())];
            w.sample(&bucket, &[labels[0], labels[1], ("le", "+Inf")], r.total);
            w.sample(&format!("{name}_sum"), &labels, seconds(r.sum));
            w.sample(&format!("{name}_count"), &labels, r.total);
        }
    }
}

/// What the exposition writes of one tracker series.
struct SeriesRead {
    /// Cumulative counts at [`LATENCY_BOUNDS_US`].
    at_bounds: [u64; LATENCY_BOUNDS_US.len()],
    /// Every sampled run (`+Inf`, `_count`).
    total: u64,
    /// The sampled runs' latency sum, in microseconds.
    sum: u64,
    errors: u64,
    calls: u64,
}

/// Reads `s`: its latency histogram, then its counters, so that no run is
/// counted as sampled or failed without counting as a call.
fn read_series(s: &crate::tracker::Series) -> SeriesRead {
    let mut total = 0;
    let mut buckets = s.latency.buckets().peekable();
    let mut at_bounds = LATENCY_BOUNDS_US.map(|bound| {
        // The core's buckets that start at or below the bound: every run
        // at or below it, and those sharing its core bucket above it.
        while let Some(b) = buckets.next_if(|b| b.low <= bound) {
            total += b.count;
        }
        total
    });
    total += buckets.map(|b| b.count).sum::<u64>();
    if let Some(last) = at_bounds.last_mut() {
        *last = s.last_bound_count(*last, total);
    }
    let sum = s.latency_sum();
    let (errors, calls) = s.errors_and_calls();
    SeriesRead {
        at_bounds,
        total,
        sum,
        errors,
        calls,
    }
}

fn write_breakers(w: &mut Writer, h: &HealthReport) {
    let breakers: Vec<_> = h.breakers.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    if !breakers.is_empty() {
        w.family(
            "fusebox_breaker_state",
            "gauge",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
        );
        for (name, b) in &breakers {
            for state in [
                State::Closed,
                State::Open,
                State::HalfOpen,
                State::ForcedOpen,
            ] {
                let labels = [("name", *name), ("state", state_name(state))];
                w.sample("fusebox_breaker_state", &labels, flag(b.state == state));
            }
        }
    }
    w.each(
        "fusebox_breaker_required",
        "gauge",
        "1 if the breaker gates readiness.",
        &breakers,
        |b| u64::from(b.required),
    );
    let counters: [Counter<fusebox::breaker::Metrics>; 7] = [
        ("successes", "Calls recorded as successes.", |m| m.successes),
        ("failures", "Calls recorded as failures.", |m| m.failures),
        ("slow_calls", "Calls at or above the slow threshold.", |m| {
            m.slow_calls
        }),
        ("rejected", "Calls rejected by the breaker.", |m| m.rejected),
        ("trips", "Times the breaker opened.", |m| m.trips),
        ("abandoned", "Permits dropped without an outcome.", |m| {
            m.abandoned
        }),
        ("ignored", "Calls recorded as ignored.", |m| m.ignored),
    ];
    for (what, help, get) in counters {
        let name = format!("fusebox_breaker_{what}_total");
        w.each(&name, "counter", help, &breakers, |b| get(&b.metrics));
    }
}

fn write_limiters(w: &mut Writer, h: &HealthReport) {
    let limiters: Vec<_> = h.limiters.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    w.each(
        "fusebox_limiter_available_tokens",
        "gauge",
        "Whole tokens available now.",
        &limiters,
        |l| u64::from(l.available),
    );
    w.each(
        "fusebox_limiter_burst_tokens",
        "gauge",
        "Bucket size in tokens.",
        &limiters,
        |l| u64::from(l.burst),
    );
    if !limiters.is_empty() {
        let name = "fusebox_limiter_rate_tokens_per_second";
        w.family(name, "gauge", "Refill rate in tokens per second.");
        for (label, l) in &limiters {
            // Counts far below 2^53: exact enough in f64.
            #[allow(clippy::cast_precision_loss)]
            let rate = f64::from(l.tokens) * 1e6 / l.period.as_micros() as f64;
            w.sample(name, &[("name", label)], rate);
        }
    }
}

fn write_keyed_and_caches(w: &mut Writer, h: &HealthReport) {
    let keyed: Vec<_> = h
        .keyed_limiters
        .iter()
        .map(|(n, k)| (n.as_str(), *k))
        .collect();
    let keyed_counters: [Counter<fusebox::bucket::KeyedMetrics>; 4] = [
        ("allowed", "Requests admitted.", |m| m.allowed),
        ("limited", "Requests refused.", |m| m.limited),
        ("evictions", "Idle keys evicted.", |m| m.evictions),
        (
            "table_full",
            "Requests refused because the table was full.",
            |m| m.table_full,
        ),
    ];
    for (what, help, get) in keyed_counters {
        let name = format!("fusebox_keyed_limiter_{what}_total");
        w.each(&name, "counter", help, &keyed, get);
    }
    w.each(
        "fusebox_keyed_limiter_keys",
        "gauge",
        "Keys held.",
        &keyed,
        |k| k.keys,
    );
    #[cfg(feature = "tower")]
    if !h.bad_keys.is_empty() {
        let name = "fusebox_keyed_limiter_bad_keys_total";
        w.family(
            name,
            "counter",
            "Requests a keyed rate-limit layer found no usable key in (refused, or charged to the default key).",
        );
        for (label, bad) in &h.bad_keys {
            for (reason, count) in bad.by_reason() {
                w.sample(name, &[("name", label), ("reason", reason)], count);
            }
        }
    }

    let caches: Vec<_> = h
        .caches
        .iter()
        .map(|(n, c)| (n.as_str(), c.metrics))
        .collect();
    let cache_counters: [Counter<fusebox::cache::CacheMetrics>; 6] = [
        ("hits", "Lookups that found a live entry.", |m| m.hits),
        ("misses", "Lookups that found none.", |m| m.misses),
        ("inserts", "Entries stored.", |m| m.inserts),
        ("evictions", "Entries evicted for room.", |m| m.evictions),
        ("expirations", "Expired entries freed.", |m| m.expirations),
        ("contended", "Writes given up under contention.", |m| {
            m.contended
        }),
    ];
    for (what, help, get) in cache_counters {
        let name = format!("fusebox_cache_{what}_total");
        w.each(&name, "counter", help, &caches, get);
    }
}

fn write_events_and_process(w: &mut Writer, h: &HealthReport) {
    w.family(
        "fusebox_events_published_total",
        "counter",
        "Events published.",
    );
    w.sample("fusebox_events_published_total", &[], h.events.published);
    w.family(
        "fusebox_events_lagged_total",
        "counter",
        "Events lost by slow subscribers.",
    );
    w.sample("fusebox_events_lagged_total", &[], h.events.lagged);
    w.family(
        "fusebox_events_subscribers",
        "gauge",
        "Live event subscribers.",
    );
    w.sample("fusebox_events_subscribers", &[], h.events.subscribers);
    if let Some(rss) = h.process.resident_memory_bytes {
        w.family(
            "fusebox_process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
        );
        w.sample("fusebox_process_resident_memory_bytes", &[], rss);
    }
    w.family(
        "fusebox_uptime_seconds",
        "gauge",
        "Time since the registry was created.",
    );
    w.sample("fusebox_uptime_seconds", &[], h.process.uptime_seconds);
    write_bulkheads(w, h);
}

fn write_bulkheads(w: &mut Writer, h: &HealthReport) {
    let bulkheads: Vec<_> = h.bulkheads.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    w.each(
        "fusebox_bulkhead_max_concurrent",
        "gauge",
        "Bulkhead slots in all.",
        &bulkheads,
        |b| b.max_concurrent as u64,
    );
    w.each(
        "fusebox_bulkhead_in_use",
        "gauge",
        "Bulkhead slots held now.",
        &bulkheads,
        |b| b.in_use as u64,
    );
    w.each(
        "fusebox_bulkhead_queued",
        "gauge",
        "Calls waiting for a bulkhead slot now.",
        &bulkheads,
        |b| b.queued as u64,
    );
    w.each(
        "fusebox_bulkhead_rejected_total",
        "counter",
        "Calls refused by a bulkhead.",
        &bulkheads,
        |b| b.rejected,
    );
}

#[cfg(test)]
mod tests {
    use super::{escape_into, seconds};

    #[test]
    fn a_scrape_computes_no_tracker_percentiles() {
        // The exposition writes each series' histogram; the health report's
        // percentiles (p50 to p99.9 of every series) would be discarded.
        use crate::tracker::STATS_COMPUTED;
        use crate::{Registry, TrackerConfig};
        let computed = || STATS_COMPUTED.with(std::cell::Cell::get);
        let registry = Registry::new();
        let tracker = registry.tracker("api", TrackerConfig::default()).unwrap();
        for operation in ["search", "checkout", "login"] {
            drop(tracker.track_operation(operation));
        }
        let before = computed();
        let text = registry.to_prometheus();
        assert!(text.contains("search"), "the series are exported");
        assert_eq!(computed(), before, "no percentile computed by a scrape");
        let report = registry.health();
        assert_eq!(report.trackers["api"].len(), 3);
        assert_eq!(computed(), before + 3, "the report's own");
    }

    #[test]
    // The decimal must read back as exactly the nearest double.
    #[allow(clippy::float_cmp)]
    fn seconds_are_exact_decimals() {
        let cases = [
            (0, "0"),
            (1, "0.000001"),
            (10, "0.00001"),
            (1_000, "0.001"),
            (1_003, "0.001003"),
            (1_500_000, "1.5"),
            (60_000_000, "60"),
            (u64::MAX, "18446744073709.551615"),
        ];
        for (micros, text) in cases {
            assert_eq!(seconds(micros), text);
            // And they read back as the nearest f64.
            #[allow(clippy::cast_precision_loss)]
            let exact = micros as f64 / 1e6;
            assert_eq!(text.parse::<f64>().unwrap(), exact, "{micros}");
        }
    }

    #[test]
    fn label_values_escape_exactly_three_characters() {
        let mut out = String::new();
        escape_into(&mut out, "a\\b\"c\nd\te\u{e9}}{,=");
        assert_eq!(out, "a\\\\b\\\"c\\nd\te\u{e9}}{,=");
    }
}
