//! Buffer ids that cannot be confused once freed.

use crate::{Error, Word};

/// A buffer's name on the wire: a table index in the low 32 bits and a
/// generation in the high 32 bits. Freeing bumps the generation of the slot,
/// so an id held after a free is refused as stale instead of naming whatever
/// buffer reuses the slot. Generations start at 1, so 0 is never a valid id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(u64);

impl BufferId {
    /// Compose an id from its parts.
    pub const fn new(index: u32, generation: u32) -> BufferId {
        BufferId(((generation as u64) << 32) | index as u64)
    }

    /// An id as received from the wire, not yet checked.
    pub const fn from_raw(raw: u64) -> BufferId {
        BufferId(raw)
    }

    /// Wire form.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Table index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }

    /// Generation of the table slot when the id was issued.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl Word for BufferId {
    const C_DESCRIPTION: &'static str = "capbuf_id_t";

    /// Every word is an id; memsrv checks it names a buffer the caller may use.
    fn from_word(word: u64) -> Result<Self, Error> {
        Ok(BufferId(word))
    }

    fn to_word(self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for BufferId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.index(), self.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let id = BufferId::new(7, 0xdead_beef);
        assert_eq!(id.index(), 7);
        assert_eq!(id.generation(), 0xdead_beef);
        assert_eq!(BufferId::from_raw(id.raw()), id);
        assert_ne!(BufferId::new(7, 1), BufferId::new(7, 2));
    }
}
