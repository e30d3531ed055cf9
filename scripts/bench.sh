#!/usr/bin/env bash
# Sets everything up and runs the main job: the benchmark's default matrix
# (`vmm bench`: every --alias strategy on the fork-heavy workload with vmap churn,
# 2 vCPUs, --pvmmu on, 3 repetitions each, against the oracle). Its tables, plots
# and verdicts go to results/<timestamp>/ and the summary to the terminal. Then the
# host's alias check per pin (`vmm pin-cost`, no guest). --full runs every
# experiment, the 2002 mail's 20 configurations among them (highpte-2002).
#
#   scripts/bench.sh [ARGS...]     ARGS go to `vmm bench`, e.g. --full, --reps 5
#
# Exits non-zero when a bench cell failed (the report says why).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
vmm=target/x86_64-unknown-linux-gnu/release/vmm
status=0
"$vmm" bench "$@" || status=$?
"$vmm" pin-cost    # the PV MMU's alias check per pin, each --host-check, 10 to 100k lazy aliases
exit "$status"
