//! The quota tiers of a [`KeyedLimiter`](super::KeyedLimiter), changeable
//! under `&self` ([`set_quota`](super::KeyedLimiter::set_quota)) while
//! decisions go on, none of them waiting.
//!
//! # Generations and tags
//!
//! Each tier has a *generation* (a wrapping `u32`) and two quota slots: the
//! one in force is named by the generation's parity. Every slot's bucket
//! word carries a one-bit *tag*, the parity of the generation it was
//! written under (a bit of its own in the 64-bit word, the word's lowest
//! bit on Cortex-M; see `packed` and `split`). A decision loads the bucket
//! word (pinned or registered, as before), *then* the tier's generation
//! (one acquire load, the only addition to the lock-free path; no
//! read-modify-write is added):
//!
//! * the tag is the generation's parity: the word is current, decided under
//!   the slot in force, exactly as before;
//! * otherwise the word was written under the previous generation: it is
//!   first converted (below) to the slot in force, and the one CAS that
//!   charges it also writes the converted state with the new tag. A refusal
//!   writes nothing; the next use converts again, to the same state.
//!
//! A refusal is *confirmed* (on the cold path): after an acquire fence the
//! word is loaded again, and the decision is made again if its arrival time
//! or tag moved meanwhile (as the token bucket's refusals are; see below
//! for why).
//!
//! Whoever wrote a word tagged with generation `g` had seen `g` published,
//! so a caller that loads the word before the generation never sees a tag
//! newer than its generation.
//!
//! # A change
//!
//! [`set_quota`](super::KeyedLimiter::set_quota) runs under the table's
//! lock (so changes are serialised with each other and with insertions and
//! evictions, which therefore always see every word current). It writes
//! the slot not in force (the new quota and the change's `now`), publishes
//! it by incrementing the generation (release), then *sweeps* the table:
//! every live slot of the tier still tagged with the old generation is
//! converted by one CAS (retried if a decision moved the word first). So
//! when `set_quota` returns every key of the tier is under the new quota,
//! and only the decisions racing with it convert lazily. A decision that
//! loaded a word before the sweep converted it fails its CAS and starts
//! again from the swept word (and a new generation).
//!
//! # The conversion
//!
//! A word written under quota `A` is converted to quota `B` *at the
//! change's `now`*, whenever the conversion runs: the state `A` reads at
//! that `now` is carried over exactly as
//! [`TokenBucket::set_quota`](crate::bucket::TokenBucket::set_quota)
//! documents (the kernel's `Params::carried`): the tokens available stay
//! available (fractions included, rounded toward fewer, clamped to `B`'s
//! burst), `B`'s rate refills from that `now` on, and an overdraft (a
//! decision with a `now` later than the change's) stays the same time
//! overdrawn. The result is full at the change's `now` at the earliest: a
//! bucket full then reads drained for callers behind it, as a token
//! bucket's does. A conversion is a pure function of the word and the two
//! slots, so every caller that converts a word gets the same state.
//!
//! # Evictions after a change
//!
//! A change that lowers a tier's burst leaves every key that had at least
//! the new burst full, so idle, whatever it spent of the old burst at the
//! change's `now`. Evicted then and inserted again once a larger quota is
//! in force, such a key would start with that quota's whole burst on top
//! of what it spent. So the change holds the tier's idle keys in the table
//! (`Tiers::holds`) until the replaced quota would have refilled its
//! whole burst; by then the larger rate has paid for what was spent.
//! Callers further behind the change's `now` than the tolerance read the
//! tier's buckets as full anyway and are not held, so a change dated far
//! ahead (`Instant::MAX`) does not stop the tier's evictions for good. The
//! price: such a caller may evict a held key, which a caller near the
//! change's `now` can then bring back with a new burst once a larger
//! quota is in force, as if there were no hold (the hold protects against
//! evictions by callers within the tolerance only;
//! `a_caller_far_behind_a_change_is_not_held` in
//! `core/tests/keyed_requota.rs`).
//!
//! # Stale readers
//!
//! One tag bit cannot tell generation `g` from `g + 2`: a decision that
//! loads a word, stalls while two changes complete, then loads the
//! generation takes the word for a current one, and a quota slot is
//! rewritten by the change after next, possibly while a stalled decision
//! reads it. Either way the sweep of the change in between has moved the
//! word since the decision loaded it, so the decision's CAS fails, and its
//! refusal's confirmation sees the word move (the loom model
//! `keyed_requota_two_changes_race_decisions` found such a refusal before
//! refusals were confirmed). Only a word that comes back to the very value
//! the decision loaded (tag and arrival time) passes; it then reads the
//! same under the quota in force, unless the quotas differ and the
//! arrival time came back after wrapping, as for the token bucket
//! (`tagged`).

