//! memsrv's build-time configuration and the capability layout both ends rely on.
//!
//! The image composer reads `system.xml`, builds a [`Config`], and writes its
//! [`Config::encode`]d words into memsrv's `capbuf_config` symbol. memsrv
//! decodes and validates it at start. The layout constants say where the
//! composer puts the capabilities memsrv and clients need.

use core::ops::RangeInclusive;

use crate::{MAX_CHANNEL, MAX_CLIENTS, MAX_POOLS, PAGE_BITS};

/// First word of an encoded configuration ("capbufcf").
pub const CONFIG_MAGIC: u64 = u64::from_le_bytes(*b"capbufcf");
/// Version of the configuration encoding.
pub const CONFIG_VERSION: u64 = 6;
/// Words in an encoded configuration.
pub const CONFIG_WORDS: usize = HEADER_WORDS + MAX_POOLS * POOL_WORDS + MAX_CLIENTS * CLIENT_WORDS;
const HEADER_WORDS: usize = 5;
const POOL_WORDS: usize = 3;
const CLIENT_WORDS: usize = 9;
/// The symbol a `dma="true"` client may define to learn where the pools are,
/// since capbuf-compose may place them: it writes [`Config::pool_table`]
/// there, as Microkit's `setvar region_paddr` writes a region's address.
pub const POOL_TABLE_SYMBOL: &str = "capbuf_pools";
/// Words of [`Config::pool_table`]: a physical address and a size in bytes
/// per pool.
pub const POOL_TABLE_WORDS: usize = MAX_POOLS * 2;
/// A client word's value for "no supervisor".
const NO_SUPERVISOR: u64 = u64::MAX;

/// Microkit's capability layout, as Microkit 2.3.0 builds every protection
/// domain's CSpace (`tool/microkit/src/capdl/builder.rs`, `PD_*_CAP_IDX`, and
/// `libmicrokit/include/microkit.h`). capbuf-compose checks these against the
/// spec Microkit actually built before it adds anything.
pub mod microkit {
    /// Radix of a protection domain's root CNode (`PD_ROOT_CAP_BITS`); its
    /// slot 0 holds the Microkit CNode.
    pub const ROOT_CNODE_BITS: u64 = 6;
    /// Radix of the Microkit CNode (`PD_CAP_SIZE` = 512 slots).
    pub const CNODE_BITS: u64 = 9;
    /// Microkit-CNode slot of the protection domain's own VSpace (`PD_VSPACE_CAP_IDX`).
    pub const VSPACE_CPTR: u64 = 3;
    /// First Microkit-CNode slot of the PPC endpoints, one per channel (`PD_BASE_OUTPUT_ENDPOINT_CAP`).
    pub const BASE_ENDPOINT_CPTR: u64 = 74;
    /// Microkit-CNode slots Microkit 2.3.0 never fills: after the last range
    /// (`PD_BASE_IOPORT_CAP` 394 + 64) up to the end of the CNode.
    pub const FREE_CPTRS: core::ops::Range<u64> = 458..512;
}

