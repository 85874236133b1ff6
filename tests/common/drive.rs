//! One harness for the fuzzer and the exhaustive checker: memsrv on the
//! model, driven by [`Step`]s straight through [`Server::handle`] (no client
//! library in between to refuse anything first), with the checks every step
//! must pass: the invariants ([`super::invariants::check`]), plus what one
//! request may change: an id freed stays dead, a request the kernel refused
//! leaves memsrv's books and what clients hold as they were, a new buffer is zero, an
//! attachment never has more rights than asked for. [`Harness::teardown`]
//! then frees everything and checks the system is as it started.

use std::hash::Hasher;

use capbuf_model::{CNodeOp, Model};
use capbuf_protocol::{
    AllocFlags, BufferId, Error, Op, Reply, Request, Rights, CLIENT_WINDOW, MAX_CLIENTS, MAX_MESSAGE_WORDS, PAGE_BITS,
};
use capbuf_server::{Buffer, CapRef, KernelError, MapAttributes, Server};

use super::invariants::{check, pristine, Violation};

/// An id naming "the `k`-th buffer issued" in a [`Step::Send`]: generation 0,
/// which memsrv never issues. [`Harness`] puts the real id in its place
/// (or leaves it, a never-issued id, if fewer were issued).
pub const fn nth_issued(k: u32) -> BufferId {
    BufferId::new(k, 0)
}

/// Root CNode slot where a `frame_caps` client receives EXPORT's CNode.
pub const RECEIVE_SLOT: u64 = 32;

/// One thing a client (or the test) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Client index `client` sends `request`; its ID field, if it is
    /// [`nth_issued`], names that buffer.
    Send { client: usize, request: Request },
    /// Any message at all, on any channel.
    Raw { channel: u64, label: u64, words: Vec<u64>, caps: usize },
    /// A capability operation of a hostile client ([`hostile`]).
    Hostile { client: usize, op: u8, cptr: u64, dest: u64, source: u64, vaddr_slot: u64 },
    /// The client reads or writes its window at 4 KiB page `page`.
    Touch { client: usize, page: u64, write: bool },
    /// memsrv collapses its dormant blocks (what it does when short of slots).
    Collapse,
}

/// A client's buffers (id, pool, first page, pages) and the pools' free
/// bytes and quarantine (id, pool, pages), before a RECLAIM.
struct Holdings {
    owned: Vec<(BufferId, usize, u64, u64)>,
    free: Vec<u64>,
    quarantine: Vec<(BufferId, usize, u64)>,
}

/// What a step did, for the checkers' counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// memsrv's kernel invocations during the step.
    pub invocations: u64,
    /// The request was answered with success.
    pub served: bool,
    /// A request refused before memsrv's first kernel invocation, with
    /// nobody to notify and not registered to wait: refused by its decide
    /// step, which reads memsrv's state and cannot change it (`&self`), so
    /// memsrv and the kernel are as they were.
    pub refused_unchanged: bool,
}

/// memsrv, the ids it issued (in order) and the ones freed since.
#[derive(Clone)]
pub struct Harness<const N: usize> {
    pub server: Server<Model, N>,
    pub issued: Vec<BufferId>,
    pub freed: Vec<BufferId>,
}

/// A 128-bit digest: two 64-bit multiply-rotate lanes with different
/// constants over the input's 8-byte words, each finished with MurmurHash3's
/// mixer. Not cryptographic, but the search's inputs are not adversarial;
/// much faster than SipHash, which matters in a search that digests every
/// state it reaches, fed in many small pieces (it buffers them).
#[derive(Clone, Copy)]
pub struct Digest {
    lanes: [u64; 2],
    length: u64,
    buffer: [u8; 64],
    filled: usize,
}

impl Digest {
    const MULTIPLIERS: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f];

    pub fn new() -> Digest {
        Digest { lanes: [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344], length: 0, buffer: [0; 64], filled: 0 }
    }

    fn words(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            self.lanes[0] = (self.lanes[0] ^ word).wrapping_mul(Self::MULTIPLIERS[0]).rotate_left(31);
            self.lanes[1] = (self.lanes[1].rotate_left(27) ^ word).wrapping_mul(Self::MULTIPLIERS[1]);
        }
    }

    pub fn finish(&self) -> u128 {
        let mut copy = *self;
        let buffer = copy.buffer;
        copy.words(&buffer[..copy.filled]);
        let mix = |mut x: u64| {
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            x ^ (x >> 33)
        };
        let [a, b] = copy.lanes;
        ((mix(a ^ self.length) as u128) << 64) | mix(b.wrapping_add(self.length)) as u128
    }
}

