//! The [`TokenBucket`](super::TokenBucket)'s state: one arrival-time word
//! tagged with the quota slot it was written under, so that the quota can
//! change under `&self` while decisions stay one load and one CAS.
//!
//! # Layout
//!
//! ```text
//! word      TatWord: u64 with native 64-bit atomics, u32 on Cortex-M
//!           = now·scale + offset + ahead  (mod 2^W), in half units;
//!           its lowest bit (the tag) names the slot it was written under
//! slots[2]  interval, capacity, offset, reset: TatWord; scale, tokens,
//!           period (two halves): u32
//! ```
//!
//! The kernel is `gcra`'s, in *half units*: a slot holds twice the quota's
//! scale, emission interval and capacity, so every drain (`ahead`) is even,
//! and an `offset`, added to the scaled `now`, with the parity of the
//! slot's index. Every value the word takes is `now·scale + offset +
//! ahead`: its parity is the offset's, so its lowest bit names the slot it
//! was written under. `FRESH` (0: tag 0, the slot a bucket starts with) is
//! a bucket never used, full at any time; nothing writes it again.
//!
//! Half units cost one bit of range: the quota must fit a `W − 1`-bit
//! arrival time ([`fits`]).
//!
//! # Protocol
//!
//! * A decision loads the word (acquire), reads the slot its tag names
//!   (relaxed; behind a branch on the tag, so that the reads need not
//!   wait for the word), decides, and CASes the word from exactly the value it
//!   loaded: the one CAS both checks which quota the word was written
//!   under and moves it. A refusal writes nothing; it re-reads the word
//!   after an acquire fence and decides again if the word moved (the word
//!   is the slots' sequence number, as in a seqlock). `available`,
//!   `snapshot` and `quota` read the same way.
//! * A change (`set_quota`, `reset`, `restore`), serialised with the other
//!   changes by the critical section (or `&mut`), writes the *other* slot
//!   — the quota, and an offset chosen so that `word + 1` reads as the
//!   state carried over — then CASes the word to `word + 1` (flipping the
//!   tag), starting again from the new word if a decision moved it first.
//!   The slot becomes current in the same CAS that publishes the state
//!   carried over: no decision pairs a word with another slot's quota, and
//!   none waits for a change.
//!
//! # Stale readers
//!
//! A slot is rewritten two changes after it was last current. A decision
//! that loaded the word before the first of them and reads the slot during
//! the second may see a mix of two quotas, and cannot act on it: every
//! write moves the word forward (a decision by at least one interval, or
//! by the time elapsed since a full bucket's arrival time; a change by
//! one), so the word holds the value that decision loaded again only
//! after its writes have gone a whole `2^W` half units around — scaled
//! time passing 2⁶³ units on 64 bits, or on Cortex-M 2³¹ (35.8 min at
//! scale 1, 2.1 s at the largest 32-bit scale, 1 023), a `reset` in
//! between counting for up to half of that — and the decision's CAS, or
//! its refusal's re-read, fails. The kernel's arithmetic wraps, so such a
//! mix cannot panic either.
//!
//! # Carrying the state over
//!
//! A quota change keeps the tokens available at its `now`, as a fraction
//! of a token, rounded toward fewer and clamped to the new burst. A bucket
//! that `now` reads as overdrawn (a `now` behind an admission already made:
//! drained past its capacity) keeps its overdraft as *time*: the change
//! cannot make a stale clock forgive a debt.

use super::gcra::{Params, BACKWARD_TOLERANCE_MICROS, FRESH};
use super::quota::Quota;
use crate::sync::{const_fn_unless_loom, fence, AtomicU32, Ordering, Tat, TatWord, TAT_BITS};
use crate::{Duration, Instant};

