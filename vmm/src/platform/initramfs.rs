//! A busybox initramfs for `vmm run --linux`, as scripts/linux-initrd.sh makes
//! one: Debian's static i386 busybox, the given programs in /bin, and a
//! script as /init that runs with /proc, /sys and /dev mounted and busybox's
//! applets on PATH. The benchmark's Linux cells boot one (`rdinit=/init`).

use std::io;
use std::path::{Path, PathBuf};

use super::cpio::CpioWriter;

/// What /init does before the script.
const PRELUDE: &str = "#!/bin/busybox sh\n\
/bin/busybox --install -s /bin\n\
export PATH=/bin\n\
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null\n";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1} (scripts/setup.sh fetches Linux and busybox, scripts/build.sh builds highpte-probe)")]
    Input(PathBuf, io::Error),
    #[error("writing the initramfs {0}: {1}")]
    Write(PathBuf, io::Error),
}

/// The archive: busybox, `programs` (each into /bin under its file name) and
/// `script` as /init.
pub fn build(busybox: &Path, programs: &[&Path], script: &str) -> Result<Vec<u8>, Error> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::Input(p.to_owned(), e));
    let mut w = CpioWriter::new(Vec::new());
    let io = |e: io::Error| Error::Write(PathBuf::from("(memory)"), e);
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        w.dir(d).map_err(io)?;
    }
    w.file("bin/busybox", &read(busybox)?, true).map_err(io)?;
    for p in programs {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("program");
        w.file(&format!("bin/{name}"), &read(p)?, true).map_err(io)?;
    }
    let init = format!("{PRELUDE}{script}");
    w.file("init", init.as_bytes(), true).map_err(io)?;
    w.finish().map_err(io)
}

/// [`build`] written to `out` (through a temporary file beside it, so a
/// reader never sees half an archive).
pub fn write(out: &Path, busybox: &Path, programs: &[&Path], script: &str) -> Result<(), Error> {
    let bytes = build(busybox, programs, script)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write(dir.to_owned(), e))?;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| Error::Write(tmp.clone(), e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::Write(out.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_busybox_the_programs_and_the_script_as_init() {
        let dir = std::env::temp_dir().join(format!("vmm-initramfs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (bb, prog) = (dir.join("busybox"), dir.join("highpte-probe"));
        std::fs::write(&bb, b"BUSYBOX").unwrap();
        std::fs::write(&prog, b"PROBE").unwrap();
        let out = dir.join("sub/x.cpio");
        write(&out, &bb, &[&prog], "highpte-probe 1 2 3\nreboot -f\n").unwrap();
        let a = std::fs::read(&out).unwrap();
        let s = String::from_utf8_lossy(&a);
        for want in ["bin/busybox\0", "BUSYBOX", "bin/highpte-probe\0", "PROBE", "init\0", "TRAILER!!!"] {
            assert!(s.contains(want), "{want}");
        }
        assert!(s.contains(&format!("{PRELUDE}highpte-probe 1 2 3\nreboot -f\n")));
        // A missing input names itself and what fetches it.
        let e = build(&dir.join("nope"), &[], "").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("setup.sh"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
