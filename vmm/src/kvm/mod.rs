//! The KVM side: the kernel loader, vCPUs and their exit loop, the VM (guest
//! memory itself is `pvmmu::guest_memory`, which the PV MMU reads too).

pub mod binary_stats;
pub mod debug;
pub mod dirty_log;
pub mod loader;
pub mod vcpu;
pub mod vm;
pub mod write_protect;
