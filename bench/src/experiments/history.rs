//! Linux's history under a hypervisor: 2.6.28 -> 2.6.36 -> 2.6.37, and 6.5's
//! vm_unmap_aliases.

use shared::config::{AliasStrategy, Setting as S, VmapFlush, VmapVariant};
use shared::counters::Counter as C;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, Experiment};
use crate::figures::Derived as D;

pub(super) fn experiment() -> Experiment {
    let mut e = new_experiment(
        "history",
        "Linux history: 2.6.28 -> 2.6.36 -> 2.6.37 under a hypervisor, and 6.5's vm_unmap_aliases",
        "always-flush with lazy-ptes (2.6.28), then lazy unmapping disabled (--vmap eager, 2.6.36), then \
         --vmap lazy-tlb with no alias flush at all (--alias none: the host revokes write access on the type \
         change itself, 2.6.37); last, 2.6.28's pin path with 6.5's vm_unmap_aliases (--vmap-flush 6.5), which \
         stops flushing a block's dirty range again and again (a counterfactual: 6.5's Xen code no longer \
         calls it at a pin).",
        vec![
            fork_churn(AliasStrategy::AlwaysFlush).label("2.6.28 lazy-ptes + always-flush"),
            fork_churn(AliasStrategy::AlwaysFlush)
                .with(S::Vmap(VmapVariant::Eager))
                .label("2.6.36 eager (lazy disabled)"),
            fork_churn(AliasStrategy::None).with(S::Vmap(VmapVariant::LazyTlb)).label("2.6.37 lazy-tlb + none"),
            fork_churn(AliasStrategy::AlwaysFlush)
                .with(S::VmapFlush(VmapFlush::Linux65))
                .label("2.6.28 pin path, 6.5 vm_unmap_aliases"),
        ],
        &[],
    );
    e.columns = pin_columns();
    e.claims = vec![Claim::History];
    e.adapt = Some(Adapt { figure: C::VmUnmapAliasesFlushed.into(), resolve_pct: 5, max_reps: 9 });
    e
}

pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let exp = Some("history");
    let steps = [
        &[
            is(S::Vmap(VmapVariant::LazyPtes)),
            is(S::Alias(AliasStrategy::AlwaysFlush)),
            is(S::VmapFlush(VmapFlush::Linux2628)),
        ][..],
        &[is(S::Vmap(VmapVariant::Eager)), is(S::Alias(AliasStrategy::AlwaysFlush))][..],
        &[is(S::Vmap(VmapVariant::LazyTlb)), is(S::Alias(AliasStrategy::None))][..],
    ];
    let mut pin = Vec::new();
    let mut span = Vec::new();
    for s in &steps {
        pin.push(l.fig(s, exp, D::CyclesPerPin)?);
        span.push(l.fig(s, exp, D::WorkloadCyclesMax)?);
    }
    let vua = l.fig(steps[2], exp, C::VmUnmapAliases)?;
    let refused = l.fig(steps[2], exp, C::PtPinRefused)?;
    let no_flush_needed = vua == 0.0 && refused == 0.0;
    // 2.6.37's pin cheaper than 2.6.28's: the interval of the ratio of their
    // cycles per pin wholly below 1 (one holding 1 decides nothing).
    let ratio_ci =
        interval(&[&l.sample(steps[2], exp, D::CyclesPerPin)?, &l.sample(steps[0], exp, D::CyclesPerPin)?], ratio);
    let cheaper = ratio_ci.as_ref().and_then(|ci| below(ci, 1.0));
    let mut parts = vec![Some(no_flush_needed), cheaper];
    let mut text = format!(
        "cycles per pin {:.0} (2.6.28) -> {:.0} (2.6.36) -> {:.0} (2.6.37){}; workload span {:.3e} -> {:.3e} -> \
         {:.3e} cycles; 2.6.37 with no alias care: {vua:.0} vm_unmap_aliases, {refused:.0} pins refused",
        pin[0],
        pin[1],
        pin[2],
        ratio_ci.map(|ci| format!(" (2.6.37 / 2.6.28 {:.2}x {})", ci.value, ci_range(&ci))).unwrap_or_default(),
        span[0],
        span[1],
        span[2]
    );
    // The fourth step, when it ran: 2.6.28's pin path with 6.5's
    // vm_unmap_aliases. 6.5 cannot flush an old range again by construction,
    // so what decides is that 2.6.28 did, and that 6.5 flushed no more often
    // (intervals of the flushing calls; overlapping ones decide nothing).
    let six_five = [
        is(S::Vmap(VmapVariant::LazyPtes)),
        is(S::Alias(AliasStrategy::AlwaysFlush)),
        is(S::VmapFlush(VmapFlush::Linux65)),
    ];
    if let (Ok(fl_65), Ok(fl_2628)) =
        (l.sample(&six_five, exp, C::VmUnmapAliasesFlushed), l.sample(steps[0], exp, C::VmUnmapAliasesFlushed))
    {
        // A figure a run did not produce is absent: a counter that stayed 0.
        let re_2628 = l.fig(steps[0], exp, C::VmUnmapAliasesReflushed).unwrap_or(0.0);
        // 6.5 clearly flushing more often (the interval of 6.5's flushing
        // calls over 2.6.28's wholly above 1) would refute it.
        let more = interval(&[&fl_65, &fl_2628], ratio).and_then(|ci| above(&ci, 1.0));
        parts.push(Some(re_2628 > 0.0));
        parts.push(Some(more != Some(true)));
        text.push_str(&format!(
            "; 2.6.28's pin path with 6.5's vm_unmap_aliases: {:.0} flushing calls against {:.0}{}, where 2.6.28 \
             flushed only old ranges {re_2628:.0} times ({:.0} cycles per pin)",
            median(&fl_65),
            median(&fl_2628),
            noise_suffix(more),
            l.fig(&six_five, exp, D::CyclesPerPin).unwrap_or(f64::NAN)
        ));
    }
    Ok((status_noisy(&parts), text))
}
