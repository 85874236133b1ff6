//! The request handler.

use capbuf_pool::{Allocation, Block, Event, Pool};
use capbuf_protocol::{
    AllocFlags, AttachReply, BufferId, Config, ConfigError, Error, HelloReply, InfoReply, PoolInfoReply, Reply,
    Request, Rights, MAX_ALIGN_BITS, MAX_BUFFER_BITS, MAX_CLIENTS, MAX_POOLS, MEMSRV_TABLE_FIRST_FREE,
    MEMSRV_TABLE_VSPACES, PADDR_HIDDEN, PAGE_BITS, PROTOCOL_VERSION,
};
use heapless::FnvIndexMap;

use crate::kernel::{CapRef, Kernel, KernelError, MapAttributes, Object, Slot, RETYPE_FAN_OUT_LIMIT};
use crate::layout::FrameLayout;
use crate::registry::{charged_pages, Attachment, Buffer, Registry};
use crate::reserve::{self, Reserves};
use crate::window::{Run, Windows};

/// Largest table CNode radix memsrv can manage.
pub const MAX_TABLE_BITS: u64 = 12;
const TABLE_CAPACITY: usize = 1 << MAX_TABLE_BITS;

/// What one client holds now, checked against its quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of buffers owned.
    pub bytes: u64,
    /// Buffers owned.
    pub buffers: u64,
    /// Attachments held.
    pub attachments: u64,
}

/// The answer to one request. No reply carries a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reply, or the error to put in the reply label.
    pub result: Result<Reply, Error>,
}

impl Outcome {
    fn error(error: Error) -> Outcome {
        Outcome { result: Err(error) }
    }
}

struct PoolState<const NODES: usize> {
    base: u64,
    pool: Pool<NODES>,
}

/// memsrv's whole state. `NODES` bounds each pool (twice its page count).
pub struct Server<K, const NODES: usize> {
    kernel: K,
    config: Config,
    pools: [Option<PoolState<NODES>>; MAX_POOLS],
    registry: Registry,
    usage: [Usage; MAX_CLIENTS],
    /// Every untyped block that exists, by `(pool << 32) | node`.
    blocks: FnvIndexMap<u64, BlockCap, TABLE_CAPACITY>,
    free_slots: heapless::Vec<Slot, TABLE_CAPACITY>,
    /// Each client's metadata reserve, carved from the pools at start-up.
    reserves: Reserves,
    /// Each client's mapping window.
    windows: Windows,
}

fn block_key(pool: usize, block: Block) -> u64 {
    ((pool as u64) << 32) | block.node() as u64
}

fn kernel_error(_: KernelError) -> Error {
    Error::Kernel
}

/// The untyped capability of one block of a pool's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockCap {
    slot: Slot,
    /// The pool merged the block's halves, but their untyped capabilities were
    /// kept: splitting it again costs nothing, and its halves' memory is only
    /// zeroed (by the kernel's reset) where it was used. The block is revoked
    /// for real ("collapsed") only when it is needed whole, or for slots.
    dormant: bool,
}

/// Apply pool events to the kernel: a split retypes the block into two
/// half-size untypeds (or wakes a dormant block's halves), a merge marks the
/// block dormant. Merging lazily matters: revoking a block and retyping it
/// later makes the kernel zero all of it, so an eager merge of a whole pool
/// would cost the next small allocation a reset of the entire pool.
struct Mirror<'a, K> {
    kernel: &'a mut K,
    blocks: &'a mut FnvIndexMap<u64, BlockCap, TABLE_CAPACITY>,
    free_slots: &'a mut heapless::Vec<Slot, TABLE_CAPACITY>,
    pool: usize,
    failed: Option<Error>,
}

