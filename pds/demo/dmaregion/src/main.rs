//! A driver-like protection domain for `tests/region-paddr.system`: it owns a
//! DMA region whose physical address the microkit tool picks (`setvar
//! region_paddr`, as sdfgen writes for every sDDF DMA region) and is a capbuf
//! client at the same time. It checks that the region it was given lies
//! outside memsrv's pools and outside a DMA buffer memsrv hands it, that the
//! mapping holds what is written, and that memsrv serves it from both pools.
#![no_std]
#![no_main]

use core::ops::Range;

use capbuf_demo::fail;
use capbuf_microkit::{Align, AllocFlags, Memory, PoolId, Rights};
use capbuf_protocol::PAGE_SIZE;
use sel4_microkit::{debug_println, protection_domain, NullHandler};

const PD: &str = "dmaregion";
/// The pools and the region's size as `tests/region-paddr.system` declares them.
const POOLS: [Range<u64>; 2] = [0xa000_0000..0xa400_0000, 0x6000_0000..0x6001_0000];
const REGION_SIZE: u64 = 0x1_0000;
const BUFFER_SIZE: u64 = 64 << 10;

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Fill the region through its mapping and read it back.
fn write_and_read(vaddr: usize) -> bool {
    let words = (REGION_SIZE / 8) as usize;
    let base = vaddr as *mut u64;
    // SAFETY: the system maps the whole region read-write at `vaddr` for this
    // PD alone (`setvar_vaddr`), and nothing else here uses that memory.
    unsafe {
        for i in 0..words {
            core::ptr::write_volatile(base.add(i), 0xd3a0_0000_0000_0000 | i as u64);
        }
        (0..words).all(|i| core::ptr::read_volatile(base.add(i)) == 0xd3a0_0000_0000_0000 | i as u64)
    }
}

#[protection_domain]
fn init() -> NullHandler {
    let paddr = *sel4_microkit::var!(dma_region_paddr: u64 = 0);
    let vaddr = *sel4_microkit::var!(dma_region_vaddr: usize = 0);
    let region = paddr..paddr + REGION_SIZE;
    let placed = paddr != 0 && paddr % PAGE_SIZE == 0;
    let outside_pools = POOLS.iter().all(|pool| !overlaps(&region, pool));
    let mapped = vaddr != 0 && write_and_read(vaddr);
    debug_println!(
        "dmaregion: region at physical {paddr:#x} (placed by the tool: {placed}), outside both pools: {outside_pools}, \
         mapped at {vaddr:#x}, 64 KiB written and read back: {mapped}"
    );

    let mut capbuf = capbuf_demo::connect(PD);
    let id = capbuf.alloc(BUFFER_SIZE, Align::bits(16), PoolId(0), AllocFlags::UNCACHED).expect("alloc");
    let info = capbuf.info(id).expect("info");
    let buffer = info.physical_address..info.physical_address + BUFFER_SIZE;
    let buffer_apart = !overlaps(&buffer, &region) && overlaps(&buffer, &POOLS[0]);
    let view = capbuf.attach(id, Rights::ReadWrite).expect("attach");
    let mut memory = capbuf.words_mut(id).expect("writable");
    memory.as_mut_ptr().index(0).write(7);
    let usable = memory.as_ptr().index(0).read() == 7 && view.size == BUFFER_SIZE;
    drop(memory);
    // No device was given the address: say so, or FREE would quarantine the memory.
    capbuf.quiesce(id).expect("quiesce");
    capbuf.free(id).expect("free");
    let pools = [capbuf.pool_info(PoolId(0)), capbuf.pool_info(PoolId(1))];
    debug_println!(
        "dmaregion: capbuf buffer at physical {:#x} in pool 0, apart from the region: {buffer_apart}, usable: {usable}; \
         pools 0 and 1 answer: {}",
        info.physical_address,
        pools.iter().all(|p| p.is_ok())
    );
    if placed && outside_pools && mapped && buffer_apart && usable && pools.iter().all(|p| p.is_ok()) {
        debug_println!("CAPBUF REGION TEST: PASSED");
    } else {
        fail!(PD, "the region or capbuf misbehaved (see above)");
    }
    NullHandler::new()
}
