//! A virtio-blk driver whose virtqueue and data live in capbuf buffers, and
//! the test `make dma-test` runs with it against QEMU's disk.
//!
//! The virtqueue (descriptor table, rings) and each request's header and
//! status byte share one uncached 4 KiB buffer, like Linux's
//! `dma_alloc_coherent` memory. Data goes through a 3 MiB buffer (one 2 MiB
//! frame, 256 small ones), in two passes: uncached, then cached with
//! [`DmaSync`] around every transfer (Linux's streaming DMA). Each request's
//! data is given to the device as one descriptor per frame, every address
//! computed from the buffer's single base address plus the offset
//! (`dma::physical_ranges`): the disk's pattern arriving intact shows the
//! buffer is physically contiguous. Requests go one at a time; the device's
//! interrupt, an IRQ channel, drives the next step. What is virtio rather
//! than glue lives in `capbuf-virtio`, host-tested.
#![no_std]
#![no_main]

mod plan;
mod shared;

use capbuf_demo::MEMSRV;
use capbuf_microkit::{
    dma, Align, AllocFlags, BufferId, Capbuf, ClientError, DmaSync, Error, InfoReply, PoolId, Rights,
};
use capbuf_virtio::blk::{self, Disk, Request, Slot, Status};
use capbuf_virtio::mmio::{self, Device, Transport};
use capbuf_virtio::queue::{Layout, SplitQueue, Used};
use plan::{Step, DATA_BYTES, DISK_SECTORS, POISON, SECTOR, WORDS_PER_SECTOR};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, ChannelSet, Handler, Infallible};
use shared::Shared;

const PD: &str = "blk";
/// The block device's interrupt (system.xml: irq 79, transport 31's).
const DEVICE: Channel = Channel::new(1);
/// system.xml maps the 4 KiB page at 0x0a003000: transports 24 to 31.
const FIRST_MAPPED_TRANSPORT: usize = 24;
const MAPPED_BYTES: usize = 0x1000;
/// The transport whose interrupt system.xml routes to [`DEVICE`].
const ROUTED_TRANSPORT: usize = 31;
const QUEUE_SIZE: u16 = 16;
/// Where in the queue buffer the (one) request's header and status live.
const SLOT_OFFSET: usize = 0x800;

/// The driver gave up; the reason is printed.
struct Stop;

/// Print the FAIL line and stop.
macro_rules! fail {
    ($($arg:tt)*) => {{
        capbuf_demo::fail!(PD, $($arg)*);
        return Err(Stop);
    }};
}

fn refused<T>(what: &str, result: Result<T, ClientError>) -> Result<T, Stop> {
    match result {
        Ok(value) => Ok(value),
        Err(error) => fail!("{what}: {error:?}"),
    }
}

/// One pass: its data buffer and how it is mapped.
struct Pass {
    number: u64,
    name: &'static str,
    cached: bool,
    id: BufferId,
    info: InfoReply,
    data: Shared,
}

struct Driver {
    capbuf: Capbuf,
    device: Device<Shared>,
    queue: SplitQueue,
    ring: Shared,
    ring_id: BufferId,
    slot: Slot,
    disk: Disk,
    pass: Option<Pass>,
    step: usize,
    outstanding: Option<(u16, Request)>,
    interrupts: u64,
    freed: Option<BufferId>,
    /// The quarantine step's buffer, freed with a read outstanding into it.
    quarantined: Option<Quarantined>,
    finished: bool,
}

/// The quarantine step: the buffer freed under the device and what was checked.
struct Quarantined {
    id: BufferId,
    physical_address: u64,
    fresh: BufferId,
    fresh_address: u64,
    fresh_data: Shared,
}

/// Size of the quarantine step's buffer and of the read into it: 8 frames, a chain of 10 descriptors.
const QUARANTINE_BYTES: u64 = 32 << 10;
/// The sectors the quarantine step reads.
const QUARANTINE_SECTOR: u64 = 2000;

