//! virtio-blk requests (spec 5.2): a 16-byte header the device reads, the
//! data, and one status byte the device writes, as one descriptor chain.
//!
//! The data of one request may be given as several physical ranges, one
//! segment each: a driver with a physically contiguous buffer could use a
//! single one, but giving one per frame lets a test prove the physical address
//! of every frame is the buffer's base plus its offset.

use crate::queue::Segment;
use crate::DmaMemory;

/// virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;
/// Bytes per sector: virtio-blk addresses the disk in 512-byte units, whatever its block size.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes of a request header.
pub const HEADER_SIZE: usize = 16;
/// Data segments one request may have here (the device's `seg_max` may be lower).
pub const MAX_DATA_SEGMENTS: usize = 16;

/// Feature bits of a block device.
pub mod feature {
    /// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` in the configuration is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// `VIRTIO_BLK_F_RO`: the disk is read-only.
    pub const READ_ONLY: u64 = 1 << 5;
    /// `VIRTIO_BLK_F_FLUSH`: the device takes flush requests.
    pub const FLUSH: u64 = 1 << 9;
}

/// Offsets in a block device's configuration space.
pub mod config {
    /// `capacity`: the disk's size in 512-byte sectors (64 bits).
    pub const CAPACITY: usize = 0;
    /// `seg_max`: most data segments in one request (32 bits), if [`super::feature::SEG_MAX`].
    pub const SEG_MAX: usize = 12;
}

/// Request types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// `VIRTIO_BLK_T_IN`: read sectors into memory.
    Read = 0,
    /// `VIRTIO_BLK_T_OUT`: write memory to sectors.
    Write = 1,
    /// `VIRTIO_BLK_T_FLUSH`: make earlier writes durable.
    Flush = 4,
}

/// What the device wrote in the status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `VIRTIO_BLK_S_OK`.
    Ok,
    /// `VIRTIO_BLK_S_IOERR`.
    IoError,
    /// `VIRTIO_BLK_S_UNSUPP`.
    Unsupported,
    /// Anything else: the device did not write it (the driver's 0xff is still there) or is broken.
    Other(u8),
}

impl Status {
    /// Decode the status byte.
    pub const fn from_byte(byte: u8) -> Status {
        match byte {
            0 => Status::Ok,
            1 => Status::IoError,
            2 => Status::Unsupported,
            other => Status::Other(other),
        }
    }
}

/// Value the driver leaves in the status byte before submitting, so that a
/// device that never wrote it is noticed.
pub const STATUS_UNWRITTEN: u8 = 0xff;

/// Why a request was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// A read or write of no data.
    NoData,
    /// The data is not a whole number of sectors.
    NotWholeSectors,
    /// The request reaches past the disk's last sector.
    BeyondDisk,
    /// More data segments than [`MAX_DATA_SEGMENTS`] or the device's `seg_max`.
    TooManySegments,
    /// One segment longer than a descriptor can say (4 GiB).
    SegmentTooLong,
}

/// A request: its header's content and its chain of segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Type.
    pub kind: Kind,
    /// First sector (0 for a flush).
    pub sector: u64,
    /// Bytes of data.
    pub bytes: u64,
    segments: [Segment; MAX_DATA_SEGMENTS + 2],
    count: usize,
}

/// Where a request's header and status byte live: offsets in memory the
/// driver shares with the device and their physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Offset of the 16-byte header (8-byte aligned).
    pub header_offset: usize,
    /// Physical address of the header.
    pub header_address: u64,
    /// Offset of the status byte.
    pub status_offset: usize,
    /// Physical address of the status byte.
    pub status_address: u64,
}

/// A disk as the driver knows it from the device's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Sectors.
    pub capacity: u64,
    /// Most data segments per request.
    pub segment_limit: usize,
}

