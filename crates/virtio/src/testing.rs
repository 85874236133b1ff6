//! Test doubles: shared memory as a byte vector, and a virtio-blk device that
//! follows the spec's device side against it.

use crate::blk::{Kind, HEADER_SIZE, SECTOR_SIZE};
use crate::queue::{Descriptor, Layout, DESCRIPTOR_NEXT, DESCRIPTOR_WRITE};
use crate::DmaMemory;

/// Memory at physical address `base`; offsets are from `base`.
pub struct Memory {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub barriers: usize,
}

impl Memory {
    pub fn new(base: u64, size: usize) -> Memory {
        Memory { base, bytes: vec![0; size], barriers: 0 }
    }

    fn at<const N: usize>(&self, offset: usize) -> [u8; N] {
        assert_eq!(offset % N, 0, "naturally aligned");
        self.bytes[offset..offset + N].try_into().unwrap()
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) {
        assert_eq!(offset % bytes.len(), 0, "naturally aligned");
        self.bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    fn offset_of(&self, address: u64, length: u32) -> usize {
        assert!(address >= self.base && address + length as u64 <= self.base + self.bytes.len() as u64);
        (address - self.base) as usize
    }

    pub fn descriptor(&self, layout: Layout, index: u16) -> Descriptor {
        let at = layout.descriptor(index);
        let address = u64::from_le_bytes(self.at(at));
        let word = u64::from_le_bytes(self.at(at + 8));
        Descriptor { address, length: word as u32, flags: (word >> 32) as u16, next: (word >> 48) as u16 }
    }

    /// The chain starting at `head`, as the device follows it.
    pub fn chain(&self, layout: Layout, head: u16) -> Vec<Descriptor> {
        let mut chain = vec![self.descriptor(layout, head)];
        while chain.last().unwrap().flags & DESCRIPTOR_NEXT != 0 {
            assert!(chain.len() <= layout.size as usize, "a loop in the chain");
            chain.push(self.descriptor(layout, chain.last().unwrap().next));
        }
        chain
    }

    /// Post a used entry at free-running index `index` and publish it.
    pub fn post_used(&mut self, layout: Layout, index: u16, id: u32, written: u32) {
        let entry = layout.used_entry(index);
        self.put(entry, &id.to_le_bytes());
        self.put(entry + 4, &written.to_le_bytes());
        self.put(layout.used_index(), &index.wrapping_add(1).to_le_bytes());
    }
}

impl DmaMemory for Memory {
    fn read_u8(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }
    fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.at(offset))
    }
    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.at(offset))
    }
    fn write_u8(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }
    fn write_u16(&mut self, offset: usize, value: u16) {
        self.put(offset, &value.to_le_bytes());
    }
    fn write_u64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }
    fn barrier(&mut self) {
        self.barriers += 1;
    }
}

/// A virtio-blk device: serves every available chain when notified.
pub struct BlockDevice {
    layout: Layout,
    pub disk: Vec<u8>,
    next_available: u16,
    next_used: u16,
    /// (type, sector, data bytes) of each request served.
    pub completed: Vec<(u32, u64, u64)>,
    pub flushes: usize,
}

impl BlockDevice {
    pub fn new(layout: Layout, disk: Vec<u8>) -> BlockDevice {
        BlockDevice { layout, disk, next_available: 0, next_used: 0, completed: Vec::new(), flushes: 0 }
    }

    pub fn notify(&mut self, memory: &mut Memory) {
        let layout = self.layout;
        while memory.read_u16(layout.available_index()) != self.next_available {
            let head = memory.read_u16(layout.available_entry(self.next_available));
            self.next_available = self.next_available.wrapping_add(1);
            let chain = memory.chain(layout, head);
            let written = self.serve(memory, &chain);
            memory.post_used(layout, self.next_used, head as u32, written);
            self.next_used = self.next_used.wrapping_add(1);
        }
    }

    /// Serve one request; returns the bytes written into the chain.
    fn serve(&mut self, memory: &mut Memory, chain: &[Descriptor]) -> u32 {
        let (header, data, status) = (chain[0], &chain[1..chain.len() - 1], chain[chain.len() - 1]);
        assert_eq!((header.length as usize, header.flags & DESCRIPTOR_WRITE), (HEADER_SIZE, 0));
        assert_eq!((status.length, status.flags & DESCRIPTOR_WRITE), (1, DESCRIPTOR_WRITE));
        let at = memory.offset_of(header.address, header.length);
        let kind = u32::from_le_bytes(memory.bytes[at..at + 4].try_into().unwrap());
        let sector = u64::from_le_bytes(memory.bytes[at + 8..at + 16].try_into().unwrap());
        let mut disk_at = (sector * SECTOR_SIZE) as usize;
        let mut written = 0;
        let mut bytes = 0;
        for piece in data {
            let length = piece.length as usize;
            let at = memory.offset_of(piece.address, piece.length);
            if kind == Kind::Read as u32 {
                assert_ne!(piece.flags & DESCRIPTOR_WRITE, 0);
                memory.bytes[at..at + length].copy_from_slice(&self.disk[disk_at..disk_at + length]);
                written += piece.length;
            } else {
                assert_eq!(piece.flags & DESCRIPTOR_WRITE, 0);
                self.disk[disk_at..disk_at + length].copy_from_slice(&memory.bytes[at..at + length]);
            }
            disk_at += length;
            bytes += length as u64;
        }
        if kind == Kind::Flush as u32 {
            self.flushes += 1;
        }
        let status_at = memory.offset_of(status.address, 1);
        memory.bytes[status_at] = 0;
        self.completed.push((kind, sector, bytes));
        written + 1
    }
}