/// Find the block device among the mapped transports.
fn find_device() -> Result<Device<Shared>, Stop> {
    let page = memory_region_symbol!(virtio_mmio: *mut u8);
    let mut found = None;
    for n in 0..MAPPED_BYTES / mmio::TRANSPORT_SIZE {
        // SAFETY: system.xml maps the 4 KiB of transports 24..31 read-write,
        // uncached, at `virtio_mmio` for the life of this PD; only `Shared`'s
        // volatile accesses reach it.
        let registers = unsafe { Shared::new(page.as_ptr() as usize + n * mmio::TRANSPORT_SIZE, mmio::TRANSPORT_SIZE) };
        let device = Device::new(registers);
        let transport = FIRST_MAPPED_TRANSPORT + n;
        match device.identify() {
            Transport::Device(blk::DEVICE_ID) => found = Some((transport, device)),
            Transport::OtherVersion(version) => fail!("transport {transport}: virtio-mmio version {version} (QEMU needs -global virtio-mmio.force-legacy=false)"),
            _ => {}
        }
    }
    let Some((transport, device)) = found else { fail!("no block device on transports 24..31") };
    if transport != ROUTED_TRANSPORT {
        fail!("block device on transport {transport}, but system.xml routes the interrupt of transport {ROUTED_TRANSPORT}");
    }
    debug_println!(
        "blk: virtio-mmio transport {transport} at {:#x} (irq {}): block device, virtio-mmio version 2",
        mmio::qemu_virt_transport(transport),
        mmio::qemu_virt_irq(transport)
    );
    Ok(device)
}

impl Driver {
    fn start() -> Result<Driver, Stop> {
        let mut capbuf = refused("memsrv", capbuf_microkit::connect(MEMSRV))?;
        let mut device = find_device()?;

        // The virtqueue and the request slot: coherent (uncached) memory.
        let ring_id = refused("alloc queue", capbuf.alloc(4096, Align::PAGE, PoolId(0), AllocFlags::UNCACHED))?;
        let view = refused("attach queue", capbuf.attach(ring_id, Rights::ReadWrite))?;
        let base = refused("info queue", capbuf.info(ring_id))?.physical_address;
        // SAFETY: memsrv mapped the queue buffer's 4 KiB at `view.vaddr`; it
        // stays attached until `finish`, which resets the device and frees it
        // after the last use of `ring`.
        let ring = unsafe { Shared::new(view.vaddr as usize, view.size as usize) };
        let layout = Layout::new(QUEUE_SIZE, 0).expect("a valid queue layout");
        assert!(layout.end <= SLOT_OFFSET);
        let slot = Slot {
            header_offset: SLOT_OFFSET,
            header_address: base + SLOT_OFFSET as u64,
            status_offset: SLOT_OFFSET + blk::HEADER_SIZE,
            status_address: base + (SLOT_OFFSET + blk::HEADER_SIZE) as u64,
        };

        let wants = blk::feature::FLUSH | blk::feature::SEG_MAX;
        let features = match device.start(wants, blk::feature::FLUSH) {
            Ok(features) => features,
            Err(error) => fail!("device set-up: {error:?}"),
        };
        let at = |offset: usize| base + offset as u64;
        if let Err(error) =
            device.set_queue(0, QUEUE_SIZE, at(layout.descriptors), at(layout.available), at(layout.used))
        {
            fail!("queue set-up: {error:?}");
        }
        device.driver_ok();
        let capacity = device.config_u64(blk::config::CAPACITY);
        let segment_limit =
            if features & blk::feature::SEG_MAX != 0 { device.config_u32(blk::config::SEG_MAX) as usize } else { 1 };
        if capacity != DISK_SECTORS {
            fail!("the disk has {capacity} sectors, scripts/dma-test makes {DISK_SECTORS}");
        }
        debug_println!(
            "blk: disk of {capacity} sectors, seg_max {segment_limit}, features {features:#x}; virtqueue of {QUEUE_SIZE} in uncached buffer {ring_id} at physical {base:#x}"
        );
        let queue = SplitQueue::new(layout).expect("a queue the driver can track");
        Ok(Driver {
            capbuf,
            device,
            queue,
            ring,
            ring_id,
            slot,
            disk: Disk { capacity, segment_limit },
            pass: None,
            step: 0,
            outstanding: None,
            interrupts: 0,
            freed: None,
            quarantined: None,
            finished: false,
        })
    }

