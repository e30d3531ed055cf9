//! Boots the real guest: every vCPU reports in, deliberate faults get the host's
//! clean report, the watchdog stops a hung guest, hypercalls from several vCPUs at
//! once all return their own results. All VMs of this file share one `vmm batch`
//! (one appliance boot when QEMU-hosted).

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::JobLine;

fn jobs() -> &'static HashMap<String, JobLine> {
    static JOBS: OnceLock<HashMap<String, JobLine>> = OnceLock::new();
    JOBS.get_or_init(|| {
        common::guest();
        common::batch(&[
            ("boot-1", vec!["run", "--vcpus", "1"]),
            ("boot-2", vec!["run", "--vcpus", "2"]),
            ("boot-3", vec!["run", "--vcpus", "3"]),
            ("mem-16m", vec!["run", "--mem", "16m"]),
            ("mem-64g", vec!["run", "--mem", "64g", "--vcpus", "2"]),
            ("fault-page", vec!["run", "--workload", "fault-page"]),
            ("fault-stack", vec!["run", "--workload", "fault-stack"]),
            ("fault-triple", vec!["run", "--workload", "fault-triple"]),
            ("hang", vec!["run", "--workload", "hang", "--timeout", "5", "--vcpus", "2"]),
            ("hypercall-smp", vec!["run", "--vcpus", "2", "--workload", "hypercall-smp", "--iterations", "500"]),
            ("hypercall-bench", vec!["run", "--workload", "hypercall-bench", "--iterations", "500"]),
            ("ipi", vec!["run", "--vcpus", "2", "--workload", "ipi-pingpong", "--iterations", "200"]),
        ])
    })
}

fn job(name: &str) -> &'static JobLine {
    &jobs()[name]
}

fn assert_boots(name: &str, vcpus: u64) {
    let j = job(name);
    assert_eq!(j.exit_code(), 0, "{name}: {:#}", j.0);
    assert_eq!(j.outcome_kind(), "shutdown");
    assert_eq!(j.result("boot_cpus"), vcpus);
    // Every vCPU reported in, once.
    let mut online: Vec<u64> = j.report()["timing"]["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "cpu_online")
        .map(|m| m["arg"].as_u64().unwrap())
        .collect();
    online.sort();
    assert_eq!(online, (0..vcpus).collect::<Vec<_>>(), "{name}: vCPUs that came online");
    // Each CPU ran ring 3 (write, getcpu, exit) and took timer ticks.
    for cpu in 0..vcpus as usize {
        assert!(j.counter(cpu, "syscalls") >= 3, "{name}: cpu {cpu} made no system calls");
        assert!(j.counter(cpu, "timer_ticks") >= 3, "{name}: cpu {cpu} took no timer ticks");
    }
    assert_eq!(j.stdout().matches("hello from ring 3").count() as u64, vcpus);
    assert!(j.report()["timing"]["to_main_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn one_vcpu_boots_and_reports_in() {
    assert_boots("boot-1", 1);
}

#[test]
fn two_vcpus_boot_and_report_in() {
    assert_boots("boot-2", 2);
}

#[test]
fn more_vcpus_than_host_cores_still_work() {
    assert_boots("boot-3", 3);
}

#[test]
fn guest_ram_spans_16m_to_the_36_bit_limit() {
    let small = job("mem-16m");
    assert_eq!(small.exit_code(), 0, "{:#}", small.0);
    assert_eq!(small.result("ram_mib"), 16);
    let big = job("mem-64g");
    assert_eq!(big.exit_code(), 0, "{:#}", big.0);
    // 64 GiB of address space less the MMIO hole below 4 GiB.
    assert_eq!(big.result("ram_mib"), (64 << 10) - 20);
    assert_eq!(big.result("lowmem_mib"), 896);
    assert_eq!(big.report()["mem_bytes"].as_u64().unwrap(), (64u64 << 30) - (20 << 20));
}

#[test]
fn a_page_fault_gets_the_hosts_report() {
    let j = job("fault-page");
    assert_eq!(j.exit_code(), 3, "{:#}", j.0);
    let o = &j.report()["outcome"];
    assert_eq!(o["kind"], "guest_fault");
    assert_eq!(o["vector"], 14);
    assert_eq!(o["cr2"], 0x10);
    assert_eq!(o["vcpu"], 0);
    assert!(o["eip"].as_u64().unwrap() >= 0xc000_0000, "eip in the kernel");
    let err = j.0["stderr"].to_string();
    assert!(err.contains("guest fault on vCPU 0: page fault"), "{err}");
}

#[test]
fn a_lost_kernel_stack_is_a_reported_double_fault() {
    let j = job("fault-stack");
    assert_eq!(j.exit_code(), 3, "{:#}", j.0);
    let o = &j.report()["outcome"];
    assert_eq!(o["kind"], "guest_fault");
    assert_eq!(o["vector"], 8);
    assert_eq!(o["cr2"], 0xffc, "the push below the bad stack");
}

#[test]
fn a_triple_fault_is_reported() {
    let j = job("fault-triple");
    assert_eq!(j.exit_code(), 3, "{:#}", j.0);
    assert_eq!(j.outcome_kind(), "triple_fault");
}

#[test]
fn the_watchdog_stops_a_hung_guest() {
    let j = job("hang");
    assert_eq!(j.exit_code(), 4, "{:#}", j.0);
    let o = &j.report()["outcome"];
    assert_eq!(o["kind"], "timeout");
    let after = o["after_s"].as_f64().unwrap();
    assert!((5.0..15.0).contains(&after), "stopped after {after} s");
    assert_eq!(o["vcpus"].as_array().unwrap().len(), 2, "every vCPU's position is reported");
}

#[test]
fn hypercalls_from_two_vcpus_at_once_return_their_own_results() {
    let j = job("hypercall-smp");
    assert_eq!(j.exit_code(), 0, "{:#}", j.0);
    assert_eq!(j.report()["hypercalls"]["nop"]["OK"], 1000);
    for cpu in 0..2 {
        assert!(j.counter(cpu, "hypercalls") >= 500);
    }
}

#[test]
fn hypercall_and_pio_exit_are_both_measured_in_one_run() {
    let j = job("hypercall-bench");
    assert_eq!(j.exit_code(), 0, "{:#}", j.0);
    let calls = j.result("calls");
    assert_eq!(calls, 500);
    assert!(j.result("pio_exit_ns") > 0 && j.result("hypercall_ns") > 0);
    // 32 warm-up rounds, then the measured ones: every one was one exit.
    let exits = &j.report()["exits"][0]["user"];
    assert_eq!(exits["nop_exit"].as_u64().unwrap(), calls + 32);
    assert_eq!(j.report()["hypercalls"]["nop"]["OK"].as_u64().unwrap(), calls + 32);
}

#[test]
fn ipis_ping_pong_between_vcpus() {
    let j = job("ipi");
    assert_eq!(j.exit_code(), 0, "{:#}", j.0);
    assert_eq!(j.result("round_trips"), 200);
    assert!(j.result("ipi_roundtrip_ns") > 0);
    assert!(j.counter(0, "ipis_sent") >= 200);
    assert!(j.counter(1, "ipis_received") >= 200);
    assert!(j.counter(1, "ipis_sent") >= 200, "cpu 1 answered");
}