/// Whether a quota's parameters fit the tagged word: a `W − 1`-bit arrival
/// time (see the module docs).
///
/// * 64 bits: `capacity < 2^61` scaled units, so that `ahead + cost`
///   (below `2^63 + 2^62` half units) never overflows.
/// * 32 bits: `capacity` plus the ~1.05 s backward tolerance below `2^30`
///   scaled units, so that at least half the word reads "full" (as in
///   `gcra` on 32 bits, one bit down).
pub(super) const fn fits(scale: u64, capacity: u64) -> bool {
    if TAT_BITS == 64 {
        capacity < 1 << 61
    } else {
        match BACKWARD_TOLERANCE_MICROS.checked_mul(scale) {
            Some(tolerance) => capacity.saturating_add(tolerance) < 1 << 30,
            None => false,
        }
    }
}

/// The largest drain read as "drained" (anything further ahead reads as a
/// full bucket), in half units: half the word minus one unit on 64 bits;
/// the capacity plus the backward tolerance on 32 bits.
#[inline]
const fn horizon(capacity: Tat, scale: Tat) -> Tat {
    if TAT_BITS == 64 {
        Tat::MAX / 2 - 1
    } else {
        // Below 2^31 each for a valid quota, so a mix of two cannot wrap.
        capacity.wrapping_add(scale.wrapping_mul(BACKWARD_TOLERANCE_MICROS as Tat))
    }
}

/// A word value as a `u64` (the identity where the word is 64 bits).
#[inline]
#[allow(clippy::useless_conversion)]
pub(super) fn wide(value: Tat) -> u64 {
    u64::from(value)
}

/// A word value known to fit 32 bits (a scale, a count of whole tokens)
/// as a `u32` (the identity where the word is 32 bits).
#[allow(clippy::unnecessary_cast)]
const fn low(value: Tat) -> u32 {
    value as u32
}

/// A slot's decision parameters, loaded: half units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    /// Half units per microsecond (twice the quota's scale).
    scale: Tat,
    /// Twice the emission interval.
    interval: Tat,
    /// Twice `burst · interval`.
    capacity: Tat,
    /// Added to the scaled `now`; its parity is the slot's index.
    offset: Tat,
}

/// Why a decision refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Admitted after this many microseconds (rounded up).
    Wait(Tat),
    /// Never: more than the burst, which is given.
    Never(u32),
}

impl Rule {
    /// The rule of `quota` (before any offset).
    const fn of(quota: &Quota) -> Self {
        let p = quota.params();
        Self {
            scale: 2 * p.scale as Tat,
            interval: 2 * p.interval as Tat,
            capacity: 2 * p.capacity as Tat,
            offset: 0,
        }
    }

    /// `now` in wrapped half units.
    #[inline]
    fn now(&self, micros: u64) -> Tat {
        (micros as Tat)
            .wrapping_mul(self.scale)
            .wrapping_add(self.offset)
    }

    /// How far `word` is ahead of `now` (0 when the bucket is full).
    #[inline]
    fn ahead(&self, word: Tat, now: Tat) -> Tat {
        let ahead = word.wrapping_sub(now);
        if word == FRESH as Tat || ahead > horizon(self.capacity, self.scale) {
            0
        } else {
            ahead
        }
    }

    /// Decides `n ≥ 1` tokens at `micros` against `word`: the new word, or
    /// why not.
    #[inline]
    fn decide(&self, word: Tat, micros: u64, n: u32) -> Result<Tat, Option<Tat>> {
        let now = self.now(micros);
        let ahead = self.ahead(word, now);
        let cost = if n == 1 {
            // Within any burst (and a mix of two slots is never acted on).
            self.interval
        } else {
            match (n as Tat).checked_mul(self.interval) {
                Some(cost) if cost <= self.capacity => cost,
                _ => return Err(None),
            }
        };
        // Cannot wrap with one quota's values (see `fits`).
        let needed = ahead.wrapping_add(cost);
        if needed <= self.capacity {
            let new = now.wrapping_add(needed);
            // `FRESH` only ever starts a bucket: one unit later instead,
            // which only admits less (and keeps the tag: 0 is even).
            Ok(if new == FRESH as Tat { 2 } else { new })
        } else {
            Err(Some((needed - self.capacity).div_ceil(self.scale)))
        }
    }

    /// Whole tokens available at `micros` (zero while `micros` is behind a
    /// previous call's).
    fn available(&self, word: Tat, micros: u64) -> u32 {
        let ahead = self.ahead(word, self.now(micros));
        low(self.capacity.saturating_sub(ahead) / self.interval)
    }

