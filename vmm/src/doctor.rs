//! `vmm doctor`: whether this machine can run the guest, and what is missing.
//! Each check says where it looked, so that a user who copied or installed the
//! binary sees which file it wants.

use std::path::Path;

use crate::kvm::loader;
use crate::platform::{self, appliance, paths, probe, HostMode, Mode};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ok,
    /// Not needed on this machine (the other way to run works).
    Absent,
    Missing,
}

/// One thing `vmm` needs, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub what: &'static str,
    pub state: State,
    pub detail: String,
}

/// What the doctor found: each check, and how a run would go.
#[derive(Debug)]
pub struct Diagnosis {
    pub checks: Vec<Check>,
    /// The mode `--host auto` picks and why, or why no run is possible.
    pub runs: Result<(Mode, String), String>,
}

impl Diagnosis {
    pub fn ready(&self) -> bool {
        self.runs.is_ok() && self.checks.iter().all(|c| c.state != State::Missing)
    }
}

fn guest_check(path: &Path) -> Check {
    let what = "guest image";
    match loader::parse(path) {
        Ok(_) => {
            let scenarios = crate::contract::scenarios(path).map(|s| s.len()).unwrap_or(0);
            Check { what, state: State::Ok, detail: format!("{} ({scenarios} contract scenarios)", path.display()) }
        }
        Err(e) => Check { what, state: State::Missing, detail: e.to_string() },
    }
}

/// Looks at everything a run needs.
pub fn diagnose() -> Diagnosis {
    let mut checks = vec![guest_check(&paths::default_guest())];
    let local = probe::probe();
    let qemu = appliance::qemu_available();
    let kernel = paths::appliance_kernel_dir().join("vmlinux");
    let local_ok = local.is_ok();
    checks.push(Check {
        what: "local KVM",
        state: if local_ok { State::Ok } else { State::Absent },
        detail: match &local {
            Ok(()) => format!("{} runs 32-bit PAE guests", probe::kvm_module()),
            Err(why) => why.to_string(),
        },
    });
    // QEMU-hosted runs need QEMU and the appliance's kernel; where the local
    // KVM runs the guest they are optional.
    let needed = |ok: bool| match (ok, local_ok) {
        (true, _) => State::Ok,
        (false, true) => State::Absent,
        (false, false) => State::Missing,
    };
    checks.push(Check {
        what: "QEMU",
        state: needed(qemu.is_ok()),
        detail: match &qemu {
            Ok(()) => format!("{} on PATH", appliance::QEMU),
            Err(e) => e.to_string(),
        },
    });
    checks.push(Check {
        what: "appliance kernel",
        state: needed(kernel.is_file()),
        detail: if kernel.is_file() {
            kernel.display().to_string()
        } else {
            format!("{} is missing (scripts/setup.sh fetches it)", kernel.display())
        },
    });
    // The binary the appliance carries: the slim one beside us, else ourselves.
    if let Ok(bin) = paths::appliance_binary() {
        let slim = bin.file_name().is_some_and(|n| n == "vmm-appliance");
        checks.push(Check {
            what: "appliance binary",
            state: if qemu.is_ok() { State::Ok } else { State::Absent },
            detail: if slim {
                bin.display().to_string()
            } else {
                "this binary (no vmm-appliance beside it: the appliance carries the benchmark too)".to_owned()
            },
        });
    }
    let runs = platform::resolve(HostMode::Auto).map_err(|e| e.to_string());
    Diagnosis { checks, runs }
}

/// The report, one line per check, and how a run would go when it can.
pub fn render(d: &Diagnosis) -> String {
    let mut s = format!("vmm {}\n", crate::VERSION);
    for c in &d.checks {
        let tag = match c.state {
            State::Ok => "ok",
            State::Absent => "--",
            State::Missing => "MISSING",
        };
        s += &format!("{tag:<8} {:<17} {}\n", c.what, c.detail);
    }
    if let (Ok((mode, why)), true) = (&d.runs, d.ready()) {
        s += &format!("ready: {}\n", platform::mode_line(*mode, why).trim_start_matches("vmm: "));
    }
    s
}

/// Why a run cannot go, when it cannot.
pub fn problem(d: &Diagnosis) -> Option<String> {
    let missing: Vec<&str> = d.checks.iter().filter(|c| c.state == State::Missing).map(|c| c.what).collect();
    match (&d.runs, missing.is_empty()) {
        (Ok(_), true) => None,
        (Ok(_), false) => Some(format!("not ready: missing {} (see above)", missing.join(", "))),
        (Err(why), true) => Some(format!("not ready: {why}")),
        (Err(why), false) => Some(format!("not ready: missing {} (see above); {why}", missing.join(", "))),
    }
}
