//! The split virtqueue (spec 2.7): where its three parts lie in memory, how a
//! descriptor is encoded, and the driver's side: submit a chain, reap a
//! completion.
//!
//! The driver keeps its own record of which descriptors it handed out and how
//! they chain, and frees a chain from that record when the device reports it
//! used: it never follows links the device could have rewritten, and a used
//! entry naming a descriptor that is not the head of an outstanding chain is
//! refused.

use crate::DmaMemory;

/// Descriptor flag: the chain continues at `next`.
pub const DESCRIPTOR_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (otherwise it reads it).
pub const DESCRIPTOR_WRITE: u16 = 2;
/// Bytes per descriptor.
pub const DESCRIPTOR_SIZE: usize = 16;
/// Largest queue this driver keeps state for.
pub const MAX_QUEUE_SIZE: u16 = 64;

/// Where a queue's descriptor table, available ring and used ring lie in a
/// region of memory shared with the device, as byte offsets into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Queue size: descriptors, and entries in each ring (a power of two).
    pub size: u16,
    /// Descriptor table: `size` descriptors of 16 bytes, 16-byte aligned.
    pub descriptors: usize,
    /// Available ring (driver to device): flags, index, `size` entries, `used_event`; 2-byte aligned.
    pub available: usize,
    /// Used ring (device to driver): flags, index, `size` entries of 8 bytes, `avail_event`; 4-byte aligned.
    pub used: usize,
    /// First byte after the queue.
    pub end: usize,
}

impl Layout {
    /// The three parts packed one after the other from `start` (16-byte
    /// aligned), for a queue of `size` entries (a power of two up to
    /// [`MAX_QUEUE_SIZE`]).
    pub const fn new(size: u16, start: usize) -> Option<Layout> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE || start % 16 != 0 {
            return None;
        }
        let n = size as usize;
        let descriptors = start;
        let available = descriptors + DESCRIPTOR_SIZE * n;
        let used = (available + 6 + 2 * n).next_multiple_of(4);
        let end = used + 6 + 8 * n;
        Some(Layout { size, descriptors, available, used, end })
    }

    /// Offset of descriptor `index`.
    pub const fn descriptor(&self, index: u16) -> usize {
        self.descriptors + DESCRIPTOR_SIZE * index as usize
    }

    /// Offset of the available ring's index (`avail->idx`).
    pub const fn available_index(&self) -> usize {
        self.available + 2
    }

    /// Offset of the available ring's entry for free-running index `index`.
    pub const fn available_entry(&self, index: u16) -> usize {
        self.available + 4 + 2 * (index % self.size) as usize
    }

    /// Offset of the used ring's index (`used->idx`).
    pub const fn used_index(&self) -> usize {
        self.used + 2
    }

    /// Offset of the used ring's entry for free-running index `index`: the
    /// head descriptor's number (32 bits), then the bytes written (32 bits).
    pub const fn used_entry(&self, index: u16) -> usize {
        self.used + 4 + 8 * (index % self.size) as usize
    }
}

/// One descriptor as the device reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Physical address of the buffer.
    pub address: u64,
    /// Its length in bytes.
    pub length: u32,
    /// [`DESCRIPTOR_NEXT`], [`DESCRIPTOR_WRITE`].
    pub flags: u16,
    /// Next descriptor of the chain, if flags has [`DESCRIPTOR_NEXT`].
    pub next: u16,
}

impl Descriptor {
    /// The descriptor as two little-endian 64-bit words: `addr`, then `len`,
    /// `flags` and `next` packed.
    pub const fn words(&self) -> [u64; 2] {
        [self.address, self.length as u64 | (self.flags as u64) << 32 | (self.next as u64) << 48]
    }
}

/// A buffer in a chain: a physically contiguous range and who writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical address.
    pub address: u64,
    /// Length in bytes (not zero).
    pub length: u32,
    /// The device writes it (a read's data, a status byte); otherwise it reads it.
    pub device_writes: bool,
}

/// A completed chain, from the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor of the chain, as [`SplitQueue::submit`] returned it.
    pub head: u16,
    /// Bytes the device says it wrote into the chain's device-writable buffers.
    pub written: u32,
}

/// Why a queue operation was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The layout is larger than [`MAX_QUEUE_SIZE`] or not a power of two.
    BadSize,
    /// A chain of no segment, or with a segment of length 0.
    EmptySegment,
    /// A chain longer than the queue.
    ChainTooLong,
    /// Not enough free descriptors now: reap completions first.
    Full,
    /// The device reported a chain that is not outstanding (a device bug, or
    /// the used ring was overwritten).
    UnknownHead(u32),
}

