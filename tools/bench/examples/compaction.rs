//! What moving buffers would buy the fragmentation study: the same churn as
//! `make bench` on the pool itself, and at every sample the largest run
//! that moving the *movable* live buffers could free, for a share of them
//! movable (an idle buffer: not attached, exported or exposed to a device,
//! so memsrv alone holds capabilities to it and could copy it elsewhere).
//! `cargo run --release -p capbuf-bench --example compaction`.
//!
//! Two figures per share, as fractions of the free pages: the *bound*, with
//! buffers as a fluid (the longest stretch between two pinned buffers, or
//! all the free pages if fewer: no placement does better), and a *plan*
//! that places them: the stretch chosen, its movable buffers and then any
//! others go, largest first, first fit into the free pages outside it (the
//! pages they leave count as free), and what does not fit stays at its
//! end. Nothing is moved in the churn itself; this measures the room.

use std::collections::BTreeMap;

use capbuf_bench::fragmentation::{OCCUPANCIES, SAMPLE_EVERY, SEEDS, STEPS};
use capbuf_bench::workload::{Rng, PAGE, POOL_ORDER};
use capbuf_pool::{nodes_for, Allocation, Pool};

/// Shares of the live buffers that may move, in percent.
const MOVABLE: [u64; 5] = [0, 25, 50, 75, 100];

/// Whether live buffer `id` may move at share `percent` (a fixed hash, so a
/// buffer's fate does not depend on when it is sampled).
fn movable(id: u64, percent: u64) -> bool {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100 < percent
}

/// Largest free run after moving, (bound, plan), in pages.
fn room(total: u64, live: &BTreeMap<u64, (u64, u64)>, percent: u64) -> (u64, u64) {
    let free = total - live.values().map(|&(pages, _)| pages).sum::<u64>();
    // Stretches between pinned buffers, with the movable buffers in each.
    let mut stretches: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    let mut start = 0;
    let mut inside = Vec::new();
    for (&at, &(pages, id)) in live {
        if movable(id, percent) {
            inside.push(pages);
        } else {
            stretches.push((start, at, std::mem::take(&mut inside)));
            start = at + pages;
        }
    }
    stretches.push((start, total, inside));
    let longest = stretches.iter().map(|(s, e, _)| e - s).max().unwrap_or(0);
    let bound = longest.min(free);
    // The plan, for the few longest stretches: its movable buffers go, first
    // fit largest first, into the free pages and the other stretches' room
    // (each other stretch treated as one hole of its free pages plus its
    // movable buffers' pages, which may be rearranged inside it).
    let mut order: Vec<usize> = (0..stretches.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(stretches[i].1 - stretches[i].0));
    let mut plan = 0;
    for &chosen in order.iter().take(4) {
        let (s, e, ref movers) = stretches[chosen];
        let mut holes: Vec<u64> =
            stretches.iter().enumerate().filter(|&(i, _)| i != chosen).map(|(_, (s, e, _))| e - s).collect();
        // The other stretches' own movable buffers stay in them: take their
        // pages out of the room first (they pack, being movable).
        for (i, (_, _, theirs)) in stretches.iter().enumerate().filter(|&(i, _)| i != chosen) {
            let slot = if i < chosen { i } else { i - 1 };
            holes[slot] -= theirs.iter().sum::<u64>();
        }
        holes.sort_unstable_by(|a, b| b.cmp(a));
        let mut movers = movers.clone();
        movers.sort_unstable_by(|a, b| b.cmp(a));
        let mut stuck = 0;
        for pages in movers {
            match holes.iter_mut().find(|hole| **hole >= pages) {
                Some(hole) => *hole -= pages,
                None => stuck += pages,
            }
        }
        plan = plan.max((e - s).saturating_sub(stuck));
    }
    (bound, plan.min(free))
}

fn main() {
    let total = 1u64 << POOL_ORDER;
    println!("| occupancy | now | {} |", MOVABLE.map(|m| format!("{m}% movable: bound, plan")).join(" | "));
    println!("|---:|---:|{}", "---:|".repeat(MOVABLE.len()));
    for percent in OCCUPANCIES {
        let target = total * percent / 100;
        let mut now = 0.0;
        let mut sums = [(0.0, 0.0); MOVABLE.len()];
        let mut samples = 0u64;
        for seed in 0..SEEDS {
            let mut pool = Box::new(Pool::<{ nodes_for(POOL_ORDER) }>::new(POOL_ORDER).expect("pool fits"));
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut live: Vec<(u64, u64, u64)> = Vec::new();
            let mut used = 0u64;
            let mut next_id = 0u64;
            for step in 0..STEPS {
                if used < target {
                    let pages = rng.size().div_ceil(PAGE);
                    if let Ok(a) = pool.alloc(pages, 0, &mut |_| {}) {
                        live.push((a.offset, pages, next_id));
                        next_id += 1;
                        used += pages;
                    }
                } else {
                    let (offset, pages, _) = live.swap_remove((rng.word() % live.len() as u64) as usize);
                    pool.free(Allocation { offset, pages }, &mut |_| {}).expect("live allocation");
                    used -= pages;
                }
                if step >= STEPS / 2 && step % SAMPLE_EVERY == 0 {
                    let free = (total - used) as f64;
                    now += pool.largest_free() as f64 / free;
                    let by_address: BTreeMap<u64, (u64, u64)> =
                        live.iter().map(|&(at, pages, id)| (at, (pages, id))).collect();
                    for (i, &share) in MOVABLE.iter().enumerate() {
                        let (bound, plan) = room(total, &by_address, share);
                        sums[i].0 += bound as f64 / free;
                        sums[i].1 += plan as f64 / free;
                    }
                    samples += 1;
                }
            }
        }
        let n = samples as f64;
        let cells = sums.map(|(bound, plan)| format!("{:.3}, {:.3}", bound / n, plan / n));
        println!("| {percent}% | {:.3} | {} |", now / n, cells.join(" | "));
    }
}
