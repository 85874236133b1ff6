//! The `<capbuf>` element of `system.xml`: what memsrv owns and who its clients are.
//!
//! ```xml
//! <capbuf server="memsrv" table_bits="12">
//!     <pool name="main" size="0x1000000" />
//!     <pool name="fixed" phys_addr="0xa0000000" size="0x10000" />
//!     <client pd="producer" id="1" quota_bytes="0x800000" quota_buffers="8" quota_attachments="8" dma="false" />
//!     <untyped pd="bench" size="0x2000000" />
//! </capbuf>
//! ```
//!
//! A pool (or `<untyped>`) without `phys_addr` is placed by capbuf-compose in
//! the board's RAM as the SDK describes it ([`capbuf_server::placement`]):
//! the highest naturally aligned block clear of the kernel, the loader and
//! everything with a fixed address. One with `phys_addr` stays there, checked
//! to be inside the board's RAM.
//!
//! `<untyped>` gives a protection domain other than memsrv untyped memory of
//! its own and a capability to its own root CNode to retype into: what the
//! benchmark needs to measure the kernel's own operations (`make qemu-bench`).
//!
//! Microkit's parser knows nothing of it, so the element is blanked out (with
//! spaces, keeping line numbers) before the rest is handed to Microkit.

use std::ops::Range;

use capbuf_protocol::{
    ClientConfig, Config, ConfigError, PoolConfig, CLIENT_WINDOW, IO_WINDOW, DEFAULT_TABLE_BITS, MAX_BUFFERS, MAX_CHANNEL,
    MAX_CLIENTS, MAX_POOLS, MAX_POOL_BITS, PAGE_BITS, TABLE_BITS,
};
use capbuf_server::placement::{place_pools, Unplaceable};
use microkit_tool::sdf::{SysMemoryRegionPaddr, SystemDescription};

/// One pool as written: `phys_addr` is optional.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub physical_address: Option<u64>,
    pub size_bits: u64,
    /// `device_untyped="true"`: RAM outside the kernel's (see
    /// [`capbuf_protocol::PoolConfig::device`]).
    pub device: bool,
}

/// One pool where it goes: at the address system.xml gives, or placed.
#[derive(Debug, Clone)]
pub struct PlacedPool {
    pub name: String,
    pub physical_address: u64,
    pub size_bits: u64,
    /// Placed by capbuf-compose (system.xml gives no `phys_addr`).
    pub placed: bool,
    /// Device untyped: RAM the kernel does not know as RAM.
    pub device: bool,
}

impl PlacedPool {
    pub fn range(&self) -> Range<u64> {
        self.physical_address..self.physical_address + (1 << self.size_bits)
    }
}

/// The board's memory, for checking and placing pools.
pub struct Memory {
    /// The board's RAM as the SDK describes it (`platform_gen.json`).
    pub ram: Vec<Range<u64>>,
    /// What is free of it before the system is placed: the RAM less the
    /// kernel image (Microkit's partial boot emulation); None where the tool
    /// has no static memory map (x86_64).
    pub free: Option<Vec<Range<u64>>>,
    /// Taken before anything of the system: the loader and the kernel it
    /// carries, named for messages.
    pub reserved: Vec<(String, Range<u64>)>,
}

/// One client as written.
#[derive(Debug, Clone)]
pub struct Client {
    pub pd: String,
    pub id: u64,
    pub quota_bytes: u64,
    pub quota_buffers: u64,
    pub quota_attachments: u64,
    pub dma: bool,
    /// `frame_caps="true"`: may receive frame capabilities (EXPORT), and gets
    /// a capability to its own root CNode as its receive path.
    pub frame_caps: bool,
    /// `supervisor="pd"`: the client (another `<client>`) that may RECLAIM
    /// this one, normally its Microkit parent, which gets its faults.
    pub supervisor: Option<String>,
    /// `io_space="device"`: the client's device is behind the IOMMU, in the
    /// `<io_address_space name="device">` of the system; memsrv maps the
    /// client's attachments into it (x86_64).
    pub io_space: Option<String>,
}

/// The parsed element.
#[derive(Debug, Clone)]
pub struct Extension {
    pub server: String,
    pub table_bits: u64,
    /// `overcommit="true"`: quotas may add up to more than the pools and
    /// memsrv's registry hold (first come, first served beyond the pools).
    pub overcommit: bool,
    pub pools: Vec<Pool>,
    pub clients: Vec<Client>,
    /// `<untyped>` elements: (protection domain, memory it gets).
    pub untypeds: Vec<(String, Pool)>,
    /// Where the element is in system.xml, for messages.
    pub location: String,
    range: Range<usize>,
}

