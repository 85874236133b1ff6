//! The allocator benchmark's workload and baselines, shared by `make bench`'s
//! tables (`src/main.rs`) and the divan benchmark (`benches/pairs.rs`).

pub mod first_fit;
pub mod fragmentation;
pub mod workload;
