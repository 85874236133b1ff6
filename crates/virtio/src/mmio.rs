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

/// A transport's registers: 32-bit accesses at byte offsets (volatile, on
/// device memory, in the driver; a fake in tests).
pub trait Registers {
    /// Read the register at `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Write the register at `offset`.
    fn write(&mut self, offset: usize, value: u32);
}

/// Why bringing a device up failed. The driver has set `FAILED` in its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The device lacks features the driver requires.
    MissingFeatures(u64),
    /// The device cleared `FEATURES_OK`: it refuses the features accepted.
    FeaturesRefused,
    /// The queue is already live, or the device's queues are too small.
    QueueUnavailable {
        /// Largest queue the device supports (0: no such queue).
        max: u32,
    },
}

/// A modern virtio-mmio device, driven through its registers (spec 3.1, 4.2.3).
pub struct Device<R> {
    registers: R,
}

impl<R: Registers> Device<R> {
    /// A device behind `registers` (nothing is written yet).
    pub const fn new(registers: R) -> Device<R> {
        Device { registers }
    }

    /// The registers, for device-specific access.
    pub fn registers(&mut self) -> &mut R {
        &mut self.registers
    }

    /// What the transport holds.
    pub fn identify(&self) -> Transport {
        let r = &self.registers;
        Transport::identify(r.read(MAGIC_VALUE), r.read(VERSION), r.read(DEVICE_ID))
    }

    /// Reset the device: it stops using its queues and forgets the driver's settings.
    pub fn reset(&mut self) {
        self.registers.write(STATUS, 0);
        // The reset is complete when the device reads back 0 (spec 4.2.3.1.2).
        while self.registers.read(STATUS) != 0 {}
    }

    fn add_status(&mut self, bits: u32) {
        let status = self.registers.read(STATUS);
        self.registers.write(STATUS, status | bits);
    }

    fn fail<T>(&mut self, error: SetupError) -> Result<T, SetupError> {
        self.add_status(status::FAILED);
        Err(error)
    }

    /// Reset, acknowledge, and negotiate features: accept those in `wants`
    /// the device offers, provided it offers all of `required` (and
    /// [`F_VERSION_1`]). Returns the features accepted. Set up the queues
    /// next, then call [`Self::driver_ok`].
    pub fn start(&mut self, wants: u64, required: u64) -> Result<u64, SetupError> {
        self.reset();
        self.add_status(status::ACKNOWLEDGE);
        self.add_status(status::DRIVER);
        let mut offered = 0;
        for half in 0..2 {
            self.registers.write(DEVICE_FEATURES_SEL, half);
            offered |= (self.registers.read(DEVICE_FEATURES) as u64) << (32 * half);
        }
        let accepted = match negotiate(offered, wants, required) {
            Ok(accepted) => accepted,
            Err(MissingFeatures(missing)) => return self.fail(SetupError::MissingFeatures(missing)),
        };
        for half in 0..2 {
            self.registers.write(DRIVER_FEATURES_SEL, half);
            self.registers.write(DRIVER_FEATURES, (accepted >> (32 * half)) as u32);
        }
        self.add_status(status::FEATURES_OK);
        if self.registers.read(STATUS) & status::FEATURES_OK == 0 {
            return self.fail(SetupError::FeaturesRefused);
        }
        Ok(accepted)
    }

    /// Give queue `queue` of `size` entries its three parts' physical addresses.
    pub fn set_queue(
        &mut self,
        queue: u32,
        size: u16,
        descriptors: u64,
        available: u64,
        used: u64,
    ) -> Result<(), SetupError> {
        let r = &mut self.registers;
        r.write(QUEUE_SEL, queue);
        let max = r.read(QUEUE_NUM_MAX);
        if r.read(QUEUE_READY) != 0 || max < size as u32 {
            return self.fail(SetupError::QueueUnavailable { max });
        }
        r.write(QUEUE_NUM, size as u32);
        for (low, address) in [(QUEUE_DESC_LOW, descriptors), (QUEUE_DRIVER_LOW, available), (QUEUE_DEVICE_LOW, used)] {
            r.write(low, address as u32);
            r.write(low + 4, (address >> 32) as u32);
        }
        r.write(QUEUE_READY, 1);
        Ok(())
    }

    /// The driver is ready: the device may now use the queues.
    pub fn driver_ok(&mut self) {
        self.add_status(status::DRIVER_OK);
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.registers.read(STATUS)
    }

    /// Tell the device queue `queue` has new available buffers.
    pub fn notify(&mut self, queue: u32) {
        self.registers.write(QUEUE_NOTIFY, queue);
    }

    /// Read and acknowledge the interrupt causes; returns them (bit 0: used buffers).
    pub fn acknowledge_interrupt(&mut self) -> u32 {
        let causes = self.registers.read(INTERRUPT_STATUS);
        self.registers.write(INTERRUPT_ACK, causes);
        causes
    }

    /// A 32-bit field of the configuration space.
    pub fn config_u32(&self, offset: usize) -> u32 {
        self.registers.read(CONFIG + offset)
    }

