//! Tasks: a kernel stack (8 KiB of lowmem, the task structure at its bottom as
//! Linux's thread_info was), an address space, a parent, an exit code.
//!
//! Every task is in a global table by pid. A parent waits for a child by pid; a
//! child that exits becomes a zombie until its parent (or, for the workloads'
//! first tasks, the boot CPU) reaps it and frees its stack.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::abi::errno;
use shared::counters::Counter;

use crate::arch::gdt::{USER_CS, USER_DS};
use crate::arch::trap::TrapFrame;
use crate::mm::address_space::{self, Mm};
use crate::mm::layout::{phys_to_virt, virt_to_phys, PAGE_SIZE};
use crate::mm::page::{self, Zone};
use crate::sched::{self, WaitQueue};
use crate::sync::{Link, SpinLock, Word};
use crate::{percpu, smp};

/// Most tasks alive at once.
pub const MAX_TASKS: usize = 4096;
const STACK_ORDER: u32 = 1;
const STACK_SIZE: u32 = PAGE_SIZE << STACK_ORDER;
const MAGIC: u32 = 0x7a5c_0001;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum State {
    Running = 0,
    Sleeping = 1,
    Zombie = 2,
}

#[repr(C)]
pub struct Task {
    magic: u32,
    pid: Word,
    pub(crate) cpu: Word,
    state: AtomicU32,
    /// Saved stack pointer while switched out.
    pub(crate) sp: UnsafeCell<u32>,
    stack_top: Word,
    /// The address space (null for idle tasks).
    mm: UnsafeCell<*mut Mm>,
    ppid: Word,
    exit_code: AtomicI32,
    /// The parent sleeps here waiting for a child.
    pub children: WaitQueue,
    pub(crate) on_cpu: AtomicBool,
    pub(crate) rq_next: Link<Task>,
    pub(crate) wq_next: Link<Task>,
    /// Pte maps and kmaps this task holds (the checker's balance).
    pub maps_live: Word,
    /// Per-task kmap: what each of the two slots maps (0: free).
    pub kmap_slots: UnsafeCell<[u64; 2]>,
    /// Sleeping in the PAUSE system call, and released from it.
    pub paused: AtomicBool,
    pub released: AtomicBool,
    /// Maps that tie the task to its CPU (per-CPU pool kmaps): no other CPU may
    /// take it while non-zero.
    pinned: AtomicU32,
    /// Taken by another CPU since it last ran: its next activation reloads CR3.
    pub(crate) migrated: AtomicBool,
}

// SAFETY: the UnsafeCell fields are used by the task itself, or under the run
// queue lock of its CPU (links, state), or before the task is published.
unsafe impl Sync for Task {}

impl Task {
    pub const fn idle() -> Self {
        Task {
            magic: MAGIC,
            pid: Word::new(0),
            cpu: Word::new(0),
            state: AtomicU32::new(State::Running as u32),
            sp: UnsafeCell::new(0),
            stack_top: Word::new(0),
            mm: UnsafeCell::new(core::ptr::null_mut()),
            ppid: Word::new(0),
            exit_code: AtomicI32::new(0),
            children: WaitQueue::new(),
            on_cpu: AtomicBool::new(true),
            rq_next: Link::new(),
            wq_next: Link::new(),
            maps_live: Word::new(0),
            kmap_slots: UnsafeCell::new([0; 2]),
            paused: AtomicBool::new(false),
            released: AtomicBool::new(false),
            pinned: AtomicU32::new(0),
            migrated: AtomicBool::new(false),
        }
    }

    pub fn pid(&self) -> u32 {
        // Set before the task is published.
        self.pid.get()
    }

    pub fn cpu(&self) -> u32 {
        // Changed under its run queue's lock (see sched::lock_task_rq).
        self.cpu.get()
    }

    pub fn is_idle(&self) -> bool {
        self.pid() == 0
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Running,
            1 => State::Sleeping,
            _ => State::Zombie,
        }
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Ties the task to its CPU until as many [`Task::unpin`]s (it holds a map
    /// only this CPU has). Only the task itself pins and unpins.
    pub fn pin(&self) {
        self.pinned.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unpin(&self) {
        let was = self.pinned.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(was > 0);
    }

    /// Whether another CPU must leave it where it is.
    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed) != 0
    }

    /// The task's address space.
    pub fn mm(&self) -> Option<&'static Mm> {
        // SAFETY: the mm lives while the task holds its reference.
        unsafe { (*self.mm.get()).as_ref() }
    }

    /// Replaces the address space (exec); returns the old one.
    pub fn replace_mm(&self, mm: *mut Mm) -> *mut Mm {
        // SAFETY: only the task itself changes its mm.
        unsafe { core::mem::replace(&mut *self.mm.get(), mm) }
    }

    /// Makes this task's context current on this CPU (kernel stack, pagetables).
    pub fn activate(&self) {
        if self.is_idle() {
            return;
        }
        debug_assert_eq!(self.magic, MAGIC, "task structure overwritten (stack overflow?)");
        percpu::set_kernel_stack(self.stack_top.get());
        if let Some(mm) = self.mm() {
            // After a migration this CPU may still have the address space loaded
            // from before, with entries its owner has since changed elsewhere
            // with local flushes only (the per-task kmap pair): reload.
            mm.activate(self.migrated.swap(false, Ordering::Relaxed));
        }
    }

    fn frame(&self) -> *mut TrapFrame {
        // SAFETY: the initial frame sits at the top of the task's stack.
        unsafe { (self.stack_top.get() as *mut TrapFrame).sub(1) }
    }
}

