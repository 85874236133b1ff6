//! The kernel floor: each kernel operation capbuf's requests are made of,
//! measured the same way as the requests, in the same run, on the same
//! kernel. The host (`capbuf-bench qemu-table`) adds up, for each request,
//! the floor of the invocations memsrv makes for it.
//!
//! capbuf-compose gives this protection domain an untyped object of its own
//! (`<untyped>` in bench/system.xml, at [`UNTYPED_CPTR`]) and its root CNode
//! (at [`CLIENT_ROOT_CPTR`]); objects are retyped into root CNode slots
//! 1..64, invoked by capability pointer `slot << 58`.

use capbuf_protocol::{CLIENT_ROOT_CPTR, ROOT_CNODE_BITS, ROOT_SLOT_SHIFT, UNTYPED_CPTR};
use sel4::{AbsoluteCPtr, CNodeCapData, CapRights, ObjectBlueprint};
use sel4_microkit::{Channel, MessageInfo};

use crate::arch::{self, LARGE_PAGE, PAGE_TABLE, SMALL_PAGE};
use crate::{instructions, Output, ROUNDS};

/// Rounds for the retypes that clean or zero megabytes: the figures repeat
/// exactly under `-icount`, so fewer rounds lose nothing.
const LARGE_ROUNDS: u64 = 4;

/// Virtual addresses for the floor's own mappings, below capbuf's client
/// window and above the program, in the first GiB (whose upper-level tables
/// every Microkit protection domain has).
const PAGE_TABLE_VADDR: usize = 0x1800_0000;
const SPARE_TABLE_VADDR: usize = 0x1820_0000;
const LARGE_VADDR: usize = 0x1840_0000;
const ATTACHMENT_TABLE_VADDR: usize = 0x1860_0000;

/// Root CNode slots: objects from 1, scratch copies high.
const FIRST: u64 = 1;
const COPIES: u64 = 10;
const COPY: u64 = 60;
const MOVED: u64 = 61;
const RECEIVED: u64 = 62;
const KEEPER: u64 = 63;

fn root() -> sel4::cap::CNode {
    sel4::cap::CNode::from_bits(CLIENT_ROOT_CPTR)
}

/// Root CNode slot `slot` as a CNode-invocation path.
fn slot(slot: u64) -> AbsoluteCPtr {
    root().absolute_cptr_from_bits_with_depth(slot, ROOT_CNODE_BITS as usize)
}

/// The capability pointer that invokes what root CNode slot `slot` holds.
fn cptr(slot: u64) -> u64 {
    slot << ROOT_SLOT_SHIFT
}

fn retype(blueprint: ObjectBlueprint, first: u64, count: usize) {
    sel4::cap::Untyped::from_bits(UNTYPED_CPTR)
        .untyped_retype(&blueprint, &root().absolute_cptr_for_self(), first as usize, count)
        .expect("retype");
}

/// `seL4_CNode_Revoke` on the untyped: every object retyped from it dies.
fn revoke_untyped() {
    root().absolute_cptr_from_bits_with_depth(UNTYPED_CPTR, 64).revoke().expect("revoke");
}

/// A retype of `count` objects into an untyped that has a child (so no
/// reset), or into a childless one whose old watermark covers exactly what
/// the retype makes (so the reset zeroes that much first).
fn retype_cost(blueprint: ObjectBlueprint, count: usize, reset: bool, rounds: u64) -> u64 {
    instructions(
        rounds,
        || {
            revoke_untyped();
            if reset {
                retype(blueprint, FIRST, count);
                revoke_untyped();
            } else {
                retype(SMALL_PAGE, KEEPER, 1);
            }
        },
        || retype(blueprint, FIRST, count),
        || (),
    )
}

