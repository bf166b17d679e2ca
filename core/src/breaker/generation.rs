//! Generations: how a new one is drawn, published and checked (see the
//! module docs of `breaker`, "Generations").

use super::word::{self, Kind, Word};
use super::CircuitBreaker;
use crate::sync::{Epoch, Ordering};
use crate::Instant;

impl CircuitBreaker {
    /// The epoch once it names `cur`'s generation (or, for an Open word, the
    /// generation before it): helps an installer that has not published
    /// yet. If `cur` is no longer installed, the value is meaningless, and
    /// so harmless: the caller's CAS on `cur` fails.
    #[inline(never)] // off the hot path; one copy keeps firmware small
    pub(super) fn settled_epoch(&self, cur: Word) -> Epoch {
        let epoch = self.epoch.load(Ordering::Acquire);
        if cur.kind() == Kind::Open || low(epoch) == cur.gen() {
            return epoch;
        }
        // `cur` was installed as epoch + 1 and is not published yet.
        let next = epoch.wrapping_add(1);
        if low(next) != cur.gen() {
            return epoch; // `cur` is stale
        }
        match self
            .epoch
            .compare_exchange(epoch, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => next,
            Err(actual) => actual,
        }
    }

    /// The full generation for a word about to replace `cur`. Consumed only
    /// if that CAS succeeds and [`publish`](Self::publish) follows.
    pub(super) fn draw(&self, cur: Word) -> Epoch {
        self.settled_epoch(cur).wrapping_add(1)
    }

    /// Publishes generation `gen` into the epoch once its word is installed
    /// (a no-op if another caller already helped).
    #[inline(never)]
    pub(super) fn publish(&self, gen: Epoch) {
        let _ = self.epoch.compare_exchange(
            gen.wrapping_sub(1),
            gen,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Installs the word `make` returns for the current one, with a fresh
    /// generation patched in when the word carries one, by CAS; `None` from
    /// `make` leaves the state alone. Returns the word it replaced, if it
    /// installed one, and the generation drawn for it. A HalfOpen word is
    /// stamped for the half-open timeout at `now`, and a Closed one gets an
    /// empty time window, before the CAS (see [`prepare`](Self::prepare)).
    pub(super) fn install_gen(
        &self,
        now: Instant,
        make: impl Fn(Word) -> Option<Word>,
    ) -> Option<(Word, Epoch)> {
        let mut cur = self.load();
        loop {
            let new = make(cur)?;
            let gen = self.draw(cur);
            let new = new.with_gen(low(gen));
            self.prepare(new, gen, now);
            match self.cas(cur, new) {
                Ok(()) => {
                    if new.kind() != Kind::Open {
                        self.publish(gen);
                    }
                    return Some((cur, gen));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// [`install_gen`](Self::install_gen), returning the replaced word.
    pub(super) fn install(
        &self,
        now: Instant,
        make: impl Fn(Word) -> Option<Word>,
    ) -> Option<Word> {
        self.install_gen(now, make).map(|(prev, _)| prev)
    }

    /// What must precede the CAS installing `new` (of generation `gen`) at
    /// `now`: a HalfOpen word's timeout stamp; a Closed word's empty time
    /// window (a failed CAS leaves it emptied: only racing a transition
    /// into Closed, whose window would be empty anyway, or a reset).
    // One copy for every `install_gen` instance; nothing at all without the
    // features.
    #[cfg_attr(
        any(feature = "time-window", feature = "half-open-timeout"),
        inline(never)
    )]
    #[cfg_attr(
        not(any(feature = "time-window", feature = "half-open-timeout")),
        allow(clippy::unused_self)
    )]
    pub(super) fn prepare(&self, new: Word, gen: Epoch, now: Instant) {
        #[cfg(not(feature = "half-open-timeout"))]
        let _ = (gen, now);
        match new.kind() {
            #[cfg(feature = "half-open-timeout")]
            Kind::HalfOpen => self.stamp_half_open(gen, now),
            #[cfg(feature = "time-window")]
            Kind::Closed if self.config.timed() => self.timed.clear(self.config.time_buckets),
            _ => {}
        }
    }

    /// Whether a permit of full generation `gen` still owns the installed
    /// word `cur`: the low bits match and the epoch (read after `cur`) is
    /// that generation or one behind.
    #[inline]
    pub(super) fn owns(&self, cur: Word, gen: Epoch, half_open: bool) -> bool {
        cur.owns(low(gen), half_open) && gen.wrapping_sub(self.epoch.load(Ordering::Acquire)) <= 1
    }
}

/// The low bits of a full generation, as the state word holds them.
#[allow(clippy::unnecessary_cast)] // `Epoch` is `u32` on Cortex-M
pub(super) const fn low(gen: Epoch) -> u32 {
    (gen as u32) & word::GEN_MASK
}

/// The full generation of the installed word `cur`, given an epoch read
/// before it (so at most one behind, barring a stall of 2^14 transitions
/// between the two loads).
pub(super) fn full_gen(epoch: Epoch, cur: Word) -> Epoch {
    epoch.wrapping_add(Epoch::from(
        cur.gen().wrapping_sub(low(epoch)) & word::GEN_MASK,
    ))
}
