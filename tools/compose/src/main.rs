//! capbuf-compose: a drop-in for the Microkit 2.3.0 `microkit` tool that also
//! gives capbuf's memsrv what stock Microkit cannot express.
//!
//! The command line is the microkit tool's, parsed by the tool's own parser
//! (`microkit_tool::argparse`): same options, defaults (`loader.img`,
//! `report.txt`), help, board list and errors; the SDK is found as the tool
//! finds it (`MICROKIT_SDK`, else the directory above the executable's).
//!
//! ```text
//! capbuf-compose [-h] [OPTIONS] --board BOARD --config CONFIG [--search-path SEARCH_PATH ...] system
//! ```
//!
//! A system without a `<capbuf>` element gets exactly what the microkit tool
//! makes of it: the same image, report, CapDL JSON and Viper views. With one,
//! the element is read and blanked out before Microkit's parser sees the rest;
//! memsrv's configuration is written into its ELF and its pools, table CNode
//! and clients' VSpace capabilities are added to the spec ([`spec::extend`])
//! in the tool's build loop ([`compose::build`]), which also keeps the pools
//! out of the memory it picks `setvar region_paddr` addresses from. The
//! report lines `CAPBUF|...` follow the tool's `MICROKIT|...` lines.
//!
//! `capbuf-compose --capbuf-limits SYSTEM...` prints the `CAPBUF_MAX_*`
//! settings to build memsrv with for those systems ([`limits`]); composing
//! refuses a system the memsrv ELF was not built for.

mod compose;
mod extension;
mod kernel_config;
mod limits;
mod output;
mod spec;

use std::fs;
use std::ops::Range;
use std::path::Path;

use capbuf_server::kernel::RETYPE_FAN_OUT_LIMIT;
use microkit_tool::argparse::{self, Args, ArgsError};
use microkit_tool::capdl::initialiser::CapDLInitialiser;
use microkit_tool::elf::ElfFile;
use microkit_tool::sdf::{parse, SysMemoryRegionPaddr, SystemDescription};
use microkit_tool::sdk::Sdk;
use microkit_tool::sel4::{emulate_kernel_boot_partial, Arch, Config};
use microkit_tool::util::get_full_path;

use compose::{Boot, Capbuf};
use extension::Memory;
use kernel_config::require;
use output::{ImageType, Kernel};

/// Print an error as the microkit tool would, with this tool's name where it
/// puts its own; messages that carry their own `Error:`/`ERROR:` (Microkit's
/// parser, its build steps) are printed as they are.
fn print_error(message: &str) {
    if message.starts_with("Error") || message.starts_with("ERROR") {
        eprintln!("{message}");
    } else {
        eprintln!("capbuf-compose: error: {message}");
    }
}

fn print_help(sdk: &Sdk) {
    argparse::print_help(sdk);
    println!("\ncapbuf-compose takes the microkit tool's command line above. A <capbuf> element in the");
    println!("system description gives memsrv its pools, table and clients (see capbuf's README); without");
    println!("one, the image and report are the microkit tool's, byte for byte.");
}

fn parse_args(sdk: &Sdk) -> Result<Option<Args>, String> {
    let words: Vec<String> = std::env::args().collect();
    match Args::parse(&words, sdk) {
        Ok(args) => Ok(Some(args)),
        Err(ArgsError::HelpWanted) => {
            print_help(sdk);
            Ok(None)
        }
        Err(error) => {
            if matches!(error, ArgsError::UnrecognizedArgument { .. } | ArgsError::MissingRequiredArguments { .. }) {
                argparse::print_usage();
            }
            let mut message = error.to_string();
            if matches!(error, ArgsError::InvalidBoardParameter { .. }) {
                message += &format!("\ncapbuf-compose: boards in this SDK: {}", sdk.available_board_names().join(", "));
            }
            Err(message)
        }
    }
}

