//! The capbuf client library, minus the kernel.
//!
//! [`Client`] makes typed calls to memsrv, checks the protocol version first,
//! picks a root CNode slot to receive each attachment's CNode into and a free
//! run of 2 MiB slots in the mapping window ([`capbuf_protocol::CLIENT_WINDOW`]),
//! and maps the frames it receives there: large frames directly, small
//! frames through the page table memsrv sends along. Everything it asks of
//! the kernel goes through [`Sys`], which the `capbuf-microkit` crate
//! implements with seL4 calls and the tests with the host model.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use capbuf_protocol::{
    AllocFlags, AttachReply, BufferId, Error, HelloReply, InfoReply, Op, PoolInfoReply, Reply, Request, Rights,
    CLIENT_RECEIVE_SLOTS, CLIENT_WINDOW, LARGE_PAGE_BITS, MAX_MESSAGE_WORDS, PAGE_BITS, PROTOCOL_VERSION,
    ROOT_SLOT_SHIFT,
};

/// A raw reply: label, message registers and the number of capabilities received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawReply {
    /// Reply label: 0 or an error code.
    pub label: u64,
    /// Message registers; `length` of them are valid.
    pub words: [u64; MAX_MESSAGE_WORDS],
    /// Number of valid registers.
    pub length: usize,
    /// Capabilities received (0 or 1).
    pub caps: usize,
}

/// The kernel operations the client library needs.
pub trait Sys {
    /// Make a PPC to memsrv. If `receive_slot` is given, a capability in the
    /// reply lands in that slot of the caller's root CNode
    /// (`seL4_SetCapReceivePath(CLIENT_ROOT_CPTR, slot, ROOT_CNODE_BITS)`).
    fn call(&mut self, label: u64, words: &[u64], receive_slot: Option<u64>) -> RawReply;
    /// Corresponds to `seL4_ARM_PageTable_Map` into the caller's VSpace.
    fn map_page_table(&mut self, cptr: u64, vaddr: u64) -> Result<(), u64>;
    /// Corresponds to `seL4_ARM_Page_Map` into the caller's VSpace.
    fn map_frame(&mut self, cptr: u64, vaddr: u64, rights: Rights, cached: bool) -> Result<(), u64>;
    /// Corresponds to `seL4_CNode_Delete` of a slot of the caller's root CNode.
    fn delete_root_slot(&mut self, slot: u64);
}

/// Why a client call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// memsrv refused (or the reply was malformed).
    Server(Error),
    /// memsrv speaks another major protocol version.
    Version(u64),
    /// Every receive slot holds an attachment.
    NoReceiveSlot,
    /// No free run of the mapping window is large enough.
    WindowFull,
    /// The kernel refused to map what memsrv sent (a seL4 error number).
    Map(u64),
    /// The library tracks as many attachments as it can.
    TooManyAttachments,
}

impl From<Error> for ClientError {
    fn from(error: Error) -> Self {
        ClientError::Server(error)
    }
}

/// A mapped attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// The buffer.
    pub id: BufferId,
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Rights of the mapping.
    pub rights: Rights,
    /// The buffer's flags (uncached buffers are mapped uncached).
    pub flags: AllocFlags,
}

const LARGE: u64 = 1 << LARGE_PAGE_BITS;
const WINDOW_SLOTS: usize = ((CLIENT_WINDOW.end - CLIENT_WINDOW.start) / LARGE) as usize;
const RECEIVE_SLOTS: usize = (CLIENT_RECEIVE_SLOTS.end - CLIENT_RECEIVE_SLOTS.start) as usize;

#[derive(Clone, Copy, Debug)]
struct Held {
    view: View,
    receive_slot: u64,
    first_window_slot: usize,
    window_slots: usize,
}

/// The client library's state for one protection domain.
pub struct Client<S> {
    sys: S,
    hello: HelloReply,
    window: [bool; WINDOW_SLOTS],
    held: [Option<Held>; RECEIVE_SLOTS],
}

/// Capability pointer of slot `index` of the CNode received into root slot `slot`.
pub const fn cptr(slot: u64, index: u64) -> u64 {
    (slot << ROOT_SLOT_SHIFT) | index
}

