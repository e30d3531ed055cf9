//! `highpte-probe`: times the pte-page work of a stock 32-bit Linux, for the
//! real-Linux control of the highpte claims (`vmm run --linux`, docs/linux.md).
//! A freestanding static i386 program: `int 0x80` system calls, no libc.
//!
//! It prints one `vmm-result: NAME VALUE` line per figure (the median over
//! its rounds, in TSC cycles), which `vmm run --linux` keeps in the run's
//! report as results:
//! - `sparse_fault_cycles_per_pte`: a fault that allocates and fills a pte
//!   page, one pte each (a region touched once per 2 MiB);
//! - `sparse_zap_cycles_per_pte`: munmap of that region, one pte per pte page;
//! - `dense_fork_exit_cycles_per_pte`: fork and exit of a child over a region
//!   whose pte pages are full (Linux's copy_pte_range and zap_pte_range, one
//!   map of a pte page for its 512 entries);
//! - `pagetables_kb`: /proc/meminfo's PageTables with the dense region mapped.
//!
//! Usage: `highpte-probe SPARSE_PTE_PAGES DENSE_PTE_PAGES ROUNDS`.
//!
//! `highpte-probe lowmem TASKS PTE_PAGES`: what each task's pagetables take
//! of lowmem (claim 4's mechanism). It starts TASKS children that each fill
//! PTE_PAGES pte pages (one pte each, a region touched once per 2 MiB) and
//! wait, reads /proc/meminfo before and with them all alive, and releases
//! them:
//! - `lowmem_tasks`: the children that got there;
//! - `lowfree_drop_kb`, `pagetables_kb_grown`: how much LowFree fell and
//!   PageTables grew meanwhile (pte pages in highmem leave LowFree alone).
//!
//! With TASKS above what fits (at most 8192), it finds claim 4's cap: it
//! stops at the first task that does not get there, and says why:
//! - `lowmem_stop_errno`: the failing fork's errno (0: the fork worked);
//! - `lowmem_stop_killed`: 1 when a child died instead (the OOM killer:
//!   the parent asks it to spare itself);
//! - `lowfree_after_kb`: LowFree with every task that fit alive.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

use shared::linux_probe::ProbeResult;

const SYS_EXIT_GROUP: u32 = 252;
const SYS_WRITE: u32 = 4;
const SYS_OPEN: u32 = 5;
const SYS_READ: u32 = 3;
const SYS_CLOSE: u32 = 6;
const SYS_FORK: u32 = 2;
const SYS_WAIT4: u32 = 114;
const SYS_MMAP2: u32 = 192;
const SYS_MUNMAP: u32 = 91;
const SYS_PIPE: u32 = 42;
const SYS_MADVISE: u32 = 219;
/// wait4's "do not wait": a child that died already, or none.
const WNOHANG: u32 = 1;
/// The most tasks `lowmem` starts.
const MAX_TASKS: usize = 8192;
/// No transparent huge page: a region touched once per 2 MiB must fault in
/// pte pages, not 2 MiB pages (Debian's 686-pae kernel has THP "always").
const MADV_NOHUGEPAGE: u32 = 15;

const PROT_READ_WRITE: u32 = 3;
const MAP_PRIVATE_ANONYMOUS: u32 = 0x22;
const PAGE: usize = 4096;
/// What one PAE pte page maps.
const PTE_SPAN: usize = 2 << 20;
const MAX_ROUNDS: usize = 64;

/// A Linux system call through `int 0x80`, arguments in ebx, ecx, edx, esi,
/// edi, ebp. ebx, esi and ebp cannot be asm operands here, so the arguments
/// come through memory and those registers are saved around the call.
fn syscall(nr: u32, args: [u32; 6]) -> i32 {
    let ret: i32;
    // SAFETY: the kernel reads only what the call's arguments point at; every
    // register the asm changes is restored or declared.
    unsafe {
        asm!(
            "push ebp",
            "push ebx",
            "push esi",
            "push edi",
            "push ecx",
            "mov ebx, [eax]",
            "mov ecx, [eax + 4]",
            "mov edx, [eax + 8]",
            "mov esi, [eax + 12]",
            "mov edi, [eax + 16]",
            "mov ebp, [eax + 20]",
            "pop eax",
            "int 0x80",
            "pop edi",
            "pop esi",
            "pop ebx",
            "pop ebp",
            inout("eax") args.as_ptr() => ret,
            inout("ecx") nr => _,
            out("edx") _,
        );
    }
    ret
}

