//! What memsrv's static tables are sized for, both ways: derived from
//! `system.xml` files before memsrv is built (`--capbuf-limits`, whose
//! `CAPBUF_MAX_*` assignments the Makefile passes to cargo, see
//! `capbuf_server::capacity`), and read back from the memsrv ELF (its
//! `capbuf_limits` symbol) to refuse a system it was not built for.

use capbuf_server::capacity::LIMITS_MAGIC;
use microkit_tool::elf::ElfFile;

use crate::extension::{self, Extension};

/// Smallest tables a derived build gets, whatever the systems ask: the
/// sizes memsrv had before they were configurable (128 buffers, 64 MiB
/// pools), so that small systems keep a small memsrv without being cramped.
const FLOOR_BUFFERS: u64 = 128;
const FLOOR_POOL_BITS: u64 = 26;

/// Limits of a memsrv build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub buffers: u64,
    pub pool_bits: u64,
    pub table_bits: u64,
    pub clients: u64,
}

impl Limits {
    /// What the `<capbuf>` element needs: its largest pool, its table, and a
    /// buffer table for its clients' quotas added up (or one client's
    /// attachments, whichever is more), at most the protocol's ceilings.
    pub fn needed(extension: &Extension) -> Limits {
        let quota_buffers: u64 = extension.clients.iter().map(|c| c.quota_buffers).sum();
        let attachments = extension.clients.iter().map(|c| c.quota_attachments).max().unwrap_or(0);
        Limits {
            buffers: quota_buffers.max(attachments).min(capbuf_protocol::MAX_BUFFERS as u64),
            pool_bits: extension.pools.iter().map(|p| p.size_bits).max().unwrap_or(0),
            table_bits: extension.table_bits,
            clients: extension.clients.len() as u64,
        }
    }

    /// The limits a memsrv ELF was built for, from its `capbuf_limits` symbol.
    pub fn of_elf(elf: &ElfFile) -> Result<Limits, String> {
        let (vaddr, size) = elf.find_symbol("capbuf_limits")?;
        let data = elf.get_data(vaddr, size).ok_or("`capbuf_limits` is not in a loaded segment")?;
        let words: Vec<u64> = data.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).collect();
        match words[..] {
            [LIMITS_MAGIC, buffers, pool_bits, table_bits, clients, ..] => {
                Ok(Limits { buffers, pool_bits, table_bits, clients })
            }
            _ => Err("`capbuf_limits` does not start with its magic".into()),
        }
    }

    /// Refuse a `<capbuf>` element this memsrv build cannot serve, naming
    /// what to raise.
    pub fn check(&self, extension: &Extension, elf_name: &str) -> Result<(), String> {
        let rebuild = "build memsrv for this system: `make memsrv MEMSRV_SYSTEMS=<system.xml>` (or set CAPBUF_MAX_* when building it)";
        if extension.table_bits > self.table_bits {
            return Err(format!(
                "capbuf: table_bits must be from {} to {} for {elf_name}, which was built for tables up to 2^{} slots; {rebuild}",
                capbuf_protocol::TABLE_BITS.start(),
                self.table_bits,
                self.table_bits
            ));
        }
        if let Some(pool) = extension.pools.iter().find(|p| p.size_bits > self.pool_bits) {
            return Err(format!(
                "capbuf: pool '{}' of {} MiB is larger than the {} MiB pools {elf_name} was built for; {rebuild}",
                pool.name,
                (1u64 << pool.size_bits) >> 20,
                (1u64 << self.pool_bits) >> 20
            ));
        }
        if extension.clients.len() as u64 > self.clients {
            return Err(format!(
                "capbuf: {} clients, {elf_name} was built for {}",
                extension.clients.len(),
                self.clients
            ));
        }
        let buffers: u64 = extension.clients.iter().map(|c| c.quota_buffers).sum();
        if buffers > self.buffers && !extension.overcommit {
            return Err(format!(
                "capbuf: the clients' quota_buffers add up to {buffers}, {elf_name} tracks {} buffers; lower them, set overcommit=\"true\" on <capbuf>, or {rebuild}",
                self.buffers
            ));
        }
        Ok(())
    }
}

/// `capbuf-compose --capbuf-limits SYSTEM...`: the `CAPBUF_MAX_*` settings
/// that build a memsrv for every one of the systems (at least the floor).
pub fn derive(paths: &[String]) -> Result<String, String> {
    let mut limits = Limits { buffers: FLOOR_BUFFERS, pool_bits: FLOOR_POOL_BITS, table_bits: 0, clients: 0 };
    for path in paths {
        let xml = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let Some(extension) = extension::parse(&xml).map_err(|e| format!("{path}: {e}"))? else { continue };
        let needed = Limits::needed(&extension);
        limits.buffers = limits.buffers.max(needed.buffers);
        limits.pool_bits = limits.pool_bits.max(needed.pool_bits);
        limits.table_bits = limits.table_bits.max(needed.table_bits);
    }
    if limits.table_bits == 0 {
        limits.table_bits = capbuf_protocol::DEFAULT_TABLE_BITS;
    }
    Ok(format!(
        "CAPBUF_MAX_BUFFERS={} CAPBUF_MAX_POOL_BITS={} CAPBUF_MAX_TABLE_BITS={}",
        limits.buffers.next_power_of_two().min(capbuf_protocol::MAX_BUFFERS as u64),
        limits.pool_bits.min(capbuf_protocol::MAX_POOL_BITS as u64),
        limits.table_bits
    ))
}