fn read_elf(path: &std::path::Path, what: &str) -> Result<ElfFile, String> {
    ElfFile::from_path(path).map_err(|e| format!("ERROR: failed to parse {what} ELF ({}): {e}", path.display()))
}

fn run() -> Result<(), String> {
    // Not a microkit option: what to build memsrv with for these systems.
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.first().map(String::as_str) == Some("--capbuf-limits") {
        println!("{}", limits::derive(&words[1..])?);
        return Ok(());
    }
    let sdk = Sdk::discover().map_err(|e| match std::env::var_os("MICROKIT_SDK") {
        Some(_) => e.to_string(),
        None => format!("{e}\ncapbuf-compose: set MICROKIT_SDK to the Microkit 2.3.0 SDK directory"),
    })?;
    let Some(mut args) = parse_args(&sdk)? else { return Ok(()) };
    args.search_paths.push(sdk.cwd.clone());
    let selected = sdk.select(&args.board, &args.config).expect("Args::parse checked the board and config");

    let config_dir = &selected.config_dir;
    let elf_dir = config_dir.join("elf");
    let kernel_elf_path = args.override_kernel.clone().unwrap_or_else(|| elf_dir.join("sel4.elf"));
    let loader_elf_path = elf_dir.join("loader.elf");
    let gen_config_path = config_dir.join("include/kernel/gen_config.json");
    require("board ELF directory", &elf_dir)?;
    require("kernel ELF", &kernel_elf_path)?;
    require("monitor ELF", &elf_dir.join("monitor.elf"))?;
    require("CapDL initialiser ELF", &elf_dir.join("initialiser.elf"))?;
    require("kernel configuration file", &gen_config_path)?;
    require("invocations JSON file", &config_dir.join("invocations_all.json"))?;
    require("system description file", &args.sdf_path)?;

    let xml =
        fs::read_to_string(&args.sdf_path).map_err(|e| format!("cannot read {}: {e}", args.sdf_path.display()))?;
    let gen_config: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&gen_config_path).map_err(|e| format!("cannot read {}: {e}", gen_config_path.display()))?,
    )
    .map_err(|e| format!("cannot parse {}: {e}", gen_config_path.display()))?;
    let arch = kernel_config::arch(&gen_config)?;
    let image_type = ImageType::resolve(&args.requested_image_type, &arch, &args.board).ok_or_else(|| {
        format!(
            "building the output image as '{}' is unsupported for target architecture '{arch}'",
            args.requested_image_type
        )
    })?;
    let config = kernel_config::read(selected, &gen_config)?;
    if arch != Arch::X86_64 && !loader_elf_path.exists() {
        return Err(format!("Error: loader ELF '{}' does not exist", loader_elf_path.display()));
    }
    if config.word_size != 64 {
        return Err("Microkit tool has various assumptions about the word size being 64-bits.".into());
    }

    let extension = extension::parse(&xml)?;
    if let Some(extension) = &extension {
        if config.fan_out_limit < RETYPE_FAN_OUT_LIMIT as u64 {
            return Err(format!(
                "system.xml {}: <capbuf> cannot be supported by this kernel: its retype fan-out limit is {}, \
                 memsrv retypes up to {RETYPE_FAN_OUT_LIMIT} objects at once",
                extension.location, config.fan_out_limit
            ));
        }
    }
    let microkit_xml = match &extension {
        Some(extension) => extension::strip(&xml, extension),
        None => xml,
    };
    let mut system = parse(&args.sdf_path, &microkit_xml, &config, &args.search_paths)?;
    let kernel_elf = match arch {
        Arch::X86_64 => None,
        Arch::Aarch64 | Arch::Riscv64 => Some(read_elf(&kernel_elf_path, "kernel")?),
    };
    let boot = match &kernel_elf {
        Some(kernel_elf) => {
            let (available, kernel_region) = emulate_kernel_boot_partial(&config, kernel_elf);
            let loader = loader_range(&loader_elf_path, kernel_elf)?;
            Some(Boot { kernel_elf, available, kernel_region, loader })
        }
        None => None,
    };
    let mut capbuf = match extension {
        Some(extension) => {
            let memory = board_memory(&config, boot.as_ref());
            let resolved = extension::resolve(&extension, &system, &memory)?;
            Some(Capbuf { extension, resolved })
        }
        None => None,
    };

    let initialiser = CapDLInitialiser::new(read_elf(&elf_dir.join("initialiser.elf"), "initialiser")?);
    let monitor = read_elf(&elf_dir.join("monitor.elf"), "monitor")?;
    let mut elfs = Vec::with_capacity(system.protection_domains.len() + 1);
    for pd in &system.protection_domains {
        let path = get_full_path(&pd.program_image, &args.search_paths)
            .ok_or_else(|| format!("unable to find program image: '{}'", pd.program_image.display()))?;
        let symbols = match &pd.program_image_for_symbols {
            Some(image) => Some(
                get_full_path(image, &args.search_paths)
                    .ok_or_else(|| format!("unable to find program image for symbols: '{}'", image.display()))?,
            ),
            None => None,
        };
        elfs.push(
            ElfFile::from_split_paths(&path, symbols.as_deref())
                .map_err(|e| format!("ERROR: failed to parse ELF '{}' for PD '{}': {e}", path.display(), pd.name))?,
        );
    }
    elfs.push(monitor);

    if let Some(capbuf) = capbuf.as_mut() {
        compose::place(&config, &args.config, &mut system, &mut elfs, &initialiser, boot.as_ref(), capbuf)?;
    }
    let built =
        compose::build(&config, &args.config, &mut system, &mut elfs, &initialiser, boot.as_ref(), capbuf.as_ref())?;
    let kernel = Kernel { elf_path: &kernel_elf_path, loader_elf_path: &loader_elf_path, elf: kernel_elf.as_ref() };
    output::write(&args, &config, &system, &built, &kernel, image_type)?;
    if let Some(capbuf) = &capbuf {
        report_capbuf_lines(&args, capbuf, &system)?;
    }
    Ok(())
}

