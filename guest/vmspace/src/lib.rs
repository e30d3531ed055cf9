//! The vmalloc address space of the guest kernel, as Linux 2.6.28 kept it.
//!
//! - [`tree`]: the vmap areas, disjoint half-open `[start, end)` ranges of `u32` addresses in an
//!   AVL tree (stored in a caller-provided arena) with an address-ordered list beside it, and the
//!   first-fit search of `alloc_vmap_area()`.
//! - [`block`]: the bitmaps of one per-CPU vmap block (the `vm_map_ram()` frontend): aligned
//!   power-of-two allocations, dirty bits that are never reused, and the pending/flushing stages
//!   that `vm_unmap_aliases()` walks.
//!
//! The crate is `no_std`, allocates nothing and has no `unsafe` code.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod block;
pub mod tree;

pub use block::*;
pub use tree::*;
