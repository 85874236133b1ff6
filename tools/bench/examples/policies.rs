//! Placement policies tried for the pool, on the fragmentation study's churn
//! (the same sizes, seeds, steps and samples as `make bench`), over an
//! ordered map of free extents rather than the pool itself: a quick way to
//! compare where to put a run before building it into the pool.
//! `cargo run --release -p capbuf-bench --example policies`.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use capbuf_bench::fragmentation::{OCCUPANCIES, SAMPLE_EVERY, SEEDS, STEPS};
use capbuf_bench::workload::{Rng, PAGE, POOL_ORDER};

/// 2 MiB in pages.
const LARGE: u64 = 512;

/// Free extents, first page to length.
struct Extents(BTreeMap<u64, u64>);

impl Extents {
    fn take(&mut self, at: u64, pages: u64) {
        let (&start, &length) = self.0.range(..=at).next_back().expect("inside a free extent");
        assert!(at + pages <= start + length);
        self.0.remove(&start);
        if at > start {
            self.0.insert(start, at - start);
        }
        if start + length > at + pages {
            self.0.insert(at + pages, start + length - at - pages);
        }
    }

    fn give(&mut self, start: u64, pages: u64) {
        let (mut start, mut length) = (start, pages);
        if let Some((&before, &before_length)) = self.0.range(..start).next_back() {
            if before + before_length == start {
                self.0.remove(&before);
                (start, length) = (before, length + before_length);
            }
        }
        if let Some(after_length) = self.0.remove(&(start + length)) {
            length += after_length;
        }
        self.0.insert(start, length);
    }

    fn first_fit(&self, pages: u64) -> Option<(u64, u64)> {
        self.0.iter().find(|(_, &l)| l >= pages).map(|(&s, &l)| (s, l))
    }

    /// Shortest extent that holds `pages`, the highest of equally short ones.
    fn best_fit(&self, pages: u64) -> Option<(u64, u64)> {
        self.0.iter().filter(|(_, &l)| l >= pages).min_by_key(|(&s, &l)| (l, Reverse(s))).map(|(&s, &l)| (s, l))
    }
}

/// The policies: name and where a run of `pages` goes.
type Policy = (&'static str, fn(&Extents, u64) -> Option<u64>);

const POLICIES: [Policy; 7] = [
    ("first fit", |e, n| e.first_fit(n).map(|(s, _)| s)),
    ("best fit (the lowest of equally short runs), at its start", |e, n| {
        e.0.iter().filter(|(_, &l)| l >= n).min_by_key(|(&s, &l)| (l, s)).map(|(&s, _)| s)
    }),
    ("first fit, small runs inside 2 MiB regions", |e, n| {
        let inside = e.0.iter().find_map(|(&s, &l)| {
            let mut at = s;
            while at + n <= s + l {
                let boundary = (at / LARGE + 1) * LARGE;
                if at + n <= boundary {
                    return Some(at);
                }
                at = boundary;
            }
            None
        });
        if n < LARGE {
            inside.or_else(|| e.first_fit(n).map(|(s, _)| s))
        } else {
            e.first_fit(n).map(|(s, _)| s)
        }
    }),
    ("up to 1 MiB first fit, larger last fit at the top", |e, n| {
        if n <= 256 {
            e.first_fit(n).map(|(s, _)| s)
        } else {
            e.0.iter().rev().find(|(_, &l)| l >= n).map(|(&s, &l)| s + l - n)
        }
    }),
    ("up to 2 MiB first fit, larger best fit at the top", |e, n| {
        if n <= 512 {
            e.first_fit(n).map(|(s, _)| s)
        } else {
            e.best_fit(n).map(|(s, l)| s + l - n)
        }
    }),
    ("up to 1 MiB first fit, larger best fit at the top", |e, n| {
        if n <= 256 {
            e.first_fit(n).map(|(s, _)| s)
        } else {
            e.best_fit(n).map(|(s, l)| s + l - n)
        }
    }),
    ("the pool: as above, 2 MiB and more down to a 2 MiB boundary", |e, n| {
        if n <= 256 {
            return e.first_fit(n).map(|(s, _)| s);
        }
        let (s, l) = e.best_fit(n)?;
        let top = s + l - n;
        Some(if n >= LARGE && top / LARGE * LARGE >= s { top / LARGE * LARGE } else { top })
    }),
];

/// Mean largest extent / free pages over the samples, as the study takes it.
fn study(place: fn(&Extents, u64) -> Option<u64>, percent: u64) -> f64 {
    let total = 1u64 << POOL_ORDER;
    let target = total * percent / 100;
    let (mut sum, mut samples) = (0.0, 0u64);
    for seed in 0..SEEDS {
        let mut extents = Extents(BTreeMap::from([(0, total)]));
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (mut live, mut used): (Vec<(u64, u64)>, u64) = (Vec::new(), 0);
        for step in 0..STEPS {
            if used < target {
                let pages = rng.size().div_ceil(PAGE);
                if let Some(at) = place(&extents, pages) {
                    extents.take(at, pages);
                    live.push((at, pages));
                    used += pages;
                }
            } else {
                let (at, pages) = live.swap_remove((rng.word() % live.len() as u64) as usize);
                extents.give(at, pages);
                used -= pages;
            }
            if step >= STEPS / 2 && step % SAMPLE_EVERY == 0 {
                let longest = extents.0.values().copied().max().unwrap_or(0);
                sum += longest as f64 / (total - used) as f64;
                samples += 1;
            }
        }
    }
    sum / samples as f64
}

fn main() {
    println!("| policy | {} |", OCCUPANCIES.map(|p| format!("{p}%")).join(" | "));
    println!("|---|{}", "---:|".repeat(OCCUPANCIES.len()));
    for (name, place) in POLICIES {
        println!("| {name} | {} |", OCCUPANCIES.map(|p| format!("{:.3}", study(place, p))).join(" | "));
    }
}