impl Hasher for Digest {
    fn write(&mut self, mut bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let take = bytes.len().min(64 - self.filled);
            self.buffer[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == 64 {
                let buffer = self.buffer;
                self.words(&buffer);
                self.filled = 0;
            }
        }
    }

    fn finish(&self) -> u64 {
        Digest::finish(self) as u64
    }
}

/// A capability operation a hostile client can try on whatever its
/// capability pointers name: copy, mint, move, mutate, delete or revoke in a
/// CNode (0 to 5), map a frame at a window address (6), GetAddress (7),
/// copy into its root CNode (8).
pub fn hostile(
    model: &mut Model,
    client: usize,
    op: u8,
    cptr: u64,
    dest: u64,
    source: u64,
    vaddr_slot: u64,
) -> Result<(), KernelError> {
    let vaddr = CLIENT_WINDOW.start + (vaddr_slot << 21);
    let attributes = MapAttributes { rights: Rights::ReadWrite, cached: false };
    let rights = Rights::ReadWrite;
    let node = cptr >> 58;
    match op {
        0 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Copy(rights)),
        1 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Mint(rights, 0)),
        2 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Move),
        3 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Mutate(0)),
        4 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Delete),
        5 => model.client_cnode(client, (node, dest), (node, source), CNodeOp::Revoke),
        6 => model.client_map_frame(client, cptr, vaddr, attributes),
        7 => model.client_get_address(client, cptr).map(|_| ()),
        _ => model.client_copy_to_root(client, dest % 64, cptr, rights),
    }
}

/// Whether `op` names a buffer in its first register.
fn names_buffer(op: Op) -> bool {
    op.request_fields().first().is_some_and(|field| field.name == "ID")
}

impl<const N: usize> Harness<N> {
    pub fn new(server: Server<Model, N>) -> Self {
        Harness { server, issued: Vec::new(), freed: Vec::new() }
    }

    /// Feed `hasher` the whole state: memsrv's, the kernel's, and the ids
    /// issued and freed (which [`nth_issued`] refers to).
    pub fn fingerprint(&self, hasher: &mut impl Hasher) {
        self.server.fingerprint(hasher);
        self.server.kernel().fingerprint(hasher);
        for id in self.issued.iter().chain([&BufferId::new(0, 0)]).chain(&self.freed) {
            hasher.write_u64(id.raw());
        }
    }

    pub fn digest(&self) -> u128 {
        let mut digest = Digest::new();
        self.fingerprint(&mut digest);
        digest.finish()
    }

    /// memsrv's books as clients see them: buffers (grants, attachments,
    /// exports, exposure), free and quarantined bytes, usage, reserve blocks
    /// in use, windows and holes, and every client's mappings and frame
    /// capabilities. Not the untyped blocks and slots: a split the kernel
    /// refused halfway stays behind, dormant, by design.
    pub fn books(&self) -> String {
        self.books_but_exports(false)
    }

