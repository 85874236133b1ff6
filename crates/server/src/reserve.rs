//! Metadata reserves: the untyped memory each client's attachments and
//! buffers need for their CNodes and page tables, set aside at start-up so
//! that no client's use of a pool can keep another from attaching.
//!
//! Every buffer needs a block for its master CNode (charged to its owner) and
//! every attachment a block for its CNode and page table (charged to the
//! attaching client). Taken from the pools on demand, a client that filled a
//! pool with buffers could not attach them, and could starve others of
//! metadata. Instead memsrv carves, per client, `N` blocks of `M` pages out of
//! the pools before it serves anyone, where
//!
//! - `M` is the largest metadata block any buffer memsrv can hand out under
//!   the configuration needs ([`crate::layout::worst_case_metadata_pages`] for
//!   the largest buffer: the largest pool, at most 2^[`MAX_BUFFER_BITS`]), and
//! - `N` is the most metadata blocks the client can hold at once: one per
//!   attachment (`quota_attachments`, and at most one per live buffer) plus one
//!   per buffer it owns (`quota_buffers`, at most one per live buffer and one
//!   per page of `quota_bytes`).
//!
//! Each block in use holds one piece of metadata of at most `M` pages, so
//! while a client holds fewer than `N`, one of its `N` blocks is wholly free:
//! its quotas, checked first, guarantee it a block, whatever anyone did to
//! the pools. The blocks are ordinary allocated blocks of a pool's tree,
//! mirrored by untyped capabilities like any other; memsrv retypes metadata
//! from a block and revokes the block when the metadata goes. They are never
//! freed, so lazy merging and reclaiming never touch them.
//!
//! Reserves are placed at start-up, client by client, each block in the last
//! pool (highest index) that still has room, so pool 0, the one clients name
//! by default, is used last. [`check`] decides, without a kernel, whether a
//! configuration's reserves fit; memsrv refuses to start if not, and the
//! image composer can call the same function.

use capbuf_pool::Allocation;
use capbuf_protocol::{Config, ConfigError, MAX_BUFFER_BITS, MAX_CLIENTS, MAX_POOLS, PAGE_BITS};

use crate::layout::{worst_case_io_metadata_pages, worst_case_metadata_pages};
use crate::registry::MAX_BUFFERS;

/// Most reserve blocks all clients together can have: each is an untyped
/// capability in a table slot, so at most the table's slots
/// (`ReservesExceedTable` refuses more).
pub const MAX_RESERVE_BLOCKS: usize = crate::server::TABLE_CAPACITY;

/// Pages of the largest buffer memsrv can hand out under `config`: the
/// largest pool, at most 2^[`MAX_BUFFER_BITS`] bytes.
pub fn largest_buffer_pages(config: &Config) -> u64 {
    let largest_pool = config.pools.iter().flatten().map(|pool| pool.size_bits).max().unwrap_or(0);
    let bits = largest_pool.min(MAX_BUFFER_BITS as u64);
    bits.checked_sub(PAGE_BITS as u64).map_or(0, |pages_bits| 1 << pages_bits)
}

/// Pages of the largest buffer of 4 KiB frames only under `config`, 0 if it
/// has no `io_space` client: such a client's own buffers are made of 4 KiB
/// frames and are at most its byte quota (and the largest buffer); it can
/// also attach another client's buffer without 2 MiB frames, which has at
/// most 1022 (a head and a tail of 511, [`crate::layout::FrameLayout::for_run`]).
pub fn largest_io_buffer_pages(config: &Config) -> u64 {
    let largest = largest_buffer_pages(config);
    let own = config.clients.iter().flatten().filter(|c| c.io_space).map(|c| (c.quota_bytes >> PAGE_BITS).min(largest));
    match own.max() {
        Some(pages) => pages.max(2 * 511),
        None => 0,
    }
}

