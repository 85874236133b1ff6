//! The buffer table: ids with generations, owners, grants and attachments.

use capbuf_pool::Allocation;
use capbuf_protocol::{AllocFlags, BufferId, Error, Rights};

use crate::kernel::Slot;

/// Buffers memsrv can track at once: this build's limit
/// ([`crate::capacity`]), at most the protocol's.
pub use crate::capacity::MAX_BUFFERS;

/// Clients one buffer can have holders for at once: its owner (once it
/// attaches or exports) and the clients with a grant, attachment or export.
/// A per-client array in every buffer would cost 64 entries times 4096
/// buffers; most buffers have one or two holders. GRANT to one more client
/// is refused with [`Error::TooManyHolders`]; one entry is kept for the owner.
pub const MAX_HOLDERS: usize = 8;

/// One client's attachment to a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Rights of the mapping (and of the frame copies behind it).
    pub rights: Rights,
    /// Block of the attaching client's reserve holding its CNode and page
    /// table (an index into [`crate::Reserves`]). Narrow, like
    /// [`Exported::meta`]: a buffer keeps up to [`MAX_HOLDERS`] of these.
    pub meta: u16,
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

/// A live buffer: what ALLOC made it of, and who holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// What ALLOC made the buffer of; it never changes while the buffer lives.
    pub made: Made,
    /// The clients holding a grant, an attachment or an export of the buffer.
    pub holders: Holders,
    /// A FREE revoked part of the buffer's memory before the kernel refused
    /// a later invocation: only the owner's FREE, which completes it, still
    /// finds the buffer; everyone else is answered as if it were freed.
    pub freeing: bool,
    /// Bit `c` set: client index `c` is `dma` and a successful INFO gave it
    /// the physical address, and it has not quiesced since. FREE then
    /// quarantines the pages ([`crate::quarantine`]).
    pub exposed: u64,
}

/// What ALLOC made a buffer of ([`Registry::insert_new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Made {
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
    /// Made of 4 KiB frames only ([`crate::layout::FrameLayout::small_only`]):
    /// allocated by an `io_space` client.
    pub small_frames: bool,
}

/// What one client holds of a buffer, packed (24 bytes: a buffer keeps
/// [`MAX_HOLDERS`] of these in every one of thousands of registry slots):
/// each rights field is 0 for "none", else a [`Rights`] code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Client index.
    pub client: u8,
    grant: u8,
    attachment_rights: u8,
    export_rights: u8,
    attachment_meta: u16,
    export_meta: u16,
    export_cnode: u16,
    attachment_cnode: Slot,
    window: crate::window::Run,
}

const fn rights_code(rights: Option<Rights>) -> u8 {
    match rights {
        None => 0,
        Some(Rights::ReadOnly) => 1,
        Some(Rights::ReadWrite) => 2,
    }
}

const fn rights_of(code: u8) -> Option<Rights> {
    match code {
        1 => Some(Rights::ReadOnly),
        2 => Some(Rights::ReadWrite),
        _ => None,
    }
}

impl Holder {
    fn new(client: u8) -> Holder {
        let window = crate::window::Run { first: 0, slots: 0 };
        Holder {
            client,
            grant: 0,
            attachment_rights: 0,
            export_rights: 0,
            attachment_meta: 0,
            export_meta: 0,
            export_cnode: 0,
            attachment_cnode: 0,
            window,
        }
    }

    fn is_empty(&self) -> bool {
        self.grant == 0 && self.attachment_rights == 0 && self.export_rights == 0
    }

    /// Rights granted to it (the owner needs none).
    pub fn grant(&self) -> Option<Rights> {
        rights_of(self.grant)
    }

    /// Its attachment.
    pub fn attachment(&self) -> Option<Attachment> {
        let rights = rights_of(self.attachment_rights)?;
        Some(Attachment { rights, meta: self.attachment_meta, cnode: self.attachment_cnode, window: self.window })
    }

    /// Its export (EXPORT); counted with its attachments against its quota.
    pub fn export(&self) -> Option<Exported> {
        let rights = rights_of(self.export_rights)?;
        Some(Exported { rights, meta: self.export_meta, cnode: self.export_cnode })
    }