/// Where the loader goes (its link address, as U-Boot or QEMU loads the
/// image) and how far its own code and the kernel it carries reach; the
/// initial task it also carries follows them in the image.
fn loader_range(loader_elf_path: &Path, kernel_elf: &ElfFile) -> Result<Range<u64>, String> {
    let loader = read_elf(loader_elf_path, "loader")?;
    let loader_size: u64 = loader.loadable_segments().iter().map(|s| s.mem_size()).sum();
    let kernel_size: u64 = kernel_elf.loadable_segments().iter().map(|s| s.file_size()).sum();
    let base = loader.lowest_vaddr();
    Ok(base..base + loader_size + kernel_size)
}

/// The board's RAM as the SDK describes it (`platform_gen.json`, read by the
/// microkit tool's library), what the kernel leaves of it, and the loader.
///
/// x86-64 boards have no static memory map (the kernel learns RAM from the
/// boot loader), so nothing is known to check a pool's `phys_addr` against,
/// and pools without one are placed in [`X86_POOL_MEMORY`].
fn board_memory(config: &Config, boot: Option<&Boot>) -> Memory {
    let ram = config.normal_regions.iter().flatten().map(|r| r.start..r.end).collect();
    let Some(boot) = boot else {
        return Memory { ram: vec![0..u64::MAX], free: Some(vec![X86_POOL_MEMORY]), reserved: Vec::new() };
    };
    let free = boot.available.regions.iter().map(|r| r.base..r.end).collect();
    let loader = &boot.loader;
    let what = format!("the loader and the kernel it carries at [{:#x}..{:#x})", loader.start, loader.end);
    Memory { ram, free: Some(free), reserved: vec![(what, loader.clone())] }
}

