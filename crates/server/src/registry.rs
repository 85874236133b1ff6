//! The buffer table: ids with generations, owners, grants and attachments.

use capbuf_pool::Allocation;
use capbuf_protocol::{AllocFlags, BufferId, Error, Rights, MAX_CLIENTS};

use crate::kernel::Slot;

/// Buffers memsrv can track at once.
pub const MAX_BUFFERS: usize = 128;

/// One client's attachment to a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Rights of the frame capabilities it holds.
    pub rights: Rights,
    /// Untyped block holding its CNode and page table.
    pub meta: Allocation,
    /// Table slot of the guarded CNode capability sent to the client.
    pub cnode: Slot,
}

/// A live buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Index of the owning client.
    pub owner: usize,
    /// Pool index.
    pub pool: usize,
    /// The buffer's pages.
    pub data: Allocation,
    /// Untyped block holding the master CNode.
    pub meta: Allocation,
    /// Table slot of the master CNode, which holds the original frame capabilities.
    pub master: Slot,
    /// Allocation flags.
    pub flags: AllocFlags,
    /// Rights granted to each client (the owner needs none).
    pub grants: [Option<Rights>; MAX_CLIENTS],
    /// Each client's attachment.
    pub attachments: [Option<Attachment>; MAX_CLIENTS],
}

impl Buffer {
    /// Rights client `client` may attach with, if any.
    pub fn allowed(&self, client: usize) -> Option<Rights> {
        if client == self.owner {
            Some(self.flags.max_rights())
        } else {
            self.grants.get(client).copied().flatten()
        }
    }

    /// Number of attachments, all clients together.
    pub fn attachment_count(&self) -> u64 {
        self.attachments.iter().flatten().count() as u64
    }
}

/// Fixed table of buffers. A slot's generation grows on every free, so ids
/// issued before a free are told apart from the slot's next buffer.
pub struct Registry {
    entries: [Option<Buffer>; MAX_BUFFERS],
    /// Generation the slot's live (or next) buffer has. Starts at 1.
    generations: [u32; MAX_BUFFERS],
}

impl Default for Registry {
    fn default() -> Self {
        Registry { entries: [const { None }; MAX_BUFFERS], generations: [1; MAX_BUFFERS] }
    }
}

impl Registry {
    /// Look up a live buffer, telling never-issued ids from freed ones.
    pub fn get(&self, id: BufferId) -> Result<&Buffer, Error> {
        let index = id.index() as usize;
        let generation = *self.generations.get(index).ok_or(Error::UnknownBuffer)?;
        match &self.entries[index] {
            Some(buffer) if id.generation() == generation => Ok(buffer),
            _ if id.generation() >= 1 && id.generation() < generation => Err(Error::StaleBuffer),
            _ => Err(Error::UnknownBuffer),
        }
    }

    /// Mutable access to a live buffer; same checks as [`Self::get`].
    pub fn get_mut(&mut self, id: BufferId) -> Result<&mut Buffer, Error> {
        self.get(id)?;
        self.entries[id.index() as usize].as_mut().ok_or(Error::UnknownBuffer)
    }

    /// Whether a new buffer fits.
    pub fn has_room(&self) -> bool {
        self.free_index().is_some()
    }

    fn free_index(&self) -> Option<usize> {
        (0..MAX_BUFFERS).find(|&i| self.entries[i].is_none() && self.generations[i] != u32::MAX)
    }

    /// Store a new buffer and issue its id.
    pub fn insert(&mut self, buffer: Buffer) -> Result<BufferId, Error> {
        let index = self.free_index().ok_or(Error::TooManyBuffers)?;
        self.entries[index] = Some(buffer);
        Ok(BufferId::new(index as u32, self.generations[index]))
    }

    /// Remove a buffer; its id and every copy of it become stale. A slot whose
    /// generation would wrap is retired instead of reused.
    pub fn remove(&mut self, id: BufferId) -> Result<Buffer, Error> {
        self.get(id)?;
        let index = id.index() as usize;
        self.generations[index] = self.generations[index].saturating_add(1);
        self.entries[index].take().ok_or(Error::UnknownBuffer)
    }

    /// Live buffers with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (BufferId, &Buffer)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|b| (BufferId::new(i as u32, self.generations[i]), b)))
    }

    /// Number of live buffers.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Whether no buffer is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> Buffer {
        let a = Allocation { offset: 0, pages: 1 };
        Buffer {
            owner: 0,
            pool: 0,
            data: a,
            meta: a,
            master: 9,
            flags: AllocFlags::default(),
            grants: [None; MAX_CLIENTS],
            attachments: [None; MAX_CLIENTS],
        }
    }

    #[test]
    fn freed_ids_are_stale_and_never_name_the_next_buffer() {
        let mut registry = Registry::default();
        let first = registry.insert(buffer()).unwrap();
        assert_eq!(first, BufferId::new(0, 1));
        assert!(registry.get(first).is_ok());
        registry.remove(first).unwrap();
        assert_eq!(registry.get(first), Err(Error::StaleBuffer));
        assert_eq!(registry.remove(first), Err(Error::StaleBuffer), "double free");
        let second = registry.insert(buffer()).unwrap();
        assert_eq!(second.index(), first.index());
        assert_eq!(registry.get(first), Err(Error::StaleBuffer));
        assert!(registry.get(second).is_ok());
        assert_eq!(registry.get(BufferId::new(0, 3)), Err(Error::UnknownBuffer), "not issued yet");
        assert_eq!(registry.get(BufferId::new(0, 0)), Err(Error::UnknownBuffer));
        assert_eq!(registry.get(BufferId::new(5, 1)), Err(Error::UnknownBuffer));
        assert_eq!(registry.get(BufferId::new(u32::MAX, 1)), Err(Error::UnknownBuffer));
    }

    #[test]
    fn the_table_fills_and_a_worn_out_slot_is_retired() {
        let mut registry = Registry::default();
        registry.generations[0] = u32::MAX - 1;
        let id = registry.insert(buffer()).unwrap();
        registry.remove(id).unwrap();
        for _ in 0..MAX_BUFFERS - 1 {
            let id = registry.insert(buffer()).unwrap();
            assert_ne!(id.index(), 0, "slot 0 has used up its generations");
        }
        assert_eq!(registry.insert(buffer()), Err(Error::TooManyBuffers));
        assert_eq!(registry.len(), MAX_BUFFERS - 1);
    }
}
