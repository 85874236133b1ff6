//! Demo supervisor: parent of the consumer, the victim, the hostile client and the C client,
//! so their faults come here instead of stopping the system. A fault is
//! expected only where the demo provokes it, in capbuf's mapping window: a
//! write by the consumer, a read by the victim (both then stay suspended), a
//! read by the hostile client after it detached or by the C client after the
//! owner withdrew its grant (the probe instruction is skipped and the client
//! carries on). Anything else is reported as a failure.
#![no_std]
#![no_main]

use capbuf_demo::fail;
use capbuf_protocol::CLIENT_WINDOW;
use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

const PD: &str = "supervisor";
const PRODUCER: Channel = Channel::new(0);
const CONSUMER: usize = 0;
const VICTIM: usize = 1;
const HOSTILE: usize = 2;
const CDEMO: usize = 3;

struct Supervisor;

#[protection_domain]
fn init() -> Supervisor {
    debug_println!("supervisor: watching the consumer, the victim and the hostile client");
    Supervisor
}

/// The hostile client and the C client probe a mapping memsrv revoked with
/// one load instruction: step over it (4 bytes on AArch64) and let the
/// client go on, so it can report and give back what it holds.
fn skip_probe(child: Child) -> Option<MessageInfo> {
    let tcb = child.tcb();
    let skipped = tcb.tcb_read_all_registers(false).and_then(|mut registers| {
        *registers.pc_mut() += 4;
        tcb.tcb_write_all_registers(false, &mut registers)
    });
    match skipped {
        Ok(()) => {
            let what = if child.index() == HOSTILE {
                "the hostile client's read after DETACH"
            } else {
                "the C client's read after the owner's UNGRANT"
            };
            debug_println!("supervisor: expected fault: {what} was stopped by the kernel; load skipped");
            Some(MessageInfo::new(0, 0))
        }
        Err(e) => {
            fail!(PD, "cannot step the hostile client over its probe: {e:?}");
            None
        }
    }
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
                if CLIENT_WINDOW.contains(&address) && (child.index() == HOSTILE || child.index() == CDEMO) && !write {
                    return Ok(skip_probe(child));
                }
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
            fail!(PD, "cannot suspend child {}: {e:?}", child.index());
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
            fail!(PD, "unexpected fault");
        }
        Ok(None)
    }

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        fail!(PD, "unexpected notification {}", channels.display());
        Ok(())
    }
}
