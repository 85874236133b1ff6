//! What capbuf adds to the CapDL spec Microkit built, and the re-sort the
//! CapDL initialiser needs afterwards.

use std::cmp::Ordering;
use std::collections::HashMap;

use capbuf_protocol::{
    microkit, CLIENT_ROOT_CPTR, IO_WINDOW, LARGE_PAGE_BITS, MEMSRV_SCRATCH, MEMSRV_TABLE_CPTR, MEMSRV_TABLE_ROOT_SLOT,
    MEMSRV_TABLE_SEND_ROOT_SLOT, MEMSRV_TABLE_VSPACES, ROOT_SLOT_SHIFT, UNTYPED_CPTR,
};
use microkit_tool::capdl::builder::{PD_CAP_SIZE, SLOT_BITS};
use microkit_tool::capdl::spec::capdl_obj_physical_size_bits;
use microkit_tool::capdl::{CapDLNamedObject, CapDLSpecContainer};
use microkit_tool::sdf::SystemDescription;
use microkit_tool::sel4::Config;
use sel4_capdl_initializer_types::{cap, object, Cap, CapSlot, CapTableEntry, NamedObject, Object, ObjectId, Word};

use crate::extension::Resolved;

// The parts of Microkit's capability layout its tool exports, checked at
// compile time; the rest (the VSpace at slot 3) is checked against the spec
// it built, in `client_vspace`.
const _: () = assert!(PD_CAP_SIZE as u64 == 1 << microkit::CNODE_BITS, "Microkit CNode radix");
const _: () = assert!(SLOT_BITS == capbuf_server::kernel::SLOT_BITS as u64, "CNode slot size");

fn find(container: &CapDLSpecContainer, name: &str) -> Result<ObjectId, String> {
    container
        .spec
        .objects
        .iter()
        .position(|o| o.name.as_deref() == Some(name))
        .map(ObjectId::from)
        .ok_or_else(|| format!("capbuf: the Microkit spec has no object '{name}' (unexpected Microkit version?)"))
}

fn insert(container: &mut CapDLSpecContainer, cnode: ObjectId, slot: u64, new: Cap, what: &str) -> Result<(), String> {
    let node = &mut container.spec.objects[usize::from(cnode)];
    let name = node.name.clone().unwrap_or_default();
    let slots = match &mut node.object {
        Object::CNode(c) => &mut c.slots,
        _ => return Err(format!("capbuf: '{name}' is not a CNode")),
    };
    if slots.iter().any(|entry| entry.slot.0 as u64 == slot) {
        return Err(format!("capbuf: slot {slot} of '{name}' is already used; it is reserved for {what}"));
    }
    slots.push(CapTableEntry { slot: CapSlot(slot as _), cap: new });
    slots.sort_by_key(|entry| entry.slot.0);
    Ok(())
}

fn cnode_cap(object: ObjectId, guard_size: u64) -> Cap {
    Cap::CNode(cap::CNode { object, guard: Word(0), guard_size: guard_size as u8 })
}

/// The VSpace capability Microkit put at slot 3 of protection domain `name`'s
/// Microkit CNode, checked to be one: a root page table.
fn client_vspace(container: &CapDLSpecContainer, name: &str) -> Result<Cap, String> {
    let microkit_cnode = find(container, &format!("cnode_{name}"))?;
    let Object::CNode(cnode) = &container.spec.objects[usize::from(microkit_cnode)].object else {
        return Err(format!("capbuf: 'cnode_{name}' is not a CNode (unexpected Microkit version?)"));
    };
    let cap = cnode
        .slots
        .iter()
        .find(|entry| entry.slot.0 as u64 == microkit::VSPACE_CPTR)
        .map(|entry| entry.cap.clone())
        .ok_or_else(|| format!("capbuf: '{name}' has no capability at Microkit slot {}", microkit::VSPACE_CPTR))?;
    match (&cap, &container.spec.objects[usize::from(cap.obj())].object) {
        (Cap::PageTable(_), Object::PageTable(table)) if table.is_root => Ok(cap),
        _ => Err(format!(
            "capbuf: Microkit slot {} of '{name}' is not its VSpace (unexpected Microkit version?)",
            microkit::VSPACE_CPTR
        )),
    }
}

