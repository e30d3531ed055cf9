#!/usr/bin/env bash
# Builds the guest kernel (Debian's rustc-web with the standard library's source,
# -Zbuild-std, its own target), guest/linux-probe (the same way: a static i386
# Linux program for `vmm run --linux`) and the vmm (release, statically linked).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guest.sh
scripts/build-linux-probe.sh
cargo build --release --quiet
# The fresh guest into the user's data directory too (scripts/data.sh).
scripts/data.sh 2>/dev/null
