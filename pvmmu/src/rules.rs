//! The PV MMU contract's rules, written once: the host enforces them, its
//! violations name them ([`Rule`]), and `docs/pvmmu-rules.md` is rendered from
//! [`CLAUSES`] (a test keeps the two equal). They follow Xen's
//! `xen/arch/x86/mm.c` for a 32-bit PAE PV guest, cut down; where this host
//! departs from Xen, the clause says so.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One clause of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clause {
    /// T1..T4 (frame types), V1..V8 (validation), H1..H3 (the host's own conduct).
    pub id: &'static str,
    pub title: &'static str,
    pub text: &'static str,
}

/// Every clause, in order.
pub const CLAUSES: &[Clause] = &[
    Clause {
        id: "T1",
        title: "one type at a time",
        text: "A frame keeps one type (none, writable, l1, l2, l3) while its type count is above zero. A request \
               that needs another type is refused with `-EINVAL`.",
    },
    Clause {
        id: "T2",
        title: "validation at the type change",
        text: "Only a count going from 0 to 1 may change the type. A frame that becomes l1, l2 or l3 is validated \
               then: every present entry is checked and takes its references. When the count falls back to 0 it is \
               devalidated: every reference its entries held is dropped, as the host validated them (not as memory \
               says now).",
    },
    Clause {
        id: "T3",
        title: "no stale writable TLB entry",
        text: "When a frame goes from writable to a pagetable type, no vCPU keeps a writable TLB entry for it. Xen \
               flushes the dirty CPUs; this host write-protects the frame (a read-only memslot or the dirty log) and \
               flushes every vCPU's TLB.",
    },
    Clause {
        id: "T4",
        title: "pins are not counted",
        text: "Pinning a pinned frame, or unpinning one that is not pinned, is refused with `-EINVAL`.",
    },
    Clause {
        id: "V1",
        title: "the alias rule",
        text: "A present L1 entry with RW makes its target writable (one type reference per such entry). If the \
               target is a pagetable the entry is refused with `-EBUSY`. A pin of a frame that some validated L1 \
               maps RW is refused too, or trapped back into the guest's registered fixup (the trap-back), which \
               can remove the alias and have the pin retried.",
    },
    Clause {
        id: "V2",
        title: "read-only maps of anything",
        text: "A present L1 entry without RW takes a general reference only: a guest may map its own pagetables \
               read-only.",
    },
    Clause {
        id: "V3",
        title: "no cache or global bits in L1 entries",
        text: "PWT, PCD, PAT and G in an L1 entry are refused with `-EINVAL`: the guest has no cache-control \
               privilege, and global pages are the host's.",
    },
    Clause {
        id: "V4",
        title: "L2 entries point at L1s",
        text: "A present L2 entry's target must be, or be validated on the spot as, an l1. PSE (2 MiB pages) is \
               refused with `-EINVAL`. An L2 entry may point at another validated l2 only read-only and one level \
               deep (a linear pagetable: not at its own table, not from or to a table already in such a pair); \
               anything else is `-EINVAL`.",
    },
    Clause {
        id: "V5",
        title: "the PAE root",
        text: "An L3 (a PDPT) lies below 4 GiB (`-ERANGE` otherwise). Its entries 0..3 may hold the address, P, \
               PWT, PCD, A and bits 9..11, and point at l2s; any other bit is `-EINVAL`. Entries 4..511 are not \
               validated; from the pin on the host keeps them as they were (an update of one is `-EINVAL`, a direct \
               write to one a violation).",
    },
    Clause {
        id: "V6",
        title: "only guest RAM",
        text: "An entry may map only the guest's own RAM: a frame outside it is refused with `-EINVAL`.",
    },
    Clause {
        id: "V7",
        title: "well-formed addresses",
        text: "An address in a request (the entry's own, the target frame) that is misaligned, out of range or in \
               the host's reserved frames is refused with `-EINVAL`, and nothing is written.",
    },
    Clause {
        id: "V8",
        title: "the root is what the CPU reads",
        text: "In PAE mode CR3 selects a 32-byte PDPT inside its frame. This host requires CR3 to select the first \
               (bits 5..11 zero), as Xen's pv32pae guests keep it, and a CR3 that is not a validated L3 so \
               selected is a violation at the next hypercall exit (`CR3`).",
    },
    Clause {
        id: "H1",
        title: "the host writes only where the guest could",
        text: "The host writes guest memory (a hypercall's answer, multicall results, the trap-back frame) only \
               where the guest itself could write: never into a frame typed l1, l2 or l3, nor into the host's \
               reserved frames. Its mapping of guest memory bypasses the read-only memslots and the dirty log, so \
               nothing else would catch it. A call whose answer would land in a table is a violation (`host \
               write`, `hypercall block`, `trap-back frame`); a multicall entry's result there is `-EFAULT` and the \
               batch stops.",
    },
    Clause {
        id: "H2",
        title: "bounded work per exit",
        text:
            "Every exit does a bounded amount of work: a batch past the exit budget (8192 entries) returns `-ERESTART` \
               with the requests done, and the guest issues the rest again (Xen's hypercall preemption). A request \
               whose tree validation passes the budget (a pin of an L3, a NEW_BASEPTR, an L3 or L2 entry over a \
               large tree) is cut between two entries of an L2 or L3 and answers `-ERESTART` with itself not done; \
               issued again, its validation goes on where it stopped (Xen's PGT_partial). Until then the tables it \
               cut are no root, no linear target, and their entries take no update (`-EBUSY`). Devalidation (an \
               unpin) is not cut.",
    },
    Clause {
        id: "H3",
        title: "the audit is part of the contract",
        text: "At the end of a run the host checks that no validated L1 maps a pagetable RW, that each frame's \
               writable count equals the entries mapping it RW, and that every table in memory equals its \
               validated copy (all 512 entries). A dirty audit fails the run (`audit`), whatever the guest \
               reported.",
    },
    Clause {
        id: "D",
        title: "direct writes to pagetables",
        text: "Validated tables are read-only to the guest. A direct write to one is applied as a validated \
               one-entry update when the guest enabled the writable-pagetables assist, and is a violation \
               (`direct write`) otherwise, or when the update is refused. It is never silently applied.",
    },
];

