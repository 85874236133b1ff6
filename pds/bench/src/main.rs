//! Measures every capbuf request in guest instructions, next to a null PPC.
//!
//! Run under `-icount shift=0,sleep=off` (`make qemu-bench`): QEMU's clock
//! then follows executed instructions, so the figures repeat run to run. The
//! generic timer ticks once per 16 guest instructions in that mode; each figure
//! is the mean over `ROUNDS` repetitions. Figures include the client library's
//! own work, as a client experiences them (memsrv maps an attachment itself).
//! The cache maintenance calls make no PPC: their rows are the library's
//! range check and the instructions.
#![no_std]
#![no_main]

use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, DmaSync, PoolId, Sys};
use capbuf_protocol::{Op, Rights};
use sel4_microkit::{debug_println, protection_domain, Channel, MessageInfo, NullHandler};

const MEMSRV: Channel = Channel::new(0);
const ECHO: Channel = Channel::new(1);
const ROUNDS: u64 = 32;
/// Guest instructions per generic-timer tick under `-icount shift=0`.
const INSTRUCTIONS_PER_TICK: u64 = 16;

fn ticks() -> u64 {
    let value: u64;
    // SAFETY: reads the physical counter, which the Microkit kernel lets user
    // code read; `isb` keeps the read from moving across the measured code.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", "isb", out(reg) value, options(nomem, nostack)) };
    value
}

/// Mean instructions of `work` over `ROUNDS` runs; `setup` and `teardown`
/// run outside the measurement.
fn measure<S, T>(
    capbuf: &mut Capbuf,
    mut setup: impl FnMut(&mut Capbuf) -> S,
    mut work: impl FnMut(&mut Capbuf, S) -> T,
    mut teardown: impl FnMut(&mut Capbuf, T),
) -> u64 {
    let mut total = 0;
    for _ in 0..ROUNDS {
        let state = setup(capbuf);
        let start = ticks();
        let result = work(capbuf, state);
        total += ticks() - start;
        teardown(capbuf, result);
    }
    total * INSTRUCTIONS_PER_TICK / ROUNDS
}

fn alloc(capbuf: &mut Capbuf, size: u64) -> BufferId {
    capbuf.alloc(size, Align::PAGE, PoolId(0), AllocFlags::NONE).expect("alloc")
}

fn attached(capbuf: &mut Capbuf, size: u64) -> BufferId {
    let id = alloc(capbuf, size);
    capbuf.attach(id, Rights::ReadWrite).expect("attach");
    id
}

fn free(capbuf: &mut Capbuf, id: BufferId) {
    capbuf.free(id).expect("free");
}

#[protection_domain]
fn init() -> NullHandler {
    let mut capbuf = capbuf_microkit::connect(MEMSRV).expect("memsrv");
    // Warm up the pool's first split and every code path once.
    let warm = attached(&mut capbuf, 4096);
    free(&mut capbuf, warm);
    let keep = alloc(&mut capbuf, 4096);

    let null = measure(
        &mut capbuf,
        |_| (),
        |_, _| {
            ECHO.pp_call(MessageInfo::new(0, 0));
        },
        |_, _| (),
    );
    let row = |op: &str, size: &str, value: u64| {
        let hundredths = value * 100 / null.max(1);
        debug_println!("BENCH|| {op} {size} | {value} | {}.{:02} |", hundredths / 100, hundredths % 100);
    };
    debug_println!("BENCH|| request | guest instructions | x null PPC |");
    debug_println!("BENCH||---|---:|---:|");
    row("null PPC (echo PD)", "", null);
    let hello = |c: &mut Capbuf, _| {
        c.sys().call(Op::Hello as u64, &[]);
    };
    row("HELLO", "", measure(&mut capbuf, |_| (), hello, |_, _| ()));
    row(
        "POOL_INFO",
        "",
        measure(&mut capbuf, |_| (), |c, _| c.pool_info(PoolId(0)).map(|_| ()).expect("pool"), |_, _| ()),
    );
    row("INFO", "", measure(&mut capbuf, |_| (), |c, _| c.info(keep).map(|_| ()).expect("info"), |_, _| ()));
    for (size, name) in
        [(4096u64, "4 KiB"), (64 << 10, "64 KiB"), (2 << 20, "2 MiB"), (3 << 20, "3 MiB"), (16 << 20, "16 MiB")]
    {
        row("ALLOC", name, measure(&mut capbuf, |_| (), |c, _| alloc(c, size), free));
        row(
            "ATTACH (mapped by memsrv)",
            name,
            measure(
                &mut capbuf,
                |c| alloc(c, size),
                |c, id| {
                    c.attach(id, Rights::ReadWrite).expect("attach");
                    id
                },
                free,
            ),
        );
        row(
            "DETACH",
            name,
            measure(
                &mut capbuf,
                |c| attached(c, size),
                |c, id| {
                    c.detach(id).expect("detach");
                    id
                },
                free,
            ),
        );
        row("FREE (attached)", name, measure(&mut capbuf, |c| attached(c, size), free, |_, _| ()));
    }
    free(&mut capbuf, keep);

    // Cache maintenance: no PPC, one instruction per 64-byte line, then `dsb
    // sy`. TCG models no caches, so on hardware each line also costs what the
    // memory system takes to write it back.
    let cached = attached(&mut capbuf, 2 << 20);
    for (size, name) in [(0u64, "0 B"), (64, "64 B"), (4096, "4 KiB"), (64 << 10, "64 KiB"), (2 << 20, "2 MiB")] {
        let device = |c: &mut Capbuf, _| c.sync_for_device(cached, 0, size).expect("sync_for_device");
        row("sync_for_device (dc cvac)", name, measure(&mut capbuf, |_| (), device, |_, _| ()));
        let cpu = |c: &mut Capbuf, _| c.sync_for_cpu(cached, 0, size).expect("sync_for_cpu");
        row("sync_for_cpu (dc civac)", name, measure(&mut capbuf, |_| (), cpu, |_, _| ()));
    }
    free(&mut capbuf, cached);
    let uncached = capbuf.alloc(64 << 10, Align::PAGE, PoolId(0), AllocFlags::UNCACHED).expect("alloc uncached");
    capbuf.attach(uncached, Rights::ReadWrite).expect("attach uncached");
    let device = |c: &mut Capbuf, _| c.sync_for_device(uncached, 0, 64 << 10).expect("sync_for_device");
    row("sync_for_device, UNCACHED (no line)", "64 KiB", measure(&mut capbuf, |_| (), device, |_, _| ()));
    free(&mut capbuf, uncached);
    debug_println!("BENCH DONE");
    NullHandler::new()
}
