//! Error codes: the label of a failed reply.

/// Why memsrv refused a request. `0` (success) is not an error; domain errors
/// count from 1; errors about the message itself live in their own high range
/// starting at [`Error::DECODE_BASE`]. A refused request leaves memsrv's state
/// unchanged, with the exceptions [`Error::Kernel`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// Size 0.
    ZeroSize = 1,
    /// Larger than the pool or than [`crate::MAX_BUFFER_BITS`].
    TooLarge = 2,
    /// Alignment above [`crate::MAX_ALIGN_BITS`] or above the pool size.
    InvalidAlignment = 3,
    /// No pool with that index.
    InvalidPool = 4,
    /// Unknown allocation flag bits.
    InvalidFlags = 5,
    /// Rights value is not read-only or read-write.
    InvalidRights = 6,
    /// The caller has no buffer with that id: it was never issued, or the
    /// buffer was freed, or it exists but the caller neither owns it nor was
    /// granted it. One answer for all three, so that a client cannot probe
    /// which ids exist.
    UnknownBuffer = 7,
    /// The buffer was freed while the caller had a right to it (its owner's
    /// double free, a former grantee's old id). Only a client that knew the
    /// buffer existed is told so.
    StaleBuffer = 8,
    /// Only the owner may do this.
    NotOwner = 9,
    /// No longer sent: a buffer the caller neither owns nor was granted is
    /// reported as [`Error::UnknownBuffer`], which reveals nothing. The code
    /// stays reserved so that no other code moves.
    NotGranted = 10,
    /// More rights than the caller holds or the buffer allows.
    RightsEscalation = 11,
    /// The caller is already attached to this buffer.
    AlreadyAttached = 12,
    /// The caller is not attached to this buffer.
    NotAttached = 13,
    /// The caller's byte quota would be exceeded. A buffer aligned beyond
    /// its own power-of-two size is charged the whole aligned block.
    QuotaBytes = 14,
    /// The caller's buffer-count quota would be exceeded.
    QuotaBuffers = 15,
    /// The caller's attachment quota would be exceeded.
    QuotaAttachments = 16,
    /// No contiguous block of that size and alignment is free in the pool,
    /// or (only after a kernel failure memsrv could not undo, counted as lost
    /// in POOL_INFO) no block is left in the caller's metadata reserve.
    OutOfMemory = 17,
    /// memsrv's buffer table is full.
    TooManyBuffers = 18,
    /// Grant target is not a configured client, or is the caller itself.
    InvalidGrantee = 19,
    /// The grantee has no grant to withdraw.
    NotGrantee = 20,
    /// memsrv ran out of capability slots for bookkeeping.
    OutOfSlots = 21,
    /// The kernel refused an invocation. The reply's registers say which and
    /// with what seL4 error ([`crate::KernelFailure`]). memsrv undid the
    /// request, so it may be retried, except for what cannot be undone:
    /// FREE keeps the attachments it already revoked (and once it revoked
    /// the buffer's memory, the buffer answers every op but its owner's FREE
    /// as freed); an ATTACH whose undo failed too stays attached (DETACH
    /// removes it); an ALLOC whose undo failed loses its metadata block,
    /// counted in POOL_INFO's lost bytes.
    Kernel = 22,
    /// The caller's mapping window ([`crate::CLIENT_WINDOW`]) has no free run
    /// of 2 MiB slots large enough for the buffer: detach something first.
    WindowFull = 23,
    /// memsrv found its own bookkeeping inconsistent: a bug in memsrv. The
    /// request was refused.
    Internal = 24,
    /// EXPORT by a client that `system.xml` does not give `frame_caps="true"`:
    /// it may never hold frame capabilities. Answered before the id is looked at.
    NotExportable = 25,
    /// RECLAIM by a client that is not the target's supervisor in
    /// `system.xml`, or of a client id memsrv has no client for (one answer
    /// for both, so that a client cannot probe which ids exist).
    NotSupervisor = 26,
    /// Not a failure: an ALLOC with [`crate::AllocFlags::WAIT`] found too
    /// little memory or quota, and memsrv registered it. memsrv notifies the
    /// caller on its channel when a free may have made room; the caller then
    /// retries the ALLOC. memsrv holds nothing for it meanwhile: a retry that
    /// loses the race is answered WAITING again.
    Waiting = 27,
    /// GRANT to one more client of a buffer that already has the most
    /// holders memsrv keeps per buffer (`capbuf_server::MAX_HOLDERS`: the
    /// owner and the clients holding a grant, attachment or export of it).
    /// Withdraw a grant first.
    TooManyHolders = 28,
    /// ATTACH by a client whose device is behind an IOMMU (`io_space` in
    /// `system.xml`) of a buffer with 2 MiB frames: the kernel maps only
    /// 4 KiB frames into an I/O address space (`seL4_X86_Page_MapIO`). Such a
    /// client's own ALLOCs are made of 4 KiB frames; a buffer from another
    /// client can be I/O-mapped only if it has no 2 MiB frame.
    NotIoMappable = 29,
    /// The label is not an [`crate::Op`].
    UnknownOp = 0xFFFF_FE00,
    /// The message has the wrong number of message registers for its op.
    WrongLength = 0xFFFF_FE01,
    /// The request carried capabilities; none is expected.
    UnexpectedCaps = 0xFFFF_FE02,
    /// The caller is not a configured client of memsrv.
    UnknownCaller = 0xFFFF_FE03,
}

impl Error {
    /// First value of the message-decoding range.
    pub const DECODE_BASE: u64 = 0xFFFF_FE00;

