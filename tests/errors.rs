//! Every error code a client can provoke, each leaving memsrv's state unchanged.
//!
//! Buffer ids are no oracle. A client with no right to a buffer (neither its
//! owner nor a grantee) gets `UNKNOWN_BUFFER` for every op on its id, whether
//! the buffer is live, was freed or never existed. `STALE_BUFFER` is kept for
//! clients that had a right to the buffer when it was freed (the owner's
//! double free, a grantee's old id); `NOT_OWNER` and `NOT_ATTACHED` only for
//! clients that may know the buffer. `NOT_GRANTED` is never sent any more.
//! A hole (the window run of an attachment the owner revoked) is seen only by
//! its own client's DETACH of that very id, which succeeds.

mod common;

use capbuf_protocol::{AllocFlags, AllocReply, BufferId, Error, Op, Reply, Rights};
use common::*;

/// Send a raw request from the client on `channel` and return the error, checking nothing changed.
fn refused(world: &World, channel: u64, label: u64, words: &[u64], caps: usize) -> Error {
    let before = snapshot(world);
    let outcome = world.borrow_mut().handle(channel, label, words, caps);
    assert_eq!(snapshot(world), before, "a refused request changed state");
    outcome.result.expect_err("expected a refusal")
}

fn ok(world: &World, channel: u64, op: Op, words: &[u64]) -> Reply {
    let outcome = world.borrow_mut().handle(channel, op as u64, words, 0);
    outcome.result.expect("expected success")
}

fn alloc(world: &World, channel: u64, size: u64, pool: u64, flags: u64) -> BufferId {
    match ok(world, channel, Op::Alloc, &[size, 0, pool, flags]) {
        Reply::Alloc(AllocReply { id }) => id,
        other => panic!("{other:?}"),
    }
}

const RO: u64 = Rights::ReadOnly as u64;
const RW: u64 = Rights::ReadWrite as u64;

#[test]
fn malformed_messages() {
    let w = world();
    assert_eq!(refused(&w, 0, 0, &[], 0), Error::UnknownOp);
    assert_eq!(refused(&w, 0, 14, &[1], 0), Error::UnknownOp, "the first label after the ops");
    assert_eq!(refused(&w, 0, Op::Export as u64, &[1], 0), Error::WrongLength);
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[4096, 0, 0], 0), Error::WrongLength);
    assert_eq!(refused(&w, 0, Op::Hello as u64, &[0], 0), Error::WrongLength);
    assert_eq!(refused(&w, 0, Op::Free as u64, &[1], 1), Error::UnexpectedCaps);
    assert_eq!(refused(&w, 9, Op::Hello as u64, &[], 0), Error::UnknownCaller);
}

#[test]
fn allocation_arguments() {
    let w = world();
    let alloc = Op::Alloc as u64;
    assert_eq!(refused(&w, 0, alloc, &[0, 0, 0, 0], 0), Error::ZeroSize);
    assert_eq!(refused(&w, 0, alloc, &[(1 << 20) + 1, 0, 1, 0], 0), Error::TooLarge, "beyond pool 1");
    assert_eq!(refused(&w, 0, alloc, &[u64::MAX, 0, 0, 0], 0), Error::TooLarge);
    assert_eq!(refused(&w, 0, alloc, &[4096, 31, 0, 0], 0), Error::InvalidAlignment);
    assert_eq!(refused(&w, 0, alloc, &[4096, 21, 1, 0], 0), Error::InvalidAlignment, "beyond pool 1");
    assert_eq!(refused(&w, 0, alloc, &[4096, u64::MAX, 0, 0], 0), Error::InvalidAlignment);
    assert_eq!(refused(&w, 0, alloc, &[4096, 0, 3, 0], 0), Error::InvalidPool);
    assert_eq!(refused(&w, 0, alloc, &[4096, 0, u64::MAX, 0], 0), Error::InvalidPool);
    assert_eq!(refused(&w, 0, alloc, &[4096, 0, 0, 8], 0), Error::InvalidFlags);
    assert_eq!(refused(&w, 0, Op::PoolInfo as u64, &[7], 0), Error::InvalidPool);
}

