//! capbuf-compose: builds a Microkit system image from `system.xml` with the
//! capabilities capbuf needs that stock Microkit cannot express.
//!
//! It runs the Microkit 2.3.0 tool as a library: parse the system description
//! (minus our `<capbuf>` element), patch the programs' symbols (and memsrv's
//! `capbuf_config`), build the CapDL spec, add capbuf's objects and
//! capabilities ([`spec::extend`]), restore the initialiser's object order,
//! then check the allocation against the emulated boot and write the loader
//! image. Only AArch64 and RISC-V boards are handled.
//!
//! ```text
//! capbuf-compose --board B --config C --search-path DIR --output loader.img [--report report.txt] [--capdl-json spec.json] system.xml
//! ```
//! The SDK is found through `MICROKIT_SDK`, as the microkit tool does.

mod extension;
mod spec;

use std::fs;
use std::path::{Path, PathBuf};

use capbuf_protocol::CONFIG_WORDS;
use capbuf_server::kernel::RETYPE_FAN_OUT_LIMIT;
use microkit_tool::capdl::allocation::{simulate_capdl_object_alloc_algorithm, CapDLAllocEmulationErrorLevel};
use microkit_tool::capdl::build_capdl_spec;
use microkit_tool::capdl::initialiser::CapDLInitialiser;
use microkit_tool::capdl::packaging::pack_spec_into_initial_task;
use microkit_tool::elf::ElfFile;
use microkit_tool::loader::Loader;
use microkit_tool::report::write_report;
use microkit_tool::sdf::{parse, SysMemoryRegionPaddr};
use microkit_tool::sdk::Sdk;
use microkit_tool::sel4::{
    emulate_kernel_boot, emulate_kernel_boot_partial, AddressSpaceConstants, Arch, Config, ObjectSizes, PlatformConfig,
    RiscvVirtualMemory,
};
use microkit_tool::symbols::patch_symbols;
use microkit_tool::util::{get_full_path, json_str, json_str_as_bool, json_str_as_u64};
use microkit_tool::MemoryRegion;

struct Args {
    board: String,
    config: String,
    system: PathBuf,
    search_paths: Vec<PathBuf>,
    output: PathBuf,
    report: PathBuf,
    capdl_json: Option<PathBuf>,
}

