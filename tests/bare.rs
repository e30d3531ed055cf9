//! The same guest image boots bare under qemu-system-i386 (no VMM: serial console,
//! multiboot, INIT/SIPI for the other CPUs, xAPIC): a second x86 implementation
//! the guest must pass.

mod common;

use std::process::Command;

fn qemu_sh(args: &[&str]) -> (Option<i32>, String) {
    common::guest();
    let o = Command::new(common::root().join("scripts/qemu.sh")).args(args).output().expect("cannot run qemu.sh");
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

#[test]
fn boots_bare_on_one_cpu() {
    let (code, out) = qemu_sh(&["--smp", "1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("bare metal (no VMM)"), "{out}");
    assert!(out.contains("result boot_cpus = 1"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn boots_bare_on_two_cpus_with_init_sipi() {
    let (code, out) = qemu_sh(&["--smp", "2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("smp: 2 CPUs online (xAPIC)"), "{out}");
    assert_eq!(out.matches("hello from ring 3").count(), 2, "{out}");
}

#[test]
fn a_bare_fault_is_reported_on_the_console() {
    let (code, out) = qemu_sh(&["workload=fault-page"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("FATAL on cpu 0: page fault"), "{out}");
    assert!(out.contains("cr2=0x00000010"), "{out}");
}
