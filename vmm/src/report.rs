//! The run report: how the run ended, its timings, exits, hypercalls, the guest's
//! results and counters. Printed with `--stats`, written as JSON with `--json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::abi::{exception_name, FaultReport};
use shared::config::Config;
use shared::counters::{Counter, PerCpuCounters};

/// Exit status of `vmm` for each way a run can end (documented in docs/abi.md).
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    /// The guest shut down with a non-zero status: one of its checks failed.
    pub const GUEST_FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The guest took an unexpected exception, panicked, or triple-faulted.
    pub const GUEST_FAULT: i32 = 3;
    /// The watchdog stopped a guest that did not finish in time.
    pub const TIMEOUT: i32 = 4;
    /// The host could not run the guest (no KVM, bad image, bad size, QEMU failed).
    pub const HOST_ERROR: i32 = 5;
    /// The guest broke the hypercall or PV MMU contract.
    pub const VIOLATION: i32 = 6;
}

/// A vCPU's state when it stopped.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VcpuSnapshot {
    pub vcpu: u32,
    pub eip: u32,
    pub esp: u32,
    pub eflags: u32,
    pub cr0: u32,
    pub cr2: u32,
    pub cr3: u32,
}

/// A vCPU that shut down, with what the host still knows of it: on SVM KVM
/// resets a vCPU after a shutdown, so its registers are usually lost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TripleFault {
    #[serde(flatten)]
    pub at: VcpuSnapshot,
    /// The registers are the reset state (cr0 0x10, eip 0xfff0), not the fault's.
    #[serde(default)]
    pub registers_lost: bool,
    /// The vCPU's last hypercall and its result, e.g. "mmuext_op: OK".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hypercall: Option<String>,
    /// The root the vCPU announced last (`--pvmmu on`) and whether it is still
    /// a validated L3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_root: Option<String>,
}

impl TripleFault {
    pub fn new(at: VcpuSnapshot) -> Self {
        TripleFault { at, registers_lost: at.cr0 == 0x10 && at.eip == 0xfff0, ..Default::default() }
    }
}

/// What the guest told us about a fatal exception or panic.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FaultInfo {
    pub vcpu: u32,
    pub vector: u32,
    pub name: String,
    pub message: String,
    pub eip: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub error_code: u32,
    pub eflags: u32,
    pub regs: BTreeMap<String, u32>,
}

impl From<&FaultReport> for FaultInfo {
    fn from(r: &FaultReport) -> Self {
        let regs = [
            ("eax", r.eax),
            ("ebx", r.ebx),
            ("ecx", r.ecx),
            ("edx", r.edx),
            ("esi", r.esi),
            ("edi", r.edi),
            ("ebp", r.ebp),
            ("esp", r.esp),
            ("cs", r.cs),
        ];
        FaultInfo {
            vcpu: r.cpu,
            vector: r.vector,
            name: exception_name(r.vector).to_owned(),
            message: r.message().to_owned(),
            eip: r.eip,
            cr2: r.cr2,
            cr3: r.cr3,
            error_code: r.error_code,
            eflags: r.eflags,
            regs: regs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The guest asked to stop.
    Shutdown { code: u32 },
    /// The guest reported an exception it did not expect, or a panic.
    GuestFault(FaultInfo),
    /// The vCPU shut down (an exception while delivering a double fault).
    TripleFault(TripleFault),
    /// The guest broke a rule of the host's contract.
    Violation { vcpu: u32, rule: pvmmu::Rule, detail: String },
    /// The watchdog fired.
    Timeout {
        after_s: f64,
        vcpus: Vec<VcpuSnapshot>,
        /// vCPUs that had not come back from a host call a grace period after
        /// the watchdog fired: left behind, their state unknown.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stuck_in_host: Vec<u32>,
    },
    /// The VMM failed.
    VmmError { message: String },
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Shutdown { code: 0 } => exit_code::SUCCESS,
            Outcome::Shutdown { .. } => exit_code::GUEST_FAILED,
            Outcome::GuestFault(_) | Outcome::TripleFault(_) => exit_code::GUEST_FAULT,
            Outcome::Violation { .. } => exit_code::VIOLATION,
            Outcome::Timeout { .. } => exit_code::TIMEOUT,
            Outcome::VmmError { .. } => exit_code::HOST_ERROR,
        }
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Shutdown { code: 0 } => "guest shut down: success".to_owned(),
            Outcome::Shutdown { code } => format!("guest shut down with status {code}: a check failed"),
            Outcome::GuestFault(f) if f.vector == FaultReport::PANIC => {
                format!("guest panic on vCPU {}: {}", f.vcpu, f.message)
            }
            Outcome::GuestFault(f) => format!(
                "guest fault on vCPU {}: {} at eip={:#010x} cr2={:#010x} error={:#x} ({})",
                f.vcpu, f.name, f.eip, f.cr2, f.error_code, f.message
            ),
            Outcome::TripleFault(t) => {
                let mut m = if t.registers_lost {
                    format!("guest triple fault on vCPU {} (registers lost: KVM on SVM resets the vCPU)", t.at.vcpu)
                } else {
                    format!(
                        "guest triple fault on vCPU {} at eip={:#010x} cr2={:#010x} cr3={:#010x}",
                        t.at.vcpu, t.at.eip, t.at.cr2, t.at.cr3
                    )
                };
                if let Some(h) = &t.last_hypercall {
                    m += &format!("; last hypercall {h}");
                }
                if let Some(r) = &t.last_root {
                    m += &format!("; last root {r}");
                }
                m
            }
            Outcome::Violation { vcpu, rule, detail } => match rule.clause() {
                Some(c) if c.id == rule.name() => {
                    format!("guest broke the contract on vCPU {vcpu}: {rule} ({}): {detail}", c.title)
                }
                Some(c) => format!("guest broke the contract on vCPU {vcpu}: {rule} ({}: {}): {detail}", c.id, c.title),
                None => format!("guest broke the contract on vCPU {vcpu}: {rule}: {detail}"),
            },
            Outcome::Timeout { after_s, vcpus, stuck_in_host } => {
                let mut at: Vec<String> =
                    vcpus.iter().map(|s| format!("vCPU {} at eip={:#010x}", s.vcpu, s.eip)).collect();
                at.extend(stuck_in_host.iter().map(|v| format!("vCPU {v} stuck in a host call, left behind")));
                format!("guest timeout: stopped by the watchdog after {after_s:.1} s ({})", at.join(", "))
            }
            Outcome::VmmError { message } => format!("vmm failed: {message}"),
        }
    }
}

