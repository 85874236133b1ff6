//! What must hold after every step of a random sequence, an exhaustive
//! search or a fuzzing run: [`check`] on any server over the model, with a
//! plain error; [`check_invariants`] for proptest.

use capbuf_model::Model;
use capbuf_protocol::{BufferId, Rights, LARGE_PAGE_BITS, MAX_CLIENTS, PAGE_BITS};
use capbuf_server::window::Run;
use capbuf_server::Server;
use proptest::prelude::*;

use super::World;

/// Which invariant broke, and how.
pub type Violation = String;

/// Fail with the message unless the condition holds.
macro_rules! ensure {
    ($condition:expr $(,)?) => {
        ensure!($condition, "{}", stringify!($condition))
    };
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// Fail with both values and the message unless they are equal.
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        ensure_eq!($left, $right, "{} == {}", stringify!($left), stringify!($right))
    };
    ($left:expr, $right:expr, $($message:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err(format!("{}: {:?} != {:?}", format!($($message)+), left, right));
                }
            }
        }
    };
}

/// The first address past window run `run`.
fn run_end(run: Run) -> u64 {
    run.vaddr() + ((run.slots as u64) << LARGE_PAGE_BITS)
}

/// Table slots that hold a capability or are free in memsrv's list: all of
/// them but the fixed slots left empty (pools and clients not configured).
/// With nothing lost, memsrv's free slots and the slots holding a capability
/// add up to exactly this: no slot leaks.
fn accounted_slots<const N: usize>(server: &Server<Model, N>) -> u64 {
    let io_spaces = clients(server).filter(|&c| server.config().io_space_slot(c).is_some()).count();
    let fixed = server.config().pool_count() + clients(server).count() + io_spaces;
    (1u64 << server.config().table_bits) - server.config().first_free_slot() + fixed as u64
}

/// After every step: no two frames overlap; each pool's bytes are conserved
/// (free, buffers, reserves and quarantine); only `dma` clients are exposed
/// to a buffer or pending in quarantine, and only buffers freed (ids no
/// longer live) are in it, each at most once and with someone to confirm; table slots are conserved (free or holding a
/// capability; only lost ones may be neither); memsrv holds exactly one
/// untyped per block it knows; metadata lives only in reserve blocks in use,
/// one piece per block; usage matches the registry and the holes and stays
/// within quota (attachments and holes within the attachment limit), with one
/// reserve block per buffer and live attachment; each client's window holds
/// exactly its attachments' runs and its holes' runs, none overlapping, and
/// at most one of them per buffer id; nothing is mapped in a hole, and every
/// mapping lies in the run of an attachment, at that attachment's buffer's
/// memory for its offset in the run; rights only shrink (a grant within the
/// buffer's flags, an attachment or export within its client's right); no client holds a capability or a
/// mapping to memory it is not attached to with at least those rights; and an
/// `io_space` client's device reaches exactly that client's attachments, at
/// their I/O addresses, with their rights (and its INFO exposes nothing).
pub fn check_invariants(world: &World) -> Result<(), TestCaseError> {
    check(&world.borrow()).map_err(TestCaseError::fail)
}

/// The configured clients' indices.
fn clients<const N: usize>(server: &Server<Model, N>) -> impl Iterator<Item = usize> + '_ {
    (0..MAX_CLIENTS).filter(|&c| server.config().clients[c].is_some())
}

