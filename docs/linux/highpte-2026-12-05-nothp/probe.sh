echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
highpte-probe 64 16 5
grep AnonHugePages /proc/meminfo
reboot -f
