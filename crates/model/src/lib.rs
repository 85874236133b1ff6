//! A host model of the seL4 kernel, just large enough for capbuf, that
//! enforces the rules the real kernel would: capabilities live in slots and
//! form a derivation tree; retype places objects at the untyped's watermark,
//! aligned to their size, and resets (zeroes) a childless untyped first;
//! destination slots must be empty; copies never gain rights; revoke deletes
//! every descendant in every CSpace; an object dies with its last capability,
//! a CNode taking its slots' capabilities with it and a frame or page table
//! its mappings.
//!
//! Clients are modelled too: a VSpace of page tables and frames, whose
//! capability memsrv holds (in its table, as capbuf-compose places it) and maps
//! attachments into, and a root CNode on which a client can try every
//! capability operation seL4 offers (copy, mint, move, mutate, delete, map,
//! get-address) on whatever it holds, as a hostile client would. Tests read
//! and write memory through the mappings and see a fault where the real
//! system would fault. Memory contents are kept per 4 KiB page.
//!
//! Any of memsrv's invocations can be made to fail, as the kernel refuses
//! one: an error and no effect ([`Model::fail_invocation`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;

use capbuf_protocol::{inner_bits, Invocation, Rights, MEMSRV_TABLE_VSPACES, ROOT_CNODE_BITS};
use capbuf_server::kernel::RETYPE_FAN_OUT_LIMIT;
use capbuf_server::{arch, Architecture, CapRef, Kernel, KernelError, MapAttributes, Object, Slot};

mod client;
mod fingerprint;
mod inject;
pub use client::{CNodeOp, Fault, Mapping};
pub use inject::Injected;

/// seL4 error numbers (`seL4_Error`), as the model reports them.
pub mod error {
    use capbuf_server::KernelError;
    /// `seL4_InvalidArgument`
    pub const INVALID_ARGUMENT: KernelError = KernelError(1);
    /// `seL4_InvalidCapability`
    pub const INVALID_CAPABILITY: KernelError = KernelError(2);
    /// `seL4_RangeError`
    pub const RANGE: KernelError = KernelError(4);
    /// `seL4_FailedLookup`
    pub const FAILED_LOOKUP: KernelError = KernelError(6);
    /// `seL4_DeleteFirst`
    pub const DELETE_FIRST: KernelError = KernelError(8);
    /// `seL4_NotEnoughMemory`
    pub const NOT_ENOUGH_MEMORY: KernelError = KernelError(10);
}

type ObjectId = usize;
type CapId = usize;

/// What kind of object, with its state.
#[derive(Clone, Debug)]
enum Kind {
    Untyped {
        watermark: u64,
    },
    Frame,
    PageTable,
    CNode {
        slots: Vec<Option<CapId>>,
    },
    /// A client's VSpace (its top-level page table).
    VSpace {
        client: usize,
    },
    /// A device's I/O address space behind the IOMMU (x86 VT-d), with the
    /// I/O page tables of [`capbuf_protocol::IO_WINDOW`] already built.
    IOSpace {
        device: usize,
    },
}

/// [`Cap::mapped`]'s first field for a frame mapped into device `d`'s I/O
/// address space is `IO_MAPPED + d` (a frame capability maps once, into a
/// VSpace or an IOSpace).
const IO_MAPPED: usize = 1 << 32;

#[derive(Clone, Debug)]
struct ObjectState {
    kind: Kind,
    physical_address: u64,
    size_bits: u32,
    caps: usize,
}

/// Where a capability is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Table(Slot),
    InNode(ObjectId, u32),
    ClientRoot(usize, u64),
}

#[derive(Clone, Debug)]
struct Cap {
    object: ObjectId,
    rights: Rights,
    guard_bits: u32,
    parent: Option<CapId>,
    place: Place,
    /// Virtual address this (frame or page table) capability is mapped at, and in which client's VSpace.
    mapped: Option<(usize, u64)>,
}

