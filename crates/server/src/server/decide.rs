//! Deciding: every check a request needs, and what it will take (blocks,
//! slots, a reserve block, a window run, quota, room for a hole), without
//! touching the kernel.
//! A request refused here changed nothing. Like seL4's own `decode*`
//! functions, these read the state and return a plan; [`super::act`] then
//! carries it out.

use capbuf_protocol::{
    Align, AllocFlags, BufferId, ClientId, Error, HelloReply, InfoReply, PoolId, PoolInfoReply, Rights, MAX_ALIGN_BITS,
    MAX_BUFFER_BITS, PADDR_HIDDEN, PAGE_BITS, PROTOCOL_VERSION,
};

use capbuf_pool::{Allocation, Placement};

use super::state::State;
use crate::kernel::Slot;
use crate::layout::FrameLayout;
use crate::registry::{charged_pages, Buffer, MAX_HOLDERS};
use crate::reserve;
use crate::window::Run;

/// A buffer to make.
#[derive(Clone, Copy, Debug)]
pub(super) struct AllocPlan {
    pub(super) pool: usize,
    pub(super) pages: u64,
    pub(super) align_order: u32,
    pub(super) flags: AllocFlags,
    /// Charged to the owner's byte quota.
    pub(super) bytes: u64,
    /// The owner's reserve block for the master CNode.
    pub(super) meta: usize,
    /// Table slots the request may need (splits, the CNode and a scratch slot).
    pub(super) slots: usize,
    /// Where in the pool, as decided (the pool's placement).
    pub(super) placement: Placement,
    /// 4 KiB frames only: the owner is an `io_space` client.
    pub(super) small_frames: bool,
    /// The frames the buffer is made of, at that placement.
    pub(super) layout: FrameLayout,
}

/// An attachment to make.
#[derive(Clone, Copy, Debug)]
pub(super) struct AttachPlan {
    pub(super) id: BufferId,
    /// The buffer's size in bytes.
    pub(super) size: u64,
    pub(super) rights: Rights,
    pub(super) layout: FrameLayout,
    pub(super) flags: AllocFlags,
    /// The buffer's master CNode: where the frames are copied from.
    pub(super) master: Slot,
    /// The attaching client's reserve block for the CNode and page table.
    pub(super) meta: usize,
    /// Where in the client's window.
    pub(super) run: Run,
    /// Table slot of the client's IOSpace, for an `io_space` client: the
    /// frames are mapped into its device's I/O address space too.
    pub(super) io_space: Option<Slot>,
}

/// An export to make: the CNode of frame copies a `frame_caps` client receives.
#[derive(Clone, Copy, Debug)]
pub(super) struct ExportPlan {
    pub(super) id: BufferId,
    pub(super) rights: Rights,
    pub(super) layout: FrameLayout,
    /// The buffer's master CNode: where the frames are copied from.
    pub(super) master: Slot,
    /// The client's reserve block for the CNode.
    pub(super) meta: usize,
}

/// A grant to make or change.
#[derive(Clone, Copy, Debug)]
pub(super) struct GrantPlan {
    pub(super) grantee: usize,
    pub(super) rights: Rights,
    /// The grantee's attachment exceeds the new rights.
    pub(super) revoke: bool,
    /// The grantee's export exceeds the new rights.
    pub(super) revoke_export: bool,
}

/// Slots an attach needs: its CNode's and a scratch slot to make it in.
pub(super) const ATTACH_SLOTS: usize = 2;

/// What a DETACH takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DetachPlan {
    /// The client's attachment: revoke it, give everything back.
    Attachment,
    /// The client's hole for the id: give its window run back; the kernel
    /// has nothing left to do.
    Hole,
}

impl<const NODES: usize> State<NODES> {
    pub(super) fn hello(&self, client: usize) -> Result<HelloReply, Error> {
        let c = self.client(client)?;
        Ok(HelloReply {
            version: PROTOCOL_VERSION,
            client_id: ClientId(c.client_id),
            pools: self.config.pool_count() as u64,
            quota_bytes: c.quota_bytes,
            quota_buffers: c.quota_buffers,
            quota_attachments: c.quota_attachments,
        })
    }