    /// [`Harness::books`], without the exports (and what they hold: their
    /// quota, reserve blocks and frame capabilities) if `but_exports`.
    fn books_but_exports(&self, but_exports: bool) -> String {
        let server = &self.server;
        let model = server.kernel();
        // Each buffer with its holders in client order (their order in
        // `Buffer::holders` follows the history, not the state), an export
        // left out if `but_exports`, and a holder left with nothing dropped.
        let buffers: Vec<_> = server
            .registry()
            .iter()
            .map(|(id, b)| {
                let mut holders: Vec<_> = b
                    .holders
                    .iter()
                    .map(|h| (h.client, h.grant(), h.attachment(), h.export().filter(|_| !but_exports)))
                    .filter(|&(_, grant, attachment, export)| grant.is_some() || attachment.is_some() || export.is_some())
                    .collect();
                holders.sort_by_key(|h| h.0);
                (id, Buffer { holders: Default::default(), ..b.clone() }, holders)
            })
            .collect();
        let pools = server.config().pool_count();
        let free: Vec<_> = (0..pools).map(|p| (server.free_bytes(p), server.quarantined_bytes(p))).collect();
        let quarantine: Vec<_> = server.quarantine().iter().collect();
        let clients = server.config().clients.iter().flatten().count();
        let mut usage: Vec<_> = (0..clients).map(|c| server.usage(c)).collect();
        let mut reserves: Vec<_> = server.reserves().iter().map(|(_, r)| (r.in_use, r.lost)).collect();
        let mut frames: Vec<_> = (0..clients).map(|c| model.client_reachable_frames(c)).collect();
        let mappings: Vec<_> = (0..clients).map(|c| model.client_mappings(c)).collect();
        if but_exports {
            usage.iter_mut().for_each(|u| u.attachments = 0);
            reserves.clear();
            frames.clear();
        }
        format!(
            "{buffers:?} {free:?} {quarantine:?} {usage:?} {reserves:?} {:?} {frames:?} {mappings:?}",
            server.windows()
        )
    }

    /// The message `request` is sent as, with [`nth_issued`] resolved.
    pub fn message(&self, request: &Request) -> (u64, Vec<u64>) {
        let mut words = [0; MAX_MESSAGE_WORDS];
        let (label, length) = request.encode(&mut words);
        if names_buffer(request.op()) {
            let id = BufferId::from_raw(words[0]);
            if id.generation() == 0 {
                if let Some(issued) = self.issued.get(id.index() as usize) {
                    words[0] = issued.raw();
                }
            }
        }
        (label, words[..length].to_vec())
    }

    /// Take one step, with the `fail`-th kernel invocation memsrv makes
    /// refused with `error` if given, and check what the step may change
    /// (not the invariants of the state it leaves: [`Harness::checked_step`]).
    pub fn step(&mut self, step: &Step, fail: Option<(u64, KernelError)>) -> Result<Done, Violation> {
        let before = self.server.kernel().invocations();
        if let Some((nth, error)) = fail {
            self.server.kernel_mut().fail_invocation(nth, error);
        }
        let mut quiet_refusal = false;
        let served = match step {
            Step::Send { client, request } => {
                let (label, words) = self.message(request);
                let (served, quiet) = self.send(*client, label, &words, 0, fail.is_some())?;
                quiet_refusal = quiet;
                served
            }
            Step::Raw { channel, label, words, caps } => {
                let client = *channel as usize;
                let known = self.server.config().client_by_channel(*channel).is_some();
                let (served, quiet) = self.send(client, *label, words, *caps, fail.is_some())?;
                quiet_refusal = quiet;
                if served && !known {
                    return Err(format!("served a message on unknown channel {channel}"));
                }
                served
            }
            &Step::Hostile { client, op, cptr, dest, source, vaddr_slot } => {
                hostile(self.server.kernel_mut(), client, op, cptr, dest, source, vaddr_slot).is_ok()
            }
            &Step::Touch { client, page, write } => {
                let vaddr = CLIENT_WINDOW.start + (page << PAGE_BITS);
                let model = self.server.kernel_mut();
                if write {
                    model.client_write(client, vaddr, page + 1).is_ok()
                } else {
                    model.client_read(client, vaddr).is_ok()
                }
            }
            // A collapse the kernel refused halfway is finished by the next.
            Step::Collapse => match self.server.reclaim() {
                Ok(()) => true,
                Err(_) if fail.is_some() => false,
                Err(failure) => return Err(format!("collapse refused: {failure:?}")),
            },
        };
        let model = self.server.kernel_mut();
        let invocations = model.invocations() - before;
        model.clear_failures();
        Ok(Done { invocations, served, refused_unchanged: quiet_refusal && invocations == 0 })
    }

    /// [`Harness::step`], then the invariants.
    pub fn checked_step(&mut self, step: &Step, fail: Option<(u64, KernelError)>) -> Result<Done, Violation> {
        let done = self.step(step, fail)?;
        check(&self.server)?;
        Ok(done)
    }

