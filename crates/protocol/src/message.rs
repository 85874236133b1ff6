//! Request and reply layout in message registers.
//!
//! | op        | request MRs                          | reply MRs (success)                                                  |
//! |-----------|--------------------------------------|----------------------------------------------------------------------|
//! | HELLO     | -                                    | version, client id, pools, quota bytes, quota buffers, quota attachments |
//! | ALLOC     | size, align bits, pool, flags        | buffer id                                                            |
//! | ATTACH    | id, rights                           | size, vaddr, page bits, rights, flags                                |
//! | GRANT     | id, grantee client id, rights        | -                                                                    |
//! | INFO      | id                                   | size, paddr, page bits, rights, attachments, flags, pool, owner     |
//! | DETACH    | id                                   | -                                                                    |
//! | FREE      | id                                   | -                                                                    |
//! | UNGRANT   | id, grantee client id                | -                                                                    |
//! | POOL_INFO | pool                                 | total bytes, free bytes, largest free block, lost bytes, quarantined bytes |
//! | QUIESCE   | id                                   | -                                                                    |
//!
//! An error reply's label is the [`Error`] code; a KERNEL error reply
//! carries the failed invocation and the seL4 error ([`crate::KernelFailure`]),
//! any other error reply no registers.

use crate::{AllocFlags, BufferId, Error, Op, Rights};

/// Most message registers any request or reply uses.
pub const MAX_MESSAGE_WORDS: usize = 8;

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// See [`Op::Hello`].
    Hello,
    /// See [`Op::Alloc`].
    Alloc {
        /// Bytes; rounded up to whole pages.
        size: u64,
        /// Alignment of the first byte as a power of two; 0 means page alignment.
        align_bits: u64,
        /// Pool index.
        pool: u64,
        /// [`crate::AllocFlags`] bits.
        flags: u64,
    },
    /// See [`Op::Attach`].
    Attach {
        /// The buffer.
        id: BufferId,
        /// Requested [`crate::Rights`], as on the wire.
        rights: u64,
    },
    /// See [`Op::Grant`].
    Grant {
        /// The buffer.
        id: BufferId,
        /// Client id of the grantee.
        grantee: u64,
        /// Most [`crate::Rights`] the grantee may attach with, as on the wire.
        rights: u64,
    },
    /// See [`Op::Info`].
    Info {
        /// The buffer.
        id: BufferId,
    },
    /// See [`Op::Detach`].
    Detach {
        /// The buffer.
        id: BufferId,
    },
    /// See [`Op::Free`].
    Free {
        /// The buffer.
        id: BufferId,
    },
    /// See [`Op::Ungrant`].
    Ungrant {
        /// The buffer.
        id: BufferId,
        /// Client id of the grantee.
        grantee: u64,
    },
    /// See [`Op::PoolInfo`].
    PoolInfo {
        /// Pool index.
        pool: u64,
    },
    /// See [`Op::Quiesce`].
    Quiesce {
        /// The buffer (live, or freed into quarantine).
        id: BufferId,
    },
}

/// Why a message could not be read as a request: always one of the decode errors.
pub type DecodeError = Error;

impl Request {
    /// The op this request belongs to.
    pub const fn op(&self) -> Op {
        match self {
            Request::Hello => Op::Hello,
            Request::Alloc { .. } => Op::Alloc,
            Request::Attach { .. } => Op::Attach,
            Request::Grant { .. } => Op::Grant,
            Request::Info { .. } => Op::Info,
            Request::Detach { .. } => Op::Detach,
            Request::Free { .. } => Op::Free,
            Request::Ungrant { .. } => Op::Ungrant,
            Request::PoolInfo { .. } => Op::PoolInfo,
            Request::Quiesce { .. } => Op::Quiesce,
        }
    }

    /// Read a request from its label, message registers and count of extra
    /// capabilities. Checks the label and lengths before reading any register.
    pub fn decode(label: u64, words: &[u64], extra_caps: usize) -> Result<Request, DecodeError> {
        let op = Op::try_from(label).map_err(|_| Error::UnknownOp)?;
        if words.len() != op.request_words() {
            return Err(Error::WrongLength);
        }
        if extra_caps != 0 {
            return Err(Error::UnexpectedCaps);
        }
        let id = || BufferId::from_raw(words[0]);
        Ok(match op {
            Op::Hello => Request::Hello,
            Op::Alloc => Request::Alloc { size: words[0], align_bits: words[1], pool: words[2], flags: words[3] },
            Op::Attach => Request::Attach { id: id(), rights: words[1] },
            Op::Grant => Request::Grant { id: id(), grantee: words[1], rights: words[2] },
            Op::Info => Request::Info { id: id() },
            Op::Detach => Request::Detach { id: id() },
            Op::Free => Request::Free { id: id() },
            Op::Ungrant => Request::Ungrant { id: id(), grantee: words[1] },
            Op::PoolInfo => Request::PoolInfo { pool: words[0] },
            Op::Quiesce => Request::Quiesce { id: id() },
        })
    }

