#!/usr/bin/env bash
# Claim 5 on a stock Linux: Debian's 686-pae kernel under `vmm run --linux`,
# with highpte (its default) and with `userpte=nohigh` (pte pages in lowmem),
# on 1 and 2 vCPUs, guest/linux-probe's highpte-probe timing pte-page work.
# Each configuration boots REPS times; every console and report is kept.
#
#   scripts/linux-highpte.sh OUTDIR [REPS]        (default 3)
#
# OUTDIR/summary.md: the median of each figure per configuration, and the
# highpte / nohigh ratio with its range over the repetitions.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:?usage: $0 OUTDIR [REPS]}")
reps=${2:-3}
vmm=${VMM:-$root/target/x86_64-unknown-linux-gnu/release/vmm}
probe=$root/guest/linux-probe/target/i686-none/release/highpte-probe
[ -x "$probe" ] || "$root/scripts/build-linux-probe.sh"
mkdir -p "$out"
cat > "$out/probe.sh" <<'SH'
echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
highpte-probe 64 16 5
grep AnonHugePages /proc/meminfo
reboot -f
SH
"$root/scripts/linux-initrd.sh" "$out/probe.sh" "$out/probe.cpio" "$probe"
. "$root/scripts/linux-boot.sh"
for vcpus in 1 2; do
    for pte in highpte nohigh; do
        extra=""
        [ "$pte" = nohigh ] && extra="userpte=nohigh"
        for r in $(seq "$reps"); do
            linux_boot "$pte-${vcpus}vcpu-$r" "$out/probe.cpio" "$vcpus" "$extra"
        done
    done
done
rm -f "$out/probe.cpio"
python3 - "$out" <<'PY'
import json, sys, glob, os, statistics
out = sys.argv[1]
figs = ["sparse_fault_cycles_per_pte", "sparse_zap_cycles_per_pte", "dense_fork_exit_cycles_per_pte", "pagetables_kb"]
cells = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    pte, vcpus, _ = name.split("-")
    r = json.load(open(f))
    if r["outcome"]["kind"] != "shutdown":
        continue
    cells.setdefault((pte, vcpus), []).append(r["results"])
lines = ["| figure | vCPUs | highpte (median) | nohigh (median) | highpte / nohigh | runs |", "|---|---|---:|---:|---:|---|"]
for fig in figs:
    for v in ["1vcpu", "2vcpu"]:
        h = [c[fig] for c in cells.get(("highpte", v), []) if fig in c]
        n = [c[fig] for c in cells.get(("nohigh", v), []) if fig in c]
        if not h or not n:
            lines.append(f"| {fig} | {v[0]} | - | - | - | {len(h)}+{len(n)} |")
            continue
        mh, mn = statistics.median(h), statistics.median(n)
        lo, hi = min(h) / max(n), max(h) / min(n)
        lines.append(f"| {fig} | {v[0]} | {mh:.0f} | {mn:.0f} | {mh/mn:.2f} ({lo:.2f}..{hi:.2f}) | {len(h)}+{len(n)} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
