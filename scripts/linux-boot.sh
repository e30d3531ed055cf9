# Sourced by the scripts/linux-*.sh measurements: one boot of Debian's
# 686-pae Linux under `vmm run --linux` with their initramfs, its command,
# console, stderr and JSON report kept as OUT/NAME.*, and its status
# appended to OUT/runs.txt. Needs $vmm, $root and $out set.
#
#   linux_boot NAME CPIO VCPUS [CMDLINE-EXTRA]
#
# $LINUX_MEM (default 1g) and $LINUX_TIMEOUT (seconds, default 120) shape
# the run.
linux_boot() {
    local name=$1 cpio=$2 vcpus=$3 extra=${4:-}
    local cmd=("$vmm" run --linux "$root/.cache/linux/vmlinuz" --initrd "$cpio"
        --cmdline "rdinit=/init $extra" --vcpus "$vcpus" --mem "${LINUX_MEM:-1g}"
        --timeout "${LINUX_TIMEOUT:-120}" --json "$out/$name.json")
    echo "${cmd[*]}" > "$out/$name.cmd"
    local status=0
    "${cmd[@]}" > "$out/$name.console" 2> "$out/$name.stderr" || status=$?
    echo "$name status $status" | tee -a "$out/runs.txt"
}
