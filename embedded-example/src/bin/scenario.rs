//! The QEMU scenario: breaker, bucket, caches and histogram under real ticks and interrupts.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception};
use embassy_time::{block_for, Duration as EDuration};
use fusebox::breaker::Config;
use fusebox::breaker::{Outcome, State};
use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{CircuitBreaker, Clock, ConcurrentCache, Duration, EmbassyClock, Histogram};
use fusebox::{Instant, LruCache};
use fusebox_firmware as fw;
use portable_atomic::{AtomicU32, AtomicU8};

const OPEN_FOR: Duration = Duration::from_millis(50);
static BREAKER: CircuitBreaker = CircuitBreaker::new(
    match Config::builder()
        .consecutive_failures(3)
        .open_for(OPEN_FOR)
        .close_after(2)
        .build()
    {
        Ok(c) => c,
        Err(_) => panic!("breaker config"),
    },
);
/// Radio sends: burst 8, then one per 100 ms.
const BURST: u32 = 8;
static RADIO: TokenBucket =
    TokenBucket::new(match Quota::with_period(Duration::from_millis(100)) {
        Ok(q) => match q.with_burst(BURST) {
            Ok(q) => q,
            Err(_) => panic!("burst"),
        },
        Err(_) => panic!("quota"),
    });
type Readings = ConcurrentCache<u32, u32, 8, 4>;
/// Set once in `main` before any interrupt uses it.
static READINGS: AtomicPtr<Readings> = AtomicPtr::new(core::ptr::null_mut());
static LATENCY: Histogram<{ fusebox::histogram::buckets_for(16_383) }> = Histogram::new();

/// What the interrupt handlers do: nothing, share the bucket, or probe the open breaker.
/// Per-sensor send budgets (4 sensors), shared by main and PendSV.
type Senders = KeyedLimiter<u32, 4>;
static SENDERS: AtomicPtr<Senders> = AtomicPtr::new(core::ptr::null_mut());
/// The one `now` of the keyed phase (main and PendSV decide at the same
/// instant, so the counts do not depend on how fast QEMU runs).
static KEYED_NOW: critical_section::Mutex<core::cell::Cell<Instant>> =
    critical_section::Mutex::new(core::cell::Cell::new(Instant::ZERO));
static ISR_KEYED: AtomicU32 = AtomicU32::new(0);

static MODE: AtomicU8 = AtomicU8::new(0);
const BUCKET_PHASE: u8 = 1;
const OPEN_PHASE: u8 = 2;
const KEYED_PHASE: u8 = 3;
static PENDSV_RUNS: AtomicU32 = AtomicU32::new(0);
static ISR_SENT: AtomicU32 = AtomicU32::new(0);
static ISR_REJECTED: AtomicU32 = AtomicU32::new(0);
static ISR_STORED: AtomicU32 = AtomicU32::new(0);
static ISR_CONTENDED: AtomicU32 = AtomicU32::new(0);
static ISR_LAST: AtomicU32 = AtomicU32::new(u32::MAX);
const ISR_KEY: u32 = 0xBEEF;
/// SysTick's own traffic on the cache the main loop is writing: reads and
/// writes keep `value % 8 == key`, so a torn or foreign value is visible.
static TICK_HITS: AtomicU32 = AtomicU32::new(0);
static TICK_BAD: AtomicU32 = AtomicU32::new(0);
static TICK_WRITES: AtomicU32 = AtomicU32::new(0);
static TICK_CONTENDED: AtomicU32 = AtomicU32::new(0);

fn readings() -> &'static Readings {
    // SAFETY: set from a `'static` singleton before MODE lets any ISR here.
    unsafe { &*READINGS.load(Relaxed) }
}

fn now() -> Instant {
    EmbassyClock.now()
}

#[exception]
fn PendSV() {
    let n = PENDSV_RUNS.fetch_add(1, Relaxed);
    match MODE.load(Relaxed) {
        BUCKET_PHASE => {
            if RADIO.try_acquire(now()).is_ok() {
                ISR_SENT.fetch_add(1, Relaxed);
            }
            if readings().insert(ISR_KEY, n).is_ok() {
                ISR_STORED.fetch_add(1, Relaxed);
                ISR_LAST.store(n, Relaxed);
            } else {
                ISR_CONTENDED.fetch_add(1, Relaxed);
            }
        }
        KEYED_PHASE => {
            let senders = unsafe { &*SENDERS.load(Relaxed) };
            let t = critical_section::with(|cs| KEYED_NOW.borrow(cs).get());
            if senders.try_acquire(&1, t).is_ok() {
                ISR_KEYED.fetch_add(1, Relaxed);
            }
        }
        OPEN_PHASE if BREAKER.try_acquire(now()).is_err() => {
            ISR_REJECTED.fetch_add(1, Relaxed);
        }
        _ => {}
    }
}

