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
//! That kernel is the `rule` module's [`Rule`]; this one holds the word,
//! the slots and the protocol below.
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

mod rule;

pub(super) use self::rule::{fits, wide, Refusal};
use self::rule::{horizon, low, Rule};
use super::gcra::FRESH;
use super::quota::Quota;
use crate::sync::{const_fn_unless_loom, fence, AtomicU32, Ordering, Tat, TatWord};
use crate::{Duration, Instant};

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
    /// admission's earliest instant (`capacity` before it) by half of
    /// what reads as full from every instant of that admission's possible
    /// span (the word less the horizon and the capacity), so that it
    /// reads full for any `now` within that half of the last admission,
    /// either way: years on 64 bits; on 32, `2³⁰ − capacity − tolerance/2`
    /// scaled units (±17.9 min at scale 1 with a short burst span, ±0.5 s
    /// at scale 1 023). Still a time: the next decision moves the word
    /// forward, like any other. A bucket never used stays `FRESH`. Callers
    /// serialise changes.
    ///
    /// (Leaving the capacity out of the half, as this did, put a bucket
    /// whose burst span is over a third of the 32-bit word, such as 28 at
    /// 22 a minute, back *inside* the horizon: reset at the instant of an
    /// admission, it read 5 tokens of 28.)
    pub(super) fn reset(&self) {
        self.republish(None, true, |rule, word, _| {
            let full = Tat::MAX
                .saturating_sub(horizon(rule.capacity, rule.scale))
                .saturating_sub(rule.capacity);
            let back = full / 4 * 2; // even
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
mod tests;
