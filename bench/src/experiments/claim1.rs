//! Claim 1: lazy against eager vmap, Nick Piggin's benchmark (vmap-bench).

use shared::config::{Setting as S, VmapVariant, Workload};
use shared::results::GuestResult as R;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, Experiment, PlotKind, Want::Vcpus};

pub(super) fn experiment() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2] {
        for form in [VmapVariant::Eager, VmapVariant::LazyPtes, VmapVariant::LazyTlb] {
            cells.push(vmap_bench(form, v, 10000));
        }
    }
    // Linux's one-thread figure ran on an SMP machine, where every eager flush
    // still went to every CPU: one looping vCPU of two.
    for form in [VmapVariant::Eager, VmapVariant::LazyPtes] {
        cells.push(vmap_bench(form, 2, 10000).with(S::BenchCpus(1)).label(format!("{form}, 1 thread on 2 vCPUs")));
    }
    let mut e = new_experiment(
        "vmap-bench",
        "Lazy vs eager vmap: Nick Piggin's benchmark (claim 1)",
        "vm_map_ram 4 pages, touch, unmap, on every vCPU, and on one vCPU of two as Linux's one-thread figure \
         ran (--bench-cpus 1): ns per iteration per --vmap form, and what vm_unmap_aliases costs with one lazy \
         mapping.",
        cells,
        VMAP_COLUMNS,
    );
    e.plot = Some(PlotKind::VmapForms);
    e.claims = vec![Claim::Claim1];
    e.adapt = Some(Adapt { figure: R::VmapBenchNs.into(), resolve_pct: 10, max_reps: 9 });
    e
}

/// Linux's own figure for claim 1 ("mm: rewrite vmap layer", 2.6.28): one
/// thread of map 4 pages, touch, unmap on an SMP machine, 14700 ns eagerly
/// against 2900 lazily. Its analogue: one looping vCPU of two, the other idle
/// and answering the eager form's flush IPIs (`--bench-cpus 1`). A measurement
/// to set beside Linux's, so it only adds text.
fn one_thread_on_smp(l: &Lookup) -> String {
    let cell =
        |form: VmapVariant| [is(S::Workload(Workload::VmapBench)), is(S::Vmap(form)), Vcpus(2), is(S::BenchCpus(1))];
    let got = (|| {
        let eager = l.fig(&cell(VmapVariant::Eager), None, R::VmapBenchNs)?;
        let lazy = l.fig(&cell(VmapVariant::LazyPtes), None, R::VmapBenchNs)?;
        let per_iter = |form: VmapVariant| -> Result<f64, Missing> {
            // The loop's own flushes (vmap_flushes also counts boot's and the
            // one-lazy-mapping rounds').
            Ok(l.fig(&cell(form), None, R::VmapBenchFlushes)? / l.fig(&cell(form), None, R::VmapBenchIters)?)
        };
        Ok::<_, Missing>((eager, lazy, per_iter(VmapVariant::Eager)?, per_iter(VmapVariant::LazyPtes)?))
    })();
    match got {
        Ok((eager, lazy, fe, fl)) => format!(
            "one thread on 2 vCPUs, as Linux measured it: eager {eager:.0} ns against lazy-ptes {lazy:.0} ns per \
             iteration, {:.1}x (Linux 2.6.28: 14700 against 2900 ns, 5.1x), from {fe:.2} against {fl:.4} global \
             flushes per iteration; ",
            eager / lazy
        ),
        Err(_) => String::new(),
    }
}

/// Decided on intervals: the ratio of the one-mapping rounds must lie within
/// 0.5..2 ("about one"; outside it refutes, across an end decides nothing), and
/// eager over lazy-ptes per iteration above 1 (lazy wins).
pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let mut last = Missing::NotRun;
    for v in [1, 2] {
        let base = |form: VmapVariant| {
            [is(S::Workload(Workload::VmapBench)), is(S::Vmap(form)), Vcpus(v), is(S::BenchCpus(0))]
        };
        let got = (|| {
            let eager = l.sample(&base(VmapVariant::Eager), None, R::VmapBenchNs)?;
            let lazy = l.sample(&base(VmapVariant::LazyPtes), None, R::VmapBenchNs)?;
            let eager_one = l.sample(&base(VmapVariant::Eager), None, R::VmapOneAliasNs)?;
            let one = l.sample(&base(VmapVariant::LazyPtes), None, R::VmapOneAliasNs)?;
            Ok((eager, lazy, eager_one, one))
        })();
        match got {
            Ok((eager, lazy, eager_one, one)) => {
                // The same round (map 4 pages, write, unmap, vm_unmap_aliases):
                // lazily, the purge flushes once; eagerly, the unmap flushed and
                // vm_unmap_aliases finds nothing.
                let (Some(r1), Some(many)) = (interval(&[&one, &eager_one], ratio), interval(&[&eager, &lazy], ratio))
                else {
                    return Err(Missing::NoFigure("vmap-bench".into(), R::VmapBenchNs.into()));
                };
                let about_one = within(&r1, 0.5, 2.0);
                let lazy_wins = above(&many, 1.0);
                let linux = one_thread_on_smp(l);
                let m = |x: &[f64]| median(x);
                return Ok((
                    status_noisy(&[about_one, lazy_wins]),
                    linux
                        + &format!(
                            "one lazy mapping's vm_unmap_aliases costs {:.2}x an eager vunmap {} (a map, write, \
                             unmap, vm_unmap_aliases round: {:.0} vs {:.0} ns){}; with many lazy mappings lazy-ptes \
                             is {:.1}x {} than eager {} ({:.0} vs {:.0} ns per vmap-bench iteration; {v} vCPU{})",
                            r1.value,
                            ci_range(&r1),
                            m(&one),
                            m(&eager_one),
                            match about_one {
                                Some(true) => "",
                                Some(false) => ", not about one",
                                None => ", the interval reaching past 0.5..2",
                            },
                            many.value,
                            match lazy_wins {
                                Some(true) => "faster",
                                Some(false) => "slower",
                                None => "faster or slower, within the noise,",
                            },
                            ci_range(&many),
                            m(&lazy),
                            m(&eager),
                            plural(v)
                        ),
                ));
            }
            Err(m) => keep_worst(&mut last, m),
        }
    }
    Err(last)
}
