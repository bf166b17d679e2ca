//! [`RetryBudget`]: retries limited to a fraction of recent first attempts
//! plus a small floor, shared by every caller of a policy.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fusebox::{Clock, Instant};

use crate::TokioClock;

/// Slots of the sliding window.
const SLOTS: usize = 10;

/// Why a [`RetryBudget`] could not be built.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{BudgetError, RetryBudget};
///
/// assert_eq!(RetryBudget::new(Duration::ZERO, 20, 10).unwrap_err(), BudgetError::WindowTooShort);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetError {
    /// The window was shorter than 10 µs (one microsecond per slot).
    WindowTooShort,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry budget window must be at least 10 µs")
    }
}

impl std::error::Error for BudgetError {}

/// A retry budget: a retry is admitted only if, in the window at that
/// moment, the retries admitted (this one included) are at most
/// `floor + ⌊percent × first attempts / 100⌋`, counting the first attempts
/// (deposits) and retries (withdrawals) made in that window.
///
/// So when a dependency fails, a fleet of callers sharing a budget adds at
/// most about `percent` % to the load (plus the floor), instead of
/// multiplying it by the number of attempts.
///
/// # The window
///
/// Time is cut into 10 slots of `window / 10`; the window at `now` is the
/// slot holding `now` and the nine before it (so it spans between 90 % and
/// 100 % of `window`). The bound above holds at every retry, exactly and
/// whatever the concurrency: a withdrawal is decided and counted under
/// one lock, with the window's deposits it was decided on. A retry stays
/// in the windows after it when the first attempts that bought it have
/// left them, so a window's retries are bounded by its first attempts
/// *and those of the nine slots before it*: at most `floor +
/// ⌊percent × first attempts of those 19 slots / 100⌋` (first attempts at
/// a steady rate: twice the percentage, at a window's start, at worst).
///
/// # Clocks that jump
///
/// A `now` earlier than the latest one seen reads as that latest slot: a
/// stale clock never reopens an old window, nor gets a fresh floor. A `now`
/// later than any seen moves the window there, as after an idle spell
/// (first attempts and retries before it are forgotten).
///
/// A clock can also jump forward and come back (a bad NTP step, a corrupt
/// time, a careless caller of the `*_at` forms): one far-future `now`,
/// then normal ones. Those read as the far-future slot at first, but not
/// for good: once readings more than a window behind the latest slot have
/// come for a whole window of their own time (the last a window or more
/// after the first), with no reading within a window of the latest slot
/// between them, the budget takes it that its clock stepped back and
/// resumes at the last one. It carries the counts of the window it leaves
/// into the slot it resumes at, and keeps no other, so it forgets nothing
/// at once (it fails closed); they leave the window a window later, like
/// any count. So after one `now` of any size, up to `u64::MAX` µs, the
/// window rolls with the normal clock again within two windows of normal
/// readings; a clock stepped back by many windows is followed within two
/// windows too. A retry counted before a resume and refunded after it is
/// not given back.
/// Callers reading two clocks more than a window apart do not share one
/// budget well: it follows whichever alone keeps reading for a window.
///
/// ```
/// use std::time::Duration;
/// use fusebox::Instant;
/// use fusebox_std::policy::RetryBudget;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 1)?; // 1 retry per 10 s
/// assert!(budget.try_withdraw_at(Instant::from_micros(u64::MAX))); // one corrupt reading
/// let granted: Vec<u64> = (100..140)
///     .filter(|&s| budget.try_withdraw_at(Instant::from_secs(s)))
///     .collect();
/// // 100..=109 s read as the far-future window, 110 s resumes (carrying
/// // its retry until 119 s), then one retry per window again.
/// assert_eq!(granted, [120, 130]);
/// # Ok::<(), fusebox_std::policy::BudgetError>(())
/// # }).unwrap();
/// ```
///
/// # Why a windowed counter and not the core's `TokenBucket`
///
/// A token bucket refills with *time*; this budget must refill with
/// *traffic* (first attempts), and forget it after the window, so that a
/// burst of traffic long ago buys no retries during today's outage. The
/// decision reads two quantities (deposits and withdrawals) and writes one,
/// so it is taken under a `std::sync::Mutex` held for a few dozen
/// instructions: exact, where a lock-free check-then-withdraw admits more
/// than the bound under contention (tower's `TpsBudget` is such a design).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox::Instant;
/// use fusebox_std::policy::RetryBudget;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // 20 % of first attempts, at least 1 retry per 10 s.
/// let budget = RetryBudget::new(Duration::from_secs(10), 20, 1)?;
/// let now = Instant::from_secs(1);
/// for _ in 0..10 {
///     budget.deposit_at(now);
/// }
/// let admitted = (0..10).filter(|_| budget.try_withdraw_at(now)).count();
/// assert_eq!(admitted, 3); // 1 + 20 % of 10
/// # Ok::<(), fusebox_std::policy::BudgetError>(())
/// # }).unwrap();
/// ```
pub struct RetryBudget {
    slot_micros: u64,
    percent: u32,
    floor: u32,
    clock: TokioClock,
    ring: Mutex<Ring>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The slot number (`now / slot width`) the counts belong to.
    index: u64,
    deposits: u64,
    withdrawals: u64,
}

