//! Writing what the microkit tool writes, in its order and with its lines on
//! stdout: the image in the requested format (on x86_64 the initialiser as a
//! boot module, with the kernels copied beside it), the CapDL spec as JSON,
//! the Viper views and the report.

use std::fs;
use std::path::Path;

use microkit_tool::argparse::{Args, RequestedImageType};
use microkit_tool::loader::Loader;
use microkit_tool::report::write_report;
use microkit_tool::sdf::SystemDescription;
use microkit_tool::sel4::{Arch, Config};
use microkit_tool::util::human_size_strict;
use microkit_tool::viper;

use crate::compose::Built;

/// The image formats, as the microkit tool decides them.
#[derive(Clone, Copy)]
pub enum ImageType {
    Binary,
    Elf,
    Uimage,
}

impl ImageType {
    /// The requested type if the architecture supports it, else None; the
    /// board's default when none was requested.
    pub fn resolve(requested: &RequestedImageType, arch: &Arch, board: &str) -> Option<Self> {
        match (requested, arch) {
            (RequestedImageType::Binary, Arch::Aarch64 | Arch::Riscv64) => Some(Self::Binary),
            (RequestedImageType::Binary, Arch::X86_64) => None,
            (RequestedImageType::Elf, _) => Some(Self::Elf),
            (RequestedImageType::Uimage, Arch::Riscv64) => Some(Self::Uimage),
            (RequestedImageType::Uimage, _) => None,
            (RequestedImageType::Unspecified, _) => Some(match (board, arch) {
                ("ariane" | "cheshire" | "serengeti", _) => Self::Elf,
                (_, Arch::Aarch64) => Self::Binary,
                (_, Arch::Riscv64) => Self::Uimage,
                (_, Arch::X86_64) => Self::Elf,
            }),
        }
    }
}

/// Where the SDK's kernels are, for the loader and for x86_64's copies.
pub struct Kernel<'a> {
    pub elf_path: &'a Path,
    pub loader_elf_path: &'a Path,
    pub elf: Option<&'a microkit_tool::elf::ElfFile>,
}

fn copy_beside(from: &Path, image: &Path, name: &str, what: &str) -> Result<(), String> {
    let to = image.parent().unwrap_or(Path::new(".")).join(name);
    fs::copy(from, &to)
        .map(|_| ())
        .map_err(|e| format!("ERROR: couldn't copy the {what} to image's output directory: {e}"))
}

/// Write every output the arguments ask for.
pub fn write(
    args: &Args,
    config: &Config,
    system: &SystemDescription,
    built: &Built,
    kernel: &Kernel,
    image_type: ImageType,
) -> Result<(), String> {
    let spec_size = built.initialiser.spec_metadata().as_ref().map_or(0, |m| m.spec_size);
    println!(
        "MICROKIT|CAPDL SPEC: number of root objects = {}, spec footprint = {}",
        built.container.spec.objects.len(),
        human_size_strict(spec_size)
    );
    let bound = built.initialiser.image_bound();
    println!("MICROKIT|INITIAL TASK: memory size = {}", human_size_strict(bound.end - bound.start));

    let image = args.output_path.as_path();
    match config.arch {
        Arch::X86_64 => {
            let size = built
                .initialiser
                .elf
                .reserialise(image)
                .map_err(|e| format!("ERROR: couldn't write the boot module to filesystem: {e}"))?;
            // Multiboot wants the kernel as a separate file; QEMU's -kernel
            // only takes the 32-bit one the SDK also ships.
            copy_beside(kernel.elf_path, image, "sel4.elf", "kernel")?;
            let kernel32 = kernel.elf_path.parent().unwrap_or(Path::new(".")).join("sel4_32.elf");
            copy_beside(&kernel32, image, "sel4_32.elf", "32-bit kernel")?;
            println!("MICROKIT|BOOT MODULE: image file size = {}", human_size_strict(size));
        }
        Arch::Aarch64 | Arch::Riscv64 => {
            let loader = Loader::new(
                config,
                kernel.loader_elf_path,
                kernel.elf.expect("kernel ELF read on AArch64 and RISC-V"),
                &built.initialiser.elf,
                built.initialiser.phys_base.expect("placed by compose::build"),
                &bound,
            );
            match image_type {
                ImageType::Binary => loader.write_image(image),
                ImageType::Elf => loader.write_elf(image),
                ImageType::Uimage => loader.write_uimage(image),
            }
            let size = fs::metadata(image).map_err(|e| format!("cannot read {}: {e}", image.display()))?.len();
            println!("MICROKIT|LOADER: image file size = {}", human_size_strict(size));
        }
    }

    if let Some(path) = &args.capdl_json_path {
        let json = serde_json::to_string_pretty(&built.container.spec).map_err(|e| e.to_string())?;
        fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(dir) = &args.viper_output_dir {
        fs::create_dir_all(dir)
            .map_err(|e| format!("ERROR: cannot write Viper output directory {}: {e}", dir.display()))?;
        for view in viper::get_combined_views(&built.container, system) {
            let mut text = format!("// exported invariants for PD {} in {}\n", view.pd_name, args.sdf_path.display());
            view.export(&mut text);
            let path = dir.join(format!("{}.vpr", view.pd_name));
            fs::write(&path, text)
                .map_err(|e| format!("ERROR: cannot write Viper output file {}: {e}", path.display()))?;
        }
    }
    write_report(&built.container, config, &args.report_path);
    Ok(())
}