    /// Write the request's registers into `out` and return `(label, length)`.
    pub fn encode(&self, out: &mut [u64; MAX_MESSAGE_WORDS]) -> (u64, usize) {
        let words: &[u64] = match *self {
            Request::Hello => &[],
            Request::Alloc { size, align_bits, pool, flags } => &[size, align_bits, pool, flags],
            Request::Attach { id, rights } => &[id.raw(), rights],
            Request::Grant { id, grantee, rights } => &[id.raw(), grantee, rights],
            Request::Info { id } | Request::Detach { id } | Request::Free { id } | Request::Quiesce { id } => {
                &[id.raw()]
            }
            Request::Ungrant { id, grantee } => &[id.raw(), grantee],
            Request::PoolInfo { pool } => &[pool],
        };
        out[..words.len()].copy_from_slice(words);
        (self.op() as u64, words.len())
    }
}

/// Reply to [`Op::Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloReply {
    /// memsrv's [`crate::PROTOCOL_VERSION`].
    pub version: u64,
    /// The caller's client id, as configured in `system.xml`.
    pub client_id: u64,
    /// Number of pools.
    pub pools: u64,
    /// Bytes of buffers the caller may own at once.
    pub quota_bytes: u64,
    /// Buffers the caller may own at once.
    pub quota_buffers: u64,
    /// Attachments the caller may hold at once.
    pub quota_attachments: u64,
}

/// Reply to [`Op::Attach`]. memsrv has mapped the buffer into the caller's
/// VSpace, contiguously from `vaddr` (inside [`crate::CLIENT_WINDOW`], 2 MiB
/// aligned), with the attachment's rights and the buffer's cacheability. The
/// mapping is memsrv's: the caller holds no capability to it, and DETACH,
/// UNGRANT, a lowered grant or FREE remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachReply {
    /// Buffer size in bytes, a multiple of the page size.
    pub size: u64,
    /// Virtual address of the first byte in the caller's VSpace.
    pub vaddr: u64,
    /// Size bits of the largest page the mapping uses (12 or 21).
    pub page_bits: u64,
    /// Rights of the mapping.
    pub rights: Rights,
    /// The buffer's allocation flags ([`AllocFlags::UNCACHED`] buffers are mapped uncached).
    pub flags: AllocFlags,
}

/// Reply to [`Op::Info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoReply {
    /// Buffer size in bytes.
    pub size: u64,
    /// Physical address of the first byte, or [`crate::PADDR_HIDDEN`].
    pub physical_address: u64,
    /// Size bits of the buffer's largest page (12 or 21).
    pub page_bits: u64,
    /// Rights the caller may attach with.
    pub rights: Rights,
    /// Attachments currently held, all clients together (the reference count).
    pub attachments: u64,
    /// Allocation flags.
    pub flags: AllocFlags,
    /// Pool the buffer lives in.
    pub pool: u64,
    /// Client id of the owner.
    pub owner: u64,
}

/// Reply to [`Op::PoolInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolInfoReply {
    /// Pool size in bytes.
    pub total: u64,
    /// Bytes in free blocks (buffers and memsrv's bookkeeping objects excluded).
    pub free: u64,
    /// The largest contiguous free block, in bytes.
    pub largest_free: u64,
    /// Bytes memsrv can no longer use because a kernel invocation failed and
    /// could not be undone (0 unless the kernel misbehaved). They are counted
    /// in neither the total nor the free bytes.
    pub lost: u64,
    /// Bytes of freed buffers whose physical address a `dma` client learnt
    /// and that wait for its [`Op::Quiesce`] before they are free again.
    /// They are counted in the total, not in the free bytes.
    pub quarantined: u64,
}

/// A successful reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To [`Op::Hello`].
    Hello(HelloReply),
    /// To [`Op::Alloc`].
    Alloc(BufferId),
    /// To [`Op::Attach`].
    Attach(AttachReply),
    /// To [`Op::Info`].
    Info(InfoReply),
    /// To [`Op::PoolInfo`].
    PoolInfo(PoolInfoReply),
    /// To ops that return nothing ([`Op::Grant`], [`Op::Detach`], [`Op::Free`], [`Op::Ungrant`], [`Op::Quiesce`]).
    Done,
}

