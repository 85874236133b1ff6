//! memsrv: the capbuf memory server protection domain.
//!
//! All decisions are made by `capbuf-server` (host-tested against a model of
//! seL4). This file is the glue: it implements the server's `Kernel` trait
//! with seL4 invocations on memsrv's table CNode and its clients' VSpaces
//! (attachments are mapped by memsrv, never by clients), reads requests from
//! the message registers and replies. No reply carries a capability.
//!
//! memsrv is passive (`passive="true"` in system.xml): it runs on its
//! clients' scheduling contexts, so each client pays for its own requests and
//! memsrv holds no CPU budget of its own. It never blocks a caller: an ALLOC
//! with the WAIT flag that must wait is answered WAITING at once, and memsrv
//! notifies the client on its channel when the client should retry.
//!
//! Quiet by default: memsrv prints its start-up, refusals that mean a memsrv
//! bug (INTERNAL) and kernel errors. Built with `CAPBUF_LOG=verbose` in the
//! environment it also prints per-request events (a pool returning to empty,
//! reclaims, notifications).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

use core::sync::atomic::{AtomicUsize, Ordering};

use capbuf_protocol::{
    inner_bits, inner_cptr, microkit, table_cptr, Config, Rights, CONFIG_WORDS, LARGE_PAGE_BITS, MAX_MESSAGE_WORDS,
    MEMSRV_SCRATCH, MEMSRV_TABLE_CPTR, PAGE_BITS, ROOT_SLOT_SHIFT,
};
use capbuf_server::{CapRef, Kernel, KernelError, MapAttributes, Object, Server, Slot};
use sel4_microkit::{
    debug_println, protection_domain, var, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo,
};

/// What differs between architectures: mapping attributes and the counter.
#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "arch/riscv64.rs")]
#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
mod arch;

/// A 2 MiB frame: `LargePage` on Arm and x86, `MegaPage` on RISC-V.
const LARGE_PAGE: sel4::FrameObjectType = match sel4::FrameObjectType::from_bits(LARGE_PAGE_BITS as usize) {
    Some(large) => large,
    None => panic!("no 2 MiB frames on this architecture"),
};

/// The last-level translation table, whose entries are 4 KiB frames and
/// which one entry of the level above maps over 2 MiB: `PT` on AArch64
/// (level 3 of 4), `PageTable` on RISC-V Sv39 (level 2 of 3) and x86-64
/// (level 3 of 4). The levels above it are the client's own: its program
/// image at 0x200000 lies in the same 1 GiB as capbuf's window.
const LAST_LEVEL_TABLE: sel4::TranslationTableObjectType =
    match sel4::TranslationTableObjectType::from_level(sel4::vspace_levels::NUM_LEVELS - 1) {
        Some(table) => table,
        None => panic!("no last-level translation table"),
    };

/// Pool trees sized for the largest pool this build accepts
/// (`CAPBUF_MAX_POOL_BITS`, see `capbuf_server::capacity`).
const NODES: usize = capbuf_server::pool_nodes(capbuf_server::capacity::MAX_POOL_BITS - PAGE_BITS);

/// What this build's tables are sized for, for capbuf-compose to read
/// (`capbuf_limits`): it refuses a system.xml that needs more.
fn limits_words() -> &'static [u64; 5] {
    var!(#[used(linker)] capbuf_limits: [u64; 5] = capbuf_server::capacity::LIMITS_WORDS)
}

/// `CAPBUF_LOG=verbose` at build time: print per-request events too.
const VERBOSE: bool = matches!(option_env!("CAPBUF_LOG"), Some(level) if level.eq_ignore_ascii_case("verbose"));

/// memsrv's configuration, written into the `capbuf_config` symbol by
/// capbuf-compose from the `<capbuf>` element of system.xml.
fn config_words() -> &'static [u64; CONFIG_WORDS] {
    var!(#[used(linker)] capbuf_config: [u64; CONFIG_WORDS] = [0; CONFIG_WORDS])
}

/// The seL4 side of the server: memsrv's table CNode and what it holds.
struct SeL4 {
    table_bits: usize,
}

fn table() -> sel4::cap::CNode {
    sel4::cap::CNode::from_bits(MEMSRV_TABLE_CPTR)
}

fn error(e: sel4::Error) -> KernelError {
    KernelError(e as u64)
}

fn cap_rights(rights: Rights) -> sel4::CapRights {
    match rights {
        Rights::ReadOnly => sel4::CapRights::read_only(),
        Rights::ReadWrite => sel4::CapRights::read_write(),
    }
}

