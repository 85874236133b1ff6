//! Prints a table comparing capbuf's pool allocator with the frame allocator
//! of `buddy_system_allocator`, in the same run, on the same mixed workload:
//! alloc+free pairs per second, and internal waste (bytes reserved per byte
//! requested and per page-rounded byte, and the most pages one buffer wasted).
//!
//! The workload is deterministic (a fixed-seed xorshift): request sizes in
//! bytes, 70% up to 32 KiB, 25% up to 1 MiB, 5% up to 8 MiB; up to 512
//! buffers live in a 1 GiB pool; each step frees a random live buffer or
//! allocates a new one.

mod ops;

use std::hint::black_box;
use std::time::Instant;

use buddy_system_allocator::FrameAllocator;
use capbuf_pool::{Allocation, Pool};

const PAGE: u64 = 4096;
const POOL_ORDER: u32 = 18; // 2^18 pages = 1 GiB
const STEPS: usize = 2_000_000;
const LIVE: usize = 512;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn size(&mut self) -> u64 {
        let class = self.next() % 100;
        let max = match class {
            0..70 => 32 << 10,
            70..95 => 1 << 20,
            _ => 8 << 20,
        };
        1 + self.next() % max
    }
}

/// What one allocator did over the workload.
struct Run {
    pairs: u64,
    seconds: f64,
    requested: u64,
    rounded: u64,
    reserved: u64,
    worst_extra_pages: u64,
    failures: u64,
}

trait Allocator {
    fn alloc(&mut self, pages: u64) -> Option<(u64, u64)>;
    fn free(&mut self, start: u64, pages: u64);
    /// Pages actually taken for a request of `pages`.
    fn reserved(pages: u64) -> u64;
}

struct Capbuf(Box<Pool<{ 2 << POOL_ORDER }>>);

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

struct Buddy(FrameAllocator<32>);

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

fn run<A: Allocator>(allocator: &mut A) -> Run {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<(u64, u64)> = Vec::with_capacity(LIVE);
    let (mut pairs, mut requested, mut rounded, mut reserved, mut worst, mut failures) = (0, 0, 0, 0, 0, 0);
    let start = Instant::now();
    for _ in 0..STEPS {
        let free = !live.is_empty() && (live.len() >= LIVE || rng.next() % 2 == 0);
        if free {
            let i = (rng.next() % live.len() as u64) as usize;
            let (at, pages) = live.swap_remove(i);
            allocator.free(black_box(at), pages);
            pairs += 1;
        } else {
            let bytes = rng.size();
            let pages = bytes.div_ceil(PAGE);
            match allocator.alloc(black_box(pages)) {
                Some(a) => {
                    live.push(a);
                    requested += bytes;
                    rounded += pages * PAGE;
                    reserved += A::reserved(pages) * PAGE;
                    worst = worst.max(A::reserved(pages) - pages);
                }
                None => failures += 1,
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Run { pairs, seconds, requested, rounded, reserved, worst_extra_pages: worst, failures }
}

fn main() {
    let mut capbuf = Capbuf(Box::new(Pool::new(POOL_ORDER).expect("pool fits")));
    let mut buddy = Buddy(FrameAllocator::new());
    buddy.0.add_frame(0, 1 << POOL_ORDER);
    // Warm up both once, then measure.
    run(&mut capbuf);
    run(&mut buddy);
    let results = [
        ("capbuf-pool (exact fit)", run(&mut capbuf)),
        ("buddy_system_allocator 0.11 FrameAllocator", run(&mut buddy)),
    ];
    println!("workload: {STEPS} steps, up to {LIVE} live buffers, sizes 1 B..8 MiB (70% <= 32 KiB), pool 1 GiB of 4 KiB pages");
    println!();
    println!("| allocator | alloc+free pairs/s | reserved / requested bytes | reserved / page-rounded bytes | worst pages beyond rounding | failed allocs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in &results {
        println!(
            "| {name} | {:.2} M | {:.3} | {:.3} | {} | {} |",
            r.pairs as f64 / r.seconds / 1e6,
            r.reserved as f64 / r.requested as f64,
            r.reserved as f64 / r.rounded as f64,
            r.worst_extra_pages,
            r.failures
        );
    }
    println!();
    println!("capbuf-pool footprint: 2 bytes of tree per 4 KiB page (1/2048 of the pool), fixed, no heap.");
    println!();
    ops::print();
}
