use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type TestPool = Pool<{ nodes_for(8) }>;

/// The kernel's view, rebuilt from events alone: which blocks exist as untyped
/// objects and which of them have been split into children.
#[derive(Default)]
struct Mirror {
    existing: BTreeSet<u32>,
    split: BTreeSet<u32>,
}

impl Mirror {
    fn new() -> Self {
        Mirror { existing: [1].into(), split: BTreeSet::new() }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Split(b) => {
                assert!(self.existing.contains(&b.node()), "split of a block that does not exist: {b:?}");
                assert!(self.split.insert(b.node()), "block split twice: {b:?}");
                let (l, r) = b.children();
                self.existing.insert(l.node());
                self.existing.insert(r.node());
            }
            Event::Merge(b) => {
                assert!(self.split.remove(&b.node()), "merge of a block that was not split: {b:?}");
                let (l, r) = b.children();
                for child in [l, r] {
                    assert!(!self.split.contains(&child.node()), "merged child still split: {child:?}");
                    assert!(self.existing.remove(&child.node()));
                }
            }
        }
    }

    /// Leaf blocks (existing, not split) must tile the pool exactly.
    fn check_tiling(&self, order: u32) {
        let mut covered = 0u64;
        let mut next = 0u64;
        let mut leaves: Vec<Block> = self
            .existing
            .iter()
            .filter(|n| !self.split.contains(n))
            .map(|&node| Block { node, order: order - (31 - node.leading_zeros()) })
            .collect();
        leaves.sort_by_key(|b| b.offset());
        for leaf in leaves {
            assert_eq!(leaf.offset(), next, "leaves leave a hole or overlap");
            next += leaf.pages();
            covered += leaf.pages();
        }
        assert_eq!(covered, 1 << order);
    }
}

