//! A cell that boots a stock Linux instead of our guest: Debian's 686-pae
//! kernel under `vmm run --linux`, with highpte-probe (guest/linux-probe) in
//! a busybox initramfs the benchmark makes. The real-Linux control of the
//! highpte claims (4 and 5): the same emulated hardware and VMM, real Linux
//! in place of our reproduction.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vmm::platform::{initramfs, paths};

/// Where Linux keeps user pte pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserPte {
    /// In highmem, mapped with kmaps when touched (CONFIG_HIGHPTE, Debian's default).
    Highpte,
    /// In lowmem (`userpte=nohigh`): no kmap.
    Nohigh,
}

impl UserPte {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserPte::Highpte => "highpte",
            UserPte::Nohigh => "nohigh",
        }
    }
}

/// highpte-probe's timing mode: faults, teardown, fork and exit over pte pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PteCostProbe {
    /// Pte pages of the sparse region (one pte each).
    pub sparse_pte_pages: u32,
    /// Full pte pages forked and torn down.
    pub dense_pte_pages: u32,
    pub rounds: u32,
}

/// highpte-probe's lowmem mode: tasks that each fill pte pages, and what
/// they take of lowmem; with more tasks than fit, where the cap is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowmemProbe {
    pub tasks: u32,
    pub pte_pages: u32,
}

/// What a Linux cell boots and runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxCell {
    pub userpte: UserPte,
    /// `vmalloc=` in MiB: a larger vmalloc area, a smaller lowmem (with
    /// `nokaslr`, which so small a lowmem needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmalloc_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pte_cost: Option<PteCostProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowmem: Option<LowmemProbe>,
}

impl LinuxCell {
    /// What is wrong with it, if anything.
    pub fn check(&self) -> Result<(), String> {
        let range = |what: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} {v} is not in {lo}..={hi}"))
            }
        };
        if self.pte_cost.is_none() && self.lowmem.is_none() {
            return Err("a Linux cell runs pte_cost, lowmem or both".into());
        }
        if let Some(p) = self.pte_cost {
            range("pte_cost.sparse_pte_pages", p.sparse_pte_pages, 1, 4096)?;
            range("pte_cost.dense_pte_pages", p.dense_pte_pages, 1, 1024)?;
            range("pte_cost.rounds", p.rounds, 1, 64)?;
        }
        if let Some(l) = self.lowmem {
            range("lowmem.tasks", l.tasks, 1, 8192)?;
            range("lowmem.pte_pages", l.pte_pages, 1, 1024)?;
        }
        if let Some(v) = self.vmalloc_mib {
            range("vmalloc_mib", v, 128, 2048)?;
        }
        Ok(())
    }

    /// The parameters as the cell's key and the report print them.
    pub fn config(&self) -> Vec<(&'static str, String)> {
        let mut c = vec![("userpte", self.userpte.as_str().to_owned())];
        if let Some(v) = self.vmalloc_mib {
            c.push(("vmalloc", format!("{v}M")));
        }
        if let Some(p) = self.pte_cost {
            c.push(("pte_cost", format!("{}/{}/{}", p.sparse_pte_pages, p.dense_pte_pages, p.rounds)));
        }
        if let Some(l) = self.lowmem {
            c.push(("lowmem", format!("{}x{}", l.tasks, l.pte_pages)));
        }
        c
    }

    /// Linux's command line beyond what `vmm run --linux` always gives.
    pub fn cmdline(&self) -> String {
        let mut c = "quiet rdinit=/init".to_owned();
        if self.userpte == UserPte::Nohigh {
            c += " userpte=nohigh";
        }
        if let Some(v) = self.vmalloc_mib {
            // 32-bit KASLR may put the kernel above so small a lowmem.
            let _ = write!(c, " nokaslr vmalloc={v}M");
        }
        c
    }

    /// The init script: what the probe runs, then a reboot (status 0).
    pub fn script(&self) -> String {
        let mut s = String::from("echo \"vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)\"\n");
        s += "grep -E 'LowTotal|HighTotal' /proc/meminfo\n";
        // Each OOM kill would list every task on the console.
        s += "echo 0 > /proc/sys/vm/oom_dump_tasks\n";
        if let Some(p) = self.pte_cost {
            let _ = writeln!(s, "highpte-probe {} {} {}", p.sparse_pte_pages, p.dense_pte_pages, p.rounds);
        }
        if let Some(l) = self.lowmem {
            let _ = writeln!(s, "highpte-probe lowmem {} {}", l.tasks, l.pte_pages);
        }
        s += "grep AnonHugePages /proc/meminfo\nreboot -f\n";
        s
    }

    /// Where the benchmark keeps this cell's initramfs (one per script).
    pub fn initrd(&self) -> PathBuf {
        paths::appliance_cache_dir().join(format!("linux/bench-{:016x}.cpio", fnv1a(self.script().as_bytes())))
    }

    /// Makes the initramfs from the installed busybox and highpte-probe;
    /// the kernel must be there too.
    pub fn prepare(&self) -> Result<(), initramfs::Error> {
        let kernel = kernel();
        if !kernel.is_file() {
            return Err(initramfs::Error::Input(kernel, std::io::ErrorKind::NotFound.into()));
        }
        let probe = paths::linux_file("highpte-probe");
        initramfs::write(&self.initrd(), &paths::linux_file("busybox"), &[&probe], &self.script())
    }
}

