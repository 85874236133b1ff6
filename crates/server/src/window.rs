//! Each client's mapping window: where memsrv maps its attachments.
//!
//! The window ([`capbuf_protocol::CLIENT_WINDOW`], 512 MiB) is managed in
//! 2 MiB slots: an attachment takes a run of slots, one per 2 MiB frame plus
//! one for the page table of its 4 KiB tail, so every large frame is aligned
//! and the small frames share one page table. First fit.
//!
//! When another client's request revokes an attachment (the owner's UNGRANT,
//! a GRANT lowering the rights, the owner's FREE), the mapping goes but its
//! run stays taken as a [`Hole`] until the client itself DETACHes that buffer
//! id. The client still holds the old address (its library's view, a C
//! pointer): were the run handed to its next attachment, an access through
//! the old address would land in another buffer instead of faulting. A
//! revocation the client asked for itself (its DETACH; a FREE of its own
//! buffer) gives the run back at once.

use capbuf_protocol::{BufferId, CLIENT_WINDOW, LARGE_PAGE_BITS, MAX_CLIENTS};

use crate::reserve::MAX_ATTACHMENTS;

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

/// The run of an attachment another client's request revoked: unmapped, and
/// kept from reuse until the client DETACHes buffer `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    /// The buffer the run was mapped for (its id may be stale by now).
    pub id: BufferId,
    /// Where it was mapped.
    pub run: Run,
}

/// Holes one client can have. Each counts against the client's attachments,
/// and attachments plus holes are at most [`MAX_ATTACHMENTS`]
/// ([`crate::reserve::attachment_limit`]); each keeps its run of at least
/// one slot taken, so there are never more than [`WINDOW_SLOTS`]: this
/// never runs out.
pub const MAX_HOLES: usize =
    if (MAX_ATTACHMENTS as usize) < WINDOW_SLOTS { MAX_ATTACHMENTS as usize } else { WINDOW_SLOTS };

/// Every client's window: which 2 MiB slots hold an attachment or a hole,
/// and the holes.
#[derive(Clone, Debug)]
pub struct Windows {
    used: [[u64; WORDS]; MAX_CLIENTS],
    holes: [heapless::Vec<Hole, MAX_HOLES>; MAX_CLIENTS],
}

impl Default for Windows {
    fn default() -> Self {
        Windows { used: [[0; WORDS]; MAX_CLIENTS], holes: [const { heapless::Vec::new() }; MAX_CLIENTS] }
    }
}

impl Windows {
    /// Write the taken slots and holes of every client that has any to
    /// `out`, for [`crate::Server::fingerprint`].
    pub(crate) fn digest(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        for (client, (used, holes)) in self.used.iter().zip(&self.holes).enumerate() {
            if used.iter().any(|word| *word != 0) || !holes.is_empty() {
                write!(out, "window {client}: {used:?} {holes:?};")?;
            }
        }
        Ok(())
    }

    /// Whether slot `slot` of client `client`'s window is taken (by an
    /// attachment or a hole).
    pub fn is_used(&self, client: usize, slot: usize) -> bool {
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

    /// Client `client`'s holes.
    pub fn holes(&self, client: usize) -> &[Hole] {
        &self.holes[client]
    }

    /// The run of client `client`'s hole for buffer `id`, if it has one.
    pub fn hole(&self, client: usize, id: BufferId) -> Option<Run> {
        self.holes[client].iter().find(|hole| hole.id == id).map(|hole| hole.run)
    }

    /// How many more holes client `client` can have.
    pub fn hole_room(&self, client: usize) -> usize {
        MAX_HOLES - self.holes[client].len()
    }

    /// Empty client `client`'s window: every run and hole given back. Only
    /// for a client that holds no attachment any more (RECLAIM).
    pub fn clear(&mut self, client: usize) {
        self.used[client] = [0; WORDS];
        self.holes[client].clear();
    }

    /// Whether client `client` can have one more hole.
    pub fn has_room_for_hole(&self, client: usize) -> bool {
        !self.holes[client].is_full()
    }

    /// Keep `run`, taken, as client `client`'s hole for buffer `id`: its
    /// attachment was revoked by someone else. Refused if the client has
    /// [`MAX_HOLES`] already (checked first with [`Self::has_room_for_hole`]).
    pub fn make_hole(&mut self, client: usize, id: BufferId, run: Run) -> Result<(), Hole> {
        debug_assert!(self.hole(client, id).is_none(), "one hole per buffer id");
        self.holes[client].push(Hole { id, run })
    }

    /// Give back client `client`'s hole for buffer `id`, run and all: the
    /// client detached it. Its run, if it had one.
    pub fn release_hole(&mut self, client: usize, id: BufferId) -> Option<Run> {
        let index = self.holes[client].iter().position(|hole| hole.id == id)?;
        let hole = self.holes[client].swap_remove(index);
        self.release(client, hole.run);
        Some(hole.run)
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
    fn a_hole_keeps_its_run_until_released() {
        let mut w = Windows::default();
        let (id, other) = (BufferId::new(3, 1), BufferId::new(4, 1));
        let run = w.find(1, 2).unwrap();
        w.take(1, run);
        w.make_hole(1, id, run).unwrap();
        assert_eq!(w.hole(1, id), Some(run));
        assert_eq!((w.hole(1, other), w.hole(0, id)), (None, None), "keyed by client and id");
        assert_eq!(w.find(1, 2).unwrap().first, 2, "a hole's run is not reused");
        assert_eq!(w.release_hole(1, other), None);
        assert_eq!(w.release_hole(1, id), Some(run));
        assert_eq!((w.hole(1, id), w.used_slots(1)), (None, 0));
        assert_eq!(w.find(1, 2).unwrap().first, 0, "reused once released");
        for index in 0..MAX_HOLES as u32 {
            assert!(w.has_room_for_hole(0));
            w.make_hole(0, BufferId::new(index, 1), Run { first: index, slots: 1 }).unwrap();
        }
        assert!(!w.has_room_for_hole(0));
        let one_more = BufferId::new(MAX_HOLES as u32, 1);
        assert!(w.make_hole(0, one_more, Run { first: 200, slots: 1 }).is_err());
        assert!(w.has_room_for_hole(1), "per client");
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
