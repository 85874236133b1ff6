//! x86-64: what memsrv does differently here, in one place.

/// The attributes of a client mapping: write-back (`seL4_X86_Default_VMAttributes`)
/// or uncached (`seL4_X86_CacheDisabled`). seL4 16.0.0 offers no
/// execute-never attribute on x86, so the mapping's rights alone apply.
pub fn map_attributes(cached: bool) -> sel4::VmAttributes {
    if cached {
        sel4::VmAttributes::DEFAULT
    } else {
        sel4::VmAttributes::CACHE_DISABLED
    }
}

/// The time-stamp counter, for the benchmark's counters only (the bench PD
/// runs on AArch64; its counters stay 0 here).
pub fn ticks() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `rdtsc` reads a counter (user mode may, unless CR4.TSD); no memory access.
    unsafe { core::arch::asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (high as u64) << 32 | low as u64
}

/// memsrv's zeros reach memory and devices without cache maintenance on
/// x86-64 (DMA snoops the caches); `mfence` orders them before the unmap and
/// the reply.
pub fn clean_to_memory(_vaddr: usize, _bytes: usize) {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("mfence", options(nostack)) };
}

/// `seL4_X86_Page_MapIO`: the 4 KiB frame `frame` into the device I/O
/// address space `iospace` at `ioaddr` (the I/O page tables are the
/// system's). The SDK's x86_64 kernels are built with the IOMMU.
#[sel4::sel4_cfg(IOMMU)]
pub fn map_io_frame(frame: u64, iospace: u64, rights: sel4::CapRights, ioaddr: u64) -> Result<(), sel4::Error> {
    let frame = sel4::cap::UnspecifiedPage::from_bits(frame);
    frame.io_frame_map(sel4::cap::IOSpace::from_bits(iospace), rights, ioaddr)
}

/// A kernel without the IOMMU has no I/O address spaces: capbuf-compose
/// gives such a system no `io_space` client.
#[sel4::sel4_cfg(not(IOMMU))]
pub fn map_io_frame(_: u64, _: u64, _: sel4::CapRights, _: u64) -> Result<(), sel4::Error> {
    Err(sel4::Error::IllegalOperation)
}