    fn begin_pass(&mut self, number: u64) -> Result<(), Stop> {
        let cached = number == 1;
        let (name, flags) = if cached { ("cached+sync", AllocFlags::NONE) } else { ("uncached", AllocFlags::UNCACHED) };
        let id = refused("alloc data", self.capbuf.alloc(DATA_BYTES, Align::PAGE, PoolId(0), flags))?;
        let view = refused("attach data", self.capbuf.attach(id, Rights::ReadWrite))?;
        let info = refused("info data", self.capbuf.info(id))?;
        if info.page_bits != 21 || view.flags.uncached() == cached {
            fail!("data buffer {id}: page bits {}, uncached {}", info.page_bits, view.flags.uncached());
        }
        debug_println!(
            "blk: pass {number}, {name}: data buffer {id} of 3 MiB at physical {:#x} (one 2 MiB frame, 256 small), mapped at {:#x}",
            info.physical_address,
            view.vaddr
        );
        // SAFETY: memsrv mapped the data buffer at `view.vaddr`; `end_pass`
        // drops this `Pass` (and `data`) before it frees the buffer.
        let data = unsafe { Shared::new(view.vaddr as usize, view.size as usize) };
        self.pass = Some(Pass { number, name, cached, id, info, data });
        self.step = 0;
        self.submit_step()
    }

    fn submit_step(&mut self) -> Result<(), Stop> {
        let pass = self.pass.as_ref().expect("a pass is running");
        let step = plan::steps(pass.number)[self.step];
        let request = match step {
            Step::Read { sector, offset, bytes } | Step::ReadBack { sector, offset, bytes } => {
                fill(&pass.data, offset, bytes, |_| POISON);
                if pass.cached {
                    // No dirty line may be evicted over what the device writes.
                    refused("sync_for_device", self.capbuf.sync_for_device(pass.id, offset, bytes))?;
                }
                let ranges = refused("physical ranges", dma::physical_ranges(&pass.info, offset, bytes))?;
                Request::read(self.disk, self.slot, sector, ranges)
            }
            Step::Write { sector, offset, bytes } => {
                let number = pass.number;
                fill(&pass.data, offset, bytes, |word| {
                    plan::written_word(number, sector + word / WORDS_PER_SECTOR, word % WORDS_PER_SECTOR)
                });
                if pass.cached {
                    // What the CPU wrote must be in memory when the device reads it.
                    refused("sync_for_device", self.capbuf.sync_for_device(pass.id, offset, bytes))?;
                }
                let ranges = refused("physical ranges", dma::physical_ranges(&pass.info, offset, bytes))?;
                Request::write(self.disk, self.slot, sector, ranges)
            }
            Step::Flush => Ok(Request::flush(self.slot)),
        };
        let request = match request {
            Ok(request) => request,
            Err(error) => fail!("request {step:?}: {error:?}"),
        };
        request.prepare(&mut self.ring, self.slot);
        let head = match self.queue.submit(&mut self.ring, request.segments()) {
            Ok(head) => head,
            Err(error) => fail!("submit {step:?}: {error:?}"),
        };
        self.device.notify(0);
        self.outstanding = Some((head, request));
        Ok(())
    }

