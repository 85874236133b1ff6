//! The capbuf client library, minus the kernel.
//!
//! [`Client`] makes typed calls to memsrv, checks the protocol version first
//! and keeps track of this client's attachments. memsrv maps an attachment
//! into the client's VSpace itself (its mapping window,
//! [`capbuf_protocol::CLIENT_WINDOW`]) and replies with the address, so the
//! library holds no capability and makes no kernel call but the PPC, which
//! goes through [`Sys`]: the `capbuf-microkit` crate implements it with
//! Microkit's `ppcall`, the tests with the host model. [`dma`] is what a
//! driver needs besides: physical ranges per frame and the cache lines to
//! maintain around a transfer.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dma;

use capbuf_protocol::{
    Align, AllocFlags, AllocReply, AttachReply, BufferId, ClientId, DetachReply, Error, ExportReply, FreeReply,
    GrantReply, HelloReply, InfoReply, KernelFailure, PoolId, PoolInfoReply, QuiesceReply, ReclaimReply, Reply,
    ReplyError, Request, Rights, UnexportReply, UngrantReply, CLIENT_RECEIVE_SLOTS, MAX_MESSAGE_WORDS,
    PROTOCOL_VERSION,
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
    /// Capabilities the reply carried (only EXPORT's has one).
    pub caps: usize,
}

/// The kernel operations the client library needs.
pub trait Sys {
    /// Make a PPC to memsrv (`microkit_ppcall`): label and message registers
    /// in, the reply out.
    fn call(&mut self, label: u64, words: &[u64]) -> RawReply;

    /// [`Sys::call`] with a receive path for the one capability an EXPORT
    /// reply carries: root CNode slot `slot` of this protection domain
    /// (`seL4_SetCapReceivePath` on its root CNode capability, which
    /// capbuf-compose gives `frame_caps` clients). Without an implementation
    /// no capability is received and [`Client::export`] answers
    /// [`ClientError::BadReply`].
    fn call_receiving(&mut self, label: u64, words: &[u64], slot: u64) -> RawReply {
        let _ = slot;
        self.call(label, words)
    }
}

/// Why a client call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// memsrv refused. Never [`Error::Kernel`]: that arrives as
    /// [`ClientError::Kernel`]. The library also answers
    /// [`Error::AlreadyAttached`] and [`Error::NotAttached`] itself, as memsrv
    /// would, where it knows without asking.
    Server(Error),
    /// The kernel refused one of memsrv's invocations ([`Error::Kernel`]):
    /// which, and the seL4 error. memsrv undid the request; see
    /// [`Error::Kernel`] for what may remain.
    Kernel(KernelFailure),
    /// memsrv speaks another major protocol version.
    Version(u64),
    /// The reply is not one memsrv sends ([`ReplyError::Malformed`]): a label
    /// that is no error code, capabilities, the wrong number of registers, a
    /// register holding no value of its field's type, or a KERNEL error
    /// without its registers.
    BadReply,
    /// The library tracks as many attachments as it can ([`MAX_VIEWS`]).
    TooManyAttachments,
    /// A range reaches past the end of the buffer (or wraps around).
    OutOfRange,
    /// INFO hid the physical address: this client is not `dma="true"` (or,
    /// with `io_space`, has not attached the buffer: its address is then the
    /// device's I/O address, given only while attached).
    PhysicalAddressHidden,
}

impl From<Error> for ClientError {
    fn from(error: Error) -> Self {
        ClientError::Server(error)
    }
}

impl From<ReplyError> for ClientError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Refused(error) => ClientError::Server(error),
            ReplyError::Kernel(failure) => ClientError::Kernel(failure),
            ReplyError::Malformed => ClientError::BadReply,
        }
    }
}

impl ClientError {
    /// Whether memsrv registered an [`AllocFlags::WAIT`] request: wait for
    /// its notification and retry.
    pub fn is_waiting(&self) -> bool {
        matches!(self, ClientError::Server(Error::Waiting))
    }

