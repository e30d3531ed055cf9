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
        // Not those that need more RAM, nor those that pass only with the host
        // going on after a violation.
        if r.info.expect() != "pass" || r.info.vm().contains("--mem") || r.info.vm().contains("--host-on-violation") {
            continue;
        }
        if percpu::cpu_id() == 0 {
            kprintln!("pvmmu-selftest: {}", r.info.name());
        }
        (r.entry)();
    }
}
