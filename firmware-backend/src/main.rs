//! wharf-embassy itself on a Cortex-M4 (QEMU `mps2-an386`): two embassy-net
//! stacks joined by an in-memory link inside this one image, the embassy
//! executor, a SysTick time driver, and for each scenario a pool with its
//! runner, leasing from the client stack against servers on the server
//! stack. Prints one line per scenario over semihosting, then
//! `<n> passed, <m> failed`; exits 0 only when nothing failed.

#![no_std]
#![no_main]

mod check;
mod net;
mod scenarios;
mod time;

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_semihosting::{debug, hprintln};
use embassy_executor::Spawner;
use embassy_futures::join::join;
use embassy_futures::select::select4;
use embassy_net::StackResources;
use embassy_net_driver_channel as ch;
use embassy_time::{with_timeout, Duration};
use wharf_testkit::Outcome;

use crate::net::{Logs, MTU};
use crate::scenarios::{Ctx, PoolState};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

fn report(name: &str, r: &Outcome) {
    match r {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            hprintln!("ok   {}", name);
        }
        Err(f) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            hprintln!("FAIL {}: {}:{}: {}", name, f.file, f.line, f.what);
        }
    }
}

/// Runs one scenario, bounded (a hang is a failure, not a stuck run).
macro_rules! run {
    ($ctx:expr, $name:ident) => {{
        $ctx.logs.reset();
        let r = match with_timeout(Duration::from_secs(10), scenarios::$name(&$ctx)).await {
            Ok(r) => r,
            Err(_) => Err(check::failure("scenario timed out (10 s)")),
        };
        report(stringify!($name), &r);
    }};
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        hprintln!("FAIL (no core peripherals)");
        hprintln!("0 passed, 1 failed");
        debug::exit(debug::EXIT_FAILURE);
        return;
    };
    time::start(&mut cp.SYST);
    hprintln!("wharf-embassy backend scenarios on cortex-m4 (qemu mps2-an386)");
    hprintln!(
        "size: State<4, 4, 4, 1024, 1024, 32> = {} bytes",
        core::mem::size_of::<PoolState>()
    );

    // Two in-memory IP devices, one per stack, joined by `net::pipe`.
    let mut ch_a = ch::State::<MTU, 4, 4>::new();
    let mut ch_b = ch::State::<MTU, 4, 4>::new();
    let (link_a, dev_a) = ch::new(&mut ch_a, ch::driver::HardwareAddress::Ip);
    let (link_b, dev_b) = ch::new(&mut ch_b, ch::driver::HardwareAddress::Ip);
    let (state_a, rx_a, tx_a) = link_a.split();
    let (state_b, rx_b, tx_b) = link_b.split();
    state_a.set_link_state(ch::driver::LinkState::Up);
    state_b.set_link_state(ch::driver::LinkState::Up);
    // Client: the pool's 4 sockets, DNS, and room for a scenario's leftovers.
    let mut res_a = StackResources::<8>::new();
    // Server: 8 listeners, the DNS server's UDP socket, its own DNS socket.
    let mut res_b = StackResources::<12>::new();
    let (client, mut net_a) = embassy_net::new(dev_a, net::ip_config(net::CLIENT), &mut res_a, 1);
    let (server, mut net_b) = embassy_net::new(dev_b, net::ip_config(net::SERVER), &mut res_b, 2);
    let link = join(net::pipe(tx_a, rx_b), net::pipe(tx_b, rx_a));

    let logs = Logs::default();
    let ctx = Ctx {
        client,
        logs: &logs,
    };
    let started = embassy_time::Instant::now();
    let scenarios = async {
        run!(ctx, lease_write_read);
        run!(ctx, reuse_of_a_kept_connection);
        run!(ctx, route_limit_waits_and_times_out);
        run!(ctx, server_close_while_leased_is_read_as_fin);
        run!(ctx, server_close_while_idle_is_seen);
        run!(ctx, pool_close_is_a_fin);
        run!(ctx, discard_is_a_rst);
        run!(ctx, connect_timeout);
        run!(ctx, refused_connect);
        run!(ctx, runtime_host_name);
        run!(ctx, nal_connects_are_pooled);
        run!(ctx, cancel_of_a_waiting_lease);
    };
    select4(
        net_a.run(),
        net_b.run(),
        join(link, net::servers(server, &logs)),
        scenarios,
    )
    .await;
    let (passed, failed) = (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    );
    hprintln!(
        "scenarios took {} ms (embassy-time)",
        started.elapsed().as_millis()
    );
    hprintln!("{} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
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
