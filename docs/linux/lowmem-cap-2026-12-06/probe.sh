echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
grep -E 'LowTotal|HighTotal' /proc/meminfo
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
# Each OOM kill would dump every task on the console: thousands of lines.
echo 0 > /proc/sys/vm/oom_dump_tasks
highpte-probe lowmem 8192 16
grep AnonHugePages /proc/meminfo
reboot -f
