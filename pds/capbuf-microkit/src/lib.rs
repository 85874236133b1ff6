//! capbuf for Rust Microkit protection domains.
//!
//! ```ignore
//! let mut capbuf = capbuf_microkit::connect(Channel::new(0))?;   // checks the protocol version
//! let id = capbuf.alloc(64 * 1024, 0, 0, 0)?;
//! capbuf.attach(id, Rights::ReadWrite)?;                           // one PPC, mapped
//! capbuf.words_mut(id).unwrap().as_mut_ptr().index(0).write(42);  // volatile
//! capbuf.grant(id, CONSUMER_ID, Rights::ReadOnly)?;
//! capbuf.free(id)?;                                                // revoked everywhere
//! ```
//!
//! The protocol logic lives in `capbuf-client` (host-tested); this crate is the
//! seL4 glue: the PPC, and volatile access to what memsrv mapped.
#![no_std]

use capbuf_protocol::MAX_MESSAGE_WORDS;
use core::ptr::NonNull;
use sel4_microkit::{Channel, MessageInfo};
use sel4_shared_memory::{access::ReadOnly, SharedMemoryRef};

pub use capbuf_client::{ClientError, RawReply, Sys, View};
pub use capbuf_protocol::{AllocFlags, BufferId, Error, InfoReply, PoolInfoReply};

/// The kernel side of the client library: one PPC channel to memsrv.
pub struct MicrokitSys {
    channel: Channel,
}

impl Sys for MicrokitSys {
    fn call(&mut self, label: u64, words: &[u64]) -> RawReply {
        sel4::with_ipc_buffer_mut(|ipc| ipc.msg_regs_mut()[..words.len()].copy_from_slice(words));
        let request = sel4::MessageInfo::new(label, 0, 0, words.len());
        let reply = self.channel.pp_call(MessageInfo::from_inner(request));
        let inner = reply.inner();
        let length = inner.length().min(MAX_MESSAGE_WORDS);
        let mut raw = RawReply {
            label: inner.label(),
            words: [0; MAX_MESSAGE_WORDS],
            length: inner.length(),
            caps: inner.extra_caps(),
        };
        sel4::with_ipc_buffer(|ipc| raw.words[..length].copy_from_slice(&ipc.msg_regs()[..length]));
        raw
    }
}

/// The client library as Rust protection domains use it.
pub type Capbuf = capbuf_client::Client<MicrokitSys>;

/// Greet memsrv on PPC channel `channel` and check its protocol version.
pub fn connect(channel: Channel) -> Result<Capbuf, ClientError> {
    capbuf_client::Client::new(MicrokitSys { channel })
}

/// Volatile access to the memory of attached buffers, as 64-bit words.
///
/// Another protection domain or a device may write the memory at any time, so
/// every access is a volatile read or write. The view borrows the client, so
/// the buffer cannot be detached or freed through it, nor its window reused,
/// while the view lives. If the owner frees the buffer or withdraws the grant
/// meanwhile, the mapping is gone and an access faults: it never reaches memory
/// that was reused.
pub trait Memory {
    /// Read-only view of attached buffer `id`.
    fn words(&self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64], ReadOnly>>;
    /// Writable view of attached buffer `id`, or `None` if the attachment is read-only.
    fn words_mut(&mut self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64]>>;
}

fn shared(view: &View) -> SharedMemoryRef<'static, [u64]> {
    let pointer = core::ptr::slice_from_raw_parts_mut(view.vaddr as *mut u64, (view.size / 8) as usize);
    // SAFETY: memsrv mapped `view.size` bytes at `view.vaddr` in this
    // protection domain's VSpace, inside capbuf's window, which nothing else
    // maps; callers narrow the lifetime to a borrow of the client, which
    // keeps the window slot reserved; all access is volatile.
    unsafe { SharedMemoryRef::new(NonNull::new(pointer).expect("the window does not start at 0")) }
}

impl Memory for Capbuf {
    fn words(&self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64], ReadOnly>> {
        self.view(id).map(|view| shared(&view).read_only())
    }

    fn words_mut(&mut self, id: BufferId) -> Option<SharedMemoryRef<'_, [u64]>> {
        self.view(id).filter(|view| view.rights.can_write()).map(|view| shared(&view))
    }
}
