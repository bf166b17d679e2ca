//! Shared runtime of the fusebox firmware bins: the SysTick embassy-time
//! driver, the defmt-over-semihosting logger, the panic handler and `exit`.
#![no_std]

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
use cortex_m_rt::exception;
use critical_section::Mutex;
use defmt_semihosting as _; // the global defmt logger

/// Core clock feeding SysTick under QEMU: 25 MHz on mps2-an386 (Cortex-M4),
/// 16 MHz on microbit (nRF51, Cortex-M0; its SysTick has no reference clock).
#[cfg(target_has_atomic = "32")]
pub const CPU_HZ: u32 = 25_000_000;
/// Core clock feeding SysTick under QEMU (see the other target's docs).
#[cfg(not(target_has_atomic = "32"))]
pub const CPU_HZ: u32 = 16_000_000;

const CYCLES_PER_US: u32 = CPU_HZ / 1_000_000;
/// One SysTick interrupt per millisecond.
const RELOAD: u32 = CPU_HZ / 1_000 - 1;

/// Whole milliseconds elapsed, advanced by the SysTick handler.
static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
/// Optional work for the SysTick handler (an interrupt-context user of the
/// primitives); null when unset.
static TICK_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Starts SysTick at 1 kHz from the core clock; embassy-time runs from here.
pub fn start_clock(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Runs `hook` from the SysTick handler on every tick (after the clock has
/// advanced); `None` stops it.
pub fn set_tick_hook(hook: Option<fn()>) {
    let ptr = hook.map_or(core::ptr::null_mut(), |f| f as *mut ());
    TICK_HOOK.store(ptr, Ordering::Release);
}

/// Microseconds since `start_clock`. Reads the tick count and the SysTick
/// counter in one critical section; a wrap whose interrupt is still pending
/// is counted, so the value never goes backwards.
pub fn now_micros() -> u64 {
    critical_section::with(|cs| {
        let mut millis = MILLIS.borrow(cs).get();
        let mut val = SYST::get_current();
        if SCB::is_pendst_pending() {
            // Wrapped before (or just after) `val` was read: re-read it.
            val = SYST::get_current();
            millis += 1;
        }
        millis * 1_000 + u64::from((RELOAD - val.min(RELOAD)) / CYCLES_PER_US)
    })
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let m = MILLIS.borrow(cs);
        m.set(m.get() + 1);
    });
    let hook = TICK_HOOK.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: only `set_tick_hook` stores here, always a `fn()`.
        let f: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(hook) };
        f();
    }
}

/// The embassy-time driver: SysTick at 1 MHz resolution. There is no
/// executor, so `schedule_wake` wakes at once (callers poll; `block_for`
/// busy-waits on `now`).
struct SysTickDriver;

impl embassy_time_driver::Driver for SysTickDriver {
    fn now(&self) -> u64 {
        now_micros()
    }
    fn schedule_wake(&self, _at: u64, waker: &core::task::Waker) {
        waker.wake_by_ref();
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver);

/// Ends the QEMU run with `code` (semihosting `SYS_EXIT_EXTENDED`).
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    exit(101)
}

#[cortex_m_rt::exception]
unsafe fn HardFault(_frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!("hard fault");
    exit(102)
}