/// The Linux kernel the cells boot.
pub fn kernel() -> PathBuf {
    paths::linux_file("vmlinuz")
}

/// 64-bit FNV-1a: a stable name for a script's archive.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> LinuxCell {
        LinuxCell {
            userpte: UserPte::Nohigh,
            vmalloc_mib: Some(900),
            pte_cost: Some(PteCostProbe { sparse_pte_pages: 64, dense_pte_pages: 16, rounds: 5 }),
            lowmem: Some(LowmemProbe { tasks: 16, pte_pages: 16 }),
        }
    }

    #[test]
    fn a_cell_says_what_linux_boots_with_and_what_the_probe_runs() {
        let c = cell();
        assert_eq!(c.cmdline(), "quiet rdinit=/init userpte=nohigh nokaslr vmalloc=900M");
        let s = c.script();
        assert!(s.contains("highpte-probe 64 16 5\nhighpte-probe lowmem 16 16\n"), "{s}");
        assert!(s.ends_with("reboot -f\n"));
        let high = LinuxCell { userpte: UserPte::Highpte, vmalloc_mib: None, lowmem: None, ..c };
        assert_eq!(high.cmdline(), "quiet rdinit=/init");
        assert!(!high.script().contains("lowmem"));
        // One archive per script.
        assert_ne!(c.initrd(), high.initrd());
        assert_eq!(c.initrd(), cell().initrd());
    }

    #[test]
    fn bad_cells_say_what_is_out_of_range() {
        assert!(cell().check().is_ok());
        let none = LinuxCell { pte_cost: None, lowmem: None, ..cell() };
        assert!(none.check().unwrap_err().contains("pte_cost, lowmem"));
        let many = LinuxCell { lowmem: Some(LowmemProbe { tasks: 9000, pte_pages: 16 }), ..cell() };
        assert!(many.check().unwrap_err().contains("lowmem.tasks 9000"));
        let rounds =
            LinuxCell { pte_cost: Some(PteCostProbe { sparse_pte_pages: 1, dense_pte_pages: 1, rounds: 0 }), ..cell() };
        assert!(rounds.check().unwrap_err().contains("rounds 0"));
        let text = r#"{"userpte": "nohigh", "lowmem": {"tasks": 4, "pte_pages": 2}, "vmalloc": 900}"#;
        assert!(serde_json::from_str::<LinuxCell>(text).unwrap_err().to_string().contains("vmalloc"));
    }
}
