//! The contract runner (`vmm contract`), end to end: every scenario in the image
//! gets SUCCESS against the real host, and a host with a rule deliberately not
//! enforced (`--weaken`, test only) gets FAILURE for exactly the scenarios that
//! guard it.

mod common;

use common::{run, stderr};

/// (scenario, verdict) from `vmm contract`'s output lines.
fn verdicts(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, verdict) = (w.next()?, w.next()?);
            ["SUCCESS", "FAILURE", "ERROR", "SKIP", "CRASH"]
                .contains(&verdict)
                .then(|| (name.to_owned(), verdict.to_owned()))
        })
        .collect()
}

fn names() -> Vec<String> {
    common::guest();
    let o = run(&["contract", "--list"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned)).collect()
}

#[test]
fn every_scenario_succeeds_against_the_real_host() {
    let all = names();
    assert!(all.len() >= 20, "{all:?}");
    let tmp = std::env::temp_dir().join(format!("vmm-contract-{}", std::process::id()));
    let (tap, junit) = (tmp.with_extension("tap"), tmp.with_extension("xml"));
    let o = run(&["contract", "--tap", tap.to_str().unwrap(), "--junit", junit.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // TAP and JUnit say the same as the terminal, for other CIs to read.
    let tap_text = std::fs::read_to_string(&tap).unwrap_or_default();
    let mut tap_lines = tap_text.lines();
    assert_eq!(tap_lines.next(), Some("TAP version 13"), "{tap_text}");
    assert_eq!(tap_lines.next(), Some(format!("1..{}", all.len()).as_str()), "{tap_text}");
    let oks: Vec<String> = tap_lines.map(str::to_owned).collect();
    let want: Vec<String> = all.iter().enumerate().map(|(i, n)| format!("ok {} - {n}", i + 1)).collect();
    assert_eq!(oks, want, "{tap_text}");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    let head = format!("<testsuites tests=\"{}\" failures=\"0\" errors=\"0\" skipped=\"0\"", all.len());
    assert!(xml.contains(&head), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), all.len(), "{xml}");
    let _ = (std::fs::remove_file(&tap), std::fs::remove_file(&junit));
    let v = verdicts(&out);
    assert_eq!(v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), all, "{out}");
    let bad: Vec<_> = v.iter().filter(|(_, v)| v != "SUCCESS").collect();
    assert!(bad.is_empty(), "{bad:?}\n{out}\n{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains(&format!("contract: {} scenarios: {} SUCCESS", all.len(), all.len())), "{out}");
}

/// Each weakened host against every scenario: exactly those that guard the
/// rule (directly, or by leaning on it) fail, and every other succeeds, so a
/// scenario that stopped checking its rule, or one that breaks under an
/// unrelated rule, shows here. Under `t4` the lazy-alias scenarios probe the
/// pin with a second one, which that host takes; the kernel's later unpin
/// leaves the page a table, and the kernel stops (CRASH). A host without the
/// dirty log (`--host-write-watch memslot`, a real mode, not a weakening) misses
/// exactly the direct writes to L3s, which no read-only memslot covers.
#[test]
fn a_weakened_host_fails_exactly_the_scenarios_that_guard_the_rule() {
    let all = names();
    let lazy: Vec<String> = all.iter().filter(|n| n.starts_with("lazy-alias-")).cloned().collect();
    assert_eq!(lazy.len(), 7, "{all:?}");
    // A host that keeps the references of a devalidated table (t2) refuses the
    // kernel's writes to the tables its exit let go of: the kernel stops.
    let fork: Vec<String> = all.iter().filter(|n| n.starts_with("fork-pin-")).cloned().collect();
    assert_eq!(fork.len(), 6, "{all:?}");
    // Every direct write to a table: what a host that neither revokes write
    // access (t3) nor reports what it sees (direct-write) lets through.
    let direct_writes = [
        "direct-write-assist",
        "direct-write-no-assist",
        "direct-write-l3",
        "direct-write-l3-bit6",
        "direct-write-l3-assist",
    ];
    for (weaken, failing, crashing) in [
        ("t1", &["t1-bad-type", "v5-l3-entries", "new-baseptr-rules", "direct-write-l3-assist"][..], &[][..]),
        (
            "t2",
            &["t2-validation-references", "t1-bad-type"][..],
            &fork.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ),
        ("t3", &direct_writes[..], &[][..]),
        (
            "t4",
            &["t4-pins-not-counted", "t1-bad-type", "batch-partial-failure", "multicall-independent"][..],
            &lazy.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ),
        ("v1", &["v1-writable-pagetable", "update-va-mapping"][..], &[][..]),
        ("v3", &["v3-cache-and-global-bits", "t2-validation-references", "batch-partial-failure"][..], &[][..]),
        ("v4", &["v4-l2-entries"][..], &[][..]),
        ("v5", &["v5-l3-entries", "v5-l3-above-4g", "new-baseptr-rules"][..], &[][..]),
        ("v6", &["v6-frames-outside-ram"][..], &[][..]),
        ("v7", &["v7-bad-addresses"][..], &[][..]),
        (
            "trap-back",
            &["trap-back", "trap-back-fixup-fails", "trap-back-readonly-stack", "lazy-alias-host-trap"][..],
            &[][..],
        ),
        ("direct-write", &direct_writes[..], &[][..]),
        (
            "--host-write-watch memslot",
            &["direct-write-l3", "direct-write-l3-bit6", "direct-write-l3-assist"][..],
            &[][..],
        ),
        ("cr3-slot", &["cr3-pdpt-slot"][..], &[][..]),
        ("untyped-write", &["mmu-update-untyped"][..], &[][..]),
        ("stack-walk", &[][..], &["trap-back-readonly-stack"][..]),
        ("budget", &["exit-budget", "exit-budget-tree"][..], &[][..]),
        ("host-write", &["block-in-pagetable", "multicall-results-in-pagetable"][..], &[][..]),
        ("l3-audit", &["direct-write-l3-tail"][..], &[][..]),
        ("l3-hardware-bits", &["direct-write-l3-bit6"][..], &[][..]),
    ] {
        let tap = std::env::temp_dir().join(format!("vmm-contract-{}-{weaken}.tap", std::process::id()));
        let tap_arg = tap.to_str().unwrap().to_owned();
        let mut args = vec!["contract", "--tap", &tap_arg];
        match weaken.strip_prefix("--host-write-watch ") {
            Some(watch) => args.extend(["--host-write-watch", watch]),
            None => args.extend(["--weaken", weaken]),
        }
        let o = run(&args, &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let v = verdicts(&out);
        assert_eq!(v.len(), all.len(), "--weaken {weaken}\n{out}\n{}", stderr(&o));
        for (name, verdict) in &v {
            let want = if failing.contains(&name.as_str()) {
                "FAILURE"
            } else if crashing.contains(&name.as_str()) {
                "CRASH"
            } else {
                "SUCCESS"
            };
            assert_eq!(verdict, want, "--weaken {weaken}: {name}\n{out}");
        }
        // As xtf-runner: the worst verdict decides, a CRASH 6, a FAILURE 5.
        let status = if crashing.is_empty() { 5 } else { 6 };
        assert_eq!(o.status.code(), Some(status), "--weaken {weaken}: exit status\n{out}");
        // TAP fails the same scenarios, with the verdict after the '#'.
        let tap_text = std::fs::read_to_string(&tap).unwrap_or_default();
        let not_ok = tap_text.lines().filter(|l| l.starts_with("not ok ")).count();
        assert_eq!(not_ok, failing.len() + crashing.len(), "--weaken {weaken}\n{tap_text}");
        for name in failing {
            assert!(
                tap_text.lines().any(|l| l.starts_with("not ok ") && l.contains(&format!(" - {name} # FAILURE: "))),
                "{name}\n{tap_text}"
            );
        }
        let _ = std::fs::remove_file(&tap);
    }
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    common::guest();
    let o = run(&["contract", "no-such-scenario"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no contract scenario matches"), "{}", stderr(&o));
}

/// `--format` puts one machine-readable form on the standard output, for a CI
/// that reads a pipe: TAP (the same lines `--tap` writes), JUnit XML, or one
/// JSON line per scenario; the summary goes to the standard error. A weakened
/// host makes one FAILURE show in each.
#[test]
fn format_puts_tap_junit_or_json_on_the_standard_output() {
    common::guest();
    let filter = "v3-";
    let picked: Vec<String> = names().into_iter().filter(|n| n.contains(filter)).collect();
    assert!(!picked.is_empty());
    for format in ["tap", "junit", "json"] {
        let o = run(&["contract", "--format", format, "--weaken", "v3", filter], &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(5), "{format}: FAILURE's status\n{out}{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("contract: {} scenarios:", picked.len())), "{format}: {}", stderr(&o));
        assert!(!out.contains("contract:"), "{format}: the summary is not on stdout: {out}");
        match format {
            "tap" => {
                let mut lines = out.lines();
                assert_eq!(lines.next(), Some("TAP version 13"), "{out}");
                assert_eq!(lines.next(), Some(format!("1..{}", picked.len()).as_str()), "{out}");
                let rest: Vec<&str> = lines.collect();
                assert_eq!(rest.len(), picked.len(), "{out}");
                assert!(rest.iter().any(|l| l.starts_with("not ok ") && l.contains("# FAILURE")), "{out}");
            }
            "junit" => {
                assert!(out.starts_with("<?xml"), "{out}");
                assert_eq!(out.matches("<testcase ").count(), picked.len(), "{out}");
                assert!(out.contains("<failure"), "{out}");
            }
            _ => {
                let lines: Vec<serde_json::Value> =
                    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
                assert_eq!(lines.len(), picked.len(), "{out}");
                assert!(lines.iter().all(|l| picked.iter().any(|n| l["name"] == n.as_str())), "{out}");
                assert!(lines.iter().any(|l| l["verdict"] == "FAILURE"), "{out}");
            }
        }
    }
}
