//! The request handler: [`Server`] decides ([`decide`]) and then acts
//! ([`act`], with the pools' kernel mirror in [`blocks`]) on its books
//! ([`state`]).

mod act;
mod blocks;
mod decide;
mod fingerprint;
mod reclaim;
mod state;

use capbuf_pool::Pool;
use capbuf_protocol::{
    AllocFlags, AllocReply, AttachReply, Config, ConfigError, DetachReply, Error, ExportReply, FreeReply, GrantReply,
    KernelFailure, QuiesceReply, Reply, Request, UnexportReply, UngrantReply, MAX_CLIENTS, MAX_MESSAGE_WORDS,
    MAX_POOLS, PAGE_BITS,
};

use self::blocks::{block_key, BlockCap};
use self::state::{Incident, PoolState, Slots, State};
use crate::kernel::{Failure, Kernel, Slot};
use crate::quarantine::Quarantine;
use crate::registry::{Buffer, Registry};
use crate::reserve::{self, Reserves};
use crate::wait::{Wait, Waits};
use crate::window::Windows;

/// Slots of the largest table CNode this build can manage: the top of
/// [`capbuf_protocol::TABLE_BITS`], or less ([`crate::capacity::MAX_TABLE_BITS`]).
pub(crate) const TABLE_CAPACITY: usize = 1 << crate::capacity::MAX_TABLE_BITS;

/// What one client holds now, checked against its quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of buffers owned.
    pub bytes: u64,
    /// Buffers owned.
    pub buffers: u64,
    /// Attachments held, and holes: window runs of attachments another
    /// client's request revoked, kept until this client detaches them
    /// ([`crate::window`]).
    pub attachments: u64,
}

/// What memsrv can no longer use because the kernel refused an invocation
/// and then refused to undo it: a reserve block (its bytes) and the table
/// slots holding capabilities into it. Nothing is lost while the kernel
/// only refuses one invocation at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Bytes of pool memory.
    pub bytes: u64,
    /// Table slots.
    pub slots: u64,
}

/// The answer to one request. Only a successful EXPORT's reply carries a
/// capability ([`Outcome::send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reply, or the error to put in the reply label.
    pub result: Result<Reply, Error>,
    /// The table slot of the capability to send with the reply: the CNode
    /// of a successful EXPORT. memsrv's capability pointer for it is
    /// [`capbuf_protocol::send_cptr`].
    pub send: Option<Slot>,
    /// For an [`Error::Kernel`] reply: the invocation the kernel refused and
    /// its error, which the reply carries. memsrv logs it.
    pub kernel: Option<KernelFailure>,
    /// The invocation the kernel refused while memsrv undid the request, if
    /// it did: memsrv logs it with what it lost.
    pub undo: Option<KernelFailure>,
    /// What this request lost for good (see [`Lost`]).
    pub lost: Lost,
    /// Bit `c` set: client index `c` waited for memory ([`AllocFlags::WAIT`])
    /// and its ALLOC would now pass its checks; memsrv notifies it on its
    /// channel and it retries. The queue's order (first registered first,
    /// see [`crate::wait`]) decided who is in the set; the set is signalled
    /// together. Nothing is set aside for it.
    pub notify: u64,
}

impl Outcome {
    fn new(result: Result<(Reply, Option<Slot>), Failure>, incident: Incident, notify: u64) -> Outcome {
        let kernel = match result {
            Err(Failure::Kernel(failure)) => Some(failure),
            _ => None,
        };
        let send = result.ok().and_then(|(_, send)| send);
        let result = result.map(|(reply, _)| reply).map_err(Failure::error);
        Outcome { result, send, kernel, undo: incident.undo, lost: incident.lost, notify }
    }

    /// The reply message: its label (0 or the error code) and the number of
    /// message registers written to `out`.
    pub fn encode(&self, out: &mut [u64; MAX_MESSAGE_WORDS]) -> (u64, usize) {
        match (self.result, self.kernel) {
            (Ok(reply), _) => (0, reply.encode(out)),
            (Err(error), Some(failure)) => (error.code(), failure.encode(out)),
            (Err(error), None) => (error.code(), 0),
        }
    }
}

/// Why memsrv did not start: the configuration's error, and the invocation
/// the kernel refused if that was the reason. memsrv revoked the pools'
/// untypeds again, so the kernel is as it was before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartError {
    /// What is wrong ([`ConfigError::PoolCapability`] when the kernel refused).
    pub error: ConfigError,
    /// The invocation the kernel refused, and its error.
    pub kernel: Option<KernelFailure>,
}