    /// Microseconds until the bucket is full again, rounded up.
    fn until_full(&self, word: Tat, micros: u64) -> Tat {
        self.ahead(word, self.now(micros)).div_ceil(self.scale)
    }

    /// The drain, in `self`'s half units, that carries a drain of `ahead`
    /// under `old` over ([`Params::carried`]).
    fn carried(&self, old: &Self, ahead: Tat) -> Tat {
        2 * self.units().carried(&old.units(), wide(ahead / 2)) as Tat
    }

    /// The same rule in whole scaled units, as the kernel's parameters
    /// (for [`Params::carried`], which reads no `mask`).
    fn units(&self) -> Params {
        Params {
            scale: wide(self.scale / 2),
            interval: wide(self.interval / 2),
            capacity: wide(self.capacity / 2),
            horizon: wide(horizon(self.capacity, self.scale) / 2),
            mask: wide(Tat::MAX / 2),
        }
    }
}

/// The word and its two quota slots, field by field (the two slots' values
/// side by side): the rule's values, the word a reset left (so that
/// resetting again changes nothing), then the quota as given (for
/// [`Tagged::quota`]; its burst is `capacity / interval`).
#[derive(Debug)]
pub(crate) struct Tagged {
    /// `now·scale + offset + ahead` under the slot its lowest bit names.
    word: TatWord,
    interval: [TatWord; 2],
    capacity: [TatWord; 2],
    offset: [TatWord; 2],
    /// The word as a reset left it; of the other parity if the slot was
    /// not published by a reset (never a word under it).
    reset: [TatWord; 2],
    scale: [AtomicU32; 2],
    tokens: [AtomicU32; 2],
    /// The period in µs: low halves, then high halves.
    period: [[AtomicU32; 2]; 2],
}

/// A slot's index: the tag of the words written under it.
#[inline]
fn slot(word: Tat) -> usize {
    (word & 1) as usize
}

impl Tagged {
    const_fn_unless_loom! {
        /// A full bucket under `quota`, in slot 0. Slot 1 holds the same
        /// quota (with an odd offset), so that even a stale read of it finds
        /// valid values.
        pub(super) fn new(quota: &Quota) -> Self {
            let rule = Rule::of(quota);
            let tokens = quota.tokens();
            let period = quota.period().as_micros();
            let (lo, hi) = (period as u32, (period >> 32) as u32);
            Self {
                word: TatWord::new(FRESH as Tat),
                interval: [TatWord::new(rule.interval), TatWord::new(rule.interval)],
                capacity: [TatWord::new(rule.capacity), TatWord::new(rule.capacity)],
                offset: [TatWord::new(0), TatWord::new(1)],
                reset: [TatWord::new(1), TatWord::new(0)],
                scale: [AtomicU32::new(low(rule.scale)), AtomicU32::new(low(rule.scale))],
                tokens: [AtomicU32::new(tokens), AtomicU32::new(tokens)],
                period: [
                    [AtomicU32::new(lo), AtomicU32::new(lo)],
                    [AtomicU32::new(hi), AtomicU32::new(hi)],
                ],
            }
        }
    }

    /// Slot `i`'s rule.
    #[inline]
    fn rule(&self, i: usize) -> Rule {
        Rule {
            scale: Tat::from(self.scale[i].load(Ordering::Relaxed)),
            interval: self.interval[i].load(Ordering::Relaxed),
            capacity: self.capacity[i].load(Ordering::Relaxed),
            offset: self.offset[i].load(Ordering::Relaxed),
        }
    }

    /// Slot `i`'s burst.
    fn burst(&self, i: usize) -> u32 {
        let rule = self.rule(i);
        low(rule.capacity / rule.interval)
    }

    /// Slot `i`'s quota as given: `(tokens, period in µs, burst)`.
    fn parts(&self, i: usize) -> (u32, u64, u32) {
        let [lo, hi] = [&self.period[0][i], &self.period[1][i]].map(|h| h.load(Ordering::Relaxed));
        (
            self.tokens[i].load(Ordering::Relaxed),
            u64::from(hi) << 32 | u64::from(lo),
            self.burst(i),
        )
    }

