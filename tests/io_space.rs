//! A `dma` client whose device sits behind an IOMMU (`io_space` in
//! `system.xml`, x86_64 VT-d): memsrv maps each of its attachments into the
//! device's I/O address space as well, 4 KiB frame by 4 KiB frame, and INFO
//! gives it the I/O address. The device then reaches exactly the buffers its
//! driver has attached, with the attachment's rights, and loses them with the
//! attachment, whatever the kernel refuses on the way.

mod common;

use capbuf_client::{Client, ClientError};
use capbuf_model::{error, Model};
use capbuf_protocol::{
    io_address, Align, AllocFlags, ClientId, Config, Error, Invocation, PoolId, Rights, IO_WINDOW, PADDR_HIDDEN,
};
use capbuf_server::{reserve, Server};
use common::{Port, World};
use std::cell::RefCell;
use std::rc::Rc;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// Client index of the driver (an `io_space` client), of a plain owner.
const DRIVER: usize = 2;
const OWNER: usize = 0;

fn io_config() -> Config {
    let mut config = common::config(8 * MIB, 16, 16);
    let driver = config.clients[DRIVER].as_mut().unwrap();
    driver.io_space = true;
    // Every client's reserve blocks hold an I/O attachment of the driver's
    // largest buffer: its quota is what its device needs.
    driver.quota_bytes = 2 * MIB;
    config
}

/// memsrv with the driver's IOSpace in its table, where capbuf-compose puts
/// it; returns the world and the model's number for the device.
fn io_world() -> (World, usize) {
    let config = io_config();
    let clients = config.clients.iter().flatten().count();
    let mut model = Model::new(config.table_bits, &common::pools_of(&config), clients);
    let device = model.add_io_space(config.io_space_slot(DRIVER).unwrap() as capbuf_server::Slot);
    (Rc::new(RefCell::new(Server::new(model, config).expect("valid config"))), device)
}

/// Back to the state memsrv started in, on a model with the same IOSpace.
fn assert_pristine(world: &World) {
    let (fresh, _) = io_world();
    let fresh = fresh.borrow();
    let result = common::invariants::pristine(&mut world.borrow_mut(), &fresh);
    if let Err(violation) = result {
        panic!("not pristine: {violation}");
    }
}

fn client(world: &World, index: usize) -> Client<Port> {
    common::client(world, index)
}

/// What the device can reach is exactly the driver's attachments: every
/// page of each at its I/O address, with the attachment's rights.
fn assert_device_sees_exactly_the_attachments(world: &World, device: usize) {
    let server = world.borrow();
    let mut expected = Vec::new();
    for (_, buffer) in server.registry().iter() {
        let Some(attachment) = buffer.holders.attachment(DRIVER) else { continue };
        let physical = server.physical_address(buffer);
        for page in 0..buffer.made.data.pages {
            let ioaddr = io_address(attachment.window.vaddr()) + page * PAGE;
            expected.push((ioaddr, physical + page * PAGE, attachment.rights));
        }
    }
    expected.sort();
    assert_eq!(server.kernel().io_mappings(device), expected);
}

