//! fork and exit under the host's PV MMU, as 2.6.28's Xen code made them
//! (`xen_dup_mmap`, `xen_alloc_ptpage`, `xen_exit_mmap`), under each `--alias`
//! strategy: the child's tables are built unpinned and pinned whole at the
//! end, with one pin of its root (the host validates the tree) and at most one
//! alias check; a pte page added to a pinned address space is pinned alone,
//! with its own check; exit lets the host go first and clears the ptes with
//! plain writes, so no pte of the dying address space goes through the host.

use nosleep::MaySleep;
use shared::config::AliasStrategy;
use shared::counters::Counter;

use super::skip;
use crate::mm::address_space::{self, ANON_START};
use crate::mm::layout::PAGE_SIZE;
use crate::mm::{page, pv};
use crate::{check, kprintln, percpu};

macro_rules! fork_pin_scenario {
    ($id:ident, $name:literal, $alias:literal) => {
        crate::scenario!(
            $id,
            $name,
            "pass",
            concat!("--pvmmu on --alias ", $alias),
            concat!("a fork pins the child's tree once, with one alias check, under --alias ", $alias),
            fork_pins_once
        );
    };
}

fork_pin_scenario!(FORK_NONE, "fork-pin-none", "none");
fork_pin_scenario!(FORK_ALWAYS, "fork-pin-always-flush", "always-flush");
fork_pin_scenario!(FORK_BIT, "fork-pin-alias-bit", "alias-bit");
fork_pin_scenario!(FORK_POOL, "fork-pin-clean-pool", "clean-pool");
fork_pin_scenario!(FORK_TRAP, "fork-pin-host-trap", "host-trap");
fork_pin_scenario!(FORK_ORACLE, "fork-pin-oracle", "oracle");

/// This CPU's counters the pin path moves.
#[derive(Clone, Copy)]
struct Counts {
    pins: u64,
    calls: u64,
    refused: u64,
    fixups: u64,
    refills: u64,
    updates: u64,
}

fn counts() -> Counts {
    // SAFETY: this CPU's own counters, read only.
    let c = unsafe { &*percpu::counters(percpu::cpu_id()) };
    Counts {
        pins: c.get(Counter::PtPins),
        calls: c.get(Counter::VmUnmapAliases),
        refused: c.get(Counter::PtPinRefused),
        fixups: c.get(Counter::AliasFixups),
        refills: c.get(Counter::CleanPoolRefills),
        updates: c.get(Counter::PvUpdates),
    }
}

/// The pte pages of the parent: one in each of these 2 MiB regions.
const REGIONS: u32 = 4;

fn fork_pins_once() {
    if !pv::on() {
        skip("the scenario needs --pvmmu on");
    }
    let strategy = pv::strategy();
    // SAFETY: the scenario runs on the boot CPU in its own context, as a
    // workload's driver does, holding no lock and no atomic kmap.
    let mut ctx = unsafe { MaySleep::new() };
    let Some(parent) = address_space::new_user(&mut ctx) else { skip("out of lowmem") };
    // SAFETY: the new address space, the scenario's alone.
    let parent = unsafe { &*parent };
    for k in 0..REGIONS {
        if address_space::fault(&mut ctx, parent, ANON_START + k * (2 << 20) + k * PAGE_SIZE).is_err() {
            skip("out of memory for the parent's pages");
        }
    }

    let before = counts();
    let Ok(child) = address_space::copy(&mut ctx, parent) else { skip("out of memory for the child") };
    let after = counts();
    // SAFETY: the child's new address space, the scenario's alone.
    let child = unsafe { &*child };
    let d = |f: fn(&Counts) -> u64, a: &Counts, b: &Counts| f(a) - f(b);
    let (pins, calls) = (d(|c| c.pins, &after, &before), d(|c| c.calls, &after, &before));
    kprintln!(
        "contract: --alias {strategy}: the fork made {pins} pins, {calls} vm_unmap_aliases, {} refusals, {} traps back",
        d(|c| c.refused, &after, &before),
        d(|c| c.fixups, &after, &before)
    );
    check!(pins == 1, "the fork made {pins} pins, not 1 (the root, with its tree)");
    let (mut tables, mut unpinned, mut alone, mut lowmem) = (0, 0, 0, 0u64);
    child.for_each_table(&mut |pa| {
        tables += 1;
        unpinned += !page::is_pinned(pa) as u32;
        alone += page::is_pinned_alone(pa) as u32;
        lowmem += page::is_lowmem(pa) as u64;
    });
    check!(tables >= 5 + REGIONS, "the child has {tables} tables");
    check!(unpinned == 0, "{unpinned} of the child's {tables} tables are not pinned after the fork");
    check!(alone == 1, "{alone} of the child's tables hold a pin of their own, not 1 (the root)");
    match strategy {
        AliasStrategy::AlwaysFlush => check!(calls == 1, "always-flush made {calls} alias checks, not 1"),
        AliasStrategy::AliasBit | AliasStrategy::RuntimeSwitch | AliasStrategy::Oracle => {
            check!(calls <= 1, "{strategy} made {calls} alias checks in one fork")
        }
        // A refusal is purged (and, missed, purged again): the benchmark's device.
        AliasStrategy::None => {
            check!(calls <= 2 * d(|c| c.refused, &after, &before), "none made {calls} alias checks of its own")
        }
        AliasStrategy::HostTrap => check!(
            calls <= 2 * d(|c| c.fixups, &after, &before),
            "host-trap made {calls} alias checks outside its fixups"
        ),
        AliasStrategy::CleanPool => check!(
            calls == d(|c| c.refills, &after, &before),
            "clean-pool made {calls} alias checks outside its refills"
        ),
    }

    // A pte page joining the pinned child: pinned alone, after its own check.
    let b = counts();
    let va = ANON_START + 16 * (2 << 20);
    if address_space::fault(&mut ctx, child, va).is_err() {
        skip("out of memory for the child's new pte page");
    }
    let a = counts();
    let l1 = child.l1(va);
    check!(d(|c| c.pins, &a, &b) == 1, "a pte page added to the pinned child made {} pins", d(|c| c.pins, &a, &b));
    check!(l1.is_some_and(page::is_pinned_alone), "the added pte page holds no pin of its own");
    if strategy == AliasStrategy::AlwaysFlush {
        check!(d(|c| c.calls, &a, &b) == 1, "always-flush made {} alias checks for it", d(|c| c.calls, &a, &b));
    }
    lowmem += l1.is_some_and(page::is_lowmem) as u64;

    // Exit: the host lets go first; only the direct-map entries of the lowmem
    // tables (made writable again) go through it, no pte of the child.
    let b = counts();
    address_space::put(&mut ctx, child);
    let a = counts();
    let updates = d(|c| c.updates, &a, &b);
    check!(updates == lowmem, "exit sent {updates} entries through the host, not {lowmem} (one per lowmem table)");
    address_space::put(&mut ctx, parent);
}
