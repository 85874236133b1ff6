//! Volatile access to memory a device also reads and writes: the transport's
//! registers (a Microkit device memory region) and capbuf buffers.

use capbuf_virtio::{mmio::Registers, DmaMemory};
use core::arch::asm;
use core::mem::size_of;
use core::ptr::{read_volatile, write_volatile};

/// A mapped range, accessed only with naturally aligned volatile loads and
/// stores (uncached buffers are Device memory: no unaligned access, no
/// `memcpy`).
#[derive(Clone, Copy)]
pub struct Shared {
    base: usize,
    size: usize,
}

impl Shared {
    /// # Safety
    ///
    /// `size` bytes at `base` must stay mapped readable and writable in this
    /// protection domain while this value or a copy is used, and be reached by
    /// nothing in this program but volatile accesses.
    pub unsafe fn new(base: usize, size: usize) -> Shared {
        Shared { base, size }
    }

    fn pointer<T>(&self, offset: usize) -> *mut T {
        let width = size_of::<T>();
        assert!(offset.is_multiple_of(width) && offset + width <= self.size, "access at {offset:#x} of {width} bytes");
        (self.base + offset) as *mut T
    }

    /// Read the `T` at `offset`.
    pub fn load<T: Copy>(&self, offset: usize) -> T {
        // SAFETY: the pointer is inside the mapped range and aligned (checked
        // by `pointer`), the range is mapped for as long as `self` is used
        // (`new`'s contract), and the access is volatile.
        unsafe { read_volatile(self.pointer(offset)) }
    }

    /// Write `value` at `offset`.
    pub fn store<T: Copy>(&self, offset: usize, value: T) {
        // SAFETY: as for `load`; the range is mapped writable.
        unsafe { write_volatile(self.pointer(offset), value) }
    }
}

impl DmaMemory for Shared {
    fn read_u8(&self, offset: usize) -> u8 {
        self.load(offset)
    }
    fn read_u16(&self, offset: usize) -> u16 {
        self.load(offset)
    }
    fn read_u32(&self, offset: usize) -> u32 {
        self.load(offset)
    }
    fn write_u8(&mut self, offset: usize, value: u8) {
        self.store(offset, value)
    }
    fn write_u16(&mut self, offset: usize, value: u16) {
        self.store(offset, value)
    }
    fn write_u64(&mut self, offset: usize, value: u64) {
        self.store(offset, value)
    }
    fn barrier(&mut self) {
        // SAFETY: a barrier: orders this CPU's accesses as every observer,
        // the device included, sees them; no memory access of its own.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            asm!("dsb sy", options(nostack, preserves_flags))
        };
        // SAFETY: as above.
        #[cfg(target_arch = "riscv64")]
        unsafe {
            asm!("fence iorw, iorw", options(nostack, preserves_flags))
        };
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            asm!("mfence", options(nostack, preserves_flags))
        };
    }
}

impl Registers for Shared {
    fn read(&self, offset: usize) -> u32 {
        self.load(offset)
    }
    fn write(&mut self, offset: usize, value: u32) {
        self.store(offset, value)
    }
}