/// Exits one vCPU took to user space, by kind.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitCounts {
    pub hypercall: u64,
    pub nop_exit: u64,
    pub other_io: u64,
    pub mmio: u64,
    pub hlt: u64,
    pub intr: u64,
    pub shutdown: u64,
    /// Debug exits (a step, a hardware breakpoint: only under `--gdb`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub debug: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A point of the boot, as the host saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MilestoneRecord {
    pub name: String,
    pub arg: u32,
    pub vcpu: u32,
    /// Milliseconds since `vmm` started.
    pub ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    /// `vmm` start to the guest's main function.
    pub to_main_ms: Option<f64>,
    /// `vmm` start to the guest's shutdown (or the end of the run).
    pub to_end_ms: f64,
    pub milestones: Vec<MilestoneRecord>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VcpuExits {
    pub vcpu: u32,
    /// Exits to the VMM.
    pub user: ExitCounts,
    /// Every exit KVM counted (KVM_GET_STATS_FD), including those it handled itself.
    pub kvm: BTreeMap<String, u64>,
}

/// How the VMM was run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    /// `local` or `qemu`.
    pub mode: String,
    pub reason: String,
    /// For QEMU-hosted runs: milliseconds from starting QEMU until the appliance
    /// was ready to run `vmm` (kvm_amd loaded).
    pub appliance_boot_ms: Option<f64>,
    /// For QEMU-hosted runs: milliseconds from the outer `vmm`'s start to the end.
    pub total_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub vmm_version: String,
    pub kernel: String,
    pub host: HostInfo,
    pub vcpus: u32,
    pub mem_bytes: u64,
    pub config: BTreeMap<String, String>,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub timing: Timing,
    pub exits: Vec<VcpuExits>,
    /// Hypercall name -> result code name -> count.
    pub hypercalls: BTreeMap<String, BTreeMap<String, u64>>,
    /// What the host's PV MMU did: requests applied and refused (by rule), pins,
    /// alias checks and their host time, traps back, frames by type at the end.
    #[serde(default)]
    pub pvmmu: Option<pvmmu::PvMmuReport>,
    /// Figures the guest measured, by name.
    pub results: BTreeMap<String, u64>,
    /// The guest's per-CPU counters (non-zero ones), and their sums.
    pub counters: Vec<BTreeMap<String, u64>>,
    pub counter_totals: BTreeMap<String, u64>,
    /// Set (QEMU-hosted only) when the outcome bears the fingerprint of the
    /// emulator's known fault rather than the guest's: see docs/qemu-hosted.md.
    #[serde(default)]
    pub emulator_fault: Option<String>,
}

/// The configuration as `key -> value` text.
pub fn config_map(config: &Config) -> BTreeMap<String, String> {
    Config::PARAMS.iter().filter_map(|p| config.get(p.key).map(|v| (p.key.to_owned(), v.to_string()))).collect()
}