impl<K: Kernel> Mirror<'_, K> {
    fn apply(&mut self, event: Event) {
        if self.failed.is_none() {
            if let Err(error) = self.try_apply(event) {
                self.failed = Some(error);
            }
        }
    }

    fn try_apply(&mut self, event: Event) -> Result<(), Error> {
        match event {
            Event::Split(block) => {
                let entry = self.blocks.get_mut(&block_key(self.pool, block)).ok_or(Error::Kernel)?;
                if entry.dormant {
                    entry.dormant = false;
                    return Ok(());
                }
                let parent = entry.slot;
                let size_bits = block.order() - 1 + PAGE_BITS;
                let (left, right) = block.children();
                for child in [left, right] {
                    let slot = self.free_slots.pop().ok_or(Error::OutOfSlots)?;
                    self.kernel
                        .retype(parent, Object::Untyped { size_bits }, CapRef::Table(slot), 1)
                        .map_err(kernel_error)?;
                    let cap = BlockCap { slot, dormant: false };
                    self.blocks.insert(block_key(self.pool, child), cap).map_err(|_| Error::OutOfSlots)?;
                }
            }
            Event::Merge(block) => {
                self.blocks.get_mut(&block_key(self.pool, block)).ok_or(Error::Kernel)?.dormant = true;
            }
        }
        Ok(())
    }
}

impl<K: Kernel, const NODES: usize> Server<K, NODES> {
    /// Set up from a validated configuration. Pool `i`'s untyped capability
    /// must be in table slot `i`; the other slots of the table must be empty.
    /// Carves every client's metadata reserve out of the pools (the only
    /// kernel invocations here: retypes splitting the pools' untypeds), and
    /// refuses a configuration whose reserves do not fit ([`reserve::check`]).
    pub fn new(kernel: K, config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.table_bits > MAX_TABLE_BITS || 1 << config.table_bits <= MEMSRV_TABLE_FIRST_FREE {
            return Err(ConfigError::TableBits);
        }
        reserve::check(&config)?;
        let block_pages = reserve::block_pages(&config);
        let mut pools = [const { None }; MAX_POOLS];
        let mut blocks = FnvIndexMap::new();
        for (i, pool) in config.pools.iter().flatten().enumerate() {
            let order = (pool.size_bits as u32).checked_sub(PAGE_BITS).ok_or(ConfigError::PoolSize)?;
            let state = Pool::new(order).ok_or(ConfigError::PoolSize)?;
            let root = BlockCap { slot: i as Slot, dormant: false };
            blocks.insert(block_key(i, state.root()), root).map_err(|_| ConfigError::TableBits)?;
            pools[i] = Some(PoolState { base: pool.physical_address, pool: state });
        }
        let mut free_slots = heapless::Vec::new();
        // Slots below MEMSRV_TABLE_FIRST_FREE hold the pools' untypeds and the clients' VSpaces.
        for slot in (MEMSRV_TABLE_FIRST_FREE as Slot..1 << config.table_bits).rev() {
            free_slots.push(slot).map_err(|_| ConfigError::TableBits)?;
        }
        let mut server = Server {
            kernel,
            config,
            pools,
            registry: Registry::default(),
            usage: [Usage::default(); MAX_CLIENTS],
            blocks,
            free_slots,
            reserves: Reserves::new(block_pages),
            windows: Windows::default(),
        };
        server.carve_reserves()?;
        Ok(server)
    }

    /// Allocate every client's reserve blocks, client by client, each from the
    /// last pool with room (see [`reserve`]). [`reserve::check`] has shown
    /// they fit, so a refusal here means the kernel disagrees with the
    /// configuration.
    fn carve_reserves(&mut self) -> Result<(), ConfigError> {
        let block_pages = self.reserves.block_pages();
        for client in 0..MAX_CLIENTS {
            for _ in 0..reserve::reserve_blocks(&self.config, client) {
                let pool = (0..self.config.pool_count())
                    .rev()
                    .find(|&p| self.pools[p].as_ref().is_some_and(|s| s.pool.largest_free() >= block_pages))
                    .ok_or(ConfigError::ReservesExceedPools)?;
                let block = self.pool_alloc(pool, block_pages, 0).map_err(|error| match error {
                    Error::OutOfMemory => ConfigError::ReservesExceedPools,
                    Error::OutOfSlots => ConfigError::ReservesExceedTable,
                    _ => ConfigError::PoolCapability,
                })?;
                self.reserves.push(client, pool, block)?;
            }
        }
        Ok(())
    }