/// Pages (a power of two) of every reserve block under `config`: enough for
/// the metadata of any buffer memsrv can hand out, and of any attachment of
/// an `io_space` client (which holds every frame twice: keep such a client's
/// `quota_bytes` to what its device needs, since every client's blocks grow
/// with it).
pub fn block_pages(config: &Config) -> u64 {
    let io = match largest_io_buffer_pages(config) {
        0 => 0,
        pages => worst_case_io_metadata_pages(pages),
    };
    worst_case_metadata_pages(largest_buffer_pages(config)).max(io)
}

/// Most attachments one client may hold at once, whatever its quota: one per
/// live buffer ([`MAX_BUFFERS`]). Holes (see [`crate::window`]) count too.
pub const MAX_ATTACHMENTS: u64 = MAX_BUFFERS as u64;

/// Attachments client index `client` may hold at once, holes included: its
/// `quota_attachments`, at most [`MAX_ATTACHMENTS`]. ATTACH refuses beyond
/// it with `QUOTA_ATTACHMENTS`. 0 for an unconfigured client.
///
/// Live attachments alone never exceed [`MAX_ATTACHMENTS`] (one per live
/// buffer), but a hole outlives its buffer until the client detaches it, so
/// without the cap a larger quota would let holes grow without bound.
pub fn attachment_limit(config: &Config, client: usize) -> u64 {
    config.clients.get(client).copied().flatten().map_or(0, |quota| quota.quota_attachments.min(MAX_ATTACHMENTS))
}

/// Blocks in the reserve of client index `client`: the most metadata blocks
/// its quotas let it hold at once. 0 for an unconfigured client.
pub fn reserve_blocks(config: &Config, client: usize) -> u64 {
    let Some(quota) = config.clients.get(client).copied().flatten() else { return 0 };
    let live = MAX_BUFFERS as u64;
    let buffers = quota.quota_buffers.min(live).min(quota.quota_bytes >> PAGE_BITS);
    attachment_limit(config, client) + buffers
}

/// Bytes memsrv sets aside for the metadata of client index `client`; what
/// the image composer reports per client.
pub fn reserve_bytes(config: &Config, client: usize) -> u64 {
    (reserve_blocks(config, client) * block_pages(config)) << PAGE_BITS
}

/// How many reserve blocks each pool holds: filled from the last pool to the
/// first, none in a `device` pool (seL4 makes no CNode or page table of
/// device untyped). Refused if the pools cannot hold them all.
pub fn placement(config: &Config) -> Result<[u64; MAX_POOLS], ConfigError> {
    let block = block_pages(config);
    let mut left: u64 = (0..MAX_CLIENTS).map(|client| reserve_blocks(config, client)).sum();
    let mut per_pool = [0; MAX_POOLS];
    for (index, pool) in config.pools.iter().enumerate().rev() {
        let Some(pool) = pool.filter(|pool| !pool.device) else { continue };
        let pages = (pool.size_bits.checked_sub(PAGE_BITS as u64)).map_or(0, |bits| 1u64 << bits);
        let room = pages.checked_div(block).unwrap_or(0);
        per_pool[index] = left.min(room);
        left -= per_pool[index];
    }
    if left > 0 {
        return Err(ConfigError::ReservesExceedPools);
    }
    Ok(per_pool)
}

/// Table slots one request may need for a pool of `2^pool_order` pages: two
/// per split, one split per level on the way down and one per level while
/// trimming, plus a few objects.
pub(crate) const fn request_slots(pool_order: u32) -> usize {
    4 * (pool_order as usize + 1) + 4
}

/// Table slots the untyped capabilities of `blocks` blocks of `2^block_order`
/// pages take when carved from a fresh pool of `2^pool_order` pages. The
/// allocator packs equal blocks from the start of the pool, so at each level
/// above the blocks' own, `ceil(blocks / 2^height)` blocks are split, each into
/// two new capabilities.
fn split_slots(pool_order: u64, block_order: u64, blocks: u64) -> u64 {
    (1..=pool_order.saturating_sub(block_order)).map(|height| 2 * blocks.div_ceil(1 << height)).sum()
}

