//! The scheduler: a FIFO run queue per CPU, sleep and wakeup on wait queues,
//! preemption from the LAPIC tick, and load balancing by idle CPUs.
//!
//! A task is placed on a CPU when it is created. An idle CPU takes a runnable
//! task from the queue of a CPU that is busy running another (`--balance`), but
//! never one that is pinned: a task holding per-CPU pool kmaps is (the pool's
//! slots are its CPU's), and one holding atomic kmaps has preemption off, so it
//! is never on a queue to be taken. Each CPU's boot context is its idle task.
//!
//! A task's state, its CPU and its run-queue links are protected by the run
//! queue lock of its CPU; a migration changes the CPU under the old CPU's lock,
//! so whoever locks a task's queue checks afterwards that it is still the
//! task's. `switch_to` runs with interrupts off after the lock is released: a
//! task pushed back on the queue there stays `on_cpu` until its context is
//! saved, and no CPU takes a task that is `on_cpu`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::boot::MAX_VCPUS;
use shared::counters::Counter;

use crate::arch::cpu;
use crate::percpu::{self, preempt_count};
use crate::sync::SpinLock;
use crate::task::{State, Task};
use crate::{bootinfo, smp};

struct RunQueue {
    head: *mut Task,
    tail: *mut Task,
    len: u32,
}

// SAFETY: the raw pointers are tasks, shared under the lock.
unsafe impl Send for RunQueue {}

/// Taken by the tick too, so with interrupts off everywhere else.
static RQ: [SpinLock<RunQueue>; MAX_VCPUS] =
    [const { SpinLock::new_irq_safe(RunQueue { head: core::ptr::null_mut(), tail: core::ptr::null_mut(), len: 0 }) };
        MAX_VCPUS];

/// Each CPU's idle task (its boot context).
static IDLE: [Task; MAX_VCPUS] = [const { Task::idle() }; MAX_VCPUS];

static PREEMPT: AtomicBool = AtomicBool::new(true);
static DEBUG: AtomicBool = AtomicBool::new(true);
static BALANCE: AtomicBool = AtomicBool::new(true);
/// Tasks an idle CPU took from another CPU's queue.
static MIGRATIONS: AtomicU32 = AtomicU32::new(0);

/// Whether the debug checker is on (`--debug`).
pub fn debug() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

impl RunQueue {
    fn push(&mut self, t: *mut Task) {
        // SAFETY: `t` is a live task whose links this lock protects.
        unsafe { (*t).rq_next.set(core::ptr::null_mut()) };
        if self.tail.is_null() {
            self.head = t;
        } else {
            // SAFETY: the tail is a queued task, live while queued; its link
            // is under this lock.
            unsafe { (*self.tail).rq_next.set(t) };
        }
        self.tail = t;
        self.len += 1;
    }

    /// Unlinks the first queued task for which `ok` holds.
    fn take_first(&mut self, ok: impl Fn(&Task) -> bool) -> Option<*mut Task> {
        let mut prev: *mut Task = core::ptr::null_mut();
        let mut t = self.head;
        while !t.is_null() {
            // SAFETY: queued tasks are live; their links are under this lock.
            let task = unsafe { &*t };
            let next = task.rq_next.get();
            if ok(task) {
                if prev.is_null() {
                    self.head = next;
                } else {
                    // SAFETY: prev is a queued task met earlier in this walk,
                    // live while queued; its link is under this lock.
                    unsafe { (*prev).rq_next.set(next) };
                }
                if self.tail == t {
                    self.tail = prev;
                }
                self.len -= 1;
                return Some(t);
            }
            prev = t;
            t = next;
        }
        None
    }

    fn pop(&mut self) -> Option<*mut Task> {
        let t = self.head;
        if t.is_null() {
            return None;
        }
        // SAFETY: as in push.
        self.head = unsafe { (*t).rq_next.get() };
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        self.len -= 1;
        Some(t)
    }
}

