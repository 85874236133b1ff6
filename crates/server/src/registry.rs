//! The buffer table: ids with generations, owners, grants and attachments.

use capbuf_pool::Allocation;
use capbuf_protocol::{AllocFlags, BufferId, Error, Rights, MAX_CLIENTS};

use crate::kernel::Slot;

/// Buffers memsrv can track at once (the protocol's limit).
pub use capbuf_protocol::MAX_BUFFERS;

/// One client's attachment to a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Rights of the mapping (and of the frame copies behind it).
    pub rights: Rights,
    /// Block of the attaching client's reserve holding its CNode and page
    /// table (an index into [`crate::Reserves`]).
    pub meta: usize,
    /// Table slot of the CNode holding the frame copies memsrv mapped.
    pub cnode: Slot,
    /// Where in the client's window the attachment is mapped.
    pub window: crate::window::Run,
}

/// One `frame_caps` client's export of a buffer: a CNode of frame copies
/// memsrv sent it (EXPORT), held in a block of that client's reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exported {
    /// Rights of the frame copies.
    pub rights: Rights,
    /// Block of the client's reserve holding the CNode (an index into
    /// [`crate::Reserves`]). Narrow, like `cnode`, because every buffer
    /// has room for every client's export.
    pub meta: u16,
    /// Table slot of memsrv's capability to the CNode (the client holds a copy).
    pub cnode: u16,
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
    /// Alignment asked for, as a power of two in pages (0: none beyond a page).
    pub align_order: u32,
    /// Block of the owner's reserve holding the master CNode (an index into
    /// [`crate::Reserves`]).
    pub meta: usize,
    /// Table slot of the master CNode, which holds the original frame capabilities.
    pub master: Slot,
    /// Allocation flags.
    pub flags: AllocFlags,
    /// Rights granted to each client (the owner needs none).
    pub grants: [Option<Rights>; MAX_CLIENTS],
    /// Each client's attachment.
    pub attachments: [Option<Attachment>; MAX_CLIENTS],
    /// Each client's export (EXPORT); counted with its attachments against
    /// its quota.
    pub exports: [Option<Exported>; MAX_CLIENTS],
    /// A FREE revoked part of the buffer's memory before the kernel refused
    /// a later invocation: only the owner's FREE, which completes it, still
    /// finds the buffer; everyone else is answered as if it were freed.
    pub freeing: bool,
    /// Bit `c` set: client index `c` is `dma` and a successful INFO gave it
    /// the physical address, and it has not quiesced since. FREE then
    /// quarantines the pages ([`crate::quarantine`]).
    pub exposed: u16,
}

/// Pages charged to the owner's byte quota for a buffer of `pages` pages
/// aligned to `2^align_order` pages.
///
/// The pool hands out the first `pages` pages of a naturally aligned block of
/// `2^ceil(log2 pages)` pages, or of `2^align_order` pages if that is larger,
/// and gives the rest of the block back. An alignment up to the buffer's own
/// power-of-two size therefore costs nothing an unaligned buffer does not, and
/// only the pages are charged. A larger alignment breaks a whole aligned block
/// for a small buffer: what is left of it serves only smaller requests, and
/// four 4 KiB buffers aligned to 4 MiB leave no 8 MiB block in a 16 MiB pool.
/// So the requester pays for the whole aligned block, and its byte quota
/// bounds the large blocks it can break as it bounds the memory it holds.
/// Capping the alignment at the buffer's size instead would refuse what
/// devices legitimately ask for (a small descriptor ring on a large boundary).
pub const fn charged_pages(pages: u64, align_order: u32) -> u64 {
    let aligned = 1u64 << align_order;
    if aligned > pages.next_power_of_two() {
        aligned
    } else {
        pages
    }
}

impl Buffer {
    /// Pages charged to the owner's byte quota: see [`charged_pages`].
    pub fn charged_pages(&self) -> u64 {
        charged_pages(self.data.pages, self.align_order)
    }

    /// Rights client `client` may attach with, if any.
    pub fn allowed(&self, client: usize) -> Option<Rights> {
        if client == self.owner {
            Some(self.flags.max_rights())
        } else {
            self.grants.get(client).copied().flatten()
        }
    }

    /// Whether client `client` has any right to the buffer: it owns it or was
    /// granted it (an attachment implies a grant). Only such a client may
    /// learn that the buffer exists.
    pub fn known_to(&self, client: usize) -> bool {
        self.allowed(client).is_some() || self.attachments.get(client).is_some_and(Option::is_some)
    }

    /// Number of attachments, all clients together.
    pub fn attachment_count(&self) -> u64 {
        self.attachments.iter().flatten().count() as u64
    }
}

