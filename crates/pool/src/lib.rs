//! An exact-fit page allocator shaped by how seL4 splits untyped memory.
//!
//! seL4 carves an untyped region only into children aligned to their own size,
//! placed at the region's watermark, and gets it back whole by revoking. So a
//! pool (one naturally aligned untyped region) is seen as a binary tree of
//! blocks: a block is *free*, *allocated* (a leaf handed out) or *split*
//! into two halves. Each split and each merge is reported as an [`Event`] so
//! the caller can mirror it in the kernel: retype the block's untyped into two
//! half-size untypeds, or revoke the block to delete them again.
//!
//! **Runs, not blocks.** An allocation of `n` pages is a run of exactly `n`
//! pages that may start at any page aligned as asked and cross block
//! boundaries: its leaves are the maximal naturally aligned blocks inside it
//! (sizes rise, then fall: [`Allocation::blocks`]), and the tree is split
//! along the run's two edges only. Internal waste is zero pages; the
//! allocation succeeds whenever `n` contiguous free pages with the requested
//! alignment exist anywhere in the pool.
//!
//! **Placement.** Size-segregated: a run of up to [`BEST_FIT_ABOVE`] pages
//! (1 MiB of 4 KiB pages) goes first fit, to the lowest run of free pages
//! that holds it at the alignment asked; a longer one goes best fit, to the
//! shortest maximal free run that holds it (the highest of equally short
//! ones), at the highest aligned start in it, moved down to a 2 MiB boundary
//! (`2^LARGE_ORDER` pages, [`LARGE_ORDER`]) for a run of 2 MiB or more if it
//! still fits there, so that it gets large pages. Small buffers pack from the
//! bottom, large ones fill holes their size and else take the top of the
//! free space, so the free pages between them stay in one long run longer:
//! on the benchmark's fragmentation study (`make bench`, README) the largest
//! allocatable run at 75% occupancy is 1.1 times plain first fit's. Measured
//! alternatives: plain first fit (this pool's placement before), best fit
//! for every size, best fit by aligned block size (the buddy policy before
//! that), small runs kept inside 2 MiB regions; all did worse.
//!
//! **Parked runs.** A freed run of up to [`PARK_MAX_PAGES`] pages with no
//! free page beside it is *parked*, up to [`PARK_DEPTH`] a size: it is free
//! from then on (counted in [`Pool::free_pages`], free to
//! [`Pool::is_free_page`], joined with the free pages and parked runs around
//! it by [`Pool::largest_free`]), but its bitmaps and its blocks stay as the
//! allocation left them, with no event, and the next request of its size (at
//! an alignment it has) takes the last one parked whole, with no search and
//! no event either. That is most small frees and allocations on the
//! benchmark's workload, where a buffer's neighbours are usually live. A
//! request that no free run of the bitmaps holds but a run through parked
//! runs does merges the parked runs first ([`Pool::settle`], reported as
//! merges) and is placed in such a run as the search would have placed it
//! there: an allocation still succeeds whenever its pages are free. A run beside free pages is
//! merged at once, so that parking never cuts a free run in two for other
//! requests. [`Pool::release`] frees without parking.
//!
//! **Storage**, fixed, no heap: one bit per page says it is free and one that
//! an allocation starts there (a 64-bit word per 64-page chunk each, side by
//! side). A wholly free chunk needs no start bits: if it is the first or the
//! last wholly free chunk of its free run, its start word holds the run's
//! bounds instead (a boundary tag), so the run around any page is found in
//! its chunk, a neighbour's word or a tag. Above the chunks, a max tree with
//! sixteen children per node: a leaf holds the length of the longest free run
//! that *starts* in its chunk (its whole length, into the chunks after), a
//! node the largest of its children (`u32`), and a copy of every node capped
//! at 32767 in 16 bits, so that one step of a search compares sixteen
//! siblings with the request in two 128-bit subtractions. That is
//! [`nodes_for`]`(order)` slots of 14 bytes (8 of bitmap, 4 of tree, 2 of
//! capped tree; the tree takes only about 1.07 of the two slots per chunk),
//! 0.4375 bytes per page: 448 KiB for a 4 GiB pool of 2^20 pages; and 528
//! bytes for the parked runs (4 a run, a count per size), whatever its size.
//!
//! **Cost.** The first-fit search walks down the tree once, to the lowest
//! chunk where a long enough run starts (three steps for a 1 GiB pool of 2^18
//! pages, one more per factor 16), then finds the run in the chunk's word;
//! for an alignment above a page it may also visit the long enough but
//! misaligned runs on the way. The best-fit search takes the best of the
//! first [`BEST_FIT_CANDIDATES`] free runs that hold the request, the nodes
//! on the way to each. An allocation or a free changes which runs start in
//! at most two chunks (the one where the run it is carved from, or joined
//! into, starts, and the one where the run after it starts); a leaf is
//! recomputed from its word only when the run it held was its longest, and
//! above it the nodes change up to the first that keeps its value. The pages
//! themselves cost a word per 64 pages of the run; an allocation from, or a
//! free into, a free run that stays inside one chunk touches that chunk's
//! two words and its leaf only (no neighbour, no tag). The [`Event`]s follow in
//! closed form from the bounds of the free run being carved or joined: the
//! blocks holding the run's edge pages that lie inside that free run. None of
//! that work is done when the caller's closure ignores them. On the
//! benchmark's workload (`cargo run --release -p capbuf-bench`, README) an
//! alloc+free pair takes about 700 instructions in callgrind, counting the
//! workload's own ~136 (915 before runs were parked, 1,528 with the segment
//! tree of prefix, suffix and longest run per node this replaced,
//! buddy_system_allocator 656), and runs at about 1.1 times
//! buddy_system_allocator's rate (0.85 times before runs were parked).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Pages per chunk: one 64-bit word of the page bitmaps.
const CHUNK_ORDER: u32 = 6;

/// Order of the start alignment a run of at least `2^LARGE_ORDER` pages
/// prefers: a 2 MiB large page, counted in 4 KiB pages.
pub const LARGE_ORDER: u32 = 9;

/// Runs of more pages than this (1 MiB of 4 KiB pages) are placed best fit
/// from the top of the free runs, shorter ones first fit from the bottom.
pub const BEST_FIT_ABOVE: u64 = 256;

/// The best-fit search takes the best of the first this many free runs (in
/// address order) that hold the request: an allocation visits O(log P) nodes
/// per run, so this bounds it however many holes a pool has.
pub const BEST_FIT_CANDIDATES: u32 = 64;

/// Runs of up to this many pages are *parked* when freed: kept as they are,
/// to be handed out again whole to the next request of their size.
pub const PARK_MAX_PAGES: u64 = 16;

/// Parked runs kept per size; a free of a size whose list is full merges.
pub const PARK_DEPTH: usize = 8;

/// Parked runs at most.
const PARKED: usize = PARK_DEPTH * PARK_MAX_PAGES as usize;

// A parked run ends in the chunk after the one before it (a free reads the
// bitmaps' words from there); a list's entries are compared as the bits of
// a `u32`.
const _: () = assert!(PARK_MAX_PAGES < 63 && PARK_DEPTH < 32);

/// Largest pool order (2^30 pages): node numbers and run lengths fit in 32 bits.
pub const MAX_ORDER: u32 = 30;

/// Nodes (the `NODES` parameter of [`Pool`]) a pool of `2^order` pages needs:
/// twice its number of 64-page chunks (at least one chunk).
pub const fn nodes_for(order: u32) -> usize {
    2 << order.saturating_sub(CHUNK_ORDER)
}

/// One block of the tree: node number `n` (root 1, children `2n`, `2n + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    node: u32,
    order: u32,
}

impl Block {
    /// The block with node number `node` (heap order) and size `2^order` pages.
    pub const fn new(node: u32, order: u32) -> Block {
        Block { node, order }
    }

    /// The block of `2^order` pages holding page `page` of a pool of `2^pool_order` pages.
    pub const fn containing(page: u64, order: u32, pool_order: u32) -> Block {
        Block { node: (1 << (pool_order - order)) + (page >> order) as u32, order }
    }

    /// Node number in heap order: the root is 1, the children of `n` are `2n`, `2n + 1`.
    pub const fn node(self) -> u32 {
        self.node
    }

    /// The block's size as a power of two, in pages.
    pub const fn order(self) -> u32 {
        self.order
    }

    /// The block's size in pages.
    pub const fn pages(self) -> u64 {
        1 << self.order
    }

    /// First page of the block, counted from the start of the pool.
    pub const fn offset(self) -> u64 {
        let depth = 31 - self.node.leading_zeros();
        ((self.node - (1 << depth)) as u64) << self.order
    }

