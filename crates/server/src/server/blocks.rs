//! The pools' buddy trees mirrored by untyped capabilities.
//!
//! A split retypes a block into two half-size untypeds (or wakes a dormant
//! block's halves); a merge marks the block dormant. Merging lazily matters:
//! revoking a block and retyping it later makes the kernel zero all of it, so
//! an eager merge of a whole pool would cost the next small allocation a reset
//! of the entire pool. A dormant block is revoked for real ("collapsed") only
//! when it is needed whole, or for slots.
//!
//! A dormant block is one the pool sees free but below which the kernel may
//! hold capabilities: its two halves (the usual case), one half (a split the
//! kernel refused halfway), or frames nobody refers to any more (a buffer
//! whose undo the kernel refused). It is only woken when both halves are
//! there; anything else collapses it first. So a split needs no undo: what
//! the kernel did before refusing stays, dormant, and is revoked on next use.

use core::hash::{BuildHasherDefault, Hasher};

use capbuf_pool::{Allocation, Block, Event, Placement};
use capbuf_protocol::{Error, Invocation, PAGE_BITS};
use heapless::IndexMap;

use super::state::{Slots, State};
use super::TABLE_CAPACITY;
use crate::kernel::{CapRef, Failure, Kernel, Named, Object, Slot};

/// The untyped capability of one block of a pool's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockCap {
    pub(super) slot: Slot,
    /// The pool sees the block free, but the kernel may hold capabilities
    /// below it (see the module documentation).
    pub(super) dormant: bool,
    /// Which of its halves this map holds ([`LEFT`], [`RIGHT`]): kept with
    /// the map, so a merge (every FREE makes some) or a wake (an ALLOC's
    /// split of a dormant block) costs one lookup, not three.
    pub(super) halves: u8,
}

/// [`BlockCap::halves`]: the left half's untyped exists.
pub(super) const LEFT: u8 = 1;
/// [`BlockCap::halves`]: the right half's untyped exists.
pub(super) const RIGHT: u8 = 2;

/// What [`BlockCap::halves`] must be: which halves of `block` the map holds.
#[cfg(debug_assertions)]
fn halves_in(blocks: &Blocks, pool: usize, block: Block) -> u8 {
    if block.order() == 0 {
        return 0;
    }
    let (left, right) = block.children();
    let has = |half| blocks.contains_key(&block_key(pool, half));
    (if has(left) { LEFT } else { 0 }) | (if has(right) { RIGHT } else { 0 })
}

/// Every untyped block that exists, by [`block_key`].
pub(super) type Blocks = IndexMap<u64, BlockCap, BuildHasherDefault<KeyHasher>, TABLE_CAPACITY>;

/// The blocks' hash: Fibonacci hashing of the 64-bit key, a multiply (FNV,
/// heapless's default, takes a multiply per byte: a lookup cost about 60
/// instructions, and every FREE and ALLOC makes several). heapless keeps the
/// low 16 bits of `finish` and masks them, so `finish` gives the product's
/// top bits, the well-mixed ones.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by u64 keys; any byte string still hashes.
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 >> 48
    }
}

/// Key of `block` of pool `pool`.
pub(super) fn block_key(pool: usize, block: Block) -> u64 {
    ((pool as u64) << 32) | block.node() as u64
}

/// What a free or a settle of pool `pool` reports, applied to the block
/// map: a merge marks its block dormant (no kernel invocation); a split,
/// which neither makes, sets `split`. One closure type for all of them, so
/// that the pool's code for them is there once.
fn merges<'a>(blocks: &'a mut Blocks, pool: usize, split: &'a mut bool) -> impl FnMut(Event) + 'a {
    move |event| match event {
        Event::Merge(block) => merge(blocks, pool, block),
        Event::Split(_) => *split = true,
    }
}

/// The pool merged `block`: it turns dormant if the kernel holds either of
/// its halves (a block whose split the kernel refused at once has none).
fn merge(blocks: &mut Blocks, pool: usize, block: Block) {
    #[cfg(debug_assertions)]
    let expected = halves_in(blocks, pool, block);
    if let Some(entry) = blocks.get_mut(&block_key(pool, block)) {
        #[cfg(debug_assertions)]
        debug_assert_eq!(entry.halves, expected, "a block's halves flag follows the map");
        entry.dormant = entry.halves != 0;
    }
}

/// Revoke `block` for real: everything below it is deleted and the slots of
/// its halves (and theirs) freed. Its next retype resets (zeroes) it. If the
/// kernel refuses, nothing changed.
fn collapse<K: Kernel>(
    kernel: &mut K,
    blocks: &mut Blocks,
    slots: &mut Slots,
    pool: usize,
    block: Block,
) -> Result<(), Failure> {
    let entry = blocks.get(&block_key(pool, block)).ok_or(Error::Internal)?;
    kernel.revoke(entry.slot).named(Invocation::CNodeRevoke)?;
    // The kernel holds nothing below the block now: say so before the map
    // forgets its halves, so the flags stay exact even if that fails.
    if let Some(entry) = blocks.get_mut(&block_key(pool, block)) {
        entry.dormant = false;
        entry.halves = 0;
    }
    forget_below(blocks, slots, pool, block)?;
    Ok(())
}

