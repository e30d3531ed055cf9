//! KVM's dirty log with manual protection (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`):
//! how the host finds guest writes to the validated tables that no read-only
//! memslot covers.
//!
//! With `KVM_DIRTY_LOG_INITIALLY_SET` a slot that starts logging is all dirty and
//! nothing in it is write-protected: no fault until the host clears a page's bit,
//! which write-protects that page alone, so the guest's data pages in the same
//! slot never fault. `KVM_GET_DIRTY_LOG` then only reads the bitmap;
//! `KVM_CLEAR_DIRTY_LOG` clears the bits given and write-protects those pages
//! again (the next guest write sets the bit).

use kvm_bindings::{
    kvm_clear_dirty_log, kvm_clear_dirty_log__bindgen_ty_1, kvm_enable_cap, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
    KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iowr_nr;

const KVMIO: u32 = 0xAE;
ioctl_iowr_nr!(KVM_CLEAR_DIRTY_LOG, KVMIO, 0xc0, kvm_clear_dirty_log);

/// Turns on manual protection with initially-set bitmaps for every slot that
/// logs from now on. `Err` says why this KVM cannot.
pub fn enable(vm: &VmFd) -> Result<(), String> {
    let wanted = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
    let offered = vm.check_extension_raw(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 as _);
    if offered < 0 || (offered as u32) & wanted != wanted {
        return Err(format!(
            "this KVM offers dirty-log options {offered:#x}, not manual protection with initially-set bitmaps"
        ));
    }
    let cap =
        kvm_enable_cap { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [wanted as u64, 0, 0, 0], ..Default::default() };
    vm.enable_cap(&cap).map_err(|e| format!("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2): {e}"))
}

/// The dirty bits of slot `slot` (`bytes` long), one per page, without clearing them.
pub fn read(vm: &VmFd, slot: u32, bytes: u64) -> Result<Vec<u64>, kvm_ioctls::Error> {
    vm.get_dirty_log(slot, bytes as usize)
}

/// Clears the bits set in `bitmap` (which covers the whole slot of `pages`
/// pages) and write-protects those pages.
pub fn clear(vm: &VmFd, slot: u32, pages: u64, bitmap: &mut [u64]) -> Result<(), kvm_ioctls::Error> {
    if (bitmap.len() as u64) * 64 < pages {
        return Err(kvm_ioctls::Error::new(libc::EINVAL));
    }
    let arg = kvm_clear_dirty_log {
        slot,
        num_pages: pages as u32,
        first_page: 0,
        __bindgen_anon_1: kvm_clear_dirty_log__bindgen_ty_1 { dirty_bitmap: bitmap.as_mut_ptr().cast() },
    };
    // SAFETY: KVM reads `pages` bits from `bitmap`, which holds at least that many
    // (checked above) and outlives the call; `arg` is a valid kvm_clear_dirty_log.
    let rc = unsafe { ioctl_with_ref(vm, KVM_CLEAR_DIRTY_LOG(), &arg) };
    if rc < 0 {
        return Err(kvm_ioctls::Error::last());
    }
    Ok(())
}
