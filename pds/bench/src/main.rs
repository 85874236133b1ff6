//! Measures every capbuf request in guest instructions, and in the same run,
//! with the same method, the kernel operations requests are made of (the
//! floor, `floor.rs`).
//!
//! Run under `-icount shift=0,sleep=off` (`make qemu-bench`): QEMU's clock
//! then follows executed instructions, so the figures repeat run to run. Each
//! figure is the mean over `ROUNDS` repetitions. Request figures include the
//! client library's own work, as a client experiences them (memsrv maps an
//! attachment itself). The cache maintenance calls make no PPC: their rows are
//! the library's range check and the instructions.
//!
//! Output is one `BENCH <name> <value> <unit>` line per figure, written to the
//! PL011 UART directly (the release kernel prints nothing); the host turns
//! them into the table (`capbuf-bench qemu-table`).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
mod arch;
mod floor;

use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, DmaSync, PoolId, Sys};
use capbuf_protocol::{Op, Rights};
use core::fmt::Write;
use sel4_microkit::{protection_domain, var, Channel, NullHandler};

const MEMSRV: Channel = Channel::new(0);
const ECHO: Channel = Channel::new(1);
const ROUNDS: u64 = 32;

/// The UART's virtual address, written by the tool from system.xml's `setvar_vaddr`.
fn uart_base() -> usize {
    *var!(#[used(linker)] uart_base: usize = 0)
}

/// memsrv's counters' virtual address (bench/system.xml's `setvar_vaddr`):
/// ticks memsrv spent in its PPC handler and in `Server::handle`, summed.
fn memsrv_counters() -> usize {
    *var!(#[used(linker)] memsrv_counters: usize = 0)
}

/// memsrv's per-invocation counters (pds/memsrv's `invoke`): slot
/// `FIRST_CALL_COUNTER + k` sums the ticks of the `k`-th kernel invocation of
/// each request, the last of the `CALL_COUNTERS` slots those of the rest.
const FIRST_CALL_COUNTER: usize = 8;
const CALL_COUNTERS: usize = 24;
const COUNTERS: usize = FIRST_CALL_COUNTER + CALL_COUNTERS;

/// memsrv's counters now: its PPC handler, `Server::handle` within it, its
/// kernel invocations within that, and each invocation by its place in the
/// request, in ticks.
fn memsrv_ticks() -> [u64; COUNTERS] {
    let base = memsrv_counters() as *const u64;
    // SAFETY: bench/system.xml maps memsrv's counter page here, read-only;
    // memsrv writes it only while this PD waits in a PPC to it.
    core::array::from_fn(|i| unsafe { base.add(i).read_volatile() })
}

/// Where the figures go: `BENCH <name> <value> <unit>` lines on the UART.
pub struct Output(arch::Uart);

impl Write for Output {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            self.0.write_byte(byte);
        }
        Ok(())
    }
}

impl Output {
    /// `BENCH <name> <value> <unit>`.
    pub fn line(&mut self, name: &str, value: u64, unit: &str) {
        let _ = writeln!(self, "BENCH {name} {value} {unit}");
    }

    /// `BENCH <prefix><name><suffix> <value> instructions`.
    pub fn named_line(&mut self, prefix: &str, name: &str, suffix: &str, value: u64) {
        let _ = writeln!(self, "BENCH {prefix}{name}{suffix} {value} instructions");
    }

    /// `BENCH <prefix><number> <value> instructions`.
    pub fn named_number(&mut self, prefix: &str, number: u64, value: u64) {
        let _ = writeln!(self, "BENCH {prefix}{number} {value} instructions");
    }
}

/// Mean instructions of `work` over `rounds` runs; `setup` and `teardown`
/// run outside the measurement.
pub fn instructions(rounds: u64, mut setup: impl FnMut(), mut work: impl FnMut(), mut teardown: impl FnMut()) -> u64 {
    let mut total = 0;
    for _ in 0..rounds {
        setup();
        let start = arch::ticks();
        work();
        total += arch::ticks() - start;
        teardown();
    }
    total * arch::INSTRUCTIONS_PER_TICK / rounds
}

/// What one request cost, mean over `ROUNDS` runs.
struct Cost {
    instructions: u64,
    /// PPCs to memsrv.
    calls: u64,
    /// Instructions memsrv spent in its PPC handler (its own code and its
    /// kernel invocations), in `Server::handle` within it, and in its kernel
    /// invocations.
    handler: u64,
    handle: u64,
    invocations: u64,
    /// Instructions of memsrv's `k`-th kernel invocation (the last: the rest).
    each: [u64; CALL_COUNTERS],
}