    fn complete(&mut self, used: Used) -> Result<(), Stop> {
        let Some((head, request)) = self.outstanding.take() else { fail!("a completion nobody waited for: {used:?}") };
        if self.quarantined.is_some() {
            return self.end_quarantine(used, head, request);
        }
        let pass = self.pass.as_ref().expect("a pass is running");
        let step = plan::steps(pass.number)[self.step];
        let status = Request::status(&self.ring, self.slot);
        let expected_written = if request.kind == blk::Kind::Read { request.bytes as u32 + 1 } else { 1 };
        if used.head != head || status != Status::Ok || used.written != expected_written {
            fail!("{step:?}: head {} (sent {head}), status {status:?}, {} bytes written", used.head, used.written);
        }
        let name = pass.name;
        let descriptors = request.data_segments();
        let plural = if descriptors == 1 { "" } else { "s" };
        match step {
            Step::Read { sector, offset, bytes } => {
                self.sync_for_cpu(offset, bytes)?;
                verify(&pass.data, offset, bytes, |word| {
                    plan::disk_word(sector + word / WORDS_PER_SECTOR, word % WORDS_PER_SECTOR)
                })?;
                let end = sector + bytes / SECTOR;
                debug_println!(
                    "blk: {name}: read sectors {sector}..{end} into offset {offset:#x} ({bytes} bytes, {descriptors} data descriptor{plural} from base + offset): disk pattern verified"
                );
            }
            Step::Write { sector, offset, bytes } => {
                let end = sector + bytes / SECTOR;
                debug_println!(
                    "blk: {name}: wrote sectors {sector}..{end} from offset {offset:#x} ({bytes} bytes, {descriptors} data descriptor{plural})"
                );
            }
            Step::Flush => debug_println!("blk: {name}: flush done"),
            Step::ReadBack { sector, offset, bytes } => {
                self.sync_for_cpu(offset, bytes)?;
                let number = pass.number;
                verify(&pass.data, offset, bytes, |word| {
                    plan::written_word(number, sector + word / WORDS_PER_SECTOR, word % WORDS_PER_SECTOR)
                })?;
                let end = sector + bytes / SECTOR;
                debug_println!("blk: {name}: read back sectors {sector}..{end}: written pattern verified");
            }
        }
        self.step += 1;
        if self.step < plan::steps(0).len() {
            self.submit_step()
        } else {
            self.end_pass()
        }
    }

    /// After the device wrote `bytes` at `offset`, before the CPU reads them.
    fn sync_for_cpu(&self, offset: u64, bytes: u64) -> Result<(), Stop> {
        let pass = self.pass.as_ref().expect("a pass is running");
        if pass.cached {
            refused("sync_for_cpu", self.capbuf.sync_for_cpu(pass.id, offset, bytes))?;
        }
        Ok(())
    }

    fn end_pass(&mut self) -> Result<(), Stop> {
        // Taking the pass apart drops its mapping's `Shared` before the free.
        let Some(Pass { number, id, cached, .. }) = self.pass.take() else { fail!("no pass to end") };
        if cached {
            self.check_sync_refusals(id)?;
        }
        // Every request into it is reaped: the device no longer uses it, so
        // FREE gives its memory straight back (INFO told this PD the address).
        refused("quiesce data", self.capbuf.quiesce(id))?;
        refused("free data", self.capbuf.free(id))?;
        self.freed = Some(id);
        if number == 0 {
            self.begin_pass(1)
        } else {
            self.begin_quarantine()
        }
    }