    /// The kernel (or model) the server drives.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Mutable access to the kernel, for test harnesses.
    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live buffers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What client index `client` holds.
    pub fn usage(&self, client: usize) -> Usage {
        self.usage[client]
    }

    /// Free bytes of pool `pool`: not in a buffer nor in a reserve.
    pub fn free_bytes(&self, pool: usize) -> Option<u64> {
        self.pools.get(pool)?.as_ref().map(|p| p.pool.free_pages() << PAGE_BITS)
    }

    /// Bytes of pool `pool` that buffers can use: its size less the metadata
    /// reserves carved from it. What POOL_INFO reports as the total.
    pub fn total_bytes(&self, pool: usize) -> Option<u64> {
        Some(self.size_bytes(pool)? - self.reserved_bytes(pool)?)
    }

    /// Size of pool `pool` in bytes.
    pub fn size_bytes(&self, pool: usize) -> Option<u64> {
        self.pools.get(pool)?.as_ref().map(|p| p.pool.pages() << PAGE_BITS)
    }

    /// Bytes of pool `pool` set aside for the clients' metadata reserves.
    pub fn reserved_bytes(&self, pool: usize) -> Option<u64> {
        self.pools.get(pool)?.as_ref().map(|_| self.reserves.pages_in(pool) << PAGE_BITS)
    }

    /// Every client's metadata reserve.
    pub fn reserves(&self) -> &Reserves {
        &self.reserves
    }

    /// Physical address of the first byte of buffer `buffer`.
    pub fn physical_address(&self, buffer: &Buffer) -> u64 {
        let base = self.pools[buffer.pool].as_ref().map_or(0, |p| p.base);
        base + (buffer.data.offset << PAGE_BITS)
    }

    /// Table slots not in use.
    pub fn free_slot_count(&self) -> usize {
        self.free_slots.len()
    }

    /// Handle one request from the client on memsrv's channel `channel`.
    pub fn handle(&mut self, channel: u64, label: u64, words: &[u64], extra_caps: usize) -> Outcome {
        let Some((client, _)) = self.config.client_by_channel(channel) else {
            return Outcome::error(Error::UnknownCaller);
        };
        let request = match Request::decode(label, words, extra_caps) {
            Ok(request) => request,
            Err(error) => return Outcome::error(error),
        };
        self.dispatch(client, request)
    }

    fn dispatch(&mut self, client: usize, request: Request) -> Outcome {
        let done = |r: Result<(), Error>| Outcome { result: r.map(|()| Reply::Done) };
        match request {
            Request::Hello => Outcome { result: Ok(Reply::Hello(self.hello(client))) },
            Request::Alloc { size, align_bits, pool, flags } => {
                Outcome { result: self.alloc(client, size, align_bits, pool, flags).map(Reply::Alloc) }
            }
            Request::Attach { id, rights } => Outcome { result: self.attach(client, id, rights).map(Reply::Attach) },
            Request::Grant { id, grantee, rights } => done(self.grant(client, id, grantee, rights)),
            Request::Info { id } => Outcome { result: self.info(client, id).map(Reply::Info) },
            Request::Detach { id } => done(self.detach(client, id)),
            Request::Free { id } => done(self.free(client, id)),
            Request::Ungrant { id, grantee } => done(self.ungrant(client, id, grantee)),
            Request::PoolInfo { pool } => Outcome { result: self.pool_info(pool).map(Reply::PoolInfo) },
        }
    }

    fn client(&self, client: usize) -> &capbuf_protocol::ClientConfig {
        self.config.clients[client].as_ref().expect("dispatch only sees configured clients")
    }

