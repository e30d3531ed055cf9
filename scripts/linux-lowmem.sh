#!/usr/bin/env bash
# Claim 4's mechanism on a stock Linux: what each task's pagetables take of
# lowmem, with highpte (Debian's 686-pae default) and with `userpte=nohigh`.
# Under `vmm run --linux`, guest/linux-probe's `highpte-probe lowmem TASKS
# PTE_PAGES` starts TASKS tasks that each fill PTE_PAGES pte pages (one pte
# each) and reads /proc/meminfo's LowFree and PageTables before and with them
# all alive. Each configuration boots REPS times on 1 vCPU; every console and
# report is kept.
#
#   scripts/linux-lowmem.sh OUTDIR [REPS] [TASKS] [PTE_PAGES] [VMALLOC]
#                                           (default 2, 16, 16, Linux's own)
#
# Claim 4's cap: with TASKS above what fits (at most 8192), the probe stops
# at the first task that does not get there and says why (the failing
# fork's errno, or a child the OOM killer took). VMALLOC (e.g. 900M) goes
# on the command line as `vmalloc=`, which shrinks lowmem as it grows the
# vmalloc area; $LINUX_MEM and $LINUX_TIMEOUT shape the runs
# (scripts/linux-boot.sh).
#
# OUTDIR/summary.md: per configuration, the tasks that fit, why the next
# did not, and the medians of LowFree's drop and PageTables' growth, per
# task.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:?usage: $0 OUTDIR [REPS] [TASKS] [PTE_PAGES]}")
reps=${2:-2}
tasks=${3:-16}
pte_pages=${4:-16}
vmalloc=${5:-}
vmm=${VMM:-$root/target/x86_64-unknown-linux-gnu/release/vmm}
probe=$root/guest/linux-probe/target/i686-none/release/highpte-probe
[ -x "$probe" ] || "$root/scripts/build-linux-probe.sh"
mkdir -p "$out"
cat > "$out/probe.sh" <<SH
echo "vmm-linux: \$(nproc) CPUs, \$(cat /proc/cmdline)"
grep -E 'LowTotal|HighTotal' /proc/meminfo
echo "transparent huge pages: \$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
# Each OOM kill would dump every task on the console: thousands of lines.
echo 0 > /proc/sys/vm/oom_dump_tasks
highpte-probe lowmem $tasks $pte_pages
grep AnonHugePages /proc/meminfo
reboot -f
SH
"$root/scripts/linux-initrd.sh" "$out/probe.sh" "$out/probe.cpio" "$probe"
. "$root/scripts/linux-boot.sh"
for pte in highpte nohigh; do
    extra=""
    [ "$pte" = nohigh ] && extra="userpte=nohigh"
    # nokaslr: 32-bit KASLR may put the kernel anywhere below 512 MiB,
    # above a small lowmem (measured: a triple fault at vmalloc=850M).
    [ -n "$vmalloc" ] && extra="$extra nokaslr vmalloc=$vmalloc"
    for r in $(seq "$reps"); do
        linux_boot "$pte-$r" "$out/probe.cpio" 1 "$extra"
    done
done
rm -f "$out/probe.cpio"
python3 - "$out" <<'PY'
import json, sys, glob, os, statistics
out = sys.argv[1]
cells = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    pte = os.path.basename(f).split("-")[0]
    r = json.load(open(f))
    if r["outcome"]["kind"] == "shutdown" and "lowmem_tasks" in r["results"]:
        cells.setdefault(pte, []).append(r["results"])
lines = ["| configuration | runs | tasks | pte pages each | why the next did not fit | LowFree after, kB | LowFree drop, kB per task | PageTables growth, kB per task |",
         "|---|---:|---:|---:|---|---:|---:|---:|"]
def why(r):
    if r.get("lowmem_stop_killed"):
        return "a child was killed"
    if r.get("lowmem_stop_errno"):
        return f"fork: errno {r['lowmem_stop_errno']}"
    return "all fit"
for pte in ["highpte", "nohigh"]:
    rs = cells.get(pte, [])
    if not rs:
        lines.append(f"| {pte} | 0 | - | - | - | - | - | - |")
        continue
    per = lambda k: statistics.median(r[k] / max(r["lowmem_tasks"], 1) for r in rs)
    rng = lambda k: (min(r[k] / max(r["lowmem_tasks"], 1) for r in rs), max(r[k] / max(r["lowmem_tasks"], 1) for r in rs))
    d, g = per("lowfree_drop_kb"), per("pagetables_kb_grown")
    (dl, dh), (gl, gh) = rng("lowfree_drop_kb"), rng("pagetables_kb_grown")
    t = statistics.median(r["lowmem_tasks"] for r in rs)
    p = rs[0]["lowmem_pte_pages_per_task"]
    stops = ", ".join(sorted({why(r) for r in rs}))
    after = statistics.median(r.get("lowfree_after_kb", 0) for r in rs)
    lines.append(f"| {pte} | {len(rs)} | {t:.0f} | {p} | {stops} | {after:.0f} | {d:.0f} ({dl:.0f}..{dh:.0f}) | {g:.0f} ({gl:.0f}..{gh:.0f}) |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
