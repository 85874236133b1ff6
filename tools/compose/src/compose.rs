//! The microkit tool's build loop, with capbuf's step in it.
//!
//! The microkit tool (`main.rs` of 2.3.0, not part of its library) builds the
//! CapDL spec, packs it into the initialiser, places the initialiser after the
//! kernel, emulates the boot and simulates the initialiser's allocation. Memory
//! regions subject to `setvar region_paddr` get their address only then, from
//! the memory left free after boot, so the spec is built again (up to three
//! times) until every address is known and the allocation still fits. This
//! module runs the same steps in the same order with the library's functions;
//! without `<capbuf>` it adds nothing, so the spec, image and report are the
//! microkit tool's. With `<capbuf>` it writes memsrv's configuration, adds
//! memsrv's objects to every spec built ([`crate::spec::extend`]), checks the
//! pools against the initial task and the boot, and keeps the pools out of the
//! memory the tool picks region addresses from.

use std::ops::Range;

use microkit_tool::capdl::allocation::{simulate_capdl_object_alloc_algorithm, CapDLAllocEmulationErrorLevel};
use microkit_tool::capdl::build_capdl_spec;
use microkit_tool::capdl::initialiser::CapDLInitialiser;
use microkit_tool::capdl::packaging::pack_spec_into_initial_task;
use microkit_tool::capdl::{CapDLSpecContainer, FrameFill};
use microkit_tool::elf::ElfFile;
use microkit_tool::sdf::{SysMemoryRegionPaddr, SystemDescription};
use microkit_tool::sel4::{emulate_kernel_boot, BootInfo, Config};
use microkit_tool::symbols::patch_symbols;
use microkit_tool::util::{human_size_strict, round_down, round_up};
use microkit_tool::{DisjointMemoryRegion, MemoryRegion};
use sel4_capdl_initializer_types::{object, Object};

use capbuf_protocol::{POOL_TABLE_SYMBOL, POOL_TABLE_WORDS};
use capbuf_server::placement::{place_pools, Unplaceable};

use crate::extension::{Extension, PlacedPool, Resolved};
use crate::spec;

/// The loader image's header and region table: a page is more than enough.
const LOADER_HEADER: u64 = 1 << 12;

/// As many spec builds as the microkit tool allows itself.
const MAX_BUILD_ITERATIONS: usize = 3;

/// The `<capbuf>` element and what it resolved to.
pub struct Capbuf {
    pub extension: Extension,
    pub resolved: Resolved,
}

impl Capbuf {
    /// The memory capbuf takes: memsrv's pools and the `<untyped>` elements'.
    /// Every pool and `<untyped>`: its name, its range and whether it is
    /// `device_untyped`.
    fn pools(&self) -> impl Iterator<Item = (&str, Range<u64>, bool)> {
        self.resolved.pools.iter().chain(self.resolved.untypeds.iter().map(|(_, pool)| pool)).map(|pool| {
            (pool.name.as_str(), pool.physical_address..pool.physical_address + (1 << pool.size_bits), pool.device)
        })
    }
}

/// Physical memory after the kernel's partial boot (AArch64 and RISC-V only).
pub struct Boot<'a> {
    pub kernel_elf: &'a ElfFile,
    pub available: DisjointMemoryRegion,
    pub kernel_region: MemoryRegion,
    /// The loader's code and the kernel it carries, from its link address.
    pub loader: Range<u64>,
}