fn forget_below(blocks: &mut Blocks, slots: &mut Slots, pool: usize, block: Block) -> Result<(), Error> {
    if block.order() == 0 {
        return Ok(());
    }
    let (left, right) = block.children();
    for child in [left, right] {
        if let Some(cap) = blocks.remove(&block_key(pool, child)) {
            slots.release(cap.slot)?;
            forget_below(blocks, slots, pool, child)?;
        }
    }
    Ok(())
}

/// Applies one pool operation's events to the kernel. After the first
/// failure it applies no more: the caller rolls the pool back.
struct Mirror<'a, K> {
    kernel: &'a mut K,
    blocks: &'a mut Blocks,
    slots: &'a mut Slots,
    pool: usize,
    failed: Option<Failure>,
}

impl<K: Kernel> Mirror<'_, K> {
    fn apply(&mut self, event: Event) {
        if self.failed.is_some() {
            return;
        }
        let result = match event {
            Event::Split(block) => self.split(block),
            Event::Merge(block) => {
                merge(self.blocks, self.pool, block);
                Ok(())
            }
        };
        if let Err(failure) = result {
            self.failed = Some(failure);
        }
    }

    fn split(&mut self, block: Block) -> Result<(), Failure> {
        let key = block_key(self.pool, block);
        #[cfg(debug_assertions)]
        let expected = halves_in(self.blocks, self.pool, block);
        let entry = self.blocks.get_mut(&key).ok_or(Error::Internal)?;
        #[cfg(debug_assertions)]
        debug_assert_eq!(entry.halves, expected, "a block's halves flag follows the map");
        if entry.dormant && entry.halves == LEFT | RIGHT {
            entry.dormant = false;
            return Ok(());
        }
        let entry = *entry;
        if entry.dormant {
            collapse(self.kernel, self.blocks, self.slots, self.pool, block)?;
        }
        let size_bits = block.order() - 1 + PAGE_BITS;
        let (left, right) = block.children();
        // The block's `halves` flag follows each half as it is made.
        for (bit, half) in [(LEFT, left), (RIGHT, right)] {
            let slot = self.slots.take()?;
            let made = self.kernel.retype(entry.slot, Object::Untyped { size_bits }, CapRef::Table(slot), 1);
            if let Err(failure) = made.named(Invocation::UntypedRetype) {
                self.slots.release(slot)?;
                return Err(failure.into());
            }
            let cap = BlockCap { slot, dormant: false, halves: 0 };
            self.blocks.insert(block_key(self.pool, half), cap).map_err(|_| Error::Internal)?;
            self.blocks.get_mut(&key).ok_or(Error::Internal)?.halves |= bit;
        }
        Ok(())
    }
}

fn alloc_error(error: capbuf_pool::AllocError) -> Error {
    match error {
        capbuf_pool::AllocError::ZeroSize => Error::ZeroSize,
        capbuf_pool::AllocError::TooLarge => Error::TooLarge,
        capbuf_pool::AllocError::OutOfMemory => Error::OutOfMemory,
    }
}

impl<const NODES: usize> State<NODES> {
    /// Allocate from pool `pool` and split its blocks in the kernel to
    /// match: at page `at` (the placement a request was decided with), or
    /// where the pool places it for `None`. If the kernel refuses a split,
    /// the pool is rolled back: the blocks split so far stay, dormant.
    pub(super) fn pool_alloc<K: Kernel>(
        &mut self,
        kernel: &mut K,
        pool: usize,
        pages: u64,
        align_order: u32,
        at: Option<&Placement>,
    ) -> Result<Allocation, Failure> {
        let state = self.pools[pool].as_mut().ok_or(Error::InvalidPool)?;
        let mut mirror = Mirror { kernel, blocks: &mut self.blocks, slots: &mut self.slots, pool, failed: None };
        // At the placement the request was decided with (no search), or
        // wherever the pool places it.
        let allocation = match at {
            Some(placement) => {
                debug_assert_eq!(placement.pages(), pages);
                state.pool.alloc_placed(*placement, &mut |event| mirror.apply(event))
            }
            None => state.pool.alloc(pages, align_order, &mut |event| mirror.apply(event)),
        };
        let failed = mirror.failed;
        let allocation = allocation.map_err(alloc_error)?;
        if let Some(failure) = failed {
            // Merged at once, never parked (capbuf_pool's `release`): a
            // parked run is handed out again with no split, and these blocks
            // are not all split. (Such a run has free pages beside it, which
            // the pool does not park anyway: a run that needed a split was
            // carved from a longer free run.)
            self.give_back(pool, allocation, false)?;
            return Err(failure);
        }
        Ok(allocation)
    }

