//! The kernel operations memsrv needs, as a trait the real PD and the host model implement.

use capbuf_protocol::{Error, Invocation, KernelFailure, Rights};

/// A slot of memsrv's table CNode (capability pointer `(1 << 58) | slot` in memsrv).
pub type Slot = u32;

/// An object memsrv creates by retyping untyped memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// An untyped region.
    Untyped {
        /// Its size, `2^size_bits` bytes.
        size_bits: u32,
    },
    /// A 4 KiB frame: the granule (`seL4_ARM_SmallPageObject`,
    /// `seL4_RISCV_4K_Page`, `seL4_X86_4K`).
    SmallFrame,
    /// A 2 MiB frame (`seL4_ARM_LargePageObject`, `seL4_RISCV_Mega_Page`,
    /// `seL4_X86_LargePageObject`).
    LargeFrame,
    /// A last-level translation table, 4 KiB, whose 512 entries map 4 KiB
    /// frames over 2 MiB (`seL4_ARM_PageTableObject`,
    /// `seL4_RISCV_PageTableObject`, `seL4_X86_PageTableObject`).
    PageTable,
    /// A CNode (`seL4_CapTableObject`).
    CNode {
        /// It has `2^radix` slots.
        radix: u32,
    },
}

impl Object {
    /// Size of the object as a power of two, in bytes (the same on AArch64,
    /// RISC-V and x86-64: see [`crate::arch`]).
    pub const fn size_bits(self) -> u32 {
        match self {
            Object::Untyped { size_bits } => size_bits,
            Object::SmallFrame | Object::PageTable => 12,
            Object::LargeFrame => 21,
            Object::CNode { radix } => radix + SLOT_BITS,
        }
    }
}

/// `seL4_SlotBits` on 64-bit seL4: a CNode slot is 32 bytes.
pub const SLOT_BITS: u32 = 5;
/// `CONFIG_RETYPE_FAN_OUT_LIMIT`: most objects one retype may create.
pub const RETYPE_FAN_OUT_LIMIT: u32 = 256;
/// Bits a capability pointer has (`seL4_WordBits`).
pub const WORD_BITS: u32 = 64;

/// Where a capability is: a table slot, or a slot of a CNode whose capability is in a table slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapRef {
    /// A table slot.
    Table(Slot),
    /// A slot of a CNode whose capability is in a table slot. memsrv guards
    /// every such CNode capability (see [`Kernel::mutate_cnode`]) so that its
    /// slots are reachable by capability pointer
    /// ([`capbuf_protocol::inner_cptr`]) as well as by CNode invocations.
    InNode {
        /// Table slot of the CNode's capability.
        node: Slot,
        /// The CNode has `2^radix` slots.
        radix: u32,
        /// Slot within the CNode.
        index: u32,
    },
}

/// The kernel refused an operation: the seL4 error number (`seL4_Error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelError(pub u64);

/// Name the invocation a kernel error came from.
pub(crate) trait Named {
    /// The result, with the error as a [`KernelFailure`] of `invocation`.
    fn named(self, invocation: Invocation) -> Result<(), KernelFailure>;
}

impl Named for Result<(), KernelError> {
    fn named(self, invocation: Invocation) -> Result<(), KernelFailure> {
        self.map_err(|KernelError(code)| KernelFailure { invocation, code })
    }
}

/// Why memsrv did not do what was asked: its own checks refused, or the
/// kernel refused an invocation (and memsrv undid what it had done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// memsrv refused; nothing was done.
    Refused(Error),
    /// The kernel refused an invocation.
    Kernel(KernelFailure),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Refused(error)
    }
}

impl From<KernelFailure> for Failure {
    fn from(failure: KernelFailure) -> Self {
        Failure::Kernel(failure)
    }
}

impl Failure {
    /// The error code a client is told.
    pub const fn error(self) -> Error {
        match self {
            Failure::Refused(error) => error,
            Failure::Kernel(_) => Error::Kernel,
        }
    }
}

/// How memsrv maps a frame into a client's VSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapAttributes {
    /// Access rights of the mapping.
    pub rights: Rights,
    /// Cacheable, or uncached where the architecture's mappings can say so
    /// ([`crate::arch::Architecture::uncached_mappings`]). Never executable
    /// where the architecture can say so.
    pub cached: bool,
}

/// The kernel effects memsrv uses. Each method names the seL4 call it corresponds to.
pub trait Kernel {
    /// Corresponds to `seL4_Untyped_Retype`: create `count` objects from the
    /// untyped in table slot `untyped`, their capabilities at `dest` and the
    /// `count - 1` slots after it. `count` is at most [`RETYPE_FAN_OUT_LIMIT`].
    fn retype(&mut self, untyped: Slot, object: Object, dest: CapRef, count: u32) -> Result<(), KernelError>;

    /// Corresponds to `seL4_CNode_Mint` with a rights mask and no badge:
    /// derive a copy of the frame capability at `source` with `rights` at `dest`.
    fn copy(&mut self, source: CapRef, dest: CapRef, rights: Rights) -> Result<(), KernelError>;