#[test]
fn an_odd_run_is_trimmed_to_the_exact_page_count() {
    let mut pool = TestPool::new(4).unwrap();
    let mut mirror = Mirror::new();
    let a = pool.alloc(5, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(a, Allocation { offset: 0, pages: 5 });
    let blocks: Vec<_> = a.blocks(4).map(|b| (b.offset(), b.pages())).collect();
    assert_eq!(blocks, [(0, 4), (4, 1)]);
    assert_eq!(pool.free_pages(), 11);
    assert_eq!(pool.largest_free(), 11, "the tail and the free half are one run");
    mirror.check_tiling(4);
    // The trimmed tail is really free: three more single pages fit in it.
    let b = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
    let c = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((b.offset, c.offset), (5, 7));
    let leaves: Vec<_> = b.blocks(4).map(|b| (b.offset(), b.pages())).collect();
    assert_eq!(leaves, [(5, 1), (6, 1)], "b crosses the boundary of two 2-page blocks");
    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    pool.free(b, &mut |e| mirror.apply(e)).unwrap();
    pool.free(c, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.free_pages(), 16);
    assert_eq!(pool.largest_free(), 16);
    // a and b, with an allocation on either side when freed, are parked.
    let parked: Vec<_> = pool.parked_runs().collect();
    assert_eq!(parked, [b, a], "by size");
    pool.settle(&mut |e| mirror.apply(e));
    assert_eq!(mirror.existing, [1].into(), "everything merged back into the root");
}

#[test]
fn first_fit_takes_the_lowest_run_that_holds_the_request() {
    let mut pool = TestPool::new(4).unwrap();
    let mut ignore = |_| {};
    let a = pool.alloc(1, 0, &mut ignore).unwrap();
    let _b = pool.alloc(3, 0, &mut ignore).unwrap();
    let c = pool.alloc(4, 0, &mut ignore).unwrap();
    pool.free(a, &mut ignore).unwrap();
    pool.free(c, &mut ignore).unwrap();
    // Free: page 0, pages 4..16.
    assert_eq!(pool.alloc(2, 0, &mut ignore).unwrap().offset, 4, "page 0 is too short");
    assert_eq!(pool.alloc(1, 0, &mut ignore).unwrap().offset, 0, "the hole at 0 is filled first");
    assert_eq!(pool.alloc(2, 2, &mut ignore).unwrap().offset, 8, "the next 4-page boundary");
}

#[test]
fn alignment_is_honoured() {
    let mut pool = TestPool::new(8).unwrap();
    let mut ignore = |_| {};
    pool.alloc(1, 0, &mut ignore).unwrap();
    let a = pool.alloc(1, 4, &mut ignore).unwrap();
    assert_eq!(a.offset % 16, 0);
    assert_eq!(a.offset, 16);
    assert_eq!(pool.free_pages(), 254, "the alignment gap is not lost");
}

#[test]
fn errors_leave_the_pool_unchanged() {
    let mut pool = TestPool::new(4).unwrap();
    let mut events = 0;
    assert_eq!(pool.alloc(0, 0, &mut |_| events += 1), Err(AllocError::ZeroSize));
    assert_eq!(pool.alloc(17, 0, &mut |_| events += 1), Err(AllocError::TooLarge));
    assert_eq!(pool.alloc(1, 5, &mut |_| events += 1), Err(AllocError::TooLarge));
    let a = pool.alloc(9, 0, &mut |_| events += 1).unwrap();
    let before = events;
    assert_eq!(pool.alloc(8, 0, &mut |_| events += 1), Err(AllocError::OutOfMemory));
    assert!(!pool.can_alloc(8, 0));
    assert!(pool.can_alloc(7, 0));
    assert_eq!(events, before);
    // Runs that are not exactly one allocation, including its leading leaf
    // alone: the kernel mirror would lose track of the rest.
    for bad in [
        Allocation { offset: 1, pages: 9 },
        Allocation { offset: 0, pages: 10 },
        Allocation { offset: 0, pages: 8 },
        Allocation { offset: 9, pages: 1 },
        Allocation { offset: 12, pages: 4 },
        Allocation { offset: 15, pages: 2 },
        Allocation { offset: 0, pages: 0 },
        Allocation { offset: u64::MAX, pages: 1 },
    ] {
        let snapshot = pool.clone();
        assert_eq!(pool.free(bad, &mut |_| events += 1), Err(FreeError::NotAllocated), "{bad:?}");
        assert_eq!(pool, snapshot);
    }
    pool.free(a, &mut |_| {}).unwrap();
    assert_eq!(pool.free(a, &mut |_| {}), Err(FreeError::NotAllocated), "double free");
    assert_eq!(pool.free_pages(), 16);
}

/// Two pools driven alike through `steps` steps of random churn: `searched`
/// by [`Pool::alloc`], `placed` by `alloc`, which is given the request
/// (pages, alignment) and answers with the allocation, or `None` where
/// there is no room; the same allocations, the same events and the same
/// state after every step. `pages` picks a request's size from a random word.
fn churn_alike<const N: usize>(
    (searched, placed): (&mut Pool<N>, &mut Pool<N>),
    (mut seed, steps): (u64, u64),
    pages: impl Fn(u64) -> u64,
    alloc: impl Fn(&mut Pool<N>, u64, u32, &mut Mirror) -> Option<Result<Allocation, AllocError>>,
) {
    let (mut a, mut b) = (Mirror::new(), Mirror::new());
    let mut live = Vec::new();
    for step in 0..steps {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if seed % 3 == 0 && !live.is_empty() {
            let allocation = live.swap_remove((seed as usize / 3) % live.len());
            searched.free(allocation, &mut |e| a.apply(e)).unwrap();
            placed.free(allocation, &mut |e| b.apply(e)).unwrap();
        } else {
            let (pages, align) = (pages(seed), ((seed >> 20) % 4) as u32);
            let Some(result) = alloc(placed, pages, align, &mut b) else { continue };
            let expected = searched.alloc(pages, align, &mut |e| a.apply(e)).unwrap();
            assert_eq!(result, Ok(expected), "step {step}");
            live.push(expected);
        }
        assert_eq!(searched, placed);
        assert_eq!((&a.existing, &a.split), (&b.existing, &b.split));
    }
}

#[test]
fn alloc_at_the_placement_is_alloc_and_refuses_any_other_run() {
    // One pool by alloc, one by alloc_at its own placement.
    let (mut searched, mut placed) = (TestPool::new(8).unwrap(), TestPool::new(8).unwrap());
    churn_alike(
        (&mut searched, &mut placed),
        (0x2545_f491_4f6c_dd1d, 2000),
        |seed| 1 + (seed >> 8) % 40,
        |pool, pages, align, mirror| {
            let offset = pool.placement(pages, align)?;
            Some(pool.alloc_at(offset, pages, align, &mut |e| mirror.apply(e)))
        },
    );
    // Refused, the pool unchanged: a run with an allocated page, a
    // misaligned one, one past the end, an empty one.
    let mut pool = TestPool::new(4).unwrap();
    pool.alloc_at(4, 2, 0, &mut |_| {}).unwrap();
    let snapshot = pool.clone();
    let mut events = 0;
    for (offset, pages, align) in [(3, 2, 0), (5, 1, 0), (6, 2, 2), (15, 2, 0), (u64::MAX, 1, 0)] {
        assert_eq!(pool.alloc_at(offset, pages, align, &mut |_| events += 1), Err(AllocError::OutOfMemory));
    }
    assert_eq!(pool.alloc_at(0, 0, 0, &mut |_| events += 1), Err(AllocError::ZeroSize));
    assert_eq!((events, &pool), (0, &snapshot));
}

#[test]
fn alloc_placed_is_alloc_and_a_stale_placement_is_checked_again() {
    // As above, with place and alloc_placed: small runs inside a chunk,
    // runs across chunks, best-fit ones.
    type Big = Pool<{ nodes_for(11) }>;
    let (mut searched, mut placed) = (Big::new(11).unwrap(), Big::new(11).unwrap());
    churn_alike(
        (&mut searched, &mut placed),
        (0x9e37_79b9_7f4a_7c15, 4000),
        |seed| [1 + (seed >> 8) % 8, 1 + (seed >> 8) % 100, 200 + (seed >> 8) % 300][(seed >> 40) as usize % 3],
        |pool, pages, align, mirror| {
            let placement = pool.place(pages, align)?;
            assert_eq!(placement.offset(), pool.placement(pages, align).unwrap());
            Some(pool.alloc_placed(placement, &mut |e| mirror.apply(e)))
        },
    );
    // A placement made before the pool changed: taken where it said if
    // still free, refused with the pool unchanged if not.
    let mut pool = TestPool::new(6).unwrap();
    let early = pool.place(4, 0).unwrap();
    pool.alloc(2, 0, &mut |_| {}).unwrap();
    let snapshot = pool.clone();
    assert_eq!(pool.alloc_placed(early, &mut |_| {}), Err(AllocError::OutOfMemory), "page 0 is taken");
    assert_eq!(pool, snapshot);
    let later = pool.place(4, 0).unwrap();
    pool.free(Allocation { offset: 0, pages: 2 }, &mut |_| {}).unwrap();
    assert_eq!(pool.alloc_placed(later, &mut |_| {}), Ok(Allocation { offset: 2, pages: 4 }), "still free there");
    assert_eq!(pool.free_pages(), 60);
}

#[test]
fn two_adjacent_allocations_are_freed_one_at_a_time_only() {
    let mut pool = TestPool::new(4).unwrap();
    let mut mirror = Mirror::new();
    let a = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
    let b = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((a.offset, b.offset), (0, 2));
    assert_eq!(pool.free(Allocation { offset: 0, pages: 4 }, &mut |e| mirror.apply(e)), Err(FreeError::NotAllocated));
    assert_eq!(pool.free(Allocation { offset: 0, pages: 1 }, &mut |e| mirror.apply(e)), Err(FreeError::NotAllocated));
    pool.free(b, &mut |e| mirror.apply(e)).unwrap();
    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(mirror.existing, [1].into());
}

/// A small run freed between two allocations is parked: free at once
/// (counted, answered free, joined into the longest run), but with no
/// event, and handed out whole, again with no event, to the next request of
/// its size. Freeing it again is refused, parked or not.
#[test]
fn a_small_run_freed_between_allocations_is_parked_and_handed_out_again_whole() {
    let mut pool = TestPool::new(8).unwrap();
    let mut mirror = Mirror::new();
    let mut events = 0;
    let x = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    let a = pool.alloc(3, 0, &mut |e| mirror.apply(e)).unwrap();
    let y = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((x.offset, a.offset, y.offset), (0, 1, 4));
    pool.free(a, &mut |_| events += 1).unwrap();
    assert_eq!(events, 0, "parked: no merge");
    assert_eq!(pool.parked_runs().collect::<Vec<_>>(), [a]);
    assert_eq!(pool.free_pages(), 254);
    assert!((1..4).all(|p| pool.is_free_page(p)) && !pool.is_free_page(0) && !pool.is_free_page(4));
    assert!(!pool.is_allocated(Block::containing(1, 0, 8)), "a parked run is not allocated");
    for again in [pool.free(a, &mut |_| events += 1), pool.release(a, &mut |_| events += 1)] {
        assert_eq!(again, Err(FreeError::NotAllocated));
    }
    assert_eq!(pool.placement(3, 0), Some(1));
    assert_eq!(pool.alloc(3, 0, &mut |_| events += 1), Ok(a), "the parked run, whole");
    assert_eq!((events, pool.free_pages()), (0, 251));
    assert!(pool.parked_runs().next().is_none());
    mirror.check_tiling(8);
    // Another size, or an alignment the parked run lacks, searches.
    pool.free(a, &mut |_| events += 1).unwrap();
    assert_eq!(pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap().offset, 5);
    assert_eq!(pool.alloc(3, 1, &mut |e| mirror.apply(e)).unwrap().offset, 8);
    assert_eq!(pool.parked_runs().collect::<Vec<_>>(), [a]);
}

/// Only a run with no free page beside it is parked (one parked in a free
/// run would cut that run in two), only up to [`PARK_MAX_PAGES`] pages and
/// [`PARK_DEPTH`] runs a size: the rest is merged at once.
#[test]
fn runs_beside_free_pages_long_runs_and_a_full_size_are_merged() {
    let mut pool = Box::new(Pool::<{ nodes_for(12) }>::new(12).unwrap());
    let mut mirror = Mirror::new();
    // 2-page runs with a page between each pair, and a long run.
    let runs: Vec<_> = (0..=PARK_DEPTH)
        .map(|_| {
            let run = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
            pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
            run
        })
        .collect();
    let long = pool.alloc(PARK_MAX_PAGES + 1, 0, &mut |e| mirror.apply(e)).unwrap();
    let last = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    pool.free(long, &mut |e| mirror.apply(e)).unwrap();
    assert!(pool.parked_runs().next().is_none(), "too long to park");
    for &run in &runs[..PARK_DEPTH] {
        pool.free(run, &mut |e| mirror.apply(e)).unwrap();
    }
    assert_eq!(pool.parked_runs().count(), PARK_DEPTH);
    let free_before = pool.free_pages();
    pool.free(runs[PARK_DEPTH], &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.parked_runs().count(), PARK_DEPTH, "the size's list is full");
    assert!(pool.is_free_page(runs[PARK_DEPTH].offset));
    assert_eq!(pool.free_pages(), free_before + 2);
    // The page after `last` is free: freed, it joins that run.
    pool.free(last, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.parked_runs().count(), PARK_DEPTH);
    mirror.check_tiling(12);
}

/// Parked runs are free to every query, and a request that needs their
/// pages gets them: here a parked run whose neighbour was freed after it
/// lies inside a free run the bitmaps see in two parts. The request longer
/// than either merges the parked runs first (the events say so), and a
/// placement decided before is carried out the same way.
#[test]
fn a_request_that_needs_parked_pages_merges_them_first() {
    let mut pool = TestPool::new(6).unwrap();
    let mut mirror = Mirror::new();
    let a = pool.alloc(19, 0, &mut |e| mirror.apply(e)).unwrap();
    let p = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
    let b = pool.alloc(43, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((a.offset, p.offset, b.offset, pool.free_pages()), (0, 19, 21, 0));
    pool.free(p, &mut |e| mirror.apply(e)).unwrap();
    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.parked_runs().collect::<Vec<_>>(), [p], "a, freed after it, is too long to park");
    assert_eq!(pool.largest_free(), 21, "the free pages and the parked run, joined");
    assert!(pool.can_alloc(21, 0) && pool.can_alloc(16, 4) && !pool.can_alloc(22, 0));
    let decided = pool.place(21, 0).unwrap();
    assert_eq!(decided.offset(), 0);
    let (mut merges, mut splits) = (0, 0);
    let taken = pool.alloc_placed(decided, &mut |e| {
        match e {
            Event::Merge(_) => merges += 1,
            Event::Split(_) => splits += 1,
        }
        mirror.apply(e)
    });
    assert_eq!(taken, Ok(Allocation { offset: 0, pages: 21 }));
    assert_eq!((merges, splits), (2, 0), "pages 18..20, then 16..20, merged: the run's leaves are blocks already");
    assert!(pool.parked_runs().next().is_none());
    assert_eq!(pool.free_pages(), 0);
    mirror.check_tiling(6);
    // alloc_at on a parked run takes it whole; through one, merges first.
    pool.free(Allocation { offset: 0, pages: 21 }, &mut |e| mirror.apply(e)).unwrap();
    pool.free(b, &mut |e| mirror.apply(e)).unwrap();
    let q = pool.alloc_at(20, 4, 0, &mut |e| mirror.apply(e)).unwrap();
    let r = pool.alloc_at(24, 4, 0, &mut |e| mirror.apply(e)).unwrap();
    let _s = pool.alloc_at(28, 1, 0, &mut |e| mirror.apply(e)).unwrap();
    pool.free(r, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.parked_runs().collect::<Vec<_>>(), [r]);
    let mut events = 0;
    assert_eq!(pool.alloc_at(24, 4, 2, &mut |_| events += 1), Ok(r));
    assert_eq!(events, 0);
    pool.free(r, &mut |e| mirror.apply(e)).unwrap();
    pool.free(q, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.parked_runs().count(), 1, "q had free pages before it");
    assert_eq!(pool.alloc_at(22, 5, 0, &mut |e| mirror.apply(e)), Ok(Allocation { offset: 22, pages: 5 }));
    assert!(pool.parked_runs().next().is_none());
    mirror.check_tiling(6);
}

/// A large request that only a free run through a parked run holds goes
/// where the large ones go (best fit, at the top, down to a 2 MiB boundary),
/// not to the run's first page: its 2 MiB frames, and memsrv's bound on the
/// metadata a buffer needs, depend on it.
#[test]
fn a_large_request_through_a_parked_run_keeps_its_large_pages() {
    type Big = Pool<{ nodes_for(11) }>;
    let mut pool = Box::new(Big::new(11).unwrap());
    let mut mirror = Mirror::new();
    let mut at = |pool: &mut Big, offset, pages| pool.alloc_at(offset, pages, 0, &mut |e| mirror.apply(e)).unwrap();
    let _low = at(&mut pool, 0, 10);
    let b = at(&mut pool, 10, 990);
    let p = at(&mut pool, 1000, 4);
    let d = at(&mut pool, 1004, 696);
    let _high = at(&mut pool, 1700, 348);
    for run in [p, b, d] {
        pool.free(run, &mut |e| mirror.apply(e)).unwrap();
    }
    assert_eq!(pool.parked_runs().collect::<Vec<_>>(), [p]);
    assert_eq!(pool.largest_free(), 1690);
    // Free runs of 990 and 696 pages, 1690 through the parked one: the
    // highest start of 1024 pages is 676, the 2 MiB boundary below it 512.
    assert_eq!(pool.placement(1024, 0), Some(512));
    let a = pool.alloc(1024, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(a.offset, 512);
    assert_eq!(a.blocks(11).map(|b| b.order()).collect::<Vec<_>>(), [9, 9], "two 2 MiB blocks");
    assert!(pool.parked_runs().next().is_none(), "merged first");
    mirror.check_tiling(11);
}

#[test]
fn a_pool_that_does_not_fit_its_array_is_refused() {
    assert_eq!(nodes_for(4), 2, "one chunk: the root is the chunk");
    assert_eq!(nodes_for(6), 2);
    assert_eq!(nodes_for(7), 4);
    assert_eq!(nodes_for(20), 1 << 15, "a 4 GiB pool: 32768 nodes");
    assert!(Pool::<2>::new(4).is_some());
    assert!(Pool::<3>::new(7).is_none());
    assert!(Pool::<{ 1 << 10 }>::new(31).is_none());
}

#[test]
fn a_4_gib_pool_takes_less_than_one_byte_per_page() {
    // 4 bytes of tree, 2 of capped tree and 8 of bitmap per node, two
    // nodes per 64 pages.
    // 40 bytes more: order, root, free pages, parked pages, chunks, version;
    // and the parked runs: 4 bytes each, a byte per size for the count.
    let parked = PARK_DEPTH as u64 * PARK_MAX_PAGES * 4 + PARK_MAX_PAGES;
    assert_eq!(core::mem::size_of::<Pool<{ nodes_for(20) }>>() as u64, (1 << 15) * 14 + 40 + parked);
    assert!(core::mem::size_of::<Pool<{ nodes_for(20) }>>() < 1 << 20);
}

/// The case measured in QEMU: a 16 MiB pool holding one 8 MiB buffer and one
/// page of memsrv's own has 8 MiB - 4 KiB free in one run, but no free block
/// of 8 MiB. Every run up to that length succeeds, at the alignment asked.
#[test]
fn a_run_across_blocks_succeeds_whenever_the_pages_are_free() {
    let mut pool = Box::new(Pool::<{ nodes_for(12) }>::new(12).unwrap());
    let mut mirror = Mirror::new();
    let big = pool.alloc(2048, 0, &mut |e| mirror.apply(e)).unwrap();
    let page = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((big.offset, page.offset), (2048, 0), "large at the top, small at the bottom");
    assert_eq!(pool.largest_free(), 2047);
    assert!(!pool.can_alloc(2048, 0));
    assert!(!pool.can_alloc(2047, 1), "the run starts at an odd page");
    for (pages, align) in [(2044, 0), (2047, 0), (2046, 1), (1536, 9), (1024, 10)] {
        let a = pool.alloc(pages, align, &mut |e| mirror.apply(e)).unwrap();
        assert_eq!(a.pages, pages);
        assert_eq!(a.offset % (1 << align), 0);
        assert!(a.offset >= 1 && a.offset + pages <= 2048, "{a:?}");
        let leaves: Vec<_> = a.blocks(12).map(|b| b.order()).collect();
        let top = *leaves.iter().max().unwrap();
        let peak = leaves.iter().position(|&o| o == top).unwrap();
        // Two blocks of the top size side by side are not buddies: both maximal.
        let fall = if leaves.get(peak + 1) == Some(&top) { peak + 1 } else { peak };
        assert!(leaves[..=peak].windows(2).all(|w| w[0] < w[1]), "sizes rise: {leaves:?}");
        assert!(leaves[fall..].windows(2).all(|w| w[0] > w[1]), "then fall: {leaves:?}");
        assert_eq!(leaves.iter().map(|o| 1u64 << o).sum::<u64>(), pages);
        mirror.check_tiling(12);
        pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    }
    pool.free(big, &mut |e| mirror.apply(e)).unwrap();
    pool.free(page, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(mirror.existing, [1].into());
}

#[test]
fn a_large_run_goes_to_the_top_of_its_run_on_a_large_page_boundary() {
    let mut pool = Box::new(Pool::<{ nodes_for(12) }>::new(12).unwrap());
    let mut ignore = |_| {};
    let low = pool.alloc(1, 0, &mut ignore).unwrap();
    assert_eq!(low.offset, 0);
    let top = pool.alloc(2048, 11, &mut ignore).unwrap();
    assert_eq!(top.offset, 2048, "the highest aligned start of the only run");
    // Free: pages 1..2048, no free block of 2048. The highest start of a
    // run of 1500 pages is 548; the 2 MiB boundary below it (page 512) fits.
    let a = pool.alloc(1500, 0, &mut ignore).unwrap();
    assert_eq!(a.offset, 512);
    pool.free(a, &mut ignore).unwrap();
    let b = pool.alloc(1800, 0, &mut ignore).unwrap();
    assert_eq!(b.offset, 248, "no room from a boundary: it ends at the run's end");
    pool.free(b, &mut ignore).unwrap();
    let b = pool.alloc(2047, 0, &mut ignore).unwrap();
    assert_eq!(b.offset, 1, "the whole free run");
    pool.free(b, &mut ignore).unwrap();
    let c = pool.alloc(511, 0, &mut ignore).unwrap();
    assert_eq!(c.offset, 1537, "more than 1 MiB, below 2 MiB: the top, no large page to gain");
    let d = pool.alloc(BEST_FIT_ABOVE, 0, &mut ignore).unwrap();
    assert_eq!(d.offset, 1, "1 MiB and less: first fit from the bottom");
}

/// Small runs are packed from the bottom, first fit; large ones go to the
/// shortest free run that holds them, at its top.
#[test]
fn large_runs_take_the_shortest_run_that_holds_them() {
    let mut pool = Box::new(Pool::<{ nodes_for(12) }>::new(12).unwrap());
    let mut mirror = Mirror::new();
    let quarter: Vec<_> = (0..16).map(|_| pool.alloc(256, 0, &mut |e| mirror.apply(e)).unwrap()).collect();
    assert!(quarter.iter().enumerate().all(|(i, a)| a.offset == 256 * i as u64), "first fit fills from the bottom");
    // Free runs: 256..1024 (768 pages), 1536..1792 (256), 2304..3840 (1536).
    for i in [1, 2, 3, 6, 9, 10, 11, 12, 13, 14] {
        pool.free(quarter[i], &mut |e| mirror.apply(e)).unwrap();
    }
    let a = pool.alloc(700, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(a.offset, 1024 - 700, "the 768-page run, not the 1536-page one; at its top");
    let b = pool.alloc(600, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(b.offset, 3072, "only the long run holds it: its top, down to a 2 MiB boundary");
    let c = pool.alloc(60, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(c.offset, 256, "small: the lowest run that holds it, below the large one");
    let e = pool.alloc(100, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(e.offset, 1536, "the 8 pages left at the bottom are too few");
    let d = pool.alloc(257, 2, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(d.offset, align_down(3072 - 257, 2), "aligned: the highest aligned start of the shortest run");
    assert!(!pool.can_alloc(800, 0));
    mirror.check_tiling(12);
}

/// The best-fit search looks at the first [`BEST_FIT_CANDIDATES`] runs
/// that hold the request, so an allocation costs the same however many holes
/// the pool has; runs too short do not count, so a run that fits is found
/// wherever it is.
#[test]
fn best_fit_looks_at_a_bounded_number_of_runs() {
    let mut pool = Box::new(Pool::<{ nodes_for(16) }>::new(16).unwrap());
    let mut ignore = |_| {};
    // 110 free runs of 300 pages, one page apart, the 100th of 297, then the
    // rest of the pool free. Built from small runs, which go first fit.
    let mut freed = Vec::new();
    for run in 0..110u64 {
        let head = pool.alloc(256, 0, &mut ignore).unwrap();
        let tail = pool.alloc(if run == 100 { 41 } else { 44 }, 0, &mut ignore).unwrap();
        if run == 100 {
            pool.alloc(3, 0, &mut ignore).unwrap();
        }
        pool.alloc(1, 0, &mut ignore).unwrap();
        assert_eq!(head.offset, run * 301);
        freed.extend([head, tail]);
    }
    for a in freed {
        pool.free(a, &mut ignore).unwrap();
    }
    let a = pool.alloc(297, 0, &mut ignore).unwrap();
    let first_runs = BEST_FIT_CANDIDATES as u64;
    assert_eq!(a.offset, (first_runs - 1) * 301 + 3, "the highest of the first runs that fit, not the 100th");
    let b = pool.alloc(301, 0, &mut ignore).unwrap();
    assert_eq!(b.offset, (1 << 16) - 301, "past 109 runs too short: the rest of the pool");
}

#[test]
fn tiny_pools_work() {
    for order in 0..=7 {
        let mut pool = Pool::<{ nodes_for(7) }>::new(order).unwrap();
        let mut mirror = Mirror::new();
        let pages = 1u64 << order;
        let mut live = Vec::new();
        for _ in 0..pages {
            live.push(pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap());
        }
        assert_eq!(pool.alloc(1, 0, &mut |e| mirror.apply(e)), Err(AllocError::OutOfMemory));
        mirror.check_tiling(order);
        for a in live {
            pool.free(a, &mut |e| mirror.apply(e)).unwrap();
        }
        assert_eq!(pool.largest_free(), pages);
        pool.settle(&mut |e| mirror.apply(e));
        assert_eq!(pool.largest_free(), pages);
        assert_eq!(mirror.existing, [1].into(), "order {order}");
    }
}

#[derive(Clone, Debug)]
enum Step {
    Alloc { pages: u64, align: u32 },
    Free(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (prop_oneof![1u64..40, 1u64..300], prop_oneof![Just(0u32), 0u32..8]).prop_map(|(pages, align)| Step::Alloc { pages, align }),
        2 => any::<usize>().prop_map(Step::Free),
    ]
}

use capbuf_testing::proptest_config;

/// The reference: one flag per page (free, parked runs included), the
/// parked runs by size, and the obvious answers.
struct Reference {
    free: Vec<bool>,
    /// `parked[n - 1]`: first pages of the parked runs of `n` pages, the last parked last.
    parked: Vec<Vec<u64>>,
}

/// Where the reference takes a request from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum From {
    Parked,
    Loose,
    Settled,
}

impl Reference {
    fn new(pages: u64) -> Self {
        Reference { free: vec![true; pages as usize], parked: vec![Vec::new(); PARK_MAX_PAGES as usize] }
    }

    fn parked_runs(&self) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        for (class, list) in self.parked.iter().enumerate() {
            runs.extend(list.iter().map(|&o| (o, class as u64 + 1)));
        }
        runs
    }

    /// Free and not in a parked run: free in the pool's bitmaps.
    fn loose(&self, p: u64) -> bool {
        self.free[p as usize] && !self.parked_runs().iter().any(|&(o, n)| o <= p && p < o + n)
    }

    fn fits(&self, pages: u64, align: u32) -> bool {
        let n = self.free.len() as u64;
        (0..n).step_by(1 << align).any(|s| s + pages <= n && (s..s + pages).all(|p| self.free[p as usize]))
    }

    fn place(&self, pages: u64, align: u32) -> Option<u64> {
        self.choose(pages, align).map(|(at, _)| at)
    }

    /// Where the policy puts `pages` pages: the last parked run of that
    /// size if aligned; else among the pages free in the bitmaps, first
    /// fit up to [`BEST_FIT_ABOVE`] pages, else the shortest maximal free
    /// run that holds them (the highest of equally short ones), at its
    /// highest aligned start, down to a 2 MiB boundary from 2 MiB up if it
    /// stays in the run; else the same over the free runs through a parked
    /// run, once they are all merged. (The pools of the
    /// property tests hold fewer free runs than the search's
    /// [`BEST_FIT_CANDIDATES`].)
    fn choose(&self, pages: u64, align: u32) -> Option<(u64, From)> {
        if pages <= PARK_MAX_PAGES {
            if let Some(&top) = self.parked[pages as usize - 1].last() {
                if top % (1 << align) == 0 {
                    return Some((top, From::Parked));
                }
            }
        }
        let loose: Vec<bool> = (0..self.free.len() as u64).map(|p| self.loose(p)).collect();
        if let Some(at) = Self::policy(&loose, pages, align) {
            return Some((at, From::Loose));
        }
        // The same policy over the free runs (parked pages counted) that
        // hold a parked run.
        let parked = self.parked_runs();
        let mut through = vec![false; self.free.len()];
        for (s, l) in Self::runs(&self.free) {
            if parked.iter().any(|&(o, _)| s <= o && o < s + l) {
                through[s as usize..(s + l) as usize].fill(true);
            }
        }
        Self::policy(&through, pages, align).map(|at| (at, From::Settled))
    }

    fn runs(free: &[bool]) -> Vec<(u64, u64)> {
        let n = free.len() as u64;
        let mut runs = Vec::new();
        let mut p = 0;
        while p < n {
            if !free[p as usize] {
                p += 1;
                continue;
            }
            let start = p;
            while p < n && free[p as usize] {
                p += 1;
            }
            runs.push((start, p - start));
        }
        runs
    }

    fn policy(free: &[bool], pages: u64, align: u32) -> Option<u64> {
        let n = free.len() as u64;
        let at = |s: u64| s + pages <= n && (s..s + pages).all(|p| free[p as usize]);
        if pages <= BEST_FIT_ABOVE {
            return (0..n).step_by(1 << align).find(|&s| at(s));
        }
        let top = |(s, l): (u64, u64)| {
            if l < pages {
                None
            } else {
                Some(align_down(s + l - pages, align)).filter(|&t| t >= s)
            }
        };
        let (s, l) = Self::runs(free)
            .into_iter()
            .filter(|&r| top(r).is_some())
            .min_by_key(|&(s, l)| (l, std::cmp::Reverse(s)))?;
        let highest = top((s, l)).unwrap();
        let large = align_down(highest, LARGE_ORDER.max(align));
        Some(if pages >= 1 << LARGE_ORDER && large >= s { large } else { highest })
    }

    /// What the pool does for a search: the run taken, if any.
    fn alloc(&mut self, pages: u64, align: u32) -> Option<u64> {
        let (at, from) = self.choose(pages, align)?;
        match from {
            From::Parked => {
                self.parked[pages as usize - 1].pop();
            }
            From::Loose => {}
            From::Settled => self.parked.iter_mut().for_each(Vec::clear),
        }
        self.take(at, pages);
        Some(at)
    }

    /// What the pool does for [`Pool::alloc_at`] (the run is free).
    fn alloc_at(&mut self, at: u64, pages: u64) {
        let parked = pages <= PARK_MAX_PAGES && self.parked[pages as usize - 1].contains(&at);
        if parked {
            self.parked[pages as usize - 1].retain(|&o| o != at);
        } else if !(at..at + pages).all(|p| self.loose(p)) {
            self.parked.iter_mut().for_each(Vec::clear);
        }
        self.take(at, pages);
    }

    fn take(&mut self, at: u64, pages: u64) {
        for p in at..at + pages {
            assert!(self.free[p as usize], "page {p} handed out twice");
            self.free[p as usize] = false;
        }
    }

    /// What the pool does for a free: park the run (small, its size's list
    /// not full, no page beside it free in the bitmaps) or merge it.
    fn free(&mut self, a: Allocation) {
        let n = self.free.len() as u64;
        let stop = a.offset + a.pages;
        let beside = (a.offset > 0 && self.loose(a.offset - 1)) || (stop < n && self.loose(stop));
        if a.pages <= PARK_MAX_PAGES && self.parked[a.pages as usize - 1].len() < PARK_DEPTH && !beside {
            self.parked[a.pages as usize - 1].push(a.offset);
        }
        for p in a.offset..stop {
            self.free[p as usize] = true;
        }
    }

    fn longest_run(&self) -> u64 {
        let (mut best, mut run) = (0, 0);
        for &f in &self.free {
            run = if f { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    }
}

const ORDER: u32 = 9;

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Random alloc/free sequences against the reference: an allocation
    /// succeeds exactly when the reference has `n` free pages at the
    /// alignment, takes exactly `n` of them, runs never overlap, pages are
    /// conserved, the kernel mirror stays a tiling whose leaves are the live
    /// allocations' leaves and the maximal free blocks, and freeing
    /// everything gives back the whole pool as one block.
    #[test]
    fn random_sequences_agree_with_a_reference(steps in prop::collection::vec(step(), 1..200)) {
        let pages_in_pool = 1u64 << ORDER;
        let mut pool = Pool::<{ nodes_for(ORDER) }>::new(ORDER).unwrap();
        let mut reference = Reference::new(pages_in_pool);
        let mut mirror = Mirror::new();
        let mut live: BTreeMap<u64, Allocation> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Alloc { pages, align } => {
                    let expected = reference.fits(pages, align);
                    prop_assert_eq!(pool.can_alloc(pages, align), expected);
                    prop_assert_eq!(pool.placement(pages, align), reference.place(pages, align), "{} pages at 2^{}", pages, align);
                    let taken = reference.alloc(pages, align);
                    match pool.alloc(pages, align, &mut |e| mirror.apply(e)) {
                        Ok(a) => {
                            prop_assert!(expected);
                            prop_assert_eq!(Some(a.offset), taken);
                            prop_assert_eq!(a.pages, pages);
                            prop_assert_eq!(a.offset % (1 << align), 0);
                            prop_assert!(a.offset + a.pages <= pages_in_pool);
                            for b in a.blocks(ORDER) {
                                prop_assert!(pool.is_allocated(b));
                            }
                            live.insert(a.offset, a);
                        }
                        Err(AllocError::OutOfMemory) => prop_assert!(!expected, "{} pages at 2^{} refused", pages, align),
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Step::Free(i) => {
                    if live.is_empty() { continue; }
                    let key = *live.keys().nth(i % live.len()).unwrap();
                    let a = live.remove(&key).unwrap();
                    prop_assert_eq!(pool.free(a, &mut |e| mirror.apply(e)), Ok(()));
                    prop_assert_eq!(pool.free(a, &mut |e| mirror.apply(e)), Err(FreeError::NotAllocated));
                    prop_assert_eq!(pool.release(a, &mut |e| mirror.apply(e)), Err(FreeError::NotAllocated));
                    reference.free(a);
                }
            }
            let used: u64 = live.values().map(|a| a.pages).sum();
            prop_assert_eq!(pool.free_pages() + used, pages_in_pool);
            prop_assert_eq!(pool.largest_free(), reference.longest_run());
            let parked: BTreeSet<(u64, u64)> = pool.parked_runs().map(|a| (a.offset, a.pages)).collect();
            prop_assert_eq!(parked, reference.parked_runs().into_iter().collect::<BTreeSet<_>>());
            let (tree, words) = pool.recomputed();
            prop_assert_eq!(&pool.tree[..], &tree[..], "a node of the tree differs from the free bits");
            prop_assert_eq!(&pool.words[..], &words[..], "a boundary tag differs from the free runs");
            for p in 0..pages_in_pool {
                prop_assert_eq!(pool.is_free_page(p), reference.free[p as usize]);
            }
            mirror.check_tiling(ORDER);
            for node in &mirror.existing {
                if mirror.split.contains(node) { continue; }
                let block = Block { node: *node, order: ORDER - (31 - node.leading_zeros()) };
                let in_live = live.values().any(|a| a.blocks(ORDER).any(|b| b == block));
                let in_parked = pool.parked_runs().any(|a| a.blocks(ORDER).any(|b| b == block));
                prop_assert_eq!(pool.is_allocated(block), in_live);
                if !in_live {
                    // A free leaf is all free; maximal (its parent not all
                    // free in the bitmaps) unless it is a parked run's.
                    let range = block.offset()..block.offset() + block.pages();
                    prop_assert!(range.clone().all(|p| reference.free[p as usize]), "leaf {:?} is not free", block);
                    prop_assert_eq!(in_parked, !range.clone().all(|p| reference.loose(p)), "leaf {:?}", block);
                    if block.order() < ORDER && !in_parked {
                        let parent = 1u64 << (block.order() + 1);
                        let start = block.offset() & !(parent - 1);
                        prop_assert!(!(start..start + parent).all(|p| reference.loose(p)), "{:?} not merged", block);
                    }
                }
            }
        }
        for a in live.into_values() {
            pool.free(a, &mut |e| mirror.apply(e)).unwrap();
        }
        prop_assert_eq!(pool.free_pages(), pages_in_pool);
        prop_assert_eq!(pool.largest_free(), pages_in_pool);
        pool.settle(&mut |e| mirror.apply(e));
        prop_assert_eq!(pool.parked_runs().count(), 0);
        prop_assert_eq!(pool.largest_free(), pages_in_pool);
        prop_assert_eq!(&mirror.existing, &BTreeSet::from([1]));
    }
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// In a pool of 2048 pages, with runs up to half of it (large pages
    /// from 512): every allocation lands where the reference's policy puts
    /// it, and succeeds exactly when the pages are free at the alignment.
    #[test]
    fn large_placements_agree_with_a_reference(
        steps in prop::collection::vec(prop_oneof![
            3 => (prop_oneof![1u64..300, 200u64..1100], prop_oneof![Just(0u32), 0u32..11])
                .prop_map(|(pages, align)| Step::Alloc { pages, align }),
            2 => any::<usize>().prop_map(Step::Free),
        ], 1..120)
    ) {
        const LARGER: u32 = 11;
        let mut pool = Box::new(Pool::<{ nodes_for(LARGER) }>::new(LARGER).unwrap());
        let mut reference = Reference::new(1 << LARGER);
        let mut mirror = Mirror::new();
        let mut live = Vec::new();
        for step in steps {
            match step {
                Step::Alloc { pages, align } => {
                    let expected = reference.place(pages, align);
                    prop_assert_eq!(expected.is_some(), reference.fits(pages, align));
                    reference.alloc(pages, align);
                    match pool.alloc(pages, align, &mut |e| mirror.apply(e)) {
                        Ok(a) => {
                            prop_assert_eq!(Some(a.offset), expected, "{} pages at 2^{}", pages, align);
                            live.push(a);
                        }
                        Err(e) => prop_assert_eq!((e, expected), (AllocError::OutOfMemory, None)),
                    }
                }
                Step::Free(i) => {
                    if live.is_empty() { continue; }
                    let a = live.swap_remove(i % live.len());
                    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
                    reference.free(a);
                }
            }
            prop_assert_eq!(pool.largest_free(), reference.longest_run());
            mirror.check_tiling(LARGER);
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(1024))]

    /// The closed form of the highest free aligned block around a page of a
    /// chunk agrees with trying every order; and a chunk's longest run with
    /// counting bits one by one.
    #[test]
    fn chunk_bit_tricks_agree_with_counting(word in any::<u64>(), sparse in any::<u64>(), bit in 0u64..64, chunk in 0u64..1 << 20) {
        for word in [word, word | sparse, word & sparse, !(1u64 << bit) & word, u64::MAX] {
            let mut expected = 0;
            while expected < 6 {
                let size = 2u64 << expected;
                let start = bit & !(size - 1);
                let mask = (u64::MAX >> (64 - size)) << start;
                // the page itself need not be free: only the others count
                if (word | 1 << bit) & mask != mask {
                    break;
                }
                expected += 1;
            }
            // The free run around the page, inside the chunk.
            let free = |i: u64| (word | 1 << bit) & (1 << i) != 0;
            let (mut lo, mut hi) = (bit, bit + 1);
            while lo > 0 && free(lo - 1) { lo -= 1; }
            while hi < 64 && free(hi) { hi += 1; }
            let base = chunk * 64;
            prop_assert_eq!(free_order(base + bit, base + lo, base + hi), expected, "word {:#x} bit {}", word, bit);
            let bits: Vec<bool> = (0..64).map(|i| word & (1 << i) != 0).collect();
            let longest = bits.split(|&f| !f).map(|r| r.len() as u32).max().unwrap();
            prop_assert_eq!(longest_in_word(word), longest);
            for n in 1..=64u64 {
                let starts = (0..=64 - n).filter(|&i| (i..i + n).all(|j| bits[j as usize])).fold(0u64, |s, i| s | 1 << i);
                prop_assert_eq!(run_starts(word, n), starts, "word {:#x}, {} pages", word, n);
            }
        }
    }

    /// The same closed form for any run: the highest order whose aligned
    /// block holding the page lies inside it, tried order by order.
    #[test]
    fn free_order_agrees_with_trying_every_order(a in 0u64..1 << 16, b in 0u64..1 << 16, c in 0u64..1 << 16) {
        let mut v = [a, b, c];
        v.sort();
        let (start, page, end) = (v[0], v[1], v[2] + 1);
        let mut expected = 0;
        while expected < 17 {
            let size = 2u64 << expected;
            let block = page & !(size - 1);
            if block < start || block + size > end {
                break;
            }
            expected += 1;
        }
        prop_assert_eq!(free_order(page, start, end).min(17), expected);
    }
}

proptest! {
    #![proptest_config(proptest_config(128))]

    /// Allocations at any free offset ([`Pool::alloc_at`]), also in the
    /// middle of long free runs (where the run's bounds come from the tree
    /// and the boundary tags), mixed with searched ones and frees in a pool
    /// of 64 chunks: the tree and the tags stay what the free bits give, the
    /// kernel mirror a tiling, the longest run the reference's.
    #[test]
    fn allocations_anywhere_keep_the_tree_and_the_tags(
        steps in prop::collection::vec((0u8..3, 1u64..700, 0u64..1 << 12, 0u32..4), 1..150)
    ) {
        const ORDER: u32 = 12;
        let mut pool = Box::new(Pool::<{ nodes_for(ORDER) }>::new(ORDER).unwrap());
        let mut reference = Reference::new(1 << ORDER);
        let mut mirror = Mirror::new();
        let mut live: Vec<Allocation> = Vec::new();
        for (kind, pages, at, align) in steps {
            match kind {
                0 => {
                    let fits = |s: u64| s + pages <= 1 << ORDER && (s..s + pages).all(|p| reference.free[p as usize]);
                    let found = (align_up(at, align)..1 << ORDER).step_by(1 << align).find(|&s| fits(s));
                    let result = pool.alloc_at(found.unwrap_or(at), pages, align, &mut |e| mirror.apply(e));
                    match found {
                        Some(s) => {
                            let a = result.unwrap();
                            prop_assert_eq!(a, Allocation { offset: s, pages });
                            reference.alloc_at(s, pages);
                            live.push(a);
                        }
                        None => prop_assert!(result.is_err() || fits(at)),
                    }
                }
                1 => {
                    let expected = reference.alloc(pages, align);
                    match pool.alloc(pages, align, &mut |e| mirror.apply(e)) {
                        Ok(a) => {
                            prop_assert_eq!(Some(a.offset), expected);
                            live.push(a);
                        }
                        Err(e) => prop_assert_eq!((e, expected), (AllocError::OutOfMemory, None)),
                    }
                }
                _ => {
                    if live.is_empty() { continue; }
                    let a = live.swap_remove(at as usize % live.len());
                    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
                    reference.free(a);
                }
            }
            exact(&pool, &reference, &mirror, ORDER)?;
        }
        freed_whole(&mut pool, live, &mut mirror, ORDER)?;
    }
}

/// The pool's tree, its capped copy and its tags are what its free bits
/// give, its longest free run is the reference's, and the mirror tiles it.
fn exact<const N: usize>(
    pool: &Pool<N>,
    reference: &Reference,
    mirror: &Mirror,
    order: u32,
) -> Result<(), TestCaseError> {
    let (tree, words) = pool.recomputed();
    prop_assert_eq!(&pool.tree[..], &tree[..], "a node of the tree differs from the free bits");
    prop_assert_eq!(&pool.words[..], &words[..], "a boundary tag differs from the free runs");
    prop_assert_eq!(pool.largest_free(), reference.longest_run());
    let parked: BTreeSet<(u64, u64)> = pool.parked_runs().map(|a| (a.offset, a.pages)).collect();
    prop_assert_eq!(parked, reference.parked_runs().into_iter().collect::<BTreeSet<_>>());
    mirror.check_tiling(order);
    Ok(())
}

/// Free every live allocation: the pool is whole again, and once the parked
/// runs are merged, the mirror its root alone.
fn freed_whole<const N: usize>(
    pool: &mut Pool<N>,
    live: Vec<Allocation>,
    mirror: &mut Mirror,
    order: u32,
) -> Result<(), TestCaseError> {
    for a in live {
        pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    }
    prop_assert_eq!(pool.largest_free(), 1 << order);
    pool.settle(&mut |e| mirror.apply(e));
    prop_assert_eq!(pool.largest_free(), 1 << order);
    prop_assert_eq!(&mirror.existing, &BTreeSet::from([1]));
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(32))]

    /// A pool of 512 chunks, whose tree has two full levels of sixteen
    /// children and a top of two: random searched and placed allocations of
    /// up to 4096 pages and frees keep the tree, its capped copy and the
    /// tags what the free bits give, agree with the reference's placement,
    /// and keep the kernel mirror a tiling.
    #[test]
    fn a_tree_of_several_levels_stays_exact(
        steps in prop::collection::vec((0u8..3, prop_oneof![1u64..70, 1u64..4096], 0u64..1 << 15, prop_oneof![Just(0u32), 0u32..10]), 1..100)
    ) {
        const ORDER: u32 = 15;
        let mut pool = Box::new(Pool::<{ nodes_for(ORDER) }>::new(ORDER).unwrap());
        let mut reference = Reference::new(1 << ORDER);
        let mut mirror = Mirror::new();
        let mut live: Vec<Allocation> = Vec::new();
        for (kind, pages, at, align) in steps {
            if kind == 0 {
                let fits = |s: u64| s + pages <= 1 << ORDER && (s..s + pages).all(|p| reference.free[p as usize]);
                if let Some(s) = (align_up(at, align)..1 << ORDER).step_by(1 << align).find(|&s| fits(s)) {
                    let a = pool.alloc_at(s, pages, align, &mut |e| mirror.apply(e)).unwrap();
                    prop_assert_eq!(a.offset, s);
                    reference.alloc_at(s, pages);
                    live.push(a);
                }
            } else if kind == 1 {
                let expected = reference.alloc(pages, align);
                match pool.alloc(pages, align, &mut |e| mirror.apply(e)) {
                    Ok(a) => {
                        prop_assert_eq!(Some(a.offset), expected);
                        live.push(a);
                    }
                    Err(e) => prop_assert_eq!((e, expected), (AllocError::OutOfMemory, None)),
                }
            } else if !live.is_empty() {
                let a = live.swap_remove(at as usize % live.len());
                pool.free(a, &mut |e| mirror.apply(e)).unwrap();
                reference.free(a);
            }
            exact(&pool, &reference, &mirror, ORDER)?;
        }
        freed_whole(&mut pool, live, &mut mirror, ORDER)?;
    }
}