    /// Give pages back to pool `pool`. Merges only mark blocks dormant: no
    /// kernel invocation, so this cannot fail but for a memsrv bug.
    pub(super) fn pool_free(&mut self, pool: usize, allocation: Allocation) -> Result<(), Error> {
        self.give_back(pool, allocation, true)
    }

    /// [`Self::pool_free`], letting the pool park a small run (`free`) or
    /// not (`release`).
    fn give_back(&mut self, pool: usize, allocation: Allocation, park: bool) -> Result<(), Error> {
        let state = self.pools[pool].as_mut().ok_or(Error::Internal)?;
        let mut split = false;
        let freed = {
            let mut apply = merges(&mut self.blocks, pool, &mut split);
            if park {
                state.pool.free(allocation, &mut apply)
            } else {
                state.pool.release(allocation, &mut apply)
            }
        };
        if freed.is_err() || split {
            return Err(Error::Internal);
        }
        Ok(())
    }

    /// Make the allocated `block` of pool `pool` ready to retype from: a
    /// dormant block is collapsed first. Returns its slot.
    pub(super) fn ready_block<K: Kernel>(
        &mut self,
        kernel: &mut K,
        pool: usize,
        block: Block,
    ) -> Result<Slot, Failure> {
        let entry = *self.blocks.get(&block_key(pool, block)).ok_or(Error::Internal)?;
        if entry.dormant {
            collapse(kernel, &mut self.blocks, &mut self.slots, pool, block)?;
        }
        Ok(entry.slot)
    }

    /// Collapse every dormant block, topmost first (collapsing a block
    /// forgets every dormant block below it): afterwards only blocks that are
    /// split or in use have untyped capabilities of their own. Each collapse
    /// is complete in itself, so if the kernel refuses one, those before it
    /// stay done and the rest can be retried.
    pub(super) fn reclaim<K: Kernel>(&mut self, kernel: &mut K) -> Result<(), Failure> {
        self.settle_pools();
        loop {
            let next = self.blocks.iter().filter(|(_, cap)| cap.dormant).map(|(key, _)| *key).min_by_key(|key| {
                let node = *key as u32;
                (31 - node.leading_zeros(), *key)
            });
            let Some(key) = next else { return Ok(()) };
            let pool = (key >> 32) as usize;
            let node = key as u32;
            let order = self.pool_order(pool) - (31 - node.leading_zeros());
            collapse(kernel, &mut self.blocks, &mut self.slots, pool, Block::new(node, order))?;
        }
    }

    /// Merge every pool's parked runs (capbuf_pool's `settle`): a merge only
    /// marks blocks dormant, no kernel invocation.
    #[cold]
    #[inline(never)]
    fn settle_pools(&mut self) {
        for (pool, state) in self.pools.iter_mut().enumerate() {
            if let Some(state) = state {
                let mut split = false;
                state.pool.settle(&mut merges(&mut self.blocks, pool, &mut split));
                debug_assert!(!split, "merging parked runs splits nothing");
            }
        }
    }

    /// Merge the parked runs once the table's free slots are fewer than one
    /// request may need. A parked run keeps its blocks, and their slots, as
    /// they were, where a merge would have marked them dormant for
    /// [`Self::reclaim`] to take back; [`Self::reclaimable_slots`] counts
    /// only dormant ones. Done before a request that takes slots (ALLOC,
    /// ATTACH, EXPORT) is decided, and before the waiting ALLOCs are
    /// checked, so that one is refused (or left waiting) for slots only if
    /// reclaiming everything would not give them.
    #[inline]
    pub(super) fn settle_if_short(&mut self) {
        if self.slots.count() < self.settle_below {
            self.settle_pools();
        }
    }

    /// Slots [`Self::reclaim`] would free: those of blocks below a dormant block.
    pub(super) fn reclaimable_slots(&self) -> usize {
        let below_dormant = |key: u64| {
            let mut node = key as u32 / 2;
            while node >= 1 {
                if self.blocks.get(&((key & !0xffff_ffff) | node as u64)).is_some_and(|cap| cap.dormant) {
                    return true;
                }
                node /= 2;
            }
            false
        };
        self.blocks.keys().filter(|key| below_dormant(**key)).count()
    }

    /// Mark the leaves of `allocation` dormant: the kernel may hold frames
    /// below them that memsrv could not revoke. They are revoked before
    /// they are used again.
    pub(super) fn mark_dormant(&mut self, pool: usize, allocation: Allocation) {
        for leaf in allocation.blocks(self.pool_order(pool)) {
            if let Some(entry) = self.blocks.get_mut(&block_key(pool, leaf)) {
                entry.dormant = true;
            }
        }
    }
}
