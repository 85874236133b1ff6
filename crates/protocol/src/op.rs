//! Operation numbers: the message label of a request.

/// One capbuf operation. The value is the PPC message label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    /// Protocol version, the caller's client id and its quotas. Clients call it first.
    Hello = 1,
    /// Allocate a zeroed, physically contiguous buffer owned by the caller.
    Alloc = 2,
    /// Attach to a buffer the caller owns or was granted: memsrv maps it into the caller's window.
    Attach = 3,
    /// Owner lets another client attach, with rights no larger than the buffer allows.
    Grant = 4,
    /// Size, physical address (if allowed), page size, rights and reference count.
    Info = 5,
    /// Drop the caller's attachment; its mapping disappears.
    Detach = 6,
    /// Owner frees the buffer: every attachment and capability derived from it is revoked.
    Free = 7,
    /// Owner withdraws a grant; the grantee's attachment, if any, is revoked.
    Ungrant = 8,
    /// Total, free and largest free block of one pool, the bytes lost to kernel failures and in quarantine.
    PoolInfo = 9,
    /// The caller's device no longer uses the buffer: memory it was told the
    /// physical address of may go back to the pool once freed.
    Quiesce = 10,
}

impl Op {
    /// Every op, for tables and generated headers.
    pub const ALL: [Op; 10] = [
        Op::Hello,
        Op::Alloc,
        Op::Attach,
        Op::Grant,
        Op::Info,
        Op::Detach,
        Op::Free,
        Op::Ungrant,
        Op::PoolInfo,
        Op::Quiesce,
    ];

    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Hello => "HELLO",
            Op::Alloc => "ALLOC",
            Op::Attach => "ATTACH",
            Op::Grant => "GRANT",
            Op::Info => "INFO",
            Op::Detach => "DETACH",
            Op::Free => "FREE",
            Op::Ungrant => "UNGRANT",
            Op::PoolInfo => "POOL_INFO",
            Op::Quiesce => "QUIESCE",
        }
    }

    /// Names of the request's message registers, in order.
    pub const fn request_fields(self) -> &'static [&'static str] {
        match self {
            Op::Hello => &[],
            Op::Alloc => &["SIZE", "ALIGN_BITS", "POOL", "FLAGS"],
            Op::Attach => &["ID", "RIGHTS"],
            Op::Grant => &["ID", "GRANTEE", "RIGHTS"],
            Op::Info | Op::Detach | Op::Free | Op::Quiesce => &["ID"],
            Op::Ungrant => &["ID", "GRANTEE"],
            Op::PoolInfo => &["POOL"],
        }
    }

    /// Names of a successful reply's message registers, in order.
    pub const fn reply_fields(self) -> &'static [&'static str] {
        match self {
            Op::Hello => &["VERSION", "CLIENT_ID", "POOLS", "QUOTA_BYTES", "QUOTA_BUFFERS", "QUOTA_ATTACHMENTS"],
            Op::Alloc => &["ID"],
            Op::Attach => &["SIZE", "VADDR", "PAGE_BITS", "RIGHTS", "FLAGS"],
            Op::Info => &["SIZE", "PADDR", "PAGE_BITS", "RIGHTS", "ATTACHMENTS", "FLAGS", "POOL", "OWNER"],
            Op::PoolInfo => &["TOTAL", "FREE", "LARGEST_FREE", "LOST", "QUARANTINED"],
            Op::Grant | Op::Detach | Op::Free | Op::Ungrant | Op::Quiesce => &[],
        }
    }

    /// Number of message registers the request carries.
    pub const fn request_words(self) -> usize {
        self.request_fields().len()
    }

    /// Number of message registers a successful reply carries.
    pub const fn reply_words(self) -> usize {
        self.reply_fields().len()
    }

    /// Number of capabilities a successful reply carries: none. memsrv maps
    /// attachments into the caller's VSpace itself; no client ever holds a
    /// capability to a buffer's frames.
    pub const fn reply_caps(self) -> usize {
        0
    }
}

impl TryFrom<u64> for Op {
    type Error = u64;

    fn try_from(label: u64) -> Result<Self, u64> {
        Op::ALL.into_iter().find(|op| *op as u64 == label).ok_or(label)
    }
}

const _: () = assert!(Op::ALL.len() == Op::Quiesce as usize, "ops are numbered 1..=N without gaps");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_labels_are_rejected() {
        for op in Op::ALL {
            assert_eq!(Op::try_from(op as u64), Ok(op));
        }
        assert_eq!(Op::try_from(0), Err(0));
        assert_eq!(Op::try_from(11), Err(11));
        assert_eq!(Op::try_from(u64::MAX), Err(u64::MAX));
    }

    #[test]
    fn fixed_numbers_never_move() {
        assert_eq!(Op::Hello as u64, 1);
        assert_eq!(Op::Alloc as u64, 2);
        assert_eq!(Op::Attach as u64, 3);
        assert_eq!(Op::Free as u64, 7);
        assert_eq!(Op::PoolInfo as u64, 9);
        assert_eq!(Op::Quiesce as u64, 10);
    }
}
