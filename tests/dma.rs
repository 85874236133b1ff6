//! A buffer is physically contiguous: the claim `capbuf_client::dma` makes,
//! checked against the frames memsrv really maps (on the seL4 model), and the
//! library's answers for DMA helpers on views it does or does not hold.

mod common;

use capbuf_client::{dma, ClientError};
use capbuf_protocol::{Align, AllocFlags, Error, PoolId, Rights};
use common::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// memsrv's state lives on the stack in these tests: more than a test thread's default.
fn with_large_stack(test: fn()) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(test).unwrap().join().unwrap();
}

#[test]
fn every_frame_is_at_the_base_address_plus_its_offset() {
    with_large_stack(frames_at_base_plus_offset);
}

fn frames_at_base_plus_offset() {
    let world = world_with(config(16 * MIB, 16, 16));
    let mut driver = client(&world, 2);
    for (size, pool) in [(4 * KIB, 0), (60 * KIB, 1), (2 * MIB, 0), (2 * MIB + 4 * KIB, 0), (3 * MIB, 0), (6 * MIB, 2)]
    {
        let id = driver.alloc(size, Align::PAGE, PoolId(pool), AllocFlags::NONE).unwrap();
        let view = driver.attach(id, Rights::ReadWrite).unwrap();
        let info = driver.info(id).unwrap();
        let mappings = world.borrow().kernel().client_mappings(2);
        let mut covered = 0;
        for mapping in &mappings {
            let offset = mapping.vaddr - view.vaddr;
            assert_eq!(mapping.physical_address, info.physical_address + offset, "{size} bytes: frame at {offset:#x}");
            let frame = dma::frame_at(info.physical_address, size, offset);
            assert_eq!(frame, (offset, 1 << mapping.size_bits), "the library's layout");
            covered += 1 << mapping.size_bits;
        }
        assert_eq!(covered, size, "the frames cover the buffer");

        // Split at every frame, the buffer's physical ranges are the frames themselves.
        let ranges: Vec<(u64, u64)> = dma::physical_ranges(&info, 0, size).unwrap().collect();
        let frames: Vec<(u64, u64)> = mappings.iter().map(|m| (m.physical_address, 1 << m.size_bits)).collect();
        assert_eq!(ranges, frames);
        // The driver learnt the address: its memory is quarantined until it says no device uses it.
        driver.free(id).unwrap();
        driver.quiesce(id).unwrap();
    }
}

#[test]
fn the_library_answers_for_views_it_does_not_hold() {
    with_large_stack(views_not_held);
}

fn views_not_held() {
    let world = world();
    let mut driver = client(&world, 2);
    let id = driver.alloc(8 * KIB, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(driver.cache_lines(id, 0, 1, 64), Err(ClientError::Server(Error::NotAttached)), "not attached yet");
    driver.attach(id, Rights::ReadWrite).unwrap();
    assert_eq!(driver.cache_lines(id, 0, 8 * KIB, 64).map(|lines| lines.count()), Ok(128));
    assert_eq!(driver.cache_lines(id, 0, 8 * KIB + 1, 64), Err(ClientError::OutOfRange));
    driver.detach(id).unwrap();
    assert_eq!(driver.cache_lines(id, 0, 1, 64), Err(ClientError::Server(Error::NotAttached)), "detached");

    let uncached = driver.alloc(8 * KIB, Align::PAGE, PoolId(0), AllocFlags::UNCACHED).unwrap();
    driver.attach(uncached, Rights::ReadWrite).unwrap();
    assert_eq!(driver.cache_lines(uncached, 0, 8 * KIB, 64).map(|lines| lines.count()), Ok(0));

    // A client without the dma right learns no physical range.
    let mut other = client(&world, 0);
    let hidden = other.alloc(4 * KIB, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let info = other.info(hidden).unwrap();
    assert_eq!(dma::physical_ranges(&info, 0, 4 * KIB), Err(ClientError::PhysicalAddressHidden));
}
