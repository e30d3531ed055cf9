//! The report's SVG plots (plotters, SVG backend, no font files: text is left to
//! the viewer). Each plot shows medians with min-max whiskers of the cells that
//! ran; a plot with no measured point is not drawn.

use std::path::Path;

use plotters::prelude::*;

use shared::config::{AliasStrategy, Setting};
use shared::counters::Counter as C;
use shared::results::GuestResult as R;

use super::design::PlotKind;
use super::figures::{Derived as D, Figure};
use super::results::CellResult;
use super::stats::Stat;
use super::Error;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Bars by category, each with whiskers, and optional marks (the oracle).
struct Bars {
    title: String,
    y_desc: String,
    categories: Vec<String>,
    /// (series name, one value per category)
    series: Vec<(String, Vec<Option<Stat>>)>,
    marks: Option<(String, Vec<Option<f64>>)>,
}

/// Lines over a log2 x axis.
struct Lines {
    title: String,
    x_desc: String,
    y_desc: String,
    series: Vec<(String, Vec<(f64, Stat)>)>,
    /// Where the legend goes (out of the lines' way).
    legend: SeriesLabelPosition,
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

fn draw_bars(path: &Path, b: &Bars) -> Result<(), Error> {
    let ymax = b
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().map(|s| s.max))
        .chain(b.marks.iter().flat_map(|(_, m)| m.iter().flatten().copied()))
        .fold(0.0f64, f64::max);
    let n = b.categories.len();
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&b.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..(ymax * 1.15).max(1.0))
        .map_err(plot_err)?;
    let cats = b.categories.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                cats.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(b.y_desc.as_str())
        .y_label_formatter(&|v| super::render::num(*v))
        .draw()
        .map_err(plot_err)?;
    let k = b.series.len().max(1) as f64;
    let width = 0.8 / k;
    for (si, (name, values)) in b.series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let left = |i: usize| i as f64 - 0.4 + si as f64 * width;
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, s)| {
                s.map(|s| Rectangle::new([(left(i) + 0.02, 0.0), (left(i) + width - 0.02, s.median)], color.filled()))
            }))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, s)| {
                let mid = left(i) + width / 2.0;
                s.map(|s| PathElement::new(vec![(mid, s.min), (mid, s.max)], BLACK.stroke_width(2)))
            }))
            .map_err(plot_err)?;
    }
    if let Some((name, marks)) = &b.marks {
        chart
            .draw_series(marks.iter().enumerate().filter_map(|(i, m)| {
                m.map(|m| PathElement::new(vec![(i as f64 - 0.42, m), (i as f64 + 0.42, m)], BLACK.stroke_width(3)))
            }))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(3)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_err)?;
    root.present().map_err(plot_err)
}

fn draw_lines(path: &Path, l: &Lines) -> Result<(), Error> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    lines_on(&root, l)?;
    root.present().map_err(plot_err)
}

/// Two line plots side by side (figures of very different sizes).
fn draw_lines_pair(path: &Path, a: &Lines, b: &Lines) -> Result<(), Error> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(600);
    lines_on(&left, a)?;
    lines_on(&right, b)?;
    root.present().map_err(plot_err)
}