    /// The error code memsrv replied with, if it replied with one.
    pub fn error(&self) -> Option<Error> {
        match self {
            ClientError::Server(error) => Some(*error),
            ClientError::Kernel(_) => Some(Error::Kernel),
            ClientError::Version(_)
            | ClientError::BadReply
            | ClientError::TooManyAttachments
            | ClientError::OutOfRange
            | ClientError::PhysicalAddressHidden => None,
        }
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

/// Attachments one library instance tracks at once.
pub const MAX_VIEWS: usize = 32;

/// Exports one library instance tracks at once: one per root CNode slot of
/// [`CLIENT_RECEIVE_SLOTS`].
pub const MAX_EXPORTS: usize = (CLIENT_RECEIVE_SLOTS.end - CLIENT_RECEIVE_SLOTS.start) as usize;

/// A buffer's frame capabilities, received by [`Client::export`]: a CNode in
/// root CNode slot `slot`, whose frame `i` (2 MiB frames first, then 4 KiB
/// ones in address order, see [`crate::dma::frame_at`]) has capability
/// pointer `(slot << 58) | i` ([`Export::frame`]).
/// Copies taken out of it survive [`Client::unexport`] and UNGRANT; only
/// the owner's FREE destroys them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export {
    /// The buffer.
    pub id: BufferId,
    /// Root CNode slot holding the CNode.
    pub slot: u64,
    /// 2 MiB frames.
    pub large: u64,
    /// 4 KiB frames.
    pub small: u64,
    /// Radix of the CNode.
    pub radix: u64,
}

impl Export {
    /// Capability pointer of frame `index`, if the buffer has it.
    pub fn frame(&self, index: u64) -> Option<u64> {
        (index < self.large + self.small).then_some((self.slot << capbuf_protocol::ROOT_SLOT_SHIFT) | index)
    }
}

/// The client library's state for one protection domain.
pub struct Client<S> {
    sys: S,
    hello: HelloReply,
    /// The views of attached buffers: the first `view_count` entries, in no
    /// order (a detach moves the last into the gap), so that a lookup scans
    /// only the live ones.
    views: [Option<View>; MAX_VIEWS],
    view_count: usize,
    exports: [Option<BufferId>; MAX_EXPORTS],
}

impl<S: Sys> Client<S> {
    /// Greet memsrv and check its protocol version.
    pub fn new(mut sys: S) -> Result<Self, ClientError> {
        let hello: HelloReply = call(&mut sys, Request::Hello {})?;
        if capbuf_protocol::version_major(hello.version) != capbuf_protocol::version_major(PROTOCOL_VERSION) {
            return Err(ClientError::Version(hello.version));
        }
        Ok(Client { sys, hello, views: [None; MAX_VIEWS], view_count: 0, exports: [None; MAX_EXPORTS] })
    }

    /// What memsrv said at start: version, this client's id and quotas.
    pub fn hello(&self) -> &HelloReply {
        &self.hello
    }

    /// The kernel interface, for callers that need it directly.
    pub fn sys(&mut self) -> &mut S {
        &mut self.sys
    }

    /// Allocate a zeroed, physically contiguous buffer of at least `size`
    /// bytes (rounded up to whole pages) from pool `pool`, its first byte
    /// aligned to `align` ([`Align::PAGE`], or [`Align::bits`]), with
    /// `flags` fixed for its life ([`AllocFlags::NONE`], or
    /// [`AllocFlags::UNCACHED`] and [`AllocFlags::READ_ONLY`] combined with
    /// `|`). The buffer is this client's, not attached yet.
    pub fn alloc(&mut self, size: u64, align: Align, pool: PoolId, flags: AllocFlags) -> Result<BufferId, ClientError> {
        let reply: AllocReply = call(&mut self.sys, Request::Alloc { size, align, pool, flags })?;
        Ok(reply.id)
    }

    /// [`Self::alloc`] that waits instead of failing for memory: if the pool
    /// or this client's byte or buffer quota is short, memsrv registers the
    /// request ([`AllocFlags::WAIT`]) and answers [`Error::Waiting`] at once
    /// (as `Err(ClientError::Server(Error::Waiting))`; [`ClientError::is_waiting`]).
    /// memsrv then notifies this client on its channel to memsrv when a free
    /// may have made room (first registered, first notified); call this
    /// again then. Nothing is held for this client meanwhile: the retry may
    /// be answered WAITING again. One request per client waits; a second
    /// call replaces the first and keeps its place.
    pub fn alloc_or_wait(
        &mut self,
        size: u64,
        align: Align,
        pool: PoolId,
        flags: AllocFlags,
    ) -> Result<BufferId, ClientError> {
        self.alloc(size, align, pool, flags | AllocFlags::WAIT)
    }