impl Reply {
    /// Write the reply's registers into `out` and return the length. The label is 0.
    pub fn encode(&self, out: &mut [u64; MAX_MESSAGE_WORDS]) -> usize {
        let words: &[u64] = match *self {
            Reply::Hello(h) => &[h.version, h.client_id, h.pools, h.quota_bytes, h.quota_buffers, h.quota_attachments],
            Reply::Alloc(id) => &[id.raw()],
            Reply::Attach(a) => &[a.size, a.vaddr, a.page_bits, a.rights as u64, a.flags.bits()],
            Reply::Info(i) => &[
                i.size,
                i.physical_address,
                i.page_bits,
                i.rights as u64,
                i.attachments,
                i.flags.bits(),
                i.pool,
                i.owner,
            ],
            Reply::PoolInfo(p) => &[p.total, p.free, p.largest_free, p.lost, p.quarantined],
            Reply::Done => &[],
        };
        out[..words.len()].copy_from_slice(words);
        words.len()
    }

    /// Read the reply to `op` from its label, registers and count of received
    /// capabilities. A nonzero label is the server's error; a malformed reply
    /// (wrong length, missing capability, bad field) is reported as
    /// [`Error::WrongLength`] or [`Error::UnexpectedCaps`].
    pub fn decode(op: Op, label: u64, words: &[u64], caps: usize) -> Result<Reply, Error> {
        if label != 0 {
            return Err(Error::try_from(label).unwrap_or(Error::UnknownOp));
        }
        if words.len() != op.reply_words() {
            return Err(Error::WrongLength);
        }
        if caps != op.reply_caps() {
            return Err(Error::UnexpectedCaps);
        }
        let rights = |w: u64| Rights::try_from(w).map_err(|_| Error::WrongLength);
        let flags = |w: u64| AllocFlags::from_bits(w).ok_or(Error::WrongLength);
        Ok(match op {
            Op::Hello => Reply::Hello(HelloReply {
                version: words[0],
                client_id: words[1],
                pools: words[2],
                quota_bytes: words[3],
                quota_buffers: words[4],
                quota_attachments: words[5],
            }),
            Op::Alloc => Reply::Alloc(BufferId::from_raw(words[0])),
            Op::Attach => Reply::Attach(AttachReply {
                size: words[0],
                vaddr: words[1],
                page_bits: words[2],
                rights: rights(words[3])?,
                flags: flags(words[4])?,
            }),
            Op::Info => Reply::Info(InfoReply {
                size: words[0],
                physical_address: words[1],
                page_bits: words[2],
                rights: rights(words[3])?,
                attachments: words[4],
                flags: flags(words[5])?,
                pool: words[6],
                owner: words[7],
            }),
            Op::PoolInfo => Reply::PoolInfo(PoolInfoReply {
                total: words[0],
                free: words[1],
                largest_free: words[2],
                lost: words[3],
                quarantined: words[4],
            }),
            Op::Grant | Op::Detach | Op::Free | Op::Ungrant | Op::Quiesce => Reply::Done,
        })
    }
}

