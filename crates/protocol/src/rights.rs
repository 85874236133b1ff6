//! Access rights and allocation flags as they travel in message registers.

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

/// Flags given at allocation, fixed for the buffer's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocFlags(u64);

impl AllocFlags {
    /// Clients should map the buffer uncached (device memory shared with DMA
    /// that does not snoop caches). memsrv reports it; the client library
    /// maps accordingly.
    pub const UNCACHED: u64 = 1 << 0;
    /// Nobody, owner included, may attach with write rights: for buffers a
    /// device writes and the CPU only reads.
    pub const READ_ONLY: u64 = 1 << 1;
    /// Every defined bit.
    pub const ALL: u64 = Self::UNCACHED | Self::READ_ONLY;

    /// Flags from their wire form; unknown bits are refused.
    pub const fn from_bits(bits: u64) -> Option<AllocFlags> {
        if bits & !Self::ALL == 0 {
            Some(AllocFlags(bits))
        } else {
            None
        }
    }

    /// Wire form.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether [`Self::UNCACHED`] is set.
    pub const fn uncached(self) -> bool {
        self.0 & Self::UNCACHED != 0
    }

    /// The most any attachment may hold.
    pub const fn max_rights(self) -> Rights {
        if self.0 & Self::READ_ONLY != 0 {
            Rights::ReadOnly
        } else {
            Rights::ReadWrite
        }
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
        assert_eq!(AllocFlags::from_bits(0), Some(AllocFlags::default()));
        assert!(AllocFlags::from_bits(3).is_some());
        assert_eq!(AllocFlags::from_bits(4), None);
        assert_eq!(AllocFlags::from_bits(1 << 63), None);
        assert_eq!(AllocFlags::from_bits(2).unwrap().max_rights(), Rights::ReadOnly);
    }
}
