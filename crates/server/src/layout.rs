//! How a buffer of a given size is made of frames, and what kernel objects an
//! attachment needs. Pure arithmetic, shared with clients through the attach reply.

use capbuf_protocol::{LARGE_PAGE_BITS, PAGE_BITS};

use crate::kernel::{Object, SLOT_BITS};

/// Small pages in a large page.
const SMALL_PER_LARGE: u64 = 1 << (LARGE_PAGE_BITS - PAGE_BITS);

/// The frames of a buffer. Every whole aligned 2 MiB of physical memory in
/// it is a 2 MiB frame (its allocation's leaves of 2 MiB or more); the rest
/// are 4 KiB frames: a *head* before the first 2 MiB frame, if the buffer does
/// not start on a 2 MiB boundary, and a tail after the last. A buffer with no
/// whole aligned 2 MiB is small frames only.
///
/// A client maps it with every 2 MiB frame in a 2 MiB slot of its window:
/// the head in the slot before, at the same offset in its slot as in
/// physical memory (so the buffer's first byte need not start its run of
/// slots: [`Self::window_offset`]), the tail from the start of the slot
/// after. Small frames only are mapped from the start of a slot.
///
/// The buffer's master CNode (and an export's) holds the 2 MiB frames in
/// slots `0..large`, then the 4 KiB frames in address order, head first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// 2 MiB frames.
    pub large: u64,
    /// 4 KiB frames, head and tail.
    pub small: u64,
    /// Of the 4 KiB frames, those before the first 2 MiB frame (0 unless
    /// there is one and the buffer does not start on a 2 MiB boundary).
    pub head: u64,
}

impl FrameLayout {
    /// Layout for a buffer of `pages` small pages that starts on a 2 MiB boundary.
    pub const fn for_pages(pages: u64) -> FrameLayout {
        FrameLayout { large: pages / SMALL_PER_LARGE, small: pages % SMALL_PER_LARGE, head: 0 }
    }

    /// Layout of a buffer made of 4 KiB frames only, whatever its size and
    /// place: the buffers of an `io_space` client, which the kernel can map
    /// into its device's I/O address space only page by page.
    pub const fn small_only(pages: u64) -> FrameLayout {
        FrameLayout { large: 0, small: pages, head: 0 }
    }

    /// Layout for a buffer of `pages` small pages from physical page number
    /// `first_page` (its physical address over 4 KiB).
    pub const fn for_run(first_page: u64, pages: u64) -> FrameLayout {
        let into = first_page % SMALL_PER_LARGE;
        if into == 0 {
            return Self::for_pages(pages);
        }
        let head = SMALL_PER_LARGE - into;
        if pages < head + SMALL_PER_LARGE {
            return FrameLayout { large: 0, small: pages, head: 0 };
        }
        let large = (pages - head) / SMALL_PER_LARGE;
        FrameLayout { large, small: pages - large * SMALL_PER_LARGE, head }
    }

    /// 4 KiB frames after the last 2 MiB frame (or all of them, if none).
    pub const fn tail(self) -> u64 {
        self.small - self.head
    }

    /// Number of frames.
    pub const fn frames(self) -> u64 {
        self.large + self.small
    }

    /// Page tables a client needs to map the small frames: one for the
    /// head's slot, one for each 2 MiB slot of the tail.
    pub const fn page_tables(self) -> u64 {
        (self.head > 0) as u64 + self.tail().div_ceil(SMALL_PER_LARGE)
    }

    /// 2 MiB slots of a client's window the buffer takes.
    pub const fn window_slots(self) -> u64 {
        self.large + self.page_tables()
    }

    /// Bytes from the start of the buffer's run of window slots to its first byte.
    pub const fn window_offset(self) -> u64 {
        if self.head > 0 {
            (SMALL_PER_LARGE - self.head) << PAGE_BITS
        } else {
            0
        }
    }

    /// Size bits of the largest page.
    pub const fn page_bits(self) -> u32 {
        if self.large > 0 {
            LARGE_PAGE_BITS
        } else {
            PAGE_BITS
        }
    }

    /// Radix of the CNode that holds the buffer's own frame capabilities.
    pub const fn master_radix(self) -> u32 {
        radix_for(self.frames())
    }

    /// Radix of an attachment's CNode: frames, then page tables.
    pub const fn attachment_radix(self) -> u32 {
        radix_for(self.frames() + self.page_tables())
    }

