//! Run one allocator on the bench workload for callgrind or perf:
//! `cargo run --release -p capbuf-bench --example profile -- capbuf|buddy [pairs]`.
//! With `valgrind --tool=callgrind --toggle-collect='*Workload*pairs*'` the
//! instructions per pair are the collected total over the pairs.

use capbuf_bench::workload::{Buddy, Capbuf, Workload};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "capbuf".into());
    let pairs: u64 = args.next().map_or(200_000, |s| s.parse().expect("pairs"));
    match which.as_str() {
        "capbuf" => {
            let mut w = Workload::new(Capbuf::new());
            w.pairs(pairs);
            println!("capbuf {pairs} pairs, {} failures", w.tally.failures);
        }
        "buddy" => {
            let mut w = Workload::new(Buddy::new());
            w.pairs(pairs);
            println!("buddy {pairs} pairs, {} failures", w.tally.failures);
        }
        _ => panic!("capbuf or buddy"),
    }
}
