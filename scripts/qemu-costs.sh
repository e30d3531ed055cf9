#!/usr/bin/env bash
# Measures what running QEMU-hosted costs (the table of docs/qemu-hosted.md,
# "Costs") and prints it as Markdown (also written to results/qemu-costs.md):
#   - N separate `vmm run --vcpus 2` of the boot workload, each with its own
#     appliance boot: the appliance's boot, the inner vmm's start to guest main,
#     the whole command's wall time;
#   - one `vmm batch` of N hypercall-bench runs (a port-I/O exit the VMM
#     ignores, a nop hypercall's round trip) and 10 ipi-pingpong runs on 2 vCPUs.
#
#   scripts/qemu-costs.sh [--reps N]      (default 3; min-max is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/figures-lib.sh
figures_setup qemu-costs "$@"
runs=$(mktemp -d)
trap 'rm -rf "$jobs" "$lines" "$runs"' EXIT
status=0
for i in $(seq 1 "$reps"); do
    start=$(date +%s%N)
    "$vmm" run --vcpus 2 --json "$runs/boot-$i.json" >/dev/null || status=$?
    end=$(date +%s%N)
    echo $(((end - start) / 1000000)) >"$runs/boot-$i.wall_ms"
done
python3 - "$reps" >"$jobs" <<'PY'
import json, sys
jobs = [["run", "--workload", "hypercall-bench"] for _ in range(int(sys.argv[1]))]
jobs += [["run", "--workload", "ipi-pingpong", "--vcpus", "2"] for _ in range(10)]
print(json.dumps({"jobs": jobs}))
PY
"$vmm" batch "$jobs" --out "$lines" >&2 || status=$?
python3 - "$runs" "$lines" <<'PY' | tee "$out/qemu-costs.md"
import glob, json, os, sys
runs, lines = sys.argv[1], sys.argv[2]
boots = []
for f in sorted(glob.glob(os.path.join(runs, "boot-*.json"))):
    r = json.load(open(f))
    if r["exit_code"] != 0:
        print(f"FAILED (left out): boot run {f}: exit {r['exit_code']}, {json.dumps(r.get('outcome'))}", file=sys.stderr)
        continue
    wall = int(open(f[: -len(".json")] + ".wall_ms").read())
    boots.append((r["host"], r["timing"], wall))
rows = [json.loads(l) for l in open(lines)]
for r in rows:
    if r["exit_code"] != 0:
        print(f"FAILED (left out): exit {r['exit_code']}, {json.dumps((r.get('report') or {}).get('outcome'))}", file=sys.stderr)
res = lambda w: [r["report"]["results"] for r in rows if r["exit_code"] == 0 and r["report"]["config"]["workload"] == w]
hb, ipi = res("hypercall-bench"), res("ipi-pingpong")
def span(xs, unit, scale=1.0, fmt="{:.1f}"):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "-"
    lo, hi = fmt.format(min(xs)), fmt.format(max(xs))
    sep = "" if unit in ("%", "x") else " "
    return f"{lo}{sep}{unit}" if lo == hi else f"{lo}-{hi}{sep}{unit}"
mode = {b[0]["mode"] for b in boots}
print(f"Host mode: {', '.join(sorted(mode))}; {len(boots)} boot runs, {len(hb)} hypercall-bench, {len(ipi)} ipi-pingpong.\n")
print("| what | figure |\n|---|---|")
print(f"| appliance boot to ready (kvm_amd loaded, jobs starting) | {span([b[0].get('appliance_boot_ms') for b in boots], 's', 1e-3, '{:.2f}')} |")
print(f"| inner `vmm` start to guest main | {span([b[1].get('to_main_ms') for b in boots], 'ms', 1, '{:.0f}')} |")
share = [b[0]["appliance_boot_ms"] / b[2] * 100 for b in boots if b[0].get("appliance_boot_ms")]
print(f"| whole `vmm run --vcpus 2` (boot workload) | {span([b[2] for b in boots], 's', 1e-3, '{:.2f}')}, "
      f"of which the appliance's boot is {span(share, '%', 1, '{:.0f}')} |")
print(f"| port-I/O exit that the VMM ignores | {span([r['pio_exit_ns'] for r in hb], 'us', 1e-3)} |")
print(f"| hypercall round trip (`nop`) | {span([r['hypercall_ns'] for r in hb], 'us', 1e-3)}, "
      f"{span([r['hypercall_per_pio_permille'] for r in hb], 'x', 1e-3, '{:.2f}')} the bare exit |")
print(f"| IPI round trip to a halted vCPU and back | {span([r['ipi_roundtrip_ns'] for r in ipi], 'us', 1e-3, '{:.0f}')} |")
PY
exit $status