/// Table slots in use once the reserves are carved: the slots before
/// [`Config::first_free_slot`] (the pools' untypeds and the clients' VSpaces)
/// and those of the blocks the reserves split off. Refused if the pools cannot
/// hold the reserves.
pub fn table_slots(config: &Config) -> Result<u64, ConfigError> {
    let per_pool = placement(config)?;
    let block_order = block_pages(config).trailing_zeros() as u64;
    let mut slots = config.first_free_slot();
    for (pool, blocks) in config.pools.iter().zip(per_pool) {
        let Some(pool) = pool else { continue };
        slots += split_slots(pool.size_bits.saturating_sub(PAGE_BITS as u64), block_order, blocks);
    }
    Ok(slots)
}

/// Check that the clients' reserves fit the pools and leave memsrv's table
/// room to serve a request in the largest pool. [`crate::Server::new`]
/// refuses a configuration this refuses.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let slots = table_slots(config)?;
    let largest_order = config.pools.iter().flatten().map(|pool| pool.size_bits).max().unwrap_or(0);
    let request = request_slots(largest_order.saturating_sub(PAGE_BITS as u64) as u32) as u64;
    let table = 1u64.checked_shl(config.table_bits as u32).unwrap_or(u64::MAX);
    if slots + request > table {
        return Err(ConfigError::ReservesExceedTable);
    }
    Ok(())
}

/// One block of a client's reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveBlock {
    /// Index of the client whose reserve it is part of.
    pub client: usize,
    /// Pool it was carved from.
    pub pool: usize,
    /// Its pages in that pool: one naturally aligned block.
    pub block: Allocation,
    /// It holds a master CNode or an attachment's CNode and page table.
    pub in_use: bool,
    /// It is in use for good: the kernel refused to revoke it while memsrv
    /// undid a failed request, so what it holds is unknown (see [`crate::Lost`]).
    pub lost: bool,
}

/// Compact form of a [`ReserveBlock`]: memsrv keeps up to
/// [`MAX_RESERVE_BLOCKS`] of them.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u32,
    /// Table slot of the block's untyped capability (a reserve block is
    /// never freed, so its untyped stays where start-up put it).
    slot: u16,
    pool: u8,
    /// [`IN_USE`] and [`LOST`], and above them ([`OWNER_SHIFT`]) the index
    /// of the client whose reserve it is (found without a search).
    flags: u8,
}

const IN_USE: u8 = 1;
const LOST: u8 = 2;
const OWNER_SHIFT: u32 = 2;
const _: () = assert!(MAX_CLIENTS <= 1 << (8 - OWNER_SHIFT), "a client index fits above the flags");

impl Entry {
    fn in_use(self) -> bool {
        self.flags & IN_USE != 0
    }

    fn lost(self) -> bool {
        self.flags & LOST != 0
    }

    fn owner(self) -> usize {
        (self.flags >> OWNER_SHIFT) as usize
    }
}

const _: () = assert!(core::mem::size_of::<Entry>() == 8, "thousands of entries");
const _: () = assert!(*capbuf_protocol::TABLE_BITS.end() <= 16, "a table slot fits the entry's u16");

/// Every client's reserve blocks, client by client.
#[derive(Clone)]
pub struct Reserves {
    block_pages: u64,
    entries: heapless::Vec<Entry, MAX_RESERVE_BLOCKS>,
    /// Client `c`'s blocks are `entries[first[c]..first[c + 1]]`.
    first: [u16; MAX_CLIENTS + 1],
    /// Client `c`'s blocks before `lowest_free[c]` are all in use: the search
    /// for a free one starts there, so it costs the same with 1 or 4000
    /// blocks in use.
    lowest_free: [u16; MAX_CLIENTS],
}

