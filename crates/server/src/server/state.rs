//! memsrv's bookkeeping: everything it knows, none of the kernel.

use capbuf_pool::Pool;
use capbuf_protocol::{ClientConfig, Config, Error, KernelFailure, PoolId, MAX_CLIENTS, MAX_POOLS, PAGE_BITS};

use super::blocks::{block_key, Blocks};
use super::{Lost, Usage, TABLE_CAPACITY};
use crate::kernel::Slot;
use crate::quarantine::Quarantine;
use crate::registry::Registry;
use crate::reserve::Reserves;
use crate::wait::Waits;
use crate::window::Windows;

/// One pool: where it is and its allocator.
#[derive(Clone)]
pub(super) struct PoolState<const NODES: usize> {
    pub(super) base: u64,
    pub(super) pool: Pool<NODES>,
}

/// The table slots memsrv has not filled.
#[derive(Clone)]
pub(super) struct Slots {
    free: heapless::Vec<Slot, TABLE_CAPACITY>,
}

impl Slots {
    /// Every slot in `range`, handed out lowest first.
    pub(super) fn new(range: core::ops::Range<Slot>) -> Option<Slots> {
        let mut free = heapless::Vec::new();
        for slot in range.rev() {
            free.push(slot).ok()?;
        }
        Some(Slots { free })
    }

    pub(super) fn take(&mut self) -> Result<Slot, Error> {
        self.free.pop().ok_or(Error::OutOfSlots)
    }

    pub(super) fn release(&mut self, slot: Slot) -> Result<(), Error> {
        self.free.push(slot).map_err(|_| Error::Internal)
    }

    pub(super) fn count(&self) -> usize {
        self.free.len()
    }

    /// The free slots, the next one handed out last.
    pub(super) fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.free.iter().copied()
    }
}

/// What went wrong in the current request beyond its own failure: an undo
/// the kernel refused too, and what that lost.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Incident {
    pub(super) undo: Option<KernelFailure>,
    pub(super) lost: Lost,
}

/// Everything memsrv knows: configuration, pools, buffers, usage, the
/// untyped capabilities mirroring the pools, table slots, reserves, windows.
#[derive(Clone)]
pub(super) struct State<const NODES: usize> {
    pub(super) config: Config,
    pub(super) pools: [Option<PoolState<NODES>>; MAX_POOLS],
    pub(super) registry: Registry,
    /// Freed buffers' pages a device may still write.
    pub(super) quarantine: Quarantine,
    pub(super) usage: [Usage; MAX_CLIENTS],
    pub(super) blocks: Blocks,
    pub(super) slots: Slots,
    /// Each client's metadata reserve, carved from the pools at start-up.
    pub(super) reserves: Reserves,
    /// Each client's mapping window.
    pub(super) windows: Windows,
    /// ALLOCs with the WAIT flag waiting for memory or quota.
    pub(super) waits: Waits,
    /// Table slots lost for good: they hold capabilities memsrv could not delete.
    pub(super) lost_slots: u64,
    /// The most table slots one request may need: below that many free,
    /// the pools' parked runs are merged before a request is decided.
    pub(super) settle_below: usize,
    pub(super) incident: Incident,
}

impl<const NODES: usize> State<NODES> {
    pub(super) fn client(&self, client: usize) -> Result<&ClientConfig, Error> {
        self.config.clients.get(client).and_then(Option::as_ref).ok_or(Error::Internal)
    }

    pub(super) fn pool_state(&self, pool: PoolId) -> Result<&PoolState<NODES>, Error> {
        usize::try_from(pool.0).ok().and_then(|p| self.pools.get(p)?.as_ref()).ok_or(Error::InvalidPool)
    }

    pub(super) fn pool_order(&self, pool: usize) -> u32 {
        self.pools[pool].as_ref().map_or(0, |p| p.pool.order())
    }

    /// The untyped capability of an allocated block: a buffer's leaf or a
    /// reserve block. Neither is ever dormant: a leaf is collapsed when it is
    /// allocated, and reserve blocks are never freed.
    pub(super) fn leaf_slot(&self, pool: usize, block: capbuf_pool::Block) -> Result<Slot, Error> {
        let entry = self.blocks.get(&block_key(pool, block)).ok_or(Error::Internal)?;
        if entry.dormant {
            return Err(Error::Internal);
        }
        Ok(entry.slot)
    }

    /// The untyped capability of reserve block `index`.
    pub(super) fn reserve_slot(&self, index: usize) -> Result<Slot, Error> {
        let slot = self.reserves.slot(index).ok_or(Error::Internal)?;
        debug_assert_eq!(Ok(slot), {
            let reserved = self.reserves.get(index).ok_or(Error::Internal)?;
            let block = reserved.block.blocks(self.pool_order(reserved.pool)).next().ok_or(Error::Internal)?;
            self.leaf_slot(reserved.pool, block)
        });
        Ok(slot)
    }

    /// Bytes of pool `pool` lost for good.
    pub(super) fn lost_bytes(&self, pool: usize) -> u64 {
        self.reserves.lost_pages_in(pool) << PAGE_BITS
    }
}