    fn set_grant(&mut self, grant: Option<Rights>) {
        self.grant = rights_code(grant);
    }

    fn set_attachment(&mut self, attachment: Option<Attachment>) {
        self.attachment_rights = rights_code(attachment.map(|a| a.rights));
        let empty = Holder::new(self.client);
        (self.attachment_meta, self.attachment_cnode, self.window) = match attachment {
            Some(attachment) => (attachment.meta, attachment.cnode, attachment.window),
            None => (empty.attachment_meta, empty.attachment_cnode, empty.window),
        };
    }

    fn set_export(&mut self, export: Option<Exported>) {
        self.export_rights = rights_code(export.map(|e| e.rights));
        (self.export_meta, self.export_cnode) = export.map_or((0, 0), |export| (export.meta, export.cnode));
    }
}

const _: () = assert!(core::mem::size_of::<Holder>() <= 24);

/// A buffer's holders: at most [`MAX_HOLDERS`], one entry per client, an
/// entry dropped when it holds nothing any more. Cost per lookup: a scan of
/// at most [`MAX_HOLDERS`] entries, whatever the number of clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    entries: heapless::Vec<Holder, MAX_HOLDERS>,
}

impl Holders {
    /// No holder.
    pub const NONE: Holders = Holders { entries: heapless::Vec::new() };

    /// Drop every holder (only the length is written).
    fn clear(&mut self) {
        self.entries.clear();
    }

    fn entry(&self, client: usize) -> Option<&Holder> {
        self.entries.iter().find(|holder| holder.client as usize == client)
    }

    /// Rights granted to client `client`.
    pub fn grant(&self, client: usize) -> Option<Rights> {
        self.entry(client).and_then(Holder::grant)
    }

    /// Client `client`'s attachment.
    pub fn attachment(&self, client: usize) -> Option<Attachment> {
        self.entry(client).and_then(Holder::attachment)
    }

    /// Client `client`'s export.
    pub fn export(&self, client: usize) -> Option<Exported> {
        self.entry(client).and_then(Holder::export)
    }

    /// Whether client `client` has an entry or one more entry fits.
    pub fn has_room_for(&self, client: usize) -> bool {
        self.entry(client).is_some() || !self.entries.is_full()
    }

    /// Entries held by clients other than `owner`.
    pub fn others(&self, owner: usize) -> usize {
        self.entries.iter().filter(|holder| holder.client as usize != owner).count()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &Holder> {
        self.entries.iter()
    }

    /// Every attachment, with its client.
    pub fn attachments(&self) -> impl Iterator<Item = (usize, Attachment)> + '_ {
        self.entries.iter().filter_map(|holder| Some((holder.client as usize, holder.attachment()?)))
    }