    /// The two halves.
    pub const fn children(self) -> (Block, Block) {
        let order = self.order - 1;
        (Block { node: self.node * 2, order }, Block { node: self.node * 2 + 1, order })
    }
}

/// A change to the tree the caller mirrors in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The free block was split into its two halves, which are now blocks of their own.
    Split(Block),
    /// The block's two free halves were joined: they no longer exist as blocks.
    Merge(Block),
}

/// A run of pages handed out by [`Pool::alloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// First page, from the start of the pool.
    pub offset: u64,
    /// Number of pages.
    pub pages: u64,
}

impl Allocation {
    /// The allocated leaf blocks in address order: the maximal naturally
    /// aligned blocks inside the run, whose sizes rise to the largest, then fall.
    pub fn blocks(self, pool_order: u32) -> impl Iterator<Item = Block> {
        let mut offset = self.offset;
        let mut remaining = self.pages;
        core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            let order = leaf_order(offset, remaining);
            let block = Block::containing(offset, order, pool_order);
            offset += 1 << order;
            remaining -= 1 << order;
            Some(block)
        })
    }
}

/// Order of the largest aligned block that starts at `offset` and fits in `pages` (> 0) pages.
#[inline]
const fn leaf_order(offset: u64, pages: u64) -> u32 {
    let fit = 63 - pages.leading_zeros();
    let aligned = offset.trailing_zeros();
    if aligned < fit {
        aligned
    } else {
        fit
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Zero pages.
    ZeroSize,
    /// More pages, or a larger alignment, than the whole pool.
    TooLarge,
    /// No run of free pages is long enough (at the alignment).
    OutOfMemory,
}

/// Why a free was refused. The pool is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The run is not exactly one earlier allocation.
    NotAllocated,
}

/// Bit patterns of the first page of each aligned block of `2^k` pages in a word, by `k`.
const BLOCK_STARTS: [u64; 7] = [
    u64::MAX,
    0x5555_5555_5555_5555,
    0x1111_1111_1111_1111,
    0x0101_0101_0101_0101,
    0x0001_0001_0001_0001,
    0x0000_0001_0000_0001,
    1,
];

/// Bit `i` set where a run of `n` (1..=64) free pages starts at page `i` of the word.
#[inline]
fn run_starts(free: u64, n: u64) -> u64 {
    let (mut starts, mut length) = (free, 1);
    // Up to 8 pages in three steps without a branch (a step of 0 changes
    // nothing), longer runs on in a loop.
    for _ in 0..3 {
        let step = length.min(n - length);
        starts &= starts >> step;
        length += step;
    }
    while length < n {
        let step = length.min(n - length);
        starts &= starts >> step;
        length += step;
    }
    starts
}

/// Longest run of set bits in `free` (not all set), at least `known`, in a
/// fixed sequence of steps (a loop over the runs mispredicts its exit).
#[inline]
fn longest_run(free: u64, known: u32) -> u32 {
    // Runs shorter than 8 pages, the common case, in three steps: bit i of
    // `atN` set if the N pages from page i are all free.
    let at2 = free & free >> 1;
    let at4 = at2 & at2 >> 2;
    if at4 & at4 >> 4 == 0 {
        let at3 = at2 & free >> 2;
        let longer = [free, at2, at3, at4, at4 & free >> 4, at4 & at2 >> 4, at4 & at3 >> 4];
        return longer.iter().map(|&at| (at != 0) as u32).sum::<u32>().max(known);
    }
    // blocks[j]: bit i set if the 2^j pages from page i are all free.
    let mut blocks = [free; 6];
    for j in 1..6 {
        blocks[j] = blocks[j - 1] & (blocks[j - 1] >> (1 << (j - 1)));
    }
    // Binary lifting without branches: `starts` holds the pages from which
    // `length` pages are free; try to add 32, 16, ... 1 pages.
    let (mut starts, mut length) = (u64::MAX, 0u32);
    for j in (0..6).rev() {
        let longer = starts & (blocks[j] >> length);
        let take = longer != 0;
        starts = if take { longer } else { starts };
        length += (take as u32) << j;
    }
    length.max(known)
}

/// Longest run of set bits in a chunk's word (64 for a whole one).
#[inline]
fn longest_in_word(free: u64) -> u32 {
    if free == u64::MAX {
        64
    } else {
        longest_run(free, 0)
    }
}

/// Highest order `k` whose aligned block of `2^k` pages holding page `page`
/// lies inside the free run `[start, end)` around it. The block of order `k`
/// starts at or after `start` as long as `k` is at most the highest bit where
/// `page` and `start - 1` differ (with `start` 0, `start - 1` wraps to all
/// ones: any order fits below), and ends at or before `end` as long as `k` is
/// at most the highest bit where `page` and `end` differ.
#[inline]
const fn free_order(page: u64, start: u64, end: u64) -> u32 {
    let low = 63 - (page ^ start.wrapping_sub(1)).leading_zeros();
    let high = 63 - (page ^ end).leading_zeros();
    if low < high {
        low
    } else {
        high
    }
}

/// Children of the root of the tree over `chunks` (a power of two, at least
/// 2) chunks: 16 but at the top, where what is left of the chunks' order
/// divided by four gives 2, 4 or 8.
#[inline]
const fn top_fanout(chunks: usize) -> usize {
    let rest = chunks.trailing_zeros() % 4;
    if rest == 0 {
        16
    } else {
        1 << rest
    }
}

/// Largest value [`Pool`]'s `small` holds exactly: 15 bits.
const SMALL: u16 = 0x7fff;

/// A node's value capped at [`SMALL`].
#[inline]
const fn small(value: u32) -> u16 {
    if value < SMALL as u32 {
        value as u16
    } else {
        SMALL
    }
}

/// The top bit of each 16-bit lane.
const LANE_TOPS: u128 = 0x8000_8000_8000_8000_8000_8000_8000_8000;

/// Each 16-bit lane of `lanes` (at most [`SMALL`]) with its top bit set
/// exactly where it is at least `at_least` (at most [`SMALL`]): 0x8000 +
/// value - at_least keeps it then, and borrows from no other lane.
#[inline(always)]
const fn lanes_at_least(lanes: u128, at_least: u32) -> u128 {
    ((lanes | LANE_TOPS) - at_least as u128 * 0x0001_0001_0001_0001_0001_0001_0001_0001) & LANE_TOPS
}

/// Nodes on the level above a level of `count` (more than one) nodes.
#[inline]
const fn parent_count(count: usize) -> usize {
    if count > 16 {
        count / 16
    } else {
        1
    }
}

#[inline]
const fn align_up(value: u64, order: u32) -> u64 {
    let mask = (1u64 << order) - 1;
    (value + mask) & !mask
}

#[inline]
const fn align_down(value: u64, order: u32) -> u64 {
    value >> order << order
}

/// One pool of `2^order` pages. `NODES` bounds the pool: it must be at least
/// [`nodes_for`]`(order)`. Two pools are equal when their pages are (the
/// version [`Placement`]s are checked against is not compared).
#[derive(Clone, Debug)]
pub struct Pool<const NODES: usize> {
    order: u32,
    free_pages: u64,
    /// Chunks in the pool (a power of two).
    chunks: usize,
    /// The root's index in `tree`.
    root: u32,
    /// A max tree over the chunks, sixteen children per node, stored level
    /// by level from the leaves up: leaf `c` (index `c`) holds the length of
    /// the longest maximal free run that *starts* in chunk `c` (its whole
    /// length, into the chunks after); each level above has a node per
    /// sixteen of the level below (the root's children, the top level,
    /// may be fewer: 2, 4, 8 or 16), holding the largest of their values.
    tree: [u32; NODES],
    /// Each node's value capped at [`SMALL`], 16 bits: sixteen siblings
    /// compare with a request of up to that many pages in two 128-bit
    /// subtractions.
    small: [u16; NODES],
    /// The page bitmaps, two words per chunk side by side (one cache line
    /// holds both): `words[2 * c]` has bit `i` set if page `i` of chunk `c`
    /// is free. `words[2 * c + 1]` has bit `i` set if
    /// an allocation starts at page `i` of chunk `c`; a wholly free chunk has
    /// no such bit, and its word holds instead, if the chunk is the first or
    /// the last wholly free chunk of its free run, the run's bounds (first
    /// page, then end, 32 bits each: a boundary tag), else 0.
    words: [u64; NODES],
    /// Parked runs: `parked[n - 1][..parked_len[n - 1]]` are the first
    /// pages of the parked runs of `n` pages, the last parked last. A parked
    /// run is free (counted in `free_pages`, free to every query) but kept
    /// in the bitmaps as the allocation it was, its start bit set, and its
    /// blocks unmerged.
    parked: [[u32; PARK_DEPTH]; PARK_MAX_PAGES as usize],
    parked_len: [u8; PARK_MAX_PAGES as usize],
    /// Pages in parked runs.
    parked_pages: u64,
    /// Changes with every allocation and free: a [`Placement`] is good for
    /// the version it was made at.
    version: u64,
}