/// Fixed table of buffers. A slot's generation grows on every free, so ids
/// issued before a free are told apart from the slot's next buffer.
///
/// Clients look buffers up through [`Registry::get_for`], which is no oracle:
/// a client with no right to a buffer is told [`Error::UnknownBuffer`]
/// whether the id is live, was freed or was never issued. Only a client that
/// had a right to a buffer when it was freed (its owner, a grantee) hears
/// [`Error::StaleBuffer`] for it, as it knew the buffer existed anyway.
#[derive(Clone)]
pub struct Registry {
    entries: [Option<Buffer>; MAX_BUFFERS],
    /// Generation the slot's live (or next) buffer has. Starts at 1.
    generations: [u32; MAX_BUFFERS],
    /// Per slot and client: which of the slot's buffers were freed while the
    /// client had a right to them.
    freed_while_known: [[KnownFrees; MAX_CLIENTS]; MAX_BUFFERS],
}

/// The generations of one slot that one client had a right to when they were
/// freed: the latest, and the [`KnownFrees::SPAN`] before it as a bit mask.
/// Older ones are forgotten and read as unknown: never stale to someone who
/// had no right to them, which is what matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KnownFrees {
    /// Latest such generation (0: none yet).
    latest: u32,
    /// Bit `i` set: generation `latest - i` was one.
    mask: u32,
}

impl KnownFrees {
    const SPAN: u32 = u32::BITS;

    fn record(&mut self, generation: u32) {
        let shift = generation.saturating_sub(self.latest);
        self.mask = if shift >= Self::SPAN { 0 } else { self.mask << shift };
        self.mask |= 1;
        self.latest = generation;
    }

    fn contains(&self, generation: u32) -> bool {
        let age = self.latest.wrapping_sub(generation);
        generation != 0 && generation <= self.latest && age < Self::SPAN && self.mask & (1 << age) != 0
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            entries: [const { None }; MAX_BUFFERS],
            generations: [1; MAX_BUFFERS],
            freed_while_known: [[KnownFrees::default(); MAX_CLIENTS]; MAX_BUFFERS],
        }
    }
}

