//! Ticket spinlocks. Contended acquisitions and their spins are counted per CPU
//! (the figures behind "the global kmap_lock does not scale").
//!
//! With more vCPUs than host CPUs a ticket lock stalls whenever the vCPU whose turn
//! it is has been descheduled, and (QEMU-hosted) KVM cannot notice the spinning: the
//! emulated SVM has no pause filter. So a waiter that has spun a while halts (when
//! interrupts were on), telling the lock in a bitmap; the unlocker kicks halted
//! waiters with an IPI. The halt frees the host CPU for the vCPU that holds the
//! lock: the idea of Linux's paravirt spinlocks, without a hypercall.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use shared::counters::Counter;

use crate::arch::cpu;
use crate::percpu;

/// Spins before a waiter halts.
const SPINS_BEFORE_HALT: u32 = 1 << 10;

pub struct SpinLock<T> {
    next: AtomicU32,
    serving: AtomicU32,
    /// CPUs halted while waiting (bit per CPU).
    halted: AtomicU32,
    /// Also taken in interrupt handlers: every other holder must have interrupts
    /// off, or an interrupt on the holder's CPU spins on it forever.
    irq_safe: bool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one holder at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the data.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(v: T) -> Self {
        SpinLock {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            halted: AtomicU32::new(0),
            irq_safe: false,
            data: UnsafeCell::new(v),
        }
    }

    /// A lock that interrupt handlers take too. The debug checker stops a holder
    /// that takes it with interrupts on (Linux's lockdep calls this an
    /// IRQ-unsafe acquisition of an IRQ-safe lock); `lock_irqsave` is the way.
    pub const fn new_irq_safe(v: T) -> Self {
        let mut l = Self::new(v);
        l.irq_safe = true;
        l
    }

    /// Takes the lock, spinning (and halting, see the module comment); returns how
    /// long it waited. The TSC is read only when the lock was not free at once.
    fn acquire(&self) -> Waited {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let can_halt = cpu::eflags() & cpu::EFLAGS_IF != 0;
        let mut spins = 0u32;
        let mut since = 0;
        while self.serving.load(Ordering::Acquire) != ticket {
            if spins == 0 {
                since = cpu::rdtsc();
            }
            spins = spins.wrapping_add(1);
            if can_halt && spins.is_multiple_of(SPINS_BEFORE_HALT) {
                let bit = 1 << percpu::cpu_id();
                cpu::cli();
                // Locked operations on both sides order "I am halted" before "is it
                // my turn", and the unlock's "serving += 1" before "who is halted".
                self.halted.fetch_or(bit, Ordering::SeqCst);
                if self.serving.load(Ordering::SeqCst) != ticket {
                    percpu::count(Counter::LockHalts, 1);
                    // A kick that raced in is pending and ends the halt at once.
                    cpu::sti_hlt();
                } else {
                    cpu::sti();
                }
                self.halted.fetch_and(!bit, Ordering::SeqCst);
            } else {
                cpu::pause();
            }
        }
        Waited { spins, cycles: if spins == 0 { 0 } else { cpu::rdtsc().wrapping_sub(since) } }
    }

    fn release(&self) {
        self.serving.fetch_add(1, Ordering::SeqCst);
        let halted = self.halted.load(Ordering::SeqCst);
        if halted != 0 {
            crate::smp::kick(halted);
        }
    }

    fn account(spins: u32) {
        if spins != 0 {
            percpu::count(Counter::LockContended, 1);
            percpu::count(Counter::LockSpins, spins as u64);
        }
    }

    #[track_caller]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_counted().0
    }

    /// Takes the lock; also returns how long it waited (zero: uncontended).
    #[track_caller]
    pub fn lock_counted(&self) -> (SpinGuard<'_, T>, Waited) {
        if self.irq_safe && cpu::eflags() & cpu::EFLAGS_IF != 0 && crate::sched::debug() {
            panic!("BUG: a lock that interrupt handlers take, taken with interrupts on");
        }
        percpu::preempt_disable();
        let waited = self.acquire();
        Self::account(waited.spins);
        (SpinGuard { lock: self, irq_was_on: None }, waited)
    }

    /// Takes the lock if nobody holds or waits for it; never waits.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        percpu::preempt_disable();
        let serving = self.serving.load(Ordering::Acquire);
        if self.next.compare_exchange(serving, serving.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed).is_ok() {
            Some(SpinGuard { lock: self, irq_was_on: None })
        } else {
            percpu::preempt_enable();
            None
        }
    }

    /// Takes the lock with interrupts off (restored when the guard drops).
    pub fn lock_irqsave(&self) -> SpinGuard<'_, T> {
        let was_on = cpu::irq_save();
        percpu::preempt_disable();
        let waited = self.acquire();
        Self::account(waited.spins);
        SpinGuard { lock: self, irq_was_on: Some(was_on) }
    }
}

/// How long one acquisition waited for its turn.
#[derive(Clone, Copy)]
pub struct Waited {
    /// Spin iterations (0: the lock was free at once).
    pub spins: u32,
    /// TSC cycles from the first failed look to the lock taken, halts included.
    pub cycles: u64,
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    irq_was_on: Option<bool>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
        percpu::preempt_enable();
        if let Some(was_on) = self.irq_was_on {
            cpu::irq_restore(was_on);
        }
    }
}

/// A value set once (by the boot CPU, before the others start) and read after.
pub struct Once<T> {
    set: core::sync::atomic::AtomicBool,
    value: UnsafeCell<core::mem::MaybeUninit<T>>,
}

// SAFETY: the value is written once before `set` is published with Release and only
// read after `set` is seen with Acquire.
unsafe impl<T: Sync + Send> Sync for Once<T> {}

impl<T> Once<T> {
    pub const fn new() -> Self {
        Once {
            set: core::sync::atomic::AtomicBool::new(false),
            value: UnsafeCell::new(core::mem::MaybeUninit::uninit()),
        }
    }

    /// Stores the value. Panics if called twice.
    pub fn set(&self, v: T) -> &T {
        assert!(!self.set.load(Ordering::Acquire), "Once::set called twice");
        // SAFETY: not yet published, so nobody reads it; only the boot CPU sets.
        unsafe { (*self.value.get()).write(v) };
        self.set.store(true, core::sync::atomic::Ordering::Release);
        self.get()
    }

    /// Whether the value was set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// The value. Panics if it was never set.
    pub fn get(&self) -> &T {
        assert!(self.set.load(Ordering::Acquire), "Once::get before set");
        // SAFETY: published with Release after the write.
        unsafe { (*self.value.get()).assume_init_ref() }
    }
}

/// A word that the kernel's locks or ownership rules protect (a page's
/// buddy links under the zone lock, a task's fields set before it is
/// published): each access is one plain load or store (Relaxed; the lock
/// around it orders it), and no use needs `unsafe`.
#[repr(transparent)]
pub struct Word(AtomicU32);

impl Word {
    pub const fn new(v: u32) -> Self {
        Word(AtomicU32::new(v))
    }

    #[inline]
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn set(&self, v: u32) {
        self.0.store(v, Ordering::Relaxed)
    }
}

/// A list link under a lock (a run queue's, a wait queue's), as [`Word`].
#[repr(transparent)]
pub struct Link<T>(AtomicPtr<T>);

impl<T> Link<T> {
    pub const fn new() -> Self {
        Link(AtomicPtr::new(core::ptr::null_mut()))
    }

    #[inline]
    pub fn get(&self) -> *mut T {
        self.0.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn set(&self, t: *mut T) {
        self.0.store(t, Ordering::Relaxed)
    }
}