/// The window's slots. No slot is numbered after `latest`: `latest` only
/// moves back when the budget resumes on a clock that stepped back, which
/// clears every slot but the one it resumes at.
#[derive(Debug, Default)]
struct Ring {
    slots: [Slot; SLOTS],
    /// The latest slot number seen.
    latest: u64,
    /// The first slot number read more than a window behind `latest`
    /// since the last reading within a window of it (`None`: none).
    behind_since: Option<u64>,
}

/// Where a reading at a slot number falls (see "Clocks that jump" in
/// [`RetryBudget`]'s docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// Within a window of the latest slot, or after it: counted in the
    /// later of the two.
    Current,
    /// More than a window behind, since the slot number `since`: counted
    /// in the latest slot.
    Behind { since: u64 },
    /// More than a window behind, and a whole window after the first such
    /// reading: the budget resumes at this slot number.
    Resume,
}

impl Ring {
    fn reading(&self, index: u64) -> Reading {
        if index >= self.latest.saturating_sub(SLOTS as u64 - 1) {
            return Reading::Current;
        }
        let since = self.behind_since.unwrap_or(index);
        if index.saturating_sub(since) >= SLOTS as u64 {
            Reading::Resume
        } else {
            Reading::Behind { since }
        }
    }

    /// The current slot (cleared if it held an older number) at slot
    /// number `index`, and the window's totals before this call.
    fn current(&mut self, index: u64) -> (&mut Slot, u64, u64) {
        let index = match self.reading(index) {
            Reading::Current => {
                self.behind_since = None;
                index.max(self.latest)
            }
            Reading::Behind { since } => {
                self.behind_since = Some(since);
                self.latest
            }
            Reading::Resume => {
                self.resume(index);
                index
            }
        };
        self.latest = index;
        let (deposits, withdrawals) = self.window(index);
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            // An older slot number's counts: not in the window (they were
            // not summed above either, being older than `oldest`).
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        (slot, deposits, withdrawals)
    }

    /// Resumes at slot number `index`, more than a window behind the
    /// latest: the ring holds the latest window's counts, in slot `index`
    /// (they leave the window a window later, as any count), and nothing
    /// else, so no slot is numbered after the latest.
    fn resume(&mut self, index: u64) {
        let (deposits, withdrawals) = self.window(self.latest);
        *self = Self {
            latest: index,
            ..Self::default()
        };
        self.slots[(index % SLOTS as u64) as usize] = Slot {
            index,
            deposits,
            withdrawals,
        };
    }

