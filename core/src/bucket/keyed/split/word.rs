//! The 32-bit bucket word (see the parent module's docs): the arrival time
//! in half units, its lowest bit the tag of the tier's quota generation.

use crate::bucket::gcra::{self, Params};
use crate::bucket::{Quota, QuotaError};
use crate::sync::Tat;

/// The arrival time's values: the whole 32-bit word.
pub(in crate::bucket::keyed) const MASK: u64 = u32::MAX as u64;

/// The GCRA parameters of `quota` in the word's half units (every valid
/// quota fits: it fits the token bucket's word, which is the same). The
/// same signature as the 64-bit protocol's, which can refuse.
#[allow(clippy::unnecessary_wraps)]
pub(in crate::bucket::keyed) const fn params(quota: &Quota) -> Result<Params, QuotaError> {
    let p = quota.params();
    Ok(Params {
        scale: 2 * p.scale,
        interval: 2 * p.interval,
        capacity: 2 * p.capacity,
        horizon: 2 * p.horizon,
        mask: MASK,
    })
}

/// Half-unit parameters in whole scaled units.
const fn whole(p: &Params) -> Params {
    Params {
        scale: p.scale / 2,
        interval: p.interval / 2,
        capacity: p.capacity / 2,
        horizon: p.horizon / 2,
        mask: MASK / 2,
    }
}

/// The drain, in `new`'s half units, that carries a drain of `ahead` (even)
/// under `old` over to `new` ([`Params::carried`], in whole units, so that
/// it stays even).
pub(in crate::bucket::keyed) fn carried(new: &Params, old: &Params, ahead: u64) -> u64 {
    2 * whole(new).carried(&whole(old), ahead / 2)
}

/// An arrival time as stored: even, and never `FRESH` (one unit later
/// instead, which only admits less).
pub(in crate::bucket::keyed) const fn arrival(tat: u64) -> u64 {
    if tat & !1 == gcra::FRESH {
        2
    } else {
        tat & !1
    }
}

/// A bucket word's arrival time and tag.
pub(in crate::bucket::keyed) fn split(word: Tat) -> (u64, usize) {
    let word = u64::from(word);
    (word & !1, (word & 1) as usize)
}
