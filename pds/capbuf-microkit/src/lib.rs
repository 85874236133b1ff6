//! capbuf for Rust Microkit protection domains.
//!
//! ```ignore
//! let mut capbuf = capbuf_microkit::connect(Channel::new(0))?;   // checks the protocol version
//! let id = capbuf.alloc(64 * 1024, Align::PAGE, PoolId(0), AllocFlags::NONE)?;
//! capbuf.attach(id, Rights::ReadWrite)?;                           // one PPC, mapped
//! capbuf.words_mut(id).unwrap().as_mut_ptr().index(0).write(42);  // volatile
//! capbuf.grant(id, ClientId(2), Rights::ReadOnly)?;               // client 2 may attach read-only
//! capbuf.free(id)?;                                                // revoked everywhere
//! ```
//!
//! Arguments are typed: a size in bytes, an [`Align`] ([`Align::PAGE`] or
//! [`Align::bits`]), a [`PoolId`] (the pool's index in `system.xml`),
//! [`AllocFlags`] (`NONE`, or `UNCACHED` and `READ_ONLY` combined with `|`),
//! a [`ClientId`] (the grantee's `id` in `system.xml`) and [`Rights`]. A call
//! returns memsrv's refusal as [`ClientError::Server`], a kernel failure
//! memsrv reported as [`ClientError::Kernel`], and a reply memsrv would not
//! send as [`ClientError::BadReply`].
//!
//! Waiting for memory: `capbuf.alloc_or_wait(...)` (ALLOC with
//! [`AllocFlags::WAIT`]) answers `Err(ClientError::Server(Error::Waiting))`
//! when memory or quota is short; memsrv then notifies this PD on its channel
//! to memsrv (the `notified` entry point gets that channel) when a free may
//! have made room, and the PD calls it again. A PD that uses WAIT must
//! handle that notification. `capbuf.reclaim(client)` is for a supervisor
//! (`<client supervisor="...">` in `system.xml`), see the README.
//!
//! The protocol logic lives in `capbuf-client` (host-tested); this crate is the
//! seL4 glue: the PPC, volatile access to what memsrv mapped, and the cache
//! maintenance instructions a driver runs around DMA on a cached buffer
//! ([`DmaSync`]).
//!
//! A buffer is physically contiguous: byte `offset` is at INFO's
//! `physical_address + offset` (for `dma="true"` clients), whatever frames it
//! is made of; [`dma::physical_ranges`] splits a range at frame boundaries for
//! drivers that want it.
#![no_std]

use capbuf_protocol::MAX_MESSAGE_WORDS;
use core::ptr::NonNull;
use sel4_microkit::{Channel, MessageInfo};
use sel4_shared_memory::{access::ReadOnly, SharedMemoryRef};

pub use capbuf_client::{dma, ClientError, Export, RawReply, Sys, View};
pub use capbuf_protocol::{
    Align, AllocFlags, BufferId, ClientId, Error, HelloReply, InfoReply, PoolId, PoolInfoReply, ReclaimReply, Rights,
};

/// The kernel side of the client library: one PPC channel to memsrv.
pub struct MicrokitSys {
    channel: Channel,
    calls: u64,
}

impl MicrokitSys {
    /// PPCs made to memsrv so far (the benchmark counts them per request).
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

impl Sys for MicrokitSys {
    /// `seL4_SetCapReceivePath(458, slot, 6)`: the root CNode capability
    /// capbuf-compose gives a `frame_caps` client at Microkit-CNode slot 458,
    /// root slot `slot`, for this call only.
    fn call_receiving(&mut self, label: u64, words: &[u64], slot: u64) -> RawReply {
        let root = sel4::cap::CNode::from_bits(capbuf_protocol::CLIENT_ROOT_CPTR);
        let path = root.absolute_cptr_from_bits_with_depth(slot, capbuf_protocol::ROOT_CNODE_BITS as usize);
        let before = sel4::with_ipc_buffer_mut(|ipc| {
            let before = ipc.recv_slot();
            ipc.set_recv_slot(&path);
            before
        });
        let reply = self.call(label, words);
        sel4::with_ipc_buffer_mut(|ipc| ipc.set_recv_slot(&before));
        reply
    }

