//! `vmm run --gdb`: a real gdb attaches to a guest held at its first
//! instruction, sees a thread per vCPU, steps, reads memory, writes a
//! register, and detaches; the guest then runs to its end. Breakpoints: on a
//! host whose debug registers reach the guest, one at the guest's
//! `bsp_main` stops it there; QEMU-hosted, where they do not, it is refused.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A TCP port of 127.0.0.1 free right now.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// gdb in batch mode, these commands, against the guest's ELF.
fn gdb(port: u16, commands: &[&str]) -> String {
    let g = common::guest();
    let mut c = Command::new("gdb");
    c.args(["-nx", "-batch", "-ex", "set pagination off", "-ex", &format!("file {}", g.display())]);
    c.args(["-ex", &format!("target remote 127.0.0.1:{port}")]);
    for cmd in commands {
        c.args(["-ex", cmd]);
    }
    let o = c.output().expect("gdb is not installed (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A free port and a report path for one test.
fn port_and_report(what: &str) -> (u16, std::path::PathBuf) {
    common::guest();
    let port = free_port();
    (port, std::env::temp_dir().join(format!("vmm-{what}-{port}.json")))
}

/// `vmm run ARGS --gdb PORT --gdb-wait --json JSON`, returned once the stub
/// says it waits for gdb (QEMU-hosted, after the appliance's boot), with the
/// thread that collects its standard error.
fn held_for_gdb(
    args: &[&str],
    port: u16,
    json: &std::path::Path,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut vmm = Command::new(common::vmm())
        .arg("run")
        .args(args)
        .args(["--gdb", &port.to_string(), "--gdb-wait", "--json"])
        .arg(json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = vmm.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("vmm: gdb: waiting for gdb") {
                let _ = tx.send(());
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(180)).is_err() {
        let _ = vmm.kill();
        panic!("the stub never said it waits: {}", lines.join().unwrap());
    }
    (vmm, lines)
}

#[test]
fn gdb_attaches_steps_reads_writes_and_detaches() {
    let (port, json) = port_and_report("gdb");
    let (mut vmm, lines) = held_for_gdb(&["--vcpus", "2", "--timeout", "60"], port, &json);
    let out = gdb(
        port,
        &[
            "info threads",
            "info registers eip",
            "info registers fctrl",
            "stepi",
            "stepi",
            "info registers eip",
            "x/2xb 0x100010",
            "set $old = $ebx",
            "set $ebx = 0x1234abcd",
            "info registers ebx",
            "set $ebx = $old",
            "hbreak guest::work::bsp_main",
            "continue",
            "info registers eip",
            "delete",
            "detach",
        ],
    );
    let status = vmm.wait().unwrap();
    let err = lines.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    // Two threads, both stopped before their first instruction: the boot
    // CPU at the kernel's entry.
    assert!(out.contains("Thread 1.1") && out.contains("Thread 1.2"), "{out}");
    assert!(out.contains("0x100010 <_start>"), "{out}");
    // The x87 state as KVM_GET_FPU has it: the control word after reset.
    assert!(out.contains("fctrl          0x37f"), "{out}");
    // Two steps: two instructions on (cli, cld), and two debug exits.
    assert!(out.contains("0x100012 <_start+2>"), "{out}");
    // Memory through the vCPU's view: those two instructions' bytes.
    assert!(out.contains("0xfa\t0xfc"), "{out}");
    assert!(out.contains("ebx            0x1234abcd"), "{out}");
    let qemu = report["host"]["mode"] == "qemu";
    if qemu {
        // The debug registers do not fire QEMU-hosted: refused, and the
        // guest ran on to its end when gdb left.
        assert!(out.contains("Cannot insert hardware breakpoint"), "{out}");
    } else {
        assert!(out.contains("Hardware assisted breakpoint 1") && out.contains("bsp_main"), "{out}");
    }
    assert!(out.contains("detached"), "{out}");
    assert_eq!(status.code(), Some(0), "{err}\n{report:#}");
    assert_eq!(report["outcome"]["kind"], "shutdown", "{report:#}");
    let debug = report["exits"][0]["user"]["debug"].as_u64().unwrap_or(0);
    assert_eq!(debug, if qemu { 2 } else { 3 }, "vCPU 0's debug exits: {report:#}");
}

/// The watchdog counts only the time gdb does not hold the guest: a session
/// longer than `--timeout` does not end the run, and after the detach a
/// hanging guest still times out, `--timeout` later.
#[test]
fn the_watchdog_counts_the_guests_time_without_gdb() {
    let (port, json) = port_and_report("gdb-watchdog");
    let (mut vmm, lines) = held_for_gdb(&["--workload", "hang", "--timeout", "4"], port, &json);
    // Held for 6 s, more than the timeout, then let go.
    let attached = std::time::Instant::now();
    let out = gdb(port, &["shell sleep 6", "detach"]);
    assert!(out.contains("detached"), "{out}");
    let status = loop {
        if let Some(s) = vmm.try_wait().unwrap() {
            break s;
        }
        if attached.elapsed() > Duration::from_secs(120) {
            let _ = vmm.kill();
            panic!("the run went on after the detach: no watchdog");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = lines.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(status.code(), Some(4), "{err}");
    assert_eq!(report["outcome"]["kind"], "timeout", "{report:#}");
    // The guest's own time: the 6 s under gdb are not in it.
    let after = report["outcome"]["after_s"].as_f64().unwrap();
    assert!((4.0..5.0).contains(&after), "counted {after} s");
    assert!(attached.elapsed() > Duration::from_secs(10), "ended {:?} after the attach", attached.elapsed());
}

#[test]
fn gdb_input_errors_are_clear() {
    // --gdb-wait needs --gdb.
    let o = common::run(&["run", "--gdb-wait"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    // A port already taken: one error line, before any VM or QEMU starts.
    let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let o = common::run(&["run", "--gdb", &port, "--timeout", "10"], &[]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("vmm: error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
}
