#!/usr/bin/env bash
# Measures the lazy vmap figures the README records (claim 1 of the design notes)
# in one `vmm batch`, and prints them as a Markdown table (also written to
# results/vmap-figures.md): Nick Piggin's benchmark (map 4 pages, touch, unmap,
# on every vCPU) in each --vmap form on 1 and 2 vCPUs, its flushes and IPIs per
# 1000 iterations, and what vm_unmap_aliases() costs with one lazy mapping.
#
#   scripts/vmap-figures.sh [--reps N]      (default 3; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/figures-lib.sh
figures_setup vmap-figures "$@"
python3 - "$reps" >"$jobs" <<'PY'
import json, sys
jobs = []
for r in range(int(sys.argv[1])):
    for form in ["eager", "lazy-ptes", "lazy-tlb"]:
        for v in ["1", "2"]:
            jobs.append(["run", "--mem", "256m", "--lowmem", "64m", "--debug", "off", "--workload", "vmap-bench",
                         "--vmap", form, "--vcpus", v, "--iterations", "10000", "--timeout", "300"])
print(json.dumps({"jobs": jobs}))
PY
status=0
"$vmm" batch "$jobs" --out "$lines" >&2 || status=$?
python3 - "$lines" <<'PY' | tee "$out/vmap-figures.md"
import json, statistics, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
ok = [r for r in rows if r["exit_code"] == 0]
for r in rows:
    if r["exit_code"] != 0:
        rep = r.get("report") or {}
        print(f"FAILED (left out): exit {r['exit_code']}, config {rep.get('config')}, outcome {json.dumps(rep.get('outcome'))}", file=sys.stderr)
med = statistics.median
fig = collections.defaultdict(lambda: collections.defaultdict(list))
for r in ok:
    rep = r["report"]
    res = rep["results"]
    d = fig[(rep["config"]["vmap"], rep["vcpus"])]
    per = 1000 / res["vmap_bench_iters"]
    d["ns"].append(res["vmap_bench_ns"])
    d["flushes"].append(res["vmap_bench_flushes"] * per)
    d["ipis"].append(res["vmap_bench_flush_ipis"] * per)
    d["one"].append(res["vmap_one_alias_ns"])
def m(form, v, k, f="{:.0f}"):
    x = fig[(form, v)][k]
    return f.format(med(x)) if x else "-"
print("### Nick Piggin's vmap benchmark (claim 1)\n")
print("`--workload vmap-bench --iterations 10000 --debug off`, 256 MiB, lowmem 64 MiB: on every vCPU at once, "
      "vm_map_ram 4 pages, write each, vm_unmap_ram. ns per iteration of one vCPU's loop; flushes (every-CPU TLB "
      "flushes) and flush IPIs per 1000 iterations of all vCPUs; median of the repetitions.\n")
print("| --vmap | ns/iter, 1 vCPU | ns/iter, 2 vCPUs | flushes /1000, 1 vCPU | flushes /1000, 2 vCPUs | IPIs /1000, 2 vCPUs |")
print("|---|---:|---:|---:|---:|---:|")
for form in ["eager", "lazy-ptes", "lazy-tlb"]:
    print(f"| {form} | {m(form,1,'ns')} | {m(form,2,'ns')} | {m(form,1,'flushes','{:.2f}')} | "
          f"{m(form,2,'flushes','{:.2f}')} | {m(form,2,'ipis','{:.2f}')} |")
print("| Linux 2.6.28, old -> new (x86-64, 1 and 8 threads) | 14700 -> 2900 | 70631 -> 2900 (8 threads) | | | |")
def ratio(v, form):
    a, b = fig[("eager", v)]["ns"], fig[(form, v)]["ns"]
    return f"{med(a) / med(b):.1f}x" if a and b else "-"
print(f"\nEager / lazy-ptes: {ratio(1, 'lazy-ptes')} on 1 vCPU, {ratio(2, 'lazy-ptes')} on 2 vCPUs "
      f"(Linux: 5.1x on 1 thread, 24x on 8).\n")
print("One lazy mapping, then `vm_unmap_aliases()` (map 4 pages, write, unmap, vm_unmap_aliases; boot vCPU, "
      "the other waiting), ns per round, next to one eager iteration:\n")
print("| --vmap | 1 vCPU | 2 vCPUs |\n|---|---:|---:|")
for form in ["eager", "lazy-ptes", "lazy-tlb"]:
    print(f"| {form} | {m(form,1,'one')} | {m(form,2,'one')} |")
PY
exit $status