/// Counts of kernel invocations, for cost estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `seL4_Untyped_Retype` calls.
    pub retype: u64,
    /// Retypes that reset (zeroed) their untyped first.
    pub reset: u64,
    /// Bytes zeroed by resets.
    pub zeroed_bytes: u64,
    /// `seL4_CNode_Mint`/`Copy` calls.
    pub copy: u64,
    /// `seL4_CNode_Mutate` calls.
    pub mutate: u64,
    /// `seL4_ARM_Page_Map` and `seL4_ARM_PageTable_Map` calls.
    pub map: u64,
    /// `seL4_CNode_Revoke` calls.
    pub revoke: u64,
    /// `seL4_CNode_Delete` calls.
    pub delete: u64,
    /// `seL4_X86_Page_MapIO` calls.
    pub io_map: u64,
    /// Frames memsrv zeroed itself ([`Kernel::zero_frame`]: a map into its
    /// own VSpace, the zeros, an unmap), those of `device` pools.
    pub zero_frames: u64,
}

/// The model kernel. A clone is an independent copy of the whole kernel.
#[derive(Clone)]
pub struct Model {
    table_bits: u64,
    objects: Vec<Option<ObjectState>>,
    caps: Vec<Option<Cap>>,
    table: Vec<Option<CapId>>,
    clients: Vec<client::ClientSpace>,
    memory: BTreeMap<u64, u64>,
    /// Invocation counts.
    pub counts: Counts,
    injector: inject::Injector,
    /// The architecture whose translation rules the model applies.
    architecture: Architecture,
    /// Physical ranges the kernel knows as device memory, not RAM.
    device: Vec<core::ops::Range<u64>>,
    /// Each device's I/O address space: I/O address to the frame
    /// capability mapped there.
    io_spaces: Vec<BTreeMap<u64, (CapId, Rights)>>,
}

impl Model {
    /// A model with a table of `2^table_bits` slots, the pools' untyped
    /// capabilities in its first slots, and `clients` clients, whose VSpace
    /// capabilities are in table slots from [`MEMSRV_TABLE_VSPACES`] on, as
    /// capbuf-compose places them.
    /// Its translation rules are AArch64's; [`Model::on`] chooses another
    /// architecture's.
    pub fn new(table_bits: u64, pools: &[(u64, u64)], clients: usize) -> Model {
        let mut model = Model {
            table_bits,
            objects: Vec::new(),
            caps: Vec::new(),
            table: vec![None; 1 << table_bits],
            clients: (0..clients).map(|_| client::ClientSpace::default()).collect(),
            memory: BTreeMap::new(),
            counts: Counts::default(),
            injector: inject::Injector::default(),
            architecture: arch::AARCH64,
            device: Vec::new(),
            io_spaces: Vec::new(),
        };
        for (i, &(physical_address, size_bits)) in pools.iter().enumerate() {
            let object = model.new_object(Kind::Untyped { watermark: 0 }, physical_address, size_bits as u32);
            let cap = model.new_cap(object, Rights::ReadWrite, None, Place::Table(i as Slot));
            model.table[i] = Some(cap);
        }
        for client in 0..clients {
            let object = model.new_object(Kind::VSpace { client }, 0, 12);
            let slot = MEMSRV_TABLE_VSPACES as Slot + client as Slot;
            let cap = model.new_cap(object, Rights::ReadWrite, None, Place::Table(slot));
            model.table[slot as usize] = Some(cap);
        }
        model
    }

    /// The same model applying `architecture`'s translation rules: a
    /// mapping (frame or last-level table) is refused with
    /// `seL4_FailedLookup` outside the 1 GiB whose table the client's program
    /// image made, and an uncached mapping is cacheable where the page
    /// tables cannot say otherwise (RISC-V).
    pub fn on(mut self, architecture: Architecture) -> Model {
        self.architecture = architecture;
        self
    }

    /// Give the model a device behind an IOMMU, its IOSpace capability in
    /// table slot `slot` (where capbuf-compose puts an `io_space` client's,
    /// [`capbuf_protocol::Config::io_space_slot`]). Returns the device's number
    /// for [`Model::io_mappings`] and [`Model::dma`].
    pub fn add_io_space(&mut self, slot: Slot) -> usize {
        let device = self.io_spaces.len();
        self.io_spaces.push(BTreeMap::new());
        let object = self.new_object(Kind::IOSpace { device }, 0, 12);
        let cap = self.new_cap(object, Rights::ReadWrite, None, Place::Table(slot));
        self.table[slot as usize] = Some(cap);
        device
    }

