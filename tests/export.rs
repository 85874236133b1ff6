//! EXPORT: frame capabilities for clients `system.xml` gives `frame_caps`,
//! and the weaker guarantee that comes with them, on the seL4 model.

mod common;

use capbuf_model::Fault;
use capbuf_protocol::{BufferId, Error, ExportReply, Op, Reply, Rights};
use capbuf_server::{CapRef, MapAttributes};
use common::*;

const RO: u64 = Rights::ReadOnly as u64;
const RW: u64 = Rights::ReadWrite as u64;
/// Channel of client index 1, the one `frame_caps` client of the test configuration.
const FRAME_CAPS: u64 = 1;
/// A root CNode slot of the client library's receive range.
const RECEIVE: u64 = 32;

fn request(world: &World, channel: u64, op: Op, words: &[u64]) -> Result<Reply, Error> {
    world.borrow_mut().handle(channel, op as u64, words, 0).result
}

fn alloc(world: &World, channel: u64, size: u64) -> BufferId {
    match request(world, channel, Op::Alloc, &[size, 0, 0, 0]) {
        Ok(Reply::Alloc(reply)) => reply.id,
        other => panic!("{other:?}"),
    }
}

/// EXPORT by client index 1, its CNode received into root slot [`RECEIVE`]
/// as the kernel's capability transfer would.
fn export(world: &World, id: BufferId, rights: u64) -> ExportReply {
    let outcome = world.borrow_mut().handle(FRAME_CAPS, Op::Export as u64, &[id.raw(), rights], 0);
    let Ok(Reply::Export(reply)) = outcome.result else { panic!("{outcome:?}") };
    let slot = outcome.send.expect("EXPORT sends its CNode");
    world.borrow_mut().kernel_mut().transfer_to_client(1, RECEIVE, CapRef::Table(slot)).unwrap();
    reply
}

#[test]
fn only_frame_caps_clients_may_export_and_only_what_they_may_attach() {
    let w = world();
    let id = alloc(&w, 0, 4096);
    // Client 0 has no frame_caps: the same answer whatever the id.
    for raw in [id.raw(), 0, u64::MAX >> 1] {
        assert_eq!(request(&w, 0, Op::Export, &[raw, RO]), Err(Error::NotExportable));
    }
    assert_eq!(request(&w, FRAME_CAPS, Op::Export, &[id.raw(), RO]), Err(Error::UnknownBuffer), "not granted");
    request(&w, 0, Op::Grant, &[id.raw(), 11, RO]).unwrap();
    assert_eq!(request(&w, FRAME_CAPS, Op::Export, &[id.raw(), RW]), Err(Error::RightsEscalation));
    assert_eq!(request(&w, FRAME_CAPS, Op::Unexport, &[id.raw()]), Err(Error::NotAttached));
    let before = w.borrow().usage(1).attachments;
    let reply = export(&w, id, RO);
    assert_eq!((reply.large, reply.small), (0, 1));
    assert_eq!(w.borrow().usage(1).attachments, before + 1, "an export counts as an attachment");
    assert_eq!(request(&w, FRAME_CAPS, Op::Export, &[id.raw(), RO]), Err(Error::AlreadyAttached));
    assert_eq!(w.borrow().kernel().client_get_address(1, RECEIVE << 58), Ok(0x4000_0000), "frame 0");
    request(&w, FRAME_CAPS, Op::Unexport, &[id.raw()]).unwrap();
    assert_eq!(w.borrow().usage(1).attachments, before);
    assert!(w.borrow().kernel().client_reachable_frames(1).is_empty(), "the CNode and its copies are gone");
    request(&w, 0, Op::Free, &[id.raw()]).unwrap();
    assert_pristine(&w);
}