    /// Writes `quota` with `offset` and `reset` into slot `i`.
    fn store(&self, i: usize, quota: &Quota, offset: Tat, reset: Tat) {
        let rule = Rule::of(quota);
        let period = quota.period().as_micros();
        self.interval[i].store(rule.interval, Ordering::Relaxed);
        self.capacity[i].store(rule.capacity, Ordering::Relaxed);
        self.offset[i].store(offset, Ordering::Relaxed);
        self.reset[i].store(reset, Ordering::Relaxed);
        self.scale[i].store(low(rule.scale), Ordering::Relaxed);
        self.tokens[i].store(quota.tokens(), Ordering::Relaxed);
        self.period[0][i].store(period as u32, Ordering::Relaxed);
        self.period[1][i].store((period >> 32) as u32, Ordering::Relaxed);
    }

    /// Takes `n ≥ 1` tokens at `now`, all or none: a load, then a CAS from
    /// exactly the word the decision was made on. A refusal is handed to
    /// `refused` (on the cold path) once confirmed.
    #[inline]
    pub(super) fn take<E>(
        &self,
        n: u32,
        now: Instant,
        refused: impl FnOnce(Refusal) -> E,
    ) -> Result<(), E> {
        let micros = now.as_micros();
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            // A branch on the tag, each arm reading its slot at a fixed
            // address: predicted, so the reads need not wait for the word
            // (reading through an address computed from the word put a
            // second load after it on every call: +17 % per decision on
            // x86-64).
            let rule = if word & 1 == 0 {
                self.rule(0)
            } else {
                self.rule(1)
            };
            match rule.decide(word, micros, n) {
                Ok(new) => {
                    match self.word.compare_exchange_weak(
                        word,
                        new,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(()),
                        Err(actual) => word = actual,
                    }
                }
                Err(why) => match self.confirm(word) {
                    Ok(()) => {
                        return Err(refused(match why {
                            Some(wait) => Refusal::Wait(wait),
                            None => Refusal::Never(low(rule.capacity / rule.interval)),
                        }))
                    }
                    Err(moved) => word = moved,
                },
            }
        }
    }

    /// A refusal decided on `word`: `Ok` if the word has not moved since
    /// (so the slot read was `word`'s), else `Err` with the word now.
    #[cold]
    #[inline(never)]
    fn confirm(&self, word: Tat) -> Result<(), Tat> {
        fence(Ordering::Acquire);
        let now = self.word.load(Ordering::Acquire);
        if now == word {
            Ok(())
        } else {
            Err(now)
        }
    }

    /// `f` of the current slot, its rule and the word, as one consistent
    /// reading (repeated if the word moved meanwhile).
    fn read<R>(&self, f: impl Fn(usize, &Rule, Tat) -> R) -> R {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let result = f(slot(word), &self.rule(slot(word)), word);
            fence(Ordering::Acquire);
            let again = self.word.load(Ordering::Acquire);
            if again == word {
                return result;
            }
            word = again;
        }
    }

    /// The current quota.
    pub(super) fn quota(&self) -> Quota {
        rebuild(self.read(|i, _, _| self.parts(i)))
    }

    /// Whole tokens available at `now`.
    pub(super) fn available(&self, now: Instant) -> u32 {
        self.read(|_, rule, word| rule.available(word, now.as_micros()))
    }

    /// Time until the bucket is full again at `now`, rounded up.
    pub(super) fn until_full(&self, now: Instant) -> Duration {
        let micros = self.read(|_, rule, word| rule.until_full(word, now.as_micros()));
        Duration::from_micros(wide(micros))
    }

    /// Changes the quota at `now`, carrying the state over; returns the
    /// quota replaced. Callers serialise changes.
    pub(super) fn set_quota(&self, quota: &Quota, now: Instant) -> Quota {
        let micros = now.as_micros();
        self.republish(Some(quota), false, |old, word, new| {
            let ahead = old.ahead(word, old.now(micros));
            Some(position(new, micros, new.carried(old, ahead)))
        })
    }

    /// Refills the bucket: its arrival time moves back from its last
    /// admission's earliest instant (`capacity` before it) by half the
    /// range that reads as full, so that it reads full for any `now`
    /// within that half of the last admission, either way (years on 64
    /// bits; ±17.9 min at scale 1 on 32, ±0.5 s at scale 1 023). Still a
    /// time: the next decision moves the word forward (by about half its
    /// range), like any other. A bucket never used stays `FRESH`. Callers
    /// serialise changes.
    pub(super) fn reset(&self) {
        self.republish(None, true, |rule, word, _| {
            let back = (Tat::MAX - horizon(rule.capacity, rule.scale)) / 4 * 2; // even
            let reset = self.reset[slot(word)].load(Ordering::Relaxed);
            (word != FRESH as Tat && word != reset).then(|| {
                word.wrapping_sub(rule.offset)
                    .wrapping_sub(rule.capacity)
                    .wrapping_sub(back)
            })
        });
    }

    /// Sets the bucket drained by `until_full` at `now` (clamped to empty).
    /// Callers serialise changes.
    pub(super) fn restore(&self, until_full: Duration, now: Instant) {
        let (until, micros) = (until_full.as_micros(), now.as_micros());
        self.republish(None, false, |_, _, rule| {
            let drain = until
                .saturating_mul(wide(rule.scale))
                .min(wide(rule.capacity));
            Some(position(rule, micros, drain as Tat))
        });
    }

    /// Publishes `quota` (the current one if `None`) with the state
    /// `position` computes from the current rule, the word and the new
    /// rule — `now·scale + ahead` in the new rule's half units — or changes
    /// nothing if it is `None`; marked as a reset's if `reset`. Returns the
    /// quota replaced.
    fn republish(
        &self,
        quota: Option<&Quota>,
        reset: bool,
        position: impl Fn(&Rule, Tat, &Rule) -> Option<Tat>,
    ) -> Quota {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let replaced = rebuild(self.parts(slot(word)));
            let quota = quota.unwrap_or(&replaced);
            let Some(position) = position(&self.rule(slot(word)), word, &Rule::of(quota)) else {
                return replaced;
            };
            let next = match word.wrapping_add(1) {
                0 => 2, // never `FRESH` again (and still even)
                next => next,
            };
            // The next slot is not current: only stale readers look at it,
            // and the fence makes those that see this see the word move.
            fence(Ordering::Release);
            let mark = if reset { next } else { next.wrapping_add(1) };
            self.store(slot(next), quota, next.wrapping_sub(position), mark);
            match self
                .word
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return replaced,
                Err(actual) => word = actual,
            }
        }
    }

    /// The word, for `Debug`.
    pub(super) fn word(&self) -> Tat {
        self.word.load(Ordering::Relaxed)
    }
}

