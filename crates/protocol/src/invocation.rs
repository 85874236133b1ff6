//! The kernel invocations memsrv makes, as a KERNEL error reply names them.

use crate::{Error, Word};

/// One kind of kernel invocation memsrv makes. A [`crate::Error::Kernel`]
/// reply carries the number of the one the kernel refused in its first
/// message register ([`KernelFailure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Invocation {
    /// `seL4_Untyped_Retype`: a pool block split, frames, a CNode or a page table made.
    UntypedRetype = 1,
    /// `seL4_CNode_Mint` with a rights mask: a frame copy for an attachment.
    CNodeCopy = 2,
    /// `seL4_CNode_Mutate`: a new CNode's capability given its guard.
    CNodeMutate = 3,
    /// `seL4_CNode_Revoke`: a block, a buffer or an attachment taken back.
    CNodeRevoke = 4,
    /// `seL4_CNode_Delete`.
    CNodeDelete = 5,
    /// `seL4_ARM_PageTable_Map` into a client's VSpace.
    PageTableMap = 6,
    /// `seL4_ARM_Page_Map` into a client's VSpace.
    PageMap = 7,
    /// `seL4_X86_Page_MapIO`: a 4 KiB frame copy mapped into the I/O address
    /// space of an `io_space` client's device.
    IoPageMap = 8,
}

impl Invocation {
    /// Every invocation, for tables and generated headers.
    pub const ALL: [Invocation; 8] = [
        Invocation::UntypedRetype,
        Invocation::CNodeCopy,
        Invocation::CNodeMutate,
        Invocation::CNodeRevoke,
        Invocation::CNodeDelete,
        Invocation::PageTableMap,
        Invocation::PageMap,
        Invocation::IoPageMap,
    ];

    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Invocation::UntypedRetype => "UNTYPED_RETYPE",
            Invocation::CNodeCopy => "CNODE_COPY",
            Invocation::CNodeMutate => "CNODE_MUTATE",
            Invocation::CNodeRevoke => "CNODE_REVOKE",
            Invocation::CNodeDelete => "CNODE_DELETE",
            Invocation::PageTableMap => "PAGE_TABLE_MAP",
            Invocation::PageMap => "PAGE_MAP",
            Invocation::IoPageMap => "IO_PAGE_MAP",
        }
    }
}

impl TryFrom<u64> for Invocation {
    type Error = u64;

    fn try_from(number: u64) -> Result<Self, u64> {
        Invocation::ALL.into_iter().find(|i| *i as u64 == number).ok_or(number)
    }
}

const _: () = assert!(Invocation::ALL.len() == Invocation::IoPageMap as usize, "numbered 1..=N without gaps");

impl Word for Invocation {
    const C_DESCRIPTION: &'static str = "CAPBUF_INVOCATION_*";

    /// Only replies carry an invocation; a register naming none makes the
    /// message malformed (a request would be refused with [`Error::WrongLength`]).
    fn from_word(word: u64) -> Result<Self, Error> {
        Invocation::try_from(word).map_err(|_| Error::WrongLength)
    }

    fn to_word(self) -> u64 {
        self as u64
    }
}

wire_struct! {
    /// What the kernel refused: the registers of a [`crate::Error::Kernel`]
    /// reply. memsrv undid the request before replying (see the error's
    /// documentation for what may remain).
    KernelFailure {
        /// The invocation the kernel refused (message register 0).
        invocation (INVOCATION): Invocation,
        /// The seL4 error number it returned (`seL4_Error`, message register 1).
        code (CODE): u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_MESSAGE_WORDS;

    #[test]
    fn numbers_never_move_and_failures_round_trip() {
        let numbers: [u64; 8] = Invocation::ALL.map(|i| i as u64);
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Invocation::try_from(0), Err(0));
        assert_eq!(Invocation::try_from(9), Err(9));
        for invocation in Invocation::ALL {
            assert_eq!(Invocation::try_from(invocation as u64), Ok(invocation));
            let failure = KernelFailure { invocation, code: 10 };
            let mut out = [0; MAX_MESSAGE_WORDS];
            let length = failure.encode(&mut out);
            assert_eq!(KernelFailure::decode(&out[..length]), Some(failure));
        }
        assert_eq!(KernelFailure::decode(&[4]), None);
        assert_eq!(KernelFailure::decode(&[4, 1, 0]), None);
        assert_eq!(KernelFailure::decode(&[99, 1]), None);
    }
}