    /// Send one message from client index `client` (its channel is its
    /// index here) and check what it changed. Returns whether it was
    /// served, and whether it was refused with nothing registered or notified.
    fn send(
        &mut self,
        client: usize,
        label: u64,
        words: &[u64],
        caps: usize,
        failing: bool,
    ) -> Result<(bool, bool), Violation> {
        let request = Request::decode(label, words, caps).ok();
        let id = request.filter(|r| names_buffer(r.op())).map(|_| BufferId::from_raw(words[0]));
        let freed = id.filter(|id| self.freed.contains(id));
        let hole = id.filter(|_| client < MAX_CLIENTS).and_then(|id| self.server.windows().hole(client, id));
        let pending = id.is_some_and(|id| {
            self.server
                .quarantine()
                .iter()
                .any(|q| q.id == id && client < MAX_CLIENTS && q.pending & (1 << client) != 0)
        });
        let before = failing.then(|| (self.books(), self.books_but_exports(true)));
        let waiting_before: Vec<usize> = self.server.waits().iter().map(|w| w.client).collect();
        let wait_books = matches!(request, Some(Request::Alloc { flags, .. }) if flags.contains(AllocFlags::WAIT))
            .then(|| self.books());
        let reclaimed = match request {
            Some(Request::Reclaim { client: target }) => {
                self.server.config().client_by_id(target.0).map(|(t, _)| (t, self.holdings(t)))
            }
            _ => None,
        };
        let outcome = self.server.handle(client as u64, label, words, caps);
        for notified in (0..MAX_CLIENTS).filter(|c| outcome.notify & (1 << c) != 0) {
            if !waiting_before.contains(&notified) || self.server.waits().of(notified).is_some() {
                return Err(format!("client {notified} notified without having waited, or still waiting"));
            }
        }
        if outcome.result == Err(Error::Waiting) && wait_books != Some(self.books()) {
            return Err("a WAIT ALLOC took something: a waiting client must hold nothing more".into());
        }
        if let (Some(send), Ok(_)) = (outcome.send, outcome.result) {
            let from = CapRef::Table(send);
            let _ = self.server.kernel_mut().transfer_to_client(client, RECEIVE_SLOT, from);
        }
        let op = request.map(|r| r.op());
        match (outcome.result, freed) {
            (Ok(_), Some(id)) => {
                // A freed id is dead, but for the two requests that are about
                // what outlives it: the client's hole and its confirmation.
                let allowed = match op {
                    Some(Op::Detach) => hole.is_some(),
                    Some(Op::Quiesce) => pending,
                    _ => false,
                };
                if !allowed {
                    return Err(format!("{op:?} of freed buffer {id} by client {client} served"));
                }
            }
            (Err(error), Some(id)) if !matches!(error, Error::StaleBuffer | Error::UnknownBuffer) => {
                // EXPORT refuses a client without frame_caps whatever the id.
                let frame_caps =
                    self.server.config().clients.get(client).copied().flatten().is_some_and(|c| c.frame_caps);
                let unexportable = op == Some(Op::Export) && error == Error::NotExportable && !frame_caps;
                let stranger =
                    error == Error::UnknownCaller && self.server.config().client_by_channel(client as u64).is_none();
                if !matches!(op, Some(Op::Detach | Op::Quiesce)) && !unexportable && !stranger {
                    return Err(format!("{op:?} of freed buffer {id}: {error:?}, not stale or unknown"));
                }
            }
            _ => {}
        }
        match outcome.result {
            Ok(Reply::Alloc(reply)) => {
                let server = &self.server;
                let buffer = server.registry().get(reply.id).map_err(|e| format!("new buffer missing: {e:?}"))?;
                let start = server.physical_address(buffer);
                let dirty = server.kernel().dirty_pages(start, start + (buffer.made.data.pages << PAGE_BITS));
                if dirty != 0 {
                    return Err(format!("new buffer {} has {dirty} dirty pages", reply.id));
                }
                if self.issued.contains(&reply.id) || reply.id.generation() == 0 {
                    return Err(format!("id {} issued twice", reply.id));
                }
                self.issued.push(reply.id);
            }
            Ok(Reply::Attach(reply)) => {
                if let Some(Request::Attach { rights, .. }) = request {
                    if !reply.rights.within(rights) {
                        return Err(format!("attached with {:?}, asked {rights:?}", reply.rights));
                    }
                }
            }
            Ok(Reply::Free(_)) => self.freed.extend(id),
            Ok(Reply::Reclaim(_)) => {
                let (target, before) = reclaimed.ok_or("RECLAIM of a client not configured served")?;
                if self.server.config().clients[target].and_then(|c| c.supervisor) != Some(client) {
                    return Err(format!("client {client} reclaimed {target}, which it does not supervise"));
                }
                self.check_reclaimed(target, &before)?;
                self.freed.extend(before.owned.iter().map(|(id, _, _, _)| *id));
            }
            Err(Error::Kernel) => {
                if outcome.kernel.is_none() {
                    return Err("a KERNEL error without the invocation".into());
                }
                if !failing {
                    return Err(format!("{op:?} failed in the kernel with no failure injected"));
                }
                // One failure is always undone: nothing changed, nothing lost
                // (a FREE may have revoked attachments first, leaving holes).
                if outcome.undo.is_some() || outcome.lost != Default::default() {
                    return Err(format!("{op:?}: one refusal lost {:?}", outcome.lost));
                }
                // An UNGRANT or a lowering GRANT refused at its second
                // revocation keeps the first, an export's: nothing but exports may differ.
                let (books, but_exports) = before.unwrap_or_default();
                let unchanged = match op {
                    // A FREE or RECLAIM refused midway keeps what it did; the next finishes.
                    Some(Op::Free | Op::Reclaim) => true,
                    Some(Op::Ungrant | Op::Grant) => but_exports == self.books_but_exports(true),
                    _ => books == self.books(),
                };
                if !unchanged {
                    return Err(format!("{op:?} refused by the kernel changed memsrv's books"));
                }
            }
            _ => {}
        }
        let quiet = outcome.notify == 0 && matches!(outcome.result, Err(error) if error != Error::Waiting);
        Ok((outcome.result.is_ok(), quiet))
    }

