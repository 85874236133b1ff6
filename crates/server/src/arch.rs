//! What capbuf relies on of each architecture's virtual memory, as data: one
//! table per architecture, checked here against the protocol's constants,
//! and used by the host model to apply the kernel's rules of the
//! architecture a test chooses. memsrv's seL4 glue (`pds/memsrv/src/arch/`)
//! holds the other per-architecture part: which seL4 attributes make a
//! mapping cached or uncached, and the cycle counter.
//!
//! On all three of Microkit's architectures a VSpace is a tree of 4 KiB
//! translation tables of 512 entries (AArch64 with a 4 KiB granule, RISC-V
//! Sv39, x86-64 4-level paging). memsrv maps 2 MiB frames into an entry of
//! the table one level above the last, and 4 KiB frames into a last-level
//! table it creates. It never creates a table above that: every client's
//! program image (at 0x200000, where the SDK's `microkit.ld` and
//! rust-sel4's link it) lies in the same 1 GiB as capbuf's window, so the
//! kernel has already made the table whose entries memsrv fills.

use capbuf_protocol::{LARGE_PAGE_BITS, PAGE_BITS};

/// An architecture's virtual memory, as capbuf uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    /// Microkit's name for it (`CONFIG_SEL4_ARCH`).
    pub name: &'static str,
    /// Levels of translation tables, the VSpace root included.
    pub levels: u32,
    /// Address bits one translation table resolves (512 entries).
    pub index_bits: u32,
    /// Address bits of user virtual addresses (at least: the top of the
    /// lower half, or what the root table spans).
    pub user_address_bits: u32,
    /// A mapping can be made uncached by its attributes. RISC-V page
    /// tables carry no cache attributes: the platform's physical memory
    /// attributes decide, and RAM is cacheable.
    pub uncached_mappings: bool,
    /// Devices' DMA is coherent with the CPU's caches, so the DMA sync calls
    /// need no cache maintenance (x86-64; `qemu_virt_riscv64`).
    pub coherent_dma: bool,
    /// A mapping can be made non-executable (not on x86-64 in seL4 16.0.0).
    pub execute_never: bool,
}

impl Architecture {
    /// Size bits of a frame mapped by an entry of the table above the last:
    /// 2 MiB (AArch64 `LargePage`, RISC-V `MegaPage`, x86-64 `LargePage`).
    pub const fn large_page_bits(self) -> u32 {
        PAGE_BITS + self.index_bits
    }

    /// Size bits of what one table above the last spans, and so of the
    /// region in which memsrv can map without creating tables above the
    /// last level: 1 GiB.
    pub const fn directory_bits(self) -> u32 {
        PAGE_BITS + 2 * self.index_bits
    }

    /// Whether memsrv can map a frame or a last-level table at `vaddr` in a
    /// client: the table above the last that covers it exists, being the one
    /// that holds the client's program image at [`PROGRAM_BASE`].
    pub const fn directory_present(self, vaddr: u64) -> bool {
        vaddr >> self.directory_bits() == PROGRAM_BASE >> self.directory_bits()
    }
}

/// Where a Microkit PD's program image starts (`microkit.ld`).
pub const PROGRAM_BASE: u64 = 0x20_0000;

/// AArch64 as the SDK configures `qemu_virt_aarch64` (hypervisor kernel,
/// 40-bit physical addresses): 3 levels, the root of 1024 entries
/// (`seL4_VSpaceIndexBits` 10), the two below it of 512. Without a
/// hypervisor the root has 512 entries above one more level; the two
/// levels memsrv fills are the same.
pub const AARCH64: Architecture = Architecture {
    name: "aarch64",
    levels: 3,
    index_bits: 9,
    user_address_bits: 40,
    uncached_mappings: true,
    coherent_dma: false,
    execute_never: true,
};

/// RISC-V Sv39: 3 levels, 39-bit addresses (the lower half: 38 bits).
pub const RISCV64: Architecture = Architecture {
    name: "riscv64",
    levels: 3,
    index_bits: 9,
    user_address_bits: 38,
    uncached_mappings: false,
    coherent_dma: true,
    execute_never: true,
};

/// x86-64: 4 levels, 48-bit addresses (the lower half: 47 bits).
pub const X86_64: Architecture = Architecture {
    name: "x86_64",
    levels: 4,
    index_bits: 9,
    user_address_bits: 47,
    uncached_mappings: true,
    coherent_dma: true,
    execute_never: false,
};

/// Every architecture Microkit 2.3.0 supports.
pub const ARCHITECTURES: [Architecture; 3] = [AARCH64, RISCV64, X86_64];

/// The architecture of `CONFIG_SEL4_ARCH` (`aarch64`, `riscv64`, `x86_64`).
pub fn by_name(name: &str) -> Option<Architecture> {
    ARCHITECTURES.into_iter().find(|arch| arch.name == name)
}

// Buffers are made of 2 MiB frames wherever they can be: that size must be
// the large page of every architecture.
const _: () = {
    let mut i = 0;
    while i < ARCHITECTURES.len() {
        assert!(ARCHITECTURES[i].large_page_bits() == LARGE_PAGE_BITS);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;
    use capbuf_protocol::CLIENT_WINDOW;

    #[test]
    fn the_window_lies_in_the_program_images_directory_on_every_architecture() {
        for arch in ARCHITECTURES {
            assert!(arch.directory_present(CLIENT_WINDOW.start), "{}", arch.name);
            assert!(arch.directory_present(CLIENT_WINDOW.end - 1), "{}", arch.name);
            assert!(CLIENT_WINDOW.end <= 1 << arch.user_address_bits, "{}", arch.name);
            assert!(!arch.directory_present(1 << arch.directory_bits()), "{}", arch.name);
        }
    }

    #[test]
    fn every_architecture_has_2_mib_large_pages_and_9_bit_tables() {
        for arch in ARCHITECTURES {
            assert_eq!(arch.large_page_bits(), 21, "{}", arch.name);
            assert_eq!(arch.directory_bits(), 30, "{}", arch.name);
        }
        assert_eq!(by_name("riscv64"), Some(RISCV64));
        assert_eq!(by_name("arm"), None);
    }
}