    fn hello(&self, client: usize) -> HelloReply {
        let c = self.client(client);
        HelloReply {
            version: PROTOCOL_VERSION,
            client_id: c.client_id,
            pools: self.config.pool_count() as u64,
            quota_bytes: c.quota_bytes,
            quota_buffers: c.quota_buffers,
            quota_attachments: c.quota_attachments,
        }
    }

    fn pool_info(&self, pool: u64) -> Result<PoolInfoReply, Error> {
        let state = self.pool_state(pool)?;
        Ok(PoolInfoReply {
            total: self.total_bytes(pool as usize).ok_or(Error::InvalidPool)?,
            free: state.pool.free_pages() << PAGE_BITS,
            largest_free: state.pool.largest_free() << PAGE_BITS,
            lost: 0,
        })
    }

    fn pool_state(&self, pool: u64) -> Result<&PoolState<NODES>, Error> {
        usize::try_from(pool).ok().and_then(|p| self.pools.get(p)?.as_ref()).ok_or(Error::InvalidPool)
    }

    /// Slots one pool operation may need, with the objects of one request.
    fn slots_needed(&self, pool: usize) -> usize {
        reserve::request_slots(self.pool_order(pool))
    }

    /// Run a pool operation with its events mirrored in the kernel. A kernel
    /// failure while mirroring wins over the operation's own result.
    fn mirrored<R>(
        &mut self,
        pool: usize,
        operation: impl FnOnce(&mut Pool<NODES>, &mut dyn FnMut(Event)) -> R,
    ) -> Result<R, Error> {
        let Some(state) = self.pools[pool].as_mut() else { return Err(Error::InvalidPool) };
        let mut mirror = Mirror {
            kernel: &mut self.kernel,
            blocks: &mut self.blocks,
            free_slots: &mut self.free_slots,
            pool,
            failed: None,
        };
        let result = operation(&mut state.pool, &mut |e| mirror.apply(e));
        mirror.failed.map_or(Ok(result), Err)
    }

    fn pool_alloc(&mut self, pool: usize, pages: u64, align_order: u32) -> Result<Allocation, Error> {
        let allocation = self.mirrored(pool, |p, mut events| p.alloc(pages, align_order, &mut events))?;
        allocation.map_err(|e| match e {
            capbuf_pool::AllocError::ZeroSize => Error::ZeroSize,
            capbuf_pool::AllocError::TooLarge => Error::TooLarge,
            capbuf_pool::AllocError::OutOfMemory => Error::OutOfMemory,
        })
    }

    fn pool_free(&mut self, pool: usize, allocation: Allocation) -> Result<(), Error> {
        self.mirrored(pool, |p, mut events| p.free(allocation, &mut events))?.map_err(|_| Error::Kernel)
    }

    /// The untyped capability of `block`, ready for objects to be retyped
    /// from it: a dormant block is collapsed first.
    fn block_slot(&mut self, pool: usize, block: Block) -> Result<Slot, Error> {
        let entry = *self.blocks.get(&block_key(pool, block)).ok_or(Error::Kernel)?;
        if entry.dormant {
            self.collapse(pool, block)?;
        }
        Ok(entry.slot)
    }

    /// Revoke a dormant block for real: its halves (and theirs) are deleted
    /// and their slots freed. Its next retype resets (zeroes) it.
    fn collapse(&mut self, pool: usize, block: Block) -> Result<(), Error> {
        let entry = self.blocks.get_mut(&block_key(pool, block)).ok_or(Error::Kernel)?;
        let slot = entry.slot;
        entry.dormant = false;
        self.kernel.revoke(slot).map_err(kernel_error)?;
        self.forget_below(pool, block)
    }