/// Makes this CPU's boot context its idle task and reads the scheduler's switches.
pub fn init_this_cpu() {
    let cpu = percpu::cpu_id();
    let idle = &IDLE[cpu as usize] as *const Task as *mut Task;
    // This CPU's idle task, set up once before it schedules.
    IDLE[cpu as usize].cpu.set(cpu);
    percpu::set_current(idle);
    let cfg = &bootinfo::get().config;
    PREEMPT.store(cfg.preempt(), Ordering::Relaxed);
    DEBUG.store(cfg.debug(), Ordering::Relaxed);
    BALANCE.store(cfg.balance(), Ordering::Relaxed);
}

/// How many tasks idle CPUs have taken from other CPUs so far.
pub fn migrations() -> u32 {
    MIGRATIONS.load(Ordering::Relaxed)
}

/// Whether this CPU's scheduler is set up.
pub fn started() -> bool {
    !percpu::current_task().is_null()
}

/// The debug checker on the way back to ring 3: no pte map or kmap may be held.
pub fn check_return_to_user() {
    if !debug() || in_idle() {
        return;
    }
    let t = current();
    let live = t.maps_live.get();
    let atomic = percpu::atomic_kmaps();
    if live != 0 || atomic != 0 {
        panic!("BUG: pid {} returns to user space holding {live} map(s), {atomic} atomic kmap(s)", t.pid());
    }
}

/// The task running on this CPU.
#[inline]
pub fn current() -> &'static Task {
    // SAFETY: set by init_this_cpu before any task runs, then only by schedule;
    // read in one instruction (a task that moves stays its own current).
    unsafe { &*percpu::current_task() }
}

/// Whether this CPU runs its idle task (or has no scheduler yet).
pub fn in_idle() -> bool {
    !started() || current().is_idle()
}

/// Tasks queued on a CPU (not counting the running one).
pub fn queued(cpu: u32) -> u32 {
    RQ[cpu as usize].lock_irqsave().len
}

/// Puts a new task on its CPU's run queue.
pub fn enqueue_new(t: &Task) {
    let cpu = t.cpu();
    RQ[cpu as usize].lock_irqsave().push(t as *const Task as *mut Task);
    kick(cpu);
}

fn kick(cpu: u32) {
    if cpu != percpu::cpu_id() {
        smp::send_ipi(cpu, crate::arch::trap::KICK_VECTOR);
    }
}

/// Locks the run queue of `t`'s CPU, which may change until the lock is held;
/// returns the CPU and the guard.
fn lock_task_rq(t: &Task) -> (u32, crate::sync::SpinGuard<'static, RunQueue>) {
    loop {
        let cpu = t.cpu();
        let rq = RQ[cpu as usize].lock_irqsave();
        if t.cpu() == cpu {
            return (cpu, rq);
        }
    }
}

/// Wakes a sleeping task.
pub fn wake_up(t: &Task) {
    let (cpu, mut rq) = lock_task_rq(t);
    if t.state() == State::Sleeping {
        t.set_state(State::Running);
        // Another CPU's current task: it only changes under this lock.
        let running = core::ptr::eq(percpu::current_of(cpu), t);
        if !running {
            rq.push(t as *const Task as *mut Task);
            drop(rq);
            kick(cpu);
        }
    }
}

global_asm!(
    r#"
    .section .text
    .global switch_to_asm
# Task *switch_to_asm(u32 *prev_sp, u32 next_sp, Task *prev): returns prev in the
# next task's context.
switch_to_asm:
    movl 12(%esp), %eax
    movl 4(%esp), %ecx
    movl 8(%esp), %edx
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    pushfl
    movl %esp, (%ecx)
    movl %edx, %esp
    popfl
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

    .global task_first_entry
# A new task's first switch returns here, with prev in eax and its trap frame on
# the stack.
task_first_entry:
    pushl %eax
    call {tail}
    addl $4, %esp
    jmp trap_return
    "#,
    tail = sym schedule_tail,
    options(att_syntax)
);

extern "C" {
    fn switch_to_asm(prev_sp: *mut u32, next_sp: u32, prev: *mut u8) -> *mut u8;
    static task_first_entry: u8;
}

/// Where a new task's first switch lands.
pub fn first_entry() -> u32 {
    core::ptr::addr_of!(task_first_entry) as u32
}

