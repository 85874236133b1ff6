//! Messages as a whole: the register count they fit in, and how a client
//! reads a reply's label before its registers. The layout of every request
//! and reply is the ABI table's ([`crate::op`]).

use crate::{Error, KernelFailure, Op, Reply};

/// Most message registers any request or reply uses: seL4's
/// `seL4_FastMessageRegisters` (4 on AArch64, RISC-V and x86-64). A PPC
/// whose request or reply is longer leaves the kernel's fastpath and costs
/// about a second null PPC; the ABI table is checked against this at
/// compile time, so every message stays on the fastpath.
pub const MAX_MESSAGE_WORDS: usize = 4;

/// Why a message could not be read as a request: always one of the decode
/// errors, or the error of a field's type ([`crate::Word::from_word`]:
/// [`Error::InvalidRights`], [`Error::InvalidFlags`]).
pub type DecodeError = Error;

/// Why a reply is not a successful one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// memsrv refused the request with this error (never [`Error::Kernel`],
    /// which arrives as [`ReplyError::Kernel`]).
    Refused(Error),
    /// memsrv refused the request because the kernel refused one of its
    /// invocations: which, and the seL4 error.
    Kernel(KernelFailure),
    /// Not a reply memsrv sends: a label that is no error code, a KERNEL
    /// reply without its registers, or a successful reply with capabilities,
    /// the wrong number of registers or a register holding no value of its
    /// field's type. The client's fault or memsrv's, not a refusal.
    Malformed,
}

