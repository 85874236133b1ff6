//! alloc+free pairs per second of capbuf's pool and buddy_system_allocator's
//! frame allocator on the same workload (`capbuf_bench::workload`), measured
//! by divan: `cargo bench -p capbuf-bench --bench pairs` (part of `make bench`).
//! Each sample continues the workload where the last stopped.

use capbuf_bench::workload::{Buddy, Capbuf, Workload};
use divan::counter::ItemsCount;
use divan::Bencher;

/// Pairs per iteration.
const PAIRS: u64 = 1_000;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 200, sample_size = 10)]
fn capbuf_pool(bencher: Bencher) {
    let mut workload = Workload::new(Capbuf::new());
    workload.pairs(20 * PAIRS);
    bencher.counter(ItemsCount::new(PAIRS)).bench_local(|| workload.pairs(PAIRS));
}

#[divan::bench(sample_count = 200, sample_size = 10)]
fn buddy_system_allocator(bencher: Bencher) {
    let mut workload = Workload::new(Buddy::new());
    workload.pairs(20 * PAIRS);
    bencher.counter(ItemsCount::new(PAIRS)).bench_local(|| workload.pairs(PAIRS));
}