/// Measure and print every floor operation.
pub fn run(out: &mut Output, echo: Channel) {
    let null = instructions(ROUNDS, || (), || drop(echo.pp_call(MessageInfo::new(0, 0))), || ());
    out.line("floor_null_ppc", null, "instructions");
    // The echo protection domain answers label 1 with a capability (its own
    // VSpace's): the reply leaves the fastpath, as an EXPORT reply does.
    let receive = slot(RECEIVED);
    let with_cap = instructions(
        ROUNDS,
        || sel4::with_ipc_buffer_mut(|ipc| ipc.set_recv_slot(&receive)),
        || {
            let reply = echo.pp_call(MessageInfo::new(1, 0));
            assert_eq!(reply.inner().extra_caps(), 1, "echo sent a capability");
        },
        || receive.delete().expect("delete the received capability"),
    );
    out.line("floor_ppc_cap", with_cap, "instructions");
    // Replies of more message registers than the fastpath carries (4 on
    // AArch64) take the kernel's slowpath, as capbuf's longer replies do.
    for words in [4u64, 5, 8] {
        let call = || {
            sel4::with_ipc_buffer_mut(|ipc| ipc.msg_regs_mut()[0] = words);
            let reply = echo.pp_call(MessageInfo::new(2, 1));
            assert_eq!(reply.count() as u64, words, "echo replied with that many words");
        };
        out.named_number("floor_ppc_reply_words_", words, instructions(ROUNDS, || (), call, || ()));
    }

    for (name, blueprint, count, rounds) in [
        ("4k", SMALL_PAGE, 1, ROUNDS),
        ("64k", SMALL_PAGE, 16, ROUNDS),
        ("2m", LARGE_PAGE, 1, LARGE_ROUNDS),
        ("16m", LARGE_PAGE, 8, LARGE_ROUNDS),
    ] {
        out.named_line("floor_retype_", name, "", retype_cost(blueprint, count, false, rounds));
        out.named_line("floor_retype_", name, "_reset", retype_cost(blueprint, count, true, rounds));
    }
    out.line("floor_retype_page_table", retype_cost(PAGE_TABLE, 1, false, ROUNDS), "instructions");
    let cnode = |radix| ObjectBlueprint::CNode { size_bits: radix };
    out.line("floor_retype_cnode_4", retype_cost(cnode(4), 1, false, ROUNDS), "instructions");
    out.line("floor_retype_cnode_10", retype_cost(cnode(10), 1, false, ROUNDS), "instructions");
    let untyped = ObjectBlueprint::Untyped { size_bits: 12 };
    out.line("floor_retype_untyped", retype_cost(untyped, 1, false, ROUNDS), "instructions");

    for children in [0usize, 1, 16, 48] {
        let revoke = instructions(
            ROUNDS,
            || {
                revoke_untyped();
                if children > 0 {
                    retype(SMALL_PAGE, FIRST, children);
                }
            },
            revoke_untyped,
            || (),
        );
        out.named_number("floor_revoke_", children as u64, revoke);
    }

    // Long-lived objects for the CNode and mapping operations: a 4 KiB frame,
    // a 2 MiB frame, a page table mapped at PAGE_TABLE_VADDR, a CNode.
    revoke_untyped();
    let (small, large, table, node) = (FIRST, FIRST + 1, FIRST + 2, FIRST + 3);
    retype(SMALL_PAGE, small, 1);
    retype(LARGE_PAGE, large, 1);
    retype(PAGE_TABLE, table, 1);
    retype(cnode(4), node, 1);
    arch::map_page_table(cptr(table), PAGE_TABLE_VADDR).expect("map the page table");

    let copy = slot(COPY);
    let read_only = CapRights::read_only();
    let delete_copy = || copy.delete().expect("delete");
    let value = instructions(ROUNDS, || (), || copy.copy(&slot(small), read_only.clone()).expect("copy"), delete_copy);
    out.line("floor_copy", value, "instructions");
    let value =
        instructions(ROUNDS, || (), || copy.mint(&slot(small), read_only.clone(), 0).expect("mint"), delete_copy);
    out.line("floor_mint", value, "instructions");
    let make_copy = || copy.copy(&slot(small), read_only.clone()).expect("copy");
    out.line("floor_delete", instructions(ROUNDS, make_copy, delete_copy, || ()), "instructions");
    let guard = CNodeCapData::new(0, 8).into_word();
    let value = instructions(
        ROUNDS,
        || (),
        || slot(MOVED).mutate(&slot(node), guard).expect("mutate"),
        || slot(node).mutate(&slot(MOVED), CNodeCapData::new(0, 0).into_word()).expect("mutate back"),
    );
    out.line("floor_mutate", value, "instructions");

    for (name, frame, vaddr) in [("4k", small, PAGE_TABLE_VADDR), ("2m", large, LARGE_VADDR)] {
        let map = || arch::map_frame(cptr(frame), vaddr).expect("map");
        let unmap = || arch::unmap_frame(cptr(frame)).expect("unmap");
        out.named_line("floor_map_", name, "", instructions(ROUNDS, || (), map, unmap));
        out.named_line("floor_unmap_", name, "", instructions(ROUNDS, map, unmap, || ()));
    }
    // A revoke that unmaps: the frame's original capability revoked with
    // `copies` mapped copies (as DETACH and FREE take an attachment's).
    for copies in [1u64, 16, 48] {
        let revoke = instructions(
            ROUNDS,
            || {
                for i in 0..copies {
                    slot(COPIES + i).copy(&slot(small), CapRights::read_write()).expect("copy");
                    arch::map_frame(cptr(COPIES + i), PAGE_TABLE_VADDR + (i as usize) * 4096).expect("map a copy");
                }
            },
            || slot(small).revoke().expect("revoke"),
            || (),
        );
        out.named_number("floor_revoke_mapped_", copies, revoke);
    }
    // The shape of memsrv's attachment: a block (an untyped) whose child is a
    // CNode just large enough for `copies` mapped copies of frames made
    // elsewhere; DETACH revokes the block, and the kernel destroys the CNode
    // (every slot) and unmaps each copy.
    let (block, node_slot, scratch) = (FIRST + 5, FIRST + 6, FIRST + 7);
    retype(ObjectBlueprint::Untyped { size_bits: 16 }, block, 1);
    let block_untyped = sel4::cap::Untyped::from_bits(cptr(block));
    let inner = |i: u64| (node_slot << ROOT_SLOT_SHIFT) | i;
    // A CNode of 2^radix slots from the block, guarded so that its slots
    // are invoked as `inner(i)`.
    let guarded_cnode = |radix: usize| {
        block_untyped
            .untyped_retype(&cnode(radix), &root().absolute_cptr_for_self(), scratch as usize, 1)
            .expect("retype a CNode");
        let guard = CNodeCapData::new(0, ROOT_SLOT_SHIFT as usize - radix).into_word();
        slot(node_slot).mutate(&slot(scratch), guard).expect("guard the CNode");
    };
    // `copies` copies of the small frame in its first slots, mapped from `vaddr` on.
    let mapped_copies = |copies: u64, vaddr: usize| {
        for i in 0..copies {
            let path = root().absolute_cptr_from_bits_with_depth(inner(i), 64);
            path.copy(&slot(small), CapRights::read_write()).expect("copy into the CNode");
            arch::map_frame(inner(i), vaddr + (i as usize) * 4096).expect("map a copy");
        }
    };
    for copies in [1u64, 16, 48] {
        let radix = (copies.max(2).next_power_of_two().trailing_zeros()) as usize;
        let revoke = instructions(
            ROUNDS,
            || {
                guarded_cnode(radix);
                mapped_copies(copies, PAGE_TABLE_VADDR);
            },
            || slot(block).revoke().expect("revoke the block"),
            || (),
        );
        out.named_number("floor_revoke_cnode_mapped_", copies, revoke);
    }
    // memsrv's attachment of 4 KiB frames: the block's CNode (just large
    // enough) holds `copies` frame copies and, after them, the page table
    // they are mapped through, itself mapped; the kernel destroys the slots
    // from the last, so the table goes first.
    let table_tmp = FIRST + 8;
    for copies in [1u64, 16, 48] {
        let radix = ((copies + 1).next_power_of_two().trailing_zeros()) as usize;
        let revoke = instructions(
            ROUNDS,
            || {
                guarded_cnode(radix);
                block_untyped
                    .untyped_retype(&PAGE_TABLE, &root().absolute_cptr_for_self(), table_tmp as usize, 1)
                    .expect("retype a page table");
                let table = root().absolute_cptr_from_bits_with_depth(inner(copies), 64);
                table.move_(&slot(table_tmp)).expect("move the page table into the CNode");
                arch::map_page_table(inner(copies), ATTACHMENT_TABLE_VADDR).expect("map the page table");
                mapped_copies(copies, ATTACHMENT_TABLE_VADDR);
            },
            || slot(block).revoke().expect("revoke the block"),
            || (),
        );
        out.named_number("floor_revoke_cnode_table_", copies, revoke);
    }
    // A block whose child is an empty CNode of 2^radix slots (as FREE's last
    // revoke: the master CNode, its frames deleted by then). The kernel
    // visits every slot of a CNode it destroys, empty or not.
    for radix in [1usize, 4, 10] {
        let revoke = instructions(
            ROUNDS,
            || {
                block_untyped
                    .untyped_retype(&cnode(radix), &root().absolute_cptr_for_self(), scratch as usize, 1)
                    .expect("retype a CNode");
            },
            || slot(block).revoke().expect("revoke the block"),
            || (),
        );
        out.named_number("floor_revoke_cnode_empty_", radix as u64, revoke);
    }
    let spare = FIRST + 4;
    let value = instructions(
        ROUNDS,
        || retype(PAGE_TABLE, spare, 1),
        || arch::map_page_table(cptr(spare), SPARE_TABLE_VADDR).expect("map a page table"),
        || slot(spare).delete().expect("delete the page table"),
    );
    out.line("floor_page_table_map", value, "instructions");
    revoke_untyped();
}
