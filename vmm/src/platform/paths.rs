//! Where `vmm` finds the guest image and the appliance's inputs.
//!
//! In order (docs/usage.md, "Where vmm looks"), after the flags (`--kernel`):
//! 1. the environment: one file's own variable (`VMM_GUEST`,
//!    `VMM_APPLIANCE_KERNEL`, `VMM_LINUX_DIR`), or `VMM_ROOT`, a checkout;
//! 2. an installed tree beside the binary (`<prefix>/bin/vmm` with
//!    `<prefix>/share/vmm/`, as `scripts/install.sh` lays it out);
//! 3. the checkout the binary was built in, when it runs from there;
//! 4. the user's data directory, `$XDG_DATA_HOME/vmm` (else
//!    `~/.local/share/vmm`), which `scripts/data.sh` fills from a checkout
//!    (setup.sh and build.sh call it);
//! 5. the checkout the binary was built in.

use std::path::{Path, PathBuf};

/// The installed data directory beside the running binary, if there is one:
/// `<prefix>/share/vmm` for `<prefix>/bin/vmm`, holding the guest.
fn installed() -> Option<PathBuf> {
    let exe = std::fs::canonicalize("/proc/self/exe").or_else(|_| std::env::current_exe()).ok()?;
    let share = exe.parent()?.parent()?.join("share/vmm");
    share.join("guest").is_file().then_some(share)
}

/// The user's data directory: `$XDG_DATA_HOME/vmm`, else
/// `~/.local/share/vmm` (the XDG default), if there is a home.
pub fn data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("vmm"))
}

/// Whether the binary runs from the checkout it was built in (its `target/`).
fn running_from_checkout() -> bool {
    let exe = std::fs::canonicalize("/proc/self/exe").or_else(|_| std::env::current_exe());
    let target = std::fs::canonicalize(checkout().join("target"));
    matches!((exe, target), (Ok(e), Ok(t)) if e.starts_with(&t))
}

/// `rel` in the user's data directory, when the environment names no
/// checkout, the binary does not run from its own, and the file is there.
fn in_data_dir(rel: &str) -> Option<PathBuf> {
    if std::env::var_os("VMM_ROOT").is_some() || running_from_checkout() {
        return None;
    }
    data_dir().map(|d| d.join(rel)).filter(|p| p.exists())
}

/// The project's checkout (`VMM_ROOT` overrides).
pub fn root() -> PathBuf {
    match std::env::var_os("VMM_ROOT") {
        Some(r) => PathBuf::from(r),
        None => checkout(),
    }
}

/// The checkout the binary was built in.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// The installed tree, unless `VMM_ROOT` names a checkout.
fn installed_tree() -> Option<PathBuf> {
    if std::env::var_os("VMM_ROOT").is_some() {
        return None;
    }
    installed()
}

/// The guest image (`VMM_GUEST` overrides).
pub fn default_guest() -> PathBuf {
    if let Some(g) = std::env::var_os("VMM_GUEST") {
        return PathBuf::from(g);
    }
    match installed_tree() {
        Some(share) => share.join("guest"),
        None => in_data_dir("guest").unwrap_or_else(|| root().join("guest/target/i686-none/release/guest")),
    }
}

/// A file of the stock Linux the benchmark's Linux cells boot (`vmlinuz`,
/// `busybox`, `PACKAGE`, `highpte-probe`), put in `.cache/linux` by
/// scripts/setup.sh (highpte-probe: scripts/build.sh) and copied by
/// scripts/install.sh and scripts/data.sh (`VMM_LINUX_DIR` overrides): the
/// installed copy when there is one, else the data directory's, else the
/// checkout's.
pub fn linux_file(name: &str) -> PathBuf {
    if let Some(d) = std::env::var_os("VMM_LINUX_DIR") {
        return PathBuf::from(d).join(name);
    }
    if let Some(p) = installed_tree().map(|share| share.join("linux").join(name)).filter(|p| p.is_file()) {
        return p;
    }
    if let Some(p) = in_data_dir(&format!("linux/{name}")) {
        return p;
    }
    let cache = root().join(".cache/linux").join(name);
    if name == "highpte-probe" && !cache.is_file() {
        return root().join("guest/linux-probe/target/i686-none/release/highpte-probe");
    }
    cache
}

/// The binary the QEMU-hosted appliance carries and runs its jobs with:
/// `vmm-appliance` beside the running binary (as `cargo build` and
/// `scripts/install.sh` lay them out; `VMM_APPLIANCE_BINARY` overrides),
/// else the running binary itself, which runs every job too (only larger:
/// it holds the benchmark and the manual).
pub fn appliance_binary() -> std::io::Result<PathBuf> {
    if let Some(b) = std::env::var_os("VMM_APPLIANCE_BINARY") {
        return Ok(PathBuf::from(b));
    }
    // /proc/self/exe still reads our own binary when the file was replaced
    // by a rebuild during a long batch.
    let own = PathBuf::from("/proc/self/exe");
    let exe = std::fs::canonicalize(&own).or_else(|_| std::env::current_exe())?;
    let slim = exe.with_file_name("vmm-appliance");
    if slim.is_file() {
        return Ok(slim);
    }
    Ok(if own.is_file() { own } else { exe })
}

/// Debian's kernel (`vmlinux`) and modules (`modules/*.ko`), put there by
/// scripts/setup.sh (`VMM_APPLIANCE_KERNEL` overrides): the installed copy
/// when there is one, else the checkout's.
pub fn appliance_kernel_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMM_APPLIANCE_KERNEL") {
        return PathBuf::from(d);
    }
    match installed_tree().map(|share| share.join("appliance/kernel")).filter(|d| d.is_dir()) {
        Some(dir) => dir,
        None => in_data_dir("appliance/kernel").unwrap_or_else(|| root().join(".cache/appliance/kernel")),
    }
}

/// Where built initramfs archives are cached: the checkout's `target/`, or
/// for an installed binary the user's cache (`$XDG_CACHE_HOME/vmm`, else
/// `~/.cache/vmm`, else the temporary directory).
pub fn appliance_cache_dir() -> PathBuf {
    if installed_tree().is_none() {
        return root().join("target/appliance");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vmm/appliance")
}