    /// The totals [`current`](Self::current) would read at slot number
    /// `index`, changing nothing.
    fn totals(&self, index: u64) -> (u64, u64) {
        match self.reading(index) {
            Reading::Current => self.window(index.max(self.latest)),
            // Resumed, the window holds the latest one's counts alone.
            Reading::Behind { .. } | Reading::Resume => self.window(self.latest),
        }
    }

    /// The sums of the slots numbered `index - 9 ..= index`.
    fn window(&self, index: u64) -> (u64, u64) {
        let oldest = index.saturating_sub(SLOTS as u64 - 1);
        let (mut deposits, mut withdrawals) = (0u64, 0u64);
        for slot in &self.slots {
            if (oldest..=index).contains(&slot.index) {
                deposits = deposits.saturating_add(slot.deposits);
                withdrawals = withdrawals.saturating_add(slot.withdrawals);
            }
        }
        (deposits, withdrawals)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &self.window())
            .field("percent", &self.percent)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl RetryBudget {
    /// A budget admitting `floor + percent % of first attempts` retries per
    /// `window` (rounded down to a multiple of 10 µs), read with a new
    /// [`TokioClock`]. `percent` and `floor` both 0 admit no retry at all
    /// (retries off).
    ///
    /// # Errors
    ///
    /// [`BudgetError::WindowTooShort`] for a window under 10 µs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // tower's default: 20 % of a 10 s window, plus 10 retries per window.
    /// let budget = RetryBudget::new(Duration::from_secs(10), 20, 10)?;
    /// assert_eq!(budget.window(), Duration::from_secs(10));
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn new(window: Duration, percent: u32, floor: u32) -> Result<Self, BudgetError> {
        Self::with_clock(window, percent, floor, TokioClock::new())
    }

    /// [`new`](Self::new) with this clock.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::{policy::RetryBudget, TokioClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let clock = TokioClock::new();
    /// let budget = RetryBudget::with_clock(Duration::from_secs(1), 50, 0, clock)?;
    /// budget.deposit();
    /// budget.deposit();
    /// assert!(budget.try_withdraw());
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn with_clock(
        window: Duration,
        percent: u32,
        floor: u32,
        clock: TokioClock,
    ) -> Result<Self, BudgetError> {
        let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let slot_micros = micros / SLOTS as u64;
        if slot_micros == 0 {
            return Err(BudgetError::WindowTooShort);
        }
        Ok(Self {
            slot_micros,
            percent,
            floor,
            clock,
            ring: Mutex::new(Ring::default()),
        })
    }

    /// The window (a multiple of 10 µs).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // Rounded down to a multiple of 10 µs (ten slots of whole microseconds).
    /// let budget = RetryBudget::new(Duration::from_micros(1_234), 10, 1)?;
    /// assert_eq!(budget.window(), Duration::from_micros(1_230));
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.slot_micros * SLOTS as u64)
    }

    /// Counts a first attempt now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let budget = RetryBudget::new(Duration::from_secs(10), 100, 0)?;
    /// assert!(!budget.try_withdraw());
    /// budget.deposit();
    /// assert!(budget.try_withdraw());
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn deposit(&self) {
        self.deposit_at(self.clock.now());
    }

    /// Asks for a retry now: `true` (and counted) if the window allows one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let budget = RetryBudget::new(Duration::from_secs(1), 0, 1)?; // the floor only
    /// assert!(budget.try_withdraw());
    /// assert!(!budget.try_withdraw());
    /// tokio::time::sleep(Duration::from_secs(1)).await; // a new window
    /// assert!(budget.try_withdraw());
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(self.clock.now())
    }

    /// Counts a first attempt at `now` (sans-clock form, for tests and for
    /// callers with their own clock on this budget's scale).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::Instant;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let budget = RetryBudget::new(Duration::from_secs(1), 100, 0)?;
    /// budget.deposit_at(Instant::from_millis(100));
    /// assert_eq!(budget.remaining_at(Instant::from_millis(100)), 1);
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn deposit_at(&self, now: Instant) {
        let mut ring = self.lock();
        let (slot, _, _) = ring.current(self.index(now));
        slot.deposits = slot.deposits.saturating_add(1);
    }

    /// Asks for a retry at `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::Instant;
    /// use fusebox_std::policy::RetryBudget;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let budget = RetryBudget::new(Duration::from_secs(1), 100, 0)?;
    /// budget.deposit_at(Instant::ZERO);
    /// assert!(!budget.try_withdraw_at(Instant::from_secs(1)), "the deposit has left the window");
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn try_withdraw_at(&self, now: Instant) -> bool {
        self.withdraw_at(now).is_some()
    }

    /// A retry at `now`: the number of the slot it was counted in (the
    /// latest one, for a stale `now`; the one resumed at, after a clock
    /// stepped back), or `None`.
    fn withdraw_at(&self, now: Instant) -> Option<u64> {
        let mut ring = self.lock();
        let (slot, deposits, withdrawals) = ring.current(self.index(now));
        // withdrawals + 1 <= floor + percent · deposits / 100, in integers.
        let allowed =
            u128::from(self.floor) * 100 + u128::from(self.percent) * u128::from(deposits);
        if (u128::from(withdrawals) + 1) * 100 <= allowed {
            slot.withdrawals = slot.withdrawals.saturating_add(1);
            Some(slot.index)
        } else {
            None
        }
    }

    /// Retries the window at `now` would still admit: what a retry asked
    /// at `now` would see (the latest window seen, for an earlier `now`,
    /// or the window the budget would resume at, see "Clocks that jump"
    /// above). A read: a `now` later than the budget's moves no window,
    /// and no `now` resumes it, so a forecast or a report read on another
    /// clock changes no decision.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use fusebox::Instant;
    /// # use fusebox_std::policy::RetryBudget;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let budget = RetryBudget::new(Duration::from_secs(1), 50, 0)?;
    /// budget.deposit_at(Instant::from_millis(10));
    /// budget.deposit_at(Instant::from_millis(20));
    /// assert_eq!(budget.remaining_at(Instant::from_millis(30)), 1);
    /// assert_eq!(budget.remaining_at(Instant::from_millis(1_100)), 0, "the window moved on");
    /// # Ok::<(), fusebox_std::policy::BudgetError>(())
    /// # }).unwrap();
    /// ```
    pub fn remaining_at(&self, now: Instant) -> u64 {
        let (deposits, withdrawals) = self.lock().totals(self.index(now));
        let allowed =
            (u128::from(self.floor) * 100 + u128::from(self.percent) * u128::from(deposits)) / 100;
        u64::try_from(allowed.saturating_sub(u128::from(withdrawals))).unwrap_or(u64::MAX)
    }

    fn index(&self, now: Instant) -> u64 {
        now.as_micros() / self.slot_micros
    }

    /// Asks for a retry now: the slot it was counted in (for a
    /// [`refund`](Self::refund)), or `None`.
    pub(crate) fn withdraw(&self) -> Option<u64> {
        self.withdraw_at(self.clock.now())
    }

    /// Gives back a retry counted in slot `index` that never ran (its
    /// caller was cancelled before its attempt started, or a policy's layer
    /// refused the attempt), if that slot is still in the
    /// ring (otherwise it has left the window already, or was carried
    /// into another slot when the budget resumed on a clock that stepped
    /// back: then the retry stays counted). The slot number
    /// is the one the withdrawal used, not the caller's `now`, which may
    /// be stale (found by a hostile review).
    pub(crate) fn refund(&self, index: u64) {
        let mut ring = self.lock();
        let slot = &mut ring.slots[(index % SLOTS as u64) as usize];
        if slot.index == index {
            slot.withdrawals = slot.withdrawals.saturating_sub(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring is plain counters: a panic elsewhere cannot leave it
        // half-written in a way that matters.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
