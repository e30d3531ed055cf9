//! Contract scenarios: how the guest image describes them and how the host reads
//! them. Each scenario is a small guest program (guest/src/contract/) with a record
//! in the image's `.contracts` section; `vmm contract` reads the records from the
//! ELF file without booting it, then runs each scenario in its own VM with
//! `--workload contract --scenario <index>`.

/// The ELF section holding the records, in order.
pub const SECTION: &str = ".contracts";

pub const NAME_LEN: usize = 40;
pub const EXPECT_LEN: usize = 40;
pub const VM_LEN: usize = 80;
pub const SUMMARY_LEN: usize = 120;

/// What the host reads of a record (the guest's record adds the entry point).
/// Text fields are UTF-8, NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScenarioInfo {
    /// Unique, lower-case, dash-separated (`v1-writable-pagetable`).
    pub name: [u8; NAME_LEN],
    /// The verdict that makes the scenario SUCCESS: `pass` (the guest's own checks
    /// of the host's answers pass) or `violation:<rule>` (the host stops the guest
    /// with a violation report of that rule).
    pub expect: [u8; EXPECT_LEN],
    /// Extra `vmm run` arguments the scenario needs (`--mem 5g --vcpus 2`).
    pub vm: [u8; VM_LEN],
    pub summary: [u8; SUMMARY_LEN],
}

/// Size of one guest record: the info and a 32-bit entry point.
pub const RECORD_SIZE: usize = core::mem::size_of::<ScenarioInfo>() + 4;

/// The guest's shutdown code for "this scenario cannot run here" (XTF's SKIP).
pub const SKIP_CODE: u32 = 77;

impl ScenarioInfo {
    /// A record from text (at compile time; too long a text is a build error).
    pub const fn new(name: &str, expect: &str, vm: &str, summary: &str) -> Self {
        ScenarioInfo { name: pad(name), expect: pad(expect), vm: pad(vm), summary: pad(summary) }
    }

    pub fn name(&self) -> &str {
        text(&self.name)
    }
    pub fn expect(&self) -> &str {
        text(&self.expect)
    }
    pub fn vm(&self) -> &str {
        text(&self.vm)
    }
    pub fn summary(&self) -> &str {
        text(&self.summary)
    }

    /// Parses a record from the bytes of the section.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < core::mem::size_of::<ScenarioInfo>() {
            return None;
        }
        let mut s = ScenarioInfo::new("", "", "", "");
        let (n, rest) = b.split_at(NAME_LEN);
        let (e, rest) = rest.split_at(EXPECT_LEN);
        let (v, rest) = rest.split_at(VM_LEN);
        s.name.copy_from_slice(n);
        s.expect.copy_from_slice(e);
        s.vm.copy_from_slice(v);
        s.summary.copy_from_slice(&rest[..SUMMARY_LEN]);
        Some(s)
    }
}

const fn pad<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() <= N, "contract scenario text too long");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

fn text(b: &[u8]) -> &str {
    let len = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..len]).unwrap_or("")
}

const _: () = assert!(core::mem::size_of::<ScenarioInfo>() == NAME_LEN + EXPECT_LEN + VM_LEN + SUMMARY_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_bytes() {
        let s = ScenarioInfo::new("v1-writable-pagetable", "pass", "--vcpus 2", "an L1 mapped writable");
        let bytes: std::vec::Vec<u8> = s.name.iter().chain(&s.expect).chain(&s.vm).chain(&s.summary).copied().collect();
        let back = ScenarioInfo::from_bytes(&bytes).unwrap();
        assert_eq!((back.name(), back.expect(), back.vm()), ("v1-writable-pagetable", "pass", "--vcpus 2"));
        assert_eq!(back.summary(), "an L1 mapped writable");
    }
}