fn write(bytes: &[u8]) {
    syscall(SYS_WRITE, [1, bytes.as_ptr() as u32, bytes.len() as u32, 0, 0, 0]);
}

fn exit(code: u32) -> ! {
    syscall(SYS_EXIT_GROUP, [code, 0, 0, 0, 0, 0]);
    // exit_group does not return; should it, fault rather than go on.
    // SAFETY: ud2 only raises #UD.
    unsafe { asm!("ud2", options(noreturn)) }
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects (Linux leaves CR4.TSD clear).
    unsafe { core::arch::x86::_rdtsc() }
}

/// A decimal number into `buf`; the digits written.
fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

fn result(r: ProbeResult, value: u64) {
    let mut b = [0u8; 20];
    write(b"vmm-result: ");
    write(r.name().as_bytes());
    write(b" ");
    write(fmt_u64(value, &mut b));
    write(b"\n");
}

fn fail(what: &str) -> ! {
    write(b"highpte-probe: ");
    write(what.as_bytes());
    write(b"\n");
    exit(1)
}

fn parse(arg: *const u8) -> usize {
    let mut v = 0usize;
    let mut p = arg;
    // SAFETY: argv strings are NUL-terminated, from the kernel.
    unsafe {
        while *p != 0 {
            if !(*p).is_ascii_digit() {
                fail("arguments: SPARSE_PTE_PAGES DENSE_PTE_PAGES ROUNDS");
            }
            v = v * 10 + (*p - b'0') as usize;
            p = p.add(1);
        }
    }
    v
}

/// An anonymous private region of `len` bytes starting on a pte page's
/// boundary (2 MiB), without transparent huge pages, and what to munmap for
/// it.
fn map_aligned(len: usize) -> (usize, usize, usize) {
    let total = len + PTE_SPAN;
    let a = syscall(SYS_MMAP2, [0, total as u32, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, u32::MAX, 0]);
    if (a as u32) > 0xffff_f000 {
        fail("mmap2 failed");
    }
    if syscall(SYS_MADVISE, [a as u32, total as u32, MADV_NOHUGEPAGE, 0, 0, 0]) != 0 {
        fail("madvise(MADV_NOHUGEPAGE) failed");
    }
    let base = (a as u32 as usize + PTE_SPAN - 1) & !(PTE_SPAN - 1);
    (base, a as u32 as usize, total)
}

fn unmap(start: usize, len: usize) {
    if syscall(SYS_MUNMAP, [start as u32, len as u32, 0, 0, 0, 0]) != 0 {
        fail("munmap failed");
    }
}

fn touch(addr: usize) {
    // SAFETY: inside a region this program mapped read-write.
    unsafe { core::ptr::write_volatile(addr as *mut u8, 1) };
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// A /proc/meminfo field (`key` with its colon), in kB; 0 if absent.
fn meminfo_kb(key: &[u8]) -> u64 {
    let fd = syscall(SYS_OPEN, [c"/proc/meminfo".as_ptr() as u32, 0, 0, 0, 0, 0]);
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 4096];
    let n = syscall(SYS_READ, [fd as u32, buf.as_mut_ptr() as u32, buf.len() as u32, 0, 0, 0]).max(0) as usize;
    syscall(SYS_CLOSE, [fd as u32, 0, 0, 0, 0, 0]);
    let text = &buf[..n];
    let Some(at) = text.windows(key.len()).position(|w| w == key) else { return 0 };
    text[at + key.len()..]
        .iter()
        .skip_while(|c| **c == b' ')
        .take_while(|c| c.is_ascii_digit())
        .fold(0, |v, c| v * 10 + (c - b'0') as u64)
}