    /// Reclaim client `client` (only its supervisor in `system.xml` may;
    /// anyone else, and any unknown id, gets [`Error::NotSupervisor`]):
    /// memsrv frees its buffers, withdraws its grants, removes its
    /// attachments, exports and holes, cancels its wait and resets its
    /// usage, so that it starts clean when restarted. The reply counts what
    /// went. On [`ClientError::Kernel`] what was reclaimed stays reclaimed;
    /// call again to finish.
    pub fn reclaim(&mut self, client: ClientId) -> Result<ReclaimReply, ClientError> {
        call(&mut self.sys, Request::Reclaim { client })
    }

    /// Let client `grantee` attach to buffer `id` with at most `rights`
    /// (owner only). Granting again changes the rights; lowering them revokes
    /// an attachment with more.
    pub fn grant(&mut self, id: BufferId, grantee: ClientId, rights: Rights) -> Result<(), ClientError> {
        let GrantReply {} = call(&mut self.sys, Request::Grant { id, grantee, rights })?;
        Ok(())
    }

    /// Withdraw a grant (owner only); the grantee's attachment, if any, is revoked.
    pub fn ungrant(&mut self, id: BufferId, grantee: ClientId) -> Result<(), ClientError> {
        let UngrantReply {} = call(&mut self.sys, Request::Ungrant { id, grantee })?;
        Ok(())
    }

    /// Size, physical address (if this client may see it; for an `io_space`
    /// client the I/O address its device uses, while attached), rights,
    /// reference count.
    pub fn info(&mut self, id: BufferId) -> Result<InfoReply, ClientError> {
        call(&mut self.sys, Request::Info { id })
    }

    /// Total, free and largest free block of pool `pool`, and the bytes lost and in quarantine.
    pub fn pool_info(&mut self, pool: PoolId) -> Result<PoolInfoReply, ClientError> {
        call(&mut self.sys, Request::PoolInfo { pool })
    }

    /// The view of an attached buffer, if this client holds one.
    pub fn view(&self, id: BufferId) -> Option<View> {
        self.views[..self.view_count].iter().flatten().find(|v| v.id == id).copied()
    }

    /// Attach to buffer `id` with `rights`: one PPC whatever the size, after
    /// which memsrv has mapped the buffer at the returned view's address.
    /// While the library holds a view of `id` (even one whose attachment the
    /// owner revoked) it refuses with `AlreadyAttached` itself: [`Self::detach`]
    /// first, as memsrv would also ask.
    pub fn attach(&mut self, id: BufferId, rights: Rights) -> Result<View, ClientError> {
        if self.view(id).is_some() {
            return Err(ClientError::Server(Error::AlreadyAttached));
        }
        if self.view_count == MAX_VIEWS {
            return Err(ClientError::TooManyAttachments);
        }
        let reply: AttachReply = call(&mut self.sys, Request::Attach { id, rights })?;
        let view = View { id, vaddr: reply.vaddr, size: reply.size, rights: reply.rights, flags: reply.flags };
        self.views[self.view_count] = Some(view);
        self.view_count += 1;
        Ok(view)
    }

    /// The cache lines of `len` bytes at `offset` of attached buffer `id`
    /// ([`dma::cache_lines`]), for a CPU whose smallest data cache line is
    /// `line_size` bytes. Like [`Self::attach`]'s `AlreadyAttached`, the
    /// library answers `NotAttached` itself, without asking memsrv.
    pub fn cache_lines(
        &self,
        id: BufferId,
        offset: u64,
        len: u64,
        line_size: u64,
    ) -> Result<dma::CacheLines, ClientError> {
        let view = self.view(id).ok_or(ClientError::Server(Error::NotAttached))?;
        dma::cache_lines(&view, offset, len, line_size)
    }

