//! Acting: carrying out a plan with the kernel, and undoing it if the kernel
//! refuses an invocation, so that a request happens completely or not at all.
//!
//! Every object a request makes (a CNode, frames, frame copies, a page table,
//! mappings) lives in or below one untyped block of a metadata reserve, so
//! the undo of everything the kernel did is one revoke of that block; what
//! memsrv's books took (slots, the reserve block, a window run, pool pages)
//! is then given back. A revoke cannot be undone, so requests that take
//! things away (DETACH, UNGRANT, a lowered grant, FREE) revoke first and only
//! then release the books; if the kernel refuses, the state is what it was
//! and the request can be retried. An attachment revoked at another client's
//! request leaves its window run behind as a hole ([`crate::window`]), which
//! only the holder's DETACH gives back, with no invocation.
//!
//! Should the undo itself be refused, nothing the request took is reused:
//! an attachment is kept as made (DETACH removes it), a buffer's reserve
//! block and slots are lost, its pages marked for a revoke before reuse.

use capbuf_pool::{Allocation, Block};
use capbuf_protocol::{BufferId, Error, Invocation, KernelFailure, MEMSRV_TABLE_VSPACES, PAGE_BITS};

use super::decide::{AllocPlan, AttachPlan, DetachPlan, ExportPlan, GrantPlan, ATTACH_SLOTS};
use super::state::State;
use crate::kernel::{CapRef, Failure, Kernel, MapAttributes, Named, Object, Slot, RETYPE_FAN_OUT_LIMIT};
use crate::layout::FrameLayout;
use crate::quarantine::Quarantined;
use crate::registry::{Attachment, Exported, Made};

/// What a request has taken and made so far.
#[derive(Default)]
struct Undo {
    /// The reserve block taken.
    reserve: Option<usize>,
    /// The table slots taken: the CNode's and a scratch one. They hold
    /// nothing but a capability to that CNode, so they are empty once the
    /// reserve block is revoked.
    slots: Option<(Slot, Slot)>,
    /// The reserve block's untyped, once an object was retyped from it.
    made_in: Option<Slot>,
    /// The slot holding the CNode's capability, once it exists.
    cnode: Option<Slot>,
}

impl<const NODES: usize> State<NODES> {
    /// Free `needed` slots by collapsing dormant blocks, if there are fewer.
    /// The plan checked that collapsing frees enough.
    fn make_room<K: Kernel>(&mut self, kernel: &mut K, needed: usize) -> Result<(), Failure> {
        if self.slots.count() < needed {
            self.reclaim(kernel)?;
        }
        if self.slots.count() < needed {
            return Err(Error::Internal.into());
        }
        Ok(())
    }

    /// Take reserve block `meta` and two slots: the CNode's and a scratch one.
    fn take_metadata(&mut self, meta: usize, undo: &mut Undo) -> Result<(), Error> {
        let node = self.slots.take()?;
        let scratch = match self.slots.take() {
            Ok(scratch) => scratch,
            Err(error) => {
                self.slots.release(node)?;
                return Err(error);
            }
        };
        self.reserves.set_in_use(meta, true);
        undo.reserve = Some(meta);
        undo.slots = Some((node, scratch));
        Ok(())
    }

    /// Retype a CNode of `2^radix` slots from the reserve block taken and
    /// give its capability the guard that makes its slots addressable by
    /// capability pointer ([`capbuf_protocol::inner_cptr`]): a retype into the
    /// scratch slot, then a mutate into the slot it keeps. Returns that slot.
    /// Take reserve block `meta` and two slots (recorded in `undo`) and make
    /// in it a guarded CNode of `2^radix` slots: where an attachment's or an
    /// export's frame copies go.
    fn metadata_cnode<K: Kernel>(
        &mut self,
        kernel: &mut K,
        meta: usize,
        radix: u32,
        undo: &mut Undo,
    ) -> Result<Slot, Failure> {
        self.take_metadata(meta, undo)?;
        self.guarded_cnode(kernel, radix, undo)
    }

