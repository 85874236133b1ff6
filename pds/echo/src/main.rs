//! A passive protection domain that answers every PPC with an empty reply:
//! the floor a capbuf request is compared against in the benchmark. A PPC
//! with label 1 gets a reply carrying one capability (a copy of echo's own
//! VSpace capability), the floor of a reply that leaves the fastpath as
//! EXPORT's does.
#![no_std]
#![no_main]

use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

/// The label that asks for a reply carrying a capability.
const CAP_LABEL: u64 = 1;
/// Microkit-CNode slot of a protection domain's own VSpace (`PD_VSPACE_CAP_IDX`).
const VSPACE_CPTR: u64 = 3;

struct Echo;

#[protection_domain]
fn init() -> Echo {
    Echo
}

impl Handler for Echo {
    type Error = Infallible;

    fn protected(&mut self, _channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        if msg_info.label() != CAP_LABEL {
            return Ok(MessageInfo::new(0, 0));
        }
        sel4::with_ipc_buffer_mut(|ipc| ipc.caps_or_badges_mut()[0] = VSPACE_CPTR);
        Ok(MessageInfo::from_inner(sel4::MessageInfo::new(0, 0, 1, 0)))
    }

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        debug_println!("echo: ignoring notification {}", channels.display());
        Ok(())
    }

    fn fault(&mut self, child: Child, _msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        debug_println!("echo: ignoring fault of child {}", child.index());
        Ok(None)
    }
}
