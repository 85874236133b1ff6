//! AArch64: what memsrv does differently here, in one place.

/// The attributes of a client mapping: normal write-back memory
/// (`seL4_ARM_Default_VMAttributes`) or, uncached, Normal non-cacheable
/// (no `seL4_ARM_PageCacheable`); never executable.
pub fn map_attributes(cached: bool) -> sel4::VmAttributes {
    let cache = if cached { sel4::VmAttributes::DEFAULT } else { sel4::VmAttributes::NONE };
    cache | sel4::VmAttributes::EXECUTE_NEVER
}

/// The physical counter (`CNTPCT_EL0`), for the benchmark's counters only.
pub fn ticks() -> u64 {
    let value: u64;
    // SAFETY: reads a system register user code may read; `isb` keeps the
    // read from moving across the counted code.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", "isb", out(reg) value, options(nomem, nostack)) };
    value
}

/// Write the zeros memsrv put in `[vaddr, vaddr + bytes)` (mapped cacheable)
/// back to memory and drop the lines, as the kernel does after zeroing a
/// frame it retypes: a client may map the frame uncached, and a device reads
/// memory, not the cache. `dc civac` per line of the smallest data-cache line
/// size (`CTR_EL0.DminLine`), then `dsb sy`.
pub fn clean_to_memory(vaddr: usize, bytes: usize) {
    let ctr: u64;
    // SAFETY: reads an ID register user code may read (seL4 leaves EL0 access on).
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4usize << ((ctr >> 16) & 0xf);
    for address in (vaddr..vaddr + bytes).step_by(line) {
        // SAFETY: cache maintenance of a line memsrv has mapped; no data changes.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) address, options(nostack)) };
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}

/// No I/O address spaces here (Microkit 2.3.0 builds them on x86_64 only):
/// capbuf-compose gives such a system no `io_space` client.
pub fn map_io_frame(_: u64, _: u64, _: sel4::CapRights, _: u64) -> Result<(), sel4::Error> {
    Err(sel4::Error::IllegalOperation)
}