    /// Free a buffer while the device may still write it: submit a read into
    /// it, FREE it before reaping the request. memsrv must keep its memory
    /// out of the pool until this PD's QUIESCE.
    fn begin_quarantine(&mut self) -> Result<(), Stop> {
        let id = refused("alloc quarantine", self.capbuf.alloc(QUARANTINE_BYTES, Align::PAGE, PoolId(0), AllocFlags::UNCACHED))?;
        let info = refused("info quarantine", self.capbuf.info(id))?;
        let ranges = refused("physical ranges", dma::physical_ranges(&info, 0, QUARANTINE_BYTES))?;
        let request = match Request::read(self.disk, self.slot, QUARANTINE_SECTOR, ranges) {
            Ok(request) => request,
            Err(error) => fail!("quarantine read: {error:?}"),
        };
        request.prepare(&mut self.ring, self.slot);
        let head = match self.queue.submit(&mut self.ring, request.segments()) {
            Ok(head) => head,
            Err(error) => fail!("submit quarantine read: {error:?}"),
        };
        self.outstanding = Some((head, request));
        refused("free under the device", self.capbuf.free(id))?;
        let pool = refused("pool info", self.capbuf.pool_info(PoolId(0)))?;
        if pool.quarantined != QUARANTINE_BYTES {
            fail!("freed under the device: {} bytes quarantined, expected {QUARANTINE_BYTES}", pool.quarantined);
        }
        let fresh = refused("alloc fresh", self.capbuf.alloc(QUARANTINE_BYTES, Align::PAGE, PoolId(0), AllocFlags::UNCACHED))?;
        let fresh_address = refused("info fresh", self.capbuf.info(fresh))?.physical_address;
        let (start, end) = (info.physical_address, info.physical_address + QUARANTINE_BYTES);
        if (start..end).contains(&fresh_address) || (fresh_address..fresh_address + QUARANTINE_BYTES).contains(&start) {
            fail!("fresh buffer {fresh} at {fresh_address:#x} overlaps quarantined {start:#x}..{end:#x}");
        }
        // The fresh buffer holds poison: the device's write must not reach it.
        let view = refused("attach fresh", self.capbuf.attach(fresh, Rights::ReadWrite))?;
        // SAFETY: memsrv mapped the fresh buffer at `view.vaddr`; `end_quarantine`
        // drops this `Shared` before it frees the buffer.
        let fresh_data = unsafe { Shared::new(view.vaddr as usize, view.size as usize) };
        fill(&fresh_data, 0, QUARANTINE_BYTES, |_| POISON);
        // Only now ring the doorbell: the device writes the freed buffer's
        // memory after its FREE.
        self.device.notify(0);
        self.quarantined = Some(Quarantined { id, physical_address: start, fresh, fresh_address, fresh_data });
        Ok(())
    }

    /// The read into the freed buffer completed: the device wrote quarantined
    /// memory, no one else's. Now QUIESCE gives it back.
    fn end_quarantine(&mut self, used: Used, head: u16, request: Request) -> Result<(), Stop> {
        let Some(q) = self.quarantined.take() else { fail!("no quarantine step") };
        let status = Request::status(&self.ring, self.slot);
        if used.head != head || status != Status::Ok || used.written != request.bytes as u32 + 1 {
            fail!(
                "quarantine read: head {} (sent {head}), status {status:?}, {} bytes written",
                used.head,
                used.written
            );
        }
        verify(&q.fresh_data, 0, QUARANTINE_BYTES, |_| POISON)?;
        drop(q.fresh_data);
        refused("quiesce quarantined", self.capbuf.quiesce(q.id))?;
        let again = self.capbuf.quiesce(q.id);
        if again != Err(ClientError::Server(Error::UnknownBuffer)) {
            fail!("second quiesce of {}: {again:?}", q.id);
        }
        refused("quiesce fresh", self.capbuf.quiesce(q.fresh))?;
        refused("free fresh", self.capbuf.free(q.fresh))?;
        let pool = refused("pool info", self.capbuf.pool_info(PoolId(0)))?;
        if pool.quarantined != 0 {
            fail!("after quiesce: {} bytes still quarantined", pool.quarantined);
        }
        debug_println!(
            "blk: quarantine: buffer {} at physical {:#x} freed with a read queued: {QUARANTINE_BYTES} bytes quarantined, a fresh buffer {} of the same size at {:#x}; doorbell, the device wrote the freed memory, the fresh buffer untouched; read reaped, QUIESCE: 0 bytes quarantined",
            q.id,
            q.physical_address,
            q.fresh,
            q.fresh_address,
        );
        self.finish()
    }