impl SeL4 {
    /// The slot as a CNode-invocation path from the table: a table slot at
    /// depth `table_bits`, a slot of a guarded CNode in it at depth 58 (the
    /// table, the CNode's guard and its radix).
    fn path(&self, at: CapRef) -> sel4::AbsoluteCPtr {
        let bits = self.table_bits as u64;
        match at {
            CapRef::Table(slot) => table().absolute_cptr_from_bits_with_depth(slot as u64, self.table_bits),
            CapRef::InNode { node, index, .. } => table().absolute_cptr_from_bits_with_depth(
                ((node as u64) << inner_bits(bits)) | index as u64,
                ROOT_SLOT_SHIFT as usize,
            ),
        }
    }

    /// The capability pointer that names the slot, to invoke what it holds.
    fn cptr(&self, at: CapRef) -> u64 {
        let bits = self.table_bits as u64;
        match at {
            CapRef::Table(slot) => table_cptr(bits, slot as u64),
            CapRef::InNode { node, index, .. } => inner_cptr(bits, node as u64, index as u64),
        }
    }
}

impl Kernel for SeL4 {
    fn retype(&mut self, untyped: Slot, object: Object, dest: CapRef, count: u32) -> Result<(), KernelError> {
        let blueprint = match object {
            Object::Untyped { size_bits } => sel4::ObjectBlueprint::Untyped { size_bits: size_bits as usize },
            Object::SmallFrame => sel4::FrameObjectType::GRANULE.blueprint(),
            Object::LargeFrame => LARGE_PAGE.blueprint(),
            Object::PageTable => LAST_LEVEL_TABLE.blueprint(),
            Object::CNode { radix } => sel4::ObjectBlueprint::CNode { size_bits: radix as usize },
        };
        let (node, offset) = match dest {
            CapRef::Table(slot) => (table().absolute_cptr_for_self(), slot),
            CapRef::InNode { node, index, .. } => (self.path(CapRef::Table(node)), index),
        };
        let untyped = sel4::cap::Untyped::from_bits(self.cptr(CapRef::Table(untyped)));
        invoke(|| untyped.untyped_retype(&blueprint, &node, offset as usize, count as usize)).map_err(error)
    }

    fn copy(&mut self, source: CapRef, dest: CapRef, rights: Rights) -> Result<(), KernelError> {
        invoke(|| self.path(dest).copy(&self.path(source), cap_rights(rights))).map_err(error)
    }

    fn mutate_cnode(&mut self, source: Slot, dest: Slot, guard_bits: u32) -> Result<(), KernelError> {
        let guard = sel4::CNodeCapData::new(0, guard_bits as usize).into_word();
        invoke(|| self.path(CapRef::Table(dest)).mutate(&self.path(CapRef::Table(source)), guard)).map_err(error)
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), KernelError> {
        invoke(|| self.path(CapRef::Table(slot)).revoke()).map_err(error)
    }

    fn delete(&mut self, slot: Slot) -> Result<(), KernelError> {
        invoke(|| self.path(CapRef::Table(slot)).delete()).map_err(error)
    }

    fn map_page_table(&mut self, table: CapRef, vspace: Slot, vaddr: u64) -> Result<(), KernelError> {
        let vspace = sel4::cap::VSpace::from_bits(self.cptr(CapRef::Table(vspace)));
        let table = sel4::cap::UnspecifiedIntermediateTranslationTable::from_bits(self.cptr(table));
        invoke(|| {
            table.generic_intermediate_translation_table_map(
                LAST_LEVEL_TABLE,
                vspace,
                vaddr as usize,
                sel4::VmAttributes::default(),
            )
        })
        .map_err(error)
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        vspace: Slot,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        let vspace = sel4::cap::VSpace::from_bits(self.cptr(CapRef::Table(vspace)));
        // Small or large, the map invocation is the same.
        let frame = sel4::cap::UnspecifiedPage::from_bits(self.cptr(frame));
        let rights = cap_rights(attributes.rights);
        invoke(|| frame.frame_map(vspace, vaddr as usize, rights, arch::map_attributes(attributes.cached)))
            .map_err(error)
    }

    /// A frame of a `device` pool: mapped in memsrv's own VSpace (Microkit
    /// slot 3) at its scratch address, whose translation tables
    /// capbuf-compose made, zeroed, written back to memory, unmapped.
    fn zero_frame(&mut self, frame: CapRef, object: Object) -> Result<(), KernelError> {
        let (vaddr, bytes) = match object {
            Object::LargeFrame => (MEMSRV_SCRATCH + (1 << LARGE_PAGE_BITS), 1usize << LARGE_PAGE_BITS),
            _ => (MEMSRV_SCRATCH, 1usize << PAGE_BITS),
        };
        let own = sel4::cap::VSpace::from_bits(microkit::VSPACE_CPTR);
        let page = sel4::cap::UnspecifiedPage::from_bits(self.cptr(frame));
        let attributes = arch::map_attributes(true);
        invoke(|| page.frame_map(own, vaddr as usize, sel4::CapRights::read_write(), attributes)).map_err(error)?;
        // SAFETY: the frame was just mapped read-write at `vaddr`, `bytes`
        // long; nothing else of memsrv's lives in the scratch range
        // (capbuf-compose checks), and the mapping ends before this returns.
        unsafe { core::ptr::write_bytes(vaddr as usize as *mut u8, 0, bytes) };
        arch::clean_to_memory(vaddr as usize, bytes);
        invoke(|| page.frame_unmap()).map_err(error)
    }

