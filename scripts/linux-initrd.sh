#!/usr/bin/env bash
# Makes an initramfs for `vmm run --linux`: Debian's static i386 busybox
# (fetched by scripts/setup.sh) and SCRIPT as /init, which runs with /proc,
# /sys and /dev mounted and a PATH of busybox's applets. Boot it with
# `--cmdline rdinit=/init`; the script ends the run with `reboot -f`.
#
#   scripts/linux-initrd.sh SCRIPT OUT.cpio [PROGRAM...]
#
# Each PROGRAM (e.g. guest/linux-probe's highpte-probe) goes into /bin.
#
# Without SCRIPT's `reboot -f` Linux panics when init exits (a guest fault,
# status 3). For an interactive shell, end SCRIPT with `exec sh`: what is
# typed on vmm's standard input reaches the console (docs/linux.md).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 SCRIPT OUT.cpio [PROGRAM...]" >&2; exit 2; }
script=$1
out=$(realpath -m "$2")
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
busybox="$root/.cache/linux/busybox"
[ -x "$busybox" ] || { echo "linux-initrd: no $busybox (run scripts/setup.sh)" >&2; exit 2; }
if [ ! -f "$script" ]; then
    echo "linux-initrd: no such script: $script" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/proc" "$work/sys" "$work/dev" "$work/tmp"
cp "$busybox" "$work/bin/busybox"
for p in "$@"; do
    [ -f "$p" ] || { echo "linux-initrd: no such program: $p" >&2; exit 2; }
    install -m 0755 "$p" "$work/bin/$(basename "$p")"
done
{
    echo '#!/bin/busybox sh'
    echo '/bin/busybox --install -s /bin'
    echo 'export PATH=/bin'
    echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null'
    cat "$script"
} > "$work/init"
chmod 0755 "$work/init"
(cd "$work" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out"
echo "linux-initrd: $out ($(stat -c %s "$out") bytes)" >&2