    /// The device whose IOSpace capability is in table slot `slot`, if one is.
    pub fn io_space_at(&self, slot: Slot) -> Option<usize> {
        let cap = self.table.get(slot as usize).copied().flatten()?;
        match self.object(self.cap(cap).object).kind {
            Kind::IOSpace { device } => Some(device),
            _ => None,
        }
    }

    /// What device `device` can reach: every I/O page mapped in its I/O
    /// address space, as (I/O address, physical address, rights), in
    /// address order.
    pub fn io_mappings(&self, device: usize) -> Vec<(u64, u64, Rights)> {
        self.io_spaces[device]
            .iter()
            .map(|(&ioaddr, &(cap, rights))| (ioaddr, self.object(self.cap(cap).object).physical_address, rights))
            .collect()
    }

    /// A DMA by device `device` at I/O address `ioaddr` through the IOMMU
    /// (the word of its 4 KiB page, as the model keeps memory): the word read
    /// (`write` None) or written; a DMA fault (its I/O address in
    /// [`Fault::vaddr`]) where nothing is mapped or a write meets a
    /// read-only page.
    pub fn dma(&mut self, device: usize, ioaddr: u64, write: Option<u64>) -> Result<u64, Fault> {
        let page = ioaddr & !0xfff;
        let fault = Fault { vaddr: ioaddr, write: write.is_some() };
        let (_, physical, rights) = self.io_mappings(device).into_iter().find(|m| m.0 == page).ok_or(fault)?;
        match write {
            Some(_) if rights != Rights::ReadWrite => Err(fault),
            Some(value) => {
                self.memory.insert(physical, value);
                Ok(value)
            }
            None => Ok(self.memory.get(&physical).copied().unwrap_or(0)),
        }
    }

    /// The architecture whose rules the model applies.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The same model with `range` of physical memory known to the kernel
    /// as device memory (RAM beyond what the kernel was built for, as on
    /// QEMU with more memory than the platform's), which seL4 hands out as
    /// device untyped: a retype from it makes frames and untypeds only
    /// (anything else is refused with `seL4_InvalidArgument`) and never
    /// zeroes them. What was in that memory stays, as
    /// [`Model::fill_memory`] leaves it.
    pub fn device_memory(mut self, range: core::ops::Range<u64>) -> Model {
        self.device.push(range);
        self
    }

    /// Write `value` into every 4 KiB page of `[start, end)`, as what an
    /// earlier user (a boot loader, a device, a previous run) left there.
    pub fn fill_memory(&mut self, start: u64, end: u64, value: u64) {
        for page in (start..end).step_by(1 << 12) {
            if value == 0 {
                self.memory.remove(&page);
            } else {
                self.memory.insert(page, value);
            }
        }
    }

    fn is_device(&self, physical_address: u64) -> bool {
        self.device.iter().any(|range| range.contains(&physical_address))
    }

    fn new_object(&mut self, kind: Kind, physical_address: u64, size_bits: u32) -> ObjectId {
        self.objects.push(Some(ObjectState { kind, physical_address, size_bits, caps: 0 }));
        self.objects.len() - 1
    }

    fn new_cap(&mut self, object: ObjectId, rights: Rights, parent: Option<CapId>, place: Place) -> CapId {
        self.objects[object].as_mut().expect("live object").caps += 1;
        self.caps.push(Some(Cap { object, rights, guard_bits: 0, parent, place, mapped: None }));
        self.caps.len() - 1
    }

    fn object(&self, id: ObjectId) -> &ObjectState {
        self.objects[id].as_ref().expect("live object")
    }

    fn cap(&self, id: CapId) -> &Cap {
        self.caps[id].as_ref().expect("live cap")
    }

