//! The real server state machine and client library on the seL4 model:
//! the scenarios the demo system runs, checked in detail on the host.

mod common;

use capbuf_client::ClientError;
use capbuf_model::Fault;
use capbuf_protocol::{Align, AllocFlags, ClientId, Error, Op, PoolId, Rights, PADDR_HIDDEN};
use common::*;

const PAGE: u64 = 4096;

fn pages(view: &capbuf_client::View) -> impl Iterator<Item = u64> {
    let (start, size) = (view.vaddr, view.size);
    (0..size / PAGE).map(move |i| start + i * PAGE)
}

#[test]
fn producer_shares_read_only_and_free_revokes_everyone() {
    let world = world();
    let (mut producer, mut consumer, mut driver) = (client(&world, 0), client(&world, 1), client(&world, 2));
    assert_eq!(producer.hello().client_id, ClientId(10));

    let id = producer.alloc(60 * 1024, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = producer.attach(id, Rights::ReadWrite).unwrap();
    assert_eq!(view.size, 60 * 1024, "exactly the pages asked for");
    for (i, page) in pages(&view).enumerate() {
        assert_eq!(world.borrow().kernel().client_read(0, page), Ok(0), "zero when handed out");
        world.borrow_mut().kernel_mut().client_write(0, page, 0xc0ffee + i as u64).unwrap();
    }

    assert_eq!(
        consumer.attach(id, Rights::ReadOnly),
        Err(ClientError::Server(Error::UnknownBuffer)),
        "not granted: the consumer is not even told the buffer exists"
    );
    producer.grant(id, ClientId(11), Rights::ReadOnly).unwrap();
    assert_eq!(consumer.attach(id, Rights::ReadWrite), Err(ClientError::Server(Error::RightsEscalation)));
    let seen = consumer.attach(id, Rights::ReadOnly).unwrap();
    for (i, page) in pages(&seen).enumerate() {
        assert_eq!(world.borrow().kernel().client_read(1, page), Ok(0xc0ffee + i as u64));
    }
    assert_eq!(
        world.borrow_mut().kernel_mut().client_write(1, seen.vaddr, 1),
        Err(Fault { vaddr: seen.vaddr, write: true }),
        "a read-only grant cannot be written"
    );
    let info = consumer.info(id).unwrap();
    assert_eq!(
        (info.rights, info.attachments, info.physical_address, info.owner),
        (Rights::ReadOnly, 2, PADDR_HIDDEN, ClientId(10))
    );
    assert_eq!(driver.info(id), Err(ClientError::Server(Error::UnknownBuffer)));
    producer.grant(id, ClientId(12), Rights::ReadOnly).unwrap();
    let info = driver.info(id).unwrap();
    assert_eq!(info.physical_address % PAGE, 0);
    assert!(
        (POOLS[0].0..POOLS[0].0 + (1 << POOLS[0].1)).contains(&info.physical_address),
        "DMA client sees the address"
    );

    consumer.detach(id).unwrap();
    assert_eq!(world.borrow().kernel().client_read(1, seen.vaddr), Err(Fault { vaddr: seen.vaddr, write: false }));
    producer.free(id).unwrap();
    assert!(world.borrow().kernel().client_read(0, view.vaddr).is_err(), "the owner's own mapping is gone too");
    // The driver learnt the address: the memory waits for its QUIESCE.
    assert_eq!(world.borrow().quarantined_bytes(0), Some(info.size));
    driver.quiesce(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn a_buffer_freed_under_a_client_is_gone_not_stale() {
    let world = world();
    let (mut owner, mut victim) = (client(&world, 0), client(&world, 1));
    let id = owner.alloc(3 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
    let view = victim.attach(id, Rights::ReadWrite).unwrap();
    assert_eq!(world.borrow().kernel().client_mappings(1).len(), 1 + 256, "one 2 MiB frame and 256 small ones");
    world.borrow_mut().kernel_mut().client_write(1, view.vaddr + (3 << 20) - PAGE, 7).unwrap();
    owner.free(id).unwrap();
    let kernel = world.borrow();
    assert!(kernel.kernel().client_mappings(1).is_empty());
    assert!(kernel.kernel().client_reachable_frames(1).is_empty(), "no capability to the reused memory either");
    assert!(kernel.kernel().client_read(1, view.vaddr).is_err());
    // The victim's window run stays taken (its old address keeps faulting)
    // until it detaches the id, which gives the run back.
    assert_eq!(kernel.windows().hole(1, id).map(|run| run.vaddr()), Some(view.vaddr));
    assert_eq!(kernel.usage(1).attachments, 1, "the hole counts until DETACH");
    drop(kernel);
    assert_eq!(victim.detach(id), Ok(()));
    assert!(victim.view(id).is_none());
    assert_eq!((world.borrow().windows().used_slots(1), world.borrow().usage(1).attachments), (0, 0));
    assert_eq!(victim.detach(id), Err(ClientError::Server(Error::StaleBuffer)), "once");
    // The next buffer reuses the memory, zeroed.
    let again = owner.alloc(3 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = owner.attach(again, Rights::ReadWrite).unwrap();
    assert_eq!(world.borrow().kernel().client_read(0, view.vaddr + (3 << 20) - PAGE), Ok(0));
    owner.free(again).unwrap();
    assert_pristine(&world);
}

#[test]
fn reused_memory_is_zero_when_handed_out() {
    let world = world();
    let mut dma = client(&world, 2);
    let first = dma.alloc(PAGE * 5, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let address = dma.info(first).unwrap().physical_address;
    let view = dma.attach(first, Rights::ReadWrite).unwrap();
    for page in pages(&view) {
        world.borrow_mut().kernel_mut().client_write(2, page, u64::MAX).unwrap();
    }
    dma.free(first).unwrap();
    dma.quiesce(first).unwrap();
    assert!(
        world.borrow().kernel().dirty_pages(POOLS[1].0, POOLS[1].0 + (1 << POOLS[1].1)) > 0,
        "memory is not zeroed eagerly"
    );
    let second = dma.alloc(PAGE * 5, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    assert_eq!(dma.info(second).unwrap().physical_address, address, "same memory handed out again");
    let view = dma.attach(second, Rights::ReadWrite).unwrap();
    for page in pages(&view) {
        assert_eq!(world.borrow().kernel().client_read(2, page), Ok(0));
    }
    assert!(world.borrow().kernel().counts.reset > 0, "the kernel's reset did the zeroing");
    dma.free(second).unwrap();
    dma.quiesce(second).unwrap();
    assert_pristine(&world);
}

#[test]
fn uncached_and_read_only_flags_hold_for_everyone() {
    let world = world();
    let (mut owner, mut other) = (client(&world, 0), client(&world, 1));
    let flags = AllocFlags::UNCACHED | AllocFlags::READ_ONLY;
    let id = owner.alloc(PAGE, Align::PAGE, PoolId(0), flags).unwrap();
    assert_eq!(owner.attach(id, Rights::ReadWrite), Err(ClientError::Server(Error::RightsEscalation)));
    let view = owner.attach(id, Rights::ReadOnly).unwrap();
    assert!(view.flags.uncached());
    assert_eq!(owner.grant(id, ClientId(11), Rights::ReadWrite), Err(ClientError::Server(Error::RightsEscalation)));
    owner.grant(id, ClientId(11), Rights::ReadOnly).unwrap();
    other.attach(id, Rights::ReadOnly).unwrap();
    // memsrv maps it, so the attributes are memsrv's, not the client's choice.
    for c in 0..2 {
        let mappings = world.borrow().kernel().client_mappings(c);
        assert!(!mappings.is_empty());
        assert!(mappings.iter().all(|m| !m.cached && m.rights == Rights::ReadOnly), "uncached, read-only for {c}");
    }
    owner.free(id).unwrap();
    assert!(world.borrow().kernel().client_mappings(1).is_empty());
    other.detach(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn lowering_or_withdrawing_a_grant_revokes_the_attachment() {
    let world = world();
    let (mut owner, mut other) = (client(&world, 0), client(&world, 1));
    let id = owner.alloc(PAGE * 2, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
    let view = other.attach(id, Rights::ReadWrite).unwrap();
    world.borrow_mut().kernel_mut().client_write(1, view.vaddr, 1).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadOnly).unwrap();
    assert!(world.borrow().kernel().client_read(1, view.vaddr).is_err(), "write access gone at once");
    // The revoked mapping left a hole: the id names it until the client
    // detaches, so a new attach must wait for that.
    let raw_attach = |world: &World| world.borrow_mut().handle(1, Op::Attach as u64, &[id.raw(), 1], 0).result;
    assert_eq!(raw_attach(&world), Err(Error::AlreadyAttached));
    assert_eq!(other.detach(id), Ok(()), "the hole given back");
    assert_eq!(other.detach(id), Err(ClientError::Server(Error::NotAttached)), "as before, without a hole");
    let view = other.attach(id, Rights::ReadOnly).unwrap();
    assert_eq!(world.borrow().kernel().client_read(1, view.vaddr), Ok(1));
    owner.ungrant(id, ClientId(11)).unwrap();
    assert!(world.borrow().kernel().client_read(1, view.vaddr).is_err());
    // Without its grant the client has no right to the buffer, but the hole
    // is its own: DETACH gives it back. Then it is told nothing about the id.
    assert_eq!(other.detach(id), Ok(()));
    assert!(other.view(id).is_none());
    assert_eq!(other.detach(id), Err(ClientError::Server(Error::UnknownBuffer)), "no right, no hole");
    assert_eq!(other.attach(id, Rights::ReadOnly), Err(ClientError::Server(Error::UnknownBuffer)));
    assert_eq!(owner.ungrant(id, ClientId(11)), Err(ClientError::Server(Error::NotGrantee)));
    owner.free(id).unwrap();
    assert_eq!(
        other.detach(id),
        Err(ClientError::Server(Error::UnknownBuffer)),
        "no right when it was freed, so not told that it was"
    );
    assert_eq!(owner.free(id), Err(ClientError::Server(Error::StaleBuffer)), "the owner's double free");
    assert_pristine(&world);
}

/// The property tests' minimal case of the old bug, where an address the
/// client still held was handed to its next attachment: a revoked mapping's
/// run is a hole, never reused under the client, until it detaches the id.
#[test]
fn a_run_revoked_by_the_owner_is_not_reused_until_the_client_detaches() {
    let world = world();
    let (mut client, mut owner) = (client(&world, 0), client(&world, 2));
    let first = owner.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(first, ClientId(10), Rights::ReadOnly).unwrap();
    let old = client.attach(first, Rights::ReadOnly).unwrap();
    let second = client.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.ungrant(first, ClientId(10)).unwrap();
    assert_eq!(world.borrow().kernel().client_read(0, old.vaddr), Err(Fault { vaddr: old.vaddr, write: false }));
    let third = client.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let new = client.attach(third, Rights::ReadWrite).unwrap();
    assert_ne!(new.vaddr, old.vaddr, "the next attach gets another address");
    // Through the old address nothing is reached: not the old buffer, not the new one.
    assert_eq!(
        world.borrow_mut().kernel_mut().client_write(0, old.vaddr, 7),
        Err(Fault { vaddr: old.vaddr, write: true })
    );
    assert_eq!(world.borrow().kernel().client_read(0, old.vaddr), Err(Fault { vaddr: old.vaddr, write: false }));
    world.borrow_mut().kernel_mut().client_write(0, new.vaddr, 8).unwrap();
    assert_eq!(world.borrow().usage(0).attachments, 2, "the attachment and the hole");
    // DETACH says success and gives the run back: the client's next attach may use it.
    assert_eq!(client.detach(first), Ok(()));
    assert!(client.view(first).is_none());
    assert_eq!(world.borrow().windows().hole(0, first), None);
    assert_eq!(world.borrow().usage(0).attachments, 1);
    let reused = client.attach(second, Rights::ReadWrite).unwrap();
    assert_eq!(reused.vaddr, old.vaddr, "the run is free again, first fit");
    assert_eq!(world.borrow().kernel().client_read(0, new.vaddr), Ok(8));
    for id in [second, third] {
        client.free(id).unwrap();
    }
    owner.free(first).unwrap();
    assert_pristine(&world);
}

/// Holes count against the holder's attachment quota until it detaches
/// them; a revocation the client asked for itself (its own FREE) leaves none.
#[test]
fn holes_count_against_the_attachment_quota_until_detached() {
    let world = world_with(config(8 << 20, 4, 2));
    let (mut owner, mut holder) = (client(&world, 0), client(&world, 1));
    let shared: Vec<_> = (0..2).map(|_| owner.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap()).collect();
    for &id in &shared {
        owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
        holder.attach(id, Rights::ReadWrite).unwrap();
    }
    owner.attach(shared[0], Rights::ReadWrite).unwrap();
    owner.free(shared[0]).unwrap();
    owner.grant(shared[1], ClientId(11), Rights::ReadOnly).unwrap();
    assert_eq!(world.borrow().windows().holes(1).len(), 2);
    assert_eq!((world.borrow().usage(0).attachments, world.borrow().windows().used_slots(0)), (0, 0), "no hole");
    let mine = holder.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(holder.attach(mine, Rights::ReadWrite), Err(ClientError::Server(Error::QuotaAttachments)));
    assert_eq!(holder.detach(shared[0]), Ok(()));
    holder.attach(mine, Rights::ReadWrite).unwrap();
    assert_eq!(holder.detach(shared[1]), Ok(()));
    holder.attach(shared[1], Rights::ReadOnly).unwrap();
    holder.free(mine).unwrap();
    holder.detach(shared[1]).unwrap();
    owner.free(shared[1]).unwrap();
    assert_pristine(&world);
}

#[test]
fn a_sixteen_mebibyte_buffer_attaches_in_one_call_with_eight_frames() {
    let mut config = config(64 << 20, 4, 4);
    config.pools[0] = Some(capbuf_protocol::PoolConfig { physical_address: 0x4000_0000, size_bits: 25, device: false });
    let model = capbuf_model::Model::new(12, &[(0x4000_0000, 25)], 3);
    let mut config_one_pool = config.clone();
    config_one_pool.pools[1] = None;
    config_one_pool.pools[2] = None;
    let world = std::rc::Rc::new(std::cell::RefCell::new(
        capbuf_server::Server::<_, { capbuf_server::pool_nodes(13) }>::new(model, config_one_pool).unwrap(),
    ));
    let mut c = capbuf_client::Client::new(Port { world: world.clone(), client: 0 }).unwrap();
    let id = c.alloc(16 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let before = world.borrow().kernel().counts;
    let view = c.attach(id, Rights::ReadWrite).unwrap();
    let after = world.borrow().kernel().counts;
    assert_eq!(view.size, 16 << 20);
    assert_eq!(world.borrow().kernel().client_mappings(0).len(), 8);
    assert_eq!(after.copy - before.copy, 8, "eight frame copies");
    assert_eq!(after.mutate - before.mutate, 1, "the CNode guarded");
    assert_eq!(after.map - before.map, 8, "memsrv maps eight 2 MiB frames");
    c.free(id).unwrap();
}

#[test]
fn freeing_keeps_blocks_split_so_reuse_zeroes_only_what_was_used() {
    let world = world();
    let mut c = client(&world, 2);
    let first = c.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = c.attach(first, Rights::ReadWrite).unwrap();
    world.borrow_mut().kernel_mut().client_write(2, view.vaddr, 9).unwrap();
    c.free(first).unwrap();
    let before = world.borrow().kernel().counts;
    let again = c.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let view = c.attach(again, Rights::ReadWrite).unwrap();
    let after = world.borrow().kernel().counts;
    assert_eq!(world.borrow().kernel().client_read(2, view.vaddr), Ok(0));
    assert!(
        after.zeroed_bytes - before.zeroed_bytes <= 4 * PAGE,
        "reallocating one page zeroed {} bytes, not just the pages used",
        after.zeroed_bytes - before.zeroed_bytes
    );
    assert!(after.retype - before.retype <= 4, "no re-split of the pool: {} retypes", after.retype - before.retype);
    c.free(again).unwrap();
    // A buffer as large as the pool allows needs the blocks whole again: they
    // are collapsed, reset by the kernel, and the memory is zero.
    let big = c.alloc(2 << 20, Align::bits(21), PoolId(0), AllocFlags::NONE).unwrap();
    let view = c.attach(big, Rights::ReadWrite).unwrap();
    for page in pages(&view) {
        assert_eq!(world.borrow().kernel().client_read(2, page), Ok(0));
    }
    c.free(big).unwrap();
    assert_pristine(&world);
}

/// A small buffer freed between two others is parked by its pool
/// (README, "The pool allocator"): the next ALLOC of its size is given the
/// same pages with no untyped split again, and they are zero; a buffer of
/// another size does not get them while it fits elsewhere.
#[test]
fn a_small_buffer_freed_between_two_comes_back_whole_and_zeroed() {
    let world = world();
    let mut c = client(&world, 2);
    let data = |id| world.borrow().registry().iter().find(|&(i, _)| i == id).map(|(_, b)| b.made.data).unwrap();
    let below = c.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let id = c.alloc(3 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let above = c.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let pages = data(id);
    let view = c.attach(id, Rights::ReadWrite).unwrap();
    world.borrow_mut().kernel_mut().client_write(2, view.vaddr + PAGE, 9).unwrap();
    c.free(id).unwrap();
    let other = c.alloc(2 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_ne!(data(other).offset, pages.offset, "another size searches");
    let before = world.borrow().kernel().counts;
    let again = c.alloc(3 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let after = world.borrow().kernel().counts;
    assert_eq!(data(again), pages, "the parked run, whole");
    // Only the frames and the metadata CNode: no untyped split in halves.
    let order = (pools_of(world.borrow().config())[0].1 - 12) as u32;
    let leaves = pages.blocks(order).count() as u64;
    assert_eq!(after.retype - before.retype, leaves + 1);
    let view = c.attach(again, Rights::ReadWrite).unwrap();
    for page in 0..3 {
        assert_eq!(world.borrow().kernel().client_read(2, view.vaddr + page * PAGE), Ok(0));
    }
    for id in [again, other, below, above] {
        c.free(id).unwrap();
    }
    assert_pristine(&world);
}

/// Parked runs keep their blocks' table slots; once the table runs short
/// memsrv merges them, so that dormant blocks give the slots back.
#[test]
fn parked_runs_give_their_slots_back_when_the_table_runs_short() {
    let mut small = config(1 << 30, 6, 1);
    small.table_bits = 8;
    let world = world_with(small);
    let mut c = client(&world, 0);
    let (mut most, mut last, mut short) = (0, 0, false);
    for round in 0..4u64 {
        // Three buffers of each size from 1 to 16 pages, each before a
        // page that stays while it is freed: parked.
        for pages in 1..=16u64 {
            let mut three = Vec::new();
            let mut spacers = Vec::new();
            for _ in 0..3 {
                let alloc = |c: &mut capbuf_client::Client<_>, size| {
                    c.alloc(size, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap_or_else(|e| {
                        let w = world.borrow();
                        panic!("round {round}, {pages} pages: {e:?} ({} slots free)", w.free_slot_count())
                    })
                };
                three.push(alloc(&mut c, pages * PAGE));
                spacers.push(alloc(&mut c, PAGE));
            }
            for id in three.into_iter().chain(spacers) {
                c.free(id).unwrap();
            }
            // Six allocations take at most six parked runs: more went
            // because the free slots fell below what a request may need.
            let parked = world.borrow().parked_runs(0);
            short |= parked + 6 < last;
            (most, last) = (most.max(parked), parked);
        }
    }
    assert!(most >= 16, "{most} runs parked at most");
    assert!(short, "the table ran short and the parked runs were merged");
    assert!(world.borrow().free_slot_count() > 0);
    assert_pristine(&world);
}

#[test]
fn dormant_blocks_give_their_slots_back_when_the_table_runs_short() {
    let mut small = config(1 << 30, 1, 1);
    small.table_bits = 7;
    let world = world_with(small);
    let mut c = client(&world, 0);
    for round in 0..200u64 {
        let size = PAGE * (1 + (round * 37) % 200);
        let id = c
            .alloc(size, Align::PAGE, PoolId(round % 2), AllocFlags::NONE)
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        c.attach(id, Rights::ReadWrite).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        c.free(id).unwrap();
    }
    assert_pristine(&world);
}

/// Every capability pointer a client could try: each root CNode slot, and
/// the first slots below each as if a CNode were there.
fn every_cptr() -> impl Iterator<Item = u64> {
    (0..64u64).flat_map(|slot| (0..4u64).map(move |index| (slot << 58) | index))
}

#[test]
fn a_client_holds_no_capability_to_its_buffers_so_revocation_holds() {
    let world = world();
    let (mut owner, mut other) = (client(&world, 0), client(&world, 1));
    let id = owner.alloc(3 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
    let mine = owner.attach(id, Rights::ReadWrite).unwrap();
    let theirs = other.attach(id, Rights::ReadWrite).unwrap();
    world.borrow_mut().kernel_mut().client_write(1, theirs.vaddr, 5).unwrap();
    // What a hostile client would try with what memsrv gave it: there is nothing.
    for c in 0..2 {
        let mut server = world.borrow_mut();
        let model = server.kernel_mut();
        assert_eq!(model.client_capabilities(c), 0, "memsrv sends no capability");
        assert!(model.client_reachable_frames(c).is_empty());
        for cptr in every_cptr() {
            assert!(model.client_get_address(c, cptr).is_err(), "no frame capability to ask GetAddress of");
            let attributes = capbuf_server::MapAttributes { rights: Rights::ReadWrite, cached: true };
            assert!(model.client_map_frame(c, cptr, 0x1000_0000, attributes).is_err(), "none to map again");
            for op in [capbuf_model::CNodeOp::Copy(Rights::ReadWrite), capbuf_model::CNodeOp::Move] {
                assert!(
                    model.client_cnode(c, (cptr >> 58, 1), (cptr >> 58, 0), op).is_err(),
                    "no CNode to copy out of"
                );
            }
        }
    }
    // Ungrant: the grantee's mapping is gone; it reads nothing the owner writes later.
    owner.ungrant(id, ClientId(11)).unwrap();
    world.borrow_mut().kernel_mut().client_write(0, mine.vaddr, 6).unwrap();
    for page in pages(&theirs) {
        assert_eq!(world.borrow().kernel().client_read(1, page), Err(Fault { vaddr: page, write: false }));
    }
    assert!(world.borrow().kernel().client_mappings(1).is_empty());
    // Detach: the owner's mapping is gone too.
    owner.detach(id).unwrap();
    assert!(world.borrow().kernel().client_mappings(0).is_empty());
    assert_eq!(world.borrow().kernel().client_read(0, mine.vaddr), Err(Fault { vaddr: mine.vaddr, write: false }));
    owner.free(id).unwrap();
    other.detach(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn a_full_window_refuses_with_window_full_and_changes_nothing() {
    // A server for 256 MiB pools is too large for a test thread's default stack.
    std::thread::Builder::new().stack_size(256 << 20).spawn(full_window).unwrap().join().unwrap();
}

fn full_window() {
    // The window is 512 MiB in 2 MiB slots: 63 attachments of 8 MiB and one
    // of 4 MiB take 254 slots, so a 6 MiB buffer (3 slots) no longer fits; a
    // 4 KiB one (its page table's slot) still does.
    let mut config = config(1 << 30, 128, 128);
    config.pools = [None; capbuf_protocol::MAX_POOLS];
    let pools = [(0x1_0000_0000, 28), (0x2_0000_0000, 28), (0x3_0000_0000, 28)];
    for (i, &(physical_address, size_bits)) in pools.iter().enumerate() {
        config.pools[i] = Some(capbuf_protocol::PoolConfig { physical_address, size_bits, device: false });
    }
    config.clients[1] = None;
    config.clients[2] = None;
    let model = capbuf_model::Model::new(12, &pools, 1);
    let world = std::rc::Rc::new(std::cell::RefCell::new(
        capbuf_server::Server::<_, { capbuf_server::pool_nodes(16) }>::new(model, config).unwrap(),
    ));
    let mut c = capbuf_client::Client::new(Port { world: world.clone(), client: 0 }).unwrap();
    let request = |op: capbuf_protocol::Op, words: &[u64]| world.borrow_mut().handle(0, op as u64, words, 0).result;
    let (attach, detach) = (capbuf_protocol::Op::Attach, capbuf_protocol::Op::Detach);
    let mut ids = Vec::new();
    for i in 0..64u64 {
        let id = c.alloc(if i < 63 { 8 << 20 } else { 4 << 20 }, Align::PAGE, PoolId(i % 3), AllocFlags::NONE).unwrap();
        ids.push(id);
        // The library tracks 32 views: attach with raw requests.
        assert!(request(attach, &[id.raw(), 3]).is_ok(), "attachment {i}");
    }
    let big = c.alloc(6 << 20, Align::PAGE, PoolId(2), AllocFlags::NONE).unwrap();
    let before = snapshot_of(&world);
    assert_eq!(request(attach, &[big.raw(), 3]), Err(Error::WindowFull));
    assert_eq!(snapshot_of(&world), before, "a refused attach changes nothing");
    let small = c.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    match request(attach, &[small.raw(), 3]) {
        Ok(capbuf_protocol::Reply::Attach(reply)) => {
            assert_eq!(reply.vaddr, capbuf_protocol::CLIENT_WINDOW.end - (4 << 20), "the first free slot")
        }
        other => panic!("{other:?}"),
    }
    // Detaching the 4 MiB buffer frees two slots, but not next to the last one...
    assert!(request(detach, &[ids[63].raw()]).is_ok());
    assert_eq!(request(attach, &[big.raw(), 3]), Err(Error::WindowFull));
    // ...until the 4 KiB buffer between them goes too.
    assert!(request(detach, &[small.raw()]).is_ok());
    match request(attach, &[big.raw(), 3]) {
        Ok(capbuf_protocol::Reply::Attach(reply)) => {
            assert_eq!(reply.vaddr, capbuf_protocol::CLIENT_WINDOW.end - (8 << 20))
        }
        other => panic!("{other:?}"),
    }
    for id in ids.into_iter().chain([big, small]) {
        request(capbuf_protocol::Op::Free, &[id.raw()]).unwrap();
    }
    let server = world.borrow();
    assert_eq!(server.kernel().live_objects().1, 0, "every frame is gone");
    assert!(server.kernel().client_mappings(0).is_empty());
}

/// Free bytes, kernel objects, slots, client 0's mappings and usage.
type State = (Vec<u64>, (usize, usize, usize, usize), usize, usize, capbuf_server::Usage);

/// What a refused request must not change.
fn snapshot_of<const N: usize>(
    world: &std::rc::Rc<std::cell::RefCell<capbuf_server::Server<capbuf_model::Model, N>>>,
) -> State {
    let server = world.borrow();
    (
        (0..3).map(|p| server.free_bytes(p).unwrap()).collect(),
        server.kernel().live_objects(),
        server.free_slot_count(),
        server.kernel().client_mappings(0).len(),
        server.usage(0),
    )
}
