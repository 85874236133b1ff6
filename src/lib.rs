//! capbuf: physically contiguous buffers for seL4 Microkit protection domains,
//! handed out as capabilities.
//!
//! This root crate re-exports the pure crates so host tools can depend on one
//! name, and its build script generates the C header (`include/capbuf.h`) from
//! [`protocol`] so the C ABI cannot drift from the Rust one.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use capbuf_pool as pool;
pub use capbuf_protocol as protocol;
pub use capbuf_server as server;
