//! memsrv's brain: every decision the capbuf memory server makes, with no
//! seL4 dependency.
//!
//! [`Server::handle`] takes a raw request (caller's channel, label, message
//! registers, count of capabilities) and returns an [`Outcome`]: the reply,
//! which never carries a capability. All it does to the kernel goes through
//! the small [`Kernel`] trait: retype, mint/copy, mutate, revoke, delete, map
//! a page table or a frame. The memsrv protection domain implements it with
//! real seL4 calls; the host model crate implements it with a model that
//! enforces seL4's rules.
//!
//! Kernel objects per buffer: the pool's buddy tree is mirrored by untyped
//! capabilities (a split is a retype into two halves, a merge revokes them,
//! lazily), the buffer's leaf blocks are retyped into frames held in a
//! *master* CNode, and each attachment gets its own CNode of frame copies
//! (with the attachment's rights) plus a page table, in an untyped block of
//! its own, mapped by memsrv into the client's window. Detach revokes that
//! block; free revokes the leaves, which deletes every frame capability
//! derived from them in every CSpace. An attachment revoked at another
//! client's request (UNGRANT, a lowered GRANT, FREE) leaves its window run
//! taken, as a hole, until its client detaches the id ([`window`]), so an
//! address the client still holds faults instead of reaching its next buffer.
//!
//! The metadata blocks (master CNodes, attachments) come from per-client
//! [`reserve`]s set aside at start-up, never from buffer memory, so a client
//! within its quotas can always attach whatever others do to the pools.
//!
//! Each request is decided first (every check, the blocks, slots, reserve
//! block, window run and quota it takes, with no kernel invocation), then
//! carried out. If the kernel refuses an invocation, memsrv undoes what the
//! request did (one revoke of its reserve block) and replies with an
//! [`capbuf_protocol::Error::Kernel`] error naming the invocation and the
//! seL4 error; what it cannot undo is counted as [`Lost`], never a panic.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arch;
pub mod capacity;
pub mod kernel;
pub mod layout;
pub mod placement;
pub mod quarantine;
pub mod registry;
pub mod reserve;
mod server;
pub mod wait;
pub mod window;

/// The `NODES` a [`Server`] needs for pools of up to `2^order` pages.
pub use capbuf_pool::nodes_for as pool_nodes;
pub use arch::Architecture;
pub use kernel::{CapRef, Failure, Kernel, KernelError, MapAttributes, Object, Slot};
pub use layout::FrameLayout;
pub use placement::{place_pools, Unplaceable};
pub use quarantine::{Quarantine, Quarantined};
pub use registry::{charged_pages, Attachment, Buffer, Holder, Holders, Made, Registry, MAX_BUFFERS, MAX_HOLDERS};
pub use reserve::{reserve_bytes, ReserveBlock, Reserves};
pub use server::{Lost, Outcome, Server, StartError, Usage};
pub use wait::{Wait, Waits};