/// Named, non-zero counters of each CPU and their totals.
pub fn counter_maps(per_cpu: &[PerCpuCounters]) -> (Vec<BTreeMap<String, u64>>, BTreeMap<String, u64>) {
    let mut totals = BTreeMap::new();
    let maps = per_cpu
        .iter()
        .map(|c| {
            Counter::ALL
                .iter()
                .filter(|k| c.get(**k) != 0)
                .map(|k| {
                    // The guest writes these: a total saturates rather than wraps.
                    let t = totals.entry(k.name().to_owned()).or_insert(0u64);
                    *t = t.saturating_add(c.get(*k));
                    (k.name().to_owned(), c.get(*k))
                })
                .collect()
        })
        .collect();
    (maps, totals)
}

impl RunReport {
    /// A report that says only how the run ended (no counters, no timing).
    pub fn of_outcome(outcome: Outcome) -> RunReport {
        RunReport {
            vmm_version: String::new(),
            kernel: String::new(),
            host: HostInfo::default(),
            vcpus: 0,
            mem_bytes: 0,
            config: BTreeMap::new(),
            exit_code: outcome.exit_code(),
            outcome,
            timing: Timing::default(),
            exits: vec![],
            hypercalls: BTreeMap::new(),
            pvmmu: None,
            results: BTreeMap::new(),
            counters: vec![],
            counter_totals: BTreeMap::new(),
            emulator_fault: None,
        }
    }

    /// A human-readable summary (`--stats`).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "== run report ==");
        let _ = writeln!(s, "host:      {} ({})", self.host.mode, self.host.reason);
        if let Some(b) = self.host.appliance_boot_ms {
            let _ =
                writeln!(s, "appliance: ready after {b:.0} ms, whole run {:.0} ms", self.host.total_ms.unwrap_or(0.0));
        }
        let _ = writeln!(s, "guest:     {} vCPUs, {} MiB, {}", self.vcpus, self.mem_bytes >> 20, self.kernel);
        let cfg: Vec<String> = self.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "config:    {}", cfg.join(" "));
        let _ = writeln!(s, "outcome:   {}", self.outcome.describe());
        if let Some(e) = &self.emulator_fault {
            let _ = writeln!(s, "note:      {e}");
        }
        match self.timing.to_main_ms {
            Some(m) => {
                let _ = writeln!(s, "timing:    guest main at {m:.1} ms, end at {:.1} ms", self.timing.to_end_ms);
            }
            None => {
                let _ = writeln!(s, "timing:    guest never reached main; end at {:.1} ms", self.timing.to_end_ms);
            }
        }
        for e in &self.exits {
            let k = |n: &str| e.kvm.get(n).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "vCPU {}:    exits to vmm: {} hypercall, {} nop, {} other io, {} mmio | in KVM: {} exits, {} io, {} halt, {} irq",
                e.vcpu,
                e.user.hypercall,
                e.user.nop_exit,
                e.user.other_io,
                e.user.mmio,
                k("exits"),
                k("io_exits"),
                k("halt_exits"),
                k("irq_exits")
            );
        }
        for (name, rcs) in &self.hypercalls {
            let r: Vec<String> = rcs.iter().map(|(rc, n)| format!("{rc}:{n}")).collect();
            let _ = writeln!(s, "hypercall: {name:<18} {}", r.join(" "));
        }
        for (name, v) in &self.results {
            let _ = writeln!(s, "result:    {name} = {v}");
        }
        for (i, c) in self.counters.iter().enumerate() {
            let v: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "cpu {i}:     {}", v.join(" "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A violation travels as its rule's report name (what `violation:<rule>`
    /// expectations match) and says which clause of the contract it broke.
    #[test]
    fn a_violation_names_its_rule_and_clause() {
        use pvmmu::Rule;
        let v = Outcome::Violation { vcpu: 1, rule: Rule::HostWrite, detail: "rc".into() };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!((json["kind"].as_str(), json["rule"].as_str()), (Some("violation"), Some("host write")));
        assert_eq!(serde_json::from_value::<Outcome>(json).unwrap(), v);
        let text = v.describe();
        assert!(text.contains("host write (H1: the host writes only where the guest could): rc"), "{text}");
        let v1 = Outcome::Violation { vcpu: 0, rule: Rule::V1, detail: "x".into() };
        assert!(v1.describe().contains(": V1 (the alias rule): x"), "{}", v1.describe());
        let bad = serde_json::json!({"kind": "violation", "vcpu": 0, "rule": "V9", "detail": ""});
        assert!(serde_json::from_value::<Outcome>(bad).is_err(), "an unknown rule is no violation");
    }

    #[test]
    fn counter_totals_saturate_instead_of_wrapping() {
        let mut a = PerCpuCounters::zeroed();
        a.v[Counter::PtPins as usize] = u64::MAX - 1;
        let mut b = PerCpuCounters::zeroed();
        b.v[Counter::PtPins as usize] = 5;
        let (maps, totals) = counter_maps(&[a, b]);
        assert_eq!(totals["pt_pins"], u64::MAX, "the guest's numbers cannot wrap the total to 3");
        assert_eq!((maps[0]["pt_pins"], maps[1]["pt_pins"]), (u64::MAX - 1, 5));
    }
}