use super::{design, KeyedLeft};
use crate::bucket::gcra::Params;
use crate::bucket::{widen, Quota};
use crate::sync::{fence, AtomicU32, Ordering, Tat, TatWord};
use crate::Duration;

/// Why a decision refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Admitted after this many microseconds (rounded up).
    Wait(u64),
    /// Never: more than the burst, which is given.
    Never(u32),
}

/// One quota slot of a tier: the bucket words' decision parameters, the
/// quota as given, and the `now` of the change that wrote it.
struct Rule {
    scale: TatWord,
    interval: TatWord,
    capacity: TatWord,
    horizon: TatWord,
    burst: AtomicU32,
    tokens: AtomicU32,
    /// The period in µs: `[low half, high half]`.
    period: [AtomicU32; 2],
    /// The change's `now` in µs: `[low half, high half]`.
    at: [AtomicU32; 2],
}

/// A `u64` as `[low half, high half]`.
const fn halves(value: u64) -> [u32; 2] {
    [value as u32, (value >> 32) as u32]
}

fn join(halves: &[AtomicU32; 2]) -> u64 {
    let [lo, hi] = halves.each_ref().map(|h| h.load(Ordering::Relaxed));
    u64::from(hi) << 32 | u64::from(lo)
}

impl Rule {
    fn new(quota: &Quota, params: &Params) -> Self {
        let [plo, phi] = halves(quota.period().as_micros());
        Self {
            scale: TatWord::new(params.scale as Tat),
            interval: TatWord::new(params.interval as Tat),
            capacity: TatWord::new(params.capacity as Tat),
            horizon: TatWord::new(params.horizon as Tat),
            burst: AtomicU32::new(quota.burst()),
            tokens: AtomicU32::new(quota.tokens()),
            period: [AtomicU32::new(plo), AtomicU32::new(phi)],
            at: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    fn store(&self, quota: &Quota, params: &Params, at: u64) {
        self.scale.store(params.scale as Tat, Ordering::Relaxed);
        self.interval
            .store(params.interval as Tat, Ordering::Relaxed);
        self.capacity
            .store(params.capacity as Tat, Ordering::Relaxed);
        self.horizon.store(params.horizon as Tat, Ordering::Relaxed);
        self.burst.store(quota.burst(), Ordering::Relaxed);
        self.tokens.store(quota.tokens(), Ordering::Relaxed);
        for (word, half) in self.period.iter().zip(halves(quota.period().as_micros())) {
            word.store(half, Ordering::Relaxed);
        }
        for (word, half) in self.at.iter().zip(halves(at)) {
            word.store(half, Ordering::Relaxed);
        }
    }

    #[inline]
    fn params(&self) -> Params {
        Params {
            scale: widen(self.scale.load(Ordering::Relaxed)),
            interval: widen(self.interval.load(Ordering::Relaxed)),
            capacity: widen(self.capacity.load(Ordering::Relaxed)),
            horizon: widen(self.horizon.load(Ordering::Relaxed)),
            mask: design::MASK,
        }
    }

    #[inline]
    fn burst(&self) -> u32 {
        self.burst.load(Ordering::Relaxed)
    }

    /// The quota as given, or `None` for a mix of two (a stale read).
    fn quota(&self) -> Option<Quota> {
        let period = Duration::from_micros(join(&self.period));
        Quota::build(self.tokens.load(Ordering::Relaxed), period, self.burst()).ok()
    }
}

/// Every tier's generation and two quota slots; see the module docs.
pub(super) struct Tiers<const TIERS: usize> {
    /// Changes published per tier; the parity names the slot in force.
    generation: [AtomicU32; TIERS],
    rules: [[Rule; 2]; TIERS],
    /// Per tier, the instant (µs, `[low half, high half]`) before which
    /// its idle keys are not evicted (see [`holds`](Self::holds)). Written
    /// and read only under the table's lock.
    held_until: [[AtomicU32; 2]; TIERS],
    /// Per tier, the `now` (µs, `[low half, high half]`) of the change
    /// that set `held_until`: callers further behind it than the tolerance
    /// are not held. Written and read only under the table's lock.
    held_from: [[AtomicU32; 2]; TIERS],
}

impl<const TIERS: usize> Tiers<TIERS> {
    /// Generation 0 everywhere; both slots of a tier hold its quota, so
    /// that even a stale read of the other finds valid values.
    pub(super) fn new(quotas: &[Quota; TIERS], params: &[Params; TIERS]) -> Self {
        Self {
            generation: core::array::from_fn(|_| AtomicU32::new(0)),
            rules: core::array::from_fn(|i| {
                [
                    Rule::new(&quotas[i], &params[i]),
                    Rule::new(&quotas[i], &params[i]),
                ]
            }),
            held_until: core::array::from_fn(|_| [AtomicU32::new(0), AtomicU32::new(0)]),
            held_from: core::array::from_fn(|_| [AtomicU32::new(0), AtomicU32::new(0)]),
        }
    }

    /// Whether `tier`'s idle keys are held in the table at `micros`: for
    /// a while after a change that lowered the tier's burst. Such a change
    /// leaves every key that had at least the new burst *full* (clamped),
    /// so idle, though it may have spent tokens of the old burst at that
    /// very instant; evicted, and inserted again under a larger quota, it
    /// would start with a second burst (found by the churn test: 4 tokens
    /// at one instant under bursts 3 and 2). Held until the old quota
    /// would have refilled its whole burst after the change, a key that
    /// leaves has been granted no more than the GCRA bound (the larger
    /// burst plus the larger rate over the time since) allows.
    ///
    /// A caller further behind the change's `now` than the tolerance is
    /// not held: it reads the tier's buckets as full anyway (see the
    /// `gcra` module), so eviction gives *it* nothing it would not get
    /// (though a caller near the change's `now` may then bring the evicted
    /// key back with a new burst: see the module docs), and a change dated
    /// far ahead (a bogus clock reading, `Instant::MAX`) does not hold the
    /// tier's idle keys until then, which could be forever. The caller
    /// holds the table's lock.
    pub(super) fn holds(&self, tier: usize, micros: u64) -> bool {
        if micros >= join(&self.held_until[tier]) {
            return false;
        }
        let params = self.rules[tier][self.current(tier)].params();
        join(&self.held_from[tier]).saturating_sub(micros) <= params.tolerance() / params.scale
    }

    /// The tag of the words written under `tier`'s quota in force (loaded
    /// after the word it is compared with).
    #[inline]
    fn current(&self, tier: usize) -> usize {
        (self.generation[tier].load(Ordering::Acquire) & 1) as usize
    }

    /// Decides `n` tokens at `micros` for a word of `tier` holding `tat`
    /// under tag `tag`, loaded before this call: the new arrival time and
    /// its tag, or why not.
    #[inline]
    pub(super) fn decide(
        &self,
        tier: usize,
        tat: u64,
        tag: usize,
        micros: u64,
        n: u32,
    ) -> Result<(u64, usize), Refused> {
        let current = self.current(tier);
        // A branch on the tag, each arm reading its slot at a fixed
        // address (as in `tagged`).
        let rule = if current == 0 {
            &self.rules[tier][0]
        } else {
            &self.rules[tier][1]
        };
        let burst = rule.burst();
        if n > burst {
            return Err(Refused::Never(burst));
        }
        let params = rule.params();
        let tat = if tag == current {
            tat
        } else {
            self.convert(tier, current, &params, tat)
        };
        match params.decide(tat, micros, n) {
            Ok(new) => Ok((new, current)),
            Err(wait) => Err(Refused::Wait(wait)),
        }
    }

    /// Whole tokens of a word of `tier` (`tat` under `tag`) at `micros`,
    /// under the quota in force.
    #[inline]
    pub(super) fn available(&self, tier: usize, tat: u64, tag: usize, micros: u64) -> u64 {
        let (params, tat, current) = self.state(tier, tat, tag);
        params.available_of(tat, micros, self.rules[tier][current].burst())
    }

    /// What a word of `tier` holds at `micros` under the quota in force:
    /// its whole tokens and its time until full ([`available`](Self::available)
    /// and the exact time, from one read of the rule).
    #[inline]
    pub(super) fn left(&self, tier: usize, tat: u64, tag: usize, micros: u64) -> KeyedLeft {
        let (params, tat, current) = self.state(tier, tat, tag);
        KeyedLeft {
            tokens: params.available_of(tat, micros, self.rules[tier][current].burst()) as u32,
            until_full: Duration::from_micros(params.until_full(tat, micros)),
        }
    }

    /// `tat`, written under the slot other than `current`, converted to
    /// `params` (`current`'s) at the change's `now`.
    #[cold]
    #[inline(never)]
    fn convert(&self, tier: usize, current: usize, params: &Params, tat: u64) -> u64 {
        let old = self.rules[tier][1 - current].params();
        let at = join(&self.rules[tier][current].at);
        converted(&old, params, tat, at)
    }

    /// The state of a word of `tier` (`tat` under `tag`, loaded before
    /// this call) under the quota in force: its parameters and arrival
    /// time (converted if need be), and the tag it would be written with.
    #[inline]
    pub(super) fn state(&self, tier: usize, tat: u64, tag: usize) -> (Params, u64, usize) {
        let current = self.current(tier);
        let params = self.rules[tier][current].params();
        let tat = if tag == current {
            tat
        } else {
            self.convert(tier, current, &params, tat)
        };
        (params, tat, current)
    }

    /// `f` of the slot in force in `tier`, as one consistent reading
    /// (repeated if a change was published meanwhile).
    fn read<R>(&self, tier: usize, f: impl Fn(&Rule) -> R) -> R {
        let mut generation = self.generation[tier].load(Ordering::Acquire);
        loop {
            let result = f(&self.rules[tier][(generation & 1) as usize]);
            fence(Ordering::Acquire);
            let again = self.generation[tier].load(Ordering::Acquire);
            if again == generation {
                return result;
            }
            generation = again;
        }
    }

    /// The burst in force in `tier` (one load, where [`quota`](Self::quota)
    /// re-derives the whole quota).
    pub(super) fn burst(&self, tier: usize) -> u32 {
        self.read(tier, Rule::burst)
    }

    /// The parameters in force in `tier`.
    pub(super) fn params(&self, tier: usize) -> Params {
        self.read(tier, Rule::params)
    }

    /// The tag of the words written under `tier`'s quota in force, for a
    /// caller holding the table's lock (under which it cannot change).
    pub(super) fn tag(&self, tier: usize) -> usize {
        self.current(tier)
    }

    /// `tier`'s generation: it changes with every quota published.
    pub(super) fn generation(&self, tier: usize) -> u32 {
        self.generation[tier].load(Ordering::Acquire)
    }

    /// The quota in force in `tier`.
    pub(super) fn quota(&self, tier: usize) -> Quota {
        loop {
            if let Some(quota) = self.read(tier, Rule::quota) {
                return quota;
            }
        }
    }

    /// Makes `quota` (with its bucket-word `params`) `tier`'s quota from
    /// `at` (µs) on; returns the quota replaced. The caller holds the
    /// table's lock and then sweeps the tier's words.
    pub(super) fn publish(&self, tier: usize, quota: &Quota, params: &Params, at: u64) -> Quota {
        let replaced = self.quota(tier);
        if quota.burst() < replaced.burst() {
            // See `holds`: the replaced quota's whole burst, refilled from
            // empty, rounded up; the latest such end is kept (a later
            // change with a shorter span must not release it early),
            // unless it comes from a change dated further ahead of this
            // one than the tolerance, which holds nobody near this `now`.
            let span = (u128::from(replaced.burst()) * u128::from(replaced.period().as_micros()))
                .div_ceil(u128::from(replaced.tokens()));
            let until = u64::try_from(u128::from(at) + span).unwrap_or(u64::MAX);
            let ahead = join(&self.held_from[tier]).saturating_sub(at);
            if until > join(&self.held_until[tier]) || ahead > params.tolerance() / params.scale {
                for (word, half) in self.held_until[tier].iter().zip(halves(until)) {
                    word.store(half, Ordering::Relaxed);
                }
                for (word, half) in self.held_from[tier].iter().zip(halves(at)) {
                    word.store(half, Ordering::Relaxed);
                }
            }
        }
        let generation = self.generation[tier].load(Ordering::Relaxed);
        // The slot not in force: only stale readers look at it, and the
        // fence makes those that see this see their word moved (see
        // `tagged`).
        fence(Ordering::Release);
        self.rules[tier][(!generation & 1) as usize].store(quota, params, at);
        self.generation[tier].store(generation.wrapping_add(1), Ordering::Release);
        replaced
    }
}

/// A bucket word's arrival time `tat` under `old` converted to `new` at
/// `at` µs: the state `old` reads then, carried over with no token granted
/// (see the module docs).
pub(super) fn converted(old: &Params, new: &Params, tat: u64, at: u64) -> u64 {
    let ahead = old.ahead(tat, old.scaled(at));
    let drain = design::carried(new, old, ahead);
    design::arrival(new.scaled(at).wrapping_add(drain) & new.mask)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::bucket::{FullPolicy, KeyedLimiter, Quota};
    use crate::sync::Ordering;
    use crate::{Duration, Instant};

    /// A tier's generation wraps after 2^32 changes, from `u32::MAX` (odd:
    /// slot 1) to 0 (slot 0): the tags' parity runs on, and the key's
    /// tokens carry over each change as documented (no new burst, clamped
    /// to the new one, refilled at the new rate), a new key gets the burst.
    #[test]
    fn quota_changes_across_the_generations_wrap() {
        let per_sec = |n| Quota::per_second(n).unwrap();
        let l: KeyedLimiter<u32, 8> = KeyedLimiter::new(per_sec(10), FullPolicy::Reject).unwrap();
        // An even generation, as the slot in force (0) and the words' tags.
        l.tiers.generation[0].store(u32::MAX - 1, Ordering::Relaxed);
        let now = Instant::from_secs(10);
        l.try_acquire_n(&1, 8, now).unwrap();
        // Tokens left: 2, then each change keeps them, clamped.
        for (i, (tokens, left)) in [(100, 2), (1, 1), (50, 1), (10, 1)].into_iter().enumerate() {
            assert!(l.set_quota(0, per_sec(tokens), now).is_ok());
            assert_eq!(l.quota(0), Some(per_sec(tokens)), "change {i}");
            assert_eq!(l.available(&1, now), left, "change {i}");
            assert_eq!(l.available(&2, now), tokens, "change {i}");
        }
        assert_eq!(l.quota_version(0), Some(2), "wrapped");
        // 1 of 10 after the change to 1 a second, then 10 a second.
        assert_eq!(l.available(&1, now + Duration::from_millis(300)), 4);
        assert!(l
            .try_acquire_n(&1, 4, now + Duration::from_millis(300))
            .is_ok());
        assert!(l.try_acquire(&1, now + Duration::from_millis(300)).is_err());
    }
}