#[test]
fn the_device_reaches_an_attached_buffer_at_its_io_address_and_nothing_after_detach() {
    let (world, device) = io_world();
    let mut driver = client(&world, DRIVER);
    // 2 MiB on a 2 MiB boundary would be a 2 MiB frame; the driver's are 4 KiB frames.
    let id = driver.alloc(2 * MIB, Align::bits(21), PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(driver.info(id).unwrap().physical_address, PADDR_HIDDEN, "no I/O address before ATTACH");
    assert_eq!(driver.info(id).unwrap().page_bits, 12);
    let view = driver.attach(id, Rights::ReadWrite).unwrap();
    let ioaddr = driver.info(id).unwrap().physical_address;
    assert_eq!(ioaddr, io_address(view.vaddr));
    assert!(IO_WINDOW.contains(&ioaddr));
    assert_device_sees_exactly_the_attachments(&world, device);
    assert_eq!(world.borrow().kernel().io_mappings(device).len(), 512);
    {
        let mut server = world.borrow_mut();
        let model = server.kernel_mut();
        // The device writes its last page; the driver's CPU mapping sees it.
        model.dma(device, ioaddr + 2 * MIB - PAGE, Some(0x5eed)).unwrap();
        assert_eq!(model.client_read(DRIVER, view.vaddr + 2 * MIB - PAGE), Ok(0x5eed));
        // Past the buffer, and at the buffer's physical address: DMA faults.
        assert!(model.dma(device, ioaddr + 2 * MIB, Some(1)).is_err());
        let physical = {
            let (_, buffer) = server.registry().iter().next().unwrap();
            server.physical_address(buffer)
        };
        assert!(server.kernel_mut().dma(device, physical, Some(1)).is_err());
    }
    driver.detach(id).unwrap();
    assert!(world.borrow().kernel().io_mappings(device).is_empty());
    assert!(world.borrow_mut().kernel_mut().dma(device, ioaddr, None).is_err(), "gone with the attachment");
    assert_eq!(driver.info(id).unwrap().physical_address, PADDR_HIDDEN);
    driver.free(id).unwrap();
    // The I/O address died with the attachment: FREE quarantines nothing.
    assert_eq!(world.borrow().quarantined_bytes(0), Some(0));
    assert_pristine(&world);
}

#[test]
fn a_buffer_with_large_frames_is_refused_and_a_read_only_grant_maps_read_only() {
    let (world, device) = io_world();
    let mut owner = client(&world, OWNER);
    let mut driver = client(&world, DRIVER);
    let large = owner.alloc(2 * MIB, Align::bits(21), PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(large, ClientId(12), Rights::ReadWrite).unwrap();
    assert_eq!(driver.attach(large, Rights::ReadWrite).map(|_| ()), Err(ClientError::Server(Error::NotIoMappable)));
    let small = owner.alloc(16 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(small, ClientId(12), Rights::ReadOnly).unwrap();
    let view = driver.attach(small, Rights::ReadOnly).unwrap();
    assert_device_sees_exactly_the_attachments(&world, device);
    let ioaddr = io_address(view.vaddr);
    let mut server = world.borrow_mut();
    let model = server.kernel_mut();
    assert_eq!(model.dma(device, ioaddr, None), Ok(0));
    assert!(model.dma(device, ioaddr, Some(7)).is_err(), "the device may only read a read-only attachment");
    drop(server);
    // The owner's FREE takes the device's access with the driver's mapping.
    owner.free(small).unwrap();
    assert!(world.borrow().kernel().io_mappings(device).is_empty());
    assert_device_sees_exactly_the_attachments(&world, device);
}

#[test]
fn a_refusal_at_every_invocation_of_an_io_attach_leaves_the_device_nothing() {
    let (world, device) = io_world();
    let mut driver = client(&world, DRIVER);
    let id = driver.alloc(8 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let before = world.borrow().kernel().invocations();
    driver.attach(id, Rights::ReadWrite).unwrap();
    let invocations = world.borrow().kernel().invocations() - before;
    assert_eq!(world.borrow().kernel().counts.io_map, 8);
    driver.detach(id).unwrap();
    let mut refused_io = false;
    for nth in 1..=invocations {
        let snapshot = common::snapshot(&world);
        world.borrow_mut().kernel_mut().fail_invocation(nth, error::INVALID_ARGUMENT);
        let result = driver.attach(id, Rights::ReadWrite);
        world.borrow_mut().kernel_mut().clear_failures();
        let failure = world.borrow().kernel().injected().last().copied().unwrap();
        refused_io |= failure.invocation == Invocation::IoPageMap;
        assert!(matches!(result, Err(ClientError::Kernel(_))), "invocation {nth}: {result:?}");
        assert!(world.borrow().kernel().io_mappings(device).is_empty(), "invocation {nth}");
        assert_eq!(common::snapshot(&world), snapshot, "invocation {nth} undone");
    }
    assert!(refused_io);
    driver.attach(id, Rights::ReadWrite).unwrap();
    assert_device_sees_exactly_the_attachments(&world, device);
    driver.detach(id).unwrap();
    driver.free(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn every_clients_reserve_blocks_hold_an_io_attachment_of_the_drivers_largest_buffer() {
    let plain = common::config(8 * MIB, 16, 16);
    let io = io_config();
    assert_eq!(reserve::largest_io_buffer_pages(&plain), 0);
    // The driver's 2 MiB quota is 512 pages; another client's buffer of
    // 4 KiB frames only (no whole aligned 2 MiB) can have 1022.
    assert_eq!(reserve::largest_io_buffer_pages(&io), 1022);
    let mut larger = io.clone();
    larger.clients[DRIVER].as_mut().unwrap().quota_bytes = 8 * MIB;
    assert_eq!(reserve::largest_io_buffer_pages(&larger), 2048);
    assert!(reserve::block_pages(&larger) > reserve::block_pages(&io));
    assert!(reserve::block_pages(&io) > reserve::block_pages(&plain), "each frame twice");
    // The driver's whole quota in one buffer, and another's buffer.
    let (world, device) = io_world();
    let mut driver = client(&world, DRIVER);
    let mut owner = client(&world, OWNER);
    let id = driver.alloc(2 * MIB, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    driver.attach(id, Rights::ReadWrite).unwrap();
    let other = owner.alloc(200 * PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    owner.grant(other, ClientId(12), Rights::ReadWrite).unwrap();
    driver.attach(other, Rights::ReadWrite).unwrap();
    assert_eq!(world.borrow().kernel().io_mappings(device).len(), 512 + 200);
    assert_device_sees_exactly_the_attachments(&world, device);
    driver.detach(other).unwrap();
    owner.free(other).unwrap();
    assert_device_sees_exactly_the_attachments(&world, device);
    driver.detach(id).unwrap();
    driver.free(id).unwrap();
    assert_pristine(&world);
}