    fn call(&mut self, label: u64, words: &[u64]) -> RawReply {
        // Word by word (at most MAX_MESSAGE_WORDS, unrolled): a copy of
        // variable length compiles to a call to memcpy, about 40
        // instructions for 4 words on this target. (No request is longer;
        // a longer message, which memsrv refuses, is copied whole.)
        sel4::with_ipc_buffer_mut(|ipc| {
            let regs = ipc.msg_regs_mut();
            if words.len() > MAX_MESSAGE_WORDS {
                regs[..words.len()].copy_from_slice(words);
                return;
            }
            for i in 0..MAX_MESSAGE_WORDS {
                if let Some(&word) = words.get(i) {
                    regs[i] = word;
                }
            }
        });
        let request = sel4::MessageInfo::new(label, 0, 0, words.len());
        self.calls += 1;
        let reply = self.channel.pp_call(MessageInfo::from_inner(request));
        let inner = reply.inner();
        let length = inner.length().min(MAX_MESSAGE_WORDS);
        let mut raw = RawReply {
            label: inner.label(),
            words: [0; MAX_MESSAGE_WORDS],
            length: inner.length(),
            caps: inner.extra_caps(),
        };
        sel4::with_ipc_buffer(|ipc| {
            let regs = ipc.msg_regs();
            for i in 0..MAX_MESSAGE_WORDS {
                if i < length {
                    raw.words[i] = regs[i];
                }
            }
        });
        raw
    }
}

/// The client library as Rust protection domains use it.
pub type Capbuf = capbuf_client::Client<MicrokitSys>;

/// Greet memsrv on PPC channel `channel` and check its protocol version.
pub fn connect(channel: Channel) -> Result<Capbuf, ClientError> {
    capbuf_client::Client::new(MicrokitSys { channel, calls: 0 })
}

/// Volatile access to the memory of attached buffers, as 64-bit words.
///
/// Another protection domain or a device may write the memory at any time, so
/// every access is a volatile read or write. The view borrows the client, so
/// the buffer cannot be detached or freed through it, nor its window reused,
/// while the view lives. If the owner frees the buffer or lowers or withdraws
/// the grant meanwhile, the mapping is gone and an access faults: it never
/// reaches memory that was reused, and memsrv keeps the window slots from
/// this client's next attachments until it detaches the buffer.
pub trait Memory {
    /// Read-only view of attached buffer `id`.
    fn words(&self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64], ReadOnly>>;
    /// Writable view of attached buffer `id`, or `None` if the attachment is read-only.
    fn words_mut(&mut self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64]>>;
}

fn shared(view: &View) -> SharedMemoryRef<'static, [u64]> {
    let pointer = core::ptr::slice_from_raw_parts_mut(view.vaddr as *mut u64, (view.size / 8) as usize);
    // SAFETY: memsrv mapped `view.size` bytes at `view.vaddr` in this
    // protection domain's VSpace, inside capbuf's window, which nothing else
    // maps; callers narrow the lifetime to a borrow of the client, which
    // keeps the window slot reserved (memsrv does not reuse it, even after
    // the owner revokes the attachment, until this client detaches the
    // buffer, which needs the client mutably); all access is volatile.
    unsafe { SharedMemoryRef::new(NonNull::new(pointer).expect("the window does not start at 0")) }
}

impl Memory for Capbuf {
    fn words(&self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64], ReadOnly>> {
        self.view(id).map(|view| shared(&view).read_only())
    }

    fn words_mut(&mut self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64]>> {
        self.view(id).filter(|view| view.rights.can_write()).map(|view| shared(&view))
    }
}

/// Cache maintenance for DMA on cached buffers (Linux's
/// `dma_sync_single_for_device` / `_for_cpu`).
///
/// Needed only for buffers allocated without `UNCACHED` that a device which
/// does not snoop the CPU's caches reads or writes; on an `UNCACHED` buffer
/// both calls check the range, issue the barrier and touch no line. On
/// AArch64 both run user-mode cache instructions by virtual address over the
/// range's lines (the SDK's kernels are built with
/// `KernelAArch64UserCacheEnable`), then `dsb sy`, so they need no capability
/// and no call to memsrv; on RISC-V and x86-64, whose DMA is coherent, they
/// check the range and issue the barrier only (see `mod cache`). Ranges
/// are checked against the attachment: [`ClientError::OutOfRange`] past its
/// end, `NotAttached` for a buffer this client has not attached.
///
/// QEMU's TCG models no caches: in emulation DMA is coherent whether or not
/// these are called, so only hardware shows a missing call.
pub trait DmaSync {
    /// Clean (`dc cvac`) the lines of `len` bytes at `offset`: what the CPU
    /// wrote reaches memory. Call it after writing data a device will read,
    /// before telling the device (writing its doorbell); and before giving the
    /// device a range to write, so that no dirty line is later evicted over
    /// what the device wrote.
    fn sync_for_device(&self, id: BufferId, offset: u64, len: u64) -> Result<(), ClientError>;