/// Where a [`Placement`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A free run of the bitmaps.
    Free,
    /// The last parked run of its size, taken whole.
    Parked,
    /// A free run that exists once the parked runs are merged.
    Settled,
}

/// Where [`Pool::place`] would put a request, for [`Pool::alloc_placed`]
/// to carve without searching or finding the free run's bounds again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    offset: u64,
    /// The maximal free run holding it starts here.
    start: u64,
    pages: u64,
    align_order: u32,
    version: u64,
    source: Source,
}

impl Placement {
    /// First page of the run.
    pub const fn offset(self) -> u64 {
        self.offset
    }

    /// Its pages.
    pub const fn pages(self) -> u64 {
        self.pages
    }
}

impl<const NODES: usize> PartialEq for Pool<NODES> {
    fn eq(&self, other: &Self) -> bool {
        let Pool { order, free_pages, chunks, root, tree, small, words, parked, parked_len, parked_pages, version: _ } =
            self;
        (order, free_pages, chunks, root, parked_len, parked_pages)
            == (&other.order, &other.free_pages, &other.chunks, &other.root, &other.parked_len, &other.parked_pages)
            && tree == &other.tree
            && small == &other.small
            && words == &other.words
            && (0..parked.len()).all(|c| {
                let len = parked_len[c] as usize;
                parked[c][..len] == other.parked[c][..len]
            })
    }
}

impl<const NODES: usize> Eq for Pool<NODES> {}

impl<const NODES: usize> Pool<NODES> {
    /// Nodes needed for a pool of `2^order` pages: [`nodes_for`].
    pub const fn nodes_for(order: u32) -> usize {
        nodes_for(order)
    }

    /// A pool of `2^order` pages, all free. `None` if `NODES` is too small or
    /// the order above [`MAX_ORDER`].
    pub fn new(order: u32) -> Option<Self> {
        if order > MAX_ORDER || nodes_for(order) > NODES {
            return None;
        }
        let chunks = nodes_for(order) / 2;
        // The levels above the leaves hold (chunks - top) / 15 nodes, then the root.
        let root = if chunks == 1 { 0 } else { chunks + (chunks - top_fanout(chunks)) / 15 };
        let mut pool = Pool {
            order,
            free_pages: 1 << order,
            chunks,
            root: root as u32,
            tree: [0; NODES],
            small: [0; NODES],
            words: [0; NODES],
            parked: [[0; PARK_DEPTH]; PARK_MAX_PAGES as usize],
            parked_len: [0; PARK_MAX_PAGES as usize],
            parked_pages: 0,
            version: 0,
        };
        let word = pool.chunk_mask();
        for chunk in 0..chunks {
            pool.words[2 * chunk] = word;
        }
        pool.tag(0, 1 << order);
        // One run, starting in chunk 0: the first node of each level.
        let (mut at, mut count) = (0, chunks);
        loop {
            pool.tree[at] = 1 << order;
            pool.small[at] = small(1 << order);
            if count == 1 {
                break;
            }
            (at, count) = (at + count, parent_count(count));
        }
        Some(pool)
    }

    /// The pool's size as a power of two, in pages.
    pub const fn order(&self) -> u32 {
        self.order
    }

    /// The root block: the whole pool.
    pub const fn root(&self) -> Block {
        Block { node: 1, order: self.order }
    }

    /// Total pages.
    pub const fn pages(&self) -> u64 {
        1 << self.order
    }

    /// Pages not allocated (parked runs are free).
    pub const fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Pages in the longest run of free pages: the largest allocation at page
    /// alignment that succeeds. Parked runs count as free: with some parked,
    /// the runs through them are joined up on the way (a look at each
    /// parked run and its neighbours).
    pub fn largest_free(&self) -> u64 {
        let mut longest = self.tree_longest();
        if self.parked_pages != 0 {
            self.runs_through_parked(&mut |start, end| longest = longest.max(end - start));
        }
        longest
    }

    /// Whether page `page` is free (a page of a parked run is).
    pub fn is_free_page(&self, page: u64) -> bool {
        page < self.pages() && (self.free_bit(page) || self.parked_holding(page).is_some())
    }