    /// The sync calls check their range against the attachment.
    fn check_sync_refusals(&self, id: BufferId) -> Result<(), Stop> {
        let past_end = self.capbuf.sync_for_device(id, DATA_BYTES - 64, 128);
        let wrapping = self.capbuf.sync_for_cpu(id, u64::MAX - 7, 16);
        let freed = self.freed.map(|old| self.capbuf.sync_for_cpu(old, 0, 64));
        let whole = self.capbuf.sync_for_cpu(id, 0, DATA_BYTES);
        let not_attached = Some(Err(ClientError::Server(Error::NotAttached)));
        if past_end != Err(ClientError::OutOfRange)
            || wrapping != Err(ClientError::OutOfRange)
            || freed != not_attached
            || whole.is_err()
        {
            fail!("sync refusals: past the end {past_end:?}, wrapping {wrapping:?}, freed {freed:?}, whole {whole:?}");
        }
        debug_println!(
            "blk: cached+sync: sync ranges checked: past the end OutOfRange, wrapping OutOfRange, freed buffer NotAttached, whole buffer Ok"
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Stop> {
        // Stop the device before its queue's memory goes back to the pool.
        self.device.reset();
        refused("quiesce queue", self.capbuf.quiesce(self.ring_id))?;
        refused("free queue", self.capbuf.free(self.ring_id))?;
        let pool = refused("pool info", self.capbuf.pool_info(PoolId(0)))?;
        if pool.free != pool.total {
            fail!("pool 0: {} of {} bytes free", pool.free, pool.total);
        }
        debug_println!(
            "blk: device reset, queue and data buffers freed: pool 0 free {} of {} bytes; {} interrupts",
            pool.free,
            pool.total,
            self.interrupts
        );
        debug_println!("CAPBUF DMA: ALL TESTS PASSED");
        self.finished = true;
        Ok(())
    }

    fn interrupt(&mut self) -> Result<(), Stop> {
        self.interrupts += 1;
        self.device.acknowledge_interrupt();
        if DEVICE.irq_ack().is_err() {
            fail!("irq_ack refused");
        }
        if self.device.status() & mmio::status::DEVICE_NEEDS_RESET != 0 {
            fail!("the device needs a reset");
        }
        loop {
            match self.queue.reap(&mut self.ring) {
                Ok(Some(used)) => self.complete(used)?,
                Ok(None) => return Ok(()),
                Err(error) => fail!("used ring: {error:?}"),
            }
            if self.finished {
                return Ok(());
            }
        }
    }
}

/// Write `value(word)` to each word of `bytes` at `offset`.
fn fill(data: &Shared, offset: u64, bytes: u64, value: impl Fn(u64) -> u64) {
    for word in 0..bytes / 8 {
        data.store((offset + word * 8) as usize, value(word));
    }
}

/// Check each word of `bytes` at `offset` is `value(word)`.
fn verify(data: &Shared, offset: u64, bytes: u64, value: impl Fn(u64) -> u64) -> Result<(), Stop> {
    for word in 0..bytes / 8 {
        let at = offset + word * 8;
        let (got, want) = (data.load::<u64>(at as usize), value(word));
        if got != want {
            fail!("offset {at:#x}: {got:#018x}, expected {want:#018x}");
        }
    }
    Ok(())
}

/// The protection domain: driving the device, or (`None`) done or failed.
struct Blk(Option<Driver>);

impl Handler for Blk {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        let Some(driver) = &mut self.0 else { return Ok(()) };
        for channel in channels.iter() {
            if channel != DEVICE {
                capbuf_demo::fail!(PD, "unexpected notification on channel {}", channel.index());
                self.0 = None;
                return Ok(());
            }
            if driver.interrupt().is_err() || driver.finished {
                self.0 = None;
                return Ok(());
            }
        }
        Ok(())
    }
}

#[protection_domain]
fn init() -> Blk {
    Blk(Driver::start().and_then(|mut driver| driver.begin_pass(0).map(|()| driver)).ok())
}