/// The quota a slot was written from.
fn rebuild((tokens, period, burst): (u32, u64, u32)) -> Quota {
    match Quota::build(tokens, Duration::from_micros(period), burst) {
        Ok(quota) => quota,
        // Stored only from a valid quota, and read back whole.
        Err(_) => unreachable!("a slot holds a valid quota"),
    }
}

/// The word position, in `rule`'s half units, of a bucket drained by
/// `ahead` at `micros`: `now·scale + ahead`, before the offset.
fn position(rule: &Rule, micros: u64, ahead: Tat) -> Tat {
    (micros as Tat).wrapping_mul(rule.scale).wrapping_add(ahead)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn quota(tokens: u32, period_micros: u64, burst: u32) -> Quota {
        Quota::build(tokens, Duration::from_micros(period_micros), burst).unwrap()
    }

    fn quotas() -> [Quota; 5] {
        [
            quota(1, 1_000_000, 1),
            quota(3, 1_000_000, 7),
            quota(10_000_000, 1_000_000, 100),
            quota(1_009, 1_000_000, 3), // scale 1 009: near the 32-bit limit
            quota(1, 60_000_000, 10),
        ]
    }

    #[test]
    fn every_write_keeps_the_tag_of_its_slot() {
        let t = Tagged::new(&quotas()[1]);
        let mut now = 1_000_000_000u64;
        for (i, q) in quotas().iter().cycle().take(40).enumerate() {
            t.set_quota(q, Instant::from_micros(now));
            let tag = (i + 1) % 2;
            assert_eq!(slot(t.word()), tag);
            assert_eq!(t.offset[tag].load(Ordering::Relaxed) & 1, tag as Tat);
            for _ in 0..3 {
                let _ = t.take(1, Instant::from_micros(now), |r| r);
                assert_eq!(slot(t.word()), tag, "a decision keeps the tag");
                now += 77_777;
            }
            assert_eq!(t.quota(), *q);
        }
        // reset and restore switch slots too.
        let before = slot(t.word());
        t.reset();
        assert_eq!(slot(t.word()), 1 - before);
        t.restore(Duration::from_secs(1), Instant::from_micros(now));
        assert_eq!(slot(t.word()), before);
    }

    #[test]
    fn nothing_writes_fresh_again() {
        // Arrange for the next decision to land on 0: it lands on 2.
        // One per µs: scale and interval 2 half units; `now` at 2^W − 2.
        let t = Tagged::new(&quota(1, 1, 1));
        let rule = t.rule(0);
        let micros = wide(Tat::MAX / 2);
        assert_eq!(rule.now(micros).wrapping_add(rule.interval), 0);
        assert_eq!(rule.decide(FRESH as Tat, micros, 1), Ok(2));
        // A change from the last odd word skips 0.
        t.word.store(Tat::MAX, Ordering::Relaxed);
        t.reset();
        assert_eq!(t.word(), 2);
    }

    /// A stale decision may read a slot while it is rewritten: any mix of
    /// two quotas' values must decide without panicking (its result is
    /// discarded by the failing CAS or re-read).
    #[test]
    fn a_mix_of_two_slots_never_panics() {
        let rules = quotas().map(|q| Rule::of(&q));
        let words = [
            0,
            1,
            2,
            Tat::MAX,
            Tat::MAX / 2,
            Tat::MAX / 2 + 1,
            12_345_678,
        ];
        for a in &rules {
            for b in &rules {
                let mixes = [
                    Rule {
                        interval: b.interval,
                        ..*a
                    },
                    Rule {
                        capacity: b.capacity,
                        ..*a
                    },
                    Rule {
                        scale: b.scale,
                        ..*a
                    },
                    Rule {
                        scale: b.scale,
                        capacity: b.capacity,
                        offset: 1,
                        ..*a
                    },
                ];
                for rule in mixes {
                    for &word in &words {
                        for micros in [0, 1, 999_999_999, u64::MAX / 3, u64::MAX] {
                            for n in [1, 2, 100, u32::MAX] {
                                let _ = rule.decide(word, micros, n);
                            }
                            let _ = (rule.available(word, micros), rule.until_full(word, micros));
                            let _ = rule.carried(b, rule.ahead(word, rule.now(micros)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_range_is_one_bit_less_than_the_kernels() {
        if TAT_BITS == 64 {
            assert!(fits(1, (1 << 61) - 1));
            assert!(!fits(1, 1 << 61));
            // One per 2^61 − 1 µs fits, one per 2^61 µs does not.
            assert!(Quota::with_period(Duration::from_micros((1 << 61) - 1)).is_ok());
            assert!(Quota::with_period(Duration::from_micros(1 << 61)).is_err());
        } else {
            // capacity + 2^20·scale < 2^30 scaled units.
            assert!(fits(1, (1 << 30) - (1 << 20) - 1));
            assert!(!fits(1, (1 << 30) - (1 << 20)));
            assert!(fits(1_023, 0));
            assert!(!fits(1_024, 0));
        }
    }

    #[test]
    fn a_fresh_bucket_is_full_at_any_time() {
        for q in quotas() {
            let t = Tagged::new(&q);
            for micros in [0, 1 << 50, u64::MAX / 3, u64::MAX] {
                assert_eq!(t.available(Instant::from_micros(micros)), q.burst());
            }
        }
    }
}