/// The pid of a table entry (None for an empty one). Call with the table locked.
fn pid_of(t: *mut Task) -> Option<u32> {
    // SAFETY: entries of the table are live tasks while the table lock is held.
    (!t.is_null()).then(|| unsafe { (*t).pid.get() })
}

/// The state of a table entry (None for an empty one). Call with the table locked.
fn state_of(t: *mut Task) -> Option<State> {
    // SAFETY: as in pid_of.
    (!t.is_null()).then(|| unsafe { (*t).state() })
}

struct Table {
    tasks: [*mut Task; MAX_TASKS],
    next_pid: u32,
}

// SAFETY: pointers to tasks, under the lock.
unsafe impl Send for Table {}

static TABLE: SpinLock<Table> = SpinLock::new(Table { tasks: [core::ptr::null_mut(); MAX_TASKS], next_pid: 1 });
static NEXT_CPU: AtomicU32 = AtomicU32::new(0);
/// The boot CPU sleeps on this until every task has exited.
pub static ALL_EXITED: WaitQueue = WaitQueue::new();

/// Allocates a task (stack, table slot) with a user frame; not yet runnable.
fn new_task(mm: *mut Mm, ppid: u32, frame: &TrapFrame, cpu: u32) -> Result<&'static Task, i32> {
    let stack = page::alloc_pages(Zone::Normal, STACK_ORDER).ok_or(errno::ENOMEM)?;
    let base = phys_to_virt(stack);
    let t = base as *mut Task;
    let top = base + STACK_SIZE;
    let mut table = TABLE.lock();
    let Some(slot) = table.tasks.iter().position(|p| p.is_null()) else {
        drop(table);
        page::free_pages(stack, STACK_ORDER);
        return Err(errno::EAGAIN);
    };
    let pid = table.next_pid;
    table.next_pid += 1;
    // SAFETY: a fresh lowmem block this function owns.
    unsafe {
        t.write(Task::idle());
        (*t).pid.set(pid);
        (*t).cpu.set(cpu);
        (*t).stack_top.set(top);
        *(*t).mm.get() = mm;
        (*t).ppid.set(ppid);
        (*t).on_cpu.store(false, Ordering::Relaxed);
        let f = (*t).frame();
        f.write(*frame);
        // The switch frame below it: eflags, edi, esi, ebx, ebp, return address.
        let sw = (f as *mut u32).sub(6);
        sw.write(0x2);
        sw.add(1).write(0);
        sw.add(2).write(0);
        sw.add(3).write(0);
        sw.add(4).write(0);
        sw.add(5).write(sched::first_entry());
        *(*t).sp.get() = sw as u32;
    }
    table.tasks[slot] = t;
    // SAFETY: fully initialised above.
    Ok(unsafe { &*t })
}

fn pick_cpu() -> u32 {
    NEXT_CPU.fetch_add(1, Ordering::Relaxed) % smp::nr_cpus()
}

/// Starts a user program at `entry` with `regs` (eax, ebx, ecx, edx, esi, edi)
/// in a fresh address space, on the next CPU in turn.
pub fn spawn(ctx: &mut MaySleep, entry: u32, regs: [u32; 6]) -> Result<&'static Task, i32> {
    let mm = address_space::new_user(ctx).ok_or(errno::ENOMEM)?;
    let frame = user_frame(entry, regs);
    match new_task(mm, 0, &frame, pick_cpu()) {
        Ok(t) => {
            sched::enqueue_new(t);
            Ok(t)
        }
        Err(e) => {
            // SAFETY: nobody else has this mm.
            address_space::put(ctx, unsafe { &*mm });
            Err(e)
        }
    }
}

/// The trap frame a user program starts with.
pub fn user_frame(entry: u32, regs: [u32; 6]) -> TrapFrame {
    let ds = USER_DS as u32;
    TrapFrame {
        gs: ds,
        fs: ds,
        es: ds,
        ds,
        edi: regs[5],
        esi: regs[4],
        ebp: 0,
        esp_pusha: 0,
        ebx: regs[1],
        edx: regs[3],
        ecx: regs[2],
        eax: regs[0],
        vector: 0,
        error: 0,
        eip: entry,
        cs: USER_CS as u32,
        eflags: 0x202,
        user_esp: address_space::USER_STACK_TOP,
        user_ss: ds,
    }
}