/// Slot of memsrv's root CNode that holds its bookkeeping CNode ("table"),
/// guard 0: capability pointer [`table_cptr`] names a table slot.
pub const MEMSRV_TABLE_ROOT_SLOT: u64 = 1;
/// Slot of memsrv's root CNode that holds its table again, guarded to fill
/// a capability pointer ([`send_cptr`]): the full-depth lookup of a capability
/// sent with a reply ends at the table slot, even when that slot holds a CNode.
pub const MEMSRV_TABLE_SEND_ROOT_SLOT: u64 = 2;
/// Microkit-CNode slot (a capability pointer) in memsrv holding a capability
/// to the table CNode itself, guard 0, for use as the root of CNode and
/// retype invocations.
pub const MEMSRV_TABLE_CPTR: u64 = microkit::FREE_CPTRS.start;
/// Radix of a Microkit protection domain's root CNode.
pub const ROOT_CNODE_BITS: u64 = microkit::ROOT_CNODE_BITS;
/// Bits a root CNode slot index is shifted by in a capability pointer.
pub const ROOT_SLOT_SHIFT: u64 = 64 - ROOT_CNODE_BITS;
/// Table slot of client `i`'s VSpace capability is `MEMSRV_TABLE_VSPACES + i`
/// (after the pools' untypeds, which take slots `0..MAX_POOLS`). memsrv maps
/// every attachment into its client's VSpace through it. The slots after the
/// configured clients' are memsrv's own ([`Config::first_free_slot`]).
pub const MEMSRV_TABLE_VSPACES: u64 = MAX_POOLS as u64;
/// Radixes memsrv's table CNode may have (`table_bits`): from 5 (a table
/// must also leave a slot after the pools' untypeds and the configured
/// clients' VSpaces, [`Config::first_free_slot`]), to 15: 32768 slots, enough
/// for 4096 buffers' untypeds and master CNodes, their reserve blocks and
/// attachments (seL4 bounds a CNode only by the untyped it is made from: a
/// 2^15-slot CNode is 1 MiB; the capability pointer keeps 58 - 15 = 43 bits
/// for the CNodes memsrv holds in table slots).
pub const TABLE_BITS: RangeInclusive<u64> = 5..=15;
/// `table_bits` when `system.xml` gives none: 4096 slots (a 128 KiB CNode),
/// room for a few hundred buffers; a system with thousands raises it.
pub const DEFAULT_TABLE_BITS: u64 = 12;
/// Sizes a configuration can give a pool, as powers of two: from a page to
/// a 40-bit physical address space. A server takes only pools its trees are
/// sized for: the memsrv protection domain up to [`crate::MAX_POOL_BITS`].
pub const POOL_SIZE_BITS: RangeInclusive<u64> = PAGE_BITS as u64..=40;

const _: () = assert!(1 << *TABLE_BITS.start() > MEMSRV_TABLE_VSPACES, "a table holds the pools and a slot more");
const _: () = assert!(*TABLE_BITS.end() < ROOT_SLOT_SHIFT, "a table slot leaves bits of the capability pointer");
/// Virtual address window in which memsrv maps a client's attachments. The
/// composer refuses a client whose own mappings overlap it. It lies in the
/// first GiB, whose level-2 page table every Microkit PD already has.
pub const CLIENT_WINDOW: core::ops::Range<u64> = 0x2000_0000..0x4000_0000;

/// I/O address window of an `io_space` client's device: memsrv maps an
/// attachment's frames into the device's I/O address space at the same
/// offset in this window as in [`CLIENT_WINDOW`], so one window allocator
/// decides both. At a 1 GiB boundary below 2^39 (the three-level I/O
/// address space capDL builds); capbuf-compose pre-builds its I/O page
/// tables, so memsrv only ever maps 4 KiB frames there.
pub const IO_WINDOW: core::ops::Range<u64> = 0x4000_0000..0x4000_0000 + (CLIENT_WINDOW.end - CLIENT_WINDOW.start);

/// I/O address of virtual address `vaddr` of [`CLIENT_WINDOW`].
pub const fn io_address(vaddr: u64) -> u64 {
    IO_WINDOW.start + (vaddr - CLIENT_WINDOW.start)
}

const _: () = assert!(IO_WINDOW.start % (1 << 30) == 0 && IO_WINDOW.end <= 1 << 39);

/// memsrv's capability pointer for slot `slot` of its table (radix
/// `table_bits`): root CNode slot 1, then the table, whose slots' objects it
/// invokes. The bits below name a slot inside a CNode held in that table slot,
/// see [`inner_cptr`].
pub const fn table_cptr(table_bits: u64, slot: u64) -> u64 {
    (MEMSRV_TABLE_ROOT_SLOT << ROOT_SLOT_SHIFT) | (slot << (ROOT_SLOT_SHIFT - table_bits))
}