/// What the loop produced: the final spec and the initialiser holding it.
pub struct Built {
    pub container: CapDLSpecContainer,
    pub initialiser: CapDLInitialiser,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// One build of the system as it stands: symbols patched (memsrv's
/// configuration too), Microkit's spec with capbuf's objects added and
/// re-sorted, and packed into a copy of `initialiser`.
fn spec_and_task(
    config: &Config,
    config_name: &str,
    system: &SystemDescription,
    elfs: &mut [ElfFile],
    initialiser: &CapDLInitialiser,
    capbuf: Option<&Capbuf>,
) -> Result<(CapDLSpecContainer, CapDLInitialiser), String> {
    let mut initialiser = initialiser.clone();
    patch_symbols(config, elfs, system).map_err(|e| format!("ERROR: {e}"))?;
    if let Some(capbuf) = capbuf {
        write_memsrv_config(elfs, capbuf)?;
    }
    let mut container = build_capdl_spec(config, elfs, system)?;
    if let Some(capbuf) = capbuf {
        spec::extend(&mut container, config, system, &capbuf.resolved)?;
        spec::sort(&mut container, config);
    }
    pack_spec_into_initial_task(config, config_name, &container, elfs, &mut initialiser);
    Ok((container, initialiser))
}

/// Build the spec and the initialiser, placing the regions subject to
/// `setvar region_paddr`. `elfs` are the protection domains' ELFs followed by
/// the monitor's, as `patch_symbols` expects.
pub fn build(
    config: &Config,
    config_name: &str,
    system: &mut SystemDescription,
    elfs: &mut [ElfFile],
    initialiser: &CapDLInitialiser,
    boot: Option<&Boot>,
    capbuf: Option<&Capbuf>,
) -> Result<Built, String> {
    for iteration in 0..MAX_BUILD_ITERATIONS {
        let (mut container, mut initialiser) = spec_and_task(config, config_name, system, elfs, initialiser, capbuf)?;
        // x86_64: nothing is placed in physical memory by the tool.
        let Some(boot) = boot else { return Ok(Built { container, initialiser }) };

        let bound = initialiser.image_bound();
        let task_size = bound.end - bound.start;
        // The kernel wants the initial task above its own boot region.
        let mut available = boot.available.clone();
        let Some(task_base) = available.allocate_from(task_size, boot.kernel_region.end) else {
            let mut message = format!(
                "ERROR: cannot allocate memory for the initialiser, contiguous physical memory region of size {} not found\n\
                 ERROR: physical memory regions the initialiser can be placed at:",
                human_size_strict(task_size)
            );
            for region in &available.regions {
                message += &format!(
                    "\n       [0x{:0>12x}..0x{:0>12x}), size: {}",
                    region.base,
                    region.end,
                    human_size_strict(region.size())
                );
            }
            return Err(message);
        };
        initialiser.set_phys_base(task_base);
        let boot_info = emulate_kernel_boot(
            config,
            boot.kernel_elf,
            MemoryRegion::new(task_base, task_base + task_size),
            MemoryRegion::new(initialiser.elf.lowest_vaddr(), bound.end),
        );
        if let Some(capbuf) = capbuf {
            check_pools(capbuf, &(task_base..task_base + task_size), &boot_info)?;
            check_placed(capbuf, &boot.loader, task_size)?;
        }

        // The first simulation checks the system as written; a later one can
        // only fail because a region's address was picked while the spec was
        // smaller than it is now: then pick every such address again.
        let level = match iteration {
            0 => CapDLAllocEmulationErrorLevel::PrintStderr,
            _ => CapDLAllocEmulationErrorLevel::Suppressed,
        };
        if !simulate(&mut container, &boot_info, config, level, capbuf.is_some()) {
            if iteration == 0 {
                return Err(
                    "ERROR: could not allocate all required kernel objects. Please see report for more details.".into(),
                );
            }
            for region in &mut system.memory_regions {
                if let SysMemoryRegionPaddr::ToolAllocated(_) = region.phys_addr {
                    region.phys_addr = SysMemoryRegionPaddr::ToolAllocated(None);
                }
            }
            container.expected_allocations.clear();
        }
        let placed = place_regions(system, &boot_info, config, capbuf)?;
        initialiser.add_expected_untypeds(&boot_info.untyped_objects);
        if !placed {
            return Ok(Built { container, initialiser });
        }
    }
    Err(format!("ERROR: fatal, failed to build system in {MAX_BUILD_ITERATIONS} iterations"))
}

/// Rounds of [`place`]: each builds the spec with the pools where the last
/// round put them and places them again in what the kernel leaves free; the
/// second normally agrees with the first.
const MAX_PLACEMENT_ROUNDS: usize = 3;

/// Place the pools system.xml gives no address in the memory the kernel
/// leaves free after boot, as Microkit's own boot emulation says: the RAM
/// less the kernel, the initial task and the kernel's objects for it (the
/// root CNode, the initial thread's VSpace and so on, which seL4 puts at the
/// top of the highest RAM region), less the loader image, memory regions with
/// a fixed address and pools with one. [`crate::extension::resolve`] gave
/// them addresses from the RAM less the kernel alone; the initial task's size
/// is only known once the spec is built with them, so this builds it, boots,
/// places again, and stops when the addresses no longer change.
pub fn place(
    config: &Config,
    config_name: &str,
    system: &mut SystemDescription,
    elfs: &mut [ElfFile],
    initialiser: &CapDLInitialiser,
    boot: Option<&Boot>,
    capbuf: &mut Capbuf,
) -> Result<(), String> {
    let Some(boot) = boot else { return Ok(()) };
    let all = |resolved: &Resolved| -> Vec<PlacedPool> {
        resolved.pools.iter().chain(resolved.untypeds.iter().map(|(_, pool)| pool)).cloned().collect()
    };
    let pools = all(&capbuf.resolved);
    if !pools.iter().any(|pool| pool.placed) {
        return Ok(());
    }
    let size_bits: Vec<u32> = pools.iter().map(|pool| pool.size_bits as u32).collect();
    let fixed: Vec<Option<u64>> = pools.iter().map(|pool| (!pool.placed).then_some(pool.physical_address)).collect();
    let mut taken: Vec<Range<u64>> = system
        .memory_regions
        .iter()
        .filter_map(|region| match region.phys_addr {
            SysMemoryRegionPaddr::Specified(base) => Some(base..base + region.size),
            _ => None,
        })
        .collect();
    taken.extend(pools.iter().filter(|pool| !pool.placed).map(|pool| pool.range()));
    for _ in 0..MAX_PLACEMENT_ROUNDS {
        let (_, initialiser) = spec_and_task(config, config_name, system, elfs, initialiser, Some(capbuf))?;
        let bound = initialiser.image_bound();
        let task_size = bound.end - bound.start;
        // No room for the initial task: the build loop says so.
        let Some(task_base) = boot.available.clone().allocate_from(task_size, boot.kernel_region.end) else {
            return Ok(());
        };
        let boot_info = emulate_kernel_boot(
            config,
            boot.kernel_elf,
            MemoryRegion::new(task_base, task_base + task_size),
            MemoryRegion::new(initialiser.elf.lowest_vaddr(), bound.end),
        );
        // A pool is retyped from one untyped object: place it inside one.
        let free: Vec<Range<u64>> =
            boot_info.untyped_objects.iter().filter(|ut| !ut.is_device).map(|ut| ut.base()..ut.end()).collect();
        let mut blocked = taken.clone();
        blocked.push(boot.loader.start..boot.loader.end + task_size + LOADER_HEADER);
        let mut addresses = vec![0; size_bits.len()];
        place_pools(&free, &blocked, &size_bits, &fixed, &mut addresses).map_err(|Unplaceable { index }| {
            let pool = &pools[index];
            format!(
                "capbuf: pool '{}' of {} KiB does not fit in the board's RAM: no naturally aligned block of its size is left \
                 free after boot (the kernel, the initial task at [{task_base:#x}..{:#x}) and the kernel's objects for it) \
                 clear of the loader image, the memory regions and pools with a fixed address and the larger pools; \
                 make the pool smaller or give it a phys_addr",
                pool.name,
                (1u64 << pool.size_bits) >> 10,
                task_base + task_size
            )
        })?;
        if addresses.iter().zip(all(&capbuf.resolved)).all(|(&a, pool)| a == pool.physical_address) {
            return Ok(());
        }
        let resolved = &mut capbuf.resolved;
        let count = resolved.pools.len();
        for (i, pool) in resolved.pools.iter_mut().enumerate() {
            pool.physical_address = addresses[i];
            if let Some(config) = resolved.config.pools[i].as_mut() {
                config.physical_address = addresses[i];
            }
        }
        for (i, (_, pool)) in resolved.untypeds.iter_mut().enumerate() {
            pool.physical_address = addresses[count + i];
        }
    }
    Err(format!("capbuf: the pools' placement did not settle in {MAX_PLACEMENT_ROUNDS} rounds"))
}

fn write_memsrv_config(elfs: &mut [ElfFile], capbuf: &Capbuf) -> Result<(), String> {
    let server = &elfs[capbuf.resolved.server];
    let built = crate::limits::Limits::of_elf(server).map_err(|e| {
        format!(
            "{e}: <capbuf> server '{}' has no build limits (is it the capbuf memsrv, built from this version?)",
            capbuf.extension.server
        )
    })?;
    built.check(&capbuf.extension, &format!("{}'s ELF", capbuf.extension.server))?;
    let words = capbuf.resolved.config.encode();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    debug_assert_eq!(bytes.len(), capbuf_protocol::CONFIG_WORDS * 8);
    elfs[capbuf.resolved.server].write_symbol("capbuf_config", &bytes).map_err(|e| {
        format!(
            "{e}: <capbuf> server '{}' must define `capbuf_config` (is it the capbuf memsrv?)",
            capbuf.extension.server
        )
    })?;
    // Where the pools are, for the clients that see physical addresses and
    // ask (the pools may have been placed here).
    let table: Vec<u8> = capbuf.resolved.config.pool_table().iter().flat_map(|w| w.to_le_bytes()).collect();
    for (i, &pd) in capbuf.resolved.clients.iter().enumerate() {
        let Ok((_, size)) = elfs[pd].find_symbol(POOL_TABLE_SYMBOL) else { continue };
        let client = &capbuf.extension.clients[i];
        if size != table.len() as u64 {
            return Err(format!(
                "capbuf: client '{}' defines `{POOL_TABLE_SYMBOL}` of {size} bytes; it must be [u64; {POOL_TABLE_WORDS}] ({} bytes)",
                client.pd,
                table.len()
            ));
        }
        if !client.dma {
            return Err(format!(
                "capbuf: client '{}' defines `{POOL_TABLE_SYMBOL}` but is not dma=\"true\": only clients that see physical addresses learn where the pools are",
                client.pd
            ));
        }
        elfs[pd].write_symbol(POOL_TABLE_SYMBOL, &table).map_err(|e| format!("capbuf: client '{}': {e}", client.pd))?;
    }
    Ok(())
}

/// Each pool must be free RAM once the kernel has booted: outside the
/// initial task, inside one of the untyped objects the kernel hands over (a
/// device one for a `device_untyped` pool).
fn check_pools(capbuf: &Capbuf, task: &Range<u64>, boot_info: &BootInfo) -> Result<(), String> {
    for (name, range, device) in capbuf.pools() {
        if device {
            let covered = boot_info
                .untyped_objects
                .iter()
                .any(|ut| ut.is_device && ut.base() <= range.start && range.end <= ut.end());
            if !covered {
                return Err(format!(
                    "capbuf: device_untyped pool '{name}' [{:#x}..{:#x}) is not inside one of the device untypeds the kernel hands out \
                     (it overlaps the kernel's RAM or memory the kernel keeps for itself)",
                    range.start, range.end
                ));
            }
            continue;
        }
        if overlaps(&range, task) {
            return Err(format!(
                "capbuf: pool '{name}' [{:#x}..{:#x}) overlaps the initial task at [{:#x}..{:#x}); move the pool",
                range.start, range.end, task.start, task.end
            ));
        }
        let covered = boot_info
            .untyped_objects
            .iter()
            .any(|ut| !ut.is_device && ut.base() <= range.start && range.end <= ut.end());
        if !covered {
            let parts: Vec<String> = boot_info
                .untyped_objects
                .iter()
                .filter(|ut| !ut.is_device && ut.base() < range.end && range.start < ut.end())
                .map(|ut| format!("[{:#x}..{:#x})", ut.base(), ut.end()))
                .collect();
            return Err(format!(
                "capbuf: pool '{name}' [{:#x}..{:#x}) is not free memory after boot (the kernel or initial task uses part of it; the kernel's free memory there: {})",
                range.start,
                range.end,
                if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
            ));
        }
    }
    Ok(())
}

/// Pools capbuf-compose placed must also be clear of the whole loader image
/// as it is loaded: the loader, the kernel and the initial task it carries,
/// and the image's header (a page is more than enough). Placement kept them
/// clear of the first two; the initial task's size is only known now. (A
/// pool with a fixed address may overlap the loader image: the loader is done
/// with that memory before the kernel hands it out.)
fn check_placed(capbuf: &Capbuf, loader: &Range<u64>, task_size: u64) -> Result<(), String> {
    let image = loader.start..loader.end + task_size + LOADER_HEADER;
    let placed = capbuf.resolved.pools.iter().chain(capbuf.resolved.untypeds.iter().map(|(_, pool)| pool));
    for pool in placed.filter(|pool| pool.placed) {
        let range = pool.range();
        if overlaps(&range, &image) {
            return Err(format!(
                "capbuf: pool '{}' placed at [{:#x}..{:#x}) overlaps the loader image at [{:#x}..{:#x}); give the pool a phys_addr",
                pool.name, range.start, range.end, image.start, image.end
            ));
        }
    }
    Ok(())
}

/// The tool's allocation simulation, with each pool seen as the block of
/// memory it is. The tool sizes an untyped object as 0 bits, which would let
/// the simulation place other objects inside a pool whenever an object with
/// a physical address (a region the tool placed above the pool, a second
/// pool) follows it in the same untyped; a frame of the pool's size and
/// address is allocated exactly as the initialiser allocates the pool.
fn simulate(
    container: &mut CapDLSpecContainer,
    boot_info: &BootInfo,
    config: &Config,
    level: CapDLAllocEmulationErrorLevel,
    has_pools: bool,
) -> bool {
    let mut pools = Vec::new();
    if has_pools {
        for (index, named) in container.spec.objects.iter_mut().enumerate() {
            if let Object::Untyped(untyped @ object::Untyped { paddr: Some(_), .. }) = &named.object {
                let frame = Object::Frame(object::Frame {
                    size_bits: untyped.size_bits,
                    paddr: untyped.paddr,
                    init: FrameFill { entries: Vec::new() },
                });
                pools.push((index, std::mem::replace(&mut named.object, frame)));
            }
        }
    }
    let fits = simulate_capdl_object_alloc_algorithm(container, boot_info, config, level);
    for (index, pool) in pools {
        container.spec.objects[index].object = pool;
    }
    fits
}

/// Pick addresses for the regions subject to `setvar region_paddr` that have
/// none, as the microkit tool does: first fit, bottom up, in the RAM left
/// after boot less the regions with a fixed address, and less capbuf's
/// pools. Returns whether any region got an address (the spec must then be
/// built again).
fn place_regions(
    system: &mut SystemDescription,
    boot_info: &BootInfo,
    config: &Config,
    capbuf: Option<&Capbuf>,
) -> Result<bool, String> {
    let mut free = DisjointMemoryRegion::default();
    for ut in boot_info.untyped_objects.iter().filter(|ut| !ut.is_device) {
        // Untypeds smaller than a page have gone to the initial task's objects.
        if round_down(ut.end(), config.minimum_page_size) > round_up(ut.base(), config.minimum_page_size) {
            free.insert_region(ut.base(), ut.end());
        }
    }
    for region in &system.memory_regions {
        if let SysMemoryRegionPaddr::Specified(base) = region.phys_addr {
            // Device memory is not in the free list.
            let end = base + region.size;
            if free.regions.iter().any(|r| base >= r.base && base < r.end && end <= r.end) {
                free.remove_region(base, end);
            }
        }
    }
    if let Some(capbuf) = capbuf {
        for (name, range, _) in capbuf.pools().filter(|(_, _, device)| !device) {
            // check_pools made sure the pool is inside one untyped, and
            // extension::resolve that no fixed region overlaps it.
            if !free.regions.iter().any(|r| r.base <= range.start && range.end <= r.end) {
                return Err(format!(
                    "capbuf: pool '{name}' [{:#x}..{:#x}) is not free memory after boot",
                    range.start, range.end
                ));
            }
            free.remove_region(range.start, range.end);
        }
    }

    let mut placed = Vec::new();
    for index in 0..system.memory_regions.len() {
        let region = &system.memory_regions[index];
        if region.phys_addr != SysMemoryRegionPaddr::ToolAllocated(None) {
            continue;
        }
        let Some(base) = free.allocate(region.size, region.page_size) else {
            return Err(no_room(system, index, &placed, &free, capbuf));
        };
        system.memory_regions[index].phys_addr = SysMemoryRegionPaddr::ToolAllocated(Some(base));
        placed.push(index);
    }
    if let Some(capbuf) = capbuf {
        for &index in &placed {
            let region = &system.memory_regions[index];
            let range = region.paddr().expect("just placed")..region.paddr().expect("just placed") + region.size;
            if let Some((name, pool, _)) = capbuf.pools().find(|(_, pool, _)| overlaps(&range, pool)) {
                return Err(format!(
                    "capbuf: memory region '{}' [{:#x}..{:#x}), placed by the tool for setvar region_paddr, overlaps pool '{name}' [{:#x}..{:#x})",
                    region.name, range.start, range.end, pool.start, pool.end
                ));
            }
        }
    }
    Ok(!placed.is_empty())
}

/// The microkit tool's message for a region it cannot place, and which
/// memory capbuf's pools took from it.
fn no_room(
    system: &SystemDescription,
    index: usize,
    placed: &[usize],
    free: &DisjointMemoryRegion,
    capbuf: Option<&Capbuf>,
) -> String {
    let name = &system.memory_regions[index].name;
    let mut message = format!(
        "ERROR: cannot auto-select a physical address for MR {name} because there are no contiguous memory region of sufficient size.\n\
         ERROR: MR {name} needs to be physically contiguous as it is a subject of a setvar region_paddr."
    );
    if !placed.is_empty() {
        message += "\nPreviously auto-allocated memory regions:";
        for &other in placed {
            let region = &system.memory_regions[other];
            message += &format!(
                "\nname = '{}', paddr = 0x{:0>12x}, size = 0x{:0>12x}",
                region.name,
                region.paddr().unwrap_or_default(),
                region.size
            );
        }
    }
    message += "\navailable physical memory regions:";
    for region in &free.regions {
        message +=
            &format!("\n[0x{:0>12x}..0x{:0>12x}), size: {}", region.base, region.end, human_size_strict(region.size()));
    }
    if let Some(capbuf) = capbuf {
        for (pool, range, _) in capbuf.pools() {
            message += &format!(
                "\ncapbuf: pool '{pool}' [{:#x}..{:#x}) is memsrv's and not available to regions",
                range.start, range.end
            );
        }
    }
    message
}