/// The driver's side of one split virtqueue.
#[derive(Clone, Debug)]
pub struct SplitQueue {
    layout: Layout,
    /// Free descriptors, one bit each.
    free: u64,
    /// The driver's own copy of each descriptor's link.
    link: [u16; MAX_QUEUE_SIZE as usize],
    /// Length of the chain starting at each outstanding head (0: not a head).
    chain_length: [u16; MAX_QUEUE_SIZE as usize],
    /// Next free-running index of the available ring.
    next_available: u16,
    /// Free-running index of the next used entry to reap.
    next_used: u16,
}

impl SplitQueue {
    /// State for a fresh queue laid out as `layout`. Its memory must be zero
    /// (capbuf hands out zeroed buffers) or [`Self::reset_rings`] called.
    pub fn new(layout: Layout) -> Result<SplitQueue, QueueError> {
        if !layout.size.is_power_of_two() || layout.size > MAX_QUEUE_SIZE {
            return Err(QueueError::BadSize);
        }
        let free = if layout.size == 64 { u64::MAX } else { (1u64 << layout.size) - 1 };
        Ok(SplitQueue {
            layout,
            free,
            link: [0; MAX_QUEUE_SIZE as usize],
            chain_length: [0; MAX_QUEUE_SIZE as usize],
            next_available: 0,
            next_used: 0,
        })
    }

    /// Where the queue lies.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Descriptors free for new chains.
    pub fn free_descriptors(&self) -> u32 {
        self.free.count_ones()
    }

    /// Chains submitted and not yet reaped.
    pub fn outstanding(&self) -> u16 {
        self.next_available.wrapping_sub(self.next_used)
    }

    /// Zero both rings' flags and indices (for memory that was not zero).
    pub fn reset_rings(&self, memory: &mut impl DmaMemory) {
        memory.write_u16(self.layout.available, 0);
        memory.write_u16(self.layout.available_index(), 0);
        memory.write_u16(self.layout.used, 0);
        memory.write_u16(self.layout.used_index(), 0);
    }

    /// Put a chain of `segments` in the descriptor table and make it
    /// available to the device; returns its head descriptor. The caller then
    /// notifies the device (`QueueNotify`). Refused without effect if the
    /// chain is empty, has an empty segment or does not fit.
    pub fn submit(&mut self, memory: &mut impl DmaMemory, segments: &[Segment]) -> Result<u16, QueueError> {
        if segments.is_empty() || segments.iter().any(|s| s.length == 0) {
            return Err(QueueError::EmptySegment);
        }
        if segments.len() > self.layout.size as usize {
            return Err(QueueError::ChainTooLong);
        }
        if segments.len() > self.free_descriptors() as usize {
            return Err(QueueError::Full);
        }
        let mut indices = [0u16; MAX_QUEUE_SIZE as usize];
        for index in indices.iter_mut().take(segments.len()) {
            let lowest = self.free.trailing_zeros() as u16;
            self.free &= !(1 << lowest);
            *index = lowest;
        }
        for (position, segment) in segments.iter().enumerate() {
            let index = indices[position];
            let last = position + 1 == segments.len();
            let next = if last { 0 } else { indices[position + 1] };
            let mut flags = if last { 0 } else { DESCRIPTOR_NEXT };
            if segment.device_writes {
                flags |= DESCRIPTOR_WRITE;
            }
            let words = Descriptor { address: segment.address, length: segment.length, flags, next }.words();
            let offset = self.layout.descriptor(index);
            memory.write_u64(offset, words[0]);
            memory.write_u64(offset + 8, words[1]);
            self.link[index as usize] = next;
        }
        let head = indices[0];
        self.chain_length[head as usize] = segments.len() as u16;
        memory.write_u16(self.layout.available_entry(self.next_available), head);
        // The device may read the entry as soon as it sees the new index:
        // descriptors and entry first (spec 2.7.13).
        memory.barrier();
        self.next_available = self.next_available.wrapping_add(1);
        memory.write_u16(self.layout.available_index(), self.next_available);
        memory.barrier();
        Ok(head)
    }

