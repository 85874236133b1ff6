//! A buffer fits wherever its pages are free: the pool places runs across
//! its blocks, and memsrv makes and maps them (2 MiB frames where physical
//! memory is 2 MiB-aligned, 4 KiB frames before and after) on the seL4 model.

mod common;

use capbuf_client::dma;
use capbuf_protocol::{Align, AllocFlags, PoolConfig, PoolId, Rights, LARGE_PAGE_BITS, MAX_POOLS};
use common::*;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

fn with_large_stack(test: fn()) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(test).unwrap().join().unwrap();
}

/// The case measured in QEMU before runs could cross blocks: a 16 MiB pool
/// holding an 8 MiB buffer and one page more has 8 MiB - 4 KiB free in one
/// run but no free 8 MiB block, and 2044 pages failed. Pool 1 holds the
/// metadata reserves, so pool 0 is all for buffers.
#[test]
fn a_buffer_fits_wherever_its_pages_are_free() {
    with_large_stack(fits_where_free);
}

fn fits_where_free() {
    let mut config = common::config(32 * MIB, 8, 8);
    config.pools = [None; MAX_POOLS];
    config.pools[0] = Some(PoolConfig { physical_address: 0x6000_0000, size_bits: 24, device: false });
    config.pools[1] = Some(PoolConfig { physical_address: 0x7000_0000, size_bits: 22, device: false });
    let world = world_with(config);
    let mut driver = client(&world, 2);
    let eight = driver.alloc(8 * MIB, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let page = driver.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let info = driver.info(page).unwrap();
    assert_eq!(info.physical_address, 0x6000_0000, "small runs first fit from the bottom, the 8 MiB buffer at the top");
    assert_eq!(driver.info(eight).unwrap().physical_address, 0x6000_0000 + 8 * MIB);
    let pool = driver.pool_info(PoolId(0)).unwrap();
    assert_eq!((pool.free, pool.largest_free), (8 * MIB - PAGE, 8 * MIB - PAGE));
    assert!(driver.alloc(8 * MIB, Align::PAGE, PoolId(0), AllocFlags::NONE).is_err());

    let size = 2044 * PAGE;
    let id = driver.alloc(size, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let info = driver.info(id).unwrap();
    assert!(info.physical_address > 0x6000_0000, "{:#x}", info.physical_address);
    assert_ne!(info.physical_address % (2 * MIB), 0, "off a 2 MiB boundary: the case this test is for");
    assert_eq!(info.physical_address + size, 0x6000_0000 + 8 * MIB, "at the top of the free run: no 4 KiB tail");
    assert_eq!(info.page_bits, LARGE_PAGE_BITS as u64, "it still has 2 MiB frames");

    let view = driver.attach(id, Rights::ReadWrite).unwrap();
    assert_eq!(view.size, size);
    assert_eq!(view.vaddr % (2 * MIB), info.physical_address % (2 * MIB), "mapped so that vaddr = paddr (mod 2 MiB)");
    let mappings = world.borrow().kernel().client_mappings(2);
    let mut covered = 0;
    let mut large = 0;
    for mapping in &mappings {
        let offset = mapping.vaddr - view.vaddr;
        assert_eq!(mapping.physical_address, info.physical_address + offset, "frame at {offset:#x}");
        assert_eq!(dma::frame_at(info.physical_address, size, offset), (offset, 1 << mapping.size_bits));
        large += (mapping.size_bits == LARGE_PAGE_BITS) as u64;
        covered += 1 << mapping.size_bits;
    }
    assert_eq!(covered, size, "the frames cover the buffer");
    assert_eq!(large, 3, "every whole aligned 2 MiB is one large frame");
    let ranges: Vec<(u64, u64)> = dma::physical_ranges(&info, 0, size).unwrap().collect();
    assert_eq!(ranges.len(), mappings.len());
    for offset in [0, size / 2, size - 8] {
        world.borrow_mut().kernel_mut().client_write(2, view.vaddr + offset, offset + 1).unwrap();
        assert_eq!(world.borrow().kernel().client_read(2, view.vaddr + offset), Ok(offset + 1));
    }
    // Another client sees the same buffer at its own address, same layout.
    driver.grant(id, capbuf_protocol::ClientId(10), Rights::ReadOnly).unwrap();
    let mut other = client(&world, 0);
    let seen = other.attach(id, Rights::ReadOnly).unwrap();
    assert_eq!(world.borrow().kernel().client_read(0, seen.vaddr + size - 8), Ok(size - 8 + 1));

    other.detach(id).unwrap();
    driver.detach(id).unwrap();
    for learnt in [eight, id, page] {
        // The driver learnt their addresses: quarantined until it says no device uses them.
        driver.free(learnt).unwrap();
        driver.quiesce(learnt).unwrap();
    }
    let pool = driver.pool_info(PoolId(0)).unwrap();
    assert_eq!(pool.free, 16 * MIB);
    assert_pristine(&world);
}