/// The element checked against the rest of the system.
pub struct Resolved {
    /// Index of memsrv in Microkit's protection domain list.
    pub server: usize,
    /// Indices of the client protection domains, in `<client>` order.
    pub clients: Vec<usize>,
    /// What memsrv is told.
    pub config: Config,
    /// The pools where they go, in `<pool>` order.
    pub pools: Vec<PlacedPool>,
    /// Untyped memory given to other protection domains (`<untyped>`), with
    /// the index of the protection domain it goes to.
    pub untypeds: Vec<(usize, PlacedPool)>,
    /// Each client's `io_space` (a device's `<io_address_space>` name), in
    /// `<client>` order.
    pub io_spaces: Vec<Option<String>>,
}

fn location(node: &roxmltree::Node) -> String {
    let pos = node.document().text_pos_at(node.range().start);
    format!("line {}, column {}", pos.row, pos.col)
}

fn number(node: &roxmltree::Node, name: &str, default: Option<u64>) -> Result<u64, String> {
    match node.attribute(name) {
        None => default.ok_or_else(|| {
            format!("system.xml {}: <{}> needs attribute '{name}'", location(node), node.tag_name().name())
        }),
        Some(text) => {
            let text = text.trim().replace('_', "");
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.map_err(|_| format!("system.xml {}: '{name}' is not a number: '{text}'", location(node)))
        }
    }
}

fn optional_number(node: &roxmltree::Node, name: &str) -> Result<Option<u64>, String> {
    match node.attribute(name) {
        None => Ok(None),
        Some(_) => number(node, name, None).map(Some),
    }
}