    /// What client `client` holds, and the pools' free and quarantined bytes.
    fn holdings(&self, client: usize) -> Holdings {
        let server = &self.server;
        let owned = server
            .registry()
            .iter()
            .filter(|(_, b)| b.made.owner == client)
            .map(|(id, b)| (id, b.made.pool, b.made.data.offset, b.made.data.pages))
            .collect();
        let pools = server.config().pool_count();
        let quarantine = server.quarantine().iter().map(|q| (q.id, q.pool, q.data.pages)).collect();
        Holdings { owned, free: (0..pools).map(|p| server.free_bytes(p).unwrap_or(0)).collect(), quarantine }
    }

    /// After a RECLAIM of `target`: it holds nothing (no buffer, grant,
    /// attachment, export, hole, window run, exposure, wait, mapping or
    /// frame capability, usage zero), and every byte its buffers held is
    /// free again or quarantined for another `dma` client.
    fn check_reclaimed(&self, target: usize, before: &Holdings) -> Result<(), Violation> {
        let server = &self.server;
        let model = server.kernel();
        let holds = server.registry().iter().any(|(_, b)| {
            b.made.owner == target
                || b.holders.grant(target).is_some()
                || b.holders.attachment(target).is_some()
                || b.holders.export(target).is_some()
                || b.holders.iter().any(|h| h.client as usize == target)
                || b.exposed & (1 << target) != 0
        });
        if holds || server.usage(target) != Default::default() {
            return Err(format!("client {target} still holds something after RECLAIM: {:?}", server.usage(target)));
        }
        if !server.windows().holes(target).is_empty() || server.windows().used_slots(target) != 0 {
            return Err(format!("client {target}'s window is not empty after RECLAIM"));
        }
        if server.quarantine().iter().any(|q| q.pending & (1 << target) != 0) || server.waits().of(target).is_some() {
            return Err(format!("client {target} still pending in quarantine or waiting after RECLAIM"));
        }
        // A frame_caps client keeps frame copies it took out of an export,
        // and mappings it made of them (seL4 frame copies are not revocable;
        // only the owner's FREE reaches them): the invariants hold those to
        // live buffers with no more rights than the buffer's. Its own
        // buffers are freed, so none of them is theirs.
        let frame_caps = server.config().clients[target].is_some_and(|c| c.frame_caps);
        let mut reached = model.client_mappings(target).into_iter().map(|m| (m.physical_address, m.size_bits));
        let mut frames = model.client_reachable_frames(target).into_iter().map(|(address, bits, _)| (address, bits));
        let anything = reached.next().or_else(|| frames.next()).is_some();
        if anything && !frame_caps {
            return Err(format!("client {target} still reaches memory after RECLAIM"));
        }
        let after = self.holdings(target);
        for pool in 0..before.free.len() {
            let pages = |list: &mut dyn Iterator<Item = u64>| list.sum::<u64>() << PAGE_BITS;
            let owned = pages(&mut before.owned.iter().filter(|o| o.1 == pool).map(|o| o.3));
            let quarantined_now = |id: BufferId| after.quarantine.iter().any(|q| q.0 == id);
            let held_back =
                pages(&mut before.owned.iter().filter(|o| o.1 == pool && quarantined_now(o.0)).map(|o| o.3));
            let released =
                pages(&mut before.quarantine.iter().filter(|q| q.1 == pool && !quarantined_now(q.0)).map(|q| q.2));
            if after.free[pool] != before.free[pool] + owned - held_back + released {
                return Err(format!("pool {pool}: client {target}'s {owned} bytes not all free or quarantined"));
            }
        }
        for q in server.quarantine().iter().filter(|q| before.owned.iter().any(|o| o.0 == q.id)) {
            if q.pending == 0 || q.pending & (1 << target) != 0 {
                return Err(format!("buffer {} quarantined for nobody but the reclaimed client", q.id));
            }
        }
        Ok(())
    }