    fn guarded_cnode<K: Kernel>(&mut self, kernel: &mut K, radix: u32, undo: &mut Undo) -> Result<Slot, Failure> {
        let ((node, scratch), meta) = undo.slots.zip(undo.reserve).ok_or(Error::Internal)?;
        let untyped = self.reserve_slot(meta)?;
        kernel.retype(untyped, Object::CNode { radix }, CapRef::Table(scratch), 1).named(Invocation::UntypedRetype)?;
        undo.made_in = Some(untyped);
        undo.cnode = Some(scratch);
        let guard = capbuf_protocol::inner_bits(self.config.table_bits) as u32 - radix;
        kernel.mutate_cnode(scratch, node, guard).named(Invocation::CNodeMutate)?;
        undo.cnode = Some(node);
        Ok(node)
    }

    /// Keep the slot holding the CNode's capability and give the other back.
    fn keep_cnode(&mut self, undo: &Undo) -> Result<Slot, Error> {
        let (node, scratch) = undo.slots.ok_or(Error::Internal)?;
        let cnode = undo.cnode.unwrap_or(node);
        self.slots.release(if cnode == node { scratch } else { node })?;
        Ok(cnode)
    }

    /// Revoke what the request made and give back what it took. If the
    /// kernel refuses the revoke, nothing is given back and the refusal is
    /// returned: the caller decides what becomes of it.
    fn undo<K: Kernel>(&mut self, kernel: &mut K, undo: &Undo) -> Result<(), KernelFailure> {
        if let Some(untyped) = undo.made_in {
            if let Err(failure) = kernel.revoke(untyped).named(Invocation::CNodeRevoke) {
                self.incident.undo = Some(failure);
                return Err(failure);
            }
        }
        if let Some((node, scratch)) = undo.slots {
            // Cannot fail: both were taken from the list.
            let _ = self.slots.release(node);
            let _ = self.slots.release(scratch);
        }
        if let Some(meta) = undo.reserve {
            self.reserves.set_in_use(meta, false);
        }
        Ok(())
    }