#[test]
fn a_frame_copied_out_of_an_export_survives_unexport_and_ungrant_but_not_free() {
    let w = world();
    let id = alloc(&w, 0, 2 << 20);
    request(&w, 0, Op::Grant, &[id.raw(), 11, RW]).unwrap();
    let reply = export(&w, id, RW);
    assert_eq!((reply.large, reply.small), (1, 0));
    // The client copies frame 0 out into a root slot of its own (through its root CNode capability).
    let own = 40u64;
    w.borrow_mut().kernel_mut().client_copy_to_root(1, own, RECEIVE << 58, Rights::ReadWrite).unwrap();
    request(&w, FRAME_CAPS, Op::Unexport, &[id.raw()]).unwrap();
    request(&w, 0, Op::Ungrant, &[id.raw(), 11]).unwrap();
    // The weaker guarantee: the copy survives both and still maps the buffer.
    let vaddr = 0x1000_0000;
    let attributes = MapAttributes { rights: Rights::ReadWrite, cached: true };
    {
        let mut server = w.borrow_mut();
        let model = server.kernel_mut();
        assert_eq!(model.client_reachable_frames(1).len(), 1, "the copied-out frame capability survives");
        model.client_map_frame(1, own << 58, vaddr, attributes).unwrap();
        model.client_write(1, vaddr, 7).unwrap();
    }
    // FREE revokes the frames' origin: the copy and its mapping die.
    request(&w, 0, Op::Free, &[id.raw()]).unwrap();
    let server = w.borrow();
    assert!(server.kernel().client_reachable_frames(1).is_empty());
    assert!(server.kernel().client_mappings(1).is_empty());
    assert_eq!(server.kernel().client_read(1, vaddr), Err(Fault { vaddr, write: false }));
}

#[test]
fn ungrant_lowered_grant_and_free_revoke_the_export() {
    let w = world();
    let id = alloc(&w, 0, 4096);
    request(&w, 0, Op::Grant, &[id.raw(), 11, RW]).unwrap();
    export(&w, id, RW);
    request(&w, 0, Op::Grant, &[id.raw(), 11, RO]).unwrap();
    assert!(w.borrow().kernel().client_reachable_frames(1).is_empty(), "lowered below the export's rights");
    assert_eq!(w.borrow().usage(1).attachments, 0, "no hole: memsrv mapped nothing");
    let outcome = w.borrow_mut().handle(FRAME_CAPS, Op::Export as u64, &[id.raw(), RO], 0);
    assert!(outcome.send.is_some());
    request(&w, 0, Op::Free, &[id.raw()]).unwrap();
    assert_eq!(w.borrow().usage(1).attachments, 0);
    assert_pristine(&w);
}

#[test]
fn the_client_library_receives_exports_into_its_receive_slots() {
    use capbuf_client::ClientError;
    use capbuf_protocol::{Align, AllocFlags, ClientId, PoolId};
    let w = world();
    let (mut owner, mut exporter) = (client(&w, 0), client(&w, 1));
    assert_eq!(
        owner.export(BufferId::new(1, 1), Rights::ReadOnly),
        Err(ClientError::Server(Error::NotExportable)),
        "a client without frame_caps"
    );
    let id = owner.alloc(3 << 20, Align::PAGE, PoolId(0), AllocFlags::NONE).unwrap();
    owner.grant(id, ClientId(11), Rights::ReadWrite).unwrap();
    let export = exporter.export(id, Rights::ReadWrite).unwrap();
    assert_eq!((export.slot, export.large, export.small), (32, 1, 256));
    assert_eq!(exporter.export(id, Rights::ReadWrite), Err(ClientError::Server(Error::AlreadyAttached)));
    for (index, physical_address) in [(0, 0x4000_0000), (1, 0x4020_0000), (256, 0x402f_f000)] {
        let cptr = export.frame(index).unwrap();
        assert_eq!(w.borrow().kernel().client_get_address(1, cptr), Ok(physical_address), "frame {index}");
    }
    assert_eq!(export.frame(257), None);
    // Revoked by the owner's UNGRANT: the library's UNEXPORT frees the slot all the same.
    owner.ungrant(id, ClientId(11)).unwrap();
    assert_eq!(exporter.unexport(id), Err(ClientError::Server(Error::UnknownBuffer)));
    owner.grant(id, ClientId(11), Rights::ReadOnly).unwrap();
    assert_eq!(exporter.export(id, Rights::ReadOnly).map(|e| e.slot), Ok(32), "the slot again");
    exporter.unexport(id).unwrap();
    owner.free(id).unwrap();
    assert_pristine(&w);
}