const _: () = {
    let mut i = 0;
    while i < Op::ALL.len() {
        assert!(Op::ALL[i].request_words() <= MAX_MESSAGE_WORDS);
        assert!(Op::ALL[i].reply_words() <= MAX_MESSAGE_WORDS);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    fn every_request() -> [Request; 10] {
        let id = BufferId::new(3, 9);
        [
            Request::Hello,
            Request::Alloc { size: 4096, align_bits: 21, pool: 1, flags: 1 },
            Request::Attach { id, rights: 1 },
            Request::Grant { id, grantee: 4, rights: 3 },
            Request::Info { id },
            Request::Detach { id },
            Request::Free { id },
            Request::Ungrant { id, grantee: 4 },
            Request::PoolInfo { pool: 0 },
            Request::Quiesce { id },
        ]
    }

    #[test]
    fn requests_round_trip_with_the_documented_lengths() {
        for request in every_request() {
            let mut words = [0; MAX_MESSAGE_WORDS];
            let (label, len) = request.encode(&mut words);
            assert_eq!(label, request.op() as u64);
            assert_eq!(len, request.op().request_words());
            assert_eq!(Request::decode(label, &words[..len], 0), Ok(request));
        }
    }

    #[test]
    fn malformed_requests_get_their_own_decode_error() {
        assert_eq!(Request::decode(0, &[], 0), Err(Error::UnknownOp));
        assert_eq!(Request::decode(99, &[], 0), Err(Error::UnknownOp));
        assert_eq!(Request::decode(Op::Alloc as u64, &[1, 2, 3], 0), Err(Error::WrongLength));
        assert_eq!(Request::decode(Op::Hello as u64, &[1], 0), Err(Error::WrongLength));
        assert_eq!(Request::decode(Op::Free as u64, &[1], 1), Err(Error::UnexpectedCaps));
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            (
                Op::Hello,
                Reply::Hello(HelloReply {
                    version: crate::PROTOCOL_VERSION,
                    client_id: 2,
                    pools: 1,
                    quota_bytes: 1 << 24,
                    quota_buffers: 8,
                    quota_attachments: 8,
                }),
            ),
            (Op::Alloc, Reply::Alloc(BufferId::new(1, 1))),
            (
                Op::Attach,
                Reply::Attach(AttachReply {
                    size: 3 << 20,
                    vaddr: 0x2020_0000,
                    page_bits: 21,
                    rights: Rights::ReadOnly,
                    flags: AllocFlags::from_bits(1).unwrap(),
                }),
            ),
            (
                Op::Info,
                Reply::Info(InfoReply {
                    size: 4096,
                    physical_address: crate::PADDR_HIDDEN,
                    page_bits: 12,
                    rights: Rights::ReadWrite,
                    attachments: 2,
                    flags: AllocFlags::default(),
                    pool: 0,
                    owner: 1,
                }),
            ),
            (
                Op::PoolInfo,
                Reply::PoolInfo(PoolInfoReply {
                    total: 1 << 24,
                    free: 1 << 23,
                    largest_free: 1 << 23,
                    lost: 1 << 16,
                    quarantined: 1 << 13,
                }),
            ),
            (Op::Free, Reply::Done),
            (Op::Quiesce, Reply::Done),
        ];
        for (op, reply) in replies {
            let mut words = [0; MAX_MESSAGE_WORDS];
            let len = reply.encode(&mut words);
            assert_eq!(len, op.reply_words());
            assert_eq!(Reply::decode(op, 0, &words[..len], op.reply_caps()), Ok(reply));
        }
    }

    #[test]
    fn clients_see_server_errors_and_malformed_replies() {
        assert_eq!(Reply::decode(Op::Free, Error::StaleBuffer.code(), &[], 0), Err(Error::StaleBuffer));
        assert_eq!(Reply::decode(Op::Alloc, 0, &[], 0), Err(Error::WrongLength));
        assert_eq!(Reply::decode(Op::Attach, 0, &[0; 5], 1), Err(Error::UnexpectedCaps), "no reply carries a cap");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0; 5], 0), Err(Error::WrongLength), "rights 0 is invalid");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The property tests' configuration: `cases` cases unless `PROPTEST_CASES`
    /// says otherwise; a fresh seed each run, printed (with `--nocapture`, or
    /// beside a failure) so the run can be repeated with `PROPTEST_RNG_SEED`;
    /// failing cases saved to the committed `*.proptest-regressions` file beside
    /// this source file, which every run replays first.
    fn proptest_config(cases: u32) -> ProptestConfig {
        use proptest::test_runner::{contextualize_config, FileFailurePersistence, RngSeed};
        use std::hash::{BuildHasher, Hasher};
        let mut config = contextualize_config(ProptestConfig { cases, ..ProptestConfig::default() });
        config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions")));
        if config.rng_seed == RngSeed::Random {
            let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
            config.rng_seed = RngSeed::Fixed(seed);
        }
        eprintln!("proptest: {} cases, PROPTEST_RNG_SEED={}", config.cases, config.rng_seed);
        config
    }

    proptest! {
        #![proptest_config(proptest_config(256))]

        /// Whatever a client sends, decoding returns a request or a decode
        /// error, and a request re-encodes to exactly the message received.
        #[test]
        fn any_message_decodes_or_is_refused(label in prop_oneof![0u64..12, any::<u64>()],
                                              words in prop::collection::vec(any::<u64>(), 0..12),
                                              caps in 0usize..4) {
            match Request::decode(label, &words, caps) {
                Ok(request) => {
                    let mut out = [0; MAX_MESSAGE_WORDS];
                    let (l, n) = request.encode(&mut out);
                    prop_assert_eq!((l, &out[..n]), (label, &words[..]));
                    prop_assert_eq!(caps, 0);
                }
                Err(e) => prop_assert!(e.code() >= Error::DECODE_BASE),
            }
        }

        /// A client decoding any reply gets a reply or an error, never a panic.
        #[test]
        fn any_reply_decodes_or_is_refused(op in 0usize..9, label in prop_oneof![Just(0u64), any::<u64>()],
                                            words in prop::collection::vec(any::<u64>(), 0..10), caps in 0usize..3) {
            let _ = Reply::decode(Op::ALL[op], label, &words, caps);
        }
    }
}