    fn map_io_frame(&mut self, frame: CapRef, iospace: Slot, rights: Rights, ioaddr: u64) -> Result<(), KernelError> {
        let (frame, iospace) = (self.cptr(frame), self.cptr(CapRef::Table(iospace)));
        invoke(|| arch::map_io_frame(frame, iospace, cap_rights(rights), ioaddr)).map_err(error)
    }
}

struct Memsrv {
    server: Option<Server<SeL4, NODES>>,
}

/// Where the benchmark's counters are (bench/system.xml maps a page here and
/// the bench PD reads it; 0, so no counting, in every other system): ticks
/// of the generic timer spent in [`Handler::protected`] and in
/// [`Server::handle`] (its own code and its kernel invocations) and in kernel
/// invocations, summed.
fn bench_counters() -> usize {
    *var!(#[used(linker)] bench_counters: usize = 0)
}

/// The benchmark's per-invocation counters: slot `FIRST_CALL_COUNTER + k`
/// sums the ticks of the `k`-th kernel invocation of each request, the last
/// of the `CALL_COUNTERS` slots those of the rest (pds/bench reads them).
const FIRST_CALL_COUNTER: usize = 8;
const CALL_COUNTERS: usize = 24;

/// Kernel invocations so far in the request being handled (counted only when
/// there are counters).
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Run one kernel invocation, adding its ticks to the benchmark's counter 2
/// and to the counter of its place in the request, when there are counters.
fn invoke<T>(call: impl FnOnce() -> T) -> T {
    let counters = bench_counters();
    if counters == 0 {
        return call();
    }
    let start = arch::ticks();
    let result = call();
    let ticks = arch::ticks() - start;
    add_ticks(counters, 2, ticks);
    let k = CALLS.fetch_add(1, Ordering::Relaxed).min(CALL_COUNTERS - 1);
    add_ticks(counters, FIRST_CALL_COUNTER + k, ticks);
    result
}

/// Add `ticks` to the benchmark's counter `index`.
fn add_ticks(counters: usize, index: usize, ticks: u64) {
    let counter = (counters + index * 8) as *mut u64;
    // SAFETY: `counters` is the page bench/system.xml maps read-write here for
    // these counters alone; memsrv is single-threaded.
    unsafe { counter.write_volatile(counter.read_volatile() + ticks) };
}

impl Memsrv {
    fn report_pools(&self, when: &str) {
        let Some(server) = &self.server else { return };
        for pool in 0..server.config().pool_count() {
            let (free, total) = (server.free_bytes(pool).unwrap_or(0), server.total_bytes(pool).unwrap_or(0));
            debug_println!("memsrv: {when}: pool {pool} free {free} of {total} bytes");
        }
    }
}

#[protection_domain]
fn init() -> Memsrv {
    let config = match Config::decode(config_words()) {
        Ok(config) => config,
        Err(e) => {
            debug_println!("memsrv: ERROR: configuration refused ({e:?}); answering every request with UNKNOWN_CALLER");
            return Memsrv { server: None };
        }
    };
    debug_assert_eq!(limits_words()[0], capbuf_server::capacity::LIMITS_MAGIC);
    let kernel = SeL4 { table_bits: config.table_bits as usize };
    let clients = config.clients.iter().flatten().count();
    match Server::start(kernel, config) {
        Ok(server) => {
            debug_println!(
                "memsrv: serving {clients} clients, protocol version {:#x}",
                capbuf_protocol::PROTOCOL_VERSION
            );
            let memsrv = Memsrv { server: Some(server) };
            memsrv.report_pools("start");
            memsrv
        }
        Err(e) => {
            match e.kernel {
                Some(failure) => debug_println!(
                    "memsrv: ERROR: cannot start ({:?}): the kernel refused {} with seL4 error {}",
                    e.error,
                    failure.invocation.name(),
                    failure.code
                ),
                None => debug_println!("memsrv: ERROR: cannot start ({:?})", e.error),
            }
            Memsrv { server: None }
        }
    }
}

impl Handler for Memsrv {
    type Error = Infallible;

    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        let counters = bench_counters();
        let entered = if counters != 0 { arch::ticks() } else { 0 };
        let info = msg_info.inner();
        // Read no more registers than a request may have; a longer message is
        // refused by length, never read past.
        let count = info.length().min(MAX_MESSAGE_WORDS + 1);
        // All of them, whatever the length (only `words[..count]` is read),
        // in two copies of fixed length: a copy of variable length, or of
        // more than 32 bytes, is a call to memcpy on this target (about 40
        // instructions for 4 words), one of 32 bytes a few loads and stores.
        let mut words = [0u64; MAX_MESSAGE_WORDS + 1];
        sel4::with_ipc_buffer(|ipc| {
            let regs = ipc.msg_regs();
            words[..MAX_MESSAGE_WORDS].copy_from_slice(&regs[..MAX_MESSAGE_WORDS]);
            words[MAX_MESSAGE_WORDS] = regs[MAX_MESSAGE_WORDS];
        });
        let Some(server) = self.server.as_mut() else {
            let error = capbuf_protocol::Error::UnknownCaller.code();
            return Ok(MessageInfo::from_inner(sel4::MessageInfo::new(error, 0, 0, 0)));
        };
        if counters != 0 {
            CALLS.store(0, Ordering::Relaxed);
        }
        let handling = if counters != 0 { arch::ticks() } else { 0 };
        let outcome = server.handle(channel.index() as u64, info.label(), &words[..count], info.extra_caps());
        if counters != 0 {
            add_ticks(counters, 1, arch::ticks() - handling);
        }
        let freed_all = VERBOSE
            && matches!(outcome.result, Ok(_))
            && info.label() == capbuf_protocol::Op::Free as u64
            && server.registry().is_empty();
        if outcome.result == Err(capbuf_protocol::Error::Internal) {
            debug_println!(
                "memsrv: ERROR: op {} from channel {}: refused with INTERNAL: memsrv's books disagree (a memsrv bug)",
                info.label(),
                channel.index()
            );
        }
        if VERBOSE {
            if let Ok(capbuf_protocol::Reply::Reclaim(reclaimed)) = outcome.result {
                debug_println!(
                    "memsrv: channel {} reclaimed a client: {} buffers, {} bytes, {} attachments",
                    channel.index(),
                    reclaimed.buffers,
                    reclaimed.bytes,
                    reclaimed.attachments
                );
            }
        }
        // Clients whose waiting ALLOC would now pass: notify each on its
        // channel (memsrv's end of its PPC channel). The queue's order
        // decided who; those chosen by one request are signalled together.
        // Only the set bits are visited: most requests notify no one, and a
        // walk over all 64 clients cost every request about 250 instructions.
        let mut notify = outcome.notify;
        while notify != 0 {
            let client = notify.trailing_zeros() as usize;
            notify &= notify - 1;
            if let Some(config) = server.config().clients[client] {
                if VERBOSE {
                    debug_println!("memsrv: notifying channel {}: its waiting ALLOC may pass now", config.channel);
                }
                Channel::new(config.channel as usize).notify();
            }
        }
        // A kernel refusal is a memsrv bug or a broken system description: say
        // which invocation, and what could not be taken back.
        if let Some(failure) = outcome.kernel {
            debug_println!(
                "memsrv: ERROR: op {}: the kernel refused {} with seL4 error {}; the request was undone",
                info.label(),
                failure.invocation.name(),
                failure.code
            );
        }
        if let Some(failure) = outcome.undo {
            debug_println!(
                "memsrv: ERROR: op {}: undoing it, the kernel refused {} with seL4 error {}; lost {} bytes, {} slots",
                info.label(),
                failure.invocation.name(),
                failure.code,
                outcome.lost.bytes,
                outcome.lost.slots
            );
        }
        let mut out = [0u64; MAX_MESSAGE_WORDS];
        let (label, length) = outcome.encode(&mut out);
        sel4::with_ipc_buffer_mut(|ipc| {
            // All four (those past `length` are 0 and not sent): a copy of
            // fixed length, no call to memcpy.
            ipc.msg_regs_mut()[..MAX_MESSAGE_WORDS].copy_from_slice(&out);
            if let Some(slot) = outcome.send {
                ipc.caps_or_badges_mut()[0] = capbuf_protocol::send_cptr(slot as u64);
            }
        });
        // EXPORT's CNode goes with the reply; the kernel copies it into the
        // client's receive slot (or drops it if that slot is not empty).
        let reply = sel4::MessageInfo::new(label, 0, outcome.send.is_some() as usize, length);
        if freed_all {
            self.report_pools("all buffers freed");
        }
        if counters != 0 {
            add_ticks(counters, 0, arch::ticks() - entered);
        }
        Ok(MessageInfo::from_inner(reply))
    }

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        debug_println!("memsrv: ignoring unexpected notification {}", channels.display());
        Ok(())
    }

    fn fault(&mut self, child: Child, _msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        debug_println!("memsrv: ignoring fault of child {} (memsrv has no children)", child.index());
        Ok(None)
    }
}