    fn forget_below(&mut self, pool: usize, block: Block) -> Result<(), Error> {
        if block.order() == 0 {
            return Ok(());
        }
        let (left, right) = block.children();
        for child in [left, right] {
            if let Some(cap) = self.blocks.remove(&block_key(pool, child)) {
                self.free_slots.push(cap.slot).map_err(|_| Error::Kernel)?;
                self.forget_below(pool, child)?;
            }
        }
        Ok(())
    }

    /// Collapse every dormant block: afterwards only blocks that are split or
    /// in use have untyped capabilities of their own. memsrv does this when
    /// it runs short of slots; tests use it to see the kernel state return to
    /// exactly the pools' untypeds.
    pub fn reclaim(&mut self) -> Result<(), Error> {
        loop {
            // Topmost first: collapsing a block forgets every dormant block below it.
            let next = self.blocks.iter().filter(|(_, cap)| cap.dormant).map(|(key, _)| *key).min_by_key(|key| {
                let node = *key as u32;
                (31 - node.leading_zeros(), *key)
            });
            let Some(key) = next else { return Ok(()) };
            let pool = (key >> 32) as usize;
            let node = key as u32;
            let order = self.pool_order(pool) - (31 - node.leading_zeros());
            self.collapse(pool, Block::new(node, order))?;
        }
    }

    /// Make sure `needed` slots are free, collapsing dormant blocks if not.
    fn ensure_slots(&mut self, needed: usize) -> Result<(), Error> {
        if self.free_slots.len() < needed {
            self.reclaim()?;
        }
        if self.free_slots.len() < needed {
            return Err(Error::OutOfSlots);
        }
        Ok(())
    }

    fn pool_order(&self, pool: usize) -> u32 {
        self.pools[pool].as_ref().map_or(0, |p| p.pool.order())
    }

    /// The untyped capability of reserve block `index`, ready to retype
    /// metadata from. Reserve blocks are allocated leaves, never dormant.
    fn reserve_slot(&mut self, index: usize) -> Result<Slot, Error> {
        let reserved = self.reserves.get(index).ok_or(Error::Kernel)?;
        let block = reserved.block.blocks(self.pool_order(reserved.pool)).next().ok_or(Error::Kernel)?;
        self.block_slot(reserved.pool, block)
    }

    /// A free block of client `client`'s reserve. Its quotas, checked first,
    /// guarantee one (see [`reserve`]): none is a memsrv bug.
    fn reserve_block_for(&self, client: usize) -> Result<usize, Error> {
        self.reserves.free_block(client).ok_or(Error::Kernel)
    }

    fn take_slot(&mut self) -> Result<Slot, Error> {
        self.free_slots.pop().ok_or(Error::OutOfSlots)
    }

    fn release_slot(&mut self, slot: Slot) -> Result<(), Error> {
        self.free_slots.push(slot).map_err(|_| Error::Kernel)
    }

    fn alloc(&mut self, client: usize, size: u64, align_bits: u64, pool: u64, flags: u64) -> Result<BufferId, Error> {
        self.pool_state(pool)?;
        let pool = pool as usize;
        let flags = AllocFlags::from_bits(flags).ok_or(Error::InvalidFlags)?;
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        let order = self.pool_order(pool);
        if size > 1 << MAX_BUFFER_BITS || size > 1 << (order + PAGE_BITS) {
            return Err(Error::TooLarge);
        }
        if align_bits > MAX_ALIGN_BITS as u64 || align_bits > (order + PAGE_BITS) as u64 {
            return Err(Error::InvalidAlignment);
        }
        let pages = size.div_ceil(1 << PAGE_BITS);
        let align_order = (align_bits as u32).saturating_sub(PAGE_BITS);
        let bytes = charged_pages(pages, align_order) << PAGE_BITS;
        let quota = *self.client(client);
        let usage = self.usage[client];
        if usage.buffers.saturating_add(1) > quota.quota_buffers {
            return Err(Error::QuotaBuffers);
        }
        if usage.bytes.saturating_add(bytes) > quota.quota_bytes {
            return Err(Error::QuotaBytes);
        }
        if !self.registry.has_room() {
            return Err(Error::TooManyBuffers);
        }
        let meta = self.reserve_block_for(client)?;
        self.ensure_slots(self.slots_needed(pool))?;
        let layout = FrameLayout::for_pages(pages);
        let data = self.pool_alloc(pool, pages, align_order)?;
        self.reserves.set_in_use(meta, true);
        let master = self.make_frames(pool, data, meta, layout)?;
        let id = self.registry.insert(Buffer {
            owner: client,
            pool,
            data,
            align_order,
            meta,
            master,
            flags,
            grants: [None; MAX_CLIENTS],
            attachments: [None; MAX_CLIENTS],
        })?;
        self.usage[client].buffers += 1;
        self.usage[client].bytes += bytes;
        Ok(id)
    }

