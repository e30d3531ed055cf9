echo "vmm-linux: $(nproc) CPUs, $(cat /proc/cmdline)"
highpte-probe 64 16 5
reboot -f
