//! Demo victim: attaches a buffer granted read-write, uses it, asks the
//! producer to free it, then reads it again: the mapping is gone, so the read
//! faults instead of seeing reused memory.
#![no_std]
#![no_main]

use capbuf_microkit::{BufferId, Memory};
use capbuf_protocol::Rights;
use sel4_microkit::{debug_println, protection_domain, Channel, NullHandler};

const MEMSRV: Channel = Channel::new(0);
const PRODUCER: Channel = Channel::new(1);
/// The producer's second buffer: index 1, generation 1.
const DOOMED: BufferId = BufferId::new(1, 1);

#[protection_domain]
fn init() -> NullHandler {
    let mut capbuf = capbuf_microkit::connect(MEMSRV).expect("memsrv");
    let view = capbuf.attach(DOOMED, Rights::ReadWrite).expect("attach");
    let mut memory = capbuf.words_mut(DOOMED).expect("attached read-write");
    let last = memory.as_ptr().len() - 1;
    let good = memory.as_ptr().index(0).read() == 0xcafe_0000_0000_0000
        && memory.as_ptr().index(last).read() == 0xcafe_0000_0000_0000 | last as u64;
    memory.as_mut_ptr().index(last).write(7);
    if good {
        debug_println!("victim: attached {} bytes at {:#x}, contents verified, wrote to it", view.size, view.vaddr);
    } else {
        debug_println!("victim: FAIL: contents wrong");
    }
    PRODUCER.notify();
    debug_println!("victim: the producer has freed the buffer; reading it again must fault");
    let value = memory.as_ptr().index(last).read();
    debug_println!("victim: FAIL: read {value:#x} from a freed buffer");
    NullHandler::new()
}
