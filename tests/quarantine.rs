//! Quarantine: memory whose physical address a `dma` client learnt goes back
//! to the pool only after that client's QUIESCE, because revoking the frames
//! stops the CPU, not a device the address was given to.

mod common;

use capbuf_client::ClientError;
use capbuf_protocol::{Align, AllocFlags, BufferId, ClientId, Error, PoolId, Rights, PAGE_BITS};
use capbuf_server::MAX_BUFFERS;
use common::*;

const PAGE: u64 = 1 << PAGE_BITS;
const UNKNOWN: Result<(), ClientError> = Err(ClientError::Server(Error::UnknownBuffer));

/// Whether `[a, a + size)` and `[b, b + size)` overlap.
fn overlap(a: u64, b: u64, size: u64) -> bool {
    a < b + size && b < a + size
}

#[test]
fn free_of_an_exposed_buffer_quarantines_until_quiesce() {
    let world = world();
    let mut dma = client(&world, 2);
    let free_before = world.borrow().free_bytes(1).unwrap();
    let first = dma.alloc(5 * PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let address = dma.info(first).unwrap().physical_address;
    let view = dma.attach(first, Rights::ReadWrite).unwrap();
    dma.free(first).unwrap();

    // Everything is revoked and the owner's quota is back, but not the pages.
    assert!(world.borrow().kernel().client_read(2, view.vaddr).is_err(), "the CPU mapping is gone");
    assert_eq!(world.borrow().usage(2), Default::default(), "quota released");
    assert!(world.borrow().registry().is_empty());
    let pool = dma.pool_info(PoolId(1)).unwrap();
    assert_eq!((pool.quarantined, pool.free), (5 * PAGE, free_before - 5 * PAGE));
    assert_eq!(pool.total, free_before, "quarantined memory still counts in the total");

    // A new buffer of the same size gets other memory.
    let second = dma.alloc(5 * PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let other = dma.info(second).unwrap().physical_address;
    assert!(!overlap(address, other, 5 * PAGE), "{other:#x} reuses quarantined {address:#x}");
    assert_eq!(dma.info(first), Err(ClientError::Server(Error::StaleBuffer)), "the id is freed all the same");

    // QUIESCE gives the pages back, once.
    dma.quiesce(first).unwrap();
    assert_eq!(dma.pool_info(PoolId(1)).unwrap().quarantined, 0);
    assert_eq!(dma.quiesce(first), UNKNOWN, "nothing left to confirm");
    // QUIESCE of a live buffer ends the exposure: its FREE quarantines nothing.
    dma.quiesce(second).unwrap();
    assert_eq!(dma.quiesce(second), UNKNOWN);
    dma.free(second).unwrap();
    assert_eq!(dma.pool_info(PoolId(1)).unwrap().quarantined, 0);
    assert_eq!(world.borrow().free_bytes(1), Some(free_before));
    assert_pristine(&world);
}

#[test]
fn a_free_nobody_was_exposed_to_is_unchanged() {
    let world = world();
    let (mut plain, mut dma) = (client(&world, 0), client(&world, 2));
    let free_before = world.borrow().free_bytes(0).unwrap();
    // The dma client never asked for the address; the other client may not see it.
    let never_asked = dma.alloc(3 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    dma.attach(never_asked, Rights::ReadWrite).unwrap();
    let hidden = plain.alloc(3 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(plain.info(hidden).unwrap().physical_address, capbuf_protocol::PADDR_HIDDEN);
    dma.free(never_asked).unwrap();
    plain.free(hidden).unwrap();
    assert_eq!(dma.pool_info(PoolId(0)).unwrap().quarantined, 0);
    assert_eq!(world.borrow().free_bytes(0), Some(free_before));
    assert_eq!(dma.quiesce(never_asked), UNKNOWN);
    assert_eq!(plain.quiesce(hidden), UNKNOWN);
    assert_pristine(&world);
}

#[test]
fn only_a_client_with_something_to_confirm_learns_anything_from_quiesce() {
    let world = world();
    let (mut owner, mut other, mut dma) = (client(&world, 0), client(&world, 1), client(&world, 2));
    let id = owner.alloc(2 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(12), Rights::ReadOnly).unwrap();
    dma.info(id).unwrap();
    // Live and exposed to the dma client only: the owner and an outsider are
    // told what they would be told of any id.
    assert_eq!(owner.quiesce(id), UNKNOWN);
    assert_eq!(other.quiesce(id), UNKNOWN);
    owner.free(id).unwrap();
    assert_eq!(world.borrow().quarantined_bytes(0), Some(2 * PAGE));
    for (client, name) in [(&mut owner, "owner"), (&mut other, "outsider")] {
        assert_eq!(client.quiesce(id), UNKNOWN, "{name}");
    }
    let next = BufferId::new(id.index(), id.generation() + 1);
    let older = BufferId::new(id.index(), id.generation() - 1);
    for wrong in [next, older, BufferId::new(99, 1), BufferId::new(u32::MAX, 7)] {
        assert_eq!(dma.quiesce(wrong), UNKNOWN, "only the exact freed id: {wrong}");
    }
    assert_eq!(world.borrow().quarantined_bytes(0), Some(2 * PAGE), "nobody else released it");
    dma.quiesce(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn a_buffer_exposed_to_two_dma_clients_needs_both() {
    let mut config = config(8 << 20, 16, 16);
    config.clients[1].as_mut().unwrap().dma = true;
    let world = world_with(config);
    let (mut owner, mut first, mut second) = (client(&world, 0), client(&world, 1), client(&world, 2));
    let id = owner.alloc(4 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
    owner.grant(id, ClientId(12), Rights::ReadOnly).unwrap();
    first.info(id).unwrap();
    second.info(id).unwrap();
    // A grant withdrawn does not stop the device: the exposure stays.
    owner.ungrant(id, ClientId(12)).unwrap();
    owner.free(id).unwrap();
    first.quiesce(id).unwrap();
    assert_eq!(first.quiesce(id), UNKNOWN, "confirmed already");
    assert_eq!(world.borrow().quarantined_bytes(0), Some(4 * PAGE), "the second device may still write");
    second.quiesce(id).unwrap();
    assert_eq!(world.borrow().quarantined_bytes(0), Some(0));
    assert_pristine(&world);
}

#[test]
fn a_full_quarantine_refuses_the_free_before_touching_anything() {
    // A whole buffer table of one-page buffers in quarantine: pool 0 must
    // hold more pages than that, the table their untypeds.
    let world = world_with(at_scale(config(8 << 20, 2, 2)));
    let mut dma = client(&world, 2);
    let mut held = Vec::new();
    for _ in 0..MAX_BUFFERS {
        let id = dma.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
        dma.info(id).unwrap();
        dma.free(id).unwrap();
        held.push(id);
    }
    assert_eq!(world.borrow().quarantined_bytes(0), Some(MAX_BUFFERS as u64 * PAGE));
    let id = dma.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = dma.attach(id, Rights::ReadWrite).unwrap();
    dma.info(id).unwrap();
    assert_eq!(dma.free(id), Err(ClientError::Server(Error::TooManyBuffers)));
    world.borrow_mut().kernel_mut().client_write(2, view.vaddr, 7).expect("still attached, untouched");
    dma.quiesce(held.pop().unwrap()).unwrap();
    dma.free(id).unwrap();
    dma.quiesce(id).unwrap();
    for id in held {
        dma.quiesce(id).unwrap();
    }
    assert_pristine(&world);
}
