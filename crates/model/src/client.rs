//! Client protection domains in the model: a VSpace of page tables and frame
//! mappings (memsrv maps attachments into it), and a root CNode on which the
//! client may try every capability operation on whatever it holds.

use std::collections::BTreeMap;

use capbuf_protocol::{Rights, LARGE_PAGE_BITS, PAGE_BITS, ROOT_SLOT_SHIFT};
use capbuf_server::{CapRef, KernelError, MapAttributes};

use crate::{error, CapId, Kind, Model, ObjectId, Place, CLIENT_ROOT_SLOTS};

const LARGE: u64 = 1 << LARGE_PAGE_BITS;

/// A client's access went nowhere: the real system would raise a VM fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Faulting virtual address.
    pub vaddr: u64,
    /// Whether it was a write.
    pub write: bool,
}

/// One frame mapping in a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Virtual address.
    pub vaddr: u64,
    /// Physical address of the frame.
    pub physical_address: u64,
    /// Frame size bits.
    pub size_bits: u32,
    /// Rights of the mapping.
    pub rights: Rights,
    /// Cacheable, or mapped uncached.
    pub cached: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ClientSpace {
    pub(crate) root: Vec<Option<CapId>>,
    /// Page tables by the 2 MiB-aligned address they cover.
    page_tables: BTreeMap<u64, (ObjectId, CapId)>,
    /// Frame mappings by virtual address: capability, rights, cacheable.
    frames: BTreeMap<u64, (CapId, Rights, bool)>,
}

impl Default for ClientSpace {
    fn default() -> Self {
        ClientSpace { root: vec![None; CLIENT_ROOT_SLOTS], page_tables: BTreeMap::new(), frames: BTreeMap::new() }
    }
}

impl ClientSpace {
    /// Page tables by the address they cover: object and capability.
    pub(crate) fn page_tables(&self) -> impl Iterator<Item = (&u64, &(ObjectId, CapId))> {
        self.page_tables.iter()
    }

    /// Frame mappings by virtual address: capability, rights, cacheable.
    pub(crate) fn frames(&self) -> impl Iterator<Item = (&u64, &(CapId, Rights, bool))> {
        self.frames.iter()
    }

    pub(crate) fn unmap(&mut self, vaddr: u64, cap: CapId) {
        if self.frames.get(&vaddr).is_some_and(|(c, _, _)| *c == cap) {
            self.frames.remove(&vaddr);
        }
        if self.page_tables.get(&vaddr).is_some_and(|(_, c)| *c == cap) {
            self.page_tables.remove(&vaddr);
        }
    }

    /// A page table died: it leaves the VSpace, and so do the small frames
    /// mapped through it. Returns those frames' (vaddr, cap).
    pub(crate) fn drop_page_table(&mut self, object: ObjectId) -> Vec<(u64, CapId)> {
        let Some(base) = self.page_tables.iter().find(|(_, (o, _))| *o == object).map(|(v, _)| *v) else {
            return Vec::new();
        };
        self.page_tables.remove(&base);
        let gone: Vec<(u64, CapId)> = self.frames.range(base..base + LARGE).map(|(v, (c, _, _))| (*v, *c)).collect();
        for (vaddr, _) in &gone {
            self.frames.remove(vaddr);
        }
        gone
    }
}

/// A capability operation a client may try on CNodes it holds, as seL4
/// offers them (`seL4_CNode_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CNodeOp {
    /// `seL4_CNode_Copy` with a rights mask.
    Copy(Rights),
    /// `seL4_CNode_Mint` with a rights mask and a guard (CNodes) or badge.
    Mint(Rights, u32),
    /// `seL4_CNode_Move`.
    Move,
    /// `seL4_CNode_Mutate` with a guard.
    Mutate(u32),
    /// `seL4_CNode_Delete` of the destination slot.
    Delete,
    /// `seL4_CNode_Revoke` of the destination slot.
    Revoke,
}

