//! Where pools without a `phys_addr` go in the board's RAM: decided by
//! capbuf-compose at build time, from the RAM the SDK describes for the board
//! and what is already there.
//!
//! Each pool is an seL4 untyped object, so it must be naturally aligned to
//! its (power-of-two) size. A pool to place goes in the **highest** naturally
//! aligned block of RAM that overlaps nothing taken: the kernel, the loader,
//! memory regions with a fixed address, pools with a fixed address and the
//! pools placed before it. Larger pools are placed first (ties in the order
//! they are declared), so small pools do not split the room a large one
//! needs. The highest block, because Microkit fills RAM from the bottom: the
//! initial task goes right after the kernel, the regions whose address the
//! tool picks first fit from the bottom, and the CapDL initialiser's objects
//! come from the lowest untyped memory; placing from the top keeps the pools
//! out of their way. The same input always gives the same addresses.

use core::ops::Range;

/// A pool that could not be placed: its index in the request list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    /// The pool's index in `size_bits`.
    pub index: usize,
}

const fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The highest address of a naturally aligned block of `1 << size_bits`
/// bytes inside one of `ram`'s ranges that `blocked` does not refuse.
/// `blocked(block)` returns the start of the lowest taken range the block
/// overlaps, or `None` if it overlaps nothing.
fn highest(ram: &[Range<u64>], size_bits: u32, blocked: impl Fn(&Range<u64>) -> Option<u64>) -> Option<u64> {
    let size = 1u64.checked_shl(size_bits)?;
    let mask = !(size - 1);
    let mut best: Option<u64> = None;
    for range in ram {
        if range.end < range.start || range.end - range.start < size {
            continue;
        }
        let mut candidate = (range.end - size) & mask;
        while candidate >= range.start {
            let block = candidate..candidate + size;
            match blocked(&block) {
                None => {
                    best = Some(best.map_or(candidate, |b| b.max(candidate)));
                    break;
                }
                // Every block between the taken range's start less a block
                // and this one overlaps it: go below it.
                Some(start) if start >= size => candidate = (start - size) & mask,
                Some(_) => break,
            }
        }
    }
    best
}

