//! The ABI table: every op, its number (the request's message label), its C
//! name, and the fields of its request and of its successful reply, each
//! with its wire type ([`crate::Word`]) and C name, in message-register
//! order. This is the one definition: [`Op`] and its field lists,
//! [`Request`] and [`Reply`] with their encodings, memsrv's decoding, the
//! client libraries' marshalling and the C header (`build.rs`) all come from
//! it. An op is one entry here; a field is one line.
//!
//! Every message fits seL4's fastpath: at most [`crate::MAX_MESSAGE_WORDS`]
//! (4, `seL4_FastMessageRegisters`) registers each way; a PPC whose request
//! or reply is longer takes the kernel's slow path, about twice the cost of
//! a null PPC. Replies with more fields than that pack small ones into one
//! register (`NAME { field (FIELD): Type [low..high], ... }`, see
//! `wire_struct!`), at fixed bit ranges whose widths the `const` assertions
//! at the end of this file pin against the protocol's limits; the reply
//! structs hold every field whole, as before. A packed register with a bit
//! set that no field uses, or a field holding no value of its type, makes
//! the reply malformed.
//!
//! An error reply's label is the [`crate::Error`] code; a KERNEL error reply
//! carries the failed invocation and the seL4 error ([`crate::KernelFailure`]),
//! any other error reply no registers.

use crate::{Align, AllocFlags, BufferId, ClientId, PoolId, Rights};
use crate::{LARGE_PAGE_BITS, MAX_BUFFERS, MAX_CLIENTS, MAX_POOLS, POOL_SIZE_BITS};