    /// Every export, with its client.
    pub fn exports(&self) -> impl Iterator<Item = (usize, Exported)> + '_ {
        self.entries.iter().filter_map(|holder| Some((holder.client as usize, holder.export()?)))
    }

    /// Change client `client`'s entry with `change`; an entry left empty is
    /// dropped. [`Error::TooManyHolders`] if it has none and none fits
    /// (checked first with [`Self::has_room_for`]).
    fn update(&mut self, client: usize, change: impl FnOnce(&mut Holder)) -> Result<(), Error> {
        let Some(index) = self.entries.iter().position(|holder| holder.client as usize == client) else {
            let client = u8::try_from(client).map_err(|_| Error::Internal)?;
            let mut holder = Holder::new(client);
            change(&mut holder);
            if holder.is_empty() {
                return Ok(());
            }
            return self.entries.push(holder).map_err(|_| Error::TooManyHolders);
        };
        change(&mut self.entries[index]);
        if self.entries[index].is_empty() {
            self.entries.swap_remove(index);
        }
        Ok(())
    }

    /// Set (or, with `None`, withdraw) client `client`'s grant.
    pub fn set_grant(&mut self, client: usize, grant: Option<Rights>) -> Result<(), Error> {
        self.update(client, |holder| holder.set_grant(grant))
    }

    /// Set (or remove) client `client`'s attachment.
    pub fn set_attachment(&mut self, client: usize, attachment: Option<Attachment>) -> Result<(), Error> {
        self.update(client, |holder| holder.set_attachment(attachment))
    }

    /// Set (or remove) client `client`'s export.
    pub fn set_export(&mut self, client: usize, export: Option<Exported>) -> Result<(), Error> {
        self.update(client, |holder| holder.set_export(export))
    }
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
    /// A registry slot's storage with no buffer in it.
    const VACANT: Buffer = Buffer {
        made: Made {
            owner: 0,
            pool: 0,
            data: Allocation { offset: 0, pages: 0 },
            align_order: 0,
            meta: 0,
            master: 0,
            flags: AllocFlags::NONE,
            small_frames: false,
        },
        holders: Holders::NONE,
        freeing: false,
        exposed: 0,
    };

    /// Pages charged to the owner's byte quota: see [`charged_pages`].
    pub fn charged_pages(&self) -> u64 {
        charged_pages(self.made.data.pages, self.made.align_order)
    }

    /// Rights client `client` may attach with, if any.
    pub fn allowed(&self, client: usize) -> Option<Rights> {
        if client == self.made.owner {
            Some(self.made.flags.max_rights())
        } else {
            self.holders.grant(client)
        }
    }

    /// Whether client `client` has any right to the buffer: it owns it or was
    /// granted it (an attachment implies a grant). Only such a client may
    /// learn that the buffer exists.
    pub fn known_to(&self, client: usize) -> bool {
        self.allowed(client).is_some() || self.holders.attachment(client).is_some()
    }

    /// Number of attachments, all clients together.
    pub fn attachment_count(&self) -> u64 {
        self.holders.attachments().count() as u64
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
    /// The buffers, live where `used` says so. A slot keeps its storage
    /// when its buffer is freed (holders emptied), so that a new buffer
    /// writes its fields and not the 200 bytes of holder entries again
    /// (`Some(Buffer { .. })` zeroed them on every ALLOC).
    entries: [Buffer; MAX_BUFFERS],
    used: [bool; MAX_BUFFERS],
    /// Generation the slot's live (or next) buffer has. Starts at 1.
    generations: [u32; MAX_BUFFERS],
    /// Per slot: the clients that had a right to some of the slot's buffers
    /// when they were freed, and which ([`KNOWN_PER_SLOT`] clients at most,
    /// the one with the oldest such buffer forgotten first).
    freed_while_known: [heapless::Vec<(u8, KnownFrees), KNOWN_PER_SLOT>; MAX_BUFFERS],
    /// Free slots, the next one to use last: ALLOC takes one in constant time.
    free: heapless::Vec<u16, MAX_BUFFERS>,
    /// Live buffers.
    live: usize,
}

/// Clients per registry slot whose old ids of that slot are remembered as
/// stale. A client forgotten here hears UNKNOWN_BUFFER, not STALE_BUFFER,
/// for an old id: never an answer that reveals something to a client that
/// had no right to the buffer, which is what matters.
pub const KNOWN_PER_SLOT: usize = 4;

const _: () = assert!(MAX_BUFFERS <= u16::MAX as usize + 1, "slot numbers fit the free list");

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
        let mut free = heapless::Vec::new();
        for index in (0..MAX_BUFFERS).rev() {
            // Cannot fail: the list holds every slot.
            let _ = free.push(index as u16);
        }
        Registry {
            entries: [const { Buffer::VACANT }; MAX_BUFFERS],
            used: [false; MAX_BUFFERS],
            generations: [1; MAX_BUFFERS],
            freed_while_known: [const { heapless::Vec::new() }; MAX_BUFFERS],
            free,
            live: 0,
        }
    }
}

