#!/usr/bin/env bash
# Builds guest/linux-probe (highpte-probe: a static i386 Linux program that
# times pte-page work, for `vmm run --linux`) with the guest's toolchain and
# bare i686 target. Extra arguments go to cargo (`clippy -- -D warnings`).
set -euo pipefail
cd "$(dirname "$0")/../guest/linux-probe"
cmd=${1:-build}
shift || true
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
/usr/bin/cargo "$cmd" --release --quiet "$@"
