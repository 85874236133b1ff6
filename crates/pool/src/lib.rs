//! A buddy allocator shaped by how seL4 splits untyped memory.
//!
//! seL4 carves an untyped region only into children aligned to their own size,
//! placed at the region's watermark, and gets it back whole by revoking. So a
//! pool (one naturally aligned untyped region) is managed as a binary tree of
//! blocks: a block is *free*, *allocated* (a leaf handed out) or *split*
//! into two halves. Each split and each merge is reported as an [`Event`] so
//! the caller can mirror it in the kernel: retype the block's untyped into two
//! half-size untypeds, or revoke the block to delete them again.
//!
//! Unlike a plain buddy allocator, an allocation of `n` pages takes the exact
//! run of `n` pages from the start of a block of `2^ceil(log2 n)` pages and
//! gives the tail back (as Linux's `alloc_pages_exact` does): the run is made
//! of the blocks of the binary decomposition of `n`, largest first. Internal
//! waste is therefore below one page per buffer, against up to half the
//! buffer for a plain buddy allocator.
//!
//! The tree lives in one byte per node in a fixed array (no heap): for a pool
//! of `P` pages, `2P` bytes, i.e. 1/2048 of the pool's size. Each node records
//! the order of the largest free block below it, so finding a block is a
//! walk from the root (O(log P)), as is freeing.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
    /// The allocated leaf blocks, largest (and lowest) first. Their sizes are the
    /// binary decomposition of `pages`, each naturally aligned.
    pub fn blocks(self, pool_order: u32) -> impl Iterator<Item = Block> {
        let mut offset = self.offset;
        let mut remaining = self.pages;
        core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            let order = 63 - remaining.leading_zeros();
            let node = (1u32 << (pool_order - order)) + (offset >> order) as u32;
            offset += 1 << order;
            remaining -= 1 << order;
            Some(Block { node, order })
        })
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Zero pages.
    ZeroSize,
    /// More pages, or a larger alignment, than the whole pool.
    TooLarge,
    /// No free block is large enough.
    OutOfMemory,
}

/// Why a free was refused. The pool is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The run is not exactly one earlier allocation.
    NotAllocated,
}

const ALLOCATED: u8 = 0x80;

/// One pool of `2^order` pages. `NODES` bounds the pool: it must be at least
/// twice the number of pages ([`Pool::nodes_for`]).
#[derive(Clone)]
pub struct Pool<const NODES: usize> {
    order: u32,
    free_pages: u64,
    /// Per node: the order of the largest free block below it plus one (0: none),
    /// or [`ALLOCATED`] for an allocated leaf.
    nodes: [u8; NODES],
}

impl<const NODES: usize> Pool<NODES> {
    /// Array length needed for a pool of `2^order` pages.
    pub const fn nodes_for(order: u32) -> usize {
        2 << order
    }