impl Registry {
    /// Write everything the registry knows to `out`, for
    /// [`crate::Server::fingerprint`]: the live buffers, each slot's next
    /// generation, and which freed generations each client knew.
    pub(crate) fn digest(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        for (index, b) in self.entries.iter().enumerate() {
            if self.used[index] {
                // Field by field, and of the holders what each holds (in
                // their order, which later requests can observe), not the
                // stale fields of parts it no longer holds.
                write!(
                    out,
                    "buffer {index}: {} {} {:?} {} {} {} {:?} {} {};",
                    b.made.owner,
                    b.made.pool,
                    b.made.data,
                    b.made.align_order,
                    b.made.meta,
                    b.made.master,
                    b.made.flags,
                    b.freeing,
                    b.exposed
                )?;
                for holder in b.holders.iter() {
                    let (grant, attachment, export) = (holder.grant(), holder.attachment(), holder.export());
                    write!(out, "client {}: {grant:?} {attachment:?} {export:?};", holder.client)?;
                }
            }
        }
        for (index, generation) in self.generations.iter().enumerate().filter(|(_, g)| **g != 1) {
            write!(out, "generation {index}: {generation};")?;
        }
        for (index, clients) in self.freed_while_known.iter().enumerate() {
            for (client, known) in clients.iter().filter(|(_, k)| *k != KnownFrees::default()) {
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
            Ok(buffer) if buffer.freeing && buffer.made.owner == client => Ok(buffer),
            _ => self.get_for(client, id),
        }
    }

    fn was_known(&self, client: usize, id: BufferId) -> bool {
        let Some(slot) = self.freed_while_known.get(id.index() as usize) else { return false };
        slot.iter().any(|(known, frees)| *known as usize == client && frees.contains(id.generation()))
    }

    /// Remember that client `client` had a right to the buffer of slot
    /// `index` with generation `generation` when it was freed.
    fn record_known(&mut self, index: usize, client: usize, generation: u32) {
        let slot = &mut self.freed_while_known[index];
        let Ok(client) = u8::try_from(client) else { return };
        if let Some((_, frees)) = slot.iter_mut().find(|(known, _)| *known == client) {
            frees.record(generation);
            return;
        }
        let mut frees = KnownFrees::default();
        frees.record(generation);
        if slot.is_full() {
            // Forget the client whose latest such buffer is the oldest.
            let oldest = (0..slot.len()).min_by_key(|&i| slot[i].1.latest).unwrap_or(0);
            slot.swap_remove(oldest);
        }
        let _ = slot.push((client, frees));
    }

    /// Look up a live buffer for memsrv itself, telling never-issued ids
    /// from freed ones. Never answer a client with this: see [`Self::get_for`].
    pub fn get(&self, id: BufferId) -> Result<&Buffer, Error> {
        let index = id.index() as usize;
        let generation = *self.generations.get(index).ok_or(Error::UnknownBuffer)?;
        match &self.entries[index] {
            buffer if self.used[index] && id.generation() == generation => Ok(buffer),
            _ if id.generation() >= 1 && id.generation() < generation => Err(Error::StaleBuffer),
            _ => Err(Error::UnknownBuffer),
        }
    }

    /// Mutable access to a live buffer; same checks as [`Self::get`].
    pub fn get_mut(&mut self, id: BufferId) -> Result<&mut Buffer, Error> {
        self.get(id)?;
        Ok(&mut self.entries[id.index() as usize])
    }

    /// Whether a new buffer fits.
    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Store a new buffer and issue its id.
    pub fn insert(&mut self, buffer: Buffer) -> Result<BufferId, Error> {
        let id = self.take_slot()?;
        self.entries[id.index() as usize] = buffer;
        Ok(id)
    }

    /// Store a new buffer made of `made`, no holder yet, and issue its id.
    /// Written into its slot, whose holders are empty: not a whole new
    /// [`Buffer`], whose 200 bytes of holder entries would be written again.
    #[inline(always)]
    pub fn insert_new(&mut self, made: Made) -> Result<BufferId, Error> {
        let id = self.take_slot()?;
        let buffer = &mut self.entries[id.index() as usize];
        debug_assert!(buffer.holders.iter().next().is_none(), "a free slot's holders are empty");
        buffer.made = made;
        buffer.holders.clear();
        (buffer.freeing, buffer.exposed) = (false, 0);
        Ok(id)
    }

    /// Take a free slot for a new buffer: its id.
    fn take_slot(&mut self) -> Result<BufferId, Error> {
        let index = self.free.pop().ok_or(Error::TooManyBuffers)? as usize;
        debug_assert!(!self.used[index]);
        self.used[index] = true;
        self.live += 1;
        Ok(BufferId::new(index as u32, self.generations[index]))
    }

    /// Remove a buffer; its id and every copy of it become stale for the
    /// clients that had a right to it. A slot whose generation would wrap is
    /// retired instead of reused.
    pub fn remove(&mut self, id: BufferId) -> Result<(), Error> {
        let buffer = self.get(id)?;
        let mut known: heapless::Vec<usize, { MAX_HOLDERS + 1 }> = heapless::Vec::new();
        let _ = known.push(buffer.made.owner);
        for holder in buffer.holders.iter() {
            if holder.client as usize != buffer.made.owner && buffer.known_to(holder.client as usize) {
                let _ = known.push(holder.client as usize);
            }
        }
        let index = id.index() as usize;
        // By reference: iterating the vector by value moved its 80 bytes (a
        // call to memcpy on the AArch64 PDs).
        for &client in known.iter() {
            self.record_known(index, client, id.generation());
        }
        self.generations[index] = self.generations[index].saturating_add(1);
        // Left in place, holders emptied: the caller read what it needs.
        self.used[index] = false;
        self.entries[index].holders.clear();
        self.live -= 1;
        if self.generations[index] != u32::MAX {
            // Cannot fail: the slot was taken from the list.
            let _ = self.free.push(index as u16);
        }
        Ok(())
    }

    /// Live buffers with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (BufferId, &Buffer)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| self.used[*i])
            .map(|(i, b)| (BufferId::new(i as u32, self.generations[i]), b))
    }

