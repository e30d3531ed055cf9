//! `pvmmu-selftest`: every contract scenario that expects to pass and needs no
//! special VM (guest/src/contract/), one after the other in this one VM: a quick
//! check of the host's PV MMU through real hypercalls. `vmm contract` runs each in
//! its own VM instead, with its verdict.

use shared::config::Config;

use crate::{check, contract, hv, kprintln, percpu};

pub fn run(_cfg: &Config) {
    if !hv::under_vmm() {
        check!(false, "pvmmu-selftest needs the VMM");
        return;
    }
    for r in contract::all() {
        // Not those that need more RAM, the kernel's own tables under the host, or
        // the host going on after a violation.
        let special = ["--mem", "--pvmmu", "--host-on-violation"];
        if r.info.expect() != "pass" || special.iter().any(|a| r.info.vm().contains(a)) {
            continue;
        }
        if percpu::cpu_id() == 0 {
            kprintln!("pvmmu-selftest: {}", r.info.name());
        }
        (r.entry)();
    }
}
