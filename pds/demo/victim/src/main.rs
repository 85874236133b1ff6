//! Demo victim: attaches a buffer granted read-write, uses it, asks the
//! producer to free it, then reads it again: the mapping is gone, so the read
//! faults instead of seeing reused memory.
#![no_std]
#![no_main]

use capbuf_demo::{fail, pattern, DOOMED};
use capbuf_microkit::{Memory, Rights};
use sel4_microkit::{debug_println, protection_domain, Channel, NullHandler};

const PD: &str = "victim";
const PRODUCER: Channel = Channel::new(1);

#[protection_domain]
fn init() -> NullHandler {
    let mut capbuf = capbuf_demo::connect(PD);
    let view = capbuf.attach(DOOMED, Rights::ReadWrite).expect("attach");
    let mut memory = capbuf.words_mut(DOOMED).expect("attached read-write");
    let last = memory.as_ptr().len() - 1;
    let good = memory.as_ptr().index(0).read() == pattern(0) && memory.as_ptr().index(last).read() == pattern(last);
    memory.as_mut_ptr().index(last).write(7);
    if good {
        debug_println!("victim: attached {} bytes at {:#x}, contents verified, wrote to it", view.size, view.vaddr);
    } else {
        fail!(PD, "contents wrong");
    }
    PRODUCER.notify();
    debug_println!("victim: the producer has freed the buffer; reading it again must fault");
    let value = memory.as_ptr().index(last).read();
    fail!(PD, "read {value:#x} from a freed buffer");
    NullHandler::new()
}
