//! RISC-V (Sv39): what memsrv does differently here, in one place.

/// The attributes of a client mapping: never executable
/// (`seL4_RISCV_ExecuteNever`). RISC-V page tables carry no cache
/// attributes (the platform's physical memory attributes decide, and RAM on
/// `qemu_virt_riscv64` is cacheable and coherent with DMA), so an uncached
/// buffer is mapped like a cached one; see docs/dma.md.
pub fn map_attributes(_cached: bool) -> sel4::VmAttributes {
    sel4::VmAttributes::DEFAULT | sel4::VmAttributes::EXECUTE_NEVER
}

/// The `time` CSR, for the benchmark's counters only (the bench PD runs on
/// AArch64; its counters stay 0 here).
pub fn ticks() -> u64 {
    let value: u64;
    // SAFETY: reads a counter CSR user code may read; no memory access.
    unsafe { core::arch::asm!("rdtime {}", out(reg) value, options(nomem, nostack)) };
    value
}

/// memsrv's zeros reach memory and devices without cache maintenance here
/// (RAM on `qemu_virt_riscv64` is coherent with DMA, see docs/dma.md); a
/// `fence` orders them before the unmap and the reply.
pub fn clean_to_memory(_vaddr: usize, _bytes: usize) {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("fence iorw, iorw", options(nostack)) };
}

/// No I/O address spaces here (Microkit 2.3.0 builds them on x86_64 only):
/// capbuf-compose gives such a system no `io_space` client.
pub fn map_io_frame(_: u64, _: u64, _: sel4::CapRights, _: u64) -> Result<(), sel4::Error> {
    Err(sel4::Error::IllegalOperation)
}