impl<S: Sys> Client<S> {
    /// Greet memsrv and check its protocol version.
    pub fn new(mut sys: S) -> Result<Self, ClientError> {
        let hello = match call(&mut sys, Request::Hello, None)? {
            (Reply::Hello(hello), _) => hello,
            _ => return Err(ClientError::Server(Error::WrongLength)),
        };
        if capbuf_protocol::version_major(hello.version) != capbuf_protocol::version_major(PROTOCOL_VERSION) {
            return Err(ClientError::Version(hello.version));
        }
        Ok(Client { sys, hello, window: [false; WINDOW_SLOTS], held: [None; RECEIVE_SLOTS] })
    }

    /// What memsrv said at start: version, this client's id and quotas.
    pub fn hello(&self) -> &HelloReply {
        &self.hello
    }

    /// The kernel interface, for callers that need it directly.
    pub fn sys(&mut self) -> &mut S {
        &mut self.sys
    }

    /// Allocate a zeroed buffer of at least `size` bytes (rounded up to pages),
    /// aligned to `2^align_bits` bytes (0: page), from pool `pool`.
    pub fn alloc(&mut self, size: u64, align_bits: u64, pool: u64, flags: u64) -> Result<BufferId, ClientError> {
        match call(&mut self.sys, Request::Alloc { size, align_bits, pool, flags }, None)? {
            (Reply::Alloc(id), _) => Ok(id),
            _ => Err(ClientError::Server(Error::WrongLength)),
        }
    }

    /// Let client `grantee` attach to buffer `id` with at most `rights`.
    pub fn grant(&mut self, id: BufferId, grantee: u64, rights: Rights) -> Result<(), ClientError> {
        call(&mut self.sys, Request::Grant { id, grantee, rights: rights as u64 }, None).map(|_| ())
    }

    /// Withdraw a grant; the grantee's attachment, if any, is revoked.
    pub fn ungrant(&mut self, id: BufferId, grantee: u64) -> Result<(), ClientError> {
        call(&mut self.sys, Request::Ungrant { id, grantee }, None).map(|_| ())
    }

    /// Size, physical address (if this client may see it), rights, reference count.
    pub fn info(&mut self, id: BufferId) -> Result<InfoReply, ClientError> {
        match call(&mut self.sys, Request::Info { id }, None)? {
            (Reply::Info(info), _) => Ok(info),
            _ => Err(ClientError::Server(Error::WrongLength)),
        }
    }

    /// Total, free and largest free block of pool `pool`.
    pub fn pool_info(&mut self, pool: u64) -> Result<PoolInfoReply, ClientError> {
        match call(&mut self.sys, Request::PoolInfo { pool }, None)? {
            (Reply::PoolInfo(info), _) => Ok(info),
            _ => Err(ClientError::Server(Error::WrongLength)),
        }
    }

    /// The view of an attached buffer, if this client holds one.
    pub fn view(&self, id: BufferId) -> Option<View> {
        self.held.iter().flatten().find(|h| h.view.id == id).map(|h| h.view)
    }

    /// Attach to buffer `id` with `rights` and map it. One PPC whatever the size.
    pub fn attach(&mut self, id: BufferId, rights: Rights) -> Result<View, ClientError> {
        if self.view(id).is_some() {
            return Err(ClientError::Server(Error::AlreadyAttached));
        }
        let entry = self.held.iter().position(Option::is_none).ok_or(ClientError::TooManyAttachments)?;
        let receive_slot = (0..RECEIVE_SLOTS as u64)
            .map(|i| CLIENT_RECEIVE_SLOTS.start + i)
            .find(|slot| self.held.iter().flatten().all(|h| h.receive_slot != *slot))
            .ok_or(ClientError::NoReceiveSlot)?;
        // A slot memsrv revoked is empty; one left over from a failed transfer is cleared.
        self.sys.delete_root_slot(receive_slot);
        let reply = match call(&mut self.sys, Request::Attach { id, rights: rights as u64 }, Some(receive_slot)) {
            Ok((Reply::Attach(reply), _)) => reply,
            // memsrv attached us but the capability did not arrive (or the
            // reply was malformed): give the attachment back.
            Ok(_) | Err(ClientError::Server(Error::UnexpectedCaps | Error::WrongLength)) => {
                self.undo_attach(id, receive_slot);
                return Err(ClientError::Server(Error::UnexpectedCaps));
            }
            Err(error) => return Err(error),
        };
        let window_slots = (reply.large_frames + reply.page_tables) as usize;
        let Some(first) = self.find_window(window_slots) else {
            self.undo_attach(id, receive_slot);
            return Err(ClientError::WindowFull);
        };
        let vaddr = CLIENT_WINDOW.start + first as u64 * LARGE;
        if let Err(error) = self.map(receive_slot, vaddr, &reply) {
            self.undo_attach(id, receive_slot);
            return Err(ClientError::Map(error));
        }
        for slot in &mut self.window[first..first + window_slots] {
            *slot = true;
        }
        let view = View { id, vaddr, size: reply.size, rights: reply.rights, flags: reply.flags };
        self.held[entry] = Some(Held { view, receive_slot, first_window_slot: first, window_slots });
        Ok(view)
    }