/// SysTick hook at 1 kHz, preempting the main loop anywhere (also in the
/// middle of a cache insert): takes radio tokens, reads and writes the cache.
fn tick() {
    if MODE.load(Relaxed) != BUCKET_PHASE {
        return;
    }
    if RADIO.try_acquire(now()).is_ok() {
        ISR_SENT.fetch_add(1, Relaxed);
    }
    let t = TICK_WRITES.load(Relaxed) + TICK_CONTENDED.load(Relaxed);
    let key = t % 8;
    if let Some(v) = readings().get(&key) {
        TICK_HITS.fetch_add(1, Relaxed);
        if v % 8 != key {
            TICK_BAD.fetch_add(1, Relaxed);
        }
    }
    match readings().insert(key, t * 8 + key) {
        Ok(()) => TICK_WRITES.fetch_add(1, Relaxed),
        Err(_) => TICK_CONTENDED.fetch_add(1, Relaxed),
    };
}

#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool) {
        if ok {
            self.passed += 1;
            defmt::info!("PASS {=str}", name);
        } else {
            self.failed += 1;
            defmt::error!("FAIL {=str}", name);
        }
    }
}

/// A sensor bus failing in bursts: calls 5..10, 15..20, ... fail.
#[derive(Default)]
struct Bus {
    calls: u32,
}

impl Bus {
    fn read(&mut self) -> Result<u16, ()> {
        self.calls += 1;
        if (self.calls - 1) / 5 % 2 == 1 {
            Err(())
        } else {
            Ok(200 + self.calls as u16)
        }
    }
}

/// Transitions seen, in order.
#[derive(Default)]
struct Log {
    seen: [(u8, u8); 8],
    len: usize,
    /// `at` of the latest transition to Open.
    opened: Instant,
}

fn code(s: State) -> u8 {
    s as u8
}

impl Log {
    fn push(&mut self, t: Option<fusebox::breaker::Transition>) {
        if let Some(t) = t {
            defmt::info!("breaker {} -> {} at {} ms", t.from, t.to, t.at.as_millis());
            if t.to == State::Open {
                self.opened = t.at;
            }
            if self.len < self.seen.len() {
                self.seen[self.len] = (code(t.from), code(t.to));
            }
            self.len += 1;
        }
    }
}

/// One guarded bus read; `None` when the breaker rejected it.
fn guarded_read(bus: &mut Bus, log: &mut Log) -> Option<Result<u16, ()>> {
    let start = now();
    let permit = BREAKER.try_acquire(start).ok()?;
    log.push(permit.transition());
    let r = bus.read();
    let outcome = if r.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let end = now();
    log.push(permit.record(outcome, end, end - start));
    Some(r)
}

fn wait_until(t: Instant) {
    while now() < t {
        block_for(EDuration::from_millis(1));
    }
}