    pub(super) fn alloc<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        plan: &AllocPlan,
    ) -> Result<BufferId, Failure> {
        self.make_room(kernel, plan.slots)?;
        let data = self.pool_alloc(kernel, plan.pool, plan.pages, plan.align_order, Some(&plan.placement))?;
        let mut undo = Undo::default();
        let made = self.make_frames(kernel, plan, data, &mut undo);
        let master = match made {
            Ok(master) => master,
            Err(failure) => {
                if self.undo(kernel, &undo).is_err() {
                    // The master CNode, holding the frames' capabilities,
                    // stays: its block and slots are lost, and the leaves are
                    // marked to be revoked before they are used again.
                    let slots = if undo.slots.is_some() { 2 } else { 0 };
                    self.reserves.set_lost(plan.meta);
                    self.lost_slots += slots;
                    self.incident.lost.slots += slots;
                    self.incident.lost.bytes += self.reserves.block_pages() << PAGE_BITS;
                    self.mark_dormant(plan.pool, data);
                }
                self.pool_free(plan.pool, data)?;
                return Err(failure);
            }
        };
        self.keep_cnode(&undo)?;
        let id = self.registry.insert_new(Made {
            owner: client,
            pool: plan.pool,
            data,
            align_order: plan.align_order,
            meta: plan.meta,
            master,
            flags: plan.flags,
            small_frames: plan.small_frames,
        })?;
        self.usage[client].buffers += 1;
        self.usage[client].bytes += plan.bytes;
        Ok(id)
    }

    /// Retype the master CNode from the owner's reserve block and the frames
    /// from the data leaves into it: large frames first, then the small ones
    /// in address order ([`crate::layout::FrameLayout`]).
    fn make_frames<K: Kernel>(
        &mut self,
        kernel: &mut K,
        plan: &AllocPlan,
        data: Allocation,
        undo: &mut Undo,
    ) -> Result<Slot, Failure> {
        // Decided with the placement `data` was carved at.
        let layout = plan.layout;
        debug_assert_eq!(layout, self.layout_of(plan.pool, data, plan.small_frames));
        debug_assert!(layout.master_pages() <= self.reserves.block_pages());
        // Leaves the pool kept dormant are collapsed first; each collapse is
        // complete in itself, so the undo has nothing to do for them.
        let order = self.pool_order(plan.pool);
        // A run has at most two leaves per level of the tree (sizes rise,
        // then fall), and the tree at most MAX_ORDER + 1 levels.
        let mut leaves: heapless::Vec<(Block, Slot), { 2 * capbuf_pool::MAX_ORDER as usize + 2 }> =
            heapless::Vec::new();
        for leaf in data.blocks(order) {
            let slot = self.ready_block(kernel, plan.pool, leaf)?;
            leaves.push((leaf, slot)).map_err(|_| Error::Internal)?;
        }
        self.take_metadata(plan.meta, undo)?;
        let radix = layout.master_radix();
        let master = self.guarded_cnode(kernel, radix, undo)?;
        let (mut large, mut small) = (0u32, layout.large as u32);
        for &(leaf, leaf_slot) in leaves.iter() {
            let large_leaf = leaf.order() + PAGE_BITS >= capbuf_protocol::LARGE_PAGE_BITS && !plan.small_frames;
            let (object, mut count, index) = if large_leaf {
                (Object::LargeFrame, 1u32 << (leaf.order() + PAGE_BITS - capbuf_protocol::LARGE_PAGE_BITS), &mut large)
            } else {
                (Object::SmallFrame, 1u32 << leaf.order(), &mut small)
            };
            while count > 0 {
                let chunk = count.min(RETYPE_FAN_OUT_LIMIT);
                let dest = CapRef::InNode { node: master, radix, index: *index };
                kernel.retype(leaf_slot, object, dest, chunk).named(Invocation::UntypedRetype)?;
                *index += chunk;
                count -= chunk;
            }
        }
        debug_assert_eq!((large as u64, small as u64), (layout.large, layout.frames()));
        // The kernel zeroes frames retyped from RAM, not from device
        // untyped: memsrv zeroes those itself before anyone sees them.
        if self.config.pools[plan.pool].is_some_and(|pool| pool.device) {
            for index in 0..small {
                let object = if (index as u64) < layout.large { Object::LargeFrame } else { Object::SmallFrame };
                let frame = CapRef::InNode { node: master, radix, index };
                kernel.zero_frame(frame, object).named(Invocation::PageMap)?;
            }
        }
        Ok(master)
    }

    /// Attach: in a block of the client's reserve, a CNode holding copies of
    /// the buffer's frame capabilities with the attachment's rights (and a
    /// page table for the 4 KiB tail), mapped into the client's window.
    pub(super) fn attach<K: Kernel>(&mut self, kernel: &mut K, client: usize, plan: AttachPlan) -> Result<(), Failure> {
        self.make_room(kernel, ATTACH_SLOTS)?;
        self.windows.take(client, plan.run);
        let mut undo = Undo::default();
        let failure = match self.map_copies(kernel, client, &plan, &mut undo) {
            Ok(()) => return self.keep_attachment(client, &plan, &undo).map_err(Failure::from),
            Err(failure) => failure,
        };
        if self.undo(kernel, &undo).is_ok() {
            self.windows.release(client, plan.run);
            return Err(failure);
        }
        // The revoke that would unmap what was mapped was refused: keep the
        // attachment as it is, so that DETACH, UNGRANT or FREE revoke it.
        self.keep_attachment(client, &plan, &undo)?;
        Err(failure)
    }

    fn keep_attachment(&mut self, client: usize, plan: &AttachPlan, undo: &Undo) -> Result<(), Error> {
        let cnode = self.keep_cnode(undo)?;
        let meta = u16::try_from(plan.meta).map_err(|_| Error::Internal)?;
        let attachment = Attachment { rights: plan.rights, meta, cnode, window: plan.run };
        self.registry.get_mut(plan.id)?.holders.set_attachment(client, Some(attachment))?;
        self.usage[client].attachments += 1;
        Ok(())
    }

    /// Make the attachment's CNode, page table and frame copies and map
    /// them: each 2 MiB frame in a window slot of its own, then the page
    /// table and the 4 KiB frames in the next slot.
    fn map_copies<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        plan: &AttachPlan,
        undo: &mut Undo,
    ) -> Result<(), Failure> {
        let layout = plan.layout;
        let radix = if plan.io_space.is_some() { layout.io_attachment_radix() } else { layout.attachment_radix() };
        let cnode = self.metadata_cnode(kernel, plan.meta, radix, undo)?;
        let untyped = undo.made_in.ok_or(Error::Internal)?;
        let frames = layout.frames() as u32;
        if layout.page_tables() > 0 {
            let dest = CapRef::InNode { node: cnode, radix, index: frames };
            let tables = layout.page_tables() as u32;
            kernel.retype(untyped, Object::PageTable, dest, tables).named(Invocation::UntypedRetype)?;
        }
        copy_frames(kernel, (plan.master, layout.master_radix()), (cnode, radix), frames, plan.rights)?;
        let vspace = (MEMSRV_TABLE_VSPACES as usize + client) as Slot;
        let attributes = MapAttributes { rights: plan.rights, cached: !plan.flags.uncached() };
        let large = 1u64 << capbuf_protocol::LARGE_PAGE_BITS;
        let frame = |index: u64| CapRef::InNode { node: cnode, radix, index: index as u32 };
        // Slots of the run: the head's (if any), one per large frame, the tail's.
        let mut slot = plan.run.vaddr();
        let mut table = layout.frames();
        if layout.head > 0 {
            kernel.map_page_table(frame(table), vspace, slot).named(Invocation::PageTableMap)?;
            table += 1;
            let first = slot + layout.window_offset();
            for j in 0..layout.head {
                let at = first + (j << PAGE_BITS);
                kernel.map_frame(frame(layout.large + j), vspace, at, attributes).named(Invocation::PageMap)?;
            }
            slot += large;
        }
        for i in 0..layout.large {
            kernel.map_frame(frame(i), vspace, slot, attributes).named(Invocation::PageMap)?;
            slot += large;
        }
        for j in 0..layout.tail() {
            let at = slot + (j << PAGE_BITS);
            if at % large == 0 {
                kernel.map_page_table(frame(table), vspace, at).named(Invocation::PageTableMap)?;
                table += 1;
            }
            kernel
                .map_frame(frame(layout.large + layout.head + j), vspace, at, attributes)
                .named(Invocation::PageMap)?;
        }
        debug_assert_eq!(table, layout.frames() + layout.page_tables());
        if let Some(iospace) = plan.io_space {
            map_io(kernel, (plan.master, layout.master_radix()), (cnode, radix), layout, iospace, plan)?;
        }
        Ok(())
    }

    /// EXPORT: in a block of the client's reserve, a CNode holding copies of
    /// the buffer's frame capabilities with the export's rights, whose guard
    /// is then changed to fill a client's capability pointer below a root
    /// CNode slot ([`capbuf_protocol::ROOT_SLOT_SHIFT`] bits). Returns the
    /// table slot of the capability the PD sends with the reply.
    pub(super) fn export<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        plan: ExportPlan,
    ) -> Result<Slot, Failure> {
        self.make_room(kernel, ATTACH_SLOTS)?;
        let mut undo = Undo::default();
        let failure = match self.copy_for_export(kernel, &plan, &mut undo) {
            Ok(()) => return self.keep_export(client, &plan, &undo).map_err(Failure::from),
            Err(failure) => failure,
        };
        if self.undo(kernel, &undo).is_err() {
            // Kept as made, so that UNEXPORT, UNGRANT or FREE revoke it; nothing is sent.
            self.keep_export(client, &plan, &undo)?;
        }
        Err(failure)
    }

    fn copy_for_export<K: Kernel>(
        &mut self,
        kernel: &mut K,
        plan: &ExportPlan,
        undo: &mut Undo,
    ) -> Result<(), Failure> {
        let layout = plan.layout;
        let radix = layout.attachment_radix();
        let cnode = self.metadata_cnode(kernel, plan.meta, radix, undo)?;
        copy_frames(kernel, (plan.master, layout.master_radix()), (cnode, radix), layout.frames() as u32, plan.rights)?;
        let (node, scratch) = undo.slots.ok_or(Error::Internal)?;
        let guard = capbuf_protocol::ROOT_SLOT_SHIFT as u32 - radix;
        kernel.mutate_cnode(node, scratch, guard).named(Invocation::CNodeMutate)?;
        undo.cnode = Some(scratch);
        Ok(())
    }

    fn keep_export(&mut self, client: usize, plan: &ExportPlan, undo: &Undo) -> Result<Slot, Error> {
        let cnode = self.keep_cnode(undo)?;
        let narrow = |value: usize| u16::try_from(value).map_err(|_| Error::Internal);
        let exported = Exported { rights: plan.rights, meta: narrow(plan.meta)?, cnode: narrow(cnode as usize)? };
        self.registry.get_mut(plan.id)?.holders.set_export(client, Some(exported))?;
        self.usage[client].attachments += 1;
        Ok(cnode)
    }

    /// Revoke client `holder`'s export of buffer `id`, if any (UNEXPORT, or
    /// at the owner's UNGRANT, lowered GRANT or FREE): the CNode and the
    /// copies in it go. Copies the holder took out of it do not (seL4 frame
    /// copies are not revocable); only FREE, revoking the frames, reaches
    /// them. There is no mapping of memsrv's to keep a hole for, so the
    /// block, the slot and the quota come back at once.
    pub(super) fn teardown_export<K: Kernel>(
        &mut self,
        kernel: &mut K,
        id: BufferId,
        holder: usize,
    ) -> Result<(), Failure> {
        let Some(exported) = self.registry.get(id)?.holders.export(holder) else { return Ok(()) };
        let untyped = self.reserve_slot(exported.meta as usize)?;
        kernel.revoke(untyped).named(Invocation::CNodeRevoke)?;
        self.registry.get_mut(id)?.holders.set_export(holder, None)?;
        self.slots.release(exported.cnode as Slot)?;
        self.reserves.set_in_use(exported.meta as usize, false);
        self.usage[holder].attachments -= 1;
        Ok(())
    }

    /// Revoke client `holder`'s attachment to buffer `id`, if any, at client
    /// `requester`'s request: its block holds the CNode, the frame copies and
    /// the page table, so the kernel unmaps them all. Only then do the block
    /// and the slot come back, and, if the holder asked, the window run and
    /// the quota. Revoked at someone else's request, the run stays taken as
    /// the holder's hole, counted in its attachments, until it DETACHes the
    /// id (see [`crate::window`]); the plan made sure a hole fits.
    pub(super) fn teardown<K: Kernel>(
        &mut self,
        kernel: &mut K,
        id: BufferId,
        holder: usize,
        requester: usize,
    ) -> Result<(), Failure> {
        let Some(attachment) = self.registry.get(id)?.holders.attachment(holder) else { return Ok(()) };
        if holder != requester && !self.windows.has_room_for_hole(holder) {
            return Err(Error::Internal.into());
        }
        let untyped = self.reserve_slot(attachment.meta as usize)?;
        kernel.revoke(untyped).named(Invocation::CNodeRevoke)?;
        self.registry.get_mut(id)?.holders.set_attachment(holder, None)?;
        self.slots.release(attachment.cnode)?;
        self.reserves.set_in_use(attachment.meta as usize, false);
        if holder == requester {
            self.windows.release(holder, attachment.window);
            self.usage[holder].attachments -= 1;
        } else {
            self.windows.make_hole(holder, id, attachment.window).map_err(|_| Error::Internal)?;
        }
        Ok(())
    }

    /// DETACH: revoke the client's attachment, or give back its hole (no
    /// invocation: the mapping went when the attachment was revoked).
    pub(super) fn detach<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        id: BufferId,
        plan: DetachPlan,
    ) -> Result<(), Failure> {
        match plan {
            DetachPlan::Attachment => self.teardown(kernel, id, client, client),
            DetachPlan::Hole => {
                self.windows.release_hole(client, id).ok_or(Error::Internal)?;
                self.usage[client].attachments -= 1;
                Ok(())
            }
        }
    }

    /// Free: every attachment revoked (each complete in itself; the others'
    /// become holes, the owner's own is released), then the buffer's leaves
    /// (which reach every frame and every copy of one, anywhere), then its
    /// master CNode's block; only then do the books let go. A refusal after
    /// the first leaf leaves the buffer [`Buffer::freeing`]: gone for
    /// everyone but its owner's next FREE.
    pub(super) fn free<K: Kernel>(&mut self, kernel: &mut K, client: usize, id: BufferId) -> Result<(), Failure> {
        // The holders, in client order as before (a client index is below
        // 64: a set of them is a word), and those with an export.
        let (mut holders, exporters) =
            self.registry.get(id)?.holders.iter().fold((0u64, 0u64), |(set, exporters), holder| {
                let bit = 1 << holder.client;
                (set | bit, if holder.export().is_some() { exporters | bit } else { exporters })
            });
        while holders != 0 {
            let holder = holders.trailing_zeros() as usize;
            holders &= holders - 1;
            if exporters & 1 << holder != 0 {
                self.teardown_export(kernel, id, holder)?;
            }
            self.teardown(kernel, id, holder, client)?;
        }
        let buffer = self.registry.get(id)?;
        let (pool, data, meta, master) = (buffer.made.pool, buffer.made.data, buffer.made.meta, buffer.made.master);
        let (exposed, charged_pages, mut freeing) = (buffer.exposed, buffer.charged_pages(), buffer.freeing);
        for leaf in data.blocks(self.pool_order(pool)) {
            kernel.revoke(self.leaf_slot(pool, leaf)?).named(Invocation::CNodeRevoke)?;
            if !freeing {
                self.registry.get_mut(id)?.freeing = true;
                freeing = true;
            }
        }
        kernel.revoke(self.reserve_slot(meta)?).named(Invocation::CNodeRevoke)?;
        self.registry.remove(id)?;
        self.slots.release(master)?;
        if exposed == 0 {
            self.pool_free(pool, data)?;
        } else {
            // A device may still write the pages: they stay allocated until
            // every exposed client quiesces. check_free made room.
            let entry = Quarantined { id, pool, data, pending: exposed };
            self.quarantine.hold(entry).map_err(|_| Error::Internal)?;
        }
        self.reserves.set_in_use(meta, false);
        self.usage[client].buffers -= 1;
        self.usage[client].bytes -= charged_pages << PAGE_BITS;
        Ok(())
    }

    /// QUIESCE: client `client`'s device no longer uses buffer `id`. On a
    /// live buffer its exposure ends; on a quarantined one its confirmation
    /// is counted, and the last gives the pages back to the pool (a merge
    /// only marks blocks dormant: no invocation). Everything else is
    /// [`Error::UnknownBuffer`], so a client with nothing to confirm learns
    /// nothing about the id.
    pub(super) fn quiesce(&mut self, client: usize, id: BufferId) -> Result<(), Error> {
        let bit = 1u64 << client;
        if let Ok(buffer) = self.registry.get_mut(id) {
            if buffer.exposed & bit == 0 {
                return Err(Error::UnknownBuffer);
            }
            buffer.exposed &= !bit;
            return Ok(());
        }
        match self.quarantine.confirm(client, id) {
            None => Err(Error::UnknownBuffer),
            Some(None) => Ok(()),
            Some(Some(entry)) => self.pool_free(entry.pool, entry.data),
        }
    }

    /// GRANT by the owner `client`; an attachment above the new rights is
    /// revoked and leaves the grantee a hole.
    pub(super) fn grant<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        id: BufferId,
        plan: GrantPlan,
    ) -> Result<(), Failure> {
        if plan.revoke_export {
            self.teardown_export(kernel, id, plan.grantee)?;
        }
        if plan.revoke {
            self.teardown(kernel, id, plan.grantee, client)?;
        }
        self.registry.get_mut(id)?.holders.set_grant(plan.grantee, Some(plan.rights))?;
        Ok(())
    }

    /// UNGRANT by the owner `client`; the grantee's export, if any, is
    /// revoked, and its attachment, if any, leaving it a hole.
    pub(super) fn ungrant<K: Kernel>(
        &mut self,
        kernel: &mut K,
        client: usize,
        id: BufferId,
        grantee: usize,
    ) -> Result<(), Failure> {
        self.teardown_export(kernel, id, grantee)?;
        self.teardown(kernel, id, grantee, client)?;
        self.registry.get_mut(id)?.holders.set_grant(grantee, None)?;
        Ok(())
    }
}

