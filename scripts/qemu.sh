#!/usr/bin/env bash
# Boots the guest bare under qemu-system-i386: no VMM, no hypercalls, pagetables
# written directly; console on COM1, exit through QEMU's isa-debug-exit device.
# A second x86 implementation the guest must pass, and the debugging path.
#
#   scripts/qemu.sh [--gdb] [--smp N] [--mem SIZE] [--kernel FILE] [key=value ...]
#
# key=value words are the guest's parameters (as `vmm run --key value`). --gdb
# starts QEMU halted with a gdb stub on :1234 (`gdb guest/target/i686-none/release/guest
# -ex 'target remote :1234'`). Exits 0 when the guest shuts down with status 0.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kernel="$root/guest/target/i686-none/release/guest"
smp=1 mem=256M gdb=() params=()
while [ $# -gt 0 ]; do
    case "$1" in
        --gdb) gdb=(-s -S); shift ;;
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *=*) params+=("$1"); shift ;;
        *) echo "qemu.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -f "$kernel" ] || { echo "qemu.sh: no guest at $kernel (run scripts/build.sh)" >&2; exit 2; }
command -v qemu-system-i386 >/dev/null || { echo "qemu.sh: qemu-system-i386 missing (run scripts/setup.sh)" >&2; exit 2; }
set +e
qemu-system-i386 -M pc -cpu qemu32 -smp "$smp" -m "$mem" -display none -serial stdio \
    -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 "${gdb[@]}" \
    -kernel "$kernel" -append "vcpus=$smp ${params[*]}" </dev/null
status=$?
set -e
# isa-debug-exit: QEMU exits with 2*code+1; code 0 is the guest's success.
case $status in
    1) exit 0 ;;
    0) echo "qemu.sh: QEMU exited without the guest's shutdown" >&2; exit 1 ;;
    *) exit $(( (status - 1) / 2 )) ;;
esac
