//! A SysTick `embassy-time` driver (1 kHz) over embassy's integrated timer
//! queue, as the firmware example's (`examples/firmware`), at the MPS2
//! board's 25 MHz core clock.

use core::cell::{Cell, RefCell};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// The core clock of QEMU's mps2-an386 (SysTick counts it).
const CORE_HZ: u32 = 25_000_000;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }
    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        critical_section::with(|cs| {
            let now = self.ticks.borrow(cs).get();
            let mut q = self.queue.borrow(cs).borrow_mut();
            q.schedule_wake(at, waker);
            q.next_expiration(now);
        })
    }
}

/// Starts the 1 kHz tick.
pub fn start(syst: &mut cortex_m::peripheral::SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / embassy_time::TICK_HZ as u32 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let t = DRIVER.ticks.borrow(cs);
        t.set(t.get() + 1);
        DRIVER
            .queue
            .borrow(cs)
            .borrow_mut()
            .next_expiration(t.get());
    });
}