/// memsrv's whole state. `NODES` bounds each pool: [`crate::pool_nodes`]`(order)`
/// for pools of up to `2^order` pages.
/// A clone (host tests with a cloneable kernel model) is an independent
/// copy of memsrv and its kernel, from which an exhaustive checker explores
/// every next request.
#[derive(Clone)]
pub struct Server<K, const NODES: usize> {
    kernel: K,
    state: State<NODES>,
}

impl<K: Kernel, const NODES: usize> Server<K, NODES> {
    /// Set up from a validated configuration. Pool `i`'s untyped capability
    /// must be in table slot `i`; the other slots of the table must be empty.
    /// Carves every client's metadata reserve out of the pools (the only
    /// kernel invocations here: retypes splitting the pools' untypeds), and
    /// refuses a configuration whose reserves do not fit ([`reserve::check`]).
    pub fn new(kernel: K, config: Config) -> Result<Self, ConfigError> {
        Self::start(kernel, config).map_err(|refused| refused.error)
    }

    /// [`Server::new`], saying which invocation the kernel refused if it did.
    pub fn start(kernel: K, config: Config) -> Result<Self, StartError> {
        let refused = |error| StartError { error, kernel: None };
        config.validate().map_err(refused)?;
        reserve::check(&config).map_err(refused)?;
        let block_pages = reserve::block_pages(&config);
        // Slots below the first free one hold the pools' untypeds and the clients' VSpaces.
        let slots = Slots::new(config.first_free_slot() as Slot..1 << config.table_bits)
            .ok_or(refused(ConfigError::TableBits))?;
        let pools = config.pools;
        let orders = pools.iter().flatten().map(|pool| (pool.size_bits as u32).saturating_sub(PAGE_BITS));
        let settle_below = orders.map(reserve::request_slots).max().unwrap_or(0).max(decide::ATTACH_SLOTS);
        // The state is large (its tables are sized for the largest
        // configuration): it is built once, here, and the pools are put in
        // it in place, so that start-up needs no more stack than it must.
        let mut server = Server {
            kernel,
            state: State {
                config,
                pools: [const { None }; MAX_POOLS],
                registry: Registry::default(),
                quarantine: Quarantine::default(),
                usage: [Usage::default(); MAX_CLIENTS],
                blocks: Default::default(),
                slots,
                reserves: Reserves::new(block_pages),
                windows: Windows::default(),
                waits: Waits::default(),
                lost_slots: 0,
                settle_below,
                incident: Incident::default(),
            },
        };
        for (i, pool) in pools.iter().flatten().enumerate() {
            let order = (pool.size_bits as u32).checked_sub(PAGE_BITS).ok_or(refused(ConfigError::PoolSize))?;
            let tree = Pool::new(order).ok_or(refused(ConfigError::PoolSize))?;
            let root = BlockCap { slot: i as Slot, dormant: false, halves: 0 };
            let state = &mut server.state;
            state.blocks.insert(block_key(i, tree.root()), root).map_err(|_| refused(ConfigError::TableBits))?;
            state.pools[i] = Some(PoolState { base: pool.physical_address, pool: tree });
        }
        if let Err(failure) = server.carve_reserves() {
            // Leave the kernel as memsrv found it: the pools' untypeds
            // without children. A refusal here changes nothing more.
            for pool in 0..server.state.config.pool_count() {
                let _ = server.kernel.revoke(pool as Slot);
            }
            return Err(match failure {
                Failure::Refused(Error::OutOfMemory) => refused(ConfigError::ReservesExceedPools),
                Failure::Refused(Error::OutOfSlots) => refused(ConfigError::ReservesExceedTable),
                Failure::Refused(_) => refused(ConfigError::PoolCapability),
                Failure::Kernel(failure) => StartError { error: ConfigError::PoolCapability, kernel: Some(failure) },
            });
        }
        Ok(server)
    }

