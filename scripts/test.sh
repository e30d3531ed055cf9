#!/usr/bin/env bash
# Sets everything up and runs every test: formatting and lints (host and guest), unit
# tests, and the integration tests that boot the real guest (QEMU-hosted where the
# local KVM cannot run it, and bare under qemu-system-i386).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
echo "== format and lints" >&2
cargo fmt --all -- --check
(cd guest && cargo fmt -- --check)
(cd guest/linux-probe && cargo fmt -- --check)
cargo clippy --release --quiet --all-targets -- -D warnings
scripts/build-guest.sh clippy -- -D warnings
scripts/build-linux-probe.sh clippy -- -D warnings
echo "== tests" >&2
cargo test --release --quiet --workspace