/// fork: a child with a copy of the parent's address space, returning 0 to the
/// child and its pid to the parent.
pub fn fork(ctx: &mut MaySleep, frame: &TrapFrame) -> Result<u32, i32> {
    let parent = sched::current();
    let mm = address_space::copy(ctx, parent.mm().expect("fork from a task without mm"))?;
    let mut child_frame = *frame;
    child_frame.eax = 0;
    match new_task(mm, parent.pid(), &child_frame, pick_cpu()) {
        Ok(t) => {
            percpu::count(Counter::Forks, 1);
            let pid = t.pid();
            sched::enqueue_new(t);
            Ok(pid)
        }
        Err(e) => {
            // SAFETY: nobody else has this mm.
            address_space::put(ctx, unsafe { &*mm });
            Err(e)
        }
    }
}

/// Ends the current task with `code`. Never returns.
pub fn exit(ctx: &mut MaySleep, code: i32) -> ! {
    let me = sched::current();
    if sched::debug() {
        let live = me.maps_live.get();
        assert!(live == 0, "BUG: pid {} exits with {live} pte map(s) or kmap(s) still held", me.pid());
    }
    percpu::count(Counter::Exits, 1);
    // The last reference tears the address space down: `put` detaches it from
    // this task and switches to the kernel's pagetables first (2.6.28 under
    // Xen unpinned before it zapped), then maps the pte pages atomically.
    if let Some(mm) = me.mm() {
        address_space::put(ctx, mm);
    }
    crate::mm::pgtable::switch_to_kernel();
    me.replace_mm(core::ptr::null_mut());
    me.exit_code.store(code, Ordering::Relaxed);
    let ppid = me.ppid.get();
    {
        let table = TABLE.lock();
        me.set_state(State::Zombie);
        if ppid != 0 {
            if let Some(p) = table.tasks.iter().find(|&&t| pid_of(t) == Some(ppid)) {
                // SAFETY: in the table, so not yet freed; the lock keeps it there.
                unsafe { (**p).children.wake_all() };
            }
        }
    }
    ALL_EXITED.wake_all();
    sched::schedule(ctx);
    unreachable!("a zombie was scheduled");
}

/// Waits for child `pid` to exit; returns its exit code.
pub fn wait(ctx: &mut MaySleep, pid: u32) -> Result<i32, i32> {
    let me = sched::current();
    let find = || -> Option<*mut Task> {
        let table = TABLE.lock();
        // SAFETY: tasks in the table are live.
        table.tasks.iter().copied().find(|&t| pid_of(t) == Some(pid))
    };
    let t = find().ok_or(errno::ECHILD)?;
    // SAFETY: a task found in the table is live, and stays so: only its
    // parent, this task, reaps it.
    let child = unsafe { &*t };
    // The child's field, set at creation.
    if child.ppid.get() != me.pid() {
        return Err(errno::ECHILD);
    }
    me.children.wait_until(ctx, || child.state() == State::Zombie);
    Ok(reap(child))
}

/// Frees a zombie's table slot and stack; returns its exit code.
fn reap(child: &Task) -> i32 {
    while child.on_cpu.load(Ordering::Acquire) {
        crate::arch::cpu::pause();
    }
    let code = child.exit_code.load(Ordering::Relaxed);
    let ptr = child as *const Task as *mut Task;
    {
        let mut table = TABLE.lock();
        if let Some(slot) = table.tasks.iter().position(|&p| p == ptr) {
            table.tasks[slot] = core::ptr::null_mut();
        }
    }
    page::free_pages(virt_to_phys(ptr as u32), STACK_ORDER);
    code
}

/// Reaps every zombie (the boot CPU, once the workload's tasks are done); returns
/// how many exited with a non-zero code.
pub fn reap_all() -> u32 {
    let mut failed = 0;
    loop {
        let z = {
            let table = TABLE.lock();
            table.tasks.iter().copied().find(|&t| state_of(t) == Some(State::Zombie))
        };
        let Some(t) = z else { return failed };
        // SAFETY: a zombie in the table.
        if reap(unsafe { &*t }) != 0 {
            failed += 1;
        }
    }
}

/// Whether every task in the table is a zombie.
pub fn all_zombies() -> bool {
    let table = TABLE.lock();
    // SAFETY: tasks in the table are live structures.
    table.tasks.iter().all(|&t| t.is_null() || state_of(t) == Some(State::Zombie))
}

/// A task by pid, while it is in the table. The caller must know it stays.
pub fn find(pid: u32) -> Option<&'static Task> {
    let table = TABLE.lock();
    // SAFETY: tasks in the table are live.
    table.tasks.iter().copied().find(|&t| pid_of(t) == Some(pid)).map(|t| unsafe { &*t })
}

/// Calls `f` for every task in the table.
pub fn for_each(f: impl Fn(&Task)) {
    let table = TABLE.lock();
    for &t in table.tasks.iter().filter(|t| !t.is_null()) {
        // SAFETY: tasks in the table are live while the lock is held.
        f(unsafe { &*t });
    }
}
