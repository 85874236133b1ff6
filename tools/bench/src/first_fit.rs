//! A first-fit page allocator: the baseline of the fragmentation study, not
//! product code. Free extents in an ordered map; an allocation takes the
//! start of the lowest extent that holds it; a free coalesces with both
//! neighbours.

use std::collections::BTreeMap;

/// Free extents: first page to length.
pub struct FirstFit {
    free: BTreeMap<u64, u64>,
}

impl FirstFit {
    /// `pages` pages, all free.
    pub fn new(pages: u64) -> Self {
        FirstFit { free: BTreeMap::from([(0, pages)]) }
    }

    /// The lowest run of `pages` free pages.
    pub fn alloc(&mut self, pages: u64) -> Option<u64> {
        let (&start, &length) = self.free.iter().find(|(_, &length)| length >= pages)?;
        self.free.remove(&start);
        if length > pages {
            self.free.insert(start + pages, length - pages);
        }
        Some(start)
    }

    /// Give back `pages` pages at `start`.
    pub fn free(&mut self, start: u64, pages: u64) {
        let (mut start, mut length) = (start, pages);
        if let Some((&before, &before_length)) = self.free.range(..start).next_back() {
            if before + before_length == start {
                self.free.remove(&before);
                start = before;
                length += before_length;
            }
        }
        if let Some(&after_length) = self.free.get(&(start + length)) {
            self.free.remove(&(start + length));
            length += after_length;
        }
        self.free.insert(start, length);
    }

    /// The longest free extent: the largest allocation that succeeds.
    pub fn longest(&self) -> u64 {
        self.free.values().copied().max().unwrap_or(0)
    }
}
