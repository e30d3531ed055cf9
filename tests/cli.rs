//! Bad input gets one clear line and a non-zero exit, never a panic.

mod common;

use common::{run, stderr};

/// The error lines `vmm` printed.
fn errors(o: &std::process::Output) -> Vec<String> {
    stderr(o).lines().filter(|l| l.starts_with("vmm: error:")).map(str::to_owned).collect()
}

fn assert_one_error(o: &std::process::Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    let e = errors(o);
    assert_eq!(e.len(), 1, "exactly one error line: {}", stderr(o));
    assert!(e[0].contains(needle), "'{}' does not say '{needle}'", e[0]);
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

#[test]
fn impossible_memory_sizes_are_refused() {
    for mem in ["8m", "65g", "16777217"] {
        assert_one_error(&run(&["run", "--mem", mem], &[]), 5, "impossible memory size");
    }
    // Too large to be a number at all: a usage error, saying why.
    let o = run(&["run", "--mem", "100000000000g"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
}

#[test]
fn a_missing_kernel_is_named() {
    assert_one_error(&run(&["run", "--kernel", "/nonexistent/guest"], &[]), 5, "/nonexistent/guest not found");
}

#[test]
fn malformed_kernels_are_refused() {
    let dir = std::env::temp_dir().join(format!("vmm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("not-elf");
    std::fs::write(&text, "#!/bin/sh\necho this is not a kernel at all, nothing like one\n").unwrap();
    assert_one_error(&run(&["run", "--kernel", text.to_str().unwrap()], &[]), 5, "not an ELF file");
    // vmm itself is ELF64.
    assert_one_error(&run(&["run", "--kernel", common::vmm()], &[]), 5, "not ELF32");
    let short = dir.join("truncated");
    let g = std::fs::read(common::guest()).unwrap();
    std::fs::write(&short, &g[..60]).unwrap();
    assert_one_error(&run(&["run", "--kernel", short.to_str().unwrap()], &[]), 5, "malformed");
}

#[test]
fn no_kvm_and_no_qemu_means_no_way_to_run() {
    let empty = std::env::temp_dir();
    let env = [("VMM_KVM_DEV", "/nonexistent/kvm"), ("PATH", empty.to_str().unwrap())];
    let o = run(&["run"], &env);
    assert_one_error(&o, 5, "no way to run the guest");
    let e = errors(&o).remove(0);
    assert!(e.contains("no /nonexistent/kvm"), "{e}");
    assert!(e.contains("qemu-system-x86_64 is not installed"), "{e}");
}

#[test]
fn forcing_a_missing_kvm_says_so() {
    let o = run(&["run", "--host", "local"], &[("VMM_KVM_DEV", "/nonexistent/kvm")]);
    assert_one_error(&o, 5, "no /nonexistent/kvm on this machine");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["run", "--vcpus", "0"],
        vec!["run", "--vcpus", "9"],
        vec!["run", "--workload", "nope"],
        vec!["run", "--iterations", "-3"],
        vec!["run", "--host", "elsewhere"],
        vec!["frobnicate"],
    ] {
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn a_bad_timeout_is_refused() {
    // Every duration flag, at parse time: a usage error that says why, never a
    // panic of a watchdog later (-1, nan and 1e20 used to panic).
    let cmds: [&[&str]; 5] = [&["run"], &["batch", "jobs.json"], &["matrix"], &["contract"], &["bench", "--list"]];
    for cmd in cmds {
        for bad in ["0", "-1", "nan", "1e20"] {
            let mut args = cmd.to_vec();
            let flag = format!("--timeout={bad}");
            args.push(&flag);
            let o = run(&args, &[]);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("a duration must be above 0"), "{args:?}: {}", stderr(&o));
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        }
    }
}

#[test]
fn probe_tells_whether_the_local_kvm_runs_pae() {
    let o = run(&["probe"], &[]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    match o.status.code() {
        Some(0) => assert!(out.contains("runs 32-bit PAE guests") && err.is_empty(), "{out}{err}"),
        // A failure goes to stderr, as one error line.
        Some(5) => {
            assert!(out.is_empty(), "{out}");
            assert!(err.starts_with("vmm: error:") && err.trim_end().lines().count() == 1, "{err}");
            assert!(err.contains("cannot run a 32-bit PAE guest") || err.contains("kvm"), "{err}");
        }
        c => panic!("probe exited with {c:?}: {out}{err}"),
    }
}

#[test]
fn pin_cost_measures_every_host_check_and_refuses_absurd_sizes() {
    let json = std::env::temp_dir().join(format!("vmm-pin-cost-{}.jsonl", std::process::id()));
    let o = run(&["pin-cost", "--aliases", "0,600", "--pins", "5", "--json", json.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let _ = std::fs::remove_file(&json);
    let cells: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["host_check"].as_str().unwrap().to_owned(),
                r["aliases"].as_u64().unwrap(),
                r["l1_tables"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = [0u64, 600]
        .iter()
        .flat_map(|&a| ["typecount", "scan", "rmap"].map(|c| (c.to_owned(), a, a.div_ceil(512))))
        .collect();
    assert_eq!(cells, want);
    let o = run(&["pin-cost", "--aliases", "99999999999"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// An installed binary (scripts/install.sh's layout: PREFIX/bin/vmm and
/// PREFIX/share/vmm/) finds its guest beside itself, not in the checkout it
/// was built in.
#[test]
fn an_installed_binary_finds_its_guest_beside_itself() {
    let prefix = std::env::temp_dir().join(format!("vmm-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let o = std::process::Command::new(common::root().join("scripts/install.sh"))
        .arg(&prefix)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let installed = prefix.join("bin/vmm");
    let list = |what: &str| {
        let o = std::process::Command::new(&installed)
            .args(["contract", "--list"])
            .env_remove("VMM_ROOT")
            .output()
            .unwrap();
        assert!(o.status.code().is_some(), "{what}");
        o
    };
    let o = list("installed");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 20);
    assert!(prefix.join("share/vmm/appliance/kernel/vmlinux").is_file(), "the appliance's kernel is installed too");
    // The slim binary the appliance carries is installed beside it, and the
    // installed vmm finds it there (not the checkout's).
    let doctor = std::process::Command::new(&installed).arg("doctor").env_remove("VMM_ROOT").output().unwrap();
    let want = format!("appliance binary  {}", prefix.join("bin/vmm-appliance").display());
    assert!(String::from_utf8_lossy(&doctor.stdout).contains(&want), "{}", String::from_utf8_lossy(&doctor.stdout));
    let slim = std::process::Command::new(prefix.join("bin/vmm-appliance")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&slim.stdout).starts_with("vmm-appliance "), "{}", stderr(&slim));
    // The manual, a page per command, and the completions where each shell looks.
    let read = |p: &str| std::fs::read_to_string(prefix.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for page in ["vmm", "vmm-run", "vmm-bench", "vmm-contract", "vmm-matrix", "vmm-batch"] {
        let man = read(&format!("share/man/man1/{page}.1"));
        assert!(man.contains(&format!("\n.TH {page} 1 ")), "{page}.1 is no manual page of {page}: {man}");
    }
    assert!(read("share/man/man1/vmm-contract.1").contains("xtf\\-runner"), "the exit codes are in the manual");
    assert!(!prefix.join("share/man/man1/vmm-appliance-init.1").exists(), "hidden commands have no page");
    let bash = read("share/bash-completion/completions/vmm");
    assert!(bash.contains("contract") && bash.contains("--kernel") && bash.contains("--alias"), "{bash}");
    assert!(read("share/zsh/site-functions/_vmm").starts_with("#compdef vmm"));
    assert!(read("share/fish/vendor_completions.d/vmm.fish").contains("complete -c vmm"));
    // It reads the installed image: a broken one is an error that names it.
    std::fs::write(prefix.join("share/vmm/guest"), b"not an ELF").unwrap();
    let o = list("broken");
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains(&prefix.join("share/vmm/guest").display().to_string()), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&prefix);
}

/// Runs a freshly copied binary. Another test's thread may be copying a
/// file while this one forks: the child holds that write descriptor until
/// it execs, and an exec of a file open for writing fails with "text file
/// busy" (ETXTBSY) meanwhile. That passes in milliseconds: try again.
fn output_of_copy(c: &mut std::process::Command) -> std::process::Output {
    for _ in 0..50 {
        match c.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
    c.output().unwrap()
}

/// A binary copied out of its checkout finds the guest and the appliance's
/// kernel in the user's data directory (`$XDG_DATA_HOME/vmm`), as
/// scripts/data.sh (called by setup.sh and build.sh) fills it; `VMM_ROOT`,
/// the environment, still wins over it.
#[test]
fn a_copied_binary_finds_its_inputs_in_the_data_directory() {
    let dir = std::env::temp_dir().join(format!("vmm-xdg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let xdg = dir.join("data");
    let o =
        std::process::Command::new(common::root().join("scripts/data.sh")).env("XDG_DATA_HOME", &xdg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let copy = dir.join("bin/vmm");
    std::fs::copy(common::vmm(), &copy).unwrap();
    let doctor = |env: &[(&str, &std::path::Path)]| {
        let mut c = std::process::Command::new(&copy);
        c.arg("doctor").env_remove("VMM_ROOT").env("HOME", &dir);
        for (k, v) in env {
            c.env(k, v);
        }
        output_of_copy(&mut c)
    };
    let o = doctor(&[("XDG_DATA_HOME", &xdg)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let line = |what: &str| out.lines().find(|l| l.contains(what)).unwrap_or_default().to_owned();
    assert!(line("guest image").contains(&xdg.join("vmm/guest").display().to_string()), "{out}");
    let kernel = xdg.join("vmm/appliance/kernel/vmlinux").display().to_string();
    assert!(line("appliance kernel").starts_with("ok") && line("appliance kernel").contains(&kernel), "{out}");
    // With no XDG_DATA_HOME, the default under $HOME (empty here) is looked
    // at, then the checkout the binary was built in.
    let o = doctor(&[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!out.contains(&xdg.display().to_string()), "{out}");
    // The environment names a checkout: the data directory is not used.
    let o = doctor(&[("XDG_DATA_HOME", &xdg), ("VMM_ROOT", &dir)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(!out.contains(&xdg.display().to_string()), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vmm man` into a path it cannot make a directory of is bad input: one
/// error line, status 2. An unknown shell for `vmm completions` likewise.
#[test]
fn man_pages_and_completions_refuse_bad_input() {
    let file = std::env::temp_dir().join(format!("vmm-man-{}", std::process::id()));
    std::fs::write(&file, b"a file").unwrap();
    let o = run(&["man", "--out", file.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("vmm: error:")).count(), 1, "{}", stderr(&o));
    let _ = std::fs::remove_file(&file);
    let o = run(&["completions", "tcsh"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `vmm doctor` says what a run needs, where it looked, and how a run would
/// go: ready here; a copied binary whose data is nowhere names the guest it
/// wants; with no KVM and no QEMU it says there is no way to run. Not ready
/// is one `vmm: error:` line and status 5.
#[test]
fn the_doctor_says_what_is_there_and_what_is_missing() {
    let o = run(&["doctor"], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let guest =
        out.lines().find(|l| l.starts_with("ok ") && l.contains("guest image")).unwrap_or_else(|| panic!("{out}"));
    assert!(guest.contains(&common::guest().display().to_string()) && guest.contains("contract scenarios"), "{guest}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("ready: running ")), "{out}");
    // A binary copied into an empty directory, its checkout out of reach.
    let dir = std::env::temp_dir().join(format!("vmm-doctor-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let copy = dir.join("bin/vmm");
    std::fs::copy(common::vmm(), &copy).unwrap();
    let o = output_of_copy(std::process::Command::new(&copy).arg("doctor").env("VMM_ROOT", &dir));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(5), "{out}");
    let want = dir.join("guest/target/i686-none/release/guest").display().to_string();
    assert!(out.lines().any(|l| l.starts_with("MISSING") && l.contains(&want)), "{out}");
    let e = errors(&o);
    assert!(e.len() == 1 && e[0].starts_with("vmm: error: not ready: missing guest image"), "{e:?}");
    let _ = std::fs::remove_dir_all(&dir);
    // No KVM and no QEMU.
    let empty = std::env::temp_dir();
    let o = run(&["doctor"], &[("VMM_KVM_DEV", "/nonexistent/kvm"), ("PATH", empty.to_str().unwrap())]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.lines().any(|l| l.starts_with("MISSING") && l.contains("QEMU")), "{out}");
    assert!(errors(&o)[0].contains("no way to run the guest"), "{:?}", errors(&o));
}

/// `vmm --version` names the commit it was built from.
#[test]
fn the_version_names_the_git_commit() {
    let o = run(&["--version"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(common::root())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert!(head.len() == 12 && out.contains(&format!("({head}")), "{out} (HEAD {head})");
}