/// Give memsrv its pools, its table and its clients' VSpaces.
///
/// memsrv: an untyped object per pool, all in a new table CNode (pool `i` at
/// slot `i`), and a copy of client `i`'s VSpace capability at table slot
/// [`MEMSRV_TABLE_VSPACES`]` + i`, through which memsrv maps attachments;
/// the table in root CNode slot 1, guard 0, so that memsrv's capability
/// pointers name table slots and the slots of guarded CNodes held in them
/// ([`capbuf_protocol::table_cptr`]), and in Microkit-CNode slot 458 for use
/// as an invocation root. A `frame_caps` client gets a capability to its own
/// root CNode in Microkit-CNode slot [`CLIENT_ROOT_CPTR`] (458), the receive
/// path for EXPORT's CNodes, and memsrv then gets its table again in root
/// slot [`MEMSRV_TABLE_SEND_ROOT_SLOT`], guarded to fill a pointer, to name
/// what it sends ([`capbuf_protocol::send_cptr`]); other clients get nothing.
/// A protection domain named by `<untyped>` gets that untyped object at
/// Microkit-CNode slot [`UNTYPED_CPTR`] (459) and its root CNode at
/// [`CLIENT_ROOT_CPTR`] (458).
pub fn extend(
    container: &mut CapDLSpecContainer,
    config: &Config,
    system: &SystemDescription,
    resolved: &Resolved,
) -> Result<(), String> {
    let server = &system.protection_domains[resolved.server].name;
    if resolved.pools.iter().any(|pool| pool.device) {
        scratch_table(container, config, server)?;
    }
    let table_bits = resolved.config.table_bits;
    let mut slots = Vec::new();
    for (i, pool) in resolved.pools.iter().enumerate() {
        let id = container.add_root_object(NamedObject {
            name: Some(format!("capbuf_pool_{}", pool.name)),
            object: Object::Untyped(object::Untyped {
                size_bits: pool.size_bits as u8,
                paddr: Some(Word(pool.physical_address)),
            }),
        });
        slots.push(CapTableEntry { slot: CapSlot(i as _), cap: Cap::Untyped(cap::Untyped { object: id }) });
    }
    for (i, &pd) in resolved.clients.iter().enumerate() {
        let vspace = client_vspace(container, &system.protection_domains[pd].name)?;
        slots.push(CapTableEntry { slot: CapSlot((MEMSRV_TABLE_VSPACES as usize + i) as _), cap: vspace });
    }
    for (i, device) in resolved.io_spaces.iter().enumerate() {
        let Some(device) = device else { continue };
        let slot = resolved.config.io_space_slot(i).ok_or("capbuf: internal: an io_space client without a slot")?;
        let iospace = io_window_tables(container, device)?;
        slots.push(CapTableEntry { slot: CapSlot(slot as _), cap: Cap::IOSpace(cap::IOSpace { object: iospace }) });
    }
    let table = container.add_root_object(NamedObject {
        name: Some(format!("capbuf_table_{server}")),
        object: Object::CNode(object::CNode { size_bits: table_bits as u8, slots }),
    });
    let server_root = find(container, &format!("cnode_{server}_root"))?;
    let server_microkit = find(container, &format!("cnode_{server}"))?;
    insert(container, server_root, MEMSRV_TABLE_ROOT_SLOT, cnode_cap(table, 0), "memsrv's table")?;
    insert(container, server_microkit, MEMSRV_TABLE_CPTR, cnode_cap(table, 0), "memsrv's table root")?;
    if resolved.config.clients.iter().flatten().any(|c| c.frame_caps) {
        let guard = ROOT_SLOT_SHIFT - table_bits;
        let what = "memsrv's table for sending (EXPORT)";
        insert(container, server_root, MEMSRV_TABLE_SEND_ROOT_SLOT, cnode_cap(table, guard), what)?;
    }
    for (i, &pd) in resolved.clients.iter().enumerate() {
        if !resolved.config.clients[i].is_some_and(|c| c.frame_caps) {
            continue;
        }
        let name = &system.protection_domains[pd].name;
        let root = find(container, &format!("cnode_{name}_root"))?;
        let microkit = find(container, &format!("cnode_{name}"))?;
        insert(container, microkit, CLIENT_ROOT_CPTR, cnode_cap(root, 0), "the capbuf receive path")?;
    }
    for (pd, pool) in &resolved.untypeds {
        let name = &system.protection_domains[*pd].name;
        let id = container.add_root_object(NamedObject {
            name: Some(format!("capbuf_{}", pool.name)),
            object: Object::Untyped(object::Untyped {
                size_bits: pool.size_bits as u8,
                paddr: Some(Word(pool.physical_address)),
            }),
        });
        let root = find(container, &format!("cnode_{name}_root"))?;
        let microkit = find(container, &format!("cnode_{name}"))?;
        insert(container, microkit, UNTYPED_CPTR, Cap::Untyped(cap::Untyped { object: id }), "<untyped>")?;
        let client = resolved.clients.iter().position(|c| c == pd);
        if !client.is_some_and(|i| resolved.config.clients[i].is_some_and(|c| c.frame_caps)) {
            insert(container, microkit, CLIENT_ROOT_CPTR, cnode_cap(root, 0), "the root CNode of <untyped>")?;
        }
    }
    Ok(())
}

