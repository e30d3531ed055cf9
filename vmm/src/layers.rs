//! The layers, as tests: which crate of the workspace may depend on which
//! (`cargo metadata`), and which module of the `vmm` crate may import which.
//! An import not listed here fails them, so a new upward import is a decision
//! made in this file, not an accident. There is no known exception left:
//! any new one goes in `KNOWN`, and must be real.
//!
//! `report` holds the run's record types (an outcome, a vCPU's exits and
//! registers): the kvm layer's threads end with them, so it lies below kvm.
//! The kvm layer hands exits up through its own trait (`kvm::vcpu::Exits`),
//! which the hypervisor implements; `machine` puts a run of our guest
//! together.
//!
//! The `pvmmu` crate counts as three layers below every module here but
//! kvm's view of it: its `guest_memory` (guest RAM and the ABI's structures
//! in it) and `protection` (the record of write-protecting tables, which
//! kvm/write_protect.rs fills) lie below kvm; the rest, the PV MMU's
//! semantics, above it.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each top-level module and the modules it may import, lowest first.
    const ALLOWED: &[(&str, &[&str])] = &[
        // The pvmmu crate's layers: guest memory, the record of what
        // protecting the tables cost (which the kvm layer fills), the rest.
        ("guest_memory", &[]),
        ("protection", &[]),
        ("pvmmu", &["guest_memory", "protection"]),
        ("report", &["pvmmu"]),
        ("kvm", &["guest_memory", "protection", "report"]),
        ("hypervisor", &["guest_memory", "protection", "pvmmu", "kvm", "report"]),
        // The gdb stub: gdb's protocol over the kvm layer's debugger.
        ("gdb", &["kvm"]),
        ("machine", &["guest_memory", "pvmmu", "kvm", "hypervisor", "report", "gdb"]),
        // A stock Linux on the same KVM layer: its devices, no PV MMU.
        ("linux", &["guest_memory", "kvm", "report", "gdb"]),
        ("platform", &["kvm", "report"]),
        ("args", &["platform", "report"]),
        ("run", &["guest_memory", "args", "platform", "kvm", "machine", "linux", "pvmmu", "report", "gdb"]),
        ("contract", &["args", "platform", "kvm", "pvmmu", "report", "run"]),
        ("doctor", &["contract", "platform", "kvm"]),
        ("layers", &[]),
        ("lib", &[]),
        // The slim binary names the library as `vmm::`, never `crate::`.
        ("bin", &[]),
    ];

    /// Imports that run up or across a layer, kept until issue 22 moves them.
    const KNOWN: &[(&str, &str)] = &[];

    /// The lower crate's layers as paths name them: `pvmmu::guest_memory`
    /// first, since `pvmmu::` also matches it.
    const CRATE_LAYERS: &[(&str, &str)] =
        &[("pvmmu::guest_memory", "guest_memory"), ("pvmmu::protection", "protection"), ("pvmmu::", "pvmmu")];

    /// `crate::X` (and the pvmmu crate's layers) in every source file, by the
    /// top-level module it lies in.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        walk(&src, &mut files);
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            if rel == Path::new("layers.rs") {
                continue; // its own text names modules in examples
            }
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&f).unwrap();
            let set = g.entry(top.clone()).or_default();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if name == "{" || name.is_empty() {
                    continue;
                }
                if name != top {
                    set.insert(name);
                }
            }
            // The pvmmu crate: `pvmmu::guest_memory::..` or `pvmmu::..`, and
            // each name of `use pvmmu::{..}`.
            for (i, _) in text.match_indices("pvmmu::") {
                let at = &text[i..];
                let from_crate = text[..i].ends_with("crate::") || text[..i].ends_with("::");
                if from_crate {
                    continue;
                }
                let layer = CRATE_LAYERS.iter().find(|(p, _)| at.starts_with(p)).map(|(_, l)| *l).unwrap();
                if let Some(inner) = at.strip_prefix("pvmmu::{") {
                    for item in inner[..inner.find('}').unwrap_or(0)].split(',') {
                        let item = item.trim();
                        let layer = ["guest_memory", "protection"].into_iter().find(|l| item.starts_with(l));
                        set.insert(layer.unwrap_or("pvmmu").to_owned());
                    }
                } else {
                    set.insert(layer.to_owned());
                }
            }
            // `use crate::{a, b::c}`: each name in the braces.
            let mut rest = text.as_str();
            while let Some(at) = rest.find("use crate::{") {
                rest = &rest[at + "use crate::{".len()..];
                let inner = &rest[..rest.find('}').unwrap_or(0)];
                for item in inner.split(',') {
                    let name: String =
                        item.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() && name != top && name != "self" {
                        set.insert(name);
                    }
                }
            }
        }
        g
    }

    #[test]
    fn no_module_imports_what_its_layer_may_not() {
        let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
        let mut bad = vec![];
        for (module, used) in imports() {
            let Some(may) = allowed.get(module.as_str()) else {
                bad.push(format!("{module}: a new top-level module, not in layers.rs's ALLOWED"));
                continue;
            };
            for u in used {
                let known = KNOWN.contains(&(module.as_str(), u.as_str()));
                if !may.contains(&u.as_str()) && !known {
                    bad.push(format!("{module} imports {u}"));
                }
            }
        }
        assert!(bad.is_empty(), "imports outside the layers (vmm/src/layers.rs): {bad:?}");
    }

    /// The allowed imports, the known exceptions aside, have no cycle, and
    /// every known exception is still there (one that is gone must leave the
    /// list, so the list never hides a new one).
    #[test]
    fn the_allowed_imports_have_no_cycle_and_every_exception_is_still_real() {
        let order: Vec<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
        let pos = |m: &str| order.iter().position(|x| *x == m).unwrap_or_else(|| panic!("{m} is not listed"));
        let mut edges: Vec<(&str, &str)> = vec![];
        for (m, may) in ALLOWED {
            edges.extend(may.iter().map(|u| (*m, *u)));
        }
        // Depth-first search for a cycle.
        fn reaches<'a>(from: &'a str, to: &str, edges: &[(&'a str, &'a str)], seen: &mut Vec<&'a str>) -> bool {
            if from == to {
                return true;
            }
            if seen.contains(&from) {
                return false;
            }
            seen.push(from);
            edges.iter().filter(|(a, _)| *a == from).any(|(_, b)| reaches(b, to, edges, seen))
        }
        for &(a, b) in &edges {
            assert!(!reaches(b, a, &edges, &mut vec![]), "{a} -> {b} closes a cycle");
            let _ = pos(b);
        }
        let g = imports();
        for (m, u) in KNOWN {
            assert!(g.get(*m).is_some_and(|s| s.contains(*u)), "{m} -> {u} is gone: drop it from KNOWN");
        }
    }

    /// Each crate of the workspace and the workspace crates it may depend
    /// on, lowest first; the guest's own crates aside.
    const CRATES: &[(&str, &[&str])] = &[
        ("shared", &[]),
        ("pvmmu", &["shared"]),
        ("vmm", &["shared", "pvmmu"]),
        ("vmm-bench", &["shared", "vmm"]),
        ("vmm-cli", &["shared", "vmm", "vmm-bench"]),
        ("nosleep", &[]),
        ("vmspace", &[]),
    ];
    /// What the PV MMU may stand on: guest memory and the ABI, no KVM.
    const PVMMU_DEPS: &[&str] = &["log", "serde", "shared", "thiserror", "vm-memory"];
    /// What must stay out of the appliance's binary (built from `vmm` alone).
    const NOT_IN_VMM: &[&str] = &["csv", "indicatif", "plotters", "clap_complete", "clap_mangen"];

    /// The crates' dependency graph as `cargo metadata` reads the manifests:
    /// every crate's workspace dependencies are the ones [`CRATES`] allows,
    /// the PV MMU stands on [`PVMMU_DEPS`] alone, and the benchmark's and the
    /// manual's crates stay out of `vmm`.
    #[test]
    fn the_crates_depend_only_downwards() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
            .current_dir(root)
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let allowed: BTreeMap<&str, &[&str]> = CRATES.iter().copied().collect();
        let members: BTreeSet<&str> = CRATES.iter().map(|(c, _)| *c).collect();
        let mut bad = vec![];
        for p in m["packages"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let Some(may) = allowed.get(name) else {
                bad.push(format!("{name}: a new crate, not in layers.rs's CRATES"));
                continue;
            };
            // Normal and build dependencies; tests may use what they like.
            let deps: Vec<&str> = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap())
                .collect();
            for d in &deps {
                if members.contains(d) && !may.contains(d) {
                    bad.push(format!("{name} depends on {d}"));
                }
                if name == "pvmmu" && !PVMMU_DEPS.contains(d) {
                    bad.push(format!("pvmmu depends on {d} (it may stand on {PVMMU_DEPS:?})"));
                }
                if name == "vmm" && NOT_IN_VMM.contains(d) {
                    bad.push(format!("vmm depends on {d}, which would go into the appliance's binary"));
                }
            }
        }
        assert!(bad.is_empty(), "crates outside the layers (vmm/src/layers.rs): {bad:?}");
        // The listed order is a layering: nothing depends on a crate listed after it.
        for (i, (c, may)) in CRATES.iter().enumerate() {
            for d in *may {
                assert!(CRATES[..i].iter().any(|(x, _)| x == d), "{c} -> {d} runs up the list");
            }
        }
    }
}