    /// Pages (a power of two) of the untyped block holding an attachment's CNode and page table.
    pub const fn attachment_pages(self) -> u64 {
        let cnode = 1u64 << (self.attachment_radix() + SLOT_BITS);
        let tables = self.page_tables() << PAGE_BITS;
        block_pages(cnode + tables)
    }

    /// Pages (a power of two) of the untyped block holding the master CNode.
    pub const fn master_pages(self) -> u64 {
        block_pages(1u64 << (self.master_radix() + SLOT_BITS))
    }

    /// Pages of the larger of the two metadata blocks, attachment or master.
    pub const fn metadata_pages(self) -> u64 {
        let (attachment, master) = (self.attachment_pages(), self.master_pages());
        if attachment > master {
            attachment
        } else {
            master
        }
    }

    /// Radix of an `io_space` client's attachment CNode: the frames, the
    /// page tables, then a second copy of every frame for the I/O mapping (a
    /// frame capability maps once). Only for layouts without 2 MiB frames.
    pub const fn io_attachment_radix(self) -> u32 {
        radix_for(2 * self.frames() + self.page_tables())
    }

    /// Pages (a power of two) of the untyped block holding an `io_space`
    /// client's attachment: its CNode ([`Self::io_attachment_radix`]) and
    /// page tables. The I/O page tables are built with the system.
    pub const fn io_attachment_pages(self) -> u64 {
        let cnode = 1u64 << (self.io_attachment_radix() + SLOT_BITS);
        block_pages(cnode + (self.page_tables() << PAGE_BITS))
    }

    /// The CNode of an attachment. It is retyped first (the page table goes
    /// into it), at the block's start; the page table follows at the next 4 KiB
    /// boundary, which [`Self::attachment_pages`] leaves room for.
    pub const fn attachment_cnode(self) -> Object {
        Object::CNode { radix: self.attachment_radix() }
    }
}

/// Pages (a power of two) of the largest metadata block, attachment or master
/// CNode, that any buffer of 1 to `max_pages` pages needs: the block size of a
/// metadata reserve that must serve every buffer up to that size.
///
/// Both block sizes grow with the number of capability slots (frames, plus a
/// page table when there are small frames), so only two sizes can be worst:
/// `max_pages` itself, and the largest size below the last whole 2 MiB with a
/// full tail of 511 small frames (`q * 512 - 1` pages for `q` whole 2 MiB in
/// `max_pages`), which has one large frame fewer but up to 511 small ones and
/// a page table more. Every other size has no more large frames than one of
/// them and no more small ones.
pub const fn worst_case_metadata_pages(max_pages: u64) -> u64 {
    if max_pages == 0 {
        return 0;
    }
    let at_max = FrameLayout::for_pages(max_pages).metadata_pages();
    let whole_large = max_pages / SMALL_PER_LARGE;
    if whole_large == 0 {
        return at_max;
    }
    let full_tail = FrameLayout::for_pages(whole_large * SMALL_PER_LARGE - 1).metadata_pages();
    if full_tail > at_max {
        full_tail
    } else {
        at_max
    }
}

/// Pages (a power of two) of the largest metadata block a buffer of 4 KiB
/// frames only, of 1 to `max_pages` pages, needs: its master CNode, or an
/// `io_space` client's attachment of it (which is larger). Both grow with
/// the size, so the largest is the worst.
pub const fn worst_case_io_metadata_pages(max_pages: u64) -> u64 {
    let layout = FrameLayout::small_only(max_pages);
    let (attachment, master) = (layout.io_attachment_pages(), layout.master_pages());
    if attachment > master {
        attachment
    } else {
        master
    }
}

/// Smallest radix (at least 1) whose CNode holds `slots` slots.
const fn radix_for(slots: u64) -> u32 {
    if slots <= 2 {
        1
    } else {
        64 - (slots - 1).leading_zeros()
    }
}