/// The I/O address space Microkit built for `device` (`iospace_<device>`,
/// made for its `<iomap>`s), given the I/O page tables of
/// [`IO_WINDOW`]: a level-1 table in the root's entry for the window's GiB
/// and a leaf table for each 2 MiB of it, so that memsrv only ever maps 4 KiB
/// frames there (`seL4_X86_Page_MapIO`) and needs no memory of its own for
/// I/O page tables. Returns the IOSpace object, whose capability memsrv gets:
/// the CapDL initialiser mints it with the device's PCI id and domain.
fn io_window_tables(container: &mut CapDLSpecContainer, device: &str) -> Result<ObjectId, String> {
    let iospace = find(container, &format!("iospace_{device}"))?;
    let Object::IOSpace(space) = &container.spec.objects[usize::from(iospace)].object else {
        return Err(format!("capbuf: 'iospace_{device}' is not an IOSpace (unexpected Microkit version?)"));
    };
    let root = match space.slots.iter().find(|entry| entry.slot.0 == 0).map(|entry| &entry.cap) {
        Some(Cap::IOPageTable(cap::IOPageTable { object })) => *object,
        _ => return Err(format!("capbuf: 'iospace_{device}' has no root I/O page table (unexpected Microkit version?)")),
    };
    let index = (IO_WINDOW.start >> 30) as usize;
    if let Object::IOPageTable(table) = &container.spec.objects[usize::from(root)].object {
        if table.slots.iter().any(|entry| entry.slot.0 as usize == index) {
            return Err(format!(
                "capbuf: an <iomap> of '{device}' lies in the GiB of capbuf's I/O window at {:#x}",
                IO_WINDOW.start
            ));
        }
    }
    let mut leaves = Vec::new();
    for k in 0..((IO_WINDOW.end - IO_WINDOW.start) >> LARGE_PAGE_BITS) {
        let leaf = container.add_root_object(NamedObject {
            name: Some(format!("capbuf_iopt_{device}_{:#x}", IO_WINDOW.start + (k << LARGE_PAGE_BITS))),
            object: Object::IOPageTable(object::IOPageTable { slots: vec![], level: Word(2) }),
        });
        leaves.push(CapTableEntry { slot: CapSlot(k as _), cap: Cap::IOPageTable(cap::IOPageTable { object: leaf }) });
    }
    let middle = container.add_root_object(NamedObject {
        name: Some(format!("capbuf_iopt_{device}_window")),
        object: Object::IOPageTable(object::IOPageTable { slots: leaves, level: Word(1) }),
    });
    if let Object::IOPageTable(table) = &mut container.spec.objects[usize::from(root)].object {
        table.slots.push(CapTableEntry { slot: CapSlot(index as _), cap: Cap::IOPageTable(cap::IOPageTable { object: middle }) });
        table.slots.sort_by_key(|entry| entry.slot.0);
    }
    Ok(iospace)
}

