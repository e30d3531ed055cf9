//! The ring-3 programs built into the kernel image.
//!
//! They live in the `.user` section, linked at [`USER_CODE_VA`] and loaded inside
//! the kernel image; the kernel maps their frames, read-only, into every address
//! space. The two assembly programs serve the boot workload; the Rust program
//! (`programs::user_main`) runs every memory-management workload, chosen by [`Mode`].

use core::arch::global_asm;

use crate::mm::layout::PAGE_SIZE;
use crate::mm::pgtable::AddressSpace;
use crate::syscall::nr;

/// Where user code is mapped.
pub const USER_CODE_VA: u32 = 0x0040_0000;
/// The top of the boot workload's user stack (its page ends here).
pub const USER_STACK_TOP: u32 = 0xbfff_f000;

global_asm!(
    r#"
    .section .user.text, "ax"
    .global user_hello
# Writes a greeting, then exits with (cpu + 42).
user_hello:
    call 1f
1:  popl %ecx
    addl $(2f - 1b), %ecx
    movl ${write}, %eax
    movl $(3f - 2f), %edx
    int $0x80
    movl ${getcpu}, %eax
    int $0x80
    leal 42(%eax), %ebx
    movl ${exit}, %eax
    int $0x80
    ud2
2:  .ascii "hello from ring 3\n"
3:

    .global user_read_kernel
# Reads kernel memory: must be killed by a page fault.
user_read_kernel:
    movl 0xC0100000, %eax
    movl ${exit}, %eax
    xorl %ebx, %ebx
    int $0x80
    ud2
    "#,
    write = const nr::WRITE,
    getcpu = const nr::GETCPU,
    exit = const nr::EXIT,
    options(att_syntax)
);

extern "C" {
    static __user_start: u8;
    static __user_end: u8;
    static __user_lma: u8;
    pub static user_hello: u8;
    pub static user_read_kernel: u8;
    static user_main_entry: u8;
}

/// The physical address and length of the user programs' frames.
pub fn code_frames() -> (u64, u32) {
    let (start, end, lma) = (
        core::ptr::addr_of!(__user_start) as u32,
        core::ptr::addr_of!(__user_end) as u32,
        core::ptr::addr_of!(__user_lma) as u32,
    );
    (lma as u64, end - start)
}

/// Maps the user code pages into `space` at [`USER_CODE_VA`], read-only.
pub fn map_code(space: &AddressSpace) -> Option<()> {
    let (pa, len) = code_frames();
    let mut off = 0;
    while off < len {
        space.map(USER_CODE_VA + off, pa + off as u64, 0)?;
        off += PAGE_SIZE;
    }
    Some(())
}

/// The user address of a program's entry symbol (the section is linked there).
pub fn entry(sym: *const u8) -> u32 {
    sym as u32
}

/// The entry of the Rust user program ([`Mode`] in eax, then pages, rounds, tag, aux).
pub fn main_entry() -> u32 {
    core::ptr::addr_of!(user_main_entry) as u32
}

/// What the user program does (eax at entry).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Mode {
    /// Fault pages in, check them, unmap, check they come back zero: `rounds` times.
    FaultStorm = 1,
    /// Fill pages; `rounds` times fork a child that checks and dirties its copy.
    ForkStorm = 2,
    /// Fill pages; `rounds` times mremap them away and back, checking contents.
    MremapStorm = 3,
    /// Fork `aux` residents that fill pages and pause; walk each one's pagetables.
    Walker = 4,
    /// Fill pages, then exec a program that checks the old memory is gone.
    Exec = 5,
    /// The program exec'd by [`Mode::Exec`].
    ExecCheck = 6,
    /// Touch `pages` pages 2 MiB apart (one pagetable each), pause, check, exit.
    Capacity = 7,
    /// Fill pages, then time pte accesses through the `--pte` variant (`rounds`).
    PteBench = 8,
    /// Hold kmaps of `pages` highmem pages across yields, check them (`rounds`).
    KmapHold = 9,
    /// Fork children that touch memory, then read a page of the per-task kmap
    /// pair or the stack's guard page: each must be killed by a page fault.
    ProbeKernelPages = 10,
}