    /// Allocate every client's reserve blocks, client by client, each from the
    /// last pool of kernel RAM (not `device`) with room (see [`reserve`]). [`reserve::check`] has shown
    /// they fit, so a refusal here means the kernel disagrees with the
    /// configuration.
    fn carve_reserves(&mut self) -> Result<(), Failure> {
        let state = &mut self.state;
        let block_pages = state.reserves.block_pages();
        // A reserve block is one untyped: a naturally aligned block.
        let block_order = block_pages.trailing_zeros();
        for client in 0..MAX_CLIENTS {
            for _ in 0..reserve::reserve_blocks(&state.config, client) {
                let pool = (0..state.config.pool_count())
                    .rev()
                    .filter(|&p| state.config.pools[p].is_some_and(|pool| !pool.device))
                    .find(|&p| state.pools[p].as_ref().is_some_and(|s| s.pool.can_alloc(block_pages, block_order)))
                    .ok_or(Error::OutOfMemory)?;
                let block = state.pool_alloc(&mut self.kernel, pool, block_pages, block_order, None)?;
                let leaf = block.blocks(state.pool_order(pool)).next().ok_or(Error::Internal)?;
                let slot = state.leaf_slot(pool, leaf)?;
                state.reserves.push(client, pool, block, slot).map_err(|_| Error::OutOfSlots)?;
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
        &self.state.config
    }

    /// Live buffers.
    pub fn registry(&self) -> &Registry {
        &self.state.registry
    }

    /// What client index `client` holds.
    pub fn usage(&self, client: usize) -> Usage {
        self.state.usage[client]
    }

    /// Free bytes of pool `pool`: not in a buffer nor in a reserve.
    pub fn free_bytes(&self, pool: usize) -> Option<u64> {
        self.state.pools.get(pool)?.as_ref().map(|p| p.pool.free_pages() << PAGE_BITS)
    }

    /// Bytes of pool `pool` that buffers can use: its size less the metadata
    /// reserves carved from it. What POOL_INFO reports as the total.
    pub fn total_bytes(&self, pool: usize) -> Option<u64> {
        Some(self.size_bytes(pool)? - self.reserved_bytes(pool)?)
    }

    /// Size of pool `pool` in bytes.
    pub fn size_bytes(&self, pool: usize) -> Option<u64> {
        self.state.pools.get(pool)?.as_ref().map(|p| p.pool.pages() << PAGE_BITS)
    }

    /// Bytes of pool `pool` set aside for the clients' metadata reserves
    /// (lost ones included).
    pub fn reserved_bytes(&self, pool: usize) -> Option<u64> {
        self.state.pools.get(pool)?.as_ref().map(|_| self.state.reserves.pages_in(pool) << PAGE_BITS)
    }

    /// Bytes of pool `pool` lost for good: what POOL_INFO reports as lost.
    pub fn lost_bytes(&self, pool: usize) -> Option<u64> {
        self.state.pools.get(pool)?.as_ref().map(|_| self.state.lost_bytes(pool))
    }

    /// Bytes of pool `pool` in quarantine: what POOL_INFO reports as quarantined.
    pub fn quarantined_bytes(&self, pool: usize) -> Option<u64> {
        self.state.pools.get(pool)?.as_ref().map(|_| self.state.quarantine.pages_in(pool) << PAGE_BITS)
    }

    /// Freed buffers whose pages wait for their exposed clients' QUIESCE.
    pub fn quarantine(&self) -> &Quarantine {
        &self.state.quarantine
    }

    /// Everything lost for good since start-up.
    pub fn lost(&self) -> Lost {
        let pools = self.state.config.pool_count();
        Lost { bytes: (0..pools).map(|pool| self.state.lost_bytes(pool)).sum(), slots: self.state.lost_slots }
    }

    /// Every client's metadata reserve.
    pub fn reserves(&self) -> &Reserves {
        &self.state.reserves
    }

    /// Physical address of the first byte of buffer `buffer`.
    pub fn physical_address(&self, buffer: &Buffer) -> u64 {
        let base = self.state.pools[buffer.made.pool].as_ref().map_or(0, |p| p.base);
        base + (buffer.made.data.offset << PAGE_BITS)
    }

    /// Runs pool `pool` keeps parked (capbuf_pool's `parked_runs`): freed,
    /// free, their blocks not merged yet.
    pub fn parked_runs(&self, pool: usize) -> usize {
        self.state.pools.get(pool).and_then(Option::as_ref).map_or(0, |p| p.pool.parked_runs().count())
    }

    /// Table slots not in use.
    pub fn free_slot_count(&self) -> usize {
        self.state.slots.count()
    }

    /// Untyped capabilities memsrv holds for blocks of the pools' trees
    /// (the pools' own included).
    pub fn block_count(&self) -> usize {
        self.state.blocks.len()
    }

    /// Every client's mapping window.
    pub fn windows(&self) -> &Windows {
        &self.state.windows
    }

    /// The ALLOCs waiting for memory, first registered first.
    pub fn waits(&self) -> &Waits {
        &self.state.waits
    }

    /// Collapse every dormant block: afterwards only blocks that are split or
    /// in use have untyped capabilities of their own. memsrv does this when
    /// it runs short of slots; tests use it to see the kernel state return to
    /// exactly the pools' untypeds. If the kernel refuses a revoke, the
    /// blocks collapsed before it stay collapsed; call again to finish.
    pub fn reclaim(&mut self) -> Result<(), Failure> {
        self.state.reclaim(&mut self.kernel)
    }

    /// Handle one request from the client on memsrv's channel `channel`.
    pub fn handle(&mut self, channel: u64, label: u64, words: &[u64], extra_caps: usize) -> Outcome {
        self.state.incident = Incident::default();
        let result = match self.state.config.client_by_channel(channel) {
            None => Err(Error::UnknownCaller.into()),
            Some((client, _)) => match Request::decode(label, words, extra_caps) {
                Ok(request) => self.dispatch(client, request),
                Err(error) => Err(error.into()),
            },
        };
        let notify = self.state.wake_waiters();
        Outcome::new(result, self.state.incident, notify)
    }

    /// Decide, then act: every check and choice is made before the first
    /// kernel invocation. Returns the reply and the table slot of the
    /// capability to send with it, if any.
    fn dispatch(&mut self, client: usize, request: Request) -> Result<(Reply, Option<Slot>), Failure> {
        let (state, kernel) = (&mut self.state, &mut self.kernel);
        let mut send = None;
        let reply = match request {
            Request::Hello {} => Reply::Hello(state.hello(client)?),
            Request::Info { id } => {
                let info = state.info(client, id)?;
                // An `io_space` client's address is an I/O address: its
                // device loses it with the attachment, so FREE need not wait.
                if info.physical_address != capbuf_protocol::PADDR_HIDDEN && !state.client(client)?.io_space {
                    state.registry.get_mut(id)?.exposed |= 1u64 << client;
                }
                Reply::Info(info)
            }
            Request::PoolInfo { pool } => Reply::PoolInfo(state.pool_info(pool)?),
            Request::Alloc { size, align, pool, flags } => {
                let wait = Wait { client, size, align, pool, flags: flags.properties() };
                // The plan is used where it was returned, by reference:
                // moving it out copied its 120 bytes (a call to memcpy).
                state.settle_if_short();
                let planned = state.plan_alloc(client, size, align, pool, wait.flags);
                let plan = match &planned {
                    Ok(plan) => plan,
                    Err(Error::OutOfMemory | Error::QuotaBytes | Error::QuotaBuffers)
                        if flags.contains(AllocFlags::WAIT) =>
                    {
                        state.waits.register(wait).map_err(|_| Error::Internal)?;
                        return Err(Error::Waiting.into());
                    }
                    Err(error) => return Err((*error).into()),
                };
                let id = state.alloc(kernel, client, plan)?;
                state.waits.cancel(client);
                Reply::Alloc(AllocReply { id })
            }
            Request::Attach { id, rights } => {
                state.settle_if_short();
                let plan = state.plan_attach(client, id, rights)?;
                state.attach(kernel, client, plan)?;
                Reply::Attach(AttachReply {
                    size: plan.size,
                    vaddr: plan.run.vaddr() + plan.layout.window_offset(),
                    page_bits: plan.layout.page_bits() as u64,
                    rights: plan.rights,
                    flags: plan.flags,
                })
            }
            Request::Grant { id, grantee, rights } => {
                let plan = state.plan_grant(client, id, grantee, rights)?;
                state.grant(kernel, client, id, plan)?;
                Reply::Grant(GrantReply {})
            }
            Request::Detach { id } => {
                let plan = state.plan_detach(client, id)?;
                state.detach(kernel, client, id, plan)?;
                Reply::Detach(DetachReply {})
            }
            Request::Free { id } => {
                state.check_free(client, id)?;
                state.free(kernel, client, id)?;
                Reply::Free(FreeReply {})
            }
            Request::Quiesce { id } => {
                state.quiesce(client, id)?;
                Reply::Quiesce(QuiesceReply {})
            }
            Request::Ungrant { id, grantee } => {
                let grantee = state.plan_ungrant(client, id, grantee)?;
                state.ungrant(kernel, client, id, grantee)?;
                Reply::Ungrant(UngrantReply {})
            }
            Request::Export { id, rights } => {
                state.settle_if_short();
                let plan = state.plan_export(client, id, rights)?;
                send = Some(state.export(kernel, client, plan)?);
                let layout = plan.layout;
                Reply::Export(ExportReply {
                    large: layout.large,
                    small: layout.small,
                    radix: layout.attachment_radix() as u64,
                })
            }
            Request::Unexport { id } => {
                state.plan_unexport(client, id)?;
                state.teardown_export(kernel, id, client)?;
                Reply::Unexport(UnexportReply {})
            }
            Request::Reclaim { client: target } => {
                let plan = state.plan_reclaim(client, target)?;
                Reply::Reclaim(state.reclaim_client(kernel, plan)?)
            }
        };
        Ok((reply, send))
    }
}