fn check_attributes(node: &roxmltree::Node, allowed: &[&str]) -> Result<(), String> {
    for attribute in node.attributes() {
        if !allowed.contains(&attribute.name()) {
            return Err(format!(
                "system.xml {}: <{}> has no attribute '{}' (allowed: {})",
                location(node),
                node.tag_name().name(),
                attribute.name(),
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// Find and parse the `<capbuf>` element, if there is one. A document that
/// is not well-formed XML has none: Microkit's parser then says what is wrong
/// with it, in its own words.
pub fn parse(xml: &str) -> Result<Option<Extension>, String> {
    let Ok(document) = roxmltree::Document::parse(xml) else { return Ok(None) };
    let root = document.root_element();
    let mut elements = root.children().filter(|n| n.is_element() && n.tag_name().name() == "capbuf");
    let Some(node) = elements.next() else { return Ok(None) };
    if let Some(second) = elements.next() {
        return Err(format!("system.xml {}: only one <capbuf> element is allowed", location(&second)));
    }
    check_attributes(&node, &["server", "table_bits", "overcommit"])?;
    let overcommit = match node.attribute("overcommit") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!("system.xml {}: overcommit must be true or false, not '{other}'", location(&node)))
        }
    };
    let server = node
        .attribute("server")
        .ok_or_else(|| format!("system.xml {}: <capbuf> needs attribute 'server'", location(&node)))?
        .to_string();
    let table_bits = number(&node, "table_bits", Some(DEFAULT_TABLE_BITS))?;
    if !TABLE_BITS.contains(&table_bits) {
        return Err(format!(
            "system.xml {}: table_bits must be from {} to {} (the radix of memsrv's table CNode), not {table_bits}",
            location(&node),
            TABLE_BITS.start(),
            TABLE_BITS.end()
        ));
    }
    let mut pools = Vec::new();
    let mut clients = Vec::new();
    let mut untypeds = Vec::new();
    for child in node.children().filter(|n| n.is_element()) {
        match child.tag_name().name() {
            "untyped" => {
                check_attributes(&child, &["pd", "phys_addr", "size"])?;
                let pd = child
                    .attribute("pd")
                    .ok_or_else(|| format!("system.xml {}: <untyped> needs attribute 'pd'", location(&child)))?;
                let size = number(&child, "size", None)?;
                if !size.is_power_of_two() || !(1 << PAGE_BITS..=1 << MAX_POOL_BITS).contains(&size) {
                    return Err(format!(
                        "system.xml {}: untyped size {size:#x} must be a power of two from 4 KiB to {} MiB",
                        location(&child),
                        (1u64 << MAX_POOL_BITS) >> 20
                    ));
                }
                let pool = Pool {
                    name: format!("untyped_{pd}"),
                    physical_address: optional_number(&child, "phys_addr")?,
                    size_bits: size.trailing_zeros() as u64,
                    device: false,
                };
                untypeds.push((pd.to_string(), pool));
            }
            "pool" => {
                check_attributes(&child, &["name", "phys_addr", "size", "device_untyped"])?;
                let size = number(&child, "size", None)?;
                if !size.is_power_of_two() || !(1 << PAGE_BITS..=1 << MAX_POOL_BITS).contains(&size) {
                    return Err(format!(
                        "system.xml {}: pool size {size:#x} must be a power of two from 4 KiB to {} MiB",
                        location(&child),
                        (1u64 << MAX_POOL_BITS) >> 20
                    ));
                }
                let device = match child.attribute("device_untyped") {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(format!(
                            "system.xml {}: device_untyped must be true or false, not '{other}'",
                            location(&child)
                        ))
                    }
                };
                let name = child.attribute("name").unwrap_or("pool").to_string();
                let physical_address = optional_number(&child, "phys_addr")?;
                if device && physical_address.is_none() {
                    return Err(format!(
                        "system.xml {}: pool '{name}' with device_untyped=\"true\" needs a phys_addr: capbuf-compose places pools only in the kernel's RAM",
                        location(&child)
                    ));
                }
                pools.push(Pool { name, physical_address, size_bits: size.trailing_zeros() as u64, device });
            }
            "client" => {
                check_attributes(
                    &child,
                    &[
                        "pd",
                        "id",
                        "quota_bytes",
                        "quota_buffers",
                        "quota_attachments",
                        "dma",
                        "frame_caps",
                        "supervisor",
                        "io_space",
                    ],
                )?;
                let flag = |name: &str| match child.attribute(name) {
                    None | Some("false") => Ok(false),
                    Some("true") => Ok(true),
                    Some(other) => {
                        Err(format!("system.xml {}: {name} must be true or false, not '{other}'", location(&child)))
                    }
                };
                let (dma, frame_caps) = (flag("dma")?, flag("frame_caps")?);
                clients.push(Client {
                    pd: child
                        .attribute("pd")
                        .ok_or_else(|| format!("system.xml {}: <client> needs attribute 'pd'", location(&child)))?
                        .to_string(),
                    id: number(&child, "id", None)?,
                    quota_bytes: number(&child, "quota_bytes", Some(16 << 20))?,
                    quota_buffers: number(&child, "quota_buffers", Some(16))?,
                    quota_attachments: number(&child, "quota_attachments", Some(16))?,
                    dma,
                    frame_caps,
                    supervisor: child.attribute("supervisor").map(str::to_string),
                    io_space: child.attribute("io_space").map(str::to_string),
                });
            }
            other => return Err(format!("system.xml {}: unknown element <{other}> in <capbuf>", location(&child))),
        }
    }
    Ok(Some(Extension {
        server,
        table_bits,
        overcommit,
        pools,
        clients,
        untypeds,
        location: location(&node),
        range: node.range(),
    }))
}

/// The document with the `<capbuf>` element blanked out, line breaks kept.
pub fn strip(xml: &str, extension: &Extension) -> String {
    let mut out = String::with_capacity(xml.len());
    out.push_str(&xml[..extension.range.start]);
    out.extend(xml[extension.range.clone()].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
    out.push_str(&xml[extension.range.end..]);
    out
}

fn ranges(memory: &[Range<u64>]) -> String {
    memory.iter().map(|m| format!("[{:#x}..{:#x})", m.start, m.end)).collect::<Vec<_>>().join(", ")
}

fn overlaps(a: Range<u64>, b: Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Check `io_space="device"` of `client`: the system has an
/// `<io_address_space name="device">` with at least one `<iomap>` (Microkit
/// 2.3.0 builds the device's I/O address space only then, and accepts the
/// element only on a kernel with an IOMMU), no other client names it, and
/// none of its iomaps lies in [`IO_WINDOW`], where memsrv maps attachments.
fn io_space(system: &SystemDescription, extension: &Extension, client: &Client, device: &str) -> Result<(), String> {
    let iomaps: Vec<_> = system.iomaps.iter().filter(|map| map.device == device).collect();
    if iomaps.is_empty() {
        return Err(format!(
            "capbuf: io_space '{device}' of client '{}' names no <io_address_space> with an <iomap> (Microkit builds \
             a device's I/O address space only for one with at least one iomap; on x86_64 kernels with an IOMMU)",
            client.pd
        ));
    }
    if extension.clients.iter().filter(|c| c.io_space.as_deref() == Some(device)).count() > 1 {
        return Err(format!("capbuf: two clients name io_space '{device}'; a device has one driver"));
    }
    for map in iomaps {
        let size = system.memory_regions.iter().find(|mr| mr.name == map.mr).map_or(0, |mr| mr.size);
        if overlaps(map.iovaddr..map.iovaddr + size, IO_WINDOW) {
            return Err(format!(
                "capbuf: the iomap of '{}' at {:#x} in io_address_space '{device}' is inside capbuf's I/O window \
                 [{:#x}..{:#x}), where memsrv maps the client's attachments",
                map.mr, map.iovaddr, IO_WINDOW.start, IO_WINDOW.end
            ));
        }
    }
    Ok(())
}

/// The index of `client`'s supervisor among the `<client>` elements, if it
/// names one: another client (it calls RECLAIM over its own channel), never
/// the client itself. Not being the client's Microkit parent is allowed, with
/// a warning: the parent is the PD that gets the client's faults and can
/// restart it.
fn supervisor(extension: &Extension, system: &SystemDescription, client: &Client) -> Result<Option<usize>, String> {
    let Some(name) = &client.supervisor else { return Ok(None) };
    if *name == client.pd {
        return Err(format!("capbuf: client '{}' cannot be its own supervisor", client.pd));
    }
    let index = extension.clients.iter().position(|c| c.pd == *name).ok_or_else(|| {
        format!(
            "capbuf: supervisor '{name}' of client '{}' is not a <client> of memsrv (it calls RECLAIM over its own channel)",
            client.pd
        )
    })?;
    let pd = |name: &str| system.protection_domains.iter().position(|pd| pd.name == name);
    let parent = pd(&client.pd).and_then(|pd| system.protection_domains[pd].parent);
    if parent != pd(name) {
        eprintln!(
            "capbuf-compose: warning: supervisor '{name}' of client '{}' is not its Microkit parent: it will not get the client's faults",
            client.pd
        );
    }
    Ok(Some(index))
}

/// Check the element against the parsed system and the board's memory.
pub fn resolve(extension: &Extension, system: &SystemDescription, memory: &Memory) -> Result<Resolved, String> {
    let pd_index = |name: &str, role: &str| {
        system
            .protection_domains
            .iter()
            .position(|pd| pd.name == name)
            .ok_or_else(|| format!("capbuf: {role} '{name}' is not a protection domain in system.xml"))
    };
    let server = pd_index(&extension.server, "server")?;
    if extension.pools.is_empty() || extension.pools.len() > MAX_POOLS {
        return Err(format!(
            "capbuf: memsrv needs 1 to {MAX_POOLS} pools, system.xml declares {}",
            extension.pools.len()
        ));
    }
    if extension.clients.len() > MAX_CLIENTS {
        return Err(format!("capbuf: at most {MAX_CLIENTS} clients, system.xml declares {}", extension.clients.len()));
    }
    let mut config =
        Config { table_bits: extension.table_bits, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
    let mut taken: Vec<(String, Range<u64>)> = system
        .memory_regions
        .iter()
        .filter_map(|mr| match mr.phys_addr {
            SysMemoryRegionPaddr::Specified(paddr) => {
                Some((format!("memory region '{}'", mr.name), paddr..paddr + mr.size))
            }
            _ => None,
        })
        .collect();
    let untypeds = extension.untypeds.iter().map(|(_, pool)| pool);
    let all: Vec<&Pool> = extension.pools.iter().chain(untypeds).collect();
    // Pools at the address system.xml gives: checked, then taken.
    for pool in &all {
        let Some(address) = pool.physical_address else { continue };
        let range = address..address + (1 << pool.size_bits);
        if address % (1 << pool.size_bits) != 0 {
            return Err(format!(
                "capbuf: pool '{}' at {address:#x} is not aligned to its size {:#x} (seL4 untyped objects are naturally aligned)",
                pool.name,
                1u64 << pool.size_bits
            ));
        }
        let in_ram = memory.ram.iter().any(|m| m.start <= range.start && range.end <= m.end);
        if pool.device && memory.ram.iter().any(|m| overlaps(range.clone(), m.clone())) {
            return Err(format!(
                "capbuf: pool '{}' [{:#x}..{:#x}) has device_untyped=\"true\" but overlaps the kernel's RAM {}: \
                 device_untyped is for RAM the kernel does not know (e.g. QEMU's -m beyond the board's memory)",
                pool.name,
                range.start,
                range.end,
                ranges(&memory.ram)
            ));
        }
        if !pool.device && !in_ram {
            return Err(format!(
                "capbuf: pool '{}' [{:#x}..{:#x}) is not inside the board's memory: {}; if it is RAM the kernel does not \
                 know (seL4 hands it out as device untyped), say device_untyped=\"true\" and memsrv zeroes it itself",
                pool.name,
                range.start,
                range.end,
                ranges(&memory.ram)
            ));
        }
        if let Some((what, _)) = taken.iter().find(|(_, other)| overlaps(range.clone(), other.clone())) {
            return Err(format!("capbuf: pool '{}' [{:#x}..{:#x}) overlaps {what}", pool.name, range.start, range.end));
        }
        taken.push((format!("pool '{}'", pool.name), range));
    }
    // The others: placed in the RAM left after the kernel, clear of the
    // loader, the memory regions and the pools with a fixed address.
    let size_bits: Vec<u32> = all.iter().map(|p| p.size_bits as u32).collect();
    let fixed: Vec<Option<u64>> = all.iter().map(|p| p.physical_address).collect();
    let mut addresses = vec![0; all.len()];
    if fixed.iter().any(Option::is_none) {
        let Some(free) = &memory.free else {
            let pool = all.iter().find(|p| p.physical_address.is_none()).expect("one without an address");
            return Err(format!(
                "capbuf: pool '{}' has no phys_addr and this board has no static memory map to place it in",
                pool.name
            ));
        };
        let blocked: Vec<Range<u64>> =
            taken.iter().chain(memory.reserved.iter()).map(|(_, range)| range.clone()).collect();
        place_pools(free, &blocked, &size_bits, &fixed, &mut addresses).map_err(|Unplaceable { index }| {
            let pool = all[index];
            let mut what: Vec<String> = memory.reserved.iter().map(|(what, _)| what.clone()).collect();
            what.extend(taken.iter().map(|(what, _)| what.clone()));
            format!(
                "capbuf: pool '{}' of {} KiB does not fit in the board's RAM: no naturally aligned block of its size is free in {} \
                 (the RAM after the kernel) clear of {}{}; make the pool smaller or give it a phys_addr",
                pool.name,
                (1u64 << pool.size_bits) >> 10,
                ranges(free),
                what.join(", "),
                if all.len() > 1 { " and the larger pools placed before it" } else { "" }
            )
        })?;
    } else {
        addresses.iter_mut().zip(&fixed).for_each(|(a, f)| *a = f.expect("all fixed"));
    }
    let placed: Vec<PlacedPool> = all
        .iter()
        .zip(&addresses)
        .map(|(pool, &physical_address)| PlacedPool {
            name: pool.name.clone(),
            physical_address,
            size_bits: pool.size_bits,
            placed: pool.physical_address.is_none(),
            device: pool.device,
        })
        .collect();
    for (i, pool) in placed.iter().take(extension.pools.len()).enumerate() {
        config.pools[i] = Some(PoolConfig {
            physical_address: pool.physical_address,
            size_bits: pool.size_bits,
            device: pool.device,
        });
    }
    let mut placed = placed.into_iter();
    let pools: Vec<PlacedPool> = placed.by_ref().take(extension.pools.len()).collect();
    let mut untypeds = Vec::new();
    for ((pd, _), pool) in extension.untypeds.iter().zip(placed) {
        let index = pd_index(pd, "untyped's protection domain")?;
        if index == server {
            return Err(format!("capbuf: <untyped> is for protection domains other than the server '{pd}'"));
        }
        if untypeds.iter().any(|(other, _)| *other == index) {
            return Err(format!("capbuf: protection domain '{pd}' has more than one <untyped>"));
        }
        untypeds.push((index, pool));
    }
    let mut clients = Vec::new();
    for (i, client) in extension.clients.iter().enumerate() {
        let pd = pd_index(&client.pd, "client")?;
        if pd == server {
            return Err(format!("capbuf: the server '{}' cannot be its own client", client.pd));
        }
        let channel = system
            .channels
            .iter()
            .find_map(|ch| {
                if ch.end_a.pd == pd && ch.end_b.pd == server && ch.end_a.pp {
                    Some(ch.end_b.id)
                } else if ch.end_b.pd == pd && ch.end_a.pd == server && ch.end_b.pp {
                    Some(ch.end_a.id)
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                format!(
                    "capbuf: client '{}' has no channel to '{}' with pp=\"true\" on the client's end",
                    client.pd, extension.server
                )
            })?;
        for map in &system.protection_domains[pd].maps {
            let region = system.memory_regions.iter().find(|mr| mr.name == map.mr).map_or(0, |mr| mr.size);
            if overlaps(map.vaddr..map.vaddr + region, CLIENT_WINDOW) {
                return Err(format!(
                    "capbuf: client '{}' maps '{}' at {:#x}, inside capbuf's mapping window [{:#x}..{:#x})",
                    client.pd, map.mr, map.vaddr, CLIENT_WINDOW.start, CLIENT_WINDOW.end
                ));
            }
        }
        if let Some(device) = &client.io_space {
            io_space(system, extension, client, device)?;
        }
        config.clients[i] = Some(ClientConfig {
            channel,
            client_id: client.id,
            quota_bytes: client.quota_bytes,
            quota_buffers: client.quota_buffers,
            quota_attachments: client.quota_attachments,
            dma: client.dma,
            frame_caps: client.frame_caps,
            supervisor: supervisor(extension, system, client)?,
            io_space: client.io_space.is_some(),
        });
        clients.push(pd);
    }
    config.validate().map_err(|e| match e {
        ConfigError::Duplicate => "capbuf: duplicate client ids or channels in <capbuf>".to_string(),
        ConfigError::Channel => format!("capbuf: a client's channel to memsrv has an id above {MAX_CHANNEL}"),
        ConfigError::TableBits => {
            format!("capbuf: table_bits must be from {} to {}", TABLE_BITS.start(), TABLE_BITS.end())
        }
        ConfigError::IoSpace => "capbuf: a client with io_space must be dma=\"true\": its device uses the I/O \
            addresses INFO gives"
            .to_string(),
        ConfigError::DevicePoolsOnly => "capbuf: every pool has device_untyped=\"true\"; memsrv keeps its clients' \
            metadata (CNodes, page tables) in a pool of the kernel's RAM, which seL4 can make kernel objects of: add one"
            .to_string(),
        other => format!("capbuf: invalid configuration: {other:?}"),
    })?;
    capbuf_server::reserve::check(&config).map_err(|e| match e {
        capbuf_protocol::ConfigError::ReservesExceedPools => format!(
            "capbuf: the clients' metadata reserves ({} KiB for these quotas) do not fit the pools; lower quota_buffers or quota_attachments, or add a pool",
            (0..extension.clients.len()).map(|c| capbuf_server::reserve_bytes(&config, c)).sum::<u64>() >> 10
        ),
        capbuf_protocol::ConfigError::ReservesExceedTable => {
            "capbuf: memsrv's table is too small for the clients' reserves; raise table_bits".to_string()
        }
        other => format!("capbuf: invalid configuration: {other:?}"),
    })?;
    if !extension.overcommit {
        let reserves: u64 = (0..extension.clients.len()).map(|c| capbuf_server::reserve_bytes(&config, c)).sum();
        let memory = extension.pools.iter().map(|p| 1u64 << p.size_bits).sum::<u64>() - reserves;
        let quotas: u64 = extension.clients.iter().map(|c| c.quota_bytes).sum();
        if quotas > memory {
            return Err(format!(
                "capbuf: the clients' quota_bytes add up to {} KiB but the pools hold {} KiB for buffers (after {} KiB of metadata reserves); lower the quotas or set overcommit=\"true\" on <capbuf>",
                quotas >> 10,
                memory >> 10,
                reserves >> 10
            ));
        }
        let buffers: u64 = extension.clients.iter().map(|c| c.quota_buffers).sum();
        if buffers > MAX_BUFFERS as u64 {
            return Err(format!(
                "capbuf: the clients' quota_buffers add up to {buffers}, memsrv tracks {MAX_BUFFERS} buffers; lower them or set overcommit=\"true\" on <capbuf>"
            ));
        }
    }
    let io_spaces = extension.clients.iter().map(|c| c.io_space.clone()).collect();
    Ok(Resolved { server, clients, config, pools, untypeds, io_spaces })
}
