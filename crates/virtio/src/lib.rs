//! virtio 1.x without the hardware: what a driver for a virtio-blk device on
//! the virtio-mmio transport decides, with every memory access behind a trait.
//!
//! [`mmio`] is the register map of a modern (version 2) virtio-mmio transport
//! and the feature negotiation; [`queue`] the split virtqueue: its memory
//! layout, descriptors, and a driver's side of it (submit a descriptor chain,
//! reap a completion); [`blk`] the virtio-blk requests, built from the
//! physical address ranges of a DMA buffer. The driver protection domain
//! (`pds/demo/blk`) implements [`DmaMemory`] with volatile accesses to capbuf
//! buffers and does nothing else of substance; the tests here implement it
//! with a byte vector and play the device.
//!
//! Spec: *Virtual I/O Device (VIRTIO) Version 1.2*, sections 2.7 (split
//! virtqueues), 4.2 (virtio over MMIO) and 5.2 (block device).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blk;
pub mod mmio;
pub mod queue;

/// Memory shared with a device: a virtqueue or a request's header and status.
///
/// Offsets are bytes from the start of the shared region; every access is
/// naturally aligned. Implementations use volatile accesses, since the device
/// reads and writes the memory behind the compiler's back.
pub trait DmaMemory {
    /// Read a byte.
    fn read_u8(&self, offset: usize) -> u8;
    /// Read a 16-bit little-endian value.
    fn read_u16(&self, offset: usize) -> u16;
    /// Read a 32-bit little-endian value.
    fn read_u32(&self, offset: usize) -> u32;
    /// Write a byte.
    fn write_u8(&mut self, offset: usize, value: u8);
    /// Write a 16-bit little-endian value.
    fn write_u16(&mut self, offset: usize, value: u16);
    /// Write a 64-bit little-endian value.
    fn write_u64(&mut self, offset: usize, value: u64);
    /// Order every access before it against every access after it, as the
    /// device observes them (on AArch64 `dsb sy`: the device is an observer
    /// outside the CPU's inner shareable domain).
    fn barrier(&mut self);
}

#[cfg(test)]
mod testing;