    pub(super) fn pool_info(&self, pool: PoolId) -> Result<PoolInfoReply, Error> {
        let state = self.pool_state(pool)?;
        let pool = pool.0 as usize;
        Ok(PoolInfoReply {
            total: (state.pool.pages() - self.reserves.pages_in(pool)) << PAGE_BITS,
            free: state.pool.free_pages() << PAGE_BITS,
            largest_free: state.pool.largest_free() << PAGE_BITS,
            lost: self.lost_bytes(pool),
            quarantined: self.quarantine.pages_in(pool) << PAGE_BITS,
        })
    }

    /// How the run `data` of pool `pool` is made of frames
    /// ([`FrameLayout::for_run`], or [`FrameLayout::small_only`]).
    pub(super) fn layout_of(&self, pool: usize, data: Allocation, small_frames: bool) -> FrameLayout {
        if small_frames {
            return FrameLayout::small_only(data.pages);
        }
        let base = self.pools[pool].as_ref().map_or(0, |p| p.base);
        FrameLayout::for_run((base >> PAGE_BITS) + data.offset, data.pages)
    }

    /// The buffer's layout.
    pub(super) fn layout_of_buffer(&self, buffer: &Buffer) -> FrameLayout {
        self.layout_of(buffer.made.pool, buffer.made.data, buffer.made.small_frames)
    }

    /// The address INFO gives client index `client` for its device, if any:
    /// the physical address for a `dma` client; for an `io_space` client
    /// the I/O address of its attachment of the buffer (none unattached).
    #[inline(never)]
    fn device_address(&self, client: usize, buffer: &Buffer) -> Result<Option<u64>, Error> {
        let config = self.client(client)?;
        if config.io_space {
            let Some(attachment) = buffer.holders.attachment(client) else { return Ok(None) };
            let offset = self.layout_of_buffer(buffer).window_offset();
            return Ok(Some(capbuf_protocol::io_address(attachment.window.vaddr() + offset)));
        }
        let base = self.pools[buffer.made.pool].as_ref().map_or(0, |p| p.base);
        Ok(config.dma.then_some(base + (buffer.made.data.offset << PAGE_BITS)))
    }

    pub(super) fn info(&self, client: usize, id: BufferId) -> Result<InfoReply, Error> {
        let buffer = self.registry.get_for(client, id)?;
        let rights = buffer.allowed(client).ok_or(Error::UnknownBuffer)?;
        let layout = self.layout_of_buffer(buffer);
        Ok(InfoReply {
            size: buffer.made.data.pages << PAGE_BITS,
            physical_address: self.device_address(client, buffer)?.unwrap_or(PADDR_HIDDEN),
            page_bits: layout.page_bits() as u64,
            rights,
            attachments: buffer.attachment_count(),
            flags: buffer.made.flags,
            pool: PoolId(buffer.made.pool as u64),
            owner: ClientId(self.client(buffer.made.owner)?.client_id),
        })
    }

    /// Refuse unless `needed` slots are free or can be freed by collapsing
    /// dormant blocks (which [`super::act`] then does first).
    fn check_slots(&self, needed: usize) -> Result<(), Error> {
        if self.slots.count() < needed && self.slots.count() + self.reclaimable_slots() < needed {
            return Err(Error::OutOfSlots);
        }
        Ok(())
    }