impl Model {
    /// The kernel's capability transfer in an IPC: a copy of the capability at
    /// memsrv's `from` lands in the client's root CNode slot `slot` (empty, as
    /// the kernel requires). memsrv never does this; tests use it to give a
    /// client capabilities and see what seL4's rules let it do with them.
    pub fn transfer_to_client(&mut self, client: usize, slot: u64, from: CapRef) -> Result<(), KernelError> {
        let source = self.lookup(from)?.ok_or(error::FAILED_LOOKUP)?;
        if slot as usize >= CLIENT_ROOT_SLOTS {
            return Err(error::RANGE);
        }
        let place = Place::ClientRoot(client, slot);
        if self.slot(place).is_some() {
            return Err(error::DELETE_FIRST);
        }
        let state = self.cap(source).clone();
        let cap = self.new_cap(state.object, state.rights, Some(source), place);
        self.caps[cap].as_mut().expect("new cap").guard_bits = state.guard_bits;
        self.set_slot(place, Some(cap));
        Ok(())
    }

    /// Resolve the client's capability pointer as the kernel would: its top
    /// bits pick a root CNode slot; a CNode there whose guard and radix
    /// consume the remaining bits leads one level further, anything else is
    /// the capability named (the remaining bits are ignored).
    fn resolve(&self, client: usize, cptr: u64) -> Result<CapId, KernelError> {
        let slot = (cptr >> ROOT_SLOT_SHIFT) as usize;
        let cap = self.clients.get(client).ok_or(error::INVALID_ARGUMENT)?.root[slot].ok_or(error::FAILED_LOOKUP)?;
        let node = self.cap(cap);
        match &self.object(node.object).kind {
            Kind::CNode { slots } => {
                let radix = slots.len().trailing_zeros();
                if node.guard_bits + radix != ROOT_SLOT_SHIFT as u32 {
                    return Err(error::FAILED_LOOKUP);
                }
                let index = cptr & ((1 << radix) - 1);
                let guard = (cptr & ((1 << ROOT_SLOT_SHIFT) - 1)) >> radix;
                if guard != 0 {
                    return Err(error::FAILED_LOOKUP);
                }
                slots[index as usize].ok_or(error::FAILED_LOOKUP)
            }
            _ => Ok(cap),
        }
    }

    /// Slot `index` of the CNode whose capability is in the client's root CNode slot `node`.
    fn client_slot(&self, client: usize, node: u64, index: u64) -> Result<Place, KernelError> {
        let root = &self.clients.get(client).ok_or(error::INVALID_ARGUMENT)?.root;
        let node_cap = root.get(node as usize).copied().flatten().ok_or(error::FAILED_LOOKUP)?;
        let node_object = self.cap(node_cap).object;
        match &self.object(node_object).kind {
            Kind::CNode { slots } if index < slots.len() as u64 => Ok(Place::InNode(node_object, index as u32)),
            Kind::CNode { .. } => Err(error::RANGE),
            _ => Err(error::INVALID_CAPABILITY),
        }
    }

    /// A capability operation by the client: `dest` is slot `dest.1` of the
    /// CNode whose capability is in its root CNode slot `dest.0`, `source`
    /// likewise (unused by delete and revoke). Rights only shrink; a copy of a frame capability
    /// is not revocable and is a child of its source, as in seL4.
    pub fn client_cnode(
        &mut self,
        client: usize,
        dest: (u64, u64),
        source: (u64, u64),
        op: CNodeOp,
    ) -> Result<(), KernelError> {
        let place = self.client_slot(client, dest.0, dest.1)?;
        match op {
            CNodeOp::Delete => {
                if let Some(cap) = self.slot(place) {
                    self.delete_cap(cap);
                }
                Ok(())
            }
            CNodeOp::Revoke => {
                if let Some(cap) = self.slot(place) {
                    self.revoke_cap(cap);
                }
                Ok(())
            }
            _ => {
                let from = self.client_slot(client, source.0, source.1)?;
                let src = self.slot(from).ok_or(error::FAILED_LOOKUP)?;
                if self.slot(place).is_some() {
                    return Err(error::DELETE_FIRST);
                }
                let state = self.cap(src).clone();
                match op {
                    CNodeOp::Move | CNodeOp::Mutate(_) => {
                        self.move_cap(src, place);
                        if let CNodeOp::Mutate(guard) = op {
                            self.caps[src].as_mut().expect("live cap").guard_bits = guard;
                        }
                    }
                    CNodeOp::Copy(rights) | CNodeOp::Mint(rights, _) => {
                        if matches!(self.object(state.object).kind, Kind::Untyped { .. }) {
                            return Err(error::INVALID_CAPABILITY);
                        }
                        let cap = self.new_cap(state.object, state.rights.min(rights), Some(src), place);
                        let guard = if let CNodeOp::Mint(_, guard) = op { guard } else { state.guard_bits };
                        self.caps[cap].as_mut().expect("new cap").guard_bits = guard;
                        self.set_slot(place, Some(cap));
                    }
                    CNodeOp::Delete | CNodeOp::Revoke => unreachable!(),
                }
                Ok(())
            }
        }
    }

