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
        "events" => events(pairs),
        _ => panic!("capbuf, buddy or events"),
    }
}

/// Events per operation (printed with `events`).
struct Counting(Capbuf, u64);

impl capbuf_bench::workload::Allocator for Counting {
    fn alloc(&mut self, pages: u64) -> Option<(u64, u64)> {
        let n = &mut self.1;
        (self.0).0.alloc(pages, 0, &mut |_| *n += 1).ok().map(|a| (a.offset, a.pages))
    }
    fn free(&mut self, offset: u64, pages: u64) {
        let n = &mut self.1;
        (self.0).0.free(capbuf_pool::Allocation { offset, pages }, &mut |_| *n += 1).expect("live");
    }
    fn reserved(pages: u64) -> u64 {
        pages
    }
}

#[allow(dead_code)]
fn events(pairs: u64) {
    let mut w = Workload::new(Counting(Capbuf::new(), 0));
    w.pairs(pairs);
    println!("{} events per pair", w.allocator.1 as f64 / pairs as f64);
}