/// Place pools: `size_bits[i]` is pool `i`'s size, `fixed[i]` its address if
/// system.xml gives one (those are taken as they are and not checked here).
/// `ram` is the board's free RAM, `taken` what is already in it. On success
/// `out[i]` is pool `i`'s address (the fixed one, or the one chosen).
///
/// `size_bits`, `fixed` and `out` must have the same length.
pub fn place_pools(
    ram: &[Range<u64>],
    taken: &[Range<u64>],
    size_bits: &[u32],
    fixed: &[Option<u64>],
    out: &mut [u64],
) -> Result<(), Unplaceable> {
    assert!(size_bits.len() == fixed.len() && fixed.len() == out.len(), "one entry per pool");
    let count = size_bits.len();
    let block = |i: usize, base: u64| base..base.saturating_add(1u64.checked_shl(size_bits[i]).unwrap_or(u64::MAX));
    let mut placed = [false; 64];
    assert!(count <= placed.len(), "at most 64 pools");
    for i in 0..count {
        if let Some(address) = fixed[i] {
            out[i] = address;
            placed[i] = true;
        }
    }
    // Largest first; among equals, in declaration order.
    for bits in (0..64u32).rev() {
        for i in 0..count {
            if fixed[i].is_some() || size_bits[i] != bits {
                continue;
            }
            let blocked = |candidate: &Range<u64>| {
                let pools = (0..count).filter(|&j| placed[j]).map(|j| block(j, out[j]));
                taken.iter().cloned().chain(pools).filter(|t| overlaps(candidate, t)).map(|t| t.start).min()
            };
            out[i] = highest(ram, bits, blocked).ok_or(Unplaceable { index: i })?;
            placed[i] = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(
        ram: &[Range<u64>],
        taken: &[Range<u64>],
        bits: &[u32],
        fixed: &[Option<u64>],
    ) -> Result<Vec<u64>, Unplaceable> {
        let mut out = vec![0; bits.len()];
        place_pools(ram, taken, bits, fixed, &mut out).map(|()| out)
    }

    #[test]
    fn highest_aligned_block_of_ram() {
        // qemu_virt_aarch64's RAM as the SDK describes it.
        let ram = [0x6000_0000..0xc000_0000];
        assert_eq!(place(&ram, &[], &[26], &[None]), Ok(vec![0xbc00_0000]));
        // An end that is not aligned to the pool's size: the block below it.
        let ram = [0x5300000..0xf580_0000]; // odroidc4's second range
        assert_eq!(place(&ram, &[], &[26], &[None]), Ok(vec![0xf000_0000]));
    }

    #[test]
    fn larger_first_then_declaration_order() {
        let ram = [0x4000_0000..0xc000_0000];
        let out = place(&ram, &[], &[15, 26, 15], &[None, None, None]).unwrap();
        assert_eq!(out, vec![0xbbff_8000, 0xbc00_0000, 0xbbff_0000]);
    }

    #[test]
    fn around_what_is_taken() {
        let ram = [0x6000_0000..0xc000_0000];
        // A fixed region at the top, and one just below it that straddles
        // the next aligned block.
        let taken = [0xbf00_0000..0xbf01_0000, 0xbbff_f000..0xbc00_1000];
        assert_eq!(place(&ram, &taken, &[26], &[None]), Ok(vec![0xb400_0000]));
        // A fixed pool is taken as it is; the others go around it.
        assert_eq!(place(&ram, &[], &[26, 26], &[Some(0xbc00_0000), None]), Ok(vec![0xbc00_0000, 0xb800_0000]));
    }

    #[test]
    fn several_ranges_highest_wins() {
        let ram = [0x0..0x500_0000, 0x530_0000..0x1000_0000];
        assert_eq!(place(&ram, &[], &[24], &[None]), Ok(vec![0xf00_0000]));
        // Too large for the top range once it is taken: the lower one.
        let taken = [0x530_0000..0x1000_0000];
        assert_eq!(place(&ram, &taken, &[24], &[None]), Ok(vec![0x400_0000]));
    }

    #[test]
    fn too_large_is_refused() {
        let ram = [0x6000_0000..0xc000_0000];
        // 2 GiB: larger than the RAM.
        assert_eq!(place(&ram, &[], &[31], &[None]), Err(Unplaceable { index: 0 }));
        // Fits in size but no aligned block is free.
        let taken: Vec<_> = (6..12).map(|i| i << 28..(i << 28) + 0x1000).collect();
        assert_eq!(place(&ram, &taken, &[28], &[None]), Err(Unplaceable { index: 0 }));
        // The second pool finds no room after the first.
        let ram = [0x0..0x400_0000];
        assert_eq!(place(&ram, &[], &[26, 12], &[None, None]), Err(Unplaceable { index: 1 }));
    }

    #[test]
    fn deterministic_and_never_overlapping() {
        let ram = [0x4000_0000..0xc000_0000, 0x1_0000_0000..0x1_0800_0000];
        let taken = [0x4000_0000..0x4020_0000, 0x5000_0000..0x5100_0000, 0xbff0_0000..0xc000_0000];
        let bits = [26, 15, 21, 21, 12, 24];
        let fixed = [None; 6];
        let first = place(&ram, &taken, &bits, &fixed).unwrap();
        assert_eq!(first, place(&ram, &taken, &bits, &fixed).unwrap());
        for (i, &a) in first.iter().enumerate() {
            let a = a..a + (1 << bits[i]);
            assert_eq!(a.start % (1 << bits[i]), 0, "naturally aligned");
            assert!(ram.iter().any(|r| r.start <= a.start && a.end <= r.end), "inside RAM");
            assert!(taken.iter().all(|t| !overlaps(&a, t)), "clear of what is taken");
            for (j, &b) in first.iter().enumerate().skip(i + 1) {
                assert!(!overlaps(&a, &(b..b + (1 << bits[j]))), "pools {i} and {j} apart");
            }
        }
        assert_eq!(first[0], 0x1_0400_0000, "the largest goes highest");
    }
}
