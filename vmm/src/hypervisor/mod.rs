//! The host side of the hypercall ABI (`shared::abi`): reads a request block from
//! guest memory, runs the call, writes `rc`/`ret` back. One exit per call.
//!
//! Nothing a guest sends can make the host panic: a block outside guest RAM stops
//! the guest with a violation report; bad arguments get a negative errno.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use shared::abi::{errno, nr, HypercallBlock};
use vm_memory::GuestMemoryMmap;

use crate::kvm::vcpu::{Exits, Then};
use crate::kvm::write_protect::{ProtectStats, WriteProtect};
use crate::report::{FaultInfo, MilestoneRecord, Outcome, TripleFault, VcpuSnapshot};
use pvmmu::guest_memory as memory;
use pvmmu::ops::BatchResult;
use pvmmu::{DirectWrite, OnViolation, PvMmu, PvMmuConfig, PvMmuReport, Rule, ViolationRecord};

mod dispatch;
mod protection;
mod record;
mod roots;

/// What a run whose PV MMU lock was poisoned (a panic under it) ends with.
const PV_POISONED: &str = "the PV MMU's lock was poisoned";

/// The longest console write or result name a guest may send.
pub const CONSOLE_MAX: u64 = 4096;
pub const RESULT_NAME_MAX: u64 = 64;

/// Where the guest's console lines go.
pub type ConsoleSink = Box<dyn Write + Send>;

pub struct Hypervisor {
    pub mem: GuestMemoryMmap,
    start: Instant,
    console: Mutex<ConsoleSink>,
    milestones: Mutex<Vec<MilestoneRecord>>,
    results: Mutex<BTreeMap<String, u64>>,
    /// (hypercall number, rc) -> count
    calls: Mutex<BTreeMap<(u32, i32), u64>>,
    /// The PV MMU: one lock, a batch runs under it as one exit.
    pvmmu: Mutex<PvMmu>,
    /// Read-only memslots over validated pagetables (none in unit tests).
    protect: Mutex<Option<WriteProtect>>,
    /// Set when the PV MMU changed which frames are pagetables: the vCPU that made
    /// the change stops the others and brings the protection up to date before it
    /// returns to the guest.
    protect_pending: AtomicBool,
    /// The dirty log is on: [`Hypervisor::find_direct_writes`] has work at exits.
    watching: AtomicBool,
    /// A vCPU ran on a validated root at an exit: the guest's kernel lives on
    /// validated tables (`--pvmmu on`).
    on_validated_roots: AtomicBool,
    /// On a QEMU TCG host, the write protection is off: switched off, with the
    /// world stopped, after a vCPU first ran on a validated root.
    protection_switched_off: AtomicBool,
    /// vCPUs whose CR3 must be a validated root at every hypercall from now on
    /// (they announced one at an earlier exit).
    cr3_armed: [AtomicBool; shared::boot::MAX_VCPUS],
    /// Each vCPU's last hypercall: its number (high half) and result (low half),
    /// for the report of a vCPU that dies without a word (a triple fault).
    last_call: [AtomicU64; shared::boot::MAX_VCPUS],
    /// Set when a vCPU was left inside a host call at the run's end: the
    /// report's readers then take no lock it may hold for ever.
    left_behind: AtomicBool,
}

