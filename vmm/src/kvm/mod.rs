//! The KVM side: the kernel loader, vCPUs and their exit loop, the VM (guest
//! memory itself is `crate::guest_memory`, which the PV MMU reads too).

pub mod dirty_log;
pub mod loader;
pub mod stats;
pub mod vcpu;
pub mod vm;
pub mod write_protect;
