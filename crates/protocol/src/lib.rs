//! The capbuf wire ABI: everything memsrv and its clients must agree on.
//!
//! A request is a protected procedure call (PPC) to memsrv. Its message label
//! is the [`Op`] number and its message registers hold the [`Request`]'s
//! fields. The reply's label is `0` on success or an [`Error`] code, and on
//! success its message registers hold the [`Reply`]'s fields; a KERNEL
//! error's hold the [`KernelFailure`]. Every op's fields are declared once,
//! in the ABI table (`src/op.rs`), each of a type that travels in one
//! message register ([`Word`]), whole or packed with other small fields
//! into one register so that every message fits seL4's fastpath
//! ([`MAX_MESSAGE_WORDS`]); everything else, the C header included, comes
//! from it. No reply carries a capability: memsrv maps an attachment
//! into the caller's VSpace itself (see [`AttachReply`]), so revoking it
//! holds whatever the client does with the capabilities it has.
//!
//! This crate has no seL4 dependency so that both ends, the host model and the
//! C header generator use the same definitions. Every number here is part of
//! the ABI: ops and errors carry explicit values, never declaration order.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod table;

mod config;
mod error;
mod id;
mod invocation;
mod message;
mod op;
mod rights;
mod wire;

pub use config::{
    inner_bits, inner_cptr, io_address, microkit, send_cptr, table_cptr, ClientConfig, Config, ConfigError, PoolConfig,
    CLIENT_RECEIVE_SLOTS, CLIENT_ROOT_CPTR, CLIENT_WINDOW, CONFIG_MAGIC, CONFIG_VERSION, CONFIG_WORDS,
    DEFAULT_TABLE_BITS, IO_WINDOW, MEMSRV_SCRATCH, MEMSRV_TABLE_CPTR, MEMSRV_TABLE_ROOT_SLOT,
    MEMSRV_TABLE_SEND_ROOT_SLOT, MEMSRV_TABLE_VSPACES, POOL_SIZE_BITS, POOL_TABLE_SYMBOL, POOL_TABLE_WORDS,
    ROOT_CNODE_BITS, ROOT_SLOT_SHIFT, TABLE_BITS, UNTYPED_CPTR,
};
pub use error::Error;
pub use id::BufferId;
pub use invocation::{Invocation, KernelFailure};
pub use message::{DecodeError, ReplyError, MAX_MESSAGE_WORDS};
pub use op::{
    AllocReply, AttachReply, DetachReply, ExportReply, FreeReply, GrantReply, HelloReply, InfoReply, Op, PoolInfoReply,
    QuiesceReply, ReclaimReply, Reply, Request, UnexportReply, UngrantReply,
};
pub use rights::{AllocFlags, Rights};
pub use wire::{Align, ClientId, Field, Part, PoolId, Word, PACKED_DESCRIPTION};

/// Protocol version. A client refuses to run against a memsrv whose version
/// differs: the major number is the high 32 bits, the minor the low 32 bits,
/// and only the major number must match. Major 3: POOL_INFO replies with the
/// lost bytes, KERNEL errors name the failed invocation. Major 4: QUIESCE,
/// and POOL_INFO replies with the quarantined bytes. Minor 1: EXPORT and
/// UNEXPORT (only `frame_caps` clients may use them; nothing else changed).
/// Minor 2: RECLAIM (only a client's supervisor may use it), the WAIT
/// allocation flag and the WAITING and NOT_SUPERVISOR codes (a client that
/// never sets WAIT never sees WAITING). Minor 3: up to 64 clients and 4096
/// buffers, and the TOO_MANY_HOLDERS code (GRANT to more clients of one
/// buffer than memsrv keeps holders for; no field changed). Major 5: every
/// request and reply fits seL4's fastpath ([`MAX_MESSAGE_WORDS`], 4
/// registers): HELLO, ATTACH, INFO and POOL_INFO pack their small fields
/// into shared registers and POOL_INFO counts pages on the wire (the reply
/// structs are unchanged); HELLO keeps the version alone in register 0.
pub const PROTOCOL_VERSION: u64 = 5 << VERSION_MAJOR_SHIFT;

/// Where a protocol version's major number starts.
pub const VERSION_MAJOR_SHIFT: u32 = 32;

/// The major part of a protocol version.
pub const fn version_major(version: u64) -> u32 {
    (version >> VERSION_MAJOR_SHIFT) as u32
}

/// Smallest unit memsrv hands out: one 4 KiB small page (AArch64 `seL4_PageBits`).
pub const PAGE_BITS: u32 = 12;
/// Size of a small page in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_BITS;
/// AArch64 large page (`seL4_LargePageBits`): buffers use it wherever a piece
/// of the buffer is a naturally aligned 2 MiB block.
pub const LARGE_PAGE_BITS: u32 = 21;
/// Largest alignment a client may ask for, as a power of two (1 GiB).
pub const MAX_ALIGN_BITS: u32 = 30;
/// Largest buffer, as a power of two (1 GiB): one buffer must fit the
/// client's mapping window.
pub const MAX_BUFFER_BITS: u32 = 30;
/// Value of [`InfoReply::physical_address`] when the caller may not see
/// physical addresses (it is not configured as a DMA-capable client).
pub const PADDR_HIDDEN: u64 = u64::MAX;
/// Highest number of pools a memsrv can be configured with.
pub const MAX_POOLS: usize = 4;
/// Highest number of clients a memsrv can be configured with: one bit each
/// in a `u64` mask. (A Microkit memsrv has at most 63 channels, so at most
/// 63 clients in a Microkit system.)
pub const MAX_CLIENTS: usize = 64;
/// Largest pool any memsrv can be built for, as a power of two (4 GiB). A
/// memsrv ELF is built for a smaller or equal limit (its pool trees are
/// sized for it at compile time, see `capbuf_server::capacity`) and refuses
/// a larger pool at start-up; capbuf-compose refuses it first.
pub const MAX_POOL_BITS: u32 = 32;
/// Most buffers any memsrv can track at once, all clients together: the
/// largest buffer table it can be built with (a memsrv ELF may be built
/// with fewer, see `capbuf_server::capacity`).
pub const MAX_BUFFERS: usize = 4096;
/// Highest channel id Microkit allows (`MICROKIT_MAX_CHANNELS` - 1).
pub const MAX_CHANNEL: u64 = 62;

const _: () = assert!(PAGE_BITS < LARGE_PAGE_BITS);
const _: () = assert!(MAX_CLIENTS <= u64::BITS as usize, "one bit per client in a u64 mask");
const _: () = assert!(MAX_BUFFER_BITS <= MAX_ALIGN_BITS);
const _: () = assert!(MAX_MESSAGE_WORDS <= 64, "fits the seL4 IPC buffer's message registers");
