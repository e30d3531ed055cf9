echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
grep -E 'LowTotal|HighTotal' /proc/meminfo
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
highpte-probe lowmem 16 16
grep AnonHugePages /proc/meminfo
reboot -f