    /// Clean and invalidate (`dc civac`) the lines of `len` bytes at
    /// `offset`: the CPU's next reads come from memory. Call it after the
    /// device reports it wrote the range, before reading it (lines may have
    /// been fetched speculatively during the transfer). `dc ivac`, invalidate
    /// without clean, is not allowed at EL0; so do not write the range, nor
    /// other bytes in its first and last lines, while the device owns it: a
    /// dirty line would be written back over the device's data. Keep
    /// device-written ranges cache-line aligned.
    fn sync_for_cpu(&self, id: BufferId, offset: u64, len: u64) -> Result<(), ClientError>;
}

impl DmaSync for Capbuf {
    fn sync_for_device(&self, id: BufferId, offset: u64, len: u64) -> Result<(), ClientError> {
        let lines = self.cache_lines(id, offset, len, cache::line_size())?;
        lines.for_each(cache::clean);
        cache::barrier();
        Ok(())
    }

    fn sync_for_cpu(&self, id: BufferId, offset: u64, len: u64) -> Result<(), ClientError> {
        let lines = self.cache_lines(id, offset, len, cache::line_size())?;
        lines.for_each(cache::clean_invalidate);
        cache::barrier();
        Ok(())
    }
}

/// The AArch64 instructions. `cache_lines` only yields lines of an
/// attachment memsrv mapped into this protection domain.
#[cfg(target_arch = "aarch64")]
mod cache {
    use core::arch::asm;

    /// Smallest data cache line of this CPU's caches, from `CTR_EL0.DminLine`
    /// (readable at EL0: the kernel sets `SCTLR_EL1.UCT`).
    pub fn line_size() -> u64 {
        let ctr: u64;
        // SAFETY: reads a system register; no memory access, no side effect.
        unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
        4 << ((ctr >> 16) & 0xf)
    }

    /// `dc cvac`: clean the line at `address` to the point of coherency.
    pub fn clean(address: u64) {
        // SAFETY: cache maintenance by VA changes no memory contents; EL0 may
        // run it (`SCTLR_EL1.UCI`) on an address it may read, which every
        // line of a mapped attachment is.
        unsafe { asm!("dc cvac, {}", in(reg) address, options(nostack, preserves_flags)) };
    }

    /// `dc civac`: clean and invalidate the line at `address`.
    pub fn clean_invalidate(address: u64) {
        // SAFETY: as for `clean`; the line's contents in memory are those the
        // CPU last wrote or, if it wrote none since it was cleaned, the device's.
        unsafe { asm!("dc civac, {}", in(reg) address, options(nostack, preserves_flags)) };
    }

    /// `dsb sy`: the maintenance is complete, for every observer, before
    /// anything after it (the doorbell write, the reads of the data).
    pub fn barrier() {
        // SAFETY: a barrier; no memory access of its own.
        unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
    }
}

/// RISC-V and x86-64: DMA is coherent with the CPU's caches (x86-64 devices
/// snoop them; the RISC-V platforms seL4 supports, `qemu_virt_riscv64`
/// among them, are coherent, and a non-coherent one would need Zicbom's
/// `cbo.clean`/`cbo.flush`, which user mode may run only if the kernel sets
/// `senvcfg.CBCFE`: seL4 16.0.0 does not). No line is touched; the barrier
/// orders the CPU's memory accesses before the device register access that
/// follows (`fence iorw, iorw`; `mfence`).
#[cfg(not(target_arch = "aarch64"))]
mod cache {
    pub fn line_size() -> u64 {
        64
    }
    pub fn clean(_address: u64) {}
    pub fn clean_invalidate(_address: u64) {}
    #[cfg(target_arch = "riscv64")]
    pub fn barrier() {
        // SAFETY: a fence; no memory access of its own.
        unsafe { core::arch::asm!("fence iorw, iorw", options(nostack, preserves_flags)) };
    }
    #[cfg(target_arch = "x86_64")]
    pub fn barrier() {
        // SAFETY: a fence; no memory access of its own.
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    }
    #[cfg(not(any(target_arch = "riscv64", target_arch = "x86_64")))]
    pub fn barrier() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}
