//! Entry flags (V3), frames outside the guest (V6) and bad addresses (V7).

use shared::abi::errno::{EINVAL, ENOSYS};
use shared::abi::pvmmu::MmuUpdate;
use shared::pae::{A, D, G, P, PAT, PCD, PWT, RW, US};

use super::{frames, pin, unpin, update};
use crate::{bootinfo, check, hv};

crate::scenario!(
    V3,
    "v3-cache-and-global-bits",
    "pass",
    "",
    "L1 entries with PWT, PCD, PAT or G are refused (-EINVAL); plain ones are not",
    v3
);
fn v3() {
    let [l1, data] = frames();
    check!(pin(1, l1) == 0, "pin");
    for bad in [PWT, PCD, PAT, G] {
        check!(update(l1, 1, data | P | bad) == (-EINVAL, 0), "flag {:#x} accepted", bad);
    }
    check!(update(l1, 1, data | P | RW | US | A | D) == (0, 1), "a plain entry");
    check!(update(l1, 1, 0) == (0, 1), "clear");
    check!(unpin(l1) == 0, "unpin");
}

/// The first frame past the end of RAM, and one in the MMIO hole below 4 GiB.
fn outside_frames() -> [u64; 2] {
    let end = bootinfo::get().regions().iter().map(|r| r.end()).max().unwrap_or(0);
    [end, shared::boot::LOW_RAM_END]
}

crate::scenario!(
    V6,
    "v6-frames-outside-ram",
    "pass",
    "",
    "entries may not point outside guest RAM, nor may such frames be pinned",
    v6
);
fn v6() {
    let [l1] = frames();
    check!(pin(1, l1) == 0, "pin");
    for pa in outside_frames() {
        check!(update(l1, 0, pa | P) == (-EINVAL, 0), "an entry at {:#x}", pa);
        check!(pin(1, pa) == -EINVAL, "a pin of {:#x}", pa);
    }
    check!(unpin(l1) == 0, "unpin");
}

crate::scenario!(
    V7,
    "v7-bad-addresses",
    "pass",
    "",
    "misaligned entry addresses, the host's frames, unknown commands: refused, nothing written",
    v7
);
fn v7() {
    let [l1, data] = frames();
    check!(pin(1, l1) == 0, "pin");
    let bad = |ptr: u64| hv::mmu_update(&[MmuUpdate { ptr, val: data | P }]);
    check!(bad(l1 + 4) == (-EINVAL, 0), "a misaligned entry address");
    check!(bad(0x3000) == (-EINVAL, 0), "an entry in the host's frames");
    check!(bad(outside_frames()[0]) == (-EINVAL, 0), "an entry outside RAM");
    check!(bad(l1 | 1) == (-ENOSYS, 0), "MMU_MACHPHYS_UPDATE");
    check!(update(l1, 0, 0x3000 | P) == (-EINVAL, 0), "an entry mapping the host's frames");
    check!(unpin(l1) == 0, "unpin");
}