    /// Number of live buffers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no buffer is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> Buffer {
        let made = Made { data: Allocation { offset: 0, pages: 1 }, master: 9, ..Buffer::VACANT.made };
        Buffer { made, ..Buffer::VACANT }
    }

    #[test]
    fn a_buffer_being_freed_is_found_only_by_its_owners_free() {
        let mut registry = Registry::default();
        let (owner, grantee, outsider) = (0, 1, 2);
        let mut shared = buffer();
        shared.holders.set_grant(grantee, Some(Rights::ReadOnly)).unwrap();
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
        shared.holders.set_grant(grantee, Some(Rights::ReadOnly)).unwrap();
        let live = registry.insert(shared).unwrap();
        let freed = registry.insert(buffer()).unwrap();
        registry.get_mut(freed).unwrap().holders.set_grant(grantee, Some(Rights::ReadWrite)).unwrap();
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
    fn a_slot_remembers_its_last_few_knowing_clients_and_forgets_the_oldest() {
        let mut registry = Registry::default();
        // Buffers in slot 0, each owned by a different client, freed in turn.
        let ids: Vec<BufferId> = (0..KNOWN_PER_SLOT + 1)
            .map(|owner| {
                let id = registry.insert(Buffer { made: Made { owner, ..buffer().made }, ..buffer() }).unwrap();
                assert_eq!(id.index(), 0);
                registry.remove(id).unwrap();
                id
            })
            .collect();
        assert_eq!(registry.get_for(0, ids[0]).err(), Some(Error::UnknownBuffer), "the oldest is forgotten");
        for (owner, id) in ids.iter().enumerate().skip(1) {
            assert_eq!(registry.get_for(owner, *id).err(), Some(Error::StaleBuffer));
            assert_eq!(registry.get_for(owner + 1, *id).err(), Some(Error::UnknownBuffer), "no oracle");
        }
    }

    #[test]
    fn holders_are_kept_sparse_and_bounded() {
        let mut holders = Holders::default();
        for client in 0..MAX_HOLDERS {
            holders.set_grant(client * 7, Some(Rights::ReadOnly)).unwrap();
        }
        assert!(!holders.has_room_for(63) && holders.has_room_for(7));
        assert_eq!(holders.set_grant(63, Some(Rights::ReadOnly)), Err(Error::TooManyHolders));
        assert_eq!(holders.set_grant(63, None), Ok(()), "nothing to clear, nothing added");
        assert_eq!(holders.iter().count(), MAX_HOLDERS);
        holders.set_grant(7, None).unwrap();
        assert_eq!(holders.others(0), MAX_HOLDERS - 2, "an empty entry is dropped");
        holders.set_grant(63, Some(Rights::ReadWrite)).unwrap();
        assert_eq!((holders.grant(63), holders.grant(7)), (Some(Rights::ReadWrite), None));
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