impl Request {
    /// Read `data` (physical ranges, in order) from the disk from `sector` on.
    pub fn read(
        disk: Disk,
        slot: Slot,
        sector: u64,
        data: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Request, RequestError> {
        Request::transfer(Kind::Read, disk, slot, sector, data)
    }

    /// Write `data` (physical ranges, in order) to the disk from `sector` on.
    pub fn write(
        disk: Disk,
        slot: Slot,
        sector: u64,
        data: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Request, RequestError> {
        Request::transfer(Kind::Write, disk, slot, sector, data)
    }

    /// Make the writes the device completed so far durable.
    pub fn flush(slot: Slot) -> Request {
        let mut request = Request::empty(Kind::Flush, 0, slot);
        request.push(Segment { address: slot.status_address, length: 1, device_writes: true });
        request
    }

    fn empty(kind: Kind, sector: u64, slot: Slot) -> Request {
        let header = Segment { address: slot.header_address, length: HEADER_SIZE as u32, device_writes: false };
        Request { kind, sector, bytes: 0, segments: [header; MAX_DATA_SEGMENTS + 2], count: 1 }
    }

    fn push(&mut self, segment: Segment) {
        self.segments[self.count] = segment;
        self.count += 1;
    }

    fn transfer(
        kind: Kind,
        disk: Disk,
        slot: Slot,
        sector: u64,
        data: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Request, RequestError> {
        let mut request = Request::empty(kind, sector, slot);
        let limit = disk.segment_limit.min(MAX_DATA_SEGMENTS);
        for (address, length) in data {
            if request.count - 1 == limit {
                return Err(RequestError::TooManySegments);
            }
            let length32 = u32::try_from(length).map_err(|_| RequestError::SegmentTooLong)?;
            if length32 == 0 {
                return Err(RequestError::NoData);
            }
            request.push(Segment { address, length: length32, device_writes: kind == Kind::Read });
            request.bytes += length;
        }
        if request.bytes == 0 {
            return Err(RequestError::NoData);
        }
        if request.bytes % SECTOR_SIZE != 0 {
            return Err(RequestError::NotWholeSectors);
        }
        let end = sector.checked_add(request.bytes / SECTOR_SIZE).ok_or(RequestError::BeyondDisk)?;
        if end > disk.capacity {
            return Err(RequestError::BeyondDisk);
        }
        request.push(Segment { address: slot.status_address, length: 1, device_writes: true });
        Ok(request)
    }

    /// The chain: header, data segments, status byte.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// Data segments.
    pub fn data_segments(&self) -> usize {
        self.count.saturating_sub(2)
    }

    /// Write the header into shared memory at `slot` and mark the status byte
    /// unwritten; then submit [`Self::segments`].
    pub fn prepare(&self, memory: &mut impl DmaMemory, slot: Slot) {
        // type (le32) and reserved (le32), then sector (le64).
        memory.write_u64(slot.header_offset, self.kind as u64);
        memory.write_u64(slot.header_offset + 8, self.sector);
        memory.write_u8(slot.status_offset, STATUS_UNWRITTEN);
    }

    /// The device's verdict, once it reported the chain used.
    pub fn status(memory: &impl DmaMemory, slot: Slot) -> Status {
        Status::from_byte(memory.read_u8(slot.status_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Layout, SplitQueue};
    use crate::testing::{BlockDevice, Memory};

    const BASE: u64 = 0xa000_0000;

    fn slot(header_offset: usize) -> Slot {
        Slot {
            header_offset,
            header_address: BASE + header_offset as u64,
            status_offset: header_offset + HEADER_SIZE,
            status_address: BASE + (header_offset + HEADER_SIZE) as u64,
        }
    }

    const DISK: Disk = Disk { capacity: 64, segment_limit: 8 };

    #[test]
    fn requests_are_checked_before_anything_is_written() {
        let s = slot(0x800);
        assert_eq!(Request::read(DISK, s, 0, []), Err(RequestError::NoData));
        assert_eq!(Request::read(DISK, s, 0, [(BASE, 0)]), Err(RequestError::NoData));
        assert_eq!(Request::read(DISK, s, 0, [(BASE, 500)]), Err(RequestError::NotWholeSectors));
        assert_eq!(Request::read(DISK, s, 0, [(BASE, 256), (BASE + 0x1000, 256)]).map(|r| r.bytes), Ok(512));
        assert_eq!(Request::write(DISK, s, 63, [(BASE, 1024)]), Err(RequestError::BeyondDisk));
        assert_eq!(Request::write(DISK, s, u64::MAX, [(BASE, 512)]), Err(RequestError::BeyondDisk), "no wrap");
        assert_eq!(Request::write(DISK, s, 63, [(BASE, 512)]).map(|r| r.sector), Ok(63), "the last sector");
        let nine = (0..9).map(|i| (BASE + i * 0x1000, 512));
        assert_eq!(Request::read(DISK, s, 0, nine), Err(RequestError::TooManySegments), "the device's seg_max");
        assert_eq!(Request::read(DISK, s, 0, [(BASE, 1 << 32)]), Err(RequestError::SegmentTooLong));
    }

    #[test]
    fn chains_are_header_data_status_with_the_right_directions() {
        let s = slot(0x800);
        let read = Request::read(DISK, s, 4, [(BASE + 0x1000, 1024), (BASE + 0x3000, 512)]).unwrap();
        let chain = read.segments();
        assert_eq!(chain.len(), 4);
        assert_eq!((chain[0].address, chain[0].length, chain[0].device_writes), (s.header_address, 16, false));
        assert!(chain[1].device_writes && chain[2].device_writes, "a read's data is written by the device");
        assert_eq!((chain[3].address, chain[3].length, chain[3].device_writes), (s.status_address, 1, true));
        let write = Request::write(DISK, s, 4, [(BASE + 0x1000, 512)]).unwrap();
        assert!(!write.segments()[1].device_writes, "a write's data is read by the device");
        assert_eq!(Request::flush(s).segments().len(), 2, "header and status only");
        assert_eq!(read.data_segments(), 2);
    }

    /// A queue, a request slot and data memory behind a simulated device.
    fn rig(queue_size: u16) -> (Memory, SplitQueue, BlockDevice) {
        let layout = Layout::new(queue_size, 0).unwrap();
        let memory = Memory::new(BASE, 0x10000);
        let disk: Vec<u8> = (0..DISK.capacity * SECTOR_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        (memory, SplitQueue::new(layout).unwrap(), BlockDevice::new(layout, disk))
    }

    fn run(
        memory: &mut Memory,
        queue: &mut SplitQueue,
        device: &mut BlockDevice,
        request: &Request,
        s: Slot,
    ) -> Status {
        request.prepare(memory, s);
        let head = queue.submit(memory, request.segments()).unwrap();
        device.notify(memory);
        let used = queue.reap(memory).unwrap().expect("completed");
        assert_eq!(used.head, head);
        Request::status(memory, s)
    }

    #[test]
    fn a_read_in_pieces_lands_where_each_piece_says() {
        let (mut memory, mut queue, mut device) = rig(8);
        let s = slot(0x800);
        // Sectors 3..7 into three ranges, out of order in memory.
        let pieces = [(BASE + 0x4200, 512), (BASE + 0x2000, 1024), (BASE + 0x3000, 512)];
        let request = Request::read(DISK, s, 3, pieces).unwrap();
        assert_eq!(run(&mut memory, &mut queue, &mut device, &request, s), Status::Ok);
        let mut disk_at = 3 * 512;
        for (address, length) in pieces {
            let (at, length) = ((address - BASE) as usize, length as usize);
            assert_eq!(&memory.bytes[at..at + length], &device.disk[disk_at..disk_at + length]);
            disk_at += length;
        }
        assert_eq!(device.completed, vec![(Kind::Read as u32, 3, 2048)]);
    }

    #[test]
    fn a_write_then_flush_reaches_the_disk() {
        let (mut memory, mut queue, mut device) = rig(8);
        let s = slot(0x800);
        for (i, byte) in memory.bytes[0x2000..0x2600].iter_mut().enumerate() {
            *byte = (i % 13) as u8 + 1;
        }
        let request = Request::write(DISK, s, 60, [(BASE + 0x2000, 1024), (BASE + 0x2400, 512)]).unwrap();
        assert_eq!(run(&mut memory, &mut queue, &mut device, &request, s), Status::Ok);
        assert_eq!(&device.disk[60 * 512..63 * 512], &memory.bytes[0x2000..0x2600]);
        assert_eq!(run(&mut memory, &mut queue, &mut device, &Request::flush(s), s), Status::Ok);
        assert_eq!(device.flushes, 1);
    }

    #[test]
    fn many_requests_wrap_both_rings() {
        let (mut memory, mut queue, mut device) = rig(4);
        let s = slot(0x800);
        for round in 0..70u64 {
            let sector = round % DISK.capacity;
            let request = Request::read(DISK, s, sector, [(BASE + 0x2000, 512)]).unwrap();
            assert_eq!(run(&mut memory, &mut queue, &mut device, &request, s), Status::Ok);
            let at = (sector * 512) as usize;
            assert_eq!(&memory.bytes[0x2000..0x2200], &device.disk[at..at + 512], "round {round}");
            assert_eq!(queue.free_descriptors(), 4);
        }
        assert_eq!(device.completed.len(), 70, "the free-running u16 indices went round the 4-entry rings");
    }

    #[test]
    fn an_unwritten_status_is_not_success() {
        let mut memory = Memory::new(BASE, 0x1000);
        let s = slot(0x800);
        Request::flush(s).prepare(&mut memory, s);
        assert_eq!(Request::status(&memory, s), Status::Other(STATUS_UNWRITTEN));
        memory.bytes[s.status_offset] = 2;
        assert_eq!(Request::status(&memory, s), Status::Unsupported);
    }
}