    fn forget(&mut self, id: BufferId) {
        // At most one view per buffer: attach refuses a second.
        let live = &self.views[..self.view_count];
        if let Some(entry) = live.iter().position(|entry| entry.is_some_and(|v| v.id == id)) {
            // The last view fills the gap (moved only if it is not the one
            // forgotten: a move of a view is a call to memcpy on some targets).
            let last = self.view_count - 1;
            if entry != last {
                self.views[entry] = self.views[last];
            }
            self.views[last] = None;
            self.view_count = last;
        }
    }

    /// Detach from buffer `id`: memsrv revokes the attachment, which unmaps
    /// it, and gives its window run back. If the owner already freed the
    /// buffer, lowered or withdrew the grant, the mapping went then, but
    /// memsrv kept the run (a hole) so that the view's address faults rather
    /// than reach this client's next attachment: DETACH gives the run back
    /// and succeeds. If memsrv has nothing of `id` left for this client (it
    /// was detached by a raw request, say) it answers [`Error::StaleBuffer`],
    /// [`Error::NotAttached`] or [`Error::UnknownBuffer`], and the library
    /// forgets the view all the same.
    pub fn detach(&mut self, id: BufferId) -> Result<(), ClientError> {
        let result = call(&mut self.sys, Request::Detach { id }).map(|DetachReply {}| ());
        match result {
            Ok(()) | Err(ClientError::Server(Error::StaleBuffer | Error::NotAttached | Error::UnknownBuffer)) => {
                self.forget(id);
                result
            }
            Err(error) => Err(error),
        }
    }

    /// Free buffer `id` (owner only). Every attachment, this client's included, is revoked.
    pub fn free(&mut self, id: BufferId) -> Result<(), ClientError> {
        let FreeReply {} = call(&mut self.sys, Request::Free { id })?;
        self.forget(id);
        Ok(())
    }

    /// Tell memsrv this client's device no longer uses buffer `id` (live, or
    /// freed while the device might still write it): memory whose physical
    /// address this `dma` client learnt goes back to the pool only after
    /// that. Call it once the device has stopped using the buffer (the
    /// request reaped, the device reset). [`Error::UnknownBuffer`] if the
    /// client has nothing to confirm for `id`.
    pub fn quiesce(&mut self, id: BufferId) -> Result<(), ClientError> {
        let QuiesceReply {} = call(&mut self.sys, Request::Quiesce { id })?;
        Ok(())
    }

    /// Receive buffer `id`'s frame capabilities with `rights` (only for a
    /// client `system.xml` gives `frame_caps="true"`; any other gets
    /// [`Error::NotExportable`]), in a free root CNode slot of
    /// [`CLIENT_RECEIVE_SLOTS`]. Counts as an attachment until
    /// [`Client::unexport`]. The weaker guarantee: a frame capability copied
    /// out of the CNode survives UNEXPORT and UNGRANT; only FREE revokes it.
    pub fn export(&mut self, id: BufferId, rights: Rights) -> Result<Export, ClientError> {
        if self.exports.contains(&Some(id)) {
            return Err(Error::AlreadyAttached.into());
        }
        let index = self.exports.iter().position(Option::is_none).ok_or(ClientError::TooManyAttachments)?;
        let slot = CLIENT_RECEIVE_SLOTS.start + index as u64;
        let mut words = [0; MAX_MESSAGE_WORDS];
        let request = Request::Export { id, rights };
        let (label, length) = request.encode(&mut words);
        let raw = self.sys.call_receiving(label, &words[..length], slot);
        let reply: ExportReply = decode(request, raw)?;
        self.exports[index] = Some(id);
        Ok(Export { id, slot, large: reply.large, small: reply.small, radix: reply.radix })
    }

