//! What the benchmark does differently on AArch64, in one place: the clock
//! it reads, the UART it writes, and the page and page-table objects and
//! invocations of the kernel floor. A port to another architecture gives its
//! own module with the same names.

use sel4::{ObjectBlueprint, ObjectBlueprintArm};

/// Guest instructions per generic-timer tick under QEMU's `-icount shift=0`
/// (a 62.5 MHz counter against one instruction per nanosecond).
pub const INSTRUCTIONS_PER_TICK: u64 = 16;

/// The physical counter, `CNTPCT_EL0`, which the Microkit kernel lets user
/// code read.
pub fn ticks() -> u64 {
    let value: u64;
    // SAFETY: reads a system register user code may read; `isb` keeps the read
    // from moving across the measured code.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", "isb", out(reg) value, options(nomem, nostack)) };
    value
}

/// QEMU virt's PL011 UART, mapped uncached by system.xml: the benchmark's
/// output on the release kernel, which prints nothing itself.
pub struct Uart {
    base: usize,
}

/// PL011 data register.
const UART_DATA: usize = 0x000;
/// PL011 flag register, and its "transmit FIFO full" bit.
const UART_FLAGS: usize = 0x018;
const UART_TRANSMIT_FULL: u32 = 1 << 5;

impl Uart {
    /// The UART mapped at virtual address `base`.
    pub const fn new(base: usize) -> Uart {
        Uart { base }
    }

    /// Send one byte, waiting while the transmit FIFO is full.
    pub fn write_byte(&self, byte: u8) {
        // SAFETY: `base` is the PL011's register page, mapped uncached into
        // this protection domain by system.xml and used by nothing else here.
        unsafe {
            while core::ptr::read_volatile((self.base + UART_FLAGS) as *const u32) & UART_TRANSMIT_FULL != 0 {}
            core::ptr::write_volatile((self.base + UART_DATA) as *mut u32, byte as u32);
        }
    }
}

/// A 4 KiB frame (`seL4_ARM_SmallPageObject`).
pub const SMALL_PAGE: ObjectBlueprint = ObjectBlueprint::Arch(ObjectBlueprintArm::SmallPage);
/// A 2 MiB frame (`seL4_ARM_LargePageObject`).
pub const LARGE_PAGE: ObjectBlueprint = ObjectBlueprint::Arch(ObjectBlueprintArm::LargePage);
/// The last-level page table (`seL4_ARM_PageTableObject`): 512 small pages.
pub const PAGE_TABLE: ObjectBlueprint = ObjectBlueprint::Arch(ObjectBlueprintArm::PT);

fn own_vspace() -> sel4::cap::VSpace {
    sel4::cap::VSpace::from_bits(capbuf_protocol::microkit::VSPACE_CPTR)
}

/// `seL4_ARM_Page_Map` of the frame at `frame` into this protection
/// domain's VSpace at `vaddr`, as memsrv maps an attachment: read-write,
/// cached, never executable.
pub fn map_frame(frame: u64, vaddr: usize) -> sel4::Result<()> {
    sel4::cap::SmallPage::from_bits(frame).frame_map(
        own_vspace(),
        vaddr,
        sel4::CapRights::read_write(),
        sel4::VmAttributes::default() | sel4::VmAttributes::EXECUTE_NEVER,
    )
}

/// `seL4_ARM_Page_Unmap`.
pub fn unmap_frame(frame: u64) -> sel4::Result<()> {
    sel4::cap::SmallPage::from_bits(frame).frame_unmap()
}

/// `seL4_ARM_PageTable_Map` of the page table at `table` into this
/// protection domain's VSpace, covering the 2 MiB at `vaddr`.
pub fn map_page_table(table: u64, vaddr: usize) -> sel4::Result<()> {
    sel4::cap::PT::from_bits(table).pt_map(own_vspace(), vaddr, sel4::VmAttributes::default())
}