/// Where pools without `phys_addr` go on x86-64 boards: 256 to 512 MiB, RAM
/// on any PC with 1 GiB or more below 4 GiB (QEMU's `-m 1G`), above the
/// kernel and its boot modules (loaded from 1 MiB on) and far below where
/// the kernel takes its own boot-time objects (the top of RAM). A pool
/// outside RAM would fail at boot, when the initialiser looks for the
/// untyped memory holding it.
const X86_POOL_MEMORY: Range<u64> = 0x1000_0000..0x2000_0000;

/// capbuf's report lines: on stdout after the tool's `MICROKIT|` lines, and
/// at the end of the report (`-r`).
fn capbuf_lines(args: &Args, capbuf: &Capbuf, system: &SystemDescription) -> Vec<String> {
    let Capbuf { extension, resolved } = capbuf;
    let mut lines = Vec::new();
    let pools: u64 = resolved.pools.iter().map(|p| 1u64 << p.size_bits).sum();
    let untypeds =
        resolved.untypeds.iter().map(|(pd, pool)| (format!("UNTYPED {}", system.protection_domains[*pd].name), pool));
    for (what, pool) in resolved.pools.iter().map(|pool| (format!("POOL {}", pool.name), pool)).chain(untypeds) {
        let range = pool.range();
        lines.push(format!(
            "CAPBUF|{what}: [{:#x}..{:#x}) {} KiB, {}",
            range.start,
            range.end,
            (range.end - range.start) >> 10,
            if pool.placed {
                "placed by capbuf-compose in the board's RAM"
            } else if pool.device {
                "at the phys_addr system.xml gives, device untyped: memsrv zeroes its frames"
            } else {
                "at the phys_addr system.xml gives"
            }
        ));
    }
    lines.push(format!(
        "CAPBUF|IMAGE: {} ({} pools, {} KiB of untyped for memsrv '{}', {} clients)",
        args.output_path.display(),
        resolved.pools.len(),
        pools >> 10,
        extension.server,
        resolved.clients.len()
    ));
    for (i, client) in extension.clients.iter().enumerate() {
        lines.push(format!(
            "CAPBUF|CLIENT {}: id {}, quota {} KiB in {} buffers, {} attachments, metadata reserve {} KiB{}{}{}",
            client.pd,
            client.id,
            client.quota_bytes >> 10,
            client.quota_buffers,
            client.quota_attachments,
            capbuf_server::reserve_bytes(&resolved.config, i) >> 10,
            if client.dma { ", sees physical addresses" } else { "" },
            if client.frame_caps { ", receives frame capabilities (EXPORT)" } else { "" },
            client.supervisor.as_ref().map(|s| format!(", reclaimable by {s}")).unwrap_or_default()
        ));
    }
    for region in &system.memory_regions {
        if let SysMemoryRegionPaddr::ToolAllocated(Some(base)) = region.phys_addr {
            lines.push(format!(
                "CAPBUF|REGION {}: [{base:#x}..{:#x}) placed by the tool for setvar region_paddr, outside memsrv's pools",
                region.name,
                base + region.size
            ));
        }
    }
    if extension.overcommit {
        lines.push(
            "CAPBUF|OVERCOMMIT: quotas may add up to more than the pools hold; beyond them, first come, first served"
                .to_string(),
        );
    }
    lines
}

/// Print capbuf's lines and add them to the end of the report.
fn report_capbuf_lines(args: &Args, capbuf: &Capbuf, system: &SystemDescription) -> Result<(), String> {
    let lines = capbuf_lines(args, capbuf, system);
    for line in &lines {
        println!("{line}");
    }
    let path = &args.report_path;
    let mut report = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    report += "\n# capbuf\n\n";
    for line in &lines {
        report += line;
        report.push('\n');
    }
    fs::write(path, report).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() {
    if let Err(error) = run() {
        print_error(&error);
        std::process::exit(1);
    }
}