    /// Give back the export of buffer `id`: memsrv revokes the CNode, which
    /// empties its root CNode slot for the next export. If the owner's
    /// UNGRANT, a lowered grant or FREE revoked it already, memsrv answers
    /// [`Error::NotAttached`] or [`Error::UnknownBuffer`], and the slot is
    /// free all the same.
    pub fn unexport(&mut self, id: BufferId) -> Result<(), ClientError> {
        let result = call(&mut self.sys, Request::Unexport { id }).map(|UnexportReply {}| ());
        if matches!(
            result,
            Ok(()) | Err(ClientError::Server(Error::NotAttached | Error::UnknownBuffer | Error::StaleBuffer))
        ) {
            self.exports.iter_mut().filter(|e| **e == Some(id)).for_each(|e| *e = None);
        }
        result
    }
}

/// One request, marshalled by the ABI table: its registers out, and the
/// reply read as the reply to its op, of type `R` (that op's reply struct).
fn call<S: Sys, R: TryFrom<Reply>>(sys: &mut S, request: Request) -> Result<R, ClientError> {
    let mut words = [0; MAX_MESSAGE_WORDS];
    let (label, length) = request.encode(&mut words);
    decode(request, sys.call(label, &words[..length]))
}

/// The reply to `request`, read as its op's reply struct `R`.
fn decode<R: TryFrom<Reply>>(request: Request, raw: RawReply) -> Result<R, ClientError> {
    let words = raw.words.get(..raw.length).ok_or(ClientError::BadReply)?;
    let reply = Reply::decode(request.op(), raw.label, words, raw.caps)?;
    R::try_from(reply).map_err(|_| ClientError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capbuf_protocol::{Invocation, Op};

    /// Replies from a script: HELLO first, then whatever the test says; keeps the last request.
    struct Script(RawReply, Vec<u64>);

    impl Sys for Script {
        fn call(&mut self, label: u64, words: &[u64]) -> RawReply {
            self.1 = [&[label][..], words].concat();
            if label == Op::Hello as u64 {
                let length = Op::Hello.reply_words();
                let mut raw = RawReply { label: 0, words: [0; MAX_MESSAGE_WORDS], length, caps: 0 };
                raw.words[0] = PROTOCOL_VERSION;
                return raw;
            }
            self.0
        }
    }

    fn raw(label: u64, words: &[u64], caps: usize) -> RawReply {
        let mut raw = RawReply { label, words: [0; MAX_MESSAGE_WORDS], length: words.len(), caps };
        raw.words[..words.len()].copy_from_slice(words);
        raw
    }

    #[test]
    fn a_kernel_failure_reaches_the_caller_with_its_invocation_and_code() {
        let kernel = raw(Error::Kernel.code(), &[Invocation::PageMap as u64, 3], 0);
        let mut client = Client::new(Script(kernel, Vec::new())).unwrap();
        let failure = KernelFailure { invocation: Invocation::PageMap, code: 3 };
        let refused = client.attach(BufferId::new(1, 1), Rights::ReadOnly);
        assert_eq!(refused, Err(ClientError::Kernel(failure)));
        assert_eq!(refused.unwrap_err().error(), Some(Error::Kernel));
        assert!(client.view(BufferId::new(1, 1)).is_none());
        client.sys().0.length = 0;
        assert_eq!(client.free(BufferId::new(1, 1)), Err(ClientError::BadReply), "a KERNEL reply without registers");
        client.sys().0 = raw(Error::NotOwner.code(), &[], 0);
        assert_eq!(client.free(BufferId::new(1, 1)), Err(ClientError::Server(Error::NotOwner)));
    }

    #[test]
    fn typed_arguments_go_out_in_the_tables_registers() {
        let mut client = Client::new(Script(raw(0, &[BufferId::new(2, 5).raw()], 0), Vec::new())).unwrap();
        let flags = AllocFlags::UNCACHED | AllocFlags::READ_ONLY;
        assert_eq!(client.alloc(12288, Align::bits(16), PoolId(1), flags), Ok(BufferId::new(2, 5)));
        assert_eq!(client.sys().1, [Op::Alloc as u64, 12288, 16, 1, 3]);
        client.sys().0 = raw(0, &[], 0);
        client.grant(BufferId::new(2, 5), ClientId(7), Rights::ReadOnly).unwrap();
        assert_eq!(client.sys().1, [Op::Grant as u64, BufferId::new(2, 5).raw(), 7, 1]);
        client.ungrant(BufferId::new(2, 5), ClientId(7)).unwrap();
        assert_eq!(client.sys().1, [Op::Ungrant as u64, BufferId::new(2, 5).raw(), 7]);
        client.sys().0 = raw(Error::Waiting.code(), &[], 0);
        let waiting = client.alloc_or_wait(4096, Align::PAGE, PoolId(0), AllocFlags::UNCACHED);
        assert_eq!(waiting, Err(ClientError::Server(Error::Waiting)));
        assert!(waiting.unwrap_err().is_waiting());
        assert_eq!(client.sys().1, [Op::Alloc as u64, 4096, 0, 0, 5], "UNCACHED | WAIT");
        client.sys().0 = raw(0, &[2, 8192, 3], 0);
        let reclaimed = client.reclaim(ClientId(9)).unwrap();
        assert_eq!((reclaimed.buffers, reclaimed.bytes, reclaimed.attachments), (2, 8192, 3));
        assert_eq!(client.sys().1, [Op::Reclaim as u64, 9]);
    }

    #[test]
    fn a_malformed_reply_is_the_librarys_own_error_and_changes_nothing() {
        let id = BufferId::new(1, 1);
        // ATTACH's third register packs page_bits, rights << 8 and flags << 16.
        let attach = [4096, 0x2000_0000, 12 | (Rights::ReadWrite as u64) << 8];
        let mut client = Client::new(Script(raw(0, &attach, 1), Vec::new())).unwrap();
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "with a capability");
        client.sys().0 = raw(0, &attach[..2], 0);
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "a word short");
        client.sys().0 = raw(0, &[4096, 0x2000_0000, 12 | 2 << 8], 0);
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "rights 2");
        client.sys().0 = raw(0, &[4096, 0x2000_0000, 12 | 3 << 8 | 8 << 16], 0);
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "flag bit 3");
        client.sys().0 = raw(0, &[4096, 0x2000_0000, 12 | 3 << 8 | 1 << 40], 0);
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "a bit no field uses");
        client.sys().0 = raw(30, &[], 0);
        assert_eq!(client.attach(id, Rights::ReadWrite), Err(ClientError::BadReply), "no error 30");
        client.sys().0 = RawReply { length: MAX_MESSAGE_WORDS + 1, ..raw(0, &[], 0) };
        assert_eq!(client.info(id), Err(ClientError::BadReply), "more registers than any reply");
        assert_eq!(ClientError::BadReply.error(), None, "not memsrv's error");
        assert!(client.view(id).is_none());
        client.sys().0 = raw(0, &attach, 0);
        assert_eq!(client.attach(id, Rights::ReadWrite).map(|view| view.vaddr), Ok(0x2000_0000));
    }

    #[test]
    fn views_are_kept_for_every_attachment_and_forgotten_one_by_one() {
        let attach = |n: u64| raw(0, &[4096, 0x2000_0000 + n * 4096, 12 | (Rights::ReadWrite as u64) << 8], 0);
        let mut client = Client::new(Script(attach(0), Vec::new())).unwrap();
        let id = |n: u64| BufferId::new(n as u32, 1);
        for n in 0..MAX_VIEWS as u64 {
            client.sys().0 = attach(n);
            assert_eq!(client.attach(id(n), Rights::ReadWrite).map(|view| view.vaddr), Ok(0x2000_0000 + n * 4096));
        }
        let asked = client.sys().1.clone();
        let more = client.attach(id(MAX_VIEWS as u64), Rights::ReadWrite);
        assert_eq!(more, Err(ClientError::TooManyAttachments));
        assert_eq!(client.sys().1, asked, "refused by the library, memsrv not asked");
        assert_eq!(client.attach(id(3), Rights::ReadWrite), Err(ClientError::Server(Error::AlreadyAttached)));
        // Detach the first, a middle one and the last: the others stay.
        client.sys().0 = raw(0, &[], 0);
        for n in [0, 17, MAX_VIEWS as u64 - 1] {
            client.detach(id(n)).unwrap();
            assert!(client.view(id(n)).is_none(), "view {n} forgotten");
        }
        for n in (0..MAX_VIEWS as u64).filter(|n| ![0, 17, MAX_VIEWS as u64 - 1].contains(n)) {
            assert_eq!(client.view(id(n)).map(|view| view.vaddr), Some(0x2000_0000 + n * 4096), "view {n} kept");
        }
        // Their places are free again.
        for n in [40, 41, 42] {
            client.sys().0 = attach(n);
            assert!(client.attach(id(n), Rights::ReadWrite).is_ok(), "view {n}");
        }
        assert_eq!(client.attach(id(43), Rights::ReadWrite), Err(ClientError::TooManyAttachments));
    }
}