/// [`check_invariants`] for any server over the model: the first invariant
/// that does not hold, if any.
pub fn check<const N: usize>(server: &Server<Model, N>) -> Result<(), Violation> {
    let accounted = accounted_slots(server);
    let model = server.kernel();
    let pools: Vec<(u64, u64)> = super::pools_of(server.config());
    ensure!(model.overlapping_frames().is_empty(), "frames overlap");
    let reserves = server.reserves();
    for (p, &(_, bits)) in pools.iter().enumerate() {
        let data: u64 =
            server.registry().iter().filter(|(_, b)| b.made.pool == p).map(|(_, b)| b.made.data.pages).sum();
        let reserved: u64 = reserves.iter().filter(|(_, r)| r.pool == p).map(|(_, r)| r.block.pages).sum();
        ensure_eq!(reserved << PAGE_BITS, server.reserved_bytes(p).unwrap());
        let quarantined: u64 = server.quarantine().iter().filter(|q| q.pool == p).map(|q| q.data.pages).sum();
        ensure_eq!(quarantined << PAGE_BITS, server.quarantined_bytes(p).unwrap());
        ensure_eq!(
            server.free_bytes(p).unwrap() + ((data + reserved + quarantined) << PAGE_BITS),
            1 << bits,
            "pool {} bytes conserved: free, buffers, reserves and quarantine",
            p
        );
        let lost: u64 = reserves.iter().filter(|(_, r)| r.pool == p && r.lost).map(|(_, r)| r.block.pages).sum();
        ensure_eq!(server.lost_bytes(p), Some(lost << PAGE_BITS), "pool {} lost bytes", p);
    }
    for (id, buffer) in server.registry().iter() {
        let dma: u64 = clients(server).filter(|&c| server.config().clients[c].unwrap().dma).map(|c| 1 << c).sum();
        ensure_eq!(buffer.exposed & !dma, 0, "buffer {} exposed to a client without the dma right", id);
        // Every holder entry is a configured client's, and at most one each.
        for (i, h) in buffer.holders.iter().enumerate() {
            let c = h.client as usize;
            ensure!(server.config().clients.get(c).is_some_and(|q| q.is_some()), "buffer {} held by unknown client {}", id, c);
            ensure!(buffer.holders.iter().skip(i + 1).all(|o| o.client != h.client), "buffer {}: two entries for {}", id, c);
        }
        // Rights only shrink: a grant within what the buffer allows anyone,
        // an attachment or export within what its client may attach with.
        for c in clients(server) {
            let within = |rights: Rights| buffer.allowed(c).is_some_and(|allowed| rights.within(allowed));
            let granted = buffer.holders.grant(c).is_none_or(|g| g.within(buffer.made.flags.max_rights()));
            ensure!(granted, "buffer {} granted to {} beyond its flags", id, c);
            ensure!(
                buffer.holders.attachment(c).is_none_or(|a| within(a.rights)),
                "buffer {}: {} attached beyond its right",
                id,
                c
            );
            ensure!(
                buffer.holders.export(c).is_none_or(|e| within(e.rights)),
                "buffer {}: {} exported beyond its right",
                id,
                c
            );
        }
    }
    let mut held: Vec<BufferId> = Vec::new();
    for entry in server.quarantine().iter() {
        ensure!(entry.pending != 0, "a quarantined buffer with nobody left to confirm");
        ensure!(server.registry().get(entry.id).is_err(), "a live buffer in quarantine");
        ensure!(!held.contains(&entry.id), "quarantined twice");
        held.push(entry.id);
    }
    let lost = server.lost();
    let slots = server.free_slot_count() as u64 + model.used_table_slots() as u64;
    ensure!(
        slots <= accounted && accounted <= slots + lost.slots,
        "slots: {} free or filled, {} lost, of {}",
        slots,
        lost.slots,
        accounted
    );
    ensure_eq!(model.live_objects().0, server.block_count(), "one untyped per block memsrv knows");
    // Metadata lives in reserve blocks only: a master CNode in its owner's, an
    // attachment in the attaching client's, one per block, and every block in
    // use holds exactly one (a lost block holds what memsrv could not revoke).
    let mut holders = vec![0usize; reserves.iter().count()];
    for (_, b) in server.registry().iter() {
        let block = reserves.get(b.made.meta).unwrap();
        ensure!(block.client == b.made.owner && block.in_use, "master CNode outside its owner's reserve");
        holders[b.made.meta] += 1;
        for (c, a) in b.holders.attachments() {
            {
                let block = reserves.get(a.meta as usize).unwrap();
                ensure!(block.client == c && block.in_use, "attachment outside its client's reserve");
                holders[a.meta as usize] += 1;
            }
        }
        for (c, e) in b.holders.exports() {
            {
                let block = reserves.get(e.meta as usize).unwrap();
                ensure!(block.client == c && block.in_use, "export outside its client's reserve");
                holders[e.meta as usize] += 1;
            }
        }
    }
    for (index, block) in reserves.iter() {
        let held = (block.in_use && !block.lost) as usize;
        ensure_eq!(holders[index], held, "reserve block {} held {} times", index, holders[index]);
        let start = pools[block.pool].0 + (block.block.offset << PAGE_BITS);
        ensure_eq!(start % (block.block.pages << PAGE_BITS), 0, "naturally aligned");
    }
    for (address, size_bits) in model.metadata_objects() {
        let inside = reserves.iter().any(|(_, r)| {
            let start = pools[r.pool].0 + (r.block.offset << PAGE_BITS);
            r.in_use && address >= start && address + (1 << size_bits) <= start + (r.block.pages << PAGE_BITS)
        });
        ensure!(inside, "a CNode or page table at {:#x} is outside the reserves in use", address);
    }
    for c in clients(server) {
        let quota = server.config().clients[c].unwrap();
        let usage = server.usage(c);
        let owned: Vec<_> = server.registry().iter().filter(|(_, b)| b.made.owner == c).collect();
        ensure_eq!(usage.buffers, owned.len() as u64);
        // Each buffer is charged its pages, or its whole aligned block when the
        // alignment exceeds the buffer's own power-of-two size.
        let charged = |b: &capbuf_server::Buffer| {
            let aligned = 1u64 << b.made.align_order;
            if aligned > b.made.data.pages.next_power_of_two() {
                aligned
            } else {
                b.made.data.pages
            }
        };
        ensure_eq!(usage.bytes, owned.iter().map(|(_, b)| charged(b) << PAGE_BITS).sum::<u64>());
        let attached: Vec<_> =
            server.registry().iter().filter_map(|(id, b)| b.holders.attachment(c).map(|a| (id, b, a))).collect();
        let holes = server.windows().holes(c);
        let exported = server.registry().iter().filter(|(_, b)| b.holders.export(c).is_some()).count();
        ensure!(exported == 0 || quota.frame_caps, "client {} without frame_caps holds an export", c);
        ensure_eq!(
            usage.attachments,
            (attached.len() + holes.len() + exported) as u64,
            "client {}: attachments + holes + exports",
            c
        );
        ensure!(usage.bytes <= quota.quota_bytes && usage.buffers <= quota.quota_buffers);
        let limit = quota.quota_attachments.min(capbuf_server::reserve::MAX_ATTACHMENTS);
        ensure_eq!(limit, capbuf_server::reserve::attachment_limit(server.config(), c));
        ensure!(usage.attachments <= limit, "client {}: {} attachments and holes", c, usage.attachments);
        let in_use = reserves.of(c).filter(|&i| reserves.get(i).is_some_and(|r| r.in_use && !r.lost)).count() as u64;
        let expected = usage.buffers + (attached.len() + exported) as u64;
        ensure_eq!(in_use, expected, "client {}'s reserve blocks in use", c);
        // The window: exactly the attachments' and the holes' runs, disjoint,
        // one run per buffer id at most.
        let runs: Vec<(BufferId, Run)> =
            attached.iter().map(|(id, _, a)| (*id, a.window)).chain(holes.iter().map(|h| (h.id, h.run))).collect();
        let window: u32 = runs.iter().map(|(_, run)| run.slots).sum();
        ensure_eq!(server.windows().used_slots(c), window, "client {}'s window holds its attachments and holes", c);
        for (i, (id, run)) in runs.iter().enumerate() {
            ensure!(
                (run.first..run.first + run.slots).all(|slot| server.windows().is_used(c, slot as usize)),
                "client {}: run {:?} not taken",
                c,
                run
            );
            for (other, other_run) in &runs[i + 1..] {
                ensure!(id != other, "client {}: two runs for {}", c, id);
                let apart = run.first + run.slots <= other_run.first || other_run.first + other_run.slots <= run.first;
                ensure!(apart, "client {}: runs {:?} and {:?} overlap", c, run, other_run);
            }
        }
        let allowed = |address: u64, size_bits: u32, rights: Rights| {
            server.registry().iter().any(|(_, b)| {
                let start = server.physical_address(b);
                let end = start + (b.made.data.pages << PAGE_BITS);
                b.holders.attachment(c).is_some_and(|a| rights.within(a.rights))
                    && address >= start
                    && address + (1 << size_bits) <= end
            })
        };
        // A frame_caps client may also hold frame capabilities EXPORT sent it,
        // and copies of them, which outlive UNEXPORT and UNGRANT (seL4 frame
        // copies are not revocable): the weaker guarantee is that FREE still
        // reaches them all, so they are always to a live buffer's memory,
        // with no more rights than the buffer allows anyone.
        let live = |address: u64, size_bits: u32, rights: Rights| {
            server.registry().iter().any(|(_, b)| {
                let start = server.physical_address(b);
                let end = start + (b.made.data.pages << PAGE_BITS);
                rights.within(b.made.flags.max_rights()) && address >= start && address + (1 << size_bits) <= end
            })
        };
        for (address, size_bits, rights) in model.client_reachable_frames(c) {
            ensure!(
                allowed(address, size_bits, rights) || (quota.frame_caps && live(address, size_bits, rights)),
                "client {} holds a frame cap at {:#x} it may not",
                c,
                address
            );
        }
        // Every mapping in an attachment's run is where memsrv put it, at
        // its buffer's memory for that offset; any other (so any in a hole)
        // is one a frame_caps client made itself from a frame copy it holds,
        // within the weaker guarantee below.
        for m in model.client_mappings(c) {
            let home = attached.iter().find(|(_, _, a)| (a.window.vaddr()..run_end(a.window)).contains(&m.vaddr));
            let Some((_, b, a)) = home else {
                let own = quota.frame_caps && live(m.physical_address, m.size_bits, m.rights);
                ensure!(own, "client {}: a mapping at {:#x} outside its attachments", c, m.vaddr);
                continue;
            };
            // A buffer with a head of 4 KiB frames starts inside its run's first slot.
            let physical = server.physical_address(b);
            let layout = if b.made.small_frames {
                capbuf_server::FrameLayout::small_only(b.made.data.pages)
            } else {
                capbuf_server::FrameLayout::for_run(physical >> PAGE_BITS, b.made.data.pages)
            };
            let first = layout.window_offset();
            let expected = physical + (m.vaddr - a.window.vaddr() - first);
            ensure_eq!(m.physical_address, expected, "client {}: the mapping at {:#x}", c, m.vaddr);
        }
        // An `io_space` client's device reaches exactly its attachments:
        // every page at the I/O address of its place in the window, with
        // the attachment's rights; and its INFO exposes nothing.
        if let Some(slot) = server.config().io_space_slot(c) {
            let device = model.io_space_at(slot as capbuf_server::Slot);
            ensure!(device.is_some(), "client {}'s IOSpace is not in table slot {}", c, slot);
            let mut expected = Vec::new();
            for (_, b, a) in &attached {
                let small = b.made.small_frames || b.made.data.pages < 2 * 512;
                ensure!(small, "client {}: an I/O attachment with 2 MiB frames", c);
                for page in 0..b.made.data.pages {
                    let io = capbuf_protocol::io_address(a.window.vaddr()) + (page << PAGE_BITS);
                    expected.push((io, server.physical_address(b) + (page << PAGE_BITS), a.rights));
                }
            }
            expected.sort();
            let reached = model.io_mappings(device.unwrap());
            ensure_eq!(reached, expected, "client {}'s device reaches its attachments only", c);
            for (id, b) in server.registry().iter() {
                ensure_eq!(b.exposed & (1 << c), 0, "buffer {} exposed to io_space client {}", id, c);
            }
        }
        for m in model.client_mappings(c) {
            ensure!(
                allowed(m.physical_address, m.size_bits, m.rights)
                    || (quota.frame_caps && live(m.physical_address, m.size_bits, m.rights)),
                "client {} maps {:#x} it may not",
                c,
                m.physical_address
            );
        }
    }
    Ok(())
}

