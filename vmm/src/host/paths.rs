//! Where `vmm` finds the guest image and the appliance's inputs. Defaults are
//! relative to the project's checkout (known at build time); environment variables
//! override them.

use std::path::PathBuf;

/// The project's checkout (`VMM_ROOT` overrides).
pub fn root() -> PathBuf {
    match std::env::var_os("VMM_ROOT") {
        Some(r) => PathBuf::from(r),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default(),
    }
}

/// The freshly built guest (`VMM_GUEST` overrides).
pub fn default_guest() -> PathBuf {
    match std::env::var_os("VMM_GUEST") {
        Some(g) => PathBuf::from(g),
        None => root().join("guest/target/i686-none/release/guest"),
    }
}

/// Debian's kernel (`vmlinux`) and modules (`modules/*.ko`), put there by
/// scripts/setup.sh (`VMM_APPLIANCE_KERNEL` overrides).
pub fn appliance_kernel_dir() -> PathBuf {
    match std::env::var_os("VMM_APPLIANCE_KERNEL") {
        Some(d) => PathBuf::from(d),
        None => root().join(".cache/appliance/kernel"),
    }
}

/// Where built initramfs archives are cached.
pub fn appliance_cache_dir() -> PathBuf {
    root().join("target/appliance")
}