fn lines_on(root: &DrawingArea<SVGBackend, plotters::coord::Shift>, l: &Lines) -> Result<(), Error> {
    if l.series.iter().all(|(_, v)| v.is_empty()) {
        // No point gives no range (an infinite one would never finish drawing).
        root.titled(&format!("{}: not measured", l.title), ("sans-serif", 20)).map_err(plot_err)?;
        return Ok(());
    }
    let pts = || l.series.iter().flat_map(|(_, v)| v.iter());
    let xmin = pts().map(|(x, _)| x.log2()).fold(f64::INFINITY, f64::min);
    let xmax = pts().map(|(x, _)| x.log2()).fold(f64::NEG_INFINITY, f64::max);
    let ymax = pts().map(|(_, s)| s.max).fold(0.0f64, f64::max);
    let (xmin, xmax) = if xmin < xmax { (xmin, xmax) } else { (xmin - 1.0, xmin + 1.0) };
    let mut chart = ChartBuilder::on(root)
        .caption(&l.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((xmin - 0.3)..(xmax + 0.3), 0f64..(ymax * 1.15).max(1e-9))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_labels(((xmax - xmin) as usize + 1).max(2))
        .x_label_formatter(&|x| {
            let r = x.round();
            if (x - r).abs() < 0.01 {
                format!("{}", 2f64.powf(r))
            } else {
                String::new()
            }
        })
        .x_desc(l.x_desc.as_str())
        .y_desc(l.y_desc.as_str())
        .y_label_formatter(&|v| super::render::num(*v))
        .draw()
        .map_err(plot_err)?;
    for (si, (name, points)) in l.series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let line: Vec<(f64, f64)> = points.iter().map(|(x, s)| (x.log2(), s.median)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(plot_err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(x, s)| PathElement::new(vec![(x.log2(), s.min), (x.log2(), s.max)], color.stroke_width(1))),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(l.legend.clone())
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// Per repetition `a / b`, over the repetitions.
fn per_rep(c: &CellResult, a: impl Into<Figure>, b: impl Into<Figure>) -> Option<Stat> {
    let (a, b) = (a.into(), b.into());
    let v: Vec<f64> = c
        .reps
        .iter()
        .filter_map(|(_, f)| match (f.get(&a), f.get(&b)) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    Stat::of(&v)
}

fn param(c: &CellResult, key: &str) -> Option<f64> {
    c.cell.config.get(key).and_then(|v| v.parse().ok())
}

/// Groups cells by a parameter into series of (x, stat) points.
fn series_by(
    cells: &[&CellResult],
    group: &str,
    x: &str,
    value: impl Fn(&CellResult) -> Option<Stat>,
) -> Vec<(String, Vec<(f64, Stat)>)> {
    let mut out: Vec<(String, Vec<(f64, Stat)>)> = Vec::new();
    for c in cells {
        let (Some(g), Some(xv), Some(s)) = (c.cell.config.get(group), param(c, x), value(c)) else { continue };
        if xv <= 0.0 {
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == g) {
            Some((_, pts)) => pts.push((xv, s)),
            None => out.push((g.clone(), vec![(xv, s)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draws an experiment's plot into `dir`; returns the file name, or None when
/// no cell measured a point.
pub fn draw(kind: PlotKind, cells: &[&CellResult], dir: &Path) -> Result<Option<String>, Error> {
    let path = dir.join(kind.file_name());
    let drawn = match kind {
        PlotKind::CostPerPin => {
            let used: Vec<&&CellResult> =
                cells.iter().filter(|c| c.stats.contains_key(&Figure::from(D::CyclesPerPin))).collect();
            if used.is_empty() {
                return Ok(None);
            }
            draw_bars(
                &path,
                &Bars {
                    title: "Cycles per pagetable pin by alias strategy".into(),
                    y_desc: "cycles per pin (median, min-max)".into(),
                    categories: used.iter().map(|c| c.cell.label.clone()).collect(),
                    series: vec![(
                        "cycles per pin".into(),
                        used.iter().map(|c| c.stats.get(&Figure::from(D::CyclesPerPin)).copied()).collect(),
                    )],
                    // The oracle cell's median, as a mark on every bar.
                    marks: used
                        .iter()
                        .find(|c| c.cell.is(Setting::Alias(AliasStrategy::Oracle)))
                        .and_then(|o| o.median(D::CyclesPerPin))
                        .map(|m| ("oracle".into(), vec![Some(m); used.len()])),
                },
            )
        }
        PlotKind::Crossover => {
            let by = |figure: D| {
                let mut s = series_by(cells, "alias", "churn-every", move |c| c.stat(figure));
                s.retain(|(n, _)| n != "none");
                s
            };
            let (model, measured) = (by(D::ModelCyclesPerPin), by(D::CyclesPerPin));
            if model.is_empty() && measured.is_empty() {
                return Ok(None);
            }
            let lines = |title: &str, series| Lines {
                title: title.into(),
                x_desc: "--churn-every (an alias source before every Nth fork)".into(),
                y_desc: "cycles per pin (median, min-max)".into(),
                series,
                legend: SeriesLabelPosition::UpperRight,
            };
            draw_lines_pair(
                &path,
                &lines("Priced by the calibrated model", model),
                &lines("As measured (emulated TSC)", measured),
            )
        }
        PlotKind::FlushesVsFrequency => {
            // Every call a strategy makes (the empty ones are its waste) against
            // the flushes the oracle cell made.
            let mut series = series_by(cells, "alias", "churn-every", |c| per_rep(c, C::VmUnmapAliases, C::PtPins));
            series.retain(|(n, _)| n != "oracle");
            for (name, _) in &mut series {
                *name = format!("{name}: vm_unmap_aliases calls per pin");
            }
            let mut oracle =
                series_by(cells, "alias", "churn-every", |c| per_rep(c, C::VmUnmapAliasesFlushed, C::PtPins));
            oracle.retain(|(n, _)| n == "oracle");
            for (_, pts) in oracle {
                series.push(("oracle: its flushes per pin".into(), pts));
            }
            if series.is_empty() {
                return Ok(None);
            }
            draw_lines(
                &path,
                &Lines {
                    title: "Flushes against alias frequency".into(),
                    x_desc: "--churn-every (a vmap churn step before every Nth fork)".into(),
                    y_desc: "per pin".into(),
                    series,
                    legend: SeriesLabelPosition::MiddleRight,
                },
            )
        }
        PlotKind::PkmapSweep | PlotKind::PkmapWrap => {
            let left: (&str, &str, &[(Figure, &str)]) = if kind == PlotKind::PkmapSweep {
                (
                    "Pool flushes per 1000 page faults",
                    "per 1000 page faults",
                    &[
                        (Figure::Derived(D::PkmapFlushesPerKfault), "pool flushes"),
                        (Figure::Derived(D::FlushIpisPerKfault), "flush IPIs"),
                        (Figure::Derived(D::KmapSleepsPerKfault), "sleeps on a full pool"),
                    ],
                )
            } else {
                (
                    "Pool wraps per run (a scan and a global flush each)",
                    "per run",
                    &[(Figure::Result(R::PkmapWrapFlushes), "pool wraps")],
                )
            };
            if !pkmap_plot(&path, cells, left)? {
                return Ok(None);
            }
            Ok(())
        }
        PlotKind::VmapForms => {
            // A series per (vCPUs, looping CPUs): every vCPU loops, or one of
            // them (--bench-cpus 1, Linux's one thread on SMP).
            let threads = |c: &CellResult| c.cell.config.get("bench-cpus").cloned().unwrap_or_else(|| "0".into());
            let mut forms: Vec<String> = Vec::new();
            let mut vcpus: Vec<(u32, String)> = Vec::new();
            for c in cells.iter().filter(|c| c.stats.contains_key(&Figure::from(R::VmapBenchNs))) {
                let f = c.cell.config.get("vmap").cloned().unwrap_or_default();
                if !forms.contains(&f) {
                    forms.push(f);
                }
                let key = (c.cell.vcpus, threads(c));
                if !vcpus.contains(&key) {
                    vcpus.push(key);
                }
            }
            if forms.is_empty() {
                return Ok(None);
            }
            vcpus.sort();
            let series = vcpus
                .iter()
                .map(|(v, t)| {
                    let vals = forms
                        .iter()
                        .map(|f| {
                            cells
                                .iter()
                                .find(|c| {
                                    c.cell.vcpus == *v && threads(c) == *t && c.cell.config.get("vmap") == Some(f)
                                })
                                .and_then(|c| c.stats.get(&Figure::from(R::VmapBenchNs)).copied())
                        })
                        .collect();
                    let v = *v;
                    if t != "0" {
                        return (format!("{t} thread{} on {v} vCPUs", if t == "1" { "" } else { "s" }), vals);
                    }
                    (format!("{v} vCPU{}", if v > 1 { "s" } else { "" }), vals)
                })
                .collect();
            draw_bars(
                &path,
                &Bars {
                    title: "Lazy vs eager vmap: ns per vmap-bench iteration".into(),
                    y_desc: "ns per iteration (median, min-max)".into(),
                    categories: forms,
                    series,
                    marks: None,
                },
            )
        }
    };
    drawn.map(|()| Some(kind.file_name().to_owned()))
}

/// A LAST_PKMAP sweep: `left` (title, y axis, figures and their names) beside
/// the kmap_lock waits per 1000 faults; false (nothing drawn) when neither was
/// measured.
fn pkmap_plot(path: &Path, cells: &[&CellResult], left: (&str, &str, &[(Figure, &str)])) -> Result<bool, Error> {
    let sweep = |figs: &[(Figure, &str)]| -> Vec<(String, Vec<(f64, Stat)>)> {
        figs.iter()
            .filter_map(|(fig, name)| {
                let pts: Vec<(f64, Stat)> =
                    cells.iter().filter_map(|c| Some((param(c, "last-pkmap")?, c.stat(*fig)?))).collect();
                (!pts.is_empty()).then(|| (name.to_string(), pts))
            })
            .collect()
    };
    let (title, y_desc, figs) = left;
    let flushes = sweep(figs);
    let lock = sweep(&[(Figure::Derived(D::KmapLockWaitsPerKfault), "kmap_lock waits")]);
    if flushes.is_empty() && lock.is_empty() {
        return Ok(false);
    }
    let x_desc = "LAST_PKMAP (--last-pkmap)".to_owned();
    draw_lines_pair(
        path,
        &Lines {
            title: title.into(),
            x_desc: x_desc.clone(),
            y_desc: y_desc.into(),
            series: flushes,
            legend: SeriesLabelPosition::UpperRight,
        },
        &Lines {
            title: "kmap_lock waits per 1000 page faults".into(),
            x_desc,
            y_desc: "per 1000 page faults".into(),
            series: lock,
            legend: SeriesLabelPosition::UpperRight,
        },
    )
    .map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::CellSpec;

    fn cell(params: &[(&str, &str)], figs: &[(&str, f64)]) -> CellResult {
        let spec = CellSpec {
            linux: None,
            label: params.iter().map(|p| p.1).collect::<Vec<_>>().join(" "),
            vcpus: 1,
            mem: "256m".into(),
            timeout: 10,
            params: params.iter().map(|(k, v)| Setting::parse(k, v).unwrap()).collect(),
        };
        let f = crate::figures::named(figs);
        CellResult {
            cell: spec.resolve("e").unwrap(),
            reps: vec![(0, f.clone())],
            failures: vec![],
            stats: f.iter().map(|(k, v)| (*k, Stat::exact(*v * 0.9, *v, *v * 1.1, 3))).collect(),
            warnings: vec![],
            host_modes: vec![],
        }
    }

    #[test]
    fn every_plot_draws_an_svg_and_an_empty_one_is_skipped() {
        let dir = vmm::platform::appliance::tempdir().unwrap();
        let pins = [
            cell(&[("alias", "none"), ("pvmmu", "on")], &[("cycles_per_pin", 100.0)]),
            cell(&[("alias", "oracle"), ("pvmmu", "on")], &[("cycles_per_pin", 80.0)]),
            cell(&[("alias", "always-flush"), ("pvmmu", "on")], &[("cycles_per_pin", 300.0)]),
        ];
        let refs: Vec<&CellResult> = pins.iter().collect();
        assert_eq!(draw(PlotKind::CostPerPin, &refs, dir.path()).unwrap().as_deref(), Some("cost-per-pin.svg"));
        let freq: Vec<CellResult> = [1, 4, 64]
            .iter()
            .flat_map(|e| {
                ["always-flush", "oracle"].map(|a| {
                    let calls = if a == "oracle" { 10.0 / *e as f64 } else { 10.0 };
                    cell(
                        &[("alias", a), ("churn-every", &e.to_string())],
                        &[
                            ("vm_unmap_aliases", calls),
                            ("vm_unmap_aliases_flushed", 10.0 / *e as f64),
                            ("pt_pins", 10.0),
                        ],
                    )
                })
            })
            .collect();
        let refs: Vec<&CellResult> = freq.iter().collect();
        assert!(draw(PlotKind::FlushesVsFrequency, &refs, dir.path()).unwrap().is_some());
        let svg = std::fs::read_to_string(dir.path().join("flushes-vs-alias-frequency.svg")).unwrap();
        assert!(svg.contains("oracle: its flushes per pin"), "the oracle's line");
        let pk: Vec<CellResult> =
            ["128", "2048"].iter().map(|n| cell(&[("last-pkmap", n)], &[("pkmap_flushes_per_kfault", 1.0)])).collect();
        let refs: Vec<&CellResult> = pk.iter().collect();
        // Only one half measured: the other says so instead of hanging.
        let file = draw(PlotKind::PkmapSweep, &refs, dir.path()).unwrap().expect("the sweep's plot");
        let svg = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(svg.contains("not measured"), "the empty half");
        let wrap: Vec<CellResult> = [("128", 64.0), ("2048", 4.0)]
            .iter()
            .map(|(n, w)| {
                cell(&[("last-pkmap", n)], &[("pkmap_wrap_flushes", *w), ("kmap_lock_waits_per_kfault", 9.0)])
            })
            .collect();
        let refs: Vec<&CellResult> = wrap.iter().collect();
        assert_eq!(draw(PlotKind::PkmapWrap, &refs, dir.path()).unwrap().as_deref(), Some("kmap-pool-wrap.svg"));
        let svg = std::fs::read_to_string(dir.path().join("kmap-pool-wrap.svg")).unwrap();
        assert!(svg.contains("pool wraps") && !svg.contains("not measured"), "both halves");
        let vm: Vec<CellResult> =
            ["eager", "lazy-ptes"].iter().map(|f| cell(&[("vmap", f)], &[("vmap_bench_ns", 1000.0)])).collect();
        let refs: Vec<&CellResult> = vm.iter().collect();
        assert!(draw(PlotKind::VmapForms, &refs, dir.path()).unwrap().is_some());
        let svg = std::fs::read_to_string(dir.path().join("vmap-lazy-vs-eager.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("lazy-ptes"), "{}", &svg[..200.min(svg.len())]);
        assert_eq!(draw(PlotKind::CostPerPin, &[], dir.path()).unwrap(), None);
    }
}
