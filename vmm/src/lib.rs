//! `vmm`: a minimal KVM virtual machine monitor for a 32-bit PAE guest, and a
//! Xen-style host for the guest's pagetables (the `pvmmu` crate). See
//! README.md and docs/architecture.md.
//!
//! This library runs guests: `vmm run` ([`run`]), many runs in one
//! QEMU-hosted appliance boot ([`run::run_jobs_with`]), the contract
//! scenarios ([`contract`]). The benchmark (`vmm-bench`) and the command
//! line (`vmm-cli`, the `vmm` binary) stand on it; the slim
//! `vmm-appliance` binary, which goes into the QEMU-hosted appliance, is
//! built from it alone.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod args;
pub mod contract;
pub mod doctor;
pub mod gdb;
pub mod hypervisor;
pub mod kvm;
mod layers;
pub mod linux;
pub mod machine;
pub mod platform;
pub mod report;
pub mod run;

/// The version and the git commit the binaries are built from (`--version`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("VMM_GIT_COMMIT"), ")");
