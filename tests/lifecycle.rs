//! A client's life cycle on the host model: RECLAIM by its supervisor, and
//! ALLOC with the WAIT flag (registration, notification order, fairness,
//! replacement, cancellation, and that waiting holds no memory).
//!
//! Three clients as in `common::config` (ids 10, 11, 12; client 1 has
//! `frame_caps`, client 2 is `dma`); here client 0 supervises clients 1 and 2.

mod common;

use capbuf_client::ClientError;
use capbuf_model::Model;
use capbuf_protocol::{
    Align, AllocFlags, BufferId, ClientId, Config, Error, Op, PoolId, ReclaimReply, Reply, Rights, PAGE_SIZE,
};
use capbuf_server::{KernelError, Server};
use common::invariants::check_invariants;
use common::*;

const SUPERVISOR: usize = 0;
const PAGE: u64 = PAGE_SIZE;

fn supervised(mut config: Config) -> Config {
    for child in [1, 2] {
        config.clients[child].as_mut().unwrap().supervisor = Some(SUPERVISOR);
    }
    config
}

fn supervised_world(quota_bytes: u64, quota_buffers: u64) -> World {
    world_with(supervised(config(quota_bytes, quota_buffers, 16)))
}

/// One raw request from client `client`: its reply (or error) and whom memsrv notifies.
fn request(world: &World, client: usize, op: Op, words: &[u64]) -> (Result<Reply, Error>, u64) {
    let outcome = world.borrow_mut().handle(client as u64, op as u64, words, 0);
    (outcome.result, outcome.notify)
}

fn reclaim(world: &World, supervisor: usize, target: u64) -> (Result<Reply, Error>, u64) {
    request(world, supervisor, Op::Reclaim, &[target])
}

fn alloc_wait(world: &World, client: usize, size: u64, pool: u64) -> (Result<Reply, Error>, u64) {
    request(world, client, Op::Alloc, &[size, 0, pool, AllocFlags::WAIT.bits()])
}

fn id_of(result: Result<Reply, Error>) -> BufferId {
    match result {
        Ok(Reply::Alloc(reply)) => reply.id,
        other => panic!("expected a buffer, got {other:?}"),
    }
}

fn free_bytes(world: &World, pool: usize) -> u64 {
    world.borrow().free_bytes(pool).unwrap()
}

