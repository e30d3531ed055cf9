#!/usr/bin/env bash
# Sets everything up and runs the main job. Until `vmm bench` exists this boots the
# default configuration and the interface micro-benchmarks, and prints their reports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
vmm=target/x86_64-unknown-linux-gnu/release/vmm
"$vmm" run --vcpus 2 --stats
"$vmm" run --workload hypercall-bench --stats
"$vmm" run --vcpus 2 --workload ipi-pingpong --stats
