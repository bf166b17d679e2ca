//! The wire format of one instance's histogram in a fleet hash, and its
//! validation.
//!
//! A value is ASCII:
//!
//! ```text
//! v1;<written_ms>;<sum>;<min>;<max>;<low>:<high>:<count>,<low>:<high>:<count>,…
//! ```
//!
//! `written_ms` is Redis `TIME` in milliseconds when the instance wrote
//! it; `sum`, `min`, `max` are the core histogram's [`Totals`]; each
//! triple is one non-empty [`Bucket`] of [`Histogram::buckets`], in
//! increasing order. Decoding is strict and bounded: anything else is
//! [`Corrupt`].
//!
//! [`Histogram::buckets`]: fusebox::histogram::Histogram::buckets

use std::fmt::Write as _;

use fusebox::histogram::{Bucket, Totals, BUCKET_CAPACITY, MAX_BUCKETS};

use crate::tracker::LatencyHistogram;

/// The format's version tag.
pub(super) const VERSION: &str = "v1";
/// The longest value accepted, in bytes: every bucket of the latency
/// histogram at full width (2 534 × ~ 40 bytes) fits.
pub(super) const MAX_VALUE_LEN: usize = 128 * 1024;
/// The largest count accepted in one bucket: the most a bucket of the
/// core's histogram holds, so an instance's own value is never refused
/// however long it ran. (A whole value then holds at most
/// `(MAX_BUCKETS + 1) · BUCKET_CAPACITY` < 2⁵⁶ samples; merged, the
/// core's buckets saturate at that capacity, so no sum over
/// [`super::MAX_INSTANCES`] instances overflows.)
pub(super) const MAX_COUNT: u64 = BUCKET_CAPACITY;

/// Why a value was refused (for the log line; never the value itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Corrupt {
    TooLong,
    NotUtf8,
    /// Not `v1` (a newer format is told apart by [`newer`]).
    Version,
    Malformed,
    TooManyBuckets,
    AbsurdCount,
    /// Written further in the future than clock skew explains.
    Future,
    /// The core refused the bucket list or its totals.
    Merge,
    /// More fields in the hash than [`super::MAX_INSTANCES`].
    TooManyInstances,
}

/// One decoded value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) written_ms: u64,
    pub(super) totals: Totals,
    pub(super) buckets: Vec<Bucket>,
}

#[cfg(test)]
impl Entry {
    /// The samples the entry holds.
    pub(super) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }
}

/// `histogram` encoded with time `now_ms`; `None` if it is empty.
pub(super) fn encode(histogram: &LatencyHistogram, now_ms: u64) -> Option<String> {
    // Buckets first, totals second: the extremes then cover the list.
    let buckets: Vec<Bucket> = histogram.buckets().collect();
    let totals = histogram.totals()?;
    if buckets.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(32 + buckets.len() * 24);
    let _ = write!(
        out,
        "{VERSION};{now_ms};{};{};{};",
        totals.sum, totals.min, totals.max
    );
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}:{}", b.low, b.high, b.count);
    }
    Some(out)
}

/// Decodes `raw`, bounded: at most [`MAX_VALUE_LEN`] bytes, at most
/// [`MAX_BUCKETS`] + 1 buckets, each counting 1 to [`MAX_COUNT`] values.
/// Bucket bounds and order are checked by the core when merging.
pub(super) fn decode(raw: &[u8]) -> Result<Entry, Corrupt> {
    if raw.len() > MAX_VALUE_LEN {
        return Err(Corrupt::TooLong);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Corrupt::NotUtf8)?;
    let mut parts = text.splitn(6, ';');
    if parts.next() != Some(VERSION) {
        return Err(Corrupt::Version);
    }
    let mut number = || -> Result<u64, Corrupt> { int(parts.next().ok_or(Corrupt::Malformed)?) };
    let written_ms = number()?;
    let (sum, min, max) = (number()?, number()?, number()?);
    let list = parts.next().ok_or(Corrupt::Malformed)?;
    let mut buckets = Vec::new();
    for item in list.split(',') {
        if buckets.len() > MAX_BUCKETS {
            return Err(Corrupt::TooManyBuckets);
        }
        let mut f = item.split(':');
        let mut field = || int(f.next().ok_or(Corrupt::Malformed)?);
        let (low, high, count) = (field()?, field()?, field()?);
        if f.next().is_some() {
            return Err(Corrupt::Malformed);
        }
        if count == 0 || count > MAX_COUNT {
            return Err(Corrupt::AbsurdCount);
        }
        buckets.push(Bucket { low, high, count });
    }
    Ok(Entry {
        written_ms,
        totals: Totals { sum, min, max },
        buckets,
    })
}