    /// The request's flags are valid: [`capbuf_protocol::Request::decode`]
    /// refused unknown bits before anything else.
    pub(super) fn plan_alloc(
        &self,
        client: usize,
        size: u64,
        align: Align,
        pool: PoolId,
        flags: AllocFlags,
    ) -> Result<AllocPlan, Error> {
        let state = self.pool_state(pool)?;
        let pool = pool.0 as usize;
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let order = state.pool.order();
        if size > 1 << MAX_BUFFER_BITS || size > 1 << (order + PAGE_BITS) {
            return Err(Error::TooLarge);
        }
        if align.log2() > MAX_ALIGN_BITS as u64 || align.log2() > (order + PAGE_BITS) as u64 {
            return Err(Error::InvalidAlignment);
        }
        let pages = size.div_ceil(1 << PAGE_BITS);
        let align_order = align.page_order() as u32;
        let bytes = charged_pages(pages, align_order) << PAGE_BITS;
        let quota = self.client(client)?;
        let usage = self.usage[client];
        if usage.buffers.saturating_add(1) > quota.quota_buffers {
            return Err(Error::QuotaBuffers);
        }
        if usage.bytes.saturating_add(bytes) > quota.quota_bytes {
            return Err(Error::QuotaBytes);
        }
        if !self.registry.has_room() {
            return Err(Error::TooManyBuffers);
        }
        // Within its quotas a client always has a free block, unless the
        // kernel cost it one (see `Error::OutOfMemory`).
        let meta = self.reserves.free_block(client).ok_or(Error::OutOfMemory)?;
        let slots = reserve::request_slots(order);
        self.check_slots(slots)?;
        let placement = state.pool.place(pages, align_order).ok_or(Error::OutOfMemory)?;
        let first = placement.offset();
        // Off a 2 MiB boundary a buffer can need more capability slots than
        // the reserve's blocks were sized for (a head and a tail of small
        // frames): such a placement is refused.
        let small_frames = quota.io_space;
        let layout = self.layout_of(pool, Allocation { offset: first, pages }, small_frames);
        let metadata = if small_frames { layout.io_attachment_pages() } else { layout.metadata_pages() };
        if metadata > self.reserves.block_pages() {
            return Err(Error::OutOfMemory);
        }
        Ok(AllocPlan { pool, pages, align_order, flags, bytes, meta, slots, placement, small_frames, layout })
    }

    pub(super) fn plan_attach(&self, client: usize, id: BufferId, rights: Rights) -> Result<AttachPlan, Error> {
        let buffer = self.registry.get_for(client, id)?;
        let allowed = buffer.allowed(client).ok_or(Error::UnknownBuffer)?;
        if !rights.within(allowed) {
            return Err(Error::RightsEscalation);
        }
        // A hole for the id is the client's old mapping of it: DETACH it
        // first, as an attachment, so the id names one run at most.
        if buffer.holders.attachment(client).is_some() || self.windows.hole(client, id).is_some() {
            return Err(Error::AlreadyAttached);
        }
        // Only the owner can lack an entry, and GRANT keeps one for it.
        if !buffer.holders.has_room_for(client) {
            return Err(Error::TooManyHolders);
        }
        if self.usage[client].attachments.saturating_add(1) > reserve::attachment_limit(&self.config, client) {
            return Err(Error::QuotaAttachments);
        }
        let layout = self.layout_of_buffer(buffer);
        // The kernel maps only 4 KiB frames into an I/O address space.
        let io_space = self.config.io_space_slot(client).map(|slot| slot as Slot);
        if io_space.is_some() && layout.large > 0 {
            return Err(Error::NotIoMappable);
        }
        let run = self.windows.find(client, layout.window_slots() as u32).ok_or(Error::WindowFull)?;
        self.check_slots(ATTACH_SLOTS)?;
        let metadata = if io_space.is_some() { layout.io_attachment_pages() } else { layout.attachment_pages() };
        if metadata > self.reserves.block_pages() {
            return Err(Error::Internal);
        }
        let meta = self.reserves.free_block(client).ok_or(Error::OutOfMemory)?;
        let size = buffer.made.data.pages << PAGE_BITS;
        Ok(AttachPlan {
            id,
            size,
            rights,
            layout,
            flags: buffer.made.flags,
            master: buffer.made.master,
            meta,
            run,
            io_space,
        })
    }

    /// EXPORT: the checks of ATTACH (but no window run), after the one
    /// that the caller may hold frame capabilities at all, which is answered
    /// before the id is looked at. An export counts as an attachment.
    pub(super) fn plan_export(&self, client: usize, id: BufferId, rights: Rights) -> Result<ExportPlan, Error> {
        if !self.client(client)?.frame_caps {
            return Err(Error::NotExportable);
        }
        let buffer = self.registry.get_for(client, id)?;
        let allowed = buffer.allowed(client).ok_or(Error::UnknownBuffer)?;
        if !rights.within(allowed) {
            return Err(Error::RightsEscalation);
        }
        if buffer.holders.export(client).is_some() {
            return Err(Error::AlreadyAttached);
        }
        if !buffer.holders.has_room_for(client) {
            return Err(Error::TooManyHolders);
        }
        if self.usage[client].attachments.saturating_add(1) > reserve::attachment_limit(&self.config, client) {
            return Err(Error::QuotaAttachments);
        }
        self.check_slots(ATTACH_SLOTS)?;
        let meta = self.reserves.free_block(client).ok_or(Error::OutOfMemory)?;
        let layout = self.layout_of_buffer(buffer);
        Ok(ExportPlan { id, rights, layout, master: buffer.made.master, meta })
    }

