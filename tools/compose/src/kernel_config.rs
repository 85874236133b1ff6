//! The kernel configuration of the selected board and config, read from the
//! SDK's JSON files the way the microkit tool reads them (same files, same
//! fields, same checks, same messages), so that both tools build the same
//! spec from the same SDK.

use std::fs;
use std::path::Path;

use microkit_tool::sdk::AvailableConfig;
use microkit_tool::sel4::{AddressSpaceConstants, Arch, Config, ObjectSizes, PlatformConfig, RiscvVirtualMemory};
use microkit_tool::util::{json_str, json_str_as_bool, json_str_as_u64};

/// The microkit tool's message for a file of the SDK that is missing.
pub fn require(description: &str, path: &Path) -> Result<(), String> {
    if path.exists() {
        Ok(())
    } else {
        Err(format!("{description} '{}' does not exist", path.display()))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, description: &str) -> Result<T, String> {
    require(description, path)?;
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("Error: Unable to parse {}: {e}", path.file_name().unwrap_or_default().to_string_lossy()))
}

/// The kernel's architecture, from `include/kernel/gen_config.json`.
pub fn arch(gen_config: &serde_json::Value) -> Result<Arch, String> {
    match json_str(gen_config, "SEL4_ARCH")? {
        "aarch64" => Ok(Arch::Aarch64),
        "riscv64" => Ok(Arch::Riscv64),
        "x86_64" => Ok(Arch::X86_64),
        other => Err(format!("Unsupported kernel config architecture '{other}'")),
    }
}

/// Everything the tool's library needs to know about the kernel.
pub fn read(selected: &AvailableConfig, gen_config: &serde_json::Value) -> Result<Config, String> {
    let dir = &selected.config_dir;
    let arch = arch(gen_config)?;
    let invocations_labels: serde_json::Value = read_json(&dir.join("invocations_all.json"), "invocations JSON file")?;
    // x86_64 has no static memory map: the tool neither checks nor places
    // anything in physical memory there.
    let (device_regions, normal_regions) = match arch {
        Arch::X86_64 => (None, None),
        _ => {
            let platform: PlatformConfig =
                read_json(&dir.join("platform_gen.json"), "kernel platform configuration file")?;
            (Some(platform.devices), Some(platform.memory))
        }
    };
    let object_sizes: ObjectSizes = read_json(&dir.join("object_sizes.json"), "kernel object sizes file")?;
    let address_space_constants: AddressSpaceConstants =
        read_json(&dir.join("address_space_constants.json"), "kernel address space constants file")?;
    let flag = |name| json_str_as_bool(gen_config, name);
    let number = |name| json_str_as_u64(gen_config, name);
    let hypervisor = match arch {
        Arch::Aarch64 => flag("ARM_HYPERVISOR_SUPPORT")?,
        Arch::X86_64 => flag("VTX")?,
        Arch::Riscv64 => false,
    };
    let arm_pa_size_bits = match arch {
        Arch::Aarch64 if flag("ARM_PA_SIZE_BITS_40")? => Some(40),
        Arch::Aarch64 if flag("ARM_PA_SIZE_BITS_44")? => Some(44),
        Arch::Aarch64 => return Err("Expected ARM platform to have 40 or 44 physical address bits".into()),
        _ => None,
    };
    let num_cores = if flag("ENABLE_SMP_SUPPORT")? {
        u8::try_from(number("MAX_NUM_NODES")?).map_err(|_| "MAX_NUM_NODES does not fit in u8".to_string())?
    } else {
        1
    };
    Ok(Config {
        word_size: number("WORD_SIZE")?,
        minimum_page_size: 1 << object_sizes.small_page,
        paddr_user_device_top: number("PADDR_USER_DEVICE_TOP")?,
        kernel_frame_size: if arch == Arch::Riscv64 { 1 << 21 } else { 1 << 12 },
        init_cnode_bits: number("ROOT_CNODE_SIZE_BITS")?,
        cap_address_bits: 64,
        fan_out_limit: number("RETYPE_FAN_OUT_LIMIT")?,
        max_num_bootinfo_untypeds: number("MAX_NUM_BOOTINFO_UNTYPED_CAPS")?,
        hypervisor,
        iommu: arch == Arch::X86_64 && flag("IOMMU")?,
        benchmark: selected.config_name == "benchmark",
        num_cores,
        num_domains: u8::try_from(number("NUM_DOMAINS")?).map_err(|_| "NUM_DOMAINS does not fit in u8".to_string())?,
        num_domain_schedules: number("NUM_DOMAIN_SCHEDULES")?,
        fpu: flag("HAVE_FPU")?,
        arm_pa_size_bits,
        arm_smc: if arch == Arch::Aarch64 { Some(flag("ALLOW_SMC_CALLS")?) } else { None },
        riscv_pt_levels: Some(RiscvVirtualMemory::Sv39),
        invocations_labels,
        device_regions,
        normal_regions,
        object_sizes,
        address_space_constants,
        arch,
    })
}
