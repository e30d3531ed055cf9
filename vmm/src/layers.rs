//! The layers of the `vmm` crate, as a test: which module may import which.
//! An import not listed here fails it, so a new upward import is a decision
//! made in this file, not an accident. The known exceptions are debts of
//! issue 22: the kvm layer still builds the run report, calls the hypervisor
//! and fills the PV MMU's report of the tables' protection.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each top-level module and the modules it may import, lowest first.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("guest_memory", &[]),
        ("args", &["platform"]),
        ("pvmmu", &["guest_memory"]),
        ("kvm", &["guest_memory"]),
        ("report", &["pvmmu"]),
        ("hypervisor", &["guest_memory", "pvmmu", "kvm", "report"]),
        ("platform", &["kvm", "report"]),
        ("run", &["guest_memory", "args", "platform", "kvm", "pvmmu", "report"]),
        ("contract", &["cli", "platform", "kvm", "pvmmu", "report", "run"]),
        ("highpte_matrix", &["bench", "cli", "platform", "report", "run"]),
        ("bench", &["args", "platform", "report", "run"]),
        ("doctor", &["contract", "platform", "kvm"]),
        ("cli", &["args", "bench", "platform", "report"]),
        ("layers", &[]),
        ("main", &["args", "bench", "cli", "contract", "doctor", "highpte_matrix", "platform", "report", "run"]),
    ];

    /// Imports that run up or across a layer, kept until issue 22 moves them.
    const KNOWN: &[(&str, &str)] = &[("kvm", "hypervisor"), ("kvm", "report"), ("kvm", "pvmmu")];

    /// `crate::X` in every source file, by the top-level module it lies in.
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
}