/// A register that holds no value of its field's type (rights that are
/// neither read-only nor read-write, unknown flag bits) is refused when the
/// request is decoded, before memsrv looks at anything the request names: the
/// same answer whatever the id, pool or grantee, so it tells nobody anything.
#[test]
fn malformed_fields_are_refused_before_what_they_name_is_looked_at() {
    let w = world();
    let id = alloc(&w, 0, 4096, 0, 0).raw();
    for (client, id) in [(0, id), (2, id), (0, BufferId::new(99, 1).raw())] {
        assert_eq!(refused(&w, client, Op::Attach as u64, &[id, 2], 0), Error::InvalidRights);
        assert_eq!(refused(&w, client, Op::Grant as u64, &[id, 11, 0], 0), Error::InvalidRights);
        assert_eq!(refused(&w, client, Op::Grant as u64, &[id, 77, 7], 0), Error::InvalidRights);
    }
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[0, 40, 9, 8], 0), Error::InvalidFlags, "not INVALID_POOL");
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[0, 40, 9, 0], 0), Error::InvalidPool);
    ok(&w, 0, Op::Free, &[id]);
    assert_pristine(&w);
}

#[test]
fn ids_rights_and_ownership() {
    let w = world();
    let id = alloc(&w, 0, 8192, 0, 0);
    let raw = id.raw();
    let attach = Op::Attach as u64;
    assert_eq!(refused(&w, 0, attach, &[raw, 2], 0), Error::InvalidRights);
    assert_eq!(refused(&w, 0, attach, &[raw, 0], 0), Error::InvalidRights);
    assert_eq!(refused(&w, 0, attach, &[BufferId::new(99, 1).raw(), RW], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 0, attach, &[BufferId::new(id.index(), 2).raw(), RW], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 0, attach, &[BufferId::new(100_000, 1).raw(), RW], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 1, attach, &[raw, RO], 0), Error::UnknownBuffer, "no oracle: see no_id_oracle");
    assert_eq!(refused(&w, 1, Op::Info as u64, &[raw], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 1, Op::Free as u64, &[raw], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 1, Op::Grant as u64, &[raw, 12, RO], 0), Error::UnknownBuffer);
    assert_eq!(refused(&w, 0, Op::Grant as u64, &[raw, 10, RO], 0), Error::InvalidGrantee, "self");
    assert_eq!(refused(&w, 0, Op::Grant as u64, &[raw, 77, RO], 0), Error::InvalidGrantee);
    assert_eq!(refused(&w, 0, Op::Grant as u64, &[raw, 11, 5], 0), Error::InvalidRights);
    assert_eq!(refused(&w, 0, Op::Ungrant as u64, &[raw, 11], 0), Error::NotGrantee);
    ok(&w, 0, Op::Grant, &[raw, 11, RO]);
    assert_eq!(refused(&w, 1, Op::Free as u64, &[raw], 0), Error::NotOwner, "a grantee knows the buffer");
    assert_eq!(refused(&w, 1, Op::Grant as u64, &[raw, 12, RO], 0), Error::NotOwner);
    assert_eq!(refused(&w, 1, Op::Ungrant as u64, &[raw, 12], 0), Error::NotOwner);
    assert_eq!(refused(&w, 1, attach, &[raw, RW], 0), Error::RightsEscalation);
    assert_eq!(refused(&w, 1, Op::Detach as u64, &[raw], 0), Error::NotAttached);
    assert!(w.borrow_mut().handle(1, attach, &[raw, RO], 0).result.is_ok());
    assert_eq!(refused(&w, 1, attach, &[raw, RO], 0), Error::AlreadyAttached);
    let read_only = alloc(&w, 0, 4096, 0, AllocFlags::READ_ONLY.bits());
    assert_eq!(refused(&w, 0, Op::Grant as u64, &[read_only.raw(), 11, RW], 0), Error::RightsEscalation);
    assert_eq!(refused(&w, 0, attach, &[read_only.raw(), RW], 0), Error::RightsEscalation);
    ok(&w, 0, Op::Free, &[raw]);
    assert_eq!(refused(&w, 0, Op::Free as u64, &[raw], 0), Error::StaleBuffer, "double free");
    assert_eq!(refused(&w, 1, attach, &[raw, RO], 0), Error::StaleBuffer);
    // The grantee was attached: the FREE left a hole in its window, which its
    // DETACH gives back, once.
    ok(&w, 1, Op::Detach, &[raw]);
    assert_eq!(refused(&w, 1, Op::Detach as u64, &[raw], 0), Error::StaleBuffer);
    ok(&w, 0, Op::Free, &[read_only.raw()]);
    assert_pristine(&w);
}