/// Smallest power-of-two number of pages holding `bytes`.
const fn block_pages(bytes: u64) -> u64 {
    let pages = bytes.div_ceil(1 << PAGE_BITS);
    pages.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_attachment_holds_every_frame_twice() {
        // 2 MiB of 4 KiB frames: 512 + 1 page table + 512 copies = 1025 slots.
        let l = FrameLayout::small_only(512);
        assert_eq!((l.large, l.small, l.page_tables(), l.window_slots()), (0, 512, 1, 1));
        assert_eq!(l.io_attachment_radix(), 11);
        assert_eq!(l.io_attachment_pages(), 32, "a 64 KiB CNode and a page table");
        assert!(l.io_attachment_pages() >= l.attachment_pages());
        for pages in [1, 2, 511, 512, 513, 1022, 1 << 14] {
            assert_eq!(worst_case_io_metadata_pages(pages), FrameLayout::small_only(pages).io_attachment_pages());
            assert!(worst_case_io_metadata_pages(pages) >= worst_case_io_metadata_pages(pages - 1));
        }
    }

    #[test]
    fn a_buffer_off_a_large_page_boundary_has_a_head_of_small_frames() {
        // The QEMU case: 2044 pages from page 2052 of a 2 MiB-aligned pool.
        let l = FrameLayout::for_run(0x0004_0000 + 2052, 2044);
        assert_eq!((l.head, l.large, l.small, l.tail()), (508, 3, 508, 0));
        assert_eq!((l.page_tables(), l.window_slots(), l.window_offset()), (1, 4, 4 << PAGE_BITS));
        assert_eq!(l.attachment_radix(), 9, "511 frames and a page table");
        // Head and tail: two page tables, one slot each.
        let l = FrameLayout::for_run(1, 1200);
        assert_eq!((l.head, l.large, l.small, l.tail()), (511, 1, 688, 177));
        assert_eq!((l.page_tables(), l.window_slots()), (2, 3));
        // No whole aligned 2 MiB: small frames only, from a slot's start.
        let l = FrameLayout::for_run(500, 520);
        assert_eq!((l.head, l.large, l.small), (0, 0, 520));
        assert_eq!((l.page_tables(), l.window_slots(), l.window_offset()), (2, 2, 0));
        let l = FrameLayout::for_run(5, 16);
        assert_eq!((l.page_tables(), l.window_slots(), l.window_offset()), (1, 1, 0));
        // On a boundary: as before.
        assert_eq!(FrameLayout::for_run(1024, 768), FrameLayout::for_pages(768));
    }

    #[test]
    fn buffers_use_large_pages_for_every_whole_two_mebibytes() {
        let l = FrameLayout::for_pages(4096); // 16 MiB
        assert_eq!((l.large, l.small, l.page_tables()), (8, 0, 0));
        assert_eq!(l.attachment_radix(), 3);
        assert_eq!(l.attachment_pages(), 1);
        let l = FrameLayout::for_pages(768); // 3 MiB
        assert_eq!((l.large, l.small, l.page_tables(), l.page_bits()), (1, 256, 1, 21));
        assert_eq!(l.attachment_radix(), 9);
        assert_eq!(l.attachment_pages(), 8, "16 KiB CNode + 4 KiB page table in a 32 KiB block");
        let l = FrameLayout::for_pages(1);
        assert_eq!((l.large, l.small, l.page_tables()), (0, 1, 1));
        assert_eq!((l.master_radix(), l.attachment_radix()), (1, 1));
        assert_eq!(l.attachment_pages(), 2, "64-byte CNode, then the page table at the next 4 KiB");
        assert_eq!(l.attachment_cnode(), Object::CNode { radix: 1 });
        assert_eq!(l.master_pages(), 1);
    }

    fn brute_force_worst(max_pages: u64) -> u64 {
        (1..=max_pages)
            .map(|p| {
                let l = FrameLayout::for_pages(p);
                l.attachment_pages().max(l.master_pages())
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_worst_case_metadata_block_is_found_without_trying_every_size() {
        for max_pages in (0..=2048).chain([4095, 4096, 4097, 16383, 16384, 16385, 65536]) {
            assert_eq!(worst_case_metadata_pages(max_pages), brute_force_worst(max_pages), "up to {max_pages} pages");
        }
        assert_eq!(worst_case_metadata_pages(1 << 18), brute_force_worst(1 << 18), "up to 1 GiB");
        // 2 MiB - 4 KiB: 511 small frames and a page table need a 16 KiB
        // CNode; with one large frame more (4 MiB - 4 KiB) they need 32 KiB.
        assert_eq!(worst_case_metadata_pages(511), 8);
        assert_eq!(worst_case_metadata_pages(1023), 16);
        assert_eq!(worst_case_metadata_pages(1 << 14), 16, "a 64 MiB pool: 64 KiB blocks");
        assert_eq!(worst_case_metadata_pages(1 << 18), 16, "any buffer memsrv supports");
    }

    #[test]
    fn the_largest_buffer_fits_one_retype_per_leaf_chunk() {
        let l = FrameLayout::for_pages(1 << 18); // 1 GiB
        assert_eq!(l.large, 512);
        assert_eq!(l.master_radix(), 9);
    }
}
