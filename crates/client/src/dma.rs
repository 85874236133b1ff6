//! Handing a buffer to a device: where each part of it is in physical memory,
//! and which cache lines to clean or invalidate around a transfer.
//!
//! **A capbuf buffer is physically contiguous.** Byte `offset` of a buffer is
//! at physical address `base + offset`, where `base` is INFO's
//! `physical_address` (reported to `dma="true"` clients only). memsrv builds
//! a buffer of frames, every whole aligned 2 MiB of physical memory in it one
//! 2 MiB frame and the rest 4 KiB frames ([`frame_at`]), but they are consecutive in
//! physical memory as in the mapping, so a device can be given one range for
//! the whole buffer. [`physical_ranges`] splits a range at frame boundaries
//! anyway, for drivers that want one descriptor per frame (and for the test
//! that proves the contiguity on a device).
//!
//! **Cache maintenance.** A cached buffer (the default) is coherent between
//! CPUs but not with a device that does not snoop the CPU's caches. Before a
//! device reads a range the CPU wrote, *clean* its lines (write dirty lines to
//! memory); after a device wrote a range, *invalidate* its lines before the CPU
//! reads it (so the CPU does not read stale lines, including ones it fetched
//! speculatively during the transfer). [`cache_lines`] gives the lines such a
//! request must touch; `capbuf-microkit` and `capbuf_client.h` run the
//! instructions over them. An `UNCACHED` buffer is mapped uncached in every
//! client, so it has no lines to maintain.

use capbuf_protocol::{InfoReply, LARGE_PAGE_BITS, PADDR_HIDDEN, PAGE_BITS};

use crate::{ClientError, View};

const PAGE: u64 = 1 << PAGE_BITS;
const LARGE_PAGE: u64 = 1 << LARGE_PAGE_BITS;

/// The frame of a buffer of `size` bytes that starts on a 2 MiB boundary
/// and holds byte `offset`, as (its first byte's offset, its length): a
/// 2 MiB frame for every whole 2 MiB at the start, 4 KiB frames after.
pub const fn frame_containing(size: u64, offset: u64) -> (u64, u64) {
    frame_at(0, size, offset)
}

/// The frame of a buffer of `size` bytes at physical address `base` that
/// holds byte `offset`, as (its first byte's offset, its length): a 2 MiB
/// frame for every whole aligned 2 MiB of physical memory in the buffer, 4
/// KiB frames before the first (a buffer placed off a 2 MiB boundary) and
/// after the last; 4 KiB frames only if it holds no whole aligned 2 MiB.
pub const fn frame_at(base: u64, size: u64, offset: u64) -> (u64, u64) {
    let into = base % LARGE_PAGE;
    let head = if into == 0 { 0 } else { LARGE_PAGE - into };
    let large_bytes = if size < head + LARGE_PAGE { 0 } else { (size - head) / LARGE_PAGE * LARGE_PAGE };
    if offset >= head && offset - head < large_bytes {
        (head + (offset - head) / LARGE_PAGE * LARGE_PAGE, LARGE_PAGE)
    } else {
        (offset / PAGE * PAGE, PAGE)
    }
}

/// Check that `len` bytes at `offset` lie within `size` bytes.
pub const fn check_range(size: u64, offset: u64, len: u64) -> Result<(), ClientError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ClientError::OutOfRange),
    }
}

/// Physical ranges, one per frame, of `len` bytes at `offset` of the buffer
/// INFO described: each is `(base + offset of the piece, length)`. For an
/// `io_space` client they are I/O addresses, contiguous across the pieces.
pub fn physical_ranges(info: &InfoReply, offset: u64, len: u64) -> Result<PhysicalRanges, ClientError> {
    if info.physical_address == PADDR_HIDDEN {
        return Err(ClientError::PhysicalAddressHidden);
    }
    check_range(info.size, offset, len)?;
    Ok(PhysicalRanges { base: info.physical_address, size: info.size, next: offset, end: offset + len })
}

/// Iterator of [`physical_ranges`]: `(physical address, length)` pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhysicalRanges {
    base: u64,
    size: u64,
    next: u64,
    end: u64,
}

impl Iterator for PhysicalRanges {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.next == self.end {
            return None;
        }
        let (start, length) = frame_at(self.base, self.size, self.next);
        let piece_end = (start + length).min(self.end);
        let piece = (self.base + self.next, piece_end - self.next);
        self.next = piece_end;
        Some(piece)
    }
}

