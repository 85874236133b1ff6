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
