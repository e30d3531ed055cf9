//! `vmm pin-cost`: the host's cost of the alias check, per pin, for each
//! `--host-check`, with a given number of lazy aliases in place. It drives the PV
//! MMU itself on host memory (no guest, no KVM): the check is host work, so this is
//! what it costs the host whatever runs the guest.
//!
//! Set-up: `aliases` read-write mappings of distinct frames, 512 to an L1 table
//! (what lazily-freed vmap areas leave behind), made with `mmu_update` batches.
//! Then an empty frame is pinned as an L1 and unpinned, `pins` times: each pin asks
//! the check whether the frame has writable mappings.

use std::time::Instant;

use serde::Serialize;
use shared::abi::pvmmu::{cmd, MmuUpdate, MmuextOp};
use shared::boot::MemRegion;
use shared::config::HostCheck;
use shared::pae::{self, ENTRIES};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{PvMmu, PvMmuConfig};
use crate::guest_memory as memory;

/// Request arrays live here (frames 0x80..0x90).
const SCRATCH: u64 = 0x80000;
/// The frame that is pinned and unpinned.
const PINNED: u64 = 0x100;
/// The first L1 table holding aliases.
const FIRST_TABLE: u64 = 0x101;

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct PinCost {
    pub host_check: String,
    pub aliases: u64,
    pub l1_tables: u64,
    pub pins: u64,
    /// Host time in the alias check, per pin.
    pub check_ns: f64,
    /// Host time of the whole pin request (validation of an empty L1 included).
    pub pin_ns: f64,
    /// Host time per `mmu_update` entry while the aliases were made (the rmap's
    /// bookkeeping shows here).
    pub update_ns: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot map {0} MiB of host memory for the measurement")]
    Memory(u64),
    #[error("the PV MMU refused the set-up ({what}: rc {rc}) — a bug")]
    Refused { what: &'static str, rc: i32 },
}

fn ext(pv: &mut PvMmu, mem: &GuestMemoryMmap, c: u32, pfn: u64) -> i32 {
    let op = MmuextOp { cmd: c, _pad: 0, arg1: pfn, arg2: 0 };
    if memory::write_obj(mem, SCRATCH, &op).is_err() {
        return -1;
    }
    // Each call is one exit, with its own work budget.
    pv.begin_exit();
    pv.mmuext_op(mem, 0, 0, SCRATCH, 1, false).rc
}

/// Measures one host check with `aliases` lazy aliases in place.
pub fn measure(check: HostCheck, aliases: u64, pins: u64) -> Result<PinCost, Error> {
    let tables = aliases.div_ceil(ENTRIES as u64);
    let first_target = FIRST_TABLE + tables;
    let frames = first_target + aliases + 1;
    let bytes = (frames << 12).max(16 << 20);
    let regions = [MemRegion { base: 0, len: bytes }];
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), bytes as usize)]).map_err(|_| Error::Memory(bytes >> 20))?;
    let mut pv = PvMmu::new(
        &regions,
        PvMmuConfig {
            check,
            cross_check: false,
            weaken: super::HostWeaken::None,
            on_violation: super::OnViolation::Stop,
        },
    );

    let mut made = 0;
    let mut update_time = 0.0;
    for t in 0..tables {
        let table = FIRST_TABLE + t;
        let rc = ext(&mut pv, &mem, cmd::PIN_L1_TABLE, table);
        if rc != 0 {
            return Err(Error::Refused { what: "pin of an alias table", rc });
        }
        let n = (aliases - made).min(ENTRIES as u64);
        for i in 0..n {
            let req =
                MmuUpdate { ptr: (table << 12) + i * 8, val: ((first_target + made + i) << 12) | pae::P | pae::RW };
            memory::write_obj(&mem, SCRATCH + i * MmuUpdate::SIZE, &req).map_err(|_| Error::Memory(bytes >> 20))?;
        }
        let start = Instant::now();
        pv.begin_exit();
        let r = pv.mmu_update(&mem, SCRATCH, n);
        update_time += start.elapsed().as_nanos() as f64;
        if r.rc != 0 {
            return Err(Error::Refused { what: "alias mapping", rc: r.rc });
        }
        made += n;
    }

    let (checks0, check_ns0) = (pv.stats.alias_checks, pv.stats.alias_check_ns);
    let mut pin_time = 0.0;
    for _ in 0..pins {
        let start = Instant::now();
        let rc = ext(&mut pv, &mem, cmd::PIN_L1_TABLE, PINNED);
        pin_time += start.elapsed().as_nanos() as f64;
        if rc != 0 {
            return Err(Error::Refused { what: "pin", rc });
        }
        let rc = ext(&mut pv, &mem, cmd::UNPIN_TABLE, PINNED);
        if rc != 0 {
            return Err(Error::Refused { what: "unpin", rc });
        }
    }
    let checks = (pv.stats.alias_checks - checks0).max(1);
    Ok(PinCost {
        host_check: check.as_str().to_owned(),
        aliases,
        l1_tables: tables,
        pins,
        check_ns: (pv.stats.alias_check_ns - check_ns0) as f64 / checks as f64,
        pin_ns: pin_time / pins.max(1) as f64,
        update_ns: update_time / aliases.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_measures_with_aliases_in_place() {
        for &check in HostCheck::ALL {
            let c = measure(check, 1000, 10).unwrap();
            assert_eq!((c.l1_tables, c.pins), (2, 10));
            assert!(c.check_ns > 0.0 && c.pin_ns >= c.check_ns, "{c:?}");
        }
    }
}