/// The cache lines, by virtual address, that cover `len` bytes at `offset`
/// of an attached buffer: from the line holding the first byte to the line
/// holding the last. Empty for `len` 0 and for an `UNCACHED` buffer.
///
/// # Panics
///
/// If `line_size` is not a power of two (the CPU reports its line size as one).
pub fn cache_lines(view: &View, offset: u64, len: u64, line_size: u64) -> Result<CacheLines, ClientError> {
    assert!(line_size.is_power_of_two(), "a cache line is a power of two bytes");
    check_range(view.size, offset, len)?;
    if len == 0 || view.flags.uncached() {
        return Ok(CacheLines { next: view.vaddr, end: view.vaddr, line_size });
    }
    let first = (view.vaddr + offset) & !(line_size - 1);
    let end = (view.vaddr + offset + len).next_multiple_of(line_size);
    Ok(CacheLines { next: first, end, line_size })
}

/// Iterator of [`cache_lines`]: the virtual address of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheLines {
    next: u64,
    end: u64,
    line_size: u64,
}

impl CacheLines {
    /// Address of the first line, and the first byte after the last one.
    pub fn span(&self) -> (u64, u64) {
        (self.next, self.end)
    }
}

impl Iterator for CacheLines {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let line = self.next;
        self.next += self.line_size;
        Some(line)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let lines = (self.end.saturating_sub(self.next) / self.line_size) as usize;
        (lines, Some(lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capbuf_protocol::{AllocFlags, BufferId, ClientId, PoolId, Rights};

    const MIB: u64 = 1 << 20;
    const VADDR: u64 = 0x2000_0000;

    fn view(size: u64, flags: AllocFlags) -> View {
        View { id: BufferId::new(1, 1), vaddr: VADDR, size, rights: Rights::ReadWrite, flags }
    }

    fn info(size: u64, physical_address: u64) -> InfoReply {
        InfoReply {
            size,
            physical_address,
            page_bits: if size >= LARGE_PAGE { 21 } else { 12 },
            rights: Rights::ReadWrite,
            attachments: 1,
            flags: AllocFlags::NONE,
            pool: PoolId(0),
            owner: ClientId(1),
        }
    }

    #[test]
    fn frames_are_large_for_every_whole_2_mib_at_the_start_then_small() {
        assert_eq!(frame_containing(3 * MIB, 0), (0, 2 * MIB));
        assert_eq!(frame_containing(3 * MIB, 2 * MIB - 1), (0, 2 * MIB));
        assert_eq!(frame_containing(3 * MIB, 2 * MIB), (2 * MIB, 4096));
        assert_eq!(frame_containing(3 * MIB, 2 * MIB + 5000), (2 * MIB + 4096, 4096));
        assert_eq!(frame_containing(5 * MIB, 4 * MIB + 1), (4 * MIB, 4096), "two large frames");
        assert_eq!(frame_containing(2 * MIB - 4096, MIB), (MIB, 4096), "just short of a large frame");
        // Off a 2 MiB boundary: small frames up to it, large ones, small ones after.
        let base = 0x6080_1000; // 4 KiB into a 2 MiB page
        let size = 2044 * 4096;
        assert_eq!(frame_at(base, size, 0), (0, 4096));
        assert_eq!(frame_at(base, size, 2 * MIB - 4097), (2 * MIB - 8192, 4096), "the head's last page");
        assert_eq!(frame_at(base, size, 2 * MIB - 4096), (2 * MIB - 4096, 2 * MIB), "the first large frame");
        assert_eq!(frame_at(base, size, 6 * MIB - 4096), (6 * MIB - 4096, 4096), "the tail's first page");
        assert_eq!(frame_at(base, 3 * MIB, 2 * MIB), (2 * MIB, 4096), "no whole aligned 2 MiB inside: small only");
        assert_eq!(frame_at(0x6000_0000, 3 * MIB, 5), frame_containing(3 * MIB, 5));
    }

    #[test]
    fn physical_ranges_split_at_frames_and_add_up_to_base_plus_offset() {
        let base = 0xa040_0000;
        let buffer = info(3 * MIB, base);
        // From inside the large frame, across it, over three small frames, into a fourth.
        let ranges: Vec<_> = physical_ranges(&buffer, 0x200, 2 * MIB + 3 * 4096 + 0x100).unwrap().collect();
        assert_eq!(
            ranges,
            vec![
                (base + 0x200, 2 * MIB - 0x200),
                (base + 2 * MIB, 4096),
                (base + 2 * MIB + 4096, 4096),
                (base + 2 * MIB + 8192, 4096),
                (base + 2 * MIB + 12288, 0x300),
            ]
        );
        let mut expected = base + 0x200;
        for (address, length) in ranges {
            assert_eq!(address, expected, "contiguous: each piece starts where the last ended");
            expected += length;
        }
        let tail: Vec<_> = physical_ranges(&buffer, 3 * MIB - 100, 100).unwrap().collect();
        assert_eq!(tail, vec![(base + 3 * MIB - 100, 100)], "up to the last byte");
        assert_eq!(physical_ranges(&buffer, 5, 0).unwrap().count(), 0);
    }

    #[test]
    fn physical_ranges_refuse_what_is_outside_the_buffer_or_hidden() {
        let buffer = info(64 * 1024, 0xa000_0000);
        assert_eq!(physical_ranges(&buffer, 64 * 1024, 1), Err(ClientError::OutOfRange));
        assert_eq!(physical_ranges(&buffer, 60 * 1024, 8 * 1024), Err(ClientError::OutOfRange));
        assert_eq!(physical_ranges(&buffer, 1, u64::MAX), Err(ClientError::OutOfRange), "no wrap-around");
        assert!(physical_ranges(&buffer, 64 * 1024, 0).is_ok(), "an empty range at the end");
        let hidden = info(64 * 1024, PADDR_HIDDEN);
        assert_eq!(physical_ranges(&hidden, 0, 1), Err(ClientError::PhysicalAddressHidden));
    }

    #[test]
    fn cache_lines_cover_partial_ranges_from_line_to_line() {
        let v = view(64 * 1024, AllocFlags::NONE);
        let lines = cache_lines(&v, 10, 20, 64).unwrap();
        assert_eq!(lines.span(), (VADDR, VADDR + 64), "one line holds bytes 10..30");
        let lines = cache_lines(&v, 60, 8, 64).unwrap();
        assert_eq!(lines.clone().collect::<Vec<_>>(), vec![VADDR, VADDR + 64], "straddles two lines");
        let lines = cache_lines(&v, 64, 128, 64).unwrap();
        assert_eq!(lines.span(), (VADDR + 64, VADDR + 192), "aligned: exactly its lines");
        assert_eq!(cache_lines(&v, 0, 64 * 1024, 64).unwrap().count(), 1024, "the whole buffer");
        assert_eq!(cache_lines(&v, 100, 0, 64).unwrap().count(), 0, "nothing to do for no bytes");
    }

    #[test]
    fn cache_lines_run_across_frame_boundaries() {
        let v = view(3 * MIB, AllocFlags::NONE);
        let lines: Vec<_> = cache_lines(&v, 2 * MIB - 10, 20, 64).unwrap().collect();
        assert_eq!(
            lines,
            vec![VADDR + 2 * MIB - 64, VADDR + 2 * MIB],
            "the large frame's last line, a small one's first"
        );
        let lines = cache_lines(&v, 2 * MIB + 4096 - 1, 2, 64).unwrap();
        assert_eq!(lines.count(), 2, "across two small frames");
        let lines = cache_lines(&v, 0, 3 * MIB, 128).unwrap();
        assert_eq!(lines.span(), (VADDR, VADDR + 3 * MIB));
    }

    #[test]
    fn cache_lines_refuse_what_is_outside_the_buffer() {
        let v = view(8192, AllocFlags::NONE);
        assert_eq!(cache_lines(&v, 8192, 1, 64), Err(ClientError::OutOfRange));
        assert_eq!(cache_lines(&v, 8000, 193, 64), Err(ClientError::OutOfRange));
        assert_eq!(cache_lines(&v, u64::MAX, 2, 64), Err(ClientError::OutOfRange), "no wrap-around");
        assert_eq!(cache_lines(&v, 0, u64::MAX, 64), Err(ClientError::OutOfRange));
        assert_eq!(cache_lines(&v, 8192, 0, 64).map(|l| l.count()), Ok(0));
        let uncached = view(8192, AllocFlags::UNCACHED);
        assert_eq!(cache_lines(&uncached, 0, 8192, 64).map(|l| l.count()), Ok(0), "uncached: nothing to maintain");
        assert_eq!(cache_lines(&uncached, 0, 8193, 64), Err(ClientError::OutOfRange), "but still checked");
    }

    #[test]
    fn cache_lines_are_minimal_aligned_and_inside_the_mapping() {
        // Every range of a small buffer, for two line sizes.
        let size = 3 * 4096;
        let v = view(size, AllocFlags::NONE);
        for line_size in [64, 128] {
            for offset in (0..size).step_by(37) {
                for len in [1, 63, 64, 65, 4096, size - offset] {
                    if offset + len > size {
                        continue;
                    }
                    let lines: Vec<u64> = cache_lines(&v, offset, len, line_size).unwrap().collect();
                    let (first, last) = (VADDR + offset, VADDR + offset + len - 1);
                    assert!(lines.iter().all(|l| l % line_size == 0));
                    assert_eq!(lines[0], first & !(line_size - 1), "starts at the first byte's line");
                    assert_eq!(*lines.last().unwrap(), last & !(line_size - 1), "ends at the last byte's line");
                    assert!(lines.windows(2).all(|w| w[1] == w[0] + line_size), "no gap");
                    assert!(lines[0] >= VADDR && lines.last().unwrap() + line_size <= VADDR + size, "mapped");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn a_line_size_that_is_no_power_of_two_is_a_bug() {
        let _ = cache_lines(&view(4096, AllocFlags::NONE), 0, 1, 48);
    }
}