    fn find_window(&self, slots: usize) -> Option<usize> {
        if slots == 0 || slots > WINDOW_SLOTS {
            return None;
        }
        (0..=WINDOW_SLOTS - slots).find(|&start| self.window[start..start + slots].iter().all(|used| !used))
    }

    fn map(&mut self, slot: u64, vaddr: u64, reply: &AttachReply) -> Result<(), u64> {
        let cached = !reply.flags.uncached();
        for i in 0..reply.large_frames {
            self.sys.map_frame(cptr(slot, i), vaddr + i * LARGE, reply.rights, cached)?;
        }
        if reply.small_frames > 0 {
            let base = vaddr + reply.large_frames * LARGE;
            let table = reply.large_frames + reply.small_frames;
            self.sys.map_page_table(cptr(slot, table), base)?;
            for j in 0..reply.small_frames {
                let frame = cptr(slot, reply.large_frames + j);
                self.sys.map_frame(frame, base + (j << PAGE_BITS), reply.rights, cached)?;
            }
        }
        Ok(())
    }

    fn undo_attach(&mut self, id: BufferId, receive_slot: u64) {
        // Detaching revokes the CNode and whatever got mapped from it.
        let _ = call(&mut self.sys, Request::Detach { id }, None);
        self.sys.delete_root_slot(receive_slot);
    }

    fn forget(&mut self, id: BufferId) -> Option<Held> {
        let entry = self.held.iter().position(|h| h.is_some_and(|h| h.view.id == id))?;
        let held = self.held[entry].take()?;
        for slot in &mut self.window[held.first_window_slot..held.first_window_slot + held.window_slots] {
            *slot = false;
        }
        Some(held)
    }

    /// Detach from buffer `id`: memsrv revokes the attachment, which unmaps it.
    /// If the owner already freed the buffer ([`Error::StaleBuffer`]), revoked
    /// this client's attachment by lowering its grant ([`Error::NotAttached`])
    /// or withdrew the grant ([`Error::UnknownBuffer`]: the client has no right
    /// to the buffer any more), memsrv says so and the library still releases
    /// its own bookkeeping.
    pub fn detach(&mut self, id: BufferId) -> Result<(), ClientError> {
        let result = call(&mut self.sys, Request::Detach { id }, None).map(|_| ());
        match result {
            Ok(()) | Err(ClientError::Server(Error::StaleBuffer | Error::NotAttached | Error::UnknownBuffer)) => {
                if let Some(held) = self.forget(id) {
                    self.sys.delete_root_slot(held.receive_slot);
                }
                result
            }
            Err(error) => Err(error),
        }
    }

    /// Free buffer `id` (owner only). Every attachment, this client's included, is revoked.
    pub fn free(&mut self, id: BufferId) -> Result<(), ClientError> {
        call(&mut self.sys, Request::Free { id }, None)?;
        if let Some(held) = self.forget(id) {
            self.sys.delete_root_slot(held.receive_slot);
        }
        Ok(())
    }
}

fn call<S: Sys>(sys: &mut S, request: Request, receive_slot: Option<u64>) -> Result<(Reply, usize), ClientError> {
    let mut words = [0; MAX_MESSAGE_WORDS];
    let (label, length) = request.encode(&mut words);
    let op: Op = request.op();
    let receive = if op.reply_caps() > 0 { receive_slot } else { None };
    let raw = sys.call(label, &words[..length], receive);
    let reply = Reply::decode(op, raw.label, &raw.words[..raw.length.min(MAX_MESSAGE_WORDS)], raw.caps)?;
    Ok((reply, raw.caps))
}