/// After a switch, in the new task: the previous task is off this CPU.
extern "C" fn schedule_tail(prev: *mut Task) {
    // SAFETY: prev is a live task (zombies are freed only once off their CPU).
    unsafe { (*prev).on_cpu.store(false, Ordering::Release) };
}

/// Picks the next task and switches to it. Interrupts must be off.
fn switch() {
    let cpu = percpu::cpu_id();
    let pc = percpu::this_cpu();
    let prev = current() as *const Task as *mut Task;
    let mut rq = RQ[cpu as usize].lock();
    // SAFETY: prev is this CPU's current task.
    let prev_ref = unsafe { &*prev };
    if prev_ref.state() == State::Running && !prev_ref.is_idle() {
        rq.push(prev);
    }
    let next = rq.pop().unwrap_or(&IDLE[cpu as usize] as *const Task as *mut Task);
    pc.need_resched.store(false, Ordering::Relaxed);
    if next == prev {
        return;
    }
    // SAFETY: next is a runnable task of this CPU.
    let next_ref = unsafe { &*next };
    next_ref.on_cpu.store(true, Ordering::Relaxed);
    // Under this CPU's run-queue lock.
    percpu::set_current(next);
    drop(rq);
    next_ref.activate();
    percpu::count(Counter::ContextSwitches, 1);
    // SAFETY: both stacks are live task stacks; next's was saved by a switch or
    // built by the task's creation to return into task_first_entry.
    let prev_again = unsafe { switch_to_asm(prev_ref.sp.get(), *next_ref.sp.get(), prev as *mut u8) };
    schedule_tail(prev_again as *mut Task);
}

/// Linux's might_sleep(): a function that may sleep says so on entry (`at`
/// names it), and the debug checker catches a caller inside an atomic section
/// there, whether or not this call goes on to sleep. `schedule()` alone
/// would catch it only on the calls that do sleep.
pub fn might_sleep(_ctx: &MaySleep, at: &str) {
    if !debug() {
        return;
    }
    let was_on = cpu::irq_save();
    let atomic = percpu::atomic_kmaps();
    let count = preempt_count();
    cpu::irq_restore(was_on);
    if atomic != 0 {
        panic!(
            "BUG: sleeping function called from invalid context at {at}: {atomic} atomic kmap(s) held (pid {})",
            current().pid()
        );
    }
    if count != 0 {
        panic!(
            "BUG: sleeping function called from invalid context at {at}: preempt_count {count} (pid {})",
            current().pid()
        );
    }
}

/// Gives up the CPU voluntarily (the current task sleeps or yields). The debug
/// checker catches sleeping inside an atomic section.
pub fn schedule(_ctx: &mut MaySleep) {
    // Interrupts off first: the counts checked are this CPU's (the task could
    // otherwise move between finding them and reading them).
    let was_on = cpu::irq_save();
    if debug() {
        let atomic = percpu::atomic_kmaps();
        if atomic != 0 {
            panic!("BUG: sleeping function called with {atomic} atomic kmap(s) held (pid {})", current().pid());
        }
        if preempt_count() != 0 {
            panic!("BUG: scheduling while atomic (preempt_count {}, pid {})", preempt_count(), current().pid());
        }
    }
    switch();
    cpu::irq_restore(was_on);
}

/// Lets another runnable task of this CPU run.
pub fn yield_now(ctx: &mut MaySleep) {
    schedule(ctx);
}

/// A scheduling point in a long kernel loop.
pub fn cond_resched(ctx: &mut MaySleep) {
    might_sleep(ctx, "cond_resched");
    if percpu::this_cpu().need_resched.load(Ordering::Relaxed) {
        schedule(ctx);
    }
}

/// The tick: asks for a reschedule when another task is waiting here.
pub fn tick() {
    let cpu = percpu::cpu_id();
    if RQ[cpu as usize].lock().len > 0 {
        percpu::this_cpu().need_resched.store(true, Ordering::Relaxed);
    }
}

