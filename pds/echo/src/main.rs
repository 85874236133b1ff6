//! A passive protection domain that answers every PPC with an empty reply:
//! the floor a capbuf request is compared against in the benchmark.
#![no_std]
#![no_main]

use sel4_microkit::{debug_println, protection_domain, Channel, ChannelSet, Child, Handler, Infallible, MessageInfo};

struct Echo;

#[protection_domain]
fn init() -> Echo {
    Echo
}

impl Handler for Echo {
    type Error = Infallible;

    fn protected(&mut self, _channel: Channel, _msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        Ok(MessageInfo::new(0, 0))
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
