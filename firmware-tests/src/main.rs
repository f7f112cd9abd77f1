//! Runs the scenarios and prints one line per scenario, then the summary line
//! `<n> passed, <m> failed`. On the Cortex-M4 (QEMU `mps2-an386`) output goes
//! through semihosting and the exit code is 0 only when nothing failed; on the
//! host (`--target x86_64-unknown-linux-gnu`) it is a plain std program.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use wharf_testkit::{run_all, Outcome};

fn line(name: &str, r: &Outcome, mut out: impl FnMut(core::fmt::Arguments<'_>)) {
    match r {
        Ok(()) => out(format_args!("ok   {name}")),
        Err(f) => out(format_args!("FAIL {name}: {}:{}: {}", f.file, f.line, f.what)),
    }
}

#[cfg(target_os = "none")]
mod target {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m_rt::entry;
    use cortex_m_semihosting::{debug, hprintln};

    static PASSED: AtomicU32 = AtomicU32::new(0);
    static FAILED: AtomicU32 = AtomicU32::new(0);

    #[entry]
    fn main() -> ! {
        hprintln!("wharf-core scenarios on {}", "cortex-m4 (qemu mps2-an386)");
        for (what, bytes) in wharf_testkit::storage_sizes() {
            hprintln!("size: {} = {} bytes", what, bytes);
        }
        let (passed, failed) = super::run_all(|name, r| {
            super::line(name, r, |a| hprintln!("{}", a));
            let c = if r.is_ok() { &PASSED } else { &FAILED };
            c.fetch_add(1, Ordering::Relaxed);
        });
        hprintln!("{} passed, {} failed", passed, failed);
        debug::exit(if failed == 0 {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        hprintln!("FAIL (panic): {}", info);
        hprintln!(
            "{} passed, {} failed",
            PASSED.load(Ordering::Relaxed),
            FAILED.load(Ordering::Relaxed) + 1
        );
        debug::exit(debug::EXIT_FAILURE);
        loop {
            cortex_m::asm::wfi();
        }
    }

    #[cortex_m_rt::exception]
    unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
        hprintln!("FAIL (hard fault): {:?}", ef);
        debug::exit(debug::EXIT_FAILURE);
        loop {
            cortex_m::asm::wfi();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    for (what, bytes) in wharf_testkit::storage_sizes() {
        println!("size: {what} = {bytes} bytes");
    }
    let (passed, failed) = run_all(|name, r| line(name, r, |a| println!("{a}")));
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
