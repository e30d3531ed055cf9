#!/usr/bin/env bash
# Sets everything up and runs the main job. Until `vmm bench` exists this boots the
# default configuration and the interface micro-benchmarks, prints their reports,
# and measures the host's alias check per pin (`vmm pin-cost`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
vmm=target/x86_64-unknown-linux-gnu/release/vmm
"$vmm" run --vcpus 2 --stats
"$vmm" run --workload hypercall-bench --stats
"$vmm" run --vcpus 2 --workload ipi-pingpong --stats
"$vmm" pin-cost    # the PV MMU's alias check per pin, each --host-check, 10 to 100k lazy aliases
