//! The claims the benchmark decides: the design notes' seven (section 4), the
//! Linux history, the question users bring (which strategy, when), the PV MMU's
//! batching and the 2002 highpte mail's test matrix. Each has a module in
//! [`super::experiments`] that declares its cells and computes its verdict; an
//! experiment names the claims its figures inform.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! claims {
    ($($(#[$meta:meta])* $var:ident = $id:literal, $text:literal;)+) => {
        /// A claim.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Claim { $($(#[$meta])* $var,)+ }

        impl Claim {
            /// Every claim, in the report's order.
            pub const ALL: &'static [Claim] = &[$(Claim::$var,)+];

            /// Its id in reports and matrix files ("claim 1", "history").
            pub const fn id(self) -> &'static str {
                match self { $(Claim::$var => $id,)+ }
            }

            /// The claim, as the design notes (or the issue) put it.
            pub const fn text(self) -> &'static str {
                match self { $(Claim::$var => $text,)+ }
            }
        }
    };
}

claims! {
    Claim1 = "claim 1", "one lazy mapping's vm_unmap_aliases() costs about one old-style vunmap; with many lazy mappings lazy wins";
    Claim2 = "claim 2", "256 persistent kmap entries are not that small; 2048 are better for caching and flushing";
    Claim3 = "claim 3", "atomic kmaps take no lock and scale with CPUs; the global kmap_lock does not";
    Claim4 = "claim 4", "highpte lifts the lowmem cap on pagetables";
    Claim5 = "claim 5", "highpte makes a pte access slightly more expensive";
    Claim6 = "claim 6", "per-task kmaps beat the global pool on SMP but are worse on UP";
    Claim7 = "claim 7", "each alias strategy's cost per pin, and host-trap's when aliases are rare versus frequent";
    History = "history", "2.6.28 always-flush + lazy-ptes -> 2.6.36 lazy vmap off -> 2.6.37 lazy-tlb with no alias flush; 6.5's vm_unmap_aliases stops flushing the same dirty ranges again";
    /// The question users bring: the frequency sweep's crossovers.
    WhichStrategy = "which strategy", "which alias strategy costs least at each alias frequency, priced by this host's unit costs and as measured";
    /// Not a claim of the design notes: issue 5's measurement of the pv-ops.
    Batching = "batching", "batching a lazy-MMU section's pagetable writes into one mmu_update saves hypercall exits";
    /// The 2002 highpte mail's test matrix (seed 004).
    Highpte2002 = "highpte 2002", "nohighmem, 4GB, 4GB-highpte, 64GB and 64GB-highpte, UP and SMP, preempt on and off: every configuration boots and passes a stress run";
    /// Issue 23: claims 4 and 5 on a stock Linux under vmm.
    LinuxHighpte = "linux highpte", "on a stock Linux under vmm (Debian's 686-pae), highpte makes a pte access slightly dearer (claim 5) and lifts the lowmem cap (claim 4), as in our reproduction";
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Claim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Claim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        Claim::ALL.iter().copied().find(|c| c.id() == id).ok_or_else(|| {
            let ids: Vec<&str> = Claim::ALL.iter().map(|c| c.id()).collect();
            serde::de::Error::custom(format!("no claim {id:?} (the claims: {})", ids.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_read_back() {
        for (i, c) in Claim::ALL.iter().enumerate() {
            assert!(Claim::ALL[..i].iter().all(|o| o.id() != c.id()));
            let text = serde_json::to_string(c).unwrap();
            assert_eq!(serde_json::from_str::<Claim>(&text).unwrap(), *c);
        }
        assert!(serde_json::from_str::<Claim>("\"claim 8\"").unwrap_err().to_string().contains("claim 8"));
    }
}