const _: () = assert!(MAX_RESERVE_BLOCKS <= u16::MAX as usize);
const _: () = assert!(MAX_POOLS <= u8::MAX as usize);

impl Reserves {
    /// No blocks yet; every block will have `block_pages` pages.
    pub(crate) fn new(block_pages: u64) -> Reserves {
        Reserves {
            block_pages,
            entries: heapless::Vec::new(),
            first: [0; MAX_CLIENTS + 1],
            lowest_free: [0; MAX_CLIENTS],
        }
    }

    /// Add a block to client `client`'s reserve, its untyped capability in
    /// table slot `slot`. Clients are added in order.
    pub(crate) fn push(&mut self, client: usize, pool: usize, block: Allocation, slot: u32) -> Result<(), ConfigError> {
        debug_assert!(block.pages == self.block_pages && block.offset % self.block_pages == 0);
        debug_assert!(self.first[client + 1] as usize == self.entries.len(), "clients in order");
        let offset = u32::try_from(block.offset).map_err(|_| ConfigError::PoolSize)?;
        let slot = u16::try_from(slot).map_err(|_| ConfigError::TableBits)?;
        let entry = Entry { offset, slot, pool: pool as u8, flags: (client as u8) << OWNER_SHIFT };
        self.entries.push(entry).map_err(|_| ConfigError::ReservesExceedTable)?;
        for first in &mut self.first[client + 1..] {
            *first = self.entries.len() as u16;
        }
        for lowest in &mut self.lowest_free[client + 1..] {
            *lowest = self.entries.len() as u16;
        }
        if self.of(client).len() == 1 {
            self.lowest_free[client] = self.first[client];
        }
        Ok(())
    }

    /// Pages of every block.
    pub fn block_pages(&self) -> u64 {
        self.block_pages
    }

    /// Indices of client `client`'s blocks.
    pub fn of(&self, client: usize) -> core::ops::Range<usize> {
        self.first[client] as usize..self.first[client + 1] as usize
    }

    /// Block number `index`.
    pub fn get(&self, index: usize) -> Option<ReserveBlock> {
        let entry = self.entries.get(index)?;
        let client = entry.owner();
        debug_assert!(self.of(client).contains(&index));
        let block = Allocation { offset: entry.offset as u64, pages: self.block_pages };
        Some(ReserveBlock { client, pool: entry.pool as usize, block, in_use: entry.in_use(), lost: entry.lost() })
    }

    /// Table slot of block `index`'s untyped capability.
    pub(crate) fn slot(&self, index: usize) -> Option<u32> {
        self.entries.get(index).map(|entry| entry.slot as u32)
    }