    /// `seL4_CNode_Copy` by a client that holds a capability to its own root
    /// CNode (a `frame_caps` client: capbuf-compose puts one at its
    /// Microkit-CNode slot 458): the capability its pointer `source` names is
    /// copied, rights masked, into its root CNode slot `dest`. As in seL4, a
    /// copy of a frame capability is a child of its source and not revocable.
    pub fn client_copy_to_root(
        &mut self,
        client: usize,
        dest: u64,
        source: u64,
        rights: Rights,
    ) -> Result<(), KernelError> {
        let src = self.resolve(client, source)?;
        if dest as usize >= CLIENT_ROOT_SLOTS {
            return Err(error::RANGE);
        }
        let place = Place::ClientRoot(client, dest);
        if self.slot(place).is_some() {
            return Err(error::DELETE_FIRST);
        }
        let state = self.cap(src).clone();
        if matches!(self.object(state.object).kind, Kind::Untyped { .. }) {
            return Err(error::INVALID_CAPABILITY);
        }
        let cap = self.new_cap(state.object, state.rights.min(rights), Some(src), place);
        self.caps[cap].as_mut().expect("new cap").guard_bits = state.guard_bits;
        self.set_slot(place, Some(cap));
        Ok(())
    }

    /// Corresponds to `seL4_ARM_Page_GetAddress` (RISC-V, x86: the same) by the client on its
    /// capability pointer `cptr`: any frame capability answers.
    pub fn client_get_address(&self, client: usize, cptr: u64) -> Result<u64, KernelError> {
        let cap = self.resolve(client, cptr)?;
        let object = self.object(self.cap(cap).object);
        match object.kind {
            Kind::Frame => Ok(object.physical_address),
            _ => Err(error::INVALID_CAPABILITY),
        }
    }

    /// Corresponds to `seL4_ARM_Page_Map` (RISC-V, x86: the same) by the client of a frame capability
    /// it holds (`cptr`) into its own VSpace, with attributes of its choosing.
    pub fn client_map_frame(
        &mut self,
        client: usize,
        cptr: u64,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        let cap = self.resolve(client, cptr)?;
        self.map_frame_cap(cap, client, vaddr, attributes)
    }

    /// Corresponds to `seL4_ARM_PageTable_Map` (RISC-V, x86: the same) by the client.
    pub fn client_map_page_table(&mut self, client: usize, cptr: u64, vaddr: u64) -> Result<(), KernelError> {
        let cap = self.resolve(client, cptr)?;
        self.map_page_table_cap(cap, client, vaddr)
    }

    pub(crate) fn map_page_table_cap(&mut self, cap: CapId, client: usize, vaddr: u64) -> Result<(), KernelError> {
        let object = self.cap(cap).object;
        if !matches!(self.object(object).kind, Kind::PageTable) || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        if vaddr % LARGE != 0 {
            return Err(error::INVALID_ARGUMENT);
        }
        if !self.architecture().directory_present(vaddr) {
            return Err(error::FAILED_LOOKUP);
        }
        let space = &mut self.clients[client];
        if space.page_tables.contains_key(&vaddr) || space.frames.contains_key(&vaddr) {
            return Err(error::DELETE_FIRST);
        }
        space.page_tables.insert(vaddr, (object, cap));
        self.caps[cap].as_mut().expect("live cap").mapped = Some((client, vaddr));
        Ok(())
    }