/// memsrv zeroes the frames of a `device_untyped` pool itself, mapped at
/// [`MEMSRV_SCRATCH`] (4 KiB frames) and 2 MiB above it (2 MiB frames) in
/// its own VSpace: give it the last-level table for the first 2 MiB, and the
/// tables above it if its program has none there, so that those maps need no
/// object of memsrv's. Refused if memsrv maps anything in those 4 MiB.
fn scratch_table(container: &mut CapDLSpecContainer, config: &Config, server: &str) -> Result<(), String> {
    let levels = config.num_page_table_levels();
    // Index of `vaddr` in a table of level `level`, as Microkit computes it.
    let index = |level: usize, vaddr: u64| {
        let shift: u64 = PAGE_BITS_U64 + ((level + 1)..levels).map(|l| config.vspace_level_index_bits(l)).sum::<u64>();
        ((vaddr >> shift) & ((1 << config.vspace_level_index_bits(level)) - 1)) as u32
    };
    let taken = |what: &str| {
        format!(
            "capbuf: memsrv '{server}' maps {what} in [{:#x}..{:#x}), where it zeroes device_untyped pools' frames",
            MEMSRV_SCRATCH,
            MEMSRV_SCRATCH + (2 << LARGE_PAGE_BITS)
        )
    };
    let mut table = client_vspace(container, server)?.obj();
    for level in config.vspace_root_level()..levels - 1 {
        let last = level == levels - 2;
        let slot = index(level, MEMSRV_SCRATCH);
        let Object::PageTable(pt) = &container.spec.objects[usize::from(table)].object else {
            return Err(format!("capbuf: memsrv's translation table at level {level} is not one"));
        };
        if last {
            let large = index(level, MEMSRV_SCRATCH + (1 << LARGE_PAGE_BITS));
            if pt.slots.iter().any(|entry| entry.slot.0 as u32 == slot || entry.slot.0 as u32 == large) {
                return Err(taken("something"));
            }
        }
        let existing = pt.slots.iter().find(|entry| entry.slot.0 as u32 == slot).map(|entry| entry.cap.clone());
        let next = match existing {
            Some(Cap::PageTable(cap::PageTable { object })) => object,
            Some(_) => return Err(taken("a large page")),
            None => {
                let id = container.add_root_object(NamedObject {
                    name: Some(format!("capbuf_scratch_{server}_level{}", level + 1)),
                    object: Object::PageTable(object::PageTable {
                        x86_ept: false,
                        is_root: false,
                        level: Some(level as u8 + 1),
                        slots: vec![],
                    }),
                });
                let Object::PageTable(pt) = &mut container.spec.objects[usize::from(table)].object else {
                    unreachable!("checked above")
                };
                pt.slots.push(CapTableEntry {
                    slot: CapSlot(slot as _),
                    cap: Cap::PageTable(cap::PageTable { object: id }),
                });
                pt.slots.sort_by_key(|entry| entry.slot.0);
                id
            }
        };
        table = next;
    }
    Ok(())
}

const PAGE_BITS_U64: u64 = capbuf_protocol::PAGE_BITS as u64;

/// Objects' physical size as the initialiser allocates them. Microkit's size
/// function says 0 for untyped objects; they are as large as their size bits.
fn size_bits(object: &CapDLNamedObject, config: &Config) -> u64 {
    match &object.object {
        Object::Untyped(u) => u.size_bits as u64,
        other => capdl_obj_physical_size_bits(other, config),
    }
}

/// Restore the order the initialiser requires: objects with a physical
/// address first, ascending; then by size, descending; ties by name. Every
/// object id in capabilities, IRQs and ASID slots is renumbered to match.
pub fn sort(container: &mut CapDLSpecContainer, config: &Config) {
    let objects = &container.spec.objects;
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&objects[a], &objects[b]);
        match (a.object.paddr(), b.object.paddr()) {
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (Some(x), Some(y)) if x.0 != y.0 => return x.0.cmp(&y.0),
            _ => {}
        }
        size_bits(b, config).cmp(&size_bits(a, config)).then_with(|| a.name.cmp(&b.name))
    });
    let mut new_id = vec![0usize; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = new;
    }
    let map = |id: ObjectId| ObjectId::from(new_id[usize::from(id)]);
    let mut old: Vec<Option<CapDLNamedObject>> =
        std::mem::take(&mut container.spec.objects).into_iter().map(Some).collect();
    container.spec.objects = order.iter().map(|&i| old[i].take().expect("each object once")).collect();
    for object in &mut container.spec.objects {
        if let Some(slots) = object.object.slots_mut() {
            for entry in slots {
                let id = entry.cap.obj();
                entry.cap.set_obj(map(id));
            }
        }
    }
    for irq in &mut container.spec.irqs {
        irq.handler = map(irq.handler);
    }
    for slot in &mut container.spec.asid_slots {
        *slot = map(*slot);
    }
    let allocations: HashMap<_, _> = container.expected_allocations.drain().map(|(k, v)| (map(k), v)).collect();
    container.expected_allocations = allocations;
}