    /// Every error, for tables and generated headers.
    pub const ALL: [Error; 33] = [
        Error::ZeroSize,
        Error::TooLarge,
        Error::InvalidAlignment,
        Error::InvalidPool,
        Error::InvalidFlags,
        Error::InvalidRights,
        Error::UnknownBuffer,
        Error::StaleBuffer,
        Error::NotOwner,
        Error::NotGranted,
        Error::RightsEscalation,
        Error::AlreadyAttached,
        Error::NotAttached,
        Error::QuotaBytes,
        Error::QuotaBuffers,
        Error::QuotaAttachments,
        Error::OutOfMemory,
        Error::TooManyBuffers,
        Error::InvalidGrantee,
        Error::NotGrantee,
        Error::OutOfSlots,
        Error::Kernel,
        Error::WindowFull,
        Error::Internal,
        Error::NotExportable,
        Error::NotSupervisor,
        Error::Waiting,
        Error::TooManyHolders,
        Error::NotIoMappable,
        Error::UnknownOp,
        Error::WrongLength,
        Error::UnexpectedCaps,
        Error::UnknownCaller,
    ];

    /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Error::ZeroSize => "ZERO_SIZE",
            Error::TooLarge => "TOO_LARGE",
            Error::InvalidAlignment => "INVALID_ALIGNMENT",
            Error::InvalidPool => "INVALID_POOL",
            Error::InvalidFlags => "INVALID_FLAGS",
            Error::InvalidRights => "INVALID_RIGHTS",
            Error::UnknownBuffer => "UNKNOWN_BUFFER",
            Error::StaleBuffer => "STALE_BUFFER",
            Error::NotOwner => "NOT_OWNER",
            Error::NotGranted => "NOT_GRANTED",
            Error::RightsEscalation => "RIGHTS_ESCALATION",
            Error::AlreadyAttached => "ALREADY_ATTACHED",
            Error::NotAttached => "NOT_ATTACHED",
            Error::QuotaBytes => "QUOTA_BYTES",
            Error::QuotaBuffers => "QUOTA_BUFFERS",
            Error::QuotaAttachments => "QUOTA_ATTACHMENTS",
            Error::OutOfMemory => "OUT_OF_MEMORY",
            Error::TooManyBuffers => "TOO_MANY_BUFFERS",
            Error::InvalidGrantee => "INVALID_GRANTEE",
            Error::NotGrantee => "NOT_GRANTEE",
            Error::OutOfSlots => "OUT_OF_SLOTS",
            Error::Kernel => "KERNEL",
            Error::WindowFull => "WINDOW_FULL",
            Error::Internal => "INTERNAL",
            Error::NotExportable => "NOT_EXPORTABLE",
            Error::NotSupervisor => "NOT_SUPERVISOR",
            Error::Waiting => "WAITING",
            Error::TooManyHolders => "TOO_MANY_HOLDERS",
            Error::NotIoMappable => "NOT_IO_MAPPABLE",
            Error::UnknownOp => "UNKNOWN_OP",
            Error::WrongLength => "WRONG_LENGTH",
            Error::UnexpectedCaps => "UNEXPECTED_CAPS",
            Error::UnknownCaller => "UNKNOWN_CALLER",
        }
    }

    /// The code as it travels in a reply label.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// Names of the error reply's message registers, in order: only a
    /// KERNEL reply carries any ([`crate::KernelFailure`]).
    pub const fn reply_fields(self) -> &'static [crate::Field] {
        match self {
            Error::Kernel => crate::KernelFailure::FIELDS,
            _ => &[],
        }
    }
}

impl TryFrom<u64> for Error {
    type Error = u64;

    fn try_from(code: u64) -> Result<Self, u64> {
        Error::ALL.into_iter().find(|error| error.code() == code).ok_or(code)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "capbuf error {} ({})", self.code(), self.name())
    }
}

const _: () = assert!(Error::NotIoMappable as u64 == 29, "domain errors are numbered 1..=29 without gaps");
const _: () = assert!(Error::UnknownOp as u64 == Error::DECODE_BASE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for (i, a) in Error::ALL.iter().enumerate() {
            assert_ne!(a.code(), 0, "0 means success");
            assert_eq!(Error::try_from(a.code()), Ok(*a));
            for b in &Error::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
                assert_ne!(a.name(), b.name());
            }
        }
        assert_eq!(Error::try_from(0), Err(0));
        assert_eq!(Error::try_from(28), Ok(Error::TooManyHolders));
        assert_eq!(Error::try_from(29), Ok(Error::NotIoMappable));
        assert_eq!(Error::try_from(30), Err(30));
    }

    #[test]
    fn fixed_codes_never_move() {
        assert_eq!(Error::Kernel as u64, 22);
        assert_eq!(Error::NotExportable as u64, 25);
        assert_eq!(Error::NotSupervisor as u64, 26);
        assert_eq!(Error::Waiting as u64, 27);
        assert_eq!(Error::TooManyHolders as u64, 28);
        assert_eq!(Error::NotIoMappable as u64, 29);
        assert_eq!(Error::NotSupervisor.name(), "NOT_SUPERVISOR");
        assert_eq!(Error::Waiting.name(), "WAITING");
    }

    #[test]
    fn decode_errors_live_in_their_own_range() {
        for error in Error::ALL {
            let is_decode =
                matches!(error, Error::UnknownOp | Error::WrongLength | Error::UnexpectedCaps | Error::UnknownCaller);
            assert_eq!(error.code() >= Error::DECODE_BASE, is_decode, "{error:?}");
        }
    }
}
