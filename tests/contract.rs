//! The contract runner (`vmm contract`), end to end: every scenario in the image
//! gets SUCCESS against the real host, and a host with a rule deliberately not
//! enforced (`--weaken`, test only) gets FAILURE for the scenarios that guard it.

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
    let o = run(&["contract"], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = verdicts(&out);
    assert_eq!(v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), all, "{out}");
    let bad: Vec<_> = v.iter().filter(|(_, v)| v != "SUCCESS").collect();
    assert!(bad.is_empty(), "{bad:?}\n{out}\n{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains(&format!("contract: {} scenarios: {} SUCCESS", all.len(), all.len())), "{out}");
}

#[test]
fn a_weakened_host_fails_the_scenarios_that_guard_the_rule() {
    common::guest();
    for (weaken, filter, failing) in [
        ("v1", "v1-", &["v1-writable-pagetable"][..]),
        ("t4", "t4-", &["t4-pins-not-counted"][..]),
        ("v3", "v3-", &["v3-cache-and-global-bits"][..]),
        ("v4", "v4-", &["v4-l2-entries"][..]),
        ("v6", "v6-", &["v6-frames-outside-ram"][..]),
        ("t2", "t2-", &["t2-validation-references"][..]),
        ("v5", "v5-", &["v5-l3-entries", "v5-l3-above-4g"][..]),
        ("trap-back", "trap", &["trap-back", "trap-back-fixup-fails", "lazy-alias-host-trap"][..]),
        ("direct-write", "direct-write", &["direct-write-assist", "direct-write-no-assist"][..]),
    ] {
        let o = run(&["contract", "--weaken", weaken, filter], &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let v = verdicts(&out);
        assert!(!v.is_empty(), "{out}\n{}", stderr(&o));
        for (name, verdict) in &v {
            let want = if failing.contains(&name.as_str()) { "FAILURE" } else { "SUCCESS" };
            assert_eq!(verdict, want, "--weaken {weaken}: {name}\n{out}");
        }
        assert_eq!(o.status.code(), Some(1), "--weaken {weaken}: exit status\n{out}");
    }
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    common::guest();
    let o = run(&["contract", "no-such-scenario"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no contract scenario matches"), "{}", stderr(&o));
}