    /// Take the next completion from the used ring, if the device posted one,
    /// and free its descriptors.
    pub fn reap(&mut self, memory: &mut impl DmaMemory) -> Result<Option<Used>, QueueError> {
        if memory.read_u16(self.layout.used_index()) == self.next_used {
            return Ok(None);
        }
        // The device wrote the entry before the index: read it after.
        memory.barrier();
        let entry = self.layout.used_entry(self.next_used);
        let id = memory.read_u32(entry);
        let written = memory.read_u32(entry + 4);
        let head = match u16::try_from(id) {
            Ok(head) if head < self.layout.size && self.chain_length[head as usize] != 0 => head,
            _ => return Err(QueueError::UnknownHead(id)),
        };
        let mut index = head;
        for _ in 0..self.chain_length[head as usize] {
            self.free |= 1 << index;
            index = self.link[index as usize];
        }
        self.chain_length[head as usize] = 0;
        self.next_used = self.next_used.wrapping_add(1);
        Ok(Some(Used { head, written }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Memory;

    #[test]
    fn layout_packs_the_three_parts_with_their_alignments() {
        let layout = Layout::new(16, 0).unwrap();
        assert_eq!((layout.descriptors, layout.available, layout.used, layout.end), (0, 256, 296, 430));
        assert_eq!(layout.used % 4, 0);
        let layout = Layout::new(8, 0x800).unwrap();
        assert_eq!((layout.available, layout.used), (0x880, 0x898), "6 + 16 bytes of ring, rounded up to 4");
        assert_eq!(layout.available_entry(9), layout.available + 4 + 2, "entries wrap at the queue size");
        assert_eq!(layout.used_entry(8), layout.used + 4);
        assert_eq!(Layout::new(12, 0), None, "not a power of two");
        assert_eq!(Layout::new(128, 0), None, "more than the driver tracks");
        assert_eq!(Layout::new(16, 8), None, "descriptor table not 16-byte aligned");
    }

    #[test]
    fn descriptors_encode_as_the_spec_lays_them_out() {
        let words = Descriptor { address: 0xa010_0200, length: 0x1ffe00, flags: 3, next: 7 }.words();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..].copy_from_slice(&words[1].to_le_bytes());
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 0xa010_0200, "le64 addr");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 0x1ffe00, "le32 len");
        assert_eq!(u16::from_le_bytes(bytes[12..14].try_into().unwrap()), 3, "le16 flags");
        assert_eq!(u16::from_le_bytes(bytes[14..16].try_into().unwrap()), 7, "le16 next");
    }

    fn segment(address: u64, length: u32, device_writes: bool) -> Segment {
        Segment { address, length, device_writes }
    }

    #[test]
    fn a_chain_is_linked_flagged_and_announced() {
        let layout = Layout::new(8, 0).unwrap();
        let mut memory = Memory::new(0, layout.end);
        let mut queue = SplitQueue::new(layout).unwrap();
        let chain = [segment(0x1000, 16, false), segment(0x2000, 4096, true), segment(0x3000, 1, true)];
        let head = queue.submit(&mut memory, &chain).unwrap();
        assert_eq!(memory.read_u16(layout.available_index()), 1);
        assert_eq!(memory.read_u16(layout.available_entry(0)), head);
        let descriptors = memory.chain(layout, head);
        assert_eq!(descriptors.len(), 3);
        for (descriptor, segment) in descriptors.iter().zip(&chain) {
            assert_eq!((descriptor.address, descriptor.length), (segment.address, segment.length));
            assert_eq!(descriptor.flags & DESCRIPTOR_WRITE != 0, segment.device_writes);
        }
        assert_eq!(descriptors[2].flags & DESCRIPTOR_NEXT, 0, "the last one ends the chain");
        assert_eq!(queue.free_descriptors(), 5);
        assert!(memory.barriers >= 2, "entry before index, index before notify");
    }

    #[test]
    fn submit_refuses_without_effect() {
        let layout = Layout::new(4, 0).unwrap();
        let mut memory = Memory::new(0, layout.end);
        let mut queue = SplitQueue::new(layout).unwrap();
        let one = segment(0x1000, 512, false);
        assert_eq!(queue.submit(&mut memory, &[]), Err(QueueError::EmptySegment));
        assert_eq!(queue.submit(&mut memory, &[one, segment(0x2000, 0, true)]), Err(QueueError::EmptySegment));
        assert_eq!(queue.submit(&mut memory, &[one; 5]), Err(QueueError::ChainTooLong));
        queue.submit(&mut memory, &[one; 3]).unwrap();
        let before = (memory.bytes.clone(), queue.free_descriptors(), queue.outstanding());
        assert_eq!(queue.submit(&mut memory, &[one; 2]), Err(QueueError::Full));
        assert_eq!((memory.bytes.clone(), queue.free_descriptors(), queue.outstanding()), before);
    }

    #[test]
    fn reap_frees_the_chain_and_refuses_what_was_not_submitted() {
        let layout = Layout::new(4, 0).unwrap();
        let mut memory = Memory::new(0, layout.end);
        let mut queue = SplitQueue::new(layout).unwrap();
        assert_eq!(queue.reap(&mut memory), Ok(None));
        let head = queue.submit(&mut memory, &[segment(0x1000, 16, false), segment(0x2000, 1, true)]).unwrap();
        memory.post_used(layout, 0, head as u32, 1);
        assert_eq!(queue.reap(&mut memory), Ok(Some(Used { head, written: 1 })));
        assert_eq!((queue.free_descriptors(), queue.outstanding()), (4, 0));
        memory.post_used(layout, 1, head as u32, 1);
        assert_eq!(queue.reap(&mut memory), Err(QueueError::UnknownHead(head as u32)), "already reaped");
        memory.post_used(layout, 1, 1 << 20, 0);
        assert_eq!(queue.reap(&mut memory), Err(QueueError::UnknownHead(1 << 20)));
    }
}
