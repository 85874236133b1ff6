//! Access rights and allocation flags as they travel in message registers.

use crate::{Error, Word};

/// Rights a client holds on a buffer. ARM cannot map a page write-only, so
/// the only valid values are read-only and read-write; rights only ever shrink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u64)]
pub enum Rights {
    /// Map and read; writes fault.
    ReadOnly = 1,
    /// Map, read and write.
    ReadWrite = 3,
}

impl Rights {
    /// `true` if `self` grants no more than `limit`.
    pub const fn within(self, limit: Rights) -> bool {
        (self as u64) & !(limit as u64) == 0
    }

    /// The smaller of two rights.
    pub fn min(self, other: Rights) -> Rights {
        if self.within(other) {
            self
        } else {
            other
        }
    }

    /// Whether writes are allowed.
    pub const fn can_write(self) -> bool {
        matches!(self, Rights::ReadWrite)
    }
}

impl TryFrom<u64> for Rights {
    type Error = u64;

    fn try_from(value: u64) -> Result<Self, u64> {
        match value {
            1 => Ok(Rights::ReadOnly),
            3 => Ok(Rights::ReadWrite),
            other => Err(other),
        }
    }
}

impl Word for Rights {
    const C_DESCRIPTION: &'static str = "CAPBUF_RIGHTS_*";

    /// A request with any other value is refused with [`Error::InvalidRights`].
    fn from_word(word: u64) -> Result<Self, Error> {
        Rights::try_from(word).map_err(|_| Error::InvalidRights)
    }

    fn to_word(self) -> u64 {
        self as u64
    }
}

/// Flags given at allocation: a set of [`AllocFlags::UNCACHED`] and
/// [`AllocFlags::READ_ONLY`], fixed for the buffer's life, and
/// [`AllocFlags::WAIT`], which only concerns the request, combined with `|`.
/// A value holds only defined bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocFlags(u64);

impl AllocFlags {
    /// No flag: a cached buffer its owner may attach writable.
    pub const NONE: AllocFlags = AllocFlags(0);
    /// Clients should map the buffer uncached (device memory shared with DMA
    /// that does not snoop caches). memsrv maps every attachment of it uncached.
    pub const UNCACHED: AllocFlags = AllocFlags(1 << 0);
    /// Nobody, owner included, may attach with write rights: for buffers a
    /// device writes and the CPU only reads.
    pub const READ_ONLY: AllocFlags = AllocFlags(1 << 1);
    /// If memory or quota is short, register the request and answer
    /// [`Error::Waiting`] at once instead of OUT_OF_MEMORY, QUOTA_BYTES or
    /// QUOTA_BUFFERS; memsrv notifies the caller on its channel when a free
    /// may have made room, and the caller retries. Not a property of the
    /// buffer: memsrv never stores it ([`Self::properties`]).
    pub const WAIT: AllocFlags = AllocFlags(1 << 2);
    /// Every defined flag.
    pub const ALL: AllocFlags = Self::UNCACHED.union(Self::READ_ONLY).union(Self::WAIT);

    /// Flags from their wire form; unknown bits are refused.
    pub const fn from_bits(bits: u64) -> Option<AllocFlags> {
        if bits & !Self::ALL.0 == 0 {
            Some(AllocFlags(bits))
        } else {
            None
        }
    }

    /// Wire form.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Both sets of flags (also `self | other`).
    pub const fn union(self, other: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: AllocFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags that stay with a buffer: all but [`Self::WAIT`].
    pub const fn properties(self) -> AllocFlags {
        AllocFlags(self.0 & !Self::WAIT.0)
    }

    /// Whether [`Self::UNCACHED`] is set.
    pub const fn uncached(self) -> bool {
        self.contains(Self::UNCACHED)
    }

    /// The most any attachment may hold.
    pub const fn max_rights(self) -> Rights {
        if self.contains(Self::READ_ONLY) {
            Rights::ReadOnly
        } else {
            Rights::ReadWrite
        }
    }
}

impl core::ops::BitOr for AllocFlags {
    type Output = AllocFlags;

    fn bitor(self, other: AllocFlags) -> AllocFlags {
        self.union(other)
    }
}

impl core::ops::BitOrAssign for AllocFlags {
    fn bitor_assign(&mut self, other: AllocFlags) {
        *self = self.union(other);
    }
}

impl Word for AllocFlags {
    const C_DESCRIPTION: &'static str = "CAPBUF_FLAG_* bits";

    /// A request with an unknown bit set is refused with [`Error::InvalidFlags`].
    fn from_word(word: u64) -> Result<Self, Error> {
        AllocFlags::from_bits(word).ok_or(Error::InvalidFlags)
    }

    fn to_word(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_only_shrink() {
        assert!(Rights::ReadOnly.within(Rights::ReadWrite));
        assert!(Rights::ReadOnly.within(Rights::ReadOnly));
        assert!(Rights::ReadWrite.within(Rights::ReadWrite));
        assert!(!Rights::ReadWrite.within(Rights::ReadOnly));
        assert_eq!(Rights::ReadWrite.min(Rights::ReadOnly), Rights::ReadOnly);
        for bad in [0, 2, 4, 7, u64::MAX] {
            assert_eq!(Rights::try_from(bad), Err(bad));
        }
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        assert_eq!(AllocFlags::from_bits(0), Some(AllocFlags::NONE));
        assert_eq!(AllocFlags::from_bits(3), Some(AllocFlags::UNCACHED | AllocFlags::READ_ONLY));
        assert_eq!(AllocFlags::from_bits(4), Some(AllocFlags::WAIT));
        assert_eq!(AllocFlags::from_bits(8), None);
        assert_eq!(AllocFlags::from_bits(1 << 63), None);
        assert_eq!(AllocFlags::from_bits(2).unwrap().max_rights(), Rights::ReadOnly);
    }

    #[test]
    fn flags_combine() {
        let mut flags = AllocFlags::NONE;
        assert!(!flags.uncached() && flags.max_rights() == Rights::ReadWrite);
        flags |= AllocFlags::UNCACHED;
        assert!(flags.uncached() && !flags.contains(AllocFlags::READ_ONLY));
        assert_eq!(flags | AllocFlags::READ_ONLY, AllocFlags::ALL.properties());
        assert_eq!((AllocFlags::UNCACHED | AllocFlags::UNCACHED).bits(), 1);
        assert_eq!(AllocFlags::WAIT.bits(), 4, "ABI");
        assert_eq!((AllocFlags::ALL).properties(), AllocFlags::UNCACHED | AllocFlags::READ_ONLY);
    }
}
