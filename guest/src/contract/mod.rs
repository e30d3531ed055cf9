//! Contract scenarios, in the manner of XTF: each file here is one small guest
//! program that checks one rule of the PV MMU contract against the host, and
//! declares itself with [`scenario!`](crate::scenario): its name, the verdict that
//! makes it pass (`pass`: its own checks of the host's answers hold;
//! `violation:<rule>`: the host stops it with that violation), the `vmm run`
//! arguments it needs, and a one-line summary. The record lands in the image's
//! `.contracts` section, where `vmm contract` finds it without booting the image
//! (docs/contract.md says how to add one).
//!
//! A scenario's function runs on the boot CPU, or on every CPU if it says so.

use shared::abi::pvmmu::{MmuUpdate, MmuextOp};
use shared::contract::ScenarioInfo;

use crate::mm::layout::phys_to_virt;
use crate::mm::pgtable::alloc_low_page;
use crate::{check, hv, kprintln, percpu};

mod batches;
mod direct_write;
mod flush;
mod fork_pin;
mod host_write;
mod l2_l3;
mod lazy_alias;
mod outside;
mod pins;
mod roots;
mod stale_tlb;
mod trap_back;
mod types;

/// A scenario's record: what the host reads, and where it starts.
#[repr(C)]
pub struct Record {
    pub info: ScenarioInfo,
    pub entry: fn(),
}

const _: () = assert!(core::mem::size_of::<Record>() == shared::contract::RECORD_SIZE);

/// Declares a scenario: `scenario!(STATIC, "name", "pass", "vm args", "summary", function)`
/// runs `function` on the boot CPU (the others go straight to the end);
/// `scenario!(all_cpus STATIC, ...)` runs it on every CPU.
#[macro_export]
macro_rules! scenario {
    (all_cpus $id:ident, $name:literal, $expect:literal, $vm:expr, $summary:expr, $entry:path) => {
        #[used]
        #[link_section = ".contracts"]
        static $id: $crate::contract::Record = $crate::contract::Record {
            info: shared::contract::ScenarioInfo::new($name, $expect, $vm, $summary),
            entry: $entry,
        };
    };
    ($id:ident, $name:literal, $expect:literal, $vm:expr, $summary:expr, $entry:path) => {
        #[used]
        #[link_section = ".contracts"]
        static $id: $crate::contract::Record = $crate::contract::Record {
            info: shared::contract::ScenarioInfo::new($name, $expect, $vm, $summary),
            entry: || {
                if $crate::contract::boot_cpu() {
                    $entry()
                }
            },
        };
    };
}

extern "C" {
    static __contracts_start: u8;
    static __contracts_end: u8;
}

/// Every scenario in the image, in section order (the host's indexes).
pub fn all() -> &'static [Record] {
    let start = core::ptr::addr_of!(__contracts_start) as *const Record;
    let end = core::ptr::addr_of!(__contracts_end) as *const Record;
    let n = (end as usize - start as usize) / core::mem::size_of::<Record>();
    // SAFETY: the linker script puts exactly the `.contracts` records, each a
    // `Record`, between the two symbols.
    unsafe { core::slice::from_raw_parts(start, n) }
}

/// Runs scenario `index` on this CPU.
pub fn run(index: u64) {
    let Some(r) = all().get(index as usize) else {
        check!(false, "no contract scenario {} (the image has {})", index, all().len());
        return;
    };
    if boot_cpu() {
        kprintln!("contract: {} (expect {})", r.info.name(), r.info.expect());
    }
    (r.entry)();
}

/// Whether this is the boot CPU (most scenarios act only there).
pub fn boot_cpu() -> bool {
    percpu::cpu_id() == 0
}

/// Ends the run as SKIP: the scenario cannot run in this VM.
pub fn skip(why: &str) -> ! {
    kprintln!("SKIP: {}", why);
    hv::shutdown(shared::contract::SKIP_CODE)
}

// ---------------------------------------------------------------- helpers

/// `N` fresh zeroed lowmem frames (their physical addresses).
pub fn frames<const N: usize>() -> [u64; N] {
    let mut out = [0u64; N];
    for f in out.iter_mut() {
        match alloc_low_page() {
            Some(pa) => *f = pa,
            None => skip("out of lowmem for the scenario's frames"),
        }
    }
    out
}

pub fn op(cmd: u32, arg1: u64) -> MmuextOp {
    MmuextOp { cmd, _pad: 0, arg1, arg2: 0 }
}

pub fn pfn(pa: u64) -> u64 {
    pa >> 12
}

fn entry_ptr(table: u64, idx: u64) -> *mut u64 {
    (phys_to_virt(table) + idx as u32 * 8) as *mut u64
}

/// Reads an entry through the direct map (tables stay readable when pinned).
pub fn read(table: u64, idx: u64) -> u64 {
    // SAFETY: a lowmem frame of the scenario, read through the direct map.
    unsafe { entry_ptr(table, idx).read_volatile() }
}

/// Writes an entry directly: only for frames that are not (yet) pagetables.
pub fn write(table: u64, idx: u64, val: u64) {
    // SAFETY: a lowmem frame of the scenario, written through the direct map;
    // not a pagetable, so the host has not made it read-only.
    unsafe { entry_ptr(table, idx).write_volatile(val) }
}

/// One validated entry write: `(rc, done)`.
pub fn update(table: u64, idx: u64, val: u64) -> (i32, u64) {
    hv::mmu_update(&[MmuUpdate { ptr: table + idx * 8, val }])
}

/// A batch of extended ops: its rc.
pub fn ext(ops: &[MmuextOp]) -> i32 {
    hv::mmuext_op(ops).0
}

/// Pins `pa` as a table of `level` (1..3).
pub fn pin(level: u32, pa: u64) -> i32 {
    use shared::abi::pvmmu::cmd;
    let c = [cmd::PIN_L1_TABLE, cmd::PIN_L2_TABLE, cmd::PIN_L3_TABLE][(level as usize).clamp(1, 3) - 1];
    ext(&[op(c, pfn(pa))])
}

pub fn unpin(pa: u64) -> i32 {
    ext(&[op(shared::abi::pvmmu::cmd::UNPIN_TABLE, pfn(pa))])
}
