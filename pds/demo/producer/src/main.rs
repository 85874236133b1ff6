//! Demo producer: allocates buffers, fills them, shares them read-only with the
//! consumer and read-write with the victim, frees the victim's buffer under it
//! when asked; then trades buffers with the C client (each grants the other
//! one, through ids in a shared mailbox), and at the end frees everything and
//! checks every pool is whole (free == total, nothing lost or quarantined).
#![no_std]
#![no_main]

use capbuf_demo::{clients, fail, pattern, DOOMED, POOL, SHARED};
use capbuf_microkit::{Align, AllocFlags, BufferId, Capbuf, Memory, PoolId, Rights};
use core::ptr::NonNull;
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, ChannelSet, Handler, Infallible};
use sel4_shared_memory::SharedMemoryRef;

const PD: &str = "producer";
const VICTIM: Channel = Channel::new(1);
const CDEMO: Channel = Channel::new(2);
const SUPERVISOR: Channel = Channel::new(3);
/// What the producer writes into word 0 of the C client's buffer; the C client checks it.
const MARK: u64 = 0x9e7e_0000_0000_0000;

struct Producer {
    capbuf: Capbuf,
    shared: BufferId,
    doomed: Option<BufferId>,
    pool_free_at_start: u64,
    expected_faults: u32,
    /// The buffer granted to the C client.
    for_cdemo: Option<BufferId>,
    /// Notifications from the C client so far.
    cdemo_stage: u32,
}

/// The mailbox shared with the C client: word 0 its buffer's id, word 1 ours.
fn mailbox() -> SharedMemoryRef<'static, [u64]> {
    let words: NonNull<[u64]> = memory_region_symbol!(mailbox: *mut [u64], n = 2);
    // SAFETY: system.xml maps the 4 KiB mailbox region read-write at this
    // address in this PD (setvar_vaddr), for the whole run; the C client
    // writes word 0 and reads word 1, each only between notifications.
    unsafe { SharedMemoryRef::new(words) }
}

fn fill(capbuf: &mut Capbuf, id: BufferId) {
    let mut words = capbuf.words_mut(id).expect("attached read-write");
    for i in 0..words.as_ptr().len() {
        words.as_mut_ptr().index(i).write(pattern(i));
    }
}