/// The pattern word written at offset `k` words into the page at `va`.
pub const fn pattern(va: u32, tag: u32, k: u32) -> u32 {
    (va ^ tag).wrapping_add(k.wrapping_mul(0x9e37_79b9))
}

/// Words of each page the programs write and check (every 256 bytes).
pub const WORDS_CHECKED: u32 = 16;

global_asm!(
    r#"
    .section .user.text, "ax"
    .global user_main_entry
user_main_entry:
    pushl %esi
    pushl %edx
    pushl %ecx
    pushl %ebx
    pushl %eax
    call {main}
    ud2
    "#,
    main = sym programs::user_main,
    options(att_syntax)
);

/// The Rust user program. Everything here runs in ring 3 from the `.user` section:
/// it may only call functions of this module (all placed in `.user.text` or
/// inlined), never the kernel's code or read-only data; `scripts/build-guest.sh`
/// checks that no call or jump leaves the section.
mod programs {
    use super::{pattern, Mode, WORDS_CHECKED};
    use crate::mm::address_space::{ANON_START, STACK_GUARD};
    use crate::mm::kmap::PER_TASK_VA;
    use crate::syscall::nr;

    /// The exit code of a task killed by a page fault.
    const KILLED_BY_PAGE_FAULT: i32 = crate::arch::user::killed_by(14);

    const PAGE: u32 = 4096;
    const REGION_B: u32 = ANON_START + (256 << 20);

    #[inline(always)]
    fn syscall(n: u32, a: u32, b: u32, c: u32) -> i32 {
        let r: i32;
        // SAFETY: int 0x80 into the kernel; it only reads the registers and
        // returns a result in eax.
        unsafe {
            core::arch::asm!("push ebx", "mov ebx, {a}", "int 0x80", "pop ebx",
                a = in(reg) a, inlateout("eax") n as i32 => r, in("ecx") b, in("edx") c)
        };
        r
    }

    #[inline(always)]
    fn exit(code: u32) -> ! {
        syscall(nr::EXIT, code, 0, 0);
        loop {
            core::hint::spin_loop();
        }
    }

    #[inline(always)]
    fn write_word(va: u32, v: u32) {
        // SAFETY: an address of the program's own anonymous memory (demand zero).
        unsafe { (va as *mut u32).write_volatile(v) }
    }

    #[inline(always)]
    fn read_word(va: u32) -> u32 {
        // SAFETY: an address of the program's own memory, as in write_word; a
        // read of an unmapped one faults to the kernel, which kills the task.
        unsafe { (va as *const u32).read_volatile() }
    }

