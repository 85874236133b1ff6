//! `make bench`: capbuf's pool against buddy_system_allocator's frame
//! allocator, interleaved in one run on the same workload
//! ([`capbuf_bench::workload`]): alloc+free pairs per second (median and
//! range over rounds, and the ratio, which a loaded machine leaves robust),
//! internal waste, the fragmentation study against a first-fit baseline
//! ([`capbuf_bench::fragmentation`]), then the kernel invocations memsrv
//! makes per request. Lines `BENCH <name> <value> <unit>` carry the figures
//! for scripts. divan's statistics of the same pairs: `cargo bench -p
//! capbuf-bench --bench pairs` (also run by `make bench`).

mod ops;

use std::time::Instant;

use capbuf_bench::fragmentation::{self, CapbufPool, FirstFitPool, OCCUPANCIES};
use capbuf_bench::workload::{Allocator, Buddy, Capbuf, Tally, Workload, LIVE};

/// Rounds; each times both allocators once, in alternating order.
const ROUNDS: usize = 21;
/// Pairs per allocator per round.
const PAIRS: u64 = 100_000;

fn timed<A: Allocator>(workload: &mut Workload<A>) -> f64 {
    let start = Instant::now();
    workload.pairs(PAIRS);
    PAIRS as f64 / start.elapsed().as_secs_f64()
}

/// Median, smallest, largest.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn waste(name: &str, t: &Tally) {
    println!(
        "| {name} | {:.3} | {:.3} | {} | {} |",
        t.reserved as f64 / t.requested as f64,
        t.reserved as f64 / t.rounded as f64,
        t.worst_extra_pages,
        t.failures
    );
}

fn throughput() {
    let mut capbuf = Workload::new(Capbuf::new());
    let mut buddy = Workload::new(Buddy::new());
    timed(&mut capbuf);
    timed(&mut buddy);
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = timed(&mut capbuf);
            (a, timed(&mut buddy))
        } else {
            let b = timed(&mut buddy);
            (timed(&mut capbuf), b)
        };
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    println!(
        "workload: up to {LIVE} live buffers, sizes 1 B..8 MiB (70% <= 32 KiB), pool 1 GiB of 4 KiB pages; \
         {ROUNDS} rounds of {PAIRS} alloc+free pairs per allocator, interleaved"
    );
    println!();
    println!("| allocator | pairs/s, median | min | max |");
    println!("|---|---:|---:|---:|");
    let (capbuf_median, capbuf_min, capbuf_max) = spread(ours);
    let (buddy_median, buddy_min, buddy_max) = spread(theirs);
    let (ratio, ratio_min, ratio_max) = spread(ratios);
    println!(
        "| capbuf-pool (exact fit) | {:.2} M | {:.2} M | {:.2} M |",
        capbuf_median / 1e6,
        capbuf_min / 1e6,
        capbuf_max / 1e6
    );
    println!(
        "| buddy_system_allocator 0.11 FrameAllocator | {:.2} M | {:.2} M | {:.2} M |",
        buddy_median / 1e6,
        buddy_min / 1e6,
        buddy_max / 1e6
    );
    println!("| ratio capbuf / buddy, per round | {ratio:.2}x | {ratio_min:.2}x | {ratio_max:.2}x |");
    println!();
    println!("| allocator | reserved / requested bytes | reserved / page-rounded bytes | worst pages beyond rounding | failed allocs |");
    println!("|---|---:|---:|---:|---:|");
    waste("capbuf-pool (exact fit)", &capbuf.tally);
    waste("buddy_system_allocator 0.11 FrameAllocator", &buddy.tally);
    println!();
    let footprint = std::mem::size_of_val(&*capbuf.allocator.0);
    println!(
        "capbuf-pool footprint: {footprint} bytes for this 1 GiB pool ({:.3} bytes per 4 KiB page), fixed, no heap.",
        footprint as f64 / (1u64 << capbuf_bench::workload::POOL_ORDER) as f64
    );
    println!();
    println!("BENCH pairs_capbuf {capbuf_median:.0} pairs/s");
    println!("BENCH pairs_capbuf_min {capbuf_min:.0} pairs/s");
    println!("BENCH pairs_capbuf_max {capbuf_max:.0} pairs/s");
    println!("BENCH pairs_buddy {buddy_median:.0} pairs/s");
    println!("BENCH pairs_buddy_min {buddy_min:.0} pairs/s");
    println!("BENCH pairs_buddy_max {buddy_max:.0} pairs/s");
    println!("BENCH pairs_capbuf_over_buddy {ratio:.3} ratio");
    let waste = |t: &Tally| t.reserved as f64 / t.requested as f64;
    println!("BENCH waste_capbuf {:.4} ratio", waste(&capbuf.tally));
    println!("BENCH waste_buddy {:.4} ratio", waste(&buddy.tally));
    println!();
}

fn fragmentation_study() {
    println!(
        "Fragmentation: churn held at an occupancy of a 1 GiB pool (the workload's sizes), {} steps x {} seeds; \
         largest allocation that still succeeds / free memory, mean over samples (min):",
        fragmentation::STEPS,
        fragmentation::SEEDS
    );
    println!();
    println!("| occupancy | capbuf | first fit | capbuf / first fit | held (capbuf, first fit) | refused per 1000 (capbuf, first fit) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut lines = Vec::new();
    for percent in OCCUPANCIES {
        let ours = fragmentation::study::<CapbufPool>(percent);
        let theirs = fragmentation::study::<FirstFitPool>(percent);
        println!(
            "| {percent}% | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.2}x | {:.1}%, {:.1}% | {:.1}, {:.1} |",
            ours.mean,
            ours.min,
            theirs.mean,
            theirs.min,
            ours.mean / theirs.mean,
            ours.occupancy,
            theirs.occupancy,
            ours.failures_per_mille,
            theirs.failures_per_mille
        );
        lines.push(format!(
            "BENCH frag_{}_{percent} {:.4} ratio",
            <CapbufPool as fragmentation::Fragmenting>::NAME,
            ours.mean
        ));
        lines.push(format!(
            "BENCH frag_{}_{percent} {:.4} ratio",
            <FirstFitPool as fragmentation::Fragmenting>::NAME,
            theirs.mean
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    println!();
}

fn main() {
    throughput();
    fragmentation_study();
    // memsrv's state passes through the stack while it is built: more than
    // the main thread's stack holds at the protocol's full scale.
    let ops = std::thread::Builder::new().stack_size(256 << 20).spawn(ops::print).expect("thread");
    ops.join().expect("kernel invocation counts");
}
