//! Cortex-M4 firmware using wharf-embassy with defmt.
//!
//! Two client tasks share one pool of up to 4 TCP connections (2 routes:
//! an IP endpoint, and a host name known only at run time, read from a
//! provisioning record and resolved through the stack's DNS). A real board
//! replaces two stand-ins here:
//! - the network device: `embassy-net-driver-channel` stands for the chip's
//!   Ethernet/Wi-Fi/modem driver (its `Runner` would be fed by that driver);
//! - the time driver: a SysTick-based `embassy-time` driver (a HAL such as
//!   embassy-stm32 or embassy-nrf provides one).

#![no_std]
#![no_main]

use core::cell::{Cell, RefCell};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;
use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver_channel as ch;
use embassy_time::{Duration as EDuration, Timer};
use embedded_io_async::{Read, Write};
use panic_probe as _;
use static_cell::StaticCell;
use wharf_embassy::{Config, Duration, LeaseOptions, Pool, Runner};

/// Pool sizing: 4 connection slots (1 KiB RX + 1 KiB TX each), 4 waiters, 2
/// routes, host names known at run time of up to 32 bytes.
const SLOTS: usize = 4;
const HOST: usize = 32;
type PoolState = wharf_embassy::State<SLOTS, 4, 2, 1024, 1024, HOST>;
type Route = wharf_embassy::Route<HOST>;

/// The pool's sockets, plus the DNS socket embassy-net creates.
const SOCKETS: usize = SLOTS + 1;

const MTU: usize = 1500;

// `StaticCell` + `init_with` keeps the state in .bss (zero-initialised RAM, no
// flash image); a `ConstStaticCell` would put all of it, buffers included, in .data.
static POOL: StaticCell<PoolState> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
static LINK: StaticCell<ch::State<MTU, 4, 4>> = StaticCell::new();

/// `size_of` of the pool state on this target, read back from the ELF by
/// `tools/elf_size.py --wharf-state` (docs/EMBEDDED.md): the example's
/// state; a state with one slot of each kind; states with 16 more
/// connection, waiter and route slots (no socket buffers); the same with
/// 32-byte runtime host names (one slot of each kind, then 16 more
/// connection and route slots).
#[no_mangle]
static WHARF_STATE_SIZES: [u32; 8] = {
    use core::mem::size_of;
    use wharf_embassy::State;
    [
        size_of::<PoolState>() as u32,
        size_of::<State<1, 1, 1, 0, 0>>() as u32,
        size_of::<State<17, 1, 1, 0, 0>>() as u32,
        size_of::<State<1, 17, 1, 0, 0>>() as u32,
        size_of::<State<1, 1, 17, 0, 0>>() as u32,
        size_of::<State<1, 1, 1, 0, 0, 32>>() as u32,
        size_of::<State<17, 1, 1, 0, 0, 32>>() as u32,
        size_of::<State<1, 1, 17, 0, 0, 32>>() as u32,
    ]
};

/// Stand-in for a provisioning record in flash or a configuration message:
/// the telemetry server's `host:port`, known only at run time.
static PROVISIONED: &[u8] = b"telemetry.example.net:8080";

/// The telemetry route, parsed from the provisioning record at run time:
/// a host name of up to `HOST` bytes, stored in the route (no heap).
fn provisioned_route(record: &[u8]) -> Option<Route> {
    let text = core::str::from_utf8(record).ok()?;
    let (name, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    match Route::name(name, port) {
        Ok(route) => Some(route),
        Err(e) => {
            defmt::error!("provisioned host name: {}", e);
            None
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    // Keep the size table in the image.
    core::hint::black_box(&WHARF_STATE_SIZES);
    let mut cp = cortex_m::Peripherals::take().unwrap();
    time::start(&mut cp.SYST);

    let (link, device) = ch::new(LINK.init(ch::State::new()), ch::driver::HardwareAddress::Ip);
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 2), 24),
        gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
        dns_servers: [Ipv4Address::new(192, 168, 1, 1)].into_iter().collect(),
    });
    let (stack, net_runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        0x5eed_1234,
    );

    let pool_config = Config {
        max_total: SLOTS as u32,
        max_per_route: 2,
        connect_timeout: Some(Duration::from_secs(5)),
        idle_timeout: Some(Duration::from_secs(60)),
        validate_after_inactivity: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (pool, runner) =
        match wharf_embassy::new(stack, POOL.init_with(PoolState::new), pool_config) {
            Ok(p) => p,
            Err(e) => defmt::panic!("pool config: {}", e),
        };

    spawner.spawn(link_task(link).unwrap());
    spawner.spawn(net_task(net_runner).unwrap());
    spawner.spawn(pool_task(runner).unwrap());
    let broker = Route::ip(Ipv4Address::new(192, 168, 1, 10), 1883);
    spawner.spawn(client_task(pool, broker, 0).unwrap());
    // Read at run time (`black_box`: not folded into a constant).
    match provisioned_route(core::hint::black_box(PROVISIONED)) {
        Some(telemetry) => spawner.spawn(client_task(pool, telemetry, 1).unwrap()),
        None => defmt::error!("no telemetry route"),
    }
}

/// Stand-in for the board's network driver: brings the link up and consumes
/// outgoing packets (a real driver hands them to the MAC/modem and feeds
/// received frames through `rx_buf`/`rx_done`).
#[embassy_executor::task]
async fn link_task(link: ch::Runner<'static, MTU>) -> ! {
    let (state, _rx, mut tx) = link.split();
    state.set_link_state(ch::driver::LinkState::Up);
    loop {
        let pkt = tx.tx_buf().await;
        defmt::trace!("tx {} bytes", pkt.len());
        tx.tx_done();
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, ch::Device<'static, MTU>>) -> ! {
    runner.run().await
}

/// Drives the pool: timers, connects, validations and closes.
#[embassy_executor::task]
async fn pool_task(mut runner: Runner<'static, SLOTS, HOST>) -> ! {
    runner.run().await
}

/// Sends one small request per period on a pooled connection.
#[embassy_executor::task(pool_size = 2)]
async fn client_task(pool: Pool<'static, HOST>, route: Route, id: u32) -> ! {
    let opts = LeaseOptions {
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    loop {
        match pool.lease_with(&route, opts).await {
            Ok(mut conn) => {
                let mut buf = [0u8; 64];
                let ok = conn.write_all(b"PING\r\n").await.is_ok()
                    && matches!(conn.read(&mut buf).await, Ok(n) if n > 0);
                if !ok {
                    // Broken: close it with a RST rather than return it.
                    conn.discard();
                }
                // Dropped: back to the pool for the next round.
            }
            Err(e) => defmt::warn!("client {}: {}", id, e),
        }
        let s = pool.stats();
        defmt::info!(
            "client {}: {} conns, {} idle, {} leased",
            id,
            s.connections,
            s.idle,
            s.leased
        );
        Timer::after(EDuration::from_secs(5)).await;
    }
}

/// A minimal SysTick time driver (1 kHz) over embassy's integrated timer queue.
mod time {
    use super::*;
    use embassy_time_driver::Driver;
    use embassy_time_queue_utils::Queue;

    /// Core clock at reset (e.g. a 16 MHz internal oscillator).
    const CORE_HZ: u32 = 16_000_000;

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
}
