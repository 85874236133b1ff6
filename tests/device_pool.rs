//! A pool of RAM the kernel does not know (`device_untyped="true"`): seL4
//! hands it out as device untyped, which it never zeroes and of which it makes
//! no CNode or page table. memsrv zeroes every new buffer's frames itself and
//! keeps its metadata reserves in the pools of kernel RAM. The model keeps
//! what was left in device memory, so a frame memsrv did not zero shows.

mod common;

use capbuf_client::{Client, ClientError};
use capbuf_model::{error, Model};
use capbuf_protocol::{
    Align, AllocFlags, ClientConfig, Config, ConfigError, Invocation, PoolConfig, PoolId, Rights, MAX_CLIENTS,
    MAX_POOLS,
};
use capbuf_server::Server;
use common::Port;
use std::cell::RefCell;
use std::rc::Rc;

/// Pool trees for pools of up to 4 GiB.
const BIG: usize = capbuf_server::pool_nodes(20);
type World = Rc<RefCell<Server<Model, BIG>>>;

const RAM: (u64, u64) = (0x4000_0000, 24);
/// 4 GiB above what the kernel knows as RAM, as QEMU's `-m 8G` gives it.
const DEVICE: (u64, u64) = (0x1_0000_0000, 32);
const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// What an earlier user left in the device memory.
const STALE: u64 = 0xdead_beef;

fn on_big_stack(test: fn()) {
    std::thread::Builder::new().stack_size(512 << 20).spawn(test).unwrap().join().unwrap();
}

fn config(pools: &[(u64, u64, bool)]) -> Config {
    let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    for (i, &(physical_address, size_bits, device)) in pools.iter().enumerate() {
        config.pools[i] = Some(PoolConfig { physical_address, size_bits, device });
    }
    for i in 0..2 {
        config.clients[i] = Some(ClientConfig {
            channel: i as u64,
            client_id: 100 + i as u64,
            quota_bytes: 1 << 31,
            quota_buffers: 8,
            quota_attachments: 8,
            dma: i == 0,
            frame_caps: false,
            supervisor: None,
            io_space: false,
        });
    }
    config
}

/// The parts of the device pool full of stale data: its first and its last
/// `stale_bytes`, wherever the allocator places buffers.
fn stale(stale_bytes: u64) -> [(u64, u64); 2] {
    let end = DEVICE.0 + (1 << DEVICE.1);
    [(DEVICE.0, DEVICE.0 + stale_bytes), (end - stale_bytes, end)]
}

/// Pool 0 of kernel RAM, pool 1 of device memory with [`stale`] data.
fn world(stale_bytes: u64) -> World {
    let config = config(&[(RAM.0, RAM.1, false), (DEVICE.0, DEVICE.1, true)]);
    let mut model = Model::new(12, &[RAM, DEVICE], 2).device_memory(DEVICE.0..DEVICE.0 + (1 << DEVICE.1));
    for (start, end) in stale(stale_bytes) {
        model.fill_memory(start, end, STALE);
    }
    Rc::new(RefCell::new(Server::new(model, config).expect("valid config")))
}

/// Bytes of `[start, end)` inside one of `buffers` (physical address, size).
fn covered(start: u64, end: u64, buffers: &[(u64, u64)]) -> u64 {
    buffers.iter().map(|&(at, size)| end.min(at + size).saturating_sub(start.max(at))).sum()
}

fn client(world: &World, index: usize) -> Client<Port<BIG>> {
    Client::new(Port { world: world.clone(), client: index }).expect("hello")
}

/// Nonzero pages of the buffer at `physical_address`, `bytes` long.
fn dirty(world: &World, physical_address: u64, bytes: u64) -> usize {
    world.borrow().kernel().dirty_pages(physical_address, physical_address + bytes)
}

