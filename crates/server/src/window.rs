//! Each client's mapping window: where memsrv maps its attachments.
//!
//! The window ([`capbuf_protocol::CLIENT_WINDOW`], 512 MiB) is managed in
//! 2 MiB slots: an attachment takes a run of slots, one per 2 MiB frame plus
//! one for the page table of its 4 KiB tail, so every large frame is aligned
//! and the small frames share one page table. First fit.

use capbuf_protocol::{CLIENT_WINDOW, LARGE_PAGE_BITS, MAX_CLIENTS};

/// 2 MiB slots in a client's window.
pub const WINDOW_SLOTS: usize = ((CLIENT_WINDOW.end - CLIENT_WINDOW.start) >> LARGE_PAGE_BITS) as usize;
const WORDS: usize = WINDOW_SLOTS / 64;

const _: () = assert!(WINDOW_SLOTS % 64 == 0 && WINDOW_SLOTS > 0);
const _: () = assert!(CLIENT_WINDOW.start % (1 << LARGE_PAGE_BITS) == 0);

/// A run of window slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First slot.
    pub first: u32,
    /// Number of slots.
    pub slots: u32,
}

impl Run {
    /// Virtual address of the run's first byte.
    pub const fn vaddr(self) -> u64 {
        CLIENT_WINDOW.start + ((self.first as u64) << LARGE_PAGE_BITS)
    }
}

/// Every client's window: which 2 MiB slots hold an attachment.
#[derive(Clone, Debug)]
pub struct Windows {
    used: [[u64; WORDS]; MAX_CLIENTS],
}

impl Default for Windows {
    fn default() -> Self {
        Windows { used: [[0; WORDS]; MAX_CLIENTS] }
    }
}

impl Windows {
    fn is_used(&self, client: usize, slot: usize) -> bool {
        self.used[client][slot / 64] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, client: usize, run: Run, used: bool) {
        for slot in run.first as usize..(run.first + run.slots) as usize {
            let bit = 1u64 << (slot % 64);
            if used {
                self.used[client][slot / 64] |= bit;
            } else {
                self.used[client][slot / 64] &= !bit;
            }
        }
    }

    /// The first free run of `slots` slots in client `client`'s window, not yet taken.
    pub fn find(&self, client: usize, slots: u32) -> Option<Run> {
        let slots = slots as usize;
        if slots == 0 || slots > WINDOW_SLOTS || client >= MAX_CLIENTS {
            return None;
        }
        let mut start = 0;
        while start + slots <= WINDOW_SLOTS {
            match (start..start + slots).rev().find(|&s| self.is_used(client, s)) {
                None => return Some(Run { first: start as u32, slots: slots as u32 }),
                Some(used) => start = used + 1,
            }
        }
        None
    }

    /// Mark `run` of client `client`'s window as holding an attachment.
    pub fn take(&mut self, client: usize, run: Run) {
        self.set(client, run, true);
    }

    /// Give `run` back.
    pub fn release(&mut self, client: usize, run: Run) {
        self.set(client, run, false);
    }

    /// Slots of client `client`'s window in use.
    pub fn used_slots(&self, client: usize) -> u32 {
        self.used[client].iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_runs_do_not_overlap_and_come_back() {
        let mut w = Windows::default();
        let a = w.find(0, 3).unwrap();
        w.take(0, a);
        let b = w.find(0, 2).unwrap();
        w.take(0, b);
        assert_eq!((a.first, b.first), (0, 3));
        assert_eq!(a.vaddr(), CLIENT_WINDOW.start);
        assert_eq!(b.vaddr(), CLIENT_WINDOW.start + (3 << 21));
        assert_eq!(w.find(1, 1).unwrap().first, 0, "windows are per client");
        w.release(0, a);
        assert_eq!(w.find(0, 3).unwrap().first, 0, "a released run is reused");
        assert_eq!(w.find(0, 4).unwrap().first, 5, "a run must be contiguous");
        assert_eq!(w.used_slots(0), 2);
    }

    #[test]
    fn a_full_window_refuses() {
        let mut w = Windows::default();
        let all = w.find(0, WINDOW_SLOTS as u32).unwrap();
        w.take(0, all);
        assert_eq!(w.find(0, 1), None);
        assert_eq!(w.find(0, 0), None);
        assert_eq!(Windows::default().find(0, WINDOW_SLOTS as u32 + 1), None);
    }
}
