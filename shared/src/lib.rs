//! The one ABI crate: everything that crosses the boundary between the VMM (`vmm/`)
//! and the guest kernel (`guest/`) is defined here, once.
//!
//! - [`abi`]: ports, hypercall numbers, request blocks, error codes;
//! - [`boot`]: the boot information the VMM hands the guest;
//! - [`config`]: the run's configuration (strategies, workloads, sizes), chosen at run
//!   time and carried in the boot information;
//! - [`counters`]: per-CPU counters the guest keeps in memory the host reads;
//! - [`pae`]: PAE pagetable entry bits;
//! - [`results`]: the named results the guest reports;
//! - [`linux_probe`]: those of highpte-probe, the program a stock Linux runs for
//!   the benchmark's real-Linux control.
//!
//! The crate is `no_std` and has no dependencies so that the 32-bit guest can build it.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod abi;
pub mod boot;
pub mod config;
pub mod contract;
pub mod counters;
pub mod linux_probe;
pub mod pae;
pub mod results;