wire_ops! {
    /// Protocol version, the caller's client id and its quotas. Clients call it first.
    Hello = 1, HELLO {
        request {}
        /// Reply to [`Op::Hello`].
        reply HelloReply {
            /// memsrv's [`crate::PROTOCOL_VERSION`], alone in register 0 in
            /// every version, so that a client can read it whatever the rest.
            version (VERSION): u64,
            /// The caller's client id, as configured in `system.xml`.
            client_id (CLIENT_ID): ClientId,
            /// Bytes of buffers the caller may own at once.
            quota_bytes (QUOTA_BYTES): u64,
            /// The pool count and the caller's count quotas.
            COUNTS {
                /// Number of pools (at most [`crate::MAX_POOLS`]).
                pools (POOLS): u64 [0..8],
                /// Buffers the caller may own at once. A quota of 2^24 or
                /// more is sent as 2^24 - 1: more than any memsrv tracks
                /// ([`crate::MAX_BUFFERS`]).
                quota_buffers (QUOTA_BUFFERS): u64 [8..32],
                /// Attachments the caller may hold at once (the same
                /// ceiling as `quota_buffers`; memsrv holds one client to
                /// [`crate::MAX_BUFFERS`] attachments and holes whatever its quota).
                quota_attachments (QUOTA_ATTACHMENTS): u64 [32..56],
            },
        }
    }

    /// Allocate a zeroed, physically contiguous buffer owned by the caller.
    Alloc = 2, ALLOC {
        request {
            /// Bytes; rounded up to whole pages.
            size (SIZE): u64,
            /// Alignment of the first byte.
            align (ALIGN_BITS): Align,
            /// The pool to take it from.
            pool (POOL): PoolId,
            /// Fixed for the buffer's life.
            flags (FLAGS): AllocFlags,
        }
        /// Reply to [`Op::Alloc`].
        reply AllocReply {
            /// The new buffer, owned by the caller, not attached yet.
            id (ID): BufferId,
        }
    }

    /// Attach to a buffer the caller owns or was granted: memsrv maps it into the caller's window.
    Attach = 3, ATTACH {
        request {
            /// The buffer.
            id (ID): BufferId,
            /// Rights of the mapping: no more than the caller holds.
            rights (RIGHTS): Rights,
        }
        /// Reply to [`Op::Attach`]. memsrv has mapped the buffer into the
        /// caller's VSpace, contiguously from `vaddr` (inside
        /// [`crate::CLIENT_WINDOW`], 2 MiB aligned), with the attachment's
        /// rights and the buffer's cacheability. The mapping is memsrv's: the
        /// caller holds no capability to it, and DETACH, UNGRANT, a lowered
        /// grant or FREE remove it.
        reply AttachReply {
            /// Buffer size in bytes, a multiple of the page size.
            size (SIZE): u64,
            /// Virtual address of the first byte in the caller's VSpace.
            vaddr (VADDR): u64,
            /// The mapping's page size, rights and cacheability.
            ATTRIBUTES {
                /// Size bits of the largest page the mapping uses (12 or 21).
                page_bits (PAGE_BITS): u64 [0..8],
                /// Rights of the mapping.
                rights (RIGHTS): Rights [8..16],
                /// The buffer's allocation flags ([`AllocFlags::UNCACHED`] buffers are mapped uncached).
                flags (FLAGS): AllocFlags [16..24],
            },
        }
    }

    /// Owner lets another client attach, with rights no larger than the buffer allows.
    Grant = 4, GRANT {
        request {
            /// The buffer.
            id (ID): BufferId,
            /// The client that may attach.
            grantee (GRANTEE): ClientId,
            /// Most rights the grantee may attach with.
            rights (RIGHTS): Rights,
        }
        /// Reply to [`Op::Grant`]: no registers.
        reply GrantReply {}
    }

    /// Size, physical address (if allowed), page size, rights and reference count.
    Info = 5, INFO {
        request {
            /// The buffer.
            id (ID): BufferId,
        }
        /// Reply to [`Op::Info`].
        reply InfoReply {
            /// Buffer size in bytes.
            size (SIZE): u64,
            /// Physical address of the first byte for a `dma` client, or
            /// [`crate::PADDR_HIDDEN`]; for an `io_space` client the I/O
            /// address its device uses, while it has the buffer attached.
            physical_address (PADDR): u64,
            /// The small fields, at the same bits as ATTACH's `ATTRIBUTES`
            /// where they are the same fields.
            ATTRIBUTES {
                /// Size bits of the buffer's largest page (12 or 21).
                page_bits (PAGE_BITS): u64 [0..8],
                /// Rights the caller may attach with.
                rights (RIGHTS): Rights [8..16],
                /// Allocation flags.
                flags (FLAGS): AllocFlags [16..24],
                /// Pool the buffer lives in.
                pool (POOL): PoolId [24..32],
                /// Attachments currently held, all clients together (the
                /// reference count: at most one per client, and exports).
                attachments (ATTACHMENTS): u64 [32..64],
            },
            /// Client id of the owner (any `u64` `system.xml` gives it).
            owner (OWNER): ClientId,
        }
    }

    /// Drop the caller's attachment; its mapping disappears.
    Detach = 6, DETACH {
        request {
            /// The buffer.
            id (ID): BufferId,
        }
        /// Reply to [`Op::Detach`]: no registers.
        reply DetachReply {}
    }

    /// Owner frees the buffer: every attachment and capability derived from it is revoked.
    Free = 7, FREE {
        request {
            /// The buffer.
            id (ID): BufferId,
        }
        /// Reply to [`Op::Free`]: no registers.
        reply FreeReply {}
    }

    /// Owner withdraws a grant; the grantee's attachment, if any, is revoked.
    Ungrant = 8, UNGRANT {
        request {
            /// The buffer.
            id (ID): BufferId,
            /// The client whose grant goes.
            grantee (GRANTEE): ClientId,
        }
        /// Reply to [`Op::Ungrant`]: no registers.
        reply UngrantReply {}
    }

    /// Total, free and largest free block of one pool, and the bytes lost to kernel failures.
    PoolInfo = 9, POOL_INFO {
        request {
            /// The pool.
            pool (POOL): PoolId,
        }
        /// Reply to [`Op::PoolInfo`]. Every count is a whole number of
        /// pages; the struct holds bytes, the registers 32-bit page counts
        /// (a pool has at most 2^28 pages, [`crate::POOL_SIZE_BITS`]).
        reply PoolInfoReply {
            /// The pool's usable and free space.
            TOTAL_FREE {
                /// Bytes buffers can use: the pool's size less the metadata reserves carved from it.
                total (TOTAL): u64 [0..32 pages],
                /// Bytes in free blocks (buffers and memsrv's bookkeeping objects excluded).
                free (FREE): u64 [32..64 pages],
            },
            /// The largest buffer the pool can give now, and what it lost.
            LARGEST_LOST {
                /// The longest run of free pages, in bytes: the largest buffer an
                /// ALLOC at page alignment gets now.
                largest_free (LARGEST_FREE): u64 [0..32 pages],
                /// Bytes memsrv can no longer use because a kernel invocation failed and
                /// could not be undone (0 unless the kernel misbehaved). They are counted
                /// in neither the total nor the free bytes.
                lost (LOST): u64 [32..64 pages],
            },
            /// What the pool holds back for devices.
            QUARANTINE {
                /// Bytes of freed buffers whose physical address a `dma` client
                /// was told, held back from reuse until every such client QUIESCEs
                /// ([`Op::Quiesce`]). Counted in the total, not in the free bytes.
                quarantined (QUARANTINED): u64 [0..32 pages],
            },
        }
    }

    /// The caller's device no longer uses the buffer: for a buffer whose
    /// physical address the caller (a `dma` client) was told, live or freed.
    /// A freed buffer's memory goes back to the pool when every such client
    /// has said so.
    Quiesce = 10, QUIESCE {
        request {
            /// The buffer (for a freed one, the id it had).
            id (ID): BufferId,
        }
        /// Reply to [`Op::Quiesce`]: no registers.
        reply QuiesceReply {}
    }

    /// Only for a client `system.xml` gives `frame_caps="true"`: send the
    /// caller a CNode holding copies of the buffer's frame capabilities with
    /// `rights`, large frames first, then small. Its guard fills a capability
    /// pointer below a root CNode slot: received into root slot `k`, frame
    /// `i` is `(k << 58) | i`. It counts as one of the caller's attachments.
    /// The weaker guarantee: a frame capability the caller copies out of it
    /// survives UNEXPORT, UNGRANT and a lowered grant, and dies only at FREE.
    Export = 11, EXPORT {
        request {
            /// The buffer.
            id (ID): BufferId,
            /// Rights of the frame copies: no more than the caller may attach with.
            rights (RIGHTS): Rights,
        }
        /// Reply to [`Op::Export`], with one capability: the CNode.
        reply ExportReply {
            /// 2 MiB frames, in CNode slots `0..large`.
            large (LARGE): u64,
            /// 4 KiB frames, in CNode slots `large..large + small`, in address
            /// order: for a buffer that does not start on a 2 MiB boundary,
            /// those before its first 2 MiB frame come first.
            small (SMALL): u64,
            /// Radix of the CNode (its guard is `58 - radix` bits of 0).
            radix (RADIX): u64,
        }
    }

    /// Give back the caller's export of a buffer: memsrv revokes the CNode
    /// (frame copies the caller took out of it survive until FREE).
    Unexport = 12, UNEXPORT {
        request {
            /// The buffer.
            id (ID): BufferId,
        }
        /// Reply to [`Op::Unexport`]: no registers.
        reply UnexportReply {}
    }

    /// Only for the client `system.xml` names as the target's supervisor
    /// (`<client pd="x" supervisor="y">`): revoke everything client `client`
    /// holds, as if it had never run. Its buffers are freed as FREE frees
    /// them (other clients' attachments become holes; the quarantine holds
    /// pages exposed to *other* `dma` clients), its grants on other clients'
    /// buffers are withdrawn (its attachments and exports of them revoked),
    /// every attachment, export and hole it has is dropped and its window
    /// emptied, its exposure to buffers ends (the reclaim is its QUIESCE:
    /// stop its device first), its usage is reset to zero and its pending
    /// wait ([`AllocFlags::WAIT`]) cancelled. A KERNEL refusal midway keeps
    /// what was already reclaimed; calling RECLAIM again finishes the job.
    Reclaim = 13, RECLAIM {
        request {
            /// The client to reclaim (its id in `system.xml`).
            client (CLIENT): ClientId,
        }
        /// Reply to [`Op::Reclaim`]: counts only, never contents or addresses.
        reply ReclaimReply {
            /// Buffers of the client freed.
            buffers (BUFFERS): u64,
            /// Bytes returned to the pools (or to quarantine, for buffers
            /// exposed to another `dma` client): the client's charged bytes.
            bytes (BYTES): u64,
            /// Attachments, exports and holes of the client removed.
            attachments (ATTACHMENTS): u64,
        }
    }
}