    /// Retype the master CNode from the owner's reserve block `meta` and the
    /// frames from the data leaves into it, large frames first.
    fn make_frames(&mut self, pool: usize, data: Allocation, meta: usize, layout: FrameLayout) -> Result<Slot, Error> {
        debug_assert!(layout.master_pages() <= self.reserves.block_pages());
        let meta_slot = self.reserve_slot(meta)?;
        let master = self.guarded_cnode(meta_slot, layout.master_radix())?;
        let mut index = 0u32;
        let order = self.pool_order(pool);
        for leaf in data.blocks(order) {
            let leaf_slot = self.block_slot(pool, leaf)?;
            let (object, mut count) = if leaf.order() + PAGE_BITS >= capbuf_protocol::LARGE_PAGE_BITS {
                (Object::LargeFrame, 1u32 << (leaf.order() + PAGE_BITS - capbuf_protocol::LARGE_PAGE_BITS))
            } else {
                (Object::SmallFrame, 1u32 << leaf.order())
            };
            while count > 0 {
                let chunk = count.min(RETYPE_FAN_OUT_LIMIT);
                self.kernel
                    .retype(
                        leaf_slot,
                        object,
                        CapRef::InNode { node: master, radix: layout.master_radix(), index },
                        chunk,
                    )
                    .map_err(kernel_error)?;
                index += chunk;
                count -= chunk;
            }
        }
        debug_assert_eq!(index as u64, layout.frames());
        Ok(master)
    }

    fn info(&self, client: usize, id: BufferId) -> Result<InfoReply, Error> {
        let buffer = self.registry.get_for(client, id)?;
        let rights = buffer.allowed(client).ok_or(Error::UnknownBuffer)?;
        let layout = FrameLayout::for_pages(buffer.data.pages);
        let dma = self.client(client).dma;
        Ok(InfoReply {
            size: buffer.data.pages << PAGE_BITS,
            physical_address: if dma { self.physical_address(buffer) } else { PADDR_HIDDEN },
            page_bits: layout.page_bits() as u64,
            rights,
            attachments: buffer.attachment_count(),
            flags: buffer.flags,
            pool: buffer.pool as u64,
            owner: self.client(buffer.owner).client_id,
        })
    }

    /// Retype a CNode of `2^radix` slots from the untyped in `untyped` and
    /// give its capability the guard that makes its slots addressable by
    /// capability pointer ([`capbuf_protocol::inner_cptr`]): a retype into a
    /// scratch slot, then a mutate into the table slot it keeps.
    fn guarded_cnode(&mut self, untyped: Slot, radix: u32) -> Result<Slot, Error> {
        let scratch = self.take_slot()?;
        let node = self.take_slot()?;
        self.kernel.retype(untyped, Object::CNode { radix }, CapRef::Table(scratch), 1).map_err(kernel_error)?;
        let guard = capbuf_protocol::inner_bits(self.config.table_bits) as u32 - radix;
        self.kernel.mutate_cnode(scratch, node, guard).map_err(kernel_error)?;
        self.release_slot(scratch)?;
        Ok(node)
    }