    /// UNEXPORT: the client's export of the id must exist.
    pub(super) fn plan_unexport(&self, client: usize, id: BufferId) -> Result<(), Error> {
        if self.registry.get_for(client, id)?.holders.export(client).is_none() {
            return Err(Error::NotAttached);
        }
        Ok(())
    }

    /// A hole is found only by its own client's DETACH of exactly its id,
    /// before anything else is asked of the id (which may be stale, or no
    /// longer granted); a client without one is answered as ever.
    pub(super) fn plan_detach(&self, client: usize, id: BufferId) -> Result<DetachPlan, Error> {
        if self.windows.hole(client, id).is_some() {
            return Ok(DetachPlan::Hole);
        }
        if self.registry.get_for(client, id)?.holders.attachment(client).is_none() {
            return Err(Error::NotAttached);
        }
        Ok(DetachPlan::Attachment)
    }

    /// Revoking `holder`'s attachment to `buffer` at someone else's request
    /// leaves a hole: refuse if it would not fit. It always does (attachments
    /// and holes together are within [`reserve::attachment_limit`]), so a
    /// refusal is a memsrv bug, caught before any invocation.
    fn check_hole_room(&self, buffer: &Buffer, holder: usize, requester: usize) -> Result<(), Error> {
        if holder != requester && buffer.holders.attachment(holder).is_some() && !self.windows.has_room_for_hole(holder)
        {
            return Err(Error::Internal);
        }
        Ok(())
    }

    pub(super) fn check_free(&self, client: usize, id: BufferId) -> Result<(), Error> {
        let buffer = self.registry.get_to_free(client, id)?;
        if buffer.made.owner != client {
            return Err(Error::NotOwner);
        }
        if buffer.exposed != 0 && !self.quarantine.has_room() {
            // Full of memory devices may still write: the buffer stays until
            // the exposed clients quiesce some of it.
            return Err(Error::TooManyBuffers);
        }
        buffer.holders.iter().try_for_each(|holder| self.check_hole_room(buffer, holder.client as usize, client))
    }

    fn grantee(&self, client: usize, id: BufferId, grantee: ClientId) -> Result<usize, Error> {
        let buffer = self.registry.get_for(client, id)?;
        if buffer.made.owner != client {
            return Err(Error::NotOwner);
        }
        match self.config.client_by_id(grantee.0) {
            Some((index, _)) if index != client => Ok(index),
            _ => Err(Error::InvalidGrantee),
        }
    }

    /// Grant or change a grant: the grantee's index, its rights, and whether
    /// its attachment, and its export, must go (rights only ever shrink, so
    /// an attachment or export with more than the new grant is revoked).
    pub(super) fn plan_grant(
        &self,
        client: usize,
        id: BufferId,
        grantee: ClientId,
        rights: Rights,
    ) -> Result<GrantPlan, Error> {
        let grantee = self.grantee(client, id, grantee)?;
        let buffer = self.registry.get(id)?;
        if !rights.within(buffer.made.flags.max_rights()) {
            return Err(Error::RightsEscalation);
        }
        // One entry stays for the owner's own attachment and export.
        let new_holder = !buffer.holders.iter().any(|holder| holder.client as usize == grantee);
        if new_holder && buffer.holders.others(client) + 1 >= MAX_HOLDERS {
            return Err(Error::TooManyHolders);
        }
        let revoke = buffer.holders.attachment(grantee).is_some_and(|a| !a.rights.within(rights));
        if revoke {
            self.check_hole_room(buffer, grantee, client)?;
        }
        let revoke_export = buffer.holders.export(grantee).is_some_and(|e| !e.rights.within(rights));
        Ok(GrantPlan { grantee, rights, revoke, revoke_export })
    }

    pub(super) fn plan_ungrant(&self, client: usize, id: BufferId, grantee: ClientId) -> Result<usize, Error> {
        let grantee = self.grantee(client, id, grantee)?;
        let buffer = self.registry.get(id)?;
        if buffer.holders.grant(grantee).is_none() {
            return Err(Error::NotGrantee);
        }
        self.check_hole_room(buffer, grantee, client)?;
        Ok(grantee)
    }
}
