echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
grep -E "^(MemTotal|HighTotal)" /proc/meminfo
reboot -f
