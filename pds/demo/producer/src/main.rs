//! Demo producer: allocates buffers, fills them, shares them read-only with the
//! consumer and read-write with the victim, frees the victim's buffer under it
//! when asked, and at the end frees everything and checks the pool is whole.
#![no_std]
#![no_main]

use capbuf_microkit::{BufferId, Capbuf, Memory};
use capbuf_protocol::Rights;
use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Handler, Infallible};

const MEMSRV: Channel = Channel::new(0);
const VICTIM: Channel = Channel::new(1);
const DRIVER: Channel = Channel::new(2);
const SUPERVISOR: Channel = Channel::new(3);
const CONSUMER_ID: u64 = 2;
const VICTIM_ID: u64 = 3;
/// The pattern word `i` of a shared buffer holds; consumer and victim check it.
pub const fn pattern(i: usize) -> u64 {
    0xcafe_0000_0000_0000 | i as u64
}

struct Producer {
    capbuf: Capbuf,
    shared: BufferId,
    doomed: Option<BufferId>,
    pool_free_at_start: u64,
    expected_faults: u32,
}

fn fill(capbuf: &mut Capbuf, id: BufferId) {
    let mut words = capbuf.words_mut(id).expect("attached read-write");
    for i in 0..words.as_ptr().len() {
        words.as_mut_ptr().index(i).write(pattern(i));
    }
}

#[protection_domain]
fn init() -> Producer {
    let mut capbuf = match capbuf_microkit::connect(MEMSRV) {
        Ok(c) => c,
        Err(e) => panic!("producer: cannot reach memsrv: {e:?}"),
    };
    let hello = *capbuf.hello();
    debug_println!("producer: memsrv protocol {:#x}, I am client {}", hello.version, hello.client_id);
    let pool = capbuf.pool_info(0).expect("pool 0");
    debug_println!("producer: pool 0 before: {} of {} bytes free", pool.free, pool.total);

    let shared = capbuf.alloc(64 * 1024, 0, 0, 0).expect("alloc shared");
    let view = capbuf.attach(shared, Rights::ReadWrite).expect("attach shared");
    fill(&mut capbuf, shared);
    capbuf.grant(shared, CONSUMER_ID, Rights::ReadOnly).expect("grant consumer");
    debug_println!(
        "producer: buffer {shared} ({} bytes at {:#x}) filled, granted read-only to the consumer",
        view.size,
        view.vaddr
    );

    let doomed = capbuf.alloc(3 << 20, 0, 0, 0).expect("alloc doomed");
    capbuf.attach(doomed, Rights::ReadWrite).expect("attach doomed");
    fill(&mut capbuf, doomed);
    capbuf.grant(doomed, VICTIM_ID, Rights::ReadWrite).expect("grant victim");
    capbuf.detach(doomed).expect("detach doomed");
    debug_println!(
        "producer: buffer {doomed} (3 MiB: one 2 MiB page and 256 small ones) granted read-write to the victim"
    );
    Producer { capbuf, shared, doomed: Some(doomed), pool_free_at_start: pool.free, expected_faults: 0 }
}

impl Producer {
    fn finish(&mut self) {
        if self.expected_faults != 2 {
            debug_println!("producer: FAIL: saw {} expected faults, want 2", self.expected_faults);
            return;
        }
        self.capbuf.free(self.shared).expect("free shared");
        debug_println!("producer: freed buffer {} (the stopped consumer's attachment is revoked with it)", self.shared);
        let pool = self.capbuf.pool_info(0).expect("pool 0");
        debug_println!("producer: pool 0 after: {} of {} bytes free", pool.free, pool.total);
        if pool.free == pool.total && pool.free == self.pool_free_at_start {
            debug_println!("CAPBUF DEMO: ALL TESTS PASSED");
        } else {
            debug_println!("producer: FAIL: pool not whole again ({} free at start)", self.pool_free_at_start);
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
            } else if channel == DRIVER {
                self.finish();
            } else {
                debug_println!("producer: FAIL: unexpected notification on channel {}", channel.index());
            }
        }
        Ok(())
    }
}
