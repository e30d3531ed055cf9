//! The KVM side: guest memory, the kernel loader, vCPUs and their exit loop, the VM.

pub mod dirty_log;
pub mod loader;
pub mod memory;
pub mod stats;
pub mod vcpu;
pub mod vm;
pub mod write_protect;
