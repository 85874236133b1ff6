//! The mixed workload both allocators run, and the two allocators behind one trait.
//!
//! Deterministic (a fixed-seed xorshift): request sizes in bytes, 70% up to
//! 32 KiB, 25% up to 1 MiB, 5% up to 8 MiB; up to [`LIVE`] buffers live in a
//! 1 GiB pool; each step frees a random live buffer or allocates a new one.

use buddy_system_allocator::FrameAllocator;
use capbuf_pool::{nodes_for, Allocation, Pool};

/// Bytes per page.
pub const PAGE: u64 = 4096;
/// The pool: 2^18 pages, 1 GiB.
pub const POOL_ORDER: u32 = 18;
/// Most buffers live at once.
pub const LIVE: usize = 512;

/// xorshift64: the same sequence on every machine.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Next pseudo-random word.
    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A request size in bytes.
    pub fn size(&mut self) -> u64 {
        let class = self.word() % 100;
        let max = match class {
            0..70 => 32 << 10,
            70..95 => 1 << 20,
            _ => 8 << 20,
        };
        1 + self.word() % max
    }
}

/// A page allocator under test.
pub trait Allocator {
    /// Allocate `pages` pages: `(first page, pages)`.
    fn alloc(&mut self, pages: u64) -> Option<(u64, u64)>;
    /// Free what [`Self::alloc`] returned.
    fn free(&mut self, start: u64, pages: u64);
    /// Pages actually taken for a request of `pages`.
    fn reserved(pages: u64) -> u64;
}

/// capbuf's pool.
pub struct Capbuf(pub Box<Pool<{ nodes_for(POOL_ORDER) }>>);

impl Capbuf {
    /// A fresh 1 GiB pool.
    pub fn new() -> Self {
        Capbuf(Box::new(Pool::new(POOL_ORDER).expect("pool fits")))
    }
}

impl Default for Capbuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Allocator for Capbuf {
    fn alloc(&mut self, pages: u64) -> Option<(u64, u64)> {
        self.0.alloc(pages, 0, &mut |_| {}).ok().map(|a| (a.offset, a.pages))
    }
    fn free(&mut self, offset: u64, pages: u64) {
        self.0.free(Allocation { offset, pages }, &mut |_| {}).expect("live allocation");
    }
    fn reserved(pages: u64) -> u64 {
        pages
    }
}

/// buddy_system_allocator's frame allocator over the same pages.
pub struct Buddy(pub FrameAllocator<32>);

impl Buddy {
    /// A fresh allocator over 2^[`POOL_ORDER`] frames.
    pub fn new() -> Self {
        let mut frames = FrameAllocator::new();
        frames.add_frame(0, 1 << POOL_ORDER);
        Buddy(frames)
    }
}

impl Default for Buddy {
    fn default() -> Self {
        Self::new()
    }
}

impl Allocator for Buddy {
    fn alloc(&mut self, pages: u64) -> Option<(u64, u64)> {
        self.0.alloc(pages as usize).map(|start| (start as u64, pages))
    }
    fn free(&mut self, start: u64, pages: u64) {
        self.0.dealloc(start as usize, pages as usize);
    }
    fn reserved(pages: u64) -> u64 {
        pages.next_power_of_two()
    }
}

/// What a run of the workload did.
#[derive(Clone, Copy, Default, Debug)]
pub struct Tally {
    /// Frees (each pairs with the allocation it gives back).
    pub pairs: u64,
    /// Bytes requested by successful allocations.
    pub requested: u64,
    /// The same, rounded up to pages.
    pub rounded: u64,
    /// Bytes the allocator took for them.
    pub reserved: u64,
    /// Most pages one buffer took beyond its page-rounded size.
    pub worst_extra_pages: u64,
    /// Allocations refused.
    pub failures: u64,
}

/// One allocator running the workload, resumable: each [`Self::pairs`] call
/// continues where the last stopped.
pub struct Workload<A> {
    /// The allocator.
    pub allocator: A,
    rng: Rng,
    live: Vec<(u64, u64)>,
    /// Totals so far.
    pub tally: Tally,
}

impl<A: Allocator> Workload<A> {
    /// The workload on `allocator`, from the fixed seed.
    pub fn new(allocator: A) -> Self {
        Workload { allocator, rng: Rng(0x9e37_79b9_7f4a_7c15), live: Vec::with_capacity(LIVE), tally: Tally::default() }
    }

    /// Run until `pairs` more buffers have been freed.
    #[inline(never)]
    pub fn pairs(&mut self, pairs: u64) {
        let goal = self.tally.pairs + pairs;
        while self.tally.pairs < goal {
            self.step();
        }
    }

    fn step(&mut self) {
        let rng = &mut self.rng;
        let free = !self.live.is_empty() && (self.live.len() >= LIVE || rng.word() % 2 == 0);
        if free {
            let i = (rng.word() % self.live.len() as u64) as usize;
            let (at, pages) = self.live.swap_remove(i);
            self.allocator.free(std::hint::black_box(at), pages);
            self.tally.pairs += 1;
        } else {
            let bytes = rng.size();
            let pages = bytes.div_ceil(PAGE);
            match self.allocator.alloc(std::hint::black_box(pages)) {
                Some(a) => {
                    self.live.push(a);
                    let t = &mut self.tally;
                    t.requested += bytes;
                    t.rounded += pages * PAGE;
                    t.reserved += A::reserved(pages) * PAGE;
                    t.worst_extra_pages = t.worst_extra_pages.max(A::reserved(pages) - pages);
                }
                None => self.tally.failures += 1,
            }
        }
    }
}
