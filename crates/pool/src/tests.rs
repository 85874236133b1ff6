use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type TestPool = Pool<{ 2 << 8 }>;

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
    assert_eq!(pool.largest_free(), 8);
    mirror.check_tiling(4);
    // The trimmed tail is really free: three more single pages fit in it.
    let b = pool.alloc(2, 0, &mut |e| mirror.apply(e)).unwrap();
    let c = pool.alloc(1, 0, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!((b.offset, c.offset), (6, 5));
    pool.free(a, &mut |e| mirror.apply(e)).unwrap();
    pool.free(b, &mut |e| mirror.apply(e)).unwrap();
    pool.free(c, &mut |e| mirror.apply(e)).unwrap();
    assert_eq!(pool.free_pages(), 16);
    assert_eq!(mirror.existing, [1].into(), "everything merged back into the root");
}

#[test]
fn best_fit_keeps_large_blocks_whole() {
    let mut pool = TestPool::new(4).unwrap();
    let mut ignore = |_| {};
    let a = pool.alloc(1, 0, &mut ignore).unwrap();
    let _b = pool.alloc(8, 0, &mut ignore).unwrap();
    pool.free(a, &mut ignore).unwrap();
    let _c = pool.alloc(2, 0, &mut ignore).unwrap();
    let _d = pool.alloc(4, 0, &mut ignore).unwrap();
    // The 1-page hole at 0 stays usable while the second half was split once.
    let e = pool.alloc(1, 0, &mut ignore).unwrap();
    assert_eq!(e.offset, 2, "takes the smallest hole next to the 2-page run, not a fresh 4-page block");
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
    assert_eq!(events, before);
    // Runs whose leaves are not all allocated leaves. (Freeing the leading
    // 8-page leaf alone would be allowed: the pool tracks leaves, the registry whole buffers.)
    for bad in [
        Allocation { offset: 1, pages: 9 },
        Allocation { offset: 0, pages: 10 },
        Allocation { offset: 9, pages: 1 },
        Allocation { offset: 12, pages: 4 },
        Allocation { offset: 15, pages: 2 },
        Allocation { offset: 0, pages: 0 },
        Allocation { offset: u64::MAX, pages: 1 },
    ] {
        let snapshot = pool.nodes;
        assert_eq!(pool.free(bad, &mut |_| events += 1), Err(FreeError::NotAllocated), "{bad:?}");
        assert_eq!(pool.nodes, snapshot);
    }
    pool.free(a, &mut |_| {}).unwrap();
    assert_eq!(pool.free(a, &mut |_| {}), Err(FreeError::NotAllocated), "double free");
    assert_eq!(pool.free_pages(), 16);
}

#[test]
fn a_pool_that_does_not_fit_its_array_is_refused() {
    assert!(Pool::<32>::new(4).is_some());
    assert!(Pool::<31>::new(4).is_none());
    assert!(Pool::<{ 1 << 10 }>::new(31).is_none());
}

#[derive(Clone, Debug)]
enum Step {
    Alloc { pages: u64, align: u32 },
    Free(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u64..40, prop_oneof![Just(0u32), 0u32..6]).prop_map(|(pages, align)| Step::Alloc { pages, align }),
        2 => any::<usize>().prop_map(Step::Free),
    ]
}

use capbuf_testing::proptest_config;

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Random alloc/free sequences: runs never overlap, are aligned and exact,
    /// pages are conserved, the kernel mirror stays a tiling, and freeing
    /// everything gives back the whole pool as one block.
    #[test]
    fn random_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..200)) {
        let mut pool = TestPool::new(8).unwrap();
        let mut mirror = Mirror::new();
        let mut live: BTreeMap<u64, Allocation> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Alloc { pages, align } => {
                    match pool.alloc(pages, align, &mut |e| mirror.apply(e)) {
                        Ok(a) => {
                            prop_assert_eq!(a.pages, pages);
                            prop_assert_eq!(a.offset % (1 << align), 0);
                            prop_assert!(a.offset + a.pages <= 256);
                            if let Some((_, prev)) = live.range(..a.offset).next_back() {
                                prop_assert!(prev.offset + prev.pages <= a.offset, "overlap");
                            }
                            if let Some((_, next)) = live.range(a.offset..).next() {
                                prop_assert!(a.offset + a.pages <= next.offset, "overlap");
                            }
                            for b in a.blocks(8) {
                                prop_assert!(pool.is_allocated(b));
                            }
                            live.insert(a.offset, a);
                        }
                        Err(AllocError::OutOfMemory) => {
                            let need = (64 - (pages - 1).leading_zeros()).max(align);
                            prop_assert!(pool.largest_free() < 1 << need);
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Step::Free(i) => {
                    if live.is_empty() { continue; }
                    let key = *live.keys().nth(i % live.len()).unwrap();
                    let a = live.remove(&key).unwrap();
                    prop_assert_eq!(pool.free(a, &mut |e| mirror.apply(e)), Ok(()));
                    prop_assert_eq!(pool.free(a, &mut |e| mirror.apply(e)), Err(FreeError::NotAllocated));
                }
            }
            let used: u64 = live.values().map(|a| a.pages).sum();
            prop_assert_eq!(pool.free_pages() + used, 256);
            mirror.check_tiling(8);
            for node in &mirror.existing {
                if mirror.split.contains(node) { continue; }
                let block = Block { node: *node, order: 8 - (31 - node.leading_zeros()) };
                let in_live = live.values().any(|a| a.blocks(8).any(|b| b == block));
                prop_assert_eq!(pool.is_allocated(block), in_live);
            }
        }
        for a in live.into_values() {
            pool.free(a, &mut |e| mirror.apply(e)).unwrap();
        }
        prop_assert_eq!(pool.free_pages(), 256);
        prop_assert_eq!(pool.largest_free(), 256);
        prop_assert_eq!(&mirror.existing, &BTreeSet::from([1]));
    }
}