    fn place_of(&self, at: CapRef) -> Result<Place, KernelError> {
        match at {
            CapRef::Table(slot) => {
                if (slot as usize) < self.table.len() {
                    Ok(Place::Table(slot))
                } else {
                    Err(error::RANGE)
                }
            }
            CapRef::InNode { node, radix, index } => {
                let cap = self.lookup(CapRef::Table(node))?.ok_or(error::FAILED_LOOKUP)?;
                let object = self.cap(cap).object;
                match &self.object(object).kind {
                    // memsrv reaches inner slots with capability pointers that
                    // leave `inner_bits` bits below the table: the CNode's
                    // guard and radix must consume exactly those, or the
                    // lookup misses.
                    Kind::CNode { slots }
                        if slots.len() != 1 << radix
                            || self.cap(cap).guard_bits + radix != inner_bits(self.table_bits) as u32 =>
                    {
                        Err(error::FAILED_LOOKUP)
                    }
                    Kind::CNode { slots } if (index as usize) < slots.len() => Ok(Place::InNode(object, index)),
                    Kind::CNode { .. } => Err(error::RANGE),
                    _ => Err(error::FAILED_LOOKUP),
                }
            }
        }
    }

    fn slot(&self, place: Place) -> Option<CapId> {
        match place {
            Place::Table(slot) => self.table[slot as usize],
            Place::InNode(object, index) => match &self.object(object).kind {
                Kind::CNode { slots } => slots[index as usize],
                _ => None,
            },
            Place::ClientRoot(client, slot) => self.clients[client].root[slot as usize],
        }
    }

    fn set_slot(&mut self, place: Place, cap: Option<CapId>) {
        match place {
            Place::Table(slot) => self.table[slot as usize] = cap,
            Place::InNode(object, index) => {
                if let Some(Kind::CNode { slots }) = self.objects[object].as_mut().map(|o| &mut o.kind) {
                    slots[index as usize] = cap;
                }
            }
            Place::ClientRoot(client, slot) => self.clients[client].root[slot as usize] = cap,
        }
    }

    fn lookup(&self, at: CapRef) -> Result<Option<CapId>, KernelError> {
        Ok(self.slot(self.place_of(at)?))
    }

    /// Move a capability to an empty place, keeping its place in the
    /// derivation tree and its mapping (`cteMove`).
    fn move_cap(&mut self, cap: CapId, place: Place) {
        let old = self.cap(cap).place;
        self.set_slot(old, None);
        self.set_slot(place, Some(cap));
        self.caps[cap].as_mut().expect("live cap").place = place;
    }

    /// The client whose VSpace capability is in table slot `slot`.
    fn vspace_client(&self, slot: Slot) -> Result<usize, KernelError> {
        let cap = self.lookup(CapRef::Table(slot))?.ok_or(error::FAILED_LOOKUP)?;
        match self.object(self.cap(cap).object).kind {
            Kind::VSpace { client } => Ok(client),
            _ => Err(error::INVALID_CAPABILITY),
        }
    }

    fn children(&self, cap: CapId) -> Vec<CapId> {
        (0..self.caps.len()).filter(|&c| self.caps[c].as_ref().is_some_and(|c| c.parent == Some(cap))).collect()
    }

    fn has_descendants(&self, cap: CapId) -> bool {
        self.caps.iter().flatten().any(|c| c.parent == Some(cap))
    }

    /// Delete one capability: its children move up to its parent (as in the
    /// kernel's derivation list), its mapping goes, and the object dies if
    /// this was its last capability.
    fn delete_cap(&mut self, cap: CapId) {
        let Some(state) = self.caps[cap].take() else { return };
        for child in self.caps.iter_mut().flatten() {
            if child.parent == Some(cap) {
                child.parent = state.parent;
            }
        }
        self.set_slot(state.place, None);
        match state.mapped {
            Some((io, ioaddr)) if io >= IO_MAPPED => {
                self.io_spaces[io - IO_MAPPED].remove(&ioaddr);
            }
            Some((client, vaddr)) => self.clients[client].unmap(vaddr, cap),
            None => {}
        }
        let object = self.objects[state.object].as_mut().expect("live object");
        object.caps -= 1;
        if object.caps == 0 {
            let object = self.objects[state.object].take().expect("live object");
            match object.kind {
                Kind::CNode { slots } => {
                    for inner in slots.into_iter().flatten() {
                        self.delete_cap(inner);
                    }
                }
                Kind::PageTable => {
                    for client in 0..self.clients.len() {
                        for (vaddr, frame_cap) in self.clients[client].drop_page_table(state.object) {
                            if let Some(frame) = self.caps[frame_cap].as_mut() {
                                debug_assert_eq!(frame.mapped, Some((client, vaddr)));
                                frame.mapped = None;
                            }
                        }
                    }
                }
                Kind::Untyped { .. } | Kind::Frame | Kind::VSpace { .. } | Kind::IOSpace { .. } => {}
            }
        }
    }

