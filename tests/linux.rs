//! `vmm run --linux`: Debian's stock 686-pae kernel (scripts/setup.sh) boots
//! on vmm with an initramfs of busybox and a script (scripts/linux-initrd.sh),
//! QEMU-hosted where the local KVM cannot run it. A reboot is the run's clean
//! end, a kernel panic a guest fault, a hang the watchdog's; bad input is one
//! error line.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{root, run, stderr};

/// The tests boot Linux one at a time: QEMU-hosted, two boots side by side
/// hang far more often (three of five in one session, against about one in
/// eight alone), and a hang costs a whole watchdog period before the boot
/// is tried again.
static VMS: Mutex<()> = Mutex::new(());

fn vms() -> MutexGuard<'static, ()> {
    VMS.lock().unwrap_or_else(|e| e.into_inner())
}

fn kernel() -> PathBuf {
    let k = root().join(".cache/linux/vmlinuz");
    assert!(k.is_file(), "no Linux at {} (run scripts/setup.sh)", k.display());
    k
}

/// An initramfs whose /init runs `script`.
fn initrd(name: &str, script: &str) -> PathBuf {
    initrd_with(name, script, &[])
}

/// An initramfs whose /init runs `script`, with these programs in /bin.
fn initrd_with(name: &str, script: &str, programs: &[&Path]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (s, out) = (dir.join(format!("{name}.sh")), dir.join(format!("{name}.cpio")));
    std::fs::write(&s, script).unwrap();
    let o = std::process::Command::new(root().join("scripts/linux-initrd.sh"))
        .arg(&s)
        .arg(&out)
        .args(programs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// One boot; its command line is `quiet rdinit=/init` unless `extra` gives one.
fn boot_once(initrd: &Path, extra: &[&str]) -> Output {
    let (k, i) = (kernel(), initrd.to_str().unwrap().to_owned());
    let mut args = vec!["run", "--linux", k.to_str().unwrap(), "--initrd", &i];
    if !extra.contains(&"--cmdline") {
        args.extend(["--cmdline", "quiet rdinit=/init"]);
    }
    args.extend(extra);
    run(&args, &[])
}

/// Boots, and boots again (at most twice more) only when the watchdog
/// stopped a boot before its script printed `marker`: QEMU-hosted, the
/// emulator's known fault (an interrupt delivered with IF clear) deadlocks
/// about one boot in eight on a spinlock (docs/linux.md). Any other outcome
/// decides at once.
fn boot(initrd: &Path, extra: &[&str], marker: &str) -> Output {
    let mut o = boot_once(initrd, extra);
    for _ in 0..2 {
        if o.status.code() != Some(4) || stdout(&o).contains(marker) {
            break;
        }
        eprintln!("a Linux boot hung before its script (the emulator's known fault): trying again");
        o = boot_once(initrd, extra);
    }
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Linux brings up both vCPUs (MP tables, INIT/SIPI through KVM's local
/// APICs), finds its highmem, runs the script on the UART's console, and
/// its `reboot -f` ends the run with status 0.
#[test]
fn linux_runs_a_script_on_two_vcpus_and_reboots_cleanly() {
    let _vms = vms();
    let i = initrd(
        "hello",
        "echo \"vmm-linux: $(nproc) CPUs\"\ngrep -E '^(MemTotal|HighTotal)' /proc/meminfo\nreboot -f\n",
    );
    let json = std::env::temp_dir().join(format!("vmm-linux-{}.json", std::process::id()));
    let o =
        boot(&i, &["--vcpus", "2", "--mem", "1g", "--timeout", "90", "--json", json.to_str().unwrap()], "vmm-linux:");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("vmm-linux: 2 CPUs"), "{out}");
    // 1 GiB is more than a 3G/1G split's lowmem: some of it is highmem.
    let high = out.lines().find(|l| l.starts_with("HighTotal:")).expect("HighTotal");
    let kb: u64 = high.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(kb > 0, "{high}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["outcome"]["kind"], "shutdown");
    // The console first and the user's words last; QEMU-hosted, the TSC's
    // rate between them (Linux cannot calibrate the nested TSC there).
    let cmdline = report["config"]["cmdline"].as_str().unwrap_or_default();
    assert!(cmdline.starts_with("console=ttyS0 reboot=k ") && cmdline.ends_with(" quiet rdinit=/init"), "{cmdline}");
    let qemu = report["host"]["mode"] == "qemu";
    assert_eq!(qemu, cmdline.contains(" tsc_early_khz=") && cmdline.contains(" tsc=reliable "), "{cmdline}");
    let _ = std::fs::remove_file(&json);
}

/// One interactive boot: `input` goes to vmm's standard input once the
/// console shows `marker`. Returns the exit status (None: still running at
/// `limit`, then killed), whether the marker came, and the console.
fn boot_typing(initrd: &Path, marker: &str, input: &str, limit: Duration) -> (Option<i32>, bool, String) {
    let (k, i) = (kernel(), initrd.to_str().unwrap().to_owned());
    let mut child = Command::new(common::vmm())
        .args(["run", "--linux", k.to_str().unwrap(), "--initrd", &i, "--cmdline", "quiet rdinit=/init"])
        .args(["--vcpus", "1", "--mem", "512m", "--timeout", "90"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run vmm");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (deadline, mut seen, mut console) = (Instant::now() + limit, false, String::new());
    let mut stdin = child.stdin.take();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if !seen && line.contains(marker) {
                    seen = true;
                    // Closed after the input: the run must end by the guest's reboot.
                    if let Some(mut w) = stdin.take() {
                        w.write_all(input.as_bytes()).unwrap();
                    }
                }
                console += &line;
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = match child.try_wait().unwrap() {
        Some(s) => s.code(),
        None if Instant::now() < deadline => child.wait().unwrap().code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let _ = reader.join();
    (status, seen, console)
}

/// Keys typed on vmm's standard input reach Linux's console: busybox's shell
/// on the UART runs a command typed after it started (its result, not its
/// echo, is checked), and a typed `reboot -f` ends the run cleanly.
/// QEMU-hosted they travel through QEMU's serial line into the appliance.
#[test]
fn a_shell_on_the_console_runs_what_is_typed() {
    let _vms = vms();
    let i = initrd("shell", "echo vmm-linux: console-ready\nexec sh\n");
    let typed = "echo typed-$((6*7))\nreboot -f\n";
    let mut r = boot_typing(&i, "vmm-linux: console-ready", typed, Duration::from_secs(150));
    for _ in 0..2 {
        if r.1 || r.0 != Some(4) {
            break;
        }
        eprintln!("a Linux boot hung before its script (the emulator's known fault): trying again");
        r = boot_typing(&i, "vmm-linux: console-ready", typed, Duration::from_secs(150));
    }
    let (status, seen, console) = r;
    assert!(seen, "the shell never started: {console}");
    assert!(console.lines().any(|l| l.trim() == "typed-42"), "the typed command did not run: {console}");
    assert_eq!(status, Some(0), "the typed reboot did not end the run: {console}");
}

/// Claim 4's cap on Linux: a kernel told to keep a small lowmem (`vmalloc=`)
/// boots and finds its initrd (vmm puts it just above the kernel, not at the
/// top of RAM, where such a kernel cannot reach it), and highpte-probe's
/// lowmem mode starts tasks of 64 pte pages, with the pte pages in lowmem,
/// until one does not fit, and says why.
#[test]
fn linux_with_a_small_lowmem_runs_out_of_it_and_the_probe_says_when() {
    let _vms = vms();
    let probe = root().join("guest/linux-probe/target/i686-none/release/highpte-probe");
    assert!(probe.is_file(), "no {} (run scripts/build.sh)", probe.display());
    let script = "echo vmm-linux: $(grep LowTotal /proc/meminfo)\n\
                  echo 0 > /proc/sys/vm/oom_dump_tasks\nhighpte-probe lowmem 8192 64\nreboot -f\n";
    let i = initrd_with("lowmem-cap", script, &[&probe]);
    let json = std::env::temp_dir().join(format!("vmm-linux-cap-{}.json", std::process::id()));
    let cmdline = "quiet rdinit=/init userpte=nohigh nokaslr vmalloc=950M";
    let o = boot(
        &i,
        &["--mem", "512m", "--timeout", "200", "--cmdline", cmdline, "--json", json.to_str().unwrap()],
        "vmm-linux:",
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with("vmm-linux: LowTotal:")).expect("LowTotal");
    let kb: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(kb < 64 << 10, "lowmem not small: {line}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &report["results"];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    // It stopped for lowmem: a task did not fit, long before 8192.
    assert!((1..8192).contains(&n("lowmem_tasks")), "{r}");
    assert!(n("lowmem_stop_killed") == 1 || n("lowmem_stop_errno") != 0, "no reason to stop: {r}");
    // Lowmem is what ran out: most of it went, 64 pte pages (256 kB) a task.
    assert!(n("lowfree_after_kb") < n("lowfree_before_kb") / 4, "{r}");
    assert!(n("lowfree_drop_kb") >= n("lowmem_tasks") * 256, "{r}");
    let _ = std::fs::remove_file(&json);
}

/// `vmm batch` runs Linux jobs beside our guest's: QEMU-hosted, the
/// bzImage and initrd travel into an appliance of their own, with the
/// shadow paging Linux needs, and our guest's jobs run in theirs.
#[test]
fn a_batch_runs_linux_beside_our_guest() {
    let _vms = vms();
    let i = initrd("batch", "echo vmm-linux: in a batch\nreboot -f\n");
    let (k, i) = (kernel(), i.to_str().unwrap().to_owned());
    let linux = vec!["run", "--linux", k.to_str().unwrap(), "--initrd", &i, "--cmdline=quiet rdinit=/init"];
    let linux: Vec<&str> = linux.into_iter().chain(["--mem", "512m", "--timeout", "90"]).collect();
    let ours = vec!["run", "--vcpus", "1", "--mem", "64m", "--timeout", "60"];
    let mut jobs = common::batch(&[("linux", linux.clone()), ("ours", ours.clone())]);
    for _ in 0..2 {
        // A Linux boot that hung before its script (docs/linux.md): again.
        let l = &jobs["linux"];
        if l.exit_code() != 4 || l.stdout().contains("vmm-linux:") {
            break;
        }
        eprintln!("a Linux boot hung before its script (the emulator's known fault): trying again");
        jobs = common::batch(&[("linux", linux.clone()), ("ours", ours.clone())]);
    }
    let (l, o) = (&jobs["linux"], &jobs["ours"]);
    assert_eq!(l.exit_code(), 0, "{}", l.stdout());
    assert!(l.stdout().contains("vmm-linux: in a batch"), "{}", l.stdout());
    assert_eq!(l.outcome_kind(), "shutdown");
    assert_eq!(o.exit_code(), 0, "{}", o.stdout());
}

/// A script that ends without a reboot makes init exit: Linux panics, and
/// the run is a guest fault (3) that says so.
#[test]
fn a_kernel_panic_is_a_guest_fault() {
    let _vms = vms();
    let i = initrd("exits", "echo vmm-linux: leaving\nexit 0\n");
    let o = boot(&i, &["--timeout", "90"], "vmm-linux: leaving");
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("vmm-linux: leaving"));
    let e = stderr(&o);
    assert!(e.contains("guest panic on vCPU") && e.contains("Attempted to kill init"), "{e}");
}

/// A script that never ends is stopped by the watchdog (4), after it ran.
#[test]
fn a_hung_linux_is_stopped_by_the_watchdog() {
    let _vms = vms();
    let i = initrd("hangs", "echo vmm-linux: sleeping\nsleep 100000\n");
    let o = boot(&i, &["--timeout", "40"], "vmm-linux: sleeping");
    assert_eq!(o.status.code(), Some(4), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("vmm-linux: sleeping"), "the script ran before the watchdog: {}", stdout(&o));
    assert!(stderr(&o).contains("stopped by the watchdog"), "{}", stderr(&o));
}

/// Bad input: a file that is no bzImage is one error line naming it (status
/// 5, as for our guest's kernel); --initrd or --cmdline without --linux,
/// or --linux beside --kernel, are usage errors.
#[test]
fn bad_linux_input_is_one_clear_error() {
    let not = root().join("Cargo.toml");
    let o = run(&["run", "--linux", not.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let errors: Vec<String> = stderr(&o).lines().filter(|l| l.starts_with("vmm: error:")).map(String::from).collect();
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(errors[0].contains("no bzImage") && errors[0].contains("Cargo.toml"), "{}", errors[0]);
    let o = run(&["run", "--linux", "/nonexistent/bzImage"], &[]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("/nonexistent/bzImage"), "{}", stderr(&o));
    for args in
        [&["run", "--initrd", "x.cpio"][..], &["run", "--cmdline", "quiet"], &["run", "--linux", "a", "--kernel", "b"]]
    {
        assert_eq!(run(args, &[]).status.code(), Some(2), "{args:?}");
    }
}

/// The benchmark's real-Linux control in its short form (`vmm bench
/// --matrix linux-short`): each cell boots Linux with highpte-probe in an
/// initramfs the benchmark makes, highpte and `userpte=nohigh` on 1 vCPU,
/// twice; the probe's `vmm-result:` lines become the cells' figures, and the
/// `linux highpte` verdict is reached from them. A boot that hangs before the
/// probe reports is run again by the benchmark (the emulator's known fault).
#[test]
fn the_linux_highpte_experiment_runs_in_its_short_form() {
    let _vms = vms();
    let dir = std::env::temp_dir().join(format!("vmm-linux-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = run(&["bench", "--matrix", "linux-short", "--out", dir.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("bench.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "two cells, two repetitions each");
    let mut drop = std::collections::BTreeMap::<String, Vec<f64>>::new();
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        let f = &l["figures"];
        for fig in ["sparse_fault_cycles_per_pte", "sparse_zap_cycles_per_pte", "dense_fork_exit_cycles_per_pte"] {
            assert!(f[fig].as_f64().is_some_and(|c| c > 0.0), "{fig} missing: {f}");
        }
        // Four full pte pages mapped: PageTables holds at least their 16 kB.
        assert!(f["pagetables_kb"].as_f64().is_some_and(|kb| kb >= 16.0), "{f}");
        assert_eq!(f["lowmem_tasks"], 16.0, "{f}");
        let userpte = l["config"]["userpte"].as_str().unwrap().to_owned();
        drop.entry(userpte).or_default().push(f["lowfree_drop_kb_per_task"].as_f64().unwrap());
    }
    // The two cells boot what they say: with nohigh each task's 16 pte
    // pages (64 kB) come out of lowmem, with highpte they do not.
    let most = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    let least = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    assert!(least(&drop["nohigh"]) - most(&drop["highpte"]) >= 32.0, "{drop:?}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let verdict = report.lines().find(|l| l.contains("linux highpte")).unwrap_or_default();
    assert!(!verdict.is_empty() && !verdict.contains("not measured"), "{report}");
    assert!(verdict.contains("cycles per pte with highpte"), "{verdict}");
    let _ = std::fs::remove_dir_all(&dir);
}