    /// Fills `pages` pages from `base` (step `stride`) with the pattern of `tag`.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn fill(base: u32, pages: u32, stride: u32, tag: u32) {
        let mut p = 0;
        while p < pages {
            let va = base + p * stride;
            let mut k = 0;
            while k < WORDS_CHECKED {
                write_word(va + k * 256, pattern(va, tag, k));
                k += 1;
            }
            p += 1;
        }
    }

    /// Counts the checked words of `pages` pages from `base` (step `stride`) that
    /// differ from `expect(page index, word index)`.
    #[inline(always)]
    fn count_bad(base: u32, pages: u32, stride: u32, expect: impl Fn(u32, u32) -> u32) -> u32 {
        let mut bad = 0;
        let mut p = 0;
        while p < pages {
            let mut k = 0;
            while k < WORDS_CHECKED {
                if read_word(base + p * stride + k * 256) != expect(p, k) {
                    bad += 1;
                }
                k += 1;
            }
            p += 1;
        }
        bad
    }

    /// Counts words that differ from the pattern `tag` wrote at `written_at` (the
    /// pages now being at `base`).
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn check(base: u32, written_at: u32, pages: u32, stride: u32, tag: u32) -> u32 {
        count_bad(base, pages, stride, |p, k| pattern(written_at + p * stride, tag, k))
    }

    /// Counts non-zero words in the checked positions.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn check_zero(base: u32, pages: u32) -> u32 {
        count_bad(base, pages, PAGE, |_, _| 0)
    }

    /// Faults pages in, checks them, unmaps them, and checks they read zero again.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn fault_storm(pages: u32, rounds: u32, tag: u32, _aux: u32) -> u32 {
        let len = pages * PAGE;
        let mut bad = 0u32;
        let mut r = 0;
        while r < rounds {
            let t = tag ^ r;
            fill(ANON_START, pages, PAGE, t);
            bad += check(ANON_START, ANON_START, pages, PAGE, t);
            if syscall(nr::MUNMAP, ANON_START, len, 0) != 0 {
                bad += 1;
            }
            bad += check_zero(ANON_START, pages);
            r += 1;
        }
        bad
    }

    /// Forks children that check the parent's pages and write their own copies.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn fork_storm(pages: u32, rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        fill(ANON_START, pages, PAGE, tag);
        let mut r = 0;
        while r < rounds {
            let pid = syscall(nr::FORK, 0, 0, 0);
            if pid == 0 {
                let mut cbad = check(ANON_START, ANON_START, pages, PAGE, tag);
                let t = tag ^ 0x5a5a_0000 ^ r;
                fill(ANON_START, pages, PAGE, t);
                cbad += check(ANON_START, ANON_START, pages, PAGE, t);
                exit(cbad);
            } else if pid < 0 || syscall(nr::WAIT, pid as u32, 0, 0) != 0 {
                bad += 1;
            }
            bad += check(ANON_START, ANON_START, pages, PAGE, tag);
            r += 1;
        }
        bad
    }

    /// Moves its pages to fresh regions with mremap and back.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn mremap_storm(pages: u32, rounds: u32, tag: u32, _aux: u32) -> u32 {
        let len = pages * PAGE;
        let mut bad = 0u32;
        fill(ANON_START, pages, PAGE, tag);
        let mut r = 0;
        while r < rounds {
            // A fresh 2 MiB region each round: the move needs new pagetables.
            let dst = REGION_B + r * (4 << 20);
            let ret = syscall(nr::MREMAP, ANON_START, len, dst);
            if ret == -(shared::abi::errno::ENOMEM) {
                // Could not allocate a pagetable: nothing moved, all intact.
                bad += check(ANON_START, ANON_START, pages, PAGE, tag);
                break;
            }
            if ret != dst as i32 {
                bad += 1;
                break;
            }
            bad += check(dst, ANON_START, pages, PAGE, tag);
            if syscall(nr::MREMAP, dst, len, ANON_START) != ANON_START as i32 {
                bad += 1;
                break;
            }
            bad += check_zero(dst, pages);
            syscall(nr::MUNMAP, dst, len, 0);
            bad += check(ANON_START, ANON_START, pages, PAGE, tag);
            r += 1;
        }
        bad
    }

    /// Forks children that fill pages and pause; the kernel walks their tables (WALK).
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn walker(pages: u32, _rounds: u32, _tag: u32, aux: u32) -> u32 {
        let mut bad = 0u32;
        let mut kids = [0i32; 16];
        let n = if aux > 16 { 16 } else { aux };
        let mut i = 0;
        while i < n {
            let pid = syscall(nr::FORK, 0, 0, 0);
            if pid == 0 {
                let me = syscall(nr::GETPID, 0, 0, 0) as u32;
                let t = me.wrapping_mul(0x0001_0001);
                fill(ANON_START, pages, PAGE, t);
                syscall(nr::PAUSE, 0, 0, 0);
                exit(check(ANON_START, ANON_START, pages, PAGE, t));
            }
            kids[(i & 15) as usize] = pid;
            i += 1;
        }
        let mut i = 0;
        while i < n {
            let pid = kids[(i & 15) as usize];
            if pid <= 0 {
                bad += 1;
                i += 1;
                continue;
            }
            let t = (pid as u32).wrapping_mul(0x0001_0001);
            let mut r;
            loop {
                r = syscall(nr::WALK, pid as u32, t, 0);
                if r != -(shared::abi::errno::EAGAIN) {
                    break;
                }
                syscall(nr::YIELD, 0, 0, 0);
            }
            let (present, good) = ((r as u32) >> 16, (r as u32) & 0xffff);
            if r < 0 || present != pages || good != pages {
                bad += 1;
            }
            syscall(nr::RELEASE, pid as u32, 0, 0);
            if syscall(nr::WAIT, pid as u32, 0, 0) != 0 {
                bad += 1;
            }
            i += 1;
        }
        bad
    }

    /// Fills pages, then execs ExecCheck, which must see none of them.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn exec(pages: u32, _rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        fill(ANON_START, pages, PAGE, tag);
        syscall(nr::EXEC, Mode::ExecCheck as u32, pages, tag);
        bad += 1; // exec returned: it failed
        bad
    }

    /// After exec: the address space starts empty.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn exec_check(pages: u32, _rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        bad += check_zero(ANON_START, pages);
        fill(ANON_START, pages, PAGE, tag);
        bad += check(ANON_START, ANON_START, pages, PAGE, tag);
        bad
    }

    /// Holds one pte page per 2 MiB of pages until released (task-capacity).
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn capacity(pages: u32, _rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        let stride = 2 << 20;
        fill(ANON_START, pages, stride, tag);
        syscall(nr::PAUSE, 0, 0, 0);
        bad += check(ANON_START, ANON_START, pages, stride, tag);
        bad
    }

    /// Fills pages, then has the kernel time pte accesses over them (PTE_BENCH).
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn pte_bench(pages: u32, rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        fill(ANON_START, pages, PAGE, tag);
        if syscall(nr::PTE_BENCH, rounds, 0, 0) < 0 {
            bad += 1;
        }
        bad
    }

    /// Children touch the per-task kmap pair and the stack guard: each must be killed by a page fault.
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn probe_kernel_pages(_pages: u32, _rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        let mut i = 0;
        while i < 3 {
            let target = if i < 2 { PER_TASK_VA + i * PAGE } else { STACK_GUARD };
            let pid = syscall(nr::FORK, 0, 0, 0);
            if pid == 0 {
                // A fault of its own first: under per-task its pte page is
                // mapped through the pair (and stays mapped with --debug off).
                fill(ANON_START, 1, PAGE, tag);
                read_word(target);
                exit(1);
            }
            if pid < 0 || syscall(nr::WAIT, pid as u32, 0, 0) != KILLED_BY_PAGE_FAULT {
                bad += 1;
            }
            i += 1;
        }
        bad
    }

    /// Has the kernel hold kmaps across yields (KMAP_HOLD).
    #[link_section = ".user.text"]
    #[inline(never)]
    extern "C" fn kmap_hold(pages: u32, rounds: u32, tag: u32, _aux: u32) -> u32 {
        let mut bad = 0u32;
        let r = syscall(nr::KMAP_HOLD, pages, rounds, tag);
        bad += if r < 0 { 1 } else { r as u32 };
        bad
    }

    /// Runs program `mode` and exits with the count of what it found wrong.
    #[link_section = ".user.text"]
    #[inline(never)]
    pub extern "C" fn user_main(mode: u32, pages: u32, rounds: u32, tag: u32, aux: u32) -> ! {
        let bad = match mode {
            m if m == Mode::FaultStorm as u32 => fault_storm(pages, rounds, tag, aux),
            m if m == Mode::ForkStorm as u32 => fork_storm(pages, rounds, tag, aux),
            m if m == Mode::MremapStorm as u32 => mremap_storm(pages, rounds, tag, aux),
            m if m == Mode::Walker as u32 => walker(pages, rounds, tag, aux),
            m if m == Mode::Exec as u32 => exec(pages, rounds, tag, aux),
            m if m == Mode::ExecCheck as u32 => exec_check(pages, rounds, tag, aux),
            m if m == Mode::Capacity as u32 => capacity(pages, rounds, tag, aux),
            m if m == Mode::PteBench as u32 => pte_bench(pages, rounds, tag, aux),
            m if m == Mode::ProbeKernelPages as u32 => probe_kernel_pages(pages, rounds, tag, aux),
            m if m == Mode::KmapHold as u32 => kmap_hold(pages, rounds, tag, aux),
            _ => 1000,
        };
        exit(bad)
    }
}
