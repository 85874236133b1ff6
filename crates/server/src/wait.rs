//! Allocations waiting for memory: the `WAIT` flag's queue.
//!
//! An ALLOC with [`capbuf_protocol::AllocFlags::WAIT`] that memory or quota
//! refuses is registered here and answered WAITING at once: memsrv is
//! passive and never blocks a caller. When a request may have made room,
//! memsrv walks the queue in order of registration and notifies each client
//! whose request would now pass its checks, removing it; the client retries.
//! The queue holds what was asked for, never memory: memsrv sets nothing
//! aside for a notified client, so waiting cannot be used to hold memory (a
//! retry that loses the race is answered WAITING again and queued anew).
//!
//! Fair: first registered, first notified. An entry blocked on a pool's
//! memory stops every later entry for that pool (a small later request
//! cannot overtake a large earlier one); an entry blocked only on its own
//! quota blocks nobody. Bounded: one entry per client, so at most
//! [`MAX_CLIENTS`]; a client's second WAIT ALLOC replaces its entry and
//! keeps its place. A client's successful ALLOC and its RECLAIM cancel it.

use capbuf_protocol::{Align, AllocFlags, PoolId, MAX_CLIENTS};

/// One registered request: the ALLOC a client will retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Index of the waiting client.
    pub client: usize,
    /// Bytes asked for.
    pub size: u64,
    /// Alignment asked for.
    pub align: Align,
    /// Pool asked for.
    pub pool: PoolId,
    /// The buffer's flags (without `WAIT`).
    pub flags: AllocFlags,
}

/// The queue: at most one entry per client, in order of registration.
#[derive(Clone, Default)]
pub struct Waits {
    entries: heapless::Vec<Wait, MAX_CLIENTS>,
}

impl Waits {
    /// Register `wait`: a client already waiting keeps its place with the
    /// new request; otherwise it goes to the back. There is room for every
    /// client, so this fails only for a client index out of range.
    pub fn register(&mut self, wait: Wait) -> Result<(), Wait> {
        if wait.client >= MAX_CLIENTS {
            return Err(wait);
        }
        match self.entries.iter_mut().find(|entry| entry.client == wait.client) {
            Some(entry) => {
                *entry = wait;
                Ok(())
            }
            None => self.entries.push(wait),
        }
    }

    /// Remove client `client`'s entry, if it has one; whether it had.
    pub fn cancel(&mut self, client: usize) -> bool {
        match self.entries.iter().position(|entry| entry.client == client) {
            Some(index) => {
                self.entries.remove(index);
                true
            }
            None => false,
        }
    }

    /// Client `client`'s entry, if any.
    pub fn of(&self, client: usize) -> Option<&Wait> {
        self.entries.iter().find(|entry| entry.client == client)
    }

    /// The entries, first registered first.
    pub fn iter(&self) -> impl Iterator<Item = &Wait> {
        self.entries.iter()
    }

    /// Number of waiting clients.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keep only the entries `keep` says yes to, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Wait) -> bool) {
        self.entries.retain(|entry| keep(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(client: usize, size: u64) -> Wait {
        Wait { client, size, align: Align::PAGE, pool: PoolId(0), flags: AllocFlags::NONE }
    }

    #[test]
    fn a_second_registration_replaces_the_first_and_keeps_its_place() {
        let mut waits = Waits::default();
        waits.register(wait(3, 1)).unwrap();
        waits.register(wait(1, 2)).unwrap();
        waits.register(wait(3, 5)).unwrap();
        let order: Vec<(usize, u64)> = waits.iter().map(|w| (w.client, w.size)).collect();
        assert_eq!(order, [(3, 5), (1, 2)]);
        assert!(waits.cancel(3));
        assert!(!waits.cancel(3), "cancelled once");
        assert_eq!(waits.len(), 1);
        waits.register(wait(3, 7)).unwrap();
        assert_eq!(waits.iter().map(|w| w.client).collect::<Vec<_>>(), [1, 3], "back of the queue");
    }

    #[test]
    fn one_entry_per_client_at_most() {
        let mut waits = Waits::default();
        for round in 0..3 {
            for client in 0..MAX_CLIENTS {
                waits.register(wait(client, round)).unwrap();
            }
        }
        assert_eq!(waits.len(), MAX_CLIENTS);
        assert!(waits.iter().all(|w| w.size == 2));
        assert!(waits.register(wait(MAX_CLIENTS, 1)).is_err());
    }
}