#[test]
fn no_id_oracle() {
    let w = world();
    let (owner, grantee, outsider) = (0, 1, 2);
    let live = alloc(&w, owner, 4096, 0, 0);
    ok(&w, owner, Op::Grant, &[live.raw(), 11, RO]);
    let freed = alloc(&w, owner, 4096, 0, 0);
    ok(&w, owner, Op::Grant, &[freed.raw(), 11, RW]);
    assert!(w.borrow_mut().handle(grantee, Op::Attach as u64, &[freed.raw(), RO], 0).result.is_ok());
    ok(&w, owner, Op::Free, &[freed.raw()]);
    let withdrawn = alloc(&w, owner, 4096, 0, 0);
    ok(&w, owner, Op::Grant, &[withdrawn.raw(), 11, RO]);
    ok(&w, owner, Op::Ungrant, &[withdrawn.raw(), 11]);
    let never = BufferId::new(99, 1);
    let unissued_generation = BufferId::new(live.index(), live.generation() + 1);

    let ops = |id: BufferId| {
        let raw = id.raw();
        [
            (Op::Attach, vec![raw, RO]),
            (Op::Info, vec![raw]),
            (Op::Detach, vec![raw]),
            (Op::Free, vec![raw]),
            (Op::Grant, vec![raw, 12, RO]),
            (Op::Ungrant, vec![raw, 11]),
        ]
    };
    // The outsider cannot tell a live buffer from a freed or never-issued id.
    for id in [live, freed, withdrawn, never, unissued_generation] {
        for (op, words) in ops(id) {
            assert_eq!(refused(&w, outsider, op as u64, &words, 0), Error::UnknownBuffer, "{op:?} on {id}");
        }
    }
    // A grantee whose grant was withdrawn is an outsider again, before and after the free.
    for (op, words) in ops(withdrawn) {
        assert_eq!(refused(&w, grantee, op as u64, &words, 0), Error::UnknownBuffer, "{op:?} on {withdrawn}");
    }
    ok(&w, owner, Op::Free, &[withdrawn.raw()]);
    for (op, words) in ops(withdrawn) {
        assert_eq!(refused(&w, grantee, op as u64, &words, 0), Error::UnknownBuffer, "{op:?} on {withdrawn}");
        assert_eq!(refused(&w, owner, op as u64, &words, 0), Error::StaleBuffer, "{op:?} on {withdrawn}");
    }
    // Those who had a right to the freed buffer are told it is stale. The
    // grantee was attached to it, so the FREE left a hole in its window: only
    // its own DETACH of that id finds it (and gives it back); every other op
    // answers as it would without one.
    assert!(w.borrow().windows().hole(grantee as usize, freed).is_some());
    for (op, words) in ops(freed) {
        assert_eq!(refused(&w, owner, op as u64, &words, 0), Error::StaleBuffer, "{op:?}: the owner's double free");
        if op != Op::Detach {
            assert_eq!(refused(&w, grantee, op as u64, &words, 0), Error::StaleBuffer, "{op:?}: a grantee's old id");
        }
    }
    ok(&w, grantee, Op::Detach, &[freed.raw()]);
    for (op, words) in ops(freed) {
        assert_eq!(refused(&w, grantee, op as u64, &words, 0), Error::StaleBuffer, "{op:?}: a grantee's old id");
    }
    // Ids that never existed are unknown to everyone.
    for id in [never, unissued_generation] {
        for client in [owner, grantee] {
            for (op, words) in ops(id) {
                assert_eq!(refused(&w, client, op as u64, &words, 0), Error::UnknownBuffer, "{op:?} on {id}");
            }
        }
    }
    // A grantee of the live buffer knows it exists: owner-only ops say so.
    assert_eq!(refused(&w, grantee, Op::Free as u64, &[live.raw()], 0), Error::NotOwner);
    assert_eq!(refused(&w, grantee, Op::Detach as u64, &[live.raw()], 0), Error::NotAttached);
    ok(&w, owner, Op::Free, &[live.raw()]);
    assert_pristine(&w);
}

