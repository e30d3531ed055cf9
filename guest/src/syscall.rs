//! System calls: `int 0x80` from ring 3, number in `eax`, arguments in `ebx`, `ecx`,
//! `edx`, result in `eax` (Linux i386's convention).

use shared::abi::errno;

use crate::arch::trap::TrapFrame;
use crate::mm::layout::PAGE_OFFSET;
use crate::percpu;

pub const SYS_EXIT: u32 = 1;
pub const SYS_WRITE: u32 = 4;
pub const SYS_GETCPU: u32 = 20;

/// The longest write a program may ask for.
const WRITE_MAX: u32 = 256;

pub fn dispatch(frame: &mut TrapFrame) {
    frame.eax = match frame.eax {
        SYS_EXIT => crate::arch::user::exit_current(frame.ebx as i32),
        SYS_WRITE => sys_write(frame.ecx, frame.edx),
        SYS_GETCPU => percpu::cpu_id(),
        _ => (-errno::ENOSYS) as u32,
    };
}

fn sys_write(buf: u32, len: u32) -> u32 {
    let len = len.min(WRITE_MAX);
    match buf.checked_add(len) {
        Some(end) if end <= PAGE_OFFSET => {}
        _ => return (-errno::EFAULT) as u32,
    }
    let mut copy = [0u8; WRITE_MAX as usize];
    // SAFETY: the range is below PAGE_OFFSET, and the only programs that run are the
    // kernel's own, which pass buffers in their mapped pages.
    unsafe { core::ptr::copy_nonoverlapping(buf as *const u8, copy.as_mut_ptr(), len as usize) };
    crate::console::write_bytes(&copy[..len as usize]);
    len
}