    /// A 64-bit field of the configuration space, read as two halves that
    /// belong together (re-read while `ConfigGeneration` changes, spec 4.2.2.2).
    pub fn config_u64(&self, offset: usize) -> u64 {
        loop {
            let before = self.registers.read(CONFIG_GENERATION);
            let low = self.registers.read(CONFIG + offset) as u64;
            let high = self.registers.read(CONFIG + offset + 4) as u64;
            if self.registers.read(CONFIG_GENERATION) == before {
                return high << 32 | low;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A transport that logs writes and follows the status handshake.
    struct Fake {
        offered: u64,
        refuse_features: bool,
        queue_max: u32,
        status: u32,
        select: u32,
        accepted: [u32; 2],
        generation: RefCell<u32>,
        writes: Vec<(usize, u32)>,
    }

    impl Fake {
        fn new(offered: u64) -> Fake {
            Fake {
                offered,
                refuse_features: false,
                queue_max: 256,
                status: 0x7f,
                select: 0,
                accepted: [0; 2],
                generation: RefCell::new(0),
                writes: Vec::new(),
            }
        }
    }

    impl Registers for Fake {
        fn read(&self, offset: usize) -> u32 {
            match offset {
                MAGIC_VALUE => MAGIC,
                VERSION => 2,
                DEVICE_ID => 2,
                DEVICE_FEATURES => (self.offered >> (32 * self.select)) as u32,
                QUEUE_NUM_MAX => self.queue_max,
                QUEUE_READY => 0,
                STATUS => self.status,
                // The configuration changes once while the driver reads it.
                CONFIG_GENERATION => {
                    let mut generation = self.generation.borrow_mut();
                    *generation += 1;
                    (*generation > 1) as u32
                }
                o if o == CONFIG => 0x1000,
                o if o == CONFIG + 4 => 0x2,
                _ => 0,
            }
        }

        fn write(&mut self, offset: usize, value: u32) {
            self.writes.push((offset, value));
            match offset {
                DEVICE_FEATURES_SEL | DRIVER_FEATURES_SEL => self.select = value,
                DRIVER_FEATURES => self.accepted[self.select as usize] = value,
                STATUS if value & status::FEATURES_OK != 0 && self.refuse_features => {
                    self.status = value & !status::FEATURES_OK
                }
                STATUS => self.status = value,
                _ => {}
            }
        }
    }

    const FLUSH: u64 = 1 << 9;

    #[test]
    fn start_resets_acknowledges_and_accepts_the_common_features() {
        let mut device = Device::new(Fake::new(F_VERSION_1 | FLUSH | 1 << 6));
        assert_eq!(device.identify(), Transport::Device(2));
        assert_eq!(device.start(FLUSH, FLUSH), Ok(F_VERSION_1 | FLUSH));
        let fake = device.registers();
        let statuses: Vec<u32> = fake.writes.iter().filter(|w| w.0 == STATUS).map(|w| w.1).collect();
        let (ack, driver, ok) = (status::ACKNOWLEDGE, status::DRIVER, status::FEATURES_OK);
        assert_eq!(statuses, vec![0, ack, ack | driver, ack | driver | ok], "reset first, then one bit at a time");
        assert_eq!(fake.accepted, [FLUSH as u32, 1], "VERSION_1 is bit 0 of the high half");
    }

    #[test]
    fn a_device_without_what_is_required_is_failed() {
        let mut device = Device::new(Fake::new(F_VERSION_1));
        assert_eq!(device.start(FLUSH, FLUSH), Err(SetupError::MissingFeatures(FLUSH)));
        assert_ne!(device.status() & status::FAILED, 0);
        let mut fake = Fake::new(F_VERSION_1 | FLUSH);
        fake.refuse_features = true;
        let mut device = Device::new(fake);
        assert_eq!(device.start(FLUSH, FLUSH), Err(SetupError::FeaturesRefused));
        assert_ne!(device.status() & status::FAILED, 0);
    }

    #[test]
    fn a_queue_gets_its_three_addresses_then_ready() {
        let mut device = Device::new(Fake::new(F_VERSION_1));
        device.set_queue(0, 16, 0x1_a000_0000, 0xa000_0100, 0xa000_0128).unwrap();
        let writes = &device.registers().writes;
        assert!(writes.contains(&(QUEUE_NUM, 16)));
        assert!(writes.contains(&(QUEUE_DESC_LOW, 0xa000_0000)) && writes.contains(&(QUEUE_DESC_LOW + 4, 1)));
        assert!(writes.contains(&(QUEUE_DRIVER_LOW, 0xa000_0100)) && writes.contains(&(QUEUE_DEVICE_LOW, 0xa000_0128)));
        assert_eq!(writes.last(), Some(&(QUEUE_READY, 1)), "ready last");
        let mut small = Fake::new(F_VERSION_1);
        small.queue_max = 8;
        assert_eq!(Device::new(small).set_queue(0, 16, 0, 0, 0), Err(SetupError::QueueUnavailable { max: 8 }));
    }

    #[test]
    fn a_64_bit_field_is_read_again_if_the_generation_changed() {
        let device = Device::new(Fake::new(F_VERSION_1));
        assert_eq!(device.config_u64(0), 0x2_0000_1000);
        assert!(*device.registers.generation.borrow() >= 4, "read twice");
    }

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