fn breaker_steps(c: &mut Checks) {
    let (mut bus, mut log) = (Bus::default(), Log::default());
    let healthy = (0..5).all(|_| matches!(guarded_read(&mut bus, &mut log), Some(Ok(_))));
    c.check(
        "breaker: 5 healthy reads pass",
        healthy && BREAKER.state(now()) == State::Closed,
    );
    let burst = (0..3).all(|_| guarded_read(&mut bus, &mut log) == Some(Err(())));
    c.check("breaker: opens after 3 failures", burst && log.len == 1);
    let opened = now();
    let rej = BREAKER.try_acquire(opened);
    let retry_ok = matches!(rej, Err(r) if r.state == State::Open
        && r.retry_after.is_some_and(|d| d <= OPEN_FOR + Duration::from_millis(2)));
    c.check("breaker: rejects while open, with retry_after", retry_ok);
    MODE.store(OPEN_PHASE, Relaxed);
    SCB::set_pendsv();
    cortex_m::asm::isb();
    MODE.store(0, Relaxed);
    c.check(
        "breaker: PendSV ISR also rejected",
        ISR_REJECTED.load(Relaxed) == 1,
    );
    block_for(EDuration::from_millis(40));
    let still = guarded_read(&mut bus, &mut log).is_none();
    c.check(
        "breaker: still open after 40 ms, bus untouched",
        still && bus.calls == 8,
    );
    // Three open periods, each probed 3 ms before and 3 ms after `OPEN_FOR`
    // (stored in 1.024 ms ticks, rounded up). Trials: calls 9 and 10 fail
    // (re-open), 11 and 12 succeed (close after 2).
    let margin = Duration::from_millis(3);
    let mut timed = true;
    for _ in 0..3 {
        let open_at = log.opened;
        wait_until(open_at + OPEN_FOR - margin);
        timed &= guarded_read(&mut bus, &mut log).is_none();
        wait_until(open_at + OPEN_FOR + margin);
        timed &= guarded_read(&mut bus, &mut log).is_some();
    }
    c.check(
        "breaker: half-open only after open_for of real ticks",
        timed,
    );
    let _ = guarded_read(&mut bus, &mut log);
    c.check(
        "breaker: closed after 2 trial successes",
        BREAKER.state(now()) == State::Closed,
    );
    let (cl, op, ho) = (
        code(State::Closed),
        code(State::Open),
        code(State::HalfOpen),
    );
    let want = [
        (cl, op),
        (op, ho),
        (ho, op),
        (op, ho),
        (ho, op),
        (op, ho),
        (ho, cl),
    ];
    c.check(
        "breaker: transition sequence",
        log.len == 7 && log.seen[..7] == want,
    );
    let m = BREAKER.metrics();
    defmt::info!("breaker metrics {}", m);
    c.check(
        "breaker: exact metrics (main + ISR rejections)",
        m.successes == 7 && m.failures == 5 && m.trips == 3 && m.rejected == 6,
    );
}

fn bucket_steps(c: &mut Checks) {
    let cache = readings();
    MODE.store(BUCKET_PHASE, Relaxed);
    fw::set_tick_hook(Some(tick));
    let start = now();
    let (mut main_sent, mut i) = (0u32, 0u32);
    // Refills at ~start + 100 and + 200 ms; stop half way to the next one.
    while now() < start + Duration::from_millis(250) {
        i += 1;
        if i % 2 == 0 {
            SCB::set_pendsv(); // taken at once: the ISR tries before main
            cortex_m::asm::isb();
        }
        if RADIO.try_acquire(now()).is_ok() {
            main_sent += 1;
        }
        let _ = cache.insert(i % 8, i);
    }
    MODE.store(0, Relaxed);
    fw::set_tick_hook(None);
    let isr = ISR_SENT.load(Relaxed);
    defmt::info!(
        "radio: main sent {}, ISRs sent {}, {} loop turns",
        main_sent,
        isr,
        i
    );
    c.check("bucket: both main and ISRs sent", main_sent > 0 && isr > 0);
    c.check(
        "bucket: exactly burst + 2 sends in 250 ms",
        main_sent + isr == BURST + 2,
    );
    c.check(
        "bucket: refused afterwards",
        RADIO.try_acquire(now()).is_err(),
    );
    let runs = PENDSV_RUNS.load(Relaxed) - 1;
    let (stored, contended) = (ISR_STORED.load(Relaxed), ISR_CONTENDED.load(Relaxed));
    defmt::info!(
        "cache: PendSV ran {}, stored {}, contended {}",
        runs,
        stored,
        contended
    );
    c.check(
        "concurrent cache: ISR writes all accounted",
        stored + contended == runs && stored > 0,
    );
    let (hits, bad) = (TICK_HITS.load(Relaxed), TICK_BAD.load(Relaxed));
    let (writes, busy) = (TICK_WRITES.load(Relaxed), TICK_CONTENDED.load(Relaxed));
    defmt::info!(
        "cache: SysTick read {} hits ({} bad), wrote {}, contended {}",
        hits,
        bad,
        writes,
        busy
    );
    c.check(
        "concurrent cache: SysTick preempting main reads no torn or foreign value",
        hits > 0 && bad == 0 && writes > 0,
    );
    let last = ISR_LAST.load(Relaxed);
    c.check(
        "concurrent cache: ISR's last write visible",
        cache.get(&ISR_KEY) == Some(last),
    );
}