    /// Map a frame capability into `client`'s VSpace. The mapping's rights
    /// are those asked for, masked by the capability's.
    pub(crate) fn map_frame_cap(
        &mut self,
        cap: CapId,
        client: usize,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        let object = self.object(self.cap(cap).object);
        if !matches!(object.kind, Kind::Frame) || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        let size = 1u64 << object.size_bits;
        if vaddr % size != 0 {
            return Err(error::INVALID_ARGUMENT);
        }
        if !self.architecture().directory_present(vaddr) {
            return Err(error::FAILED_LOOKUP);
        }
        let cached = attributes.cached || !self.architecture().uncached_mappings;
        let space = &mut self.clients[client];
        let table = vaddr & !(LARGE - 1);
        if size == LARGE {
            if space.page_tables.contains_key(&table) || space.frames.contains_key(&vaddr) {
                return Err(error::DELETE_FIRST);
            }
        } else {
            if !space.page_tables.contains_key(&table) {
                return Err(error::FAILED_LOOKUP);
            }
            if space.frames.contains_key(&vaddr) {
                return Err(error::DELETE_FIRST);
            }
        }
        let rights = self.cap(cap).rights.min(attributes.rights);
        self.clients[client].frames.insert(vaddr, (cap, rights, cached));
        self.caps[cap].as_mut().expect("live cap").mapped = Some((client, vaddr));
        Ok(())
    }

    fn translate(&self, client: usize, vaddr: u64, write: bool) -> Result<u64, Fault> {
        let fault = Fault { vaddr, write };
        let space = &self.clients[client];
        let (&base, &(cap, rights, _)) = space.frames.range(..=vaddr).next_back().ok_or(fault)?;
        let object = self.object(self.cap(cap).object);
        if vaddr >= base + (1 << object.size_bits) || (write && !rights.can_write()) {
            return Err(fault);
        }
        Ok((object.physical_address + (vaddr - base)) & !((1 << PAGE_BITS) - 1))
    }

    /// The client reads the page at `vaddr` (its contents are one word per page here).
    pub fn client_read(&self, client: usize, vaddr: u64) -> Result<u64, Fault> {
        let page = self.translate(client, vaddr, false)?;
        Ok(self.memory.get(&page).copied().unwrap_or(0))
    }

    /// The client writes `value` to the page at `vaddr`.
    pub fn client_write(&mut self, client: usize, vaddr: u64, value: u64) -> Result<(), Fault> {
        let page = self.translate(client, vaddr, true)?;
        self.memory.insert(page, value);
        Ok(())
    }

    /// The client's frame mappings.
    pub fn client_mappings(&self, client: usize) -> Vec<Mapping> {
        self.clients[client]
            .frames
            .iter()
            .map(|(&vaddr, &(cap, rights, cached))| {
                let object = self.object(self.cap(cap).object);
                Mapping {
                    vaddr,
                    physical_address: object.physical_address,
                    size_bits: object.size_bits,
                    rights,
                    cached,
                }
            })
            .collect()
    }

    /// Frames the client can reach through capabilities it holds (in its root
    /// CNode or in CNodes those name), mapped or not: (physical address, size bits, rights).
    pub fn client_reachable_frames(&self, client: usize) -> Vec<(u64, u32, Rights)> {
        let mut out = Vec::new();
        let visit = |cap: CapId, out: &mut Vec<(u64, u32, Rights)>| {
            let state = self.cap(cap);
            let object = self.object(state.object);
            if matches!(object.kind, Kind::Frame) {
                out.push((object.physical_address, object.size_bits, state.rights));
            }
        };
        for cap in self.clients[client].root.iter().flatten() {
            visit(*cap, &mut out);
            if let Kind::CNode { slots } = &self.object(self.cap(*cap).object).kind {
                for inner in slots.iter().flatten() {
                    visit(*inner, &mut out);
                }
            }
        }
        out
    }