#[test]
fn quotas() {
    let w = world_with(config(64 * 1024, 2, 1));
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[64 * 1024 + 1, 0, 0, 0], 0), Error::QuotaBytes);
    let a = alloc(&w, 0, 32 * 1024, 0, 0);
    let b = alloc(&w, 0, 4096, 0, 0);
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[4096, 0, 0, 0], 0), Error::QuotaBuffers);
    assert!(w.borrow_mut().handle(0, Op::Attach as u64, &[a.raw(), RW], 0).result.is_ok());
    assert_eq!(refused(&w, 0, Op::Attach as u64, &[b.raw(), RW], 0), Error::QuotaAttachments);
    ok(&w, 0, Op::Free, &[b.raw()]);
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[32 * 1024 + 1, 0, 0, 0], 0), Error::QuotaBytes);
    alloc(&w, 0, 32 * 1024, 0, 0);
    // Other clients have quotas of their own.
    alloc(&w, 1, 64 * 1024, 0, 0);
}

#[test]
fn out_of_memory_and_table_limits() {
    // Client 0 may own three buffers, client 1 a whole buffer table's worth.
    let mut quotas = at_scale(config(1 << 30, 0, 0));
    quotas.clients[0].as_mut().unwrap().quota_buffers = 3;
    quotas.clients[1].as_mut().unwrap().quota_buffers = capbuf_server::MAX_BUFFERS as u64;
    let w = world_with(quotas);
    // Master CNodes come from the owners' reserves: buffers fill a pool to its last page.
    alloc(&w, 0, 512 * 1024, 1, 0);
    alloc(&w, 0, 512 * 1024, 1, 0);
    assert_eq!(w.borrow().free_bytes(1), Some(0));
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[4096, 0, 1, 0], 0), Error::OutOfMemory);
    let mut ids = Vec::new();
    while let Ok(Reply::Alloc(AllocReply { id })) =
        w.borrow_mut().handle(1, Op::Alloc as u64, &[4096, 0, 0, 0], 0).result
    {
        ids.push(id);
    }
    assert_eq!(ids.len(), capbuf_server::MAX_BUFFERS - 2);
    assert_eq!(refused(&w, 1, Op::Alloc as u64, &[4096, 0, 0, 0], 0), Error::TooManyBuffers);

    // A table of 128 slots: the reserves' untypeds leave room for a couple
    // of buffers before memsrv runs out of slots.
    let mut small = config(1 << 30, 0, 0);
    small.clients[0].as_mut().unwrap().quota_buffers = 20;
    small.table_bits = 7;
    let w = world_with(small);
    let mut error = None;
    for _ in 0..20 {
        if let Err(e) = w.borrow_mut().handle(0, Op::Alloc as u64, &[4096, 0, 0, 0], 0).result {
            error = Some(e);
            break;
        }
    }
    assert_eq!(error, Some(Error::OutOfSlots));
    assert_eq!(refused(&w, 0, Op::Alloc as u64, &[4096, 0, 0, 0], 0), Error::OutOfSlots);
}
