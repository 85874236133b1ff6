//! What the test reads and writes. `scripts/dma-test` makes the disk with
//! [`disk_word`] in every sector and, after QEMU exits, expects
//! [`written_word`] exactly in the sectors the two passes' writes name.

/// Sectors of the disk image `scripts/dma-test` makes (8 MiB).
pub const DISK_SECTORS: u64 = 16384;
/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Each pass's data buffer: one 2 MiB frame and 256 small frames.
pub const DATA_BYTES: u64 = 3 << 20;
/// Words per sector.
pub const WORDS_PER_SECTOR: u64 = SECTOR / 8;

/// Word `word` of sector `sector` of the disk as made.
pub const fn disk_word(sector: u64, word: u64) -> u64 {
    0xd15c_0000_0000_0000 | sector << 8 | word
}

/// Word `word` of sector `sector` as pass `pass` writes it.
pub const fn written_word(pass: u64, sector: u64, word: u64) -> u64 {
    0x5772_0000_0000_0000 | pass << 40 | sector << 8 | word
}

/// What the CPU leaves in a range before a device writes it, so that data
/// the device did not write is noticed.
pub const POISON: u64 = 0xbad0_bad0_bad0_bad0;

/// One request of a pass.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Read `bytes` from `sector` into the data buffer at `offset`; expect the disk's pattern.
    Read { sector: u64, offset: u64, bytes: u64 },
    /// Fill the data buffer at `offset` with the pass's pattern and write it to `sector`.
    Write { sector: u64, offset: u64, bytes: u64 },
    /// Make the writes durable.
    Flush,
    /// Read what the write wrote into another part of the buffer; expect the pass's pattern.
    ReadBack { sector: u64, offset: u64, bytes: u64 },
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Sectors the write of pass `pass` covers: `[first, first + count)`.
pub const fn written_sectors(pass: u64) -> (u64, u64) {
    (12000 + 1000 * pass, 26)
}

/// The requests of pass `pass`, in order.
pub const fn steps(pass: u64) -> [Step; 6] {
    let (written, count) = written_sectors(pass);
    [
        // The disk's first sectors, into small frames.
        Step::Read { sector: 0, offset: 2 * MIB + 8 * KIB, bytes: 4 * KIB },
        // The large one: from inside the 2 MiB frame, across it and four
        // small frames, into a fifth; 2 MiB + 16 KiB, six data descriptors.
        Step::Read { sector: 6000, offset: 0x200, bytes: 2 * MIB + 16 * KIB },
        // The disk's last sectors, into the buffer's last bytes.
        Step::Read { sector: DISK_SECTORS - 24, offset: DATA_BYTES - 12 * KIB, bytes: 12 * KIB },
        // From the 2 MiB frame's last page across three small frames.
        Step::Write { sector: written, offset: 2 * MIB - 4 * KIB, bytes: count * SECTOR },
        Step::Flush,
        Step::ReadBack { sector: written, offset: 2 * MIB + 512 * KIB, bytes: count * SECTOR },
    ]
}