#[protection_domain]
fn init() -> Producer {
    let mut capbuf = capbuf_demo::connect(PD);
    let hello = *capbuf.hello();
    debug_println!("producer: memsrv protocol {:#x}, I am client {}", hello.version, hello.client_id);
    let pool = capbuf.pool_info(POOL).expect("pool 0");
    debug_println!("producer: pool 0 before: {} of {} bytes free", pool.free, pool.total);

    let shared = capbuf.alloc(64 * 1024, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc shared");
    if shared != SHARED {
        fail!(PD, "buffer {shared} is not the one the consumer attaches ({SHARED})");
    }
    let view = capbuf.attach(shared, Rights::ReadWrite).expect("attach shared");
    fill(&mut capbuf, shared);
    capbuf.grant(shared, clients::CONSUMER, Rights::ReadOnly).expect("grant consumer");
    debug_println!(
        "producer: buffer {shared} ({} bytes at {:#x}) filled, granted read-only to the consumer",
        view.size,
        view.vaddr
    );

    let doomed = capbuf.alloc(3 << 20, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc doomed");
    if doomed != DOOMED {
        fail!(PD, "buffer {doomed} is not the one the victim attaches ({DOOMED})");
    }
    capbuf.attach(doomed, Rights::ReadWrite).expect("attach doomed");
    fill(&mut capbuf, doomed);
    capbuf.grant(doomed, clients::VICTIM, Rights::ReadWrite).expect("grant victim");
    capbuf.detach(doomed).expect("detach doomed");
    debug_println!(
        "producer: buffer {doomed} (3 MiB: one 2 MiB page and 256 small ones) granted read-write to the victim"
    );
    Producer {
        capbuf,
        shared,
        doomed: Some(doomed),
        pool_free_at_start: pool.free,
        expected_faults: 0,
        for_cdemo: None,
        cdemo_stage: 0,
    }
}

impl Producer {
    /// The C client granted us its buffer: check its contents, leave our mark,
    /// then grant it one of ours, read-only.
    fn trade_with_cdemo(&mut self) {
        let theirs = BufferId::from_raw(mailbox().as_ptr().index(0).read());
        let view = self.capbuf.attach(theirs, Rights::ReadWrite).expect("attach the C client's buffer");
        let good = {
            let mut words = self.capbuf.words_mut(theirs).expect("read-write");
            let last = words.as_ptr().len() - 1;
            let good = words.as_ptr().index(last).read() == 0xc0de_0000_0000_0000 | last as u64;
            words.as_mut_ptr().index(0).write(MARK);
            good
        };
        self.capbuf.detach(theirs).expect("detach the C client's buffer");
        let ours = self.capbuf.alloc(16 * 1024, Align::PAGE, POOL, AllocFlags::NONE).expect("alloc for the C client");
        self.capbuf.attach(ours, Rights::ReadWrite).expect("attach");
        fill(&mut self.capbuf, ours);
        self.capbuf.detach(ours).expect("detach");
        self.capbuf.grant(ours, clients::CDEMO, Rights::ReadOnly).expect("grant the C client");
        mailbox().as_mut_ptr().index(1).write(ours.raw());
        self.for_cdemo = Some(ours);
        if good {
            debug_println!(
                "producer: the C client's buffer {theirs} ({} bytes) verified and marked; buffer {ours} granted read-only to it",
                view.size
            );
        } else {
            fail!(PD, "the C client's buffer {theirs} holds the wrong data");
        }
        CDEMO.notify();
    }

    fn finish(&mut self) {
        // The consumer's and the victim's faults, and the worker's life
        // cycle (reclaimed, restarted, waited); the hostile client's and the
        // C client's faults are stepped over by the supervisor and counted there.
        if self.expected_faults != 3 {
            fail!(PD, "heard of {} expected faults and worker life cycles, want 3", self.expected_faults);
            return;
        }
        self.capbuf.free(self.shared).expect("free shared");
        debug_println!("producer: freed buffer {} (the stopped consumer's attachment is revoked with it)", self.shared);
        let pool = self.capbuf.pool_info(POOL).expect("pool 0");
        debug_println!("producer: pool 0 after: {} of {} bytes free", pool.free, pool.total);
        let mut whole = pool.free == pool.total && pool.free == self.pool_free_at_start;
        // Every pool, as POOL_INFO sees it: all free, nothing lost, nothing in quarantine.
        for index in 0..self.capbuf.hello().pools {
            let pool = self.capbuf.pool_info(PoolId(index)).expect("pool");
            whole &= pool.free == pool.total && pool.lost == 0 && pool.quarantined == 0;
            debug_println!(
                "producer: pool {index} whole: free {} of {} bytes, lost {}, quarantined {}",
                pool.free,
                pool.total,
                pool.lost,
                pool.quarantined
            );
        }
        if whole {
            debug_println!("CAPBUF DEMO: ALL TESTS PASSED");
        } else {
            fail!(PD, "pools not whole again ({} free in pool 0 at start)", self.pool_free_at_start);
        }
    }
}

impl Handler for Producer {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        for channel in channels.iter() {
            if channel == VICTIM {
                if let Some(doomed) = self.doomed.take() {
                    self.capbuf.free(doomed).expect("free doomed");
                    debug_println!("producer: freed buffer {doomed} while the victim is attached to it");
                }
            } else if channel == SUPERVISOR {
                self.expected_faults += 1;
            } else if channel == CDEMO {
                self.cdemo_stage += 1;
                match (self.cdemo_stage, self.for_cdemo) {
                    (1, _) => self.trade_with_cdemo(),
                    (2, Some(ours)) => {
                        self.capbuf.ungrant(ours, clients::CDEMO).expect("withdraw the C client's grant");
                        debug_println!("producer: withdrew the C client's grant of buffer {ours} while it is attached");
                        CDEMO.notify();
                    }
                    (3, Some(ours)) => {
                        self.capbuf.free(ours).expect("free the buffer the C client had");
                        self.finish();
                    }
                    _ => fail!(PD, "the C client is out of step"),
                }
            } else {
                fail!(PD, "unexpected notification on channel {}", channel.index());
            }
        }
        Ok(())
    }
}