    /// Attach: memsrv maps the buffer into the client's window itself. In
    /// an untyped block of the client's reserve it makes a CNode holding
    /// copies of the buffer's frame capabilities with the attachment's rights
    /// (and a page table for the 4 KiB tail), then maps those copies into the
    /// client's VSpace. The client never holds a capability to the frames, so
    /// revoking the block (detach, ungrant, a lowered grant, free) unmaps
    /// every mapping of the attachment, whatever the client does.
    fn attach(&mut self, client: usize, id: BufferId, rights: u64) -> Result<AttachReply, Error> {
        let buffer = self.registry.get_for(client, id)?;
        let allowed = buffer.allowed(client).ok_or(Error::UnknownBuffer)?;
        let rights = Rights::try_from(rights).map_err(|_| Error::InvalidRights)?;
        if !rights.within(allowed) {
            return Err(Error::RightsEscalation);
        }
        if buffer.attachments[client].is_some() {
            return Err(Error::AlreadyAttached);
        }
        if self.usage[client].attachments.saturating_add(1) > self.client(client).quota_attachments {
            return Err(Error::QuotaAttachments);
        }
        let (pages, master, flags) = (buffer.data.pages, buffer.master, buffer.flags);
        let layout = FrameLayout::for_pages(pages);
        let run = self.windows.find(client, (layout.large + layout.page_tables()) as u32).ok_or(Error::WindowFull)?;
        // The CNode and a scratch slot for making it; the scratch comes back.
        self.ensure_slots(2)?;
        debug_assert!(layout.attachment_pages() <= self.reserves.block_pages());
        let meta = self.reserve_block_for(client)?;
        let meta_slot = self.reserve_slot(meta)?;
        self.reserves.set_in_use(meta, true);
        let radix = layout.attachment_radix();
        let cnode = self.guarded_cnode(meta_slot, radix)?;
        let frames = layout.frames() as u32;
        if layout.page_tables() > 0 {
            self.kernel
                .retype(meta_slot, Object::PageTable, CapRef::InNode { node: cnode, radix, index: frames }, 1)
                .map_err(kernel_error)?;
        }
        for index in 0..frames {
            self.kernel
                .copy(
                    CapRef::InNode { node: master, radix: layout.master_radix(), index },
                    CapRef::InNode { node: cnode, radix, index },
                    rights,
                )
                .map_err(kernel_error)?;
        }
        self.map(client, run, cnode, layout, MapAttributes { rights, cached: !flags.uncached() })?;
        self.windows.take(client, run);
        let buffer = self.registry.get_mut(id)?;
        buffer.attachments[client] = Some(Attachment { rights, meta, cnode, window: run });
        self.usage[client].attachments += 1;
        Ok(AttachReply {
            size: pages << PAGE_BITS,
            vaddr: run.vaddr(),
            page_bits: layout.page_bits() as u64,
            rights,
            flags,
        })
    }

    /// Map an attachment's frame copies (in CNode `cnode`) into client
    /// `client`'s window at `run`: each 2 MiB frame in a slot of its own,
    /// then the page table and the 4 KiB frames in the next slot.
    fn map(
        &mut self,
        client: usize,
        run: Run,
        cnode: Slot,
        layout: FrameLayout,
        attributes: MapAttributes,
    ) -> Result<(), Error> {
        let vspace = (MEMSRV_TABLE_VSPACES as usize + client) as Slot;
        let radix = layout.attachment_radix();
        let large = 1u64 << capbuf_protocol::LARGE_PAGE_BITS;
        let frame = |index: u64| CapRef::InNode { node: cnode, radix, index: index as u32 };
        for i in 0..layout.large {
            self.kernel.map_frame(frame(i), vspace, run.vaddr() + i * large, attributes).map_err(kernel_error)?;
        }
        if layout.small > 0 {
            let base = run.vaddr() + layout.large * large;
            self.kernel.map_page_table(frame(layout.frames()), vspace, base).map_err(kernel_error)?;
            for j in 0..layout.small {
                self.kernel
                    .map_frame(frame(layout.large + j), vspace, base + (j << PAGE_BITS), attributes)
                    .map_err(kernel_error)?;
            }
        }
        Ok(())
    }