/// memsrv's capability pointer naming table slot `slot` itself at full
/// depth, as the kernel looks up a capability sent with a reply (EXPORT's
/// CNode): root CNode slot [`MEMSRV_TABLE_SEND_ROOT_SLOT`], whose table
/// capability has a guard of `58 - table_bits` bits of 0.
pub const fn send_cptr(slot: u64) -> u64 {
    (MEMSRV_TABLE_SEND_ROOT_SLOT << ROOT_SLOT_SHIFT) | slot
}

/// Bits a capability pointer has left below the table for a CNode held in a
/// table slot: memsrv gives such a CNode (radix `r`) a guard of
/// `inner_bits(table_bits) - r` bits, so that its slots are addressable.
pub const fn inner_bits(table_bits: u64) -> u64 {
    ROOT_SLOT_SHIFT - table_bits
}

/// memsrv's capability pointer for slot `index` of the (guarded) CNode in
/// table slot `node`.
pub const fn inner_cptr(table_bits: u64, node: u64, index: u64) -> u64 {
    table_cptr(table_bits, node) | index
}

/// One pool: a physically contiguous untyped region, naturally aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Physical base address.
    pub physical_address: u64,
    /// Size as a power of two.
    pub size_bits: u64,
    /// The pool is RAM the kernel does not know as RAM, which seL4 hands out
    /// as *device* untyped (`system.xml`: `device_untyped="true"`): the
    /// kernel neither zeroes frames retyped from it nor lets it hold kernel
    /// objects. memsrv zeroes each new buffer's frames itself (mapped at
    /// [`MEMSRV_SCRATCH`]) and keeps no metadata reserve in it.
    pub device: bool,
}

/// Where memsrv maps a frame of a `device` pool, in its own VSpace, to zero
/// it before handing it out: 4 KiB frames at `MEMSRV_SCRATCH`, 2 MiB ones at
/// `MEMSRV_SCRATCH + 2 MiB`. capbuf-compose gives memsrv the last-level
/// table for the first 2 MiB and checks that nothing else is mapped in
/// these 4 MiB (the top of the first GiB, which every Microkit PD's
/// translation tables already cover).
pub const MEMSRV_SCRATCH: u64 = 0x3FC0_0000;

/// One client: which channel reaches memsrv, its id and quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// memsrv's end of the client's PPC channel: how memsrv knows the caller.
    pub channel: u64,
    /// Id other clients use to name this client in grants.
    pub client_id: u64,
    /// Bytes of buffers the client may own at once.
    pub quota_bytes: u64,
    /// Buffers the client may own at once.
    pub quota_buffers: u64,
    /// Attachments the client may hold at once.
    pub quota_attachments: u64,
    /// May see physical addresses (drives DMA).
    pub dma: bool,
    /// May receive frame capabilities (EXPORT), with the weaker guarantee
    /// that copies it takes die only at FREE. capbuf-compose gives such a
    /// client a capability to its own root CNode at Microkit-CNode slot
    /// [`CLIENT_ROOT_CPTR`], its receive path.
    pub frame_caps: bool,
    /// Index (in [`Config::clients`]) of the client that may RECLAIM this
    /// one: `system.xml`'s `supervisor="pd"`, normally the PD's Microkit
    /// parent, which gets its faults. Another configured client, never itself.
    pub supervisor: Option<usize>,
    /// Its device is behind an IOMMU: `system.xml`'s `io_space="name"` names
    /// the device's `<io_address_space>`, whose IOSpace capability
    /// capbuf-compose puts in memsrv's table ([`Config::io_space_slot`]).
    /// memsrv maps each of the client's attachments into it too
    /// ([`IO_WINDOW`]), and INFO gives the client the buffer's I/O address
    /// instead of its physical one. Only with `dma`.
    pub io_space: bool,
}