    /// The parked runs: freed, free, but kept whole (not merged) to be
    /// handed out again whole; [`Self::settle`] merges them.
    pub fn parked_runs(&self) -> impl Iterator<Item = Allocation> + '_ {
        (0..PARK_MAX_PAGES as usize).flat_map(move |class| {
            self.parked[class][..self.parked_len[class] as usize]
                .iter()
                .map(move |&offset| Allocation { offset: offset as u64, pages: class as u64 + 1 })
        })
    }

    /// Whether `block` is currently an allocated leaf: one of the
    /// [`Allocation::blocks`] of a live allocation. Costs a scan of that
    /// allocation's pages, a word per 64 pages.
    pub fn is_allocated(&self, block: Block) -> bool {
        let depth = self.order.wrapping_sub(block.order);
        if block.order > self.order || block.node >> depth != 1 {
            return false;
        }
        let (first, end) = (block.offset(), block.offset() + block.pages());
        if !self.none_free(first, end) {
            return false;
        }
        // The allocation holding the block: from the last start at or before
        // it to the next start or free page after it (start bits are only
        // read on allocated pages).
        let mut start = first;
        while !self.start_bit(start) {
            start -= 1;
        }
        let mut stop = first + 1;
        while stop < self.pages() && !self.free_bit(stop) && !self.start_bit(stop) {
            stop += 1;
        }
        let allocation = Allocation { offset: start, pages: stop - start };
        !self.is_parked(allocation) && allocation.blocks(self.order).any(|leaf| leaf == block)
    }

    /// Whether [`Self::alloc`] would succeed, without changing anything.
    pub fn can_alloc(&self, pages: u64, align_order: u32) -> bool {
        self.placement(pages, align_order).is_some()
    }

    /// First page of the run [`Self::alloc`] would take now, without changing anything.
    pub fn placement(&self, pages: u64, align_order: u32) -> Option<u64> {
        self.place(pages, align_order).map(Placement::offset)
    }

    /// Where [`Self::alloc`] would put the request now, without changing
    /// anything: for [`Self::alloc_placed`].
    pub fn place(&self, pages: u64, align_order: u32) -> Option<Placement> {
        self.check(pages, align_order).ok()?;
        let placement =
            |offset, start, source| Placement { offset, start, pages, align_order, version: self.version, source };
        if let Some(offset) = self.parked_top(pages, align_order) {
            return Some(placement(offset, offset, Source::Parked));
        }
        if let Some((offset, start)) = self.find(pages, align_order) {
            return Some(placement(offset, start, Source::Free));
        }
        let offset = self.settled_place(pages, align_order)?;
        Some(placement(offset, offset, Source::Settled))
    }

    /// Allocate what [`Self::place`] returned, as [`Self::alloc`] would
    /// have: with no change to the pool since, without a search; after a
    /// change, as [`Self::alloc_at`] at its offset (refused if no longer free).
    pub fn alloc_placed(
        &mut self,
        placement: Placement,
        events: &mut impl FnMut(Event),
    ) -> Result<Allocation, AllocError> {
        let Placement { offset, start, pages, align_order, version, source } = placement;
        if version != self.version {
            return self.alloc_at(offset, pages, align_order, events);
        }
        let offset = match source {
            Source::Free => self.carve_from(offset, start, pages, events),
            Source::Parked => self.take_parked(pages, align_order).ok_or(AllocError::OutOfMemory)?,
            Source::Settled => self.carve_settled(offset, pages, events),
        };
        Ok(Allocation { offset, pages })
    }

    fn check(&self, pages: u64, align_order: u32) -> Result<(), AllocError> {
        if pages == 0 {
            return Err(AllocError::ZeroSize);
        }
        if pages > self.pages() || align_order > self.order {
            return Err(AllocError::TooLarge);
        }
        Ok(())
    }

    /// Allocate `pages` contiguous pages whose first page is aligned to
    /// `2^align_order` pages (see the crate documentation for where).
    #[inline]
    pub fn alloc(
        &mut self,
        pages: u64,
        align_order: u32,
        events: &mut impl FnMut(Event),
    ) -> Result<Allocation, AllocError> {
        self.check(pages, align_order)?;
        if let Some(offset) = self.take_parked(pages, align_order) {
            return Ok(Allocation { offset, pages });
        }
        // The work out of line, its answer back in a register: a caller
        // that does not inline it reads the result where it was written.
        match self.find_and_carve(pages, align_order, events) {
            u64::MAX => Err(AllocError::OutOfMemory),
            offset => Ok(Allocation { offset, pages }),
        }
    }

    /// [`Self::alloc`] once checked: the first page taken, or `u64::MAX`
    /// for none.
    fn find_and_carve(&mut self, pages: u64, align_order: u32, events: &mut impl FnMut(Event)) -> u64 {
        if let Some((offset, start)) = self.find(pages, align_order) {
            return self.carve_from(offset, start, pages, events);
        }
        match self.settled_place(pages, align_order) {
            Some(offset) => self.carve_settled(offset, pages, events),
            None => u64::MAX,
        }
    }

    /// Merge the parked runs, then carve `pages` pages at `offset`, which
    /// [`Self::settled_place`] chose. Returns `offset`.
    #[cold]
    #[inline(never)]
    fn carve_settled(&mut self, offset: u64, pages: u64, events: &mut impl FnMut(Event)) -> u64 {
        self.settle(events);
        let start = self.run_around(offset).0;
        self.carve_from(offset, start, pages, events)
    }

    /// Carve `pages` pages at `offset` out of the maximal free run starting
    /// at `start`, which holds them. Returns `offset`.
    fn carve_from(&mut self, offset: u64, start: u64, pages: u64, events: &mut impl FnMut(Event)) -> u64 {
        self.version = self.version.wrapping_add(1);
        let (chunk, bit) = ((start / 64) as usize, start % 64);
        let word = self.words[2 * chunk];
        let length = (word >> bit).trailing_ones() as u64;
        if bit + length < 64 {
            // The common case, a free run inside one chunk, not up to its
            // end: one word, no tag, one leaf.
            let end = start + length;
            self.split_for(Allocation { offset, pages }, start, end, events);
            self.words[2 * chunk] = word & !((u64::MAX >> (64 - pages)) << (offset % 64));
            self.words[2 * chunk + 1] |= 1 << (offset % 64);
            self.free_pages -= pages;
            if self.tree[chunk] as u64 == length {
                self.set_leaf(chunk, self.leaf(chunk));
            }
            return offset;
        }
        // `start` begins a free run: its end is in its chunk, the next one's
        // prefix or the next one's boundary tag.
        let end = self.run_around(start).1;
        self.carve(Allocation { offset, pages }, start, end, events);
        offset
    }

    /// Allocate the run of `pages` pages at `offset`, which must be aligned
    /// to `2^align_order` pages and wholly free: what [`Self::placement`]
    /// returned for the same request, with no change to the pool since. It
    /// skips the search [`Self::alloc`] makes (memsrv decides a request
    /// before carrying it out, and the decision has the placement already).
    /// Costs a word per 64 pages of the run to check it is free. Refused
    /// with [`AllocError::OutOfMemory`], the pool unchanged, for a run not
    /// wholly free or misaligned.
    pub fn alloc_at(
        &mut self,
        offset: u64,
        pages: u64,
        align_order: u32,
        events: &mut impl FnMut(Event),
    ) -> Result<Allocation, AllocError> {
        self.check(pages, align_order)?;
        let end = offset.checked_add(pages).filter(|&end| end <= self.pages()).ok_or(AllocError::OutOfMemory)?;
        if offset & ((1 << align_order) - 1) != 0 {
            return Err(AllocError::OutOfMemory);
        }
        if !self.all_free(offset, end) {
            // A parked run itself is taken whole; a run through parked
            // pages once they are merged.
            if self.take_parked_at(Allocation { offset, pages }) {
                return Ok(Allocation { offset, pages });
            }
            if self.parked_pages == 0 || !self.free_counting_parked(offset, end) {
                return Err(AllocError::OutOfMemory);
            }
            self.settle(events);
        }
        let (start, end) = self.run_around(offset);
        Ok(self.carve(Allocation { offset, pages }, start, end, events))
    }

    /// Take a free, aligned run out of the maximal free run `[start, end)`
    /// holding it: split the tree along its edges, mark its pages and its
    /// start, tag the free runs left on either side and recompute the two
    /// chunks where they start.
    fn carve(&mut self, allocation: Allocation, start: u64, end: u64, events: &mut impl FnMut(Event)) -> Allocation {
        self.version = self.version.wrapping_add(1);
        let Allocation { offset, pages } = allocation;
        let stop = offset + pages;
        self.split_for(allocation, start, end, events);
        // The run's tags go; its wholly free chunks all hold 0 then, as the
        // start words of the chunks it takes must.
        self.untag(start, end);
        self.mark::<false>(offset, stop);
        self.words[(offset / 64 * 2 + 1) as usize] |= 1 << (offset % 64);
        self.tag(start, offset);
        self.tag(stop, end);
        self.free_pages -= pages;
        // Only two chunks change which runs start in them: the one where the
        // run started (now the shorter run before the allocation, if any)
        // and the one where the run after it starts. The first keeps its
        // longest unless that was this run; the second gains a run.
        // The gain first: its climb stops below the nodes that still hold
        // the carved run's length, and the loss then lowers each of those
        // once, to a value that counts the run after (the other order
        // lowers them, then raises them again).
        let (first, after) = ((start / 64) as usize, (stop / 64) as usize);
        let first_lost = self.tree[first] as u64 == end - start;
        if stop < end && after != first && (end - stop) as u32 > self.tree[after] {
            self.set_leaf(after, (end - stop) as u32);
        }
        if first_lost {
            // Carved from the front of a run reaching past its chunk (the
            // first fit's usual case): the run after it, if it still starts
            // there and is at least a chunk long, is the chunk's longest
            // (a run that starts before it ends before it, inside the
            // chunk), with no look at the word.
            let value = if after == first && end - stop >= 64 { (end - stop) as u32 } else { self.leaf(first) };
            debug_assert_eq!(value, self.leaf(first));
            self.set_leaf(first, value);
        }
        allocation
    }

    /// Give back one allocation, exactly as [`Self::alloc`] returned it.
    /// Refused, with the pool unchanged, for any other run (a parked one
    /// too). A run of up to [`PARK_MAX_PAGES`] pages is parked while its
    /// size has room ([`PARK_DEPTH`]): free from now on, but kept whole, with
    /// no event, for the next request of its size. Else, and for longer
    /// runs, free halves are merged back up the tree.
    #[inline]
    pub fn free(&mut self, allocation: Allocation, events: &mut impl FnMut(Event)) -> Result<(), FreeError> {
        let Allocation { offset, pages } = allocation;
        if pages == 0 || pages > self.pages() || offset > self.pages() - pages {
            return Err(FreeError::NotAllocated);
        }
        if pages <= PARK_MAX_PAGES {
            let class = (pages - 1) as usize;
            if self.parked_in(class, offset) {
                return Err(FreeError::NotAllocated);
            }
            if (self.parked_len[class] as usize) < PARK_DEPTH {
                match self.parkable(offset, offset + pages) {
                    Some(true) => {
                        let len = self.parked_len[class] as usize;
                        self.parked[class][len] = offset as u32;
                        self.parked_len[class] += 1;
                        self.parked_pages += pages;
                        self.free_pages += pages;
                        self.version = self.version.wrapping_add(1);
                        return Ok(());
                    }
                    Some(false) => return self.free_merging(allocation, events, true),
                    None => return Err(FreeError::NotAllocated),
                }
            }
        }
        self.free_merging(allocation, events, false)
    }

    /// Give back one allocation as [`Self::free`] does, but never park it:
    /// its free halves are merged at once (memsrv's undo of an allocation
    /// whose blocks the kernel did not all split). Refused, with the pool
    /// unchanged, for a run that is not one live allocation.
    pub fn release(&mut self, allocation: Allocation, events: &mut impl FnMut(Event)) -> Result<(), FreeError> {
        let Allocation { offset, pages } = allocation;
        if pages == 0 || pages > self.pages() || offset > self.pages() - pages || self.is_parked(allocation) {
            return Err(FreeError::NotAllocated);
        }
        self.free_merging(allocation, events, false)
    }

    /// Merge every parked run into the free runs around it, reporting the
    /// merges: afterwards the bitmaps and the blocks are what they would be
    /// had nothing been parked. What is free does not change.
    pub fn settle(&mut self, events: &mut impl FnMut(Event)) {
        if self.parked_pages != 0 {
            self.settle_all(events);
        }
    }

    /// [`Self::settle`]'s work, one copy for every caller's events.
    #[cold]
    #[inline(never)]
    fn settle_all(&mut self, mut events: &mut dyn FnMut(Event)) {
        for class in 0..PARK_MAX_PAGES as usize {
            let pages = class as u64 + 1;
            while self.parked_len[class] > 0 {
                self.parked_len[class] -= 1;
                let offset = self.parked[class][self.parked_len[class] as usize] as u64;
                self.parked_pages -= pages;
                self.free_pages -= pages;
                let merged = self.free_merging(Allocation { offset, pages }, &mut events, true);
                debug_assert_eq!(merged, Ok(()), "a parked run is one allocation");
            }
        }
    }

    /// Free a live allocation (bounds checked) and merge: refused if it is
    /// not one allocation, unless `checked` says the caller saw it is.
    fn free_merging(
        &mut self,
        allocation: Allocation,
        events: &mut impl FnMut(Event),
        checked: bool,
    ) -> Result<(), FreeError> {
        let Allocation { offset, pages } = allocation;
        let stop = offset + pages;
        self.version = self.version.wrapping_add(1);
        let (chunk, bit) = ((offset / 64) as usize, offset % 64);
        if (offset ^ stop) < 64 {
            // The common case, an allocation inside one chunk and not up to
            // its end, and the free run it joins inside that chunk too: no
            // neighbour, no tag, one leaf.
            let (free, starts) = (self.words[2 * chunk], self.words[2 * chunk + 1]);
            let mask = (u64::MAX >> (64 - pages)) << bit;
            let after = 1u64 << (stop % 64);
            let whole =
                starts & mask == 1 << bit && free & mask == 0 && (stop == self.pages() || (free | starts) & after != 0);
            if !(checked || whole) {
                return Err(FreeError::NotAllocated);
            }
            let free = free | mask;
            let below = !free & ((1 << bit) - 1);
            let above = !free & !(after - 1);
            if below != 0 && above != 0 {
                let first = chunk as u64 * 64;
                let (start, end) = (first + 64 - below.leading_zeros() as u64, first + above.trailing_zeros() as u64);
                self.words[2 * chunk] = free;
                self.words[2 * chunk + 1] = starts & !(1 << bit);
                self.free_pages += pages;
                if (end - start) as u32 > self.tree[chunk] {
                    self.set_leaf(chunk, (end - start) as u32);
                }
                self.merge_after(allocation, start, end, events);
                return Ok(());
            }
        }
        if !(checked || self.is_one_allocation(offset, stop)) {
            return Err(FreeError::NotAllocated);
        }
        // The free runs on either side (their edge chunks are never a run's
        // middle: the allocation bounds them) join the allocation's pages.
        let start = if offset > 0 && self.free_bit(offset - 1) { self.run_around(offset - 1).0 } else { offset };
        let end = if stop < self.pages() && self.free_bit(stop) { self.run_around(stop).1 } else { stop };
        self.untag(start, offset);
        self.untag(stop, end);
        self.words[(offset / 64 * 2 + 1) as usize] &= !(1 << (offset % 64));
        self.mark::<true>(offset, stop);
        self.tag(start, end);
        self.free_pages += pages;
        // The chunk where the joined run starts gains it (longer than the
        // runs it joins); the one where the run after the allocation started
        // loses that run, which changes its longest only if it was that.
        let (first, after) = ((start / 64) as usize, (stop / 64) as usize);
        if (end - start) as u32 > self.tree[first] {
            self.set_leaf(first, (end - start) as u32);
        }
        if stop < end && after != first && self.tree[after] as u64 == end - stop {
            self.set_leaf(after, self.leaf(after));
        }
        self.merge_after(allocation, start, end, events);
        Ok(())
    }

    // --- where: the search ---

    /// First page of the run [`Self::alloc`] would take, and the first page
    /// of the maximal free run holding it: the lowest run for up to
    /// [`BEST_FIT_ABOVE`] pages, else [`Self::best_fit`].
    fn find(&self, pages: u64, align_order: u32) -> Option<(u64, u64)> {
        if self.tree_longest() < pages {
            None
        } else if pages > BEST_FIT_ABOVE {
            self.best_fit(pages, align_order)
        } else if align_order == 0 {
            let start = self.first_fit(pages);
            Some((start, start))
        } else {
            self.leaves(self.root as usize, 1, 0, pages as u32, &mut |chunk| self.aligned_in(chunk, pages, align_order))
        }
    }

    /// Placement of a large run: the shortest maximal free run that holds
    /// `pages` pages at `2^align` alignment (the highest of equally short
    /// ones) among the first [`BEST_FIT_CANDIDATES`] that do, and in it the
    /// highest such start, moved down to a large-page boundary for a run of
    /// at least `2^LARGE_ORDER` pages if it still fits. Visits the nodes on
    /// the way to each free run of at least `pages` pages it looks at:
    /// O(log P) per such run.
    fn best_fit(&self, pages: u64, align: u32) -> Option<(u64, u64)> {
        // (length, first page) of the best run so far; a later run as short
        // wins. Whether to look further: fewer than BEST_FIT_CANDIDATES fit.
        let (mut best, mut candidates): (Option<(u64, u64)>, u32) = (None, 0);
        let mut consider = |start: u64, length: u64| {
            let fits = length >= pages && align_down(start + length - pages, align) >= start;
            if fits && best.is_none_or(|(shortest, _)| length <= shortest) {
                best = Some((length, start));
            }
            candidates += fits as u32;
            candidates < BEST_FIT_CANDIDATES
        };
        // Only a run into the next chunk is that long: the chunk's last.
        self.leaves(self.root as usize, 1, 0, pages as u32, &mut |chunk| {
            let start = chunk as u64 * 64 + 64 - self.own_word(chunk).leading_ones() as u64;
            (!consider(start, self.run_around(start).1 - start)).then_some(())
        });
        let (length, start) = best?;
        Some((Self::top_of(start, length, pages, align), start))
    }

    /// Where a run of `pages` pages at `2^align` alignment goes in the free
    /// run of `length` pages from `start` that holds it, placed best fit:
    /// its highest start, moved down to a large-page boundary for a run of
    /// at least `2^LARGE_ORDER` pages if it still fits.
    fn top_of(start: u64, length: u64, pages: u64, align: u32) -> u64 {
        let highest = align_down(start + length - pages, align);
        let large = align_down(highest, LARGE_ORDER.max(align));
        if pages >= 1 << LARGE_ORDER && large >= start {
            large
        } else {
            highest
        }
    }

    /// The first `Some` that `visit` returns for the leaves of at least
    /// `at_least` under the node at index `index` of the level at `at` of
    /// `count` nodes, in address order: the nodes on the way, O(log P) per
    /// leaf visited.
    fn leaves<T>(
        &self,
        at: usize,
        count: usize,
        index: usize,
        at_least: u32,
        visit: &mut impl FnMut(usize) -> Option<T>,
    ) -> Option<T> {
        if at == 0 {
            return visit(index);
        }
        let (children, below) = self.child_level(at, count);
        let first = index * 16;
        let mut mask = self.group_mask(below + first, children.min(16), at_least);
        while mask != 0 {
            let found = self.leaves(below, children, first + mask.trailing_zeros() as usize, at_least, visit);
            if found.is_some() {
                return found;
            }
            mask &= mask - 1;
        }
        None
    }

    /// The lowest run of `pages` free pages: the lowest chunk where a run
    /// that long starts, one walk down, and in it the lowest such run.
    fn first_fit(&self, pages: u64) -> u64 {
        let (mut at, mut count, mut chunk) = (self.root as usize, 1, 0);
        while at != 0 {
            let (children, below) = self.child_level(at, count);
            let first = chunk * 16;
            chunk = first + self.first_at_least(below + first, children.min(16), pages as u32);
            (at, count) = (below, children);
        }
        // The free bits as they are: a free run at the chunk's start that
        // began in the chunk before is shorter than `pages` here (else that
        // chunk would hold a run that long), and the chunk is not wholly
        // free inside such a run (nothing would start in it).
        let word = self.free_at(chunk);
        if pages <= 64 {
            let starts = run_starts(word, pages);
            if starts != 0 {
                return chunk as u64 * 64 + starts.trailing_zeros() as u64;
            }
        }
        // Only the chunk's last run, going on into the next chunk, is that long.
        chunk as u64 * 64 + 64 - word.leading_ones() as u64
    }

    /// Lowest run of `pages` free pages at `2^align` alignment in a free run
    /// that starts in chunk `chunk`, and the first page of that free run.
    fn aligned_in(&self, chunk: usize, pages: u64, align: u32) -> Option<(u64, u64)> {
        let (first, word) = (chunk as u64 * 64, self.own_word(chunk));
        if pages <= 64 {
            let pattern =
                if align < CHUNK_ORDER { BLOCK_STARTS[align as usize] } else { (first % (1 << align) == 0) as u64 };
            let starts = run_starts(word, pages) & pattern;
            if starts != 0 {
                let bit = starts.trailing_zeros();
                // The run holding it starts after the last allocated page below.
                let below = !word & ((1 << bit) - 1);
                return Some((first + bit as u64, first + 64 - below.leading_zeros() as u64));
            }
        }
        if word >> 63 != 0 && self.continues(chunk) {
            let start = first + 64 - word.leading_ones() as u64;
            let at = align_up(start, align);
            if at + pages <= self.run_around(start).1 {
                return Some((at, start));
            }
        }
        None
    }

    // --- parked runs ---

    /// First page of the last parked run of `pages` pages, if it is aligned
    /// to `2^align` pages.
    #[inline]
    fn parked_top(&self, pages: u64, align: u32) -> Option<u64> {
        if pages > PARK_MAX_PAGES {
            return None;
        }
        let class = (pages - 1) as usize;
        let len = self.parked_len[class] as usize;
        let offset = *self.parked[class][..len].last()? as u64;
        (offset & ((1 << align) - 1) == 0).then_some(offset)
    }

    /// Take the last parked run of `pages` pages, if it is aligned to
    /// `2^align` pages: its first page.
    #[inline]
    fn take_parked(&mut self, pages: u64, align: u32) -> Option<u64> {
        let offset = self.parked_top(pages, align)?;
        self.parked_len[(pages - 1) as usize] -= 1;
        self.parked_pages -= pages;
        self.free_pages -= pages;
        self.version = self.version.wrapping_add(1);
        Some(offset)
    }

    /// Take parked run `run`, wherever it is in its list, if it is one.
    #[cold]
    #[inline(never)]
    fn take_parked_at(&mut self, run: Allocation) -> bool {
        if !self.is_parked(run) {
            return false;
        }
        let class = (run.pages - 1) as usize;
        let len = self.parked_len[class] as usize;
        let list = &mut self.parked[class][..len];
        let at = list.iter().position(|&o| o as u64 == run.offset).unwrap_or(len - 1);
        list.copy_within(at + 1.., at);
        self.parked_len[class] -= 1;
        self.parked_pages -= run.pages;
        self.free_pages -= run.pages;
        self.version = self.version.wrapping_add(1);
        true
    }

    /// Whether `run` is a parked run.
    fn is_parked(&self, run: Allocation) -> bool {
        run.pages != 0 && run.pages <= PARK_MAX_PAGES && self.parked_in((run.pages - 1) as usize, run.offset)
    }

    /// Whether a parked run of `class + 1` pages starts at `offset`: the
    /// whole list compared (a few vector operations), the entries past its
    /// length masked off.
    #[inline]
    fn parked_in(&self, class: usize, offset: u64) -> bool {
        // (a pool's pages are counted in 32 bits)
        let (offset, mut found) = (offset as u32, 0u32);
        for (i, &at) in self.parked[class].iter().enumerate() {
            found |= ((at == offset) as u32) << i;
        }
        found & ((1 << self.parked_len[class]) - 1) != 0
    }

    /// For a free of `[offset, stop)` (at most [`PARK_MAX_PAGES`] pages):
    /// `None` if it is not one allocation (as [`Self::is_one_allocation`]),
    /// else whether to park it: not if a page beside it is free, which it
    /// should join (a run parked in a free run would cut it in two for every
    /// other request). Read from a 64-page window of the bitmaps from the
    /// page before it (bit 0) to the page after it (bit `pages + 1`).
    #[inline]
    fn parkable(&self, offset: u64, stop: u64) -> Option<bool> {
        let pages = stop - offset;
        let (free, starts) = if offset == 0 {
            // No page before: as if an allocated page, not a start.
            (self.words[0] << 1, self.words[1] << 1)
        } else {
            let (chunk, shift) = (((offset - 1) / 64) as usize, (offset - 1) % 64);
            let word = |i: usize, k: usize| if chunk + i < self.chunks { self.words[2 * (chunk + i) + k] } else { 0 };
            // Bits `shift..` of the chunk's word, then the next chunk's.
            let window = |low: u64, high: u64| low >> shift | (high << 1) << (63 - shift);
            (window(word(0, 0), word(1, 0)), window(word(0, 1), word(1, 1)))
        };
        let run = ((1u64 << pages) - 1) << 1;
        let end = stop == self.pages();
        let after = if end { 0 } else { 1u64 << (pages + 1) };
        let one = starts & run == 2 && free & run == 0 && (end || (free | starts) & after != 0);
        one.then_some(free & (1 | after) == 0)
    }

    /// The parked run holding page `page`.
    fn parked_holding(&self, page: u64) -> Option<Allocation> {
        self.parked_runs().find(|run| run.offset <= page && page < run.offset + run.pages)
    }

    /// Every maximal free run that holds a parked run, counting parked runs
    /// free, as `visit(start, end)`: the parked runs in address order, each
    /// joined with the free runs and parked runs after it.
    #[cold]
    #[inline(never)]
    fn runs_through_parked(&self, visit: &mut dyn FnMut(u64, u64)) {
        let mut sorted = [Allocation { offset: 0, pages: 0 }; PARKED];
        let mut count = 0;
        for run in self.parked_runs() {
            sorted[count] = run;
            count += 1;
        }
        let sorted = &mut sorted[..count];
        // An insertion sort: a few dozen runs, on a rare path (the
        // standard library's sort is kilobytes of code).
        for i in 1..sorted.len() {
            let mut j = i;
            while j > 0 && sorted[j - 1].offset > sorted[j].offset {
                sorted.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut i = 0;
        while i < sorted.len() {
            let first = sorted[i];
            // A run before it is free, not parked: a parked run before that
            // joined it on its way here.
            let start = if first.offset > 0 && self.free_bit(first.offset - 1) {
                self.run_around(first.offset - 1).0
            } else {
                first.offset
            };
            let mut end = first.offset + first.pages;
            i += 1;
            loop {
                if end < self.pages() && self.free_bit(end) {
                    end = self.run_around(end).1;
                }
                if i < sorted.len() && sorted[i].offset == end {
                    end += sorted[i].pages;
                    i += 1;
                } else {
                    break;
                }
            }
            visit(start, end);
        }
    }

    /// Where a request no free run of the bitmaps holds goes once the
    /// parked runs are merged, by the same policy as [`Self::find`] over the
    /// free runs through a parked run: up to [`BEST_FIT_ABOVE`] pages the
    /// lowest aligned start; a longer run [`Self::best_fit`]'s choice.
    #[cold]
    #[inline(never)]
    fn settled_place(&self, pages: u64, align: u32) -> Option<u64> {
        // (the lowest start, or the shortest run's length and start)
        let mut best: Option<(u64, u64)> = None;
        self.runs_through_parked(&mut |start, end| {
            let length = end - start;
            if length < pages || align_down(end - pages, align) < start {
                return;
            }
            let better = match best {
                None => true,
                Some((_, at)) if pages <= BEST_FIT_ABOVE => align_up(start, align) < at,
                Some((shortest, _)) => length <= shortest,
            };
            if better {
                best = Some(if pages <= BEST_FIT_ABOVE { (length, align_up(start, align)) } else { (length, start) });
            }
        });
        let (length, start) = best?;
        if pages <= BEST_FIT_ABOVE {
            return Some(start);
        }
        Some(Self::top_of(start, length, pages, align))
    }

    /// Whether every page of `[from, to)` is free, parked runs counted.
    #[cold]
    #[inline(never)]
    fn free_counting_parked(&self, mut from: u64, to: u64) -> bool {
        while from < to {
            if self.free_bit(from) {
                from = self.run_around(from).1;
            } else if let Some(run) = self.parked_holding(from) {
                from = run.offset + run.pages;
            } else {
                return false;
            }
        }
        true
    }

    // --- runs, tags and the tree ---

    /// The longest run of free pages in the bitmaps: the root of the tree.
    #[inline]
    fn tree_longest(&self) -> u64 {
        self.tree[self.root as usize] as u64
    }

    /// Whether `[offset, stop)` is exactly one allocation (parked or live):
    /// its pages allocated, an allocation starting at its first page and at
    /// none after, and at `stop` a free page, another allocation or the end.
    #[inline]
    fn is_one_allocation(&self, offset: u64, stop: u64) -> bool {
        if (offset ^ stop) < 64 {
            // Inside one chunk, not up to its end: its two words.
            let chunk = (offset / 64) as usize;
            let (free, starts) = (self.words[2 * chunk], self.words[2 * chunk + 1]);
            let mask = (u64::MAX >> (64 - (stop - offset))) << (offset % 64);
            let after = 1u64 << (stop % 64);
            return starts & mask == 1 << (offset % 64)
                && free & mask == 0
                && (stop == self.pages() || (free | starts) & after != 0);
        }
        self.start_bit(offset)
            && self.allocated_alone(offset, stop)
            && (stop == self.pages() || self.free_bit(stop) || self.start_bit(stop))
    }

    /// The free bits of chunk `chunk` without the free run at its start if
    /// that run began in the chunk before: the runs that start in it.
    #[inline]
    fn own_word(&self, chunk: usize) -> u64 {
        let word = self.free_at(chunk);
        if chunk > 0 && self.free_at(chunk - 1) >> 63 != 0 {
            word & word.wrapping_add(1)
        } else {
            word
        }
    }

    /// Whether the last page of chunk `chunk` (free) has a free page after it.
    #[inline]
    fn continues(&self, chunk: usize) -> bool {
        chunk + 1 < self.chunks && self.free_at(chunk + 1) & 1 != 0
    }

    /// The maximal free run `[start, end)` holding free page `page`. In the
    /// page's chunk, the chunk before or after it, or a boundary tag; only
    /// for a page in a wholly free chunk in the middle of a run (neither its
    /// first nor its last wholly free chunk: only [`Self::alloc_at`] asks
    /// about such a page) also one walk up and down the tree to the chunk
    /// where the run starts.
    #[inline(always)]
    fn run_around(&self, page: u64) -> (u64, u64) {
        let (chunk, bit) = ((page / 64) as usize, page % 64);
        let word = self.free_at(chunk);
        if word == u64::MAX {
            return self.tag_of(self.tagged_chunk(chunk));
        }
        // Not wholly free (or a pool smaller than a chunk, whose word has
        // zeros above its pages): the run's ends in this chunk, or in a
        // neighbour's prefix or suffix, or at a neighbour's tag.
        let first = chunk as u64 * 64;
        let below = !word & ((1u64 << bit) - 1);
        let above = !word & !((2u64 << bit).wrapping_sub(1));
        let start = if below != 0 {
            first + 64 - below.leading_zeros() as u64
        } else if chunk == 0 {
            0
        } else {
            match self.free_at(chunk - 1) {
                u64::MAX => self.tag_of(chunk - 1).0,
                before => first - before.leading_ones() as u64,
            }
        };
        let end = if above != 0 {
            first + above.trailing_zeros() as u64
        } else if chunk + 1 == self.chunks {
            self.pages()
        } else {
            match self.free_at(chunk + 1) {
                u64::MAX => self.tag_of(chunk + 1).1,
                after => first + 64 + after.trailing_ones() as u64,
            }
        };
        (start, end)
    }

    /// The first or last wholly free chunk of the run through wholly free
    /// chunk `chunk`: itself, or else the run's first wholly free chunk,
    /// found from the chunk where the run starts, the nearest one before
    /// with a run starting in it.
    fn tagged_chunk(&self, chunk: usize) -> usize {
        let full = |c: usize| self.free_at(c) == u64::MAX;
        if chunk == 0 || chunk + 1 == self.chunks || !full(chunk - 1) || !full(chunk + 1) {
            return chunk;
        }
        // Up until a node with a run starting under it before the chunk's
        // ancestor on its level, then down to its rightmost such chunk.
        let (mut at, mut count, mut index) = (0, self.chunks, chunk);
        loop {
            let first = index & !15;
            let before = self.group_mask(at + first, count.min(16), 1) & ((1 << (index - first)) - 1);
            if before != 0 {
                index = first + 31 - before.leading_zeros() as usize;
                break;
            }
            (at, count, index) = (at + count, parent_count(count), index / 16);
        }
        while at != 0 {
            let (children, below) = self.child_level(at, count);
            let first = index * 16;
            index = first + 31 - self.group_mask(below + first, children.min(16), 1).leading_zeros() as usize;
            (at, count) = (below, children);
        }
        let start = index;
        if full(start) {
            start
        } else {
            start + 1
        }
    }

    /// The bounds a boundary tag holds.
    #[inline]
    fn tag_of(&self, chunk: usize) -> (u64, u64) {
        let tag = self.words[2 * chunk + 1];
        (tag & 0xffff_ffff, tag >> 32)
    }

    /// Tag free run `[start, end)` in its first and last wholly free chunks.
    #[inline]
    fn tag(&mut self, start: u64, end: u64) {
        let (first, stop) = (start.div_ceil(64) as usize, (end / 64) as usize);
        if first < stop {
            let tag = start | end << 32;
            self.words[2 * first + 1] = tag;
            self.words[2 * stop - 1] = tag;
        }
    }

    /// Clear the tags of free run `[start, end)`.
    #[inline]
    fn untag(&mut self, start: u64, end: u64) {
        let (first, stop) = (start.div_ceil(64) as usize, (end / 64) as usize);
        if first < stop {
            self.words[2 * first + 1] = 0;
            self.words[2 * stop - 1] = 0;
        }
    }

    /// The tree's leaf for `chunk`: the longest free run that starts in it.
    #[inline]
    fn leaf(&self, chunk: usize) -> u32 {
        let word = self.own_word(chunk);
        if word == 0 {
            return 0;
        }
        let inside = longest_in_word(word);
        if word >> 63 != 0 && self.continues(chunk) {
            let start = chunk as u64 * 64 + 64 - word.leading_ones() as u64;
            return inside.max((self.run_around(start).1 - start) as u32);
        }
        inside
    }

    /// Set the leaf of `chunk` to `value` and the nodes above it, up to the
    /// first that keeps its value: nothing above it can change either. A
    /// node takes a larger value from its child as it is; it keeps its own if
    /// the child did not have it; else it is recomputed from its children.
    #[inline]
    fn set_leaf(&mut self, chunk: usize, mut value: u32) {
        let (mut at, mut count, mut index) = (0, self.chunks, chunk);
        let mut old = self.tree[index];
        while old != value {
            self.tree[at + index] = value;
            self.small[at + index] = small(value);
            if count == 1 {
                return;
            }
            let (parent_at, parent) = (at + count, index / 16);
            let was = self.tree[parent_at + parent];
            if value < was {
                if old < was {
                    return;
                }
                let first = index & !15;
                value = self.group_max(at + first, count.min(16));
            }
            (at, count, index, old) = (parent_at, parent_count(count), parent, was);
        }
    }

    /// The level below the node level at `at` of `count` nodes: its size and
    /// where it starts.
    #[inline]
    fn child_level(&self, at: usize, count: usize) -> (usize, usize) {
        let children = if count == 1 { top_fanout(self.chunks) } else { count * 16 };
        (children, at - children)
    }

    /// Index of the first of the `size` (at most 16) nodes from index `at`
    /// that holds at least `at_least` (one does): [`Self::group_mask`]'s
    /// lowest bit.
    #[inline(always)]
    fn first_at_least(&self, at: usize, size: usize, at_least: u32) -> usize {
        if size == 16 && at_least <= SMALL as u32 {
            let (low, high) = self.lanes(at);
            let (low, high) = (lanes_at_least(low, at_least), lanes_at_least(high, at_least));
            // (the second half holds one if the first does not)
            if low != 0 {
                low.trailing_zeros() as usize / 16
            } else {
                8 + high.trailing_zeros() as usize / 16
            }
        } else {
            self.group_mask(at, size, at_least).trailing_zeros() as usize
        }
    }

    /// Bit `i` set where the `i`th of the `size` (at most 16) nodes from
    /// index `at` holds at least `at_least`.
    #[inline]
    fn group_mask(&self, at: usize, size: usize, at_least: u32) -> u32 {
        let mut mask = 0;
        if size == 16 && at_least <= SMALL as u32 {
            let (low, high) = self.lanes(at);
            // Gather the top bits of a word's four lanes into four bits.
            let gather = |word: u128| {
                let tops = (word as u64 >> 15) & 0x0001_0001_0001_0001;
                (tops.wrapping_mul(0x0001_0002_0004_0008) >> 48) as u32 & 0xf
            };
            let (low, high) = (lanes_at_least(low, at_least), lanes_at_least(high, at_least));
            mask = gather(low) | gather(low >> 64) << 4 | gather(high) << 8 | gather(high >> 64) << 12;
        } else if size == 16 {
            let group: &[u32; 16] = self.tree[at..at + 16].try_into().unwrap();
            for (i, &value) in group.iter().enumerate() {
                mask |= ((value >= at_least) as u32) << i;
            }
        } else {
            for (i, &value) in self.tree[at..at + size].iter().enumerate() {
                mask |= ((value >= at_least) as u32) << i;
            }
        }
        mask
    }

    /// The capped values of the sixteen nodes from index `at`, eight 16-bit
    /// lanes each.
    #[inline(always)]
    fn lanes(&self, at: usize) -> (u128, u128) {
        let group: &[u16; 16] = self.small[at..at + 16].try_into().unwrap();
        // Four lanes a word.
        let word = |i: usize| {
            group[i] as u64 | (group[i + 1] as u64) << 16 | (group[i + 2] as u64) << 32 | (group[i + 3] as u64) << 48
        };
        (word(0) as u128 | (word(4) as u128) << 64, word(8) as u128 | (word(12) as u128) << 64)
    }

    /// The largest of the `size` (at most 16) nodes from index `at`.
    #[inline]
    fn group_max(&self, at: usize, size: usize) -> u32 {
        if size == 16 {
            // As signed words (values fit in 31 bits): a signed maximum is
            // one vector operation fewer without SSE4.1.
            let group: &[u32; 16] = self.tree[at..at + 16].try_into().unwrap();
            group.iter().fold(0, |a, &b| a.max(b as i32)) as u32
        } else {
            self.tree[at..at + size].iter().fold(0, |a, &b| a.max(b))
        }
    }

    // --- the tree's shape: events ---

    /// Report the splits carving `allocation` out of the maximal free run
    /// `[start, end)` needs, top down: the free blocks holding its first or
    /// last page that it does not cover, down to its edge leaves. A block
    /// holding a page of the run is free exactly when it lies inside the run:
    /// [`free_order`].
    fn split_for(&self, allocation: Allocation, start: u64, end: u64, events: &mut impl FnMut(Event)) {
        let Allocation { offset: first, pages } = allocation;
        let (last, stop) = (first + pages - 1, first + pages);
        let first_leaf = leaf_order(first, pages);
        let last_leaf = (63 - pages.leading_zeros()).min(stop.trailing_zeros());
        let common = (64 - (first ^ last).leading_zeros()).max(first_leaf + 1).max(last_leaf + 1);
        let top_first = free_order(first, start, end).max(first_leaf).min(self.order);
        // Below `common` only: if the block of order `common` is free, so is
        // everything in it.
        let top_last =
            if top_first >= common { common - 1 } else { free_order(last, start, end).max(last_leaf).min(common - 1) };
        let split = |page, order| Event::Split(Block::containing(page, order, self.order));
        for order in (common..top_first + 1).rev() {
            events(split(first, order));
        }
        for order in (first_leaf + 1..top_first.min(common - 1) + 1).rev() {
            events(split(first, order));
        }
        for order in (last_leaf + 1..top_last + 1).rev() {
            events(split(last, order));
        }
    }

    /// Report the merges freeing `allocation` into the maximal free run
    /// `[start, end)` allows, bottom up: the blocks holding its first or last
    /// page that lie inside that run now.
    fn merge_after(&self, allocation: Allocation, start: u64, end: u64, events: &mut impl FnMut(Event)) {
        let Allocation { offset: first, pages } = allocation;
        let (last, stop) = (first + pages - 1, first + pages);
        let first_leaf = leaf_order(first, pages);
        let last_leaf = (63 - pages.leading_zeros()).min(stop.trailing_zeros());
        let common = (64 - (first ^ last).leading_zeros()).max(first_leaf + 1).max(last_leaf + 1);
        let merge = |page, order| Event::Merge(Block::containing(page, order, self.order));
        let mut both = true;
        for (page, leaf) in [(first, first_leaf), (last, last_leaf)] {
            let top = free_order(page, start, end).max(leaf).min(common - 1);
            for order in leaf + 1..top + 1 {
                events(merge(page, order));
            }
            both &= top == common - 1;
        }
        // The block of order `common` holds both edges: free only if both
        // merged all the way below it.
        if both {
            for order in common..free_order(first, start, end).max(common - 1).min(self.order) + 1 {
                events(merge(first, order));
            }
        }
    }

    // --- bits ---

    /// Pages per chunk: 64, or the whole pool if it is smaller.
    fn chunk_width(&self) -> u32 {
        1 << CHUNK_ORDER.min(self.order)
    }

    fn chunk_mask(&self) -> u64 {
        u64::MAX >> (64 - self.chunk_width())
    }

    /// The free bits of chunk `chunk`.
    #[inline(always)]
    fn free_at(&self, chunk: usize) -> u64 {
        self.words[2 * chunk]
    }

    #[inline]
    fn free_word(&self, page: u64) -> u64 {
        self.words[(page / 64 * 2) as usize]
    }

    #[inline]
    fn free_bit(&self, page: u64) -> bool {
        self.free_word(page) & (1 << (page % 64)) != 0
    }

    /// Whether an allocation starts at page `page`; meaningful for an
    /// allocated page only (a wholly free chunk's word may hold a tag).
    #[inline]
    fn start_bit(&self, page: u64) -> bool {
        self.words[(page / 64 * 2 + 1) as usize] & (1 << (page % 64)) != 0
    }

    /// Mask of the bits of pages `[from, to)` in the chunk of page `from`, and
    /// the first page after that chunk.
    fn word_range(from: u64, to: u64) -> (u64, u64) {
        let next = (from / 64 + 1) * 64;
        let stop = to.min(next);
        let bits = stop - from;
        let mask = (u64::MAX >> (64 - bits)) << (from % 64); // 1 <= bits <= 64
        (mask, next)
    }

    /// Whether every page of `[from, to)` is free.
    fn all_free(&self, mut from: u64, to: u64) -> bool {
        while from < to {
            let (mask, next) = Self::word_range(from, to);
            if self.free_word(from) & mask != mask {
                return false;
            }
            from = next;
        }
        true
    }

    /// Whether no page of `[from, to)` is free.
    fn none_free(&self, mut from: u64, to: u64) -> bool {
        while from < to {
            let (mask, next) = Self::word_range(from, to);
            if self.free_word(from) & mask != 0 {
                return false;
            }
            from = next;
        }
        true
    }

    /// Whether no page of `[from, to)` is free and no allocation starts in it after `from`.
    /// Every word is read (an allocation that is one has all of them clear):
    /// the words at the run's two ends masked, those between whole.
    fn allocated_alone(&self, from: u64, to: u64) -> bool {
        let (low, high) = ((from / 64 * 2) as usize, ((to - 1) / 64 * 2) as usize);
        let head = u64::MAX << (from % 64);
        let tail = u64::MAX >> (63 - (to - 1) % 64);
        // The start bit of `from` itself is the allocation's own.
        let starts_head = head << 1;
        let (free, starts) = (self.words[low], self.words[low + 1]);
        if low == high {
            return (free & head | starts & starts_head) & tail == 0;
        }
        let mut taken = free & head | starts & starts_head | (self.words[high] | self.words[high + 1]) & tail;
        for pair in self.words[low + 2..high].chunks_exact(2) {
            taken |= pair[0] | pair[1];
        }
        taken == 0
    }

    /// Mark pages `[from, to)` free or allocated (they are all the other way
    /// now): the words at the run's two ends, and those between filled.
    #[inline]
    fn mark<const FREE: bool>(&mut self, from: u64, to: u64) {
        let (low, high) = ((from / 64 * 2) as usize, ((to - 1) / 64 * 2) as usize);
        let head = u64::MAX << (from % 64);
        let tail = u64::MAX >> (63 - (to - 1) % 64);
        let flip = |word: &mut u64, mask: u64| *word = if FREE { *word | mask } else { *word & !mask };
        if low == high {
            flip(&mut self.words[low], head & tail);
        } else {
            flip(&mut self.words[low], head);
            flip(&mut self.words[high], tail);
            // Start words between are 0 either way (free chunks inside a
            // run hold no tag; the pages of one allocation start nowhere but
            // at its first).
            for pair in self.words[low + 2..high].chunks_exact_mut(2) {
                pair[0] = if FREE { u64::MAX } else { 0 };
            }
        }
    }
}

#[cfg(test)]
impl<const NODES: usize> Pool<NODES> {
    /// The tree and the start words as recomputed from the free bits and the
    /// start bits of allocated pages alone, page by page (tests: the
    /// incremental updates must leave exactly this).
    fn recomputed(&self) -> ([u32; NODES], [u64; NODES]) {
        for (node, &value) in self.tree.iter().enumerate() {
            assert_eq!(self.small[node], small(value), "node {node}: the capped value differs");
        }
        let (mut tree, mut words) = ([0; NODES], self.words);
        let size = self.pages();
        let chunks = self.chunks;
        for chunk in 0..chunks {
            if words[2 * chunk] == u64::MAX {
                words[2 * chunk + 1] = 0;
            }
        }
        let mut page = 0;
        while page < size {
            if !self.free_bit(page) {
                page += 1;
                continue;
            }
            let start = page;
            while page < size && self.free_bit(page) {
                page += 1;
            }
            let leaf = &mut tree[(start / 64) as usize];
            *leaf = (*leaf).max((page - start) as u32);
            let (first, stop) = (start.div_ceil(64) as usize, (page / 64) as usize);
            if first < stop {
                words[2 * first + 1] = start | page << 32;
                words[2 * stop - 1] = start | page << 32;
            }
        }
        let (mut at, mut count) = (0, chunks);
        while count > 1 {
            let parent = parent_count(count);
            for i in 0..count {
                tree[at + count + i / 16] = tree[at + count + i / 16].max(tree[at + i]);
            }
            (at, count) = (at + count, parent);
        }
        assert_eq!(at, self.root as usize);
        (tree, words)
    }
}

#[cfg(test)]
mod tests;