    /// Revoke one attachment: its block holds the CNode, the frame copies in
    /// it and the page table, so the kernel unmaps them all from the client;
    /// the block goes back to the client's reserve and the run to its window.
    fn teardown(&mut self, id: BufferId, client: usize) -> Result<(), Error> {
        let buffer = self.registry.get_mut(id)?;
        let Some(attachment) = buffer.attachments[client].take() else { return Ok(()) };
        let meta_slot = self.reserve_slot(attachment.meta)?;
        self.kernel.revoke(meta_slot).map_err(kernel_error)?;
        self.release_slot(attachment.cnode)?;
        self.reserves.set_in_use(attachment.meta, false);
        self.windows.release(client, attachment.window);
        self.usage[client].attachments -= 1;
        Ok(())
    }

    fn detach(&mut self, client: usize, id: BufferId) -> Result<(), Error> {
        let buffer = self.registry.get_for(client, id)?;
        if buffer.attachments[client].is_none() {
            return Err(Error::NotAttached);
        }
        self.teardown(id, client)
    }

    fn free(&mut self, client: usize, id: BufferId) -> Result<(), Error> {
        let buffer = self.registry.get_for(client, id)?;
        if buffer.owner != client {
            return Err(Error::NotOwner);
        }
        for holder in 0..MAX_CLIENTS {
            self.teardown(id, holder)?;
        }
        let buffer = self.registry.remove(id)?;
        let order = self.pool_order(buffer.pool);
        for leaf in buffer.data.blocks(order) {
            let slot = self.block_slot(buffer.pool, leaf)?;
            self.kernel.revoke(slot).map_err(kernel_error)?;
        }
        let meta_slot = self.reserve_slot(buffer.meta)?;
        self.kernel.revoke(meta_slot).map_err(kernel_error)?;
        self.release_slot(buffer.master)?;
        self.pool_free(buffer.pool, buffer.data)?;
        self.reserves.set_in_use(buffer.meta, false);
        self.usage[client].buffers -= 1;
        self.usage[client].bytes -= buffer.charged_pages() << PAGE_BITS;
        Ok(())
    }

    fn grantee(&self, client: usize, id: BufferId, grantee: u64) -> Result<usize, Error> {
        let buffer = self.registry.get_for(client, id)?;
        if buffer.owner != client {
            return Err(Error::NotOwner);
        }
        match self.config.client_by_id(grantee) {
            Some((index, _)) if index != client => Ok(index),
            _ => Err(Error::InvalidGrantee),
        }
    }

    /// Grant or change a grant. Lowering a grantee's rights below those of
    /// its attachment revokes the attachment: rights only ever shrink.
    fn grant(&mut self, client: usize, id: BufferId, grantee: u64, rights: u64) -> Result<(), Error> {
        let grantee = self.grantee(client, id, grantee)?;
        let rights = Rights::try_from(rights).map_err(|_| Error::InvalidRights)?;
        let buffer = self.registry.get(id)?;
        if !rights.within(buffer.flags.max_rights()) {
            return Err(Error::RightsEscalation);
        }
        if buffer.attachments[grantee].is_some_and(|a| !a.rights.within(rights)) {
            self.teardown(id, grantee)?;
        }
        self.registry.get_mut(id)?.grants[grantee] = Some(rights);
        Ok(())
    }

    fn ungrant(&mut self, client: usize, id: BufferId, grantee: u64) -> Result<(), Error> {
        let grantee = self.grantee(client, id, grantee)?;
        if self.registry.get(id)?.grants[grantee].is_none() {
            return Err(Error::NotGrantee);
        }
        self.teardown(id, grantee)?;
        self.registry.get_mut(id)?.grants[grantee] = None;
        Ok(())
    }
}
