//! memsrv's brain: every decision the capbuf memory server makes, with no
//! seL4 dependency.
//!
//! [`Server::handle`] takes a raw request (caller's channel, label, message
//! registers, count of capabilities) and returns the reply and, for an
//! attach, the table slot of the capability to send. All it does to the
//! kernel goes through the small [`Kernel`] trait: retype, mint/copy, revoke,
//! delete. The memsrv protection domain implements it with real seL4 calls;
//! the host model crate implements it with a model that enforces seL4's rules.
//!
//! Kernel objects per buffer: the pool's buddy tree is mirrored by untyped
//! capabilities (a split is a retype into two halves, a merge a revoke), the
//! buffer's leaf blocks are retyped into frames held in a *master* CNode,
//! and each attachment gets its own CNode of frame copies (with the
//! attachment's rights) plus a page table, in an untyped block of its own.
//! Detach revokes that block; free revokes the leaves, which deletes every
//! frame capability derived from them in every CSpace.
//!
//! The metadata blocks (master CNodes, attachments) come from per-client
//! [`reserve`]s set aside at start-up, never from buffer memory, so a client
//! within its quotas can always attach whatever others do to the pools.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod kernel;
pub mod layout;
pub mod registry;
pub mod reserve;
mod server;
pub mod window;

pub use kernel::{CapRef, Kernel, KernelError, MapAttributes, Object, Slot};
pub use layout::FrameLayout;
pub use registry::{charged_pages, Attachment, Buffer, Registry, MAX_BUFFERS};
pub use reserve::{reserve_bytes, ReserveBlock, Reserves};
pub use server::{Outcome, Server, Usage, MAX_TABLE_BITS};
