//! Demo supervisor: parent of the consumer and the victim, so their faults come
//! here instead of stopping the system. A fault is expected only where the
//! demo provokes it: a write by the consumer, a read by the victim, both in
//! capbuf's mapping window. Anything else is reported as a failure.
#![no_std]
#![no_main]

use capbuf_protocol::CLIENT_WINDOW;
use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

const PRODUCER: Channel = Channel::new(0);
const CONSUMER: usize = 0;
const VICTIM: usize = 1;

struct Supervisor;

#[protection_domain]
fn init() -> Supervisor {
    debug_println!("supervisor: watching the consumer and the victim");
    Supervisor
}

impl Handler for Supervisor {
    type Error = Infallible;

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        let expected = match msg_info.fault() {
            sel4::Fault::VmFault(fault) => {
                let address = fault.addr();
                // ESR bit 6 (WnR) says whether a data abort was a write.
                let write = fault.fsr() & (1 << 6) != 0;
                let what = if write { "write" } else { "read" };
                debug_println!(
                    "supervisor: child {} {what} fault at {address:#x} (pc {:#x})",
                    child.index(),
                    fault.ip()
                );
                CLIENT_WINDOW.contains(&address)
                    && ((child.index() == CONSUMER && write) || (child.index() == VICTIM && !write))
            }
            other => {
                debug_println!("supervisor: child {} fault {other:?}", child.index());
                false
            }
        };
        // Suspend the child: it stays stopped, and its pending fault reply is
        // cancelled, so the event loop's next receive starts clean.
        if let Err(e) = child.tcb().tcb_suspend() {
            debug_println!("supervisor: FAIL: cannot suspend child {}: {e:?}", child.index());
        }
        if expected {
            let name = if child.index() == CONSUMER {
                "consumer's write to a read-only buffer"
            } else {
                "victim's read of a freed buffer"
            };
            debug_println!("supervisor: expected fault: the {name} was stopped by the kernel; child suspended");
            PRODUCER.notify();
        } else {
            debug_println!("supervisor: FAIL: unexpected fault");
        }
        Ok(None)
    }

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        debug_println!("supervisor: FAIL: unexpected notification {}", channels.display());
        Ok(())
    }
}