impl Registry {
    /// Write everything the registry knows to `out`, for
    /// [`crate::Server::fingerprint`]: the live buffers, each slot's next
    /// generation, and which freed generations each client knew.
    pub(crate) fn digest(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            if let Some(b) = entry {
                // Field by field, and per client only what it has: the
                // per-client arrays are long and mostly empty.
                write!(
                    out,
                    "buffer {index}: {} {} {:?} {} {} {} {:?} {} {};",
                    b.owner, b.pool, b.data, b.align_order, b.meta, b.master, b.flags, b.freeing, b.exposed
                )?;
                for client in 0..MAX_CLIENTS {
                    let (grant, attachment, export) = (b.grants[client], b.attachments[client], b.exports[client]);
                    if grant.is_some() || attachment.is_some() || export.is_some() {
                        write!(out, "client {client}: {grant:?} {attachment:?} {export:?};")?;
                    }
                }
            }
        }
        for (index, generation) in self.generations.iter().enumerate().filter(|(_, g)| **g != 1) {
            write!(out, "generation {index}: {generation};")?;
        }
        for (index, clients) in self.freed_while_known.iter().enumerate() {
            for (client, known) in clients.iter().enumerate().filter(|(_, k)| **k != KnownFrees::default()) {
                write!(out, "freed {index} {client}: {known:?};")?;
            }
        }
        Ok(())
    }

    /// Look up a live buffer on behalf of client `client`. A buffer the
    /// client has no right to, a freed one and a never-issued id all give
    /// [`Error::UnknownBuffer`], except that a client that had a right to the
    /// buffer when it was freed gets [`Error::StaleBuffer`] (a double free).
    pub fn get_for(&self, client: usize, id: BufferId) -> Result<&Buffer, Error> {
        match self.get(id) {
            Ok(buffer) if buffer.freeing && buffer.known_to(client) => Err(Error::StaleBuffer),
            Ok(buffer) if buffer.known_to(client) => Ok(buffer),
            Ok(_) => Err(Error::UnknownBuffer),
            Err(Error::StaleBuffer) if self.was_known(client, id) => Err(Error::StaleBuffer),
            Err(_) => Err(Error::UnknownBuffer),
        }
    }

    /// Look up a buffer for its owner's FREE: as [`Self::get_for`], but a
    /// buffer whose FREE the kernel interrupted ([`Buffer::freeing`]) is
    /// still found by its owner, so that FREE can be retried.
    pub fn get_to_free(&self, client: usize, id: BufferId) -> Result<&Buffer, Error> {
        match self.get(id) {
            Ok(buffer) if buffer.freeing && buffer.owner == client => Ok(buffer),
            _ => self.get_for(client, id),
        }
    }

    fn was_known(&self, client: usize, id: BufferId) -> bool {
        let known = self.freed_while_known.get(id.index() as usize).and_then(|slot| slot.get(client));
        known.is_some_and(|known| known.contains(id.generation()))
    }

    /// Look up a live buffer for memsrv itself, telling never-issued ids
    /// from freed ones. Never answer a client with this: see [`Self::get_for`].
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

    /// Remove a buffer; its id and every copy of it become stale for the
    /// clients that had a right to it. A slot whose generation would wrap is
    /// retired instead of reused.
    pub fn remove(&mut self, id: BufferId) -> Result<Buffer, Error> {
        let buffer = self.get(id)?;
        let known: [bool; MAX_CLIENTS] = core::array::from_fn(|client| buffer.known_to(client));
        let index = id.index() as usize;
        for (client, known) in known.into_iter().enumerate() {
            if known {
                self.freed_while_known[index][client].record(id.generation());
            }
        }
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
        self.entries.iter().all(Option::is_none)
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
            align_order: 0,
            meta: 0,
            master: 9,
            flags: AllocFlags::default(),
            grants: [None; MAX_CLIENTS],
            attachments: [None; MAX_CLIENTS],
            exports: [None; MAX_CLIENTS],
            freeing: false,
            exposed: 0,
        }
    }

    #[test]
    fn a_buffer_being_freed_is_found_only_by_its_owners_free() {
        let mut registry = Registry::default();
        let (owner, grantee, outsider) = (0, 1, 2);
        let mut shared = buffer();
        shared.grants[grantee] = Some(Rights::ReadOnly);
        let id = registry.insert(shared).unwrap();
        registry.get_mut(id).unwrap().freeing = true;
        assert_eq!(registry.get_for(owner, id).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_for(grantee, id).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_for(outsider, id).err(), Some(Error::UnknownBuffer), "no oracle");
        assert!(registry.get_to_free(owner, id).is_ok());
        assert_eq!(registry.get_to_free(grantee, id).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_to_free(outsider, id).err(), Some(Error::UnknownBuffer));
        registry.remove(id).unwrap();
        assert_eq!(registry.get_to_free(owner, id).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_for(grantee, id).err(), Some(Error::StaleBuffer));
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
    fn a_client_without_a_right_learns_nothing_from_the_error() {
        let mut registry = Registry::default();
        let (owner, grantee, outsider) = (0, 1, 2);
        let mut shared = buffer();
        shared.grants[grantee] = Some(Rights::ReadOnly);
        let live = registry.insert(shared).unwrap();
        let freed = registry.insert(buffer()).unwrap();
        registry.get_mut(freed).unwrap().grants[grantee] = Some(Rights::ReadWrite);
        registry.remove(freed).unwrap();
        let never = BufferId::new(7, 1);
        for id in [live, freed, never, BufferId::new(freed.index(), 9), BufferId::new(1000, 1)] {
            assert_eq!(registry.get_for(outsider, id).err(), Some(Error::UnknownBuffer), "{id}");
        }
        assert!(registry.get_for(owner, live).is_ok());
        assert!(registry.get_for(grantee, live).is_ok());
        assert_eq!(registry.get_for(owner, freed).err(), Some(Error::StaleBuffer), "double free");
        assert_eq!(registry.get_for(grantee, freed).err(), Some(Error::StaleBuffer), "a former grantee");
        assert_eq!(registry.get_for(owner, never).err(), Some(Error::UnknownBuffer));

        // The slot is reused and freed again without the grantee: the grantee
        // still knows its own old id is stale, but learns nothing of the new one.
        let again = registry.insert(buffer()).unwrap();
        assert_eq!(again.index(), freed.index());
        assert_eq!(registry.get_for(grantee, again).err(), Some(Error::UnknownBuffer));
        registry.remove(again).unwrap();
        assert_eq!(registry.get_for(grantee, again).err(), Some(Error::UnknownBuffer));
        assert_eq!(registry.get_for(grantee, freed).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_for(owner, again).err(), Some(Error::StaleBuffer));
        assert_eq!(registry.get_for(owner, freed).err(), Some(Error::StaleBuffer), "still remembered");
    }

    #[test]
    fn each_client_remembers_the_last_thirty_two_generations_it_knew() {
        let mut known = KnownFrees::default();
        assert!(!known.contains(0) && !known.contains(1));
        for generation in [1, 2, 5, 40] {
            known.record(generation);
        }
        assert!(known.contains(40));
        assert!(!known.contains(5), "older than the span: forgotten");
        assert!(!known.contains(39) && !known.contains(41) && !known.contains(0));
        known.record(41);
        known.record(72);
        assert!(known.contains(72) && known.contains(41) && !known.contains(40));
        known.record(u32::MAX - 1);
        assert!(known.contains(u32::MAX - 1) && !known.contains(72));
    }

    #[test]
    fn alignment_beyond_the_buffers_own_block_is_charged() {
        assert_eq!(charged_pages(1, 0), 1);
        assert_eq!(charged_pages(5, 3), 5, "a 5-page buffer takes an 8-page block anyway");
        assert_eq!(charged_pages(5, 4), 16, "the whole 16-page block it breaks");
        assert_eq!(charged_pages(1, 10), 1024, "4 KiB aligned to 4 MiB pays 4 MiB");
        assert_eq!(charged_pages(1024, 10), 1024);
        assert_eq!(charged_pages(1025, 10), 1025);
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