#[test]
fn a_one_gib_buffer_of_a_four_gib_device_pool_is_handed_out_zeroed() {
    on_big_stack(|| {
        let world = world(1 << 30);
        let mut port = client(&world, 0);
        assert_eq!(world.borrow().reserved_bytes(1), Some(0), "no reserve in device memory");
        assert!(world.borrow().reserved_bytes(0).unwrap() > 0);
        assert_eq!(world.borrow().total_bytes(1), Some(1 << 32));
        let id = port.alloc(1 << 30, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let info = port.info(id).unwrap();
        assert_eq!(info.size, 1 << 30);
        let paddr = info.physical_address;
        assert!((DEVICE.0..DEVICE.0 + (1 << 32)).contains(&paddr));
        assert_eq!(dirty(&world, paddr, 1 << 30), 0, "every page of the 1 GiB buffer is zero");
        // 512 frames of 2 MiB, each zeroed by memsrv, none by the kernel.
        assert_eq!(world.borrow().kernel().counts.zero_frames, 512);
        // A dma client that read the address ends its device's use first.
        port.quiesce(id).unwrap();
        port.free(id).unwrap();
        assert_eq!(world.borrow().free_bytes(1), world.borrow().total_bytes(1));
    });
}

#[test]
fn every_frame_of_an_odd_sized_buffer_is_zeroed_and_again_after_reuse() {
    on_big_stack(|| {
        let world = world(64 * MIB);
        let mut owner = client(&world, 0);
        let mut other = client(&world, 1);
        // 3 MiB + 12 KiB at a 4 KiB offset: 4 KiB frames and a 2 MiB one.
        let first = owner.alloc(PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let size = 3 * MIB + 3 * PAGE;
        let id = owner.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let paddr = owner.info(id).unwrap().physical_address;
        let first_paddr = owner.info(first).unwrap().physical_address;
        let buffers = [(paddr, size), (first_paddr, PAGE)];
        for (at, bytes) in buffers {
            assert_eq!(dirty(&world, at, bytes), 0);
            assert_eq!(covered(at, at + bytes, &stale(64 * MIB).map(|(s, e)| (s, e - s))), bytes, "it was stale");
        }
        for (start, end) in stale(64 * MIB) {
            assert_eq!(
                dirty(&world, start, end - start) as u64,
                (end - start - covered(start, end, &buffers)) / PAGE,
                "the stale data around them is still there: the model keeps device memory as it was"
            );
        }
        // Written by its owner, freed, allocated by another client: zero again.
        let view = owner.attach(id, Rights::ReadWrite).unwrap();
        for offset in (0..size).step_by(PAGE as usize) {
            world.borrow_mut().kernel_mut().client_write(0, view.vaddr + offset, 0x5ec2e7).unwrap();
        }
        owner.detach(id).unwrap();
        owner.quiesce(id).unwrap();
        owner.free(id).unwrap();
        let reused = other.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let view = other.attach(reused, Rights::ReadWrite).unwrap();
        for offset in (0..size).step_by(PAGE as usize) {
            assert_eq!(world.borrow().kernel().client_read(1, view.vaddr + offset), Ok(0), "offset {offset:#x}");
        }
        other.detach(reused).unwrap();
        other.free(reused).unwrap();
        owner.quiesce(first).unwrap();
        owner.free(first).unwrap();
        assert_eq!(world.borrow().free_bytes(1), world.borrow().total_bytes(1), "nothing in quarantine");
        assert_eq!(world.borrow().free_bytes(1), world.borrow().total_bytes(1));
        assert_eq!(world.borrow().free_bytes(0), world.borrow().total_bytes(0));
    });
}

#[test]
fn a_refused_zeroing_fails_the_alloc_and_loses_nothing() {
    on_big_stack(|| {
        let world = world(16 * MIB);
        let mut port = client(&world, 0);
        let before = world.borrow().free_bytes(1);
        // The invocations of one ALLOC, once the pool's splits exist: the
        // zeroing of its two 2 MiB frames are among them.
        let size = 4 * MIB;
        let warm = port.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        port.free(warm).unwrap();
        let start = world.borrow().kernel().invocations();
        let id = port.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let invocations = world.borrow().kernel().invocations() - start;
        port.free(id).unwrap();
        let mut refused = Vec::new();
        for nth in 1..=invocations {
            world.borrow_mut().kernel_mut().fail_invocation(nth, error::INVALID_CAPABILITY);
            let result = port.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE);
            world.borrow_mut().kernel_mut().clear_failures();
            match result {
                Err(ClientError::Kernel(failure)) => refused.push(failure.invocation),
                Ok(id) => port.free(id).unwrap(),
                Err(other) => panic!("unexpected {other:?}"),
            }
            assert_eq!(world.borrow().free_bytes(1), before, "nothing lost after a refusal at {nth}");
            assert!(world.borrow().registry().is_empty());
        }
        assert_eq!(refused.iter().filter(|i| **i == Invocation::PageMap).count(), 2, "{refused:?}");
        assert_eq!(world.borrow().free_bytes(1), before);
        assert!(world.borrow().registry().is_empty());
        // And the next ALLOC, unrefused, is zero.
        let id = port.alloc(size, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
        let paddr = port.info(id).unwrap().physical_address;
        assert_eq!(dirty(&world, paddr, size), 0);
        port.quiesce(id).unwrap();
        port.free(id).unwrap();
        assert_eq!(world.borrow().free_bytes(0), world.borrow().total_bytes(0));
    });
}

#[test]
fn reserves_need_a_pool_of_kernel_ram() {
    on_big_stack(|| {
        let all_device = config(&[(DEVICE.0, DEVICE.1, true)]);
        assert_eq!(all_device.validate(), Err(ConfigError::DevicePoolsOnly));
        let model = Model::new(12, &[DEVICE], 2).device_memory(DEVICE.0..DEVICE.0 + (1 << DEVICE.1));
        assert_eq!(Server::<Model, BIG>::new(model, all_device).err(), Some(ConfigError::DevicePoolsOnly));
    });
}

#[test]
fn the_model_refuses_kernel_objects_of_device_memory() {
    // What makes the reserve rule necessary: seL4 retypes device untyped
    // into frames and untypeds only.
    use capbuf_server::{CapRef, Kernel, Object};
    let mut model = Model::new(12, &[DEVICE], 0).device_memory(DEVICE.0..DEVICE.0 + (1 << DEVICE.1));
    assert_eq!(model.retype(0, Object::CNode { radix: 4 }, CapRef::Table(10), 1), Err(error::INVALID_ARGUMENT));
    assert_eq!(model.retype(0, Object::PageTable, CapRef::Table(10), 1), Err(error::INVALID_ARGUMENT));
    assert_eq!(model.retype(0, Object::SmallFrame, CapRef::Table(10), 1), Ok(()));
}
