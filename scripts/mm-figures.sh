#!/usr/bin/env bash
# Measures the memory-management figures the README records (claims 2, 4 and 5 of
# the design notes) in one `vmm batch`, and prints them as Markdown tables (also
# written to results/mm-figures.md):
#   - cost of one pte access (map, read, unmap) per --pte variant, 1 and 2 vCPUs;
#   - kmap_lock contention and flush IPIs per 1000 faults for LAST_PKMAP 128..2048;
#   - how many tasks fit at a given lowmem, lowpte vs highpte.
#
#   scripts/mm-figures.sh [--reps N]      (default 3; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/figures-lib.sh
figures_setup mm-figures "$@"
python3 - "$reps" >"$jobs" <<'PY'
import json, sys
reps = int(sys.argv[1])
jobs = []
base = ["run", "--mem", "256m", "--lowmem", "64m", "--debug", "off"]
for r in range(reps):
    for pte in ["lowpte", "atomic", "persistent", "percpu-pool", "per-task"]:
        for v in ["1", "2"]:
            jobs.append(base + ["--workload", "pte-bench", "--pte", pte, "--vcpus", v, "--pages", "2048", "--rounds", "2000"])
    for n in ["128", "256", "512", "1024", "2048"]:
        jobs.append(base + ["--workload", "mm-all", "--pte", "persistent", "--vcpus", "2", "--last-pkmap", n,
                            "--tasks", "16", "--pages", "32", "--rounds", "3", "--ptcache", "none"])
for low in ["16m", "32m"]:
    for pte in ["lowpte", "atomic"]:
        jobs.append(["run", "--mem", "512m", "--lowmem", low, "--workload", "task-capacity", "--pte", pte,
                     "--vcpus", "2", "--tasks", "512", "--pages", "64"])
print(json.dumps({"jobs": jobs}))
PY
status=0
"$vmm" batch "$jobs" --out "$lines" >&2 || status=$?
python3 - "$lines" <<'PY' | tee "$out/mm-figures.md"
import json, statistics, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
def cfg(r): return r["report"]["config"]
def tot(r, k): return r["report"]["counter_totals"].get(k, 0)
def ok(r): return r["exit_code"] == 0
bad = [r for r in rows if not ok(r)]
for r in bad:
    rep = r.get("report") or {}
    print(f"FAILED (left out of the tables): exit {r['exit_code']}, config {rep.get('config')}", file=sys.stderr)
    print(f"  outcome: {json.dumps(rep.get('outcome'))}", file=sys.stderr)
    for line in (r.get("stdout") or [])[-8:]:
        print(f"  | {line}", file=sys.stderr)
med = statistics.median
print("### Cost of one pte access (claim 5)\n")
print("`--workload pte-bench --pages 2048 --rounds 2000 --debug off`, 256 MiB, lowmem 64 MiB; TSC cycles per map+read+unmap, median of the repetitions.\n")
cost = collections.defaultdict(list)
for r in rows:
    c = cfg(r)
    if c["workload"] == "pte-bench" and ok(r):
        cost[(c["pte"], r["report"]["vcpus"])].append(tot(r, "pte_bench_cycles") / max(1, tot(r, "pte_bench_accesses")))
print("| --pte | 1 vCPU | 2 vCPUs |\n|---|---:|---:|")
for pte in ["lowpte", "atomic", "persistent", "percpu-pool", "per-task"]:
    cells = [f"{med(cost[(pte, v)]):.0f}" if cost[(pte, v)] else "-" for v in (1, 2)]
    print(f"| {pte} | {cells[0]} | {cells[1]} |")
print("\n### The persistent pool: kmap_lock and flushes per 1000 faults (claim 2)\n")
print("`--workload mm-all --pte persistent --vcpus 2 --tasks 16 --pages 32 --rounds 3 --ptcache none`, per 1000 page faults, median.\n")
pk = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    c = cfg(r)
    if c["workload"] == "mm-all" and ok(r):
        f = max(1, tot(r, "page_faults")) / 1000
        d = pk[int(c["last-pkmap"])]
        for k in ["kmap_lock_taken", "kmap_lock_waits", "kmap_lock_spins", "pkmap_flushes", "tlb_shootdown_kernel", "kmap_sleeps"]:
            d[k].append(tot(r, k) / f)
print("| LAST_PKMAP | lock taken | lock waits | spins | pool flushes | flush IPIs | sleeps |\n|---:|---:|---:|---:|---:|---:|---:|")
for n in sorted(pk):
    d = pk[n]
    print(f"| {n} | {med(d['kmap_lock_taken']):.0f} | {med(d['kmap_lock_waits']):.0f} | {med(d['kmap_lock_spins']):.0f} | "
          f"{med(d['pkmap_flushes']):.2f} | {med(d['tlb_shootdown_kernel']):.2f} | {med(d['kmap_sleeps']):.2f} |")
print("\n### Tasks that fit in lowmem (claim 4)\n")
print("`--workload task-capacity --mem 512m --tasks 512 --pages 64` (each task: 64 pagetable pages of sparse memory).\n")
print("| lowmem | lowpte | highpte (atomic) |\n|---|---:|---:|")
cap = {}
for r in rows:
    c = cfg(r)
    if c["workload"] == "task-capacity":
        cap[(int(c["lowmem"]) >> 20, c["pte"])] = r["report"]["results"].get("tasks_started", "-")
for low in sorted({k[0] for k in cap}):
    print(f"| {low} MiB | {cap.get((low, 'lowpte'), '-')} | {cap.get((low, 'atomic'), '-')} |")
if bad:
    sys.exit(1)
PY
exit "$status"