/// The time a value of a *newer* format (`v<N>;<written_ms>;…`, N > 1,
/// as written by a newer instance in a rolling upgrade) was written, or
/// `None` for anything else. Every format version keeps that prefix and
/// [`MAX_VALUE_LEN`], so an older instance can skip a newer value while
/// it is fresh and delete it once expired, without reading the rest.
pub(super) fn newer(raw: &[u8]) -> Option<u64> {
    if raw.len() > MAX_VALUE_LEN {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = text.splitn(3, ';');
    let version = parts.next()?.strip_prefix('v')?;
    if version.len() > 9 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if version.parse::<u32>().ok()? <= 1 || version.starts_with('0') {
        return None;
    }
    let written_ms = int(parts.next()?).ok()?;
    parts.next()?;
    Some(written_ms)
}

/// A decimal `u64`: digits only (no sign, no spaces), at most 20 of them.
fn int(s: &str) -> Result<u64, Corrupt> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Corrupt::Malformed);
    }
    s.parse().map_err(|_| Corrupt::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = LatencyHistogram::new_boxed();
        assert_eq!(encode(&h, 5), None);
        for v in [3, 3, 1_000, 1_007, 61_000_000] {
            h.record(v);
        }
        let text = encode(&h, 42).unwrap();
        let entry = decode(text.as_bytes()).unwrap();
        assert_eq!(entry.written_ms, 42);
        assert_eq!(entry.count(), 5);
        let back = LatencyHistogram::new_boxed();
        back.merge_buckets_with_totals(entry.buckets, entry.totals)
            .unwrap();
        for q in [50.0, 95.0, 99.0] {
            assert_eq!(back.percentile(q), h.percentile(q));
        }
    }

    /// A histogram with `count` values in every bucket (the clamped top
    /// one included), built through the core's own merge.
    fn full(count: u64) -> Box<LatencyHistogram> {
        let shape = LatencyHistogram::new_boxed();
        let mut value = 0u64;
        loop {
            shape.record(value);
            let high = shape.buckets().last().map_or(u64::MAX, |b| b.high);
            if high == u64::MAX {
                break;
            }
            value = high + 1;
        }
        let buckets: Vec<Bucket> = shape.buckets().map(|b| Bucket { count, ..b }).collect();
        let totals = Totals {
            sum: u64::MAX,
            min: 0,
            max: value,
        };
        let h = LatencyHistogram::new_boxed();
        h.merge_buckets_with_totals(buckets, totals).unwrap();
        h
    }

    /// Whatever an instance's histogram holds, however long it ran, its
    /// own value decodes: the core keeps up to `BUCKET_CAPACITY` values
    /// per bucket. Before, a total above 2⁴⁰ (a year at 35 000 sampled
    /// calls a second) was refused as an absurd count, so a busy,
    /// long-running instance dropped out of the fleet figures and was
    /// counted corrupt on every round.
    #[test]
    fn a_long_running_instance_is_never_refused() {
        for count in [1, (1 << 40) + 1, BUCKET_CAPACITY] {
            let h = full(count);
            let text = encode(&h, 42).unwrap();
            assert!(text.len() <= MAX_VALUE_LEN, "{}", text.len());
            let entry = decode(text.as_bytes()).expect("its own value decodes");
            assert_eq!(entry.count(), h.count());
            let back = LatencyHistogram::new_boxed();
            back.merge_buckets_with_totals(entry.buckets, entry.totals)
                .unwrap();
            assert_eq!(back.count(), h.count());
            assert_eq!(back.percentile(99.0), h.percentile(99.0));
        }
        // A count no histogram holds is still refused.
        let over = format!("v1;1;1;1;1;1:1:{}", BUCKET_CAPACITY + 1);
        assert_eq!(decode(over.as_bytes()), Err(Corrupt::AbsurdCount));
    }

    #[test]
    fn a_newer_format_is_told_from_garbage() {
        assert_eq!(newer(b"v2;42;any layout"), Some(42));
        assert_eq!(newer(b"v17;7;"), Some(7));
        for not_newer in [
            &b"v1;42;1;1;1;1:1:1"[..],
            b"v0;42;x",
            b"v02;42;x",
            b"v2;42",
            b"v2;-1;x",
            b"v2;soon;x",
            b"v2x;42;x",
            b"V2;42;x",
            b"v;42;x",
            b"v9999999999;42;x",
            b"v2;\xff;x",
        ] {
            assert_eq!(newer(not_newer), None, "{not_newer:?}");
        }
        let mut long = b"v2;42;".to_vec();
        long.resize(MAX_VALUE_LEN + 1, b'x');
        assert_eq!(newer(&long), None);
    }

    #[test]
    fn refuses_garbage() {
        let cases: [(&[u8], Corrupt); 9] = [
            (b"", Corrupt::Version),
            (b"v2;1;1;1;1;1:1:1", Corrupt::Version),
            (b"v1;1;1;1;1", Corrupt::Malformed),
            (b"v1;1;1;1;1;1:1", Corrupt::Malformed),
            (b"v1;1;1;1;1;1:1:1:1", Corrupt::Malformed),
            (b"v1;-1;1;1;1;1:1:1", Corrupt::Malformed),
            (b"v1;1;1;1;1;1:1:0", Corrupt::AbsurdCount),
            (b"v1;1;1;1;1;1:1:99999999999999999", Corrupt::AbsurdCount),
            (b"v1;1;1;1;1;\xff", Corrupt::NotUtf8),
        ];
        for (raw, want) in cases {
            assert_eq!(decode(raw), Err(want), "{raw:?}");
        }
        for newer_format in [&b"v2;1;1;1;1;1:1:1"[..], b"v17;42;any layout"] {
            assert_eq!(decode(newer_format), Err(Corrupt::Version));
        }
        let huge = vec![b'7'; MAX_VALUE_LEN + 1];
        assert_eq!(decode(&huge), Err(Corrupt::TooLong));
        let many = format!("v1;1;1;1;1;{}", vec!["1:1:1"; MAX_BUCKETS + 2].join(","));
        assert_eq!(decode(many.as_bytes()), Err(Corrupt::TooManyBuckets));
    }
}