impl Hypervisor {
    pub fn new(mem: GuestMemoryMmap, start: Instant, console: ConsoleSink, pv: PvMmuConfig) -> Self {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        let regions: Vec<shared::boot::MemRegion> =
            mem.iter().map(|r| shared::boot::MemRegion { base: r.start_addr().0, len: r.len() }).collect();
        Hypervisor {
            pvmmu: Mutex::new(PvMmu::new(&regions, pv)),
            protect: Mutex::new(None),
            protect_pending: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            on_validated_roots: AtomicBool::new(false),
            protection_switched_off: AtomicBool::new(false),
            cr3_armed: [const { AtomicBool::new(false) }; shared::boot::MAX_VCPUS],
            last_call: [const { AtomicU64::new(u64::MAX) }; shared::boot::MAX_VCPUS],
            left_behind: AtomicBool::new(false),
            mem,
            start,
            console: Mutex::new(console),
            milestones: Mutex::new(Vec::new()),
            results: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Handles the hypercall whose block is at `gpa`, issued by `vcpu`.
    pub fn hypercall(&self, vcpu: u32, gpa: u64) -> Then {
        let violation = |detail: String| Then::Stop(Outcome::Violation { vcpu, rule: Rule::HypercallBlock, detail });
        if !gpa.is_multiple_of(8) {
            return violation(format!("request block at {gpa:#x} is not 8-byte aligned"));
        }
        let block: HypercallBlock = match memory::read_obj(&self.mem, gpa) {
            Ok(b) => b,
            Err(_) => return violation(format!("request block at {gpa:#x} is outside guest RAM")),
        };
        let (rc, ret, then) = self.dispatch(vcpu, gpa, &block);
        if let Ok(mut calls) = self.calls.lock() {
            let key = record::bounded_call_key(&calls, block.op, rc);
            let n = calls.entry(key).or_insert(0);
            *n = n.saturating_add(1);
        }
        if let Some(last) = self.last_call.get(vcpu as usize) {
            last.store((block.op as u64) << 32 | rc as u32 as u64, Ordering::Relaxed);
        }
        let (rc_bytes, ret_bytes) = (rc.to_le_bytes(), ret.to_le_bytes());
        let answer = self.write_guest_all(&[
            (gpa + HypercallBlock::RC_OFFSET as u64, &rc_bytes),
            (gpa + HypercallBlock::RET_OFFSET as u64, &ret_bytes),
        ]);
        if let Err(why) = answer {
            return match then {
                // A fault or a violation the call itself found says more; a
                // shutdown does not hide the refused answer.
                Then::Stop(o) if !matches!(o, Outcome::Shutdown { .. }) => Then::Stop(o),
                _ => Then::Stop(Outcome::Violation {
                    vcpu,
                    rule: Rule::HostWrite,
                    detail: format!("the answer to the request block at {gpa:#x} was not written: {why}"),
                }),
            };
        }
        then
    }

    /// Where a supervisor write to each of `vas` lands under root `cr3`, by a
    /// walk of the guest's tables as the CPU makes it (write permission
    /// included, which KVM_TRANSLATE does not report): all of them, or why one
    /// would fault.
    pub fn writable_gpas<const N: usize>(&self, cr3: u64, vas: [u32; N]) -> Result<[u64; N], String> {
        let write = self.pvmmu.lock().map(|pv| pv.weaken() != pvmmu::HostWeaken::StackWalk).unwrap_or(true);
        let mut out = [0u64; N];
        for (o, va) in out.iter_mut().zip(vas) {
            *o = pvmmu::walk::gpa(&self.mem, cr3, va, write).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// The one way the host writes guest memory on the guest's behalf (answers,
    /// trap-back frames): only where the guest could have written itself
    /// ([`pvmmu::PvMmu::check_host_write`]), all pieces or none (each
    /// is checked before any is written), under the PV MMU's lock so that no
    /// type changes in between.
    pub fn write_guest_all(&self, pieces: &[(u64, &[u8])]) -> Result<(), String> {
        let pv = self.pvmmu.lock().map_err(|_| PV_POISONED.to_owned())?;
        for (gpa, bytes) in pieces {
            pv.check_host_write(*gpa, bytes.len() as u64)?;
        }
        for (gpa, bytes) in pieces {
            memory::write_bytes(&self.mem, *gpa, bytes).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// What the host knows of vCPU `vcpu` that shut down: its last hypercall
    /// and the root it announced last.
    pub fn triple_fault(&self, at: VcpuSnapshot) -> TripleFault {
        let mut t = TripleFault::new(at);
        let last = self.last_call.get(at.vcpu as usize).map_or(u64::MAX, |l| l.load(Ordering::Relaxed));
        if last != u64::MAX {
            let (op, rc) = ((last >> 32) as u32, last as u32 as i32);
            let name = nr::name(op).map(str::to_owned).unwrap_or_else(|| format!("unknown_{op:#x}"));
            t.last_hypercall = Some(format!("{name}: {}", errno::name(rc)));
        }
        if let Ok(pv) = self.pvmmu.lock() {
            t.last_root = pv.root(at.vcpu).map(|pfn| pv.describe_frame(pfn));
        }
        t
    }

    fn vmm_error(&self, message: &str) -> Then {
        Then::Stop(Outcome::VmmError { message: message.to_owned() })
    }

    /// The PV MMU, locked. A poisoned lock (a panic while it was held) stops
    /// the run as the host's error.
    fn pv_locked(&self) -> Result<MutexGuard<'_, PvMmu>, Then> {
        self.pvmmu.lock().map_err(|_| self.vmm_error(PV_POISONED))
    }

    /// The write protection, locked; as [`Hypervisor::pv_locked`].
    fn protect_locked(&self) -> Result<MutexGuard<'_, Option<WriteProtect>>, Then> {
        self.protect.lock().map_err(|_| self.vmm_error("the write protection's lock was poisoned"))
    }
}

/// The hypervisor is what our guest's exits mean: its hypercalls, its PV MMU's
/// protection and CR3 checks, and the trap-back's frame.
impl Exits for Hypervisor {
    fn hypercall(&self, vcpu: u32, gpa: u64) -> Then {
        Hypervisor::hypercall(self, vcpu, gpa)
    }
    fn direct_write(&self, vcpu: u32, gpa: u64, data: &[u8]) -> Then {
        Hypervisor::direct_write(self, vcpu, gpa, data)
    }
    fn triple_fault(&self, at: VcpuSnapshot) -> TripleFault {
        Hypervisor::triple_fault(self, at)
    }
    fn protection_pending(&self) -> bool {
        Hypervisor::protection_pending(self)
    }
    fn protection_off(&self) -> bool {
        Hypervisor::protection_off(self)
    }
    fn apply_protection(&self, vcpu: u32) -> Then {
        Hypervisor::apply_protection(self, vcpu)
    }
    fn wants_cr3(&self, vcpu: u32) -> bool {
        Hypervisor::wants_cr3(self, vcpu)
    }
    fn check_cr3(&self, vcpu: u32, cr3: u64) -> Then {
        Hypervisor::check_cr3(self, vcpu, cr3)
    }
    fn find_direct_writes(&self, vcpu: u32) -> Then {
        Hypervisor::find_direct_writes(self, vcpu)
    }
    fn writable_gpas(&self, cr3: u64, vas: [u32; 3]) -> Result<[u64; 3], String> {
        Hypervisor::writable_gpas(self, cr3, vas)
    }
    fn write_guest_all(&self, pieces: &[(u64, &[u8])]) -> Result<(), String> {
        Hypervisor::write_guest_all(self, pieces)
    }
    fn trap_back_refused(&self, vcpu: u32, detail: String) -> Outcome {
        Outcome::Violation { vcpu, rule: Rule::TrapBackFrame, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::record::{MAX_MILESTONES, MAX_RESULTS, MAX_UNKNOWN_CALLS, RESULTS_DROPPED};
    use super::*;
    use pvmmu::guest_memory::{create, RamSize};
    use shared::abi::FaultReport;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn hv() -> (Hypervisor, Sink) {
        let sink = Sink::default();
        let mem = create(RamSize::new(16 << 20).unwrap()).unwrap();
        let pv = PvMmuConfig::from_config(&shared::config::Config::new());
        (Hypervisor::new(mem, Instant::now(), Box::new(sink.clone()), pv), sink)
    }

    fn call(hv: &Hypervisor, op: u32, args: [u64; 4]) -> (HypercallBlock, Then) {
        // Above the host's reserved frames, where answers may be written.
        let gpa = 0x7800;
        memory::write_obj(&hv.mem, gpa, &HypercallBlock { op, rc: 99, args, ret: 99 }).unwrap();
        let o = hv.hypercall(0, gpa);
        (memory::read_obj(&hv.mem, gpa).unwrap(), o)
    }

    #[test]
    fn nop_echoes_and_unknown_is_enosys() {
        let (hv, _) = hv();
        let (b, _) = call(&hv, nr::NOP, [0xdead_beef_0000_0001, 0, 0, 0]);
        assert_eq!((b.rc, b.ret), (0, 0xdead_beef_0000_0001));
        let (b, _) = call(&hv, 0x7777, [0; 4]);
        assert_eq!(b.rc, -errno::ENOSYS);
        assert_eq!(hv.call_counts()["nop"]["OK"], 1);
        assert_eq!(hv.call_counts()["unknown_0x7777"]["ENOSYS"], 1);
    }

    #[test]
    fn console_and_results_read_guest_memory() {
        let (hv, sink) = hv();
        memory::write_bytes(&hv.mem, 0x3000, b"hello\n").unwrap();
        let (b, _) = call(&hv, nr::CONSOLE_WRITE, [0x3000, 6, 0, 0]);
        assert_eq!(b.rc, 0);
        assert_eq!(&*sink.0.lock().unwrap(), b"hello\n");
        memory::write_bytes(&hv.mem, 0x3000, b"ipi_ns").unwrap();
        call(&hv, nr::RESULT, [0x3000, 6, 1234, 0]);
        assert_eq!(hv.results()["ipi_ns"], 1234);
        let (b, _) = call(&hv, nr::CONSOLE_WRITE, [0x3000, CONSOLE_MAX + 1, 0, 0]);
        assert_eq!(b.rc, -errno::EINVAL);
        let (b, _) = call(&hv, nr::CONSOLE_WRITE, [1 << 40, 4, 0, 0]);
        assert_eq!(b.rc, -errno::EFAULT);
    }

    #[test]
    fn bad_blocks_stop_the_guest_without_panicking() {
        let (hv, _) = hv();
        for gpa in [0x2001, 1 << 40, (16 << 20) - 8] {
            match hv.hypercall(1, gpa) {
                Then::Stop(Outcome::Violation { vcpu: 1, .. }) => {}
                _ => panic!("block at {gpa:#x} was accepted"),
            }
        }
    }

    #[test]
    fn concurrent_hypercalls_each_get_their_own_answer() {
        let (hv, _) = hv();
        let hv = Arc::new(hv);
        let threads: Vec<_> = (0..4u64)
            .map(|cpu| {
                let hv = hv.clone();
                std::thread::spawn(move || {
                    let gpa = 0x10000 + cpu * 0x1000;
                    for i in 0..2000u64 {
                        let arg = (cpu << 32) | i;
                        memory::write_obj(
                            &hv.mem,
                            gpa,
                            &HypercallBlock { op: nr::NOP, rc: 9, args: [arg, 0, 0, 0], ret: 0 },
                        )
                        .unwrap();
                        assert!(matches!(hv.hypercall(cpu as u32, gpa), Then::Continue));
                        let b: HypercallBlock = memory::read_obj(&hv.mem, gpa).unwrap();
                        assert_eq!((b.rc, b.ret), (0, arg));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(hv.call_counts()["nop"]["OK"], 8000);
    }

    #[test]
    fn pv_mmu_calls_reach_the_frame_table_and_ask_for_flushes() {
        use shared::abi::pvmmu::{cmd, MmuUpdate, MmuextOp};
        let (hv, _) = hv();
        // An L3 at frame 0x200 whose entry 0 points at an L2 at 0x201.
        memory::write_obj(&hv.mem, 0x200 << 12, &((0x201u64 << 12) | 1)).unwrap();
        let pin = MmuextOp { cmd: cmd::PIN_L3_TABLE, _pad: 0, arg1: 0x200, arg2: 0 };
        let root = MmuextOp { cmd: cmd::NEW_BASEPTR, ..pin };
        memory::write_obj(&hv.mem, 0x5000, &pin).unwrap();
        memory::write_obj(&hv.mem, 0x5000 + MmuextOp::SIZE, &root).unwrap();
        let (b, o) = call(&hv, nr::MMUEXT_OP, [0x5000, 2, 0, 0]);
        assert_eq!((b.rc, b.ret), (0, 2));
        assert!(matches!(o, Then::Flush(1)), "NEW_BASEPTR flushes the caller");
        // An entry of 0x202, a frame of no type, is refused (T1), and nothing
        // is flushed.
        memory::write_obj(&hv.mem, 0x201 << 12, &((0x202u64 << 12) | 1)).unwrap();
        let bad = MmuUpdate { ptr: 0x202 << 12, val: (0x201 << 12) | 3 };
        memory::write_obj(&hv.mem, 0x6000, &bad).unwrap();
        let (b, o) = call(&hv, nr::MMU_UPDATE, [0x6000, 1, 0, 0]);
        assert_eq!((b.rc, b.ret), (-errno::EINVAL, 0), "0x202 has no type: no plain write");
        assert_eq!(memory::read_obj::<u64>(&hv.mem, 0x202 << 12).unwrap(), 0, "nothing written");
        assert!(matches!(o, Then::Continue));
        let report = hv.pvmmu_report().unwrap();
        assert_eq!((report.frames.l3, report.frames.l2, report.frames.pinned), (1, 1, 1));
        assert_eq!(report.stats.applied["new_baseptr"], 1);
        assert_eq!(hv.call_counts()["mmuext_op"]["OK"], 1);
        let (b, _) = call(&hv, nr::SET_CALLBACKS, [1 << 32, 0, 0, 0]);
        assert_eq!(b.rc, -errno::EINVAL, "a fixup entry above 4 GiB");
        // A writable alias of frame 0x203 in the L1 at 0x202, then a pin of 0x203
        // with a fixup registered: the host traps back instead of failing.
        let pin_l1 = MmuextOp { cmd: cmd::PIN_L1_TABLE, _pad: 0, arg1: 0x202, arg2: 0 };
        memory::write_obj(&hv.mem, 0x202 << 12, &((0x203u64 << 12) | 3)).unwrap();
        memory::write_obj(&hv.mem, 0x5000, &pin_l1).unwrap();
        assert_eq!(call(&hv, nr::MMUEXT_OP, [0x5000, 1, 0, 0]).0.rc, 0);
        assert_eq!(call(&hv, nr::SET_CALLBACKS, [0xc010_0000, 0, 0, 0]).0.rc, 0);
        memory::write_obj(&hv.mem, 0x5000, &MmuextOp { arg1: 0x203, ..pin_l1 }).unwrap();
        match call(&hv, nr::MMUEXT_OP, [0x5000, 1, 0, 0]).1 {
            Then::TrapBack { pfn: 0x203, entry: 0xc010_0000, block: 0x7800, flush: 0 } => {}
            _ => panic!("no trap back"),
        }
    }

    #[test]
    fn the_host_never_writes_an_answer_into_a_validated_table_or_a_reserved_frame() {
        use shared::abi::pvmmu::{cmd, MmuextOp};
        let (hv, _) = hv();
        // A pinned (empty) L1 at frame 0x300; the block inside it, at entry 4.
        let pin = MmuextOp { cmd: cmd::PIN_L1_TABLE, _pad: 0, arg1: 0x300, arg2: 0 };
        memory::write_obj(&hv.mem, 0x5000, &pin).unwrap();
        assert_eq!(call(&hv, nr::MMUEXT_OP, [0x5000, 1, 0, 0]).0.rc, 0);
        let block = (0x300 << 12) + 4 * 8;
        // The no-op echoes its argument: ret = 3 would become entry 9 (the
        // block's last word) = frame 0 | P | RW.
        memory::write_obj(&hv.mem, block, &HypercallBlock { op: nr::NOP, rc: 0, args: [3, 0, 0, 0], ret: 0 }).unwrap();
        match hv.hypercall(0, block) {
            Then::Stop(Outcome::Violation { rule, detail, .. }) => {
                assert_eq!(rule, Rule::HostWrite);
                assert!(detail.contains("validated L1"), "{detail}");
            }
            _ => panic!("the answer was written into a pinned L1"),
        }
        assert_eq!(memory::read_obj::<u64>(&hv.mem, (0x300 << 12) + 9 * 8).unwrap(), 0, "entry 9 untouched");
        // A shutdown from there does not hide the refused answer.
        memory::write_obj(&hv.mem, block, &HypercallBlock { op: nr::SHUTDOWN, rc: 0, args: [0; 4], ret: 0 }).unwrap();
        assert!(matches!(hv.hypercall(0, block), Then::Stop(Outcome::Violation { .. })));
        memory::write_obj(&hv.mem, block, &HypercallBlock { op: nr::NOP, rc: 0, args: [3, 0, 0, 0], ret: 0 }).unwrap();
        // Host-reserved frames take no answer either.
        assert!(hv.write_guest_all(&[(0x1000, &[1])]).unwrap_err().contains("host-reserved"));
        assert!(hv.write_guest_all(&[(0x8000, &[1]), (0x300 << 12, &[1])]).is_err());
        assert_eq!(memory::read_obj::<u64>(&hv.mem, 0x8000).unwrap(), 0, "all or none");
        // Unpinned, the frame is the guest's again.
        let unpin = MmuextOp { cmd: cmd::UNPIN_TABLE, ..pin };
        memory::write_obj(&hv.mem, 0x5000, &unpin).unwrap();
        assert_eq!(call(&hv, nr::MMUEXT_OP, [0x5000, 1, 0, 0]).0.rc, 0);
        assert!(matches!(hv.hypercall(0, block), Then::Continue));
        assert_eq!(memory::read_obj::<u64>(&hv.mem, (0x300 << 12) + 9 * 8).unwrap(), 3);
    }

    /// The trap-back's stack frame goes where the guest's own tables say a
    /// push would land (the walk reads them as the CPU does); if that is a
    /// validated table of any type, the frame is refused and nothing written.
    #[test]
    fn a_trap_back_frame_over_any_table_type_is_refused_with_nothing_written() {
        use shared::abi::pvmmu::{cmd, MmuextOp};
        use shared::pae::{P, RW};
        let (hv, _) = hv();
        // The guest's tables, as memory holds them: root 0x310 -> L2 0x311 ->
        // L1 0x312, mapping 0x0040_0000 + i pages read-write to frame 0x320 + i.
        let set = |pfn: u64, i: u64, v: u64| memory::write_obj(&hv.mem, (pfn << 12) + 8 * i, &v).unwrap();
        set(0x310, 0, (0x311 << 12) | P);
        set(0x311, 2, (0x312 << 12) | P | RW);
        for i in 0..4 {
            set(0x312, i, ((0x320 + i) << 12) | P | RW);
        }
        let cr3 = 0x310 << 12;
        let frame = [0x11u8; 12];
        for (i, (level, name)) in
            [(cmd::PIN_L1_TABLE, "L1"), (cmd::PIN_L2_TABLE, "L2"), (cmd::PIN_L3_TABLE, "L3")].into_iter().enumerate()
        {
            let target = 0x320 + i as u64;
            memory::write_obj(&hv.mem, 0x5000, &MmuextOp { cmd: level, _pad: 0, arg1: target, arg2: 0 }).unwrap();
            assert_eq!(call(&hv, nr::MMUEXT_OP, [0x5000, 1, 0, 0]).0.rc, 0, "pin {name}");
            let esp = 0x0040_0000 + (i as u32) * 4096 + 0x100;
            let at = hv.writable_gpas(cr3, [esp, esp + 4, esp + 8]).unwrap();
            assert_eq!(at[0] >> 12, target, "the walk lands in the {name}");
            let pieces: Vec<(u64, &[u8])> = at.iter().map(|g| (*g, &frame[..4])).collect();
            let err = hv.write_guest_all(&pieces).unwrap_err();
            assert!(err.contains(&format!("validated {name} table")), "{name}: {err}");
            let after: u64 = memory::read_obj(&hv.mem, at[0]).unwrap();
            assert_eq!(after, 0, "nothing written into the {name}");
        }
        // A frame of no table type takes the frame.
        let at = hv.writable_gpas(cr3, [0x0040_3000 + 0x100]).unwrap();
        assert!(hv.write_guest_all(&[(at[0], &frame[..4])]).is_ok());
        assert_eq!(memory::read_obj::<i32>(&hv.mem, at[0]).unwrap(), 0x1111_1111);
    }

    /// Two vCPUs' threads issue random PV MMU requests through the one entry
    /// point the vCPU loop uses, at once: the lock keeps every request whole,
    /// so the frame table stays true (the audit is clean: no pagetable mapped
    /// writable, every writable count equal to the entries mapping it, memory
    /// equal to the validated tables) whatever the interleaving.
    mod two_threads {
        use super::*;
        use proptest::prelude::*;
        use shared::abi::pvmmu::{cmd, MmuUpdate, MmuextOp};
        use shared::pae::{P, RW};

        /// The frames requests may touch (above the host's reserved frames).
        const POOL: std::ops::Range<u64> = 0x100..0x108;

        #[derive(Clone, Debug)]
        enum Req {
            Update(Vec<(u64, u64)>),
            Ext(Vec<(u32, u64)>),
        }

        fn req() -> impl Strategy<Value = Req> {
            let frame = POOL;
            let entry = (frame.clone(), any::<bool>(), any::<bool>())
                .prop_map(|(f, p, rw)| (f << 12) | if p { P } else { 0 } | if rw { RW } else { 0 });
            let update = (frame.clone(), 0u64..4, entry).prop_map(|(f, i, e)| ((f << 12) + 8 * i, e));
            let pins = [cmd::PIN_L1_TABLE, cmd::PIN_L2_TABLE, cmd::UNPIN_TABLE, cmd::TLB_FLUSH_LOCAL];
            let ext = (prop::sample::select(pins.to_vec()), frame);
            prop_oneof![
                prop::collection::vec(update, 1..4).prop_map(Req::Update),
                prop::collection::vec(ext, 1..3).prop_map(Req::Ext),
            ]
        }

        /// Issues `r` from vCPU `vcpu`, whose block and arrays sit in frame
        /// `0x20 + vcpu` (outside the pool, so never a table).
        fn issue(hv: &Hypervisor, vcpu: u32, r: &Req) -> Then {
            let base = (0x20 + vcpu as u64) << 12;
            let (block, array) = (base, base + 0x100);
            let (op, n) = match r {
                Req::Update(u) => {
                    for (i, &(ptr, val)) in u.iter().enumerate() {
                        memory::write_obj(&hv.mem, array + 16 * i as u64, &MmuUpdate { ptr, val }).unwrap();
                    }
                    (nr::MMU_UPDATE, u.len())
                }
                Req::Ext(ops) => {
                    for (i, &(c, pfn)) in ops.iter().enumerate() {
                        let op = MmuextOp { cmd: c, _pad: 0, arg1: pfn, arg2: 0 };
                        memory::write_obj(&hv.mem, array + MmuextOp::SIZE * i as u64, &op).unwrap();
                    }
                    (nr::MMUEXT_OP, ops.len())
                }
            };
            let b = HypercallBlock { op, rc: 0, args: [array, n as u64, 0, 0], ret: 0 };
            memory::write_obj(&hv.mem, block, &b).unwrap();
            hv.hypercall(vcpu, block)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            #[test]
            fn requests_from_two_vcpus_at_once_keep_the_frame_table_true(
                a in prop::collection::vec(req(), 200),
                b in prop::collection::vec(req(), 200),
            ) {
                let (hv, _) = hv();
                let stops = std::thread::scope(|s| {
                    let run = |vcpu: u32, reqs: &[Req]| {
                        let hv = &hv;
                        let reqs = reqs.to_vec();
                        s.spawn(move || {
                            reqs.iter().filter(|r| matches!(issue(hv, vcpu, r), Then::Stop(_))).count()
                        })
                    };
                    let (ta, tb) = (run(0, &a), run(1, &b));
                    ta.join().unwrap() + tb.join().unwrap()
                });
                prop_assert_eq!(stops, 0, "no request of these stops the guest");
                let pv = hv.pvmmu.lock().unwrap();
                prop_assert_eq!(pv.audit(&hv.mem), Default::default());
            }
        }
    }

    #[test]
    fn maps_keyed_by_what_the_guest_chose_stay_bounded() {
        let (hv, _) = hv();
        for op in 0..5000u32 {
            call(&hv, 0x1000 + op, [0; 4]);
        }
        let counts = hv.call_counts();
        assert!(counts.len() <= MAX_UNKNOWN_CALLS + 1, "{} keys", counts.len());
        let others: u64 = counts["unknown_others"].values().sum();
        assert_eq!(others, 5000 - MAX_UNKNOWN_CALLS as u64, "every call still counted");
        memory::write_bytes(&hv.mem, 0x3000, b"r0000").unwrap();
        for i in 0..1000u32 {
            let name = format!("r{i:04}");
            memory::write_bytes(&hv.mem, 0x3000, name.as_bytes()).unwrap();
            call(&hv, nr::RESULT, [0x3000, 5, u64::from(i), 0]);
        }
        let r = hv.results();
        assert_eq!(r.len(), MAX_RESULTS + 1);
        assert_eq!(r[RESULTS_DROPPED], 1000 - MAX_RESULTS as u64);
        // The host's own names are not the guest's to set.
        memory::write_bytes(&hv.mem, 0x3000, RESULTS_DROPPED.as_bytes()).unwrap();
        let (b, _) = call(&hv, nr::RESULT, [0x3000, RESULTS_DROPPED.len() as u64, 0, 0]);
        assert_eq!(b.rc, -errno::EINVAL);
        assert_eq!(hv.results()[RESULTS_DROPPED], 1000 - MAX_RESULTS as u64);
        for _ in 0..(MAX_MILESTONES + 10) {
            call(&hv, nr::MILESTONE, [0, 0, 0, 0]);
        }
        assert_eq!(hv.milestones().len(), MAX_MILESTONES);
    }

    #[test]
    fn shutdown_and_fault_end_the_run() {
        let (hv, _) = hv();
        match call(&hv, nr::SHUTDOWN, [3, 0, 0, 0]).1 {
            Then::Stop(Outcome::Shutdown { code: 3 }) => {}
            _ => panic!("shutdown did not stop"),
        }
        // Bits above 31 are not cut away: 1 << 32 is no success.
        for big in [1u64 << 32, u64::MAX] {
            match call(&hv, nr::SHUTDOWN, [big, 0, 0, 0]).1 {
                Then::Stop(Outcome::Shutdown { code: u32::MAX }) => {}
                _ => panic!("shutdown({big:#x}) did not stop as a failure"),
            }
        }
        let mut r = FaultReport::zeroed();
        r.vector = 14;
        r.cr2 = 0x10;
        memory::write_obj(&hv.mem, 0x4000, &r).unwrap();
        match call(&hv, nr::GUEST_FAULT, [0x4000, 0, 0, 0]).1 {
            Then::Stop(Outcome::GuestFault(f)) => {
                assert_eq!((f.vector, f.cr2), (14, 0x10));
                assert!(f.name.contains("page fault"));
            }
            _ => panic!("fault did not stop"),
        }
    }
}