/// Copy a buffer's first `frames` frame capabilities from its master CNode
/// (`master`: table slot, radix) into the same slots of `cnode`, with `rights`.
fn copy_frames<K: Kernel>(
    kernel: &mut K,
    (master, master_radix): (Slot, u32),
    (cnode, radix): (Slot, u32),
    frames: u32,
    rights: capbuf_protocol::Rights,
) -> Result<(), Failure> {
    for index in 0..frames {
        let source = CapRef::InNode { node: master, radix: master_radix, index };
        let dest = CapRef::InNode { node: cnode, radix, index };
        kernel.copy(source, dest, rights).named(Invocation::CNodeCopy)?;
    }
    Ok(())
}

/// An `io_space` client's attachment, after its VSpace mapping: a second
/// copy of every (4 KiB) frame, after the frames and page tables in the
/// attachment's CNode, each mapped into the device's I/O address space at
/// the same offset in [`capbuf_protocol::IO_WINDOW`] as the frame has in
/// the client's window. Revoking the attachment's block deletes the copies,
/// which unmaps them and flushes the IOTLB.
#[inline(never)]
fn map_io<K: Kernel>(
    kernel: &mut K,
    (master, master_radix): (Slot, u32),
    (cnode, radix): (Slot, u32),
    layout: FrameLayout,
    iospace: Slot,
    plan: &AttachPlan,
) -> Result<(), Failure> {
    debug_assert_eq!((layout.large, layout.head), (0, 0), "4 KiB frames from the run's start");
    let first = (layout.frames() + layout.page_tables()) as u32;
    let start = capbuf_protocol::io_address(plan.run.vaddr());
    for index in 0..layout.frames() as u32 {
        let source = CapRef::InNode { node: master, radix: master_radix, index };
        let copy = CapRef::InNode { node: cnode, radix, index: first + index };
        kernel.copy(source, copy, plan.rights).named(Invocation::CNodeCopy)?;
        let ioaddr = start + ((index as u64) << PAGE_BITS);
        kernel.map_io_frame(copy, iospace, plan.rights, ioaddr).named(Invocation::IoPageMap)?;
    }
    Ok(())
}
