//! Durations in the monitor's JSON: whole microseconds in fields named
//! `…_us`, as in the registry's health report.

use std::time::Duration;

use serde::Serializer;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// `serialize_with` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub(crate) fn us<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(micros(*d))
}

#[allow(clippy::ref_option, reason = "`serialize_with` passes a reference")]
pub(crate) fn opt_us<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&micros(*d)),
        None => s.serialize_none(),
    }
}
