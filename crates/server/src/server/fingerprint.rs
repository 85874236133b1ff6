//! A digest of everything memsrv knows, for checkers that explore requests
//! exhaustively: two states with the same digest answer every future
//! request alike, so a checker need explore only one of them.

use core::fmt::{self, Write};
use core::hash::Hasher;

use super::Server;
use crate::kernel::Kernel;

/// Formats into a hasher, so that a digest needs no allocation.
pub(super) struct Feed<'a, H>(pub(super) &'a mut H);

impl<H: Hasher> Write for Feed<'_, H> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.write(text.as_bytes());
        Ok(())
    }
}

impl<K: Kernel, const NODES: usize> Server<K, NODES> {
    /// Feed `hasher` memsrv's whole state but the kernel's (the configuration
    /// aside, which never changes): buffers with their generations and what
    /// each client knows of freed ones, quarantine, usage, the untyped blocks
    /// mirroring the pools (in the order the map keeps them, which is the
    /// order a collapse revokes them in), the free table slots in the order they will be handed out,
    /// reserves, windows with their holes, the WAIT queue in order, lost slots. Each pool's
    /// allocator is fed its free pages and largest free block: its tree is
    /// determined by the blocks allocated from it, which are the buffers',
    /// the quarantined buffers' and the reserves', all fed here.
    pub fn fingerprint(&self, hasher: &mut impl Hasher) {
        let state = &self.state;
        let mut feed = Feed(hasher);
        // Writing into a hasher cannot fail.
        let _ = self.write_fingerprint(&mut feed);
        for slot in state.slots.iter() {
            feed.0.write_u32(slot);
        }
    }

    fn write_fingerprint(&self, out: &mut impl Write) -> fmt::Result {
        let state = &self.state;
        for (index, pool) in state.pools.iter().enumerate() {
            if let Some(pool) = pool {
                write!(out, "pool {index}: {} {};", pool.pool.free_pages(), pool.pool.largest_free())?;
            }
        }
        state.registry.digest(out)?;
        for entry in state.quarantine.iter() {
            write!(out, "{entry:?};")?;
        }
        write!(out, "{:?};", state.usage)?;
        for (key, block) in state.blocks.iter() {
            write!(out, "block {key}: {block:?};")?;
        }
        for client in 0..state.usage.len() {
            write!(out, "reserve {client}: {:?};", state.reserves.of(client))?;
        }
        for (_, block) in state.reserves.iter() {
            write!(out, "{block:?};")?;
        }
        for wait in state.waits.iter() {
            write!(out, "{wait:?};")?;
        }
        state.windows.digest(out)?;
        write!(out, "lost {};", state.lost_slots)
    }
}
