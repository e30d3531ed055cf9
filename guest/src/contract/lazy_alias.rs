//! A lazy vmap alias at pin, under each `--alias` strategy, through the kernel's
//! own path (`--pvmmu on`): a page written through a vmap area that `vunmap` left
//! behind (`--vmap lazy-ptes`: its PTE stays, read-write, until a purge) becomes a
//! pte page and is pinned as the kernel pins one (`pv::pin`). Whatever the
//! strategy, the pin ends with the frame pinned and the alias gone; how it got
//! there is the strategy's: `none` is refused by the host once and purges,
//! always-flush, alias-bit, runtime-switch and the oracle purge first (the
//! oracle because the alias is a present PTE), host-trap is trapped back into
//! its fixup, clean-pool never hands out a page with an alias.

use shared::abi::errno::EINVAL;
use shared::config::{AliasStrategy, VmapVariant};
use shared::counters::Counter;

use super::{pin, skip};
use crate::mm::page::Zone;
use crate::mm::{alias, highpte, page, ptcache, pv, vmap};
use crate::{check, kprintln, percpu};

macro_rules! lazy_alias_scenario {
    ($id:ident, $name:literal, $alias:literal) => {
        crate::scenario!(
            $id,
            $name,
            "pass",
            concat!("--pvmmu on --vmap lazy-ptes --alias ", $alias),
            concat!("a lazy vmap alias of a page the kernel pins as a pte page, under --alias ", $alias),
            lazy_alias_at_pin
        );
    };
}

lazy_alias_scenario!(LAZY_NONE, "lazy-alias-none", "none");
lazy_alias_scenario!(LAZY_ALWAYS, "lazy-alias-always-flush", "always-flush");
lazy_alias_scenario!(LAZY_BIT, "lazy-alias-alias-bit", "alias-bit");
lazy_alias_scenario!(LAZY_SWITCH, "lazy-alias-runtime-switch", "runtime-switch");
lazy_alias_scenario!(LAZY_POOL, "lazy-alias-clean-pool", "clean-pool");
lazy_alias_scenario!(LAZY_TRAP, "lazy-alias-host-trap", "host-trap");
lazy_alias_scenario!(LAZY_ORACLE, "lazy-alias-oracle", "oracle");

/// The counters the strategies move, on this CPU (the scenario runs on one).
#[derive(Clone, Copy)]
struct Counts {
    refused: u64,
    unmap_aliases: u64,
    flushed: u64,
    fixups: u64,
    refills: u64,
    aliased_pins: u64,
}

fn counts() -> Counts {
    // SAFETY: this CPU's own counters, read only.
    let c = unsafe { &*percpu::counters(percpu::cpu_id()) };
    Counts {
        refused: c.get(Counter::PtPinRefused),
        unmap_aliases: c.get(Counter::VmUnmapAliases),
        flushed: c.get(Counter::VmUnmapAliasesFlushed),
        fixups: c.get(Counter::AliasFixups),
        refills: c.get(Counter::CleanPoolRefills),
        aliased_pins: c.get(Counter::PtPinsAliased),
    }
}

/// Pages the clean pool may hold before the scenario gives up emptying it.
const DRAIN_MAX: usize = 64;

fn lazy_alias_at_pin() {
    if !pv::on() {
        skip("the scenario needs --pvmmu on");
    }
    if vmap::variant() != VmapVariant::LazyPtes {
        skip("the scenario needs --vmap lazy-ptes");
    }
    let strategy = pv::strategy();
    // A page of the zone pte pages come from (lowmem when there is no highmem).
    let Some(frame) = page::alloc_pages(highpte::pte_zone(), 0).or_else(|| page::alloc_pages(Zone::Normal, 0)) else {
        skip("out of memory")
    };
    let Some(va) = vmap::vmap(&[frame]) else { skip("no vmap space") };
    // SAFETY: `va` maps `frame`, the scenario's own page, until the vunmap.
    unsafe { (va as *mut u64).write_volatile(0x5a5a_5a5a_5a5a_5a5a) };
    vmap::vunmap(va);
    check!(alias::count(frame) == 1, "vunmap left {} lazy aliases of the frame, not 1", alias::count(frame));
    check!(vmap::mapped_writable(va), "lazy-ptes left no read-write PTE behind");

    let before = counts();
    // The page that becomes the pte page: the aliased one itself, or for
    // clean-pool the page its pool hands out after the aliased one went back to
    // the allocator (the pool refills only when empty: it is emptied first).
    let mut drained = [0u64; DRAIN_MAX];
    let mut n_drained = 0;
    let pt = if strategy == AliasStrategy::CleanPool {
        page::free_pages(frame, 0);
        loop {
            let Some(pa) = ptcache::alloc_pt() else { skip("out of memory") };
            if counts().refills > before.refills {
                break pa;
            }
            if n_drained == DRAIN_MAX {
                skip("the clean pool holds more pages than the scenario empties");
            }
            drained[n_drained] = pa;
            n_drained += 1;
        }
    } else {
        ptcache::zero_page(frame);
        frame
    };
    let had_alias = alias::count(pt);
    pv::pin(pt, pv::Level::L1, &[pt]);
    let after = counts();
    let d = |f: fn(&Counts) -> u64| f(&after) - f(&before);
    kprintln!(
        "contract: --alias {strategy}: refusals {}, vm_unmap_aliases {} ({} flushed), traps back {}, pool refills {}",
        d(|c| c.refused),
        d(|c| c.unmap_aliases),
        d(|c| c.flushed),
        d(|c| c.fixups),
        d(|c| c.refills)
    );

    // The end is the same for every strategy.
    check!(pin(1, pt) == -EINVAL, "the page is not pinned after pv::pin");
    check!(alias::count(frame) == 0, "the lazy alias is still counted after the pin");
    check!(!vmap::mapped_writable(va), "the alias's PTE is still read-write after the pin");
    // The way there is the strategy's.
    match strategy {
        AliasStrategy::None => {
            check!(had_alias == 1, "the pinned page had no alias");
            check!(d(|c| c.refused) == 1, "the host refused {} pins, not 1", d(|c| c.refused));
            check!(d(|c| c.flushed) == 1, "no purge after the refusal");
        }
        AliasStrategy::AlwaysFlush | AliasStrategy::AliasBit | AliasStrategy::RuntimeSwitch | AliasStrategy::Oracle => {
            check!(had_alias == 1, "the pinned page had no alias");
            check!(d(|c| c.refused) == 0, "the host refused the pin");
            check!(d(|c| c.unmap_aliases) == 1 && d(|c| c.flushed) == 1, "no purge before the pin");
            check!(d(|c| c.aliased_pins) == 1, "the pin was not counted as aliased");
        }
        AliasStrategy::HostTrap => {
            check!(had_alias == 1, "the pinned page had no alias");
            check!(d(|c| c.refused) == 0, "the trap-back let the caller see a refusal");
            check!(d(|c| c.fixups) == 1, "traps back: {}, not 1", d(|c| c.fixups));
            check!(d(|c| c.flushed) == 1, "the fixup did not purge");
        }
        AliasStrategy::CleanPool => {
            check!(had_alias == 0, "the clean pool handed out a page with a lazy alias");
            check!(d(|c| c.refused) == 0, "the host refused a page of the clean pool");
            check!(d(|c| c.refills) == 1 && d(|c| c.flushed) == 1, "the refill did not purge");
        }
    }

    pv::unpin(&[pt], &[pt]);
    ptcache::free_pt(pt);
    for &pa in &drained[..n_drained] {
        ptcache::free_pt(pa);
    }
}
