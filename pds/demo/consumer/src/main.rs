//! Demo consumer: attaches the producer's buffer read-only, checks its
//! contents and info, detaches, attaches again and then tries to write, which
//! must fault (its supervisor reports the fault; memsrv keeps serving).
#![no_std]
#![no_main]

use capbuf_demo::{fail, pattern, SHARED};
use capbuf_microkit::{ClientError, Error, Memory, Rights};
use capbuf_protocol::PADDR_HIDDEN;
use sel4_microkit::{debug_println, protection_domain, NullHandler};

const PD: &str = "consumer";

#[protection_domain]
fn init() -> NullHandler {
    let mut capbuf = capbuf_demo::connect(PD);
    match capbuf.attach(SHARED, Rights::ReadWrite) {
        Err(ClientError::Server(Error::RightsEscalation)) => {
            debug_println!("consumer: read-write attach refused (RIGHTS_ESCALATION), as it must be")
        }
        other => fail!(PD, "read-write attach gave {other:?}"),
    }
    let view = capbuf.attach(SHARED, Rights::ReadOnly).expect("attach read-only");
    let memory = capbuf.words(SHARED).expect("attached");
    let good = (0..memory.as_ptr().len()).all(|i| memory.as_ptr().index(i).read() == pattern(i));
    let info = capbuf.info(SHARED).expect("info");
    if good && info.rights == Rights::ReadOnly && info.attachments == 2 && info.physical_address == PADDR_HIDDEN {
        debug_println!(
            "consumer: verified {} bytes at {:#x}; rights read-only, 2 attachments, physical address hidden",
            view.size,
            view.vaddr
        );
    } else {
        fail!(PD, "contents ok={good}, info {info:?}");
    }
    capbuf.detach(SHARED).expect("detach");
    let view = capbuf.attach(SHARED, Rights::ReadOnly).expect("attach again");
    debug_println!("consumer: writing to the read-only buffer at {:#x}: this must fault", view.vaddr);
    // SAFETY: deliberately writes through a read-only mapping to show the
    // kernel refuses it; the write faults and this thread never resumes.
    unsafe { core::ptr::write_volatile(view.vaddr as *mut u64, 1) };
    fail!(PD, "the write to a read-only buffer went through");
    NullHandler::new()
}
