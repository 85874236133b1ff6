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
//! allocatable run at 75% occupancy is 1.13 times plain first fit's. Measured
//! alternatives: plain first fit (this pool's placement before), best fit
//! for every size, best fit by aligned block size (the buddy policy before
//! that), small runs kept inside 2 MiB regions; all did worse.
//!
//! **Storage**, fixed, no heap: one bit per page says it is free and one that
//! an allocation starts there (a 64-bit word per 64-page chunk each); above
//! them a segment tree over the chunks keeps, per node, the free run at its
//! start, the free run at its end and its longest free run (three `u32`).
//! That is [`nodes_for`]`(order)` nodes of 20 bytes (12 of summary, 8 of
//! bitmap), 0.625 bytes per page: 640 KiB for a 4 GiB pool of 2^20 pages.
//! Finding a run, carving it and freeing one are O(log P) (plus one word per
//! 64 pages of the run); the first-fit search is O(log P) for page alignment
//! and, for a larger alignment, may also visit free runs that are long enough
//! but misaligned; the best-fit search takes the best of the first
//! [`BEST_FIT_CANDIDATES`] free runs that hold the request, O(log P) each
//! (and, for a larger alignment, passes the misaligned ones on the way). An
//! allocation or a free recomputes the chunks at the run's two ends and the
//! two nodes above them on each level, sets the nodes between them all free
//! or all allocated, and, above the node holding the whole run, stops at the
//! first node whose summary does not change. The [`Event`]s cost a few bit
//! operations inside the edge chunks and one node per event above.
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

/// Summary of one node of the segment tree: a 64-page chunk (the leaves) or
/// the union of its two children. 12 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum {
    /// Free pages at the node's start.
    prefix: u32,
    /// Free pages at its end.
    suffix: u32,
    /// Its longest run of free pages.
    longest: u32,
}

impl Sum {
    /// A node of `pages` pages, all free.
    const fn free(pages: u32) -> Sum {
        Sum { prefix: pages, suffix: pages, longest: pages }
    }

    /// The summary of a chunk of `width` pages (at most 64) from its free bits.
    #[inline(always)]
    fn of_chunk(free: u64, width: u32) -> Sum {
        if free == 0 {
            return Sum::default();
        }
        let prefix = free.trailing_ones();
        if prefix >= width {
            return Sum::free(width);
        }
        let suffix = (free << (64 - width)).leading_ones();
        Sum { prefix, suffix, longest: longest_run(free, prefix.max(suffix)) }
    }

