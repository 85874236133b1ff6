//! The fragmentation study: random churn held at an occupancy, then the
//! largest contiguous allocation that still succeeds, as a fraction of the
//! free memory, for capbuf's pool and for a first-fit baseline.
//!
//! Each run fills a 1 GiB pool with the workload's sizes up to the
//! occupancy, then churns: below the occupancy it allocates, at or above it
//! frees a random live buffer. Over the second half of the churn it samples,
//! every [`SAMPLE_EVERY`] steps, the longest free run over the free pages;
//! the study reports the mean over the samples of [`SEEDS`] seeds.

use capbuf_pool::{nodes_for, Allocation, Pool};

use crate::first_fit::FirstFit;
use crate::workload::{Rng, PAGE, POOL_ORDER};

/// Churn steps per run.
pub const STEPS: usize = 200_000;
/// Steps between two samples in the second half.
pub const SAMPLE_EVERY: usize = 1_000;
/// Seeds per occupancy.
pub const SEEDS: u64 = 5;
/// The occupancies studied, in percent.
pub const OCCUPANCIES: [u64; 3] = [50, 75, 90];

/// An allocator in the study.
pub trait Fragmenting {
    /// Name in the `BENCH frag_<name>_<occupancy>` lines.
    const NAME: &'static str;
    /// First page of `pages` free pages, taken.
    fn alloc(&mut self, pages: u64) -> Option<u64>;
    /// Give them back.
    fn free(&mut self, start: u64, pages: u64);
    /// Pages of the largest allocation that would succeed now.
    fn largest(&self) -> u64;
}

/// capbuf's pool, at page alignment.
pub struct CapbufPool(Box<Pool<{ nodes_for(POOL_ORDER) }>>);

impl Default for CapbufPool {
    fn default() -> Self {
        CapbufPool(Box::new(Pool::new(POOL_ORDER).expect("pool fits")))
    }
}

impl Fragmenting for CapbufPool {
    const NAME: &'static str = "capbuf";
    fn alloc(&mut self, pages: u64) -> Option<u64> {
        self.0.alloc(pages, 0, &mut |_| {}).ok().map(|a| a.offset)
    }
    fn free(&mut self, offset: u64, pages: u64) {
        self.0.free(Allocation { offset, pages }, &mut |_| {}).expect("live allocation");
    }
    fn largest(&self) -> u64 {
        let longest = self.0.largest_free();
        assert!(longest == 0 || self.0.can_alloc(longest, 0), "the longest free run must be allocatable");
        assert!(!self.0.can_alloc(longest + 1, 0));
        longest
    }
}

/// The first-fit baseline.
pub struct FirstFitPool(FirstFit);

impl Default for FirstFitPool {
    fn default() -> Self {
        FirstFitPool(FirstFit::new(1 << POOL_ORDER))
    }
}

impl Fragmenting for FirstFitPool {
    const NAME: &'static str = "firstfit";
    fn alloc(&mut self, pages: u64) -> Option<u64> {
        self.0.alloc(pages)
    }
    fn free(&mut self, start: u64, pages: u64) {
        self.0.free(start, pages)
    }
    fn largest(&self) -> u64 {
        self.0.longest()
    }
}

/// What one allocator showed at one occupancy, over every seed.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Mean of largest allocation / free pages over the samples.
    pub mean: f64,
    /// The smallest sample.
    pub min: f64,
    /// Mean occupancy actually held, in percent.
    pub occupancy: f64,
    /// Allocations refused during the churn, per 1000 attempts.
    pub failures_per_mille: f64,
}

/// Run the study for `A` at `percent` occupancy.
pub fn study<A: Fragmenting + Default>(percent: u64) -> Outcome {
    let total = 1u64 << POOL_ORDER;
    let target = total * percent / 100;
    let (mut sum, mut min, mut samples, mut held) = (0.0, f64::MAX, 0u64, 0.0);
    let (mut attempts, mut failures) = (0u64, 0u64);
    for seed in 0..SEEDS {
        let mut allocator = A::default();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut used = 0u64;
        for step in 0..STEPS {
            if used < target {
                let pages = rng.size().div_ceil(PAGE);
                attempts += 1;
                match allocator.alloc(pages) {
                    Some(start) => {
                        live.push((start, pages));
                        used += pages;
                    }
                    None => failures += 1,
                }
            } else {
                let i = (rng.word() % live.len() as u64) as usize;
                let (start, pages) = live.swap_remove(i);
                allocator.free(start, pages);
                used -= pages;
            }
            if step >= STEPS / 2 && step % SAMPLE_EVERY == 0 {
                let fraction = allocator.largest() as f64 / (total - used) as f64;
                sum += fraction;
                min = min.min(fraction);
                held += used as f64 / total as f64 * 100.0;
                samples += 1;
            }
        }
    }
    Outcome {
        mean: sum / samples as f64,
        min,
        occupancy: held / samples as f64,
        failures_per_mille: failures as f64 * 1000.0 / attempts as f64,
    }
}