/// What a refusal or a violation broke: a clause of [`CLAUSES`] (or a
/// malformed request). Reports name it by [`Rule::name`], which the contract
/// scenarios' `violation:<rule>` expectations match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    T1,
    T4,
    V1,
    V3,
    V4,
    V5,
    V6,
    V7,
    /// A malformed batch or command (count, buffer, unknown command).
    Request,
    /// V8: a CR3 that is not a validated L3's first PDPT.
    Cr3,
    /// H1: a hypercall's answer would land in a table.
    HostWrite,
    /// H1: the hypercall block itself lies in a table.
    HypercallBlock,
    /// H1: the trap-back's stack frame would land in a table.
    TrapBackFrame,
    /// H3: the end-of-run audit found a table or a count the host did not validate.
    Audit,
    /// D: a direct write to a validated table, without the assist or refused.
    DirectWrite,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::T1,
        Rule::T4,
        Rule::V1,
        Rule::V3,
        Rule::V4,
        Rule::V5,
        Rule::V6,
        Rule::V7,
        Rule::Request,
        Rule::Cr3,
        Rule::HostWrite,
        Rule::HypercallBlock,
        Rule::TrapBackFrame,
        Rule::Audit,
        Rule::DirectWrite,
    ];

    /// The name reports give it.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::T1 => "T1",
            Rule::T4 => "T4",
            Rule::V1 => "V1",
            Rule::V3 => "V3",
            Rule::V4 => "V4",
            Rule::V5 => "V5",
            Rule::V6 => "V6",
            Rule::V7 => "V7",
            Rule::Request => "Request",
            Rule::Cr3 => "CR3",
            Rule::HostWrite => "host write",
            Rule::HypercallBlock => "hypercall block",
            Rule::TrapBackFrame => "trap-back frame",
            Rule::Audit => "audit",
            Rule::DirectWrite => "direct write",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The clause of the contract it belongs to; None for a malformed request.
    pub fn clause(self) -> Option<&'static Clause> {
        let id = match self {
            Rule::Request => return None,
            Rule::Cr3 => "V8",
            Rule::HostWrite | Rule::HypercallBlock | Rule::TrapBackFrame => "H1",
            Rule::Audit => "H3",
            Rule::DirectWrite => "D",
            r => r.name(),
        };
        CLAUSES.iter().find(|c| c.id == id)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let name = String::deserialize(d)?;
        Rule::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown rule {name:?}")))
    }
}

/// The contract as `docs/pvmmu-rules.md` gives it.
#[cfg(test)]
pub fn render() -> String {
    let mut s = String::from(
        "# The PV MMU contract\n\n\
         <!-- Rendered from pvmmu/src/rules.rs by `VMM_BLESS=1 cargo test -p pvmmu rules`; edit that file. -->\n\n\
         The rules the host enforces on a 32-bit PAE guest's pagetables, after Xen's\n\
         `xen/arch/x86/mm.c`, cut down. The mechanics (hypercalls, structures,\n\
         errnos, the trap-back) are in [pvmmu.md](pvmmu.md) and [abi.md](abi.md).\n\
         A refusal or a violation in a report names its rule as the last column\n\
         says.\n\n\
         | clause | rule | reports name it |\n|---|---|---|\n",
    );
    for c in CLAUSES {
        let names: Vec<String> =
            Rule::ALL.iter().filter(|r| r.clause() == Some(c)).map(|r| format!("`{}`", r.name())).collect();
        let names =
            if names.is_empty() { "(what the host does; nothing to refuse)".to_owned() } else { names.join(", ") };
        s += &format!("| **{}** {} | {} | {} |\n", c.id, c.title, c.text, names);
    }
    s += "\nA malformed request (a count, a buffer, an unknown command) is refused as `Request`.\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/pvmmu-rules.md is the rendering of this file: a rule changed here
    /// and not there fails (VMM_BLESS=1 rewrites it).
    #[test]
    fn the_rules_document_is_rendered_from_the_rules() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pvmmu-rules.md");
        let want = render();
        if std::env::var_os("VMM_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{} is stale: VMM_BLESS=1 cargo test -p pvmmu rules", path.display());
    }

    #[test]
    fn every_rule_has_a_clause_and_a_name_that_reads_back() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_name(r.name()), Some(r));
            assert_eq!(serde_json::from_str::<Rule>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
            assert!(r == Rule::Request || r.clause().is_some(), "{r} has no clause");
        }
        assert!(serde_json::from_str::<Rule>("\"V9\"").is_err());
        // The exit budget the text names is the ABI's.
        let h2 = CLAUSES.iter().find(|c| c.id == "H2").unwrap();
        assert!(h2.text.contains(&format!("({} entries)", shared::abi::pvmmu::EXIT_BUDGET)), "{}", h2.text);
    }
}
