//! Random operation sequences from three clients, through the real client
//! library and server state machine, against the seL4 model. After every
//! step the invariants of [`common::invariants::check_invariants`] hold: no
//! two frames overlap, pool bytes and table slots are conserved, usage
//! matches the registry and the holes and stays within quota, and no client
//! holds a capability or a mapping to memory it is not attached to with at
//! least those rights. Every view a client library holds is at the address
//! of that client's attachment to the buffer, or of its hole for the id (the
//! run of an attachment someone else revoked): an access through it reaches
//! that buffer or faults, never another buffer, until the client detaches.
//! A `dma` client's INFO exposes it to the buffer; FREE quarantines exactly
//! the exposed buffers' pages, and QUIESCE answers only a client with
//! something to confirm. At the end everything is freed, every exposed
//! client quiesces, every hole is detached, and the system must be exactly
//! as it started.

mod common;

use capbuf_client::ClientError;
use capbuf_protocol::{Align, AllocFlags, BufferId, ClientId, Error, PoolId, Rights, PADDR_HIDDEN, PAGE_BITS};
use capbuf_testing::proptest_config;
use common::drive;
use common::invariants::check_invariants;
use common::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Step {
    Alloc {
        client: usize,
        pages: u64,
        pool: u64,
        flags: u64,
    },
    Attach {
        client: usize,
        buffer: usize,
        write: bool,
    },
    Grant {
        client: usize,
        buffer: usize,
        grantee: usize,
        write: bool,
    },
    Ungrant {
        client: usize,
        buffer: usize,
        grantee: usize,
    },
    Detach {
        client: usize,
        buffer: usize,
    },
    Free {
        client: usize,
        buffer: usize,
    },
    Touch {
        client: usize,
        buffer: usize,
        page: u64,
    },
    /// INFO: a `dma` client (client 2) that learns the address is exposed.
    Info {
        client: usize,
        buffer: usize,
    },
    /// QUIESCE of a live buffer (`freed` false) or of a freed one.
    Quiesce {
        client: usize,
        which: usize,
        freed: bool,
    },
    Stale {
        client: usize,
        which: usize,
    },
    Garbage {
        client: usize,
        label: u64,
        words: Vec<u64>,
    },
    Reclaim,
    /// A hostile client tries a capability operation on whatever its
    /// capability pointers name: copy, mint, move, mutate, delete or revoke
    /// in a CNode, map a frame (at an address of its window), GetAddress.
    Hostile {
        client: usize,
        cptr: u64,
        dest: u64,
        source: u64,
        op: u8,
        vaddr_slot: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let c = 0usize..3;
    let b = any::<usize>();
    prop_oneof![
        4 => (c.clone(), prop_oneof![1u64..20, 500u64..700], 0u64..2, 0u64..4)
            .prop_map(|(client, pages, pool, flags)| Step::Alloc { client, pages, pool, flags }),
        4 => (c.clone(), b, any::<bool>()).prop_map(|(client, buffer, write)| Step::Attach { client, buffer, write }),
        3 => (c.clone(), b, c.clone(), any::<bool>())
            .prop_map(|(client, buffer, grantee, write)| Step::Grant { client, buffer, grantee, write }),
        1 => (c.clone(), b, c.clone()).prop_map(|(client, buffer, grantee)| Step::Ungrant { client, buffer, grantee }),
        2 => (c.clone(), b).prop_map(|(client, buffer)| Step::Detach { client, buffer }),
        2 => (c.clone(), b).prop_map(|(client, buffer)| Step::Free { client, buffer }),
        4 => (c.clone(), b, 0u64..700).prop_map(|(client, buffer, page)| Step::Touch { client, buffer, page }),
        1 => (c.clone(), b).prop_map(|(client, which)| Step::Stale { client, which }),
        2 => (c.clone(), b).prop_map(|(client, buffer)| Step::Info { client, buffer }),
        2 => (c.clone(), b, any::<bool>()).prop_map(|(client, which, freed)| Step::Quiesce { client, which, freed }),
        1 => (c.clone(), 0u64..12, prop::collection::vec(any::<u64>(), 0..9))
            .prop_map(|(client, label, words)| Step::Garbage { client, label, words }),
        1 => Just(Step::Reclaim),
        2 => (c, 0u64..64, 0u64..4, 0u64..1024, 0u64..1024, 0u8..8, 0u64..256).prop_map(
            |(client, slot, index, dest, source, op, vaddr_slot)| Step::Hostile {
                client,
                cptr: (slot << 58) | index,
                dest,
                source,
                op,
                vaddr_slot
            }
        ),
    ]
}

/// Whether `client` may learn that buffer `id` exists: it owns it or holds a grant.
fn knows(world: &World, client: usize, id: BufferId) -> bool {
    world.borrow().registry().get(id).is_ok_and(|b| b.made.owner == client || b.holders.grant(client).is_some())
}

/// Every view `clients` hold is where memsrv keeps the buffer for that
/// client: its attachment's run, or its hole's if someone else revoked it.
fn check_views(
    world: &World,
    clients: &[capbuf_client::Client<Port>; 3],
    issued: impl Iterator<Item = BufferId> + Clone,
) -> Result<(), TestCaseError> {
    let server = world.borrow();
    for (c, library) in clients.iter().enumerate() {
        for (id, _) in server.registry().iter().filter(|(_, b)| b.holders.attachment(c).is_some()) {
            prop_assert!(library.view(id).is_some(), "client {}: attached to {} without a view", c, id);
        }
        // A buffer with a head of 4 KiB frames starts inside its run's first
        // slot, where its physical address puts it; of one freed since, only
        // that slot is known.
        let at_home = |id: BufferId, run: capbuf_server::window::Run, vaddr: u64| match server.registry().get(id) {
            Ok(b) => {
                let physical = server.physical_address(b) >> PAGE_BITS;
                vaddr == run.vaddr() + capbuf_server::FrameLayout::for_run(physical, b.made.data.pages).window_offset()
            }
            Err(_) => (run.vaddr()..run.vaddr() + (1 << capbuf_protocol::LARGE_PAGE_BITS)).contains(&vaddr),
        };
        for hole in server.windows().holes(c) {
            let view = library.view(hole.id);
            prop_assert!(
                view.is_some_and(|v| at_home(hole.id, hole.run, v.vaddr)),
                "client {}: hole for {} at {:?}, view {:?}",
                c,
                hole.id,
                hole.run,
                view
            );
        }
        for id in issued.clone() {
            let Some(view) = library.view(id) else { continue };
            let attached = server.registry().get(id).ok().and_then(|b| b.holders.attachment(c)).map(|a| a.window);
            let run = attached.or(server.windows().hole(c, id));
            prop_assert!(
                run.is_some_and(|run| at_home(id, run, view.vaddr)),
                "client {}: view of {} at {:#x}, run {:?}",
                c,
                id,
                view.vaddr,
                run
            );
        }
    }
    Ok(())
}

/// What memsrv must tell `client` about the freed `id`: stale if the client
/// had a right to it when it was freed (and, as memsrv remembers the last 32
/// such generations of each slot per client, it is among them), else unknown.
fn freed_error(freed: &[(BufferId, [bool; 3])], client: usize, id: BufferId) -> Error {
    let known = freed.iter().any(|(f, who)| *f == id && who[client]);
    let newest = freed
        .iter()
        .filter(|(f, who)| f.index() == id.index() && who[client])
        .map(|(f, _)| f.generation())
        .max()
        .unwrap_or(0);
    if known && newest - id.generation() < 32 {
        Error::StaleBuffer
    } else {
        Error::UnknownBuffer
    }
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn random_clients_never_break_the_invariants(steps in prop::collection::vec(step(), 1..120)) {
        let world = world_with(config(6 << 20, 6, 6));
        let mut clients = [client(&world, 0), client(&world, 1), client(&world, 2)];
        let mut buffers: Vec<(BufferId, usize)> = Vec::new();
        // Freed ids in order, with which clients had a right to each when it was freed.
        let mut freed: Vec<(BufferId, [bool; 3])> = Vec::new();
        // The test's own books of exposure: per buffer id, the clients that
        // learnt its address and have not quiesced (live or quarantined).
        let mut exposed: HashMap<BufferId, u64> = HashMap::new();
        for step in steps {
            let pick = |i: usize| if buffers.is_empty() { None } else { Some(buffers[i % buffers.len()]) };
            match step {
                Step::Alloc { client, pages, pool, flags } => {
                    let flags = AllocFlags::from_bits(flags).expect("every combination of the defined flags");
                    if let Ok(id) = clients[client].alloc(pages << PAGE_BITS, Align::PAGE, PoolId(pool), flags) {
                        buffers.push((id, client));
                        // A fresh buffer is zero, whatever the memory held before.
                        let start = {
                            let server = world.borrow();
                            server.physical_address(server.registry().get(id).unwrap())
                        };
                        let end = start + (pages << PAGE_BITS);
                        prop_assert_eq!(world.borrow().kernel().dirty_pages(start, end), 0);
                        // And so it reads, unless holes fill the client's
                        // attachment quota (they count until it detaches them).
                        match clients[client].attach(id, Rights::ReadOnly) {
                            Ok(view) => {
                                for page in 0..pages {
                                    let vaddr = view.vaddr + (page << PAGE_BITS);
                                    prop_assert_eq!(world.borrow().kernel().client_read(client, vaddr), Ok(0));
                                }
                                clients[client].detach(id).unwrap();
                            }
                            Err(refused) => {
                                prop_assert_eq!(refused, ClientError::Server(Error::QuotaAttachments));
                                let server = world.borrow();
                                let quota = server.config().clients[client].unwrap().quota_attachments;
                                prop_assert_eq!(server.usage(client).attachments, quota);
                            }
                        }
                    }
                }
                Step::Attach { client, buffer, write } => if let Some((id, _)) = pick(buffer) {
                    let rights = if write { Rights::ReadWrite } else { Rights::ReadOnly };
                    let known = knows(&world, client, id);
                    // A library that still holds a view refuses by itself, asking memsrv nothing.
                    let held = clients[client].view(id).is_some();
                    match clients[client].attach(id, rights) {
                        Ok(view) => prop_assert!(known && !held && view.rights.within(rights)),
                        Err(ClientError::Server(_)) if held => {}
                        Err(ClientError::Server(error)) => {
                            prop_assert!(known || error == Error::UnknownBuffer, "{:?} told an outsider", error);
                            // The metadata comes from the client's reserve: however
                            // full the pools, an attach is refused only for the
                            // client's own reasons.
                            prop_assert!(
                                !matches!(error, Error::OutOfMemory | Error::OutOfSlots | Error::Kernel),
                                "attach refused with {:?}",
                                error
                            );
                        }
                        Err(other) => prop_assert!(false, "library failure {:?}", other),
                    }
                },
                Step::Grant { client, buffer, grantee, write } => if let Some((id, _)) = pick(buffer) {
                    let rights = if write { Rights::ReadWrite } else { Rights::ReadOnly };
                    let _ = clients[client].grant(id, ClientId(10 + grantee as u64), rights);
                },
                Step::Ungrant { client, buffer, grantee } => if let Some((id, _)) = pick(buffer) {
                    let _ = clients[client].ungrant(id, ClientId(10 + grantee as u64));
                },
                Step::Detach { client, buffer } => if let Some((id, _)) = pick(buffer) {
                    let hole = world.borrow().windows().hole(client, id);
                    let result = clients[client].detach(id);
                    if hole.is_some() {
                        prop_assert_eq!(result, Ok(()), "detaching a hole");
                        prop_assert_eq!(world.borrow().windows().hole(client, id), None);
                    }
                },
                Step::Free { client, buffer } => if let Some((id, owner)) = pick(buffer) {
                    let known = [0, 1, 2].map(|c| knows(&world, c, id));
                    let (pages, pool) = world.borrow().registry().get(id).map(|b| (b.made.data.pages, b.made.pool)).unwrap();
                    let before = world.borrow().quarantined_bytes(pool).unwrap();
                    let result = clients[client].free(id);
                    if client == owner {
                        prop_assert_eq!(result, Ok(()));
                        buffers.retain(|(b, _)| *b != id);
                        freed.push((id, known));
                        let pending = exposed.get(&id).copied().unwrap_or(0);
                        let held = world.borrow().quarantine().iter().find(|q| q.id == id).map(|q| q.pending);
                        prop_assert_eq!(held, (pending != 0).then_some(pending), "quarantined iff exposed");
                        let after = world.borrow().quarantined_bytes(pool).unwrap();
                        let grown = if pending != 0 { pages << PAGE_BITS } else { 0 };
                        prop_assert_eq!(after, before + grown);
                    } else if known[client] {
                        prop_assert_eq!(result, Err(ClientError::Server(Error::NotOwner)));
                    } else {
                        prop_assert_eq!(result, Err(ClientError::Server(Error::UnknownBuffer)));
                    }
                },
                Step::Touch { client, buffer, page } => if let Some((id, _)) = pick(buffer) {
                    if let Some(view) = clients[client].view(id) {
                        let vaddr = view.vaddr + ((page << PAGE_BITS) % view.size);
                        let result = world.borrow_mut().kernel_mut().client_write(client, vaddr, id.raw());
                        let live = world.borrow().registry().get(id).ok().and_then(|b| b.holders.attachment(client));
                        match live {
                            Some(a) => prop_assert_eq!(result.is_ok(), a.rights.can_write()),
                            None => {
                                prop_assert!(result.is_err(), "wrote through a revoked mapping");
                                let read = world.borrow().kernel().client_read(client, vaddr);
                                prop_assert!(read.is_err(), "read through a revoked mapping");
                                // It faults until the client detaches: the run is its hole.
                                let hole = world.borrow().windows().hole(client, id);
                                prop_assert!(hole.is_some(), "a revoked view without a hole");
                            }
                        }
                    }
                },
                Step::Info { client, buffer } => if let Some((id, _)) = pick(buffer) {
                    let known = knows(&world, client, id);
                    match clients[client].info(id) {
                        Ok(info) => {
                            prop_assert!(known);
                            if info.physical_address != PADDR_HIDDEN {
                                prop_assert_eq!(client, 2, "only the dma client sees addresses");
                                *exposed.entry(id).or_default() |= 1 << client;
                            }
                        }
                        Err(error) => prop_assert!(!known, "{:?} to a client with a right", error),
                    }
                    let live = world.borrow().registry().get(id).unwrap().exposed;
                    prop_assert_eq!(live, exposed.get(&id).copied().unwrap_or(0));
                },
                Step::Quiesce { client, which, freed: old } => {
                    let id = match (old, freed.is_empty()) {
                        (true, false) => Some(freed[which % freed.len()].0),
                        (false, _) => pick(which).map(|b| b.0),
                        _ => None,
                    };
                    if let Some(id) = id {
                        let pending = exposed.get(&id).copied().unwrap_or(0);
                        let result = clients[client].quiesce(id);
                        if pending & (1 << client) != 0 {
                            prop_assert_eq!(result, Ok(()));
                            exposed.insert(id, pending & !(1 << client));
                            if old && pending == 1 << client {
                                let held = world.borrow().quarantine().iter().any(|q| q.id == id);
                                prop_assert!(!held, "the last confirmation releases the pages");
                            }
                        } else {
                            prop_assert_eq!(result, Err(ClientError::Server(Error::UnknownBuffer)), "no oracle");
                        }
                    }
                },
                Step::Stale { client, which } => {
                    if !freed.is_empty() {
                        let id = freed[which % freed.len()].0;
                        let expected = ClientError::Server(freed_error(&freed, client, id));
                        prop_assert_eq!(clients[client].info(id).err(), Some(expected));
                        prop_assert_eq!(clients[client].free(id).err(), Some(expected));
                        // A client attached when the buffer was freed detaches
                        // its hole; otherwise DETACH is answered like the rest.
                        if world.borrow().windows().hole(client, id).is_some() {
                            prop_assert_eq!(clients[client].detach(id), Ok(()));
                            prop_assert!(clients[client].view(id).is_none());
                        }
                        prop_assert_eq!(clients[client].detach(id).err(), Some(expected));
                    }
                    let never = BufferId::new(which as u32 % 256, 1 << 30);
                    prop_assert_eq!(clients[client].info(never), Err(ClientError::Server(Error::UnknownBuffer)));
                },
                Step::Garbage { client, label, words } => {
                    let _ = world.borrow_mut().handle(client as u64, label, &words, 0);
                },
                Step::Reclaim => world.borrow_mut().reclaim().expect("reclaim"),
                Step::Hostile { client, cptr, dest, source, op, vaddr_slot } => {
                    let mut server = world.borrow_mut();
                    let result = drive::hostile(server.kernel_mut(), client, op, cptr, dest, source, vaddr_slot);
                    // memsrv gives clients no capability: there is nothing to operate on.
                    prop_assert!(result.is_err(), "a client's capability operation {} succeeded", op);
                }
            }
            check_invariants(&world)?;
            check_views(&world, &clients, buffers.iter().map(|b| b.0).chain(freed.iter().map(|f| f.0)))?;
        }
        for (id, owner) in buffers {
            let known = [0, 1, 2].map(|c| knows(&world, c, id));
            clients[owner].free(id).unwrap();
            freed.push((id, known));
        }
        check_invariants(&world)?;
        check_views(&world, &clients, freed.iter().map(|f| f.0))?;
        // Every exposed client confirms; then the quarantine is empty.
        for (&id, &pending) in exposed.iter() {
            for (c, client) in clients.iter_mut().enumerate() {
                if pending & (1 << c) != 0 {
                    prop_assert_eq!(client.quiesce(id), Ok(()), "client {} confirms {}", c, id);
                }
            }
        }
        check_invariants(&world)?;
        // Every view left is a hole: DETACH gives it back, and then the id
        // is answered as any freed one.
        for (c, client) in clients.iter_mut().enumerate() {
            for &(id, _) in freed.iter() {
                if client.view(id).is_some() {
                    prop_assert_eq!(client.detach(id), Ok(()), "client {}", c);
                    prop_assert!(client.view(id).is_none(), "the library tidied its view");
                }
                let expected = ClientError::Server(freed_error(&freed, c, id));
                prop_assert_eq!(client.detach(id), Err(expected), "client {}", c);
            }
        }
        assert_pristine(&world);
    }
}
