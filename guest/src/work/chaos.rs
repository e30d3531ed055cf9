//! `chaos`: an adversarial guest. Every CPU throws `--iterations` random PV MMU
//! requests at the host (batches of updates, extended ops, update_va_mapping,
//! multicalls, fixup registrations) and writes pagetables directly, valid and
//! not, from `--seed` (each CPU its own stream). The requests stay inside a pool
//! of frames this workload owns, or point outside guest RAM, so that the guest
//! itself survives whatever the host accepts; the host must stay up, keep its
//! invariant (the end-of-run audit in the report), and report. With one vCPU the
//! same seed gives the same run.

use shared::abi::nr;
use shared::abi::pvmmu::{MmuUpdate, MmuextOp, MulticallEntry};
use shared::config::Config;
use shared::pae::{self, P, RW};
use shared::results::GuestResult;

use crate::mm::layout::{phys_to_virt, virt_to_phys};
use crate::mm::pgtable::alloc_low_page;
use crate::rand::Rng;
use crate::sync::SpinLock;
use crate::work::all_cpus_reach;
use crate::{check, hv, percpu, smp, trapback};

/// Frames every CPU plays with (shared: CPUs race on them).
const POOL: usize = 32;
static FRAMES: SpinLock<[u64; POOL]> = SpinLock::new([0; POOL]);

fn frame(rng: &mut Rng, pool: &[u64; POOL]) -> u64 {
    match rng.range(0, 19) {
        0 => 0x3000,                                        // the host's frames
        1 => (rng.next_u64() & pae::ADDR_MASK) | 0xf << 32, // beyond RAM
        _ => pool[rng.range(0, POOL as u32 - 1) as usize],
    }
}

fn entry(rng: &mut Rng, pool: &[u64; POOL]) -> u64 {
    let flags = [P, P | RW, P | RW | pae::US, 0, P | pae::PS, P | pae::G, P | pae::PCD, P | pae::A | pae::D];
    match rng.range(0, 9) {
        // Any flags at all, but still a frame of the pool (or none of the
        // guest's): an entry at one of the kernel's own frames would have the
        // host protect it as a pagetable, and the kernel could not write it.
        0 => (rng.next_u64() & !pae::ADDR_MASK) | frame(rng, pool),
        _ => frame(rng, pool) | flags[rng.range(0, flags.len() as u32 - 1) as usize],
    }
}

fn ptr(rng: &mut Rng, pool: &[u64; POOL]) -> u64 {
    let idx = [0u64, 1, 2, 3, 4, 5, 511][rng.range(0, 6) as usize];
    let misalign = if rng.range(0, 30) == 0 { 4 } else { 0 };
    let command = if rng.range(0, 30) == 0 { rng.range(1, 3) as u64 } else { 0 };
    frame(rng, pool) + idx * 8 + misalign + command
}

fn ext_op(rng: &mut Rng, pool: &[u64; POOL], mask_gpa: u64) -> MmuextOp {
    let cmd = rng.range(0, 13);
    let arg2 = if rng.range(0, 3) == 0 { rng.next_u64() } else { mask_gpa };
    MmuextOp { cmd, _pad: 0, arg1: frame(rng, pool) >> 12, arg2 }
}

fn noop_fixup(_pfn: u64) {}

pub fn run(cfg: &Config) {
    if !hv::under_vmm() {
        check!(false, "chaos needs the VMM");
        return;
    }
    let me = percpu::cpu_id();
    if me == 0 {
        let mut f = FRAMES.lock();
        for slot in f.iter_mut() {
            match alloc_low_page() {
                Some(pa) => *slot = pa,
                None => {
                    check!(false, "chaos: out of lowmem for its pool");
                    return;
                }
            }
        }
        check!(hv::writable_pagetables(true) == 0, "vm_assist");
    }
    all_cpus_reach();
    let pool = *FRAMES.lock();
    if pool[0] == 0 {
        return;
    }
    let mut rng = Rng::new(cfg.seed, me as u64);
    let mask: u64 = (1 << smp::nr_cpus()) - 1;
    let mask_gpa = virt_to_phys(&mask as *const u64 as u32);
    let iters = if cfg.iterations != 0 { cfg.iterations as u32 } else { 2000 };
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut tally = |rc: i32| {
        if rc == 0 {
            accepted += 1
        } else {
            refused += 1
        }
    };
    for _ in 0..iters {
        match rng.range(0, 15) {
            0..=4 => {
                let n = rng.range(1, 4) as usize;
                let mut reqs = [MmuUpdate::default(); 4];
                for r in reqs[..n].iter_mut() {
                    *r = MmuUpdate { ptr: ptr(&mut rng, &pool), val: entry(&mut rng, &pool) };
                }
                tally(hv::mmu_update(&reqs[..n]).0);
            }
            5..=8 => {
                let n = rng.range(1, 3) as usize;
                let mut ops = [MmuextOp::default(); 3];
                for o in ops[..n].iter_mut() {
                    *o = ext_op(&mut rng, &pool, mask_gpa);
                }
                tally(hv::mmuext_op(&ops[..n]).0);
            }
            9 => {
                let va = rng.range(0, 0x7fff) << 12;
                tally(hv::update_va_mapping(va, entry(&mut rng, &pool), rng.range(0, 7) as u64));
            }
            10 => {
                let upd = [MmuUpdate { ptr: ptr(&mut rng, &pool), val: entry(&mut rng, &pool) }];
                let op = [ext_op(&mut rng, &pool, mask_gpa)];
                let mut calls = [
                    MulticallEntry {
                        op: nr::MMU_UPDATE,
                        result: 0,
                        args: [virt_to_phys(upd.as_ptr() as u32), 1, 0, 0],
                        ret: 0,
                    },
                    MulticallEntry {
                        op: nr::MMUEXT_OP,
                        result: 0,
                        args: [virt_to_phys(op.as_ptr() as u32), 1, 0, 0],
                        ret: 0,
                    },
                ];
                tally(hv::multicall(&mut calls).0);
            }
            11..=13 => {
                // A direct write into a pool frame, pinned or not: the host
                // emulates it (assist on) or records the violation and drops it.
                let f = pool[rng.range(0, POOL as u32 - 1) as usize];
                let idx = [0u32, 1, 2, 3, 4, 5, 511][rng.range(0, 6) as usize];
                let at = (phys_to_virt(f) + idx * 8) as *mut u32;
                let v = entry(&mut rng, &pool);
                // SAFETY: a lowmem frame of the pool, through the direct map; the
                // host may refuse the write, then it does not happen.
                unsafe {
                    at.write_volatile(v as u32);
                    at.add(1).write_volatile((v >> 32) as u32);
                }
            }
            _ => {
                let rc =
                    if rng.range(0, 1) == 0 { trapback::register(Some(noop_fixup)) } else { trapback::unregister() };
                tally(rc);
            }
        }
    }
    all_cpus_reach();
    if me == 0 {
        trapback::unregister();
        hv::result(GuestResult::ChaosAcceptedCpu0, accepted);
        hv::result(GuestResult::ChaosRefusedCpu0, refused);
    }
}