    /// The summary of two adjacent nodes of `half` pages each.
    #[inline(always)]
    fn join(left: Sum, right: Sum, half: u32) -> Sum {
        Sum {
            prefix: if left.prefix == half { half + right.prefix } else { left.prefix },
            suffix: if right.suffix == half { half + left.suffix } else { right.suffix },
            longest: left.longest.max(right.longest).max(left.suffix + right.prefix),
        }
    }
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

/// Highest order `k` (at most 6) whose aligned block of `2^k` pages holding
/// page `bit` of a chunk lies inside the chunk's free run around it (bounded
/// by free bits `word`, which need not include `bit` itself). The block of
/// order `k` holding `bit` starts at or after the run's first page `lo` as
/// long as `k` is at most the highest bit where `bit` and `lo - 1` differ, and
/// ends at or before its end `hi` as long as `k` is at most the highest bit
/// where `bit` and `hi` differ.
#[inline]
fn free_order_in_word(word: u64, bit: u64) -> u32 {
    let below = !word & ((1u64 << bit) - 1); // allocated pages below `bit`
    let above = !word & !((2u64 << bit).wrapping_sub(1)); // and above it
                                                          // Without branches: with nothing allocated below, `lo - 1` wraps to all
                                                          // ones (any order fits below); with nothing above, `hi` is 64 (order 6).
    let low = 63 - (bit ^ 63u64.wrapping_sub(below.leading_zeros() as u64)).leading_zeros();
    let high = 63 - (bit ^ above.trailing_zeros() as u64).leading_zeros();
    low.min(high)
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
/// [`nodes_for`]`(order)`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Pool<const NODES: usize> {
    order: u32,
    free_pages: u64,
    /// Chunks in the pool: the leaves are nodes `chunks..2 * chunks`.
    chunks: usize,
    /// Node summaries in heap order: node 1 is the root; node 0 is unused.
    sums: [Sum; NODES],
    /// The page bitmaps, one word per chunk each: `words[chunks + c]` has bit
    /// `i` set if page `i` of chunk `c` is free, `words[c]` if an allocation
    /// starts there.
    words: [u64; NODES],
}

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
        let mut pool = Pool { order, free_pages: 1 << order, chunks, sums: [Sum::default(); NODES], words: [0; NODES] };
        let (word, width) = (pool.chunk_mask(), pool.chunk_width());
        for chunk in chunks..2 * chunks {
            pool.words[chunk] = word;
            pool.sums[chunk] = Sum::free(width);
        }
        for node in (1..chunks).rev() {
            let depth = 63 - (node as u64).leading_zeros();
            pool.sums[node] = Sum::free(1 << (order - depth));
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

    /// Pages not allocated.
    pub const fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Pages in the longest run of free pages: the largest allocation at page
    /// alignment that succeeds.
    pub fn largest_free(&self) -> u64 {
        self.sums[1].longest as u64
    }

    /// Whether page `page` is free.
    pub fn is_free_page(&self, page: u64) -> bool {
        page < self.pages() && self.free_bit(page)
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
        // it to the next start or free page after it.
        let mut start = first;
        while !self.start_bit(start) {
            start -= 1;
        }
        let mut stop = first + 1;
        while stop < self.pages() && !self.start_bit(stop) && !self.free_bit(stop) {
            stop += 1;
        }
        let allocation = Allocation { offset: start, pages: stop - start };
        allocation.blocks(self.order).any(|leaf| leaf == block)
    }

    /// Whether [`Self::alloc`] would succeed, without changing anything.
    pub fn can_alloc(&self, pages: u64, align_order: u32) -> bool {
        self.placement(pages, align_order).is_some()
    }

    /// First page of the run [`Self::alloc`] would take now, without changing anything.
    pub fn placement(&self, pages: u64, align_order: u32) -> Option<u64> {
        self.check(pages, align_order).ok()?;
        self.find(pages, align_order)
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
    pub fn alloc(
        &mut self,
        pages: u64,
        align_order: u32,
        events: &mut impl FnMut(Event),
    ) -> Result<Allocation, AllocError> {
        self.check(pages, align_order)?;
        let offset = self.find(pages, align_order).ok_or(AllocError::OutOfMemory)?;
        Ok(self.carve(Allocation { offset, pages }, events))
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
        if offset & ((1 << align_order) - 1) != 0 || !self.all_free(offset, end) {
            return Err(AllocError::OutOfMemory);
        }
        Ok(self.carve(Allocation { offset, pages }, events))
    }

    /// Take a free, aligned run: split the tree along its edges, mark its
    /// pages and its start.
    fn carve(&mut self, allocation: Allocation, events: &mut impl FnMut(Event)) -> Allocation {
        let Allocation { offset, pages } = allocation;
        self.split_for(allocation, events);
        self.mark::<false>(offset, offset + pages);
        self.words[(offset / 64) as usize] |= 1 << (offset % 64);
        self.free_pages -= pages;
        allocation
    }

    /// Give back one allocation, exactly as [`Self::alloc`] returned it.
    /// Refused, with the pool unchanged, for any other run. Free halves are
    /// merged back up the tree.
    pub fn free(&mut self, allocation: Allocation, events: &mut impl FnMut(Event)) -> Result<(), FreeError> {
        let Allocation { offset, pages } = allocation;
        if pages == 0 || pages > self.pages() || offset > self.pages() - pages {
            return Err(FreeError::NotAllocated);
        }
        let end = offset + pages;
        let whole = self.start_bit(offset)
            && self.allocated_alone(offset, end)
            && (end == self.pages() || self.start_bit(end) || self.free_bit(end));
        if !whole {
            return Err(FreeError::NotAllocated);
        }
        self.words[(offset / 64) as usize] &= !(1 << (offset % 64));
        self.mark::<true>(offset, end);
        self.free_pages += pages;
        self.merge_after(allocation, events);
        Ok(())
    }

    // --- where: the search ---

    /// First page of the run [`Self::alloc`] would take: the lowest run for
    /// up to [`BEST_FIT_ABOVE`] pages, else [`Self::best_fit`].
    fn find(&self, pages: u64, align_order: u32) -> Option<u64> {
        if pages > BEST_FIT_ABOVE {
            self.best_fit(pages, align_order)
        } else if align_order == 0 {
            self.search_unaligned(pages)
        } else {
            self.search(1, self.order, 0, pages, align_order)
        }
    }

    /// Placement of a large run: the shortest maximal free run that holds
    /// `pages` pages at `2^align` alignment (the highest of equally short
    /// ones) among the first [`BEST_FIT_CANDIDATES`] that do, and in it the
    /// highest such start, moved down to a large-page boundary for a run of
    /// at least `2^LARGE_ORDER` pages if it still fits. Visits the nodes on
    /// the way to each free run of at least `pages` pages it looks at:
    /// O(log P) per such run.
    fn best_fit(&self, pages: u64, align: u32) -> Option<u64> {
        let (size, root) = (self.pages(), self.sums[1]);
        if (root.longest as u64) < pages {
            return None;
        }
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
        if root.prefix as u64 == size {
            consider(0, size);
        } else if consider(0, root.prefix as u64) && self.interior_runs(1, self.order, 0, pages, &mut consider) {
            consider(size - root.suffix as u64, root.suffix as u64);
        }
        let (length, start) = best?;
        let highest = align_down(start + length - pages, align);
        let large = align_down(highest, LARGE_ORDER.max(align));
        Some(if pages >= 1 << LARGE_ORDER && large >= start { large } else { highest })
    }

    /// Report, in address order, every maximal free run of at least `pages`
    /// (more than one chunk) pages inside `node` (of `2^order` pages from
    /// page `offset`) that touches neither of its ends: those are its
    /// parent's, or the pool's prefix and suffix. Stops as soon as `report`
    /// returns false, and returns false then.
    fn interior_runs(
        &self,
        node: usize,
        order: u32,
        offset: u64,
        pages: u64,
        report: &mut impl FnMut(u64, u64) -> bool,
    ) -> bool {
        let sum = self.sums[node];
        // A chunk holds no run that long; a free node is one run touching both ends.
        if (sum.longest as u64) < pages || node >= self.chunks || sum.prefix as u64 == 1 << order {
            return true;
        }
        let half = order - 1;
        let middle = offset + (1 << half);
        let (left, right) = (self.sums[2 * node], self.sums[2 * node + 1]);
        if !self.interior_runs(2 * node, half, offset, pages, report) {
            return false;
        }
        if (left.suffix as u64) < 1 << half && (right.prefix as u64) < 1 << half {
            let length = (left.suffix + right.prefix) as u64;
            if length >= pages && !report(middle - left.suffix as u64, length) {
                return false;
            }
        }
        self.interior_runs(2 * node + 1, half, middle, pages, report)
    }

    /// [`Self::search`] at page alignment: every run long enough fits, so
    /// one walk down, without going back.
    fn search_unaligned(&self, pages: u64) -> Option<u64> {
        if (self.sums[1].longest as u64) < pages {
            return None;
        }
        // Only the node number is kept on the way down: a node's first page
        // follows from it (its rank on its level times its size).
        let first_page = |node: usize| {
            let depth = 63 - (node as u64).leading_zeros();
            (node as u64 - (1 << depth)) << (self.order - depth)
        };
        let mut node = 1;
        while node < self.chunks {
            node *= 2;
            let left = self.sums[node];
            if (left.longest as u64) < pages {
                node += 1;
                if (left.suffix + self.sums[node].prefix) as u64 >= pages {
                    return Some(first_page(node) - left.suffix as u64);
                }
            }
        }
        let starts = run_starts(self.words[node], pages);
        Some(first_page(node) + starts.trailing_zeros() as u64)
    }

    /// Lowest run of `pages` free pages at `2^align` alignment in `node`
    /// (of `2^order` pages from page `offset`), whole or crossing its middle.
    fn search(&self, node: usize, order: u32, offset: u64, pages: u64, align: u32) -> Option<u64> {
        if (self.sums[node].longest as u64) < pages {
            return None;
        }
        if node >= self.chunks {
            if pages > 64 {
                return None;
            }
            let pattern =
                if align < CHUNK_ORDER { BLOCK_STARTS[align as usize] } else { (offset % (1 << align) == 0) as u64 };
            let starts = run_starts(self.words[node], pages) & pattern;
            return (starts != 0).then(|| offset + starts.trailing_zeros() as u64);
        }
        let half = order - 1;
        let middle = offset + (1 << half);
        if let Some(found) = self.search(2 * node, half, offset, pages, align) {
            return Some(found);
        }
        let (left, right) = (self.sums[2 * node], self.sums[2 * node + 1]);
        let start = align_up(middle - left.suffix as u64, align);
        if start < middle && start + pages <= middle + right.prefix as u64 {
            return Some(start);
        }
        self.search(2 * node + 1, half, middle, pages, align)
    }

    // --- the tree's shape: events ---

    /// Highest order, from `from` up to `limit`, such that the blocks of
    /// every order above `from` up to it that hold `page` are all free.
    /// Inside the chunk in closed form from the free run around the page,
    /// then one node per order above it.
    #[inline]
    fn free_up_to(&self, page: u64, from: u32, limit: u32) -> u32 {
        let chunk_order = CHUNK_ORDER.min(self.order);
        let mut order = from;
        if order < chunk_order {
            let (word, bit) = (self.free_word(page), page % 64);
            order = order.max(free_order_in_word(word, bit).min(chunk_order)).min(limit);
            if order < chunk_order {
                return order;
            }
        }
        if order < limit {
            let mut node = (self.chunks + (page / 64) as usize) >> (order - chunk_order);
            while order < limit {
                node >>= 1;
                if self.sums[node].prefix != 2 << order {
                    return order;
                }
                order += 1;
            }
        }
        order
    }

    /// Report the splits carving `allocation` out of free pages needs, top
    /// down: the free blocks holding its first or last page that it does not
    /// cover, down to its edge leaves.
    fn split_for(&self, allocation: Allocation, events: &mut impl FnMut(Event)) {
        let Allocation { offset: first, pages } = allocation;
        let (last, end) = (first + pages - 1, first + pages);
        let first_leaf = leaf_order(first, pages);
        let last_leaf = (63 - pages.leading_zeros()).min(end.trailing_zeros());
        let common = (64 - (first ^ last).leading_zeros()).max(first_leaf + 1).max(last_leaf + 1);
        let top_first = self.free_up_to(first, first_leaf, self.order);
        // Below `common` only: if the block of order `common` is free, so is
        // everything in it.
        let top_last = if top_first >= common { common - 1 } else { self.free_up_to(last, last_leaf, common - 1) };
        let split = |page, order| Event::Split(Block::containing(page, order, self.order));
        for order in (common..top_first + 1).rev() {
            events(split(first, order));
        }
        for order in (first_leaf + 1..top_first.min(common - 1) + 1).rev() {
            events(split(first, order));
        }
        for order in (last_leaf + 1..top_last.min(common - 1) + 1).rev() {
            events(split(last, order));
        }
    }

    /// Report the merges freeing `allocation` allows, bottom up: the blocks
    /// holding its first or last page that are all free now.
    fn merge_after(&self, allocation: Allocation, events: &mut impl FnMut(Event)) {
        let Allocation { offset: first, pages } = allocation;
        let (last, end) = (first + pages - 1, first + pages);
        let first_leaf = leaf_order(first, pages);
        let last_leaf = (63 - pages.leading_zeros()).min(end.trailing_zeros());
        let common = (64 - (first ^ last).leading_zeros()).max(first_leaf + 1).max(last_leaf + 1);
        let merge = |page, order| Event::Merge(Block::containing(page, order, self.order));
        let mut both = true;
        for (page, leaf) in [(first, first_leaf), (last, last_leaf)] {
            let top = self.free_up_to(page, leaf, common - 1);
            for order in leaf + 1..top + 1 {
                events(merge(page, order));
            }
            both &= top == common - 1;
        }
        // The block of order `common` holds both edges: free only if both
        // merged all the way below it.
        if both {
            for order in common..self.free_up_to(first, common - 1, self.order) + 1 {
                events(merge(first, order));
            }
        }
    }

    // --- bits and summaries ---

    /// Pages per chunk: 64, or the whole pool if it is smaller.
    fn chunk_width(&self) -> u32 {
        1 << CHUNK_ORDER.min(self.order)
    }

    fn chunk_mask(&self) -> u64 {
        u64::MAX >> (64 - self.chunk_width())
    }

    #[inline]
    fn free_word(&self, page: u64) -> u64 {
        self.words[self.chunks + (page / 64) as usize]
    }

    fn free_bit(&self, page: u64) -> bool {
        self.free_word(page) & (1 << (page % 64)) != 0
    }

    fn start_bit(&self, page: u64) -> bool {
        self.words[(page / 64) as usize] & (1 << (page % 64)) != 0
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
    fn allocated_alone(&self, mut from: u64, to: u64) -> bool {
        let first = from;
        while from < to {
            let (mask, next) = Self::word_range(from, to);
            let starts = self.words[(from / 64) as usize];
            let starts = if from == first { starts & !(1 << (first % 64)) } else { starts };
            if (self.free_word(from) | starts) & mask != 0 {
                return false;
            }
            from = next;
        }
        true
    }

    /// Mark pages `[from, to)` free or allocated (they are all the other way
    /// now) and update every summary above them: the chunks at the run's two
    /// ends and the two nodes holding them on each level are recomputed, the
    /// nodes between them are all free or all allocated now. Above the node
    /// holding the whole run, one node per level, stopping at the first whose
    /// summary stays the same: nothing above it can change either.
    fn mark<const FREE: bool>(&mut self, from: u64, to: u64) {
        let free = FREE; // a copy per direction: no branch on it
        let width = self.chunk_width();
        let (mut low, mut high) = (self.chunks + (from / 64) as usize, self.chunks + ((to - 1) / 64) as usize);
        let head = u64::MAX << (from % 64);
        let tail = u64::MAX >> (63 - (to - 1) % 64);
        if low == high {
            if !self.flip(low, head & tail, free, width) {
                return;
            }
        } else {
            self.flip(low, head, free, width);
            self.flip(high, tail, free, width);
            if high > low + 1 {
                self.words[low + 1..high].fill(if free { u64::MAX } else { 0 });
                self.sums[low + 1..high].fill(if free { Sum::free(64) } else { Sum::default() });
            }
        }
        let mut half = width;
        while low / 2 != high / 2 {
            (low, high) = (low / 2, high / 2);
            if high > low + 1 {
                self.sums[low + 1..high].fill(if free { Sum::free(2 * half) } else { Sum::default() });
            }
            self.sums[low] = Sum::join(self.sums[2 * low], self.sums[2 * low + 1], half);
            self.sums[high] = Sum::join(self.sums[2 * high], self.sums[2 * high + 1], half);
            half <<= 1;
        }
        let mut node = low;
        while node > 1 {
            node /= 2;
            let sum = Sum::join(self.sums[2 * node], self.sums[2 * node + 1], half);
            if self.sums[node] == sum {
                return;
            }
            self.sums[node] = sum;
            half <<= 1;
        }
    }

    /// Set (`free`) or clear the bits `mask` of chunk node `node` and
    /// recompute its summary; whether the summary changed.
    #[inline(always)]
    fn flip(&mut self, node: usize, mask: u64, free: bool, width: u32) -> bool {
        let word = &mut self.words[node];
        *word = if free { *word | mask } else { *word & !mask };
        let sum = Sum::of_chunk(*word, width);
        let changed = self.sums[node] != sum;
        self.sums[node] = sum;
        changed
    }
}

#[cfg(test)]
impl<const NODES: usize> Pool<NODES> {
    /// Every summary as recomputed from the free bits alone (tests: the
    /// incremental updates must leave exactly this).
    fn summaries_from_scratch(&self) -> [Sum; NODES] {
        let mut sums = [Sum::default(); NODES];
        let leaves = self.chunks..2 * self.chunks;
        for (sum, &word) in sums[leaves.clone()].iter_mut().zip(&self.words[leaves]) {
            *sum = Sum::of_chunk(word, self.chunk_width());
        }
        for node in (1..self.chunks).rev() {
            let depth = 63 - (node as u64).leading_zeros();
            sums[node] = Sum::join(sums[2 * node], sums[2 * node + 1], 1 << (self.order - depth - 1));
        }
        sums
    }
}

#[cfg(test)]
mod tests;