/// Microkit-CNode slot of a `frame_caps` client holding a capability to its
/// own root CNode (guard 0): the CNode its received capabilities land in.
pub const CLIENT_ROOT_CPTR: u64 = microkit::FREE_CPTRS.start;
/// Microkit-CNode slot of the untyped capability capbuf-compose gives a
/// protection domain named by an `<untyped>` element (which also gets its root
/// CNode at [`CLIENT_ROOT_CPTR`]): for measuring the kernel's own operations.
pub const UNTYPED_CPTR: u64 = microkit::FREE_CPTRS.start + 1;
/// Root CNode slots a client library receives exported CNodes into: above
/// slot 0 (the Microkit CNode) and the slots Microkit could use.
pub const CLIENT_RECEIVE_SLOTS: core::ops::Range<u64> = 32..64;

/// memsrv's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Radix of memsrv's table CNode. Pool `i`'s untyped capability is in table slot `i`.
    pub table_bits: u64,
    /// Pools, in `system.xml` order.
    pub pools: [Option<PoolConfig>; MAX_POOLS],
    /// Clients, in `system.xml` order.
    pub clients: [Option<ClientConfig>; MAX_CLIENTS],
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Wrong magic or version: the composer did not patch memsrv.
    NotPatched,
    /// The table CNode radix is outside [`TABLE_BITS`].
    TableBits,
    /// No pool, or a pool size outside [`POOL_SIZE_BITS`] (or, at start-up,
    /// larger than the server's pool trees).
    PoolSize,
    /// A pool's base is not aligned to its size.
    PoolAlignment,
    /// Two pools overlap.
    PoolsOverlap,
    /// A channel id above Microkit's limit.
    Channel,
    /// Two clients share a channel or an id.
    Duplicate,
    /// An entry present after an absent one.
    Gap,
    /// The clients' metadata reserves, sized from their quotas, do not fit
    /// in the pools (see `capbuf_server::reserve`).
    ReservesExceedPools,
    /// The metadata reserves' untyped capabilities would leave memsrv's
    /// table too few slots to serve a request: raise `table_bits` or lower
    /// the quotas.
    ReservesExceedTable,
    /// The kernel refused to split a pool's untyped at start-up: the pool
    /// capabilities are not what the configuration describes.
    PoolCapability,
    /// A client's supervisor is not another configured client.
    Supervisor,
    /// Every pool is device memory (`device_untyped`): the metadata
    /// reserves need one pool of the kernel's RAM.
    DevicePoolsOnly,
    /// An `io_space` client is not a `dma` client.
    IoSpace,
}

impl Config {
    /// First table slot memsrv allocates for its own objects: after the
    /// pools' untypeds, the configured clients' VSpaces and the `io_space`
    /// clients' IOSpaces.
    pub fn first_free_slot(&self) -> u64 {
        let clients = self.clients.iter().flatten();
        MEMSRV_TABLE_VSPACES + clients.clone().count() as u64 + clients.filter(|c| c.io_space).count() as u64
    }

    /// Table slot of client index `client`'s IOSpace capability, if it is an
    /// `io_space` client: after the VSpaces, in client order.
    pub fn io_space_slot(&self, client: usize) -> Option<u64> {
        let clients = self.clients.iter().flatten();
        if !self.clients.get(client)?.as_ref()?.io_space {
            return None;
        }
        let before = clients.clone().take(client).filter(|c| c.io_space).count() as u64;
        Some(MEMSRV_TABLE_VSPACES + clients.count() as u64 + before)
    }

    /// Number of configured pools.
    pub fn pool_count(&self) -> usize {
        self.pools.iter().take_while(|p| p.is_some()).count()
    }

    /// Client configured for memsrv's channel `channel`.
    pub fn client_by_channel(&self, channel: u64) -> Option<(usize, &ClientConfig)> {
        self.clients.iter().enumerate().find_map(|(i, c)| c.as_ref().filter(|c| c.channel == channel).map(|c| (i, c)))
    }

