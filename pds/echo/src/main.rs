//! A passive protection domain that answers every PPC with an empty reply:
//! the floor a capbuf request is compared against in the benchmark. A PPC
//! with label 1 gets a reply carrying one capability (a copy of echo's own
//! VSpace capability), the floor of a reply that leaves the fastpath as
//! EXPORT's does. A PPC with label 2 gets a reply of as many message
//! registers as its first says: where the kernel's fastpath ends.
#![no_std]
#![no_main]

use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

/// The label that asks for a reply carrying a capability.
const CAP_LABEL: u64 = 1;
/// The label that asks for a reply of as many message registers as the
/// request's first one says (at most `MAX_WORDS`).
const WORDS_LABEL: u64 = 2;
const MAX_WORDS: u64 = 8;
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
        if msg_info.label() == WORDS_LABEL {
            let words = sel4::with_ipc_buffer(|ipc| ipc.msg_regs()[0]).min(MAX_WORDS);
            return Ok(MessageInfo::new(0, words as usize));
        }
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