    fn revoke_cap(&mut self, cap: CapId) {
        while let Some(&child) = self.children(cap).first() {
            self.revoke_cap(child);
            self.delete_cap(child);
        }
    }

    /// Every physical page any live frame covers, with the frame's object id.
    fn frame_objects(&self) -> impl Iterator<Item = (ObjectId, &ObjectState)> {
        self.objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().filter(|o| matches!(o.kind, Kind::Frame)).map(|o| (i, o)))
    }

    /// Number of live objects of each kind: (untyped, frames, page tables, CNodes); VSpaces are not counted.
    pub fn live_objects(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for object in self.objects.iter().flatten() {
            match object.kind {
                Kind::Untyped { .. } => counts.0 += 1,
                Kind::Frame => counts.1 += 1,
                Kind::PageTable => counts.2 += 1,
                Kind::CNode { .. } => counts.3 += 1,
                Kind::VSpace { .. } | Kind::IOSpace { .. } => {}
            }
        }
        counts
    }

    /// Physical address and size bits of every live CNode and page table:
    /// where memsrv's metadata lives.
    pub fn metadata_objects(&self) -> Vec<(u64, u32)> {
        self.objects
            .iter()
            .flatten()
            .filter(|o| matches!(o.kind, Kind::CNode { .. } | Kind::PageTable))
            .map(|o| (o.physical_address, o.size_bits))
            .collect()
    }

    /// Slots of every live CNode, smallest first (the benchmark prices a
    /// CNode's destruction by its slots).
    pub fn live_cnode_slots(&self) -> Vec<usize> {
        let mut slots: Vec<usize> = self
            .objects
            .iter()
            .flatten()
            .filter_map(|o| match &o.kind {
                Kind::CNode { slots } => Some(slots.len()),
                _ => None,
            })
            .collect();
        slots.sort_unstable();
        slots
    }

    /// Capabilities that exist, anywhere (the benchmark counts what a revoke deleted).
    pub fn live_caps(&self) -> usize {
        self.caps.iter().flatten().count()
    }

    /// Frame capabilities that are mapped into a client's VSpace.
    pub fn live_mappings(&self) -> usize {
        self.caps.iter().flatten().filter(|c| c.mapped.is_some()).count()
    }

    /// Table slots that hold a capability.
    pub fn used_table_slots(&self) -> usize {
        self.table.iter().flatten().count()
    }

    /// Physical ranges of live frames that overlap each other (must never happen).
    pub fn overlapping_frames(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> =
            self.frame_objects().map(|(_, o)| (o.physical_address, o.physical_address + (1 << o.size_bits))).collect();
        ranges.sort();
        ranges.windows(2).filter(|w| w[0].1 > w[1].0).map(|w| w[1]).collect()
    }

    /// Nonzero memory pages in `[start, end)`.
    pub fn dirty_pages(&self, start: u64, end: u64) -> usize {
        self.memory.range(start..end).filter(|(_, v)| **v != 0).count()
    }
}