    /// Client with id `client_id`.
    pub fn client_by_id(&self, client_id: u64) -> Option<(usize, &ClientConfig)> {
        self.clients
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.as_ref().filter(|c| c.client_id == client_id).map(|c| (i, c)))
    }

    /// Check everything memsrv relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !TABLE_BITS.contains(&self.table_bits) || 1 << self.table_bits <= self.first_free_slot() {
            return Err(ConfigError::TableBits);
        }
        let pools = self.pool_count();
        if pools == 0 {
            return Err(ConfigError::PoolSize);
        }
        if self.pools[pools..].iter().any(Option::is_some) {
            return Err(ConfigError::Gap);
        }
        if self.pools.iter().flatten().all(|pool| pool.device) {
            return Err(ConfigError::DevicePoolsOnly);
        }
        // Every pool's size first: the overlap check shifts by the sizes of
        // pools after the one it is at.
        for pool in self.pools.iter().flatten() {
            if !POOL_SIZE_BITS.contains(&pool.size_bits) {
                return Err(ConfigError::PoolSize);
            }
            if pool.physical_address & ((1 << pool.size_bits) - 1) != 0 {
                return Err(ConfigError::PoolAlignment);
            }
        }
        // Ends in 128 bits: a pool may end at 2^64.
        let end = |pool: &PoolConfig| u128::from(pool.physical_address) + (1u128 << pool.size_bits);
        for (i, pool) in self.pools.iter().flatten().enumerate() {
            for other in self.pools.iter().flatten().skip(i + 1) {
                let (a, b) = (u128::from(pool.physical_address), u128::from(other.physical_address));
                if a < end(other) && b < end(pool) {
                    return Err(ConfigError::PoolsOverlap);
                }
            }
        }
        let clients = self.clients.iter().take_while(|c| c.is_some()).count();
        if self.clients[clients..].iter().any(Option::is_some) {
            return Err(ConfigError::Gap);
        }
        for (i, client) in self.clients.iter().flatten().enumerate() {
            if client.channel > MAX_CHANNEL {
                return Err(ConfigError::Channel);
            }
            for other in self.clients.iter().flatten().skip(i + 1) {
                if client.channel == other.channel || client.client_id == other.client_id {
                    return Err(ConfigError::Duplicate);
                }
            }
            if client.supervisor.is_some_and(|s| s == i || s >= clients) {
                return Err(ConfigError::Supervisor);
            }
            if client.io_space && !client.dma {
                return Err(ConfigError::IoSpace);
            }
        }
        Ok(())
    }

    /// The words the composer writes into memsrv.
    pub fn encode(&self) -> [u64; CONFIG_WORDS] {
        let mut words = [0; CONFIG_WORDS];
        words[0] = CONFIG_MAGIC;
        words[1] = CONFIG_VERSION;
        words[2] = self.table_bits;
        words[3] = self.pool_count() as u64;
        words[4] = self.clients.iter().flatten().count() as u64;
        for (i, pool) in self.pools.iter().flatten().enumerate() {
            let at = HEADER_WORDS + i * POOL_WORDS;
            words[at..at + POOL_WORDS].copy_from_slice(&[pool.physical_address, pool.size_bits, pool.device as u64]);
        }
        for (i, client) in self.clients.iter().flatten().enumerate() {
            let at = HEADER_WORDS + MAX_POOLS * POOL_WORDS + i * CLIENT_WORDS;
            words[at..at + CLIENT_WORDS].copy_from_slice(&[
                client.channel,
                client.client_id,
                client.quota_bytes,
                client.quota_buffers,
                client.quota_attachments,
                client.dma as u64,
                client.frame_caps as u64,
                client.supervisor.map_or(NO_SUPERVISOR, |s| s as u64),
                client.io_space as u64,
            ]);
        }
        words
    }

    /// The pools as a `dma="true"` client sees them in its
    /// [`POOL_TABLE_SYMBOL`]: pool `i`'s physical address at word `2i`, its
    /// size in bytes at `2i + 1`; zeros past the last pool.
    pub fn pool_table(&self) -> [u64; POOL_TABLE_WORDS] {
        let mut words = [0; POOL_TABLE_WORDS];
        for (i, pool) in self.pools.iter().flatten().enumerate() {
            words[2 * i] = pool.physical_address;
            words[2 * i + 1] = 1 << pool.size_bits;
        }
        words
    }

    /// Read and validate the words memsrv finds in its `capbuf_config` symbol.
    pub fn decode(words: &[u64; CONFIG_WORDS]) -> Result<Config, ConfigError> {
        if words[0] != CONFIG_MAGIC || words[1] != CONFIG_VERSION {
            return Err(ConfigError::NotPatched);
        }
        let pools = words[3] as usize;
        let clients = words[4] as usize;
        if pools > MAX_POOLS || clients > MAX_CLIENTS {
            return Err(ConfigError::Gap);
        }
        let mut config = Config { table_bits: words[2], pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
        for i in 0..pools {
            let at = HEADER_WORDS + i * POOL_WORDS;
            config.pools[i] =
                Some(PoolConfig { physical_address: words[at], size_bits: words[at + 1], device: words[at + 2] != 0 });
        }
        for i in 0..clients {
            let at = HEADER_WORDS + MAX_POOLS * POOL_WORDS + i * CLIENT_WORDS;
            config.clients[i] = Some(ClientConfig {
                channel: words[at],
                client_id: words[at + 1],
                quota_bytes: words[at + 2],
                quota_buffers: words[at + 3],
                quota_attachments: words[at + 4],
                dma: words[at + 5] != 0,
                frame_caps: words[at + 6] != 0,
                supervisor: match words[at + 7] {
                    NO_SUPERVISOR => None,
                    index => Some(usize::try_from(index).map_err(|_| ConfigError::Supervisor)?),
                },
                io_space: words[at + 8] != 0,
            });
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let mut config = Config { table_bits: 12, pools: [None; MAX_POOLS], clients: [None; MAX_CLIENTS] };
        config.pools[0] = Some(PoolConfig { physical_address: 0x1_0000_0000 >> 2, size_bits: 24, device: false });
        config.pools[1] = Some(PoolConfig { physical_address: 0x5000_0000, size_bits: 20, device: false });
        config.clients[0] = Some(ClientConfig {
            channel: 0,
            client_id: 1,
            quota_bytes: 1 << 22,
            quota_buffers: 4,
            quota_attachments: 8,
            dma: false,
            frame_caps: false,
            supervisor: None,
            io_space: false,
        });
        config.clients[1] = Some(ClientConfig {
            channel: 5,
            client_id: 7,
            dma: true,
            frame_caps: true,
            supervisor: Some(0),
            io_space: true,
            ..config.clients[0].unwrap()
        });
        config
    }

    #[test]
    fn encoding_round_trips() {
        let config = example();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(Config::decode(&config.encode()), Ok(config.clone()));
        assert_eq!(config.client_by_channel(5).map(|(i, c)| (i, c.client_id)), Some((1, 7)));
        assert_eq!(config.client_by_id(1).map(|(i, _)| i), Some(0));
        assert!(config.client_by_channel(6).is_none());
    }

    #[test]
    fn pool_table_gives_address_and_size_per_pool() {
        let table = example().pool_table();
        assert_eq!(table[..4], [0x4000_0000, 1 << 24, 0x5000_0000, 1 << 20]);
        assert!(table[4..].iter().all(|&w| w == 0));
    }

    #[test]
    fn unpatched_and_invalid_configurations_are_refused() {
        assert_eq!(Config::decode(&[0; CONFIG_WORDS]), Err(ConfigError::NotPatched));
        let mut c = example();
        c.pools[1] = Some(PoolConfig { physical_address: 0x4000_0000, size_bits: 30, device: false });
        assert_eq!(c.validate(), Err(ConfigError::PoolsOverlap));
        let mut c = example();
        c.pools[1] = Some(PoolConfig { physical_address: 0x5000_1000, size_bits: 20, device: false });
        assert_eq!(c.validate(), Err(ConfigError::PoolAlignment));
        // A later pool's size is checked before any overlap is computed with
        // it (the fuzzer's find: a shift by 70 bits panicked in debug builds).
        let mut c = example();
        c.pools[1] = Some(PoolConfig { physical_address: 0, size_bits: 70, device: false });
        assert_eq!(c.validate(), Err(ConfigError::PoolSize));
        // A pool that ends at 2^64 overlaps one just below it.
        let mut c = example();
        c.pools[0] = Some(PoolConfig { physical_address: u64::MAX - (1 << 24) + 1, size_bits: 24, device: false });
        c.pools[1] = Some(PoolConfig { physical_address: u64::MAX - (1 << 30) + 1, size_bits: 30, device: false });
        assert_eq!(c.validate(), Err(ConfigError::PoolsOverlap));
        let mut c = example();
        c.clients[1].as_mut().unwrap().channel = 0;
        assert_eq!(c.validate(), Err(ConfigError::Duplicate));
        let mut c = example();
        c.clients[1].as_mut().unwrap().channel = 63;
        assert_eq!(c.validate(), Err(ConfigError::Channel));
        for (table_bits, valid) in [(4, false), (5, true), (12, true), (15, true), (16, false), (20, false)] {
            let mut c = example();
            c.table_bits = table_bits;
            assert_eq!(c.validate().is_ok(), valid, "table_bits {table_bits}");
            assert_eq!(TABLE_BITS.contains(&table_bits), valid);
        }
        let mut c = example();
        let client = c.clients[0].unwrap();
        for i in 0..MAX_CLIENTS - 1 {
            c.clients[i] =
                Some(ClientConfig { channel: i as u64, client_id: 100 + i as u64, supervisor: None, ..client });
        }
        c.table_bits = 6;
        assert_eq!(c.validate(), Err(ConfigError::TableBits), "4 pool slots and 63 VSpaces leave no slot of 64");
        c.table_bits = 7;
        assert_eq!(c.validate(), Ok(()));
        for (size_bits, valid) in [(11, false), (12, true), (40, true), (41, false)] {
            let mut c = example();
            c.pools[1] = Some(PoolConfig { physical_address: 1 << 41, size_bits, device: false });
            assert_eq!(c.validate().is_ok(), valid, "pool size_bits {size_bits}");
        }
        let mut c = example();
        c.pools[0] = None;
        assert_eq!(c.validate(), Err(ConfigError::PoolSize));
        for (supervisor, valid) in
            [(Some(0), true), (None, true), (Some(1), false), (Some(2), false), (Some(99), false)]
        {
            let mut c = example();
            c.clients[1].as_mut().unwrap().supervisor = supervisor;
            assert_eq!(c.validate().is_ok(), valid, "supervisor {supervisor:?}");
            if !valid {
                assert_eq!(c.validate(), Err(ConfigError::Supervisor), "itself, or not a configured client");
            }
        }
        let mut words = example().encode();
        words[1] = 2;
        assert_eq!(Config::decode(&words), Err(ConfigError::NotPatched), "the encoding before supervisors");
        words[1] = 3;
        assert_eq!(Config::decode(&words), Err(ConfigError::NotPatched), "the encoding for 16 clients");
    }

    #[test]
    fn io_space_clients_get_a_table_slot_each_after_the_vspaces() {
        let mut c = example();
        assert_eq!(c.io_space_slot(0), None);
        assert_eq!(c.io_space_slot(1), Some(MEMSRV_TABLE_VSPACES + 2));
        assert_eq!(c.first_free_slot(), MEMSRV_TABLE_VSPACES + 3);
        c.clients[2] = Some(ClientConfig { channel: 9, client_id: 9, ..c.clients[1].unwrap() });
        assert_eq!(c.io_space_slot(2), Some(MEMSRV_TABLE_VSPACES + 4));
        assert_eq!(c.io_space_slot(3), None);
        assert_eq!(c.first_free_slot(), MEMSRV_TABLE_VSPACES + 5);
        c.clients[2].as_mut().unwrap().dma = false;
        assert_eq!(c.validate(), Err(ConfigError::IoSpace), "an I/O address is a DMA address");
        assert_eq!(io_address(CLIENT_WINDOW.start + 0x3000), IO_WINDOW.start + 0x3000);
    }
}