/// Client 1 owns buffers granted to and attached by the others (client 2
/// learns one's physical address), is attached to and exports a buffer of
/// client 0, and has a hole from client 0's UNGRANT. Returns client 0's buffers.
fn busy_child(world: &World) -> (BufferId, BufferId) {
    let (mut boss, mut child, mut dma) = (client(world, 0), client(world, 1), client(world, 2));
    let a = child.alloc(3 * PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let b = child.alloc(512 << 10, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    child.attach(a, Rights::ReadWrite).unwrap();
    child.grant(a, ClientId(10), Rights::ReadOnly).unwrap();
    child.grant(a, ClientId(12), Rights::ReadWrite).unwrap();
    boss.attach(a, Rights::ReadOnly).unwrap();
    dma.attach(a, Rights::ReadWrite).unwrap();
    assert_ne!(dma.info(a).unwrap().physical_address, capbuf_protocol::PADDR_HIDDEN);
    child.info(b).unwrap();
    let shared = boss.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    let withdrawn = boss.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    boss.grant(shared, ClientId(11), Rights::ReadWrite).unwrap();
    boss.grant(withdrawn, ClientId(11), Rights::ReadWrite).unwrap();
    child.attach(shared, Rights::ReadWrite).unwrap();
    child.export(shared, Rights::ReadOnly).unwrap();
    child.attach(withdrawn, Rights::ReadWrite).unwrap();
    boss.ungrant(withdrawn, ClientId(11)).unwrap();
    assert!(world.borrow().windows().hole(1, withdrawn).is_some());
    (shared, withdrawn)
}

#[test]
fn only_the_supervisor_may_reclaim_and_an_unknown_id_looks_the_same() {
    let world = supervised_world(8 << 20, 16);
    busy_child(&world);
    let before = snapshot(&world);
    for (caller, target) in [(1, 12), (2, 11), (1, 10), (2, 10), (0, 10), (0, 99), (1, 99), (0, u64::MAX)] {
        assert_eq!(reclaim(&world, caller, target).0, Err(Error::NotSupervisor), "client {caller} reclaims {target}");
    }
    assert_eq!(request(&world, 0, Op::Reclaim, &[]).0, Err(Error::WrongLength));
    assert_eq!(snapshot(&world), before, "a refused RECLAIM changes nothing");
    check_invariants(&world).unwrap();
}

#[test]
fn reclaim_takes_everything_and_the_child_starts_clean() {
    let world = supervised_world(8 << 20, 4);
    let (shared, withdrawn) = busy_child(&world);
    let usage = world.borrow().usage(1);
    assert_eq!((usage.buffers, usage.attachments), (2, 4), "a, shared, its export, the hole");
    let (mut boss, mut dma) = (client(&world, 0), client(&world, 2));
    let dma_free_before = free_bytes(&world, 1);
    let reply = reclaim(&world, SUPERVISOR, 11).0.unwrap();
    assert_eq!(reply, Reply::Reclaim(ReclaimReply { buffers: 2, bytes: usage.bytes, attachments: usage.attachments }));
    check_invariants(&world).unwrap();
    {
        let server = world.borrow();
        assert_eq!(server.usage(1), Default::default(), "usage reset");
        assert_eq!(server.windows().used_slots(1), 0, "window empty");
        assert!(server.windows().holes(1).is_empty());
        assert!(server.kernel().client_mappings(1).is_empty(), "no mapping left in the child's VSpace");
        assert!(server.kernel().client_reachable_frames(1).is_empty(), "no frame capability left (the export)");
        for (_, buffer) in server.registry().iter() {
            assert!(buffer.made.owner != 1 && !buffer.known_to(1) && buffer.holders.export(1).is_none());
        }
        assert_eq!(server.free_bytes(1).unwrap(), dma_free_before + (512 << 10), "b, never exposed, is back");
        assert_eq!(server.quarantined_bytes(0), Some(3 * PAGE), "a stays until the dma client quiesces");
    }
    // The others see the usual use-after-free behaviour: their attachments
    // to the child's buffer became holes, which they detach.
    let a = world.borrow().windows().holes(0)[0].id;
    assert_eq!(boss.info(a).err(), Some(ClientError::Server(Error::StaleBuffer)));
    boss.detach(a).unwrap();
    dma.detach(a).unwrap();
    dma.quiesce(a).unwrap();
    assert_eq!(world.borrow().quarantined_bytes(0), Some(0));
    // The child's grant on the shared buffer is gone; the owner's buffers live on.
    assert_eq!(boss.info(shared).unwrap().attachments, 0);
    // Restarted, the child can allocate its whole quota again.
    let mut child = client(&world, 1);
    let ids: Vec<BufferId> =
        (0..4).map(|_| child.alloc(2 << 20, Align::PAGE, PoolId(2), AllocFlags::NONE).unwrap()).collect();
    assert_eq!(world.borrow().usage(1).bytes, 8 << 20, "its whole byte and buffer quota");
    assert_eq!(child.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).err(), Some(Error::QuotaBuffers.into()));
    assert_eq!(child.attach(shared, Rights::ReadOnly).err(), Some(Error::UnknownBuffer.into()), "no grant left");
    // RECLAIM of a client that holds nothing is a no-op that says so.
    assert_eq!(reclaim(&world, SUPERVISOR, 11).0.map(|_| ()), Ok(()));
    assert_eq!(world.borrow().usage(1), Default::default(), "the second reclaim took the four new buffers");
    let again = reclaim(&world, SUPERVISOR, 11).0.unwrap();
    assert_eq!(again, Reply::Reclaim(ReclaimReply { buffers: 0, bytes: 0, attachments: 0 }));
    assert!(ids.iter().all(|id| world.borrow().registry().get(*id).is_err()));
    boss.free(shared).unwrap();
    boss.free(withdrawn).unwrap();
    check_invariants(&world).unwrap();
    assert_pristine(&world);
}

#[test]
fn reclaim_is_the_dma_childs_quiesce() {
    let world = supervised_world(8 << 20, 4);
    let (mut boss, mut dma) = (client(&world, 0), client(&world, 2));
    let owned = boss.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    boss.grant(owned, ClientId(12), Rights::ReadOnly).unwrap();
    dma.info(owned).unwrap();
    let freed = dma.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    dma.info(freed).unwrap();
    let own = dma.alloc(PAGE, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    dma.info(own).unwrap();
    dma.free(freed).unwrap();
    assert_eq!(world.borrow().quarantined_bytes(0), Some(PAGE));
    assert_eq!(reclaim(&world, SUPERVISOR, 12).0.map(|_| ()), Ok(()));
    let server = world.borrow();
    assert_eq!(server.quarantined_bytes(0), Some(0), "its quarantine confirmed, its own exposed buffer freed at once");
    assert_eq!(server.registry().get(owned).unwrap().exposed, 0, "exposure of a buffer it does not own ends");
    drop(server);
    boss.free(owned).unwrap();
    assert_pristine(&world);
}

/// The kernel refuses the n-th invocation of a RECLAIM, for every n: the
/// reply is KERNEL, memsrv stays consistent, and RECLAIM again finishes.
#[test]
fn a_reclaim_the_kernel_interrupts_is_finished_by_the_next() {
    let invocations = {
        let world = supervised_world(8 << 20, 4);
        busy_child(&world);
        let before = world.borrow().kernel().invocations();
        reclaim(&world, SUPERVISOR, 11).0.unwrap();
        let after = world.borrow().kernel().invocations();
        after - before
    };
    assert!(invocations >= 6, "revokes of attachments, the export, the leaves, the metadata: {invocations}");
    for nth in 1..=invocations {
        let world = supervised_world(8 << 20, 4);
        let (shared, withdrawn) = busy_child(&world);
        let usage = world.borrow().usage(1);
        world.borrow_mut().kernel_mut().fail_invocation(nth, KernelError(3));
        let outcome = world.borrow_mut().handle(SUPERVISOR as u64, Op::Reclaim as u64, &[11], 0);
        assert_eq!(outcome.result, Err(Error::Kernel), "invocation {nth}");
        assert!(outcome.kernel.is_some());
        world.borrow_mut().kernel_mut().clear_failures();
        check_invariants(&world).unwrap_or_else(|e| panic!("invocation {nth}: {e}"));
        let after = world.borrow().usage(1);
        assert!(after.buffers <= usage.buffers && after.attachments <= usage.attachments, "nothing came back");
        match reclaim(&world, SUPERVISOR, 11).0 {
            Ok(Reply::Reclaim(reply)) => {
                assert_eq!((reply.buffers, reply.attachments), (after.buffers, after.attachments), "what was left")
            }
            other => panic!("invocation {nth}: the second RECLAIM: {other:?}"),
        }
        assert_eq!(world.borrow().usage(1), Default::default());
        check_invariants(&world).unwrap();
        let (mut boss, mut dma) = (client(&world, 0), client(&world, 2));
        for holder in [0, 2] {
            let holes: Vec<BufferId> = world.borrow().windows().holes(holder).iter().map(|h| h.id).collect();
            for id in holes {
                [&mut boss, &mut dma][holder / 2].detach(id).unwrap();
            }
        }
        let pending: Vec<BufferId> = world.borrow().quarantine().iter().map(|q| q.id).collect();
        for id in pending {
            dma.quiesce(id).unwrap();
        }
        boss.free(shared).unwrap();
        boss.free(withdrawn).unwrap();
        assert_pristine(&world);
    }
}

#[test]
fn waiting_registers_holds_nothing_and_is_notified_when_memory_returns() {
    // Pool 1 is 1 MiB: client 0 fills it, client 1 waits for half of it.
    let world = supervised_world(8 << 20, 16);
    let mut owner = client(&world, 0);
    let fill = owner.alloc(1 << 20, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let before = snapshot(&world);
    let (result, notify) = alloc_wait(&world, 1, 512 << 10, 1);
    assert_eq!((result, notify), (Err(Error::Waiting), 0));
    assert_eq!(snapshot(&world), before, "waiting holds no memory, no quota, nothing");
    assert_eq!(world.borrow().waits().len(), 1);
    // Without WAIT the same request is refused as ever.
    assert_eq!(request(&world, 1, Op::Alloc, &[512 << 10, 0, 1, 0]).0, Err(Error::OutOfMemory));
    // Requests that make no room notify nobody.
    assert_eq!(request(&world, 2, Op::PoolInfo, &[1]).1, 0);
    let (result, notify) = request(&world, 0, Op::Free, &[fill.raw()]);
    assert!(result.is_ok());
    assert_eq!(notify, 1 << 1, "the FREE made room: client 1 is notified");
    assert!(world.borrow().waits().is_empty(), "a notified entry leaves the queue");
    // The retry succeeds (plain or with WAIT).
    let id = id_of(alloc_wait(&world, 1, 512 << 10, 1).0);
    let mut child = client(&world, 1);
    child.free(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn first_registered_first_notified_and_a_small_request_does_not_overtake() {
    let world = supervised_world(8 << 20, 16);
    let mut owner = client(&world, 0);
    let halves = [0, 1].map(|_| owner.alloc(512 << 10, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap());
    // Client 1 waits for the whole pool, then client 2 for a page of it.
    assert_eq!(alloc_wait(&world, 1, 1 << 20, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 2, PAGE, 1).0, Err(Error::Waiting));
    let order: Vec<usize> = world.borrow().waits().iter().map(|w| w.client).collect();
    assert_eq!(order, [1, 2]);
    // Half comes back: client 2's page would fit, but client 1 was first.
    assert_eq!(request(&world, 0, Op::Free, &[halves[0].raw()]).1, 0, "no overtaking");
    // Client 2 allocating without WAIT is not stopped (it does not wait).
    let (result, notify) = request(&world, 0, Op::Free, &[halves[1].raw()]);
    assert!(result.is_ok());
    assert_eq!(notify, (1 << 1) | (1 << 2), "both fit now: notified, first registered first");
    // memsrv set nothing aside: client 2 retries first and wins the race;
    // client 1's retry loses and waits again, at the back of the queue.
    let page = id_of(alloc_wait(&world, 2, PAGE, 1).0);
    assert_eq!(alloc_wait(&world, 1, 1 << 20, 1).0, Err(Error::Waiting));
    assert_eq!(world.borrow().waits().iter().map(|w| w.client).collect::<Vec<_>>(), [1]);
    let (_, notify) = request(&world, 2, Op::Free, &[page.raw()]);
    assert_eq!(notify, 1 << 1);
    let whole = id_of(alloc_wait(&world, 1, 1 << 20, 1).0);
    client(&world, 1).free(whole).unwrap();
    assert_pristine(&world);
}

#[test]
fn an_entry_short_of_its_own_quota_blocks_nobody() {
    // Quota of one buffer each.
    let world = supervised_world(8 << 20, 1);
    let (mut boss, mut child) = (client(&world, 0), client(&world, 1));
    let mine = child.alloc(PAGE, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    let fill = boss.alloc(512 << 10, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    // Client 1 waits on its own buffer quota; client 2 on pool 1's memory.
    assert_eq!(alloc_wait(&world, 1, PAGE, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 2, 1 << 20, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 2, 512 << 10, 1).0, Err(Error::Waiting), "replaces its entry");
    let waits: Vec<(usize, u64)> = world.borrow().waits().iter().map(|w| (w.client, w.size)).collect();
    assert_eq!(waits, [(1, PAGE), (2, 512 << 10)]);
    let (_, notify) = request(&world, 0, Op::Free, &[fill.raw()]);
    assert_eq!(notify, 1 << 2, "client 1, short of its own quota, did not stop client 2");
    let (_, notify) = request(&world, 1, Op::Free, &[mine.raw()]);
    assert_eq!(notify, 1 << 1, "its own FREE made room in its quota");
    assert!(world.borrow().waits().is_empty());
    assert_pristine(&world);
}

#[test]
fn a_second_wait_keeps_its_place_and_success_or_reclaim_cancels() {
    let world = supervised_world(8 << 20, 16);
    let mut owner = client(&world, 0);
    let fill = owner.alloc(1 << 20, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    assert_eq!(alloc_wait(&world, 1, 1 << 20, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 2, 1 << 20, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 1, PAGE, 1).0, Err(Error::Waiting), "replaced");
    let waits: Vec<(usize, u64)> = world.borrow().waits().iter().map(|w| (w.client, w.size)).collect();
    assert_eq!(waits, [(1, PAGE), (2, 1 << 20)], "one entry per client, first place kept");
    // A successful ALLOC elsewhere cancels the entry.
    let elsewhere = id_of(alloc_wait(&world, 1, PAGE, 0).0);
    assert_eq!(world.borrow().waits().iter().map(|w| w.client).collect::<Vec<_>>(), [2]);
    // RECLAIM cancels it too: the freed pool then notifies nobody.
    assert_eq!(reclaim(&world, SUPERVISOR, 12).0.map(|_| ()), Ok(()));
    assert!(world.borrow().waits().is_empty());
    assert_eq!(request(&world, 0, Op::Free, &[fill.raw()]).1, 0, "nobody waits");
    // A RECLAIM that frees memory notifies whoever waits for it.
    assert_eq!(alloc_wait(&world, 2, 1 << 20, 0).0.map(|_| ()), Ok(()));
    let grab = owner.alloc(2 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    assert_eq!(alloc_wait(&world, 0, 1 << 20, 0).0, Err(Error::Waiting));
    let (result, notify) = reclaim(&world, SUPERVISOR, 12);
    assert!(result.is_ok());
    assert_eq!(notify, 1 << 0, "the reclaim of client 2 made room for client 0");
    client(&world, 1).free(elsewhere).unwrap();
    owner.free(grab).unwrap();
    assert_pristine(&world);
}

#[test]
fn waiting_answers_only_memory_and_quota_shortage() {
    let world = supervised_world(8 << 20, 16);
    let invalid = [
        (&[0u64, 0, 0, 4][..], Error::ZeroSize),
        (&[PAGE, 0, 9, 4][..], Error::InvalidPool),
        (&[PAGE, 40, 0, 4][..], Error::InvalidAlignment),
        (&[PAGE, 0, 0, 8][..], Error::InvalidFlags),
        (&[(1 << 20) + PAGE, 0, 1, 4][..], Error::TooLarge),
    ];
    for (words, error) in invalid {
        assert_eq!(request(&world, 1, Op::Alloc, words).0, Err(error));
    }
    assert!(world.borrow().waits().is_empty());
    // WAIT is not a property of the buffer.
    let id = id_of(request(&world, 1, Op::Alloc, &[PAGE, 0, 0, (AllocFlags::WAIT | AllocFlags::UNCACHED).bits()]).0);
    assert_eq!(world.borrow().registry().get(id).unwrap().made.flags, AllocFlags::UNCACHED);
    client(&world, 1).free(id).unwrap();
    assert_pristine(&world);
}

#[test]
fn a_supervisor_must_be_another_configured_client() {
    let mut config = supervised(config(8 << 20, 16, 16));
    config.clients[1].as_mut().unwrap().supervisor = Some(1);
    let model = Model::new(12, &pools_of(&config), 3);
    assert!(Server::<Model, NODES>::new(model, config).is_err(), "not itself");
}

/// A client whose only reserve block the kernel cost it (an ALLOC whose
/// undo was refused too) can never allocate again: its waiting ALLOC must
/// not stop later waiters for the same pool.
#[test]
fn a_waiter_short_of_its_own_reserve_blocks_nobody() {
    // In a fresh system for each n, the kernel refuses the n-th invocation
    // of client 1's ALLOC and the one after it (the undo): for some n the
    // client's only reserve block is lost.
    let lost_block = |nth: u64| {
        let world = world_with(supervised(config(8 << 20, 1, 0)));
        let outcome = {
            let mut server = world.borrow_mut();
            server.kernel_mut().fail_invocation(nth, KernelError(3));
            server.kernel_mut().fail_invocation(nth + 1, KernelError(3));
            let outcome = server.handle(1, Op::Alloc as u64, &[PAGE, 0, 1, 0], 0);
            server.kernel_mut().clear_failures();
            outcome
        };
        (outcome.lost.bytes > 0).then_some(world)
    };
    let world = (1..40).find_map(lost_block);
    assert!(world.is_some(), "some double refusal loses the client's reserve block");
    let world = world.unwrap();
    assert_eq!(request(&world, 1, Op::Alloc, &[PAGE, 0, 1, 0]).0, Err(Error::OutOfMemory), "no block left");
    let fill = client(&world, 0).alloc(1 << 20, Align::PAGE, PoolId(1), AllocFlags::NONE).unwrap();
    assert_eq!(alloc_wait(&world, 1, PAGE, 1).0, Err(Error::Waiting));
    assert_eq!(alloc_wait(&world, 2, PAGE, 1).0, Err(Error::Waiting));
    let (_, notify) = request(&world, 0, Op::Free, &[fill.raw()]);
    assert_eq!(notify, 1 << 2, "client 2 is notified; client 1, first but short of its own reserve, stops nobody");
    check_invariants(&world).unwrap();
}

/// A waiter memsrv does not notify could not allocate now: after every
/// request of a random churn of small buffers (whose frees park runs) in a
/// table that runs short, client 1's ALLOC, tried on a copy of memsrv,
/// fails. A plan counts the slots parked runs would give back only once
/// they are merged, which the waiter's retry would do first: the check of
/// the waiters must merge them first as well (without that, seed 1 fails
/// at step 267).
#[test]
fn a_waiter_that_could_allocate_is_notified_even_with_the_table_short_and_runs_parked() {
    for seed in 1..=32u64 {
        let mut config = supervised(config(8 << 20, 16, 16));
        config.table_bits = 9;
        let world = world_with(config);
        let wanted = 32 << 10;
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut live: Vec<(usize, BufferId)> = Vec::new();
        let mut waiting = false;
        for step in 0..600 {
            if !waiting {
                match alloc_wait(&world, 1, wanted, 1).0 {
                    Err(Error::Waiting) => waiting = true,
                    Ok(Reply::Alloc(reply)) => live.push((1, reply.id)),
                    // (no room in the table, even reclaiming: not a wait)
                    Err(Error::OutOfSlots) => {}
                    other => panic!("seed {seed}, step {step}: {other:?}"),
                }
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let client = [0, 2][(rng >> 8) as usize % 2];
            let notify = if rng % 5 < 3 || live.is_empty() {
                let pages = 1 + (rng >> 16) % 16;
                let pool = (rng >> 24) % 2;
                let (result, notify) = request(&world, client, Op::Alloc, &[pages * PAGE, 0, pool, 0]);
                if let Ok(Reply::Alloc(reply)) = result {
                    live.push((client, reply.id));
                }
                notify
            } else {
                let (owner, id) = live.swap_remove((rng >> 32) as usize % live.len());
                let (result, notify) = request(&world, owner, Op::Free, &[id.raw()]);
                assert!(result.is_ok(), "seed {seed}, step {step}: {result:?}");
                notify
            };
            if notify & 1 << 1 != 0 {
                waiting = false;
                continue;
            }
            // (only a short table can hide a waiter's room: probe there)
            if waiting && world.borrow().free_slot_count() < 64 {
                let mut probe = world.borrow().clone();
                let tried = probe.handle(1, Op::Alloc as u64, &[wanted, 0, 1, 0], 0).result;
                assert!(tried.is_err(), "seed {seed}, step {step}: client 1 waits, but could allocate");
            }
        }
    }
}
