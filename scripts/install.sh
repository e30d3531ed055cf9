#!/usr/bin/env bash
# Installs vmm so that it runs outside this checkout: the binary to
# PREFIX/bin/vmm and the slim one the QEMU-hosted appliance carries beside it
# (PREFIX/bin/vmm-appliance), the guest image and the appliance's kernel to
# PREFIX/share/vmm/ (where the binary looks first, beside itself), the
# manual pages to PREFIX/share/man/man1 and the completions for bash, zsh
# and fish where those shells look under PREFIX/share.
#
#   scripts/install.sh [PREFIX]      (default: ~/.local)
#
# Builds first if the build is missing (scripts/setup.sh must have run).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-$HOME/.local}
bin=target/x86_64-unknown-linux-gnu/release/vmm
slim=target/x86_64-unknown-linux-gnu/release/vmm-appliance
guest=guest/target/i686-none/release/guest
kernel=.cache/appliance/kernel
[ -x "$bin" ] && [ -x "$slim" ] && [ -f "$guest" ] || scripts/build.sh
install -D -m 0755 "$bin" "$prefix/bin/vmm"
install -D -m 0755 "$slim" "$prefix/bin/vmm-appliance"
install -D -m 0644 "$guest" "$prefix/share/vmm/guest"
if [ -d "$kernel" ]; then
    mkdir -p "$prefix/share/vmm/appliance"
    rm -rf "$prefix/share/vmm/appliance/kernel"
    cp -r "$kernel" "$prefix/share/vmm/appliance/kernel"
fi
# The stock Linux, busybox and highpte-probe of the benchmark's Linux cells.
probe=guest/linux-probe/target/i686-none/release/highpte-probe
if [ -s .cache/linux/vmlinuz ]; then
    rm -rf "$prefix/share/vmm/linux"
    cp -r .cache/linux "$prefix/share/vmm/linux"
    if [ -f "$probe" ]; then install -m 0755 "$probe" "$prefix/share/vmm/linux/highpte-probe"; fi
fi
"$prefix/bin/vmm" man --out "$prefix/share/man/man1" 2>/dev/null
install -d "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions" \
    "$prefix/share/fish/vendor_completions.d"
"$prefix/bin/vmm" completions bash >"$prefix/share/bash-completion/completions/vmm"
"$prefix/bin/vmm" completions zsh >"$prefix/share/zsh/site-functions/_vmm"
"$prefix/bin/vmm" completions fish >"$prefix/share/fish/vendor_completions.d/vmm.fish"
echo "vmm installed in $prefix/bin (data in $prefix/share/vmm, manual: man -M $prefix/share/man vmm)"
