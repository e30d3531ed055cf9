//! How to run: on the local KVM when it can run a 32-bit PAE guest, else inside the
//! QEMU-hosted appliance. One line tells the user which, and why.

pub mod appliance;
pub mod cpio;
pub mod emulator;
pub mod frame;
pub mod initramfs;
pub mod paths;
pub mod probe;

/// What the user asked for with `--host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HostMode {
    /// Probe the local KVM; fall back to QEMU-hosted.
    Auto,
    /// The local KVM, whatever it is.
    Local,
    /// The QEMU-hosted appliance.
    Qemu,
}

/// Where a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Qemu,
}

#[derive(Debug, thiserror::Error)]
#[error("no way to run the guest: {local}; and QEMU-hosted is unavailable: {qemu}")]
pub struct NoWayToRun {
    local: String,
    qemu: String,
}

/// Resolves `--host` into a mode and the reason for it.
pub fn resolve(host: HostMode) -> Result<(Mode, String), NoWayToRun> {
    let qemu_ok = || {
        appliance::qemu_available().map_err(|e| e.to_string())?;
        let k = paths::appliance_kernel_dir().join("vmlinux");
        if k.is_file() {
            Ok(())
        } else {
            Err(format!("the appliance's kernel is missing: {} (run scripts/setup.sh)", k.display()))
        }
    };
    match host {
        HostMode::Local => Ok((Mode::Local, "--host local".into())),
        HostMode::Qemu => match qemu_ok() {
            Ok(()) => Ok((Mode::Qemu, "--host qemu".into())),
            Err(q) => Err(NoWayToRun { local: "--host qemu was given".into(), qemu: q }),
        },
        HostMode::Auto => match probe::probe() {
            Ok(()) => Ok((Mode::Local, format!("the local KVM ({}) runs 32-bit PAE guests", probe::kvm_module()))),
            Err(why) => match qemu_ok() {
                Ok(()) => Ok((Mode::Qemu, why.to_string())),
                Err(q) => Err(NoWayToRun { local: why.to_string(), qemu: q }),
            },
        },
    }
}

/// The line that tells the user how the run goes.
pub fn mode_line(mode: Mode, reason: &str) -> String {
    match mode {
        Mode::Local => format!("vmm: running on the local KVM: {reason}"),
        Mode::Qemu => {
            format!("vmm: running QEMU-hosted ({}, TCG, -cpu EPYC, kvm_amd inside): {reason}", appliance::QEMU)
        }
    }
}