/// Measure a request over `ROUNDS` runs.
fn request<S, T>(
    capbuf: &mut Capbuf,
    mut setup: impl FnMut(&mut Capbuf) -> S,
    mut work: impl FnMut(&mut Capbuf, S) -> T,
    mut teardown: impl FnMut(&mut Capbuf, T),
) -> Cost {
    let (mut total, mut calls, mut memsrv) = (0, 0, [0u64; COUNTERS]);
    for _ in 0..ROUNDS {
        let state = setup(capbuf);
        let before = capbuf.sys().calls();
        let memsrv_before = memsrv_ticks();
        let start = arch::ticks();
        let result = work(capbuf, state);
        total += arch::ticks() - start;
        let memsrv_after = memsrv_ticks();
        calls += capbuf.sys().calls() - before;
        for i in 0..COUNTERS {
            memsrv[i] += memsrv_after[i] - memsrv_before[i];
        }
        teardown(capbuf, result);
    }
    let instructions = |ticks: u64| ticks * arch::INSTRUCTIONS_PER_TICK / ROUNDS;
    Cost {
        instructions: instructions(total),
        calls: calls / ROUNDS,
        handler: instructions(memsrv[0]),
        handle: instructions(memsrv[1]),
        invocations: instructions(memsrv[2]),
        each: core::array::from_fn(|k| instructions(memsrv[FIRST_CALL_COUNTER + k])),
    }
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

fn print(out: &mut Output, name: &str, size: &str, cost: Cost) {
    let _ = writeln!(out, "BENCH request_{name}{size} {} instructions", cost.instructions);
    let _ = writeln!(out, "BENCH ppcs_{name}{size} {} calls", cost.calls);
    if cost.calls > 0 {
        let _ = writeln!(out, "BENCH handler_{name}{size} {} instructions", cost.handler);
        let _ = writeln!(out, "BENCH handle_{name}{size} {} instructions", cost.handle);
        let _ = writeln!(out, "BENCH invocations_{name}{size} {} instructions", cost.invocations);
        for (k, each) in cost.each.iter().enumerate().filter(|(_, each)| **each > 0) {
            let _ = writeln!(out, "BENCH call_{name}{size}_{k} {each} instructions");
        }
    }
}

#[protection_domain]
fn init() -> NullHandler {
    let mut out = Output(arch::Uart::new(uart_base()));
    let mut capbuf = capbuf_microkit::connect(MEMSRV).expect("memsrv");
    floor::run(&mut out, ECHO);

    // The same sequence runs on the host model to count memsrv's kernel
    // invocations per request (tools/bench/src/qemu.rs): keep them in step.
    // Warm up the pool's first split and every code path once.
    let warm = attached(&mut capbuf, 4096);
    free(&mut capbuf, warm);
    let keep = alloc(&mut capbuf, 4096);

    let hello = |c: &mut Capbuf, _| {
        c.sys().call(Op::Hello as u64, &[]);
    };
    print(&mut out, "hello", "", request(&mut capbuf, |_| (), hello, |_, _| ()));
    let pool_info = |c: &mut Capbuf, _| c.pool_info(PoolId(0)).map(|_| ()).expect("pool");
    print(&mut out, "pool_info", "", request(&mut capbuf, |_| (), pool_info, |_, _| ()));
    let info = |c: &mut Capbuf, _| c.info(keep).map(|_| ()).expect("info");
    print(&mut out, "info", "", request(&mut capbuf, |_| (), info, |_, _| ()));
    for (size, name) in [(4096u64, "_4k"), (64 << 10, "_64k"), (2 << 20, "_2m"), (3 << 20, "_3m"), (16 << 20, "_16m")] {
        print(&mut out, "alloc", name, request(&mut capbuf, |_| (), |c, _| alloc(c, size), free));
        let attach = |c: &mut Capbuf, id| {
            c.attach(id, Rights::ReadWrite).expect("attach");
            id
        };
        print(&mut out, "attach", name, request(&mut capbuf, |c| alloc(c, size), attach, free));
        let detach = |c: &mut Capbuf, id| {
            c.detach(id).expect("detach");
            id
        };
        print(&mut out, "detach", name, request(&mut capbuf, |c| attached(c, size), detach, free));
        print(&mut out, "free", name, request(&mut capbuf, |c| attached(c, size), free, |_, _| ()));
    }
    // A 4 KiB buffer freed with a live page on either side (`keep` below it,
    // a spacer above) is parked by the pool (README, "The pool allocator"):
    // the ALLOC that takes it back whole, and the FREE that parks it.
    let parked = |c: &mut Capbuf| {
        let id = alloc(c, 4096);
        let spacer = alloc(c, 4096);
        free(c, id);
        spacer
    };
    let take = |c: &mut Capbuf, spacer| (alloc(c, 4096), spacer);
    let both = |c: &mut Capbuf, (id, spacer)| {
        free(c, id);
        free(c, spacer);
    };
    print(&mut out, "alloc_parked", "_4k", request(&mut capbuf, parked, take, both));
    let beside = |c: &mut Capbuf| (attached(c, 4096), alloc(c, 4096));
    let park = |c: &mut Capbuf, (id, spacer)| {
        free(c, id);
        spacer
    };
    print(&mut out, "free_parked", "_4k", request(&mut capbuf, beside, park, free));
    free(&mut capbuf, keep);

    // Cache maintenance: no PPC, one instruction per 64-byte line, then `dsb
    // sy`. TCG models no caches, so on hardware each line also costs what the
    // memory system takes to write it back.
    let cached = attached(&mut capbuf, 2 << 20);
    for (size, name) in [(0u64, "_0"), (64, "_64"), (4096, "_4k"), (64 << 10, "_64k"), (2 << 20, "_2m")] {
        let device = |c: &mut Capbuf, _| c.sync_for_device(cached, 0, size).expect("sync_for_device");
        print(&mut out, "sync_for_device", name, request(&mut capbuf, |_| (), device, |_, _| ()));
        let cpu = |c: &mut Capbuf, _| c.sync_for_cpu(cached, 0, size).expect("sync_for_cpu");
        print(&mut out, "sync_for_cpu", name, request(&mut capbuf, |_| (), cpu, |_, _| ()));
    }
    free(&mut capbuf, cached);
    let uncached = capbuf.alloc(64 << 10, Align::PAGE, PoolId(0), AllocFlags::UNCACHED).expect("alloc uncached");
    capbuf.attach(uncached, Rights::ReadWrite).expect("attach uncached");
    let device = |c: &mut Capbuf, _| c.sync_for_device(uncached, 0, 64 << 10).expect("sync_for_device");
    print(&mut out, "sync_for_device_uncached", "_64k", request(&mut capbuf, |_| (), device, |_, _| ()));
    free(&mut capbuf, uncached);
    let _ = writeln!(out, "BENCH DONE");
    NullHandler::new()
}