/// /proc/meminfo's PageTables, in kB.
fn pagetables_kb() -> u64 {
    meminfo_kb(b"PageTables:")
}

fn pipe() -> [u32; 2] {
    let mut fds = [0u32; 2];
    if syscall(SYS_PIPE, [fds.as_mut_ptr() as u32, 0, 0, 0, 0, 0]) != 0 {
        fail("pipe failed");
    }
    fds
}

fn close(fd: u32) {
    syscall(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
}

/// Sets this task's /proc/self/oom_score_adj.
fn oom_score_adj(value: &[u8]) {
    let fd = syscall(SYS_OPEN, [c"/proc/self/oom_score_adj".as_ptr() as u32, 1, 0, 0, 0, 0]);
    if fd >= 0 {
        syscall(SYS_WRITE, [fd as u32, value.as_ptr() as u32, value.len() as u32, 0, 0, 0]);
        close(fd as u32);
    }
}

/// `highpte-probe lowmem TASKS PTE_PAGES` (see the crate's documentation).
fn lowmem(tasks: usize, pte_pages: usize) {
    // The OOM killer, should lowmem run out, takes a child, not the count
    // (each child puts its own back to 0: with every task at -1000 Linux
    // panics, "System is deadlocked on memory").
    oom_score_adj(b"-1000");
    let release = pipe();
    let (low0, pt0) = (meminfo_kb(b"LowFree:"), pagetables_kb());
    let mut started = 0;
    let (mut stop_errno, mut killed) = (0u64, false);
    let mut pids = [0u32; MAX_TASKS];
    for slot in pids.iter_mut().take(tasks.min(MAX_TASKS)) {
        // A pipe of this child's alone: EOF, not a byte, if it dies first.
        let ready = pipe();
        let pid = syscall(SYS_FORK, [0; 6]);
        if pid == 0 {
            // The child: its pte pages, then "ready", then wait for the
            // release (EOF once the parent closes its end; ours is closed).
            close(ready[0]);
            close(release[1]);
            oom_score_adj(b"0");
            let (base, _, _) = map_aligned(pte_pages * PTE_SPAN);
            for i in 0..pte_pages {
                touch(base + i * PTE_SPAN);
            }
            syscall(SYS_WRITE, [ready[1], b"r".as_ptr() as u32, 1, 0, 0, 0]);
            let mut b = 0u8;
            syscall(SYS_READ, [release[0], &mut b as *mut u8 as u32, 1, 0, 0, 0]);
            exit(0);
        }
        close(ready[1]);
        if pid < 0 {
            close(ready[0]);
            stop_errno = (-pid) as u64;
            break;
        }
        *slot = pid as u32;
        let mut b = 0u8;
        let got = syscall(SYS_READ, [ready[0], &mut b as *mut u8 as u32, 1, 0, 0, 0]);
        close(ready[0]);
        // A child that died (this one before its "ready", or an earlier one
        // the OOM killer took) ends the count.
        let mut status = 0u32;
        let dead = syscall(SYS_WAIT4, [u32::MAX, &mut status as *mut u32 as u32, WNOHANG, 0, 0, 0]);
        if got != 1 || dead > 0 {
            killed = true;
            break;
        }
        started += 1;
        if started % 256 == 0 {
            // Progress, for a run that ends in the watchdog's hands.
            let mut b = [0u8; 20];
            write(b"highpte-probe: lowmem ");
            write(fmt_u64(started as u64, &mut b));
            write(b" tasks, LowFree ");
            write(fmt_u64(meminfo_kb(b"LowFree:"), &mut b));
            write(b" kB\n");
        }
    }
    let (low1, pt1) = (meminfo_kb(b"LowFree:"), pagetables_kb());
    close(release[1]);
    for &pid in pids.iter().take(started + 1).filter(|p| **p != 0) {
        let mut status = 0u32;
        syscall(SYS_WAIT4, [pid, &mut status as *mut u32 as u32, 0, 0, 0, 0]);
    }
    result(ProbeResult::LowmemTasks, started as u64);
    result(ProbeResult::LowmemPtePagesPerTask, pte_pages as u64);
    result(ProbeResult::LowfreeBeforeKb, low0);
    result(ProbeResult::LowfreeDropKb, low0.saturating_sub(low1));
    result(ProbeResult::PagetablesKbGrown, pt1.saturating_sub(pt0));
    result(ProbeResult::LowfreeAfterKb, low1);
    result(ProbeResult::LowmemStopErrno, stop_errno);
    result(ProbeResult::LowmemStopKilled, killed as u64);
}

fn probe(sparse: usize, dense: usize, rounds: usize) {
    let rounds = rounds.clamp(1, MAX_ROUNDS);
    let (mut fault, mut zap, mut fork_exit) = ([0u64; MAX_ROUNDS], [0u64; MAX_ROUNDS], [0u64; MAX_ROUNDS]);
    for r in 0..rounds {
        // One pte per pte page: each fault allocates, maps and fills a pte
        // page; munmap maps each again to clear its one entry.
        let (base, start, total) = map_aligned(sparse * PTE_SPAN);
        let t0 = rdtsc();
        for i in 0..sparse {
            touch(base + i * PTE_SPAN);
        }
        let t1 = rdtsc();
        unmap(start, total);
        let t2 = rdtsc();
        fault[r] = (t1 - t0) / sparse as u64;
        zap[r] = (t2 - t1) / sparse as u64;
    }
    // Full pte pages: fork copies each with one map of the parent's and one
    // of the child's, the child's exit clears each with one map.
    let (base, start, total) = map_aligned(dense * PTE_SPAN);
    for p in 0..dense * PTE_SPAN / PAGE {
        touch(base + p * PAGE);
    }
    result(ProbeResult::PagetablesKb, pagetables_kb());
    for slot in fork_exit.iter_mut().take(rounds) {
        let t0 = rdtsc();
        let pid = syscall(SYS_FORK, [0; 6]);
        if pid == 0 {
            exit(0);
        }
        if pid < 0 {
            fail("fork failed");
        }
        let mut status = 0u32;
        syscall(SYS_WAIT4, [pid as u32, &mut status as *mut u32 as u32, 0, 0, 0, 0]);
        *slot = (rdtsc() - t0) / (dense * PTE_SPAN / PAGE) as u64;
    }
    unmap(start, total);
    result(ProbeResult::SparseFaultCyclesPerPte, median(&mut fault[..rounds]));
    result(ProbeResult::SparseZapCyclesPerPte, median(&mut zap[..rounds]));
    result(ProbeResult::DenseForkExitCyclesPerPte, median(&mut fork_exit[..rounds]));
    result(ProbeResult::ProbeRounds, rounds as u64);
}

/// The entry from `_start`: `sp` points at argc, then argv.
#[no_mangle]
extern "C" fn probe_main(sp: *const u32) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc pointers.
    let (argc, argv) = unsafe { (*sp as usize, sp.add(1)) };
    if argc != 4 {
        fail("arguments: SPARSE_PTE_PAGES DENSE_PTE_PAGES ROUNDS, or lowmem TASKS PTE_PAGES");
    }
    // SAFETY: argv has argc entries.
    let arg = |i: usize| unsafe { *argv.add(i) as *const u8 };
    // SAFETY: argv strings are NUL-terminated, from the kernel.
    let first = unsafe { core::ffi::CStr::from_ptr(arg(1) as *const core::ffi::c_char) };
    if first.to_bytes() == b"lowmem" {
        lowmem(parse(arg(2)), parse(arg(3)));
    } else {
        probe(parse(arg(1)), parse(arg(2)), parse(arg(3)));
    }
    exit(0)
}

global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov eax, esp",
    "and esp, -16",
    "push eax",
    "push eax",
    "push eax",
    "push eax",
    "call probe_main",
    "ud2",
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail("panic")
}
