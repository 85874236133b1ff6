//! Memory a device may still write: freed buffers whose physical address a
//! `dma` client learnt, held out of the pool until every such client
//! confirms (QUIESCE) that its device no longer uses them.
//!
//! Revoking a buffer's frames stops every CPU mapping, but a device given the
//! physical address keeps writing wherever it was told. So a buffer exposed to
//! a `dma` client (a successful INFO returned the address to it) is freed in
//! full (mappings, frames, metadata, the owner's quota) except its pages: they
//! stay allocated in the pool's tree, here, until the last exposed client
//! quiesces. Zircon does the same with pinned memory tokens it quarantines
//! when a driver unpins without the device having stopped.

use capbuf_pool::Allocation;
use capbuf_protocol::{BufferId, MAX_CLIENTS};

use crate::registry::MAX_BUFFERS;

const _: () =
    assert!(MAX_CLIENTS <= u64::BITS as usize, "one bit per client in Quarantined::pending and Buffer::exposed");

/// The pages of one freed buffer, and who still has to confirm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The freed buffer's id, exactly as issued: QUIESCE must name it.
    pub id: BufferId,
    /// Pool index.
    pub pool: usize,
    /// The buffer's pages, still allocated in the pool.
    pub data: Allocation,
    /// Bit `c` set: client index `c` was exposed and has not quiesced.
    pub pending: u64,
}

/// Fixed table of quarantined buffers: at most [`MAX_BUFFERS`].
#[derive(Clone, Default)]
pub struct Quarantine {
    entries: heapless::Vec<Quarantined, MAX_BUFFERS>,
}

impl Quarantine {
    /// Whether one more buffer fits. FREE checks this before its first
    /// invocation, so that the hold cannot fail after the frames are revoked.
    pub fn has_room(&self) -> bool {
        !self.entries.is_full()
    }

    /// How many more buffers fit.
    pub fn room(&self) -> usize {
        self.entries.capacity() - self.entries.len()
    }

    /// The freed buffers client `client` has yet to confirm: what RECLAIM
    /// confirms for it.
    pub fn pending_for(&self, client: usize) -> heapless::Vec<BufferId, MAX_BUFFERS> {
        let bit = 1u64.checked_shl(client as u32).unwrap_or(0);
        self.entries.iter().filter(|e| e.pending & bit != 0).map(|e| e.id).collect()
    }

    /// Hold a freed buffer's pages. Fails only if [`Self::has_room`] was false.
    pub fn hold(&mut self, entry: Quarantined) -> Result<(), Quarantined> {
        self.entries.push(entry)
    }

    /// Client `client`'s confirmation for freed buffer `id`: clears its bit
    /// if it is pending. Returns `None` if the client had nothing to confirm
    /// for that id; otherwise whether the entry is done, and then removes
    /// it and returns it so its pages can go back to the pool.
    pub fn confirm(&mut self, client: usize, id: BufferId) -> Option<Option<Quarantined>> {
        let bit = 1u64.checked_shl(client as u32)?;
        let index = self.entries.iter().position(|e| e.id == id && e.pending & bit != 0)?;
        self.entries[index].pending &= !bit;
        if self.entries[index].pending != 0 {
            return Some(None);
        }
        Some(Some(self.entries.swap_remove(index)))
    }

    /// Every quarantined buffer.
    pub fn iter(&self) -> impl Iterator<Item = &Quarantined> {
        self.entries.iter()
    }

    /// Pages held in quarantine in pool `pool`.
    pub fn pages_in(&self, pool: usize) -> u64 {
        self.entries.iter().filter(|e| e.pool == pool).map(|e| e.data.pages).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: BufferId, pending: u64) -> Quarantined {
        Quarantined { id, pool: 0, data: Allocation { offset: 8, pages: 3 }, pending }
    }

    #[test]
    fn an_entry_leaves_when_the_last_exposed_client_confirms() {
        let mut quarantine = Quarantine::default();
        let id = BufferId::new(2, 5);
        quarantine.hold(entry(id, 0b101)).unwrap();
        assert_eq!(quarantine.pages_in(0), 3);
        assert_eq!(quarantine.room(), MAX_BUFFERS - 1);
        assert_eq!(quarantine.pending_for(2).as_slice(), [id]);
        assert!(quarantine.pending_for(1).is_empty());
        assert_eq!(quarantine.confirm(1, id), None, "client 1 was never exposed");
        assert_eq!(quarantine.confirm(0, BufferId::new(2, 4)), None, "not the freed id");
        assert_eq!(quarantine.confirm(0, id), Some(None));
        assert_eq!(quarantine.confirm(0, id), None, "confirmed once");
        assert_eq!(quarantine.confirm(2, id), Some(Some(entry(id, 0))));
        assert_eq!(quarantine.pages_in(0), 0);
        assert_eq!(quarantine.confirm(16, id), None);
    }

    #[test]
    fn the_table_holds_at_most_max_buffers() {
        let mut quarantine = Quarantine::default();
        for i in 0..MAX_BUFFERS {
            assert!(quarantine.has_room());
            quarantine.hold(entry(BufferId::new(i as u32, 1), 1)).unwrap();
        }
        assert!(!quarantine.has_room());
        assert_eq!(quarantine.room(), 0);
        assert!(quarantine.hold(entry(BufferId::new(0, 2), 1)).is_err());
    }
}
