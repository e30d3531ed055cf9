#!/usr/bin/env bash
# Builds the guest with Debian's toolchain (rustc-web, cargo-web, rust-web-src), which
# ships the standard library's source that -Zbuild-std needs. Extra arguments go to
# cargo: `scripts/build-guest.sh clippy -- -D warnings` runs clippy instead.
set -euo pipefail
cd "$(dirname "$0")/../guest"
cmd=${1:-build}
shift || true
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
exec /usr/bin/cargo "$cmd" --release --quiet "$@"