/// At the end of every trap: preempts the interrupted task when the tick asked
/// and it is allowed (always on the way back to ring 3; in the kernel only with
/// `--preempt on`, outside atomic sections and with interrupts on there).
pub fn preempt_point(from_user: bool, irqs_were_on: bool) {
    let pc = percpu::this_cpu();
    if !pc.need_resched.load(Ordering::Relaxed) || preempt_count() != 0 || in_idle() {
        return;
    }
    if from_user || (PREEMPT.load(Ordering::Relaxed) && irqs_were_on) {
        if debug() {
            assert!(percpu::atomic_kmaps() == 0, "BUG: preempted with an atomic kmap held");
        }
        percpu::count(Counter::Preemptions, 1);
        switch();
    }
}

/// An idle CPU takes a task from the queue of a CPU busy running another: the
/// first one that is not pinned and whose context is saved. Returns whether it
/// took one (it is then on this CPU's queue).
fn steal() -> bool {
    if !BALANCE.load(Ordering::Relaxed) {
        return false;
    }
    let me = percpu::cpu_id();
    for other in (0..smp::nr_cpus()).filter(|&c| c != me) {
        let taken = {
            let mut rq = RQ[other as usize].lock_irqsave();
            // The other CPU's current task, changed only under this lock.
            let running = percpu::current_of(other);
            // An idle CPU runs its own queue at once: leave it.
            // SAFETY: a CPU's current task is live.
            if running.is_null() || unsafe { (*running).is_idle() } {
                continue;
            }
            let t = rq.take_first(|t| !t.on_cpu.load(Ordering::Acquire) && !t.is_pinned());
            if let Some(t) = t {
                // SAFETY: a task taken off its queue: its CPU changes under that
                // queue's lock (see lock_task_rq).
                unsafe { (*t).cpu.set(me) };
            }
            t
        };
        if let Some(t) = taken {
            // SAFETY: a live runnable task, now ours to queue.
            unsafe { (*t).migrated.store(true, Ordering::Relaxed) };
            MIGRATIONS.fetch_add(1, Ordering::Relaxed);
            RQ[me as usize].lock_irqsave().push(t);
            return true;
        }
    }
    false
}

/// The idle loop: runs queued tasks (and takes some from busy CPUs) until `done`
/// holds.
pub fn idle_until(done: impl Fn() -> bool) {
    loop {
        if queued(percpu::cpu_id()) > 0 || steal() {
            let was_on = cpu::irq_save();
            switch();
            cpu::irq_restore(was_on);
            continue;
        }
        if done() {
            return;
        }
        let t0 = cpu::rdtsc();
        cpu::cli();
        if queued(percpu::cpu_id()) == 0 && !done() {
            cpu::sti_hlt();
        } else {
            cpu::sti();
        }
        percpu::count(Counter::IdleCycles, cpu::rdtsc() - t0);
    }
}

/// A list of sleeping tasks.
pub struct WaitQueue {
    list: SpinLock<*mut Task>,
}

// SAFETY: the list is only touched under its lock.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue { list: SpinLock::new(core::ptr::null_mut()) }
    }

    /// Sleeps until `cond` holds (checked under the queue's lock, so a wakeup
    /// after the condition became true is never lost).
    pub fn wait_until(&self, ctx: &mut MaySleep, cond: impl Fn() -> bool) {
        loop {
            {
                let mut head = self.list.lock();
                if cond() {
                    return;
                }
                let me = current() as *const Task as *mut Task;
                // SAFETY: the current task, linked under this queue's lock.
                unsafe { (*me).wq_next.set(*head) };
                *head = me;
                current().set_state(State::Sleeping);
            }
            schedule(ctx);
        }
    }

    /// Whether a task sleeps here now.
    pub fn has_sleepers(&self) -> bool {
        !self.list.lock().is_null()
    }

    /// Wakes every sleeper (they re-check their conditions).
    pub fn wake_all(&self) {
        let mut t = core::mem::replace(&mut *self.list.lock(), core::ptr::null_mut());
        while !t.is_null() {
            // SAFETY: tasks on a wait queue are live (they sleep until woken).
            let task = unsafe { &*t };
            // The link was written under the queue's lock, which we took.
            t = task.wq_next.get();
            wake_up(task);
        }
    }
}
