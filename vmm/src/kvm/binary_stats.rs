//! KVM's binary statistics (`KVM_GET_STATS_FD`, Linux 5.14+): the exits KVM handled
//! itself (IPIs, halts, interrupts, emulated instructions), which user space never
//! sees. kvm-ioctls does not wrap the interface, so it is read here by hand.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use kvm_bindings::{KVM_STATS_TYPE_CUMULATIVE, KVM_STATS_TYPE_MASK};
use kvm_ioctls::VcpuFd;

/// `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xae_ce;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// Every cumulative counter of a vCPU, by name. `None` if the kernel lacks the
/// interface.
pub fn read_vcpu(vcpu: &VcpuFd) -> Option<Vec<(String, u64)>> {
    // SAFETY: the ioctl takes no argument and returns a new file descriptor or -1.
    let fd = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_GET_STATS_FD as _, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, 0).ok()?;
    let name_size = u32_at(&header, 4)? as usize;
    let num_desc = u32_at(&header, 8)? as usize;
    let desc_offset = u32_at(&header, 16)? as u64;
    let data_offset = u32_at(&header, 20)? as u64;
    let desc_len = 16 + name_size;
    let mut descs = vec![0u8; desc_len * num_desc];
    file.read_exact_at(&mut descs, desc_offset).ok()?;
    let mut out = Vec::new();
    for i in 0..num_desc {
        let d = &descs[i * desc_len..(i + 1) * desc_len];
        let flags = u32_at(d, 0)?;
        let size = u16_at(d, 6)?;
        let offset = u32_at(d, 8)? as u64;
        if flags & KVM_STATS_TYPE_MASK != KVM_STATS_TYPE_CUMULATIVE || size != 1 {
            continue;
        }
        let name_bytes = &d[16..];
        let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        let mut v = [0u8; 8];
        file.read_exact_at(&mut v, data_offset + offset).ok()?;
        out.push((name, u64::from_le_bytes(v)));
    }
    Some(out)
}