/// The system is back to its first state: no frame, page table or CNode
/// left, every reserve block free, and once memsrv collapses the blocks it
/// kept split (lazy merging), exactly the untyped objects, capabilities and
/// free memory `fresh`, a freshly started memsrv with the same configuration,
/// has: the pools' untypeds and the blocks of the metadata reserves.
pub fn pristine<const N: usize>(server: &mut Server<Model, N>, fresh: &Server<Model, N>) -> Result<(), Violation> {
    let (_, frames, tables, cnodes) = server.kernel().live_objects();
    ensure_eq!((frames, tables, cnodes), (0, 0, 0), "no frame, page table or CNode outlives its buffer");
    server.reclaim().map_err(|failure| format!("collapse dormant blocks: {failure:?}"))?;
    ensure!(server.registry().is_empty());
    ensure_eq!(server.quarantine().iter().count(), 0, "nothing left in quarantine");
    for p in 0..server.config().pool_count() {
        ensure_eq!(server.free_bytes(p), server.total_bytes(p), "pool {p}: everything but the reserves is free");
        ensure_eq!(server.free_bytes(p), fresh.free_bytes(p), "pool {p} is as it started");
        ensure_eq!(server.reserved_bytes(p), fresh.reserved_bytes(p));
    }
    ensure!(server.reserves().iter().all(|(_, block)| !block.in_use), "every reserve block is free again");
    ensure_eq!(server.kernel().live_objects(), fresh.kernel().live_objects(), "only the start-up untypeds remain");
    ensure_eq!(server.kernel().used_table_slots(), fresh.kernel().used_table_slots());
    ensure_eq!(server.free_slot_count(), fresh.free_slot_count());
    for c in clients(server) {
        ensure_eq!(server.usage(c), Default::default());
        ensure!(server.kernel().client_reachable_frames(c).is_empty());
        ensure!(server.kernel().client_mappings(c).is_empty());
    }
    Ok(())
}