    /// Free everything, confirm every quarantined buffer, detach every hole,
    /// and check the system is exactly as `fresh` (same configuration, just
    /// started): no memory, capability or slot outlives its buffer.
    pub fn teardown(&mut self, fresh: &Server<Model, N>) -> Result<(), Violation> {
        self.server.kernel_mut().clear_failures();
        // Every supervised client reclaimed by its supervisor first; then
        // what is left (the supervisors' own) freed one by one.
        let supervised: Vec<(usize, usize, u64)> = (0..MAX_CLIENTS)
            .filter_map(|c| {
                let config = self.server.config().clients[c]?;
                Some((c, config.supervisor?, config.client_id))
            })
            .collect();
        for (target, supervisor, id) in supervised {
            let before = self.holdings(target);
            let outcome = self.server.handle(supervisor as u64, Op::Reclaim as u64, &[id], 0);
            outcome.result.map_err(|error| format!("teardown: RECLAIM of {target}: {error:?}"))?;
            self.check_reclaimed(target, &before)?;
        }
        let live: Vec<(BufferId, usize)> = self.server.registry().iter().map(|(id, b)| (id, b.made.owner)).collect();
        for (id, owner) in live {
            let outcome = self.server.handle(owner as u64, Op::Free as u64, &[id.raw()], 0);
            outcome.result.map_err(|error| format!("teardown: owner's FREE of {id}: {error:?}"))?;
        }
        let quarantined: Vec<(BufferId, u64)> = self.server.quarantine().iter().map(|q| (q.id, q.pending)).collect();
        for (id, pending) in quarantined {
            for client in (0..MAX_CLIENTS as u64).filter(|c| pending & (1 << c) != 0) {
                let outcome = self.server.handle(client, Op::Quiesce as u64, &[id.raw()], 0);
                outcome.result.map_err(|error| format!("teardown: QUIESCE of {id} by {client}: {error:?}"))?;
            }
        }
        for client in 0..self.server.config().clients.iter().flatten().count() {
            let holes: Vec<BufferId> = self.server.windows().holes(client).iter().map(|h| h.id).collect();
            for id in holes {
                let outcome = self.server.handle(client as u64, Op::Detach as u64, &[id.raw()], 0);
                outcome.result.map_err(|error| format!("teardown: DETACH of hole {id} by {client}: {error:?}"))?;
            }
        }
        check(&self.server)?;
        pristine(&mut self.server, fresh)
    }
}