    /// A pool of `2^order` pages, all free. `None` if `NODES` is too small or
    /// the order too large to count nodes in 32 bits.
    pub fn new(order: u32) -> Option<Self> {
        if order > 30 || Self::nodes_for(order) > NODES {
            return None;
        }
        let mut pool = Pool { order, free_pages: 1 << order, nodes: [0; NODES] };
        pool.nodes[1] = order as u8 + 1;
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

    /// Pages in the largest free block.
    pub fn largest_free(&self) -> u64 {
        match self.nodes[1] {
            0 | ALLOCATED => 0,
            longest => 1 << (longest - 1),
        }
    }

    /// Whether `block` is currently an allocated leaf.
    pub fn is_allocated(&self, block: Block) -> bool {
        block.order <= self.order && self.nodes.get(block.node as usize) == Some(&ALLOCATED)
    }

    fn is_free_block(&self, block: Block) -> bool {
        self.nodes[block.node as usize] == block.order as u8 + 1
    }

    fn update(&mut self, block: Block) {
        let (left, right) = block.children();
        let longest = |v: u8| if v == ALLOCATED { 0 } else { v };
        self.nodes[block.node as usize] =
            longest(self.nodes[left.node as usize]).max(longest(self.nodes[right.node as usize]));
    }

    fn split(&mut self, block: Block, events: &mut impl FnMut(Event)) {
        debug_assert!(self.is_free_block(block));
        let (left, right) = block.children();
        self.nodes[left.node as usize] = left.order as u8 + 1;
        self.nodes[right.node as usize] = right.order as u8 + 1;
        self.nodes[block.node as usize] = block.order as u8;
        events(Event::Split(block));
    }

    /// Allocate `pages` contiguous pages whose first page is aligned to
    /// `2^align_order` pages. The run starts a block of `2^ceil(log2 pages)`
    /// pages (or of the alignment, if larger); the rest of that block stays free.
    pub fn alloc(
        &mut self,
        pages: u64,
        align_order: u32,
        events: &mut impl FnMut(Event),
    ) -> Result<Allocation, AllocError> {
        if pages == 0 {
            return Err(AllocError::ZeroSize);
        }
        if pages > self.pages() || align_order > self.order {
            return Err(AllocError::TooLarge);
        }
        let need = (64 - (pages - 1).leading_zeros()).max(align_order);
        if self.nodes[1] == ALLOCATED || self.nodes[1] < need as u8 + 1 {
            return Err(AllocError::OutOfMemory);
        }
        // Walk down to a free block of order `need`, preferring at each step the
        // half whose largest free block is smaller (best fit), then the lower one.
        let mut block = self.root();
        while block.order > need {
            if self.is_free_block(block) {
                self.split(block, events);
            }
            let (left, right) = block.children();
            let fits = |v: u8| v != ALLOCATED && v > need as u8;
            let (l, r) = (self.nodes[left.node as usize], self.nodes[right.node as usize]);
            block = match (fits(l), fits(r)) {
                (true, true) if r < l => right,
                (true, _) => left,
                (false, true) => right,
                (false, false) => unreachable!("the parent promised a free block of order {need}"),
            };
        }
        self.take_run(block, pages, events);
        let mut node = block.node / 2;
        while node >= 1 {
            let order = self.order - (31 - node.leading_zeros());
            self.update(Block { node, order });
            node /= 2;
        }
        self.free_pages -= pages;
        Ok(Allocation { offset: block.offset(), pages })
    }

    /// Mark the first `pages` pages of the free `block` allocated, as leaves
    /// of the binary decomposition, and leave the rest free.
    fn take_run(&mut self, block: Block, pages: u64, events: &mut impl FnMut(Event)) {
        if pages == block.pages() {
            self.nodes[block.node as usize] = ALLOCATED;
            return;
        }
        self.split(block, events);
        let (left, right) = block.children();
        let half = left.pages();
        if pages >= half {
            self.nodes[left.node as usize] = ALLOCATED;
            if pages > half {
                self.take_run(right, pages - half, events);
            }
        } else {
            self.take_run(left, pages, events);
        }
        self.update(block);
    }

    /// Give back a run of pages. Refused, with the pool unchanged, unless every
    /// leaf of the run's binary decomposition is an allocated leaf: any
    /// allocation qualifies, as does a leading part of one made of whole
    /// leaves. Free halves are merged back up the tree.
    pub fn free(&mut self, allocation: Allocation, events: &mut impl FnMut(Event)) -> Result<(), FreeError> {
        if allocation.pages == 0
            || allocation.pages > self.pages()
            || allocation.offset > self.pages() - allocation.pages
        {
            return Err(FreeError::NotAllocated);
        }
        let first = allocation.blocks(self.order).next().ok_or(FreeError::NotAllocated)?;
        if allocation.offset & (first.pages() - 1) != 0 {
            return Err(FreeError::NotAllocated);
        }
        if !allocation.blocks(self.order).all(|b| self.is_allocated(b)) {
            return Err(FreeError::NotAllocated);
        }
        for leaf in allocation.blocks(self.order) {
            self.nodes[leaf.node as usize] = leaf.order as u8 + 1;
            let mut child = leaf;
            while child.node > 1 {
                let parent = Block { node: child.node / 2, order: child.order + 1 };
                let (left, right) = parent.children();
                if self.is_free_block(left) && self.is_free_block(right) {
                    self.nodes[parent.node as usize] = parent.order as u8 + 1;
                    events(Event::Merge(parent));
                } else {
                    self.update(parent);
                }
                child = parent;
            }
        }
        self.free_pages += allocation.pages;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