impl Op {
    /// Number of message registers the request carries.
    pub const fn request_words(self) -> usize {
        self.request_fields().len()
    }

    /// Number of message registers a successful reply carries.
    pub const fn reply_words(self) -> usize {
        self.reply_fields().len()
    }

    /// Number of capabilities a successful reply carries: the exported
    /// CNode for EXPORT, none otherwise (memsrv maps attachments into the
    /// caller's VSpace itself).
    pub const fn reply_caps(self) -> usize {
        match self {
            Op::Export => 1,
            _ => 0,
        }
    }
}

impl TryFrom<u64> for Op {
    type Error = u64;

    fn try_from(label: u64) -> Result<Self, u64> {
        Op::ALL.into_iter().find(|op| *op as u64 == label).ok_or(label)
    }
}

/// Largest value packed field `part` of register `register` of `op`'s reply can carry.
const fn largest(op: Op, register: usize, part: usize) -> u64 {
    op.reply_fields()[register].parts[part].max()
}

/// The packed fields hold every value memsrv can send: a limit raised past a
/// field's width fails to compile here rather than saturate on the wire.
const _: () = {
    assert!(largest(Op::Hello, 3, 0) >= MAX_POOLS as u64, "HELLO pools");
    assert!(largest(Op::Hello, 3, 1) >= MAX_BUFFERS as u64, "HELLO quota_buffers: no client owns more");
    assert!(largest(Op::Hello, 3, 2) >= MAX_BUFFERS as u64, "HELLO quota_attachments: no client holds more");
    let ops = [Op::Attach, Op::Info];
    let mut i = 0;
    while i < ops.len() {
        let op = ops[i];
        i += 1;
        assert!(largest(op, 2, 0) >= LARGE_PAGE_BITS as u64, "page_bits");
        assert!(largest(op, 2, 1) >= Rights::ReadWrite as u64, "rights");
        assert!(largest(op, 2, 2) >= AllocFlags::ALL.bits(), "flags");
    }
    assert!(largest(Op::Info, 2, 3) >= MAX_POOLS as u64 - 1, "INFO pool");
    assert!(
        largest(Op::Info, 2, 4) >= 2 * MAX_CLIENTS as u64,
        "INFO attachments: an attachment and an export per client"
    );
    let pool_bytes = 1 << *POOL_SIZE_BITS.end();
    assert!(largest(Op::PoolInfo, 0, 0) >= pool_bytes && largest(Op::PoolInfo, 0, 1) >= pool_bytes);
    assert!(largest(Op::PoolInfo, 1, 0) >= pool_bytes && largest(Op::PoolInfo, 1, 1) >= pool_bytes);
    assert!(largest(Op::PoolInfo, 2, 0) >= pool_bytes);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_labels_are_rejected() {
        for op in Op::ALL {
            assert_eq!(Op::try_from(op as u64), Ok(op));
        }
        assert_eq!(Op::try_from(0), Err(0));
        assert_eq!(Op::try_from(14), Err(14));
        assert_eq!(Op::try_from(u64::MAX), Err(u64::MAX));
    }

    #[test]
    fn fixed_numbers_never_move() {
        assert_eq!(Op::Hello as u64, 1);
        assert_eq!(Op::Alloc as u64, 2);
        assert_eq!(Op::Attach as u64, 3);
        assert_eq!(Op::Quiesce as u64, 10);
        assert_eq!(Op::Free as u64, 7);
        assert_eq!(Op::PoolInfo as u64, 9);
        assert_eq!(Op::Export as u64, 11);
        assert_eq!(Op::Unexport as u64, 12);
        assert_eq!(Op::Reclaim as u64, 13);
        assert_eq!(Op::Reclaim.reply_caps(), 0);
        assert_eq!(Op::Export.reply_caps(), 1);
    }

    /// The C names are ABI, C protection domains are built against them: a
    /// field keeps its name, register and bits (new ones go at the end, or
    /// in a packed register's unused bits) within a major version.
    #[test]
    fn field_names_never_move() {
        let starts = |fields: &[crate::Field], names: &[&str]| {
            let have: Vec<&str> = fields.iter().map(|f| f.name).collect();
            assert!(have.starts_with(names), "{have:?} must start with {names:?}");
        };
        let packs = |field: &crate::Field, parts: &[(&str, u32, u32, u32)]| {
            let have: Vec<_> = field.parts.iter().map(|p| (p.name, p.shift, p.width, p.unit_bits)).collect();
            assert!(have.starts_with(parts), "{}: {have:?} must start with {parts:?}", field.name);
        };
        starts(Op::Alloc.request_fields(), &["SIZE", "ALIGN_BITS", "POOL", "FLAGS"]);
        starts(Op::Attach.request_fields(), &["ID", "RIGHTS"]);
        starts(Op::Grant.request_fields(), &["ID", "GRANTEE", "RIGHTS"]);
        starts(Op::Ungrant.request_fields(), &["ID", "GRANTEE"]);
        starts(Op::PoolInfo.request_fields(), &["POOL"]);
        starts(Op::Hello.reply_fields(), &["VERSION", "CLIENT_ID", "QUOTA_BYTES", "COUNTS"]);
        packs(
            &Op::Hello.reply_fields()[3],
            &[("POOLS", 0, 8, 0), ("QUOTA_BUFFERS", 8, 24, 0), ("QUOTA_ATTACHMENTS", 32, 24, 0)],
        );
        starts(Op::Alloc.reply_fields(), &["ID"]);
        starts(Op::Attach.reply_fields(), &["SIZE", "VADDR", "ATTRIBUTES"]);
        let attributes = [("PAGE_BITS", 0, 8, 0), ("RIGHTS", 8, 8, 0), ("FLAGS", 16, 8, 0)];
        packs(&Op::Attach.reply_fields()[2], &attributes);
        starts(Op::Info.reply_fields(), &["SIZE", "PADDR", "ATTRIBUTES", "OWNER"]);
        packs(&Op::Info.reply_fields()[2], &attributes);
        packs(
            &Op::Info.reply_fields()[2],
            &[attributes[0], attributes[1], attributes[2], ("POOL", 24, 8, 0), ("ATTACHMENTS", 32, 32, 0)],
        );
        starts(Op::PoolInfo.reply_fields(), &["TOTAL_FREE", "LARGEST_LOST", "QUARANTINE"]);
        packs(&Op::PoolInfo.reply_fields()[0], &[("TOTAL", 0, 32, 12), ("FREE", 32, 32, 12)]);
        packs(&Op::PoolInfo.reply_fields()[1], &[("LARGEST_FREE", 0, 32, 12), ("LOST", 32, 32, 12)]);
        packs(&Op::PoolInfo.reply_fields()[2], &[("QUARANTINED", 0, 32, 12)]);
        starts(Op::Reclaim.request_fields(), &["CLIENT"]);
        starts(Op::Reclaim.reply_fields(), &["BUFFERS", "BYTES", "ATTACHMENTS"]);
        for op in [Op::Info, Op::Detach, Op::Free] {
            starts(op.request_fields(), &["ID"]);
        }
    }
}
