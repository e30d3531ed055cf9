#!/usr/bin/env bash
# Fills the user's data directory ($XDG_DATA_HOME/vmm, else ~/.local/share/vmm)
# from this checkout, so that a `vmm` copied anywhere (or built with
# `cargo install --path cli`) finds what it needs: the guest image (when
# built), the QEMU-hosted appliance's kernel and modules, and the Linux of
# `vmm run --linux` with highpte-probe (the benchmark's Linux cells).
# scripts/setup.sh and scripts/build.sh call it; the
# order in which vmm looks is in docs/usage.md ("Where vmm looks").
set -euo pipefail
cd "$(dirname "$0")/.."
data=${XDG_DATA_HOME:-$HOME/.local/share}/vmm
mkdir -p "$data"
guest=guest/target/i686-none/release/guest
if [ -f "$guest" ]; then
    install -m 0644 "$guest" "$data/guest.tmp" && mv "$data/guest.tmp" "$data/guest"
fi
if [ -s .cache/appliance/kernel/vmlinux ]; then
    mkdir -p "$data/appliance"
    rm -rf "$data/appliance/kernel.tmp"
    cp -r .cache/appliance/kernel "$data/appliance/kernel.tmp"
    rm -rf "$data/appliance/kernel"
    mv "$data/appliance/kernel.tmp" "$data/appliance/kernel"
fi
probe=guest/linux-probe/target/i686-none/release/highpte-probe
if [ -s .cache/linux/vmlinuz ]; then
    rm -rf "$data/linux"
    cp -r .cache/linux "$data/linux"
    # The benchmark's Linux cells run it (vmm bench --only linux-highpte).
    if [ -f "$probe" ]; then install -m 0755 "$probe" "$data/linux/highpte-probe"; fi
fi
echo "data: $data" >&2
