//! The virtio-mmio transport, version 2 ("modern"), and feature negotiation.
//!
//! A transport is a 0x200-byte window of 32-bit registers followed by the
//! device's configuration space. QEMU's `virt` board has 32 of them at
//! [`QEMU_VIRT_BASE`]` + 0x200 * n`, interrupt SPI 16 + n (GIC INTID 48 + n);
//! a device given on the command line takes the highest-numbered free one.
//! QEMU offers the legacy interface (version 1) unless started with
//! `-global virtio-mmio.force-legacy=false`.

/// `MagicValue`: "virt" in little-endian ASCII.
pub const MAGIC_VALUE: usize = 0x000;
/// `Version`: 2 for the modern interface.
pub const VERSION: usize = 0x004;
/// `DeviceID`: 0 for an empty transport, 2 for a block device.
pub const DEVICE_ID: usize = 0x008;
/// `DeviceFeatures`: 32 feature bits, the half chosen by `DeviceFeaturesSel`.
pub const DEVICE_FEATURES: usize = 0x010;
/// `DeviceFeaturesSel`.
pub const DEVICE_FEATURES_SEL: usize = 0x014;
/// `DriverFeatures`: the features the driver accepts, half by half.
pub const DRIVER_FEATURES: usize = 0x020;
/// `DriverFeaturesSel`.
pub const DRIVER_FEATURES_SEL: usize = 0x024;
/// `QueueSel`: which virtqueue the queue registers below address.
pub const QUEUE_SEL: usize = 0x030;
/// `QueueNumMax`: the largest queue size the device supports.
pub const QUEUE_NUM_MAX: usize = 0x034;
/// `QueueNum`: the queue size the driver chose.
pub const QUEUE_NUM: usize = 0x038;
/// `QueueReady`: 1 once the queue's addresses are set.
pub const QUEUE_READY: usize = 0x044;
/// `QueueNotify`: write a queue index to tell the device it has new buffers.
pub const QUEUE_NOTIFY: usize = 0x050;
/// `InterruptStatus`: bit 0 used buffer, bit 1 configuration change.
pub const INTERRUPT_STATUS: usize = 0x060;
/// `InterruptACK`: write back the bits handled.
pub const INTERRUPT_ACK: usize = 0x064;
/// `Status`: the device status bits ([`status`]); writing 0 resets the device.
pub const STATUS: usize = 0x070;
/// `QueueDescLow`/`High`: physical address of the descriptor table.
pub const QUEUE_DESC_LOW: usize = 0x080;
/// `QueueDriverLow`/`High`: physical address of the available ring.
pub const QUEUE_DRIVER_LOW: usize = 0x090;
/// `QueueDeviceLow`/`High`: physical address of the used ring.
pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
/// `ConfigGeneration`: changes whenever the configuration space changes.
pub const CONFIG_GENERATION: usize = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: usize = 0x100;

/// [`MAGIC_VALUE`]'s expected content.
pub const MAGIC: u32 = 0x7472_6976;
/// [`VERSION`] of the modern interface this driver speaks.
pub const VERSION_MODERN: u32 = 2;
/// Bytes between consecutive transports on QEMU's `virt` board.
pub const TRANSPORT_SIZE: usize = 0x200;
/// Physical address of transport 0 on QEMU's `virt` board.
pub const QEMU_VIRT_BASE: u64 = 0x0a00_0000;
/// Transports on QEMU's `virt` board.
pub const QEMU_VIRT_TRANSPORTS: usize = 32;

/// Physical address of transport `n` on QEMU's `virt` board.
pub const fn qemu_virt_transport(n: usize) -> u64 {
    QEMU_VIRT_BASE + (n * TRANSPORT_SIZE) as u64
}

/// Interrupt number (GIC INTID, as Microkit's `<irq irq="...">` takes it) of
/// transport `n` on QEMU's `virt` board: SPI 16 + n.
pub const fn qemu_virt_irq(n: usize) -> u64 {
    48 + n as u64
}

/// Device status bits (spec 2.1).
pub mod status {
    /// The driver found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: the device may use its queues.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// `VIRTIO_F_VERSION_1`: the device follows virtio 1.x (not legacy). A modern
/// driver must accept it.
pub const F_VERSION_1: u64 = 1 << 32;

/// What a transport holds, from its first three registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The magic value is wrong: not a virtio-mmio transport.
    NotVirtio,
    /// A virtio-mmio transport of another version (1 is legacy).
    OtherVersion(u32),
    /// No device behind it (DeviceID 0).
    Empty,
    /// A modern transport with a device of this id (2: block).
    Device(u32),
}

impl Transport {
    /// Classify a transport by its `MagicValue`, `Version` and `DeviceID`.
    pub const fn identify(magic: u32, version: u32, device_id: u32) -> Transport {
        if magic != MAGIC {
            Transport::NotVirtio
        } else if version != VERSION_MODERN {
            Transport::OtherVersion(version)
        } else if device_id == 0 {
            Transport::Empty
        } else {
            Transport::Device(device_id)
        }
    }
}

/// Features the device lacks that the driver requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingFeatures(pub u64);

/// The features to accept: those the driver `wants` that the device offers,
/// provided it offers every one in `required` (which must be among `wants`).
/// [`F_VERSION_1`] is always required.
pub const fn negotiate(offered: u64, wants: u64, required: u64) -> Result<u64, MissingFeatures> {
    let required = required | F_VERSION_1;
    let missing = required & !offered;
    if missing != 0 {
        return Err(MissingFeatures(missing));
    }
    Ok(offered & (wants | required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_virt_addresses_and_interrupts() {
        assert_eq!(qemu_virt_transport(0), 0x0a00_0000);
        assert_eq!(qemu_virt_transport(31), 0x0a00_3e00);
        assert_eq!(qemu_virt_irq(31), 79);
        assert_eq!(qemu_virt_transport(QEMU_VIRT_TRANSPORTS) - QEMU_VIRT_BASE, 0x4000, "four pages in all");
    }

    #[test]
    fn transports_are_identified_by_magic_version_and_device() {
        assert_eq!(Transport::identify(0, 2, 2), Transport::NotVirtio);
        assert_eq!(Transport::identify(MAGIC, 1, 2), Transport::OtherVersion(1));
        assert_eq!(Transport::identify(MAGIC, 2, 0), Transport::Empty);
        assert_eq!(Transport::identify(MAGIC, 2, 2), Transport::Device(2));
    }

    #[test]
    fn negotiation_keeps_what_both_sides_want_and_insists_on_version_1() {
        let flush = 1 << 9;
        let seg_max = 1 << 2;
        let offered = F_VERSION_1 | flush | seg_max | (1 << 6);
        assert_eq!(negotiate(offered, flush | seg_max, flush), Ok(F_VERSION_1 | flush | seg_max));
        assert_eq!(negotiate(offered & !seg_max, flush | seg_max, flush), Ok(F_VERSION_1 | flush), "optional");
        assert_eq!(negotiate(offered & !flush, flush, flush), Err(MissingFeatures(flush)));
        assert_eq!(negotiate(flush, flush, flush), Err(MissingFeatures(F_VERSION_1)), "a legacy-only device");
    }
}