fn cache_steps(c: &mut Checks) {
    let mut lru: LruCache<u32, u32, 32> = LruCache::new();
    for sensor in 0..40 {
        lru.put(sensor, sensor * 10);
    }
    let hits = lru.get(&39) == Some(&390) && lru.get(&8) == Some(&80);
    let miss = lru.get(&0).is_none();
    let m = lru.metrics();
    defmt::info!("lru metrics {}", m);
    c.check(
        "lru: 32 kept, hits and a miss",
        lru.len() == 32 && hits && miss,
    );
    c.check(
        "lru: exact metrics",
        m.hits == 2 && m.misses == 1 && m.evictions == 8 && m.inserts == 40,
    );
    let cache = readings();
    for sensor in 0..40 {
        let _ = cache.insert(sensor, sensor * 10);
    }
    let m = cache.metrics();
    defmt::info!("concurrent cache metrics {}", m);
    c.check(
        "concurrent cache: evicts past 32",
        m.evictions >= 8 && cache.get(&39) == Some(390),
    );
}

fn histogram_steps(c: &mut Checks) {
    let mut x: u32 = 0x1234_5678;
    for i in 0..1_000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = if i % 100 == 99 {
            5_000 + x % 4_000
        } else {
            100 + x % 200
        };
        LATENCY.record(u64::from(v));
    }
    let p = |q| LATENCY.percentile(q).ok().flatten().unwrap_or(0);
    let (p50, p99, p999) = (p(50.0), p(99.0), p(99.9));
    defmt::info!(
        "latency us: p50 {} p99 {} p99.9 {} max {}",
        p50,
        p99,
        p999,
        LATENCY.max()
    );
    c.check("histogram: 1000 samples", LATENCY.count() == 1_000);
    c.check(
        "histogram: p50 and p99 in the fast band",
        (100..300).contains(&p50) && p99 < 300,
    );
    c.check(
        "histogram: p99.9 in the slow band",
        (5_000..9_000).contains(&p999),
    );
}

/// A keyed limiter (its table lock is the critical section on every
/// target): 4 sensors fill the table, a 5th is refused; main and PendSV
/// race for sensor 1's last token at one instant; it refills on time.
fn keyed_steps(c: &mut Checks) {
    let q = match Quota::new(2, Duration::from_millis(100)) {
        Ok(q) => q,
        Err(_) => panic!("keyed quota"),
    };
    let senders: &'static mut Senders =
        cortex_m::singleton!(: Senders = Senders::new(q, FullPolicy::Reject).unwrap()).unwrap();
    let senders: &'static Senders = senders;
    SENDERS.store(senders as *const Senders as *mut Senders, Relaxed);
    let t = now();
    critical_section::with(|cs| KEYED_NOW.borrow(cs).set(t));
    let admitted = (0..4u32)
        .filter(|k| senders.try_acquire(k, t).is_ok())
        .count();
    let full = senders.try_acquire(&4, t) == Err(KeyedError::TableFull);
    c.check(
        "keyed: 4 sensors admitted, a 5th refused",
        admitted == 4 && full,
    );
    MODE.store(KEYED_PHASE, Relaxed);
    let mut main_sent = 0u32;
    for _ in 0..10 {
        SCB::set_pendsv(); // PendSV tries first, at the same instant
        cortex_m::asm::isb();
        if senders.try_acquire(&1, t).is_ok() {
            main_sent += 1;
        }
    }
    MODE.store(0, Relaxed);
    let isr = ISR_KEYED.load(Relaxed);
    let m = senders.metrics();
    defmt::info!(
        "keyed: main sent {}, PendSV sent {}, metrics {}",
        main_sent,
        isr,
        m
    );
    c.check(
        "keyed: main and PendSV share sensor 1's last token",
        main_sent + isr == 1,
    );
    c.check(
        "keyed: exact metrics",
        m.allowed == 5 && m.limited == 20 && m.table_full == 1 && m.keys == 4,
    );
    let refill = t + Duration::from_millis(50);
    c.check(
        "keyed: a token back after 50 ms, not before",
        senders
            .try_acquire(&1, refill - Duration::from_micros(1))
            .is_err()
            && senders.try_acquire(&1, refill).is_ok(),
    );
}

#[entry]
fn main() -> ! {
    let p = cortex_m::Peripherals::take().unwrap();
    fw::start_clock(p.SYST);
    let cache: &'static mut Readings =
        cortex_m::singleton!(: Readings = Readings::new().with_lookup_counters()).unwrap();
    READINGS.store(cache, Relaxed);
    defmt::info!(
        "fusebox firmware: {=u32} Hz core clock, now {}",
        fw::CPU_HZ,
        now()
    );
    let mut c = Checks::default();
    breaker_steps(&mut c);
    bucket_steps(&mut c);
    cache_steps(&mut c);
    histogram_steps(&mut c);
    keyed_steps(&mut c);
    defmt::info!("{=u32} passed, {=u32} failed", c.passed, c.failed);
    fw::exit(i32::from(c.failed != 0))
}