    /// Capabilities of any kind in the client's root CNode.
    pub fn client_capabilities(&self, client: usize) -> usize {
        self.clients[client].root.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use capbuf_protocol::{inner_bits, Rights, MEMSRV_TABLE_VSPACES};
    use capbuf_server::{CapRef, Kernel, MapAttributes, Object, Slot};

    use super::CNodeOp;
    use crate::Model;

    const TABLE_BITS: u64 = 12;
    const RW: MapAttributes = MapAttributes { rights: Rights::ReadWrite, cached: true };

    /// Pool 0 (1 MiB at 16 MiB) split into a 4 KiB frame's block and an
    /// attachment block holding a CNode with a copy of the frame: the shape
    /// capbuf 1.x sent clients.
    fn attachment(model: &mut Model) -> (Slot, Slot, Slot) {
        let (data, meta, cnode, scratch) = (20, 21, 22, 23);
        model.retype(0, Object::Untyped { size_bits: 12 }, CapRef::Table(data), 1).unwrap();
        model.retype(0, Object::Untyped { size_bits: 16 }, CapRef::Table(meta), 1).unwrap();
        model.retype(data, Object::SmallFrame, CapRef::Table(24), 1).unwrap();
        model.retype(meta, Object::CNode { radix: 2 }, CapRef::Table(scratch), 1).unwrap();
        model.mutate_cnode(scratch, cnode, inner_bits(TABLE_BITS) as u32 - 2).unwrap();
        model.copy(CapRef::Table(24), CapRef::InNode { node: cnode, radix: 2, index: 0 }, Rights::ReadWrite).unwrap();
        (data, meta, cnode)
    }

    #[test]
    fn a_copy_taken_out_of_a_sent_cnode_survives_revoking_the_cnode_but_not_the_frame() {
        // The seL4 rule that shaped capbuf: copies of frame capabilities are
        // not revocable, so only the original (the retyped frame or its
        // untyped) reaches them all. capbuf 1.x sent the attachment CNode and
        // gave clients a capability to their own root CNode (modelled here as
        // a second CNode the client holds): the copy-out attack.
        let mut model = Model::new(TABLE_BITS, &[(1 << 24, 20)], 1);
        let (data, meta, cnode) = attachment(&mut model);
        // Guards that fill a client's capability pointer below its root slot.
        model.mutate_cnode(cnode, 30, 58 - 2).unwrap();
        model.transfer_to_client(0, 5, CapRef::Table(30)).unwrap();
        model.retype(0, Object::CNode { radix: 2 }, CapRef::Table(31), 1).unwrap();
        model.mutate_cnode(31, 32, 58 - 2).unwrap();
        model.transfer_to_client(0, 6, CapRef::Table(32)).unwrap();
        let (sent, own) = (5u64 << 58, 6u64 << 58);
        model.client_cnode(0, (6, 0), (5, 0), CNodeOp::Copy(Rights::ReadWrite)).unwrap();
        let _ = sent;
        assert_eq!(model.client_reachable_frames(0).len(), 2, "the sent copy and the client's copy of it");
        // "Detach": revoke the attachment block. The sent CNode dies; the copy does not.
        model.revoke(meta).unwrap();
        assert_eq!(model.client_reachable_frames(0).len(), 1, "the copied-out frame capability survives");
        let vspace = MEMSRV_TABLE_VSPACES as Slot;
        model.retype(0, Object::PageTable, CapRef::Table(33), 1).unwrap();
        model.map_page_table(CapRef::Table(33), vspace, 0x2000_0000).unwrap();
        model.client_map_frame(0, own, 0x2000_0000, RW).unwrap();
        model.client_write(0, 0x2000_0000, 7).unwrap();
        assert_eq!(model.client_get_address(0, own), Ok(1 << 24), "and answers GetAddress");
        // Only revoking the frame's origin reaches it, mapping and all.
        model.revoke(data).unwrap();
        assert!(model.client_reachable_frames(0).is_empty());
        assert!(model.client_mappings(0).is_empty());
        assert!(model.client_read(0, 0x2000_0000).is_err());
    }

    #[test]
    fn revoking_an_attachment_block_unmaps_what_memsrv_mapped() {
        let mut model = Model::new(TABLE_BITS, &[(1 << 24, 20)], 1);
        let (_, meta, cnode) = attachment(&mut model);
        let vspace = MEMSRV_TABLE_VSPACES as Slot;
        model.retype(meta, Object::PageTable, CapRef::InNode { node: cnode, radix: 2, index: 1 }, 1).unwrap();
        model.map_page_table(CapRef::InNode { node: cnode, radix: 2, index: 1 }, vspace, 0x2000_0000).unwrap();
        model.map_frame(CapRef::InNode { node: cnode, radix: 2, index: 0 }, vspace, 0x2000_0000, RW).unwrap();
        model.client_write(0, 0x2000_0000, 7).unwrap();
        assert_eq!(model.client_read(0, 0x2000_0000), Ok(7));
        model.revoke(meta).unwrap();
        assert!(model.client_mappings(0).is_empty());
        assert!(model.client_read(0, 0x2000_0000).is_err(), "the mapping died with the frame copy");
        // A CNode without the guard that fills the table's depth cannot be reached inside.
        model.retype(meta, Object::CNode { radix: 2 }, CapRef::Table(40), 1).unwrap();
        assert!(model
            .copy(CapRef::Table(24), CapRef::InNode { node: 40, radix: 2, index: 0 }, Rights::ReadOnly)
            .is_err());
    }
}