    /// Corresponds to `seL4_CNode_Mutate` of a CNode capability with
    /// `seL4_CNode_CapData_new(0, guard_bits)`: move it from table slot
    /// `source` to `dest`, giving it a guard of `guard_bits` zero bits.
    fn mutate_cnode(&mut self, source: Slot, dest: Slot, guard_bits: u32) -> Result<(), KernelError>;

    /// Corresponds to `seL4_CNode_Revoke`: delete every capability derived from
    /// the one in `slot`, in every CSpace. For an untyped, every object retyped
    /// from it is destroyed and its next retype starts afresh.
    fn revoke(&mut self, slot: Slot) -> Result<(), KernelError>;

    /// Corresponds to `seL4_CNode_Delete`.
    fn delete(&mut self, slot: Slot) -> Result<(), KernelError>;

    /// Corresponds to `seL4_ARM_PageTable_Map`, `seL4_RISCV_PageTable_Map`
    /// or `seL4_X86_PageTable_Map`: map the last-level table at `table` into
    /// the VSpace whose capability is in table slot `vspace`, covering the
    /// 2 MiB at `vaddr`.
    fn map_page_table(&mut self, table: CapRef, vspace: Slot, vaddr: u64) -> Result<(), KernelError>;

    /// Corresponds to `seL4_ARM_Page_Map`, `seL4_RISCV_Page_Map` or
    /// `seL4_X86_Page_Map`: map the frame at `frame` into the
    /// VSpace in table slot `vspace` at `vaddr`. The mapping lives as long as
    /// that frame capability: deleting it (or revoking anything it derives
    /// from) unmaps it.
    fn map_frame(
        &mut self,
        frame: CapRef,
        vspace: Slot,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError>;

    /// Zero the memory of the frame at `frame`, whose capability is mapped
    /// nowhere: `seL4_*_Page_Map` of it into memsrv's own VSpace at
    /// [`capbuf_protocol::MEMSRV_SCRATCH`] (a 2 MiB frame 2 MiB above it),
    /// zeros written, `seL4_*_Page_Unmap`. For frames of a `device` pool,
    /// which the kernel hands out as they are (see
    /// [`capbuf_protocol::PoolConfig::device`]). A refusal of either
    /// invocation leaves the frame unmapped.
    fn zero_frame(&mut self, frame: CapRef, object: Object) -> Result<(), KernelError>;

    /// Corresponds to `seL4_X86_Page_MapIO`: map the 4 KiB frame at `frame`,
    /// whose capability is mapped nowhere else, into the I/O address space
    /// (a device's IOSpace, behind the IOMMU) whose capability is in table
    /// slot `iospace`, at I/O address `ioaddr`, with `rights` (ANDed with the
    /// capability's). The I/O page tables are there already (capbuf-compose
    /// builds them for [`capbuf_protocol::IO_WINDOW`]). Like a VSpace
    /// mapping it lives as long as that frame capability: deleting it unmaps
    /// the page and flushes the IOTLB. Only x86_64 kernels with an IOMMU have
    /// it; elsewhere no configuration has an `io_space` client.
    fn map_io_frame(&mut self, frame: CapRef, iospace: Slot, rights: Rights, ioaddr: u64) -> Result<(), KernelError>;
}

/// A kernel borrowed: lets a caller keep the kernel (or model) it lends to a
/// server, to look at it after the server is gone.
impl<K: Kernel + ?Sized> Kernel for &mut K {
    fn retype(&mut self, untyped: Slot, object: Object, dest: CapRef, count: u32) -> Result<(), KernelError> {
        (**self).retype(untyped, object, dest, count)
    }

    fn copy(&mut self, source: CapRef, dest: CapRef, rights: Rights) -> Result<(), KernelError> {
        (**self).copy(source, dest, rights)
    }

    fn mutate_cnode(&mut self, source: Slot, dest: Slot, guard_bits: u32) -> Result<(), KernelError> {
        (**self).mutate_cnode(source, dest, guard_bits)
    }

    fn revoke(&mut self, slot: Slot) -> Result<(), KernelError> {
        (**self).revoke(slot)
    }

    fn delete(&mut self, slot: Slot) -> Result<(), KernelError> {
        (**self).delete(slot)
    }

    fn map_page_table(&mut self, table: CapRef, vspace: Slot, vaddr: u64) -> Result<(), KernelError> {
        (**self).map_page_table(table, vspace, vaddr)
    }

    fn map_frame(
        &mut self,
        frame: CapRef,
        vspace: Slot,
        vaddr: u64,
        attributes: MapAttributes,
    ) -> Result<(), KernelError> {
        (**self).map_frame(frame, vspace, vaddr, attributes)
    }

    fn zero_frame(&mut self, frame: CapRef, object: Object) -> Result<(), KernelError> {
        (**self).zero_frame(frame, object)
    }

    fn map_io_frame(&mut self, frame: CapRef, iospace: Slot, rights: Rights, ioaddr: u64) -> Result<(), KernelError> {
        (**self).map_io_frame(frame, iospace, rights, ioaddr)
    }
}
