//! Console input: what the user types reaches Linux's UART. A thread moves
//! the bytes of `vmm`'s standard input into the UART's receive FIFO as the
//! guest drains it, and a terminal on standard input is switched to pass
//! keys through while the run lasts.
//!
//! Firecracker and cloud-hypervisor do the same with the same crate
//! (vm-superio's `enqueue_raw_bytes`); QEMU-hosted, QEMU's `-serial stdio`
//! carries the bytes into the appliance, whose console is this standard
//! input for the `vmm` inside.

use std::io::Read;
use std::time::Duration;

/// Where the bytes go: the UART's receive FIFO.
pub trait Receiver: Send + Sync + 'static {
    /// Room left in the FIFO.
    fn room(&self) -> usize;
    /// Queues bytes (at most `room()` of them); false when the UART is gone.
    fn put(&self, bytes: &[u8]) -> bool;
}

/// How long the feeder waits for the guest to drain a full FIFO.
const FULL_FIFO_WAIT: Duration = Duration::from_millis(2);

/// Moves `input`'s bytes to `to` until `input` ends or fails, or the UART is
/// gone; in order, never more at once than the FIFO has room for (a 16550
/// drops what overflows it).
pub fn feed(mut input: impl Read, to: &dyn Receiver) {
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let k = to.room().min(rest.len());
            if k == 0 {
                std::thread::sleep(FULL_FIFO_WAIT);
                continue;
            }
            if !to.put(&rest[..k]) {
                return;
            }
            rest = &rest[k..];
        }
    }
}

/// A terminal on standard input, without line editing and echo while this
/// lives: each key goes to the guest as it is typed, and Linux's own tty
/// echoes it. Signals stay on, so Ctrl-C still stops `vmm`, as it stops QEMU
/// under `-serial stdio`. (vmm-sys-util's `Terminal::set_raw_mode` turns
/// signals off as well, and restores a fixed mode rather than the saved one:
/// hence these few lines.)
pub struct KeysThrough {
    saved: libc::termios,
}

impl KeysThrough {
    /// None when standard input is not a terminal (a pipe, a file,
    /// /dev/null), or when `vmm` runs in the background on it (`vmm ... &`),
    /// where changing the terminal's modes would stop `vmm` (SIGTTOU).
    pub fn new() -> Option<KeysThrough> {
        // SAFETY: isatty only asks about descriptor 0.
        if unsafe { libc::isatty(0) } != 1 {
            return None;
        }
        // SAFETY: tcgetpgrp and getpgrp only ask about descriptor 0's
        // foreground group and this process's group.
        let (front, ours) = unsafe { (libc::tcgetpgrp(0), libc::getpgrp()) };
        // -1: not our controlling terminal (the appliance's console for the
        // `vmm` inside it), which sends no SIGTTOU.
        if front != -1 && front != ours {
            return None;
        }
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes one termios into `t`, which is ours and
        // large enough.
        if unsafe { libc::tcgetattr(0, t.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: tcgetattr returned 0, so it filled `t`.
        let saved = unsafe { t.assume_init() };
        let mut keys = saved;
        keys.c_lflag &= !(libc::ICANON | libc::ECHO);
        keys.c_cc[libc::VMIN] = 1;
        keys.c_cc[libc::VTIME] = 0;
        // SAFETY: sets descriptor 0's modes from a termios built from its own.
        (unsafe { libc::tcsetattr(0, libc::TCSANOW, &keys) } == 0).then_some(KeysThrough { saved })
    }
}

impl Drop for KeysThrough {
    fn drop(&mut self) {
        // SAFETY: puts back the modes tcgetattr gave for descriptor 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A FIFO of `size` bytes.
    #[derive(Default)]
    struct Fifo {
        bytes: Mutex<Vec<u8>>,
        size: usize,
    }

    impl Receiver for Fifo {
        fn room(&self) -> usize {
            let b = self.bytes.lock().unwrap();
            // The guest drains a byte each time it is asked for room.
            if b.len() >= self.size {
                drop(b);
                self.bytes.lock().unwrap().remove(0);
                return 0;
            }
            self.size - b.len()
        }
        fn put(&self, bytes: &[u8]) -> bool {
            let mut b = self.bytes.lock().unwrap();
            assert!(b.len() + bytes.len() <= self.size, "overflowed the FIFO");
            b.extend_from_slice(bytes);
            true
        }
    }

    /// Every byte arrives, in order, and a full FIFO is waited for, never
    /// overflowed.
    #[test]
    fn input_reaches_the_fifo_in_order_without_overflowing_it() {
        let fifo = Fifo { size: 8, ..Default::default() };
        let input: Vec<u8> = (0..20u8).collect();
        feed(&input[..], &fifo);
        let got = fifo.bytes.lock().unwrap().clone();
        // What the guest drained came first, in order; the rest is queued.
        assert_eq!(got.len(), 8);
        assert_eq!(got, input[12..]);
    }
}