impl Kernel for Model {
    fn retype(&mut self, untyped: Slot, object: Object, dest: CapRef, count: u32) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::UntypedRetype)?;
        self.counts.retype += 1;
        if count == 0 || count > RETYPE_FAN_OUT_LIMIT {
            return Err(error::RANGE);
        }
        let parent = self.lookup(CapRef::Table(untyped))?.ok_or(error::FAILED_LOOKUP)?;
        let parent_object = self.cap(parent).object;
        let (base, region_bits, mut watermark) = match self.object(parent_object) {
            ObjectState { kind: Kind::Untyped { watermark }, physical_address, size_bits, .. } => {
                (*physical_address, *size_bits, *watermark)
            }
            _ => return Err(error::INVALID_CAPABILITY),
        };
        let size_bits = object.size_bits();
        let device = self.is_device(base);
        match object {
            Object::CNode { .. } | Object::PageTable if device => return Err(error::INVALID_ARGUMENT),
            Object::CNode { radix: 0 } => return Err(error::INVALID_ARGUMENT),
            Object::Untyped { size_bits } if !(4..=47).contains(&size_bits) => return Err(error::RANGE),
            _ => {}
        }
        // Destination slots must exist and be empty before anything changes.
        let first = self.place_of(dest)?;
        let places: Vec<Place> = (0..count)
            .map(|i| match first {
                Place::Table(s) => {
                    if (s + i) as usize >= self.table.len() {
                        Err(error::RANGE)
                    } else {
                        Ok(Place::Table(s + i))
                    }
                }
                Place::InNode(o, index) => match &self.object(o).kind {
                    Kind::CNode { slots } if ((index + i) as usize) < slots.len() => Ok(Place::InNode(o, index + i)),
                    _ => Err(error::RANGE),
                },
                Place::ClientRoot(..) => unreachable!(),
            })
            .collect::<Result<_, _>>()?;
        if places.iter().any(|p| self.slot(*p).is_some()) {
            return Err(error::DELETE_FIRST);
        }
        let reset = !self.has_descendants(parent);
        if reset {
            watermark = 0;
        }
        let aligned = watermark.next_multiple_of(1 << size_bits);
        let end = aligned + ((count as u64) << size_bits);
        if end > 1 << region_bits {
            return Err(error::NOT_ENOUGH_MEMORY);
        }
        if reset {
            let old = match self.object(parent_object).kind {
                Kind::Untyped { watermark } => watermark,
                _ => 0,
            };
            if old > 0 && !device {
                self.counts.reset += 1;
                self.counts.zeroed_bytes += old;
                let pages: Vec<u64> = self.memory.range(base..base + old).map(|(k, _)| *k).collect();
                for page in pages {
                    self.memory.remove(&page);
                }
            }
        }
        if let Some(ObjectState { kind: Kind::Untyped { watermark }, .. }) = self.objects[parent_object].as_mut() {
            *watermark = end;
        }
        for (i, place) in places.into_iter().enumerate() {
            let physical_address = base + aligned + ((i as u64) << size_bits);
            let kind = match object {
                Object::Untyped { .. } => Kind::Untyped { watermark: 0 },
                Object::SmallFrame | Object::LargeFrame => Kind::Frame,
                Object::PageTable => Kind::PageTable,
                Object::CNode { radix } => Kind::CNode { slots: vec![None; 1 << radix] },
            };
            let new = self.new_object(kind, physical_address, size_bits);
            let cap = self.new_cap(new, Rights::ReadWrite, Some(parent), place);
            self.set_slot(place, Some(cap));
        }
        Ok(())
    }

    fn copy(&mut self, source: CapRef, dest: CapRef, rights: Rights) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::CNodeCopy)?;
        self.counts.copy += 1;
        let src = self.lookup(source)?.ok_or(error::FAILED_LOOKUP)?;
        let place = self.place_of(dest)?;
        if self.slot(place).is_some() {
            return Err(error::DELETE_FIRST);
        }
        let state = self.cap(src).clone();
        if matches!(self.object(state.object).kind, Kind::Untyped { .. }) {
            return Err(error::INVALID_CAPABILITY);
        }
        let cap = self.new_cap(state.object, state.rights.min(rights), Some(src), place);
        self.set_slot(place, Some(cap));
        Ok(())
    }

    fn mutate_cnode(&mut self, source: Slot, dest: Slot, guard_bits: u32) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::CNodeMutate)?;
        self.counts.mutate += 1;
        let src = self.lookup(CapRef::Table(source))?.ok_or(error::FAILED_LOOKUP)?;
        let place = self.place_of(CapRef::Table(dest))?;
        if self.slot(place).is_some() {
            return Err(error::DELETE_FIRST);
        }
        let radix = match &self.object(self.cap(src).object).kind {
            Kind::CNode { slots } => slots.len().trailing_zeros(),
            _ => return Err(error::INVALID_CAPABILITY),
        };
        if guard_bits + radix > 64 {
            return Err(error::RANGE);
        }
        self.move_cap(src, place);
        self.caps[src].as_mut().expect("live cap").guard_bits = guard_bits;
        Ok(())
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::CNodeRevoke)?;
        self.counts.revoke += 1;
        let cap = self.lookup(CapRef::Table(slot))?.ok_or(error::FAILED_LOOKUP)?;
        self.revoke_cap(cap);
        Ok(())
    }

    fn delete(&mut self, slot: Slot) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::CNodeDelete)?;
        self.counts.delete += 1;
        if let Some(cap) = self.lookup(CapRef::Table(slot))? {
            self.delete_cap(cap);
        }
        Ok(())
    }

    fn map_page_table(&mut self, table: CapRef, vspace: Slot, vaddr: u64) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::PageTableMap)?;
        self.counts.map += 1;
        let cap = self.lookup(table)?.ok_or(error::FAILED_LOOKUP)?;
        let client = self.vspace_client(vspace)?;
        self.map_page_table_cap(cap, client, vaddr)
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        vspace: Slot,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::PageMap)?;
        self.counts.map += 1;
        let cap = self.lookup(frame)?.ok_or(error::FAILED_LOOKUP)?;
        let client = self.vspace_client(vspace)?;
        self.map_frame_cap(cap, client, vaddr, attributes)
    }

    fn zero_frame(&mut self, frame: CapRef, object: Object) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::PageMap)?;
        self.counts.zero_frames += 1;
        let cap = self.lookup(frame)?.ok_or(error::FAILED_LOOKUP)?;
        let state = self.object(self.cap(cap).object);
        // A capability maps once: memsrv's mapping needs an unmapped one.
        if !matches!(state.kind, Kind::Frame) || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        if state.size_bits != object.size_bits() {
            return Err(error::INVALID_ARGUMENT);
        }
        let (start, end) = (state.physical_address, state.physical_address + (1 << state.size_bits));
        self.fill_memory(start, end, 0);
        Ok(())
    }

    fn map_io_frame(&mut self, frame: CapRef, iospace: Slot, rights: Rights, ioaddr: u64) -> Result<(), KernelError> {
        self.injector.invoke(Invocation::IoPageMap)?;
        self.counts.io_map += 1;
        let cap = self.lookup(frame)?.ok_or(error::FAILED_LOOKUP)?;
        let space = self.lookup(CapRef::Table(iospace))?.ok_or(error::FAILED_LOOKUP)?;
        let Kind::IOSpace { device } = self.object(self.cap(space).object).kind else {
            return Err(error::INVALID_CAPABILITY);
        };
        // seL4 16.0.0, iospace.c: 4 KiB frames only, a capability mapped
        // nowhere else, a leaf I/O page table present (capbuf-compose builds
        // those of IO_WINDOW only), no page there yet.
        let state = self.object(self.cap(cap).object);
        if !matches!(state.kind, Kind::Frame) || state.size_bits != 12 || self.cap(cap).mapped.is_some() {
            return Err(error::INVALID_CAPABILITY);
        }
        if ioaddr % (1 << 12) != 0 || !capbuf_protocol::IO_WINDOW.contains(&ioaddr) {
            return Err(error::FAILED_LOOKUP);
        }
        if self.io_spaces[device].contains_key(&ioaddr) {
            return Err(error::DELETE_FIRST);
        }
        let rights = self.cap(cap).rights.min(rights);
        self.caps[cap].as_mut().expect("live cap").mapped = Some((IO_MAPPED + device, ioaddr));
        self.io_spaces[device].insert(ioaddr, (cap, rights));
        Ok(())
    }
}

/// Root CNode slots of a client, as in a Microkit PD.
pub const CLIENT_ROOT_SLOTS: usize = 1 << ROOT_CNODE_BITS;