    /// Every block, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, ReserveBlock)> + '_ {
        (0..self.entries.len()).filter_map(|index| self.get(index).map(|block| (index, block)))
    }

    /// Pages of pool `pool` set aside for reserves.
    pub fn pages_in(&self, pool: usize) -> u64 {
        self.entries.iter().filter(|entry| entry.pool as usize == pool).count() as u64 * self.block_pages
    }

    /// A free block of client `client`'s reserve, if any.
    pub(crate) fn free_block(&self, client: usize) -> Option<usize> {
        let range = self.of(client);
        let from = (self.lowest_free.get(client).copied()? as usize).max(range.start);
        (from..range.end).find(|&index| !self.entries[index].in_use())
    }

    /// The client whose reserve holds block `index`.
    fn owner_of(&self, index: usize) -> Option<usize> {
        let owner = self.entries.get(index)?.owner();
        debug_assert!(self.of(owner).contains(&index));
        Some(owner)
    }

    /// Mark block `index` as holding metadata, or as free again.
    pub(crate) fn set_in_use(&mut self, index: usize, in_use: bool) {
        if let Some(entry) = self.entries.get_mut(index) {
            debug_assert_ne!(entry.in_use(), in_use);
            debug_assert!(!entry.lost());
            entry.flags = if in_use { entry.flags | IN_USE } else { entry.flags & !IN_USE };
        }
        let Some(client) = self.owner_of(index) else { return };
        let end = self.of(client).end;
        let lowest = &mut self.lowest_free[client];
        if !in_use {
            *lowest = (*lowest).min(index as u16);
        } else if index == *lowest as usize {
            while (*lowest as usize) < end && self.entries[*lowest as usize].in_use() {
                *lowest += 1;
            }
        }
    }

    /// Take block `index`, in use, out of service for good.
    pub(crate) fn set_lost(&mut self, index: usize) {
        if let Some(entry) = self.entries.get_mut(index) {
            debug_assert!(entry.in_use());
            entry.flags |= LOST;
        }
    }

    /// Pages of pool `pool` in reserve blocks lost for good.
    pub fn lost_pages_in(&self, pool: usize) -> u64 {
        self.entries.iter().filter(|entry| entry.pool as usize == pool && entry.lost()).count() as u64
            * self.block_pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capbuf_protocol::{ClientConfig, PoolConfig};

    fn config(pools: &[u64], quotas: &[(u64, u64, u64)]) -> Config {
        let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
        for (i, &size_bits) in pools.iter().enumerate() {
            config.pools[i] = Some(PoolConfig { physical_address: (i as u64 + 1) << 32, size_bits, device: false });
        }
        for (i, &(quota_bytes, quota_buffers, quota_attachments)) in quotas.iter().enumerate() {
            config.clients[i] = Some(ClientConfig {
                channel: i as u64,
                client_id: i as u64,
                quota_bytes,
                quota_buffers,
                quota_attachments,
                dma: false,
                frame_caps: false,
                supervisor: None,
                io_space: false,
            });
        }
        config
    }

    #[test]
    fn reserves_are_sized_from_the_quotas_and_the_largest_buffer() {
        // The demo: one 64 MiB pool; producer, consumer, victim, driver, hostile.
        let demo = config(&[26], &[(0x80_0000, 4, 4), (0, 0, 2), (0, 0, 2), (0x200_0000, 4, 4), (0x10_0000, 4, 4)]);
        assert_eq!(largest_buffer_pages(&demo), 1 << 14);
        assert_eq!(block_pages(&demo), 16, "a 4 MiB - 4 KiB buffer's attachment needs 64 KiB");
        let kib: Vec<u64> = (0..6).map(|c| reserve_bytes(&demo, c) >> 10).collect();
        assert_eq!(kib, [512, 128, 128, 512, 512, 0]);
        assert_eq!(placement(&demo), Ok([28, 0, 0, 0]));
        assert_eq!(check(&demo), Ok(()));

        // Quotas beyond what memsrv's table of buffers allows reserve no more.
        let huge = config(&[26], &[(u64::MAX, u64::MAX, u64::MAX)]);
        assert_eq!(reserve_blocks(&huge, 0), 2 * MAX_BUFFERS as u64);
        // A byte quota of three pages allows three buffers at most.
        let tight = config(&[26], &[(3 << PAGE_BITS, 100, 0)]);
        assert_eq!(reserve_blocks(&tight, 0), 3);
        // Small pools need smaller blocks: a 1 MiB buffer has at most 256 frames.
        assert_eq!(block_pages(&config(&[20], &[])), 8);
        assert_eq!(largest_buffer_pages(&config(&[40], &[])), 1 << (MAX_BUFFER_BITS - PAGE_BITS));
    }

    #[test]
    fn reserves_fill_the_last_pool_first_and_must_fit() {
        let c = config(&[22, 20, 24], &[(1 << 30, 16, 16); 3]);
        assert_eq!(block_pages(&c), 16);
        assert_eq!(placement(&c), Ok([0, 0, 96, 0]), "16 MiB hold 256 blocks of 64 KiB");
        let c = config(&[22, 20], &[(1 << 30, 8, 8); 3]);
        assert_eq!(placement(&c), Ok([32, 16, 0, 0]), "1 MiB holds 16, the rest goes to pool 0");
        let c = config(&[22, 20], &[(1 << 30, 16, 16); 3]);
        assert_eq!(placement(&c), Err(ConfigError::ReservesExceedPools));
        assert_eq!(check(&c), Err(ConfigError::ReservesExceedPools));
        // A pool smaller than a block holds none.
        let c = config(&[12, 22], &[(1 << 30, 1, 1)]);
        assert_eq!(placement(&c), Ok([0, 2, 0, 0]));
    }

    #[test]
    fn reserves_must_leave_the_table_room_for_a_request() {
        let mut c = config(&[22, 20, 24], &[(1 << 30, 1, 1); 3]);
        c.table_bits = 7;
        assert_eq!(check(&c), Ok(()));
        c.clients[0].as_mut().unwrap().quota_buffers = 64;
        assert_eq!(check(&c), Err(ConfigError::ReservesExceedTable));
        c.table_bits = 9;
        assert_eq!(check(&c), Ok(()));
    }

    #[test]
    fn split_slots_count_the_tree_above_packed_blocks() {
        assert_eq!(split_slots(4, 4, 1), 0, "the pool is the block");
        assert_eq!(split_slots(4, 2, 1), 4, "two splits down to the first quarter");
        assert_eq!(split_slots(4, 2, 4), 6, "every quarter: the root and both halves split");
        assert_eq!(split_slots(14, 4, 28), 2 * (14 + 7 + 4 + 2 + 1 + 1 + 1 + 1 + 1 + 1));
    }

    #[test]
    fn a_client_below_its_quota_always_finds_a_free_block() {
        // N blocks, any sequence of takes and releases: while fewer than N
        // are in use a free one exists, and the blocks never overlap.
        let mut reserves = Reserves::new(16);
        for i in 0..5u64 {
            reserves.push(0, 0, Allocation { offset: i * 16, pages: 16 }, 100 + i as u32).unwrap();
        }
        for i in 5..8u64 {
            reserves.push(2, 1, Allocation { offset: i * 16, pages: 16 }, 200 + i as u32).unwrap();
        }
        assert_eq!((reserves.of(0), reserves.of(1), reserves.of(2)), (0..5, 5..5, 5..8));
        assert_eq!(reserves.pages_in(0), 80);
        let mut held = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if held.len() < 5 && (held.is_empty() || state % 3 != 0) {
                let index = reserves.free_block(0).expect("fewer than N in use: a block is free");
                assert!(!held.contains(&index));
                reserves.set_in_use(index, true);
                held.push(index);
            } else {
                let index = held.swap_remove(state as usize % held.len());
                reserves.set_in_use(index, false);
            }
            if held.len() == 5 {
                assert_eq!(reserves.free_block(0), None);
            }
            assert_eq!(reserves.iter().filter(|(_, b)| b.in_use).count(), held.len());
        }
        assert_eq!(reserves.free_block(1), None, "no quota, no reserve");
        // A block lost to a kernel failure is never handed out again.
        assert_eq!(reserves.lost_pages_in(1), 0);
        let index = reserves.free_block(2).unwrap();
        reserves.set_in_use(index, true);
        reserves.set_lost(index);
        let lost = reserves.get(index).unwrap();
        assert!(lost.in_use && lost.lost);
        assert_eq!(reserves.lost_pages_in(1), 16);
        assert_eq!(reserves.pages_in(1), 48, "still counted in the reserve");
        for _ in 0..2 {
            let index = reserves.free_block(2).unwrap();
            assert!(!reserves.get(index).unwrap().lost);
            reserves.set_in_use(index, true);
        }
        assert_eq!(reserves.free_block(2), None);
        let block = reserves.get(6).unwrap();
        assert_eq!((block.client, block.pool, block.block), (2, 1, Allocation { offset: 96, pages: 16 }));
    }
}
