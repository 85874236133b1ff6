//! Client protection domains in the model: a root CNode that receives
//! capabilities and a VSpace of page tables and frame mappings.

use std::collections::BTreeMap;

use capbuf_protocol::{Rights, LARGE_PAGE_BITS, PAGE_BITS, ROOT_SLOT_SHIFT};
use capbuf_server::{KernelError, Slot};

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
}

#[derive(Clone, Debug)]
pub(crate) struct ClientSpace {
    pub(crate) root: Vec<Option<CapId>>,
    /// Page tables by the 2 MiB-aligned address they cover.
    page_tables: BTreeMap<u64, (ObjectId, CapId)>,
    /// Frame mappings by virtual address.
    frames: BTreeMap<u64, (CapId, Rights)>,
}

impl Default for ClientSpace {
    fn default() -> Self {
        ClientSpace { root: vec![None; CLIENT_ROOT_SLOTS], page_tables: BTreeMap::new(), frames: BTreeMap::new() }
    }
}

impl ClientSpace {
    pub(crate) fn unmap(&mut self, vaddr: u64, cap: CapId) {
        if self.frames.get(&vaddr).is_some_and(|(c, _)| *c == cap) {
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
        let gone: Vec<(u64, CapId)> = self.frames.range(base..base + LARGE).map(|(v, (c, _))| (*v, *c)).collect();
        for (vaddr, _) in &gone {
            self.frames.remove(vaddr);
        }
        gone
    }
}

impl Model {
    /// The kernel's capability transfer in a reply: a copy of the capability in
    /// memsrv's table slot `from` lands in the client's root CNode slot `slot`.
    /// Like the kernel, refuses (drops the capability) if the slot is not empty.
    pub fn receive(&mut self, client: usize, slot: u64, from: Slot) -> Result<(), KernelError> {
        let source = self.table.get(from as usize).copied().flatten().ok_or(error::FAILED_LOOKUP)?;
        let place = Place::ClientRoot(client, slot);
        if slot as usize >= CLIENT_ROOT_SLOTS {
            return Err(error::RANGE);
        }
        if self.slot(place).is_some() {
            return Err(error::DELETE_FIRST);
        }
        let state = self.cap(source).clone();
        let cap = self.new_cap(state.object, state.rights, Some(source), place);
        self.caps[cap].as_mut().expect("new cap").guard_bits = state.guard_bits;
        self.set_slot(place, Some(cap));
        Ok(())
    }

    /// Corresponds to the client's `seL4_CNode_Delete` of its root CNode slot `slot`.
    pub fn client_delete(&mut self, client: usize, slot: u64) {
        if let Some(cap) = self.clients[client].root.get(slot as usize).copied().flatten() {
            self.delete_cap(cap);
        }
    }

    /// Whether the client's root CNode slot holds a capability.
    pub fn client_slot_used(&self, client: usize, slot: u64) -> bool {
        self.clients[client].root[slot as usize].is_some()
    }

    /// Resolve the client's capability pointer `(slot << 58) | index` as the
    /// kernel would: the root slot must hold a CNode whose guard and radix
    /// consume the remaining 58 bits.
    fn resolve(&self, client: usize, slot: u64, index: u64) -> Result<CapId, KernelError> {
        let node_cap = self.clients[client].root.get(slot as usize).copied().flatten().ok_or(error::FAILED_LOOKUP)?;
        let node = self.cap(node_cap);
        match &self.object(node.object).kind {
            Kind::CNode { slots } => {
                let radix = slots.len().trailing_zeros();
                if node.guard_bits + radix != ROOT_SLOT_SHIFT as u32 || index >= slots.len() as u64 {
                    return Err(error::FAILED_LOOKUP);
                }
                slots[index as usize].ok_or(error::FAILED_LOOKUP)
            }
            _ => Err(error::FAILED_LOOKUP),
        }
    }

    /// Corresponds to `seL4_ARM_PageTable_Map` by the client.
    pub fn client_map_page_table(
        &mut self,
        client: usize,
        slot: u64,
        index: u64,
        vaddr: u64,
    ) -> Result<(), KernelError> {
        let cap = self.resolve(client, slot, index)?;
        let object = self.cap(cap).object;
        if !matches!(self.object(object).kind, Kind::PageTable) || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        if vaddr % LARGE != 0 {
            return Err(error::INVALID_ARGUMENT);
        }
        let space = &mut self.clients[client];
        if space.page_tables.contains_key(&vaddr) || space.frames.contains_key(&vaddr) {
            return Err(error::DELETE_FIRST);
        }
        space.page_tables.insert(vaddr, (object, cap));
        self.caps[cap].as_mut().expect("live cap").mapped = Some((client, vaddr));
        Ok(())
    }

    /// Corresponds to `seL4_ARM_Page_Map` by the client. The mapping's rights
    /// are those asked for, masked by the capability's.
    pub fn client_map_frame(
        &mut self,
        client: usize,
        slot: u64,
        index: u64,
        vaddr: u64,
        rights: Rights,
    ) -> Result<(), KernelError> {
        let cap = self.resolve(client, slot, index)?;
        let object = self.object(self.cap(cap).object);
        if !matches!(object.kind, Kind::Frame) || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        let size = 1u64 << object.size_bits;
        if vaddr % size != 0 {
            return Err(error::INVALID_ARGUMENT);
        }
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
        let rights = self.cap(cap).rights.min(rights);
        self.clients[client].frames.insert(vaddr, (cap, rights));
        self.caps[cap].as_mut().expect("live cap").mapped = Some((client, vaddr));
        Ok(())
    }

    fn translate(&self, client: usize, vaddr: u64, write: bool) -> Result<u64, Fault> {
        let fault = Fault { vaddr, write };
        let space = &self.clients[client];
        let (&base, &(cap, rights)) = space.frames.range(..=vaddr).next_back().ok_or(fault)?;
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
            .map(|(&vaddr, &(cap, rights))| {
                let object = self.object(self.cap(cap).object);
                Mapping { vaddr, physical_address: object.physical_address, size_bits: object.size_bits, rights }
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
}