fn usage() -> String {
    "usage: capbuf-compose --board BOARD --config CONFIG [--search-path DIR]... --output IMAGE \
     [--report FILE] [--capdl-json FILE] SYSTEM.xml"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut board, mut config, mut system, mut output, mut report, mut capdl_json) =
        (None, None, None, None, None, None);
    let mut search_paths = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{}", usage()));
        match arg.as_str() {
            "--board" => board = Some(value()?),
            "--config" => config = Some(value()?),
            "--search-path" => search_paths.push(PathBuf::from(value()?)),
            "--output" | "-o" => output = Some(PathBuf::from(value()?)),
            "--report" | "-r" => report = Some(PathBuf::from(value()?)),
            "--capdl-json" => capdl_json = Some(PathBuf::from(value()?)),
            "--help" | "-h" => return Err(usage()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}\n{}", usage())),
            other => system = Some(PathBuf::from(other)),
        }
    }
    let output = output.ok_or_else(usage)?;
    Ok(Args {
        board: board.ok_or_else(usage)?,
        config: config.ok_or_else(usage)?,
        system: system.ok_or_else(usage)?,
        report: report.unwrap_or_else(|| output.with_extension("report.txt")),
        search_paths,
        output,
        capdl_json,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

/// The kernel configuration of the selected board and config, from the SDK's JSON files.
fn kernel_config(dir: &Path, config_name: &str) -> Result<Config, String> {
    let json: serde_json::Value = read_json(&dir.join("include/kernel/gen_config.json"))?;
    let arch = match json_str(&json, "SEL4_ARCH")? {
        "aarch64" => Arch::Aarch64,
        "riscv64" => Arch::Riscv64,
        other => return Err(format!("capbuf-compose does not support architecture {other}")),
    };
    let platform: PlatformConfig = read_json(&dir.join("platform_gen.json"))?;
    let object_sizes: ObjectSizes = read_json(&dir.join("object_sizes.json"))?;
    let address_space_constants: AddressSpaceConstants = read_json(&dir.join("address_space_constants.json"))?;
    let arm_pa_size_bits = match arch {
        Arch::Aarch64 if json_str_as_bool(&json, "ARM_PA_SIZE_BITS_40")? => Some(40),
        Arch::Aarch64 if json_str_as_bool(&json, "ARM_PA_SIZE_BITS_44")? => Some(44),
        Arch::Aarch64 => return Err("expected 40 or 44 physical address bits".into()),
        _ => None,
    };
    Ok(Config {
        word_size: json_str_as_u64(&json, "WORD_SIZE")?,
        minimum_page_size: 1 << object_sizes.small_page,
        paddr_user_device_top: json_str_as_u64(&json, "PADDR_USER_DEVICE_TOP")?,
        kernel_frame_size: if arch == Arch::Aarch64 { 1 << 12 } else { 1 << 21 },
        init_cnode_bits: json_str_as_u64(&json, "ROOT_CNODE_SIZE_BITS")?,
        cap_address_bits: 64,
        fan_out_limit: json_str_as_u64(&json, "RETYPE_FAN_OUT_LIMIT")?,
        max_num_bootinfo_untypeds: json_str_as_u64(&json, "MAX_NUM_BOOTINFO_UNTYPED_CAPS")?,
        hypervisor: arch == Arch::Aarch64 && json_str_as_bool(&json, "ARM_HYPERVISOR_SUPPORT")?,
        iommu: false,
        benchmark: config_name == "benchmark",
        num_cores: if json_str_as_bool(&json, "ENABLE_SMP_SUPPORT")? {
            json_str_as_u64(&json, "MAX_NUM_NODES")? as u8
        } else {
            1
        },
        num_domains: json_str_as_u64(&json, "NUM_DOMAINS")? as u8,
        num_domain_schedules: json_str_as_u64(&json, "NUM_DOMAIN_SCHEDULES")?,
        fpu: json_str_as_bool(&json, "HAVE_FPU")?,
        arm_pa_size_bits,
        arm_smc: if arch == Arch::Aarch64 { Some(json_str_as_bool(&json, "ALLOW_SMC_CALLS")?) } else { None },
        riscv_pt_levels: Some(RiscvVirtualMemory::Sv39),
        invocations_labels: read_json(&dir.join("invocations_all.json"))?,
        device_regions: Some(platform.devices),
        normal_regions: Some(platform.memory),
        object_sizes,
        address_space_constants,
        arch,
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if std::env::var_os("MICROKIT_SDK").is_none() {
        return Err("set MICROKIT_SDK to the Microkit 2.3.0 SDK directory".into());
    }
    let sdk = Sdk::discover().map_err(|e| format!("cannot find the Microkit SDK (set MICROKIT_SDK): {e}"))?;
    let selected = sdk
        .select(&args.board, &args.config)
        .ok_or_else(|| format!("the SDK has no board '{}' with config '{}'", args.board, args.config))?;
    let dir = &selected.config_dir;
    let config = kernel_config(dir, &args.config)?;
    if config.fan_out_limit < RETYPE_FAN_OUT_LIMIT as u64 {
        return Err(format!(
            "the kernel's retype fan-out limit is {}; memsrv retypes up to {RETYPE_FAN_OUT_LIMIT} objects at once",
            config.fan_out_limit
        ));
    }

    let xml = fs::read_to_string(&args.system).map_err(|e| format!("cannot read {}: {e}", args.system.display()))?;
    let extension = extension::parse(&xml)?.ok_or("system.xml has no <capbuf> element")?;
    let stripped = extension::strip(&xml, &extension);
    let mut search_paths = args.search_paths.clone();
    search_paths.push(sdk.cwd.clone());
    let system = parse(&args.system, &stripped, &config, &search_paths)?;
    let normal: Vec<_> = config.normal_regions.iter().flatten().map(|r| r.start..r.end).collect();
    let resolved = extension::resolve(&extension, &system, &normal)?;
    if system.memory_regions.iter().any(|mr| matches!(mr.phys_addr, SysMemoryRegionPaddr::ToolAllocated(_))) {
        return Err(
            "capbuf-compose does not support memory regions whose address the tool picks (setvar region_paddr)".into(),
        );
    }

    let elf_dir = dir.join("elf");
    let kernel_elf = ElfFile::from_path(&elf_dir.join("sel4.elf"))?;
    let mut elfs = Vec::new();
    for pd in &system.protection_domains {
        let path = get_full_path(&pd.program_image, &search_paths)
            .ok_or_else(|| format!("cannot find program image '{}'", pd.program_image.display()))?;
        elfs.push(ElfFile::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    elfs.push(ElfFile::from_path(&elf_dir.join("monitor.elf"))?);
    let mut initialiser = CapDLInitialiser::new(ElfFile::from_path(&elf_dir.join("initialiser.elf"))?);

    patch_symbols(&config, &mut elfs, &system)?;
    let words = resolved.config.encode();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    debug_assert_eq!(bytes.len(), CONFIG_WORDS * 8);
    elfs[resolved.server].write_symbol("capbuf_config", &bytes).map_err(|e| {
        format!("{e}: memsrv '{}' must define `capbuf_config` (is it the capbuf memsrv?)", extension.server)
    })?;

    let mut container = build_capdl_spec(&config, &mut elfs, &system)?;
    spec::extend(&mut container, &system, &resolved)?;
    spec::sort(&mut container, &config);
    pack_spec_into_initial_task(&config, &args.config, &container, &elfs, &mut initialiser);

    // Place the initial task and emulate the boot to check every object can be allocated.
    let (mut available, kernel_boot_region) = emulate_kernel_boot_partial(&config, &kernel_elf);
    let bound = initialiser.image_bound();
    let task_size = bound.end - bound.start;
    let task_base = available
        .allocate_from(task_size, kernel_boot_region.end)
        .ok_or("no contiguous memory for the initial task")?;
    initialiser.set_phys_base(task_base);
    let boot_info = emulate_kernel_boot(
        &config,
        &kernel_elf,
        MemoryRegion::new(task_base, task_base + task_size),
        MemoryRegion::new(initialiser.elf.lowest_vaddr(), bound.end),
    );
    let task = task_base..task_base + task_size;
    for pool in &resolved.pools {
        let range = pool.physical_address..pool.physical_address + (1 << pool.size_bits);
        if range.start < task.end && task.start < range.end {
            return Err(format!(
                "capbuf: pool '{}' [{:#x}..{:#x}) overlaps the initial task at [{:#x}..{:#x}); move the pool",
                pool.name, range.start, range.end, task.start, task.end
            ));
        }
        let covered = boot_info
            .untyped_objects
            .iter()
            .any(|ut| !ut.is_device && ut.base() <= range.start && range.end <= ut.end());
        if !covered {
            return Err(format!(
                "capbuf: pool '{}' [{:#x}..{:#x}) is not free memory after boot (the kernel or initial task uses part of it)",
                pool.name, range.start, range.end
            ));
        }
    }
    if !simulate_capdl_object_alloc_algorithm(
        &mut container,
        &boot_info,
        &config,
        CapDLAllocEmulationErrorLevel::PrintStderr,
    ) {
        return Err("could not allocate all kernel objects; see the messages above".into());
    }
    initialiser.add_expected_untypeds(&boot_info.untyped_objects);

    let loader = Loader::new(
        &config,
        &elf_dir.join("loader.elf"),
        &kernel_elf,
        &initialiser.elf,
        initialiser.phys_base.expect("set above"),
        &bound,
    );
    loader.write_image(&args.output);
    if let Some(path) = &args.capdl_json {
        let json = serde_json::to_string_pretty(&container.spec).map_err(|e| e.to_string())?;
        fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    write_report(&container, &config, &args.report);
    let pools: u64 = resolved.pools.iter().map(|p| 1u64 << p.size_bits).sum();
    println!(
        "CAPBUF|IMAGE: {} ({} pools, {} KiB of untyped for memsrv '{}', {} clients)",
        args.output.display(),
        resolved.pools.len(),
        pools >> 10,
        extension.server,
        resolved.clients.len()
    );
    for (i, client) in extension.clients.iter().enumerate() {
        println!(
            "CAPBUF|CLIENT {}: id {}, quota {} KiB in {} buffers, {} attachments, metadata reserve {} KiB{}",
            client.pd,
            client.id,
            client.quota_bytes >> 10,
            client.quota_buffers,
            client.quota_attachments,
            capbuf_server::reserve_bytes(&resolved.config, i) >> 10,
            if client.dma { ", sees physical addresses" } else { "" }
        );
    }
    if extension.overcommit {
        println!(
            "CAPBUF|OVERCOMMIT: quotas may add up to more than the pools hold; beyond them, first come, first served"
        );
    }
    Ok(())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("capbuf-compose: error: {error}");
        std::process::exit(1);
    }
}
