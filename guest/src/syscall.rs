//! System calls: `int 0x80` from ring 3, number in `eax`, arguments in `ebx`, `ecx`,
//! `edx`, `esi`, result in `eax` (Linux i386's convention). A task's system call
//! runs with interrupts on, in process context: it may sleep.

use core::sync::atomic::{AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::abi::errno;
use shared::counters::Counter;

use crate::arch::cpu;
use crate::arch::trap::TrapFrame;
use crate::mm::address_space;
use crate::mm::layout::PAGE_OFFSET;
use crate::task::{self, State};
use crate::{percpu, ring3, sched};

/// System call numbers.
pub mod nr {
    pub const EXIT: u32 = 1;
    pub const FORK: u32 = 2;
    pub const WRITE: u32 = 4;
    pub const WAIT: u32 = 7;
    pub const EXEC: u32 = 11;
    pub const GETCPU: u32 = 20;
    pub const GETPID: u32 = 39;
    pub const MUNMAP: u32 = 91;
    pub const YIELD: u32 = 158;
    pub const MREMAP: u32 = 163;
    /// Walks another task's pagetables: (pid, tag) -> present << 16 | matching.
    pub const WALK: u32 = 200;
    /// Sleeps until another task releases this one.
    pub const PAUSE: u32 = 201;
    /// Releases a paused task: (pid).
    pub const RELEASE: u32 = 202;
    /// Times `rounds` passes of pte accesses over this task's pagetables.
    pub const PTE_BENCH: u32 = 203;
    /// Holds kmaps of highmem pages across yields and checks them:
    /// (pages, rounds, tag) -> wrong words, or -ENOMEM.
    pub const KMAP_HOLD: u32 = 204;
}

/// The longest write a program may ask for.
const WRITE_MAX: u32 = 256;

/// mremap calls that failed with ENOMEM (the injected allocation failure).
pub static MREMAP_ENOMEM: AtomicU32 = AtomicU32::new(0);

fn err(e: i32) -> u32 {
    (-e) as u32
}

pub fn dispatch(frame: &mut TrapFrame) {
    if sched::in_idle() {
        // A program run by the boot workload from the CPU's own context.
        frame.eax = match frame.eax {
            nr::EXIT => crate::arch::user::exit_current(frame.ebx as i32),
            nr::WRITE => sys_write(frame.ecx, frame.edx),
            nr::GETCPU => percpu::cpu_id(),
            _ => err(errno::ENOSYS),
        };
        return;
    }
    // SAFETY: a task's system call is process context with nothing held.
    let mut ctx = unsafe { MaySleep::new() };
    cpu::sti();
    let (a, b, c) = (frame.ebx, frame.ecx, frame.edx);
    let me = sched::current();
    let mm = me.mm().expect("a task without an address space");
    frame.eax = match frame.eax {
        nr::EXIT => task::exit(&mut ctx, a as i32),
        nr::WRITE => sys_write(b, c),
        nr::GETCPU => percpu::cpu_id(),
        nr::GETPID => me.pid(),
        nr::FORK => {
            if let Some(step) = hooks().before_fork {
                step();
            }
            task::fork(&mut ctx, frame).unwrap_or_else(err)
        }
        nr::WAIT => task::wait(&mut ctx, a).map(|c| c as u32).unwrap_or_else(err),
        nr::YIELD => {
            sched::yield_now(&mut ctx);
            0
        }
        nr::MUNMAP => address_space::munmap(&mut ctx, mm, a, b).map(|_| 0).unwrap_or_else(err),
        nr::MREMAP => match address_space::mremap(&mut ctx, mm, a, c, b) {
            Ok(v) => v,
            Err(e) => {
                if e == errno::ENOMEM {
                    MREMAP_ENOMEM.fetch_add(1, Ordering::Relaxed);
                }
                err(e)
            }
        },
        nr::EXEC => sys_exec(&mut ctx, frame, a, b, c),
        nr::WALK => sys_walk(&mut ctx, a, b),
        nr::PAUSE => {
            me.paused.store(true, Ordering::Release);
            PAUSED.wait_until(&mut ctx, || me.released.load(Ordering::Acquire));
            me.paused.store(false, Ordering::Release);
            0
        }
        nr::RELEASE => match task::find(a) {
            Some(t) => {
                t.released.store(true, Ordering::Release);
                PAUSED.wake_all();
                0
            }
            None => err(errno::ESRCH),
        },
        nr::PTE_BENCH => match hooks().pte_bench {
            Some(call) => call(&mut ctx, mm, a),
            None => err(errno::ENOSYS),
        },
        nr::KMAP_HOLD => match hooks().kmap_hold {
            Some(call) => call(&mut ctx, a, b, c),
            None => err(errno::ENOSYS),
        },
        _ => err(errno::ENOSYS),
    };
    cpu::cli();
}

/// What a workload adds to the kernel's system calls: a step before every
/// fork, and the calls only benchmarks make. The kernel owns the table and
/// calls no workload by name; the workloads fill it ([`set_hooks`]) before
/// their tasks start. An empty entry: the fork goes on as it is, the call
/// is ENOSYS.
#[derive(Clone, Copy, Default)]
pub struct Hooks {
    /// Before each fork (fork-churn's vmap churn, the alias source).
    pub before_fork: Option<fn()>,
    /// `PTE_BENCH`: rounds of pte maps over the caller's pte pages.
    pub pte_bench: Option<PteBench>,
    /// `KMAP_HOLD`: kmaps held across yields.
    pub kmap_hold: Option<KmapHold>,
}

/// `PTE_BENCH(rounds)` on the caller's address space.
pub type PteBench = fn(&mut MaySleep, &address_space::Mm, u32) -> u32;
/// `KMAP_HOLD(pages, rounds, tag)`.
pub type KmapHold = fn(&mut MaySleep, u32, u32, u32) -> u32;

static HOOKS: crate::sync::Once<Hooks> = crate::sync::Once::new();

/// Fills the hook table, once, on the boot CPU before any task starts.
pub fn set_hooks(h: Hooks) {
    HOOKS.set(h);
}

fn hooks() -> Hooks {
    if HOOKS.is_set() {
        *HOOKS.get()
    } else {
        Hooks::default()
    }
}

/// Tasks paused in `PAUSE`.
pub static PAUSED: sched::WaitQueue = sched::WaitQueue::new();

fn sys_write(buf: u32, len: u32) -> u32 {
    let len = len.min(WRITE_MAX);
    match buf.checked_add(len) {
        Some(end) if end <= PAGE_OFFSET => {}
        _ => return err(errno::EFAULT),
    }
    let mut copy = [0u8; WRITE_MAX as usize];
    // SAFETY: the range is below PAGE_OFFSET, and the only programs that run are the
    // kernel's own, which pass buffers in their mapped pages.
    unsafe { core::ptr::copy_nonoverlapping(buf as *const u8, copy.as_mut_ptr(), len as usize) };
    crate::console::write_bytes(&copy[..len as usize]);
    len
}

/// Replaces the address space with a fresh one and starts the user program over
/// with (mode, pages, tag).
fn sys_exec(ctx: &mut MaySleep, frame: &mut TrapFrame, mode: u32, pages: u32, tag: u32) -> u32 {
    let Some(new) = address_space::new_user(ctx) else { return err(errno::ENOMEM) };
    let me = sched::current();
    let old = me.replace_mm(new);
    // SAFETY: the new address space is the task's now.
    unsafe { (*new).activate(false) };
    // SAFETY: the task's old reference, no longer loaded here.
    address_space::put(ctx, unsafe { &*old });
    percpu::count(Counter::Execs, 1);
    *frame = task::user_frame(ring3::main_entry(), [mode, pages, 1, tag, 0, 0]);
    frame.eax
}

/// Walks task `pid`'s pagetables once it is paused.
fn sys_walk(ctx: &mut MaySleep, pid: u32, tag: u32) -> u32 {
    let Some(t) = task::find(pid) else { return err(errno::ESRCH) };
    if !t.paused.load(Ordering::Acquire) || t.state() == State::Zombie {
        return err(errno::EAGAIN);
    }
    // The target sleeps until released, and only the caller releases it: its
    // address space stays. Take a reference all the same, as /proc does.
    let Some(mm) = t.mm() else { return err(errno::ESRCH) };
    address_space::get(mm);
    let (present, good) = address_space::walk(ctx, mm, tag);
    address_space::put(ctx, mm);
    (present.min(0xffff) << 16) | good.min(0xffff)
}

/// Releases every paused task (the driver, at the end of a workload).
pub fn release_all() {
    task::for_each(|t| t.released.store(true, Ordering::Release));
    PAUSED.wake_all();
}