impl Reply {
    /// Read the reply to `op` from its label, registers and count of received
    /// capabilities. A nonzero label is memsrv's refusal; anything memsrv
    /// would not send is [`ReplyError::Malformed`].
    pub fn decode(op: Op, label: u64, words: &[u64], caps: usize) -> Result<Reply, ReplyError> {
        if label != 0 {
            return Err(match Error::try_from(label) {
                Ok(Error::Kernel) => KernelFailure::decode(words).map_or(ReplyError::Malformed, ReplyError::Kernel),
                Ok(error) => ReplyError::Refused(error),
                Err(_) => ReplyError::Malformed,
            });
        }
        if caps != op.reply_caps() {
            return Err(ReplyError::Malformed);
        }
        Reply::decode_fields(op, words).ok_or(ReplyError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Align, AllocFlags, AllocReply, AttachReply, BufferId, ClientId, FreeReply, HelloReply, InfoReply, PoolId,
        PoolInfoReply, Request, Rights, MAX_MESSAGE_WORDS,
    };

    fn every_request() -> [Request; 13] {
        let id = BufferId::new(3, 9);
        [
            Request::Hello {},
            Request::Alloc { size: 4096, align: Align::bits(21), pool: PoolId(1), flags: AllocFlags::UNCACHED },
            Request::Attach { id, rights: Rights::ReadOnly },
            Request::Grant { id, grantee: ClientId(4), rights: Rights::ReadWrite },
            Request::Info { id },
            Request::Detach { id },
            Request::Free { id },
            Request::Ungrant { id, grantee: ClientId(4) },
            Request::PoolInfo { pool: PoolId(0) },
            Request::Quiesce { id },
            Request::Export { id, rights: Rights::ReadWrite },
            Request::Unexport { id },
            Request::Reclaim { client: ClientId(12) },
        ]
    }

    #[test]
    fn requests_round_trip_with_the_documented_lengths() {
        let ops: Vec<Op> = every_request().iter().map(Request::op).collect();
        assert_eq!(ops, Op::ALL, "every op once");
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
    fn a_malformed_field_is_refused_with_its_types_error() {
        let id = BufferId::new(1, 1).raw();
        assert_eq!(Request::decode(Op::Attach as u64, &[id, 2], 0), Err(Error::InvalidRights));
        assert_eq!(Request::decode(Op::Grant as u64, &[id, 4, 0], 0), Err(Error::InvalidRights));
        assert_eq!(Request::decode(Op::Alloc as u64, &[4096, 0, 0, 8], 0), Err(Error::InvalidFlags));
        // Everything else is a value of its type; memsrv judges it.
        let request = Request::decode(Op::Alloc as u64, &[0, u64::MAX, u64::MAX, 3], 0);
        let flags = AllocFlags::UNCACHED | AllocFlags::READ_ONLY;
        assert_eq!(
            request,
            Ok(Request::Alloc { size: 0, align: Align::bits(u64::MAX), pool: PoolId(u64::MAX), flags })
        );
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            (
                Op::Hello,
                Reply::Hello(HelloReply {
                    version: crate::PROTOCOL_VERSION,
                    client_id: ClientId(2),
                    pools: 1,
                    quota_bytes: 1 << 24,
                    quota_buffers: 8,
                    quota_attachments: 8,
                }),
            ),
            (Op::Alloc, Reply::Alloc(AllocReply { id: BufferId::new(1, 1) })),
            (
                Op::Attach,
                Reply::Attach(AttachReply {
                    size: 3 << 20,
                    vaddr: 0x2020_0000,
                    page_bits: 21,
                    rights: Rights::ReadOnly,
                    flags: AllocFlags::UNCACHED,
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
                    flags: AllocFlags::NONE,
                    pool: PoolId(0),
                    owner: ClientId(1),
                }),
            ),
            (
                Op::PoolInfo,
                Reply::PoolInfo(PoolInfoReply {
                    total: 1 << 24,
                    free: 1 << 23,
                    largest_free: 1 << 23,
                    lost: 1 << 16,
                    quarantined: 1 << 15,
                }),
            ),
            (Op::Free, Reply::Free(FreeReply {})),
            (Op::Export, Reply::Export(crate::ExportReply { large: 1, small: 2, radix: 2 })),
        ];
        for (op, reply) in replies {
            let mut words = [0; MAX_MESSAGE_WORDS];
            let len = reply.encode(&mut words);
            assert_eq!(len, op.reply_words());
            assert_eq!(reply.op(), op);
            assert_eq!(Reply::decode(op, 0, &words[..len], op.reply_caps()), Ok(reply));
        }
    }

    #[test]
    fn clients_see_server_errors_and_malformed_replies() {
        use ReplyError::{Malformed, Refused};
        assert_eq!(Reply::decode(Op::Free, Error::StaleBuffer.code(), &[], 0), Err(Refused(Error::StaleBuffer)));
        assert_eq!(Reply::decode(Op::Export, 0, &[1, 2, 2], 0), Err(Malformed), "EXPORT without its CNode");
        let failure = KernelFailure { invocation: crate::Invocation::CNodeRevoke, code: 3 };
        assert_eq!(Reply::decode(Op::Free, Error::Kernel.code(), &[4, 3], 0), Err(ReplyError::Kernel(failure)));
        assert_eq!(Reply::decode(Op::Free, Error::Kernel.code(), &[4], 0), Err(Malformed), "a word short");
        assert_eq!(Reply::decode(Op::Free, Error::Kernel.code(), &[0, 3], 0), Err(Malformed), "no invocation 0");
        assert_eq!(Reply::decode(Op::Free, 30, &[], 0), Err(Malformed), "no error 30");
        assert_eq!(Reply::decode(Op::Attach, 29, &[], 0), Err(Refused(Error::NotIoMappable)));
        assert_eq!(Reply::decode(Op::Grant, 28, &[], 0), Err(Refused(Error::TooManyHolders)));
        assert_eq!(Reply::decode(Op::Alloc, 27, &[], 0), Err(Refused(Error::Waiting)));
        assert_eq!(Reply::decode(Op::Alloc, 0, &[], 0), Err(Malformed));
        assert_eq!(Reply::decode(Op::Free, 0, &[0], 0), Err(Malformed));
        let attach = [0x1000, 0x2000_0000, 12 | (Rights::ReadOnly as u64) << 8];
        assert!(Reply::decode(Op::Attach, 0, &attach, 0).is_ok());
        assert_eq!(Reply::decode(Op::Attach, 0, &attach, 1), Err(Malformed), "no reply but EXPORT carries a cap");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0, 0, 12], 0), Err(Malformed), "rights 0 is invalid");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0, 0, 12 | 1 << 8 | 8 << 16], 0), Err(Malformed), "flag bit 3");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0, 0, 12 | 1 << 8 | 1 << 24], 0), Err(Malformed), "unused bit 24");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0, 0, 12 | 1 << 8 | 1 << 63], 0), Err(Malformed), "unused bit 63");
        assert_eq!(Reply::decode(Op::Attach, 0, &[0, 0, 12, 1], 0), Err(Malformed), "the version 4 layout");
        let counts = 1 | 8 << 8 | 8 << 32;
        assert!(Reply::decode(Op::Hello, 0, &[crate::PROTOCOL_VERSION, 1, 1 << 20, counts], 0).is_ok());
        let unused = counts | 1 << 56;
        assert_eq!(Reply::decode(Op::Hello, 0, &[crate::PROTOCOL_VERSION, 1, 1 << 20, unused], 0), Err(Malformed));
        assert!(Reply::decode(Op::PoolInfo, 0, &[u64::MAX, u64::MAX, u32::MAX as u64], 0).is_ok());
        let pool = [0, 0, 1 << 32];
        assert_eq!(Reply::decode(Op::PoolInfo, 0, &pool, 0), Err(Malformed), "QUARANTINE's high half is unused");
    }

    /// The packed registers' layouts, word by word, as a C client reads them.
    #[test]
    fn packed_replies_put_each_field_at_its_bits() {
        let mut words = [0; MAX_MESSAGE_WORDS];
        let hello = HelloReply {
            version: crate::PROTOCOL_VERSION,
            client_id: ClientId(u64::MAX),
            pools: 4,
            quota_bytes: u64::MAX,
            quota_buffers: 4096,
            quota_attachments: u64::MAX,
        };
        assert_eq!(Reply::Hello(hello).encode(&mut words), 4);
        assert_eq!(words, [crate::PROTOCOL_VERSION, u64::MAX, u64::MAX, 4 | 4096 << 8 | 0xff_ffff << 32]);
        let saturated = HelloReply { quota_attachments: 0xff_ffff, ..hello };
        assert_eq!(Reply::decode(Op::Hello, 0, &words, 0), Ok(Reply::Hello(saturated)), "a quota beyond the field");
        let info = InfoReply {
            size: 1 << 30,
            physical_address: 0x4000_0000,
            page_bits: 21,
            rights: Rights::ReadWrite,
            attachments: 128,
            flags: AllocFlags::UNCACHED | AllocFlags::READ_ONLY,
            pool: PoolId(3),
            owner: ClientId(u64::MAX - 1),
        };
        assert_eq!(Reply::Info(info).encode(&mut words), 4);
        assert_eq!(words, [1 << 30, 0x4000_0000, 21 | 3 << 8 | 3 << 16 | 3 << 24 | 128 << 32, u64::MAX - 1]);
        let pool =
            PoolInfoReply { total: 1 << 40, free: 3 << 12, largest_free: 2 << 12, lost: 1 << 12, quarantined: 0 };
        assert_eq!(Reply::PoolInfo(pool).encode(&mut words), 3);
        assert_eq!(words[..3], [1 << 28 | 3 << 32, 2 | 1 << 32, 0]);
        assert_eq!(Reply::decode(Op::PoolInfo, 0, &words[..3], 0), Ok(Reply::PoolInfo(pool)));
    }

    #[test]
    fn every_message_fits_the_fastpath() {
        assert_eq!(MAX_MESSAGE_WORDS, 4, "seL4_FastMessageRegisters");
        let words: Vec<(usize, usize)> = Op::ALL.iter().map(|op| (op.request_words(), op.reply_words())).collect();
        let expected =
            [(0, 4), (4, 1), (2, 3), (3, 0), (1, 4), (1, 0), (1, 0), (2, 0), (1, 3), (1, 0), (2, 3), (1, 0), (1, 3)];
        assert_eq!(words, expected);
        assert!(Error::Kernel.reply_fields().len() <= MAX_MESSAGE_WORDS);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::{Request, MAX_MESSAGE_WORDS};
    use proptest::prelude::*;

    use capbuf_testing::proptest_config;

    proptest! {
        #![proptest_config(proptest_config(256))]

        /// Whatever a client sends, decoding returns a request, a decode
        /// error or a field's error, and a request re-encodes to exactly the
        /// message received.
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
                // A field's own error only once the message is well formed.
                Err(Error::InvalidRights | Error::InvalidFlags) => {
                    prop_assert!(Op::try_from(label).is_ok_and(|op| op.request_words() == words.len()) && caps == 0);
                }
                Err(e) => prop_assert!(e.code() >= Error::DECODE_BASE),
            }
        }

        /// A client decoding any reply gets a reply or an error, never a panic.
        #[test]
        fn any_reply_decodes_or_is_refused(op in 0..Op::ALL.len(), label in prop_oneof![Just(0u64), any::<u64>()],
                                            words in prop::collection::vec(any::<u64>(), 0..10), caps in 0usize..3) {
            let _ = Reply::decode(Op::ALL[op], label, &words, caps);
        }
    }
}
